/* SPDX-License-Identifier: MIT */
/*
 * dmg.h — internals of the "dmg" format plugin (Apple UDIF images,
 * read-only), shared by its files:
 *
 *   koly.c    the 512-byte "koly" trailer at the end of the file
 *   plist.c   a bounded XML reader for the property list, and base64
 *   table.c   mish blocks (from the plist's blkx entries or the resource
 *             fork) into one sorted, validated chunk table
 *   stream.c  reading chunks: zero, raw, zlib, bzip2 and ADC, the
 *             compressed ones through a streaming decoder with a fixed
 *             window, so memory does not depend on chunk sizes
 *   dmg.c     the plugin: probe, open, read, block status, info
 *
 * All integers of the format are big endian; sectors are 512 bytes.
 */
#ifndef DISKIMG_DMG_H
#define DISKIMG_DMG_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

#define DMG_SECTOR 512u
#define DMG_KOLY_SIZE 512u

/* Chunk (block run) types of a mish block. */
enum dmg_chunk_type {
    DMG_CHUNK_ZERO       = 0x00000000, /* zero fill */
    DMG_CHUNK_RAW        = 0x00000001, /* stored as is */
    DMG_CHUNK_IGNORE     = 0x00000002, /* free space: reads as zeroes */
    DMG_CHUNK_ADC        = 0x80000004, /* Apple Data Compression */
    DMG_CHUNK_ZLIB       = 0x80000005,
    DMG_CHUNK_BZIP2      = 0x80000006,
    DMG_CHUNK_LZFSE      = 0x80000007,
    DMG_CHUNK_COMMENT    = 0x7ffffffe, /* no data */
    DMG_CHUNK_TERMINATOR = 0xffffffff, /* end of a mish block's list */
};

/* One chunk: `sectors` sectors of the disk from `sector` on, stored in
 * [offset, offset + length) of the file (offsets already absolute). */
struct dmg_chunk {
    uint32_t type;
    uint64_t sector;
    uint64_t sectors;
    uint64_t offset;
    uint64_t length;
};

/* What the trailer says (offsets checked against the trailer's place). */
struct dmg_koly {
    uint64_t koly_offset;      /* where the trailer starts */
    uint64_t data_fork_offset;
    uint64_t rsrc_offset, rsrc_length;
    uint64_t xml_offset, xml_length;
    uint64_t sectors;          /* virtual size in sectors */
};

/* koly.c: finds and parses the trailer of `file` (size file_size). */
int dmg_read_koly(diskimg_node *file, uint64_t file_size, struct dmg_koly *k, GError **errp);

/* ---------------------------------------------------------------- plist */

/* Called with each decoded blkx "Data" blob (index = its place in the
 * blkx array); returns 0 or -1 with *errp set. */
typedef int (*dmg_blob_fn)(void *opaque, unsigned index, const uint8_t *data, size_t len,
                           GError **errp);

/* plist.c: parses the XML property list `xml` (len bytes, not
 * NUL-terminated) and calls `fn` for the Data of every entry of
 * resource-fork/blkx.  Errors name "property list" and what is wrong. */
int dmg_plist_blkx(const char *xml, size_t len, dmg_blob_fn fn, void *opaque, GError **errp);

/* plist.c: decodes base64 text (whitespace allowed between groups) into a
 * new buffer (g_free) of *out_len bytes, or NULL with *errp set. */
uint8_t *dmg_base64_decode(const char *text, size_t len, size_t *out_len, GError **errp);

/* ---------------------------------------------------------------- table */

struct dmg_table {
    struct dmg_chunk *chunks;  /* sorted by sector, not overlapping */
    size_t n;
    size_t cap;
};

/* Limits a table's chunks must meet. */
struct dmg_table_limits {
    uint64_t file_size;
    uint64_t data_fork_offset; /* added to every chunk offset */
    uint64_t disk_sectors;     /* the virtual size */
};

/* table.c: adds the chunks of the mish block `blob` (blkx entry `index`),
 * validated against `lim`. */
int dmg_table_add_mish(struct dmg_table *t, const struct dmg_table_limits *lim, unsigned index,
                       const uint8_t *blob, size_t len, GError **errp);
/* table.c: adds the mish blocks among the resources of the resource fork
 * at [offset, offset + length) of `file`. */
int dmg_table_add_rsrc(struct dmg_table *t, const struct dmg_table_limits *lim,
                       diskimg_node *file, uint64_t offset, uint64_t length, GError **errp);
/* table.c: sorts the table and refuses overlapping chunks. */
int dmg_table_finish(struct dmg_table *t, GError **errp);
/* table.c: the chunk holding `sector`, or NULL when none does. */
const struct dmg_chunk *dmg_table_find(const struct dmg_table *t, uint64_t sector);
void dmg_table_clear(struct dmg_table *t);
/* A readable name for a chunk type ("zlib", "0x12345678" for unknown ones;
 * buf holds at least 16 bytes). */
const char *dmg_chunk_type_name(uint32_t type, char *buf, size_t size);

/* ---------------------------------------------------------------- stream */

typedef struct dmg_reader dmg_reader;

/* stream.c: a chunk reader over `file` (named `filename` in errors). */
dmg_reader *dmg_reader_new(diskimg_node *file, const char *filename, GError **errp);
void dmg_reader_free(dmg_reader *r);
/* Reads `len` bytes from byte `within` of chunk `c` into buf
 * (within + len <= c->sectors * 512). */
int dmg_reader_read(dmg_reader *r, const struct dmg_chunk *c, uint64_t within, uint8_t *buf,
                    uint64_t len, GError **errp);
/* Whether this build decodes the chunk type (bzip2 needs libbz2). */
bool dmg_reader_supports(uint32_t type);

#endif
