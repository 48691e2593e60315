/* SPDX-License-Identifier: MIT */
/*
 * tailgrow.c — a host file grows ahead of allocation, in large steps, and
 * what growing added is known to read as zeroes (toolkit.h).
 *
 * Formats allocate new clusters at the end of their file.  Writing each
 * one past EOF, or zeroing the part of it a write leaves out, changes the
 * file size, and on Linux file systems that waits for every direct I/O in
 * flight on the file: a queue of parallel writes drains at every new
 * cluster.  Instead, when an allocation reaches past the end, the file
 * grows with one preallocating truncate by max(1 MiB, size / 8) (at most
 * 64 MiB), and clusters allocated in what was added are known to read as
 * zeroes: no zeroing is needed around the data written into them.
 *
 * Why that holds, given the format's part of the contract (nothing is
 * written outside allocations in use, and the end of the allocations in
 * use only grows while the tail is kept): an allocation at or beyond both
 * `grown_from` (the file size before our first growth) and the end of the
 * allocations as it was before it was made was never written since the
 * file was grown past it.
 *
 * Growing is best effort: when the size cannot be read or the file cannot
 * grow (a device, no fallocate), writes extend the file themselves, as
 * without this, and growing is not tried again.
 */
#include "internal.h"
#include <diskimg/toolkit.h>

#define TAIL_MIN_STEP (1ull << 20)
#define TAIL_MAX_STEP (64ull << 20)

struct diskimg_tail {
    diskimg_node *file;
    uint64_t align;         /* growth ends on a multiple of this */
    uint64_t grown_from;    /* file size before our first growth, 0: not grown */
    uint64_t known_end;     /* the file is known to be at least this long */
    bool off;               /* growing failed: don't try again */
};

diskimg_tail *diskimg_tail_new(diskimg_node *file, uint32_t align)
{
    diskimg_tail *t = g_new0(diskimg_tail, 1);
    t->file = file;
    t->align = align && !(align & (align - 1)) ? align : 1;
    return t;
}

void diskimg_tail_free(diskimg_tail *t)
{
    g_free(t);
}

/* Makes the file at least `need` bytes long, growing by a step that keeps
 * growths rare. */
static void grow(diskimg_tail *t, uint64_t need)
{
    GError *err = NULL;
    int64_t cur = diskimg_node_size(t->file, &err);
    if (cur >= 0 && (uint64_t)cur >= need) {
        t->known_end = (uint64_t)cur;   /* metadata writes extended it */
        return;
    }
    if (cur >= 0) {
        uint64_t step = CLAMP((uint64_t)cur / 8, TAIL_MIN_STEP, TAIL_MAX_STEP);
        uint64_t to = MAX(need, (uint64_t)cur + step);
        to = (to + t->align - 1) & ~(t->align - 1);
        if (diskimg_node_truncate(t->file, to, DISKIMG_PREALLOC_FALLOC, 0, &err) == 0) {
            if (!t->grown_from)
                t->grown_from = (uint64_t)cur;
            t->known_end = to;
            return;
        }
    }
    t->off = true;
    g_clear_error(&err);
}

bool diskimg_tail_reserve(diskimg_tail *t, uint64_t off, uint64_t len, uint64_t used_end)
{
    if (t->off)
        return false;
    if (off + len > t->known_end)
        grow(t, off + len);
    return t->grown_from && off >= t->grown_from && off >= used_end;
}

uint64_t diskimg_tail_grown_from(const diskimg_tail *t)
{
    return t->grown_from;
}

void diskimg_tail_forget(diskimg_tail *t)
{
    t->grown_from = t->known_end = 0;
}

int diskimg_tail_trim(diskimg_tail *t, uint64_t used_end, GError **errp)
{
    uint64_t from = t->grown_from;
    diskimg_tail_forget(t);
    if (!from)
        return 0;
    /* never below where the file ended before we grew it: those bytes
     * are not ours to cut */
    uint64_t keep = MAX(from, used_end);
    int64_t cur = diskimg_node_size(t->file, errp);
    if (cur < 0)
        return -1;
    if ((uint64_t)cur <= keep)
        return 0;
    return diskimg_node_truncate(t->file, keep, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                                 errp);
}
