/* SPDX-License-Identifier: MIT */
/*
 * Output objects for plugins.
 *
 * diskimg_obj and diskimg_list are opaque names for json-glib's JsonObject
 * and JsonArray: every diskimg_obj * IS a JsonObject * and every
 * diskimg_list * IS a JsonArray *, converted by plain casts.  Plugins do
 * not need to know json-glib; the core gets ordered JSON for free (json-glib
 * keeps members in insertion order, which becomes qemu's field order after
 * diskimg_schema_conform).  Nested objects and lists are owned by their
 * parent, so plugins never free what the add functions return.
 */
#include "internal.h"

static JsonObject *as_json_object(diskimg_obj *o)
{
    return (JsonObject *)o;
}

static JsonArray *as_json_array(diskimg_list *l)
{
    return (JsonArray *)l;
}

diskimg_obj *diskimg_obj_from_json(JsonObject *o)
{
    return (diskimg_obj *)o;
}

JsonObject *diskimg_obj_json(diskimg_obj *o)
{
    return as_json_object(o);
}

/* A NULL string leaves the member absent: optional members in the schema
 * are simply not set. */
void diskimg_obj_set_str(diskimg_obj *o, const char *key, const char *value)
{
    g_return_if_fail(o && key);
    if (value)
        json_object_set_string_member(as_json_object(o), key, value);
    else
        json_object_remove_member(as_json_object(o), key);
}

void diskimg_obj_set_int(diskimg_obj *o, const char *key, int64_t value)
{
    g_return_if_fail(o && key);
    json_object_set_int_member(as_json_object(o), key, value);
}

void diskimg_obj_set_bool(diskimg_obj *o, const char *key, bool value)
{
    g_return_if_fail(o && key);
    json_object_set_boolean_member(as_json_object(o), key, value);
}

diskimg_obj *diskimg_obj_add_obj(diskimg_obj *o, const char *key)
{
    g_return_val_if_fail(o && key, NULL);
    JsonObject *child = json_object_new();
    json_object_set_object_member(as_json_object(o), key, child);  /* takes our reference */
    return (diskimg_obj *)child;
}

diskimg_list *diskimg_obj_add_list(diskimg_obj *o, const char *key)
{
    g_return_val_if_fail(o && key, NULL);
    JsonArray *child = json_array_new();
    json_object_set_array_member(as_json_object(o), key, child);   /* takes our reference */
    return (diskimg_list *)child;
}

diskimg_obj *diskimg_list_add_obj(diskimg_list *l)
{
    g_return_val_if_fail(l != NULL, NULL);
    JsonObject *child = json_object_new();
    json_array_add_object_element(as_json_array(l), child);        /* takes our reference */
    return (diskimg_obj *)child;
}

void diskimg_list_add_str(diskimg_list *l, const char *value)
{
    g_return_if_fail(l && value);
    json_array_add_string_element(as_json_array(l), value);
}

void diskimg_list_add_int(diskimg_list *l, int64_t value)
{
    g_return_if_fail(l != NULL);
    json_array_add_int_element(as_json_array(l), value);
}
