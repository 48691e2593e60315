/* SPDX-License-Identifier: MIT */
/*
 * contract-batch.c — the batch path (submit/reap): every request comes
 * back exactly once with its result, reap never waits for more than is
 * in flight, bad batches are refused whole, close lets queued requests
 * finish; and many threads on one handle, synchronous and batched.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <string.h>

#include "contract.h"

enum { B_N = 32, B_BLOCK = 64 * 1024 };

struct simple_batch {
    struct diskimg_io_request reqs[B_N + 2], *ptrs[B_N + 2], *done[B_N + 2];
    uint8_t *bufs, *back;       /* B_N blocks each */
};

/* B_N writes, each reaped once (at least one per reap), successful. */
static void batch_writes(void *h, struct simple_batch *b)
{
    for (unsigned i = 0; i < B_N; i++) {
        fill_pattern(b->bufs + (size_t)i * B_BLOCK, B_BLOCK, i);
        b->reqs[i] = (struct diskimg_io_request){
            .op = DISKIMG_IO_WRITE, .buf = b->bufs + (size_t)i * B_BLOCK, .len = B_BLOCK,
            .offset = (uint64_t)i * B_BLOCK, .result = 1, .user = GUINT_TO_POINTER(i),
        };
        b->ptrs[i] = &b->reqs[i];
    }
    submit_ok(h, b->ptrs, B_N);
    g_assert_cmpuint(reap_all(h, b->done, B_N), ==, B_N);
    for (unsigned i = 0; i < B_N; i++)
        g_assert_cmpint(b->done[i]->result, ==, 0);
}

/* Reads of those blocks, a zeroing after them and a flush in one batch,
 * all reaped by one call that waits for all of them. */
static void batch_reads_zero_flush(void *h, struct simple_batch *b)
{
    GError *err = NULL;

    for (unsigned i = 0; i < B_N; i++) {
        b->reqs[i] = (struct diskimg_io_request){
            .op = DISKIMG_IO_READ, .buf = b->back + (size_t)i * B_BLOCK, .len = B_BLOCK,
            .offset = (uint64_t)i * B_BLOCK, .result = 1,
        };
    }
    b->reqs[B_N] = (struct diskimg_io_request){
        .op = DISKIMG_IO_WRITE_ZEROES, .offset = (uint64_t)B_N * B_BLOCK, .len = B_BLOCK,
    };
    b->reqs[B_N + 1] = (struct diskimg_io_request){ .op = DISKIMG_IO_FLUSH };
    b->ptrs[B_N] = &b->reqs[B_N];
    b->ptrs[B_N + 1] = &b->reqs[B_N + 1];
    submit_ok(h, b->ptrs, B_N + 2);
    g_assert_cmpint(ops->reap(h, b->done, B_N + 2, B_N + 2, &err), ==, B_N + 2);
    for (unsigned i = 0; i < B_N + 2; i++)
        g_assert_cmpint(b->done[i]->result, ==, 0);
    g_assert_cmpmem(b->back, (size_t)B_N * B_BLOCK, b->bufs, (size_t)B_N * B_BLOCK);
    g_assert_cmpint(size_of(h), ==, (int64_t)(B_N + 1) * B_BLOCK);
}

static void test_batch(void)
{
    void *h = create_ok("batch.img", NULL);
    struct simple_batch *b = g_new0(struct simple_batch, 1);
    GError *err = NULL;

    b->bufs = g_malloc((size_t)B_N * B_BLOCK);
    b->back = g_malloc((size_t)B_N * B_BLOCK);
    batch_writes(h, b);
    /* Nothing in flight: reap returns at once, even when asked to wait. */
    io_watchdog_start("reap", 5);
    g_assert_cmpint(ops->reap(h, b->done, B_N, B_N, &err), ==, 0);
    io_watchdog_stop();
    batch_reads_zero_flush(h, b);
    /* A bad request is refused at submit time. */
    b->reqs[0] = (struct diskimg_io_request){ .op = 99 };
    g_assert_cmpint(ops->submit(h, b->ptrs, 1, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    ops->close(h);
    g_free(b->bufs);
    g_free(b->back);
    g_free(b);
}

/* ------------------------------------------------------------ mixed batch */

enum { M_N = 256, M_BLOCK = 16 * 1024, M_AREA = 64 * M_BLOCK };

struct mixed {
    struct diskimg_io_request reqs[M_N], *ptrs[M_N], *done[M_N];
    uint8_t *src, *reads, *writes;
};

/* Request i: reads of the written area, writes to a second one, zeroings
 * of a third, and flushes. */
static void plan_mixed(struct mixed *m, unsigned i)
{
    struct diskimg_io_request *r = &m->reqs[i];

    *r = (struct diskimg_io_request){ .user = GUINT_TO_POINTER(i), .result = 1 };
    m->ptrs[i] = r;
    if (i % 2 == 0) {
        r->op = DISKIMG_IO_READ;
        r->buf = m->reads + (size_t)i * M_BLOCK;
        r->len = M_BLOCK;
        r->offset = (uint64_t)(i / 4 % 64) * M_BLOCK;
    } else if (i % 8 != 7) {
        r->op = DISKIMG_IO_WRITE;
        r->buf = m->writes + (size_t)i * M_BLOCK;
        r->len = M_BLOCK;
        r->offset = M_AREA + (uint64_t)(i / 8 * 3 + i % 8 / 2) % 64 * M_BLOCK;
        fill_pattern(r->buf, M_BLOCK, (unsigned)(r->offset / M_BLOCK));
    } else if (i % 16 == 7) {
        r->op = DISKIMG_IO_WRITE_ZEROES;
        r->offset = 2 * M_AREA + (uint64_t)(i / 16) * M_BLOCK;
        r->len = M_BLOCK;
    } else {
        r->op = DISKIMG_IO_FLUSH;
    }
}

/* Reaps all M_N in uneven portions (max 1..7, min 0..2); each comes back
 * exactly once, successful. */
static void reap_mixed(void *h, struct mixed *m)
{
    unsigned seen[M_N] = { 0 }, got = 0, round = 0;
    GError *err = NULL;

    while (got < M_N) {
        unsigned max = 1 + round % 7, min = round % 3;
        int r = ops->reap(h, m->done + got, MIN(max, M_N - got), MIN(min, max), &err);

        g_assert_no_error(err);
        g_assert_cmpint(r, >=, 0);
        got += (unsigned)r;
        round++;
    }
    g_assert_cmpint(ops->reap(h, m->done, 1, 1, &err), ==, 0);   /* nothing left */
    for (unsigned i = 0; i < M_N; i++) {
        unsigned id = GPOINTER_TO_UINT(m->done[i]->user);

        g_assert_cmpuint(id, <, M_N);
        g_assert_true(m->done[i] == &m->reqs[id]);
        g_assert_cmpuint(seen[id]++, ==, 0);
        g_assert_cmpint(m->done[i]->result, ==, 0);
    }
}

static void check_mixed(void *h, const struct mixed *m)
{
    uint8_t *back = g_malloc(3 * M_AREA);

    read_ok(h, back, 3 * M_AREA, 0);
    g_assert_cmpmem(back, M_AREA, m->src, M_AREA);
    for (unsigned i = 0; i < M_N; i++) {
        const struct diskimg_io_request *r = &m->reqs[i];

        if (r->op == DISKIMG_IO_READ)
            g_assert_cmpmem(r->buf, M_BLOCK, m->src + r->offset, M_BLOCK);
        else if (r->op == DISKIMG_IO_WRITE)
            g_assert_cmpmem(back + r->offset, M_BLOCK, r->buf, M_BLOCK);
        else if (r->op == DISKIMG_IO_WRITE_ZEROES)
            assert_zero(back + r->offset, M_BLOCK);
    }
    g_free(back);
}

/* 256 mixed requests (more than a small queue holds), submitted in two
 * halves so that completions of the first arrive while the second is
 * queued. */
static void test_batch_mixed(void)
{
    struct mixed *m = g_new0(struct mixed, 1);
    void *h = create_ok("mixed.img", NULL);
    GError *err = NULL;

    m->src = g_malloc(M_AREA);
    m->reads = g_malloc((size_t)M_N * M_BLOCK);
    m->writes = g_malloc((size_t)M_N * M_BLOCK);
    fill_pattern(m->src, M_AREA, 11);
    write_ok(h, m->src, M_AREA, 0);
    /* A first zeroing tells a plugin whether zeroing in place works. */
    g_assert_cmpint(ops->write_zeroes(h, 3 * M_AREA, M_BLOCK, 0, &err), ==, 0);
    g_assert_no_error(err);
    for (unsigned i = 0; i < M_N; i++)
        plan_mixed(m, i);
    submit_ok(h, m->ptrs, M_N / 2);
    submit_ok(h, m->ptrs + M_N / 2, M_N - M_N / 2);
    reap_mixed(h, m);
    check_mixed(h, m);
    ops->close(h);
    g_free(m->src);
    g_free(m->reads);
    g_free(m->writes);
    g_free(m);
}

/* ------------------------------------------------------ errors and close */

static void test_batch_errors_and_close(void)
{
    enum { QUEUED = 64 };
    char *path;
    void *h = create_ok("batch2.img", &path);
    struct diskimg_io_request req = { .op = DISKIMG_IO_WRITE, .len = 512 }, *p = &req;
    struct diskimg_io_request many[QUEUED], *mp[QUEUED];
    uint8_t buf[512] = { 0 }, *big = g_malloc(QUEUED * 4096);
    GError *err = NULL;

    ops->close(h);
    h = open_ok(path, 0);
    /* A write on a read-only handle fails in its result. */
    req.buf = buf;
    submit_ok(h, &p, 1);
    g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 1);
    g_assert_cmpint(req.result, ==, -EBADF);
    /* A bad request is refused at submit time, nothing is queued. */
    req.op = 99;
    g_assert_cmpint(ops->submit(h, &p, 1, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_cmpint(ops->reap(h, &p, 1, 1, &err), ==, 0);
    /* Close with requests queued and in flight: they complete first. */
    for (unsigned i = 0; i < QUEUED; i++) {
        many[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_READ, .len = 4096,
                                               .buf = big + i * 4096, .result = 1 };
        mp[i] = &many[i];
    }
    submit_ok(h, mp, QUEUED);
    ops->close(h);
    for (unsigned i = 0; i < QUEUED; i++)
        g_assert_cmpint(many[i].result, ==, 0);
    g_free(big);
    g_free(path);
}

/* ------------------------------------------------ many threads, one handle */

enum { T_THREADS = 8, T_BLOCK = 8192, T_ROUNDS = 200 };

struct thread_job {
    void *h;
    unsigned id;
    bool batch;
};

/* Writes the four blocks of `block` bytes at base as a batch and waits
 * for all four. */
static void write_batch_of_four(void *h, uint8_t *buf, uint64_t base, uint64_t block)
{
    struct diskimg_io_request r[4], *p[4], *d[4];
    GError *err = NULL;

    for (unsigned i = 0; i < 4; i++) {
        r[i] = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .len = block,
                                            .buf = buf + i * block,
                                            .offset = base + i * block };
        p[i] = &r[i];
    }
    if (ops->submit(h, p, 4, &err) < 0)
        g_error("submit: %s", err->message);
    for (unsigned got = 0; got < 4;) {
        int n = ops->reap(h, d, 4, 1, &err);

        if (n < 0)
            g_error("reap: %s", err->message);
        got += (unsigned)n;
    }
}

/* Each thread owns one region and rewrites it T_ROUNDS times: one thread
 * through the batch path, the others synchronously, reading back. */
static gpointer io_thread(gpointer data)
{
    struct thread_job *job = data;
    uint8_t *buf = g_malloc(4 * T_BLOCK), *back = g_malloc(4 * T_BLOCK);
    uint64_t base = (uint64_t)job->id * 4 * T_BLOCK;

    for (unsigned round = 0; round < T_ROUNDS; round++) {
        GError *err = NULL;

        fill_pattern(buf, 4 * T_BLOCK, job->id * 1000 + round);
        if (job->batch) {
            write_batch_of_four(job->h, buf, base, T_BLOCK);
            continue;
        }
        if (ops->pwrite(job->h, buf, 4 * T_BLOCK, base, 0, &err) < 0)
            g_error("write: %s", err->message);
        if (ops->pread(job->h, back, 4 * T_BLOCK, base, &err) < 0)
            g_error("read: %s", err->message);
        if (memcmp(back, buf, 4 * T_BLOCK) != 0)
            g_error("thread %u round %u: data mismatch", job->id, round);
    }
    g_free(buf);
    g_free(back);
    return NULL;
}

static void test_threads(void)
{
    struct thread_job jobs[T_THREADS];
    GThread *threads[T_THREADS];
    uint8_t *buf = g_malloc(4 * T_BLOCK), *back = g_malloc(4 * T_BLOCK);
    void *h;

    if (!contract_parallel())
        goto out;
    h = create_ok("threads.img", NULL);
    /* Only one thread uses the batch path: reap hands out whichever
     * requests are done, so two batch users of one handle would take each
     * other's completions (the API has one reaper per handle). */
    for (unsigned i = 0; i < T_THREADS; i++) {
        jobs[i] = (struct thread_job){ h, i, i == 0 };
        threads[i] = g_thread_new("io", io_thread, &jobs[i]);
    }
    for (unsigned i = 0; i < T_THREADS; i++)
        g_thread_join(threads[i]);
    for (unsigned i = 0; i < T_THREADS; i++) {
        fill_pattern(buf, 4 * T_BLOCK, i * 1000 + T_ROUNDS - 1);
        read_ok(h, back, 4 * T_BLOCK, (uint64_t)i * 4 * T_BLOCK);
        g_assert_cmpmem(back, 4 * T_BLOCK, buf, 4 * T_BLOCK);
    }
    ops->close(h);
out:
    g_free(buf);
    g_free(back);
}

/* --------------------------------------- mixed writers on an O_DIRECT file */

enum { X_REGION = 64 * 1024, X_LEN = 16 * 1024, X_ODD_OFF = 100, X_ODD_LEN = 3000,
       X_ROUNDS = 100 };

/* How a thread writes its region: as batches, aligned synchronous writes,
 * or unaligned ones (read-modify-write, taking the write exclusion). */
enum x_style { X_BATCH, X_ALIGNED, X_UNALIGNED };

/* One batch user per handle (see test_threads). */
static const enum x_style x_styles[] = {
    X_BATCH, X_ALIGNED, X_UNALIGNED, X_ALIGNED, X_UNALIGNED, X_UNALIGNED,
};

struct x_job {
    void *h;
    unsigned id;        /* region id */
    uint8_t *buf;       /* aligned, X_LEN */
};

static void x_write(const struct x_job *job, unsigned round)
{
    uint64_t base = (uint64_t)job->id * X_REGION;
    GError *err = NULL;

    fill_pattern(job->buf, X_LEN, job->id * 1000 + round);
    switch (x_styles[job->id]) {
    case X_BATCH:
        write_batch_of_four(job->h, job->buf, base, X_LEN / 4);
        break;
    case X_ALIGNED:
        if (ops->pwrite(job->h, job->buf, X_LEN, base, 0, &err) < 0)
            g_error("write: %s", err->message);
        break;
    default:
        if (ops->pwrite(job->h, job->buf + 1, X_ODD_LEN, base + X_ODD_OFF, 0, &err) < 0)
            g_error("write: %s", err->message);
        break;
    }
}

static gpointer x_thread(gpointer data)
{
    for (unsigned round = 0; round < X_ROUNDS; round++)
        x_write(data, round);
    return NULL;
}

/* Region i holds what its thread wrote last. */
static void x_check(void *h, unsigned id, uint8_t *expect, uint8_t *back)
{
    memset(expect, 0, X_REGION);
    fill_pattern(back, X_LEN, id * 1000 + X_ROUNDS - 1);
    if (x_styles[id] == X_UNALIGNED)
        memcpy(expect + X_ODD_OFF, back + 1, X_ODD_LEN);
    else
        memcpy(expect, back, X_LEN);
    read_ok(h, back, X_REGION, (uint64_t)id * X_REGION);
    g_assert_cmpmem(back, X_REGION, expect, X_REGION);
}

/* Batch writes, aligned and unaligned synchronous writes from several
 * threads on one O_DIRECT handle: the write exclusion of the unaligned
 * ones waits for the others, in flight or queued, and none starves. */
static void test_direct_mixed_writers(void)
{
    enum { THREADS = G_N_ELEMENTS(x_styles) };
    char *path = io_tmp_path("mixed-writers.img");
    struct x_job jobs[THREADS];
    GThread *threads[THREADS];
    uint8_t *expect = g_malloc(X_REGION), *back = g_malloc(X_REGION);
    void *h = contract_parallel() ? open_direct(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                                                DISKIMG_CACHE_NONE)
                                  : NULL;

    for (unsigned i = 0; h && i < THREADS; i++) {
        jobs[i] = (struct x_job){ h, i, diskimg_alloc_aligned(X_LEN) };
        threads[i] = g_thread_new("writer", x_thread, &jobs[i]);
    }
    for (unsigned i = 0; h && i < THREADS; i++) {
        g_thread_join(threads[i]);
        diskimg_free_aligned(jobs[i].buf);
    }
    for (unsigned i = 0; h && i < THREADS; i++)
        x_check(h, i, expect, back);
    if (h)
        ops->close(h);
    g_free(expect);
    g_free(back);
    g_free(path);
}

void contract_add_batch_tests(void)
{
    io_test_add("batch", test_batch, false);
    io_test_add("batch-mixed", test_batch_mixed, false);
    io_test_add("batch-errors", test_batch_errors_and_close, false);
    io_test_add("threads", test_threads, false);
    io_test_add("direct-mixed-writers", test_direct_mixed_writers, false);
}
