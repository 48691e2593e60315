/* SPDX-License-Identifier: MIT */
/*
 * test-image-read.h — helpers for the unit tests of image readers (the
 * read-only formats and any format's read path), on top of libdiskimg:
 *
 *   test_open(path, fmt, flags, &err)     diskimg_open, format forced
 *   test_read_all(node, &len)             the whole guest view (g_free)
 *   test_expect_open_error(path, fmt, substring)
 *                                         the open fails with a one-line
 *                                         message naming the file and
 *                                         holding `substring`
 *   test_expect_read_error(path, fmt, substring)
 *                                         the open succeeds, reading the
 *                                         image fails so
 *   test_qemu_convert(fmt, path, &len)    qemu-img's guest view of the
 *                                         image (NULL when qemu-img is
 *                                         not installed)
 *   test_write_bytes(path, data, len)
 *
 * Include after <diskimg/core.h> and test-tmpdir.h.
 */
#ifndef DISKIMG_TEST_IMAGE_READ_H
#define DISKIMG_TEST_IMAGE_READ_H

#include <string.h>

#include <diskimg/core.h>

static inline void test_write_bytes(const char *path, const void *data, size_t len)
{
    GError *err = NULL;

    g_assert_true(g_file_set_contents(path, data, (gssize)len, &err));
    g_assert_no_error(err);
}

static inline diskimg_node *test_open(const char *path, const char *fmt, unsigned flags,
                                      GError **errp)
{
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = fmt, .flags = flags,
    };

    return diskimg_open(path, &p, errp);
}

/* Reads the whole image in requests of `step` bytes (exercising requests
 * that straddle the format's blocks); returns NULL with *errp set. */
static inline uint8_t *test_read_all_step(diskimg_node *n, size_t step, size_t *len,
                                          GError **errp)
{
    int64_t size = diskimg_node_size(n, errp);
    uint8_t *buf;

    if (size < 0)
        return NULL;
    buf = g_malloc((size_t)size + 1);
    for (uint64_t off = 0; off < (uint64_t)size; off += step) {
        uint64_t n_bytes = MIN((uint64_t)step, (uint64_t)size - off);

        if (diskimg_node_pread(n, buf + off, n_bytes, off, errp) < 0) {
            g_free(buf);
            return NULL;
        }
    }
    *len = (size_t)size;
    return buf;
}

static inline uint8_t *test_read_all(diskimg_node *n, size_t *len)
{
    GError *err = NULL;
    uint8_t *buf = test_read_all_step(n, 1u << 20, len, &err);

    g_assert_no_error(err);
    return buf;
}

/* The message is one line, names the file and says what is wrong. */
static inline void test_assert_message(const GError *err, const char *path, const char *substring)
{
    g_autofree char *base = g_path_get_basename(path);

    g_assert_nonnull(err);
    if (!strstr(err->message, base) || !strstr(err->message, substring) ||
        strchr(err->message, '\n'))
        g_error("unexpected message \"%s\" (wanted one line naming %s and holding \"%s\")",
                err->message, base, substring);
}

static inline void test_expect_open_error(const char *path, const char *fmt,
                                          const char *substring)
{
    GError *err = NULL;
    diskimg_node *n = test_open(path, fmt, 0, &err);

    if (n)
        g_error("%s opened although it is damaged (expected \"%s\")", path, substring);
    test_assert_message(err, path, substring);
    g_error_free(err);
}

static inline void test_expect_read_error(const char *path, const char *fmt,
                                          const char *substring)
{
    GError *err = NULL;
    diskimg_node *n = test_open(path, fmt, 0, &err);
    size_t len;
    uint8_t *buf;

    g_assert_no_error(err);
    g_assert_nonnull(n);
    buf = test_read_all_step(n, 1u << 20, &len, &err);
    if (buf)
        g_error("%s read completely although it is damaged (expected \"%s\")", path, substring);
    test_assert_message(err, path, substring);
    g_error_free(err);
    diskimg_close(n);
}

/* qemu-img's guest view of an image, NULL when qemu-img is missing. */
static inline uint8_t *test_qemu_convert(const char *fmt, const char *path, size_t *len)
{
    g_autofree char *qemu = g_find_program_in_path("qemu-img");
    g_autofree char *out = g_strconcat(path, ".qemu.raw", NULL);
    g_autofree char *err_text = NULL;
    const char *argv[] = { qemu, "convert", "-f", fmt, "-O", "raw", path, out, NULL };
    GError *err = NULL;
    gchar *contents = NULL;
    gsize n = 0;
    int status = 0;

    if (!qemu)
        return NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                               NULL, NULL, &err_text, &status, &err));
    g_assert_no_error(err);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("qemu-img convert of %s failed: %s", path, err_text);
    g_assert_true(g_file_get_contents(out, &contents, &n, &err));
    g_assert_no_error(err);
    g_unlink(out);
    *len = n;
    return (uint8_t *)contents;
}

#endif
