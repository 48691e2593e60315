/* SPDX-License-Identifier: MIT */
/*
 * qcow.h — the qcow (version 1) format: QEMU's original copy-on-write
 * image.  A 48-byte big-endian header, an optional backing file name, an
 * L1 table in memory, L2 tables and data clusters allocated at the end of
 * the file.  L2 entries with bit 63 set name compressed clusters (raw
 * deflate, the stored length in the bits below 63); encryption method 1
 * is qemu's legacy AES-128-CBC with the guest sector number as IV.
 */
#ifndef DISKIMG_QCOW_H
#define DISKIMG_QCOW_H

#include <diskimg/plugin.h>
#include <diskimg/toolkit.h>
#include <diskimg/crypto.h>
#include <diskimg/guard.h>


#define QCOW_MAGIC 0x514649fbu            /* "QFI\xfb" */
#define QCOW_VERSION 1u
#define QCOW_HEADER_SIZE 48u
#define QCOW_CRYPT_NONE 0u
#define QCOW_CRYPT_AES 1u
#define QCOW_OFLAG_COMPRESSED (1ull << 63)
/* qemu 7.2's limits (block/qcow.c): clusters 512 B..64 KiB, L2 tables
 * 512 B..64 KiB, backing names below 1024 bytes. */
#define QCOW_MIN_CLUSTER_BITS 9u
#define QCOW_MAX_CLUSTER_BITS 16u
#define QCOW_MIN_L2_BITS 6u
#define QCOW_MAX_L2_BITS 13u
#define QCOW_MAX_BACKING_NAME 1023u
#define QCOW_SECTOR 512u

struct qcow_header {
    uint32_t magic, version;
    uint64_t backing_offset;
    uint32_t backing_size;
    uint32_t mtime;
    uint64_t size;
    uint8_t cluster_bits, l2_bits;
    uint32_t crypt_method;
    uint64_t l1_offset;
};

struct qcow {
    diskimg_node *node, *file;
    char *filename;
    struct qcow_header h;
    char *backing_name;            /* NULL: none */
    uint64_t cluster_size;
    uint64_t l2_entries;
    uint64_t l1_size;
    uint64_t *l1;                  /* host order */
    diskimg_table2 *l2;
    /* Where the header, the L1 table and every L2 table lie: no data
     * cluster an L2 entry names may overlap them. */
    diskimg_guard *guard;
    uint64_t file_end;             /* where the next allocation may start */
    diskimg_sector_cipher *aes;    /* encrypted images opened for I/O */
    /* The last compressed cluster, decompressed: sequential reads of one
     * cluster in pieces inflate it once. */
    uint8_t *zcache;
    uint64_t zcache_entry;         /* its L2 entry; 0: empty */
    bool writable;
};

/* header.c */
int qcow_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                      struct qcow_header *h, GError **errp);
void qcow_header_encode(const struct qcow_header *h, uint8_t *buf);
uint64_t qcow_l1_size(uint64_t size, unsigned cluster_bits, unsigned l2_bits);

/* Kinds of metadata the guard knows. */
enum { QCOW_META_HEADER = 1, QCOW_META_L1 = 2, QCOW_META_L2 = 4 };

/* io.c */
int qcow_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int qcow_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp);
int qcow_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp);
int qcow_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                          GError **errp);
int64_t qcow_compress(void *h, const void *buf, uint64_t len, void *out, uint64_t out_cap,
                      GError **errp);
int qcow_write_precompressed(void *h, const void *data, uint64_t len, uint64_t offset,
                             uint64_t guest_len, GError **errp);
int qcow_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                      GError **errp);
int qcow_flush(void *h, GError **errp);
int qcow_make_empty(void *h, GError **errp);

/* create.c */
int qcow_create(const struct diskimg_format_create_args *args, GError **errp);
int qcow_encrypt_format(const diskimg_options *o, bool *encrypt, GError **errp);

#endif
