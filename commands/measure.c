/* SPDX-License-Identifier: MIT */
/* diskimg measure: file size a new image needs (BlockMeasureInfo). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_result(const struct diskimg_measure_result *r, enum cli_output output)
{
    if (output == CLI_OUTPUT_HUMAN) {
        printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n", r->required,
               r->fully_allocated);
        if (r->has_bitmaps)
            printf("bitmaps size: %" PRIu64 "\n", r->bitmaps);
        return;
    }
    JsonObject *o = json_object_new();
    if (r->has_bitmaps)
        json_object_set_int_member(o, "bitmaps", (gint64)r->bitmaps);
    json_object_set_int_member(o, "required", (gint64)r->required);
    json_object_set_int_member(o, "fully-allocated", (gint64)r->fully_allocated);
    cli_print_typed("BlockMeasureInfo", o);
}

int cmd_measure(struct cli *c)
{
    enum cli_output output;
    if (cli_output_format(c, &output) || cli_objects(c))
        return 1;
    const char *format = cli_get(c, "output-format");
    const char *size_text = cli_get(c, "size");
    g_autofree char *text = cli_joined(c, "options");
    GError *err = NULL;
    if (diskimg_format_require(format, &err) < 0) {
        cli_gerror(err);
        return 1;
    }
    if (text && diskimg_options_text_wants_help(text)) {
        if (cli_require_creatable(format, &err) < 0) {
            cli_gerror(err);
            return 1;
        }
        cli_print_options_help(format, "create-options", NULL);
        return 0;
    }
    if (size_text && c->nargs > 0) {
        cli_error("--size N cannot be used together with a filename.");
        return 1;
    }
    if (!size_text && c->nargs == 0) {
        cli_error("Either --size N or one filename must be specified.");
        return 1;
    }
    struct diskimg_measure_args args = { .struct_size = sizeof(args) };
    if (size_text && cli_parse_size(size_text, &args.size, NULL))
        return 1;
    /* Only a format that can create images can be measured (qemu-img's
     * check, after the size). */
    if (cli_require_creatable(format, &err) < 0) {
        cli_gerror(err);
        return 1;
    }
    diskimg_options *o = cli_create_options(format, text, NULL, NULL, NULL, &err);
    diskimg_node *src = NULL;
    int ret = 1;
    if (!o)
        goto out;
    args.options = o;
    if (c->nargs > 0) {
        struct cli_open oo;
        cli_open_defaults(c, &oo);
        src = cli_open_image(c->args[0], &oo, &err);
        if (!src)
            goto out;
        if (cli_get(c, "snapshot") && cli_load_snapshot(src, cli_get(c, "snapshot"), &err) < 0)
            goto out;
        int64_t s = diskimg_node_size(src, &err);
        if (s < 0)
            goto out;
        args.size = (uint64_t)s;
        args.source = src;
    }
    struct diskimg_measure_result r = { .struct_size = sizeof(r) };
    if (diskimg_measure(format, &args, &r, &err) < 0)
        goto out;
    print_result(&r, output);
    ret = 0;
out:
    if (ret)
        cli_gerror(err);
    diskimg_close(src);
    diskimg_options_free(o);
    return ret;
}
