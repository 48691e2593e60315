/* SPDX-License-Identifier: MIT */
/*
 * LUKS version 1 engine (diskimg/crypto.h), shared by the luks format and
 * qcow2's encrypt.format=luks.
 *
 * On-disk layout (cryptsetup's LUKS1 on-disk format 1.2.x; all integers
 * big-endian; offsets in bytes from the header's start):
 *
 *     0  magic "LUKS\xba\xbe"          104  payload offset (512-byte sectors)
 *     6  version (1)                   108  master key length in bytes
 *     8  cipher name  [32] "aes"       112  master key digest [20]
 *    40  cipher mode  [32] "xts-plain64"    132  master key digest salt [32]
 *    72  hash spec    [32] "sha256"    164  master key digest iterations
 *   168  uuid [40]                     208  8 key slots of 48 bytes:
 *        active (0x00ac71f3 / 0x0000dead), iterations, salt [32],
 *        key material offset (sectors), anti-forensic stripes
 *
 * A key slot's key material is the master key split into `stripes`
 * stripes by the AF splitter and encrypted with a key PBKDF2 derives from
 * the password, sector by sector (sector numbers from 0) with the image's
 * own cipher, mode and IV generator.
 *
 * Everything read from a header is bounded before use: hostile iteration
 * counts, stripe counts, key lengths and offsets are refused with a clear
 * error instead of allocating or computing without limit.
 */
#include <string.h>

#include <diskimg/crypto.h>

#include "internal.h"

#define LUKS_MAGIC "LUKS\xba\xbe"
#define LUKS_MAGIC_LEN 6
#define LUKS_VERSION 1
#define LUKS_NAME_LEN 32
#define LUKS_DIGEST_LEN 20
#define LUKS_SALT_LEN 32
#define LUKS_UUID_LEN 40
#define LUKS_SLOT_SIZE 48
#define LUKS_SLOTS_AT 208
#define LUKS_SECTOR 512u
#define LUKS_STRIPES 4000
#define LUKS_MAX_KEY_LEN 64
#define LUKS_SLOT_ENABLED 0x00AC71F3u
#define LUKS_SLOT_DISABLED 0x0000DEADu
/* qemu and cryptsetup align key material to 4096 bytes (8 sectors). */
#define LUKS_ALIGN_SECTORS 8u
/* qemu's minimums whatever the calibration says. */
#define LUKS_MIN_ITERATIONS 1000u
#define LUKS_DEFAULT_ITER_TIME_MS 2000

G_STATIC_ASSERT(LUKS_SLOTS_AT + DISKIMG_LUKS_NUM_KEY_SLOTS * LUKS_SLOT_SIZE ==
                DISKIMG_LUKS_HEADER_SIZE);

struct luks_slot {
    uint32_t active;
    uint32_t iterations;
    uint8_t salt[LUKS_SALT_LEN];
    uint32_t key_offset;       /* sectors */
    uint32_t stripes;
};

struct diskimg_luks {
    /* The header fields, host order; strings NUL-terminated. */
    char cipher_name[LUKS_NAME_LEN + 1];
    char cipher_mode[LUKS_NAME_LEN + 1];
    char hash_spec[LUKS_NAME_LEN + 1];
    uint32_t payload_offset;   /* sectors */
    uint32_t key_len;
    uint8_t mk_digest[LUKS_DIGEST_LEN];
    uint8_t mk_salt[LUKS_SALT_LEN];
    uint32_t mk_iterations;
    uint8_t uuid[LUKS_UUID_LEN];
    struct luks_slot slots[DISKIMG_LUKS_NUM_KEY_SLOTS];

    /* What the strings mean, in the core's algorithm names. */
    char cipher_alg[LUKS_NAME_LEN + 8];   /* "aes-256" */
    char mode[LUKS_NAME_LEN + 1];         /* "xts" */
    char ivgen_alg[LUKS_NAME_LEN + 1];    /* "plain64" */
    char ivgen_hash[LUKS_NAME_LEN + 1];   /* "" when the spec names none */
    char ivgen_spec[2 * LUKS_NAME_LEN + 2]; /* "plain64" or "essiv:sha256" */

    diskimg_sector_cipher *payload;       /* set once unlocked */
    /* The master key, kept while unlocked so that key slots can be added
     * (amend); wiped with the object. */
    uint8_t master_key[LUKS_MAX_KEY_LEN];

    /* Key material created here and not written yet (after create). */
    uint8_t *material;
    size_t material_len;
    unsigned material_slot;
};

/* Bytes of one slot's key material; at most 64 * 4000 once validated. */
static uint64_t material_len(const diskimg_luks *l, const struct luks_slot *s)
{
    return (uint64_t)l->key_len * s->stripes;
}

/* ------------------------------------------------------------ algorithms */

/* The cipher families LUKS names, as qemu maps them. */
static const char *const luks_ciphers[] = { "aes", "cast5", "serpent", "twofish" };
static const char *const luks_modes[] = { "ecb", "cbc", "xts", "ctr" };
static const char *const luks_ivgens[] = { "plain", "plain64", "essiv" };

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (g_str_equal(s, list[i]))
            return true;
    return false;
}

/* ESSIV needs the cipher family at the digest's key size (see
 * diskimg_ivgen_new); refused with qemu's messages rather than at unlock. */
static int check_essiv(const char *family, const char *alg, const char *hash, GError **errp)
{
    static const struct {
        const char *family, *label;
    } families[] = { { "aes", "AES" }, { "serpent", "Serpent" }, { "twofish", "Twofish" } };
    size_t dlen = diskimg_hash_digest_len(hash);
    char essiv_alg[LUKS_NAME_LEN + 8];
    g_snprintf(essiv_alg, sizeof(essiv_alg), "%s-%zu", family, dlen * 8);
    if (diskimg_cipher_key_len(essiv_alg) == dlen)
        return 0;
    for (size_t i = 0; i < G_N_ELEMENTS(families); i++)
        if (g_str_equal(family, families[i].family))
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                     "No %s cipher with key size %zu available",
                                     families[i].label, dlen);
    return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                             "Cipher %s not supported with essiv", alg);
}

/*
 * Interprets cipher name, mode spec "<mode>-<ivgen>[:<hash>]" and hash spec
 * (qemu's qcrypto_block_luks_parse_header, same messages).  A hash after a
 * plain/plain64 generator is parsed and ignored, as dm-crypt does.
 */
static int parse_algorithms(diskimg_luks *l, GError **errp)
{
    char spec[LUKS_NAME_LEN + 1];
    g_strlcpy(spec, l->cipher_mode, sizeof(spec));
    char *ivgen = strchr(spec, '-');
    if (!ivgen)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unexpected cipher mode string format %s", l->cipher_mode);
    *ivgen++ = '\0';
    char *ivhash = strchr(ivgen, ':');
    if (ivhash) {
        *ivhash++ = '\0';
        if (!diskimg_hash_digest_len(ivhash))
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                     "Hash algorithm %s not supported", ivhash);
    }
    if (!in_list(spec, luks_modes, G_N_ELEMENTS(luks_modes)))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Cipher mode %s not supported", spec);
    bool xts = g_str_equal(spec, "xts");

    if (l->key_len == 0 || l->key_len > LUKS_MAX_KEY_LEN)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "LUKS master key length %" PRIu32 " is invalid (1 to %d bytes)",
                                 l->key_len, LUKS_MAX_KEY_LEN);
    uint32_t one_key = xts ? l->key_len / 2 : l->key_len;
    g_snprintf(l->cipher_alg, sizeof(l->cipher_alg), "%s-%" PRIu32, l->cipher_name,
               one_key * 8);
    /* An odd xts length would silently drop a byte of the tweak key. */
    if (!in_list(l->cipher_name, luks_ciphers, G_N_ELEMENTS(luks_ciphers)) ||
        diskimg_cipher_key_len(l->cipher_alg) != one_key || (xts && l->key_len % 2))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Algorithm %s with key size %" PRIu32 " bytes not supported",
                                 l->cipher_name, one_key);

    if (!diskimg_hash_digest_len(l->hash_spec))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Hash algorithm %s not supported", l->hash_spec);
    if (!in_list(ivgen, luks_ivgens, G_N_ELEMENTS(luks_ivgens)))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "IV generator %s not supported", ivgen);
    bool essiv = g_str_equal(ivgen, "essiv");
    if (essiv && !ivhash)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Missing IV generator hash specification");
    if (essiv && check_essiv(l->cipher_name, l->cipher_alg, ivhash, errp) < 0)
        return -1;
    /* After the IV generator, as qemu, whose cipher refuses the mode only
     * when it is made. */
    if (xts && diskimg_cipher_block_len(l->cipher_alg) != 16)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported cipher mode xts");

    g_strlcpy(l->mode, spec, sizeof(l->mode));
    g_strlcpy(l->ivgen_alg, ivgen, sizeof(l->ivgen_alg));
    g_strlcpy(l->ivgen_hash, ivhash ? ivhash : "", sizeof(l->ivgen_hash));
    if (essiv)
        g_snprintf(l->ivgen_spec, sizeof(l->ivgen_spec), "essiv:%s", ivhash);
    else
        g_strlcpy(l->ivgen_spec, ivgen, sizeof(l->ivgen_spec));
    return 0;
}

/* ------------------------------------------------------------ validation */

static int check_slots(const diskimg_luks *l, GError **errp)
{
    for (size_t i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        const struct luks_slot *s = &l->slots[i];
        if (s->stripes == 0)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Keyslot %zu is corrupted (stripes == 0)", i);
        if (s->active != LUKS_SLOT_ENABLED && s->active != LUKS_SLOT_DISABLED)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Keyslot %zu state (active/disable) is corrupted", i);
        if (s->stripes > DISKIMG_LUKS_MAX_STRIPES)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Keyslot %zu has %" PRIu32 " anti-forensic stripes, more "
                                     "than the %d supported", i, s->stripes,
                                     DISKIMG_LUKS_MAX_STRIPES);
        if (s->active == LUKS_SLOT_ENABLED) {
            if (s->iterations == 0)
                return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                         "Keyslot %zu is corrupted (iterations == 0)", i);
            if (s->iterations > DISKIMG_LUKS_MAX_ITERATIONS)
                return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                         "Keyslot %zu asks for %" PRIu32 " PBKDF2 iterations, more "
                                         "than the %u accepted", i, s->iterations,
                                         DISKIMG_LUKS_MAX_ITERATIONS);
        }
        /* All slots, active or not, as qemu: an inactive slot's area is
         * where a key may be added later. */
        uint64_t start = (uint64_t)s->key_offset * LUKS_SECTOR;
        uint64_t end = start + material_len(l, s);
        if (start < DISKIMG_LUKS_HEADER_SIZE)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Keyslot %zu is overlapping with the LUKS header", i);
        if (end > (uint64_t)l->payload_offset * LUKS_SECTOR)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Keyslot %zu is overlapping with the encrypted payload", i);
        for (size_t j = i + 1; j < DISKIMG_LUKS_NUM_KEY_SLOTS; j++) {
            const struct luks_slot *t = &l->slots[j];
            uint64_t start2 = (uint64_t)t->key_offset * LUKS_SECTOR;
            uint64_t end2 = start2 + material_len(l, t);
            if (start < end2 && start2 < end)
                return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                         "Keyslots %zu and %zu are overlapping in the header",
                                         i, j);
        }
    }
    return 0;
}

/* A fixed-size string field: must hold a NUL. */
static int copy_name(char *dst, const uint8_t *src, const char *what, GError **errp)
{
    if (!memchr(src, '\0', LUKS_NAME_LEN))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "LUKS header %s is not NUL-terminated", what);
    memcpy(dst, src, LUKS_NAME_LEN);
    dst[LUKS_NAME_LEN] = '\0';
    return 0;
}

bool diskimg_luks_probe(const uint8_t *buf, size_t len)
{
    return len >= 8 && memcmp(buf, LUKS_MAGIC, LUKS_MAGIC_LEN) == 0 &&
           diskimg_be16(buf + 6) == LUKS_VERSION;
}

diskimg_luks *diskimg_luks_parse(const uint8_t *buf, size_t len, GError **errp)
{
    if (len < DISKIMG_LUKS_HEADER_SIZE || memcmp(buf, LUKS_MAGIC, LUKS_MAGIC_LEN) != 0) {
        g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                            "Volume is not in LUKS format");
        return NULL;
    }
    uint16_t version = diskimg_be16(buf + 6);
    if (version != LUKS_VERSION) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "LUKS version %" PRIu16 " is not supported", version);
        return NULL;
    }
    diskimg_luks *l = g_new0(diskimg_luks, 1);
    if (copy_name(l->cipher_name, buf + 8, "cipher name", errp) < 0 ||
        copy_name(l->cipher_mode, buf + 40, "cipher mode", errp) < 0 ||
        copy_name(l->hash_spec, buf + 72, "hash spec", errp) < 0)
        goto fail;
    l->payload_offset = diskimg_be32(buf + 104);
    l->key_len = diskimg_be32(buf + 108);
    memcpy(l->mk_digest, buf + 112, LUKS_DIGEST_LEN);
    memcpy(l->mk_salt, buf + 132, LUKS_SALT_LEN);
    l->mk_iterations = diskimg_be32(buf + 164);
    memcpy(l->uuid, buf + 168, LUKS_UUID_LEN);
    for (size_t i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        const uint8_t *p = buf + LUKS_SLOTS_AT + i * LUKS_SLOT_SIZE;
        struct luks_slot *s = &l->slots[i];
        s->active = diskimg_be32(p);
        s->iterations = diskimg_be32(p + 4);
        memcpy(s->salt, p + 8, LUKS_SALT_LEN);
        s->key_offset = diskimg_be32(p + 40);
        s->stripes = diskimg_be32(p + 44);
    }
    if (parse_algorithms(l, errp) < 0)
        goto fail;
    if (l->mk_iterations == 0 || l->mk_iterations > DISKIMG_LUKS_MAX_ITERATIONS) {
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                          "LUKS master key digest iterations %" PRIu32 " out of range (1 to %u)",
                          l->mk_iterations, DISKIMG_LUKS_MAX_ITERATIONS);
        goto fail;
    }
    if (check_slots(l, errp) < 0)
        goto fail;
    return l;
fail:
    diskimg_luks_free(l);
    return NULL;
}

static void serialize(const diskimg_luks *l, uint8_t *buf)
{
    memset(buf, 0, DISKIMG_LUKS_HEADER_SIZE);
    memcpy(buf, LUKS_MAGIC, LUKS_MAGIC_LEN);
    diskimg_put_be16(buf + 6, LUKS_VERSION);
    memcpy(buf + 8, l->cipher_name, LUKS_NAME_LEN);
    memcpy(buf + 40, l->cipher_mode, LUKS_NAME_LEN);
    memcpy(buf + 72, l->hash_spec, LUKS_NAME_LEN);
    diskimg_put_be32(buf + 104, l->payload_offset);
    diskimg_put_be32(buf + 108, l->key_len);
    memcpy(buf + 112, l->mk_digest, LUKS_DIGEST_LEN);
    memcpy(buf + 132, l->mk_salt, LUKS_SALT_LEN);
    diskimg_put_be32(buf + 164, l->mk_iterations);
    memcpy(buf + 168, l->uuid, LUKS_UUID_LEN);
    for (size_t i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        uint8_t *p = buf + LUKS_SLOTS_AT + i * LUKS_SLOT_SIZE;
        const struct luks_slot *s = &l->slots[i];
        diskimg_put_be32(p, s->active);
        diskimg_put_be32(p + 4, s->iterations);
        memcpy(p + 8, s->salt, LUKS_SALT_LEN);
        diskimg_put_be32(p + 40, s->key_offset);
        diskimg_put_be32(p + 44, s->stripes);
    }
}

void diskimg_luks_free(diskimg_luks *l)
{
    if (!l)
        return;
    diskimg_sector_cipher_free(l->payload);
    if (l->material) {
        diskimg_crypto_wipe(l->material, l->material_len);
        g_free(l->material);
    }
    diskimg_crypto_wipe(l, sizeof(*l));
    g_free(l);
}

uint64_t diskimg_luks_payload_offset(const diskimg_luks *l)
{
    return (uint64_t)l->payload_offset * LUKS_SECTOR;
}

uint64_t diskimg_luks_header_end(const diskimg_luks *l)
{
    uint64_t end = DISKIMG_LUKS_HEADER_SIZE;
    for (size_t i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++)
        end = MAX(end, (uint64_t)l->slots[i].key_offset * LUKS_SECTOR +
                       material_len(l, &l->slots[i]));
    return end;
}

bool diskimg_luks_is_unlocked(const diskimg_luks *l)
{
    return l->payload != NULL;
}

/* ------------------------------------------------------------ AF splitter */

/* The diffusion step: every digest-sized piece of `block` is replaced by
 * HASH(be32(piece index) || piece), the last piece truncated. */
static int af_diffuse(const char *hash, uint8_t *block, size_t len, GError **errp)
{
    size_t dlen = diskimg_hash_digest_len(hash);
    uint8_t in[4 + LUKS_MAX_KEY_LEN], out[LUKS_MAX_KEY_LEN];
    int ret = 0;
    for (size_t off = 0, i = 0; off < len; off += dlen, i++) {
        size_t n = MIN(dlen, len - off);
        diskimg_put_be32(in, (uint32_t)i);
        memcpy(in + 4, block + off, n);
        if (diskimg_hash(hash, in, 4 + n, out, dlen, errp) < 0) {
            ret = -1;
            break;
        }
        memcpy(block + off, out, n);
    }
    diskimg_crypto_wipe(in, sizeof(in));
    diskimg_crypto_wipe(out, sizeof(out));
    return ret;
}

/* The anti-forensic fold both directions share: XOR the first stripes-1
 * stripes into `block`, diffusing after each one. */
static int af_fold(const char *hash, const uint8_t *split, size_t len, uint32_t stripes,
                   uint8_t *block, GError **errp)
{
    for (uint32_t s = 0; s + 1 < stripes; s++) {
        for (size_t i = 0; i < len; i++)
            block[i] ^= split[(size_t)s * len + i];
        if (af_diffuse(hash, block, len, errp) < 0)
            return -1;
    }
    return 0;
}

/* Merges `stripes` stripes of `len` bytes back into the key. */
static int af_merge(const char *hash, const uint8_t *split, size_t len, uint32_t stripes,
                    uint8_t *key, GError **errp)
{
    uint8_t block[LUKS_MAX_KEY_LEN] = { 0 };
    int ret = af_fold(hash, split, len, stripes, block, errp);
    if (ret == 0)
        for (size_t i = 0; i < len; i++)
            key[i] = split[(size_t)(stripes - 1) * len + i] ^ block[i];
    diskimg_crypto_wipe(block, sizeof(block));
    return ret;
}

/* Splits key into `stripes` stripes: all but the last random. */
static int af_split(const char *hash, const uint8_t *key, size_t len, uint32_t stripes,
                    uint8_t *split, GError **errp)
{
    uint8_t block[LUKS_MAX_KEY_LEN] = { 0 };
    int ret = diskimg_random_bytes(split, (size_t)(stripes - 1) * len, errp);
    if (ret == 0)
        ret = af_fold(hash, split, len, stripes, block, errp);
    if (ret == 0)
        for (size_t i = 0; i < len; i++)
            split[(size_t)(stripes - 1) * len + i] = key[i] ^ block[i];
    diskimg_crypto_wipe(block, sizeof(block));
    return ret < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- unlock */

/* 1: the password opens slot i and mk holds the master key; 0: it does
 * not (or the slot is inactive); -1: error. */
static int try_slot(diskimg_luks *l, size_t i, const uint8_t *pw, size_t pw_len,
                    diskimg_luks_read_fn read, void *opaque, uint8_t *mk, GError **errp)
{
    const struct luks_slot *s = &l->slots[i];
    if (s->active != LUKS_SLOT_ENABLED)
        return 0;
    size_t split_len = (size_t)material_len(l, s);
    uint8_t *split = g_malloc(split_len);
    uint8_t slot_key[LUKS_MAX_KEY_LEN], digest[LUKS_DIGEST_LEN];
    diskimg_sector_cipher *sc = NULL;
    int ret = -1;

    if (read(opaque, (uint64_t)s->key_offset * LUKS_SECTOR, split, split_len, errp) < 0)
        goto out;
    if (diskimg_pbkdf2(l->hash_spec, pw, pw_len, s->salt, LUKS_SALT_LEN, s->iterations,
                       slot_key, l->key_len, errp) < 0)
        goto out;
    sc = diskimg_sector_cipher_new(l->cipher_alg, l->mode, l->ivgen_spec, slot_key, l->key_len,
                                   errp);
    if (!sc)
        goto out;
    /* Key material is encrypted like payload, sectors counted from 0. */
    if (diskimg_sector_cipher_decrypt(sc, 0, split, split_len, errp) < 0 ||
        af_merge(l->hash_spec, split, l->key_len, s->stripes, mk, errp) < 0 ||
        diskimg_pbkdf2(l->hash_spec, mk, l->key_len, l->mk_salt, LUKS_SALT_LEN,
                       l->mk_iterations, digest, LUKS_DIGEST_LEN, errp) < 0)
        goto out;
    ret = diskimg_crypto_memcmp(digest, l->mk_digest, LUKS_DIGEST_LEN) == 0;
out:
    diskimg_sector_cipher_free(sc);
    diskimg_crypto_wipe(split, split_len);
    g_free(split);
    diskimg_crypto_wipe(slot_key, sizeof(slot_key));
    diskimg_crypto_wipe(digest, sizeof(digest));
    return ret;
}

int diskimg_luks_unlock(diskimg_luks *l, const uint8_t *pw, size_t pw_len,
                        diskimg_luks_read_fn read, void *opaque, GError **errp)
{
    uint8_t mk[LUKS_MAX_KEY_LEN];
    int ret = -1;
    for (size_t i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        int r = try_slot(l, i, pw, pw_len, read, opaque, mk, errp);
        if (r < 0)
            goto out;
        if (r == 0)
            continue;
        diskimg_sector_cipher *sc = diskimg_sector_cipher_new(l->cipher_alg, l->mode,
                                                              l->ivgen_spec, mk, l->key_len,
                                                              errp);
        if (!sc)
            goto out;
        diskimg_sector_cipher_free(l->payload);
        l->payload = sc;
        memcpy(l->master_key, mk, l->key_len);
        ret = 0;
        goto out;
    }
    g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                        "Invalid password, cannot unlock any keyslot");
out:
    diskimg_crypto_wipe(mk, sizeof(mk));
    return ret;
}

struct area {
    uint8_t *buf;
    size_t len;
};

static int area_read(void *opaque, uint64_t offset, void *buf, size_t len, GError **errp)
{
    const struct area *a = opaque;
    if (offset > a->len || len > a->len - offset) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "LUKS key material at %" PRIu64 "+%zu lies outside the %zu-byte header "
                    "area", offset, len, a->len);
        return -1;
    }
    memcpy(buf, a->buf + offset, len);
    return 0;
}

static int area_write(void *opaque, uint64_t offset, const void *buf, size_t len,
                      GError **errp)
{
    struct area *a = opaque;
    if (offset > a->len || len > a->len - offset) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "LUKS header area of %zu bytes is too small (need %" PRIu64 ")",
                    a->len, offset + len);
        return -1;
    }
    memcpy(a->buf + offset, buf, len);
    return 0;
}

int diskimg_luks_unlock_buffer(diskimg_luks *l, const uint8_t *pw, size_t pw_len,
                               const uint8_t *area, size_t area_len, GError **errp)
{
    struct area a = { (uint8_t *)area, area_len };
    return diskimg_luks_unlock(l, pw, pw_len, area_read, &a, errp);
}

struct node_at {
    diskimg_node *node;
    uint64_t base;
};

static int node_read(void *opaque, uint64_t offset, void *buf, size_t len, GError **errp)
{
    const struct node_at *n = opaque;
    return diskimg_node_pread(n->node, buf, len, n->base + offset, errp);
}

static int node_write(void *opaque, uint64_t offset, const void *buf, size_t len,
                      GError **errp)
{
    const struct node_at *n = opaque;
    return diskimg_node_pwrite(n->node, buf, len, n->base + offset, 0, errp);
}

int diskimg_luks_unlock_node(diskimg_luks *l, const uint8_t *pw, size_t pw_len,
                             diskimg_node *n, uint64_t base, GError **errp)
{
    struct node_at at = { n, base };
    return diskimg_luks_unlock(l, pw, pw_len, node_read, &at, errp);
}

diskimg_luks *diskimg_luks_open_node(diskimg_node *n, uint64_t base, GError **errp)
{
    uint8_t buf[DISKIMG_LUKS_HEADER_SIZE];
    if (diskimg_node_pread(n, buf, sizeof(buf), base, errp) < 0)
        return NULL;
    return diskimg_luks_parse(buf, sizeof(buf), errp);
}

/* ---------------------------------------------------------------- create */

/* Iterations for `ms` of PBKDF2 work, qemu's way, within our own limit so
 * that we never write a header we would refuse to open. */
static int choose_iterations(const char *hash, size_t out_len, uint64_t ms, unsigned divisor,
                             uint32_t *out, GError **errp)
{
    uint64_t iters = 1;
    if (ms && diskimg_pbkdf2_count_iterations(hash, out_len, ms, &iters, errp) < 0)
        return -1;
    iters /= divisor;
    if (iters > DISKIMG_LUKS_MAX_ITERATIONS) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "PBKDF iterations %" PRIu64 " larger than %u", iters,
                    DISKIMG_LUKS_MAX_ITERATIONS);
        return -1;
    }
    *out = (uint32_t)MAX(iters, LUKS_MIN_ITERATIONS);
    return 0;
}

static int set_name(char *dst, const char *value, const char *what, GError **errp)
{
    if (strlen(value) >= LUKS_NAME_LEN) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s '%s' is too long for LUKS header", what, value);
        return -1;
    }
    memset(dst, 0, LUKS_NAME_LEN + 1);
    strcpy(dst, value);
    return 0;
}

/* Fills slot `idx`: fresh salt, calibrated iterations, the master key
 * split, encrypted with the password's key and kept for writing. */
static int store_key(diskimg_luks *l, unsigned idx, const uint8_t *pw, size_t pw_len,
                     const uint8_t *mk, uint64_t iter_time, GError **errp)
{
    struct luks_slot *s = &l->slots[idx];
    size_t split_len = (size_t)material_len(l, s);
    uint8_t *split = g_malloc(split_len);
    uint8_t slot_key[LUKS_MAX_KEY_LEN];
    diskimg_sector_cipher *sc = NULL;
    int ret = -1;

    if (diskimg_random_bytes(s->salt, LUKS_SALT_LEN, errp) < 0 ||
        choose_iterations(l->hash_spec, l->key_len, iter_time, 1, &s->iterations, errp) < 0 ||
        diskimg_pbkdf2(l->hash_spec, pw, pw_len, s->salt, LUKS_SALT_LEN, s->iterations,
                       slot_key, l->key_len, errp) < 0)
        goto out;
    sc = diskimg_sector_cipher_new(l->cipher_alg, l->mode, l->ivgen_spec, slot_key, l->key_len,
                                   errp);
    if (!sc || af_split(l->hash_spec, mk, l->key_len, s->stripes, split, errp) < 0 ||
        diskimg_sector_cipher_encrypt(sc, 0, split, split_len, errp) < 0)
        goto out;
    s->active = LUKS_SLOT_ENABLED;
    if (l->material) {
        diskimg_crypto_wipe(l->material, l->material_len);
        g_free(l->material);
    }
    l->material = g_steal_pointer(&split);
    l->material_len = split_len;
    l->material_slot = idx;
    ret = 0;
out:
    diskimg_sector_cipher_free(sc);
    if (split) {
        diskimg_crypto_wipe(split, split_len);
        g_free(split);
    }
    diskimg_crypto_wipe(slot_key, sizeof(slot_key));
    return ret;
}

diskimg_luks *diskimg_luks_create(const struct diskimg_luks_create_params *p,
                                  const uint8_t *pw, size_t pw_len, GError **errp)
{
    /* Fields a caller built against an older, shorter struct lacks read
     * as unset. */
    struct diskimg_luks_create_params o = { 0 };
    if (p)
        memcpy(&o, p, MIN((size_t)p->struct_size, sizeof(o)));
    const char *alg = o.cipher_alg ? o.cipher_alg : "aes-256";
    const char *mode = o.cipher_mode ? o.cipher_mode : "xts";
    const char *ivgen = o.ivgen_alg ? o.ivgen_alg : "plain64";
    const char *ivhash = o.ivgen_hash_alg;
    const char *hash = o.hash_alg ? o.hash_alg : "sha256";
    uint64_t iter_time = o.iter_time_ms < 0 ? LUKS_DEFAULT_ITER_TIME_MS
                                            : (uint64_t)o.iter_time_ms;
    if (g_str_equal(ivgen, "essiv") && !ivhash)
        ivhash = "sha256";

    size_t one_key = diskimg_cipher_key_len(alg);
    const char *dash = strrchr(alg, '-');
    if (!one_key || !dash) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Algorithm '%s' not supported", alg);
        return NULL;
    }
    diskimg_luks *l = g_new0(diskimg_luks, 1);
    g_autofree char *uuid = g_uuid_string_random();
    g_autofree char *family = g_strndup(alg, (size_t)(dash - alg));
    g_autofree char *mode_spec = ivhash ? g_strdup_printf("%s-%s:%s", mode, ivgen, ivhash)
                                        : g_strdup_printf("%s-%s", mode, ivgen);
    uint8_t mk[LUKS_MAX_KEY_LEN];
    if (set_name(l->cipher_name, family, "Cipher name", errp) < 0 ||
        set_name(l->cipher_mode, mode_spec, "Cipher mode", errp) < 0 ||
        set_name(l->hash_spec, hash, "Hash name", errp) < 0)
        goto fail;
    l->key_len = (uint32_t)(g_str_equal(mode, "xts") ? 2 * one_key : one_key);
    /* The same interpretation an opener applies: what we write, we and
     * qemu can read. */
    if (parse_algorithms(l, errp) < 0)
        goto fail;

    memcpy(l->uuid, uuid, MIN(strlen(uuid), (size_t)LUKS_UUID_LEN));
    if (diskimg_random_bytes(l->mk_salt, LUKS_SALT_LEN, errp) < 0 ||
        diskimg_random_bytes(mk, l->key_len, errp) < 0)
        goto fail;
    l->payload = diskimg_sector_cipher_new(l->cipher_alg, l->mode, l->ivgen_spec, mk,
                                           l->key_len, errp);
    if (!l->payload)
        goto fail;
    /* qemu (after cryptsetup) gives the digest 1/8 of the time, so that
     * trying all eight slots costs about one iter-time. */
    if (choose_iterations(hash, LUKS_DIGEST_LEN, iter_time, 8, &l->mk_iterations, errp) < 0 ||
        diskimg_pbkdf2(hash, mk, l->key_len, l->mk_salt, LUKS_SALT_LEN, l->mk_iterations,
                       l->mk_digest, LUKS_DIGEST_LEN, errp) < 0)
        goto fail;

    /* qemu's layout: 4 KiB of header, then each slot's key material
     * rounded up to 4 KiB, then the payload. */
    uint32_t header_sectors = 4096 / LUKS_SECTOR;
    uint32_t split_sectors = ((uint32_t)l->key_len * LUKS_STRIPES + LUKS_SECTOR - 1) /
                             LUKS_SECTOR;
    split_sectors = (split_sectors + LUKS_ALIGN_SECTORS - 1) / LUKS_ALIGN_SECTORS *
                    LUKS_ALIGN_SECTORS;
    for (unsigned i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        l->slots[i].active = LUKS_SLOT_DISABLED;
        l->slots[i].key_offset = header_sectors + i * split_sectors;
        l->slots[i].stripes = LUKS_STRIPES;
    }
    l->payload_offset = header_sectors + DISKIMG_LUKS_NUM_KEY_SLOTS * split_sectors;

    if (store_key(l, 0, pw, pw_len, mk, iter_time, errp) < 0)
        goto fail;
    memcpy(l->master_key, mk, l->key_len);
    diskimg_crypto_wipe(mk, sizeof(mk));
    return l;
fail:
    diskimg_crypto_wipe(mk, sizeof(mk));
    diskimg_luks_free(l);
    return NULL;
}

int diskimg_luks_write(const diskimg_luks *l, diskimg_luks_write_fn write, void *opaque,
                       GError **errp)
{
    uint8_t hdr[DISKIMG_LUKS_HEADER_SIZE];
    serialize(l, hdr);
    if (write(opaque, 0, hdr, sizeof(hdr), errp) < 0)
        return -1;
    if (l->material &&
        write(opaque, (uint64_t)l->slots[l->material_slot].key_offset * LUKS_SECTOR,
              l->material, l->material_len, errp) < 0)
        return -1;
    return 0;
}

int diskimg_luks_write_buffer(const diskimg_luks *l, uint8_t *area, size_t area_len,
                              GError **errp)
{
    struct area a = { area, area_len };
    return diskimg_luks_write(l, area_write, &a, errp);
}

int diskimg_luks_write_node(const diskimg_luks *l, diskimg_node *n, uint64_t base,
                            GError **errp)
{
    struct node_at at = { n, base };
    return diskimg_luks_write(l, node_write, &at, errp);
}

/* ------------------------------------------------------------------ data */

static int need_unlocked(const diskimg_luks *l, GError **errp)
{
    if (l->payload)
        return 0;
    g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "LUKS header is not unlocked");
    return -1;
}

int diskimg_luks_encrypt(diskimg_luks *l, uint64_t offset, void *buf, size_t len,
                         GError **errp)
{
    if (need_unlocked(l, errp) < 0)
        return -1;
    return diskimg_sector_cipher_encrypt(l->payload, offset, buf, len, errp);
}

int diskimg_luks_decrypt(diskimg_luks *l, uint64_t offset, void *buf, size_t len,
                         GError **errp)
{
    if (need_unlocked(l, errp) < 0)
        return -1;
    return diskimg_sector_cipher_decrypt(l->payload, offset, buf, len, errp);
}

/* ------------------------------------------------------------- key slots */

/* qemu overwrites an erased slot's key material this many times. */
#define LUKS_ERASE_PASSES 16

static int check_slot_index(unsigned slot, GError **errp)
{
    if (slot < DISKIMG_LUKS_NUM_KEY_SLOTS)
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "Invalid keyslot %u specified, must be between 0 and %d", slot,
                             DISKIMG_LUKS_NUM_KEY_SLOTS - 1);
}

bool diskimg_luks_slot_active(const diskimg_luks *l, unsigned slot)
{
    return slot < DISKIMG_LUKS_NUM_KEY_SLOTS && l->slots[slot].active == LUKS_SLOT_ENABLED;
}

int diskimg_luks_slot_matches(diskimg_luks *l, unsigned slot, const uint8_t *pw,
                              size_t pw_len, diskimg_luks_read_fn read, void *opaque,
                              GError **errp)
{
    uint8_t mk[LUKS_MAX_KEY_LEN];
    if (check_slot_index(slot, errp) < 0)
        return -1;
    int ret = try_slot(l, slot, pw, pw_len, read, opaque, mk, errp);
    diskimg_crypto_wipe(mk, sizeof(mk));
    return ret;
}

int diskimg_luks_add_key(diskimg_luks *l, unsigned slot, const uint8_t *pw, size_t pw_len,
                         int64_t iter_time_ms, diskimg_luks_write_fn write, void *opaque,
                         GError **errp)
{
    if (check_slot_index(slot, errp) < 0 || need_unlocked(l, errp) < 0)
        return -1;
    uint64_t iter_time = iter_time_ms < 0 ? LUKS_DEFAULT_ITER_TIME_MS : (uint64_t)iter_time_ms;
    /* A failure leaves the slot as it was, in memory as on disk. */
    struct luks_slot saved = l->slots[slot];
    int ret = store_key(l, slot, pw, pw_len, l->master_key, iter_time, errp);
    /* The key material first: until the header names it, the slot keeps
     * its old state (qemu's order). */
    if (ret == 0)
        ret = write(opaque, (uint64_t)l->slots[slot].key_offset * LUKS_SECTOR, l->material,
                    l->material_len, errp);
    if (ret == 0) {
        uint8_t hdr[DISKIMG_LUKS_HEADER_SIZE];
        serialize(l, hdr);
        ret = write(opaque, 0, hdr, sizeof(hdr), errp);
    }
    if (ret < 0)
        l->slots[slot] = saved;
    if (l->material) {
        diskimg_crypto_wipe(l->material, l->material_len);
        g_clear_pointer(&l->material, g_free);
        l->material_len = 0;
    }
    return ret;
}

/* Overwrites a slot's key material with random bytes, LUKS_ERASE_PASSES
 * times; when no random bytes can be had, with zeroes once at least. */
static int wipe_material(const diskimg_luks *l, const struct luks_slot *s,
                         diskimg_luks_write_fn write, void *opaque, GError **errp)
{
    size_t len = (size_t)material_len(l, s);
    uint8_t *garbage = g_malloc0(len);
    int ret = 0;
    for (unsigned pass = 0; pass < LUKS_ERASE_PASSES && ret == 0; pass++) {
        if (diskimg_random_bytes(garbage, len, pass ? errp : NULL) < 0) {
            if (pass) {
                ret = -1;
                break;
            }
            memset(garbage, 0, len);
        }
        ret = write(opaque, (uint64_t)s->key_offset * LUKS_SECTOR, garbage, len, errp);
    }
    g_free(garbage);
    return ret;
}

int diskimg_luks_erase_key(diskimg_luks *l, unsigned slot, diskimg_luks_write_fn write,
                           void *opaque, GError **errp)
{
    if (check_slot_index(slot, errp) < 0)
        return -1;
    struct luks_slot *s = &l->slots[slot];
    uint8_t hdr[DISKIMG_LUKS_HEADER_SIZE];
    memset(s->salt, 0, LUKS_SALT_LEN);
    s->iterations = 0;
    s->active = LUKS_SLOT_DISABLED;
    serialize(l, hdr);
    /* The header first, so that no slot is ever active over garbage; the
     * key material is overwritten even when that failed, as qemu does. */
    GError *err = NULL;
    int ret = write(opaque, 0, hdr, sizeof(hdr), &err);
    if (wipe_material(l, s, write, opaque, err ? NULL : &err) < 0)
        ret = -1;
    if (err)
        g_propagate_error(errp, err);
    return ret;
}

/* ------------------------------------------------------------------ info */

void diskimg_luks_info(const diskimg_luks *l, diskimg_obj *o)
{
    diskimg_obj_set_str(o, "cipher-alg", l->cipher_alg);
    diskimg_obj_set_str(o, "cipher-mode", l->mode);
    diskimg_obj_set_str(o, "ivgen-alg", l->ivgen_alg);
    if (g_str_equal(l->ivgen_alg, "essiv"))
        diskimg_obj_set_str(o, "ivgen-hash-alg", l->ivgen_hash);
    diskimg_obj_set_str(o, "hash-alg", l->hash_spec);
    diskimg_obj_set_int(o, "payload-offset", (int64_t)diskimg_luks_payload_offset(l));
    diskimg_obj_set_int(o, "master-key-iters", l->mk_iterations);
    /* The uuid field is free text from the image: cut at NUL and made
     * valid UTF-8 so that JSON output stays well-formed. */
    g_autofree char *raw = g_strndup((const char *)l->uuid, LUKS_UUID_LEN);
    g_autofree char *uuid = g_utf8_make_valid(raw, -1);
    diskimg_obj_set_str(o, "uuid", uuid);
    diskimg_list *slots = diskimg_obj_add_list(o, "slots");
    for (size_t i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS; i++) {
        const struct luks_slot *s = &l->slots[i];
        diskimg_obj *so = diskimg_list_add_obj(slots);
        bool active = s->active == LUKS_SLOT_ENABLED;
        diskimg_obj_set_bool(so, "active", active);
        if (active) {
            diskimg_obj_set_int(so, "iters", s->iterations);
            diskimg_obj_set_int(so, "stripes", s->stripes);
        }
        diskimg_obj_set_int(so, "key-offset", (int64_t)s->key_offset * LUKS_SECTOR);
    }
}
