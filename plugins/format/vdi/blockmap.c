/* SPDX-License-Identifier: MIT */
/*
 * blockmap.c — the flat block map of blockmap.h.
 */
#include <stdlib.h>
#include <string.h>

#include <diskimg/toolkit.h>

#include "blockmap.h"

static size_t dirty_bytes(uint32_t count)
{
    uint64_t chunks = ((uint64_t)count + BLOCKMAP_CHUNK - 1) / BLOCKMAP_CHUNK;
    return (size_t)((chunks + 7) / 8) + 1;
}

static void apply_layout(struct blockmap *m, const struct blockmap_layout *layout,
                         uint64_t table_offset, uint32_t count)
{
    memset(m, 0, sizeof(*m));
    m->count = count;
    m->block_size = layout->block_size;
    m->base = layout->base;
    m->unit = layout->unit;
    m->unallocated = layout->unallocated;
    m->zero = layout->zero;
    m->table_offset = table_offset;
}

int blockmap_load(struct blockmap *m, const struct blockmap_layout *layout,
                  diskimg_node *file, uint64_t table_offset, uint32_t count,
                  const char *what, GError **errp)
{
    void *raw = NULL;

    apply_layout(m, layout, table_offset, count);
    /* The table is bounded by the file that holds it (diskimg_load_table
     * checks that before allocating); 4 bytes an entry. */
    if (diskimg_load_table(file, table_offset, count, 4, (uint64_t)count * 4, what, &raw,
                           errp) < 0)
        return -1;
    m->entry = raw;
    for (uint32_t i = 0; i < count; i++)
        m->entry[i] = diskimg_le32(&m->entry[i]);
    m->dirty = g_try_malloc0(dirty_bytes(count));
    if (!m->dirty) {
        blockmap_free(m);
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory", what);
    }
    return 0;
}

int blockmap_init_filled(struct blockmap *m, const struct blockmap_layout *layout,
                         uint64_t table_offset, uint32_t count, uint32_t value,
                         GError **errp)
{
    apply_layout(m, layout, table_offset, count);
    m->entry = g_try_malloc_n(count ? count : 1, sizeof(uint32_t));
    m->dirty = g_try_malloc0(dirty_bytes(count));
    if (!m->entry || !m->dirty) {
        blockmap_free(m);
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "block map: out of memory");
    }
    for (uint32_t i = 0; i < count; i++)
        m->entry[i] = value;
    blockmap_mark_all_dirty(m);
    return 0;
}

void blockmap_free(struct blockmap *m)
{
    g_free(m->entry);
    g_free(m->dirty);
    m->entry = NULL;
    m->dirty = NULL;
}

enum blockmap_kind blockmap_get(const struct blockmap *m, uint32_t index, uint64_t *host)
{
    uint32_t v = m->entry[index];

    if (v == m->unallocated)
        return BLOCKMAP_UNALLOCATED;
    if (v == m->zero)
        return BLOCKMAP_ZERO;
    *host = m->base + (uint64_t)v * m->unit;
    return BLOCKMAP_MAPPED;
}

void blockmap_set(struct blockmap *m, uint32_t index, uint32_t value)
{
    uint32_t chunk = index / BLOCKMAP_CHUNK;

    m->entry[index] = value;
    m->dirty[chunk / 8] |= (uint8_t)(1u << (chunk % 8));
}

static uint32_t chunk_count(const struct blockmap *m)
{
    return (uint32_t)(((uint64_t)m->count + BLOCKMAP_CHUNK - 1) / BLOCKMAP_CHUNK);
}

void blockmap_mark_all_dirty(struct blockmap *m)
{
    uint32_t chunks = chunk_count(m);

    /* Only bits of real chunks: write-back clears no others. */
    memset(m->dirty, 0, dirty_bytes(m->count));
    memset(m->dirty, 0xff, chunks / 8);
    for (uint32_t c = chunks / 8 * 8; c < chunks; c++)
        m->dirty[c / 8] |= (uint8_t)(1u << (c % 8));
}

uint64_t blockmap_run(const struct blockmap *m, uint64_t offset, uint64_t len,
                      enum blockmap_kind *kind, uint64_t *host)
{
    uint32_t index = (uint32_t)(offset / m->block_size);
    uint64_t within = offset % m->block_size;
    uint64_t first_host = 0;
    uint64_t run = m->block_size - within;

    *kind = blockmap_get(m, index, &first_host);
    *host = *kind == BLOCKMAP_MAPPED ? first_host + within : 0;
    /* Extend while the next block continues the run. */
    for (uint32_t next = index + 1; run < len && next < m->count; next++) {
        uint64_t next_host = 0;
        if (blockmap_get(m, next, &next_host) != *kind)
            break;
        if (*kind == BLOCKMAP_MAPPED &&
            next_host != first_host + (uint64_t)(next - index) * m->block_size)
            break;
        run += m->block_size;
    }
    return run < len ? run : len;
}

bool blockmap_is_dirty(const struct blockmap *m)
{
    if (!m->dirty)
        return false;   /* never loaded */
    size_t n = dirty_bytes(m->count);

    for (size_t i = 0; i < n; i++)
        if (m->dirty[i])
            return true;
    return false;
}

static bool chunk_dirty(const struct blockmap *m, uint32_t chunk)
{
    return m->dirty[chunk / 8] & (1u << (chunk % 8));
}

/* Writes the chunks [first, end) as one request. */
static int write_chunks(struct blockmap *m, diskimg_node *file, uint32_t first, uint32_t end,
                        GError **errp)
{
    uint32_t from = first * BLOCKMAP_CHUNK;
    uint64_t to64 = (uint64_t)end * BLOCKMAP_CHUNK;
    uint32_t to = to64 < m->count ? (uint32_t)to64 : m->count;
    size_t n = (size_t)(to - from);
    g_autofree uint8_t *buf = g_try_malloc(n * 4);
    int ret;

    if (!buf)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "block map: out of memory");
    for (size_t i = 0; i < n; i++)
        diskimg_put_le32(buf + i * 4, m->entry[from + i]);
    ret = diskimg_node_pwrite(file, buf, n * 4, m->table_offset + (uint64_t)from * 4, 0, errp);
    if (ret < 0)
        return -1;
    for (uint32_t c = first; c < end; c++)
        m->dirty[c / 8] &= (uint8_t)~(1u << (c % 8));
    return 0;
}

int blockmap_write_back(struct blockmap *m, diskimg_node *file, GError **errp)
{
    uint32_t chunks = chunk_count(m);
    uint32_t c = 0;

    /* Neighbouring dirty chunks go out as one write. */
    while (c < chunks) {
        if (!chunk_dirty(m, c)) {
            c++;
            continue;
        }
        uint32_t end = c + 1;
        while (end < chunks && chunk_dirty(m, end))
            end++;
        if (write_chunks(m, file, c, end, errp) < 0)
            return -1;
        c = end;
    }
    return 0;
}

struct mapped_block {
    uint64_t host;
    uint32_t index;
};

static int by_host(const void *a, const void *b)
{
    const struct mapped_block *x = a, *y = b;

    if (x->host != y->host)
        return x->host < y->host ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

int blockmap_find_overlaps(const struct blockmap *m, blockmap_overlap_fn found, void *opaque,
                           GError **errp)
{
    struct mapped_block *b = g_try_new(struct mapped_block, m->count ? m->count : 1);
    size_t n = 0;

    if (!b)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                                 "block map: out of memory sorting %" PRIu32 " entries",
                                 m->count);

    for (uint32_t i = 0; i < m->count; i++) {
        uint64_t host;
        if (blockmap_get(m, i, &host) == BLOCKMAP_MAPPED)
            b[n++] = (struct mapped_block){ host, i };
    }
    qsort(b, n, sizeof(*b), by_host);
    /* `owner` is the last block kept; a later one starting inside it
     * overlaps it. */
    for (size_t k = 1, owner = 0; k < n; k++) {
        if (b[k].host < b[owner].host + m->block_size)
            found(opaque, b[owner].index, b[k].index);
        else
            owner = k;
    }
    g_free(b);
    return 0;
}
