/* SPDX-License-Identifier: MIT */
/*
 * cluster.c — the guest -> host mapping: the active L1 table (in memory),
 * L2 tables (through the bounded L2 cache), entry decoding for standard
 * and extended L2 entries, and allocation/copy of L2 tables.
 */
#include <string.h>

#include "qcow2.h"

/* ------------------------------------------------------------ L1 */

/* Opened for check, an L1 table reaching past the end of the file reads
 * as zeroes there, as in qemu (whose check then reports it): the table is
 * the header's size, bounded by QCOW2_MAX_L1_BYTES. */
static int l1_load_padded(struct qcow2 *s, GError **errp)
{
    int64_t fsize = diskimg_node_size(s->file, errp);
    uint64_t bytes = (uint64_t)s->l1_size * 8;
    if (fsize < 0)
        return -1;
    if (bytes > QCOW2_MAX_L1_BYTES || s->l1_offset > UINT64_MAX - bytes)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Active L1 table too large");
    s->l1 = g_try_malloc(MAX(bytes, 8));
    if (!s->l1)
        return qcow2_enomem(errp);
    if (qcow2_pread_padded(s, s->l1, bytes, s->l1_offset, (uint64_t)fsize, errp) < 0)
        return -1;
    for (uint32_t i = 0; i < s->l1_size; i++)
        s->l1[i] = diskimg_be64(&s->l1[i]);
    return 0;
}

int qcow2_l1_load(struct qcow2 *s, GError **errp)
{
    s->l1_size = s->h.l1_size;
    s->l1_offset = s->h.l1_offset;
    int64_t fsize = diskimg_node_size(s->file, errp);
    if (fsize < 0)
        return -1;
    if (s->check_open && s->l1_offset + (uint64_t)s->l1_size * 8 > (uint64_t)fsize)
        return l1_load_padded(s, errp);
    return diskimg_load_u64_table(s->file, s->l1_offset, s->l1_size, 1, DISKIMG_BIG_ENDIAN,
                                  QCOW2_MAX_L1_BYTES, "L1 table", &s->l1, errp);
}

int qcow2_l1_write_entry(struct qcow2 *s, uint32_t idx, GError **errp)
{
    uint8_t v[8];
    diskimg_put_be64(v, s->l1[idx]);
    return diskimg_node_pwrite(s->file, v, 8, s->l1_offset + (uint64_t)idx * 8, 0, errp);
}

static int write_l1_table(struct qcow2 *s, const uint64_t *l1, uint64_t n, uint64_t off,
                          GError **errp)
{
    g_autofree uint8_t *raw = g_try_malloc(MAX(n * 8, 1));
    if (!raw)
        return qcow2_enomem(errp);
    for (uint64_t i = 0; i < n; i++)
        diskimg_put_be64(raw + i * 8, l1[i]);
    return diskimg_node_pwrite(s->file, raw, n * 8, off, 0, errp);
}

int qcow2_grow_l1(struct qcow2 *s, uint64_t min_size, GError **errp)
{
    if (min_size <= s->l1_size)
        return 0;
    if (min_size > QCOW2_MAX_L1_BYTES / 8) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "The image size is too large for file format 'qcow2' (try using a larger "
                    "cluster size)");
        return -1;
    }
    uint64_t *l1 = g_try_new0(uint64_t, min_size);
    if (!l1)
        return qcow2_enomem(errp);
    memcpy(l1, s->l1, (size_t)s->l1_size * 8);
    uint64_t off, clusters = qcow2_size_to_clusters(s, min_size * 8);
    uint8_t hdr[12];
    if (diskimg_mcache_flush(s->rbc, errp) < 0 || qcow2_alloc_clusters(s, clusters, &off, errp) < 0)
        goto fail;
    if (diskimg_mcache_flush(s->rbc, errp) < 0 || write_l1_table(s, l1, min_size, off, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0)
        goto fail;
    diskimg_put_be32(hdr, (uint32_t)min_size);
    diskimg_put_be64(hdr + 4, off);
    if (diskimg_node_pwrite(s->file, hdr, 12, QH_L1, 0, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0)
        goto fail;
    uint64_t old_off = s->l1_offset, old_size = s->l1_size;
    g_free(s->l1);
    s->l1 = l1;
    s->l1_size = (uint32_t)min_size;
    s->l1_offset = off;
    s->h.l1_size = s->l1_size;
    s->h.l1_offset = off;
    if (old_size)
        return qcow2_update_refcount(s, old_off, qcow2_size_to_clusters(s, old_size * 8)
                                                 << s->cluster_bits, -1, errp);
    return 0;
fail:
    g_free(l1);
    return -1;
}

/* ------------------------------------------------------------ entries */

uint64_t qcow2_l2_entry(const struct qcow2 *s, const uint8_t *l2, uint64_t idx)
{
    return diskimg_be64(l2 + idx * s->l2e_size);
}

uint64_t qcow2_l2_bitmap(const struct qcow2 *s, const uint8_t *l2, uint64_t idx)
{
    return s->ext_l2 ? diskimg_be64(l2 + idx * s->l2e_size + 8) : 0;
}

void qcow2_l2_set(const struct qcow2 *s, uint8_t *l2, uint64_t idx, uint64_t e, uint64_t bm)
{
    diskimg_put_be64(l2 + idx * s->l2e_size, e);
    if (s->ext_l2)
        diskimg_put_be64(l2 + idx * s->l2e_size + 8, bm);
}

void qcow2_compressed_span(const struct qcow2 *s, uint64_t l2e, uint64_t *off, uint64_t *len)
{
    uint64_t sectors = ((l2e >> s->csize_shift) & s->csize_mask) + 1;
    *off = l2e & s->coffset_mask;
    *len = sectors * 512 - (*off & 511);
}

static bool has_host(const struct qcow2 *s, uint64_t l2e)
{
    return (l2e & QCOW2_OFFSET_MASK) || (s->ext_data && (l2e & QCOW2_OFLAG_COPIED));
}

/* Type of subcluster `sub` (0 without extended L2); QC_* or -1 invalid. */
enum qcow2_ctype qcow2_entry_type(const struct qcow2 *s, uint64_t l2e, uint64_t bm,
                                  unsigned sub)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED)
        return QC_COMPRESSED;
    if (!s->ext_l2) {
        if (l2e & QCOW2_OFLAG_ZERO)
            return has_host(s, l2e) ? QC_ZERO_ALLOC : QC_ZERO_PLAIN;
        return has_host(s, l2e) ? QC_NORMAL : QC_UNALLOC;
    }
    bool alloc = (bm >> sub) & 1, zero = (bm >> (32 + sub)) & 1;
    if (has_host(s, l2e)) {
        if (alloc)
            return QC_NORMAL;
        return zero ? QC_ZERO_ALLOC : QC_UNALLOC_ALLOC;
    }
    if (alloc)
        return (enum qcow2_ctype)-1;
    return zero ? QC_ZERO_PLAIN : QC_UNALLOC;
}

/* Validates one L2 entry before it is used. */
static int check_entry(struct qcow2 *s, uint64_t l2e, uint64_t bm, uint64_t l2_off,
                       uint64_t idx, GError **errp)
{
    if (l2e & QCOW2_OFLAG_COMPRESSED) {
        if (s->ext_data)
            return qcow2_corrupt(s, errp, "Compressed cluster in an image with an external "
                                 "data file (L2 offset: %#" PRIx64 ", L2 index: %#" PRIx64 ")",
                                 l2_off, idx);
        return 0;
    }
    if (qcow2_offset_into_cluster(s, l2e & QCOW2_OFFSET_MASK))
        return qcow2_corrupt(s, errp, "Cluster allocation offset %#" PRIx64 " unaligned (L2 "
                             "offset: %#" PRIx64 ", L2 index: %#" PRIx64 ")",
                             l2e & QCOW2_OFFSET_MASK, l2_off, idx);
    if ((l2e & QCOW2_OFLAG_ZERO) && s->h.version < 3)
        return qcow2_corrupt(s, errp, "Zero cluster entry found in pre-v3 image (L2 offset: %#"
                             PRIx64 ", L2 index: %#" PRIx64 ")", l2_off, idx);
    if (s->ext_l2 && (bm & (bm >> 32) & 0xffffffffull))
        return qcow2_corrupt(s, errp, "Invalid cluster entry found (L2 offset: %#" PRIx64
                             ", L2 index: %#" PRIx64 ")", l2_off, idx);
    if (s->ext_l2 && !has_host(s, l2e) && (bm & 0xffffffffull))
        return qcow2_corrupt(s, errp, "Invalid cluster entry found (L2 offset: %#" PRIx64
                             ", L2 index: %#" PRIx64 ")", l2_off, idx);
    if (s->ext_data && has_host(s, l2e))
        return 0;
    return 0;
}

/* ------------------------------------------------------------ L2 lookup */

static uint64_t l1_index(const struct qcow2 *s, uint64_t guest)
{
    return guest >> (s->cluster_bits + s->l2_bits);
}

static uint64_t l2_index(const struct qcow2 *s, uint64_t guest)
{
    return (guest >> s->cluster_bits) & (s->l2_entries - 1);
}

static int l2_offset_of(struct qcow2 *s, uint64_t l1i, uint64_t *off, GError **errp)
{
    *off = 0;
    if (l1i >= s->l1_size)
        return 0;
    uint64_t e = s->l1[l1i];
    *off = e & QCOW2_OFFSET_MASK;
    if (*off && qcow2_offset_into_cluster(s, *off))
        return qcow2_corrupt(s, errp, "L2 table offset %#" PRIx64 " unaligned (L1 index: %#"
                             PRIx64 ")", *off, l1i);
    if (*off && *off < s->cluster_size)
        return qcow2_corrupt(s, errp, "L2 table offset %#" PRIx64 " overlaps the header (L1 "
                             "index: %#" PRIx64 ")", *off, l1i);
    return 0;
}

int qcow2_get_l2e(struct qcow2 *s, uint64_t guest, uint64_t *l2e, uint64_t *bitmap,
                  GError **errp)
{
    uint64_t l2off;
    uint8_t *l2;
    *l2e = *bitmap = 0;
    if (l2_offset_of(s, l1_index(s, guest), &l2off, errp) < 0)
        return -1;
    if (!l2off)
        return 0;
    if (diskimg_mcache_get(s->l2c, l2off, 0, &l2, errp) < 0)
        return -1;
    uint64_t idx = l2_index(s, guest);
    *l2e = qcow2_l2_entry(s, l2, idx);
    *bitmap = qcow2_l2_bitmap(s, l2, idx);
    diskimg_mcache_put(s->l2c, l2);
    return check_entry(s, *l2e, *bitmap, l2off, idx, errp);
}

/* Host offset of byte `guest` for a run of type NORMAL/ZERO_ALLOC. */
static uint64_t host_of(const struct qcow2 *s, uint64_t l2e, uint64_t guest)
{
    if (s->ext_data && s->data_raw)
        return guest;
    return (l2e & QCOW2_OFFSET_MASK) + qcow2_offset_into_cluster(s, guest);
}

/* Extends run r over the rest of the L2 table while the type stays and
 * host offsets stay contiguous. */
static int extend_run(struct qcow2 *s, const uint8_t *l2, uint64_t l2off, uint64_t off,
                      uint64_t end, struct qcow2_run *r, GError **errp)
{
    uint64_t unit = s->ext_l2 ? s->subcluster_size : s->cluster_size;
    uint64_t pos = (off & ~(unit - 1)) + unit;
    r->len = MIN(pos, end) - off;
    if (r->type == QC_COMPRESSED)
        return 0;
    while (pos < end) {
        uint64_t idx = l2_index(s, pos);
        uint64_t e = qcow2_l2_entry(s, l2, idx), bm = qcow2_l2_bitmap(s, l2, idx);
        unsigned sub = s->ext_l2 ? (unsigned)(qcow2_offset_into_cluster(s, pos) /
                                              s->subcluster_size) : 0;
        if (check_entry(s, e, bm, l2off, idx, errp) < 0)
            return -1;
        if (qcow2_entry_type(s, e, bm, sub) != r->type)
            break;
        if ((r->type == QC_NORMAL || r->type == QC_ZERO_ALLOC) &&
            host_of(s, e, pos) != r->host + (pos - off))
            break;
        pos += unit;
        r->len = MIN(pos, end) - off;
    }
    return 0;
}

int qcow2_map_run(struct qcow2 *s, uint64_t off, uint64_t len, struct qcow2_run *r,
                  GError **errp)
{
    uint64_t table_span = s->l2_entries << s->cluster_bits;
    uint64_t end = MIN(off + len, (off & ~(table_span - 1)) + table_span);
    uint64_t l2off;
    uint8_t *l2;
    memset(r, 0, sizeof(*r));
    if (l2_offset_of(s, l1_index(s, off), &l2off, errp) < 0)
        return -1;
    if (!l2off) {
        r->type = QC_UNALLOC;
        r->len = end - off;
        return 0;
    }
    if (diskimg_mcache_get(s->l2c, l2off, 0, &l2, errp) < 0)
        return -1;
    uint64_t idx = l2_index(s, off);
    uint64_t e = qcow2_l2_entry(s, l2, idx), bm = qcow2_l2_bitmap(s, l2, idx);
    unsigned sub = s->ext_l2 ? (unsigned)(qcow2_offset_into_cluster(s, off) /
                                          s->subcluster_size) : 0;
    int ret = check_entry(s, e, bm, l2off, idx, errp);
    if (ret == 0) {
        r->type = qcow2_entry_type(s, e, bm, sub);
        r->l2e = e;
        r->host = host_of(s, e, off);
        ret = extend_run(s, l2, l2off, off, end, r, errp);
    }
    diskimg_mcache_put(s->l2c, l2);
    return ret;
}

/* ------------------------------------------------------------ L2 allocation */

/* A new L2 table for L1 index l1i: a copy of the old one (COW of a table
 * shared with a snapshot) or an empty one. */
static int new_l2_table(struct qcow2 *s, uint64_t l1i, uint64_t old, GError **errp)
{
    uint64_t off;
    uint8_t *l2;
    if (qcow2_alloc_clusters(s, 1, &off, errp) < 0)
        return -1;
    if (diskimg_mcache_get(s->l2c, off, DISKIMG_MCACHE_FRESH, &l2, errp) < 0)
        return -1;
    if (old) {
        uint8_t *src;
        if (diskimg_mcache_get(s->l2c, old, 0, &src, errp) < 0) {
            diskimg_mcache_put(s->l2c, l2);
            return -1;
        }
        memcpy(l2, src, s->cluster_size);
        diskimg_mcache_put(s->l2c, src);
    }
    diskimg_mcache_mark_dirty(s->l2c, l2);
    diskimg_mcache_put(s->l2c, l2);
    /* refcounts, then the table, then the L1 entry pointing at it */
    if (diskimg_mcache_flush(s->l2c, errp) < 0)
        return -1;
    s->l1[l1i] = off | QCOW2_OFLAG_COPIED;
    if (qcow2_l1_write_entry(s, (uint32_t)l1i, errp) < 0)
        return -1;
    return old ? qcow2_update_refcount(s, old, s->cluster_size, -1, errp) : 0;
}

int qcow2_l2_table(struct qcow2 *s, uint64_t guest, bool alloc, uint8_t **l2, uint64_t *idx,
                   GError **errp)
{
    uint64_t l1i = l1_index(s, guest), off;
    *l2 = NULL;
    *idx = l2_index(s, guest);
    if (l1i >= s->l1_size) {
        if (!alloc)
            return 0;
        if (qcow2_grow_l1(s, l1i + 1, errp) < 0)
            return -1;
    }
    if (l2_offset_of(s, l1i, &off, errp) < 0)
        return -1;
    if (alloc && (!off || !(s->l1[l1i] & QCOW2_OFLAG_COPIED))) {
        if (new_l2_table(s, l1i, off, errp) < 0)
            return -1;
        off = s->l1[l1i] & QCOW2_OFFSET_MASK;
    }
    if (!off)
        return 0;
    return diskimg_mcache_get(s->l2c, off, 0, l2, errp);
}
