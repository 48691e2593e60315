/* SPDX-License-Identifier: MIT */
/*
 * schema-private.h — the in-memory form of a validated schema, shared by
 * schema.c (YAML → structures), options.c (typed option values, -o help)
 * and render.c (conform, introspection).  Not installed, not ABI.
 */
#ifndef DISKIMG_CORE_SCHEMA_PRIVATE_H
#define DISKIMG_CORE_SCHEMA_PRIVATE_H

#include <diskimg/schema.h>

/* The member types of the schema language.  NUMBER and NAMED exist only
 * in output types (info:, types:). */
enum member_type {
    MT_STR,
    MT_BOOL,
    MT_INT,
    MT_SIZE,
    MT_ENUM,
    MT_SECRET_ID,
    MT_STRUCT,
    MT_LIST,
    MT_NUMBER,
    MT_OBJECT,      /* output only: any object, already conformed elsewhere */
    MT_NAMED,
};

/* A parsed scalar value: the text as written plus its typed reading.
 * Used for option values, for defaults and for min/max bounds. */
struct option_value {
    char *text;
    union {
        int64_t i;       /* MT_INT */
        uint64_t u;      /* MT_SIZE */
        bool b;          /* MT_BOOL */
    } v;
};

struct schema_member {
    char *name;                     /* as in its mapping: "format" */
    char *path;                     /* dotted from the set: "encrypt.format" */
    char *alias_path;               /* dotted alias, or NULL */
    enum member_type type;
    char *type_name;                /* MT_NAMED: a key of types: */
    char *help;
    char *deprecated;
    char *invalid;                  /* qemu's message for a refused value ("%s" = it) */
    GHashTable *refused;            /* MT_ENUM: value qemu parses but the format
                                     * refuses -> its message (refused:) */
    char **values;                  /* MT_ENUM, NULL-terminated */
    GPtrArray *members;             /* MT_STRUCT: struct schema_member* */
    struct schema_member *element;  /* MT_LIST */
    bool has_default, has_min, has_max;
    struct option_value def, min, max;
    bool power_of_two;
    bool hide_default;              /* print-default: false (Formatting line) */
    bool optional;                  /* output types */
    bool required;                  /* option sets */
    int line, column;               /* of its key, for late errors */
};

/* A named collection of members: an option set ("create-options") or an
 * output type ("info", or a key of types:). */
struct member_set {
    char *name;
    GPtrArray *members;     /* top level, in schema order */
    GPtrArray *leaves;      /* option sets: non-struct members, flattened */
    GHashTable *lookup;     /* option sets: path and alias path -> leaf */
};

struct diskimg_schema {
    char *origin;
    struct ynode *root;         /* the document as read (schema-tree.h) */
    JsonNode *tree;             /* its generic view, scalars as strings; built on
                                   first use by diskimg_schema_tree() */
    const char *name;           /* plugin:, owned by root; NULL for core docs */
    const char *kind;
    const char *summary;
    GPtrArray *option_sets;     /* struct member_set* */
    GPtrArray *amend_members;   /* struct schema_member* that amend-options defines
                                   itself (options of amend only); owned here */
    GPtrArray *output_types;    /* struct member_set*; "info" included */
};

/* schema.c */
const char *schema_member_type_name(const struct schema_member *m);
const struct member_set *schema_find_option_set(const diskimg_schema *s, const char *set);
const struct member_set *schema_find_output_type(const diskimg_schema *s, const char *type);
/* How messages name the schema: the plugin name, else the origin. */
const char *schema_display_name(const diskimg_schema *s);

/* options.c */
/* Parses and validates `text` as a value of the scalar member m.  On
 * failure returns false and sets *why to a sentence without prefix:
 * "cluster_size must be a power of two between 512 and 2M, not 3000". */
bool member_parse_value(const struct schema_member *m, const char *text,
                        struct option_value *out, char **why);
void option_value_clear(struct option_value *v);
/* Integer syntax of int options: decimal with optional sign, or 0x hex. */
bool parse_int_text(const char *text, int64_t *out);
/* "2M" for 2097152, "64k" for 65536, digits when no suffix is exact. */
char *format_size_suffix(uint64_t v);

#endif
