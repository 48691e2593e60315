/* SPDX-License-Identifier: MIT */
/*
 * mcache.c — a bounded LRU cache of fixed-size metadata blocks (L2 tables,
 * refcount blocks, grain tables...) of one file (toolkit.h).
 *
 * The budget is fixed when the cache is made (bytes, rounded down to whole
 * entries, at least two, at most MCACHE_MAX_ENTRIES), so memory never grows
 * with the image.  Entries are pinned while a caller works on them; dirty
 * entries are written back on eviction and on flush.  A cache may depend on
 * another: before any entry of the dependant reaches the disk, the other
 * cache is written back and the file flushed — the ordering that keeps,
 * say, an L2 entry from pointing at a cluster whose refcount block, or
 * whose data, is not on disk yet.
 *
 * Not thread-safe: the format calls it under its own lock.
 */
#include <string.h>

#include "internal.h"
#include <diskimg/toolkit.h>

/* The victim scan is linear; beyond this many entries a larger budget
 * costs more in scans than it saves in reads. */
#define MCACHE_MAX_ENTRIES 4096u

struct mcache_entry {
    uint64_t offset;        /* file offset of the cached block, when used */
    uint8_t *data;          /* entry_size bytes */
    uint64_t lru;           /* last use tick */
    int refs;               /* pinned while > 0 */
    bool used;
    bool dirty;
};

struct diskimg_mcache {
    diskimg_node *file;
    char *what;             /* "L2 table", for messages and hooks */
    uint32_t entry_size;
    uint64_t align_mask;    /* entry_size - 1 when a power of two (the common case), else 0 */
    unsigned n;
    struct mcache_entry *e;
    uint8_t *base;          /* n * entry_size bytes, entry i at base + i * entry_size */
    GHashTable *index;      /* offset -> entry (keyed by the entry's own offset field) */
    uint64_t tick;
    diskimg_mcache *depends;             /* flushed before any write-back of ours */
    struct diskimg_mcache_hooks hooks;   /* zero-filled past the caller's struct_size */
};

diskimg_mcache *diskimg_mcache_new(diskimg_node *file, const char *what, uint32_t entry_size,
                                   uint64_t budget, GError **errp)
{
    if (entry_size == 0) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "%s cache: entry size 0", what);
        return NULL;
    }
    budget = trust_cache_budget(file, budget);        /* smaller for --untrusted */
    diskimg_mcache *c = g_new0(diskimg_mcache, 1);
    c->file = file;
    c->what = g_strdup(what);
    c->entry_size = entry_size;
    c->align_mask = (entry_size & (entry_size - 1)) ? 0 : entry_size - 1;
    c->n = (unsigned)MAX(2, MIN(budget / entry_size, MCACHE_MAX_ENTRIES));
    c->base = diskimg_alloc_aligned((size_t)c->n * entry_size);
    if (!c->base) {
        diskimg_mcache_free(c);
        diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "Out of memory");
        return NULL;
    }
    c->e = g_new0(struct mcache_entry, c->n);
    c->index = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (unsigned i = 0; i < c->n; i++)
        c->e[i].data = c->base + (size_t)i * entry_size;
    return c;
}

void diskimg_mcache_free(diskimg_mcache *c)
{
    if (!c)
        return;
    diskimg_free_aligned(c->base);
    g_free(c->e);
    if (c->index)
        g_hash_table_destroy(c->index);
    g_free(c->what);
    g_free(c);
}

void diskimg_mcache_set_dependency(diskimg_mcache *c, diskimg_mcache *first)
{
    c->depends = first;
}

void diskimg_mcache_set_hooks(diskimg_mcache *c, const struct diskimg_mcache_hooks *hooks)
{
    memset(&c->hooks, 0, sizeof(c->hooks));
    if (hooks)
        memcpy(&c->hooks, hooks, MIN(hooks->struct_size, sizeof(c->hooks)));
}

unsigned diskimg_mcache_entries(const diskimg_mcache *c)
{
    return c->n;
}

/* Entry bookkeeping: the index maps offsets to used entries. */
static void set_offset(diskimg_mcache *c, struct mcache_entry *e, bool used, uint64_t off)
{
    if (e->used)
        g_hash_table_remove(c->index, &e->offset);
    e->used = used;
    e->offset = off;
    if (used)
        g_hash_table_insert(c->index, &e->offset, e);
}

/*
 * The barrier before a dependant writes back: the cache it depends on is
 * written back and the file flushed even when that cache had nothing
 * dirty, because the file flush also makes durable the data written
 * before, which a new entry of ours may point at (an L2 entry whose zero
 * flag is being cleared over a cluster just filled, with no refcount
 * change to flush).
 */
static int barrier(diskimg_mcache *c, GError **errp)
{
    if (!c->depends)
        return 0;
    if (diskimg_mcache_flush(c->depends, errp) < 0)
        return -1;
    return diskimg_node_flush(c->file, errp);
}

static int write_entry(diskimg_mcache *c, struct mcache_entry *e, GError **errp)
{
    /* the format's last word: a corrupt image, a metadata-write guard */
    if (c->hooks.before_write &&
        c->hooks.before_write(c->hooks.opaque, c->what, e->offset, c->entry_size, errp) < 0)
        return -1;
    if (diskimg_node_pwrite(c->file, e->data, c->entry_size, e->offset, 0, errp) < 0)
        return -1;
    e->dirty = false;
    return 0;
}

/* One entry on its own (eviction): behind its own barrier. */
static int write_back(diskimg_mcache *c, struct mcache_entry *e, GError **errp)
{
    if (!e->dirty)
        return 0;
    return barrier(c, errp) < 0 ? -1 : write_entry(c, e, errp);
}

static struct mcache_entry *find(diskimg_mcache *c, uint64_t off)
{
    return g_hash_table_lookup(c->index, &off);
}

static struct mcache_entry *find_data(diskimg_mcache *c, const uint8_t *data)
{
    if (data < c->base)
        return NULL;
    size_t i = (size_t)(data - c->base) / c->entry_size;
    return i < c->n ? &c->e[i] : NULL;
}

/* The least recently used unpinned entry, written back and emptied. */
static struct mcache_entry *victim(diskimg_mcache *c, GError **errp)
{
    struct mcache_entry *best = NULL;
    for (unsigned i = 0; i < c->n; i++) {
        struct mcache_entry *e = &c->e[i];
        if (e->refs == 0 && (!best || e->lru < best->lru))
            best = e;
    }
    if (!best) {
        diskimg_set_error(errp, DISKIMG_ERROR_FAILED, "%s: every %s cache entry is in use",
                          diskimg_node_filename(c->file), c->what);
        return NULL;
    }
    if (write_back(c, best, errp) < 0)
        return NULL;
    set_offset(c, best, false, 0);
    return best;
}

/* Offset 0 holds the header of every format and entries are aligned: any
 * other offset is damaged metadata. */
static int bad_offset(diskimg_mcache *c, uint64_t off, GError **errp)
{
    if (c->hooks.bad_offset) {
        c->hooks.bad_offset(c->hooks.opaque, c->what, off, errp);
        return -1;
    }
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: %s offset %#" PRIx64 " is invalid",
                             diskimg_node_filename(c->file), c->what, off);
}

int diskimg_mcache_get(diskimg_mcache *c, uint64_t off, unsigned flags, uint8_t **data,
                       GError **errp)
{
    *data = NULL;
    /* a mask where it can be: a division costs more than the lookup's hash */
    bool misaligned = c->align_mask ? (off & c->align_mask) != 0 : off % c->entry_size != 0;
    if (off == 0 || misaligned)
        return bad_offset(c, off, errp);
    bool fresh = flags & DISKIMG_MCACHE_FRESH;
    struct mcache_entry *e = find(c, off);
    if (!e) {
        e = victim(c, errp);
        if (!e)
            return -1;
        if (fresh)
            memset(e->data, 0, c->entry_size);
        else if (diskimg_node_pread(c->file, e->data, c->entry_size, off, errp) < 0)
            return -1;
        set_offset(c, e, true, off);
        e->dirty = false;
    } else if (fresh) {
        memset(e->data, 0, c->entry_size);
    }
    e->lru = ++c->tick;
    e->refs++;
    *data = e->data;
    return 0;
}

void diskimg_mcache_put(diskimg_mcache *c, uint8_t *data)
{
    struct mcache_entry *e = find_data(c, data);
    if (e && e->refs > 0)
        e->refs--;
}

void diskimg_mcache_mark_dirty(diskimg_mcache *c, uint8_t *data)
{
    struct mcache_entry *e = find_data(c, data);
    if (e)
        e->dirty = true;
}

int diskimg_mcache_flush(diskimg_mcache *c, GError **errp)
{
    bool wrote = false;
    for (unsigned i = 0; i < c->n; i++) {
        if (!c->e[i].dirty)
            continue;
        /* one barrier before the first entry serves them all */
        if ((!wrote && barrier(c, errp) < 0) || write_entry(c, &c->e[i], errp) < 0)
            return -1;
        wrote = true;
    }
    /* Ordering point: what we wrote is durable before dependants write. */
    return wrote ? diskimg_node_flush(c->file, errp) : 0;
}

void diskimg_mcache_discard(diskimg_mcache *c, uint64_t off)
{
    struct mcache_entry *e = find(c, off);
    if (e && e->refs == 0) {
        set_offset(c, e, false, 0);
        e->dirty = false;
    }
}

int diskimg_mcache_empty(diskimg_mcache *c, GError **errp)
{
    if (diskimg_mcache_flush(c, errp) < 0)
        return -1;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].refs == 0 && c->e[i].used)
            set_offset(c, &c->e[i], false, 0);
    }
    return 0;
}
