/* SPDX-License-Identifier: MIT */
/*
 * contract-data.c — the synchronous data path: whole-length transfers,
 * zeroes past EOF, short transfers continued, O_DIRECT with unaligned
 * requests (bounced, read-modify-write under the write exclusion), FUA
 * and flushes in every cache mode.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include "contract.h"

/* Around EOF: data then zeroes, zeroes wholly past it, and the file
 * never grows from reading. */
static void check_reads_around_eof(void *h, const uint8_t *data, size_t len, uint64_t off)
{
    uint8_t *back = g_malloc(len + 1000);

    read_ok(h, back, len, off);
    g_assert_cmpmem(back, len, data, len);
    memset(back, 0xee, len + 1000);
    read_ok(h, back, len + 1000, off);
    g_assert_cmpmem(back, len, data, len);
    assert_zero(back + len, 1000);
    memset(back, 0xee, 4096);
    read_ok(h, back, 4096, 10 * MiB);
    assert_zero(back, 4096);
    g_assert_cmpint(size_of(h), ==, off + len);
    read_ok(h, back, off, 0);          /* the hole before the data */
    assert_zero(back, off);
    g_free(back);
}

static void test_read_write(void)
{
    void *h = create_ok("rw.img", NULL);
    size_t len = 300 * KiB + 7;
    uint8_t *data = g_malloc(len), back[512];
    GError *err = NULL;

    fill_pattern(data, len, 1);
    write_ok(h, data, len, 12345);
    g_assert_cmpint(size_of(h), ==, 12345 + len);
    check_reads_around_eof(h, data, len, 12345);

    /* FUA writes and flushes succeed. */
    g_assert_cmpint(ops->pwrite(h, data, 512, 0, DISKIMG_WRITE_FUA, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(ops->flush(h, &err), ==, 0);
    g_assert_no_error(err);
    read_ok(h, back, 512, 0);
    g_assert_cmpmem(back, 512, data, 512);

    /* Out-of-range offsets are refused, not wrapped. */
    g_assert_cmpint(ops->pread(h, back, 16, UINT64_MAX - 8, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    ops->close(h);
    g_free(data);
}

/* ------------------------------------------------------- short transfers */

enum { SHORT_LIMIT = 64 * 1024 + 100, SHORT_LEN = 256 * 1024 };

/* One request through the batch path; returns its result. */
static int batch_one(void *h, uint32_t op, void *buf, uint64_t len)
{
    struct diskimg_io_request req = { .op = op, .buf = buf, .len = len, .result = 1 };
    struct diskimg_io_request *p = &req;
    GError *err = NULL;

    submit_ok(h, &p, 1);
    g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
    g_assert_no_error(err);
    return req.result;
}

/* Runs in a subprocess whose files may not grow past SHORT_LIMIT. */
static void short_io_child(void)
{
    struct rlimit rl = { SHORT_LIMIT, SHORT_LIMIT };
    uint8_t *data = g_malloc(SHORT_LEN), *back = g_malloc(SHORT_LEN);
    void *h;
    GError *err = NULL;

    signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &rl), ==, 0);
    h = create_ok("short.img", NULL);
    fill_pattern(data, SHORT_LEN, 9);
    g_assert_cmpint(ops->pwrite(h, data, SHORT_LEN, 0, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_IO);
    g_assert_nonnull(strstr(err->message, g_strerror(EFBIG)));
    g_clear_error(&err);
    g_assert_cmpint(size_of(h), ==, SHORT_LIMIT);
    read_ok(h, back, SHORT_LIMIT, 0);
    g_assert_cmpmem(back, SHORT_LIMIT, data, SHORT_LIMIT);

    /* The same through the batch path. */
    truncate_ok(h, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK);
    g_assert_cmpint(batch_one(h, DISKIMG_IO_WRITE, data, SHORT_LEN), ==, -EFBIG);
    g_assert_cmpint(size_of(h), ==, SHORT_LIMIT);
    /* A short read (EOF inside the request) through the batch path. */
    memset(back, 0xee, SHORT_LEN);
    g_assert_cmpint(batch_one(h, DISKIMG_IO_READ, back, SHORT_LEN), ==, 0);
    g_assert_cmpmem(back, SHORT_LIMIT, data, SHORT_LIMIT);
    assert_zero(back + SHORT_LIMIT, SHORT_LEN - SHORT_LIMIT);
    ops->close(h);
    g_free(data);
    g_free(back);
}

/* A write the kernel cuts short (RLIMIT_FSIZE) is continued for the
 * remainder, whose error is then reported; the part written stays. */
static void test_short_io(void)
{
    if (g_test_subprocess()) {
        short_io_child();
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
}

/* ---------------------------------------------------------------- O_DIRECT */

/* Unaligned writes through an O_DIRECT handle, mirrored into shadow;
 * `b` is an aligned 8 KiB buffer. */
static void write_unaligned(void *h, uint8_t *shadow, uint8_t *buf, size_t big, void *b)
{
    /* Odd buffer address, offset and length, larger than a bounce chunk. */
    fill_pattern(buf + 1, big, 2);
    write_ok(h, buf + 1, big, 777);
    memcpy(shadow + 777, buf + 1, big);
    g_assert_cmpint(size_of(h), ==, 777 + big);   /* EOF not rounded to a block */
    /* Small writes inside one block and straddling two. */
    fill_pattern(buf, 100, 3);
    write_ok(h, buf + 1, 10, 4090);
    memcpy(shadow + 4090, buf + 1, 10);
    write_ok(h, buf, 3, 1);
    memcpy(shadow + 1, buf, 3);
    /* Aligned write with an aligned buffer: no bounce. */
    fill_pattern(b, 8192, 4);
    write_ok(h, b, 8192, 2 * MiB);
    memcpy(shadow + 2 * MiB, b, 8192);
}

/* Unaligned and aligned reads through the O_DIRECT handle, across EOF too. */
static void read_unaligned(void *h, const uint8_t *shadow, uint8_t *back, size_t big, void *b)
{
    size_t eof = 777 + big, start = eof / 4096 * 4096;

    read_ok(h, back + 1, big, 777);
    g_assert_cmpmem(back + 1, big, shadow + 777, big);
    memset(back, 0xee, 5000);
    read_ok(h, back + 3, 5000, eof - 100);
    g_assert_cmpmem(back + 3, 100, shadow + eof - 100, 100);
    assert_zero(back + 103, 4900);
    /* Aligned, across EOF: short, then zero filled. */
    memset(b, 0xee, 8192);
    read_ok(h, b, 8192, start);
    g_assert_cmpmem(b, eof - start, shadow + start, eof - start);
    assert_zero((uint8_t *)b + (eof - start), 8192 - (eof - start));
}

static void test_direct_unaligned(void)
{
    char *path = io_tmp_path("direct.img");
    void *h = open_direct(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, DISKIMG_CACHE_NONE);
    size_t big = 3 * MiB + 123;
    uint8_t *shadow, *buf, *back;
    void *b;

    if (!h) {
        g_free(path);
        return;
    }
    g_assert_cmpuint(ops->alignment(h), >=, 512);
    shadow = g_malloc0(8 * MiB);
    buf = g_malloc(big + 1);
    back = g_malloc(big + 1000);
    b = diskimg_alloc_aligned(8192);
    write_unaligned(h, shadow, buf, big, b);
    read_unaligned(h, shadow, back, big, b);
    ops->close(h);

    /* A buffered handle sees the same bytes: they really are on disk. */
    h = open_ok(path, 0);
    read_ok(h, back, 777 + big, 0);
    g_assert_cmpmem(back, 777 + big, shadow, 777 + big);
    ops->close(h);

    /* directsync uses O_DIRECT as well. */
    h = open_direct(path, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_DIRECTSYNC);
    g_assert_cmpuint(ops->alignment(h), >=, 512);
    write_ok(h, "x", 1, 5);
    ops->close(h);

    diskimg_free_aligned(b);
    g_free(shadow);
    g_free(buf);
    g_free(back);
    g_free(path);
}

#define RMW_SPAN (4 * KiB)
#define RMW_THREADS 8

struct rmw_job {
    void *h;
    unsigned id;
};

/* Each thread owns bytes id, id+8, id+16... of the first block: every
 * one-byte write is a read-modify-write of a block the others write too. */
static gpointer rmw_thread(gpointer data)
{
    struct rmw_job *job = data;

    for (unsigned off = job->id; off < RMW_SPAN; off += RMW_THREADS) {
        uint8_t v = (uint8_t)(job->id + 1);
        GError *err = NULL;

        if (ops->pwrite(job->h, &v, 1, off, 0, &err) < 0)
            g_error("write failed: %s", err->message);
    }
    return NULL;
}

static void test_direct_concurrent_rmw(void)
{
    char *path = io_tmp_path("rmw.img");
    struct rmw_job jobs[RMW_THREADS];
    GThread *threads[RMW_THREADS];
    uint8_t *back;
    void *h;

    h = contract_parallel() ? open_direct(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                                          DISKIMG_CACHE_NONE)
                            : NULL;
    if (!h) {
        g_free(path);
        return;
    }
    for (unsigned i = 0; i < RMW_THREADS; i++) {
        jobs[i] = (struct rmw_job){ h, i };
        threads[i] = g_thread_new("rmw", rmw_thread, &jobs[i]);
    }
    for (unsigned i = 0; i < RMW_THREADS; i++)
        g_thread_join(threads[i]);
    back = g_malloc(RMW_SPAN);
    read_ok(h, back, RMW_SPAN, 0);
    for (unsigned off = 0; off < RMW_SPAN; off++)
        g_assert_cmpuint(back[off], ==, off % RMW_THREADS + 1);   /* no lost update */
    g_assert_cmpint(size_of(h), ==, RMW_SPAN);
    ops->close(h);
    g_free(back);
    g_free(path);
}

/* ------------------------------------------------------------------ flush */

/* FUA writes, flushes and batch flushes succeed in every buffered mode. */
static void test_flush_modes(void)
{
    static const enum diskimg_cache modes[] = {
        DISKIMG_CACHE_WRITEBACK, DISKIMG_CACHE_WRITETHROUGH, DISKIMG_CACHE_UNSAFE,
    };
    char *path = io_tmp_path("flush.img");
    uint8_t buf[4096];
    GError *err = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        void *h = io_open(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, modes[i], &err);

        g_assert_no_error(err);
        memset(buf, (int)i + 1, sizeof(buf));
        g_assert_cmpint(ops->pwrite(h, buf, sizeof(buf), 0, DISKIMG_WRITE_FUA, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpint(ops->flush(h, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpint(batch_one(h, DISKIMG_IO_FLUSH, NULL, 0), ==, 0);
        ops->close(h);
    }
    g_free(path);
}

void contract_add_data_tests(void)
{
    io_test_add("read-write", test_read_write, false);
    io_test_add("short-io", test_short_io, false);
    io_test_add("direct-unaligned", test_direct_unaligned, false);
    io_test_add("direct-concurrent-rmw", test_direct_concurrent_rmw, false);
    io_test_add("flush-modes", test_flush_modes, false);
}
