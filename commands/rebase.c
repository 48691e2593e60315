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

static diskimg_node *open_new_backing(struct cli *c, const char *image, const char *name,
                                      const char *format, GError **errp)
{
    g_autofree char *path = diskimg_resolve_relative(image, name);
    struct cli_open o = { .format = format, .force_share = cli_flag(c, "force-share"),
                          .cache = cli_get(c, "source-cache"),
                          .source_cache = true };
    GError *err = NULL;
    diskimg_node *n = cli_open_image(path, &o, &err);
    if (n)
        return n;
    g_set_error(errp, err->domain, err->code, "Could not open new backing file '%s': %s", name,
                cli_open_error_detail(path, err->message));
    g_error_free(err);
    return NULL;
}

/* The copy engine in rebase mode: the image is both the source (read
 * through its old chain) and the target; only what it does not allocate
 * itself and where the old chain and the new backing (`nb`, or zeroes for
 * no backing) differ is written, so its guest view stays the same. */
static int copy_differences(struct cli *c, diskimg_node *img, diskimg_node *nb,
                            diskimg_progress *progress, GError **errp)
{
    diskimg_node *sources[] = { img };
    struct diskimg_copy_params p = {
        .struct_size = sizeof(p), .sources = sources, .n_sources = 1, .target = img,
        .sparse_size = cli_cluster_size(img), .quiet = c->quiet, .progress = progress,
        .only_unallocated = true, .differences_against = nb,
        .differences_against_zeroes = nb == NULL,
    };
    return diskimg_copy(&p, errp);
}

static int rebase(struct cli *c, diskimg_node *img, const char *name, GError **errp)
{
    bool unsafe = cli_flag(c, "unsafe");
    const char *format = cli_get(c, "backing-format");
    diskimg_node *nb = NULL;
    int ret = 0;
    /* qemu-img 7.2 refuses a new backing file without its format (only
     * after copying the data in safe mode; we refuse before). */
    if (*name && !format) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Could not change the backing file to '%s': backing format must be "
                    "specified", name);
        return -1;
    }
    if (*name && !unsafe) {
        nb = open_new_backing(c, diskimg_node_filename(img), name, format, errp);
        if (!nb) {
            if (unsafe)
                g_prefix_error(errp, "Could not change the backing file to '%s': ", name);
            return -1;
        }
    }
    /* -u copies nothing, yet shows its bar from 0 to 100 as qemu-img */
    int64_t size = diskimg_node_size(img, errp);
    if (size < 0) {
        diskimg_close(nb);
        return -1;
    }
    diskimg_progress *progress = cli_progress_new(c, unsafe ? 0 : (uint64_t)size, "copy");
    if (!unsafe)
        ret = copy_differences(c, img, nb, progress, errp);
    if (ret == 0) {
        diskimg_progress_set_phase(progress, "backing");
        ret = diskimg_node_set_backing(img, *name ? name : NULL, *name ? format : NULL, errp);
    }
    if (ret < 0 && errp && *errp && !g_str_has_prefix((*errp)->message, "Could not"))
        g_prefix_error(errp, "Could not change the backing file to '%s': ", name);
    if (ret == 0) {
        diskimg_progress_set_phase(progress, "flush");
        ret = diskimg_node_flush(img, errp);
    }
    cli_progress_end(progress, ret == 0);
    diskimg_close(nb);
    return ret;
}

int cmd_rebase(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    /* -u without -b drops the backing file, as with qemu-img */
    const char *name = cli_get(c, "backing");
    if (!name && !cli_flag(c, "unsafe"))
        return cli_usage_error("Must specify backing file (-b) or use unsafe mode (-u)");
    if (!name)
        name = "";
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
    const char *format = cli_get(c, "backing-format");
    if (format && diskimg_format_require(format, NULL) < 0) {
        cli_error("Invalid format name: '%s'", format);
        diskimg_close(img);
        return 1;
    }
    if (rebase(c, img, name, &err) < 0) {
        cli_gerror(err);
        ret = 1;
    }
    diskimg_close(img);
    return ret;
}
