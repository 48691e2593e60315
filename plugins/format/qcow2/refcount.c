/* SPDX-License-Identifier: MIT */
/*
 * refcount.c — reference counts and cluster allocation.
 *
 * Refcount blocks live in the refcount block cache; the refcount table is
 * held in memory (bounded by the 8 MiB limit checked at open) and written
 * entry by entry.  Allocation is first-fit from a hint, like qemu, so that
 * freed clusters are reused.
 *
 * New refcount blocks are placed so that they describe themselves when
 * possible; when the refcount table is full, a larger table and the
 * blocks describing it are written as one new area at the end of the
 * image, switched to with a single header update, and the old table is
 * freed afterwards (qemu's "refcount area").
 */
#include <string.h>

#include "qcow2.h"

/* ------------------------------------------------------ entry packing */

uint64_t qcow2_rb_get(const struct qcow2 *s, const uint8_t *b, uint64_t idx)
{
    switch (s->h.refcount_order) {
    case 3: return b[idx];
    case 4: return diskimg_be16(b + idx * 2);
    case 5: return diskimg_be32(b + idx * 4);
    case 6: return diskimg_be64(b + idx * 8);
    default: {
        uint64_t bit = idx * s->refcount_bits;
        return (b[bit / 8] >> (bit % 8)) & s->refcount_max;
    }
    }
}

void qcow2_rb_set(const struct qcow2 *s, uint8_t *b, uint64_t idx, uint64_t v)
{
    switch (s->h.refcount_order) {
    case 3: b[idx] = (uint8_t)v; break;
    case 4: diskimg_put_be16(b + idx * 2, (uint16_t)v); break;
    case 5: diskimg_put_be32(b + idx * 4, (uint32_t)v); break;
    case 6: diskimg_put_be64(b + idx * 8, v); break;
    default: {
        uint64_t bit = idx * s->refcount_bits;
        uint8_t mask = (uint8_t)(s->refcount_max << (bit % 8));
        b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        break;
    }
    }
}

/* ------------------------------------------------------ table */

int qcow2_file_clusters(struct qcow2 *s, uint64_t *n, GError **errp)
{
    int64_t size = diskimg_node_size(s->file, errp);
    if (size < 0)
        return -1;
    *n = qcow2_size_to_clusters(s, (uint64_t)size);
    return 0;
}

/* Makes `table` (entries) the refcount table in memory. */
static void take_reftable(struct qcow2 *s, uint64_t *table, uint64_t entries)
{
    g_free(s->reftable);
    s->reftable = table;
    s->reftable_size = entries;
    s->reftable_used = entries;
    while (s->reftable_used && !table[s->reftable_used - 1])
        s->reftable_used--;
}

int qcow2_refcount_init(struct qcow2 *s, GError **errp)
{
    s->refcount_bits = 1u << s->h.refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ull << s->refcount_bits) - 1;
    s->rb_bits = s->cluster_bits + 3 - s->h.refcount_order;
    s->rb_entries = 1ull << s->rb_bits;
    uint64_t entries = ((uint64_t)s->h.reftable_clusters << s->cluster_bits) / 8;
    /* Not diskimg_load_u64_table: a refcount table reaching past the end of
     * the file reads as zeroes there (as in qemu), so check can report and
     * rebuild it instead of the open failing.  Its size was capped by the
     * header reader (QCOW2_MAX_REFTABLE_BYTES). */
    size_t bytes = (size_t)entries * 8;
    /* qemu accepts a table anywhere below 2^63; beyond 2^56 (where no
     * cluster can be) only check opens it, to report and rebuild it */
    if (!s->check_open && s->h.reftable_offset > (1ull << 56) - bytes)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid reference count table offset");
    uint8_t *raw = g_try_malloc(bytes);
    if (!raw)
        return qcow2_enomem(errp);
    if (diskimg_node_pread(s->file, raw, bytes, s->h.reftable_offset, errp) < 0) {
        g_free(raw);
        return -1;
    }
    uint64_t *table = (uint64_t *)raw;
    for (uint64_t i = 0; i < entries; i++)
        table[i] = diskimg_be64(raw + i * 8);
    take_reftable(s, table, entries);
    s->free_cluster_index = 0;
    return qcow2_file_clusters(s, &s->end_cluster, errp);
}

/* The refcount block offset of block index t, 0 when absent. */
static int block_offset(struct qcow2 *s, uint64_t t, uint64_t *off, GError **errp)
{
    *off = 0;
    if (t >= s->reftable_size)
        return 0;
    uint64_t e = s->reftable[t];
    if (e & QCOW2_REFT_RESERVED)
        return qcow2_corrupt(s, errp, "Refcount table entry %" PRIu64 " has reserved bits set",
                             t);
    *off = e & ~QCOW2_REFT_RESERVED;
    return 0;
}

int qcow2_get_refcount(struct qcow2 *s, uint64_t cluster, uint64_t *rc, GError **errp)
{
    uint64_t boff;
    uint8_t *b;
    *rc = 0;
    if (block_offset(s, cluster >> s->rb_bits, &boff, errp) < 0)
        return -1;
    if (!boff)
        return 0;
    if (diskimg_mcache_get(s->rbc, boff, 0, &b, errp) < 0)
        return -1;
    *rc = qcow2_rb_get(s, b, cluster & (s->rb_entries - 1));
    diskimg_mcache_put(s->rbc, b);
    return 0;
}

static int write_reftable_entry(struct qcow2 *s, uint64_t t, GError **errp)
{
    uint8_t v[8];
    diskimg_put_be64(v, s->reftable[t]);
    return diskimg_node_pwrite(s->file, v, 8, s->h.reftable_offset + t * 8, 0, errp);
}

/* ------------------------------------------------------ free search */

/* Is cluster i free?  Clusters without a refcount block are. */
static int cluster_free(struct qcow2 *s, uint64_t i, bool *free_, GError **errp)
{
    uint64_t rc;
    if (qcow2_get_refcount(s, i, &rc, errp) < 0)
        return -1;
    *free_ = rc == 0;
    return 0;
}

/* First run of n free clusters at or after the hint. */
static int find_free(struct qcow2 *s, uint64_t n, uint64_t *start, GError **errp)
{
    uint64_t i = s->free_cluster_index, run = 0;
    uint64_t limit = (1ull << 56) >> s->cluster_bits;
    while (run < n) {
        if (i >= limit) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_SPACE,
                        "%s: the image cannot grow beyond 64 PiB", s->filename);
            return -1;
        }
        bool f;
        if (cluster_free(s, i, &f, errp) < 0)
            return -1;
        run = f ? run + 1 : 0;
        i++;
    }
    *start = i - n;
    return 0;
}

static void note_end(struct qcow2 *s, uint64_t end_cluster)
{
    if (end_cluster > s->end_cluster)
        s->end_cluster = end_cluster;
}

/* ------------------------------------------------------ table growth */

static uint64_t table_index_end(const struct qcow2 *s, uint64_t first, uint64_t count)
{
    return (first + count + s->rb_entries - 1) >> s->rb_bits;
}

/* Number of refcount blocks missing to describe clusters [first, first+count). */
static uint64_t missing_blocks(const struct qcow2 *s, uint64_t first, uint64_t count)
{
    uint64_t n = 0;
    for (uint64_t t = first >> s->rb_bits; t < table_index_end(s, first, count); t++) {
        if (t >= s->reftable_size || !(s->reftable[t] & ~QCOW2_REFT_RESERVED))
            n++;
    }
    return n;
}

/* Sizes a refcount area at cluster `end` for a table of >= want entries:
 * *tc table clusters followed by *nb new blocks describing all of it. */
static void size_area(const struct qcow2 *s, uint64_t end, uint64_t want, uint64_t *tc,
                      uint64_t *nb)
{
    uint64_t per = s->cluster_size / 8;
    *tc = (want + per - 1) / per;
    *nb = 0;
    for (;;) {
        uint64_t count = *tc + *nb;
        uint64_t need_entries = table_index_end(s, end, count);
        if (need_entries > *tc * per) {
            *tc = (need_entries + per - 1) / per;
            continue;
        }
        uint64_t m = missing_blocks(s, end, count);
        if (m == *nb)
            return;
        *nb = m;
    }
}

/* Writes the new blocks of an area [end, end+tc+nb) and fills new_table. */
static int write_area_blocks(struct qcow2 *s, uint64_t end, uint64_t tc, uint64_t nb,
                             uint64_t *new_table, GError **errp)
{
    uint64_t count = tc + nb, next_block = end + tc;
    g_autofree uint8_t *blk = g_malloc(s->cluster_size);
    for (uint64_t t = end >> s->rb_bits; t < table_index_end(s, end, count); t++) {
        if (t < s->reftable_size && (s->reftable[t] & ~QCOW2_REFT_RESERVED))
            continue;
        memset(blk, 0, s->cluster_size);
        uint64_t lo = MAX(end, t << s->rb_bits), hi = MIN(end + count, (t + 1) << s->rb_bits);
        for (uint64_t c = lo; c < hi; c++)
            qcow2_rb_set(s, blk, c & (s->rb_entries - 1), 1);
        new_table[t] = next_block << s->cluster_bits;
        if (diskimg_node_pwrite(s->file, blk, s->cluster_size, next_block << s->cluster_bits,
                                0, errp) < 0)
            return -1;
        next_block++;
    }
    return 0;
}

/* Clusters of the area that existing blocks describe get their refcount
 * through those blocks. */
static int ref_area_in_old_blocks(struct qcow2 *s, uint64_t end, uint64_t count, GError **errp)
{
    for (uint64_t c = end; c < end + count; c++) {
        uint64_t t = c >> s->rb_bits;
        if (t < s->reftable_size && (s->reftable[t] & ~QCOW2_REFT_RESERVED) &&
            qcow2_update_refcount(s, c << s->cluster_bits, 1, 1, errp) < 0)
            return -1;
    }
    return 0;
}

static int write_table(struct qcow2 *s, const uint64_t *table, uint64_t entries, uint64_t off,
                       GError **errp)
{
    g_autofree uint8_t *raw = g_try_malloc(entries * 8);
    if (!raw)
        return qcow2_enomem(errp);
    for (uint64_t i = 0; i < entries; i++)
        diskimg_put_be64(raw + i * 8, table[i]);
    return diskimg_node_pwrite(s->file, raw, entries * 8, off, 0, errp);
}

static int switch_reftable(struct qcow2 *s, uint64_t off, uint64_t tc, GError **errp)
{
    uint8_t v[12];
    diskimg_put_be64(v, off);
    diskimg_put_be32(v + 8, (uint32_t)tc);
    if (diskimg_node_flush(s->file, errp) < 0 ||
        diskimg_node_pwrite(s->file, v, 12, QH_REFTABLE, 0, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0)
        return -1;
    s->h.reftable_offset = off;
    s->h.reftable_clusters = (uint32_t)tc;
    return 0;
}

/* Writes `table` (entries, tc clusters) at cluster `at`, points the header
 * at it and makes it the table in memory; takes `table` either way. */
static int adopt_reftable(struct qcow2 *s, uint64_t *table, uint64_t entries, uint64_t at,
                          uint64_t tc, GError **errp)
{
    if (write_table(s, table, entries, at << s->cluster_bits, errp) < 0 ||
        switch_reftable(s, at << s->cluster_bits, tc, errp) < 0) {
        g_free(table);
        return -1;
    }
    take_reftable(s, table, entries);
    return 0;
}

static int grow_reftable(struct qcow2 *s, uint64_t min_entries, GError **errp)
{
    uint64_t want = MAX(min_entries, s->reftable_size + s->reftable_size / 2 + 1);
    uint64_t end = s->end_cluster, tc, nb;
    if (diskimg_mcache_flush(s->rbc, errp) < 0)
        return -1;
    size_area(s, end, want, &tc, &nb);
    if ((tc << s->cluster_bits) > QCOW2_MAX_REFTABLE_BYTES) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_SPACE,
                    "%s: refcount table would exceed its maximum size", s->filename);
        return -1;
    }
    uint64_t entries = (tc << s->cluster_bits) / 8;
    uint64_t *table = g_try_new0(uint64_t, entries);
    if (!table)
        return qcow2_enomem(errp);
    memcpy(table, s->reftable, s->reftable_size * 8);
    uint64_t old_off = s->h.reftable_offset, old_tc = s->h.reftable_clusters;
    note_end(s, end + tc + nb);
    if (write_area_blocks(s, end, tc, nb, table, errp) < 0) {
        g_free(table);
        return -1;
    }
    if (adopt_reftable(s, table, entries, end, tc, errp) < 0)
        return -1;
    if (ref_area_in_old_blocks(s, end, tc + nb, errp) < 0)
        return -1;
    return qcow2_update_refcount(s, old_off, old_tc << s->cluster_bits, -1, errp);
}

/* qemu's qcow2_refcount_area for preallocated growth, where no new
 * refcount block is needed: the table moves to cluster `start` (sized
 * exactly for the clusters up to start + extra and itself), the old one is
 * freed, and *area_end is the cluster after the new table.  1: a new
 * block would be needed (the caller allocates as usual instead). */
int qcow2_refcount_area(struct qcow2 *s, uint64_t start, uint64_t extra, uint64_t *area_end,
                        GError **errp)
{
    uint64_t per = s->cluster_size / 8, tc = 1;
    while (table_index_end(s, 0, start + tc + extra) > tc * per)
        tc++;
    if (missing_blocks(s, start, tc + extra) ||
        (tc << s->cluster_bits) > QCOW2_MAX_REFTABLE_BYTES)
        return 1;
    if (diskimg_mcache_flush(s->rbc, errp) < 0)
        return -1;
    uint64_t entries = tc * per;
    uint64_t *table = g_try_new0(uint64_t, entries);
    if (!table)
        return qcow2_enomem(errp);
    memcpy(table, s->reftable, MIN(s->reftable_size, entries) * 8);
    uint64_t old_off = s->h.reftable_offset, old_tc = s->h.reftable_clusters;
    note_end(s, start + tc);
    if (adopt_reftable(s, table, entries, start, tc, errp) < 0)
        return -1;
    if (qcow2_update_refcount(s, start << s->cluster_bits, tc << s->cluster_bits, 1, errp) < 0 ||
        qcow2_update_refcount(s, old_off, old_tc << s->cluster_bits, -1, errp) < 0)
        return -1;
    *area_end = start + tc;
    return 0;
}

/* Takes the clusters [first, first + n) (qemu's qcow2_alloc_clusters_at). */
int qcow2_alloc_clusters_at(struct qcow2 *s, uint64_t first, uint64_t n, GError **errp)
{
    note_end(s, first + n);
    return qcow2_update_refcount(s, first << s->cluster_bits, n << s->cluster_bits, 1, errp);
}

/* ------------------------------------------------------ block allocation */

/* Puts a new, empty refcount block for index t at cluster c (whose own
 * refcount has been taken care of by the caller). */
static int install_block(struct qcow2 *s, uint64_t t, uint64_t c, bool self, GError **errp)
{
    uint8_t *b;
    if (diskimg_mcache_get(s->rbc, c << s->cluster_bits, DISKIMG_MCACHE_FRESH, &b, errp) < 0)
        return -1;
    if (self)
        qcow2_rb_set(s, b, c & (s->rb_entries - 1), 1);
    diskimg_mcache_mark_dirty(s->rbc, b);
    diskimg_mcache_put(s->rbc, b);
    /* The block is durable before the table points at it. */
    if (diskimg_mcache_flush(s->rbc, errp) < 0)
        return -1;
    s->reftable[t] = c << s->cluster_bits;
    s->reftable_used = MAX(s->reftable_used, t + 1);
    note_end(s, c + 1);
    return write_reftable_entry(s, t, errp);
}

static int alloc_refblock(struct qcow2 *s, uint64_t t, int depth, GError **errp)
{
    if (depth > 8)
        return qcow2_corrupt(s, errp, "Refcount block allocation does not converge");
    if (t >= s->reftable_size && grow_reftable(s, t + 1, errp) < 0)
        return -1;
    if (s->reftable[t] & ~QCOW2_REFT_RESERVED)
        return 0;   /* the growth area created it */
    uint64_t c;
    if (find_free(s, 1, &c, errp) < 0)
        return -1;
    uint64_t ct = c >> s->rb_bits;
    if (ct == t)
        return install_block(s, t, c, true, errp);
    if (ct >= s->reftable_size || !(s->reftable[ct] & ~QCOW2_REFT_RESERVED)) {
        if (alloc_refblock(s, ct, depth + 1, errp) < 0)
            return -1;
        return alloc_refblock(s, t, depth + 1, errp);
    }
    if (qcow2_update_refcount(s, c << s->cluster_bits, 1, 1, errp) < 0)
        return -1;
    return install_block(s, t, c, false, errp);
}

/* ------------------------------------------------------ updates */

/* The cached refcount block describing `cluster` (made when there is none
 * and `create`; *b NULL when there is none and not `create`). */
static int get_block(struct qcow2 *s, uint64_t cluster, bool create, uint8_t **b,
                     GError **errp)
{
    uint64_t t = cluster >> s->rb_bits, boff;
    *b = NULL;
    if (block_offset(s, t, &boff, errp) < 0)
        return -1;
    if (!boff && !create)
        return 0;
    if (!boff && (alloc_refblock(s, t, 0, errp) < 0 || block_offset(s, t, &boff, errp) < 0))
        return -1;
    return diskimg_mcache_get(s->rbc, boff, 0, b, errp);
}

/* Stores rc as the refcount of `cluster` into its block b (released). */
static void store_refcount(struct qcow2 *s, uint8_t *b, uint64_t cluster, uint64_t rc)
{
    qcow2_rb_set(s, b, cluster & (s->rb_entries - 1), rc);
    diskimg_mcache_mark_dirty(s->rbc, b);
    diskimg_mcache_put(s->rbc, b);
    if (rc == 0) {
        if (cluster < s->free_cluster_index)
            s->free_cluster_index = cluster;
        /* compressed bytes must not be appended to the cluster once it is
         * free: it may be reallocated as a data cluster */
        if (s->free_byte_offset >> s->cluster_bits == cluster)
            s->free_byte_offset = 0;
        diskimg_mcache_discard(s->l2c, cluster << s->cluster_bits);
        diskimg_mcache_discard(s->rbc, cluster << s->cluster_bits);
    } else {
        note_end(s, cluster + 1);
    }
}

static int update_one(struct qcow2 *s, uint64_t cluster, int64_t delta, GError **errp)
{
    uint8_t *b;
    if (get_block(s, cluster, delta > 0, &b, errp) < 0)
        return -1;
    if (!b)
        return qcow2_corrupt(s, errp, "Freeing cluster %#" PRIx64 " without a refcount",
                             cluster << s->cluster_bits);
    uint64_t rc = qcow2_rb_get(s, b, cluster & (s->rb_entries - 1));
    if (delta < 0 && rc < (uint64_t)-delta) {
        diskimg_mcache_put(s->rbc, b);
        return qcow2_corrupt(s, errp, "Refcount of cluster %#" PRIx64 " would become negative",
                             cluster << s->cluster_bits);
    }
    if (delta > 0 && s->refcount_max - rc < (uint64_t)delta) {
        /* a limit of the image (refcount_bits), not damage */
        diskimg_mcache_put(s->rbc, b);
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: refcount of cluster %#"
                    PRIx64 " would exceed %" PRIu64 " (refcount_bits=%" PRIu32 ")", s->filename,
                    cluster << s->cluster_bits, s->refcount_max, s->refcount_bits);
        return -1;
    }
    /* modulo 2^64, and range-checked above: rc - |delta| for a negative one */
    store_refcount(s, b, cluster, rc + (uint64_t)delta);
    return 0;
}

int qcow2_set_refcount(struct qcow2 *s, uint64_t cluster, uint64_t rc, GError **errp)
{
    uint8_t *b;
    if (rc > s->refcount_max)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "%s: a refcount of %" PRIu64
                                 " exceeds refcount_bits=%" PRIu32, s->filename, rc,
                                 s->refcount_bits);
    if (get_block(s, cluster, rc > 0, &b, errp) < 0)
        return -1;
    if (b)
        store_refcount(s, b, cluster, rc);
    return 0;
}

int qcow2_update_refcount(struct qcow2 *s, uint64_t off, uint64_t len, int64_t delta,
                          GError **errp)
{
    if (len == 0)
        return 0;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        if (update_one(s, c, delta, errp) < 0)
            return -1;
    }
    return 0;
}

/* Ensures every block describing [start, start+n) exists; *created tells
 * whether one had to be made (the free search must then start again). */
static int ensure_blocks(struct qcow2 *s, uint64_t start, uint64_t n, bool *created,
                         GError **errp)
{
    *created = false;
    for (uint64_t t = start >> s->rb_bits; t < table_index_end(s, start, n); t++) {
        if (t < s->reftable_size && (s->reftable[t] & ~QCOW2_REFT_RESERVED))
            continue;
        if (alloc_refblock(s, t, 0, errp) < 0)
            return -1;
        *created = true;
        return 0;
    }
    return 0;
}

int qcow2_alloc_clusters(struct qcow2 *s, uint64_t n, uint64_t *off, GError **errp)
{
    uint64_t start;
    for (;;) {
        bool created;
        if (find_free(s, n, &start, errp) < 0 || ensure_blocks(s, start, n, &created, errp) < 0)
            return -1;
        if (!created)
            break;
    }
    /* Free by the refcounts must also be free by the structures: damaged
     * refcounts must not hand a table out as data (qemu checks each data
     * write; clusters are checked here, once, when they are handed out). */
    if (qcow2_guard_check_write(s, start << s->cluster_bits, n << s->cluster_bits, 0, errp) < 0)
        return -1;
    if (qcow2_update_refcount(s, start << s->cluster_bits, n << s->cluster_bits, 1, errp) < 0)
        return -1;
    /* Like qemu, the hint moves past everything scanned; frees move it back. */
    s->free_cluster_index = start + n;
    *off = start << s->cluster_bits;
    return 0;
}

int qcow2_alloc_bytes(struct qcow2 *s, uint64_t size, uint64_t *out, GError **errp)
{
    uint64_t off = s->free_byte_offset, rc;
    if (size == 0 || size > s->cluster_size)
        return qcow2_corrupt(s, errp, "Invalid compressed allocation of %" PRIu64 " bytes",
                             size);
    if (off) {
        if (qcow2_get_refcount(s, off >> s->cluster_bits, &rc, errp) < 0)
            return -1;
        if (rc == 0 || rc >= s->refcount_max)
            off = 0;
    }
    uint64_t room = off ? s->cluster_size - qcow2_offset_into_cluster(s, off) : 0;
    if (room < size) {
        uint64_t c;
        bool created = true;
        while (created) {
            if (find_free(s, 1, &c, errp) < 0 || ensure_blocks(s, c, 1, &created, errp) < 0)
                return -1;
        }
        /* Continue into the next cluster only when it is contiguous. */
        if (!off || ((off + s->cluster_size - 1) >> s->cluster_bits) != c)
            off = c << s->cluster_bits;
    }
    if (qcow2_guard_check_write(s, off, size, 0, errp) < 0 ||
        qcow2_update_refcount(s, off, size, 1, errp) < 0)
        return -1;
    *out = off;
    s->free_byte_offset = qcow2_offset_into_cluster(s, off + size) ? off + size : 0;
    return 0;
}

int qcow2_free_entry(struct qcow2 *s, uint64_t l2e, GError **errp)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t off, len;
        qcow2_compressed_span(s, l2e, &off, &len);
        return qcow2_update_refcount(s, off & ~511ull, len + (off & 511), -1, errp);
    }
    uint64_t host = l2e & QCOW2_OFFSET_MASK;
    if (!host || s->ext_data)
        return 0;
    return qcow2_update_refcount(s, host, s->cluster_size, -1, errp);
}

/* Gives the space of clusters that nothing references back to the file
 * system (qemu passes such discards down too).  The metadata that stopped
 * referencing them is made durable first: a crash must never leave an old
 * L2 entry on disk pointing at a hole.  Punching is advisory, so a file
 * system that cannot does not fail the caller. */
int qcow2_punch_free_clusters(struct qcow2 *s, GError **errp)
{
    if (s->data != s->file)
        return 0;
    if (qcow2_flush_metadata(s, errp) < 0 || diskimg_node_flush(s->file, errp) < 0)
        return -1;
    uint64_t run = 0;
    for (uint64_t c = 0; c <= s->end_cluster; c++) {
        uint64_t rc = 1;
        if (c < s->end_cluster && qcow2_get_refcount(s, c, &rc, errp) < 0)
            return -1;
        if (rc == 0) {
            run++;
            continue;
        }
        GError *err = NULL;
        if (run && diskimg_node_discard(s->file, (c - run) << s->cluster_bits,
                                        run << s->cluster_bits, &err) < 0)
            g_error_free(err);
        run = 0;
    }
    return 0;
}

/* ------------------------------------------------------ rebuild (check) */

/* Does refcount block index t have a non-zero count among ref[0, nref)? */
static bool block_has_counts(const struct qcow2 *s, const uint32_t *ref, uint64_t nref,
                             uint64_t t)
{
    for (uint64_t i = t << s->rb_bits; i < nref && i < (t + 1) << s->rb_bits; i++) {
        if (ref[i])
            return true;
    }
    return false;
}

/* Sizes the new structure: nb blocks then tc table clusters at `start`,
 * the blocks describing every counted cluster and the structure itself. */
static void size_rebuild(const struct qcow2 *s, const uint32_t *ref, uint64_t nref,
                         uint64_t start, uint64_t *nb, uint64_t *tc)
{
    uint64_t before = 0, first = start >> s->rb_bits;
    for (uint64_t t = 0; t <= first; t++)
        before += block_has_counts(s, ref, nref, t);
    bool first_counted = block_has_counts(s, ref, nref, first);
    *nb = 0;
    *tc = 1;
    /* Both grow with the area, so this stops after a few rounds. */
    for (;;) {
        uint64_t end = start + *nb + *tc;
        uint64_t last = (end - 1) >> s->rb_bits;
        uint64_t blocks = before + (last - first + 1) - first_counted;
        uint64_t table = ((last + 1) * 8 + s->cluster_size - 1) >> s->cluster_bits;
        if (blocks == *nb && table == *tc)
            return;
        *nb = blocks;
        *tc = table;
    }
}

uint64_t qcow2_rebuild_clusters(const struct qcow2 *s, const uint32_t *ref, uint64_t nref,
                                uint64_t start)
{
    uint64_t nb, tc;
    size_rebuild(s, ref, nref, start, &nb, &tc);
    return nb + tc;
}

static uint64_t rebuilt_count(const uint32_t *ref, uint64_t nref, uint64_t start, uint64_t end,
                              uint64_t cluster)
{
    if (cluster >= start && cluster < end)
        return 1;
    return cluster < nref ? ref[cluster] : 0;
}

static int write_guarded(struct qcow2 *s, const void *buf, uint64_t len, uint64_t off,
                         uint32_t allowed, GError **errp)
{
    if (qcow2_guard_check_write(s, off, len, allowed, errp) < 0)
        return -1;
    return diskimg_node_pwrite(s->file, buf, len, off, 0, errp);
}

/* Writes the blocks and the table of a rebuilt structure at `start`. */
static int write_rebuilt(struct qcow2 *s, const uint32_t *ref, uint64_t nref, uint64_t start,
                         uint64_t nb, uint64_t tc, uint64_t *table, GError **errp)
{
    uint64_t end = start + nb + tc, next = start;
    uint64_t entries = (tc << s->cluster_bits) / 8;
    g_autofree uint8_t *blk = g_try_malloc(s->cluster_size);
    if (!blk)
        return qcow2_enomem(errp);
    for (uint64_t t = 0; t <= (end - 1) >> s->rb_bits; t++) {
        uint64_t lo = t << s->rb_bits;
        if (!block_has_counts(s, ref, nref, t) && !(lo < end && lo + s->rb_entries > start))
            continue;
        memset(blk, 0, s->cluster_size);
        for (uint64_t j = 0; j < s->rb_entries; j++)
            qcow2_rb_set(s, blk, j, rebuilt_count(ref, nref, start, end, lo + j));
        table[t] = next << s->cluster_bits;
        if (write_guarded(s, blk, s->cluster_size, next << s->cluster_bits,
                          QCOW2_OL_REFCOUNT_BLOCK, errp) < 0)
            return -1;
        next++;
    }
    g_autofree uint8_t *raw = g_try_malloc(entries * 8);
    if (!raw)
        return qcow2_enomem(errp);
    for (uint64_t i = 0; i < entries; i++)
        diskimg_put_be64(raw + i * 8, table[i]);
    return write_guarded(s, raw, entries * 8, (start + nb) << s->cluster_bits,
                         QCOW2_OL_REFCOUNT_BLOCK | QCOW2_OL_REFCOUNT_TABLE, errp);
}

int qcow2_rebuild_refcounts(struct qcow2 *s, const uint32_t *ref, uint64_t nref,
                            uint64_t start, GError **errp)
{
    for (uint64_t i = 0; i < nref; i++) {
        if (ref[i] > s->refcount_max) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: cluster %" PRIu64
                        " has %" PRIu32 " references, more than refcount_bits=%" PRIu32
                        " can hold", s->filename, i, ref[i], s->refcount_bits);
            return -1;
        }
    }
    uint64_t nb, tc;
    size_rebuild(s, ref, nref, start, &nb, &tc);
    if ((tc << s->cluster_bits) > QCOW2_MAX_REFTABLE_BYTES) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_SPACE,
                    "%s: the rebuilt refcount table would exceed its maximum size", s->filename);
        return -1;
    }
    uint64_t entries = (tc << s->cluster_bits) / 8;
    uint64_t *table = g_try_new0(uint64_t, entries);
    if (!table)
        return qcow2_enomem(errp);
    uint8_t v[12];
    diskimg_put_be64(v, (start + nb) << s->cluster_bits);
    diskimg_put_be32(v + 8, (uint32_t)tc);
    /* The old blocks are dropped from the cache unwritten: they may be
     * the damaged ones.  From here on the old structure is dead: the
     * writes below may share clusters with what its damaged entries name. */
    for (uint64_t i = 0; i < s->reftable_size; i++)
        diskimg_mcache_discard(s->rbc, s->reftable[i] & ~QCOW2_REFT_RESERVED);
    if (write_rebuilt(s, ref, nref, start, nb, tc, table, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0 ||
        write_guarded(s, v, sizeof(v), QH_REFTABLE,
                      QCOW2_OL_HEADER | QCOW2_OL_REFCOUNT_TABLE | QCOW2_OL_REFCOUNT_BLOCK,
                      errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0) {
        g_free(table);
        return -1;
    }
    take_reftable(s, table, entries);
    s->h.reftable_offset = (start + nb) << s->cluster_bits;
    s->h.reftable_clusters = (uint32_t)tc;
    s->free_cluster_index = 0;
    note_end(s, start + nb + tc);
    return 0;
}
