/* SPDX-License-Identifier: MIT */
/*
 * luks.h — the luks format plugin: a LUKS version 1 header (key slots and
 * their key material) followed by the encrypted guest data, as qemu's
 * block/crypto.c driver "luks" and cryptsetup's LUKS1 lay it out.
 *
 * The header is parsed, unlocked and written by the core's LUKS engine
 * (<diskimg/crypto.h>); this plugin maps guest requests onto the payload
 * and encrypts them sector by sector, the IV of a sector being its number
 * counted from the start of the payload (qemu passes the guest offset).
 *
 * Thread model: PARALLEL.  The sector cipher keeps no per-call state, so
 * whole-sector requests run concurrently under the shared side of `lock`;
 * a request that covers part of a sector reads, decrypts, patches and
 * re-encrypts it under the exclusive side, as do resize and amend.
 */
#ifndef LUKS_PLUGIN_H
#define LUKS_PLUGIN_H

#include <diskimg/crypto.h>
#include <diskimg/plugin.h>

#define LUKS_SECTOR DISKIMG_CRYPTO_SECTOR_SIZE

struct luks_image {
    diskimg_node *file;
    char *filename;            /* for messages of callbacks other than open */
    diskimg_luks *hdr;         /* unlocked unless opened metadata-only */
    uint64_t payload_offset;   /* bytes from the start of the file */
    uint64_t size;             /* virtual size: whole sectors of payload */
    GRWLock lock;
};

/* luks.c */
int luks_password(const char *secret_id, const char *option, uint8_t **pw, size_t *len,
                  GError **errp);

/* io.c */
int luks_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp);
int luks_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp);
int luks_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                  GError **errp);
/* Sizes the payload of a new or resized image: the file becomes
 * payload_offset + size bytes, the new area allocated as `prealloc` asks. */
int luks_size_payload(diskimg_node *file, uint64_t payload_offset, uint64_t size,
                      enum diskimg_prealloc prealloc, GError **errp);

/* create.c */
int luks_create(const struct diskimg_format_create_args *args, GError **errp);
int luks_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                 GError **errp);

/* amend.c */
int luks_amend(void *h, const diskimg_options *options, bool force, GError **errp);

#endif
