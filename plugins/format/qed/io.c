/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data of a QED image: cluster lookup (qemu's
 * qed_find_cluster), reads falling through to the backing file, writes
 * with allocation at the end of the file and copy-on-write of the
 * untouched parts of new clusters, zero clusters and block status.
 *
 * Order of an allocating write: QED_F_NEED_CHECK is set (once), the data
 * clusters are written, then the L2 entries (through the cache) and, for
 * a new L2 table, the L1 entry.  A crash in between leaves leaked
 * clusters or entries that the open-time check repairs.
 */
#include <string.h>

#include "qed.h"

enum qed_kind { QED_FOUND, QED_ZERO, QED_UNALLOC };

/* A run of clusters of one kind inside one L2 table, contiguous in the
 * file for FOUND. */
struct qed_run {
    enum qed_kind kind;
    uint64_t len;          /* guest bytes from the asked offset */
    uint64_t host;         /* FOUND: file offset of the asked offset */
};

static uint64_t in_cluster(const struct qed *s, uint64_t off)
{
    return off & (s->h.cluster_size - 1);
}

static int corrupt(const struct qed *s, GError **errp, const char *what, uint64_t guest,
                   uint64_t value)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: %s %#" PRIx64 " for guest offset %#" PRIx64 " is invalid",
                             s->filename, what, value, guest);
}

/* The L2 table covering guest offset `off`, 0 when none; validated. */
static int l2_table_of(const struct qed *s, uint64_t off, uint64_t *table, GError **errp)
{
    uint64_t l2 = s->l1[off >> s->l1_shift];

    if (l2 != 0 && (!qed_table_offset_valid(s, l2) ||
                    diskimg_guard_find(s->guard, QED_META_L2, l2,
                                       (uint64_t)s->h.table_size * s->h.cluster_size)))
        return corrupt(s, errp, "L2 table offset", off, l2);
    *table = l2;
    return 0;
}

static enum qed_kind kind_of(uint64_t entry)
{
    if (entry == 0)
        return QED_UNALLOC;
    return entry == QED_ZERO_CLUSTER ? QED_ZERO : QED_FOUND;
}

/* Describes the clusters from guest offset `off`, at most len bytes, as
 * qemu's qed_find_cluster: runs end at the L2 table's span. */
static int map_run(struct qed *s, uint64_t off, uint64_t len, struct qed_run *r,
                   GError **errp)
{
    uint64_t span_end = ((off >> s->l1_shift) + 1) << s->l1_shift;
    uint64_t first = in_cluster(s, off), table, entries[512], count = 1;
    uint64_t clusters;
    int64_t got;

    memset(r, 0, sizeof(*r));
    if (span_end != 0)
        len = MIN(len, span_end - off);
    if (l2_table_of(s, off, &table, errp) < 0)
        return -1;
    if (table == 0) {
        r->kind = QED_UNALLOC;
        r->len = len;
        return 0;
    }
    clusters = (first + len + s->h.cluster_size - 1) >> s->l2_shift;
    got = diskimg_table2_get_run(s->l2, table, (off >> s->l2_shift) & (s->table_entries - 1),
                                 MIN(clusters, (uint64_t)G_N_ELEMENTS(entries)), entries, errp);
    if (got < 0)
        return -1;
    r->kind = kind_of(entries[0]);
    if (r->kind == QED_FOUND) {
        if (!qed_cluster_offset_valid(s, entries[0]))
            return corrupt(s, errp, "data cluster offset", off, entries[0]);
        const char *hit = diskimg_guard_find(s->guard, 0, entries[0], s->h.cluster_size);
        if (hit)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s: data cluster offset %#" PRIx64 " for guest offset "
                                     "%#" PRIx64 " points into the %s", s->filename,
                                     entries[0], off, hit);
        r->host = entries[0] + first;
    }
    while (count < (uint64_t)got) {
        uint64_t e = entries[count];

        if (r->kind == QED_FOUND ? e != entries[0] + count * s->h.cluster_size
                                 : e != entries[0])
            break;
        count++;
    }
    r->len = MIN(len, count * s->h.cluster_size - first);
    return 0;
}

/* ------------------------------------------------------------------ reads */

int qed_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct qed *s = h;
    uint8_t *p = buf;

    while (len > 0) {
        struct qed_run r;
        int ret;

        if (map_run(s, offset, len, &r, errp) < 0)
            return -1;
        if (r.kind == QED_FOUND)
            ret = diskimg_node_pread(s->file, p, r.len, r.host, errp);
        else if (r.kind == QED_ZERO)
            ret = (memset(p, 0, r.len), 0);
        else
            ret = diskimg_node_read_backing(s->node, p, r.len, offset, errp);
        if (ret < 0)
            return -1;
        p += r.len;
        offset += r.len;
        len -= r.len;
    }
    return 0;
}

/* ----------------------------------------------------------- allocation */

/* qemu's qed_alloc_clusters: n clusters at the end of the file. */
static int alloc_clusters(struct qed *s, uint64_t n, uint64_t *off, GError **errp)
{
    uint64_t bytes = n * s->h.cluster_size;

    if (n > UINT64_MAX / s->h.cluster_size || s->file_size > (uint64_t)INT64_MAX - bytes)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "%s: the image file cannot grow further", s->filename);
    *off = s->file_size;
    s->file_size += bytes;
    return 0;
}

/* Set before the first allocation, cleared by a clean close: an image
 * that crashed while allocating is checked when next opened. */
static int mark_need_check(struct qed *s, GError **errp)
{
    if (s->h.features & QED_F_NEED_CHECK)
        return 0;
    s->h.features |= QED_F_NEED_CHECK;
    if (qed_header_write(s, errp) < 0) {
        s->h.features &= ~(uint64_t)QED_F_NEED_CHECK;
        return -1;
    }
    return 0;
}

int qed_write_l1_entry(struct qed *s, uint64_t index, GError **errp)
{
    uint8_t le[8];

    diskimg_put_le64(le, s->l1[index]);
    return diskimg_node_pwrite(s->file, le, sizeof(le), s->h.l1_offset + index * 8, 0, errp);
}

/* The L2 table for guest offset `off`, allocated if missing.  The file
 * grows over it first, so it reads as zeroes before L1 names it. */
static int l2_table_for(struct qed *s, uint64_t off, uint64_t *table, GError **errp)
{
    uint64_t index = off >> s->l1_shift, at = 0;

    if (l2_table_of(s, off, table, errp) < 0)
        return -1;
    if (*table)
        return 0;
    if (alloc_clusters(s, s->h.table_size, &at, errp) < 0 ||
        diskimg_node_truncate(s->file, s->file_size, DISKIMG_PREALLOC_OFF, 0, errp) < 0 ||
        diskimg_table2_fresh(s->l2, at, errp) < 0)
        return -1;
    s->l1[index] = at;
    if (qed_write_l1_entry(s, index, errp) < 0) {
        s->l1[index] = 0;
        return -1;
    }
    diskimg_guard_add(s->guard, QED_META_L2, "L2 table", at,
                      (uint64_t)s->h.table_size * s->h.cluster_size);
    *table = at;
    return 0;
}

/* Points n consecutive clusters from guest offset `off` (one L2 table) at
 * host clusters from `host` on, or at zero clusters when host is 1. */
static int set_entries(struct qed *s, uint64_t off, uint64_t n, uint64_t host, GError **errp)
{
    uint64_t table, index = (off >> s->l2_shift) & (s->table_entries - 1);

    if (l2_table_for(s, off, &table, errp) < 0)
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = host == QED_ZERO_CLUSTER ? host : host + i * s->h.cluster_size;

        if (diskimg_table2_set(s->l2, table, index + i, v, errp) < 0)
            return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- writes */

/* What the guest saw before in the cluster at `base` (cluster aligned):
 * zeroes for zero clusters, the backing file's bytes otherwise. */
static int old_content(struct qed *s, enum qed_kind kind, uint8_t *buf, uint64_t base,
                       GError **errp)
{
    if (kind == QED_ZERO) {
        memset(buf, 0, s->h.cluster_size);
        return 0;
    }
    return diskimg_node_read_backing(s->node, buf, s->h.cluster_size, base, errp);
}

/* Writes one new cluster at `host` holding `n` bytes of data at offset
 * `at` inside it and the old content around them. */
static int write_partial_cluster(struct qed *s, enum qed_kind kind, const uint8_t *data,
                                 uint64_t at, uint64_t n, uint64_t base, uint64_t host,
                                 GError **errp)
{
    uint8_t *buf = g_malloc(s->h.cluster_size);
    int ret = old_content(s, kind, buf, base, errp);

    if (ret == 0) {
        memcpy(buf + at, data, n);
        ret = diskimg_node_pwrite(s->file, buf, s->h.cluster_size, host, 0, errp);
    }
    g_free(buf);
    return ret;
}

/* Gives the clusters of an unallocated or zero run new homes: the partial
 * first and last clusters are completed from their old content, the whole
 * ones in between written straight from the caller's buffer. */
static int write_new_run(struct qed *s, const uint8_t *data, uint64_t off, uint64_t len,
                         enum qed_kind kind, unsigned flags, GError **errp)
{
    uint64_t cs = s->h.cluster_size, head = in_cluster(s, off);
    uint64_t base = off - head, n = (head + len + cs - 1) / cs, host = 0;
    uint64_t done = 0;

    if (mark_need_check(s, errp) < 0 || alloc_clusters(s, n, &host, errp) < 0)
        return -1;
    if (head || len < cs) {
        uint64_t piece = MIN(len, cs - head);

        if (write_partial_cluster(s, kind, data, head, piece, base, host, errp) < 0)
            return -1;
        done = piece;
    }
    uint64_t whole = (len - done) / cs * cs;
    if (whole && diskimg_node_pwrite(s->file, data + done, whole, host + head + done,
                                     flags, errp) < 0)
        return -1;
    done += whole;
    if (done < len) {
        uint64_t at = base + head + done;

        if (write_partial_cluster(s, kind, data + done, 0, len - done, at,
                                  host + (at - base), errp) < 0)
            return -1;
    }
    return set_entries(s, base, n, host, errp);
}

int qed_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp)
{
    struct qed *s = h;
    const uint8_t *p = buf;

    while (len > 0) {
        struct qed_run r;
        int ret;

        if (map_run(s, offset, len, &r, errp) < 0)
            return -1;
        if (r.kind == QED_FOUND)
            ret = diskimg_node_pwrite(s->file, p, r.len, r.host, flags, errp);
        else
            ret = write_new_run(s, p, offset, r.len, r.kind, flags, errp);
        if (ret < 0)
            return -1;
        p += r.len;
        offset += r.len;
        len -= r.len;
    }
    return 0;
}

/* Zeroes one run of whole clusters: allocated clusters are zeroed in
 * place (qemu's choice: they stay allocated), the others become zero
 * clusters. */
static int zero_run(struct qed *s, uint64_t off, const struct qed_run *r, GError **errp)
{
    if (r->kind == QED_ZERO)
        return 0;
    if (r->kind == QED_FOUND)
        return diskimg_node_write_zeroes(s->file, r->host, r->len, 0, errp);
    if (mark_need_check(s, errp) < 0)
        return -1;
    return set_entries(s, off, r->len / s->h.cluster_size, QED_ZERO_CLUSTER, errp);
}

/* Partial clusters at either end are written as zero buffers, unless the
 * caller wants no fallback (qemu refuses unaligned zero writes). */
static int zero_partial(struct qed *s, uint64_t off, uint64_t len, unsigned flags,
                        GError **errp)
{
    uint8_t *zero;
    int ret;

    if (len == 0)
        return 0;
    if (flags & DISKIMG_WRITE_NO_FALLBACK)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s: zero writes must cover whole clusters", s->filename);
    zero = g_malloc0(len);
    ret = qed_write(s, zero, len, off, flags & DISKIMG_WRITE_FUA, errp);
    g_free(zero);
    return ret;
}

int qed_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct qed *s = h;
    uint64_t cs = s->h.cluster_size;
    uint64_t start = (offset + cs - 1) / cs * cs, end = (offset + len) / cs * cs;

    if (start >= end)
        return zero_partial(s, offset, len, flags, errp);
    if (zero_partial(s, offset, start - offset, flags, errp) < 0)
        return -1;
    for (uint64_t at = start; at < end;) {
        struct qed_run r;

        if (map_run(s, at, end - at, &r, errp) < 0 || zero_run(s, at, &r, errp) < 0)
            return -1;
        at += r.len;
    }
    return zero_partial(s, end, offset + len - end, flags, errp);
}

/* ----------------------------------------------------------- block status */

/* As qemu's bdrv_qed_co_block_status. */
int qed_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp)
{
    struct qed *s = h;
    struct qed_run r;

    if (map_run(s, offset, len, &r, errp) < 0)
        return -1;
    ext->length = r.len;
    switch (r.kind) {
    case QED_FOUND:
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_OFFSET_VALID;
        ext->offset = r.host;
        ext->file = s->file;
        break;
    case QED_ZERO:
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
        break;
    case QED_UNALLOC:
        ext->flags = 0;
        break;
    }
    return 0;
}

int qed_flush(void *h, GError **errp)
{
    struct qed *s = h;

    return diskimg_table2_flush(s->l2, errp);
}
