/* SPDX-License-Identifier: MIT */
/*
 * posix.c — the "posix" I/O backend: image files and host devices through
 * plain POSIX calls (pread/pwrite, fallocate, lseek SEEK_DATA, OFD locks).
 *
 * Thread model: PARALLEL.  Every data request is positional (pread/pwrite
 * and friends take the offset as an argument, the file offset is never
 * used), so requests on one handle may run concurrently.  The mutable
 * state shared between requests is small and each piece is guarded:
 *   - lock-byte bookkeeping (perm_mutex),
 *   - lazy creation of the batch thread pool (batch_mutex) and reaping
 *     (reap_mutex, one reaper at a time),
 *   - read-modify-write of unaligned O_DIRECT writes, and changes of the
 *     file size (rmw_lock: every write holds it shared; RMW, truncate and
 *     size growth hold it exclusively, so that the stale head and tail
 *     blocks an RMW writes back cannot overwrite a concurrent write, and
 *     a size check followed by ftruncate cannot cut off a concurrent
 *     write that extended the file),
 *   - the sticky flush error (atomic).
 *
 * Semantics follow qemu's block/file-posix.c so that diskimg and qemu-img
 * see the same file the same way: same lock bytes, same block status, same
 * "first block" allocation on growth from zero, same error texts.
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
#include <unistd.h>
#include <linux/fs.h>

#include <diskimg/plugin.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char posix_schema_yaml[];

/* qemu's lock bytes: 100+i is held while we use permission i, 200+i while
 * we refuse to share it (block/file-posix.c RAW_LOCK_*_BASE). */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200
/* Permission bits that have lock bytes.  Bit 4 (graph-mod) was removed in
 * qemu 6.2 and is never locked by current qemu; locking it would make us
 * conflict with nothing and confuse old qemus, so we leave it alone. */
#define LOCKABLE_PERMS   (DISKIMG_PERM_ALL & ~(uint64_t)DISKIMG_PERM_GRAPH_MOD)
#define PERM_BITS        5

/* Largest transfer of one syscall (Linux caps at 0x7ffff000 anyway). */
#define MAX_SYSCALL_IO   ((size_t)1 << 30)
/* Size of bounce buffers for unaligned O_DIRECT requests and of zero
 * buffers for emulated write_zeroes / full preallocation. */
#define CHUNK            ((size_t)1 << 20)
/* diskimg_alloc_aligned guarantees this alignment. */
#define MAX_ALIGN        4096u
#define BATCH_THREADS    4

struct posix_handle {
    int fd;
    char *filename;
    diskimg_node *node;        /* the file node we serve, for block status */
    mode_t type;               /* S_IFREG, S_IFBLK or S_IFCHR */
    bool writable;
    bool direct;               /* O_DIRECT */
    bool dsync;                /* O_DSYNC: every write is durable */
    bool unsafe;               /* cache=unsafe: flushes are no-ops */
    bool use_lock;
    uint32_t req_align;        /* offset/length alignment; 1 when buffered */
    uint32_t mem_align;        /* buffer address alignment; 1 when buffered */

    GRWLock rmw_lock;          /* writes: shared; RMW, resize, growth: exclusive */
    gint flush_errno;          /* sticky fdatasync failure, atomic */

    GMutex perm_mutex;         /* guards the four fields below */
    uint64_t perm, unshared;   /* committed permissions */
    uint64_t locked_perm;      /* bits whose byte 100+i this fd holds */
    uint64_t locked_unshared;  /* bits whose byte 200+i this fd holds */

    GMutex batch_mutex;        /* guards lazy creation of pool and done */
    GThreadPool *pool;
    GAsyncQueue *done;
    GMutex reap_mutex;         /* one reaper at a time */
    gint inflight;             /* submitted, not yet reaped; atomic */
};

static const char *const perm_names[PERM_BITS] = {
    "consistent read", "write", "write unchanged", "resize", "change children",
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

/* A range must be representable as off_t: [off, off+len) within INT64_MAX. */
static bool range_ok(uint64_t off, uint64_t len)
{
    return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

static bool is_aligned(const struct posix_handle *h, const void *buf, uint64_t off,
                       uint64_t len)
{
    return (uintptr_t)buf % h->mem_align == 0 && off % h->req_align == 0 &&
           len % h->req_align == 0;
}

static int io_error(GError **errp, int err, const struct posix_handle *h, const char *what,
                    uint64_t off)
{
    diskimg_set_errno(errp, err, "Could not %s '%s' at offset %" PRIu64, what, h->filename,
                      off);
    return -1;
}

static int fstat_size(const struct posix_handle *h, int64_t *size)
{
    struct stat st;

    if (fstat(h->fd, &st) < 0)
        return -errno;
    *size = st.st_size;
    return 0;
}

static int do_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
    while (fallocate(fd, mode, (off_t)off, (off_t)len) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* ------------------------------------------------------------ raw syscalls */

/*
 * Reads until len bytes or EOF; returns the byte count or -errno.  Under
 * O_DIRECT the kernel ends a read short and unaligned only at EOF (a
 * partial completion stays block-aligned), and the next read would be
 * refused as misaligned, so such a short read is taken as EOF.
 */
static int64_t sys_pread_full(const struct posix_handle *h, void *buf, uint64_t len,
                              uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        size_t n = (size_t)MIN(len - done, MAX_SYSCALL_IO);
        ssize_t r = pread(h->fd, (char *)buf + done, n, (off_t)(off + done));

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (uint64_t)r;
        if (h->req_align > 1 && done % h->req_align != 0)
            break;
    }
    return (int64_t)done;
}

/* Writes all len bytes; returns 0 or -errno. */
static int sys_pwrite_full(const struct posix_handle *h, const void *buf, uint64_t len,
                           uint64_t off)
{
    uint64_t done = 0;

    while (done < len) {
        size_t n = (size_t)MIN(len - done, MAX_SYSCALL_IO);
        ssize_t r = pwrite(h->fd, (const char *)buf + done, n, (off_t)(off + done));

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ENOSPC;
        done += (uint64_t)r;
        /* An O_DIRECT write cut short mid-block cannot be resumed
         * (misaligned); it happens when the device or file system ran
         * out of space. */
        if (h->req_align > 1 && done < len && done % h->req_align != 0)
            return -ENOSPC;
    }
    return 0;
}

/* ------------------------------------------------------------------- read */

/* A bounce buffer large enough for the blocks covering the request, up to
 * CHUNK (the unit the bounce loops work in). */
static size_t bounce_size(const struct posix_handle *h, uint64_t len, uint64_t off)
{
    uint64_t head = off % h->req_align;

    return (size_t)MIN((uint64_t)CHUNK,
                       align_up(head + MIN(len, (uint64_t)CHUNK), h->req_align));
}

/* Unaligned O_DIRECT read: read the covering aligned blocks into a bounce
 * buffer, chunk by chunk, and copy the asked bytes out. */
static int bounce_read(const struct posix_handle *h, void *buf, uint64_t len, uint64_t off)
{
    const uint32_t a = h->req_align;
    uint8_t *bounce = diskimg_alloc_aligned(bounce_size(h, len, off));
    int ret = 0;

    if (!bounce)
        return -ENOMEM;
    while (len > 0) {
        uint64_t head = off % a;
        uint64_t n = MIN(len, CHUNK - head);
        uint64_t astart = off - head;
        uint64_t alen = align_up(head + n, a);
        int64_t r = sys_pread_full(h, bounce, alen, astart);

        if (r < 0) {
            ret = (int)r;
            break;
        }
        if ((uint64_t)r < alen)
            memset(bounce + r, 0, alen - (uint64_t)r);
        memcpy(buf, bounce + head, n);
        buf = (uint8_t *)buf + n;
        off += n;
        len -= n;
    }
    diskimg_free_aligned(bounce);
    return ret;
}

/* Whole-length read, zeroes past EOF; 0 or -errno. */
static int io_read(struct posix_handle *h, void *buf, uint64_t len, uint64_t off)
{
    int64_t r;

    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (!is_aligned(h, buf, off, len))
        return bounce_read(h, buf, len, off);
    r = sys_pread_full(h, buf, len, off);
    if (r < 0)
        return (int)r;
    if ((uint64_t)r < len)
        memset((uint8_t *)buf + r, 0, len - (uint64_t)r);
    return 0;
}

/* ------------------------------------------------------------------ write */

static int io_flush(struct posix_handle *h);

/* Reads one aligned block for a read-modify-write; zeroes past EOF. */
static int rmw_fill_block(const struct posix_handle *h, uint8_t *dst, uint64_t off)
{
    int64_t r = sys_pread_full(h, dst, h->req_align, off);

    if (r < 0)
        return (int)r;
    if ((uint64_t)r < h->req_align)
        memset(dst + r, 0, h->req_align - (uint64_t)r);
    return 0;
}

/* One chunk of an unaligned O_DIRECT write: n <= CHUNK - off % align. */
static int rmw_chunk(const struct posix_handle *h, uint8_t *bounce, const void *buf,
                     uint64_t n, uint64_t off)
{
    const uint32_t a = h->req_align;
    uint64_t head = off % a;
    uint64_t astart = off - head;
    uint64_t alen = align_up(head + n, a);
    uint64_t tail_block = alen - a;
    int ret;

    if (head != 0) {
        ret = rmw_fill_block(h, bounce, astart);
        if (ret < 0)
            return ret;
    }
    if ((head + n) % a != 0 && (tail_block != 0 || head == 0)) {
        ret = rmw_fill_block(h, bounce + tail_block, astart + tail_block);
        if (ret < 0)
            return ret;
    }
    memcpy(bounce + head, buf, n);
    return sys_pwrite_full(h, bounce, alen, astart);
}

/*
 * Unaligned O_DIRECT write; the caller holds rmw_lock exclusively, since
 * the head and tail blocks are read and written back whole and must not
 * race with another write to the same blocks.  Writing whole blocks can
 * push EOF to a block boundary; the file's size is put back to what a
 * buffered write would have produced.
 */
static int bounce_write(struct posix_handle *h, const void *buf, uint64_t len, uint64_t off)
{
    uint8_t *bounce = diskimg_alloc_aligned(bounce_size(h, len, off));
    int64_t old_size = -1;
    uint64_t end = off + len;
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
    if (old_size >= 0 && align_up(end, h->req_align) > MAX((uint64_t)old_size, end)) {
        if (ftruncate(h->fd, (off_t)MAX((uint64_t)old_size, end)) < 0 && ret == 0)
            ret = -errno;
    }
    diskimg_free_aligned(bounce);
    return ret;
}

/* A write with rmw_lock already held as needed (see io_write). */
static int write_locked(struct posix_handle *h, const void *buf, uint64_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    if (!is_aligned(h, buf, off, len))
        return bounce_write(h, buf, len, off);
    return sys_pwrite_full(h, buf, len, off);
}

static int io_write(struct posix_handle *h, const void *buf, uint64_t len, uint64_t off,
                    unsigned flags)
{
    int ret;

    if (!h->writable)
        return -EBADF;
    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (is_aligned(h, buf, off, len)) {
        g_rw_lock_reader_lock(&h->rmw_lock);
        ret = write_locked(h, buf, len, off);
        g_rw_lock_reader_unlock(&h->rmw_lock);
    } else {
        g_rw_lock_writer_lock(&h->rmw_lock);
        ret = write_locked(h, buf, len, off);
        g_rw_lock_writer_unlock(&h->rmw_lock);
    }
    if (ret == 0 && (flags & DISKIMG_WRITE_FUA))
        ret = io_flush(h);
    return ret;
}

/* ------------------------------------------------------------------ flush */

/*
 * After a failed fdatasync Linux may have marked dirty pages clean that
 * never reached the disk; a later fdatasync would "succeed" without
 * writing them.  Like qemu, a buffered handle therefore fails every later
 * flush with the first error.  O_DIRECT bypasses the page cache.
 */
static int io_flush(struct posix_handle *h)
{
    int sticky;

    if (h->unsafe)
        return 0;
    sticky = g_atomic_int_get(&h->flush_errno);
    if (sticky)
        return -sticky;
    while (fdatasync(h->fd) < 0) {
        int err = errno;

        if (err == EINTR)
            continue;
        /* Character devices such as /dev/null have nothing to sync. */
        if (h->type == S_IFCHR && (err == EINVAL || err == EROFS || err == ENOTSUP))
            return 0;
        if (!h->direct)
            g_atomic_int_set(&h->flush_errno, err);
        return -err;
    }
    return 0;
}

/* ------------------------------------------------------- zeroes and holes */

/* Writes zero buffers over [off, off+len).  With `locked`, the caller
 * holds rmw_lock exclusively (truncate) and the writes must not take it. */
static int write_zero_buffers(struct posix_handle *h, uint64_t off, uint64_t len, bool locked)
{
    size_t chunk = (size_t)MIN(len, (uint64_t)CHUNK);
    uint8_t *zeroes = diskimg_alloc_aligned(chunk);
    int ret = 0;

    if (!zeroes)
        return -ENOMEM;
    memset(zeroes, 0, chunk);
    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, chunk);

        ret = locked ? write_locked(h, zeroes, n, off) : io_write(h, zeroes, n, off, 0);
        off += n;
        len -= n;
    }
    diskimg_free_aligned(zeroes);
    return ret;
}

/*
 * Extends the file to at least `end`.  The size check and ftruncate are
 * done under rmw_lock held exclusively, and every write holds it shared,
 * so a write that extends the file meanwhile is never cut off.
 */
static int grow_to(struct posix_handle *h, uint64_t end)
{
    int64_t size;
    int ret;

    g_rw_lock_writer_lock(&h->rmw_lock);
    ret = fstat_size(h, &size);
    if (ret == 0 && (uint64_t)size < end && ftruncate(h->fd, (off_t)end) < 0)
        ret = -errno;
    g_rw_lock_writer_unlock(&h->rmw_lock);
    return ret;
}

static int io_punch_hole(struct posix_handle *h, uint64_t off, uint64_t len)
{
    if (!h->writable)
        return -EBADF;
    if (!range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    return do_fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

/* MAY_UNMAP on a regular file: punch the part inside the file, then grow
 * the file over the rest (a hole past the old EOF reads as zeroes too). */
static int zero_by_punching(struct posix_handle *h, uint64_t off, uint64_t len)
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

static bool unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL ||
           err == ENODEV || err == ESPIPE;
}

static int zero_range(struct posix_handle *h, uint64_t off, uint64_t len, unsigned flags)
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
    ret = do_fallocate(h->fd, FALLOC_FL_ZERO_RANGE, off, len);
    if (ret == 0 || !unsupported(-ret))
        return ret;
    if (h->type == S_IFREG) {
        int64_t size;

        ret = fstat_size(h, &size);
        if (ret < 0)
            return ret;
        /* Entirely past EOF: growing the file gives zeroes for free. */
        if (off >= (uint64_t)size)
            return grow_to(h, off + len);
    }
    if (flags & DISKIMG_WRITE_NO_FALLBACK)
        return -ENOTSUP;
    return write_zero_buffers(h, off, len, false);
}

static int io_write_zeroes(struct posix_handle *h, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = zero_range(h, off, len, flags);

    if (ret == 0 && len > 0 && (flags & DISKIMG_WRITE_FUA))
        ret = io_flush(h);
    return ret;
}

/* --------------------------------------------------------------- opening */

struct open_settings {
    int oflags;
    bool direct, unsafe;
    bool use_lock;
    bool lock_required;        /* locking=on */
};

static const diskimg_options *open_options(const struct diskimg_io_open_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_io_open_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

static const char *option_str(const diskimg_options *o, const char *key, const char *dflt)
{
    const char *v = o ? diskimg_options_get_str(o, key) : NULL;

    return v ? v : dflt;
}

static int parse_settings(const struct diskimg_io_open_args *args, struct open_settings *s,
                          GError **errp)
{
    const diskimg_options *o = open_options(args);
    const char *locking = option_str(o, "locking", "auto");
    const char *aio = option_str(o, "aio", "threads");
    bool rdwr = args->flags & (DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);

    memset(s, 0, sizeof(*s));
    /* O_NONBLOCK: opening a FIFO must never wait for a peer; it is
     * cleared again once the file is known to be a file or device. */
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
    /* posix serves every aio mode from its thread pool; keep qemu's rule
     * that native AIO only makes sense with O_DIRECT. */
    if (strcmp(aio, "native") == 0 && !s->direct) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "aio=native was specified, but it requires cache.direct=on, "
                    "which was not specified.");
        return -1;
    }
    s->lock_required = strcmp(locking, "on") == 0;
    s->use_lock = strcmp(locking, "off") != 0 && !(args->flags & DISKIMG_OPEN_NO_LOCK);
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

/*
 * Directories, FIFOs and sockets are refused with qemu's text for a
 * directory.  (qemu-img hangs forever on a FIFO; we never block.)  Block
 * and character devices are accepted, as qemu's host_device driver does.
 */
static int check_file_type(struct posix_handle *h, GError **errp)
{
    struct stat st;

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
    return 0;
}

static int clear_nonblock(struct posix_handle *h, GError **errp)
{
    int fl = fcntl(h->fd, F_GETFL);

    if (fl < 0 || fcntl(h->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        diskimg_set_errno(errp, errno, "Could not open '%s'", h->filename);
        return -1;
    }
    return 0;
}

/* A block device set read-only with blockdev(8) still opens O_RDWR; its
 * writes would fail later with EPERM, so refuse now (qemu does too). */
static int check_device_writable(struct posix_handle *h, GError **errp)
{
    int ro = 0;

    if (h->type != S_IFBLK || !h->writable)
        return 0;
    if (ioctl(h->fd, BLKROGET, &ro) < 0) {
        diskimg_set_errno(errp, errno, "The device is not writable");
        return -1;
    }
    if (ro) {
        diskimg_set_errno(errp, EACCES, "The device is not writable");
        return -1;
    }
    return 0;
}

/* True when an aligned read of len bytes at offset 0 is accepted.  Only
 * EINVAL means "misaligned"; any other error says nothing about it. */
static bool dio_read_ok(int fd, void *buf, size_t len, ssize_t *got)
{
    ssize_t r;

    do {
        r = pread(fd, buf, len, 0);
    } while (r < 0 && errno == EINTR);
    *got = r;
    return r >= 0 || errno != EINVAL;
}

/*
 * O_DIRECT alignment: the kernel's answer (statx DIOALIGN, Linux 6.1+),
 * else the logical sector size of a block device, else probing reads of
 * 512 then 4096 bytes.  A probe that hits EOF before the block proves
 * nothing (the kernel returns 0 without checking), so it falls back to
 * the safe 4096.
 */
static void probe_dio_alignment(struct posix_handle *h)
{
    static const uint32_t sizes[] = { 512, MAX_ALIGN };
    struct statx stx;
    unsigned int sector = 0;
    uint8_t *buf;

    if (statx(h->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0) {
        h->req_align = stx.stx_dio_offset_align;
        h->mem_align = MAX(stx.stx_dio_mem_align, 1u);
        return;
    }
    if (h->type == S_IFBLK && ioctl(h->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
        h->req_align = h->mem_align = sector;
        return;
    }
    h->req_align = h->mem_align = MAX_ALIGN;
    buf = diskimg_alloc_aligned(MAX_ALIGN);
    if (!buf)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        ssize_t got;

        if (dio_read_ok(h->fd, buf, sizes[i], &got)) {
            if (got == (ssize_t)sizes[i])
                h->req_align = h->mem_align = sizes[i];
            break;
        }
    }
    diskimg_free_aligned(buf);
}

static int check_dio_alignment(struct posix_handle *h, GError **errp)
{
    probe_dio_alignment(h);
    /* Bounce buffers come from diskimg_alloc_aligned (4096-aligned). */
    if (h->req_align > MAX_ALIGN || h->mem_align > MAX_ALIGN ||
        (h->req_align & (h->req_align - 1)) || (h->mem_align & (h->mem_align - 1))) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Could not open '%s': unsupported O_DIRECT alignment %" PRIu32
                    " (try a cache mode without O_DIRECT)", h->filename, h->req_align);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- locks */

static int ofd_setlk(int fd, int64_t byte, short type)
{
    struct flock fl = { .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = type };

    while (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* 0 when nobody else (another open file description) holds the byte. */
static int ofd_test(int fd, int64_t byte)
{
    struct flock fl = { .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = F_WRLCK };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

/* Locks (read lock) or unlocks byte base+i so that the held set becomes
 * `want`; with !unlock, bytes are only added (qemu's prepare step). */
static int apply_lock_set(struct posix_handle *h, int base, uint64_t want, uint64_t *held,
                          bool unlock, GError **errp)
{
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = 0;

        if ((want & bit) && !(*held & bit)) {
            ret = ofd_setlk(h->fd, base + i, F_RDLCK);
            if (ret == 0)
                *held |= bit;
            else if (ret == -EAGAIN || ret == -EACCES)
                g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED,
                            "Failed to lock byte %d", base + i);
            else
                diskimg_set_errno(errp, -ret, "Failed to lock byte %d", base + i);
        } else if (unlock && (*held & bit) && !(want & bit)) {
            ret = ofd_setlk(h->fd, base + i, F_UNLCK);
            if (ret == 0)
                *held &= ~bit;
            else
                diskimg_set_errno(errp, -ret, "Failed to unlock byte %d", base + i);
        }
        if (ret < 0)
            return -1;
    }
    return 0;
}

static int apply_locks(struct posix_handle *h, uint64_t perm, uint64_t unshared, bool unlock,
                       GError **errp)
{
    if (apply_lock_set(h, LOCK_PERM_BASE, perm, &h->locked_perm, unlock, errp) < 0)
        return -1;
    return apply_lock_set(h, LOCK_SHARED_BASE, unshared, &h->locked_unshared, unlock, errp);
}

static int lock_conflict(const struct posix_handle *h, int ret, const char *fmt_shared,
                         int bit, GError **errp)
{
    if (ret == -EAGAIN || ret == -EACCES) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED,
                    "Failed to get %s\"%s\" lock: Is another process using the image [%s]?",
                    fmt_shared, perm_names[bit], h->filename);
    } else {
        diskimg_set_errno(errp, -ret, "Failed to get %s\"%s\" lock", fmt_shared,
                          perm_names[bit]);
    }
    return -1;
}

/* Others must not hold "unshared" bytes for what we use, nor "use" bytes
 * for what we refuse to share (qemu's raw_check_lock_bytes). */
static int check_locks(const struct posix_handle *h, uint64_t perm, uint64_t shared,
                       GError **errp)
{
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = (perm & bit) ? ofd_test(h->fd, LOCK_SHARED_BASE + i) : 0;

        if (ret < 0)
            return lock_conflict(h, ret, "", i, errp);
    }
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = !(shared & bit) ? ofd_test(h->fd, LOCK_PERM_BASE + i) : 0;

        if (ret < 0)
            return lock_conflict(h, ret, "shared ", i, errp);
    }
    return 0;
}

/* Takes the new locks on top of the old ones, checks for conflicts, then
 * drops what is no longer needed; on failure the old state is restored. */
static int set_permissions(struct posix_handle *h, uint64_t perm, uint64_t shared,
                           GError **errp)
{
    uint64_t unshared;
    int ret;

    perm &= LOCKABLE_PERMS;
    shared |= ~LOCKABLE_PERMS;
    unshared = ~shared & LOCKABLE_PERMS;
    g_mutex_lock(&h->perm_mutex);
    ret = apply_locks(h, h->locked_perm | perm, h->locked_unshared | unshared, false, errp);
    if (ret == 0)
        ret = check_locks(h, perm, shared, errp);
    if (ret == 0) {
        h->perm = perm;
        h->unshared = unshared;
    }
    /* Unlocking cannot conflict; a failure here is not worth reporting
     * over the real outcome, and the bytes go away on close anyway. */
    apply_locks(h, h->perm, h->unshared, true, NULL);
    g_mutex_unlock(&h->perm_mutex);
    return ret;
}

static int probe_ofd_support(struct posix_handle *h, bool required, GError **errp)
{
    int ret = ofd_test(h->fd, LOCK_PERM_BASE);

    if (ret == 0 || ret == -EAGAIN)
        return 0;
    if (required) {
        diskimg_set_errno(errp, -ret, "Could not open '%s': OFD locking is unavailable",
                          h->filename);
        return -1;
    }
    h->use_lock = false;  /* locking=auto without OFD locks: no locking */
    return 0;
}

/* --------------------------------------------------- create and truncate */

/*
 * Truncation at open (image creation) follows qemu's raw_co_create: take
 * write+resize without sharing resize, check nobody objects, and only
 * then discard the old contents — never truncate an image in use.
 */
static int truncate_on_open(struct posix_handle *h, GError **errp)
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

/* nocow (btrfs) only works on an empty file, which is why it is applied
 * at creation; qemu ignores failures. */
static void apply_nocow(struct posix_handle *h)
{
    int attr = 0;

    if (ioctl(h->fd, FS_IOC_GETFLAGS, &attr) == 0) {
        attr |= FS_NOCOW_FL;
        (void)ioctl(h->fd, FS_IOC_SETFLAGS, &attr);
    }
}

/* The extent size hint (XFS) is best effort; like qemu we only warn, and
 * only when the user asked for it explicitly. */
static int apply_extent_size_hint(struct posix_handle *h, const diskimg_options *o,
                                  GError **errp)
{
    bool explicit = diskimg_options_has(o, "extent_size_hint");
    uint64_t hint = diskimg_options_get_uint(o, "extent_size_hint", UINT64_C(1) << 20);
    struct fsxattr attr;
    int ret;

    if (hint > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Extent size hint is too large");
        return -1;
    }
    if (hint == 0)
        return 0;
    ret = ioctl(h->fd, FS_IOC_FSGETXATTR, &attr);
    if (ret == 0) {
        attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
        attr.fsx_extsize = (uint32_t)hint;
        ret = ioctl(h->fd, FS_IOC_FSSETXATTR, &attr);
    }
    if (ret < 0 && explicit)
        diskimg_warn("Failed to set extent size hint: %s", g_strerror(errno));
    return 0;
}

/* The file-level create options (nocow, extent_size_hint), when the core
 * passed them along with DISKIMG_OPEN_CREATE. */
static int apply_create_options(struct posix_handle *h, const diskimg_options *o,
                                GError **errp)
{
    if (!o || h->type != S_IFREG)
        return 0;
    if (diskimg_options_has(o, "nocow") && diskimg_options_get_bool(o, "nocow", false))
        apply_nocow(h);
    return apply_extent_size_hint(h, o, errp);
}

/* ------------------------------------------------------------ open/close */

static void posix_close(void *opaque);

static struct posix_handle *handle_new(const char *filename)
{
    struct posix_handle *h = g_new0(struct posix_handle, 1);

    h->fd = -1;
    h->filename = g_strdup(filename);
    h->req_align = h->mem_align = 1;
    g_rw_lock_init(&h->rmw_lock);
    g_mutex_init(&h->perm_mutex);
    g_mutex_init(&h->batch_mutex);
    g_mutex_init(&h->reap_mutex);
    return h;
}

static int open_steps(struct posix_handle *h, const struct diskimg_io_open_args *args,
                      const struct open_settings *s, GError **errp)
{
    if (check_file_type(h, errp) < 0 || clear_nonblock(h, errp) < 0 ||
        check_device_writable(h, errp) < 0)
        return -1;
    if (h->direct && check_dio_alignment(h, errp) < 0)
        return -1;
    if (h->use_lock && probe_ofd_support(h, s->lock_required, errp) < 0)
        return -1;
    if ((args->flags & DISKIMG_OPEN_TRUNCATE) && truncate_on_open(h, errp) < 0)
        return -1;
    if ((args->flags & DISKIMG_OPEN_CREATE) &&
        apply_create_options(h, open_options(args), errp) < 0)
        return -1;
    return 0;
}

static void *posix_open(const struct diskimg_io_open_args *args, GError **errp)
{
    struct open_settings s;
    struct posix_handle *h;

    if (!args || !args->filename) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "No filename given");
        return NULL;
    }
    if (parse_settings(args, &s, errp) < 0)
        return NULL;
    h = handle_new(args->filename);
    h->node = args->node;
    h->writable = (s.oflags & O_ACCMODE) == O_RDWR;
    h->direct = s.direct;
    h->unsafe = s.unsafe;
    h->dsync = (s.oflags & O_DSYNC) != 0;
    h->use_lock = s.use_lock;
    h->fd = open_fd(args->filename, s.oflags, errp);
    if (h->fd < 0 || open_steps(h, args, &s, errp) < 0) {
        posix_close(h);
        return NULL;
    }
    return h;
}

static void posix_close(void *opaque)
{
    struct posix_handle *h = opaque;

    if (!h)
        return;
    /* Let queued batch requests finish: their buffers belong to callers
     * who may still be waiting to reap them. */
    if (h->pool)
        g_thread_pool_free(h->pool, FALSE, TRUE);
    if (h->done)
        g_async_queue_unref(h->done);
    if (h->fd >= 0)
        close(h->fd);  /* also releases every OFD lock of this fd */
    g_rw_lock_clear(&h->rmw_lock);
    g_mutex_clear(&h->perm_mutex);
    g_mutex_clear(&h->batch_mutex);
    g_mutex_clear(&h->reap_mutex);
    g_free(h->filename);
    g_free(h);
}

/* ------------------------------------------------------ data callbacks */

static int posix_pread(void *opaque, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct posix_handle *h = opaque;
    int ret = io_read(h, buf, len, offset);

    return ret < 0 ? io_error(errp, -ret, h, "read", offset) : 0;
}

static int posix_pwrite(void *opaque, const void *buf, uint64_t len, uint64_t offset,
                        unsigned flags, GError **errp)
{
    struct posix_handle *h = opaque;
    int ret = io_write(h, buf, len, offset, flags);

    return ret < 0 ? io_error(errp, -ret, h, "write", offset) : 0;
}

static int posix_flush(void *opaque, GError **errp)
{
    struct posix_handle *h = opaque;
    int ret = io_flush(h);

    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Could not flush '%s'", h->filename);
        return -1;
    }
    return 0;
}

static int posix_write_zeroes(void *opaque, uint64_t offset, uint64_t len, unsigned flags,
                              GError **errp)
{
    struct posix_handle *h = opaque;
    int ret = io_write_zeroes(h, offset, len, flags);

    return ret < 0 ? io_error(errp, -ret, h, "write zeroes to", offset) : 0;
}

static int posix_punch_hole(void *opaque, uint64_t offset, uint64_t len, GError **errp)
{
    struct posix_handle *h = opaque;
    int ret = io_punch_hole(h, offset, len);

    return ret < 0 ? io_error(errp, -ret, h, "discard in", offset) : 0;
}

static int posix_allocate(void *opaque, uint64_t offset, uint64_t len, GError **errp)
{
    struct posix_handle *h = opaque;
    int ret;

    if (!h->writable)
        ret = -EBADF;
    else if (!range_ok(offset, len))
        ret = -EINVAL;
    else
        ret = len ? do_fallocate(h->fd, 0, offset, len) : 0;
    return ret < 0 ? io_error(errp, -ret, h, "allocate in", offset) : 0;
}

/* ------------------------------------------------------------ batch path */

static void batch_worker(gpointer data, gpointer user_data)
{
    struct diskimg_io_request *req = data;
    struct posix_handle *h = user_data;

    switch (req->op) {
    case DISKIMG_IO_READ:
        req->result = io_read(h, req->buf, req->len, req->offset);
        break;
    case DISKIMG_IO_WRITE:
        req->result = io_write(h, req->buf, req->len, req->offset, req->flags);
        break;
    case DISKIMG_IO_FLUSH:
        req->result = io_flush(h);
        break;
    case DISKIMG_IO_WRITE_ZEROES:
        req->result = io_write_zeroes(h, req->offset, req->len, req->flags);
        break;
    default:
        req->result = -EINVAL;
        break;
    }
    g_async_queue_push(h->done, req);
}

static int batch_start(struct posix_handle *h, GError **errp)
{
    int ret = 0;

    g_mutex_lock(&h->batch_mutex);
    if (!h->pool) {
        GError *err = NULL;

        h->done = g_async_queue_new();
        h->pool = g_thread_pool_new(batch_worker, h, BATCH_THREADS, FALSE, &err);
        if (!h->pool) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                        "Could not start I/O threads: %s", err->message);
            g_error_free(err);
            g_async_queue_unref(h->done);
            h->done = NULL;
            ret = -1;
        }
    }
    g_mutex_unlock(&h->batch_mutex);
    return ret;
}

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

static int posix_submit(void *opaque, struct diskimg_io_request *const *reqs, unsigned n,
                        GError **errp)
{
    struct posix_handle *h = opaque;

    for (unsigned i = 0; i < n; i++) {
        if (!reqs[i] || !request_valid(reqs[i])) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "Invalid I/O request %u of %u", i, n);
            return -1;
        }
    }
    if (n == 0)
        return 0;
    if (batch_start(h, errp) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        reqs[i]->result = 0;
        g_atomic_int_inc(&h->inflight);
        /* A non-exclusive pool queues the request before it tries to start
         * a thread, so a failure to start one only delays the request. */
        g_thread_pool_push(h->pool, reqs[i], NULL);
    }
    return 0;
}

static int posix_reap(void *opaque, struct diskimg_io_request **done, unsigned max,
                      unsigned min, GError **errp)
{
    struct posix_handle *h = opaque;
    GAsyncQueue *queue;
    unsigned n = 0;
    gpointer req;

    (void)errp;  /* per-request errors travel in each request's result */
    g_mutex_lock(&h->batch_mutex);
    queue = h->done;
    g_mutex_unlock(&h->batch_mutex);
    if (max == 0 || !queue)
        return 0;
    g_mutex_lock(&h->reap_mutex);
    /* Never wait for more than is actually in flight. */
    min = MIN(MIN(min, max), (unsigned)g_atomic_int_get(&h->inflight));
    while (n < min)
        done[n++] = g_async_queue_pop(queue);
    while (n < max && (req = g_async_queue_try_pop(queue)) != NULL)
        done[n++] = req;
    g_atomic_int_add(&h->inflight, -(gint)n);
    g_mutex_unlock(&h->reap_mutex);
    return (int)n;
}

/* -------------------------------------------------------------- metadata */

static int64_t device_size(const struct posix_handle *h)
{
    uint64_t bytes;
    off_t end;

    if (h->type == S_IFBLK && ioctl(h->fd, BLKGETSIZE64, &bytes) == 0)
        return bytes > (uint64_t)INT64_MAX ? -EOVERFLOW : (int64_t)bytes;
    end = lseek(h->fd, 0, SEEK_END);
    return end < 0 ? -errno : (int64_t)end;
}

static int64_t current_size(const struct posix_handle *h)
{
    int64_t size;
    int ret;

    if (h->type != S_IFREG)
        return device_size(h);
    ret = fstat_size(h, &size);
    return ret < 0 ? ret : size;
}

static int64_t posix_get_size(void *opaque, GError **errp)
{
    struct posix_handle *h = opaque;
    int64_t size = current_size(h);

    if (size < 0) {
        diskimg_set_errno(errp, (int)-size, "Could not get the size of '%s'", h->filename);
        return -1;
    }
    return size;
}

static int64_t posix_allocated_size(void *opaque, GError **errp)
{
    struct posix_handle *h = opaque;
    struct stat st;

    if (fstat(h->fd, &st) < 0) {
        diskimg_set_errno(errp, errno, "Could not stat '%s'", h->filename);
        return -1;
    }
    return (int64_t)st.st_blocks * 512;
}

static uint32_t posix_alignment(void *opaque)
{
    struct posix_handle *h = opaque;

    return MAX(h->req_align, h->mem_align);
}

/* ---------------------------------------------------------- block status */

/*
 * qemu's find_allocation: whether `start` lies in data or in a hole, and
 * where that extent ends.  -ENXIO: in the trailing hole or past EOF.
 */
static int find_allocation(int fd, uint64_t start, uint64_t *data, uint64_t *hole)
{
    off_t offs = lseek(fd, (off_t)start, SEEK_DATA);

    if (offs < 0)
        return -errno;
    if ((uint64_t)offs < start)
        return -EIO;  /* a broken SEEK_DATA; do not trust it */
    if ((uint64_t)offs > start) {
        *hole = start;
        *data = (uint64_t)offs;
        return 0;
    }
    offs = lseek(fd, (off_t)start, SEEK_HOLE);
    if (offs < 0)
        return -errno;
    if ((uint64_t)offs < start)
        return -EIO;
    if ((uint64_t)offs == start)
        return -EBUSY;  /* the data was punched out between the calls */
    *data = start;
    *hole = (uint64_t)offs;
    return 0;
}

static int posix_block_status(void *opaque, uint64_t offset, uint64_t len,
                              struct diskimg_extent *ext, GError **errp)
{
    struct posix_handle *h = opaque;
    int64_t size = current_size(h);
    uint64_t data = 0, hole = 0;
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
    /* Past EOF the file reads as zeroes. */
    if (offset >= (uint64_t)size) {
        ext->flags = DISKIMG_BS_ZERO | DISKIMG_BS_OFFSET_VALID;
        ext->length = len;
        return 0;
    }
    len = MIN(len, (uint64_t)size - offset);
    ret = h->type == S_IFREG ? find_allocation(h->fd, offset, &data, &hole) : -ENOTSUP;
    if (ret == -ENXIO) {
        ext->flags = DISKIMG_BS_ZERO;              /* trailing hole */
        ext->length = len;
    } else if (ret < 0) {
        ext->flags = DISKIMG_BS_DATA;              /* no information: no holes */
        ext->length = len;
    } else if (data == offset) {
        ext->flags = DISKIMG_BS_DATA;
        ext->length = MIN(len, hole - offset);
    } else {
        ext->flags = DISKIMG_BS_ZERO;
        ext->length = MIN(len, data - offset);
    }
    ext->flags |= DISKIMG_BS_OFFSET_VALID;
    return 0;
}

/* ------------------------------------------------------------- truncate */

/* Writes zeroes over the first block so that later O_DIRECT alignment
 * probing reads real data (qemu's allocate_first_block); best effort.
 * Called from truncate, which holds rmw_lock exclusively. */
static void allocate_first_block(struct posix_handle *h, uint64_t size)
{
    uint64_t n = MIN(size < MAX_ALIGN ? 512u : MAX_ALIGN, size);
    uint8_t *zeroes = diskimg_alloc_aligned(MAX_ALIGN);

    if (!zeroes)
        return;
    memset(zeroes, 0, MAX_ALIGN);
    (void)write_locked(h, zeroes, n, 0);
    diskimg_free_aligned(zeroes);
}

static int grow_file(struct posix_handle *h, uint64_t cur, uint64_t size,
                     enum diskimg_prealloc prealloc, GError **errp)
{
    int ret = 0;

    switch (prealloc) {
    case DISKIMG_PREALLOC_OFF:
    case DISKIMG_PREALLOC_METADATA:   /* a plain file has no metadata */
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
        /* Knowing the final size first lets the file system allocate
         * fewer, larger extents. */
        if (ftruncate(h->fd, (off_t)size) < 0)
            ret = -errno;
        if (ret == 0)
            ret = write_zero_buffers(h, cur, size - cur, true);
        if (ret == 0 && !h->unsafe && fdatasync(h->fd) < 0)
            ret = -errno;
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

/* Devices keep their size: shrinking views are fine unless the caller asks
 * for an exact shrink, growing never is (qemu's raw_co_truncate). */
static int truncate_device(struct posix_handle *h, uint64_t size,
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

static int truncate_file(struct posix_handle *h, uint64_t size, enum diskimg_prealloc prealloc,
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
    if (size <= (uint64_t)cur) {
        if (size < (uint64_t)cur && ftruncate(h->fd, (off_t)size) < 0) {
            diskimg_set_errno(errp, errno, "Failed to resize the file");
            return -1;
        }
        return 0;
    }
    if (grow_file(h, (uint64_t)cur, size, prealloc, errp) < 0) {
        /* Leave the file as we found it (qemu does the same). */
        if (ftruncate(h->fd, (off_t)cur) < 0)
            diskimg_warn("Failed to restore old file length of '%s': %s", h->filename,
                         g_strerror(errno));
        return -1;
    }
    return 0;
}

static int posix_truncate(void *opaque, uint64_t size, enum diskimg_prealloc prealloc,
                          unsigned flags, GError **errp)
{
    struct posix_handle *h = opaque;
    int ret;

    if (!h->writable) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "Block node is read-only");
        return -1;
    }
    if (size > (uint64_t)INT64_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Image size too large: %" PRIu64, size);
        return -1;
    }
    if (h->type != S_IFREG)
        return truncate_device(h, size, prealloc, flags, errp);
    /* Exclusive against unaligned O_DIRECT writes, which restore EOF. */
    g_rw_lock_writer_lock(&h->rmw_lock);
    ret = truncate_file(h, size, prealloc, flags, errp);
    g_rw_lock_writer_unlock(&h->rmw_lock);
    return ret;
}

/* ----------------------------------------------------------- copy_range */

static bool copy_unsupported(int err)
{
    return err == EXDEV || err == ENOSYS || err == EINVAL || err == EOPNOTSUPP ||
           err == ENOTSUP || err == EBADF || err == ETXTBSY;
}

static int64_t posix_copy_range(void *src_opaque, uint64_t src_offset, void *dst_opaque,
                                uint64_t dst_offset, uint64_t len, GError **errp)
{
    struct posix_handle *src = src_opaque, *dst = dst_opaque;
    uint64_t done = 0;

    if (!dst->writable || !range_ok(src_offset, len) || !range_ok(dst_offset, len))
        return 0;  /* let the caller's read/write path report it */
    while (done < len) {
        loff_t in = (loff_t)(src_offset + done), out = (loff_t)(dst_offset + done);
        ssize_t r = copy_file_range(src->fd, &in, dst->fd, &out,
                                    (size_t)MIN(len - done, MAX_SYSCALL_IO), 0);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (done > 0 || copy_unsupported(errno))
                break;  /* report what was copied; the caller does the rest */
            return io_error(errp, errno, dst, "copy into", dst_offset);
        }
        if (r == 0)
            break;  /* source EOF */
        done += (uint64_t)r;
    }
    /* copy_file_range may go through the page cache even for O_DSYNC or
     * O_DIRECT descriptors; keep the cache mode's durability promise. */
    if (done > 0 && dst->dsync) {
        int ret = io_flush(dst);

        if (ret < 0)
            return io_error(errp, -ret, dst, "flush", dst_offset);
    }
    return (int64_t)done;
}

/* ------------------------------------------------------------ lock, remove */

static int posix_lock(void *opaque, uint64_t perm, uint64_t shared, GError **errp)
{
    struct posix_handle *h = opaque;

    if (!h->use_lock)
        return 0;
    return set_permissions(h, perm, shared, errp);
}

static int posix_remove(const char *filename, GError **errp)
{
    if (unlink(filename) < 0 && errno != ENOENT) {
        diskimg_set_errno(errp, errno, "Could not delete '%s'", filename);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ descriptor */

static const struct diskimg_io_ops posix_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .submit = posix_submit,
    .reap = posix_reap,
    .flush = posix_flush,
    .get_size = posix_get_size,
    .allocated_size = posix_allocated_size,
    .truncate = posix_truncate,
    .allocate = posix_allocate,
    .punch_hole = posix_punch_hole,
    .write_zeroes = posix_write_zeroes,
    .block_status = posix_block_status,
    .copy_range = posix_copy_range,
    .lock = posix_lock,
    .alignment = posix_alignment,
    .remove = posix_remove,
};

static const struct diskimg_plugin posix_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_IO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "posix",
    .version = PLUGIN_VERSION,
    .summary = "Files and host devices through POSIX system calls",
    .schema = posix_schema_yaml,
    .capabilities = 0,
    .ops = &posix_ops,
};

DISKIMG_PLUGIN_DEFINE(posix_plugin)
