/* SPDX-License-Identifier: MIT */
/*
 * bench-uring.c — the uring and posix I/O plugins on the same workloads,
 * through their ops tables as the core drives them:
 *
 *   bench-uring URING_MODULE POSIX_MODULE [DIR]
 *
 * Workloads on a 256 MiB file in DIR (default: the temp dir): 4 KiB random
 * reads one at a time (pread) and 32 in flight (submit/reap), with the
 * page cache (warm) and with O_DIRECT; with O_DIRECT also 32 threads each
 * reading or writing 4 KiB synchronously; 1 MiB sequential writes 8 in
 * flight.
 * Prints one line per backend and workload.  Not a unit test: registered
 * with meson's benchmark().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <diskimg/plugin.h>

#define FILE_SIZE   ((uint64_t)256 << 20)
#define SMALL       4096u
#define BIG         (1u << 20)
#define DEPTH       32u
#define WRITE_DEPTH 8u
#define SYNC_THREADS 32u

struct backend {
    const char *name;
    const struct diskimg_io_ops *ops;
    void *dl;
};

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void *open_backend(const struct backend *b, const char *path, unsigned flags,
                          enum diskimg_cache cache)
{
    struct diskimg_io_open_args args = {
        .struct_size = sizeof(args), .filename = path, .flags = flags, .cache = cache,
    };
    GError *err = NULL;
    void *h = b->ops->open(&args, &err);

    if (!h) {
        fprintf(stderr, "%s: %s\n", b->name, err->message);
        g_error_free(err);
    }
    return h;
}

static void report(const char *backend, const char *what, uint64_t ops, uint64_t bytes,
                   gint64 usec)
{
    double s = (double)usec / 1e6;

    printf("%-6s %-34s %10.0f IOPS %9.1f MiB/s\n", backend, what, (double)ops / s,
           (double)bytes / s / (1 << 20));
}

/* n random SMALL reads, `depth` in flight (1: the synchronous pread). */
static void random_reads(const struct backend *b, void *h, unsigned n, unsigned depth,
                         const char *what)
{
    uint8_t *bufs = diskimg_alloc_aligned((size_t)depth * SMALL);
    struct diskimg_io_request *reqs = g_new0(struct diskimg_io_request, depth);
    struct diskimg_io_request **done = g_new(struct diskimg_io_request *, depth);
    struct diskimg_io_request **free_reqs = g_new(struct diskimg_io_request *, depth);
    uint64_t rng = 0x9e3779b97f4a7c15u;
    unsigned issued = 0, completed = 0, n_free = depth;
    gint64 t0 = g_get_monotonic_time();
    GError *err = NULL;

    for (unsigned i = 0; i < depth; i++)
        free_reqs[i] = &reqs[i];
    if (depth == 1) {
        for (unsigned i = 0; i < n; i++) {
            uint64_t off = next_random(&rng) % (FILE_SIZE / SMALL) * SMALL;

            if (b->ops->pread(h, bufs, SMALL, off, &err) < 0)
                g_error("%s", err->message);
        }
    } else {
        while (completed < n) {
            struct diskimg_io_request *batch[DEPTH];
            unsigned k = 0;
            int got;

            /* Refill every free slot (completions come in any order),
             * then wait for at least one. */
            while (issued + k < n && n_free > 0) {
                struct diskimg_io_request *r = free_reqs[--n_free];

                *r = (struct diskimg_io_request){
                    .op = DISKIMG_IO_READ, .len = SMALL,
                    .buf = bufs + (size_t)(r - reqs) * SMALL,
                    .offset = next_random(&rng) % (FILE_SIZE / SMALL) * SMALL,
                };
                batch[k++] = r;
            }
            if (k && b->ops->submit(h, batch, k, &err) < 0)
                g_error("%s", err->message);
            issued += k;
            got = b->ops->reap(h, done, depth, 1, &err);
            if (got < 0)
                g_error("%s", err->message);
            for (int i = 0; i < got; i++) {
                if (done[i]->result != 0)
                    g_error("read failed: %s", g_strerror(-done[i]->result));
                free_reqs[n_free++] = done[i];
            }
            completed += (unsigned)got;
        }
    }
    report(b->name, what, n, (uint64_t)n * SMALL, g_get_monotonic_time() - t0);
    diskimg_free_aligned(bufs);
    g_free(reqs);
    g_free(done);
    g_free(free_reqs);
}

/* Rewrites the whole file sequentially in BIG pieces, WRITE_DEPTH in
 * flight, then flushes. */
static void seq_writes(const struct backend *b, void *h, const char *what)
{
    const unsigned n = (unsigned)(FILE_SIZE / BIG);
    uint8_t *buf = diskimg_alloc_aligned(BIG);
    struct diskimg_io_request reqs[WRITE_DEPTH], *done[WRITE_DEPTH], *free_reqs[WRITE_DEPTH];
    unsigned issued = 0, completed = 0, n_free = WRITE_DEPTH;
    gint64 t0 = g_get_monotonic_time();
    GError *err = NULL;

    memset(buf, 0x5a, BIG);
    for (unsigned i = 0; i < WRITE_DEPTH; i++)
        free_reqs[i] = &reqs[i];
    while (completed < n) {
        struct diskimg_io_request *batch[WRITE_DEPTH];
        unsigned k = 0;
        int got;

        while (issued + k < n && n_free > 0) {
            struct diskimg_io_request *r = free_reqs[--n_free];

            *r = (struct diskimg_io_request){ .op = DISKIMG_IO_WRITE, .len = BIG, .buf = buf,
                                              .offset = (uint64_t)(issued + k) * BIG };
            batch[k++] = r;
        }
        if (k && b->ops->submit(h, batch, k, &err) < 0)
            g_error("%s", err->message);
        issued += k;
        got = b->ops->reap(h, done, WRITE_DEPTH, 1, &err);
        if (got < 0)
            g_error("%s", err->message);
        for (int i = 0; i < got; i++) {
            if (done[i]->result != 0)
                g_error("write failed: %s", g_strerror(-done[i]->result));
            free_reqs[n_free++] = done[i];
        }
        completed += (unsigned)got;
    }
    if (b->ops->flush(h, &err) < 0)
        g_error("%s", err->message);
    report(b->name, what, n, FILE_SIZE, g_get_monotonic_time() - t0);
    diskimg_free_aligned(buf);
}

/* Many threads, each with one synchronous request at a time, as the
 * core's bench and convert drive a file: the requests are handed out
 * from one counter. */
struct sync_run {
    const struct backend *b;
    void *h;
    bool write;
    gint next;
    unsigned n;
};

static gpointer sync_thread(gpointer data)
{
    struct sync_run *r = data;
    uint8_t *buf = diskimg_alloc_aligned(SMALL);
    uint64_t rng = (uint64_t)(uintptr_t)buf | 1;
    GError *err = NULL;

    memset(buf, 0x3c, SMALL);
    while ((unsigned)g_atomic_int_add(&r->next, 1) < r->n) {
        uint64_t off = next_random(&rng) % (FILE_SIZE / SMALL) * SMALL;
        int ret = r->write ? r->b->ops->pwrite(r->h, buf, SMALL, off, 0, &err)
                           : r->b->ops->pread(r->h, buf, SMALL, off, &err);

        if (ret < 0)
            g_error("%s", err->message);
    }
    diskimg_free_aligned(buf);
    return NULL;
}

static void threaded_sync(const struct backend *b, void *h, unsigned n, bool write,
                          const char *what)
{
    struct sync_run r = { .b = b, .h = h, .write = write, .n = n };
    GThread *threads[SYNC_THREADS];
    gint64 t0 = g_get_monotonic_time();

    for (unsigned i = 0; i < SYNC_THREADS; i++)
        threads[i] = g_thread_new("bench", sync_thread, &r);
    for (unsigned i = 0; i < SYNC_THREADS; i++)
        g_thread_join(threads[i]);
    report(b->name, what, n, (uint64_t)n * SMALL, g_get_monotonic_time() - t0);
}

static int load(struct backend *b, const char *name, const char *path)
{
    const struct diskimg_plugin *(*entry)(void);

    b->name = name;
    b->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!b->dl) {
        fprintf(stderr, "%s\n", dlerror());
        return -1;
    }
    entry = (const struct diskimg_plugin *(*)(void))dlsym(b->dl, DISKIMG_PLUGIN_ENTRY_SYMBOL);
    if (!entry)
        return -1;
    b->ops = entry()->ops;
    return 0;
}

int main(int argc, char **argv)
{
    struct backend backends[2];
    char *dir, *path;
    unsigned reads = 200000;

    if (argc < 3) {
        fprintf(stderr, "usage: %s URING_MODULE POSIX_MODULE [DIR]\n", argv[0]);
        return 2;
    }
    if (load(&backends[0], "uring", argv[1]) < 0 || load(&backends[1], "posix", argv[2]) < 0)
        return 1;
    dir = g_strdup(argc > 3 ? argv[3] : g_get_tmp_dir());
    path = g_build_filename(dir, "diskimg-bench-uring.img", NULL);

    for (int i = 0; i < 2; i++) {
        const struct backend *b = &backends[i];
        void *h = open_backend(b, path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                               DISKIMG_CACHE_WRITEBACK);

        if (!h)
            return 77;  /* uring unavailable: meson's "skipped" */
        seq_writes(b, h, "seq write 1M qd8 (writeback)");
        random_reads(b, h, reads, 1, "rand read 4k qd1 (cached)");
        random_reads(b, h, reads, DEPTH, "rand read 4k qd32 (cached)");
        b->ops->close(h);

        h = open_backend(b, path, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_NONE);
        if (h) {
            random_reads(b, h, reads / 10, 1, "rand read 4k qd1 (O_DIRECT)");
            random_reads(b, h, reads / 4, DEPTH, "rand read 4k qd32 (O_DIRECT)");
            threaded_sync(b, h, reads / 4, false, "rand read 4k 32 threads (O_DIRECT)");
            threaded_sync(b, h, reads / 4, true, "rand write 4k 32 threads (O_DIRECT)");
            seq_writes(b, h, "seq write 1M qd8 (O_DIRECT)");
            b->ops->close(h);
        }
    }
    unlink(path);
    g_free(path);
    g_free(dir);
    for (int i = 0; i < 2; i++)
        dlclose(backends[i].dl);
    return 0;
}
