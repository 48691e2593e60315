/* SPDX-License-Identifier: MIT */
/*
 * log.c — the metadata log (spec 2.3): a ring of 4 KiB sectors holding
 * entries, each a header, descriptors and data sectors, that describe
 * writes of metadata pages.  A writer puts an entry in the log, flushes,
 * applies it, and clears the header's log GUID when the log is empty; a
 * crash in between leaves a log that the next writable open replays.
 *
 * Replay follows qemu's vhdx-log.c: scan the ring for the run of valid
 * entries (matching log GUID, checksums, consecutive sequence numbers)
 * with the highest sequence number, and write what it describes.  An
 * image with such a run cannot be used read-only (its metadata is not
 * what the log says it is): open fails with qemu's message.
 *
 * Entry header (64 bytes): "loge", checksum, entry_length, tail,
 * sequence_number (8), descriptor_count, reserved, log_guid (16),
 * flushed_file_offset (8), last_file_offset (8).  Descriptors (32 bytes):
 * "zero" + reserved + zero_length (8) or "desc" + trailing_bytes (4) +
 * leading_bytes (8), then file_offset (8) and sequence_number (8).  Data
 * sector: "data", sequence_high, 4084 bytes, sequence_low.
 */
#include <string.h>

#include "vhdx.h"

#define SECT VHDX_LOG_SECTOR
#define ENTRY_HEADER_SIZE 64
#define DESC_SIZE 32
/* Logs larger than this are refused rather than read into memory. */
#define LOG_MAX_REPLAY (256 * MiB)

struct log_view {
    const uint8_t *data;        /* the whole log */
    uint64_t sectors;
    uint64_t crc_budget;        /* bytes we still checksum before giving up */
};

struct entry {
    uint64_t start;             /* first sector */
    uint32_t sectors;
    uint64_t sequence;
    uint32_t descriptors;
    uint64_t flushed_end, last_end;
};

/* Sector `i` of the ring, wrapping. */
static const uint8_t *sector(const struct log_view *v, uint64_t i)
{
    return v->data + (i % v->sectors) * SECT;
}

static uint64_t desc_sectors(uint32_t descriptors)
{
    /* The 64-byte header takes the room of two descriptors.  In 64 bits:
     * a count near 2^32 must not wrap into a small number of sectors. */
    return ((uint64_t)descriptors + 2 + 127) / 128;
}

static const uint8_t *descriptor(const struct log_view *v, const struct entry *e, uint32_t k)
{
    uint64_t byte = ENTRY_HEADER_SIZE + (uint64_t)k * DESC_SIZE;
    return sector(v, e->start + byte / SECT) + byte % SECT;
}

static uint32_t entry_crc(const struct log_view *v, const struct entry *e)
{
    static const uint8_t zero[4];
    const uint8_t *first = sector(v, e->start);
    uint32_t crc = diskimg_crc32c(0, first, 4);
    crc = diskimg_crc32c(crc, zero, 4);
    crc = diskimg_crc32c(crc, first + 8, SECT - 8);
    for (uint32_t i = 1; i < e->sectors; i++)
        crc = diskimg_crc32c(crc, sector(v, e->start + i), SECT);
    return crc;
}

/* The descriptors and data sectors of a parsed header, checked. */
static bool descriptors_valid(const struct log_view *v, const struct entry *e)
{
    uint64_t data_index = desc_sectors(e->descriptors);

    for (uint32_t k = 0; k < e->descriptors; k++) {
        const uint8_t *d = descriptor(v, e, k);
        if (diskimg_le64(d + 24) != e->sequence || diskimg_le64(d + 16) % SECT)
            return false;
        if (memcmp(d, "zero", 4) == 0) {
            if (diskimg_le64(d + 8) % SECT)
                return false;
        } else if (memcmp(d, "desc", 4) == 0) {
            if (data_index >= e->sectors)
                return false;
            const uint8_t *ds = sector(v, e->start + data_index++);
            uint64_t seq = (uint64_t)diskimg_le32(ds + 4) << 32 | diskimg_le32(ds + 4092);
            if (memcmp(ds, "data", 4) != 0 || seq != e->sequence)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* Parses and checks the entry starting at sector `at`. */
static bool entry_at(struct log_view *v, const vhdx_guid *log_guid, uint64_t at,
                     struct entry *e)
{
    const uint8_t *h = sector(v, at);
    uint32_t length = diskimg_le32(h + 8);

    if (memcmp(h, "loge", 4) != 0 || length == 0 || length % SECT ||
        length / SECT > v->sectors || memcmp(h + 32, log_guid->b, 16) != 0)
        return false;
    *e = (struct entry){
        .start = at, .sectors = length / SECT, .sequence = diskimg_le64(h + 16),
        .descriptors = diskimg_le32(h + 24), .flushed_end = diskimg_le64(h + 48),
        .last_end = diskimg_le64(h + 56),
    };
    if (e->sequence == 0 || desc_sectors(e->descriptors) > e->sectors)
        return false;
    if (v->crc_budget < length)
        return false;
    v->crc_budget -= length;
    return entry_crc(v, e) == diskimg_le32(h + 4) && descriptors_valid(v, e);
}

/* Finds the active sequence: start sector, entry count, and its last
 * sequence number; false when the log holds none. */
static bool find_sequence(struct log_view *v, const vhdx_guid *guid, uint64_t *start,
                          uint64_t *count)
{
    bool found = false;
    uint64_t best_seq = 0;

    for (uint64_t p = 0; p < v->sectors;) {
        struct entry e;
        if (!entry_at(v, guid, p, &e)) {
            p++;
            continue;
        }
        uint64_t n = 1, seq = e.sequence, q = p + e.sectors, used = e.sectors;
        struct entry next;
        while (used < v->sectors && entry_at(v, guid, q, &next) && next.sequence == seq + 1 &&
               used + next.sectors <= v->sectors) {
            seq = next.sequence;
            q += next.sectors;
            used += next.sectors;
            n++;
        }
        if (!found || seq > best_seq) {
            found = true;
            best_seq = seq;
            *start = p;
            *count = n;
        }
        p = q;
    }
    return found;
}

/* Writes what one entry describes into the file. */
static int apply_entry(struct vhdx_state *s, const struct log_view *v, const struct entry *e,
                       uint64_t limit, GError **errp)
{
    uint8_t *buf = g_malloc(SECT);
    uint64_t data_index = desc_sectors(e->descriptors);
    int ret = -1;

    for (uint32_t k = 0; k < e->descriptors; k++) {
        const uint8_t *d = descriptor(v, e, k);
        uint64_t off = diskimg_le64(d + 16);
        bool zero = memcmp(d, "zero", 4) == 0;
        uint64_t len = zero ? diskimg_le64(d + 8) : SECT;

        /* The log describes metadata: never the identifier or headers,
         * never past what the entry says the file may grow to. */
        if (off < VHDX_REGION1_OFFSET || len > limit || off > limit - len) {
            diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                              "vhdx log: entry %" PRIu64 " descriptor %" PRIu32
                              " writes %" PRIu64 " bytes at offset 0x%" PRIx64
                              ", outside the metadata area", e->sequence, k, len, off);
            goto out;
        }
        if (zero) {
            if (len && diskimg_node_write_zeroes(s->file, off, len, 0, errp) < 0)
                goto out;
            continue;
        }
        const uint8_t *ds = sector(v, e->start + data_index++);
        memcpy(buf, d + 8, 8);                  /* leading bytes */
        memcpy(buf + 8, ds + 8, SECT - 12);
        memcpy(buf + SECT - 4, d + 4, 4);       /* trailing bytes */
        if (diskimg_node_pwrite(s->file, buf, SECT, off, 0, errp) < 0)
            goto out;
    }
    ret = 0;
out:
    g_free(buf);
    return ret;
}

static int replay(struct vhdx_state *s, const struct log_view *v, uint64_t start,
                  uint64_t count, GError **errp)
{
    int64_t size = diskimg_node_size(s->file, errp);
    uint64_t p = start, grow_to = 0;

    if (size < 0)
        return -1;
    for (uint64_t i = 0; i < count; i++) {
        struct entry e;
        struct log_view scratch = *v;
        scratch.crc_budget = UINT64_MAX;
        if (!entry_at(&scratch, &s->header.log_guid, p, &e))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "vhdx log: entry vanished");
        /* A flushed offset past the end: the file was truncated after the
         * entry was written, and replaying cannot bring the data back. */
        if (e.flushed_end > (uint64_t)size)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "vhdx log: entry %" PRIu64 " field 'flushed_file_offset' "
                                     "(%" PRIu64 ") lies beyond the end of the file (%" PRIu64
                                     " bytes)", e.sequence, e.flushed_end, (uint64_t)size);
        uint64_t limit = MAX((uint64_t)size, e.last_end);
        if (limit > VHDX_MAX_SIZE * 2)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "vhdx log: entry %" PRIu64 " field 'last_file_offset' "
                                     "(%" PRIu64 ") is absurd", e.sequence, e.last_end);
        if (apply_entry(s, v, &e, limit, errp) < 0)
            return -1;
        grow_to = MAX(grow_to, e.last_end);
        p += e.sectors;
    }
    if (grow_to > (uint64_t)size) {
        uint64_t new_size = (grow_to + MiB - 1) / MiB * MiB;
        if (diskimg_node_truncate(s->file, new_size, DISKIMG_PREALLOC_OFF, 0, errp) < 0)
            return -1;
    }
    return diskimg_node_flush(s->file, errp);
}

int vhdx_log_replay(struct vhdx_state *s, GError **errp)
{
    const struct vhdx_header *h = &s->header;
    uint8_t *log = NULL;
    uint64_t start = 0, count = 0;
    int ret = -1;

    if (vhdx_guid_is_zero(&h->log_guid) || h->log_length == 0)
        return 0;
    if (h->log_length > LOG_MAX_REPLAY)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "vhdx header: field 'log_length' (%" PRIu32 ") exceeds the "
                                 "%" PRIu64 " MiB this plugin replays", h->log_length,
                                 LOG_MAX_REPLAY / MiB);
    if (diskimg_load_table(s->file, h->log_offset, h->log_length, 1, LOG_MAX_REPLAY,
                           "vhdx log", (void **)&log, errp) < 0)
        return -1;
    /* A hostile log may hold a plausible header in every sector; checking
     * each would checksum the log once per sector, so the work is capped. */
    struct log_view v = { log, h->log_length / SECT, 64 * (uint64_t)h->log_length };
    if (!find_sequence(&v, &h->log_guid, &start, &count)) {
        ret = 0;     /* a GUID without entries: nothing to replay */
        goto out;
    }
    if (!s->writable) {
        diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                          "VHDX image file '%s' opened read-only, but contains a log that "
                          "needs to be replayed (replay it with: check -r all '%s')",
                          s->filename, s->filename);
        goto out;
    }
    if (replay(s, &v, start, count, errp) < 0)
        goto out;
    static const vhdx_guid empty;
    if (vhdx_update_headers(s, false, &empty, errp) < 0)
        goto out;
    s->log_replayed = true;
    ret = 0;
out:
    g_free(log);
    return ret;
}

/* ---------------------------------------------------------------- writing */

/* Encodes one entry for the pages into buf (zeroed, `sectors` long). */
static void encode_entry(const struct vhdx_state *s, uint8_t *buf, uint32_t sectors,
                         const uint8_t *const *pages, const uint64_t *offsets, unsigned n,
                         uint64_t seq, uint64_t file_size)
{
    uint64_t ds = desc_sectors(n);

    memcpy(buf, "loge", 4);
    diskimg_put_le32(buf + 8, sectors * (uint32_t)SECT);
    diskimg_put_le32(buf + 12, 0);                 /* tail: this entry, at the start */
    diskimg_put_le64(buf + 16, seq);
    diskimg_put_le32(buf + 24, n);
    memcpy(buf + 32, s->header.log_guid.b, 16);
    diskimg_put_le64(buf + 48, file_size);
    diskimg_put_le64(buf + 56, file_size);
    for (unsigned k = 0; k < n; k++) {
        uint8_t *d = buf + ENTRY_HEADER_SIZE + (size_t)k * DESC_SIZE;
        uint8_t *data = buf + (size_t)(ds + k) * SECT;
        memcpy(d, "desc", 4);
        memcpy(d + 4, pages[k] + SECT - 4, 4);
        memcpy(d + 8, pages[k], 8);
        diskimg_put_le64(d + 16, offsets[k]);
        diskimg_put_le64(d + 24, seq);
        memcpy(data, "data", 4);
        diskimg_put_le32(data + 4, (uint32_t)(seq >> 32));
        memcpy(data + 8, pages[k] + 8, SECT - 12);
        diskimg_put_le32(data + SECT - 4, (uint32_t)seq);
    }
    diskimg_put_le32(buf + 4, diskimg_crc32c(0, buf, (size_t)sectors * SECT));
}

int vhdx_log_write_entry(struct vhdx_state *s, const uint8_t *const *pages,
                         const uint64_t *offsets, unsigned n, GError **errp)
{
    uint32_t sectors = (uint32_t)desc_sectors(n) + n;   /* n is at most a few thousand */
    int64_t file_size;
    uint8_t *buf;
    int ret;

    /* The ring keeps one sector open, and the log is empty here: every
     * entry is written at its start, then applied and retired. */
    if ((uint64_t)sectors >= s->header.log_length / SECT)
        return diskimg_set_error(errp, DISKIMG_ERROR_FAILED,
                                 "%s: vhdx log too small for %u metadata pages", s->filename,
                                 n);
    /* A fresh GUID for every entry: whatever an earlier writer left in the
     * log (a GUID with no valid entry is not replayed, and stays) can
     * never match and join our sequence. */
    vhdx_guid g;
    vhdx_guid_generate(&g);
    if (vhdx_update_headers(s, false, &g, errp) < 0)
        return -1;
    if ((file_size = diskimg_node_size(s->file, errp)) < 0)
        return -1;
    if (s->log_sequence == 0)
        s->log_sequence = 1;
    buf = g_malloc0((size_t)sectors * SECT);
    encode_entry(s, buf, sectors, pages, offsets, n, s->log_sequence, (uint64_t)file_size);
    ret = diskimg_node_pwrite(s->file, buf, (size_t)sectors * SECT, s->header.log_offset, 0,
                              errp);
    if (ret == 0)
        ret = diskimg_node_flush(s->file, errp);
    if (ret == 0)
        s->log_sequence++;
    g_free(buf);
    return ret;
}

int vhdx_log_write_pages(struct vhdx_state *s, const uint8_t *const *pages,
                         const uint64_t *offsets, unsigned n, GError **errp)
{
    static const vhdx_guid empty;

    if (vhdx_log_write_entry(s, pages, offsets, n, errp) < 0)
        return -1;
    for (unsigned k = 0; k < n; k++)
        if (diskimg_node_pwrite(s->file, pages[k], SECT, offsets[k], 0, errp) < 0)
            return -1;
    if (diskimg_node_flush(s->file, errp) < 0)
        return -1;
    return vhdx_update_headers(s, false, &empty, errp);
}
