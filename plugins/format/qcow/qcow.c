/* SPDX-License-Identifier: MIT */
/*
 * qcow.c — the qcow (version 1) format plugin: probing, opening, info,
 * backing file and the descriptor.  See README.md for what differs from
 * qemu-img 7.2.
 *
 * Thread model: SERIALIZE_REQUESTS.  The handle (L1 table, L2 cache, the
 * end of the file) changes on writes, and qcow is a legacy format kept for
 * interchange: one request at a time per image keeps it simple.
 */
#include <string.h>

#include "qcow.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char qcow_schema_yaml[];

/* Memory for cached L2 blocks per image (qemu keeps 16 tables). */
#define QCOW_L2_CACHE_BUDGET (4u << 20)

static int qcow_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < QCOW_HEADER_SIZE)
        return 0;
    return diskimg_be32(buf) == QCOW_MAGIC && diskimg_be32(buf + 4) == QCOW_VERSION ? 100 : 0;
}

static const diskimg_options *open_options(const struct diskimg_format_open_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_format_open_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

static void qcow_close(void *h)
{
    struct qcow *s = h;

    if (!s)
        return;
    /* L2 updates wait in the cache: write them back before it goes */
    if (s->writable && s->l2) {
        GError *err = NULL;

        if (diskimg_table2_flush(s->l2, &err) < 0) {
            diskimg_warn("%s: could not write back the L2 tables: %s", s->filename,
                         err->message);
            g_error_free(err);
        }
    }
    diskimg_table2_free(s->l2);
    if (s->guard)
        diskimg_guard_free(s->guard);
    diskimg_sector_cipher_free(s->aes);
    g_free(s->zcache);
    g_free(s->l1);
    g_free(s->backing_name);
    g_free(s->filename);
    g_free(s);
}

static int read_header(struct qcow *s, uint64_t file_size, GError **errp)
{
    uint8_t buf[QCOW_HEADER_SIZE];
    size_t n = (size_t)MIN(file_size, (uint64_t)sizeof(buf));

    if (diskimg_node_pread(s->file, buf, n, 0, errp) < 0)
        return -1;
    return qcow_header_parse(buf, n, file_size, &s->h, errp);
}

/* The name stops at a NUL, as qemu's string copy does; empty means none. */
static int read_backing_name(struct qcow *s, GError **errp)
{
    if (s->h.backing_offset == 0 || s->h.backing_size == 0)
        return 0;
    return diskimg_load_name(s->file, s->h.backing_offset, s->h.backing_size,
                             QCOW_MAX_BACKING_NAME, "qcow backing file name", &s->backing_name,
                             errp);
}

/* Every L2 table the L1 table names must be a whole, aligned table inside
 * the file that does not overlap the header or the L1 table. */
static int check_l1(struct qcow *s, uint64_t file_size, GError **errp)
{
    uint64_t l2_bytes = s->l2_entries * sizeof(uint64_t);
    uint64_t l1_end = s->h.l1_offset + s->l1_size * sizeof(uint64_t);

    for (uint64_t i = 0; i < s->l1_size; i++) {
        uint64_t off = s->l1[i];

        if (off == 0)
            continue;
        if (off & (s->cluster_size - 1) || off > file_size || l2_bytes > file_size - off ||
            off < QCOW_HEADER_SIZE || (off < l1_end && off + l2_bytes > s->h.l1_offset))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "L1 table entry %" PRIu64 " (L2 table offset %#" PRIx64
                                     ") is invalid (file size %" PRIu64 ")",
                                     i, off, file_size);
    }
    return 0;
}

static int open_crypto(struct qcow *s, const diskimg_options *o, unsigned flags,
                       GError **errp)
{
    const char *fmt = o ? diskimg_options_get_str(o, "encrypt.format") : NULL;
    const char *id = o ? diskimg_options_get_str(o, "encrypt.key-secret") : NULL;
    uint8_t *pw = NULL;
    size_t len = 0;

    if (s->h.crypt_method == QCOW_CRYPT_NONE) {
        if (fmt)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "No encryption in image header, but options specified "
                                     "format '%s'", fmt);
        return 0;
    }
    if (fmt && !g_str_equal(fmt, "aes"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Header reported 'aes' encryption format but options "
                                 "specify '%s'", fmt);
    /* metadata-only opens (info) need no key */
    if (flags & DISKIMG_OPEN_NO_IO)
        return 0;
    if (!id)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter 'encrypt.key-secret' is required for cipher");
    if (diskimg_crypto_password(id, &pw, &len, errp) < 0)
        return -1;
    s->aes = diskimg_qcow_aes_new(pw, len, errp);
    diskimg_secret_wipe(pw, len);
    return s->aes ? 0 : -1;
}

/* The header (with the backing name), the L1 table and the L2 tables
 * the L1 table names. */
static void fill_guard(struct qcow *s)
{
    uint64_t head_end = QCOW_HEADER_SIZE;

    if (s->h.backing_offset)
        head_end = MAX(head_end, s->h.backing_offset + s->h.backing_size);
    s->guard = diskimg_guard_new();
    diskimg_guard_add(s->guard, QCOW_META_HEADER, "header", 0, head_end);
    diskimg_guard_add(s->guard, QCOW_META_L1, "L1 table", s->h.l1_offset,
                      s->l1_size * sizeof(uint64_t));
    for (uint64_t i = 0; i < s->l1_size; i++)
        if (s->l1[i])
            diskimg_guard_add(s->guard, QCOW_META_L2, "L2 table", s->l1[i],
                              s->l2_entries * sizeof(uint64_t));
}

static int load_tables(struct qcow *s, uint64_t file_size, GError **errp)
{
    s->l1_size = qcow_l1_size(s->h.size, s->h.cluster_bits, s->h.l2_bits);
    if (diskimg_load_u64_table(s->file, s->h.l1_offset, s->l1_size, 0, DISKIMG_BIG_ENDIAN,
                               (uint64_t)INT32_MAX, "L1 table", &s->l1, errp) < 0 ||
        check_l1(s, file_size, errp) < 0)
        return -1;
    fill_guard(s);
    s->l2 = diskimg_table2_new(s->file, "L2 table", s->l2_entries * sizeof(uint64_t),
                               s->cluster_size, DISKIMG_BIG_ENDIAN, QCOW_L2_CACHE_BUDGET, errp);
    return s->l2 ? 0 : -1;
}

static void *qcow_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct qcow *s = g_new0(struct qcow, 1);
    int64_t file_size;

    s->node = args->node;
    s->file = args->file;
    s->filename = g_strdup(args->filename);
    s->writable = args->flags & DISKIMG_OPEN_RDWR;
    file_size = diskimg_node_size(s->file, errp);
    if (file_size < 0 || read_header(s, (uint64_t)file_size, errp) < 0)
        goto fail;
    s->cluster_size = 1ull << s->h.cluster_bits;
    s->l2_entries = 1ull << s->h.l2_bits;
    s->file_end = (uint64_t)file_size;
    if (read_backing_name(s, errp) < 0 ||
        open_crypto(s, open_options(args), args->flags, errp) < 0 ||
        load_tables(s, (uint64_t)file_size, errp) < 0)
        goto fail;
    s->zcache = g_malloc(s->cluster_size);
    return s;
fail:
    qcow_close(s);
    return NULL;
}

/* qemu counts the size in whole sectors, rounding down. */
static int64_t qcow_get_size(void *h, GError **errp)
{
    struct qcow *s = h;

    (void)errp;
    return (int64_t)(s->h.size / QCOW_SECTOR * QCOW_SECTOR);
}

static int qcow_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                     GError **errp)
{
    struct qcow *s = h;

    (void)specific;   /* qemu shows no format-specific data for qcow */
    (void)errp;
    info->cluster_size = s->cluster_size;
    info->encrypted = s->h.crypt_method != QCOW_CRYPT_NONE;
    info->dirty = false;
    return 0;
}

/* qcow records no backing format: the core probes it (or takes -F). */
static int qcow_get_backing(void *h, struct diskimg_backing_ref *ref)
{
    struct qcow *s = h;

    ref->filename = s->backing_name;
    ref->format = NULL;
    return 0;
}

/* Compressed clusters are stored in the clear: refuse them on encrypted
 * images rather than leak guest data. */
static uint64_t qcow_image_capabilities(void *h, uint64_t defaults)
{
    struct qcow *s = h;

    if (s->h.crypt_method != QCOW_CRYPT_NONE)
        defaults &= ~(uint64_t)DISKIMG_CAP_COMPRESSED;
    return defaults;
}

static const struct diskimg_format_ops qcow_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = qcow_probe,
    .open = qcow_open,
    .close = qcow_close,
    .create = qcow_create,
    .get_size = qcow_get_size,
    .read = qcow_read,
    .write = qcow_write,
    .write_zeroes = qcow_write_zeroes,
    .write_compressed = qcow_write_compressed,
    .flush = qcow_flush,
    .block_status = qcow_block_status,
    .info = qcow_info,
    .get_backing = qcow_get_backing,
    .make_empty = qcow_make_empty,
    .compress = qcow_compress,
    .write_precompressed = qcow_write_precompressed,
    .image_capabilities = qcow_image_capabilities,
};

static const struct diskimg_plugin qcow_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "qcow",
    .version = PLUGIN_VERSION,
    .summary = "QEMU copy-on-write image, version 1",
    .schema = qcow_schema_yaml,
    .capabilities = DISKIMG_CAP_BACKING | DISKIMG_CAP_ZERO_INIT,
    .ops = &qcow_ops,
};

DISKIMG_PLUGIN_DEFINE(qcow_plugin)
