/* SPDX-License-Identifier: MIT */
/*
 * check.c — qemu-img check for qcow2: rebuilds the reference counts from
 * every structure that uses clusters (header, L1/L2 tables of the active
 * state and of snapshots, data clusters, snapshot table, refcount table
 * and blocks, encryption header, bitmap directory/tables/data), compares
 * them with the stored refcounts and repairs leaks and errors on request.
 * Messages use qemu's wording ("Leaked cluster N refcount=1 reference=0",
 * "ERROR cluster N refcount=0 reference=1") through diskimg_warn.
 *
 * Memory: one 32-bit counter per host cluster of the file (saturating),
 * i.e. bounded by the file size, never by the virtual size.
 */
#include <string.h>

#include "qcow2.h"

struct checker {
    struct qcow2 *s;
    struct diskimg_check_result *res;
    unsigned fix;
    uint32_t *ref;          /* computed refcounts */
    uint64_t nref;          /* entries in ref */
    uint64_t next_contig;   /* fragmentation tracking */
    uint64_t file_len;      /* host file size: references beyond it are errors */
};

static int ref_grow(struct checker *c, uint64_t need, GError **errp)
{
    if (need <= c->nref)
        return 0;
    uint64_t n = MAX(need, c->nref + c->nref / 2 + 64);
    if (n > (1ull << 32)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "%s: cluster references reach too far into the file", c->s->filename);
        return -1;
    }
    uint32_t *r = g_try_renew(uint32_t, c->ref, n);
    if (!r)
        return qcow2_enomem(errp);
    memset(r + c->nref, 0, (n - c->nref) * sizeof(*r));
    c->ref = r;
    c->nref = n;
    return 0;
}

/* Counts one reference to every cluster of [off, off+len). */
static int inc_refs(struct checker *c, uint64_t off, uint64_t len, GError **errp)
{
    struct qcow2 *s = c->s;
    if (len == 0)
        return 0;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    /* the last cluster may be partly written; anything further is not
     * there (this also bounds c->ref by the file size) */
    if (off > UINT64_MAX - len || (off + len > c->file_len &&
                                   off + len - c->file_len >= s->cluster_size)) {
        diskimg_report("ERROR: counting reference for region exceeding the end of the file by "
                       "one cluster or more: offset %#" PRIx64 " size %#" PRIx64, off, len);
        c->res->corruptions++;
        return 0;
    }
    if (ref_grow(c, last + 1, errp) < 0)
        return -1;
    for (uint64_t i = first; i <= last; i++) {
        if (c->ref[i] != UINT32_MAX)
            c->ref[i]++;
    }
    return 0;
}

/* ------------------------------------------------------------ L1 / L2 */

static int check_l2_entry(struct checker *c, uint64_t e, uint64_t bm, bool active,
                          GError **errp)
{
    struct qcow2 *s = c->s;
    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t off, len;
        if (s->ext_data) {
            diskimg_report("ERROR compressed cluster with data file: l2_entry=%" PRIx64, e);
            c->res->corruptions++;
            return 0;
        }
        qcow2_compressed_span(s, e, &off, &len);
        if (active) {
            c->res->allocated_clusters++;
            c->res->compressed_clusters++;
            c->res->fragmented_clusters++;
        }
        return inc_refs(c, off & ~511ull, len + (off & 511), errp);
    }
    if (s->ext_l2 && ((bm & (bm >> 32) & 0xffffffffull) ||
                      (!(e & QCOW2_OFFSET_MASK) && !(s->ext_data && (e & QCOW2_OFLAG_COPIED)) &&
                       (bm & 0xffffffffull)))) {
        diskimg_report("ERROR invalid cluster entry: l2_entry=%" PRIx64 " bitmap=%" PRIx64, e, bm);
        c->res->corruptions++;
        return 0;
    }
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if (!host && !(s->ext_data && (e & QCOW2_OFLAG_COPIED)))
        return 0;
    if (active) {
        c->res->allocated_clusters++;
        if (c->next_contig && host != c->next_contig)
            c->res->fragmented_clusters++;
        c->next_contig = host + s->cluster_size;
    }
    if (qcow2_offset_into_cluster(s, host)) {
        /* Like qemu: report, then still count the (misaligned) range as
         * referenced, so the clusters it overlaps are not called leaks. */
        bool data = s->ext_l2 ? (bm & 0xffffffffull) != 0 : !(e & QCOW2_OFLAG_ZERO);
        diskimg_report("ERROR offset=%" PRIx64 ": %s cluster is not properly aligned; L2 entry "
                       "corrupted.", host, data ? "Data" : "Preallocated");
        c->res->corruptions++;
    }
    return s->ext_data ? 0 : inc_refs(c, host, s->cluster_size, errp);
}

/* The first entry at or after i that is not in a run of all-zero entries.
 * A zero entry (and bitmap) needs no check, and in a sparse image nearly
 * all are zero: testing them by the 8 saves most of a check's time. */
static uint64_t skip_zero_entries(const struct qcow2 *s, const uint8_t *l2, uint64_t i)
{
    const uint64_t run = 8;
    size_t entry = s->ext_l2 ? 16 : 8;
    while (i % run == 0 && i + run <= s->l2_entries &&
           diskimg_is_zero(l2 + i * entry, run * entry))
        i += run;
    return i;
}

static int check_l2(struct checker *c, uint64_t l2off, bool active, GError **errp)
{
    struct qcow2 *s = c->s;
    uint8_t *l2;
    if (qcow2_cache_get(&s->l2c, l2off, false, &l2, errp) < 0)
        return -1;
    /* qemu measures fragmentation within each L2 table. */
    c->next_contig = 0;
    int ret = 0;
    for (uint64_t i = skip_zero_entries(s, l2, 0); i < s->l2_entries && ret == 0;
         i = skip_zero_entries(s, l2, i + 1))
        ret = check_l2_entry(c, qcow2_l2_entry(s, l2, i), qcow2_l2_bitmap(s, l2, i), active,
                             errp);
    qcow2_cache_put(&s->l2c, l2);
    return ret;
}

static int check_l1(struct checker *c, uint64_t l1off, uint32_t l1size, const uint64_t *l1,
                    bool active, GError **errp)
{
    struct qcow2 *s = c->s;
    if (inc_refs(c, l1off, (uint64_t)l1size * 8, errp) < 0)
        return -1;
    for (uint32_t i = 0; i < l1size; i++) {
        uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2off)
            continue;
        if (qcow2_offset_into_cluster(s, l2off)) {
            diskimg_report("ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                         "corrupted", l2off);
            c->res->corruptions++;
            continue;
        }
        if (inc_refs(c, l2off, s->cluster_size, errp) < 0 || check_l2(c, l2off, active, errp) < 0)
            return -1;
    }
    return 0;
}

static int check_snapshot(struct checker *c, const struct qcow2_snapshot *sn, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t *l1 = g_try_new(uint64_t, MAX(sn->l1_size, 1));
    if (!l1)
        return qcow2_enomem(errp);
    int ret = diskimg_node_pread(s->file, l1, (uint64_t)sn->l1_size * 8, sn->l1_offset, errp);
    for (uint32_t i = 0; ret == 0 && i < sn->l1_size; i++)
        l1[i] = diskimg_be64(&l1[i]);
    if (ret == 0)
        ret = check_l1(c, sn->l1_offset, sn->l1_size, l1, false, errp);
    g_free(l1);
    return ret;
}

/* ------------------------------------------------------------ other structures */

static int check_bitmaps(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    if (!s->h.has_bitmaps_ext)
        return 0;
    if (inc_refs(c, s->h.bitmap_dir_offset, s->h.bitmap_dir_size, errp) < 0)
        return -1;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t n = bm->table_size;
        if (!bm->table_offset)
            continue;   /* added, not stored yet */
        uint64_t *t = g_try_new(uint64_t, MAX(n, 1));
        if (!t)
            return qcow2_enomem(errp);
        int ret = inc_refs(c, bm->table_offset, n * 8, errp);
        if (ret == 0)
            ret = diskimg_node_pread(s->file, t, n * 8, bm->table_offset, errp);
        for (uint64_t j = 0; ret == 0 && j < n; j++) {
            uint64_t off = diskimg_be64(&t[j]) & QCOW2_OFFSET_MASK;
            if (off)
                ret = inc_refs(c, off, s->cluster_size, errp);
        }
        g_free(t);
        if (ret < 0)
            return -1;
    }
    return 0;
}

static int check_refblocks(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t file_clusters;
    if (qcow2_file_clusters(s, &file_clusters, errp) < 0)
        return -1;
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t off = s->reftable[i] & ~QCOW2_REFT_RESERVED;
        if (!off)
            continue;
        if (qcow2_offset_into_cluster(s, off)) {
            diskimg_report("ERROR refcount block %" PRIu64 " is not cluster aligned; refcount "
                         "table entry corrupted", i);
            c->res->corruptions++;
            continue;
        }
        if ((off >> s->cluster_bits) >= file_clusters) {
            diskimg_report("ERROR refcount block %" PRIu64 " is outside image", i);
            c->res->corruptions++;
            continue;
        }
        if (inc_refs(c, off, s->cluster_size, errp) < 0)
            return -1;
    }
    return 0;
}

static int count_references(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    if (inc_refs(c, 0, s->cluster_size, errp) < 0 ||
        check_l1(c, s->l1_offset, s->l1_size, s->l1, true, errp) < 0)
        return -1;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (check_snapshot(c, &s->snapshots[i], errp) < 0)
            return -1;
    }
    if (s->nb_snapshots &&
        inc_refs(c, s->h.snapshots_offset, s->snapshots_size, errp) < 0)
        return -1;
    if (inc_refs(c, s->h.reftable_offset, (uint64_t)s->h.reftable_clusters << s->cluster_bits,
                 errp) < 0)
        return -1;
    if (s->h.has_crypto_ext && inc_refs(c, s->h.crypto_offset, s->h.crypto_length, errp) < 0)
        return -1;
    return check_bitmaps(c, errp) < 0 ? -1 : check_refblocks(c, errp);
}

/* ------------------------------------------------------------ comparison */

static int repair_one(struct checker *c, uint64_t i, uint64_t stored, uint64_t computed,
                      GError **errp)
{
    struct qcow2 *s = c->s;
    GError *err = NULL;
    int64_t delta = (int64_t)(computed - stored);
    if (qcow2_update_refcount(s, i << s->cluster_bits, 1, delta, &err) < 0) {
        diskimg_report("ERROR: could not repair cluster %" PRIu64 ": %s", i, err->message);
        g_error_free(err);
        c->res->check_errors++;
        return 0;
    }
    if (stored > computed)
        c->res->leaks_fixed++;
    else
        c->res->corruptions_fixed++;
    (void)errp;
    return 0;
}

static int compare_refcounts(struct checker *c, uint64_t *highest, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t file_clusters;
    if (qcow2_file_clusters(s, &file_clusters, errp) < 0)
        return -1;
    uint64_t n = MAX(file_clusters, c->nref);
    *highest = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t stored, computed = i < c->nref ? c->ref[i] : 0;
        GError *err = NULL;
        if (qcow2_get_refcount(s, i, &stored, &err) < 0) {
            diskimg_report("Can't get refcount for cluster %" PRIu64 ": %s", i, err->message);
            g_error_free(err);
            c->res->check_errors++;
            continue;
        }
        if (stored || computed)
            *highest = i + 1;
        if (stored == computed)
            continue;
        bool leak = stored > computed;
        bool fix = leak ? (c->fix & DISKIMG_CHECK_FIX_LEAKS) : (c->fix & DISKIMG_CHECK_FIX_ERRORS);
        diskimg_report("%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                     fix ? "Repairing" : leak ? "Leaked" : "ERROR", i, stored, computed);
        if (fix) {
            if (repair_one(c, i, stored, computed, errp) < 0)
                return -1;
        } else if (leak) {
            c->res->leaks++;
        } else {
            c->res->corruptions++;
        }
    }
    return 0;
}

/* The COPIED flag must be set exactly on entries with refcount 1. */
static int check_copied_entry(struct checker *c, uint8_t *l2, uint64_t idx, bool *dirty,
                              GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t e = qcow2_l2_entry(s, l2, idx), rc;
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if ((e & QCOW2_OFLAG_COMPRESSED) || !host || s->ext_data ||
        qcow2_offset_into_cluster(s, host))
        return 0;
    if (qcow2_get_refcount(s, host >> s->cluster_bits, &rc, errp) < 0)
        return -1;
    if ((rc == 1) == !!(e & QCOW2_OFLAG_COPIED))
        return 0;
    bool fix = c->fix & DISKIMG_CHECK_FIX_ERRORS;
    diskimg_report("%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
                 fix ? "Repairing" : "ERROR", e, rc);
    if (!fix) {
        c->res->corruptions++;
        return 0;
    }
    e = rc == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
    qcow2_l2_set(s, l2, idx, e, qcow2_l2_bitmap(s, l2, idx));
    *dirty = true;
    c->res->corruptions_fixed++;
    return 0;
}

static int check_copied_l1(struct checker *c, uint32_t i, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t l2off = s->l1[i] & QCOW2_OFFSET_MASK, rc;
    if (qcow2_get_refcount(s, l2off >> s->cluster_bits, &rc, errp) < 0)
        return -1;
    if ((rc == 1) != !!(s->l1[i] & QCOW2_OFLAG_COPIED)) {
        bool fix = c->fix & DISKIMG_CHECK_FIX_ERRORS;
        diskimg_report("%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu32 " l1_entry=%" PRIx64
                     " refcount=%" PRIu64, fix ? "Repairing" : "ERROR", i, s->l1[i], rc);
        if (!fix) {
            c->res->corruptions++;
        } else {
            s->l1[i] = rc == 1 ? s->l1[i] | QCOW2_OFLAG_COPIED : s->l1[i] & ~QCOW2_OFLAG_COPIED;
            if (qcow2_l1_write_entry(s, i, errp) < 0)
                return -1;
            c->res->corruptions_fixed++;
        }
    }
    uint8_t *l2;
    bool dirty = false;
    if (qcow2_cache_get(&s->l2c, l2off, false, &l2, errp) < 0)
        return -1;
    int ret = 0;
    for (uint64_t j = skip_zero_entries(s, l2, 0); j < s->l2_entries && ret == 0;
         j = skip_zero_entries(s, l2, j + 1))
        ret = check_copied_entry(c, l2, j, &dirty, errp);
    if (dirty)
        qcow2_cache_dirty(&s->l2c, l2);
    qcow2_cache_put(&s->l2c, l2);
    return ret;
}

static int check_copied(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2off = s->l1[i] & QCOW2_OFFSET_MASK;
        if (!l2off || qcow2_offset_into_cluster(s, l2off))
            continue;
        if (check_copied_l1(c, i, errp) < 0)
            return -1;
    }
    return 0;
}

int qcow2_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct qcow2 *s = h;
    struct checker c = { .s = s, .res = res, .fix = s->writable ? fix : 0 };
    uint64_t highest = 0;
    int64_t file_len = diskimg_node_size(s->file, errp);
    if (file_len < 0)
        return -1;
    c.file_len = (uint64_t)file_len;
    int ret = count_references(&c, errp);
    if (ret == 0)
        ret = compare_refcounts(&c, &highest, errp);
    if (ret == 0)
        ret = check_copied(&c, errp);
    if (ret == 0 && c.fix)
        ret = qcow2_flush_metadata(s, errp);
    g_free(c.ref);
    if (ret < 0)
        return -1;
    res->image_end_offset = highest << s->cluster_bits;
    res->total_clusters = qcow2_size_to_clusters(s, s->h.size);
    res->has_cluster_stats = true;
    return 0;
}
