/* SPDX-License-Identifier: MIT */
/*
 * header.c — parsing, validation and encoding of the qcow header.
 *
 * Every field is checked the way qemu 7.2's qcow_open checks it (with its
 * messages, so users see the same words), plus what qemu leaves to chance:
 * the L1 table and the backing name must lie inside the file.
 */
#include <string.h>

#include "qcow.h"

uint64_t qcow_l1_size(uint64_t size, unsigned cluster_bits, unsigned l2_bits)
{
    unsigned shift = cluster_bits + l2_bits;

    return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

static int read_fields(const struct diskimg_reader *r, struct qcow_header *h, GError **errp)
{
    uint16_t padding;

    if (diskimg_read_u32(r, 0, "magic", &h->magic, errp) < 0 ||
        diskimg_read_u32(r, 4, "version", &h->version, errp) < 0 ||
        diskimg_read_u64(r, 8, "backing_file_offset", &h->backing_offset, errp) < 0 ||
        diskimg_read_u32(r, 16, "backing_file_size", &h->backing_size, errp) < 0 ||
        diskimg_read_u32(r, 20, "mtime", &h->mtime, errp) < 0 ||
        diskimg_read_u64(r, 24, "size", &h->size, errp) < 0 ||
        diskimg_read_u8(r, 32, "cluster_bits", &h->cluster_bits, errp) < 0 ||
        diskimg_read_u8(r, 33, "l2_bits", &h->l2_bits, errp) < 0 ||
        diskimg_read_u16(r, 34, "padding", &padding, errp) < 0 ||
        diskimg_read_u32(r, 36, "crypt_method", &h->crypt_method, errp) < 0 ||
        diskimg_read_u64(r, 40, "l1_table_offset", &h->l1_offset, errp) < 0)
        return -1;
    return 0;
}

static int check_identity(const struct qcow_header *h, GError **errp)
{
    if (h->magic != QCOW_MAGIC)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image not in qcow format");
    if (h->version != QCOW_VERSION)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "qcow (v%u) does not support qcow version %" PRIu32 "%s",
                                 QCOW_VERSION, h->version,
                                 h->version == 2 || h->version == 3
                                 ? " (try the 'qcow2' driver instead)" : "");
    return 0;
}

static int check_geometry(const struct qcow_header *h, GError **errp)
{
    if (h->size <= 1)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Image size is too small (must be at least 2 bytes): "
                                 "header field 'size' is %" PRIu64, h->size);
    if (h->cluster_bits < QCOW_MIN_CLUSTER_BITS || h->cluster_bits > QCOW_MAX_CLUSTER_BITS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Cluster size must be between 512 and 64k: "
                                 "header field 'cluster_bits' is %u", h->cluster_bits);
    /* l2_bits counts 8-byte entries: 2^6..2^13 entries are 512 B..64 KiB */
    if (h->l2_bits < QCOW_MIN_L2_BITS || h->l2_bits > QCOW_MAX_L2_BITS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "L2 table size must be between 512 and 64k: "
                                 "header field 'l2_bits' is %u", h->l2_bits);
    if (h->crypt_method != QCOW_CRYPT_NONE && h->crypt_method != QCOW_CRYPT_AES)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "invalid encryption method in qcow header: "
                                 "header field 'crypt_method' is %" PRIu32, h->crypt_method);
    unsigned shift = h->cluster_bits + h->l2_bits;
    if (h->size > UINT64_MAX - (1ull << shift) ||
        qcow_l1_size(h->size, h->cluster_bits, h->l2_bits) > INT32_MAX / sizeof(uint64_t))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Image too large: header field 'size' is %" PRIu64, h->size);
    return 0;
}

/* Tables and names must lie inside the file (qemu would read zeroes). */
static int check_placement(const struct qcow_header *h, uint64_t file_size, GError **errp)
{
    uint64_t l1_bytes = qcow_l1_size(h->size, h->cluster_bits, h->l2_bits) * sizeof(uint64_t);

    if (h->l1_offset > file_size || l1_bytes > file_size - h->l1_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "header field 'l1_table_offset' (%#" PRIx64 ") puts the "
                                 "%" PRIu64 "-byte L1 table beyond the end of the file "
                                 "(%" PRIu64 " bytes)", h->l1_offset, l1_bytes, file_size);
    if (h->backing_offset == 0)
        return 0;
    if (h->backing_size > QCOW_MAX_BACKING_NAME)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Backing file name too long: header field "
                                 "'backing_file_size' is %" PRIu32, h->backing_size);
    if (h->backing_offset > file_size || h->backing_size > file_size - h->backing_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "header field 'backing_file_offset' (%#" PRIx64 ") puts the "
                                 "backing file name beyond the end of the file", h->backing_offset);
    return 0;
}

int qcow_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                      struct qcow_header *h, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, MIN(len, (size_t)QCOW_HEADER_SIZE),
                                                  DISKIMG_BIG_ENDIAN, NULL, "qcow header");

    memset(h, 0, sizeof(*h));
    /* the magic first, so that a short non-qcow file is named as such */
    if (diskimg_reader_has(&r, 0, 4) && diskimg_be32(buf) != QCOW_MAGIC)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image not in qcow format");
    if (read_fields(&r, h, errp) < 0 || check_identity(h, errp) < 0 ||
        check_geometry(h, errp) < 0 || check_placement(h, file_size, errp) < 0)
        return -1;
    return 0;
}

void qcow_header_encode(const struct qcow_header *h, uint8_t *buf)
{
    memset(buf, 0, QCOW_HEADER_SIZE);
    diskimg_put_be32(buf, h->magic);
    diskimg_put_be32(buf + 4, h->version);
    diskimg_put_be64(buf + 8, h->backing_offset);
    diskimg_put_be32(buf + 16, h->backing_size);
    diskimg_put_be32(buf + 20, h->mtime);
    diskimg_put_be64(buf + 24, h->size);
    buf[32] = h->cluster_bits;
    buf[33] = h->l2_bits;
    diskimg_put_be32(buf + 36, h->crypt_method);
    diskimg_put_be64(buf + 40, h->l1_offset);
}
