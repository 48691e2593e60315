/* SPDX-License-Identifier: MIT */
/*
 * schema-tree.h — the first pass of the schema engine: text → a small tree
 * of nodes that remember where they start (line and column), so that the
 * validator (schema.c) can point at any mistake.  Not installed, not ABI.
 */
#ifndef DISKIMG_CORE_SCHEMA_TREE_H
#define DISKIMG_CORE_SCHEMA_TREE_H

#include <stdbool.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#define SCHEMA_MAX_BYTES (1024 * 1024)
#define SCHEMA_MAX_DEPTH 32

enum ynode_kind { YNODE_SCALAR, YNODE_SEQUENCE, YNODE_MAPPING };

struct ynode {
    enum ynode_kind kind;
    int line, column;       /* 1-based */
    char *text;             /* scalars */
    GPtrArray *children;    /* sequences: items; mappings: key, value, key, value... */
};

void ynode_free(struct ynode *n);

static inline guint ymap_size(const struct ynode *map)
{
    return map->children->len / 2;
}

static inline const struct ynode *ymap_key(const struct ynode *map, guint i)
{
    return g_ptr_array_index(map->children, 2 * i);
}

static inline const struct ynode *ymap_value(const struct ynode *map, guint i)
{
    return g_ptr_array_index(map->children, 2 * i + 1);
}

/* The key node of `key` in a mapping, or NULL. */
const struct ynode *ymap_find_key(const struct ynode *map, const char *key);
/* The value of `key` in a mapping, or NULL. */
const struct ynode *ymap_get(const struct ynode *map, const char *key);

void G_GNUC_PRINTF(5, 6) set_error_at(GError **errp, const char *origin, int line, int column,
                                      const char *fmt, ...);

/* Reads a schema document.  Compact JSON (what diskimg-embed-schema
 * embeds: JSON is YAML too) takes a fast path; anything else, or JSON the
 * fast path does not accept, is read by libyaml, whose errors are the ones
 * reported.  Either way the text is bounded: 1 MiB, 32 levels of nesting,
 * no aliases, no duplicate keys, keys are plain strings. */
struct ynode *schema_tree_read(const char *text, const char *origin, GError **errp);

/* The generic view of the document: every scalar stays a string. */
JsonNode *ynode_to_json(const struct ynode *n);

#endif /* DISKIMG_CORE_SCHEMA_TREE_H */
