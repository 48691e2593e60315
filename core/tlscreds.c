/* SPDX-License-Identifier: MIT */
/*
 * TLS credentials given with --object, as qemu-img takes them for its
 * network block drivers:
 *
 *     tls-creds-x509,id=ID,dir=DIR[,endpoint=client|server][,verify-peer=on|off]
 *                    [,priority=P][,sanity-check=on|off][,passwordid=ID]
 *     tls-creds-psk,id=ID,dir=DIR[,endpoint=client|server][,username=U]
 *                   [,priority=P][,verify-peer=on|off]
 *
 * The argument's syntax, the type and the id are checked by secrets.c,
 * which shares one id namespace between all objects; this file checks the
 * properties and, as qemu does when it loads the object, that the files
 * the directory must hold are readable: for x509 ca-cert.pem, and for a
 * server endpoint server-cert.pem and server-key.pem; for psk keys.psk.
 * Certificates are not parsed here: the io plugin's TLS library does that
 * when it connects, and says what is wrong with them.
 *
 * Plugins read an object with diskimg_tls_creds_lookup(); objects live
 * until the process ends, so the strings handed out stay valid.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct tls_creds {
    char *id;
    struct diskimg_tls_creds c;      /* its strings are owned below */
    char *dir, *endpoint, *username, *priority;
};

static GPtrArray *all_creds;
G_LOCK_DEFINE_STATIC(all_creds);

static const char *const x509_properties[] = {
    "dir", "endpoint", "passwordid", "priority", "sanity-check", "verify-peer", NULL,
};
static const char *const psk_properties[] = {
    "dir", "endpoint", "priority", "username", "verify-peer", NULL,
};

static const char *const *properties_of(const char *type)
{
    return g_str_equal(type, "tls-creds-x509") ? x509_properties : psk_properties;
}

bool tls_creds_type(const char *type)
{
    return g_str_equal(type, "tls-creds-x509") || g_str_equal(type, "tls-creds-psk");
}

char *tls_creds_help(const char *type)
{
    /* qemu-img's listing: the properties in alphabetical order with their types */
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "%s options:\n", type);
    for (const char *const *p = properties_of(type); *p; p++) {
        const char *kind = g_str_equal(*p, "endpoint") ? "QCryptoTLSCredsEndpoint"
                           : g_str_equal(*p, "verify-peer") || g_str_equal(*p, "sanity-check")
                               ? "bool" : "string";
        g_string_append_printf(s, "  %s=<%s>\n", *p, kind);
    }
    return g_string_free(s, FALSE);
}

bool tls_creds_exists(const char *id)
{
    G_LOCK(all_creds);
    bool found = false;
    for (guint i = 0; all_creds && i < all_creds->len && !found; i++)
        found = g_str_equal(((struct tls_creds *)all_creds->pdata[i])->id, id);
    G_UNLOCK(all_creds);
    return found;
}

/* qemu's bool property values. */
static int parse_bool(GHashTable *props, const char *key, bool fallback, bool *out,
                      GError **errp)
{
    const char *v = g_hash_table_lookup(props, key);
    *out = fallback;
    if (!v)
        return 0;
    if (g_str_equal(v, "on") || g_str_equal(v, "yes") || g_str_equal(v, "true"))
        *out = true;
    else if (g_str_equal(v, "off") || g_str_equal(v, "no") || g_str_equal(v, "false"))
        *out = false;
    else
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter '%s' expects 'on' or 'off'", key);
    return 0;
}

static int check_properties(const char *type, GHashTable *props, GError **errp)
{
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, props);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (g_str_equal(key, "id"))
            continue;
        if (!g_strv_contains(properties_of(type), key))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Parameter '%s' is unexpected", (const char *)key);
    }
    const char *endpoint = g_hash_table_lookup(props, "endpoint");
    if (endpoint && !g_str_equal(endpoint, "client") && !g_str_equal(endpoint, "server"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter 'endpoint' does not accept value '%s'", endpoint);
    const char *passwordid = g_hash_table_lookup(props, "passwordid");
    if (passwordid)
        /* an encrypted client key; libnbd cannot take its password */
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "passwordid (an encrypted private key) is not supported; "
                                 "decrypt the key into the credentials directory");
    return 0;
}

/* The files qemu requires when it loads the object, in its order. */
static int check_files(const char *type, const char *dir, bool server, GError **errp)
{
    static const char *const x509_client[] = { "ca-cert.pem", NULL };
    static const char *const x509_server[] = { "ca-cert.pem", "server-cert.pem",
                                               "server-key.pem", NULL };
    static const char *const psk[] = { "keys.psk", NULL };
    const char *const *files = !g_str_equal(type, "tls-creds-x509") ? psk
                               : server ? x509_server : x509_client;
    for (const char *const *f = files; *f; f++) {
        g_autofree char *path = g_build_filename(dir, *f, NULL);
        if (access(path, R_OK) < 0)
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND,
                                     "Unable to access credentials %s: %s", path,
                                     g_strerror(errno));
    }
    return 0;
}

static void creds_free(gpointer p)
{
    struct tls_creds *t = p;
    g_free(t->id);
    g_free(t->dir);
    g_free(t->endpoint);
    g_free(t->username);
    g_free(t->priority);
    g_free(t);
}

int tls_creds_add(const char *type, GHashTable *props, GError **errp)
{
    bool verify = true, sanity = true;
    if (check_properties(type, props, errp) < 0 ||
        parse_bool(props, "verify-peer", true, &verify, errp) < 0 ||
        parse_bool(props, "sanity-check", true, &sanity, errp) < 0)
        return -1;
    const char *dir = g_hash_table_lookup(props, "dir");
    if (!dir)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Missing 'dir' property value");
    const char *endpoint = g_hash_table_lookup(props, "endpoint");
    bool server = endpoint && g_str_equal(endpoint, "server");
    if (check_files(type, dir, server, errp) < 0)
        return -1;
    struct tls_creds *t = g_new0(struct tls_creds, 1);
    t->id = g_strdup(g_hash_table_lookup(props, "id"));
    t->dir = g_strdup(dir);
    t->endpoint = g_strdup(server ? "server" : "client");
    t->username = g_strdup(g_hash_table_lookup(props, "username"));
    t->priority = g_strdup(g_hash_table_lookup(props, "priority"));
    t->c = (struct diskimg_tls_creds){
        .struct_size = sizeof(t->c),
        .type = g_str_equal(type, "tls-creds-x509") ? DISKIMG_TLS_CREDS_X509
                                                    : DISKIMG_TLS_CREDS_PSK,
        .dir = t->dir,
        .endpoint = t->endpoint,
        .verify_peer = verify,
        .username = t->username,
        .priority = t->priority,
    };
    G_LOCK(all_creds);
    if (!all_creds)
        all_creds = g_ptr_array_new_with_free_func(creds_free);
    g_ptr_array_add(all_creds, t);
    G_UNLOCK(all_creds);
    return 0;
}

int diskimg_tls_creds_lookup(const char *id, struct diskimg_tls_creds *creds, GError **errp)
{
    if (abi_check_size(creds->struct_size, ABI_END(struct diskimg_tls_creds, priority),
                       "diskimg_tls_creds", errp) < 0)
        return -1;
    const struct tls_creds *found = NULL;
    G_LOCK(all_creds);
    for (guint i = 0; all_creds && i < all_creds->len && !found; i++)
        if (g_str_equal(((struct tls_creds *)all_creds->pdata[i])->id, id))
            found = all_creds->pdata[i];
    G_UNLOCK(all_creds);
    if (found) {
        abi_copy_out(creds, &found->c, sizeof(found->c));
        return 0;
    }
    /* qemu's block/nbd.c words for an id that names something else */
    if (secret_exists(id))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Object with id '%s' is not TLS credentials", id);
    return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND, "No TLS credentials with id '%s'",
                             id);
}
