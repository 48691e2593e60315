/* SPDX-License-Identifier: MIT */
/*
 * example.c — the "example" image format, a complete diskimg format plugin
 * built outside the diskimg tree against the installed SDK (pkg-config
 * module diskimg-plugin).  It is meant to be copied: start your own format
 * from here.  docs/plugin-guide.md explains every callback.
 *
 * On-disk layout, integers little endian:
 *
 *     offset  size  field
 *          0     8  magic "DIEXMPL1"
 *          8     4  version, 1
 *         12     4  header size, 512
 *         16     8  virtual size in bytes, at most 2^62
 *         24     8  data offset, 512
 *         32    64  label: text, NUL-padded (so at most 63 bytes)
 *         96   416  reserved, zero
 *        512     -  the guest data, byte for byte; holes in the host file
 *                   are fine and read as zeroes
 *
 * Thread model: SERIALIZE_REQUESTS.  The core calls at most one callback at
 * a time per open image (other images run in parallel), so the handle needs
 * no lock: truncate can change `size` while nothing else looks at it.  Data
 * requests only pass through to the file child, whose I/O plugin has its
 * own thread model.  A format that keeps cached metadata and wants parallel
 * requests would pick PARALLEL and do its own locking.
 *
 * Nothing here prints or exits: every failure is a GError in the
 * DISKIMG_ERROR domain, one line, which the core prefixes with the file
 * name ("Could not open 'x.img': Unsupported version 7").
 */
#include <string.h>

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0"
#endif

/* Generated from example.yaml by diskimg-embed-schema (see meson.build). */
extern const char example_schema_yaml[];

#define EX_MAGIC        "DIEXMPL1"
#define EX_MAGIC_LEN    8u
#define EX_VERSION      1u
#define EX_HEADER_SIZE  512u            /* also where the data starts */
#define EX_LABEL_SIZE   64u
#define EX_MAX_SIZE     (UINT64_C(1) << 62)

/* Byte offsets of the header fields. */
enum {
    OFF_MAGIC        = 0,
    OFF_VERSION      = 8,
    OFF_HEADER_SIZE  = 12,
    OFF_VIRTUAL_SIZE = 16,
    OFF_DATA_OFFSET  = 24,
    OFF_LABEL        = 32,
    OFF_RESERVED     = OFF_LABEL + EX_LABEL_SIZE,
};

/* The handle open returns; the core passes it to every other callback. */
struct example {
    diskimg_node *file;             /* file child; the core owns and closes it */
    uint64_t size;                  /* virtual size */
    char label[EX_LABEL_SIZE];      /* always NUL-terminated */
};

/* ---------------------------------------------------------------- helpers */

/* The core has checked the options against the schema (so `label`, if
 * set, is a string); what the schema cannot say we check here. */
static int label_option(const diskimg_options *o, const char **label, GError **errp)
{
    const char *l = o ? diskimg_options_get_str(o, "label") : NULL;

    *label = l ? l : "";
    if (strlen(*label) >= EX_LABEL_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "label must be at most %u bytes long", EX_LABEL_SIZE - 1);
    return 0;
}

static int check_size(uint64_t size, GError **errp)
{
    if (size > EX_MAX_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image size %" PRIu64 " is too large (the maximum is 4 EiB)",
                                 size);
    return 0;
}

/* Every field is checked: the file may be damaged or hostile.  Fields are
 * read through the core's bounded reader (<diskimg/toolkit.h>): a read
 * outside the bytes we have fails with an error naming the field instead
 * of reading past the buffer, and the byte order is said once. */
static int parse_header(const uint8_t *buf, size_t len, struct example *s, GError **errp)
{
    struct diskimg_reader h = diskimg_reader_make(buf, len, DISKIMG_LITTLE_ENDIAN, NULL,
                                                  "example header");
    uint32_t version, header_size;
    uint64_t size, data_offset;
    const uint8_t *magic, *label, *reserved;

    if (!(magic = diskimg_read_bytes(&h, OFF_MAGIC, EX_MAGIC_LEN, "magic", errp)) ||
        diskimg_read_u32(&h, OFF_VERSION, "version", &version, errp) < 0 ||
        diskimg_read_u32(&h, OFF_HEADER_SIZE, "header size", &header_size, errp) < 0 ||
        diskimg_read_u64(&h, OFF_VIRTUAL_SIZE, "virtual size", &size, errp) < 0 ||
        diskimg_read_u64(&h, OFF_DATA_OFFSET, "data offset", &data_offset, errp) < 0 ||
        !(label = diskimg_read_bytes(&h, OFF_LABEL, EX_LABEL_SIZE, "label", errp)) ||
        !(reserved = diskimg_read_bytes(&h, OFF_RESERVED, EX_HEADER_SIZE - OFF_RESERVED,
                                        "reserved", errp)))
        return -1;

    if (memcmp(magic, EX_MAGIC, EX_MAGIC_LEN) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image is not in example format");
    if (version != EX_VERSION)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported version %" PRIu32, version);
    if (header_size != EX_HEADER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid header size %" PRIu32 " (must be %u)",
                                 header_size, EX_HEADER_SIZE);
    if (data_offset != EX_HEADER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid data offset %" PRIu64 " (must be %u)",
                                 data_offset, EX_HEADER_SIZE);
    /* With data_offset fixed the second test cannot fire today; it keeps
     * "offset + size" safe should a later version make the offset vary. */
    if (size > EX_MAX_SIZE || size > (uint64_t)INT64_MAX - data_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid virtual size %" PRIu64, size);
    if (!memchr(label, '\0', EX_LABEL_SIZE))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Image label is not NUL-terminated");
    if (!diskimg_is_zero(reserved, EX_HEADER_SIZE - OFF_RESERVED))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Reserved header bytes are not zero");

    s->size = size;
    memcpy(s->label, label, EX_LABEL_SIZE);
    return 0;
}

/* ---------------------------------------------------------------- probing */

/* `buf` holds the first min(file size, 2048) bytes.  Our magic is
 * unambiguous, so a match is a certain 100. */
static int example_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= EX_HEADER_SIZE && memcmp(buf, EX_MAGIC, EX_MAGIC_LEN) == 0 ? 100 : 0;
}

/* ------------------------------------------------------- open and close */

/* Every args field used here exists since ABI 2.  A field added later must
 * be guarded: if (args->struct_size >= offsetof(...) + sizeof(field)). */
static void *example_open(const struct diskimg_format_open_args *args, GError **errp)
{
    uint8_t header[EX_HEADER_SIZE];
    struct example *s;
    int64_t file_size = diskimg_node_size(args->file, errp);

    if (file_size < 0)
        return NULL;
    /* File nodes read zeroes past EOF: check the length, not only the magic. */
    if ((uint64_t)file_size < EX_HEADER_SIZE) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image is not in example format");
        return NULL;
    }
    if (diskimg_node_pread(args->file, header, sizeof(header), 0, errp) < 0)
        return NULL;
    s = g_new0(struct example, 1);
    s->file = args->file;
    if (parse_header(header, sizeof(header), s, errp) < 0) {
        g_free(s);
        return NULL;
    }
    return s;
}

static void example_close(void *h)
{
    g_free(h);
}

/* ------------------------------------------------------------------ data */

/*
 * The core has already checked that [offset, offset+len) lies inside the
 * virtual size (and that the image is writable, for writes), so data
 * requests just move to the file, behind the header.  No overflow: the
 * size is at most 2^62.
 */
static int64_t example_get_size(void *h, GError **errp)
{
    struct example *s = h;

    (void)errp;
    return (int64_t)s->size;
}

static int example_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct example *s = h;

    return diskimg_node_pread(s->file, buf, len, EX_HEADER_SIZE + offset, errp);
}

static int example_write(void *h, const void *buf, uint64_t len, uint64_t offset,
                         unsigned flags, GError **errp)
{
    struct example *s = h;

    return diskimg_node_pwrite(s->file, buf, len, EX_HEADER_SIZE + offset, flags, errp);
}

/* Flags (MAY_UNMAP, NO_FALLBACK, FUA) keep their meaning one level down. */
static int example_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags,
                                GError **errp)
{
    struct example *s = h;

    return diskimg_node_write_zeroes(s->file, EX_HEADER_SIZE + offset, len, flags, errp);
}

static int example_discard(void *h, uint64_t offset, uint64_t len, GError **errp)
{
    struct example *s = h;

    return diskimg_node_discard(s->file, EX_HEADER_SIZE + offset, len, errp);
}

/*
 * Every byte of the image is ours (ALLOCATED: nothing falls through to a
 * backing file) and sits at a known place in the file (OFFSET_VALID).
 * Whether it is data or a hole only the file knows: RECURSE asks the core
 * to look there and to shorten the extent to the file's answer.
 */
static int example_block_status(void *h, uint64_t offset, uint64_t len,
                                 struct diskimg_extent *ext, GError **errp)
{
    struct example *s = h;

    /* The core hands us an extent with struct_size set; the members we
     * fill are all of ABI 2, so every core that loads us has them. */
    (void)errp;
    ext->length = len;
    ext->flags = DISKIMG_BS_RECURSE | DISKIMG_BS_OFFSET_VALID | DISKIMG_BS_ALLOCATED;
    ext->offset = EX_HEADER_SIZE + offset;
    ext->file = s->file;
    return 0;
}

/* Rewrites the virtual size field of the header. */
static int write_size(struct example *s, uint64_t size, GError **errp)
{
    uint8_t field[8];

    diskimg_put_le64(field, size);
    return diskimg_node_pwrite(s->file, field, sizeof(field), OFF_VIRTUAL_SIZE, 0, errp);
}

/*
 * Resizes the file and records the new size.  The order keeps the image
 * readable if we stop half-way: growing makes room before the header
 * claims it; shrinking updates the header before the file loses the tail.
 */
static int example_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc,
                            unsigned flags, GError **errp)
{
    struct example *s = h;
    bool shrink = size < s->size;

    if (check_size(size, errp) < 0)
        return -1;
    if (shrink && !(flags & DISKIMG_TRUNCATE_SHRINK))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Shrinking the image needs --shrink");
    if (shrink && write_size(s, size, errp) < 0)
        return -1;
    /* The file plugin implements (or refuses) the preallocation mode. */
    if (diskimg_node_truncate(s->file, EX_HEADER_SIZE + size, prealloc, flags, errp) < 0)
        return -1;
    if (!shrink && write_size(s, size, errp) < 0)
        return -1;
    s->size = size;
    return 0;
}

/* --------------------------------------------------------- info, measure */

static int example_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                        GError **errp)
{
    struct example *s = h;

    (void)errp;
    info->cluster_size = 0;     /* no clusters: the data is stored flat */
    /* Must match the schema's `info:`; the core checks and orders it. */
    diskimg_obj_set_str(specific, "label", s->label);
    return 0;
}

/* Flat storage: the file is the header plus the whole virtual disk, both
 * when measuring for --size and for converting an existing image.  As with
 * every struct the core gives us to fill, a member newer than ABI 2 would
 * be written only when res->struct_size reaches it. */
static int example_measure(const struct diskimg_measure_args *args,
                           struct diskimg_measure_result *res, GError **errp)
{
    const char *label;

    if (check_size(args->size, errp) < 0 || label_option(args->options, &label, errp) < 0)
        return -1;
    res->required = EX_HEADER_SIZE + args->size;
    res->fully_allocated = res->required;
    res->has_bitmaps = false;
    return 0;
}

/* ------------------------------------------------------------------ create */

/* args->file is new, empty and open read-write; the core deletes it again
 * if we fail. */
static int example_create(const struct diskimg_format_create_args *args, GError **errp)
{
    uint8_t header[EX_HEADER_SIZE] = { 0 };
    const char *label;

    if (check_size(args->size, errp) < 0 || label_option(args->options, &label, errp) < 0)
        return -1;
    memcpy(header + OFF_MAGIC, EX_MAGIC, EX_MAGIC_LEN);
    diskimg_put_le32(header + OFF_VERSION, EX_VERSION);
    diskimg_put_le32(header + OFF_HEADER_SIZE, EX_HEADER_SIZE);
    diskimg_put_le64(header + OFF_VIRTUAL_SIZE, args->size);
    diskimg_put_le64(header + OFF_DATA_OFFSET, EX_HEADER_SIZE);
    memcpy(header + OFF_LABEL, label, strlen(label));   /* < 64: NUL-padded */

    if (diskimg_node_pwrite(args->file, header, sizeof(header), 0, 0, errp) < 0)
        return -1;
    /* A sparse file: the data area reads as zeroes (DISKIMG_CAP_ZERO_INIT). */
    return diskimg_node_truncate(args->file, EX_HEADER_SIZE + args->size,
                                 DISKIMG_PREALLOC_OFF, 0, errp);
}

/* -------------------------------------------------------------- descriptor */

/*
 * Callbacks left NULL are "not supported" and the core answers with
 * qemu-img's message (compression, snapshots, backing files, check...).
 * image_capabilities is NULL as well: every example image can do what the
 * descriptor says (a format whose images differ, say one with features it
 * cannot write, would answer DISKIMG_CAP_READ_ONLY there for that image).
 * flush is NULL too: we cache nothing, every header update is written at
 * once, and the core flushes the file child after a format's flush anyway.
 */
static const struct diskimg_format_ops example_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = example_probe,
    .open = example_open,
    .close = example_close,
    .create = example_create,
    .get_size = example_get_size,
    .read = example_read,
    .write = example_write,
    .write_zeroes = example_write_zeroes,
    .discard = example_discard,
    .block_status = example_block_status,
    .truncate = example_truncate,
    .info = example_info,
    .measure = example_measure,
};

static const struct diskimg_plugin example_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "example",
    .version = PLUGIN_VERSION,
    .summary = "diskimg example format: a 512-byte header, then the guest data",
    .schema = example_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT,
    .ops = &example_ops,
};

DISKIMG_PLUGIN_DEFINE(example_plugin)
