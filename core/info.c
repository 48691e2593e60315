/* SPDX-License-Identifier: MIT */
/* ImageInfo objects, as qemu-img info prints them (QAPI ImageInfo). */
#include <string.h>

#include "internal.h"

static JsonObject *snapshot_json(const struct diskimg_snapshot *sn)
{
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "id", sn->id);
    json_object_set_string_member(o, "name", sn->name);
    json_object_set_int_member(o, "vm-state-size", (gint64)sn->vm_state_size);
    json_object_set_int_member(o, "date-sec", sn->date_sec);
    json_object_set_int_member(o, "date-nsec", sn->date_nsec);
    json_object_set_int_member(o, "vm-clock-sec", (gint64)(sn->vm_clock_nsec / 1000000000ull));
    json_object_set_int_member(o, "vm-clock-nsec", (gint64)(sn->vm_clock_nsec % 1000000000ull));
    if (sn->has_icount)
        json_object_set_int_member(o, "icount", (gint64)sn->icount);
    return o;
}

static int add_snapshots(JsonObject *info, diskimg_node *n, GError **errp)
{
    diskimg_snapshot_list *l = diskimg_node_snapshots(n, errp);
    if (!l)
        return -1;
    if (l->items->len) {
        JsonArray *a = json_array_new();
        for (guint i = 0; i < l->items->len; i++)
            json_array_add_object_element(
                a, snapshot_json(&g_array_index(l->items, struct diskimg_snapshot, i)));
        json_object_set_array_member(info, "snapshots", a);
    }
    diskimg_snapshot_list_free(l);
    return 0;
}

/* Runs the plugin's info callback; fills `basic` and returns the checked,
 * ordered format-specific data (NULL when the format has none). */
static int format_info(diskimg_node *n, struct diskimg_image_info *basic, JsonObject **specific,
                       GError **errp)
{
    memset(basic, 0, sizeof(*basic));
    basic->struct_size = sizeof(*basic);
    *specific = NULL;
    const struct diskimg_format_ops *ops = &n->plugin->ops.format;
    if (!ops->info)
        return 0;
    g_autoptr(JsonObject) raw = json_object_new();
    node_lock(n);
    int ret = ops->info(n->handle, basic, diskimg_obj_from_json(raw), errp);
    node_unlock(n);
    if (ret < 0)
        return -1;
    if (!diskimg_schema_has_set(n->plugin->schema, "info"))
        return 0;
    *specific = diskimg_schema_conform(n->plugin->schema, "info", raw, errp);
    return *specific ? 0 : -1;
}

static void add_backing(JsonObject *info, diskimg_node *n)
{
    if (!n->backing_name)
        return;
    json_object_set_string_member(info, "backing-filename", n->backing_name);
    g_autofree char *full = diskimg_resolve_relative(n->filename, n->backing_name);
    json_object_set_string_member(info, "full-backing-filename", full);
    /* Only a format recorded in the image is shown, as qemu does. */
    struct diskimg_backing_ref ref = { .struct_size = sizeof(ref) };
    if (n->plugin->ops.format.get_backing) {
        node_lock(n);
        n->plugin->ops.format.get_backing(n->handle, &ref);
        node_unlock(n);
    }
    if (ref.format && *ref.format)
        json_object_set_string_member(info, "backing-filename-format", ref.format);
}

JsonObject *diskimg_image_info(diskimg_node *n, GError **errp)
{
    if (n->is_file) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: not an image node",
                    n->filename);
        return NULL;
    }
    int64_t size = diskimg_node_size(n, errp);
    if (size < 0)
        return NULL;
    struct diskimg_image_info basic;
    g_autoptr(JsonObject) specific = NULL;
    if (format_info(n, &basic, &specific, errp) < 0)
        return NULL;

    JsonObject *info = json_object_new();
    json_object_set_string_member(info, "filename", n->filename);
    json_object_set_string_member(info, "format", diskimg_node_driver(n));
    /* qemu shows dirty-flag only for drivers with bdrv_get_info (not for
     * bochs, cloop, dmg...): here, formats with an info callback. */
    if (n->plugin->ops.format.info)
        json_object_set_boolean_member(info, "dirty-flag", basic.dirty);
    int64_t actual = diskimg_node_allocated_size(n, NULL);
    if (actual >= 0)
        json_object_set_int_member(info, "actual-size", actual);
    json_object_set_int_member(info, "virtual-size", size);
    if (basic.cluster_size)
        json_object_set_int_member(info, "cluster-size", (gint64)basic.cluster_size);
    if (basic.encrypted)
        json_object_set_boolean_member(info, "encrypted", true);
    add_backing(info, n);
    if (add_snapshots(info, n, errp) < 0) {
        json_object_unref(info);
        return NULL;
    }
    if (specific) {
        JsonObject *fs = json_object_new();
        json_object_set_string_member(fs, "type", diskimg_node_driver(n));
        json_object_set_object_member(fs, "data", json_object_ref(specific));
        json_object_set_object_member(info, "format-specific", fs);
    }
    /* Members in the order qemu-img prints them (schema/types.yaml). */
    JsonObject *ordered = diskimg_schema_conform(registry_core_schema("types"), "ImageInfo",
                                                 info, errp);
    json_object_unref(info);
    return ordered;
}
