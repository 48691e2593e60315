/* SPDX-License-Identifier: MIT */
/*
 * sparse.c — hosted sparse extents (magic KDMV): header, footer, grain
 * directory and grain tables, grain reads and compressed grains.
 *
 * Grain tables are reached through the toolkit's metadata cache in units
 * of one 512-byte sector (128 entries): tables start at any sector, and
 * a lookup needs only the sector holding its entry.  The grain directory
 * is small (4 bytes per 32 MiB of guest data) and is kept in memory.
 */
#include "vmdk.h"

#include <string.h>

#define GT_CACHE_BUDGET (1u << 20)

struct header {
    uint32_t version, flags, gtes;
    uint64_t capacity, grain, desc_offset, desc_size, rgd, gd, overhead;
    uint16_t compress;
};

static int parse_header(const uint8_t *sector, const char *filename, const char *what,
                        struct header *h, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(sector, VMDK_SECTOR, DISKIMG_LITTLE_ENDIAN,
                                                  filename, what);
    uint32_t magic = diskimg_be32(sector);
    if (magic != VMDK4_MAGIC_BE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s%s%s: bad magic 0x%08x",
                                 VMDK_WHERE(filename), what, magic);
    if (diskimg_read_u32(&r, 4, "version", &h->version, errp) < 0 ||
        diskimg_read_u32(&r, 8, "flags", &h->flags, errp) < 0 ||
        diskimg_read_u64(&r, 12, "capacity", &h->capacity, errp) < 0 ||
        diskimg_read_u64(&r, 20, "grainSize", &h->grain, errp) < 0 ||
        diskimg_read_u64(&r, 28, "descriptorOffset", &h->desc_offset, errp) < 0 ||
        diskimg_read_u64(&r, 36, "descriptorSize", &h->desc_size, errp) < 0 ||
        diskimg_read_u32(&r, 44, "numGTEsPerGT", &h->gtes, errp) < 0 ||
        diskimg_read_u64(&r, 48, "rgdOffset", &h->rgd, errp) < 0 ||
        diskimg_read_u64(&r, 56, "gdOffset", &h->gd, errp) < 0 ||
        diskimg_read_u64(&r, 64, "overHead", &h->overhead, errp) < 0 ||
        diskimg_read_u16(&r, 77, "compressAlgorithm", &h->compress, errp) < 0)
        return -1;
    return 0;
}

static int bad_field(GError **errp, const char *filename, const char *what, const char *field,
                     uint64_t value, const char *why)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s%s%s: field '%s' (%" PRIu64
                             ") %s", VMDK_WHERE(filename), what, field, value, why);
}

/* Every field that sizes or places something, against the file size. */
static int validate_header(const struct header *h, uint64_t file_size, const char *filename,
                           const char *what, GError **errp)
{
    if (h->version < 1 || h->version > 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s%sUnsupported VMDK version %" PRIu32, VMDK_WHERE(filename), h->version);
    if (h->grain == 0 || h->grain > VMDK_MAX_GRAIN_SECTORS)
        return bad_field(errp, filename, what, "grainSize", h->grain,
                         "is not between 1 and 2097152 sectors");
    if (h->gtes == 0 || h->gtes > VMDK_MAX_GTES)
        return bad_field(errp, filename, what, "numGTEsPerGT", h->gtes,
                         "is not between 1 and 512");
    if (h->capacity == 0 || h->capacity > (1ull << 40))
        return bad_field(errp, filename, what, "capacity", h->capacity,
                         "is not between 1 and 2^40 sectors");
    if (h->compress > VMDK_COMPRESS_DEFLATE)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s%s%s: unknown compressAlgorithm %u", VMDK_WHERE(filename), what,
                                 h->compress);
    uint64_t sectors = file_size / VMDK_SECTOR;
    if (h->overhead > sectors)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%sFile truncated, expecting at least %" PRIu64 " bytes",
                                 VMDK_WHERE(filename), h->overhead * VMDK_SECTOR);
    if (h->desc_offset > sectors || h->desc_size > sectors - h->desc_offset ||
        h->desc_size > VMDK_DESC_MAX / VMDK_SECTOR)
        return bad_field(errp, filename, what, "descriptorSize", h->desc_size,
                         "puts the descriptor beyond the end of the file");
    if (h->gd != VMDK_GD_AT_END && h->gd > sectors)
        return bad_field(errp, filename, what, "gdOffset", h->gd, "lies beyond the end of the file");
    if ((h->flags & VMDK_FLAG_RGD) && h->rgd > sectors)
        return bad_field(errp, filename, what, "rgdOffset", h->rgd,
                         "lies beyond the end of the file");
    return 0;
}

/* The footer of a stream-layout image: marker, header copy, end marker. */
static int read_footer(struct vmdk_extent *e, const char *filename, struct header *h,
                       GError **errp)
{
    if (e->file_size < 4 * VMDK_SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%svmdk footer: the file is too small to hold one", VMDK_WHERE(filename));
    uint8_t buf[3 * VMDK_SECTOR];
    uint64_t at = (e->file_size & ~(uint64_t)(VMDK_SECTOR - 1)) - sizeof(buf);
    if (diskimg_node_pread(e->file, buf, sizeof(buf), at, errp) < 0)
        return -1;
    const uint8_t *m = buf, *eos = buf + 2 * VMDK_SECTOR;
    if (diskimg_le32(m + 8) != 0 || diskimg_le32(m + 12) != VMDK_MARKER_FOOTER ||
        diskimg_le64(eos) != 0 || diskimg_le32(eos + 8) != 0 ||
        diskimg_le32(eos + 12) != VMDK_MARKER_EOS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%sInvalid footer: bad footer or end-of-stream marker",
                                 VMDK_WHERE(filename));
    if (parse_header(buf + VMDK_SECTOR, filename, "vmdk footer", h, errp) < 0 ||
        validate_header(h, e->file_size, filename, "vmdk footer", errp) < 0)
        return -1;
    if (h->gd == VMDK_GD_AT_END)
        return bad_field(errp, filename, "vmdk footer", "gdOffset", h->gd, "is not an offset");
    return 0;
}

static int load_directory(struct vmdk_extent *e, uint64_t sector, const char *what,
                          const char *filename, uint32_t **out, GError **errp)
{
    uint32_t *gd;
    if (diskimg_load_table(e->file, sector * VMDK_SECTOR, e->gd_entries, 4,
                           (uint64_t)VMDK_MAX_GD_ENTRIES * 4, what, (void **)&gd, errp) < 0) {
        g_prefix_error(errp, "%s%s", VMDK_WHERE(filename));
        return -1;
    }
    for (uint32_t i = 0; i < e->gd_entries; i++)
        gd[i] = GUINT32_FROM_LE(gd[i]);
    *out = gd;
    return 0;
}

static void apply_header(struct vmdk_extent *e, const struct header *h)
{
    e->version = h->version;
    e->flags = h->flags;
    e->header_capacity = h->capacity;
    e->grain = h->grain * VMDK_SECTOR;
    e->gtes = h->gtes;
    e->gd_offset = h->gd;
    e->rgd_offset = (h->flags & VMDK_FLAG_RGD) ? h->rgd : 0;
    e->overhead = h->overhead;
    e->compressed = h->compress == VMDK_COMPRESS_DEFLATE;
    e->markers = h->flags & VMDK_FLAG_MARKER;
    e->zero_grain = h->flags & VMDK_FLAG_ZERO_GRAIN;
    e->desc_offset = h->desc_offset * VMDK_SECTOR;
    e->desc_size = h->desc_size * VMDK_SECTOR;
}

static bool directory_empty(const struct vmdk_extent *e)
{
    for (uint32_t i = 0; i < e->gd_entries; i++)
        if (e->gd[i])
            return false;
    return true;
}

/* Kinds of structures in the metadata-write guard. */
enum { GUARD_HEADER = 1u << 0, GUARD_DIRECTORY = 1u << 1, GUARD_TABLE = 1u << 2 };

static uint64_t table_bytes(const struct vmdk_extent *e)
{
    return (uint64_t)e->gtes * 4;
}

/* Grain table write-back may touch grain tables only. */
static int guard_table_write(void *opaque, const char *what, uint64_t offset, uint64_t len,
                             GError **errp)
{
    struct vmdk_extent *e = opaque;
    const char *hit = diskimg_guard_find(e->guard, GUARD_TABLE, offset, len);
    if (!hit)
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: Preventing invalid write of a %s at offset %" PRIu64
                             " (overlaps with the %s)", diskimg_node_filename(e->file), what,
                             offset, hit);
}

/* Declares header, descriptor, directories and every grain table. */
static void build_guard(struct vmdk_extent *e)
{
    e->guard = diskimg_guard_new();
    uint64_t gd_bytes = (uint64_t)e->gd_entries * 4;
    diskimg_guard_add(e->guard, GUARD_HEADER, "header", 0, VMDK_SECTOR);
    if (e->desc_size)
        diskimg_guard_add(e->guard, GUARD_HEADER, "descriptor", e->desc_offset, e->desc_size);
    diskimg_guard_add(e->guard, GUARD_DIRECTORY, "grain directory",
                      e->gd_offset * VMDK_SECTOR, gd_bytes);
    if (e->rgd)
        diskimg_guard_add(e->guard, GUARD_DIRECTORY, "redundant grain directory",
                          e->rgd_offset * VMDK_SECTOR, gd_bytes);
    for (uint32_t i = 0; i < e->gd_entries; i++) {
        if (e->gd[i])
            diskimg_guard_add(e->guard, GUARD_TABLE, "grain table",
                              (uint64_t)e->gd[i] * VMDK_SECTOR, table_bytes(e));
        if (e->rgd && e->rgd[i])
            diskimg_guard_add(e->guard, GUARD_TABLE, "grain table",
                              (uint64_t)e->rgd[i] * VMDK_SECTOR, table_bytes(e));
    }
    struct diskimg_mcache_hooks hooks = { .struct_size = sizeof(hooks), .opaque = e,
                                          .before_write = guard_table_write };
    diskimg_mcache_set_hooks(e->gt_cache, &hooks);
}

int vmdk_guard_data_write(struct vmdk_extent *e, uint64_t off, uint64_t len, GError **errp)
{
    const char *hit = e->guard ? diskimg_guard_find(e->guard, 0, off, len) : NULL;
    if (!hit)
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: Preventing invalid write on metadata at offset %" PRIu64
                             " (overlaps with the %s)", diskimg_node_filename(e->file), off, hit);
}

int vmdk_sparse_open(struct vmdk_extent *e, const char *filename, bool writable,
                     GError **errp)
{
    int64_t size = diskimg_node_size(e->file, errp);
    if (size < 0)
        return -1;
    e->file_size = (uint64_t)size;
    if (e->file_size < VMDK_SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s%svmdk header: the file is %" PRIu64 " bytes, too small",
                                 VMDK_WHERE(filename), e->file_size);
    uint8_t sector[VMDK_SECTOR];
    struct header h;
    if (diskimg_node_pread(e->file, sector, sizeof(sector), 0, errp) < 0 ||
        parse_header(sector, filename, "vmdk header", &h, errp) < 0 ||
        validate_header(&h, e->file_size, filename, "vmdk header", errp) < 0)
        return -1;
    bool at_end = h.gd == VMDK_GD_AT_END;
    if (at_end && read_footer(e, filename, &h, errp) < 0)
        return -1;
    apply_header(e, &h);
    if (h.version == 3 && writable && !e->compressed)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "VMDK version 3 must be read only");
    uint64_t per_gt = (uint64_t)e->gtes * h.grain;
    uint64_t entries = (h.capacity + per_gt - 1) / per_gt;
    if (entries > VMDK_MAX_GD_ENTRIES)
        return bad_field(errp, filename, "vmdk header", "capacity", h.capacity,
                         "needs a grain directory larger than 32M entries");
    e->gd_entries = (uint32_t)entries;
    if (load_directory(e, h.gd, "grain directory", filename, &e->gd, errp) < 0)
        return -1;
    if (e->rgd_offset &&
        load_directory(e, e->rgd_offset, "redundant grain directory", filename, &e->rgd,
                       errp) < 0)
        return -1;
    e->gt_cache = diskimg_mcache_new(e->file, "grain table", VMDK_SECTOR, GT_CACHE_BUDGET, errp);
    if (!e->gt_cache)
        return -1;
    e->next_alloc = (e->file_size + VMDK_SECTOR - 1) & ~(uint64_t)(VMDK_SECTOR - 1);
    /* A stream image with its directory at the end is written the way
     * VMware streams are: grains from the end of the overhead (or behind
     * the last grain), tables and footer behind them at flush. */
    if (writable && at_end && e->compressed)
        return directory_empty(e) ? vmdk_stream_start(e, errp) : vmdk_stream_resume(e, errp);
    if (writable)
        build_guard(e);
    return 0;
}

void vmdk_sparse_close(struct vmdk_extent *e)
{
    diskimg_guard_free(e->guard);
    diskimg_mcache_free(e->gt_cache);
    vmdk_stream_free(e->stream);
    vmdk_sesparse_free(e->sesparse);
    g_free(e->gd);
    g_free(e->rgd);
}

/* The byte offset of the entry for guest offset `off` (extent relative)
 * in the table that `dir` points at; 0 when the table is not allocated. */
static int entry_offset(struct vmdk_extent *e, const uint32_t *dir, uint64_t off,
                        uint64_t *where, GError **errp)
{
    uint64_t g = off / e->grain;
    uint64_t di = g / e->gtes, ti = g % e->gtes;
    if (di >= e->gd_entries)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: grain %" PRIu64 " lies beyond the grain directory",
                                 diskimg_node_filename(e->file), g);
    uint64_t gt = dir[di];
    if (!gt) {
        *where = 0;
        return 0;
    }
    uint64_t bytes = gt * VMDK_SECTOR;
    if (bytes + (uint64_t)e->gtes * 4 > MAX(e->file_size, e->next_alloc))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: grain directory entry %" PRIu64 " (sector %" PRIu64
                                 ") points beyond the end of the file",
                                 diskimg_node_filename(e->file), di, gt);
    *where = bytes + ti * 4;
    return 0;
}

static int read_entry(struct vmdk_extent *e, uint64_t off, uint32_t *entry, GError **errp)
{
    if (e->stream)
        return vmdk_stream_lookup(e, off, entry);
    uint64_t where;
    if (entry_offset(e, e->gd, off, &where, errp) < 0)
        return -1;
    if (!where) {
        *entry = 0;
        return 0;
    }
    uint8_t *sec;
    if (diskimg_mcache_get(e->gt_cache, where & ~(uint64_t)(VMDK_SECTOR - 1), 0, &sec,
                           errp) < 0)
        return -1;
    *entry = diskimg_le32(sec + (where % VMDK_SECTOR));
    diskimg_mcache_put(e->gt_cache, sec);
    return 0;
}

int vmdk_grain_lookup(struct vmdk_extent *e, uint64_t off, enum vmdk_grain_state *state,
                      uint64_t *host, GError **errp)
{
    if (e->sesparse)
        return vmdk_sesparse_lookup(e, off, state, host, errp);
    uint32_t entry;
    if (read_entry(e, off, &entry, errp) < 0)
        return -1;
    *host = 0;
    if (entry == 0) {
        *state = VMDK_GRAIN_UNALLOC;
    } else if (entry == VMDK_GTE_ZEROED && e->zero_grain) {
        *state = VMDK_GRAIN_ZERO;
    } else {
        uint64_t at = (uint64_t)entry * VMDK_SECTOR;
        if (at < e->overhead * VMDK_SECTOR && !e->compressed)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s: grain table entry for offset %" PRIu64
                                     " (sector %" PRIu32 ") points into the metadata",
                                     diskimg_node_filename(e->file), off, entry);
        if (at >= MAX(e->file_size, e->next_alloc))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s: grain table entry for offset %" PRIu64
                                     " (sector %" PRIu32 ") points beyond the end of the file",
                                     diskimg_node_filename(e->file), off, entry);
        *state = VMDK_GRAIN_DATA;
        *host = at;
    }
    return 0;
}

int vmdk_grain_check(struct vmdk_extent *e, uint64_t off, GError **errp)
{
    enum vmdk_grain_state st;
    uint64_t host;
    if (e->sesparse)
        return vmdk_sesparse_lookup(e, off, &st, &host, errp);
    uint32_t entry;
    if (read_entry(e, off, &entry, errp) < 0)
        return -1;
    bool data = entry && !(entry == VMDK_GTE_ZEROED && e->zero_grain);
    return data && (uint64_t)entry * VMDK_SECTOR >= MAX(e->file_size, e->next_alloc) ? 1 : 0;
}

/* A new grain table for directory entry `di` (images whose tables were
 * not preallocated): zeroed, appended, then recorded in the directory. */
static int allocate_table(struct vmdk_extent *e, uint32_t *dir, uint64_t dir_sector,
                          uint64_t di, GError **errp)
{
    uint64_t bytes = ((uint64_t)e->gtes * 4 + VMDK_SECTOR - 1) & ~(uint64_t)(VMDK_SECTOR - 1);
    uint64_t at = e->next_alloc;
    if (at / VMDK_SECTOR + bytes / VMDK_SECTOR >= VMDK_EXTENT_MAX_SECTORS)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "%s: the extent is full",
                                 diskimg_node_filename(e->file));
    if (diskimg_node_write_zeroes(e->file, at, bytes, 0, errp) < 0)
        return -1;
    e->next_alloc += bytes;
    e->file_size = MAX(e->file_size, e->next_alloc);
    uint8_t le[4];
    diskimg_put_le32(le, (uint32_t)(at / VMDK_SECTOR));
    if (diskimg_node_pwrite(e->file, le, 4, dir_sector * VMDK_SECTOR + di * 4, 0, errp) < 0)
        return -1;
    dir[di] = (uint32_t)(at / VMDK_SECTOR);
    if (e->guard)
        diskimg_guard_add(e->guard, GUARD_TABLE, "grain table", at, table_bytes(e));
    return 0;
}

static int set_in(struct vmdk_extent *e, uint32_t *dir, uint64_t dir_sector, uint64_t off,
                  uint32_t entry, GError **errp)
{
    uint64_t where;
    if (entry_offset(e, dir, off, &where, errp) < 0)
        return -1;
    if (!where) {
        if (allocate_table(e, dir, dir_sector, off / e->grain / e->gtes, errp) < 0 ||
            entry_offset(e, dir, off, &where, errp) < 0)
            return -1;
    }
    uint8_t *sec;
    if (diskimg_mcache_get(e->gt_cache, where & ~(uint64_t)(VMDK_SECTOR - 1), 0, &sec,
                           errp) < 0)
        return -1;
    diskimg_put_le32(sec + (where % VMDK_SECTOR), entry);
    diskimg_mcache_mark_dirty(e->gt_cache, sec);
    diskimg_mcache_put(e->gt_cache, sec);
    return 0;
}

int vmdk_grain_set(struct vmdk_extent *e, uint64_t off, uint32_t entry, GError **errp)
{
    if (e->stream)
        return vmdk_stream_set(e, off, entry, errp);
    if (set_in(e, e->gd, e->gd_offset, off, entry, errp) < 0)
        return -1;
    return e->rgd ? set_in(e, e->rgd, e->rgd_offset, off, entry, errp) : 0;
}

static int read_compressed(struct vmdk_extent *e, uint64_t host, uint64_t in_grain, void *buf,
                           uint64_t len, GError **errp)
{
    const char *fn = diskimg_node_filename(e->file);
    uint64_t room = MAX(e->file_size, e->next_alloc) - host;
    uint64_t want = MIN(2 * e->grain + VMDK_SECTOR, room);
    g_autofree uint8_t *raw = g_malloc(want);
    /* one byte more than a grain: a stream that fills it inflates past its
     * grain, which is corruption rather than data to cut short */
    g_autofree uint8_t *plain = g_malloc(e->grain + 1);
    if (diskimg_node_pread(e->file, raw, want, host, errp) < 0)
        return -1;
    const uint8_t *data = raw;
    uint64_t data_len = want;
    if (e->markers) {
        if (want < 12)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s: grain marker at offset %" PRIu64 " is truncated", fn,
                                     host);
        data_len = diskimg_le32(raw + 8);
        data = raw + 12;
        if (data_len == 0 || data_len > want - 12)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s: grain marker at offset %" PRIu64
                                     ": field 'size' (%" PRIu64 ") is invalid", fn, host,
                                     data_len);
    }
    GError *err = NULL;
    int64_t got = diskimg_decompress(DISKIMG_CODEC_ZLIB, 0, data, data_len, plain,
                                     e->grain + 1, &err);
    if (got > 0 && (uint64_t)got > e->grain)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: compressed grain at offset %" PRIu64
                                 " inflates to more than a grain (%" PRIu64 " bytes)", fn, host,
                                 e->grain);
    if (got < 0 || (uint64_t)got < in_grain + len) {
        g_clear_error(&err);
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: compressed grain at offset %" PRIu64 " is corrupt", fn,
                                 host);
    }
    memcpy(buf, plain + in_grain, len);
    return 0;
}

int vmdk_sparse_read(struct vmdk_extent *e, uint64_t host, uint64_t in_grain, void *buf,
                     uint64_t len, GError **errp)
{
    if (e->compressed)
        return read_compressed(e, host, in_grain, buf, len, errp);
    return diskimg_node_pread(e->file, buf, len, host + in_grain, errp);
}

int vmdk_sparse_flush(struct vmdk_extent *e, GError **errp)
{
    if (e->stream && vmdk_stream_finish(e, errp) < 0)
        return -1;
    return e->gt_cache ? diskimg_mcache_flush(e->gt_cache, errp) : 0;
}

void vmdk_header_build(uint8_t s[VMDK_SECTOR], const struct vmdk_header_params *p)
{
    memset(s, 0, VMDK_SECTOR);
    diskimg_put_be32(s, VMDK4_MAGIC_BE);
    diskimg_put_le32(s + 4, p->version);
    diskimg_put_le32(s + 8, p->flags);
    diskimg_put_le64(s + 12, p->capacity);
    diskimg_put_le64(s + 20, p->grain_sectors);
    diskimg_put_le64(s + 28, p->desc_offset);
    diskimg_put_le64(s + 36, p->desc_size);
    diskimg_put_le32(s + 44, p->gtes);
    diskimg_put_le64(s + 48, p->rgd_offset);
    diskimg_put_le64(s + 56, p->gd_offset);
    diskimg_put_le64(s + 64, p->overhead);
    /* The line-ending check bytes that let readers detect text-mode
     * transfers (VMDK4_FLAG_NL_DETECT). */
    s[73] = '\n';
    s[74] = ' ';
    s[75] = '\r';
    s[76] = '\n';
    diskimg_put_le16(s + 77, p->compress);
}

bool vmdk_grain_looks_random(const void *buf, uint64_t len)
{
    /* Byte statistics of a smaller sample understate the entropy of
     * random data too much for the estimate's 1/128 margin. */
    const uint64_t sample = 16384;
    const uint8_t *p = buf;
    if (len < 4 * sample)
        return diskimg_probably_incompressible(DISKIMG_CODEC_ZLIB, 0, p, len);
    return diskimg_probably_incompressible(DISKIMG_CODEC_ZLIB, 0, p, sample) &&
           diskimg_probably_incompressible(DISKIMG_CODEC_ZLIB, 0, p + len - sample, sample);
}

int64_t vmdk_grain_compress(uint64_t lba, const void *buf, uint64_t len, void *out,
                            uint64_t cap, GError **errp)
{
    uint8_t *o = out;
    if (cap < 12 + VMDK_SECTOR)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "grain buffer too small");
    /* Data close to random gains nothing from deflate: store it in
     * deflate's stored blocks (level 0), which costs a copy. */
    int level = vmdk_grain_looks_random(buf, len) ? 0 : VMDK_STREAM_LEVEL;
    int64_t n = diskimg_compress(DISKIMG_CODEC_ZLIB, level, 0, buf, len, o + 12, cap - 12, errp);
    if (n <= 0 && level != 0)
        n = diskimg_compress(DISKIMG_CODEC_ZLIB, 0, 0, buf, len, o + 12, cap - 12, errp);
    if (n <= 0)
        return n < 0 ? -1 : diskimg_set_error(errp, DISKIMG_ERROR_FAILED,
                                              "a grain does not fit its buffer compressed");
    diskimg_put_le64(o, lba);
    diskimg_put_le32(o + 8, (uint32_t)n);
    uint64_t total = 12 + (uint64_t)n;
    uint64_t padded = (total + VMDK_SECTOR - 1) & ~(uint64_t)(VMDK_SECTOR - 1);
    if (padded > cap)
        return diskimg_set_error(errp, DISKIMG_ERROR_FAILED,
                                 "a grain does not fit its buffer compressed");
    memset(o + total, 0, padded - total);
    return (int64_t)padded;
}

int vmdk_compressed_append(struct vmdk_extent *e, uint64_t guest_off, const void *stored,
                           uint64_t len, GError **errp)
{
    enum vmdk_grain_state st;
    uint64_t host;
    if (vmdk_grain_lookup(e, guest_off, &st, &host, errp) < 0)
        return -1;
    if (st == VMDK_GRAIN_DATA)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: Could not write to allocated cluster for streamOptimized",
                                 diskimg_node_filename(e->file));
    uint64_t at = e->next_alloc;
    if (at / VMDK_SECTOR >= VMDK_EXTENT_MAX_SECTORS)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "%s: the extent is full",
                                 diskimg_node_filename(e->file));
    if (diskimg_node_pwrite(e->file, stored, len, at, 0, errp) < 0)
        return -1;
    e->next_alloc = at + len;
    e->file_size = MAX(e->file_size, e->next_alloc);
    return vmdk_grain_set(e, guest_off, (uint32_t)(at / VMDK_SECTOR), errp);
}
