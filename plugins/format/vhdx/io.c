/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest requests: reads, writes, zero writes, block status, flush.
 *
 * The thread model is SERIALIZE_REQUESTS, so the handle needs no lock.
 * New payload blocks are allocated at the 1 MiB aligned end of the file,
 * which is extended to cover them first: what a partial write leaves
 * untouched reads as zeroes, as a fresh block must (no parent, so
 * NOT_PRESENT and ZERO both read as zeroes).  New BAT entries stay in
 * memory until flush (see bat.c).
 */
#include <string.h>

#include "vhdx.h"

static uint64_t entry_state(uint64_t e) { return e & VHDX_BAT_STATE_MASK; }
static uint64_t entry_offset(uint64_t e) { return e & VHDX_BAT_OFFSET_MASK; }

static uint64_t block_entry(const struct vhdx_state *s, uint64_t block)
{
    return s->bat[vhdx_bat_index(s, block)];
}

static bool present(uint64_t e)
{
    return entry_state(e) == VHDX_BLOCK_FULLY_PRESENT;
}

/* Only open for check lets other states through; refuse to use them. */
static int unusable(const struct vhdx_state *s, uint64_t block, GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: VHDX BAT entry %" PRIu64 " has state %u, which this plugin "
                             "cannot use", s->filename, block,
                             (unsigned)entry_state(block_entry(s, block)));
}

static bool readable_as_zero(uint64_t e)
{
    switch (entry_state(e)) {
    case VHDX_BLOCK_NOT_PRESENT:
    case VHDX_BLOCK_UNDEFINED:
    case VHDX_BLOCK_ZERO:
    case VHDX_BLOCK_UNMAPPED:
    case VHDX_BLOCK_UNMAPPED_V095:
        return true;
    default:
        return false;
    }
}

/* How many bytes from guest offset `off` (at most `len`) share the state
 * of its block, with consecutive host offsets when present. */
static uint64_t run_length(const struct vhdx_state *s, uint64_t off, uint64_t len)
{
    uint64_t bs = s->block_size, block = off / bs;
    uint64_t first = block_entry(s, block);
    uint64_t run = MIN(len, bs - off % bs);

    while (run < len) {
        uint64_t next = block_entry(s, ++block);
        bool same = present(first) ? present(next) && entry_offset(next) ==
                                         entry_offset(first) + (block - off / bs) * bs
                                   : entry_state(next) == entry_state(first);
        if (!same)
            break;
        run = MIN(len, run + bs);
    }
    return run;
}

int vhdx_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct vhdx_state *s = h;
    uint8_t *p = buf;

    while (len) {
        uint64_t block = offset / s->block_size, e = block_entry(s, block);
        uint64_t n = run_length(s, offset, len);
        if (present(e)) {
            if (diskimg_node_pread(s->file, p, n, entry_offset(e) + offset % s->block_size,
                                   errp) < 0)
                return -1;
        } else if (readable_as_zero(e)) {
            memset(p, 0, n);
        } else {
            return unusable(s, block, errp);
        }
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}

/* The spec's rule, which qemu follows: the first write of guest-visible
 * data in a session changes the data write GUID (both headers). */
static int before_guest_write(struct vhdx_state *s, GError **errp)
{
    if (s->data_guid_updated)
        return 0;
    if (vhdx_update_headers(s, true, NULL, errp) < 0)
        return -1;
    s->data_guid_updated = true;
    return 0;
}

/* A new payload block for `block` at the end of the file.  alloc_end is
 * never below the end of the file (open rounds the size up, only this
 * grows it), so the truncate only ever extends, with zeroes.  The entry
 * is set before the data is written: if that write fails, the block still
 * reads as the zeroes the old entry stood for. */
static int allocate_block(struct vhdx_state *s, uint64_t block, GError **errp)
{
    uint64_t off = s->alloc_end;

    if (off + s->block_size > (UINT64_C(1) << 63))
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "%s: file too large",
                                 s->filename);
    if (diskimg_node_truncate(s->file, off + s->block_size, DISKIMG_PREALLOC_OFF, 0,
                              errp) < 0)
        return -1;
    s->alloc_end = off + s->block_size;
    vhdx_bat_set(s, block, off | VHDX_BLOCK_FULLY_PRESENT);
    return 0;
}

int vhdx_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp)
{
    struct vhdx_state *s = h;
    const uint8_t *p = buf;

    if (before_guest_write(s, errp) < 0)
        return -1;
    while (len) {
        uint64_t block = offset / s->block_size, e = block_entry(s, block);
        uint64_t n = MIN(len, s->block_size - offset % s->block_size);
        if (!present(e)) {
            if (!readable_as_zero(e))
                return unusable(s, block, errp);
            if (allocate_block(s, block, errp) < 0)
                return -1;
            e = block_entry(s, block);
        } else {
            n = run_length(s, offset, len);
        }
        uint64_t at = entry_offset(e) + offset % s->block_size;
        if (vhdx_guard_data_write(s, at, n, errp) < 0 ||
            diskimg_node_pwrite(s->file, p, n, at, 0, errp) < 0)
            return -1;
        p += n;
        offset += n;
        len -= n;
    }
    return (flags & DISKIMG_WRITE_FUA) ? vhdx_flush(s, errp) : 0;
}

int vhdx_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct vhdx_state *s = h;

    if (before_guest_write(s, errp) < 0)
        return -1;
    while (len) {
        uint64_t block = offset / s->block_size, e = block_entry(s, block);
        uint64_t in = offset % s->block_size;
        uint64_t n = MIN(len, s->block_size - in);
        /* A block that reads as zeroes already needs nothing. */
        if (present(e)) {
            bool whole = in == 0 && n == s->block_size;
            /* A fixed image keeps its blocks (LeaveBlocksAllocated). */
            bool keep = s->param_flags & VHDX_PARAM_LEAVE_ALLOCATED;
            if (whole && !keep && (flags & DISKIMG_WRITE_MAY_UNMAP)) {
                /* Its space is not reused (vhdx keeps no free list; qemu
                 * neither), but reads no longer touch it. */
                vhdx_bat_set(s, block, VHDX_BLOCK_ZERO);
            } else if (vhdx_guard_data_write(s, entry_offset(e) + in, n, errp) < 0 ||
                       diskimg_node_write_zeroes(s->file, entry_offset(e) + in, n, 0,
                                                 errp) < 0) {
                return -1;
            }
        } else if (!readable_as_zero(e)) {
            return unusable(s, block, errp);
        }
        offset += n;
        len -= n;
    }
    return (flags & DISKIMG_WRITE_FUA) ? vhdx_flush(s, errp) : 0;
}

int vhdx_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                      GError **errp)
{
    struct vhdx_state *s = h;
    uint64_t block = offset / s->block_size, e = block_entry(s, block);

    ext->length = run_length(s, offset, len);
    if (present(e)) {
        /* The host file may have holes inside a block (qemu writes only
         * what the guest wrote): let the core ask it. */
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_OFFSET_VALID |
                     DISKIMG_BS_RECURSE;
        ext->offset = entry_offset(e) + offset % s->block_size;
        ext->file = s->file;
    } else if (readable_as_zero(e)) {
        /* Without a parent (differencing images are refused) this layer
         * defines every block: ZERO, NOT_PRESENT and UNMAPPED read as
         * zeroes. */
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
    } else {
        return unusable(s, block, errp);
    }
    return 0;
}

int vhdx_flush(void *h, GError **errp)
{
    return vhdx_bat_write_back(h, errp);
}
