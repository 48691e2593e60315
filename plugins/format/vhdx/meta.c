/* SPDX-License-Identifier: MIT */
/*
 * meta.c — the metadata region (spec 2.6): a 64 KiB table of items, each
 * a GUID naming it, an offset into the region and a length, followed by
 * the items.  The five items every non-differencing image needs are read
 * here; an unknown item flagged required makes the image unreadable, as
 * the spec demands.
 */
#include <string.h>

#include "vhdx.h"

const vhdx_guid vhdx_guid_file_params = { { 0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
                                            0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b } };
const vhdx_guid vhdx_guid_disk_size = { { 0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
                                          0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8 } };
const vhdx_guid vhdx_guid_page83 = { { 0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
                                       0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 } };
const vhdx_guid vhdx_guid_logical_sector = { { 0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
                                               0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab,
                                               0x5f } };
const vhdx_guid vhdx_guid_physical_sector = { { 0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71,
                                                0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51,
                                                0xc5, 0x56 } };
const vhdx_guid vhdx_guid_parent_locator = { { 0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                               0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab,
                                               0x0c } };

/* Metadata entry flags. */
#define META_IS_USER     1u
#define META_IS_VIRTUAL  2u
#define META_IS_REQUIRED 4u

enum item { ITEM_PARAMS, ITEM_SIZE, ITEM_PAGE83, ITEM_LSS, ITEM_PSS, ITEM_PARENT, ITEM_COUNT };

static const struct {
    const vhdx_guid *guid;
    const char *name;
    uint32_t length;            /* exact length; 0 for the parent locator */
} items[ITEM_COUNT] = {
    [ITEM_PARAMS] = { &vhdx_guid_file_params, "file parameters", 8 },
    [ITEM_SIZE] = { &vhdx_guid_disk_size, "virtual disk size", 8 },
    [ITEM_PAGE83] = { &vhdx_guid_page83, "page 83 data", 16 },
    [ITEM_LSS] = { &vhdx_guid_logical_sector, "logical sector size", 4 },
    [ITEM_PSS] = { &vhdx_guid_physical_sector, "physical sector size", 4 },
    [ITEM_PARENT] = { &vhdx_guid_parent_locator, "parent locator", 0 },
};

struct found {
    bool present;
    uint32_t offset, length;
};

/* Reads the table at the start of the region into found[]. */
static int parse_table(struct vhdx_state *s, const struct diskimg_reader *r,
                       struct found found[ITEM_COUNT], GError **errp)
{
    uint16_t count;

    if (memcmp(r->data, "metadata", 8) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx metadata table: bad signature");
    if (diskimg_read_u16(r, 10, "entry_count", &count, errp) < 0)
        return -1;
    if (count > VHDX_META_MAX_ENTRIES)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx metadata table: field 'entry_count' (%u) exceeds %u",
                                 count, VHDX_META_MAX_ENTRIES);
    for (unsigned i = 0; i < count; i++) {
        struct diskimg_reader e;
        uint32_t offset, length, flags;
        const uint8_t *g;

        if (diskimg_reader_sub(r, 32 + 32 * (uint64_t)i, 32, "vhdx metadata table entry", &e,
                               errp) < 0 ||
            !(g = diskimg_read_bytes(&e, 0, 16, "item_id", errp)) ||
            diskimg_read_u32(&e, 16, "offset", &offset, errp) < 0 ||
            diskimg_read_u32(&e, 20, "length", &length, errp) < 0 ||
            diskimg_read_u32(&e, 24, "flags", &flags, errp) < 0)
            return -1;
        unsigned k = 0;
        while (k < ITEM_COUNT && memcmp(g, items[k].guid->b, 16) != 0)
            k++;
        if (k == ITEM_COUNT) {
            if (flags & META_IS_REQUIRED)
                return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                         "vhdx metadata table: entry %u is a required item "
                                         "this plugin does not know", i);
            continue;
        }
        if (found[k].present)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "vhdx metadata table: duplicate %s item", items[k].name);
        /* Items live past the table and inside the region. */
        if ((offset < VHDX_META_TABLE_SIZE && length) ||
            (uint64_t)offset + length > s->meta_region.length ||
            (items[k].length && length != items[k].length))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "vhdx metadata table: %s item (%" PRIu32
                                     " bytes at offset 0x%" PRIx32 ") is invalid",
                                     items[k].name, length, offset);
        found[k] = (struct found){ true, offset, length };
    }
    return 0;
}

static int check_values(struct vhdx_state *s, GError **errp)
{
    if (s->param_flags & VHDX_PARAM_HAS_PARENT)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "vhdx: differencing images are not supported");
    if (s->block_size < VHDX_BLOCK_MIN || s->block_size > VHDX_BLOCK_MAX ||
        (s->block_size & (s->block_size - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx file parameters: field 'block_size' (%" PRIu32
                                 ") is not a power of two between 1 MiB and 256 MiB",
                                 s->block_size);
    if (s->logical_sector != 512 && s->logical_sector != 4096)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx metadata: field 'logical_sector_size' (%" PRIu32
                                 ") is neither 512 nor 4096", s->logical_sector);
    if (s->physical_sector != 512 && s->physical_sector != 4096)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx metadata: field 'physical_sector_size' (%" PRIu32
                                 ") is neither 512 nor 4096", s->physical_sector);
    if (s->disk_size > VHDX_MAX_SIZE || s->disk_size % s->logical_sector)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx metadata: field 'virtual_disk_size' (%" PRIu64
                                 ") is not a multiple of the sector size up to 64 TiB",
                                 s->disk_size);
    return 0;
}

/* Reads one known item (at most 16 bytes) into a view of its own. */
static int read_item(struct vhdx_state *s, const struct found *f, unsigned k, uint8_t *buf,
                     struct diskimg_reader *r, GError **errp)
{
    if (diskimg_node_pread(s->file, buf, f->length, s->meta_region.offset + f->offset,
                           errp) < 0)
        return -1;
    *r = diskimg_reader_make(buf, f->length, DISKIMG_LITTLE_ENDIAN, NULL, items[k].name);
    return 0;
}

static int read_items(struct vhdx_state *s, const struct found found[ITEM_COUNT],
                      GError **errp)
{
    uint8_t params[8], size[8], page83[16], lss[4], pss[4];
    struct diskimg_reader r[5];
    const uint8_t *guid;

    if (read_item(s, &found[ITEM_PARAMS], ITEM_PARAMS, params, &r[0], errp) < 0 ||
        read_item(s, &found[ITEM_SIZE], ITEM_SIZE, size, &r[1], errp) < 0 ||
        read_item(s, &found[ITEM_PAGE83], ITEM_PAGE83, page83, &r[2], errp) < 0 ||
        read_item(s, &found[ITEM_LSS], ITEM_LSS, lss, &r[3], errp) < 0 ||
        read_item(s, &found[ITEM_PSS], ITEM_PSS, pss, &r[4], errp) < 0)
        return -1;
    if (diskimg_read_u32(&r[0], 0, "block_size", &s->block_size, errp) < 0 ||
        diskimg_read_u32(&r[0], 4, "file_parameter_flags", &s->param_flags, errp) < 0 ||
        diskimg_read_u64(&r[1], 0, "virtual_disk_size", &s->disk_size, errp) < 0 ||
        !(guid = diskimg_read_bytes(&r[2], 0, 16, "page_83_data", errp)) ||
        diskimg_read_u32(&r[3], 0, "logical_sector_size", &s->logical_sector, errp) < 0 ||
        diskimg_read_u32(&r[4], 0, "physical_sector_size", &s->physical_sector, errp) < 0)
        return -1;
    memcpy(s->page83.b, guid, 16);
    return 0;
}

int vhdx_read_metadata(struct vhdx_state *s, GError **errp)
{
    struct found found[ITEM_COUNT] = { { 0 } };
    uint8_t *table = NULL;
    int ret = -1;

    if (s->meta_region.length < VHDX_META_TABLE_SIZE) {
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: metadata region (%" PRIu32
                                 " bytes) is smaller than its 64 KiB table",
                                 s->meta_region.length);
    }
    /* Only the table is held; the few items we need are read one by one,
     * so a region of any size costs 64 KiB. */
    if (diskimg_load_table(s->file, s->meta_region.offset, VHDX_META_TABLE_SIZE, 1,
                           VHDX_META_TABLE_SIZE, "vhdx metadata table", (void **)&table,
                           errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(table, VHDX_META_TABLE_SIZE,
                                                  DISKIMG_LITTLE_ENDIAN, NULL,
                                                  "vhdx metadata table");
    if (parse_table(s, &r, found, errp) < 0)
        goto out;
    for (unsigned k = 0; k < ITEM_PARENT; k++) {
        if (!found[k].present) {
            diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                              "vhdx metadata table: required %s item is missing",
                              items[k].name);
            goto out;
        }
    }
    if (read_items(s, found, errp) < 0)
        goto out;
    if ((s->param_flags & VHDX_PARAM_HAS_PARENT) && !found[ITEM_PARENT].present) {
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                          "vhdx metadata: the file parameters name a parent but there is "
                          "no parent locator item");
        goto out;
    }
    ret = check_values(s, errp);
out:
    g_free(table);
    return ret;
}

void vhdx_metadata_encode(uint8_t *buf, uint32_t block_size, uint64_t disk_size,
                          uint32_t sector_size, bool fixed)
{
    static const unsigned order[] = { ITEM_PARAMS, ITEM_SIZE, ITEM_PAGE83, ITEM_LSS,
                                      ITEM_PSS };
    uint32_t at = VHDX_META_TABLE_SIZE;
    vhdx_guid page83;

    memset(buf, 0, MiB);
    memcpy(buf, "metadata", 8);
    diskimg_put_le16(buf + 10, G_N_ELEMENTS(order));
    for (unsigned i = 0; i < G_N_ELEMENTS(order); i++) {
        unsigned k = order[i];
        uint8_t *e = buf + 32 + 32 * i;
        memcpy(e, items[k].guid->b, 16);
        diskimg_put_le32(e + 16, at);
        diskimg_put_le32(e + 20, items[k].length);
        /* The disk's own properties are "virtual disk" items; the file
         * parameters describe the file (qemu sets the same bits). */
        diskimg_put_le32(e + 24, META_IS_REQUIRED | (k == ITEM_PARAMS ? 0 : META_IS_VIRTUAL));
        at += items[k].length;
    }
    uint8_t *item = buf + VHDX_META_TABLE_SIZE;
    diskimg_put_le32(item, block_size);
    diskimg_put_le32(item + 4, fixed ? VHDX_PARAM_LEAVE_ALLOCATED : 0);
    diskimg_put_le64(item + 8, disk_size);
    vhdx_guid_generate(&page83);
    memcpy(item + 16, page83.b, 16);
    diskimg_put_le32(item + 32, sector_size);
    diskimg_put_le32(item + 36, sector_size);
}
