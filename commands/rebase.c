/* SPDX-License-Identifier: MIT */
/*
 * diskimg rebase: point an image at another backing file.  Safe mode first
 * copies into the image every range it does not allocate itself where the
 * old and the new backing chains differ, so the guest view is unchanged;
 * -u only rewrites the name.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CHUNK (1u << 20)
#define SECTOR 512

static diskimg_node *open_new_backing(struct cli *c, const char *image, const char *name,
                                      const char *format, GError **errp)
{
    g_autofree char *path = diskimg_resolve_relative(image, name);
    struct cli_open o = { .format = format, .force_share = cli_flag(c, "force-share"),
                          .cache = cli_get(c, "source-cache") };
    diskimg_node *n = cli_open_image(path, &o, errp);
    if (!n)
        g_prefix_error(errp, "Could not open new backing file '%s': ", name);
    return n;
}

/* What the new backing shows at [off, off+len): zeroes past its end. */
static int read_new(diskimg_node *nb, uint8_t *buf, uint64_t off, uint64_t len, GError **errp)
{
    uint64_t have = 0;
    if (nb) {
        int64_t size = diskimg_node_size(nb, errp);
        if (size < 0)
            return -1;
        if (off < (uint64_t)size)
            have = MIN(len, (uint64_t)size - off);
        if (have && diskimg_node_pread(nb, buf, have, off, errp) < 0)
            return -1;
    }
    memset(buf + have, 0, len - have);
    return 0;
}

/* Writes the sector runs where old and new differ into the image. */
static int write_differences(diskimg_node *img, const uint8_t *old, const uint8_t *nw,
                             uint64_t off, uint64_t len, GError **errp)
{
    uint64_t i = 0;
    while (i < len) {
        uint64_t n = MIN(SECTOR, len - i);
        if (!memcmp(old + i, nw + i, n)) {
            i += n;
            continue;
        }
        uint64_t run = n;
        while (i + run < len) {
            uint64_t m = MIN(SECTOR, len - i - run);
            if (!memcmp(old + i + run, nw + i + run, m))
                break;
            run += m;
        }
        if (diskimg_node_pwrite(img, old + i, run, off + i, 0, errp) < 0)
            return -1;
        i += run;
    }
    return 0;
}

static int copy_differences(diskimg_node *img, diskimg_node *nb, diskimg_progress *progress,
                            GError **errp)
{
    int64_t size = diskimg_node_size(img, errp);
    if (size < 0)
        return -1;
    uint8_t *old = diskimg_alloc_aligned(CHUNK), *nw = diskimg_alloc_aligned(CHUNK);
    int ret = 0;
    for (uint64_t off = 0; off < (uint64_t)size && ret == 0;) {
        struct diskimg_extent e;
        ret = diskimg_node_block_status(img, off, MIN((uint64_t)size - off, CHUNK), &e, errp);
        if (ret < 0)
            break;
        if (!(e.flags & DISKIMG_BS_ALLOCATED)) {
            ret = diskimg_node_read_backing(img, old, e.length, off, errp);
            if (ret == 0)
                ret = read_new(nb, nw, off, e.length, errp);
            if (ret == 0)
                ret = write_differences(img, old, nw, off, e.length, errp);
        }
        diskimg_progress_add(progress, e.length);
        off += e.length;
    }
    diskimg_free_aligned(old);
    diskimg_free_aligned(nw);
    return ret;
}

static int rebase(struct cli *c, diskimg_node *img, const char *name, GError **errp)
{
    bool unsafe = cli_flag(c, "unsafe");
    const char *format = cli_get(c, "backing-format");
    diskimg_node *nb = NULL;
    int ret = 0;
    if (*name && (!unsafe || !format)) {
        nb = open_new_backing(c, diskimg_node_filename(img), name, format, errp);
        if (!nb) {
            if (unsafe)
                g_prefix_error(errp, "Could not change the backing file to '%s': ", name);
            return -1;
        }
        if (!format)
            format = diskimg_node_driver(nb);
    }
    if (!unsafe) {
        diskimg_progress *progress = diskimg_progress_new(
            cli_flag(c, "progress") && !c->quiet ? DISKIMG_PROGRESS_BAR
                                                 : DISKIMG_PROGRESS_QUIET, 0);
        int64_t size = diskimg_node_size(img, NULL);
        diskimg_progress_set_total(progress, size > 0 ? (uint64_t)size : 0);
        ret = copy_differences(img, nb, progress, errp);
        diskimg_progress_finish(progress);
    }
    if (ret == 0)
        ret = diskimg_node_set_backing(img, *name ? name : NULL, *name ? format : NULL, errp);
    if (ret < 0 && errp && *errp && !g_str_has_prefix((*errp)->message, "Could not"))
        g_prefix_error(errp, "Could not change the backing file to '%s': ", name);
    diskimg_close(nb);
    return ret;
}

int cmd_rebase(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    const char *name = cli_get(c, "backing");
    if (!name) {
        cli_error("Must specify backing file (-b) or use '' as the backing file");
        return 1;
    }
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.force_share = false;
    o.writable = true;
    o.cache = cli_get(c, "cache");
    o.no_backing = cli_flag(c, "unsafe");
    GError *err = NULL;
    diskimg_node *img = cli_open_image(c->args[0], &o, &err);
    if (!img) {
        cli_gerror(err);
        return 1;
    }
    int ret = 0;
    if (rebase(c, img, name, &err) < 0 || diskimg_node_flush(img, &err) < 0) {
        cli_gerror(err);
        ret = 1;
    }
    diskimg_close(img);
    return ret;
}
