/* SPDX-License-Identifier: MIT */
/*
 * lock.c — the metadata lock of an image and the bookkeeping of data
 * transfers that run without it (see "Thread model" in qcow2.h).
 *
 * One condition variable serves every wait: transfers ending (a drainer
 * waits for inflight == 0), drains ending (new transfers wait while a
 * drainer is queued, so that a stream of requests cannot starve it) and
 * recorded allocations ending (requests that would change the L2 entries
 * of an allocation whose data is being written unlocked).
 * Broadcasts are made only when someone waits: g_cond_broadcast is a
 * system call, and transfers end at a high rate.
 */
#include "qcow2.h"

/* ThreadSanitizer does not see GMutex/GCond (futex based, and glib is not
 * built with it): in such builds, tell it the happens-before edges the
 * lock creates, so that what it still reports is real. */
#if defined(__SANITIZE_THREAD__)
#define QCOW2_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define QCOW2_TSAN 1
#endif
#endif
#ifdef QCOW2_TSAN
#include <sanitizer/tsan_interface.h>
#define tsan_acquire(s) __tsan_acquire(&(s)->lock)
#define tsan_release(s) __tsan_release(&(s)->lock)
#else
#define tsan_acquire(s) ((void)(s))
#define tsan_release(s) ((void)(s))
#endif

void qcow2_lock_init(struct qcow2 *s)
{
    static uint64_t next_id;
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    s->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
}

void qcow2_lock_clear(struct qcow2 *s)
{
    g_cond_clear(&s->cond);
    g_mutex_clear(&s->lock);
}

void qcow2_lock(struct qcow2 *s)
{
    g_mutex_lock(&s->lock);
    tsan_acquire(s);
}

void qcow2_unlock(struct qcow2 *s)
{
    tsan_release(s);
    g_mutex_unlock(&s->lock);
}

static void wait_cond(struct qcow2 *s)
{
    s->waiting++;
    tsan_release(s);
    g_cond_wait(&s->cond, &s->lock);
    tsan_acquire(s);
    s->waiting--;
}

static void wake(struct qcow2 *s)
{
    if (s->waiting)
        g_cond_broadcast(&s->cond);
}

/* Waits (lock held, released while waiting) until no transfer runs. */
static void drain(struct qcow2 *s, bool freeing)
{
    s->drainers++;
    s->freeing += freeing;
    while (s->inflight || (!freeing && s->freeing))
        wait_cond(s);
    s->freeing -= freeing;
    s->drainers--;
    wake(s);
}

void qcow2_lock_exclusive(struct qcow2 *s)
{
    qcow2_lock(s);
    /* also waits for writes parked in qcow2_drain_for_free: their old
     * clusters are unreferenced but not yet freed, which check (leaks),
     * snapshots (refcount walks) must not see */
    if (s->inflight || s->freeing)
        drain(s, false);
    s->cgen++;
}

void qcow2_unlock_exclusive(struct qcow2 *s)
{
    /* snapshots, amend, check... may have freed compressed clusters */
    s->cgen++;
    qcow2_unlock(s);
}

void qcow2_drain_for_free(struct qcow2 *s)
{
    if (s->inflight)
        drain(s, true);
}

void qcow2_io_admit(struct qcow2 *s)
{
    while (s->drainers)
        wait_cond(s);
}

void qcow2_io_begin(struct qcow2 *s)
{
    s->inflight++;
    qcow2_unlock(s);
}

void qcow2_io_end(struct qcow2 *s)
{
    qcow2_lock(s);
    if (--s->inflight == 0)
        wake(s);
}

/* ------------------------------------------------------------ allocations in flight */

void qcow2_alloc_start(struct qcow2 *s, struct qcow2_alloc *a, uint64_t start, uint64_t end)
{
    a->start = start;
    a->end = end;
    a->next = s->allocs;
    s->allocs = a;
}

void qcow2_alloc_done(struct qcow2 *s, struct qcow2_alloc *a)
{
    for (struct qcow2_alloc **p = &s->allocs; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            break;
        }
    }
    wake(s);
}

bool qcow2_alloc_wait(struct qcow2 *s, uint64_t off, uint64_t len)
{
    uint64_t start = off & ~(s->cluster_size - 1), end = off + len;
    for (struct qcow2_alloc *a = s->allocs; a; a = a->next) {
        if (a->start < end && start < a->end) {
            wait_cond(s);
            return true;
        }
    }
    return false;
}

void qcow2_alloc_wait_all(struct qcow2 *s, uint64_t off, uint64_t len)
{
    while (qcow2_alloc_wait(s, off, len))
        ;
}
