/* SPDX-License-Identifier: MIT */
/*
 * The copy engine with a sink instead of a target (struct diskimg_copy_sink,
 * what diskimg checksum runs on): ranges arrive in order, cover the source,
 * start on block boundaries, hold the source's bytes, zero ranges come
 * unread, process results reach commit and are released, and misuse or a
 * failing callback is an error.  Also the work count behind convert's bar
 * (diskimg_copy_work, progress_counts_work).  Raw images through the build
 * tree's posix and raw plugins.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <diskimg/core.h>

#include "test-tmpdir.h"

#define BLOCK (64u * 1024)

struct recorder {
    uint8_t *content;          /* the file's bytes */
    uint64_t size;
    uint64_t next;             /* where the next committed range must start */
    unsigned data_ranges, zero_ranges, processed, released;
    uint64_t zero_bytes;
    GMutex lock;
    int fail_at;               /* process fails on this data range (-1: never) */
};

static int rec_process(void *opaque, uint64_t offset, const uint8_t *buf, uint64_t len,
                       void **result, GError **errp)
{
    struct recorder *r = opaque;
    g_mutex_lock(&r->lock);
    int n = (int)r->processed++;
    g_mutex_unlock(&r->lock);
    if (n == r->fail_at) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_IO, "sink failed at %" PRIu64, offset);
        return -1;
    }
    g_assert_cmpmem(buf, len, r->content + offset, len);
    uint64_t *mark = g_new(uint64_t, 1);
    *mark = offset ^ len;      /* commit checks it is this range's result */
    *result = mark;
    return 0;
}

static int rec_commit(void *opaque, uint64_t offset, uint64_t len, const uint8_t *buf,
                      void *result, GError **errp)
{
    (void)errp;
    struct recorder *r = opaque;
    g_assert_cmpuint(offset, ==, r->next);
    g_assert_cmpuint(offset % BLOCK, ==, 0);
    g_assert_true(len % BLOCK == 0 || offset + len == r->size);
    if (buf) {
        r->data_ranges++;
        g_assert_cmpuint(len, <=, DISKIMG_COPY_MAX_DATA);
        g_assert_nonnull(result);
        g_assert_cmpuint(*(uint64_t *)result, ==, offset ^ len);
        g_assert_cmpmem(buf, len, r->content + offset, len);
    } else {
        r->zero_ranges++;
        r->zero_bytes += len;
        g_assert_null(result);
        for (uint64_t i = 0; i < len; i++)
            g_assert_cmpuint(r->content[offset + i], ==, 0);
    }
    r->next = offset + len;
    return 0;
}

static void rec_release(void *opaque, void *result)
{
    struct recorder *r = opaque;
    g_mutex_lock(&r->lock);
    r->released++;
    g_mutex_unlock(&r->lock);
    g_free(result);
}

/* A sparse raw file of `size` bytes: data at odd offsets, the rest holes. */
static char *make_sparse(const char *name, uint64_t size, uint8_t **content)
{
    char *path = test_tmp_path(name);
    *content = g_malloc0(size);
    static const struct { uint64_t off, len; } runs[] = {
        { 0, 100 }, { 3 * BLOCK + 4096, 8192 }, { 10 * BLOCK, 5 * BLOCK / 2 },
        { 40 * BLOCK + 7, 3 * (2u << 20) },
    };
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(runs); i++) {
        for (uint64_t j = 0; j < runs[i].len; j++)
            (*content)[runs[i].off + j] = (uint8_t)(j * 7 + i + 1) | 1;
        g_assert_cmpint(pwrite(fd, *content + runs[i].off, runs[i].len, (off_t)runs[i].off),
                        ==, (ssize_t)runs[i].len);
    }
    close(fd);
    return path;
}

static diskimg_node *open_raw(const char *path)
{
    struct diskimg_open_params p = { .struct_size = sizeof(p), .format = "raw",
                                     .flags = DISKIMG_OPEN_NO_LOCK };
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    return n;
}

static int run_sink(diskimg_node *n, struct recorder *r, uint64_t block, GError **errp)
{
    struct diskimg_copy_sink sink = { .struct_size = sizeof(sink), .block_size = block,
                                      .opaque = r, .process = rec_process,
                                      .commit = rec_commit, .release = rec_release };
    struct diskimg_copy_params p = { .struct_size = sizeof(p), .sources = &n, .n_sources = 1,
                                     .sink = &sink, .parallel = 4 };
    return diskimg_copy(&p, errp);
}

static void test_sink_ranges(void)
{
    const uint64_t size = 200 * BLOCK + 1536;   /* a short last block */
    struct recorder r = { .size = size, .fail_at = -1 };
    g_mutex_init(&r.lock);
    g_autofree char *path = make_sparse("sparse.raw", size, &r.content);
    diskimg_node *n = open_raw(path);
    GError *err = NULL;
    g_assert_cmpint(run_sink(n, &r, BLOCK, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(r.next, ==, size);
    g_assert_cmpuint(r.data_ranges, ==, r.processed);
    g_assert_cmpuint(r.released, ==, r.processed);
    g_assert_cmpuint(r.zero_ranges, >, 0);
    /* Every block without data (the short last one too) came unread. */
    uint64_t holes = 0;
    for (uint64_t off = 0; off < size; off += BLOCK) {
        uint64_t len = MIN(BLOCK, size - off);
        holes += diskimg_is_zero(r.content + off, len) ? len : 0;
    }
    g_assert_cmpuint(holes, ==, 98 * BLOCK + 1536);
    g_assert_cmpuint(r.zero_bytes, ==, holes);
    diskimg_close(n);
    g_free(r.content);
    g_mutex_clear(&r.lock);
}

static void test_sink_failure(void)
{
    const uint64_t size = 200 * BLOCK;
    struct recorder r = { .size = size, .fail_at = 2 };
    g_mutex_init(&r.lock);
    g_autofree char *path = make_sparse("fail.raw", size, &r.content);
    diskimg_node *n = open_raw(path);
    GError *err = NULL;
    g_assert_cmpint(run_sink(n, &r, BLOCK, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_IO);
    g_assert_true(g_str_has_prefix(err->message, "sink failed at"));
    g_clear_error(&err);
    g_assert_cmpuint(r.released, ==, r.processed - 1);   /* every result freed */
    diskimg_close(n);
    g_free(r.content);
    g_mutex_clear(&r.lock);
}

static void test_sink_misuse(void)
{
    struct recorder r = { .size = BLOCK, .fail_at = -1 };
    g_mutex_init(&r.lock);
    g_autofree char *path = make_sparse("misuse.raw", 200 * BLOCK, &r.content);
    diskimg_node *n = open_raw(path);
    GError *err = NULL;
    g_assert_cmpint(run_sink(n, &r, 3000, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "power of two"));
    g_clear_error(&err);

    struct diskimg_copy_sink sink = { .struct_size = sizeof(sink), .block_size = BLOCK,
                                      .opaque = &r, .commit = rec_commit };
    struct diskimg_copy_params p = { .struct_size = sizeof(p), .sources = &n, .n_sources = 1,
                                     .sink = &sink, .target = n };
    g_assert_cmpint(diskimg_copy(&p, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "exactly one of target and sink"));
    g_clear_error(&err);
    p.target = NULL;
    p.compress = true;
    g_assert_cmpint(diskimg_copy(&p, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "a sink takes no compression"));
    g_clear_error(&err);
    g_assert_cmpuint(r.processed + r.data_ranges + r.zero_ranges, ==, 0);
    diskimg_close(n);
    g_free(r.content);
    g_mutex_clear(&r.lock);
}

struct progress_seen {
    uint64_t done, total;
    unsigned updates;
};

static void observe(const struct diskimg_progress_state *s, void *opaque)
{
    struct progress_seen *seen = opaque;
    if (s->event == DISKIMG_PROGRESS_UPDATED)
        seen->updates++;
    seen->done = s->done;
    seen->total = s->total;
}

/* The bytes block status reports as neither hole nor zero: what a copy to
 * a fresh sparse target must read and write. */
static uint64_t data_bytes(diskimg_node *n, uint64_t size)
{
    uint64_t sum = 0;
    for (uint64_t off = 0; off < size;) {
        struct diskimg_extent e = { .struct_size = sizeof(e) };
        GError *err = NULL;
        g_assert_cmpint(diskimg_node_block_status_chain(n, off, size - off, &e, NULL, &err),
                        ==, 0);
        g_assert_no_error(err);
        if (!(e.flags & DISKIMG_BS_ZERO))
            sum += e.length;
        off += e.length;
    }
    return sum;
}

static void test_copy_work(void)
{
    const uint64_t size = 200 * BLOCK;
    uint8_t *content;
    g_autofree char *path = make_sparse("work.raw", size, &content);
    g_autofree char *out = test_tmp_path("work-out.raw");
    diskimg_node *n = open_raw(path);
    GError *err = NULL;
    struct diskimg_create_params cp = { .struct_size = sizeof(cp), .format = "raw",
                                        .size = size };
    g_assert_cmpint(diskimg_create(out, &cp, &err), ==, 0);
    struct diskimg_open_params op = { .struct_size = sizeof(op), .format = "raw",
                                      .flags = DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_LOCK };
    diskimg_node *t = diskimg_open(out, &op, &err);
    g_assert_no_error(err);

    struct diskimg_copy_params p = { .struct_size = sizeof(p), .sources = &n, .n_sources = 1,
                                     .target = t, .target_is_zero = true, .sparse_size = 4096,
                                     .parallel = 4, .progress_counts_work = true };
    uint64_t work = 0;
    g_assert_cmpint(diskimg_copy_work(&p, &work, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(work, ==, data_bytes(n, size));
    g_assert_cmpuint(work, >=, 100 + 8192 + 5 * BLOCK / 2 + 3 * (2u << 20));
    g_assert_cmpuint(work, <, size / 2);

    /* The copy counts exactly that work, and nothing for the holes. */
    struct progress_seen seen = { 0 };
    diskimg_set_progress_observer(observe, &seen);
    p.progress = diskimg_progress_new(DISKIMG_PROGRESS_QUIET, work);
    g_assert_cmpint(diskimg_copy(&p, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(seen.done, ==, work);
    g_assert_cmpuint(seen.total, ==, work);
    g_assert_cmpuint(seen.updates, >=, 4);
    diskimg_progress_finish(p.progress);

    /* Without progress_counts_work every byte of the range counts. */
    seen = (struct progress_seen){ 0 };
    p.progress_counts_work = false;
    p.progress = diskimg_progress_new(DISKIMG_PROGRESS_QUIET, size);
    g_assert_cmpint(diskimg_copy(&p, &err), ==, 0);
    g_assert_cmpuint(seen.done, ==, size);
    diskimg_progress_finish(p.progress);
    diskimg_set_progress_observer(NULL, NULL);

    /* A copy with bad params fails its work count the same way. */
    p.sink = &(struct diskimg_copy_sink){ .struct_size = sizeof(struct diskimg_copy_sink) };
    g_assert_cmpint(diskimg_copy_work(&p, &work, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "exactly one of target and sink"));
    g_clear_error(&err);
    diskimg_close(t);
    diskimg_close(n);
    g_free(content);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    test_tmpdir_create("diskimg-copy-sink", NULL);
    g_test_add_func("/copy/sink/ranges", test_sink_ranges);
    g_test_add_func("/copy/sink/failure", test_sink_failure);
    g_test_add_func("/copy/sink/misuse", test_sink_misuse);
    g_test_add_func("/copy/work", test_copy_work);
    int ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
