/* SPDX-License-Identifier: MIT */
/*
 * create.c — new QED images, as qemu 7.2's bdrv_qed_co_create makes them:
 * one header cluster holding the header and the backing file name, then
 * an empty L1 table of table_size clusters.  A backing format is recorded
 * only as QED_F_BACKING_FORMAT_NO_PROBE when it is raw; any other is
 * probed when the image is opened.
 */
#include <string.h>

#include "qed.h"

static const diskimg_options *create_options(const struct diskimg_format_create_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_format_create_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

static int check_geometry(uint64_t cluster_size, uint64_t table_size, uint64_t size,
                          GError **errp)
{
    if (!qed_cluster_size_valid(cluster_size))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "QED cluster size must be within range [%u, %u] and power "
                                 "of 2", QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
    if (!qed_table_size_valid(table_size))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "QED table size must be within range [%u, %u] and power of 2",
                                 QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
    if (!qed_image_size_valid(size, cluster_size, table_size))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "QED image size must be a non-zero multiple of cluster size "
                                 "and less than %" PRIu64 " bytes",
                                 qed_max_image_size(cluster_size, table_size));
    return 0;
}

int qed_create(const struct diskimg_format_create_args *args, GError **errp)
{
    const diskimg_options *o = create_options(args);
    const char *backing = o ? diskimg_options_get_str(o, "backing_file") : NULL;
    const char *backing_fmt = o ? diskimg_options_get_str(o, "backing_fmt") : NULL;
    uint64_t cluster_size = o ? diskimg_options_get_uint(o, "cluster_size", 65536) : 65536;
    uint64_t table_size = o ? diskimg_options_get_uint(o, "table_size", 4) : 4;
    struct qed_header h = { .magic = QED_MAGIC, .header_size = 1 };
    uint8_t *head;
    int ret;

    /* qemu-img rounds the size up to whole sectors */
    if (args->size > UINT64_MAX - (QED_SECTOR - 1))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image size is too large");
    h.image_size = (args->size + QED_SECTOR - 1) / QED_SECTOR * QED_SECTOR;
    if (check_geometry(cluster_size, table_size, h.image_size, errp) < 0)
        return -1;
    h.cluster_size = (uint32_t)cluster_size;
    h.table_size = (uint32_t)table_size;
    h.l1_offset = cluster_size;
    if (backing) {
        if (strlen(backing) > cluster_size - QED_HEADER_BYTES ||
            strlen(backing) > QED_MAX_BACKING_NAME)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Backing file name too long");
        if (diskimg_trust_check_to_record(DISKIMG_CHILD_BACKING, backing, errp) < 0)
            return -1;
        h.features |= QED_F_BACKING_FILE;
        h.backing_offset = QED_HEADER_BYTES;
        h.backing_size = (uint32_t)strlen(backing);
        if (backing_fmt && g_str_equal(backing_fmt, "raw"))
            h.features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    head = g_malloc0(QED_HEADER_BYTES + h.backing_size);
    qed_header_encode(&h, head);
    if (backing)
        memcpy(head + QED_HEADER_BYTES, backing, h.backing_size);
    ret = diskimg_node_pwrite(args->file, head, QED_HEADER_BYTES + h.backing_size, 0, 0, errp);
    g_free(head);
    if (ret < 0)
        return -1;
    /* the empty L1 table: growing the new file gives its zeroes */
    return diskimg_node_truncate(args->file, cluster_size + cluster_size * table_size,
                                 DISKIMG_PREALLOC_OFF, 0, errp);
}
