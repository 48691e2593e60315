/* SPDX-License-Identifier: MIT */
/*
 * diskimg compare: are two images the same to a guest?  Ranges both images
 * report as zero are never read; others are read in chunks and compared.
 * Exit codes as qemu-img: 0 same, 1 different, 2 open error, 3 block status
 * error, 4 read error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CHUNK (2u << 20)
#define SECTOR 512

enum { SAME = 0, DIFFERENT = 1, OPEN_ERROR = 2, STATUS_ERROR = 3, READ_ERROR = 4 };

struct side {
    diskimg_node *node;
    uint64_t size;
    uint8_t *buf;
};

/* First mismatching sector of a chunk starting at `offset`, as qemu reports. */
static uint64_t mismatch_offset(const uint8_t *a, const uint8_t *b, uint64_t len,
                                uint64_t offset)
{
    for (uint64_t i = 0; i < len; i += SECTOR) {
        uint64_t n = MIN(SECTOR, len - i);
        if (memcmp(a + i, b + i, n))
            return offset + i;
    }
    return offset + len;
}

static uint64_t first_nonzero_sector(const uint8_t *a, uint64_t len, uint64_t offset)
{
    for (uint64_t i = 0; i < len; i += SECTOR)
        if (!diskimg_is_zero(a + i, MIN(SECTOR, len - i)))
            return offset + i;
    return offset + len;
}

static int status(struct side *s, uint64_t off, uint64_t len, struct diskimg_extent *e,
                  bool *zero)
{
    GError *err = NULL;
    if (diskimg_node_block_status_chain(s->node, off, len, e, NULL, &err) < 0) {
        cli_error("Error while reading offset %" PRIu64 " of %s: %s", off,
                  diskimg_node_filename(s->node), err->message);
        g_error_free(err);
        return STATUS_ERROR;
    }
    *zero = (e->flags & DISKIMG_BS_ZERO) != 0;
    return SAME;
}

static int read_side(struct side *s, uint64_t off, uint64_t len)
{
    GError *err = NULL;
    if (diskimg_node_pread(s->node, s->buf, len, off, &err) < 0) {
        cli_error("Error while reading offset %" PRIu64 " of %s: %s", off,
                  diskimg_node_filename(s->node), err->message);
        g_error_free(err);
        return READ_ERROR;
    }
    return SAME;
}

/* Reads of the second image run on a helper thread while this one reads the
 * first: comparing is read-bound, and the two images are independent. */
struct read_job {
    struct side *side;
    uint64_t off, len;
    int result;
    GAsyncQueue *done;
};

static void read_job_run(gpointer data, gpointer unused)
{
    struct read_job *job = data;
    job->result = read_side(job->side, job->off, job->len);
    g_async_queue_push(job->done, job);
}

static GThreadPool *reader_pool;
static GAsyncQueue *reader_done;

static int read_both(struct side *a, struct side *b, uint64_t off, uint64_t len)
{
    if (!reader_pool) {
        reader_pool = g_thread_pool_new(read_job_run, NULL, 1, TRUE, NULL);
        reader_done = g_async_queue_new();
    }
    struct read_job job = { .side = b, .off = off, .len = len, .done = reader_done };
    g_thread_pool_push(reader_pool, &job, NULL);
    int ra = read_side(a, off, len);
    g_async_queue_pop(reader_done);   /* the job lives on this stack: wait for it */
    return ra ? ra : job.result;
}

static void stop_reader(void)
{
    if (reader_pool)
        g_thread_pool_free(reader_pool, FALSE, TRUE);
    if (reader_done)
        g_async_queue_unref(reader_done);
    reader_pool = NULL;
    reader_done = NULL;
}

static int compare_common(struct side *a, struct side *b, uint64_t end, bool strict,
                          bool quiet, diskimg_progress *progress)
{
    for (uint64_t off = 0; off < end;) {
        struct diskimg_extent ea = { .struct_size = sizeof(ea) };
        struct diskimg_extent eb = { .struct_size = sizeof(eb) };
        bool za, zb;
        int r;
        if ((r = status(a, off, MIN(end - off, CHUNK), &ea, &za)) ||
            (r = status(b, off, MIN(end - off, CHUNK), &eb, &zb)))
            return r;
        uint64_t len = MIN(ea.length, eb.length);
        if (strict && (ea.flags & DISKIMG_BS_ALLOCATED) != (eb.flags & DISKIMG_BS_ALLOCATED)) {
            if (!quiet)
                printf("Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
            return DIFFERENT;
        }
        if (!(za && zb)) {
            if ((r = read_both(a, b, off, len)))
                return r;
            if (memcmp(a->buf, b->buf, len)) {
                if (!quiet)
                    printf("Content mismatch at offset %" PRIu64 "!\n",
                           mismatch_offset(a->buf, b->buf, len, off));
                return DIFFERENT;
            }
        }
        diskimg_progress_add(progress, len);
        off += len;
    }
    return SAME;
}

/* The part only the larger image has must read as zeroes. */
static int compare_tail(struct side *big, uint64_t start, bool quiet,
                        diskimg_progress *progress)
{
    for (uint64_t off = start; off < big->size;) {
        struct diskimg_extent e = { .struct_size = sizeof(e) };
        bool zero;
        int r = status(big, off, MIN(big->size - off, CHUNK), &e, &zero);
        if (r)
            return r;
        if (!zero) {
            if ((r = read_side(big, off, e.length)))
                return r;
            if (!diskimg_is_zero(big->buf, e.length)) {
                if (!quiet)
                    printf("Content mismatch at offset %" PRIu64 "!\n",
                           first_nonzero_sector(big->buf, e.length, off));
                return DIFFERENT;
            }
        }
        diskimg_progress_add(progress, e.length);
        off += e.length;
    }
    return SAME;
}

static int open_side(struct cli *c, const char *name, const char *format, struct side *s)
{
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.format = format;
    o.cache = cli_get(c, "source-cache");
    o.source_cache = true;
    GError *err = NULL;
    s->node = cli_open_image(name, &o, &err);
    int64_t size = s->node ? diskimg_node_size(s->node, &err) : -1;
    if (size < 0) {
        cli_gerror(err);
        return OPEN_ERROR;
    }
    s->size = (uint64_t)size;
    s->buf = diskimg_alloc_aligned(CHUNK);
    return SAME;
}

int cmd_compare(struct cli *c)
{
    if (cli_objects(c))
        return OPEN_ERROR;
    bool strict = cli_flag(c, "strict"), quiet = c->quiet;
    struct side a = { 0 }, b = { 0 };
    int ret = open_side(c, c->args[0], cli_get(c, "format"), &a);
    if (ret == SAME)
        ret = open_side(c, c->args[1], cli_get(c, "format2"), &b);
    if (ret != SAME)
        goto out;
    if (a.size != b.size && strict) {
        if (!quiet)
            printf("Strict mode: Image size mismatch!\n");
        ret = DIFFERENT;
        goto out;
    }
    diskimg_progress *progress = cli_progress_new(c, MAX(a.size, b.size), "compare");
    uint64_t common = MIN(a.size, b.size);
    ret = compare_common(&a, &b, common, strict, quiet, progress);
    /* qemu-img warns of the sizes only once the common part matched */
    if (ret == SAME && a.size != b.size) {
        if (!quiet)
            printf("Warning: Image size mismatch!\n");
        ret = compare_tail(a.size > b.size ? &a : &b, common, quiet, progress);
    }
    /* before the bar's closing newline, as qemu-img prints it */
    if (ret == SAME && !quiet)
        printf("Images are identical.\n");
    cli_progress_end(progress, ret == SAME);
out:
    stop_reader();
    diskimg_free_aligned(a.buf);
    diskimg_free_aligned(b.buf);
    diskimg_close(a.node);
    diskimg_close(b.node);
    return ret;
}
