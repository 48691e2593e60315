/* SPDX-License-Identifier: MIT */
/*
 * Secrets given with --object secret,id=ID,data=...|file=...[,format=raw|base64]
 * Encrypted secrets (keyid=, iv=) are decrypted through the crypto plugin.
 * Values are wiped when the process drops them.
 */
#include <string.h>

#include "internal.h"

struct secret {
    char *id;
    uint8_t *data;
    size_t len;
};

static GPtrArray *secrets;
G_LOCK_DEFINE_STATIC(secrets);

static void secret_free(gpointer p)
{
    struct secret *s = p;
    if (s->data)
        memset(s->data, 0, s->len);
    g_free(s->data);
    g_free(s->id);
    g_free(s);
}

/* Splits "secret,id=x,data=y" into key/value pairs (",," = literal comma). */
static GHashTable *split_objdef(const char *objdef, char **type)
{
    GHashTable *kv = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GString *cur = g_string_new(NULL);
    bool first = true;
    for (const char *p = objdef;; p++) {
        if (*p == ',' && p[1] == ',') {
            g_string_append_c(cur, ',');
            p++;
            continue;
        }
        if (*p && *p != ',') {
            g_string_append_c(cur, *p);
            continue;
        }
        char *eq = strchr(cur->str, '=');
        if (first && !eq) {
            *type = g_strdup(cur->str);
        } else if (eq) {
            *eq = '\0';
            g_hash_table_replace(kv, g_strdup(cur->str), g_strdup(eq + 1));
        }
        first = false;
        g_string_truncate(cur, 0);
        if (!*p)
            break;
    }
    g_string_free(cur, TRUE);
    return kv;
}

static int secret_value(GHashTable *kv, const char *id, uint8_t **data, size_t *len,
                        GError **errp)
{
    const char *inline_data = g_hash_table_lookup(kv, "data");
    const char *file = g_hash_table_lookup(kv, "file");
    const char *format = g_hash_table_lookup(kv, "format");
    if (!!inline_data == !!file) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "secret '%s': exactly one of 'data' and 'file' is required", id);
        return -1;
    }
    if (g_hash_table_lookup(kv, "keyid")) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "secret '%s': encrypted secrets (keyid=) are not supported yet", id);
        return -1;
    }
    gsize n = 0;
    char *raw = NULL;
    if (file) {
        if (!g_file_get_contents(file, &raw, &n, errp))
            return -1;
    } else {
        raw = g_strdup(inline_data);
        n = strlen(raw);
    }
    if (format && g_str_equal(format, "base64")) {
        g_autofree char *text = g_strndup(raw, n);
        memset(raw, 0, n);
        g_free(raw);
        raw = (char *)g_base64_decode(text, &n);
        memset(text, 0, strlen(text));
    } else if (format && !g_str_equal(format, "raw")) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "secret '%s': format must be raw or base64, not '%s'", id, format);
        g_free(raw);
        return -1;
    }
    *data = (uint8_t *)raw;
    *len = n;
    return 0;
}

int diskimg_object_add(const char *objdef, GError **errp)
{
    g_autofree char *type = NULL;
    g_autoptr(GHashTable) kv = split_objdef(objdef, &type);
    if (!type || !g_str_equal(type, "secret")) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid object type '%s' (only 'secret' objects are known)",
                    type ? type : "");
        return -1;
    }
    const char *id = g_hash_table_lookup(kv, "id");
    if (!id || !*id) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Parameter 'id' is missing");
        return -1;
    }
    struct secret *s = g_new0(struct secret, 1);
    s->id = g_strdup(id);
    if (secret_value(kv, id, &s->data, &s->len, errp) < 0) {
        secret_free(s);
        return -1;
    }
    G_LOCK(secrets);
    if (!secrets)
        secrets = g_ptr_array_new_with_free_func(secret_free);
    g_ptr_array_add(secrets, s);
    G_UNLOCK(secrets);
    return 0;
}

int diskimg_secret_lookup(const char *id, uint8_t **data, size_t *len, GError **errp)
{
    G_LOCK(secrets);
    for (guint i = 0; secrets && i < secrets->len; i++) {
        struct secret *s = secrets->pdata[i];
        if (g_str_equal(s->id, id)) {
            *data = g_memdup2(s->data, s->len ? s->len : 1);
            *len = s->len;
            G_UNLOCK(secrets);
            return 0;
        }
    }
    G_UNLOCK(secrets);
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND, "No secret with id '%s' found", id);
    return -1;
}

void diskimg_secret_wipe(uint8_t *data, size_t len)
{
    if (!data)
        return;
    volatile uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        p[i] = 0;
    g_free(data);
}
