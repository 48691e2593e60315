/* SPDX-License-Identifier: MIT */
/*
 * dmg.c — the "dmg" format plugin: Apple UDIF disk images, read-only, as
 * qemu 7.2's block/dmg.c reads them (see dmg.h for the parts).
 *
 * Opening finds the koly trailer, reads the block tables from the resource
 * fork when the trailer names one (as qemu does) and from the XML property
 * list otherwise, and builds one sorted chunk table.  The virtual size is
 * the trailer's sector count.
 *
 * Thread model: SERIALIZE_REQUESTS: the chunk reader keeps decoder state
 * and a window of decoded bytes between requests.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <string.h>

#include "dmg.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char dmg_schema_yaml[];

/* The property list is metadata only: 256 MiB hold the block tables of
 * millions of chunks (qemu 7.2 allows 16 MiB). */
#define MAX_PLIST (256u << 20)

struct dmg_state {
    diskimg_node *file;
    char *filename;
    uint64_t sectors;
    struct dmg_table table;
    dmg_reader *reader;
};

/* qemu recognises dmg images by name only: the trailer is at the end of
 * the file, beyond what probing sees. */
static int dmg_probe(const uint8_t *buf, size_t len, const char *filename)
{
    size_t n = filename ? strlen(filename) : 0;

    (void)buf;
    (void)len;
    return n > 4 && strcmp(filename + n - 4, ".dmg") == 0 ? 2 : 0;
}

struct blob_ctx {
    struct dmg_table *table;
    const struct dmg_table_limits *lim;
};

static int add_blob(void *opaque, unsigned index, const uint8_t *data, size_t len,
                    GError **errp)
{
    struct blob_ctx *ctx = opaque;

    return dmg_table_add_mish(ctx->table, ctx->lim, index, data, len, errp);
}

static int read_plist(struct dmg_state *s, const struct dmg_koly *k,
                      const struct dmg_table_limits *lim, GError **errp)
{
    struct blob_ctx ctx = { &s->table, lim };
    void *xml;
    int ret;

    if (diskimg_load_table(s->file, k->xml_offset, k->xml_length, 1, MAX_PLIST,
                           "property list", &xml, errp) < 0)
        return -1;
    ret = dmg_plist_blkx(xml, k->xml_length, add_blob, &ctx, errp);
    g_free(xml);
    return ret;
}

static void dmg_close(void *h)
{
    struct dmg_state *s = h;

    dmg_reader_free(s->reader);
    dmg_table_clear(&s->table);
    g_free(s->filename);
    g_free(s);
}

static void *dmg_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct dmg_state *s;
    struct dmg_koly k;
    struct dmg_table_limits lim;
    int64_t fsize = diskimg_node_size(args->file, errp);

    if (fsize < 0 || dmg_read_koly(args->file, (uint64_t)fsize, &k, errp) < 0)
        return NULL;
    s = g_new0(struct dmg_state, 1);
    s->file = args->file;
    s->filename = g_strdup(args->filename);
    s->sectors = k.sectors;
    lim = (struct dmg_table_limits){
        .file_size = (uint64_t)fsize,
        .data_fork_offset = k.data_fork_offset,
        .disk_sectors = k.sectors,
    };
    if (k.rsrc_length != 0) {
        if (dmg_table_add_rsrc(&s->table, &lim, s->file, k.rsrc_offset, k.rsrc_length,
                               errp) < 0)
            goto fail;
    } else if (read_plist(s, &k, &lim, errp) < 0) {
        goto fail;
    }
    if (dmg_table_finish(&s->table, errp) < 0)
        goto fail;
    s->reader = dmg_reader_new(s->file, s->filename, errp);
    if (!s->reader)
        goto fail;
    return s;

fail:
    dmg_close(s);
    return NULL;
}

static int64_t dmg_get_size(void *h, GError **errp)
{
    struct dmg_state *s = h;

    (void)errp;
    return (int64_t)(s->sectors * DMG_SECTOR);
}

/* The chunk holding byte `offset`, or an error: like qemu, sectors that
 * no chunk describes cannot be read. */
static const struct dmg_chunk *chunk_at(struct dmg_state *s, uint64_t offset, GError **errp)
{
    const struct dmg_chunk *c = dmg_table_find(&s->table, offset / DMG_SECTOR);

    if (!c)
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                          "%s: no chunk describes sector %" PRIu64, s->filename,
                          offset / DMG_SECTOR);
    return c;
}

static int dmg_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct dmg_state *s = h;
    uint8_t *out = buf;

    while (len > 0) {
        const struct dmg_chunk *c = chunk_at(s, offset, errp);
        uint64_t within, n;

        if (!c)
            return -1;
        within = offset - c->sector * DMG_SECTOR;
        n = MIN(len, c->sectors * DMG_SECTOR - within);
        if (dmg_reader_read(s->reader, c, within, out, n, errp) < 0)
            return -1;
        out += n;
        offset += n;
        len -= n;
    }
    return 0;
}

/*
 * qemu 7.2 has no block status for dmg, so qemu-img map shows the whole
 * disk as data; we answer the same so that map output is identical, one
 * chunk at a time so that copies ask for whole chunks.  Zero and ignore
 * chunks cost no I/O to read anyway.
 */
static int dmg_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                            GError **errp)
{
    struct dmg_state *s = h;
    const struct dmg_chunk *c = dmg_table_find(&s->table, offset / DMG_SECTOR);
    uint64_t end = offset + len;

    (void)errp;
    if (c)
        end = MIN(end, (c->sector + c->sectors) * DMG_SECTOR);
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED;
    ext->length = end - offset;
    return 0;
}

static const struct diskimg_format_ops dmg_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = dmg_probe,
    .open = dmg_open,
    .close = dmg_close,
    .get_size = dmg_get_size,
    .read = dmg_read,
    .block_status = dmg_block_status,
    /* No info: qemu has no bdrv_get_info for dmg, so info shows neither
     * format-specific data nor a dirty flag. */
};

static const struct diskimg_plugin dmg_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "dmg",
    .version = PLUGIN_VERSION,
    .summary = "Apple UDIF disk image (read-only)",
    .schema = dmg_schema_yaml,
    .capabilities = DISKIMG_CAP_READ_ONLY,
    .ops = &dmg_ops,
};

DISKIMG_PLUGIN_DEFINE(dmg_plugin)
