/* SPDX-License-Identifier: MIT */
/*
 * cloop.c — the "cloop" format: Linux compressed loop images, version 2
 * (what create_compressed_fs writes and qemu 7.2's block/cloop.c reads),
 * read-only.
 *
 * Layout (big endian):
 *   0    a shell script preamble, 128 bytes ("#!/bin/sh\n#V2.0 Format\n...")
 *   128  block_size  bytes of one uncompressed block (multiple of 512)
 *   132  n_blocks    number of blocks
 *   136  offsets     n_blocks + 1 file offsets (u64): block i is the zlib
 *                    stream in [offsets[i], offsets[i+1])
 * The disk is n_blocks * block_size bytes; every block is stored.
 *
 * Thread model: SERIALIZE_REQUESTS: the handle caches the last block it
 * decompressed, as qemu does, so sequential reads inflate each block once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <string.h>

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char cloop_schema_yaml[];

#define SECTOR 512u
#define HEADER_SIZE 136u
#define OFFSETS_AT 136u
/* qemu's limits: blocks up to 64 MiB, compressed blocks up to twice that
 * (incompressible data grows a little), an offsets table up to 512 MiB. */
#define MAX_BLOCK_SIZE (64u * 1024 * 1024)
#define MAX_COMPRESSED_SIZE (2ull * MAX_BLOCK_SIZE)
#define MAX_OFFSETS_BYTES (512ull * 1024 * 1024)
#define NO_BLOCK UINT32_MAX

/* The preamble qemu recognises (and create_compressed_fs writes). */
static const char cloop_magic_v2[] =
    "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

struct cloop_state {
    diskimg_node *file;
    char *filename;
    uint32_t block_size;
    uint32_t n_blocks;
    uint64_t *offsets;         /* n_blocks + 1, host order */
    uint8_t *compressed;       /* room for the largest compressed block */
    uint8_t *block;            /* block_size bytes: block `cached` */
    uint32_t cached;           /* NO_BLOCK: none */
};

/* ---------------------------------------------------------------- header */

static int cloop_probe(const uint8_t *buf, size_t len, const char *filename)
{
    size_t n = sizeof(cloop_magic_v2) - 1;

    (void)filename;
    /* A shell script preamble is a weak magic: qemu scores it 2 of 100. */
    return len >= n && memcmp(buf, cloop_magic_v2, n) == 0 ? 50 : 0;
}

/* qemu's header checks, in its order and with its messages. */
static int check_geometry(uint32_t block_size, uint32_t n_blocks, GError **errp)
{
    if (block_size % SECTOR != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "block_size %" PRIu32 " must be a multiple of 512", block_size);
    if (block_size == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "block_size cannot be zero");
    if (block_size > MAX_BLOCK_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "block_size %" PRIu32 " must be %u MB or less", block_size,
                                 MAX_BLOCK_SIZE / (1024 * 1024));
    if (n_blocks > (UINT32_MAX - 1) / sizeof(uint64_t))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "n_blocks %" PRIu32 " must be %zu or less", n_blocks,
                                 (size_t)((UINT32_MAX - 1) / sizeof(uint64_t)));
    if (((uint64_t)n_blocks + 1) * sizeof(uint64_t) > MAX_OFFSETS_BYTES)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "image requires too many offsets, try increasing block size");
    return 0;
}

/*
 * qemu's offset checks (monotonic, compressed sizes bounded), plus what
 * qemu leaves to read time: the first block starts after the table and
 * the last one ends inside the file.  Returns the largest compressed size.
 */
static int check_offsets(const struct cloop_state *s, uint64_t file_size, uint64_t *max_size,
                         GError **errp)
{
    uint64_t table_end = OFFSETS_AT + ((uint64_t)s->n_blocks + 1) * 8;

    *max_size = 1;
    if (s->offsets[0] < table_end)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "cloop offsets: block 0 starts at %" PRIu64
                                 ", inside the header or the offsets table (%" PRIu64 " bytes)",
                                 s->offsets[0], table_end);
    for (uint32_t i = 1; i <= s->n_blocks; i++) {
        uint64_t size;

        if (s->offsets[i] < s->offsets[i - 1])
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "offsets not monotonically increasing at index %" PRIu32
                                     ", image file is corrupt", i);
        size = s->offsets[i] - s->offsets[i - 1];
        if (size > MAX_COMPRESSED_SIZE)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "invalid compressed block size at index %" PRIu32
                                     ", image file is corrupt", i);
        *max_size = MAX(*max_size, size);
    }
    if (s->offsets[s->n_blocks] > file_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "cloop offsets: the last block ends at %" PRIu64
                                 ", beyond the end of the file (%" PRIu64 " bytes)",
                                 s->offsets[s->n_blocks], file_size);
    return 0;
}

/* Deflate expands at most ~1032 times: a block_size no stored block can
 * inflate to is corrupt, and refusing it keeps a small hostile file from
 * making us allocate a 64 MiB block buffer it can never fill. */
#define MAX_INFLATE_RATIO 1032u
static int check_expansion(const struct cloop_state *s, uint64_t max_compressed,
                           GError **errp)
{
    if (s->n_blocks == 0 || s->block_size <= max_compressed * MAX_INFLATE_RATIO)
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "cloop header: block_size %" PRIu32 " cannot come from compressed "
                             "blocks of at most %" PRIu64 " bytes (deflate expands at most %u "
                             "times)", s->block_size, max_compressed, MAX_INFLATE_RATIO);
}

static void cloop_close(void *h)
{
    struct cloop_state *s = h;

    g_free(s->offsets);
    g_free(s->compressed);
    g_free(s->block);
    g_free(s->filename);
    g_free(s);
}

static int read_header(diskimg_node *file, uint64_t file_size, uint32_t *block_size,
                       uint32_t *n_blocks, GError **errp)
{
    uint8_t buf[HEADER_SIZE];
    size_t have = (size_t)MIN(file_size, (uint64_t)HEADER_SIZE);
    struct diskimg_reader r;

    if (have > 0 && diskimg_node_pread(file, buf, have, 0, errp) < 0)
        return -1;
    r = diskimg_reader_make(buf, have, DISKIMG_BIG_ENDIAN, NULL, "cloop header");
    if (diskimg_read_u32(&r, 128, "block_size", block_size, errp) < 0 ||
        diskimg_read_u32(&r, 132, "n_blocks", n_blocks, errp) < 0)
        return -1;
    return 0;
}

static void *cloop_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct cloop_state *s;
    int64_t fsize = diskimg_node_size(args->file, errp);
    uint32_t block_size, n_blocks;
    uint64_t max_compressed;

    if (fsize < 0 || read_header(args->file, (uint64_t)fsize, &block_size, &n_blocks, errp) < 0 ||
        check_geometry(block_size, n_blocks, errp) < 0)
        return NULL;
    s = g_new0(struct cloop_state, 1);
    s->file = args->file;
    s->filename = g_strdup(args->filename);
    s->block_size = block_size;
    s->n_blocks = n_blocks;
    s->cached = NO_BLOCK;
    if (diskimg_load_u64_table(args->file, OFFSETS_AT, (uint64_t)n_blocks + 1, 0,
                               DISKIMG_BIG_ENDIAN, MAX_OFFSETS_BYTES, "cloop offsets table",
                               &s->offsets, errp) < 0 ||
        check_offsets(s, (uint64_t)fsize, &max_compressed, errp) < 0 ||
        check_expansion(s, max_compressed, errp) < 0)
        goto fail;
    s->compressed = g_try_malloc(max_compressed);
    s->block = g_try_malloc(block_size);
    if (!s->compressed || !s->block) {
        diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                          "Could not allocate the block buffers (%" PRIu64 " + %" PRIu32 " bytes)",
                          max_compressed, block_size);
        goto fail;
    }
    return s;

fail:
    cloop_close(s);
    return NULL;
}

/* ------------------------------------------------------------------ data */

static int64_t cloop_get_size(void *h, GError **errp)
{
    struct cloop_state *s = h;

    (void)errp;
    return (int64_t)((uint64_t)s->n_blocks * s->block_size);
}

/* Makes s->block hold block i: every block must inflate to exactly
 * block_size bytes (qemu's rule). */
static int load_block(struct cloop_state *s, uint32_t i, GError **errp)
{
    uint64_t size = s->offsets[i + 1] - s->offsets[i];
    g_autoptr(GError) err = NULL;

    if (s->cached == i)
        return 0;
    s->cached = NO_BLOCK;
    if (size == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: cloop block %" PRIu32 " is empty", s->filename, i);
    if (diskimg_node_pread(s->file, s->compressed, size, s->offsets[i], errp) < 0)
        return -1;
    /* exactly block_size: a stream that inflates past it is corrupt, not cut short */
    if (diskimg_decompress_exact(DISKIMG_CODEC_ZLIB, s->compressed, size, s->block,
                                 s->block_size, &err) < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: cloop block %" PRIu32 " (%" PRIu64 " bytes at offset %"
                                 PRIu64 "): bad compressed stream: %s (block_size %" PRIu32
                                 ")", s->filename, i, size,
                                 s->offsets[i], err->message, s->block_size);
    s->cached = i;
    return 0;
}

static int cloop_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct cloop_state *s = h;
    uint8_t *out = buf;

    while (len > 0) {
        uint32_t i = (uint32_t)(offset / s->block_size);
        uint64_t within = offset % s->block_size;
        uint64_t n = MIN(len, s->block_size - within);

        if (load_block(s, i, errp) < 0)
            return -1;
        memcpy(out, s->block + within, n);
        out += n;
        offset += n;
        len -= n;
    }
    return 0;
}

/*
 * Every block of a cloop image is stored, and qemu 7.2 has no block status
 * for cloop: the whole disk is data (qemu-img map shows the same).  Extents
 * end at block boundaries so that copies ask for whole blocks.
 */
static int cloop_block_status(void *h, uint64_t offset, uint64_t len,
                              struct diskimg_extent *ext, GError **errp)
{
    struct cloop_state *s = h;

    (void)errp;
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_COMPRESSED;
    ext->length = MIN(len, s->block_size - offset % s->block_size);
    return 0;
}

/* ------------------------------------------------------------- descriptor */

static const struct diskimg_format_ops cloop_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = cloop_probe,
    .open = cloop_open,
    .close = cloop_close,
    .get_size = cloop_get_size,
    .read = cloop_read,
    .block_status = cloop_block_status,
    /* No info: qemu has no bdrv_get_info for cloop, so info shows neither
     * format-specific data nor a dirty flag. */
};

static const struct diskimg_plugin cloop_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "cloop",
    .version = PLUGIN_VERSION,
    .summary = "Linux compressed loop (cloop) image, version 2 (read-only)",
    .schema = cloop_schema_yaml,
    .capabilities = DISKIMG_CAP_READ_ONLY,
    .ops = &cloop_ops,
};

DISKIMG_PLUGIN_DEFINE(cloop_plugin)
