/* SPDX-License-Identifier: MIT */
/*
 * resize.c — growing a VDI image (qemu 7.2 has no resize for vdi; this
 * follows what VirtualBox's own resize does).
 *
 * The new guest blocks need block map entries.  When the bigger map no
 * longer fits before offset_data, the data blocks stored first are moved
 * to the end of the data area, and the data area then starts that many
 * blocks later: every stored index drops by the number of blocks vacated.
 * VDI data positions are offset_data + index * block_size, so only whole
 * blocks can be vacated this way (a map growing by one sector costs one
 * block copy, as in VirtualBox).  A static image also gets its new blocks
 * stored, as create makes them: sparse in the file, reading as zeroes.
 *
 * Order on disk, so that a failure leaves a readable image: the copies of
 * the moved blocks are written past every block in use and flushed (until
 * the header changes nothing names them), then the map, the padding after
 * it, and last the header with the new sizes and offset_data.  Only a
 * crash between the map and the header writes of a relocating resize
 * leaves a header that does not match its map; VDI has no journal to
 * avoid that (VirtualBox has the same window).
 */
#include <string.h>

#include "vdi.h"

static const char *const prealloc_names[] = { "off", "metadata", "falloc", "full" };

/* The new layout in memory: map entries and header fields. */
struct vdi_grow {
    uint32_t *entries;          /* blocks_in_image of the new size */
    uint32_t count;
    uint32_t offset_data;
    uint32_t blocks_allocated;
};

static bool is_stored(uint32_t v)
{
    return v != VDI_UNALLOCATED && v != VDI_DISCARDED;
}

/* Copies the data block at index `from` to index `to` (1 MiB at a time). */
static int copy_block(struct vdi_state *s, uint32_t from, uint32_t to, uint8_t *buf,
                      GError **errp)
{
    uint64_t bs = s->h.block_size;
    uint64_t src = s->h.offset_data + (uint64_t)from * bs;
    uint64_t dst = s->h.offset_data + (uint64_t)to * bs;

    if (diskimg_node_pread(s->file, buf, bs, src, errp) < 0)
        return -1;
    return diskimg_node_pwrite(s->file, buf, bs, dst, 0, errp);
}

/*
 * Vacates the first `vacate` data slots: each one in use moves to a slot
 * past every other (at or after both blocks_allocated and `vacate`), then
 * all indices drop by `vacate` and the data area starts that much later.
 */
static int relocate(struct vdi_state *s, struct vdi_grow *g, uint32_t vacate,
                    uint32_t new_offset, GError **errp)
{
    uint32_t old_count = s->h.blocks_in_image;
    uint32_t next = MAX(s->h.blocks_allocated, vacate);
    g_autofree uint8_t *buf = g_try_malloc(s->h.block_size);
    g_autofree uint32_t *owner = g_try_new(uint32_t, vacate);

    if (!buf || !owner)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory",
                                 s->filename);
    for (uint32_t i = 0; i < vacate; i++)
        owner[i] = UINT32_MAX;
    for (uint32_t b = 0; b < old_count; b++)
        if (is_stored(g->entries[b]) && g->entries[b] < vacate)
            owner[g->entries[b]] = b;
    for (uint32_t slot = 0; slot < vacate; slot++) {
        if (owner[slot] == UINT32_MAX)
            continue;
        if (copy_block(s, slot, next, buf, errp) < 0)
            return -1;
        g->entries[owner[slot]] = next++;
    }
    for (uint32_t b = 0; b < old_count; b++)
        if (is_stored(g->entries[b]))
            g->entries[b] -= vacate;
    g->blocks_allocated = next - vacate;
    g->offset_data = new_offset;
    /* The copies must be durable before anything names them. */
    return diskimg_node_flush(s->file, errp);
}

/* Where the data area must start for a map of `count` entries, and how
 * the existing blocks are rearranged to get there. */
static int plan_data_area(struct vdi_state *s, struct vdi_grow *g, GError **errp)
{
    uint64_t needed = (uint64_t)s->h.offset_bmap + vdi_bmap_bytes(g->count);
    uint64_t bs = s->h.block_size;

    g->offset_data = s->h.offset_data;
    g->blocks_allocated = s->h.blocks_allocated;
    if (needed <= s->h.offset_data)
        return 0;
    uint64_t vacate = (needed - s->h.offset_data + bs - 1) / bs;
    uint64_t new_offset = s->h.blocks_allocated ? s->h.offset_data + vacate * bs : needed;
    /* offset_data is a 32-bit field. */
    if (new_offset > UINT32_MAX - bs)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s: the block map of %" PRIu32 " blocks does not fit below "
                                 "the 4 GiB limit of offset_data", s->filename, g->count);
    if (!s->h.blocks_allocated) {
        /* Nothing stored: the data area simply starts after the map. */
        g->offset_data = (uint32_t)needed;
        return 0;
    }
    return relocate(s, g, (uint32_t)vacate, (uint32_t)new_offset, errp);
}

/* The map of the new size: old entries (as relocated), then markers, or
 * for a static image new blocks at the end. */
static void fill_new_entries(const struct vdi_state *s, struct vdi_grow *g)
{
    for (uint32_t b = s->h.blocks_in_image; b < g->count; b++)
        g->entries[b] = s->h.image_type == VDI_TYPE_STATIC ? g->blocks_allocated++
                                                          : VDI_UNALLOCATED;
}

/* A static image's new blocks: the file grows sparse to hold them. */
static int extend_file(diskimg_node *file, const struct vdi_header *h, GError **errp)
{
    uint64_t end = (uint64_t)h->offset_data + (uint64_t)h->blocks_allocated * h->block_size;
    int64_t cur = diskimg_node_size(file, errp);

    if (cur < 0)
        return -1;
    if ((uint64_t)cur >= end)
        return 0;
    return diskimg_node_truncate(file, end, DISKIMG_PREALLOC_OFF, 0, errp);
}

/* Writes the new map and zeroes from its end to the data area (bytes
 * there held moved blocks, or nothing), then the header. */
static int write_layout(struct vdi_state *s, const struct vdi_grow *g, uint64_t size,
                        GError **errp)
{
    struct vdi_header h = s->h;
    struct diskimg_blockmap_layout layout;
    diskimg_blockmap *map = NULL;

    h.offset_data = g->offset_data;
    h.disk_size = size;
    h.blocks_in_image = g->count;
    h.blocks_allocated = g->blocks_allocated;
    vdi_map_layout(&h, &layout);
    if (diskimg_blockmap_new_filled(&map, &layout, h.offset_bmap, g->count, VDI_UNALLOCATED,
                                    errp) < 0)
        return -1;
    for (uint32_t b = 0; b < g->count; b++)
        diskimg_blockmap_set(map, b, g->entries[b]);
    uint64_t map_end = (uint64_t)h.offset_bmap + (uint64_t)g->count * 4;
    if (diskimg_blockmap_write_back(map, s->file, errp) < 0 ||
        (h.offset_data > map_end &&
         diskimg_node_write_zeroes(s->file, map_end, h.offset_data - map_end, 0, errp) < 0) ||
        (h.image_type == VDI_TYPE_STATIC && extend_file(s->file, &h, errp) < 0) ||
        diskimg_node_flush(s->file, errp) < 0) {
        diskimg_blockmap_free(map);
        return -1;
    }
    diskimg_put_le32(s->raw_header + VDI_OFF_OFFSET_DATA, h.offset_data);
    diskimg_put_le64(s->raw_header + VDI_OFF_DISK_SIZE, h.disk_size);
    diskimg_put_le32(s->raw_header + VDI_OFF_BLOCKS_IN_IMAGE, h.blocks_in_image);
    diskimg_blockmap_free(s->map);
    s->map = map;
    s->h = h;
    s->header_dirty = true;
    return vdi_write_metadata(s, errp);
}

/* The size checks qemu's create applies, and growing only. */
static int check_new_size(const struct vdi_state *s, uint64_t size, enum diskimg_prealloc prealloc,
                          GError **errp)
{
    if (prealloc != DISKIMG_PREALLOC_OFF)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported preallocation mode '%s'",
                                 (unsigned)prealloc < G_N_ELEMENTS(prealloc_names)
                                     ? prealloc_names[prealloc] : "?");
    if (size < s->h.disk_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Shrinking images is currently not supported");
    if (size > VDI_DISK_SIZE_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Unsupported VDI image size (size is 0x%" PRIx64
                                 ", max supported is 0x%" PRIx64 ")", size, VDI_DISK_SIZE_MAX);
    return 0;
}

int vdi_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                 GError **errp)
{
    struct vdi_state *s = h;

    (void)flags;
    /* qemu counts VDI sizes in sectors (create rounds up the same way). */
    if (size <= UINT64_MAX - (VDI_SECTOR - 1))
        size = (size + VDI_SECTOR - 1) / VDI_SECTOR * VDI_SECTOR;
    if (check_new_size(s, size, prealloc, errp) < 0)
        return -1;
    /* Pending allocations go to disk first, and the file is sized on our
     * own terms from here on. */
    if (vdi_flush(s, errp) < 0 ||
        (s->tail && diskimg_tail_trim(s->tail, vdi_used_end(s), errp) < 0))
        return -1;
    uint64_t blocks = (size + s->h.block_size - 1) / s->h.block_size;
    struct vdi_grow g = { .count = (uint32_t)MAX(blocks, s->h.blocks_in_image) };
    g.entries = g_try_new(uint32_t, g.count ? g.count : 1);
    if (!g.entries)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory",
                                 s->filename);
    for (uint32_t b = 0; b < s->h.blocks_in_image; b++)
        g.entries[b] = diskimg_blockmap_value(s->map, b);
    int ret = plan_data_area(s, &g, errp);
    if (ret == 0) {
        fill_new_entries(s, &g);
        ret = write_layout(s, &g, size, errp);
    }
    g_free(g.entries);
    return ret;
}
