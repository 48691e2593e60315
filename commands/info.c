/* SPDX-License-Identifier: MIT */
/* diskimg info: ImageInfo of an image, or of its whole backing chain. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *member_str(JsonObject *o, const char *key)
{
    return json_object_has_member(o, key) ? json_object_get_string_member(o, key) : NULL;
}

void cli_print_snapshot_header(void)
{
    printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
}

void cli_print_snapshot_row(JsonObject *sn)
{
    time_t secs = (time_t)json_object_get_int_member(sn, "date-sec");
    struct tm tm;
    char date[64];
    localtime_r(&secs, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
    int64_t clock = json_object_get_int_member(sn, "vm-clock-sec");
    int64_t clock_ns = json_object_get_int_member(sn, "vm-clock-nsec");
    g_autofree char *clock_text = g_strdup_printf(
        "%02d:%02d:%02d.%03d", (int)(clock / 3600), (int)((clock / 60) % 60), (int)(clock % 60),
        (int)(clock_ns / 1000000 % 1000));
    g_autofree char *vmsize = cli_human_size((uint64_t)json_object_get_int_member(sn,
                                                                                 "vm-state-size"));
    g_autofree char *icount = json_object_has_member(sn, "icount")
        ? g_strdup_printf("%" PRId64, json_object_get_int_member(sn, "icount")) : g_strdup("");
    printf("%-9s %-16s %8s%20s%13s%11s\n", member_str(sn, "id"), member_str(sn, "name"), vmsize,
           date, clock_text, icount);
}

static void print_human(JsonObject *info)
{
    uint64_t vsize = (uint64_t)json_object_get_int_member(info, "virtual-size");
    g_autofree char *vs = cli_human_size(vsize);
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n",
           member_str(info, "filename"), member_str(info, "format"), vs, vsize);
    if (json_object_has_member(info, "actual-size")) {
        g_autofree char *as = cli_human_size((uint64_t)json_object_get_int_member(info,
                                                                                 "actual-size"));
        printf("disk size: %s\n", as);
    } else {
        printf("disk size: unavailable\n");
    }
    if (json_object_has_member(info, "encrypted") &&
        json_object_get_boolean_member(info, "encrypted"))
        printf("encrypted: yes\n");
    if (json_object_has_member(info, "cluster-size"))
        printf("cluster_size: %" PRId64 "\n", json_object_get_int_member(info, "cluster-size"));
    if (json_object_has_member(info, "dirty-flag") &&
        json_object_get_boolean_member(info, "dirty-flag"))
        printf("cleanly shut down: no\n");
    const char *backing = member_str(info, "backing-filename");
    if (backing) {
        const char *full = member_str(info, "full-backing-filename");
        if (full && !g_str_equal(full, backing))
            printf("backing file: %s (actual path: %s)\n", backing, full);
        else
            printf("backing file: %s\n", backing);
    }
    if (member_str(info, "backing-filename-format"))
        printf("backing file format: %s\n", member_str(info, "backing-filename-format"));
    if (json_object_has_member(info, "snapshots")) {
        JsonArray *sns = json_object_get_array_member(info, "snapshots");
        printf("Snapshot list:\n");
        cli_print_snapshot_header();
        for (guint i = 0; i < json_array_get_length(sns); i++)
            cli_print_snapshot_row(json_array_get_object_element(sns, i));
    }
    if (json_object_has_member(info, "format-specific")) {
        JsonObject *fs = json_object_get_object_member(info, "format-specific");
        g_autoptr(GString) out = g_string_new("Format specific information:\n");
        diskimg_render_human(out, json_object_get_member(fs, "data"), 4);
        fputs(out->str, stdout);
    }
}

static JsonNode *object_node(JsonObject *o)
{
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, o);
    return n;
}

/* --backing-chain: qemu-img opens the layers one by one, so a layer that
 * fails to open is named on its own ("Could not open 'base.qcow2': ..."),
 * not through the chain above it. */
static void name_failed_layer(GError *err)
{
    static const char marker[] = "Could not open backing file: ";
    const char *inner = g_strrstr(err->message, marker);
    if (!inner)
        return;
    inner += strlen(marker);
    static const char quote[] = "Could not open '";
    const char *end = g_str_has_prefix(inner, quote) ? strstr(inner + strlen(quote), "': ")
                                                     : NULL;
    if (!end)
        return;
    g_autofree char *path = g_strndup(inner + strlen(quote), (gsize)(end - inner - strlen(quote)));
    char *text = g_strdup_printf("Could not open '%s': %s", path, inner);
    g_free(err->message);
    err->message = text;
}

int cmd_info(struct cli *c)
{
    enum cli_output output;
    if (cli_output_format(c, &output) || cli_objects(c))
        return 1;
    bool chain = cli_flag(c, "backing-chain");
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.no_backing = !chain;
    o.no_io = true;   /* as qemu-img: no key needed for encrypted images */
    GError *err = NULL;
    diskimg_node *top = cli_open_image(c->args[0], &o, &err);
    if (!top) {
        if (chain)
            name_failed_layer(err);
        cli_gerror(err);
        return 1;
    }
    g_autoptr(JsonArray) infos = json_array_new();
    for (diskimg_node *n = top; n; n = chain ? diskimg_node_backing(n) : NULL) {
        JsonObject *info = diskimg_image_info(n, &err);
        if (!info) {
            cli_gerror(err);
            diskimg_close(top);
            return 1;
        }
        json_array_add_object_element(infos, info);
    }
    diskimg_close(top);
    guint count = json_array_get_length(infos);
    if (output == CLI_OUTPUT_JSON && chain) {
        g_autoptr(JsonNode) node = json_node_new(JSON_NODE_ARRAY);
        json_node_set_array(node, infos);
        cli_print_json(node);
    } else if (output == CLI_OUTPUT_JSON) {
        g_autoptr(JsonNode) node = object_node(json_object_ref(
            json_array_get_object_element(infos, 0)));
        cli_print_json(node);
    } else {
        for (guint i = 0; i < count; i++) {
            if (i)
                printf("\n");
            print_human(json_array_get_object_element(infos, i));
        }
    }
    return 0;
}
