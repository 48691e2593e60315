/* SPDX-License-Identifier: MIT */
/*
 * location.c — where an rbd name points: qemu's legacy file name syntax
 *
 *     rbd:POOL/[NAMESPACE/]IMAGE[@SNAPSHOT][:KEY=VALUE[:KEY=VALUE...]]
 *
 * parsed token by token as qemu 7.2's rbd driver does (a backslash keeps
 * the next character literal, so "\:" and "\@" may appear in names and
 * values), merged with the --image-opts options of the schema.
 */
#include <string.h>

#include "rbd.h"

void rbd_location_clear(struct rbd_location *loc)
{
    g_free(loc->pool);
    g_free(loc->ns);
    g_free(loc->image);
    g_free(loc->snap);
    g_free(loc->conf);
    g_free(loc->user);
    if (loc->conf_pairs)
        g_ptr_array_free(loc->conf_pairs, TRUE);
    memset(loc, 0, sizeof(*loc));
}

/* Cuts s at its first `delim` that no backslash escapes: *rest is what
 * follows the delimiter, or NULL when s has none. */
static char *cut_token(char *s, char delim, char **rest)
{
    char *c = s;
    *rest = NULL;
    while (*c && *c != delim) {
        if (c[0] == '\\' && c[1])
            c++;
        c++;
    }
    if (*c == delim) {
        *c = '\0';
        *rest = c + 1;
    }
    return s;
}

/* Drops the escaping backslashes, in place: "a\:b" becomes "a:b". */
static char *unescape(char *s)
{
    char *out = s;
    for (const char *in = s; *in; in++) {
        if (in[0] == '\\' && in[1])
            in++;
        *out++ = *in;
    }
    *out = '\0';
    return s;
}

/* KEY=VALUE pairs after the image: conf= and id= are the conf and user
 * options, anything else is a Ceph setting passed to rados_conf_set. */
static int parse_pairs(char *rest, struct rbd_location *loc, GError **errp)
{
    while (rest) {
        char *key = cut_token(rest, '=', &rest);
        if (!rest)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "conf option %s has no value", unescape(key));
        unescape(key);
        char *value = unescape(cut_token(rest, ':', &rest));
        if (g_str_equal(key, "conf")) {
            g_free(loc->conf);
            loc->conf = g_strdup(value);
        } else if (g_str_equal(key, "id")) {
            g_free(loc->user);
            loc->user = g_strdup(value);
        } else {
            if (!loc->conf_pairs)
                loc->conf_pairs = g_ptr_array_new_with_free_func(g_free);
            g_ptr_array_add(loc->conf_pairs, g_strdup(key));
            g_ptr_array_add(loc->conf_pairs, g_strdup(value));
        }
    }
    return 0;
}

int rbd_location_parse(const char *filename, struct rbd_location *loc, GError **errp)
{
    if (!g_str_has_prefix(filename, RBD_PREFIX))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "File name must start with '" RBD_PREFIX "'");
    g_autofree char *buf = g_strdup(filename + strlen(RBD_PREFIX));
    char *rest;
    char *pool = cut_token(buf, '/', &rest);
    if (!rest)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Pool name is required");
    loc->pool = g_strdup(unescape(pool));
    /* As qemu: an '@' anywhere after the pool starts a snapshot name. */
    char *image;
    if (strchr(rest, '@')) {
        image = cut_token(rest, '@', &rest);
        loc->snap = g_strdup(unescape(cut_token(rest, ':', &rest)));
    } else {
        image = cut_token(rest, ':', &rest);
    }
    char *after_ns;
    char *ns = cut_token(image, '/', &after_ns);
    if (after_ns) {
        loc->ns = g_strdup(unescape(ns));
        image = after_ns;
    }
    loc->image = g_strdup(unescape(image));
    return parse_pairs(rest, loc, errp);
}

/* One location field from an --image-opts option; a file name that
 * already set it to something else is a contradiction, not an override. */
static int merge_field(char **field, const diskimg_options *o, const char *key, GError **errp)
{
    if (!o || !diskimg_options_has(o, key))
        return 0;
    const char *value = diskimg_options_get_str(o, key);
    if (*field && !g_str_equal(*field, value))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'%s' is '%s' in the file name but '%s' in the options",
                                 key, *field, value);
    g_free(*field);
    *field = g_strdup(value);
    return 0;
}

int rbd_location_merge(struct rbd_location *loc, const diskimg_options *o, GError **errp)
{
    if (merge_field(&loc->pool, o, "pool", errp) < 0 ||
        merge_field(&loc->ns, o, "namespace", errp) < 0 ||
        merge_field(&loc->image, o, "image", errp) < 0 ||
        merge_field(&loc->snap, o, "snapshot", errp) < 0 ||
        merge_field(&loc->conf, o, "conf", errp) < 0 ||
        merge_field(&loc->user, o, "user", errp) < 0)
        return -1;
    /* qemu's QAPI names the member it misses. */
    if (!loc->pool)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Parameter 'pool' is missing");
    if (!loc->image)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Parameter 'image' is missing");
    return 0;
}

int rbd_location_from_open(const char *filename, const diskimg_options *o,
                           struct rbd_location *loc, GError **errp)
{
    /* Without a file name the core passes qemu's json:{...} display name:
     * then the options alone say what to reach. */
    bool from_options = !filename || g_str_has_prefix(filename, "json:");
    if (!from_options && rbd_location_parse(filename, loc, errp) < 0)
        return -1;
    return rbd_location_merge(loc, o, errp);
}
