/* SPDX-License-Identifier: MIT */
/*
 * stream.c — writing streamOptimized extents in VMware's stream layout.
 *
 * A stream is read front to back by VMware's importers: header,
 * descriptor, then each grain compressed behind a grain marker (its LBA
 * and length), then every grain table behind a GT marker, the grain
 * directory behind a GD marker, a footer (a copy of the header whose
 * gdOffset is real, the header's being GD_AT_END) and an end-of-stream
 * marker.  qemu reads this too: it takes the footer from the last three
 * sectors of the file.
 *
 * While writing, grain tables live in memory (a table per 32 MiB of data
 * written); a flush writes the tail behind the last grain and cuts the
 * file there, and later grains overwrite that tail until the next flush.
 * Reopening a stream for writing loads its tables and goes on behind its
 * last grain, so the file keeps ending in a valid footer.
 */
#include "vmdk.h"

#include <string.h>

struct vmdk_stream {
    GHashTable *tables;        /* directory index -> uint32_t[gtes] */
    uint8_t header[VMDK_SECTOR];
    bool dirty;
};

int vmdk_stream_start(struct vmdk_extent *e, GError **errp)
{
    struct vmdk_stream *s = g_new0(struct vmdk_stream, 1);
    if (diskimg_node_pread(e->file, s->header, VMDK_SECTOR, 0, errp) < 0) {
        g_free(s);
        return -1;
    }
    s->tables = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    e->stream = s;
    e->next_alloc = e->overhead * VMDK_SECTOR;
    return 0;
}

/* The end of the grain stored at `sector` (marker and data, sector padded). */
static int grain_end(struct vmdk_extent *e, uint64_t sector, uint64_t *end, GError **errp)
{
    uint8_t m[12];
    if (diskimg_node_pread(e->file, m, sizeof(m), sector * VMDK_SECTOR, errp) < 0)
        return -1;
    uint64_t n = 12 + (uint64_t)diskimg_le32(m + 8);
    if (n > 2 * e->grain + VMDK_SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: grain marker at sector %" PRIu64 ": field 'size' is invalid",
                                 diskimg_node_filename(e->file), sector);
    *end = sector * VMDK_SECTOR + ((n + VMDK_SECTOR - 1) & ~(uint64_t)(VMDK_SECTOR - 1));
    return 0;
}

int vmdk_stream_resume(struct vmdk_extent *e, GError **errp)
{
    if (vmdk_stream_start(e, errp) < 0)
        return -1;
    struct vmdk_stream *s = e->stream;
    uint64_t last = 0;
    for (uint32_t di = 0; di < e->gd_entries; di++) {
        if (!e->gd[di])
            continue;
        uint32_t *t;
        if (diskimg_load_table(e->file, (uint64_t)e->gd[di] * VMDK_SECTOR, e->gtes, 4,
                               (uint64_t)VMDK_MAX_GTES * 4, "grain table", (void **)&t,
                               errp) < 0)
            return -1;
        for (uint32_t i = 0; i < e->gtes; i++) {
            t[i] = GUINT32_FROM_LE(t[i]);
            last = MAX(last, t[i]);
        }
        g_hash_table_insert(s->tables, GUINT_TO_POINTER(di), t);
    }
    uint64_t end = e->overhead * VMDK_SECTOR;
    if (last && grain_end(e, last, &end, errp) < 0)
        return -1;
    e->next_alloc = MAX(end, e->overhead * VMDK_SECTOR);
    return 0;
}

void vmdk_stream_free(struct vmdk_stream *s)
{
    if (!s)
        return;
    g_hash_table_destroy(s->tables);
    g_free(s);
}

int vmdk_stream_lookup(struct vmdk_extent *e, uint64_t off, uint32_t *entry)
{
    uint64_t g = off / e->grain;
    uint32_t *t = g_hash_table_lookup(e->stream->tables, GUINT_TO_POINTER(g / e->gtes));
    *entry = t ? t[g % e->gtes] : 0;
    return 0;
}

int vmdk_stream_set(struct vmdk_extent *e, uint64_t off, uint32_t entry, GError **errp)
{
    uint64_t g = off / e->grain;
    if (g / e->gtes >= e->gd_entries)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: offset %" PRIu64 " lies beyond the extent",
                                 diskimg_node_filename(e->file), off);
    gpointer key = GUINT_TO_POINTER(g / e->gtes);
    uint32_t *t = g_hash_table_lookup(e->stream->tables, key);
    if (!t) {
        t = g_new0(uint32_t, e->gtes);
        g_hash_table_insert(e->stream->tables, key, t);
    }
    t[g % e->gtes] = entry;
    e->stream->dirty = true;
    return 0;
}

static void put_marker(uint8_t *sec, uint64_t val, uint32_t type)
{
    memset(sec, 0, VMDK_SECTOR);
    diskimg_put_le64(sec, val);
    diskimg_put_le32(sec + 12, type);
}

static uint64_t sectors_for(uint64_t bytes)
{
    return (bytes + VMDK_SECTOR - 1) / VMDK_SECTOR;
}

int vmdk_stream_write_tail(diskimg_node *file, const uint8_t header[VMDK_SECTOR],
                           uint64_t pos, uint32_t gd_entries, uint32_t gtes,
                           GHashTable *tables, uint64_t *end, GError **errp)
{
    uint64_t gt_sectors = sectors_for((uint64_t)gtes * 4);
    uint64_t gd_sectors = sectors_for((uint64_t)gd_entries * 4);
    uint64_t n_tables = tables ? g_hash_table_size(tables) : 0;
    uint64_t total = (n_tables * (1 + gt_sectors) + 1 + gd_sectors + 3) * VMDK_SECTOR;
    g_autofree uint8_t *buf = g_try_malloc0(total);
    g_autofree uint32_t *gd = g_try_new0(uint32_t, MAX(gd_entries, 1u));
    if (!buf || !gd)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "out of memory");
    uint8_t *p = buf;
    uint64_t sector = pos / VMDK_SECTOR;
    /* Tables in directory order, as VMware writes them. */
    for (uint32_t di = 0; tables && di < gd_entries; di++) {
        const uint32_t *t = g_hash_table_lookup(tables, GUINT_TO_POINTER(di));
        if (!t)
            continue;
        put_marker(p, gt_sectors, VMDK_MARKER_GT);
        p += VMDK_SECTOR;
        for (uint32_t i = 0; i < gtes; i++)
            diskimg_put_le32(p + 4 * i, t[i]);
        gd[di] = (uint32_t)(sector + 1);
        p += gt_sectors * VMDK_SECTOR;
        sector += 1 + gt_sectors;
    }
    put_marker(p, gd_sectors, VMDK_MARKER_GD);
    p += VMDK_SECTOR;
    uint64_t gd_sector = sector + 1;
    for (uint32_t i = 0; i < gd_entries; i++)
        diskimg_put_le32(p + 4 * i, gd[i]);
    p += gd_sectors * VMDK_SECTOR;
    put_marker(p, 1, VMDK_MARKER_FOOTER);
    p += VMDK_SECTOR;
    memcpy(p, header, VMDK_SECTOR);
    diskimg_put_le64(p + 56, gd_sector);
    p += VMDK_SECTOR;
    put_marker(p, 0, VMDK_MARKER_EOS);
    if (diskimg_node_pwrite(file, buf, total, pos, 0, errp) < 0 ||
        diskimg_node_truncate(file, pos + total, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                              errp) < 0)
        return -1;
    *end = pos + total;
    return 0;
}

int vmdk_stream_finish(struct vmdk_extent *e, GError **errp)
{
    struct vmdk_stream *s = e->stream;
    if (!s->dirty)
        return 0;
    uint64_t end;
    if (vmdk_stream_write_tail(e->file, s->header, e->next_alloc, e->gd_entries, e->gtes,
                               s->tables, &end, errp) < 0)
        return -1;
    e->file_size = end;
    s->dirty = false;
    return 0;
}
