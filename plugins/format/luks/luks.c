/* SPDX-License-Identifier: MIT */
/*
 * luks.c — the luks format plugin: probing, opening, info, descriptor.
 *
 * Opening parses and validates the whole header through the core's LUKS
 * engine, checks the payload against the file, and unless the open is
 * metadata-only (info) unlocks a key slot with the passphrase of the
 * key-secret open option, as qemu's block_crypto_open_luks does.  Without
 * the crypto plugin the unlock fails with the engine's install hint; info
 * and probing need no crypto at all.
 */
#include <string.h>

#include "luks.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char luks_schema_yaml[];

/* The passphrase of a --object secret, wiped by the caller
 * (diskimg_secret_wipe).  `option` names the option that needs it, in
 * qemu's message when it was not given. */
int luks_password(const char *secret_id, const char *option, uint8_t **pw, size_t *len,
                  GError **errp)
{
    if (!secret_id)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Parameter '%s' is required for cipher", option);
    return diskimg_crypto_password(secret_id, pw, len, errp);
}

/* ---------------------------------------------------------------- probing */

/*
 * LUKS1 is ours.  Other LUKS versions (cryptsetup's LUKS2) are claimed too,
 * so that opening them fails with "LUKS version 2 is not supported":
 * qemu-img 7.2 probes them as raw, which shows the encrypted bytes as a
 * disk and lets writes destroy the header; the design rule is to name a
 * format we recognise rather than fall back to raw (-f raw still opens
 * the bytes on purpose).
 */
static int luks_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (diskimg_luks_probe(buf, len))
        return 100;
    return len >= 6 && memcmp(buf, "LUKS\xba\xbe", 6) == 0 ? 100 : 0;
}

/* ---------------------------------------------------------------- opening */

static void luks_close(void *h)
{
    struct luks_image *s = h;

    if (!s)
        return;
    diskimg_luks_free(s->hdr);
    g_free(s->filename);
    g_rw_lock_clear(&s->lock);
    g_free(s);
}

static const diskimg_options *open_options(const struct diskimg_format_open_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_format_open_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

/*
 * The payload must start inside the file: qemu computes the virtual size
 * as the file's length in whole sectors minus the payload offset and
 * fails when that is negative.  The header area itself (header plus every
 * slot's key material) was checked against the payload offset by the
 * engine.
 */
static int check_payload(struct luks_image *s, GError **errp)
{
    int64_t fsize = diskimg_node_size(s->file, errp);

    if (fsize < 0)
        return -1;
    uint64_t sectors_end = ((uint64_t)fsize + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
    s->payload_offset = diskimg_luks_payload_offset(s->hdr);
    if (s->payload_offset > sectors_end)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "LUKS header field 'payload-offset' (%" PRIu64 " bytes) lies "
                                 "beyond the end of the file (%" PRIu64 " bytes)",
                                 s->payload_offset, (uint64_t)fsize);
    s->size = sectors_end - s->payload_offset;
    return 0;
}

/* A file shorter than the header reads zeroes past its end; refuse it
 * with the header's own words rather than parse zeroes. */
static int check_header_fits(diskimg_node *file, GError **errp)
{
    int64_t fsize = diskimg_node_size(file, errp);

    if (fsize < 0)
        return -1;
    if ((uint64_t)fsize < DISKIMG_LUKS_HEADER_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "LUKS header (%d bytes) is truncated: the file has %" PRId64
                                 " bytes", DISKIMG_LUKS_HEADER_SIZE, fsize);
    return 0;
}

static int unlock(struct luks_image *s, const diskimg_options *o, GError **errp)
{
    const char *id = o ? diskimg_options_get_str(o, "key-secret") : NULL;
    uint8_t *pw = NULL;
    size_t len = 0;

    if (luks_password(id, "key-secret", &pw, &len, errp) < 0)
        return -1;
    int ret = diskimg_luks_unlock_node(s->hdr, pw, len, s->file, 0, errp);
    diskimg_secret_wipe(pw, len);
    return ret;
}

static void *luks_open(const struct diskimg_format_open_args *args, GError **errp)
{
    struct luks_image *s = g_new0(struct luks_image, 1);

    g_rw_lock_init(&s->lock);
    s->file = args->file;
    s->filename = g_strdup(args->filename);
    if (check_header_fits(s->file, errp) < 0)
        goto fail;
    s->hdr = diskimg_luks_open_node(s->file, 0, errp);
    if (!s->hdr || check_payload(s, errp) < 0)
        goto fail;
    /* info reads the header only: no passphrase, no crypto plugin */
    if (!(args->flags & DISKIMG_OPEN_NO_IO) && unlock(s, open_options(args), errp) < 0)
        goto fail;
    return s;
fail:
    luks_close(s);
    return NULL;
}

/* ------------------------------------------------------------------- info */

static int64_t luks_get_size(void *h, GError **errp)
{
    struct luks_image *s = h;

    (void)errp;
    g_rw_lock_reader_lock(&s->lock);
    uint64_t size = s->size;
    g_rw_lock_reader_unlock(&s->lock);
    return (int64_t)size;
}

static int luks_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                     GError **errp)
{
    struct luks_image *s = h;

    (void)errp;
    if (info->struct_size >= offsetof(struct diskimg_image_info, encrypted) +
                             sizeof(info->encrypted))
        info->encrypted = true;
    g_rw_lock_reader_lock(&s->lock);
    diskimg_luks_info(s->hdr, specific);
    g_rw_lock_reader_unlock(&s->lock);
    return 0;
}

/* -------------------------------------------------------------- descriptor */

static const struct diskimg_format_ops luks_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = luks_probe,
    .open = luks_open,
    .close = luks_close,
    .create = luks_create,
    .get_size = luks_get_size,
    .read = luks_read,
    .write = luks_write,
    .truncate = luks_truncate,
    .info = luks_info,
    .measure = luks_measure,
    .amend = luks_amend,
};

/* Not ZERO_INIT: a fresh payload decrypts to noise, so copies must write
 * their zeroes (qemu's crypto driver has no zero-init either). */
static const struct diskimg_plugin luks_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "luks",
    .version = PLUGIN_VERSION,
    .summary = "LUKS version 1 encrypted disk image (qemu's luks driver, cryptsetup-compatible)",
    .schema = luks_schema_yaml,
    .capabilities = 0,
    .ops = &luks_ops,
};

DISKIMG_PLUGIN_DEFINE(luks_plugin)
