/* SPDX-License-Identifier: MIT */
/*
 * vmdk.c — the vmdk plugin's descriptor and ops: probing, information,
 * check, backing files, capabilities and parallel compression.
 */
#include "vmdk.h"

#include <string.h>

extern const char vmdk_schema_yaml[];

/* qemu's probe: a sparse magic, or a text whose first line that is not a
 * comment or blank is version=1, 2 or 3. */
static int vmdk_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < 4)
        return 0;
    uint32_t m = diskimg_be32(buf);
    if (m == VMDK4_MAGIC_BE || m == VMDK3_MAGIC_BE)
        return 100;
    const char *p = (const char *)buf, *end = p + len;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n')
                p++;
            p++;
            continue;
        }
        /* Only lines of blanks count as empty (qemu's rule: an empty line
         * before version= makes the file no descriptor). */
        if (*p == ' ') {
            while (p < end && *p == ' ')
                p++;
            if (p < end && *p == '\r')
                p++;
            if (p == end || *p != '\n')
                return 0;
            p++;
            continue;
        }
        for (char v = '1'; v <= '3'; v++) {
            char lf[] = { 'v', 'e', 'r', 's', 'i', 'o', 'n', '=', v, '\n' };
            char crlf[] = { 'v', 'e', 'r', 's', 'i', 'o', 'n', '=', v, '\r', '\n' };
            if ((size_t)(end - p) >= sizeof(lf) && !memcmp(p, lf, sizeof(lf)))
                return 100;
            if ((size_t)(end - p) >= sizeof(crlf) && !memcmp(p, crlf, sizeof(crlf)))
                return 100;
        }
        return 0;
    }
    return 0;
}

static void *vmdk_open(const struct diskimg_format_open_args *a, GError **errp)
{
    return vmdk_image_open(a, errp);
}

static void vmdk_close(void *h)
{
    struct vmdk_image *img = h;
    GError *err = NULL;
    if (img->writable && vmdk_flush(img, &err) < 0) {
        diskimg_warn("%s: %s", img->filename, err->message);
        g_error_free(err);
    }
    vmdk_image_free(img);
}

static int64_t vmdk_get_size(void *h, GError **errp)
{
    (void)errp;
    return (int64_t)((struct vmdk_image *)h)->size;
}

static bool extents_alike(const struct vmdk_image *img)
{
    const struct vmdk_extent *a = &img->ext[0];
    for (unsigned i = 1; i < img->n_ext; i++) {
        const struct vmdk_extent *b = &img->ext[i];
        if (a->kind != b->kind || a->compressed != b->compressed ||
            (a->kind == VMDK_EXTENT_SPARSE && a->grain != b->grain))
            return false;
    }
    return true;
}

static char *extent_filename(const struct vmdk_image *img, const struct vmdk_extent *e)
{
    if (e->file)
        return g_strdup(diskimg_node_filename(e->file));
    char *path = diskimg_trust_resolve(img->node, DISKIMG_CHILD_EXTENT, e->name, NULL);
    return path ? path : g_strdup(e->name);
}

static int vmdk_info(void *h, struct diskimg_image_info *info, diskimg_obj *o, GError **errp)
{
    (void)errp;
    struct vmdk_image *img = h;
    if (extents_alike(img) && img->ext[0].kind == VMDK_EXTENT_SPARSE) {
        info->cluster_size = img->ext[0].grain;
        info->needs_compressed_writes = img->ext[0].compressed;
    }
    diskimg_obj_set_int(o, "cid", img->cid);
    diskimg_obj_set_int(o, "parent-cid", img->parent_cid);
    diskimg_obj_set_str(o, "create-type", img->create_type);
    diskimg_list *l = diskimg_obj_add_list(o, "extents");
    for (unsigned i = 0; i < img->n_ext; i++) {
        const struct vmdk_extent *e = &img->ext[i];
        diskimg_obj *x = diskimg_list_add_obj(l);
        g_autofree char *name = extent_filename(img, e);
        if (e->compressed)
            diskimg_obj_set_bool(x, "compressed", true);
        diskimg_obj_set_int(x, "virtual-size", (int64_t)e->length);
        diskimg_obj_set_str(x, "filename", name);
        if (e->kind == VMDK_EXTENT_SPARSE)
            diskimg_obj_set_int(x, "cluster-size", (int64_t)e->grain);
        diskimg_obj_set_str(x, "format", e->type);
    }
    return 0;
}

static int vmdk_get_backing(void *h, struct diskimg_backing_ref *ref)
{
    struct vmdk_image *img = h;
    ref->filename = img->parent_hint;
    ref->format = img->parent_hint ? "vmdk" : NULL;
    return 0;
}

static int vmdk_set_backing(void *h, const char *filename, const char *format, GError **errp)
{
    struct vmdk_image *img = h;
    if (format && strcmp(format, "vmdk") != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "backing_file must be a vmdk image");
    if (filename && diskimg_trust_check_to_record(DISKIMG_CHILD_BACKING, filename, errp) < 0)
        return -1;
    uint32_t pcid = 0xffffffffu;
    if (filename && vmdk_read_parent_cid(img->filename, filename, &pcid, errp) < 0)
        return -1;
    g_autofree char *hex = g_strdup_printf("%" PRIx32, pcid);
    vmdk_desc_set(img->desc, "parentCID", hex, false, NULL);
    if (filename)
        vmdk_desc_set(img->desc, "parentFileNameHint", filename, true, "parentCID");
    else
        vmdk_desc_remove(img->desc, "parentFileNameHint");
    if (vmdk_write_descriptor(img, errp) < 0)
        return -1;
    g_free(img->parent_hint);
    img->parent_hint = g_strdup(filename);
    img->parent_cid = pcid;
    return 0;
}

/* As qemu 7.2: every grain of every sparse extent is looked up.  The
 * first that cannot be, or that points past the end of its file, ends the
 * check as a failed one (qemu-img prints "Check failed" and exits 1),
 * after the line qemu prints for it. */
static int vmdk_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct vmdk_image *img = h;
    if (fix)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "This image format does not support checks");
    for (unsigned i = 0; i < img->n_ext; i++) {
        struct vmdk_extent *e = &img->ext[i];
        if (e->kind != VMDK_EXTENT_SPARSE)
            continue;
        for (uint64_t rel = 0; rel < e->length; rel += e->grain) {
            uint64_t sector = (e->start + rel) / VMDK_SECTOR;
            GError *err = NULL;
            int r = vmdk_grain_check(e, rel, &err);
            if (r == 0)
                continue;
            res->corruptions++;
            if (r > 0) {
                diskimg_report("ERROR: cluster offset for sector %" PRIu64 " points after EOF",
                               sector);
                return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                         "Check failed: Invalid argument");
            }
            diskimg_report("ERROR: could not get cluster_offset for sector %" PRIu64, sector);
            diskimg_warn("%s", err->message);
            g_error_free(err);
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Check failed: Operation not permitted");
        }
    }
    return 0;
}

/* Compressed writes are taken by every image, as by qemu (extents that
 * are not compressed store them plainly).  A stream extent takes new
 * grains only: write refuses rewrites of written grains, as qemu does,
 * which no capability bit expresses.  COWD and seSparse extents are read
 * only. */
static uint64_t vmdk_image_capabilities(void *h, uint64_t defaults)
{
    const struct vmdk_image *img = h;
    for (unsigned i = 0; i < img->n_ext; i++)
        if (img->ext[i].read_only)
            defaults |= DISKIMG_CAP_READ_ONLY;
    return defaults;
}

static int vmdk_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                                 GError **errp)
{
    /* As qemu: extents that are not compressed store the cluster as it is. */
    return vmdk_write(h, buf, len, offset, 0, errp);
}

/* Runs on the core's worker threads: reads only what open fixed. */
static int64_t vmdk_compress(void *h, const void *buf, uint64_t len, void *out, uint64_t cap,
                             GError **errp)
{
    const struct vmdk_image *img = h;
    /* Only stream images store compressed grains (they have one extent);
     * others take -c data as it is, through write. */
    if (!img->ext[0].compressed)
        return 0;
    if (vmdk_grain_looks_random(buf, len))
        return 0;   /* stored by write, in deflate's stored blocks */
    return diskimg_compress(DISKIMG_CODEC_ZLIB, VMDK_STREAM_LEVEL, 0, buf, len, out, cap, errp);
}

static int vmdk_write_precompressed(void *h, const void *data, uint64_t len, uint64_t offset,
                                    uint64_t guest_len, GError **errp)
{
    struct vmdk_image *img = h;
    struct vmdk_extent *e = vmdk_find_extent(img, offset);
    if (e->kind != VMDK_EXTENT_SPARSE || !e->compressed)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: only streamOptimized extents store compressed grains",
                                 img->filename);
    uint64_t rel = offset - e->start;
    if (rel % e->grain || (guest_len != e->grain && rel + guest_len != e->length) ||
        len > UINT32_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: streamOptimized images take whole grains only",
                                 img->filename);
    uint64_t stored = (12 + len + VMDK_SECTOR - 1) & ~(uint64_t)(VMDK_SECTOR - 1);
    g_autofree uint8_t *g = g_malloc0(stored);
    diskimg_put_le64(g, offset / VMDK_SECTOR);
    diskimg_put_le32(g + 8, (uint32_t)len);
    memcpy(g + 12, data, len);
    if (vmdk_update_cid(img, errp) < 0)
        return -1;
    return vmdk_compressed_append(e, rel, g, stored, errp);
}

static const struct diskimg_format_ops vmdk_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .create = vmdk_create,
    .measure = vmdk_measure,      /* ours: qemu-img 7.2 has none for vmdk */
    .get_size = vmdk_get_size,
    .read = vmdk_read,
    .write = vmdk_write,
    .write_zeroes = vmdk_write_zeroes,
    .write_compressed = vmdk_write_compressed,
    .flush = vmdk_flush,
    .block_status = vmdk_block_status,
    .info = vmdk_info,
    .get_backing = vmdk_get_backing,
    .set_backing = vmdk_set_backing,
    .check = vmdk_check,
    .compress = vmdk_compress,
    .write_precompressed = vmdk_write_precompressed,
    .image_capabilities = vmdk_image_capabilities,
};

static const struct diskimg_plugin vmdk_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "vmdk",
    .version = PLUGIN_VERSION,
    .summary = "VMware virtual disk",
    .schema = vmdk_schema_yaml,
    .capabilities = DISKIMG_CAP_BACKING | DISKIMG_CAP_ZERO_INIT,
    .ops = &vmdk_ops,
};

DISKIMG_PLUGIN_DEFINE(vmdk_plugin)
