/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD shim for the crash-consistency test (tests/crash/crash.py).
 *
 * It counts the calls that change a file's contents or make them durable
 * -- write, pwrite, pwritev, fsync, fdatasync, ftruncate, fallocate,
 * posix_fallocate, copy_file_range -- made on files below one directory,
 * and SIGKILLs the process just before the chosen one runs.  Killing at
 * the Nth such call rather than after a delay makes every kill point
 * reproducible from its number, and makes it fall exactly between two
 * changes of the image, which is where a crash can expose bad ordering.
 *
 * Environment:
 *   CRASH_DIR      only files whose path starts with this are counted
 *   CRASH_KILL_AT  the call to kill at (1 = before the first); 0 or unset:
 *                  count only
 *   CRASH_COUNT    file that receives the running count, as decimal text
 *                  (rewritten at every counted call, so it survives a kill)
 *   CRASH_LOG      optional file: one line per counted call (number, call,
 *                  path, offset, length), to see what a kill point cut off
 *   CRASH_LOSE     optional seed: simulate a power loss at the kill point.
 *                  Every write since the last fsync/fdatasync of its file
 *                  is kept or lost (half each, chosen from the seed and
 *                  the kill point), as a disk cache may reorder them;
 *                  what a sync call made durable always stays.  Counted
 *                  calls are serialised in this mode.
 *
 * Once the kill point is reached, every other thread that reaches a
 * counted call blocks, so no change numbered N or later reaches the file
 * even while the signal is on its way.  Built only for the test, never
 * installed.
 */
/* The 64-bit names are defined below next to the plain ones; the
 * build's _FILE_OFFSET_BITS=64 would rename the plain ones onto them. */
#undef _FILE_OFFSET_BITS
/* The wrappers must be exported whatever the build's default visibility. */
#pragma GCC visibility push(default)

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static char watched_dir[PATH_MAX];
static size_t watched_len;
static unsigned long kill_at;
static unsigned long counter;
static int count_fd = -1;
static int log_fd = -1;
static int lose_mode;
static uint64_t lose_seed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* A write not yet made durable by a sync of its file (CRASH_LOSE). */
struct unsynced {
    char path[PATH_MAX];
    dev_t dev;
    ino_t ino;
    long long off;
    size_t len;
    unsigned char *old_bytes, *new_bytes;
    struct unsynced *next;
};
static struct unsynced *journal;   /* newest first */
static size_t journal_bytes;
#define JOURNAL_CAP ((size_t)512 << 20)

#define REAL(name) ((__typeof__(&name))real_symbol(#name))

static void *real_symbol(const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    if (!sym) {
        /* Without the real call nothing can go on; this is a test tool. */
        static const char msg[] = "killshim: a libc symbol is missing\n";
        ssize_t ignored = syscall(SYS_write, 2, msg, sizeof msg - 1);
        (void)ignored;
        _exit(99);
    }
    return sym;
}

__attribute__((constructor)) static void shim_init(void)
{
    const char *dir = getenv("CRASH_DIR");
    const char *at = getenv("CRASH_KILL_AT");
    const char *count = getenv("CRASH_COUNT");
    const char *log = getenv("CRASH_LOG");

    if (dir && strlen(dir) < sizeof watched_dir) {
        strcpy(watched_dir, dir);
        watched_len = strlen(dir);
    }
    kill_at = at ? strtoul(at, NULL, 10) : 0;
    if (getenv("CRASH_LOSE")) {
        lose_mode = 1;
        lose_seed = strtoull(getenv("CRASH_LOSE"), NULL, 10);
    }
    if (count)
        count_fd = open(count, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log)
        log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* Whether fd is a file below the watched directory. */
static int watched(int fd, char *path, size_t size)
{
    char link[64];
    ssize_t n;

    if (!watched_len)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, size - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    return strncmp(path, watched_dir, watched_len) == 0;
}

static void record(unsigned long n, const char *call, const char *path,
                   long long off, long long len)
{
    char line[PATH_MAX + 128];
    int k;

    if (count_fd >= 0) {
        k = snprintf(line, sizeof line, "%lu\n", n);
        if (REAL(pwrite)(count_fd, line, (size_t)k, 0) < 0)
            return;
    }
    if (log_fd >= 0) {
        k = snprintf(line, sizeof line, "%lu %s %s %lld %lld\n", n, call, path, off, len);
        if (REAL(write)(log_fd, line, (size_t)k) < 0)
            return;
    }
}

/* ------------------------------------------------ simulated power loss */

static uint64_t next_random(uint64_t *state)
{
    /* splitmix64: a fixed, portable sequence for a given seed */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Writes bytes back into a file by name, never past its current end. */
static void put_back(const char *path, long long off, const unsigned char *bytes, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && off < st.st_size) {
        size_t n = (size_t)(st.st_size - off) < len ? (size_t)(st.st_size - off) : len;
        if (REAL(pwrite)(fd, bytes, n, off) < 0) {
            /* nothing better to do in a dying test process */
        }
    }
    close(fd);
}

/*
 * The power loss: every unsynced write is undone, newest first, which
 * gives back the files as they were at their last sync; then the kept
 * ones are done again, oldest first.
 */
static void lose_unsynced(void)
{
    struct unsynced *oldest_first = NULL, *e, *next;
    uint64_t rng = lose_seed ^ ((uint64_t)kill_at << 32);

    for (e = journal; e; e = e->next)
        put_back(e->path, e->off, e->old_bytes, e->len);
    for (e = journal; e; e = next) {
        next = e->next;
        e->next = oldest_first;
        oldest_first = e;
    }
    for (e = oldest_first; e; e = e->next) {
        if (next_random(&rng) & 1)
            put_back(e->path, e->off, e->new_bytes, e->len);
    }
}

/* Remembers what a write is about to replace (CRASH_LOSE). */
static void journal_write(int fd, const char *path, long long off,
                          const struct iovec *iov, int cnt)
{
    struct unsynced *e;
    struct stat st;
    size_t len = 0, done = 0;
    ssize_t got;

    for (int i = 0; i < cnt; i++)
        len += iov[i].iov_len;
    if (!lose_mode || off < 0 || !len || fstat(fd, &st) < 0 ||
        journal_bytes + 2 * len > JOURNAL_CAP)
        return;
    e = calloc(1, sizeof *e);
    e->old_bytes = calloc(1, len);   /* past the end of the file: zeroes */
    e->new_bytes = malloc(len);
    if (!e->old_bytes || !e->new_bytes)
        _exit(98);
    got = pread(fd, e->old_bytes, len, off);
    (void)got;
    for (int i = 0; i < cnt; i++) {
        memcpy(e->new_bytes + done, iov[i].iov_base, iov[i].iov_len);
        done += iov[i].iov_len;
    }
    snprintf(e->path, sizeof e->path, "%s", path);
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->off = off;
    e->len = len;
    e->next = journal;
    journal = e;
    journal_bytes += 2 * len;
}

/* A successful sync made every earlier write of that file durable. */
static void journal_synced(int fd)
{
    struct unsynced **link = &journal, *e;
    struct stat st;

    if (!lose_mode || fstat(fd, &st) < 0)
        return;
    while ((e = *link)) {
        if (e->dev == st.st_dev && e->ino == st.st_ino) {
            *link = e->next;
            journal_bytes -= 2 * e->len;
            free(e->old_bytes);
            free(e->new_bytes);
            free(e);
        } else {
            link = &e->next;
        }
    }
}

/* --------------------------------------------------------------- counting */

/*
 * Counts one change of a watched file, or dies instead when it is the
 * chosen one; returns whether fd is watched, with its path in `path`.
 * In CRASH_LOSE mode the caller holds `lock`, so no other thread is
 * between its journal entry and its write while the loss is simulated.
 */
static int count_call(int fd, const char *call, long long off, long long len,
                      char *path)
{
    unsigned long n;

    if (!watched(fd, path, PATH_MAX))
        return 0;
    n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
    if (kill_at && n >= kill_at) {
        if (n == kill_at) {
            if (lose_mode)
                lose_unsynced();
            kill(getpid(), SIGKILL);
        }
        for (;;)
            pause();   /* a later change must not slip in before the signal lands */
    }
    record(n, call, path, off, len);
    return 1;
}

static void begin(void)
{
    if (lose_mode)
        pthread_mutex_lock(&lock);
}

static void end(void)
{
    if (lose_mode)
        pthread_mutex_unlock(&lock);
}

/* A counted call that changes no bytes by itself (truncate, allocate...). */
#define COUNTED(fd, call, off, len, real_call)                                   \
    do {                                                                         \
        char path_[PATH_MAX];                                                    \
        __typeof__(real_call) ret_;                                              \
        begin();                                                                 \
        count_call(fd, call, off, len, path_);                                   \
        ret_ = real_call;                                                        \
        end();                                                                   \
        return ret_;                                                             \
    } while (0)

/* A counted write of iov at off (-1: the file position). */
#define COUNTED_WRITE(fd, call, off, iov, cnt, real_call)                        \
    do {                                                                         \
        char path_[PATH_MAX];                                                    \
        ssize_t ret_;                                                            \
        begin();                                                                 \
        if (count_call(fd, call, off, iov_bytes(iov, cnt), path_))               \
            journal_write(fd, path_, (off) >= 0 ? (long long)(off)               \
                                     : (long long)lseek(fd, 0, SEEK_CUR), iov, cnt); \
        ret_ = real_call;                                                        \
        end();                                                                   \
        return ret_;                                                             \
    } while (0)

/* A counted sync: on success, what it covered can no longer be lost. */
#define COUNTED_SYNC(fd, call, real_call)                                        \
    do {                                                                         \
        char path_[PATH_MAX];                                                    \
        int ret_;                                                                \
        begin();                                                                 \
        int watched_ = count_call(fd, call, -1, -1, path_);                      \
        ret_ = real_call;                                                        \
        if (watched_ && ret_ == 0)                                               \
            journal_synced(fd);                                                  \
        end();                                                                   \
        return ret_;                                                             \
    } while (0)

static long long iov_bytes(const struct iovec *iov, int cnt)
{
    long long sum = 0;
    for (int i = 0; i < cnt; i++)
        sum += (long long)iov[i].iov_len;
    return sum;
}

#define ONE_IOV(buf, len) (&(struct iovec){ .iov_base = (void *)(buf), .iov_len = (len) })

ssize_t write(int fd, const void *buf, size_t len)
{
    COUNTED_WRITE(fd, "write", -1, ONE_IOV(buf, len), 1, REAL(write)(fd, buf, len));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    COUNTED_WRITE(fd, "writev", -1, iov, cnt, REAL(writev)(fd, iov, cnt));
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    COUNTED_WRITE(fd, "pwrite", off, ONE_IOV(buf, len), 1, REAL(pwrite)(fd, buf, len, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
    COUNTED_WRITE(fd, "pwrite", off, ONE_IOV(buf, len), 1, REAL(pwrite64)(fd, buf, len, off));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    COUNTED_WRITE(fd, "pwritev", off, iov, cnt, REAL(pwritev)(fd, iov, cnt, off));
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    COUNTED_WRITE(fd, "pwritev", off, iov, cnt, REAL(pwritev64)(fd, iov, cnt, off));
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    COUNTED_WRITE(fd, "pwritev2", off, iov, cnt, REAL(pwritev2)(fd, iov, cnt, off, flags));
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags)
{
    COUNTED_WRITE(fd, "pwritev2", off, iov, cnt, REAL(pwritev64v2)(fd, iov, cnt, off, flags));
}

int fsync(int fd)
{
    COUNTED_SYNC(fd, "fsync", REAL(fsync)(fd));
}

int fdatasync(int fd)
{
    COUNTED_SYNC(fd, "fdatasync", REAL(fdatasync)(fd));
}

/* Size changes and allocations are taken as durable at once: the
 * simulated loss concerns the order of data writes between syncs. */
int ftruncate(int fd, off_t len)
{
    COUNTED(fd, "ftruncate", (long long)len, -1, REAL(ftruncate)(fd, len));
}

int ftruncate64(int fd, off64_t len)
{
    COUNTED(fd, "ftruncate", (long long)len, -1, REAL(ftruncate64)(fd, len));
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    COUNTED(fd, "fallocate", (long long)off, (long long)len, REAL(fallocate)(fd, mode, off, len));
}

int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
    COUNTED(fd, "fallocate", (long long)off, (long long)len,
            REAL(fallocate64)(fd, mode, off, len));
}

int posix_fallocate(int fd, off_t off, off_t len)
{
    COUNTED(fd, "posix_fallocate", (long long)off, (long long)len,
            REAL(posix_fallocate)(fd, off, len));
}

int posix_fallocate64(int fd, off64_t off, off64_t len)
{
    COUNTED(fd, "posix_fallocate", (long long)off, (long long)len,
            REAL(posix_fallocate64)(fd, off, len));
}

ssize_t copy_file_range(int in, off64_t *in_off, int out, off64_t *out_off,
                        size_t len, unsigned int flags)
{
    COUNTED(out, "copy_file_range", out_off ? (long long)*out_off : -1, (long long)len,
            REAL(copy_file_range)(in, in_off, out, out_off, len, flags));
}
