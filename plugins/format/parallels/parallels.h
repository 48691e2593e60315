/* SPDX-License-Identifier: MIT */
/*
 * parallels.h — shared declarations of the Parallels format plugin.
 *
 * Layout (docs/interop/parallels.txt in qemu; little endian): a 64-byte
 * header, the BAT right after it (one 32-bit entry per cluster: where the
 * cluster lives, 0 = not allocated), data clusters from data_off on,
 * appended at the end of the file.  "WithoutFreeSpace" images count BAT
 * entries in sectors, "WithouFreSpacExt" images in clusters.
 */
#ifndef DISKIMG_PARALLELS_H
#define DISKIMG_PARALLELS_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>


#define PRL_SECTOR          512u
#define PRL_HEADER_LEN      64u
#define PRL_MAGIC_OLD       "WithoutFreeSpace"
#define PRL_MAGIC_EXT       "WithouFreSpacExt"
#define PRL_VERSION         2u
#define PRL_INUSE_MAGIC     0x746f6e59u     /* "Ynot": left open for writing */
#define PRL_HEADS           16u
#define PRL_SEC_IN_CYL      32u
#define PRL_DEFAULT_CLUSTER (1u << 20)
#define PRL_SIZE_FACTOR     (1ull << 32)    /* qemu's MAX_PARALLELS_IMAGE_FACTOR */

/* Field offsets in the header. */
enum {
    PRL_OFF_VERSION = 16,
    PRL_OFF_HEADS = 20,
    PRL_OFF_CYLINDERS = 24,
    PRL_OFF_TRACKS = 28,
    PRL_OFF_BAT_ENTRIES = 32,
    PRL_OFF_NB_SECTORS = 36,
    PRL_OFF_INUSE = 44,
    PRL_OFF_DATA_OFF = 48,
    PRL_OFF_FLAGS = 52,
    PRL_OFF_EXT_OFF = 56,
};

/* The header fields the plugin uses, validated. */
struct prl_header {
    bool ext_magic;            /* "WithouFreSpacExt": entries count clusters */
    uint32_t tracks;           /* sectors per cluster */
    uint32_t bat_entries;
    uint64_t nb_sectors;       /* virtual size in sectors */
    uint32_t inuse;
    uint32_t data_off;         /* first data sector (0 in the file: computed) */
    uint64_t ext_off;          /* format extension, in sectors; 0 = none */
};

struct prl_state {
    diskimg_node *file;
    const char *filename;
    struct prl_header h;
    uint8_t raw_header[PRL_HEADER_LEN];
    uint64_t cluster_size;
    uint64_t data_end;         /* sectors: where the next cluster goes */
    uint64_t ext_end;          /* bytes: end of the format extension's clusters */
    bool unclean;              /* found "in use" on open */
    bool writable;
    diskimg_blockmap *map;
    diskimg_tail *tail;
};

/* header.c */
int prl_header_parse(const uint8_t *buf, size_t len, struct prl_header *h, GError **errp);
void prl_header_build(uint8_t *buf, uint64_t size, uint32_t cluster_size);
uint64_t prl_bat_end(uint32_t bat_entries);
void prl_map_layout(const struct prl_header *h, struct diskimg_blockmap_layout *layout);
uint64_t prl_first_data_sector(const struct prl_header *h);
int prl_map_validate(const struct prl_state *s, uint64_t file_size, GError **errp);
int prl_write_header(struct prl_state *s, uint32_t inuse, GError **errp);

/* ext.c: validates the extension and sets s->ext_end (as far as it got,
 * also on failure). */
int prl_ext_validate(struct prl_state *s, uint64_t file_size, GError **errp);

/* io.c */
int prl_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int prl_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp);
int prl_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int prl_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp);
int prl_flush(void *h, GError **errp);

/* create.c */
int prl_create(const struct diskimg_format_create_args *args, GError **errp);

/* check.c */
int prl_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp);

#endif
