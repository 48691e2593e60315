/* SPDX-License-Identifier: MIT */
/*
 * uring.c — the "uring" I/O backend: image files and host devices with
 * their data requests carried by a Linux io_uring.
 *
 * Every data request goes through the ring, the synchronous callbacks
 * (pread, pwrite, flush, write_zeroes, punch_hole) included: they queue one
 * operation and wait for it, so any command run with this backend really
 * exercises the ring.  Metadata operations (size, truncate, block status,
 * copy_file_range, locks) are plain system calls, as in the posix backend;
 * their semantics follow posix.c and qemu's block/file-posix.c (same lock
 * bytes, same block status, same error texts).
 *
 * The ring
 *   One ring per handle, with `queue-depth` submission entries.  Each
 *   queued operation (struct uop) holds one of `depth` slots while it is in
 *   the ring; the rest wait in a FIFO and enter as slots free up, so a
 *   batch of any size never has more than `depth` requests in the kernel
 *   (and the completion queue, twice the depth, cannot overflow).  A short
 *   read or write keeps its slot and is resubmitted for the remainder;
 *   -EAGAIN/-EINTR completions are resubmitted unchanged.  The file is
 *   registered (IORING_REGISTER_FILES) so that the kernel skips the fd
 *   table lookup on every request.
 *
 * Thread model: PARALLEL.
 *   All ring state (SQ, pending FIFO, completed list, counters, write gate)
 *   is guarded by h->mutex.  Completions are collected by one thread at a
 *   time, the "leader": any thread that needs a completion (a synchronous
 *   caller waiting for its own operation, a reaper, a thread waiting for
 *   the write gate) becomes the leader when there is none, waits in
 *   io_uring_wait_cqe() with the mutex released, then dispatches every CQE
 *   to its operation — by user_data, which points at the uop — wakes the
 *   others (GCond) and gives up leadership.  The SQ is only touched with
 *   the mutex held, the CQ only by the leader, which is the single-producer
 *   / single-consumer discipline io_uring needs; submitters never wait for
 *   the leader.  When a waiter's condition changes for a reason other than
 *   a completion (a gate released, a request finished synchronously) and a
 *   leader sits in the kernel, a NOP is submitted to wake it.
 *
 * Write gate
 *   Unaligned O_DIRECT writes are read-modify-write of whole blocks, and
 *   growing the file is a size check followed by ftruncate; both must be
 *   exclusive against other writes (the posix backend's rmw_lock).  Ring
 *   writes hold a shared reference from the moment they enter the ring
 *   until they complete — possibly in another thread, which rules out a
 *   GRWLock — so the gate is a pair of counters under h->mutex.  Waiting
 *   for it drives the ring, because the shared holders may be ring
 *   operations that only complete when somebody collects their CQEs.
 *
 * Requests the ring cannot do in one go (unaligned O_DIRECT transfers,
 * zeroing by punching holes, zeroing without IORING_OP_FALLOCATE) run as
 * synchronous helper sequences: inside submit() for batch requests, and
 * inside reap() when an asynchronous zeroing turns out to be unsupported.
 * Their I/O still goes through the ring.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

#include <liburing.h>

#include <diskimg/plugin.h>

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

/* qemu's lock bytes (block/file-posix.c RAW_LOCK_{PERM,SHARED}_BASE). */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200
#define PERM_BITS        5
/* Bit 4 (graph-mod) has not been locked since qemu 6.2. */
#define LOCKABLE_PERMS   (DISKIMG_PERM_ALL & ~(uint64_t)DISKIMG_PERM_GRAPH_MOD)

/* Largest transfer of one SQE: the SQE length is 32 bits, and Linux caps
 * a single read or write at 0x7ffff000 bytes anyway. */
#define MAX_SQE_IO       ((uint64_t)1 << 30)
/* Bounce buffer for unaligned O_DIRECT requests, zero buffer for emulated
 * zeroing and full preallocation. */
#define CHUNK            ((size_t)1 << 20)
/* diskimg_alloc_aligned's alignment: the largest O_DIRECT alignment we
 * can bounce for. */
#define MAX_ALIGN        4096u
#define DEFAULT_DEPTH    128
#define MAX_DEPTH        4096

enum uop_kind {
    UOP_READ = 1,
    UOP_WRITE,
    UOP_FSYNC,
    UOP_FALLOCATE,
};

/* Whether IORING_OP_FALLOCATE with FALLOC_FL_ZERO_RANGE works on this file;
 * batch zeroing goes asynchronous only once it is known to. */
enum { ZR_UNKNOWN = 0, ZR_WORKS, ZR_FAILS };

/* One operation in the ring (or waiting for a slot). */
struct uop {
    struct uop *next;                 /* pending FIFO or completed list */
    struct diskimg_io_request *req;   /* batch request; NULL: a caller waits */
    uint8_t kind;                     /* enum uop_kind */
    bool done;                        /* synchronous: completion seen */
    bool want_gate;                   /* takes a shared write-gate reference */
    bool gated;                       /* ...and currently holds it */
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

struct uring_handle {
    int fd;
    char *filename;
    diskimg_node *node;
    mode_t type;                      /* S_IFREG, S_IFBLK or S_IFCHR */
    bool writable, direct, dsync, unsafe, use_lock;
    uint32_t req_align, mem_align;    /* 1 when buffered */
    gint flush_errno;                 /* sticky datasync failure, atomic */
    gint zero_range;                  /* ZR_*, atomic */

    /* Ring, set up once at open. */
    struct io_uring ring;
    bool ring_ready;
    bool fixed_file;                  /* fd registered as fixed file 0 */
    bool have_rw;                     /* IORING_OP_READ/WRITE (5.6) */
    bool have_fallocate;              /* IORING_OP_FALLOCATE (5.6) */
    unsigned depth;

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
    unsigned gate_shared;             /* write gate, see the top comment */
    unsigned gate_excl_wanted;
    bool gate_excl;

    GMutex perm_mutex;                /* lock bytes */
    uint64_t perm, unshared, locked_perm, locked_unshared;
};

/* ---------------------------------------------------------------- helpers */

static inline uint64_t align_down(uint64_t v, uint32_t a)
{
    return v - v % a;
}

static inline uint64_t align_up(uint64_t v, uint32_t a)
{
    return align_down(v + a - 1, a);
}

static bool range_ok(uint64_t off, uint64_t len)
{
    return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

static bool is_aligned(const struct uring_handle *h, const void *buf, uint64_t off,
                       uint64_t len)
{
    return (uintptr_t)buf % h->mem_align == 0 && off % h->req_align == 0 &&
           len % h->req_align == 0;
}

/* Errors that mean "this way of doing it is not available here". */
static bool unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL ||
           err == ENODEV || err == ESPIPE;
}

static int io_error(GError **errp, int err, const struct uring_handle *h, const char *what,
                    uint64_t off)
{
    diskimg_set_errno(errp, err, "Could not %s '%s' at offset %" PRIu64, what, h->filename,
                      off);
    return -1;
}

static int fstat_size(const struct uring_handle *h, int64_t *size)
{
    struct stat st;

    if (fstat(h->fd, &st) < 0)
        return -errno;
    *size = st.st_size;
    return 0;
}

/* ===================================================== the ring machinery */
/* Every function in this section runs with h->mutex held. */

static void start_uop(struct uring_handle *h, struct uop *u);
static void finish_uop(struct uring_handle *h, struct uop *u, int result);

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

/* Prepares the SQE for the next step of u (which holds a slot). */
static void prep_uop(struct uring_handle *h, struct uop *u)
{
    struct io_uring_sqe *sqe = get_sqe(h);
    int fd = h->fixed_file ? 0 : h->fd;

    if (!sqe) {
        finish_uop(h, u, -EBUSY);  /* cannot happen while the invariant holds */
        return;
    }
    switch (u->kind) {
    case UOP_READ:
    case UOP_WRITE:
        u->piece = (uint32_t)MIN(u->len - u->xfer, MAX_SQE_IO);
        u->iov.iov_base = u->buf + u->xfer;
        u->iov.iov_len = u->piece;
        if (u->kind == UOP_READ) {
            if (h->have_rw)
                io_uring_prep_read(sqe, fd, u->iov.iov_base, u->piece, u->off + u->xfer);
            else
                io_uring_prep_readv(sqe, fd, &u->iov, 1, u->off + u->xfer);
        } else {
            if (h->have_rw)
                io_uring_prep_write(sqe, fd, u->iov.iov_base, u->piece, u->off + u->xfer);
            else
                io_uring_prep_writev(sqe, fd, &u->iov, 1, u->off + u->xfer);
            sqe->rw_flags = u->rw_flags;
        }
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
    if (h->fixed_file)
        io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
    io_uring_sqe_set_data(sqe, u);
}

static bool gate_open_for_shared(const struct uring_handle *h)
{
    return !h->gate_excl && h->gate_excl_wanted == 0;
}

/* Moves pending uops into free slots.  Writes wait while the write gate
 * is held or wanted exclusively; others pass them. */
static void refill(struct uring_handle *h)
{
    struct uop **link = &h->pend_head, *prev = NULL;
    bool shared_ok = gate_open_for_shared(h);

    while (*link && h->in_ring < h->depth) {
        struct uop *u = *link;

        if (u->want_gate && !shared_ok) {
            prev = u;
            link = &u->next;
            continue;
        }
        *link = u->next;
        if (h->pend_tail == u)
            h->pend_tail = prev;
        start_uop(h, u);
    }
}

static void start_uop(struct uring_handle *h, struct uop *u)
{
    u->next = NULL;
    h->in_ring++;
    if (u->req)
        h->async_in_ring++;
    if (u->want_gate) {
        u->gated = true;
        h->gate_shared++;
    }
    prep_uop(h, u);
}

static void release_gate(struct uring_handle *h, struct uop *u)
{
    if (u->gated) {
        u->gated = false;
        h->gate_shared--;
    }
}

/* u is done for good: free its slot, hand it to its waiter or reaper. */
static void finish_uop(struct uring_handle *h, struct uop *u, int result)
{
    u->result = result;
    release_gate(h, u);
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

/*
 * After a failed fdatasync Linux may have marked dirty pages clean that
 * never reached the disk, so a later fdatasync would succeed without
 * writing them.  Like qemu (and posix), a buffered handle fails every
 * later flush with the first error.  O_DIRECT bypasses the page cache.
 */
static int fsync_result(struct uring_handle *h, int res)
{
    if (res >= 0)
        return 0;
    /* Character devices such as /dev/null have nothing to sync. */
    if (h->type == S_IFCHR && (res == -EINVAL || res == -EROFS || res == -ENOTSUP))
        return 0;
    if (!h->direct)
        g_atomic_int_compare_and_exchange(&h->flush_errno, 0, -res);
    return res;
}

/* Dispatches one completion: resubmit the rest, or finish. */
static void complete_step(struct uring_handle *h, struct uop *u, int res)
{
    if (res == -EINTR || res == -EAGAIN) {
        prep_uop(h, u);
        return;
    }
    switch (u->kind) {
    case UOP_READ:
        if (res < 0)
            break;
        if ((uint32_t)res > u->piece) {
            res = -EIO;
            break;
        }
        (void)VALGRIND_MAKE_MEM_DEFINED(u->buf + u->xfer, (size_t)res);
        u->xfer += (uint64_t)res;
        /* Short: EOF (res 0), or a partial transfer to continue.  Under
         * O_DIRECT a read ends short and unaligned only at EOF, and the
         * rest could not be asked for anyway (misaligned). */
        if (u->xfer < u->len && res > 0 && !(h->direct && u->xfer % h->req_align)) {
            prep_uop(h, u);
            return;
        }
        if (u->xfer < u->len)
            memset(u->buf + u->xfer, 0, u->len - u->xfer);
        res = 0;
        break;
    case UOP_WRITE:
        if (res < 0)
            break;
        if (res == 0 || (uint32_t)res > u->piece) {
            res = res == 0 ? -ENOSPC : -EIO;
            break;
        }
        u->xfer += (uint64_t)res;
        if (u->xfer < u->len) {
            /* An O_DIRECT write cut short mid-block cannot be resumed
             * (misaligned); it means the device ran out of space. */
            if (h->direct && u->xfer % h->req_align) {
                res = -ENOSPC;
                break;
            }
            prep_uop(h, u);
            return;
        }
        res = 0;
        break;
    case UOP_FSYNC:
        res = fsync_result(h, res);
        break;
    case UOP_FALLOCATE:
        if (u->fmode == FALLOC_FL_ZERO_RANGE && res == 0)
            g_atomic_int_set(&h->zero_range, ZR_WORKS);
        else if (u->fmode == FALLOC_FL_ZERO_RANGE && unsupported(-res))
            g_atomic_int_set(&h->zero_range, ZR_FAILS);
        if (res < 0 && u->req && unsupported(-res))
            u->fallback = true;   /* reap() zeroes it another way */
        break;
    default:
        res = -EINVAL;
        break;
    }
    if (res == 0 && u->then_fsync) {
        int sticky = g_atomic_int_get(&h->flush_errno);

        u->then_fsync = false;
        release_gate(h, u);     /* the write part is over */
        if (sticky) {
            res = -sticky;
        } else {
            u->kind = UOP_FSYNC;
            prep_uop(h, u);
            return;
        }
    }
    finish_uop(h, u, res);
}

static void process_cqes(struct uring_handle *h)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;

    io_uring_for_each_cqe(&h->ring, head, cqe) {
        struct uop *u = io_uring_cqe_get_data(cqe);

        seen++;
        if (u)                  /* NULL: a wake-up NOP */
            complete_step(h, u, cqe->res);
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
 * uncontended synchronous path must not pay for it twice per request. */
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
 * `own`: the caller waits for an operation of its own.  Synchronous
 * operations are collected by their own thread whenever possible — a
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

/* Runs one operation through the ring and waits for it; 0 or -errno. */
static int run_sync(struct uring_handle *h, struct uop *u)
{
    g_mutex_lock(&h->mutex);
    enqueue(h, u, true);
    drive(h, uop_done, u, true);
    g_mutex_unlock(&h->mutex);
    return u->result;
}

/* ------------------------------------------------------------ write gate */

static bool shared_free(const struct uring_handle *h, const void *arg)
{
    (void)arg;
    return gate_open_for_shared(h);
}

static bool excl_free(const struct uring_handle *h, const void *arg)
{
    (void)arg;
    return !h->gate_excl && h->gate_shared == 0;
}

/* For writes that do not go through the ring (fallocate on old kernels). */
static void gate_enter_shared(struct uring_handle *h)
{
    g_mutex_lock(&h->mutex);
    drive(h, shared_free, NULL, false);
    h->gate_shared++;
    g_mutex_unlock(&h->mutex);
}

static void gate_leave_shared(struct uring_handle *h)
{
    g_mutex_lock(&h->mutex);
    h->gate_shared--;
    notify(h);
    g_mutex_unlock(&h->mutex);
}

/* Waiting writers block new shared entries, so an RMW is never starved. */
static void gate_enter_excl(struct uring_handle *h)
{
    g_mutex_lock(&h->mutex);
    h->gate_excl_wanted++;
    drive(h, excl_free, NULL, false);
    h->gate_excl_wanted--;
    h->gate_excl = true;
    g_mutex_unlock(&h->mutex);
}

static void gate_leave_excl(struct uring_handle *h)
{
    g_mutex_lock(&h->mutex);
    h->gate_excl = false;
    refill(h);                  /* writes held back by the gate */
    (void)flush_sq(h);
    notify(h);
    g_mutex_unlock(&h->mutex);
}

/* ============================================= synchronous data helpers */

/* Reads [off, off+len) in full, zeroes past EOF.  Buffer and range must
 * suit the handle's alignment. */
static int ring_read(struct uring_handle *h, void *buf, uint64_t len, uint64_t off)
{
    struct uop u = { .kind = UOP_READ, .buf = buf, .len = len, .off = off };

    return len ? run_sync(h, &u) : 0;
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

static int ring_fsync(struct uring_handle *h)
{
    struct uop u = { .kind = UOP_FSYNC };

    return run_sync(h, &u);
}

/* fallocate(2) through the ring when the kernel has the opcode. */
static int do_fallocate(struct uring_handle *h, int mode, uint64_t off, uint64_t len,
                        bool gated)
{
    struct uop u = {
        .kind = UOP_FALLOCATE, .fmode = mode, .off = off, .len = len, .want_gate = gated,
    };
    int ret = 0;

    if (h->have_fallocate)
        return run_sync(h, &u);
    if (gated)
        gate_enter_shared(h);
    while (fallocate(h->fd, mode, (off_t)off, (off_t)len) < 0) {
        if (errno != EINTR) {
            ret = -errno;
            break;
        }
    }
    if (gated)
        gate_leave_shared(h);
    if (mode == FALLOC_FL_ZERO_RANGE && (ret == 0 || unsupported(-ret)))
        g_atomic_int_set(&h->zero_range, ret == 0 ? ZR_WORKS : ZR_FAILS);
    return ret;
}

static int io_flush(struct uring_handle *h)
{
    int sticky;

    if (h->unsafe)
        return 0;
    sticky = g_atomic_int_get(&h->flush_errno);
    if (sticky)
        return -sticky;
    return ring_fsync(h);
}

/* FUA as RWF_DSYNC on the write itself (what qemu does), unless the cache
 * mode makes it moot: O_DSYNC writes are durable anyway, and cache=unsafe
 * ignores durability. */
static int fua_rw_flags(const struct uring_handle *h, unsigned flags)
{
    return (flags & DISKIMG_WRITE_FUA) && !h->unsafe && !h->dsync ? RWF_DSYNC : 0;
}

/* ------------------------------------------------------------------ read */

static size_t bounce_size(const struct uring_handle *h, uint64_t len, uint64_t off)
{
    uint64_t head = off % h->req_align;

    return (size_t)MIN((uint64_t)CHUNK,
                       align_up(head + MIN(len, (uint64_t)CHUNK), h->req_align));
}

/* Unaligned O_DIRECT read: the covering blocks into a bounce buffer,
 * chunk by chunk, then the asked bytes out of it. */
static int bounce_read(struct uring_handle *h, void *buf, uint64_t len, uint64_t off)
{
    const uint32_t a = h->req_align;
    uint8_t *bounce = diskimg_alloc_aligned(bounce_size(h, len, off));
    int ret = 0;

    if (!bounce)
        return -ENOMEM;
    while (ret == 0 && len > 0) {
        uint64_t head = off % a;
        uint64_t n = MIN(len, CHUNK - head);

        ret = ring_read(h, bounce, align_up(head + n, a), off - head);
        if (ret == 0)
            memcpy(buf, bounce + head, n);
        buf = (uint8_t *)buf + n;
        off += n;
        len -= n;
    }
    diskimg_free_aligned(bounce);
    return ret;
}

static int io_read(struct uring_handle *h, void *buf, uint64_t len, uint64_t off)
{
    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (!is_aligned(h, buf, off, len))
        return bounce_read(h, buf, len, off);
    return ring_read(h, buf, len, off);
}

/* ----------------------------------------------------------------- write */

/* One chunk of an unaligned O_DIRECT write (n <= CHUNK - off % align):
 * fetch the partial head and tail blocks, patch, write back.  The caller
 * holds the write gate exclusively. */
static int rmw_chunk(struct uring_handle *h, uint8_t *bounce, const void *buf, uint64_t n,
                     uint64_t off)
{
    const uint32_t a = h->req_align;
    uint64_t head = off % a;
    uint64_t astart = off - head;
    uint64_t alen = align_up(head + n, a);
    uint64_t tail = alen - a;
    int ret = 0;

    if (head != 0)
        ret = ring_read(h, bounce, a, astart);
    if (ret == 0 && (head + n) % a != 0 && (tail != 0 || head == 0))
        ret = ring_read(h, bounce + tail, a, astart + tail);
    if (ret < 0)
        return ret;
    memcpy(bounce + head, buf, n);
    return ring_write(h, bounce, alen, astart, 0, false);
}

/* Unaligned O_DIRECT write, write gate held exclusively.  Whole-block
 * writes may push EOF to a block boundary; put it back where a buffered
 * write would have left it. */
static int bounce_write(struct uring_handle *h, const void *buf, uint64_t len, uint64_t off)
{
    uint8_t *bounce = diskimg_alloc_aligned(bounce_size(h, len, off));
    uint64_t end = off + len;
    int64_t old_size = -1;
    int ret = 0;

    if (!bounce)
        return -ENOMEM;
    if (h->type == S_IFREG)
        ret = fstat_size(h, &old_size);
    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, CHUNK - off % h->req_align);

        ret = rmw_chunk(h, bounce, buf, n, off);
        buf = (const uint8_t *)buf + n;
        off += n;
        len -= n;
    }
    if (old_size >= 0 && align_up(end, h->req_align) > MAX((uint64_t)old_size, end) &&
        ftruncate(h->fd, (off_t)MAX((uint64_t)old_size, end)) < 0 && ret == 0)
        ret = -errno;
    diskimg_free_aligned(bounce);
    return ret;
}

/* A write by a caller that holds the gate exclusively. */
static int write_excl_held(struct uring_handle *h, const void *buf, uint64_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    if (!is_aligned(h, buf, off, len))
        return bounce_write(h, buf, len, off);
    return ring_write(h, buf, len, off, 0, false);
}

static int io_write(struct uring_handle *h, const void *buf, uint64_t len, uint64_t off,
                    unsigned flags)
{
    int ret;

    if (!h->writable)
        return -EBADF;
    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (is_aligned(h, buf, off, len))
        return ring_write(h, buf, len, off, fua_rw_flags(h, flags), true);
    gate_enter_excl(h);
    ret = bounce_write(h, buf, len, off);
    gate_leave_excl(h);
    if (ret == 0 && (flags & DISKIMG_WRITE_FUA))
        ret = io_flush(h);
    return ret;
}

/* ------------------------------------------------------ zeroes and holes */

/* Zero buffers over the range; `excl_held` as in write_excl_held. */
static int write_zero_buffers(struct uring_handle *h, uint64_t off, uint64_t len,
                              bool excl_held)
{
    size_t chunk = (size_t)MIN(len, (uint64_t)CHUNK);
    uint8_t *zeroes = diskimg_alloc_aligned(chunk);
    int ret = 0;

    if (!zeroes)
        return -ENOMEM;
    memset(zeroes, 0, chunk);
    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, chunk);

        ret = excl_held ? write_excl_held(h, zeroes, n, off) : io_write(h, zeroes, n, off, 0);
        off += n;
        len -= n;
    }
    diskimg_free_aligned(zeroes);
    return ret;
}

/* Extends the file to at least `end`; exclusive, so that a concurrent
 * write extending the file past `end` is never cut off. */
static int grow_to(struct uring_handle *h, uint64_t end)
{
    int64_t size;
    int ret;

    gate_enter_excl(h);
    ret = fstat_size(h, &size);
    if (ret == 0 && (uint64_t)size < end && ftruncate(h->fd, (off_t)end) < 0)
        ret = -errno;
    gate_leave_excl(h);
    return ret;
}

static int io_punch_hole(struct uring_handle *h, uint64_t off, uint64_t len)
{
    if (!h->writable)
        return -EBADF;
    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    return do_fallocate(h, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len, true);
}

/* MAY_UNMAP on a regular file: punch inside the file, grow over the rest. */
static int zero_by_punching(struct uring_handle *h, uint64_t off, uint64_t len)
{
    int64_t size;
    int ret = fstat_size(h, &size);

    if (ret < 0)
        return ret;
    if (off < (uint64_t)size) {
        ret = io_punch_hole(h, off, MIN(len, (uint64_t)size - off));
        if (ret < 0)
            return ret;
    }
    return off + len > (uint64_t)size ? grow_to(h, off + len) : 0;
}

/* posix's zeroing ladder: punch (MAY_UNMAP), ZERO_RANGE, grow past EOF,
 * and last, unless NO_FALLBACK, zero buffers. */
static int zero_range(struct uring_handle *h, uint64_t off, uint64_t len, unsigned flags)
{
    int ret;

    if (!h->writable)
        return -EBADF;
    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if ((flags & DISKIMG_WRITE_MAY_UNMAP) && h->type == S_IFREG) {
        ret = zero_by_punching(h, off, len);
        if (ret == 0 || !unsupported(-ret))
            return ret;
    }
    /* ZERO_RANGE without KEEP_SIZE also extends the file when needed. */
    ret = do_fallocate(h, FALLOC_FL_ZERO_RANGE, off, len, true);
    if (ret == 0 || !unsupported(-ret))
        return ret;
    if (h->type == S_IFREG) {
        int64_t size;

        ret = fstat_size(h, &size);
        if (ret < 0)
            return ret;
        if (off >= (uint64_t)size)
            return grow_to(h, off + len);
    }
    if (flags & DISKIMG_WRITE_NO_FALLBACK)
        return -ENOTSUP;
    return write_zero_buffers(h, off, len, false);
}

static int io_write_zeroes(struct uring_handle *h, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = zero_range(h, off, len, flags);

    if (ret == 0 && len > 0 && (flags & DISKIMG_WRITE_FUA))
        ret = io_flush(h);
    return ret;
}

/* ============================================================ batch path */

static bool request_valid(const struct diskimg_io_request *r)
{
    switch (r->op) {
    case DISKIMG_IO_READ:
    case DISKIMG_IO_WRITE:
        return r->buf || r->len == 0;
    case DISKIMG_IO_FLUSH:
    case DISKIMG_IO_WRITE_ZEROES:
        return true;
    default:
        return false;
    }
}

/* Runs a request synchronously (the helper sequences above). */
static int run_request_sync(struct uring_handle *h, const struct diskimg_io_request *r)
{
    switch (r->op) {
    case DISKIMG_IO_READ:
        return io_read(h, r->buf, r->len, r->offset);
    case DISKIMG_IO_WRITE:
        return io_write(h, r->buf, r->len, r->offset, r->flags);
    case DISKIMG_IO_FLUSH:
        return io_flush(h);
    case DISKIMG_IO_WRITE_ZEROES:
        return io_write_zeroes(h, r->offset, r->len, r->flags);
    default:
        return -EINVAL;
    }
}

enum plan { PLAN_DONE, PLAN_RING, PLAN_SYNC };

/*
 * Decides how a batch request is served: answered at once (u->result),
 * as one ring operation, or synchronously.
 */
static enum plan plan_request(struct uring_handle *h, struct diskimg_io_request *r,
                              struct uop *u)
{
    u->req = r;
    u->buf = r->buf;
    u->len = r->len;
    u->off = r->offset;
    switch (r->op) {
    case DISKIMG_IO_READ:
    case DISKIMG_IO_WRITE:
        if (r->op == DISKIMG_IO_WRITE && !h->writable)
            u->result = -EBADF;
        else if (!range_ok(r->offset, r->len))
            u->result = -EINVAL;
        else if (r->len == 0)
            u->result = 0;
        else if (!is_aligned(h, r->buf, r->offset, r->len))
            return PLAN_SYNC;
        else
            break;
        return PLAN_DONE;
    case DISKIMG_IO_FLUSH:
        if (h->unsafe)
            u->result = 0;
        else if (g_atomic_int_get(&h->flush_errno))
            u->result = -g_atomic_int_get(&h->flush_errno);
        else
            break;
        return PLAN_DONE;
    case DISKIMG_IO_WRITE_ZEROES:
        if (!h->writable)
            u->result = -EBADF;
        else if (!range_ok(r->offset, r->len))
            u->result = -EINVAL;
        else if (r->len == 0)
            u->result = 0;
        else if (!h->have_fallocate || g_atomic_int_get(&h->zero_range) != ZR_WORKS ||
                 ((r->flags & DISKIMG_WRITE_MAY_UNMAP) && h->type == S_IFREG))
            return PLAN_SYNC;   /* several steps, or not known to work */
        else
            break;
        return PLAN_DONE;
    default:
        u->result = -EINVAL;
        return PLAN_DONE;
    }

    /* One ring operation. */
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
        u->then_fsync = (r->flags & DISKIMG_WRITE_FUA) && !h->unsafe;
        break;
    }
    return PLAN_RING;
}

/* Puts an already finished request on the completed list. */
static void push_done(struct uring_handle *h, struct uop *u)
{
    h->in_ring++;               /* finish_uop() frees a slot */
    h->async_in_ring++;
    finish_uop(h, u, u->result);
}

static int uring_submit(void *opaque, struct diskimg_io_request *const *reqs, unsigned n,
                        GError **errp)
{
    struct uring_handle *h = opaque;
    struct uop *sync_head = NULL, **sync_link = &sync_head;

    for (unsigned i = 0; i < n; i++) {
        if (!reqs[i] || !request_valid(reqs[i])) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "Invalid I/O request %u of %u", i, n);
            return -1;
        }
    }
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
        u->result = run_request_sync(h, u->req);
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
        u->result = io_write_zeroes(h, r->offset, r->len, r->flags);
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

/* ============================================================== metadata */

static int64_t current_size(const struct uring_handle *h)
{
    uint64_t bytes;
    int64_t size;
    off_t end;
    int ret;

    if (h->type == S_IFREG) {
        ret = fstat_size(h, &size);
        return ret < 0 ? ret : size;
    }
    if (h->type == S_IFBLK && ioctl(h->fd, BLKGETSIZE64, &bytes) == 0)
        return bytes > (uint64_t)INT64_MAX ? -EOVERFLOW : (int64_t)bytes;
    end = lseek(h->fd, 0, SEEK_END);
    return end < 0 ? -errno : (int64_t)end;
}

static int64_t uring_get_size(void *opaque, GError **errp)
{
    struct uring_handle *h = opaque;
    int64_t size = current_size(h);

    if (size < 0) {
        diskimg_set_errno(errp, (int)-size, "Could not get the size of '%s'", h->filename);
        return -1;
    }
    return size;
}

static int64_t uring_allocated_size(void *opaque, GError **errp)
{
    struct uring_handle *h = opaque;
    struct stat st;

    if (fstat(h->fd, &st) < 0) {
        diskimg_set_errno(errp, errno, "Could not stat '%s'", h->filename);
        return -1;
    }
    return (int64_t)st.st_blocks * 512;
}

static uint32_t uring_alignment(void *opaque)
{
    struct uring_handle *h = opaque;

    return MAX(h->req_align, h->mem_align);
}

/* Data or hole at `start` and where it ends (qemu's find_allocation);
 * -ENXIO in the trailing hole. */
static int seek_extent(int fd, uint64_t start, bool *is_data, uint64_t *end)
{
    off_t data = lseek(fd, (off_t)start, SEEK_DATA);
    off_t hole;

    if (data < 0)
        return -errno;
    if ((uint64_t)data < start)
        return -EIO;                      /* broken SEEK_DATA */
    if ((uint64_t)data > start) {
        *is_data = false;
        *end = (uint64_t)data;
        return 0;
    }
    hole = lseek(fd, (off_t)start, SEEK_HOLE);
    if (hole < 0)
        return -errno;
    if ((uint64_t)hole <= start)
        return (uint64_t)hole < start ? -EIO : -EBUSY;  /* punched meanwhile */
    *is_data = true;
    *end = (uint64_t)hole;
    return 0;
}

static int uring_block_status(void *opaque, uint64_t offset, uint64_t len,
                              struct diskimg_extent *ext, GError **errp)
{
    struct uring_handle *h = opaque;
    int64_t size = current_size(h);
    bool is_data = true;
    uint64_t end = 0;
    int ret;

    if (size < 0)
        return io_error(errp, (int)-size, h, "get block status of", offset);
    if (len == 0 || !range_ok(offset, len)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid block status request at offset %" PRIu64, offset);
        return -1;
    }
    ext->offset = offset;
    ext->file = h->node;
    ext->flags = DISKIMG_BS_OFFSET_VALID;
    if (offset >= (uint64_t)size) {       /* past EOF: zeroes */
        ext->flags |= DISKIMG_BS_ZERO;
        ext->length = len;
        return 0;
    }
    len = MIN(len, (uint64_t)size - offset);
    ret = h->type == S_IFREG ? seek_extent(h->fd, offset, &is_data, &end) : -ENOTSUP;
    if (ret == -ENXIO) {
        ext->flags |= DISKIMG_BS_ZERO;    /* trailing hole */
        ext->length = len;
    } else if (ret < 0) {
        ext->flags |= DISKIMG_BS_DATA;    /* no information: no holes */
        ext->length = len;
    } else {
        ext->flags |= is_data ? DISKIMG_BS_DATA : DISKIMG_BS_ZERO;
        ext->length = MIN(len, end - offset);
    }
    return 0;
}

/* ------------------------------------------------------------- truncate */

/* Zeroes over the first block, so that O_DIRECT alignment probing of the
 * new image reads real data (qemu's allocate_first_block); best effort. */
static void allocate_first_block(struct uring_handle *h, uint64_t size)
{
    uint64_t n = MIN(size < MAX_ALIGN ? 512u : MAX_ALIGN, size);
    uint8_t *zeroes = diskimg_alloc_aligned(MAX_ALIGN);

    if (!zeroes)
        return;
    memset(zeroes, 0, MAX_ALIGN);
    (void)write_excl_held(h, zeroes, n, 0);
    diskimg_free_aligned(zeroes);
}

/* Grows a regular file, write gate held exclusively. */
static int grow_file(struct uring_handle *h, uint64_t cur, uint64_t size,
                     enum diskimg_prealloc prealloc, GError **errp)
{
    int ret = 0;

    switch (prealloc) {
    case DISKIMG_PREALLOC_OFF:
    case DISKIMG_PREALLOC_METADATA:       /* a plain file has no metadata */
        if (ftruncate(h->fd, (off_t)size) < 0)
            ret = -errno;
        break;
    case DISKIMG_PREALLOC_FALLOC:
        ret = -posix_fallocate(h->fd, (off_t)cur, (off_t)(size - cur));
        if (ret < 0) {
            diskimg_set_errno(errp, -ret, "Could not preallocate new data");
            return -1;
        }
        break;
    case DISKIMG_PREALLOC_FULL:
        if (ftruncate(h->fd, (off_t)size) < 0)
            ret = -errno;
        if (ret == 0)
            ret = write_zero_buffers(h, cur, size - cur, true);
        if (ret == 0)
            ret = io_flush(h);
        if (ret < 0) {
            diskimg_set_errno(errp, -ret, "Could not write zeros for preallocation");
            return -1;
        }
        break;
    default:
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Unsupported preallocation mode %d", (int)prealloc);
        return -1;
    }
    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Failed to resize the file");
        return -1;
    }
    if (cur == 0 && prealloc != DISKIMG_PREALLOC_FULL)
        allocate_first_block(h, size);
    return 0;
}

static int truncate_file(struct uring_handle *h, uint64_t size, enum diskimg_prealloc prealloc,
                         unsigned flags, GError **errp)
{
    int64_t cur;
    int ret = fstat_size(h, &cur);

    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Could not stat '%s'", h->filename);
        return -1;
    }
    if (size < (uint64_t)cur && !(flags & DISKIMG_TRUNCATE_SHRINK)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "cannot shrink without DISKIMG_TRUNCATE_SHRINK");
        return -1;
    }
    if (size < (uint64_t)cur && ftruncate(h->fd, (off_t)size) < 0) {
        diskimg_set_errno(errp, errno, "Failed to resize the file");
        return -1;
    }
    if (size <= (uint64_t)cur)
        return 0;
    if (grow_file(h, (uint64_t)cur, size, prealloc, errp) < 0) {
        /* Leave the file as we found it, as qemu does. */
        if (ftruncate(h->fd, (off_t)cur) < 0)
            diskimg_warn("Failed to restore old file length of '%s': %s", h->filename,
                         g_strerror(errno));
        return -1;
    }
    return 0;
}

/* Devices keep their size (qemu's raw_co_truncate). */
static int truncate_device(struct uring_handle *h, uint64_t size,
                           enum diskimg_prealloc prealloc, unsigned flags, GError **errp)
{
    int64_t cur = current_size(h);

    if (cur < 0) {
        diskimg_set_errno(errp, (int)-cur, "Could not get the size of '%s'", h->filename);
        return -1;
    }
    if (prealloc != DISKIMG_PREALLOC_OFF) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Preallocation mode is unsupported for this non-regular file");
        return -1;
    }
    if (size > (uint64_t)cur) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Cannot grow device files");
        return -1;
    }
    if (size < (uint64_t)cur && (flags & DISKIMG_TRUNCATE_SHRINK)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Cannot resize device files");
        return -1;
    }
    return 0;
}

static int uring_truncate(void *opaque, uint64_t size, enum diskimg_prealloc prealloc,
                          unsigned flags, GError **errp)
{
    struct uring_handle *h = opaque;
    int ret;

    if (!h->writable) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION, "Block node is read-only");
        return -1;
    }
    if (size > (uint64_t)INT64_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Image size too large: %" PRIu64, size);
        return -1;
    }
    if (h->type != S_IFREG)
        return truncate_device(h, size, prealloc, flags, errp);
    gate_enter_excl(h);
    ret = truncate_file(h, size, prealloc, flags, errp);
    gate_leave_excl(h);
    return ret;
}

/* ------------------------------------------------------------ copy_range */

static bool copy_unsupported(int err)
{
    return err == EXDEV || err == ENOSYS || err == EINVAL || err == EOPNOTSUPP ||
           err == ENOTSUP || err == EBADF || err == ETXTBSY;
}

static int64_t uring_copy_range(void *src_opaque, uint64_t src_offset, void *dst_opaque,
                                uint64_t dst_offset, uint64_t len, GError **errp)
{
    struct uring_handle *src = src_opaque, *dst = dst_opaque;
    uint64_t done = 0;

    if (!dst->writable || !range_ok(src_offset, len) || !range_ok(dst_offset, len))
        return 0;  /* the caller's read/write path reports it */
    while (done < len) {
        loff_t in = (loff_t)(src_offset + done), out = (loff_t)(dst_offset + done);
        ssize_t r = copy_file_range(src->fd, &in, dst->fd, &out,
                                    (size_t)MIN(len - done, MAX_SQE_IO), 0);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (done > 0 || copy_unsupported(errno))
                break;
            return io_error(errp, errno, dst, "copy into", dst_offset);
        }
        if (r == 0)
            break;
        done += (uint64_t)r;
    }
    /* copy_file_range may go through the page cache whatever the open
     * flags; keep the cache mode's durability promise. */
    if (done > 0 && dst->dsync) {
        int ret = io_flush(dst);

        if (ret < 0)
            return io_error(errp, -ret, dst, "flush", dst_offset);
    }
    return (int64_t)done;
}

/* ================================================================= locks */
/* qemu's image locking protocol on OFD byte locks (see posix.c). */

static const char *const perm_names[PERM_BITS] = {
    "consistent read", "write", "write unchanged", "resize", "change children",
};

static int ofd_lock(int fd, int byte, short type, bool test)
{
    struct flock fl = { .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = type };

    if (test) {
        if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
            return -errno;
        return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
    }
    while (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* Brings the bytes base+i held by this fd to `want`; without `unlock`
 * only adds (qemu's prepare step). */
static int sync_lock_bytes(struct uring_handle *h, int base, uint64_t want, uint64_t *held,
                           bool unlock, GError **errp)
{
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        bool add = (want & bit) && !(*held & bit);
        bool drop = unlock && !(want & bit) && (*held & bit);
        int ret;

        if (!add && !drop)
            continue;
        ret = ofd_lock(h->fd, base + i, add ? F_RDLCK : F_UNLCK, false);
        if (ret == -EAGAIN || ret == -EACCES) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED, "Failed to lock byte %d",
                        base + i);
            return -1;
        }
        if (ret < 0) {
            diskimg_set_errno(errp, -ret, "Failed to %s byte %d", add ? "lock" : "unlock",
                              base + i);
            return -1;
        }
        *held = add ? *held | bit : *held & ~bit;
    }
    return 0;
}

static int sync_locks(struct uring_handle *h, uint64_t perm, uint64_t unshared, bool unlock,
                      GError **errp)
{
    if (sync_lock_bytes(h, LOCK_PERM_BASE, perm, &h->locked_perm, unlock, errp) < 0)
        return -1;
    return sync_lock_bytes(h, LOCK_SHARED_BASE, unshared, &h->locked_unshared, unlock, errp);
}

/* Nobody else may refuse to share what we use, nor use what we refuse to
 * share (qemu's raw_check_lock_bytes). */
static int check_conflicts(const struct uring_handle *h, uint64_t perm, uint64_t shared,
                           GError **errp)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < PERM_BITS; i++) {
            uint64_t bit = UINT64_C(1) << i;
            bool ask = pass == 0 ? (perm & bit) != 0 : !(shared & bit);
            int byte = (pass == 0 ? LOCK_SHARED_BASE : LOCK_PERM_BASE) + i;
            const char *what = pass == 0 ? "" : "shared ";
            int ret = ask ? ofd_lock(h->fd, byte, F_WRLCK, true) : 0;

            if (ret == -EAGAIN || ret == -EACCES) {
                g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED,
                            "Failed to get %s\"%s\" lock: Is another process using the "
                            "image [%s]?", what, perm_names[i], h->filename);
                return -1;
            }
            if (ret < 0) {
                diskimg_set_errno(errp, -ret, "Failed to get %s\"%s\" lock", what,
                                  perm_names[i]);
                return -1;
            }
        }
    }
    return 0;
}

static int set_permissions(struct uring_handle *h, uint64_t perm, uint64_t shared,
                           GError **errp)
{
    uint64_t unshared;
    int ret;

    perm &= LOCKABLE_PERMS;
    shared |= ~LOCKABLE_PERMS;
    unshared = ~shared & LOCKABLE_PERMS;
    g_mutex_lock(&h->perm_mutex);
    ret = sync_locks(h, h->locked_perm | perm, h->locked_unshared | unshared, false, errp);
    if (ret == 0)
        ret = check_conflicts(h, perm, shared, errp);
    if (ret == 0) {
        h->perm = perm;
        h->unshared = unshared;
    }
    /* Dropping bytes cannot conflict, and close drops them anyway. */
    (void)sync_locks(h, h->perm, h->unshared, true, NULL);
    g_mutex_unlock(&h->perm_mutex);
    return ret;
}

static int uring_lock(void *opaque, uint64_t perm, uint64_t shared, GError **errp)
{
    struct uring_handle *h = opaque;

    return h->use_lock ? set_permissions(h, perm, shared, errp) : 0;
}

static int uring_remove(const char *filename, GError **errp)
{
    if (unlink(filename) < 0 && errno != ENOENT) {
        diskimg_set_errno(errp, errno, "Could not delete '%s'", filename);
        return -1;
    }
    return 0;
}

/* ============================================================ open/close */

struct open_settings {
    int oflags;
    bool direct, unsafe, use_lock, lock_required;
    unsigned depth;
};

static const diskimg_options *open_options(const struct diskimg_io_open_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_io_open_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

static int parse_settings(const struct diskimg_io_open_args *args, struct open_settings *s,
                          GError **errp)
{
    const diskimg_options *o = open_options(args);
    const char *locking = o ? diskimg_options_get_str(o, "locking") : NULL;
    int64_t depth = o ? diskimg_options_get_int(o, "queue-depth", DEFAULT_DEPTH)
                      : DEFAULT_DEPTH;
    bool rdwr = args->flags & (DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);

    memset(s, 0, sizeof(*s));
    if (!locking)
        locking = "auto";
    if (depth < 1 || depth > MAX_DEPTH) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "uring: queue-depth must be between 1 and %d, not %" PRId64, MAX_DEPTH,
                    depth);
        return -1;
    }
    s->depth = (unsigned)depth;
    /* O_NONBLOCK: opening a FIFO must never wait for a peer; cleared once
     * the file is known to be a file or a device. */
    s->oflags = (rdwr ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK;
    if (args->flags & DISKIMG_OPEN_CREATE)
        s->oflags |= O_CREAT;
    switch (args->cache) {
    case DISKIMG_CACHE_NONE:         s->direct = true; break;
    case DISKIMG_CACHE_DIRECTSYNC:   s->direct = true; s->oflags |= O_DSYNC; break;
    case DISKIMG_CACHE_WRITETHROUGH: s->oflags |= O_DSYNC; break;
    case DISKIMG_CACHE_UNSAFE:       s->unsafe = true; break;
    case DISKIMG_CACHE_WRITEBACK:    break;
    default:
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Invalid cache mode %d",
                    (int)args->cache);
        return -1;
    }
    if (s->direct)
        s->oflags |= O_DIRECT;
    s->lock_required = strcmp(locking, "on") == 0;
    s->use_lock = strcmp(locking, "off") != 0 && !(args->flags & DISKIMG_OPEN_NO_LOCK);
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

/* open(2) with qemu's error texts (util/osdep.c qemu_open_internal). */
static int open_fd(const char *filename, int oflags, GError **errp)
{
    const char *action = (oflags & O_CREAT) ? "create" : "open";
    int fd, err;

    do {
        fd = open(filename, oflags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0)
        return fd;
    err = errno;
    if (err == EINVAL && (oflags & O_DIRECT)) {
        int probe = open(filename, oflags & ~O_DIRECT, 0644);

        if (probe >= 0) {
            close(probe);
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                        "Could not %s '%s': filesystem does not support O_DIRECT", action,
                        filename);
            return -1;
        }
    }
    diskimg_set_errno(errp, err, "Could not %s '%s'", action, filename);
    return -1;
}

/* Regular files and devices only (a FIFO is refused, never waited on);
 * a block device set read-only refuses read-write opens now rather than
 * failing each write later. */
static int check_file(struct uring_handle *h, GError **errp)
{
    struct stat st;
    int fl, ro = 0;

    if (fstat(h->fd, &st) < 0) {
        diskimg_set_errno(errp, errno, "Could not stat '%s'", h->filename);
        return -1;
    }
    h->type = st.st_mode & S_IFMT;
    if (h->type != S_IFREG && h->type != S_IFBLK && h->type != S_IFCHR) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "'file' driver requires '%s' to be a regular file", h->filename);
        return -1;
    }
    fl = fcntl(h->fd, F_GETFL);
    if (fl < 0 || fcntl(h->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        diskimg_set_errno(errp, errno, "Could not open '%s'", h->filename);
        return -1;
    }
    if (h->type == S_IFBLK && h->writable) {
        if (ioctl(h->fd, BLKROGET, &ro) < 0 || ro) {
            diskimg_set_errno(errp, ro ? EACCES : errno, "The device is not writable");
            return -1;
        }
    }
    return 0;
}

/*
 * O_DIRECT alignment: statx DIOALIGN (Linux 6.1+), else the device's
 * logical sector size, else the first of 512 and 4096 that an aligned read
 * at offset 0 accepts (EINVAL means misaligned); 4096 when unsure.
 */
static int probe_alignment(struct uring_handle *h, GError **errp)
{
    struct statx stx;
    unsigned int sector = 0;

    h->req_align = h->mem_align = MAX_ALIGN;
    if (statx(h->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0) {
        h->req_align = stx.stx_dio_offset_align;
        h->mem_align = MAX(stx.stx_dio_mem_align, 1u);
    } else if (h->type == S_IFBLK && ioctl(h->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
        h->req_align = h->mem_align = sector;
    } else {
        uint8_t *buf = diskimg_alloc_aligned(MAX_ALIGN);

        for (uint32_t size = 512; buf && size <= MAX_ALIGN; size *= 8) {
            ssize_t r;

            do {
                r = pread(h->fd, buf, size, 0);
            } while (r < 0 && errno == EINTR);
            if (r < 0 && errno == EINVAL)
                continue;
            if (r == (ssize_t)size)
                h->req_align = h->mem_align = size;
            break;  /* an answer, or a short read that proves nothing */
        }
        diskimg_free_aligned(buf);
    }
    if (h->req_align > MAX_ALIGN || h->mem_align > MAX_ALIGN ||
        (h->req_align & (h->req_align - 1)) || (h->mem_align & (h->mem_align - 1))) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Could not open '%s': unsupported O_DIRECT alignment %" PRIu32
                    " (try a cache mode without O_DIRECT)", h->filename, h->req_align);
        return -1;
    }
    return 0;
}

static int setup_locking(struct uring_handle *h, bool required, GError **errp)
{
    int ret = ofd_lock(h->fd, LOCK_PERM_BASE, F_WRLCK, true);

    if (ret == 0 || ret == -EAGAIN)
        return 0;
    if (required) {
        diskimg_set_errno(errp, -ret, "Could not open '%s': OFD locking is unavailable",
                          h->filename);
        return -1;
    }
    h->use_lock = false;  /* locking=auto without OFD locks */
    return 0;
}

/* Creation truncates only after checking that nobody objects (qemu's
 * raw_co_create): never cut an image in use. */
static int truncate_on_open(struct uring_handle *h, GError **errp)
{
    if (h->type != S_IFREG)
        return 0;
    if (h->use_lock &&
        set_permissions(h, DISKIMG_PERM_WRITE | DISKIMG_PERM_RESIZE,
                        DISKIMG_PERM_ALL & ~(uint64_t)DISKIMG_PERM_RESIZE, errp) < 0)
        return -1;
    if (ftruncate(h->fd, 0) < 0) {
        diskimg_set_errno(errp, errno, "Could not resize file");
        return -1;
    }
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
    struct open_settings s;
    struct uring_handle *h;

    if (!args || !args->filename) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "No filename given");
        return NULL;
    }
    if (parse_settings(args, &s, errp) < 0)
        return NULL;
    h = g_new0(struct uring_handle, 1);
    h->fd = -1;
    h->filename = g_strdup(args->filename);
    h->node = args->node;
    h->req_align = h->mem_align = 1;
    h->writable = (s.oflags & O_ACCMODE) == O_RDWR;
    h->direct = s.direct;
    h->unsafe = s.unsafe;
    h->dsync = (s.oflags & O_DSYNC) != 0;
    h->use_lock = s.use_lock;
    g_mutex_init(&h->mutex);
    g_cond_init(&h->cond);
    g_mutex_init(&h->perm_mutex);

    if (ring_setup(h, s.depth, errp) < 0)
        goto fail;
    h->fd = open_fd(args->filename, s.oflags, errp);
    if (h->fd < 0 || check_file(h, errp) < 0)
        goto fail;
    if (h->direct && probe_alignment(h, errp) < 0)
        goto fail;
    if (h->use_lock && setup_locking(h, s.lock_required, errp) < 0)
        goto fail;
    if ((args->flags & DISKIMG_OPEN_TRUNCATE) && truncate_on_open(h, errp) < 0)
        goto fail;
    /* A fixed file spares the kernel an fd lookup and reference per SQE;
     * without it (old kernel, memlock) plain fds work the same. */
    h->fixed_file = io_uring_register_files(&h->ring, &h->fd, 1) == 0;
    return h;

fail:
    uring_close(h);
    return NULL;
}

static void uring_close(void *opaque)
{
    struct uring_handle *h = opaque;
    struct uop *u;

    if (!h)
        return;
    if (h->ring_ready) {
        /* Requests still queued complete first: their buffers belong to
         * callers who may be waiting to reap them. */
        g_mutex_lock(&h->mutex);
        drive(h, ring_idle, NULL, false);
        u = take_done(h, UINT_MAX);
        g_mutex_unlock(&h->mutex);
        while (u) {
            struct uop *next = u->next;

            (void)retire(h, u);
            u = next;
        }
        /* The ring's reference to a registered file is dropped by the
         * kernel's asynchronous ring teardown, so the open file — and the
         * OFD locks that belong to it — could outlive close() for a
         * while; another user must find the image unlocked as soon as we
         * return.  Unregister first, and drop the lock bytes explicitly. */
        if (h->fixed_file)
            (void)io_uring_unregister_files(&h->ring);
        io_uring_queue_exit(&h->ring);
    }
    if (h->fd >= 0 && (h->locked_perm || h->locked_unshared)) {
        struct flock fl = { .l_whence = SEEK_SET, .l_start = LOCK_PERM_BASE,
                            .l_len = LOCK_SHARED_BASE + PERM_BITS - LOCK_PERM_BASE,
                            .l_type = F_UNLCK };

        (void)fcntl(h->fd, F_OFD_SETLK, &fl);
    }
    if (h->fd >= 0)
        close(h->fd);
    g_mutex_clear(&h->mutex);
    g_cond_clear(&h->cond);
    g_mutex_clear(&h->perm_mutex);
    g_free(h->filename);
    g_free(h);
}

/* ====================================================== data callbacks */

static int uring_pread(void *opaque, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct uring_handle *h = opaque;
    int ret = io_read(h, buf, len, offset);

    return ret < 0 ? io_error(errp, -ret, h, "read", offset) : 0;
}

static int uring_pwrite(void *opaque, const void *buf, uint64_t len, uint64_t offset,
                        unsigned flags, GError **errp)
{
    struct uring_handle *h = opaque;
    int ret = io_write(h, buf, len, offset, flags);

    return ret < 0 ? io_error(errp, -ret, h, "write", offset) : 0;
}

static int uring_flush(void *opaque, GError **errp)
{
    struct uring_handle *h = opaque;
    int ret = io_flush(h);

    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Could not flush '%s'", h->filename);
        return -1;
    }
    return 0;
}

static int uring_write_zeroes(void *opaque, uint64_t offset, uint64_t len, unsigned flags,
                              GError **errp)
{
    struct uring_handle *h = opaque;
    int ret = io_write_zeroes(h, offset, len, flags);

    return ret < 0 ? io_error(errp, -ret, h, "write zeroes to", offset) : 0;
}

static int uring_punch_hole(void *opaque, uint64_t offset, uint64_t len, GError **errp)
{
    struct uring_handle *h = opaque;
    int ret = io_punch_hole(h, offset, len);

    return ret < 0 ? io_error(errp, -ret, h, "discard in", offset) : 0;
}

static int uring_allocate(void *opaque, uint64_t offset, uint64_t len, GError **errp)
{
    struct uring_handle *h = opaque;
    int ret;

    if (!h->writable)
        ret = -EBADF;
    else if (!range_ok(offset, len))
        ret = -EINVAL;
    else
        ret = len ? do_fallocate(h, 0, offset, len, true) : 0;
    return ret < 0 ? io_error(errp, -ret, h, "allocate in", offset) : 0;
}

/* ============================================================ descriptor */

static const struct diskimg_io_ops uring_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = uring_open,
    .close = uring_close,
    .pread = uring_pread,
    .pwrite = uring_pwrite,
    .submit = uring_submit,
    .reap = uring_reap,
    .flush = uring_flush,
    .get_size = uring_get_size,
    .allocated_size = uring_allocated_size,
    .truncate = uring_truncate,
    .allocate = uring_allocate,
    .punch_hole = uring_punch_hole,
    .write_zeroes = uring_write_zeroes,
    .block_status = uring_block_status,
    .copy_range = uring_copy_range,
    .lock = uring_lock,
    .alignment = uring_alignment,
    .remove = uring_remove,
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
