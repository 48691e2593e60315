/* SPDX-License-Identifier: MIT */
/*
 * rbd.c — the "rbd" I/O backend: Ceph RBD images through librbd.
 *
 * A name rbd:pool/image (see location.c) or the --image-opts options
 * pool=,image=... open one image of a Ceph cluster; any format (raw,
 * qcow2...) then sits on it as on a local file.  Connection, error texts
 * and growth follow qemu 7.2's block/rbd.c, so the same names and
 * options reach the same images with the same messages.
 *
 * Thread model: PARALLEL.  librbd's image handle is thread-safe and its
 * synchronous calls each wait for their own request only, so the copy
 * engine's worker threads keep several requests in flight on the cluster
 * at once.  Our own state shared between requests is small and guarded:
 * the image size we last saw (atomic; writes past the end grow the image
 * under `grow_lock`, as qemu does, so a format may append to it), the
 * block status map (status.c, `status_lock`) and the batch queue
 * (batch.c, `batch_lock`), whose submit/reap run on librbd's aio calls.
 */
#include <errno.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "rbd.h"
#include "rbd-handle.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char rbd_schema_yaml[];

/* librbd's calls return int or ssize_t byte counts: keep each call far
 * below both limits. */
#define RBD_MAX_CALL (UINT64_C(1) << 30)

/* ------------------------------------------------------------- connecting */

static int set_conf(rados_t cluster, const char *key, const char *value, GError **errp)
{
    int r = rados_conf_set(cluster, key, value);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "invalid conf option %s", key);
        return -1;
    }
    return 0;
}

/* The cephx key of key-secret (or its legacy name password-secret): Ceph
 * takes it base64-encoded, the secret holds its raw bytes (as qemu). */
static int set_key(rados_t cluster, const diskimg_options *o, GError **errp)
{
    const char *key_id = o ? diskimg_options_get_str(o, "key-secret") : NULL;
    const char *legacy_id = o ? diskimg_options_get_str(o, "password-secret") : NULL;
    if (key_id && legacy_id)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Legacy 'password-secret' clashes with 'key-secret'");
    const char *id = key_id ? key_id : legacy_id;
    if (!id)
        return 0;
    uint8_t *data;
    size_t len;
    if (diskimg_secret_lookup(id, &data, &len, errp) < 0)
        return -1;
    char *b64 = g_base64_encode(data, len);
    diskimg_secret_wipe(data, len);
    int r = rados_conf_set(cluster, "key", b64);
    diskimg_secret_wipe((uint8_t *)b64, strlen(b64));
    if (r < 0) {
        diskimg_set_errno(errp, -r, "Could not set 'key'");
        return -1;
    }
    return 0;
}

static int set_auth_modes(rados_t cluster, const diskimg_options *o, GError **errp)
{
    const char *const *modes = o ? diskimg_options_get_list(o, "auth-client-required") : NULL;
    if (!modes || !modes[0])
        return 0;
    g_autofree char *joined = g_strjoinv(";", (char **)modes);
    int r = rados_conf_set(cluster, "auth_client_required", joined);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "Could not set 'auth_client_required'");
        return -1;
    }
    return 0;
}

/* Everything rados_connect needs: config file, the name's settings, key,
 * cache mode.  Errors as qemu words them. */
static int configure(rados_t cluster, const struct rbd_location *loc,
                     const struct diskimg_io_open_args *args, GError **errp)
{
    /* librados logs to stderr besides returning errors; the error we
     * return says it in one line (a conf file may turn the logs back on). */
    rados_conf_set(cluster, "log_to_stderr", "false");
    rados_conf_set(cluster, "err_to_stderr", "false");
    /* Without conf= librados looks where it always does ($CEPH_CONF,
     * /etc/ceph/ceph.conf...); only a named file must exist. */
    int r = rados_conf_read_file(cluster, loc->conf);
    if (loc->conf && r < 0) {
        diskimg_set_errno(errp, -r, "error reading conf file %s", loc->conf);
        return -1;
    }
    for (guint i = 0; loc->conf_pairs && i + 1 < loc->conf_pairs->len; i += 2)
        if (set_conf(cluster, loc->conf_pairs->pdata[i], loc->conf_pairs->pdata[i + 1],
                     errp) < 0)
            return -1;
    if (set_key(cluster, args->options, errp) < 0 ||
        set_auth_modes(cluster, args->options, errp) < 0)
        return -1;
    /* librbd's cache is writeback with flushes; cache=none and directsync
     * ask for no host cache at all (qemu's BDRV_O_NOCACHE). */
    bool nocache = args->cache == DISKIMG_CACHE_NONE || args->cache == DISKIMG_CACHE_DIRECTSYNC;
    rados_conf_set(cluster, "rbd_cache", nocache ? "false" : "true");
    return 0;
}

static int check_namespace(rados_ioctx_t io, const char *ns, GError **errp)
{
    if (!ns || !*ns)
        return 0;
    bool exists = false;
    int r = rbd_namespace_exists(io, ns, &exists);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "error checking namespace");
        return -1;
    }
    if (!exists)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND,
                                 "namespace '%s' does not exist", ns);
    rados_ioctx_set_namespace(io, ns);
    return 0;
}

static int connect_cluster(struct rbd_handle *h, const struct rbd_location *loc,
                           const struct diskimg_io_open_args *args, GError **errp)
{
    int r = rados_create(&h->cluster, loc->user);
    if (r < 0) {
        h->cluster = NULL;
        diskimg_set_errno(errp, -r, "error initializing");
        return -1;
    }
    if (configure(h->cluster, loc, args, errp) < 0)
        return -1;
    r = rados_connect(h->cluster);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "error connecting");
        return -1;
    }
    r = rados_ioctx_create(h->cluster, loc->pool, &h->io);
    if (r < 0) {
        h->io = NULL;
        diskimg_set_errno(errp, -r, "error opening pool %s", loc->pool);
        return -1;
    }
    return check_namespace(h->io, loc->ns, errp);
}

/* ---------------------------------------------------------- open, close */

/* The object size of a new image as an order (log2): -o cluster_size,
 * checked as qemu checks it; 0 asks for the cluster's default. */
static int object_order(const diskimg_options *o, int *order, GError **errp)
{
    *order = 0;
    if (!o || !diskimg_options_has(o, "cluster_size"))
        return 0;
    uint64_t size = diskimg_options_get_uint(o, "cluster_size", 0);
    if (size & (size - 1))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "obj size needs to be power of 2");
    if (size < 4096)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "obj size too small");
    *order = __builtin_ctzll(size);   /* librbd refuses orders it cannot use */
    return 0;
}

/* A new image of size 0 (the core truncates it to its size next), with
 * the cluster's default features; an existing one is refused as qemu's
 * create refuses it.  `o` is the create-options set on creation. */
static int create_image(struct rbd_handle *h, const struct rbd_location *loc,
                        const diskimg_options *o, GError **errp)
{
    if (loc->snap)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Can't use snapshot name for image creation");
    int order;
    if (object_order(o, &order, errp) < 0)
        return -1;
    int r = rbd_create(h->io, loc->image, 0, &order);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "error rbd create");
        return -1;
    }
    return 0;
}

static int open_image(struct rbd_handle *h, const struct rbd_location *loc, unsigned flags,
                      GError **errp)
{
    if (loc->snap && (flags & DISKIMG_OPEN_RDWR))
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION, "rbd snapshots are read-only");
    /* Read-only opens take no exclusive lock and no header watch of a
     * writer: they may read an image another client is writing. */
    int r = (flags & DISKIMG_OPEN_RDWR) ? rbd_open(h->io, loc->image, &h->image, loc->snap)
                                        : rbd_open_read_only(h->io, loc->image, &h->image,
                                                             loc->snap);
    if (r < 0) {
        h->image = NULL;
        diskimg_set_errno(errp, -r, "error reading header from %s", loc->image);
        return -1;
    }
    uint64_t size;
    r = rbd_get_size(h->image, &size);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "error getting the size of %s", loc->image);
        return -1;
    }
    atomic_store(&h->size, size);
    rbd_image_info_t info;
    r = rbd_stat(h->image, &info, sizeof(info));
    if (r < 0) {
        diskimg_set_errno(errp, -r, "error reading the layout of %s", loc->image);
        return -1;
    }
    h->object_size = info.obj_size ? info.obj_size : 1;
    return 0;
}

static void rbd_io_close(void *opaque)
{
    struct rbd_handle *h = opaque;
    if (!h)
        return;
    rbd_batch_destroy(h);
    if (h->image)
        rbd_close(h->image);   /* flushes the cache */
    if (h->io)
        rados_ioctx_destroy(h->io);
    if (h->cluster)
        rados_shutdown(h->cluster);
    rbd_status_destroy(h);
    g_mutex_clear(&h->grow_lock);
    g_free(h->name);
    g_free(h);
}

static void *rbd_io_open(const struct diskimg_io_open_args *args, GError **errp)
{
    struct rbd_location loc = { 0 };
    if (rbd_location_from_open(args->filename, args->options, &loc, errp) < 0) {
        rbd_location_clear(&loc);
        return NULL;
    }
    struct rbd_handle *h = g_new0(struct rbd_handle, 1);
    g_mutex_init(&h->grow_lock);
    h->name = g_strdup(args->filename);
    h->node = args->node;
    rbd_batch_init(h);
    rbd_status_init(h);
    int ret = connect_cluster(h, &loc, args, errp);
    if (ret == 0 && (args->flags & DISKIMG_OPEN_CREATE))
        ret = create_image(h, &loc, args->options, errp);
    if (ret == 0)
        ret = open_image(h, &loc, args->flags, errp);
    rbd_location_clear(&loc);
    if (ret < 0) {
        rbd_io_close(h);
        return NULL;
    }
    return h;
}

/* ------------------------------------------------------------------ data */

int64_t rbd_io_get_size(void *opaque, GError **errp)
{
    struct rbd_handle *h = opaque;
    uint64_t size;
    int r = rbd_get_size(h->image, &size);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "%s: error getting the image size", h->name);
        return -1;
    }
    atomic_store(&h->size, size);
    return (int64_t)size;
}

/* Writes past the end grow the image first, as qemu's rbd driver does:
 * librbd refuses them, formats (qcow2 on rbd) append. */
int rbd_grow_for(struct rbd_handle *h, uint64_t end, GError **errp)
{
    if (end <= atomic_load(&h->size))
        return 0;
    int ret = 0;
    g_mutex_lock(&h->grow_lock);
    uint64_t size;
    int r = rbd_get_size(h->image, &size);
    if (r == 0 && end > size)
        r = rbd_resize(h->image, end);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "%s: failed to grow the image to %" PRIu64 " bytes",
                          h->name, end);
        ret = -1;
    } else {
        atomic_store(&h->size, MAX(size, end));
    }
    g_mutex_unlock(&h->grow_lock);
    return ret;
}

/* How many of len bytes at offset lie inside the image: librbd refuses
 * reads that start past its end and shortens those that cross it. */
int rbd_readable(struct rbd_handle *h, uint64_t offset, uint64_t len, uint64_t *readable,
                 GError **errp)
{
    int64_t size = rbd_io_get_size(h, errp);
    if (size < 0)
        return -1;
    *readable = offset >= (uint64_t)size ? 0 : MIN(len, (uint64_t)size - offset);
    return 0;
}

static int rbd_io_pread(void *opaque, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct rbd_handle *h = opaque;
    uint8_t *p = buf;
    uint64_t readable;
    if (rbd_readable(h, offset, len, &readable, errp) < 0)
        return -1;
    /* Past the end the image reads as zeroes. */
    memset(p + readable, 0, len - readable);
    while (readable) {
        size_t n = (size_t)MIN(readable, RBD_MAX_CALL);
        ssize_t got = rbd_read2(h->image, offset, n, (char *)p, 0);
        if (got < 0) {
            diskimg_set_errno(errp, (int)-got, "%s: read of %zu bytes at offset %" PRIu64
                              " failed", h->name, n, offset);
            return -1;
        }
        /* Shrunk by another client meanwhile: the rest is gone, so zero. */
        if ((size_t)got < n) {
            memset(p + got, 0, readable - (uint64_t)got);
            return 0;
        }
        p += n;
        offset += n;
        readable -= n;
    }
    return 0;
}

static int rbd_io_flush(void *opaque, GError **errp)
{
    struct rbd_handle *h = opaque;
    int r = rbd_flush(h->image);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "%s: flush failed", h->name);
        return -1;
    }
    return 0;
}

static int write_all(struct rbd_handle *h, const char *p, uint64_t len, uint64_t offset,
                     GError **errp)
{
    while (len) {
        size_t n = (size_t)MIN(len, RBD_MAX_CALL);
        ssize_t put = rbd_write2(h->image, offset, n, p, 0);
        if (put < 0 || (size_t)put != n) {
            diskimg_set_errno(errp, put < 0 ? (int)-put : EIO, "%s: write of %zu bytes at "
                              "offset %" PRIu64 " failed", h->name, n, offset);
            return -1;
        }
        p += n;
        offset += n;
        len -= n;
    }
    return 0;
}

static int rbd_io_pwrite(void *opaque, const void *buf, uint64_t len, uint64_t offset,
                         unsigned flags, GError **errp)
{
    struct rbd_handle *h = opaque;
    if (rbd_grow_for(h, offset + len, errp) < 0)
        return -1;
    int ret = write_all(h, buf, len, offset, errp);
    rbd_changed(h);   /* also after a failure: some of it may have landed */
    if (ret < 0)
        return -1;
    /* librbd has no forced-unit-access write: flush after it instead. */
    return (flags & DISKIMG_WRITE_FUA) ? rbd_io_flush(h, errp) : 0;
}

#ifdef LIBRBD_SUPPORTS_WRITE_ZEROES
int rbd_zero_flags(unsigned flags)
{
    /* Without MAY_UNMAP the zeroes must stay allocated. */
    return (flags & DISKIMG_WRITE_MAY_UNMAP) ? 0 : RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
}

static int zero_all(struct rbd_handle *h, uint64_t offset, uint64_t len, unsigned flags,
                    GError **errp)
{
    while (len) {
        size_t n = (size_t)MIN(len, RBD_MAX_CALL);
        ssize_t r = rbd_write_zeroes(h->image, offset, n, rbd_zero_flags(flags), 0);
        if (r < 0) {
            diskimg_set_errno(errp, (int)-r, "%s: writing zeroes to %zu bytes at offset %"
                              PRIu64 " failed", h->name, n, offset);
            return -1;
        }
        offset += n;
        len -= n;
    }
    return 0;
}

static int rbd_io_write_zeroes(void *opaque, uint64_t offset, uint64_t len, unsigned flags,
                               GError **errp)
{
    struct rbd_handle *h = opaque;
    if (rbd_grow_for(h, offset + len, errp) < 0)
        return -1;
    int ret = zero_all(h, offset, len, flags, errp);
    rbd_changed(h);
    if (ret < 0)
        return -1;
    return (flags & DISKIMG_WRITE_FUA) ? rbd_io_flush(h, errp) : 0;
}
#endif

/* Discard: librbd frees whole objects and zeroes partial ones. */
static int discard_all(struct rbd_handle *h, uint64_t offset, uint64_t len, GError **errp)
{
    while (len) {
        uint64_t n = MIN(len, RBD_MAX_CALL);
        int r = rbd_discard(h->image, offset, n);
        if (r < 0) {
            diskimg_set_errno(errp, -r, "%s: discard of %" PRIu64 " bytes at offset %" PRIu64
                              " failed", h->name, n, offset);
            return -1;
        }
        offset += n;
        len -= n;
    }
    return 0;
}

static int rbd_io_punch_hole(void *opaque, uint64_t offset, uint64_t len, GError **errp)
{
    struct rbd_handle *h = opaque;
    uint64_t size = atomic_load(&h->size);
    if (offset >= size)
        return 0;
    int ret = discard_all(h, offset, MIN(len, size - offset), errp);
    rbd_changed(h);
    return ret;
}

/* librbd calls a resize's progress function unconditionally. */
static int no_progress(uint64_t offset, uint64_t total, void *opaque)
{
    (void)offset;
    (void)total;
    (void)opaque;
    return 0;
}

static int rbd_io_truncate(void *opaque, uint64_t size, enum diskimg_prealloc prealloc,
                           unsigned flags, GError **errp)
{
    struct rbd_handle *h = opaque;
    static const char *const names[] = {
        [DISKIMG_PREALLOC_METADATA] = "metadata",
        [DISKIMG_PREALLOC_FALLOC] = "falloc",
        [DISKIMG_PREALLOC_FULL] = "full",
    };
    if (prealloc != DISKIMG_PREALLOC_OFF)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Unsupported preallocation mode '%s'",
                                 prealloc < G_N_ELEMENTS(names) ? names[prealloc] : "?");
    g_mutex_lock(&h->grow_lock);
    int r = rbd_resize2(h->image, size, (flags & DISKIMG_TRUNCATE_SHRINK) != 0, no_progress,
                        NULL);
    if (r == 0)
        atomic_store(&h->size, size);
    g_mutex_unlock(&h->grow_lock);
    rbd_changed(h);
    if (r < 0) {
        diskimg_set_errno(errp, -r, "%s: failed to resize the image to %" PRIu64 " bytes",
                          h->name, size);
        return -1;
    }
    return 0;
}

int rbd_run_request(struct rbd_handle *h, struct diskimg_io_request *req)
{
    GError *err = NULL;
    int ret;
    switch (req->op) {
    case DISKIMG_IO_READ:
        ret = rbd_io_pread(h, req->buf, req->len, req->offset, &err);
        break;
    case DISKIMG_IO_WRITE:
        ret = rbd_io_pwrite(h, req->buf, req->len, req->offset, req->flags, &err);
        break;
    case DISKIMG_IO_FLUSH:
        ret = rbd_io_flush(h, &err);
        break;
#ifdef LIBRBD_SUPPORTS_WRITE_ZEROES
    case DISKIMG_IO_WRITE_ZEROES:
        ret = rbd_io_write_zeroes(h, req->offset, req->len, req->flags, &err);
        break;
#endif
    default:
        return -EOPNOTSUPP;
    }
    g_clear_error(&err);   /* a request carries only its errno */
    return ret < 0 ? -EIO : 0;
}

static const struct diskimg_io_ops rbd_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = rbd_io_open,
    .close = rbd_io_close,
    .pread = rbd_io_pread,
    .pwrite = rbd_io_pwrite,
    .submit = rbd_batch_submit,
    .reap = rbd_batch_reap,
    .flush = rbd_io_flush,
    .get_size = rbd_io_get_size,
    .truncate = rbd_io_truncate,
    .punch_hole = rbd_io_punch_hole,
#ifdef LIBRBD_SUPPORTS_WRITE_ZEROES
    .write_zeroes = rbd_io_write_zeroes,
#endif
    .block_status = rbd_io_block_status,
};

static const struct diskimg_plugin rbd_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_IO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "rbd",
    .version = PLUGIN_VERSION,
    .summary = "Ceph RBD images through librbd",
    .schema = rbd_schema_yaml,
    .capabilities = 0,
    .ops = &rbd_ops,
};

DISKIMG_PLUGIN_DEFINE(rbd_plugin)
