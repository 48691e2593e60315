/* SPDX-License-Identifier: MIT */
/*
 * check.c — qemu 7.2's VDI check (block map entries beyond the image,
 * blocks used twice, allocation count), with repair, which qemu lacks:
 *
 *   - entries beyond the image and second users of a block lose their
 *     mapping (they read as zeroes; their content was not recoverable);
 *   - blocks above the new allocation count move down into unused slots,
 *     so that the data area is dense again and qemu's rule "the next
 *     block is number blocks_allocated" holds;
 *   - blocks_allocated is set to the number of blocks in use.
 */
#include <string.h>

#include "vdi.h"

struct check_run {
    struct vdi_state *s;
    struct diskimg_check_result *res;
    bool fix;
    bool changed;
};

static const char *verdict(const struct check_run *c)
{
    return c->fix ? "Repairing" : "ERROR";
}

/* Clears the mapping of guest block `block` when repairing. */
static void unmap_when_fixing(struct check_run *c, uint32_t block)
{
    if (!c->fix)
        return;
    diskimg_blockmap_set(c->s->map, block, VDI_UNALLOCATED);
    c->res->corruptions_fixed++;
    c->changed = true;
}

/* qemu's pass over the map, in its order and words: entries beyond the
 * image, then blocks already used (qemu names the block twice).  Returns
 * qemu's count of in-range entries, second users included. */
static int scan_entries(struct check_run *c, uint32_t *counted, GError **errp)
{
    struct vdi_state *s = c->s;
    g_autofree uint8_t *seen = g_try_malloc0(s->h.blocks_in_image / 8 + 1);

    if (!seen)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory",
                                 s->filename);
    *counted = 0;
    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint32_t v = diskimg_blockmap_value(s->map, i);
        if (v >= VDI_DISCARDED)
            continue;
        if (v >= s->h.blocks_in_image) {
            diskimg_report("%s: block index %" PRIu32 " too large, is %" PRIu32, verdict(c),
                           i, v);
            c->res->corruptions++;
            unmap_when_fixing(c, i);
            continue;
        }
        (*counted)++;
        if (seen[v / 8] & (1u << (v % 8))) {
            diskimg_report("%s: block index %" PRIu32 " also used by %" PRIu32, verdict(c), v,
                           v);
            c->res->corruptions++;
            unmap_when_fixing(c, i);
        }
        seen[v / 8] |= (uint8_t)(1u << (v % 8));
    }
    return 0;
}

/* Mapped entries, counting those beyond the image as qemu does not. */
static uint32_t count_in_range(const struct vdi_state *s)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint32_t v = diskimg_blockmap_value(s->map, i);
        if (v < VDI_DISCARDED && v < s->h.blocks_in_image)
            n++;
    }
    return n;
}

/* Moves every block numbered `used` or above into a free slot below it. */
static int compact(struct vdi_state *s, uint32_t used, GError **errp)
{
    g_autofree uint8_t *taken = g_malloc0(used / 8 + 1);
    g_autofree uint8_t *buf = g_malloc(s->h.block_size);
    uint32_t slot = 0;

    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint32_t v = diskimg_blockmap_value(s->map, i);
        if (v < used)
            taken[v / 8] |= (uint8_t)(1u << (v % 8));
    }
    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint32_t v = diskimg_blockmap_value(s->map, i);
        if (v >= VDI_DISCARDED || v < used)
            continue;
        while (taken[slot / 8] & (1u << (slot % 8)))
            slot++;
        uint64_t from = s->h.offset_data + (uint64_t)v * s->h.block_size;
        uint64_t to = s->h.offset_data + (uint64_t)slot * s->h.block_size;
        if (diskimg_node_pread(s->file, buf, s->h.block_size, from, errp) < 0 ||
            diskimg_node_pwrite(s->file, buf, s->h.block_size, to, 0, errp) < 0)
            return -1;
        diskimg_blockmap_set(s->map, i, slot);
        taken[slot / 8] |= (uint8_t)(1u << (slot % 8));
    }
    return 0;
}

static int repair_allocation_count(struct check_run *c, uint32_t used, GError **errp)
{
    struct vdi_state *s = c->s;

    if (compact(s, used, errp) < 0)
        return -1;
    s->h.blocks_allocated = used;
    s->header_dirty = true;
    c->changed = true;
    if (s->tail)
        diskimg_tail_forget(s->tail);
    return 0;
}

/* qemu's count check, and ours: an entry at or above the count is where
 * the next allocation would go. */
static void report_count(struct check_run *c, uint32_t counted)
{
    struct vdi_state *s = c->s;

    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint32_t v = diskimg_blockmap_value(s->map, i);
        if (v < VDI_DISCARDED && v < s->h.blocks_in_image && v >= s->h.blocks_allocated) {
            diskimg_report("ERROR: block index %" PRIu32 " is %" PRIu32 ", not below "
                           "blocks_allocated %" PRIu32, i, v, s->h.blocks_allocated);
            c->res->corruptions++;
        }
    }
    if (counted != s->h.blocks_allocated) {
        diskimg_report("ERROR: allocated blocks mismatch, is %" PRIu32 ", should be %" PRIu32,
                       counted, s->h.blocks_allocated);
        c->res->corruptions++;
    }
}

/* After the entries were fixed: a dense data area and its true count. */
static int repair_count(struct check_run *c, GError **errp)
{
    struct vdi_state *s = c->s;
    uint32_t used = count_in_range(s);
    bool dense = true;

    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map) && dense; i++) {
        uint32_t v = diskimg_blockmap_value(s->map, i);
        if (v < VDI_DISCARDED && v >= used)
            dense = false;
    }
    if (dense && used == s->h.blocks_allocated)
        return 0;
    diskimg_report("Repairing: allocated blocks mismatch, is %" PRIu32 ", should be %" PRIu32,
                   used, s->h.blocks_allocated);
    c->res->corruptions++;
    if (repair_allocation_count(c, used, errp) < 0)
        return -1;
    c->res->corruptions_fixed++;
    return 0;
}

int vdi_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct vdi_state *s = h;
    struct check_run c = { .s = s, .res = res, .fix = (fix & DISKIMG_CHECK_FIX_ERRORS) != 0 };

    if (!s->map)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: opened for metadata only; cannot check", s->filename);

    uint32_t counted = 0;
    if (scan_entries(&c, &counted, errp) < 0) {
        res->check_errors++;
        return -1;
    }
    if (!c.fix) {
        report_count(&c, counted);
    } else if (repair_count(&c, errp) < 0) {
        return -1;
    }
    if (c.changed && vdi_flush(s, errp) < 0)
        return -1;
    return 0;
}
