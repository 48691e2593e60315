/* SPDX-License-Identifier: MIT */
/*
 * Deliberately broken or minimal plugins for the loader tests.  One source,
 * several builds: FAKE_VARIANT selects what is wrong with the descriptor.
 *   1 = good (a minimal read-only format "fake")
 *   2 = built for a newer ABI
 *   3 = schema with a syntax error
 *   4 = an io plugin (installed among format plugins by the test)
 *   5 = schema names another plugin
 *   6 = ops struct_size ends inside `close` (a callback cut in half)
 *   7 = ops struct_size too small to hold any callback
 *   8 = built for ABI 1 (before struct_size led every filled struct)
 */
#include <stddef.h>
#include <string.h>
#include <diskimg/plugin.h>

#ifndef FAKE_VARIANT
#error FAKE_VARIANT must be defined
#endif

struct fake { diskimg_node *file; };

static void *fake_open(const struct diskimg_format_open_args *a, GError **errp)
{
    struct fake *f = g_new0(struct fake, 1);
    f->file = a->file;
    return f;
}

static void fake_close(void *h) { g_free(h); }

static int64_t fake_size(void *h, GError **errp)
{
    struct fake *f = h;
    return diskimg_node_size(f->file, errp);
}

static int fake_read(void *h, void *buf, uint64_t len, uint64_t off, GError **errp)
{
    struct fake *f = h;
    return diskimg_node_pread(f->file, buf, len, off, errp);
}

#if FAKE_VARIANT == 6
#define FAKE_OPS_SIZE (offsetof(struct diskimg_format_ops, close) + 4)
#elif FAKE_VARIANT == 7
#define FAKE_OPS_SIZE 12
#else
#define FAKE_OPS_SIZE sizeof(struct diskimg_format_ops)
#endif

static const struct diskimg_format_ops fake_format_ops = {
    .struct_size = FAKE_OPS_SIZE,
    .open = fake_open,
    .close = fake_close,
    .get_size = fake_size,
    .read = fake_read,
};

#if FAKE_VARIANT == 3
#define FAKE_SCHEMA "plugin: fake\nkind: format\nsummary: [unclosed\n"
#elif FAKE_VARIANT == 4
#define FAKE_SCHEMA "plugin: fake\nkind: io\nsummary: an io plugin\n"
#elif FAKE_VARIANT == 5
#define FAKE_SCHEMA "plugin: other\nkind: format\nsummary: wrong name\n"
#else
#define FAKE_SCHEMA "plugin: fake\nkind: format\nsummary: minimal read-only test format\n"
#endif

static const struct diskimg_plugin fake_plugin = {
    .abi_version = FAKE_VARIANT == 2 ? 99 : FAKE_VARIANT == 8 ? 1 : DISKIMG_ABI_VERSION,
    .struct_size = sizeof(fake_plugin),
    .kind = FAKE_VARIANT == 4 ? DISKIMG_KIND_IO : DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_SERIALIZE_ALL,
    .name = "fake",
    .version = "1",
    .summary = "minimal read-only test format",
    .schema = FAKE_SCHEMA,
    .capabilities = DISKIMG_CAP_READ_ONLY,
    .ops = &fake_format_ops,
};

DISKIMG_PLUGIN_DEFINE(fake_plugin)
