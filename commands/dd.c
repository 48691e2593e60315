/* SPDX-License-Identifier: MIT */
/* diskimg dd: copy blocks from an input image into a new output image. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct dd_args {
    uint64_t bs, count, skip;
    bool has_count;
    const char *in, *out;
};

static int parse_number(const char *key, const char *value, uint64_t *out, bool is_size)
{
    GError *err = NULL;
    if (diskimg_parse_size(value, out, &err) < 0) {
        g_clear_error(&err);
        return cli_parse_size(value, out, key);
    }
    if (is_size && (*out == 0 || *out > INT32_MAX)) {
        cli_error("Invalid %s specified. Must be between 1 and %d.", key, INT32_MAX);
        return 1;
    }
    return 0;
}

static int parse_operands(struct cli *c, struct dd_args *a)
{
    a->bs = 512;
    for (int i = 0; i < c->nargs; i++) {
        const char *arg = c->args[i];
        const char *eq = strchr(arg, '=');
        if (!eq) {
            cli_error("unrecognized operand %s", arg);
            return 1;
        }
        g_autofree char *key = g_strndup(arg, (gsize)(eq - arg));
        const char *v = eq + 1;
        if (g_str_equal(key, "bs")) {
            if (parse_number(key, v, &a->bs, true))
                return 1;
        } else if (g_str_equal(key, "count")) {
            if (parse_number(key, v, &a->count, false))
                return 1;
            a->has_count = true;
        } else if (g_str_equal(key, "skip")) {
            if (parse_number(key, v, &a->skip, false))
                return 1;
        } else if (g_str_equal(key, "if")) {
            a->in = v;
        } else if (g_str_equal(key, "of")) {
            a->out = v;
        } else {
            cli_error("unrecognized operand %s", key);   /* qemu names the key only */
            return 1;
        }
    }
    if (!a->in || !a->out) {
        cli_error("Must specify both input and output files");
        return 1;
    }
    return 0;
}

/* dd has no -p (as qemu-img), but --progress-fd and SIGUSR1 see it. */
static int copy(const struct cli *c, struct diskimg_copy_params *cp, GError **errp)
{
    cp->progress = cli_progress_new(c, cp->length, "copy");
    int ret = cp->length ? diskimg_copy(cp, errp) : 0;
    if (ret == 0) {
        diskimg_progress_set_phase(cp->progress, "flush");
        ret = diskimg_node_flush(cp->target, errp);
    }
    cli_progress_end(cp->progress, ret == 0);
    return ret;
}

/* qemu-img dd names no format in its refusal; our hint of the package that
 * would provide the format is worth the longer line. */
static int require_output_format(const char *format)
{
    GError *err = NULL;
    if (diskimg_format_require(format, &err) == 0 && cli_require_creatable(format, &err) == 0)
        return 0;
    if (err->code == DISKIMG_ERROR_NO_PLUGIN && !strstr(err->message, "(install package"))
        cli_error("Unknown file format");
    else
        cli_error("%s", err->message);
    g_clear_error(&err);
    return 1;
}

int cmd_dd(struct cli *c)
{
    struct dd_args a = { 0 };
    if (cli_objects(c) || parse_operands(c, &a))
        return 1;
    const char *out_format = cli_get(c, "output-format");
    struct cli_open o;
    cli_open_defaults(c, &o);
    GError *err = NULL;
    diskimg_node *in = cli_open_image(a.in, &o, &err), *out = NULL;
    int64_t in_size = in ? diskimg_node_size(in, &err) : -1;
    int ret = 1;
    if (in_size < 0)
        goto fail;
    /* qemu-img counts count= blocks from the start of the input, not from
     * the skip point: the copy ends at min(count*bs, size).  Kept for
     * compatibility (docs/compatibility.md). */
    uint64_t end = (uint64_t)in_size;
    if (a.has_count && a.count <= UINT64_MAX / a.bs)
        end = MIN(end, a.count * a.bs);
    uint64_t start = a.skip <= UINT64_MAX / a.bs ? a.skip * a.bs : UINT64_MAX;
    uint64_t len = start < end ? end - start : 0;
    if (require_output_format(out_format))
        goto out;
    /* qemu-img warns and goes on with an empty output */
    if (start > (uint64_t)in_size)
        cli_error("%s: cannot skip to specified offset", a.in);
    struct diskimg_create_params p = { .struct_size = sizeof(p), .format = out_format,
                                       .size = len };
    if (diskimg_create(a.out, &p, &err) < 0) {
        cli_error("%s: error while creating output image: %s", a.out, err->message);
        g_clear_error(&err);
        goto out;
    }
    struct cli_open oo = { .format = out_format, .writable = true, .no_backing = true };
    out = cli_open_image(a.out, &oo, &err);
    if (!out)
        goto fail;
    diskimg_node *sources[] = { in };
    struct diskimg_copy_params cp = {
        .struct_size = sizeof(cp), .sources = sources, .n_sources = 1, .target = out,
        .source_offset = start, .length = len, .sparse_size = 4096,
        .target_is_zero = (diskimg_node_capabilities(out) & DISKIMG_CAP_ZERO_INIT) != 0,
    };
    ret = copy(c, &cp, &err) < 0 ? 1 : 0;
fail:
    if (ret)
        cli_gerror(err);
out:
    diskimg_close(out);
    diskimg_close(in);
    return ret;
}
