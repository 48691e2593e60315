/* SPDX-License-Identifier: MIT */
/*
 * vmdk.h — internal interfaces of the vmdk format plugin.
 *
 * A vmdk image is a text descriptor (embedded in the first extent's file
 * at sector 1, or a file of its own) listing extents: flat extents hold
 * guest bytes as they are, sparse extents ("hosted sparse", magic KDMV)
 * map 64 KiB grains through a grain directory of grain tables.  The files
 * of this folder split that by concern:
 *
 *   descriptor.c  the descriptor text: parsing with limits, editing, output
 *   sparse.c      sparse extents: header, footer, grain tables, grains
 *   stream.c      the streamOptimized writer (grains appended, tables and
 *                 footer written at flush, as VMware's stream layout)
 *   create.c      image creation for every subformat
 *   vmdk.c        open, the ops table, info, check, measure
 */
#ifndef VMDK_H
#define VMDK_H

#include <diskimg/plugin.h>
#include <diskimg/guard.h>
#include <diskimg/toolkit.h>

#define VMDK_SECTOR 512u
#define VMDK4_MAGIC_BE 0x4b444d56u      /* "KDMV" read big-endian */
#define VMDK3_MAGIC_BE 0x434f5744u      /* "COWD" */
#define VMDK_GD_AT_END UINT64_MAX       /* header gdOffset: read the footer */
#define VMDK_GTE_ZEROED 1u              /* grain table entry of a zero grain */

/* Header flags. */
#define VMDK_FLAG_NL_DETECT  (1u << 0)
#define VMDK_FLAG_RGD        (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESS   (1u << 16)
#define VMDK_FLAG_MARKER     (1u << 17)
#define VMDK_COMPRESS_DEFLATE 1u

/* Stream markers (the type of a metadata marker sector). */
enum { VMDK_MARKER_EOS = 0, VMDK_MARKER_GT = 1, VMDK_MARKER_GD = 2, VMDK_MARKER_FOOTER = 3 };

/* Limits on what an image may ask of us. */
#define VMDK_DESC_MAX (1u << 20)        /* descriptor text, as qemu reads it */
#define VMDK_STATUS_MAX_GRAINS 512u     /* grains one block-status answer spans */
#define VMDK_DESC_LINE_MAX 4096u
#define VMDK_MAX_EXTENTS 1024u
#define VMDK_MAX_GRAIN_SECTORS 0x200000u   /* 1 GiB grains: qemu's bound */
#define VMDK_MAX_GTES 512u
#define VMDK_MAX_GD_ENTRIES (32u << 20)
#define VMDK_EXTENT_MAX_SECTORS (1ull << 32)

/* Open-time messages name a file only when it is not the image's own:
 * the core already says "Could not open 'x.vmdk': ...".  Callers pass the
 * path of an extent, or NULL for the image file; a format string then
 * starts "%s%s" for VMDK_WHERE(name). */
#define VMDK_WHERE(name) ((name) ? (name) : ""), ((name) ? ": " : "")

/* ------------------------------------------------------------ descriptor */

struct vmdk_desc_extent {
    char *access;              /* RW, RDONLY, NOACCESS */
    uint64_t sectors;
    char *type;                /* FLAT, SPARSE, VMFS, VMFSSPARSE, SESPARSE, ZERO... */
    char *file;                /* name as written (NULL for ZERO) */
    uint64_t offset;           /* sectors, FLAT only */
    bool has_offset;
};

struct vmdk_desc_line {
    char *text;                /* the line as read, without its newline */
    char *key;                 /* NULL: not a key = value line */
    char *value;               /* unquoted */
};

struct vmdk_desc {
    GPtrArray *lines;          /* struct vmdk_desc_line */
    GArray *extents;           /* struct vmdk_desc_extent */
};

/* Parses `len` bytes of descriptor text (NUL bytes end it).  Errors are
 * DISKIMG_ERROR_CORRUPT naming `filename` and the line. */
int vmdk_desc_parse(const char *text, size_t len, const char *filename,
                    struct vmdk_desc **out, GError **errp);
void vmdk_desc_free(struct vmdk_desc *d);
const char *vmdk_desc_get(const struct vmdk_desc *d, const char *key);
/* Sets key to value (quoted when `quote`), in place or after `after`'s line
 * (or at the end of the header lines when after is NULL or absent). */
void vmdk_desc_set(struct vmdk_desc *d, const char *key, const char *value, bool quote,
                   const char *after);
void vmdk_desc_remove(struct vmdk_desc *d, const char *key);
char *vmdk_desc_format(const struct vmdk_desc *d);
/* Reads a hexadecimal CID value ("fffffffe"); false when it is not one. */
bool vmdk_parse_cid(const char *text, uint32_t *out);

/* ---------------------------------------------------------------- extents */

enum vmdk_extent_kind { VMDK_EXTENT_FLAT, VMDK_EXTENT_SPARSE };

struct vmdk_stream;
struct vmdk_sesparse;

struct vmdk_extent {
    enum vmdk_extent_kind kind;
    char *type;                /* as qemu reports it ("" for a monolithic image) */
    char *name;                /* as the descriptor names it; NULL: the image file */
    diskimg_node *file;
    uint64_t start, length;    /* guest bytes */
    uint64_t flat_offset;      /* FLAT: byte offset in file */

    /* SPARSE */
    uint32_t version, flags;
    uint64_t header_capacity;  /* sectors */
    uint64_t grain;            /* bytes */
    uint32_t gtes;             /* entries per grain table */
    uint64_t gd_offset, rgd_offset;  /* bytes; rgd 0 when absent */
    uint64_t overhead;         /* sectors before the first grain */
    uint32_t gd_entries;
    uint32_t *gd, *rgd;        /* sector numbers of grain tables, host order */
    bool compressed, markers, zero_grain;
    bool read_only;            /* a kind we read but do not write (COWD) */
    uint64_t file_size;        /* at open, then what we appended */
    uint64_t next_alloc;       /* bytes: where the next grain goes */
    uint64_t desc_offset, desc_size;  /* bytes of the embedded descriptor */
    diskimg_mcache *gt_cache;  /* sectors of grain tables */
    diskimg_guard *guard;      /* writable sparse extents: where metadata lives */
    struct vmdk_stream *stream;/* non-NULL: tables kept in memory (stream.c) */
    struct vmdk_sesparse *sesparse; /* non-NULL: an seSparse extent (sesparse.c) */
};

/* What a grain lookup found. */
enum vmdk_grain_state { VMDK_GRAIN_UNALLOC, VMDK_GRAIN_ZERO, VMDK_GRAIN_DATA };

/* sparse.c */
int vmdk_sparse_open(struct vmdk_extent *e, const char *filename, bool writable,
                     GError **errp);
void vmdk_sparse_close(struct vmdk_extent *e);
int vmdk_grain_lookup(struct vmdk_extent *e, uint64_t off, enum vmdk_grain_state *state,
                      uint64_t *host, GError **errp);
/* For check: 0 when the grain's entry is sound, 1 when it points past the
 * end of the file, -1 (*errp set) when it cannot be looked up. */
int vmdk_grain_check(struct vmdk_extent *e, uint64_t off, GError **errp);
int vmdk_grain_set(struct vmdk_extent *e, uint64_t off, uint32_t entry, GError **errp);
/* Fails (corruption) when writing [off, off + len) of a data grain in
 * place would overwrite metadata. */
int vmdk_guard_data_write(struct vmdk_extent *e, uint64_t off, uint64_t len, GError **errp);
int vmdk_sparse_read(struct vmdk_extent *e, uint64_t host, uint64_t in_grain, void *buf,
                     uint64_t len, GError **errp);
int vmdk_sparse_flush(struct vmdk_extent *e, GError **errp);
/* Builds the 512-byte VMDK4 header sector. */
struct vmdk_header_params {
    uint32_t version, flags;
    uint64_t capacity, grain_sectors, desc_offset, desc_size;
    uint32_t gtes;
    uint64_t rgd_offset, gd_offset, overhead;
    uint16_t compress;
};
void vmdk_header_build(uint8_t sector[VMDK_SECTOR], const struct vmdk_header_params *p);
/* Stores a compressed grain (marker + deflate data, sector padded) of
 * `stored` bytes already built by vmdk_grain_compress; appends it. */
int vmdk_compressed_append(struct vmdk_extent *e, uint64_t guest_off, const void *stored,
                           uint64_t len, GError **errp);
/* deflate level of stream grains.  Measured on the bench's mixed data
 * (2457 grains): level 1 is 3 % larger than qemu's level 6 and costs a
 * third of its CPU time; the brief allows 5 %. */
#define VMDK_STREAM_LEVEL 1
/* True when deflate would gain next to nothing on the grain: 16 KiB at
 * its start and at its end look random.  Checking all 64 KiB cost a
 * quarter of a stream convert's CPU time; a grain of mixed content that
 * the samples misjudge is only stored larger, never wrongly. */
bool vmdk_grain_looks_random(const void *buf, uint64_t len);
/* Compresses one grain into out (marker + zlib stream); returns the
 * stored length (a multiple of 512), or -1. */
int64_t vmdk_grain_compress(uint64_t lba, const void *buf, uint64_t len, void *out,
                            uint64_t cap, GError **errp);

/* cowd.c: a vmfsSparse (COWD) extent, read only. */
int vmdk_cowd_open(struct vmdk_extent *e, const char *filename, GError **errp);

/* sesparse.c: an ESXi seSparse extent, read only. */
int vmdk_sesparse_open(struct vmdk_extent *e, const char *filename, GError **errp);
void vmdk_sesparse_free(struct vmdk_sesparse *se);
int vmdk_sesparse_lookup(struct vmdk_extent *e, uint64_t off, enum vmdk_grain_state *state,
                         uint64_t *host, GError **errp);

/* stream.c */
int vmdk_stream_start(struct vmdk_extent *e, GError **errp);
/* The same for a stream that has grains: its tables are loaded, new grains
 * go behind its last one. */
int vmdk_stream_resume(struct vmdk_extent *e, GError **errp);
void vmdk_stream_free(struct vmdk_stream *s);
int vmdk_stream_lookup(struct vmdk_extent *e, uint64_t off, uint32_t *entry);
int vmdk_stream_set(struct vmdk_extent *e, uint64_t off, uint32_t entry, GError **errp);
int vmdk_stream_finish(struct vmdk_extent *e, GError **errp);
/* Writes the metadata that ends a stream whose grains end at `pos`: the
 * grain tables of `tables` (directory index -> uint32_t[gtes], NULL for
 * none), the directory, the footer and the end-of-stream marker; *end
 * gets where it ends. */
int vmdk_stream_write_tail(diskimg_node *file, const uint8_t header[VMDK_SECTOR],
                           uint64_t pos, uint32_t gd_entries, uint32_t gtes,
                           GHashTable *tables, uint64_t *end, GError **errp);

/* ----------------------------------------------------------------- image */

struct vmdk_image {
    diskimg_node *node, *file;
    char *filename;
    bool writable;
    struct vmdk_desc *desc;
    bool desc_embedded;        /* in the first sparse extent (monolithicSparse) */
    uint64_t desc_offset, desc_room;  /* where it lives in `file`, bytes */
    char *create_type;
    uint32_t cid, parent_cid;
    bool cid_updated;
    bool parent_checked;       /* the backing file's CID matched parentCID */
    char *parent_hint;         /* parentFileNameHint */
    struct vmdk_extent *ext;   /* fixed at open: caches point into it */
    unsigned n_ext, ext_room;
    uint64_t size;
};

struct vmdk_image *vmdk_image_open(const struct diskimg_format_open_args *a, GError **errp);
void vmdk_image_free(struct vmdk_image *img);
/* io.c */
struct vmdk_extent *vmdk_find_extent(struct vmdk_image *img, uint64_t off);
int vmdk_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int vmdk_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp);
int vmdk_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int vmdk_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                      GError **errp);
int vmdk_flush(void *h, GError **errp);
int vmdk_write_descriptor(struct vmdk_image *img, GError **errp);
/* Gives the image a new CID on its first change after open (qemu's rule). */
int vmdk_update_cid(struct vmdk_image *img, GError **errp);

int vmdk_read_parent_cid(const char *image, const char *backing, uint32_t *cid,
                         GError **errp);
int vmdk_create(const struct diskimg_format_create_args *args, GError **errp);
int vmdk_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                 GError **errp);

#endif
