/* SPDX-License-Identifier: MIT */
/*
 * create.c — new VDI images laid out as qemu 7.2 writes them (header at 0,
 * block map at 0x200, data after the map rounded to a sector), and measure.
 */
#include <string.h>

#include "vdi.h"

#define MAP_CHUNK (1u << 20)

/* The header qemu writes for a disk of `size` bytes. */
static int plan_header(uint64_t size, bool is_static, struct vdi_header *h, GError **errp)
{
    if (size > VDI_DISK_SIZE_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Unsupported VDI image size (size is 0x%" PRIx64
                                 ", max supported is 0x%" PRIx64 ")", size, VDI_DISK_SIZE_MAX);
    uint64_t blocks = (size + VDI_BLOCK_SIZE - 1) / VDI_BLOCK_SIZE;
    *h = (struct vdi_header){
        .image_type = is_static ? VDI_TYPE_STATIC : VDI_TYPE_DYNAMIC,
        .offset_bmap = VDI_HEADER_LEN,
        .offset_data = (uint32_t)(VDI_HEADER_LEN + vdi_bmap_bytes((uint32_t)blocks)),
        .disk_size = size,
        .block_size = VDI_BLOCK_SIZE,
        .blocks_in_image = (uint32_t)blocks,
        .blocks_allocated = is_static ? (uint32_t)blocks : 0,
    };
    return 0;
}

/* qemu counts sizes in sectors: -o size=1000 makes a 1024-byte disk. */
static uint64_t sectors_up(uint64_t size)
{
    return size > UINT64_MAX - (VDI_SECTOR - 1) ? UINT64_MAX
                                                : (size + VDI_SECTOR - 1) / VDI_SECTOR * VDI_SECTOR;
}

/* The block map, written a megabyte at a time so that creating a huge
 * image needs no buffer the size of its map. */
static int write_bmap(diskimg_node *file, const struct vdi_header *h, GError **errp)
{
    const uint32_t per_chunk = MAP_CHUNK / 4;
    uint64_t bytes = vdi_bmap_bytes(h->blocks_in_image);
    g_autofree uint8_t *buf = g_malloc(MAP_CHUNK);

    for (uint64_t done = 0; done < bytes; done += MAP_CHUNK) {
        uint64_t n = MIN(MAP_CHUNK, bytes - done);
        uint64_t first = done / 4;
        memset(buf, 0, n);
        for (uint32_t i = 0; i < per_chunk && first + i < h->blocks_in_image; i++) {
            uint32_t block = (uint32_t)(first + i);
            diskimg_put_le32(buf + (uint64_t)i * 4,
                             h->image_type == VDI_TYPE_STATIC ? block : VDI_UNALLOCATED);
        }
        if (diskimg_node_pwrite(file, buf, n, h->offset_bmap + done, 0, errp) < 0)
            return -1;
    }
    return 0;
}

int vdi_create(const struct diskimg_format_create_args *args, GError **errp)
{
    bool is_static = diskimg_options_get_bool(args->options, "static", false);
    uint8_t header[VDI_HEADER_LEN];
    struct vdi_header h;

    if (plan_header(sectors_up(args->size), is_static, &h, errp) < 0)
        return -1;
    vdi_header_build(header, &h);
    if (diskimg_node_pwrite(args->file, header, sizeof(header), 0, 0, errp) < 0 ||
        write_bmap(args->file, &h, errp) < 0)
        return -1;
    /* A static image owns all its blocks from the start; a sparse file
     * makes them read as zeroes without writing them (as qemu does). */
    if (is_static)
        return diskimg_node_truncate(args->file,
                                     (uint64_t)h.offset_data +
                                         (uint64_t)h.blocks_in_image * VDI_BLOCK_SIZE,
                                     DISKIMG_PREALLOC_OFF, 0, errp);
    return 0;
}

int vdi_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                GError **errp)
{
    bool is_static = diskimg_options_get_bool(args->options, "static", false);
    struct vdi_header h;
    uint64_t used;

    if (plan_header(sectors_up(args->size), is_static, &h, errp) < 0)
        return -1;
    res->fully_allocated = (uint64_t)h.offset_data + (uint64_t)h.blocks_in_image * VDI_BLOCK_SIZE;
    if (is_static || !args->source) {
        res->required = is_static ? res->fully_allocated : h.offset_data;
        return 0;
    }
    if (diskimg_measure_data_blocks(args->source, args->size, VDI_BLOCK_SIZE, &used, errp) < 0)
        return -1;
    res->required = (uint64_t)h.offset_data + used * VDI_BLOCK_SIZE;
    return 0;
}
