/* SPDX-License-Identifier: MIT */
/* diskimg check: consistency check with optional repair; qemu's exit codes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { CHECK_OK = 0, CHECK_INTERNAL = 1, CHECK_CORRUPT = 2, CHECK_LEAKS = 3,
       CHECK_UNSUPPORTED = 63 };

static JsonObject *check_json(const char *filename, const char *format,
                              const struct diskimg_check_result *r)
{
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "filename", filename);
    json_object_set_string_member(o, "format", format);
    json_object_set_int_member(o, "check-errors", (gint64)r->check_errors);
    if (r->image_end_offset)
        json_object_set_int_member(o, "image-end-offset", (gint64)r->image_end_offset);
    if (r->corruptions)
        json_object_set_int_member(o, "corruptions", (gint64)r->corruptions);
    if (r->leaks)
        json_object_set_int_member(o, "leaks", (gint64)r->leaks);
    if (r->corruptions_fixed)
        json_object_set_int_member(o, "corruptions-fixed", (gint64)r->corruptions_fixed);
    if (r->leaks_fixed)
        json_object_set_int_member(o, "leaks-fixed", (gint64)r->leaks_fixed);
    /* qemu-img shows each counter only when it is non-zero. */
    if (r->has_cluster_stats) {
        const struct { const char *key; uint64_t value; } stats[] = {
            { "total-clusters", r->total_clusters },
            { "allocated-clusters", r->allocated_clusters },
            { "fragmented-clusters", r->fragmented_clusters },
            { "compressed-clusters", r->compressed_clusters },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(stats); i++)
            if (stats[i].value)
                json_object_set_int_member(o, stats[i].key, (gint64)stats[i].value);
    }
    return o;
}

static void print_human(const struct diskimg_check_result *r, bool quiet)
{
    if (quiet)
        return;
    if (r->corruptions_fixed || r->leaks_fixed)
        printf("The following inconsistencies were found and repaired:\n\n"
               "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n"
               "Double checking the fixed image now...\n", r->leaks_fixed, r->corruptions_fixed);
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRIu64 " errors were found on the image.\n"
                   "Data may be corrupted, or further writes to the image may corrupt it.\n",
                   r->corruptions);
        if (r->leaks)
            printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
                   "This means waste of disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    /* qemu-img: fragmentation and compression are shares of the allocated
     * clusters, and the line is left out while nothing is allocated */
    if (r->has_cluster_stats && r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
               "%0.2f%% compressed clusters\n", r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

static int parse_repair(const char *r, unsigned *fix)
{
    *fix = 0;
    if (!r)
        return 0;
    if (g_str_equal(r, "leaks")) {
        *fix = DISKIMG_CHECK_FIX_LEAKS;
    } else if (g_str_equal(r, "all")) {
        *fix = DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS;
    } else {
        cli_usage_error("Unknown option value for -r (expecting 'leaks' or 'all'): %s", r);
        return 1;
    }
    return 0;
}

/* Repairs, then checks again: the second result is what is reported. */
static int run_check(diskimg_node *n, unsigned fix, struct diskimg_check_result *r,
                     GError **errp)
{
    if (diskimg_node_check(n, fix, r, errp) < 0)
        return -1;
    if (!fix || (!r->corruptions_fixed && !r->leaks_fixed))
        return 0;
    uint64_t cf = r->corruptions_fixed, lf = r->leaks_fixed;
    if (diskimg_node_check(n, 0, r, errp) < 0)
        return -1;
    r->corruptions_fixed = cf;
    r->leaks_fixed = lf;
    return 0;
}

int cmd_check(struct cli *c)
{
    enum cli_output output;
    unsigned fix;
    if (cli_output_format(c, &output) || parse_repair(cli_get(c, "repair"), &fix) ||
        cli_objects(c))
        return 1;
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = fix != 0;
    o.no_backing = true;
    o.check = true;
    o.cache = cli_get(c, "source-cache");
    o.source_cache = true;
    GError *err = NULL;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    if (!n) {
        cli_gerror(err);
        return 1;
    }
    struct diskimg_check_result r = { .struct_size = sizeof(r) };
    int ret = run_check(n, fix, &r, &err);
    if (ret < 0) {
        bool unsupported = err->code == DISKIMG_ERROR_NOT_SUPPORTED;
        cli_gerror(err);
        diskimg_close(n);
        return unsupported ? CHECK_UNSUPPORTED : CHECK_INTERNAL;
    }
    if (output == CLI_OUTPUT_JSON) {
        if (cli_print_typed("ImageCheck", check_json(diskimg_node_filename(n),
                                                     diskimg_node_driver(n), &r))) {
            diskimg_close(n);
            return CHECK_INTERNAL;
        }
    } else {
        print_human(&r, c->quiet);
    }
    diskimg_close(n);
    if (r.check_errors) {
        cli_error("Check failed");   /* qemu-img's last word then */
        return CHECK_INTERNAL;
    }
    if (r.corruptions)
        return CHECK_CORRUPT;
    return r.leaks ? CHECK_LEAKS : CHECK_OK;
}
