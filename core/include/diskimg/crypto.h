/* SPDX-License-Identifier: MIT */
/*
 * crypto.h — cryptography for encrypted image formats.
 *
 * Formats never link a crypto library: they call these functions, and the
 * core forwards the primitive operations (ciphers, hashes, HMAC, PBKDF2,
 * random bytes) to the loaded crypto plugin (plugins/crypto/nettle).  On
 * top of the primitives the core implements what is format-neutral and
 * must be bit-exact with qemu: the IV generators, the sector-wise data
 * cipher, qcow's legacy AES scheme and a LUKS version 1 engine shared by
 * the luks format and qcow2's encrypt.format=luks.
 *
 * Algorithm names are qemu's: ciphers "aes-128" "aes-192" "aes-256"
 * "twofish-128" "twofish-192" "twofish-256" "serpent-128" "serpent-192"
 * "serpent-256" "cast5-128"; modes "ecb" "cbc" "xts" "ctr"; hashes "md5"
 * "sha1" "sha224" "sha256" "sha384" "sha512" "ripemd160"; IV generators
 * "plain" "plain64" "essiv:HASH".
 *
 * Every object here is safe to use from several threads at once once it
 * is set up (the ciphers keep no per-call state), as long as the crypto
 * plugin declares DISKIMG_THREAD_PARALLEL; otherwise the core serialises
 * the calls.  Keys, passwords and intermediate key material are wiped
 * before the memory is released.
 */
#ifndef DISKIMG_CRYPTO_H
#define DISKIMG_CRYPTO_H

#include <diskimg/diskimg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------- algorithms */

/* Sizes of the known algorithms; 0 for unknown names.  These need no
 * plugin: the core knows the table. */
DISKIMG_API size_t diskimg_cipher_key_len(const char *alg);   /* one key, not xts's pair */
DISKIMG_API size_t diskimg_cipher_block_len(const char *alg);
/* IV length a mode needs: 0 for ecb, the block length otherwise. */
DISKIMG_API size_t diskimg_cipher_iv_len(const char *alg, const char *mode);
DISKIMG_API size_t diskimg_hash_digest_len(const char *alg);

/* True when a crypto plugin is loaded.  Every function below that needs
 * one fails without it with "encryption support is not installed (install
 * package diskimg-crypto-nettle)" (DISKIMG_ERROR_NO_PLUGIN). */
DISKIMG_API bool diskimg_crypto_available(void);

/* -------------------------------------------------------------- ciphers */

typedef struct diskimg_cipher diskimg_cipher;

/* key_len is the algorithm's key length, twice that for "xts" (data key
 * first, tweak key second, as IEEE 1619 and dm-crypt). */
DISKIMG_API diskimg_cipher *diskimg_cipher_new(const char *alg, const char *mode,
                                               const uint8_t *key, size_t key_len,
                                               GError **errp);
DISKIMG_API void diskimg_cipher_free(diskimg_cipher *c);
/* In place.  len: a multiple of the block length (any length for ctr);
 * iv: diskimg_cipher_iv_len() bytes, NULL for ecb.  The IV is not
 * updated: every call starts from the IV it is given. */
DISKIMG_API int diskimg_cipher_encrypt(diskimg_cipher *c, const uint8_t *iv, size_t iv_len,
                                       void *buf, size_t len, GError **errp);
DISKIMG_API int diskimg_cipher_decrypt(diskimg_cipher *c, const uint8_t *iv, size_t iv_len,
                                       void *buf, size_t len, GError **errp);

/* ------------------------------------------------------ hashes and KDFs */

/* out_len: 1 to the digest length (shorter output is a truncation). */
DISKIMG_API int diskimg_hash(const char *alg, const void *data, size_t len, uint8_t *out,
                             size_t out_len, GError **errp);
DISKIMG_API int diskimg_hmac(const char *alg, const void *key, size_t key_len,
                             const void *data, size_t len, uint8_t *out, size_t out_len,
                             GError **errp);
/* The hash algorithms above, in that order, NULL-terminated (static). */
DISKIMG_API const char *const *diskimg_hash_names(void);

/* Incremental hashing, for data that arrives in pieces: the digest equals
 * diskimg_hash() of the pieces concatenated.  A context belongs to one
 * thread at a time; after diskimg_hash_final() only diskimg_hash_free()
 * may be called.  Needs a crypto plugin that provides incremental hashes
 * (nettle does), else DISKIMG_ERROR_NOT_SUPPORTED. */
typedef struct diskimg_hash_ctx diskimg_hash_ctx;
DISKIMG_API diskimg_hash_ctx *diskimg_hash_new(const char *alg, GError **errp);
DISKIMG_API int diskimg_hash_update(diskimg_hash_ctx *h, const void *data, size_t len,
                                    GError **errp);
/* out_len: 1 to the digest length, as diskimg_hash(). */
DISKIMG_API int diskimg_hash_final(diskimg_hash_ctx *h, uint8_t *out, size_t out_len,
                                   GError **errp);
DISKIMG_API void diskimg_hash_free(diskimg_hash_ctx *h);

/* PBKDF2 (RFC 8018) with HMAC-hash_alg; iterations 1 to UINT32_MAX. */
DISKIMG_API int diskimg_pbkdf2(const char *hash_alg, const void *pass, size_t pass_len,
                               const void *salt, size_t salt_len, uint64_t iterations,
                               uint8_t *out, size_t out_len, GError **errp);
/* How many PBKDF2 iterations producing out_len bytes take `ms` milliseconds
 * of this thread's CPU time (qemu's qcrypto_pbkdf2_count_iters scaled by
 * iter-time).  Measured with a nanosecond clock over at least tens of
 * milliseconds, so it never fails for lack of clock resolution; *out >= 1. */
DISKIMG_API int diskimg_pbkdf2_count_iterations(const char *hash_alg, size_t out_len,
                                                uint64_t ms, uint64_t *out, GError **errp);
/* Cryptographically strong random bytes (getrandom). */
DISKIMG_API int diskimg_random_bytes(void *buf, size_t len, GError **errp);

/* Constant-time comparison: 0 when equal. */
DISKIMG_API int diskimg_crypto_memcmp(const void *a, const void *b, size_t len);
/* Overwrites len bytes with zeroes in a way the compiler keeps. */
DISKIMG_API void diskimg_crypto_wipe(void *p, size_t len);

/* A --object secret used as a password the way qemu does
 * (qcrypto_secret_lookup_as_utf8): it must be valid UTF-8 without NUL
 * bytes, else "Data from secret ID is not valid UTF-8".  Release *pw with
 * diskimg_secret_wipe(*pw, *len). */
DISKIMG_API int diskimg_crypto_password(const char *secret_id, uint8_t **pw, size_t *len,
                                        GError **errp);

/* -------------------------------------------------------- IV generators */

typedef struct diskimg_ivgen diskimg_ivgen;

/* spec: "plain" (32-bit little-endian sector number), "plain64" (64-bit),
 * or "essiv:HASH" (the sector number encrypted in ecb mode with
 * HASH(key), the cipher being `cipher_alg`'s family sized to the digest,
 * as dm-crypt).  key/key_len: the whole data key (both xts halves); only
 * essiv uses it.  IVs are zero-padded to the length asked. */
DISKIMG_API diskimg_ivgen *diskimg_ivgen_new(const char *spec, const char *cipher_alg,
                                             const uint8_t *key, size_t key_len,
                                             GError **errp);
DISKIMG_API int diskimg_ivgen_calculate(diskimg_ivgen *g, uint64_t sector, uint8_t *iv,
                                        size_t iv_len, GError **errp);
DISKIMG_API void diskimg_ivgen_free(diskimg_ivgen *g);

/* ------------------------------------------------------- sector ciphers */

/*
 * A data cipher working on 512-byte sectors, each with the IV its number
 * gives: what qemu's qcrypto_block_encrypt/decrypt do.  `offset` names the
 * position the IVs are derived from (sector = offset / 512) and is not
 * where the data lives: the luks format passes the guest offset (sectors
 * counted from the start of the payload), qcow2 with LUKS the host offset
 * in the qcow2 file, qcow2 with legacy AES the guest offset.  offset must
 * be a multiple of 512 and len of the cipher's block length (formats use
 * whole sectors; a short last sector is encrypted as one unit, as qemu
 * does for LUKS key material).
 */
#define DISKIMG_CRYPTO_SECTOR_SIZE 512

typedef struct diskimg_sector_cipher diskimg_sector_cipher;

DISKIMG_API diskimg_sector_cipher *diskimg_sector_cipher_new(const char *alg, const char *mode,
                                                             const char *ivgen_spec,
                                                             const uint8_t *key, size_t key_len,
                                                             GError **errp);
/* qcow/qcow2 encryption method 1 ("aes", broken by design, read-only use
 * recommended): aes-128-cbc-plain64 keyed with the password's first 16
 * bytes, zero-padded. */
DISKIMG_API diskimg_sector_cipher *diskimg_qcow_aes_new(const uint8_t *password, size_t len,
                                                        GError **errp);
DISKIMG_API int diskimg_sector_cipher_encrypt(diskimg_sector_cipher *sc, uint64_t offset,
                                              void *buf, size_t len, GError **errp);
DISKIMG_API int diskimg_sector_cipher_decrypt(diskimg_sector_cipher *sc, uint64_t offset,
                                              void *buf, size_t len, GError **errp);
DISKIMG_API void diskimg_sector_cipher_free(diskimg_sector_cipher *sc);

/* ================================================================= LUKS */

/*
 * LUKS version 1 (cryptsetup's on-disk format 1.2.x, as qemu implements
 * it).  The engine is format-neutral: the header area (the 592-byte
 * header plus the key material of the key slots, offsets relative to the
 * header's start) is read and written through callbacks, a memory buffer
 * or a node plus a base offset — offset 0 of the file for the luks format,
 * the encryption header extension's offset for qcow2.
 *
 * Opening:  diskimg_luks_parse / _open_node  (validates every field)
 *           diskimg_luks_unlock[_buffer|_node] (password -> master key)
 * Creating: diskimg_luks_create, then diskimg_luks_write[_buffer|_node]
 *           into an area of diskimg_luks_payload_offset() bytes.
 * Data:     diskimg_luks_encrypt / _decrypt (see the sector cipher above
 *           for what `offset` means).
 */
#define DISKIMG_LUKS_HEADER_SIZE 592
#define DISKIMG_LUKS_NUM_KEY_SLOTS 8
/* Hostile-image limits.  Iteration counts (key slots and the master key
 * digest) above DISKIMG_LUKS_MAX_ITERATIONS are refused at parse time,
 * before any PBKDF2 runs, rather than ground through for hours.  Why below
 * 2^24: qemu and cryptsetup both calibrate the count to an iteration time
 * (2 s by default for a key slot, 1/8 of that for the digest; at least
 * 1000), and PBKDF2-SHA runs some 1.5 million (a server core, `cryptsetup
 * benchmark`) to 5 million (a fast desktop core with SHA extensions)
 * iterations a second, so what either tool writes at its defaults stays
 * near 2^21..2^23.  A count of 2^24 or more (seconds to hours of work per
 * key slot, and a header has eight) is refused at once.  The same limit
 * bounds creation, so that every image diskimg writes opens again.
 * Stripe counts above cryptsetup's 4000 are refused rather than
 * allocated. */
#define DISKIMG_LUKS_MAX_ITERATIONS ((1u << 24) - 1)
#define DISKIMG_LUKS_MAX_STRIPES 4000

typedef struct diskimg_luks diskimg_luks;

typedef int (*diskimg_luks_read_fn)(void *opaque, uint64_t offset, void *buf, size_t len,
                                    GError **errp);
typedef int (*diskimg_luks_write_fn)(void *opaque, uint64_t offset, const void *buf,
                                     size_t len, GError **errp);

/* True when buf starts with the LUKS magic and version 1 (probing). */
DISKIMG_API bool diskimg_luks_probe(const uint8_t *buf, size_t len);

/* Parses and validates a header (len >= DISKIMG_LUKS_HEADER_SIZE).  Errors
 * use qemu's wording where qemu has one ("Volume is not in LUKS format",
 * "Keyslot 3 is corrupted (stripes == 0)"...). */
DISKIMG_API diskimg_luks *diskimg_luks_parse(const uint8_t *buf, size_t len, GError **errp);
DISKIMG_API diskimg_luks *diskimg_luks_open_node(diskimg_node *n, uint64_t base, GError **errp);
DISKIMG_API void diskimg_luks_free(diskimg_luks *l);

/* Tries the password on every active key slot; on success the data
 * cipher is ready.  A wrong password gives "Invalid password, cannot
 * unlock any keyslot" (DISKIMG_ERROR_PERMISSION). */
DISKIMG_API int diskimg_luks_unlock(diskimg_luks *l, const uint8_t *pw, size_t pw_len,
                                    diskimg_luks_read_fn read, void *opaque, GError **errp);
/* The header area in memory: area[0] is the header's first byte. */
DISKIMG_API int diskimg_luks_unlock_buffer(diskimg_luks *l, const uint8_t *pw, size_t pw_len,
                                           const uint8_t *area, size_t area_len, GError **errp);
DISKIMG_API int diskimg_luks_unlock_node(diskimg_luks *l, const uint8_t *pw, size_t pw_len,
                                         diskimg_node *n, uint64_t base, GError **errp);
DISKIMG_API bool diskimg_luks_is_unlocked(const diskimg_luks *l);

/* Creation parameters; NULL strings and a negative iter_time_ms take
 * qemu's defaults: aes-256, xts, plain64, sha256, 2000 ms.  ivgen_hash_alg
 * defaults to sha256 for essiv and is recorded (and ignored) otherwise
 * when given, as qemu does. */
struct diskimg_luks_create_params {
    uint32_t struct_size;          /* sizeof(struct diskimg_luks_create_params) */
    const char *cipher_alg;
    const char *cipher_mode;
    const char *ivgen_alg;         /* "plain" "plain64" "essiv" */
    const char *ivgen_hash_alg;
    const char *hash_alg;
    int64_t iter_time_ms;
};
/* A new header with a random master key in slot 0 (unlocked: the data
 * cipher is ready).  Iteration counts follow qemu: PBKDF2 calibrated to
 * iter_time, the master-key digest gets 1/8 of it, each at least 1000. */
DISKIMG_API diskimg_luks *diskimg_luks_create(const struct diskimg_luks_create_params *p,
                                              const uint8_t *pw, size_t pw_len, GError **errp);
/* Writes the header and the key material this object holds (after
 * create: slot 0).  The caller reserves diskimg_luks_payload_offset()
 * bytes for the area; other slots' key material is left as it is. */
DISKIMG_API int diskimg_luks_write(const diskimg_luks *l, diskimg_luks_write_fn write,
                                   void *opaque, GError **errp);
DISKIMG_API int diskimg_luks_write_buffer(const diskimg_luks *l, uint8_t *area, size_t area_len,
                                          GError **errp);
DISKIMG_API int diskimg_luks_write_node(const diskimg_luks *l, diskimg_node *n, uint64_t base,
                                        GError **errp);

/* Where the encrypted payload starts, in bytes from the header's start;
 * for qcow2 the length of the encryption header area. */
DISKIMG_API uint64_t diskimg_luks_payload_offset(const diskimg_luks *l);
/* The end of the last key slot's key material: how much of the area the
 * header really uses (<= payload offset). */
DISKIMG_API uint64_t diskimg_luks_header_end(const diskimg_luks *l);

/* Data (see diskimg_sector_cipher_encrypt for offset); needs an unlocked
 * header. */
DISKIMG_API int diskimg_luks_encrypt(diskimg_luks *l, uint64_t offset, void *buf, size_t len,
                                     GError **errp);
DISKIMG_API int diskimg_luks_decrypt(diskimg_luks *l, uint64_t offset, void *buf, size_t len,
                                     GError **errp);

/*
 * Key slots, for qemu's amend of LUKS images (state=active/inactive).
 * Slot numbers are 0 to DISKIMG_LUKS_NUM_KEY_SLOTS - 1; others fail with
 * qemu's "Invalid keyslot N specified, must be between 0 and 7".
 */
DISKIMG_API bool diskimg_luks_slot_active(const diskimg_luks *l, unsigned slot);
/* 1: the password opens `slot`; 0: it does not, or the slot is inactive;
 * -1: error (reading the key material, the crypto plugin). */
DISKIMG_API int diskimg_luks_slot_matches(diskimg_luks *l, unsigned slot, const uint8_t *pw,
                                          size_t pw_len, diskimg_luks_read_fn read,
                                          void *opaque, GError **errp);
/* Stores the master key of an unlocked header in `slot` under a new
 * password (fresh salt, PBKDF2 calibrated to iter_time_ms, negative: 2000
 * ms), overwriting whatever the slot held: writes the key material, then
 * the header.  On failure the slot is left as it was. */
DISKIMG_API int diskimg_luks_add_key(diskimg_luks *l, unsigned slot, const uint8_t *pw,
                                     size_t pw_len, int64_t iter_time_ms,
                                     diskimg_luks_write_fn write, void *opaque, GError **errp);
/* Marks `slot` inactive and writes the header, then overwrites the slot's
 * key material with random bytes (qemu's erase: 16 passes).  Works on
 * locked headers; erasing the last active slot loses the data for good,
 * which is the caller's to refuse. */
DISKIMG_API int diskimg_luks_erase_key(diskimg_luks *l, unsigned slot,
                                       diskimg_luks_write_fn write, void *opaque,
                                       GError **errp);

/* Fills `o` with qemu's QCryptoBlockInfoLUKS members: cipher-alg,
 * cipher-mode, ivgen-alg, ivgen-hash-alg (essiv only), hash-alg,
 * payload-offset, master-key-iters, uuid, slots (list of {active,
 * iters + stripes when active, key-offset}).  Works on locked headers. */
DISKIMG_API void diskimg_luks_info(const diskimg_luks *l, diskimg_obj *o);

#ifdef __cplusplus
}
#endif
#endif /* DISKIMG_CRYPTO_H */
