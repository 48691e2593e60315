/* SPDX-License-Identifier: MIT */
/*
 * create.c — new qcow images, laid out as qemu 7.2's qcow_co_create does:
 * the header, the backing file name right after it, the L1 table at the
 * next 8-byte boundary, written in whole 512-byte sectors.  Images with a
 * backing file get 512-byte clusters and 32 KiB L2 tables (so that no
 * write has to copy from the backing file), others 4 KiB of each.  qcow
 * has no field for the backing format: backing_fmt is accepted and only
 * used to open the backing file.
 */
#include <string.h>

#include "qcow.h"

static int missing_key(GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "Parameter 'encrypt.key-secret' is required for cipher");
}

/* Whether the options ask for encryption (encryption=on is the
 * deprecated spelling of encrypt.format=aes). */
int qcow_encrypt_format(const diskimg_options *o, bool *encrypt, GError **errp)
{
    const char *fmt = o ? diskimg_options_get_str(o, "encrypt.format") : NULL;
    bool legacy = o && diskimg_options_get_bool(o, "encryption", false);

    *encrypt = false;
    if (fmt && legacy)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "'encrypt.format' and its alias 'encryption' can't be used at "
                                 "the same time");
    if (!fmt && !legacy) {
        if (o && diskimg_options_has(o, "encrypt.key-secret"))
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Parameter 'encrypt.format' is missing");
        return 0;
    }
    if (fmt && !g_str_equal(fmt, "aes"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Invalid encryption format '%s'", fmt);
    *encrypt = true;
    return 0;
}

/* The key must exist and be usable now, as qemu checks on create. */
static int check_key(const diskimg_options *o, GError **errp)
{
    const char *id = diskimg_options_get_str(o, "encrypt.key-secret");
    uint8_t *pw = NULL;
    size_t len = 0;

    if (!id)
        return missing_key(errp);
    if (diskimg_crypto_password(id, &pw, &len, errp) < 0)
        return -1;
    diskimg_secret_wipe(pw, len);
    return 0;
}

static const diskimg_options *create_options(const struct diskimg_format_create_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_format_create_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

/* Header and backing name in one buffer of header_size bytes. */
static uint8_t *build_head(const struct qcow_header *h, const char *backing,
                           uint64_t header_size)
{
    uint8_t *buf = g_malloc0(header_size);

    qcow_header_encode(h, buf);
    if (backing)
        memcpy(buf + QCOW_HEADER_SIZE, backing, h->backing_size);
    return buf;
}

int qcow_create(const struct diskimg_format_create_args *args, GError **errp)
{
    const diskimg_options *o = create_options(args);
    const char *backing = o ? diskimg_options_get_str(o, "backing_file") : NULL;
    struct qcow_header h = { .magic = QCOW_MAGIC, .version = QCOW_VERSION };
    uint64_t header_size = QCOW_HEADER_SIZE, l1_bytes, l1_sectors;
    bool encrypt;
    int ret;

    if (qcow_encrypt_format(o, &encrypt, errp) < 0 || (encrypt && check_key(o, errp) < 0))
        return -1;
    if (backing && strlen(backing) > QCOW_MAX_BACKING_NAME)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Backing file name too long");
    if (backing && diskimg_trust_check_to_record(DISKIMG_CHILD_BACKING, backing, errp) < 0)
        return -1;
    if (args->size == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image size is too small, cannot be zero length");
    /* qemu-img rounds the size up to whole sectors */
    if (args->size > UINT64_MAX - (QCOW_SECTOR - 1))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image size is too large");
    h.size = (args->size + QCOW_SECTOR - 1) / QCOW_SECTOR * QCOW_SECTOR;
    if (backing) {
        h.backing_offset = QCOW_HEADER_SIZE;
        h.backing_size = (uint32_t)strlen(backing);
        header_size += h.backing_size;
        h.cluster_bits = 9;
        h.l2_bits = 12;
    } else {
        h.cluster_bits = 12;
        h.l2_bits = 9;
    }
    header_size = (header_size + 7) & ~(uint64_t)7;
    if (h.size > UINT64_MAX - (1ull << (h.cluster_bits + h.l2_bits)) ||
        qcow_l1_size(h.size, h.cluster_bits, h.l2_bits) > INT32_MAX / sizeof(uint64_t))
        /* qemu 7.2 writes such an image and then cannot open it */
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image size is too large: qcow images hold at most "
                                 "%" PRIu64 " bytes",
                                 (uint64_t)(INT32_MAX / sizeof(uint64_t))
                                 << (h.cluster_bits + h.l2_bits));
    h.l1_offset = header_size;
    h.crypt_method = encrypt ? QCOW_CRYPT_AES : QCOW_CRYPT_NONE;
    l1_bytes = qcow_l1_size(h.size, h.cluster_bits, h.l2_bits) * sizeof(uint64_t);
    l1_sectors = (l1_bytes + QCOW_SECTOR - 1) / QCOW_SECTOR;

    uint8_t *head = build_head(&h, backing, header_size);
    ret = diskimg_node_pwrite(args->file, head, header_size, 0, 0, errp);
    g_free(head);
    if (ret < 0)
        return -1;
    /* the L1 table: zeroes, as many sectors as qemu writes; the file is
     * new and empty, so growing it gives them */
    return diskimg_node_truncate(args->file, header_size + l1_sectors * QCOW_SECTOR,
                                 DISKIMG_PREALLOC_OFF, 0, errp);
}
