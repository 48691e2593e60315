/* SPDX-License-Identifier: MIT */
/*
 * refcount-order.c — changing the refcount width of an open image
 * (qemu-img amend -o refcount_bits=N; qemu's qcow2_change_refcount_order).
 *
 * The new refcount structures are built next to the old ones: a new
 * refcount table followed by new refcount blocks, in the new width, as
 * one area past everything in use (at the end of the file).  They are
 * written and flushed, then one header update switches refcount_order,
 * refcount_table_offset and refcount_table_clusters together.  Nothing
 * the old header points to is written before that switch, so a crash
 * leaves either the old structures, untouched, or the new ones, complete
 * (the new area is then merely unused space past the end).
 *
 * The new refcount of a cluster is its old one, except:
 *   - clusters of the old refcount table and of the old refcount blocks
 *     lose the reference the old structures held (normally: refcount 0,
 *     i.e. they are free from the moment of the switch; nothing has to be
 *     freed afterwards and no leak is left);
 *   - clusters of the new area have refcount 1.
 * The area references itself, so its size (table clusters T, blocks B)
 * is computed as a fixed point: more clusters may need more blocks and a
 * longer table, which may need more clusters.
 *
 * Before anything is written, every refcount is checked against the new
 * width; one that does not fit refuses the change with qemu's message.
 *
 * Memory does not grow with the image: no per-cluster array is kept.  The
 * refcounts are streamed from the old blocks (one old block and one new
 * block buffered).  The other allocations are the new refcount table and
 * a sorted list of the old refcount metadata clusters, both bounded by the
 * maximum table size (QCOW2_MAX_REFTABLE_BYTES).
 *
 * The caller must have exclusive use of the image (as amend has): the
 * metadata caches are flushed first and the old refcount blocks are read
 * from the file.
 */
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* The highest host cluster end the format can address (64 PiB). */
#define MAX_HOST_BYTES (1ull << 56)

struct rco {
    struct qcow2 *s;
    uint32_t old_order, new_order;
    uint32_t old_bits, new_bits;        /* log2 of the refcounts per block */
    uint64_t new_max;                   /* largest refcount of the new width */

    uint64_t *meta;                     /* clusters of the old refcount metadata, sorted */
    uint64_t nmeta;

    uint8_t *oblk;                      /* the old block read last */
    uint64_t oblk_t;
    bool oblk_valid;

    uint64_t *table;                    /* new refcount table (host order); during the
                                         * scan, nonzero = block needed */
    uint64_t table_cap;                 /* allocated entries */
    uint64_t entries;                   /* 1 + highest used index */
    uint64_t nblocks;                   /* needed blocks found by the scan */

    uint64_t used_end;                  /* 1 + highest cluster with an old refcount */
    uint64_t area, area_len;            /* the new area [area, area + area_len) */
    uint64_t table_clusters;
};

/* ------------------------------------------------------ entries */

static uint64_t rc_get(uint32_t order, const uint8_t *b, uint64_t i)
{
    switch (order) {
    case 3: return b[i];
    case 4: return diskimg_be16(b + i * 2);
    case 5: return diskimg_be32(b + i * 4);
    case 6: return diskimg_be64(b + i * 8);
    default: {
        /* 1, 2 or 4 bits, least significant first within a byte, as qemu */
        uint64_t bit = i << order;
        uint32_t mask = (1u << (1u << order)) - 1;
        return (b[bit / 8] >> (bit % 8)) & mask;
    }
    }
}

static void rc_set(uint32_t order, uint8_t *b, uint64_t i, uint64_t v)
{
    switch (order) {
    case 3: b[i] = (uint8_t)v; break;
    case 4: diskimg_put_be16(b + i * 2, (uint16_t)v); break;
    case 5: diskimg_put_be32(b + i * 4, (uint32_t)v); break;
    case 6: diskimg_put_be64(b + i * 8, v); break;
    default: {
        uint64_t bit = i << order;
        uint32_t mask = ((1u << (1u << order)) - 1) << (bit % 8);
        b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        break;
    }
    }
}

/* ------------------------------------------------------ old structures */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first index of meta[] whose cluster is >= c. */
static uint64_t meta_lower_bound(const struct rco *r, uint64_t c)
{
    uint64_t lo = 0, hi = r->nmeta;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (r->meta[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool old_present(const struct rco *r, uint64_t t)
{
    return t < r->s->reftable_size && (r->s->reftable[t] & ~QCOW2_REFT_RESERVED);
}

/* Validates the old table and lists the clusters it and its blocks use. */
static int collect_old(struct rco *r, uint64_t file_clusters, GError **errp)
{
    struct qcow2 *s = r->s;
    uint64_t tc = s->h.reftable_clusters, n = tc;
    for (uint64_t t = 0; t < s->reftable_size; t++) {
        uint64_t e = s->reftable[t];
        if (e & QCOW2_REFT_RESERVED)
            return qcow2_corrupt(s, errp, "Refcount table entry %" PRIu64
                                 " has reserved bits set", t);
        if (!e)
            continue;
        if (qcow2_offset_into_cluster(s, e))
            return qcow2_corrupt(s, errp, "Refblock offset %#" PRIx64 " unaligned (reftable "
                                 "index: %#" PRIx64 ")", e, t);
        if ((e >> s->cluster_bits) >= file_clusters)
            return qcow2_corrupt(s, errp, "Refblock offset %#" PRIx64 " is outside the image "
                                 "(reftable index: %#" PRIx64 ")", e, t);
        n++;
    }
    r->meta = g_try_new(uint64_t, MAX(n, 1));
    if (!r->meta)
        return qcow2_enomem(errp);
    for (uint64_t i = 0; i < tc; i++)
        r->meta[r->nmeta++] = (s->h.reftable_offset >> s->cluster_bits) + i;
    for (uint64_t t = 0; t < s->reftable_size; t++) {
        if (s->reftable[t])
            r->meta[r->nmeta++] = s->reftable[t] >> s->cluster_bits;
    }
    qsort(r->meta, r->nmeta, sizeof(*r->meta), cmp_u64);
    /* Each of these clusters must be counted by an existing old block
     * (the reference is dropped below); none may be used twice. */
    for (uint64_t i = 0; i < r->nmeta; i++) {
        uint64_t c = r->meta[i];
        if (i > 0 && r->meta[i - 1] == c)
            return qcow2_corrupt(s, errp, "Cluster %#" PRIx64 " is used twice by the refcount "
                                 "structures", c << s->cluster_bits);
        if (!old_present(r, c >> r->old_bits))
            return qcow2_corrupt(s, errp, "Refcount structure cluster %#" PRIx64 " has no "
                                 "refcount", c << s->cluster_bits);
    }
    return 0;
}

static int load_old(struct rco *r, uint64_t t, GError **errp)
{
    struct qcow2 *s = r->s;
    if (r->oblk_valid && r->oblk_t == t)
        return 0;
    r->oblk_valid = false;
    if (diskimg_node_pread(s->file, r->oblk, s->cluster_size,
                           s->reftable[t] & ~QCOW2_REFT_RESERVED, errp) < 0)
        return -1;
    r->oblk_t = t;
    r->oblk_valid = true;
    return 0;
}

/* ------------------------------------------------------ new refcounts */

/* Marks new block k as needed (scan). */
static int mark_block(struct rco *r, uint64_t k, GError **errp)
{
    if (k < r->entries && r->table[k])
        return 0;
    if (k >= QCOW2_MAX_REFTABLE_BYTES / 8) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "%s: This operation would make the refcount table grow beyond the maximum "
                    "size supported by QEMU, aborting", r->s->filename);
        return -1;
    }
    if (k >= r->table_cap) {
        uint64_t cap = MIN(MAX(k + 1, r->table_cap * 2), QCOW2_MAX_REFTABLE_BYTES / 8);
        uint64_t *t = g_try_renew(uint64_t, r->table, cap);
        if (!t)
            return qcow2_enomem(errp);
        memset(t + r->table_cap, 0, (cap - r->table_cap) * sizeof(*t));
        r->table = t;
        r->table_cap = cap;
    }
    r->table[k] = 1;
    r->entries = MAX(r->entries, k + 1);
    r->nblocks++;
    return 0;
}

static int refuse(struct rco *r, uint64_t c, uint64_t v, GError **errp)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "Cannot decrease refcount entry width to %u bits: Cluster at offset %#" PRIx64
                " has a refcount of %" PRIu64, 1u << r->new_order, c << r->s->cluster_bits, v);
    return -1;
}

static bool word_zero(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w == 0;
}

/*
 * New refcounts of clusters [lo, hi), all described by present old block t.
 * With `out`, they are stored in the new block `out` whose first cluster
 * is `base`; without, the new blocks they need are marked (scan).
 */
static int old_segment(struct rco *r, uint64_t t, uint64_t lo, uint64_t hi, uint8_t *out,
                       uint64_t base, GError **errp)
{
    struct qcow2 *s = r->s;
    if (load_old(r, t, errp) < 0)
        return -1;
    const uint64_t first = t << r->old_bits;
    const uint64_t per_word = 64u >> r->old_order;     /* old entries in 8 bytes */
    uint64_t j = meta_lower_bound(r, lo);
    for (uint64_t c = lo; c < hi;) {
        uint64_t i = c - first;
        /* Runs of zero refcounts are common: skip them a word at a time. */
        if (i % per_word == 0 && hi - c >= per_word &&
            (j >= r->nmeta || r->meta[j] >= c + per_word) &&
            word_zero(r->oblk + (i / per_word) * 8)) {
            c += per_word;
            continue;
        }
        uint64_t v = rc_get(r->old_order, r->oblk, i), drop = 0;
        while (j < r->nmeta && r->meta[j] == c) {
            drop++;
            j++;
        }
        if (v)
            r->used_end = MAX(r->used_end, c + 1);
        if (drop > v)
            return qcow2_corrupt(s, errp, "Refcount structure cluster %#" PRIx64 " has a "
                                 "refcount of %" PRIu64, c << s->cluster_bits, v);
        v -= drop;
        if (v) {
            if (v > r->new_max)
                return refuse(r, c, v, errp);
            if (out)
                rc_set(r->new_order, out, c - base, v);
            else if (mark_block(r, c >> r->new_bits, errp) < 0)
                return -1;
        }
        c++;
    }
    return 0;
}

/* Pass 1: checks every refcount against the new width, finds the new
 * blocks the existing clusters need and the end of what is in use. */
static int scan(struct rco *r, GError **errp)
{
    struct qcow2 *s = r->s;
    for (uint64_t t = 0; t < s->reftable_size; t++) {
        if (old_present(r, t) &&
            old_segment(r, t, t << r->old_bits, (t + 1) << r->old_bits, NULL, 0, errp) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------ the new area */

/* Sizes and places the new area at cluster `start`: T table clusters,
 * then B blocks, where the blocks cover both the clusters in use and the
 * area itself, and the table covers every block.  Fills in the offsets. */
static int place(struct rco *r, uint64_t start, GError **errp)
{
    struct qcow2 *s = r->s;
    const uint64_t per = s->cluster_size / 8;
    uint64_t T = 1, B = 0, klo = 0, khi = 0;
    for (int round = 0;; round++) {
        if (round > 64)
            return qcow2_corrupt(s, errp, "Refcount structure allocation does not converge");
        uint64_t len = T + B;
        if (start > (MAX_HOST_BYTES >> s->cluster_bits) - len) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_SPACE,
                        "%s: the image cannot grow beyond 64 PiB", s->filename);
            return -1;
        }
        klo = start >> r->new_bits;
        khi = (start + len - 1) >> r->new_bits;
        uint64_t extra = 0;
        for (uint64_t k = klo; k <= khi; k++)
            extra += !(k < r->entries && r->table[k]);
        uint64_t entries = MAX(r->entries, khi + 1);
        uint64_t nT = (entries + per - 1) / per, nB = r->nblocks + extra;
        if (nT * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                        "%s: This operation would make the refcount table grow beyond the "
                        "maximum size supported by QEMU, aborting", s->filename);
            return -1;
        }
        if (nT == T && nB == B)
            break;
        T = nT;
        B = nB;
    }

    uint64_t size = T * per;
    if (size > r->table_cap) {
        uint64_t *t = g_try_renew(uint64_t, r->table, size);
        if (!t)
            return qcow2_enomem(errp);
        memset(t + r->table_cap, 0, (size - r->table_cap) * sizeof(*t));
        r->table = t;
        r->table_cap = size;
    }
    uint64_t next = start + T;
    for (uint64_t k = 0; k < size; k++) {
        if (r->table[k] || (k >= klo && k <= khi))
            r->table[k] = (next++) << s->cluster_bits;
    }
    if (next != start + T + B) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "%s: refcount block placement is inconsistent", s->filename);
        return -1;
    }
    r->entries = size;
    r->area = start;
    r->area_len = T + B;
    r->table_clusters = T;
    return 0;
}

/* Pass 2: fills and writes every new block. */
static int write_blocks(struct rco *r, GError **errp)
{
    struct qcow2 *s = r->s;
    const uint64_t per_block = 1ull << r->new_bits;
    g_autofree uint8_t *nblk = g_try_malloc(s->cluster_size);
    if (!nblk)
        return qcow2_enomem(errp);
    for (uint64_t k = 0; k < r->entries; k++) {
        if (!r->table[k])
            continue;
        uint64_t lo = k << r->new_bits, hi = lo + per_block;
        memset(nblk, 0, s->cluster_size);
        for (uint64_t t = lo >> r->old_bits; t <= (hi - 1) >> r->old_bits; t++) {
            if (t >= s->reftable_size)
                break;
            if (!old_present(r, t))
                continue;
            uint64_t a = MAX(lo, t << r->old_bits), b = MIN(hi, (t + 1) << r->old_bits);
            if (old_segment(r, t, a, b, nblk, lo, errp) < 0)
                return -1;
        }
        uint64_t a = MAX(lo, r->area), b = MIN(hi, r->area + r->area_len);
        for (uint64_t c = a; c < b; c++)
            rc_set(r->new_order, nblk, c - lo, 1);
        if (diskimg_node_pwrite(s->file, nblk, s->cluster_size, r->table[k], 0, errp) < 0)
            return -1;
    }
    return 0;
}

static int write_table(struct rco *r, GError **errp)
{
    struct qcow2 *s = r->s;
    uint64_t bytes = r->table_clusters << s->cluster_bits;
    g_autofree uint8_t *raw = g_try_malloc(bytes);
    if (!raw)
        return qcow2_enomem(errp);
    for (uint64_t k = 0; k < r->entries; k++)
        diskimg_put_be64(raw + k * 8, r->table[k]);
    return diskimg_node_pwrite(s->file, raw, bytes, r->area << s->cluster_bits, 0, errp);
}

/* ------------------------------------------------------ switch */

static int switch_header(struct rco *r, GError **errp)
{
    struct qcow2 *s = r->s;
    uint32_t old_order = s->h.refcount_order, old_tc = s->h.reftable_clusters;
    uint64_t old_off = s->h.reftable_offset;
    s->h.refcount_order = r->new_order;
    s->h.reftable_offset = r->area << s->cluster_bits;
    s->h.reftable_clusters = (uint32_t)r->table_clusters;
    if (qcow2_header_write(s, errp) < 0 || diskimg_node_flush(s->file, errp) < 0) {
        /* Either header is consistent with what is on disk, but which one
         * the file now holds is unknown: write nothing more through this
         * handle. */
        s->h.refcount_order = old_order;
        s->h.reftable_offset = old_off;
        s->h.reftable_clusters = old_tc;
        s->writable = false;
        return -1;
    }
    return 0;
}

/* The in-memory refcount state of the new structures: table, width,
 * allocator (which restarts at cluster 0 and so reuses the old
 * structures' clusters). */
static int rebuild(struct qcow2 *s, GError **errp)
{
    g_free(s->reftable);
    s->reftable = NULL;
    s->reftable_size = 0;
    s->free_byte_offset = 0;
    if (qcow2_refcount_init(s, errp) < 0) {
        g_free(s->reftable);
        s->reftable = NULL;
        s->reftable_size = 0;
        s->writable = false;
        g_prefix_error(errp, "The refcount width was changed, but the image must be "
                       "reopened: ");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------ entry point */

static int change(struct rco *r, uint64_t file_clusters, GError **errp)
{
    struct qcow2 *s = r->s;
    if (collect_old(r, file_clusters, errp) < 0 || scan(r, errp) < 0)
        return -1;
    /* The area goes past the file and past every cluster in use: the old
     * structures never describe it, nothing they describe is touched. */
    uint64_t start = MAX(MAX(file_clusters, s->end_cluster), r->used_end);
    if (place(r, start, errp) < 0 || write_blocks(r, errp) < 0 ||
        write_table(r, errp) < 0 || diskimg_node_flush(s->file, errp) < 0 ||
        switch_header(r, errp) < 0)
        return -1;
    return rebuild(s, errp);
}

int qcow2_change_refcount_order(struct qcow2 *s, uint32_t order, GError **errp)
{
    if (order > 6) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Refcount width must be a power of two and may not exceed 64 bits");
        return -1;
    }
    if (order == s->h.refcount_order)
        return 0;
    if (s->h.version < 3) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Refcount widths other than 16 bits require compatibility level 1.1 or "
                    "above (use compat=1.1 or greater)");
        return -1;
    }
    if (!s->writable || s->corrupt) {
        g_set_error(errp, DISKIMG_ERROR, s->corrupt ? DISKIMG_ERROR_CORRUPT
                    : DISKIMG_ERROR_PERMISSION, "%s: cannot change the refcount width of %s "
                    "image", s->filename, s->corrupt ? "a corrupt" : "a read-only");
        return -1;
    }
    if (s->h.incompat & QCOW2_INCOMPAT_DIRTY) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: cannot change the refcount width of an image that is not clean",
                    s->filename);
        return -1;
    }

    /* The old blocks are read from the file below: nothing may be pending
     * in the caches, and the refcount cache must not keep old blocks. */
    uint64_t file_clusters;
    if (qcow2_flush_metadata(s, errp) < 0 || diskimg_mcache_empty(s->rbc, errp) < 0 ||
        qcow2_file_clusters(s, &file_clusters, errp) < 0)
        return -1;

    struct rco r = {
        .s = s,
        .old_order = s->h.refcount_order,
        .new_order = order,
        .old_bits = s->cluster_bits + 3 - s->h.refcount_order,
        .new_bits = s->cluster_bits + 3 - order,
        .new_max = order == 6 ? UINT64_MAX : (1ull << (1u << order)) - 1,
    };
    r.oblk = g_try_malloc(s->cluster_size);
    int ret = r.oblk ? change(&r, file_clusters, errp) : qcow2_enomem(errp);
    g_free(r.oblk);
    g_free(r.meta);
    g_free(r.table);
    return ret;
}
