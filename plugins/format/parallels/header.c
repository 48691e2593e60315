/* SPDX-License-Identifier: MIT */
/*
 * header.c — the Parallels header: validation on open (qemu 7.2's checks
 * and words, plus the layout checks a writer needs), the header qemu
 * writes on create, and the BAT's consistency with the file.
 */
#include <string.h>

#include "parallels.h"

/* qemu's BDRV_MAX_LENGTH: the largest image size its block layer takes. */
#define PRL_MAX_LENGTH ((uint64_t)INT64_MAX & ~((1ull << 30) - 1))

uint64_t prl_bat_end(uint32_t bat_entries)
{
    return PRL_HEADER_LEN + (uint64_t)bat_entries * 4;
}

static int read_fields(const struct diskimg_reader *r, struct prl_header *h, uint32_t *version,
                       GError **errp)
{
    if (diskimg_read_u32(r, PRL_OFF_VERSION, "version", version, errp) < 0 ||
        diskimg_read_u32(r, PRL_OFF_TRACKS, "tracks", &h->tracks, errp) < 0 ||
        diskimg_read_u32(r, PRL_OFF_BAT_ENTRIES, "bat_entries", &h->bat_entries, errp) < 0 ||
        diskimg_read_u64(r, PRL_OFF_NB_SECTORS, "nb_sectors", &h->nb_sectors, errp) < 0 ||
        diskimg_read_u32(r, PRL_OFF_INUSE, "inuse", &h->inuse, errp) < 0 ||
        diskimg_read_u32(r, PRL_OFF_DATA_OFF, "data_off", &h->data_off, errp) < 0 ||
        diskimg_read_u64(r, PRL_OFF_EXT_OFF, "ext_off", &h->ext_off, errp) < 0)
        return -1;
    return 0;
}

int prl_header_parse(const uint8_t *buf, size_t len, struct prl_header *h, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, len, DISKIMG_LITTLE_ENDIAN, NULL,
                                                  "parallels header");
    const uint8_t *magic;
    uint32_t version;

    memset(h, 0, sizeof(*h));
    if (!(magic = diskimg_read_bytes(&r, 0, 16, "magic", errp)) ||
        read_fields(&r, h, &version, errp) < 0)
        return -1;
    if (version != PRL_VERSION)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image not in Parallels format "
                                 "(version %" PRIu32 ", expected %u)", version, PRL_VERSION);
    if (!memcmp(magic, PRL_MAGIC_OLD, 16)) {
        /* Old images have a 32-bit sector count. */
        h->nb_sectors &= 0xffffffffu;
    } else if (!memcmp(magic, PRL_MAGIC_EXT, 16)) {
        h->ext_magic = true;
    } else {
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image not in Parallels format (bad magic)");
    }
    if (h->nb_sectors > PRL_MAX_LENGTH / PRL_SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Could not refresh total sector count: File too large "
                                 "(nb_sectors %" PRIu64 ")", h->nb_sectors);
    if (h->tracks == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Invalid image: Zero sectors per track");
    if (h->tracks > INT32_MAX / 513)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Invalid image: Too big cluster (tracks %" PRIu32 ")",
                                 h->tracks);
    if (h->bat_entries > INT32_MAX / 4)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Catalog too large (bat_entries %" PRIu32 ")", h->bat_entries);
    /* Data written over the BAT would corrupt it: qemu does not check. */
    if (h->data_off && (uint64_t)h->data_off * PRL_SECTOR < prl_bat_end(h->bat_entries))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "parallels header field 'data_off' (sector %" PRIu32
                                 ") lies inside the BAT (which ends at byte %" PRIu64 ")",
                                 h->data_off, prl_bat_end(h->bat_entries));
    return 0;
}

/* The first sector data may use: data_off, or (0) the sector after the BAT. */
uint64_t prl_first_data_sector(const struct prl_header *h)
{
    if (h->data_off)
        return h->data_off;
    return (prl_bat_end(h->bat_entries) + PRL_SECTOR - 1) / PRL_SECTOR;
}

void prl_map_layout(const struct prl_header *h, struct diskimg_blockmap_layout *layout)
{
    *layout = (struct diskimg_blockmap_layout){
        .struct_size = sizeof(*layout),
        .block_size = h->tracks * PRL_SECTOR,
        .base = 0,
        .unit = (uint64_t)(h->ext_magic ? h->tracks : 1) * PRL_SECTOR,
        .unallocated = 0,
        .zero = 0,
    };
}

void prl_header_build(uint8_t *buf, uint64_t size, uint32_t cluster_size)
{
    uint32_t bat_entries = (uint32_t)((size + cluster_size - 1) / cluster_size);
    uint64_t bat_clusters = (prl_bat_end(bat_entries) + cluster_size - 1) / cluster_size;

    memset(buf, 0, PRL_HEADER_LEN);
    memcpy(buf, PRL_MAGIC_EXT, 16);
    diskimg_put_le32(buf + PRL_OFF_VERSION, PRL_VERSION);
    /* Geometry means nothing to the image; qemu fills it in like this. */
    diskimg_put_le32(buf + PRL_OFF_HEADS, PRL_HEADS);
    diskimg_put_le32(buf + PRL_OFF_CYLINDERS,
                     (uint32_t)(size / PRL_SECTOR / PRL_HEADS / PRL_SEC_IN_CYL));
    diskimg_put_le32(buf + PRL_OFF_TRACKS, cluster_size / PRL_SECTOR);
    diskimg_put_le32(buf + PRL_OFF_BAT_ENTRIES, bat_entries);
    diskimg_put_le64(buf + PRL_OFF_NB_SECTORS, (size + PRL_SECTOR - 1) / PRL_SECTOR);
    diskimg_put_le32(buf + PRL_OFF_DATA_OFF,
                     (uint32_t)(bat_clusters * cluster_size / PRL_SECTOR));
}

/* For a normal open: no cluster starts past the end of the file (qemu's
 * check criterion), inside the header or BAT, or inside another cluster.
 * check opens without this and reports instead. */
struct overlap_note {
    bool found;
    uint32_t first, later;
};

static void note_overlap(void *opaque, uint32_t first, uint32_t later)
{
    struct overlap_note *n = opaque;

    if (!n->found)
        *n = (struct overlap_note){ true, first, later };
}

int prl_map_validate(const struct prl_state *s, uint64_t file_size, GError **errp)
{
    uint64_t data_start = prl_first_data_sector(&s->h) * PRL_SECTOR;
    struct overlap_note n = { 0 };

    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint64_t host;
        if (diskimg_blockmap_get(s->map, i, &host) != DISKIMG_BLOCKMAP_MAPPED)
            continue;
        if (host > file_size)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "BAT entry %" PRIu32 " (cluster at 0x%" PRIx64 ") lies "
                                     "beyond the end of the file; run 'check -r all'", i, host);
        if (host < data_start)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "BAT entry %" PRIu32 " (cluster at 0x%" PRIx64 ") lies "
                                     "inside the header or BAT; run 'check -r all'", i, host);
    }
    if (diskimg_blockmap_find_overlaps(s->map, note_overlap, &n, errp) < 0)
        return -1;
    if (n.found)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "BAT entry %" PRIu32 " overlaps the cluster of entry %" PRIu32
                                 "; run 'check -r all'", n.later, n.first);
    return 0;
}

/* Rewrites the 64-byte header with `inuse` and makes it durable. */
int prl_write_header(struct prl_state *s, uint32_t inuse, GError **errp)
{
    diskimg_put_le32(s->raw_header + PRL_OFF_INUSE, inuse);
    s->h.inuse = inuse;
    if (diskimg_node_pwrite(s->file, s->raw_header, PRL_HEADER_LEN, 0, 0, errp) < 0)
        return -1;
    return diskimg_node_flush(s->file, errp);
}
