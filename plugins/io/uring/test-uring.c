/* SPDX-License-Identifier: MIT */
/*
 * test-uring.c — unit tests of the uring I/O plugin.  uring.c is compiled
 * into this program and driven through its ops table as the core calls
 * it.  argv[1] is the built uring module (its exports are checked),
 * argv[2] the posix module (locks must work across the two backends).
 *
 * Where the kernel refuses io_uring every test but the descriptor one is
 * skipped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include <diskimg/plugin.h>
#include <diskimg/schema.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Defined by uring.c (DISKIMG_PLUGIN_DEFINE), compiled into this test. */
const struct diskimg_plugin *diskimg_plugin_entry(void);

static const struct diskimg_io_ops *ops;
static const struct diskimg_io_ops *posix_ops;   /* NULL: module not given */
static void *posix_dl;
#include "test-tmpdir.h"
#define tmpdir test_tmpdir
static char *unavailable;                         /* why io_uring cannot be used */

/* ---------------------------------------------------------------- helpers */

static bool skip_without_uring(void)
{
    if (!unavailable)
        return false;
    g_test_skip(unavailable);
    return true;
}

#define tmp_path test_tmp_path

static void *open_with(const struct diskimg_io_ops *o, const char *path, unsigned flags,
                       enum diskimg_cache cache, const diskimg_options *options,
                       GError **errp)
{
    struct diskimg_io_open_args args = {
        .struct_size = sizeof(args),
        .filename = path,
        .flags = flags,
        .cache = cache,
        .options = options,
    };

    return o->open(&args, errp);
}

static void *open_file(const char *path, unsigned flags, enum diskimg_cache cache,
                       GError **errp)
{
    return open_with(ops, path, flags, cache, NULL, errp);
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

/* Opens with O_DIRECT, or skips where the file system refuses it. */
static void *open_direct(const char *path, unsigned flags, enum diskimg_cache cache)
{
    GError *err = NULL;
    void *h = open_file(path, flags, cache, &err);

    if (!h && g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED)) {
        g_test_skip(err->message);
        g_clear_error(&err);
        return NULL;
    }
    g_assert_no_error(err);
    return h;
}

static diskimg_schema *uring_schema(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse(diskimg_plugin_entry()->schema, "uring.yaml",
                                             &err);

    g_assert_no_error(err);
    return s;
}

/* Opens with open-options given as "key=value,..." text. */
static void *open_opts(const char *path, unsigned flags, const char *opts, GError **errp)
{
    diskimg_schema *schema = uring_schema();
    diskimg_options *o = diskimg_options_new(schema, "open-options");
    GError *err = NULL;
    void *h;

    g_assert_cmpint(diskimg_options_parse(o, opts, &err), ==, 0);
    g_assert_no_error(err);
    h = open_with(ops, path, flags, DISKIMG_CACHE_WRITEBACK, o, errp);
    diskimg_options_free(o);
    diskimg_schema_free(schema);
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

static void assert_status(void *h, uint64_t off, uint64_t len, uint32_t kind,
                          uint64_t expect_len)
{
    struct diskimg_extent ext = { 0 };
    GError *err = NULL;

    g_assert_cmpint(ops->block_status(h, off, len, &ext, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(ext.offset, ==, off);
    g_assert_true(ext.flags & DISKIMG_BS_OFFSET_VALID);
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

/* SQ entries of the (single) io_uring instance this process has open,
 * from its fdinfo; 0 when there is none or several. */
static unsigned ring_sq_entries(void)
{
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    const char *name;
    unsigned found = 0, entries = 0;

    while (d && (name = g_dir_read_name(d)) != NULL) {
        char *link = g_strdup_printf("/proc/self/fd/%s", name);
        char *target = g_file_read_link(link, NULL);

        if (target && strcmp(target, "anon_inode:[io_uring]") == 0) {
            char *info = g_strdup_printf("/proc/self/fdinfo/%s", name), *text = NULL;
            const char *mask;

            found++;
            if (g_file_get_contents(info, &text, NULL, NULL) &&
                (mask = strstr(text, "SqMask:")) != NULL)
                entries = (unsigned)g_ascii_strtoull(mask + 7, NULL, 0) + 1;
            g_free(text);
            g_free(info);
        }
        g_free(target);
        g_free(link);
    }
    if (d)
        g_dir_close(d);
    return found == 1 ? entries : 0;
}

/* ------------------------------------------------------------------ tests */

static void test_descriptor(gconstpointer module_path)
{
    const struct diskimg_plugin *p = diskimg_plugin_entry();
    const struct diskimg_plugin *(*entry)(void);
    void *dl;

    g_assert_cmpuint(p->abi_version, ==, DISKIMG_ABI_VERSION);
    g_assert_cmpuint(p->struct_size, ==, sizeof(struct diskimg_plugin));
    g_assert_cmpuint(p->kind, ==, DISKIMG_KIND_IO);
    g_assert_cmpuint(p->thread_model, ==, DISKIMG_THREAD_PARALLEL);
    g_assert_cmpstr(p->name, ==, "uring");
    g_assert_nonnull(strstr(p->schema, "\"plugin\":\"uring\""));
    g_assert_cmpuint(ops->struct_size, ==, sizeof(struct diskimg_io_ops));
    if (!module_path)
        return;
    dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    g_assert_nonnull(dl);
    g_assert_null(dlsym(dl, "uring_open"));
    g_assert_null(dlsym(dl, "uring_schema_yaml"));
    entry = (const struct diskimg_plugin *(*)(void))dlsym(dl, DISKIMG_PLUGIN_ENTRY_SYMBOL);
    g_assert_nonnull(entry);
    g_assert_cmpstr(entry()->name, ==, "uring");
    dlclose(dl);
}

/* In a seccomp sandbox that refuses io_uring_setup, open fails with
 * NOT_SUPPORTED and leaves the file system alone. */
static void test_unavailable(void)
{
    if (g_test_subprocess()) {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = G_N_ELEMENTS(filter), .filter = filter };
        char *path = tmp_path("sandboxed.img");
        GError *err = NULL;

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
            g_test_skip("cannot install a seccomp filter here");
            g_free(path);
            return;
        }
        g_assert_null(open_file(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                                DISKIMG_CACHE_WRITEBACK, &err));
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
        g_assert_cmpstr(err->message, ==, "io_uring is not available: Function not implemented");
        g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
        g_clear_error(&err);
        g_free(path);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
}

static void on_alarm(int sig)
{
    static const char msg[] = "blocked\n";

    (void)sig;
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(99);
}

static void test_open_errors(void)
{
    char *missing = tmp_path("missing.img");
    char *fifo = tmp_path("fifo");
    char *expect;
    GError *err = NULL;

    if (skip_without_uring())
        goto out;
    g_assert_null(open_file(missing, 0, DISKIMG_CACHE_WRITEBACK, &err));
    expect = g_strdup_printf("Could not open '%s': No such file or directory", missing);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);

    g_assert_null(open_file(tmpdir, 0, DISKIMG_CACHE_WRITEBACK, &err));
    expect = g_strdup_printf("'file' driver requires '%s' to be a regular file", tmpdir);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);

    /* A FIFO is refused without waiting for a peer. */
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    signal(SIGALRM, on_alarm);
    alarm(5);
    g_assert_null(open_file(fifo, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_WRITEBACK, &err));
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    unlink(fifo);

    /* queue-depth out of range (the schema stops it too; open checks again
     * for callers that pass no options object). */
    {
        diskimg_schema *schema = uring_schema();
        diskimg_options *o = diskimg_options_new(schema, "open-options");

        g_assert_cmpint(diskimg_options_parse(o, "queue-depth=0", &err), ==, -1);
        g_assert_nonnull(err);
        g_clear_error(&err);
        diskimg_options_free(o);
        diskimg_schema_free(schema);
    }
out:
    g_free(missing);
    g_free(fifo);
}

static void test_read_write(void)
{
    char *path;
    void *h;
    size_t len = 300 * KiB + 7;
    uint8_t *data, *back;
    uint8_t small[512] = { 1 };
    GError *err = NULL;

    if (skip_without_uring())
        return;
    h = create_ok("rw.img", &path);
    data = g_malloc(len);
    back = g_malloc(len + 1000);
    fill_pattern(data, len, 1);
    write_ok(h, data, len, 12345);
    g_assert_cmpint(size_of(h), ==, 12345 + len);
    read_ok(h, back, len, 12345);
    g_assert_cmpmem(back, len, data, len);

    /* Across EOF: the data, then zeroes (a short read completed). */
    memset(back, 0xee, len + 1000);
    read_ok(h, back, len + 1000, 12345);
    g_assert_cmpmem(back, len, data, len);
    assert_zero(back + len, 1000);
    /* Wholly past EOF: zeroes; the file does not grow. */
    memset(back, 0xee, 4096);
    read_ok(h, back, 4096, 10 * MiB);
    assert_zero(back, 4096);
    g_assert_cmpint(size_of(h), ==, 12345 + len);
    read_ok(h, back, 12345, 0);
    assert_zero(back, 12345);

    /* FUA writes (RWF_DSYNC) and flushes. */
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

    /* Read-only handles refuse writes and resizes. */
    h = open_ok(path, 0);
    g_assert_cmpint(ops->pwrite(h, small, sizeof(small), 0, 0, &err), ==, -1);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_cmpint(ops->truncate(h, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK, &err),
                    ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_clear_error(&err);
    g_assert_cmpint(ops->alignment(h), ==, 1);
    ops->close(h);
    g_free(data);
    g_free(back);
    g_free(path);
}

/* A write that the kernel cuts short (RLIMIT_FSIZE) is continued for the
 * remainder, whose error is then reported; the part written stays. */
static void test_short_io(void)
{
    enum { LIMIT = 64 * 1024 + 100, LEN = 256 * 1024 };

    if (skip_without_uring())
        return;
    if (g_test_subprocess()) {
        struct rlimit rl = { LIMIT, LIMIT };
        uint8_t *data = g_malloc(LEN), *back = g_malloc(LEN);
        struct diskimg_io_request req, *p = &req;
        char *path;
        void *h;
        GError *err = NULL;

        signal(SIGXFSZ, SIG_IGN);
        g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &rl), ==, 0);
        h = create_ok("short.img", &path);
        fill_pattern(data, LEN, 9);
        g_assert_cmpint(ops->pwrite(h, data, LEN, 0, 0, &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_IO);
        g_assert_nonnull(strstr(err->message, g_strerror(EFBIG)));
        g_clear_error(&err);
        g_assert_cmpint(size_of(h), ==, LIMIT);
        read_ok(h, back, LIMIT, 0);
        g_assert_cmpmem(back, LIMIT, data, LIMIT);

        /* The same through the batch path. */
        g_assert_cmpint(ops->truncate(h, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                                      &err), ==, 0);
        req = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .buf = data, .len = LEN };
        g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, 0);
        g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
        g_assert_cmpint(req.result, ==, -EFBIG);
        g_assert_cmpint(size_of(h), ==, LIMIT);

        /* A short read (EOF inside the request) through the batch path. */
        memset(back, 0xee, LEN);
        req = (struct diskimg_io_request){ .op = DISKIMG_IO_READ, .buf = back, .len = LEN };
        g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, 0);
        g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
        g_assert_cmpint(req.result, ==, 0);
        g_assert_cmpmem(back, LIMIT, data, LIMIT);
        assert_zero(back + LIMIT, LEN - LIMIT);
        ops->close(h);
        g_free(data);
        g_free(back);
        g_free(path);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
}

static void test_direct_unaligned(void)
{
    char *path = tmp_path("direct.img");
    size_t big = 3 * MiB + 123;
    uint8_t *shadow, *buf, *back;
    void *h, *b;

    if (skip_without_uring() ||
        !(h = open_direct(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, DISKIMG_CACHE_NONE))) {
        g_free(path);
        return;
    }
    g_assert_cmpuint(ops->alignment(h), >=, 512);
    shadow = g_malloc0(8 * MiB);
    buf = g_malloc(big + 1);
    back = g_malloc(big + 1000);

    /* Odd address, offset and length, larger than a bounce chunk. */
    fill_pattern(buf + 1, big, 2);
    write_ok(h, buf + 1, big, 777);
    memcpy(shadow + 777, buf + 1, big);
    g_assert_cmpint(size_of(h), ==, 777 + big);   /* EOF not rounded up */
    /* Small writes inside one block and straddling two. */
    fill_pattern(buf, 100, 3);
    write_ok(h, buf + 1, 10, 4090);
    memcpy(shadow + 4090, buf + 1, 10);
    write_ok(h, buf, 3, 1);
    memcpy(shadow + 1, buf, 3);
    /* Aligned: straight into the ring. */
    b = diskimg_alloc_aligned(8192);
    fill_pattern(b, 8192, 4);
    write_ok(h, b, 8192, 2 * MiB);
    memcpy(shadow + 2 * MiB, b, 8192);

    read_ok(h, back + 1, big, 777);
    g_assert_cmpmem(back + 1, big, shadow + 777, big);
    memset(back, 0xee, 5000);
    read_ok(h, back + 3, 5000, 777 + big - 100);     /* across EOF */
    g_assert_cmpmem(back + 3, 100, shadow + 777 + big - 100, 100);
    assert_zero(back + 103, 4900);
    /* An aligned O_DIRECT read across EOF (short, then zero filled). */
    {
        size_t eof = 777 + big, start = eof / 4096 * 4096;

        memset(b, 0xee, 8192);
        read_ok(h, b, 8192, start);
        g_assert_cmpmem(b, eof - start, shadow + start, eof - start);
        assert_zero((uint8_t *)b + (eof - start), 8192 - (eof - start));
    }
    ops->close(h);

    /* A buffered handle sees the same bytes. */
    h = open_ok(path, 0);
    read_ok(h, back, 777 + big, 0);
    g_assert_cmpmem(back, 777 + big, shadow, 777 + big);
    ops->close(h);

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

/* Each thread owns bytes id, id+8, id+16... of the first block: every
 * one-byte write is a read-modify-write of a block the others write too. */
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
    struct rmw_job jobs[8];
    GThread *threads[8];
    uint8_t *back;
    void *h;

    if (skip_without_uring() ||
        !(h = open_direct(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, DISKIMG_CACHE_NONE))) {
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

static void test_write_zeroes(void)
{
    void *h;
    uint8_t *data, *ref;
    struct diskimg_io_request reqs[3], *ptrs[3], *done[3];
    GError *err = NULL;

    if (skip_without_uring())
        return;
    h = create_ok("zeroes.img", NULL);
    data = g_malloc(1 * MiB);
    ref = g_malloc(1 * MiB);
    fill_pattern(data, 1 * MiB, 7);
    fill_pattern(ref, 1 * MiB, 7);
    write_ok(h, data, 1 * MiB, 0);

    /* May unmap: a hole. */
    g_assert_cmpint(ops->write_zeroes(h, 0, 256 * KiB, DISKIMG_WRITE_MAY_UNMAP, &err), ==, 0);
    g_assert_no_error(err);
    assert_status(h, 0, 1 * MiB, DISKIMG_BS_ZERO, 256 * KiB);
    /* ZERO_RANGE through the ring, no buffer fallback allowed, with FUA. */
    g_assert_cmpint(ops->write_zeroes(h, 300 * KiB + 5, 100 * KiB,
                                      DISKIMG_WRITE_NO_FALLBACK | DISKIMG_WRITE_FUA, &err),
                    ==, 0);
    g_assert_no_error(err);
    /* Past EOF: the file grows. */
    g_assert_cmpint(ops->write_zeroes(h, 2 * MiB, 64 * KiB, DISKIMG_WRITE_MAY_UNMAP, &err),
                    ==, 0);
    g_assert_cmpint(size_of(h), ==, 2 * MiB + 64 * KiB);
    g_assert_cmpint(ops->write_zeroes(h, 3 * MiB, 64 * KiB, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(size_of(h), ==, 3 * MiB + 64 * KiB);

    /* In a batch: ZERO_RANGE (now known to work) goes asynchronous,
     * MAY_UNMAP runs its punch-and-grow sequence. */
    reqs[0] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE_ZEROES,
                                           .offset = 600 * KiB, .len = 8 * KiB };
    reqs[1] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE_ZEROES,
                                           .offset = 700 * KiB, .len = 8 * KiB,
                                           .flags = DISKIMG_WRITE_FUA };
    reqs[2] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE_ZEROES,
                                           .offset = 4 * MiB, .len = 4 * KiB,
                                           .flags = DISKIMG_WRITE_MAY_UNMAP };
    for (unsigned i = 0; i < 3; i++)
        ptrs[i] = &reqs[i];
    g_assert_cmpint(ops->submit(h, ptrs, 3, &err), ==, 0);
    g_assert_cmpuint(reap_all(h, done, 3), ==, 3);
    for (unsigned i = 0; i < 3; i++)
        g_assert_cmpint(reqs[i].result, ==, 0);
    g_assert_cmpint(size_of(h), ==, 4 * MiB + 4 * KiB);

    read_ok(h, data, 1 * MiB, 0);
    memset(ref, 0, 256 * KiB);
    memset(ref + 300 * KiB + 5, 0, 100 * KiB);
    memset(ref + 600 * KiB, 0, 8 * KiB);
    memset(ref + 700 * KiB, 0, 8 * KiB);
    g_assert_cmpmem(data, 1 * MiB, ref, 1 * MiB);   /* neighbours untouched */
    ops->close(h);
    g_free(data);
    g_free(ref);
}

static void test_flush_modes(void)
{
    static const enum diskimg_cache modes[] = {
        DISKIMG_CACHE_WRITEBACK, DISKIMG_CACHE_WRITETHROUGH, DISKIMG_CACHE_UNSAFE,
    };
    char *path = tmp_path("flush.img");
    uint8_t buf[4096];
    void *h;
    GError *err = NULL;

    if (skip_without_uring()) {
        g_free(path);
        return;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
        struct diskimg_io_request req = { .op = DISKIMG_IO_FLUSH, .result = 1 }, *p = &req;

        h = open_file(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, modes[i], &err);
        g_assert_no_error(err);
        memset(buf, (int)i + 1, sizeof(buf));
        g_assert_cmpint(ops->pwrite(h, buf, sizeof(buf), 0, DISKIMG_WRITE_FUA, &err), ==, 0);
        g_assert_cmpint(ops->flush(h, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, 0);
        g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
        g_assert_cmpint(req.result, ==, 0);
        ops->close(h);
    }
    /* Character devices: reads are zeroes, writes vanish, flush is fine. */
    h = open_ok("/dev/null", DISKIMG_OPEN_RDWR);
    memset(buf, 0xaa, sizeof(buf));
    write_ok(h, buf, sizeof(buf), 0);
    read_ok(h, buf, sizeof(buf), 0);
    assert_zero(buf, sizeof(buf));
    g_assert_cmpint(ops->flush(h, &err), ==, 0);
    g_assert_no_error(err);
    ops->close(h);
    g_free(path);
}

/*
 * 256 mixed requests against a ring of depth `depth`: reads of a region
 * written before, writes and zeroings of others, flushes; reaped in
 * uneven portions.  Every request comes back exactly once with its result.
 */
static void run_batch(unsigned depth)
{
    enum { N = 256, BLOCK = 16 * 1024, AREA = 64 * BLOCK };
    char *path = tmp_path("batch.img");
    char *opts = g_strdup_printf("queue-depth=%u", depth);
    struct diskimg_io_request reqs[N], *ptrs[N], *done[N];
    uint8_t *src = g_malloc(AREA), *reads = g_malloc((size_t)N * BLOCK);
    uint8_t *writes = g_malloc((size_t)N * BLOCK), *back = g_malloc(3 * AREA);
    unsigned seen[N] = { 0 }, got = 0, round = 0;
    GError *err = NULL;
    void *h;

    h = open_opts(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE, opts,
                  &err);
    g_assert_no_error(err);
    g_assert_cmpuint(ring_sq_entries(), ==, depth <= 1 ? 1 : depth);
    fill_pattern(src, AREA, 11);
    write_ok(h, src, AREA, 0);
    /* Zeroing learns that ZERO_RANGE works, so batch zeroes go async. */
    g_assert_cmpint(ops->write_zeroes(h, 3 * AREA, BLOCK, 0, &err), ==, 0);

    for (unsigned i = 0; i < N; i++) {
        unsigned slot = i / 4 % 64;
        struct diskimg_io_request *r = &reqs[i];

        *r = (struct diskimg_io_request){ .user = GUINT_TO_POINTER(i), .result = 1 };
        switch (i % 8) {
        case 0: case 2: case 4: case 6:           /* read the written area */
            r->op = DISKIMG_IO_READ;
            r->buf = reads + (size_t)i * BLOCK;
            r->len = BLOCK;
            r->offset = (uint64_t)slot * BLOCK;
            break;
        case 1: case 3: case 5:                   /* writes to a second area */
            r->op = DISKIMG_IO_WRITE;
            r->buf = writes + (size_t)i * BLOCK;
            r->len = BLOCK;
            r->offset = AREA + (uint64_t)(i / 8 * 3 + i % 8 / 2) % 64 * BLOCK;
            fill_pattern(r->buf, BLOCK, (unsigned)(r->offset / BLOCK));
            break;
        default:                                  /* zeroes and flushes */
            if (i % 16 == 7) {
                r->op = DISKIMG_IO_WRITE_ZEROES;
                r->offset = 2 * AREA + (uint64_t)(i / 16) * BLOCK;
                r->len = BLOCK;
            } else {
                r->op = DISKIMG_IO_FLUSH;
            }
            break;
        }
        ptrs[i] = r;
    }
    /* Two submits, to also have completions of the first arrive while
     * the second is queued. */
    g_assert_cmpint(ops->submit(h, ptrs, N / 2, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(ops->submit(h, ptrs + N / 2, N - N / 2, &err), ==, 0);
    while (got < N) {
        unsigned max = 1 + round % 7, min = round % 3;
        int r = ops->reap(h, done + got, MIN(max, N - got), MIN(min, max), &err);

        g_assert_no_error(err);
        g_assert_cmpint(r, >=, 0);
        got += (unsigned)r;
        round++;
    }
    g_assert_cmpint(ops->reap(h, done, 1, 1, &err), ==, 0);   /* nothing left */
    for (unsigned i = 0; i < N; i++) {
        unsigned id = GPOINTER_TO_UINT(done[i]->user);

        g_assert_cmpuint(id, <, N);
        g_assert_true(done[i] == &reqs[id]);
        g_assert_cmpuint(seen[id]++, ==, 0);
        g_assert_cmpint(done[i]->result, ==, 0);
    }
    for (unsigned i = 0; i < N; i++) {
        if (reqs[i].op == DISKIMG_IO_READ)
            g_assert_cmpmem(reqs[i].buf, BLOCK, src + reqs[i].offset, BLOCK);
    }
    read_ok(h, back, 3 * AREA, 0);
    g_assert_cmpmem(back, AREA, src, AREA);
    for (unsigned i = 0; i < N; i++) {
        if (reqs[i].op == DISKIMG_IO_WRITE)
            g_assert_cmpmem(back + reqs[i].offset, BLOCK, reqs[i].buf, BLOCK);
        else if (reqs[i].op == DISKIMG_IO_WRITE_ZEROES)
            assert_zero(back + reqs[i].offset, BLOCK);
    }
    ops->close(h);
    g_free(src);
    g_free(reads);
    g_free(writes);
    g_free(back);
    g_free(opts);
    g_free(path);
}

static void test_batch(void)
{
    if (skip_without_uring())
        return;
    run_batch(32);
    run_batch(1);
}

static void test_batch_errors_and_close(void)
{
    char *path;
    void *h;
    struct diskimg_io_request req = { .op = DISKIMG_IO_WRITE, .len = 512 }, *p = &req;
    struct diskimg_io_request many[64], *mp[64];
    uint8_t buf[512] = { 0 }, *big;
    GError *err = NULL;

    if (skip_without_uring())
        return;
    h = create_ok("batch2.img", &path);
    ops->close(h);
    h = open_ok(path, 0);
    req.buf = buf;
    g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, 0);
    g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
    g_assert_cmpint(req.result, ==, -EBADF);

    /* A bad request is refused at submit time, nothing is queued. */
    req.op = 99;
    g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 0);

    /* Close with requests queued and in flight: they complete first. */
    big = g_malloc(64 * 4096);
    for (unsigned i = 0; i < 64; i++) {
        many[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_READ, .len = 4096,
                                               .buf = big + i * 4096, .result = 1 };
        mp[i] = &many[i];
    }
    g_assert_cmpint(ops->submit(h, mp, 64, &err), ==, 0);
    ops->close(h);
    for (unsigned i = 0; i < 64; i++)
        g_assert_cmpint(many[i].result, ==, 0);
    g_free(big);
    g_free(path);
}

/* ---------------------------------------------------- many threads, one handle */

enum { T_THREADS = 8, T_BLOCK = 8192, T_ROUNDS = 200 };

struct thread_job {
    void *h;
    unsigned id;
    bool batch;
};

/* Each thread owns one region and writes then reads it back, through the
 * synchronous calls or the batch path; all threads share one ring. */
static gpointer io_thread(gpointer data)
{
    struct thread_job *job = data;
    uint8_t *buf = g_malloc(4 * T_BLOCK), *back = g_malloc(4 * T_BLOCK);
    uint64_t base = (uint64_t)job->id * 4 * T_BLOCK;

    for (unsigned round = 0; round < T_ROUNDS; round++) {
        GError *err = NULL;

        fill_pattern(buf, 4 * T_BLOCK, job->id * 1000 + round);
        if (job->batch) {
            struct diskimg_io_request r[4], *p[4], *d[4];

            for (unsigned i = 0; i < 4; i++) {
                r[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .len = T_BLOCK,
                                                    .buf = buf + i * T_BLOCK,
                                                    .offset = base + i * T_BLOCK };
                p[i] = &r[i];
            }
            if (ops->submit(job->h, p, 4, &err) < 0)
                g_error("submit: %s", err->message);
            /* Other threads reap this handle too; take only our own
             * requests by reaping until all four are back. */
            for (unsigned got = 0; got < 4;) {
                int n = ops->reap(job->h, d, 4, 1, &err);

                if (n < 0)
                    g_error("reap: %s", err->message);
                got += (unsigned)n;
            }
        } else if (ops->pwrite(job->h, buf, 4 * T_BLOCK, base, 0, &err) < 0) {
            g_error("write: %s", err->message);
        }
        if (!job->batch) {
            if (ops->pread(job->h, back, 4 * T_BLOCK, base, &err) < 0)
                g_error("read: %s", err->message);
            if (memcmp(back, buf, 4 * T_BLOCK) != 0)
                g_error("thread %u round %u: data mismatch", job->id, round);
        }
    }
    g_free(buf);
    g_free(back);
    return NULL;
}

static void test_threads(void)
{
    struct thread_job jobs[T_THREADS];
    GThread *threads[T_THREADS];
    void *h;
    GError *err = NULL;
    char *path = tmp_path("threads.img");

    if (skip_without_uring()) {
        g_free(path);
        return;
    }
    /* A small ring, so that threads compete for slots. */
    h = open_opts(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE, "queue-depth=4", &err);
    g_assert_no_error(err);
    /* Only one thread uses the batch path: reap hands out whichever
     * requests are done, so two batch users of one handle would steal
     * each other's completions (that is the API: one reaper owner). */
    for (unsigned i = 0; i < T_THREADS; i++) {
        jobs[i] = (struct thread_job){ h, i, i == 0 };
        threads[i] = g_thread_new("io", io_thread, &jobs[i]);
    }
    for (unsigned i = 0; i < T_THREADS; i++)
        g_thread_join(threads[i]);
    {
        uint8_t *buf = g_malloc(4 * T_BLOCK), *back = g_malloc(4 * T_BLOCK);

        for (unsigned i = 0; i < T_THREADS; i++) {
            fill_pattern(buf, 4 * T_BLOCK, i * 1000 + T_ROUNDS - 1);
            read_ok(h, back, 4 * T_BLOCK, (uint64_t)i * 4 * T_BLOCK);
            g_assert_cmpmem(back, 4 * T_BLOCK, buf, 4 * T_BLOCK);
        }
        g_free(buf);
        g_free(back);
    }
    ops->close(h);
    g_free(path);
}

/* ------------------------------------------------------------ metadata */

static void test_metadata(void)
{
    char *path;
    void *h, *dst;
    uint8_t *data;
    struct stat st;
    int64_t before, n;
    GError *err = NULL;

    if (skip_without_uring())
        return;
    h = create_ok("meta.img", &path);
    data = g_malloc(1 * MiB);
    g_assert_cmpint(size_of(h), ==, 0);
    g_assert_cmpint(allocated_of(h), ==, 0);

    /* Growth from empty allocates the first block, as qemu does. */
    truncate_ok(h, 4 * MiB, DISKIMG_PREALLOC_OFF, 0);
    assert_status(h, 0, 4 * MiB, DISKIMG_BS_DATA, 4096);
    assert_status(h, 4096, 4 * MiB, DISKIMG_BS_ZERO, 4 * MiB - 4096);
    fill_pattern(data, 1 * MiB, 5);
    write_ok(h, data, 1 * MiB, 1 * MiB);
    assert_status(h, 1 * MiB, 4 * MiB, DISKIMG_BS_DATA, 1 * MiB);
    assert_status(h, 5 * MiB, 100, DISKIMG_BS_ZERO, 100);           /* past EOF */

    /* Punching a hole. */
    g_assert_cmpint(ops->flush(h, &err), ==, 0);
    before = allocated_of(h);
    g_assert_cmpint(ops->punch_hole(h, 1 * MiB + 256 * KiB, 512 * KiB, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(allocated_of(h), <=, before - 512 * KiB);
    assert_status(h, 1 * MiB + 256 * KiB, 4 * MiB, DISKIMG_BS_ZERO, 512 * KiB);

    /* Shrinking needs the flag; preallocation modes. */
    g_assert_cmpint(ops->truncate(h, 4096, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    truncate_ok(h, 2 * MiB, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK);
    truncate_ok(h, 4 * MiB, DISKIMG_PREALLOC_FALLOC, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 4 * MiB);
    truncate_ok(h, 7 * MiB, DISKIMG_PREALLOC_FULL, 0);
    assert_status(h, 4 * MiB, 3 * MiB, DISKIMG_BS_DATA, 3 * MiB);
    read_ok(h, data, 1 * MiB, 6 * MiB);
    assert_zero(data, 1 * MiB);
    g_assert_cmpint(ops->allocate(h, 8 * MiB, 64 * KiB, &err), ==, 0);
    g_assert_no_error(err);

    /* copy_file_range between two uring handles. */
    dst = create_ok("meta-copy.img", NULL);
    fill_pattern(data, 1 * MiB, 6);
    write_ok(h, data, 1 * MiB, 0);
    n = ops->copy_range(h, 0, dst, 100, 1 * MiB, &err);
    g_assert_no_error(err);
    if (n > 0) {
        uint8_t *back = g_malloc(1 * MiB);

        g_assert_cmpint(n, ==, 1 * MiB);
        read_ok(dst, back, 1 * MiB, 100);
        g_assert_cmpmem(back, 1 * MiB, data, 1 * MiB);
        g_free(back);
    }
    ops->close(dst);
    ops->close(h);
    g_assert_cmpint(ops->remove(path, &err), ==, 0);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpint(ops->remove(path, &err), ==, 0);   /* already gone: fine */
    g_assert_no_error(err);
    g_free(data);
    g_free(path);
}

/* ---------------------------------------------------------------- locks */

#define CR DISKIMG_PERM_CONSISTENT_READ
#define WR DISKIMG_PERM_WRITE
#define WU DISKIMG_PERM_WRITE_UNCHANGED
#define RS DISKIMG_PERM_RESIZE

static void expect_lock_error(const struct diskimg_io_ops *o, void *h, uint64_t perm,
                              uint64_t shared, const char *what, const char *path)
{
    GError *err = NULL;
    char *expect = g_strdup_printf("Failed to get %s lock: Is another process using the "
                                   "image [%s]?", what, path);

    g_assert_cmpint(o->lock(h, perm, shared, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);
}

static void lock_ok(const struct diskimg_io_ops *o, void *h, uint64_t perm, uint64_t shared)
{
    GError *err = NULL;
    int r = o->lock(h, perm, shared, &err);

    g_assert_no_error(err);
    g_assert_cmpint(r, ==, 0);
}

/* uring and posix handles on one image see each other's locks. */
static void test_locks(void)
{
    char *path;
    void *u, *p, *nolock;
    GError *err = NULL;

    if (skip_without_uring())
        return;
    if (!posix_ops) {
        g_test_skip("posix module not given");
        return;
    }
    u = create_ok("lock.img", &path);
    p = open_with(posix_ops, path, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_WRITEBACK, NULL, &err);
    g_assert_no_error(err);

    /* uring writes, lets others read: posix may read but not write. */
    lock_ok(ops, u, CR | WR, CR | WU);
    expect_lock_error(posix_ops, p, CR | WR, DISKIMG_PERM_ALL, "\"write\"", path);
    expect_lock_error(posix_ops, p, CR, CR | WU, "shared \"write\"", path);
    lock_ok(posix_ops, p, CR, DISKIMG_PERM_ALL);
    /* And the other way round. */
    lock_ok(ops, u, CR, DISKIMG_PERM_ALL);
    lock_ok(posix_ops, p, CR | WR, CR | WU);
    expect_lock_error(ops, u, CR | WR, DISKIMG_PERM_ALL, "\"write\"", path);
    /* Without locking nobody is asked. */
    nolock = open_ok(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_LOCK);
    lock_ok(ops, nolock, CR | WR | RS, 0);
    ops->close(nolock);
    /* Re-creating an image posix uses without sharing resize is refused
     * and leaves it alone. */
    write_ok(u, "keep", 4, 0);
    g_assert_null(open_file(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_TRUNCATE,
                            DISKIMG_CACHE_WRITEBACK, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED);
    g_clear_error(&err);
    g_assert_cmpint(size_of(u), ==, 4);
    /* Closing releases: uring may write now. */
    posix_ops->close(p);
    lock_ok(ops, u, CR | WR, CR | WU);

    /* locking=off: two writers. */
    nolock = open_opts(path, DISKIMG_OPEN_RDWR, "locking=off", &err);
    g_assert_no_error(err);
    lock_ok(ops, nolock, CR | WR | RS, 0);
    ops->close(nolock);
    ops->close(u);
    g_free(path);
}

static void test_schema(void)
{
    diskimg_schema *schema = uring_schema();
    char **keys;

    g_assert_cmpstr(diskimg_schema_name(schema), ==, "uring");
    g_assert_cmpstr(diskimg_schema_kind(schema), ==, "io");
    keys = diskimg_schema_set_keys(schema, "open-options");
    g_assert_cmpstr(keys[0], ==, "locking");
    g_assert_cmpstr(keys[1], ==, "queue-depth");
    g_assert_null(keys[2]);
    g_strfreev(keys);
    diskimg_schema_free(schema);
}

/* ------------------------------------------------------------------ main */

/* Whether this kernel and sandbox let us use io_uring at all. */
static void probe_uring(void)
{
    char *path = tmp_path("probe.img");
    GError *err = NULL;
    void *h = open_file(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                        DISKIMG_CACHE_WRITEBACK, &err);

    if (h) {
        ops->close(h);
    } else {
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
        unavailable = g_strdup(err->message);
        g_clear_error(&err);
    }
    unlink(path);
    g_free(path);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    ops = diskimg_plugin_entry()->ops;
    /* A subprocess re-run uses the directory of its parent. */
    test_tmpdir_create("diskimg-uring", "URING_TEST_DIR");
    if (argc > 2) {
        const struct diskimg_plugin *(*entry)(void);

        posix_dl = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        g_assert_nonnull(posix_dl);
        entry = (const struct diskimg_plugin *(*)(void))dlsym(posix_dl,
                                                              DISKIMG_PLUGIN_ENTRY_SYMBOL);
        g_assert_nonnull(entry);
        posix_ops = entry()->ops;
    }
    probe_uring();

    g_test_add_data_func("/uring/descriptor", argc > 1 ? argv[1] : NULL, test_descriptor);
    g_test_add_func("/uring/unavailable", test_unavailable);
    g_test_add_func("/uring/open-errors", test_open_errors);
    g_test_add_func("/uring/read-write", test_read_write);
    g_test_add_func("/uring/short-io", test_short_io);
    g_test_add_func("/uring/direct-unaligned", test_direct_unaligned);
    g_test_add_func("/uring/direct-concurrent-rmw", test_direct_concurrent_rmw);
    g_test_add_func("/uring/write-zeroes", test_write_zeroes);
    g_test_add_func("/uring/flush-modes", test_flush_modes);
    g_test_add_func("/uring/batch", test_batch);
    g_test_add_func("/uring/batch-errors", test_batch_errors_and_close);
    g_test_add_func("/uring/threads", test_threads);
    g_test_add_func("/uring/metadata", test_metadata);
    g_test_add_func("/uring/locks", test_locks);
    g_test_add_func("/uring/schema", test_schema);

    ret = g_test_run();
    test_tmpdir_remove();
    g_free(unavailable);
    if (posix_dl)
        dlclose(posix_dl);
    return ret;
}
