/* SPDX-License-Identifier: MIT */
/*
 * test-images.h — helpers for the unit tests of the flat-map formats (vdi
 * and parallels): images made, written and read through libdiskimg, a
 * byte model to compare against, and qemu-img/qemu-io runs where they are
 * installed.  Format-neutral: the format name is a parameter.
 */
#ifndef DISKIMG_TEST_IMAGES_H
#define DISKIMG_TEST_IMAGES_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
/* Bytes qemu-img map --output=json reports as data for the image: holes
 * must stay holes through our writes. */
static inline uint64_t ti_qemu_data_bytes(const char *format, const char *path)
{
    const char *argv[] = { "qemu-img", "map", "--output=json", "-f", format, path, NULL };
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    uint64_t bytes = 0;

    g_assert_cmpint(ti_run(argv, &out), ==, 0);
    g_assert_true(json_parser_load_from_data(parser, out, -1, NULL));
    JsonArray *runs = json_node_get_array(json_parser_get_root(parser));
    for (guint i = 0; i < json_array_get_length(runs); i++) {
        JsonObject *run = json_array_get_object_element(runs, i);
        if (json_object_get_boolean_member(run, "data"))
            bytes += (uint64_t)json_object_get_int_member(run, "length");
    }
    return bytes;
}

#endif

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/core.h>

#include "test-tmpdir.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static inline void ti_create(const char *format, const char *path, uint64_t size, const char *opts)
{
    const diskimg_schema *schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    diskimg_options *o = diskimg_options_new(schema, "create-options");
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = format, .options = o, .size = size,
    };
    GError *err = NULL;

    if (opts) {
        g_assert_cmpint(diskimg_options_parse(o, opts, &err), ==, 0);
        g_assert_no_error(err);
    }
    g_assert_cmpint(diskimg_create(path, &p, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_options_free(o);
}

/* Opens with an explicit format; NULL with *errp set on failure. */
static diskimg_node *ti_try_open(const char *format, const char *path, unsigned flags,
                                 GError **errp)
{
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = format, .flags = flags,
    };
    return diskimg_open(path, &p, errp);
}

static diskimg_node *ti_open(const char *format, const char *path, unsigned flags)
{
    GError *err = NULL;
    diskimg_node *n = ti_try_open(format, path, flags, &err);

    g_assert_no_error(err);
    g_assert_nonnull(n);
    return n;
}

/* The open must fail with `code` and a one-line message holding the file
 * name and every string of `needles` (NULL-terminated). */
static inline void ti_open_fails(const char *format, const char *path, unsigned flags, int code,
                          const char *const *needles)
{
    GError *err = NULL;
    diskimg_node *n = ti_try_open(format, path, flags, &err);

    g_assert_null(n);
    g_assert_nonnull(err);
    if (g_test_verbose())
        g_printerr("%s\n", err->message);
    g_assert_error(err, DISKIMG_ERROR, code);
    g_assert_nonnull(strstr(err->message, path));
    g_assert_null(strchr(err->message, '\n'));
    for (; needles && *needles; needles++)
        if (!strstr(err->message, *needles))
            g_error("'%s' not in '%s'", *needles, err->message);
    g_error_free(err);
}

static inline void ti_write(diskimg_node *n, const void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_pwrite(n, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

static inline void ti_zero(diskimg_node *n, uint64_t off, uint64_t len)
{
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_write_zeroes(n, off, len, 0, &err), ==, 0);
    g_assert_no_error(err);
}

/* The whole image equals `model`. */
static inline void ti_assert_reads(diskimg_node *n, const uint8_t *model, uint64_t size)
{
    GError *err = NULL;
    uint8_t *got = g_malloc(size);

    g_assert_cmpint(diskimg_node_size(n, &err), ==, (int64_t)size);
    g_assert_cmpint(diskimg_node_pread(n, got, size, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(memcmp(got, model, size) == 0);
    g_free(got);
}

static inline void ti_fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 7 + seed * 31) % 251 + 1);
}

static inline uint64_t ti_file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (uint64_t)st.st_size;
}

static inline void ti_write_file(const char *path, const void *data, size_t len)
{
    GError *err = NULL;

    g_assert_true(g_file_set_contents(path, data, (gssize)len, &err));
    g_assert_no_error(err);
}

static uint8_t *ti_read_file(const char *path, size_t *len)
{
    gchar *data = NULL;
    gsize n = 0;

    g_assert_true(g_file_get_contents(path, &data, &n, NULL));
    *len = n;
    return (uint8_t *)data;
}

/* Patches `len` bytes at `off` of a file. */
static inline void ti_patch(const char *path, uint64_t off, const void *bytes, size_t len)
{
    size_t n;
    uint8_t *data = ti_read_file(path, &n);

    g_assert_cmpuint(off + len, <=, n);
    memcpy(data + off, bytes, len);
    ti_write_file(path, data, n);
    g_free(data);
}

static inline void ti_patch_le32(const char *path, uint64_t off, uint32_t v)
{
    uint8_t b[4];

    diskimg_put_le32(b, v);
    ti_patch(path, off, b, sizeof(b));
}

/* True when qemu-img and qemu-io are installed (the interop tests skip
 * otherwise). */
static inline bool ti_have_qemu(void)
{
    g_autofree char *img = g_find_program_in_path("qemu-img");
    g_autofree char *io = g_find_program_in_path("qemu-io");

    if (!img || !io)
        g_test_skip("qemu-img or qemu-io is not installed");
    return img && io;
}

/* Runs argv; returns its exit status, stdout in *out (g_free) if wanted. */
static inline int ti_run(const char *const *argv, char **out)
{
    int status;
    g_autofree char *err = NULL;
    GError *gerr = NULL;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_SEARCH_PATH | (out ? 0 : G_SPAWN_STDOUT_TO_DEV_NULL),
                               NULL, NULL, out,
                               &err, &status, &gerr));
    g_assert_no_error(gerr);
    if (g_test_verbose() && err && *err)
        g_printerr("%s: %s", argv[0], err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* qemu-img reads the image as the model says, and its check is clean. */
static inline void ti_qemu_agrees(const char *format, const char *path, const uint8_t *model,
                           uint64_t size)
{
    g_autofree char *raw = g_strdup_printf("%s.model", path);
    ti_write_file(raw, model, size);
    const char *cmp[] = { "qemu-img", "compare", "-f", format, "-F", "raw", path, raw, NULL };
    const char *check[] = { "qemu-img", "check", "-f", format, path, NULL };

    g_assert_cmpint(ti_run(cmp, NULL), ==, 0);
    g_assert_cmpint(ti_run(check, NULL), ==, 0);
    unlink(raw);
}

/* Bytes qemu-img map --output=json reports as data for the image: holes
 * must stay holes through our writes. */
static inline uint64_t ti_qemu_data_bytes(const char *format, const char *path)
{
    const char *argv[] = { "qemu-img", "map", "--output=json", "-f", format, path, NULL };
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    uint64_t bytes = 0;

    g_assert_cmpint(ti_run(argv, &out), ==, 0);
    g_assert_true(json_parser_load_from_data(parser, out, -1, NULL));
    JsonArray *runs = json_node_get_array(json_parser_get_root(parser));
    for (guint i = 0; i < json_array_get_length(runs); i++) {
        JsonObject *run = json_array_get_object_element(runs, i);
        if (json_object_get_boolean_member(run, "data"))
            bytes += (uint64_t)json_object_get_int_member(run, "length");
    }
    return bytes;
}

#endif
