/* SPDX-License-Identifier: MIT */
/*
 * vhdx.c — the plugin: descriptor, probe, open and close, size and info.
 *
 * Opening reads, in the order qemu 7.2 does: the file type identifier,
 * the current header, the log (replayed when writable, refused
 * read-only), the region table, the metadata and the BAT.  A writable
 * open then rewrites both headers (new file write GUID), as qemu does, so
 * that other readers see the file was opened for writing.
 */
#include <string.h>

#include "vhdx.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char vhdx_schema_yaml[];

static int vhdx_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && memcmp(buf, "vhdxfile", 8) == 0 ? 100 : 0;
}

static int check_identifier(struct vhdx_state *s, GError **errp)
{
    uint8_t sig[8];
    int64_t size = diskimg_node_size(s->file, errp);

    if (size < 0)
        return -1;
    if ((uint64_t)size < VHDX_REGION2_OFFSET + VHDX_REGION_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx: the file (%" PRId64 " bytes) is too small to hold "
                                 "the headers and region tables", size);
    if (diskimg_node_pread(s->file, sig, sizeof(sig), 0, errp) < 0)
        return -1;
    if (memcmp(sig, "vhdxfile", 8) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx file type identifier: bad signature");
    return 0;
}

enum { AREA_HEADERS = 1, AREA_LOG = 2, AREA_BAT = 4, AREA_METADATA = 8 };

static void declare_areas(struct vhdx_state *s)
{
    s->guard = diskimg_guard_new();
    diskimg_guard_add(s->guard, AREA_HEADERS, "headers and region tables", 0,
                      VHDX_HEADER_AREA_END);
    diskimg_guard_add(s->guard, AREA_LOG, "log", s->header.log_offset, s->header.log_length);
    diskimg_guard_add(s->guard, AREA_BAT, "BAT", s->bat_region.offset, s->bat_region.length);
    diskimg_guard_add(s->guard, AREA_METADATA, "metadata region", s->meta_region.offset,
                      s->meta_region.length);
}

int vhdx_guard_data_write(struct vhdx_state *s, uint64_t off, uint64_t len, GError **errp)
{
    const char *hit = diskimg_guard_find(s->guard, 0, off, len);
    if (!hit)
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: Preventing invalid write on metadata (overlaps with %s)",
                             s->filename, hit);
}

static void vhdx_close(void *h)
{
    struct vhdx_state *s = h;
    GError *err = NULL;

    if (!s)
        return;
    /* close cannot fail: a write-back error is all we can still report. */
    if (s->bat && s->writable && vhdx_bat_write_back(s, &err) < 0) {
        diskimg_warn("%s: BAT updates lost: %s", s->filename, err->message);
        g_error_free(err);
    }
    vhdx_bat_free(s);
    if (s->guard)
        diskimg_guard_free(s->guard);
    g_free(s);
}

static int open_structures(struct vhdx_state *s, GError **errp)
{
    int64_t size;

    if (check_identifier(s, errp) < 0 || vhdx_read_headers(s, errp) < 0 ||
        vhdx_log_replay(s, errp) < 0 || vhdx_read_region_table(s, errp) < 0 ||
        vhdx_read_metadata(s, errp) < 0 || vhdx_load_bat(s, errp) < 0)
        return -1;
    if ((size = diskimg_node_size(s->file, errp)) < 0)
        return -1;
    s->alloc_end = ((uint64_t)size + MiB - 1) / MiB * MiB;
    declare_areas(s);
    return 0;
}

static void *vhdx_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct vhdx_state *s = g_new0(struct vhdx_state, 1);

    s->file = args->file;
    s->filename = diskimg_node_filename(args->file);
    s->writable = (args->flags & DISKIMG_OPEN_RDWR) != 0;
    s->check_mode = (args->flags & DISKIMG_OPEN_CHECK) != 0;
    if (open_structures(s, errp) < 0 ||
        (s->writable && (vhdx_update_headers(s, false, NULL, errp) < 0 ||
                         vhdx_repair_region_table(s, errp) < 0))) {
        s->writable = false;        /* nothing to write back */
        vhdx_close(s);
        return NULL;
    }
    return s;
}

static int64_t vhdx_get_size(void *h, GError **errp)
{
    (void)errp;
    return (int64_t)((struct vhdx_state *)h)->disk_size;
}

/* qemu 7.2 shows no format-specific data for vhdx; its cluster size is
 * the block size. */
static int vhdx_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                     GError **errp)
{
    (void)specific;
    (void)errp;
    info->cluster_size = ((struct vhdx_state *)h)->block_size;
    return 0;
}

static const struct diskimg_format_ops vhdx_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = vhdx_probe,
    .open = vhdx_open,
    .close = vhdx_close,
    .create = vhdx_create,
    .get_size = vhdx_get_size,
    .read = vhdx_read,
    .write = vhdx_write,
    .write_zeroes = vhdx_write_zeroes,
    .flush = vhdx_flush,
    .block_status = vhdx_block_status,
    .info = vhdx_info,
    .check = vhdx_check,
    .measure = vhdx_measure,       /* ours: qemu-img 7.2 has none for vhdx */
};

static const struct diskimg_plugin vhdx_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "vhdx",
    .version = PLUGIN_VERSION,
    .summary = "Microsoft Virtual Hard Disk v2 (VHDX), dynamic and fixed",
    .schema = vhdx_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT,
    .ops = &vhdx_ops,
};

DISKIMG_PLUGIN_DEFINE(vhdx_plugin)
