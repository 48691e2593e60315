/* SPDX-License-Identifier: MIT */
/*
 * guard.h — a metadata-write guard for format plugins (qemu's "overlap
 * check").
 *
 * A writable format keeps its metadata at host offsets that its own
 * metadata names: a header, tables, blocks of counters.  When that
 * metadata is damaged (a refcount says a table's cluster is free, a table
 * entry points into another table), an ordinary write or a repair may
 * overwrite one structure while updating another, and a damaged image
 * becomes a destroyed one.  The guard refuses such writes: the format
 * declares which host ranges hold which structure, and asks the guard
 * before it writes.
 *
 * Two kinds of declaration, chosen for cost:
 *   - ranges (diskimg_guard_add): structures with a fixed place that are
 *     few or small in number (a header, a table, a list of tables).  They
 *     are kept sorted; a query costs O(log n) plus the ranges it overlaps.
 *   - probes (diskimg_guard_add_probe): structures that are many and whose
 *     places the format already holds in its own metadata (qcow2's L2
 *     tables are named by the L1 table, refcount blocks by the refcount
 *     table).  The format answers "does [off, off+len) overlap one of
 *     them?" itself, so nothing is copied and nothing goes stale.
 *
 * Every declaration has a kind (one bit of a uint32_t, chosen by the
 * format) and a name used in messages ("refcount table").  A query names
 * the kinds the write may touch (the structure being written); every other
 * kind is checked.  The format decides what to do with a hit; qcow2 marks
 * the image corrupt with qemu's message "Preventing invalid write on
 * metadata (overlaps with NAME)".
 *
 * Offsets are bytes of the format's metadata file.  Ranges may overlap
 * each other (a damaged image); a range of length 0 is ignored.  The guard
 * does no I/O and allocates only in diskimg_guard_add.  It is not thread
 * safe: the format calls it under its own metadata lock.
 *
 * This header is MIT licensed so that plugins of any licence may use it.
 */
#ifndef DISKIMG_GUARD_H
#define DISKIMG_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <diskimg/plugin.h>

typedef struct diskimg_guard diskimg_guard;

/* Does [off, off+len) overlap one of the probe's structures?  `opaque` is
 * what was passed to diskimg_guard_add_probe. */
typedef bool (*diskimg_guard_probe_fn)(void *opaque, uint64_t off, uint64_t len);

/* An empty guard. */
DISKIMG_API diskimg_guard *diskimg_guard_new(void);
DISKIMG_API void diskimg_guard_free(diskimg_guard *g);

/* Forgets every range whose kind is in `kinds` (probes stay). */
DISKIMG_API void diskimg_guard_clear(diskimg_guard *g, uint32_t kinds);

/* Declares that [off, off+len) holds a structure of `kind` (one bit).
 * `name` must outlive the guard (a string literal). */
DISKIMG_API void diskimg_guard_add(diskimg_guard *g, uint32_t kind, const char *name,
                                   uint64_t off, uint64_t len);

/* Declares structures of `kind` that `fn` finds (see above). */
DISKIMG_API void diskimg_guard_add_probe(diskimg_guard *g, uint32_t kind, const char *name,
                                         diskimg_guard_probe_fn fn, void *opaque);

/* The name of a structure that [off, off+len) overlaps, kinds in `allowed`
 * not counted; NULL when the write touches none.  Ranges are checked
 * before probes. */
DISKIMG_API const char *diskimg_guard_find(diskimg_guard *g, uint32_t allowed, uint64_t off,
                                           uint64_t len);

#endif
