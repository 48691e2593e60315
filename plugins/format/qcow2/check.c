/* SPDX-License-Identifier: MIT */
/*
 * check.c — qemu-img check for qcow2: rebuilds the reference counts from
 * every structure that uses clusters (header, L1/L2 tables of the active
 * state and of snapshots, data clusters, snapshot table, refcount table
 * and blocks, encryption header, bitmap directory/tables/data), compares
 * them with the stored refcounts and repairs leaks and errors on request.
 * Messages and counting follow qemu 7.2's qcow2_check_refcounts
 * ("Leaked cluster N refcount=1 reference=0", "ERROR refcount block N
 * refcount=2", ...) through diskimg_report.
 *
 * Repair never makes an image worse:
 *   - the references win: stored refcounts are replaced by the counted
 *     ones, never the other way round;
 *   - stored refcounts are read here without the refcount cache and
 *     without trusting the refcount table: an entry with reserved bits, a
 *     misaligned one, one outside the file or a block that something else
 *     also uses is reported, and repair then writes a new refcount
 *     structure in fresh clusters at the end of the file and switches the
 *     header to it (qemu's rebuild_refcount_structure), so no damaged block
 *     is ever written to;
 *   - repairs that would need a new refcount block are done the same way
 *     (allocating one would trust the damaged refcounts);
 *   - table repairs are decided once every reference is counted: an L2
 *     table is written (COPIED fix, zero clusters) only when its cluster is
 *     referenced as nothing but an L2 table by credible structures
 *     (credible_other), and the guard agrees; L1 and bitmap tables only
 *     where they hold nothing else;
 *   - an L1 entry naming a cluster that holds something else (guest data,
 *     another table) and reads as mostly corrupt L2 entries is cleared
 *     instead (clear_bogus_l1_entries): qemu would "repair" the entries
 *     there, overwriting that data;
 *   - an L1 entry naming a misaligned L2 table, which no read can use
 *     (qemu's reads of the range fail), is cleared: the range then reads
 *     as unallocated (clear_unaligned_l1_entries);
 *   - refcounts are repaired by setting the counted value, which fits
 *     where no delta would (64-bit refcounts); references beyond what an
 *     entry holds are reported as qemu's overflows and never written;
 *   - what reads as zeroes stays so: guest data and bitmap tables beyond
 *     the end of the file become zero clusters / tables of zeroes, a
 *     snapshot's L1 table beyond it keeps only its entries inside the file;
 *   - the snapshot table is read as qemu's check reads it (header.c) and
 *     written again when that worked around damage (qemu's
 *     qcow2_check_fix_snapshot_table);
 *   - new structures go after everything counted, where no damaged pointer
 *     names anything (free_area);
 *   - every write goes through the metadata-write guard (overlap.c): the
 *     checks above keep it from firing, it is the last line.
 * What cannot be repaired safely is left as it is and stays counted, so
 * the exit code says so.
 *
 * Memory: one 32-bit counter and three bytes per host cluster of the file
 * (saturating), i.e. bounded by the file size, never by the virtual size;
 * one byte per refcount table entry; the repair lists hold one entry per
 * damaged table entry found.
 */
#include <string.h>

#include "qcow2.h"

/* Repairs recorded while counting and done afterwards, at most this many
 * of each kind (a table of garbage can hold millions of "damaged
 * entries"; those past the limit stay reported, unrepaired). */
#define MAX_RECORDED_REPAIRS (1u << 20)

/* Records a repair to do later, within MAX_RECORDED_REPAIRS. */
static void record_repair(GArray *list, const void *item)
{
    if (list->len < MAX_RECORDED_REPAIRS)
        g_array_append_vals(list, item, 1);
}

/* A table entry to repair: 8 bytes at byte `pos` of the file that read
 * `entry` (an L1 entry: index `idx` of the active table when `active`). */
struct entry_fix {
    uint64_t pos, entry;
    uint32_t idx;
    bool active;
};

/* An L1 entry whose L2 table had `bad` corrupt entries in most of those
 * in use. */
struct l1_suspect {
    struct entry_fix f;
    uint64_t bad;
};

/* An L2 entry the repair makes a zero cluster (applied once everything is
 * counted, see apply_zero_fixes): entry `idx` of the table at l2off, as
 * it was; the guest data range counted for it (len 0: none); `whole`:
 * every subcluster reads as zeroes, else the bitmap is kept. */
struct zero_fix {
    uint64_t l2off, idx, entry;
    uint64_t ref_off, ref_len;
    bool whole, beyond_eof;
};

/* What check_refblocks found for each refcount table entry. */
enum { RB_NONE, RB_OK, RB_BAD };

/* The largest offset qemu's block layer reads (BDRV_MAX_LENGTH). */
#define QEMU_MAX_LENGTH ((UINT64_C(1) << 63) - (UINT64_C(1) << 30))

struct checker {
    struct qcow2 *s;
    struct diskimg_check_result *res;
    unsigned fix;
    uint32_t *ref;          /* computed refcounts */
    uint64_t nref;          /* entries in ref */
    uint64_t ref_end;       /* clusters counted are below this one */
    uint8_t *other;         /* per cluster: references as something but an L2 table
                             * (saturating at 255) */
    uint8_t *meta;          /* ... as metadata: neither an L2 table nor guest data */
    uint8_t *doubt;         /* ... as guest data by doubtful L2 tables (see
                             * credible_other), computed when first needed */
    bool counting_l2;       /* inc_refs is counting an L2 table reference */
    bool counting_data;     /* ... a guest data reference */
    bool counting_refblock; /* ... a refcount block (sharing is reported instead
                             * of an overflow) */
    uint64_t data_table;    /* ... made by the L2 table in this cluster */
    bool data_unseen;       /* ... whose bytes no guest read sees (unseen_data) */
    GArray *zero_fixes;     /* struct zero_fix: L2 entries the repair makes zero clusters */
    uint64_t next_contig;   /* fragmentation tracking */
    uint64_t file_len;      /* host file size rounded up to 512 (qemu's bdrv_getlength) */
    uint64_t real_len;      /* host file size */
    uint64_t start_len;     /* file_len when check began (a rebuild appends) */
    uint64_t file_clusters; /* clusters the file spans */
    uint8_t *rb_state;      /* RB_* per refcount table entry */
    bool rebuild;           /* the refcount structure itself is damaged */
    bool need_new_block;    /* a repair would need a refcount block that is not
                               there, or raise a refcount from 0: rebuild */
    uint64_t rb_errors;     /* corruptions a rebuild repairs: refcount structure */
    uint64_t rc_errors;     /* ... and refcount < references */
    uint8_t *blk;           /* one refcount block, read without the cache */
    uint64_t blk_off;       /* its offset, 0: none */
    GArray *l1_fixes;       /* struct entry_fix: L1 entries with reserved bits, to clear */
    GArray *l1_suspects;    /* struct l1_suspect: L1 entries naming a "table" of mostly
                             * corrupt entries (see clear_bogus_l1_entries) */
    GArray *l1_lost;        /* struct entry_fix: L1 entries naming an L2 table past EOF */
    GArray *l1_unaligned;   /* struct l1_suspect: L1 entries naming a misaligned "table"
                             * (see clear_unaligned_l1_entries) */
    GArray *lost_bitmap_tables;  /* uint32_t: bitmaps whose table is beyond the file */
    GArray *bitmap_fixes;   /* struct entry_fix: bitmap table entries beyond the file */
    uint64_t snap_errors;   /* snapshot table damage a rewrite of the table repairs */
    bool snap_table_counted;  /* the snapshot table's clusters were counted */
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
    uint8_t *o = g_try_renew(uint8_t, c->other, n);
    if (!o)
        return qcow2_enomem(errp);
    memset(o + c->nref, 0, n - c->nref);
    c->other = o;
    uint8_t *m = g_try_renew(uint8_t, c->meta, n);
    if (!m)
        return qcow2_enomem(errp);
    memset(m + c->nref, 0, n - c->nref);
    c->meta = m;
    c->nref = n;
    return 0;
}

static void inc_sat(uint8_t *v)
{
    if (*v != UINT8_MAX)
        (*v)++;
}

static void dec_sat(uint8_t *v)
{
    if (*v && *v != UINT8_MAX)
        (*v)--;
}

static uint32_t computed(const struct checker *c, uint64_t cluster)
{
    return cluster < c->nref ? c->ref[cluster] : 0;
}

/* Does [off, off+len) reach a cluster or more past the end of the file?
 * The last cluster may be partly written; anything further is not there. */
static bool beyond_eof(const struct checker *c, uint64_t off, uint64_t len)
{
    return off > UINT64_MAX - len || (off + len > c->file_len &&
                                      off + len - c->file_len >= c->s->cluster_size);
}

static void report_beyond_eof(const char *what, uint64_t off, uint64_t len)
{
    diskimg_report("%s: counting reference for region exceeding the end of the file by one "
                   "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64, what, off, len);
}

/* One reference more than a refcount entry can hold: qemu's words and
 * count.  (qemu's counts then stop at the maximum; ours go on, so that
 * sharing still shows, and compare_refcounts compares the maximum.) */
static void report_overflow(struct checker *c, uint64_t cluster)
{
    diskimg_report("ERROR: overflow cluster offset=%#" PRIx64, cluster << c->s->cluster_bits);
    diskimg_report("Use qemu-img amend to increase the refcount entry width or qemu-img convert "
                   "to create a clean copy if the image cannot be opened for writing");
    c->res->corruptions++;
}

/* Counts one reference to every cluster of [off, off+len). */
static int inc_refs(struct checker *c, uint64_t off, uint64_t len, GError **errp)
{
    struct qcow2 *s = c->s;
    if (len == 0)
        return 0;
    /* (this also bounds c->ref by the file size) */
    if (beyond_eof(c, off, len)) {
        report_beyond_eof("ERROR", off, len);
        c->res->corruptions++;
        return 0;
    }
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    if (ref_grow(c, last + 1, errp) < 0)
        return -1;
    c->ref_end = MAX(c->ref_end, last + 1);
    for (uint64_t i = first; i <= last; i++) {
        if (c->ref[i] >= s->refcount_max && !c->counting_refblock)
            report_overflow(c, i);
        if (c->ref[i] != UINT32_MAX)
            c->ref[i]++;
        /* An L2 table naming its own cluster as data: that "data" is the
         * table, no reason to keep the table from being repaired; nor is
         * data no one reads. */
        if (!c->counting_l2 && !(c->counting_data && (i == c->data_table || c->data_unseen)))
            inc_sat(&c->other[i]);
        if (!c->counting_l2 && !c->counting_data)
            inc_sat(&c->meta[i]);
    }
    return 0;
}

/* Takes back what inc_refs counted for [off, off+len): metadata, or guest
 * data when `data` (never an L2 table). */
static void dec_refs(struct checker *c, uint64_t off, uint64_t len, bool data)
{
    struct qcow2 *s = c->s;
    if (len == 0 || off > UINT64_MAX - len)
        return;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    for (uint64_t i = first; i <= last && i < c->nref; i++) {
        if (c->ref[i] && c->ref[i] != UINT32_MAX)
            c->ref[i]--;
        dec_sat(&c->other[i]);
        if (!data)
            dec_sat(&c->meta[i]);
    }
}

/* Does the allocated L2 entry e (subcluster bitmap bm) keep no guest data
 * in its cluster?  As qemu's check tells "Preallocated" from "Data": the
 * ZERO flag, or with extended L2 entries no subcluster allocated,
 * whatever the version. */
static bool zero_alloc_entry(const struct qcow2 *s, uint64_t e, uint64_t bm)
{
    if (s->ext_l2)
        return (bm & 0xffffffffull) == 0;
    return (e & QCOW2_OFLAG_ZERO) != 0;
}

/* Are the bytes the L2 entry e (subcluster bitmap bm) names never read
 * by the guest?  Those of a preallocated zero cluster: what is there
 * matters to no one, so such a reference does not keep a structure
 * sharing the cluster from being repaired.  A v2 image has no zero
 * clusters (a ZERO flag there makes reads fail), so its data counts. */
static bool unseen_data(const struct qcow2 *s, uint64_t e, uint64_t bm)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return false;
    return s->h.version >= 3 && zero_alloc_entry(s, e, bm);
}

/* Guest data references made by the L2 table at l2off, counted as such;
 * `unseen` when no guest read sees their bytes. */
static int inc_data_refs(struct checker *c, uint64_t l2off, uint64_t off, uint64_t len,
                         bool unseen, GError **errp)
{
    c->counting_data = true;
    c->data_table = l2off >> c->s->cluster_bits;
    c->data_unseen = unseen;
    int ret = inc_refs(c, off, len, errp);
    c->counting_data = c->data_unseen = false;
    return ret;
}

/* ------------------------------------------------------------ L1 / L2 */

/* A table the cache does not hold (it would be its corruption signal):
 * at a misaligned offset, or at 0, the header, where an L1 entry with only
 * reserved bits points.  qemu reads such tables as they are; they are
 * never written. */
static bool l2_uncached(const struct qcow2 *s, uint64_t l2off)
{
    return !l2off || qcow2_offset_into_cluster(s, l2off);
}

/* A zero cluster reads as zeroes; where that would show the backing file
 * instead (a v2 image has no zero flag), no entry can be made one. */
static bool can_zero_entries(const struct qcow2 *s)
{
    return s->h.version >= 3 || !s->h.backing_offset;
}

static void add_zero_fix(struct checker *c, const struct zero_fix *f)
{
    if ((c->fix & DISKIMG_CHECK_FIX_ERRORS) && can_zero_entries(c->s) &&
        !l2_uncached(c->s, f->l2off))
        record_repair(c->zero_fixes, f);
}

/* Guest data beyond the end of the file reads as zeroes (qemu reads it
 * so); the repair makes the entry a zero cluster, which reads the same
 * and references nothing. */
static void zero_beyond_eof(struct checker *c, uint64_t l2off, uint64_t idx, uint64_t e,
                            uint64_t off, uint64_t len)
{
    report_beyond_eof("ERROR", off, len);
    c->res->corruptions++;
    struct zero_fix f = { .l2off = l2off, .idx = idx, .entry = e, .whole = true,
                          .beyond_eof = true };
    add_zero_fix(c, &f);
}

static int check_compressed(struct checker *c, uint64_t l2off, uint64_t idx, uint64_t e,
                            uint64_t bm, bool active, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t off, len;
    if (e & QCOW2_OFLAG_COPIED) {
        diskimg_report("ERROR: coffset=%#" PRIx64 ": copied flag must never be set for "
                       "compressed clusters", e & s->coffset_mask);
        c->res->corruptions++;
        e &= ~QCOW2_OFLAG_COPIED;
    }
    if (s->ext_data) {
        diskimg_report("ERROR compressed cluster %" PRIu64 " with data file, entry=%#" PRIx64,
                       idx, e);
        c->res->corruptions++;
        return 0;
    }
    if (s->ext_l2 && bm) {
        diskimg_report("ERROR compressed cluster %" PRIu64 " with non-zero subcluster "
                       "allocation bitmap, entry=%#" PRIx64, idx, e);
        c->res->corruptions++;
        return 0;
    }
    qcow2_compressed_span(s, e, &off, &len);
    if (active) {
        c->res->allocated_clusters++;
        c->res->compressed_clusters++;
        c->res->fragmented_clusters++;
    }
    /* wholly beyond the end: nothing of it can be read back */
    uint64_t start = off & ~511ull, n = len + (off & 511);
    if (start >= c->real_len && beyond_eof(c, start, n)) {
        zero_beyond_eof(c, l2off, idx, e, start, n);
        return 0;
    }
    return inc_data_refs(c, l2off, start, n, false, errp);
}

/* Entry idx of the L2 table at l2off. */
static int check_l2_entry(struct checker *c, uint64_t l2off, uint64_t idx, uint64_t e,
                          uint64_t bm, bool active, GError **errp)
{
    struct qcow2 *s = c->s;
    if (e & QCOW2_OFLAG_COMPRESSED)
        return check_compressed(c, l2off, idx, e, bm, active, errp);
    if (e & QCOW2_L2_RESERVED) {
        diskimg_report("ERROR found l2 entry with reserved bits set: %" PRIx64, e);
        c->res->corruptions++;
    }
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if (!host && !(s->ext_data && (e & QCOW2_OFLAG_COPIED))) {
        /* unallocated (or a plain zero cluster) */
        if (s->ext_l2 && (bm & 0xffffffffull)) {
            diskimg_report("ERROR: Unallocated cluster has non-zero subcluster allocation map");
            c->res->corruptions++;
        }
        return 0;
    }
    if (s->ext_l2 && (bm & (bm >> 32) & 0xffffffffull)) {
        diskimg_report("ERROR offset=%" PRIx64 ": Allocated cluster has corrupted subcluster "
                       "allocation bitmap", host);
        c->res->corruptions++;
    }
    if (active) {
        c->res->allocated_clusters++;
        if (c->next_contig && host != c->next_contig)
            c->res->fragmented_clusters++;
        c->next_contig = host + s->cluster_size;
    }
    if (qcow2_offset_into_cluster(s, host)) {
        /* Like qemu: report, then still count the (misaligned) range as
         * referenced, so the clusters it overlaps are not called leaks.
         * A preallocated zero cluster loses nothing when it becomes a
         * plain zero cluster: qemu's repair, done so here too (once the
         * counts show the table may be written; the range is then no
         * longer referenced). */
        bool data = !zero_alloc_entry(s, e, bm);
        bool fix = !data && (c->fix & DISKIMG_CHECK_FIX_ERRORS) && can_zero_entries(s);
        diskimg_report("%s offset=%" PRIx64 ": %s cluster is not properly aligned; L2 entry "
                       "corrupted.", fix ? "Repairing" : "ERROR", host,
                       data ? "Data" : "Preallocated");
        c->res->corruptions++;
        struct zero_fix f = { .l2off = l2off, .idx = idx, .entry = e, .ref_off = host,
                              .ref_len = s->cluster_size };
        bool own = (host >> s->cluster_bits) == (l2off >> s->cluster_bits) ||
                   ((host + s->cluster_size - 1) >> s->cluster_bits) == (l2off >> s->cluster_bits);
        /* In an external data file the range is no cluster of this file:
         * nothing was counted for it, and making the entry a plain zero
         * cluster is as safe as anywhere. */
        if (fix && s->ext_data) {
            f.ref_off = f.ref_len = 0;
            add_zero_fix(c, &f);
        } else if (fix && !own && !beyond_eof(c, host, s->cluster_size)) {
            add_zero_fix(c, &f);
        }
    }
    if (s->ext_data)
        return 0;
    if (beyond_eof(c, host, s->cluster_size)) {
        zero_beyond_eof(c, l2off, idx, e, host, s->cluster_size);
        return 0;
    }
    return inc_data_refs(c, l2off, host, s->cluster_size, unseen_data(s, e, bm), errp);
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

/* An L2 table to check: through the cache, or a copy (l2_uncached). */
static int get_l2(struct qcow2 *s, uint64_t l2off, uint8_t **l2, GError **errp)
{
    if (!l2_uncached(s, l2off))
        return diskimg_mcache_get(s->l2c, l2off, 0, l2, errp);
    *l2 = g_try_malloc0(s->cluster_size);
    if (!*l2)
        return qcow2_enomem(errp);
    if (diskimg_node_pread(s->file, *l2, s->cluster_size, l2off, errp) < 0) {
        g_free(*l2);
        return -1;
    }
    return 0;
}

static void put_l2(struct qcow2 *s, uint64_t l2off, uint8_t *l2)
{
    if (l2_uncached(s, l2off))
        g_free(l2);
    else
        diskimg_mcache_put(s->l2c, l2);
}

/* Checks the L2 table at l2off; *used and *bad: how many of its entries
 * are in use and how many of those were found corrupt. */
static int check_l2(struct checker *c, uint64_t l2off, bool active, uint64_t *used,
                    uint64_t *bad, GError **errp)
{
    struct qcow2 *s = c->s;
    uint8_t *l2;
    *used = *bad = 0;
    if (get_l2(s, l2off, &l2, errp) < 0)
        return -1;
    /* qemu measures fragmentation within each L2 table. */
    c->next_contig = 0;
    int ret = 0;
    for (uint64_t i = skip_zero_entries(s, l2, 0); i < s->l2_entries && ret == 0;
         i = skip_zero_entries(s, l2, i + 1)) {
        uint64_t e = qcow2_l2_entry(s, l2, i), bm = qcow2_l2_bitmap(s, l2, i);
        uint64_t before = c->res->corruptions;
        ret = check_l2_entry(c, l2off, i, e, bm, active, errp);
        *used += e || bm;
        *bad += c->res->corruptions != before;
    }
    put_l2(s, l2off, l2);
    return ret;
}

/* What an L1 entry names is no L2 table when most entries in use there
 * are corrupt: a real table damaged in a few entries keeps its majority. */
static bool mostly_corrupt(uint64_t used, uint64_t bad)
{
    return bad > 0 && bad * 2 > used;
}

static int check_l1(struct checker *c, uint64_t l1off, uint32_t l1size, const uint64_t *l1,
                    bool active, GError **errp)
{
    struct qcow2 *s = c->s;
    if (inc_refs(c, l1off, (uint64_t)l1size * 8, errp) < 0)
        return -1;
    for (uint32_t i = 0; i < l1size; i++) {
        uint64_t before = c->res->corruptions;
        if (l1[i] & QCOW2_L1_RESERVED) {
            diskimg_report("ERROR found L1 entry with reserved bits set: %" PRIx64, l1[i]);
            c->res->corruptions++;
            struct entry_fix f = { l1off + (uint64_t)i * 8, l1[i], i, active };
            if (c->fix & DISKIMG_CHECK_FIX_ERRORS)
                record_repair(c->l1_fixes, &f);
        }
        uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK;
        /* as qemu: only an all-zero entry is unused; one with reserved
         * bits only names cluster 0, which is counted and read as an L2
         * table (the header's bytes then make for errors) */
        if (!l1[i])
            continue;
        /* as qemu: counted, reported, and still read where it points */
        c->counting_l2 = !qcow2_offset_into_cluster(s, l2off);
        int ret = inc_refs(c, l2off, s->cluster_size, errp);
        c->counting_l2 = false;
        if (ret < 0)
            return -1;
        if ((c->fix & DISKIMG_CHECK_FIX_ERRORS) && !qcow2_offset_into_cluster(s, l2off) &&
            beyond_eof(c, l2off, s->cluster_size)) {
            struct entry_fix f = { l1off + (uint64_t)i * 8, l1[i], i, active };
            record_repair(c->l1_lost, &f);
        }
        bool unaligned = qcow2_offset_into_cluster(s, l2off);
        if (unaligned) {
            diskimg_report("ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                         "corrupted", l2off);
            c->res->corruptions++;
        }
        uint64_t used, bad;
        if (check_l2(c, l2off, active, &used, &bad, errp) < 0)
            return -1;
        struct l1_suspect sus = { { l1off + (uint64_t)i * 8, l1[i], i, active }, bad };
        if (!(c->fix & DISKIMG_CHECK_FIX_ERRORS) || !l2off)
            continue;
        if (unaligned) {
            /* every error this entry caused (reserved bits, its table
             * beyond the file, the alignment, the entries read there):
             * clearing it repairs them all */
            sus.bad = c->res->corruptions - before;
            record_repair(c->l1_unaligned, &sus);
        } else if (mostly_corrupt(used, bad)) {
            record_repair(c->l1_suspects, &sus);
        }
    }
    return 0;
}

/* Reads [off, off+len) of the image file; what lies beyond its end reads
 * as zeroes (as qemu reads it). */
static int pread_in_file(struct checker *c, void *buf, uint64_t len, uint64_t off,
                         GError **errp)
{
    return qcow2_pread_padded(c->s, buf, len, off, c->real_len, errp);
}

/* Can any tool read the L1 table of snapshot sn?  Not when it is
 * misaligned or larger than any L1 table may be. */
static bool snapshot_l1_readable(const struct qcow2 *s, const struct qcow2_snapshot *sn)
{
    return !qcow2_offset_into_cluster(s, sn->l1_offset) && sn->l1_size <= QCOW2_MAX_L1_BYTES / 8;
}

/* An L1 table check can walk: qemu's checks of a snapshot table entry,
 * reported and counted as qemu does (the snapshot is then skipped). */
static bool snapshot_l1_usable(struct checker *c, const struct qcow2_snapshot *sn)
{
    struct qcow2 *s = c->s;
    if (snapshot_l1_readable(s, sn))
        return true;
    if (qcow2_offset_into_cluster(s, sn->l1_offset))
        diskimg_report("ERROR snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table is not cluster "
                       "aligned; snapshot table entry corrupted", sn->id, sn->name,
                       sn->l1_offset);
    else
        diskimg_report("ERROR snapshot %s (%s) l1_size=%#" PRIx32 ": L1 table is too large; "
                       "snapshot table entry corrupted", sn->id, sn->name, sn->l1_size);
    c->res->corruptions++;
    return false;
}

/* A snapshot's L1 table reaching beyond the end of the file reads as
 * zeroes there (as qemu reads it): the repair keeps the entries inside the
 * file, which reads the same, and writes the snapshot table again.  (qemu's
 * repair of such an image drops every snapshot.) */
static void cut_snapshot_l1(struct checker *c, struct qcow2_snapshot *sn)
{
    uint64_t kept = sn->l1_offset < c->file_len ? (c->file_len - sn->l1_offset) / 8 : 0;
    diskimg_report("Repairing snapshot %s (%s) l1_offset=%#" PRIx64 ": L1 table reaches "
                   "beyond the end of the file, which reads as zeroes; keeping its %" PRIu64
                   " entries inside the file", sn->id, sn->name, sn->l1_offset, kept);
    sn->l1_size = (uint32_t)MIN(kept, sn->l1_size);
    if (!sn->l1_size)
        sn->l1_offset = 0;
    c->snap_errors++;
    c->res->corruptions++;
}

static int check_snapshot(struct checker *c, struct qcow2_snapshot *sn, GError **errp)
{
    /* as qemu: an empty table is not looked at, wherever it is said to be */
    if (!snapshot_l1_usable(c, sn) || !sn->l1_size)
        return 0;
    /* past the block layer's largest offset qemu's read fails, and its
     * check; below it, beyond the file, the table reads as zeroes */
    if (sn->l1_offset > QEMU_MAX_LENGTH - (uint64_t)sn->l1_size * 8)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: the L1 table of snapshot %s "
                                 "at %#" PRIx64 " cannot be read", c->s->filename, sn->id,
                                 sn->l1_offset);
    if ((c->fix & DISKIMG_CHECK_FIX_ERRORS) &&
        beyond_eof(c, sn->l1_offset, (uint64_t)sn->l1_size * 8))
        cut_snapshot_l1(c, sn);
    uint64_t *l1 = g_try_new(uint64_t, MAX(sn->l1_size, 1));
    if (!l1)
        return qcow2_enomem(errp);
    int ret = pread_in_file(c, l1, (uint64_t)sn->l1_size * 8, sn->l1_offset, errp);
    for (uint32_t i = 0; ret == 0 && i < sn->l1_size; i++)
        l1[i] = diskimg_be64(&l1[i]);
    if (ret == 0)
        ret = check_l1(c, sn->l1_offset, sn->l1_size, l1, false, errp);
    g_free(l1);
    return ret;
}

/* ------------------------------------------------------------ other structures */

/* A bitmap data cluster beyond the end of the file (reported by inc_refs)
 * holds nothing readable: its bits read as zeroes, as qemu reads them (and
 * qemu's read-write close then stores a fresh table).  The repair makes
 * the entry say so (0: all zeroes), which loses nothing; done once all
 * references are counted (clear_lost_bitmap_cluster). */
static void note_lost_bitmap_cluster(struct checker *c, const struct qcow2_bitmap *bm,
                                     uint64_t j, uint64_t entry)
{
    struct entry_fix f = { bm->table_offset + j * 8, entry, 0, false };
    if (c->fix & DISKIMG_CHECK_FIX_ERRORS)
        record_repair(c->bitmap_fixes, &f);
}

/* Only where the table is all its cluster holds: referenced once, as that
 * table, and nothing else the guard knows there. */
static int clear_lost_bitmap_cluster(struct checker *c, const struct entry_fix *f, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t cl = f->pos >> s->cluster_bits;
    uint8_t v[8];
    if (cl >= c->nref || c->ref[cl] != 1 || c->other[cl] != 1 || f->pos + 8 > c->real_len ||
        qcow2_guard_find(s, QCOW2_OL_BITMAP_TABLE, f->pos, 8))
        return 0;
    if (diskimg_node_pread(s->file, v, 8, f->pos, errp) < 0)
        return -1;
    if (diskimg_be64(v) != f->entry)
        return 0;
    memset(v, 0, sizeof(v));
    if (qcow2_guard_check_write(s, f->pos, 8, QCOW2_OL_BITMAP_TABLE, errp) < 0 ||
        diskimg_node_pwrite(s->file, v, 8, f->pos, 0, errp) < 0)
        return -1;
    c->res->corruptions -= MIN(c->res->corruptions, 1);
    c->res->corruptions_fixed++;
    return 0;
}

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
        /* a table wholly beyond the end of the file reads as zeroes */
        if (bm->table_offset >= c->file_len && beyond_eof(c, bm->table_offset, n * 8)) {
            report_beyond_eof("ERROR", bm->table_offset, n * 8);
            c->res->corruptions++;
            if (c->fix & DISKIMG_CHECK_FIX_ERRORS)
                record_repair(c->lost_bitmap_tables, &i);
            g_free(t);
            continue;
        }
        int ret = inc_refs(c, bm->table_offset, n * 8, errp);
        if (ret == 0)
            ret = diskimg_node_pread(s->file, t, n * 8, bm->table_offset, errp);
        for (uint64_t j = 0; ret == 0 && j < n; j++) {
            uint64_t e = diskimg_be64(&t[j]), off = e & QCOW2_OFFSET_MASK;
            if (off)
                ret = inc_refs(c, off, s->cluster_size, errp);
            if (ret == 0 && off >= c->file_len)
                note_lost_bitmap_cluster(c, bm, j, e);
        }
        g_free(t);
        if (ret < 0)
            return -1;
    }
    return 0;
}

/* A refcount block the table names is usable only when it is aligned,
 * inside the file, without reserved bits, and used by nothing else (its
 * cluster counted exactly once).  Counted after every other structure, as
 * qemu does, so that sharing shows. */
static int check_refblocks(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t e = s->reftable[i], off = e & ~QCOW2_REFT_RESERVED;
        c->rb_state[i] = RB_BAD;
        if (e & QCOW2_REFT_RESERVED) {
            diskimg_report("ERROR refcount table entry %" PRIu64 " has reserved bits set", i);
        } else if (qcow2_offset_into_cluster(s, off)) {
            diskimg_report("ERROR refcount block %" PRIu64 " is not cluster aligned; refcount "
                           "table entry corrupted", i);
        } else if ((off >> s->cluster_bits) >= MAX(c->file_clusters, c->ref_end)) {
            /* qemu grows the file over it; the rebuild repairs it here */
            diskimg_report("%s refcount block %" PRIu64 " is outside image",
                           c->fix & DISKIMG_CHECK_FIX_ERRORS ? "Repairing" : "ERROR", i);
        } else if (!off) {
            c->rb_state[i] = RB_NONE;
            continue;
        } else {
            c->counting_refblock = true;
            int ret = inc_refs(c, off, s->cluster_size, errp);
            c->counting_refblock = false;
            if (ret < 0)
                return -1;
            uint32_t n = computed(c, off >> s->cluster_bits);
            if (n == 1) {
                c->rb_state[i] = RB_OK;
                continue;
            }
            diskimg_report("ERROR refcount block %" PRIu64 " refcount=%" PRIu32, i, n);
        }
        c->res->corruptions++;
        c->rb_errors++;
        c->rebuild = true;
    }
    return 0;
}

static int count_references(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    if (inc_refs(c, 0, s->cluster_size, errp) < 0 ||
        check_l1(c, s->l1_offset, s->l1_size, s->l1, true, errp) < 0)
        return -1;
    /* a snapshot's data would be the active layer's: qemu calls them
     * corrupt (and neither tool repairs that) */
    if (s->ext_data && s->nb_snapshots) {
        diskimg_report("ERROR %" PRIu32 " snapshots in image with data file", s->nb_snapshots);
        c->res->corruptions++;
    }
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (check_snapshot(c, &s->snapshots[i], errp) < 0)
            return -1;
    }
    uint64_t before = c->res->corruptions;
    if (s->nb_snapshots &&
        inc_refs(c, s->h.snapshots_offset, s->snapshots_size, errp) < 0)
        return -1;
    c->snap_table_counted = s->nb_snapshots && c->res->corruptions == before;
    /* A table reaching beyond the end of the file holds nothing there:
     * the guard keeps only its part inside the file, so that repairs may
     * put new structures after the file (a rewritten table replaces it). */
    if (!c->snap_table_counted && (c->fix & DISKIMG_CHECK_FIX_ERRORS))
        s->snapshots_size = s->h.snapshots_offset < c->real_len
                            ? MIN(s->snapshots_size, c->real_len - s->h.snapshots_offset) : 0;
    if (inc_refs(c, s->h.reftable_offset, (uint64_t)s->h.reftable_clusters << s->cluster_bits,
                 errp) < 0)
        return -1;
    before = c->res->corruptions;
    if (s->h.has_crypto_ext && inc_refs(c, s->h.crypto_offset, s->h.crypto_length, errp) < 0)
        return -1;
    /* The same for a crypto header said to reach far past the file (the
     * key material was read, so it lies inside): were the guard to keep
     * all of it, a rebuild would put its new structure after that end,
     * growing the file by as much. */
    if (s->h.has_crypto_ext && c->res->corruptions != before &&
        (c->fix & DISKIMG_CHECK_FIX_ERRORS)) {
        s->crypto_cut = true;
        s->crypto_cut_length = s->h.crypto_offset < c->real_len
                               ? MIN(s->h.crypto_length, c->real_len - s->h.crypto_offset) : 0;
    }
    return check_bitmaps(c, errp) < 0 ? -1 : check_refblocks(c, errp);
}

/* ------------------------------------------------------------ writing L2 tables */

/* Counts, into c->doubt, the guest data references made by doubtful L2
 * tables: those whose cluster is also referenced as metadata (an L1
 * table, a refcount block, ...), i.e. where an L1 entry points at
 * something that is not an L2 table.  What such a table "references" is
 * whatever the other structure's bytes say. */
static void count_doubtful_l2(struct checker *c, const uint64_t *l1, uint32_t l1size)
{
    struct qcow2 *s = c->s;
    for (uint32_t i = 0; i < l1size; i++) {
        uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK, cl = l2off >> s->cluster_bits;
        uint8_t *l2;
        GError *err = NULL;
        if (!l1[i] || qcow2_offset_into_cluster(s, l2off) || cl >= c->nref || !c->meta[cl])
            continue;
        if (get_l2(s, l2off, &l2, &err) < 0) {
            g_error_free(err);
            continue;
        }
        for (uint64_t j = 0; j < s->l2_entries; j++) {
            uint64_t e = qcow2_l2_entry(s, l2, j), off = e & QCOW2_OFFSET_MASK;
            uint64_t len = s->cluster_size;
            if (unseen_data(s, e, qcow2_l2_bitmap(s, l2, j)))
                continue;   /* not counted as other either */
            if (e & QCOW2_OFLAG_COMPRESSED) {
                qcow2_compressed_span(s, e, &off, &len);
                len += off & 511;
                off &= ~511ull;
            }
            if (!off || s->ext_data || off > UINT64_MAX - len)
                continue;
            /* (references to its own cluster were not counted as other) */
            for (uint64_t k = off >> s->cluster_bits;
                 k <= (off + len - 1) >> s->cluster_bits && k < c->nref; k++) {
                if (k != cl)
                    inc_sat(&c->doubt[k]);
            }
        }
        put_l2(s, l2off, l2);
    }
}

static void compute_doubt(struct checker *c)
{
    struct qcow2 *s = c->s;
    c->doubt = g_try_malloc0(MAX(c->nref, 1));
    if (!c->doubt)
        return;
    count_doubtful_l2(c, s->l1, s->l1_size);
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        uint64_t *l1;
        if (!snapshot_l1_readable(s, sn))
            continue;
        l1 = g_try_new(uint64_t, MAX(sn->l1_size, 1));
        GError *err = NULL;
        if (l1 && pread_in_file(c, l1, (uint64_t)sn->l1_size * 8, sn->l1_offset, &err) == 0) {
            for (uint32_t j = 0; j < sn->l1_size; j++)
                l1[j] = diskimg_be64(&l1[j]);
            count_doubtful_l2(c, l1, sn->l1_size);
        }
        g_clear_error(&err);
        g_free(l1);
    }
}

/* References to cluster cl as something but an L2 table, less the guest
 * data references of doubtful L2 tables: when an L1 entry names, say,
 * the active L1 table as an L2 table, the "data clusters" it then seems
 * to reference are no reason to keep a real L2 table from being repaired
 * (the other way round, a data cluster named as an L2 table by an L1
 * entry still counts as data: its L2 table is not doubtful). */
static uint8_t credible_other(struct checker *c, uint64_t cl)
{
    uint8_t o = cl < c->nref ? c->other[cl] : 0;
    if (!o || o == UINT8_MAX)
        return o;
    if (!c->doubt)
        compute_doubt(c);
    if (!c->doubt)
        return o;   /* out of memory: conservative */
    return (uint8_t)(o - MIN(o, c->doubt[cl]));
}

/* May a repair write the L2 table at l2off?  Only a cluster that is
 * referenced as nothing but an L2 table (L1 entries, of snapshots too,
 * may share it), starts inside the file and holds no other structure the
 * guard knows but those `allowed`.  The last cluster of a truncated file
 * may be partly missing: that part reads as zeroes and is written as the
 * zeroes it read. */
static bool l2_table_writable(struct checker *c, uint64_t l2off, uint32_t allowed)
{
    struct qcow2 *s = c->s;
    return (c->fix & DISKIMG_CHECK_FIX_ERRORS) && !l2_uncached(s, l2off) &&
           (l2off >> s->cluster_bits) < c->nref && !credible_other(c, l2off >> s->cluster_bits) &&
           l2off < c->file_len && !qcow2_guard_find(s, allowed, l2off, s->cluster_size);
}

/* Makes the entry of f a zero cluster where its table may be written and
 * still holds what check saw.  *done: it was. */
static int apply_zero_fix(struct checker *c, const struct zero_fix *f, bool *done,
                          GError **errp)
{
    struct qcow2 *s = c->s;
    uint8_t *l2;
    *done = false;
    if (!l2_table_writable(c, f->l2off, QCOW2_OL_ACTIVE_L2 | QCOW2_OL_INACTIVE_L2))
        return 0;
    if (diskimg_mcache_get(s->l2c, f->l2off, 0, &l2, errp) < 0)
        return -1;
    uint64_t bm = qcow2_l2_bitmap(s, l2, f->idx), now = qcow2_l2_entry(s, l2, f->idx);
    uint64_t ze = s->ext_l2 || s->h.version < 3 ? 0 : QCOW2_OFLAG_ZERO;
    if (now == f->entry) {
        qcow2_l2_set(s, l2, f->idx, ze, f->whole && s->ext_l2 ? 0xffffffff00000000ull : bm);
        diskimg_mcache_mark_dirty(s->l2c, l2);
        *done = true;
    } else if (now == ze) {
        /* a table two L1 entries share was walked twice: the first
         * repair of this entry did for both */
        *done = true;
    }
    diskimg_mcache_put(s->l2c, l2);
    if (!*done)
        return 0;
    if (f->beyond_eof)
        diskimg_report("Repairing L2 entry %" PRIx64 ": its cluster lies beyond the end of the "
                       "file, made a zero cluster", f->entry);
    if (f->ref_len) {
        dec_refs(c, f->ref_off, f->ref_len, true);
        if (c->meta[f->l2off >> s->cluster_bits] && c->doubt) {
            for (uint64_t k = f->ref_off >> s->cluster_bits;
                 k <= (f->ref_off + f->ref_len - 1) >> s->cluster_bits && k < c->nref; k++)
                dec_sat(&c->doubt[k]);
        }
    }
    c->res->corruptions -= MIN(c->res->corruptions, 1);
    c->res->corruptions_fixed++;
    return 0;
}

/* The zero-cluster repairs recorded while counting, once the counts are
 * complete.  Before the refcounts are repaired every one may be done;
 * after it (a rebuild may have dropped a damaged refcount block that
 * named an L2 table) only those whose range was never counted, the
 * refcounts being final.  Done ones leave the list. */
static int apply_zero_fixes(struct checker *c, bool counted_ok, GError **errp)
{
    for (guint i = 0; i < c->zero_fixes->len;) {
        struct zero_fix *f = &g_array_index(c->zero_fixes, struct zero_fix, i);
        bool done = false;
        if ((counted_ok || !f->ref_len) && apply_zero_fix(c, f, &done, errp) < 0)
            return -1;
        if (done)
            g_array_remove_index_fast(c->zero_fixes, i);
        else
            i++;
    }
    return 0;
}

/* ------------------------------------------------------------ stored refcounts */

/* The stored refcount of `cluster`, read as qemu reads it (reserved bits
 * of the table entry ignored, a block beyond the end of the file reads as
 * zeroes) but without the refcount cache, whose errors would mark the
 * image corrupt.  *has_block: a refcount block describes the cluster. */
static int stored_refcount(struct checker *c, uint64_t cluster, uint64_t *rc, bool *has_block,
                           GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t t = cluster >> s->rb_bits;
    *rc = 0;
    *has_block = false;
    uint64_t off = t < s->reftable_size ? s->reftable[t] & ~QCOW2_REFT_RESERVED : 0;
    if (!off)
        return 0;
    *has_block = true;
    /* as qemu reads it: a misaligned block, or one past the block layer's
     * largest offset (BDRV_MAX_LENGTH, 2^63 - 2^30), is an I/O error */
    if (qcow2_offset_into_cluster(s, off) || off > QEMU_MAX_LENGTH - s->cluster_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT, "Input/output error");
        return -1;
    }
    if (off != c->blk_off) {
        memset(c->blk, 0, s->cluster_size);
        uint64_t real_len = c->file_len;
        if (off < real_len) {
            uint64_t n = MIN(s->cluster_size, real_len - off);
            GError *err = NULL;
            /* a short file (length rounded up to 512) reads as zeroes */
            if (diskimg_node_pread(s->file, c->blk, n, off, &err) < 0 && n == s->cluster_size) {
                g_propagate_error(errp, err);
                return -1;
            }
            g_clear_error(&err);
        }
        c->blk_off = off;
    }
    *rc = qcow2_rb_get(s, c->blk, cluster & (s->rb_entries - 1));
    return 0;
}

/* ------------------------------------------------------------ comparison */

static void repair_one(struct checker *c, uint64_t i, uint64_t stored, uint64_t want)
{
    struct qcow2 *s = c->s;
    GError *err = NULL;
    if (qcow2_set_refcount(s, i, want, &err) < 0) {
        diskimg_report("ERROR: could not repair cluster %" PRIu64 ": %s", i, err->message);
        g_error_free(err);
        if (stored > want)
            c->res->leaks++;
        else
            c->res->corruptions++;
        return;
    }
    if (stored > want)
        c->res->leaks_fixed++;
    else
        c->res->corruptions_fixed++;
}

/* qemu's compare_refcounts.  `fix`: the repairs to do now (in place, only
 * ever through usable refcount blocks: the caller rebuilds otherwise). */
static int compare_refcounts(struct checker *c, unsigned fix, uint64_t *highest, GError **errp)
{
    uint64_t n = MAX(c->file_clusters, c->ref_end);
    (void)errp;
    *highest = 0;
    c->rc_errors = 0;
    c->need_new_block = false;
    c->blk_off = 0;
    for (uint64_t i = 0; i < n; i++) {
        /* references past the maximum were counted as overflows */
        uint64_t stored, want = MIN(computed(c, i), c->s->refcount_max);
        bool has_block;
        GError *err = NULL;
        if (stored_refcount(c, i, &stored, &has_block, &err) < 0) {
            diskimg_report("Can't get refcount for cluster %" PRIu64 ": %s", i, err->message);
            g_error_free(err);
            c->res->check_errors++;
            continue;
        }
        if (stored || want)
            *highest = i + 1;
        if (stored == want)
            continue;
        bool leak = stored > want;
        /* A referenced cluster whose refcount reads 0 is not raised in
         * place: qemu rebuilds the whole structure then, and so do we (the
         * same layout after repair, and no trust in a block that lost it). */
        bool needs_rebuild = !leak && (!has_block || stored == 0);
        if (needs_rebuild)
            c->need_new_block = true;
        bool repair = leak ? (fix & DISKIMG_CHECK_FIX_LEAKS)
                           : (fix & DISKIMG_CHECK_FIX_ERRORS) && !needs_rebuild;
        diskimg_report("%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64,
                       repair ? "Repairing" : leak ? "Leaked" : "ERROR", i, stored, want);
        if (repair) {
            repair_one(c, i, stored, want);
        } else if (leak) {
            c->res->leaks++;
        } else {
            c->res->corruptions++;
            c->rc_errors++;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ rebuild */

/* The first cluster at or after `start` from which n clusters hold
 * nothing the guard knows.  After everything check counted nothing is
 * stored, but damaged pointers may still name structures there (a
 * snapshot table or L1 table beyond the end of the file): new metadata
 * must not appear where they point.  Steps grow, so a structure named far
 * away costs a few probes, not one per cluster.  UINT64_MAX: no room. */
static uint64_t free_area(struct checker *c, uint64_t start, uint64_t n)
{
    struct qcow2 *s = c->s;
    uint64_t limit = (1ull << 56) >> s->cluster_bits, step = MAX(n, 1);
    for (int tries = 0; tries < 64; tries++) {
        if (start >= limit || n > limit - start)
            return UINT64_MAX;
        if (!qcow2_guard_find(s, 0, start << s->cluster_bits, n << s->cluster_bits))
            return start;
        start += step;
        step *= 2;
    }
    return UINT64_MAX;
}

/* Writes a new refcount structure from the counted references (qemu's
 * rebuild_refcount_structure).  The old table and blocks stop being
 * referenced: their counts are taken back first, so the new structure
 * frees them.  Nothing is written where anything lives: the new clusters
 * come after everything counted and after the end of the file. */
static int rebuild(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    diskimg_report("Rebuilding refcount structure");
    dec_refs(c, s->h.reftable_offset, (uint64_t)s->h.reftable_clusters << s->cluster_bits,
             false);
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        uint64_t e = s->reftable[i];
        if (c->rb_state[i] != RB_NONE && !(e & QCOW2_REFT_RESERVED) &&
            !qcow2_offset_into_cluster(s, e) &&
            (e >> s->cluster_bits) < MAX(c->file_clusters, c->ref_end))
            dec_refs(c, e, s->cluster_size, false);
    }
    uint64_t start = MAX(c->file_clusters, c->ref_end);
    start = free_area(c, start, qcow2_rebuild_clusters(s, c->ref, c->ref_end, start));
    if (start == UINT64_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: no room for a new refcount "
                                 "structure", s->filename);
    /* the header is switched to it last: refuse now rather than have the
     * guard stop that write (and mark the image corrupt) */
    const char *hit = qcow2_guard_find(s, QCOW2_OL_HEADER | QCOW2_OL_REFCOUNT_TABLE |
                                       QCOW2_OL_REFCOUNT_BLOCK, QH_REFTABLE, 12);
    if (hit)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: the image header overlaps "
                                 "with %s", s->filename, hit);
    return qcow2_rebuild_refcounts(s, c->ref, c->ref_end, start, errp);
}

/* ------------------------------------------------------------ OFLAG_COPIED */

/* The refcount check_copied compares COPIED with: the stored one (after
 * any repair); 1 for data in an external data file, which has none.
 * False when unreadable (qemu says nothing then). */
static bool copied_refcount(struct checker *c, uint64_t host, bool data, uint64_t *rc)
{
    struct qcow2 *s = c->s;
    bool has_block;
    GError *err = NULL;
    if (data && s->ext_data) {
        *rc = 1;
        return true;
    }
    if (stored_refcount(c, host >> s->cluster_bits, rc, &has_block, &err) < 0) {
        g_error_free(err);
        return false;
    }
    return true;
}

/* The COPIED flag must be set exactly on entries with refcount 1. */
static void check_copied_entry(struct checker *c, uint8_t *l2, uint64_t idx, bool fix,
                               bool *dirty)
{
    struct qcow2 *s = c->s;
    uint64_t e = qcow2_l2_entry(s, l2, idx), rc;
    uint64_t host = e & QCOW2_OFFSET_MASK;
    if ((e & QCOW2_OFLAG_COMPRESSED) || !(host || (s->ext_data && (e & QCOW2_OFLAG_COPIED))))
        return;
    if (!copied_refcount(c, host, true, &rc))
        return;
    if ((rc == 1) == !!(e & QCOW2_OFLAG_COPIED))
        return;
    diskimg_report("%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64,
                   fix ? "Repairing" : "ERROR", e, rc);
    if (!fix) {
        c->res->corruptions++;
        return;
    }
    qcow2_l2_set(s, l2, idx, e ^ QCOW2_OFLAG_COPIED, qcow2_l2_bitmap(s, l2, idx));
    *dirty = true;
    c->res->corruptions_fixed++;
}

/* May the COPIED fix write the L2 table at l2off (see l2_table_writable)? */
static bool l2_writable(struct checker *c, uint64_t l2off)
{
    return l2_table_writable(c, l2off, QCOW2_OL_ACTIVE_L2);
}

static int check_copied_l1(struct checker *c, uint32_t i, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t l2off = s->l1[i] & QCOW2_OFFSET_MASK, rc;
    if (copied_refcount(c, l2off, false, &rc) && (rc == 1) != !!(s->l1[i] & QCOW2_OFLAG_COPIED)) {
        /* the L1 table is written only where it holds nothing else */
        uint64_t at = s->l1_offset + (uint64_t)i * 8;
        bool fix = (c->fix & DISKIMG_CHECK_FIX_ERRORS) && at + 8 <= c->real_len &&
                   !qcow2_guard_find(s, QCOW2_OL_ACTIVE_L1, at, 8);
        diskimg_report("%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu32 " l1_entry=%" PRIx64
                     " refcount=%" PRIu64, fix ? "Repairing" : "ERROR", i, s->l1[i], rc);
        if (!fix) {
            c->res->corruptions++;
        } else {
            s->l1[i] ^= QCOW2_OFLAG_COPIED;
            if (qcow2_guard_check_write(s, s->l1_offset + (uint64_t)i * 8, 8,
                                        QCOW2_OL_ACTIVE_L1, errp) < 0 ||
                qcow2_l1_write_entry(s, i, errp) < 0)
                return -1;
            c->res->corruptions_fixed++;
        }
    }
    uint8_t *l2;
    bool dirty = false, fix = l2_writable(c, l2off);
    if (get_l2(s, l2off, &l2, errp) < 0)
        return -1;
    for (uint64_t j = skip_zero_entries(s, l2, 0); j < s->l2_entries;
         j = skip_zero_entries(s, l2, j + 1))
        check_copied_entry(c, l2, j, fix, &dirty);
    if (dirty)
        diskimg_mcache_mark_dirty(s->l2c, l2);
    put_l2(s, l2off, l2);
    return 0;
}

static int check_copied(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    /* the refcounts may have been repaired: read them from the disk again */
    if (diskimg_mcache_flush(s->rbc, errp) < 0)
        return -1;
    c->blk_off = 0;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        if (!(s->l1[i] & QCOW2_OFFSET_MASK))
            continue;
        if (check_copied_l1(c, i, errp) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ L1 reserved bits */

/* Clears the reserved bits of one L1 entry.  Every reader ignores them
 * (qemu masks them off), so the image reads the same afterwards; qemu's
 * check only reports them.  Written only where the L1 table is all the
 * cluster holds: referenced once, as nothing but that table, and no other
 * structure the guard knows there. */
/* Writes `want` over the L1 entry of f where its table may be written (a
 * cluster referenced once, as that table only, inside the file) and still
 * holds what check saw.  Returns 1 when written, 0 when left, -1. */
static int write_l1_entry(struct checker *c, const struct entry_fix *f, uint64_t want,
                          GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t cl = f->pos >> s->cluster_bits;
    uint32_t allowed = f->active ? QCOW2_OL_ACTIVE_L1 : QCOW2_OL_INACTIVE_L1;
    if (cl >= c->nref || c->ref[cl] != 1 || c->other[cl] != 1 || f->pos + 8 > c->real_len ||
        qcow2_guard_find(s, allowed, f->pos, 8))
        return 0;
    if (f->active) {
        if (s->l1[f->idx] != f->entry)
            return 0;
        s->l1[f->idx] = want;
        if (qcow2_guard_check_write(s, f->pos, 8, allowed, errp) < 0 ||
            qcow2_l1_write_entry(s, f->idx, errp) < 0)
            return -1;
        return 1;
    }
    uint8_t v[8];
    /* two snapshots may name the same table: fixed once */
    if (diskimg_node_pread(s->file, v, 8, f->pos, errp) < 0)
        return -1;
    if (diskimg_be64(v) != f->entry)
        return 0;
    diskimg_put_be64(v, want);
    if (qcow2_guard_check_write(s, f->pos, 8, allowed, errp) < 0 ||
        diskimg_node_pwrite(s->file, v, 8, f->pos, 0, errp) < 0)
        return -1;
    return 1;
}

static int clear_l1_reserved(struct checker *c, const struct entry_fix *f, GError **errp)
{
    uint64_t want = f->entry & ~QCOW2_L1_RESERVED;
    int ret = write_l1_entry(c, f, want, errp);
    if (ret <= 0)
        return ret;
    diskimg_report("Repairing L1 entry with reserved bits set: %" PRIx64 " -> %" PRIx64,
                   f->entry, want);
    c->res->corruptions -= MIN(c->res->corruptions, 1);
    c->res->corruptions_fixed++;
    return 0;
}

/* The guest data range check_l2_entry counts for an L2 entry, if any
 * (inc_refs then counts it unless it lies beyond the end of the file). */
static bool counted_data_range(const struct checker *c, uint64_t e, uint64_t bm, uint64_t *off,
                               uint64_t *len)
{
    struct qcow2 *s = c->s;
    if (s->ext_data)
        return false;
    if (e & QCOW2_OFLAG_COMPRESSED) {
        if (s->ext_l2 && bm)
            return false;
        uint64_t o, l;
        qcow2_compressed_span(s, e & ~QCOW2_OFLAG_COPIED, &o, &l);
        *off = o & ~511ull;
        *len = l + (o & 511);
        return true;
    }
    *off = e & QCOW2_OFFSET_MASK;
    *len = s->cluster_size;
    return *off != 0;
}

/* Takes back the references check_l1 counted for the L2 table at l2off:
 * the table's cluster(s) and the guest data its entries name. */
static int uncount_l2(struct checker *c, uint64_t l2off, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t cl = l2off >> s->cluster_bits;
    /* a misaligned table was counted as metadata (check_l1), if inside
     * the file, and made no doubtful references (count_doubtful_l2) */
    bool aligned = !qcow2_offset_into_cluster(s, l2off);
    bool doubtful = aligned && cl < c->nref && c->meta[cl] && c->doubt;
    if (!aligned) {
        if (!beyond_eof(c, l2off, s->cluster_size))
            dec_refs(c, l2off, s->cluster_size, false);
    } else if (cl < c->nref && c->ref[cl] && c->ref[cl] != UINT32_MAX) {
        c->ref[cl]--;
    }
    uint8_t *l2;
    if (get_l2(s, l2off, &l2, errp) < 0)
        return -1;
    for (uint64_t i = skip_zero_entries(s, l2, 0); i < s->l2_entries;
         i = skip_zero_entries(s, l2, i + 1)) {
        uint64_t off, len, e = qcow2_l2_entry(s, l2, i), bm = qcow2_l2_bitmap(s, l2, i);
        if (!counted_data_range(c, e, bm, &off, &len) || beyond_eof(c, off, len))
            continue;
        if (off > UINT64_MAX - len)
            continue;
        /* as inc_refs counted it: references to the table's own cluster
         * and unseen data were no "other" ones, nor doubtful
         * (count_doubtful_l2) */
        bool unseen = unseen_data(s, e, bm);
        for (uint64_t k = off >> s->cluster_bits;
             k <= (off + len - 1) >> s->cluster_bits && k < c->nref; k++) {
            if (c->ref[k] && c->ref[k] != UINT32_MAX)
                c->ref[k]--;
            if (k == cl || unseen)
                continue;
            dec_sat(&c->other[k]);
            if (doubtful)
                dec_sat(&c->doubt[k]);
        }
    }
    put_l2(s, l2off, l2);
    return 0;
}

/* Clears the L1 entry f (write_l1_entry's conditions), takes back what was
 * counted for its table when `uncount`, and books `fixed` corruptions as
 * repaired; `why` ends the report.  Returns 1 when cleared, 0 when left. */
static int clear_l1_entry(struct checker *c, const struct entry_fix *f, bool uncount,
                          uint64_t fixed, const char *why, GError **errp)
{
    uint64_t l2off = f->entry & QCOW2_OFFSET_MASK;
    int ret = write_l1_entry(c, f, 0, errp);
    if (ret < 0 || (ret > 0 && uncount && uncount_l2(c, l2off, errp) < 0))
        return -1;
    if (ret == 0)
        return 0;
    diskimg_report("Repairing L1 entry %" PRIx64 ": its L2 table at %#" PRIx64 " %s; entry "
                   "cleared", f->entry, l2off, why);
    c->res->corruptions -= MIN(c->res->corruptions, fixed);
    c->res->corruptions_fixed += fixed;
    return 1;
}

/* An L1 entry (of the active table or a snapshot's) that names a cluster
 * holding something else — guest data, another table — whose entries are
 * mostly corrupt names no L2 table: damage moved it there.  Rewriting the
 * "table" as qemu does (its entries made zero clusters) would overwrite
 * that guest data or table; clearing the L1 entry loses nothing that was
 * still readable (the range then reads as unallocated), and the refcounts
 * are repaired from counts without the bogus references. */
static int clear_bogus_l1_entries(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    for (guint i = 0; i < c->l1_suspects->len; i++) {
        const struct l1_suspect *sus = &g_array_index(c->l1_suspects, struct l1_suspect, i);
        uint64_t l2off = sus->f.entry & QCOW2_OFFSET_MASK, cl = l2off >> s->cluster_bits;
        uint32_t tables = QCOW2_OL_ACTIVE_L2 | QCOW2_OL_INACTIVE_L2;
        if (l2off >= c->real_len || cl >= c->nref || l2_table_writable(c, l2off, tables))
            continue;   /* a table the zero-cluster repairs may write */
        if (!credible_other(c, cl) && !qcow2_guard_find(s, tables, l2off, s->cluster_size))
            continue;   /* nothing else is there */
        if (clear_l1_entry(c, &sus->f, true, sus->bad, "holds other data, not an L2 table",
                           errp) < 0)
            return -1;
    }
    return 0;
}

/* An L1 entry naming an L2 table beyond the end of the file: the table
 * reads as zeroes (as qemu reads it), i.e. every entry unallocated, which
 * is what an empty L1 entry says; clearing it reads the same and leaves no
 * reference past the end (qemu's repair grows the file over it instead). */
static int clear_l1_beyond_eof(struct checker *c, GError **errp)
{
    for (guint i = 0; i < c->l1_lost->len; i++) {
        const struct entry_fix *f = &g_array_index(c->l1_lost, struct entry_fix, i);
        if (clear_l1_entry(c, f, false, 1, "lies beyond the end of the file and reads as "
                           "unallocated", errp) < 0)
            return -1;
    }
    return 0;
}

/* An L1 entry naming a misaligned L2 table: qemu refuses to read such a
 * table (its reads of the range fail, and mark the image corrupt), and its
 * repair leaves the entry.  Clearing the entry makes the range read as
 * unallocated, which loses nothing that could be read, and takes back the
 * references counted for it, so that the refcount repair frees what only
 * it named. */
static int clear_unaligned_l1_entries(struct checker *c, GError **errp)
{
    for (guint i = 0; i < c->l1_unaligned->len; i++) {
        const struct l1_suspect *sus = &g_array_index(c->l1_unaligned, struct l1_suspect, i);
        if (clear_l1_entry(c, &sus->f, true, sus->bad, "is not cluster aligned and cannot be "
                           "read", errp) < 0)
            return -1;
    }
    return 0;
}

static int fix_l1_reserved(struct checker *c, GError **errp)
{
    for (guint i = 0; i < c->l1_fixes->len; i++) {
        if (clear_l1_reserved(c, &g_array_index(c->l1_fixes, struct entry_fix, i), errp) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ driver */

/* The repairs the counts call for, in qemu's order: a rebuild when the
 * refcount structure is damaged (or a repair would need a new block), in
 * place otherwise. */
static int repair_refcounts(struct checker *c, const struct diskimg_check_result *pre,
                            uint64_t *highest, GError **errp)
{
    struct diskimg_check_result *res = c->res;
    bool rebuild_now = c->rebuild || (c->need_new_block && (c->fix & DISKIMG_CHECK_FIX_ERRORS));
    if (!c->fix)
        return 0;
    if (rebuild_now && !(c->fix & DISKIMG_CHECK_FIX_ERRORS)) {
        diskimg_report("ERROR need to rebuild refcount structures");
        res->check_errors++;
        return 0;
    }
    if (rebuild_now) {
        GError *err = NULL;
        if (rebuild(c, &err) < 0) {
            diskimg_report("ERROR: could not rebuild the refcount structure: %s", err->message);
            g_error_free(err);
            res->check_errors++;
            return 0;
        }
        int64_t len = diskimg_node_size(c->s->file, errp);
        if (len < 0)
            return -1;
        c->file_len = ((uint64_t)len + 511) & ~511ull;  /* the new structure is there */
        uint64_t fixed = c->rb_errors + c->rc_errors;
        res->corruptions -= MIN(res->corruptions, fixed);
        res->corruptions_fixed += fixed;
        res->leaks_fixed += res->leaks;
        res->leaks = 0;
        return 0;
    }
    if (!res->leaks && !res->corruptions)
        return 0;
    *res = *pre;
    return compare_refcounts(c, c->fix, highest, errp);
}

/* ------------------------------------------------------------ snapshot table */

/* A snapshot whose L1 table no tool can read (misaligned, or larger than
 * any L1 table: qemu's check skips it as corrupted and its snapshot
 * commands refuse it) holds nothing readable.  The repair drops its
 * entry, before anything is counted; qemu-img 7.2's repair of such an
 * image loses every snapshot.  Returns how many were dropped. */
static uint32_t drop_unreadable_snapshots(struct checker *c)
{
    struct qcow2 *s = c->s;
    uint32_t dropped = 0;
    for (uint32_t i = 0; (c->fix & DISKIMG_CHECK_FIX_ERRORS) && i < s->nb_snapshots;) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        if (snapshot_l1_readable(s, sn)) {
            i++;
            continue;
        }
        diskimg_report("Repairing snapshot %s (%s) l1_offset=%#" PRIx64 " l1_size=%#" PRIx32
                       ": its L1 table cannot be read; snapshot discarded", sn->id, sn->name,
                       sn->l1_offset, sn->l1_size);
        qcow2_snapshot_forget(s, i);
        dropped++;
    }
    return dropped;
}

/* qemu's qcow2_check_read_snapshot_table: the damage reading the table
 * worked around (header.c, only when repairing) and, in a v3 image,
 * entries without the 16 bytes of extra data v3 requires.  All of it is
 * repaired by writing the table again. */
static int check_snapshot_table(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    bool fix = c->fix & DISKIMG_CHECK_FIX_ERRORS;
    if (s->snap_repairs && !fix)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: the snapshot table can "
                                 "only be repaired with -r all", s->filename);
    /* A table in the header's cluster is read from the header's bytes: no
     * snapshot was ever stored there.  The repair drops it, before its
     * "snapshots" are counted (qemu-img 7.2 ends the same way: its
     * read-write open writes the header with no snapshots). */
    if (s->nb_snapshots && s->h.snapshots_offset < s->cluster_size && fix) {
        diskimg_report("Repairing snapshot table: it overlaps the image header; discarding %"
                       PRIu32 " snapshots", s->nb_snapshots);
        if (qcow2_snapshot_table_drop(s, errp) < 0)
            return -1;
        c->res->corruptions_fixed++;
        return 0;
    }
    c->snap_errors = s->snap_repairs + drop_unreadable_snapshots(c);
    for (uint32_t i = 0; s->h.version >= 3 && i < s->nb_snapshots; i++) {
        if (s->snapshots[i].extra_size >= 16)
            continue;
        diskimg_report("%s snapshot table entry %" PRIu32 " is incomplete",
                       fix ? "Repairing" : "ERROR", i);
        c->snap_errors++;
    }
    c->res->corruptions += c->snap_errors;
    return 0;
}

/* qemu's qcow2_check_fix_snapshot_table, after the refcounts are right:
 * the new table goes after everything check counted. */
static int repair_snapshot_table(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t end;
    if (!c->snap_errors || !(c->fix & DISKIMG_CHECK_FIX_ERRORS))
        return 0;
    if (qcow2_file_clusters(s, &end, errp) < 0)
        return -1;
    GError *err = NULL;
    uint64_t size = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snapshots[i];
        size = ((size + 7) & ~7ull) + 40 + QCOW2_SNAPSHOT_EXTRA_LEN + sn->extra_unknown +
               strlen(sn->id) + strlen(sn->name);
    }
    uint64_t first = free_area(c, MAX(end, c->ref_end), qcow2_size_to_clusters(s, size));
    if (first == UINT64_MAX) {
        diskimg_report("ERROR failed to update snapshot table: no room");
        c->res->check_errors++;
        return 0;
    }
    if (qcow2_snapshot_table_repair(s, first, c->snap_table_counted, &err) < 0) {
        diskimg_report("ERROR failed to update snapshot table: %s", err->message);
        g_error_free(err);
        c->res->check_errors++;
        return 0;
    }
    c->res->corruptions -= MIN(c->res->corruptions, c->snap_errors);
    c->res->corruptions_fixed += c->snap_errors;
    return 0;
}

/* A bitmap table wholly beyond the end of the file reads as zeroes (so
 * qemu reads it): the repair gives the bitmap a table of zeroes inside
 * the file, after everything check counted, which reads the same. */
static int repair_lost_bitmap_tables(struct checker *c, GError **errp)
{
    struct qcow2 *s = c->s;
    uint64_t end;
    for (guint k = 0; k < c->bitmap_fixes->len; k++) {
        if (clear_lost_bitmap_cluster(c, &g_array_index(c->bitmap_fixes, struct entry_fix, k),
                                      errp) < 0)
            return -1;
    }
    if (!c->lost_bitmap_tables->len)
        return 0;
    if (qcow2_file_clusters(s, &end, errp) < 0)
        return -1;
    for (guint k = 0; k < c->lost_bitmap_tables->len; k++) {
        uint32_t i = g_array_index(c->lost_bitmap_tables, uint32_t, k);
        GError *err = NULL;
        uint64_t old = s->bitmaps[i].table_offset;
        uint64_t first = free_area(c, MAX(end, c->ref_end), qcow2_size_to_clusters(s,
                                   (uint64_t)s->bitmaps[i].table_size * 8));
        if (first == UINT64_MAX ||
            qcow2_bitmap_replace_lost_table(s, i, first, &err) < 0) {
            if (!err)
                g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT, "no room");
            diskimg_report("ERROR could not repair bitmap '%s': %s", s->bitmaps[i].name,
                           err->message);
            g_error_free(err);
            c->res->check_errors++;
            continue;
        }
        diskimg_report("Repairing bitmap '%s': its table at %#" PRIx64 " lies beyond the end "
                       "of the file, replaced by an empty one at %#" PRIx64, s->bitmaps[i].name,
                       old, s->bitmaps[i].table_offset);
        c->res->corruptions -= MIN(c->res->corruptions, 1);
        c->res->corruptions_fixed++;
    }
    return 0;
}

/* After a repair that left nothing wrong, the image is consistent again:
 * qemu clears the dirty bit (qcow2_mark_clean: the refcounts were just
 * counted from scratch) and the corrupt bit (qcow2_mark_consistent). */
static int mark_consistent(struct qcow2 *s, GError **errp)
{
    uint64_t clear = QCOW2_INCOMPAT_DIRTY | (s->corrupt ? 0 : QCOW2_INCOMPAT_CORRUPT);
    if (!(s->h.incompat & clear))
        return 0;
    if (qcow2_flush_metadata(s, errp) < 0 || diskimg_node_flush(s->file, errp) < 0)
        return -1;
    return qcow2_header_set_incompat(s, s->h.incompat & ~clear, errp);
}

int qcow2_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct qcow2 *s = h;
    struct checker c = { .s = s, .res = res, .fix = s->writable ? fix : 0 };
    uint64_t highest = 0;
    int64_t file_len = diskimg_node_size(s->file, errp);
    if (file_len < 0)
        return -1;
    c.real_len = (uint64_t)file_len;
    c.file_len = ((uint64_t)file_len + 511) & ~511ull;
    c.start_len = c.file_len;
    c.file_clusters = qcow2_size_to_clusters(s, c.file_len);
    c.rb_state = g_try_malloc0(MAX(s->reftable_size, 1));
    c.l1_fixes = g_array_new(false, false, sizeof(struct entry_fix));
    c.l1_suspects = g_array_new(false, false, sizeof(struct l1_suspect));
    c.l1_lost = g_array_new(false, false, sizeof(struct entry_fix));
    c.l1_unaligned = g_array_new(false, false, sizeof(struct l1_suspect));
    c.zero_fixes = g_array_new(false, false, sizeof(struct zero_fix));
    c.lost_bitmap_tables = g_array_new(false, false, sizeof(uint32_t));
    c.bitmap_fixes = g_array_new(false, false, sizeof(struct entry_fix));
    c.blk = g_try_malloc(s->cluster_size);
    int ret = c.rb_state && c.blk ? 0 : qcow2_enomem(errp);
    /* stored refcounts are read from the disk, without the cache */
    if (ret == 0)
        ret = diskimg_mcache_flush(s->rbc, errp);
    if (ret == 0)
        ret = check_snapshot_table(&c, errp);
    if (ret == 0)
        ret = count_references(&c, errp);
    if (ret == 0)
        ret = clear_l1_beyond_eof(&c, errp);
    if (ret == 0)
        ret = clear_bogus_l1_entries(&c, errp);
    if (ret == 0)
        ret = clear_unaligned_l1_entries(&c, errp);
    if (ret == 0)
        ret = apply_zero_fixes(&c, true, errp);
    struct diskimg_check_result pre = *res;
    if (ret == 0)
        ret = compare_refcounts(&c, 0, &highest, errp);
    if (ret == 0)
        ret = repair_refcounts(&c, &pre, &highest, errp);
    if (ret == 0)
        ret = apply_zero_fixes(&c, false, errp);
    if (ret == 0)
        ret = fix_l1_reserved(&c, errp);
    /* before COPIED: the old table's extent leaves the guard, and COPIED
     * is compared with the refcounts as the repair leaves them */
    if (ret == 0)
        ret = repair_snapshot_table(&c, errp);
    if (ret == 0)
        ret = check_copied(&c, errp);
    if (ret == 0)
        ret = repair_lost_bitmap_tables(&c, errp);
    if (ret == 0 && c.fix)
        ret = qcow2_flush_metadata(s, errp);
    if (ret == 0 && c.fix && !res->corruptions && !res->check_errors)
        ret = mark_consistent(s, errp);
    g_free(c.ref);
    g_free(c.other);
    g_free(c.rb_state);
    g_free(c.blk);
    g_array_free(c.l1_fixes, true);
    g_array_free(c.l1_suspects, true);
    g_array_free(c.l1_lost, true);
    g_array_free(c.l1_unaligned, true);
    g_array_free(c.zero_fixes, true);
    g_array_free(c.lost_bitmap_tables, true);
    g_array_free(c.bitmap_fixes, true);
    g_free(c.meta);
    g_free(c.doubt);
    if (ret < 0)
        return -1;
    res->image_end_offset = highest << s->cluster_bits;
    res->total_clusters = qcow2_size_to_clusters(s, s->h.size);
    res->has_cluster_stats = true;
    return 0;
}
