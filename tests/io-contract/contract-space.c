/* SPDX-License-Identifier: MIT */
/*
 * contract-space.c — allocation: block status (SEEK_DATA/SEEK_HOLE),
 * punching holes, qemu's zeroing ladder, truncate with preallocation,
 * fallocate and copy offload.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <string.h>
#include <sys/stat.h>

#include "contract.h"

static void test_block_status(void)
{
    void *h = create_ok("status.img", NULL);
    uint8_t *data = g_malloc(64 * KiB);

    fill_pattern(data, 64 * KiB, 5);
    write_ok(h, data, 64 * KiB, 0);
    truncate_ok(h, 4 * MiB, DISKIMG_PREALLOC_OFF, 0);
    write_ok(h, data, 64 * KiB, 1 * MiB);

    assert_status(h, 0, 4 * MiB, DISKIMG_BS_DATA, 64 * KiB);
    assert_status(h, 0, 4096, DISKIMG_BS_DATA, 4096);              /* clipped to len */
    assert_status(h, 64 * KiB, 4 * MiB, DISKIMG_BS_ZERO, 1 * MiB - 64 * KiB);
    assert_status(h, 100 * KiB, 4096, DISKIMG_BS_ZERO, 4096);
    assert_status(h, 1 * MiB, 4 * MiB, DISKIMG_BS_DATA, 64 * KiB);
    /* Trailing hole: zero up to EOF, clipped there. */
    assert_status(h, 1 * MiB + 64 * KiB, 8 * MiB, DISKIMG_BS_ZERO, 3 * MiB - 64 * KiB);
    /* Past EOF: zeroes for the whole asked range. */
    assert_status(h, 5 * MiB, 12345, DISKIMG_BS_ZERO, 12345);
    ops->close(h);
    g_free(data);
}

static void test_punch_hole(void)
{
    void *h = create_ok("punch.img", NULL);
    uint8_t *data = g_malloc(1 * MiB);
    int64_t before;
    GError *err = NULL;

    fill_pattern(data, 1 * MiB, 6);
    write_ok(h, data, 1 * MiB, 0);
    g_assert_cmpint(ops->flush(h, &err), ==, 0);
    before = allocated_of(h);
    g_assert_cmpint(before, >=, 1 * MiB);

    g_assert_cmpint(ops->punch_hole(h, 256 * KiB, 512 * KiB, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(size_of(h), ==, 1 * MiB);
    g_assert_cmpint(allocated_of(h), <=, before - 512 * KiB);
    assert_status(h, 256 * KiB, 1 * MiB, DISKIMG_BS_ZERO, 512 * KiB);
    assert_status(h, 768 * KiB, 1 * MiB, DISKIMG_BS_DATA, 256 * KiB);
    read_ok(h, data, 1 * MiB, 0);
    assert_zero(data + 256 * KiB, 512 * KiB);
    ops->close(h);
    g_free(data);
}

/* ---------------------------------------------------------------- zeroing */

static void zeroes_ok(void *h, uint64_t off, uint64_t len, unsigned flags)
{
    GError *err = NULL;

    g_assert_cmpint(ops->write_zeroes(h, off, len, flags, &err), ==, 0);
    g_assert_no_error(err);
}

/* The synchronous ladder over a 1 MiB pattern; ref mirrors it. */
static void zero_synchronously(void *h, uint8_t *ref)
{
    /* May unmap: a hole. */
    zeroes_ok(h, 0, 256 * KiB, DISKIMG_WRITE_MAY_UNMAP);
    assert_status(h, 0, 1 * MiB, DISKIMG_BS_ZERO, 256 * KiB);
    memset(ref, 0, 256 * KiB);
    /* Zeroing in place, with no fallback to writing buffers allowed. */
    zeroes_ok(h, 300 * KiB + 5, 100 * KiB, DISKIMG_WRITE_NO_FALLBACK);
    memset(ref + 300 * KiB + 5, 0, 100 * KiB);
    zeroes_ok(h, 500 * KiB + 3, 50 * KiB, DISKIMG_WRITE_NO_FALLBACK | DISKIMG_WRITE_FUA);
    memset(ref + 500 * KiB + 3, 0, 50 * KiB);
    /* Past EOF: the file grows, with or without unmapping. */
    zeroes_ok(h, 2 * MiB, 64 * KiB, DISKIMG_WRITE_MAY_UNMAP);
    g_assert_cmpint(size_of(h), ==, 2 * MiB + 64 * KiB);
    zeroes_ok(h, 3 * MiB, 64 * KiB, 0);
    g_assert_cmpint(size_of(h), ==, 3 * MiB + 64 * KiB);
}

/* The same requests through the batch path: plain, FUA, and MAY_UNMAP
 * past EOF (punch, then grow). */
static void zero_in_batch(void *h, uint8_t *ref)
{
    struct diskimg_io_request reqs[3] = {
        { .op = DISKIMG_IO_WRITE_ZEROES, .offset = 600 * KiB, .len = 8 * KiB, .result = 1 },
        { .op = DISKIMG_IO_WRITE_ZEROES, .offset = 700 * KiB, .len = 8 * KiB, .result = 1,
          .flags = DISKIMG_WRITE_FUA },
        { .op = DISKIMG_IO_WRITE_ZEROES, .offset = 4 * MiB, .len = 4 * KiB, .result = 1,
          .flags = DISKIMG_WRITE_MAY_UNMAP },
    };
    struct diskimg_io_request *ptrs[3] = { &reqs[0], &reqs[1], &reqs[2] }, *done[3];

    submit_ok(h, ptrs, 3);
    g_assert_cmpuint(reap_all(h, done, 3), ==, 3);
    for (unsigned i = 0; i < 3; i++)
        g_assert_cmpint(reqs[i].result, ==, 0);
    g_assert_cmpint(size_of(h), ==, 4 * MiB + 4 * KiB);
    memset(ref + 600 * KiB, 0, 8 * KiB);
    memset(ref + 700 * KiB, 0, 8 * KiB);
}

static void test_write_zeroes(void)
{
    void *h = create_ok("zeroes.img", NULL);
    uint8_t *data = g_malloc(1 * MiB), *ref = g_malloc(1 * MiB);

    fill_pattern(data, 1 * MiB, 7);
    memcpy(ref, data, 1 * MiB);
    write_ok(h, data, 1 * MiB, 0);
    zero_synchronously(h, ref);
    zero_in_batch(h, ref);
    read_ok(h, data, 1 * MiB, 0);
    g_assert_cmpmem(data, 1 * MiB, ref, 1 * MiB);   /* neighbours untouched */
    ops->close(h);
    g_free(data);
    g_free(ref);
}

/* --------------------------------------------------------------- truncate */

/* Shrinking needs DISKIMG_TRUNCATE_SHRINK, with qemu's message. */
static void check_shrink_refused(void *h, int64_t size)
{
    GError *err = NULL;

    g_assert_cmpint(ops->truncate(h, 4096, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "cannot shrink without DISKIMG_TRUNCATE_SHRINK");
    g_clear_error(&err);
    g_assert_cmpint(size_of(h), ==, size);
}

static void check_preallocation(void *h, const char *path)
{
    uint8_t *buf = g_malloc(3 * MiB);
    struct stat st;

    /* falloc: allocated but reading as zeroes. */
    truncate_ok(h, 4096 + 2 * MiB, DISKIMG_PREALLOC_FALLOC, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 4096 + 2 * MiB);
    g_assert_cmpint((int64_t)st.st_blocks * 512, >=, 4096 + 2 * MiB);
    /* full: written zeroes, reported as data. */
    truncate_ok(h, 4096 + 5 * MiB, DISKIMG_PREALLOC_FULL, 0);
    g_assert_cmpint(allocated_of(h), >=, 4096 + 5 * MiB);
    assert_status(h, 4096 + 2 * MiB, 3 * MiB, DISKIMG_BS_DATA, 3 * MiB);
    read_ok(h, buf, 3 * MiB, 4096 + 2 * MiB);
    assert_zero(buf, 3 * MiB);
    g_free(buf);
}

static void test_truncate(void)
{
    char *path;
    void *h = create_ok("trunc.img", &path);
    GError *err = NULL;

    /* Growing from empty allocates the first block, as qemu does. */
    truncate_ok(h, 1 * MiB, DISKIMG_PREALLOC_OFF, 0);
    g_assert_cmpint(size_of(h), ==, 1 * MiB);
    assert_status(h, 0, 1 * MiB, DISKIMG_BS_DATA, 4096);
    assert_status(h, 4096, 1 * MiB, DISKIMG_BS_ZERO, 1 * MiB - 4096);
    check_shrink_refused(h, 1 * MiB);
    truncate_ok(h, 4096, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK);
    g_assert_cmpint(size_of(h), ==, 4096);
    check_preallocation(h, path);
    /* allocate (fallocate) past EOF. */
    g_assert_cmpint(ops->allocate(h, 8 * MiB, 64 * KiB, &err), ==, 0);
    g_assert_no_error(err);
    /* Tiny images get a one-sector first block that does not grow them. */
    truncate_ok(h, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK);
    truncate_ok(h, 100, DISKIMG_PREALLOC_OFF, 0);
    g_assert_cmpint(size_of(h), ==, 100);
    assert_status(h, 0, 100, DISKIMG_BS_DATA, 100);
    ops->close(h);
    g_free(path);
}

/* ------------------------------------------------------------ copy offload */

static void test_copy_range(void)
{
    void *src = create_ok("copy-src.img", NULL);
    void *dst = create_ok("copy-dst.img", NULL);
    size_t len = 1 * MiB + 17;
    uint8_t *data = g_malloc(len), *back = g_malloc(len);
    GError *err = NULL;
    int64_t n;

    fill_pattern(data, len, 8);
    write_ok(src, data, len, 4096);
    n = ops->copy_range(src, 4096, dst, 100, len, &err);
    g_assert_no_error(err);
    if (n == 0) {
        g_test_skip("copy_file_range is not supported here");
    } else {
        g_assert_cmpint(n, ==, len);
        read_ok(dst, back, len, 100);
        g_assert_cmpmem(back, len, data, len);
        /* Copying from past the source's EOF copies nothing. */
        g_assert_cmpint(ops->copy_range(src, 100 * MiB, dst, 0, 4096, &err), ==, 0);
        g_assert_no_error(err);
    }
    ops->close(src);
    ops->close(dst);
    g_free(data);
    g_free(back);
}

void contract_add_space_tests(void)
{
    io_test_add("block-status", test_block_status, false);
    io_test_add("punch-hole", test_punch_hole, false);
    io_test_add("write-zeroes", test_write_zeroes, false);
    io_test_add("truncate", test_truncate, false);
    io_test_add("copy-range", test_copy_range, false);
}
