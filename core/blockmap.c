/* SPDX-License-Identifier: MIT */
/*
 * blockmap.c — a flat block map (toolkit.h): one 32-bit little-endian
 * entry per guest block, held whole in memory, telling where the block
 * lives in the image file.
 *
 * The table is small (4 bytes a block) and read once at open, so lookups
 * cost no I/O.  Changes are tracked in chunks of 512 bytes of table (one
 * sector) and only changed chunks are written back, neighbours merged
 * into one request.  It started out in the vdi plugin, shared with
 * parallels.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include <diskimg/toolkit.h>

/* Entries written back together: 512 bytes of table. */
#define CHUNK_ENTRIES 128u

struct diskimg_blockmap {
    uint32_t *entry;           /* host byte order */
    uint32_t count;            /* number of guest blocks */
    uint32_t block_size;       /* guest bytes per entry */
    uint64_t base;             /* host offset of entry value 0 */
    uint64_t unit;             /* host bytes per step of an entry value */
    uint32_t unallocated;      /* marker values, see toolkit.h */
    uint32_t zero;
    uint64_t table_offset;     /* where the table lives in the file */
    uint8_t *dirty;            /* one bit per chunk */
};

static uint32_t chunk_count(uint32_t count)
{
    return (uint32_t)(((uint64_t)count + CHUNK_ENTRIES - 1) / CHUNK_ENTRIES);
}

static size_t dirty_bytes(uint32_t count)
{
    return (size_t)(((uint64_t)chunk_count(count) + 7) / 8) + 1;
}

/* A map without entries yet, or NULL with *errp set. */
static diskimg_blockmap *new_map(const struct diskimg_blockmap_layout *layout,
                                 uint64_t table_offset, uint32_t count, GError **errp)
{
    struct diskimg_blockmap_layout l = { 0 };
    diskimg_blockmap *m;

    /* Members beyond the caller's struct_size read as 0. */
    memcpy(&l, layout, MIN(layout->struct_size, sizeof(l)));
    /* Runs divide by the block size: a layout without one is a bug. */
    if (l.block_size == 0 || l.unit == 0) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                          "block map layout needs a block size and a unit");
        return NULL;
    }
    m = g_try_new0(diskimg_blockmap, 1);
    if (!m)
        goto no_memory;
    m->count = count;
    m->block_size = l.block_size;
    m->base = l.base;
    m->unit = l.unit;
    m->unallocated = l.unallocated;
    m->zero = l.zero;
    m->table_offset = table_offset;
    m->dirty = g_try_malloc0(dirty_bytes(count));
    if (!m->dirty) {
        g_free(m);
        goto no_memory;
    }
    return m;

no_memory:
    diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "block map: out of memory");
    return NULL;
}

int diskimg_blockmap_load(diskimg_blockmap **out, const struct diskimg_blockmap_layout *layout,
                          diskimg_node *file, uint64_t table_offset, uint32_t count,
                          const char *what, GError **errp)
{
    diskimg_blockmap *m = new_map(layout, table_offset, count, errp);
    void *raw = NULL;

    *out = NULL;
    if (!m)
        return -1;
    /* The table is bounded by the file that holds it (diskimg_load_table
     * checks that before allocating); 4 bytes an entry. */
    if (diskimg_load_table(file, table_offset, count, 4, (uint64_t)count * 4, what, &raw,
                           errp) < 0) {
        diskimg_blockmap_free(m);
        return -1;
    }
    m->entry = raw;
    for (uint32_t i = 0; i < count; i++)
        m->entry[i] = diskimg_le32(&m->entry[i]);
    *out = m;
    return 0;
}

int diskimg_blockmap_new_filled(diskimg_blockmap **out,
                                const struct diskimg_blockmap_layout *layout,
                                uint64_t table_offset, uint32_t count, uint32_t value,
                                GError **errp)
{
    diskimg_blockmap *m = new_map(layout, table_offset, count, errp);

    *out = NULL;
    if (!m)
        return -1;
    m->entry = g_try_malloc_n(count ? count : 1, sizeof(uint32_t));
    if (!m->entry) {
        diskimg_blockmap_free(m);
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "block map: out of memory");
    }
    for (uint32_t i = 0; i < count; i++)
        m->entry[i] = value;
    diskimg_blockmap_mark_all_dirty(m);
    *out = m;
    return 0;
}

void diskimg_blockmap_free(diskimg_blockmap *m)
{
    if (!m)
        return;
    g_free(m->entry);
    g_free(m->dirty);
    g_free(m);
}

uint32_t diskimg_blockmap_count(const diskimg_blockmap *m)
{
    /* A map never loaded (metadata-only opens) has no entries. */
    if (!m)
        return 0;
    return m->count;
}

uint32_t diskimg_blockmap_value(const diskimg_blockmap *m, uint32_t index)
{
    return m->entry[index];
}

enum diskimg_blockmap_kind diskimg_blockmap_get(const diskimg_blockmap *m, uint32_t index,
                                                uint64_t *host)
{
    uint32_t v = m->entry[index];

    if (v == m->unallocated)
        return DISKIMG_BLOCKMAP_UNALLOCATED;
    if (v == m->zero)
        return DISKIMG_BLOCKMAP_ZERO;
    *host = m->base + (uint64_t)v * m->unit;
    return DISKIMG_BLOCKMAP_MAPPED;
}

void diskimg_blockmap_set(diskimg_blockmap *m, uint32_t index, uint32_t value)
{
    uint32_t chunk = index / CHUNK_ENTRIES;

    m->entry[index] = value;
    m->dirty[chunk / 8] |= (uint8_t)(1u << (chunk % 8));
}

void diskimg_blockmap_mark_all_dirty(diskimg_blockmap *m)
{
    uint32_t chunks = chunk_count(m->count);

    /* Only bits of real chunks: write-back clears no others. */
    memset(m->dirty, 0, dirty_bytes(m->count));
    memset(m->dirty, 0xff, chunks / 8);
    for (uint32_t c = chunks / 8 * 8; c < chunks; c++)
        m->dirty[c / 8] |= (uint8_t)(1u << (c % 8));
}

uint64_t diskimg_blockmap_run(const diskimg_blockmap *m, uint64_t offset, uint64_t len,
                              enum diskimg_blockmap_kind *kind, uint64_t *host)
{
    uint32_t index = (uint32_t)(offset / m->block_size);
    uint64_t within = offset % m->block_size;
    uint64_t first_host = 0;
    uint64_t run = m->block_size - within;

    *kind = diskimg_blockmap_get(m, index, &first_host);
    *host = *kind == DISKIMG_BLOCKMAP_MAPPED ? first_host + within : 0;
    /* Extend while the next block continues the run. */
    for (uint32_t next = index + 1; run < len && next < m->count; next++) {
        uint64_t next_host = 0;
        if (diskimg_blockmap_get(m, next, &next_host) != *kind)
            break;
        if (*kind == DISKIMG_BLOCKMAP_MAPPED &&
            next_host != first_host + (uint64_t)(next - index) * m->block_size)
            break;
        run += m->block_size;
    }
    return run < len ? run : len;
}

bool diskimg_blockmap_is_dirty(const diskimg_blockmap *m)
{
    if (!m)
        return false;   /* never loaded */
    size_t n = dirty_bytes(m->count);

    for (size_t i = 0; i < n; i++)
        if (m->dirty[i])
            return true;
    return false;
}

static bool chunk_dirty(const diskimg_blockmap *m, uint32_t chunk)
{
    return m->dirty[chunk / 8] & (1u << (chunk % 8));
}

/* Writes the chunks [first, end) as one request. */
static int write_chunks(diskimg_blockmap *m, diskimg_node *file, uint32_t first, uint32_t end,
                        GError **errp)
{
    uint32_t from = first * CHUNK_ENTRIES;
    uint64_t to64 = (uint64_t)end * CHUNK_ENTRIES;
    uint32_t to = to64 < m->count ? (uint32_t)to64 : m->count;
    size_t n = (size_t)(to - from);
    g_autofree uint8_t *buf = g_try_malloc(n * 4);

    if (!buf)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "block map: out of memory");
    for (size_t i = 0; i < n; i++)
        diskimg_put_le32(buf + i * 4, m->entry[from + i]);
    if (diskimg_node_pwrite(file, buf, n * 4, m->table_offset + (uint64_t)from * 4, 0,
                            errp) < 0)
        return -1;
    for (uint32_t c = first; c < end; c++)
        m->dirty[c / 8] &= (uint8_t)~(1u << (c % 8));
    return 0;
}

int diskimg_blockmap_write_back(diskimg_blockmap *m, diskimg_node *file, GError **errp)
{
    uint32_t chunks = chunk_count(m->count);
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

int diskimg_blockmap_find_overlaps(const diskimg_blockmap *m, diskimg_blockmap_overlap_fn found,
                                   void *opaque, GError **errp)
{
    struct mapped_block *b = g_try_new(struct mapped_block, m->count ? m->count : 1);
    size_t n = 0;

    if (!b)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                                 "block map: out of memory sorting %" PRIu32 " entries",
                                 m->count);
    for (uint32_t i = 0; i < m->count; i++) {
        uint64_t host;
        if (diskimg_blockmap_get(m, i, &host) == DISKIMG_BLOCKMAP_MAPPED)
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

/* ------------------------------------------------- requests over the map */

int diskimg_blockmap_read(const diskimg_blockmap *m, diskimg_node *file, void *buf,
                          uint64_t len, uint64_t offset, GError **errp)
{
    uint8_t *out = buf;

    while (len) {
        enum diskimg_blockmap_kind kind;
        uint64_t host;
        uint64_t n = diskimg_blockmap_run(m, offset, len, &kind, &host);

        if (kind == DISKIMG_BLOCKMAP_MAPPED) {
            if (diskimg_node_pread(file, out, n, host, errp) < 0)
                return -1;
        } else {
            memset(out, 0, n);
        }
        out += n;
        offset += n;
        len -= n;
    }
    return 0;
}

int diskimg_blockmap_write(diskimg_blockmap *m, diskimg_node *file, const void *buf,
                           uint64_t len, uint64_t offset, diskimg_blockmap_fill_fn fill,
                           void *opaque, GError **errp)
{
    const uint8_t *in = buf;

    while (len) {
        enum diskimg_blockmap_kind kind;
        uint64_t host;
        /* Looked up again after each run: `fill` changes the map. */
        uint64_t n = diskimg_blockmap_run(m, offset, len, &kind, &host);
        int ret = kind == DISKIMG_BLOCKMAP_MAPPED
                      ? diskimg_node_pwrite(file, in, n, host, 0, errp)
                      : fill(opaque, in, n, offset, errp);

        if (ret < 0)
            return -1;
        in += n;
        offset += n;
        len -= n;
    }
    return 0;
}

int diskimg_blockmap_zero_mapped(const diskimg_blockmap *m, diskimg_node *file,
                                 uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    while (len) {
        enum diskimg_blockmap_kind kind;
        uint64_t host;
        uint64_t n = diskimg_blockmap_run(m, offset, len, &kind, &host);

        if (kind == DISKIMG_BLOCKMAP_MAPPED &&
            diskimg_node_write_zeroes(file, host, n, flags, errp) < 0)
            return -1;
        offset += n;
        len -= n;
    }
    return 0;
}

int diskimg_write_padded(diskimg_node *file, uint64_t host, uint64_t head, const void *data,
                         uint64_t len, uint64_t tail, bool zeroed, GError **errp)
{
    if (!zeroed && head && diskimg_node_write_zeroes(file, host, head, 0, errp) < 0)
        return -1;
    if (!zeroed && tail &&
        diskimg_node_write_zeroes(file, host + head + len, tail, 0, errp) < 0)
        return -1;
    return diskimg_node_pwrite(file, data, len, host + head, 0, errp);
}
