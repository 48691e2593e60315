/* SPDX-License-Identifier: MIT */
/*
 * plugin.h — the diskimg plugin ABI.
 *
 * A plugin is a shared object that exports one function,
 *
 *     const struct diskimg_plugin *diskimg_plugin_entry(void);
 *
 * (declare it with DISKIMG_PLUGIN_DEFINE).  The descriptor it returns names
 * the plugin, carries its YAML schema and points at the ops struct of its
 * kind: format, io or crypto.  docs/plugin-guide.md explains every field and
 * callback; examples/ holds a complete out-of-tree format plugin.
 *
 * ABI rules (the reason for every `struct_size` below):
 *   - DISKIMG_ABI_VERSION changes only when an existing field or callback
 *     changes meaning.  The core refuses plugins built for a newer ABI.
 *   - Structs only grow at the end.  Each struct starts with (or carries)
 *     `struct_size`, set by whoever fills the struct to sizeof() as compiled:
 *     the core treats callbacks lying beyond a plugin's struct_size as
 *     absent, and plugins must check `args->struct_size` before reading a
 *     field the core added later.  This is SQLite's iVersion and nbdkit's
 *     _struct_size idea.
 *   - A NULL callback means "not supported"; the core then answers with
 *     qemu-img's error text for that operation.
 *
 * This header is MIT licensed so that plugins of any licence may use it.
 */
#ifndef DISKIMG_PLUGIN_H
#define DISKIMG_PLUGIN_H

#include <diskimg/diskimg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DISKIMG_ABI_VERSION 2
#define DISKIMG_PLUGIN_ENTRY_SYMBOL "diskimg_plugin_entry"

enum diskimg_plugin_kind {
    DISKIMG_KIND_FORMAT = 1,  /* an image format: raw, qcow2, vmdk... */
    DISKIMG_KIND_IO     = 2,  /* an I/O backend under file nodes: posix, uring */
    DISKIMG_KIND_CRYPTO = 3,  /* ciphers, hashes, KDFs for encrypted formats */
};

/* How much concurrency a plugin's callbacks tolerate (nbdkit's models). */
enum diskimg_thread_model {
    /* One callback at a time across every handle of the plugin. */
    DISKIMG_THREAD_SERIALIZE_ALL = 0,
    /* One callback at a time per handle; different handles run in parallel. */
    DISKIMG_THREAD_SERIALIZE_REQUESTS = 1,
    /* Any callback may run concurrently with any other; the plugin locks. */
    DISKIMG_THREAD_PARALLEL = 2,
};

/* Capability flags of a format plugin (the descriptor's `capabilities`) and,
 * refined per image by the image_capabilities callback, of an open image. */
enum {
    /* cannot create or write images; for an io plugin serving protocols:
     * names with its schemes cannot be created (Protocol driver 'http'
     * does not support image creation) */
    DISKIMG_CAP_READ_ONLY   = 1u << 0,
    DISKIMG_CAP_BACKING     = 1u << 1, /* images may have a backing file */
    DISKIMG_CAP_ZERO_INIT   = 1u << 2, /* a newly created image reads as zeroes */
    DISKIMG_CAP_PREALLOC_ZERO = 1u << 3, /* ...also when preallocated */
    /* Per-image only: the core sets them in the defaults it passes to
     * image_capabilities when the matching callbacks exist. */
    DISKIMG_CAP_COMPRESSED  = 1u << 4, /* write_compressed works on this image */
    DISKIMG_CAP_DISCARD     = 1u << 5, /* discard may free space in this image */
    /* A probe-fallback format that, opened DISKIMG_OPEN_PROBED, refuses
     * writes changing what probing finds (so the core's warning may say
     * "write operations on block 0 will be restricted"). */
    DISKIMG_CAP_PROBE_GUARD = 1u << 6,
};

struct diskimg_plugin {
    uint32_t abi_version;      /* DISKIMG_ABI_VERSION */
    uint32_t struct_size;      /* sizeof(struct diskimg_plugin) */
    uint32_t kind;             /* enum diskimg_plugin_kind */
    uint32_t thread_model;     /* enum diskimg_thread_model */
    const char *name;          /* "qcow2"; must equal the schema's `plugin:` */
    const char *version;       /* the plugin's own version, free form */
    const char *summary;       /* one line */
    const char *schema;        /* YAML text, NUL-terminated (see docs/schema.md) */
    uint64_t capabilities;     /* DISKIMG_CAP_* */
    const void *ops;           /* struct diskimg_{format,io,crypto}_ops * by kind */
};

/* Defines the entry point returning `descriptor`. */
#define DISKIMG_PLUGIN_DEFINE(descriptor)                                        \
    __attribute__((visibility("default"))) const struct diskimg_plugin *        \
    diskimg_plugin_entry(void);                                                  \
    const struct diskimg_plugin *diskimg_plugin_entry(void) { return &(descriptor); }

/* =================================================================== format */

struct diskimg_format_open_args {
    uint32_t struct_size;
    diskimg_node *node;        /* the node being opened */
    diskimg_node *file;        /* its file child, open; NULL never */
    const char *filename;      /* as the user gave it */
    unsigned flags;            /* DISKIMG_OPEN_* */
    const diskimg_options *options; /* validated open-options of the schema */
};

struct diskimg_format_create_args {
    uint32_t struct_size;
    const char *filename;
    diskimg_node *file;        /* freshly created, empty, open read-write */
    const diskimg_options *options; /* validated create-options */
    uint64_t size;             /* virtual size in bytes (resolved from backing if omitted) */
    unsigned flags;            /* DISKIMG_CREATE_* */
};
enum {
    DISKIMG_CREATE_UNSAFE = 1u << 0, /* -u: do not open the backing file */
};

/* What `info` shows besides format-specific data. */
struct diskimg_image_info {
    uint32_t struct_size;
    uint64_t cluster_size;     /* 0: the format has none */
    bool encrypted;
    bool dirty;                /* dirty-flag */
    /* Appended: every cluster must be written compressed (a stream-optimized
     * vmdk), so convert compresses as with -c (qemu's BlockDriverInfo
     * needs_compressed_writes). */
    bool needs_compressed_writes;
    /* Appended: the image is marked corrupt (qcow2's corrupt bit): writes
     * are refused until check -r repairs it.  Reported by inspect. */
    bool corrupt;
};

/* The backing file an image names, as stored in it (filled by get_backing). */
struct diskimg_backing_ref {
    uint32_t struct_size;      /* set by the core: write no member beyond it */
    const char *filename;      /* NULL: no backing file */
    const char *format;        /* NULL: not recorded (then probed) */
};

struct diskimg_check_result {
    uint32_t struct_size;
    uint64_t corruptions, leaks, check_errors;
    uint64_t corruptions_fixed, leaks_fixed;
    uint64_t image_end_offset;         /* 0: not reported */
    uint64_t total_clusters, allocated_clusters;
    uint64_t fragmented_clusters, compressed_clusters;
    bool has_cluster_stats;            /* the four cluster counters are valid */
};
enum {
    DISKIMG_CHECK_FIX_LEAKS  = 1u << 0,
    DISKIMG_CHECK_FIX_ERRORS = 1u << 1,
};

struct diskimg_measure_args {
    uint32_t struct_size;
    const diskimg_options *options;    /* validated create-options of this format */
    uint64_t size;                     /* virtual size of the target */
    diskimg_node *source;              /* NULL for measure --size */
};
struct diskimg_measure_result {
    uint32_t struct_size;              /* set by the caller: fill no member beyond it */
    uint64_t required;
    uint64_t fully_allocated;
    uint64_t bitmaps;                  /* valid with has_bitmaps */
    bool has_bitmaps;
};

/* Filled by the plugin for diskimg_snapshot_list_add, by the core for
 * snapshot_create: whoever fills it sets struct_size. */
struct diskimg_snapshot {
    uint32_t struct_size;              /* sizeof(struct diskimg_snapshot) of the filler */
    const char *id;
    const char *name;
    uint64_t vm_state_size;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;                   /* valid with has_icount */
    bool has_icount;
};
typedef struct diskimg_snapshot_list diskimg_snapshot_list;
/* The core copies *sn (as far as sn->struct_size reaches; members beyond
 * it read as zero). */
DISKIMG_API void diskimg_snapshot_list_add(diskimg_snapshot_list *l,
                                           const struct diskimg_snapshot *sn);

/* Filled by the plugin for diskimg_bitmap_list_add, by the core for
 * bitmap_add: whoever fills it sets struct_size. */
struct diskimg_bitmap {
    uint32_t struct_size;  /* sizeof(struct diskimg_bitmap) of the filler */
    const char *name;
    uint32_t granularity;
    bool enabled;      /* "auto" flag */
    bool in_use;       /* inconsistent: left in use by a crashed writer */
    bool persistent;
};
typedef struct diskimg_bitmap_list diskimg_bitmap_list;
/* The core copies *b, as far as b->struct_size reaches. */
DISKIMG_API void diskimg_bitmap_list_add(diskimg_bitmap_list *l, const struct diskimg_bitmap *b);

/* probe() sees at most this many leading bytes of a file. */
#define DISKIMG_PROBE_MAX_LEN 2048
/* probe_tail() sees at most this many trailing bytes of a file. */
#define DISKIMG_PROBE_TAIL_LEN 512

struct diskimg_format_ops {
    uint32_t struct_size;      /* sizeof(struct diskimg_format_ops) */

    /* Score 0..100 that `buf` (the first bytes of the file, len <= 2048)
     * is an image of this format; 0 = no.  May be NULL (never probed). */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);

    /* Opens an image; returns the plugin's handle passed to every other
     * callback.  Validate the whole header here. */
    void *(*open)(const struct diskimg_format_open_args *args, GError **errp);
    void (*close)(void *h);
    /* Writes a new image into args->file. */
    int (*create)(const struct diskimg_format_create_args *args, GError **errp);

    int64_t (*get_size)(void *h, GError **errp);
    int (*read)(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
    int (*write)(void *h, const void *buf, uint64_t len, uint64_t offset,
                 unsigned flags, GError **errp);
    int (*write_zeroes)(void *h, uint64_t offset, uint64_t len, unsigned flags,
                        GError **errp);
    /* Called with whole clusters (the info's cluster_size), aligned. */
    int (*write_compressed)(void *h, const void *buf, uint64_t len, uint64_t offset,
                            GError **errp);
    int (*discard)(void *h, uint64_t offset, uint64_t len, GError **errp);
    /* Makes written data durable in the plugin's own structures; the core
     * then flushes the file (and data-file) children itself. */
    int (*flush)(void *h, GError **errp);
    /* Status of [offset, offset+len) in this layer only; see DISKIMG_BS_*. */
    int (*block_status)(void *h, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp);
    int (*truncate)(void *h, uint64_t size, enum diskimg_prealloc prealloc,
                    unsigned flags, GError **errp);

    /* `specific` is the format-specific object (schema `info:`) to fill. */
    int (*info)(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                GError **errp);
    int (*get_backing)(void *h, struct diskimg_backing_ref *ref);
    /* Records a new backing file in the image (rebase, commit); NULL = none. */
    int (*set_backing)(void *h, const char *filename, const char *format, GError **errp);
    /* Deallocates everything so that reads fall through to the backing file
     * (commit without -d). */
    int (*make_empty)(void *h, GError **errp);

    int (*check)(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp);
    int (*measure)(const struct diskimg_measure_args *args,
                   struct diskimg_measure_result *res, GError **errp);
    int (*amend)(void *h, const diskimg_options *options, bool force, GError **errp);

    int (*snapshot_list)(void *h, diskimg_snapshot_list *out, GError **errp);
    int (*snapshot_create)(void *h, const struct diskimg_snapshot *sn, GError **errp);
    int (*snapshot_apply)(void *h, const char *id_or_name, GError **errp);
    int (*snapshot_delete)(void *h, const char *id_or_name, GError **errp);
    /* Makes reads see the snapshot (read-only opens: convert -l). */
    int (*snapshot_load)(void *h, const char *id, const char *name, GError **errp);

    int (*bitmap_list)(void *h, diskimg_bitmap_list *out, GError **errp);
    int (*bitmap_add)(void *h, const struct diskimg_bitmap *b, GError **errp);
    int (*bitmap_remove)(void *h, const char *name, GError **errp);
    int (*bitmap_set_enabled)(void *h, const char *name, bool enabled, GError **errp);
    /* Dirty state of the run starting at offset: *dirty and its length. */
    int (*bitmap_query)(void *h, const char *name, uint64_t offset, uint64_t len,
                        bool *dirty, uint64_t *run, GError **errp);
    int (*bitmap_set)(void *h, const char *name, uint64_t offset, uint64_t len,
                      bool dirty, GError **errp);

    /* Parallel compression (optional; both or neither).  `compress` turns
     * one cluster of guest data into the bytes the format stores for it,
     * without touching the image: the core calls it from several worker
     * threads at once, outside the node's lock.  It returns the stored
     * length, 0 when compressing does not pay (the core then writes the
     * cluster normally), or -1.  `write_precompressed` then stores such
     * bytes for the cluster at `offset` (guest_len = its guest length). */
    int64_t (*compress)(void *h, const void *buf, uint64_t len, void *out, uint64_t out_cap,
                        GError **errp);
    int (*write_precompressed)(void *h, const void *data, uint64_t len, uint64_t offset,
                               uint64_t guest_len, GError **errp);

    /* What this open image can do (nbdkit's can_*), asked once right after
     * open.  `defaults` holds the descriptor's capabilities, plus
     * DISKIMG_CAP_COMPRESSED and DISCARD when those callbacks exist; return
     * it with bits cleared (a fixed VHD is not ZERO_INIT, a streamOptimized
     * vmdk cannot take compressed rewrites) or with READ_ONLY added (an image
     * with features the plugin cannot write).  The core ignores bits added
     * beyond the defaults other than READ_ONLY, and enforces the result:
     * a READ_ONLY image cannot be opened read-write, and every writing
     * operation on it is refused.  NULL: the defaults. */
    uint64_t (*image_capabilities)(void *h, uint64_t defaults);

    /* Score 0..100 that a file is an image of this format, judged by its
     * LAST bytes: `buf` holds the final `len` bytes (len <= 512, fewer only
     * for smaller files) of a file of `file_size` bytes.  For formats whose
     * signature is a trailer (a fixed VHD's footer, a dmg's koly block).
     * Consulted only when no plugin's probe() claims the file's first bytes
     * and no known magic matches them, so a trailer never overrides a
     * header.  Pure, like probe().  May be NULL. */
    int (*probe_tail)(const uint8_t *buf, size_t len, uint64_t file_size,
                      const char *filename);
};

/* ======================================================================= io */

struct diskimg_io_open_args {
    uint32_t struct_size;
    diskimg_node *node;
    const char *filename;
    unsigned flags;            /* DISKIMG_OPEN_RDWR, _CREATE, _TRUNCATE, _FORCE_SHARE... */
    enum diskimg_cache cache;
    const diskimg_options *options; /* validated open-options of the io schema */
};

enum diskimg_io_op {
    DISKIMG_IO_READ = 1,
    DISKIMG_IO_WRITE,
    DISKIMG_IO_FLUSH,
    DISKIMG_IO_WRITE_ZEROES,
};
/* One request of the batch path. The caller owns it until reaped. */
struct diskimg_io_request {
    uint32_t op;               /* enum diskimg_io_op */
    unsigned flags;            /* DISKIMG_WRITE_* */
    void *buf;
    uint64_t len;
    uint64_t offset;
    int result;                /* on completion: 0, or -errno */
    void *user;                /* caller's cookie */
};

/* qemu's permission bits, used for its image-locking protocol. */
enum {
    DISKIMG_PERM_CONSISTENT_READ = 1u << 0,
    DISKIMG_PERM_WRITE           = 1u << 1,
    DISKIMG_PERM_WRITE_UNCHANGED = 1u << 2,
    DISKIMG_PERM_RESIZE          = 1u << 3,
    DISKIMG_PERM_GRAPH_MOD       = 1u << 4, /* historical; never locked */
    DISKIMG_PERM_ALL             = 0x1f,
};

struct diskimg_io_ops {
    uint32_t struct_size;      /* sizeof(struct diskimg_io_ops) */

    void *(*open)(const struct diskimg_io_open_args *args, GError **errp);
    void (*close)(void *h);

    /* Whole-length transfers: short reads past EOF return zeroes. */
    int (*pread)(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
    int (*pwrite)(void *h, const void *buf, uint64_t len, uint64_t offset,
                  unsigned flags, GError **errp);
    /* Batch path: queue n requests, then reap at least `min` completions
     * (up to `max`) into done[]; returns how many were reaped or -1. */
    int (*submit)(void *h, struct diskimg_io_request *const *reqs, unsigned n,
                  GError **errp);
    int (*reap)(void *h, struct diskimg_io_request **done, unsigned max, unsigned min,
                GError **errp);

    int (*flush)(void *h, GError **errp);
    int64_t (*get_size)(void *h, GError **errp);
    int64_t (*allocated_size)(void *h, GError **errp);
    int (*truncate)(void *h, uint64_t size, enum diskimg_prealloc prealloc,
                    unsigned flags, GError **errp);
    int (*allocate)(void *h, uint64_t offset, uint64_t len, GError **errp);
    int (*punch_hole)(void *h, uint64_t offset, uint64_t len, GError **errp);
    int (*write_zeroes)(void *h, uint64_t offset, uint64_t len, unsigned flags,
                        GError **errp);
    /* Data or hole at offset (SEEK_DATA/SEEK_HOLE); sets DATA or ZERO and
     * OFFSET_VALID with offset = the same offset. */
    int (*block_status)(void *h, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp);
    /* Server-side copy between two handles of this plugin; returns bytes
     * copied (may be short), 0 when not possible here, -1 on error. */
    int64_t (*copy_range)(void *src, uint64_t src_offset, void *dst, uint64_t dst_offset,
                          uint64_t len, GError **errp);
    /* Applies qemu's lock protocol: `perm` we use, `shared` we let others use. */
    int (*lock)(void *h, uint64_t perm, uint64_t shared, GError **errp);
    /* Required alignment of buffers, offsets and lengths (1 for buffered). */
    uint32_t (*alignment)(void *h);
    /* Removes a file (failed create cleanup); NULL: the core uses unlink(). */
    int (*remove)(const char *filename, GError **errp);
};

/* =================================================================== crypto */

struct diskimg_crypto_ops {
    uint32_t struct_size;      /* sizeof(struct diskimg_crypto_ops) */

    /* alg: "aes-128" "aes-192" "aes-256" "twofish-128"... "serpent-256"
     * "cast5-128"; mode: "ecb" "cbc" "xts" "ctr".  For xts the key holds
     * both halves. */
    void *(*cipher_new)(const char *alg, const char *mode, const uint8_t *key,
                        size_t key_len, GError **errp);
    void (*cipher_free)(void *cipher);
    /* In place; len a multiple of the block size; iv may be NULL for ecb. */
    int (*cipher_encrypt)(void *cipher, const uint8_t *iv, size_t iv_len,
                          uint8_t *buf, size_t len, GError **errp);
    int (*cipher_decrypt)(void *cipher, const uint8_t *iv, size_t iv_len,
                          uint8_t *buf, size_t len, GError **errp);
    /* alg: "sha1" "sha224" "sha256" "sha384" "sha512" "ripemd160" "md5". */
    int (*hash)(const char *alg, const void *data, size_t len, uint8_t *out,
                size_t out_len, GError **errp);
    int (*hmac)(const char *alg, const void *key, size_t key_len, const void *data,
                size_t len, uint8_t *out, size_t out_len, GError **errp);
    int (*pbkdf2)(const char *hash_alg, const void *pass, size_t pass_len,
                  const void *salt, size_t salt_len, uint64_t iterations,
                  uint8_t *out, size_t out_len, GError **errp);
    int (*random)(void *buf, size_t len, GError **errp);
    /* Appended later (a plugin without them cannot do incremental
     * hashing; the core says so).  An incremental hash of one of the
     * algorithms `hash` takes: update any number of times, then digest
     * (out_len 1 to the digest length) once; free releases it, digested
     * or not.  One context is used by one thread at a time. */
    void *(*hash_new)(const char *alg, GError **errp);
    int (*hash_update)(void *ctx, const void *data, size_t len, GError **errp);
    int (*hash_digest)(void *ctx, uint8_t *out, size_t out_len, GError **errp);
    void (*hash_free)(void *ctx);
};

#ifdef __cplusplus
}
#endif
#endif /* DISKIMG_PLUGIN_H */
