/* SPDX-License-Identifier: MIT */
/*
 * cowd.c — vmfsSparse extents (ESX's "COWD" redo logs), read only.
 *
 * The header is ten little-endian 32-bit fields after the magic: version,
 * flags, disk size, grain size (sectors), grain directory offset and
 * entry count, file size, geometry.  Grain tables have 4096 entries; the
 * grain lookup and data path are those of hosted sparse extents, so this
 * file only turns the header into a struct vmdk_extent.
 */
#include "vmdk.h"

#define COWD_GTES 4096u

int vmdk_cowd_open(struct vmdk_extent *e, const char *filename, GError **errp)
{
    int64_t size = diskimg_node_size(e->file, errp);
    if (size < 0)
        return -1;
    e->file_size = (uint64_t)size;
    uint8_t sector[VMDK_SECTOR] = { 0 };
    if (e->file_size < 32)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%svmfsSparse header: the file is too small", VMDK_WHERE(filename));
    if (diskimg_node_pread(e->file, sector, MIN(e->file_size, (uint64_t)VMDK_SECTOR), 0,
                           errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(sector, VMDK_SECTOR, DISKIMG_LITTLE_ENDIAN,
                                                  filename, "vmfsSparse header");
    uint32_t disk_sectors, grain, gd, gd_size;
    if (diskimg_read_u32(&r, 12, "disk_sectors", &disk_sectors, errp) < 0 ||
        diskimg_read_u32(&r, 16, "granularity", &grain, errp) < 0 ||
        diskimg_read_u32(&r, 20, "l1dir_offset", &gd, errp) < 0 ||
        diskimg_read_u32(&r, 24, "l1dir_size", &gd_size, errp) < 0)
        return -1;
    if (grain == 0 || grain > VMDK_MAX_GRAIN_SECTORS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%svmfsSparse header: field 'granularity' (%" PRIu32
                                 ") is not between 1 and 2097152 sectors", VMDK_WHERE(filename), grain);
    uint64_t per_gt = (uint64_t)COWD_GTES * grain;
    uint64_t needed = ((uint64_t)disk_sectors + per_gt - 1) / per_gt;
    if (gd_size > VMDK_MAX_GD_ENTRIES || gd_size < needed)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%svmfsSparse header: field 'l1dir_size' (%" PRIu32
                                 ") does not cover %" PRIu32 " sectors", VMDK_WHERE(filename), gd_size,
                                 disk_sectors);
    e->header_capacity = disk_sectors;
    e->grain = (uint64_t)grain * VMDK_SECTOR;
    e->gtes = COWD_GTES;
    e->gd_offset = gd;
    e->gd_entries = gd_size;
    e->next_alloc = e->file_size;
    e->read_only = true;
    if (diskimg_load_table(e->file, (uint64_t)gd * VMDK_SECTOR, gd_size, 4,
                           (uint64_t)VMDK_MAX_GD_ENTRIES * 4, "grain directory",
                           (void **)&e->gd, errp) < 0) {
        g_prefix_error(errp, "%s%s", VMDK_WHERE(filename));
        return -1;
    }
    for (uint32_t i = 0; i < gd_size; i++)
        e->gd[i] = GUINT32_FROM_LE(e->gd[i]);
    e->gt_cache = diskimg_mcache_new(e->file, "grain table", VMDK_SECTOR, 1u << 20, errp);
    return e->gt_cache ? 0 : -1;
}
