/* SPDX-License-Identifier: MIT */
/*
 * qed.h — the QED format (QEMU Enhanced Disk, docs/interop/qed_spec.rst):
 * a little-endian header in the first header_size clusters, an L1 table of
 * table_size clusters, L2 tables of the same size and data clusters, all
 * allocated at the end of the file.  An L2 entry of 1 is a zero cluster.
 * While allocating, the image carries QED_F_NEED_CHECK; a clean close
 * clears it, and an image found with it set is checked (and repaired when
 * writable) on open, as qemu 7.2 does.
 */
#ifndef DISKIMG_QED_H
#define DISKIMG_QED_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>
#include <diskimg/guard.h>


#define QED_MAGIC 0x00444551u             /* "QED\0" read little-endian */
#define QED_HEADER_BYTES 64u
#define QED_F_BACKING_FILE 0x01u
#define QED_F_NEED_CHECK 0x02u
#define QED_F_BACKING_FORMAT_NO_PROBE 0x04u
#define QED_FEATURE_MASK (QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE)
#define QED_AUTOCLEAR_FEATURE_MASK 0u
#define QED_MIN_CLUSTER_SIZE (4u * 1024u)
#define QED_MAX_CLUSTER_SIZE (64u * 1024u * 1024u)
#define QED_MIN_TABLE_SIZE 1u
#define QED_MAX_TABLE_SIZE 16u
#define QED_ZERO_CLUSTER 1u
#define QED_SECTOR 512u
/* qemu reads backing names into a PATH_MAX buffer */
#define QED_MAX_BACKING_NAME 4095u

struct qed_header {
    uint32_t magic, cluster_size, table_size, header_size;
    uint64_t features, compat_features, autoclear_features;
    uint64_t l1_offset, image_size;
    uint32_t backing_offset, backing_size;
};

struct qed {
    diskimg_node *node, *file;
    char *filename;
    struct qed_header h;
    char *backing_name;            /* NULL: none */
    uint64_t table_entries;        /* per L1 or L2 table */
    unsigned l2_shift, l1_shift;
    uint64_t *l1;                  /* host order, l1_count entries */
    uint64_t l1_count;             /* entries the virtual size needs */
    diskimg_table2 *l2;
    /* Where the header, the L1 table and the L2 tables lie: no data
     * cluster may overlap them. */
    diskimg_guard *guard;
    uint64_t file_size;            /* file size rounded down to clusters, grown by allocations */
    bool writable;
};

/* Kinds of metadata the guard knows. */
enum { QED_META_HEADER = 1, QED_META_L1 = 2, QED_META_L2 = 4 };

/* header.c */
bool qed_cluster_size_valid(uint64_t cluster_size);
bool qed_table_size_valid(uint64_t table_size);
uint64_t qed_max_image_size(uint64_t cluster_size, uint64_t table_size);
bool qed_image_size_valid(uint64_t size, uint64_t cluster_size, uint64_t table_size);
int qed_header_parse(const uint8_t *buf, size_t len, struct qed_header *h, GError **errp);
void qed_header_encode(const struct qed_header *h, uint8_t *buf);
int qed_header_write(struct qed *s, GError **errp);
bool qed_cluster_offset_valid(const struct qed *s, uint64_t off);
bool qed_table_offset_valid(const struct qed *s, uint64_t off);

/* io.c */
int qed_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int qed_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
              GError **errp);
int qed_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int qed_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                     GError **errp);
int qed_flush(void *h, GError **errp);
int qed_write_l1_entry(struct qed *s, uint64_t index, GError **errp);

/* check.c */
int qed_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp);
int qed_check_image(struct qed *s, bool fix, struct diskimg_check_result *res, GError **errp);

/* create.c */
int qed_create(const struct diskimg_format_create_args *args, GError **errp);

#endif
