/* SPDX-License-Identifier: MIT */
/*
 * nbd.c — the "nbd" I/O backend: exports of NBD servers (qemu-nbd, nbdkit,
 * nbd-server...) through libnbd, as qemu's nbd block driver reaches them.
 *
 * Names: nbd://, nbds://, nbd+unix://, nbds+unix:// URIs and qemu's legacy
 * nbd:HOST:PORT / nbd:unix:PATH forms (nbd-target.c), or the open-options
 * server.*, export, tls-creds from --image-opts.
 *
 * Thread model: PARALLEL.  Requests go out on one of the handle's
 * connections, several when the server allows multi-conn, through each
 * connection's event thread (nbd-conn.c), so the copy engine's workers
 * have their requests in flight together.  The state shared between
 * requests is the round-robin counter and the block-status cache, each
 * guarded.
 *
 * What an NBD export cannot do is mapped as qemu maps it: it never grows
 * ("Cannot grow NBD nodes"); a create (DISKIMG_OPEN_TRUNCATE) cannot shrink
 * it to nothing, so the whole export is zeroed instead (a trim-backed fast
 * zero on servers that have one), which keeps a new raw image on it
 * reading as zeroes, as a new file would.
 */
#include <errno.h>
#include <string.h>

#include <diskimg/plugin.h>

#include "nbd-conn.h"
#include "nbd-target.h"
#include "nbd-tls.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char nbd_schema_yaml[];

/* Largest data request we send: the server's maximum block size, else the
 * 32 MiB every server takes (the NBD spec's recommended cap). */
#define DEFAULT_MAX_REQUEST (32u << 20)
/* Zero, trim and block-status lengths are 32-bit in the protocol. */
#define MAX_RANGE_REQUEST   (1u << 30)
#define BS_CACHE_EXTENTS    512

struct bs_extent {
    uint64_t offset, length;
    uint32_t flags;             /* LIBNBD_STATE_* */
};

struct nbd_io {
    diskimg_node *node;
    char *describe;             /* "host:port" or socket path, for messages */
    struct nbd_conn **conns;
    unsigned n_conns;
    guint next_conn;            /* atomic round-robin counter */

    uint64_t size;
    uint32_t min_block;
    uint64_t max_request;
    bool can_flush, can_fua, can_zero, can_fast_zero, can_trim, has_allocation;

    /* The extents of the last block-status reply, valid while no write
     * happened since (generation). */
    GMutex bs_lock;
    struct bs_extent bs[BS_CACHE_EXTENTS];
    unsigned n_bs;
    gint generation;            /* atomic; bumped by every write */
    int bs_generation;
};

/* ------------------------------------------------------------- requests */

static struct nbd_conn *pick_conn(struct nbd_io *h)
{
    if (h->n_conns == 1)
        return h->conns[0];
    return h->conns[g_atomic_int_add((gint *)&h->next_conn, 1) % h->n_conns];
}

/* The one-line error of a failed request. */
static int request_error(struct nbd_io *h, int err, char *why, const char *what,
                         uint64_t len, uint64_t offset, GError **errp)
{
    int code = err == ENOSPC ? DISKIMG_ERROR_NO_SPACE
               : err == ENOTSUP || err == EOPNOTSUPP ? DISKIMG_ERROR_NOT_SUPPORTED
               : err == EPERM || err == EROFS ? DISKIMG_ERROR_PERMISSION
               : DISKIMG_ERROR_IO;
    diskimg_set_error(errp, code, "%s: %s of %" PRIu64 " bytes at offset %" PRIu64
                      " failed: %s", h->describe, what, len, offset,
                      why ? why : g_strerror(err));
    g_free(why);
    return -1;
}

enum request_kind { REQ_READ, REQ_WRITE, REQ_ZERO, REQ_TRIM };

/* A request sent and not yet waited for. */
struct pending {
    struct nbd_conn *conn;
    struct nbd_wait wait;
    int64_t cookie;
    uint64_t len, offset;
};

/* Sends one request of at most max_request (data) or MAX_RANGE_REQUEST
 * bytes; complete() waits for it. */
static void submit(struct nbd_io *h, enum request_kind kind, void *buf, uint64_t len,
                   uint64_t offset, uint32_t flags, struct pending *p)
{
    struct nbd_handle *nbd;

    p->conn = pick_conn(h);
    p->len = len;
    p->offset = offset;
    nbd = nbd_conn_handle(p->conn);
    nbd_wait_init(&p->wait);
    nbd_completion_callback done = nbd_wait_callback(&p->wait);
    if (kind != REQ_READ)
        g_atomic_int_inc(&h->generation);
    switch (kind) {
    case REQ_READ:
        p->cookie = nbd_aio_pread(nbd, buf, len, offset, done, 0);
        break;
    case REQ_WRITE:
        p->cookie = nbd_aio_pwrite(nbd, buf, len, offset, done, flags);
        break;
    case REQ_ZERO:
        p->cookie = nbd_aio_zero(nbd, len, offset, done, flags);
        break;
    default:
        p->cookie = nbd_aio_trim(nbd, len, offset, done, flags);
        break;
    }
    if (p->cookie >= 0)
        nbd_conn_kick(p->conn);
}

static int complete(struct nbd_io *h, enum request_kind kind, struct pending *p,
                    GError **errp)
{
    static const char *const names[] = { "read", "write", "zero write", "trim" };
    char *why;
    int err = nbd_wait_finish(p->conn, &p->wait, p->cookie, &why);
    if (kind != REQ_READ)
        g_atomic_int_inc(&h->generation);
    if (err)
        return request_error(h, err, why, names[kind], p->len, p->offset, errp);
    return 0;
}

static int request(struct nbd_io *h, enum request_kind kind, void *buf, uint64_t len,
                   uint64_t offset, uint32_t flags, GError **errp)
{
    struct pending p;
    submit(h, kind, buf, len, offset, flags, &p);
    return complete(h, kind, &p, errp);
}

/* Data transfers are cut into pieces sent together, over every
 * connection: one caller's 2 MiB then keeps several requests in flight
 * (the copy engine runs one thread per CPU, each with one request). */
#define PIECES_IN_FLIGHT 8
#define MIN_PIECE        (256u << 10)

static uint64_t piece_size(const struct nbd_io *h, enum request_kind kind, uint64_t len)
{
    if (kind != REQ_READ && kind != REQ_WRITE)
        return MAX_RANGE_REQUEST;
    uint64_t spread = MAX(h->n_conns, 4);
    uint64_t piece = MAX((len + spread - 1) / spread, (uint64_t)MIN_PIECE);
    piece = (piece + h->min_block - 1) / h->min_block * h->min_block;
    return MIN(piece, h->max_request);
}

/* Splits a transfer into requests the server takes.  Every request sent
 * is waited for, also after a failure: the buffer must outlive them. */
static int transfer(struct nbd_io *h, enum request_kind kind, uint8_t *buf, uint64_t len,
                    uint64_t offset, uint32_t flags, GError **errp)
{
    uint64_t piece = piece_size(h, kind, len);
    struct pending p[PIECES_IN_FLIGHT];
    int ret = 0;

    while (len > 0) {
        unsigned sent = 0;
        for (; sent < PIECES_IN_FLIGHT && len > 0; sent++) {
            uint64_t n = MIN(len, piece);
            submit(h, kind, buf, n, offset, flags, &p[sent]);
            if (buf)
                buf += n;
            offset += n;
            len -= n;
        }
        for (unsigned i = 0; i < sent; i++)
            if (complete(h, kind, &p[i], ret == 0 ? errp : NULL) < 0)
                ret = -1;
        if (ret < 0)
            return -1;
    }
    return 0;
}

static int grow_error(struct nbd_io *h, uint64_t end, GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                             "%s: Cannot grow NBD nodes (a request ends at %" PRIu64
                             ", the export has %" PRIu64 " bytes)", h->describe, end, h->size);
}

/* ------------------------------------------------------------ data path */

static int nbd_io_pread(void *opaque, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct nbd_io *h = opaque;
    /* io nodes read zeroes past their end */
    uint64_t inside = offset < h->size ? MIN(len, h->size - offset) : 0;
    if (inside < len)
        memset((uint8_t *)buf + inside, 0, len - inside);
    return transfer(h, REQ_READ, buf, inside, offset, 0, errp);
}

static int nbd_io_flush(void *opaque, GError **errp);

static int nbd_io_pwrite(void *opaque, const void *buf, uint64_t len, uint64_t offset,
                         unsigned flags, GError **errp)
{
    struct nbd_io *h = opaque;
    if (offset > h->size || len > h->size - offset)
        return grow_error(h, offset + len, errp);
    bool fua = (flags & DISKIMG_WRITE_FUA) != 0;
    if (transfer(h, REQ_WRITE, (uint8_t *)buf, len, offset,
                 fua && h->can_fua ? LIBNBD_CMD_FLAG_FUA : 0, errp) < 0)
        return -1;
    return fua && !h->can_fua ? nbd_io_flush(h, errp) : 0;
}

/* Zeroes by writing zero buffers, for servers without WRITE_ZEROES. */
static int write_zero_buffers(struct nbd_io *h, uint64_t offset, uint64_t len, uint32_t flags,
                              GError **errp)
{
    uint64_t chunk = MIN(len, MIN(h->max_request, (uint64_t)(4u << 20)));
    g_autofree uint8_t *zero = g_malloc0(chunk);
    while (len > 0) {
        uint64_t n = MIN(len, chunk);
        if (request(h, REQ_WRITE, zero, n, offset, flags & LIBNBD_CMD_FLAG_FUA, errp) < 0)
            return -1;
        offset += n;
        len -= n;
    }
    return 0;
}

static int nbd_io_write_zeroes(void *opaque, uint64_t offset, uint64_t len, unsigned flags,
                               GError **errp)
{
    struct nbd_io *h = opaque;
    if (offset > h->size || len > h->size - offset)
        return grow_error(h, offset + len, errp);
    uint32_t nbd_flags = (flags & DISKIMG_WRITE_MAY_UNMAP) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
    if ((flags & DISKIMG_WRITE_FUA) && h->can_fua)
        nbd_flags |= LIBNBD_CMD_FLAG_FUA;
    if (flags & DISKIMG_WRITE_NO_FALLBACK) {
        /* the caller wants zeroes only if they are cheap: the server must
         * promise that (NBD_CMD_FLAG_FAST_ZERO) */
        if (!h->can_zero || !h->can_fast_zero)
            return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                     "%s: the NBD server offers no fast zeroing", h->describe);
        nbd_flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
    }
    int ret = h->can_zero ? transfer(h, REQ_ZERO, NULL, len, offset, nbd_flags, errp)
                          : write_zero_buffers(h, offset, len, nbd_flags, errp);
    if (ret == 0 && (flags & DISKIMG_WRITE_FUA) && !h->can_fua)
        ret = nbd_io_flush(h, errp);
    return ret;
}

static int nbd_io_punch_hole(void *opaque, uint64_t offset, uint64_t len, GError **errp)
{
    struct nbd_io *h = opaque;
    if (offset >= h->size)
        return 0;
    len = MIN(len, h->size - offset);
    /* discard is advisory: nothing to do where the server has no trim */
    return h->can_trim ? transfer(h, REQ_TRIM, NULL, len, offset, 0, errp) : 0;
}

static int nbd_io_flush(void *opaque, GError **errp)
{
    struct nbd_io *h = opaque;
    if (!h->can_flush)
        return 0;
    /* With several connections the server promised (multi-conn) that a
     * flush on one covers writes completed on all; flush them all anyway,
     * it costs one round trip each and needs no such trust. */
    for (unsigned i = 0; i < h->n_conns; i++) {
        struct nbd_wait w;
        char *why;
        nbd_wait_init(&w);
        int64_t cookie = nbd_aio_flush(nbd_conn_handle(h->conns[i]), nbd_wait_callback(&w), 0);
        int err = nbd_wait_finish(h->conns[i], &w, cookie, &why);
        if (err)
            return request_error(h, err, why, "flush", 0, 0, errp);
    }
    return 0;
}

static int64_t nbd_io_get_size(void *opaque, GError **errp)
{
    (void)errp;
    return (int64_t)((struct nbd_io *)opaque)->size;
}

static int nbd_io_truncate(void *opaque, uint64_t size, enum diskimg_prealloc prealloc,
                           unsigned flags, GError **errp)
{
    struct nbd_io *h = opaque;
    (void)flags;
    if (prealloc != DISKIMG_PREALLOC_OFF)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s: NBD exports cannot be preallocated", h->describe);
    /* As qemu's nbd driver: an export has the size its server gives it;
     * a smaller image simply uses its start. */
    if (size > h->size)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s: Cannot grow NBD nodes (the export has %" PRIu64
                                 " bytes, %" PRIu64 " were asked for)", h->describe, h->size,
                                 size);
    return 0;
}

static uint32_t nbd_io_alignment(void *opaque)
{
    return ((struct nbd_io *)opaque)->min_block;
}

/* --------------------------------------------------------- block status */

struct bs_reply {
    struct bs_extent *out;
    unsigned n, cap;
    uint64_t end;               /* where the asked range ends */
};

static int collect_extents(void *user, const char *context, uint64_t offset,
                           uint32_t *entries, size_t n_entries, int *error)
{
    struct bs_reply *r = user;
    (void)error;
    if (!g_str_equal(context, LIBNBD_CONTEXT_BASE_ALLOCATION))
        return 0;
    for (size_t i = 0; i + 1 < n_entries && r->n < r->cap && offset < r->end; i += 2) {
        uint64_t len = MIN((uint64_t)entries[i], r->end - offset);
        if (len == 0)
            break;          /* a hostile zero-length extent ends the reply */
        r->out[r->n++] = (struct bs_extent){ offset, len, entries[i + 1] };
        offset += len;
    }
    return 0;
}

/* Asks the server about [offset, offset+len) and fills the cache. */
static int fetch_extents(struct nbd_io *h, uint64_t offset, uint64_t len, GError **errp)
{
    struct bs_reply r = { .out = h->bs, .cap = BS_CACHE_EXTENTS, .end = offset + len };
    struct nbd_conn *c = pick_conn(h);
    struct nbd_wait w;
    char *why;
    int gen = g_atomic_int_get(&h->generation);

    nbd_wait_init(&w);
    int64_t cookie = nbd_aio_block_status(nbd_conn_handle(c), len, offset,
                                          (nbd_extent_callback){ .callback = collect_extents,
                                                                 .user_data = &r },
                                          nbd_wait_callback(&w), 0);
    int err = nbd_wait_finish(c, &w, cookie, &why);
    if (err)
        return request_error(h, err, why, "block status", len, offset, errp);
    if (r.n == 0 || r.out[0].offset != offset) {
        h->n_bs = 0;
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: the NBD server answered block status at %" PRIu64
                                 " without an extent there", h->describe, offset);
    }
    h->n_bs = r.n;
    h->bs_generation = gen;
    return 0;
}

static const struct bs_extent *cached_extent(struct nbd_io *h, uint64_t offset)
{
    if (h->bs_generation != g_atomic_int_get(&h->generation))
        return NULL;
    for (unsigned i = 0; i < h->n_bs; i++)
        if (offset >= h->bs[i].offset && offset - h->bs[i].offset < h->bs[i].length)
            return &h->bs[i];
    return NULL;
}

static void extent_to_status(struct nbd_io *h, const struct bs_extent *e, uint64_t offset,
                             uint64_t len, struct diskimg_extent *ext)
{
    /* qemu's mapping: not a hole is data; the zero bit says it reads as zeroes */
    ext->flags = DISKIMG_BS_OFFSET_VALID;
    if (!(e->flags & LIBNBD_STATE_HOLE))
        ext->flags |= DISKIMG_BS_DATA;
    if (e->flags & LIBNBD_STATE_ZERO)
        ext->flags |= DISKIMG_BS_ZERO;
    ext->length = MIN(len, e->offset + e->length - offset);
    ext->offset = offset;
    ext->file = h->node;
}

static int nbd_io_block_status(void *opaque, uint64_t offset, uint64_t len,
                               struct diskimg_extent *ext, GError **errp)
{
    struct nbd_io *h = opaque;
    ext->offset = offset;
    ext->file = h->node;
    if (offset >= h->size) {
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_OFFSET_VALID;
        ext->length = len;
        return 0;
    }
    len = MIN(len, h->size - offset);
    if (!h->has_allocation) {
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_OFFSET_VALID;
        ext->length = len;
        return 0;
    }
    g_mutex_lock(&h->bs_lock);
    const struct bs_extent *e = cached_extent(h, offset);
    int ret = 0;
    if (!e) {
        /* ask for more than the caller wants: the next calls then come
         * from the cache */
        uint64_t ask = MIN(h->size - offset, (uint64_t)MAX_RANGE_REQUEST);
        ret = fetch_extents(h, offset, MAX(ask, len) == ask ? ask : MIN(len, ask), errp);
        e = ret == 0 ? cached_extent(h, offset) : NULL;
    }
    if (ret == 0 && e)
        extent_to_status(h, e, offset, len, ext);
    else if (ret == 0) {
        /* a write raced the reply: answer without the cache */
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_OFFSET_VALID;
        ext->length = MIN(len, h->bs[0].length);
    }
    g_mutex_unlock(&h->bs_lock);
    return ret;
}

/* ------------------------------------------------------------ open/close */

static void nbd_io_close(void *opaque)
{
    struct nbd_io *h = opaque;
    if (!h)
        return;
    for (unsigned i = 0; i < h->n_conns; i++)
        nbd_conn_close(h->conns[i]);
    g_free(h->conns);
    g_free(h->describe);
    g_mutex_clear(&h->bs_lock);
    g_free(h);
}

/* The target: from the name, or from the options when the core gave a
 * display name (--image-opts without filename). */
static int resolve_target(const struct diskimg_io_open_args *args, struct nbd_target *t,
                          GError **errp)
{
    bool from_options = g_str_has_prefix(args->filename, "json:");
    if (from_options)
        return nbd_target_from_options(args->options, t, errp);
    if (args->options && nbd_options_name_target(args->options))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "server.* and export options cannot be combined with an NBD "
                                 "URI or filename");
    return nbd_target_parse_name(args->filename, t, errp);
}

static void read_capabilities(struct nbd_io *h, struct nbd_handle *nbd)
{
    h->size = (uint64_t)nbd_get_size(nbd);
    int64_t min = nbd_get_block_size(nbd, LIBNBD_SIZE_MINIMUM);
    int64_t max = nbd_get_block_size(nbd, LIBNBD_SIZE_MAXIMUM);
    h->min_block = min > 1 && min <= 65536 ? (uint32_t)min : 1;
    h->max_request = max >= 4096 && max < DEFAULT_MAX_REQUEST ? (uint64_t)max
                                                              : DEFAULT_MAX_REQUEST;
    h->can_flush = nbd_can_flush(nbd) == 1;
    h->can_fua = nbd_can_fua(nbd) == 1;
    h->can_zero = nbd_can_zero(nbd) == 1;
    h->can_fast_zero = nbd_can_fast_zero(nbd) == 1;
    h->can_trim = nbd_can_trim(nbd) == 1;
    h->has_allocation = nbd_can_meta_context(nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
}

/* The first connection decides; more only when the server allows them. */
static int open_connections(struct nbd_io *h, const struct nbd_target *t,
                            const struct nbd_conn_setup *setup, unsigned wanted, bool rdwr,
                            GError **errp)
{
    h->conns = g_new0(struct nbd_conn *, MAX(wanted, 1));
    h->conns[0] = nbd_conn_open(t->is_unix, t->host, t->port, t->path, h->describe, setup,
                                errp);
    if (!h->conns[0])
        return -1;
    h->n_conns = 1;
    struct nbd_handle *nbd = nbd_conn_handle(h->conns[0]);
    int64_t size = nbd_get_size(nbd);
    if (size < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO, "%s: %s", h->describe,
                                 nbd_get_error());
    if (rdwr && nbd_is_read_only(nbd) == 1)
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION, "NBD export is read-only");
    read_capabilities(h, nbd);
    if (nbd_can_multi_conn(nbd) != 1)
        return 0;
    /* A server at its client limit refuses the rest: fewer connections
     * still work. */
    for (unsigned i = 1; i < wanted; i++) {
        h->conns[i] = nbd_conn_open(t->is_unix, t->host, t->port, t->path, h->describe,
                                    setup, NULL);
        if (!h->conns[i])
            break;
        h->n_conns++;
    }
    return 0;
}

/* DISKIMG_OPEN_TRUNCATE: an export cannot be emptied, so it is zeroed,
 * deallocating where the server can. */
static int empty_export(struct nbd_io *h, GError **errp)
{
    if (h->can_zero && h->can_fast_zero) {
        GError *err = NULL;
        if (transfer(h, REQ_ZERO, NULL, h->size, 0, LIBNBD_CMD_FLAG_FAST_ZERO, &err) == 0)
            return 0;
        g_clear_error(&err);    /* not fast after all: zero the slow way */
    }
    return nbd_io_write_zeroes(h, 0, h->size, DISKIMG_WRITE_MAY_UNMAP, errp);
}

static void *nbd_io_open(const struct diskimg_io_open_args *args, GError **errp)
{
    struct nbd_target t;
    if (resolve_target(args, &t, errp) < 0)
        return NULL;
    struct nbd_tls tls;
    if (nbd_tls_resolve(args->options, t.tls, t.is_unix ? NULL : t.host, &tls, errp) < 0) {
        nbd_target_clear(&t);
        return NULL;
    }
    struct nbd_io *h = g_new0(struct nbd_io, 1);
    g_mutex_init(&h->bs_lock);
    h->node = args->node;
    h->describe = nbd_target_describe(&t);
    struct nbd_conn_setup setup = {
        .export = t.export,
        .tls = tls.mode,
        .tls_certificates = tls.certificates,
        .tls_psk_file = tls.psk_file,
        .tls_username = tls.username,
        .tls_verify_peer = tls.verify_peer,
    };
    unsigned wanted = (unsigned)diskimg_options_get_uint(args->options, "connections", 4);
    if (args->flags & DISKIMG_OPEN_NO_IO)
        wanted = 1;     /* info reads a few headers: one handshake is enough */
    bool rdwr = (args->flags & DISKIMG_OPEN_RDWR) != 0;
    int ret = open_connections(h, &t, &setup, wanted, rdwr, errp);
    if (ret == 0 && rdwr && (args->flags & DISKIMG_OPEN_TRUNCATE))
        ret = empty_export(h, errp);
    nbd_tls_clear(&tls);
    nbd_target_clear(&t);
    if (ret < 0) {
        nbd_io_close(h);
        return NULL;
    }
    return h;
}

static const struct diskimg_io_ops nbd_io_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = nbd_io_open,
    .close = nbd_io_close,
    .pread = nbd_io_pread,
    .pwrite = nbd_io_pwrite,
    .flush = nbd_io_flush,
    .get_size = nbd_io_get_size,
    .truncate = nbd_io_truncate,
    .punch_hole = nbd_io_punch_hole,
    .write_zeroes = nbd_io_write_zeroes,
    .block_status = nbd_io_block_status,
    .alignment = nbd_io_alignment,
};

static const struct diskimg_plugin nbd_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_IO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "nbd",
    .version = PLUGIN_VERSION,
    .summary = "Network Block Device exports through libnbd",
    .schema = nbd_schema_yaml,
    .ops = &nbd_io_ops,
};

DISKIMG_PLUGIN_DEFINE(nbd_plugin)
