/* SPDX-License-Identifier: MIT */
/*
 * test-images.h — helpers for the image tests of the qcow and qed
 * plugins: images created and opened through libdiskimg, a guest model
 * to compare with, and qemu-img / qemu-io runs for the interop checks
 * (skipped where qemu is not installed).  Test code only.
 */
#ifndef DISKIMG_TEST_IMAGES_H
#define DISKIMG_TEST_IMAGES_H

#include <string.h>
#include <sys/wait.h>

#include <diskimg/core.h>

#include "test-tmpdir.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static diskimg_options *timg_options(const char *format, const char *set, const char *text)
{
    const diskimg_schema *schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    diskimg_options *o;
    GError *err = NULL;

    g_assert_nonnull(schema);
    o = diskimg_options_new(schema, set);
    if (text) {
        g_assert_cmpint(diskimg_options_parse(o, text, &err), ==, 0);
        g_assert_no_error(err);
    }
    return o;
}

/* Creates an image of `format`; returns 0 or -1 with *errp set. */
static int timg_try_create(const char *format, const char *path, uint64_t size,
                           const char *options, GError **errp)
{
    diskimg_options *o = timg_options(format, "create-options", options);
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = format, .options = o, .size = size,
    };
    int ret = diskimg_create(path, &p, errp);

    diskimg_options_free(o);
    return ret;
}

static void timg_create(const char *format, const char *path, uint64_t size,
                        const char *options)
{
    GError *err = NULL;

    g_assert_cmpint(timg_try_create(format, path, size, options, &err), ==, 0);
    g_assert_no_error(err);
}

static diskimg_node *timg_try_open(const char *format, const char *path, unsigned flags,
                                   const char *options, GError **errp)
{
    diskimg_options *o = options ? timg_options(format, "open-options", options) : NULL;
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = format, .flags = flags, .format_options = o,
    };
    diskimg_node *n = diskimg_open(path, &p, errp);

    diskimg_options_free(o);
    return n;
}

static diskimg_node *timg_open(const char *format, const char *path, unsigned flags,
                               const char *options)
{
    GError *err = NULL;
    diskimg_node *n = timg_try_open(format, path, flags, options, &err);

    g_assert_no_error(err);
    g_assert_nonnull(n);
    return n;
}

/* Fills len bytes with a pattern that differs per offset and seed. */
static void timg_pattern(uint8_t *buf, uint64_t len, uint64_t offset, unsigned seed)
{
    for (uint64_t i = 0; i < len; i++) {
        uint64_t x = (offset + i) * 2654435761u + seed;

        buf[i] = (uint8_t)(x >> 13);
    }
}

/* Writes the pattern into the node and the model. */
static void timg_write(diskimg_node *n, uint8_t *model, uint64_t offset, uint64_t len,
                       unsigned seed)
{
    uint8_t *buf = g_malloc(len);
    GError *err = NULL;

    timg_pattern(buf, len, offset, seed);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, len, offset, 0, &err), ==, 0);
    g_assert_no_error(err);
    memcpy(model + offset, buf, len);
    g_free(buf);
}

/* The whole guest view equals the model. */
static void timg_expect(diskimg_node *n, const uint8_t *model, uint64_t size)
{
    uint8_t *buf = g_malloc(size);
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_size(n, &err), ==, (int64_t)size);
    g_assert_cmpint(diskimg_node_pread(n, buf, size, 0, &err), ==, 0);
    g_assert_no_error(err);
    for (uint64_t i = 0; i < size; i++)
        if (buf[i] != model[i])
            g_error("byte %" PRIu64 " is %#x, expected %#x", i, buf[i], model[i]);
    g_free(buf);
}

static void timg_save_raw(const char *path, const uint8_t *model, uint64_t size)
{
    GError *err = NULL;

    g_assert_true(g_file_set_contents(path, (const char *)model, (gssize)size, &err));
    g_assert_no_error(err);
}

/* ------------------------------------------------------------- qemu tools */

static bool timg_have_qemu(void)
{
    g_autofree char *img = g_find_program_in_path("qemu-img");
    g_autofree char *io = g_find_program_in_path("qemu-io");

    return img && io;
}

/* Runs a command (NULL-terminated argv); returns its exit status, its
 * standard output in *out when out is not NULL. */
static int timg_run(char **out, const char *const *argv)
{
    g_autofree char *err = NULL;
    GError *e = NULL;
    int status = 0;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                               out, &err, &status, &e));
    g_assert_no_error(e);
    if (!WIFEXITED(status))
        g_error("%s died", argv[0]);
    if (WEXITSTATUS(status) != 0 && g_test_verbose())
        g_printerr("%s: %s", argv[0], err);
    return WEXITSTATUS(status);
}

#define TIMG_RUN(out, ...) timg_run(out, (const char *const[]){ __VA_ARGS__, NULL })

/* qemu-img compare of an image with a raw file: identical. */
static void timg_qemu_compare(const char *format, const char *image, const char *raw)
{
    g_assert_cmpint(TIMG_RUN(NULL, "qemu-img", "compare", "-q", "-f", format, "-F", "raw",
                             image, raw), ==, 0);
}

/* Bytes qemu-img map reports as data of the top layer. */
static uint64_t timg_qemu_data_bytes(const char *format, const char *image)
{
    g_autofree char *out = NULL;
    uint64_t total = 0;
    char **lines;

    g_assert_cmpint(TIMG_RUN(&out, "qemu-img", "map", "--output=json", "-f", format, image),
                    ==, 0);
    lines = g_strsplit(out, "\n", -1);
    for (char **l = lines; *l; l++) {
        const char *len = strstr(*l, "\"length\": ");
        if (len && strstr(*l, "\"data\": true") && strstr(*l, "\"depth\": 0"))
            total += g_ascii_strtoull(len + 10, NULL, 10);
    }
    g_strfreev(lines);
    return total;
}

/* A failure whose one-line message contains every needle. */
static void timg_expect_error(GError *err, const char *needle, const char *needle2)
{
    g_assert_nonnull(err);
    if (!strstr(err->message, needle) || (needle2 && !strstr(err->message, needle2)))
        g_error("expected '%s' and '%s' in '%s'", needle, needle2 ? needle2 : "",
                err->message);
    g_assert_null(strchr(err->message, '\n'));
}

#endif
