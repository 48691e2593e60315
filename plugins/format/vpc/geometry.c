/* SPDX-License-Identifier: MIT */
/*
 * geometry.c — CHS geometry and the virtual size, exactly as qemu-img 7.2
 * computes them: the VHD specification's algorithm for creating, and
 * qemu's rule for which footer field gives the size of an image.
 */
#include <string.h>

#include "vpc.h"

/* The specification's geometry for a number of sectors; it may round
 * down, which is why vpc_create_geometry() searches upwards. */
void vpc_chs_for(uint64_t sectors, struct vpc_geometry *geo)
{
    uint64_t cyl_heads;
    uint32_t heads, secs;

    sectors = MIN(sectors, VPC_CHS_MAX_SECTORS);
    if (sectors >= UINT64_C(65535) * 16 * 63) {
        secs = 255;
        heads = 16;
        cyl_heads = sectors / secs;
    } else {
        secs = 17;
        cyl_heads = sectors / secs;
        heads = (uint32_t)((cyl_heads + 1023) / 1024);
        if (heads < 4)
            heads = 4;
        if (cyl_heads >= heads * UINT64_C(1024) || heads > 16) {
            secs = 31;
            heads = 16;
            cyl_heads = sectors / secs;
        }
        if (cyl_heads >= heads * UINT64_C(1024)) {
            secs = 63;
            heads = 16;
            cyl_heads = sectors / secs;
        }
    }
    geo->cylinders = (uint16_t)(cyl_heads / heads);
    geo->heads = (uint8_t)heads;
    geo->sectors = (uint8_t)secs;
}

uint64_t vpc_chs_sectors(const struct vpc_geometry *geo)
{
    return (uint64_t)geo->cylinders * geo->heads * geo->sectors;
}

/* The geometry and the size a new image of `size` bytes gets.  Without
 * force_size the size grows to the first geometry that holds it (so
 * that Virtual PC, which sizes by CHS, sees every byte); above what CHS
 * can express, and with force_size, the geometry is the maximum and the
 * size is kept in current_size. */
int vpc_create_geometry(uint64_t size, bool force_size, struct vpc_geometry *geo,
                        uint64_t *total_size, GError **errp)
{
    uint64_t want = size / VPC_SECTOR;
    uint64_t total;

    memset(geo, 0, sizeof(*geo));
    if (force_size) {
        *geo = (struct vpc_geometry){ .cylinders = 65535, .heads = 16, .sectors = 255 };
    } else {
        uint64_t sectors = MIN(want, VPC_CHS_MAX_SECTORS);
        for (uint64_t i = 0; sectors > vpc_chs_sectors(geo); i++)
            vpc_chs_for(sectors + i, geo);
    }
    if (vpc_chs_sectors(geo) == VPC_CHS_MAX_SECTORS) {
        total = want;
        if (total > VPC_MAX_SECTORS)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "The image size is too large for file format 'vpc'");
    } else {
        total = vpc_chs_sectors(geo);
    }
    *total_size = total * VPC_SECTOR;
    return 0;
}

/* qemu 7.2's table: Virtual PC and qemu itself ("vpc ", "qemu") size by
 * the geometry; Hyper-V ("win "), disk2vhd ("d2v "), qemu with force_size
 * ("qem2"), XenServer ("tap\0") and XenConverter ("CTXS") by current_size.
 * Unknown creators count as CHS in 7.2.  The maximum geometry always means
 * current_size, whatever the creator. */
static bool creator_sizes_by_current_size(const char app[4])
{
    static const char *const apps[] = { "win ", "qem2", "d2v ", "CTXS" };

    for (size_t i = 0; i < G_N_ELEMENTS(apps); i++) {
        if (memcmp(app, apps[i], 4) == 0)
            return true;
    }
    return memcmp(app, "tap\0", 4) == 0;
}

uint64_t vpc_footer_virtual_size(const struct vpc_footer *f, enum vpc_size_rule rule)
{
    bool use_chs;

    switch (rule) {
    case VPC_SIZE_CHS:
        use_chs = true;
        break;
    case VPC_SIZE_CURRENT:
        use_chs = false;
        break;
    default:
        use_chs = !creator_sizes_by_current_size(f->creator_app);
        break;
    }
    uint64_t chs = vpc_chs_sectors(&f->geo);
    if (!use_chs || chs == VPC_CHS_MAX_SECTORS)
        return f->current_size / VPC_SECTOR * VPC_SECTOR;
    return chs * VPC_SECTOR;
}
