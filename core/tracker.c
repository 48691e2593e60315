/* SPDX-License-Identifier: MIT */
/*
 * tracker.c — an image's metadata lock, the data transfers that run
 * without it, drains, and claims on ranges whose allocation is in flight
 * (toolkit.h).
 *
 * One condition variable serves every wait: transfers ending (a drainer
 * waits for inflight == 0), drains ending (new transfers wait while a
 * drainer is queued, so that a stream of requests cannot starve it) and
 * claims being released.  Broadcasts are made only when someone waits:
 * g_cond_broadcast is a system call, and transfers end at a high rate.
 */
#include "internal.h"
#include <diskimg/toolkit.h>

/* ThreadSanitizer does not see GMutex/GCond (futex based, and glib is not
 * built with it): in such builds, tell it the happens-before edges the
 * lock creates, so that what it still reports is real. */
#if defined(__SANITIZE_THREAD__)
#define TRACKER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TRACKER_TSAN 1
#endif
#endif
#ifdef TRACKER_TSAN
#include <sanitizer/tsan_interface.h>
#define tsan_acquire(t) __tsan_acquire(&(t)->lock)
#define tsan_release(t) __tsan_release(&(t)->lock)
#else
#define tsan_acquire(t) ((void)(t))
#define tsan_release(t) ((void)(t))
#endif

struct diskimg_tracker {
    GMutex lock;
    GCond cond;                 /* inflight, drainers, freeing or claims changed */
    unsigned inflight;          /* unlocked transfers running */
    unsigned drainers;          /* threads waiting for inflight == 0 */
    unsigned freeing;           /* of them, drains for freeing (diskimg_tracker_drain_for_free) */
    unsigned waiting;           /* threads in g_cond_wait (wake only then) */
    struct diskimg_claim *claims;
};

diskimg_tracker *diskimg_tracker_new(void)
{
    diskimg_tracker *t = g_new0(diskimg_tracker, 1);
    g_mutex_init(&t->lock);
    g_cond_init(&t->cond);
    return t;
}

void diskimg_tracker_free(diskimg_tracker *t)
{
    if (!t)
        return;
    g_cond_clear(&t->cond);
    g_mutex_clear(&t->lock);
    g_free(t);
}

void diskimg_tracker_lock(diskimg_tracker *t)
{
    g_mutex_lock(&t->lock);
    tsan_acquire(t);
}

void diskimg_tracker_unlock(diskimg_tracker *t)
{
    tsan_release(t);
    g_mutex_unlock(&t->lock);
}

static void wait_cond(diskimg_tracker *t)
{
    t->waiting++;
    tsan_release(t);
    g_cond_wait(&t->cond, &t->lock);
    tsan_acquire(t);
    t->waiting--;
}

static void wake(diskimg_tracker *t)
{
    if (t->waiting)
        g_cond_broadcast(&t->cond);
}

/* Waits (lock held, released while waiting) until no transfer runs; an
 * exclusive drain also waits for the drains for freeing. */
static void drain(diskimg_tracker *t, bool freeing)
{
    t->drainers++;
    t->freeing += freeing;
    while (t->inflight || (!freeing && t->freeing))
        wait_cond(t);
    t->freeing -= freeing;
    t->drainers--;
    wake(t);
}

void diskimg_tracker_lock_exclusive(diskimg_tracker *t)
{
    diskimg_tracker_lock(t);
    /* also waits for writers parked in a drain for freeing: what they
     * unlinked is not freed yet, which exclusive work (a leak check, a
     * refcount walk) must not see */
    if (t->inflight || t->freeing)
        drain(t, false);
}

void diskimg_tracker_drain_for_free(diskimg_tracker *t)
{
    if (t->inflight)
        drain(t, true);
}

void diskimg_tracker_io_admit(diskimg_tracker *t)
{
    while (t->drainers)
        wait_cond(t);
}

void diskimg_tracker_io_begin(diskimg_tracker *t)
{
    t->inflight++;
    diskimg_tracker_unlock(t);
}

void diskimg_tracker_io_end(diskimg_tracker *t)
{
    diskimg_tracker_lock(t);
    if (--t->inflight == 0)
        wake(t);
}

unsigned diskimg_tracker_inflight(const diskimg_tracker *t)
{
    return t->inflight;
}

/* ------------------------------------------------------------ claims */

void diskimg_tracker_claim(diskimg_tracker *t, struct diskimg_claim *c, uint64_t start,
                           uint64_t end)
{
    c->start = start;
    c->end = end;
    c->next = t->claims;
    t->claims = c;
}

void diskimg_tracker_release(diskimg_tracker *t, struct diskimg_claim *c)
{
    for (struct diskimg_claim **p = &t->claims; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    wake(t);
}

bool diskimg_tracker_wait_claim(diskimg_tracker *t, uint64_t start, uint64_t end)
{
    for (struct diskimg_claim *c = t->claims; c; c = c->next) {
        if (c->start < end && start < c->end) {
            wait_cond(t);
            return true;
        }
    }
    return false;
}

void diskimg_tracker_wait_unclaimed(diskimg_tracker *t, uint64_t start, uint64_t end)
{
    while (diskimg_tracker_wait_claim(t, start, end))
        ;
}
