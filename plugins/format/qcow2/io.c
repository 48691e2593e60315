/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data requests: read, write with copy-on-write, zero
 * writes, discard, compressed writes and block status.
 *
 * Writes work one L2 table at a time.  Clusters that can be written in
 * place (allocated, refcount 1) are; runs of clusters that need new
 * storage get one contiguous allocation and one data write, with the
 * partial head and tail filled from what the guest saw before (backing
 * file, zeroes, compressed or shared data) — the "fill" is simply a read
 * of the current mapping.  With extended L2 entries only the touched
 * subclusters are allocated in a fresh cluster.
 *
 * Encrypted images: guest data passes through data_read/data_write, which
 * decrypt/encrypt whole 512-byte sectors; requests not aligned to sectors
 * are widened at the top (read_guest/write_guest), so that every range
 * below is sector-aligned.
 */
#include <string.h>

#include "qcow2.h"

/* ------------------------------------------------------------ data */

static bool encrypted(const struct qcow2 *s)
{
    return s->h.crypt_method != QCOW2_CRYPT_NONE;
}

/* Guest data [guest, guest+len) stored at `host` in the data file. */
static int data_read(struct qcow2 *s, void *buf, uint64_t len, uint64_t host, uint64_t guest,
                     GError **errp)
{
    if (diskimg_node_pread(s->data, buf, len, host, errp) < 0)
        return -1;
    return encrypted(s) ? qcow2_crypt(s, false, host, guest, buf, len, errp) : 0;
}

/* Stores guest data from a buffer of ours, encrypting it in place. */
static int data_write_scratch(struct qcow2 *s, void *buf, uint64_t len, uint64_t host,
                              uint64_t guest, GError **errp)
{
    if (encrypted(s) && qcow2_crypt(s, true, host, guest, buf, len, errp) < 0)
        return -1;
    return diskimg_node_pwrite(s->data, buf, len, host, 0, errp);
}

/* Stores the caller's guest data, which stays as it is. */
static int data_write(struct qcow2 *s, const void *buf, uint64_t len, uint64_t host,
                      uint64_t guest, GError **errp)
{
    if (!encrypted(s))
        return diskimg_node_pwrite(s->data, buf, len, host, 0, errp);
    /* encrypt a copy, chunk by chunk */
    uint64_t chunk = MIN(len, 1u << 20);
    uint8_t *b = diskimg_alloc_aligned(chunk);
    if (!b)
        return qcow2_enomem(errp);
    int ret = 0;
    for (uint64_t done = 0; done < len && ret == 0; done += chunk) {
        uint64_t n = MIN(chunk, len - done);
        memcpy(b, (const uint8_t *)buf + done, n);
        ret = data_write_scratch(s, b, n, host + done, guest + done, errp);
    }
    diskimg_free_aligned(b);
    return ret;
}

/* ------------------------------------------------------------ reads */

static int decompress_cluster(struct qcow2 *s, uint64_t l2e, GError **errp)
{
    uint64_t off, len;
    if (s->cbuf_entry == l2e)
        return 0;
    qcow2_compressed_span(s, l2e, &off, &len);
    if (!off || len > 2 * s->cluster_size)
        return qcow2_corrupt(s, errp, "Invalid compressed cluster descriptor %#" PRIx64, l2e);
    if (diskimg_node_pread(s->file, s->cin, len, off, errp) < 0)
        return -1;
    enum diskimg_codec codec = s->h.compression_type == QCOW2_COMPRESSION_ZSTD
                               ? DISKIMG_CODEC_ZSTD : DISKIMG_CODEC_DEFLATE;
    s->cbuf_entry = 0;
    int64_t n = diskimg_decompress(codec, 15, s->cin, len, s->cbuf, s->cluster_size, errp);
    if (n < 0) {
        g_prefix_error(errp, "%s: compressed cluster at %#" PRIx64 ": ", s->filename, off);
        return -1;
    }
    if ((uint64_t)n != s->cluster_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "%s: compressed cluster at %#" PRIx64 " decompresses to %" PRId64
                    " bytes instead of %" PRIu64, s->filename, off, n, s->cluster_size);
        return -1;
    }
    s->cbuf_entry = l2e;
    return 0;
}

static int read_run(struct qcow2 *s, const struct qcow2_run *r, uint8_t *buf, uint64_t off,
                    GError **errp)
{
    switch (r->type) {
    case QC_UNALLOC:
    case QC_UNALLOC_ALLOC:
        if (!s->node) {
            memset(buf, 0, r->len);
            return 0;
        }
        return diskimg_node_read_backing(s->node, buf, r->len, off, errp);
    case QC_ZERO_PLAIN:
    case QC_ZERO_ALLOC:
        memset(buf, 0, r->len);
        return 0;
    case QC_NORMAL:
        return data_read(s, buf, r->len, r->host, off, errp);
    case QC_COMPRESSED:
        if (decompress_cluster(s, r->l2e, errp) < 0)
            return -1;
        memcpy(buf, s->cbuf + qcow2_offset_into_cluster(s, off), r->len);
        return 0;
    }
    return qcow2_corrupt(s, errp, "Invalid cluster entry at guest offset %#" PRIx64, off);
}

/* Reads what the guest sees at [off, off+len); zeroes past the end. */
static int read_range(struct qcow2 *s, uint8_t *buf, uint64_t len, uint64_t off, GError **errp)
{
    /* encrypted: whole sectors only (the size qemu and get_size use) */
    uint64_t size = encrypted(s) ? s->h.size & ~(uint64_t)(QCOW2_CRYPT_SECTOR - 1) : s->h.size;
    if (off + len > size) {
        uint64_t in = off < size ? size - off : 0;
        memset(buf + in, 0, len - in);
        len = in;
    }
    while (len) {
        struct qcow2_run r;
        if (qcow2_map_run(s, off, len, &r, errp) < 0 || read_run(s, &r, buf, off, errp) < 0)
            return -1;
        buf += r.len;
        off += r.len;
        len -= r.len;
    }
    return 0;
}

static bool sector_aligned(const struct qcow2 *s, uint64_t off, uint64_t len)
{
    return !encrypted(s) || !((off | len) & (QCOW2_CRYPT_SECTOR - 1));
}

/* read_range for any range: partial sectors of encrypted images go
 * through a sector buffer. */
static int read_guest(struct qcow2 *s, uint8_t *buf, uint64_t len, uint64_t off, GError **errp)
{
    if (sector_aligned(s, off, len))
        return read_range(s, buf, len, off, errp);
    uint8_t *sec = diskimg_alloc_aligned(QCOW2_CRYPT_SECTOR);
    if (!sec)
        return qcow2_enomem(errp);
    int ret = 0;
    uint64_t head = off & (QCOW2_CRYPT_SECTOR - 1);
    if (head) {
        uint64_t n = MIN(len, QCOW2_CRYPT_SECTOR - head);
        ret = read_range(s, sec, QCOW2_CRYPT_SECTOR, off - head, errp);
        if (ret == 0)
            memcpy(buf, sec + head, n);
        buf += n;
        off += n;
        len -= n;
    }
    uint64_t mid = len & ~(uint64_t)(QCOW2_CRYPT_SECTOR - 1);
    if (ret == 0 && mid)
        ret = read_range(s, buf, mid, off, errp);
    if (ret == 0 && len > mid) {
        ret = read_range(s, sec, QCOW2_CRYPT_SECTOR, off + mid, errp);
        if (ret == 0)
            memcpy(buf + mid, sec, len - mid);
    }
    diskimg_free_aligned(sec);
    return ret;
}

int qcow2_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    return read_guest(h, buf, len, offset, errp);
}

/* ------------------------------------------------------------ write helpers */

static int writable(struct qcow2 *s, GError **errp)
{
    if (s->corrupt) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "%s: image is corrupt; writes are refused", s->filename);
        return -1;
    }
    return 0;
}

/* Copies the current guest view of [off, off+len) to host offset `host`. */
static int fill(struct qcow2 *s, uint64_t off, uint64_t len, uint64_t host, GError **errp)
{
    if (len == 0)
        return 0;
    uint8_t *b = diskimg_alloc_aligned(len);
    if (!b)
        return qcow2_enomem(errp);
    int ret = read_range(s, b, len, off, errp);
    if (ret == 0)
        ret = data_write_scratch(s, b, len, host, off, errp);
    diskimg_free_aligned(b);
    return ret;
}

static bool entry_has_data(const struct qcow2 *s, uint64_t e)
{
    return (e & QCOW2_OFLAG_COMPRESSED) || (e & QCOW2_OFFSET_MASK) ||
           (s->ext_data && (e & QCOW2_OFLAG_COPIED));
}

/* Can guest cluster with entry e be written where it is? */
static bool in_place(const struct qcow2 *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return false;
    return (e & QCOW2_OFLAG_COPIED) && entry_has_data(s, e);
}

static uint64_t sub_mask(const struct qcow2 *s, uint64_t a, uint64_t b)
{
    unsigned first = (unsigned)(qcow2_offset_into_cluster(s, a) / s->subcluster_size);
    unsigned last = (unsigned)(qcow2_offset_into_cluster(s, b - 1) / s->subcluster_size);
    uint64_t m = 0;
    for (unsigned i = first; i <= last; i++)
        m |= 1ull << i;
    return m;
}

/* Fill ranges around a write [a, b) into guest cluster cstart.  Whole
 * cluster unless extended L2 lets us stop at subcluster edges (when the
 * subclusters outside the write can stay as they are). */
static void fill_bounds(const struct qcow2 *s, uint64_t cstart, uint64_t a, uint64_t b,
                        bool whole, uint64_t *lo, uint64_t *hi)
{
    if (!s->ext_l2 || whole) {
        *lo = cstart;
        *hi = cstart + s->cluster_size;
        return;
    }
    *lo = a & ~(s->subcluster_size - 1);
    *hi = (b + s->subcluster_size - 1) & ~(s->subcluster_size - 1);
}

/* Old entries replaced by a write, freed once the L2 table is durable. */
struct freelist {
    uint64_t *e;
    size_t n, cap;
};

static void freelist_add(struct freelist *f, uint64_t e)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->e = g_renew(uint64_t, f->e, f->cap);
    }
    f->e[f->n++] = e;
}

static int freelist_release(struct qcow2 *s, struct freelist *f, GError **errp)
{
    int ret = 0;
    if (f->n && qcow2_cache_flush(&s->l2c, errp) < 0)
        ret = -1;
    for (size_t i = 0; i < f->n && ret == 0; i++)
        ret = qcow2_free_entry(s, f->e[i], errp);
    g_free(f->e);
    memset(f, 0, sizeof(*f));
    return ret;
}

/* ------------------------------------------------------------ writes */

struct wctx {
    struct qcow2 *s;
    uint8_t *l2;
    const uint8_t *buf;     /* data of [off, end) */
    uint64_t off, end;
    struct freelist freed;
};

/* In-place write of [a, b) into the cluster at cstart. */
static int write_in_place(struct wctx *w, uint64_t cstart, uint64_t a, uint64_t b,
                          GError **errp)
{
    struct qcow2 *s = w->s;
    uint64_t idx = (cstart >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t e = qcow2_l2_entry(s, w->l2, idx), bm = qcow2_l2_bitmap(s, w->l2, idx);
    uint64_t host = (s->ext_data ? cstart : (e & QCOW2_OFFSET_MASK));
    uint64_t touched = s->ext_l2 ? sub_mask(s, a, b) : 0;
    bool zero = !s->ext_l2 && (e & QCOW2_OFLAG_ZERO);
    bool need_fill = zero || (s->ext_l2 && (touched & ~bm & 0xffffffffull));
    if (need_fill) {
        uint64_t lo, hi;
        fill_bounds(s, cstart, a, b, false, &lo, &hi);
        if (fill(s, lo, a - lo, host + (lo - cstart), errp) < 0 ||
            fill(s, b, hi - b, host + (b - cstart), errp) < 0)
            return -1;
    }
    if (data_write(s, w->buf + (a - w->off), b - a, host + (a - cstart), a, errp) < 0)
        return -1;
    if (need_fill || (s->ext_l2 && (touched & ~bm))) {
        uint64_t nbm = (bm | touched) & ~(touched << 32);
        qcow2_l2_set(s, w->l2, idx, e & ~QCOW2_OFLAG_ZERO, nbm);
        qcow2_cache_dirty(&s->l2c, w->l2);
    }
    return 0;
}

/* New L2 entry and bitmap for a cluster freshly written at `host`. */
static void new_entry(struct wctx *w, uint64_t idx, uint64_t host, uint64_t a, uint64_t b,
                      bool whole)
{
    struct qcow2 *s = w->s;
    uint64_t old = qcow2_l2_entry(s, w->l2, idx), obm = qcow2_l2_bitmap(s, w->l2, idx);
    uint64_t bm = 0;
    if (s->ext_l2) {
        uint64_t touched = whole ? 0xffffffffull : sub_mask(s, a, b);
        bm = touched | (obm & ~(touched << 32) & 0xffffffff00000000ull);
        if (whole)
            bm = 0xffffffffull;
    }
    uint64_t e = (s->ext_data && !host ? 0 : host) | QCOW2_OFLAG_COPIED;
    qcow2_l2_set(s, w->l2, idx, e, bm);
    if (entry_has_data(s, old) && !s->ext_data)
        freelist_add(&w->freed, old);
}

/* Writes k clusters starting at cstart that all need new storage. */
static int write_new(struct wctx *w, uint64_t cstart, uint64_t k, GError **errp)
{
    struct qcow2 *s = w->s;
    uint64_t host, cs = s->cluster_size;
    uint64_t a = MAX(w->off, cstart), b = MIN(w->end, cstart + k * cs);
    uint64_t idx0 = (cstart >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t first_e = qcow2_l2_entry(s, w->l2, idx0);
    uint64_t last_e = qcow2_l2_entry(s, w->l2, idx0 + k - 1);
    bool whole_first = entry_has_data(s, first_e), whole_last = entry_has_data(s, last_e);
    if (s->ext_data)
        host = cstart;
    else if (qcow2_alloc_clusters(s, k, &host, errp) < 0)
        return -1;
    uint64_t lo, hi, ignore;
    fill_bounds(s, cstart, a, MIN(b, cstart + cs), whole_first, &lo, &ignore);
    uint64_t lcs = cstart + (k - 1) * cs;
    fill_bounds(s, lcs, MAX(a, lcs), b, whole_last, &ignore, &hi);
    if (fill(s, lo, a - lo, host + (lo - cstart), errp) < 0 ||
        data_write(s, w->buf + (a - w->off), b - a, host + (a - cstart), a, errp) < 0 ||
        fill(s, b, hi - b, host + (b - cstart), errp) < 0)
        return -1;
    for (uint64_t j = 0; j < k; j++) {
        uint64_t c = cstart + j * cs;
        bool whole = (j == 0 && whole_first) || (j == k - 1 && whole_last) ||
                     (MAX(a, c) == c && MIN(b, c + cs) == c + cs);
        new_entry(w, idx0 + j, host + j * cs, MAX(a, c), MIN(b, c + cs), whole);
    }
    qcow2_cache_dirty(&s->l2c, w->l2);
    return 0;
}

/* Writes [off, end) lying within one L2 table. */
static int write_table(struct wctx *w, GError **errp)
{
    struct qcow2 *s = w->s;
    uint64_t idx0;
    if (qcow2_l2_table(s, w->off, true, &w->l2, &idx0, errp) < 0)
        return -1;
    int ret = 0;
    uint64_t pos = w->off;
    while (pos < w->end && ret == 0) {
        uint64_t cstart = qcow2_align_down(s, pos);
        uint64_t idx = (cstart >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t e = qcow2_l2_entry(s, w->l2, idx);
        if (in_place(s, e)) {
            uint64_t b = MIN(w->end, cstart + s->cluster_size);
            ret = write_in_place(w, cstart, pos, b, errp);
            pos = b;
            continue;
        }
        uint64_t k = 1;
        while (cstart + k * s->cluster_size < w->end &&
               !in_place(s, qcow2_l2_entry(s, w->l2, idx + k)))
            k++;
        ret = write_new(w, cstart, k, errp);
        pos = MIN(w->end, cstart + k * s->cluster_size);
    }
    qcow2_cache_put(&s->l2c, w->l2);
    return ret;
}

static uint64_t table_end(const struct qcow2 *s, uint64_t off)
{
    uint64_t span = s->l2_entries << s->cluster_bits;
    return (off & ~(span - 1)) + span;
}

static int write_range(struct qcow2 *s, const uint8_t *buf, uint64_t len, uint64_t off,
                       GError **errp)
{
    while (len) {
        uint64_t n = MIN(len, table_end(s, off) - off);
        struct wctx w = { .s = s, .buf = buf, .off = off, .end = off + n };
        int ret = write_table(&w, errp);
        if (freelist_release(s, &w.freed, ret < 0 ? NULL : errp) < 0 && ret == 0)
            ret = -1;
        if (ret < 0)
            return -1;
        s->cbuf_entry = 0;
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Read-modify-write of the sector holding [off, off+n), n < one sector. */
static int write_partial_sector(struct qcow2 *s, uint8_t *sec, const uint8_t *buf, uint64_t n,
                                uint64_t off, GError **errp)
{
    uint64_t start = off & ~(uint64_t)(QCOW2_CRYPT_SECTOR - 1);
    if (read_range(s, sec, QCOW2_CRYPT_SECTOR, start, errp) < 0)
        return -1;
    memcpy(sec + (off - start), buf, n);
    return write_range(s, sec, QCOW2_CRYPT_SECTOR, start, errp);
}

/* write_range for any range (see read_guest). */
static int write_guest(struct qcow2 *s, const uint8_t *buf, uint64_t len, uint64_t off,
                       GError **errp)
{
    if (sector_aligned(s, off, len))
        return write_range(s, buf, len, off, errp);
    uint8_t *sec = diskimg_alloc_aligned(QCOW2_CRYPT_SECTOR);
    if (!sec)
        return qcow2_enomem(errp);
    int ret = 0;
    uint64_t head = off & (QCOW2_CRYPT_SECTOR - 1);
    if (head) {
        uint64_t n = MIN(len, QCOW2_CRYPT_SECTOR - head);
        ret = write_partial_sector(s, sec, buf, n, off, errp);
        buf += n;
        off += n;
        len -= n;
    }
    uint64_t mid = len & ~(uint64_t)(QCOW2_CRYPT_SECTOR - 1);
    if (ret == 0 && mid)
        ret = write_range(s, buf, mid, off, errp);
    if (ret == 0 && len > mid)
        ret = write_partial_sector(s, sec, buf + mid, len - mid, off + mid, errp);
    diskimg_free_aligned(sec);
    return ret;
}

int qcow2_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                GError **errp)
{
    struct qcow2 *s = h;
    if (writable(s, errp) < 0 || qcow2_bitmaps_mark(s, offset, len, errp) < 0 ||
        write_guest(s, buf, len, offset, errp) < 0)
        return -1;
    if (flags & DISKIMG_WRITE_FUA)
        return qcow2_flush_metadata(s, errp) < 0 ? -1 : diskimg_node_flush(s->data, errp);
    return 0;
}

/* ------------------------------------------------------------ zeroes, discard */

static uint64_t zeroed_entry(const struct qcow2 *s, uint64_t e, bool zero, bool unmap,
                             uint64_t *bm)
{
    bool drop = (e & QCOW2_OFLAG_COMPRESSED) || unmap || !zero;
    uint64_t ne = drop ? 0 : e;
    *bm = 0;
    if (zero) {
        if (s->ext_l2)
            *bm = 0xffffffff00000000ull;
        else
            ne |= QCOW2_OFLAG_ZERO;
    }
    return ne;
}

/* The L2 table to modify for guest `off`, copied first when shared; NULL
 * when there is none and none is needed (`create` false). */
static int table_for_update(struct qcow2 *s, uint64_t off, bool create, uint8_t **l2,
                            uint64_t *idx, GError **errp)
{
    if (!create) {
        if (qcow2_l2_table(s, off, false, l2, idx, errp) < 0)
            return -1;
        if (!*l2)
            return 0;
        qcow2_cache_put(&s->l2c, *l2);
    }
    return qcow2_l2_table(s, off, true, l2, idx, errp);
}

int qcow2_zero_clusters(struct qcow2 *s, uint64_t off, uint64_t len, bool zero, bool unmap,
                        GError **errp)
{
    uint64_t end = off + len;
    while (off < end) {
        uint64_t n = MIN(end, table_end(s, off)) - off, idx;
        uint8_t *l2;
        struct freelist freed = { 0 };
        if (table_for_update(s, off, zero, &l2, &idx, errp) < 0)
            return -1;
        for (uint64_t c = 0; l2 && c < (n >> s->cluster_bits); c++) {
            uint64_t e = qcow2_l2_entry(s, l2, idx + c), bm;
            uint64_t ne = zeroed_entry(s, e, zero, unmap, &bm);
            if (ne == e && bm == qcow2_l2_bitmap(s, l2, idx + c))
                continue;
            qcow2_l2_set(s, l2, idx + c, ne, bm);
            qcow2_cache_dirty(&s->l2c, l2);
            if (entry_has_data(s, e) && !(ne & QCOW2_OFFSET_MASK) && !s->ext_data)
                freelist_add(&freed, e);
        }
        if (l2)
            qcow2_cache_put(&s->l2c, l2);
        if (freelist_release(s, &freed, errp) < 0)
            return -1;
        off += n;
    }
    s->cbuf_entry = 0;
    return 0;
}

/* Whether [off, off+len) already reads as zeroes (cheaply decidable). */
static int reads_zero(struct qcow2 *s, uint64_t off, uint64_t len, bool *zero, GError **errp)
{
    *zero = false;
    while (len) {
        struct qcow2_run r;
        if (qcow2_map_run(s, off, len, &r, errp) < 0)
            return -1;
        bool z = r.type == QC_ZERO_PLAIN || r.type == QC_ZERO_ALLOC ||
                 ((r.type == QC_UNALLOC || r.type == QC_UNALLOC_ALLOC) &&
                  (!s->node || !diskimg_node_backing(s->node)));
        if (!z)
            return 0;
        off += r.len;
        len -= r.len;
    }
    *zero = true;
    return 0;
}

static int write_zero_buffer(struct qcow2 *s, uint64_t off, uint64_t len, GError **errp)
{
    bool zero;
    if (reads_zero(s, off, len, &zero, errp) < 0)
        return -1;
    if (zero)
        return 0;
    uint64_t chunk = MIN(len, 1u << 20);
    uint8_t *z = g_malloc0(chunk);
    int ret = 0;
    while (len && ret == 0) {
        uint64_t n = MIN(len, chunk);
        ret = write_guest(s, z, n, off, errp);
        off += n;
        len -= n;
    }
    g_free(z);
    return ret;
}

int qcow2_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct qcow2 *s = h;
    if (writable(s, errp) < 0 || qcow2_bitmaps_mark(s, offset, len, errp) < 0)
        return -1;
    uint64_t end = offset + len;
    uint64_t a = (offset + s->cluster_size - 1) & ~(s->cluster_size - 1);
    uint64_t b = qcow2_align_down(s, end);
    /* The last partial cluster of the image counts as whole. */
    if (end == s->h.size)
        b = (end + s->cluster_size - 1) & ~(s->cluster_size - 1);
    if (s->h.version < 3 || s->data_raw || a >= b)
        return write_zero_buffer(s, offset, len, errp);
    if (write_zero_buffer(s, offset, a - offset, errp) < 0 ||
        qcow2_zero_clusters(s, a, b - a, true, flags & DISKIMG_WRITE_MAY_UNMAP, errp) < 0)
        return -1;
    return end > b ? write_zero_buffer(s, b, end - b, errp) : 0;
}

int qcow2_discard(void *h, uint64_t offset, uint64_t len, GError **errp)
{
    struct qcow2 *s = h;
    if (writable(s, errp) < 0 || qcow2_bitmaps_mark(s, offset, len, errp) < 0)
        return -1;
    uint64_t end = offset + len;
    uint64_t a = (offset + s->cluster_size - 1) & ~(s->cluster_size - 1);
    uint64_t b = end == s->h.size ? (end + s->cluster_size - 1) & ~(s->cluster_size - 1)
                                  : qcow2_align_down(s, end);
    if (a >= b || s->data_raw)
        return 0;
    bool backing = s->node && diskimg_node_backing(s->node);
    return qcow2_zero_clusters(s, a, b - a, s->h.version >= 3 && backing, true, errp);
}

/* ------------------------------------------------------------ compressed */

static int compress_cluster(struct qcow2 *s, const uint8_t *in, uint8_t *out, uint64_t *olen,
                            GError **errp)
{
    bool zstd = s->h.compression_type == QCOW2_COMPRESSION_ZSTD;
    int64_t n = diskimg_compress(zstd ? DISKIMG_CODEC_ZSTD : DISKIMG_CODEC_DEFLATE, -1,
                                 zstd ? 0 : 12, in, s->cluster_size, out,
                                 s->cluster_size - 1, errp);
    if (n < 0)
        return -1;
    *olen = (uint64_t)n;
    return 0;
}

static int store_compressed(struct qcow2 *s, uint64_t offset, const uint8_t *data,
                            uint64_t clen, GError **errp)
{
    uint8_t *l2;
    uint64_t idx, coff;
    if (qcow2_l2_table(s, offset, true, &l2, &idx, errp) < 0)
        return -1;
    uint64_t old = qcow2_l2_entry(s, l2, idx);
    int ret = qcow2_alloc_bytes(s, clen, &coff, errp);
    if (ret == 0)
        ret = diskimg_node_pwrite(s->file, data, clen, coff, 0, errp);
    if (ret == 0) {
        uint64_t extra = ((coff + clen - 1) >> 9) - (coff >> 9);
        uint64_t e = QCOW2_OFLAG_COMPRESSED | (extra << s->csize_shift) | coff;
        qcow2_l2_set(s, l2, idx, e, 0);
        qcow2_cache_dirty(&s->l2c, l2);
    }
    qcow2_cache_put(&s->l2c, l2);
    if (ret == 0 && entry_has_data(s, old)) {
        struct freelist f = { 0 };
        freelist_add(&f, old);
        ret = freelist_release(s, &f, errp);
    }
    s->cbuf_entry = 0;
    return ret;
}

/* What every compressed write must satisfy, however it was compressed. */
static int check_compressed_write(struct qcow2 *s, uint64_t len, uint64_t offset,
                                  GError **errp)
{
    if (writable(s, errp) < 0)
        return -1;
    if (encrypted(s)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Compression and encryption not supported at the same time");
        return -1;
    }
    if (s->ext_data) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Compressed writes are not supported with an external data file");
        return -1;
    }
    if (qcow2_offset_into_cluster(s, offset) || len > s->cluster_size ||
        (len < s->cluster_size && offset + len < s->h.size)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Compressed writes must cover whole clusters");
        return -1;
    }
    return qcow2_bitmaps_mark(s, offset, len, errp);
}

int qcow2_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                           GError **errp)
{
    struct qcow2 *s = h;
    if (check_compressed_write(s, len, offset, errp) < 0)
        return -1;
    uint8_t *out = g_malloc(s->cluster_size);
    int64_t clen = qcow2_compress(h, buf, len, out, s->cluster_size, errp);
    int ret = clen < 0 ? -1 : 0;
    if (clen == 0)   /* incompressible: stored normally */
        ret = write_range(s, buf, len, offset, errp);
    else if (clen > 0)
        ret = store_compressed(s, offset, out, (uint64_t)clen, errp);
    g_free(out);
    return ret;
}

/* Runs on the core's compression workers, concurrently and without the
 * node lock: it reads only settings fixed at open (cluster size, codec). */
int64_t qcow2_compress(void *h, const void *buf, uint64_t len, void *out, uint64_t out_cap,
                       GError **errp)
{
    struct qcow2 *s = h;
    if (len > s->cluster_size || out_cap < s->cluster_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "compress: %" PRIu64 " bytes do not make one cluster", len);
        return -1;
    }
    /* The last cluster of an image may be partial: qemu pads it with zeroes. */
    g_autofree uint8_t *padded = NULL;
    const uint8_t *in = buf;
    if (len < s->cluster_size) {
        padded = g_malloc0(s->cluster_size);
        memcpy(padded, buf, len);
        in = padded;
    }
    uint64_t clen = 0;
    if (compress_cluster(s, in, out, &clen, errp) < 0)
        return -1;
    return (int64_t)clen;
}

int qcow2_write_precompressed(void *h, const void *data, uint64_t len, uint64_t offset,
                              uint64_t guest_len, GError **errp)
{
    struct qcow2 *s = h;
    if (check_compressed_write(s, guest_len, offset, errp) < 0)
        return -1;
    if (len == 0 || len >= s->cluster_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "precompressed cluster of %" PRIu64 " bytes is not smaller than a cluster",
                    len);
        return -1;
    }
    return store_compressed(s, offset, data, len, errp);
}

/* ------------------------------------------------------------ block status */

/* qemu's check for images made with preallocation=metadata: many more
 * clusters are referenced than the host file really holds. */
static int detect_prealloc(struct qcow2 *s, GError **errp)
{
    s->prealloc_checked = true;
    int64_t real = diskimg_node_allocated_size(s->file, NULL);
    if (real < 0)
        return 0;
    uint64_t real_clusters = (uint64_t)real / s->cluster_size;
    uint64_t threshold = MAX(real_clusters * 10 / 9, real_clusters + 2), end, count = 0;
    if (qcow2_file_clusters(s, &end, errp) < 0)
        return -1;
    for (uint64_t i = 0; i < end && count < threshold; i++) {
        uint64_t rc;
        if (qcow2_get_refcount(s, i, &rc, errp) < 0)
            return -1;
        count += rc != 0;
    }
    s->prealloc_meta = count >= threshold;
    return 0;
}

/* For preallocated images: data clusters over host holes read as zeroes. */
static int recurse_file(struct qcow2 *s, struct diskimg_extent *ext, GError **errp)
{
    (void)errp;
    struct diskimg_extent f;
    if (diskimg_node_block_status(s->data, ext->offset, ext->length, &f, NULL) < 0)
        return 0;
    if (f.flags & DISKIMG_BS_ZERO)
        ext->flags |= DISKIMG_BS_ZERO;
    ext->length = MIN(ext->length, f.length);
    return 0;
}

/* Where the data of a run lives.  Never for encrypted images: their host
 * bytes are ciphertext, nothing may copy or inspect them as data (qemu
 * reports no offset either, so map shows none). */
static void set_host(struct qcow2 *s, const struct qcow2_run *r, struct diskimg_extent *ext)
{
    if (encrypted(s))
        return;
    ext->flags |= DISKIMG_BS_OFFSET_VALID;
    ext->offset = r->host;
    ext->file = s->data;
}

int qcow2_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                       GError **errp)
{
    struct qcow2 *s = h;
    struct qcow2_run r;
    if (!s->prealloc_checked && !encrypted(s) && detect_prealloc(s, errp) < 0)
        return -1;
    if (qcow2_map_run(s, offset, len, &r, errp) < 0)
        return -1;
    ext->length = r.len;
    ext->flags = 0;
    switch (r.type) {
    case QC_UNALLOC:
        return 0;
    case QC_UNALLOC_ALLOC:
        /* qemu reports where such a subcluster would live, without data */
        set_host(s, &r, ext);
        return 0;
    case QC_ZERO_PLAIN:
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
        return 0;
    case QC_ZERO_ALLOC:
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
        set_host(s, &r, ext);
        return 0;
    case QC_NORMAL:
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED;
        set_host(s, &r, ext);
        return s->prealloc_meta ? recurse_file(s, ext, errp) : 0;
    case QC_COMPRESSED:
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_COMPRESSED;
        return 0;
    }
    return qcow2_corrupt(s, errp, "Invalid cluster entry at guest offset %#" PRIx64, offset);
}
