/* SPDX-License-Identifier: MIT */
/*
 * create.c — new images, laid out byte for byte as qemu-img 7.2 lays
 * them out: a fixed disk is the (sparse) data area and the footer; a
 * dynamic disk is the footer copy, the dynamic header at 512, the BAT at
 * 1536 (all entries unused, padded to a sector) and the footer.
 */
#include <string.h>
#include <time.h>

#include "vpc.h"

#define VPC_BAT_AT      (VPC_FOOTER_SIZE + VPC_DYN_HEADER_SIZE)
#define VPC_FEATURES    UINT32_C(0x00000002)  /* "reserved", always set */
#define VPC_VERSION     UINT32_C(0x00010000)
#define VPC_CREATOR_VER UINT32_C(0x00050003)  /* Virtual PC 2007, as qemu writes */

static void random_uuid(uint8_t uuid[16])
{
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = g_random_int();
        memcpy(uuid + i, &r, 4);
    }
    uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40);   /* version 4 */
    uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
}

static void make_footer(struct vpc_footer *f, uint64_t total, const struct vpc_geometry *geo,
                        bool fixed, bool force_size)
{
    int64_t now = (int64_t)time(NULL) - VPC_TIMESTAMP_BASE;

    memset(f, 0, sizeof(*f));
    f->features = VPC_FEATURES;
    f->version = VPC_VERSION;
    f->data_offset = fixed ? VPC_NO_OFFSET : VPC_FOOTER_SIZE;
    f->timestamp = (uint32_t)MAX(now, 0);
    /* "qem2" tells qemu (and us) to trust current_size over the geometry. */
    memcpy(f->creator_app, force_size ? "qem2" : "qemu", 4);
    f->creator_version = VPC_CREATOR_VER;
    memcpy(f->creator_os, "Wi2k", 4);
    f->original_size = total;
    f->current_size = total;
    f->geo = *geo;
    f->disk_type = fixed ? VPC_TYPE_FIXED : VPC_TYPE_DYNAMIC;
    random_uuid(f->uuid);
}

static int create_fixed(diskimg_node *file, uint64_t total, const uint8_t *footer, GError **errp)
{
    /* Sized first, so that the data area is a hole that reads as zeroes. */
    if (diskimg_node_truncate(file, total + VPC_FOOTER_SIZE, DISKIMG_PREALLOC_OFF, 0, errp) < 0)
        return -1;
    return diskimg_node_pwrite(file, footer, VPC_FOOTER_SIZE, total, 0, errp);
}

static int create_dynamic(diskimg_node *file, uint64_t total, const uint8_t *footer,
                          GError **errp)
{
    uint64_t blocks = (total + VPC_BLOCK_SIZE - 1) / VPC_BLOCK_SIZE;
    uint64_t bat_bytes = (blocks * 4 + VPC_SECTOR - 1) / VPC_SECTOR * VPC_SECTOR;
    struct vpc_dyn_header h = {
        .data_offset = VPC_NO_OFFSET,   /* all 64 bits: what Microsoft's tools expect */
        .table_offset = VPC_BAT_AT,
        .version = VPC_VERSION,
        .max_table_entries = (uint32_t)blocks,
        .block_size = VPC_BLOCK_SIZE,
    };
    uint8_t header[VPC_DYN_HEADER_SIZE];
    g_autofree uint8_t *bat = g_malloc(MAX(bat_bytes, 1));

    vpc_dyn_header_encode(&h, header);
    memset(bat, 0xff, bat_bytes);
    if (diskimg_node_pwrite(file, footer, VPC_FOOTER_SIZE, 0, 0, errp) < 0 ||
        diskimg_node_pwrite(file, header, sizeof(header), VPC_FOOTER_SIZE, 0, errp) < 0 ||
        (bat_bytes && diskimg_node_pwrite(file, bat, bat_bytes, VPC_BAT_AT, 0, errp) < 0))
        return -1;
    return diskimg_node_pwrite(file, footer, VPC_FOOTER_SIZE, VPC_BAT_AT + bat_bytes, 0, errp);
}

/* The choices create and measure share: subformat, force_size, and the
 * virtual size as qemu rounds it (whole sectors, then CHS geometry unless
 * force_size). */
struct vpc_plan {
    bool fixed, force;
    struct vpc_geometry geo;
    uint64_t total;
};

static int plan_image(const diskimg_options *options, uint64_t requested, struct vpc_plan *p,
                      GError **errp)
{
    const char *sub = options ? diskimg_options_get_str(options, "subformat") : NULL;

    p->fixed = sub && strcmp(sub, "fixed") == 0;
    p->force = options && diskimg_options_get_bool(options, "force_size", false);
    if (requested > UINT64_MAX - VPC_SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "The image size is too large for file format 'vpc'");
    uint64_t size = (requested + VPC_SECTOR - 1) / VPC_SECTOR * VPC_SECTOR;
    return vpc_create_geometry(size, p->force, &p->geo, &p->total, errp);
}

int vpc_create(const struct diskimg_format_create_args *args, GError **errp)
{
    struct vpc_plan p;
    struct vpc_footer f;
    uint8_t footer[VPC_FOOTER_SIZE];

    if (plan_image(args->options, args->size, &p, errp) < 0)
        return -1;
    make_footer(&f, p.total, &p.geo, p.fixed, p.force);
    vpc_footer_encode(&f, footer);
    return p.fixed ? create_fixed(args->file, p.total, footer, errp)
                   : create_dynamic(args->file, p.total, footer, errp);
}

/*
 * Not in qemu-img 7.2 (its vpc driver has no measure).  A fixed disk is
 * its whole data area and the footer, as raw is measured (qemu counts a
 * raw target's every sector as required).  A dynamic disk as create lays
 * it out: footer copy, dynamic header, BAT, footer, and per block that a
 * copy would write its sector bitmap and 2 MiB of data.
 */
int vpc_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                GError **errp)
{
    struct vpc_plan p;
    uint64_t used = 0;

    if (plan_image(args->options, args->size, &p, errp) < 0)
        return -1;
    if (p.fixed) {
        res->required = res->fully_allocated = p.total + VPC_FOOTER_SIZE;
        return 0;
    }
    uint64_t blocks = (p.total + VPC_BLOCK_SIZE - 1) / VPC_BLOCK_SIZE;
    uint64_t bat_bytes = (blocks * 4 + VPC_SECTOR - 1) / VPC_SECTOR * VPC_SECTOR;
    uint64_t metadata = VPC_BAT_AT + bat_bytes + VPC_FOOTER_SIZE;
    uint64_t per_block = (uint64_t)vpc_bitmap_size(VPC_BLOCK_SIZE) + VPC_BLOCK_SIZE;

    if (args->source &&
        diskimg_measure_data_blocks(args->source, MIN(args->size, p.total), VPC_BLOCK_SIZE,
                                    &used, errp) < 0)
        return -1;
    res->fully_allocated = metadata + blocks * per_block;
    res->required = metadata + used * per_block;
    return 0;
}
