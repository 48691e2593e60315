/* SPDX-License-Identifier: MIT */
/*
 * guard.c — the metadata-write guard (see diskimg/guard.h).
 *
 * Ranges live in one array, sorted by start when a query finds it
 * unsorted.  Beside each range the largest end of it and all before it is
 * kept, so a query walks back from the last range starting before the
 * write's end only while an earlier range can still reach the write.
 */
#include <glib.h>

#include "diskimg/guard.h"

struct guard_range {
    uint64_t start, end;
    uint64_t max_end;       /* max end over this range and every one before it */
    uint32_t kind;
    const char *name;
};

struct guard_probe {
    uint32_t kind;
    const char *name;
    diskimg_guard_probe_fn fn;
    void *opaque;
};

struct diskimg_guard {
    GArray *ranges;         /* struct guard_range */
    GArray *probes;         /* struct guard_probe */
    bool sorted;
};

diskimg_guard *diskimg_guard_new(void)
{
    diskimg_guard *g = g_new0(diskimg_guard, 1);
    g->ranges = g_array_new(FALSE, FALSE, sizeof(struct guard_range));
    g->probes = g_array_new(FALSE, FALSE, sizeof(struct guard_probe));
    g->sorted = true;
    return g;
}

void diskimg_guard_free(diskimg_guard *g)
{
    if (!g)
        return;
    g_array_free(g->ranges, TRUE);
    g_array_free(g->probes, TRUE);
    g_free(g);
}

void diskimg_guard_clear(diskimg_guard *g, uint32_t kinds)
{
    guint keep = 0;
    for (guint i = 0; i < g->ranges->len; i++) {
        struct guard_range r = g_array_index(g->ranges, struct guard_range, i);
        if (!(r.kind & kinds))
            g_array_index(g->ranges, struct guard_range, keep++) = r;
    }
    g_array_set_size(g->ranges, keep);
    g->sorted = false;      /* max_end must be recomputed */
}

void diskimg_guard_add(diskimg_guard *g, uint32_t kind, const char *name, uint64_t off,
                       uint64_t len)
{
    if (len == 0)
        return;
    struct guard_range r = {
        .start = off,
        .end = off > UINT64_MAX - len ? UINT64_MAX : off + len,
        .kind = kind,
        .name = name,
    };
    g_array_append_val(g->ranges, r);
    g->sorted = false;
}

void diskimg_guard_add_probe(diskimg_guard *g, uint32_t kind, const char *name,
                             diskimg_guard_probe_fn fn, void *opaque)
{
    struct guard_probe p = { .kind = kind, .name = name, .fn = fn, .opaque = opaque };
    g_array_append_val(g->probes, p);
}

static gint by_start(gconstpointer a, gconstpointer b)
{
    const struct guard_range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static void sort_ranges(diskimg_guard *g)
{
    g_array_sort(g->ranges, by_start);
    uint64_t max_end = 0;
    for (guint i = 0; i < g->ranges->len; i++) {
        struct guard_range *r = &g_array_index(g->ranges, struct guard_range, i);
        max_end = MAX(max_end, r->end);
        r->max_end = max_end;
    }
    g->sorted = true;
}

/* Number of ranges that start before `end`. */
static guint ranges_starting_before(const diskimg_guard *g, uint64_t end)
{
    guint lo = 0, hi = g->ranges->len;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (g_array_index(g->ranges, struct guard_range, mid).start < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const char *diskimg_guard_find(diskimg_guard *g, uint32_t allowed, uint64_t off, uint64_t len)
{
    if (len == 0)
        return NULL;
    if (!g->sorted)
        sort_ranges(g);
    uint64_t end = off > UINT64_MAX - len ? UINT64_MAX : off + len;
    for (guint i = ranges_starting_before(g, end); i-- > 0;) {
        const struct guard_range *r = &g_array_index(g->ranges, struct guard_range, i);
        if (r->max_end <= off)
            break;      /* nothing at or before i reaches the write */
        if (r->end > off && !(r->kind & allowed))
            return r->name;
    }
    for (guint i = 0; i < g->probes->len; i++) {
        const struct guard_probe *p = &g_array_index(g->probes, struct guard_probe, i);
        if (!(p->kind & allowed) && p->fn(p->opaque, off, end - off))
            return p->name;
    }
    return NULL;
}
