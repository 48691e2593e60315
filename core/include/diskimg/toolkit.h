/* SPDX-License-Identifier: MIT */
/*
 * toolkit.h — building blocks for format plugins, in the core so that
 * each format does not write (and get wrong) its own:
 *
 *   - a bounded reader for on-disk structures and checked table loads
 *     (core/reader.c);
 *   - a metadata cache with a fixed memory budget, dirty tracking and
 *     write-back ordering between caches (core/mcache.c);
 *   - a tracker of an image's metadata lock, of the data transfers that
 *     run without it, drains, and claims on ranges being allocated
 *     (core/tracker.c);
 *   - growth of the host file ahead of allocation, with a known-zero tail
 *     (core/tailgrow.c);
 *   - CRC-32C (core/crc32c.c);
 *   - a flat block map: one 32-bit entry per guest block, held in memory
 *     (core/blockmap.c);
 *   - the second-level tables of an L1 -> L2 cluster map, through the
 *     metadata cache (core/table2.c);
 *   - what a copy would allocate, in whole blocks, for measure
 *     (core/measure.c).
 *
 * Each piece is documented below and in docs/plugin-guide.md §14.  Most
 * started out inside the qcow2 plugin; the block map in vdi (shared with
 * parallels), the second-level tables in qed (shared with qcow).
 */
#ifndef DISKIMG_TOOLKIT_H
#define DISKIMG_TOOLKIT_H

#include <diskimg/diskimg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------- bounded reader */

/*
 * A read-only view of bytes read from an image (a header, a directory, a
 * table).  Every field read is checked against the view's length, so a
 * parser can never read past what was read from the file; multi-byte
 * fields are decoded in the view's byte order.  A failed read sets a
 * DISKIMG_ERROR_CORRUPT error naming the file (when known), the structure
 * and the field:
 *   "x.img: vhdx region table: field 'entry_count' (4 bytes at offset 8)
 *    lies beyond its 16 bytes"
 *
 * Build one with diskimg_reader_make(); the struct is the plugin's (on its
 * stack), the core only reads it, and only up to its struct_size.
 */
enum diskimg_byte_order {
    DISKIMG_BIG_ENDIAN = 0,
    DISKIMG_LITTLE_ENDIAN = 1,
};

struct diskimg_reader {
    size_t struct_size;            /* sizeof(struct diskimg_reader), as compiled */
    const uint8_t *data;
    size_t len;
    enum diskimg_byte_order order;
    const char *filename;          /* named in errors; NULL where the core adds it (open) */
    const char *what;              /* the structure, named in errors ("qcow2 header") */
};

static inline struct diskimg_reader diskimg_reader_make(const void *data, size_t len,
                                                        enum diskimg_byte_order order,
                                                        const char *filename,
                                                        const char *what)
{
    struct diskimg_reader r = { sizeof(struct diskimg_reader), (const uint8_t *)data, len,
                                order, filename, what };
    return r;
}

/* True when [off, off + n) lies within the view (overflow-safe). */
DISKIMG_API bool diskimg_reader_has(const struct diskimg_reader *r, uint64_t off, uint64_t n);

/* Reads the field `field` of 1, 2, 4 or 8 bytes at `off`: 0, or -1 with
 * *errp set (errp may be NULL, for callers with their own message) and *v
 * zeroed. */
DISKIMG_API int diskimg_read_u8(const struct diskimg_reader *r, uint64_t off,
                                const char *field, uint8_t *v, GError **errp);
DISKIMG_API int diskimg_read_u16(const struct diskimg_reader *r, uint64_t off,
                                 const char *field, uint16_t *v, GError **errp);
DISKIMG_API int diskimg_read_u32(const struct diskimg_reader *r, uint64_t off,
                                 const char *field, uint32_t *v, GError **errp);
DISKIMG_API int diskimg_read_u64(const struct diskimg_reader *r, uint64_t off,
                                 const char *field, uint64_t *v, GError **errp);

/* The n bytes of `field` at `off`: a pointer into the view, or NULL with
 * *errp set. */
DISKIMG_API const uint8_t *diskimg_read_bytes(const struct diskimg_reader *r, uint64_t off,
                                              uint64_t n, const char *field, GError **errp);

/* A NUL-terminated copy (g_free) of the n bytes of `field` at `off`, or
 * NULL with *errp set.  The bytes may hold a NUL: compare strlen() with n
 * where the format forbids one. */
DISKIMG_API char *diskimg_read_string(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                                      const char *field, GError **errp);

/* A view of the n bytes at `off` (same file and byte order), named `what`;
 * -1 with *errp set when they lie outside r. */
DISKIMG_API int diskimg_reader_sub(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                                   const char *what, struct diskimg_reader *out,
                                   GError **errp);

/*
 * Loads a table of `count` entries of `entry_size` bytes at `offset` of
 * `file` into a new buffer (g_free; never NULL on success, even for
 * count 0).  Before anything is allocated, the size is checked against
 * the caller's cap `max_bytes` and offset + size against the file size;
 * failures are DISKIMG_ERROR_CORRUPT errors naming the file and `what`:
 *   "x.img: L1 table (4096 entries of 8 bytes at offset 0x30000) lies
 *    beyond the end of the file (196608 bytes)"
 * and an allocation failure is DISKIMG_ERROR_NO_MEMORY.
 */
DISKIMG_API int diskimg_load_table(diskimg_node *file, uint64_t offset, uint64_t count,
                                   uint32_t entry_size, uint64_t max_bytes, const char *what,
                                   void **table, GError **errp);

/* The same for a table of 64-bit entries stored in `order`, converted to
 * host order; the array has room for max(count, capacity, 1) entries,
 * those beyond count zeroed (a table about to grow). */
DISKIMG_API int diskimg_load_u64_table(diskimg_node *file, uint64_t offset, uint64_t count,
                                       uint64_t capacity, enum diskimg_byte_order order,
                                       uint64_t max_bytes, const char *what,
                                       uint64_t **table, GError **errp);

/* A name stored in an image (a backing file, an external data file): the
 * `size` bytes at `offset` of `file`, bounded by `max_bytes` and the file
 * as diskimg_load_table is, up to the first NUL.  *name (g_free) is NULL
 * when the name is empty.  It is untrusted: open it only through the
 * trust policy (plugin-guide §3). */
DISKIMG_API int diskimg_load_name(diskimg_node *file, uint64_t offset, uint64_t size,
                                  uint64_t max_bytes, const char *what, char **name,
                                  GError **errp);

/* ---------------------------------------------------------- metadata cache */

/*
 * A bounded LRU cache of fixed-size metadata blocks of one file (L2
 * tables, refcount blocks, grain tables).  Memory is fixed when the cache
 * is made: `budget` bytes rounded down to whole entries, at least 2 and at
 * most 4096 entries.  An entry is pinned from get to put; changed entries
 * are marked dirty and written back on eviction, flush and empty.
 *
 * Ordering: with diskimg_mcache_set_dependency(c, first), every write-back
 * of c first writes back `first` *and flushes the file* (even when `first`
 * had nothing to write), so that what c's entries point at -- `first`'s
 * entries and any data written before -- is durable before they are
 * (qcow2: refcount blocks and guest clusters before L2 tables).  Each
 * flush that wrote something flushes the file.
 *
 * Offsets are file offsets, multiples of entry_size and never 0 (every
 * format's header lives there): others are refused as corruption.
 *
 * Not thread-safe: call it under the format's own lock.
 */
typedef struct diskimg_mcache diskimg_mcache;

/* What the format adds to a cache; members beyond struct_size read as NULL. */
struct diskimg_mcache_hooks {
    size_t struct_size;            /* sizeof(struct diskimg_mcache_hooks), as compiled */
    void *opaque;                  /* passed to every hook */
    /* Called before an entry is written back ([offset, offset + len) of the
     * file); return -1 with *errp set to refuse the write (the entry stays
     * dirty): a format that found corruption, a metadata-write guard. */
    int (*before_write)(void *opaque, const char *what, uint64_t offset, uint64_t len,
                        GError **errp);
    /* Called for a get with an invalid offset; must set *errp (the format
     * may mark the image corrupt here).  NULL: a DISKIMG_ERROR_CORRUPT
     * error "x.img: L2 table offset 0x1234 is invalid". */
    void (*bad_offset)(void *opaque, const char *what, uint64_t offset, GError **errp);
};

/* A cache of `entry_size`-byte blocks of `file`; `what` ("L2 table") names
 * them in errors. */
DISKIMG_API diskimg_mcache *diskimg_mcache_new(diskimg_node *file, const char *what,
                                               uint32_t entry_size, uint64_t budget,
                                               GError **errp);
/* Frees the cache without writing anything back (flush first).  Safe on NULL. */
DISKIMG_API void diskimg_mcache_free(diskimg_mcache *c);
/* Every write-back of c is preceded by a flush of `first` (NULL: none). */
DISKIMG_API void diskimg_mcache_set_dependency(diskimg_mcache *c, diskimg_mcache *first);
/* Installs (copies) the hooks; NULL removes them. */
DISKIMG_API void diskimg_mcache_set_hooks(diskimg_mcache *c,
                                          const struct diskimg_mcache_hooks *hooks);
/* The number of entries the budget gave. */
DISKIMG_API unsigned diskimg_mcache_entries(const diskimg_mcache *c);

enum {
    DISKIMG_MCACHE_FRESH = 1u << 0,    /* a new block: zero-filled, not read from the file */
};
/* Pins the block at `off` (read unless DISKIMG_MCACHE_FRESH) and points
 * *data at its entry_size bytes, valid until diskimg_mcache_put.  Fails
 * when the offset is invalid, the read fails, or every entry is pinned. */
DISKIMG_API int diskimg_mcache_get(diskimg_mcache *c, uint64_t off, unsigned flags,
                                   uint8_t **data, GError **errp);
DISKIMG_API void diskimg_mcache_put(diskimg_mcache *c, uint8_t *data);
/* The pinned block `data` was changed: write it back later. */
DISKIMG_API void diskimg_mcache_mark_dirty(diskimg_mcache *c, uint8_t *data);
/* Writes back every dirty entry (dependency first), then flushes the file. */
DISKIMG_API int diskimg_mcache_flush(diskimg_mcache *c, GError **errp);
/* Drops the unpinned entry for `off` (a freed block) without writing it. */
DISKIMG_API void diskimg_mcache_discard(diskimg_mcache *c, uint64_t off);
/* Flushes, then drops every unpinned entry (the file changed beneath). */
DISKIMG_API int diskimg_mcache_empty(diskimg_mcache *c, GError **errp);

/* ---------------------------------------------------------------- tracker */

/*
 * For PARALLEL formats (plugin-guide §5) that hold a metadata lock but
 * move data without it.  A tracker is an image's metadata mutex plus:
 *
 *   - transfers in flight: a request maps its range under the lock, then
 *     io_begin (counted, lock released), transfers, io_end (lock taken
 *     again).  Call io_admit under the lock before looking the mapping
 *     up: it waits while a drain is queued, so drains are never starved.
 *   - drains: drain_for_free waits (lock released meanwhile) until no
 *     transfer runs — call it after unlinking storage and before freeing
 *     it, so no transfer still targets what gets reused.  lock_exclusive
 *     takes the lock and waits until nothing runs and no drain for
 *     freeing is parked: rare whole-image work (snapshots, check, resize).
 *   - claims: an allocating write that writes its data unlocked claims its
 *     range [start, end) (struct diskimg_claim, the caller's storage, alive
 *     until released); requests that would change the mapping there first
 *     wait for the claim to be released.
 *
 * Every call except new/free/lock/lock_exclusive expects the lock held;
 * io_begin returns without it, io_end with it.
 */
typedef struct diskimg_tracker diskimg_tracker;

DISKIMG_API diskimg_tracker *diskimg_tracker_new(void);
DISKIMG_API void diskimg_tracker_free(diskimg_tracker *t);    /* nothing may run; NULL is fine */
DISKIMG_API void diskimg_tracker_lock(diskimg_tracker *t);
DISKIMG_API void diskimg_tracker_unlock(diskimg_tracker *t);
/* The lock, with nothing in flight; release it with diskimg_tracker_unlock. */
DISKIMG_API void diskimg_tracker_lock_exclusive(diskimg_tracker *t);
DISKIMG_API void diskimg_tracker_drain_for_free(diskimg_tracker *t);
DISKIMG_API void diskimg_tracker_io_admit(diskimg_tracker *t);
DISKIMG_API void diskimg_tracker_io_begin(diskimg_tracker *t);
DISKIMG_API void diskimg_tracker_io_end(diskimg_tracker *t);
/* Transfers counted between io_begin and io_end right now (for tests). */
DISKIMG_API unsigned diskimg_tracker_inflight(const diskimg_tracker *t);

/* A claimed range; its members belong to the tracker while claimed. */
struct diskimg_claim {
    uint64_t start, end;
    struct diskimg_claim *next;
};
DISKIMG_API void diskimg_tracker_claim(diskimg_tracker *t, struct diskimg_claim *c,
                                       uint64_t start, uint64_t end);
/* Releases the claim and wakes the requests waiting for it. */
DISKIMG_API void diskimg_tracker_release(diskimg_tracker *t, struct diskimg_claim *c);
/* When a claim overlaps [start, end): waits until some claim is released
 * (lock released meanwhile) and returns true — what the caller looked up
 * may have changed.  False at once when none overlaps. */
DISKIMG_API bool diskimg_tracker_wait_claim(diskimg_tracker *t, uint64_t start, uint64_t end);
/* Waits until no claim overlaps [start, end). */
DISKIMG_API void diskimg_tracker_wait_unclaimed(diskimg_tracker *t, uint64_t start,
                                                uint64_t end);

/* ------------------------------------------------------------ tail growth */

/*
 * For formats that allocate at the end of their file.  When an allocation
 * reaches past the end, the file grows by one preallocating truncate of
 * max(1 MiB, size / 8), at most 64 MiB, instead of by every write (each
 * size change waits for the direct I/O in flight on Linux); allocations
 * inside what growing added are known to read as zeroes, so the format
 * need not write zeroes around partial data.
 *
 * The format's part: nothing is written outside allocations in use, the
 * `used_end` it passes (where its allocations in use end) only grows
 * between trims, and it trims (close, and before any operation that writes
 * or sizes the file on its own terms).  A crash leaves the grown tail
 * behind: space past the last allocation, which the format must tolerate
 * (qcow2: refcount 0, reused by later allocations).
 *
 * Growing is best effort: if the file cannot grow (a device, no
 * fallocate) nothing is known to be zero and writes extend the file
 * themselves.  Not thread-safe: call it under the format's lock.
 */
typedef struct diskimg_tail diskimg_tail;

/* Growth of `file`; the file is grown to multiples of `align` (a power of
 * two, e.g. the cluster size; others mean 1). */
DISKIMG_API diskimg_tail *diskimg_tail_new(diskimg_node *file, uint32_t align);
DISKIMG_API void diskimg_tail_free(diskimg_tail *t);    /* NULL is fine */
/* [off, off + len) of the file was just allocated; `used_end` is where the
 * allocations in use ended before.  Grows the file when the range reaches
 * past its end; true when the range is known to read as zeroes. */
DISKIMG_API bool diskimg_tail_reserve(diskimg_tail *t, uint64_t off, uint64_t len,
                                      uint64_t used_end);
/* Cuts what growing added beyond `used_end` (never below the size before
 * the first growth) and starts over. */
DISKIMG_API int diskimg_tail_trim(diskimg_tail *t, uint64_t used_end, GError **errp);
/* Starts over without cutting (the format no longer trusts its used_end). */
DISKIMG_API void diskimg_tail_forget(diskimg_tail *t);
/* The file size before the first growth since the last trim; 0: not grown. */
DISKIMG_API uint64_t diskimg_tail_grown_from(const diskimg_tail *t);

/* ----------------------------------------------------------------- CRC-32C */

/*
 * CRC-32C (Castagnoli, as iSCSI, ext4 and VHDX use it).  Start with crc 0;
 * pass the previous result to continue over more bytes:
 *   diskimg_crc32c(diskimg_crc32c(0, a, n), b, m) == CRC-32C of a then b
 * diskimg_crc32c(0, "123456789", 9) == 0xe3069283.  The pre- and
 * post-inversion are included: the result is what formats store.
 */
DISKIMG_API uint32_t diskimg_crc32c(uint32_t crc, const void *buf, size_t len);

/* --------------------------------------------------------------- block map */

/*
 * A flat block map: a table of `count` 32-bit little-endian entries, one
 * per guest block of `block_size` bytes, at `table_offset` of the image
 * file, held whole in memory (formats of the shape "header + one flat
 * table + blocks appended to the file": VDI, Parallels).  Formats differ
 * only in what an entry means, which the layout says with three numbers:
 *
 *   host offset of a mapped entry v = base + v * unit
 *   `unallocated`: the marker of a block this layer does not hold
 *   `zero`:        the marker of a block that reads as zeroes (equal to
 *                  `unallocated` when the format has no such marker)
 *
 * The map answers lookups, merges neighbouring blocks into runs (block
 * status, large transfers), tracks which 512-byte chunks of the table
 * changed and writes only those back, and finds entries whose host
 * storage overlaps (check).  Not thread-safe: the caller serialises.
 */
typedef struct diskimg_blockmap diskimg_blockmap;

enum diskimg_blockmap_kind {
    DISKIMG_BLOCKMAP_UNALLOCATED = 0,  /* not held by this layer */
    DISKIMG_BLOCKMAP_ZERO,             /* reads as zeroes, no storage */
    DISKIMG_BLOCKMAP_MAPPED,           /* stored at a host offset */
};

/* The meaning of the entries; members beyond struct_size read as 0, and
 * a layout without block_size or unit is refused (DISKIMG_ERROR_INVALID). */
struct diskimg_blockmap_layout {
    size_t struct_size;            /* sizeof(struct diskimg_blockmap_layout), as compiled */
    uint32_t block_size;           /* guest bytes per entry */
    uint64_t base, unit;           /* host offset of value v: base + v * unit */
    uint32_t unallocated, zero;    /* marker values */
};

/* Loads the `count` entries at `table_offset` of `file` into *map (bounded
 * by the file size as diskimg_load_table is; `what` names the table in
 * errors, "block map"): 0, or -1 with *errp set and *map NULL. */
DISKIMG_API int diskimg_blockmap_load(diskimg_blockmap **map,
                                      const struct diskimg_blockmap_layout *layout,
                                      diskimg_node *file, uint64_t table_offset,
                                      uint32_t count, const char *what, GError **errp);
/* A map of `count` entries all `value`, every chunk dirty (create). */
DISKIMG_API int diskimg_blockmap_new_filled(diskimg_blockmap **map,
                                            const struct diskimg_blockmap_layout *layout,
                                            uint64_t table_offset, uint32_t count,
                                            uint32_t value, GError **errp);
DISKIMG_API void diskimg_blockmap_free(diskimg_blockmap *m);    /* NULL is fine */

/* The number of entries (0 for NULL: a map never loaded), and entry
 * `index` (< count) as stored. */
DISKIMG_API uint32_t diskimg_blockmap_count(const diskimg_blockmap *m);
DISKIMG_API uint32_t diskimg_blockmap_value(const diskimg_blockmap *m, uint32_t index);
/* What guest block `index` (< count) is; *host set for MAPPED. */
DISKIMG_API enum diskimg_blockmap_kind diskimg_blockmap_get(const diskimg_blockmap *m,
                                                            uint32_t index, uint64_t *host);
/* Stores `value` for block `index` and marks its chunk dirty. */
DISKIMG_API void diskimg_blockmap_set(diskimg_blockmap *m, uint32_t index, uint32_t value);

/* The run starting at guest `offset` (< count * block_size): blocks of one
 * kind and, for MAPPED, consecutive host storage.  Returns its length,
 * clamped to `len` (> 0); *host is the host offset of `offset` itself. */
DISKIMG_API uint64_t diskimg_blockmap_run(const diskimg_blockmap *m, uint64_t offset,
                                          uint64_t len, enum diskimg_blockmap_kind *kind,
                                          uint64_t *host);

/* True when some chunk changed since the last write-back (false for NULL:
 * a map never loaded). */
DISKIMG_API bool diskimg_blockmap_is_dirty(const diskimg_blockmap *m);
/* Writes the changed chunks (little endian, neighbours merged into one
 * request) and clears their marks. */
DISKIMG_API int diskimg_blockmap_write_back(diskimg_blockmap *m, diskimg_node *file,
                                            GError **errp);
/* Marks every chunk changed (a repair rewrote many entries). */
DISKIMG_API void diskimg_blockmap_mark_all_dirty(diskimg_blockmap *m);

/* Calls `found(opaque, first, later)` for each mapped block `later` whose
 * host storage overlaps that of an earlier-sorted block `first` (same
 * value, or values closer than a block apart).  Costs a sorted copy of the
 * mapped entries (12 bytes each); -1 with *errp set
 * (DISKIMG_ERROR_NO_MEMORY) when that cannot be allocated. */
typedef void (*diskimg_blockmap_overlap_fn)(void *opaque, uint32_t first, uint32_t later);
DISKIMG_API int diskimg_blockmap_find_overlaps(const diskimg_blockmap *m,
                                               diskimg_blockmap_overlap_fn found,
                                               void *opaque, GError **errp);

/* Requests over the map, split into runs; the range lies within the map
 * (count * block_size).  A read takes mapped runs from `file` and gives
 * zeroes for the rest (both markers; a format with a backing file reads
 * through it itself). */
DISKIMG_API int diskimg_blockmap_read(const diskimg_blockmap *m, diskimg_node *file, void *buf,
                                      uint64_t len, uint64_t offset, GError **errp);
/* A write goes in place for mapped runs; each run without storage is
 * handed to `fill` (the format allocates, sets the entries and writes the
 * data there), then the map is looked up again. */
typedef int (*diskimg_blockmap_fill_fn)(void *opaque, const uint8_t *data, uint64_t len,
                                        uint64_t offset, GError **errp);
DISKIMG_API int diskimg_blockmap_write(diskimg_blockmap *m, diskimg_node *file,
                                       const void *buf, uint64_t len, uint64_t offset,
                                       diskimg_blockmap_fill_fn fill, void *opaque,
                                       GError **errp);
/* Zeroes the mapped runs in place (write_zeroes `flags` passed on); runs
 * without storage already read as zeroes and are left alone. */
DISKIMG_API int diskimg_blockmap_zero_mapped(const diskimg_blockmap *m, diskimg_node *file,
                                             uint64_t offset, uint64_t len, unsigned flags,
                                             GError **errp);

/* Writes `len` bytes of data at host + head into storage just allocated
 * for [host, host + head + len + tail), zeroing the head and tail around
 * it unless `zeroed` says the new space already reads as zeroes
 * (diskimg_tail_reserve). */
DISKIMG_API int diskimg_write_padded(diskimg_node *file, uint64_t host, uint64_t head,
                                     const void *data, uint64_t len, uint64_t tail,
                                     bool zeroed, GError **errp);

/* ------------------------------------------------------ second-level tables */

/*
 * The second level of a two-level cluster map (L1 -> L2 -> data): the
 * first-level table is the format's, in memory; its entries name tables
 * in the file, each `table_bytes` long, of 64-bit entries in one byte
 * order, at offsets aligned to `align`.  Entries are read and updated
 * through a diskimg_mcache of fixed budget, so a lookup costs no read once
 * its block is cached and memory stays bounded however large the image.
 * Cache blocks are min(table_bytes, align, 64 KiB): a large table needs no
 * oversized cache entry.  Entries are returned as stored (host order);
 * what a value means is the format's business (qed, qcow).
 *
 * The caller validates table offsets (aligned to `align`, within the
 * file, not 0) before passing them; the cache refuses misaligned ones as
 * corruption anyway.  Not thread-safe: call it under the format's lock.
 */
typedef struct diskimg_table2 diskimg_table2;

/* Tables of `table_bytes` (a power of two, >= 8) at offsets aligned to
 * `align` (a power of two) of `file`, entries in `order`; `what` names
 * them in errors ("L2 table"); `budget` bounds the cache's memory. */
DISKIMG_API diskimg_table2 *diskimg_table2_new(diskimg_node *file, const char *what,
                                               uint64_t table_bytes, uint64_t align,
                                               enum diskimg_byte_order order,
                                               uint64_t budget, GError **errp);
/* Frees without writing back: flush first.  NULL is fine. */
DISKIMG_API void diskimg_table2_free(diskimg_table2 *t);
/* Entries per table. */
DISKIMG_API uint64_t diskimg_table2_entries(const diskimg_table2 *t);

/* Reads up to n (>= 1) consecutive entries of the table at `table_off`
 * from `index` on into out[], stopping at the end of a cache block or of
 * the table: returns how many (>= 1), or -1 with *errp set. */
DISKIMG_API int64_t diskimg_table2_get_run(diskimg_table2 *t, uint64_t table_off,
                                           uint64_t index, uint64_t n, uint64_t *out,
                                           GError **errp);
/* One entry. */
DISKIMG_API int diskimg_table2_get(diskimg_table2 *t, uint64_t table_off, uint64_t index,
                                   uint64_t *value, GError **errp);
/* Updates one entry; written back on flush or eviction. */
DISKIMG_API int diskimg_table2_set(diskimg_table2 *t, uint64_t table_off, uint64_t index,
                                   uint64_t value, GError **errp);
/* Declares the table at `table_off` new and all zeroes, as it is in the
 * file (just allocated past the old end): later reads need no I/O. */
DISKIMG_API int diskimg_table2_fresh(diskimg_table2 *t, uint64_t table_off, GError **errp);
/* Writes back every changed entry and flushes the file. */
DISKIMG_API int diskimg_table2_flush(diskimg_table2 *t, GError **errp);
/* Flushes and forgets every cached block (the file changed beneath). */
DISKIMG_API int diskimg_table2_empty(diskimg_table2 *t, GError **errp);

/* ----------------------------------------------------------------- measure */

/*
 * For `measure` of formats that allocate whole blocks: how many blocks of
 * `block_size` bytes, among those covering [0, size) of `source`, hold
 * data that is not known to be zero anywhere in its backing chain (block
 * status, as convert sees it: zero ranges are skipped on a new image, so
 * they need no block).  A block is counted once however many extents
 * touch it.  0, or -1 with *errp set.
 */
DISKIMG_API int diskimg_measure_data_blocks(diskimg_node *source, uint64_t size,
                                            uint64_t block_size, uint64_t *blocks,
                                            GError **errp);

#ifdef __cplusplus
}
#endif

#endif
