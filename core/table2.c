/* SPDX-License-Identifier: MIT */
/*
 * table2.c — the second level of a two-level cluster map (L1 -> L2 ->
 * data) through the metadata cache (toolkit.h).
 *
 * The cache works on blocks of min(table_bytes, align, 64 KiB) bytes, so a
 * table larger than a cache entry (64 MiB clusters, 32 KiB tables over
 * 512-byte clusters) needs no oversized cache entry, and a table offset
 * only has to be aligned as the format requires.  It started out in the
 * qed plugin, shared with qcow.
 */
#include <string.h>

#include "internal.h"
#include <diskimg/toolkit.h>

/* Cache blocks never exceed this: larger tables are split across blocks. */
#define TABLE2_MAX_BLOCK (64u * 1024u)

struct diskimg_table2 {
    diskimg_mcache *cache;
    uint64_t table_bytes;
    uint32_t block_bytes;
    enum diskimg_byte_order order;
};

diskimg_table2 *diskimg_table2_new(diskimg_node *file, const char *what, uint64_t table_bytes,
                                   uint64_t align, enum diskimg_byte_order order,
                                   uint64_t budget, GError **errp)
{
    diskimg_table2 *t = g_new0(diskimg_table2, 1);
    uint64_t block = MIN(MIN(table_bytes, align), (uint64_t)TABLE2_MAX_BLOCK);

    t->table_bytes = table_bytes;
    t->block_bytes = (uint32_t)MAX(block, (uint64_t)sizeof(uint64_t));
    t->order = order;
    t->cache = diskimg_mcache_new(file, what, t->block_bytes, budget, errp);
    if (!t->cache) {
        g_free(t);
        return NULL;
    }
    return t;
}

void diskimg_table2_free(diskimg_table2 *t)
{
    if (!t)
        return;
    diskimg_mcache_free(t->cache);
    g_free(t);
}

uint64_t diskimg_table2_entries(const diskimg_table2 *t)
{
    return t->table_bytes / sizeof(uint64_t);
}

static uint64_t load(const diskimg_table2 *t, const uint8_t *p)
{
    return t->order == DISKIMG_BIG_ENDIAN ? diskimg_be64(p) : diskimg_le64(p);
}

static void store(const diskimg_table2 *t, uint8_t *p, uint64_t v)
{
    if (t->order == DISKIMG_BIG_ENDIAN)
        diskimg_put_be64(p, v);
    else
        diskimg_put_le64(p, v);
}

/* The cache block holding entry `index` and the entry's byte offset in it. */
static int locate(const diskimg_table2 *t, uint64_t table_off, uint64_t index, uint64_t *block,
                  uint32_t *in_block, GError **errp)
{
    uint64_t byte;

    if (index >= diskimg_table2_entries(t))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "table index %" PRIu64 " out of range", index);
    byte = index * sizeof(uint64_t);
    *block = table_off + byte / t->block_bytes * t->block_bytes;
    *in_block = (uint32_t)(byte % t->block_bytes);
    return 0;
}

int64_t diskimg_table2_get_run(diskimg_table2 *t, uint64_t table_off, uint64_t index,
                               uint64_t n, uint64_t *out, GError **errp)
{
    uint64_t block = 0, count;
    uint32_t at = 0;
    uint8_t *data;

    if (locate(t, table_off, index, &block, &at, errp) < 0 ||
        diskimg_mcache_get(t->cache, block, 0, &data, errp) < 0)
        return -1;
    count = MIN(n, (t->block_bytes - at) / sizeof(uint64_t));
    count = MAX(count, 1);
    for (uint64_t i = 0; i < count; i++)
        out[i] = load(t, data + at + i * sizeof(uint64_t));
    diskimg_mcache_put(t->cache, data);
    return (int64_t)count;
}

int diskimg_table2_get(diskimg_table2 *t, uint64_t table_off, uint64_t index, uint64_t *value,
                       GError **errp)
{
    return diskimg_table2_get_run(t, table_off, index, 1, value, errp) < 0 ? -1 : 0;
}

int diskimg_table2_set(diskimg_table2 *t, uint64_t table_off, uint64_t index, uint64_t value,
                       GError **errp)
{
    uint64_t block = 0;
    uint32_t at = 0;
    uint8_t *data;

    if (locate(t, table_off, index, &block, &at, errp) < 0 ||
        diskimg_mcache_get(t->cache, block, 0, &data, errp) < 0)
        return -1;
    store(t, data + at, value);
    diskimg_mcache_mark_dirty(t->cache, data);
    diskimg_mcache_put(t->cache, data);
    return 0;
}

int diskimg_table2_fresh(diskimg_table2 *t, uint64_t table_off, GError **errp)
{
    /* Only the first block is cached up front: the cache is bounded, and
     * the rest reads back as the zeroes the file holds there. */
    uint8_t *data;

    if (diskimg_mcache_get(t->cache, table_off, DISKIMG_MCACHE_FRESH, &data, errp) < 0)
        return -1;
    diskimg_mcache_put(t->cache, data);
    return 0;
}

int diskimg_table2_flush(diskimg_table2 *t, GError **errp)
{
    return diskimg_mcache_flush(t->cache, errp);
}

int diskimg_table2_empty(diskimg_table2 *t, GError **errp)
{
    return diskimg_mcache_empty(t->cache, errp);
}
