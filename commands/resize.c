/* SPDX-License-Identifier: MIT */
/* diskimg resize: grow, or with --shrink shrink, the virtual size. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* The SIZE argument: an optional sign, then a size read as qemu's QemuOpts
 * reads its 'size' parameter (and with its words when it cannot). */
static int parse_size_argument(const char *arg, int *sign, int64_t *n)
{
    *sign = arg[0] == '+' ? 1 : arg[0] == '-' ? -1 : 0;
    uint64_t v;
    if (cli_parse_size_parameter(arg + (*sign != 0), "size", &v))
        return 1;
    /* qemu keeps the size in a signed variable: past 2^63 it goes negative
     * and is then refused as not positive. */
    *n = (int64_t)v;
    return 0;
}

/* The new size, computed as qemu-img does (wrapping included); <= 0 is refused. */
static int64_t target_size(int sign, int64_t n, int64_t current)
{
    if (!sign)
        return n;
    uint64_t delta = sign > 0 ? (uint64_t)n : 0 - (uint64_t)n;
    return (int64_t)((uint64_t)current + delta);
}

/* qemu-img's checks, in its order, before anything changes. */
static int check_new_size(int64_t size, int64_t current, enum diskimg_prealloc prealloc,
                          bool shrink_allowed)
{
    if (size <= 0) {
        cli_error("New image size must be positive");
        return 1;
    }
    if (size <= current && prealloc != DISKIMG_PREALLOC_OFF) {
        cli_error("Preallocation can only be used for growing images");
        return 1;
    }
    if (size < current && !shrink_allowed) {
        cli_error("Use the --shrink option to perform a shrink operation.");
        diskimg_warn("warning: Shrinking an image will delete all data beyond the shrunken "
                     "image's end. Before performing such an operation, make sure there is no "
                     "important data there.");
        return 1;
    }
    return 0;
}

int cmd_resize(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    enum diskimg_prealloc prealloc = DISKIMG_PREALLOC_OFF;
    GError *err = NULL;
    const char *p = cli_get(c, "preallocation");
    if (p && diskimg_prealloc_parse(p, &prealloc, &err) < 0) {
        cli_gerror(err);
        return 1;
    }
    /* qemu-img reads SIZE before it opens the image */
    int sign;
    int64_t n;
    if (parse_size_argument(c->args[1], &sign, &n))
        return 1;
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = true;
    o.force_share = false;
    o.no_backing = true;
    diskimg_node *node = cli_open_image(c->args[0], &o, &err);
    int64_t current = node ? diskimg_node_size(node, &err) : -1;
    int ret = 1;
    if (current < 0) {
        cli_gerror(err);
        goto out;
    }
    int64_t size = target_size(sign, n, current);
    if (check_new_size(size, current, prealloc, cli_flag(c, "shrink")))
        goto out;
    unsigned flags = size < current ? DISKIMG_TRUNCATE_SHRINK : 0;
    if (diskimg_node_truncate(node, (uint64_t)size, prealloc, flags, &err) < 0 ||
        diskimg_node_flush(node, &err) < 0) {
        cli_gerror(err);
        goto out;
    }
    if (!c->quiet)
        printf("Image resized.\n");
    ret = 0;
out:
    diskimg_close(node);
    return ret;
}
