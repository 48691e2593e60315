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
    return io_test_run();
}
