/* SPDX-License-Identifier: MIT */
/*
 * The copy engine behind convert, dd, commit and rebase: a small pipeline.
 *
 *   producer (calling thread)          workers (-m of them)
 *   -------------------------          ------------------------------------
 *   walks the sources by block         take an item, read it (or hand it to
 *   status; holes and known-zero       copy offload), split it into data and
 *   ranges never become reads;         zero runs (-S), compress whole clusters
 *   cuts the rest into items of        in parallel (-c), then wait for their
 *   at most 2 MiB, numbered in         turn and write (in item order, unless
 *   order                              -W lets them write as soon as ready)
 *
 * At most 2 x -m items exist at once, so memory is bounded by the number of
 * workers times the chunk size, whatever the image size.
 *
 * Progress: by default every byte of the range counts, skipped ones too (the
 * bar moves evenly over the disk; commit and rebase, as their qemu-img
 * counterparts).  With progress_counts_work only the bytes that become items
 * count, and diskimg_copy_work() gives their total beforehand by walking
 * block status as produce() does without making items: the bar then tracks
 * the work that takes time, as qemu-img convert's does.
 *
 * What the producer walks depends on the command:
 *   convert, dd   the guest view of the whole source chain (or its top layer
 *                 only, top_only), every range copied;
 *   commit        `base`: only ranges some layer above base allocates; the
 *                 rest is already in base (or below it) and is skipped;
 *   rebase        `only_unallocated` + `differences_against`: only ranges
 *                 the image itself does not allocate, and of those only the
 *                 512-byte sectors where the old chain (the source) and the
 *                 new backing differ are written; ranges both sides report
 *                 as zeroes are skipped unread.
 * Source and target may be one node (rebase): items cover disjoint ranges,
 * and a write that allocates a cluster copies in what the old chain shows,
 * which is what a concurrent read of its neighbour returns anyway.
 *
 * A sink (checksum) replaces the target: the same walk and the same workers,
 * items aligned to the sink's block size as they are to clusters for -c;
 * the sink's process step runs where compression would (in parallel, before
 * the item's turn) and its commit step where the write would (in order).
 */
#include <string.h>

#include "internal.h"

#define CHUNK_SIZE DISKIMG_COPY_MAX_DATA /* bytes per item; a multiple of every cluster size */
#define SALVAGE_SECTOR 512
#define COMPARE_SECTOR 512         /* rebase compares (and writes) whole sectors, as qemu-img */
#define MAX_WORKERS 64

struct item {
    uint64_t seq;
    bool zero;                     /* write zeroes (the target may not read zero) */
    diskimg_node *src;
    uint64_t soff, toff, len;
    diskimg_node *host;            /* where the source bytes lie, for copy offload */
    uint64_t host_off;
    void *result;                  /* the sink's, from process to commit */
};

struct pipeline {
    const struct diskimg_copy_params *p;
    uint64_t cluster_size;         /* target's, for -c */
    uint64_t align;                /* items start on multiples of this: -c's cluster
                                      size, the sink's block size; 0 = anywhere */
    bool has_sink;
    struct diskimg_copy_sink sink; /* the caller's, copied to the size we know */
    bool parallel_compress;        /* the target compresses outside its lock */
    unsigned workers;
    unsigned max_items;
    bool comparing;                /* write only where the source differs from a reference */
    uint64_t ref_size;             /* size of differences_against */
    bool measuring;                /* diskimg_copy_work: add up items, make none */
    uint64_t work;                 /* what measuring added up */

    GMutex lock;
    GCond cond;
    GQueue queue;                  /* struct item *, produced, not taken yet */
    unsigned items;                /* produced and not finished */
    uint64_t next_write;           /* seq of the item whose turn it is */
    bool produced_all;
    GError *error;                 /* first error; stops everyone */

    GMutex rate_lock;
    gint64 rate_start;
    uint64_t rate_bytes;
};

struct worker {
    struct pipeline *pl;
    GThread *thread;
    uint8_t *buf;                  /* CHUNK_SIZE */
    uint8_t *ref;                  /* CHUNK_SIZE: the reference's bytes, when comparing */
    uint8_t *cbuf;                 /* compressed clusters of the current item */
    int64_t *clen;                 /* per cluster: stored length, 0 = not compressed */
};

/* ------------------------------------------------------------------ errors */

static bool failed(struct pipeline *pl)
{
    g_mutex_lock(&pl->lock);
    bool f = pl->error != NULL;
    g_mutex_unlock(&pl->lock);
    return f;
}

static void fail(struct pipeline *pl, GError *err)
{
    g_mutex_lock(&pl->lock);
    if (!pl->error)
        pl->error = err;
    else
        g_error_free(err);
    g_cond_broadcast(&pl->cond);
    g_mutex_unlock(&pl->lock);
}

/* -------------------------------------------------------------- writing */

static void rate_limit(struct pipeline *pl, uint64_t bytes)
{
    uint64_t rate = pl->p->rate_limit;
    if (!rate)
        return;
    g_mutex_lock(&pl->rate_lock);
    pl->rate_bytes += bytes;
    gint64 due = pl->rate_start + (gint64)((long double)pl->rate_bytes * G_USEC_PER_SEC / rate);
    g_mutex_unlock(&pl->rate_lock);
    gint64 now = g_get_monotonic_time();
    if (due > now)
        g_usleep((gulong)(due - now));
}

/* Zeroes are skipped when the target already reads zero; -S 0 asks for a
 * fully allocated target, so there zeroes are written, not punched. */
static bool zeroes_are_free(const struct diskimg_copy_params *p)
{
    return p->target_is_zero && !p->target_has_backing && p->sparse_size;
}

/* -S 0: zeroes are written as data, as qemu-img does, so that every byte
 * is allocated (a zero-range request would leave holes or zero clusters). */
static int write_zero_data(struct pipeline *pl, uint64_t toff, uint64_t len, GError **errp)
{
    const uint64_t chunk = 1024 * 1024;
    g_autofree uint8_t *zeroes = g_malloc0(MIN(len, chunk));
    for (uint64_t done = 0; done < len;) {
        uint64_t n = MIN(chunk, len - done);
        rate_limit(pl, n);
        if (diskimg_node_pwrite(pl->p->target, zeroes, n, toff + done, 0, errp) < 0)
            return -1;
        done += n;
    }
    return 0;
}

static int write_zero_range(struct pipeline *pl, uint64_t toff, uint64_t len, GError **errp)
{
    const struct diskimg_copy_params *p = pl->p;
    if (zeroes_are_free(p))
        return 0;
    if (!p->sparse_size)
        return write_zero_data(pl, toff, len, errp);
    return diskimg_node_write_zeroes(p->target, toff, len, DISKIMG_WRITE_MAY_UNMAP, errp);
}

static int write_data(struct pipeline *pl, const uint8_t *buf, uint64_t toff, uint64_t len,
                      GError **errp)
{
    rate_limit(pl, len);
    return diskimg_node_pwrite(pl->p->target, buf, len, toff, 0, errp);
}

/* Splits data into data runs and zero runs of sparse_size blocks, aligned
 * to the target so holes land on whole blocks. */
static int write_sparse(struct pipeline *pl, const uint8_t *buf, uint64_t toff, uint64_t len,
                        GError **errp)
{
    uint64_t block = pl->p->sparse_size;
    if (block == 0)
        return write_data(pl, buf, toff, len, errp);
    uint64_t pos = 0;
    /* A piece shorter than a block counts as a hole only at the item's
     * edges (where what lies beyond is another item, or the image's end),
     * as qemu-img's zero scan does; inside an item a short zero run is
     * data, so that holes stay whole blocks. */
#define ZERO_PIECE(at, n) (((n) == block || (at) == 0 || (at) + (n) == len) && \
                           diskimg_is_zero(buf + (at), (n)))
    while (pos < len) {
        uint64_t n = MIN(block - (toff + pos) % block, len - pos);
        bool zero = ZERO_PIECE(pos, n);
        uint64_t run = n;
        while (pos + run < len) {
            uint64_t m = MIN(block, len - pos - run);
            if (ZERO_PIECE(pos + run, m) != zero)
                break;
            run += m;
        }
        int ret = zero ? write_zero_range(pl, toff + pos, run, errp)
                       : write_data(pl, buf + pos, toff + pos, run, errp);
        if (ret < 0)
            return -1;
        pos += run;
    }
#undef ZERO_PIECE
    return 0;
}

/* ---------------------------------------------------------- compression */

static uint64_t cluster_len(struct pipeline *pl, const struct item *it, uint64_t pos)
{
    uint64_t cs = pl->cluster_size;
    return MIN(cs - (it->toff + pos) % cs, it->len - pos);
}

/* Worker side, no lock held: compress every non-zero whole cluster. */
static int compress_item(struct worker *w, const struct item *it, GError **errp)
{
    struct pipeline *pl = w->pl;
    uint64_t cs = pl->cluster_size;
    size_t i = 0;
    for (uint64_t pos = 0; pos < it->len; pos += cluster_len(pl, it, pos), i++) {
        uint64_t n = cluster_len(pl, it, pos);
        w->clen[i] = 0;
        if ((it->toff + pos) % cs || diskimg_is_zero(w->buf + pos, n))
            continue;
        int64_t got = diskimg_node_compress(pl->p->target, w->buf + pos, n, w->cbuf + pos, cs,
                                            errp);
        if (got < 0)
            return -1;
        w->clen[i] = got;
    }
    return 0;
}

/* Writer side, in turn: store each cluster the best way we can. */
static int write_compressed_item(struct worker *w, const struct item *it, GError **errp)
{
    struct pipeline *pl = w->pl;
    diskimg_node *t = pl->p->target;
    size_t i = 0;
    for (uint64_t pos = 0; pos < it->len; pos += cluster_len(pl, it, pos), i++) {
        uint64_t n = cluster_len(pl, it, pos), toff = it->toff + pos;
        const uint8_t *data = w->buf + pos;
        int ret;
        if (diskimg_is_zero(data, n)) {
            ret = write_zero_range(pl, toff, n, errp);
        } else if (pl->parallel_compress && w->clen[i] > 0) {
            rate_limit(pl, (uint64_t)w->clen[i]);
            ret = diskimg_node_write_precompressed(t, w->cbuf + pos, (uint64_t)w->clen[i], toff,
                                                   n, errp);
        } else if (!pl->parallel_compress && toff % pl->cluster_size == 0) {
            rate_limit(pl, n);
            ret = diskimg_node_write_compressed(t, data, n, toff, errp);
        } else {
            ret = write_data(pl, data, toff, n, errp);
        }
        if (ret < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ comparing */

/* Length of the run of whole sectors from `pos` that all differ between a
 * and b, or all match (*differs tells which).  Sectors are guest-aligned. */
static uint64_t sector_run(const uint8_t *a, const uint8_t *b, uint64_t toff, uint64_t pos,
                           uint64_t len, bool *differs)
{
    uint64_t run = 0;
    while (pos + run < len) {
        uint64_t at = pos + run;
        uint64_t n = MIN(COMPARE_SECTOR - (toff + at) % COMPARE_SECTOR, len - at);
        bool d = memcmp(a + at, b + at, n) != 0;
        if (run && d != *differs)
            break;
        *differs = d;
        run += n;
    }
    return run;
}

/* Writes the sector runs where the source (w->buf) differs from the
 * reference (w->ref); zero runs still go through the -S handling. */
static int write_differences(struct worker *w, const struct item *it, GError **errp)
{
    for (uint64_t pos = 0; pos < it->len;) {
        bool differs = false;
        uint64_t run = sector_run(w->buf, w->ref, it->toff, pos, it->len, &differs);
        if (differs && write_sparse(w->pl, w->buf + pos, it->toff + pos, run, errp) < 0)
            return -1;
        pos += run;
    }
    return 0;
}

/* --------------------------------------------------------------- reading */

/* --salvage: re-read sector by sector, unreadable sectors become zeroes. */
static void salvage_read(struct pipeline *pl, const struct item *it, uint8_t *buf)
{
    uint64_t bad = 0;
    for (uint64_t pos = 0; pos < it->len; pos += SALVAGE_SECTOR) {
        uint64_t n = MIN(SALVAGE_SECTOR, it->len - pos);
        GError *err = NULL;
        if (diskimg_node_pread(it->src, buf + pos, n, it->soff + pos, &err) < 0) {
            memset(buf + pos, 0, n);
            bad += n;
            g_error_free(err);
        }
    }
    if (bad && !pl->p->quiet)
        diskimg_warn("warning: %s: %" PRIu64 " unreadable bytes at offset %" PRIu64
                     " were replaced by zeroes", diskimg_node_filename(it->src), bad, it->soff);
}

static int read_item(struct pipeline *pl, const struct item *it, uint8_t *buf, GError **errp)
{
    if (!pl->p->salvage)
        return diskimg_node_pread(it->src, buf, it->len, it->soff, errp);
    GError *err = NULL;
    if (diskimg_node_pread(it->src, buf, it->len, it->soff, &err) == 0)
        return 0;
    g_error_free(err);
    salvage_read(pl, it, buf);
    return 0;
}

/* What the reference shows at the item's source offsets: zeroes past its
 * end, and everywhere when comparing against zeroes. */
static int read_reference(struct pipeline *pl, const struct item *it, uint8_t *buf,
                          GError **errp)
{
    diskimg_node *ref = pl->p->differences_against;
    uint64_t have = 0;
    if (ref && it->soff < pl->ref_size)
        have = MIN(it->len, pl->ref_size - it->soff);
    if (have && diskimg_node_pread(ref, buf, have, it->soff, errp) < 0)
        return -1;
    memset(buf + have, 0, it->len - have);
    return 0;
}

/* -C: let the I/O backend copy host ranges directly.  Returns 1 when the
 * whole item was copied, 0 when it must be copied by reading. */
static int try_copy_offload(struct pipeline *pl, const struct item *it, GError **errp)
{
    if (!pl->p->copy_offload || !it->host)
        return 0;
    uint64_t done = 0;
    while (done < it->len) {
        struct diskimg_extent t = { .struct_size = sizeof(t) };
        if (diskimg_node_block_status(pl->p->target, it->toff + done, it->len - done, &t,
                                      errp) < 0)
            return -1;
        if (!(t.flags & DISKIMG_BS_OFFSET_VALID) || !t.file)
            return done ? -1 : 0;
        int64_t n = diskimg_node_copy_range(it->host, it->host_off + done, t.file, t.offset,
                                            t.length, errp);
        if (n < 0)
            return -1;
        if (n == 0) {
            if (done == 0)
                return 0;
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_IO,
                        "copy offload stopped part way at offset %" PRIu64, it->toff + done);
            return -1;
        }
        done += (uint64_t)n;
    }
    return 1;
}

/* ---------------------------------------------------------------- workers */

static struct item *take_item(struct pipeline *pl)
{
    g_mutex_lock(&pl->lock);
    while (g_queue_is_empty(&pl->queue) && !pl->produced_all && !pl->error)
        g_cond_wait(&pl->cond, &pl->lock);
    struct item *it = pl->error ? NULL : g_queue_pop_head(&pl->queue);
    g_mutex_unlock(&pl->lock);
    return it;
}

/* In-order mode: block until every earlier item has been written. */
static bool wait_for_turn(struct pipeline *pl, const struct item *it)
{
    if (pl->p->out_of_order)
        return !failed(pl);
    g_mutex_lock(&pl->lock);
    while (pl->next_write != it->seq && !pl->error)
        g_cond_wait(&pl->cond, &pl->lock);
    bool ok = !pl->error;
    g_mutex_unlock(&pl->lock);
    return ok;
}

static void release_result(struct pipeline *pl, struct item *it)
{
    if (it->result && pl->sink.release)
        pl->sink.release(pl->sink.opaque, it->result);
    it->result = NULL;
}

static void finish_item(struct pipeline *pl, struct item *it)
{
    release_result(pl, it);
    g_mutex_lock(&pl->lock);
    if (!pl->p->out_of_order)
        pl->next_write = it->seq + 1;
    pl->items--;
    g_cond_broadcast(&pl->cond);
    g_mutex_unlock(&pl->lock);
    diskimg_progress_add(pl->p->progress, it->len);
    g_free(it);
}

/* ------------------------------------------------------------------ sink */

static int sink_process(struct worker *w, struct item *it, GError **errp)
{
    struct pipeline *pl = w->pl;
    if (read_item(pl, it, w->buf, errp) < 0)
        return -1;
    if (!pl->sink.process)
        return 0;
    return pl->sink.process(pl->sink.opaque, it->toff, w->buf, it->len,
                            &it->result, errp);
}

static int sink_commit(struct worker *w, const struct item *it, GError **errp)
{
    struct pipeline *pl = w->pl;
    return pl->sink.commit(pl->sink.opaque, it->toff, it->len,
                           it->zero ? NULL : w->buf, it->result, errp);
}

/* Everything a worker can do before its turn to write. */
static int prepare_item(struct worker *w, struct item *it, bool *offloaded,
                        GError **errp)
{
    *offloaded = false;
    if (it->zero)
        return 0;
    if (w->pl->has_sink)
        return sink_process(w, it, errp);
    if (w->pl->comparing)
        return read_item(w->pl, it, w->buf, errp) < 0 ? -1
                                                        : read_reference(w->pl, it, w->ref, errp);
    int r = try_copy_offload(w->pl, it, errp);
    if (r != 0) {
        *offloaded = r > 0;
        return r < 0 ? -1 : 0;
    }
    if (read_item(w->pl, it, w->buf, errp) < 0)
        return -1;
    if (w->pl->p->compress && w->pl->parallel_compress)
        return compress_item(w, it, errp);
    return 0;
}

static int write_item(struct worker *w, const struct item *it, GError **errp)
{
    if (w->pl->has_sink)
        return sink_commit(w, it, errp);
    if (it->zero)
        return write_zero_range(w->pl, it->toff, it->len, errp);
    if (w->pl->comparing)
        return write_differences(w, it, errp);
    if (w->pl->p->compress)
        return write_compressed_item(w, it, errp);
    return write_sparse(w->pl, w->buf, it->toff, it->len, errp);
}

static gpointer worker_main(gpointer data)
{
    struct worker *w = data;
    struct pipeline *pl = w->pl;
    struct item *it;
    while ((it = take_item(pl))) {
        GError *err = NULL;
        bool offloaded;
        int ret = prepare_item(w, it, &offloaded, &err);
        if (ret == 0 && wait_for_turn(pl, it) && !offloaded)
            ret = write_item(w, it, &err);
        if (ret < 0)
            fail(pl, err);
        finish_item(pl, it);
    }
    return NULL;
}

/* --------------------------------------------------------------- producer */

/* Hands an item to the workers, waiting while too many are in flight. */
static bool push_item(struct pipeline *pl, struct item *it)
{
    g_mutex_lock(&pl->lock);
    while (pl->items >= pl->max_items && !pl->error)
        g_cond_wait(&pl->cond, &pl->lock);
    bool ok = !pl->error;
    if (ok) {
        pl->items++;
        g_queue_push_tail(&pl->queue, it);
        g_cond_signal(&pl->cond);
    }
    g_mutex_unlock(&pl->lock);
    if (!ok)
        g_free(it);
    return ok;
}

enum extent_kind { EXTENT_DATA, EXTENT_ZERO, EXTENT_SKIP };

static enum extent_kind content_kind(const struct diskimg_extent *ext)
{
    return ext->flags & DISKIMG_BS_ZERO ? EXTENT_ZERO : EXTENT_DATA;
}

/* commit: the status the first layer from `top` down to `base` (exclusive)
 * that defines the range gives it; no ALLOCATED flag when none does, for
 * then base or what lies below it already holds the content.  Past the end
 * of a shorter intermediate layer the guest reads zeroes that base need not
 * have, so that counts as allocated zeroes (qemu's bdrv_is_allocated_above). */
static int status_above_base(diskimg_node *top, diskimg_node *base, uint64_t off,
                             uint64_t len, struct diskimg_extent *ext, GError **errp)
{
    for (diskimg_node *n = top; n != base; n = diskimg_node_backing(n)) {
        int64_t size = diskimg_node_size(n, errp);
        if (size < 0)
            return -1;
        if (off >= (uint64_t)size) {
            *ext = (struct diskimg_extent){ .struct_size = sizeof(*ext), .length = len,
                                            .flags = DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED };
            return 0;
        }
        if (diskimg_node_block_status(n, off, MIN(len, (uint64_t)size - off), ext, errp) < 0)
            return -1;
        if (ext->flags & DISKIMG_BS_ALLOCATED)
            return 0;
        len = ext->length;
    }
    *ext = (struct diskimg_extent){ .struct_size = sizeof(*ext), .length = len };
    return 0;
}

static int classify_above_base(struct pipeline *pl, diskimg_node *src, uint64_t off,
                               uint64_t len, struct diskimg_extent *ext,
                               enum extent_kind *kind, GError **errp)
{
    if (status_above_base(src, pl->p->base, off, len, ext, errp) < 0)
        return -1;
    *kind = ext->flags & DISKIMG_BS_ALLOCATED ? content_kind(ext) : EXTENT_SKIP;
    return 0;
}

/* Whether the reference reads as zeroes from `off` per block status, and
 * for how long (*run <= len). */
static int reference_status(struct pipeline *pl, uint64_t off, uint64_t len, bool *zero,
                            uint64_t *run, GError **errp)
{
    diskimg_node *ref = pl->p->differences_against;
    *zero = true;
    *run = len;
    if (!ref || off >= pl->ref_size)
        return 0;
    struct diskimg_extent e = { .struct_size = sizeof(e) };
    if (diskimg_node_block_status_chain(ref, off, MIN(len, pl->ref_size - off), &e, NULL,
                                        errp) < 0)
        return -1;
    *zero = (e.flags & DISKIMG_BS_ZERO) != 0;
    *run = e.length;
    return 0;
}

/* rebase: what the source's own layer allocates keeps its content whatever
 * lies below, so it is skipped; the rest shows the (old) backing chain.
 * When comparing, ranges that both the old chain and the reference report
 * as zeroes cannot differ and are skipped without reading. */
static int classify_unallocated(struct pipeline *pl, diskimg_node *src, uint64_t off,
                                uint64_t len, struct diskimg_extent *ext,
                                enum extent_kind *kind, GError **errp)
{
    int depth;
    if (diskimg_node_block_status_chain(src, off, len, ext, &depth, errp) < 0)
        return -1;
    if (depth == 0 && (ext->flags & DISKIMG_BS_ALLOCATED)) {
        *kind = EXTENT_SKIP;
        return 0;
    }
    *kind = content_kind(ext);
    if (!pl->comparing)
        return 0;
    bool ref_zero;
    if (reference_status(pl, off, ext->length, &ref_zero, &ext->length, errp) < 0)
        return -1;
    *kind = *kind == EXTENT_ZERO && ref_zero ? EXTENT_SKIP : EXTENT_DATA;
    return 0;
}

static int classify(struct pipeline *pl, diskimg_node *src, uint64_t off, uint64_t len,
                    struct diskimg_extent *ext, enum extent_kind *kind, GError **errp)
{
    const struct diskimg_copy_params *p = pl->p;
    if (p->base)
        return classify_above_base(pl, src, off, len, ext, kind, errp);
    if (p->only_unallocated)
        return classify_unallocated(pl, src, off, len, ext, kind, errp);
    int ret = p->top_only ? diskimg_node_block_status(src, off, len, ext, errp)
                          : diskimg_node_block_status_chain(src, off, len, ext, NULL, errp);
    if (ret < 0) {
        if (!p->salvage)
            return -1;
        g_clear_error(errp);
        memset(ext, 0, sizeof(*ext));
        ext->length = MIN(len, CHUNK_SIZE);
        ext->flags = DISKIMG_BS_DATA;
    }
    if (p->top_only && !(ext->flags & DISKIMG_BS_ALLOCATED))
        *kind = EXTENT_SKIP;
    else
        *kind = content_kind(ext);
    return 0;
}

/* With -c items cover whole target clusters, with a sink whole blocks: a
 * cluster or block is data as soon as any byte of it is. */
static uint64_t align_run(struct pipeline *pl, uint64_t toff, uint64_t run, uint64_t room,
                          enum extent_kind *kind)
{
    if (!pl->align)
        return MIN(run, room);
    uint64_t cs = pl->align;
    uint64_t head = toff % cs;
    if (*kind != EXTENT_DATA && head == 0 && run >= room)
        return room;                         /* zeroes to the end, a short last block too */
    if (*kind != EXTENT_DATA && head == 0 && run >= cs)
        return run - run % cs;               /* whole zero clusters */
    *kind = EXTENT_DATA;
    uint64_t to_boundary = cs - head;
    uint64_t n = run <= to_boundary ? to_boundary : run + (cs - (toff + run) % cs) % cs;
    return MIN(MIN(n, CHUNK_SIZE - CHUNK_SIZE % cs), room);
}

static int produce_source(struct pipeline *pl, diskimg_node *src, uint64_t start, uint64_t end,
                          uint64_t toff, uint64_t *seq, GError **errp)
{
    for (uint64_t off = start; off < end;) {
        struct diskimg_extent ext = { .struct_size = sizeof(ext) };
        enum extent_kind kind;
        if (classify(pl, src, off, MIN(end - off, (uint64_t)64 << 30), &ext, &kind, errp) < 0)
            return -1;
        uint64_t t = toff + (off - start);
        uint64_t run = align_run(pl, t, ext.length, end - off, &kind);
        if (kind == EXTENT_SKIP || (kind == EXTENT_ZERO && zeroes_are_free(pl->p))) {
            if (!pl->p->progress_counts_work)
                diskimg_progress_add(pl->p->progress, run);
            off += run;
            continue;
        }
        if (kind == EXTENT_DATA)
            run = MIN(run, CHUNK_SIZE);
        if (pl->measuring) {
            pl->work += run;
            off += run;
            continue;
        }
        struct item *it = g_new0(struct item, 1);
        *it = (struct item){ .seq = (*seq)++, .zero = kind == EXTENT_ZERO, .src = src,
                             .soff = off, .toff = t, .len = run };
        bool mapped = (ext.flags & DISKIMG_BS_OFFSET_VALID) && ext.file &&
                      !(ext.flags & (DISKIMG_BS_COMPRESSED | DISKIMG_BS_ZERO)) &&
                      run <= ext.length;
        if (mapped) {
            it->host = ext.file;
            it->host_off = ext.offset;
        }
        if (!push_item(pl, it))
            return 0;   /* a worker failed; its error is reported */
        off += run;
    }
    return 0;
}

static int produce(struct pipeline *pl, GError **errp)
{
    const struct diskimg_copy_params *p = pl->p;
    uint64_t toff = p->target_offset, seq = 0;
    uint64_t remaining = p->length ? p->length : UINT64_MAX;
    for (size_t i = 0; i < p->n_sources && remaining && !failed(pl); i++) {
        int64_t size = diskimg_node_size(p->sources[i], errp);
        if (size < 0)
            return -1;
        uint64_t start = i == 0 ? MIN(p->source_offset, (uint64_t)size) : 0;
        uint64_t end = start + MIN((uint64_t)size - start, remaining);
        if (produce_source(pl, p->sources[i], start, end, toff, &seq, errp) < 0)
            return -1;
        toff += end - start;
        remaining -= end - start;
    }
    return 0;
}

/* ------------------------------------------------------------------ setup */

static int target_cluster_size(diskimg_node *target, uint64_t *out, GError **errp)
{
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    if (diskimg_node_info(target, &info, errp) < 0)
        return -1;
    *out = info.cluster_size ? info.cluster_size : 65536;
    if (*out > CHUNK_SIZE || CHUNK_SIZE % *out) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "%s: cluster size %" PRIu64 " is too large for compressed writes",
                    diskimg_node_filename(target), *out);
        return -1;
    }
    return 0;
}

static bool start_workers(struct pipeline *pl, struct worker *w, GError **errp)
{
    size_t clusters = pl->p->compress ? CHUNK_SIZE / pl->cluster_size : 0;
    for (unsigned i = 0; i < pl->workers; i++) {
        w[i].pl = pl;
        w[i].buf = diskimg_alloc_aligned(CHUNK_SIZE);
        if (pl->comparing)
            w[i].ref = diskimg_alloc_aligned(CHUNK_SIZE);
        if (clusters && pl->parallel_compress) {
            w[i].cbuf = g_malloc(CHUNK_SIZE);
            w[i].clen = g_new0(int64_t, clusters);
        }
        if (!w[i].buf || (pl->comparing && !w[i].ref)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_MEMORY, "out of memory");
            return false;
        }
    }
    for (unsigned i = 0; i < pl->workers; i++)
        w[i].thread = g_thread_new("diskimg-copy", worker_main, &w[i]);
    return true;
}

static void stop_workers(struct pipeline *pl, struct worker *w)
{
    g_mutex_lock(&pl->lock);
    pl->produced_all = true;
    g_cond_broadcast(&pl->cond);
    g_mutex_unlock(&pl->lock);
    for (unsigned i = 0; i < pl->workers; i++) {
        if (w[i].thread)
            g_thread_join(w[i].thread);
        diskimg_free_aligned(w[i].buf);
        diskimg_free_aligned(w[i].ref);
        g_free(w[i].cbuf);
        g_free(w[i].clen);
    }
    g_queue_clear_full(&pl->queue, g_free);
}

/* Does any layer of n's chain keep its bytes behind a network protocol (its
 * file node served by an io plugin with `protocols:`, nbd or http)? */
static bool chain_is_remote(const diskimg_node *n)
{
    for (; n; n = n->backing) {
        const diskimg_node *f = n->is_file ? n : n->file;
        g_auto(GStrv) schemes = f && f->plugin->schema
                                    ? diskimg_schema_protocols(f->plugin->schema) : NULL;
        if (schemes && schemes[0])
            return true;
    }
    return false;
}

static bool copy_is_remote(const struct diskimg_copy_params *p)
{
    for (size_t i = 0; i < p->n_sources; i++)
        if (chain_is_remote(p->sources[i]))
            return true;
    return chain_is_remote(p->target);
}

static bool in_backing_chain(diskimg_node *top, const diskimg_node *n)
{
    for (diskimg_node *b = diskimg_node_backing(top); b; b = diskimg_node_backing(b))
        if (b == n)
            return true;
    return false;
}

static const char *sink_mode_problem(const struct pipeline *pl)
{
    const struct diskimg_copy_params *p = pl->p;
    uint64_t bs = pl->sink.block_size;
    if (!pl->sink.commit)
        return "a sink needs a commit callback";
    if (bs == 0 || (bs & (bs - 1)) || bs > CHUNK_SIZE)
        return "the sink's block size must be a power of two up to 2 MiB";
    if (p->compress || p->copy_offload || p->out_of_order || pl->comparing)
        return "a sink takes no compression, copy offload, out-of-order or comparing";
    if (p->target_offset)
        return "a sink takes no target offset";
    return NULL;
}

/* The chain modes walk one source's layers and cannot be mixed; comparing
 * is defined on what only_unallocated walks (it never makes zero items), and
 * writes sector runs, not the whole clusters -c needs. */
static int check_modes(const struct pipeline *pl, GError **errp)
{
    const struct diskimg_copy_params *p = pl->p;
    const char *bad = NULL;
    if ((p->base || p->only_unallocated) && p->n_sources != 1)
        bad = "base and only_unallocated need exactly one source";
    else if (p->base && p->only_unallocated)
        bad = "base and only_unallocated exclude each other";
    else if (pl->comparing && (!p->only_unallocated || p->compress))
        bad = "differences_against needs only_unallocated and no compression";
    else if (p->base && !in_backing_chain(p->sources[0], p->base))
        bad = "base is not in the backing chain of the source";
    else if (!p->target == !pl->has_sink)
        bad = "exactly one of target and sink is needed";
    else if (pl->has_sink)
        bad = sink_mode_problem(pl);
    if (!bad)
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "copy: %s", bad);
    return -1;
}

static int measure_reference(struct pipeline *pl, GError **errp)
{
    if (!pl->p->differences_against)
        return 0;
    int64_t size = diskimg_node_size(pl->p->differences_against, errp);
    if (size < 0)
        return -1;
    pl->ref_size = (uint64_t)size;
    return 0;
}

static int copy_in_sink(struct pipeline *pl, const struct diskimg_copy_sink *sink,
                        GError **errp)
{
    if (abi_check_size(sink->struct_size, ABI_END(struct diskimg_copy_sink, commit),
                       "diskimg_copy_sink", errp) < 0)
        return -1;
    abi_copy_in(&pl->sink, sizeof(pl->sink), sink, sink->struct_size);
    pl->has_sink = true;
    return 0;
}

/* What diskimg_copy and diskimg_copy_work share: the caller's params copied
 * to the size we know, the modes checked, alignment and worker counts set. */
static int setup_pipeline(struct pipeline *pl, struct diskimg_copy_params *copy,
                          const struct diskimg_copy_params *params, GError **errp)
{
    /* Members a caller built against an older, shorter struct lacks read
     * as unset. */
    if (abi_check_size(params->struct_size, ABI_END(struct diskimg_copy_params, progress),
                       "diskimg_copy_params", errp) < 0)
        return -1;
    abi_copy_in(copy, sizeof(*copy), params, params->struct_size);
    const struct diskimg_copy_params *p = copy;
    *pl = (struct pipeline){ .p = p, .rate_start = g_get_monotonic_time(),
                             .comparing = p->differences_against ||
                                          p->differences_against_zeroes };
    if (p->sink && copy_in_sink(pl, p->sink, errp) < 0)
        return -1;
    if (check_modes(pl, errp) < 0 || measure_reference(pl, errp) < 0)
        return -1;
    if (pl->has_sink)
        pl->align = pl->sink.block_size;
    if (p->compress) {
        if (target_cluster_size(p->target, &pl->cluster_size, errp) < 0)
            return -1;
        pl->align = pl->cluster_size;
        pl->parallel_compress = diskimg_node_can_compress_parallel(p->target);
    }
    /* -m is the number of requests in flight.  For plain copies, threads
     * beyond the number of CPUs only add switching (measured: 8 threads on
     * 2 CPUs copy a 2 GiB raw image ~25 % slower than 2), so they are
     * capped by the CPUs; compressing workers keep one thread per request,
     * because a worker waiting for its turn to write leaves its CPU to the
     * others, and so do copies from or to remote storage, whose workers
     * wait on the network. */
    unsigned requests = CLAMP(p->parallel ? p->parallel : 8, 1, MAX_WORKERS);
    unsigned cpus = (unsigned)MAX(g_get_num_processors(), 2);
    pl->workers = (p->compress || copy_is_remote(p)) ? requests : MIN(requests, cpus);
    pl->max_items = requests * 2;
    return 0;
}

int diskimg_copy_work(const struct diskimg_copy_params *params, uint64_t *bytes,
                      GError **errp)
{
    struct diskimg_copy_params copy;
    struct pipeline pl;
    if (setup_pipeline(&pl, &copy, params, errp) < 0)
        return -1;
    pl.measuring = true;
    g_mutex_init(&pl.lock);
    int ret = produce(&pl, errp);
    g_mutex_clear(&pl.lock);
    if (ret == 0)
        *bytes = pl.work;
    return ret;
}

int diskimg_copy(const struct diskimg_copy_params *params, GError **errp)
{
    struct diskimg_copy_params copy;
    struct pipeline pl;
    if (setup_pipeline(&pl, &copy, params, errp) < 0)
        return -1;
    g_mutex_init(&pl.lock);
    g_cond_init(&pl.cond);
    g_mutex_init(&pl.rate_lock);
    g_queue_init(&pl.queue);
    struct worker *w = g_new0(struct worker, pl.workers);
    int ret = -1;
    GError *err = NULL;
    if (start_workers(&pl, w, &err) && produce(&pl, &err) == 0)
        ret = 0;
    if (err)
        fail(&pl, err);
    stop_workers(&pl, w);
    if (pl.error) {
        g_propagate_error(errp, pl.error);
        ret = -1;
    }
    g_free(w);
    g_mutex_clear(&pl.lock);
    g_cond_clear(&pl.cond);
    g_mutex_clear(&pl.rate_lock);
    return ret;
}
