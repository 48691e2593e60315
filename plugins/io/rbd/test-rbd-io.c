/* SPDX-License-Identifier: MIT */
/*
 * test-rbd-io.c — the rbd plugin's ops against a real cluster: growth on
 * write, reads past the end, zeroes with and without unmap, discard, block
 * status (and its kept map going stale on writes), the batch path on
 * librbd's aio, many threads on one handle, snapshots read-only.
 *
 *     test-rbd-io MODULE      with CEPH_CONF (and CEPH_POOL, default rbd)
 *                             naming the cluster; RBD_TEST_PREFIX prefixes
 *                             every image made (test-rbd.sh removes them)
 *
 * Run by test-rbd.sh once its cluster is up; skipped without CEPH_CONF.
 */
#include <dlfcn.h>
#include <string.h>

#include "io-test.h"

#define OBJ (4 * MiB)    /* the cluster's default object size */

static const char *pool;
static const char *prefix;

static char *image_name(const char *what)
{
    return g_strdup_printf("rbd:%s/%s-%s", pool, prefix, what);
}

static void *create_image(const char *what, uint64_t size)
{
    g_autofree char *name = image_name(what);
    void *h = open_ok(name, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);
    g_assert_cmpint(size_of(h), ==, 0);
    if (size)
        truncate_ok(h, size, DISKIMG_PREALLOC_OFF, 0);
    return h;
}

static void test_grow_and_eof(void)
{
    void *h = create_image("grow", 0);
    g_autofree uint8_t *buf = g_malloc(128 * KiB), *back = g_malloc(128 * KiB);
    fill_pattern(buf, 64 * KiB, 1);
    /* A write past the end grows the image, as qemu's driver does. */
    write_ok(h, buf, 64 * KiB, 1 * MiB);
    g_assert_cmpint(size_of(h), ==, 1 * MiB + 64 * KiB);
    /* A read across the end returns the data, then zeroes. */
    memset(back, 0xee, 128 * KiB);
    read_ok(h, back, 128 * KiB, 1 * MiB + 32 * KiB);
    g_assert_cmpmem(back, 32 * KiB, buf + 32 * KiB, 32 * KiB);
    assert_zero(back + 32 * KiB, 96 * KiB);
    /* Entirely past the end: zeroes. */
    memset(back, 0xee, 4 * KiB);
    read_ok(h, back, 4 * KiB, 8 * MiB);
    assert_zero(back, 4 * KiB);
    ops->close(h);
}

static void test_zeroes_and_discard(void)
{
    void *h = create_image("zero", 16 * MiB);
    g_autofree uint8_t *buf = g_malloc(16 * MiB);
    fill_pattern(buf, 16 * MiB, 2);
    write_ok(h, buf, 16 * MiB, 0);
    GError *err = NULL;
    /* Partial object, kept allocated (no MAY_UNMAP): reads zero, stays data. */
    g_assert_cmpint(ops->write_zeroes(h, 1 * MiB, 1 * MiB, 0, &err), ==, 0);
    g_assert_no_error(err);
    /* A whole object with MAY_UNMAP: freed, so a hole. */
    g_assert_cmpint(ops->write_zeroes(h, OBJ, OBJ, DISKIMG_WRITE_MAY_UNMAP, &err), ==, 0);
    g_assert_no_error(err);
    /* Discard of a whole object: a hole too. */
    g_assert_cmpint(ops->punch_hole(h, 3 * OBJ, OBJ, &err), ==, 0);
    g_assert_no_error(err);
    memset(buf + 1 * MiB, 0, 1 * MiB);
    memset(buf + OBJ, 0, OBJ);
    memset(buf + 3 * OBJ, 0, OBJ);
    g_autofree uint8_t *back = g_malloc(16 * MiB);
    read_ok(h, back, 16 * MiB, 0);
    g_assert_true(memcmp(back, buf, 16 * MiB) == 0);
    assert_status(h, 0, 16 * MiB, DISKIMG_BS_DATA, OBJ);
    assert_status(h, OBJ, 16 * MiB - OBJ, DISKIMG_BS_ZERO, OBJ);
    assert_status(h, 2 * OBJ, 8 * MiB, DISKIMG_BS_DATA, OBJ);
    assert_status(h, 3 * OBJ, OBJ, DISKIMG_BS_ZERO, OBJ);
    ops->close(h);
}

static void test_status_goes_stale(void)
{
    void *h = create_image("status", 64 * MiB);
    uint8_t buf[4096];
    fill_pattern(buf, sizeof(buf), 3);
    assert_status(h, 0, 64 * MiB, DISKIMG_BS_ZERO, 64 * MiB);
    write_ok(h, buf, sizeof(buf), 20 * MiB);
    /* The kept map of the empty image must not answer after the write.
     * (A store without sparse objects reports data from the object start.) */
    struct diskimg_extent e = status_of(h, 0, 64 * MiB);
    g_assert_cmphex(e.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==, DISKIMG_BS_ZERO);
    g_assert_cmpuint(e.length, >=, 5 * OBJ);
    g_assert_cmpuint(e.length, <=, 20 * MiB);
    e = status_of(h, 20 * MiB, 64 * MiB);
    g_assert_cmphex(e.flags & DISKIMG_BS_DATA, ==, DISKIMG_BS_DATA);
    g_assert_cmpuint(e.length, ==, 4096);
    assert_status(h, 20 * MiB + 4096, 44 * MiB - 4096, DISKIMG_BS_ZERO, 44 * MiB - 4096);
    /* Requests shorter than a run get exactly what they asked. */
    assert_status(h, 30 * MiB, 1 * MiB, DISKIMG_BS_ZERO, 1 * MiB);
    ops->close(h);
}

static void test_batch(void)
{
    enum { N = 32, LEN = 64 * KiB };
    void *h = create_image("batch", 0);
    g_autofree uint8_t *data = g_malloc(N * LEN), *back = g_malloc(N * LEN + LEN);
    fill_pattern(data, N * LEN, 4);
    struct diskimg_io_request reqs[N + 2], *ptrs[N + 2], *done[N + 2];
    for (unsigned i = 0; i < N; i++) {
        /* Out of order, all past the end: the image grows under them. */
        unsigned slot = (i * 7) % N;
        reqs[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .buf = data + slot * LEN,
                                               .len = LEN, .offset = (uint64_t)slot * LEN };
        ptrs[i] = &reqs[i];
    }
    reqs[N] = (struct diskimg_io_request){ .op = DISKIMG_IO_FLUSH };
    ptrs[N] = &reqs[N];
    submit_ok(h, ptrs, N + 1);
    g_assert_cmpuint(reap_all(h, done, N + 1), ==, N + 1);
    for (unsigned i = 0; i <= N; i++)
        g_assert_cmpint(reqs[i].result, ==, 0);
    g_assert_cmpint(size_of(h), ==, N * LEN);
    /* Read back in one batch, the last request across the end. */
    for (unsigned i = 0; i < N; i++) {
        reqs[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_READ, .buf = back + i * LEN,
                                               .len = LEN, .offset = (uint64_t)i * LEN };
        ptrs[i] = &reqs[i];
    }
    memset(back + N * LEN, 0xee, LEN);
    reqs[N] = (struct diskimg_io_request){ .op = DISKIMG_IO_READ, .buf = back + N * LEN,
                                           .len = LEN, .offset = (uint64_t)N * LEN };
    submit_ok(h, ptrs, N + 1);
    g_assert_cmpuint(reap_all(h, done, N + 1), ==, N + 1);
    for (unsigned i = 0; i <= N; i++)
        g_assert_cmpint(reqs[i].result, ==, 0);
    g_assert_true(memcmp(back, data, N * LEN) == 0);
    assert_zero(back + N * LEN, LEN);
    /* Zeroes through the batch path. */
    reqs[0] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE_ZEROES, .len = LEN,
                                           .offset = 3 * LEN, .flags = DISKIMG_WRITE_MAY_UNMAP };
    submit_ok(h, ptrs, 1);
    g_assert_cmpuint(reap_all(h, done, 1), ==, 1);
    g_assert_cmpint(reqs[0].result, ==, 0);
    read_ok(h, back, LEN, 3 * LEN);
    assert_zero(back, LEN);
    /* A FUA write past the end, beside a plain one. */
    reqs[0] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .buf = data, .len = LEN,
                                           .offset = (uint64_t)N * LEN,
                                           .flags = DISKIMG_WRITE_FUA };
    reqs[1] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .buf = data + LEN,
                                           .len = LEN, .offset = (uint64_t)(N + 1) * LEN };
    ptrs[1] = &reqs[1];
    submit_ok(h, ptrs, 2);
    g_assert_cmpuint(reap_all(h, done, 2), ==, 2);
    g_assert_cmpint(reqs[0].result, ==, 0);
    g_assert_cmpint(reqs[1].result, ==, 0);
    read_ok(h, back, 2 * LEN, (uint64_t)N * LEN);
    g_assert_true(memcmp(back, data, 2 * LEN) == 0);
    ops->close(h);
}

struct worker {
    void *h;
    unsigned id;
};

enum { WORKERS = 8, WORKER_SPAN = 2 * MiB, WORKER_IO = 128 * KiB };

/* Each worker writes its own span, appending past the end as it goes, and
 * reads every block back. */
static gpointer worker_run(gpointer opaque)
{
    struct worker *w = opaque;
    g_autofree uint8_t *buf = g_malloc(WORKER_IO), *back = g_malloc(WORKER_IO);
    for (uint64_t off = 0; off < WORKER_SPAN; off += WORKER_IO) {
        uint64_t at = (uint64_t)w->id * WORKER_SPAN + off;
        fill_pattern(buf, WORKER_IO, (unsigned)(at / WORKER_IO));
        write_ok(w->h, buf, WORKER_IO, at);
        read_ok(w->h, back, WORKER_IO, at);
        g_assert_true(memcmp(buf, back, WORKER_IO) == 0);
    }
    return NULL;
}

static void test_threads(void)
{
    void *h = create_image("threads", 0);
    struct worker w[WORKERS];
    GThread *t[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){ .h = h, .id = i };
        t[i] = g_thread_new("rbd-worker", worker_run, &w[i]);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(size_of(h), ==, WORKERS * WORKER_SPAN);
    ops->close(h);
}

static void test_snapshot_read_only(void)
{
    g_autofree char *name = g_strdup_printf("rbd:%s/%s-grow@nosuch", pool, prefix);
    GError *err = NULL;
    g_assert_null(io_open(name, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_WRITEBACK, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_assert_cmpstr(err->message, ==, "rbd snapshots are read-only");
    g_clear_error(&err);
    g_assert_null(io_open(name, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                          DISKIMG_CACHE_WRITEBACK, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "Can't use snapshot name for image creation");
    g_clear_error(&err);
}

/* io_test_init would probe the plugin with a local scratch file, which
 * an rbd handle never is: load the module here and use the helpers. */
static void load_module(const char *path)
{
    io_plugin.path = path;
    io_plugin.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!io_plugin.dl)
        g_error("cannot load %s: %s", path, dlerror());
    const struct diskimg_plugin *(*entry)(void) =
        (const struct diskimg_plugin *(*)(void))dlsym(io_plugin.dl, DISKIMG_PLUGIN_ENTRY_SYMBOL);
    g_assert_nonnull(entry);
    io_plugin.desc = entry();
    g_assert_cmpstr(io_plugin.desc->name, ==, "rbd");
    io_plugin.ops = io_plugin.desc->ops;
    ops = io_plugin.ops;
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (argc < 2)
        g_error("usage: %s RBD_MODULE", g_get_prgname());
    pool = g_getenv("CEPH_POOL") ? g_getenv("CEPH_POOL") : "rbd";
    prefix = g_getenv("RBD_TEST_PREFIX") ? g_getenv("RBD_TEST_PREFIX") : "diskimg-io";
    if (!g_getenv("CEPH_CONF")) {
        g_print("1..0 # SKIP CEPH_CONF names no cluster\n");
        return 77;
    }
    load_module(argv[1]);
    g_test_add_func("/rbd/grow-and-eof", test_grow_and_eof);
    g_test_add_func("/rbd/zeroes-and-discard", test_zeroes_and_discard);
    g_test_add_func("/rbd/status-goes-stale", test_status_goes_stale);
    g_test_add_func("/rbd/batch", test_batch);
    g_test_add_func("/rbd/threads", test_threads);
    g_test_add_func("/rbd/snapshot-read-only", test_snapshot_read_only);
    int ret = g_test_run();
    dlclose(io_plugin.dl);
    return ret;
}
