/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data of a qcow image: cluster lookup, reads (plain,
 * compressed, encrypted, falling through to the backing file), writes
 * with allocation at the end of the file, compressed writes and block
 * status.
 *
 * Allocation is qemu's: every new L2 table and data cluster starts at the
 * end of the file rounded up to the cluster size.  Unlike qemu 7.2, a
 * partial write into a cluster that is not allocated yet copies the rest
 * of the cluster from the backing file (qemu writes only the new sectors
 * and loses the backing data around them when clusters exceed 512 bytes),
 * and a partial write over a compressed cluster keeps its other bytes.
 */
#include <string.h>

#include "qcow.h"

enum qcow_kind { QCOW_UNALLOC, QCOW_NORMAL, QCOW_COMPRESSED };

/* Zero writes that need buffers go in pieces of this size. */
#define QCOW_ZERO_CHUNK (1u << 20)

/* A run of clusters of one kind, contiguous in the file for NORMAL. */
struct qcow_run {
    enum qcow_kind kind;
    uint64_t len;          /* bytes of the guest range, from the asked offset */
    uint64_t host;         /* NORMAL: file offset of the asked offset */
    uint64_t entry;        /* COMPRESSED: the L2 entry */
};

static uint64_t cluster_start(const struct qcow *s, uint64_t off)
{
    return off & ~(s->cluster_size - 1);
}

static uint64_t in_cluster(const struct qcow *s, uint64_t off)
{
    return off & (s->cluster_size - 1);
}

static uint64_t compressed_offset(const struct qcow *s, uint64_t entry)
{
    return entry & ((1ull << (63 - s->h.cluster_bits)) - 1);
}

static uint64_t compressed_size(const struct qcow *s, uint64_t entry)
{
    return (entry >> (63 - s->h.cluster_bits)) & (s->cluster_size - 1);
}

static int bad_entry(const struct qcow *s, uint64_t guest, uint64_t entry, const char *why,
                     GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: L2 entry %#" PRIx64 " for guest offset %#" PRIx64 " %s",
                             s->filename, entry, cluster_start(s, guest), why);
}

/* Data at [off, off+len) of the file must not overlap metadata: a write
 * there would destroy it. */
static int overlaps_metadata(const struct qcow *s, uint64_t guest, uint64_t entry, uint64_t off,
                             uint64_t len, GError **errp)
{
    const char *hit = diskimg_guard_find(s->guard, 0, off, len);
    g_autofree char *why = NULL;

    if (!hit)
        return 0;
    why = g_strdup_printf("points into the %s", hit);
    return bad_entry(s, guest, entry, why, errp);
}

/* Validates an L2 entry before anything reads or writes where it points. */
static int check_entry(const struct qcow *s, uint64_t guest, uint64_t entry, GError **errp)
{
    if (entry & QCOW_OFLAG_COMPRESSED) {
        uint64_t off = compressed_offset(s, entry), n = compressed_size(s, entry);

        if (n == 0)
            return bad_entry(s, guest, entry, "holds a compressed cluster of 0 bytes", errp);
        if (off > s->file_end || n > s->file_end - off)
            return bad_entry(s, guest, entry, "points beyond the end of the file", errp);
        return overlaps_metadata(s, guest, entry, off, n, errp);
    }
    if (entry > s->file_end || s->cluster_size > s->file_end - entry)
        return bad_entry(s, guest, entry, "points beyond the end of the file", errp);
    return overlaps_metadata(s, guest, entry, entry, s->cluster_size, errp);
}

/* The L2 entry of the cluster at guest offset `off` and up to `max` after
 * it (same table block); returns how many were read, 0 when the L1 entry
 * is empty (then *n_unalloc clusters up to the table's end are holes). */
static int64_t l2_entries_at(struct qcow *s, uint64_t off, uint64_t max, uint64_t *out,
                             uint64_t *n_unalloc, GError **errp)
{
    uint64_t l1i = off >> (s->h.cluster_bits + s->h.l2_bits);
    uint64_t l2i = (off >> s->h.cluster_bits) & (s->l2_entries - 1);

    if (l1i >= s->l1_size || s->l1[l1i] == 0) {
        *n_unalloc = s->l2_entries - l2i;
        return 0;
    }
    return diskimg_table2_get_run(s->l2, s->l1[l1i], l2i, MIN(max, s->l2_entries - l2i), out,
                                  errp);
}

static enum qcow_kind kind_of(uint64_t entry)
{
    if (entry == 0)
        return QCOW_UNALLOC;
    return (entry & QCOW_OFLAG_COMPRESSED) ? QCOW_COMPRESSED : QCOW_NORMAL;
}

/* Describes the run of clusters from guest offset `off`, at most len bytes. */
static int map_run(struct qcow *s, uint64_t off, uint64_t len, struct qcow_run *r,
                   GError **errp)
{
    uint64_t first = in_cluster(s, off);
    uint64_t clusters = (first + len + s->cluster_size - 1) >> s->h.cluster_bits;
    uint64_t entries[512], holes = 0, count = 1;
    int64_t got = l2_entries_at(s, off, MIN(clusters, (uint64_t)G_N_ELEMENTS(entries)),
                                entries, &holes, errp);

    if (got < 0)
        return -1;
    memset(r, 0, sizeof(*r));
    if (got == 0) {
        r->kind = QCOW_UNALLOC;
        count = MIN(holes, clusters);
    } else {
        r->kind = kind_of(entries[0]);
        if (r->kind != QCOW_UNALLOC && check_entry(s, off, entries[0], errp) < 0)
            return -1;
        if (r->kind == QCOW_NORMAL)
            r->host = entries[0] + first;
        r->entry = entries[0];
        /* compressed clusters go one at a time; others while they continue */
        while (r->kind != QCOW_COMPRESSED && count < (uint64_t)got) {
            uint64_t e = entries[count];

            if (r->kind == QCOW_UNALLOC ? e != 0
                                        : e != entries[0] + count * s->cluster_size)
                break;
            count++;
        }
    }
    r->len = MIN(len, count * s->cluster_size - first);
    return 0;
}

/* ------------------------------------------------------------------ reads */

static int inflate_cluster(struct qcow *s, uint64_t entry, GError **errp)
{
    uint64_t off = compressed_offset(s, entry), n = compressed_size(s, entry);
    uint8_t *in;

    if (s->zcache_entry == entry)
        return 0;
    s->zcache_entry = 0;
    in = g_malloc(n);
    if (diskimg_node_pread(s->file, in, n, off, errp) < 0) {
        g_free(in);
        return -1;
    }
    /* exactly one cluster: a stream that inflates past it is corrupt, not
     * cut short */
    GError *err = NULL;
    int ret = diskimg_decompress_exact(DISKIMG_CODEC_DEFLATE, in, n, s->zcache, s->cluster_size,
                                       &err);
    g_free(in);
    if (ret < 0) {
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                          "%s: compressed cluster at file offset %#" PRIx64 " (%" PRIu64
                          " bytes) does not inflate to %" PRIu64 " bytes: %s", s->filename,
                          off, n, s->cluster_size, err->message);
        g_error_free(err);
        return -1;
    }
    s->zcache_entry = entry;
    return 0;
}

/* The sector cipher works on whole sectors: widen [off, off+len) to them. */
static void sector_span(uint64_t off, uint64_t len, uint64_t *start, uint64_t *span)
{
    *start = off & ~(uint64_t)(QCOW_SECTOR - 1);
    *span = ((off + len + QCOW_SECTOR - 1) & ~(uint64_t)(QCOW_SECTOR - 1)) - *start;
}

static int read_encrypted(struct qcow *s, uint8_t *buf, uint64_t len, uint64_t off,
                          uint64_t host, GError **errp)
{
    uint64_t start, span;
    uint8_t *tmp;
    int ret;

    sector_span(off, len, &start, &span);
    tmp = g_malloc(span);
    ret = diskimg_node_pread(s->file, tmp, span, host - (off - start), errp);
    if (ret == 0)
        ret = diskimg_sector_cipher_decrypt(s->aes, start, tmp, span, errp);
    if (ret == 0)
        memcpy(buf, tmp + (off - start), len);
    diskimg_crypto_wipe(tmp, span);
    g_free(tmp);
    return ret;
}

static int read_run(struct qcow *s, uint8_t *buf, uint64_t off, const struct qcow_run *r,
                    GError **errp)
{
    switch (r->kind) {
    case QCOW_UNALLOC:
        return diskimg_node_read_backing(s->node, buf, r->len, off, errp);
    case QCOW_NORMAL:
        if (s->aes)
            return read_encrypted(s, buf, r->len, off, r->host, errp);
        return diskimg_node_pread(s->file, buf, r->len, r->host, errp);
    case QCOW_COMPRESSED:
        if (inflate_cluster(s, r->entry, errp) < 0)
            return -1;
        memcpy(buf, s->zcache + in_cluster(s, off), r->len);
        return 0;
    }
    return diskimg_set_error(errp, DISKIMG_ERROR_FAILED, "unknown cluster kind");
}

int qcow_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct qcow *s = h;
    uint8_t *p = buf;

    while (len > 0) {
        struct qcow_run r;

        if (map_run(s, offset, len, &r, errp) < 0 || read_run(s, p, offset, &r, errp) < 0)
            return -1;
        p += r.len;
        offset += r.len;
        len -= r.len;
    }
    return 0;
}

/* ----------------------------------------------------------------- writes */

/* File space for `len` bytes at the end, cluster aligned as qemu does. */
static int allocate(struct qcow *s, uint64_t len, uint64_t *off, GError **errp)
{
    uint64_t start = (s->file_end + s->cluster_size - 1) & ~(s->cluster_size - 1);

    if (start > (uint64_t)INT64_MAX - len)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "%s: the image file cannot grow further", s->filename);
    *off = start;
    s->file_end = start + len;
    return 0;
}

static int write_l1_entry(struct qcow *s, uint64_t index, GError **errp)
{
    uint8_t be[8];

    diskimg_put_be64(be, s->l1[index]);
    return diskimg_node_pwrite(s->file, be, sizeof(be), s->h.l1_offset + index * 8, 0, errp);
}

/* The L2 table for guest offset `off`, allocated (zeroed) if missing. */
static int l2_table_for(struct qcow *s, uint64_t off, uint64_t *table, GError **errp)
{
    uint64_t l1i = off >> (s->h.cluster_bits + s->h.l2_bits), bytes = s->l2_entries * 8, at = 0;

    if (s->l1[l1i]) {
        *table = s->l1[l1i];
        return 0;
    }
    /* Growing the file makes the table read as zeroes before L1 names it. */
    if (allocate(s, bytes, &at, errp) < 0 ||
        diskimg_node_truncate(s->file, at + bytes, DISKIMG_PREALLOC_OFF, 0, errp) < 0 ||
        diskimg_table2_fresh(s->l2, at, errp) < 0)
        return -1;
    s->l1[l1i] = at;
    if (write_l1_entry(s, l1i, errp) < 0) {
        s->l1[l1i] = 0;
        return -1;
    }
    diskimg_guard_add(s->guard, QCOW_META_L2, "L2 table", at, bytes);
    *table = at;
    return 0;
}

static int set_entry(struct qcow *s, uint64_t off, uint64_t entry, GError **errp)
{
    uint64_t table;

    if (l2_table_for(s, off, &table, errp) < 0)
        return -1;
    if (entry == 0 || s->zcache_entry == entry)
        s->zcache_entry = 0;
    return diskimg_table2_set(s->l2, table, (off >> s->h.cluster_bits) & (s->l2_entries - 1),
                              entry, errp);
}

/* Encrypts (when the image is) and writes len bytes for guest offset off
 * at host; len and off are whole sectors. */
static int put_data(struct qcow *s, const uint8_t *data, uint64_t len, uint64_t off,
                    uint64_t host, unsigned flags, GError **errp)
{
    uint8_t *tmp;
    int ret;

    if (!s->aes)
        return diskimg_node_pwrite(s->file, data, len, host, flags, errp);
    tmp = g_memdup2(data, len);
    ret = diskimg_sector_cipher_encrypt(s->aes, off, tmp, len, errp);
    if (ret == 0)
        ret = diskimg_node_pwrite(s->file, tmp, len, host, flags, errp);
    diskimg_crypto_wipe(tmp, len);
    g_free(tmp);
    return ret;
}

/* Rewrites part of an allocated plain cluster in place; encrypted images
 * need whole sectors, so the sectors around are read and merged. */
static int write_in_place(struct qcow *s, const uint8_t *data, uint64_t len, uint64_t off,
                          uint64_t host, unsigned flags, GError **errp)
{
    uint64_t start, span;
    uint8_t *tmp;
    int ret;

    if (!s->aes)
        return diskimg_node_pwrite(s->file, data, len, host, flags, errp);
    sector_span(off, len, &start, &span);
    tmp = g_malloc(span);
    ret = read_encrypted(s, tmp, span, start, host - (off - start), errp);
    if (ret == 0) {
        memcpy(tmp + (off - start), data, len);
        ret = put_data(s, tmp, span, start, host - (off - start), flags, errp);
    }
    diskimg_crypto_wipe(tmp, span);
    g_free(tmp);
    return ret;
}

/* Gives the cluster holding guest offset `off` a new home, with `len`
 * bytes of data at `off` and its other bytes from what the guest saw
 * before (backing file, or the compressed cluster it replaces). */
static int write_new_cluster(struct qcow *s, const uint8_t *data, uint64_t len, uint64_t off,
                             const struct qcow_run *old, unsigned flags, GError **errp)
{
    uint64_t base = cluster_start(s, off), host = 0;
    uint8_t *full = NULL;
    const uint8_t *src = data;
    int ret = -1;

    if (len < s->cluster_size) {
        full = g_malloc(s->cluster_size);
        if (old->kind == QCOW_COMPRESSED) {
            if (inflate_cluster(s, old->entry, errp) < 0)
                goto out;
            memcpy(full, s->zcache, s->cluster_size);
        } else if (diskimg_node_read_backing(s->node, full, s->cluster_size, base, errp) < 0) {
            goto out;
        }
        memcpy(full + in_cluster(s, off), data, len);
        src = full;
    }
    if (allocate(s, s->cluster_size, &host, errp) < 0 ||
        put_data(s, src, s->cluster_size, base, host, flags, errp) < 0 ||
        set_entry(s, base, host, errp) < 0)
        goto out;
    ret = 0;
out:
    g_free(full);
    return ret;
}

/* Pending whole-cluster writes that continue each other in the guest and
 * in the file: big writes become one request to the file. */
struct batch {
    const uint8_t *data;
    uint64_t host, len;
};

static int batch_flush(struct qcow *s, struct batch *b, unsigned flags, GError **errp)
{
    int ret = 0;

    if (b->len)
        ret = diskimg_node_pwrite(s->file, b->data, b->len, b->host, flags, errp);
    b->len = 0;
    return ret;
}

static int batch_add(struct qcow *s, struct batch *b, const uint8_t *data, uint64_t len,
                     uint64_t host, unsigned flags, GError **errp)
{
    if (b->len && b->data + b->len == data && b->host + b->len == host) {
        b->len += len;
        return 0;
    }
    if (batch_flush(s, b, flags, errp) < 0)
        return -1;
    *b = (struct batch){ data, host, len };
    return 0;
}

/* New homes for the whole clusters of an unallocated run: contiguous at
 * the end of the file (the L2 table first, as qemu places it), their data
 * written through the batch. */
static int write_new_run(struct qcow *s, struct batch *b, const uint8_t *data, uint64_t n,
                         uint64_t off, unsigned flags, GError **errp)
{
    uint64_t host = 0, table;

    if (l2_table_for(s, off, &table, errp) < 0 || allocate(s, n, &host, errp) < 0)
        return -1;
    for (uint64_t done = 0; done < n; done += s->cluster_size)
        if (set_entry(s, off + done, host + done, errp) < 0)
            return -1;
    return batch_add(s, b, data, n, host, flags, errp);
}

/* Writes the part of [off, off+len) that run r describes; returns the
 * bytes written.  Plain clusters are rewritten in place, whole
 * unallocated ones get new homes together, and everything else (partial
 * clusters, compressed ones, encrypted images) one cluster at a time. */
static int64_t write_run(struct qcow *s, struct batch *b, const uint8_t *data, uint64_t len,
                         uint64_t off, const struct qcow_run *r, unsigned flags, GError **errp)
{
    uint64_t to_end = s->cluster_size - in_cluster(s, off);
    uint64_t n = r->len;
    int ret;

    if (r->kind == QCOW_NORMAL) {
        if (!s->aes)
            ret = batch_add(s, b, data, n, r->host, flags, errp);
        else if ((ret = batch_flush(s, b, flags, errp)) == 0)
            ret = write_in_place(s, data, n, off, r->host, flags, errp);
    } else if (r->kind == QCOW_UNALLOC && !s->aes && to_end == s->cluster_size &&
               n >= s->cluster_size) {
        n = n / s->cluster_size * s->cluster_size;
        ret = write_new_run(s, b, data, n, off, flags, errp);
    } else {
        uint64_t table;

        n = MIN(MIN(n, len), to_end);
        ret = batch_flush(s, b, flags, errp);
        /* like qemu, a missing L2 table is placed before the data cluster */
        if (ret == 0)
            ret = l2_table_for(s, off, &table, errp);
        if (ret == 0)
            ret = write_new_cluster(s, data, n, off, r, flags, errp);
    }
    return ret < 0 ? -1 : (int64_t)n;
}

int qcow_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp)
{
    struct qcow *s = h;
    const uint8_t *p = buf;
    struct batch b = { 0 };

    while (len > 0) {
        struct qcow_run r;
        int64_t n;

        if (map_run(s, offset, len, &r, errp) < 0 ||
            (n = write_run(s, &b, p, len, offset, &r, flags, errp)) < 0) {
            (void)batch_flush(s, &b, flags, NULL);
            return -1;
        }
        p += n;
        offset += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return batch_flush(s, &b, flags, errp);
}

/* qcow has no zero clusters (qemu's driver has no zero write either):
 * ranges that no cluster holds already read as zeroes when the image has
 * no backing file, so those stay holes; everything else is written as
 * zero buffers, unless the caller wants no fallback. */
int qcow_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct qcow *s = h;
    uint8_t *zero = NULL;
    int ret = 0;

    while (len > 0 && ret == 0) {
        struct qcow_run r;

        if (map_run(s, offset, len, &r, errp) < 0) {
            ret = -1;
            break;
        }
        if (r.kind != QCOW_UNALLOC || s->backing_name) {
            if (flags & DISKIMG_WRITE_NO_FALLBACK) {
                ret = diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                        "%s: qcow images have no zero clusters", s->filename);
                break;
            }
            r.len = MIN(r.len, (uint64_t)QCOW_ZERO_CHUNK);
            if (!zero)
                zero = g_malloc0(QCOW_ZERO_CHUNK);
            ret = qcow_write(h, zero, r.len, offset, flags & DISKIMG_WRITE_FUA, errp);
        }
        offset += r.len;
        len -= r.len;
    }
    g_free(zero);
    return ret;
}

/* ------------------------------------------------------ compressed writes */

/* qemu's qcow_co_pwritev_compressed: raw deflate with a 4 KiB window;
 * 0 when the data does not shrink below a cluster (then it is written as
 * a normal cluster).  Touches no state: the core may call it from several
 * threads at once. */
int64_t qcow_compress(void *h, const void *buf, uint64_t len, void *out, uint64_t out_cap,
                      GError **errp)
{
    struct qcow *s = h;

    if (len != s->cluster_size)
        return 0;
    return diskimg_compress(DISKIMG_CODEC_DEFLATE, -1, 12, buf, len, out,
                            MIN(out_cap, s->cluster_size - 1), errp);
}

/* Stores the n compressed bytes of the cluster at guest `offset`,
 * unaligned at the end of the file as qemu does. */
static int store_compressed(struct qcow *s, const uint8_t *data, uint64_t n, uint64_t offset,
                            GError **errp)
{
    uint64_t host = s->file_end;
    uint64_t entry = host | QCOW_OFLAG_COMPRESSED | (n << (63 - s->h.cluster_bits));

    if (n == 0 || n >= s->cluster_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: compressed cluster of %" PRIu64 " bytes", s->filename, n);
    if (host > compressed_offset(s, UINT64_MAX))
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "%s: the image file is too large for compressed clusters",
                                 s->filename);
    s->file_end = host + n;
    if (diskimg_node_pwrite(s->file, data, n, host, 0, errp) < 0)
        return -1;
    return set_entry(s, offset, entry, errp);
}

/* Whether the cluster at `offset` can take compressed data: whole and
 * not allocated as a normal cluster (which is rewritten in place instead:
 * qemu would put compressed bytes there under the normal L2 entry). */
static int takes_compressed(struct qcow *s, uint64_t len, uint64_t offset, bool *ok,
                            GError **errp)
{
    struct qcow_run r;

    if (map_run(s, offset, len, &r, errp) < 0)
        return -1;
    *ok = r.kind != QCOW_NORMAL && len == s->cluster_size && in_cluster(s, offset) == 0;
    return 0;
}

int qcow_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                          GError **errp)
{
    struct qcow *s = h;
    uint8_t *out;
    int64_t n;
    bool ok;
    int ret;

    if (takes_compressed(s, len, offset, &ok, errp) < 0)
        return -1;
    if (!ok)
        return qcow_write(h, buf, len, offset, 0, errp);
    out = g_malloc(s->cluster_size);
    n = qcow_compress(h, buf, len, out, s->cluster_size, errp);
    if (n < 0)
        ret = -1;
    else if (n == 0)
        ret = qcow_write(h, buf, len, offset, 0, errp);
    else
        ret = store_compressed(s, out, (uint64_t)n, offset, errp);
    g_free(out);
    return ret;
}

int qcow_write_precompressed(void *h, const void *data, uint64_t len, uint64_t offset,
                             uint64_t guest_len, GError **errp)
{
    struct qcow *s = h;
    bool ok;

    if (guest_len != s->cluster_size || takes_compressed(s, guest_len, offset, &ok, errp) < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: compressed data must cover one whole cluster",
                                 s->filename);
    if (!ok) {
        /* an allocated cluster: store the guest bytes in place */
        uint8_t *plain = g_malloc(s->cluster_size);
        int64_t got = diskimg_decompress(DISKIMG_CODEC_DEFLATE, 12, data, len, plain,
                                         s->cluster_size, errp);
        int ret = got == (int64_t)s->cluster_size
                  ? qcow_write(h, plain, s->cluster_size, offset, 0, errp)
                  : diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                      "%s: compressed data does not inflate to a cluster",
                                      s->filename);
        g_free(plain);
        return ret;
    }
    return store_compressed(s, data, len, offset, errp);
}

/* ----------------------------------------------------------- block status */

/* As qemu's qcow_co_block_status: encrypted and compressed data have no
 * usable host offset. */
int qcow_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                      GError **errp)
{
    struct qcow *s = h;
    struct qcow_run r;

    if (map_run(s, offset, len, &r, errp) < 0)
        return -1;
    ext->length = r.len;
    switch (r.kind) {
    case QCOW_UNALLOC:
        ext->flags = 0;
        break;
    case QCOW_COMPRESSED:
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_COMPRESSED;
        break;
    case QCOW_NORMAL:
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED;
        if (s->aes) {
            ext->flags |= DISKIMG_BS_COMPRESSED;
            break;
        }
        ext->flags |= DISKIMG_BS_OFFSET_VALID;
        ext->offset = r.host;
        ext->file = s->file;
        break;
    }
    return 0;
}

int qcow_flush(void *h, GError **errp)
{
    struct qcow *s = h;

    return diskimg_table2_flush(s->l2, errp);
}

/* qemu's qcow_make_empty: an empty L1 table, and the file cut after it. */
int qcow_make_empty(void *h, GError **errp)
{
    struct qcow *s = h;
    uint64_t l1_bytes = s->l1_size * sizeof(uint64_t);
    uint64_t end = MAX(s->h.l1_offset + l1_bytes, (uint64_t)QCOW_HEADER_SIZE);
    uint8_t *zero;
    int ret;

    if (s->h.backing_offset)
        end = MAX(end, s->h.backing_offset + s->h.backing_size);
    if (diskimg_table2_flush(s->l2, errp) < 0)
        return -1;
    zero = g_malloc0(MAX(l1_bytes, 1));
    ret = diskimg_node_pwrite(s->file, zero, l1_bytes, s->h.l1_offset, 0, errp);
    g_free(zero);
    if (ret < 0)
        return -1;
    memset(s->l1, 0, l1_bytes);
    diskimg_guard_clear(s->guard, QCOW_META_L2);
    s->zcache_entry = 0;
    if (diskimg_table2_empty(s->l2, errp) < 0 ||
        diskimg_node_truncate(s->file, end, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                              errp) < 0)
        return -1;
    s->file_end = end;
    return 0;
}
