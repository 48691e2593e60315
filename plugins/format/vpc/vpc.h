/* SPDX-License-Identifier: MIT */
/*
 * vpc.h — the VHD ("vpc") format plugin: on-disk layout and the handle.
 *
 * A VHD is guest data plus a 512-byte big-endian *footer*.  A fixed disk
 * is the guest data stored flat with the footer after it.  A dynamic disk
 * starts with a copy of the footer, then a 1024-byte *dynamic header*
 * naming the *BAT* (block allocation table: one 32-bit sector number per
 * block, 0xffffffff = not allocated); each allocated block is a sector
 * bitmap followed by the block's data, and the footer ends the file.
 * Layout facts come from the VHD specification (libyal's write-up); what
 * qemu-img 7.2 does with them (sizes, checksums, limits) from block/vpc.c.
 */
#ifndef VPC_H
#define VPC_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>
#include <diskimg/guard.h>

#define VPC_SECTOR          512u
#define VPC_FOOTER_SIZE     512u
#define VPC_DYN_HEADER_SIZE 1024u
#define VPC_COOKIE          "conectix"
#define VPC_DYN_COOKIE      "cxsparse"
#define VPC_COOKIE_LEN      8u

enum vpc_disk_type {
    VPC_TYPE_FIXED = 2,
    VPC_TYPE_DYNAMIC = 3,
    VPC_TYPE_DIFFERENCING = 4,
};

#define VPC_BAT_UNUSED      UINT32_C(0xffffffff)
#define VPC_NO_OFFSET       UINT64_C(0xffffffffffffffff)
/* qemu's limits: 2040 GiB of guest data, and the largest CHS geometry,
 * which means "the size is in current_size, not in the geometry". */
#define VPC_MAX_SECTORS     UINT64_C(0xff000000)
#define VPC_CHS_MAX_SECTORS (UINT64_C(65535) * 16 * 255)
#define VPC_BLOCK_SIZE      (UINT32_C(2) << 20)     /* qemu creates 2 MiB blocks */
/* The largest BAT we load (32 Mi entries): 2040 GiB in 64 KiB blocks.
 * qemu-made images need 4 MiB of it at the maximum size. */
#define VPC_MAX_BAT_BYTES   (UINT64_C(128) << 20)
/* Footer timestamps count seconds from 2000-01-01 00:00:00 UTC. */
#define VPC_TIMESTAMP_BASE  INT64_C(946684800)

/* Field offsets of the footer (all big-endian). */
enum {
    VPC_F_COOKIE = 0,
    VPC_F_FEATURES = 8,
    VPC_F_VERSION = 12,
    VPC_F_DATA_OFFSET = 16,
    VPC_F_TIMESTAMP = 24,
    VPC_F_CREATOR_APP = 28,
    VPC_F_CREATOR_VERSION = 32,
    VPC_F_CREATOR_OS = 36,
    VPC_F_ORIGINAL_SIZE = 40,
    VPC_F_CURRENT_SIZE = 48,
    VPC_F_CYLINDERS = 56,
    VPC_F_HEADS = 58,
    VPC_F_SECTORS = 59,
    VPC_F_DISK_TYPE = 60,
    VPC_F_CHECKSUM = 64,
    VPC_F_UUID = 68,
    VPC_F_SAVED_STATE = 84,
};

/* Field offsets of the dynamic header. */
enum {
    VPC_H_COOKIE = 0,
    VPC_H_DATA_OFFSET = 8,
    VPC_H_TABLE_OFFSET = 16,
    VPC_H_VERSION = 24,
    VPC_H_MAX_TABLE_ENTRIES = 28,
    VPC_H_BLOCK_SIZE = 32,
    VPC_H_CHECKSUM = 36,
    VPC_H_PARENT_UUID = 40,
};

struct vpc_geometry {
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
};

struct vpc_footer {
    uint32_t features;
    uint32_t version;
    uint64_t data_offset;
    uint32_t timestamp;
    char creator_app[4];
    uint32_t creator_version;
    char creator_os[4];
    uint64_t original_size;
    uint64_t current_size;
    struct vpc_geometry geo;
    uint32_t disk_type;
    uint32_t checksum;
    uint8_t uuid[16];
};

struct vpc_dyn_header {
    uint64_t data_offset;
    uint64_t table_offset;
    uint32_t version;
    uint32_t max_table_entries;
    uint32_t block_size;
    uint32_t checksum;
};

/* How the virtual size is taken from a footer (the force_size_calc open
 * option of qemu). */
enum vpc_size_rule {
    VPC_SIZE_AUTO,          /* by creator application, as qemu 7.2 */
    VPC_SIZE_CHS,
    VPC_SIZE_CURRENT,
};

/* The open image. */
struct vpc {
    diskimg_node *file;
    uint8_t footer_bytes[VPC_FOOTER_SIZE];  /* as found: rewritten at the end */
    struct vpc_footer footer;
    bool fixed;
    uint64_t size;                  /* virtual size in bytes */

    /* dynamic disks only; `lock` guards the BAT, next_block and
     * bitmap_full: readers share it, allocating writers hold it alone */
    GRWLock lock;

    uint32_t block_size;
    uint32_t bitmap_size;           /* bytes before each block's data */
    uint64_t bat_offset;
    uint32_t bat_entries;           /* entries in the image's BAT */
    uint32_t blocks;                /* entries the virtual size uses (<= bat_entries) */
    uint32_t *bat;                  /* the used entries, host order */
    uint64_t next_block;            /* where the next block goes; the footer sits there */
    uint8_t *bitmap_full;           /* one bit per used entry: its sector bitmap is
                                     * known to be all ones (we wrote it) */
    diskimg_guard *guard;           /* footer copy, dynamic header, BAT */
};

/* footer.c */
uint32_t vpc_checksum(const uint8_t *buf, size_t len, size_t checksum_at);
bool vpc_has_cookie(const uint8_t *buf, size_t len);
int vpc_footer_parse(const uint8_t *buf, struct vpc_footer *f, GError **errp);
void vpc_footer_encode(const struct vpc_footer *f, uint8_t buf[VPC_FOOTER_SIZE]);
int vpc_dyn_header_parse(const uint8_t *buf, struct vpc_dyn_header *h, GError **errp);
void vpc_dyn_header_encode(const struct vpc_dyn_header *h, uint8_t buf[VPC_DYN_HEADER_SIZE]);
uint32_t vpc_bitmap_size(uint32_t block_size);

/* geometry.c */
void vpc_chs_for(uint64_t sectors, struct vpc_geometry *geo);
uint64_t vpc_chs_sectors(const struct vpc_geometry *geo);
int vpc_create_geometry(uint64_t size, bool force_size, struct vpc_geometry *geo,
                        uint64_t *total_size, GError **errp);
uint64_t vpc_footer_virtual_size(const struct vpc_footer *f, enum vpc_size_rule rule);

/* open.c */
void *vpc_open(const struct diskimg_format_open_args *args, GError **errp);
void vpc_close(void *h);
int vpc_fixed_trailer_score(const uint8_t *buf, size_t len, uint64_t file_size);

/* io.c */
int vpc_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int vpc_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp);
int vpc_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int vpc_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp);

/* create.c */
int vpc_create(const struct diskimg_format_create_args *args, GError **errp);
int vpc_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                GError **errp);

#endif /* VPC_H */
