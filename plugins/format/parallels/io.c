/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data of Parallels images: reads, writes allocating
 * clusters at the end of the data, zero writes, block status and flush.
 *
 * As in qemu, new BAT entries stay in memory until flush (or close);
 * flush makes the data durable before the entries that point at it.
 * Guest bytes beyond what the BAT covers (a header whose nb_sectors
 * exceeds bat_entries clusters) read as zeroes and cannot be written.
 */
#include <string.h>

#include "parallels.h"

/* Bytes of the guest the BAT covers. */
static uint64_t covered(const struct prl_state *s)
{
    return (uint64_t)diskimg_blockmap_count(s->map) * s->cluster_size;
}

/* The run at `offset` (see diskimg_blockmap_run), uncovered bytes being one
 * unallocated run. */
static uint64_t run_at(const struct prl_state *s, uint64_t offset, uint64_t len,
                       enum diskimg_blockmap_kind *kind, uint64_t *host)
{
    if (offset >= covered(s)) {
        *kind = DISKIMG_BLOCKMAP_UNALLOCATED;
        *host = 0;
        return len;
    }
    return diskimg_blockmap_run(s->map, offset, len, kind, host);
}

/* The part of [offset, offset + len) the BAT covers. */
static uint64_t covered_len(const struct prl_state *s, uint64_t offset, uint64_t len)
{
    uint64_t end = covered(s);

    return offset >= end ? 0 : MIN(len, end - offset);
}

int prl_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct prl_state *s = h;
    uint64_t n = covered_len(s, offset, len);

    if (n && diskimg_blockmap_read(s->map, s->file, buf, n, offset, errp) < 0)
        return -1;
    memset((uint8_t *)buf + n, 0, len - n);
    return 0;
}

/* Gives `count` clusters from guest cluster `first` on new clusters at
 * the end of the data; *host is where the first one starts, *zeroed
 * whether the new space is known to read as zeroes. */
static int allocate_clusters(struct prl_state *s, uint32_t first, uint32_t count,
                             uint64_t *host, bool *zeroed, GError **errp)
{
    /* Entries count in units of off_multiplier sectors: start the new
     * clusters on such a unit (qemu would truncate a misaligned end). */
    uint64_t unit = s->h.ext_magic ? s->h.tracks : 1;
    uint64_t start = (s->data_end + unit - 1) / unit * unit;
    uint64_t last_value = start / unit + (uint64_t)(count - 1) * (s->h.tracks / unit);

    if (last_value > UINT32_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "%s: no room for more clusters (BAT entries are 32-bit)",
                                 s->filename);
    for (uint32_t i = 0; i < count; i++)
        diskimg_blockmap_set(s->map, first + i,
                             (uint32_t)(start / unit + (uint64_t)i * (s->h.tracks / unit)));
    uint64_t used_end = s->data_end * PRL_SECTOR;
    *host = start * PRL_SECTOR;
    s->data_end = start + (uint64_t)count * s->h.tracks;
    *zeroed = s->tail && diskimg_tail_reserve(s->tail, *host, (uint64_t)count * s->cluster_size,
                                              used_end);
    return 0;
}

static int write_new_clusters(void *opaque, const uint8_t *data, uint64_t len,
                              uint64_t offset, GError **errp)
{
    struct prl_state *s = opaque;
    uint64_t cs = s->cluster_size;
    uint32_t first = (uint32_t)(offset / cs);
    uint64_t run_start = (uint64_t)first * cs;
    uint64_t run_end = (offset + len + cs - 1) / cs * cs;
    uint32_t count = (uint32_t)((run_end - run_start) / cs);
    uint64_t data_end_before = s->data_end;
    uint64_t host = 0;
    bool zeroed = false;

    if (allocate_clusters(s, first, count, &host, &zeroed, errp) < 0)
        return -1;
    uint64_t head = offset - run_start, tail = run_end - (offset + len);
    if (diskimg_write_padded(s->file, host, head, data, len, tail, zeroed, errp) < 0) {
        /* Give the clusters back: the BAT must not name storage that does
         * not hold what the guest wrote. */
        for (uint32_t i = 0; i < count; i++)
            diskimg_blockmap_set(s->map, first + i, 0);
        s->data_end = data_end_before;
        /* What failed may have left bytes there: nothing beyond the
         * allocations in use is known to be zero any more. */
        if (s->tail)
            diskimg_tail_forget(s->tail);
        return -1;
    }
    return 0;
}

static int refuse_uncovered(const struct prl_state *s, uint64_t offset, GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: offset %" PRIu64 " lies beyond what the BAT covers (%" PRIu32
                             " entries); the header's nb_sectors is larger", s->filename,
                             offset, diskimg_blockmap_count(s->map));
}

int prl_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp)
{
    struct prl_state *s = h;
    uint64_t n = covered_len(s, offset, len);

    /* The covered part is written before the rest is refused, as before. */
    if (n && diskimg_blockmap_write(s->map, s->file, buf, n, offset, write_new_clusters, s,
                                    errp) < 0)
        return -1;
    if (n < len)
        return refuse_uncovered(s, offset + n, errp);
    return (flags & DISKIMG_WRITE_FUA) ? prl_flush(s, errp) : 0;
}

/* Unallocated clusters read as zeroes (these images have no backing
 * file); allocated ones get their bytes zeroed in place. */
int prl_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct prl_state *s = h;
    uint64_t n = covered_len(s, offset, len);

    /* Uncovered bytes already read as zeroes. */
    if (n && diskimg_blockmap_zero_mapped(s->map, s->file, offset, n,
                                          flags & ~DISKIMG_WRITE_FUA, errp) < 0)
        return -1;
    return (flags & DISKIMG_WRITE_FUA) ? prl_flush(s, errp) : 0;
}

/* As qemu 7.2: allocated clusters are data at their offset, the rest is
 * not allocated in this layer. */
int prl_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp)
{
    struct prl_state *s = h;
    enum diskimg_blockmap_kind kind;
    uint64_t host;

    (void)errp;
    ext->length = run_at(s, offset, len, &kind, &host);
    if (kind != DISKIMG_BLOCKMAP_MAPPED) {
        ext->flags = 0;
        return 0;
    }
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_OFFSET_VALID;
    ext->offset = host;
    ext->file = s->file;
    return 0;
}

int prl_flush(void *h, GError **errp)
{
    struct prl_state *s = h;

    if (!diskimg_blockmap_is_dirty(s->map))
        return 0;
    /* The clusters new entries point at must be on disk before them. */
    if (diskimg_node_flush(s->file, errp) < 0)
        return -1;
    return diskimg_blockmap_write_back(s->map, s->file, errp);
}
