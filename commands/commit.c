/* SPDX-License-Identifier: MIT */
/*
 * diskimg commit: write what the layers above BASE hold into BASE, then
 * (unless -d, or -b which implies it) empty the top image.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define CHUNK (2u << 20)

/* The chain node that -b names, matched by real path. */
static diskimg_node *find_base(diskimg_node *top, const char *base_arg, GError **errp)
{
    if (!base_arg)
        return diskimg_node_backing(top);
    g_autofree char *want = realpath(base_arg, NULL);
    for (diskimg_node *n = diskimg_node_backing(top); n; n = diskimg_node_backing(n)) {
        g_autofree char *have = realpath(diskimg_node_filename(n), NULL);
        if (want && have && g_str_equal(want, have))
            return n;
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND,
                "Did not find '%s' in the backing chain of '%s'", base_arg,
                diskimg_node_filename(top));
    return NULL;
}

/* Is [off, off+*len) allocated in a layer above base?  Shrinks *len to the
 * run with one answer. */
static int allocated_above(diskimg_node *top, diskimg_node *base, uint64_t off, uint64_t *len,
                           bool *allocated, GError **errp)
{
    *allocated = false;
    for (diskimg_node *n = top; n && n != base; n = diskimg_node_backing(n)) {
        struct diskimg_extent e;
        int64_t size = diskimg_node_size(n, errp);
        if (size < 0)
            return -1;
        if (off >= (uint64_t)size)
            continue;
        if (diskimg_node_block_status(n, off, MIN(*len, (uint64_t)size - off), &e, errp) < 0)
            return -1;
        *len = e.length;
        if (e.flags & DISKIMG_BS_ALLOCATED) {
            *allocated = true;
            return 0;
        }
    }
    return 0;
}

static int copy_down(diskimg_node *top, diskimg_node *base, diskimg_node *writer,
                     uint64_t size, uint64_t rate, diskimg_progress *progress, GError **errp)
{
    uint8_t *buf = diskimg_alloc_aligned(CHUNK);
    int ret = 0;
    gint64 start = g_get_monotonic_time();
    uint64_t written = 0;
    for (uint64_t off = 0; off < size && ret == 0;) {
        uint64_t len = MIN(size - off, CHUNK);
        bool allocated;
        ret = allocated_above(top, base, off, &len, &allocated, errp);
        if (ret == 0 && allocated) {
            ret = diskimg_node_pread(top, buf, len, off, errp);
            if (ret == 0)
                ret = diskimg_is_zero(buf, len)
                          ? diskimg_node_write_zeroes(writer, off, len, 0, errp)
                          : diskimg_node_pwrite(writer, buf, len, off, 0, errp);
            written += len;
            if (rate) {
                gint64 due = start + (gint64)(written * G_USEC_PER_SEC / rate);
                if (due > g_get_monotonic_time())
                    g_usleep((gulong)(due - g_get_monotonic_time()));
            }
        }
        diskimg_progress_add(progress, len);
        off += len;
    }
    diskimg_free_aligned(buf);
    return ret;
}

static int commit(struct cli *c, diskimg_node *top, GError **errp)
{
    diskimg_node *base = find_base(top, cli_get(c, "base"), errp);
    if (!base)
        return -1;
    uint64_t rate = 0;
    const char *r = cli_get(c, "rate-limit");
    if (r && diskimg_parse_size(r, &rate, errp) < 0)
        return -1;
    /* The base gets its own writable handle; the chain's view of it is
     * read-only and only consulted for ranges we do not touch. */
    struct cli_open wo = { .format = diskimg_node_driver(base), .writable = true,
                           .no_backing = true, .cache = cli_get(c, "cache") };
    diskimg_node *writer = cli_open_image(diskimg_node_filename(base), &wo, errp);
    if (!writer)
        return -1;
    int64_t size = diskimg_node_size(top, errp), bsize = diskimg_node_size(writer, errp);
    int ret = size < 0 || bsize < 0 ? -1 : 0;
    if (ret == 0 && bsize < size)
        ret = diskimg_node_truncate(writer, (uint64_t)size, DISKIMG_PREALLOC_OFF, 0, errp);
    diskimg_progress *progress = diskimg_progress_new(
        cli_flag(c, "progress") && !c->quiet ? DISKIMG_PROGRESS_BAR : DISKIMG_PROGRESS_QUIET,
        size > 0 ? (uint64_t)size : 0);
    if (ret == 0)
        ret = copy_down(top, base, writer, (uint64_t)size, rate, progress, errp);
    diskimg_progress_finish(progress);
    if (ret == 0)
        ret = diskimg_node_flush(writer, errp);
    diskimg_close(writer);
    bool keep = cli_flag(c, "drop") || cli_get(c, "base");
    if (ret == 0 && !keep)
        ret = diskimg_node_make_empty(top, errp);
    return ret;
}

int cmd_commit(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = !cli_flag(c, "drop") && !cli_get(c, "base");
    o.no_lock = true;
    o.cache = cli_get(c, "cache");
    GError *err = NULL;
    diskimg_node *top = cli_open_image(c->args[0], &o, &err);
    if (!top) {
        cli_gerror(err);
        return 1;
    }
    int ret = 1;
    if (!diskimg_node_backing(top)) {
        cli_error("Image does not have a backing file");
    } else if (commit(c, top, &err) < 0 || diskimg_node_flush(top, &err) < 0) {
        cli_gerror(err);
    } else {
        if (!c->quiet)
            printf("Image committed.\n");
        ret = 0;
    }
    diskimg_close(top);
    return ret;
}
