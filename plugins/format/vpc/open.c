/* SPDX-License-Identifier: MIT */
/*
 * open.c — finding the footer, validating everything the image says
 * against the file, and loading a dynamic disk's BAT.
 *
 * Which footer counts is qemu 7.2's rule: the copy at offset 0 when it is
 * there (dynamic disks), else the one in the last sector (fixed disks).
 * Every offset and count is then checked against the file size and the
 * format's limits before anything is allocated or read.
 */
#include <string.h>

#include "vpc.h"

/* Guard kinds: the structures a block must never overlap. */
enum {
    VPC_OL_FOOTER_COPY = 1u << 0,
    VPC_OL_DYN_HEADER = 1u << 1,
    VPC_OL_BAT = 1u << 2,
};

static uint64_t round_up_sector(uint64_t v)
{
    return (v + VPC_SECTOR - 1) / VPC_SECTOR * VPC_SECTOR;
}

static enum vpc_size_rule size_rule(const diskimg_options *o)
{
    const char *calc = o ? diskimg_options_get_str(o, "force_size_calc") : NULL;

    if (calc && strcmp(calc, "chs") == 0)
        return VPC_SIZE_CHS;
    if (calc && strcmp(calc, "current_size") == 0)
        return VPC_SIZE_CURRENT;
    return VPC_SIZE_AUTO;
}

/* Reads the footer that describes the image into s->footer_bytes. */
static int find_footer(struct vpc *s, uint64_t file_size, GError **errp)
{
    uint8_t *buf = s->footer_bytes;

    if (file_size < VPC_FOOTER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "invalid VPC image (the file has %" PRIu64 " bytes, less "
                                 "than a VHD footer)", file_size);
    if (diskimg_node_pread(s->file, buf, VPC_FOOTER_SIZE, 0, errp) < 0)
        return -1;
    /* A fixed disk whose guest data starts with a VHD footer (an image
     * stored in an image) is still fixed: the copy at 0 counts only for
     * the types that have one. */
    if (vpc_has_cookie(buf, VPC_FOOTER_SIZE) &&
        diskimg_be32(buf + VPC_F_DISK_TYPE) != VPC_TYPE_FIXED)
        return 0;
    bool head_cookie = vpc_has_cookie(buf, VPC_FOOTER_SIZE);
    if (diskimg_node_pread(s->file, buf, VPC_FOOTER_SIZE, file_size - VPC_FOOTER_SIZE,
                           errp) < 0)
        return -1;
    if (!vpc_has_cookie(buf, VPC_FOOTER_SIZE))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 head_cookie ? "invalid VPC image (a fixed disk's footer is "
                                               "missing from the end of the file)"
                                             : "invalid VPC image (no footer cookie "
                                               "'conectix' at offset 0 or at the end of the "
                                               "file)");
    if (diskimg_be32(buf + VPC_F_DISK_TYPE) != VPC_TYPE_FIXED)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "invalid VPC image (the footer copy at offset 0 is missing "
                                 "and the footer at the end has disk_type %" PRIu32
                                 ", not 2 = fixed)",
                                 diskimg_be32(buf + VPC_F_DISK_TYPE));
    return 0;
}

static int check_disk_type(uint32_t type, GError **errp)
{
    if (type == VPC_TYPE_FIXED || type == VPC_TYPE_DYNAMIC)
        return 0;
    if (type == VPC_TYPE_DIFFERENCING)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Differencing VHD images are not supported (footer field "
                                 "'disk_type' is 4)");
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "Invalid disk type %" PRIu32 " (VHD footer field 'disk_type')",
                             type);
}

static int check_size(struct vpc *s, uint64_t file_size, GError **errp)
{
    if (s->size / VPC_SECTOR > VPC_MAX_SECTORS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "File too large (virtual size %" PRIu64 " from the VHD "
                                 "footer's geometry or 'current_size'; at most 2040 GiB)",
                                 s->size);
    if (s->fixed && s->size > file_size - VPC_FOOTER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Virtual size %" PRIu64 " (VHD footer geometry or "
                                 "'current_size') exceeds the %" PRIu64 " data bytes before "
                                 "the footer of this fixed disk", s->size,
                                 file_size - VPC_FOOTER_SIZE);
    return 0;
}

/* Reads and judges the dynamic header the footer points at. */
static int load_dyn_header(struct vpc *s, uint64_t file_size, struct vpc_dyn_header *h,
                           GError **errp)
{
    uint64_t at = s->footer.data_offset;
    uint8_t buf[VPC_DYN_HEADER_SIZE];

    if (at < VPC_FOOTER_SIZE || at > file_size || file_size - at < VPC_DYN_HEADER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "VHD footer field 'data_offset' (0x%" PRIx64 ") does not "
                                 "point at a dynamic header inside the file (%" PRIu64
                                 " bytes)", at, file_size);
    if (diskimg_node_pread(s->file, buf, sizeof(buf), at, errp) < 0 ||
        vpc_dyn_header_parse(buf, h, errp) < 0)
        return -1;
    if (vpc_checksum(buf, sizeof(buf), VPC_H_CHECKSUM) != h->checksum)
        diskimg_warn("%s: the VHD dynamic header checksum is incorrect (field 'checksum' "
                     "0x%08" PRIx32 "); reading the image anyway, as qemu does",
                     diskimg_node_filename(s->file), h->checksum);
    if (h->block_size < VPC_SECTOR || (h->block_size & (h->block_size - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid block size %" PRIu32 " (VHD dynamic header field "
                                 "'block_size' must be a power of two of at least 512)",
                                 h->block_size);
    return 0;
}

/* The table: how many entries are used, and that the image's count is
 * neither too small for the size nor absurd for the format. */
static int check_table_geometry(struct vpc *s, const struct vpc_dyn_header *h, GError **errp)
{
    uint64_t needed = (s->size + h->block_size - 1) / h->block_size;

    if (h->max_table_entries < needed)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Page table too small (VHD dynamic header field "
                                 "'max_table_entries' is %" PRIu32 ", the virtual size needs "
                                 "%" PRIu64 ")", h->max_table_entries, needed);
    if (h->max_table_entries > VPC_MAX_SECTORS * VPC_SECTOR / h->block_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Max Table Entries too large (VHD dynamic header field "
                                 "'max_table_entries' is %" PRIu32 ")", h->max_table_entries);
    s->block_size = h->block_size;
    s->bitmap_size = vpc_bitmap_size(h->block_size);
    s->bat_offset = h->table_offset;
    s->bat_entries = h->max_table_entries;
    s->blocks = (uint32_t)needed;
    return 0;
}

struct block_ref {
    uint64_t start;
    uint32_t index;
};

static int compare_blocks(const void *a, const void *b)
{
    const struct block_ref *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* No two BAT entries may share storage: a write through one would change
 * the other's data. */
static int check_blocks_disjoint(struct vpc *s, GError **errp)
{
    uint64_t span = (uint64_t)s->bitmap_size + s->block_size;
    g_autofree struct block_ref *refs = g_new(struct block_ref, MAX(s->blocks, 1u));
    size_t n = 0;

    for (uint32_t i = 0; i < s->blocks; i++) {
        if (s->bat[i] != VPC_BAT_UNUSED)
            refs[n++] = (struct block_ref){ (uint64_t)s->bat[i] * VPC_SECTOR, i };
    }
    qsort(refs, n, sizeof(*refs), compare_blocks);
    for (size_t k = 1; k < n; k++) {
        if (refs[k].start < refs[k - 1].start + span)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "BAT entries %" PRIu32 " and %" PRIu32 " overlap (blocks "
                                     "at 0x%" PRIx64 " and 0x%" PRIx64 ")", refs[k - 1].index,
                                     refs[k].index, refs[k - 1].start, refs[k].start);
    }
    return 0;
}

/* Every allocated block lies in the file, clear of the metadata; the next
 * block goes after all of them and after the metadata. */
static int check_blocks(struct vpc *s, uint64_t file_size, uint64_t metadata_end,
                        GError **errp)
{
    uint64_t span = (uint64_t)s->bitmap_size + s->block_size;

    s->next_block = round_up_sector(metadata_end);
    for (uint32_t i = 0; i < s->blocks; i++) {
        if (s->bat[i] == VPC_BAT_UNUSED)
            continue;
        uint64_t start = (uint64_t)s->bat[i] * VPC_SECTOR;
        if (start + span > file_size)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "block-vpc: free_data_block_offset points after the end "
                                     "of file. The image has been truncated. (BAT entry %"
                                     PRIu32 ": block at 0x%" PRIx64 " ends past the file's %"
                                     PRIu64 " bytes)", i, start, file_size);
        const char *hit = diskimg_guard_find(s->guard, 0, start, span);
        if (hit)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "BAT entry %" PRIu32 " (block at 0x%" PRIx64 ") overlaps "
                                     "the %s", i, start, hit);
        s->next_block = MAX(s->next_block, start + span);
    }
    return check_blocks_disjoint(s, errp);
}

static int load_bat(struct vpc *s, uint64_t file_size, GError **errp)
{
    void *table = NULL;

    if (s->bat_offset < VPC_FOOTER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "VHD dynamic header field 'table_offset' (0x%" PRIx64 ") "
                                 "points into the footer copy", s->bat_offset);
    if (diskimg_load_table(s->file, s->bat_offset, s->blocks, 4, VPC_MAX_BAT_BYTES,
                           "BAT", &table, errp) < 0)
        return -1;
    s->bat = table;
    for (uint32_t i = 0; i < s->blocks; i++)
        s->bat[i] = diskimg_be32(&s->bat[i]);

    /* Only the used entries are loaded, but the whole table is the
     * image's: qemu places new blocks after it, and so do we. */
    uint64_t bat_len = (uint64_t)s->bat_entries * 4;
    if (s->bat_offset + bat_len > file_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "block-vpc: free_data_block_offset points after the end of "
                                 "file. The image has been truncated. (the BAT's %" PRIu32
                                 " entries at 0x%" PRIx64 " end past the file's %" PRIu64
                                 " bytes)", s->bat_entries, s->bat_offset, file_size);
    uint64_t header_end = s->footer.data_offset + VPC_DYN_HEADER_SIZE;
    diskimg_guard_add(s->guard, VPC_OL_FOOTER_COPY, "footer copy", 0, VPC_FOOTER_SIZE);
    diskimg_guard_add(s->guard, VPC_OL_DYN_HEADER, "dynamic header", s->footer.data_offset,
                      VPC_DYN_HEADER_SIZE);
    diskimg_guard_add(s->guard, VPC_OL_BAT, "BAT", s->bat_offset, round_up_sector(bat_len));
    if (diskimg_guard_find(s->guard, VPC_OL_BAT, s->bat_offset, round_up_sector(bat_len)))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "VHD dynamic header field 'table_offset' (0x%" PRIx64 ") "
                                 "makes the BAT overlap the dynamic header", s->bat_offset);
    return check_blocks(s, file_size, MAX(header_end, s->bat_offset + bat_len), errp);
}

static int open_dynamic(struct vpc *s, uint64_t file_size, GError **errp)
{
    struct vpc_dyn_header h;

    if (load_dyn_header(s, file_size, &h, errp) < 0 || check_table_geometry(s, &h, errp) < 0)
        return -1;
    s->guard = diskimg_guard_new();
    s->bitmap_full = g_malloc0(s->blocks / 8 + 1);
    return load_bat(s, file_size, errp);
}

void vpc_close(void *h)
{
    struct vpc *s = h;

    if (!s)
        return;
    g_rw_lock_clear(&s->lock);
    diskimg_guard_free(s->guard);
    g_free(s->bitmap_full);
    g_free(s->bat);
    g_free(s);
}

void *vpc_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct vpc *s = g_new0(struct vpc, 1);
    int64_t file_size = diskimg_node_size(args->file, errp);

    g_rw_lock_init(&s->lock);
    s->file = args->file;
    if (file_size < 0 || find_footer(s, (uint64_t)file_size, errp) < 0 ||
        vpc_footer_parse(s->footer_bytes, &s->footer, errp) < 0 ||
        check_disk_type(s->footer.disk_type, errp) < 0)
        goto fail;
    s->fixed = s->footer.disk_type == VPC_TYPE_FIXED;
    s->size = vpc_footer_virtual_size(&s->footer, size_rule(args->options));
    if (check_size(s, (uint64_t)file_size, errp) < 0)
        goto fail;
    if (!s->fixed && open_dynamic(s, (uint64_t)file_size, errp) < 0)
        goto fail;
    return s;

fail:
    vpc_close(s);
    return NULL;
}

/* How sure the last sector of a file makes us that it is a fixed VHD:
 * the cookie, a valid checksum, the fixed type and a size that fits the
 * data before it.  Guest data seldom satisfies all four by chance. */
int vpc_fixed_trailer_score(const uint8_t *buf, size_t len, uint64_t file_size)
{
    struct vpc_footer f;

    if (len < VPC_FOOTER_SIZE || file_size < VPC_FOOTER_SIZE ||
        !vpc_has_cookie(buf, len) || vpc_footer_parse(buf, &f, NULL) < 0 ||
        f.disk_type != VPC_TYPE_FIXED)
        return 0;
    uint64_t size = vpc_footer_virtual_size(&f, VPC_SIZE_AUTO);
    if (size / VPC_SECTOR > VPC_MAX_SECTORS || size > file_size - VPC_FOOTER_SIZE)
        return 0;
    return 100;
}
