/* SPDX-License-Identifier: MIT */
/*
 * diskimg checksum: a digest of the guest-visible content, the same for
 * every format holding the same bytes, and the same as blkhash's blksum
 * computes (docs/checksum.md describes the construction):
 *
 *   the content is cut into 64 KiB blocks (the last may be shorter);
 *   block i's digest H(block i) goes into stream i mod 64;
 *   the result is H(H(stream 0) || H(stream 1) || ... || H(stream 63)),
 *   where H(stream s) is the digest of its block digests, in block order.
 *
 * The copy engine walks the image: known-zero ranges (holes, zero clusters,
 * unallocated ranges without backing) arrive unread and add the one
 * precomputed zero-block digest; data ranges are read and their block
 * digests computed on the engine's workers, in parallel; the streams are
 * fed in block order as ranges are committed in order.
 *
 * Zero blocks are only counted per stream, and hashed into a stream when
 * its next data digest comes or at the end; at the end every stream's
 * backlog is hashed in parallel.  So a sparse image costs one pass over
 * 32 bytes per 64 KiB block, spread over the CPUs (0.5 GiB for 1 TiB).
 */
#include <stdio.h>
#include <string.h>

#include <diskimg/crypto.h>

#include "cli.h"

#define BLOCK_SIZE (64u * 1024)
#define STREAMS 64u
#define MAX_DIGEST 64u
/* Zero-block digests handed to a stream per hash update: fewer calls. */
#define ZERO_BATCH 512u

struct stream {
    diskimg_hash_ctx *hash;
    uint64_t zero_blocks;              /* zero digests owed, in order before the next */
};

struct checksum {
    const char *alg;
    size_t digest_len;
    struct stream streams[STREAMS];
    uint8_t zero_digest[MAX_DIGEST];   /* H(BLOCK_SIZE zero bytes) */
    uint8_t *zero_batch;               /* ZERO_BATCH copies of zero_digest */
    uint64_t next_block;               /* index of the block commit expects */
};

/* ----------------------------------------------------------- algorithms */

/* Names blksum takes (OpenSSL's) that no diskimg crypto plugin provides. */
static const char *const blksum_only[] = {
    "sha512-224", "sha512-256", "sha3-224", "sha3-256", "sha3-384", "sha3-512",
    "blake2b512", "blake2s256", "blake3", "sm3", "null",
};

static bool blksum_knows(const char *alg)
{
    for (size_t i = 0; i < G_N_ELEMENTS(blksum_only); i++)
        if (g_str_equal(blksum_only[i], alg))
            return true;
    return false;
}

static int check_algorithm(const char *alg)
{
    size_t len = diskimg_hash_digest_len(alg);
    if (len > 0 && len <= MAX_DIGEST)
        return 0;
    g_autofree char *known = g_strjoinv(", ", (char **)diskimg_hash_names());
    cli_error("checksum: hash algorithm '%s' is not available%s (available: %s)", alg,
              blksum_knows(alg) ? " in diskimg's crypto plugins" : "", known);
    return 1;
}

/* ------------------------------------------------------------- streams */

static int block_digest(const struct checksum *cs, const uint8_t *block, size_t len,
                        uint8_t *out, GError **errp)
{
    /* Most images hold many zero blocks that block status does not know
     * about (allocated zeroes): they share one digest. */
    if (len == BLOCK_SIZE && diskimg_is_zero(block, len)) {
        memcpy(out, cs->zero_digest, cs->digest_len);
        return 0;
    }
    return diskimg_hash(cs->alg, block, len, out, cs->digest_len, errp);
}

/* Hashes the zero digests a stream owes. */
static int pay_zero_blocks(const struct checksum *cs, struct stream *s, GError **errp)
{
    while (s->zero_blocks) {
        uint64_t batch = MIN(s->zero_blocks, ZERO_BATCH);
        if (diskimg_hash_update(s->hash, cs->zero_batch, batch * cs->digest_len, errp) < 0)
            return -1;
        s->zero_blocks -= batch;
    }
    return 0;
}

static int feed(struct checksum *cs, const uint8_t *digest, GError **errp)
{
    struct stream *s = &cs->streams[cs->next_block % STREAMS];
    cs->next_block++;
    if (pay_zero_blocks(cs, s, errp) < 0)
        return -1;
    return diskimg_hash_update(s->hash, digest, cs->digest_len, errp);
}

/* n whole zero blocks: stream s owes as many zero digests as there are
 * indices i in [next_block, next_block + n) with i mod STREAMS = s. */
static void add_zero_blocks(struct checksum *cs, uint64_t n)
{
    uint64_t first = cs->next_block;
    for (unsigned k = 0; k < STREAMS && k < n; k++)
        cs->streams[(first + k) % STREAMS].zero_blocks += (n - k + STREAMS - 1) / STREAMS;
    cs->next_block = first + n;
}

static int feed_zero_range(struct checksum *cs, uint64_t len, GError **errp)
{
    add_zero_blocks(cs, len / BLOCK_SIZE);
    uint64_t tail = len % BLOCK_SIZE;
    if (!tail)
        return 0;
    /* Only the image's last block can be short. */
    g_autofree uint8_t *zeroes = g_malloc0(tail);
    uint8_t digest[MAX_DIGEST];
    return diskimg_hash(cs->alg, zeroes, tail, digest, cs->digest_len, errp) < 0
               ? -1
               : feed(cs, digest, errp);
}

/* -------------------------------------------------------- engine sink */

static uint64_t blocks_in(uint64_t len)
{
    return (len + BLOCK_SIZE - 1) / BLOCK_SIZE;
}

/* Worker side: the digests of every block of a data range. */
static int sink_process(void *opaque, uint64_t offset, const uint8_t *buf, uint64_t len,
                        void **result, GError **errp)
{
    (void)offset;
    const struct checksum *cs = opaque;
    uint64_t n = blocks_in(len);
    uint8_t *digests = g_malloc(n * cs->digest_len);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t at = i * BLOCK_SIZE;
        if (block_digest(cs, buf + at, MIN(BLOCK_SIZE, len - at), digests + i * cs->digest_len,
                         errp) < 0) {
            g_free(digests);
            return -1;
        }
    }
    *result = digests;
    return 0;
}

/* In order: the range's block digests go to their streams. */
static int sink_commit(void *opaque, uint64_t offset, uint64_t len, const uint8_t *buf,
                       void *result, GError **errp)
{
    struct checksum *cs = opaque;
    if (offset != cs->next_block * BLOCK_SIZE) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "checksum: range at %" PRIu64 " arrived out of order", offset);
        return -1;
    }
    if (!buf)
        return feed_zero_range(cs, len, errp);
    const uint8_t *digests = result;
    for (uint64_t i = 0; i < blocks_in(len); i++)
        if (feed(cs, digests + i * cs->digest_len, errp) < 0)
            return -1;
    return 0;
}

static void sink_release(void *opaque, void *result)
{
    (void)opaque;
    g_free(result);
}

/* --------------------------------------------------------------- setup */

static int checksum_init(struct checksum *cs, const char *alg, GError **errp)
{
    *cs = (struct checksum){ .alg = alg, .digest_len = diskimg_hash_digest_len(alg) };
    for (unsigned s = 0; s < STREAMS; s++)
        if (!(cs->streams[s].hash = diskimg_hash_new(alg, errp)))
            return -1;
    g_autofree uint8_t *zeroes = g_malloc0(BLOCK_SIZE);
    if (diskimg_hash(alg, zeroes, BLOCK_SIZE, cs->zero_digest, cs->digest_len, errp) < 0)
        return -1;
    cs->zero_batch = g_malloc(ZERO_BATCH * cs->digest_len);
    for (unsigned i = 0; i < ZERO_BATCH; i++)
        memcpy(cs->zero_batch + i * cs->digest_len, cs->zero_digest, cs->digest_len);
    return 0;
}

static void checksum_clear(struct checksum *cs)
{
    for (unsigned s = 0; s < STREAMS; s++)
        diskimg_hash_free(cs->streams[s].hash);
    g_free(cs->zero_batch);
}

/* The end: each stream pays what it owes and gives its digest. */
struct final_job {
    const struct checksum *cs;
    struct stream *stream;
    uint8_t *digest;
    GError *error;
};

static void final_job_run(gpointer data, gpointer unused)
{
    (void)unused;
    struct final_job *job = data;
    if (pay_zero_blocks(job->cs, job->stream, &job->error) == 0)
        diskimg_hash_final(job->stream->hash, job->digest, job->cs->digest_len, &job->error);
}

/* Streams are independent: their backlogs are hashed on every CPU. */
static int finish_streams(struct checksum *cs, uint8_t *digests, GError **errp)
{
    struct final_job jobs[STREAMS];
    int threads = MAX(g_get_num_processors(), 1);
    GThreadPool *pool = g_thread_pool_new(final_job_run, NULL, threads, FALSE, NULL);
    for (unsigned s = 0; s < STREAMS; s++) {
        jobs[s] = (struct final_job){ .cs = cs, .stream = &cs->streams[s],
                                      .digest = digests + s * cs->digest_len };
        g_thread_pool_push(pool, &jobs[s], NULL);
    }
    g_thread_pool_free(pool, FALSE, TRUE);   /* waits for every job */
    int ret = 0;
    for (unsigned s = 0; s < STREAMS; s++) {
        if (jobs[s].error && ret == 0) {
            g_propagate_error(errp, jobs[s].error);
            ret = -1;
        } else if (jobs[s].error) {
            g_error_free(jobs[s].error);
        }
    }
    return ret;
}

/* The root digest over the streams' digests, as lower-case hex. */
static char *checksum_final(struct checksum *cs, GError **errp)
{
    uint8_t all[STREAMS * MAX_DIGEST], root[MAX_DIGEST];
    size_t d = cs->digest_len;
    if (finish_streams(cs, all, errp) < 0)
        return NULL;
    if (diskimg_hash(cs->alg, all, STREAMS * d, root, d, errp) < 0)
        return NULL;
    GString *hex = g_string_sized_new(2 * d);
    for (size_t i = 0; i < d; i++)
        g_string_append_printf(hex, "%02x", root[i]);
    return g_string_free(hex, FALSE);
}

static int hash_image(diskimg_node *n, struct checksum *cs, diskimg_progress *progress,
                      GError **errp)
{
    struct diskimg_copy_sink sink = {
        .struct_size = sizeof(sink), .block_size = BLOCK_SIZE, .opaque = cs,
        .process = sink_process, .commit = sink_commit, .release = sink_release,
    };
    /* One worker per CPU: hashing, not I/O, is what takes the time. */
    struct diskimg_copy_params p = {
        .struct_size = sizeof(p), .sources = &n, .n_sources = 1, .sink = &sink,
        .parallel = (unsigned)MAX(g_get_num_processors(), 1), .progress = progress,
    };
    return diskimg_copy(&p, errp);
}

/* ------------------------------------------------------------- output */

static int print_result(const char *digest, const char *alg, const char *filename,
                        enum cli_output output)
{
    if (output == CLI_OUTPUT_HUMAN) {
        /* blksum's (and sha256sum's) line: digest, two spaces, name. */
        printf("%s  %s\n", digest, filename);
        return 0;
    }
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "checksum", digest);
    json_object_set_string_member(o, "algorithm", alg);
    json_object_set_string_member(o, "filename", filename);
    return cli_print_typed("ImageChecksum", o);
}

static diskimg_node *open_source(struct cli *c, uint64_t *size)
{
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.cache = cli_get(c, "source-cache");
    o.source_cache = true;
    GError *err = NULL;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    int64_t len = n ? diskimg_node_size(n, &err) : -1;
    if (len < 0) {
        cli_gerror(err);
        diskimg_close(n);
        return NULL;
    }
    *size = (uint64_t)len;
    return n;
}

int cmd_checksum(struct cli *c)
{
    enum cli_output output;
    const char *alg = cli_get(c, "algorithm");
    if (cli_output_format(c, &output) || check_algorithm(alg) || cli_objects(c))
        return 1;
    uint64_t size;
    diskimg_node *n = open_source(c, &size);
    if (!n)
        return 1;
    struct checksum cs;
    GError *err = NULL;
    g_autofree char *digest = NULL;
    if (checksum_init(&cs, alg, &err) == 0) {
        diskimg_progress *progress = cli_progress_new(c, size, "checksum");
        int ret = hash_image(n, &cs, progress, &err);
        cli_progress_end(progress, ret == 0);
        if (ret == 0)
            digest = checksum_final(&cs, &err);
    }
    checksum_clear(&cs);
    diskimg_close(n);
    if (!digest) {
        cli_gerror(err);
        return 1;
    }
    return print_result(digest, alg, c->args[0], output);
}
