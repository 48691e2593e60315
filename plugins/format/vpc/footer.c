/* SPDX-License-Identifier: MIT */
/*
 * footer.c — the VHD footer and dynamic header: parsing through the core's
 * bounded reader, encoding, and their checksum.  Only the layout is here;
 * what the values must satisfy against the file is open.c's business.
 */
#include <string.h>

#include "vpc.h"

/* The one's complement of the byte sum, the checksum field itself counted
 * as zero (both structures use it). */
uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t checksum_at)
{
    uint32_t sum = 0;

    for (size_t i = 0; i < len; i++) {
        if (i < checksum_at || i >= checksum_at + 4)
            sum += buf[i];
    }
    return ~sum;
}

bool vpc_has_cookie(const uint8_t *buf, size_t len)
{
    return len >= VPC_COOKIE_LEN && memcmp(buf, VPC_COOKIE, VPC_COOKIE_LEN) == 0;
}

/* Reads every field of a footer whose cookie is already known to match;
 * the checksum is compared, the values are not judged here. */
int vpc_footer_parse(const uint8_t *buf, struct vpc_footer *f, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, VPC_FOOTER_SIZE, DISKIMG_BIG_ENDIAN,
                                                  NULL, "VHD footer");
    const uint8_t *app, *os, *uuid;
    uint16_t cyl;
    uint8_t heads, secs;

    if (diskimg_read_u32(&r, VPC_F_FEATURES, "features", &f->features, errp) < 0 ||
        diskimg_read_u32(&r, VPC_F_VERSION, "version", &f->version, errp) < 0 ||
        diskimg_read_u64(&r, VPC_F_DATA_OFFSET, "data_offset", &f->data_offset, errp) < 0 ||
        diskimg_read_u32(&r, VPC_F_TIMESTAMP, "timestamp", &f->timestamp, errp) < 0 ||
        !(app = diskimg_read_bytes(&r, VPC_F_CREATOR_APP, 4, "creator_app", errp)) ||
        diskimg_read_u32(&r, VPC_F_CREATOR_VERSION, "creator_version", &f->creator_version,
                         errp) < 0 ||
        !(os = diskimg_read_bytes(&r, VPC_F_CREATOR_OS, 4, "creator_os", errp)) ||
        diskimg_read_u64(&r, VPC_F_ORIGINAL_SIZE, "original_size", &f->original_size,
                         errp) < 0 ||
        diskimg_read_u64(&r, VPC_F_CURRENT_SIZE, "current_size", &f->current_size, errp) < 0 ||
        diskimg_read_u16(&r, VPC_F_CYLINDERS, "cylinders", &cyl, errp) < 0 ||
        diskimg_read_u8(&r, VPC_F_HEADS, "heads", &heads, errp) < 0 ||
        diskimg_read_u8(&r, VPC_F_SECTORS, "sectors_per_track", &secs, errp) < 0 ||
        diskimg_read_u32(&r, VPC_F_DISK_TYPE, "disk_type", &f->disk_type, errp) < 0 ||
        diskimg_read_u32(&r, VPC_F_CHECKSUM, "checksum", &f->checksum, errp) < 0 ||
        !(uuid = diskimg_read_bytes(&r, VPC_F_UUID, 16, "uuid", errp)))
        return -1;
    memcpy(f->creator_app, app, 4);
    memcpy(f->creator_os, os, 4);
    memcpy(f->uuid, uuid, 16);
    f->geo = (struct vpc_geometry){ .cylinders = cyl, .heads = heads, .sectors = secs };

    uint32_t sum = vpc_checksum(buf, VPC_FOOTER_SIZE, VPC_F_CHECKSUM);
    /* qemu 7.2 refuses the image with this text (older versions only
     * warned); the values tell the user which side is wrong. */
    if (sum != f->checksum)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Incorrect header checksum (VHD footer field 'checksum' is "
                                 "0x%08x, the footer sums to 0x%08x)", f->checksum, sum);
    return 0;
}

void vpc_footer_encode(const struct vpc_footer *f, uint8_t buf[VPC_FOOTER_SIZE])
{
    memset(buf, 0, VPC_FOOTER_SIZE);
    memcpy(buf + VPC_F_COOKIE, VPC_COOKIE, VPC_COOKIE_LEN);
    diskimg_put_be32(buf + VPC_F_FEATURES, f->features);
    diskimg_put_be32(buf + VPC_F_VERSION, f->version);
    diskimg_put_be64(buf + VPC_F_DATA_OFFSET, f->data_offset);
    diskimg_put_be32(buf + VPC_F_TIMESTAMP, f->timestamp);
    memcpy(buf + VPC_F_CREATOR_APP, f->creator_app, 4);
    diskimg_put_be32(buf + VPC_F_CREATOR_VERSION, f->creator_version);
    memcpy(buf + VPC_F_CREATOR_OS, f->creator_os, 4);
    diskimg_put_be64(buf + VPC_F_ORIGINAL_SIZE, f->original_size);
    diskimg_put_be64(buf + VPC_F_CURRENT_SIZE, f->current_size);
    diskimg_put_be16(buf + VPC_F_CYLINDERS, f->geo.cylinders);
    buf[VPC_F_HEADS] = f->geo.heads;
    buf[VPC_F_SECTORS] = f->geo.sectors;
    diskimg_put_be32(buf + VPC_F_DISK_TYPE, f->disk_type);
    memcpy(buf + VPC_F_UUID, f->uuid, 16);
    diskimg_put_be32(buf + VPC_F_CHECKSUM, vpc_checksum(buf, VPC_FOOTER_SIZE, VPC_F_CHECKSUM));
}

/* The dynamic header, magic included.  qemu 7.2 never looks at this
 * checksum, so a wrong one is only a warning (see open.c). */
int vpc_dyn_header_parse(const uint8_t *buf, struct vpc_dyn_header *h, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, VPC_DYN_HEADER_SIZE, DISKIMG_BIG_ENDIAN,
                                                  NULL, "VHD dynamic header");
    const uint8_t *cookie;

    if (!(cookie = diskimg_read_bytes(&r, VPC_H_COOKIE, VPC_COOKIE_LEN, "cookie", errp)) ||
        diskimg_read_u64(&r, VPC_H_DATA_OFFSET, "data_offset", &h->data_offset, errp) < 0 ||
        diskimg_read_u64(&r, VPC_H_TABLE_OFFSET, "table_offset", &h->table_offset, errp) < 0 ||
        diskimg_read_u32(&r, VPC_H_VERSION, "header_version", &h->version, errp) < 0 ||
        diskimg_read_u32(&r, VPC_H_MAX_TABLE_ENTRIES, "max_table_entries",
                         &h->max_table_entries, errp) < 0 ||
        diskimg_read_u32(&r, VPC_H_BLOCK_SIZE, "block_size", &h->block_size, errp) < 0 ||
        diskimg_read_u32(&r, VPC_H_CHECKSUM, "checksum", &h->checksum, errp) < 0)
        return -1;
    if (memcmp(cookie, VPC_DYN_COOKIE, VPC_COOKIE_LEN) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid header magic (VHD dynamic header field 'cookie' "
                                 "is not '%s')", VPC_DYN_COOKIE);
    return 0;
}

void vpc_dyn_header_encode(const struct vpc_dyn_header *h, uint8_t buf[VPC_DYN_HEADER_SIZE])
{
    memset(buf, 0, VPC_DYN_HEADER_SIZE);
    memcpy(buf + VPC_H_COOKIE, VPC_DYN_COOKIE, VPC_COOKIE_LEN);
    diskimg_put_be64(buf + VPC_H_DATA_OFFSET, h->data_offset);
    diskimg_put_be64(buf + VPC_H_TABLE_OFFSET, h->table_offset);
    diskimg_put_be32(buf + VPC_H_VERSION, h->version);
    diskimg_put_be32(buf + VPC_H_MAX_TABLE_ENTRIES, h->max_table_entries);
    diskimg_put_be32(buf + VPC_H_BLOCK_SIZE, h->block_size);
    diskimg_put_be32(buf + VPC_H_CHECKSUM,
                     vpc_checksum(buf, VPC_DYN_HEADER_SIZE, VPC_H_CHECKSUM));
}

/* One bit per sector, in whole sectors.  (qemu computes block_size / 4096
 * rounded to a sector, which is 0 for blocks under 4 KiB; the
 * specification, followed here, always gives at least one sector.) */
uint32_t vpc_bitmap_size(uint32_t block_size)
{
    uint32_t bits = block_size / VPC_SECTOR;
    uint32_t bytes = (bits + 7) / 8;
    return (bytes + VPC_SECTOR - 1) / VPC_SECTOR * VPC_SECTOR;
}
