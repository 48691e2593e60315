/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data: reads, writes, zero writes and block status.
 *
 * A fixed disk maps guest offset x to file offset x.  A dynamic disk maps
 * it through the BAT; reads of an unallocated block are zeroes.  As in
 * qemu 7.2, an allocated block is read whole (its sector bitmap is not
 * consulted) and every block we write to gets a full bitmap, so what any
 * reader sees agrees with what we read.
 *
 * Thread model PARALLEL: a fixed disk keeps no state, so its requests go
 * straight to the file.  A dynamic disk's reads, zero writes and block
 * status share s->lock (they only look the BAT up); writes hold it alone,
 * since they may allocate (BAT, next_block, bitmap_full).
 */
#include <string.h>

#include "vpc.h"

static uint64_t block_start(const struct vpc *s, uint32_t index)
{
    return (uint64_t)s->bat[index] * VPC_SECTOR;
}

/* Guest offset -> file offset of the data, in an allocated block. */
static uint64_t data_offset(const struct vpc *s, uint32_t index, uint64_t in_block)
{
    return block_start(s, index) + s->bitmap_size + in_block;
}

/* Splits [offset, offset+len) at block boundaries: the block index, the
 * offset in the block and how much of the request lies in it. */
struct piece {
    uint32_t index;
    uint64_t in_block;
    uint64_t len;
};

static struct piece piece_at(const struct vpc *s, uint64_t offset, uint64_t len)
{
    uint64_t in = offset % s->block_size;
    return (struct piece){
        .index = (uint32_t)(offset / s->block_size),
        .in_block = in,
        .len = MIN(len, s->block_size - in),
    };
}

static int read_dynamic(struct vpc *s, uint8_t *out, uint64_t len, uint64_t offset,
                        GError **errp)
{
    while (len > 0) {
        struct piece p = piece_at(s, offset, len);
        if (s->bat[p.index] == VPC_BAT_UNUSED)
            memset(out, 0, p.len);
        else if (diskimg_node_pread(s->file, out, p.len, data_offset(s, p.index, p.in_block),
                                    errp) < 0)
            return -1;
        out += p.len;
        offset += p.len;
        len -= p.len;
    }
    return 0;
}

int vpc_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct vpc *s = h;

    if (s->fixed)
        return diskimg_node_pread(s->file, buf, len, offset, errp);
    g_rw_lock_reader_lock(&s->lock);
    int ret = read_dynamic(s, buf, len, offset, errp);
    g_rw_lock_reader_unlock(&s->lock);
    return ret;
}

static int write_full_bitmap(struct vpc *s, uint64_t at, GError **errp)
{
    g_autofree uint8_t *bitmap = g_malloc(s->bitmap_size);

    memset(bitmap, 0xff, s->bitmap_size);
    return diskimg_node_pwrite(s->file, bitmap, s->bitmap_size, at, 0, errp);
}

static bool bitmap_known_full(const struct vpc *s, uint32_t index)
{
    return s->bitmap_full[index / 8] & (1u << (index % 8));
}

static void set_bitmap_known_full(struct vpc *s, uint32_t index)
{
    s->bitmap_full[index / 8] |= (uint8_t)(1u << (index % 8));
}

/* Before writing into a block another tool made, mark all its sectors
 * present.  qemu rewrites the bitmap whenever it switches blocks; one
 * bit per block remembers which bitmaps are already full. */
static int ensure_full_bitmap(struct vpc *s, uint32_t index, GError **errp)
{
    if (bitmap_known_full(s, index))
        return 0;
    if (write_full_bitmap(s, block_start(s, index), errp) < 0)
        return -1;
    set_bitmap_known_full(s, index);
    return 0;
}

static int write_bat_entry(struct vpc *s, uint32_t index, GError **errp)
{
    uint8_t be[4];

    diskimg_put_be32(be, s->bat[index]);
    return diskimg_node_pwrite(s->file, be, sizeof(be), s->bat_offset + (uint64_t)index * 4, 0,
                               errp);
}

/* A new block at next_block, over the old footer: bitmap, then (when the
 * file already reaches into it) zeroes for stale bytes, then the footer
 * after it.  The BAT entry is written last, by the caller, once the data
 * is in place, so a crash leaves either the old state or the new block. */
static int allocate_block(struct vpc *s, uint32_t index, GError **errp)
{
    uint64_t start = s->next_block;
    uint64_t span = (uint64_t)s->bitmap_size + s->block_size;
    uint64_t data = start + s->bitmap_size;
    int64_t file_size = diskimg_node_size(s->file, errp);

    if (file_size < 0)
        return -1;
    if (start / VPC_SECTOR >= VPC_BAT_UNUSED)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "%s: no room for another block (a VHD addresses 2 TiB of "
                                 "file)", diskimg_node_filename(s->file));
    const char *hit = diskimg_guard_find(s->guard, 0, start, span);
    if (hit)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: Preventing invalid write on metadata (a new block at "
                                 "0x%" PRIx64 " overlaps the %s)",
                                 diskimg_node_filename(s->file), start, hit);
    if (write_full_bitmap(s, start, errp) < 0)
        return -1;
    if ((uint64_t)file_size > data &&
        diskimg_node_write_zeroes(s->file, data, MIN((uint64_t)file_size - data, s->block_size),
                                  0, errp) < 0)
        return -1;
    if (diskimg_node_pwrite(s->file, s->footer_bytes, VPC_FOOTER_SIZE, start + span, 0,
                            errp) < 0)
        return -1;
    s->next_block = start + span;
    s->bat[index] = (uint32_t)(start / VPC_SECTOR);
    set_bitmap_known_full(s, index);
    return 0;
}

static int write_piece(struct vpc *s, const struct piece *p, const uint8_t *data,
                       GError **errp)
{
    bool fresh = s->bat[p->index] == VPC_BAT_UNUSED;

    if (fresh ? allocate_block(s, p->index, errp) < 0 : ensure_full_bitmap(s, p->index, errp) < 0)
        return -1;
    if (diskimg_node_pwrite(s->file, data, p->len, data_offset(s, p->index, p->in_block), 0,
                            errp) < 0)
        goto undo;
    if (fresh && write_bat_entry(s, p->index, errp) < 0)
        goto undo;
    return 0;

undo:
    /* The block is not linked on disk; forget it in memory too.  Its
     * space stays used (next_block does not go back), which is safe. */
    if (fresh)
        s->bat[p->index] = VPC_BAT_UNUSED;
    return -1;
}

static int write_dynamic(struct vpc *s, const uint8_t *in, uint64_t len, uint64_t offset,
                         GError **errp)
{
    while (len > 0) {
        struct piece p = piece_at(s, offset, len);
        if (write_piece(s, &p, in, errp) < 0)
            return -1;
        in += p.len;
        offset += p.len;
        len -= p.len;
    }
    return 0;
}

int vpc_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp)
{
    struct vpc *s = h;

    if (s->fixed)
        return diskimg_node_pwrite(s->file, buf, len, offset, flags, errp);
    g_rw_lock_writer_lock(&s->lock);
    int ret = write_dynamic(s, buf, len, offset, errp);
    g_rw_lock_writer_unlock(&s->lock);
    /* FUA covers the data and the metadata an allocation wrote. */
    if (ret == 0 && (flags & DISKIMG_WRITE_FUA))
        ret = diskimg_node_flush(s->file, errp);
    return ret;
}

/* Unallocated blocks already read as zeroes; allocated ones are zeroed in
 * place (a VHD cannot give a block back).  Never allocates. */
static int zero_dynamic(struct vpc *s, uint64_t offset, uint64_t len, unsigned flags,
                        GError **errp)
{
    while (len > 0) {
        struct piece p = piece_at(s, offset, len);
        if (s->bat[p.index] != VPC_BAT_UNUSED &&
            diskimg_node_write_zeroes(s->file, data_offset(s, p.index, p.in_block), p.len,
                                      flags, errp) < 0)
            return -1;
        offset += p.len;
        len -= p.len;
    }
    return 0;
}

int vpc_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct vpc *s = h;

    if (s->fixed)
        return diskimg_node_write_zeroes(s->file, offset, len, flags, errp);
    g_rw_lock_reader_lock(&s->lock);
    int ret = zero_dynamic(s, offset, len, flags, errp);
    g_rw_lock_reader_unlock(&s->lock);
    return ret;
}

/* Fixed: data mapped 1:1, and qemu's BDRV_BLOCK_RECURSE: still data, but
 * zero where the file has a hole.  (The core's RECURSE would replace DATA
 * with the file's answer; qemu keeps it, so the plugin asks itself.) */
static int fixed_status(struct vpc *s, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp)
{
    struct diskimg_extent sub = { .struct_size = sizeof(sub) };

    if (diskimg_node_block_status(s->file, offset, len, &sub, errp) < 0)
        return -1;
    ext->length = sub.length ? MIN(sub.length, len) : len;
    ext->flags = DISKIMG_BS_DATA | (sub.flags & DISKIMG_BS_ZERO) | DISKIMG_BS_OFFSET_VALID |
                 DISKIMG_BS_ALLOCATED;
    ext->offset = offset;
    ext->file = s->file;
    return 0;
}

static void dynamic_status(struct vpc *s, uint64_t offset, uint64_t len,
                           struct diskimg_extent *ext)
{
    struct piece p = piece_at(s, offset, len);
    if (s->bat[p.index] != VPC_BAT_UNUSED) {
        /* One block at most: its neighbour is behind a bitmap. */
        ext->length = p.len;
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_OFFSET_VALID | DISKIMG_BS_ALLOCATED;
        ext->offset = data_offset(s, p.index, p.in_block);
        ext->file = s->file;
        return;
    }
    /* A run of unallocated blocks reads as zeroes, defined by this layer
     * (a VHD without a parent has nothing below). */
    uint64_t run = 0;
    while (run < len) {
        p = piece_at(s, offset + run, len - run);
        if (s->bat[p.index] != VPC_BAT_UNUSED)
            break;
        run += p.len;
    }
    ext->length = run;
    ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
}

int vpc_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp)
{
    struct vpc *s = h;

    if (s->fixed)
        return fixed_status(s, offset, len, ext, errp);
    g_rw_lock_reader_lock(&s->lock);
    dynamic_status(s, offset, len, ext);
    g_rw_lock_reader_unlock(&s->lock);
    return 0;
}
