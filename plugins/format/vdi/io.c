/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data of VDI images: reads, writes allocating blocks at the
 * end of the file, zero writes, block status and flush.
 *
 * Writes update the block map and the header in memory only; flush (and
 * FUA writes, and close) make the data durable first and then write the
 * changed parts of the map and the header.  A crash in between leaves
 * data blocks the map does not name yet, which the next allocation reuses:
 * the image stays consistent.
 */
#include "vdi.h"

uint64_t vdi_used_end(const struct vdi_state *s)
{
    return (uint64_t)s->h.offset_data + (uint64_t)s->h.blocks_allocated * s->h.block_size;
}

/* Both markers read as zeroes in qemu, as the toolkit's read gives them. */
int vdi_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct vdi_state *s = h;

    return diskimg_blockmap_read(s->map, s->file, buf, len, offset, errp);
}

/* Gives the `count` blocks from guest block `first` on new data blocks,
 * consecutive in the file; *host is where the first one starts and
 * *zeroed whether the new blocks are known to read as zeroes. */
static int allocate_blocks(struct vdi_state *s, uint32_t first, uint32_t count,
                           uint64_t *host, bool *zeroed, GError **errp)
{
    uint64_t used_end = vdi_used_end(s);

    if ((uint64_t)s->h.blocks_allocated + count > s->h.blocks_in_image)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: no free block left (blocks_allocated %" PRIu32
                                 " of %" PRIu32 ", block map has gaps); run 'check -r all'",
                                 s->filename, s->h.blocks_allocated, s->h.blocks_in_image);
    for (uint32_t i = 0; i < count; i++)
        diskimg_blockmap_set(s->map, first + i, s->h.blocks_allocated + i);
    s->h.blocks_allocated += count;
    s->header_dirty = true;
    *host = used_end;
    *zeroed = s->tail && diskimg_tail_reserve(s->tail, used_end,
                                              (uint64_t)count * s->h.block_size, used_end);
    return 0;
}

/* Writes a run of blocks that had no storage: allocates them, zeroes what
 * the guest write leaves out unless the new space is known to be zero,
 * then writes the data. */
static int write_new_blocks(void *opaque, const uint8_t *data, uint64_t len, uint64_t offset,
                            GError **errp)
{
    struct vdi_state *s = opaque;
    uint64_t bs = s->h.block_size;
    uint32_t first = (uint32_t)(offset / bs);
    uint64_t run_start = (uint64_t)first * bs;
    uint64_t run_end = (offset + len + bs - 1) / bs * bs;
    uint32_t count = (uint32_t)((run_end - run_start) / bs);
    uint32_t marker = diskimg_blockmap_value(s->map, first);        /* the whole run has it */
    uint32_t allocated_before = s->h.blocks_allocated;
    uint64_t host = 0;
    bool zeroed = false;

    if (allocate_blocks(s, first, count, &host, &zeroed, errp) < 0)
        return -1;
    uint64_t head = offset - run_start, tail = run_end - (offset + len);
    if (diskimg_write_padded(s->file, host, head, data, len, tail, zeroed, errp) < 0) {
        /* Give the blocks back: the map must not name storage that does
         * not hold what the guest wrote. */
        for (uint32_t i = 0; i < count; i++)
            diskimg_blockmap_set(s->map, first + i, marker);
        s->h.blocks_allocated = allocated_before;
        /* What failed may have left bytes there: nothing beyond the
         * allocations in use is known to be zero any more. */
        if (s->tail)
            diskimg_tail_forget(s->tail);
        return -1;
    }
    return 0;
}

int vdi_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp)
{
    struct vdi_state *s = h;

    if (diskimg_blockmap_write(s->map, s->file, buf, len, offset, write_new_blocks, s,
                               errp) < 0)
        return -1;
    return (flags & DISKIMG_WRITE_FUA) ? vdi_flush(s, errp) : 0;
}

/* Blocks without storage already read as zeroes; stored ones get their
 * bytes zeroed in the file (VDI has no way to free a block in the middle
 * of the data area, so nothing is deallocated). */
int vdi_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct vdi_state *s = h;

    if (diskimg_blockmap_zero_mapped(s->map, s->file, offset, len, flags & ~DISKIMG_WRITE_FUA,
                                     errp) < 0)
        return -1;
    return (flags & DISKIMG_WRITE_FUA) ? vdi_flush(s, errp) : 0;
}

/* qemu 7.2's BDRV_BLOCK_RECURSE: the bytes stay data, and a hole of the
 * file beneath them adds "reads as zeroes" (qemu-img map shows
 * "zero": true, "data": true for the unwritten parts of a static image). */
static int add_file_zeroes(struct vdi_state *s, struct diskimg_extent *ext, GError **errp)
{
    struct diskimg_extent sub = { .struct_size = sizeof(sub) };

    if (diskimg_node_block_status(s->file, ext->offset, ext->length, &sub, errp) < 0)
        return -1;
    if (sub.length < ext->length)
        ext->length = sub.length;
    if (sub.flags & DISKIMG_BS_ZERO)
        ext->flags |= DISKIMG_BS_ZERO;
    return 0;
}

/* As qemu: blocks without storage are zero (and defined by this layer),
 * stored blocks data at their offset; for a static image the file tells
 * which of them are holes. */
int vdi_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp)
{
    struct vdi_state *s = h;
    enum diskimg_blockmap_kind kind;
    uint64_t host;

    ext->length = diskimg_blockmap_run(s->map, offset, len, &kind, &host);
    if (kind != DISKIMG_BLOCKMAP_MAPPED) {
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
        return 0;
    }
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_OFFSET_VALID;
    ext->offset = host;
    ext->file = s->file;
    return s->h.image_type == VDI_TYPE_STATIC ? add_file_zeroes(s, ext, errp) : 0;
}

int vdi_flush(void *h, GError **errp)
{
    struct vdi_state *s = h;

    if (!diskimg_blockmap_is_dirty(s->map) && !s->header_dirty)
        return 0;
    /* The data the new entries point at must be on disk before them. */
    if (diskimg_node_flush(s->file, errp) < 0)
        return -1;
    return vdi_write_metadata(s, errp);
}
