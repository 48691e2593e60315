/* SPDX-License-Identifier: MIT */
/*
 * blockmap.h — a flat block map: one 32-bit little-endian entry per guest
 * block, loaded whole into memory, naming where the block lives in the
 * image file.
 *
 * Formats of the shape "header + one flat table + blocks appended at the
 * end of the file" (VirtualBox VDI, Parallels) share everything but the
 * meaning of their entries, which this helper takes as three numbers:
 *
 *   host offset of a mapped entry v = base + v * unit
 *   `unallocated`: the marker of a block this layer does not hold
 *   `zero`:        the marker of a block that reads as zeroes (set it equal
 *                  to `unallocated` when the format has no such marker)
 *
 * The helper answers lookups, merges neighbouring blocks into runs (for
 * block status and for large transfers), tracks which parts of the table
 * changed and writes only those back, and finds entries that share or
 * overlap host storage (for check).  It knows no format: it is meant to be
 * lifted into the core toolkit as it is.
 *
 * Not thread-safe: the caller serialises access.
 */
#ifndef DISKIMG_BLOCKMAP_H
#define DISKIMG_BLOCKMAP_H

#include <diskimg/plugin.h>

enum blockmap_kind {
    BLOCKMAP_UNALLOCATED = 0,  /* not held by this layer */
    BLOCKMAP_ZERO,             /* reads as zeroes, no storage */
    BLOCKMAP_MAPPED,           /* stored at a host offset */
};

struct blockmap {
    uint32_t *entry;           /* host byte order */
    uint32_t count;            /* number of guest blocks */
    uint32_t block_size;       /* guest bytes per entry */
    uint64_t base;             /* host offset of entry value 0 */
    uint64_t unit;             /* host bytes per step of an entry value */
    uint32_t unallocated;      /* marker values, see above */
    uint32_t zero;
    uint64_t table_offset;     /* where the table lives in the file */
    uint8_t *dirty;            /* one bit per BLOCKMAP_CHUNK entries */
};

/* Entries written back together: 512 bytes of table. */
#define BLOCKMAP_CHUNK 128u

/* The layout parameters of a map (everything but the entries). */
struct blockmap_layout {
    uint32_t block_size;
    uint64_t base, unit;
    uint32_t unallocated, zero;
};

/* Loads `count` entries stored at `table_offset` of `file` (bounded by the
 * file size; `what` names the table in errors, e.g. "block map"). */
int blockmap_load(struct blockmap *m, const struct blockmap_layout *layout,
                  diskimg_node *file, uint64_t table_offset, uint32_t count,
                  const char *what, GError **errp);
/* A map of `count` entries all set to `value`, every chunk dirty (create). */
int blockmap_init_filled(struct blockmap *m, const struct blockmap_layout *layout,
                         uint64_t table_offset, uint32_t count, uint32_t value,
                         GError **errp);
void blockmap_free(struct blockmap *m);

/* What guest block `index` (< count) is; *host set for MAPPED. */
enum blockmap_kind blockmap_get(const struct blockmap *m, uint32_t index, uint64_t *host);
/* Stores `value` for block `index` and marks its chunk dirty. */
void blockmap_set(struct blockmap *m, uint32_t index, uint32_t value);

/* The run starting at guest `offset` (< count * block_size): blocks of one
 * kind and, for MAPPED, consecutive host storage.  Returns its length,
 * clamped to `len` (> 0); *host is the host offset of `offset` itself. */
uint64_t blockmap_run(const struct blockmap *m, uint64_t offset, uint64_t len,
                      enum blockmap_kind *kind, uint64_t *host);

/* True when some chunk changed since the last write-back (false for a
 * map never loaded: a zeroed struct blockmap). */
bool blockmap_is_dirty(const struct blockmap *m);
/* Writes the changed chunks (little endian) and clears their marks. */
int blockmap_write_back(struct blockmap *m, diskimg_node *file, GError **errp);
/* Marks every chunk changed (a repair rewrote many entries). */
void blockmap_mark_all_dirty(struct blockmap *m);

/* Calls `found(opaque, first, later)` for each mapped block `later` whose
 * host storage overlaps that of an earlier-sorted block `first` (same
 * entry value, or values closer than a block apart).  Costs a sorted copy
 * of the mapped entries (8 bytes each); -1 with *errp set
 * (DISKIMG_ERROR_NO_MEMORY) when that cannot be allocated. */
typedef void (*blockmap_overlap_fn)(void *opaque, uint32_t first, uint32_t later);
int blockmap_find_overlaps(const struct blockmap *m, blockmap_overlap_fn found, void *opaque,
                           GError **errp);

#endif
