/* SPDX-License-Identifier: MIT */
/*
 * create.c — new vmdk images of every subformat qemu-img 7.2 writes.
 *
 * Layouts follow qemu-img so that images compare equal in size and shape:
 *   monolithicSparse   one sparse extent, the descriptor at sector 1,
 *                      redundant and primary grain directories and every
 *                      grain table preallocated behind it;
 *   twoGbMaxExtentSparse / twoGbMaxExtentFlat
 *                      a descriptor file and 2 GiB extents NAME-s001.vmdk,
 *                      NAME-f001.vmdk...;
 *   monolithicFlat     a descriptor file and NAME-flat.vmdk;
 *   streamOptimized    header version 3, compressed grains with markers,
 *                      the grain directory at the end (VMware's stream
 *                      layout, stream.c): a new image is the header, the
 *                      descriptor, an empty directory, footer and
 *                      end-of-stream marker.
 */
#include "vmdk.h"

#include <string.h>

#define SPLIT_SIZE 0x80000000ull
#define DESC_SECTORS 20u
#define GRAIN_SECTORS 128u
#define STREAM_OVERHEAD 128u  /* sectors: header + descriptor, grain aligned */

enum subformat { SUB_SPARSE, SUB_FLAT, SUB_SPLIT_SPARSE, SUB_SPLIT_FLAT, SUB_STREAM };
static const char *const subformat_names[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
    "streamOptimized",
};
static const enum subformat subformat_of[] = {
    SUB_SPARSE, SUB_FLAT, SUB_SPLIT_SPARSE, SUB_SPLIT_FLAT, SUB_STREAM,
};

struct create_plan {
    enum subformat sub;
    const char *adapter;
    const char *hwversion;
    const char *toolsversion;
    const char *backing;
    bool zeroed_grain;
    uint64_t size;
    uint32_t parent_cid;
};

static bool is_flat(enum subformat s)
{
    return s == SUB_FLAT || s == SUB_SPLIT_FLAT;
}

static bool is_split(enum subformat s)
{
    return s == SUB_SPLIT_SPARSE || s == SUB_SPLIT_FLAT;
}

static const char *opt(const diskimg_options *o, const char *key)
{
    return o && diskimg_options_has(o, key) ? diskimg_options_get_str(o, key) : NULL;
}

static int parse_subformat(const char *name, enum subformat *out, GError **errp)
{
    if (!name) {
        *out = SUB_SPARSE;
        return 0;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(subformat_names); i++) {
        if (!strcmp(name, subformat_names[i])) {
            *out = subformat_of[i];
            return 0;
        }
    }
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid parameter '%s'", name);
}

static int parse_adapter(const char *name, const char **out, GError **errp)
{
    static const char *const known[] = { "ide", "buslogic", "lsilogic", "legacyESX" };
    if (!name) {
        *out = "ide";
        return 0;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(known); i++) {
        if (!strcmp(name, known[i])) {
            *out = known[i];
            return 0;
        }
    }
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid parameter '%s'", name);
}

/* The parent's CID, read by opening it the way qemu-img does. */
int vmdk_read_parent_cid(const char *image, const char *backing, uint32_t *cid,
                           GError **errp)
{
    g_autofree char *path = diskimg_resolve_relative(image, backing);
    struct diskimg_open_params p = { .struct_size = sizeof(p),
                                     .flags = DISKIMG_OPEN_NO_BACKING | DISKIMG_OPEN_NO_IO };
    diskimg_node *n = diskimg_open(path, &p, errp);
    if (!n)
        return -1;
    int ret = 0;
    if (strcmp(diskimg_node_driver(n), "vmdk") != 0) {
        ret = diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                "Invalid backing file format: %s. Must be vmdk",
                                diskimg_node_driver(n));
    } else {
        const struct vmdk_image *img = diskimg_node_handle(n);
        *cid = img->cid;
    }
    diskimg_close(n);
    return ret;
}

/* The plan from the options alone (create and measure). */
static int plan_from_options(const diskimg_options *o, uint64_t size, struct create_plan *p,
                             GError **errp)
{
    const char *fmt = opt(o, "backing_fmt");
    if (fmt && strcmp(fmt, "vmdk") != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "backing_file must be a vmdk image");
    if (parse_subformat(opt(o, "subformat"), &p->sub, errp) < 0 ||
        parse_adapter(opt(o, "adapter_type"), &p->adapter, errp) < 0)
        return -1;
    p->size = (size + VMDK_SECTOR - 1) & ~(uint64_t)(VMDK_SECTOR - 1);
    p->backing = opt(o, "backing_file");
    p->zeroed_grain = o && diskimg_options_get_bool(o, "zeroed_grain", false);
    p->hwversion = opt(o, "hwversion");
    if (p->hwversion && !strcmp(p->hwversion, "undefined"))
        p->hwversion = NULL;
    if (o && diskimg_options_get_bool(o, "compat6", false)) {
        if (p->hwversion)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "compat6 cannot be enabled with hwversion set");
        p->hwversion = "6";
    }
    if (!p->hwversion)
        p->hwversion = "4";
    p->toolsversion = opt(o, "toolsversion");
    if (!p->toolsversion)
        p->toolsversion = "2147483647";
    if (is_flat(p->sub) && p->backing)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Flat image can't have backing file");
    if (is_flat(p->sub) && p->zeroed_grain)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Flat image can't enable zeroed grain");
    if (p->size / VMDK_SECTOR > (1ull << 40))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "the image size is too large");
    p->parent_cid = 0xffffffffu;
    if (p->backing && diskimg_trust_check_to_record(DISKIMG_CHILD_BACKING, p->backing, errp) < 0)
        return -1;
    return 0;
}

static int make_plan(const struct diskimg_format_create_args *a, struct create_plan *p,
                     GError **errp)
{
    if (plan_from_options(a->options, a->size, p, errp) < 0)
        return -1;
    if (p->backing && !(a->flags & DISKIMG_CREATE_UNSAFE) &&
        vmdk_read_parent_cid(a->filename, p->backing, &p->parent_cid, errp) < 0)
        return -1;
    return 0;
}

static char *descriptor_text(const struct create_plan *p, const char *extent_lines)
{
    unsigned heads = strcmp(p->adapter, "ide") ? 255 : 16;
    g_autofree char *parent = p->backing
        ? g_strdup_printf("parentFileNameHint=\"%s\"", p->backing) : g_strdup("");
    return g_strdup_printf("# Disk DescriptorFile\n"
                           "version=1\n"
                           "CID=%" PRIx32 "\n"
                           "parentCID=%" PRIx32 "\n"
                           "createType=\"%s\"\n"
                           "%s\n"
                           "# Extent description\n"
                           "%s\n"
                           "# The Disk Data Base\n"
                           "#DDB\n"
                           "\n"
                           "ddb.virtualHWVersion = \"%s\"\n"
                           "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
                           "ddb.geometry.heads = \"%u\"\n"
                           "ddb.geometry.sectors = \"63\"\n"
                           "ddb.adapterType = \"%s\"\n"
                           "ddb.toolsVersion = \"%s\"\n",
                           g_random_int(), p->parent_cid, subformat_names[p->sub], parent,
                           extent_lines, p->hwversion,
                           p->size / ((uint64_t)63 * heads * VMDK_SECTOR), heads, p->adapter,
                           p->toolsversion);
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

/* A hosted sparse extent as qemu lays it out: header, descriptor room,
 * redundant directory and tables, primary directory and tables. */
/* Where the directories and tables of a sparse extent of `bytes` go, and
 * where its grains start (the header's overhead). */
static void sparse_layout(uint64_t bytes, bool zeroed_grain, struct vmdk_header_params *h,
                          uint64_t *gt_count, uint64_t *gt_sectors, uint64_t *gd_sectors)
{
    uint64_t capacity = bytes / VMDK_SECTOR;
    uint64_t grains = div_up(capacity, GRAIN_SECTORS);
    *gt_sectors = div_up(VMDK_MAX_GTES * 4, VMDK_SECTOR);
    *gt_count = div_up(grains, VMDK_MAX_GTES);
    *gd_sectors = div_up(*gt_count * 4, VMDK_SECTOR);
    *h = (struct vmdk_header_params){
        .version = zeroed_grain ? 2 : 1,
        .flags = VMDK_FLAG_RGD | VMDK_FLAG_NL_DETECT | (zeroed_grain ? VMDK_FLAG_ZERO_GRAIN : 0),
        .capacity = capacity, .grain_sectors = GRAIN_SECTORS, .gtes = VMDK_MAX_GTES,
        .desc_offset = 1, .desc_size = DESC_SECTORS,
    };
    h->rgd_offset = h->desc_offset + h->desc_size;
    h->gd_offset = h->rgd_offset + *gd_sectors + *gt_sectors * *gt_count;
    h->overhead = div_up(h->gd_offset + *gd_sectors + *gt_sectors * *gt_count, GRAIN_SECTORS) *
                  GRAIN_SECTORS;
}

static int init_sparse(diskimg_node *file, uint64_t bytes, bool zeroed_grain, const char *desc,
                       GError **errp)
{
    struct vmdk_header_params h;
    uint64_t gt_count, gt_sectors, gd_sectors;

    sparse_layout(bytes, zeroed_grain, &h, &gt_count, &gt_sectors, &gd_sectors);
    uint8_t sector[VMDK_SECTOR];
    vmdk_header_build(sector, &h);
    if (diskimg_node_pwrite(file, sector, sizeof(sector), 0, 0, errp) < 0 ||
        diskimg_node_truncate(file, h.overhead * VMDK_SECTOR, DISKIMG_PREALLOC_OFF, 0, errp) < 0)
        return -1;
    g_autofree uint8_t *gd = g_malloc0(gd_sectors * VMDK_SECTOR);
    uint64_t dirs[2] = { h.rgd_offset, h.gd_offset };
    for (int d = 0; d < 2; d++) {
        for (uint64_t i = 0; i < gt_count; i++)
            diskimg_put_le32(gd + 4 * i, (uint32_t)(dirs[d] + gd_sectors + i * gt_sectors));
        if (diskimg_node_pwrite(file, gd, gd_sectors * VMDK_SECTOR, dirs[d] * VMDK_SECTOR, 0,
                                errp) < 0)
            return -1;
    }
    if (desc && diskimg_node_pwrite(file, desc, strlen(desc), VMDK_SECTOR, 0, errp) < 0)
        return -1;
    return 0;
}

static int init_stream(diskimg_node *file, uint64_t bytes, const char *desc, GError **errp)
{
    uint64_t capacity = bytes / VMDK_SECTOR;
    struct vmdk_header_params h = {
        .version = 3,
        .flags = VMDK_FLAG_NL_DETECT | VMDK_FLAG_COMPRESS | VMDK_FLAG_MARKER,
        .capacity = capacity, .grain_sectors = GRAIN_SECTORS, .gtes = VMDK_MAX_GTES,
        .desc_offset = 1, .desc_size = DESC_SECTORS, .gd_offset = VMDK_GD_AT_END,
        .overhead = STREAM_OVERHEAD, .compress = VMDK_COMPRESS_DEFLATE,
    };
    uint64_t gd_entries = div_up(div_up(capacity, GRAIN_SECTORS), VMDK_MAX_GTES);
    uint8_t sector[VMDK_SECTOR];
    uint64_t end;
    vmdk_header_build(sector, &h);
    if (diskimg_node_pwrite(file, sector, sizeof(sector), 0, 0, errp) < 0 ||
        diskimg_node_pwrite(file, desc, strlen(desc), VMDK_SECTOR, 0, errp) < 0 ||
        diskimg_node_write_zeroes(file, VMDK_SECTOR + strlen(desc),
                                  STREAM_OVERHEAD * VMDK_SECTOR - VMDK_SECTOR - strlen(desc), 0,
                                  errp) < 0)
        return -1;
    return vmdk_stream_write_tail(file, sector, STREAM_OVERHEAD * VMDK_SECTOR,
                                  (uint32_t)gd_entries, VMDK_MAX_GTES, NULL, &end, errp);
}

/* The base name of the image split into name and extension ("a", ".vmdk"). */
static void split_name(const char *filename, char **prefix, char **postfix)
{
    g_autofree char *base = g_path_get_basename(filename);
    const char *dot = strrchr(base, '.');
    *prefix = dot ? g_strndup(base, (gsize)(dot - base)) : g_strdup(base);
    *postfix = g_strdup(dot ? dot : "");
}

static int create_extents(const struct diskimg_format_create_args *a,
                          const struct create_plan *p, GString *lines, GError **errp)
{
    g_autofree char *prefix = NULL, *postfix = NULL;
    split_name(a->filename, &prefix, &postfix);
    bool flat = is_flat(p->sub), split = is_split(p->sub);
    uint64_t piece = split ? SPLIT_SIZE : p->size;
    unsigned idx = 1;
    for (uint64_t done = 0; done < p->size; idx++) {
        uint64_t n = MIN(p->size - done, piece);
        g_autofree char *name = split
            ? g_strdup_printf("%s-%c%03u%s", prefix, flat ? 'f' : 's', idx, postfix)
            : g_strdup_printf("%s-flat%s", prefix, postfix);
        diskimg_node *x = diskimg_node_create_child(a->file, DISKIMG_CHILD_EXTENT, name, 0, errp);
        if (!x)
            return -1;
        int r = flat ? diskimg_node_truncate(x, n, DISKIMG_PREALLOC_OFF, 0, errp)
                     : init_sparse(x, n, p->zeroed_grain, NULL, errp);
        if (r < 0)
            return -1;
        g_string_append_printf(lines, flat ? "RW %" PRIu64 " FLAT \"%s\" 0\n"
                                           : "RW %" PRIu64 " SPARSE \"%s\"\n",
                               n / VMDK_SECTOR, name);
        done += n;
    }
    return 0;
}

int vmdk_create(const struct diskimg_format_create_args *a, GError **errp)
{
    struct create_plan p;
    if (make_plan(a, &p, errp) < 0)
        return -1;
    g_autoptr(GString) lines = g_string_new(NULL);
    if (p.sub == SUB_SPARSE || p.sub == SUB_STREAM) {
        g_autofree char *base = g_path_get_basename(a->filename);
        g_string_append_printf(lines, "RW %" PRIu64 " SPARSE \"%s\"\n", p.size / VMDK_SECTOR,
                               base);
        g_autofree char *desc = descriptor_text(&p, lines->str);
        if (strlen(desc) > DESC_SECTORS * VMDK_SECTOR)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "the descriptor does not fit in %u sectors", DESC_SECTORS);
        return p.sub == SUB_STREAM ? init_stream(a->file, p.size, desc, errp)
                                   : init_sparse(a->file, p.size, p.zeroed_grain, desc, errp);
    }
    if (create_extents(a, &p, lines, errp) < 0)
        return -1;
    g_autofree char *desc = descriptor_text(&p, lines->str);
    size_t len = strlen(desc);
    if (diskimg_node_pwrite(a->file, desc, len, 0, 0, errp) < 0)
        return -1;
    return diskimg_node_truncate(a->file, len, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                                 errp);
}

/* ---------------------------------------------------------------- measure */

/*
 * Not in qemu-img 7.2 (its vmdk driver has no measure).  What the files
 * create makes and a copy then fills need, per subformat:
 *   sparse extents: the overhead (header, descriptor, both directories,
 *     every grain table) plus a 64 KiB grain per grain the source has
 *     data in (all grains: fully allocated);
 *   flat extents: their whole size in both numbers (as qemu measures raw);
 *   streamOptimized: header and descriptor, per grain with data its
 *     marker and deflate's worst case (zlib's compressBound: incompressible
 *     grains are stored, which is within it), a marker and table per
 *     32 MiB with data, the directory, footer and end-of-stream marker —
 *     an upper bound, since grains compress;
 *   a separate descriptor file (flat and split subformats): its text with
 *     room for extent names of up to 255 bytes (the names come from the
 *     image's name, which measure does not know).
 */
#define NAME_ROOM 255u

static uint64_t deflate_bound(uint64_t len)
{
    return len + (len >> 12) + (len >> 14) + (len >> 25) + 13;
}

struct measure_ctx {
    const struct create_plan *p;
    diskimg_node *source;
    uint64_t source_size;
};

/* Grains (or 32 MiB table spans) with data among the first `size` bytes. */
static int data_units(const struct measure_ctx *c, uint64_t unit, uint64_t *n, GError **errp)
{
    *n = 0;
    if (!c->source)
        return 0;
    return diskimg_measure_data_blocks(c->source, MIN(c->source_size, c->p->size), unit, n,
                                       errp);
}

static uint64_t extent_count(const struct create_plan *p)
{
    return is_split(p->sub) ? MAX(div_up(p->size, SPLIT_SIZE), 1) : 1;
}

/* The descriptor file of the flat and split subformats. */
static uint64_t descriptor_file_bytes(const struct create_plan *p)
{
    g_autoptr(GString) lines = g_string_new(NULL);
    uint64_t extents = extent_count(p);
    uint64_t piece = is_split(p->sub) ? SPLIT_SIZE : p->size;
    for (uint64_t i = 0; i < extents; i++) {
        uint64_t left = p->size - MIN(p->size, i * piece);
        g_string_append_printf(lines, "RW %" PRIu64 " FLAT \"\" 0\n",
                               (uint64_t)MIN(left, piece) / VMDK_SECTOR);
    }
    g_autofree char *text = descriptor_text(p, lines->str);
    return strlen(text) + extents * NAME_ROOM;
}

/* Overhead of the sparse extents, and grain bytes (used, all). */
static int measure_sparse(const struct measure_ctx *c, struct diskimg_measure_result *res,
                          GError **errp)
{
    const struct create_plan *p = c->p;
    uint64_t piece = is_split(p->sub) ? SPLIT_SIZE : p->size, overhead = 0, used;
    for (uint64_t done = 0; done < p->size; done += piece) {
        struct vmdk_header_params h;
        uint64_t gt_count, gt_sectors, gd_sectors;
        sparse_layout(MIN(piece, p->size - done), p->zeroed_grain, &h, &gt_count, &gt_sectors,
                      &gd_sectors);
        overhead += h.overhead * VMDK_SECTOR;
    }
    uint64_t grain = (uint64_t)GRAIN_SECTORS * VMDK_SECTOR;
    if (data_units(c, grain, &used, errp) < 0)
        return -1;
    res->required = overhead + used * grain;
    res->fully_allocated = overhead + div_up(p->size, grain) * grain;
    return 0;
}

static int measure_stream(const struct measure_ctx *c, struct diskimg_measure_result *res,
                          GError **errp)
{
    const struct create_plan *p = c->p;
    uint64_t grain = (uint64_t)GRAIN_SECTORS * VMDK_SECTOR, span = grain * VMDK_MAX_GTES;
    uint64_t per_grain = div_up(12 + deflate_bound(grain), VMDK_SECTOR) * VMDK_SECTOR;
    uint64_t per_table = (1 + div_up(VMDK_MAX_GTES * 4, VMDK_SECTOR)) * VMDK_SECTOR;
    uint64_t tables_all = div_up(div_up(p->size, grain), VMDK_MAX_GTES);
    uint64_t fixed = (STREAM_OVERHEAD + 1 + div_up(tables_all * 4, VMDK_SECTOR) + 3) *
                     (uint64_t)VMDK_SECTOR;
    uint64_t grains, tables;
    if (data_units(c, grain, &grains, errp) < 0 || data_units(c, span, &tables, errp) < 0)
        return -1;
    res->required = fixed + grains * per_grain + tables * per_table;
    res->fully_allocated = fixed + div_up(p->size, grain) * per_grain + tables_all * per_table;
    return 0;
}

int vmdk_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                 GError **errp)
{
    struct create_plan p;
    if (plan_from_options(args->options, args->size, &p, errp) < 0)
        return -1;
    struct measure_ctx c = { .p = &p, .source = args->source, .source_size = args->size };
    int ret;
    if (p.sub == SUB_STREAM)
        ret = measure_stream(&c, res, errp);
    else if (is_flat(p.sub)) {
        res->required = res->fully_allocated = p.size;
        ret = 0;
    } else
        ret = measure_sparse(&c, res, errp);
    if (ret == 0 && p.sub != SUB_SPARSE && p.sub != SUB_STREAM) {
        uint64_t desc = descriptor_file_bytes(&p);
        res->required += desc;
        res->fully_allocated += desc;
    }
    return ret;
}
