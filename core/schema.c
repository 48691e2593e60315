/* SPDX-License-Identifier: MIT */
/*
 * The schema engine, part 1: schema text → validated in-memory schema.
 *
 * Reading happens in two passes.  schema-tree.c first builds a small tree
 * of `ynode`s that remembers where every node starts, so that the second
 * pass here (validation) can say "raw.yaml:7:5: ..." about any mistake.
 * The same tree is also converted once into a JsonNode that the command
 * layer queries generically (commands.yaml).
 */
#include <stdarg.h>
#include <string.h>

#include "internal.h"
#include "schema-private.h"
#include "schema-tree.h"

/* ----------------------------------------------------------- structures */

static void member_free(struct schema_member *m)
{
    if (!m)
        return;
    g_free(m->name);
    g_free(m->path);
    g_free(m->alias_path);
    g_free(m->type_name);
    g_free(m->help);
    g_free(m->deprecated);
    g_free(m->invalid);
    if (m->refused)
        g_hash_table_unref(m->refused);
    g_strfreev(m->values);
    if (m->members)
        g_ptr_array_free(m->members, TRUE);
    member_free(m->element);
    option_value_clear(&m->def);
    option_value_clear(&m->min);
    option_value_clear(&m->max);
    g_free(m);
}

/* `owns_members` is false for amend-options, which borrows the members of
 * create-options. */
static struct member_set *member_set_new(const char *name, bool owns_members)
{
    struct member_set *set = g_new0(struct member_set, 1);
    set->name = g_strdup(name);
    set->members = g_ptr_array_new_with_free_func(owns_members ? (GDestroyNotify)member_free
                                                               : NULL);
    return set;
}

static void member_set_free(struct member_set *set)
{
    if (!set)
        return;
    g_free(set->name);
    g_ptr_array_free(set->members, TRUE);
    if (set->leaves)
        g_ptr_array_free(set->leaves, TRUE);
    if (set->lookup)
        g_hash_table_destroy(set->lookup);
    g_free(set);
}

void diskimg_schema_free(diskimg_schema *s)
{
    if (!s)
        return;
    /* Sets borrowing members (amend-options) are freed before the owners. */
    for (guint i = s->option_sets->len; i-- > 0;)
        member_set_free(g_ptr_array_index(s->option_sets, i));
    g_ptr_array_free(s->option_sets, TRUE);
    if (s->amend_members)
        g_ptr_array_free(s->amend_members, TRUE);
    g_ptr_array_free(s->output_types, TRUE);
    if (s->tree)
        json_node_unref(s->tree);
    ynode_free(s->root);
    g_free(s->origin);
    g_free(s);
}

/* ----------------------------------------------------------- validation */

enum member_context { CTX_OPTION, CTX_OUTPUT };

struct validator {
    diskimg_schema *s;
    const struct ynode *type_names;     /* the types: mapping, or NULL */
    GError **errp;
};

static bool G_GNUC_PRINTF(3, 4)
fail_at(struct validator *v, const struct ynode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    set_error_at(v->errp, v->s->origin, at->line, at->column, "%s", msg);
    return false;
}

static const char *const option_types[] = {
    "str", "bool", "int", "size", "enum", "secret-id", "struct", "list", NULL,
};
static const char *const output_types_builtin[] = {
    "str", "bool", "int", "number", "size", "enum", "secret-id", "struct", "list", "object",
    NULL,
};
static const char *const option_attributes[] = {
    "type", "help", "default", "min", "max", "power-of-two", "values", "members", "print-default", "invalid",
    "refused", "element", "alias", "deprecated", "required", NULL,
};
static const char *const output_attributes[] = {
    "type", "help", "optional", "values", "members", "element", "deprecated", NULL,
};

static const struct {
    const char *name;
    enum member_type type;
} builtin_types[] = {
    { "str", MT_STR }, { "bool", MT_BOOL }, { "int", MT_INT }, { "size", MT_SIZE },
    { "enum", MT_ENUM }, { "secret-id", MT_SECRET_ID }, { "struct", MT_STRUCT },
    { "list", MT_LIST }, { "number", MT_NUMBER }, { "object", MT_OBJECT },
};

const char *schema_member_type_name(const struct schema_member *m)
{
    if (m->type == MT_NAMED)
        return m->type_name;
    for (size_t i = 0; i < G_N_ELEMENTS(builtin_types); i++) {
        if (builtin_types[i].type == m->type)
            return builtin_types[i].name;
    }
    return "?";
}

static bool is_scalar_type(enum member_type t)
{
    return t != MT_STRUCT && t != MT_LIST && t != MT_NAMED && t != MT_OBJECT;
}

static bool expect_scalar(struct validator *v, const struct ynode *key,
                          const struct ynode *value)
{
    if (value->kind == YNODE_SCALAR)
        return true;
    return fail_at(v, key, "'%s' must be a plain value", key->text);
}

static bool expect_mapping(struct validator *v, const struct ynode *key,
                           const struct ynode *value)
{
    if (value->kind == YNODE_MAPPING)
        return true;
    return fail_at(v, key, "'%s' must be a mapping", key->text);
}

/* YAML booleans as schema authors write them. */
static bool read_bool_attribute(struct validator *v, const struct ynode *key,
                                const struct ynode *value, bool *out)
{
    if (!expect_scalar(v, key, value))
        return false;
    if (strcmp(value->text, "true") == 0 || strcmp(value->text, "false") == 0) {
        *out = value->text[0] == 't';
        return true;
    }
    return fail_at(v, key, "'%s' must be true or false, not '%s'", key->text, value->text);
}

static bool resolve_type(struct validator *v, struct schema_member *m, enum member_context ctx,
                         const struct ynode *at, const char *name)
{
    const char *const *allowed = ctx == CTX_OPTION ? option_types : output_types_builtin;
    for (size_t i = 0; i < G_N_ELEMENTS(builtin_types); i++) {
        if (strcmp(builtin_types[i].name, name) == 0 && g_strv_contains(allowed, name)) {
            m->type = builtin_types[i].type;
            return true;
        }
    }
    if (ctx == CTX_OUTPUT && v->type_names && ymap_find_key(v->type_names, name)) {
        m->type = MT_NAMED;
        m->type_name = g_strdup(name);
        return true;
    }
    g_autofree char *expected = g_strjoinv(", ", (char **)allowed);
    return fail_at(v, at, "unknown type '%s' (expected %s%s)", name, expected,
                   ctx == CTX_OUTPUT ? " or a name from types" : "");
}

static struct schema_member *parse_member(struct validator *v, const struct ynode *key,
                                          const struct ynode *def, const char *parent_path,
                                          enum member_context ctx);

static bool parse_members(struct validator *v, const struct ynode *map, const char *parent_path,
                          enum member_context ctx, GPtrArray *into)
{
    for (guint i = 0; i < ymap_size(map); i++) {
        struct schema_member *m = parse_member(v, ymap_key(map, i), ymap_value(map, i),
                                               parent_path, ctx);
        if (!m)
            return false;
        g_ptr_array_add(into, m);
    }
    return true;
}

static bool parse_enum_values(struct validator *v, struct schema_member *m,
                              const struct ynode *key, const struct ynode *list)
{
    if (list->kind != YNODE_SEQUENCE || list->children->len == 0)
        return fail_at(v, key, "'values' must be a non-empty list");
    /* g_free: a non-scalar item frees the strings taken before it */
    GPtrArray *values = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < list->children->len; i++) {
        const struct ynode *item = g_ptr_array_index(list->children, i);
        if (item->kind != YNODE_SCALAR) {
            g_ptr_array_free(values, TRUE);
            return fail_at(v, item, "enum values must be plain strings");
        }
        g_ptr_array_add(values, g_strdup(item->text));
    }
    g_ptr_array_add(values, NULL);
    m->values = (char **)g_ptr_array_free(values, FALSE);
    return true;
}

/* `element: str` names a type; `element: {type: ...}` defines one. */
static bool parse_element(struct validator *v, struct schema_member *m,
                          const struct ynode *key, const struct ynode *value,
                          enum member_context ctx)
{
    if (value->kind == YNODE_SCALAR) {
        struct schema_member *e = g_new0(struct schema_member, 1);
        e->name = g_strdup(m->name);
        e->path = g_strdup(m->path);
        e->line = value->line;
        e->column = value->column;
        m->element = e;
        if (!resolve_type(v, e, ctx, key, value->text))
            return false;
        if (e->type == MT_ENUM || e->type == MT_STRUCT || e->type == MT_LIST)
            return fail_at(v, key, "element type %s needs a mapping with its attributes",
                           value->text);
    } else {
        /* The element shares the list's path: option errors name the list. */
        const char *slash = strrchr(m->path, '.');
        g_autofree char *parent = slash ? g_strndup(m->path, (gsize)(slash - m->path)) : NULL;
        struct ynode fake_key = { .kind = YNODE_SCALAR, .line = key->line,
                                  .column = key->column, .text = m->name };
        m->element = parse_member(v, &fake_key, value, parent, ctx);
        if (!m->element)
            return false;
    }
    if (ctx == CTX_OPTION && !is_scalar_type(m->element->type))
        return fail_at(v, key, "list options need a scalar element type");
    return true;
}

/* Reads min:/max: with the syntax of the member's own type. */
static bool parse_bound(struct validator *v, const struct schema_member *m,
                        const struct ynode *key, const struct ynode *value,
                        struct option_value *out)
{
    if (!expect_scalar(v, key, value))
        return false;
    bool ok;
    if (m->type == MT_SIZE)
        ok = diskimg_parse_size(value->text, &out->v.u, NULL) == 0;
    else
        ok = parse_int_text(value->text, &out->v.i);
    if (!ok)
        return fail_at(v, key, "%s '%s' is not a valid %s", key->text, value->text,
                       m->type == MT_SIZE ? "size" : "integer");
    out->text = g_strdup(value->text);
    return true;
}

static bool check_attribute_fits_type(struct validator *v, const struct schema_member *m,
                                      const struct ynode *key)
{
    const char *a = key->text;
    bool fits = true;
    if (strcmp(a, "values") == 0 || strcmp(a, "refused") == 0)
        fits = m->type == MT_ENUM;
    else if (strcmp(a, "members") == 0)
        fits = m->type == MT_STRUCT;
    else if (strcmp(a, "element") == 0)
        fits = m->type == MT_LIST;
    else if (!strcmp(a, "min") || !strcmp(a, "max") || !strcmp(a, "power-of-two"))
        fits = m->type == MT_INT || m->type == MT_SIZE;
    else if (strcmp(a, "default") == 0)
        fits = is_scalar_type(m->type);
    else if (strcmp(a, "print-default") == 0 || strcmp(a, "invalid") == 0)
        fits = is_scalar_type(m->type);
    if (fits)
        return true;
    return fail_at(v, key, "'%s' does not apply to type %s", a, schema_member_type_name(m));
}

static bool check_unknown_attributes(struct validator *v, const struct ynode *def,
                                     enum member_context ctx)
{
    const char *const *allowed = ctx == CTX_OPTION ? option_attributes : output_attributes;
    for (guint i = 0; i < ymap_size(def); i++) {
        const struct ynode *key = ymap_key(def, i);
        if (!g_strv_contains(allowed, key->text)) {
            g_autofree char *list = g_strjoinv(", ", (char **)allowed);
            return fail_at(v, key, "unknown attribute '%s' (expected %s)", key->text, list);
        }
    }
    return true;
}

static bool parse_text_attribute(struct validator *v, const struct ynode *key,
                                 const struct ynode *value, char **out)
{
    if (!expect_scalar(v, key, value))
        return false;
    *out = g_strdup(value->text);
    return true;
}

/* refused: {value: message} -- values qemu's parser takes (so they are no
 * typing error) but the format turns down with a message of its own, as
 * raw's preallocation=metadata.  They are not among the allowed values. */
static bool parse_refused_values(struct validator *v, struct schema_member *m,
                                 const struct ynode *key, const struct ynode *value)
{
    if (!expect_mapping(v, key, value))
        return false;
    m->refused = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; i < ymap_size(value); i++) {
        const struct ynode *k = ymap_key(value, i), *text = ymap_value(value, i);
        if (!expect_scalar(v, k, text))
            return false;
        if (m->values && g_strv_contains((const char *const *)m->values, k->text))
            return fail_at(v, k, "refused value '%s' is also an allowed value", k->text);
        g_hash_table_insert(m->refused, g_strdup(k->text), g_strdup(text->text));
    }
    return true;
}

/* One attribute other than type:, default: and the range, which
 * parse_member handles in a fixed order. */
static bool parse_attribute(struct validator *v, struct schema_member *m,
                            const struct ynode *key, const struct ynode *value,
                            enum member_context ctx)
{
    const char *a = key->text;
    if (strcmp(a, "help") == 0)
        return parse_text_attribute(v, key, value, &m->help);
    if (strcmp(a, "deprecated") == 0)
        return parse_text_attribute(v, key, value, &m->deprecated);
    if (strcmp(a, "invalid") == 0)
        return parse_text_attribute(v, key, value, &m->invalid);
    if (strcmp(a, "alias") == 0) {
        g_autofree char *alias = NULL;
        if (!parse_text_attribute(v, key, value, &alias))
            return false;
        if (!*alias || strchr(alias, '.'))
            return fail_at(v, key, "alias '%s' is not a valid option name", alias);
        const char *slash = strrchr(m->path, '.');
        m->alias_path = slash ? g_strdup_printf("%.*s.%s", (int)(slash - m->path), m->path, alias)
                              : g_strdup(alias);
        return true;
    }
    if (strcmp(a, "power-of-two") == 0)
        return read_bool_attribute(v, key, value, &m->power_of_two);
    if (strcmp(a, "print-default") == 0) {
        bool print = true;
        if (!read_bool_attribute(v, key, value, &print))
            return false;
        m->hide_default = !print;
        return true;
    }
    if (strcmp(a, "optional") == 0)
        return read_bool_attribute(v, key, value, &m->optional);
    if (strcmp(a, "required") == 0)
        return read_bool_attribute(v, key, value, &m->required);
    if (strcmp(a, "values") == 0)
        return parse_enum_values(v, m, key, value);
    if (strcmp(a, "refused") == 0)
        return parse_refused_values(v, m, key, value);
    if (strcmp(a, "members") == 0) {
        if (!expect_mapping(v, key, value))
            return false;
        if (ymap_size(value) == 0)
            return fail_at(v, key, "struct '%s' has no members", m->name);
        m->members = g_ptr_array_new_with_free_func((GDestroyNotify)member_free);
        return parse_members(v, value, m->path, ctx, m->members);
    }
    if (strcmp(a, "element") == 0)
        return parse_element(v, m, key, value, ctx);
    return true;
}

/* Attributes that a type cannot do without. */
static bool check_required_attributes(struct validator *v, const struct schema_member *m,
                                      const struct ynode *key)
{
    if (m->type == MT_ENUM && !m->values)
        return fail_at(v, key, "enum '%s' has no values", m->name);
    if (m->type == MT_STRUCT && !m->members)
        return fail_at(v, key, "struct '%s' has no members", m->name);
    if (m->type == MT_LIST && !m->element)
        return fail_at(v, key, "list '%s' has no element type", m->name);
    return true;
}

static bool check_range(struct validator *v, struct schema_member *m, const struct ynode *def)
{
    const struct ynode *min = ymap_get(def, "min"), *max = ymap_get(def, "max");
    if (min && !parse_bound(v, m, ymap_find_key(def, "min"), min, &m->min))
        return false;
    if (max && !parse_bound(v, m, ymap_find_key(def, "max"), max, &m->max))
        return false;
    m->has_min = min != NULL;
    m->has_max = max != NULL;
    if (!min || !max)
        return true;
    bool inverted = m->type == MT_SIZE ? m->min.v.u > m->max.v.u : m->min.v.i > m->max.v.i;
    if (inverted)
        return fail_at(v, ymap_find_key(def, "min"), "min %s is greater than max %s",
                       m->min.text, m->max.text);
    return true;
}

static bool check_default(struct validator *v, struct schema_member *m, const struct ynode *def)
{
    const struct ynode *key = ymap_find_key(def, "default");
    if (!key)
        return true;
    const struct ynode *value = ymap_get(def, "default");
    if (!expect_scalar(v, key, value))
        return false;
    g_autofree char *why = NULL;
    if (!member_parse_value(m, value->text, &m->def, &why))
        return fail_at(v, key, "invalid default: %s", why);
    m->has_default = true;
    return true;
}

static struct schema_member *parse_member(struct validator *v, const struct ynode *key,
                                          const struct ynode *def, const char *parent_path,
                                          enum member_context ctx)
{
    if (!*key->text || strchr(key->text, '.')) {
        fail_at(v, key, "'%s' is not a valid member name", key->text);
        return NULL;
    }
    if (def->kind != YNODE_MAPPING) {
        fail_at(v, key, "'%s' must be a mapping of attributes", key->text);
        return NULL;
    }
    struct schema_member *m = g_new0(struct schema_member, 1);
    m->name = g_strdup(key->text);
    m->path = parent_path ? g_strdup_printf("%s.%s", parent_path, key->text)
                          : g_strdup(key->text);
    m->line = key->line;
    m->column = key->column;

    const struct ynode *type = ymap_get(def, "type");
    bool ok = check_unknown_attributes(v, def, ctx);
    if (ok && !type)
        ok = fail_at(v, key, "'%s' has no type", key->text);
    if (ok)
        ok = expect_scalar(v, ymap_find_key(def, "type"), type) &&
             resolve_type(v, m, ctx, ymap_find_key(def, "type"), type->text);
    for (guint i = 0; ok && i < ymap_size(def); i++) {
        ok = check_attribute_fits_type(v, m, ymap_key(def, i)) &&
             parse_attribute(v, m, ymap_key(def, i), ymap_value(def, i), ctx);
    }
    ok = ok && check_required_attributes(v, m, key) && check_range(v, m, def) &&
         check_default(v, m, def);
    if (!ok) {
        member_free(m);
        return NULL;
    }
    return m;
}

/* Flattens struct members into dotted leaves and indexes names and aliases. */
static bool index_leaves(struct validator *v, struct member_set *set, GPtrArray *members)
{
    for (guint i = 0; i < members->len; i++) {
        struct schema_member *m = g_ptr_array_index(members, i);
        if (m->type == MT_STRUCT) {
            if (!index_leaves(v, set, m->members))
                return false;
            continue;
        }
        const char *names[] = { m->path, m->alias_path };
        for (size_t n = 0; n < G_N_ELEMENTS(names) && names[n]; n++) {
            if (g_hash_table_contains(set->lookup, names[n])) {
                struct ynode at = { .line = m->line, .column = m->column };
                return fail_at(v, &at, "option name '%s' is used twice in %s", names[n],
                               set->name);
            }
            g_hash_table_insert(set->lookup, (char *)names[n], m);
        }
        g_ptr_array_add(set->leaves, m);
    }
    return true;
}

static bool build_index(struct validator *v, struct member_set *set)
{
    set->leaves = g_ptr_array_new();
    set->lookup = g_hash_table_new(g_str_hash, g_str_equal);
    return index_leaves(v, set, set->members);
}

static bool parse_option_set(struct validator *v, const struct ynode *key,
                             const struct ynode *value)
{
    if (!expect_mapping(v, key, value))
        return false;
    struct member_set *set = member_set_new(key->text, true);
    g_ptr_array_add(v->s->option_sets, set);
    return parse_members(v, value, NULL, CTX_OPTION, set->members) && build_index(v, set);
}

static bool set_has_top_member(const struct member_set *set, const char *name)
{
    for (guint i = 0; i < set->members->len; i++) {
        const struct schema_member *m = g_ptr_array_index(set->members, i);
        if (strcmp(m->name, name) == 0)
            return true;
    }
    return false;
}

/* An amend-options item that defines an option of its own: a mapping of
 * exactly one name to a member. */
static bool is_amend_definition(const struct ynode *item)
{
    return item->kind == YNODE_MAPPING && ymap_size(item) == 1;
}

/* Defines the amend-only options (items `- name: {member}`); they follow
 * the options taken from create-options, in list order. */
static bool parse_amend_definitions(struct validator *v, const struct ynode *value,
                                    struct member_set *set)
{
    for (guint i = 0; i < value->children->len; i++) {
        const struct ynode *item = g_ptr_array_index(value->children, i);
        if (!is_amend_definition(item))
            continue;
        struct schema_member *m = parse_member(v, ymap_key(item, 0), ymap_value(item, 0), NULL,
                                               CTX_OPTION);
        if (!m)
            return false;
        if (!v->s->amend_members)
            v->s->amend_members = g_ptr_array_new_with_free_func((GDestroyNotify)member_free);
        g_ptr_array_add(v->s->amend_members, m);
        g_ptr_array_add(set->members, m);
    }
    return true;
}

/* amend-options lists names of create-options, and may define options of
 * its own (qemu's LUKS keyslot options exist for amend only).  Names keep
 * their order in create-options, as qemu filters its create options. */
static bool parse_amend_set(struct validator *v, const struct ynode *key,
                            const struct ynode *value)
{
    const struct member_set *create = schema_find_option_set(v->s, "create-options");
    if (value->kind != YNODE_SEQUENCE)
        return fail_at(v, key, "'%s' must be a list of create-options names", key->text);
    if (!create)
        return fail_at(v, key, "'%s' needs create-options", key->text);
    GHashTable *listed = g_hash_table_new(g_str_hash, g_str_equal);  /* plain names */
    GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);    /* every name */
    bool ok = true;
    for (guint i = 0; ok && i < value->children->len; i++) {
        const struct ynode *item = g_ptr_array_index(value->children, i);
        bool defines = is_amend_definition(item);
        if (item->kind != YNODE_SCALAR && !defines) {
            ok = fail_at(v, item, "amend options must be names or one-member mappings");
            break;
        }
        char *name = defines ? ymap_key(item, 0)->text : item->text;
        if (g_hash_table_contains(seen, name))
            ok = fail_at(v, item, "amend option '%s' is listed twice", name);
        else if (defines && set_has_top_member(create, name))
            ok = fail_at(v, item, "amend option '%s' is already in create-options", name);
        g_hash_table_add(seen, name);
        if (!defines)
            g_hash_table_add(listed, name);
    }
    g_hash_table_destroy(seen);
    struct member_set *set = member_set_new(key->text, false);
    g_ptr_array_add(v->s->option_sets, set);
    for (guint i = 0; ok && i < create->members->len; i++) {
        struct schema_member *m = g_ptr_array_index(create->members, i);
        if (g_hash_table_remove(listed, m->name))
            g_ptr_array_add(set->members, m);
    }
    for (guint i = 0; ok && i < value->children->len; i++) {
        const struct ynode *item = g_ptr_array_index(value->children, i);
        if (item->kind == YNODE_SCALAR && g_hash_table_contains(listed, item->text))
            ok = fail_at(v, item, "amend option '%s' is not in create-options", item->text);
    }
    g_hash_table_destroy(listed);
    return ok && parse_amend_definitions(v, value, set) && build_index(v, set);
}

static bool parse_output_type(struct validator *v, const struct ynode *key,
                              const struct ynode *value)
{
    if (!expect_mapping(v, key, value))
        return false;
    struct member_set *set = member_set_new(key->text, true);
    g_ptr_array_add(v->s->output_types, set);
    return parse_members(v, value, NULL, CTX_OUTPUT, set->members);
}

static bool parse_types(struct validator *v, const struct ynode *key, const struct ynode *value)
{
    if (!expect_mapping(v, key, value))
        return false;
    for (guint i = 0; i < ymap_size(value); i++) {
        const struct ynode *name = ymap_key(value, i);
        if (strcmp(name->text, "info") == 0 || g_strv_contains(output_types_builtin, name->text))
            return fail_at(v, name, "'%s' is reserved and cannot name a type", name->text);
        if (!parse_output_type(v, name, ymap_value(value, i)))
            return false;
    }
    return true;
}

/* Keys of the top level that hold structures; all others are plain values. */
static const char *const structural_keys[] = {
    "create-options", "open-options", "amend-options", "info", "types", "commands", "formats",
    "protocols", NULL,
};

static bool check_top_level_keys(struct validator *v, const struct ynode *root)
{
    for (guint i = 0; i < ymap_size(root); i++) {
        const struct ynode *key = ymap_key(root, i);
        if (!g_strv_contains(structural_keys, key->text) &&
            !expect_scalar(v, key, ymap_value(root, i)))
            return false;
    }
    return true;
}

static bool check_identity(struct validator *v, const struct ynode *root)
{
    const struct ynode *plugin = ymap_get(root, "plugin");
    if (!plugin) {
        if (ymap_get(root, "commands") || ymap_get(root, "types") || ymap_get(root, "formats"))
            return true;
        return fail_at(v, root, "missing 'plugin'");
    }
    if (!*plugin->text)
        return fail_at(v, ymap_find_key(root, "plugin"), "'plugin' must not be empty");
    const struct ynode *kind = ymap_get(root, "kind");
    if (!kind)
        return fail_at(v, root, "missing 'kind' (format, io or crypto)");
    static const char *const kinds[] = { "format", "io", "crypto", NULL };
    if (!g_strv_contains(kinds, kind->text))
        return fail_at(v, ymap_find_key(root, "kind"),
                       "unknown kind '%s' (expected format, io or crypto)", kind->text);
    return true;
}

/* A URI scheme as RFC 3986 spells one: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ),
 * kept to lower case and 32 characters so that a name's prefix can be
 * compared as typed. */
static bool is_scheme(const char *text)
{
    if (!g_ascii_islower(text[0]))
        return false;
    for (const char *c = text; *c; c++)
        if (!g_ascii_islower(*c) && !g_ascii_isdigit(*c) && !strchr("+-.", *c))
            return false;
    return strlen(text) <= 32;
}

/* io plugins: `protocols: [nbd, nbds, ...]`, the name prefixes they serve. */
static bool check_protocols(struct validator *v, const struct ynode *root)
{
    const struct ynode *list = ymap_get(root, "protocols");
    if (!list || !ymap_get(root, "plugin"))
        return true;   /* magic.yaml's `protocols:` is its consumer's business */
    const struct ynode *key = ymap_find_key(root, "protocols");
    const struct ynode *kind = ymap_get(root, "kind");
    if (!kind || !g_str_equal(kind->text, "io"))
        return fail_at(v, key, "'protocols' is only for io plugins");
    if (list->kind != YNODE_SEQUENCE || list->children->len == 0)
        return fail_at(v, key, "'protocols' must be a non-empty list of URI schemes");
    for (guint i = 0; i < list->children->len; i++) {
        const struct ynode *item = g_ptr_array_index(list->children, i);
        if (item->kind != YNODE_SCALAR || !is_scheme(item->text))
            return fail_at(v, item, "protocol names are lower-case URI schemes "
                           "(letters, digits, '+', '-', '.'), like nbd or nbd+unix");
    }
    return true;
}

static bool validate_document(struct validator *v, const struct ynode *root)
{
    if (root->kind != YNODE_MAPPING)
        return fail_at(v, root, "a schema must be a mapping");
    if (!check_top_level_keys(v, root) || !check_identity(v, root) ||
        !check_protocols(v, root))
        return false;
    v->type_names = ymap_get(root, "types");
    if (v->type_names && !parse_types(v, ymap_find_key(root, "types"), v->type_names))
        return false;
    static const char *const option_set_keys[] = { "create-options", "open-options" };
    for (size_t i = 0; i < G_N_ELEMENTS(option_set_keys); i++) {
        const struct ynode *set = ymap_get(root, option_set_keys[i]);
        if (set && !parse_option_set(v, ymap_find_key(root, option_set_keys[i]), set))
            return false;
    }
    const struct ynode *amend = ymap_get(root, "amend-options");
    if (amend && !parse_amend_set(v, ymap_find_key(root, "amend-options"), amend))
        return false;
    const struct ynode *info = ymap_get(root, "info");
    if (info && !parse_output_type(v, ymap_find_key(root, "info"), info))
        return false;
    return true;
}

/* A top-level scalar of the document, or NULL. */
static const char *top_string(const diskimg_schema *s, const char *key)
{
    const struct ynode *n = ymap_get(s->root, key);
    return n && n->kind == YNODE_SCALAR ? n->text : NULL;
}

diskimg_schema *diskimg_schema_parse(const char *yaml_text, const char *origin, GError **errp)
{
    g_return_val_if_fail(yaml_text != NULL, NULL);
    if (!origin)
        origin = "<schema>";
    struct ynode *root = schema_tree_read(yaml_text, origin, errp);
    if (!root)
        return NULL;
    diskimg_schema *s = g_new0(diskimg_schema, 1);
    s->origin = g_strdup(origin);
    s->root = root;
    s->option_sets = g_ptr_array_new();
    s->output_types = g_ptr_array_new_with_free_func((GDestroyNotify)member_set_free);
    struct validator v = { .s = s, .errp = errp };
    if (!validate_document(&v, root)) {
        diskimg_schema_free(s);
        return NULL;
    }
    s->name = top_string(s, "plugin");
    s->kind = top_string(s, "kind");
    s->summary = top_string(s, "summary");
    return s;
}

/* ------------------------------------------------------------- queries */

const char *diskimg_schema_name(const diskimg_schema *s)
{
    return s->name;
}

const char *diskimg_schema_kind(const diskimg_schema *s)
{
    return s->kind;
}

const char *diskimg_schema_summary(const diskimg_schema *s)
{
    return s->summary;
}

const char *schema_display_name(const diskimg_schema *s)
{
    return s->name ? s->name : s->origin;
}

bool diskimg_schema_flag(const diskimg_schema *s, const char *key)
{
    const char *value = top_string(s, key);
    return value && (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on"));
}

const char *diskimg_schema_string(const diskimg_schema *s, const char *key)
{
    return top_string(s, key);
}

char **diskimg_schema_protocols(const diskimg_schema *s)
{
    const struct ynode *list = ymap_get(s->root, "protocols");
    GPtrArray *out = g_ptr_array_new();
    for (guint i = 0; list && list->kind == YNODE_SEQUENCE && i < list->children->len; i++) {
        const struct ynode *item = g_ptr_array_index(list->children, i);
        g_ptr_array_add(out, g_strdup(item->text));
    }
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

/* Built on first use: most runs never ask for the generic view of most
 * schemas, and building it is a third of the cost of reading one. */
JsonNode *diskimg_schema_tree(const diskimg_schema *s)
{
    diskimg_schema *mut = (diskimg_schema *)s;
    if (g_once_init_enter(&mut->tree))
        g_once_init_leave(&mut->tree, ynode_to_json(s->root));
    return s->tree;
}

JsonNode *diskimg_schema_subtree(const diskimg_schema *s, const char *const *keys)
{
    const struct ynode *n = s->root;
    for (; n && *keys; keys++)
        n = n->kind == YNODE_MAPPING ? ymap_get(n, *keys) : NULL;
    return n ? ynode_to_json(n) : NULL;
}

static const struct member_set *find_set(GPtrArray *sets, const char *name)
{
    for (guint i = 0; i < sets->len; i++) {
        const struct member_set *set = g_ptr_array_index(sets, i);
        if (strcmp(set->name, name) == 0)
            return set;
    }
    return NULL;
}

const struct member_set *schema_find_option_set(const diskimg_schema *s, const char *set)
{
    return set ? find_set(s->option_sets, set) : NULL;
}

const struct member_set *schema_find_output_type(const diskimg_schema *s, const char *type)
{
    return type ? find_set(s->output_types, type) : NULL;
}

bool diskimg_schema_has_set(const diskimg_schema *s, const char *set)
{
    /* Option sets and output types ("info", a name under types:) alike. */
    return schema_find_option_set(s, set) != NULL || schema_find_output_type(s, set) != NULL;
}

char **diskimg_schema_set_keys(const diskimg_schema *s, const char *set_name)
{
    const struct member_set *set = schema_find_option_set(s, set_name);
    GPtrArray *keys = g_ptr_array_new();
    for (guint i = 0; set && i < set->leaves->len; i++) {
        const struct schema_member *m = g_ptr_array_index(set->leaves, i);
        g_ptr_array_add(keys, g_strdup(m->path));
    }
    g_ptr_array_add(keys, NULL);
    return (char **)g_ptr_array_free(keys, FALSE);
}
