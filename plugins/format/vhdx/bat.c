/* SPDX-License-Identifier: MIT */
/*
 * bat.c — the block allocation table (spec 2.5): geometry, loading and
 * validation, and the write-back of changed entries.
 *
 * The whole BAT is held in memory in host order, as qemu holds it: at the
 * largest (64 TiB in 1 MiB blocks) it is 512 MiB, but it is only as large
 * as the region the image declares, which must lie inside the file.
 * Changed entries mark their 4 KiB page dirty; vhdx_bat_write_back()
 * writes the dirty pages through the log after the payload data they
 * point at is durable, so that a crash leaves either the old or the new
 * table and never a table naming unwritten data.
 */
#include <string.h>

#include "vhdx.h"

#define ENTRIES_PER_PAGE (VHDX_LOG_SECTOR / 8)

uint64_t vhdx_chunk_ratio(uint32_t block_size, uint32_t logical_sector)
{
    return VHDX_CHUNK_SECTORS * logical_sector / block_size;
}

/* Payload entries plus the sector-bitmap entries interleaved after every
 * chunk_ratio of them (the last, partial chunk has none after it). */
uint64_t vhdx_bat_entry_count(uint64_t disk_size, uint32_t block_size,
                              uint32_t logical_sector)
{
    uint64_t payload = (disk_size + block_size - 1) / block_size;
    if (payload == 0)
        return 0;
    return payload + (payload - 1) / vhdx_chunk_ratio(block_size, logical_sector);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

char *vhdx_bat_entry_problem(const struct vhdx_state *s, uint64_t block, uint64_t file_size)
{
    uint64_t entry = s->bat[vhdx_bat_index(s, block)];
    uint64_t off = entry & VHDX_BAT_OFFSET_MASK;

    switch (entry & VHDX_BAT_STATE_MASK) {
    case VHDX_BLOCK_NOT_PRESENT:
    case VHDX_BLOCK_UNDEFINED:
    case VHDX_BLOCK_ZERO:
    case VHDX_BLOCK_UNMAPPED:
    case VHDX_BLOCK_UNMAPPED_V095:
        return NULL;
    case VHDX_BLOCK_FULLY_PRESENT:
        break;
    case VHDX_BLOCK_PARTIALLY_PRESENT:
        return g_strdup_printf("VHDX BAT entry %" PRIu64 " is partially present, which "
                               "only differencing images may be", block);
    default:
        return g_strdup_printf("VHDX BAT entry %" PRIu64 " has the invalid state %u", block,
                               (unsigned)(entry & VHDX_BAT_STATE_MASK));
    }
    if (off < VHDX_HEADER_AREA_END)
        return g_strdup_printf("VHDX BAT entry %" PRIu64 " offset 0x%" PRIx64
                               " points into the header area", block, off);
    /* qemu's wording, which tells the start from the end of the block. */
    if (off >= file_size)
        return g_strdup_printf("VHDX BAT entry %" PRIu64 " start offset %" PRIu64
                               " points after end of file (%" PRIu64
                               "). Image has probably been truncated.", block, off, file_size);
    if (file_size - off < s->block_size)
        return g_strdup_printf("VHDX BAT entry %" PRIu64 " end offset %" PRIu64
                               " points after end of file (%" PRIu64
                               "). Image has probably been truncated.", block,
                               off + s->block_size, file_size);
    if (overlaps(off, s->block_size, s->bat_region.offset, s->bat_region.length) ||
        overlaps(off, s->block_size, s->meta_region.offset, s->meta_region.length) ||
        overlaps(off, s->block_size, s->header.log_offset, s->header.log_length))
        return g_strdup_printf("VHDX BAT entry %" PRIu64 " offset 0x%" PRIx64
                               " overlaps the log, BAT or metadata region", block, off);
    return NULL;
}

/* Every payload entry must be usable, unless the image is opened for
 * check (which counts the bad ones instead), as qemu 7.2 does. */
static int validate_entries(struct vhdx_state *s, uint64_t file_size, GError **errp)
{
    for (uint64_t b = 0; b < s->payload_blocks; b++) {
        char *why = vhdx_bat_entry_problem(s, b, file_size);
        if (why) {
            diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s", why);
            g_free(why);
            return -1;
        }
    }
    return 0;
}

int vhdx_load_bat(struct vhdx_state *s, GError **errp)
{
    int64_t file_size = diskimg_node_size(s->file, errp);

    if (file_size < 0)
        return -1;
    s->chunk_ratio = vhdx_chunk_ratio(s->block_size, s->logical_sector);
    s->payload_blocks = (s->disk_size + s->block_size - 1) / s->block_size;
    s->bat_entries = vhdx_bat_entry_count(s->disk_size, s->block_size, s->logical_sector);
    if (s->bat_entries > s->bat_region.length / 8)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: BAT region (%" PRIu32
                                 " bytes) is too small for the %" PRIu64
                                 " entries of a %" PRIu64 "-byte disk",
                                 s->bat_region.length, s->bat_entries, s->disk_size);
    /* Whole pages, so that write-back encodes pages from memory; what
     * lies past the last entry reads as zero. */
    s->bat_pages = (s->bat_entries + ENTRIES_PER_PAGE - 1) / ENTRIES_PER_PAGE;
    if (s->bat_pages * VHDX_LOG_SECTOR > s->bat_region.length)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: BAT region length (%" PRIu32
                                 ") is not a multiple of 4 KiB", s->bat_region.length);
    if (diskimg_load_u64_table(s->file, s->bat_region.offset, s->bat_entries,
                               s->bat_pages * ENTRIES_PER_PAGE, DISKIMG_LITTLE_ENDIAN,
                               s->bat_region.length, "vhdx BAT", &s->bat, errp) < 0)
        return -1;
    s->bat_dirty = g_malloc0(s->bat_pages ? s->bat_pages : 1);
    if (!s->check_mode && validate_entries(s, (uint64_t)file_size, errp) < 0)
        return -1;
    return 0;
}

void vhdx_bat_set(struct vhdx_state *s, uint64_t block, uint64_t entry)
{
    uint64_t i = vhdx_bat_index(s, block);
    s->bat[i] = entry;
    s->bat_dirty[i / ENTRIES_PER_PAGE] = 1;
    s->bat_has_dirty = true;
}

/* The most pages one log entry can carry: the log is a ring with one
 * sector always open; an entry needs its descriptor sectors too. */
static unsigned pages_per_entry(const struct vhdx_state *s)
{
    uint64_t sectors = s->header.log_length / VHDX_LOG_SECTOR;
    uint64_t n = sectors > 4 ? sectors - 4 : 0;   /* header + descriptors + open sector */
    n = n * 128 / 129;                            /* one descriptor per 128 data sectors */
    return (unsigned)MIN(n, 4096);
}

static int write_pages_direct(struct vhdx_state *s, uint8_t *page, uint64_t i, GError **errp)
{
    return diskimg_node_pwrite(s->file, page, VHDX_LOG_SECTOR,
                               s->bat_region.offset + i * VHDX_LOG_SECTOR, 0, errp);
}

int vhdx_bat_write_back(struct vhdx_state *s, GError **errp)
{
    if (!s->bat_has_dirty)
        return 0;
    unsigned batch = pages_per_entry(s);
    unsigned cap = batch ? batch : 1;
    uint8_t *pages = g_malloc((size_t)cap * VHDX_LOG_SECTOR);
    const uint8_t **ptrs = g_new(const uint8_t *, cap);
    uint64_t *offsets = g_new(uint64_t, cap);
    unsigned n = 0;
    int ret = -1;

    /* The payload the new entries name must be on disk first. */
    if (diskimg_node_flush(s->file, errp) < 0)
        goto out;
    for (uint64_t i = 0; i <= s->bat_pages; i++) {
        bool last = i == s->bat_pages;
        if (!last && s->bat_dirty[i]) {
            uint8_t *page = pages + (size_t)n * VHDX_LOG_SECTOR;
            for (unsigned k = 0; k < ENTRIES_PER_PAGE; k++)
                diskimg_put_le64(page + 8 * k, s->bat[i * ENTRIES_PER_PAGE + k]);
            if (!batch) {
                /* An image without a log: in place, one page at a time. */
                if (write_pages_direct(s, page, i, errp) < 0)
                    goto out;
                continue;
            }
            ptrs[n] = page;
            offsets[n] = s->bat_region.offset + i * VHDX_LOG_SECTOR;
            n++;
        }
        if (n && (n == batch || last)) {
            if (vhdx_log_write_pages(s, ptrs, offsets, n, errp) < 0)
                goto out;
            n = 0;
        }
    }
    memset(s->bat_dirty, 0, s->bat_pages ? s->bat_pages : 1);
    s->bat_has_dirty = false;
    ret = diskimg_node_flush(s->file, errp);
out:
    g_free(pages);
    g_free(ptrs);
    g_free(offsets);
    return ret;
}

void vhdx_bat_free(struct vhdx_state *s)
{
    g_free(s->bat);
    g_free(s->bat_dirty);
    s->bat = NULL;
    s->bat_dirty = NULL;
}
