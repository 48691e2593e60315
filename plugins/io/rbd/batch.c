/* SPDX-License-Identifier: MIT */
/*
 * batch.c — the batch path (submit/reap) on librbd's aio calls.
 *
 * Each request becomes one rbd_aio_* call with a completion whose callback
 * (run on a librbd thread) stores the result in the request and queues it
 * on the handle; reap takes from that queue, waiting for at least `min`.
 * Nothing here blocks on the cluster except reap's wait (and FUA writes,
 * which librbd cannot do: they are written and flushed synchronously), so
 * a caller keeps as many requests in flight as it submits.
 */
#include <errno.h>
#include <string.h>

#include "rbd-handle.h"

struct aio_slot {
    struct rbd_handle *h;
    struct diskimg_io_request *req;
};

void rbd_batch_init(struct rbd_handle *h)
{
    g_mutex_init(&h->batch_lock);
    g_cond_init(&h->batch_done);
    g_queue_init(&h->completed);
}

void rbd_batch_destroy(struct rbd_handle *h)
{
    /* Callbacks still to come would touch the handle: wait for them. */
    g_mutex_lock(&h->batch_lock);
    while (h->in_flight)
        g_cond_wait(&h->batch_done, &h->batch_lock);
    g_queue_clear(&h->completed);
    g_mutex_unlock(&h->batch_lock);
    g_mutex_clear(&h->batch_lock);
    g_cond_clear(&h->batch_done);
}

/* A read returns its length, shorter where librbd stopped at the image's
 * end (zeroes after it); the other requests return 0. */
static int request_result(const struct diskimg_io_request *req, ssize_t r)
{
    if (r < 0)
        return (int)r;
    if (req->op == DISKIMG_IO_READ && (uint64_t)r < req->len)
        memset((uint8_t *)req->buf + r, 0, req->len - (uint64_t)r);
    return 0;
}

static void finish(struct rbd_handle *h, struct diskimg_io_request *req, int result)
{
    if (req->op == DISKIMG_IO_WRITE || req->op == DISKIMG_IO_WRITE_ZEROES)
        rbd_changed(h);
    req->result = result;
    g_mutex_lock(&h->batch_lock);
    g_queue_push_tail(&h->completed, req);
    h->in_flight--;
    g_cond_broadcast(&h->batch_done);
    g_mutex_unlock(&h->batch_lock);
}

static void on_complete(rbd_completion_t c, void *arg)
{
    struct aio_slot *slot = arg;
    int result = request_result(slot->req, rbd_aio_get_return_value(c));
    rbd_aio_release(c);
    finish(slot->h, slot->req, result);
    g_free(slot);
}

static int start_aio(struct rbd_handle *h, struct diskimg_io_request *req, rbd_completion_t c)
{
    switch (req->op) {
    case DISKIMG_IO_READ:
        return rbd_aio_read2(h->image, req->offset, req->len, req->buf, c, 0);
    case DISKIMG_IO_WRITE:
        return rbd_aio_write2(h->image, req->offset, req->len, req->buf, c, 0);
    case DISKIMG_IO_FLUSH:
        return rbd_aio_flush(h->image, c);
#ifdef LIBRBD_SUPPORTS_WRITE_ZEROES
    case DISKIMG_IO_WRITE_ZEROES:
        return rbd_aio_write_zeroes(h->image, req->offset, req->len, c,
                                    rbd_zero_flags(req->flags), 0);
#endif
    default:
        return -EOPNOTSUPP;
    }
}

/* One request on its way; errors librbd refuses at once complete it too,
 * so reap sees every request exactly once. */
static void submit_one(struct rbd_handle *h, struct diskimg_io_request *req)
{
    g_mutex_lock(&h->batch_lock);
    h->in_flight++;
    g_mutex_unlock(&h->batch_lock);
    bool grows = req->op == DISKIMG_IO_WRITE || req->op == DISKIMG_IO_WRITE_ZEROES;
    if (req->len > SSIZE_MAX || req->offset + req->len < req->offset) {
        finish(h, req, -EINVAL);
        return;
    }
    if (grows && (req->flags & DISKIMG_WRITE_FUA)) {
        /* librbd has no FUA: write, then flush, before it completes. */
        finish(h, req, rbd_run_request(h, req));
        return;
    }
    if (grows && rbd_grow_for(h, req->offset + req->len, NULL) < 0) {
        finish(h, req, -EIO);
        return;
    }
    if (req->op == DISKIMG_IO_READ) {
        /* librbd refuses a read starting past the end: zeroes, at once. */
        uint64_t readable;
        if (rbd_readable(h, req->offset, req->len, &readable, NULL) < 0) {
            finish(h, req, -EIO);
            return;
        }
        if (readable == 0) {
            memset(req->buf, 0, req->len);
            finish(h, req, 0);
            return;
        }
    }
    struct aio_slot *slot = g_new(struct aio_slot, 1);
    *slot = (struct aio_slot){ .h = h, .req = req };
    rbd_completion_t c;
    int r = rbd_aio_create_completion(slot, on_complete, &c);
    if (r == 0) {
        r = start_aio(h, req, c);
        if (r < 0)
            rbd_aio_release(c);
    }
    if (r < 0) {
        g_free(slot);
        finish(h, req, r);
    }
}

int rbd_batch_submit(void *opaque, struct diskimg_io_request *const *reqs, unsigned n,
                     GError **errp)
{
    struct rbd_handle *h = opaque;
    (void)errp;
    for (unsigned i = 0; i < n; i++)
        submit_one(h, reqs[i]);
    return 0;
}

int rbd_batch_reap(void *opaque, struct diskimg_io_request **done, unsigned max, unsigned min,
                   GError **errp)
{
    struct rbd_handle *h = opaque;
    (void)errp;   /* per-request errors travel in each request's result */
    g_mutex_lock(&h->batch_lock);
    /* Never wait for more than was submitted and not yet reaped (as posix). */
    min = MIN(MIN(min, max), h->in_flight + g_queue_get_length(&h->completed));
    while (g_queue_get_length(&h->completed) < min)
        g_cond_wait(&h->batch_done, &h->batch_lock);
    unsigned got = 0;
    while (got < max && !g_queue_is_empty(&h->completed))
        done[got++] = g_queue_pop_head(&h->completed);
    g_mutex_unlock(&h->batch_lock);
    return (int)got;
}
