/* SPDX-License-Identifier: MIT */
/* diskimg amend: change format options of an existing image. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* The plugins' amend reports no progress of its own: the bar goes from 0
 * to 100 % as qemu-img's does for an amendment without a rewrite. */
static int amend(struct cli *c, diskimg_node *n, const diskimg_options *opts, GError **errp)
{
    int64_t size = diskimg_node_size(n, errp);
    if (size < 0)
        return 1;
    diskimg_progress *progress = cli_progress_new(c, (uint64_t)size, "amend");
    int ret = diskimg_node_amend(n, opts, cli_flag(c, "force"), errp);
    if (ret == 0) {
        diskimg_progress_set_phase(progress, "flush");
        ret = diskimg_node_flush(n, errp);
    }
    cli_progress_end(progress, ret == 0);
    return ret < 0 ? 1 : 0;
}

static int amend_help(const char *format)
{
    if (!diskimg_format_has_op(format, "amend")) {
        cli_error("Format driver '%s' does not support option amendment", format);
        return 1;
    }
    cli_print_options_help(format, "amend-options", NULL);
    return 0;
}

int cmd_amend(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    g_autofree char *text = cli_joined(c, "options");
    if (!text) {
        cli_error("Must specify options (-o)");
        return 1;
    }
    GError *err = NULL;
    const char *format = cli_get(c, "format");
    bool help = diskimg_options_text_wants_help(text);
    if (help && format) {
        if (diskimg_format_require(format, &err) < 0) {
            cli_gerror(err);
            return 1;
        }
        return amend_help(format);
    }
    if (c->nargs != 1) {
        cli_error("Expecting one image file name");
        return 1;
    }
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = true;
    o.force_share = false;
    o.no_backing = true;
    o.cache = cli_get(c, "cache");
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    if (!n) {
        cli_gerror(err);
        return 1;
    }
    format = diskimg_node_driver(n);
    int ret = 1;
    diskimg_options *opts = NULL;
    if (help) {
        /* qemu-img reads the format from the image for -o help */
        ret = amend_help(format);
        goto out;
    }
    if (!diskimg_format_has_op(format, "amend")) {
        cli_error("Format driver '%s' does not support option amendment", format);
        goto out;
    }
    opts = diskimg_options_new(diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format),
                               "amend-options");
    if (diskimg_options_parse(opts, text, &err) < 0) {
        cli_gerror(err);
        goto out;
    }
    ret = amend(c, n, opts, &err);
    if (ret)
        cli_gerror(err);
out:
    diskimg_options_free(opts);
    diskimg_close(n);
    return ret;
}
