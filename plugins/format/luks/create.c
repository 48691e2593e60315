/* SPDX-License-Identifier: MIT */
/*
 * create.c — new luks images and their measure, as qemu's
 * block_crypto_co_create_opts_luks and block_crypto_measure.
 *
 * A new image is a LUKS header with the passphrase of key-secret in key
 * slot 0 (the engine chooses the master key and calibrates the PBKDF2
 * iterations to iter-time), the file sized to the payload offset plus the
 * virtual size with the preallocation asked for.  As in qemu, the file is
 * sized before the header is written, and only the header and slot 0's
 * key material are written: the other slots' areas stay holes.
 */
#include <string.h>

#include "luks.h"

static const diskimg_options *create_options(const struct diskimg_format_create_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_format_create_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

static const char *opt(const diskimg_options *o, const char *name)
{
    return o ? diskimg_options_get_str(o, name) : NULL;
}

/* The engine's parameters from the create options; unset ones take the
 * engine's (qemu's) defaults. */
static void fill_params(const diskimg_options *o, int64_t iter_time_ms,
                        struct diskimg_luks_create_params *p)
{
    memset(p, 0, sizeof(*p));
    p->struct_size = sizeof(*p);
    p->cipher_alg = opt(o, "cipher-alg");
    p->cipher_mode = opt(o, "cipher-mode");
    p->ivgen_alg = opt(o, "ivgen-alg");
    p->ivgen_hash_alg = opt(o, "ivgen-hash-alg");
    p->hash_alg = opt(o, "hash-alg");
    p->iter_time_ms = iter_time_ms;
}

static int64_t iter_time(const diskimg_options *o)
{
    return o && diskimg_options_has(o, "iter-time") ? diskimg_options_get_int(o, "iter-time", -1)
                                                    : -1;
}

/* A header made from the options and the key-secret's passphrase. */
static diskimg_luks *new_header(const diskimg_options *o, int64_t iter_time_ms, GError **errp)
{
    struct diskimg_luks_create_params p;
    uint8_t *pw = NULL;
    size_t len = 0;

    if (luks_password(opt(o, "key-secret"), "key-secret", &pw, &len, errp) < 0)
        return NULL;
    fill_params(o, iter_time_ms, &p);
    diskimg_luks *hdr = diskimg_luks_create(&p, pw, len, errp);
    diskimg_secret_wipe(pw, len);
    return hdr;
}

static int prealloc_mode(const diskimg_options *o, enum diskimg_prealloc *mode, GError **errp)
{
    const char *name = opt(o, "preallocation");

    *mode = DISKIMG_PREALLOC_OFF;
    return name ? diskimg_prealloc_parse(name, mode, errp) : 0;
}

int luks_create(const struct diskimg_format_create_args *args, GError **errp)
{
    const diskimg_options *o = create_options(args);
    enum diskimg_prealloc prealloc;

    if (prealloc_mode(o, &prealloc, errp) < 0)
        return -1;
    diskimg_luks *hdr = new_header(o, iter_time(o), errp);
    if (!hdr)
        return -1;
    int ret = luks_size_payload(args->file, diskimg_luks_payload_offset(hdr), args->size,
                                prealloc, errp);
    if (ret == 0)
        ret = diskimg_luks_write_node(hdr, args->file, 0, errp);
    diskimg_luks_free(hdr);
    return ret;
}

/*
 * qemu measures with a throw-away header made from the options, so the
 * secret must exist and the algorithms be valid; the header's size only
 * depends on the key length.  No calibration: iter-time 0 gives the
 * minimum iteration counts, which is all a throw-away header needs.
 */
int luks_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                 GError **errp)
{
    uint64_t size = args->size;

    if (args->source) {
        int64_t n = diskimg_node_size(args->source, errp);
        if (n < 0)
            return -1;
        size = (uint64_t)n;
    }
    diskimg_luks *hdr = new_header(args->options, 0, errp);
    if (!hdr)
        return -1;
    uint64_t payload = diskimg_luks_payload_offset(hdr);
    diskimg_luks_free(hdr);
    if (size > (uint64_t)INT64_MAX - payload)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image size too large");
    res->required = payload + size;
    res->fully_allocated = payload + size;
    return 0;
}
