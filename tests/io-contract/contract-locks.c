/* SPDX-License-Identifier: MIT */
/*
 * contract-locks.c — qemu's image locking on OFD byte locks: byte 100+i
 * held while permission i is used, 200+i while it is not shared; the
 * locks of a second io plugin (--peer) and of this one must see each
 * other, since a user may mix backends (and qemu) on one image.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "contract.h"

/* Creating (truncating) an image that a user of `keep` does not share
 * resize for is refused and leaves the file alone. */
static void check_truncate_refused(void *writer, const char *path)
{
    GError *err = NULL;
    char buf[4];

    write_ok(writer, "keep", 4, 0);
    g_assert_null(io_open(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_TRUNCATE,
                          DISKIMG_CACHE_WRITEBACK, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED);
    g_clear_error(&err);
    g_assert_cmpint(size_of(writer), ==, 4);
    read_ok(writer, buf, 4, 0);
    g_assert_cmpmem(buf, 4, "keep", 4);
}

/* A writer that lets others read but not write (qemu-img's writer). */
static void check_writer_bytes(void *a, const char *path)
{
    lock_ok(ops, a, CR | WR, CR | WU);
    g_assert_true(byte_locked(path, 100));
    g_assert_true(byte_locked(path, 101));
    g_assert_false(byte_locked(path, 102));
    g_assert_true(byte_locked(path, 201));    /* write not shared */
    g_assert_true(byte_locked(path, 203));    /* resize not shared */
    g_assert_false(byte_locked(path, 204));   /* graph-mod is never locked */
}

static void test_locks(void)
{
    char *path;
    void *a = create_ok("lock.img", &path);
    void *b = open_ok(path, 0);
    void *c = open_ok(path, DISKIMG_OPEN_RDWR);
    void *nolock = open_ok(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_LOCK);

    check_writer_bytes(a, path);
    /* A reader that will not share write. */
    expect_lock_error(ops, b, CR, CR | WU, "shared \"write\"", path);
    g_assert_false(byte_locked(path, 200));   /* rolled back */
    lock_ok(ops, b, CR, DISKIMG_PERM_ALL);     /* -U style: fine */
    /* Another writer. */
    expect_lock_error(ops, c, CR | WR, DISKIMG_PERM_ALL, "\"write\"", path);
    /* Without locks nobody is asked. */
    lock_ok(ops, nolock, CR | WR | RS, 0);

    /* The writer gives up write: the bytes are unlocked. */
    lock_ok(ops, a, CR, DISKIMG_PERM_ALL);
    g_assert_false(byte_locked(path, 101));
    g_assert_false(byte_locked(path, 201));
    lock_ok(ops, c, CR | WR, CR | WU);
    ops->close(c);                            /* close releases its locks */
    lock_ok(ops, b, CR, CR | WU);

    check_truncate_refused(a, path);          /* b does not share resize */
    ops->close(a);
    ops->close(b);
    ops->close(nolock);
    g_assert_false(byte_locked(path, 100));
    g_free(path);
}

/* Opens path read-write through the peer plugin, or NULL (test skipped)
 * where the peer is not given or does not work here. */
static void *open_peer(const char *path)
{
    GError *err = NULL;
    void *p;

    if (!io_peer.ops) {
        g_test_skip("no --peer module given");
        return NULL;
    }
    p = io_open_with(io_peer.ops, path, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_WRITEBACK, NULL,
                     &err);
    if (!p && g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED)) {
        g_test_skip(err->message);
        g_clear_error(&err);
        return NULL;
    }
    g_assert_no_error(err);
    return p;
}

/* This plugin and the peer on one image see each other's locks. */
static void test_peer_locks(void)
{
    const struct diskimg_io_ops *peer = io_peer.ops;
    char *path;
    void *u = create_ok("peer-lock.img", &path);
    void *p = open_peer(path);

    if (!p) {
        ops->close(u);
        g_free(path);
        return;
    }
    /* We write and let others read: the peer may read but not write. */
    lock_ok(ops, u, CR | WR, CR | WU);
    expect_lock_error(peer, p, CR | WR, DISKIMG_PERM_ALL, "\"write\"", path);
    expect_lock_error(peer, p, CR, CR | WU, "shared \"write\"", path);
    lock_ok(peer, p, CR, DISKIMG_PERM_ALL);
    /* And the other way round. */
    lock_ok(ops, u, CR, DISKIMG_PERM_ALL);
    lock_ok(peer, p, CR | WR, CR | WU);
    expect_lock_error(ops, u, CR | WR, DISKIMG_PERM_ALL, "\"write\"", path);
    /* Re-creating an image the peer uses without sharing resize. */
    check_truncate_refused(u, path);
    /* Closing releases: we may write now. */
    peer->close(p);
    lock_ok(ops, u, CR | WR, CR | WU);
    ops->close(u);
    g_free(path);
}

/* locking=off: two writers, no conflict. */
static void test_locking_off(void)
{
    char *path;
    void *a = create_ok("nolock.img", &path);
    GError *err = NULL;
    void *b;

    lock_ok(ops, a, CR | WR | RS, 0);
    b = io_open_opts(path, DISKIMG_OPEN_RDWR, DISKIMG_CACHE_WRITEBACK, "locking=off", &err);
    g_assert_no_error(err);
    lock_ok(ops, b, CR | WR | RS, 0);
    ops->close(b);
    ops->close(a);
    g_free(path);
}

void contract_add_lock_tests(void)
{
    io_test_add("locks", test_locks, false);
    io_test_add("peer-locks", test_peer_locks, false);
    io_test_add("locking-off", test_locking_off, false);
}
