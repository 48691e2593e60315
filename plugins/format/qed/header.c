/* SPDX-License-Identifier: MIT */
/*
 * header.c — the QED header: limits, parsing with qemu 7.2's checks and
 * messages (bdrv_qed_do_open), encoding, and the offset predicates every
 * table walk uses.
 */
#include <string.h>

#include "qed.h"

static bool power_of_two(uint64_t v)
{
    return v && !(v & (v - 1));
}

bool qed_cluster_size_valid(uint64_t cluster_size)
{
    return power_of_two(cluster_size) && cluster_size >= QED_MIN_CLUSTER_SIZE &&
           cluster_size <= QED_MAX_CLUSTER_SIZE;
}

bool qed_table_size_valid(uint64_t table_size)
{
    return power_of_two(table_size) && table_size >= QED_MIN_TABLE_SIZE &&
           table_size <= QED_MAX_TABLE_SIZE;
}

/* What the two levels can address; with valid sizes at most 2^77, so it
 * saturates to UINT64_MAX rather than wrap. */
uint64_t qed_max_image_size(uint64_t cluster_size, uint64_t table_size)
{
    uint64_t entries = cluster_size * table_size / sizeof(uint64_t);
    uint64_t l2_span = entries * cluster_size;

    if (l2_span != 0 && entries > UINT64_MAX / l2_span)
        return UINT64_MAX;
    return entries * l2_span;
}

bool qed_image_size_valid(uint64_t size, uint64_t cluster_size, uint64_t table_size)
{
    return size % QED_SECTOR == 0 && size <= qed_max_image_size(cluster_size, table_size);
}

static int read_fields(const struct diskimg_reader *r, struct qed_header *h, GError **errp)
{
    if (diskimg_read_u32(r, 0, "magic", &h->magic, errp) < 0 ||
        diskimg_read_u32(r, 4, "cluster_size", &h->cluster_size, errp) < 0 ||
        diskimg_read_u32(r, 8, "table_size", &h->table_size, errp) < 0 ||
        diskimg_read_u32(r, 12, "header_size", &h->header_size, errp) < 0 ||
        diskimg_read_u64(r, 16, "features", &h->features, errp) < 0 ||
        diskimg_read_u64(r, 24, "compat_features", &h->compat_features, errp) < 0 ||
        diskimg_read_u64(r, 32, "autoclear_features", &h->autoclear_features, errp) < 0 ||
        diskimg_read_u64(r, 40, "l1_table_offset", &h->l1_offset, errp) < 0 ||
        diskimg_read_u64(r, 48, "image_size", &h->image_size, errp) < 0 ||
        diskimg_read_u32(r, 56, "backing_filename_offset", &h->backing_offset, errp) < 0 ||
        diskimg_read_u32(r, 60, "backing_filename_size", &h->backing_size, errp) < 0)
        return -1;
    return 0;
}

static int invalid(GError **errp, const char *what, const char *field, uint64_t value)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s (header field '%s' is %" PRIu64 ")", what, field, value);
}

int qed_header_parse(const uint8_t *buf, size_t len, struct qed_header *h, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, MIN(len, (size_t)QED_HEADER_BYTES),
                                                  DISKIMG_LITTLE_ENDIAN, NULL, "QED header");

    memset(h, 0, sizeof(*h));
    if (!diskimg_reader_has(&r, 0, 4) || diskimg_le32(buf) != QED_MAGIC)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image not in QED format");
    if (read_fields(&r, h, errp) < 0)
        return -1;
    if (h->features & ~(uint64_t)QED_FEATURE_MASK)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported QED features: %" PRIx64,
                                 h->features & ~(uint64_t)QED_FEATURE_MASK);
    if (!qed_cluster_size_valid(h->cluster_size))
        return invalid(errp, "QED cluster size is invalid", "cluster_size", h->cluster_size);
    if (!qed_table_size_valid(h->table_size))
        return invalid(errp, "QED table size is invalid", "table_size", h->table_size);
    if (!qed_image_size_valid(h->image_size, h->cluster_size, h->table_size))
        return invalid(errp, "QED image size is invalid", "image_size", h->image_size);
    /* qemu accepts 0, which puts the L1 table over the header */
    if (h->header_size == 0 || h->header_size > UINT32_MAX / h->cluster_size)
        return invalid(errp, "QED header size is invalid", "header_size", h->header_size);
    if ((h->features & QED_F_BACKING_FILE) &&
        (uint64_t)h->backing_offset + h->backing_size >
        (uint64_t)h->cluster_size * h->header_size)
        return invalid(errp, "QED backing filename offset is invalid",
                       "backing_filename_offset", h->backing_offset);
    if ((h->features & QED_F_BACKING_FILE) && h->backing_size > QED_MAX_BACKING_NAME)
        return invalid(errp, "Failed to read backing filename", "backing_filename_size",
                       h->backing_size);
    return 0;
}

void qed_header_encode(const struct qed_header *h, uint8_t *buf)
{
    memset(buf, 0, QED_HEADER_BYTES);
    diskimg_put_le32(buf, h->magic);
    diskimg_put_le32(buf + 4, h->cluster_size);
    diskimg_put_le32(buf + 8, h->table_size);
    diskimg_put_le32(buf + 12, h->header_size);
    diskimg_put_le64(buf + 16, h->features);
    diskimg_put_le64(buf + 24, h->compat_features);
    diskimg_put_le64(buf + 32, h->autoclear_features);
    diskimg_put_le64(buf + 40, h->l1_offset);
    diskimg_put_le64(buf + 48, h->image_size);
    diskimg_put_le32(buf + 56, h->backing_offset);
    diskimg_put_le32(buf + 60, h->backing_size);
}

/* The header struct only: the backing name after it stays as it is. */
int qed_header_write(struct qed *s, GError **errp)
{
    uint8_t buf[QED_HEADER_BYTES];

    qed_header_encode(&s->h, buf);
    if (diskimg_node_pwrite(s->file, buf, sizeof(buf), 0, 0, errp) < 0)
        return -1;
    return diskimg_node_flush(s->file, errp);
}

/* qemu's qed_check_cluster_offset: aligned, past the header, inside the
 * (allocated part of the) file. */
bool qed_cluster_offset_valid(const struct qed *s, uint64_t off)
{
    uint64_t header_bytes = (uint64_t)s->h.header_size * s->h.cluster_size;

    if (off & (s->h.cluster_size - 1))
        return false;
    return off >= header_bytes && off < s->file_size;
}

/* qemu's qed_check_table_offset: the first and the last cluster of the
 * table are valid.  Like qemu, a one-cluster table never passes (qemu
 * cannot open such images; neither can we). */
bool qed_table_offset_valid(const struct qed *s, uint64_t off)
{
    uint64_t span = (uint64_t)(s->h.table_size - 1) * s->h.cluster_size;

    if (off > UINT64_MAX - span || off + span <= off)
        return false;
    return qed_cluster_offset_valid(s, off) && qed_cluster_offset_valid(s, off + span);
}
