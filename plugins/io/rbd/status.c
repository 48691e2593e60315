/* SPDX-License-Identifier: MIT */
/*
 * status.c — block status of an rbd image: is the byte at an offset data
 * or a hole, and how far does that go.
 *
 * rbd_diff_iterate2 from no snapshot lists the extents written since the
 * image was made (with the parent's, for clones), in offset order; what it
 * leaves out reads as zeroes.  whole_object = false gives extents inside
 * objects, so a hole inside a 4 MiB object is skipped too.  The walk stops
 * at the first change between data and hole, so one call costs one run.
 * The query starts at the object boundary below the offset: librbd before
 * 1.17 could report wrong extents for unaligned starts (Ceph tracker
 * 53784), and whole objects are what it looks up anyway.
 */
#include <errno.h>

#include "rbd-handle.h"

/* Longest range one call looks at: bounds its time on a large image. */
#define STATUS_WINDOW (UINT64_C(1) << 30)
/* Our callback's way to end the walk early (no errno has this value). */
#define WALK_STOP (-100000)

struct status_walk {
    uint64_t offset;       /* the caller's offset */
    bool data;             /* offset lies in data */
    uint64_t run_end;      /* data: end of the run so far; hole: first data after it */
    bool hole_bounded;     /* hole: run_end was found */
};

static int walk_extent(uint64_t offs, size_t len, int exists, void *opaque)
{
    struct status_walk *w = opaque;
    uint64_t end = offs + len;
    /* Diffs from a snapshot report removed extents; from none, none. */
    if (!exists || end <= w->offset)
        return 0;
    if (w->data) {
        if (offs > w->run_end)
            return WALK_STOP;          /* a hole after the run */
        w->run_end = MAX(w->run_end, end);
        return 0;
    }
    if (offs <= w->offset) {
        w->data = true;                /* the offset itself holds data */
        w->run_end = end;
        return 0;
    }
    w->run_end = offs;                 /* a hole up to the first data */
    w->hole_bounded = true;
    return WALK_STOP;
}

static void set_extent(struct rbd_handle *h, struct diskimg_extent *ext, uint64_t offset,
                       uint64_t len, uint32_t flags)
{
    ext->flags = flags | DISKIMG_BS_OFFSET_VALID;
    ext->length = len;
    ext->offset = offset;
    ext->file = h->node;
}

int rbd_io_block_status(void *opaque, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp)
{
    struct rbd_handle *h = opaque;
    if (len == 0 || offset + len < offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: invalid block status request at offset %" PRIu64,
                                 h->name, offset);
    int64_t size = rbd_io_get_size(h, errp);
    if (size < 0)
        return -1;
    if (offset >= (uint64_t)size) {
        set_extent(h, ext, offset, len, DISKIMG_BS_ZERO);   /* past the end */
        return 0;
    }
    uint64_t end = MIN(MIN(offset + len, (uint64_t)size), offset + STATUS_WINDOW);
    uint64_t start = offset - offset % h->object_size;
    struct status_walk w = { .offset = offset };
    int r = rbd_diff_iterate2(h->image, NULL, start, end - start, 1, 0, walk_extent, &w);
    if (r < 0 && r != WALK_STOP) {
        /* As qemu: without an answer, everything is data (never a hole
         * that would lose bytes). */
        set_extent(h, ext, offset, end - offset, DISKIMG_BS_DATA);
        return 0;
    }
    uint64_t run_end = (w.data || w.hole_bounded) ? MIN(w.run_end, end) : end;
    set_extent(h, ext, offset, run_end - offset, w.data ? DISKIMG_BS_DATA : DISKIMG_BS_ZERO);
    return 0;
}
