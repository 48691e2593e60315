/* SPDX-License-Identifier: MIT */
/*
 * schema.h — the schema engine: YAML schemas (QAPI-like) of plugins and of
 * the command line, typed option parsing and validation, generated help and
 * rendering of output objects as JSON or human text.
 *
 * docs/schema.md describes the YAML language.  In short, a plugin schema is
 *
 *   plugin: raw                       # must equal the plugin's name
 *   kind: format                      # format | io | crypto
 *   summary: one line
 *   probe-fallback: true              # optional flags (format plugins)
 *   create-options:                   # option sets, order = help order
 *     size: {type: size, help: Virtual disk size}
 *     preallocation: {type: enum, values: [off, falloc, full], default: "off",
 *                     help: Preallocation mode}
 *   open-options: {...}
 *   amend-options: [compat, lazy_refcounts]   # names from create-options
 *   info: {...}                       # format-specific info members
 *
 * Member attributes: type (str bool int size enum secret-id struct list),
 * help, default, min, max, power-of-two, values (enum), members (struct),
 * element (list element type), optional (output types), alias (other
 * accepted name).
 */
#ifndef DISKIMG_SCHEMA_H
#define DISKIMG_SCHEMA_H

#include <diskimg/diskimg.h>
#include <json-glib/json-glib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct diskimg_schema diskimg_schema;

/* The version of the introspection documents (diskimg_schema_to_json,
 * diskimg_introspect_plugins; docs/introspection.md).  Members are only
 * ever added; a change that removes or retypes one bumps it. */
#define DISKIMG_INTROSPECTION_VERSION 1

/* Parses and validates a schema document.  `origin` names it in errors,
 * which read "ORIGIN:LINE:COLUMN: what is wrong". */
DISKIMG_API diskimg_schema *diskimg_schema_parse(const char *yaml_text, const char *origin,
                                                 GError **errp);
DISKIMG_API void diskimg_schema_free(diskimg_schema *s);

DISKIMG_API const char *diskimg_schema_name(const diskimg_schema *s);    /* plugin: */
DISKIMG_API const char *diskimg_schema_kind(const diskimg_schema *s);    /* kind: */
DISKIMG_API const char *diskimg_schema_summary(const diskimg_schema *s);
/* A top-level boolean flag such as probe-fallback; false when absent. */
DISKIMG_API bool diskimg_schema_flag(const diskimg_schema *s, const char *key);
/* A top-level string value (e.g. "package"); NULL when absent. */
DISKIMG_API const char *diskimg_schema_string(const diskimg_schema *s, const char *key);
/* An io plugin's `protocols:` (the URI schemes it serves: "nbd",
 * "nbd+unix"...), NULL-terminated and empty for none; free with g_strfreev. */
DISKIMG_API char **diskimg_schema_protocols(const diskimg_schema *s);
/* True when the schema defines the option set ("create-options"...). */
DISKIMG_API bool diskimg_schema_has_set(const diskimg_schema *s, const char *set);
/* Names of the members of a set, in schema order (dotted for struct
 * members); NULL-terminated, free with g_strfreev. */
DISKIMG_API char **diskimg_schema_set_keys(const diskimg_schema *s, const char *set);

/* ---------------------------------------------------------------- options */

/* An empty option set bound to schema set `set`. */
DISKIMG_API diskimg_options *diskimg_options_new(const diskimg_schema *s, const char *set);
DISKIMG_API void diskimg_options_free(diskimg_options *o);
/* The schema the options were made for. */
DISKIMG_API const diskimg_schema *diskimg_options_schema(const diskimg_options *o);
/* Sets one option from its textual value, validating it.  A value of the
 * right type that the schema refuses (DISKIMG_ERROR_VALUE_REFUSED) is not
 * set, but diskimg_options_format_line() shows it, as qemu-img prints its
 * Formatting line before its driver refuses the value.  Errors read
 * "NAME: cluster_size must be a power of two between 512 and 2M, not 3000"
 * or "NAME: unknown option 'clustersize' (did you mean 'cluster_size'?)"
 * where NAME is the schema's plugin name. */
DISKIMG_API int diskimg_options_set(diskimg_options *o, const char *key, const char *value,
                                    GError **errp);
/* Parses a qemu-style option string "a=b,c.d=e" (",," is a literal comma;
 * a bare "flag" means flag=on) into o. */
DISKIMG_API int diskimg_options_parse(diskimg_options *o, const char *text, GError **errp);
/* True when an option string asks for help ("help" or "?" as a member). */
DISKIMG_API bool diskimg_options_text_wants_help(const char *text);
/* Removes one option (callers that consume e.g. `size` themselves). */
DISKIMG_API void diskimg_options_unset(diskimg_options *o, const char *key);
/* Checks cross-member constraints the types cannot express are left to the
 * plugin; this only checks that every required member is present. */
DISKIMG_API int diskimg_options_check_required(const diskimg_options *o, GError **errp);
/* The options that were explicitly set, as "k=v,k=v" in schema order
 * (for "Formatting 'x', fmt=qcow2 cluster_size=65536 ..." lines use
 * diskimg_options_format_line). */
DISKIMG_API char *diskimg_options_to_string(const diskimg_options *o);
/* Set options, and defaults not marked `print-default: false`, as qemu-img
 * 7.2's create line prints them: "key=value key=value" in schema order,
 * sizes and integers in decimal, other values as written. */
DISKIMG_API char *diskimg_options_format_line(const diskimg_options *o);
/* Explicitly set options as a JSON object (typed values). */
DISKIMG_API JsonNode *diskimg_options_to_json(const diskimg_options *o);

/* -o help text for a set:
 *   "Supported raw options:\n  preallocation=<str>    - Preallocation mode
 *    (allowed values: off, falloc, full; default: off)\n..." */
DISKIMG_API char *diskimg_schema_options_help(const diskimg_schema *s, const char *set);

/* ---------------------------------------------------------------- rendering */

/* Checks an output object against output type `type` of the schema ("info"
 * for a plugin's format-specific data; a type of types.yaml otherwise),
 * and returns a copy with members in schema order.  Unknown members and
 * wrongly typed values are errors (a plugin bug, reported, never printed). */
DISKIMG_API JsonObject *diskimg_schema_conform(const diskimg_schema *s, const char *type,
                                               JsonObject *obj, GError **errp);
/* Human rendering as qemu-img prints ImageInfoSpecific data: "key-name"
 * becomes "key name", nested objects and lists indented by `indent`+4,
 * list items as "[0]:". Appends to `out`. */
DISKIMG_API void diskimg_render_human(GString *out, JsonNode *node, int indent);
/* JSON rendering with qemu's layout (4-space indent, ": " separators). */
DISKIMG_API char *diskimg_render_json(JsonNode *node, bool pretty);

/* Introspection: the schema as a JSON document (for `diskimg schema`). */
DISKIMG_API JsonNode *diskimg_schema_to_json(const diskimg_schema *s);

/* generic access to schema documents (commands.yaml) */

/* The whole YAML document as JSON, owned by the schema: mappings become
 * objects (key order kept), sequences arrays, and every scalar a string
 * (unquoted `true` or `123` too; consumers convert). */
DISKIMG_API JsonNode *diskimg_schema_tree(const diskimg_schema *s);
/* One part of that view, by keys from the top ("commands", "info"),
 * NULL-terminated: a new node (json_node_unref it), or NULL when a key is
 * missing.  Cheaper than the whole tree when only a part is needed. */
DISKIMG_API JsonNode *diskimg_schema_subtree(const diskimg_schema *s, const char *const *keys);

/* bridging */

/* A diskimg_obj is a JsonObject (see core/obj.c); these are the casts. */
DISKIMG_API diskimg_obj *diskimg_obj_from_json(JsonObject *o);
DISKIMG_API JsonObject *diskimg_obj_json(diskimg_obj *o);

#ifdef __cplusplus
}
#endif
#endif /* DISKIMG_SCHEMA_H */
