/* SPDX-License-Identifier: MIT */
/*
 * tail.c — the host file grows ahead of allocation, in large steps.
 *
 * New clusters are allocated at the end of the file.  Writing each one
 * past EOF, or zeroing the part of it a write leaves out, changes the file
 * size, and on Linux file systems that waits for every direct I/O in
 * flight on the file: a queue of parallel writes drains at every new
 * cluster.  Instead, when an allocation reaches past the end, the file
 * grows with one preallocating truncate by max(1 MiB, size / 8) (at most
 * 64 MiB), and clusters allocated in what was added are known to read as
 * zeroes: no zeroing is needed around the data written into them.
 *
 * Why that holds: nothing is ever written to the file outside clusters in
 * use, and s->end_cluster (the end of the clusters in use) only grows.  So
 * a cluster at or beyond both tail_from (the file size before our first
 * growth) and end_cluster as it was before its allocation was never
 * written since the file was grown past it.
 *
 * Close and every exclusive operation (which may write or size the file
 * on its own terms) cut the file back to the end of the clusters in use,
 * never below tail_from: the file ends where qemu's would.  A crash leaves
 * the tail behind: space past the last cluster with refcount 0, which is
 * no leak for check, and which later allocations reuse.
 *
 * Only for images whose data lives in their own file (an external data
 * file is addressed by guest offsets), and never taken as zeroes for
 * encrypted images (zeroes there are not the encryption of zeroes).
 */
#include "qcow2.h"

#define TAIL_MIN_STEP (1ull << 20)
#define TAIL_MAX_STEP (64ull << 20)

/* Makes the file at least `need` bytes long, growing by a step that keeps
 * growths rare.  Failure is not an error: the writes extend the file
 * themselves, as without this; growing is just not tried again. */
static void grow(struct qcow2 *s, uint64_t need)
{
    GError *err = NULL;
    int64_t cur = diskimg_node_size(s->file, &err);
    if (cur >= 0 && (uint64_t)cur >= need) {
        s->tail_end = (uint64_t)cur;    /* metadata writes extended it */
        return;
    }
    if (cur >= 0) {
        uint64_t step = CLAMP((uint64_t)cur / 8, TAIL_MIN_STEP, TAIL_MAX_STEP);
        uint64_t to = MAX(need, (uint64_t)cur + step);
        to = (to + s->cluster_size - 1) & ~(s->cluster_size - 1);
        if (diskimg_node_truncate(s->file, to, DISKIMG_PREALLOC_FALLOC, 0, &err) == 0) {
            if (!s->tail_from)
                s->tail_from = (uint64_t)cur;
            s->tail_end = to;
            return;
        }
    }
    s->tail_off = true;
    g_clear_error(&err);
}

bool qcow2_tail_reserve(struct qcow2 *s, uint64_t host, uint64_t len, uint64_t old_end)
{
    if (!s->writable || s->tail_off || s->data != s->file)
        return false;
    if (host + len > s->tail_end)
        grow(s, host + len);
    return s->tail_from && host >= s->tail_from && host >= old_end &&
           s->h.crypt_method == QCOW2_CRYPT_NONE;
}

/* Where the clusters in use end: a compressed cluster being filled ends
 * where its last bytes do, as qemu's file would. */
static uint64_t used_end(const struct qcow2 *s)
{
    uint64_t end = s->end_cluster << s->cluster_bits;
    if (s->free_byte_offset && (s->free_byte_offset >> s->cluster_bits) + 1 == s->end_cluster)
        end = s->free_byte_offset;
    return end;
}

int qcow2_tail_trim(struct qcow2 *s, GError **errp)
{
    uint64_t from = s->tail_from;
    s->tail_from = s->tail_end = 0;
    if (!from)
        return 0;
    uint64_t keep = MAX(from, used_end(s));
    /* a corrupt image's allocation state is not to be trusted */
    if (s->corrupt)
        return 0;
    int64_t cur = diskimg_node_size(s->file, errp);
    if (cur < 0)
        return -1;
    if ((uint64_t)cur <= keep)
        return 0;
    return diskimg_node_truncate(s->file, keep, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                                 errp);
}
