/* SPDX-License-Identifier: MIT */
/* rbd-handle.h — one open rbd image, shared by rbd.c, status.c, batch.c. */
#ifndef DISKIMG_RBD_HANDLE_H
#define DISKIMG_RBD_HANDLE_H

#include <stdatomic.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <diskimg/plugin.h>

struct rbd_handle {
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    diskimg_node *node;           /* the file node, for block status extents */
    char *name;                   /* the name the core opened, for messages */
    uint64_t object_size;         /* block status queries start on objects */
    _Atomic uint64_t size;        /* the size we last saw or set */
    GMutex grow_lock;             /* one resize at a time */

    /* Block status (status.c): the data map of the last window walked,
     * good while `generation` (bumped after every change) stays. */
    _Atomic uint64_t generation;
    GMutex status_lock;
    struct status_map *status;

    /* The batch path (batch.c): requests librbd has completed and not yet
     * reaped, and how many are still in flight. */
    GMutex batch_lock;
    GCond batch_done;
    GQueue completed;             /* struct diskimg_io_request * */
    unsigned in_flight;
};

/* After every request that changed what the image holds. */
static inline void rbd_changed(struct rbd_handle *h)
{
    atomic_fetch_add(&h->generation, 1);
}

int64_t rbd_io_get_size(void *h, GError **errp);
int rbd_readable(struct rbd_handle *h, uint64_t offset, uint64_t len, uint64_t *readable,
                 GError **errp);
int rbd_grow_for(struct rbd_handle *h, uint64_t end, GError **errp);
int rbd_zero_flags(unsigned flags);
/* One batch request served synchronously: 0 or a negative errno. */
int rbd_run_request(struct rbd_handle *h, struct diskimg_io_request *req);

/* status.c: data or hole at an offset, from rbd_diff_iterate2. */
void rbd_status_init(struct rbd_handle *h);
void rbd_status_destroy(struct rbd_handle *h);
int rbd_io_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                        GError **errp);

/* batch.c */
void rbd_batch_init(struct rbd_handle *h);
/* Waits for requests still in flight, then frees what the batch path holds. */
void rbd_batch_destroy(struct rbd_handle *h);
int rbd_batch_submit(void *h, struct diskimg_io_request *const *reqs, unsigned n,
                     GError **errp);
int rbd_batch_reap(void *h, struct diskimg_io_request **done, unsigned max, unsigned min,
                   GError **errp);

#endif
