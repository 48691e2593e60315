/* SPDX-License-Identifier: MIT */
/*
 * Introspection for programs: what plugins are installed, what each can do,
 * and whether an option string is valid for one, as versioned JSON.  The
 * command prints exactly these documents (`--list-formats --output=json`,
 * `schema NAME --output=json`); docs/introspection.md describes them and
 * docs/introspection/ holds their JSON Schemas.
 */
#include <string.h>

#include "internal.h"

static const char *const kind_names[] = {
    [DISKIMG_KIND_FORMAT] = "format", [DISKIMG_KIND_IO] = "io", [DISKIMG_KIND_CRYPTO] = "crypto",
};

/* The descriptor-level capability bits, by name (the per-image bits are
 * decided on open and have no place in a listing). */
static const struct { uint64_t bit; const char *name; } capability_names[] = {
    { DISKIMG_CAP_READ_ONLY, "read-only" },
    { DISKIMG_CAP_BACKING, "backing" },
    { DISKIMG_CAP_ZERO_INIT, "zero-init" },
    { DISKIMG_CAP_PREALLOC_ZERO, "prealloc-zero" },
};

/* The package that ships a plugin: its schema's own `package:` (third-party
 * plugins name theirs), else the hint of schema/magic.yaml for formats. */
const char *diskimg_plugin_package(enum diskimg_plugin_kind kind, const char *name)
{
    const diskimg_schema *s = diskimg_plugin_schema(kind, name);
    const char *own = s ? diskimg_schema_string(s, "package") : NULL;
    if (own)
        return own;
    return kind == DISKIMG_KIND_FORMAT ? registry_package_for(name) : NULL;
}

static JsonArray *capabilities_json(uint64_t caps)
{
    JsonArray *a = json_array_new();
    for (size_t i = 0; i < G_N_ELEMENTS(capability_names); i++)
        if (caps & capability_names[i].bit)
            json_array_add_string_element(a, capability_names[i].name);
    return a;
}

static JsonArray *operations_json(const char *format)
{
    JsonArray *a = json_array_new();
    for (const char *const *op = node_format_op_names(); *op; op++)
        if (diskimg_format_has_op(format, *op))
            json_array_add_string_element(a, *op);
    return a;
}

static JsonObject *plugin_entry(enum diskimg_plugin_kind kind, const char *name)
{
    const struct diskimg_plugin *d = diskimg_plugin_descriptor(kind, name);
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "name", d->name);
    json_object_set_string_member(o, "version", d->version ? d->version : "");
    json_object_set_string_member(o, "summary", d->summary ? d->summary : "");
    json_object_set_string_member(o, "path", diskimg_plugin_path(kind, name));
    const char *package = diskimg_plugin_package(kind, name);
    if (package)
        json_object_set_string_member(o, "package", package);
    else
        json_object_set_null_member(o, "package");
    if (kind == DISKIMG_KIND_FORMAT) {
        json_object_set_boolean_member(o, "writable",
                                       !(d->capabilities & DISKIMG_CAP_READ_ONLY));
        json_object_set_array_member(o, "capabilities", capabilities_json(d->capabilities));
        json_object_set_array_member(o, "operations", operations_json(name));
    }
    return o;
}

JsonNode *diskimg_introspect_plugins(enum diskimg_plugin_kind kind)
{
    if (kind < DISKIMG_KIND_FORMAT || kind > DISKIMG_KIND_CRYPTO)
        return NULL;
    JsonObject *root = json_object_new();
    json_object_set_int_member(root, "introspection-version", DISKIMG_INTROSPECTION_VERSION);
    json_object_set_string_member(root, "kind", kind_names[kind]);
    JsonArray *list = json_array_new();
    g_auto(GStrv) names = diskimg_plugin_names(kind);
    for (char **n = names; *n; n++)
        json_array_add_object_element(list, plugin_entry(kind, *n));
    json_object_set_array_member(root, "plugins", list);
    JsonNode *node = json_node_init_object(json_node_alloc(), root);
    json_object_unref(root);
    return node;
}

int diskimg_options_validate(enum diskimg_plugin_kind kind, const char *name, const char *set,
                             const char *text, GError **errp)
{
    if (diskimg_init(errp) < 0)
        return -1;
    if (kind == DISKIMG_KIND_FORMAT && diskimg_format_require(name, errp) < 0)
        return -1;
    const diskimg_schema *s = diskimg_plugin_schema(kind, name);
    if (!s) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN, "No %s plugin named '%s'",
                    kind >= DISKIMG_KIND_FORMAT && kind <= DISKIMG_KIND_CRYPTO
                        ? kind_names[kind] : "such", name);
        return -1;
    }
    if (!diskimg_schema_has_set(s, set)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s has no option set '%s'", name, set);
        return -1;
    }
    diskimg_options *o = diskimg_options_new(s, set);
    int ret = diskimg_options_parse(o, text ? text : "", errp);
    diskimg_options_free(o);
    return ret;
}
