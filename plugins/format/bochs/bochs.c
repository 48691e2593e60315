/* SPDX-License-Identifier: MIT */
/*
 * bochs.c — the "bochs" format: Bochs "growing" redolog images, read-only,
 * with the header rules of qemu 7.2's block/bochs.c.
 *
 * Layout (little endian):
 *   0    magic    "Bochs Virtual HD Image" (32 bytes, NUL padded)
 *   32   type     "Redolog" (16 bytes)
 *   48   subtype  "Growing" (16 bytes)
 *   64   version  0x00020000, or 0x00010000 for the older header
 *   68   header   size of the header = file offset of the catalog
 *   72   catalog  number of catalog entries (one per extent)
 *   76   bitmap   size of an extent's sector bitmap in bytes
 *   80   extent   size of an extent in bytes
 *   84   v1: disk size (u64);  v2: reserved (u32), then disk size at 88
 *
 * The catalog maps extent i of the disk to a stored extent (0xffffffff:
 * none).  Stored extent n starts at data_offset + n * (bitmap + extent
 * blocks) with its bitmap, one bit per sector (LSB first): a clear bit or
 * a missing extent reads as zeroes.
 *
 * Thread model: PARALLEL.  The handle does not change after open, and each
 * request reads the bitmaps it needs into its own buffer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <string.h>

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char bochs_schema_yaml[];

#define SECTOR 512u
#define HEADER_SIZE 512u
#define MAGIC "Bochs Virtual HD Image"
#define TYPE_REDOLOG "Redolog"
#define SUBTYPE_GROWING "Growing"
#define VERSION_CURRENT 0x00020000u
#define VERSION_V1 0x00010000u
#define UNALLOCATED 0xffffffffu
/* qemu's limits: 1M catalog entries is what bximage needs for its largest
 * image (~8 TB); extents of 512 bytes up to 8 MiB. */
#define MAX_CATALOG 0x100000u
#define MAX_EXTENT 0x800000u

struct bochs_header {
    uint32_t version;
    uint32_t header;           /* catalog offset */
    uint32_t catalog;          /* entries */
    uint32_t bitmap;           /* bytes */
    uint32_t extent;           /* bytes */
    uint64_t disk;             /* bytes */
};

struct bochs_state {
    diskimg_node *file;
    char *filename;
    uint64_t sectors;          /* virtual size in sectors */
    uint32_t *catalog;
    uint32_t catalog_size;
    uint64_t data_offset;      /* first stored extent */
    uint32_t extent_size;      /* bytes */
    uint32_t bitmap_bytes;     /* bytes of a bitmap that hold bits */
    uint64_t stride;           /* bytes of one stored extent, bitmap included */
    uint64_t bitmap_span;      /* bytes from a bitmap to its extent's data */
};

/* ---------------------------------------------------------------- header */

/* A NUL-terminated string field equal to `want` (qemu compares with
 * strcmp, so the field must hold a NUL right after the text). */
static bool field_is(const uint8_t *field, size_t field_len, const char *want)
{
    size_t n = strlen(want);

    return n < field_len && memcmp(field, want, n) == 0 && field[n] == 0;
}

static bool version_known(uint32_t v)
{
    return v == VERSION_CURRENT || v == VERSION_V1;
}

static bool looks_like_bochs(const uint8_t *buf, size_t len)
{
    if (len < HEADER_SIZE)
        return false;
    return field_is(buf, 32, MAGIC) && field_is(buf + 32, 16, TYPE_REDOLOG) &&
           field_is(buf + 48, 16, SUBTYPE_GROWING) && version_known(diskimg_le32(buf + 64));
}

static int bochs_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return looks_like_bochs(buf, len) ? 100 : 0;
}

static int parse_header(const struct diskimg_reader *r, struct bochs_header *h, GError **errp)
{
    if (!looks_like_bochs(r->data, r->len))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image not in Bochs format");
    if (diskimg_read_u32(r, 64, "version", &h->version, errp) < 0 ||
        diskimg_read_u32(r, 68, "header", &h->header, errp) < 0 ||
        diskimg_read_u32(r, 72, "catalog", &h->catalog, errp) < 0 ||
        diskimg_read_u32(r, 76, "bitmap", &h->bitmap, errp) < 0 ||
        diskimg_read_u32(r, 80, "extent", &h->extent, errp) < 0)
        return -1;
    /* The older header has no reserved word before the disk size. */
    return diskimg_read_u64(r, h->version == VERSION_V1 ? 84 : 88, "disk", &h->disk, errp);
}

/* qemu's checks, in its order and with its messages, then the ones qemu
 * lacks: a bitmap too small for its extent would make reads take bits
 * from the extent's data. */
static int check_header(const struct bochs_header *h, uint64_t sectors, GError **errp)
{
    uint64_t per_extent;

    if (h->catalog > MAX_CATALOG)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Catalog size is too large");
    if (h->extent < SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Extent size must be at least 512");
    if ((h->extent & (h->extent - 1)) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Extent size %" PRIu32 " is not a power of two", h->extent);
    if (h->extent > MAX_EXTENT)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Extent size %" PRIu32 " is too large", h->extent);
    per_extent = h->extent / SECTOR;
    if (h->catalog < (sectors + per_extent - 1) / per_extent)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Catalog size is too small for this disk size");
    if (h->bitmap == 0 || (uint64_t)h->bitmap * 8 < per_extent)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "bochs header: field 'bitmap' (%" PRIu32 " bytes) cannot "
                                 "hold the bits of a %" PRIu32 "-byte extent",
                                 h->bitmap, h->extent);
    return 0;
}

/* Every catalog entry names no extent or a stored extent whose bitmap
 * starts inside the file: stored extents are numbered from 0 in the order
 * they were written, so an index at or beyond the catalog size is damage. */
static int check_catalog(const struct bochs_state *s, uint64_t file_size, GError **errp)
{
    for (uint32_t i = 0; i < s->catalog_size; i++) {
        uint32_t e = s->catalog[i];

        if (e == UNALLOCATED)
            continue;
        if (e >= s->catalog_size)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "bochs catalog: entry %" PRIu32 " names extent %" PRIu32
                                     ", beyond the %" PRIu32 " the catalog allows",
                                     i, e, s->catalog_size);
        if (s->data_offset + e * s->stride >= file_size)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "bochs catalog: entry %" PRIu32 " (extent %" PRIu32
                                     ") lies beyond the end of the file (%" PRIu64 " bytes)",
                                     i, e, file_size);
    }
    return 0;
}

/* Loads the catalog (little endian on disk, host order in memory). */
static int load_catalog(struct bochs_state *s, const struct bochs_header *h, GError **errp)
{
    void *table;

    if (diskimg_load_table(s->file, h->header, h->catalog, 4, (uint64_t)MAX_CATALOG * 4,
                           "bochs catalog", &table, errp) < 0)
        return -1;
    s->catalog = table;
    s->catalog_size = h->catalog;
    for (uint32_t i = 0; i < s->catalog_size; i++)
        s->catalog[i] = diskimg_le32((const uint8_t *)&s->catalog[i]);
    return 0;
}

static void bochs_close(void *h)
{
    struct bochs_state *s = h;

    g_free(s->catalog);
    g_free(s->filename);
    g_free(s);
}

static void *bochs_open(const struct diskimg_format_open_args *args, GError **errp)
{
    uint8_t buf[HEADER_SIZE];
    struct bochs_header h;
    struct bochs_state *s;
    struct diskimg_reader r;
    int64_t fsize = diskimg_node_size(args->file, errp);
    size_t have;

    if (fsize < 0)
        return NULL;
    have = (size_t)MIN((uint64_t)fsize, (uint64_t)HEADER_SIZE);
    memset(buf, 0, sizeof(buf));
    if (have > 0 && diskimg_node_pread(args->file, buf, have, 0, errp) < 0)
        return NULL;
    r = diskimg_reader_make(buf, have, DISKIMG_LITTLE_ENDIAN, NULL, "bochs header");
    if (parse_header(&r, &h, errp) < 0 || check_header(&h, h.disk / SECTOR, errp) < 0)
        return NULL;

    s = g_new0(struct bochs_state, 1);
    s->file = args->file;
    s->filename = g_strdup(args->filename);
    s->sectors = h.disk / SECTOR;
    s->extent_size = h.extent;
    s->bitmap_bytes = (h.extent / SECTOR + 7) / 8;
    /* Bitmap and extent each take whole sectors. */
    s->bitmap_span = ((uint64_t)h.bitmap + SECTOR - 1) / SECTOR * SECTOR;
    s->stride = s->bitmap_span + h.extent;
    s->data_offset = (uint64_t)h.header + (uint64_t)h.catalog * 4;
    if (load_catalog(s, &h, errp) < 0 || check_catalog(s, (uint64_t)fsize, errp) < 0) {
        bochs_close(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------------ data */

static int64_t bochs_get_size(void *h, GError **errp)
{
    struct bochs_state *s = h;

    (void)errp;
    return (int64_t)(s->sectors * SECTOR);
}

static bool bit_set(const uint8_t *bitmap, uint64_t i)
{
    return (bitmap[i / 8] >> (i % 8)) & 1;
}

/*
 * Reads `n` sectors starting at sector `first` of one extent (disk extent
 * `index`) into buf: runs of sectors whose bitmap bits are set in one read
 * each, the others as zeroes.
 */
static int read_in_extent(struct bochs_state *s, uint32_t index, uint64_t first, uint64_t n,
                          uint8_t *buf, GError **errp)
{
    uint32_t stored = s->catalog[index];
    g_autofree uint8_t *bitmap = NULL;
    uint64_t base, i = 0;

    if (stored == UNALLOCATED) {
        memset(buf, 0, n * SECTOR);
        return 0;
    }
    base = s->data_offset + stored * s->stride;
    bitmap = g_malloc(s->bitmap_bytes);
    if (diskimg_node_pread(s->file, bitmap, s->bitmap_bytes, base, errp) < 0)
        return -1;
    while (i < n) {
        bool set = bit_set(bitmap, first + i);
        uint64_t run = 1;

        while (i + run < n && bit_set(bitmap, first + i + run) == set)
            run++;
        if (!set)
            memset(buf + i * SECTOR, 0, run * SECTOR);
        else if (diskimg_node_pread(s->file, buf + i * SECTOR, run * SECTOR,
                                    base + s->bitmap_span + (first + i) * SECTOR, errp) < 0)
            return -1;
        i += run;
    }
    return 0;
}

/* The core asks only for ranges inside the virtual size, which is whole
 * sectors; requests need not be sector aligned, so edges go through a
 * bounce buffer. */
static int read_sectors(struct bochs_state *s, uint8_t *buf, uint64_t sector, uint64_t count,
                        GError **errp)
{
    uint64_t per_extent = s->extent_size / SECTOR;

    while (count > 0) {
        uint64_t index = sector / per_extent, within = sector % per_extent;
        uint64_t n = MIN(count, per_extent - within);

        if (read_in_extent(s, (uint32_t)index, within, n, buf, errp) < 0)
            return -1;
        buf += n * SECTOR;
        sector += n;
        count -= n;
    }
    return 0;
}

static int bochs_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct bochs_state *s = h;
    uint64_t first = offset / SECTOR, last = (offset + len + SECTOR - 1) / SECTOR;
    uint8_t *out = buf;

    if (offset % SECTOR == 0 && len % SECTOR == 0)
        return read_sectors(s, out, first, len / SECTOR, errp);
    /* Unaligned: bounce whole sectors (the core's requests are mostly
     * aligned; this path serves qemu-io style byte requests). */
    g_autofree uint8_t *bounce = g_try_malloc((last - first) * SECTOR);
    if (!bounce)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory",
                                 s->filename);
    if (read_sectors(s, bounce, first, last - first, errp) < 0)
        return -1;
    memcpy(out, bounce + offset % SECTOR, len);
    return 0;
}

/*
 * qemu 7.2 has no block status for bochs, so qemu-img map shows the whole
 * disk as data; we answer the same (drop-in map output), one extent at a
 * time.  Unallocated sectors are still served without any I/O by read.
 */
static int bochs_block_status(void *h, uint64_t offset, uint64_t len,
                              struct diskimg_extent *ext, GError **errp)
{
    struct bochs_state *s = h;
    uint64_t to_end = s->extent_size - offset % s->extent_size;

    (void)errp;
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED;
    ext->length = MIN(len, to_end);
    return 0;
}

/* ------------------------------------------------------------- descriptor */

static const struct diskimg_format_ops bochs_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = bochs_probe,
    .open = bochs_open,
    .close = bochs_close,
    .get_size = bochs_get_size,
    .read = bochs_read,
    .block_status = bochs_block_status,
    /* No info: qemu has no bdrv_get_info for bochs, so info shows neither
     * format-specific data nor a dirty flag. */
};

static const struct diskimg_plugin bochs_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "bochs",
    .version = PLUGIN_VERSION,
    .summary = "Bochs growing redolog image (read-only)",
    .schema = bochs_schema_yaml,
    .capabilities = DISKIMG_CAP_READ_ONLY,
    .ops = &bochs_ops,
};

DISKIMG_PLUGIN_DEFINE(bochs_plugin)
