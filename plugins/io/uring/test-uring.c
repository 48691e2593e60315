/* SPDX-License-Identifier: MIT */
/*
 * test-uring.c — what only the uring I/O plugin does: its rings (queue
 * depth, the registered file) and its refusal where the kernel refuses
 * io_uring, which lets the core fall back to posix.  Everything every io
 * plugin must do is checked by tests/io-contract, run on uring as
 * io-contract-uring (and again with a one-entry ring).
 *
 *     test-uring URING_MODULE
 *
 * Where the kernel refuses io_uring every test but the descriptor, schema
 * and sandbox ones is skipped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "io-test.h"

/* ------------------------------------------------------------ the rings */

/* What /proc says about one io_uring instance of this process. */
struct ring_info {
    unsigned sq_entries;
    unsigned user_files;        /* registered files */
};

static unsigned fdinfo_field(const char *text, const char *key)
{
    const char *at = strstr(text, key);

    return at ? (unsigned)g_ascii_strtoull(at + strlen(key), NULL, 0) : 0;
}

/* The io_uring instances this process has open, into info[] (up to max);
 * returns how many there are. */
static unsigned list_rings(struct ring_info *info, unsigned max)
{
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    const char *name;
    unsigned n = 0;

    while (d && (name = g_dir_read_name(d)) != NULL) {
        char *link = g_strdup_printf("/proc/self/fd/%s", name);
        char *target = g_file_read_link(link, NULL);
        char *fdinfo = g_strdup_printf("/proc/self/fdinfo/%s", name), *text = NULL;

        if (target && strcmp(target, "anon_inode:[io_uring]") == 0 &&
            g_file_get_contents(fdinfo, &text, NULL, NULL)) {
            if (n < max) {
                info[n].sq_entries = fdinfo_field(text, "SqMask:") + 1;
                info[n].user_files = fdinfo_field(text, "UserFiles:");
            }
            n++;
        }
        g_free(text);
        g_free(fdinfo);
        g_free(target);
        g_free(link);
    }
    if (d)
        g_dir_close(d);
    return n;
}

static unsigned ring_count(void)
{
    return list_rings(NULL, 0);
}

/* Opens a fresh file with queue-depth=depth. */
static void *open_depth(const char *name, unsigned depth)
{
    char *path = io_tmp_path(name);
    char *opts = g_strdup_printf("queue-depth=%u", depth);
    GError *err = NULL;
    void *h = io_open_opts(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE,
                           DISKIMG_CACHE_WRITEBACK, opts, &err);

    g_assert_no_error(err);
    g_free(opts);
    g_free(path);
    return h;
}

/* n reads of 4 KiB through the batch path, all successful. */
static void batch_reads(void *h, unsigned n)
{
    struct diskimg_io_request *reqs = g_new0(struct diskimg_io_request, n);
    struct diskimg_io_request **ptrs = g_new(struct diskimg_io_request *, n);
    uint8_t *bufs = g_malloc((size_t)n * 4096);

    for (unsigned i = 0; i < n; i++) {
        reqs[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_READ, .len = 4096,
                                               .buf = bufs + (size_t)i * 4096,
                                               .offset = (uint64_t)i * 4096, .result = 1 };
        ptrs[i] = &reqs[i];
    }
    submit_ok(h, ptrs, n);
    g_assert_cmpuint(reap_all(h, ptrs, n), ==, n);
    for (unsigned i = 0; i < n; i++)
        g_assert_cmpint(reqs[i].result, ==, 0);
    g_free(bufs);
    g_free(ptrs);
    g_free(reqs);
}

/* A handle's ring has queue-depth entries (the kernel rounds up to a
 * power of two) and its file registered; a batch larger than the ring
 * still completes. */
static void test_queue_depth(void)
{
    static const unsigned depths[] = { 1, 32, 128 };

    for (size_t i = 0; i < G_N_ELEMENTS(depths); i++) {
        struct ring_info info[2];
        void *h;

        g_assert_cmpuint(ring_count(), ==, 0);
        h = open_depth("depth.img", depths[i]);
        g_assert_cmpuint(list_rings(info, 2), ==, 1);
        g_assert_cmpuint(info[0].sq_entries, ==, depths[i]);
        g_assert_cmpuint(info[0].user_files, ==, 1);
        batch_reads(h, 3 * depths[i] + 1);
        ops->close(h);
    }
    g_assert_cmpuint(ring_count(), ==, 0);
}

/* ---------------------------------------------------------- thread rings */

/* Synchronous requests run on a ring of the calling thread: 2 entries. */
#define THREAD_RING_ENTRIES 2

/* How many of this process's rings are thread rings, each checked to
 * have the file registered. */
static unsigned thread_ring_count(void)
{
    struct ring_info info[128];
    unsigned n = MIN(list_rings(info, 128), 128), found = 0;

    for (unsigned i = 0; i < n; i++) {
        if (info[i].sq_entries != THREAD_RING_ENTRIES)
            continue;
        g_assert_cmpuint(info[i].user_files, ==, 1);
        found++;
    }
    return found;
}

static void read_one_block(void *h)
{
    uint8_t buf[4096];

    read_ok(h, buf, sizeof(buf), 0);
}

/* A thread that reads through a handle, then waits for word to exit. */
struct reader {
    void *h;
    GAsyncQueue *started, *go;
    GThread *thread;
};

static gpointer reader_main(gpointer data)
{
    struct reader *r = data;

    read_one_block(r->h);
    g_async_queue_push(r->started, r);
    g_async_queue_pop(r->go);
    /* The handle may be closed meanwhile: its ring went with it.  A new
     * handle gets a new ring (and the dead entry is pruned). */
    if (r->h == NULL) {
        void *other = create_ok("thread-ring-other.img", NULL);

        read_one_block(other);
        ops->close(other);
    }
    return NULL;
}

static void readers_start(struct reader *r, unsigned n, void *h, GAsyncQueue *started)
{
    for (unsigned i = 0; i < n; i++) {
        r[i] = (struct reader){ .h = h, .started = started, .go = g_async_queue_new() };
        r[i].thread = g_thread_new("reader", reader_main, &r[i]);
    }
    for (unsigned i = 0; i < n; i++)
        g_async_queue_pop(started);
}

static void readers_finish(struct reader *r, unsigned n, void *h)
{
    for (unsigned i = 0; i < n; i++) {
        r[i].h = h;
        g_async_queue_push(r[i].go, &r[i]);
        g_thread_join(r[i].thread);
        g_async_queue_unref(r[i].go);
    }
}

/* Rings appear at a thread's first synchronous request, one per thread
 * and handle, and go when the thread exits or the handle closes. */
static void test_thread_rings(void)
{
    GAsyncQueue *started = g_async_queue_new();
    void *h = create_ok("thread-ring.img", NULL), *h2;
    struct reader r[4];

    g_assert_cmpuint(thread_ring_count(), ==, 0);       /* none before use */
    read_one_block(h);
    read_one_block(h);
    g_assert_cmpuint(thread_ring_count(), ==, 1);       /* reused */
    h2 = create_ok("thread-ring2.img", NULL);
    read_one_block(h2);
    g_assert_cmpuint(thread_ring_count(), ==, 2);       /* one per handle */
    ops->close(h2);
    g_assert_cmpuint(thread_ring_count(), ==, 1);

    readers_start(r, 4, h, started);
    g_assert_cmpuint(thread_ring_count(), ==, 5);
    readers_finish(r, 4, h);                            /* thread exit */
    g_assert_cmpuint(thread_ring_count(), ==, 1);

    readers_start(r, 2, h, started);
    ops->close(h);                                      /* handle close */
    g_assert_cmpuint(ring_count(), ==, 0);
    readers_finish(r, 2, NULL);
    g_assert_cmpuint(ring_count(), ==, 0);
    g_async_queue_unref(started);
}

/* Threads beyond MAX_THREAD_RINGS (64) per handle share its ring rather
 * than take yet more file descriptors. */
static void test_thread_ring_limit(void)
{
    enum { MAX_THREAD_RINGS = 64, READERS = MAX_THREAD_RINGS + 6 };
    GAsyncQueue *started = g_async_queue_new();
    struct reader *r = g_new(struct reader, READERS);
    void *h = create_ok("thread-ring-limit.img", NULL);

    readers_start(r, READERS, h, started);
    g_assert_cmpuint(thread_ring_count(), ==, MAX_THREAD_RINGS);
    readers_finish(r, READERS, h);
    g_assert_cmpuint(thread_ring_count(), ==, 0);
    ops->close(h);
    g_free(r);
    g_async_queue_unref(started);
}

/* Lowers the fd limit to the fds open now: io_uring_setup then fails with
 * EMFILE (as on a process out of descriptors). */
static void limit_fds_to_open_ones(struct rlimit *saved)
{
    int lowest_free = dup(0);
    struct rlimit rl;

    g_assert_cmpint(lowest_free, >=, 0);
    close(lowest_free);
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, saved), ==, 0);
    rl = (struct rlimit){ (rlim_t)lowest_free, saved->rlim_max };
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &rl), ==, 0);
}

struct writer {
    void *h;
    unsigned id;
};

/* Writes and reads back its own 8 KiB, 100 times. */
static gpointer writer_main(gpointer data)
{
    struct writer *w = data;
    uint8_t buf[8192], back[8192];

    for (unsigned round = 0; round < 100; round++) {
        fill_pattern(buf, sizeof(buf), w->id * 100 + round);
        write_ok(w->h, buf, sizeof(buf), w->id * sizeof(buf));
        read_ok(w->h, back, sizeof(back), w->id * sizeof(buf));
        g_assert_cmpmem(back, sizeof(back), buf, sizeof(buf));
    }
    return NULL;
}

/* Without file descriptors for thread rings, synchronous requests of many
 * threads share the handle's ring. */
static void test_thread_ring_refused(void)
{
    struct writer w[4];
    GThread *t[4];
    struct rlimit saved;
    void *h;

    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        return;
    }
    h = create_ok("no-thread-ring.img", NULL);
    limit_fds_to_open_ones(&saved);
    for (unsigned i = 0; i < 4; i++) {
        w[i] = (struct writer){ h, i };
        t[i] = g_thread_new("writer", writer_main, &w[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &saved), ==, 0);
    g_assert_cmpuint(ring_count(), ==, 1);
    g_assert_cmpuint(thread_ring_count(), ==, 0);
    ops->close(h);
}

/* ------------------------------------------------------------- sandbox */

/* Refuses io_uring_setup with ENOSYS from now on, as seccomp sandboxes
 * do; false where no filter can be installed. */
static bool refuse_io_uring(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = G_N_ELEMENTS(filter), .filter = filter };

    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* Where io_uring is refused, open fails with NOT_SUPPORTED (the core's
 * cue to fall back to posix with a notice) and leaves the file system
 * alone. */
static void test_unavailable(void)
{
    char *path;
    GError *err = NULL;

    if (!g_test_subprocess()) {
        g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
        g_test_trap_assert_passed();
        return;
    }
    if (!refuse_io_uring()) {
        g_test_skip("cannot install a seccomp filter here");
        return;
    }
    path = io_tmp_path("sandboxed.img");
    g_assert_null(io_open(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                          DISKIMG_CACHE_WRITEBACK, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_assert_cmpstr(err->message, ==, "io_uring is not available: Function not implemented");
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_clear_error(&err);
    g_free(path);
}

/* -------------------------------------------------------------- schema */

static void test_thread_model(void)
{
    g_assert_cmpuint(io_plugin.desc->thread_model, ==, DISKIMG_THREAD_PARALLEL);
}

static void test_schema(void)
{
    static const char *const bad_depths[] = { "queue-depth=0", "queue-depth=4097" };
    diskimg_schema *schema = io_schema();
    char **keys = diskimg_schema_set_keys(schema, "open-options");

    g_assert_cmpuint(g_strv_length(keys), ==, 2);
    g_assert_cmpstr(keys[0], ==, "locking");
    g_assert_cmpstr(keys[1], ==, "queue-depth");
    g_strfreev(keys);
    /* The schema stops a queue depth out of range; open checks again for
     * callers that pass no options object. */
    for (size_t i = 0; i < G_N_ELEMENTS(bad_depths); i++) {
        diskimg_options *o = diskimg_options_new(schema, "open-options");
        GError *err = NULL;

        g_assert_cmpint(diskimg_options_parse(o, bad_depths[i], &err), ==, -1);
        g_assert_nonnull(err);
        g_clear_error(&err);
        diskimg_options_free(o);
    }
    diskimg_schema_free(schema);
}

int main(int argc, char **argv)
{
    io_test_init(&argc, &argv, "diskimg-uring");
    io_test_add("thread-model", test_thread_model, true);
    io_test_add("schema", test_schema, true);
    io_test_add("unavailable", test_unavailable, true);
    io_test_add("queue-depth", test_queue_depth, false);
    io_test_add("thread-rings", test_thread_rings, false);
    io_test_add("thread-ring-limit", test_thread_ring_limit, false);
    io_test_add("thread-ring-refused", test_thread_ring_refused, false);
    return io_test_run();
}
