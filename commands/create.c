/* SPDX-License-Identifier: MIT */
/* diskimg create: a new image, optionally over a backing file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* qemu-img opens the backing file before it formats anything (its error
 * ends with "Could not open backing image."), and takes the size from it
 * when none was given (`size` NULL: not wanted). */
static int open_backing(const char *image, const char *backing, const char *backing_fmt,
                        uint64_t *size, GError **errp)
{
    g_autofree char *path = diskimg_resolve_relative(image, backing);
    struct diskimg_open_params p = { .struct_size = sizeof(p) };
    p.format = backing_fmt;
    p.flags = DISKIMG_OPEN_FORCE_SHARE;
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);
    if (!n) {
        g_set_error(errp, err->domain, err->code, "%s\nCould not open backing image.",
                    cli_open_error_detail(path, err->message));
        g_error_free(err);
        return -1;
    }
    int64_t s = size ? diskimg_node_size(n, errp) : 0;
    diskimg_close(n);
    if (s < 0)
        return -1;
    if (size)
        *size = (uint64_t)s;
    return 0;
}

/* Puts -b/-F into the format's backing_file/backing_fmt options. */
static int add_backing_options(const char *format, diskimg_options *o, const char *backing,
                               const char *backing_fmt, GError **errp)
{
    /* -F applies to -o backing_file= too, as in qemu-img */
    if (!backing && !backing_fmt)
        return 0;
    if (!(diskimg_format_capabilities(format) & DISKIMG_CAP_BACKING)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Backing file not supported for file format '%s'", format);
        return -1;
    }
    if (backing && diskimg_options_set(o, "backing_file", backing, errp) < 0)
        return -1;
    return backing_fmt ? diskimg_options_set(o, "backing_fmt", backing_fmt, errp) : 0;
}

/* qemu-img's "Formatting 'FILE', fmt=FMT ..." line: every format option
 * that is set or has a printed default, in the schema's (qemu's) order,
 * then the file options that were given. */
static void print_formatting(const char *filename, const char *format,
                             const diskimg_options *o, const diskimg_options *file_opts)
{
    g_autofree char *opts = diskimg_options_format_line(o);
    g_autofree char *fopts = file_opts ? diskimg_options_format_line(file_opts) : NULL;
    printf("Formatting '%s', fmt=%s%s%s%s%s\n", filename, format, *opts ? " " : "", opts,
           fopts && *fopts ? " " : "", fopts ? fopts : "");
}

/* create without a backing format: qemu-img probes the backing file, names
 * the format it found and refuses (before printing anything). */
static int refuse_unnamed_backing_format(const char *image, const char *backing, GError **errp)
{
    g_autofree char *path = diskimg_resolve_relative(image, backing);
    struct diskimg_open_params p = { .struct_size = sizeof(p) };
    p.flags = DISKIMG_OPEN_FORCE_SHARE | DISKIMG_OPEN_NO_BACKING;
    diskimg_node *n = diskimg_open(path, &p, errp);
    if (!n)
        return -1;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "%s: Backing file specified without backing format\nDetected format of %s.",
                image, diskimg_node_driver(n));
    diskimg_close(n);
    return -1;
}

/* qemu-img names the new file in front of every creation error. */
static void print_create_error(const char *filename, GError *err)
{
    g_autofree char *prefix = g_strdup_printf("%s: ", filename);
    if (!g_str_has_prefix(err->message, prefix))
        g_prefix_error(&err, "%s", prefix);
    cli_gerror(err);
}

/* A file that cannot grow that far (EFBIG): qemu-img words it as a size
 * the format cannot take, with a hint when a cluster size was given. */
static void too_large_in_qemu_words(GError **err, const char *format, const char *options)
{
    if (!g_str_has_suffix((*err)->message, g_strerror(EFBIG)))
        return;
    bool cluster = options && strstr(options, "cluster_size=");
    g_clear_error(err);
    g_set_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "The image size is too large for file format '%s'%s", format,
                cluster ? " (try using a larger cluster size)" : "");
}

int cmd_create(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    const char *format = cli_get(c, "format");
    const char *filename = c->args[0];
    const char *backing = cli_get(c, "backing"), *backing_fmt = cli_get(c, "backing-format");
    g_autofree char *text = cli_joined(c, "options");
    GError *err = NULL;
    if (diskimg_format_require(format, &err) < 0) {
        if (filename)
            print_create_error(filename, err);
        else
            cli_gerror(err);
        return 1;
    }
    if (text && diskimg_options_text_wants_help(text)) {
        if (cli_require_creatable(format, &err) < 0) {
            cli_gerror(err);    /* without the file name, as qemu-img */
            return 1;
        }
        cli_print_options_help(format, "create-options", c->nargs > 0 ? c->args[0] : NULL);
        return 0;
    }
    uint64_t size = 0;
    bool have_size = c->nargs > 1;
    if (have_size && cli_parse_size(c->args[1], &size, NULL))
        return 1;
    /* qemu-img checks the size argument before the format's abilities,
     * and those before the protocol's. */
    if (cli_require_creatable(format, &err) < 0 ||
        diskimg_protocol_check_create(filename, &err) < 0) {
        print_create_error(filename, err);
        return 1;
    }
    diskimg_options *file_opts = NULL;
    g_autofree char *size_text = NULL;
    GError *refused = NULL;   /* reported after the Formatting line, as qemu-img */
    diskimg_options *o = cli_create_options(format, text, filename, &file_opts, &refused, &err);
    if (!o || add_backing_options(format, o, backing, backing_fmt, &err) < 0)
        goto fail;
    if (have_size && diskimg_options_has(o, "size")) {
        g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "The image size must be specified only once");
        goto fail;
    }
    /* -o backing_file=... counts as -b, as in qemu-img. */
    if (!backing && diskimg_options_has(o, "backing_file"))
        backing = diskimg_options_get_str(o, "backing_file");
    if (!backing_fmt && diskimg_options_has(o, "backing_fmt"))
        backing_fmt = diskimg_options_get_str(o, "backing_fmt");
    if (backing && *backing && !backing_fmt && !cli_flag(c, "unsafe") &&
        refuse_unnamed_backing_format(filename, backing, &err) < 0)
        goto fail;
    if (backing && *backing && backing_fmt && !cli_flag(c, "unsafe") &&
        diskimg_format_require(backing_fmt, NULL) < 0) {
        /* qemu-img opens the backing file with that driver */
        g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Unknown driver '%s'\nCould not open backing image.", backing_fmt);
        goto fail;
    }
    if (!have_size && diskimg_options_has(o, "size")) {
        size = diskimg_options_get_uint(o, "size", 0);
        have_size = true;
    }
    if (backing && *backing && !cli_flag(c, "unsafe")) {
        if (open_backing(filename, backing, backing_fmt, have_size ? NULL : &size, &err) < 0)
            goto fail;
        have_size = true;
    }
    if (!have_size) {
        g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: Image creation needs a size parameter", filename);
        goto fail;
    }
    size_text = g_strdup_printf("%" PRIu64, size);
    if (diskimg_options_set(o, "size", size_text, &err) < 0)
        goto fail;
    if (!c->quiet)
        print_formatting(filename, format, o, file_opts);
    if (refused) {
        g_propagate_error(&err, g_steal_pointer(&refused));
        goto fail;
    }
    struct diskimg_create_params p = {
        .struct_size = sizeof(p),
        .format = format,
        .options = o,
        .size = size,
        .flags = cli_flag(c, "unsafe") ? DISKIMG_CREATE_UNSAFE : 0,
        .file_options = file_opts,
    };
    if (diskimg_create(filename, &p, &err) < 0) {
        too_large_in_qemu_words(&err, format, text);
        goto fail;
    }
    diskimg_options_free(o);
    diskimg_options_free(file_opts);
    return 0;
fail:
    g_clear_error(&refused);
    diskimg_options_free(o);
    diskimg_options_free(file_opts);
    print_create_error(filename, err);
    return 1;
}
