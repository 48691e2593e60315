/* SPDX-License-Identifier: MIT */
/*
 * vhdx.h — shared declarations of the vhdx format plugin (Microsoft's
 * Virtual Hard Disk v2, "VHDX Format Specification" 1.0, as qemu 7.2's
 * block/vhdx*.c reads and writes it).
 *
 * File layout (every region 1 MiB aligned):
 *
 *   0      file type identifier "vhdxfile" + creator (UTF-16)
 *   64K    header 1        128K  header 2       (4 KiB each, CRC-32C)
 *   192K   region table 1  256K  region table 2 (64 KiB each, CRC-32C)
 *   1M     log (circular buffer of 4 KiB sectors), BAT, metadata region,
 *          then payload blocks allocated at the end of the file.
 *
 * The BAT holds one 64-bit entry per payload block (state in bits 0-2,
 * file offset in MiB in bits 20-63); after every `chunk_ratio` payload
 * entries comes one sector-bitmap entry (used only by differencing
 * images, which this plugin, like qemu, does not open).
 *
 * Files by concern: header.c (identifier, headers, region table), meta.c
 * (metadata region), bat.c (block allocation table), log.c (log replay
 * and logged metadata writes), io.c (guest requests), create.c, check.c,
 * vhdx.c (descriptor, open, info).
 */
#ifndef VHDX_H
#define VHDX_H

#include <diskimg/plugin.h>
#include <diskimg/guard.h>
#include <diskimg/toolkit.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

#define VHDX_HEADER1_OFFSET     (64 * KiB)
#define VHDX_HEADER2_OFFSET     (128 * KiB)
#define VHDX_HEADER_SIZE        (4 * KiB)
#define VHDX_REGION1_OFFSET     (192 * KiB)
#define VHDX_REGION2_OFFSET     (256 * KiB)
#define VHDX_REGION_SIZE        (64 * KiB)
#define VHDX_HEADER_AREA_END    (1 * MiB)   /* the log starts here in new files */
#define VHDX_REGION_MAX_ENTRIES 2047
#define VHDX_META_TABLE_SIZE    (64 * KiB)
#define VHDX_META_MAX_ENTRIES   2047
#define VHDX_LOG_SECTOR         (4 * KiB)

#define VHDX_BLOCK_MIN          (1 * MiB)
#define VHDX_BLOCK_MAX          (256 * MiB)
#define VHDX_MAX_SIZE           (64 * TiB)
/* A chunk covers 2^23 logical sectors: chunk_ratio = 2^23 * lss / block. */
#define VHDX_CHUNK_SECTORS      (UINT64_C(1) << 23)

/* BAT entry fields and states (spec 2.5.1). */
#define VHDX_BAT_STATE_MASK     UINT64_C(7)
#define VHDX_BAT_OFFSET_MASK    (~(MiB - 1))
enum vhdx_block_state {
    VHDX_BLOCK_NOT_PRESENT = 0,
    VHDX_BLOCK_UNDEFINED = 1,
    VHDX_BLOCK_ZERO = 2,
    VHDX_BLOCK_UNMAPPED = 3,
    VHDX_BLOCK_UNMAPPED_V095 = 5,   /* pre-1.0 spec drafts */
    VHDX_BLOCK_FULLY_PRESENT = 6,
    VHDX_BLOCK_PARTIALLY_PRESENT = 7,
};

/* File parameters flags (metadata item). */
#define VHDX_PARAM_LEAVE_ALLOCATED 1u
#define VHDX_PARAM_HAS_PARENT      2u

/* GUIDs as the 16 bytes stored on disk (mixed-endian Microsoft layout). */
typedef struct { uint8_t b[16]; } vhdx_guid;
extern const vhdx_guid vhdx_guid_bat, vhdx_guid_metadata, vhdx_guid_file_params,
    vhdx_guid_disk_size, vhdx_guid_page83, vhdx_guid_logical_sector,
    vhdx_guid_physical_sector, vhdx_guid_parent_locator;
bool vhdx_guid_equal(const vhdx_guid *a, const vhdx_guid *b);
bool vhdx_guid_is_zero(const vhdx_guid *g);
void vhdx_guid_generate(vhdx_guid *g);   /* a random (version 4) GUID */

/* One header as parsed (spec 2.2.2). */
struct vhdx_header {
    uint64_t sequence;
    vhdx_guid file_write_guid, data_write_guid, log_guid;
    uint16_t log_version, version;
    uint32_t log_length;
    uint64_t log_offset;
};

/* A region named by the region table. */
struct vhdx_region {
    uint64_t offset;
    uint32_t length;
};

struct vhdx_state {
    diskimg_node *file;        /* the image file (our file child) */
    const char *filename;      /* the file node's name, for messages */
    bool writable;
    bool check_mode;           /* opened for check: bad BAT entries are counted, not fatal */

    struct vhdx_header header; /* the current header */
    unsigned current;          /* 0 or 1: which copy it is */
    bool data_guid_updated;    /* the first guest write changed data_write_guid */
    bool log_replayed;         /* open replayed a dirty log (check reports it) */

    struct vhdx_region bat_region, meta_region;
    bool region1_damaged;      /* region table 1 is bad, copy 2 served */
    bool region1_repaired;     /* ...and a writable open rewrote it (check counts it) */

    /* Metadata. */
    uint32_t block_size, logical_sector, physical_sector, param_flags;
    uint64_t disk_size;
    vhdx_guid page83;

    /* BAT, fully in memory in host order (qemu does the same; its size is
     * bounded by the region and the file). */
    uint64_t chunk_ratio;
    uint64_t payload_blocks, bat_entries;
    uint64_t *bat;
    uint8_t *bat_dirty;        /* one flag per 4 KiB page of the BAT */
    uint64_t bat_pages;
    bool bat_has_dirty;

    uint64_t alloc_end;        /* where the next payload block goes (1 MiB aligned) */
    /* The fixed areas and regions, which guest data must never reach: BAT
     * entries are checked at open, but an image opened for check keeps
     * bad ones, and a repairing check writes. */
    diskimg_guard *guard;
    uint64_t log_sequence;     /* next log entry sequence number */
};

/* header.c */
int vhdx_read_headers(struct vhdx_state *s, GError **errp);
int vhdx_read_region_table(struct vhdx_state *s, GError **errp);
/* Rewrites a damaged region table 1 from copy 2 (qemu reads only copy 1). */
int vhdx_repair_region_table(struct vhdx_state *s, GError **errp);
/* Writes the inactive header copy from s->header with the sequence number
 * incremented, a new file write GUID, optionally a new data write GUID and
 * the given log GUID (NULL: unchanged), then makes it current.  Twice:
 * both copies end up current (qemu's vhdx_update_headers). */
int vhdx_update_headers(struct vhdx_state *s, bool new_data_guid, const vhdx_guid *log_guid,
                        GError **errp);
void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf /* 4 KiB */);
void vhdx_region_table_encode(const struct vhdx_region *bat, const struct vhdx_region *meta,
                              uint8_t *buf /* 64 KiB */);
void vhdx_identifier_encode(uint8_t *buf /* 64 KiB */);

/* meta.c */
int vhdx_read_metadata(struct vhdx_state *s, GError **errp);
/* The metadata region for a new image (1 MiB buffer). */
void vhdx_metadata_encode(uint8_t *buf, uint32_t block_size, uint64_t disk_size,
                          uint32_t sector_size, bool fixed);

/* bat.c */
uint64_t vhdx_chunk_ratio(uint32_t block_size, uint32_t logical_sector);
uint64_t vhdx_bat_entry_count(uint64_t disk_size, uint32_t block_size,
                              uint32_t logical_sector);
static inline uint64_t vhdx_bat_index(const struct vhdx_state *s, uint64_t block)
{
    return block + block / s->chunk_ratio;
}
int vhdx_load_bat(struct vhdx_state *s, GError **errp);
/* Problems of payload entry `index` against the file (NULL: none). */
char *vhdx_bat_entry_problem(const struct vhdx_state *s, uint64_t index, uint64_t file_size);
void vhdx_bat_set(struct vhdx_state *s, uint64_t block, uint64_t entry);
int vhdx_bat_write_back(struct vhdx_state *s, GError **errp);
void vhdx_bat_free(struct vhdx_state *s);

/* log.c */
int vhdx_log_replay(struct vhdx_state *s, GError **errp);
/* Writes `npages` 4 KiB pages (pages[i] for file offset offsets[i])
 * through the log: entry, flush, apply, flush, log GUID cleared. */
/* The first half: the entry alone, durable, not applied (a crash
 * here leaves what the next writable open replays). */
int vhdx_log_write_entry(struct vhdx_state *s, const uint8_t *const *pages,
                         const uint64_t *offsets, unsigned npages, GError **errp);
int vhdx_log_write_pages(struct vhdx_state *s, const uint8_t *const *pages,
                         const uint64_t *offsets, unsigned npages, GError **errp);

/* vhdx.c */
/* Fails (the image is corrupt) when guest data at [off, off+len) of the
 * file would overwrite a structure. */
int vhdx_guard_data_write(struct vhdx_state *s, uint64_t off, uint64_t len, GError **errp);

/* io.c */
int vhdx_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int vhdx_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp);
int vhdx_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int vhdx_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                      GError **errp);
int vhdx_flush(void *h, GError **errp);

/* create.c */
int vhdx_create(const struct diskimg_format_create_args *args, GError **errp);
int vhdx_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                 GError **errp);
uint32_t vhdx_default_block_size(uint64_t size);

/* check.c */
int vhdx_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp);

#endif
