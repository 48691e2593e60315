/* SPDX-License-Identifier: MIT */
/*
 * vdi.c — the VirtualBox VDI format plugin: probe, open, close, info and
 * the descriptor.  header.c validates and writes headers, io.c moves
 * data, create.c makes images, check.c checks and repairs them; the flat
 * block map is the toolkit's (diskimg_blockmap, <diskimg/toolkit.h>).
 *
 * Thread model: SERIALIZE_REQUESTS.  Like qemu's driver, one request at a
 * time per image: allocation changes the map and the header.
 */
#include <string.h>

#include "vdi.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char vdi_schema_yaml[];

static int vdi_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    /* qemu wants a whole header before it looks at the signature; the
     * signature is enough here, so that a truncated image fails to open
     * with the field it lacks instead of passing for raw. */
    if (len < VDI_OFF_SIGNATURE + 4)
        return 0;
    return diskimg_le32(buf + VDI_OFF_SIGNATURE) == VDI_SIGNATURE ? 100 : 0;
}

static void vdi_close(void *h)
{
    struct vdi_state *s = h;
    GError *err = NULL;

    if (s->writable) {
        if (vdi_flush(s, &err) < 0 ||
            (s->tail && diskimg_tail_trim(s->tail, vdi_used_end(s), &err) < 0)) {
            diskimg_warn("%s: %s", s->filename, err->message);
            g_clear_error(&err);
        }
    }
    diskimg_tail_free(s->tail);
    diskimg_blockmap_free(s->map);
    g_free(s);
}

static int read_header(struct vdi_state *s, GError **errp)
{
    int64_t file_size = diskimg_node_size(s->file, errp);

    if (file_size < 0)
        return -1;
    /* File nodes read zeroes past the end: refuse a short header rather
     * than parse zeroes. */
    size_t len = file_size < VDI_HEADER_LEN ? (size_t)file_size : VDI_HEADER_LEN;
    memset(s->raw_header, 0, sizeof(s->raw_header));
    if (diskimg_node_pread(s->file, s->raw_header, len, 0, errp) < 0)
        return -1;
    return vdi_header_parse(s->raw_header, len, &s->h, errp);
}

static void *vdi_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct vdi_state *s = g_new0(struct vdi_state, 1);
    struct diskimg_blockmap_layout layout;

    s->file = args->file;
    s->filename = diskimg_node_filename(args->node ? args->node : args->file);
    if (read_header(s, errp) < 0)
        goto fail;
    /* Metadata-only opens (info) need no map: the core refuses them every
     * data request, and a 64 TiB image's map is 256 MiB. */
    if (!(args->flags & DISKIMG_OPEN_NO_IO)) {
        vdi_map_layout(&s->h, &layout);
        if (diskimg_blockmap_load(&s->map, &layout, s->file, s->h.offset_bmap,
                                  s->h.blocks_in_image, "VDI block map", errp) < 0)
            goto fail;
        if (!(args->flags & DISKIMG_OPEN_CHECK) && vdi_map_validate(s, errp) < 0)
            goto fail;
    }
    s->writable = args->flags & DISKIMG_OPEN_RDWR;
    /* New blocks go after the last one (static images have none to add
     * unless a repair freed some). */
    if (s->writable)
        s->tail = diskimg_tail_new(s->file, VDI_SECTOR);
    return s;
fail:
    diskimg_blockmap_free(s->map);
    g_free(s);
    return NULL;
}

static int64_t vdi_get_size(void *h, GError **errp)
{
    struct vdi_state *s = h;

    (void)errp;
    return (int64_t)s->h.disk_size;
}

static int vdi_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                    GError **errp)
{
    struct vdi_state *s = h;

    (void)specific;
    (void)errp;
    info->cluster_size = s->h.block_size;
    return 0;
}

static const struct diskimg_format_ops vdi_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = vdi_probe,
    .open = vdi_open,
    .close = vdi_close,
    .create = vdi_create,
    .get_size = vdi_get_size,
    .read = vdi_read,
    .write = vdi_write,
    .write_zeroes = vdi_write_zeroes,
    .flush = vdi_flush,
    .block_status = vdi_block_status,
    .truncate = vdi_truncate,
    .info = vdi_info,
    .check = vdi_check,
    .measure = vdi_measure,
};

static const struct diskimg_plugin vdi_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "vdi",
    .version = PLUGIN_VERSION,
    .summary = "VirtualBox disk image (VDI 1.1), dynamic and static",
    .schema = vdi_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT | DISKIMG_CAP_PREALLOC_ZERO,
    .ops = &vdi_ops,
};

DISKIMG_PLUGIN_DEFINE(vdi_plugin)
