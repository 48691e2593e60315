/* SPDX-License-Identifier: MIT */
/*
 * plist.c — just enough of an XML reader for UDIF property lists.
 *
 * The document is read into a small element tree (names, text spans,
 * children) with hard limits (nesting depth, element count) and checks of
 * well-formedness (every start tag closed by its own end tag, nothing left
 * open).  The prolog, comments, processing instructions, DOCTYPE and text
 * between elements are skipped;
 * attributes are skipped with their quoted values.  Then the tree is walked
 * along plist/dict "resource-fork"/dict "blkx"/array/dict "Data"/data.
 *
 * qemu merely looks for every "<data>" ... "</data>" in the text; walking
 * the structure instead takes only the block tables, never another data
 * element, and says which part of a damaged list is wrong.
 */
#include <string.h>

#include "dmg.h"

#define MAX_DEPTH 32
/* Property lists hold a few elements per partition (the block tables are
 * base64 text), so this bounds the tree far above real images and keeps a
 * hostile list of empty elements from costing 20 times its size. */
#define MAX_ELEMENTS 100000u

struct xnode {
    const char *name;
    size_t name_len;
    const char *text;          /* content between the tags (leaf elements) */
    size_t text_len;
    struct xnode *child, *last_child, *next;
};

struct xparser {
    const char *p, *end, *start;
    GPtrArray *nodes;          /* every node, for freeing */
};

static int xml_error(const struct xparser *x, GError **errp, const char *what)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "property list: %s at byte %zu of %zu", what,
                             (size_t)(x->p - x->start), (size_t)(x->end - x->start));
}

/* Moves past the first occurrence of `token`; false when there is none. */
static bool skip_past(struct xparser *x, const char *token)
{
    size_t n = strlen(token);

    for (const char *q = x->p; q + n <= x->end; q++) {
        if (memcmp(q, token, n) == 0) {
            x->p = q + n;
            return true;
        }
    }
    return false;
}

static bool starts_with(const struct xparser *x, const char *s)
{
    size_t n = strlen(s);

    return (size_t)(x->end - x->p) >= n && memcmp(x->p, s, n) == 0;
}

static bool name_char(char c)
{
    return g_ascii_isalnum(c) || c == '-' || c == '_' || c == ':' || c == '.';
}

/* Skips "<!DOCTYPE ... >", with an internal subset in brackets. */
static bool skip_declaration(struct xparser *x)
{
    int brackets = 0;

    for (; x->p < x->end; x->p++) {
        if (*x->p == '[')
            brackets++;
        else if (*x->p == ']')
            brackets--;
        else if (*x->p == '>' && brackets <= 0) {
            x->p++;
            return true;
        }
    }
    return false;
}

/* Skips attributes up to the end of a start tag; sets *empty for "/>". */
static bool skip_attributes(struct xparser *x, bool *empty)
{
    while (x->p < x->end) {
        char c = *x->p;

        if (c == '"' || c == '\'') {
            const char *q = memchr(x->p + 1, c, (size_t)(x->end - x->p - 1));

            if (!q)
                return false;
            x->p = q + 1;
        } else if (c == '<') {
            return false;          /* a tag never holds another */
        } else if (c == '>') {
            x->p++;
            *empty = false;
            return true;
        } else if (c == '/' && x->p + 1 < x->end && x->p[1] == '>') {
            x->p += 2;
            *empty = true;
            return true;
        } else {
            x->p++;
        }
    }
    return false;
}

static struct xnode *add_node(struct xparser *x, struct xnode *parent, const char *name,
                              size_t name_len)
{
    struct xnode *n = g_new0(struct xnode, 1);

    g_ptr_array_add(x->nodes, n);
    n->name = name;
    n->name_len = name_len;
    if (parent->last_child)
        parent->last_child->next = n;
    else
        parent->child = n;
    parent->last_child = n;
    return n;
}

static bool node_is(const struct xnode *n, const char *name)
{
    return n && n->name_len == strlen(name) && memcmp(n->name, name, n->name_len) == 0;
}

/* Reads "</name>" for the open element `open`; x->p is past "</". */
static int close_element(struct xparser *x, struct xnode *open, const char *content_start,
                         GError **errp)
{
    const char *name = x->p, *content_end = x->p - 2;

    while (x->p < x->end && name_char(*x->p))
        x->p++;
    if ((size_t)(x->p - name) != open->name_len || memcmp(name, open->name, open->name_len))
        return xml_error(x, errp, "end tag does not match its start tag");
    while (x->p < x->end && g_ascii_isspace(*x->p))
        x->p++;
    if (x->p >= x->end || *x->p != '>')
        return xml_error(x, errp, "unterminated end tag");
    x->p++;
    open->text = content_start;
    open->text_len = (size_t)(content_end - content_start);
    return 0;
}

/* Parses the whole document into children of `root`. */
static int parse_document(struct xparser *x, struct xnode *root, GError **errp)
{
    struct xnode *stack[MAX_DEPTH + 1];
    const char *content[MAX_DEPTH + 1];
    int depth = 0;

    stack[0] = root;
    content[0] = x->p;
    while (x->p < x->end) {
        if (*x->p != '<') {
            x->p++;
            continue;
        }
        if (starts_with(x, "<!--")) {
            if (!skip_past(x, "-->"))
                return xml_error(x, errp, "unterminated comment");
        } else if (starts_with(x, "<?")) {
            if (!skip_past(x, "?>"))
                return xml_error(x, errp, "unterminated processing instruction");
        } else if (starts_with(x, "<!")) {
            if (!skip_declaration(x))
                return xml_error(x, errp, "unterminated declaration");
        } else if (starts_with(x, "</")) {
            if (depth == 0)
                return xml_error(x, errp, "end tag without a start tag");
            x->p += 2;
            if (close_element(x, stack[depth], content[depth], errp) < 0)
                return -1;
            depth--;
        } else {
            const char *name = ++x->p;
            struct xnode *n;
            bool empty;

            while (x->p < x->end && name_char(*x->p))
                x->p++;
            if (x->p == name)
                return xml_error(x, errp, "'<' not followed by a tag name");
            if (x->nodes->len >= MAX_ELEMENTS)
                return xml_error(x, errp, "too many elements");
            n = add_node(x, stack[depth], name, (size_t)(x->p - name));
            if (!skip_attributes(x, &empty))
                return xml_error(x, errp, "unterminated start tag");
            if (empty)
                continue;
            if (depth == MAX_DEPTH)
                return xml_error(x, errp, "elements nested too deeply");
            stack[++depth] = n;
            content[depth] = x->p;
        }
    }
    if (depth != 0)
        return xml_error(x, errp, "document ends inside an element");
    return 0;
}

/* ------------------------------------------------------------ plist walk */

static bool text_is(const struct xnode *n, const char *s)
{
    const char *t = n->text;
    size_t len = n->text_len;

    while (len > 0 && g_ascii_isspace(*t)) {
        t++;
        len--;
    }
    while (len > 0 && g_ascii_isspace(t[len - 1]))
        len--;
    return len == strlen(s) && memcmp(t, s, len) == 0;
}

/* The value that follows <key>name</key> in a dict, or NULL. */
static const struct xnode *dict_get(const struct xnode *dict, const char *key)
{
    for (const struct xnode *n = dict->child; n; n = n->next)
        if (node_is(n, "key") && text_is(n, key))
            return n->next;
    return NULL;
}

static int plist_error(GError **errp, const char *what)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "property list: %s", what);
}

static int walk_blkx(const struct xnode *root, dmg_blob_fn fn, void *opaque, GError **errp)
{
    const struct xnode *plist = root->child, *top, *fork, *blkx;
    unsigned index = 0;

    while (plist && !node_is(plist, "plist"))
        plist = plist->next;
    if (!plist)
        return plist_error(errp, "no <plist> element");
    top = plist->child;
    if (!node_is(top, "dict"))
        return plist_error(errp, "<plist> does not hold a <dict>");
    fork = dict_get(top, "resource-fork");
    if (!node_is(fork, "dict"))
        return plist_error(errp, "no \"resource-fork\" dictionary");
    blkx = dict_get(fork, "blkx");
    if (!node_is(blkx, "array"))
        return plist_error(errp, "no \"blkx\" array in \"resource-fork\"");
    for (const struct xnode *e = blkx->child; e; e = e->next, index++) {
        const struct xnode *data;
        g_autofree uint8_t *blob = NULL;
        size_t len;

        if (!node_is(e, "dict"))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "property list: blkx entry %u is not a <dict>", index);
        data = dict_get(e, "Data");
        if (!node_is(data, "data"))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "property list: blkx entry %u has no \"Data\"", index);
        blob = dmg_base64_decode(data->text, data->text_len, &len, errp);
        if (!blob) {
            g_prefix_error(errp, "property list: blkx entry %u: ", index);
            return -1;
        }
        if (fn(opaque, index, blob, len, errp) < 0)
            return -1;
    }
    return 0;
}

int dmg_plist_blkx(const char *xml, size_t len, dmg_blob_fn fn, void *opaque, GError **errp)
{
    struct xparser x = { .p = xml, .end = xml + len, .start = xml };
    struct xnode root = { 0 };
    int ret;

    x.nodes = g_ptr_array_new_with_free_func(g_free);
    ret = parse_document(&x, &root, errp);
    if (ret == 0)
        ret = walk_blkx(&root, fn, opaque, errp);
    g_ptr_array_free(x.nodes, TRUE);
    return ret;
}

/* ---------------------------------------------------------------- base64 */

static int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

uint8_t *dmg_base64_decode(const char *text, size_t len, size_t *out_len, GError **errp)
{
    uint8_t *out = g_malloc(len / 4 * 3 + 3);
    uint32_t acc = 0;
    size_t n = 0, pad = 0;
    unsigned bits = 0;

    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int v;

        if (g_ascii_isspace(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        v = base64_value(c);
        if (v < 0 || pad > 0) {
            g_free(out);
            diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                              "invalid base64 in \"Data\" at character %zu", i);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (pad > 2 || bits >= 6) {
        g_free(out);
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "truncated base64 in \"Data\"");
        return NULL;
    }
    *out_len = n;
    return out;
}
