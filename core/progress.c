/* SPDX-License-Identifier: MIT */
/*
 * Progress accounting shared by every long-running operation.  The core
 * only counts: it hands each change to the handler and the observer the
 * command layer installed (diskimg_set_progress_handler, _observer), which
 * draw "-p", write --progress-fd lines and answer SIGUSR1.  Without them
 * nothing happens; the library never prints and never touches signals.
 */
#include "internal.h"

struct diskimg_progress {
    enum diskimg_progress_mode mode;
    GMutex lock;                   /* serialises counting and the callbacks */
    uint64_t total, done;
    gint64 started_us;             /* g_get_monotonic_time() at _new */
    char *phase;
};

static struct {
    diskimg_progress_fn fn;
    void *opaque;
    diskimg_progress_observer_fn observer;
    void *observer_opaque;
} handler;

void diskimg_set_progress_handler(diskimg_progress_fn fn, void *opaque)
{
    handler.fn = fn;
    handler.opaque = opaque;
}

void diskimg_set_progress_observer(diskimg_progress_observer_fn fn, void *opaque)
{
    handler.observer = fn;
    handler.observer_opaque = opaque;
}

static unsigned hundredths(uint64_t done, uint64_t total)
{
    if (total == 0)
        return 10000;
    done = MIN(done, total);
    return (unsigned)((long double)done * 10000.0L / (long double)total);
}

/* The percentage-only handler predates COMPLETED and PHASE: it sees a
 * completion as the update it amounts to, and no phase changes. */
static void notify_handler(const diskimg_progress *p, enum diskimg_progress_event event)
{
    if (!handler.fn || event == DISKIMG_PROGRESS_PHASE)
        return;
    unsigned h = hundredths(p->done, p->total);
    if (event == DISKIMG_PROGRESS_COMPLETED)
        event = DISKIMG_PROGRESS_UPDATED;
    /* It was promised that a finished bar shows 100 %. */
    if (event == DISKIMG_PROGRESS_FINISHED && p->mode == DISKIMG_PROGRESS_BAR)
        h = 10000;
    handler.fn(p->mode, event, h, handler.opaque);
}

static void notify_locked(const diskimg_progress *p, enum diskimg_progress_event event)
{
    notify_handler(p, event);
    if (!handler.observer)
        return;
    struct diskimg_progress_state s = {
        .struct_size = sizeof(s),
        .mode = p->mode,
        .event = event,
        .done = p->done,
        .total = p->total,
        .elapsed_us = g_get_monotonic_time() - p->started_us,
        .phase = p->phase ? p->phase : "",
    };
    handler.observer(&s, handler.observer_opaque);
}

diskimg_progress *diskimg_progress_new(enum diskimg_progress_mode mode, uint64_t total)
{
    diskimg_progress *p = g_new0(diskimg_progress, 1);
    p->mode = mode;
    p->total = total;
    p->started_us = g_get_monotonic_time();
    g_mutex_init(&p->lock);
    g_mutex_lock(&p->lock);
    notify_locked(p, DISKIMG_PROGRESS_STARTED);
    g_mutex_unlock(&p->lock);
    return p;
}

void diskimg_progress_add(diskimg_progress *p, uint64_t done)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    p->done = done > UINT64_MAX - p->done ? UINT64_MAX : p->done + done;
    notify_locked(p, DISKIMG_PROGRESS_UPDATED);
    g_mutex_unlock(&p->lock);
}

void diskimg_progress_set_total(diskimg_progress *p, uint64_t total)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    p->total = total;
    g_mutex_unlock(&p->lock);
}

void diskimg_progress_set_phase(diskimg_progress *p, const char *phase)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    g_free(p->phase);
    p->phase = g_strdup(phase ? phase : "");
    notify_locked(p, DISKIMG_PROGRESS_PHASE);
    g_mutex_unlock(&p->lock);
}

void diskimg_progress_complete(diskimg_progress *p)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    /* Work that was skipped or estimated still ends at its total. */
    p->done = MAX(p->done, p->total);
    p->total = p->done;
    notify_locked(p, DISKIMG_PROGRESS_COMPLETED);
    g_mutex_unlock(&p->lock);
}

void diskimg_progress_finish(diskimg_progress *p)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    notify_locked(p, DISKIMG_PROGRESS_FINISHED);
    g_mutex_unlock(&p->lock);
    g_mutex_clear(&p->lock);
    g_free(p->phase);
    g_free(p);
}
