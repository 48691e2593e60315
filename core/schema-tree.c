/* SPDX-License-Identifier: MIT */
/*
 * schema-tree.c — schema text → a tree of ynodes with positions.
 *
 * Two readers build the same tree.  libyaml reads what people write; a
 * small JSON reader reads what the build embeds: diskimg-embed-schema
 * validates each YAML schema at build time and stores it as compact JSON,
 * which is YAML too, so the plugin ABI still says "a YAML schema".  The
 * JSON path exists for start-up time: libyaml spends ~200 instructions a
 * byte, and every command reads the command schema and its plugins'
 * schemas before doing anything else.  Plugins are third party code, so
 * both readers are strict and bounded the same way (see schema-tree.h).
 */
#include <stdarg.h>
#include <string.h>
#include <yaml.h>

#include "internal.h"
#include "schema-tree.h"

/* ------------------------------------------------------------ the tree */

void ynode_free(struct ynode *n)
{
    if (!n)
        return;
    g_free(n->text);
    if (n->children)
        g_ptr_array_free(n->children, TRUE);
    g_free(n);
}

static struct ynode *ynode_new(enum ynode_kind kind, int line, int column)
{
    struct ynode *n = g_new0(struct ynode, 1);
    n->kind = kind;
    n->line = line;
    n->column = column;
    if (kind != YNODE_SCALAR)
        n->children = g_ptr_array_new_with_free_func((GDestroyNotify)ynode_free);
    return n;
}

const struct ynode *ymap_find_key(const struct ynode *map, const char *key)
{
    for (guint i = 0; i < ymap_size(map); i++) {
        if (strcmp(ymap_key(map, i)->text, key) == 0)
            return ymap_key(map, i);
    }
    return NULL;
}

const struct ynode *ymap_get(const struct ynode *map, const char *key)
{
    for (guint i = 0; i < ymap_size(map); i++) {
        if (strcmp(ymap_key(map, i)->text, key) == 0)
            return ymap_value(map, i);
    }
    return NULL;
}

void set_error_at(GError **errp, const char *origin, int line, int column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s:%d:%d: %s", origin, line,
                column, msg);
}

/* Appends `child` to collection `n`; the rules on keys are the reader-
 * independent part of the format.  Takes ownership of child. */
static bool add_child(struct ynode *n, struct ynode *child, const char *origin, GError **errp)
{
    bool is_key = n->kind == YNODE_MAPPING && n->children->len % 2 == 0;
    if (is_key && child->kind != YNODE_SCALAR) {
        set_error_at(errp, origin, child->line, child->column,
                     "mapping keys must be plain strings");
        ynode_free(child);
        return false;
    }
    if (is_key && ymap_find_key(n, child->text)) {
        set_error_at(errp, origin, child->line, child->column, "duplicate key '%s'",
                     child->text);
        ynode_free(child);
        return false;
    }
    g_ptr_array_add(n->children, child);
    return true;
}

/* ------------------------------------------------------------ YAML */

struct yaml_reader {
    yaml_parser_t parser;
    const char *origin;
};

static bool next_event(struct yaml_reader *r, yaml_event_t *ev, GError **errp)
{
    if (yaml_parser_parse(&r->parser, ev))
        return true;
    const yaml_parser_t *p = &r->parser;
    set_error_at(errp, r->origin, (int)p->problem_mark.line + 1,
                 (int)p->problem_mark.column + 1, "%s%s%s",
                 p->problem ? p->problem : "invalid YAML",
                 p->context ? " " : "", p->context ? p->context : "");
    return false;
}

static void set_error_at_mark(GError **errp, const char *origin, const yaml_mark_t *mark,
                              const char *msg)
{
    set_error_at(errp, origin, (int)mark->line + 1, (int)mark->column + 1, "%s", msg);
}

static struct ynode *yaml_read_node(struct yaml_reader *r, yaml_event_t *ev, int depth,
                                    GError **errp);

/* Reads children until the closing event of the collection `n`. */
static bool yaml_read_children(struct yaml_reader *r, struct ynode *n, int depth, GError **errp)
{
    yaml_event_type_t end = n->kind == YNODE_MAPPING ? YAML_MAPPING_END_EVENT
                                                     : YAML_SEQUENCE_END_EVENT;
    for (;;) {
        yaml_event_t ev;
        if (!next_event(r, &ev, errp))
            return false;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return true;
        }
        struct ynode *child = yaml_read_node(r, &ev, depth + 1, errp);
        yaml_event_delete(&ev);
        if (!child || !add_child(n, child, r->origin, errp))
            return false;
    }
}

/* Builds the node that starts with event `ev` (which the caller deletes). */
static struct ynode *yaml_read_node(struct yaml_reader *r, yaml_event_t *ev, int depth,
                                    GError **errp)
{
    int line = (int)ev->start_mark.line + 1, column = (int)ev->start_mark.column + 1;
    struct ynode *n;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = ynode_new(YNODE_SCALAR, line, column);
        n->text = g_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        return n;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (depth >= SCHEMA_MAX_DEPTH) {
            set_error_at(errp, r->origin, line, column, "nesting deeper than %d levels",
                         SCHEMA_MAX_DEPTH);
            return NULL;
        }
        n = ynode_new(ev->type == YAML_MAPPING_START_EVENT ? YNODE_MAPPING : YNODE_SEQUENCE,
                      line, column);
        if (!yaml_read_children(r, n, depth, errp)) {
            ynode_free(n);
            return NULL;
        }
        return n;
    case YAML_ALIAS_EVENT:
        set_error_at_mark(errp, r->origin, &ev->start_mark, "aliases are not allowed");
        return NULL;
    default:
        set_error_at_mark(errp, r->origin, &ev->start_mark, "unexpected YAML event");
        return NULL;
    }
}

/* Expects the next event to be of `type`; false (error set) otherwise. */
static bool expect_event(struct yaml_reader *r, yaml_event_type_t type, const char *what,
                         GError **errp)
{
    yaml_event_t ev;
    if (!next_event(r, &ev, errp))
        return false;
    bool ok = ev.type == type;
    if (!ok)
        set_error_at_mark(errp, r->origin, &ev.start_mark, what);
    yaml_event_delete(&ev);
    return ok;
}

static struct ynode *yaml_read_document(struct yaml_reader *r, GError **errp)
{
    yaml_event_t ev;
    if (!expect_event(r, YAML_STREAM_START_EVENT, "invalid YAML stream", errp))
        return NULL;
    if (!next_event(r, &ev, errp))
        return NULL;
    if (ev.type != YAML_DOCUMENT_START_EVENT) {
        set_error_at(errp, r->origin, 1, 1, "empty schema document");
        yaml_event_delete(&ev);
        return NULL;
    }
    yaml_event_delete(&ev);
    if (!next_event(r, &ev, errp))
        return NULL;
    struct ynode *root = yaml_read_node(r, &ev, 0, errp);
    yaml_event_delete(&ev);
    if (!root)
        return NULL;
    if (!expect_event(r, YAML_DOCUMENT_END_EVENT, "invalid end of document", errp) ||
        !expect_event(r, YAML_STREAM_END_EVENT, "only one document is allowed", errp)) {
        ynode_free(root);
        return NULL;
    }
    return root;
}

static struct ynode *read_yaml(const char *text, size_t len, const char *origin, GError **errp)
{
    struct yaml_reader r = { .origin = origin };
    if (!yaml_parser_initialize(&r.parser)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory", origin);
        return NULL;
    }
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);
    struct ynode *root = yaml_read_document(&r, errp);
    yaml_parser_delete(&r.parser);
    return root;
}

/* ------------------------------------------------------------ JSON */

/* A strict RFC 8259 reader.  It never reports errors of its own: on any
 * surprise it gives up and the YAML reader, which accepts every JSON
 * document too, takes over and says what is wrong. */
struct json_reader {
    const char *p, *end;
    int line;
    const char *line_start;
};

static int json_column(const struct json_reader *r)
{
    return (int)(r->p - r->line_start) + 1;
}

static void json_skip_space(struct json_reader *r)
{
    while (r->p < r->end) {
        char c = *r->p;
        if (c == '\n') {
            r->line++;
            r->line_start = r->p + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            return;
        }
        r->p++;
    }
}

static int json_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* \uXXXX (and its low surrogate, if any) at r->p, which points past the
 * 'u'; appends UTF-8 to out.  No NULs: schema texts are C strings. */
static bool json_unicode_escape(struct json_reader *r, GString *out)
{
    if (r->end - r->p < 4)
        return false;
    int cp = json_hex4(r->p);
    r->p += 4;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return false;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
            return false;
        int lo = json_hex4(r->p + 2);
        if (lo < 0xdc00 || lo > 0xdfff)
            return false;
        r->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp <= 0)
        return false;
    g_string_append_unichar(out, (gunichar)cp);
    return true;
}

static bool json_escape(struct json_reader *r, GString *out)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (r->p >= r->end)
        return false;
    char c = *r->p++;
    if (c == 'u')
        return json_unicode_escape(r, out);
    const char *at = strchr(from, c);
    if (!at || !c)
        return false;
    g_string_append_c(out, to[at - from]);
    return true;
}

/* A string at r->p (the opening quote); NULL when it is not valid JSON. */
static char *json_string(struct json_reader *r)
{
    r->p++;
    /* Most strings have no escapes: copy them in one go. */
    const char *q = r->p;
    while (q < r->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
        q++;
    if (q < r->end && *q == '"') {
        if (!g_utf8_validate(r->p, q - r->p, NULL))
            return NULL;
        char *text = g_strndup(r->p, (gsize)(q - r->p));
        r->p = q + 1;
        return text;
    }
    GString *s = g_string_new(NULL);
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p++;
        bool ok = c == '\\' ? json_escape(r, s) : c >= 0x20;
        if (!ok) {
            g_string_free(s, TRUE);
            return NULL;
        }
        if (c != '\\')
            g_string_append_c(s, (char)c);
    }
    if (r->p >= r->end || !g_utf8_validate(s->str, (gssize)s->len, NULL)) {
        g_string_free(s, TRUE);
        return NULL;
    }
    r->p++;
    return g_string_free(s, FALSE);
}

/* true, false, null and numbers stay the text they are, as a YAML plain
 * scalar would. */
static char *json_literal(struct json_reader *r)
{
    const char *start = r->p;
    while (r->p < r->end && (g_ascii_isalnum(*r->p) || strchr("+-.", *r->p)))
        r->p++;
    g_autofree char *word = g_strndup(start, (gsize)(r->p - start));
    if (!strcmp(word, "true") || !strcmp(word, "false") || !strcmp(word, "null"))
        return g_steal_pointer(&word);
    char *end;
    (void)g_ascii_strtod(word, &end);
    bool number = *word && *end == '\0' && (g_ascii_isdigit(word[0]) || word[0] == '-');
    return number ? g_steal_pointer(&word) : NULL;
}

static struct ynode *json_value(struct json_reader *r, int depth);

/* The members or items of the collection `n` whose opener is at r->p. */
static bool json_children(struct json_reader *r, struct ynode *n, int depth)
{
    bool mapping = n->kind == YNODE_MAPPING;
    char close = mapping ? '}' : ']';
    r->p++;
    json_skip_space(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return true;
    }
    for (;;) {
        bool want_key = mapping && n->children->len % 2 == 0;
        if (want_key && (r->p >= r->end || *r->p != '"'))
            return false;
        struct ynode *child = json_value(r, depth + 1);
        if (!child || !add_child(n, child, "", NULL))
            return false;
        json_skip_space(r);
        if (mapping && n->children->len % 2) {
            if (r->p >= r->end || *r->p != ':')
                return false;
            r->p++;
            json_skip_space(r);
            continue;
        }
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return true;
        }
        if (r->p >= r->end || *r->p != ',')
            return false;
        r->p++;
        json_skip_space(r);
    }
}

static struct ynode *json_value(struct json_reader *r, int depth)
{
    if (r->p >= r->end)
        return NULL;
    int line = r->line, column = json_column(r);
    char c = *r->p;
    if (c == '{' || c == '[') {
        if (depth >= SCHEMA_MAX_DEPTH)
            return NULL;
        struct ynode *n = ynode_new(c == '{' ? YNODE_MAPPING : YNODE_SEQUENCE, line, column);
        if (!json_children(r, n, depth)) {
            ynode_free(n);
            return NULL;
        }
        return n;
    }
    char *text = c == '"' ? json_string(r) : json_literal(r);
    if (!text)
        return NULL;
    struct ynode *n = ynode_new(YNODE_SCALAR, line, column);
    n->text = text;
    return n;
}

static struct ynode *read_json(const char *text, size_t len)
{
    struct json_reader r = { .p = text, .end = text + len, .line = 1, .line_start = text };
    json_skip_space(&r);
    if (r.p >= r.end || *r.p != '{')
        return NULL;
    struct ynode *root = json_value(&r, 0);
    json_skip_space(&r);
    if (root && r.p != r.end) {
        ynode_free(root);
        return NULL;
    }
    return root;
}

/* ------------------------------------------------------------ entry */

struct ynode *schema_tree_read(const char *text, const char *origin, GError **errp)
{
    size_t len = strlen(text);
    if (len > SCHEMA_MAX_BYTES) {
        set_error_at(errp, origin, 1, 1, "schema is larger than 1 MiB");
        return NULL;
    }
    struct ynode *root = read_json(text, len);
    return root ? root : read_yaml(text, len, origin, errp);
}

JsonNode *ynode_to_json(const struct ynode *n)
{
    if (n->kind == YNODE_SCALAR)
        return json_node_init_string(json_node_alloc(), n->text);
    if (n->kind == YNODE_SEQUENCE) {
        JsonArray *a = json_array_sized_new(n->children->len);
        for (guint i = 0; i < n->children->len; i++)
            json_array_add_element(a, ynode_to_json(g_ptr_array_index(n->children, i)));
        JsonNode *node = json_node_init_array(json_node_alloc(), a);
        json_array_unref(a);
        return node;
    }
    JsonObject *o = json_object_new();
    for (guint i = 0; i < ymap_size(n); i++)
        json_object_set_member(o, ymap_key(n, i)->text, ynode_to_json(ymap_value(n, i)));
    JsonNode *node = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return node;
}
