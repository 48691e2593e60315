/* SPDX-License-Identifier: MIT */
/* diskimg bench: a simple read or write benchmark, qemu-img's output. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct bench {
    uint64_t count, depth, bufsize, step, offset, flush_interval;
    int pattern;
    bool write;
};

static int number(const struct cli *c, const char *key, uint64_t *out, bool size,
                  const char *what)
{
    const char *v = cli_get(c, key);
    if (!v)
        return 0;
    GError *err = NULL;
    char *end;
    if (size) {
        if (diskimg_parse_size(v, out, &err) == 0 && *out <= INT32_MAX)
            return 0;
        g_clear_error(&err);
    } else {
        unsigned long long n = g_ascii_strtoull(v, &end, 10);
        if (*v && !*end && n > 0 && n <= INT32_MAX) {
            *out = n;
            return 0;
        }
    }
    cli_error("Invalid %s specified", what);
    return 1;
}

static int parse(struct cli *c, struct bench *b)
{
    *b = (struct bench){ .count = 75000, .depth = 64, .bufsize = 4096 };
    if (number(c, "count", &b->count, false, "request count") ||
        number(c, "depth", &b->depth, false, "queue depth") ||
        number(c, "buffer-size", &b->bufsize, true, "buffer size") ||
        number(c, "step-size", &b->step, true, "step size") ||
        number(c, "offset", &b->offset, true, "offset") ||
        number(c, "flush-interval", &b->flush_interval, false, "flush interval"))
        return 1;
    if (!cli_get(c, "step-size"))
        b->step = b->bufsize;
    b->write = cli_flag(c, "write");
    const char *p = cli_get(c, "pattern");
    if (p) {
        char *end;
        long v = strtol(p, &end, 0);
        if (*end || v < 0 || v > 0xff) {
            cli_error("Invalid pattern byte specified");
            return 1;
        }
        b->pattern = (int)v;
    }
    if (b->flush_interval && !b->write) {
        cli_error("--flush-interval is only available in write tests");
        return 1;
    }
    if (b->bufsize == 0) {
        cli_error("Invalid buffer size specified");
        return 1;
    }
    return 0;
}

static int run(diskimg_node *n, const struct bench *b, uint64_t size, GError **errp)
{
    uint8_t *buf = diskimg_alloc_aligned(b->bufsize);
    memset(buf, b->pattern, b->bufsize);
    uint64_t off = b->offset;
    int ret = 0;
    for (uint64_t i = 0; i < b->count && ret == 0; i++) {
        uint64_t len = MIN(b->bufsize, size - off);
        ret = b->write ? diskimg_node_pwrite(n, buf, len, off, 0, errp)
                       : diskimg_node_pread(n, buf, len, off, errp);
        if (ret == 0 && b->flush_interval && (i + 1) % b->flush_interval == 0)
            ret = diskimg_node_flush(n, errp);
        off = (off + b->step) % size;
    }
    diskimg_free_aligned(buf);
    return ret;
}

int cmd_bench(struct cli *c)
{
    struct bench b;
    if (parse(c, &b) || cli_objects(c))
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
    if ((uint64_t)size < b.bufsize || b.offset >= (uint64_t)size) {
        cli_error("Image is too small for the requested benchmark");
        diskimg_close(n);
        return 1;
    }
    if (!c->quiet) {
        printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %" PRIu64
               " in parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
               b.count, b.write ? "write" : "read", b.bufsize, b.depth, b.offset, b.step);
        if (b.flush_interval)
            printf("Sending flush every %" PRIu64 " requests\n", b.flush_interval);
    }
    gint64 t0 = g_get_monotonic_time();
    int ret = run(n, &b, (uint64_t)size, &err);
    if (ret == 0 && b.write)
        ret = diskimg_node_flush(n, &err);
    gint64 t1 = g_get_monotonic_time();
    diskimg_close(n);
    if (ret < 0) {
        cli_gerror(err);
        return 1;
    }
    if (!c->quiet)
        printf("Run completed in %3.3f seconds.\n", (double)(t1 - t0) / G_USEC_PER_SEC);
    return 0;
}
