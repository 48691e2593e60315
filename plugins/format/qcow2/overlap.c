/* SPDX-License-Identifier: MIT */
/*
 * overlap.c — qcow2's declarations to the core's metadata-write guard
 * (diskimg/guard.h), qemu's "cached" overlap check.
 *
 * Structures with a fixed place (header cluster, active L1, refcount
 * table, snapshot table, bitmap directory, encryption header) are ranges,
 * declared again whenever one of them moved (a signature of their places
 * is compared on every query: O(1) when nothing moved).  Snapshot L1
 * tables and bitmap tables are read from s->snapshots / s->bitmaps, and
 * active L2 tables and refcount blocks from the L1 and refcount tables, by
 * probes: nothing is copied, so nothing can go stale.  Inactive L2 tables
 * are not checked (qemu's default leaves them out too: finding them means
 * reading every snapshot's L1 table).
 *
 * Queries are rounded out to whole clusters, as qemu does: two structures
 * never share a cluster.
 */
#include <string.h>

#include "qcow2.h"

struct qcow2_guard_sig {
    uint64_t l1_offset, l1_size, reftable_offset, reftable_clusters;
    uint64_t snapshots_offset, snapshots_size, bitmap_dir_offset, bitmap_dir_size;
    uint64_t crypto_offset, crypto_length, cluster_size;
};

static void signature(const struct qcow2 *s, struct qcow2_guard_sig *sig)
{
    memset(sig, 0, sizeof(*sig));
    sig->l1_offset = s->l1_offset;
    sig->l1_size = s->l1_size;
    sig->reftable_offset = s->h.reftable_offset;
    sig->reftable_clusters = s->h.reftable_clusters;
    if (s->nb_snapshots) {
        sig->snapshots_offset = s->h.snapshots_offset;
        sig->snapshots_size = s->snapshots_size;
    }
    if (s->h.has_bitmaps_ext) {
        sig->bitmap_dir_offset = s->h.bitmap_dir_offset;
        sig->bitmap_dir_size = s->h.bitmap_dir_size;
    }
    if (s->h.has_crypto_ext) {
        sig->crypto_offset = s->h.crypto_offset;
        sig->crypto_length = s->crypto_cut ? s->crypto_cut_length : s->h.crypto_length;
    }
    sig->cluster_size = s->cluster_size;
}

static void declare_fixed(struct qcow2 *s, const struct qcow2_guard_sig *sig)
{
    diskimg_guard *g = s->guard;
    diskimg_guard_clear(g, UINT32_MAX);
    diskimg_guard_add(g, QCOW2_OL_HEADER, "qcow2_header", 0, sig->cluster_size);
    diskimg_guard_add(g, QCOW2_OL_ACTIVE_L1, "active L1 table", sig->l1_offset,
                      sig->l1_size * 8);
    diskimg_guard_add(g, QCOW2_OL_REFCOUNT_TABLE, "refcount table", sig->reftable_offset,
                      sig->reftable_clusters * sig->cluster_size);
    diskimg_guard_add(g, QCOW2_OL_SNAPSHOT_TABLE, "snapshot table", sig->snapshots_offset,
                      sig->snapshots_size);
    diskimg_guard_add(g, QCOW2_OL_BITMAP_DIRECTORY, "bitmap directory", sig->bitmap_dir_offset,
                      sig->bitmap_dir_size);
    diskimg_guard_add(g, QCOW2_OL_CRYPTO_HEADER, "crypto header", sig->crypto_offset,
                      sig->crypto_length);
}

/* Overflow-safe: a damaged pointer opened for check may name any offset. */
static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    if (!alen || !blen)
        return false;
    return a >= b ? a - b < blen : b - a < alen;
}

/* A misaligned L1 entry names no L2 table: nothing reads or writes one
 * there (the table cache refuses the offset and marks the image corrupt),
 * so there is nothing to protect, and the clusters it straddles (the
 * header's, say) must stay writable for the repair that clears it. */
static bool probe_active_l2(void *opaque, uint64_t off, uint64_t len)
{
    const struct qcow2 *s = opaque;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK;
        if (l2 && !qcow2_offset_into_cluster(s, l2) && overlaps(off, len, l2, s->cluster_size))
            return true;
    }
    return false;
}

static bool probe_refblocks(void *opaque, uint64_t off, uint64_t len)
{
    const struct qcow2 *s = opaque;
    for (uint64_t i = 0; i < MIN(s->reftable_used, s->reftable_size); i++) {
        uint64_t b = s->reftable[i] & ~QCOW2_REFT_RESERVED;
        if (b && overlaps(off, len, b, s->cluster_size))
            return true;
    }
    return false;
}

static bool probe_inactive_l1(void *opaque, uint64_t off, uint64_t len)
{
    const struct qcow2 *s = opaque;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (qcow2_snapshot_l1_sane(s, sn->l1_offset, sn->l1_size) &&
            overlaps(off, len, sn->l1_offset, (uint64_t)sn->l1_size * 8))
            return true;
    }
    return false;
}

static bool probe_bitmap_tables(void *opaque, uint64_t off, uint64_t len)
{
    const struct qcow2 *s = opaque;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *b = &s->bitmaps[i];
        if (b->table_offset && overlaps(off, len, b->table_offset, (uint64_t)b->table_size * 8))
            return true;
    }
    return false;
}

void qcow2_guard_init(struct qcow2 *s)
{
    s->guard = diskimg_guard_new();
    s->guard_sig = g_new0(struct qcow2_guard_sig, 1);
    diskimg_guard_add_probe(s->guard, QCOW2_OL_ACTIVE_L2, "active L2 table", probe_active_l2, s);
    diskimg_guard_add_probe(s->guard, QCOW2_OL_REFCOUNT_BLOCK, "refcount block",
                            probe_refblocks, s);
    diskimg_guard_add_probe(s->guard, QCOW2_OL_INACTIVE_L1, "inactive L1 table",
                            probe_inactive_l1, s);
    diskimg_guard_add_probe(s->guard, QCOW2_OL_BITMAP_TABLE, "bitmap table",
                            probe_bitmap_tables, s);
}

void qcow2_guard_free(struct qcow2 *s)
{
    diskimg_guard_free(s->guard);
    g_free(s->guard_sig);
    s->guard = NULL;
    s->guard_sig = NULL;
}

const char *qcow2_guard_find(struct qcow2 *s, uint32_t allowed, uint64_t off, uint64_t len)
{
    if (!s->guard || !len)
        return NULL;
    struct qcow2_guard_sig sig;
    signature(s, &sig);
    if (memcmp(&sig, s->guard_sig, sizeof(sig)) != 0) {
        declare_fixed(s, &sig);
        *s->guard_sig = sig;
    }
    uint64_t start = qcow2_align_down(s, off);
    uint64_t end = off > UINT64_MAX - len - s->cluster_size ? UINT64_MAX
                 : qcow2_align_down(s, off + len + s->cluster_size - 1);
    return diskimg_guard_find(s->guard, allowed, start, end - start);
}

int qcow2_guard_check_write(struct qcow2 *s, uint64_t off, uint64_t len, uint32_t allowed,
                            GError **errp)
{
    const char *hit = qcow2_guard_find(s, allowed, off, len);
    if (!hit)
        return 0;
    return qcow2_corrupt(s, errp, "Preventing invalid write on metadata (overlaps with %s)",
                         hit);
}
