/* SPDX-License-Identifier: MIT */
/*
 * descriptor.c — the vmdk text descriptor.
 *
 * The descriptor is untrusted text of at most 1 MiB.  It is read line by
 * line (each at most 4 KiB), and each line is one of
 *   - blank or a '#' comment;
 *   - an extent: ACCESS SECTORS TYPE ["FILE" [OFFSET]];
 *   - key = value, the value bare or in double quotes (no escapes exist).
 * Lines are kept as read, so that editing one key (CID, parentCID,
 * parentFileNameHint) and writing the text back changes nothing else.
 */
#include "vmdk.h"

#include <string.h>

static void line_free(gpointer p)
{
    struct vmdk_desc_line *l = p;
    g_free(l->text);
    g_free(l->key);
    g_free(l->value);
    g_free(l);
}

static void extent_clear(gpointer p)
{
    struct vmdk_desc_extent *x = p;
    g_free(x->access);
    g_free(x->type);
    g_free(x->file);
}

void vmdk_desc_free(struct vmdk_desc *d)
{
    if (!d)
        return;
    g_ptr_array_free(d->lines, TRUE);
    g_array_free(d->extents, TRUE);
    g_free(d);
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* The next whitespace-separated word of *p, or NULL at the end. */
static char *next_word(const char **p)
{
    const char *s = skip_blanks(*p), *e = s;
    while (*e && *e != ' ' && *e != '\t')
        e++;
    *p = e;
    return e > s ? g_strndup(s, (gsize)(e - s)) : NULL;
}

static bool parse_decimal(const char *w, uint64_t *out)
{
    if (!w || !*w || strlen(w) > 20)
        return false;
    uint64_t v = 0;
    for (const char *c = w; *c; c++) {
        if (*c < '0' || *c > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    *out = v;
    return true;
}

static bool is_access(const char *w)
{
    return !strcmp(w, "RW") || !strcmp(w, "RDONLY") || !strcmp(w, "NOACCESS");
}

/* A quoted name at *p: the text between the quotes. */
static char *quoted(const char **p)
{
    const char *s = skip_blanks(*p);
    if (*s != '"')
        return NULL;
    const char *e = strchr(s + 1, '"');
    if (!e)
        return NULL;
    *p = e + 1;
    return g_strndup(s + 1, (gsize)(e - s - 1));
}

static int parse_extent(const char *line, struct vmdk_desc_extent *x)
{
    const char *p = line;
    uint64_t n;
    x->access = next_word(&p);
    g_autofree char *sectors = next_word(&p);
    x->type = next_word(&p);
    if (!x->type || !parse_decimal(sectors, &x->sectors))
        return -1;
    if (!*skip_blanks(p))
        return strcmp(x->type, "ZERO") ? -1 : 0;
    x->file = quoted(&p);
    if (!x->file)
        return -1;
    g_autofree char *offset = next_word(&p);
    if (offset) {
        if (!parse_decimal(offset, &n))
            return -1;
        x->offset = n;
        x->has_offset = true;
    }
    return *skip_blanks(p) ? -1 : 0;
}

static bool key_char(char c)
{
    return g_ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
}

/* key = value; false when the line is not of that shape. */
static bool parse_pair(const char *line, char **key, char **value)
{
    const char *p = line, *k = line;
    while (key_char(*p))
        p++;
    if (p == k)
        return false;
    const char *ke = p;
    p = skip_blanks(p);
    if (*p != '=')
        return false;
    p = skip_blanks(p + 1);
    const char *vs = p, *ve;
    if (*p == '"') {
        vs = p + 1;
        ve = strchr(vs, '"');
        if (!ve)
            return false;
    } else {
        ve = vs;
        while (*ve && *ve != ' ' && *ve != '\t' && *ve != '#')
            ve++;
    }
    *key = g_strndup(k, (gsize)(ke - k));
    *value = g_strndup(vs, (gsize)(ve - vs));
    return true;
}

static int parse_line(struct vmdk_desc *d, char *text, unsigned lineno, const char *filename,
                      GError **errp)
{
    struct vmdk_desc_line *l = g_new0(struct vmdk_desc_line, 1);
    l->text = text;
    g_ptr_array_add(d->lines, l);
    const char *s = skip_blanks(text);
    if (!*s || *s == '#')
        return 0;
    const char *p = s;
    g_autofree char *first = next_word(&p);
    if (first && is_access(first)) {
        if (d->extents->len >= VMDK_MAX_EXTENTS)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s%svmdk descriptor: more than %u extents", VMDK_WHERE(filename),
                                     VMDK_MAX_EXTENTS);
        struct vmdk_desc_extent x = { 0 };
        if (parse_extent(s, &x) < 0) {
            extent_clear(&x);
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s%svmdk descriptor: invalid extent line %u: %s",
                                     VMDK_WHERE(filename), lineno, s);
        }
        g_array_append_val(d->extents, x);
        return 0;
    }
    (void)parse_pair(s, &l->key, &l->value);
    return 0;
}

int vmdk_desc_parse(const char *text, size_t len, const char *filename,
                    struct vmdk_desc **out, GError **errp)
{
    const char *end = memchr(text, '\0', len);
    len = end ? (size_t)(end - text) : len;
    if (len > VMDK_DESC_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%svmdk descriptor is larger than %u bytes", VMDK_WHERE(filename),
                                 VMDK_DESC_MAX);
    struct vmdk_desc *d = g_new0(struct vmdk_desc, 1);
    d->lines = g_ptr_array_new_with_free_func(line_free);
    d->extents = g_array_new(FALSE, TRUE, sizeof(struct vmdk_desc_extent));
    g_array_set_clear_func(d->extents, extent_clear);
    unsigned lineno = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - text) - pos : len - pos;
        lineno++;
        if (n > VMDK_DESC_LINE_MAX) {
            vmdk_desc_free(d);
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s%svmdk descriptor: line %u is longer than %u bytes",
                                     VMDK_WHERE(filename), lineno, VMDK_DESC_LINE_MAX);
        }
        size_t keep = n;
        if (keep && text[pos + keep - 1] == '\r')
            keep--;
        if (parse_line(d, g_strndup(text + pos, keep), lineno, filename, errp) < 0) {
            vmdk_desc_free(d);
            return -1;
        }
        pos += n + 1;
    }
    *out = d;
    return 0;
}

static struct vmdk_desc_line *find_line(const struct vmdk_desc *d, const char *key)
{
    for (guint i = 0; i < d->lines->len; i++) {
        struct vmdk_desc_line *l = g_ptr_array_index(d->lines, i);
        if (l->key && !strcmp(l->key, key))
            return l;
    }
    return NULL;
}

const char *vmdk_desc_get(const struct vmdk_desc *d, const char *key)
{
    struct vmdk_desc_line *l = find_line(d, key);
    return l ? l->value : NULL;
}

static char *pair_text(const char *key, const char *value, bool quote)
{
    const char *sep = g_str_has_prefix(key, "ddb.") ? " = " : "=";
    return quote ? g_strdup_printf("%s%s\"%s\"", key, sep, value)
                 : g_strdup_printf("%s%s%s", key, sep, value);
}

void vmdk_desc_set(struct vmdk_desc *d, const char *key, const char *value, bool quote,
                   const char *after)
{
    struct vmdk_desc_line *l = find_line(d, key);
    if (!l) {
        guint at = 0;
        for (guint i = 0; i < d->lines->len; i++) {
            struct vmdk_desc_line *o = g_ptr_array_index(d->lines, i);
            if (o->key && after && !strcmp(o->key, after)) {
                at = i + 1;
                break;
            }
            if (o->key && !g_str_has_prefix(o->key, "ddb."))
                at = i + 1;
        }
        l = g_new0(struct vmdk_desc_line, 1);
        l->key = g_strdup(key);
        g_ptr_array_insert(d->lines, (gint)at, l);
    }
    g_free(l->text);
    g_free(l->value);
    l->value = g_strdup(value);
    l->text = pair_text(key, value, quote);
}

void vmdk_desc_remove(struct vmdk_desc *d, const char *key)
{
    struct vmdk_desc_line *l = find_line(d, key);
    if (l)
        g_ptr_array_remove(d->lines, l);
}

char *vmdk_desc_format(const struct vmdk_desc *d)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < d->lines->len; i++) {
        struct vmdk_desc_line *l = g_ptr_array_index(d->lines, i);
        g_string_append(s, l->text);
        g_string_append_c(s, '\n');
    }
    return g_string_free(s, FALSE);
}

bool vmdk_parse_cid(const char *text, uint32_t *out)
{
    if (!text || !*text || strlen(text) > 8)
        return false;
    uint32_t v = 0;
    for (const char *c = text; *c; c++) {
        if (!g_ascii_isxdigit(*c))
            return false;
        v = v << 4 | (uint32_t)g_ascii_xdigit_value(*c);
    }
    *out = v;
    return true;
}
