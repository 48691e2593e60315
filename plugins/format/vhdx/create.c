/* SPDX-License-Identifier: MIT */
/*
 * create.c — new images, laid out as qemu 7.2 lays them out:
 *
 *   0..1M   identifier, headers, region tables
 *   1M      log (log_size, empty)
 *   then    BAT (1 MiB multiple), then metadata region (1 MiB) at the
 *           start of the 5 MiB qemu leaves after the BAT, then the payload
 *           blocks.
 *
 * Options follow qemu's create_opts path: log_size and block_size are
 * rounded up to whole MiB (block_size capped at 256 MiB) before qemu's
 * checks, and the size is rounded up to a 512-byte sector.
 */
#include <string.h>

#include "vhdx.h"

#define SECTOR 512u
#define DATA_SLACK (5 * MiB)

struct layout {
    uint64_t size;
    uint32_t block_size, log_size;
    bool fixed, zero_blocks;
    struct vhdx_region bat, meta;
    uint64_t entries, data_start;
};

/* qemu's choice, meant to keep the BAT small enough to hold in memory. */
uint32_t vhdx_default_block_size(uint64_t size)
{
    if (size > 32 * TiB)
        return 64 * MiB;
    if (size > 100 * GiB)
        return 32 * MiB;
    if (size > 1 * GiB)
        return 16 * MiB;
    return 8 * MiB;
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

static int parse_options(const diskimg_options *o, uint64_t size, struct layout *l,
                         GError **errp)
{
    uint64_t log = diskimg_options_get_uint(o, "log_size", MiB);
    uint64_t block = diskimg_options_get_uint(o, "block_size", 0);
    const char *sub = diskimg_options_get_str(o, "subformat");

    if (size > UINT64_MAX - SECTOR || round_up(size, SECTOR) > VHDX_MAX_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image size too large; max of 64TB");
    l->size = round_up(size, SECTOR);
    if (log > UINT32_MAX || round_up(log, MiB) > UINT32_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Log size must be smaller than 4 GB");
    log = round_up(log, MiB);
    if (log < MiB)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Log size must be a multiple of 1 MB");
    if (block == 0)
        block = vhdx_default_block_size(l->size);
    block = MIN(round_up(MIN(block, UINT64_MAX - MiB), MiB), VHDX_BLOCK_MAX);
    if (block & (block - 1))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Block size must be a power of two");
    l->log_size = (uint32_t)log;
    l->block_size = (uint32_t)block;
    l->fixed = sub && strcmp(sub, "fixed") == 0;
    l->zero_blocks = diskimg_options_get_bool(o, "block_state_zero", true);
    return 0;
}

/* The BAT region qemu 7.2 needs to open the image.  For an empty disk its
 * entry count wraps in 32 bits, (0 - 1) >> log2(chunk_ratio), and it
 * refuses a region smaller than that; we write what it can open (the
 * region stays a sparse run of zeroes). */
static uint64_t bat_region_length(const struct layout *l)
{
    uint64_t entries = l->entries;
    if (entries == 0) {
        uint64_t ratio = vhdx_chunk_ratio(l->block_size, SECTOR);
        unsigned bits = 0;
        while ((UINT64_C(1) << bits) < ratio)
            bits++;
        entries = UINT32_MAX >> bits;
    }
    return round_up(MAX(entries * 8, 1), MiB);
}

static void plan(struct layout *l)
{
    l->entries = vhdx_bat_entry_count(l->size, l->block_size, SECTOR);
    l->bat.offset = round_up(VHDX_HEADER_AREA_END + l->log_size, MiB);
    l->bat.length = (uint32_t)bat_region_length(l);
    l->meta.offset = l->bat.offset + l->bat.length;
    l->meta.length = MiB;
    /* qemu counts its slack from the end of the BAT: the metadata region
     * lies in it. */
    l->data_start = l->bat.offset + l->bat.length + DATA_SLACK;
}

/* The entry of BAT slot i; sector-bitmap slots stay NOT_PRESENT. */
static uint64_t initial_entry(const struct layout *l, uint64_t i)
{
    uint64_t ratio = vhdx_chunk_ratio(l->block_size, SECTOR);
    if (i % (ratio + 1) == ratio)
        return 0;
    uint64_t block = i - i / (ratio + 1);
    if (l->fixed)
        return (l->data_start + block * l->block_size) | VHDX_BLOCK_FULLY_PRESENT;
    return l->zero_blocks ? VHDX_BLOCK_ZERO : VHDX_BLOCK_NOT_PRESENT;
}

/* Writes the BAT a MiB at a time (it may be hundreds of MiB). */
static int write_bat(diskimg_node *file, const struct layout *l, GError **errp)
{
    const uint64_t per_chunk = MiB / 8;
    uint8_t *buf;
    int ret = 0;

    if (!l->fixed && !l->zero_blocks)
        return 0;                       /* all zero: the truncate wrote it */
    buf = g_malloc(MiB);
    for (uint64_t first = 0; first < l->entries && ret == 0; first += per_chunk) {
        uint64_t n = MIN(per_chunk, l->entries - first);
        for (uint64_t k = 0; k < n; k++)
            diskimg_put_le64(buf + 8 * k, initial_entry(l, first + k));
        ret = diskimg_node_pwrite(file, buf, n * 8, l->bat.offset + first * 8, 0, errp);
    }
    g_free(buf);
    return ret;
}

static int write_fixed_structures(diskimg_node *file, const struct layout *l, GError **errp)
{
    uint8_t *buf = g_malloc(MiB);
    struct vhdx_header h = {
        .sequence = g_random_int(), .version = 1, .log_length = l->log_size,
        .log_offset = VHDX_HEADER_AREA_END,
    };
    int ret = -1;

    vhdx_guid_generate(&h.file_write_guid);
    vhdx_guid_generate(&h.data_write_guid);
    vhdx_identifier_encode(buf);
    if (diskimg_node_pwrite(file, buf, VHDX_HEADER1_OFFSET, 0, 0, errp) < 0)
        goto out;
    for (unsigned i = 0; i < 2; i++) {
        vhdx_header_encode(&h, buf);
        if (diskimg_node_pwrite(file, buf, VHDX_HEADER_SIZE,
                                i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET, 0, errp) < 0)
            goto out;
        h.sequence++;
    }
    vhdx_region_table_encode(&l->bat, &l->meta, buf);
    if (diskimg_node_pwrite(file, buf, VHDX_REGION_SIZE, VHDX_REGION1_OFFSET, 0, errp) < 0 ||
        diskimg_node_pwrite(file, buf, VHDX_REGION_SIZE, VHDX_REGION2_OFFSET, 0, errp) < 0)
        goto out;
    vhdx_metadata_encode(buf, l->block_size, l->size, SECTOR, l->fixed);
    if (diskimg_node_pwrite(file, buf, MiB, l->meta.offset, 0, errp) < 0)
        goto out;
    ret = 0;
out:
    g_free(buf);
    return ret;
}

int vhdx_create(const struct diskimg_format_create_args *args, GError **errp)
{
    struct layout l = { 0 };

    if (parse_options(args->options, args->size, &l, errp) < 0)
        return -1;
    plan(&l);
    /* A fixed image holds every block in full, the last one included. */
    uint64_t end = l.data_start + (l.fixed ? round_up(l.size, l.block_size) : 0);
    if (diskimg_node_truncate(args->file, end, DISKIMG_PREALLOC_OFF, 0, errp) < 0 ||
        write_bat(args->file, &l, errp) < 0 ||
        write_fixed_structures(args->file, &l, errp) < 0)
        return -1;
    return diskimg_node_flush(args->file, errp);
}

/*
 * Not in qemu-img 7.2 (its vhdx driver has no measure).  The file create
 * makes ends where the payload starts; each block a copy writes is
 * appended there whole.  A fixed image holds every block from the start,
 * so both numbers are its file size (as qemu measures raw); a dynamic one
 * needs the blocks the source has data in, and fully allocated all of
 * them.
 */
int vhdx_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                 GError **errp)
{
    struct layout l = { 0 };
    uint64_t used = 0;

    if (parse_options(args->options, args->size, &l, errp) < 0)
        return -1;
    plan(&l);
    uint64_t blocks = round_up(l.size, l.block_size) / l.block_size;
    res->fully_allocated = l.data_start + blocks * l.block_size;
    if (l.fixed) {
        res->required = res->fully_allocated;
        return 0;
    }
    if (args->source &&
        diskimg_measure_data_blocks(args->source, MIN(args->size, l.size), l.block_size, &used,
                                    errp) < 0)
        return -1;
    res->required = l.data_start + used * l.block_size;
    return 0;
}
