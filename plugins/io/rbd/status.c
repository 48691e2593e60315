/* SPDX-License-Identifier: MIT */
/*
 * status.c — block status of an rbd image: is the byte at an offset data
 * or a hole, and how far does that go.
 *
 * rbd_diff_iterate2 from no snapshot lists the extents written since the
 * image was made (with the parent's, for clones); what it leaves out reads
 * as zeroes.  whole_object = false gives extents inside objects, so a hole
 * inside a 4 MiB object is skipped too.  librbd looks objects up
 * concurrently and reports their extents in the order they arrive, not in
 * offset order, so a walk cannot stop at the first change: it collects one
 * window of the image (sorted, merged) and the handle keeps that map, so
 * the copy engine's next questions in the same window cost nothing.  Any
 * change to the image (a write, zeroes, discard, resize) makes the kept
 * map stale through the handle's generation counter.  Windows start on an
 * object boundary: librbd before 1.17 could report wrong extents for
 * unaligned starts (Ceph tracker 53784).
 */
#include <errno.h>
#include <stdlib.h>

#include "rbd-handle.h"

/* The range one walk maps: bounds its cost on a large image. */
#define STATUS_WINDOW (UINT64_C(256) << 20)

struct run {
    uint64_t start, end;
};

struct status_map {
    uint64_t generation;    /* of the image when the walk began */
    uint64_t start, end;    /* the window */
    GArray *runs;           /* struct run: the data, sorted, disjoint */
};

static int collect_extent(uint64_t offs, size_t len, int exists, void *opaque)
{
    GArray *runs = opaque;
    /* Diffs from a snapshot also report removed extents; from none, none. */
    if (exists && len) {
        struct run r = { offs, offs + len };
        g_array_append_val(runs, r);
    }
    return 0;
}

static int compare_runs(const void *a, const void *b)
{
    const struct run *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Sorts the runs and joins those that touch or overlap. */
static void merge_runs(GArray *runs)
{
    if (runs->len < 2)
        return;
    qsort(runs->data, runs->len, sizeof(struct run), compare_runs);
    guint out = 0;
    for (guint i = 1; i < runs->len; i++) {
        struct run *last = &g_array_index(runs, struct run, out);
        const struct run *next = &g_array_index(runs, struct run, i);
        if (next->start <= last->end)
            last->end = MAX(last->end, next->end);
        else
            g_array_index(runs, struct run, ++out) = *next;
    }
    g_array_set_size(runs, out + 1);
}

/* Maps the window holding `offset`; false when librbd could not say. */
static bool walk_window(struct rbd_handle *h, uint64_t offset, uint64_t size,
                        struct status_map *map)
{
    map->generation = atomic_load(&h->generation);
    map->start = offset - offset % h->object_size;
    map->end = MIN(size, map->start + MAX(STATUS_WINDOW, 2 * h->object_size));
    g_array_set_size(map->runs, 0);
    int r = rbd_diff_iterate2(h->image, NULL, map->start, map->end - map->start, 1, 0,
                              collect_extent, map->runs);
    if (r < 0) {
        map->end = 0;   /* nothing kept */
        return false;
    }
    merge_runs(map->runs);
    return true;
}

/* Data or hole at offset in a mapped window, and where that ends. */
static bool lookup(const struct status_map *map, uint64_t offset, uint64_t *run_end)
{
    for (guint i = 0; i < map->runs->len; i++) {
        const struct run *r = &g_array_index(map->runs, struct run, i);
        if (r->end <= offset)
            continue;
        if (r->start <= offset) {
            *run_end = MIN(r->end, map->end);
            return true;
        }
        *run_end = MIN(r->start, map->end);
        return false;
    }
    *run_end = map->end;
    return false;
}

void rbd_status_init(struct rbd_handle *h)
{
    g_mutex_init(&h->status_lock);
    h->status = g_new0(struct status_map, 1);
    h->status->runs = g_array_new(FALSE, FALSE, sizeof(struct run));
}

void rbd_status_destroy(struct rbd_handle *h)
{
    if (h->status) {
        g_array_free(h->status->runs, TRUE);
        g_free(h->status);
    }
    g_mutex_clear(&h->status_lock);
}

static void set_extent(struct rbd_handle *h, struct diskimg_extent *ext, uint64_t offset,
                       uint64_t len, uint32_t flags)
{
    ext->flags = flags | DISKIMG_BS_OFFSET_VALID;
    ext->length = len;
    ext->offset = offset;
    ext->file = h->node;
}

int rbd_io_block_status(void *opaque, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp)
{
    struct rbd_handle *h = opaque;
    if (len == 0 || offset + len < offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: invalid block status request at offset %" PRIu64,
                                 h->name, offset);
    int64_t size = rbd_io_get_size(h, errp);
    if (size < 0)
        return -1;
    if (offset >= (uint64_t)size) {
        set_extent(h, ext, offset, len, DISKIMG_BS_ZERO);   /* past the end */
        return 0;
    }
    g_mutex_lock(&h->status_lock);
    struct status_map *map = h->status;
    bool fresh = map->generation == atomic_load(&h->generation) && offset >= map->start &&
                 offset < map->end && map->end <= (uint64_t)size;
    bool known = fresh || walk_window(h, offset, (uint64_t)size, map);
    uint64_t run_end = 0;
    bool data = known ? lookup(map, offset, &run_end) : true;
    g_mutex_unlock(&h->status_lock);
    if (!known) {
        /* As qemu: without an answer, everything is data (never a hole
         * that would lose bytes). */
        set_extent(h, ext, offset, len, DISKIMG_BS_DATA);
        return 0;
    }
    set_extent(h, ext, offset, MIN(run_end, offset + len) - offset,
               data ? DISKIMG_BS_DATA : DISKIMG_BS_ZERO);
    return 0;
}
