/* SPDX-License-Identifier: MIT */
/*
 * tail.c — qcow2's use of the core's tail growth (diskimg_tail_*,
 * <diskimg/toolkit.h>): the host file grows ahead of allocation in large
 * steps, and clusters allocated in what growing added are known zeroes.
 *
 * qcow2 keeps the contract the core states: nothing is ever written to
 * the file outside clusters in use, and s->end_cluster (the end of the
 * clusters in use) only grows.  Close and every exclusive operation
 * (which may write or size the file on its own terms) trim the file back
 * to the end of the clusters in use, so the file ends where qemu's would.
 * A crash leaves the tail behind: space past the last cluster with
 * refcount 0, which is no leak for check, and which later allocations
 * reuse.
 *
 * Only for images whose data lives in their own file (an external data
 * file is addressed by guest offsets), and never taken as zeroes for
 * encrypted images (zeroes there are not the encryption of zeroes).
 */
#include "qcow2.h"

bool qcow2_tail_reserve(struct qcow2 *s, uint64_t host, uint64_t len, uint64_t old_end)
{
    if (!s->writable || !s->tail || s->data != s->file)
        return false;
    return diskimg_tail_reserve(s->tail, host, len, old_end) &&
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
    if (!s->tail)
        return 0;
    /* a corrupt image's allocation state is not to be trusted */
    if (s->corrupt) {
        diskimg_tail_forget(s->tail);
        return 0;
    }
    return diskimg_tail_trim(s->tail, used_end(s), errp);
}
