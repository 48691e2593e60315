/* SPDX-License-Identifier: MIT */
/*
 * test-posix.c — what only the posix I/O plugin does: its options (aio,
 * which it serves from its thread pool under qemu's rules, and the
 * create-time nocow and extent_size_hint).  Everything every io plugin
 * must do is checked by tests/io-contract, run on posix as
 * io-contract-posix.
 *
 *     test-posix POSIX_MODULE
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "io-test.h"

static void test_thread_model(void)
{
    g_assert_cmpuint(io_plugin.desc->thread_model, ==, DISKIMG_THREAD_PARALLEL);
}

static void assert_keys(diskimg_schema *schema, const char *set, const char *const *expect)
{
    char **keys = diskimg_schema_set_keys(schema, set);

    g_assert_cmpuint(g_strv_length(keys), ==, g_strv_length((char **)expect));
    for (size_t i = 0; expect[i]; i++)
        g_assert_cmpstr(keys[i], ==, expect[i]);
    g_strfreev(keys);
}

static void test_schema(void)
{
    static const char *const open_keys[] = { "aio", "locking", NULL };
    static const char *const create_keys[] = { "nocow", "extent_size_hint", "preallocation", NULL };
    diskimg_schema *schema = io_schema();

    assert_keys(schema, "open-options", open_keys);
    assert_keys(schema, "create-options", create_keys);
    diskimg_schema_free(schema);
}

/* aio=native needs O_DIRECT, as in qemu; with it, it is served. */
static void test_aio_native(void)
{
    char *path = io_tmp_path("aio.img");
    GError *err = NULL;
    void *h;

    g_assert_null(io_open_opts(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                               DISKIMG_CACHE_WRITEBACK, "aio=native", &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "aio=native was specified, but it requires "
                    "cache.direct=on, which was not specified.");
    g_clear_error(&err);
    h = io_open_opts(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, DISKIMG_CACHE_NONE,
                     "aio=native", &err);
    if (!h && g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED))
        g_test_skip(err->message);
    else
        g_assert_no_error(err);
    g_clear_error(&err);
    if (h)
        ops->close(h);
    g_free(path);
}

/* Opens `name` for creation with create-options `text`. */
static void *create_with(const char *name, const char *text, GError **errp)
{
    diskimg_schema *schema = io_schema();
    diskimg_options *o = diskimg_options_new(schema, "create-options");
    char *path = io_tmp_path(name);
    void *h;

    g_assert_cmpint(diskimg_options_parse(o, text, NULL), ==, 0);
    h = io_open_with(ops, path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE,
                     DISKIMG_CACHE_WRITEBACK, o, errp);
    diskimg_options_free(o);
    diskimg_schema_free(schema);
    g_free(path);
    return h;
}

/* nocow and the extent size hint are best effort (qemu ignores or warns
 * about failures), but a hint beyond 32 bits is an error. */
static void test_create_options(void)
{
    GError *err = NULL;
    void *h = create_with("nocow.img", "nocow=on,extent_size_hint=256k", &err);

    g_assert_no_error(err);
    g_assert_nonnull(h);
    ops->close(h);
    g_assert_null(create_with("hint.img", "extent_size_hint=8G", &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "Extent size hint is too large");
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    io_test_init(&argc, &argv, "diskimg-posix");
    io_test_add("thread-model", test_thread_model, true);
    io_test_add("schema", test_schema, true);
    io_test_add("aio-native", test_aio_native, false);
    io_test_add("create-options", test_create_options, false);
    return io_test_run();
}
