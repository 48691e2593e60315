/* SPDX-License-Identifier: MIT */
/*
 * vdi.h — shared declarations of the VirtualBox VDI format plugin.
 *
 * Layout (VDI 1.1, little endian, as qemu 7.2's block/vdi.c reads it): a
 * 512-byte header, the block map (one 32-bit entry per 1 MiB guest block:
 * the index of its data block, or a marker), then the data blocks in
 * allocation order from offset_data on.
 */
#ifndef DISKIMG_VDI_H
#define DISKIMG_VDI_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

#define VDI_SECTOR          512u
#define VDI_HEADER_LEN      512u            /* what is read and rewritten */
#define VDI_BLOCK_SIZE      (1u << 20)      /* the only size qemu accepts */
#define VDI_SIGNATURE       0xbeda107fu
#define VDI_VERSION_1_1     0x00010001u
#define VDI_HEADER_SIZE_1_1 0x180u          /* header_size qemu writes */
#define VDI_TYPE_DYNAMIC    1u
#define VDI_TYPE_STATIC     2u
#define VDI_UNALLOCATED     0xffffffffu     /* never written; reads as zeroes */
#define VDI_DISCARDED       0xfffffffeu     /* discarded; reads as zeroes */
/* qemu 7.2: the block map must fit in INT_MAX bytes rounded down to a
 * sector, so (0x7ffffe00 / 4) blocks. */
#define VDI_BLOCKS_MAX      0x1fffff80u
#define VDI_DISK_SIZE_MAX   ((uint64_t)VDI_BLOCKS_MAX * VDI_BLOCK_SIZE)
#define VDI_TEXT            "<<< QEMU VM Virtual Disk Image >>>\n"

/* Field offsets in the header. */
enum {
    VDI_OFF_SIGNATURE = 0x40,
    VDI_OFF_VERSION = 0x44,
    VDI_OFF_HEADER_SIZE = 0x48,
    VDI_OFF_IMAGE_TYPE = 0x4c,
    VDI_OFF_OFFSET_BMAP = 0x154,
    VDI_OFF_OFFSET_DATA = 0x158,
    VDI_OFF_SECTOR_SIZE = 0x168,
    VDI_OFF_DISK_SIZE = 0x170,
    VDI_OFF_BLOCK_SIZE = 0x178,
    VDI_OFF_BLOCKS_IN_IMAGE = 0x180,
    VDI_OFF_BLOCKS_ALLOCATED = 0x184,
    VDI_OFF_UUID_IMAGE = 0x188,
    VDI_OFF_UUID_LAST_SNAP = 0x198,
    VDI_OFF_UUID_LINK = 0x1a8,
    VDI_OFF_UUID_PARENT = 0x1b8,
};

/* The header fields the plugin uses, validated. */
struct vdi_header {
    uint32_t image_type;
    uint32_t offset_bmap, offset_data;
    uint64_t disk_size;              /* rounded up to whole sectors */
    uint32_t block_size;
    uint32_t blocks_in_image, blocks_allocated;
};

struct vdi_state {
    diskimg_node *file;
    const char *filename;
    struct vdi_header h;
    uint8_t raw_header[VDI_HEADER_LEN];  /* rewritten with blocks_allocated */
    bool header_dirty;
    bool writable;
    diskimg_blockmap *map;
    diskimg_tail *tail;              /* growth of the file for new blocks */
};

/* header.c */
int vdi_header_parse(const uint8_t *buf, size_t len, struct vdi_header *h, GError **errp);
void vdi_header_build(uint8_t *buf, const struct vdi_header *h);
void vdi_map_layout(const struct vdi_header *h, struct diskimg_blockmap_layout *layout);
uint64_t vdi_bmap_bytes(uint32_t blocks);
int vdi_map_validate(const struct vdi_state *s, GError **errp);
int vdi_write_metadata(struct vdi_state *s, GError **errp);

/* io.c */
int vdi_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int vdi_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp);
int vdi_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int vdi_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp);
int vdi_flush(void *h, GError **errp);
uint64_t vdi_used_end(const struct vdi_state *s);

/* create.c */
int vdi_create(const struct diskimg_format_create_args *args, GError **errp);
int vdi_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                GError **errp);

/* resize.c */
int vdi_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                 GError **errp);

/* check.c */
int vdi_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp);

#endif
