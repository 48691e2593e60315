/* SPDX-License-Identifier: MIT */
/* diskimg bench: a simple read or write benchmark, qemu-img's output. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct bench {
    uint64_t count, depth, bufsize, step, offset, flush_interval;
    int pattern;
    bool write;
};

/* An integer option as qemu-img bench reads it (qemu_strtoul, any base,
 * at most INT_MAX; 0 is accepted). */
static int integer(const struct cli *c, const char *key, uint64_t *out, uint64_t max,
                   const char *what)
{
    const char *v = cli_get(c, key);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    uint64_t n = g_ascii_strtoull(v, &end, 0);
    if (*v && !*end && errno == 0 && n <= max) {
        *out = n;
        return 0;
    }
    cli_error("Invalid %s specified", what);
    return 1;
}

/* A size option as qemu-img's cvtnum_full(WHAT, TEXT, 0, MAX). */
static int size_option(const struct cli *c, const char *key, uint64_t *out, uint64_t max,
                       const char *what)
{
    const char *v = cli_get(c, key);
    if (!v)
        return 0;
    GError *err = NULL;
    if (diskimg_parse_size(v, out, &err) < 0) {
        g_clear_error(&err);
        return cli_parse_size(v, out, what);
    }
    if (*out <= max)
        return 0;
    cli_error("Invalid %s specified. Must be between 0 and %" PRIu64 ".", what, max);
    return 1;
}

static int parse(struct cli *c, struct bench *b)
{
    *b = (struct bench){ .count = 75000, .depth = 64, .bufsize = 4096 };
    uint64_t pattern = 0;
    const char *cache = cli_get(c, "cache");
    enum diskimg_cache mode;
    if (cache && diskimg_cache_parse(cache, &mode, NULL) < 0) {
        cli_error("Invalid cache mode");
        return 1;
    }
    if (integer(c, "count", &b->count, INT32_MAX, "request count") ||
        integer(c, "depth", &b->depth, INT32_MAX, "queue depth") ||
        size_option(c, "buffer-size", &b->bufsize, INT32_MAX, "buffer size") ||
        size_option(c, "step-size", &b->step, INT32_MAX, "step_size") ||
        size_option(c, "offset", &b->offset, INT64_MAX, "offset") ||
        integer(c, "flush-interval", &b->flush_interval, INT32_MAX, "flush interval") ||
        integer(c, "pattern", &pattern, 0xff, "pattern byte"))
        return 1;
    /* qemu-img accepts a depth of 0 and then waits forever */
    if (b->depth == 0) {
        cli_error("Invalid queue depth specified");
        return 1;
    }
    if (!cli_get(c, "step-size"))
        b->step = b->bufsize;
    b->write = cli_flag(c, "write");
    b->pattern = (int)pattern;
    if (b->flush_interval && !b->write) {
        cli_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (b->flush_interval && b->flush_interval < b->depth) {
        cli_error("Flush interval can't be smaller than depth");
        return 1;
    }
    return 0;
}

/* Requests are handed out from one counter; each in-flight slot is a thread
 * doing one request at a time, so -d N keeps N requests outstanding (capped
 * by MAX_THREADS: on a small machine more threads only add switching). */
#define MAX_THREADS 32

struct bench_run {
    const struct bench *b;
    diskimg_node *node;
    uint64_t size;
    GMutex lock;
    uint64_t issued;            /* requests handed out */
    uint64_t offset;            /* of the next request */
    uint64_t writes_done;       /* for --flush-interval */
    diskimg_progress *progress; /* bytes of finished requests */
    GError *error;
};

/* Takes the next request; false when all are issued or one failed. */
static bool next_request(struct bench_run *r, uint64_t *off)
{
    g_mutex_lock(&r->lock);
    bool more = r->issued < r->b->count && !r->error;
    if (more) {
        r->issued++;
        *off = r->offset;
        r->offset = r->size ? (r->offset + r->b->step) % r->size : 0;
    }
    g_mutex_unlock(&r->lock);
    return more;
}

/* --flush-interval: a flush after every N completed writes. */
static int maybe_flush(struct bench_run *r, GError **errp)
{
    if (!r->b->flush_interval)
        return 0;
    g_mutex_lock(&r->lock);
    bool due = ++r->writes_done % r->b->flush_interval == 0;
    g_mutex_unlock(&r->lock);
    return due ? diskimg_node_flush(r->node, errp) : 0;
}

static gpointer bench_thread(gpointer data)
{
    struct bench_run *r = data;
    const struct bench *b = r->b;
    uint8_t *buf = diskimg_alloc_aligned(MAX(b->bufsize, 1));
    memset(buf, b->pattern, b->bufsize);
    uint64_t off;
    GError *err = NULL;
    while (next_request(r, &off)) {
        uint64_t len = b->bufsize;
        int ret;
        /* qemu's block layer fails a request past the end with EIO */
        if (off > r->size || r->size - off < len)
            ret = diskimg_set_error(&err, DISKIMG_ERROR_IO, "%s", g_strerror(EIO));
        else
            ret = b->write ? diskimg_node_pwrite(r->node, buf, len, off, 0, &err)
                           : diskimg_node_pread(r->node, buf, len, off, &err);
        if (ret == 0 && b->write)
            ret = maybe_flush(r, &err);
        if (ret == 0)
            diskimg_progress_add(r->progress, len);
        if (ret < 0) {
            g_mutex_lock(&r->lock);
            if (!r->error)
                r->error = g_steal_pointer(&err);
            g_mutex_unlock(&r->lock);
            g_clear_error(&err);
            break;
        }
    }
    diskimg_free_aligned(buf);
    return NULL;
}

static int run(diskimg_node *n, const struct bench *b, uint64_t size,
               diskimg_progress *progress, GError **errp)
{
    struct bench_run r = { .b = b, .node = n, .size = size, .offset = b->offset,
                           .progress = progress };
    g_mutex_init(&r.lock);
    unsigned threads = (unsigned)MIN(MIN(b->depth, (uint64_t)MAX_THREADS), b->count);
    GThread **t = g_new0(GThread *, threads);
    for (unsigned i = 0; i < threads; i++)
        t[i] = g_thread_new("diskimg-bench", bench_thread, &r);
    for (unsigned i = 0; i < threads; i++)
        g_thread_join(t[i]);
    g_free(t);
    g_mutex_clear(&r.lock);
    if (r.error) {
        g_propagate_error(errp, r.error);
        return -1;
    }
    return 0;
}

/* -i AIO: qemu's aio names mapped onto our I/O plugins. */
static int pick_backend(const struct cli *c)
{
    const char *aio = cli_flag(c, "native") ? "native" : cli_get(c, "aio");
    if (!aio || g_str_equal(aio, "threads") || g_str_equal(aio, "native"))
        return 0;
    if (g_str_equal(aio, "io_uring")) {
        diskimg_set_default_io("uring");
        return 0;
    }
    cli_error("Invalid aio option: %s", aio);
    return 1;
}

int cmd_bench(struct cli *c)
{
    struct bench b;
    if (parse(c, &b) || pick_backend(c) || cli_objects(c))
        return 1;
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = b.write;
    o.cache = cli_get(c, "cache");
    GError *err = NULL;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    int64_t size = n ? diskimg_node_size(n, &err) : -1;
    if (size < 0) {
        cli_gerror(err);
        diskimg_close(n);
        return 1;
    }
    /* qemu-img bench prints these lines even with -q */
    printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64
           " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
           b.count, b.write ? "write" : "read", b.bufsize, b.depth, b.offset, b.step);
    if (b.flush_interval)
        printf("Sending flush every %" PRIu64 " requests\n", b.flush_interval);
    fflush(stdout);
    gint64 t0 = g_get_monotonic_time();
    /* bench has no -p (as qemu-img), but --progress-fd and SIGUSR1 see it;
     * the total is an estimate, requests near the end of the image are
     * shorter */
    uint64_t total = b.count <= UINT64_MAX / b.bufsize ? b.count * b.bufsize : UINT64_MAX;
    diskimg_progress *progress = cli_progress_new(c, total, b.write ? "write" : "read");
    int ret = run(n, &b, (uint64_t)size, progress, &err);
    const char *failed = "Failed request";
    if (ret == 0 && b.write) {
        diskimg_progress_set_phase(progress, "flush");
        ret = diskimg_node_flush(n, &err);
        failed = "Failed flush request";
    }
    cli_progress_end(progress, ret == 0);
    gint64 t1 = g_get_monotonic_time();
    diskimg_close(n);
    if (ret < 0) {
        cli_error("%s: %s", failed, err->message);
        g_error_free(err);
        return 1;
    }
    printf("Run completed in %3.3f seconds.\n", (double)(t1 - t0) / G_USEC_PER_SEC);
    return 0;
}
