/* SPDX-License-Identifier: MIT */
/*
 * sesparse.c — ESXi seSparse extents, read only (as qemu 7.2).
 *
 * The format is not documented; the layout and the strict checks follow
 * what qemu accepts.  A 512-byte constant header of 64-bit fields (magic
 * 0xcafebabe, version 2.1, 4 KiB grains, 4096-entry grain tables, no
 * flags) places a volatile header (magic 0xcafecafe; a journal left to
 * replay is refused), the grain directory, the grain tables and the
 * grains.  Directory entries are 0 or 0x10000000'TTTTTTTT (table number
 * T); table entries are 0 (unallocated), 0x1... or 0x2... (reads as
 * zero) or 0x3... (allocated: a grain number split over bits 48-59 and
 * 0-47).
 */
#include "vmdk.h"

#include <string.h>

#define SE_CONST_MAGIC 0xcafebabeull
#define SE_VOLATILE_MAGIC 0xcafecafeull
#define SE_VERSION 0x0000000200000001ull
#define SE_GRAIN_SECTORS 8u
#define SE_GT_SECTORS 64u
#define SE_GTES (SE_GT_SECTORS * VMDK_SECTOR / 8)

struct vmdk_sesparse {
    uint64_t *gd;              /* host order */
    uint64_t tables, grains;   /* sectors */
};

static int se_error(GError **errp, const char *filename, const char *field, uint64_t v,
                    const char *why)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s%sseSparse header: field '%s' (0x%" PRIx64 ") %s", VMDK_WHERE(filename),
                             field, v, why);
}

/* The fields of the constant header that qemu requires to have one value. */
static int check_fixed(const struct diskimg_reader *r, const char *filename, GError **errp)
{
    static const struct { uint64_t off; const char *field; uint64_t want; } fixed[] = {
        { 0, "magic", SE_CONST_MAGIC }, { 8, "version", SE_VERSION },
        { 24, "grain_size", SE_GRAIN_SECTORS }, { 32, "grain_table_size", SE_GT_SECTORS },
        { 40, "flags", 0 }, { 48, "reserved1", 0 }, { 56, "reserved2", 0 },
        { 64, "reserved3", 0 }, { 72, "reserved4", 0 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(fixed); i++) {
        uint64_t v;
        if (diskimg_read_u64(r, fixed[i].off, fixed[i].field, &v, errp) < 0)
            return -1;
        if (v != fixed[i].want)
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                     "%s%sseSparse header: unsupported %s 0x%" PRIx64, VMDK_WHERE(filename),
                                     fixed[i].field, v);
    }
    return 0;
}

static int check_volatile(struct vmdk_extent *e, uint64_t sector, const char *filename,
                          GError **errp)
{
    uint8_t v[VMDK_SECTOR];
    if (sector >= e->file_size / VMDK_SECTOR)
        return se_error(errp, filename, "volatile_header_offset", sector,
                        "lies beyond the end of the file");
    if (diskimg_node_pread(e->file, v, sizeof(v), sector * VMDK_SECTOR, errp) < 0)
        return -1;
    if (diskimg_le64(v) != SE_VOLATILE_MAGIC)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%sseSparse volatile header: bad magic 0x%" PRIx64, VMDK_WHERE(filename),
                                 diskimg_le64(v));
    if (diskimg_le64(v + 24))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s%sImage is dirty, Replaying journal not supported", VMDK_WHERE(filename));
    return 0;
}

int vmdk_sesparse_open(struct vmdk_extent *e, const char *filename, GError **errp)
{
    int64_t size = diskimg_node_size(e->file, errp);
    if (size < 0)
        return -1;
    e->file_size = (uint64_t)size;
    uint8_t h[VMDK_SECTOR] = { 0 };
    if (diskimg_node_pread(e->file, h, sizeof(h), 0, errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(h, sizeof(h), DISKIMG_LITTLE_ENDIAN, filename,
                                                  "seSparse header");
    uint64_t capacity, vol, gd, gd_size, tables, grains;
    if (check_fixed(&r, filename, errp) < 0 ||
        diskimg_read_u64(&r, 16, "capacity", &capacity, errp) < 0 ||
        diskimg_read_u64(&r, 80, "volatile_header_offset", &vol, errp) < 0 ||
        diskimg_read_u64(&r, 128, "grain_dir_offset", &gd, errp) < 0 ||
        diskimg_read_u64(&r, 136, "grain_dir_size", &gd_size, errp) < 0 ||
        diskimg_read_u64(&r, 144, "grain_tables_offset", &tables, errp) < 0 ||
        diskimg_read_u64(&r, 192, "grains_offset", &grains, errp) < 0 ||
        check_volatile(e, vol, filename, errp) < 0)
        return -1;
    if (capacity == 0 || capacity > (1ull << 40))
        return se_error(errp, filename, "capacity", capacity, "is not between 1 and 2^40 sectors");
    uint64_t entries = gd_size * VMDK_SECTOR / 8;
    uint64_t needed = (capacity + (uint64_t)SE_GTES * SE_GRAIN_SECTORS - 1) /
                      ((uint64_t)SE_GTES * SE_GRAIN_SECTORS);
    if (gd_size > VMDK_MAX_GD_ENTRIES / 64 || entries < needed)
        return se_error(errp, filename, "grain_dir_size", gd_size,
                        "does not fit the disk's capacity");
    if (tables > e->file_size / VMDK_SECTOR || grains > e->file_size / VMDK_SECTOR)
        return se_error(errp, filename, tables > grains ? "grain_tables_offset" : "grains_offset",
                        MAX(tables, grains), "lies beyond the end of the file");
    struct vmdk_sesparse *se = g_new0(struct vmdk_sesparse, 1);
    e->sesparse = se;
    se->tables = tables;
    se->grains = grains;
    if (diskimg_load_u64_table(e->file, gd * VMDK_SECTOR, entries, 0, DISKIMG_LITTLE_ENDIAN,
                               (uint64_t)VMDK_MAX_GD_ENTRIES * 8, "grain directory", &se->gd,
                               errp) < 0) {
        g_prefix_error(errp, "%s%s", VMDK_WHERE(filename));
        return -1;
    }
    e->header_capacity = capacity;
    e->grain = SE_GRAIN_SECTORS * VMDK_SECTOR;
    e->gtes = SE_GTES;
    e->gd_entries = (uint32_t)entries;
    e->next_alloc = e->file_size;
    e->read_only = true;
    e->gt_cache = diskimg_mcache_new(e->file, "grain table", VMDK_SECTOR, 1u << 20, errp);
    return e->gt_cache ? 0 : -1;
}

void vmdk_sesparse_free(struct vmdk_sesparse *se)
{
    if (!se)
        return;
    g_free(se->gd);
    g_free(se);
}

static int bad_entry(GError **errp, const struct vmdk_extent *e, const char *what, uint64_t idx,
                     uint64_t v)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: seSparse %s entry %" PRIu64 " (0x%016" PRIx64 ") is invalid",
                             diskimg_node_filename(e->file), what, idx, v);
}

int vmdk_sesparse_lookup(struct vmdk_extent *e, uint64_t off, enum vmdk_grain_state *state,
                         uint64_t *host, GError **errp)
{
    const struct vmdk_sesparse *se = e->sesparse;
    uint64_t g = off / e->grain, di = g / e->gtes, ti = g % e->gtes;
    *host = 0;
    *state = VMDK_GRAIN_UNALLOC;
    if (di >= e->gd_entries)
        return bad_entry(errp, e, "grain directory", di, 0);
    uint64_t d = se->gd[di];
    if (d == 0)
        return 0;
    if ((d >> 32) != 0x10000000u)
        return bad_entry(errp, e, "grain directory", di, d);
    uint64_t gt = (se->tables + (d & 0xffffffffu) * SE_GT_SECTORS) * VMDK_SECTOR;
    uint64_t where = gt + ti * 8;
    if (where + 8 > e->file_size)
        return bad_entry(errp, e, "grain directory", di, d);
    uint8_t *sec;
    if (diskimg_mcache_get(e->gt_cache, where & ~(uint64_t)(VMDK_SECTOR - 1), 0, &sec,
                           errp) < 0)
        return -1;
    uint64_t v = diskimg_le64(sec + where % VMDK_SECTOR);
    diskimg_mcache_put(e->gt_cache, sec);
    switch (v >> 60) {
    case 0:
        return v ? bad_entry(errp, e, "grain table", g, v) : 0;
    case 1:
    case 2:
        *state = VMDK_GRAIN_ZERO;
        return 0;
    case 3: {
        uint64_t n = ((v & 0x0fff000000000000ull) >> 48) | ((v & 0x0000ffffffffffffull) << 12);
        /* bounded by the file first, so that the offset cannot overflow */
        if (n >= e->file_size / e->grain)
            return bad_entry(errp, e, "grain table", g, v);
        uint64_t at = (se->grains + n * SE_GRAIN_SECTORS) * VMDK_SECTOR;
        if (at + e->grain > e->file_size)
            return bad_entry(errp, e, "grain table", g, v);
        *state = VMDK_GRAIN_DATA;
        *host = at;
        return 0;
    }
    default:
        return bad_entry(errp, e, "grain table", g, v);
    }
}
