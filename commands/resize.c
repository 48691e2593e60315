/* SPDX-License-Identifier: MIT */
/* diskimg resize: grow, or with --shrink shrink, the virtual size. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* "+SIZE", "-SIZE" or "SIZE" relative to the current size. */
static int new_size(const char *arg, uint64_t current, uint64_t *out)
{
    int sign = 0;
    if (arg[0] == '+' || arg[0] == '-') {
        sign = arg[0] == '+' ? 1 : -1;
        arg++;
    }
    uint64_t n;
    GError *err = NULL;
    if (diskimg_parse_size(arg, &n, &err) < 0 || n > INT64_MAX) {
        g_clear_error(&err);
        cli_error("Invalid size specified.");
        return 1;
    }
    if (sign < 0 && n > current) {
        cli_error("New image size must be positive");
        return 1;
    }
    *out = sign > 0 ? current + n : sign < 0 ? current - n : n;
    if (*out > INT64_MAX) {
        cli_error("Invalid size specified.");
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
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = true;
    o.force_share = false;
    o.no_backing = true;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    int64_t current = n ? diskimg_node_size(n, &err) : -1;
    uint64_t size;
    int ret = 1;
    if (current < 0) {
        cli_gerror(err);
        goto out;
    }
    if (new_size(c->args[1], (uint64_t)current, &size))
        goto out;
    bool shrink = size < (uint64_t)current;
    if (shrink && !cli_flag(c, "shrink")) {
        cli_error("Use the --shrink option to perform a shrink operation.");
        diskimg_warn("warning: Shrinking an image will delete all data beyond the shrunken "
                     "image's end. Before performing such an operation, make sure there is no "
                     "important data there.");
        goto out;
    }
    if (shrink && prealloc != DISKIMG_PREALLOC_OFF) {
        cli_error("Preallocation can only be used for growing images");
        goto out;
    }
    if (diskimg_node_truncate(n, size, prealloc, shrink ? DISKIMG_TRUNCATE_SHRINK : 0, &err) < 0 ||
        diskimg_node_flush(n, &err) < 0) {
        cli_gerror(err);
        goto out;
    }
    if (!c->quiet)
        printf("Image resized.\n");
    ret = 0;
out:
    diskimg_close(n);
    return ret;
}
