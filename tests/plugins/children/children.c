/* SPDX-License-Identifier: MIT */
/*
 * "children": a test format whose guest data lives in three child files,
 * to show that children follow the image's I/O backend, cache mode and
 * locking, count in its disk size, and vanish again when a create fails.
 *
 * The image file holds a 512-byte header: the magic "DICHILD3", then the
 * size of each child (little endian 64 bits at offset 8).  Child i (1..3)
 * is the file "<image name>.<i>" beside it and holds guest bytes
 * [(i-1) * part, i * part).
 */
#include <string.h>

#include <diskimg/plugin.h>

extern const char children_schema_yaml[];

#define CH_MAGIC "DICHILD3"
#define CH_COUNT 3u
#define CH_HEADER 512u

struct children {
    diskimg_node *part[CH_COUNT];
    uint64_t part_size;
    bool read_only_image;
};

static int fail(GError **errp, const char *msg)
{
    g_set_error_literal(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, msg);
    return -1;
}

/* "dir/x.img" -> "x.img.2": children are named relative to the image. */
static char *child_name(const char *image, unsigned i)
{
    g_autofree char *base = g_path_get_basename(image);
    return g_strdup_printf("%s.%u", base, i + 1);
}

static int ch_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    return len >= 8 && memcmp(buf, CH_MAGIC, 8) == 0 ? 100 : 0;
}

static void ch_close(void *h)
{
    g_free(h);      /* the core closes the children */
}

static void *ch_open(const struct diskimg_format_open_args *a, GError **errp)
{
    uint8_t hdr[CH_HEADER];
    if (diskimg_node_pread(a->file, hdr, sizeof(hdr), 0, errp) < 0)
        return NULL;
    if (memcmp(hdr, CH_MAGIC, 8) != 0) {
        fail(errp, "not a children image");
        return NULL;
    }
    struct children *c = g_new0(struct children, 1);
    c->part_size = diskimg_le64(hdr + 8);
    if (c->part_size % 512 || c->part_size > (UINT64_C(1) << 50)) {
        fail(errp, "bad part size");
        g_free(c);
        return NULL;
    }
    c->read_only_image = a->options &&
                         diskimg_options_get_bool(a->options, "read_only_image", false);
    for (unsigned i = 0; i < CH_COUNT; i++) {
        g_autofree char *name = child_name(a->filename, i);
        c->part[i] = diskimg_node_open_child(a->node, DISKIMG_CHILD_EXTENT, name, 0, errp);
        if (!c->part[i]) {
            g_free(c);
            return NULL;
        }
    }
    return c;
}

static int ch_create(const struct diskimg_format_create_args *a, GError **errp)
{
    uint64_t part = a->size / CH_COUNT;
    if (a->size % (CH_COUNT * 512))
        return fail(errp, "size must be a multiple of 1536");
    int64_t fail_after = a->options ? diskimg_options_get_int(a->options, "fail_after", -1) : -1;
    for (unsigned i = 0; i < CH_COUNT; i++) {
        if (fail_after == (int64_t)i)
            return fail(errp, "failing on purpose (fail_after)");
        g_autofree char *name = child_name(a->filename, i);
        diskimg_node *d = diskimg_node_create_child(a->file, DISKIMG_CHILD_EXTENT, name, 0,
                                                    errp);
        if (!d || diskimg_node_truncate(d, part, DISKIMG_PREALLOC_OFF, 0, errp) < 0)
            return -1;
    }
    uint8_t hdr[CH_HEADER] = { 0 };
    memcpy(hdr, CH_MAGIC, 8);
    diskimg_put_le64(hdr + 8, part);
    return diskimg_node_pwrite(a->file, hdr, sizeof(hdr), 0, 0, errp);
}

static int64_t ch_get_size(void *h, GError **errp)
{
    (void)errp;
    struct children *c = h;
    return (int64_t)(c->part_size * CH_COUNT);
}

/* Splits [offset, offset+len) over the parts (the core checked the range). */
static int ch_io(struct children *c, void *buf, const void *wbuf, uint64_t len,
                 uint64_t offset, GError **errp)
{
    while (len) {
        unsigned i = (unsigned)(offset / c->part_size);
        uint64_t in = offset % c->part_size;
        uint64_t n = MIN(len, c->part_size - in);
        int r = wbuf ? diskimg_node_pwrite(c->part[i], wbuf, n, in, 0, errp)
                     : diskimg_node_pread(c->part[i], buf, n, in, errp);
        if (r < 0)
            return -1;
        if (wbuf)
            wbuf = (const uint8_t *)wbuf + n;
        else
            buf = (uint8_t *)buf + n;
        offset += n;
        len -= n;
    }
    return 0;
}

static int ch_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    return ch_io(h, buf, NULL, len, offset, errp);
}

static int ch_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                    GError **errp)
{
    (void)flags;
    return ch_io(h, NULL, buf, len, offset, errp);
}

static uint64_t ch_image_capabilities(void *h, uint64_t defaults)
{
    struct children *c = h;
    return c->read_only_image ? defaults | DISKIMG_CAP_READ_ONLY : defaults;
}

static const struct diskimg_format_ops ch_ops = {
    .struct_size = sizeof(ch_ops),
    .probe = ch_probe,
    .open = ch_open,
    .close = ch_close,
    .create = ch_create,
    .get_size = ch_get_size,
    .read = ch_read,
    .write = ch_write,
    .image_capabilities = ch_image_capabilities,
};

static const struct diskimg_plugin ch_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(ch_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_ALL,
    .name = "children",
    .version = "1",
    .summary = "test format with three child files",
    .schema = children_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT,
    .ops = &ch_ops,
};

DISKIMG_PLUGIN_DEFINE(ch_plugin)
