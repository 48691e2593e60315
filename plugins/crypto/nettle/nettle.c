/* SPDX-License-Identifier: MIT */
/*
 * nettle — the crypto plugin: block ciphers in ecb/cbc/xts/ctr, hashes,
 * HMAC, PBKDF2 and random bytes, on GNU Nettle.
 *
 * The core validates algorithm names, key and data lengths before calling
 * in (core/crypto.c) and builds IV generators, sector ciphers and LUKS on
 * top; this file checks again anyway, because nettle asserts (aborts) on
 * lengths it does not like and a plugin must never take the process down.
 *
 * Cipher handles hold only keyed contexts, never an IV or other per-call
 * state, so one handle may encrypt from many threads at once: the plugin
 * declares DISKIMG_THREAD_PARALLEL.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/md5.h>
#include <nettle/nettle-meta.h>
#include <nettle/pbkdf2.h>
#include <nettle/ripemd160.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/xts.h>

#include <diskimg/plugin.h>

extern const char nettle_schema_yaml[];

#define MAX_BLOCK 16

/* Wipes memory in a way the compiler must keep (key schedules). */
static void wipe(void *p, size_t len)
{
    volatile uint8_t *v = p;
    for (size_t i = 0; i < len; i++)
        v[i] = 0;
}

/* --------------------------------------------------------------- ciphers */

static const struct {
    const char *name;
    const struct nettle_cipher *meta;
} ciphers[] = {
    { "aes-128", &nettle_aes128 },         { "aes-192", &nettle_aes192 },
    { "aes-256", &nettle_aes256 },         { "twofish-128", &nettle_twofish128 },
    { "twofish-192", &nettle_twofish192 }, { "twofish-256", &nettle_twofish256 },
    { "serpent-128", &nettle_serpent128 }, { "serpent-192", &nettle_serpent192 },
    { "serpent-256", &nettle_serpent256 }, { "cast5-128", &nettle_cast128 },
};

enum mode { MODE_ECB, MODE_CBC, MODE_XTS, MODE_CTR };

struct cipher {
    const struct nettle_cipher *meta;
    enum mode mode;
    void *enc;     /* keyed for encryption (data key) */
    void *dec;     /* keyed for decryption; NULL for ctr */
    void *tweak;   /* xts: the tweak key, keyed for encryption */
};

static void *ctx_new(const struct nettle_cipher *meta, nettle_set_key_func *set,
                     const uint8_t *key)
{
    void *ctx = g_malloc0(meta->context_size);
    set(ctx, key);
    return ctx;
}

static void ctx_free(const struct nettle_cipher *meta, void *ctx)
{
    if (!ctx)
        return;
    wipe(ctx, meta->context_size);
    g_free(ctx);
}

static void nt_cipher_free(void *h)
{
    struct cipher *c = h;
    if (!c)
        return;
    ctx_free(c->meta, c->enc);
    ctx_free(c->meta, c->dec);
    ctx_free(c->meta, c->tweak);
    g_free(c);
}

static void *nt_cipher_new(const char *alg, const char *mode, const uint8_t *key,
                               size_t key_len, GError **errp)
{
    const struct nettle_cipher *meta = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(ciphers); i++)
        if (g_str_equal(ciphers[i].name, alg))
            meta = ciphers[i].meta;
    if (!meta) {
        diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED, "Unsupported cipher algorithm %s",
                          alg);
        return NULL;
    }

    enum mode m;
    if (g_str_equal(mode, "ecb"))
        m = MODE_ECB;
    else if (g_str_equal(mode, "cbc"))
        m = MODE_CBC;
    else if (g_str_equal(mode, "xts"))
        m = MODE_XTS;
    else if (g_str_equal(mode, "ctr"))
        m = MODE_CTR;
    else {
        diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED, "Cipher mode %s not supported",
                          mode);
        return NULL;
    }

    if (m == MODE_XTS && meta->block_size != XTS_BLOCK_SIZE) {
        diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                          "Cipher %s cannot be used in xts mode", alg);
        return NULL;
    }
    size_t want = m == MODE_XTS ? 2u * meta->key_size : meta->key_size;
    if (key_len != want) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Cipher key length %zu should be %zu", key_len, want);
        return NULL;
    }

    struct cipher *c = g_new0(struct cipher, 1);
    c->meta = meta;
    c->mode = m;
    c->enc = ctx_new(meta, meta->set_encrypt_key, key);
    if (m != MODE_CTR)   /* ctr decrypts by encrypting the counter */
        c->dec = ctx_new(meta, meta->set_decrypt_key, key);
    if (m == MODE_XTS)   /* IEEE 1619: key 1 for data, key 2 for the tweak */
        c->tweak = ctx_new(meta, meta->set_encrypt_key, key + meta->key_size);
    return c;
}

static int cipher_run(struct cipher *c, bool enc, const uint8_t *iv, size_t iv_len,
                      uint8_t *buf, size_t len, GError **errp)
{
    size_t bs = c->meta->block_size;
    if (c->mode != MODE_CTR && len % bs) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Length %zu must be a multiple of block size %zu", len, bs);
        return -1;
    }
    if (c->mode != MODE_ECB && (!iv || iv_len != bs)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Expected IV size %zu not %zu", bs, iv ? iv_len : 0);
        return -1;
    }
    if (len == 0)
        return 0;
    /* cbc and ctr advance the IV they are given: work on a copy so the
     * handle stays stateless and the caller's IV untouched. */
    uint8_t ivbuf[MAX_BLOCK];
    if (iv)
        memcpy(ivbuf, iv, bs);
    switch (c->mode) {
    case MODE_ECB:
        (enc ? c->meta->encrypt : c->meta->decrypt)(enc ? c->enc : c->dec, len, buf, buf);
        break;
    case MODE_CBC:
        if (enc)
            cbc_encrypt(c->enc, c->meta->encrypt, bs, ivbuf, len, buf, buf);
        else
            cbc_decrypt(c->dec, c->meta->decrypt, bs, ivbuf, len, buf, buf);
        break;
    case MODE_XTS:
        if (enc)
            xts_encrypt_message(c->enc, c->tweak, c->meta->encrypt, ivbuf, len, buf, buf);
        else
            xts_decrypt_message(c->dec, c->tweak, c->meta->decrypt, c->meta->encrypt, ivbuf,
                                len, buf, buf);
        break;
    case MODE_CTR:
        ctr_crypt(c->enc, c->meta->encrypt, bs, ivbuf, len, buf, buf);
        break;
    }
    return 0;
}

static int nt_cipher_encrypt(void *h, const uint8_t *iv, size_t iv_len, uint8_t *buf,
                                 size_t len, GError **errp)
{
    return cipher_run(h, true, iv, iv_len, buf, len, errp);
}

static int nt_cipher_decrypt(void *h, const uint8_t *iv, size_t iv_len, uint8_t *buf,
                                 size_t len, GError **errp)
{
    return cipher_run(h, false, iv, iv_len, buf, len, errp);
}

/* ---------------------------------------------------------------- hashes */

static const struct {
    const char *name;
    const struct nettle_hash *meta;
} hashes[] = {
    { "md5", &nettle_md5 },       { "sha1", &nettle_sha1 },     { "sha224", &nettle_sha224 },
    { "sha256", &nettle_sha256 }, { "sha384", &nettle_sha384 }, { "sha512", &nettle_sha512 },
    { "ripemd160", &nettle_ripemd160 },
};

/* Room for the context of any hash above, so that nothing is allocated
 * per call; sha224 and sha384 share sha256's and sha512's contexts. */
union hash_ctx {
    struct md5_ctx md5;
    struct sha1_ctx sha1;
    struct sha256_ctx sha256;
    struct sha512_ctx sha512;
    struct ripemd160_ctx ripemd160;
};

static const struct nettle_hash *find_hash(const char *alg, size_t out_len, GError **errp)
{
    for (size_t i = 0; i < G_N_ELEMENTS(hashes); i++) {
        const struct nettle_hash *h = hashes[i].meta;
        if (!g_str_equal(hashes[i].name, alg))
            continue;
        g_assert(h->context_size <= sizeof(union hash_ctx));
        if (out_len == 0 || out_len > h->digest_size) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "%s digest length must be 1 to %u bytes, not %zu", alg,
                        h->digest_size, out_len);
            return NULL;
        }
        return h;
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "Hash algorithm %s not supported", alg);
    return NULL;
}

static int nt_hash(const char *alg, const void *data, size_t len, uint8_t *out,
                       size_t out_len, GError **errp)
{
    const struct nettle_hash *h = find_hash(alg, out_len, errp);
    if (!h)
        return -1;
    union hash_ctx ctx;
    h->init(&ctx);
    h->update(&ctx, len, data);
    h->digest(&ctx, out_len, out);
    wipe(&ctx, sizeof(ctx));
    return 0;
}

/* An incremental hash: the algorithm and its context, allocated once. */
struct hash_stream {
    const struct nettle_hash *meta;
    bool digested;
    union hash_ctx ctx;
};

static void *nt_hash_new(const char *alg, GError **errp)
{
    const struct nettle_hash *h = find_hash(alg, 1, errp);
    if (!h)
        return NULL;
    struct hash_stream *s = g_new0(struct hash_stream, 1);
    s->meta = h;
    h->init(&s->ctx);
    return s;
}

static int nt_hash_update(void *ctx, const void *data, size_t len, GError **errp)
{
    struct hash_stream *s = ctx;
    if (s->digested) {
        g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                            "hash updated after its digest was taken");
        return -1;
    }
    s->meta->update(&s->ctx, len, data);
    return 0;
}

static int nt_hash_digest(void *ctx, uint8_t *out, size_t out_len, GError **errp)
{
    struct hash_stream *s = ctx;
    if (s->digested || out_len == 0 || out_len > s->meta->digest_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s digest of %zu bytes cannot be taken", s->meta->name, out_len);
        return -1;
    }
    s->meta->digest(&s->ctx, out_len, out);
    s->digested = true;
    return 0;
}

static void nt_hash_free(void *ctx)
{
    if (!ctx)
        return;
    wipe(ctx, sizeof(struct hash_stream));
    g_free(ctx);
}

/* nettle's generic HMAC needs three contexts of the hash's type. */
struct hmac_any {
    const struct nettle_hash *hash;
    union hash_ctx outer, inner, state;
};

static void hmac_any_update(void *ctx, size_t len, const uint8_t *data)
{
    struct hmac_any *m = ctx;
    hmac_update(&m->state, m->hash, len, data);
}

static void hmac_any_digest(void *ctx, size_t len, uint8_t *out)
{
    struct hmac_any *m = ctx;
    hmac_digest(&m->outer, &m->inner, &m->state, m->hash, len, out);
}

static int nt_hmac(const char *alg, const void *key, size_t key_len, const void *data,
                       size_t len, uint8_t *out, size_t out_len, GError **errp)
{
    const struct nettle_hash *h = find_hash(alg, out_len, errp);
    if (!h)
        return -1;
    struct hmac_any m = { .hash = h };
    hmac_set_key(&m.outer, &m.inner, &m.state, h, key_len, key);
    hmac_any_update(&m, len, data);
    hmac_any_digest(&m, out_len, out);
    wipe(&m, sizeof(m));
    return 0;
}

static int nt_pbkdf2(const char *hash_alg, const void *pass, size_t pass_len,
                            const void *salt, size_t salt_len, uint64_t iterations,
                            uint8_t *out, size_t out_len, GError **errp)
{
    const struct nettle_hash *h = find_hash(hash_alg, 1, errp);
    if (!h)
        return -1;
    /* nettle asserts iterations > 0 and length > 0, and counts in an
     * unsigned int. */
    if (iterations == 0 || iterations > UINT_MAX || out_len == 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "PBKDF2 with %" PRIu64 " iterations and %zu output bytes is not possible",
                    iterations, out_len);
        return -1;
    }
    struct hmac_any m = { .hash = h };
    hmac_set_key(&m.outer, &m.inner, &m.state, h, pass_len, pass);
    pbkdf2(&m, hmac_any_update, hmac_any_digest, h->digest_size, (unsigned)iterations,
           salt_len, salt, out_len, out);
    wipe(&m, sizeof(m));
    return 0;
}

/* ---------------------------------------------------------------- random */

static int nt_random(void *buf, size_t len, GError **errp)
{
    uint8_t *p = buf;
    while (len) {
        /* getrandom returns at most 32 MiB per call and may be
         * interrupted before the pool is ready; loop until done. */
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            diskimg_set_errno(errp, errno, "%s", "Unable to read random bytes");
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------ descriptor */

static const struct diskimg_crypto_ops nettle_ops = {
    .struct_size = sizeof(struct diskimg_crypto_ops),
    .cipher_new = nt_cipher_new,
    .cipher_free = nt_cipher_free,
    .cipher_encrypt = nt_cipher_encrypt,
    .cipher_decrypt = nt_cipher_decrypt,
    .hash = nt_hash,
    .hmac = nt_hmac,
    .pbkdf2 = nt_pbkdf2,
    .random = nt_random,
    .hash_new = nt_hash_new,
    .hash_update = nt_hash_update,
    .hash_digest = nt_hash_digest,
    .hash_free = nt_hash_free,
};

static const struct diskimg_plugin nettle_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_CRYPTO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "nettle",
    .version = PLUGIN_VERSION,
    .summary = "Ciphers, hashes, HMAC and PBKDF2 from GNU Nettle",
    .schema = nettle_schema_yaml,
    .capabilities = 0,
    .ops = &nettle_ops,
};

DISKIMG_PLUGIN_DEFINE(nettle_plugin)
