/* SPDX-License-Identifier: MIT */
/*
 * nbd-target.c — NBD names and options to a target (see nbd-target.h).
 *
 * The URI grammar is the NBD project's (doc/uri.md of the NBD protocol,
 * which libnbd implements) restricted to what qemu's nbd driver also
 * reaches, plus qemu's legacy "nbd:" pseudo-filenames.  We parse it
 * ourselves instead of handing the name to nbd_connect_uri: libnbd would
 * accept query keys (tls-certificates=, tls-psk-file=) that let a name
 * read local files, and its messages do not say which part is wrong.
 */
#include <string.h>

#include "nbd-target.h"

void nbd_target_clear(struct nbd_target *t)
{
    g_free(t->host);
    g_free(t->port);
    g_free(t->path);
    g_free(t->export);
    memset(t, 0, sizeof(*t));
}

char *nbd_target_describe(const struct nbd_target *t)
{
    if (t->is_unix)
        return g_strdup(t->path);
    if (strchr(t->host, ':'))
        return g_strdup_printf("[%s]:%s", t->host, t->port);
    return g_strdup_printf("%s:%s", t->host, t->port);
}

/* A port as a number 1..65535 or a service name (letters, digits, '-'). */
static bool valid_port(const char *port)
{
    if (!*port || strlen(port) > 32)
        return false;
    bool digits = true;
    for (const char *c = port; *c; c++) {
        if (!g_ascii_isalnum(*c) && *c != '-')
            return false;
        digits = digits && g_ascii_isdigit(*c);
    }
    if (!digits)
        return true;
    guint64 n = g_ascii_strtoull(port, NULL, 10);
    return n >= 1 && n <= 65535;
}

/* ------------------------------------------------------------------ URIs */

/* The scheme's transport and TLS: nbd, nbds, nbd+tcp, nbds+tcp, nbd+unix,
 * nbds+unix. */
static int parse_scheme(const char *scheme, struct nbd_target *t, GError **errp)
{
    t->tls = g_str_has_prefix(scheme, "nbds");
    const char *transport = scheme + (t->tls ? 4 : 3);
    if (!g_str_has_prefix(scheme, "nbd") ||
        (*transport && !g_str_equal(transport, "+tcp") && !g_str_equal(transport, "+unix")))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "unknown NBD URI scheme '%s' (expected nbd, nbds, nbd+unix "
                                 "or nbds+unix)", scheme);
    t->is_unix = g_str_equal(transport, "+unix");
    return 0;
}

/* The query: socket=PATH for unix sockets and nothing else. */
static int parse_query(const char *query, struct nbd_target *t, GError **errp)
{
    g_auto(GStrv) params = g_strsplit(query ? query : "", "&", -1);
    for (char **p = params; *p; p++) {
        if (!**p)
            continue;
        const char *eq = strchr(*p, '=');
        g_autofree char *key = g_uri_unescape_segment(*p, eq, NULL);
        g_autofree char *value = eq ? g_uri_unescape_string(eq + 1, NULL) : NULL;
        if (!key || (eq && !value))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "invalid escape in the NBD URI's query");
        if (!g_str_equal(key, "socket") || !t->is_unix)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "unexpected query parameter '%s' in the NBD URI (only "
                                     "nbd+unix:// takes one, socket=PATH)", key);
        if (t->path)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "socket= is given twice in the NBD URI");
        if (!value || !*value)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "socket= needs the path of the server's unix socket");
        t->path = g_steal_pointer(&value);
    }
    if (t->is_unix && !t->path)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "nbd+unix:// URIs name the socket as ?socket=PATH "
                                 "(nbd+unix:///EXPORT?socket=PATH)");
    return 0;
}

static int parse_authority(GUri *uri, struct nbd_target *t, GError **errp)
{
    const char *host = g_uri_get_host(uri);
    if (g_uri_get_userinfo(uri))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "NBD URIs take no user name or password");
    if (g_uri_get_fragment(uri))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "NBD URIs take no #fragment");
    if (t->is_unix) {
        if ((host && *host) || g_uri_get_port(uri) != -1)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "nbd+unix:// URIs take no host or port "
                                     "(nbd+unix:///EXPORT?socket=PATH)");
        return 0;
    }
    if (!host || !*host)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "the NBD URI names no host (nbd://HOST[:PORT]/EXPORT)");
    t->host = g_strdup(host);
    int port = g_uri_get_port(uri);
    t->port = port == -1 ? g_strdup(NBD_DEFAULT_PORT) : g_strdup_printf("%d", port);
    if (!valid_port(t->port))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "invalid port '%s' in the NBD URI (1 to 65535)", t->port);
    return 0;
}

static int parse_uri(const char *name, struct nbd_target *t, GError **errp)
{
    GError *err = NULL;
    g_autoptr(GUri) uri = g_uri_parse(name, G_URI_FLAGS_ENCODED_QUERY, &err);
    if (!uri) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "invalid NBD URI: %s", err->message);
        g_error_free(err);
        return -1;
    }
    g_autofree char *scheme = g_ascii_strdown(g_uri_get_scheme(uri), -1);
    if (parse_scheme(scheme, t, errp) < 0 || parse_authority(uri, t, errp) < 0 ||
        parse_query(g_uri_get_query(uri), t, errp) < 0)
        return -1;
    /* The export is the path without its first '/' (the NBD URI spec and
     * qemu agree: nbd://h//x is export "/x"). */
    const char *path = g_uri_get_path(uri);
    t->export = g_strdup(path[0] == '/' ? path + 1 : path);
    return 0;
}

/* ---------------------------------------------------- legacy "nbd:" names */

/* HOST:PORT or [IPV6]:PORT, as qemu's inet_parse. */
static int parse_legacy_inet(const char *addr, struct nbd_target *t, GError **errp)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        colon = close ? close + 1 : NULL;
        if (!close || close == addr + 1 || *colon != ':')
            colon = NULL;
        else
            t->host = g_strndup(addr + 1, (gsize)(close - addr - 1));
    } else {
        colon = strchr(addr, ':');
        if (colon && colon > addr)
            t->host = g_strndup(addr, (gsize)(colon - addr));
        else
            colon = NULL;
    }
    if (!colon || !valid_port(colon + 1))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "error parsing address '%s' (nbd:HOST:PORT, "
                                 "nbd:unix:PATH, nbd://HOST[:PORT]/EXPORT...)", addr);
    t->port = g_strdup(colon + 1);
    return 0;
}

static int parse_legacy(const char *name, struct nbd_target *t, GError **errp)
{
    g_autofree char *rest = g_strdup(name + strlen("nbd:"));
    char *export = strstr(rest, ":exportname=");
    if (export) {
        *export = '\0';
        t->export = g_strdup(export + strlen(":exportname="));
    } else {
        t->export = g_strdup("");
    }
    if (g_str_has_prefix(rest, "unix:")) {
        t->is_unix = true;
        t->path = g_strdup(rest + strlen("unix:"));
        if (!*t->path)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "nbd:unix: needs the path of the server's socket");
        return 0;
    }
    return parse_legacy_inet(rest, t, errp);
}

int nbd_target_parse_name(const char *name, struct nbd_target *t, GError **errp)
{
    memset(t, 0, sizeof(*t));
    size_t scheme_len = strcspn(name, ":");
    int ret;
    if (name[scheme_len] != ':')
        ret = diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "'%s' is not an NBD URI", name);
    else if (g_ascii_strncasecmp(name, "nbd:", 4) == 0 && strncmp(name + 4, "//", 2) != 0)
        ret = parse_legacy(name, t, errp);
    else
        ret = parse_uri(name, t, errp);
    if (ret < 0)
        nbd_target_clear(t);
    return ret;
}

/* --------------------------------------------------------------- options */

bool nbd_options_name_target(const diskimg_options *o)
{
    static const char *const keys[] = { "server.type", "server.host", "server.port",
                                        "server.path", "export" };
    for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
        if (diskimg_options_has(o, keys[i]))
            return true;
    return false;
}

/* server.type, or the transport the given keys imply. */
static int options_transport(const diskimg_options *o, bool *is_unix, GError **errp)
{
    const char *type = diskimg_options_get_str(o, "server.type");
    bool inet_keys = diskimg_options_has(o, "server.host") || diskimg_options_has(o, "server.port");
    bool unix_keys = diskimg_options_has(o, "server.path");
    if (!type && !inet_keys && !unix_keys)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "NBD server address missing (give a URI, or server.type=inet "
                                 "with server.host, or server.type=unix with server.path)");
    *is_unix = type ? g_str_equal(type, "unix") : unix_keys;
    if (*is_unix ? inet_keys : unix_keys)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 *is_unix ? "server.host and server.port are only for "
                                            "server.type=inet"
                                          : "server.path is only for server.type=unix");
    return 0;
}

int nbd_target_from_options(const diskimg_options *o, struct nbd_target *t, GError **errp)
{
    memset(t, 0, sizeof(*t));
    if (options_transport(o, &t->is_unix, errp) < 0)
        return -1;
    const char *export = diskimg_options_get_str(o, "export");
    t->export = g_strdup(export ? export : "");
    if (t->is_unix) {
        const char *path = diskimg_options_get_str(o, "server.path");
        if (!path || !*path) {
            nbd_target_clear(t);
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "server.type=unix needs server.path");
        }
        t->path = g_strdup(path);
        return 0;
    }
    const char *host = diskimg_options_get_str(o, "server.host");
    const char *port = diskimg_options_get_str(o, "server.port");
    if (!host || !*host) {
        nbd_target_clear(t);
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "server.type=inet needs server.host");
    }
    t->host = g_strdup(host);
    t->port = g_strdup(port ? port : NBD_DEFAULT_PORT);
    if (!valid_port(t->port)) {
        nbd_target_clear(t);
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "invalid server.port '%s' (1 to 65535 or a service name)",
                                 port);
    }
    return 0;
}
