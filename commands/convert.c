/* SPDX-License-Identifier: MIT */
/*
 * diskimg convert: sources (concatenated) -> a new or existing target.
 * The copying itself is the core's engine (diskimg_copy); this file turns
 * the qemu-img flags into its parameters and manages the target's life:
 * a target this command created is removed again if the copy fails.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_SPARSE_SIZE (16u << 20)

struct convert_job {
    const char *out_format;
    const char *target;
    diskimg_node **sources;
    size_t n_sources;
    uint64_t total_size;
    uint64_t sparse_size;
    unsigned parallel;
    uint64_t rate_limit;
    bool created;
    diskimg_options *target_open;  /* key secrets of the create options */
    char *backing_file;            /* of the new target (-B or -o backing_file) */
    GError *refused;               /* a -o value the format refuses (reported at creation) */
};

static int parse_numbers(struct cli *c, struct convert_job *j)
{
    j->sparse_size = 4096;
    const char *s = cli_get(c, "sparse-size");
    if (s) {
        uint64_t v;
        GError *err = NULL;
        if (diskimg_parse_size(s, &v, &err) < 0) {
            g_clear_error(&err);
            return cli_parse_size(s, &v, "buffer size for sparse output");
        }
        if (v % 512 || v > MAX_SPARSE_SIZE) {
            cli_error("Invalid buffer size for sparse output specified. Valid sizes are "
                      "multiples of 512 up to 16777216. Select 0 to disable sparse detection "
                      "(fully allocates output).");
            return 1;
        }
        j->sparse_size = v;
    }
    j->parallel = 8;
    const char *m = cli_get(c, "parallel");
    if (m) {
        char *end;
        long v = strtol(m, &end, 10);
        if (*end || v < 1 || v > 16) {
            cli_error("Invalid number of coroutines. Allowed number of coroutines is between "
                      "1 and 16");
            return 1;
        }
        j->parallel = (unsigned)v;
    }
    const char *r = cli_get(c, "rate-limit");
    if (r && (cli_parse_size(r, &j->rate_limit, "rate limit")))
        return 1;
    return 0;
}

/* The flag checks of qemu-img 7.2's convert, in its order and words. */
static int check_flag_combinations(struct cli *c)
{
    bool no_create = cli_flag(c, "no-create");
    if (cli_flag(c, "skip-broken-bitmaps") && !cli_flag(c, "bitmaps")) {
        cli_error("Use of --skip-broken-bitmaps requires --bitmaps");
        return 1;
    }
    if (cli_flag(c, "copy-offload") && cli_flag(c, "compress")) {
        cli_error("Copy offloading is not possible with compression");
        return 1;
    }
    if (cli_flag(c, "target-image-opts") && !no_create) {
        cli_error("--target-image-opts requires use of -n flag");
        return 1;
    }
    if (no_create && cli_flag(c, "options")) {
        cli_error("-o has no effect when skipping image creation");
        return 1;
    }
    if (cli_flag(c, "target-is-zero") && !no_create) {
        cli_error("--target-is-zero requires use of -n flag");
        return 1;
    }
    if (cli_get(c, "backing") && no_create) {
        cli_error("-B makes no sense when concatenating multiple input images");
        return 1;
    }
    return 0;
}

/* Errors of creating the target read "TARGET: error while converting FMT:
 * why" (qemu reports its driver's create errors so); errors qemu's option
 * parser finds first (unknown keys, mistyped values) stay bare. */
static void prefix_create_error(GError *err, const struct convert_job *j)
{
    if (!err)
        return;
    /* The core may already name the file ("TARGET: why"). */
    g_autofree char *named = g_strdup_printf("%s: ", j->target);
    g_autofree char *why = g_strdup(g_str_has_prefix(err->message, named)
                                        ? err->message + strlen(named) : err->message);
    g_free(err->message);
    err->message = g_strdup_printf("%s: error while converting %s: %s", j->target,
                                   j->out_format, why);
}

static int open_sources(struct cli *c, struct convert_job *j, GError **errp)
{
    j->n_sources = (size_t)c->nargs - 1;
    j->sources = g_new0(diskimg_node *, j->n_sources);
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.cache = cli_get(c, "source-cache");
    o.source_cache = true;
    for (size_t i = 0; i < j->n_sources; i++) {
        j->sources[i] = cli_open_image(c->args[i], &o, errp);
        if (!j->sources[i])
            return -1;
        int64_t size = diskimg_node_size(j->sources[i], errp);
        if (size < 0)
            return -1;
        j->total_size += (uint64_t)size;
    }
    const char *snap = cli_get(c, "snapshot");
    if (snap) {
        if (j->n_sources != 1) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "No support for concatenating multiple snapshot");
            return -1;
        }
        return cli_load_snapshot(j->sources[0], snap, errp);
    }
    return 0;
}

static diskimg_options *target_options(struct cli *c, struct convert_job *j,
                                       diskimg_options **file_opts, GError **errp)
{
    g_autofree char *text = cli_joined(c, "options");
    diskimg_options *o = cli_create_options(j->out_format, text, j->target, file_opts, &j->refused,
                                            errp);
    if (!o)
        return NULL;
    const char *backing = cli_get(c, "backing");
    const char *backing_fmt = cli_get(c, "backing-format");
    if (backing) {
        if (!(diskimg_format_capabilities(j->out_format) & DISKIMG_CAP_BACKING)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                        "Backing file not supported for file format '%s'", j->out_format);
            goto fail;
        }
        if (diskimg_options_set(o, "backing_file", backing, errp) < 0)
            goto fail;
    }
    /* -F alone goes to the format too, which refuses it without a backing
     * file (qemu-img's add_old_style_options). */
    if (backing_fmt && (diskimg_format_capabilities(j->out_format) & DISKIMG_CAP_BACKING) &&
        diskimg_options_set(o, "backing_fmt", backing_fmt, errp) < 0)
        goto fail;
    const char *backing_file = diskimg_options_has(o, "backing_file")
                                   ? diskimg_options_get_str(o, "backing_file") : NULL;
    if (backing_file && !diskimg_options_has(o, "backing_fmt")) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Use of backing file requires explicit backing format");
        goto fail;
    }
    j->backing_file = backing_file ? g_strdup(backing_file) : NULL;
    return o;
fail:
    diskimg_options_free(o);
    diskimg_options_free(*file_opts);
    *file_opts = NULL;
    return NULL;
}

/* qemu-img's img_add_key_secrets: the target this command creates is
 * opened with the create options' key secrets (encrypt.key-secret...). */
static diskimg_options *key_secret_options(const char *format, const diskimg_options *create)
{
    const diskimg_schema *schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    if (!schema || !diskimg_schema_has_set(schema, "open-options"))
        return NULL;
    g_auto(GStrv) keys = diskimg_schema_set_keys(schema, "create-options");
    diskimg_options *open = NULL;
    for (char **k = keys; k && *k; k++) {
        if (!g_str_has_suffix(*k, "key-secret") || !diskimg_options_has(create, *k))
            continue;
        if (!open)
            open = diskimg_options_new(schema, "open-options");
        /* a key the open options lack is simply not passed on */
        (void)diskimg_options_set(open, *k, diskimg_options_get_str(create, *k), NULL);
    }
    return open;
}

static int create_target(struct cli *c, struct convert_job *j, GError **errp)
{
    /* Before the target's options, and without its name, as qemu-img. */
    if (diskimg_protocol_check_create(j->target, errp) < 0)
        return -1;
    diskimg_options *file_opts = NULL;
    diskimg_options *o = target_options(c, j, &file_opts, errp);
    if (!o)
        return -1;
    bool refused = true;
    if (cli_flag(c, "compress") && !diskimg_format_has_op(j->out_format, "write_compressed"))
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Compression not supported for this file format");
    else if (cli_flag(c, "bitmaps") && !diskimg_format_has_op(j->out_format, "bitmap_add"))
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Format driver '%s' does not support bitmaps", j->out_format);
    else if (j->refused) {
        g_propagate_error(errp, g_steal_pointer(&j->refused));
        prefix_create_error(*errp, j);
    } else
        refused = false;
    if (refused) {
        diskimg_options_free(o);
        diskimg_options_free(file_opts);
        return -1;
    }
    /* As qemu-img's convert, creating does not open the backing file; the
     * target's open does, below. */
    struct diskimg_create_params p = {
        .struct_size = sizeof(p),
        .format = j->out_format,
        .options = o,
        .size = j->total_size,
        .flags = DISKIMG_CREATE_UNSAFE,
        .file_options = file_opts,
    };
    int ret = diskimg_create(j->target, &p, errp);
    if (ret < 0)
        prefix_create_error(*errp, j);
    if (ret == 0) {
        j->created = true;
        j->target_open = key_secret_options(j->out_format, o);
    }
    diskimg_options_free(o);
    diskimg_options_free(file_opts);
    return ret;
}

static diskimg_node *open_target(struct cli *c, struct convert_job *j, GError **errp)
{
    struct cli_open o = { 0 };
    o.image_opts = cli_flag(c, "target-image-opts");
    /* -O defaults to raw only for a target named by file name */
    o.format = o.image_opts && !cli_flag(c, "output-format") ? NULL : j->out_format;
    o.writable = true;
    /* A new target with a backing file opens it as qemu-img does, so that
     * a missing one fails here; the copy itself never reads it. */
    o.no_backing = !(j->created && j->backing_file);
    o.backing_format = NULL;
    o.cache = cli_get(c, "cache") ? cli_get(c, "cache") : "unsafe";
    o.format_options = j->target_open;
    diskimg_node *t = cli_open_image(j->target, &o, errp);
    if (!t)
        return NULL;
    int64_t size = diskimg_node_size(t, errp);
    if (size < 0) {
        diskimg_close(t);
        return NULL;
    }
    if ((uint64_t)size < j->total_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "output file is smaller than input file");
        diskimg_close(t);
        return NULL;
    }
    return t;
}

/* -B: the node of the source's backing chain that is the target's new
 * backing file (the same file), or NULL. */
static diskimg_node *backing_in_source_chain(struct convert_job *j, const char *backing)
{
    if (j->n_sources != 1)
        return NULL;
    g_autofree char *wanted_rel = diskimg_resolve_relative(j->target, backing);
    g_autofree char *wanted = realpath(wanted_rel, NULL);
    if (!wanted)
        return NULL;
    for (diskimg_node *b = diskimg_node_backing(j->sources[0]); b; b = diskimg_node_backing(b)) {
        g_autofree char *path = realpath(diskimg_node_filename(b), NULL);
        if (path && strcmp(path, wanted) == 0)
            return b;
    }
    return NULL;
}

/* A target whose format stores every cluster compressed gets the
 * compressing copy, with or without -c, as qemu-img does. */
static bool needs_compression(diskimg_node *target)
{
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    return diskimg_node_info(target, &info, NULL) == 0 && info.needs_compressed_writes;
}

static int run_copy(struct cli *c, struct convert_job *j, diskimg_node *target, GError **errp)
{
    /* The image says whether it reads as zeroes (a fixed VHD does not). */
    bool fresh_zero = j->created &&
                      (diskimg_node_capabilities(target) & DISKIMG_CAP_ZERO_INIT);
    struct diskimg_copy_params p = {
        .struct_size = sizeof(p),
        .sources = j->sources,
        .n_sources = j->n_sources,
        .target = target,
        .sparse_size = j->sparse_size,
        .target_is_zero = cli_flag(c, "target-is-zero") || fresh_zero,
        .target_has_backing = j->backing_file && *j->backing_file,
        .compress = cli_flag(c, "compress") || needs_compression(target),
        .salvage = cli_flag(c, "salvage"),
        .quiet = c->quiet,
        .rate_limit = j->rate_limit,
        .parallel = j->parallel,
        .out_of_order = cli_flag(c, "out-of-order"),
        .copy_offload = cli_flag(c, "copy-offload"),
    };
    /* -B: a thin overlay.  Over a layer of the source's own chain we copy
     * what the layers above it define (qemu-img 7.2 copies only the top
     * layer, losing the data of layers between); over any other file only
     * the top layer, as qemu-img.  -o backing_file= counts as -B (qemu-img). */
    const char *backing = j->backing_file;
    if (backing && *backing) {
        p.base = backing_in_source_chain(j, backing);
        p.top_only = p.base == NULL;
    }
    /* The bar tracks the bytes that are copied, as qemu-img's: a walk of
     * block status first finds how many there are. */
    uint64_t work;
    if (diskimg_copy_work(&p, &work, errp) < 0)
        return -1;
    p.progress_counts_work = true;
    p.progress = cli_progress_new(c, work, "copy");
    int ret = diskimg_copy(&p, errp);
    if (ret == 0 && cli_flag(c, "bitmaps")) {
        diskimg_progress_set_phase(p.progress, "bitmaps");
        ret = cli_copy_bitmaps(j->sources[0], target, cli_flag(c, "skip-broken-bitmaps"), errp);
    }
    if (ret == 0) {
        /* with the default cache=unsafe most of the data is written here */
        diskimg_progress_set_phase(p.progress, "flush");
        ret = diskimg_node_flush(target, errp);
    }
    cli_progress_end(p.progress, ret == 0);
    return ret;
}

int cmd_convert(struct cli *c)
{
    if (cli_objects(c) || check_flag_combinations(c))
        return 1;
    struct convert_job j = { 0 };
    j.out_format = cli_get(c, "output-format");
    GError *err = NULL;
    if (diskimg_format_require(j.out_format, &err) < 0 ||
        cli_require_creatable(j.out_format, &err) < 0) {
        cli_gerror(err);
        return 1;
    }
    g_autofree char *text = cli_joined(c, "options");
    if (text && diskimg_options_text_wants_help(text)) {
        cli_print_options_help(j.out_format, "create-options",
                               c->nargs > 0 ? c->args[c->nargs - 1] : NULL);
        return 0;
    }
    if (c->nargs < 2) {
        cli_error("Must specify image file name");
        return 1;
    }
    if (parse_numbers(c, &j))
        return 1;
    j.target = c->args[c->nargs - 1];
    diskimg_node *target = NULL;
    int ret = 1;
    if (open_sources(c, &j, &err) < 0)
        goto out;
    if (!cli_flag(c, "no-create") && !cli_flag(c, "target-image-opts") &&
        create_target(c, &j, &err) < 0)
        goto out;
    target = open_target(c, &j, &err);
    if (!target || run_copy(c, &j, target, &err) < 0)
        goto out;
    ret = 0;
out:
    diskimg_close(target);
    for (size_t i = 0; i < j.n_sources; i++)
        diskimg_close(j.sources[i]);
    g_free(j.sources);
    diskimg_options_free(j.target_open);
    g_free(j.backing_file);
    g_clear_error(&j.refused);
    if (ret) {
        cli_gerror(err);
        /* A half-written image we made ourselves is worse than none. */
        if (j.created)
            unlink(j.target);
    }
    return ret;
}
