/* SPDX-License-Identifier: MIT */
/*
 * header.c — the VDI header: validation on open (qemu 7.2's checks, in
 * its words, plus the layout checks a writer needs), encoding on create,
 * and the block map's consistency with it.
 */
#include <string.h>

#include "vdi.h"

static bool uuid_is_null(const uint8_t *u)
{
    static const uint8_t null_uuid[16];

    return memcmp(u, null_uuid, sizeof(null_uuid)) == 0;
}

uint64_t vdi_bmap_bytes(uint32_t blocks)
{
    return ((uint64_t)blocks * 4 + VDI_SECTOR - 1) / VDI_SECTOR * VDI_SECTOR;
}

/* Reads the fields into *h; the reader names the field of a short header. */
static int read_fields(const struct diskimg_reader *r, struct vdi_header *h, uint32_t *sig,
                       uint32_t *version, uint32_t *sector_size, GError **errp)
{
    if (diskimg_read_u32(r, VDI_OFF_SIGNATURE, "signature", sig, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_VERSION, "version", version, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_IMAGE_TYPE, "image_type", &h->image_type, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_OFFSET_BMAP, "offset_bmap", &h->offset_bmap, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_OFFSET_DATA, "offset_data", &h->offset_data, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_SECTOR_SIZE, "sector_size", sector_size, errp) < 0 ||
        diskimg_read_u64(r, VDI_OFF_DISK_SIZE, "disk_size", &h->disk_size, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_BLOCK_SIZE, "block_size", &h->block_size, errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_BLOCKS_IN_IMAGE, "blocks_in_image", &h->blocks_in_image,
                         errp) < 0 ||
        diskimg_read_u32(r, VDI_OFF_BLOCKS_ALLOCATED, "blocks_allocated",
                         &h->blocks_allocated, errp) < 0)
        return -1;
    return 0;
}

/* qemu's checks, in its order and words. */
static int check_like_qemu(const struct diskimg_reader *r, struct vdi_header *h, uint32_t sig,
                           uint32_t version, uint32_t sector_size, GError **errp)
{
    const int NS = DISKIMG_ERROR_NOT_SUPPORTED;

    if (h->disk_size > VDI_DISK_SIZE_MAX)
        return diskimg_set_error(errp, NS, "Unsupported VDI image size (size is 0x%" PRIx64
                                 ", max supported is 0x%" PRIx64 ")", h->disk_size,
                                 VDI_DISK_SIZE_MAX);
    /* VBoxManage convertfromraw writes odd sizes; qemu rounds them up. */
    h->disk_size = (h->disk_size + VDI_SECTOR - 1) / VDI_SECTOR * VDI_SECTOR;
    if (sig != VDI_SIGNATURE)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image not in VDI format (bad signature %08" PRIx32 ")", sig);
    if (version != VDI_VERSION_1_1)
        return diskimg_set_error(errp, NS, "unsupported VDI image (version %" PRIu32
                                 ".%" PRIu32 ")", version >> 16, version & 0xffff);
    if (h->offset_bmap % VDI_SECTOR)
        return diskimg_set_error(errp, NS, "unsupported VDI image (unaligned block map "
                                 "offset 0x%" PRIx32 ")", h->offset_bmap);
    if (h->offset_data % VDI_SECTOR)
        return diskimg_set_error(errp, NS, "unsupported VDI image (unaligned data offset "
                                 "0x%" PRIx32 ")", h->offset_data);
    if (sector_size != VDI_SECTOR)
        return diskimg_set_error(errp, NS, "unsupported VDI image (sector size %" PRIu32
                                 " is not %u)", sector_size, VDI_SECTOR);
    if (h->block_size != VDI_BLOCK_SIZE)
        return diskimg_set_error(errp, NS, "unsupported VDI image (block size %" PRIu32
                                 " is not %u)", h->block_size, VDI_BLOCK_SIZE);
    if (h->disk_size > (uint64_t)h->blocks_in_image * h->block_size)
        return diskimg_set_error(errp, NS, "unsupported VDI image (disk size %" PRIu64
                                 ", image bitmap has room for %" PRIu64 ")", h->disk_size,
                                 (uint64_t)h->blocks_in_image * h->block_size);
    if (!uuid_is_null(diskimg_read_bytes(r, VDI_OFF_UUID_LINK, 16, "uuid_link", NULL)))
        return diskimg_set_error(errp, NS, "unsupported VDI image (non-NULL link UUID)");
    if (!uuid_is_null(diskimg_read_bytes(r, VDI_OFF_UUID_PARENT, 16, "uuid_parent", NULL)))
        return diskimg_set_error(errp, NS, "unsupported VDI image (non-NULL parent UUID)");
    if (h->blocks_in_image > VDI_BLOCKS_MAX)
        return diskimg_set_error(errp, NS, "unsupported VDI image (too many blocks %" PRIu32
                                 ", max is %u)", h->blocks_in_image, VDI_BLOCKS_MAX);
    return 0;
}

/* What qemu leaves unchecked but a reader and writer rely on: the header,
 * the block map and the data area must not overlap, and the allocation
 * count must fit the map.  (Any image_type but static is dynamic, as in
 * qemu.) */
static int check_layout(const struct vdi_header *h, GError **errp)
{
    const int C = DISKIMG_ERROR_CORRUPT;
    uint64_t bmap_end = (uint64_t)h->offset_bmap + (uint64_t)h->blocks_in_image * 4;

    if (h->offset_bmap < VDI_HEADER_LEN)
        return diskimg_set_error(errp, C, "VDI header field 'offset_bmap' (0x%" PRIx32
                                 ") lies inside the header", h->offset_bmap);
    if (h->offset_data < bmap_end)
        return diskimg_set_error(errp, C, "VDI header field 'offset_data' (0x%" PRIx32
                                 ") lies inside the block map (0x%" PRIx32 "..0x%" PRIx64 ")",
                                 h->offset_data, h->offset_bmap, bmap_end);
    if (h->blocks_allocated > h->blocks_in_image)
        return diskimg_set_error(errp, C, "VDI header field 'blocks_allocated' (%" PRIu32
                                 ") exceeds blocks_in_image (%" PRIu32 ")",
                                 h->blocks_allocated, h->blocks_in_image);
    return 0;
}

int vdi_header_parse(const uint8_t *buf, size_t len, struct vdi_header *h, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, len, DISKIMG_LITTLE_ENDIAN, NULL,
                                                  "VDI header");
    uint32_t sig, version, sector_size;

    memset(h, 0, sizeof(*h));
    if (read_fields(&r, h, &sig, &version, &sector_size, errp) < 0 ||
        !diskimg_read_bytes(&r, VDI_OFF_UUID_PARENT, 16, "uuid_parent", errp))
        return -1;
    if (check_like_qemu(&r, h, sig, version, sector_size, errp) < 0)
        return -1;
    return check_layout(h, errp);
}

/* A random (version 4) UUID stored as VirtualBox does: its first three
 * fields little endian, as qemu's vdi_header_to_le leaves them. */
static void put_random_uuid(uint8_t *out)
{
    uint8_t u[16];

    for (int i = 0; i < 16; i += 4)
        diskimg_put_be32(u + i, g_random_int());
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    static const uint8_t order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
    for (int i = 0; i < 16; i++)
        out[i] = u[order[i]];
}

void vdi_header_build(uint8_t *buf, const struct vdi_header *h)
{
    memset(buf, 0, VDI_HEADER_LEN);
    memcpy(buf, VDI_TEXT, strlen(VDI_TEXT));
    diskimg_put_le32(buf + VDI_OFF_SIGNATURE, VDI_SIGNATURE);
    diskimg_put_le32(buf + VDI_OFF_VERSION, VDI_VERSION_1_1);
    diskimg_put_le32(buf + VDI_OFF_HEADER_SIZE, VDI_HEADER_SIZE_1_1);
    diskimg_put_le32(buf + VDI_OFF_IMAGE_TYPE, h->image_type);
    diskimg_put_le32(buf + VDI_OFF_OFFSET_BMAP, h->offset_bmap);
    diskimg_put_le32(buf + VDI_OFF_OFFSET_DATA, h->offset_data);
    diskimg_put_le32(buf + VDI_OFF_SECTOR_SIZE, VDI_SECTOR);
    diskimg_put_le64(buf + VDI_OFF_DISK_SIZE, h->disk_size);
    diskimg_put_le32(buf + VDI_OFF_BLOCK_SIZE, h->block_size);
    diskimg_put_le32(buf + VDI_OFF_BLOCKS_IN_IMAGE, h->blocks_in_image);
    diskimg_put_le32(buf + VDI_OFF_BLOCKS_ALLOCATED, h->blocks_allocated);
    put_random_uuid(buf + VDI_OFF_UUID_IMAGE);
    put_random_uuid(buf + VDI_OFF_UUID_LAST_SNAP);
}

void vdi_map_layout(const struct vdi_header *h, struct diskimg_blockmap_layout *layout)
{
    *layout = (struct diskimg_blockmap_layout){
        .struct_size = sizeof(*layout),
        .block_size = h->block_size,
        .base = h->offset_data,
        .unit = h->block_size,
        .unallocated = VDI_UNALLOCATED,
        .zero = VDI_DISCARDED,
    };
}

/* For a normal open: every entry is a marker or the index of an allocated
 * block, and no two blocks share one (qemu allocates the next block at
 * index blocks_allocated, so anything else would let two guest blocks
 * share storage).  check opens without this and reports instead. */
int vdi_map_validate(const struct vdi_state *s, GError **errp)
{
    const diskimg_blockmap *m = s->map;
    g_autofree uint8_t *seen = g_try_malloc0(s->h.blocks_allocated / 8 + 1);

    if (!seen)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "block map: out of memory");
    for (uint32_t i = 0; i < diskimg_blockmap_count(m); i++) {
        uint32_t v = diskimg_blockmap_value(m, i);
        if (v == VDI_UNALLOCATED || v == VDI_DISCARDED)
            continue;
        if (v >= s->h.blocks_allocated)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "block map entry %" PRIu32 " (%" PRIu32 ") is not below "
                                     "blocks_allocated (%" PRIu32 "); run 'check'", i, v,
                                     s->h.blocks_allocated);
        if (seen[v / 8] & (1u << (v % 8)))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "block map entry %" PRIu32 " (%" PRIu32 ") names a block "
                                     "another entry uses; run 'check'", i, v);
        seen[v / 8] |= (uint8_t)(1u << (v % 8));
    }
    return 0;
}

/* Block map first, header (with the allocation count) after it, so that a
 * header never counts blocks the map does not hold. */
int vdi_write_metadata(struct vdi_state *s, GError **errp)
{
    if (diskimg_blockmap_is_dirty(s->map) &&
        diskimg_blockmap_write_back(s->map, s->file, errp) < 0)
        return -1;
    if (!s->header_dirty)
        return 0;
    diskimg_put_le32(s->raw_header + VDI_OFF_BLOCKS_ALLOCATED, s->h.blocks_allocated);
    if (diskimg_node_pwrite(s->file, s->raw_header, VDI_HEADER_LEN, 0, 0, errp) < 0)
        return -1;
    s->header_dirty = false;
    return 0;
}
