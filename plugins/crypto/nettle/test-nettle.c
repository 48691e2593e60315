/* SPDX-License-Identifier: MIT */
/*
 * test-nettle.c — known-answer tests of the nettle crypto plugin, driven
 * through the core's crypto API (diskimg/crypto.h) as formats use it.
 *
 * Vectors: FIPS-197 / NIST SP 800-38A (AES ecb, cbc, ctr), IEEE 1619-2007
 * (XTS-AES vectors 1, 2 and 4), RFC 2144 (CAST5), the Twofish paper's
 * KATs, libgcrypt's Serpent KATs (as also used by qemu's tests), FIPS 180
 * and the RIPEMD-160 paper ("abc"), RFC 4231 (HMAC-SHA-256/512), RFC 6070
 * (PBKDF2-HMAC-SHA1) and RFC 7914 §11 (PBKDF2-HMAC-SHA256).  ESSIV values
 * were computed independently with Python's `cryptography` package.
 */
#include <string.h>

#include <diskimg/core.h>
#include <diskimg/crypto.h>

/* ---------------------------------------------------------------- helpers */

static uint8_t *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    g_assert_cmpuint(n % 2, ==, 0);
    uint8_t *out = g_malloc0(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
        g_assert_true(hi >= 0 && lo >= 0);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (len)
        *len = n / 2;
    return out;
}

static char *tohex(const uint8_t *buf, size_t len)
{
    GString *s = g_string_new(NULL);
    for (size_t i = 0; i < len; i++)
        g_string_append_printf(s, "%02x", buf[i]);
    return g_string_free(s, FALSE);
}

#define assert_hex(buf, len, expect) do {                                      \
        g_autofree char *hex_ = tohex((buf), (len));                           \
        g_assert_cmpstr(hex_, ==, (expect));                                   \
    } while (0)

/* --------------------------------------------------------------- registry */

static void test_available(void)
{
    g_assert_true(diskimg_crypto_available());
    const struct diskimg_plugin *d = diskimg_plugin_descriptor(DISKIMG_KIND_CRYPTO, "nettle");
    g_assert_nonnull(d);
    g_assert_cmpuint(d->kind, ==, DISKIMG_KIND_CRYPTO);
    g_assert_cmpuint(d->thread_model, ==, DISKIMG_THREAD_PARALLEL);
    g_assert_cmpuint(diskimg_cipher_key_len("serpent-192"), ==, 24);
    g_assert_cmpuint(diskimg_cipher_block_len("cast5-128"), ==, 8);
    g_assert_cmpuint(diskimg_cipher_iv_len("aes-256", "ecb"), ==, 0);
    g_assert_cmpuint(diskimg_cipher_iv_len("aes-256", "xts"), ==, 16);
    g_assert_cmpuint(diskimg_cipher_iv_len("aes-256", "gcm"), ==, 0);
    g_assert_cmpuint(diskimg_hash_digest_len("ripemd160"), ==, 20);
    g_assert_cmpuint(diskimg_hash_digest_len("sha3-256"), ==, 0);
}

/* ---------------------------------------------------------------- ciphers */

struct cipher_vector {
    const char *alg, *mode, *key, *iv, *pt, *ct;
};

#define NIST_PT "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51" \
                "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"

static const struct cipher_vector cipher_vectors[] = {
    /* FIPS-197 appendix C */
    { "aes-128", "ecb", "000102030405060708090a0b0c0d0e0f", NULL,
      "00112233445566778899aabbccddeeff", "69c4e0d86a7b0430d8cdb78070b4c55a" },
    { "aes-192", "ecb", "000102030405060708090a0b0c0d0e0f1011121314151617", NULL,
      "00112233445566778899aabbccddeeff", "dda97ca4864cdfe06eaf70a0ec0d7191" },
    { "aes-256", "ecb", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
      NULL, "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089" },
    /* SP 800-38A F.1.1, F.2.1, F.2.5, F.5.1 */
    { "aes-128", "ecb", "2b7e151628aed2a6abf7158809cf4f3c", NULL, NIST_PT,
      "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
      "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4" },
    { "aes-128", "cbc", "2b7e151628aed2a6abf7158809cf4f3c", "000102030405060708090a0b0c0d0e0f",
      NIST_PT,
      "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
      "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7" },
    { "aes-256", "cbc", "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
      "000102030405060708090a0b0c0d0e0f", NIST_PT,
      "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
      "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b" },
    { "aes-128", "ctr", "2b7e151628aed2a6abf7158809cf4f3c", "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
      NIST_PT,
      "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
      "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee" },
    /* ctr is a stream: a partial last block is fine */
    { "aes-128", "ctr", "2b7e151628aed2a6abf7158809cf4f3c", "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
      "6bc1bee22e409f96e93d7e117393172aae2d8a57", "874d6191b620e3261bef6864990db6ce9806f66b" },
    /* RFC 2144 B.1 */
    { "cast5-128", "ecb", "0123456712345678234567893456789a", NULL, "0123456789abcdef",
      "238b4fe5847e44b2" },
    /* Twofish paper KATs */
    { "twofish-128", "ecb", "d491db16e7b1c39e86cb086b789f5419", NULL,
      "019f9809de1711858faac3a3ba20fbc3", "6363977de839486297e661c6c9d668eb" },
    { "twofish-192", "ecb", "88b2b2706b105e36b446bb6d731a1e88efa71f788965bd44", NULL,
      "39da69d6ba4997d585b6dc073ca341b2", "182b02d81497ea45f9daacdc29193a65" },
    { "twofish-256", "ecb", "d43bb7556ea32e46f2a282b7d45b4e0d57ff739d4dc92c1bd7fc01700cc8216f",
      NULL, "90afe91bb288544f2c32dc239b2635e6", "6cb4561c40bf0a9705931cb6d408e7fa" },
    /* Serpent KATs (libgcrypt) */
    { "serpent-128", "ecb", "00000000000000000000000000000000", NULL,
      "d29d576fcea3a3a7ed9099f29273d78e", "b2288b968ae8b08648d1ce9606fd992d" },
    { "serpent-192", "ecb", "000000000000000000000000000000000000000000000000", NULL,
      "d29d576fceaba3a7ed9899f2927bd78e", "130e353e1037c22405e8faefb2c3c3e9" },
    { "serpent-256", "ecb", "0000000000000000000000000000000000000000000000000000000000000000",
      NULL, "d095576fcea3e3a7ed98d9f29073d78e", "b90ee5862de69168f2bdd5125b45472b" },
    /* IEEE 1619-2007 XTS-AES vectors 1 and 2 (tweak = data unit number,
     * little-endian) */
    { "aes-128", "xts", "0000000000000000000000000000000000000000000000000000000000000000",
      "00000000000000000000000000000000",
      "0000000000000000000000000000000000000000000000000000000000000000",
      "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e" },
    { "aes-128", "xts", "1111111111111111111111111111111122222222222222222222222222222222",
      "33333333330000000000000000000000",
      "4444444444444444444444444444444444444444444444444444444444444444",
      "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0" },
};

static void run_vector(const struct cipher_vector *v)
{
    size_t klen, ivlen = 0, ptlen;
    g_autofree uint8_t *key = unhex(v->key, &klen);
    g_autofree uint8_t *iv = v->iv ? unhex(v->iv, &ivlen) : NULL;
    g_autofree uint8_t *pt = unhex(v->pt, &ptlen);
    g_assert_cmpuint(strlen(v->ct), ==, 2 * ptlen);
    g_autofree uint8_t *iv_copy = iv ? g_memdup2(iv, ivlen) : NULL;
    GError *err = NULL;

    diskimg_cipher *c = diskimg_cipher_new(v->alg, v->mode, key, klen, &err);
    g_assert_no_error(err);
    g_assert_nonnull(c);
    g_autofree uint8_t *buf = g_memdup2(pt, ptlen);
    g_assert_cmpint(diskimg_cipher_encrypt(c, iv, ivlen, buf, ptlen, &err), ==, 0);
    g_assert_no_error(err);
    assert_hex(buf, ptlen, v->ct);
    /* Stateless: the same IV again gives the same result, and the caller's
     * IV is not advanced. */
    if (iv)
        g_assert_cmpmem(iv, ivlen, iv_copy, ivlen);
    g_assert_cmpint(diskimg_cipher_decrypt(c, iv, ivlen, buf, ptlen, &err), ==, 0);
    g_assert_no_error(err);
    assert_hex(buf, ptlen, v->pt);
    diskimg_cipher_free(c);
}

static void test_cipher_vectors(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(cipher_vectors); i++) {
        g_test_message("vector %zu: %s-%s", i, cipher_vectors[i].alg, cipher_vectors[i].mode);
        run_vector(&cipher_vectors[i]);
    }
}

/* IEEE 1619-2007 vector 4: 512-byte data unit, tweak 0 (continues
 * vector 3's key). */
static void test_xts_vector4(void)
{
    static const char ct4[] =
        "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c"
        "c78cf7f5e543445f8333d8fa7f56000005279fa5d8b5e4ad40e736ddb4d35412"
        "328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c92cc512c8866c7e860ce"
        "93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad0265"
        "5ea92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8"
        "a750e8768defffed9122810aaeb99f9172af82b604dc4b8e51bcb08235a6f434"
        "1332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690db4eae29c5f1badd03c"
        "5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e"
        "94bff94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc"
        "1e08298516e2c9ed03ff3c1b7860f6de76d4cecd94c8119855ef5297ca67e9f3"
        "e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc2f801e23e56fd344"
        "b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd"
        "74d20cc39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752"
        "afe656bb3c17256a9f6e9bf19fdd5a38fc82bbe872c5539edb609ef4f79c203e"
        "bb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d6c017db738b18d"
        "eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568";
    g_autofree uint8_t *key = unhex("27182818284590452353602874713526"
                                    "31415926535897932384626433832795", NULL);
    uint8_t iv[16] = { 0 }, buf[512];
    GError *err = NULL;
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    diskimg_cipher *c = diskimg_cipher_new("aes-128", "xts", key, 32, &err);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_cipher_encrypt(c, iv, 16, buf, sizeof(buf), &err), ==, 0);
    assert_hex(buf, sizeof(buf), ct4);
    g_assert_cmpint(diskimg_cipher_decrypt(c, iv, 16, buf, sizeof(buf), &err), ==, 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        g_assert_cmpuint(buf[i], ==, (uint8_t)i);
    diskimg_cipher_free(c);
}

static void test_cipher_errors(void)
{
    uint8_t key[64] = { 0 }, buf[32] = { 0 }, iv[16] = { 0 };
    GError *err = NULL;

    g_assert_null(diskimg_cipher_new("des", "ecb", key, 8, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_assert_cmpstr(err->message, ==, "Unsupported cipher algorithm des");
    g_clear_error(&err);
    g_assert_null(diskimg_cipher_new("aes-128", "gcm", key, 16, &err));
    g_assert_cmpstr(err->message, ==, "Cipher mode gcm not supported");
    g_clear_error(&err);
    g_assert_null(diskimg_cipher_new("aes-256", "xts", key, 32, &err));
    g_assert_cmpstr(err->message, ==, "Cipher key length 32 should be 64");
    g_clear_error(&err);
    g_assert_null(diskimg_cipher_new("cast5-128", "xts", key, 32, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_clear_error(&err);

    diskimg_cipher *c = diskimg_cipher_new("aes-128", "cbc", key, 16, &err);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_cipher_encrypt(c, iv, 16, buf, 17, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Length 17 must be a multiple of block size 16");
    g_clear_error(&err);
    g_assert_cmpint(diskimg_cipher_encrypt(c, iv, 8, buf, 16, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Expected IV size 16 not 8");
    g_clear_error(&err);
    g_assert_cmpint(diskimg_cipher_encrypt(c, NULL, 0, buf, 16, &err), ==, -1);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_cipher_encrypt(c, iv, 16, buf, 0, &err), ==, 0);
    diskimg_cipher_free(c);
    diskimg_cipher_free(NULL);
}

/* ---------------------------------------------------------------- hashes */

static void test_hash_vectors(void)
{
    static const struct { const char *alg, *digest; } v[] = {
        { "md5", "900150983cd24fb0d6963f7d28e17f72" },
        { "sha1", "a9993e364706816aba3e25717850c26c9cd0d89d" },
        { "sha224", "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7" },
        { "sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "sha384", "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                    "8086072ba1e7cc2358baeca134c825a7" },
        { "sha512", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f" },
        { "ripemd160", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc" },
    };
    GError *err = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(v); i++) {
        uint8_t out[64];
        size_t n = diskimg_hash_digest_len(v[i].alg);
        g_assert_cmpint(diskimg_hash(v[i].alg, "abc", 3, out, n, &err), ==, 0);
        g_assert_no_error(err);
        assert_hex(out, n, v[i].digest);
    }
    uint8_t out[64];
    g_assert_cmpint(diskimg_hash("sha256", "abc", 3, out, 4, &err), ==, 0);   /* truncated */
    assert_hex(out, 4, "ba7816bf");
    g_assert_cmpint(diskimg_hash("sha256", "abc", 3, out, 33, &err), ==, -1);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_hash("whirlpool", "abc", 3, out, 32, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Hash algorithm whirlpool not supported");
    g_clear_error(&err);
}

/* Incremental hashing: pieces of any size give the one-shot digest (FIPS
 * 180-2's 56-byte message for sha256, whose padding takes a second block),
 * and misuse is an error, not a crash. */
static void test_hash_incremental(void)
{
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    GError *err = NULL;
    uint8_t out[64];
    diskimg_hash_ctx *h = diskimg_hash_new("sha256", &err);
    g_assert_no_error(err);
    g_assert_nonnull(h);
    size_t cuts[] = { 0, 1, 31, 55, sizeof(msg) - 1 };
    for (size_t i = 0; i + 1 < G_N_ELEMENTS(cuts); i++)
        g_assert_cmpint(diskimg_hash_update(h, msg + cuts[i], cuts[i + 1] - cuts[i], &err), ==, 0);
    g_assert_cmpint(diskimg_hash_final(h, out, 32, &err), ==, 0);
    g_assert_no_error(err);
    assert_hex(out, 32, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    g_assert_cmpint(diskimg_hash_update(h, "x", 1, &err), ==, -1);      /* after final */
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_hash_final(h, out, 32, &err), ==, -1);
    g_clear_error(&err);
    diskimg_hash_free(h);

    h = diskimg_hash_new("sha512", &err);
    g_assert_cmpint(diskimg_hash_final(h, out, 65, &err), ==, -1);      /* too long */
    g_clear_error(&err);
    g_assert_cmpint(diskimg_hash_final(h, out, 64, &err), ==, 0);       /* empty message */
    assert_hex(out, 8, "cf83e1357eefb8bd");
    diskimg_hash_free(h);

    g_assert_null(diskimg_hash_new("sha3-256", &err));
    g_assert_cmpstr(err->message, ==, "Hash algorithm sha3-256 not supported");
    g_clear_error(&err);
    diskimg_hash_free(NULL);

    const char *const *names = diskimg_hash_names();
    size_t n = 0;
    for (; names[n]; n++)
        g_assert_cmpuint(diskimg_hash_digest_len(names[n]), >, 0);
    g_assert_cmpuint(n, ==, 7);
    g_assert_cmpstr(names[3], ==, "sha256");
}

static void test_hmac_vectors(void)
{
    /* RFC 4231 test cases 1, 2, 3 and 6 (SHA-256), 2 (SHA-512) */
    uint8_t key[131], data[50], out[64];
    GError *err = NULL;

    memset(key, 0x0b, 20);
    g_assert_cmpint(diskimg_hmac("sha256", key, 20, "Hi There", 8, out, 32, &err), ==, 0);
    assert_hex(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    static const char jefe[] = "what do ya want for nothing?";
    g_assert_cmpint(diskimg_hmac("sha256", "Jefe", 4, jefe, strlen(jefe), out, 32, &err), ==, 0);
    assert_hex(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    g_assert_cmpint(diskimg_hmac("sha512", "Jefe", 4, jefe, strlen(jefe), out, 64, &err), ==, 0);
    assert_hex(out, 64, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
    memset(key, 0xaa, sizeof(key));
    memset(data, 0xdd, sizeof(data));
    g_assert_cmpint(diskimg_hmac("sha256", key, 20, data, 50, out, 32, &err), ==, 0);
    assert_hex(out, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    static const char big[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    g_assert_cmpint(diskimg_hmac("sha256", key, 131, big, strlen(big), out, 32, &err), ==, 0);
    assert_hex(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    g_assert_no_error(err);
}

static void test_pbkdf2_vectors(void)
{
    /* RFC 6070 */
    static const struct {
        const char *pw; size_t pwlen; const char *salt; size_t saltlen;
        uint64_t iters; const char *dk;
    } v[] = {
        { "password", 8, "salt", 4, 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6" },
        { "password", 8, "salt", 4, 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957" },
        { "password", 8, "salt", 4, 4096, "4b007901b765489abead49d926f721d065a429c1" },
        { "passwordPASSWORDpassword", 24, "saltSALTsaltSALTsaltSALTsaltSALTsalt", 36, 4096,
          "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038" },
        { "pass\0word", 9, "sa\0lt", 5, 4096, "56fa6aa75548099dcc37d7f03425e0c3" },
    };
    GError *err = NULL;
    uint8_t out[64];
    for (size_t i = 0; i < G_N_ELEMENTS(v); i++) {
        size_t n = strlen(v[i].dk) / 2;
        g_assert_cmpint(diskimg_pbkdf2("sha1", v[i].pw, v[i].pwlen, v[i].salt, v[i].saltlen,
                                       v[i].iters, out, n, &err), ==, 0);
        g_assert_no_error(err);
        assert_hex(out, n, v[i].dk);
    }
    /* RFC 7914 section 11: two output blocks */
    g_assert_cmpint(diskimg_pbkdf2("sha256", "passwd", 6, "salt", 4, 1, out, 64, &err), ==, 0);
    assert_hex(out, 64, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
                        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");

    g_assert_cmpint(diskimg_pbkdf2("sha1", "p", 1, "s", 1, 0, out, 20, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_pbkdf2("sha1", "p", 1, "s", 1, 1ull << 33, out, 20, &err), ==, -1);
    g_clear_error(&err);
}

static void test_pbkdf2_count(void)
{
    GError *err = NULL;
    uint64_t a = 0, b = 0;
    g_assert_cmpint(diskimg_pbkdf2_count_iterations("sha256", 32, 100, &a, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(a, >, 1000);   /* any machine does more than 10k/s */
    g_assert_cmpint(diskimg_pbkdf2_count_iterations("sha256", 32, 0, &b, &err), ==, 0);
    g_assert_cmpuint(b, ==, 1);
    g_assert_cmpint(diskimg_pbkdf2_count_iterations("sha256", 32, UINT64_MAX, &b, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_pbkdf2_count_iterations("nope", 32, 10, &b, &err), ==, -1);
    g_clear_error(&err);
}

static void test_random(void)
{
    uint8_t a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };
    GError *err = NULL;
    g_assert_cmpint(diskimg_random_bytes(a, sizeof(a), &err), ==, 0);
    g_assert_cmpint(diskimg_random_bytes(b, sizeof(b), &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(memcmp(a, b, sizeof(a)), !=, 0);
    g_assert_cmpint(memcmp(a, zero, sizeof(a)), !=, 0);
    g_assert_cmpint(diskimg_random_bytes(a, 0, &err), ==, 0);
}

static void test_helpers(void)
{
    uint8_t x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, y[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    g_assert_cmpint(diskimg_crypto_memcmp(x, y, 8), ==, 0);
    y[7] ^= 0x80;
    g_assert_cmpint(diskimg_crypto_memcmp(x, y, 8), !=, 0);
    diskimg_crypto_wipe(x, sizeof(x));
    for (size_t i = 0; i < sizeof(x); i++)
        g_assert_cmpuint(x[i], ==, 0);
}

static void test_password(void)
{
    GError *err = NULL;
    uint8_t *pw = NULL;
    size_t len = 0;

    g_assert_cmpint(diskimg_object_add("secret,id=pw1,data=hello", &err), ==, 0);
    g_assert_cmpint(diskimg_crypto_password("pw1", &pw, &len, &err), ==, 0);
    g_assert_cmpmem(pw, len, "hello", 5);
    diskimg_secret_wipe(pw, len);
    /* "ab\0cd": an embedded NUL is refused, as qemu does */
    g_assert_cmpint(diskimg_object_add("secret,id=pw2,data=YWIAY2Q=,format=base64", &err), ==, 0);
    g_assert_cmpint(diskimg_crypto_password("pw2", &pw, &len, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Data from secret pw2 is not valid UTF-8");
    g_clear_error(&err);
    g_assert_cmpint(diskimg_object_add("secret,id=pw3,data=/w==,format=base64", &err), ==, 0);
    g_assert_cmpint(diskimg_crypto_password("pw3", &pw, &len, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Data from secret pw3 is not valid UTF-8");
    g_clear_error(&err);
    g_assert_cmpint(diskimg_crypto_password("nope", &pw, &len, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "No secret with id 'nope'");
    g_clear_error(&err);
}

/* ---------------------------------------------------------- IV generators */

static void test_ivgen(void)
{
    GError *err = NULL;
    uint8_t iv[16];
    diskimg_ivgen *g = diskimg_ivgen_new("plain", NULL, NULL, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_ivgen_calculate(g, 0x100000002ull, iv, 16, &err), ==, 0);
    assert_hex(iv, 16, "02000000000000000000000000000000");   /* wraps at 2^32 */
    diskimg_ivgen_free(g);

    g = diskimg_ivgen_new("plain64", NULL, NULL, 0, &err);
    g_assert_cmpint(diskimg_ivgen_calculate(g, 0x100000002ull, iv, 16, &err), ==, 0);
    assert_hex(iv, 16, "02000000010000000000000000000000");
    g_assert_cmpint(diskimg_ivgen_calculate(g, 0x0102030405060708ull, iv, 8, &err), ==, 0);
    assert_hex(iv, 8, "0807060504030201");
    diskimg_ivgen_free(g);

    uint8_t key[32];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)i;
    /* essiv:sha256 with aes-256: AES-256(sha256(key)) of le64(sector) */
    g = diskimg_ivgen_new("essiv:sha256", "aes-256", key, 32, &err);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_ivgen_calculate(g, 5, iv, 16, &err), ==, 0);
    assert_hex(iv, 16, "1d3cc413699a46f844afd0adc387f14e");
    diskimg_ivgen_free(g);
    /* dm-crypt quirk: aes-128 data with sha256 uses aes-256 for ESSIV */
    g = diskimg_ivgen_new("essiv:sha256", "aes-128", key, 16, &err);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_ivgen_calculate(g, 7, iv, 16, &err), ==, 0);
    assert_hex(iv, 16, "afe4f025d123a1cc9b2a5e5a881b5fc1");
    diskimg_ivgen_free(g);
    g = diskimg_ivgen_new("essiv:md5", "aes-256", key, 16, &err);   /* -> aes-128 */
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_ivgen_calculate(g, 7, iv, 16, &err), ==, 0);
    assert_hex(iv, 16, "ab1cccd9af9e9f1f029c3744deec963a");
    diskimg_ivgen_free(g);

    g_assert_null(diskimg_ivgen_new("essiv:sha256", "cast5-128", key, 16, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_clear_error(&err);
    g_assert_null(diskimg_ivgen_new("essiv", "aes-256", key, 32, &err));
    g_assert_cmpstr(err->message, ==, "Missing IV generator hash specification");
    g_clear_error(&err);
    g_assert_null(diskimg_ivgen_new("benbi", "aes-256", key, 32, &err));
    g_assert_cmpstr(err->message, ==, "IV generator benbi not supported");
    g_clear_error(&err);
}

/* --------------------------------------------------------- sector ciphers */

/* The sector cipher must equal the plain cipher applied per 512-byte
 * sector with IV = le64(offset / 512 + i). */
static void test_sector_cipher(void)
{
    GError *err = NULL;
    uint8_t key[64];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    uint8_t data[3 * 512], ref[3 * 512];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i ^ 0x5a);
    memcpy(ref, data, sizeof(ref));

    diskimg_sector_cipher *sc = diskimg_sector_cipher_new("aes-256", "xts", "plain64", key, 64,
                                                          &err);
    g_assert_no_error(err);
    diskimg_cipher *c = diskimg_cipher_new("aes-256", "xts", key, 64, &err);
    g_assert_cmpint(diskimg_sector_cipher_encrypt(sc, 0x200000, data, sizeof(data), &err), ==, 0);
    for (unsigned s = 0; s < 3; s++) {
        uint8_t iv[16] = { 0 };
        diskimg_put_le64(iv, 0x200000 / 512 + s);
        g_assert_cmpint(diskimg_cipher_encrypt(c, iv, 16, ref + s * 512, 512, &err), ==, 0);
    }
    g_assert_cmpmem(data, sizeof(data), ref, sizeof(ref));
    g_assert_cmpint(diskimg_sector_cipher_decrypt(sc, 0x200000, data, sizeof(data), &err), ==, 0);
    for (size_t i = 0; i < sizeof(data); i++)
        g_assert_cmpuint(data[i], ==, (uint8_t)(i ^ 0x5a));
    g_assert_cmpint(diskimg_sector_cipher_encrypt(sc, 100, data, 512, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    diskimg_cipher_free(c);
    diskimg_sector_cipher_free(sc);

    /* qcow legacy AES: key = password zero-padded to 16, cbc-plain64 */
    sc = diskimg_qcow_aes_new((const uint8_t *)"secret", 6, &err);
    g_assert_no_error(err);
    uint8_t k16[16] = "secret";
    c = diskimg_cipher_new("aes-128", "cbc", k16, 16, &err);
    memcpy(ref, data, 1024);
    g_assert_cmpint(diskimg_sector_cipher_encrypt(sc, 512, data, 1024, &err), ==, 0);
    for (unsigned s = 0; s < 2; s++) {
        uint8_t iv[16] = { 0 };
        diskimg_put_le64(iv, 1 + s);
        g_assert_cmpint(diskimg_cipher_encrypt(c, iv, 16, ref + s * 512, 512, &err), ==, 0);
    }
    g_assert_cmpmem(data, 1024, ref, 1024);
    diskimg_cipher_free(c);
    diskimg_sector_cipher_free(sc);
}

/* The same cipher handle from several threads at once. */
static gpointer thread_worker(gpointer opaque)
{
    diskimg_sector_cipher *sc = opaque;
    uint8_t buf[4096];
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)(i + round);
        if (diskimg_sector_cipher_encrypt(sc, (uint64_t)round * 4096, buf, sizeof(buf), NULL) < 0 ||
            diskimg_sector_cipher_decrypt(sc, (uint64_t)round * 4096, buf, sizeof(buf), NULL) < 0)
            return GINT_TO_POINTER(1);
        for (size_t i = 0; i < sizeof(buf); i++)
            if (buf[i] != (uint8_t)(i + round))
                return GINT_TO_POINTER(1);
    }
    return NULL;
}

static void test_threads(void)
{
    uint8_t key[32] = { 9 };
    GError *err = NULL;
    diskimg_sector_cipher *sc = diskimg_sector_cipher_new("aes-128", "cbc", "essiv:sha256",
                                                          key, 16, &err);
    g_assert_no_error(err);
    GThread *t[4];
    for (size_t i = 0; i < G_N_ELEMENTS(t); i++)
        t[i] = g_thread_new("crypto", thread_worker, sc);
    for (size_t i = 0; i < G_N_ELEMENTS(t); i++)
        g_assert_null(g_thread_join(t[i]));
    diskimg_sector_cipher_free(sc);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    GError *err = NULL;
    if (diskimg_init(&err) < 0)
        g_error("diskimg_init: %s", err->message);

    g_test_add_func("/nettle/available", test_available);
    g_test_add_func("/nettle/cipher/vectors", test_cipher_vectors);
    g_test_add_func("/nettle/cipher/xts-ieee1619-4", test_xts_vector4);
    g_test_add_func("/nettle/cipher/errors", test_cipher_errors);
    g_test_add_func("/nettle/hash", test_hash_vectors);
    g_test_add_func("/nettle/hash/incremental", test_hash_incremental);
    g_test_add_func("/nettle/hmac", test_hmac_vectors);
    g_test_add_func("/nettle/pbkdf2", test_pbkdf2_vectors);
    g_test_add_func("/nettle/pbkdf2-count", test_pbkdf2_count);
    g_test_add_func("/nettle/random", test_random);
    g_test_add_func("/nettle/helpers", test_helpers);
    g_test_add_func("/nettle/password", test_password);
    g_test_add_func("/nettle/ivgen", test_ivgen);
    g_test_add_func("/nettle/sector-cipher", test_sector_cipher);
    g_test_add_func("/nettle/threads", test_threads);
    return g_test_run();
}
