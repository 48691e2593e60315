/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the format toolkit (<diskimg/toolkit.h>): the bounded
 * reader and table loads, the metadata cache, the request tracker, tail
 * growth, CRC32C, the flat block map and the second-level tables.  Files are raw images in a scratch directory, opened
 * through the posix and raw plugins of the build tree.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <diskimg/core.h>
#include <diskimg/toolkit.h>

#include "test-tmpdir.h"

/* A raw image of `len` bytes, byte i = i & 0xff, opened read-write; its
 * file node is what a format plugin would get as args->file. */
struct scratch {
    char *path;
    diskimg_node *raw;
    diskimg_node *file;
};

static void scratch_open(struct scratch *t, const char *name, size_t len)
{
    t->path = test_tmp_path(name);
    g_autofree uint8_t *content = g_malloc(MAX(len, 1));
    for (size_t i = 0; i < len; i++)
        content[i] = (uint8_t)i;
    g_assert_true(g_file_set_contents(t->path, (char *)content, (gssize)len, NULL));
    struct diskimg_open_params p = { .struct_size = sizeof(p), .format = "raw",
                                     .flags = DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_LOCK };
    GError *err = NULL;
    t->raw = diskimg_open(t->path, &p, &err);
    g_assert_no_error(err);
    t->file = diskimg_node_file(t->raw);
}

static void scratch_close(struct scratch *t)
{
    diskimg_close(t->raw);
    g_free(t->path);
}

/* ------------------------------------------------------------ reader */

static void test_reader_fields(void)
{
    const uint8_t bytes[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 'a', 'b', 0, 'c' };
    struct diskimg_reader be = diskimg_reader_make(bytes, sizeof(bytes), DISKIMG_BIG_ENDIAN,
                                                   NULL, "test header");
    struct diskimg_reader le = diskimg_reader_make(bytes, sizeof(bytes), DISKIMG_LITTLE_ENDIAN,
                                                   NULL, "test header");
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    GError *err = NULL;
    g_assert_cmpint(diskimg_read_u8(&be, 1, "a", &v8, &err), ==, 0);
    g_assert_cmpuint(v8, ==, 2);
    g_assert_cmpint(diskimg_read_u16(&be, 0, "a", &v16, &err), ==, 0);
    g_assert_cmphex(v16, ==, 0x0102);
    g_assert_cmpint(diskimg_read_u16(&le, 0, "a", &v16, &err), ==, 0);
    g_assert_cmphex(v16, ==, 0x0201);
    g_assert_cmpint(diskimg_read_u32(&be, 4, "a", &v32, &err), ==, 0);
    g_assert_cmphex(v32, ==, 0x05060708);
    g_assert_cmpint(diskimg_read_u32(&le, 4, "a", &v32, &err), ==, 0);
    g_assert_cmphex(v32, ==, 0x08070605);
    g_assert_cmpint(diskimg_read_u64(&be, 0, "a", &v64, &err), ==, 0);
    g_assert_cmphex(v64, ==, 0x0102030405060708ull);
    g_assert_cmpint(diskimg_read_u64(&le, 0, "a", &v64, &err), ==, 0);
    g_assert_cmphex(v64, ==, 0x0807060504030201ull);
    g_assert_no_error(err);

    g_autofree char *str = diskimg_read_string(&be, 8, 4, "name", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(str, ==, "ab");     /* the embedded NUL is the caller's to see */
    const uint8_t *p = diskimg_read_bytes(&be, 10, 2, "tail", &err);
    g_assert_true(p == bytes + 10);

    struct diskimg_reader sub;
    g_assert_cmpint(diskimg_reader_sub(&be, 4, 4, "inner", &sub, &err), ==, 0);
    g_assert_cmpint(diskimg_read_u16(&sub, 2, "a", &v16, &err), ==, 0);
    g_assert_cmphex(v16, ==, 0x0708);
    g_assert_no_error(err);
}

static void test_reader_bounds(void)
{
    uint8_t bytes[16] = { 0 };
    struct diskimg_reader r = diskimg_reader_make(bytes, sizeof(bytes), DISKIMG_BIG_ENDIAN,
                                                  "x.img", "region table");
    GError *err = NULL;
    uint32_t v32 = 7;
    uint64_t v64 = 7;
    g_assert_true(diskimg_reader_has(&r, 0, 16));
    g_assert_true(diskimg_reader_has(&r, 16, 0));
    g_assert_false(diskimg_reader_has(&r, 15, 2));
    g_assert_false(diskimg_reader_has(&r, UINT64_MAX, 2));
    g_assert_false(diskimg_reader_has(&r, 2, UINT64_MAX));   /* no wrap-around */

    g_assert_cmpint(diskimg_read_u32(&r, 14, "entry_count", &v32, &err), ==, -1);
    g_assert_cmpuint(v32, ==, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_cmpstr(err->message, ==, "x.img: region table: field 'entry_count' (4 bytes at "
                    "offset 14) lies beyond its 16 bytes");
    g_clear_error(&err);
    g_assert_cmpint(diskimg_read_u64(&r, UINT64_MAX - 3, "x", &v64, NULL), ==, -1);
    g_assert_null(diskimg_read_string(&r, 8, 9, "name", NULL));
    g_assert_null(diskimg_read_bytes(&r, 17, 0, "name", NULL));

    /* without a file name (the core adds it to open's errors) */
    struct diskimg_reader anon = diskimg_reader_make(bytes, 4, DISKIMG_BIG_ENDIAN, NULL,
                                                     "qcow2 header");
    struct diskimg_reader sub;
    g_assert_cmpint(diskimg_reader_sub(&anon, 2, 4, "extension", &sub, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "qcow2 header: field 'extension' (4 bytes at offset 2) "
                    "lies beyond its 4 bytes");
    g_clear_error(&err);

    /* an empty view holds exactly the empty field */
    struct diskimg_reader empty = diskimg_reader_make(NULL, 0, DISKIMG_BIG_ENDIAN, NULL, "none");
    g_autofree char *nothing = diskimg_read_string(&empty, 0, 0, "name", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(nothing, ==, "");
    g_assert_null(diskimg_read_bytes(&empty, 0, 1, "name", NULL));
}

static void test_load_table(void)
{
    struct scratch t;
    scratch_open(&t, "table.raw", 4096);
    GError *err = NULL;
    void *buf;
    g_assert_cmpint(diskimg_load_table(t.file, 1024, 16, 4, 1024, "map", &buf, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(((uint8_t *)buf)[0], ==, 0);      /* 1024 & 0xff */
    g_assert_cmpuint(((uint8_t *)buf)[63], ==, 63);
    g_free(buf);

    /* an empty table is a valid, non-NULL buffer */
    g_assert_cmpint(diskimg_load_table(t.file, 1u << 30, 0, 4, 0, "map", &buf, &err), ==, 0);
    g_assert_nonnull(buf);
    g_free(buf);

    /* the cap, checked before anything is allocated (the count is absurd) */
    g_assert_cmpint(diskimg_load_table(t.file, 0, UINT64_MAX / 2, 8, 1u << 20, "L1 table", &buf,
                                       &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "exceeds the limit of 1048576 bytes"));
    g_assert_true(g_str_has_prefix(err->message, t.path));
    g_assert_null(buf);
    g_clear_error(&err);

    /* the file size: the last entry would lie past the end */
    g_assert_cmpint(diskimg_load_table(t.file, 4000, 13, 8, 1u << 20, "L1 table", &buf, &err),
                    ==, -1);
    g_autofree char *want = g_strdup_printf("%s: L1 table (13 entries of 8 bytes at offset "
                                            "0xfa0) lies beyond the end of the file (4096 "
                                            "bytes)", t.path);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_load_table(t.file, UINT64_MAX - 4, 1, 8, 64, "L1 table", &buf,
                                       &err), ==, -1);
    g_clear_error(&err);
    scratch_close(&t);
}

static void test_load_u64_table(void)
{
    struct scratch t;
    scratch_open(&t, "table64.raw", 4096);
    GError *err = NULL;
    uint64_t *tab;
    g_assert_cmpint(diskimg_load_u64_table(t.file, 8, 2, 4, DISKIMG_BIG_ENDIAN, 64, "L1 table",
                                           &tab, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmphex(tab[0], ==, 0x08090a0b0c0d0e0full);
    g_assert_cmphex(tab[1], ==, 0x1011121314151617ull);
    g_assert_cmphex(tab[2], ==, 0);     /* room beyond count is zeroed */
    g_assert_cmphex(tab[3], ==, 0);
    g_free(tab);
    g_assert_cmpint(diskimg_load_u64_table(t.file, 8, 1, 0, DISKIMG_LITTLE_ENDIAN, 64, "t",
                                           &tab, &err), ==, 0);
    g_assert_cmphex(tab[0], ==, 0x0f0e0d0c0b0a0908ull);
    g_free(tab);
    /* the capacity is bounded by the cap too */
    g_assert_cmpint(diskimg_load_u64_table(t.file, 8, 1, 9, DISKIMG_BIG_ENDIAN, 64, "t", &tab,
                                           &err), ==, -1);
    g_assert_null(tab);
    g_clear_error(&err);
    scratch_close(&t);
}

/* ------------------------------------------------------------ metadata cache */

#define BLK 4096u

/* The order in which blocks reach the disk, and a switch to refuse them. */
struct write_log {
    GString *order;         /* "A@1 B@3 ..." */
    bool refuse;
};

static int log_write(void *opaque, const char *what, uint64_t offset, uint64_t len,
                     GError **errp)
{
    struct write_log *log = opaque;
    g_assert_cmpuint(len, ==, BLK);
    if (log->refuse)
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION, "refused %s at %" PRIu64, what,
                                 offset);
    g_string_append_printf(log->order, "%s@%" PRIu64 " ", what, offset / BLK);
    return 0;
}

static uint8_t byte_at(const struct scratch *t, uint64_t off)
{
    g_autofree char *content = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(t->path, &content, &len, NULL));
    g_assert_cmpuint(off, <, len);
    return (uint8_t)content[off];
}

static void test_mcache_bounds(void)
{
    struct scratch t;
    scratch_open(&t, "mcache.raw", 64 * BLK);
    GError *err = NULL;
    diskimg_mcache *c = diskimg_mcache_new(t.file, "L2 table", BLK, 4 * BLK + 100, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(diskimg_mcache_entries(c), ==, 4);    /* whole entries of the budget */
    for (int round = 0; round < 3; round++) {
        for (uint64_t i = 1; i < 64; i++) {
            uint8_t *d;
            g_assert_cmpint(diskimg_mcache_get(c, i * BLK, 0, &d, &err), ==, 0);
            g_assert_cmpuint(d[0], ==, (uint8_t)(i * BLK));
            g_assert_cmpuint(d[BLK - 1], ==, (uint8_t)(i * BLK + BLK - 1));
            diskimg_mcache_put(c, d);
        }
    }
    /* every entry pinned: a fifth block cannot be loaded */
    uint8_t *pinned[4], *d;
    for (int i = 0; i < 4; i++)
        g_assert_cmpint(diskimg_mcache_get(c, (uint64_t)(i + 1) * BLK, 0, &pinned[i], &err),
                        ==, 0);
    g_assert_cmpint(diskimg_mcache_get(c, 10 * BLK, 0, &d, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_FAILED);
    g_assert_nonnull(strstr(err->message, "every L2 table cache entry is in use"));
    g_clear_error(&err);
    /* a pinned entry is found again without a victim */
    g_assert_cmpint(diskimg_mcache_get(c, 2 * BLK, 0, &d, &err), ==, 0);
    g_assert_true(d == pinned[1]);
    diskimg_mcache_put(c, d);
    for (int i = 0; i < 4; i++)
        diskimg_mcache_put(c, pinned[i]);

    /* offsets that cannot hold an entry */
    g_assert_cmpint(diskimg_mcache_get(c, BLK + 8, 0, &d, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_autofree char *want = g_strdup_printf("%s: L2 table offset 0x1008 is invalid", t.path);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_mcache_get(c, 0, 0, &d, &err), ==, -1);
    g_clear_error(&err);
    diskimg_mcache_free(c);

    /* entries whose size is not a power of two (1536-byte blocks) */
    c = diskimg_mcache_new(t.file, "grain table", 1536, 4 * 1536, &err);
    g_assert_cmpint(diskimg_mcache_get(c, 3 * 1536, 0, &d, &err), ==, 0);
    g_assert_cmpuint(d[0], ==, (uint8_t)(3 * 1536));
    diskimg_mcache_put(c, d);
    g_assert_cmpint(diskimg_mcache_get(c, 2048, 0, &d, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_clear_error(&err);
    diskimg_mcache_free(c);
    scratch_close(&t);
}

static void test_mcache_write_back(void)
{
    struct scratch t;
    scratch_open(&t, "mcache-wb.raw", 16 * BLK);
    GError *err = NULL;
    struct write_log log = { g_string_new(NULL), false };
    const struct diskimg_mcache_hooks hooks = { .struct_size = sizeof(hooks), .opaque = &log,
                                                .before_write = log_write };
    diskimg_mcache *c = diskimg_mcache_new(t.file, "B", BLK, 2 * BLK, &err);
    diskimg_mcache_set_hooks(c, &hooks);

    /* a fresh block is zeroes, not the file's bytes, and reaches the disk on flush */
    uint8_t *d;
    g_assert_cmpint(diskimg_mcache_get(c, 3 * BLK, DISKIMG_MCACHE_FRESH, &d, &err), ==, 0);
    g_assert_true(diskimg_is_zero(d, BLK));
    d[5] = 0xaa;
    diskimg_mcache_mark_dirty(c, d);
    diskimg_mcache_put(c, d);
    g_assert_cmpuint(byte_at(&t, 3 * BLK + 5), ==, (uint8_t)(3 * BLK + 5));
    g_assert_cmpint(diskimg_mcache_flush(c, &err), ==, 0);
    g_assert_cmpuint(byte_at(&t, 3 * BLK + 5), ==, 0xaa);
    g_assert_cmpuint(byte_at(&t, 3 * BLK + 6), ==, 0);
    g_assert_cmpstr(log.order->str, ==, "B@3 ");
    /* clean now: a second flush writes nothing */
    g_assert_cmpint(diskimg_mcache_flush(c, &err), ==, 0);
    g_assert_cmpstr(log.order->str, ==, "B@3 ");

    /* eviction writes a dirty victim back (two entries, a third block) */
    g_assert_cmpint(diskimg_mcache_get(c, 1 * BLK, 0, &d, &err), ==, 0);
    d[0] = 0x11;
    diskimg_mcache_mark_dirty(c, d);
    diskimg_mcache_put(c, d);
    g_assert_cmpint(diskimg_mcache_get(c, 2 * BLK, 0, &d, &err), ==, 0);
    diskimg_mcache_put(c, d);
    g_assert_cmpint(diskimg_mcache_get(c, 4 * BLK, 0, &d, &err), ==, 0);
    diskimg_mcache_put(c, d);
    g_assert_cmpstr(log.order->str, ==, "B@3 B@1 ");
    g_assert_cmpuint(byte_at(&t, 1 * BLK), ==, 0x11);

    /* a refused write-back fails the flush and leaves the entry dirty */
    g_assert_cmpint(diskimg_mcache_get(c, 4 * BLK, 0, &d, &err), ==, 0);
    d[0] = 0x44;
    diskimg_mcache_mark_dirty(c, d);
    diskimg_mcache_put(c, d);
    log.refuse = true;
    g_assert_cmpint(diskimg_mcache_flush(c, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_assert_cmpstr(err->message, ==, "refused B at 16384");
    g_clear_error(&err);
    g_assert_cmpuint(byte_at(&t, 4 * BLK), ==, 0);     /* 4 * 4096 & 0xff */
    log.refuse = false;
    g_assert_cmpint(diskimg_mcache_flush(c, &err), ==, 0);
    g_assert_cmpuint(byte_at(&t, 4 * BLK), ==, 0x44);

    /* a discarded block is dropped unwritten; empty rereads from the file */
    g_assert_cmpint(diskimg_mcache_get(c, 5 * BLK, 0, &d, &err), ==, 0);
    d[0] = 0x55;
    diskimg_mcache_mark_dirty(c, d);
    diskimg_mcache_put(c, d);
    diskimg_mcache_discard(c, 5 * BLK);
    g_assert_cmpint(diskimg_mcache_flush(c, &err), ==, 0);
    g_assert_cmpuint(byte_at(&t, 5 * BLK), ==, 0);
    g_assert_cmpint(diskimg_mcache_get(c, 5 * BLK, 0, &d, &err), ==, 0);
    g_assert_cmpuint(d[0], ==, 0);
    d[1] = 0x66;        /* changed but not marked dirty: empty drops it */
    diskimg_mcache_put(c, d);
    g_assert_cmpint(diskimg_mcache_empty(c, &err), ==, 0);
    g_assert_cmpint(diskimg_mcache_get(c, 5 * BLK, 0, &d, &err), ==, 0);
    g_assert_cmpuint(d[1], ==, (uint8_t)(5 * BLK + 1));
    diskimg_mcache_put(c, d);
    g_assert_no_error(err);
    diskimg_mcache_free(c);
    g_string_free(log.order, TRUE);
    scratch_close(&t);
}

/* A dependant's write-back flushes its dependency first, eviction included. */
static void test_mcache_dependency(void)
{
    struct scratch t;
    scratch_open(&t, "mcache-dep.raw", 16 * BLK);
    GError *err = NULL;
    struct write_log log = { g_string_new(NULL), false };
    const struct diskimg_mcache_hooks hooks = { .struct_size = sizeof(hooks), .opaque = &log,
                                                .before_write = log_write };
    diskimg_mcache *first = diskimg_mcache_new(t.file, "refcount", BLK, 2 * BLK, &err);
    diskimg_mcache *then = diskimg_mcache_new(t.file, "L2", BLK, 2 * BLK, &err);
    diskimg_mcache_set_hooks(first, &hooks);
    diskimg_mcache_set_hooks(then, &hooks);
    diskimg_mcache_set_dependency(then, first);
    uint8_t *d;
    g_assert_cmpint(diskimg_mcache_get(then, 8 * BLK, 0, &d, &err), ==, 0);
    diskimg_mcache_mark_dirty(then, d);
    diskimg_mcache_put(then, d);
    g_assert_cmpint(diskimg_mcache_get(first, 1 * BLK, 0, &d, &err), ==, 0);
    diskimg_mcache_mark_dirty(first, d);
    diskimg_mcache_put(first, d);
    g_assert_cmpint(diskimg_mcache_flush(then, &err), ==, 0);
    g_assert_cmpstr(log.order->str, ==, "refcount@1 L2@8 ");

    /* eviction of a dirty L2 block: the refcount block goes first */
    g_string_truncate(log.order, 0);
    g_assert_cmpint(diskimg_mcache_get(first, 2 * BLK, 0, &d, &err), ==, 0);
    diskimg_mcache_mark_dirty(first, d);
    diskimg_mcache_put(first, d);
    for (uint64_t b = 9; b < 12; b++) {
        g_assert_cmpint(diskimg_mcache_get(then, b * BLK, 0, &d, &err), ==, 0);
        diskimg_mcache_mark_dirty(then, d);
        diskimg_mcache_put(then, d);
    }
    g_assert_cmpstr(log.order->str, ==, "refcount@2 L2@9 ");   /* 8 was clean */
    /* the dependency's refusal stops the dependant's write-back */
    log.refuse = true;
    g_assert_cmpint(diskimg_mcache_get(first, 3 * BLK, 0, &d, &err), ==, 0);
    diskimg_mcache_mark_dirty(first, d);
    diskimg_mcache_put(first, d);
    g_assert_cmpint(diskimg_mcache_flush(then, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "refused refcount at 12288");
    g_clear_error(&err);
    log.refuse = false;
    g_assert_cmpint(diskimg_mcache_flush(then, &err), ==, 0);
    diskimg_mcache_free(then);
    diskimg_mcache_free(first);
    g_string_free(log.order, TRUE);
    scratch_close(&t);
}

static void note_bad_offset(void *opaque, const char *what, uint64_t offset, GError **errp)
{
    *(uint64_t *)opaque = offset;
    diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "bad %s at %" PRIu64, what, offset);
}

static void test_mcache_bad_offset_hook(void)
{
    struct scratch t;
    scratch_open(&t, "mcache-bad.raw", 4 * BLK);
    GError *err = NULL;
    uint64_t seen = 0;
    /* a hooks struct from a plugin built before bad_offset existed: the
     * member past its struct_size is not read */
    struct diskimg_mcache_hooks hooks = { .struct_size = offsetof(struct diskimg_mcache_hooks,
                                                                  bad_offset),
                                          .opaque = &seen, .bad_offset = note_bad_offset };
    diskimg_mcache *c = diskimg_mcache_new(t.file, "grain table", BLK, 2 * BLK, &err);
    diskimg_mcache_set_hooks(c, &hooks);
    uint8_t *d;
    g_assert_cmpint(diskimg_mcache_get(c, 100, 0, &d, &err), ==, -1);
    g_assert_cmpuint(seen, ==, 0);
    g_assert_nonnull(strstr(err->message, "grain table offset 0x64 is invalid"));
    g_clear_error(&err);
    hooks.struct_size = sizeof(hooks);
    diskimg_mcache_set_hooks(c, &hooks);
    g_assert_cmpint(diskimg_mcache_get(c, 100, 0, &d, &err), ==, -1);
    g_assert_cmpuint(seen, ==, 100);
    g_assert_cmpstr(err->message, ==, "bad grain table at 100");
    g_assert_null(d);
    g_clear_error(&err);
    diskimg_mcache_free(c);
    scratch_close(&t);
}

/* ------------------------------------------------------------ tracker */

/* Events in the order threads record them (under the tracker's lock or
 * with atomics), to check who waited for whom. */
struct tracker_test {
    diskimg_tracker *t;
    GString *log;
    GMutex log_lock;
    struct diskimg_claim claim;
};

static void note(struct tracker_test *tt, const char *event)
{
    g_mutex_lock(&tt->log_lock);
    g_string_append_printf(tt->log, "%s ", event);
    g_mutex_unlock(&tt->log_lock);
}

/* Long enough for a thread that does not wait to run ahead (the orders
 * checked below hold however the threads are scheduled; the pauses only
 * make the interesting interleaving likely). */
#define SETTLE_US 20000

/* Waits until `event` was noted. */
static void await_note(struct tracker_test *tt, const char *event)
{
    for (;;) {
        g_mutex_lock(&tt->log_lock);
        bool seen = strstr(tt->log->str, event) != NULL;
        g_mutex_unlock(&tt->log_lock);
        if (seen)
            return;
        g_usleep(1000);
    }
}

static gpointer drain_for_free_thread(gpointer p)
{
    struct tracker_test *tt = p;
    diskimg_tracker_lock(tt->t);
    note(tt, "drain");
    diskimg_tracker_drain_for_free(tt->t);
    note(tt, "drained");
    diskimg_tracker_unlock(tt->t);
    return NULL;
}

static gpointer admit_thread(gpointer p)
{
    struct tracker_test *tt = p;
    diskimg_tracker_lock(tt->t);
    diskimg_tracker_io_admit(tt->t);
    note(tt, "admitted");
    diskimg_tracker_unlock(tt->t);
    return NULL;
}

static gpointer exclusive_thread(gpointer p)
{
    struct tracker_test *tt = p;
    diskimg_tracker_lock_exclusive(tt->t);
    note(tt, "exclusive");
    diskimg_tracker_unlock(tt->t);
    return NULL;
}

static void tracker_test_init(struct tracker_test *tt)
{
    tt->t = diskimg_tracker_new();
    tt->log = g_string_new(NULL);
    g_mutex_init(&tt->log_lock);
}

static void tracker_test_clear(struct tracker_test *tt)
{
    diskimg_tracker_free(tt->t);
    g_string_free(tt->log, TRUE);
    g_mutex_clear(&tt->log_lock);
}

/* A drain waits for the transfer in flight; a request admitted meanwhile
 * waits for the drain (no starvation). */
static void test_tracker_drain(void)
{
    struct tracker_test tt;
    tracker_test_init(&tt);
    diskimg_tracker_lock(tt.t);
    diskimg_tracker_io_admit(tt.t);         /* nothing queued: returns at once */
    diskimg_tracker_io_begin(tt.t);         /* counted, lock released */
    g_assert_cmpuint(diskimg_tracker_inflight(tt.t), ==, 1);
    note(&tt, "transfer");
    GThread *drainer = g_thread_new("drain", drain_for_free_thread, &tt);
    /* noted with the lock held, which the drainer gives up only in its
     * wait: from then on it is queued */
    await_note(&tt, "drain");
    GThread *late = g_thread_new("admit", admit_thread, &tt);
    g_usleep(SETTLE_US);
    note(&tt, "end");
    diskimg_tracker_io_end(tt.t);           /* lock held again */
    g_assert_cmpuint(diskimg_tracker_inflight(tt.t), ==, 0);
    diskimg_tracker_unlock(tt.t);
    g_thread_join(drainer);
    g_thread_join(late);
    g_assert_cmpstr(tt.log->str, ==, "transfer drain end drained admitted ");
    tracker_test_clear(&tt);
}

/* Exclusive waits for transfers in flight. */
static void test_tracker_exclusive(void)
{
    struct tracker_test tt;
    tracker_test_init(&tt);
    diskimg_tracker_lock(tt.t);
    diskimg_tracker_io_begin(tt.t);
    GThread *ex = g_thread_new("exclusive", exclusive_thread, &tt);
    g_usleep(SETTLE_US);
    note(&tt, "end");
    diskimg_tracker_io_end(tt.t);
    diskimg_tracker_unlock(tt.t);
    g_thread_join(ex);
    g_assert_cmpstr(tt.log->str, ==, "end exclusive ");
    /* with nothing in flight, a drain for freeing returns at once */
    diskimg_tracker_lock(tt.t);
    diskimg_tracker_drain_for_free(tt.t);
    diskimg_tracker_unlock(tt.t);
    tracker_test_clear(&tt);
}

static gpointer wait_unclaimed_thread(gpointer p)
{
    struct tracker_test *tt = p;
    diskimg_tracker_lock(tt->t);
    diskimg_tracker_wait_unclaimed(tt->t, 4096, 8192);
    note(tt, "unclaimed");
    diskimg_tracker_unlock(tt->t);
    return NULL;
}

/* Claims: overlapping waits last until the release, others pass. */
static void test_tracker_claims(void)
{
    struct tracker_test tt;
    tracker_test_init(&tt);
    diskimg_tracker_lock(tt.t);
    diskimg_tracker_claim(tt.t, &tt.claim, 0, 65536);
    g_assert_false(diskimg_tracker_wait_claim(tt.t, 65536, 70000));   /* adjacent */
    diskimg_tracker_io_begin(tt.t);         /* the claimed data goes out unlocked */
    GThread *waiter = g_thread_new("wait", wait_unclaimed_thread, &tt);
    g_usleep(SETTLE_US);
    note(&tt, "written");
    diskimg_tracker_io_end(tt.t);
    diskimg_tracker_release(tt.t, &tt.claim);
    diskimg_tracker_unlock(tt.t);
    g_thread_join(waiter);
    g_assert_cmpstr(tt.log->str, ==, "written unclaimed ");
    diskimg_tracker_lock(tt.t);
    g_assert_false(diskimg_tracker_wait_claim(tt.t, 0, 65536));
    diskimg_tracker_unlock(tt.t);
    tracker_test_clear(&tt);
}

/* ------------------------------------------------------------ tail growth */

#define KiB 1024u
#define MiB (1024u * 1024u)

static uint64_t node_size(diskimg_node *n)
{
    GError *err = NULL;
    int64_t size = diskimg_node_size(n, &err);
    g_assert_no_error(err);
    return (uint64_t)size;
}

static void test_tail_grow(void)
{
    struct scratch t;
    scratch_open(&t, "tail.raw", 100 * KiB);
    diskimg_tail *tail = diskimg_tail_new(t.file, 64 * KiB);
    g_assert_cmpuint(diskimg_tail_grown_from(tail), ==, 0);

    /* past the end: one growth by the minimum step, aligned; known zeroes */
    g_assert_true(diskimg_tail_reserve(tail, 128 * KiB, 64 * KiB, 128 * KiB));
    g_assert_cmpuint(diskimg_tail_grown_from(tail), ==, 100 * KiB);
    uint64_t grown = node_size(t.file);
    g_assert_cmpuint(grown, ==, (100 * KiB + MiB + 64 * KiB - 1) / (64 * KiB) * (64 * KiB));
    /* within what was added: no new growth, still zeroes */
    g_assert_true(diskimg_tail_reserve(tail, 192 * KiB, 64 * KiB, 192 * KiB));
    g_assert_cmpuint(node_size(t.file), ==, grown);
    /* below the old end of file, or below the allocations in use: not known */
    g_assert_false(diskimg_tail_reserve(tail, 64 * KiB, 64 * KiB, 64 * KiB));
    g_assert_false(diskimg_tail_reserve(tail, 256 * KiB, 64 * KiB, 320 * KiB));
    /* beyond what was added: grows again from the current size */
    g_assert_true(diskimg_tail_reserve(tail, grown, 64 * KiB, grown));
    g_assert_cmpuint(node_size(t.file), >=, grown + MiB);
    g_assert_cmpuint(diskimg_tail_grown_from(tail), ==, 100 * KiB);

    /* trim cuts back to the allocations in use and starts over */
    GError *err = NULL;
    g_assert_cmpint(diskimg_tail_trim(tail, 320 * KiB, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(node_size(t.file), ==, 320 * KiB);
    g_assert_cmpuint(diskimg_tail_grown_from(tail), ==, 0);
    /* a trim without growth changes nothing */
    g_assert_cmpint(diskimg_tail_trim(tail, 64 * KiB, &err), ==, 0);
    g_assert_cmpuint(node_size(t.file), ==, 320 * KiB);

    /* never below the size before growing: those bytes are not the tail's */
    g_assert_true(diskimg_tail_reserve(tail, 320 * KiB, 64 * KiB, 320 * KiB));
    g_assert_cmpint(diskimg_tail_trim(tail, 0, &err), ==, 0);
    g_assert_cmpuint(node_size(t.file), ==, 320 * KiB);

    /* forget: the growth stays, nothing is taken as zero any more */
    g_assert_true(diskimg_tail_reserve(tail, 320 * KiB, 64 * KiB, 320 * KiB));
    uint64_t before = node_size(t.file);
    diskimg_tail_forget(tail);
    g_assert_cmpuint(diskimg_tail_grown_from(tail), ==, 0);
    g_assert_cmpint(diskimg_tail_trim(tail, 384 * KiB, &err), ==, 0);
    g_assert_cmpuint(node_size(t.file), ==, before);
    diskimg_tail_free(tail);
    scratch_close(&t);
}

/* ------------------------------------------------------------ CRC-32C */

/* A bitwise CRC-32C, the definition itself, to check the tables against. */
static uint32_t crc32c_bitwise(const uint8_t *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    while (len--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

static void test_crc32c_vectors(void)
{
    /* the check value of the catalogue of CRCs, and RFC 3720 B.4 */
    g_assert_cmphex(diskimg_crc32c(0, "123456789", 9), ==, 0xe3069283u);
    uint8_t b[48];
    memset(b, 0, 32);
    g_assert_cmphex(diskimg_crc32c(0, b, 32), ==, 0x8a9136aau);
    memset(b, 0xff, 32);
    g_assert_cmphex(diskimg_crc32c(0, b, 32), ==, 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    g_assert_cmphex(diskimg_crc32c(0, b, 32), ==, 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    g_assert_cmphex(diskimg_crc32c(0, b, 32), ==, 0x113fdb5cu);
    static const uint8_t iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    g_assert_cmphex(diskimg_crc32c(0, iscsi_read, 48), ==, 0xd9963a56u);
    g_assert_cmphex(diskimg_crc32c(0, NULL, 0), ==, 0);
}

/* Every length and alignment, and chaining, agree with the definition. */
static void test_crc32c_slices(void)
{
    GRand *r = g_rand_new_with_seed(7);
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)g_rand_int(r);
    for (size_t start = 0; start < 9; start++) {
        for (size_t len = 0; start + len <= sizeof(buf); len += 1 + len / 16) {
            uint32_t want = crc32c_bitwise(buf + start, len);
            g_assert_cmphex(diskimg_crc32c(0, buf + start, len), ==, want);
            size_t cut = len / 3;
            uint32_t part = diskimg_crc32c(0, buf + start, cut);
            g_assert_cmphex(diskimg_crc32c(part, buf + start + cut, len - cut), ==, want);
        }
    }
    g_rand_free(r);
}

static void test_load_name(void)
{
    struct scratch t;
    GError *err = NULL;
    char *name = NULL;

    scratch_open(&t, "name.raw", 4096);
    g_assert_cmpint(diskimg_node_pwrite(t.file, "base.img\0junk", 13, 100, 0, &err), ==, 0);
    /* stops at the NUL */
    g_assert_cmpint(diskimg_load_name(t.file, 100, 13, 1023, "test name", &name, &err), ==, 0);
    g_assert_cmpstr(name, ==, "base.img");
    g_free(name);
    /* no NUL: all `size` bytes */
    g_assert_cmpint(diskimg_load_name(t.file, 100, 4, 1023, "test name", &name, &err), ==, 0);
    g_assert_cmpstr(name, ==, "base");
    g_free(name);
    /* empty: none */
    g_assert_cmpint(diskimg_node_pwrite(t.file, "\0", 1, 200, 0, &err), ==, 0);
    g_assert_cmpint(diskimg_load_name(t.file, 200, 8, 1023, "test name", &name, &err), ==, 0);
    g_assert_null(name);
    /* past the end of the file, or over the cap: refused as corrupt */
    g_assert_cmpint(diskimg_load_name(t.file, 4000, 200, 1023, "test name", &name, &err), ==,
                    -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "test name"));
    g_clear_error(&err);
    g_assert_cmpint(diskimg_load_name(t.file, 0, 2048, 1023, "test name", &name, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_clear_error(&err);
    g_assert_null(name);
    scratch_close(&t);
}

/* --------------------------------------------------------------- block map */

static void test_blockmap_runs(void)
{
    const struct diskimg_blockmap_layout layout = {
        .struct_size = sizeof(layout), .block_size = 4096, .base = 1000, .unit = 4096,
        .unallocated = 0xffffffff, .zero = 0xfffffffe };
    diskimg_blockmap *m;
    enum diskimg_blockmap_kind kind;
    uint64_t host;
    GError *err = NULL;

    g_assert_cmpint(diskimg_blockmap_new_filled(&m, &layout, 512, 8, 0xffffffff, &err), ==, 0);
    g_assert_cmpuint(diskimg_blockmap_count(m), ==, 8);
    diskimg_blockmap_set(m, 2, 5);
    diskimg_blockmap_set(m, 3, 6);
    diskimg_blockmap_set(m, 4, 9);
    diskimg_blockmap_set(m, 5, 0xfffffffe);
    g_assert_cmphex(diskimg_blockmap_value(m, 4), ==, 9);
    /* Blocks 0-1 unallocated; 2-3 contiguous; 4 elsewhere; 5 zero. */
    g_assert_cmpuint(diskimg_blockmap_run(m, 100, 1 << 20, &kind, &host), ==, 2 * 4096 - 100);
    g_assert_cmpint(kind, ==, DISKIMG_BLOCKMAP_UNALLOCATED);
    g_assert_cmpuint(diskimg_blockmap_run(m, 2 * 4096 + 10, 1 << 20, &kind, &host), ==,
                     2 * 4096 - 10);
    g_assert_cmpint(kind, ==, DISKIMG_BLOCKMAP_MAPPED);
    g_assert_cmpuint(host, ==, 1000 + 5 * 4096 + 10);
    g_assert_cmpuint(diskimg_blockmap_run(m, 4 * 4096, 1 << 20, &kind, &host), ==, 4096);
    g_assert_cmpuint(host, ==, 1000 + 9 * 4096);
    g_assert_cmpuint(diskimg_blockmap_run(m, 5 * 4096, 1 << 20, &kind, &host), ==, 4096);
    g_assert_cmpint(kind, ==, DISKIMG_BLOCKMAP_ZERO);
    g_assert_cmpint(diskimg_blockmap_get(m, 5, &host), ==, DISKIMG_BLOCKMAP_ZERO);
    /* Clamped to the request; the last run ends with the map. */
    g_assert_cmpuint(diskimg_blockmap_run(m, 6 * 4096, 100, &kind, &host), ==, 100);
    g_assert_cmpuint(diskimg_blockmap_run(m, 6 * 4096, 1 << 20, &kind, &host), ==, 2 * 4096);
    diskimg_blockmap_free(m);
    diskimg_blockmap_free(NULL);
    g_assert_false(diskimg_blockmap_is_dirty(NULL));
    g_assert_cmpuint(diskimg_blockmap_count(NULL), ==, 0);
    /* a layout without its struct_size (or block size) is refused */
    const struct diskimg_blockmap_layout unset = { .block_size = 4096, .unit = 4096 };
    g_assert_cmpint(diskimg_blockmap_new_filled(&m, &unset, 0, 8, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_null(m);
    g_clear_error(&err);
}

static void test_blockmap_write_back(void)
{
    const struct diskimg_blockmap_layout layout = {
        .struct_size = sizeof(layout), .block_size = 512, .unit = 512 };
    struct scratch t;
    diskimg_blockmap *m, *again;
    GError *err = NULL;

    scratch_open(&t, "blockmap.raw", 8192);
    /* 300 entries at offset 64: three chunks of 128 entries. */
    g_assert_cmpint(diskimg_blockmap_new_filled(&m, &layout, 64, 300, 0, &err), ==, 0);
    g_assert_true(diskimg_blockmap_is_dirty(m));
    g_assert_cmpint(diskimg_blockmap_write_back(m, t.file, &err), ==, 0);
    g_assert_false(diskimg_blockmap_is_dirty(m));
    diskimg_blockmap_set(m, 299, 0x01020304);
    g_assert_true(diskimg_blockmap_is_dirty(m));
    /* Only the last chunk goes out: a byte of the first chunk's bytes
     * changed behind the map's back stays as it is. */
    uint8_t mark = 0x5a;
    g_assert_cmpint(diskimg_node_pwrite(t.file, &mark, 1, 64, 0, &err), ==, 0);
    g_assert_cmpint(diskimg_blockmap_write_back(m, t.file, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(byte_at(&t, 64), ==, 0x5a);
    g_assert_cmpint(diskimg_blockmap_load(&again, &layout, t.file, 64, 300, "test map", &err),
                    ==, 0);
    g_assert_cmphex(diskimg_blockmap_value(again, 299), ==, 0x01020304);
    g_assert_cmphex(diskimg_blockmap_value(again, 0), ==, 0x5a);
    g_assert_false(diskimg_blockmap_is_dirty(again));
    uint8_t raw[4];
    g_assert_cmpint(diskimg_node_pread(t.file, raw, 4, 64 + 299 * 4, &err), ==, 0);
    g_assert_cmphex(diskimg_le32(raw), ==, 0x01020304);   /* little endian on disk */
    diskimg_blockmap_free(again);
    /* A table past the end of the file is refused before allocating. */
    g_assert_cmpint(diskimg_blockmap_load(&again, &layout, t.file, 64, 100000, "test map",
                                          &err), ==, -1);
    g_assert_null(again);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "test map"));
    g_clear_error(&err);
    diskimg_blockmap_free(m);
    scratch_close(&t);
}

struct pairs {
    uint32_t first[8], later[8];
    unsigned n;
};

static void collect_pair(void *opaque, uint32_t first, uint32_t later)
{
    struct pairs *p = opaque;

    g_assert_cmpuint(p->n, <, 8);
    p->first[p->n] = first;
    p->later[p->n++] = later;
}

static void test_blockmap_overlaps(void)
{
    /* Entries in 512-byte units, blocks of 1024 bytes: values 1 apart
     * overlap, 2 apart do not. */
    const struct diskimg_blockmap_layout layout = {
        .struct_size = sizeof(layout), .block_size = 1024, .unit = 512 };
    diskimg_blockmap *m;
    struct pairs p = { 0 };
    GError *err = NULL;

    g_assert_cmpint(diskimg_blockmap_new_filled(&m, &layout, 0, 6, 0, &err), ==, 0);
    diskimg_blockmap_set(m, 0, 10);
    diskimg_blockmap_set(m, 1, 12);
    diskimg_blockmap_set(m, 2, 10);   /* same as block 0 */
    diskimg_blockmap_set(m, 3, 13);   /* inside block 1 */
    diskimg_blockmap_set(m, 4, 20);
    g_assert_cmpint(diskimg_blockmap_find_overlaps(m, collect_pair, &p, &err), ==, 0);
    g_assert_cmpuint(p.n, ==, 2);
    g_assert_cmpuint(p.first[0], ==, 0);
    g_assert_cmpuint(p.later[0], ==, 2);
    g_assert_cmpuint(p.first[1], ==, 1);
    g_assert_cmpuint(p.later[1], ==, 3);
    diskimg_blockmap_free(m);
}

/* A fill callback that maps the run's blocks to values from 20 on, one
 * after the other, and writes the data there with diskimg_write_padded. */
struct fill_ctx {
    diskimg_blockmap *m;
    diskimg_node *file;
    uint32_t next_value;
    unsigned calls;
};

static int fill_blocks(void *opaque, const uint8_t *data, uint64_t len, uint64_t offset,
                       GError **errp)
{
    struct fill_ctx *f = opaque;
    uint32_t first = (uint32_t)(offset / 512), end = (uint32_t)((offset + len + 511) / 512);
    uint64_t host = (uint64_t)f->next_value * 512;

    f->calls++;
    for (uint32_t i = first; i < end; i++)
        diskimg_blockmap_set(f->m, i, f->next_value++);
    return diskimg_write_padded(f->file, host, offset % 512, data, len,
                                (uint64_t)end * 512 - (offset + len), false, errp);
}

static void test_blockmap_requests(void)
{
    /* 8 blocks of 512 bytes, value v at file offset v * 512; 0 unallocated,
     * 1 zero. */
    const struct diskimg_blockmap_layout layout = {
        .struct_size = sizeof(layout), .block_size = 512, .unit = 512, .unallocated = 0,
        .zero = 1 };
    struct scratch t;
    diskimg_blockmap *m;
    GError *err = NULL;
    uint8_t buf[8 * 512], data[700];

    scratch_open(&t, "blockmap-io.raw", 64 * 512);
    g_assert_cmpint(diskimg_blockmap_new_filled(&m, &layout, 0, 8, 0, &err), ==, 0);
    diskimg_blockmap_set(m, 1, 10);
    diskimg_blockmap_set(m, 2, 1);
    /* read: block 1 from the file (the scratch pattern), the rest zeroes */
    g_assert_cmpint(diskimg_blockmap_read(m, t.file, buf, sizeof(buf), 0, &err), ==, 0);
    g_assert_true(diskimg_is_zero(buf, 512));
    for (unsigned i = 0; i < 512; i++)
        g_assert_cmpuint(buf[512 + i], ==, (uint8_t)(10 * 512 + i));
    g_assert_true(diskimg_is_zero(buf + 1024, sizeof(buf) - 1024));

    /* write 700 bytes from 300: into block 0 (unallocated) and block 1
     * (mapped, in place) -- the fill gets only block 0's part */
    memset(data, 0xc3, sizeof(data));
    struct fill_ctx f = { m, t.file, 20, 0 };
    g_assert_cmpint(diskimg_blockmap_write(m, t.file, data, 700, 300, fill_blocks, &f, &err),
                    ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(f.calls, ==, 1);
    g_assert_cmphex(diskimg_blockmap_value(m, 0), ==, 20);
    /* padded: the head of block 0's new storage was zeroed */
    g_assert_cmpuint(byte_at(&t, 20 * 512 + 299), ==, 0);
    g_assert_cmpuint(byte_at(&t, 20 * 512 + 300), ==, 0xc3);
    g_assert_cmpuint(byte_at(&t, 10 * 512 + 487), ==, 0xc3);   /* 300 + 700 - 512 - 1 */
    g_assert_cmpuint(byte_at(&t, 10 * 512 + 488), ==, (uint8_t)(10 * 512 + 488));
    g_assert_cmpint(diskimg_blockmap_read(m, t.file, buf, 1024, 0, &err), ==, 0);
    g_assert_true(diskimg_is_zero(buf, 300));
    g_assert_cmpuint(buf[300], ==, 0xc3);
    g_assert_cmpuint(buf[999], ==, 0xc3);

    /* zero_mapped: mapped block 1 zeroed in the file, nothing allocated */
    g_assert_cmpint(diskimg_blockmap_zero_mapped(m, t.file, 512, 4 * 512, 0, &err), ==, 0);
    g_assert_cmpuint(byte_at(&t, 10 * 512), ==, 0);
    g_assert_cmpuint(byte_at(&t, 10 * 512 + 511), ==, 0);
    g_assert_cmpuint(byte_at(&t, 11 * 512), ==, (uint8_t)(11 * 512));
    g_assert_cmphex(diskimg_blockmap_value(m, 3), ==, 0);
    g_assert_cmpuint(byte_at(&t, 20 * 512 + 300), ==, 0xc3);   /* outside the range */
    diskimg_blockmap_free(m);
    scratch_close(&t);
}

/* ------------------------------------------------------ second-level tables */

/* Entries across cache blocks of a table larger than one block, in both
 * byte orders, written back where they belong and nowhere else. */
/* ------------------------------------------------------------ measure */

/* A sparse raw file with data in [0, 100), [3 MiB - 1, 3 MiB + 1) and
 * [7 MiB + 10, 7 MiB + 20): in 1 MiB blocks 0, 2, 3 and 7 hold data; in
 * 4 MiB blocks, both. */
static void test_measure_data_blocks(void)
{
    g_autofree char *path = test_tmp_path("measure.raw");
    const uint64_t M = 1 << 20;
    uint8_t data[100];
    GError *err = NULL;
    uint64_t blocks = 0;

    memset(data, 0x5a, sizeof(data));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 8 * M), ==, 0);
    g_assert_cmpint(pwrite(fd, data, 100, 0), ==, 100);
    g_assert_cmpint(pwrite(fd, data, 2, 3 * M - 1), ==, 2);
    g_assert_cmpint(pwrite(fd, data, 10, 7 * M + 10), ==, 10);
    close(fd);
    struct diskimg_open_params p = { .struct_size = sizeof(p), .format = "raw",
                                     .flags = DISKIMG_OPEN_NO_LOCK };
    diskimg_node *n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    struct diskimg_extent hole = { .struct_size = sizeof(hole) };
    g_assert_cmpint(diskimg_node_block_status(n, 5 * M, M, &hole, &err), ==, 0);
    if (hole.flags & DISKIMG_BS_DATA) {
        g_test_skip("the scratch file system reports no holes");
        diskimg_close(n);
        return;
    }
    g_assert_cmpint(diskimg_measure_data_blocks(n, 8 * M, M, &blocks, &err), ==, 0);
    g_assert_cmpuint(blocks, ==, 4);
    g_assert_cmpint(diskimg_measure_data_blocks(n, 8 * M, 4 * M, &blocks, &err), ==, 0);
    g_assert_cmpuint(blocks, ==, 2);
    /* Only the first 3 MiB: blocks 0 and 2. */
    g_assert_cmpint(diskimg_measure_data_blocks(n, 3 * M, M, &blocks, &err), ==, 0);
    g_assert_cmpuint(blocks, ==, 2);
    g_assert_cmpint(diskimg_measure_data_blocks(n, 8 * M, 0, &blocks, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    diskimg_close(n);
}

static void test_table2(void)
{
    const uint64_t table_off = 128 * 1024, table_bytes = 256 * 1024, len = 1024 * 1024;

    for (int order = 0; order < 2; order++) {
        struct scratch t;
        GError *err = NULL;
        uint64_t run[16], v = 0;

        scratch_open(&t, "table2.raw", len);
        diskimg_table2 *tb = diskimg_table2_new(t.file, "test table", table_bytes, 64 * 1024,
                                                order ? DISKIMG_LITTLE_ENDIAN
                                                      : DISKIMG_BIG_ENDIAN,
                                                256 * 1024, &err);
        g_assert_no_error(err);
        g_assert_cmpuint(diskimg_table2_entries(tb), ==, table_bytes / 8);
        /* What the file holds is read as stored: bytes 0x00..0x07 at the
         * table start (the scratch pattern, i & 0xff). */
        g_assert_cmpint(diskimg_table2_get(tb, table_off, 1, &v, &err), ==, 0);
        g_assert_cmphex(v, ==, order ? 0x0f0e0d0c0b0a0908ull : 0x08090a0b0c0d0e0full);
        g_assert_cmpint(diskimg_table2_set(tb, table_off, 0, 0x1122334455667788ull, &err), ==, 0);
        g_assert_cmpint(diskimg_table2_set(tb, table_off, 8191, 7, &err), ==, 0);
        g_assert_cmpint(diskimg_table2_set(tb, table_off, 8192, 8, &err), ==, 0);
        g_assert_cmpint(diskimg_table2_set(tb, table_off, 32767, 9, &err), ==, 0);
        g_assert_cmpint(diskimg_table2_set(tb, table_off, 32768, 1, &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);   /* past the end */
        g_clear_error(&err);
        /* a run stops at the end of a cache block (8192 entries of 64 KiB) */
        g_assert_cmpint(diskimg_table2_get_run(tb, table_off, 8190, 16, run, &err), ==, 2);
        g_assert_cmpuint(run[1], ==, 7);
        g_assert_cmpint(diskimg_table2_get(tb, table_off, 8192, &v, &err), ==, 0);
        g_assert_cmpuint(v, ==, 8);
        /* a fresh table reads as zeroes without reading the file */
        g_assert_cmpint(diskimg_table2_fresh(tb, 512 * 1024, &err), ==, 0);
        g_assert_cmpint(diskimg_table2_get(tb, 512 * 1024, 3, &v, &err), ==, 0);
        g_assert_cmpuint(v, ==, 0);
        g_assert_cmpint(diskimg_table2_flush(tb, &err), ==, 0);
        g_assert_no_error(err);
        diskimg_table2_free(tb);

        uint8_t b[8];
        g_assert_cmpint(diskimg_node_pread(t.file, b, 8, table_off, &err), ==, 0);
        g_assert_cmphex(order ? diskimg_le64(b) : diskimg_be64(b), ==, 0x1122334455667788ull);
        g_assert_cmpint(diskimg_node_pread(t.file, b, 8, table_off + 32767 * 8, &err), ==, 0);
        g_assert_cmpuint(order ? diskimg_le64(b) : diskimg_be64(b), ==, 9);
        /* untouched bytes keep the pattern */
        g_assert_cmpuint(byte_at(&t, table_off - 1), ==, (uint8_t)(table_off - 1));
        g_assert_cmpuint(byte_at(&t, table_off + 8 * 2), ==, (uint8_t)(table_off + 8 * 2));
        scratch_close(&t);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    GError *err = NULL;
    if (diskimg_init(&err) < 0)
        g_error("%s", err->message);
    test_tmpdir_create("diskimg-toolkit", NULL);
    g_test_add_func("/toolkit/reader/fields", test_reader_fields);
    g_test_add_func("/toolkit/reader/bounds", test_reader_bounds);
    g_test_add_func("/toolkit/reader/load-table", test_load_table);
    g_test_add_func("/toolkit/reader/load-u64-table", test_load_u64_table);
    g_test_add_func("/toolkit/reader/load-name", test_load_name);
    g_test_add_func("/toolkit/mcache/bounds", test_mcache_bounds);
    g_test_add_func("/toolkit/mcache/write-back", test_mcache_write_back);
    g_test_add_func("/toolkit/mcache/dependency", test_mcache_dependency);
    g_test_add_func("/toolkit/mcache/bad-offset-hook", test_mcache_bad_offset_hook);
    g_test_add_func("/toolkit/tracker/drain", test_tracker_drain);
    g_test_add_func("/toolkit/tracker/exclusive", test_tracker_exclusive);
    g_test_add_func("/toolkit/tracker/claims", test_tracker_claims);
    g_test_add_func("/toolkit/tail/grow", test_tail_grow);
    g_test_add_func("/toolkit/crc32c/vectors", test_crc32c_vectors);
    g_test_add_func("/toolkit/crc32c/slices", test_crc32c_slices);
    g_test_add_func("/toolkit/blockmap/runs", test_blockmap_runs);
    g_test_add_func("/toolkit/blockmap/write-back", test_blockmap_write_back);
    g_test_add_func("/toolkit/blockmap/overlaps", test_blockmap_overlaps);
    g_test_add_func("/toolkit/blockmap/requests", test_blockmap_requests);
    g_test_add_func("/toolkit/table2", test_table2);
    g_test_add_func("/toolkit/measure-data-blocks", test_measure_data_blocks);
    int ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
