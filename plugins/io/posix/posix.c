/* SPDX-License-Identifier: MIT */
/*
 * posix.c — the "posix" I/O backend: image files and host devices through
 * plain POSIX calls (pread/pwrite), with a thread pool for the batch path.
 *
 * Everything file-level (opening, qemu's image locks, O_DIRECT alignment
 * and bouncing, sizes, block status, truncate, zeroing, copy offload, the
 * sticky flush error) is the core's host-file library, diskimg/hostfile.h;
 * this file supplies its data path and the write exclusion.
 *
 * Thread model: PARALLEL.  Every data request is positional (pread/pwrite
 * take the offset as an argument, the file offset is never used), so
 * requests on one handle may run concurrently.  The state shared between
 * requests here is small and each piece is guarded:
 *   - the write exclusion (rmw_lock): every write holds it shared; the
 *     library's read-modify-write of unaligned O_DIRECT writes, truncate
 *     and size growth hold it exclusively, so that the stale head and tail
 *     blocks an RMW writes back cannot overwrite a concurrent write, and a
 *     size check followed by ftruncate cannot cut off a concurrent write
 *     that extended the file,
 *   - lazy creation of the batch thread pool (batch_mutex) and reaping
 *     (reap_mutex, one reaper at a time).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include <diskimg/hostfile.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char posix_schema_yaml[];

/* Largest transfer of one syscall (Linux caps at 0x7ffff000 anyway). */
#define MAX_SYSCALL_IO   ((size_t)1 << 30)
#define BATCH_THREADS    4

struct posix_handle {
    struct diskimg_hostfile *hf;  /* first: the diskimg_hostfile_op_* read it */
    GRWLock rmw_lock;             /* the write exclusion, see above */

    GMutex batch_mutex;           /* guards lazy creation of pool and done */
    GThreadPool *pool;
    GAsyncQueue *done;
    GMutex reap_mutex;            /* one reaper at a time */
    gint inflight;                /* submitted, not yet reaped; atomic */
};

/* ------------------------------------------------------------ raw syscalls */

/*
 * Reads until len bytes or EOF; returns the byte count or -errno.  Under
 * O_DIRECT the kernel ends a read short and unaligned only at EOF (a
 * partial completion stays block-aligned), and the next read would be
 * refused as misaligned, so such a short read is taken as EOF.
 */
static int64_t sys_pread_full(const struct diskimg_hostfile *hf, void *buf, uint64_t len,
                              uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        size_t n = (size_t)MIN(len - done, MAX_SYSCALL_IO);
        ssize_t r = pread(hf->fd, (char *)buf + done, n, (off_t)(off + done));

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (uint64_t)r;
        if (hf->req_align > 1 && done % hf->req_align != 0)
            break;
    }
    return (int64_t)done;
}

/* Writes all len bytes; returns 0 or -errno. */
static int sys_pwrite_full(const struct diskimg_hostfile *hf, const void *buf, uint64_t len,
                           uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        size_t n = (size_t)MIN(len - done, MAX_SYSCALL_IO);
        ssize_t r = pwrite(hf->fd, (const char *)buf + done, n, (off_t)(off + done));

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ENOSPC;
        done += (uint64_t)r;
        /* An O_DIRECT write cut short mid-block cannot be resumed
         * (misaligned); it happens when the device or file system ran
         * out of space. */
        if (hf->req_align > 1 && done < len && done % hf->req_align != 0)
            return -ENOSPC;
    }
    return 0;
}

/* ------------------------------------------- the host-file data path */

static int posix_read_aligned(void *opaque, void *buf, uint64_t len, uint64_t off)
{
    struct posix_handle *h = opaque;
    int64_t r = sys_pread_full(h->hf, buf, len, off);

    if (r < 0)
        return (int)r;
    if ((uint64_t)r < len)
        memset((uint8_t *)buf + r, 0, len - (uint64_t)r);
    return 0;
}

static int posix_write_aligned(void *opaque, const void *buf, uint64_t len, uint64_t off,
                               unsigned flags)
{
    struct posix_handle *h = opaque;
    int ret;

    g_rw_lock_reader_lock(&h->rmw_lock);
    ret = sys_pwrite_full(h->hf, buf, len, off);
    g_rw_lock_reader_unlock(&h->rmw_lock);
    if (ret == 0 && (flags & DISKIMG_WRITE_FUA))
        ret = diskimg_hostfile_flush(h->hf);
    return ret;
}

static int posix_write_held(void *opaque, const void *buf, uint64_t len, uint64_t off)
{
    struct posix_handle *h = opaque;

    return sys_pwrite_full(h->hf, buf, len, off);
}

static void posix_lock_exclusive(void *opaque)
{
    struct posix_handle *h = opaque;

    g_rw_lock_writer_lock(&h->rmw_lock);
}

static void posix_unlock_exclusive(void *opaque)
{
    struct posix_handle *h = opaque;

    g_rw_lock_writer_unlock(&h->rmw_lock);
}

/* fallocate and fdatasync: the library's own plain system calls. */
static const struct diskimg_hostfile_callbacks posix_callbacks = {
    .struct_size = sizeof(struct diskimg_hostfile_callbacks),
    .read = posix_read_aligned,
    .write = posix_write_aligned,
    .write_held = posix_write_held,
    .lock_exclusive = posix_lock_exclusive,
    .unlock_exclusive = posix_unlock_exclusive,
};

/* ---------------------------------------------------------- create options */

/* nocow (btrfs) only works on an empty file, which is why it is applied
 * at creation; qemu ignores failures. */
static void apply_nocow(const struct diskimg_hostfile *hf)
{
    int attr = 0;

    if (ioctl(hf->fd, FS_IOC_GETFLAGS, &attr) == 0) {
        attr |= FS_NOCOW_FL;
        (void)ioctl(hf->fd, FS_IOC_SETFLAGS, &attr);
    }
}

/* The extent size hint (XFS) is best effort; like qemu we only warn, and
 * only when the user asked for it explicitly. */
static int apply_extent_size_hint(const struct diskimg_hostfile *hf, const diskimg_options *o,
                                  GError **errp)
{
    bool explicit = diskimg_options_has(o, "extent_size_hint");
    uint64_t hint = diskimg_options_get_uint(o, "extent_size_hint", UINT64_C(1) << 20);
    struct fsxattr attr;
    int ret;

    if (hint > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Extent size hint is too large");
        return -1;
    }
    if (hint == 0)
        return 0;
    ret = ioctl(hf->fd, FS_IOC_FSGETXATTR, &attr);
    if (ret == 0) {
        attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
        attr.fsx_extsize = (uint32_t)hint;
        ret = ioctl(hf->fd, FS_IOC_FSSETXATTR, &attr);
    }
    if (ret < 0 && explicit)
        diskimg_warn("Failed to set extent size hint: %s", g_strerror(errno));
    return 0;
}

/* The file-level create options (nocow, extent_size_hint), when the core
 * passed them along with DISKIMG_OPEN_CREATE. */
static int apply_create_options(const struct diskimg_hostfile *hf, const diskimg_options *o,
                                GError **errp)
{
    if (!o || hf->type != S_IFREG)
        return 0;
    if (diskimg_options_has(o, "nocow") && diskimg_options_get_bool(o, "nocow", false))
        apply_nocow(hf);
    return apply_extent_size_hint(hf, o, errp);
}

/* ------------------------------------------------------------ open/close */

/* posix serves every aio mode from its thread pool; keep qemu's rule that
 * native AIO only makes sense with O_DIRECT. */
static int check_aio(const struct diskimg_io_open_args *args,
                     const struct diskimg_hostfile_settings *s, GError **errp)
{
    const diskimg_options *o = diskimg_hostfile_options(args);
    const char *aio = o ? diskimg_options_get_str(o, "aio") : NULL;

    if (aio && strcmp(aio, "native") == 0 && !s->direct) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "aio=native was specified, but it requires cache.direct=on, "
                    "which was not specified.");
        return -1;
    }
    return 0;
}

static void posix_close(void *opaque);

static struct posix_handle *handle_new(void)
{
    struct posix_handle *h = g_new0(struct posix_handle, 1);

    g_rw_lock_init(&h->rmw_lock);
    g_mutex_init(&h->batch_mutex);
    g_mutex_init(&h->reap_mutex);
    return h;
}

static void *posix_open(const struct diskimg_io_open_args *args, GError **errp)
{
    struct diskimg_hostfile_settings s = { .struct_size = sizeof(s) };
    struct posix_handle *h;

    if (diskimg_hostfile_parse_settings(args, &s, errp) < 0 || check_aio(args, &s, errp) < 0)
        return NULL;
    h = handle_new();
    h->hf = diskimg_hostfile_open(args, &s, &posix_callbacks, h, errp);
    if (!h->hf || ((args->flags & DISKIMG_OPEN_CREATE) &&
                   apply_create_options(h->hf, diskimg_hostfile_options(args), errp) < 0)) {
        posix_close(h);
        return NULL;
    }
    return h;
}

static void posix_close(void *opaque)
{
    struct posix_handle *h = opaque;

    if (!h)
        return;
    /* Let queued batch requests finish: their buffers belong to callers
     * who may still be waiting to reap them. */
    if (h->pool)
        g_thread_pool_free(h->pool, FALSE, TRUE);
    if (h->done)
        g_async_queue_unref(h->done);
    diskimg_hostfile_close(h->hf);
    g_rw_lock_clear(&h->rmw_lock);
    g_mutex_clear(&h->batch_mutex);
    g_mutex_clear(&h->reap_mutex);
    g_free(h);
}

/* ------------------------------------------------------------ batch path */

static void batch_worker(gpointer data, gpointer user_data)
{
    struct diskimg_io_request *req = data;
    struct posix_handle *h = user_data;

    req->result = diskimg_hostfile_run_request(h->hf, req);
    g_async_queue_push(h->done, req);
}

static int batch_start(struct posix_handle *h, GError **errp)
{
    int ret = 0;

    g_mutex_lock(&h->batch_mutex);
    if (!h->pool) {
        GError *err = NULL;

        h->done = g_async_queue_new();
        h->pool = g_thread_pool_new(batch_worker, h, BATCH_THREADS, FALSE, &err);
        if (!h->pool) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                        "Could not start I/O threads: %s", err->message);
            g_error_free(err);
            g_async_queue_unref(h->done);
            h->done = NULL;
            ret = -1;
        }
    }
    g_mutex_unlock(&h->batch_mutex);
    return ret;
}

static int posix_submit(void *opaque, struct diskimg_io_request *const *reqs, unsigned n,
                        GError **errp)
{
    struct posix_handle *h = opaque;

    if (diskimg_hostfile_check_requests(reqs, n, errp) < 0)
        return -1;
    if (n == 0)
        return 0;
    if (batch_start(h, errp) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        reqs[i]->result = 0;
        g_atomic_int_inc(&h->inflight);
        /* A non-exclusive pool queues the request before it tries to start
         * a thread, so a failure to start one only delays the request. */
        g_thread_pool_push(h->pool, reqs[i], NULL);
    }
    return 0;
}

static int posix_reap(void *opaque, struct diskimg_io_request **done, unsigned max,
                      unsigned min, GError **errp)
{
    struct posix_handle *h = opaque;
    GAsyncQueue *queue;
    unsigned n = 0;
    gpointer req;

    (void)errp;  /* per-request errors travel in each request's result */
    g_mutex_lock(&h->batch_mutex);
    queue = h->done;
    g_mutex_unlock(&h->batch_mutex);
    if (max == 0 || !queue)
        return 0;
    g_mutex_lock(&h->reap_mutex);
    /* Never wait for more than is actually in flight. */
    min = MIN(MIN(min, max), (unsigned)g_atomic_int_get(&h->inflight));
    while (n < min)
        done[n++] = g_async_queue_pop(queue);
    while (n < max && (req = g_async_queue_try_pop(queue)) != NULL)
        done[n++] = req;
    g_atomic_int_add(&h->inflight, -(gint)n);
    g_mutex_unlock(&h->reap_mutex);
    return (int)n;
}

/* ------------------------------------------------------------ descriptor */

static const struct diskimg_io_ops posix_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = posix_open,
    .close = posix_close,
    .submit = posix_submit,
    .reap = posix_reap,
    DISKIMG_HOSTFILE_IO_OPS,
};

static const struct diskimg_plugin posix_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_IO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "posix",
    .version = PLUGIN_VERSION,
    .summary = "Files and host devices through POSIX system calls",
    .schema = posix_schema_yaml,
    .capabilities = 0,
    .ops = &posix_ops,
};

DISKIMG_PLUGIN_DEFINE(posix_plugin)
