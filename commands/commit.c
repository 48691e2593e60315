/* SPDX-License-Identifier: MIT */
/*
 * diskimg commit: write what the layers above BASE hold into BASE, then
 * (unless -d, or -b which implies it) empty the top image.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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

/* The base gets its own writable handle.  It is opened with its backing
 * chain: a write into part of a cluster base does not allocate copies the
 * rest from there, and qcow2 only skips zero writes where base reads zero,
 * which it can only tell with that chain open. */
static diskimg_node *open_base_writer(struct cli *c, diskimg_node *base, GError **errp)
{
    struct cli_open wo = { .format = diskimg_node_driver(base), .writable = true,
                           .cache = cli_get(c, "cache"),
                           .probed = diskimg_node_was_probed(base) };
    return cli_open_image(diskimg_node_filename(base), &wo, errp);
}

/* A base whose format was only probed must not end up looking like another
 * format (trust policy).  The format refuses such a write itself, but only
 * when the copy reaches it; asking first leaves base untouched (not even
 * grown) when the commit cannot succeed. */
static int check_probed_base(diskimg_node *top, diskimg_node *writer, GError **errp)
{
    if (!diskimg_node_was_probed(writer))
        return 0;
    int64_t size = diskimg_node_size(top, errp);
    if (size < 0)
        return -1;
    uint8_t head[2048];   /* what probing reads (DISKIMG_PROBE_MAX_LEN) */
    uint64_t len = MIN((uint64_t)size, sizeof(head));
    if (diskimg_node_pread(top, head, len, 0, errp) < 0)
        return -1;
    return diskimg_node_probed_head_check(writer, head, len, errp);
}

/* A top larger than base makes base grow.  Where base's own backing file
 * reaches into the new area its content would show through, so that area
 * is zeroed, as qemu's truncate does. */
static int grow_base(diskimg_node *writer, uint64_t size, GError **errp)
{
    int64_t old = diskimg_node_size(writer, errp);
    if (old < 0)
        return -1;
    if ((uint64_t)old >= size)
        return 0;
    if (diskimg_node_truncate(writer, size, DISKIMG_PREALLOC_OFF, 0, errp) < 0)
        return -1;
    diskimg_node *below = diskimg_node_backing(writer);
    int64_t reach = below ? diskimg_node_size(below, errp) : 0;
    if (reach < 0)
        return -1;
    if (reach <= old)
        return 0;
    return diskimg_node_write_zeroes(writer, (uint64_t)old, size - (uint64_t)old, 0, errp);
}

/* The copy engine in commit mode: what the layers above base allocate,
 * zero ranges included, lands in base; the rest is skipped. */
static int copy_down(struct cli *c, diskimg_node *top, diskimg_node *base,
                     diskimg_node *writer, uint64_t rate, diskimg_progress *progress,
                     GError **errp)
{
    diskimg_node *sources[] = { top };
    struct diskimg_copy_params p = {
        .struct_size = sizeof(p), .sources = sources, .n_sources = 1, .target = writer,
        .sparse_size = cli_cluster_size(writer), .quiet = c->quiet, .rate_limit = rate,
        .progress = progress, .base = base,
    };
    return diskimg_copy(&p, errp);
}

/* qemu-img: a format that cannot empty its image (qed, vmdk...) keeps its
 * data; the commit itself succeeded. */
static int empty_top(diskimg_node *top, GError **errp)
{
    GError *err = NULL;
    if (diskimg_node_make_empty(top, &err) == 0)
        return 0;
    if (g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED)) {
        g_error_free(err);
        return 0;
    }
    g_propagate_error(errp, err);
    return -1;
}

static int commit(struct cli *c, diskimg_node *top, GError **errp)
{
    diskimg_node *base = find_base(top, cli_get(c, "base"), errp);
    if (!base)
        return -1;
    uint64_t rate = 0;
    const char *r = cli_get(c, "rate-limit");
    if (r && diskimg_parse_size(r, &rate, NULL) < 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid rate limit specified. You may use k, M, G, T, P or E suffixes "
                    "for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return -1;
    }
    diskimg_node *writer = open_base_writer(c, base, errp);
    if (!writer)
        return -1;
    int64_t size = diskimg_node_size(top, errp);
    int ret = size < 0 || check_probed_base(top, writer, errp) < 0
                  ? -1 : grow_base(writer, (uint64_t)size, errp);
    diskimg_progress *progress = cli_progress_new(c, size > 0 ? (uint64_t)size : 0, "copy");
    if (ret == 0)
        ret = copy_down(c, top, base, writer, rate, progress, errp);
    if (ret == 0) {
        diskimg_progress_set_phase(progress, "flush");
        ret = diskimg_node_flush(writer, errp);
    }
    diskimg_close(writer);
    bool keep = cli_flag(c, "drop") || cli_get(c, "base");
    if (ret == 0 && !keep) {
        diskimg_progress_set_phase(progress, "empty");
        ret = empty_top(top, errp);
    }
    if (ret == 0)
        ret = diskimg_node_flush(top, errp);
    cli_progress_end(progress, ret == 0);
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
    } else if (commit(c, top, &err) < 0) {
        cli_gerror(err);
    } else {
        if (!c->quiet)
            printf("Image committed.\n");
        ret = 0;
    }
    diskimg_close(top);
    return ret;
}
