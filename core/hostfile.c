/* SPDX-License-Identifier: MIT */
/*
 * hostfile.c — host files for I/O plugins (see diskimg/hostfile.h).
 *
 * Semantics follow qemu's block/file-posix.c so that diskimg and qemu-img
 * see the same file the same way: same lock bytes, same block status, same
 * "first block" allocation on growth from zero, same error texts.  The data
 * path is the plugin's: every read or write here goes through its
 * callbacks, and so does the write exclusion (see hostfile.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>

#include <diskimg/hostfile.h>
#include "internal.h"

/* qemu's lock bytes: 100+i is held while we use permission i, 200+i while
 * we refuse to share it (block/file-posix.c RAW_LOCK_*_BASE). */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200
#define PERM_BITS        5
/* Bit 4 (graph-mod) was removed in qemu 6.2 and is never locked by current
 * qemu; locking it would conflict with nothing and confuse old qemus. */
#define LOCKABLE_PERMS   (DISKIMG_PERM_ALL & ~(uint64_t)DISKIMG_PERM_GRAPH_MOD)

/* Largest transfer of one syscall (Linux caps at 0x7ffff000 anyway). */
#define MAX_SYSCALL_IO   ((size_t)1 << 30)
/* Size of bounce buffers for unaligned O_DIRECT requests and of zero
 * buffers for emulated zeroing and full preallocation. */
#define CHUNK            ((size_t)1 << 20)
/* diskimg_alloc_aligned's alignment: the largest O_DIRECT alignment we can
 * bounce for. */
#define MAX_ALIGN        4096u

/* The smallest structs a caller may hand us: the first version's. */
#define SETTINGS_MIN_SIZE \
    (offsetof(struct diskimg_hostfile_settings, lock_required) + sizeof(bool))
#define CALLBACKS_MIN_SIZE \
    (offsetof(struct diskimg_hostfile_callbacks, write_held) + \
     sizeof(((struct diskimg_hostfile_callbacks *)NULL)->write_held))

struct hostfile {
    struct diskimg_hostfile pub;     /* first: plugins hold &pub */
    /* The plugin's callbacks, zero-filled past its struct_size. */
    struct diskimg_hostfile_callbacks cb;
    void *opaque;
    gint flush_errno;                /* sticky datasync failure, atomic */

    GMutex perm_mutex;               /* guards the four fields below */
    uint64_t perm, unshared;         /* committed permissions */
    uint64_t locked_perm;            /* bits whose byte 100+i this fd holds */
    uint64_t locked_unshared;        /* bits whose byte 200+i this fd holds */
};

static const char *const perm_names[PERM_BITS] = {
    "consistent read", "write", "write unchanged", "resize", "change children",
};

/* ---------------------------------------------------------------- helpers */

static struct hostfile *priv(struct diskimg_hostfile *hf)
{
    return (struct hostfile *)hf;  /* pub is the first member */
}

/* The diskimg_hostfile_op_* receive the plugin's handle, which starts with
 * the pointer diskimg_hostfile_open() returned. */
static struct diskimg_hostfile *handle_file(void *handle)
{
    return *(struct diskimg_hostfile **)handle;
}

static inline uint64_t align_up(uint64_t v, uint32_t a)
{
    return (v + a - 1) / a * a;
}

static int io_error(GError **errp, int err, const struct diskimg_hostfile *hf,
                    const char *what, uint64_t off)
{
    diskimg_set_errno(errp, err, "Could not %s '%s' at offset %" PRIu64, what, hf->filename,
                      off);
    return -1;
}

static int fstat_size(const struct diskimg_hostfile *hf, int64_t *size)
{
    struct stat st;

    if (fstat(hf->fd, &st) < 0)
        return -errno;
    *size = st.st_size;
    return 0;
}

static void lock_exclusive(struct hostfile *p)
{
    if (p->cb.lock_exclusive)
        p->cb.lock_exclusive(p->opaque);
}

static void unlock_exclusive(struct hostfile *p)
{
    if (p->cb.unlock_exclusive)
        p->cb.unlock_exclusive(p->opaque);
}

static int host_fallocate(struct hostfile *p, int mode, uint64_t off, uint64_t len)
{
    if (p->cb.fallocate)
        return p->cb.fallocate(p->opaque, mode, off, len);
    while (fallocate(p->pub.fd, mode, (off_t)off, (off_t)len) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

bool diskimg_hostfile_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL ||
           err == ENODEV || err == ESPIPE;
}

/* --------------------------------------------------------------- settings */

const diskimg_options *diskimg_hostfile_options(const struct diskimg_io_open_args *args)
{
    if (!args || args->struct_size < offsetof(struct diskimg_io_open_args, options) +
                                     sizeof(args->options))
        return NULL;
    return args->options;
}

/* Misuse by a plugin is reported like any other error: the core turns it
 * into a message rather than crashing the program. */
static int check_open_inputs(const struct diskimg_io_open_args *args,
                             const struct diskimg_hostfile_settings *s, GError **errp)
{
    if (!args || !args->filename) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "No filename given");
        return -1;
    }
    if (!s || s->struct_size < SETTINGS_MIN_SIZE) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid host file settings for '%s'", args->filename);
        return -1;
    }
    return 0;
}

static const char *option_str(const diskimg_options *o, const char *key, const char *dflt)
{
    const char *v = o ? diskimg_options_get_str(o, key) : NULL;

    return v ? v : dflt;
}

static int apply_cache_mode(enum diskimg_cache cache, struct diskimg_hostfile_settings *s,
                            GError **errp)
{
    switch (cache) {
    case DISKIMG_CACHE_NONE:         s->direct = true; break;
    case DISKIMG_CACHE_DIRECTSYNC:   s->direct = true; s->oflags |= O_DSYNC; break;
    case DISKIMG_CACHE_WRITETHROUGH: s->oflags |= O_DSYNC; break;
    case DISKIMG_CACHE_UNSAFE:       s->unsafe = true; break;
    case DISKIMG_CACHE_WRITEBACK:    break;
    default:
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Invalid cache mode %d",
                    (int)cache);
        return -1;
    }
    if (s->direct)
        s->oflags |= O_DIRECT;
    return 0;
}

int diskimg_hostfile_parse_settings(const struct diskimg_io_open_args *args,
                                    struct diskimg_hostfile_settings *out, GError **errp)
{
    struct diskimg_hostfile_settings s = { .struct_size = sizeof(s) };
    const char *locking;
    uint32_t out_size;
    bool rdwr;

    if (check_open_inputs(args, out, errp) < 0)
        return -1;
    locking = option_str(diskimg_hostfile_options(args), "locking", "auto");
    rdwr = args->flags & (DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);
    /* O_NONBLOCK: opening a FIFO must never wait for a peer; it is cleared
     * again once the file is known to be a file or a device. */
    s.oflags = (rdwr ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK;
    if (args->flags & DISKIMG_OPEN_CREATE)
        s.oflags |= O_CREAT;
    if (apply_cache_mode(args->cache, &s, errp) < 0)
        return -1;
    s.lock_required = strcmp(locking, "on") == 0;
    s.use_lock = strcmp(locking, "off") != 0 && !(args->flags & DISKIMG_OPEN_NO_LOCK);
    out_size = out->struct_size;
    memcpy(out, &s, MIN((size_t)out_size, sizeof(s)));
    out->struct_size = out_size;
    return 0;
}

/* ------------------------------------------------------------------ locks */

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
static int apply_lock_set(struct hostfile *p, int base, uint64_t want, uint64_t *held,
                          bool unlock, GError **errp)
{
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = 0;

        if ((want & bit) && !(*held & bit)) {
            ret = ofd_setlk(p->pub.fd, base + i, F_RDLCK);
            if (ret == 0)
                *held |= bit;
            else if (ret == -EAGAIN || ret == -EACCES)
                g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED,
                            "Failed to lock byte %d", base + i);
            else
                diskimg_set_errno(errp, -ret, "Failed to lock byte %d", base + i);
        } else if (unlock && (*held & bit) && !(want & bit)) {
            ret = ofd_setlk(p->pub.fd, base + i, F_UNLCK);
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

static int apply_locks(struct hostfile *p, uint64_t perm, uint64_t unshared, bool unlock,
                       GError **errp)
{
    if (apply_lock_set(p, LOCK_PERM_BASE, perm, &p->locked_perm, unlock, errp) < 0)
        return -1;
    return apply_lock_set(p, LOCK_SHARED_BASE, unshared, &p->locked_unshared, unlock, errp);
}

static int lock_conflict(const struct hostfile *p, int ret, const char *shared_word, int bit,
                         GError **errp)
{
    if (ret == -EAGAIN || ret == -EACCES) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED,
                    "Failed to get %s\"%s\" lock\nIs another process using the image [%s]?",
                    shared_word, perm_names[bit], p->pub.filename);
    } else {
        diskimg_set_errno(errp, -ret, "Failed to get %s\"%s\" lock", shared_word,
                          perm_names[bit]);
    }
    return -1;
}

/* Others must not hold "unshared" bytes for what we use, nor "use" bytes
 * for what we refuse to share (qemu's raw_check_lock_bytes). */
static int check_locks(const struct hostfile *p, uint64_t perm, uint64_t shared,
                       GError **errp)
{
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = (perm & bit) ? ofd_test(p->pub.fd, LOCK_SHARED_BASE + i) : 0;

        if (ret < 0)
            return lock_conflict(p, ret, "", i, errp);
    }
    for (int i = 0; i < PERM_BITS; i++) {
        uint64_t bit = UINT64_C(1) << i;
        int ret = !(shared & bit) ? ofd_test(p->pub.fd, LOCK_PERM_BASE + i) : 0;

        if (ret < 0)
            return lock_conflict(p, ret, "shared ", i, errp);
    }
    return 0;
}

/* Takes the new locks on top of the old ones, checks for conflicts, then
 * drops what is no longer needed; on failure the old state is restored. */
static int set_permissions(struct hostfile *p, uint64_t perm, uint64_t shared, GError **errp)
{
    uint64_t unshared;
    int ret;

    perm &= LOCKABLE_PERMS;
    shared |= ~LOCKABLE_PERMS;
    unshared = ~shared & LOCKABLE_PERMS;
    g_mutex_lock(&p->perm_mutex);
    ret = apply_locks(p, p->locked_perm | perm, p->locked_unshared | unshared, false, errp);
    if (ret == 0)
        ret = check_locks(p, perm, shared, errp);
    if (ret == 0) {
        p->perm = perm;
        p->unshared = unshared;
    }
    /* Unlocking cannot conflict; a failure here is not worth reporting
     * over the real outcome, and the bytes go away on close anyway. */
    (void)apply_locks(p, p->perm, p->unshared, true, NULL);
    g_mutex_unlock(&p->perm_mutex);
    return ret;
}

static int probe_ofd_support(struct hostfile *p, bool required, GError **errp)
{
    int ret = ofd_test(p->pub.fd, LOCK_PERM_BASE);

    if (ret == 0 || ret == -EAGAIN)
        return 0;
    if (required) {
        diskimg_set_errno(errp, -ret, "Could not open '%s': OFD locking is unavailable",
                          p->pub.filename);
        return -1;
    }
    p->pub.use_lock = false;  /* locking=auto without OFD locks: no locking */
    return 0;
}

/* Releases every lock byte of this fd at once. */
static void drop_lock_bytes(struct hostfile *p)
{
    struct flock fl = { .l_whence = SEEK_SET, .l_start = LOCK_PERM_BASE,
                        .l_len = LOCK_SHARED_BASE + PERM_BITS - LOCK_PERM_BASE,
                        .l_type = F_UNLCK };

    if (p->locked_perm || p->locked_unshared)
        (void)fcntl(p->pub.fd, F_OFD_SETLK, &fl);
}

/* ---------------------------------------------------------------- opening */

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
static int check_file_type(struct diskimg_hostfile *hf, GError **errp)
{
    struct stat st;

    if (fstat(hf->fd, &st) < 0) {
        diskimg_set_errno(errp, errno, "Could not stat '%s'", hf->filename);
        return -1;
    }
    hf->type = st.st_mode & S_IFMT;
    if (hf->type != S_IFREG && hf->type != S_IFBLK && hf->type != S_IFCHR) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "'file' driver requires '%s' to be a regular file", hf->filename);
        return -1;
    }
    return 0;
}

static int clear_nonblock(const struct diskimg_hostfile *hf, GError **errp)
{
    int fl = fcntl(hf->fd, F_GETFL);

    if (fl < 0 || fcntl(hf->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        diskimg_set_errno(errp, errno, "Could not open '%s'", hf->filename);
        return -1;
    }
    return 0;
}

/* A block device set read-only with blockdev(8) still opens O_RDWR; its
 * writes would fail later with EPERM, so refuse now (qemu does too). */
static int check_device_writable(const struct diskimg_hostfile *hf, GError **errp)
{
    int ro = 0;

    if (hf->type != S_IFBLK || !hf->writable)
        return 0;
    if (ioctl(hf->fd, BLKROGET, &ro) < 0) {
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

/* Trial reads of 512 then 4096 bytes.  A read that hits EOF before the
 * block proves nothing (the kernel returns 0 without checking), so the
 * safe 4096 stays. */
static void probe_dio_by_reading(struct diskimg_hostfile *hf)
{
    static const uint32_t sizes[] = { 512, MAX_ALIGN };
    uint8_t *buf = diskimg_alloc_aligned(MAX_ALIGN);

    hf->req_align = hf->mem_align = MAX_ALIGN;
    if (!buf)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        ssize_t got;

        if (dio_read_ok(hf->fd, buf, sizes[i], &got)) {
            if (got == (ssize_t)sizes[i])
                hf->req_align = hf->mem_align = sizes[i];
            break;
        }
    }
    diskimg_free_aligned(buf);
}

/* O_DIRECT alignment: the kernel's answer (statx DIOALIGN, Linux 6.1+),
 * else the logical sector size of a block device, else trial reads. */
static void probe_dio_alignment(struct diskimg_hostfile *hf)
{
    struct statx stx;
    unsigned int sector = 0;

    if (statx(hf->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align > 0) {
        hf->req_align = stx.stx_dio_offset_align;
        hf->mem_align = MAX(stx.stx_dio_mem_align, 1u);
    } else if (hf->type == S_IFBLK && ioctl(hf->fd, BLKSSZGET, &sector) == 0 && sector > 0) {
        hf->req_align = hf->mem_align = sector;
    } else {
        probe_dio_by_reading(hf);
    }
}

static int check_dio_alignment(struct diskimg_hostfile *hf, GError **errp)
{
    probe_dio_alignment(hf);
    /* Bounce buffers come from diskimg_alloc_aligned (4096-aligned). */
    if (hf->req_align > MAX_ALIGN || hf->mem_align > MAX_ALIGN ||
        (hf->req_align & (hf->req_align - 1)) || (hf->mem_align & (hf->mem_align - 1))) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Could not open '%s': unsupported O_DIRECT alignment %" PRIu32
                    " (try a cache mode without O_DIRECT)", hf->filename, hf->req_align);
        return -1;
    }
    return 0;
}

/*
 * Truncation at open (image creation) follows qemu's raw_co_create: take
 * write+resize without sharing resize, check nobody objects, and only
 * then discard the old contents — never truncate an image in use.
 */
static int truncate_on_open(struct hostfile *p, GError **errp)
{
    if (p->pub.type != S_IFREG)
        return 0;
    if (p->pub.use_lock &&
        set_permissions(p, DISKIMG_PERM_WRITE | DISKIMG_PERM_RESIZE,
                        DISKIMG_PERM_ALL & ~(uint64_t)DISKIMG_PERM_RESIZE, errp) < 0)
        return -1;
    if (ftruncate(p->pub.fd, 0) < 0) {
        diskimg_set_errno(errp, errno, "Could not resize file");
        return -1;
    }
    return 0;
}

static int open_steps(struct hostfile *p, const struct diskimg_hostfile_settings *s,
                      unsigned flags, GError **errp)
{
    struct diskimg_hostfile *hf = &p->pub;

    if (check_file_type(hf, errp) < 0 || clear_nonblock(hf, errp) < 0 ||
        check_device_writable(hf, errp) < 0)
        return -1;
    if (hf->direct && check_dio_alignment(hf, errp) < 0)
        return -1;
    if (hf->use_lock && probe_ofd_support(p, s->lock_required, errp) < 0)
        return -1;
    if ((flags & DISKIMG_OPEN_TRUNCATE) && truncate_on_open(p, errp) < 0)
        return -1;
    return 0;
}

static struct hostfile *hostfile_new(const struct diskimg_io_open_args *args,
                                     const struct diskimg_hostfile_settings *s)
{
    struct hostfile *p = g_new0(struct hostfile, 1);
    struct diskimg_hostfile *hf = &p->pub;

    hf->struct_size = sizeof(*hf);
    hf->fd = -1;
    hf->filename = g_strdup(args->filename);
    hf->node = args->node;
    hf->writable = (s->oflags & O_ACCMODE) == O_RDWR;
    hf->direct = s->direct;
    hf->dsync = (s->oflags & O_DSYNC) != 0;
    hf->unsafe = s->unsafe;
    hf->use_lock = s->use_lock;
    hf->req_align = hf->mem_align = 1;
    g_mutex_init(&p->perm_mutex);
    return p;
}

/* A copy of the caller's struct, zero-filled past its struct_size, so that
 * members a plugin predates read as absent. */
static void copy_sized(void *dst, size_t dst_size, const void *src)
{
    uint32_t src_size = *(const uint32_t *)src;  /* every such struct starts with it */

    memset(dst, 0, dst_size);
    memcpy(dst, src, MIN((size_t)src_size, dst_size));
}

struct diskimg_hostfile *diskimg_hostfile_open(const struct diskimg_io_open_args *args,
                                               const struct diskimg_hostfile_settings *settings,
                                               const struct diskimg_hostfile_callbacks *cb,
                                               void *opaque, GError **errp)
{
    struct diskimg_hostfile_settings s;
    struct hostfile *p;

    if (check_open_inputs(args, settings, errp) < 0)
        return NULL;
    copy_sized(&s, sizeof(s), settings);
    p = hostfile_new(args, &s);
    if (!cb || cb->struct_size < CALLBACKS_MIN_SIZE) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid host file callbacks for '%s'", args->filename);
        diskimg_hostfile_close(&p->pub);
        return NULL;
    }
    copy_sized(&p->cb, sizeof(p->cb), cb);
    p->opaque = opaque;
    if (!p->cb.read || !p->cb.write || !p->cb.write_held) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Host file callbacks for '%s' lack read, write or write_held",
                    args->filename);
        diskimg_hostfile_close(&p->pub);
        return NULL;
    }
    p->pub.fd = open_fd(args->filename, s.oflags, errp);
    if (p->pub.fd < 0 || open_steps(p, &s, args->flags, errp) < 0) {
        diskimg_hostfile_close(&p->pub);
        return NULL;
    }
    return &p->pub;
}

void diskimg_hostfile_close(struct diskimg_hostfile *hf)
{
    struct hostfile *p;

    if (!hf)
        return;
    p = priv(hf);
    if (hf->fd >= 0) {
        drop_lock_bytes(p);
        close(hf->fd);
    }
    g_mutex_clear(&p->perm_mutex);
    g_free((char *)hf->filename);
    g_free(p);
}

/* ------------------------------------------------------------------ sizes */

static int64_t device_size(const struct diskimg_hostfile *hf)
{
    uint64_t bytes;
    off_t end;

    if (hf->type == S_IFBLK && ioctl(hf->fd, BLKGETSIZE64, &bytes) == 0)
        return bytes > (uint64_t)INT64_MAX ? -EOVERFLOW : (int64_t)bytes;
    end = lseek(hf->fd, 0, SEEK_END);
    return end < 0 ? -errno : (int64_t)end;
}

/* The size in bytes, or a negative errno. */
static int64_t current_size(const struct diskimg_hostfile *hf)
{
    int64_t size;
    int ret;

    if (hf->type != S_IFREG)
        return device_size(hf);
    ret = fstat_size(hf, &size);
    return ret < 0 ? ret : size;
}

/*
 * Extends the file to at least `end`.  The size check and ftruncate run
 * under the exclusion, and every write holds it shared, so a write that
 * extends the file meanwhile is never cut off.
 */
static int grow_to(struct hostfile *p, uint64_t end)
{
    int64_t size;
    int ret;

    lock_exclusive(p);
    ret = fstat_size(&p->pub, &size);
    if (ret == 0 && (uint64_t)size < end && ftruncate(p->pub.fd, (off_t)end) < 0)
        ret = -errno;
    unlock_exclusive(p);
    return ret;
}

/* ------------------------------------------------------------------- read */

/* A bounce buffer large enough for the blocks covering the request, up to
 * CHUNK (the unit the bounce loops work in). */
static size_t bounce_size(const struct diskimg_hostfile *hf, uint64_t len, uint64_t off)
{
    uint64_t head = off % hf->req_align;

    return (size_t)MIN((uint64_t)CHUNK,
                       align_up(head + MIN(len, (uint64_t)CHUNK), hf->req_align));
}

/* Unaligned O_DIRECT read: read the covering aligned blocks into a bounce
 * buffer, chunk by chunk, and copy the asked bytes out. */
static int bounce_read(struct hostfile *p, void *buf, uint64_t len, uint64_t off)
{
    const uint32_t a = p->pub.req_align;
    uint8_t *bounce = diskimg_alloc_aligned(bounce_size(&p->pub, len, off));
    int ret = 0;

    if (!bounce)
        return -ENOMEM;
    while (ret == 0 && len > 0) {
        uint64_t head = off % a;
        uint64_t n = MIN(len, CHUNK - head);

        ret = p->cb.read(p->opaque, bounce, align_up(head + n, a), off - head);
        if (ret == 0)
            memcpy(buf, bounce + head, n);
        buf = (uint8_t *)buf + n;
        off += n;
        len -= n;
    }
    diskimg_free_aligned(bounce);
    return ret;
}

int diskimg_hostfile_read(struct diskimg_hostfile *hf, void *buf, uint64_t len, uint64_t off)
{
    struct hostfile *p = priv(hf);

    if (!diskimg_hostfile_range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (!diskimg_hostfile_is_aligned(hf, buf, off, len))
        return bounce_read(p, buf, len, off);
    return p->cb.read(p->opaque, buf, len, off);
}

/* ------------------------------------------------------------------ write */

/* One chunk of an unaligned O_DIRECT write (n <= CHUNK - off % align):
 * fetch the partial head and tail blocks, patch, write back whole. */
static int rmw_chunk(struct hostfile *p, uint8_t *bounce, const void *buf, uint64_t n,
                     uint64_t off)
{
    const uint32_t a = p->pub.req_align;
    uint64_t head = off % a;
    uint64_t astart = off - head;
    uint64_t alen = align_up(head + n, a);
    uint64_t tail = alen - a;
    int ret = 0;

    if (head != 0)
        ret = p->cb.read(p->opaque, bounce, a, astart);
    if (ret == 0 && (head + n) % a != 0 && (tail != 0 || head == 0))
        ret = p->cb.read(p->opaque, bounce + tail, a, astart + tail);
    if (ret < 0)
        return ret;
    memcpy(bounce + head, buf, n);
    return p->cb.write_held(p->opaque, bounce, alen, astart);
}

/*
 * Unaligned O_DIRECT write; the caller holds the exclusion, since the head
 * and tail blocks are read and written back whole and must not race with
 * another write to them.  Writing whole blocks can push EOF to a block
 * boundary; the size is put back to what a buffered write would leave.
 */
static int bounce_write(struct hostfile *p, const void *buf, uint64_t len, uint64_t off)
{
    uint8_t *bounce = diskimg_alloc_aligned(bounce_size(&p->pub, len, off));
    const uint32_t a = p->pub.req_align;
    uint64_t end = off + len;
    int64_t old_size = -1;
    int ret = 0;

    if (!bounce)
        return -ENOMEM;
    if (p->pub.type == S_IFREG)
        ret = fstat_size(&p->pub, &old_size);
    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, CHUNK - off % a);

        ret = rmw_chunk(p, bounce, buf, n, off);
        buf = (const uint8_t *)buf + n;
        off += n;
        len -= n;
    }
    if (old_size >= 0 && align_up(end, a) > MAX((uint64_t)old_size, end) &&
        ftruncate(p->pub.fd, (off_t)MAX((uint64_t)old_size, end)) < 0 && ret == 0)
        ret = -errno;
    diskimg_free_aligned(bounce);
    return ret;
}

/* A write by a caller that holds the exclusion (truncate). */
static int write_held(struct hostfile *p, const void *buf, uint64_t len, uint64_t off)
{
    if (len == 0)
        return 0;
    if (!diskimg_hostfile_is_aligned(&p->pub, buf, off, len))
        return bounce_write(p, buf, len, off);
    return p->cb.write_held(p->opaque, buf, len, off);
}

int diskimg_hostfile_write(struct diskimg_hostfile *hf, const void *buf, uint64_t len,
                           uint64_t off, unsigned flags)
{
    struct hostfile *p = priv(hf);
    int ret;

    if (!hf->writable)
        return -EBADF;
    if (!diskimg_hostfile_range_ok(off, len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (diskimg_hostfile_is_aligned(hf, buf, off, len))
        return p->cb.write(p->opaque, buf, len, off, flags);
    lock_exclusive(p);
    ret = bounce_write(p, buf, len, off);
    unlock_exclusive(p);
    if (ret == 0 && (flags & DISKIMG_WRITE_FUA))
        ret = diskimg_hostfile_flush(hf);
    return ret;
}

/* ------------------------------------------------------------------ flush */

int diskimg_hostfile_flush_error(struct diskimg_hostfile *hf)
{
    return -g_atomic_int_get(&priv(hf)->flush_errno);
}

int diskimg_hostfile_flush_result(struct diskimg_hostfile *hf, int res)
{
    if (res >= 0)
        return 0;
    /* Character devices such as /dev/null have nothing to sync. */
    if (hf->type == S_IFCHR && (res == -EINVAL || res == -EROFS || res == -ENOTSUP))
        return 0;
    /* O_DIRECT bypasses the page cache: nothing can have been lost. */
    if (!hf->direct)
        g_atomic_int_compare_and_exchange(&priv(hf)->flush_errno, 0, -res);
    return res;
}

static int datasync(struct hostfile *p)
{
    if (p->cb.datasync)
        return p->cb.datasync(p->opaque);
    while (fdatasync(p->pub.fd) < 0) {
        if (errno != EINTR)
            return diskimg_hostfile_flush_result(&p->pub, -errno);
    }
    return 0;
}

int diskimg_hostfile_flush(struct diskimg_hostfile *hf)
{
    int sticky;

    if (hf->unsafe)
        return 0;
    sticky = diskimg_hostfile_flush_error(hf);
    return sticky ? sticky : datasync(priv(hf));
}

/* ------------------------------------------------------- zeroes and holes */

/* Writes zero buffers over [off, off+len); `held` as in write_held. */
static int write_zero_buffers(struct hostfile *p, uint64_t off, uint64_t len, bool held)
{
    size_t chunk = (size_t)MIN(len, (uint64_t)CHUNK);
    uint8_t *zeroes = diskimg_alloc_aligned(chunk);
    int ret = 0;

    if (!zeroes)
        return -ENOMEM;
    memset(zeroes, 0, chunk);
    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, chunk);

        ret = held ? write_held(p, zeroes, n, off)
                   : diskimg_hostfile_write(&p->pub, zeroes, n, off, 0);
        off += n;
        len -= n;
    }
    diskimg_free_aligned(zeroes);
    return ret;
}

/* Checks common to the fallocate-based requests; 1 when there is work. */
static int check_range_write(const struct diskimg_hostfile *hf, uint64_t off, uint64_t len)
{
    if (!hf->writable)
        return -EBADF;
    if (!diskimg_hostfile_range_ok(off, len))
        return -EINVAL;
    return len > 0;
}

static int punch_hole(struct hostfile *p, uint64_t off, uint64_t len)
{
    int ret = check_range_write(&p->pub, off, len);

    if (ret <= 0)
        return ret;
    return host_fallocate(p, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

/* MAY_UNMAP on a regular file: punch the part inside the file, then grow
 * the file over the rest (a hole past the old EOF reads as zeroes too). */
static int zero_by_punching(struct hostfile *p, uint64_t off, uint64_t len)
{
    int64_t size;
    int ret = fstat_size(&p->pub, &size);

    if (ret < 0)
        return ret;
    if (off < (uint64_t)size) {
        ret = punch_hole(p, off, MIN(len, (uint64_t)size - off));
        if (ret < 0)
            return ret;
    }
    return off + len > (uint64_t)size ? grow_to(p, off + len) : 0;
}

/* The last rungs: growing a file when the range lies past EOF (zeroes for
 * free), else zero buffers unless the caller forbids the slow way. */
static int zero_fallback(struct hostfile *p, uint64_t off, uint64_t len, unsigned flags)
{
    if (p->pub.type == S_IFREG) {
        int64_t size;
        int ret = fstat_size(&p->pub, &size);

        if (ret < 0)
            return ret;
        if (off >= (uint64_t)size)
            return grow_to(p, off + len);
    }
    if (flags & DISKIMG_WRITE_NO_FALLBACK)
        return -ENOTSUP;
    return write_zero_buffers(p, off, len, false);
}

static int zero_range(struct hostfile *p, uint64_t off, uint64_t len, unsigned flags)
{
    int ret = check_range_write(&p->pub, off, len);

    if (ret <= 0)
        return ret;
    if ((flags & DISKIMG_WRITE_MAY_UNMAP) && p->pub.type == S_IFREG) {
        ret = zero_by_punching(p, off, len);
        if (ret == 0 || !diskimg_hostfile_unsupported(-ret))
            return ret;
    }
    /* ZERO_RANGE without KEEP_SIZE also extends the file when needed. */
    ret = host_fallocate(p, FALLOC_FL_ZERO_RANGE, off, len);
    if (ret == 0 || !diskimg_hostfile_unsupported(-ret))
        return ret;
    return zero_fallback(p, off, len, flags);
}

int diskimg_hostfile_write_zeroes(struct diskimg_hostfile *hf, uint64_t off, uint64_t len,
                                  unsigned flags)
{
    int ret = zero_range(priv(hf), off, len, flags);

    if (ret == 0 && len > 0 && (flags & DISKIMG_WRITE_FUA))
        ret = diskimg_hostfile_flush(hf);
    return ret;
}

/* --------------------------------------------------------------- truncate */

/* Writes zeroes over the first block so that later O_DIRECT alignment
 * probing reads real data (qemu's allocate_first_block); best effort.
 * The caller holds the exclusion. */
static void allocate_first_block(struct hostfile *p, uint64_t size)
{
    uint64_t n = MIN(size < MAX_ALIGN ? 512u : MAX_ALIGN, size);
    uint8_t *zeroes = diskimg_alloc_aligned(MAX_ALIGN);

    if (!zeroes)
        return;
    memset(zeroes, 0, MAX_ALIGN);
    (void)write_held(p, zeroes, n, 0);
    diskimg_free_aligned(zeroes);
}

/* Full preallocation: knowing the final size first lets the file system
 * allocate fewer, larger extents; then zeroes, made durable. */
static int grow_full(struct hostfile *p, uint64_t cur, uint64_t size, GError **errp)
{
    int ret = 0;

    if (ftruncate(p->pub.fd, (off_t)size) < 0)
        ret = -errno;
    if (ret == 0)
        ret = write_zero_buffers(p, cur, size - cur, true);
    if (ret == 0)
        ret = diskimg_hostfile_flush(&p->pub);
    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Could not write zeros for preallocation");
        return -1;
    }
    return 0;
}

/* Grows a regular file; the caller holds the exclusion. */
static int grow_file(struct hostfile *p, uint64_t cur, uint64_t size,
                     enum diskimg_prealloc prealloc, GError **errp)
{
    int ret;

    switch (prealloc) {
    case DISKIMG_PREALLOC_OFF:
        if (ftruncate(p->pub.fd, (off_t)size) < 0) {
            diskimg_set_errno(errp, errno, "Failed to resize the file");
            return -1;
        }
        break;
    case DISKIMG_PREALLOC_FALLOC:
        ret = posix_fallocate(p->pub.fd, (off_t)cur, (off_t)(size - cur));
        if (ret != 0) {
            diskimg_set_errno(errp, ret, "Could not preallocate new data");
            return -1;
        }
        break;
    case DISKIMG_PREALLOC_FULL:
        return grow_full(p, cur, size, errp);
    default:
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Unsupported preallocation mode %d", (int)prealloc);
        return -1;
    }
    if (cur == 0)
        allocate_first_block(p, size);
    return 0;
}

/* Devices keep their size: shrinking views are fine unless the caller asks
 * for an exact shrink, growing never is (qemu's raw_co_truncate). */
static int truncate_device(const struct diskimg_hostfile *hf, uint64_t size,
                           enum diskimg_prealloc prealloc, unsigned flags, GError **errp)
{
    int64_t cur = current_size(hf);

    if (cur < 0) {
        diskimg_set_errno(errp, (int)-cur, "Could not get the size of '%s'", hf->filename);
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

/* Resizes a regular file; the caller holds the exclusion. */
static int truncate_file(struct hostfile *p, uint64_t size, enum diskimg_prealloc prealloc,
                         unsigned flags, GError **errp)
{
    int64_t cur;
    int ret = fstat_size(&p->pub, &cur);

    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Could not stat '%s'", p->pub.filename);
        return -1;
    }
    /* A plain file has no metadata to preallocate: qemu's file driver
     * refuses the mode (formats map it to "off" for their file). */
    if (prealloc == DISKIMG_PREALLOC_METADATA) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Unsupported preallocation mode: metadata");
        return -1;
    }
    if (size < (uint64_t)cur && !(flags & DISKIMG_TRUNCATE_SHRINK)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "cannot shrink without DISKIMG_TRUNCATE_SHRINK");
        return -1;
    }
    if (size < (uint64_t)cur && ftruncate(p->pub.fd, (off_t)size) < 0) {
        diskimg_set_errno(errp, errno, "Failed to resize the file");
        return -1;
    }
    if (size <= (uint64_t)cur)
        return 0;
    if (grow_file(p, (uint64_t)cur, size, prealloc, errp) < 0) {
        /* Leave the file as we found it (qemu does the same). */
        if (ftruncate(p->pub.fd, (off_t)cur) < 0)
            diskimg_warn("Failed to restore old file length of '%s': %s", p->pub.filename,
                         g_strerror(errno));
        return -1;
    }
    return 0;
}

int diskimg_hostfile_op_truncate(void *handle, uint64_t size, enum diskimg_prealloc prealloc,
                                 unsigned flags, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret;

    if (!hf->writable) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION, "Block node is read-only");
        return -1;
    }
    if (size > (uint64_t)INT64_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Image size too large: %" PRIu64, size);
        return -1;
    }
    if (hf->type != S_IFREG)
        return truncate_device(hf, size, prealloc, flags, errp);
    /* Exclusive against unaligned O_DIRECT writes, which restore EOF. */
    lock_exclusive(priv(hf));
    ret = truncate_file(priv(hf), size, prealloc, flags, errp);
    unlock_exclusive(priv(hf));
    return ret;
}

/* ------------------------------------------------------------- copy_range */

/* copy_file_range errors that mean "not between these two files". */
static bool copy_unsupported(int err)
{
    return err == EXDEV || err == ENOSYS || err == EINVAL || err == EOPNOTSUPP ||
           err == ENOTSUP || err == EBADF || err == ETXTBSY;
}

/* Copies what the kernel will; the byte count, or -1 with *errp set. */
static int64_t copy_loop(const struct diskimg_hostfile *src, uint64_t src_off,
                         const struct diskimg_hostfile *dst, uint64_t dst_off, uint64_t len,
                         GError **errp)
{
    uint64_t done = 0;

    while (done < len) {
        loff_t in = (loff_t)(src_off + done), out = (loff_t)(dst_off + done);
        ssize_t r = copy_file_range(src->fd, &in, dst->fd, &out,
                                    (size_t)MIN(len - done, MAX_SYSCALL_IO), 0);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (done > 0 || copy_unsupported(errno))
                break;  /* report what was copied; the caller does the rest */
            return io_error(errp, errno, dst, "copy into", dst_off);
        }
        if (r == 0)
            break;  /* source EOF */
        done += (uint64_t)r;
    }
    return (int64_t)done;
}

int64_t diskimg_hostfile_op_copy_range(void *src_handle, uint64_t src_off, void *dst_handle,
                                       uint64_t dst_off, uint64_t len, GError **errp)
{
    struct diskimg_hostfile *src = handle_file(src_handle), *dst = handle_file(dst_handle);
    int64_t done;

    if (!dst->writable || !diskimg_hostfile_range_ok(src_off, len) ||
        !diskimg_hostfile_range_ok(dst_off, len))
        return 0;  /* let the caller's read/write path report it */
    done = copy_loop(src, src_off, dst, dst_off, len, errp);
    /* copy_file_range may go through the page cache even for O_DSYNC or
     * O_DIRECT descriptors; keep the cache mode's durability promise. */
    if (done > 0 && dst->dsync) {
        int ret = diskimg_hostfile_flush(dst);

        if (ret < 0)
            return io_error(errp, -ret, dst, "flush", dst_off);
    }
    return done;
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

/* Fills ext for [offset, offset+len) inside the file. */
static int64_t current_size(const struct diskimg_hostfile *hf);

/* Status of [offset, offset+len) of a regular file, or of a device when
 * `len` was clipped to its end.  SEEK_DATA/SEEK_HOLE stop at the end of a
 * file by themselves, so the file size is only looked up for a trailing
 * hole (to clip it at EOF): no fstat for every call. */
static void extent_in_file(const struct diskimg_hostfile *hf, uint64_t offset, uint64_t len,
                           struct diskimg_extent *ext)
{
    uint64_t data = 0, hole = 0;
    int ret = hf->type == S_IFREG ? find_allocation(hf->fd, offset, &data, &hole) : -ENOTSUP;

    if (ret == -ENXIO) {
        int64_t size = current_size(hf);
        ext->flags = DISKIMG_BS_ZERO;              /* trailing hole, or past EOF */
        ext->length = size > 0 && offset < (uint64_t)size ? MIN(len, (uint64_t)size - offset)
                                                           : len;
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
}

int diskimg_hostfile_op_block_status(void *handle, uint64_t offset, uint64_t len,
                                     struct diskimg_extent *ext, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);

    if (len == 0 || !diskimg_hostfile_range_ok(offset, len)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Invalid block status request at offset %" PRIu64, offset);
        return -1;
    }
    ext->offset = offset;
    ext->file = hf->node;
    /* A regular file needs no size here (see extent_in_file). */
    int64_t size = hf->type == S_IFREG ? INT64_MAX : current_size(hf);
    if (size < 0)
        return io_error(errp, (int)-size, hf, "get block status of", offset);
    if (offset >= (uint64_t)size) {
        ext->flags = DISKIMG_BS_ZERO;              /* past EOF: reads as zeroes */
        ext->length = len;
    } else {
        extent_in_file(hf, offset, MIN(len, (uint64_t)size - offset), ext);
    }
    ext->flags |= DISKIMG_BS_OFFSET_VALID;
    return 0;
}

/* -------------------------------------------------------------- batch path */

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

int diskimg_hostfile_check_requests(struct diskimg_io_request *const *reqs, unsigned n,
                                    GError **errp)
{
    for (unsigned i = 0; i < n; i++) {
        if (!reqs[i] || !request_valid(reqs[i])) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "Invalid I/O request %u of %u", i, n);
            return -1;
        }
    }
    return 0;
}

int diskimg_hostfile_run_request(struct diskimg_hostfile *hf,
                                 const struct diskimg_io_request *r)
{
    switch (r->op) {
    case DISKIMG_IO_READ:
        return diskimg_hostfile_read(hf, r->buf, r->len, r->offset);
    case DISKIMG_IO_WRITE:
        return diskimg_hostfile_write(hf, r->buf, r->len, r->offset, r->flags);
    case DISKIMG_IO_FLUSH:
        return diskimg_hostfile_flush(hf);
    case DISKIMG_IO_WRITE_ZEROES:
        return diskimg_hostfile_write_zeroes(hf, r->offset, r->len, r->flags);
    default:
        return -EINVAL;
    }
}

/* ----------------------------------------------------------------- io ops */

int diskimg_hostfile_op_pread(void *handle, void *buf, uint64_t len, uint64_t off,
                              GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret = diskimg_hostfile_read(hf, buf, len, off);

    return ret < 0 ? io_error(errp, -ret, hf, "read", off) : 0;
}

int diskimg_hostfile_op_pwrite(void *handle, const void *buf, uint64_t len, uint64_t off,
                               unsigned flags, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret = diskimg_hostfile_write(hf, buf, len, off, flags);

    return ret < 0 ? io_error(errp, -ret, hf, "write", off) : 0;
}

int diskimg_hostfile_op_flush(void *handle, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret = diskimg_hostfile_flush(hf);

    if (ret < 0) {
        diskimg_set_errno(errp, -ret, "Could not flush '%s'", hf->filename);
        return -1;
    }
    return 0;
}

int64_t diskimg_hostfile_op_get_size(void *handle, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int64_t size = current_size(hf);

    if (size < 0) {
        diskimg_set_errno(errp, (int)-size, "Could not get the size of '%s'", hf->filename);
        return -1;
    }
    return size;
}

int64_t diskimg_hostfile_op_allocated_size(void *handle, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    struct stat st;

    if (fstat(hf->fd, &st) < 0) {
        diskimg_set_errno(errp, errno, "Could not stat '%s'", hf->filename);
        return -1;
    }
    return (int64_t)st.st_blocks * 512;
}

int diskimg_hostfile_op_allocate(void *handle, uint64_t off, uint64_t len, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret = check_range_write(hf, off, len);

    if (ret > 0)
        ret = host_fallocate(priv(hf), 0, off, len);
    return ret < 0 ? io_error(errp, -ret, hf, "allocate in", off) : 0;
}

int diskimg_hostfile_op_punch_hole(void *handle, uint64_t off, uint64_t len, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret = punch_hole(priv(hf), off, len);

    return ret < 0 ? io_error(errp, -ret, hf, "discard in", off) : 0;
}

int diskimg_hostfile_op_write_zeroes(void *handle, uint64_t off, uint64_t len, unsigned flags,
                                     GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);
    int ret = diskimg_hostfile_write_zeroes(hf, off, len, flags);

    return ret < 0 ? io_error(errp, -ret, hf, "write zeroes to", off) : 0;
}

int diskimg_hostfile_op_lock(void *handle, uint64_t perm, uint64_t shared, GError **errp)
{
    struct diskimg_hostfile *hf = handle_file(handle);

    return hf->use_lock ? set_permissions(priv(hf), perm, shared, errp) : 0;
}

uint32_t diskimg_hostfile_op_alignment(void *handle)
{
    struct diskimg_hostfile *hf = handle_file(handle);

    return MAX(hf->req_align, hf->mem_align);
}

int diskimg_hostfile_op_remove(const char *filename, GError **errp)
{
    if (unlink(filename) < 0 && errno != ENOENT) {
        diskimg_set_errno(errp, errno, "Could not delete '%s'", filename);
        return -1;
    }
    return 0;
}
