/* SPDX-License-Identifier: MIT */
/*
 * The copy engine.  Walks the sources by block status, so holes and
 * known-zero ranges are never read; data ranges are read in large chunks
 * and scanned for zero runs of `sparse_size` bytes, which become holes
 * (or explicit zeroes when the target cannot be trusted to read zero).
 */
#include <string.h>
#include <time.h>

#include "internal.h"

#define CHUNK_SIZE (2u << 20)      /* bytes per read; a multiple of every cluster size */
#define SALVAGE_SECTOR 512

struct copy_state {
    const struct diskimg_copy_params *p;
    uint8_t *buf;
    uint64_t cluster_size;         /* target's, for -c */
    uint64_t written_since_tick;
    gint64 tick_start;
};

static void rate_limit(struct copy_state *s, uint64_t bytes)
{
    if (!s->p->rate_limit)
        return;
    s->written_since_tick += bytes;
    gint64 now = g_get_monotonic_time();
    gint64 due = s->tick_start + (gint64)(s->written_since_tick * G_USEC_PER_SEC /
                                          s->p->rate_limit);
    if (due > now)
        g_usleep((gulong)(due - now));
}

static int write_zero_range(struct copy_state *s, uint64_t toff, uint64_t len, GError **errp)
{
    const struct diskimg_copy_params *p = s->p;
    if (p->target_is_zero && !p->target_has_backing && p->sparse_size)
        return 0;
    /* -S 0 asks for a fully allocated target: zeroes are written, not punched. */
    unsigned flags = p->sparse_size ? DISKIMG_WRITE_MAY_UNMAP : 0;
    return diskimg_node_write_zeroes(p->target, toff, len, flags, errp);
}

static int write_data(struct copy_state *s, const uint8_t *buf, uint64_t toff, uint64_t len,
                      GError **errp)
{
    rate_limit(s, len);
    return diskimg_node_pwrite(s->p->target, buf, len, toff, 0, errp);
}

/* Writes whole target clusters compressed; zero clusters become holes. */
static int write_compressed_run(struct copy_state *s, const uint8_t *buf, uint64_t toff,
                                uint64_t len, GError **errp)
{
    uint64_t cs = s->cluster_size;
    uint64_t pos = 0;
    while (pos < len) {
        uint64_t n = MIN(cs - (toff + pos) % cs, len - pos);
        if (diskimg_is_zero(buf + pos, n)) {
            if (write_zero_range(s, toff + pos, n, errp) < 0)
                return -1;
        } else if (n == cs || (toff + pos) % cs == 0) {
            rate_limit(s, n);
            if (diskimg_node_write_compressed(s->p->target, buf + pos, n, toff + pos, errp) < 0)
                return -1;
        } else if (write_data(s, buf + pos, toff + pos, n, errp) < 0) {
            return -1;
        }
        pos += n;
    }
    return 0;
}

/* Splits a data buffer into data runs and zero runs of sparse_size blocks. */
static int write_buffer(struct copy_state *s, const uint8_t *buf, uint64_t toff, uint64_t len,
                        GError **errp)
{
    const struct diskimg_copy_params *p = s->p;
    if (p->compress)
        return write_compressed_run(s, buf, toff, len, errp);
    if (p->sparse_size == 0)
        return write_data(s, buf, toff, len, errp);
    uint64_t block = p->sparse_size;
    uint64_t pos = 0;
    while (pos < len) {
        /* Blocks are aligned to the target so holes land on whole blocks. */
        uint64_t n = MIN(block - (toff + pos) % block, len - pos);
        bool zero = n == block && diskimg_is_zero(buf + pos, n);
        uint64_t run = n;
        while (pos + run < len) {
            uint64_t m = MIN(block, len - pos - run);
            bool z = m == block && diskimg_is_zero(buf + pos + run, m);
            if (z != zero)
                break;
            run += m;
        }
        int ret = zero ? write_zero_range(s, toff + pos, run, errp)
                       : write_data(s, buf + pos, toff + pos, run, errp);
        if (ret < 0)
            return -1;
        pos += run;
    }
    return 0;
}

/* --salvage: re-read sector by sector, unreadable sectors become zeroes. */
static int salvage_read(struct copy_state *s, diskimg_node *src, uint8_t *buf, uint64_t off,
                        uint64_t len, GError **errp)
{
    uint64_t bad = 0;
    for (uint64_t pos = 0; pos < len; pos += SALVAGE_SECTOR) {
        uint64_t n = MIN(SALVAGE_SECTOR, len - pos);
        GError *err = NULL;
        if (diskimg_node_pread(src, buf + pos, n, off + pos, &err) < 0) {
            memset(buf + pos, 0, n);
            bad += n;
            g_error_free(err);
        }
    }
    if (bad && !s->p->quiet)
        diskimg_warn("warning: %s: %" PRIu64 " unreadable bytes at offset %" PRIu64
                     " were replaced by zeroes", diskimg_node_filename(src), bad, off);
    return 0;
}

static int read_source(struct copy_state *s, diskimg_node *src, uint8_t *buf, uint64_t off,
                       uint64_t len, GError **errp)
{
    if (!s->p->salvage)
        return diskimg_node_pread(src, buf, len, off, errp);
    GError *err = NULL;
    if (diskimg_node_pread(src, buf, len, off, &err) == 0)
        return 0;
    g_error_free(err);
    return salvage_read(s, src, buf, off, len, errp);
}

/* What one extent of the source means for the target. */
enum extent_kind { EXTENT_DATA, EXTENT_ZERO, EXTENT_SKIP };

static int classify(struct copy_state *s, diskimg_node *src, uint64_t off, uint64_t len,
                    uint64_t *run, enum extent_kind *kind, GError **errp)
{
    struct diskimg_extent ext;
    int ret = s->p->top_only ? diskimg_node_block_status(src, off, len, &ext, errp)
                             : diskimg_node_block_status_chain(src, off, len, &ext, NULL, errp);
    if (ret < 0) {
        if (!s->p->salvage)
            return -1;
        g_clear_error(errp);
        ext.length = MIN(len, CHUNK_SIZE);
        ext.flags = DISKIMG_BS_DATA;
    }
    *run = ext.length;
    if (s->p->top_only && !(ext.flags & DISKIMG_BS_ALLOCATED))
        *kind = EXTENT_SKIP;
    else if (ext.flags & DISKIMG_BS_ZERO)
        *kind = EXTENT_ZERO;
    else
        *kind = EXTENT_DATA;
    return 0;
}

static int copy_source(struct copy_state *s, diskimg_node *src, uint64_t start, uint64_t end,
                       uint64_t toff, GError **errp)
{
    uint64_t off = start;
    while (off < end) {
        uint64_t run;
        enum extent_kind kind;
        if (classify(s, src, off, end - off, &run, &kind, errp) < 0)
            return -1;
        if (kind == EXTENT_ZERO) {
            if (write_zero_range(s, toff + (off - start), run, errp) < 0)
                return -1;
        } else if (kind == EXTENT_DATA) {
            run = MIN(run, CHUNK_SIZE);
            if (read_source(s, src, s->buf, off, run, errp) < 0 ||
                write_buffer(s, s->buf, toff + (off - start), run, errp) < 0)
                return -1;
        }
        diskimg_progress_add(s->p->progress, run);
        off += run;
    }
    return 0;
}

static int target_cluster_size(diskimg_node *target, uint64_t *out, GError **errp)
{
    struct diskimg_image_info info;
    if (diskimg_node_info(target, &info, errp) < 0)
        return -1;
    *out = info.cluster_size ? info.cluster_size : 65536;
    if (CHUNK_SIZE % *out) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "%s: cluster size %" PRIu64 " is too large for compressed writes",
                    diskimg_node_filename(target), *out);
        return -1;
    }
    return 0;
}

int diskimg_copy(const struct diskimg_copy_params *p, GError **errp)
{
    struct copy_state s = { .p = p, .tick_start = g_get_monotonic_time() };
    if (p->compress && target_cluster_size(p->target, &s.cluster_size, errp) < 0)
        return -1;
    s.buf = diskimg_alloc_aligned(CHUNK_SIZE);
    if (!s.buf) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_MEMORY, "out of memory");
        return -1;
    }
    int ret = 0;
    uint64_t toff = p->target_offset;
    uint64_t remaining = p->length ? p->length : UINT64_MAX;
    for (size_t i = 0; i < p->n_sources && remaining && ret == 0; i++) {
        int64_t size = diskimg_node_size(p->sources[i], errp);
        if (size < 0) {
            ret = -1;
            break;
        }
        uint64_t start = i == 0 ? MIN(p->source_offset, (uint64_t)size) : 0;
        uint64_t end = start + MIN((uint64_t)size - start, remaining);
        ret = copy_source(&s, p->sources[i], start, end, toff, errp);
        toff += end - start;
        remaining -= end - start;
    }
    diskimg_free_aligned(s.buf);
    return ret;
}
