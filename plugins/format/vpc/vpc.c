/* SPDX-License-Identifier: MIT */
/*
 * vpc.c — the VHD plugin's descriptor: probing, information, capabilities.
 * The layout is described in vpc.h; see README.md for what differs from
 * qemu-img.
 */
#include <string.h>

#include "vpc.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0"
#endif

extern const char vpc_schema_yaml[];

/* qemu's probe: a dynamic disk starts with a footer copy. */
static int vpc_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return vpc_has_cookie(buf, len) ? 100 : 0;
}

/* A fixed disk has nothing but its footer in the last sector; qemu 7.2
 * does not look there (it takes such images for raw), we do. */
static int vpc_probe_tail(const uint8_t *buf, size_t len, uint64_t file_size,
                          const char *filename)
{
    (void)filename;
    if (len < VPC_FOOTER_SIZE)
        return 0;
    return vpc_fixed_trailer_score(buf + len - VPC_FOOTER_SIZE, VPC_FOOTER_SIZE, file_size);
}

static int64_t vpc_get_size(void *h, GError **errp)
{
    struct vpc *s = h;

    (void)errp;
    return (int64_t)s->size;
}

/* qemu 7.2 shows a dynamic disk's block size as cluster-size, nothing for
 * a fixed one, and no format-specific data. */
static int vpc_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                    GError **errp)
{
    struct vpc *s = h;

    (void)specific;
    (void)errp;
    info->cluster_size = s->fixed ? 0 : s->block_size;
    return 0;
}

static const struct diskimg_format_ops vpc_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = vpc_probe,
    .probe_tail = vpc_probe_tail,
    .open = vpc_open,
    .close = vpc_close,
    .create = vpc_create,
    .get_size = vpc_get_size,
    .read = vpc_read,
    .write = vpc_write,
    .write_zeroes = vpc_write_zeroes,
    .block_status = vpc_block_status,
    .info = vpc_info,
    /* Measure is ours (qemu-img 7.2 has none for vpc).  No truncate,
     * check or discard: qemu-img 7.2 has none for vpc, and the core
     * answers with its texts.  No flush: metadata is written through. */
    .measure = vpc_measure,
};

/* ZERO_INIT: a new dynamic disk has no blocks; a new fixed disk is a
 * sparse file (qemu: has_zero_init of the file for fixed disks). */
static const struct diskimg_plugin vpc_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_PARALLEL,     /* io.c says how it locks */
    .name = "vpc",
    .version = PLUGIN_VERSION,
    .summary = "Virtual PC / Hyper-V VHD image (dynamic and fixed)",
    .schema = vpc_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT,
    .ops = &vpc_ops,
};

DISKIMG_PLUGIN_DEFINE(vpc_plugin)
