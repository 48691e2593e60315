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
 * of the current mapping, or nothing when the new host clusters read as
 * zeroes already (tail.c) and so did the guest view.  With extended L2
 * entries only the touched subclusters are allocated in a fresh cluster.
 *
 * Requests through the callbacks (qcow2_write_unlocking) transfer data
 * without the lock wherever the metadata allows: plain overwrites, and
 * writes into fresh clusters (write_allocating; see "Thread model" in
 * qcow2.h for how they are linked and who waits for them).
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

/* ------------------------------------------------------------ decompression */

/* Per-thread decompression state: concurrent reads decompress in
 * parallel, each in its own buffers.  The last cluster decompressed for
 * a partial read is kept, so that small sequential reads of one
 * compressed cluster decompress it once.  It is valid for reads of image
 * `image` that looked their mapping up while s->cgen was `gen` (the
 * generation changes whenever a compressed cluster may have been freed,
 * so an equal L2 entry then still names the same bytes). */
struct dctx {
    uint64_t image, gen, l2e;   /* what `out` holds; image 0: nothing */
    uint64_t cap;               /* cluster size the buffers are made for */
    uint8_t *in, *out;
};

static void dctx_free(gpointer p)
{
    struct dctx *d = p;
    g_free(d->in);
    g_free(d->out);
    g_free(d);
}

static GPrivate dctx_key = G_PRIVATE_INIT(dctx_free);

static struct dctx *dctx_get(uint64_t cluster_size, GError **errp)
{
    struct dctx *d = g_private_get(&dctx_key);
    if (!d) {
        d = g_new0(struct dctx, 1);
        g_private_set(&dctx_key, d);
    }
    if (d->cap < cluster_size) {
        g_free(d->in);
        g_free(d->out);
        d->image = 0;
        d->in = g_try_malloc(2 * cluster_size + 512);
        d->out = g_try_malloc(cluster_size);
        d->cap = d->in && d->out ? cluster_size : 0;
        if (!d->cap) {
            qcow2_enomem(errp);
            return NULL;
        }
    }
    return d;
}

/* Lock held: the descriptor must point inside the image's limits. */
static int check_compressed(struct qcow2 *s, uint64_t l2e, GError **errp)
{
    uint64_t off, len;
    qcow2_compressed_span(s, l2e, &off, &len);
    if (!off || len > 2 * s->cluster_size)
        return qcow2_corrupt(s, errp, "Invalid compressed cluster descriptor %#" PRIx64, l2e);
    return 0;
}

/* Unlocked: the cluster of (checked) descriptor l2e into out. */
static int decompress_cluster(struct qcow2 *s, uint64_t l2e, uint8_t *in, uint8_t *out,
                              GError **errp)
{
    uint64_t off, len;
    qcow2_compressed_span(s, l2e, &off, &len);
    if (diskimg_node_pread(s->file, in, len, off, errp) < 0)
        return -1;
    enum diskimg_codec codec = s->h.compression_type == QCOW2_COMPRESSION_ZSTD
                               ? DISKIMG_CODEC_ZSTD : DISKIMG_CODEC_DEFLATE;
    /* exactly one cluster: qemu cuts a stream that inflates past it short,
     * we call it corrupt (no writer produces one) */
    if (diskimg_decompress_exact(codec, in, len, out, s->cluster_size, errp) < 0) {
        g_prefix_error(errp, "%s: compressed cluster at %#" PRIx64 ": ", s->filename, off);
        return -1;
    }
    return 0;
}

/* Unlocked: guest [off, off+len) of compressed run r, looked up at
 * generation gen.  Whole clusters go straight into the caller's buffer. */
static int read_compressed(struct qcow2 *s, const struct qcow2_run *r, uint64_t gen,
                           uint8_t *buf, uint64_t off, GError **errp)
{
    struct dctx *d = dctx_get(s->cluster_size, errp);
    if (!d)
        return -1;
    uint64_t into = qcow2_offset_into_cluster(s, off);
    bool cached = d->image == s->id && d->gen == gen && d->l2e == r->l2e;
    if (!cached && into == 0 && r->len == s->cluster_size)
        return decompress_cluster(s, r->l2e, d->in, buf, errp);
    if (!cached) {
        d->image = 0;
        if (decompress_cluster(s, r->l2e, d->in, d->out, errp) < 0)
            return -1;
        d->image = s->id;
        d->gen = gen;
        d->l2e = r->l2e;
    }
    memcpy(buf, d->out + into, r->len);
    return 0;
}

/* ------------------------------------------------------------ reads */

/* Lock held: the run at off, validated so that reading it needs no
 * metadata (and no corruption report) any more. */
static int map_for_read(struct qcow2 *s, uint64_t off, uint64_t len, struct qcow2_run *r,
                        GError **errp)
{
    if (qcow2_map_run(s, off, len, r, errp) < 0)
        return -1;
    switch (r->type) {
    case QC_UNALLOC:
    case QC_UNALLOC_ALLOC:
    case QC_ZERO_PLAIN:
    case QC_ZERO_ALLOC:
    case QC_NORMAL:
        return 0;
    case QC_COMPRESSED:
        return check_compressed(s, r->l2e, errp);
    }
    return qcow2_corrupt(s, errp, "Invalid cluster entry at guest offset %#" PRIx64, off);
}

/* May run unlocked: touches only what stays fixed while transfers run
 * (the nodes, the cipher, settings that only exclusive operations change). */
static int read_run(struct qcow2 *s, const struct qcow2_run *r, uint64_t gen, uint8_t *buf,
                    uint64_t off, GError **errp)
{
    switch (r->type) {
    case QC_UNALLOC:
    case QC_UNALLOC_ALLOC:
        if (!s->node) {
            memset(buf, 0, r->len);
            return 0;
        }
        return diskimg_node_read_backing(s->node, buf, r->len, off, errp);
    case QC_NORMAL:
        return data_read(s, buf, r->len, r->host, off, errp);
    case QC_COMPRESSED:
        return read_compressed(s, r, gen, buf, off, errp);
    default:    /* zeroes; map_for_read let nothing else through */
        memset(buf, 0, r->len);
        return 0;
    }
}

/* One run of a read: looked up with the lock held; transferred with it
 * released when `unlock` (see qcow2.h).  *done: bytes of the run. */
static int read_one_run(struct qcow2 *s, uint8_t *buf, uint64_t len, uint64_t off, bool unlock,
                        uint64_t *done, GError **errp)
{
    struct qcow2_run r;
    if (unlock)
        diskimg_tracker_io_admit(s->tracker);
    if (map_for_read(s, off, len, &r, errp) < 0)
        return -1;
    uint64_t gen = s->cgen;
    if (unlock)
        diskimg_tracker_io_begin(s->tracker);
    int ret = read_run(s, &r, gen, buf, off, errp);
    if (unlock)
        diskimg_tracker_io_end(s->tracker);
    *done = r.len;
    return ret;
}

/* Reads what the guest sees at [off, off+len); zeroes past the end. */
static int read_range(struct qcow2 *s, uint8_t *buf, uint64_t len, uint64_t off, bool unlock,
                      GError **errp)
{
    /* encrypted: whole sectors only (the size qemu and get_size use) */
    uint64_t size = encrypted(s) ? s->h.size & ~(uint64_t)(QCOW2_CRYPT_SECTOR - 1) : s->h.size;
    if (off + len > size) {
        uint64_t in = off < size ? size - off : 0;
        memset(buf + in, 0, len - in);
        len = in;
    }
    while (len) {
        uint64_t n;
        if (read_one_run(s, buf, len, off, unlock, &n, errp) < 0)
            return -1;
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

static bool sector_aligned(const struct qcow2 *s, uint64_t off, uint64_t len)
{
    return !encrypted(s) || !((off | len) & (QCOW2_CRYPT_SECTOR - 1));
}

/* read_range for any range: partial sectors of encrypted images go
 * through a sector buffer. */
static int read_guest(struct qcow2 *s, uint8_t *buf, uint64_t len, uint64_t off, bool unlock,
                      GError **errp)
{
    if (sector_aligned(s, off, len))
        return read_range(s, buf, len, off, unlock, errp);
    uint8_t *sec = diskimg_alloc_aligned(QCOW2_CRYPT_SECTOR);
    if (!sec)
        return qcow2_enomem(errp);
    int ret = 0;
    uint64_t head = off & (QCOW2_CRYPT_SECTOR - 1);
    if (head) {
        uint64_t n = MIN(len, QCOW2_CRYPT_SECTOR - head);
        ret = read_range(s, sec, QCOW2_CRYPT_SECTOR, off - head, unlock, errp);
        if (ret == 0)
            memcpy(buf, sec + head, n);
        buf += n;
        off += n;
        len -= n;
    }
    uint64_t mid = len & ~(uint64_t)(QCOW2_CRYPT_SECTOR - 1);
    if (ret == 0 && mid)
        ret = read_range(s, buf, mid, off, unlock, errp);
    if (ret == 0 && len > mid) {
        ret = read_range(s, sec, QCOW2_CRYPT_SECTOR, off + mid, unlock, errp);
        if (ret == 0)
            memcpy(buf + mid, sec, len - mid);
    }
    diskimg_free_aligned(sec);
    return ret;
}

int qcow2_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    return read_guest(h, buf, len, offset, false, errp);
}

int qcow2_read_unlocking(struct qcow2 *s, void *buf, uint64_t len, uint64_t offset,
                         GError **errp)
{
    return read_guest(s, buf, len, offset, true, errp);
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

static int reads_zero(struct qcow2 *s, uint64_t off, uint64_t len, bool *zero, GError **errp);

/* How the part of a new cluster that a write leaves out gets what the
 * guest saw there: nothing to do (the host bytes read as zeroes already),
 * a zero write, or a copy (backing file, old data; always for encrypted
 * images, whose zeroes are ciphertext). */
enum fill { FILL_NONE, FILL_ZEROES, FILL_COPY };

/* Lock held: the fill of guest [off, off+len); host_zero tells whether
 * its host bytes read as zeroes.  A view of zeroes needs no buffer (as
 * qemu's is_zero_cow), and no lock to write. */
static int fill_kind(struct qcow2 *s, uint64_t off, uint64_t len, bool host_zero,
                     enum fill *f, GError **errp)
{
    bool zero = false;
    *f = FILL_NONE;
    if (len == 0)
        return 0;
    if (!encrypted(s) && reads_zero(s, off, len, &zero, errp) < 0)
        return -1;
    *f = !zero ? FILL_COPY : host_zero ? FILL_NONE : FILL_ZEROES;
    return 0;
}

/* Fills host [host, host+len) for guest [off, off+len); FILL_COPY reads
 * the guest view and needs the lock, the others not. */
static int do_fill(struct qcow2 *s, enum fill f, uint64_t off, uint64_t len, uint64_t host,
                   GError **errp)
{
    if (f == FILL_NONE)
        return 0;
    if (f == FILL_ZEROES)
        return diskimg_node_write_zeroes(s->data, host, len, 0, errp);
    uint8_t *b = diskimg_alloc_aligned(len);
    if (!b)
        return qcow2_enomem(errp);
    int ret = read_range(s, b, len, off, false, errp);
    if (ret == 0)
        ret = data_write_scratch(s, b, len, host, off, errp);
    diskimg_free_aligned(b);
    return ret;
}

/* Lock held: copies the current guest view of [off, off+len) to `host`. */
static int fill(struct qcow2 *s, uint64_t off, uint64_t len, uint64_t host, GError **errp)
{
    enum fill f;
    if (fill_kind(s, off, len, false, &f, errp) < 0)
        return -1;
    return do_fill(s, f, off, len, host, errp);
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

/* The new mapping is durable before the old clusters are freed, and
 * no transfer still using them (looked up before the change) is running. */
static int freelist_release(struct qcow2 *s, struct freelist *f, GError **errp)
{
    int ret = 0;
    if (f->n && diskimg_mcache_flush(s->l2c, errp) < 0)
        ret = -1;
    if (f->n && ret == 0)
        diskimg_tracker_drain_for_free(s->tracker);
    for (size_t i = 0; i < f->n && ret == 0; i++)
        ret = qcow2_free_entry(s, f->e[i], errp);
    if (f->n)
        s->cgen++;      /* freed compressed clusters may be rewritten */
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
        diskimg_mcache_mark_dirty(s->l2c, w->l2);
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

/* k clusters from guest cstart that all get new storage: the host
 * clusters, the part [a, b) the write covers, and the fills [lo, a) and
 * [b, hi) around it. */
struct newrun {
    uint64_t cstart, k, host;
    uint64_t a, b, lo, hi;
    bool whole_first, whole_last;   /* first/last cluster had data: fill it whole */
    enum fill head, tail;
    bool early;             /* may be linked before the data is written */
};

/* Lock held: allocates the run's clusters and decides its fills. */
static int plan_new(struct wctx *w, uint64_t cstart, uint64_t k, struct newrun *nr,
                    GError **errp)
{
    struct qcow2 *s = w->s;
    uint64_t cs = s->cluster_size, end = cstart + k * cs, ignore;
    uint64_t idx0 = (cstart >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t old_end = s->end_cluster << s->cluster_bits;
    bool host_zero = false;
    *nr = (struct newrun){ .cstart = cstart, .k = k, .a = MAX(w->off, cstart),
                           .b = MIN(w->end, end) };
    nr->whole_first = entry_has_data(s, qcow2_l2_entry(s, w->l2, idx0));
    nr->whole_last = entry_has_data(s, qcow2_l2_entry(s, w->l2, idx0 + k - 1));
    if (s->ext_data) {
        nr->host = cstart;
    } else {
        if (qcow2_alloc_clusters(s, k, &nr->host, errp) < 0)
            return -1;
        host_zero = qcow2_tail_reserve(s, nr->host, k * cs, old_end);
    }
    fill_bounds(s, cstart, nr->a, MIN(nr->b, cstart + cs), nr->whole_first, &nr->lo, &ignore);
    fill_bounds(s, end - cs, MAX(nr->a, end - cs), nr->b, nr->whole_last, &ignore, &nr->hi);
    if (fill_kind(s, nr->lo, nr->a - nr->lo, host_zero, &nr->head, errp) < 0 ||
        fill_kind(s, nr->b, nr->hi - nr->b, host_zero, &nr->tail, errp) < 0)
        return -1;
    /* Host clusters of zeroes where the guest saw zeroes: linked at once,
     * the entries expose nothing but what the guest saw, and the data
     * write is a plain overwrite (extended L2 entries would claim the
     * subclusters the write does not touch). */
    return host_zero && !s->ext_l2 ? reads_zero(s, cstart, end - cstart, &nr->early, errp) : 0;
}

/* The fills and the data; without FILL_COPY it needs no lock. */
static int transfer_new(struct wctx *w, const struct newrun *nr, GError **errp)
{
    struct qcow2 *s = w->s;
    uint64_t host = nr->host - nr->cstart;     /* + guest offset = host offset */
    if (do_fill(s, nr->head, nr->lo, nr->a - nr->lo, host + nr->lo, errp) < 0 ||
        data_write(s, w->buf + (nr->a - w->off), nr->b - nr->a, host + nr->a, nr->a, errp) < 0)
        return -1;
    return do_fill(s, nr->tail, nr->b, nr->hi - nr->b, host + nr->b, errp);
}

/* Lock held, w->l2 pinned: points the run's L2 entries at its clusters. */
static void link_new(struct wctx *w, const struct newrun *nr)
{
    struct qcow2 *s = w->s;
    uint64_t cs = s->cluster_size, idx0 = (nr->cstart >> s->cluster_bits) & (s->l2_entries - 1);
    for (uint64_t j = 0; j < nr->k; j++) {
        uint64_t c = nr->cstart + j * cs;
        bool whole = (j == 0 && nr->whole_first) || (j == nr->k - 1 && nr->whole_last) ||
                     (MAX(nr->a, c) == c && MIN(nr->b, c + cs) == c + cs);
        new_entry(w, idx0 + j, nr->host + j * cs, MAX(nr->a, c), MIN(nr->b, c + cs), whole);
    }
    diskimg_mcache_mark_dirty(s->l2c, w->l2);
}

/* Writes k clusters starting at cstart that all need new storage. */
static int write_new(struct wctx *w, uint64_t cstart, uint64_t k, GError **errp)
{
    struct newrun nr;
    if (plan_new(w, cstart, k, &nr, errp) < 0 || transfer_new(w, &nr, errp) < 0)
        return -1;
    link_new(w, &nr);
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
    diskimg_mcache_put(s->l2c, w->l2);
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
        qcow2_alloc_wait_all(s, off, n);
        int ret = write_table(&w, errp);
        if (freelist_release(s, &w.freed, ret < 0 ? NULL : errp) < 0 && ret == 0)
            ret = -1;
        if (ret < 0)
            return -1;
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
    /* what is read must still be there when written back */
    qcow2_alloc_wait_all(s, start, QCOW2_CRYPT_SECTOR);
    if (read_range(s, sec, QCOW2_CRYPT_SECTOR, start, false, errp) < 0)
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

static int write_done(struct qcow2 *s, unsigned flags, GError **errp)
{
    if (flags & DISKIMG_WRITE_FUA)
        return qcow2_flush_metadata(s, errp) < 0 ? -1 : diskimg_node_flush(s->data, errp);
    return 0;
}

int qcow2_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                GError **errp)
{
    struct qcow2 *s = h;
    if (writable(s, errp) < 0 || qcow2_bitmaps_mark(s, offset, len, errp) < 0 ||
        write_guest(s, buf, len, offset, errp) < 0)
        return -1;
    return write_done(s, flags, errp);
}

/* ------------------------------------------------------------ unlocked overwrites */

/* Can [a, b) of guest cluster entry (e, bm) be overwritten where it is
 * with no metadata change at all?  Then the data needs no lock. */
static bool plain_overwrite(const struct qcow2 *s, uint64_t e, uint64_t bm, uint64_t a,
                            uint64_t b)
{
    if (!in_place(s, e))
        return false;
    if (!s->ext_l2)
        return !(e & QCOW2_OFLAG_ZERO);
    return !(sub_mask(s, a, b) & ~bm & 0xffffffffull);
}

/* A stretch of a write: plain overwrites at contiguous host offsets from
 * `host` (fast), or clusters that need the locked write path. */
struct stretch {
    bool fast;
    uint64_t host;
    uint64_t len;
};

/* Extends st over the clusters of table l2 (index idx0 at guest c0) from
 * off to end while they are of the same kind (and contiguous when fast). */
static void extend_stretch(const struct qcow2 *s, const uint8_t *l2, uint64_t idx0,
                           uint64_t c0, uint64_t off, uint64_t end, struct stretch *st)
{
    for (uint64_t pos = off; pos < end;) {
        uint64_t cstart = qcow2_align_down(s, pos), b = MIN(end, cstart + s->cluster_size);
        uint64_t idx = idx0 + ((cstart - c0) >> s->cluster_bits);
        uint64_t e = qcow2_l2_entry(s, l2, idx), bm = qcow2_l2_bitmap(s, l2, idx);
        uint64_t host = (s->ext_data ? cstart : (e & QCOW2_OFFSET_MASK)) + (pos - cstart);
        bool fast = plain_overwrite(s, e, bm, pos, b) &&
                    !qcow2_offset_into_cluster(s, host - (pos - cstart));
        if (pos == off) {
            st->fast = fast;
            st->host = host;
        } else if (fast != st->fast || (fast && host != st->host + (pos - off))) {
            break;
        }
        pos = b;
        st->len = pos - off;
    }
}

/* Lock held: the stretch of [off, off+len) starting at off, within one L2
 * table.  Only tables the active L1 owns (COPIED) qualify for the fast
 * path; the locked path copies shared ones first. */
static int next_stretch(struct qcow2 *s, uint64_t off, uint64_t len, struct stretch *st,
                        GError **errp)
{
    uint64_t end = MIN(off + len, table_end(s, off)), l1i = off >> (s->cluster_bits + s->l2_bits);
    *st = (struct stretch){ .fast = false, .len = end - off };
    if (l1i >= s->l1_size || !(s->l1[l1i] & QCOW2_OFLAG_COPIED))
        return 0;
    uint8_t *l2;
    uint64_t idx;
    if (qcow2_l2_table(s, off, false, &l2, &idx, errp) < 0)
        return -1;
    if (!l2)
        return 0;
    extend_stretch(s, l2, idx, qcow2_align_down(s, off), off, end, st);
    diskimg_mcache_put(s->l2c, l2);
    return 0;
}

/* ------------------------------------------------------------ unlocked allocation */

/* Clusters without storage (unallocated, zero flag): new storage frees
 * nothing.  Counts the leading clusters of table l2 from guest off up to
 * end that are fresh (or, with !want, that are not). */
static uint64_t leading_fresh(const struct qcow2 *s, const uint8_t *l2, uint64_t off,
                              uint64_t end, bool want)
{
    uint64_t cstart = qcow2_align_down(s, off), k = 0;
    uint64_t idx = (cstart >> s->cluster_bits) & (s->l2_entries - 1);
    while (cstart + k * s->cluster_size < end &&
           !entry_has_data(s, qcow2_l2_entry(s, l2, idx + k)) == want)
        k++;
    return k;
}

/* Lock held, w->l2 unpinned: the run's fills and data with the lock
 * released, then its L2 entries.  Requests that would change those entries
 * meanwhile wait for it (qcow2_alloc_wait); the clusters are referenced
 * already, so nothing else allocates them. */
static int transfer_unlocked(struct wctx *w, const struct newrun *nr, GError **errp)
{
    struct qcow2 *s = w->s;
    struct diskimg_claim a;
    uint64_t idx, bytes = nr->k * s->cluster_size;
    diskimg_tracker_claim(s->tracker, &a, nr->cstart, nr->cstart + bytes);
    diskimg_tracker_io_begin(s->tracker);
    int ret = transfer_new(w, nr, errp);
    diskimg_tracker_io_end(s->tracker);
    /* the data is written before an L2 entry exposes it */
    if (ret == 0)
        ret = qcow2_l2_table(s, nr->cstart, true, &w->l2, &idx, errp);
    if (ret == 0) {
        link_new(w, nr);
        diskimg_mcache_put(s->l2c, w->l2);
    } else if (!s->ext_data) {
        /* nothing points at the clusters: give them back */
        (void)qcow2_update_refcount(s, nr->host, bytes, -1, NULL);
    }
    diskimg_tracker_release(s->tracker, &a);
    return ret;
}

/* Lock held, w->l2 pinned (put here): k fresh clusters from guest cstart.
 * The data goes without the lock unless a fill must copy guest data. */
static int write_fresh(struct wctx *w, uint64_t cstart, uint64_t k, GError **errp)
{
    struct qcow2 *s = w->s;
    struct newrun nr;
    int ret = plan_new(w, cstart, k, &nr, errp);
    bool locked = nr.head == FILL_COPY || nr.tail == FILL_COPY;
    if (ret == 0 && locked)
        ret = transfer_new(w, &nr, errp);
    if (ret == 0 && (locked || nr.early))
        link_new(w, &nr);
    diskimg_mcache_put(s->l2c, w->l2);
    if (ret < 0 || locked)
        return ret;
    if (!nr.early)
        return transfer_unlocked(w, &nr, errp);
    /* linked already: a plain overwrite */
    diskimg_tracker_io_begin(s->tracker);
    ret = transfer_new(w, &nr, errp);
    diskimg_tracker_io_end(s->tracker);
    return ret;
}

/* Lock held: [off, off+len), within one L2 table, holds no plain
 * overwrite.  Its leading fresh clusters go through write_fresh, leading
 * clusters that are not fresh through write_range.  *done: the bytes
 * written, 0 after waiting for an allocation in flight there. */
static int write_allocating(struct qcow2 *s, const uint8_t *buf, uint64_t len, uint64_t off,
                            uint64_t *done, GError **errp)
{
    struct wctx w = { .s = s, .buf = buf, .off = off, .end = off + len };
    uint64_t idx, cstart = qcow2_align_down(s, off);
    *done = 0;
    if (qcow2_alloc_wait(s, off, len))
        return 0;
    if (qcow2_l2_table(s, off, true, &w.l2, &idx, errp) < 0)
        return -1;
    uint64_t k = leading_fresh(s, w.l2, off, w.end, true);
    bool fresh = k > 0;
    if (!fresh)
        k = leading_fresh(s, w.l2, off, w.end, false);
    *done = MIN(w.end, cstart + k * s->cluster_size) - off;
    w.end = off + *done;
    if (fresh)
        return write_fresh(&w, cstart, k, errp);
    diskimg_mcache_put(s->l2c, w.l2);
    return write_range(s, buf, *done, off, errp);
}

/* Sector-aligned [off, off+len): plain overwrites transfer unlocked, the
 * rest goes through write_allocating, stretch by stretch. */
static int write_stretches(struct qcow2 *s, const uint8_t *buf, uint64_t len, uint64_t off,
                           GError **errp)
{
    while (len) {
        struct stretch st;
        diskimg_tracker_io_admit(s->tracker);
        if (next_stretch(s, off, len, &st, errp) < 0)
            return -1;
        int ret;
        uint64_t done = st.len;
        if (st.fast) {
            diskimg_tracker_io_begin(s->tracker);
            ret = data_write(s, buf, st.len, st.host, off, errp);
            diskimg_tracker_io_end(s->tracker);
        } else {
            ret = write_allocating(s, buf, st.len, off, &done, errp);
        }
        if (ret < 0)
            return -1;
        buf += done;
        off += done;
        len -= done;
    }
    return 0;
}

int qcow2_write_unlocking(struct qcow2 *s, const void *buf, uint64_t len, uint64_t offset,
                          unsigned flags, GError **errp)
{
    if (writable(s, errp) < 0 || qcow2_bitmaps_mark(s, offset, len, errp) < 0)
        return -1;
    /* partial sectors of encrypted images: read-modify-write, locked */
    int ret = sector_aligned(s, offset, len) ? write_stretches(s, buf, len, offset, errp)
                                             : write_guest(s, buf, len, offset, errp);
    return ret < 0 ? -1 : write_done(s, flags, errp);
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
        diskimg_mcache_put(s->l2c, *l2);
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
        qcow2_alloc_wait_all(s, off, n);
        if (table_for_update(s, off, zero, &l2, &idx, errp) < 0)
            return -1;
        for (uint64_t c = 0; l2 && c < (n >> s->cluster_bits); c++) {
            uint64_t e = qcow2_l2_entry(s, l2, idx + c), bm;
            uint64_t ne = zeroed_entry(s, e, zero, unmap, &bm);
            if (ne == e && bm == qcow2_l2_bitmap(s, l2, idx + c))
                continue;
            qcow2_l2_set(s, l2, idx + c, ne, bm);
            diskimg_mcache_mark_dirty(s->l2c, l2);
            if (entry_has_data(s, e) && !(ne & QCOW2_OFFSET_MASK) && !s->ext_data)
                freelist_add(&freed, e);
        }
        if (l2)
            diskimg_mcache_put(s->l2c, l2);
        if (freelist_release(s, &freed, errp) < 0)
            return -1;
        off += n;
    }
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
    qcow2_alloc_wait_all(s, offset, s->cluster_size);
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
        diskimg_mcache_mark_dirty(s->l2c, l2);
    }
    diskimg_mcache_put(s->l2c, l2);
    if (ret == 0 && entry_has_data(s, old)) {
        struct freelist f = { 0 };
        freelist_add(&f, old);
        ret = freelist_release(s, &f, errp);
    }
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

/* Compression needs no lock (see qcow2_compress); with `unlock` it runs
 * with the lock released so that requests overlap with it. */
static int write_compressed(struct qcow2 *s, const void *buf, uint64_t len, uint64_t offset,
                            bool unlock, GError **errp)
{
    if (check_compressed_write(s, len, offset, errp) < 0)
        return -1;
    uint8_t *out = g_malloc(s->cluster_size);
    if (unlock)
        diskimg_tracker_unlock(s->tracker);
    int64_t clen = qcow2_compress(s, buf, len, out, s->cluster_size, errp);
    if (unlock)
        diskimg_tracker_lock(s->tracker);
    /* the image may have been found corrupt meanwhile */
    int ret = clen < 0 || writable(s, errp) < 0 ? -1 : 0;
    if (ret == 0 && clen == 0)   /* incompressible: stored normally */
        ret = write_range(s, buf, len, offset, errp);
    else if (ret == 0)
        ret = store_compressed(s, offset, out, (uint64_t)clen, errp);
    g_free(out);
    return ret;
}

int qcow2_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                           GError **errp)
{
    return write_compressed(h, buf, len, offset, false, errp);
}

int qcow2_write_compressed_unlocking(struct qcow2 *s, const void *buf, uint64_t len,
                                     uint64_t offset, GError **errp)
{
    return write_compressed(s, buf, len, offset, true, errp);
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
    struct diskimg_extent f = { .struct_size = sizeof(f) };
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
