/* SPDX-License-Identifier: MIT */
/*
 * cache.c — a bounded LRU cache of metadata clusters.
 *
 * Two instances per image: L2 tables and refcount blocks.  The budget is
 * fixed at open (bytes, rounded to whole clusters, at least two entries),
 * so memory never grows with the image size.  Entries are pinned while a
 * caller works on them; dirty entries are written back on eviction and on
 * flush.  The L2 cache depends on the refcount cache: before any L2 table
 * reaches the disk, refcount blocks are written and flushed, so that a
 * crash never leaves an L2 entry pointing at a cluster with refcount 0.
 */
#include <string.h>

#include "qcow2.h"

int qcow2_cache_init(struct qcow2_cache *c, struct qcow2 *s, const char *what,
                     uint64_t budget, GError **errp)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->what = what;
    c->n = (unsigned)MAX(2, MIN(budget / s->cluster_size, 4096));
    c->base = diskimg_alloc_aligned((size_t)c->n * s->cluster_size);
    if (!c->base)
        return qcow2_enomem(errp);
    c->e = g_new0(struct qcow2_cache_entry, c->n);
    c->index = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (unsigned i = 0; i < c->n; i++)
        c->e[i].data = c->base + (size_t)i * s->cluster_size;
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    diskimg_free_aligned(c->base);
    g_free(c->e);
    if (c->index)
        g_hash_table_destroy(c->index);
    memset(c, 0, sizeof(*c));
}

/* Entry bookkeeping: the index maps offsets to entries (keyed by the
 * entry's own offset field). */
static void set_offset(struct qcow2_cache *c, struct qcow2_cache_entry *e, uint64_t off)
{
    if (e->offset)
        g_hash_table_remove(c->index, &e->offset);
    e->offset = off;
    if (off)
        g_hash_table_insert(c->index, &e->offset, e);
}

static int write_back(struct qcow2_cache *c, struct qcow2_cache_entry *e, GError **errp)
{
    if (!e->dirty)
        return 0;
    if (c->depends && qcow2_cache_flush(c->depends, errp) < 0)
        return -1;
    if (c->s->corrupt) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "%s: image is marked corrupt; not writing %s at %#" PRIx64,
                    c->s->filename, c->what, e->offset);
        return -1;
    }
    if (qcow2_guard_check_write(c->s, e->offset, c->s->cluster_size,
                                c == &c->s->rbc ? QCOW2_OL_REFCOUNT_BLOCK
                                                : QCOW2_OL_ACTIVE_L2 | QCOW2_OL_INACTIVE_L2,
                                errp) < 0 ||
        diskimg_node_pwrite(c->s->file, e->data, c->s->cluster_size, e->offset, 0, errp) < 0)
        return -1;
    e->dirty = false;
    return 0;
}

static struct qcow2_cache_entry *find(struct qcow2_cache *c, uint64_t off)
{
    return g_hash_table_lookup(c->index, &off);
}

static struct qcow2_cache_entry *find_data(struct qcow2_cache *c, const uint8_t *data)
{
    if (data < c->base)
        return NULL;
    size_t i = (size_t)(data - c->base) / c->s->cluster_size;
    return i < c->n ? &c->e[i] : NULL;
}

/* The least recently used unpinned entry, written back and emptied. */
static struct qcow2_cache_entry *victim(struct qcow2_cache *c, GError **errp)
{
    struct qcow2_cache_entry *best = NULL;
    for (unsigned i = 0; i < c->n; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (e->refs == 0 && (!best || e->lru < best->lru))
            best = e;
    }
    if (!best) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "qcow2: every %s cache entry is in use", c->what);
        return NULL;
    }
    if (write_back(c, best, errp) < 0)
        return NULL;
    set_offset(c, best, 0);
    return best;
}

int qcow2_cache_get(struct qcow2_cache *c, uint64_t off, bool fresh, uint8_t **data,
                    GError **errp)
{
    struct qcow2_cache_entry *e = off ? find(c, off) : NULL;
    if (!off || (off & (c->s->cluster_size - 1))) {
        return qcow2_corrupt(c->s, errp, "%s offset %#" PRIx64 " is invalid", c->what, off);
    }
    if (!e) {
        e = victim(c, errp);
        if (!e)
            return -1;
        if (fresh) {
            memset(e->data, 0, c->s->cluster_size);
        } else if (diskimg_node_pread(c->s->file, e->data, c->s->cluster_size, off, errp) < 0) {
            return -1;
        }
        set_offset(c, e, off);
        e->dirty = false;
    } else if (fresh) {
        memset(e->data, 0, c->s->cluster_size);
    }
    e->lru = ++c->tick;
    e->refs++;
    *data = e->data;
    return 0;
}

void qcow2_cache_put(struct qcow2_cache *c, uint8_t *data)
{
    struct qcow2_cache_entry *e = find_data(c, data);
    if (e && e->refs > 0)
        e->refs--;
}

void qcow2_cache_dirty(struct qcow2_cache *c, uint8_t *data)
{
    struct qcow2_cache_entry *e = find_data(c, data);
    if (e)
        e->dirty = true;
}

int qcow2_cache_flush(struct qcow2_cache *c, GError **errp)
{
    bool wrote = false;
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->e[i].dirty)
            continue;
        if (write_back(c, &c->e[i], errp) < 0)
            return -1;
        wrote = true;
    }
    /* Ordering point: what we wrote is durable before dependants write. */
    return wrote ? diskimg_node_flush(c->s->file, errp) : 0;
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t off)
{
    struct qcow2_cache_entry *e = find(c, off);
    if (e && e->refs == 0) {
        set_offset(c, e, 0);
        e->dirty = false;
    }
}

int qcow2_cache_empty(struct qcow2_cache *c, GError **errp)
{
    if (qcow2_cache_flush(c, errp) < 0)
        return -1;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].refs == 0)
            set_offset(c, &c->e[i], 0);
    }
    return 0;
}
