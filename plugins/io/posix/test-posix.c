/* SPDX-License-Identifier: MIT */
/*
 * test-posix.c — unit tests of the posix I/O plugin.  posix.c is compiled
 * into this program and driven through its ops table, exactly as the core
 * calls it; the built module is dlopen'ed once to check its export.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/plugin.h>
#include <diskimg/schema.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Defined by posix.c (DISKIMG_PLUGIN_DEFINE), compiled into this test. */
const struct diskimg_plugin *diskimg_plugin_entry(void);

static const struct diskimg_io_ops *ops;
#include "test-tmpdir.h"
#define tmpdir test_tmpdir

/* ---------------------------------------------------------------- helpers */

#define tmp_path test_tmp_path

static void *open_file(const char *path, unsigned flags, enum diskimg_cache cache,
                       GError **errp)
{
    struct diskimg_io_open_args args = {
        .struct_size = sizeof(args),
        .filename = path,
        .flags = flags,
        .cache = cache,
    };

    return ops->open(&args, errp);
}

static void *open_ok(const char *path, unsigned flags)
{
    GError *err = NULL;
    void *h = open_file(path, flags, DISKIMG_CACHE_WRITEBACK, &err);

    g_assert_no_error(err);
    g_assert_nonnull(h);
    return h;
}

static void *create_ok(const char *name, char **path_out)
{
    char *path = tmp_path(name);
    void *h = open_ok(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);

    if (path_out)
        *path_out = path;
    else
        g_free(path);
    return h;
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 31 + seed * 7 + (i >> 9)) ^ seed);
}

static void write_ok(void *h, const void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(ops->pwrite(h, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

static void read_ok(void *h, void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(ops->pread(h, buf, len, off, &err), ==, 0);
    g_assert_no_error(err);
}

static int64_t size_of(void *h)
{
    GError *err = NULL;
    int64_t n = ops->get_size(h, &err);

    g_assert_no_error(err);
    return n;
}

static int64_t allocated_of(void *h)
{
    GError *err = NULL;
    int64_t n = ops->allocated_size(h, &err);

    g_assert_no_error(err);
    return n;
}

static struct diskimg_extent status_of(void *h, uint64_t off, uint64_t len)
{
    struct diskimg_extent ext = { 0 };
    GError *err = NULL;

    g_assert_cmpint(ops->block_status(h, off, len, &ext, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(ext.offset, ==, off);
    g_assert_true(ext.flags & DISKIMG_BS_OFFSET_VALID);
    return ext;
}

static void assert_status(void *h, uint64_t off, uint64_t len, uint32_t kind,
                          uint64_t expect_len)
{
    struct diskimg_extent ext = status_of(h, off, len);

    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==, kind);
    g_assert_cmpuint(ext.length, ==, expect_len);
}

static void assert_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0)
            g_error("byte %zu is 0x%02x, expected 0", i, buf[i]);
    }
}

static void truncate_ok(void *h, uint64_t size, enum diskimg_prealloc p, unsigned flags)
{
    GError *err = NULL;

    g_assert_cmpint(ops->truncate(h, size, p, flags, &err), ==, 0);
    g_assert_no_error(err);
}

/* Another process's view of a lock byte: whether some description other
 * than a fresh one holds it. */
static bool byte_locked(const char *path, int64_t byte)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct flock fl = { .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = F_WRLCK };

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type != F_UNLCK;
}

/* ------------------------------------------------------------------ tests */

static void test_descriptor(gconstpointer module_path)
{
    const struct diskimg_plugin *p = diskimg_plugin_entry();
    void *dl;

    g_assert_cmpuint(p->abi_version, ==, DISKIMG_ABI_VERSION);
    g_assert_cmpuint(p->struct_size, ==, sizeof(struct diskimg_plugin));
    g_assert_cmpuint(p->kind, ==, DISKIMG_KIND_IO);
    g_assert_cmpuint(p->thread_model, ==, DISKIMG_THREAD_PARALLEL);
    g_assert_cmpstr(p->name, ==, "posix");
    g_assert_nonnull(strstr(p->schema, "\"plugin\":\"posix\""));
    g_assert_nonnull(strstr(p->schema, "\"locking\":"));
    g_assert_cmpuint(ops->struct_size, ==, sizeof(struct diskimg_io_ops));

    if (!module_path)
        return;
    /* The module exports its entry point and nothing of its internals. */
    dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    g_assert_nonnull(dl);
    g_assert_nonnull(dlsym(dl, DISKIMG_PLUGIN_ENTRY_SYMBOL));
    g_assert_null(dlsym(dl, "posix_open"));
    g_assert_null(dlsym(dl, "posix_schema_yaml"));
    {
        const struct diskimg_plugin *(*entry)(void) =
            (const struct diskimg_plugin *(*)(void))dlsym(dl, DISKIMG_PLUGIN_ENTRY_SYMBOL);
        g_assert_cmpstr(entry()->name, ==, "posix");
    }
    dlclose(dl);
}

static void test_open_errors(void)
{
    char *missing = tmp_path("missing.img");
    char *nodir = tmp_path("no/such/dir.img");
    char *expect;
    GError *err = NULL;

    g_assert_null(open_file(missing, 0, DISKIMG_CACHE_WRITEBACK, &err));
    expect = g_strdup_printf("Could not open '%s': No such file or directory", missing);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);

    g_assert_null(open_file(nodir, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                            DISKIMG_CACHE_WRITEBACK, &err));
    expect = g_strdup_printf("Could not create '%s': No such file or directory", nodir);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);

    /* A directory: read-only opens get qemu's driver message, read-write
     * ones the errno of open(2), as with qemu-img. */
    g_assert_null(open_file(tmpdir, 0, DISKIMG_CACHE_WRITEBACK, &err));
    expect = g_strdup_printf("'file' driver requires '%s' to be a regular file", tmpdir);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);
    g_assert_null(open_file(tmpdir, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_WRITEBACK, &err));
    expect = g_strdup_printf("Could not open '%s': Is a directory", tmpdir);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);

    g_free(missing);
    g_free(nodir);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "opening a FIFO blocked\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(99);
}

static void test_fifo(void)
{
    char *path = tmp_path("fifo");
    unsigned modes[] = { 0, DISKIMG_OPEN_RDWR, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_TRUNCATE };
    char *expect = g_strdup_printf("'file' driver requires '%s' to be a regular file", path);

    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
    signal(SIGALRM, on_alarm);
    alarm(5);
    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        GError *err = NULL;

        g_assert_null(open_file(path, modes[i], DISKIMG_CACHE_WRITEBACK, &err));
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
        g_assert_cmpstr(err->message, ==, expect);
        g_clear_error(&err);
    }
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    unlink(path);
    g_free(expect);
    g_free(path);
}

static void test_char_device(void)
{
    void *h = open_ok("/dev/null", 0);
    uint8_t buf[4096];
    struct diskimg_extent ext;

    g_assert_cmpint(size_of(h), ==, 0);
    memset(buf, 0xaa, sizeof(buf));
    read_ok(h, buf, sizeof(buf), 0);
    assert_zero(buf, sizeof(buf));
    ext = status_of(h, 0, 4096);
    g_assert_cmphex(ext.flags & DISKIMG_BS_ZERO, ==, DISKIMG_BS_ZERO);
    ops->close(h);

    h = open_ok("/dev/null", DISKIMG_OPEN_RDWR);
    write_ok(h, buf, sizeof(buf), 0);
    g_assert_cmpint(ops->flush(h, NULL), ==, 0);
    ops->close(h);
}

static void test_empty_file(void)
{
    char *path;
    void *h = create_ok("empty.img", &path);
    uint8_t buf[512];

    g_assert_cmpint(size_of(h), ==, 0);
    g_assert_cmpint(allocated_of(h), ==, 0);
    memset(buf, 0x55, sizeof(buf));
    read_ok(h, buf, sizeof(buf), 1000);
    assert_zero(buf, sizeof(buf));
    assert_status(h, 0, 512, DISKIMG_BS_ZERO, 512);
    ops->close(h);
    g_free(path);
}

static void test_read_write(void)
{
    void *h = create_ok("rw.img", NULL);
    size_t len = 300 * KiB + 7;
    uint8_t *data = g_malloc(len), *back = g_malloc(len + 1000);
    GError *err = NULL;

    fill_pattern(data, len, 1);
    write_ok(h, data, len, 12345);
    g_assert_cmpint(size_of(h), ==, 12345 + len);
    read_ok(h, back, len, 12345);
    g_assert_cmpmem(back, len, data, len);

    /* A read across EOF returns the data, then zeroes. */
    memset(back, 0xee, len + 1000);
    read_ok(h, back, len + 1000, 12345);
    g_assert_cmpmem(back, len, data, len);
    assert_zero(back + len, 1000);
    /* Wholly past EOF: zeroes; the file does not grow. */
    memset(back, 0xee, 4096);
    read_ok(h, back, 4096, 10 * MiB);
    assert_zero(back, 4096);
    g_assert_cmpint(size_of(h), ==, 12345 + len);
    /* Before the data: zeroes of the hole. */
    read_ok(h, back, 12345, 0);
    assert_zero(back, 12345);

    /* FUA writes and flushes succeed. */
    g_assert_cmpint(ops->pwrite(h, data, 512, 0, DISKIMG_WRITE_FUA, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(ops->flush(h, &err), ==, 0);
    g_assert_no_error(err);

    /* Out-of-range offsets are refused, not wrapped. */
    g_assert_cmpint(ops->pread(h, back, 16, UINT64_MAX - 8, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    ops->close(h);
    g_free(data);
    g_free(back);
}

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

/* Opens path with O_DIRECT, or skips the test where the file system
 * refuses it. */
static void *open_direct(const char *path, unsigned flags, enum diskimg_cache cache)
{
    GError *err = NULL;
    void *h = open_file(path, flags, cache, &err);

    if (!h && g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED)) {
        g_assert_nonnull(strstr(err->message, "filesystem does not support O_DIRECT"));
        g_test_skip(err->message);
        g_clear_error(&err);
        return NULL;
    }
    g_assert_no_error(err);
    return h;
}

static void test_direct_unaligned(void)
{
    char *path = tmp_path("direct.img");
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

    /* Odd buffer address, odd offset, odd length, larger than a bounce chunk. */
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
    /* Aligned write with an aligned buffer takes the direct path. */
    b = diskimg_alloc_aligned(8192);
    fill_pattern(b, 8192, 4);
    write_ok(h, b, 8192, 2 * MiB);
    memcpy(shadow + 2 * MiB, b, 8192);

    /* Unaligned reads through the O_DIRECT handle, across EOF too. */
    read_ok(h, back + 1, big, 777);
    g_assert_cmpmem(back + 1, big, shadow + 777, big);
    memset(back, 0xee, 5000);
    read_ok(h, back + 3, 5000, 777 + big - 100);
    g_assert_cmpmem(back + 3, 100, shadow + 777 + big - 100, 100);
    assert_zero(back + 103, 4900);
    ops->close(h);

    /* And through a buffered handle: the bytes really are on disk. */
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

struct rmw_job {
    void *h;
    unsigned id;
};

/* Each thread owns bytes id, id+8, id+16... of the first 4 KiB: every
 * write shares its block with the other threads' bytes. */
static gpointer rmw_thread(gpointer data)
{
    struct rmw_job *job = data;

    for (unsigned off = job->id; off < RMW_SPAN; off += 8) {
        uint8_t v = (uint8_t)(job->id + 1);
        GError *err = NULL;

        if (ops->pwrite(job->h, &v, 1, off, 0, &err) < 0)
            g_error("write failed: %s", err->message);
    }
    return NULL;
}

static void test_direct_concurrent_rmw(void)
{
    char *path = tmp_path("rmw.img");
    void *h = open_direct(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, DISKIMG_CACHE_NONE);
    struct rmw_job jobs[8];
    GThread *threads[8];
    uint8_t *back;

    if (!h) {
        g_free(path);
        return;
    }
    for (unsigned i = 0; i < 8; i++) {
        jobs[i] = (struct rmw_job){ h, i };
        threads[i] = g_thread_new("rmw", rmw_thread, &jobs[i]);
    }
    for (unsigned i = 0; i < 8; i++)
        g_thread_join(threads[i]);
    back = g_malloc(RMW_SPAN);
    read_ok(h, back, RMW_SPAN, 0);
    for (unsigned off = 0; off < RMW_SPAN; off++)
        g_assert_cmpuint(back[off], ==, off % 8 + 1);   /* no lost update */
    g_assert_cmpint(size_of(h), ==, RMW_SPAN);
    ops->close(h);
    g_free(back);
    g_free(path);
}

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
    assert_status(h, 1 * MiB + 64 * KiB, 8 * MiB, DISKIMG_BS_ZERO,
                  3 * MiB - 64 * KiB);
    /* Past EOF: zeroes for the whole asked range. */
    assert_status(h, 5 * MiB, 12345, DISKIMG_BS_ZERO, 12345);
    ops->close(h);
    g_free(data);
}

static void test_punch_hole(void)
{
    char *path;
    void *h = create_ok("punch.img", &path);
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
    g_free(path);
}

static void test_write_zeroes(void)
{
    void *h = create_ok("zeroes.img", NULL);
    uint8_t *data = g_malloc(1 * MiB);
    GError *err = NULL;

    fill_pattern(data, 1 * MiB, 7);
    write_ok(h, data, 1 * MiB, 0);

    /* May unmap: a hole. */
    g_assert_cmpint(ops->write_zeroes(h, 0, 256 * KiB, DISKIMG_WRITE_MAY_UNMAP, &err), ==, 0);
    g_assert_no_error(err);
    assert_status(h, 0, 1 * MiB, DISKIMG_BS_ZERO, 256 * KiB);
    /* Plain zeroing, with no fallback to writing buffers allowed. */
    g_assert_cmpint(ops->write_zeroes(h, 300 * KiB + 5, 100 * KiB,
                                      DISKIMG_WRITE_NO_FALLBACK, &err), ==, 0);
    g_assert_no_error(err);
    /* Past EOF: the file grows. */
    g_assert_cmpint(ops->write_zeroes(h, 2 * MiB, 64 * KiB, DISKIMG_WRITE_MAY_UNMAP, &err),
                    ==, 0);
    g_assert_cmpint(size_of(h), ==, 2 * MiB + 64 * KiB);
    g_assert_cmpint(ops->write_zeroes(h, 3 * MiB, 64 * KiB, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(size_of(h), ==, 3 * MiB + 64 * KiB);

    read_ok(h, data, 1 * MiB, 0);
    assert_zero(data, 256 * KiB);
    assert_zero(data + 300 * KiB + 5, 100 * KiB);
    /* Neighbours are untouched. */
    {
        uint8_t *ref = g_malloc(1 * MiB);

        fill_pattern(ref, 1 * MiB, 7);
        g_assert_cmpmem(data + 256 * KiB, 44 * KiB + 5, ref + 256 * KiB, 44 * KiB + 5);
        g_assert_cmpmem(data + 400 * KiB + 5, 624 * KiB - 5, ref + 400 * KiB + 5,
                        624 * KiB - 5);
        g_free(ref);
    }
    ops->close(h);
    g_free(data);
}

static void test_truncate(void)
{
    char *path;
    void *h = create_ok("trunc.img", &path);
    GError *err = NULL;
    struct stat st;

    /* Growing from empty allocates the first block, as qemu does. */
    truncate_ok(h, 1 * MiB, DISKIMG_PREALLOC_OFF, 0);
    g_assert_cmpint(size_of(h), ==, 1 * MiB);
    assert_status(h, 0, 1 * MiB, DISKIMG_BS_DATA, 4096);
    assert_status(h, 4096, 1 * MiB, DISKIMG_BS_ZERO, 1 * MiB - 4096);

    /* Shrinking needs the flag. */
    g_assert_cmpint(ops->truncate(h, 4096, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "cannot shrink without DISKIMG_TRUNCATE_SHRINK");
    g_clear_error(&err);
    g_assert_cmpint(size_of(h), ==, 1 * MiB);
    truncate_ok(h, 4096, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK);
    g_assert_cmpint(size_of(h), ==, 4096);

    /* falloc: allocated but reading as zeroes. */
    truncate_ok(h, 4096 + 2 * MiB, DISKIMG_PREALLOC_FALLOC, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 4096 + 2 * MiB);
    g_assert_cmpint((int64_t)st.st_blocks * 512, >=, 4096 + 2 * MiB);

    /* full: written zeroes, reported as data. */
    truncate_ok(h, 4096 + 5 * MiB, DISKIMG_PREALLOC_FULL, 0);
    g_assert_cmpint(allocated_of(h), >=, 4096 + 5 * MiB);
    assert_status(h, 4096 + 2 * MiB, 3 * MiB, DISKIMG_BS_DATA, 3 * MiB);
    {
        uint8_t *buf = g_malloc(3 * MiB);

        read_ok(h, buf, 3 * MiB, 4096 + 2 * MiB);
        assert_zero(buf, 3 * MiB);
        g_free(buf);
    }
    /* Tiny images get a one-sector first block that does not grow them. */
    truncate_ok(h, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK);
    truncate_ok(h, 100, DISKIMG_PREALLOC_OFF, 0);
    g_assert_cmpint(size_of(h), ==, 100);
    assert_status(h, 0, 100, DISKIMG_BS_DATA, 100);
    ops->close(h);
    g_free(path);
}

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

#define CR DISKIMG_PERM_CONSISTENT_READ
#define WR DISKIMG_PERM_WRITE
#define WU DISKIMG_PERM_WRITE_UNCHANGED
#define RS DISKIMG_PERM_RESIZE

static void expect_lock_error(void *h, uint64_t perm, uint64_t shared, const char *what,
                              const char *path)
{
    GError *err = NULL;
    char *expect = g_strdup_printf("Failed to get %s lock: Is another process using the "
                                   "image [%s]?", what, path);

    g_assert_cmpint(ops->lock(h, perm, shared, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);
}

static void lock_ok(void *h, uint64_t perm, uint64_t shared)
{
    GError *err = NULL;

    int r = ops->lock(h, perm, shared, &err);

    g_assert_no_error(err);
    g_assert_cmpint(r, ==, 0);
}

static void test_locks(void)
{
    char *path;
    void *a = create_ok("lock.img", &path);
    void *b = open_ok(path, 0);
    void *c = open_ok(path, DISKIMG_OPEN_RDWR);
    void *nolock = open_ok(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_LOCK);

    /* A writer that lets others read but not write (qemu-img's writer). */
    lock_ok(a, CR | WR, CR | WU);
    g_assert_true(byte_locked(path, 100));
    g_assert_true(byte_locked(path, 101));
    g_assert_false(byte_locked(path, 102));
    g_assert_true(byte_locked(path, 201));    /* write not shared */
    g_assert_true(byte_locked(path, 203));    /* resize not shared */
    g_assert_false(byte_locked(path, 204));   /* graph-mod is never locked */

    /* A reader that will not share write. */
    expect_lock_error(b, CR, CR | WU, "shared \"write\"", path);
    g_assert_false(byte_locked(path, 200));   /* rolled back */
    lock_ok(b, CR, DISKIMG_PERM_ALL);          /* -U style: fine */
    /* Another writer. */
    expect_lock_error(c, CR | WR, DISKIMG_PERM_ALL, "\"write\"", path);
    /* Without locks nobody is asked. */
    lock_ok(nolock, CR | WR | RS, 0);

    /* The writer gives up write: the bytes are unlocked. */
    lock_ok(a, CR, DISKIMG_PERM_ALL);
    g_assert_false(byte_locked(path, 101));
    g_assert_false(byte_locked(path, 201));
    lock_ok(c, CR | WR, CR | WU);
    ops->close(c);                            /* close releases its locks */
    lock_ok(b, CR, CR | WU);

    /* Creating (truncating) an image whose user does not share resize (b)
     * is refused and leaves the file alone. */
    write_ok(a, "keep", 4, 0);
    {
        GError *err = NULL;
        char buf[4];

        g_assert_null(open_file(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_TRUNCATE,
                                DISKIMG_CACHE_WRITEBACK, &err));
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED);
        g_clear_error(&err);
        read_ok(b, buf, 4, 0);
        g_assert_cmpmem(buf, 4, "keep", 4);
    }
    ops->close(a);
    ops->close(b);
    ops->close(nolock);
    g_assert_false(byte_locked(path, 100));
    g_free(path);
}

static void on_reap_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "reap blocked\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(98);
}

static unsigned reap_all(void *h, struct diskimg_io_request **done, unsigned n)
{
    unsigned got = 0;

    while (got < n) {
        GError *err = NULL;
        int r = ops->reap(h, done + got, n - got, 1, &err);

        g_assert_no_error(err);
        g_assert_cmpint(r, >=, 1);
        got += (unsigned)r;
    }
    return got;
}

static void test_batch(void)
{
    enum { N = 32, BLOCK = 64 * 1024 };
    void *h = create_ok("batch.img", NULL);
    struct diskimg_io_request reqs[N + 2], *ptrs[N + 2], *done[N + 2];
    uint8_t *bufs = g_malloc((size_t)N * BLOCK), *back = g_malloc((size_t)N * BLOCK);
    GError *err = NULL;

    for (unsigned i = 0; i < N; i++) {
        fill_pattern(bufs + (size_t)i * BLOCK, BLOCK, i);
        reqs[i] = (struct diskimg_io_request){
            .op = DISKIMG_IO_WRITE, .buf = bufs + (size_t)i * BLOCK, .len = BLOCK,
            .offset = (uint64_t)i * BLOCK, .result = 1, .user = GUINT_TO_POINTER(i),
        };
        ptrs[i] = &reqs[i];
    }
    g_assert_cmpint(ops->submit(h, ptrs, N, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(reap_all(h, done, N), ==, N);
    for (unsigned i = 0; i < N; i++)
        g_assert_cmpint(done[i]->result, ==, 0);

    /* Nothing in flight: reap returns at once, even when asked to wait. */
    signal(SIGALRM, on_reap_alarm);
    alarm(5);
    g_assert_cmpint(ops->reap(h, done, N, N, &err), ==, 0);
    alarm(0);
    signal(SIGALRM, SIG_DFL);

    /* Reads, a zeroing and a flush in one batch. */
    for (unsigned i = 0; i < N; i++) {
        reqs[i] = (struct diskimg_io_request){
            .op = DISKIMG_IO_READ, .buf = back + (size_t)i * BLOCK, .len = BLOCK,
            .offset = (uint64_t)i * BLOCK, .result = 1,
        };
    }
    reqs[N] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE_ZEROES,
                                           .offset = (uint64_t)N * BLOCK, .len = BLOCK };
    reqs[N + 1] = (struct diskimg_io_request){ .op = DISKIMG_IO_FLUSH };
    ptrs[N] = &reqs[N];
    ptrs[N + 1] = &reqs[N + 1];
    g_assert_cmpint(ops->submit(h, ptrs, N + 2, &err), ==, 0);
    g_assert_cmpint(ops->reap(h, done, N + 2, N + 2, &err), ==, N + 2);
    for (unsigned i = 0; i < N + 2; i++)
        g_assert_cmpint(done[i]->result, ==, 0);
    g_assert_cmpmem(back, (size_t)N * BLOCK, bufs, (size_t)N * BLOCK);
    g_assert_cmpint(size_of(h), ==, (int64_t)(N + 1) * BLOCK);

    /* A bad request is refused at submit time. */
    reqs[0] = (struct diskimg_io_request){ .op = 99 };
    g_assert_cmpint(ops->submit(h, ptrs, 1, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);

    ops->close(h);
    g_free(bufs);
    g_free(back);
}

static void test_batch_errors_and_close(void)
{
    char *path;
    void *h = create_ok("batch2.img", &path);
    struct diskimg_io_request req = { .op = DISKIMG_IO_WRITE, .len = 512 }, *p = &req;
    uint8_t buf[512] = { 0 };
    GError *err = NULL;

    ops->close(h);
    h = open_ok(path, 0);
    req.buf = buf;
    g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, 0);
    g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
    g_assert_cmpint(req.result, ==, -EBADF);
    /* Close with a request still queued: it completes first. */
    req.op = DISKIMG_IO_READ;
    g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, 0);
    ops->close(h);
    g_free(path);
}

/* The embedded schema parses, and its open options take effect. */
static void test_schema_options(void)
{
    diskimg_schema *schema;
    diskimg_options *o;
    char **keys;
    char *path;
    void *a, *b;
    GError *err = NULL;
    struct diskimg_io_open_args args = {
        .struct_size = sizeof(args), .flags = DISKIMG_OPEN_RDWR,
    };

    schema = diskimg_schema_parse(diskimg_plugin_entry()->schema, "posix.yaml", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_schema_name(schema), ==, "posix");
    g_assert_cmpstr(diskimg_schema_kind(schema), ==, "io");
    keys = diskimg_schema_set_keys(schema, "open-options");
    g_assert_cmpstr(keys[0], ==, "aio");
    g_assert_cmpstr(keys[1], ==, "locking");
    g_assert_null(keys[2]);
    g_strfreev(keys);
    keys = diskimg_schema_set_keys(schema, "create-options");
    g_assert_cmpstr(keys[0], ==, "nocow");
    g_assert_cmpstr(keys[1], ==, "extent_size_hint");
    g_strfreev(keys);

    /* locking=off: two writers, no conflict. */
    a = create_ok("schema.img", &path);
    lock_ok(a, CR | WR | RS, 0);
    o = diskimg_options_new(schema, "open-options");
    g_assert_cmpint(diskimg_options_parse(o, "locking=off", &err), ==, 0);
    g_assert_no_error(err);
    args.filename = path;
    args.options = o;
    b = ops->open(&args, &err);
    g_assert_no_error(err);
    lock_ok(b, CR | WR | RS, 0);
    ops->close(b);
    diskimg_options_free(o);

    /* aio=native needs O_DIRECT, as in qemu. */
    o = diskimg_options_new(schema, "open-options");
    g_assert_cmpint(diskimg_options_parse(o, "aio=native", &err), ==, 0);
    args.options = o;
    g_assert_null(ops->open(&args, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "aio=native was specified, but it requires "
                    "cache.direct=on, which was not specified.");
    g_clear_error(&err);
    diskimg_options_free(o);

    ops->close(a);
    diskimg_schema_free(schema);
    g_free(path);
}

static void test_remove(void)
{
    char *path;
    void *h = create_ok("remove.img", &path);
    GError *err = NULL;

    ops->close(h);
    g_assert_cmpint(ops->remove(path, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(ops->remove(path, &err), ==, 0);   /* already gone: fine */
    g_assert_no_error(err);
    g_free(path);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    ops = diskimg_plugin_entry()->ops;
    test_tmpdir_create("diskimg-posix", NULL);

    /* argv[1]: the built module, to check what it exports. */
    g_test_add_data_func("/posix/descriptor", argc > 1 ? argv[1] : NULL, test_descriptor);
    g_test_add_func("/posix/open-errors", test_open_errors);
    g_test_add_func("/posix/fifo", test_fifo);
    g_test_add_func("/posix/char-device", test_char_device);
    g_test_add_func("/posix/empty-file", test_empty_file);
    g_test_add_func("/posix/read-write", test_read_write);
    g_test_add_func("/posix/read-only", test_read_only);
    g_test_add_func("/posix/direct-unaligned", test_direct_unaligned);
    g_test_add_func("/posix/direct-concurrent-rmw", test_direct_concurrent_rmw);
    g_test_add_func("/posix/block-status", test_block_status);
    g_test_add_func("/posix/punch-hole", test_punch_hole);
    g_test_add_func("/posix/write-zeroes", test_write_zeroes);
    g_test_add_func("/posix/truncate", test_truncate);
    g_test_add_func("/posix/copy-range", test_copy_range);
    g_test_add_func("/posix/locks", test_locks);
    g_test_add_func("/posix/batch", test_batch);
    g_test_add_func("/posix/batch-errors", test_batch_errors_and_close);
    g_test_add_func("/posix/schema-options", test_schema_options);
    g_test_add_func("/posix/remove", test_remove);

    ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
