/* SPDX-License-Identifier: MIT */
/*
 * uring.c — the "uring" I/O backend: image files and host devices with
 * their data requests carried by Linux io_uring.
 *
 * Every data request goes through a ring, the synchronous callbacks
 * (pread, pwrite, flush, write_zeroes, punch_hole) included, so any
 * command run with this backend really exercises io_uring.  Everything
 * file-level (opening, qemu's image locks, O_DIRECT alignment and
 * bouncing, sizes, block status, truncate, the zeroing ladder, copy
 * offload, the sticky flush error) is the core's host-file library,
 * diskimg/hostfile.h, shared with the posix backend; this file supplies
 * its data path (the rings) and the write exclusion (the write gate).
 *
 * Two kinds of ring
 *   Synchronous requests run on a ring of the calling thread: one small
 *   ring per thread and handle, created at the thread's first request on
 *   the handle, with the file registered.  The thread submits one
 *   operation and waits for it in the same system call, alone: no lock,
 *   no other thread to wake.  Many threads each doing one request at a
 *   time (bench, convert's workers) thus scale as with pread/pwrite.  A
 *   thread's rings go when the thread exits or the handle closes.
 *
 *   Batch requests (submit/reap) share the handle's ring, set up at open
 *   with `queue-depth` submission entries.  Each queued operation (struct
 *   uop) holds one of `depth` slots while it is in the ring; the rest
 *   wait in a FIFO and enter as slots free up, so a batch of any size
 *   never has more than `depth` requests in the kernel (and the completion
 *   queue, twice the depth, cannot overflow).  Should a thread ring be
 *   impossible (out of file descriptors or locked memory), synchronous
 *   requests queue on this ring too, ahead of the batch.
 *
 *   On either ring a short read or write is resubmitted for the
 *   remainder, -EAGAIN/-EINTR completions are resubmitted unchanged, and
 *   the file is registered (IORING_REGISTER_FILES) so that the kernel
 *   skips the fd table lookup on every request.
 *
 * Thread model: PARALLEL.
 *   All shared-ring state (SQ, pending FIFO, completed list, counters) is
 *   guarded by h->mutex.  Its completions are collected by one thread at
 *   a time, the "leader": any thread that needs one (a reaper, a thread
 *   waiting for the write gate or for close, a synchronous caller without
 *   a ring of its own) becomes the leader when there is none, waits in
 *   io_uring_wait_cqe() with the mutex released, then dispatches every
 *   CQE to its operation — by user_data, which points at the uop — wakes
 *   the others (GCond) and gives up leadership.  The SQ is only touched
 *   with the mutex held, the CQ only by the leader, which is the
 *   single-producer / single-consumer discipline io_uring needs.  When a
 *   waiter's condition changes for a reason other than a completion (a
 *   gate released, a request finished synchronously) and a leader sits in
 *   the kernel, a NOP is submitted to wake it.  The thread rings need none
 *   of this: only their thread touches them.
 *
 * Write gate
 *   The host-file library's write exclusion: unaligned O_DIRECT writes
 *   are read-modify-write of whole blocks, and growing the file is a size
 *   check followed by ftruncate; both must be exclusive against other
 *   writes (the posix backend's rmw_lock).  Batch writes hold a shared
 *   reference from the moment they enter the ring until they complete —
 *   possibly in another thread, which rules out a GRWLock — so the gate
 *   is one atomic word: shared holders, plus "held exclusively" and
 *   "wanted exclusively" flags.  Synchronous writes take and drop their
 *   reference with one atomic operation each; only contention with an
 *   exclusive holder takes h->mutex.  Waiting for the exclusive side
 *   drives the shared ring, because the shared holders may be batch
 *   operations that only complete when somebody collects their CQEs.
 *   Waiting exclusive holders block new shared entries, so an RMW is
 *   never starved.
 *
 * Requests the ring cannot do in one go (unaligned O_DIRECT transfers,
 * zeroing by punching holes, zeroing without IORING_OP_FALLOCATE) run
 * synchronously through the host-file library: inside submit() for batch
 * requests, and inside reap() when an asynchronous zeroing turns out to be
 * unsupported.  Their I/O still goes through a ring.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <linux/falloc.h>

#include <liburing.h>

#include <diskimg/hostfile.h>

/* Memcheck cannot see the kernel fill a buffer through the ring; tell it,
 * so that valgrind runs of diskimg stay meaningful (a no-op otherwise). */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(addr, len) ((void)(addr), (void)(len))
#endif

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char uring_schema_yaml[];

/* Largest transfer of one SQE: the SQE length is 32 bits, and Linux caps
 * a single read or write at 0x7ffff000 bytes anyway. */
#define MAX_SQE_IO       ((uint64_t)1 << 30)
#define DEFAULT_DEPTH    128
#define MAX_DEPTH        4096
/* A thread ring carries one operation at a time. */
#define THREAD_RING_ENTRIES 2
/* Each ring costs a file descriptor: threads beyond this many per handle
 * share the handle's ring. */
#define MAX_THREAD_RINGS 64

enum uop_kind {
    UOP_READ = 1,
    UOP_WRITE,
    UOP_FSYNC,
    UOP_FALLOCATE,
};

/* Whether IORING_OP_FALLOCATE with FALLOC_FL_ZERO_RANGE works on this file;
 * batch zeroing goes asynchronous only once it is known to. */
enum { ZR_UNKNOWN = 0, ZR_WORKS, ZR_FAILS };

/* One operation in a ring (or waiting for a slot of the shared one). */
struct uop {
    struct uop *next;                 /* pending FIFO or completed list */
    struct diskimg_io_request *req;   /* batch request; NULL: a caller waits */
    uint8_t kind;                     /* enum uop_kind */
    bool done;                        /* synchronous: completion seen */
    bool want_gate;                   /* takes a shared write-gate reference */
    bool gated;                       /* ...and holds it while in the shared ring */
    bool then_fsync;                  /* on success continue with a datasync */
    bool fallback;                    /* reap() must redo it synchronously */
    int rw_flags;                     /* RWF_DSYNC for FUA writes */
    int fmode;                        /* fallocate mode */
    uint8_t *buf;
    uint64_t len, off;
    uint64_t xfer;                    /* bytes transferred so far */
    uint32_t piece;                   /* bytes asked by the SQE in flight */
    int result;                       /* 0 or -errno once finished */
    struct iovec iov;                 /* READV/WRITEV on pre-5.6 kernels */
};

struct uring_handle;

/* One thread's ring for one handle.  It sits on two lists: its thread's
 * (the thread-private list head, walked and pruned only by that thread)
 * and its handle's (under rings_lock).  When the handle closes first, it
 * tears the ring down and clears `h`; the thread frees the entry later. */
struct thread_ring {
    struct thread_ring *next;         /* the owning thread's list */
    struct thread_ring *handle_next;  /* the handle's list */
    struct uring_handle *h;           /* atomic; NULL once the ring is gone */
    struct io_uring ring;
    bool fixed_file;                  /* fd registered as fixed file 0 */
};

/* The write gate word: shared holders below GATE_WANTED. */
#define GATE_EXCL    (1 << 30)        /* held exclusively */
#define GATE_WANTED  (1 << 29)        /* somebody waits to hold it exclusively */
#define GATE_HOLDERS (GATE_WANTED - 1)

struct uring_handle {
    struct diskimg_hostfile *hf;      /* first: the diskimg_hostfile_op_* read it */
    gint zero_range;                  /* ZR_*, atomic */
    gint gate;                        /* the write gate word, atomic */

    /* Shared ring, set up once at open. */
    struct io_uring ring;
    bool ring_ready;
    bool fixed_file;                  /* fd registered as fixed file 0 */
    bool have_rw;                     /* IORING_OP_READ/WRITE (5.6) */
    bool have_fallocate;              /* IORING_OP_FALLOCATE (5.6) */
    unsigned depth;

    /* Thread rings. */
    struct thread_ring *thread_rings; /* under rings_lock */
    gint thread_ring_count;           /* atomic; changed under rings_lock */
    gint no_thread_rings;             /* atomic: one could not be set up */

    GMutex mutex;                     /* everything below, and the SQ */
    GCond cond;                       /* "ring state changed" */
    unsigned waiters;                 /* threads in g_cond_wait(cond) */
    struct uop *pend_head, *pend_tail;
    unsigned in_ring;                 /* uops holding a slot */
    unsigned async_in_ring;           /* ...of them batch requests */
    bool leader;                      /* a thread collects completions */
    bool kicked;                      /* a wake-up NOP is in flight */
    struct uop *done_head, *done_tail;/* finished batch requests */
    unsigned done_count;
    unsigned outstanding;             /* batch requests not yet reaped */
    unsigned gate_excl_wanted;        /* threads waiting for the gate exclusively */
};

/* ============================================== one step of an operation */
/* Shared by both kinds of ring: an SQE for u's next step, and what a
 * completion means for u. */

/* A result meaning "u needs another SQE" (results are 0 or -errno). */
#define STEP_AGAIN 1

static void prep_transfer(const struct uring_handle *h, struct io_uring_sqe *sqe, int fd,
                          struct uop *u)
{
    uint64_t off = u->off + u->xfer;

    u->piece = (uint32_t)MIN(u->len - u->xfer, MAX_SQE_IO);
    u->iov.iov_base = u->buf + u->xfer;
    u->iov.iov_len = u->piece;
    if (u->kind == UOP_READ) {
        if (h->have_rw)
            io_uring_prep_read(sqe, fd, u->iov.iov_base, u->piece, off);
        else
            io_uring_prep_readv(sqe, fd, &u->iov, 1, off);
        return;
    }
    if (h->have_rw)
        io_uring_prep_write(sqe, fd, u->iov.iov_base, u->piece, off);
    else
        io_uring_prep_writev(sqe, fd, &u->iov, 1, off);
    sqe->rw_flags = u->rw_flags;
}

/* Fills sqe with the next step of u; `fixed`: the ring has the file
 * registered. */
static void prep_sqe(const struct uring_handle *h, struct io_uring_sqe *sqe, struct uop *u,
                     bool fixed)
{
    int fd = fixed ? 0 : h->hf->fd;

    switch (u->kind) {
    case UOP_READ:
    case UOP_WRITE:
        prep_transfer(h, sqe, fd, u);
        break;
    case UOP_FSYNC:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    case UOP_FALLOCATE:
        io_uring_prep_fallocate(sqe, fd, u->fmode, (off_t)u->off, (off_t)u->len);
        break;
    default:
        g_assert_not_reached();
    }
    if (fixed)
        io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    io_uring_sqe_set_data(sqe, u);
}

static int read_step(const struct uring_handle *h, struct uop *u, int res)
{
    if (res < 0)
        return res;
    if ((uint32_t)res > u->piece)
        return -EIO;
    (void)VALGRIND_MAKE_MEM_DEFINED(u->buf + u->xfer, (size_t)res);
    u->xfer += (uint64_t)res;
    /* Short: EOF (res 0), or a partial transfer to continue.  Under
     * O_DIRECT a read ends short and unaligned only at EOF, and the rest
     * could not be asked for anyway (misaligned). */
    if (u->xfer < u->len && res > 0 && !(h->hf->direct && u->xfer % h->hf->req_align))
        return STEP_AGAIN;
    if (u->xfer < u->len)
        memset(u->buf + u->xfer, 0, u->len - u->xfer);
    return 0;
}

static int write_step(const struct uring_handle *h, struct uop *u, int res)
{
    if (res < 0)
        return res;
    if (res == 0 || (uint32_t)res > u->piece)
        return res == 0 ? -ENOSPC : -EIO;
    u->xfer += (uint64_t)res;
    if (u->xfer == u->len)
        return 0;
    /* An O_DIRECT write cut short mid-block cannot be resumed
     * (misaligned); it means the device ran out of space. */
    return h->hf->direct && u->xfer % h->hf->req_align ? -ENOSPC : STEP_AGAIN;
}

static int fallocate_step(struct uring_handle *h, struct uop *u, int res)
{
    if (u->fmode == FALLOC_FL_ZERO_RANGE && res == 0)
        g_atomic_int_set(&h->zero_range, ZR_WORKS);
    else if (u->fmode == FALLOC_FL_ZERO_RANGE && diskimg_hostfile_unsupported(-res))
        g_atomic_int_set(&h->zero_range, ZR_FAILS);
    if (res < 0 && u->req && diskimg_hostfile_unsupported(-res))
        u->fallback = true;   /* reap() zeroes it another way */
    return res;
}

static void gate_release_uop(struct uring_handle *h, struct uop *u);

/* A FUA zeroing continues with a datasync once the zeroes are written. */
static int then_fsync_step(struct uring_handle *h, struct uop *u)
{
    int sticky = diskimg_hostfile_flush_error(h->hf);

    u->then_fsync = false;
    gate_release_uop(h, u);     /* the write part is over */
    if (sticky)
        return sticky;
    u->kind = UOP_FSYNC;
    return STEP_AGAIN;
}

/* Takes the completion `res` of u's SQE: true when u needs another SQE
 * (the rest of a short transfer, a retry, a datasync to follow), false
 * when u is finished, with u->result set. */
static bool uop_step(struct uring_handle *h, struct uop *u, int res)
{
    if (res == -EINTR || res == -EAGAIN)
        return true;
    switch (u->kind) {
    case UOP_READ:
        res = read_step(h, u, res);
        break;
    case UOP_WRITE:
        res = write_step(h, u, res);
        break;
    case UOP_FSYNC:
        /* The sticky flush error rule (hostfile.h). */
        res = diskimg_hostfile_flush_result(h->hf, res);
        break;
    case UOP_FALLOCATE:
        res = fallocate_step(h, u, res);
        break;
    default:
        res = -EINVAL;
        break;
    }
    if (res == 0 && u->then_fsync)
        res = then_fsync_step(h, u);
    if (res == STEP_AGAIN)
        return true;
    u->result = res;
    return false;
}

/* ======================================================== the write gate */
/* The lock-free half; the waiting half drives the shared ring, below. */

/* Takes a shared reference unless the gate is held or wanted exclusively. */
static bool gate_try_shared(struct uring_handle *h)
{
    gint v = g_atomic_int_get(&h->gate);

    while (!(v & (GATE_EXCL | GATE_WANTED))) {
        if (g_atomic_int_compare_and_exchange(&h->gate, v, v + 1))
            return true;
        v = g_atomic_int_get(&h->gate);
    }
    return false;
}

/* Sets and clears flag bits; the holder count may change meanwhile. */
static void gate_update_flags(struct uring_handle *h, gint set, gint clear)
{
    gint v;

    do {
        v = g_atomic_int_get(&h->gate);
    } while (!g_atomic_int_compare_and_exchange(&h->gate, v, (v | set) & ~clear));
}

/* Drops a shared reference; true when it was the last one an exclusive
 * waiter was waiting for (it must then be woken). */
static bool gate_drop_shared(struct uring_handle *h)
{
    gint old = g_atomic_int_add(&h->gate, -1);

    return (old & GATE_WANTED) && (old & GATE_HOLDERS) == 1;
}

/* ===================================================== the shared ring */
/* Every function in this section runs with h->mutex held. */

/* Submits whatever SQEs are prepared; 0, or -errno when the kernel took
 * none of them (it is short of memory: -EAGAIN/-EBUSY). */
static int flush_sq(struct uring_handle *h)
{
    while (io_uring_sq_ready(&h->ring) > 0) {
        int ret = io_uring_submit(&h->ring);

        if (ret == -EINTR)
            continue;
        if (ret < 0)
            return ret;
        if (ret == 0)
            return -EAGAIN;
    }
    return 0;
}

static struct io_uring_sqe *get_sqe(struct uring_handle *h)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&h->ring);

    /* At most `depth` uops own an SQE and the SQ has at least `depth`
     * entries, so a full SQ only means prepared entries not yet handed to
     * the kernel. */
    if (!sqe) {
        (void)flush_sq(h);
        sqe = io_uring_get_sqe(&h->ring);
    }
    return sqe;
}

static void finish_uop(struct uring_handle *h, struct uop *u);

/* Prepares the SQE for the next step of u (which holds a slot). */
static void prep_uop(struct uring_handle *h, struct uop *u)
{
    struct io_uring_sqe *sqe = get_sqe(h);

    if (!sqe) {
        u->result = -EBUSY;     /* cannot happen while the invariant holds */
        finish_uop(h, u);
        return;
    }
    prep_sqe(h, sqe, u, h->fixed_file);
}

/* Drops the shared gate reference u holds in the ring, if any.  This
 * happens as the leader dispatches completions; it wakes the waiters (an
 * exclusive one among them) once it has dispatched them all. */
static void gate_release_uop(struct uring_handle *h, struct uop *u)
{
    if (!u->gated)
        return;
    u->gated = false;
    (void)gate_drop_shared(h);
}

static void start_uop(struct uring_handle *h, struct uop *u)
{
    u->next = NULL;
    h->in_ring++;
    if (u->req)
        h->async_in_ring++;
    prep_uop(h, u);
}

/* Moves pending uops into free slots.  Writes wait while the write gate
 * is held or wanted exclusively; others pass them. */
static void refill(struct uring_handle *h)
{
    struct uop **link = &h->pend_head, *prev = NULL;

    while (*link && h->in_ring < h->depth) {
        struct uop *u = *link;

        if (u->want_gate && !gate_try_shared(h)) {
            prev = u;
            link = &u->next;
            continue;
        }
        u->gated = u->want_gate;
        *link = u->next;
        if (h->pend_tail == u)
            h->pend_tail = prev;
        start_uop(h, u);
    }
}

/* u is done for good (u->result set): free its slot, hand it to its
 * waiter or reaper. */
static void finish_uop(struct uring_handle *h, struct uop *u)
{
    gate_release_uop(h, u);
    h->in_ring--;
    if (u->req) {
        h->async_in_ring--;
        u->next = NULL;
        if (h->done_tail)
            h->done_tail->next = u;
        else
            h->done_head = u;
        h->done_tail = u;
        h->done_count++;
    } else {
        u->done = true;
    }
}

static void process_cqes(struct uring_handle *h)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;

    io_uring_for_each_cqe(&h->ring, head, cqe) {
        struct uop *u = io_uring_cqe_get_data(cqe);

        seen++;
        if (!u)                 /* a wake-up NOP */
            continue;
        if (uop_step(h, u, cqe->res))
            prep_uop(h, u);
        else
            finish_uop(h, u);
    }
    io_uring_cq_advance(&h->ring, seen);
}

/* Wakes a leader sleeping in the kernel, so that it re-checks conditions
 * that changed without a completion. */
static void kick(struct uring_handle *h)
{
    struct io_uring_sqe *sqe;

    if (!h->leader || h->kicked)
        return;
    sqe = io_uring_get_sqe(&h->ring);
    if (!sqe)
        return;               /* a full SQ: completions will come anyway */
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, NULL);
    h->kicked = true;
    (void)flush_sq(h);
}

/* GCond's broadcast is a futex syscall even with nobody waiting; the
 * uncontended path must not pay for it. */
static void wake_waiters(struct uring_handle *h)
{
    if (h->waiters)
        g_cond_broadcast(&h->cond);
}

/* Wakes every waiter after a state change. */
static void notify(struct uring_handle *h)
{
    wake_waiters(h);
    kick(h);
}

typedef bool (*ring_pred)(const struct uring_handle *h, const void *arg);

/*
 * Waits until pred holds, collecting completions as the leader when
 * nobody else does.  Only waits in the kernel while some operation is
 * there, so a CQE is bound to arrive; otherwise waits for another thread
 * to change the state (every change broadcasts h->cond).
 *
 * `own`: the caller waits for a synchronous operation of its own in this
 * ring.  Those are collected by their own thread whenever possible — a
 * completion picked up by another thread costs the owner a wake-up — so
 * threads waiting for something else (the write gate, batch completions,
 * close) only lead while batch requests, which have no waiting owner, are
 * in the ring.
 */
static void drive(struct uring_handle *h, ring_pred pred, const void *arg, bool own)
{
    while (!pred(h, arg)) {
        struct io_uring_cqe *cqe;

        if (h->leader || h->in_ring == 0 || !(own || h->async_in_ring > 0)) {
            h->waiters++;
            g_cond_wait(&h->cond, &h->mutex);
            h->waiters--;
            continue;
        }
        if (flush_sq(h) < 0 && io_uring_sq_ready(&h->ring) >= h->in_ring) {
            /* Nothing of ours reached the kernel (short of memory): retry
             * shortly rather than wait for a completion that cannot come. */
            g_mutex_unlock(&h->mutex);
            g_usleep(1000);
            g_mutex_lock(&h->mutex);
            continue;
        }
        h->leader = true;
        g_mutex_unlock(&h->mutex);
        /* -EINTR (a signal) or -ETIME: just look at the CQ again. */
        (void)io_uring_wait_cqe(&h->ring, &cqe);
        g_mutex_lock(&h->mutex);
        h->kicked = false;
        process_cqes(h);
        h->leader = false;
        refill(h);
        (void)flush_sq(h);
        wake_waiters(h);
    }
}

/* Queues u: synchronous callers go first, they have a thread waiting. */
static void enqueue(struct uring_handle *h, struct uop *u, bool urgent)
{
    u->next = NULL;
    if (urgent) {
        u->next = h->pend_head;
        h->pend_head = u;
        if (!h->pend_tail)
            h->pend_tail = u;
    } else {
        if (h->pend_tail)
            h->pend_tail->next = u;
        else
            h->pend_head = u;
        h->pend_tail = u;
    }
    refill(h);
    (void)flush_sq(h);
    /* A waiter idle because nothing was in the ring may now lead. */
    wake_waiters(h);
}

static bool uop_done(const struct uring_handle *h, const void *arg)
{
    (void)h;
    return ((const struct uop *)arg)->done;
}

/* Runs one synchronous operation through the shared ring and waits for
 * it (for threads without a ring of their own); sets u->result. */
static void shared_run_sync(struct uring_handle *h, struct uop *u)
{
    g_mutex_lock(&h->mutex);
    enqueue(h, u, true);
    drive(h, uop_done, u, true);
    g_mutex_unlock(&h->mutex);
}

/* --------------------------------------------- waiting for the write gate */

static bool gate_open_for_shared(const struct uring_handle *h, const void *arg)
{
    (void)arg;
    return !(g_atomic_int_get(&h->gate) & (GATE_EXCL | GATE_WANTED));
}

static bool gate_free_for_excl(const struct uring_handle *h, const void *arg)
{
    (void)arg;
    return !(g_atomic_int_get(&h->gate) & (GATE_EXCL | GATE_HOLDERS));
}

/* A shared reference for a synchronous write: one atomic operation,
 * unless an exclusive holder is there or waiting. */
static void gate_enter_shared(struct uring_handle *h)
{
    if (gate_try_shared(h))
        return;
    g_mutex_lock(&h->mutex);
    while (!gate_try_shared(h))
        drive(h, gate_open_for_shared, NULL, false);
    g_mutex_unlock(&h->mutex);
}

static void gate_leave_shared(struct uring_handle *h)
{
    if (!gate_drop_shared(h))
        return;
    g_mutex_lock(&h->mutex);
    notify(h);
    g_mutex_unlock(&h->mutex);
}

/* Waiting writers block new shared entries, so an RMW is never starved. */
static void gate_enter_excl(struct uring_handle *h)
{
    g_mutex_lock(&h->mutex);
    h->gate_excl_wanted++;
    gate_update_flags(h, GATE_WANTED, 0);
    drive(h, gate_free_for_excl, NULL, false);
    h->gate_excl_wanted--;
    gate_update_flags(h, GATE_EXCL, h->gate_excl_wanted ? 0 : GATE_WANTED);
    g_mutex_unlock(&h->mutex);
}

static void gate_leave_excl(struct uring_handle *h)
{
    g_mutex_lock(&h->mutex);
    gate_update_flags(h, 0, GATE_EXCL);
    refill(h);                  /* batch writes held back by the gate */
    (void)flush_sq(h);
    notify(h);
    g_mutex_unlock(&h->mutex);
}

/* ========================================================== thread rings */

/* Guards every handle's list of thread rings and every entry's `h`. */
static GMutex rings_lock;

static void thread_rings_free(gpointer head);

/* The calling thread's list of rings; freed when the thread exits (the
 * module is linked -z nodelete so that this stays callable). */
static GPrivate thread_rings = G_PRIVATE_INIT(thread_rings_free);

/*
 * Only its thread submits to a thread ring, and it always waits for the
 * completion, so the kernel may run completion work in that thread when
 * it waits (DEFER_TASKRUN, 6.1) instead of interrupting it as soon as the
 * device answers: measurably less CPU per request.  Older kernels refuse
 * the flags; the ring then works as any other.
 */
#if defined(IORING_SETUP_SINGLE_ISSUER) && defined(IORING_SETUP_DEFER_TASKRUN)
#define THREAD_RING_FLAGS (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)
#else
#define THREAD_RING_FLAGS 0u
#endif

static int thread_ring_init(struct thread_ring *tr, const struct uring_handle *h)
{
    int ret = io_uring_queue_init(THREAD_RING_ENTRIES, &tr->ring, THREAD_RING_FLAGS);

    if (ret == -EINVAL && THREAD_RING_FLAGS)
        ret = io_uring_queue_init(THREAD_RING_ENTRIES, &tr->ring, 0);
    if (ret < 0)
        return ret;
    tr->fixed_file = io_uring_register_files(&tr->ring, &h->hf->fd, 1) == 0;
    return 0;
}

/* As for the shared ring, the registered file is dropped first, or it
 * would stay open until the kernel's asynchronous ring teardown.  Only the
 * ring's own thread may do so under SINGLE_ISSUER; from close() in
 * another thread the kernel refuses, and the teardown drops it. */
static void thread_ring_exit(struct thread_ring *tr)
{
    if (tr->fixed_file)
        (void)io_uring_unregister_files(&tr->ring);
    io_uring_queue_exit(&tr->ring);
}

/* rings_lock held. */
static void unlink_from_handle(struct thread_ring *tr)
{
    struct thread_ring **link = &tr->h->thread_rings;

    while (*link != tr)
        link = &(*link)->handle_next;
    *link = tr->handle_next;
    g_atomic_int_add(&tr->h->thread_ring_count, -1);
}

/* Frees the entries of the calling thread's list whose handle has closed
 * (and torn their rings down); returns the new head.  rings_lock held. */
static struct thread_ring *prune_closed(struct thread_ring *head)
{
    struct thread_ring **link = &head;

    while (*link) {
        struct thread_ring *tr = *link;

        if (tr->h) {
            link = &tr->next;
            continue;
        }
        *link = tr->next;
        g_free(tr);
    }
    return head;
}

/* At thread exit: tears down the thread's rings of open handles. */
static void thread_rings_free(gpointer head)
{
    struct thread_ring *tr = head;

    g_mutex_lock(&rings_lock);
    while (tr) {
        struct thread_ring *next = tr->next;

        if (tr->h) {
            unlink_from_handle(tr);
            thread_ring_exit(tr);
        }
        g_free(tr);
        tr = next;
    }
    g_mutex_unlock(&rings_lock);
}

/* Puts tr on h's list and the calling thread's; false when h has as many
 * thread rings as it may already (other threads got there first). */
static bool thread_ring_link(struct uring_handle *h, struct thread_ring *tr)
{
    bool ok;

    g_mutex_lock(&rings_lock);
    ok = g_atomic_int_get(&h->thread_ring_count) < MAX_THREAD_RINGS;
    if (ok) {
        tr->h = h;
        tr->handle_next = h->thread_rings;
        h->thread_rings = tr;
        g_atomic_int_inc(&h->thread_ring_count);
        tr->next = prune_closed(g_private_get(&thread_rings));
        g_private_set(&thread_rings, tr);
    }
    g_mutex_unlock(&rings_lock);
    return ok;
}

/* Sets up the calling thread's ring for h; NULL when h has as many as it
 * may, or when the kernel refuses (then all threads use the shared ring
 * for h). */
static struct thread_ring *thread_ring_new(struct uring_handle *h)
{
    struct thread_ring *tr;

    if (g_atomic_int_get(&h->thread_ring_count) >= MAX_THREAD_RINGS)
        return NULL;
    tr = g_new0(struct thread_ring, 1);
    if (thread_ring_init(tr, h) < 0) {
        g_free(tr);
        g_atomic_int_set(&h->no_thread_rings, 1);
        return NULL;
    }
    if (!thread_ring_link(h, tr)) {
        thread_ring_exit(tr);
        g_free(tr);
        return NULL;
    }
    return tr;
}

/* The calling thread's ring for h, set up at its first request; NULL:
 * use the shared ring. */
static struct thread_ring *thread_ring_of(struct uring_handle *h)
{
    struct thread_ring *tr;

    if (g_atomic_int_get(&h->no_thread_rings))
        return NULL;
    for (tr = g_private_get(&thread_rings); tr; tr = tr->next) {
        if (g_atomic_pointer_get(&tr->h) == h)
            return tr;
    }
    return thread_ring_new(h);
}

/* At close: tears down every thread's ring of h.  Other threads' entries
 * stay on their lists until they prune or exit; the caller's go now. */
static void thread_rings_close(struct uring_handle *h)
{
    g_mutex_lock(&rings_lock);
    while (h->thread_rings) {
        struct thread_ring *tr = h->thread_rings;

        h->thread_rings = tr->handle_next;
        thread_ring_exit(tr);
        g_atomic_pointer_set(&tr->h, NULL);
    }
    g_private_set(&thread_rings, prune_closed(g_private_get(&thread_rings)));
    g_mutex_unlock(&rings_lock);
}

/* Submits the prepared SQE and waits for its completion, in one system
 * call: 0 once the kernel has it, or -errno when the ring is refused
 * (a shortage of memory is waited out). */
static int thread_ring_submit(struct thread_ring *tr)
{
    while (io_uring_sq_ready(&tr->ring) > 0) {
        int ret = io_uring_submit_and_wait(&tr->ring, 1);

        if (ret == -EAGAIN || ret == -EBUSY || ret == -ENOMEM)
            g_usleep(1000);
        else if (ret < 0 && ret != -EINTR)
            return ret;
    }
    return 0;
}

/* The result of the operation in flight (its CQE is normally there
 * already); an error of the wait itself stands for it. */
static int thread_ring_result(struct thread_ring *tr)
{
    struct io_uring_cqe *cqe;
    int ret;

    do {
        ret = io_uring_wait_cqe(&tr->ring, &cqe);
    } while (ret == -EINTR || ret == -EAGAIN || ret == -ETIME);
    if (ret < 0)
        return ret;
    ret = cqe->res;
    io_uring_cqe_seen(&tr->ring, cqe);
    return ret;
}

/* Runs u to its end on tr (u->result set); false when the kernel refused
 * the ring: u is not in the kernel and may continue on the shared ring,
 * which h uses from now on (tr keeps the refused SQE, unused). */
static bool thread_ring_run(struct uring_handle *h, struct thread_ring *tr, struct uop *u)
{
    do {
        prep_sqe(h, io_uring_get_sqe(&tr->ring), u, tr->fixed_file);
        if (thread_ring_submit(tr) < 0) {
            g_atomic_int_set(&h->no_thread_rings, 1);
            return false;
        }
    } while (uop_step(h, u, thread_ring_result(tr)));
    return true;
}

/* Runs one synchronous operation to its end, on the calling thread's
 * ring if it can have one; 0 or -errno.  A write holds the gate shared
 * throughout. */
static int run_sync(struct uring_handle *h, struct uop *u)
{
    bool gated = u->want_gate;
    struct thread_ring *tr;

    u->want_gate = false;
    if (gated)
        gate_enter_shared(h);
    tr = thread_ring_of(h);
    if (!tr || !thread_ring_run(h, tr, u))
        shared_run_sync(h, u);
    if (gated)
        gate_leave_shared(h);
    return u->result;
}

/* ============================================== the host-file data path */
/* The callbacks diskimg/hostfile.h builds every request on: all of the
 * file's data goes through a ring. */

static int uring_read_aligned(void *opaque, void *buf, uint64_t len, uint64_t off)
{
    struct uop u = { .kind = UOP_READ, .buf = buf, .len = len, .off = off };

    return len ? run_sync(opaque, &u) : 0;
}

/* Writes in full.  `gated`: take a shared gate reference (callers already
 * holding the gate exclusively pass false). */
static int ring_write(struct uring_handle *h, const void *buf, uint64_t len, uint64_t off,
                      int rw_flags, bool gated)
{
    struct uop u = {
        .kind = UOP_WRITE, .buf = (uint8_t *)buf, .len = len, .off = off,
        .rw_flags = rw_flags, .want_gate = gated,
    };

    return len ? run_sync(h, &u) : 0;
}

/* FUA as RWF_DSYNC on the write itself (what qemu does), unless the cache
 * mode makes it moot: O_DSYNC writes are durable anyway, and cache=unsafe
 * ignores durability. */
static int fua_rw_flags(const struct uring_handle *h, unsigned flags)
{
    return (flags & DISKIMG_WRITE_FUA) && !h->hf->unsafe && !h->hf->dsync ? RWF_DSYNC : 0;
}

static int uring_write_aligned(void *opaque, const void *buf, uint64_t len, uint64_t off,
                               unsigned flags)
{
    struct uring_handle *h = opaque;

    return ring_write(h, buf, len, off, fua_rw_flags(h, flags), true);
}

static int uring_write_held(void *opaque, const void *buf, uint64_t len, uint64_t off)
{
    return ring_write(opaque, buf, len, off, 0, false);
}

static void uring_lock_exclusive(void *opaque)
{
    gate_enter_excl(opaque);
}

static void uring_unlock_exclusive(void *opaque)
{
    gate_leave_excl(opaque);
}

/* fallocate(2) for kernels without IORING_OP_FALLOCATE. */
static int fallocate_syscall(struct uring_handle *h, int mode, uint64_t off, uint64_t len)
{
    int ret = 0;

    gate_enter_shared(h);
    while (fallocate(h->hf->fd, mode, (off_t)off, (off_t)len) < 0) {
        if (errno != EINTR) {
            ret = -errno;
            break;
        }
    }
    gate_leave_shared(h);
    if (mode == FALLOC_FL_ZERO_RANGE && (ret == 0 || diskimg_hostfile_unsupported(-ret)))
        g_atomic_int_set(&h->zero_range, ret == 0 ? ZR_WORKS : ZR_FAILS);
    return ret;
}

/* fallocate(2) through the ring when the kernel has the opcode; a write
 * either way, so it holds the gate shared. */
static int uring_fallocate(void *opaque, int mode, uint64_t off, uint64_t len)
{
    struct uring_handle *h = opaque;
    struct uop u = {
        .kind = UOP_FALLOCATE, .fmode = mode, .off = off, .len = len, .want_gate = true,
    };

    return h->have_fallocate ? run_sync(h, &u) : fallocate_syscall(h, mode, off, len);
}

/* uop_step() has passed the result through diskimg_hostfile_flush_result. */
static int uring_datasync(void *opaque)
{
    struct uop u = { .kind = UOP_FSYNC };

    return run_sync(opaque, &u);
}

static const struct diskimg_hostfile_callbacks uring_callbacks = {
    .struct_size = sizeof(struct diskimg_hostfile_callbacks),
    .read = uring_read_aligned,
    .write = uring_write_aligned,
    .write_held = uring_write_held,
    .lock_exclusive = uring_lock_exclusive,
    .unlock_exclusive = uring_unlock_exclusive,
    .fallocate = uring_fallocate,
    .datasync = uring_datasync,
};

/* ============================================================ batch path */

enum plan { PLAN_DONE, PLAN_RING, PLAN_SYNC };

/* Plans a read, write or zeroing; `ring_ok`: one ring operation can do it. */
static enum plan plan_transfer(const struct diskimg_hostfile *hf,
                               const struct diskimg_io_request *r, struct uop *u,
                               bool ring_ok)
{
    if (r->op != DISKIMG_IO_READ && !hf->writable)
        u->result = -EBADF;
    else if (!diskimg_hostfile_range_ok(r->offset, r->len))
        u->result = -EINVAL;
    else if (r->len == 0)
        u->result = 0;
    else
        return ring_ok ? PLAN_RING : PLAN_SYNC;
    return PLAN_DONE;
}

/* Whether a zeroing can be one IORING_OP_FALLOCATE: the opcode exists and
 * ZERO_RANGE is known to work, and no hole is to be punched (several
 * steps).  Otherwise the host-file library's ladder runs synchronously. */
static bool zeroing_in_one_op(struct uring_handle *h, const struct diskimg_io_request *r)
{
    return h->have_fallocate && g_atomic_int_get(&h->zero_range) == ZR_WORKS &&
           !((r->flags & DISKIMG_WRITE_MAY_UNMAP) && h->hf->type == S_IFREG);
}

/* Decides how a batch request is served: answered at once (u->result),
 * as one ring operation, or synchronously. */
static enum plan triage_request(struct uring_handle *h, const struct diskimg_io_request *r,
                                struct uop *u)
{
    struct diskimg_hostfile *hf = h->hf;

    switch (r->op) {
    case DISKIMG_IO_READ:
    case DISKIMG_IO_WRITE:
        return plan_transfer(hf, r, u, diskimg_hostfile_is_aligned(hf, r->buf, r->offset,
                                                                   r->len));
    case DISKIMG_IO_FLUSH:
        u->result = hf->unsafe ? 0 : diskimg_hostfile_flush_error(hf);
        return hf->unsafe || u->result ? PLAN_DONE : PLAN_RING;
    case DISKIMG_IO_WRITE_ZEROES:
        return plan_transfer(hf, r, u, zeroing_in_one_op(h, r));
    default:
        u->result = -EINVAL;
        return PLAN_DONE;
    }
}

/* Sets u up as the one ring operation serving r. */
static void prep_ring_request(struct uring_handle *h, const struct diskimg_io_request *r,
                              struct uop *u)
{
    switch (r->op) {
    case DISKIMG_IO_READ:
        u->kind = UOP_READ;
        break;
    case DISKIMG_IO_WRITE:
        u->kind = UOP_WRITE;
        u->rw_flags = fua_rw_flags(h, r->flags);
        u->want_gate = true;
        break;
    case DISKIMG_IO_FLUSH:
        u->kind = UOP_FSYNC;
        break;
    default:
        u->kind = UOP_FALLOCATE;
        u->fmode = FALLOC_FL_ZERO_RANGE;
        u->want_gate = true;
        u->then_fsync = (r->flags & DISKIMG_WRITE_FUA) && !h->hf->unsafe;
        break;
    }
}

static enum plan plan_request(struct uring_handle *h, struct diskimg_io_request *r,
                              struct uop *u)
{
    enum plan plan;

    u->req = r;
    u->buf = r->buf;
    u->len = r->len;
    u->off = r->offset;
    plan = triage_request(h, r, u);
    if (plan == PLAN_RING)
        prep_ring_request(h, r, u);
    return plan;
}

/* Puts an already finished request on the completed list. */
static void push_done(struct uring_handle *h, struct uop *u)
{
    h->in_ring++;               /* finish_uop() frees a slot */
    h->async_in_ring++;
    finish_uop(h, u);
}

static int uring_submit(void *opaque, struct diskimg_io_request *const *reqs, unsigned n,
                        GError **errp)
{
    struct uring_handle *h = opaque;
    struct uop *sync_head = NULL, **sync_link = &sync_head;

    if (diskimg_hostfile_check_requests(reqs, n, errp) < 0)
        return -1;
    if (n == 0)
        return 0;
    /* Ring requests are queued all at once, before the synchronous ones
     * start, so that they are in flight meanwhile. */
    g_mutex_lock(&h->mutex);
    for (unsigned i = 0; i < n; i++) {
        struct uop *u = g_new0(struct uop, 1);

        reqs[i]->result = 0;
        h->outstanding++;
        switch (plan_request(h, reqs[i], u)) {
        case PLAN_DONE:
            push_done(h, u);
            break;
        case PLAN_RING:
            u->next = NULL;
            if (h->pend_tail)
                h->pend_tail->next = u;
            else
                h->pend_head = u;
            h->pend_tail = u;
            break;
        case PLAN_SYNC:
            *sync_link = u;
            sync_link = &u->next;
            break;
        }
    }
    refill(h);
    (void)flush_sq(h);
    notify(h);
    g_mutex_unlock(&h->mutex);

    while (sync_head) {
        struct uop *u = sync_head;

        sync_head = u->next;
        u->result = diskimg_hostfile_run_request(h->hf, u->req);
        g_mutex_lock(&h->mutex);
        push_done(h, u);
        notify(h);
        g_mutex_unlock(&h->mutex);
    }
    return 0;
}

struct reap_want {
    unsigned min;
};

static bool reap_ready(const struct uring_handle *h, const void *arg)
{
    const struct reap_want *w = arg;

    /* Never wait for more than is actually outstanding (another reaper
     * may have taken some meanwhile). */
    return h->done_count >= MIN(w->min, h->outstanding);
}

/* Detaches up to max finished uops from the completed list, in order;
 * mutex held. */
static struct uop *take_done(struct uring_handle *h, unsigned max)
{
    struct uop *first = h->done_head, *last = NULL;

    for (unsigned n = 0; n < max && h->done_head; n++) {
        last = h->done_head;
        h->done_head = last->next;
        h->done_count--;
        h->outstanding--;
    }
    if (!last)
        return NULL;
    if (!h->done_head)
        h->done_tail = NULL;
    last->next = NULL;
    return first;
}

/* Hands a finished uop's outcome to its request and frees it; a zeroing
 * the ring could not do is redone here, outside the ring lock. */
static struct diskimg_io_request *retire(struct uring_handle *h, struct uop *u)
{
    struct diskimg_io_request *r = u->req;

    if (u->fallback)
        u->result = diskimg_hostfile_write_zeroes(h->hf, r->offset, r->len, r->flags);
    r->result = u->result;
    g_free(u);
    return r;
}

static int uring_reap(void *opaque, struct diskimg_io_request **done, unsigned max,
                      unsigned min, GError **errp)
{
    struct uring_handle *h = opaque;
    struct reap_want want = { MIN(min, max) };
    struct uop *u;
    unsigned n = 0;

    (void)errp;  /* per-request errors travel in each request's result */
    if (max == 0)
        return 0;
    max = MIN(max, (unsigned)INT_MAX);
    g_mutex_lock(&h->mutex);
    drive(h, reap_ready, &want, false);
    u = take_done(h, max);
    g_mutex_unlock(&h->mutex);
    while (u) {
        struct uop *next = u->next;

        done[n++] = retire(h, u);
        u = next;
    }
    return (int)n;
}


/* ============================================================ open/close */

static int parse_depth(const struct diskimg_io_open_args *args, unsigned *depth,
                       GError **errp)
{
    const diskimg_options *o = diskimg_hostfile_options(args);
    int64_t v = o ? diskimg_options_get_int(o, "queue-depth", DEFAULT_DEPTH) : DEFAULT_DEPTH;

    if (v < 1 || v > MAX_DEPTH) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "uring: queue-depth must be between 1 and %d, not %" PRId64, MAX_DEPTH,
                    v);
        return -1;
    }
    *depth = (unsigned)v;
    return 0;
}

/*
 * Sets up the ring before anything touches the file, so that where the
 * kernel refuses io_uring (seccomp sandboxes, kernel.io_uring_disabled,
 * old kernels, a low RLIMIT_MEMLOCK) open fails cleanly with
 * NOT_SUPPORTED and the core can fall back to posix.
 */
static int ring_setup(struct uring_handle *h, unsigned depth, GError **errp)
{
    struct io_uring_probe *probe;
    int ret = io_uring_queue_init(depth, &h->ring, 0);

    if (ret < 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "io_uring is not available: %s", g_strerror(-ret));
        return -1;
    }
    h->ring_ready = true;
    h->depth = depth;
    probe = io_uring_get_probe_ring(&h->ring);
    if (probe) {
        h->have_rw = io_uring_opcode_supported(probe, IORING_OP_READ) &&
                     io_uring_opcode_supported(probe, IORING_OP_WRITE);
        h->have_fallocate = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
        io_uring_free_probe(probe);
    }
    /* Without a probe (before 5.6) READV/WRITEV and FSYNC (5.1) remain. */
    return 0;
}

static void uring_close(void *opaque);

static bool ring_idle(const struct uring_handle *h, const void *arg)
{
    (void)arg;
    return h->in_ring == 0 && !h->pend_head;
}

static void *uring_open(const struct diskimg_io_open_args *args, GError **errp)
{
    struct diskimg_hostfile_settings s = { .struct_size = sizeof(s) };
    struct uring_handle *h;
    unsigned depth;

    if (diskimg_hostfile_parse_settings(args, &s, errp) < 0 ||
        parse_depth(args, &depth, errp) < 0)
        return NULL;
    h = g_new0(struct uring_handle, 1);
    g_mutex_init(&h->mutex);
    g_cond_init(&h->cond);
    if (ring_setup(h, depth, errp) < 0)
        goto fail;
    h->hf = diskimg_hostfile_open(args, &s, &uring_callbacks, h, errp);
    if (!h->hf)
        goto fail;
    /* A fixed file spares the kernel an fd lookup and reference per SQE;
     * without it (old kernel, memlock) plain fds work the same. */
    h->fixed_file = io_uring_register_files(&h->ring, &h->hf->fd, 1) == 0;
    return h;

fail:
    uring_close(h);
    return NULL;
}

/* Requests still queued complete first: their buffers belong to callers
 * who may be waiting to reap them. */
static void ring_drain(struct uring_handle *h)
{
    struct uop *u;

    g_mutex_lock(&h->mutex);
    drive(h, ring_idle, NULL, false);
    u = take_done(h, UINT_MAX);
    g_mutex_unlock(&h->mutex);
    while (u) {
        struct uop *next = u->next;

        (void)retire(h, u);
        u = next;
    }
}

static void uring_close(void *opaque)
{
    struct uring_handle *h = opaque;

    if (!h)
        return;
    if (h->ring_ready) {
        ring_drain(h);
        thread_rings_close(h);
        /* The ring's reference to a registered file is dropped by the
         * kernel's asynchronous ring teardown, so the open file could
         * outlive close() for a while; unregister first (and the host-file
         * library drops the lock bytes explicitly). */
        if (h->fixed_file)
            (void)io_uring_unregister_files(&h->ring);
        io_uring_queue_exit(&h->ring);
    }
    diskimg_hostfile_close(h->hf);
    g_mutex_clear(&h->mutex);
    g_cond_clear(&h->cond);
    g_free(h);
}

/* ============================================================ descriptor */

static const struct diskimg_io_ops uring_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = uring_open,
    .close = uring_close,
    .submit = uring_submit,
    .reap = uring_reap,
    DISKIMG_HOSTFILE_IO_OPS,
};

static const struct diskimg_plugin uring_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_IO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "uring",
    .version = PLUGIN_VERSION,
    .summary = "Files and host devices through Linux io_uring",
    .schema = uring_schema_yaml,
    .capabilities = 0,
    .ops = &uring_ops,
};

DISKIMG_PLUGIN_DEFINE(uring_plugin)