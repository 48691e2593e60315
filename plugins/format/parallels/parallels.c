/* SPDX-License-Identifier: MIT */
/*
 * parallels.c — the Parallels format plugin: probe, open, close and the
 * descriptor.  header.c validates and writes headers, ext.c the format
 * extension, io.c moves data, create.c makes images, check.c checks and
 * repairs them; the BAT is the toolkit's flat block map (diskimg_blockmap,
 * <diskimg/toolkit.h>), which the vdi plugin uses too).
 *
 * The "in use" flag works as in qemu 7.2: a read-write open sets it in the
 * file before anything else is written, a clean close clears it (and cuts
 * the file after the last cluster); an image found in use opens read-only
 * or for check only, and check reports it (and -r clears it).
 *
 * Thread model: SERIALIZE_REQUESTS (allocation changes the BAT).
 */
#include <string.h>

#include "parallels.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char parallels_schema_yaml[];

static int prl_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    /* qemu also wants version 2; a file with our magic and another
     * version is still ours here, so that open says what is wrong with it
     * instead of the file passing for raw. */
    if (len < 16 || (memcmp(buf, PRL_MAGIC_OLD, 16) && memcmp(buf, PRL_MAGIC_EXT, 16)))
        return 0;
    return 100;
}

/* Where the next cluster goes: after the BAT and after every cluster. */
static uint64_t data_end_of(const struct prl_state *s)
{
    uint64_t end = prl_first_data_sector(&s->h);

    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint64_t host;
        if (diskimg_blockmap_get(s->map, i, &host) == DISKIMG_BLOCKMAP_MAPPED &&
            host / PRL_SECTOR + s->h.tracks > end)
            end = host / PRL_SECTOR + s->h.tracks;
    }
    return end;
}

/* qemu's cut after the last cluster, which drops what growing the file
 * added.  Only ever shorter: a file ending inside its last cluster reads
 * zeroes there anyway, and extending it to clusters a damaged BAT names
 * far past the end would make a huge file. */
static int cut_after_last_cluster(struct prl_state *s, GError **errp)
{
    int64_t size = diskimg_node_size(s->file, errp);

    if (size < 0)
        return -1;
    if ((uint64_t)size <= s->data_end * PRL_SECTOR)
        return 0;
    return diskimg_node_truncate(s->file, s->data_end * PRL_SECTOR, DISKIMG_PREALLOC_OFF,
                                 DISKIMG_TRUNCATE_SHRINK, errp);
}

static void prl_close(void *h)
{
    struct prl_state *s = h;
    GError *err = NULL;

    if (s->writable) {
        /* BAT first, then the header saying the image is consistent
         * (qemu clears the flag on every read-write close, check -r leaks
         * included), then the cut. */
        if (s->tail)
            diskimg_tail_forget(s->tail);
        if (prl_flush(s, &err) < 0 || prl_write_header(s, 0, &err) < 0 ||
            cut_after_last_cluster(s, &err) < 0) {
            diskimg_warn("%s: %s", s->filename, err->message);
            g_clear_error(&err);
        }
    }
    diskimg_tail_free(s->tail);
    diskimg_blockmap_free(s->map);
    g_free(s);
}

static int read_header(struct prl_state *s, uint64_t file_size, GError **errp)
{
    size_t len = file_size < PRL_HEADER_LEN ? (size_t)file_size : PRL_HEADER_LEN;

    memset(s->raw_header, 0, sizeof(s->raw_header));
    if (diskimg_node_pread(s->file, s->raw_header, len, 0, errp) < 0)
        return -1;
    return prl_header_parse(s->raw_header, len, &s->h, errp);
}

/* Read-write opens: qemu's refusal of an image left in use, its warning
 * about an extension, and the "in use" mark itself. */
static int open_for_writing(struct prl_state *s, unsigned flags, uint64_t file_size,
                            GError **errp)
{
    if (s->unclean && !(flags & DISKIMG_OPEN_CHECK))
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                                 "parallels: Image was not closed correctly; cannot be opened "
                                 "read/write");
    if (s->h.ext_off) {
        diskimg_warn("Format Extension ignored in RW mode");
        /* Ignored, but kept: allocate after it. */
        GError *ignored = NULL;
        if (prl_ext_validate(s, file_size, &ignored) < 0)
            g_clear_error(&ignored);
        uint64_t ext_end = (s->ext_end + PRL_SECTOR - 1) / PRL_SECTOR;
        if (s->ext_end <= file_size && ext_end > s->data_end)
            s->data_end = ext_end;
    }
    uint64_t cs = s->cluster_size;
    s->tail = diskimg_tail_new(s->file, (cs & (cs - 1)) ? PRL_SECTOR : (uint32_t)cs);
    s->writable = true;
    return prl_write_header(s, PRL_INUSE_MAGIC, errp);
}

static void *prl_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct prl_state *s = g_new0(struct prl_state, 1);
    struct diskimg_blockmap_layout layout;
    int64_t file_size;

    s->file = args->file;
    s->filename = diskimg_node_filename(args->node ? args->node : args->file);
    if ((file_size = diskimg_node_size(s->file, errp)) < 0 ||
        read_header(s, (uint64_t)file_size, errp) < 0)
        goto fail;
    s->cluster_size = (uint64_t)s->h.tracks * PRL_SECTOR;
    s->unclean = s->h.inuse == PRL_INUSE_MAGIC;
    /* Metadata-only opens (info) need no BAT: the core refuses them every
     * data request. */
    if (!(args->flags & DISKIMG_OPEN_NO_IO)) {
        prl_map_layout(&s->h, &layout);
        if (diskimg_blockmap_load(&s->map, &layout, s->file, PRL_HEADER_LEN,
                                  s->h.bat_entries, "parallels BAT", errp) < 0)
            goto fail;
        /* In whole sectors, as check (and qemu) measure the file. */
        uint64_t sectors_size = ((uint64_t)file_size + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
        if (!(args->flags & DISKIMG_OPEN_CHECK) &&
            prl_map_validate(s, sectors_size, errp) < 0)
            goto fail;
    }
    s->data_end = data_end_of(s);
    if (args->flags & DISKIMG_OPEN_RDWR) {
        /* Without its BAT (metadata only) the image takes no writes, so
         * it is neither marked in use nor cut on close. */
        if (s->map && open_for_writing(s, args->flags, (uint64_t)file_size, errp) < 0)
            goto fail;
    } else if (s->h.ext_off && prl_ext_validate(s, (uint64_t)file_size, errp) < 0) {
        goto fail;
    }
    return s;
fail:
    /* Nothing was written yet: a failed open leaves the image as it was. */
    diskimg_tail_free(s->tail);
    diskimg_blockmap_free(s->map);
    g_free(s);
    return NULL;
}

static int64_t prl_get_size(void *h, GError **errp)
{
    struct prl_state *s = h;

    (void)errp;
    return (int64_t)(s->h.nb_sectors * PRL_SECTOR);
}

static const struct diskimg_format_ops prl_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = prl_probe,
    .open = prl_open,
    .close = prl_close,
    .create = prl_create,
    .get_size = prl_get_size,
    .read = prl_read,
    .write = prl_write,
    .write_zeroes = prl_write_zeroes,
    .flush = prl_flush,
    .block_status = prl_block_status,
    .check = prl_check,
};

static const struct diskimg_plugin prl_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "parallels",
    .version = PLUGIN_VERSION,
    .summary = "Parallels disk image (\"WithoutFreeSpace\" and \"WithouFreSpacExt\")",
    .schema = parallels_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT,
    .ops = &prl_ops,
};

DISKIMG_PLUGIN_DEFINE(prl_plugin)
