/* SPDX-License-Identifier: MIT */
/*
 * encrypt.c — encrypted images, qemu's two methods:
 *
 *   crypt_method 2 (encrypt.format=luks): a LUKS version 1 header lives in
 *   a run of clusters named by the 0x0537be77 header extension {offset,
 *   length}; guest data sectors are encrypted with the payload key, the
 *   IV taken from the sector's HOST offset in the data file (qemu's
 *   crypt_physical_offset).
 *
 *   crypt_method 1 (encrypt.format=aes, the deprecated "encryption=on"):
 *   AES-128-CBC keyed with the password, the IV taken from the sector's
 *   GUEST offset.
 *
 * The crypto itself is the core's (diskimg/crypto.h); the passwords come
 * from --object secrets named by encrypt.key-secret and are wiped as soon
 * as the key is derived.  Opening with DISKIMG_OPEN_NO_IO (info) parses
 * the LUKS header but needs no password and no crypto plugin; data
 * requests then fail.
 */
#include <string.h>

#include "qcow2.h"

/* qemu's layout of a new LUKS header (qcrypto_block_luks_create): 4 KiB
 * of header, then eight key material areas of key_len * 4000 bytes each,
 * every one rounded up to 4 KiB. */
#define LUKS_STRIPES 4000u
#define LUKS_ALIGN 4096u

static const char *const luks_only_options[] = {
    "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg", "hash-alg", "iter-time",
};

static int missing_key(GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "Parameter 'encrypt.key-secret' is required for cipher");
}

/* ------------------------------------------------------------ options */

int qcow2_crypto_parse_create(const diskimg_options *o, uint32_t *method, GError **errp)
{
    *method = 0;
    if (!o)
        return 0;
    const char *fmt = diskimg_options_get_str(o, "encrypt.format");
    bool legacy = diskimg_options_get_bool(o, "encryption", false);
    if (fmt && legacy)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'encrypt.format' and its alias 'encryption' can't be used at "
                                 "the same time");
    if (legacy)
        fmt = "aes";
    if (!fmt) {
        bool any = diskimg_options_has(o, "encrypt.key-secret");
        for (size_t i = 0; i < G_N_ELEMENTS(luks_only_options); i++) {
            g_autofree char *key = g_strdup_printf("encrypt.%s", luks_only_options[i]);
            any = any || diskimg_options_has(o, key);
        }
        if (any)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Parameter 'encrypt.format' is missing");
        return 0;
    }
    bool aes = g_str_equal(fmt, "aes");
    if (!aes && !g_str_equal(fmt, "luks"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Invalid encryption format '%s'", fmt);
    for (size_t i = 0; aes && i < G_N_ELEMENTS(luks_only_options); i++) {
        g_autofree char *key = g_strdup_printf("encrypt.%s", luks_only_options[i]);
        if (diskimg_options_has(o, key))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Parameter '%s' is unexpected", key);
    }
    if (!diskimg_options_get_str(o, "encrypt.key-secret"))
        return missing_key(errp);
    *method = aes ? QCOW2_CRYPT_AES : QCOW2_CRYPT_LUKS;
    return 0;
}

/* The password of encrypt.key-secret (release with diskimg_secret_wipe). */
static int get_password(const diskimg_options *o, uint8_t **pw, size_t *len, GError **errp)
{
    const char *id = o ? diskimg_options_get_str(o, "encrypt.key-secret") : NULL;
    if (!id)
        return missing_key(errp);
    return diskimg_crypto_password(id, pw, len, errp);
}

static void fill_luks_params(const diskimg_options *o, struct diskimg_luks_create_params *p)
{
    memset(p, 0, sizeof(*p));
    p->struct_size = sizeof(*p);
    p->cipher_alg = diskimg_options_get_str(o, "encrypt.cipher-alg");
    p->cipher_mode = diskimg_options_get_str(o, "encrypt.cipher-mode");
    p->ivgen_alg = diskimg_options_get_str(o, "encrypt.ivgen-alg");
    p->ivgen_hash_alg = diskimg_options_get_str(o, "encrypt.ivgen-hash-alg");
    p->hash_alg = diskimg_options_get_str(o, "encrypt.hash-alg");
    p->iter_time_ms = diskimg_options_has(o, "encrypt.iter-time")
                      ? diskimg_options_get_int(o, "encrypt.iter-time", -1) : -1;
}

/* ------------------------------------------------------------ open */

/* Parses the LUKS header the extension names (its offset is validated by
 * the header parser), checked against the extension's length. */
static int open_luks_header(struct qcow2 *s, GError **errp)
{
    const struct qcow2_header *h = &s->h;
    if (h->crypto_length < DISKIMG_LUKS_HEADER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Encryption header length '%" PRIu64 "' is too small",
                                 h->crypto_length);
    GError *err = NULL;
    s->luks = diskimg_luks_open_node(s->file, h->crypto_offset, &err);
    if (!s->luks) {
        g_propagate_prefixed_error(errp, err, "Could not read the LUKS header: ");
        return -1;
    }
    /* every key slot's material must lie within the extension's area */
    if (diskimg_luks_header_end(s->luks) > h->crypto_length)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "LUKS key material ends at %" PRIu64 ", beyond the encryption "
                                 "header length %" PRIu64, diskimg_luks_header_end(s->luks),
                                 h->crypto_length);
    return 0;
}

static int check_format_option(const struct qcow2 *s, const char *fmt, GError **errp)
{
    if (!fmt)
        return 0;
    switch (s->h.crypt_method) {
    case QCOW2_CRYPT_NONE:
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "No encryption in image header, but options specified format '%s'",
                                 fmt);
    case QCOW2_CRYPT_AES:
        if (!g_str_equal(fmt, "aes"))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Header reported 'aes' encryption format but options specify "
                                     "'%s'", fmt);
        return 0;
    default:
        if (!g_str_equal(fmt, "luks"))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Header reported 'luks' encryption format but options specify "
                                     "'%s'", fmt);
        return 0;
    }
}

int qcow2_crypto_open(struct qcow2 *s, const diskimg_options *o, unsigned flags, GError **errp)
{
    if (s->h.crypt_method == QCOW2_CRYPT_LUKS && open_luks_header(s, errp) < 0)
        return -1;
    if (check_format_option(s, o ? diskimg_options_get_str(o, "encrypt.format") : NULL,
                            errp) < 0)
        return -1;
    /* info needs no key; nothing may read or write data then */
    if (s->h.crypt_method == QCOW2_CRYPT_NONE || (flags & DISKIMG_OPEN_NO_IO))
        return 0;
    uint8_t *pw = NULL;
    size_t len = 0;
    if (get_password(o, &pw, &len, errp) < 0)
        return -1;
    int ret = 0;
    if (s->h.crypt_method == QCOW2_CRYPT_AES) {
        s->aes = diskimg_qcow_aes_new(pw, len, errp);
        ret = s->aes ? 0 : -1;
    } else {
        ret = diskimg_luks_unlock_node(s->luks, pw, len, s->file, s->h.crypto_offset, errp);
    }
    diskimg_secret_wipe(pw, len);
    return ret;
}

void qcow2_crypto_close(struct qcow2 *s)
{
    diskimg_luks_free(s->luks);
    s->luks = NULL;
    diskimg_sector_cipher_free(s->aes);
    s->aes = NULL;
}

/* ------------------------------------------------------------ data */

int qcow2_crypt(struct qcow2 *s, bool encrypt, uint64_t host, uint64_t guest, void *buf,
                uint64_t len, GError **errp)
{
    if (len > SIZE_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "encrypted request too large");
    if (s->aes)
        return encrypt ? diskimg_sector_cipher_encrypt(s->aes, guest, buf, (size_t)len, errp)
                       : diskimg_sector_cipher_decrypt(s->aes, guest, buf, (size_t)len, errp);
    if (s->luks && diskimg_luks_is_unlocked(s->luks))
        return encrypt ? diskimg_luks_encrypt(s->luks, host, buf, (size_t)len, errp)
                       : diskimg_luks_decrypt(s->luks, host, buf, (size_t)len, errp);
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "%s: the image is encrypted and was opened without its key",
                             s->filename);
}

/* ------------------------------------------------------------ info */

void qcow2_crypto_info(const struct qcow2 *s, diskimg_obj *specific)
{
    if (s->h.crypt_method == QCOW2_CRYPT_NONE)
        return;
    diskimg_obj *e = diskimg_obj_add_obj(specific, "encrypt");
    diskimg_obj_set_str(e, "format", s->h.crypt_method == QCOW2_CRYPT_AES ? "aes" : "luks");
    if (s->luks)
        diskimg_luks_info(s->luks, e);
}

/* ------------------------------------------------------------ create */

static int setup_aes(struct qcow2 *s, const uint8_t *pw, size_t len, GError **errp)
{
    s->aes = diskimg_qcow_aes_new(pw, len, errp);
    if (!s->aes)
        return -1;
    s->h.crypt_method = QCOW2_CRYPT_AES;
    return 0;
}

/* A LUKS header in new zeroed clusters right after what the image holds
 * (qemu's qcow2_crypto_hdr_init_func: the extension's length is the
 * header area's, the clusters are rounded up). */
static int setup_luks(struct qcow2 *s, const diskimg_options *o, const uint8_t *pw,
                      size_t len, GError **errp)
{
    struct diskimg_luks_create_params p;
    fill_luks_params(o, &p);
    diskimg_luks *l = diskimg_luks_create(&p, pw, len, errp);
    if (!l)
        return -1;
    uint64_t area = diskimg_luks_payload_offset(l), off;
    uint64_t n = qcow2_size_to_clusters(s, area);
    if (qcow2_alloc_clusters(s, n, &off, errp) < 0 ||
        diskimg_node_write_zeroes(s->file, off, n << s->cluster_bits, 0, errp) < 0 ||
        diskimg_luks_write_node(l, s->file, off, errp) < 0) {
        diskimg_luks_free(l);
        return -1;
    }
    s->luks = l;
    s->h.crypt_method = QCOW2_CRYPT_LUKS;
    s->h.has_crypto_ext = true;
    s->h.crypto_offset = off;
    s->h.crypto_length = area;
    return 0;
}

int qcow2_crypto_create(struct qcow2 *s, const diskimg_options *o, uint32_t method,
                        GError **errp)
{
    if (method == QCOW2_CRYPT_NONE)
        return 0;
    uint8_t *pw = NULL;
    size_t len = 0;
    if (get_password(o, &pw, &len, errp) < 0)
        return -1;
    int ret = method == QCOW2_CRYPT_AES ? setup_aes(s, pw, len, errp)
                                        : setup_luks(s, o, pw, len, errp);
    diskimg_secret_wipe(pw, len);
    if (ret < 0)
        return -1;
    /* the header names the encryption only once its clusters are counted */
    if (qcow2_flush_metadata(s, errp) < 0 || diskimg_node_flush(s->file, errp) < 0)
        return -1;
    return qcow2_header_write(s, errp);
}

/* ------------------------------------------------------------ measure */

int qcow2_crypto_measure(const diskimg_options *o, uint64_t cluster_size, uint64_t *bytes,
                         GError **errp)
{
    /* only a LUKS header takes room (qemu's qcow2_measure looks at
     * nothing else of the encryption options) */
    const char *fmt = o ? diskimg_options_get_str(o, "encrypt.format") : NULL;
    *bytes = 0;
    if (!fmt || !g_str_equal(fmt, "luks"))
        return 0;
    /* qemu creates a throw-away header for its size; the layout depends
     * on the key length only, so compute it (no PBKDF2 run).  The secret
     * must still exist, as for qemu. */
    uint8_t *pw = NULL;
    size_t len = 0;
    if (get_password(o, &pw, &len, errp) < 0)
        return -1;
    diskimg_secret_wipe(pw, len);
    const char *alg = diskimg_options_get_str(o, "encrypt.cipher-alg");
    const char *mode = diskimg_options_get_str(o, "encrypt.cipher-mode");
    alg = alg ? alg : "aes-256";
    mode = mode ? mode : "xts";
    uint64_t key = diskimg_cipher_key_len(alg);
    if (!key)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED, "Algorithm '%s' not supported",
                                 alg);
    if (g_str_equal(mode, "xts"))
        key *= 2;
    uint64_t material = (key * LUKS_STRIPES + LUKS_ALIGN - 1) / LUKS_ALIGN * LUKS_ALIGN;
    uint64_t area = LUKS_ALIGN + DISKIMG_LUKS_NUM_KEY_SLOTS * material;
    *bytes = (area + cluster_size - 1) / cluster_size * cluster_size;
    return 0;
}
