/* SPDX-License-Identifier: MIT */
/*
 * The crypto API formats call (diskimg/crypto.h).  Primitive operations go
 * to the loaded crypto plugin; IV generation, sector-wise data encryption,
 * qcow's legacy AES and PBKDF2 calibration are done here, once, so that
 * every format and every crypto plugin agree bit for bit with qemu.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <diskimg/crypto.h>

#include "internal.h"

#define NO_PLUGIN_MESSAGE \
    "encryption support is not installed (install package diskimg-crypto-nettle)"
/* The plugin preferred when several crypto plugins are installed. */
#define PREFERRED_PLUGIN "nettle"
#define MAX_BLOCK_LEN 16

/* ------------------------------------------------------------ algorithms */

struct cipher_alg {
    const char *name;
    size_t key_len;
    size_t block_len;
};

static const struct cipher_alg cipher_algs[] = {
    { "aes-128", 16, 16 },     { "aes-192", 24, 16 },     { "aes-256", 32, 16 },
    { "twofish-128", 16, 16 }, { "twofish-192", 24, 16 }, { "twofish-256", 32, 16 },
    { "serpent-128", 16, 16 }, { "serpent-192", 24, 16 }, { "serpent-256", 32, 16 },
    { "cast5-128", 16, 8 },
};

struct hash_alg {
    const char *name;
    size_t digest_len;
};

static const struct hash_alg hash_algs[] = {
    { "md5", 16 },    { "sha1", 20 },   { "sha224", 28 },    { "sha256", 32 },
    { "sha384", 48 }, { "sha512", 64 }, { "ripemd160", 20 },
};

static const char *const cipher_modes[] = { "ecb", "cbc", "xts", "ctr" };

static const struct cipher_alg *find_cipher(const char *name)
{
    for (size_t i = 0; name && i < G_N_ELEMENTS(cipher_algs); i++)
        if (g_str_equal(cipher_algs[i].name, name))
            return &cipher_algs[i];
    return NULL;
}

static const struct hash_alg *find_hash(const char *name)
{
    for (size_t i = 0; name && i < G_N_ELEMENTS(hash_algs); i++)
        if (g_str_equal(hash_algs[i].name, name))
            return &hash_algs[i];
    return NULL;
}

static bool mode_is_known(const char *mode)
{
    for (size_t i = 0; mode && i < G_N_ELEMENTS(cipher_modes); i++)
        if (g_str_equal(cipher_modes[i], mode))
            return true;
    return false;
}

size_t diskimg_cipher_key_len(const char *alg)
{
    const struct cipher_alg *c = find_cipher(alg);
    return c ? c->key_len : 0;
}

size_t diskimg_cipher_block_len(const char *alg)
{
    const struct cipher_alg *c = find_cipher(alg);
    return c ? c->block_len : 0;
}

size_t diskimg_cipher_iv_len(const char *alg, const char *mode)
{
    const struct cipher_alg *c = find_cipher(alg);
    if (!c || !mode_is_known(mode) || g_str_equal(mode, "ecb"))
        return 0;
    return c->block_len;
}

size_t diskimg_hash_digest_len(const char *alg)
{
    const struct hash_alg *h = find_hash(alg);
    return h ? h->digest_len : 0;
}

static int unknown_hash(const char *alg, GError **errp)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "Hash algorithm %s not supported", alg ? alg : "(null)");
    return -1;
}

/* --------------------------------------------------------------- helpers */

void diskimg_crypto_wipe(void *p, size_t len)
{
    /* The one wipe of the library: secrets, keys, passphrases and the
     * parsers' temporary copies of them all end here.  explicit_bzero is a
     * memset the compiler may not drop as a dead store before free(). */
    if (p && len)
        explicit_bzero(p, len);
}

int diskimg_crypto_memcmp(const void *a, const void *b, size_t len)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    /* No early exit: the time taken must not tell where they differ. */
    for (size_t i = 0; i < len; i++)
        diff |= x[i] ^ y[i];
    return diff != 0;
}

int diskimg_crypto_password(const char *secret_id, uint8_t **pw, size_t *len, GError **errp)
{
    uint8_t *data = NULL;
    size_t n = 0;
    if (diskimg_secret_lookup(secret_id, &data, &n, errp) < 0)
        return -1;
    /* g_utf8_validate with a length also refuses NUL bytes, exactly as
     * qemu's check: a password is a C string there. */
    if (!g_utf8_validate((const char *)data, (gssize)n, NULL)) {
        diskimg_secret_wipe(data, n);
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Data from secret %s is not valid UTF-8", secret_id);
        return -1;
    }
    *pw = data;
    *len = n;
    return 0;
}

/* ---------------------------------------------------------------- plugin */

/* The crypto plugin to use: "nettle" if loaded, else the first one. */
static struct loaded_plugin *crypto_plugin(GError **errp)
{
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_CRYPTO, PREFERRED_PLUGIN);
    if (!lp) {
        GPtrArray *all = registry_list(DISKIMG_KIND_CRYPTO);
        if (all->len)
            lp = all->pdata[0];
        g_ptr_array_free(all, TRUE);
    }
    if (!lp)
        g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN, NO_PLUGIN_MESSAGE);
    return lp;
}

bool diskimg_crypto_available(void)
{
    return crypto_plugin(NULL) != NULL;
}

/* Plugins that are not thread-safe get one call at a time.  A crypto
 * plugin has no per-image handle to serialise on, so anything short of
 * PARALLEL takes the plugin-wide lock. */
static void plugin_enter(struct loaded_plugin *lp)
{
    if (lp->desc->thread_model != DISKIMG_THREAD_PARALLEL)
        g_rec_mutex_lock(&lp->serialize_all);
}

static void plugin_leave(struct loaded_plugin *lp)
{
    if (lp->desc->thread_model != DISKIMG_THREAD_PARALLEL)
        g_rec_mutex_unlock(&lp->serialize_all);
}

static int missing_op(struct loaded_plugin *lp, const char *op, GError **errp)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "crypto plugin '%s' does not provide %s", lp->desc->name, op);
    return -1;
}

/* A plugin that returns -1 must set an error; one that does not still
 * gets a message rather than a NULL dereference in the caller. */
static int plugin_result(int ret, struct loaded_plugin *lp, const char *op, GError **errp)
{
    if (ret < 0 && errp && !*errp)
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "crypto plugin '%s': %s failed", lp->desc->name, op);
    return ret < 0 ? -1 : 0;
}

/* --------------------------------------------------------------- ciphers */

struct diskimg_cipher {
    struct loaded_plugin *lp;
    void *handle;
    size_t block_len;
    size_t iv_len;
    bool stream;            /* ctr: any length */
};

diskimg_cipher *diskimg_cipher_new(const char *alg, const char *mode, const uint8_t *key,
                                   size_t key_len, GError **errp)
{
    const struct cipher_alg *c = find_cipher(alg);
    if (!c) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Unsupported cipher algorithm %s", alg ? alg : "(null)");
        return NULL;
    }
    if (!mode_is_known(mode)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Cipher mode %s not supported", mode ? mode : "(null)");
        return NULL;
    }
    bool xts = g_str_equal(mode, "xts");
    if (xts && c->block_len != 16) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Cipher %s with a %zu byte block cannot be used in xts mode",
                    alg, c->block_len);
        return NULL;
    }
    size_t want = xts ? 2 * c->key_len : c->key_len;
    if (key_len != want) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Cipher key length %zu should be %zu", key_len, want);
        return NULL;
    }
    struct loaded_plugin *lp = crypto_plugin(errp);
    if (!lp)
        return NULL;
    plugin_enter(lp);
    void *h = lp->ops.crypto.cipher_new(alg, mode, key, key_len, errp);
    plugin_leave(lp);
    if (!h) {
        plugin_result(-1, lp, "cipher_new", errp);
        return NULL;
    }
    diskimg_cipher *cipher = g_new0(diskimg_cipher, 1);
    cipher->lp = lp;
    cipher->handle = h;
    cipher->block_len = c->block_len;
    cipher->iv_len = g_str_equal(mode, "ecb") ? 0 : c->block_len;
    cipher->stream = g_str_equal(mode, "ctr");
    return cipher;
}

void diskimg_cipher_free(diskimg_cipher *c)
{
    if (!c)
        return;
    if (c->lp->ops.crypto.cipher_free) {
        plugin_enter(c->lp);
        c->lp->ops.crypto.cipher_free(c->handle);
        plugin_leave(c->lp);
    }
    g_free(c);
}

static int cipher_check(diskimg_cipher *c, const uint8_t *iv, size_t iv_len, size_t len,
                        GError **errp)
{
    if (!c->stream && len % c->block_len) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Length %zu must be a multiple of block size %zu", len, c->block_len);
        return -1;
    }
    if (c->iv_len && (!iv || iv_len != c->iv_len)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Expected IV size %zu not %zu", c->iv_len, iv ? iv_len : 0);
        return -1;
    }
    return 0;
}

static int cipher_op(diskimg_cipher *c, bool enc, const uint8_t *iv, size_t iv_len,
                     void *buf, size_t len, GError **errp)
{
    if (cipher_check(c, iv, iv_len, len, errp) < 0)
        return -1;
    if (len == 0)
        return 0;
    int (*fn)(void *, const uint8_t *, size_t, uint8_t *, size_t, GError **) =
        enc ? c->lp->ops.crypto.cipher_encrypt : c->lp->ops.crypto.cipher_decrypt;
    if (!fn)
        return missing_op(c->lp, enc ? "cipher_encrypt" : "cipher_decrypt", errp);
    plugin_enter(c->lp);
    int ret = fn(c->handle, c->iv_len ? iv : NULL, c->iv_len, buf, len, errp);
    plugin_leave(c->lp);
    return plugin_result(ret, c->lp, enc ? "encryption" : "decryption", errp);
}

int diskimg_cipher_encrypt(diskimg_cipher *c, const uint8_t *iv, size_t iv_len, void *buf,
                           size_t len, GError **errp)
{
    return cipher_op(c, true, iv, iv_len, buf, len, errp);
}

int diskimg_cipher_decrypt(diskimg_cipher *c, const uint8_t *iv, size_t iv_len, void *buf,
                           size_t len, GError **errp)
{
    return cipher_op(c, false, iv, iv_len, buf, len, errp);
}

/* ------------------------------------------------------- hashes and KDFs */

int diskimg_hash(const char *alg, const void *data, size_t len, uint8_t *out, size_t out_len,
                 GError **errp)
{
    const struct hash_alg *h = find_hash(alg);
    if (!h)
        return unknown_hash(alg, errp);
    if (out_len == 0 || out_len > h->digest_len) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s digest length must be 1 to %zu bytes, not %zu", alg, h->digest_len,
                    out_len);
        return -1;
    }
    struct loaded_plugin *lp = crypto_plugin(errp);
    if (!lp)
        return -1;
    if (!lp->ops.crypto.hash)
        return missing_op(lp, "hash", errp);
    plugin_enter(lp);
    int ret = lp->ops.crypto.hash(alg, data, len, out, out_len, errp);
    plugin_leave(lp);
    return plugin_result(ret, lp, "hash", errp);
}

const char *const *diskimg_hash_names(void)
{
    static const char *names[G_N_ELEMENTS(hash_algs) + 1];
    static gsize done;
    if (g_once_init_enter(&done)) {
        for (size_t i = 0; i < G_N_ELEMENTS(hash_algs); i++)
            names[i] = hash_algs[i].name;
        g_once_init_leave(&done, 1);
    }
    return names;
}

struct diskimg_hash_ctx {
    struct loaded_plugin *lp;
    void *handle;
    size_t digest_len;
    bool finished;
};

diskimg_hash_ctx *diskimg_hash_new(const char *alg, GError **errp)
{
    const struct hash_alg *h = find_hash(alg);
    if (!h) {
        unknown_hash(alg, errp);
        return NULL;
    }
    struct loaded_plugin *lp = crypto_plugin(errp);
    if (!lp)
        return NULL;
    const struct diskimg_crypto_ops *ops = &lp->ops.crypto;
    if (!ops->hash_new || !ops->hash_update || !ops->hash_digest || !ops->hash_free) {
        missing_op(lp, "incremental hashing", errp);
        return NULL;
    }
    plugin_enter(lp);
    void *handle = ops->hash_new(alg, errp);
    plugin_leave(lp);
    if (!handle) {
        plugin_result(-1, lp, "hash_new", errp);
        return NULL;
    }
    diskimg_hash_ctx *ctx = g_new0(diskimg_hash_ctx, 1);
    *ctx = (diskimg_hash_ctx){ .lp = lp, .handle = handle, .digest_len = h->digest_len };
    return ctx;
}

static int hash_finished(const diskimg_hash_ctx *h, GError **errp)
{
    if (!h->finished)
        return 0;
    g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "hash used after its digest was taken");
    return -1;
}

int diskimg_hash_update(diskimg_hash_ctx *h, const void *data, size_t len, GError **errp)
{
    if (hash_finished(h, errp) < 0)
        return -1;
    if (len == 0)
        return 0;
    plugin_enter(h->lp);
    int ret = h->lp->ops.crypto.hash_update(h->handle, data, len, errp);
    plugin_leave(h->lp);
    return plugin_result(ret, h->lp, "hash_update", errp);
}

int diskimg_hash_final(diskimg_hash_ctx *h, uint8_t *out, size_t out_len, GError **errp)
{
    if (hash_finished(h, errp) < 0)
        return -1;
    if (out_len == 0 || out_len > h->digest_len) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "digest length must be 1 to %zu bytes, not %zu", h->digest_len, out_len);
        return -1;
    }
    h->finished = true;
    plugin_enter(h->lp);
    int ret = h->lp->ops.crypto.hash_digest(h->handle, out, out_len, errp);
    plugin_leave(h->lp);
    return plugin_result(ret, h->lp, "hash_digest", errp);
}

void diskimg_hash_free(diskimg_hash_ctx *h)
{
    if (!h)
        return;
    plugin_enter(h->lp);
    h->lp->ops.crypto.hash_free(h->handle);
    plugin_leave(h->lp);
    g_free(h);
}

int diskimg_hmac(const char *alg, const void *key, size_t key_len, const void *data,
                 size_t len, uint8_t *out, size_t out_len, GError **errp)
{
    const struct hash_alg *h = find_hash(alg);
    if (!h)
        return unknown_hash(alg, errp);
    if (out_len == 0 || out_len > h->digest_len) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "HMAC-%s length must be 1 to %zu bytes, not %zu", alg, h->digest_len,
                    out_len);
        return -1;
    }
    struct loaded_plugin *lp = crypto_plugin(errp);
    if (!lp)
        return -1;
    if (!lp->ops.crypto.hmac)
        return missing_op(lp, "hmac", errp);
    plugin_enter(lp);
    int ret = lp->ops.crypto.hmac(alg, key, key_len, data, len, out, out_len, errp);
    plugin_leave(lp);
    return plugin_result(ret, lp, "hmac", errp);
}

int diskimg_pbkdf2(const char *hash_alg, const void *pass, size_t pass_len, const void *salt,
                   size_t salt_len, uint64_t iterations, uint8_t *out, size_t out_len,
                   GError **errp)
{
    if (!find_hash(hash_alg))
        return unknown_hash(hash_alg, errp);
    if (iterations == 0 || iterations > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "PBKDF2 iterations must be 1 to %u, not %" PRIu64, UINT32_MAX, iterations);
        return -1;
    }
    if (out_len == 0) {
        g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                            "PBKDF2 output length must not be zero");
        return -1;
    }
    struct loaded_plugin *lp = crypto_plugin(errp);
    if (!lp)
        return -1;
    if (!lp->ops.crypto.pbkdf2)
        return missing_op(lp, "pbkdf2", errp);
    plugin_enter(lp);
    int ret = lp->ops.crypto.pbkdf2(hash_alg, pass, pass_len, salt, salt_len, iterations, out,
                                    out_len, errp);
    plugin_leave(lp);
    return plugin_result(ret, lp, "pbkdf2", errp);
}

int diskimg_random_bytes(void *buf, size_t len, GError **errp)
{
    struct loaded_plugin *lp = crypto_plugin(errp);
    if (!lp)
        return -1;
    if (!lp->ops.crypto.random)
        return missing_op(lp, "random", errp);
    if (len == 0)
        return 0;
    plugin_enter(lp);
    int ret = lp->ops.crypto.random(buf, len, errp);
    plugin_leave(lp);
    return plugin_result(ret, lp, "random", errp);
}

/* This thread's CPU time in ns.  CPU time, as qemu measures, so that a
 * loaded machine does not weaken the iteration counts we choose; the
 * monotonic clock stands in where a thread clock is not available. */
static uint64_t calibration_clock_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0 &&
        clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return (uint64_t)g_get_monotonic_time() * 1000u;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Shortest measurement we trust: long against clock granularity and
 * scheduling noise, short enough that creating an image stays quick. */
#define CALIBRATION_MIN_NS (50u * 1000u * 1000u)

int diskimg_pbkdf2_count_iterations(const char *hash_alg, size_t out_len, uint64_t ms,
                                    uint64_t *out, GError **errp)
{
    static const uint8_t salt[32];
    static const char pass[] = "diskimg pbkdf2 calibration";
    if (out_len == 0 || out_len > 1024) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "PBKDF2 output length %zu is out of range", out_len);
        return -1;
    }
    uint8_t *buf = g_malloc(out_len);
    uint64_t iterations = 1u << 10, delta = 0;
    int ret = -1;
    for (;;) {
        uint64_t start = calibration_clock_ns();
        if (diskimg_pbkdf2(hash_alg, pass, sizeof(pass) - 1, salt, sizeof(salt), iterations,
                           buf, out_len, errp) < 0)
            goto out;
        delta = calibration_clock_ns() - start;
        if (delta >= CALIBRATION_MIN_NS || iterations >= UINT32_MAX)
            break;
        /* Aim 25% past the threshold so that one more round usually
         * suffices; a too-fast round (or a stalled clock) grows 10x. */
        uint64_t next = delta < CALIBRATION_MIN_NS / 10 ? iterations * 10
                      : iterations * (CALIBRATION_MIN_NS + CALIBRATION_MIN_NS / 4) / delta;
        iterations = MIN(MAX(next, iterations + 1), (uint64_t)UINT32_MAX);
    }
    delta = MAX(delta, 1);
    /* iterations <= 2^32 and ms is caller-controlled: do the scaling in
     * two steps that cannot overflow, refusing absurd requests as qemu. */
    uint64_t per_second = iterations * 1000000000u / delta;   /* < 2^62 */
    if (ms && per_second > UINT64_MAX / ms) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "PBKDF iterations %" PRIu64 " too large to scale", per_second);
        goto out;
    }
    *out = MAX(per_second * ms / 1000, 1);
    ret = 0;
out:
    diskimg_crypto_wipe(buf, out_len);
    g_free(buf);
    return ret;
}

/* --------------------------------------------------------- IV generators */

enum ivgen_kind { IVGEN_PLAIN, IVGEN_PLAIN64, IVGEN_ESSIV };

struct diskimg_ivgen {
    enum ivgen_kind kind;
    diskimg_cipher *essiv;    /* ecb cipher keyed with HASH(key) */
    size_t essiv_block;
};

/* dm-crypt's ESSIV quirk (qemu's qcrypto_block_luks_essiv_cipher): the
 * ESSIV cipher is the data cipher's family with the key size that equals
 * the hash's digest size, e.g. aes-128 data with sha256 gives aes-256. */
static const struct cipher_alg *essiv_cipher(const struct cipher_alg *c, size_t digest_len,
                                             GError **errp)
{
    if (c->key_len == digest_len)
        return c;
    const char *dash = strrchr(c->name, '-');
    size_t family = dash ? (size_t)(dash - c->name) : strlen(c->name);
    for (size_t i = 0; i < G_N_ELEMENTS(cipher_algs); i++) {
        const struct cipher_alg *o = &cipher_algs[i];
        if (strncmp(o->name, c->name, family) == 0 && o->name[family] == '-' &&
            o->key_len == digest_len)
            return o;
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "Cipher %s not supported with essiv (no key size %zu available)", c->name,
                digest_len);
    return NULL;
}

diskimg_ivgen *diskimg_ivgen_new(const char *spec, const char *cipher_alg, const uint8_t *key,
                                 size_t key_len, GError **errp)
{
    diskimg_ivgen *g = g_new0(diskimg_ivgen, 1);
    if (spec && g_str_equal(spec, "plain")) {
        g->kind = IVGEN_PLAIN;
        return g;
    }
    if (spec && g_str_equal(spec, "plain64")) {
        g->kind = IVGEN_PLAIN64;
        return g;
    }
    if (!spec || !g_str_has_prefix(spec, "essiv")) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "IV generator %s not supported", spec ? spec : "(null)");
        g_free(g);
        return NULL;
    }
    g->kind = IVGEN_ESSIV;
    if (spec[5] != ':') {
        g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                            "Missing IV generator hash specification");
        g_free(g);
        return NULL;
    }
    const char *hash = spec + 6;
    const struct hash_alg *h = find_hash(hash);
    const struct cipher_alg *c = find_cipher(cipher_alg);
    if (!h) {
        unknown_hash(hash, errp);
        g_free(g);
        return NULL;
    }
    if (!c) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Unsupported cipher algorithm %s", cipher_alg ? cipher_alg : "(null)");
        g_free(g);
        return NULL;
    }
    const struct cipher_alg *ec = essiv_cipher(c, h->digest_len, errp);
    if (!ec) {
        g_free(g);
        return NULL;
    }
    uint8_t salt[64];
    if (diskimg_hash(hash, key, key_len, salt, h->digest_len, errp) < 0) {
        g_free(g);
        return NULL;
    }
    g->essiv = diskimg_cipher_new(ec->name, "ecb", salt, ec->key_len, errp);
    diskimg_crypto_wipe(salt, sizeof(salt));
    if (!g->essiv) {
        g_free(g);
        return NULL;
    }
    g->essiv_block = ec->block_len;
    return g;
}

int diskimg_ivgen_calculate(diskimg_ivgen *g, uint64_t sector, uint8_t *iv, size_t iv_len,
                            GError **errp)
{
    uint8_t data[MAX_BLOCK_LEN] = { 0 };
    size_t n;
    switch (g->kind) {
    case IVGEN_PLAIN:
        /* dm-crypt's "plain" wraps at 2^32 sectors (2 TiB). */
        diskimg_put_le32(data, (uint32_t)sector);
        n = 4;
        break;
    case IVGEN_PLAIN64:
        diskimg_put_le64(data, sector);
        n = 8;
        break;
    default:
        diskimg_put_le64(data, sector);
        if (diskimg_cipher_encrypt(g->essiv, NULL, 0, data, g->essiv_block, errp) < 0)
            return -1;
        n = g->essiv_block;
        break;
    }
    memset(iv, 0, iv_len);
    memcpy(iv, data, MIN(n, iv_len));
    return 0;
}

void diskimg_ivgen_free(diskimg_ivgen *g)
{
    if (!g)
        return;
    diskimg_cipher_free(g->essiv);
    g_free(g);
}

/* -------------------------------------------------------- sector ciphers */

struct diskimg_sector_cipher {
    diskimg_cipher *cipher;
    diskimg_ivgen *ivgen;
    size_t iv_len;
};

diskimg_sector_cipher *diskimg_sector_cipher_new(const char *alg, const char *mode,
                                                 const char *ivgen_spec, const uint8_t *key,
                                                 size_t key_len, GError **errp)
{
    diskimg_cipher *c = diskimg_cipher_new(alg, mode, key, key_len, errp);
    if (!c)
        return NULL;
    diskimg_ivgen *g = diskimg_ivgen_new(ivgen_spec, alg, key, key_len, errp);
    if (!g) {
        diskimg_cipher_free(c);
        return NULL;
    }
    diskimg_sector_cipher *sc = g_new0(diskimg_sector_cipher, 1);
    sc->cipher = c;
    sc->ivgen = g;
    sc->iv_len = diskimg_cipher_iv_len(alg, mode);
    return sc;
}

diskimg_sector_cipher *diskimg_qcow_aes_new(const uint8_t *password, size_t len, GError **errp)
{
    /* qemu's qcrypto_block_qcow_init: the key is the password itself,
     * truncated or zero-padded to 16 bytes; no KDF, no salt. */
    uint8_t key[16] = { 0 };
    memcpy(key, password, MIN(len, sizeof(key)));
    diskimg_sector_cipher *sc = diskimg_sector_cipher_new("aes-128", "cbc", "plain64", key,
                                                          sizeof(key), errp);
    diskimg_crypto_wipe(key, sizeof(key));
    return sc;
}

static int sector_op(diskimg_sector_cipher *sc, bool enc, uint64_t offset, void *buf,
                     size_t len, GError **errp)
{
    if (offset % DISKIMG_CRYPTO_SECTOR_SIZE) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "encrypted I/O at offset %" PRIu64 " is not aligned to %d-byte sectors",
                    offset, DISKIMG_CRYPTO_SECTOR_SIZE);
        return -1;
    }
    uint8_t iv[MAX_BLOCK_LEN];
    uint8_t *p = buf;
    uint64_t sector = offset / DISKIMG_CRYPTO_SECTOR_SIZE;
    /* A short last sector is one unit with its own IV, as in qemu's
     * qcrypto_block_cipher_*_helper: LUKS key material (key bytes x
     * stripes, e.g. 24 x 4000) need not fill whole sectors. */
    for (size_t done = 0; done < len; done += DISKIMG_CRYPTO_SECTOR_SIZE, sector++) {
        size_t n = MIN(len - done, (size_t)DISKIMG_CRYPTO_SECTOR_SIZE);
        if (sc->iv_len && diskimg_ivgen_calculate(sc->ivgen, sector, iv, sc->iv_len, errp) < 0)
            return -1;
        int ret = enc ? diskimg_cipher_encrypt(sc->cipher, iv, sc->iv_len, p + done, n, errp)
                      : diskimg_cipher_decrypt(sc->cipher, iv, sc->iv_len, p + done, n, errp);
        if (ret < 0)
            return -1;
    }
    return 0;
}

int diskimg_sector_cipher_encrypt(diskimg_sector_cipher *sc, uint64_t offset, void *buf,
                                  size_t len, GError **errp)
{
    return sector_op(sc, true, offset, buf, len, errp);
}

int diskimg_sector_cipher_decrypt(diskimg_sector_cipher *sc, uint64_t offset, void *buf,
                                  size_t len, GError **errp)
{
    return sector_op(sc, false, offset, buf, len, errp);
}

void diskimg_sector_cipher_free(diskimg_sector_cipher *sc)
{
    if (!sc)
        return;
    diskimg_cipher_free(sc->cipher);
    diskimg_ivgen_free(sc->ivgen);
    g_free(sc);
}
