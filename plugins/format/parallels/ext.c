/* SPDX-License-Identifier: MIT */
/*
 * ext.c — the Parallels Format Extension (header field ext_off), handled
 * as qemu 7.2 does: on read-only opens its cluster is read and validated
 * (magic, MD5 checksum, feature list, dirty-bitmap features) and a bad one
 * fails the open; read-write opens ignore it with qemu's warning.  The
 * dirty bitmaps it may hold are validated but not exposed: qemu-img shows
 * nothing of them for parallels images either.
 *
 * Read-write opens still walk it, for where it ends (s->ext_end): new
 * clusters must not overwrite it and the close-time cut must not remove
 * it, as qemu 7.2 would (its data_end knows only the BAT).
 */
#include <string.h>

#include <diskimg/crypto.h>

#include "parallels.h"

#define PRL_EXT_MAGIC          0xab234cef23dcea87ull
#define PRL_EXT_END_MAGIC      0x0ull
#define PRL_EXT_BITMAP_MAGIC   0x20385fae252cb34aull
#define PRL_EXT_HEADER_LEN     24u    /* magic, MD5 of the rest of the cluster */
#define PRL_FEATURE_HEADER_LEN 24u    /* magic, flags, data_size, unused */
#define PRL_BITMAP_HEADER_LEN  32u    /* size, id, granularity, l1_size */

/* The L1 table of a bitmap: 0 (clear), 1 (all set) or a cluster's sector. */
static int check_bitmap_l1(struct prl_state *s, const struct diskimg_reader *l1,
                           uint32_t l1_size, uint64_t file_size, GError **errp)
{
    for (uint32_t i = 0; i < l1_size; i++) {
        uint64_t entry;
        if (diskimg_read_u64(l1, (uint64_t)i * 8, "l1 entry", &entry, errp) < 0)
            return -1;
        if (entry <= 1)
            continue;
        if (file_size < s->cluster_size || entry > (file_size - s->cluster_size) / PRL_SECTOR)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Format Extension bitmap L1 entry %" PRIu32 " (sector %"
                                     PRIu64 ") lies beyond the end of the file", i, entry);
        if (entry * PRL_SECTOR + s->cluster_size > s->ext_end)
            s->ext_end = entry * PRL_SECTOR + s->cluster_size;
    }
    return 0;
}

static int check_bitmap(struct prl_state *s, const struct diskimg_reader *f, uint64_t file_size,
                        GError **errp)
{
    uint64_t size;
    uint32_t granularity, l1_size;

    if (f->len < PRL_BITMAP_HEADER_LEN)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Too small Bitmap Feature area in Parallels Format Extension: "
                                 "%zu bytes, expected at least %u bytes", f->len,
                                 PRL_BITMAP_HEADER_LEN);
    if (diskimg_read_u64(f, 0, "size", &size, errp) < 0 ||
        diskimg_read_u32(f, 24, "granularity", &granularity, errp) < 0 ||
        diskimg_read_u32(f, 28, "l1_size", &l1_size, errp) < 0)
        return -1;
    if (size != s->h.nb_sectors)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Bitmap size (in sectors) %" PRIu64 " differs from disk size "
                                 "in sectors %" PRIu64, size, s->h.nb_sectors);
    uint64_t gran = (uint64_t)granularity * PRL_SECTOR;
    if (gran < PRL_SECTOR || gran > UINT32_MAX || (gran & (gran - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid bitmap granularity %" PRIu64 ", expected a power of "
                                 "two of at least %u bytes", gran, PRL_SECTOR);
    if ((uint64_t)l1_size * 8 > f->len - PRL_BITMAP_HEADER_LEN)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Bitmaps feature corrupted: l1 table exceeds extension "
                                 "data_size");
    /* qemu serialises bitmaps in 64-bit words of one bit per granule. */
    uint64_t bytes = size * PRL_SECTOR;
    uint64_t words = (bytes + gran * 64 - 1) / (gran * 64);
    uint64_t expected = (words * 8 + s->cluster_size - 1) / s->cluster_size;
    if (expected != l1_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Bitmap table size %" PRIu32 " does not correspond to bitmap "
                                 "size and cluster size. Expected %" PRIu64, l1_size, expected);
    struct diskimg_reader l1;
    if (diskimg_reader_sub(f, PRL_BITMAP_HEADER_LEN, (uint64_t)l1_size * 8, "bitmap L1 table",
                           &l1, errp) < 0)
        return -1;
    return check_bitmap_l1(s, &l1, l1_size, file_size, errp);
}

/* Walks the features after the checksummed header. */
static int check_features(struct prl_state *s, const struct diskimg_reader *r,
                          uint64_t file_size, GError **errp)
{
    uint64_t pos = PRL_EXT_HEADER_LEN;

    for (;;) {
        uint64_t magic, flags;
        uint32_t data_size;
        if (r->len - pos < PRL_FEATURE_HEADER_LEN)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Can not read feature header, as remaining bytes (%" PRIu64
                                     ") in Format Extension is less than Feature header size "
                                     "(%u)", r->len - pos, PRL_FEATURE_HEADER_LEN);
        if (diskimg_read_u64(r, pos, "feature magic", &magic, errp) < 0 ||
            diskimg_read_u64(r, pos + 8, "feature flags", &flags, errp) < 0 ||
            diskimg_read_u32(r, pos + 16, "feature data_size", &data_size, errp) < 0)
            return -1;
        pos += PRL_FEATURE_HEADER_LEN;
        if (flags)
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                     "Flags for extension feature are unsupported");
        uint64_t padded = ((uint64_t)data_size + 7) & ~7ull;
        if (padded > r->len - pos)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Feature data_size exceedes Format Extension cluster");
        if (magic == PRL_EXT_END_MAGIC)
            return 0;
        if (magic != PRL_EXT_BITMAP_MAGIC)
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                     "Unknown feature: 0x%" PRIx64, magic);
        struct diskimg_reader f;
        if (diskimg_reader_sub(r, pos, data_size, "dirty bitmap feature", &f, errp) < 0 ||
            check_bitmap(s, &f, file_size, errp) < 0)
            return -1;
        pos += padded;
    }
}

int prl_ext_validate(struct prl_state *s, uint64_t file_size, GError **errp)
{
    uint64_t off = s->h.ext_off;

    if (off > file_size / PRL_SECTOR || file_size - off * PRL_SECTOR < s->cluster_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "parallels header field 'ext_off' (sector %" PRIu64 "): the "
                                 "Format Extension cluster lies beyond the end of the file",
                                 off);
    s->ext_end = off * PRL_SECTOR + s->cluster_size;
    g_autofree uint8_t *cluster = g_try_malloc(s->cluster_size);
    if (!cluster)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                                 "Failed to allocate the Format Extension cluster");
    if (diskimg_node_pread(s->file, cluster, s->cluster_size, off * PRL_SECTOR, errp) < 0)
        return -1;

    struct diskimg_reader r = diskimg_reader_make(cluster, s->cluster_size,
                                                  DISKIMG_LITTLE_ENDIAN, NULL,
                                                  "parallels Format Extension");
    uint64_t magic;
    uint8_t md5[16];
    if (!diskimg_reader_has(&r, 0, PRL_EXT_HEADER_LEN))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "parallels Format Extension: cluster too small for its header");
    diskimg_read_u64(&r, 0, "magic", &magic, NULL);
    if (magic != PRL_EXT_MAGIC)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Wrong parallels Format Extension magic: 0x%" PRIx64
                                 ", expected: 0x%llx", magic, PRL_EXT_MAGIC);
    if (diskimg_hash("md5", cluster + PRL_EXT_HEADER_LEN,
                     s->cluster_size - PRL_EXT_HEADER_LEN, md5, sizeof(md5), errp) < 0)
        return -1;
    if (memcmp(md5, cluster + 8, sizeof(md5)))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Wrong checksum in Format Extension header. Format extension "
                                 "is corrupted.");
    return check_features(s, &r, file_size, errp);
}
