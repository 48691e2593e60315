/* SPDX-License-Identifier: MIT */
/*
 * table2.h — the second level of a two-level cluster map (L1 -> L2 ->
 * data), kept in the file and reached through the toolkit's metadata
 * cache.
 *
 * Many formats map guest clusters through a first-level table held in
 * memory whose entries name second-level tables in the file; each of those
 * is `table_bytes` long, holds 64-bit entries in one byte order and starts
 * at an offset aligned to `align`.  This piece does the second level: it
 * reads and updates entries of such tables through a diskimg_mcache of
 * fixed budget, so a lookup costs no read once its block is cached and
 * memory stays bounded however large the image.
 *
 * The cache works on blocks of min(table_bytes, align, 64 KiB) bytes, so a
 * table larger than a cache entry (64 MiB clusters, 32 KiB tables over
 * 512-byte clusters) needs no oversized cache entry and a table offset
 * only has to be aligned as the format requires.  Entries are returned as
 * stored (host order); what a value means is the format's business.
 *
 * The caller validates table offsets (alignment to `align`, lying within
 * the file, not 0) before passing them; misaligned offsets are refused as
 * corruption by the cache anyway.  Not thread-safe: call it under the
 * format's lock.  Nothing here is specific to one format.
 */
#ifndef DISKIMG_TABLE2_H
#define DISKIMG_TABLE2_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

typedef struct table2 table2;

/* Tables of `table_bytes` (a power of two, >= 8) at offsets aligned to
 * `align` (a power of two) of `file`, entries in `order`; `what` names
 * them in errors ("L2 table"); `budget` bounds the cache's memory. */
table2 *table2_new(diskimg_node *file, const char *what, uint64_t table_bytes, uint64_t align,
                   enum diskimg_byte_order order, uint64_t budget, GError **errp);
/* Frees without writing back: flush first.  NULL is fine. */
void table2_free(table2 *t);

/* Entries per table. */
uint64_t table2_entries(const table2 *t);

/* Reads up to n (>= 1) consecutive entries of the table at `table_off`
 * from `index` on into out[], stopping at the end of a cache block or of
 * the table: returns how many (>= 1), or -1 with *errp set. */
int64_t table2_get_run(table2 *t, uint64_t table_off, uint64_t index, uint64_t n,
                       uint64_t *out, GError **errp);
/* One entry. */
int table2_get(table2 *t, uint64_t table_off, uint64_t index, uint64_t *value, GError **errp);
/* Updates one entry; written back on flush or eviction. */
int table2_set(table2 *t, uint64_t table_off, uint64_t index, uint64_t value, GError **errp);
/* Declares the table at `table_off` new and all zeroes, as it is in the
 * file (just allocated past the old end): later reads need no I/O. */
int table2_fresh(table2 *t, uint64_t table_off, GError **errp);

/* Writes back every changed entry and flushes the file. */
int table2_flush(table2 *t, GError **errp);
/* Flushes and forgets every cached block (the file changed beneath). */
int table2_empty(table2 *t, GError **errp);

#endif
