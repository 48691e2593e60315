/* SPDX-License-Identifier: MIT */
/*
 * A format plugin as a third party would have written it against diskimg
 * 0.1.0: compiled with the frozen ABI 2 headers of tests/abi/frozen-abi2
 * only, and loaded by the current core in the abi-old-plugin test (create,
 * write, read, info).  Keep it frozen too: it may use only what those
 * headers declare.
 *
 * Layout: a 512-byte header ("FROZEN2\0", le32 version 1, le64 virtual
 * size at 16), then the guest data.
 */
#include <string.h>

#include <diskimg/plugin.h>

#define FROZEN_MAGIC "FROZEN2"
#define FROZEN_HEADER 512u
#define FROZEN_VERSION 1u
#define FROZEN_MAX_SIZE (UINT64_C(1) << 50)

extern const char frozen_schema_yaml[];

struct frozen {
    diskimg_node *file;
    uint64_t size;
};

static int frozen_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && memcmp(buf, FROZEN_MAGIC, 8) == 0 ? 100 : 0;
}

static void *frozen_open(const struct diskimg_format_open_args *args, GError **errp)
{
    uint8_t h[FROZEN_HEADER];
    int64_t file_size = diskimg_node_size(args->file, errp);
    if (file_size < 0)
        return NULL;
    if ((uint64_t)file_size < FROZEN_HEADER ||
        diskimg_node_pread(args->file, h, sizeof(h), 0, errp) < 0 ||
        memcmp(h, FROZEN_MAGIC, 8) != 0) {
        if (errp && !*errp)
            diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image is not in frozen format");
        return NULL;
    }
    uint64_t size = diskimg_le64(h + 16);
    if (diskimg_le32(h + 8) != FROZEN_VERSION || size > FROZEN_MAX_SIZE) {
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Invalid frozen header");
        return NULL;
    }
    struct frozen *s = g_new0(struct frozen, 1);
    s->file = args->file;
    s->size = size;
    return s;
}

static void frozen_close(void *h)
{
    g_free(h);
}

static int64_t frozen_get_size(void *h, GError **errp)
{
    (void)errp;
    return (int64_t)((struct frozen *)h)->size;
}

static int frozen_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    return diskimg_node_pread(((struct frozen *)h)->file, buf, len, FROZEN_HEADER + offset, errp);
}

static int frozen_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                        GError **errp)
{
    return diskimg_node_pwrite(((struct frozen *)h)->file, buf, len, FROZEN_HEADER + offset,
                               flags, errp);
}

static int frozen_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                       GError **errp)
{
    (void)h;
    (void)errp;
    info->cluster_size = 0;
    diskimg_obj_set_int(specific, "header-version", FROZEN_VERSION);
    return 0;
}

static int frozen_create(const struct diskimg_format_create_args *args, GError **errp)
{
    uint8_t h[FROZEN_HEADER] = { 0 };
    if (args->size > FROZEN_MAX_SIZE) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image size too large");
        return -1;
    }
    memcpy(h, FROZEN_MAGIC, 8);
    diskimg_put_le32(h + 8, FROZEN_VERSION);
    diskimg_put_le64(h + 16, args->size);
    if (diskimg_node_pwrite(args->file, h, sizeof(h), 0, 0, errp) < 0)
        return -1;
    return diskimg_node_truncate(args->file, FROZEN_HEADER + args->size, DISKIMG_PREALLOC_OFF, 0,
                                 errp);
}

static const struct diskimg_format_ops frozen_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = frozen_probe,
    .open = frozen_open,
    .close = frozen_close,
    .create = frozen_create,
    .get_size = frozen_get_size,
    .read = frozen_read,
    .write = frozen_write,
    .info = frozen_info,
};

static const struct diskimg_plugin frozen_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_REQUESTS,
    .name = "frozen",
    .version = "0.1.0",
    .summary = "ABI 2 test plugin: a 512-byte header, then the guest data",
    .schema = frozen_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT,
    .ops = &frozen_ops,
};

DISKIMG_PLUGIN_DEFINE(frozen_plugin)
