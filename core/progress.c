/* SPDX-License-Identifier: MIT */
/*
 * Progress accounting shared by every long-running operation.  The core
 * only counts: it hands each change to the handler the command layer
 * installed (diskimg_set_progress_handler), which draws "-p" and answers
 * SIGUSR1.  Without a handler nothing happens; the library never prints
 * and never touches signals.
 */
#include "internal.h"

struct diskimg_progress {
    enum diskimg_progress_mode mode;
    GMutex lock;                   /* serialises counting and the handler */
    uint64_t total, done;
};

static struct {
    diskimg_progress_fn fn;
    void *opaque;
} handler;

void diskimg_set_progress_handler(diskimg_progress_fn fn, void *opaque)
{
    handler.fn = fn;
    handler.opaque = opaque;
}

static unsigned hundredths(const diskimg_progress *p)
{
    if (p->total == 0)
        return 10000;
    uint64_t done = MIN(p->done, p->total);
    return (unsigned)((long double)done * 10000.0L / (long double)p->total);
}

static void notify_locked(diskimg_progress *p, enum diskimg_progress_event event)
{
    if (handler.fn)
        handler.fn(p->mode, event, hundredths(p), handler.opaque);
}

diskimg_progress *diskimg_progress_new(enum diskimg_progress_mode mode, uint64_t total)
{
    diskimg_progress *p = g_new0(diskimg_progress, 1);
    p->mode = mode;
    p->total = total;
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
    p->done += done;
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

void diskimg_progress_finish(diskimg_progress *p)
{
    if (!p)
        return;
    g_mutex_lock(&p->lock);
    /* A finished bar shows 100 %, whatever was skipped on the way. */
    if (p->mode == DISKIMG_PROGRESS_BAR)
        p->done = p->total;
    notify_locked(p, DISKIMG_PROGRESS_FINISHED);
    g_mutex_unlock(&p->lock);
    g_mutex_clear(&p->lock);
    g_free(p);
}
