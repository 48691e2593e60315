/* SPDX-License-Identifier: MIT */
/*
 * qcow2.h — private declarations of the qcow2 format plugin.
 *
 * Files of the plugin, by concern:
 *   header.c    the one reader of the on-disk header and its extensions
 *               (every field validated), header field updates
 *   cluster.c   guest -> host mapping through L1/L2, L2 allocation
 *   refcount.c  refcount reads/updates, cluster allocation, table growth
 *   io.c        read, write (COW), zeroes, discard, compressed writes,
 *               block status
 *   create.c    image creation and size measurement
 *   check.c     consistency check and repair
 *   snapshot.c  internal snapshots: table, refcount walk, create/apply/delete
 *   encrypt.c   encrypted images: LUKS header (open/create), legacy AES,
 *               the data cipher, encryption info and measure
 *   bitmap.c    persistent dirty bitmaps: directory, tables, in-use protocol
 *   qcow2.c     open/close, info, flush, truncate, plugin descriptor
 *
 *   tail.c      when qcow2 lets the core's tail growth grow the host file
 *               ahead of allocation, and what it may take as zeroes
 *   entry.c     the callbacks of the descriptor: each takes the lock the
 *               rules below ask for, then calls the implementation
 *
 * Thread model: DISKIMG_THREAD_PARALLEL.  The core runs any callbacks of
 * one handle concurrently; the plugin locks:
 *
 *   - One metadata mutex per image (that of s->tracker, the core's request
 *     tracker, <diskimg/toolkit.h>) protects everything in struct qcow2
 *     that changes after open: L1, the L2 and refcount
 *     caches, the allocator, header, snapshot and bitmap state, the
 *     corrupt flag.  Every function of the plugin that takes a struct
 *     qcow2 expects the lock held unless it says otherwise; entry.c takes
 *     it.  Cache entries are pinned only while the lock is held.
 *
 *   - Data transfers and (de)compression run with the lock released.  A
 *     read maps one run of clusters under the lock, copies out what it
 *     needs (struct qcow2_run), and transfers, decompresses or decrypts it
 *     unlocked (the backing file too).  A write whose clusters are all
 *     allocated, owned (COPIED), uncompressed and need no metadata change
 *     does the same.  A write into fresh clusters (no storage to free)
 *     allocates them under the lock and writes its data unlocked:
 *       . when the new host clusters are known zeroes (tail.c) and the
 *         guest saw zeroes there, the L2 entries are set at once (they
 *         expose only what the guest saw) and the data write is a plain
 *         overwrite;
 *       . otherwise the allocation is claimed (struct diskimg_claim), the
 *         data and any zero fill are written, and the entries set after;
 *         every path that changes L2 entries waits first for the claims
 *         it overlaps (qcow2_alloc_wait), so two requests can never both
 *         allocate one cluster.
 *     Every other write (COW of data, zero clusters, discard, compressed
 *     stores) keeps the lock for the whole operation.  Compression runs
 *     before the lock is taken.  Ordering on disk is unchanged: refcount
 *     blocks are written before the L2 tables that need them (cache
 *     dependency), and an L2 entry never exposes a cluster whose bytes
 *     are not what the guest should see there.
 *
 *   - An unlocked transfer is counted by the tracker (io_begin/io_end).
 *     Invariant: a host cluster an unlocked transfer targets keeps its
 *     refcount until the transfer ends, so it is never reused under the
 *     transfer's feet (a stale read would return another cluster's data, a
 *     stale write would corrupt it).  Writes that free data clusters first
 *     drop the mapping, then wait for in-flight transfers to end
 *     (diskimg_tracker_drain_for_free) before dropping the refcounts;
 *     while anyone waits, no new transfer starts, so waits are short.  The rare
 *     operations (truncate, snapshots, bitmaps, amend, check, make_empty,
 *     set_backing) run exclusive: lock held and nothing in flight.
 *
 *   - A read racing a write of the same range sees old or new data, as on
 *     a disk, but never another cluster's data or a torn mapping.  Flush
 *     takes the lock, so metadata of a write is either before or after it;
 *     data of writes completed before the flush was called is covered.
 *
 *   - Decompression buffers are per thread (io.c); the last decompressed
 *     cluster is kept there, tagged with s->cgen, a generation bumped
 *     whenever a compressed cluster may have been freed.  Ciphers are
 *     stateless after key setup (core/crypto.c works on a copy of the IV,
 *     nettle contexts are read-only), so requests encrypt concurrently, each
 *     in its own buffer.
  */
#ifndef QCOW2_PRIVATE_H
#define QCOW2_PRIVATE_H

#include <diskimg/crypto.h>
#include <diskimg/guard.h>
#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

#define QCOW2_MAGIC 0x514649fbu          /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_HEADER_LEN 104u
#define QCOW2_HEADER_LEN_DEFAULT 112u    /* v3 with compression type + padding */

#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u
#define QCOW2_MAX_L1_BYTES (32u << 20)   /* qemu's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_SNAPSHOTS 65536u
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024u
#define QCOW2_MAX_BITMAPS 65535u
#define QCOW2_MAX_BITMAP_DIR (64u << 20)

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY     (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT   (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESS  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2     (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN     0x1full
/* compatible_features */
#define QCOW2_COMPAT_LAZY        (1ull << 0)
/* autoclear_features */
#define QCOW2_AUTOCLEAR_BITMAPS  (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_RAW (1ull << 1)

/* header extension types */
#define QCOW2_EXT_END           0x00000000u
#define QCOW2_EXT_BACKING_FMT   0xe2792acau
#define QCOW2_EXT_FEATURES      0x6803f857u
#define QCOW2_EXT_BITMAPS       0x23852875u
#define QCOW2_EXT_CRYPTO        0x0537be77u
#define QCOW2_EXT_DATA_FILE     0x44415441u

/* header field offsets */
#define QH_INCOMPAT   72u
#define QH_REFTABLE   48u
#define QH_L1         36u

/* L1/L2/refcount table entry bits */
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_OFFSET_MASK      UINT64_C(0x00fffffffffffe00)
#define QCOW2_L1_RESERVED      0x7f000000000001ffull
#define QCOW2_L2_RESERVED      0x3f000000000001feull
#define QCOW2_REFT_RESERVED    0x1ffull
#define QCOW2_SUBCLUSTERS      32u

/* crypt_method */
#define QCOW2_CRYPT_NONE 0u
#define QCOW2_CRYPT_AES  1u
#define QCOW2_CRYPT_LUKS 2u
/* Encrypted images encrypt whole sectors of this size. */
#define QCOW2_CRYPT_SECTOR 512u

#define QCOW2_COMPRESSION_ZLIB 0u
#define QCOW2_COMPRESSION_ZSTD 1u

/* How a guest (sub)cluster is stored. */
enum qcow2_ctype {
    QC_UNALLOC = 0,     /* falls through to the backing file */
    QC_UNALLOC_ALLOC,   /* ext L2: unallocated subcluster of an allocated cluster */
    QC_ZERO_PLAIN,      /* reads as zeroes, no host cluster */
    QC_ZERO_ALLOC,      /* reads as zeroes, host cluster preallocated */
    QC_NORMAL,          /* data at a host offset */
    QC_COMPRESSED,      /* compressed descriptor */
};

struct qcow2;

struct qcow2_snapshot {
    uint64_t l1_offset;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;
    bool has_icount;
    uint32_t extra_size;    /* as stored */
    uint8_t *extra;         /* extra data beyond the known fields, kept */
    uint32_t extra_unknown;
};

/* A persistent dirty bitmap.  table_offset/table_size/flags describe what
 * the directory on disk says (table_offset 0: added, not stored yet); the
 * other fields are the live state (see bitmap.c). */
struct qcow2_bitmap {
    uint64_t table_offset;
    uint32_t table_size;
    uint32_t flags;         /* QCOW2_BME_* as in the directory on disk */
    uint8_t type, granularity_bits;
    char *name;
    bool enabled;           /* "auto": guest writes set bits */
    bool inconsistent;      /* was in use at open: contents unusable */
    bool changed;           /* bits differ from the stored table */
    uint8_t *bits;          /* loaded contents, bit i = chunk i (LSB first); NULL: not loaded */
    uint64_t nbits;         /* chunks `bits` covers */
};
#define QCOW2_BME_IN_USE   (1u << 0)
#define QCOW2_BME_AUTO     (1u << 1)
#define QCOW2_BME_RESERVED 0xfffffffcu
#define QCOW2_BME_TABLE_RESERVED 0xff000000000001feull
#define QCOW2_BME_ALL_ONES 1ull
#define QCOW2_BME_MAX_TABLE 0x8000000u        /* entries */
#define QCOW2_BME_MAX_PHYS (512u << 20)       /* bytes of one bitmap */
#define QCOW2_BME_MAX_NAME 1023u
#define QCOW2_BITMAP_MEM_BUDGET (1ull << 30)  /* loaded bitmaps of one image */

/* An unknown header extension, kept for header rewrites. */
struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
};

/* The parsed and validated header. */
struct qcow2_header {
    uint32_t version;
    uint64_t backing_offset;
    uint32_t backing_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompat, compat, autoclear;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;

    char *backing_file;       /* NULL: none */
    char *backing_fmt;        /* NULL: not recorded */
    char *data_file;          /* external data file name, NULL: none */
    uint64_t crypto_offset, crypto_length;
    bool has_crypto_ext;
    uint32_t nb_bitmaps;
    uint64_t bitmap_dir_size, bitmap_dir_offset;
    bool has_bitmaps_ext;
    GPtrArray *unknown_ext;   /* struct qcow2_ext *, kept on rewrite */
    uint64_t ext_end;         /* end of the extension area */
};

struct qcow2 {
    diskimg_node *node;       /* our format node (NULL during create) */
    diskimg_node *file;       /* metadata (and data, without data file) */
    diskimg_node *data;       /* where guest data lives */
    char *filename;
    bool writable;
    bool corrupt;             /* corruption seen: no more writes */
    struct qcow2_header h;

    uint64_t cluster_size;
    uint32_t cluster_bits;
    uint32_t l2e_size;        /* 8, or 16 with extended L2 entries */
    uint64_t l2_entries;      /* entries per L2 table */
    uint32_t l2_bits;
    uint64_t subcluster_size;
    bool ext_l2, ext_data, data_raw;
    uint32_t csize_shift;     /* compressed descriptor field split */
    uint64_t csize_mask, coffset_mask;

    uint64_t *l1;             /* active L1 table, host order */
    uint32_t l1_size;
    uint64_t l1_offset;

    uint64_t *reftable;       /* host order */
    uint64_t reftable_size;   /* entries */
    uint64_t reftable_used;   /* entries up to the last nonzero one, what the overlap
                               * guard scans (qemu's max_refcount_table_index): kept by
                               * take_reftable and install_block, the only writers */
    uint32_t refcount_bits;
    uint64_t refcount_max;
    uint64_t rb_entries;      /* refcounts per block */
    uint32_t rb_bits;

    /* metadata caches (<diskimg/toolkit.h>); l2c depends on rbc */
    diskimg_mcache *l2c, *rbc;
    uint64_t l2_cache_bytes, refcount_cache_bytes; /* their budgets (open-options) */
    uint64_t free_cluster_index;
    uint64_t end_cluster;     /* no cluster at or beyond this one is in use */
    uint64_t free_byte_offset;   /* compressed allocation cursor, 0 = none */

    struct qcow2_snapshot *snapshots;
    uint32_t nb_snapshots;
    uint64_t snapshots_size;  /* bytes of the snapshot table on disk */
    bool snapshot_loaded;     /* a snapshot's L1 replaced the active one (read-only) */
    bool check_open;          /* opened for check: the snapshot table is read as
                               * qemu's check reads it (header.c) */
    uint32_t snap_repairs;    /* snapshot table damage the open worked around in
                               * repair mode; check rewrites the table */
    bool crypto_cut;          /* check -r: the guard protects only the first
                               * crypto_cut_length bytes of the crypto header
                               * (the rest lies beyond the end of the file) */
    uint64_t crypto_cut_length;
    struct qcow2_bitmap *bitmaps;
    uint32_t nb_bitmaps;
    bool bm_marked;           /* consistent bitmaps are flagged in use on disk */
    bool bm_need_store;       /* flush/close must store bitmaps */
    uint64_t bm_mem;          /* bytes of loaded bitmap contents */

    /* locking, see the top of this file: lock, transfers in flight,
     * drains and claims of allocating writes (<diskimg/toolkit.h>) */
    diskimg_tracker *tracker;
    uint64_t id;              /* unique per open: tags per-thread caches */
    uint64_t cgen;            /* bumped when compressed clusters may be freed */

    bool prealloc_checked, prealloc_meta;

    /* growth of the host file ahead of allocation, known zeroes (tail.c) */
    diskimg_tail *tail;

    /* encryption (h.crypt_method != 0), see encrypt.c */
    diskimg_luks *luks;       /* LUKS: the parsed header, unlocked unless opened NO_IO */
    diskimg_sector_cipher *aes;  /* legacy AES: the data cipher, NULL when opened NO_IO */

    /* the metadata-write guard (overlap.c); NULL: no checks (create) */
    diskimg_guard *guard;
    struct qcow2_guard_sig *guard_sig;
};

/* ------------------------------------------------------------- helpers */

static inline uint64_t qcow2_offset_into_cluster(const struct qcow2 *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}
/* Whether a snapshot's L1 table can be one at all: cluster aligned and not
 * larger than qemu's maximum.  Only a check open keeps a snapshot whose L1
 * is not (header.c); check reports and skips it, nothing reads it, and the
 * overlap guard must not protect what it names (an l1_size of 2^30 from
 * offset 0 would make every metadata write "overlap"). */
static inline bool qcow2_snapshot_l1_sane(const struct qcow2 *s, uint64_t l1_offset,
                                          uint32_t l1_size)
{
    return !qcow2_offset_into_cluster(s, l1_offset) && l1_size <= QCOW2_MAX_L1_BYTES / 8;
}
static inline uint64_t qcow2_align_down(const struct qcow2 *s, uint64_t off)
{
    return off & ~(s->cluster_size - 1);
}
static inline uint64_t qcow2_size_to_clusters(const struct qcow2 *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}

/* Sets a DISKIMG_ERROR_CORRUPT error; on a writable image also marks it
 * corrupt on disk (qemu's qcow2_signal_corruption) and blocks writes. */
int qcow2_corrupt(struct qcow2 *s, GError **errp, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
int qcow2_enomem(GError **errp);
/* Reads [off, off+len) of the image file; what lies at or beyond
 * file_size reads as zeroes (as qemu reads past the end of a file). */
int qcow2_pread_padded(struct qcow2 *s, void *buf, uint64_t len, uint64_t off,
                       uint64_t file_size, GError **errp);

/* Locking is the core's request tracker (diskimg_tracker_*, <diskimg/toolkit.h>,
 * s->tracker): the metadata lock, unlocked transfers (io_admit/begin/end),
 * drains (drain_for_free; lock_exclusive in entry.c) and claims on the
 * guest clusters of allocating writes whose data is written unlocked.
 * Claims cover whole clusters: a request that would change the L2 entries
 * of guest [off, off+len) waits for the claims on its clusters. */
/* When a claim overlaps the clusters of guest [off, off+len), waits until
 * one is released (lock released meanwhile) and returns true: what the
 * caller looked up may have changed. */
static inline bool qcow2_alloc_wait(struct qcow2 *s, uint64_t off, uint64_t len)
{
    return diskimg_tracker_wait_claim(s->tracker, qcow2_align_down(s, off), off + len);
}
/* Waits until none overlaps. */
static inline void qcow2_alloc_wait_all(struct qcow2 *s, uint64_t off, uint64_t len)
{
    diskimg_tracker_wait_unclaimed(s->tracker, qcow2_align_down(s, off), off + len);
}

/* header.c */
/* Parses and validates the header in buf (the first cluster of the file,
 * `len` bytes of it available; `file_size` is the host file size). */
int qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len,
                       uint64_t file_size, GError **errp);
void qcow2_header_clear(struct qcow2_header *h);
/* Serialises h (with its extensions and backing name) into a zeroed
 * buffer of `len` bytes; fails when it does not fit. */
int qcow2_header_build(const struct qcow2_header *h, uint8_t *buf, size_t len, GError **errp);
/* Rewrites the whole header cluster of an open image from s->h. */
int qcow2_header_write(struct qcow2 *s, GError **errp);
/* Updates only the incompatible features field. */
int qcow2_header_set_incompat(struct qcow2 *s, uint64_t bits, GError **errp);
/* Writes the bitmaps header extension fields of s->h (whole header
 * cluster rewrite) and makes it durable. */
int qcow2_header_update(struct qcow2 *s, GError **errp);
/* Loads the snapshot table and the bitmap directory (validated). */
int qcow2_snapshots_load(struct qcow2 *s, GError **errp);
int qcow2_bitmaps_load(struct qcow2 *s, GError **errp);

/* The metadata caches are the core's (diskimg_mcache_*, <diskimg/toolkit.h>,
 * set up in qcow2.c): s->l2c for L2 tables, s->rbc for refcount blocks. */

/* refcount.c */
int qcow2_refcount_init(struct qcow2 *s, GError **errp);
int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc, GError **errp);
/* qemu's refcount area for preallocated growth (refcount.c): 1 when a new
 * refcount block would be needed and nothing was done. */
int qcow2_refcount_area(struct qcow2 *s, uint64_t start, uint64_t extra, uint64_t *area_end,
                        GError **errp);
int qcow2_alloc_clusters_at(struct qcow2 *s, uint64_t first, uint64_t n, GError **errp);
/* Adds `delta` (+1/-1 etc.) to the refcount of every cluster touched by
 * [off, off+len). */
int qcow2_update_refcount(struct qcow2 *s, uint64_t off, uint64_t len, int64_t delta,
                          GError **errp);
/* Sets the refcount of `cluster` to rc (at most refcount_max): what check's
 * repair writes, where a difference may not fit a delta (64-bit refcounts). */
int qcow2_set_refcount(struct qcow2 *s, uint64_t cluster, uint64_t rc, GError **errp);
/* Allocates n contiguous clusters (refcount 1); returns the host offset. */
int qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, uint64_t *off, GError **errp);
/* Allocates `size` bytes for compressed data (may share clusters). */
int qcow2_alloc_bytes(struct qcow2 *s, uint64_t size, uint64_t *off, GError **errp);
/* Drops one reference of whatever an L2 entry points at. */
int qcow2_free_entry(struct qcow2 *s, uint64_t l2e, GError **errp);
/* Punches holes where clusters have refcount 0, after making the metadata
 * durable (make_empty). */
int qcow2_punch_free_clusters(struct qcow2 *s, GError **errp);
uint64_t qcow2_rb_get(const struct qcow2 *s, const uint8_t *block, uint64_t idx);
void qcow2_rb_set(const struct qcow2 *s, uint8_t *block, uint64_t idx, uint64_t v);
/* check's rebuild: writes a refcount structure holding ref[0, nref)
 * (counts per cluster, references only) in fresh clusters from `start` on
 * (at or after the end of everything in use), then switches the header to
 * it.  Refuses, writing nothing, when a count does not fit the width. */
/* Clusters a rebuilt refcount structure at cluster `start` takes. */
uint64_t qcow2_rebuild_clusters(const struct qcow2 *s, const uint32_t *ref, uint64_t nref,
                                uint64_t start);
int qcow2_rebuild_refcounts(struct qcow2 *s, const uint32_t *ref, uint64_t nref,
                            uint64_t start, GError **errp);
/* Host clusters the file spans (for allocation scans and check). */
int qcow2_file_clusters(struct qcow2 *s, uint64_t *n, GError **errp);

/* tail.c */
/* Host clusters [host, host+len) were just allocated; old_end is where
 * the clusters in use ended before (s->end_cluster, in bytes).  Grows the
 * file ahead when they reach past its end; true when they are known to
 * read as zeroes (nothing was ever written there). */
bool qcow2_tail_reserve(struct qcow2 *s, uint64_t host, uint64_t len, uint64_t old_end);
/* Cuts what growing added beyond the clusters in use (close, before
 * exclusive operations). */
int qcow2_tail_trim(struct qcow2 *s, GError **errp);

/* cluster.c */
int qcow2_l1_load(struct qcow2 *s, GError **errp);
/* Reads the L2 entry (and bitmap) of a guest cluster; 0 when no L2. */
int qcow2_get_l2e(struct qcow2 *s, uint64_t guest, uint64_t *l2e, uint64_t *bitmap,
                  GError **errp);
struct qcow2_run {
    enum qcow2_ctype type;
    uint64_t host;          /* host offset of the first byte (NORMAL, ZERO_ALLOC) */
    uint64_t len;           /* bytes of the run */
    uint64_t l2e;           /* the entry of the first cluster (COMPRESSED) */
};
/* The run of same-typed (and host-contiguous) storage at guest `off`,
 * at most `len` bytes, within one L2 table. */
int qcow2_map_run(struct qcow2 *s, uint64_t off, uint64_t len, struct qcow2_run *r,
                  GError **errp);
/* Pins the L2 table for guest cluster `guest` (allocating/copying it when
 * `alloc`); *l2 NULL without alloc when there is none. */
int qcow2_l2_table(struct qcow2 *s, uint64_t guest, bool alloc, uint8_t **l2, uint64_t *idx,
                   GError **errp);
uint64_t qcow2_l2_entry(const struct qcow2 *s, const uint8_t *l2, uint64_t idx);
uint64_t qcow2_l2_bitmap(const struct qcow2 *s, const uint8_t *l2, uint64_t idx);
void qcow2_l2_set(const struct qcow2 *s, uint8_t *l2, uint64_t idx, uint64_t e, uint64_t bm);
int qcow2_l1_write_entry(struct qcow2 *s, uint32_t idx, GError **errp);
enum qcow2_ctype qcow2_entry_type(const struct qcow2 *s, uint64_t l2e, uint64_t bitmap,
                                  unsigned sub);
/* Grows the active L1 table to at least min_size entries. */
int qcow2_grow_l1(struct qcow2 *s, uint64_t min_size, GError **errp);
/* Compressed descriptor: host offset and byte count to read. */
void qcow2_compressed_span(const struct qcow2 *s, uint64_t l2e, uint64_t *off, uint64_t *len);

/* io.c */
/* qcow2_read/qcow2_write keep the lock for the whole request (internal
 * users, tests); the _unlocking variants, used by the callbacks, release
 * it around data transfers (lock held on entry and on return). */
int qcow2_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int qcow2_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                GError **errp);
int qcow2_read_unlocking(struct qcow2 *s, void *buf, uint64_t len, uint64_t offset,
                         GError **errp);
int qcow2_write_unlocking(struct qcow2 *s, const void *buf, uint64_t len, uint64_t offset,
                          unsigned flags, GError **errp);
/* Compresses with the lock released, stores with it held. */
int qcow2_write_compressed_unlocking(struct qcow2 *s, const void *buf, uint64_t len,
                                     uint64_t offset, GError **errp);
int qcow2_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int64_t qcow2_compress(void *h, const void *buf, uint64_t len, void *out, uint64_t out_cap,
                       GError **errp);
int qcow2_write_precompressed(void *h, const void *data, uint64_t len, uint64_t offset,
                              uint64_t guest_len, GError **errp);
int qcow2_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                           GError **errp);
int qcow2_discard(void *h, uint64_t offset, uint64_t len, GError **errp);
int qcow2_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                       GError **errp);
/* Deallocates guest clusters [off, off+len) (whole clusters): zero flag
 * when `zero`, else unallocated. */
int qcow2_zero_clusters(struct qcow2 *s, uint64_t off, uint64_t len, bool zero, bool unmap,
                        GError **errp);

/* create.c */
int qcow2_create(const struct diskimg_format_create_args *args, GError **errp);
int qcow2_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                  GError **errp);
uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      uint32_t refcount_order, bool generous,
                                      uint64_t *refblocks);
/* Preallocates guest [0, size): L2 tables (and data clusters with falloc/full).
 * `zero`: the clusters get the zero flag (encrypted images, whose host
 * bytes would decrypt to garbage; needs v3). */
int qcow2_preallocate(struct qcow2 *s, uint64_t from, uint64_t size,
                      enum diskimg_prealloc mode, bool zero, GError **errp);

/* snapshot.c */
#define QCOW2_SNAPSHOT_EXTRA_LEN 24u              /* extra data qemu writes */
#define QCOW2_MAX_SNAPSHOT_TABLE (64u << 20)      /* qemu's QCOW_MAX_SNAPSHOTS_SIZE */
int qcow2_snapshot_list(void *h, diskimg_snapshot_list *out, GError **errp);
/* check -r: forgets a snapshot table that is no table (it lies in the
 * header cluster): the header then names no snapshots. */
int qcow2_snapshot_table_drop(struct qcow2 *s, GError **errp);
/* Removes snapshot i from the list in memory only (check -r writes the
 * table afterwards); what it referenced is left to the refcount repair. */
void qcow2_snapshot_forget(struct qcow2 *s, uint32_t i);
int qcow2_snapshot_table_repair(struct qcow2 *s, uint64_t first_free, bool free_old,
                                GError **errp);
int qcow2_snapshot_create(void *h, const struct diskimg_snapshot *sn, GError **errp);
int qcow2_snapshot_apply(void *h, const char *id_or_name, GError **errp);
int qcow2_snapshot_delete(void *h, const char *id_or_name, GError **errp);
int qcow2_snapshot_load(void *h, const char *id, const char *name, GError **errp);
void qcow2_snapshots_free(struct qcow2 *s);
/* Durability point: metadata caches written, file flushed. */
int qcow2_sync(struct qcow2 *s, GError **errp);

/* bitmap.c */
int qcow2_bitmap_list(void *h, diskimg_bitmap_list *out, GError **errp);
int qcow2_bitmap_add(void *h, const struct diskimg_bitmap *b, GError **errp);
int qcow2_bitmap_remove(void *h, const char *name, GError **errp);
int qcow2_bitmap_set_enabled(void *h, const char *name, bool enabled, GError **errp);
int qcow2_bitmap_query(void *h, const char *name, uint64_t offset, uint64_t len, bool *dirty,
                       uint64_t *run, GError **errp);
int qcow2_bitmap_set(void *h, const char *name, uint64_t offset, uint64_t len, bool dirty,
                     GError **errp);
/* Validates the loaded directory against the image (qemu's constraints). */
int qcow2_bitmaps_validate(struct qcow2 *s, GError **errp);
/* check -r: bitmap i's table lies wholly beyond the end of the file, where
 * it reads as zeroes; gives it a table of zeroes (every chunk clean, as
 * read) allocated from cluster first_free on, named by its directory
 * entry. */
int qcow2_bitmap_replace_lost_table(struct qcow2 *s, uint32_t i, uint64_t first_free,
                                    GError **errp);
/* Guest write of [off, off+len): sets the bits of every enabled bitmap. */
int qcow2_bitmaps_mark(struct qcow2 *s, uint64_t off, uint64_t len, GError **errp);
/* Writes changed bitmaps and the directory, clearing the in-use flags. */
int qcow2_bitmaps_store(struct qcow2 *s, GError **errp);
/* Refuses (as qemu) or prepares a change of the virtual size; call
 * qcow2_bitmaps_resize after the size changed. */
int qcow2_bitmaps_resize_check(struct qcow2 *s, uint64_t new_size, GError **errp);
int qcow2_bitmaps_resize(struct qcow2 *s, GError **errp);
/* measure: space a copy of src's bitmaps needs with `cluster_size`. */
uint64_t qcow2_bitmaps_measure(diskimg_node *src, uint64_t cluster_size);
void qcow2_bitmaps_free(struct qcow2 *s);

/* overlap.c: qemu's metadata overlap check, on the core's guard.  Kinds
 * (one bit each) name what a write may touch; every other is checked. */
#define QCOW2_OL_HEADER            (1u << 0)
#define QCOW2_OL_ACTIVE_L1         (1u << 1)
#define QCOW2_OL_ACTIVE_L2         (1u << 2)
#define QCOW2_OL_REFCOUNT_TABLE    (1u << 3)
#define QCOW2_OL_REFCOUNT_BLOCK    (1u << 4)
#define QCOW2_OL_SNAPSHOT_TABLE    (1u << 5)
#define QCOW2_OL_INACTIVE_L1       (1u << 6)
#define QCOW2_OL_INACTIVE_L2       (1u << 7)   /* never checked (qemu's default) */
#define QCOW2_OL_BITMAP_DIRECTORY  (1u << 8)
#define QCOW2_OL_BITMAP_TABLE      (1u << 9)
#define QCOW2_OL_CRYPTO_HEADER     (1u << 10)
struct qcow2_guard_sig;
void qcow2_guard_init(struct qcow2 *s);
void qcow2_guard_free(struct qcow2 *s);
/* The name of the structure (other than `allowed` kinds) that the host
 * clusters of [off, off+len) hold, NULL when none. */
const char *qcow2_guard_find(struct qcow2 *s, uint32_t allowed, uint64_t off, uint64_t len);
/* qcow2_guard_find, and on a hit: refuses the write and marks the image
 * corrupt ("Preventing invalid write on metadata (overlaps with ...)"). */
int qcow2_guard_check_write(struct qcow2 *s, uint64_t off, uint64_t len, uint32_t allowed,
                            GError **errp);

/* check.c */
int qcow2_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp);

/* amend.c */
int qcow2_amend(void *h, const diskimg_options *o, bool force, GError **errp);

/* encrypt.c */
/* Validates the encryption create options; *method: QCOW2_CRYPT_*. */
int qcow2_crypto_parse_create(const diskimg_options *o, uint32_t *method, GError **errp);
/* Open: parses (LUKS) and, unless DISKIMG_OPEN_NO_IO, unlocks with the
 * password of the encrypt.key-secret open option. */
int qcow2_crypto_open(struct qcow2 *s, const diskimg_options *o, unsigned flags,
                      GError **errp);
void qcow2_crypto_close(struct qcow2 *s);
/* Encrypts/decrypts whole sectors in place: LUKS derives the IVs from the
 * host offset in the data file, AES from the guest offset. */
int qcow2_crypt(struct qcow2 *s, bool encrypt, uint64_t host, uint64_t guest, void *buf,
                uint64_t len, GError **errp);
void qcow2_crypto_info(const struct qcow2 *s, diskimg_obj *specific);
/* Create: sets up encryption `method` on the new image open in s (a LUKS
 * header in fresh clusters), then rewrites the header. */
int qcow2_crypto_create(struct qcow2 *s, const diskimg_options *o, uint32_t method,
                        GError **errp);
/* Measure: bytes the encryption header adds (cluster-rounded). */
int qcow2_crypto_measure(const diskimg_options *o, uint64_t cluster_size, uint64_t *bytes,
                         GError **errp);

/* qcow2.c */
int qcow2_probe(const uint8_t *buf, size_t len, const char *filename);
int64_t qcow2_get_size(void *h, GError **errp);
int qcow2_get_backing(void *h, struct diskimg_backing_ref *ref);
int qcow2_flush(void *h, GError **errp);
int qcow2_set_backing(void *h, const char *filename, const char *format, GError **errp);
int qcow2_make_empty(void *h, GError **errp);
int qcow2_resize(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                 GError **errp);
int qcow2_flush_metadata(struct qcow2 *s, GError **errp);
int qcow2_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
               GError **errp);
/* options: the open-options (encrypt.key-secret, encrypt.format), may be NULL. */
void *qcow2_open_file(diskimg_node *node, diskimg_node *file, const char *filename,
                      unsigned flags, const diskimg_options *options, GError **errp);
void qcow2_close(void *h);

/* entry.c */
extern const struct diskimg_format_ops qcow2_ops;

/* ---- refcount-order.c (refcount width change; appended block) ---- */
/* Rewrites the refcount structures of an open, writable v3 image with
 * 2^order-bit entries (0 <= order <= 6) and switches to them with one
 * header update; refuses, changing nothing, when a refcount does not fit.
 * The caller needs exclusive use of the image (amend). */
int qcow2_change_refcount_order(struct qcow2 *s, uint32_t order, GError **errp);
/* ---- end refcount-order.c ---- */

#endif
