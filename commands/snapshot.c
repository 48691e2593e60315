/* SPDX-License-Identifier: MIT */
/* diskimg snapshot: list, create, apply and delete internal snapshots. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static int list_snapshots(diskimg_node *n)
{
    GError *err = NULL;
    g_autoptr(JsonObject) info = diskimg_image_info(n, &err);
    if (!info) {
        cli_gerror(err);
        return 1;
    }
    if (!json_object_has_member(info, "snapshots"))
        return 0;
    JsonArray *sns = json_object_get_array_member(info, "snapshots");
    printf("Snapshot list:\n");
    cli_print_snapshot_header();
    for (guint i = 0; i < json_array_get_length(sns); i++)
        cli_print_snapshot_row(json_array_get_object_element(sns, i));
    return 0;
}

static int create_snapshot(diskimg_node *n, const char *name, GError **errp)
{
    gint64 now = g_get_real_time();
    struct diskimg_snapshot sn = {
        .struct_size = sizeof(sn),
        .name = name,
        .date_sec = (uint32_t)(now / G_USEC_PER_SEC),
        .date_nsec = (uint32_t)(now % G_USEC_PER_SEC) * 1000,
        .icount = 0,            /* qemu-img records 0 for snapshots it takes */
        .has_icount = true,
    };
    return diskimg_node_snapshot_create(n, &sn, errp);
}

/* Reports a failed action in qemu-img's words. */
static int action_failed(const char *what, const char *name, GError *err)
{
    if (err->code == DISKIMG_ERROR_NOT_SUPPORTED && g_str_equal(what, "create"))
        cli_error("Could not create snapshot '%s': -95 (Operation not supported)", name);
    else if (err->code == DISKIMG_ERROR_NOT_SUPPORTED && g_str_equal(what, "apply"))
        cli_error("Could not apply snapshot '%s': Block driver does not support snapshots",
                  name);
    else if (err->code == DISKIMG_ERROR_NOT_SUPPORTED && g_str_equal(what, "delete"))
        cli_error("Could not delete snapshot '%s': snapshot not found", name);
    else
        cli_error("Could not %s snapshot '%s': %s", what, name, err->message);
    g_error_free(err);
    return 1;
}

int cmd_snapshot(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    const char *actions[] = { "list", "create", "apply", "delete" };
    const char *action = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(actions); i++) {
        if (!cli_flag(c, actions[i]))
            continue;
        if (action)
            return cli_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
        action = actions[i];
    }
    /* Without an action qemu-img opens the image for writing (locks and
     * errors included) and does nothing else. */
    bool none = !action;
    bool list = !none && g_str_equal(action, "list");
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = !list;
    o.no_backing = true;
    GError *err = NULL;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    if (!n) {
        cli_gerror(err);
        return 1;
    }
    int ret = 0;
    const char *name = list || none ? NULL : cli_get(c, action);
    if (none)
        ret = 0;
    else if (list)
        ret = list_snapshots(n);
    else if (g_str_equal(action, "create") && create_snapshot(n, name, &err) < 0)
        ret = action_failed("create", name, err);
    else if (g_str_equal(action, "apply") && diskimg_node_snapshot_apply(n, name, &err) < 0)
        ret = action_failed("apply", name, err);
    else if (g_str_equal(action, "delete") && diskimg_node_snapshot_delete(n, name, &err) < 0)
        ret = action_failed("delete", name, err);
    if (ret == 0 && !list && !none && diskimg_node_flush(n, &err) < 0) {
        cli_gerror(err);
        ret = 1;
    }
    diskimg_close(n);
    return ret;
}

int cli_load_snapshot(diskimg_node *src, const char *param, GError **errp)
{
    g_autofree char *id = NULL, *name = NULL;
    if (g_str_has_prefix(param, "snapshot.")) {
        g_auto(GStrv) parts = g_strsplit(param, ",", -1);
        for (char **p = parts; *p; p++) {
            if (g_str_has_prefix(*p, "snapshot.id="))
                id = g_strdup(*p + strlen("snapshot.id="));
            else if (g_str_has_prefix(*p, "snapshot.name="))
                name = g_strdup(*p + strlen("snapshot.name="));
            else {
                g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                            "Invalid snapshot parameter '%s'", *p);
                return -1;
            }
        }
    } else {
        id = g_strdup(param);   /* an ID or a name: the plugin tries both */
    }
    if (diskimg_node_snapshot_load(src, id, name, errp) < 0) {
        g_prefix_error(errp, "Failed to load snapshot: ");
        return -1;
    }
    return 0;
}
