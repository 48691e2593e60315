/* SPDX-License-Identifier: MIT */
/*
 * The schema engine, part 3: output.
 *
 * Output objects from plugins are first conformed to their schema type
 * (checked, and reordered into schema order, which is qemu's JSON order),
 * then rendered either as JSON with qemu's exact layout or as qemu-img's
 * human "Format specific information" dump.  The schema itself can also be
 * rendered as JSON for programs (`diskimg schema NAME --output=json`).
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "internal.h"
#include "schema-private.h"

/* ----------------------------------------------------------- scalars */

/* Shortest %g form that reads back as the same double, in the C locale. */
static void append_double(GString *out, double d)
{
    if (!isfinite(d)) {
        g_string_append(out, "null");   /* JSON has no inf/nan */
        return;
    }
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    for (int precision = 15; precision <= 17; precision++) {
        char fmt[8];
        g_snprintf(fmt, sizeof(fmt), "%%.%dg", precision);
        g_ascii_formatd(buf, sizeof(buf), fmt, d);
        if (g_ascii_strtod(buf, NULL) == d)
            break;
    }
    g_string_append(out, buf);
}

/* A scalar as the human format prints it: strings bare, bools as words. */
static void append_human_scalar(GString *out, JsonNode *n)
{
    if (JSON_NODE_HOLDS_NULL(n)) {
        g_string_append(out, "null");
        return;
    }
    GType t = json_node_get_value_type(n);
    if (t == G_TYPE_STRING)
        g_string_append(out, json_node_get_string(n));
    else if (t == G_TYPE_BOOLEAN)
        g_string_append(out, json_node_get_boolean(n) ? "true" : "false");
    else if (t == G_TYPE_DOUBLE)
        append_double(out, json_node_get_double(n));
    else
        g_string_append_printf(out, "%" G_GINT64_FORMAT, json_node_get_int(n));
}

/* ------------------------------------------------------------ human */

static bool is_container(JsonNode *n)
{
    return JSON_NODE_HOLDS_OBJECT(n) || JSON_NODE_HOLDS_ARRAY(n);
}

static void human_node(GString *out, JsonNode *n, int indent);

/* "key: value" on one line, or "key:" with the content below it. */
static void human_entry(GString *out, const char *label, JsonNode *value, int indent)
{
    g_string_append_printf(out, "%*s%s:", indent, "", label);
    if (is_container(value)) {
        g_string_append_c(out, '\n');
        human_node(out, value, indent + 4);
    } else {
        g_string_append_c(out, ' ');
        append_human_scalar(out, value);
        g_string_append_c(out, '\n');
    }
}

static void human_object(GString *out, JsonObject *o, int indent)
{
    GList *names = json_object_get_members(o);
    for (GList *l = names; l; l = l->next) {
        g_autofree char *label = g_strdelimit(g_strdup(l->data), "-", ' ');
        human_entry(out, label, json_object_get_member(o, l->data), indent);
    }
    g_list_free(names);
}

static void human_array(GString *out, JsonArray *a, int indent)
{
    for (guint i = 0; i < json_array_get_length(a); i++) {
        char label[24];
        g_snprintf(label, sizeof(label), "[%u]", i);
        human_entry(out, label, json_array_get_element(a, i), indent);
    }
}

static void human_node(GString *out, JsonNode *n, int indent)
{
    if (JSON_NODE_HOLDS_OBJECT(n)) {
        human_object(out, json_node_get_object(n), indent);
    } else if (JSON_NODE_HOLDS_ARRAY(n)) {
        human_array(out, json_node_get_array(n), indent);
    } else {
        g_string_append_printf(out, "%*s", indent, "");
        append_human_scalar(out, n);
        g_string_append_c(out, '\n');
    }
}

void diskimg_render_human(GString *out, JsonNode *node, int indent)
{
    g_return_if_fail(out != NULL);
    if (node)
        human_node(out, node, indent);
}

/* ------------------------------------------------------------- JSON */

/* JSON string as qemu writes it: everything outside printable ASCII as
 * \uXXXX (surrogate pairs beyond the BMP), invalid UTF-8 as U+FFFD. */
static void append_json_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (const char *p = s; *p;) {
        gunichar c = g_utf8_get_char_validated(p, -1);
        const char *next;
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            c = 0xFFFD;
            next = p + 1;
        } else {
            next = g_utf8_next_char(p);
        }
        p = next;
        switch (c) {
        case '"':  g_string_append(out, "\\\""); continue;
        case '\\': g_string_append(out, "\\\\"); continue;
        case '\b': g_string_append(out, "\\b"); continue;
        case '\f': g_string_append(out, "\\f"); continue;
        case '\n': g_string_append(out, "\\n"); continue;
        case '\r': g_string_append(out, "\\r"); continue;
        case '\t': g_string_append(out, "\\t"); continue;
        default:   break;
        }
        if (c > 0xFFFF) {
            c -= 0x10000;
            g_string_append_printf(out, "\\u%04X\\u%04X", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
        } else if (c < 0x20 || c >= 0x7F) {
            g_string_append_printf(out, "\\u%04X", c);
        } else {
            g_string_append_c(out, (char)c);
        }
    }
    g_string_append_c(out, '"');
}

struct json_writer {
    GString *out;
    bool pretty;
};

static void json_node_write(struct json_writer *w, JsonNode *n, int depth);

/* Before the index-th item of a container at `depth`: the comma, then a
 * new indented line (pretty) or a space (compact). */
static void json_item_separator(struct json_writer *w, guint index, int depth)
{
    if (index > 0)
        g_string_append_c(w->out, ',');
    if (w->pretty)
        g_string_append_printf(w->out, "\n%*s", 4 * (depth + 1), "");
    else if (index > 0)
        g_string_append_c(w->out, ' ');
}

/* qemu closes even an empty container on its own line when pretty. */
static void json_close(struct json_writer *w, char bracket, int depth)
{
    if (w->pretty)
        g_string_append_printf(w->out, "\n%*s", 4 * depth, "");
    g_string_append_c(w->out, bracket);
}

static void json_object_write(struct json_writer *w, JsonObject *o, int depth)
{
    g_string_append_c(w->out, '{');
    GList *names = json_object_get_members(o);
    guint index = 0;
    for (GList *l = names; l; l = l->next, index++) {
        json_item_separator(w, index, depth);
        append_json_string(w->out, l->data);
        g_string_append(w->out, ": ");
        json_node_write(w, json_object_get_member(o, l->data), depth + 1);
    }
    g_list_free(names);
    json_close(w, '}', depth);
}

static void json_array_write(struct json_writer *w, JsonArray *a, int depth)
{
    g_string_append_c(w->out, '[');
    for (guint i = 0; i < json_array_get_length(a); i++) {
        json_item_separator(w, i, depth);
        json_node_write(w, json_array_get_element(a, i), depth + 1);
    }
    json_close(w, ']', depth);
}

static void json_node_write(struct json_writer *w, JsonNode *n, int depth)
{
    if (JSON_NODE_HOLDS_OBJECT(n))
        json_object_write(w, json_node_get_object(n), depth);
    else if (JSON_NODE_HOLDS_ARRAY(n))
        json_array_write(w, json_node_get_array(n), depth);
    else if (JSON_NODE_HOLDS_NULL(n))
        g_string_append(w->out, "null");
    else if (json_node_get_value_type(n) == G_TYPE_STRING)
        append_json_string(w->out, json_node_get_string(n));
    else
        append_human_scalar(w->out, n);     /* numbers and booleans read the same */
}

char *diskimg_render_json(JsonNode *node, bool pretty)
{
    struct json_writer w = { .out = g_string_new(NULL), .pretty = pretty };
    if (node)
        json_node_write(&w, node, 0);
    else
        g_string_append(w.out, "null");
    return g_string_free(w.out, FALSE);
}

/* ---------------------------------------------------------- conform */

struct conform {
    const diskimg_schema *s;
    const char *type;       /* "info" or a type name, for messages */
    GError **errp;
};

static bool G_GNUC_PRINTF(3, 4)
conform_fail(struct conform *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (c->s->name)
        g_set_error(c->errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED, "plugin %s: %s member '%s' %s",
                    c->s->name, c->type, path, msg);
    else
        g_set_error(c->errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED, "%s: %s member '%s' %s",
                    c->s->origin, c->type, path, msg);
    return false;
}

static const char *json_kind(JsonNode *n)
{
    if (JSON_NODE_HOLDS_OBJECT(n))
        return "an object";
    if (JSON_NODE_HOLDS_ARRAY(n))
        return "a list";
    if (JSON_NODE_HOLDS_NULL(n))
        return "null";
    GType t = json_node_get_value_type(n);
    return t == G_TYPE_STRING ? "a string" : t == G_TYPE_BOOLEAN ? "a boolean"
         : t == G_TYPE_DOUBLE ? "a floating point number" : "an integer";
}

static bool holds(JsonNode *n, GType t)
{
    return JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == t;
}

static JsonNode *conform_value(struct conform *c, const struct schema_member *m, JsonNode *value,
                               const char *path);

static JsonObject *conform_members(struct conform *c, GPtrArray *members, JsonObject *obj,
                                   const char *prefix);

static JsonNode *conform_object(struct conform *c, GPtrArray *members, JsonNode *value,
                                const char *path)
{
    if (!JSON_NODE_HOLDS_OBJECT(value)) {
        conform_fail(c, path, "must be an object, not %s", json_kind(value));
        return NULL;
    }
    JsonObject *o = conform_members(c, members, json_node_get_object(value), path);
    if (!o)
        return NULL;
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return n;
}

static JsonNode *conform_list(struct conform *c, const struct schema_member *m, JsonNode *value,
                              const char *path)
{
    if (!JSON_NODE_HOLDS_ARRAY(value)) {
        conform_fail(c, path, "must be a list, not %s", json_kind(value));
        return NULL;
    }
    JsonArray *in = json_node_get_array(value);
    JsonArray *out = json_array_sized_new(json_array_get_length(in));
    for (guint i = 0; i < json_array_get_length(in); i++) {
        g_autofree char *item_path = g_strdup_printf("%s[%u]", path, i);
        JsonNode *item = conform_value(c, m->element, json_array_get_element(in, i), item_path);
        if (!item) {
            json_array_unref(out);
            return NULL;
        }
        json_array_add_element(out, item);
    }
    JsonNode *n = json_node_init_array(json_node_alloc(), out);
    json_array_unref(out);
    return n;
}

static bool check_scalar(struct conform *c, const struct schema_member *m, JsonNode *value,
                         const char *path)
{
    switch (m->type) {
    case MT_STR:
    case MT_SECRET_ID:
        return holds(value, G_TYPE_STRING) ||
               conform_fail(c, path, "must be a string, not %s", json_kind(value));
    case MT_ENUM:
        if (!holds(value, G_TYPE_STRING))
            return conform_fail(c, path, "must be a string, not %s", json_kind(value));
        if (!g_strv_contains((const char *const *)m->values, json_node_get_string(value))) {
            g_autofree char *values = g_strjoinv(", ", m->values);
            return conform_fail(c, path, "must be one of %s, not '%s'", values,
                                json_node_get_string(value));
        }
        return true;
    case MT_INT:
    case MT_SIZE:
        return holds(value, G_TYPE_INT64) ||
               conform_fail(c, path, "must be an integer, not %s", json_kind(value));
    case MT_NUMBER:
        return holds(value, G_TYPE_INT64) || holds(value, G_TYPE_DOUBLE) ||
               conform_fail(c, path, "must be a number, not %s", json_kind(value));
    case MT_BOOL:
        return holds(value, G_TYPE_BOOLEAN) ||
               conform_fail(c, path, "must be a boolean, not %s", json_kind(value));
    default:
        return conform_fail(c, path, "has a type that is not a scalar");
    }
}

static JsonNode *conform_value(struct conform *c, const struct schema_member *m, JsonNode *value,
                               const char *path)
{
    if (m->type == MT_STRUCT)
        return conform_object(c, m->members, value, path);
    if (m->type == MT_NAMED) {
        const struct member_set *t = schema_find_output_type(c->s, m->type_name);
        return conform_object(c, t->members, value, path);
    }
    if (m->type == MT_LIST)
        return conform_list(c, m, value, path);
    if (m->type == MT_OBJECT) {
        /* A plugin's data, conformed against the plugin's own schema. */
        if (JSON_NODE_HOLDS_OBJECT(value))
            return json_node_copy(value);
        conform_fail(c, path, "must be an object, not %s", json_kind(value));
        return NULL;
    }
    return check_scalar(c, m, value, path) ? json_node_copy(value) : NULL;
}

static const struct schema_member *member_named(GPtrArray *members, const char *name)
{
    for (guint i = 0; i < members->len; i++) {
        const struct schema_member *m = g_ptr_array_index(members, i);
        if (strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

static char *member_path(const char *prefix, const char *name)
{
    return prefix ? g_strdup_printf("%s.%s", prefix, name) : g_strdup(name);
}

static bool check_no_unknown_members(struct conform *c, GPtrArray *members, JsonObject *obj,
                                     const char *prefix)
{
    GList *names = json_object_get_members(obj);
    bool ok = true;
    for (GList *l = names; ok && l; l = l->next) {
        if (!member_named(members, l->data)) {
            g_autofree char *path = member_path(prefix, l->data);
            ok = conform_fail(c, path, "is not in the schema");
        }
    }
    g_list_free(names);
    return ok;
}

static JsonObject *conform_members(struct conform *c, GPtrArray *members, JsonObject *obj,
                                   const char *prefix)
{
    if (!check_no_unknown_members(c, members, obj, prefix))
        return NULL;
    JsonObject *out = json_object_new();
    for (guint i = 0; i < members->len; i++) {
        const struct schema_member *m = g_ptr_array_index(members, i);
        g_autofree char *path = member_path(prefix, m->name);
        JsonNode *value = json_object_get_member(obj, m->name);
        if (!value) {
            if (m->optional)
                continue;
            conform_fail(c, path, "is missing");
            json_object_unref(out);
            return NULL;
        }
        JsonNode *copy = conform_value(c, m, value, path);
        if (!copy) {
            json_object_unref(out);
            return NULL;
        }
        json_object_set_member(out, m->name, copy);
    }
    return out;
}

JsonObject *diskimg_schema_conform(const diskimg_schema *s, const char *type, JsonObject *obj,
                                   GError **errp)
{
    g_return_val_if_fail(s && obj, NULL);
    const struct member_set *t = schema_find_output_type(s, type);
    if (!t) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: no output type '%s'",
                    schema_display_name(s), type ? type : "(null)");
        return NULL;
    }
    struct conform c = { .s = s, .type = type, .errp = errp };
    return conform_members(&c, t->members, obj, NULL);
}

/* ---------------------------------------------------- introspection */

static JsonNode *value_json(const struct schema_member *m, const struct option_value *v)
{
    JsonNode *n = json_node_alloc();
    if (m->type == MT_SIZE)
        return json_node_init_int(n, (gint64)v->v.u);
    if (m->type == MT_INT)
        return json_node_init_int(n, v->v.i);
    if (m->type == MT_BOOL)
        return json_node_init_boolean(n, v->v.b);
    return json_node_init_string(n, v->text);
}

static JsonArray *members_json(GPtrArray *members);

static JsonObject *member_json(const struct schema_member *m, bool with_name)
{
    JsonObject *o = json_object_new();
    if (with_name)
        json_object_set_string_member(o, "name", m->name);
    json_object_set_string_member(o, "type", schema_member_type_name(m));
    if (m->help)
        json_object_set_string_member(o, "help", m->help);
    if (m->has_default)
        json_object_set_member(o, "default", value_json(m, &m->def));
    if (m->has_min)
        json_object_set_member(o, "min", value_json(m, &m->min));
    if (m->has_max)
        json_object_set_member(o, "max", value_json(m, &m->max));
    if (m->power_of_two)
        json_object_set_boolean_member(o, "power-of-two", true);
    if (m->values) {
        JsonArray *values = json_array_new();
        for (char **v = m->values; *v; v++)
            json_array_add_string_element(values, *v);
        json_object_set_array_member(o, "values", values);
    }
    if (m->refused) {
        JsonObject *refused = json_object_new();
        g_autoptr(GList) keys = g_hash_table_get_keys(m->refused);
        keys = g_list_sort(keys, (GCompareFunc)strcmp);
        for (GList *k = keys; k; k = k->next)
            json_object_set_string_member(refused, k->data,
                                          g_hash_table_lookup(m->refused, k->data));
        json_object_set_object_member(o, "refused", refused);
    }
    if (m->members)
        json_object_set_array_member(o, "members", members_json(m->members));
    if (m->element)
        json_object_set_object_member(o, "element", member_json(m->element, false));
    if (m->alias_path) {
        const char *dot = strrchr(m->alias_path, '.');
        json_object_set_string_member(o, "alias", dot ? dot + 1 : m->alias_path);
    }
    if (m->deprecated)
        json_object_set_string_member(o, "deprecated", m->deprecated);
    if (m->required)
        json_object_set_boolean_member(o, "required", true);
    if (m->optional)
        json_object_set_boolean_member(o, "optional", true);
    return o;
}

static JsonArray *members_json(GPtrArray *members)
{
    JsonArray *a = json_array_sized_new(members->len);
    for (guint i = 0; i < members->len; i++)
        json_array_add_object_element(a, member_json(g_ptr_array_index(members, i), true));
    return a;
}

static const char *const identity_keys[] = { "plugin", "kind", "summary", NULL };
static const char *const structure_keys[] = {
    "create-options", "open-options", "amend-options", "info", "types", "commands", "formats",
    "protocols", NULL,
};

/* Top-level plain values other than plugin/kind/summary; YAML booleans
 * become JSON booleans. */
static JsonObject *flags_json(const diskimg_schema *s)
{
    JsonObject *top = json_node_get_object(diskimg_schema_tree(s));
    JsonObject *flags = json_object_new();
    GList *names = json_object_get_members(top);
    for (GList *l = names; l; l = l->next) {
        const char *key = l->data;
        if (g_strv_contains(identity_keys, key) || g_strv_contains(structure_keys, key))
            continue;
        JsonNode *node = json_object_get_member(top, key);
        if (!JSON_NODE_HOLDS_VALUE(node))
            continue;   /* a list or mapping is structure, never a flag */
        const char *value = json_node_get_string(node);
        if (!strcmp(value, "true") || !strcmp(value, "false"))
            json_object_set_boolean_member(flags, key, value[0] == 't');
        else
            json_object_set_string_member(flags, key, value);
    }
    g_list_free(names);
    return flags;
}

static void set_optional_string(JsonObject *o, const char *key, const char *value)
{
    if (value)
        json_object_set_string_member(o, key, value);
}

JsonNode *diskimg_schema_to_json(const diskimg_schema *s)
{
    JsonObject *o = json_object_new();
    json_object_set_int_member(o, "introspection-version", DISKIMG_INTROSPECTION_VERSION);
    set_optional_string(o, "name", s->name);
    set_optional_string(o, "kind", s->kind);
    set_optional_string(o, "summary", s->summary);
    json_object_set_object_member(o, "flags", flags_json(s));

    JsonObject *sets = json_object_new();
    for (guint i = 0; i < s->option_sets->len; i++) {
        const struct member_set *set = g_ptr_array_index(s->option_sets, i);
        json_object_set_array_member(sets, set->name, members_json(set->members));
    }
    json_object_set_object_member(o, "options", sets);

    JsonObject *types = json_object_new();
    for (guint i = 0; i < s->output_types->len; i++) {
        const struct member_set *t = g_ptr_array_index(s->output_types, i);
        if (strcmp(t->name, "info") == 0)
            json_object_set_array_member(o, "info", members_json(t->members));
        else
            json_object_set_array_member(types, t->name, members_json(t->members));
    }
    json_object_set_object_member(o, "types", types);

    /* Generic parts stay as the document wrote them (an io plugin's
     * protocols: a list of schemes; magic.yaml's: install hints). */
    JsonObject *top = json_node_get_object(diskimg_schema_tree(s));
    /* protocols: an io plugin's URI schemes; magic.yaml's install hints */
    static const char *const generic_keys[] = { "commands", "formats", "protocols" };
    for (size_t i = 0; i < G_N_ELEMENTS(generic_keys); i++) {
        JsonNode *part = json_object_get_member(top, generic_keys[i]);
        if (part)
            json_object_set_member(o, generic_keys[i], json_node_copy(part));
    }
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return n;
}
