/* SPDX-License-Identifier: MIT */
/*
 * Objects given with --object, as qemu-img takes them: secrets here, TLS
 * credentials in tlscreds.c (which this file's parser and id rules serve).
 * Secrets:
 *
 *     secret,id=ID,data=TEXT|file=PATH[,format=raw|base64][,keyid=ID,iv=B64]
 *
 * The argument is parsed like qemu's keyval syntax (or, starting with '{',
 * as a JSON object of strings): comma-separated
 * key=value members, ",," a literal comma, a first member without '=' the
 * object type; a later member without '=' is an error (so an unescaped
 * comma in data= is never a silent truncation), a repeated key keeps its
 * last value.  Then qemu's object rules apply, in qemu's order and with its
 * messages: the type, the id (an identifier, unique), the known properties
 * and their values, and loading the data.
 *
 * An encrypted secret (keyid=) is AES-256-CBC ciphertext, base64 with
 * format=base64 or raw bytes otherwise, under the 32-byte value of the
 * earlier secret `keyid` and the 16-byte IV `iv` (base64), PKCS#7-padded,
 * as QEMU's qcrypto_secret_decrypt.
 *
 * Secret bytes are never part of a message, and every buffer that held
 * them is wiped (diskimg_secret_wipe, which the compiler cannot drop)
 * before it is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/crypto.h>

#include "internal.h"

struct secret {
    char *id;
    uint8_t *data;
    size_t len;
};

static GPtrArray *secrets;
G_LOCK_DEFINE_STATIC(secrets);

void diskimg_secret_wipe(uint8_t *data, size_t len)
{
    diskimg_crypto_wipe(data, len);
    g_free(data);
}

/* Wipes and frees a NUL-terminated string that may hold secret text. */
static void wipe_string(char *s)
{
    if (s)
        diskimg_secret_wipe((uint8_t *)s, strlen(s));
}

static void secret_free(gpointer p)
{
    struct secret *s = p;
    diskimg_secret_wipe(s->data, s->len);
    g_free(s->id);
    g_free(s);
}

/* ---------------------------------------------------------------- parsing */

/* The members of one --object argument: the type (the first member when it
 * has no '='), the key=value pairs (values may be secret: wiped on
 * destruction), whether help was asked for. */
struct objdef {
    char *type;
    GHashTable *props;
    bool help;
};

static void objdef_clear(struct objdef *d)
{
    g_free(d->type);
    if (d->props)
        g_hash_table_destroy(d->props);
    memset(d, 0, sizeof(*d));
}

/* qemu's keyval key syntax: letters, digits, '-', '.', '_', not empty. */
static bool valid_key(const char *key)
{
    if (!*key)
        return false;
    for (const char *p = key; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
            return false;
    return true;
}

/* Takes one member `text` (unescaped); `first` is the argument's first. */
static int objdef_member(struct objdef *d, char *text, bool first, GError **errp)
{
    char *eq = strchr(text, '=');
    if (!eq) {
        if (g_str_equal(text, "help") || g_str_equal(text, "?")) {
            d->help = true;
            return 0;
        }
        if (first) {
            d->type = g_strdup(text);
            return 0;
        }
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Expected '=' after parameter '%s'", text);
    }
    *eq = '\0';
    if (!valid_key(text))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid parameter '%s'", text);
    /* the last of repeated keys wins, as in qemu */
    g_hash_table_replace(d->props, g_strdup(text), g_strdup(eq + 1));
    return 0;
}

/*
 * The JSON form qemu also takes ("{"qom-type": "secret", "id": ...}"):
 * every member a string.
 */
static int objdef_parse_json(const char *arg, struct objdef *d, GError **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    GError *err = NULL;
    if (!json_parser_load_from_data(parser, arg, -1, &err)) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "JSON parse error, %s", err->message);
        g_error_free(err);
        return -1;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "JSON parse error, an object was expected");
    JsonObjectIter it;
    const char *key;
    JsonNode *value;
    json_object_iter_init(&it, json_node_get_object(root));
    while (json_object_iter_next(&it, &key, &value)) {
        if (!JSON_NODE_HOLDS_VALUE(value) || json_node_get_value_type(value) != G_TYPE_STRING)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Invalid parameter type for '%s', expected: string", key);
        char *text = (char *)json_node_get_string(value);
        if (g_str_equal(key, "qom-type")) {
            g_free(d->type);
            d->type = g_strdup(text);
        } else {
            g_hash_table_replace(d->props, g_strdup(key), g_strdup(text));
        }
        /* the parser's own copy may be secret too: it is a plain string
         * json-glib owns, wiped in place before the parser frees it */
        diskimg_crypto_wipe(text, strlen(text));
    }
    return 0;
}

/*
 * Splits an argument into members at single commas; ",," stands for a
 * comma.  An empty last member (a trailing comma) is ignored, as qemu
 * does.  The working buffer holds secret text and is wiped.
 */
static int objdef_parse(const char *arg, struct objdef *d, GError **errp)
{
    memset(d, 0, sizeof(*d));
    d->props = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify)wipe_string);
    if (arg[0] == '{')
        return objdef_parse_json(arg, d, errp);
    size_t n = strlen(arg);
    char *cur = g_malloc(n + 1);
    size_t len = 0;
    bool first = true;
    int ret = 0;
    for (size_t i = 0; ret == 0 && i <= n; i++) {
        if (arg[i] == ',' && arg[i + 1] == ',') {
            cur[len++] = ',';
            i++;
            continue;
        }
        if (arg[i] != ',' && arg[i] != '\0') {
            cur[len++] = arg[i];
            continue;
        }
        cur[len] = '\0';
        if (len > 0 || arg[i] == ',')
            ret = objdef_member(d, cur, first, errp);
        first = false;
        len = 0;
    }
    diskimg_secret_wipe((uint8_t *)cur, n + 1);
    return ret;
}

/* ------------------------------------------------------- property rules */

static const char *const secret_properties[] = { "data", "file", "format", "keyid", "iv" };

/* qemu's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
static bool id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(id[0]))
        return false;
    for (const char *p = id + 1; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
            return false;
    return true;
}

static struct secret *find_secret(const char *id)
{
    for (guint i = 0; secrets && i < secrets->len; i++) {
        struct secret *s = secrets->pdata[i];
        if (g_str_equal(s->id, id))
            return s;
    }
    return NULL;
}

/* The checks qemu makes before it loads any object: type and id (unique
 * among all objects). */
static int check_object(const struct objdef *d, GError **errp)
{
    if (!d->type)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Parameter 'qom-type' is missing");
    if (!g_str_equal(d->type, "secret") && !tls_creds_type(d->type))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter 'qom-type' does not accept value '%s'", d->type);
    const char *id = g_hash_table_lookup(d->props, "id");
    if (!id)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Parameter 'id' is missing");
    if (!id_wellformed(id))
        /* qemu's message and its hint line */
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter 'id' expects an identifier\n"
                                 "Identifiers consist of letters, digits, '-', '.', '_', "
                                 "starting with a letter.");
    G_LOCK(secrets);
    bool duplicate = find_secret(id) != NULL;
    G_UNLOCK(secrets);
    if (duplicate || tls_creds_exists(id))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "attempt to add duplicate property '%s' to object (type "
                                 "'container')", id);
    return 0;
}

bool secret_exists(const char *id)
{
    G_LOCK(secrets);
    bool found = find_secret(id) != NULL;
    G_UNLOCK(secrets);
    return found;
}

/* A secret's own properties and values. */
static int check_secret(const struct objdef *d, GError **errp)
{
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, d->props);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        if (g_str_equal(key, "id"))
            continue;
        if (g_str_equal(key, "loaded"))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Property 'secret.loaded' is not writable");
        bool known = false;
        for (size_t i = 0; i < G_N_ELEMENTS(secret_properties); i++)
            known = known || g_str_equal(key, secret_properties[i]);
        if (!known)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Parameter '%s' is unexpected",
                                     (const char *)key);
    }
    const char *format = g_hash_table_lookup(d->props, "format");
    if (format && !g_str_equal(format, "raw") && !g_str_equal(format, "base64"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter 'format' does not accept value '%s'", format);
    return 0;
}

/* ---------------------------------------------------------------- loading */

/* qemu's qbase64_decode: the base64 alphabet, '=' and newlines only, then
 * glib's decoder.  NULL with *errp on bad input. */
static uint8_t *base64_decode(const char *text, size_t len, size_t *out_len, GError **errp)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n";
    if (memchr(text, '\0', len)) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                          "Base64 data contains embedded NUL characters");
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        if (!strchr(alphabet, text[i])) {
            diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                              "Base64 data contains invalid characters");
            return NULL;
        }
    }
    char *copy = g_strndup(text, len);
    gsize n = 0;
    uint8_t *out = g_base64_decode(copy, &n);
    wipe_string(copy);
    *out_len = n;
    return out;
}

/* A secret file is read into one buffer of its size (of the cap for a
 * pipe such as file=/dev/stdin): a growing buffer (g_file_get_contents)
 * would leave unwiped copies behind in the heap. */
#define MAX_SECRET_FILE (1024 * 1024)

static int secret_file_error(const char *file, const char *why, GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Unable to read %s: %s", file, why);
}

static int read_secret_file(const char *file, uint8_t **in, size_t *in_len, GError **errp)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        /* in glib's words, which qemu-img prints */
        g_autofree char *why = g_strdup_printf("Failed to open file \u201c%s\u201d: %s", file,
                                               g_strerror(e));
        return secret_file_error(file, why, errp);
    }
    if (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_size > MAX_SECRET_FILE)) {
        close(fd);
        return secret_file_error(file, S_ISDIR(st.st_mode) ? g_strerror(EISDIR)
                                 : "larger than a secret can be (1 MiB)", errp);
    }
    /* one byte more than a regular file holds, to see that it did not grow */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : MAX_SECRET_FILE + 1;
    uint8_t *buf = g_malloc(cap + 1);
    size_t got = 0;
    int e = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            e = errno;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (e || got > MAX_SECRET_FILE) {
        diskimg_secret_wipe(buf, cap + 1);
        return secret_file_error(file, e ? g_strerror(e) : "larger than a secret can be (1 MiB)",
                                 errp);
    }
    buf[got] = 0;
    *in = buf;
    *in_len = got;
    return 0;
}

/* The bytes data= or file= give, as written. */
static int load_input(GHashTable *props, uint8_t **in, size_t *in_len, GError **errp)
{
    const char *data = g_hash_table_lookup(props, "data");
    const char *file = g_hash_table_lookup(props, "file");
    if (data && file)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'file' and 'data' are mutually exclusive");
    if (data) {
        *in_len = strlen(data);
        *in = (uint8_t *)g_strdup(data);
        return 0;
    }
    if (!file)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Either 'file' or 'data' must be provided");
    return read_secret_file(file, in, in_len, errp);
}

/* The 32-byte AES key secret `keyid` holds (a copy: wipe it). */
static int master_key(const char *keyid, const char *id, uint8_t key[32], GError **errp)
{
    if (g_str_equal(keyid, id))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Secret with id '%s' has no data",
                                 id);
    G_LOCK(secrets);
    const struct secret *k = find_secret(keyid);
    bool found = k != NULL, right_size = k && k->len == 32;
    if (right_size)
        memcpy(key, k->data, 32);
    G_UNLOCK(secrets);
    if (!found)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND, "No secret with id '%s'", keyid);
    if (!right_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Key should be 32 bytes in length");
    return 0;
}

static int decode_iv(const char *iv_text, uint8_t iv[16], GError **errp)
{
    if (!iv_text)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "IV is required to decrypt secret");
    size_t n = 0;
    uint8_t *iv_bytes = base64_decode(iv_text, strlen(iv_text), &n, errp);
    if (!iv_bytes)
        return -1;
    int ret = 0;
    if (n != 16)
        ret = diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                "IV should be 16 bytes in length not %zu", n);
    else
        memcpy(iv, iv_bytes, 16);
    g_free(iv_bytes);
    return ret;
}

/* Strips qemu's check of PKCS#7 padding: the last byte says how many bytes
 * to drop (at most 16 and at most all of them). */
static int strip_padding(uint8_t *plain, size_t *len, GError **errp)
{
    uint8_t pad = plain[*len - 1];
    if (pad > 16 || pad > *len)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Incorrect number of padding bytes (%d) found on decrypted "
                                 "data", (int)pad);
    *len -= pad;
    return 0;
}

/* Decrypts `in` (base64 text with format=base64, else raw ciphertext) in
 * place of *out; *out is wiped and replaced. */
static int decrypt_secret(GHashTable *props, const char *id, bool base64, uint8_t **data,
                          size_t *len, GError **errp)
{
    uint8_t key[32], iv[16];
    uint8_t *cipher_text = NULL;
    size_t n = *len;
    diskimg_cipher *aes = NULL;
    int ret = -1;

    if (master_key(g_hash_table_lookup(props, "keyid"), id, key, errp) < 0 ||
        decode_iv(g_hash_table_lookup(props, "iv"), iv, errp) < 0)
        goto out;
    if (base64) {
        cipher_text = base64_decode((const char *)*data, *len, &n, errp);
        if (!cipher_text)
            goto out;
    } else {
        cipher_text = g_memdup2(*data, n ? n : 1);
    }
    if (n % 16 != 0) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                          "Length %zu must be a multiple of block size 16", n);
        goto out;
    }
    if (n == 0) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Encrypted secret '%s' has no data", id);
        goto out;
    }
    aes = diskimg_cipher_new("aes-256", "cbc", key, sizeof(key), errp);
    if (!aes || diskimg_cipher_decrypt(aes, iv, sizeof(iv), cipher_text, n, errp) < 0 ||
        strip_padding(cipher_text, &n, errp) < 0)
        goto out;
    diskimg_secret_wipe(*data, *len);
    *data = g_steal_pointer(&cipher_text);
    *len = n;
    ret = 0;
out:
    diskimg_cipher_free(aes);
    if (cipher_text)
        diskimg_secret_wipe(cipher_text, n);
    diskimg_crypto_wipe(key, sizeof(key));
    return ret;
}

/* The secret's value, as qcrypto_secret_common_load_data builds it. */
static int load_secret(GHashTable *props, const char *id, uint8_t **data, size_t *len,
                       GError **errp)
{
    const char *format = g_hash_table_lookup(props, "format");
    bool base64 = format && g_str_equal(format, "base64");
    uint8_t *in = NULL;
    size_t n = 0;

    if (load_input(props, &in, &n, errp) < 0)
        return -1;
    if (g_hash_table_lookup(props, "keyid")) {
        if (decrypt_secret(props, id, base64, &in, &n, errp) < 0) {
            diskimg_secret_wipe(in, n);
            return -1;
        }
    } else if (base64) {
        size_t out_len = 0;
        uint8_t *out = base64_decode((const char *)in, n, &out_len, errp);
        diskimg_secret_wipe(in, n);
        if (!out)
            return -1;
        in = out;
        n = out_len;
    }
    *data = in;
    *len = n;
    return 0;
}

/* ------------------------------------------------------------------- API */

int diskimg_object_help(const char *objdef, char **text, GError **errp)
{
    struct objdef d;
    *text = NULL;
    if (objdef_parse(objdef, &d, errp) < 0) {
        objdef_clear(&d);
        return -1;
    }
    int ret = 0;
    if (d.help && !d.type) {
        *text = g_strdup("List of user creatable objects:\n  secret\n  tls-creds-psk\n"
                         "  tls-creds-x509\n");
        ret = 1;
    } else if (d.help && tls_creds_type(d.type)) {
        *text = tls_creds_help(d.type);
        ret = 1;
    } else if (d.help && g_str_equal(d.type, "secret")) {
        *text = g_strdup("secret options:\n  data=<string>\n  file=<string>\n"
                         "  format=<QCryptoSecretFormat>\n  iv=<string>\n  keyid=<string>\n");
        ret = 1;
    } else if (d.help) {
        ret = diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                "Parameter 'qom-type' does not accept value '%s'", d.type);
    }
    objdef_clear(&d);
    return ret;
}

int diskimg_object_add(const char *objdef, GError **errp)
{
    struct objdef d;
    int ret = objdef_parse(objdef, &d, errp);
    if (ret == 0)
        ret = check_object(&d, errp);
    if (ret == 0 && tls_creds_type(d.type)) {
        ret = tls_creds_add(d.type, d.props, errp);
        objdef_clear(&d);
        return ret;
    }
    if (ret == 0)
        ret = check_secret(&d, errp);
    struct secret *s = NULL;
    if (ret == 0) {
        s = g_new0(struct secret, 1);
        s->id = g_strdup(g_hash_table_lookup(d.props, "id"));
        ret = load_secret(d.props, s->id, &s->data, &s->len, errp);
    }
    objdef_clear(&d);
    if (ret < 0) {
        if (s)
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
    const struct secret *s = find_secret(id);
    if (s) {
        /* +1: a NUL after the bytes, so text secrets are C strings */
        *data = g_malloc0(s->len + 1);
        memcpy(*data, s->data, s->len);
        *len = s->len;
    }
    G_UNLOCK(secrets);
    if (s)
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND, "No secret with id '%s'", id);
    return -1;
}
