/* SPDX-License-Identifier: MIT */
/*
 * qed.c — the QED format plugin: probing, opening (with qemu's open-time
 * check of images left with QED_F_NEED_CHECK), closing cleanly, info,
 * backing file, resize and the descriptor.  See README.md for what
 * differs from qemu-img 7.2.
 *
 * Thread model: SERIALIZE_REQUESTS: the L1 table, the L2 cache and the
 * allocation point change on writes; one request at a time per image.
 */
#include <errno.h>
#include <string.h>

#include "qed.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char qed_schema_yaml[];

/* Memory for cached L2 blocks per image. */
#define QED_L2_CACHE_BUDGET (8u << 20)

static int qed_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len < QED_HEADER_BYTES)
        return 0;
    return diskimg_le32(buf) == QED_MAGIC ? 100 : 0;
}

static unsigned log2_of(uint64_t v)
{
    unsigned n = 0;

    while (v > 1) {
        v >>= 1;
        n++;
    }
    return n;
}

/* L1 entries the virtual size needs (at least one). */
static uint64_t l1_entries_for(const struct qed *s, uint64_t size)
{
    uint64_t n = (size >> s->l1_shift) + ((size & ((1ull << s->l1_shift) - 1)) != 0);

    return MAX(n, 1);
}

static void free_state(struct qed *s)
{
    diskimg_table2_free(s->l2);
    if (s->guard)
        diskimg_guard_free(s->guard);
    g_free(s->l1);
    g_free(s->backing_name);
    g_free(s->filename);
    g_free(s);
}

/* Writes back everything; clears QED_F_NEED_CHECK once nothing is
 * pending, as qemu's close does. */
static int close_cleanly(struct qed *s, GError **errp)
{
    if (diskimg_table2_flush(s->l2, errp) < 0 || diskimg_node_flush(s->file, errp) < 0)
        return -1;
    if (!(s->h.features & QED_F_NEED_CHECK))
        return 0;
    s->h.features &= ~(uint64_t)QED_F_NEED_CHECK;
    return qed_header_write(s, errp);
}

static void qed_close(void *h)
{
    struct qed *s = h;
    GError *err = NULL;

    if (!s)
        return;
    if (s->writable && s->l2 && close_cleanly(s, &err) < 0) {
        diskimg_warn("%s: could not close the image cleanly: %s", s->filename, err->message);
        g_error_free(err);
    }
    free_state(s);
}

static int read_header(struct qed *s, uint64_t file_size, GError **errp)
{
    uint8_t buf[QED_HEADER_BYTES];
    size_t n = (size_t)MIN(file_size, (uint64_t)sizeof(buf));

    if (diskimg_node_pread(s->file, buf, n, 0, errp) < 0 ||
        qed_header_parse(buf, n, &s->h, errp) < 0)
        return -1;
    s->table_entries = (uint64_t)s->h.cluster_size * s->h.table_size / sizeof(uint64_t);
    s->l2_shift = log2_of(s->h.cluster_size);
    s->l1_shift = s->l2_shift + log2_of(s->table_entries);
    s->file_size = file_size & ~(uint64_t)(s->h.cluster_size - 1);
    if (!qed_table_offset_valid(s, s->h.l1_offset))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "QED table offset is invalid (header field "
                                 "'l1_table_offset' is %#" PRIx64 ", file size %" PRIu64 ")",
                                 s->h.l1_offset, file_size);
    return 0;
}

/* The name stops at a NUL; an empty one means none. */
static int read_backing_name(struct qed *s, uint64_t file_size, GError **errp)
{
    if (!(s->h.features & QED_F_BACKING_FILE) || s->h.backing_size == 0)
        return 0;
    if ((uint64_t)s->h.backing_offset + s->h.backing_size > file_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Failed to read backing filename: header field "
                                 "'backing_filename_offset' (%" PRIu32 ") puts it beyond the "
                                 "end of the file", s->h.backing_offset);
    return diskimg_load_name(s->file, s->h.backing_offset, s->h.backing_size,
                             QED_MAX_BACKING_NAME, "QED backing file name", &s->backing_name,
                             errp);
}

/* qemu's autoclear rule: unknown autoclear bits are dropped by a writer,
 * telling a newer program that its feature is no longer valid. */
static int reset_autoclear(struct qed *s, GError **errp)
{
    if (!s->writable || !(s->h.autoclear_features & ~(uint64_t)QED_AUTOCLEAR_FEATURE_MASK))
        return 0;
    s->h.autoclear_features &= QED_AUTOCLEAR_FEATURE_MASK;
    return qed_header_write(s, errp);
}

/* The header clusters, the L1 table and the valid L2 tables it names
 * (invalid ones are reported when used, and repaired by check). */
static void fill_guard(struct qed *s)
{
    uint64_t table_bytes = (uint64_t)s->h.table_size * s->h.cluster_size;

    s->guard = diskimg_guard_new();
    diskimg_guard_add(s->guard, QED_META_HEADER, "header",
                      0, (uint64_t)s->h.header_size * s->h.cluster_size);
    diskimg_guard_add(s->guard, QED_META_L1, "L1 table", s->h.l1_offset, table_bytes);
    for (uint64_t i = 0; i < s->l1_count; i++)
        if (s->l1[i] && qed_table_offset_valid(s, s->l1[i]))
            diskimg_guard_add(s->guard, QED_META_L2, "L2 table", s->l1[i], table_bytes);
}

static int load_tables(struct qed *s, GError **errp)
{
    s->l1_count = MIN(l1_entries_for(s, s->h.image_size), s->table_entries);
    if (diskimg_load_u64_table(s->file, s->h.l1_offset, s->l1_count, 0, DISKIMG_LITTLE_ENDIAN,
                               (uint64_t)QED_MAX_TABLE_SIZE * QED_MAX_CLUSTER_SIZE, "L1 table",
                               &s->l1, errp) < 0) {
        g_prefix_error(errp, "Failed to read L1 table: ");
        return -1;
    }
    fill_guard(s);
    s->l2 = diskimg_table2_new(s->file, "L2 table",
                               (uint64_t)s->h.cluster_size * s->h.table_size, s->h.cluster_size,
                               DISKIMG_LITTLE_ENDIAN, QED_L2_CACHE_BUDGET, errp);
    return s->l2 ? 0 : -1;
}

/* An image left with QED_F_NEED_CHECK is checked and repaired when it is
 * opened for writing (not for `check`, which does it itself); read-only
 * opens may read it as it is, for data recovery, as qemu allows. */
static int check_if_needed(struct qed *s, unsigned flags, GError **errp)
{
    struct diskimg_check_result res = { .struct_size = sizeof(res) };

    /* qemu-img info does not call it dirty (see qed_info), inspect does */
    if (s->h.features & QED_F_NEED_CHECK)
        diskimg_node_add_finding(s->node, "dirty", DISKIMG_SEVERITY_WARNING, "features",
                                 "the image was not closed cleanly (QED_F_NEED_CHECK)");
    if (!(s->h.features & QED_F_NEED_CHECK) || (flags & DISKIMG_OPEN_CHECK) || !s->writable)
        return 0;
    if (qed_check_image(s, true, &res, errp) < 0) {
        g_prefix_error(errp, "Image corrupted: ");
        return -1;
    }
    return 0;
}

static void *qed_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct qed *s = g_new0(struct qed, 1);
    int64_t file_size;

    s->node = args->node;
    s->file = args->file;
    s->filename = g_strdup(args->filename);
    s->writable = args->flags & DISKIMG_OPEN_RDWR;
    file_size = diskimg_node_size(s->file, errp);
    if (file_size < 0 || read_header(s, (uint64_t)file_size, errp) < 0 ||
        read_backing_name(s, (uint64_t)file_size, errp) < 0 || reset_autoclear(s, errp) < 0 ||
        load_tables(s, errp) < 0 || check_if_needed(s, args->flags, errp) < 0) {
        /* nothing to close cleanly: the image was not changed */
        free_state(s);
        return NULL;
    }
    return s;
}

static int64_t qed_get_size(void *h, GError **errp)
{
    struct qed *s = h;

    (void)errp;
    return (int64_t)s->h.image_size;
}

static int qed_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                    GError **errp)
{
    struct qed *s = h;

    (void)specific;   /* qemu shows no format-specific data for qed */
    (void)errp;
    info->cluster_size = s->h.cluster_size;
    /* qemu 7.2 does not report QED_F_NEED_CHECK as the dirty flag */
    info->dirty = false;
    return 0;
}

static int qed_get_backing(void *h, struct diskimg_backing_ref *ref)
{
    struct qed *s = h;

    ref->filename = s->backing_name;
    ref->format = s->backing_name && (s->h.features & QED_F_BACKING_FORMAT_NO_PROBE)
                  ? "raw" : NULL;
    return 0;
}

/* qemu's bdrv_qed_change_backing_file: the header and the new name are
 * rewritten in place, and must fit in the header clusters. */
static int qed_set_backing(void *h, const char *filename, const char *format, GError **errp)
{
    struct qed *s = h;
    struct qed_header nh = s->h;
    uint64_t name_len = filename ? strlen(filename) : 0;
    uint8_t *buf;
    int ret;

    if (filename && diskimg_trust_check_to_record(DISKIMG_CHILD_BACKING, filename, errp) < 0)
        return -1;
    if (QED_HEADER_BYTES + name_len > (uint64_t)nh.header_size * nh.cluster_size ||
        name_len > QED_MAX_BACKING_NAME) {
        diskimg_set_errno(errp, ENOSPC, "%s: no room for the backing file name", s->filename);
        return -1;
    }
    nh.features &= ~(uint64_t)(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    if (filename) {
        nh.features |= QED_F_BACKING_FILE;
        if (format && g_str_equal(format, "raw"))
            nh.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    nh.backing_offset = QED_HEADER_BYTES;
    nh.backing_size = (uint32_t)name_len;
    buf = g_malloc0(QED_HEADER_BYTES + name_len);
    qed_header_encode(&nh, buf);
    if (name_len)
        memcpy(buf + QED_HEADER_BYTES, filename, name_len);
    ret = diskimg_node_pwrite(s->file, buf, QED_HEADER_BYTES + name_len, 0, 0, errp);
    g_free(buf);
    if (ret < 0 || diskimg_node_flush(s->file, errp) < 0)
        return -1;
    s->h = nh;
    g_free(s->backing_name);
    s->backing_name = filename ? g_strdup(filename) : NULL;
    return 0;
}

/* qemu's bdrv_qed_co_truncate: growing only, the L1 table gains entries. */
static int qed_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                        GError **errp)
{
    struct qed *s = h;
    uint64_t old = s->h.image_size, *l1 = NULL;
    uint64_t count;

    (void)flags;
    static const char *const modes[] = { "off", "metadata", "falloc", "full" };

    if (prealloc != DISKIMG_PREALLOC_OFF)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported preallocation mode '%s'",
                                 (unsigned)prealloc < G_N_ELEMENTS(modes) ? modes[prealloc]
                                                                         : "?");
    if (!qed_image_size_valid(size, s->h.cluster_size, s->h.table_size))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid image size specified");
    if (size < old)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Shrinking images is currently not supported");
    count = MIN(l1_entries_for(s, size), s->table_entries);
    if (count > s->l1_count) {
        if (diskimg_load_u64_table(s->file, s->h.l1_offset, count, 0, DISKIMG_LITTLE_ENDIAN,
                                   (uint64_t)QED_MAX_TABLE_SIZE * QED_MAX_CLUSTER_SIZE,
                                   "L1 table", &l1, errp) < 0)
            return -1;
        /* entries past the old ones come from the file, validated on use */
        memcpy(l1, s->l1, s->l1_count * sizeof(uint64_t));
    }
    s->h.image_size = size;
    if (qed_header_write(s, errp) < 0) {
        s->h.image_size = old;
        g_free(l1);
        return -1;
    }
    if (l1) {
        g_free(s->l1);
        s->l1 = l1;
        s->l1_count = count;
    }
    return 0;
}

static const struct diskimg_format_ops qed_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = qed_probe,
    .open = qed_open,
    .close = qed_close,
    .create = qed_create,
    .get_size = qed_get_size,
    .read = qed_read,
    .write = qed_write,
    .write_zeroes = qed_write_zeroes,
    .flush = qed_flush,
    .block_status = qed_block_status,
    .truncate = qed_truncate,
    .info = qed_info,
    .get_backing = qed_get_backing,
    .set_backing = qed_set_backing,
    .check = qed_check,
};

static const struct diskimg_plugin qed_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "qed",
    .version = PLUGIN_VERSION,
    .summary = "QEMU Enhanced Disk image",
    .schema = qed_schema_yaml,
    .capabilities = DISKIMG_CAP_BACKING | DISKIMG_CAP_ZERO_INIT,
    .ops = &qed_ops,
};

DISKIMG_PLUGIN_DEFINE(qed_plugin)
