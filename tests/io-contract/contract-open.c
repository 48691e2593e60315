/* SPDX-License-Identifier: MIT */
/*
 * contract-open.c — opening: qemu's error texts, files that are not
 * regular files, empty and read-only files, removal.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "contract.h"

/* Opening path fails with `code` (0: any) and exactly the message fmt. */
G_GNUC_PRINTF(4, 5)
static void expect_open_error(const char *path, unsigned flags, int code, const char *fmt, ...)
{
    GError *err = NULL;
    va_list ap;
    char *expect;

    va_start(ap, fmt);
    expect = g_strdup_vprintf(fmt, ap);
    va_end(ap);

    g_assert_null(io_open(path, flags, DISKIMG_CACHE_WRITEBACK, &err));
    if (code)
        g_assert_error(err, DISKIMG_ERROR, code);
    g_assert_nonnull(err);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);
}

static void test_open_errors(void)
{
    char *missing = io_tmp_path("missing.img");
    char *nodir = io_tmp_path("no/such/dir.img");

    expect_open_error(missing, 0, DISKIMG_ERROR_NOT_FOUND,
                      "Could not open '%s': No such file or directory", missing);
    expect_open_error(nodir, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, 0,
                      "Could not create '%s': No such file or directory", nodir);
    /* A directory: read-only opens get qemu's driver message, read-write
     * ones the errno of open(2), as with qemu-img. */
    expect_open_error(io_tmpdir(), 0, 0, "'file' driver requires '%s' to be a regular file",
                      io_tmpdir());
    expect_open_error(io_tmpdir(), DISKIMG_OPEN_RDWR, 0, "Could not open '%s': Is a directory",
                      io_tmpdir());
    g_free(missing);
    g_free(nodir);
}

/* A FIFO is refused in every mode, without waiting for a peer. */
static void test_fifo(void)
{
    const unsigned modes[] = {
        0, DISKIMG_OPEN_RDWR, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_TRUNCATE,
    };
    char *path = io_tmp_path("fifo");

    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    io_watchdog_start("opening a FIFO", 5);
    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++)
        expect_open_error(path, modes[i], DISKIMG_ERROR_INVALID,
                          "'file' driver requires '%s' to be a regular file", path);
    io_watchdog_stop();
    unlink(path);
    g_free(path);
}

/* Character devices: size 0, reads are zeroes, writes vanish, flush is fine. */
static void test_char_device(void)
{
    void *h = open_ok("/dev/null", 0);
    uint8_t buf[4096];
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;

    g_assert_cmpint(size_of(h), ==, 0);
    memset(buf, 0xaa, sizeof(buf));
    read_ok(h, buf, sizeof(buf), 0);
    assert_zero(buf, sizeof(buf));
    ext = status_of(h, 0, 4096);
    g_assert_cmphex(ext.flags & DISKIMG_BS_ZERO, ==, DISKIMG_BS_ZERO);
    ops->close(h);

    h = open_ok("/dev/null", DISKIMG_OPEN_RDWR);
    memset(buf, 0xaa, sizeof(buf));
    write_ok(h, buf, sizeof(buf), 0);
    read_ok(h, buf, sizeof(buf), 0);
    assert_zero(buf, sizeof(buf));
    g_assert_cmpint(ops->flush(h, &err), ==, 0);
    g_assert_no_error(err);
    ops->close(h);
}

static void test_empty_file(void)
{
    void *h = create_ok("empty.img", NULL);
    uint8_t buf[512];

    g_assert_cmpint(size_of(h), ==, 0);
    g_assert_cmpint(allocated_of(h), ==, 0);
    memset(buf, 0x55, sizeof(buf));
    read_ok(h, buf, sizeof(buf), 1000);
    assert_zero(buf, sizeof(buf));
    assert_status(h, 0, 512, DISKIMG_BS_ZERO, 512);
    ops->close(h);
}

/* Read-only handles refuse writes and resizes, and are buffered. */
static void test_read_only(void)
{
    char *path;
    void *h = create_ok("ro.img", &path);
    uint8_t buf[512] = { 1 };
    GError *err = NULL;

    write_ok(h, buf, sizeof(buf), 0);
    ops->close(h);
    h = open_ok(path, 0);
    g_assert_cmpint(ops->pwrite(h, buf, sizeof(buf), 0, 0, &err), ==, -1);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_cmpint(ops->truncate(h, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK, &err),
                    ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_clear_error(&err);
    g_assert_cmpint(ops->alignment(h), ==, 1);
    ops->close(h);
    g_free(path);
}

/* remove (failed-create cleanup) deletes, and a missing file is fine. */
static void test_remove(void)
{
    char *path;
    void *h = create_ok("remove.img", &path);
    GError *err = NULL;

    ops->close(h);
    g_assert_cmpint(ops->remove(path, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(ops->remove(path, &err), ==, 0);
    g_assert_no_error(err);
    g_free(path);
}

void contract_add_open_tests(void)
{
    io_test_add("open-errors", test_open_errors, false);
    io_test_add("fifo", test_fifo, false);
    io_test_add("char-device", test_char_device, false);
    io_test_add("empty-file", test_empty_file, false);
    io_test_add("read-only", test_read_only, false);
    io_test_add("remove", test_remove, false);
}
