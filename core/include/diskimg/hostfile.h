/* SPDX-License-Identifier: MIT */
/*
 * hostfile.h — host files (regular files and host devices) for I/O plugins.
 *
 * An I/O plugin that serves files of the host must treat them exactly as
 * qemu's block/file-posix.c does, or diskimg and qemu-img would see one
 * file differently: same image-lock bytes, same open errors, same O_DIRECT
 * alignment, same block status, same truncate and zeroing rules.  That
 * logic lives here once.  A plugin keeps only its data path and hands the
 * library a few callbacks (struct diskimg_hostfile_callbacks); everything
 * else is built on them.  docs/plugin-guide.md §8 shows a whole plugin.
 *
 * Use, in a plugin's diskimg_io_ops:
 *   open:   diskimg_hostfile_parse_settings(), the plugin's own checks and
 *           setup, then diskimg_hostfile_open().  The plugin's handle must
 *           start with the returned `struct diskimg_hostfile *`.
 *   ops:    DISKIMG_HOSTFILE_IO_OPS fills every callback but open, close,
 *           submit and reap; the batch path may use
 *           diskimg_hostfile_check_requests() and
 *           diskimg_hostfile_run_request().
 *   close:  the plugin's own teardown, then diskimg_hostfile_close().
 *
 * Conventions: the diskimg_hostfile_op_* functions are io callbacks
 * (GError, -1 on failure).  The others return 0 or a negative errno, the
 * form batch requests carry in `result`.  Every function may run
 * concurrently with any other on one host file (thread model PARALLEL),
 * provided the plugin's callbacks may.
 *
 * ABI: the structs below only grow at the end.  The core allocates struct
 * diskimg_hostfile and sets its struct_size; plugins allocate the other
 * two and set theirs, and the core reads nothing beyond it.
 *
 * This header is MIT licensed so that plugins of any licence may use it.
 */
#ifndef DISKIMG_HOSTFILE_H
#define DISKIMG_HOSTFILE_H

#include <sys/types.h>
#include <diskimg/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the open arguments ask for, in open(2) terms. */
struct diskimg_hostfile_settings {
    uint32_t struct_size;      /* sizeof(struct diskimg_hostfile_settings) */
    int oflags;                /* access mode, O_CREAT, O_DIRECT, O_DSYNC... */
    bool direct;               /* cache=none or directsync: O_DIRECT */
    bool unsafe;               /* cache=unsafe: flushes are no-ops */
    bool use_lock;             /* take image locks (locking=auto/on, no NO_LOCK) */
    bool lock_required;        /* locking=on: no OFD locks is an error */
};

/*
 * An open host file.  Read-only for plugins; valid until
 * diskimg_hostfile_close().
 */
struct diskimg_hostfile {
    uint32_t struct_size;      /* as the core was built; check before newer fields */
    int fd;
    const char *filename;
    diskimg_node *node;        /* the file node served; block status names it */
    mode_t type;               /* S_IFREG, S_IFBLK or S_IFCHR */
    bool writable;             /* opened O_RDWR */
    bool direct;               /* O_DIRECT */
    bool dsync;                /* O_DSYNC: every write is durable */
    bool unsafe;               /* cache=unsafe: flushes are no-ops */
    bool use_lock;             /* image locking active (OFD locks work) */
    uint32_t req_align;        /* offset and length alignment; 1 when buffered */
    uint32_t mem_align;        /* buffer address alignment; 1 when buffered */
};

/*
 * The plugin's data path.  Each returns 0 or a negative errno; `opaque` is
 * what the plugin passed to diskimg_hostfile_open().  Buffers, offsets and
 * lengths given to read, write and write_held suit the alignment.
 *
 * The write exclusion: an unaligned O_DIRECT write is a read-modify-write
 * of whole blocks, and growing the file is a size check followed by
 * ftruncate; neither may overlap any other write.  `write` holds the
 * plugin's exclusion shared while the data is written; the library takes
 * it exclusively (lock_exclusive) around RMW, growth and truncate.
 */
struct diskimg_hostfile_callbacks {
    uint32_t struct_size;      /* sizeof(struct diskimg_hostfile_callbacks) */

    /* Required.  Reads len bytes at off in full; zeroes past EOF. */
    int (*read)(void *opaque, void *buf, uint64_t len, uint64_t off);
    /* Required.  An ordinary write of len bytes at off in full, holding the
     * write exclusion shared; with DISKIMG_WRITE_FUA in flags the data is
     * durable on return. */
    int (*write)(void *opaque, const void *buf, uint64_t len, uint64_t off,
                 unsigned flags);
    /* Required.  The same for a caller that holds the exclusion
     * exclusively already: takes no lock, no flags. */
    int (*write_held)(void *opaque, const void *buf, uint64_t len, uint64_t off);
    /* Both or neither; NULL: the plugin needs no exclusion (its writes
     * never run concurrently). */
    void (*lock_exclusive)(void *opaque);
    void (*unlock_exclusive)(void *opaque);
    /* fallocate(2) as a write.  NULL: the library calls fallocate itself. */
    int (*fallocate)(void *opaque, int mode, uint64_t off, uint64_t len);
    /* fdatasync(2), its failure passed through
     * diskimg_hostfile_flush_result().  NULL: the library calls fdatasync. */
    int (*datasync)(void *opaque);
};

/* ------------------------------------------------------------- opening */

/* args->options, or NULL when the caller's args predate the field. */
DISKIMG_API const diskimg_options *diskimg_hostfile_options(
    const struct diskimg_io_open_args *args);

/* Fills *s (up to s->struct_size, which the caller sets) from the cache
 * mode, flags and `locking` option of args.  O_NONBLOCK is included so
 * that opening a FIFO never waits; diskimg_hostfile_open() clears it. */
DISKIMG_API int diskimg_hostfile_parse_settings(const struct diskimg_io_open_args *args,
                                                struct diskimg_hostfile_settings *s,
                                                GError **errp);

/*
 * Opens args->filename as qemu does: its error texts (and "filesystem does
 * not support O_DIRECT"); directories, FIFOs and sockets refused without
 * blocking; read-only block devices refused for writing; the O_DIRECT
 * alignment probed; OFD lock support probed (locking=auto goes without);
 * with DISKIMG_OPEN_TRUNCATE the file emptied only once the image locks
 * show nobody else uses it.  cb and opaque serve every later call.
 */
DISKIMG_API struct diskimg_hostfile *diskimg_hostfile_open(
    const struct diskimg_io_open_args *args, const struct diskimg_hostfile_settings *s,
    const struct diskimg_hostfile_callbacks *cb, void *opaque, GError **errp);

/* Drops the lock bytes (an io_uring holding a registered file can keep the
 * open file, and its locks, alive after close) and closes.  NULL is fine. */
DISKIMG_API void diskimg_hostfile_close(struct diskimg_hostfile *hf);

/* -------------------------------------------------------- data policy */

/* Whole-length read, zeroes past EOF; unaligned O_DIRECT requests are
 * bounced through aligned blocks. */
DISKIMG_API int diskimg_hostfile_read(struct diskimg_hostfile *hf, void *buf, uint64_t len,
                                      uint64_t off);
/* Whole-length write (DISKIMG_WRITE_FUA honoured); an unaligned O_DIRECT
 * write is a read-modify-write under the exclusion. */
DISKIMG_API int diskimg_hostfile_write(struct diskimg_hostfile *hf, const void *buf,
                                       uint64_t len, uint64_t off, unsigned flags);
/* qemu's zeroing ladder: with MAY_UNMAP punch a hole, else zero the range
 * (fallocate), else grow the file when the range lies past EOF, else,
 * unless NO_FALLBACK (-ENOTSUP), write zero buffers. */
DISKIMG_API int diskimg_hostfile_write_zeroes(struct diskimg_hostfile *hf, uint64_t off,
                                              uint64_t len, unsigned flags);

/*
 * Flushing.  After a failed fdatasync Linux may have marked dirty pages
 * clean that never reached the disk, so a later fdatasync would succeed
 * without writing them.  Like qemu, a buffered host file therefore fails
 * every later flush with the first error (the "sticky" flush error).
 */
/* Nothing with cache=unsafe, the sticky error if any, else a datasync. */
DISKIMG_API int diskimg_hostfile_flush(struct diskimg_hostfile *hf);
/* The sticky flush error (negative errno), or 0. */
DISKIMG_API int diskimg_hostfile_flush_error(struct diskimg_hostfile *hf);
/* Maps the result of a datasync: character devices with nothing to sync
 * succeed; other failures become sticky (not under O_DIRECT). */
DISKIMG_API int diskimg_hostfile_flush_result(struct diskimg_hostfile *hf, int res);

/* Errors that mean "this way of doing it is not available here" (fallocate
 * modes, io_uring opcodes): try the next way. */
DISKIMG_API bool diskimg_hostfile_unsupported(int err);

/* -------------------------------------------------------- batch path */

/* Fails with "Invalid I/O request I of N" unless every request is usable. */
DISKIMG_API int diskimg_hostfile_check_requests(struct diskimg_io_request *const *reqs,
                                                unsigned n, GError **errp);
/* Serves one request synchronously; returns its result. */
DISKIMG_API int diskimg_hostfile_run_request(struct diskimg_hostfile *hf,
                                             const struct diskimg_io_request *req);

/* Whether [off, off+len) is representable as off_t. */
static inline bool diskimg_hostfile_range_ok(uint64_t off, uint64_t len)
{
    return off <= (uint64_t)INT64_MAX && len <= (uint64_t)INT64_MAX - off;
}

/* Whether a transfer may go to the file as is (no bounce buffer). */
static inline bool diskimg_hostfile_is_aligned(const struct diskimg_hostfile *hf,
                                               const void *buf, uint64_t off, uint64_t len)
{
    return (uintptr_t)buf % hf->mem_align == 0 && off % hf->req_align == 0 &&
           len % hf->req_align == 0;
}

/* ------------------------------------------------------------ io ops */

/*
 * struct diskimg_io_ops callbacks.  `handle` is the plugin's handle, whose
 * first member must be the `struct diskimg_hostfile *` of the file.
 * Semantics and error texts are qemu's; see plugin.h for each callback.
 */
DISKIMG_API int diskimg_hostfile_op_pread(void *handle, void *buf, uint64_t len,
                                          uint64_t off, GError **errp);
DISKIMG_API int diskimg_hostfile_op_pwrite(void *handle, const void *buf, uint64_t len,
                                           uint64_t off, unsigned flags, GError **errp);
DISKIMG_API int diskimg_hostfile_op_flush(void *handle, GError **errp);
DISKIMG_API int64_t diskimg_hostfile_op_get_size(void *handle, GError **errp);
DISKIMG_API int64_t diskimg_hostfile_op_allocated_size(void *handle, GError **errp);
/* Devices keep their size; files grow with preallocation off, falloc or
 * full, and a file grown from empty gets its first block allocated (so
 * that O_DIRECT alignment probing reads real data later). */
DISKIMG_API int diskimg_hostfile_op_truncate(void *handle, uint64_t size,
                                             enum diskimg_prealloc prealloc, unsigned flags,
                                             GError **errp);
DISKIMG_API int diskimg_hostfile_op_allocate(void *handle, uint64_t off, uint64_t len,
                                             GError **errp);
DISKIMG_API int diskimg_hostfile_op_punch_hole(void *handle, uint64_t off, uint64_t len,
                                               GError **errp);
DISKIMG_API int diskimg_hostfile_op_write_zeroes(void *handle, uint64_t off, uint64_t len,
                                                 unsigned flags, GError **errp);
/* SEEK_DATA/SEEK_HOLE; devices and file systems without them are all data. */
DISKIMG_API int diskimg_hostfile_op_block_status(void *handle, uint64_t off, uint64_t len,
                                                 struct diskimg_extent *ext, GError **errp);
/* copy_file_range(2); 0 where the kernel cannot copy between the two. */
DISKIMG_API int64_t diskimg_hostfile_op_copy_range(void *src, uint64_t src_off, void *dst,
                                                   uint64_t dst_off, uint64_t len,
                                                   GError **errp);
/* qemu's image locking on OFD byte locks: byte 100+i held while permission
 * i is used, 200+i while it is not shared; a failed change leaves the
 * locks as they were. */
DISKIMG_API int diskimg_hostfile_op_lock(void *handle, uint64_t perm, uint64_t shared,
                                         GError **errp);
DISKIMG_API uint32_t diskimg_hostfile_op_alignment(void *handle);
DISKIMG_API int diskimg_hostfile_op_remove(const char *filename, GError **errp);

/* The designated initializers of the ops above, for a diskimg_io_ops. */
#define DISKIMG_HOSTFILE_IO_OPS                                 \
    .pread = diskimg_hostfile_op_pread,                         \
    .pwrite = diskimg_hostfile_op_pwrite,                       \
    .flush = diskimg_hostfile_op_flush,                         \
    .get_size = diskimg_hostfile_op_get_size,                   \
    .allocated_size = diskimg_hostfile_op_allocated_size,       \
    .truncate = diskimg_hostfile_op_truncate,                   \
    .allocate = diskimg_hostfile_op_allocate,                   \
    .punch_hole = diskimg_hostfile_op_punch_hole,               \
    .write_zeroes = diskimg_hostfile_op_write_zeroes,           \
    .block_status = diskimg_hostfile_op_block_status,           \
    .copy_range = diskimg_hostfile_op_copy_range,               \
    .lock = diskimg_hostfile_op_lock,                           \
    .alignment = diskimg_hostfile_op_alignment,                 \
    .remove = diskimg_hostfile_op_remove

#ifdef __cplusplus
}
#endif
#endif /* DISKIMG_HOSTFILE_H */
