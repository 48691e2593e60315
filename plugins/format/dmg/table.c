/* SPDX-License-Identifier: MIT */
/*
 * table.c — the chunk table: every mish block's chunks, absolute, sorted.
 *
 * A mish block (big endian):
 *   0x00  "mish"             0x04  version
 *   0x08  first sector (u64) of the disk it describes
 *   0x10  sector count (u64)
 *   0x18  data offset (u64): its chunk offsets are relative to it (and to
 *         the trailer's data fork offset)
 *   0xc8  chunk count (u32), then at 0xcc the chunks, 40 bytes each:
 *         type (u32), comment (u32), sector (u64, relative to the block's
 *         first sector), sector count (u64), offset (u64), length (u64)
 *
 * Every chunk is checked against the file and the disk before it is
 * accepted: its sectors lie inside the virtual size, its stored bytes
 * inside the file, a raw chunk stores all its sectors.  There is no cap on
 * a chunk's size (qemu refuses chunks above 64 MiB, which real images
 * have): stream.c decodes chunks through a fixed window instead.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dmg.h"

#define MISH_HEADER 204u
#define MISH_CHUNK 40u

const char *dmg_chunk_type_name(uint32_t type, char *buf, size_t size)
{
    switch (type) {
    case DMG_CHUNK_ZERO:       return "zero";
    case DMG_CHUNK_RAW:        return "raw";
    case DMG_CHUNK_IGNORE:     return "ignore";
    case DMG_CHUNK_ADC:        return "ADC";
    case DMG_CHUNK_ZLIB:       return "zlib";
    case DMG_CHUNK_BZIP2:      return "bzip2";
    case DMG_CHUNK_LZFSE:      return "lzfse";
    case DMG_CHUNK_COMMENT:    return "comment";
    case DMG_CHUNK_TERMINATOR: return "terminator";
    default:
        g_snprintf(buf, size, "0x%08" PRIx32, type);
        return buf;
    }
}

static bool stores_bytes(uint32_t type)
{
    return type != DMG_CHUNK_ZERO && type != DMG_CHUNK_IGNORE;
}

static int chunk_error(GError **errp, unsigned block, uint32_t i, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static int chunk_error(GError **errp, unsigned block, uint32_t i, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *what = NULL;

    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "mish block %u: chunk %" PRIu32 ": %s",
                             block, i, what);
}

/* Validates one chunk, made absolute, against the limits. */
static int check_chunk(const struct dmg_chunk *c, const struct dmg_table_limits *lim,
                       unsigned block, uint32_t i, GError **errp)
{
    char name[16];

    if (c->sector > lim->disk_sectors || c->sectors > lim->disk_sectors - c->sector)
        return chunk_error(errp, block, i,
                           "sectors %" PRIu64 "+%" PRIu64 " lie beyond the disk's %" PRIu64,
                           c->sector, c->sectors, lim->disk_sectors);
    if (!stores_bytes(c->type))
        return 0;
    if (c->offset > lim->file_size || c->length > lim->file_size - c->offset)
        return chunk_error(errp, block, i,
                           "%s data (%" PRIu64 " bytes at offset %" PRIu64
                           ") lies beyond the end of the file (%" PRIu64 " bytes)",
                           dmg_chunk_type_name(c->type, name, sizeof(name)), c->length,
                           c->offset, lim->file_size);
    if (c->type == DMG_CHUNK_RAW && c->length < c->sectors * DMG_SECTOR)
        return chunk_error(errp, block, i,
                           "raw chunk stores %" PRIu64 " bytes for %" PRIu64 " sectors",
                           c->length, c->sectors);
    if (c->type != DMG_CHUNK_RAW && c->length == 0)
        return chunk_error(errp, block, i, "compressed chunk of %" PRIu64 " sectors is empty",
                           c->sectors);
    return 0;
}

static void table_push(struct dmg_table *t, const struct dmg_chunk *c)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->chunks = g_renew(struct dmg_chunk, t->chunks, t->cap);
    }
    t->chunks[t->n++] = *c;
}

/* Reads chunk i of the block into *c, absolute; false for entries that
 * describe no data (comments, terminators, empty runs). */
static int read_chunk(const struct diskimg_reader *r, uint32_t i, uint64_t first_sector,
                      uint64_t data_base, struct dmg_chunk *c, bool *keep, GError **errp)
{
    uint64_t at = MISH_HEADER + (uint64_t)i * MISH_CHUNK;
    uint64_t rel_sector, rel_offset;

    if (diskimg_read_u32(r, at, "chunk type", &c->type, errp) < 0 ||
        diskimg_read_u64(r, at + 8, "chunk sector", &rel_sector, errp) < 0 ||
        diskimg_read_u64(r, at + 16, "chunk sector count", &c->sectors, errp) < 0 ||
        diskimg_read_u64(r, at + 24, "chunk offset", &rel_offset, errp) < 0 ||
        diskimg_read_u64(r, at + 32, "chunk length", &c->length, errp) < 0)
        return -1;
    *keep = c->type != DMG_CHUNK_COMMENT && c->type != DMG_CHUNK_TERMINATOR && c->sectors > 0;
    if (!*keep)
        return 0;
    if (rel_sector > UINT64_MAX - first_sector || rel_offset > UINT64_MAX - data_base)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "chunk %" PRIu32 ": sector or offset overflows", i);
    c->sector = first_sector + rel_sector;
    c->offset = data_base + rel_offset;
    return 0;
}

int dmg_table_add_mish(struct dmg_table *t, const struct dmg_table_limits *lim, unsigned index,
                       const uint8_t *blob, size_t len, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(blob, len, DISKIMG_BIG_ENDIAN, NULL,
                                                  "mish block");
    uint64_t first_sector, data_offset;
    uint32_t count;

    if (len < 4 || memcmp(blob, "mish", 4) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "mish block %u: bad magic (not \"mish\")", index);
    if (diskimg_read_u64(&r, 0x08, "first sector", &first_sector, errp) < 0 ||
        diskimg_read_u64(&r, 0x18, "data offset", &data_offset, errp) < 0 ||
        diskimg_read_u32(&r, 0xc8, "chunk count", &count, errp) < 0)
        goto bad;
    if ((uint64_t)count * MISH_CHUNK > len - MIN((size_t)MISH_HEADER, len))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "mish block %u: field 'chunk count' (%" PRIu32 ") needs %"
                                 PRIu64 " bytes, the block has %zu", index, count,
                                 MISH_HEADER + (uint64_t)count * MISH_CHUNK, len);
    if (data_offset > UINT64_MAX - lim->data_fork_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "mish block %u: field 'data offset' overflows", index);
    for (uint32_t i = 0; i < count; i++) {
        struct dmg_chunk c;
        bool keep;

        if (read_chunk(&r, i, first_sector, lim->data_fork_offset + data_offset, &c, &keep,
                       errp) < 0)
            goto bad;
        if (!keep)
            continue;
        if (check_chunk(&c, lim, index, i, errp) < 0)
            return -1;
        table_push(t, &c);
    }
    return 0;

bad:
    g_prefix_error(errp, "mish block %u: ", index);
    return -1;
}

/*
 * The resource fork, as qemu reads it: a 16-byte header whose first word
 * is the offset of the resource data and third its length; the data is a
 * sequence of resources, each a u32 length and its bytes.  Resources that
 * are mish blocks are added; the others (and the map after the data) are
 * skipped, as qemu does.
 */
int dmg_table_add_rsrc(struct dmg_table *t, const struct dmg_table_limits *lim,
                       diskimg_node *file, uint64_t offset, uint64_t length, GError **errp)
{
    g_autofree uint8_t *fork = NULL;
    struct diskimg_reader r;
    uint32_t data_at, data_len;
    uint64_t pos, end;
    unsigned index = 0;
    void *buf;

    /* The resource fork is metadata only; no image needs more than this. */
    if (diskimg_load_table(file, offset, length, 1, 256u << 20, "resource fork", &buf,
                           errp) < 0)
        return -1;
    fork = buf;
    r = diskimg_reader_make(fork, length, DISKIMG_BIG_ENDIAN, NULL, "resource fork");
    if (diskimg_read_u32(&r, 0, "data offset", &data_at, errp) < 0 ||
        diskimg_read_u32(&r, 8, "data length", &data_len, errp) < 0)
        return -1;
    if (data_len == 0 || !diskimg_reader_has(&r, data_at, data_len))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "resource fork: resource data (%" PRIu32 " bytes at %" PRIu32
                                 ") lies outside the fork's %" PRIu64 " bytes",
                                 data_len, data_at, length);
    pos = data_at;
    end = (uint64_t)data_at + data_len;
    while (pos < end) {
        uint32_t size;

        if (diskimg_read_u32(&r, pos, "resource length", &size, errp) < 0)
            return -1;
        pos += 4;
        if (size == 0 || size > end - pos)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "resource fork: resource %u of %" PRIu32
                                     " bytes does not fit in the resource data", index, size);
        if (size >= 4 && memcmp(fork + pos, "mish", 4) == 0 &&
            dmg_table_add_mish(t, lim, index, fork + pos, size, errp) < 0)
            return -1;
        pos += size;
        index++;
    }
    return 0;
}

static int by_sector(const void *a, const void *b)
{
    const struct dmg_chunk *x = a, *y = b;

    return x->sector < y->sector ? -1 : x->sector > y->sector;
}

int dmg_table_finish(struct dmg_table *t, GError **errp)
{
    if (t->n > 0)
        qsort(t->chunks, t->n, sizeof(*t->chunks), by_sector);
    for (size_t i = 1; i < t->n; i++) {
        const struct dmg_chunk *a = &t->chunks[i - 1], *b = &t->chunks[i];

        if (b->sector < a->sector + a->sectors)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "chunk table: chunks at sectors %" PRIu64 "+%" PRIu64
                                     " and %" PRIu64 "+%" PRIu64 " overlap", a->sector,
                                     a->sectors, b->sector, b->sectors);
    }
    return 0;
}

const struct dmg_chunk *dmg_table_find(const struct dmg_table *t, uint64_t sector)
{
    size_t lo = 0, hi = t->n;

    /* The last chunk starting at or before `sector`. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (t->chunks[mid].sector <= sector)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct dmg_chunk *c = &t->chunks[lo - 1];
    return sector - c->sector < c->sectors ? c : NULL;
}

void dmg_table_clear(struct dmg_table *t)
{
    g_free(t->chunks);
    memset(t, 0, sizeof(*t));
}
