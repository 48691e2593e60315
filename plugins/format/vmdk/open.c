/* SPDX-License-Identifier: MIT */
/*
 * open.c — opening a vmdk image: the first sector decides between a
 * monolithic sparse file (its descriptor embedded at sector 1) and a
 * descriptor file whose extent lines name the files holding the data.
 */
#include "vmdk.h"

#include <string.h>

static const char *const descriptor_types[] = {
    "monolithicFlat", "vmfs", "vmfsSparse", "seSparse", "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
};

static bool known_descriptor_type(const char *t)
{
    for (size_t i = 0; i < G_N_ELEMENTS(descriptor_types); i++)
        if (!strcmp(t, descriptor_types[i]))
            return true;
    return false;
}

/* Room for `n` extents, made once: extents are never moved afterwards,
 * since their metadata caches keep pointers to them. */
static void reserve_extents(struct vmdk_image *img, unsigned n)
{
    img->ext = g_new0(struct vmdk_extent, MAX(n, 1u));
    img->ext_room = MAX(n, 1u);
}

static struct vmdk_extent *add_extent(struct vmdk_image *img)
{
    g_assert(img->n_ext < img->ext_room);
    struct vmdk_extent *e = &img->ext[img->n_ext++];
    e->start = img->size;
    return e;
}

/* CID, parentCID and parentFileNameHint of the parsed descriptor. */
static int read_identity(struct vmdk_image *img, GError **errp)
{
    const char *cid = vmdk_desc_get(img->desc, "CID");
    const char *pcid = vmdk_desc_get(img->desc, "parentCID");
    if (!vmdk_parse_cid(cid, &img->cid))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vmdk descriptor: field 'CID' is missing or not hexadecimal");
    if (!vmdk_parse_cid(pcid, &img->parent_cid))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vmdk descriptor: field 'parentCID' is missing or not "
                                 "hexadecimal");
    const char *hint = vmdk_desc_get(img->desc, "parentFileNameHint");
    if (hint && *hint)
        img->parent_hint = g_strdup(hint);
    return 0;
}

static int open_monolithic(struct vmdk_image *img, GError **errp)
{
    reserve_extents(img, 1);
    struct vmdk_extent *e = add_extent(img);
    e->kind = VMDK_EXTENT_SPARSE;
    e->type = g_strdup("");
    e->file = img->file;
    if (vmdk_sparse_open(e, NULL, img->writable, errp) < 0)
        return -1;
    e->length = e->header_capacity * VMDK_SECTOR;
    img->size = e->length;
    img->create_type = g_strdup(e->compressed ? "streamOptimized" : "monolithicSparse");
    if (!e->desc_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vmdk header: no embedded descriptor (descriptorSize 0)");
    g_autofree char *text = g_malloc(e->desc_size);
    if (diskimg_node_pread(img->file, text, e->desc_size, e->desc_offset, errp) < 0 ||
        vmdk_desc_parse(text, e->desc_size, NULL, &img->desc, errp) < 0)
        return -1;
    img->desc_embedded = true;
    img->desc_offset = e->desc_offset;
    img->desc_room = e->desc_size;
    return read_identity(img, errp);
}

static int open_flat_extent(struct vmdk_image *img, struct vmdk_extent *e,
                            const struct vmdk_desc_extent *x, GError **errp)
{
    e->kind = VMDK_EXTENT_FLAT;
    if (!strcmp(x->type, "FLAT") && !x->has_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid extent line: FLAT extent '%s' has no offset",
                                 x->file);
    if (x->offset > (UINT64_MAX / VMDK_SECTOR) / 2)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vmdk descriptor: offset of extent '%s' is too large",
                                 x->file);
    e->flat_offset = x->offset * VMDK_SECTOR;
    if (diskimg_node_metadata_only(img->node)) {
        diskimg_node_note_child(img->node, DISKIMG_CHILD_EXTENT, x->file);
        return 0;
    }
    e->file = diskimg_node_open_child(img->node, DISKIMG_CHILD_EXTENT, x->file, 0, errp);
    return e->file ? 0 : -1;
}

static int open_sparse_extent(struct vmdk_image *img, struct vmdk_extent *e,
                              const struct vmdk_desc_extent *x, bool se, GError **errp)
{
    e->kind = VMDK_EXTENT_SPARSE;
    /* info needs the header (the cluster size): read it even then, unless
     * no other file may be opened at all (inspect): the descriptor's size
     * of the extent stands then. */
    bool meta = diskimg_node_metadata_only(img->node);
    if (meta && !diskimg_node_may_open_children(img->node)) {
        diskimg_node_note_child(img->node, DISKIMG_CHILD_EXTENT, x->file);
        return 0;
    }
    e->file = diskimg_node_open_child(img->node, meta ? DISKIMG_CHILD_METADATA
                                                      : DISKIMG_CHILD_EXTENT,
                                      x->file, 0, errp);
    if (!e->file)
        return -1;
    g_autofree char *path = g_strdup(diskimg_node_filename(e->file));
    uint8_t magic[4];
    if (diskimg_node_pread(e->file, magic, 4, 0, errp) < 0)
        return -1;
    int r = se ? vmdk_sesparse_open(e, path, errp)
            : diskimg_be32(magic) == VMDK3_MAGIC_BE ? vmdk_cowd_open(e, path, errp)
            : vmdk_sparse_open(e, path, img->writable, errp);
    if (r < 0)
        return -1;
    if (e->header_capacity < x->sectors)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "extent '%s' holds %" PRIu64 " sectors, the descriptor "
                                 "says %" PRIu64, x->file, e->header_capacity,
                                 x->sectors);
    return 0;
}

static int open_extents(struct vmdk_image *img, GError **errp)
{
    reserve_extents(img, img->desc->extents->len);
    for (guint i = 0; i < img->desc->extents->len; i++) {
        const struct vmdk_desc_extent *x =
            &g_array_index(img->desc->extents, struct vmdk_desc_extent, i);
        /* As qemu: only RW extents of known types count. */
        if (strcmp(x->access, "RW") || x->sectors == 0 || !x->file)
            continue;
        bool flat = !strcmp(x->type, "FLAT") || !strcmp(x->type, "VMFS");
        bool sparse = !strcmp(x->type, "SPARSE") || !strcmp(x->type, "VMFSSPARSE");
        bool se = !strcmp(x->type, "SESPARSE");
        if (!flat && !sparse && !se)
            continue;
        if (x->sectors > (1ull << 40) || img->size / VMDK_SECTOR + x->sectors > (1ull << 40))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "vmdk descriptor: extents add up to more than 2^40 "
                                     "sectors");
        struct vmdk_extent *e = add_extent(img);
        e->type = g_strdup(x->type);
        e->length = x->sectors * VMDK_SECTOR;
        e->name = g_strdup(x->file);
        int r = flat ? open_flat_extent(img, e, x, errp)
                     : open_sparse_extent(img, e, x, se, errp);
        if (r < 0)
            return -1;
        img->size += e->length;
    }
    if (!img->n_ext)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vmdk descriptor names no extent");
    return 0;
}

static int open_descriptor_file(struct vmdk_image *img, uint64_t file_size, GError **errp)
{
    uint64_t n = MIN(file_size, (uint64_t)VMDK_DESC_MAX - 1);
    g_autofree char *text = g_malloc(n + 1);
    if (diskimg_node_pread(img->file, text, n, 0, errp) < 0)
        return -1;
    text[n] = '\0';
    if (vmdk_desc_parse(text, n, NULL, &img->desc, errp) < 0)
        return -1;
    const char *ct = vmdk_desc_get(img->desc, "createType");
    if (!ct)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "invalid VMDK image descriptor (no createType)");
    if (!known_descriptor_type(ct))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported image type '%s'", ct);
    img->create_type = g_strdup(ct);
    diskimg_node_add_finding(img->node, "descriptor-only-vmdk", DISKIMG_SEVERITY_WARNING,
                             "create-type", "the file is a bare VMDK descriptor (createType "
                             "%s): the disk's data lives in the files it names", ct);
    img->desc_offset = 0;
    img->desc_room = VMDK_DESC_MAX;
    return open_extents(img, errp) < 0 ? -1 : read_identity(img, errp);
}

void vmdk_image_free(struct vmdk_image *img)
{
    for (unsigned i = 0; i < img->n_ext; i++) {
        if (img->ext[i].kind == VMDK_EXTENT_SPARSE)
            vmdk_sparse_close(&img->ext[i]);
        g_free(img->ext[i].type);
        g_free(img->ext[i].name);
    }
    g_free(img->ext);
    vmdk_desc_free(img->desc);
    g_free(img->create_type);
    g_free(img->parent_hint);
    g_free(img->filename);
    g_free(img);
}

struct vmdk_image *vmdk_image_open(const struct diskimg_format_open_args *a, GError **errp)
{
    struct vmdk_image *img = g_new0(struct vmdk_image, 1);
    img->node = a->node;
    img->file = a->file;
    img->filename = g_strdup(a->filename);
    img->writable = a->flags & DISKIMG_OPEN_RDWR;
    int64_t size = diskimg_node_size(a->file, errp);
    uint8_t magic[4] = { 0 };
    int ret = -1;
    if (size >= 0 && size < 4)
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "File is too small, not a valid image");
    else if (size >= 0 && diskimg_node_pread(a->file, magic, 4, 0, errp) == 0) {
        uint32_t m = diskimg_be32(magic);
        if (m == VMDK4_MAGIC_BE)
            ret = open_monolithic(img, errp);
        else if (m == VMDK3_MAGIC_BE)
            /* qemu-img 7.2 cannot open one either: a redo log has no
             * identity (CID) of its own outside its descriptor. */
            diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                              "a vmfsSparse (COWD) extent opens through its descriptor file");
        else
            ret = open_descriptor_file(img, (uint64_t)size, errp);
    }
    if (ret < 0) {
        vmdk_image_free(img);
        return NULL;
    }
    return img;
}
