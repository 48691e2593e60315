/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the qcow2 plugin internals: the header validator against
 * damaged and random headers, the codecs, the bounds of the metadata
 * cache, internal snapshots and persistent bitmaps (round trips checked
 * with the plugin's own check, hostile tables and directories) and
 * encryption (LUKS and AES round trips, hostile encryption headers), and
 * concurrent requests on one handle through the descriptor's callbacks.
 * Built with the plugin's sources; file I/O goes through the core with
 * the posix plugin of the build tree, crypto through its nettle plugin.
 */
#include <string.h>
#include <unistd.h>

#include <diskimg/core.h>

#include "qcow2.h"

#define CS 65536u

/* A valid v3 header cluster as qemu-img create writes it. */
static uint8_t *valid_header(void)
{
    struct qcow2_header h = { 0 };
    h.version = 3;
    h.cluster_bits = 16;
    h.size = 1ull << 30;
    h.l1_size = 2;
    h.l1_offset = 3 * CS;
    h.reftable_offset = CS;
    h.reftable_clusters = 1;
    h.refcount_order = 4;
    h.header_length = QCOW2_HEADER_LEN_DEFAULT;
    h.backing_file = g_strdup("base.qcow2");
    h.backing_fmt = g_strdup("qcow2");
    uint8_t *buf = g_malloc0(CS);
    g_assert_cmpint(qcow2_header_build(&h, buf, CS, NULL), ==, 0);
    qcow2_header_clear(&h);
    return buf;
}

static void test_header_valid(void)
{
    g_autofree uint8_t *buf = valid_header();
    struct qcow2_header h;
    GError *err = NULL;
    g_assert_cmpint(qcow2_header_parse(&h, buf, CS, 4 * CS, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpstr(h.backing_file, ==, "base.qcow2");
    g_assert_cmpstr(h.backing_fmt, ==, "qcow2");
    g_assert_cmpuint(h.size, ==, 1ull << 30);
    qcow2_header_clear(&h);
}

struct damage {
    unsigned off, width;
    uint64_t value;
    const char *expect;     /* substring of the error message */
};

static const struct damage damages[] = {
    { 0, 4, 0x12345678, "not in qcow2 format" },
    { 4, 4, 1, "Unsupported qcow2 version 1" },
    { 4, 4, 4, "Unsupported qcow2 version 4" },
    { 20, 4, 8, "Unsupported cluster size" },
    { 20, 4, 22, "Unsupported cluster size" },
    { 8, 8, CS + 8, "backing file offset" },
    { 16, 4, 2000, "Backing file name too long" },
    { 36, 4, 0x7fffffff, "L1 table too large" },
    { 36, 4, 1, "L1 table is too small" },
    { 40, 8, 3 * CS + 8, "Invalid L1 table offset" },
    { 40, 8, 1ull << 63, "Invalid L1 table offset" },   /* qemu: ends past 2^63 */
    { 24, 8, UINT64_MAX, "too big" },
    { 48, 8, CS + 512, "reference count table offset" },
    { 56, 4, 0, "does not contain a reference count table" },
    { 56, 4, 1000, "Reference count table too large" },
    { 60, 4, 70000, "Too many snapshots" },
    { 32, 4, 7, "Unsupported encryption method" },
    { 72, 8, 1ull << 40, "Unsupported qcow2 feature(s): Unknown incompatible feature" },
    { 72, 8, QCOW2_INCOMPAT_COMPRESS, "Compression type" },
    { 96, 4, 7, "may not exceed 64 bits" },
    { 100, 4, 96, "header too short" },
    { 100, 4, CS * 2, "exceeds cluster size" },
    { 104, 1, 5, "Compression type" },
    { 88, 8, QCOW2_AUTOCLEAR_DATA_RAW, "data-file-raw requires a data file" },
    { 116, 4, 0xfffffff0, "too large" },   /* length of the first extension */
};

static void put(uint8_t *p, unsigned width, uint64_t v)
{
    switch (width) {
    case 1: *p = (uint8_t)v; break;
    case 2: diskimg_put_be16(p, (uint16_t)v); break;
    case 4: diskimg_put_be32(p, (uint32_t)v); break;
    default: diskimg_put_be64(p, v); break;
    }
}

static void test_header_damaged(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(damages); i++) {
        g_autofree uint8_t *buf = valid_header();
        struct qcow2_header h;
        GError *err = NULL;
        put(buf + damages[i].off, damages[i].width, damages[i].value);
        int ret = qcow2_header_parse(&h, buf, CS, 4 * CS, &err);
        if (ret == 0 || !err || !strstr(err->message, damages[i].expect))
            g_error("damage %zu (offset %u): got %d, error '%s', expected '%s'", i,
                    damages[i].off, ret, err ? err->message : "(none)", damages[i].expect);
        g_error_free(err);
    }
}

/* A header cut short anywhere is refused with an error, until everything
 * it points to within the cluster (extensions, backing file name) is
 * there; from then on every longer buffer is accepted. */
static void test_header_truncated(void)
{
    g_autofree uint8_t *buf = valid_header();
    size_t first_ok = 0;
    for (size_t len = 0; len <= CS; len++) {
        struct qcow2_header h;
        GError *err = NULL;
        int ret = qcow2_header_parse(&h, buf, len, 4 * CS, &err);
        if (ret == 0) {
            g_assert_no_error(err);
            g_assert_cmpstr(h.backing_file, ==, "base.qcow2");
            qcow2_header_clear(&h);
            if (!first_ok)
                first_ok = len;
            continue;
        }
        g_assert_cmpint(ret, <, 0);
        g_assert_nonnull(err);
        g_assert_cmpstr(err->message, !=, "");
        g_error_free(err);
        if (first_ok)
            g_error("accepted %zu bytes, then refused %zu", first_ok, len);
    }
    /* the v3 header, its extensions and the name all lie past its 112 bytes */
    g_assert_cmpuint(first_ok, >, QCOW2_HEADER_LEN_DEFAULT);
}

/* Random bytes over the header and extension area: never a crash, and
 * every accepted header satisfies the invariants the rest relies on. */
static void test_header_fuzz(void)
{
    GRand *r = g_rand_new_with_seed(42);
    for (int iter = 0; iter < 20000; iter++) {
        g_autofree uint8_t *buf = valid_header();
        int n = g_rand_int_range(r, 1, 8);
        for (int k = 0; k < n; k++)
            buf[g_rand_int_range(r, 0, 600)] = (uint8_t)g_rand_int(r);
        struct qcow2_header h;
        GError *err = NULL;
        if (qcow2_header_parse(&h, buf, CS, 4 * CS, &err) < 0) {
            g_assert_nonnull(err);
            g_assert_cmpuint(strlen(err->message), >, 0);
            g_error_free(err);
            continue;
        }
        g_assert_cmpuint(h.cluster_bits, >=, 9);
        g_assert_cmpuint(h.cluster_bits, <=, 21);
        g_assert_cmpuint(h.refcount_order, <=, 6);
        g_assert_cmpuint((uint64_t)h.l1_size * 8, <=, QCOW2_MAX_L1_BYTES);
        g_assert_cmpuint(h.l1_offset % (1u << h.cluster_bits), ==, 0);
        g_assert_cmpuint(h.reftable_offset % (1u << h.cluster_bits), ==, 0);
        g_assert_true(!h.backing_file || strlen(h.backing_file) <= QCOW2_MAX_BACKING_NAME);
        qcow2_header_clear(&h);
    }
    g_rand_free(r);
}

/* ------------------------------------------------------------ codecs */

static void codec_roundtrip(enum diskimg_codec codec, int window)
{
    size_t n = CS;
    g_autofree uint8_t *in = g_malloc(n), *out = g_malloc(n), *back = g_malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)("qcow2 compressed cluster text "[i % 30]);
    GError *err = NULL;
    int64_t c = diskimg_compress(codec, -1, window, in, n, out, n - 1, &err);
    g_assert_no_error(err);
    g_assert_cmpint(c, >, 0);
    g_assert_cmpint(c, <, (int64_t)n);
    /* trailing garbage (sector padding) is ignored */
    memset(out + c, 0xaa, MIN(512, n - (size_t)c));
    int64_t d = diskimg_decompress(codec, 0, out, MIN((size_t)c + 512, n), back, n, &err);
    g_assert_no_error(err);
    g_assert_cmpint(d, ==, (int64_t)n);
    g_assert_cmpmem(in, n, back, n);
}

static void test_codecs(void)
{
    codec_roundtrip(DISKIMG_CODEC_DEFLATE, 12);
    codec_roundtrip(DISKIMG_CODEC_DEFLATE, 15);
    codec_roundtrip(DISKIMG_CODEC_ZLIB, 0);
    codec_roundtrip(DISKIMG_CODEC_GZIP, 0);
    codec_roundtrip(DISKIMG_CODEC_ZSTD, 0);
}

static void test_codec_incompressible(void)
{
    size_t n = 4096;
    g_autofree uint8_t *in = g_malloc(n), *out = g_malloc(n);
    GRand *r = g_rand_new_with_seed(7);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)g_rand_int(r);
    g_rand_free(r);
    GError *err = NULL;
    g_assert_cmpint(diskimg_compress(DISKIMG_CODEC_DEFLATE, -1, 12, in, n, out, n - 1, &err), ==,
                    0);
    g_assert_cmpint(diskimg_compress(DISKIMG_CODEC_ZSTD, -1, 0, in, n, out, n - 1, &err), ==, 0);
    g_assert_no_error(err);
    /* garbage does not decompress */
    g_assert_cmpint(diskimg_decompress(DISKIMG_CODEC_ZSTD, 0, in, n, out, n, &err), <, 0);
    g_assert_nonnull(err);
    g_clear_error(&err);
}

/* ------------------------------------------------------------ test images */

/* A qcow2 image made and opened by the plugin itself, on a raw file node. */
struct timg {
    char *dir, *path;
    diskimg_node *raw;
    struct qcow2 *s;
};

static void timg_open(struct timg *t, unsigned flags)
{
    GError *err = NULL;
    t->s = qcow2_open_file(NULL, diskimg_node_file(t->raw), t->path, flags, NULL, &err);
    g_assert_no_error(err);
    g_assert_nonnull(t->s);
}

/* A fresh image in a scratch directory, created with create-options
 * `options` (NULL = defaults), not opened as qcow2 yet. */
static void timg_create_with(struct timg *t, uint64_t size, const diskimg_options *options)
{
    t->dir = g_dir_make_tmp("qcow2-test-XXXXXX", NULL);
    t->path = g_build_filename(t->dir, "img.qcow2", NULL);
    g_assert_true(g_file_set_contents(t->path, "", 0, NULL));
    struct diskimg_open_params p = { .struct_size = sizeof(p), .format = "raw",
                                     .flags = DISKIMG_OPEN_NO_LOCK | DISKIMG_OPEN_RDWR };
    GError *err = NULL;
    t->raw = diskimg_open(t->path, &p, &err);
    g_assert_no_error(err);
    struct diskimg_format_create_args a = { .struct_size = sizeof(a), .filename = t->path,
                                            .file = diskimg_node_file(t->raw), .size = size,
                                            .options = options };
    g_assert_cmpint(qcow2_create(&a, &err), ==, 0);
    g_assert_no_error(err);
}

static void timg_create(struct timg *t, uint64_t size)
{
    timg_create_with(t, size, NULL);
    timg_open(t, DISKIMG_OPEN_RDWR);
}

static void timg_close(struct timg *t)
{
    qcow2_close(t->s);
    t->s = NULL;
}

static void timg_reopen(struct timg *t, unsigned flags)
{
    timg_close(t);
    timg_open(t, flags);
}

static void timg_destroy(struct timg *t)
{
    timg_close(t);
    diskimg_close(t->raw);
    unlink(t->path);
    rmdir(t->dir);
    g_free(t->path);
    g_free(t->dir);
}

/* The plugin's own check finds neither leaks nor corruptions. */
static void assert_clean(struct qcow2 *s)
{
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    GError *err = NULL;
    g_assert_cmpint(qcow2_check(s, 0, &res, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.leaks, ==, 0);
    g_assert_cmpuint(res.check_errors, ==, 0);
}

static void fill_write(struct qcow2 *s, uint8_t v, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *b = g_malloc(len);
    memset(b, v, len);
    GError *err = NULL;
    g_assert_cmpint(qcow2_write(s, b, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

static void assert_reads(struct qcow2 *s, uint8_t v, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *b = g_malloc(len), *want = g_malloc(len);
    memset(want, v, len);
    GError *err = NULL;
    g_assert_cmpint(qcow2_read(s, b, len, off, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpmem(b, len, want, len);
}

static void raw_put(struct timg *t, uint64_t off, unsigned width, uint64_t v)
{
    uint8_t b[8];
    put(b, width, v);
    g_assert_cmpint(diskimg_node_pwrite(diskimg_node_file(t->raw), b, width, off, 0, NULL),
                    ==, 0);
}

/* Opening must fail with an error (any message), never crash. */
static void assert_open_fails(struct timg *t, const char *expect)
{
    GError *err = NULL;
    struct qcow2 *s = qcow2_open_file(NULL, diskimg_node_file(t->raw), t->path, 0, NULL, &err);
    if (s || !err || (expect && !strstr(err->message, expect)))
        g_error("open: got %p, error '%s', expected '%s'", (void *)s,
                err ? err->message : "(none)", expect ? expect : "(any)");
    g_error_free(err);
}

/* ------------------------------------------------------------ guard, repair */

#define MiB (1ull << 20)

static uint64_t raw_get64(struct timg *t, uint64_t off)
{
    uint8_t b[8];
    g_assert_cmpint(diskimg_node_pread(diskimg_node_file(t->raw), b, 8, off, NULL), ==, 0);
    return diskimg_be64(b);
}

static bool probe_cluster_5(void *opaque, uint64_t off, uint64_t len)
{
    (void)opaque;
    return off < 6 * 4096 && off + len > 5 * 4096;
}

/* The core guard: sorted ranges that may overlap, allowed kinds, probes. */
static void test_guard_ranges(void)
{
    diskimg_guard *g = diskimg_guard_new();
    diskimg_guard_add(g, 1, "a", 0, 4096);
    diskimg_guard_add(g, 2, "big", 8192, 1 << 20);
    diskimg_guard_add(g, 4, "inside", 16384, 512);
    diskimg_guard_add(g, 8, "empty", 100, 0);
    diskimg_guard_add_probe(g, 16, "probe", probe_cluster_5, NULL);
    g_assert_cmpstr(diskimg_guard_find(g, 0, 0, 1), ==, "a");
    g_assert_null(diskimg_guard_find(g, 0, 4096, 4096));
    g_assert_cmpstr(diskimg_guard_find(g, 0, 4095, 2), ==, "a");
    g_assert_cmpstr(diskimg_guard_find(g, 2, 16384, 1), ==, "inside");
    g_assert_null(diskimg_guard_find(g, 2 | 4, 16384, 1));
    g_assert_cmpstr(diskimg_guard_find(g, 0, (1 << 20) + 8191, 100), ==, "big");
    g_assert_null(diskimg_guard_find(g, 0, (1 << 20) + 8192, 100));
    g_assert_null(diskimg_guard_find(g, 1, 0, 4096));
    g_assert_null(diskimg_guard_find(g, 0, 50, 0));
    g_assert_cmpstr(diskimg_guard_find(g, 2, 5 * 4096 + 10, 1), ==, "probe");
    g_assert_cmpstr(diskimg_guard_find(g, 0, UINT64_MAX - 10, 100), ==, NULL);
    diskimg_guard_clear(g, 2);
    g_assert_null(diskimg_guard_find(g, 4, 9000, 1));
    g_assert_cmpstr(diskimg_guard_find(g, 0, 16000, 1000), ==, "inside");
    diskimg_guard_free(g);
}

/* Damaged refcounts call an L2 table free: the next allocation would hand
 * it out as data.  The guard refuses and marks the image corrupt (qemu's
 * overlap check); the guest data already there stays readable. */
static void test_guard_allocation(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 16 * MiB);
    fill_write(t.s, 7, 0, 65536);
    uint64_t l2 = t.s->l1[0] & QCOW2_OFFSET_MASK, cs = t.s->cluster_size;
    uint64_t rb = t.s->reftable[0];
    timg_close(&t);
    raw_put(&t, rb + 2 * (l2 / cs), 2, 0);
    timg_open(&t, DISKIMG_OPEN_RDWR);
    t.s->free_cluster_index = 0;
    g_autofree uint8_t *b = g_malloc0(65536);
    g_assert_cmpint(qcow2_write(t.s, b, 65536, 4 * MiB, 0, &err), <, 0);
    g_assert_nonnull(strstr(err->message, "Preventing invalid write on metadata (overlaps with "
                                          "active L2 table)"));
    g_clear_error(&err);
    g_assert_true(t.s->corrupt);
    g_assert_true(raw_get64(&t, QH_INCOMPAT) & QCOW2_INCOMPAT_CORRUPT);
    assert_reads(t.s, 7, 0, 65536);
    timg_destroy(&t);
}

/* A refcount table entry naming a data cluster: check reports the shared
 * block, repair writes a new refcount structure and touches neither the
 * data nor anything else; the image is clean afterwards. */
static void test_check_rebuild(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 16 * MiB);
    fill_write(t.s, 9, 0, 3 * 65536);
    uint64_t l2 = t.s->l1[0] & QCOW2_OFFSET_MASK, rt = t.s->h.reftable_offset;
    timg_close(&t);
    uint64_t data = raw_get64(&t, l2 + 8) & QCOW2_OFFSET_MASK;   /* guest cluster 1 */
    raw_put(&t, rt, 8, data);
    timg_open(&t, 0);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(qcow2_check(t.s, 0, &res, &err), ==, 0);
    g_assert_cmpuint(res.corruptions, >, 0);
    timg_reopen(&t, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CHECK);
    res = (struct diskimg_check_result){ .struct_size = sizeof(res) };
    g_assert_cmpint(qcow2_check(t.s, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS, &res,
                                &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.check_errors, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, >, 0);
    g_assert_false(t.s->corrupt);
    assert_clean(t.s);
    assert_reads(t.s, 9, 0, 3 * 65536);
    timg_reopen(&t, 0);
    assert_clean(t.s);
    assert_reads(t.s, 9, 0, 3 * 65536);
    timg_destroy(&t);
}

/* An L1 entry naming the L1 table itself: the COPIED repair must not
 * write flag fixes into a cluster that is also something else (here the
 * active L1 table, referenced twice). */
static void test_check_copied_not_l2(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 2048 * MiB);     /* L1 entries beyond the first */
    fill_write(t.s, 3, 0, 65536);
    uint64_t l1 = t.s->l1_offset;
    timg_close(&t);
    raw_put(&t, l1 + 8, 8, l1);
    timg_open(&t, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CHECK);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(qcow2_check(t.s, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS, &res,
                                &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.corruptions, >, 0);    /* not repairable safely: still counted */
    timg_close(&t);
    g_assert_cmpuint(raw_get64(&t, l1 + 8), ==, l1);
    timg_open(&t, 0);
    assert_reads(t.s, 3, 0, 65536);
    timg_destroy(&t);
}

/* ------------------------------------------------------------ snapshots */

static void snap_create(struct qcow2 *s, const char *name)
{
    struct diskimg_snapshot sn = { .struct_size = sizeof(sn), .name = name, .date_sec = 1,
                                   .date_nsec = 2 };
    GError *err = NULL;
    g_assert_cmpint(qcow2_snapshot_create(s, &sn, &err), ==, 0);
    g_assert_no_error(err);
    assert_clean(s);
}

/* check, then check -r all, on an image opened as the check command opens
 * it; returns the result of the repair. */
static struct diskimg_check_result check_then_repair(struct timg *t,
                                                     struct diskimg_check_result *before)
{
    GError *err = NULL;
    timg_open(t, DISKIMG_OPEN_CHECK);
    *before = (struct diskimg_check_result){ .struct_size = sizeof(*before) };
    g_assert_cmpint(qcow2_check(t->s, 0, before, &err), ==, 0);
    g_assert_no_error(err);
    timg_reopen(t, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CHECK);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(qcow2_check(t->s, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS, &res,
                                &err), ==, 0);
    g_assert_no_error(err);
    return res;
}

/* An L2 entry naming a cluster 1 TiB away, beyond the end of the file:
 * check counts it (qemu's "exceeding the end of the file"); the repair
 * makes it a zero cluster, which reads as the missing cluster did, and
 * touches nothing else. */
static void test_check_data_beyond_eof(void)
{
    struct timg t = { 0 };
    struct diskimg_check_result before;
    timg_create(&t, 16 * MiB);
    fill_write(t.s, 5, 0, 3 * 65536);
    uint64_t l2 = t.s->l1[0] & QCOW2_OFFSET_MASK;
    timg_close(&t);
    raw_put(&t, l2 + 8, 8, QCOW2_OFLAG_COPIED | (1ull << 40));
    struct diskimg_check_result res = check_then_repair(&t, &before);
    /* beyond the end, and COPIED with refcount 0 (as qemu counts them) */
    g_assert_cmpuint(before.corruptions, ==, 2);
    g_assert_cmpuint(before.leaks, ==, 1);      /* the cluster entry 1 had */
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    g_assert_cmpuint(res.leaks_fixed, ==, 1);
    timg_close(&t);
    g_assert_cmpuint(raw_get64(&t, l2 + 8), ==, QCOW2_OFLAG_ZERO);
    timg_open(&t, 0);
    assert_clean(t.s);
    assert_reads(t.s, 5, 0, 65536);
    assert_reads(t.s, 0, 65536, 65536);
    assert_reads(t.s, 5, 2 * 65536, 65536);
    timg_destroy(&t);
}

/* Reserved bits in an active L1 entry: reported as qemu does; readers
 * ignore them, so the repair clears them and the image reads the same. */
static void test_check_l1_reserved(void)
{
    struct timg t = { 0 };
    struct diskimg_check_result before;
    timg_create(&t, 16 * MiB);
    fill_write(t.s, 6, 0, 65536);
    uint64_t l1 = t.s->l1_offset, e = t.s->l1[0];
    timg_close(&t);
    raw_put(&t, l1, 8, e | (1ull << 57));
    struct diskimg_check_result res = check_then_repair(&t, &before);
    g_assert_cmpuint(before.corruptions, ==, 1);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    timg_close(&t);
    g_assert_cmpuint(raw_get64(&t, l1), ==, e);
    timg_open(&t, 0);
    assert_clean(t.s);
    assert_reads(t.s, 6, 0, 65536);
    timg_destroy(&t);
}

/* An L1 entry naming a misaligned L2 table (here the real one moved by
 * 512 bytes): qemu cannot read that range and its repair leaves the entry.
 * Ours clears it (the range reads as unallocated), frees what only it
 * named, and keeps the rest of the disk. */
static void test_check_l1_unaligned(void)
{
    struct timg t = { 0 };
    struct diskimg_check_result before;
    timg_create(&t, 1024 * MiB);
    fill_write(t.s, 4, 0, 65536);
    fill_write(t.s, 8, 512 * MiB, 65536);     /* under the next L1 entry */
    uint64_t l1 = t.s->l1_offset, e = t.s->l1[0];
    timg_close(&t);
    raw_put(&t, l1, 8, e + 512);
    struct diskimg_check_result res = check_then_repair(&t, &before);
    g_assert_cmpuint(before.corruptions, >=, 1);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, ==, before.corruptions);
    g_assert_cmpuint(res.leaks_fixed, ==, 2);  /* the real table and its data cluster */
    timg_close(&t);
    g_assert_cmpuint(raw_get64(&t, l1), ==, 0);
    timg_open(&t, 0);
    assert_clean(t.s);
    assert_reads(t.s, 0, 0, 65536);
    assert_reads(t.s, 8, 512 * MiB, 65536);
    timg_destroy(&t);
}

/* An image with one snapshot ("s", data 0x31) and the active layer
 * rewritten (0x32); *table: the snapshot table's offset. */
static void make_snapshot_image(struct timg *t, uint64_t *table)
{
    timg_create(t, 1 * MiB);
    fill_write(t->s, 0x31, 0, 65536);
    snap_create(t->s, "s");
    fill_write(t->s, 0x32, 0, 65536);
    *table = t->s->h.snapshots_offset;
    timg_close(t);
}

static void assert_snapshot_reads(struct timg *t, uint8_t v)
{
    GError *err = NULL;
    timg_open(t, 0);
    assert_clean(t->s);
    assert_reads(t->s, 0x32, 0, 65536);
    g_assert_cmpuint(t->s->nb_snapshots, ==, 1);
    g_assert_cmpuint(t->s->snapshots[0].extra_size, >=, 16);
    g_assert_cmpint(qcow2_snapshot_load(t->s, "1", "s", &err), ==, 0);
    g_assert_no_error(err);
    assert_reads(t->s, v, 0, 65536);
    timg_close(t);
}

/* A v3 snapshot entry with only 8 bytes of extra data (qemu: "snapshot
 * table entry 0 is incomplete"): opens, is counted, and the repair
 * writes the table again with complete entries; the snapshot keeps its
 * data. */
static void test_check_snapshot_incomplete(void)
{
    struct timg t = { 0 };
    struct diskimg_check_result before;
    uint64_t table;
    make_snapshot_image(&t, &table);
    /* 8 bytes of extra data: the ID and name then start 16 bytes earlier */
    g_autofree uint8_t *entry = g_malloc(40 + 24 + 2);
    g_assert_cmpint(diskimg_node_pread(diskimg_node_file(t.raw), entry, 66, table, NULL), ==, 0);
    raw_put(&t, table + 36, 4, 8);
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pwrite(diskimg_node_file(t.raw), entry + 64, 2, table + 48, 0,
                                        &err), ==, 0);
    struct diskimg_check_result res = check_then_repair(&t, &before);
    g_assert_cmpuint(before.corruptions, ==, 1);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    g_assert_cmpuint(res.check_errors, ==, 0);
    timg_close(&t);
    assert_snapshot_reads(&t, 0x31);
    timg_destroy(&t);
}

/* Extra data beyond qemu's limit: refused by a normal open and by check
 * (qemu: "Too much extra metadata"); check -r all keeps its first 1024
 * bytes and writes the table again. */
static void test_check_snapshot_extra_too_large(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    uint64_t table;
    make_snapshot_image(&t, &table);
    raw_put(&t, table + 36, 4, 2000);
    assert_open_fails(&t, "Too much extra metadata in snapshot table entry 0");
    g_assert_null(qcow2_open_file(NULL, diskimg_node_file(t.raw), t.path, DISKIMG_OPEN_CHECK,
                                  NULL, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_clear_error(&err);
    timg_open(&t, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CHECK);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(qcow2_check(t.s, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS, &res,
                                &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, >=, 1);
    timg_close(&t);
    timg_open(&t, 0);
    g_assert_cmpuint(t.s->snapshots[0].extra_size, ==, QCOW2_MAX_SNAPSHOT_EXTRA);
    timg_close(&t);
    timg_destroy(&t);
}

/* A snapshot whose L1 table offset is not cluster aligned: a normal open
 * refuses it, check opens the image and reports it as qemu does (the
 * snapshot's clusters then count as leaked).  No tool can read that
 * snapshot, and the leak repair frees what it held, so the repair drops
 * its entry too (drop_unreadable_snapshots): the image ends consistent
 * and the active layer reads as before. */
static void test_check_snapshot_l1_unaligned(void)
{
    struct timg t = { 0 };
    struct diskimg_check_result before;
    uint64_t table;
    make_snapshot_image(&t, &table);
    uint64_t l1 = raw_get64(&t, table);
    raw_put(&t, table, 8, l1 + 512);
    assert_open_fails(&t, "Snapshot L1 table offset invalid");
    struct diskimg_check_result res = check_then_repair(&t, &before);
    g_assert_cmpuint(before.corruptions, ==, 1);
    g_assert_cmpuint(before.leaks, >, 0);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.leaks, ==, 0);
    timg_close(&t);
    timg_open(&t, 0);
    g_assert_cmpuint(t.s->nb_snapshots, ==, 0);
    assert_clean(t.s);
    assert_reads(t.s, 0x32, 0, 65536);
    timg_destroy(&t);
}

static void test_snapshot_roundtrip(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 4 << 20);
    fill_write(t.s, 0xaa, 0, 256 << 10);
    snap_create(t.s, "s1");
    fill_write(t.s, 0xbb, 64 << 10, 64 << 10);
    assert_clean(t.s);
    snap_create(t.s, "s2");
    fill_write(t.s, 0xcc, 3 << 20, 4096);
    g_assert_cmpstr(t.s->snapshots[1].id, ==, "2");
    g_assert_cmpuint(t.s->snapshots[1].disk_size, ==, 4 << 20);

    g_assert_cmpint(qcow2_snapshot_apply(t.s, "s1", &err), ==, 0);
    g_assert_no_error(err);
    assert_clean(t.s);
    assert_reads(t.s, 0xaa, 0, 256 << 10);
    assert_reads(t.s, 0, 3 << 20, 4096);
    g_assert_cmpint(qcow2_snapshot_apply(t.s, "2", &err), ==, 0);   /* by id */
    assert_reads(t.s, 0xbb, 64 << 10, 64 << 10);
    assert_clean(t.s);

    g_assert_cmpint(qcow2_snapshot_delete(t.s, "nosuch", &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND);
    g_assert_cmpstr(err->message, ==, "snapshot not found");
    g_clear_error(&err);
    g_assert_cmpint(qcow2_snapshot_apply(t.s, "nosuch", &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND);
    g_clear_error(&err);

    g_assert_cmpint(qcow2_snapshot_delete(t.s, "s2", &err), ==, 0);
    assert_clean(t.s);
    snap_create(t.s, "s3");
    g_assert_cmpstr(t.s->snapshots[1].id, ==, "2");     /* max id + 1 */
    g_assert_cmpint(qcow2_snapshot_delete(t.s, "s1", &err), ==, 0);
    g_assert_cmpint(qcow2_snapshot_delete(t.s, "s3", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(t.s->nb_snapshots, ==, 0);
    assert_clean(t.s);
    /* after the last delete every active cluster is writable in place */
    fill_write(t.s, 0xdd, 0, 4096);
    assert_clean(t.s);

    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    assert_reads(t.s, 0xdd, 0, 4096);
    assert_reads(t.s, 0xbb, 64 << 10, 64 << 10);
    assert_clean(t.s);
    timg_destroy(&t);
}

static void test_snapshot_load(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 1 << 20);
    fill_write(t.s, 0x11, 0, 8192);
    snap_create(t.s, "old");
    fill_write(t.s, 0x22, 0, 8192);
    g_assert_cmpint(qcow2_snapshot_load(t.s, "1", NULL, &err), <, 0);  /* writable */
    g_clear_error(&err);
    timg_reopen(&t, 0);
    g_assert_cmpint(qcow2_snapshot_load(t.s, "9", NULL, &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_cmpint(qcow2_snapshot_load(t.s, "old", NULL, &err), ==, 0);  /* name fallback */
    assert_reads(t.s, 0x11, 0, 8192);
    timg_reopen(&t, 0);
    g_assert_cmpint(qcow2_snapshot_load(t.s, "1", "old", &err), ==, 0);
    assert_reads(t.s, 0x11, 0, 8192);
    timg_destroy(&t);
}

struct sn_damage {
    unsigned off, width;        /* within the first table entry */
    uint64_t value;
};

static const struct sn_damage sn_damages[] = {
    { 0, 8, 12345 },                /* L1 offset unaligned */
    { 0, 8, 1ull << 60 },           /* L1 offset absurd */
    { 8, 4, 0x7fffffff },           /* L1 size huge */
    { 12, 2, 0xffff },              /* id runs past the table */
    { 14, 2, 0xffff },              /* name runs past the table */
    { 36, 4, 0x7fffffff },          /* extra data huge */
    { 36, 4, 2000 },                /* extra data beyond qemu's limit */
};

static void test_snapshot_hostile(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(sn_damages); i++) {
        struct timg t = { 0 };
        timg_create(&t, 1 << 20);
        snap_create(t.s, "s");
        uint64_t table = t.s->h.snapshots_offset;
        timg_close(&t);
        /* nothing after the table: lengths running past it run past the file */
        g_assert_cmpint(diskimg_node_truncate(diskimg_node_file(t.raw), table + CS,
                                              DISKIMG_PREALLOC_OFF, 0, NULL), ==, 0);
        raw_put(&t, table + sn_damages[i].off, sn_damages[i].width, sn_damages[i].value);
        g_test_message("snapshot damage %zu", i);
        assert_open_fails(&t, NULL);
        timg_destroy(&t);
    }
    /* header: huge count, unaligned and absurd table offsets */
    const struct damage hdr[] = {
        { 60, 4, 70000, "Too many snapshots" },
        { 60, 4, 65536, NULL },
        { 64, 8, 12345, "Invalid snapshot table offset" },
        { 64, 8, 1ull << 59, NULL },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(hdr); i++) {
        struct timg t = { 0 };
        timg_create(&t, 1 << 20);
        snap_create(t.s, "s");
        timg_close(&t);
        raw_put(&t, hdr[i].off, hdr[i].width, hdr[i].value);
        assert_open_fails(&t, hdr[i].expect);
        timg_destroy(&t);
    }
}

/* ------------------------------------------------------------ bitmaps */

static void bm_add(struct qcow2 *s, const char *name, uint32_t gran, bool enabled)
{
    struct diskimg_bitmap b = { .struct_size = sizeof(b), .name = name, .granularity = gran,
                                .enabled = enabled,
                                .persistent = true };
    GError *err = NULL;
    g_assert_cmpint(qcow2_bitmap_add(s, &b, &err), ==, 0);
    g_assert_no_error(err);
}

static void bm_expect(struct qcow2 *s, const char *name, uint64_t off, bool dirty,
                      uint64_t run)
{
    bool d;
    uint64_t r;
    GError *err = NULL;
    g_assert_cmpint(qcow2_bitmap_query(s, name, off, s->h.size - off, &d, &r, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(d, ==, dirty);
    g_assert_cmpuint(r, ==, run);
}

static void bm_store(struct qcow2 *s)
{
    GError *err = NULL;
    g_assert_cmpint(qcow2_bitmaps_store(s, &err), ==, 0);
    g_assert_cmpint(qcow2_flush_metadata(s, &err), ==, 0);
    g_assert_no_error(err);
}


static void test_bitmap_persist(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 64 * MiB);
    bm_add(t.s, "b1", 0, true);                 /* default granularity: 64k */
    bm_add(t.s, "b2", 4096, false);
    struct diskimg_bitmap dup = { .struct_size = sizeof(dup), .name = "b1", .granularity = 65536 };
    g_assert_cmpint(qcow2_bitmap_add(t.s, &dup, &err), <, 0);
    g_assert_cmpstr(err->message, ==, "Bitmap already exists: b1");
    g_clear_error(&err);
    dup.name = "b3";
    dup.granularity = 3000;
    g_assert_cmpint(qcow2_bitmap_add(t.s, &dup, &err), <, 0);
    g_clear_error(&err);

    fill_write(t.s, 1, MiB + 100, 100);            /* b1: chunk 16 */
    g_assert_cmpint(qcow2_bitmap_set(t.s, "b2", 5 * MiB, 8192, true, &err), ==, 0);
    bm_expect(t.s, "b1", 0, false, MiB);
    bm_expect(t.s, "b1", MiB, true, 65536);
    bm_expect(t.s, "b2", 0, false, 5 * MiB);
    bm_expect(t.s, "b2", 5 * MiB + 10, true, 8192 - 10);
    bm_store(t.s);
    assert_clean(t.s);
    g_assert_true(t.s->h.has_bitmaps_ext);
    g_assert_true(t.s->h.autoclear & QCOW2_AUTOCLEAR_BITMAPS);

    /* read-write open: left consistent on disk until the guest content
     * changes, then flagged in use until stored */
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(t.s->bitmaps[0].flags, ==, QCOW2_BME_AUTO);
    struct qcow2 *other = qcow2_open_file(NULL, diskimg_node_file(t.raw), t.path, 0, NULL, &err);
    g_assert_nonnull(other);
    g_assert_false(other->bitmaps[0].inconsistent);
    qcow2_close(other);
    fill_write(t.s, 1, MiB + 100, 100);            /* b1 already has chunk 16 */
    g_assert_cmpuint(t.s->bitmaps[0].flags, ==, QCOW2_BME_IN_USE | QCOW2_BME_AUTO);
    g_assert_cmpuint(t.s->bitmaps[1].flags, ==, QCOW2_BME_IN_USE);
    other = qcow2_open_file(NULL, diskimg_node_file(t.raw), t.path, 0, NULL, &err);
    g_assert_nonnull(other);
    g_assert_true(other->bitmaps[0].inconsistent);
    qcow2_close(other);
    bm_expect(t.s, "b1", MiB, true, 65536);
    /* the whole image dirty: stored as all-ones table entries */
    g_assert_cmpint(qcow2_bitmap_set(t.s, "b2", 0, 64 * MiB, true, &err), ==, 0);
    timg_reopen(&t, 0);
    g_assert_cmpuint(t.s->bitmaps[0].flags, ==, QCOW2_BME_AUTO);
    g_assert_false(t.s->bitmaps[0].inconsistent);
    bm_expect(t.s, "b1", 0, false, MiB);
    bm_expect(t.s, "b1", MiB, true, 65536);
    bm_expect(t.s, "b2", 0, true, 64 * MiB);
    uint64_t entry;
    g_assert_cmpint(diskimg_node_pread(t.s->file, &entry, 8, t.s->bitmaps[1].table_offset,
                                       &err), ==, 0);
    g_assert_cmpuint(diskimg_be64(&entry), ==, QCOW2_BME_ALL_ONES);
    assert_clean(t.s);

    /* clear, disable, remove */
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpint(qcow2_bitmap_set(t.s, "b2", 0, 64 * MiB, false, &err), ==, 0);
    g_assert_cmpint(qcow2_bitmap_set_enabled(t.s, "b1", false, &err), ==, 0);
    fill_write(t.s, 2, 10 * MiB, 4096);         /* no bitmap enabled now */
    g_assert_cmpint(qcow2_bitmap_remove(t.s, "nosuch", &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_FOUND);
    g_clear_error(&err);
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_false(t.s->bitmaps[0].enabled);
    bm_expect(t.s, "b1", MiB + 65536, false, 63 * MiB - 65536);
    bm_expect(t.s, "b2", 0, false, 64 * MiB);
    g_assert_cmpint(qcow2_bitmap_remove(t.s, "b1", &err), ==, 0);
    assert_clean(t.s);
    g_assert_cmpint(qcow2_bitmap_remove(t.s, "b2", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_false(t.s->h.has_bitmaps_ext);
    assert_clean(t.s);
    timg_reopen(&t, 0);
    g_assert_cmpuint(t.s->nb_bitmaps, ==, 0);
    assert_clean(t.s);
    timg_destroy(&t);
}

static void test_bitmap_resize(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 8 * MiB);
    bm_add(t.s, "b", 65536, true);
    fill_write(t.s, 1, 7 * MiB, 4096);
    g_assert_cmpint(qcow2_resize(t.s, 20 * MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    bm_expect(t.s, "b", 7 * MiB, true, 65536);
    bm_expect(t.s, "b", 8 * MiB, false, 12 * MiB);
    g_assert_cmpint(qcow2_resize(t.s, 6 * MiB, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                                 &err), ==, 0);
    timg_reopen(&t, 0);
    bm_expect(t.s, "b", 0, false, 6 * MiB);
    assert_clean(t.s);
    timg_destroy(&t);
}

/* A stored image with one bitmap; *dir receives its directory offset. */
static void bitmap_image(struct timg *t, uint64_t *dir, uint64_t *table)
{
    timg_create(t, 16 * MiB);
    bm_add(t->s, "bitmap", 65536, true);
    fill_write(t->s, 1, 0, 4096);
    bm_store(t->s);
    *dir = t->s->h.bitmap_dir_offset;
    *table = t->s->bitmaps[0].table_offset;
    timg_close(t);
}

static const struct sn_damage bm_damages[] = {
    { 0, 8, 0 },                    /* no table */
    { 0, 8, 12345 },                /* table unaligned */
    { 0, 8, 1ull << 60 },           /* table beyond any file */
    { 8, 4, 0 },                    /* empty table */
    { 8, 4, 0x7fffffff },           /* table huge */
    { 8, 4, 2 },                    /* table of the wrong size */
    { 12, 4, 0x10 },                /* reserved flag */
    { 16, 1, 2 },                   /* unknown type */
    { 17, 1, 40 },                  /* granularity too large */
    { 17, 1, 4 },                   /* granularity too small */
    { 18, 2, 0 },                   /* empty name */
    { 18, 2, 0xffff },              /* name past the directory */
    { 20, 4, 8 },                   /* extra data */
};

static void test_bitmap_hostile(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(bm_damages); i++) {
        struct timg t = { 0 };
        uint64_t dir, table;
        bitmap_image(&t, &dir, &table);
        raw_put(&t, dir + bm_damages[i].off, bm_damages[i].width, bm_damages[i].value);
        g_test_message("bitmap damage %zu", i);
        assert_open_fails(&t, NULL);
        timg_destroy(&t);
    }
    /* table entries with reserved bits, the "all ones" flag beside an
     * offset, or an unaligned offset: open refuses, as qemu's load_bitmap */
    static const uint64_t bad_entries[] = { 0x2, 0x10001, 0x10200 };
    for (size_t i = 0; i < G_N_ELEMENTS(bad_entries); i++) {
        struct timg t = { 0 };
        uint64_t dir, table;
        bitmap_image(&t, &dir, &table);
        raw_put(&t, table, 8, bad_entries[i]);
        assert_open_fails(&t, "Could not read bitmap_table table from image for bitmap "
                              "'bitmap': Invalid argument");
        timg_destroy(&t);
    }
}

/* Random bytes over the snapshot table and the bitmap directory: open
 * fails cleanly, or everything reachable works. */
static void test_tables_fuzz(void)
{
    GRand *r = g_rand_new_with_seed(99);
    for (int iter = 0; iter < 150; iter++) {
        struct timg t = { 0 };
        timg_create(&t, 4 * MiB);
        bm_add(t.s, "b", 65536, true);
        fill_write(t.s, 1, 0, 4096);
        snap_create(t.s, "snap");
        bm_store(t.s);
        uint64_t areas[2] = { t.s->h.snapshots_offset, t.s->h.bitmap_dir_offset };
        timg_close(&t);
        for (int k = 0; k < 4; k++)
            raw_put(&t, areas[k & 1] + (uint64_t)g_rand_int_range(r, 0, 64), 1,
                    (uint8_t)g_rand_int(r));
        GError *err = NULL;
        t.s = qcow2_open_file(NULL, diskimg_node_file(t.raw), t.path, 0, NULL, &err);
        if (!t.s) {
            g_assert_nonnull(err);
            g_clear_error(&err);
        } else {
            struct diskimg_check_result res = { .struct_size = sizeof(res) };
            bool d;
            uint64_t run;
            (void)qcow2_check(t.s, 0, &res, NULL);
            for (uint32_t i = 0; i < t.s->nb_bitmaps; i++)
                (void)qcow2_bitmap_query(t.s, t.s->bitmaps[i].name, 0, 4096, &d, &run, NULL);
            if (t.s->nb_snapshots &&
                qcow2_snapshot_load(t.s, t.s->snapshots[0].id, NULL, NULL) == 0) {
                uint8_t buf[4096];
                (void)qcow2_read(t.s, buf, sizeof(buf), 0, NULL);
            }
        }
        timg_destroy(&t);
    }
    g_rand_free(r);
}

/* ------------------------------------------------------------ encryption */

extern const char qcow2_schema_yaml[];

static diskimg_options *qopts(diskimg_schema *schema, const char *set, const char *text)
{
    GError *err = NULL;
    diskimg_options *o = diskimg_options_new(schema, set);
    g_assert_cmpint(diskimg_options_parse(o, text, &err), ==, 0);
    g_assert_no_error(err);
    return o;
}

static diskimg_schema *qschema(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse(qcow2_schema_yaml, "qcow2.yaml", &err);
    g_assert_no_error(err);
    return s;
}

/* The open-options l2-cache-size, refcount-cache-size and cache-size set
 * the metadata caches as qemu's read_cache_sizes combines them. */
static unsigned open_cache_entries(struct timg *t, diskimg_schema *schema, const char *text,
                                   unsigned *refblocks, const char *error)
{
    diskimg_options *o = qopts(schema, "open-options", text);
    GError *err = NULL;
    struct qcow2 *s = qcow2_open_file(NULL, diskimg_node_file(t->raw), t->path, 0, o, &err);
    diskimg_options_free(o);
    if (error) {
        g_assert_null(s);
        g_assert_nonnull(err);
        g_assert_cmpstr(err->message, ==, error);
        g_error_free(err);
        return 0;
    }
    g_assert_no_error(err);
    unsigned n = diskimg_mcache_entries(s->l2c);
    *refblocks = diskimg_mcache_entries(s->rbc);
    qcow2_close(s);
    return n;
}

static void test_cache_sizes(void)
{
    struct timg t;
    timg_create(&t, 1024 * MiB);                /* 64 KiB clusters: 2 L2 tables cover it */
    timg_close(&t);
    diskimg_schema *schema = qschema();
    unsigned rb;
    g_assert_cmpuint(open_cache_entries(&t, schema, "l2-cache-size=64k", &rb, NULL), ==, 2);
    g_assert_cmpuint(open_cache_entries(&t, schema, "l2-cache-size=1G", &rb, NULL), ==, 2);
    g_assert_cmpuint(open_cache_entries(&t, schema, "refcount-cache-size=1M", &rb, NULL), ==, 16);
    g_assert_cmpuint(rb, ==, 16);
    g_assert_cmpuint(open_cache_entries(&t, schema, "refcount-cache-size=1", &rb, NULL), ==, 16);
    g_assert_cmpuint(rb, ==, 4);
    /* cache-size alone: L2 gets what covers the disk, refcounts the rest */
    g_assert_cmpuint(open_cache_entries(&t, schema, "cache-size=2M", &rb, NULL), ==, 2);
    g_assert_cmpuint(rb, ==, 30);
    g_assert_cmpuint(open_cache_entries(&t, schema, "cache-size=2M,l2-cache-size=64k", &rb,
                                        NULL), ==, 2);
    g_assert_cmpuint(rb, ==, 31);
    open_cache_entries(&t, schema, "cache-size=1M,l2-cache-size=2M", &rb,
                       "l2-cache-size may not exceed cache-size");
    open_cache_entries(&t, schema, "cache-size=1M,refcount-cache-size=2M", &rb,
                       "refcount-cache-size may not exceed cache-size");
    open_cache_entries(&t, schema, "cache-size=1M,l2-cache-size=512k,refcount-cache-size=512k",
                       &rb, "cache-size, l2-cache-size and refcount-cache-size may not be set "
                            "at the same time");
    diskimg_schema_free(schema);
    timg_open(&t, 0);
    timg_destroy(&t);
}

static bool crypto_or_skip(void)
{
    if (diskimg_crypto_available())
        return true;
    g_test_skip("no crypto plugin");
    return false;
}

static void define_secrets(void)
{
    static bool done;
    if (done)
        return;
    GError *err = NULL;
    g_assert_cmpint(diskimg_object_add("secret,id=qsec,data=correct horse", &err), ==, 0);
    g_assert_cmpint(diskimg_object_add("secret,id=qbad,data=battery staple", &err), ==, 0);
    g_assert_no_error(err);
    done = true;
}

/* An image created with the create options `copts` (qcow2 syntax). */
static void timg_create_opts(struct timg *t, uint64_t size, diskimg_schema *schema,
                             const char *copts)
{
    diskimg_options *o = qopts(schema, "create-options", copts);
    timg_create_with(t, size, o);
    diskimg_options_free(o);
}

/* Opens with the open options `oopts`; NULL and the error when it fails. */
static struct qcow2 *open_opts(struct timg *t, unsigned flags, diskimg_schema *schema,
                               const char *oopts, GError **errp)
{
    diskimg_options *o = oopts ? qopts(schema, "open-options", oopts) : NULL;
    struct qcow2 *s = qcow2_open_file(NULL, diskimg_node_file(t->raw), t->path, flags, o,
                                      errp);
    /* the plugin keeps nothing of its options */
    diskimg_options_free(o);
    return s;
}

/* With 64-bit refcounts a stored refcount may differ from the counted one
 * by more than any delta: the repair sets the counted value (a leak of
 * 2^63 + 1 references to a used data cluster is repaired to 1). */
static void test_check_refcount64_leak(void)
{
    struct timg t = { 0 };
    struct diskimg_check_result before;
    diskimg_schema *schema = qschema();
    timg_create_opts(&t, 1 * MiB, schema, "refcount_bits=64");
    diskimg_schema_free(schema);
    timg_open(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(t.s->refcount_bits, ==, 64);
    fill_write(t.s, 0x64, 0, 65536);
    uint64_t l2 = t.s->l1[0] & QCOW2_OFFSET_MASK, rb = t.s->reftable[0];
    timg_close(&t);
    uint64_t data = raw_get64(&t, l2) & QCOW2_OFFSET_MASK;
    raw_put(&t, rb + 8 * (data / 65536), 8, (1ull << 63) + 2);
    struct diskimg_check_result res = check_then_repair(&t, &before);
    g_assert_cmpuint(before.leaks, ==, 1);
    g_assert_cmpuint(res.leaks_fixed, ==, 1);
    g_assert_cmpuint(res.leaks, ==, 0);
    g_assert_cmpuint(res.corruptions, ==, 0);
    timg_close(&t);
    g_assert_cmpuint(raw_get64(&t, rb + 8 * (data / 65536)), ==, 1);
    timg_open(&t, 0);
    assert_clean(t.s);
    assert_reads(t.s, 0x64, 0, 65536);
    timg_destroy(&t);
}

/* Refcount blocks made while writing (512-byte clusters: one block covers
 * 128 KiB) are known to the guard as soon as the table names them, and
 * the guard scans only the used part of the table. */
static void test_guard_new_refblocks(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    diskimg_schema *schema = qschema();
    timg_create_opts(&t, 4 * MiB, schema, "cluster_size=512");
    diskimg_schema_free(schema);
    timg_open(&t, DISKIMG_OPEN_RDWR);
    uint64_t used_before = t.s->reftable_used;
    fill_write(t.s, 0x12, 0, 1 * MiB);
    g_assert_cmpuint(t.s->reftable_used, >, used_before);
    g_assert_cmpuint(t.s->reftable_used, <, t.s->reftable_size);
    uint64_t last = t.s->reftable[t.s->reftable_used - 1];
    g_assert_cmpuint(last, !=, 0);
    for (uint64_t i = t.s->reftable_used; i < t.s->reftable_size; i++)
        g_assert_cmpuint(t.s->reftable[i], ==, 0);
    g_assert_cmpint(qcow2_guard_check_write(t.s, last, 512, 0, &err), <, 0);
    g_assert_nonnull(strstr(err->message, "(overlaps with refcount block)"));
    g_clear_error(&err);
    timg_destroy(&t);
}

static void expect_open_error(struct timg *t, unsigned flags, diskimg_schema *schema,
                              const char *oopts, const char *expect)
{
    GError *err = NULL;
    struct qcow2 *s = open_opts(t, flags, schema, oopts, &err);
    if (s || !err || !strstr(err->message, expect))
        g_error("open: got %p, error '%s', expected '%s'", (void *)s,
                err ? err->message : "(none)", expect);
    g_error_free(err);
}

static void model_write(struct qcow2 *s, uint8_t *model, uint64_t off, uint64_t len,
                        uint8_t seed)
{
    g_autofree uint8_t *b = g_malloc(len);
    for (uint64_t i = 0; i < len; i++)
        b[i] = (uint8_t)(seed + i * 7);
    GError *err = NULL;
    g_assert_cmpint(qcow2_write(s, b, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
    memcpy(model + off, b, len);
}

static void model_check(struct qcow2 *s, const uint8_t *model, uint64_t size)
{
    g_autofree uint8_t *b = g_malloc(size);
    GError *err = NULL;
    g_assert_cmpint(qcow2_read(s, b, size, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpmem(b, size, model, size);
    /* unaligned reads see the same bytes */
    uint8_t small[700];
    g_assert_cmpint(qcow2_read(s, small, sizeof(small), 65536 - 333, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpmem(small, sizeof(small), model + 65536 - 333, sizeof(small));
}

/* Where qemu-img is installed: it reads the image as the model says. */
static void qemu_reads(const struct timg *t, const uint8_t *model, uint64_t size)
{
    g_autofree char *qemu = g_find_program_in_path("qemu-img");
    if (!qemu) {
        /* our own checks ran; the result says the cross-check did not */
        g_test_skip("qemu-img is not installed: not read back by qemu-img");
        return;
    }
    g_autofree char *out = g_build_filename(t->dir, "qemu.raw", NULL);
    g_autofree char *iopts = g_strdup_printf("driver=qcow2,encrypt.key-secret=qsec,"
                                             "file.filename=%s", t->path);
    const char *argv[] = { qemu, "convert", "--object", "secret,id=qsec,data=correct horse",
                           "--image-opts", iopts, "-O", "raw", out, NULL };
    int status;
    g_autofree char *err = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                               NULL, NULL, &err, &status, NULL));
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("qemu-img convert failed: %s", err);
    g_autofree char *data = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(out, &data, &len, NULL));
    g_assert_cmpmem(data, len, model, size);
    unlink(out);
}

/* Writes of every alignment through the data cipher, the ciphertext on
 * disk, reopening with the right, a wrong and no password. */
static void encrypt_roundtrip(const char *format)
{
    if (!crypto_or_skip())
        return;
    define_secrets();
    diskimg_schema *schema = qschema();
    const uint64_t size = 4 * MiB;
    g_autofree char *copts = g_strdup_printf("encrypt.format=%s,encrypt.key-secret=qsec%s",
                                             format, g_str_equal(format, "luks")
                                             ? ",encrypt.iter-time=10" : "");
    struct timg t = { 0 };
    timg_create_opts(&t, size, schema, copts);
    GError *err = NULL;
    t.s = open_opts(&t, DISKIMG_OPEN_RDWR, schema, "encrypt.key-secret=qsec", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(t.s->h.crypt_method, ==,
                     g_str_equal(format, "luks") ? QCOW2_CRYPT_LUKS : QCOW2_CRYPT_AES);

    g_autofree uint8_t *model = g_malloc0(size);
    model_write(t.s, model, 0, 2 * CS, 1);              /* whole clusters */
    model_write(t.s, model, 1000, 3, 2);                /* inside one sector */
    model_write(t.s, model, 1535, 3, 3);                /* across a sector edge */
    model_write(t.s, model, 3 * CS - 10, 20, 4);        /* new cluster, partial */
    model_write(t.s, model, 5 * CS + 511, 2 * CS + 2, 5);
    g_assert_cmpint(qcow2_write_zeroes(t.s, 700, 100, 0, &err), ==, 0);
    memset(model + 700, 0, 100);
    g_assert_cmpint(qcow2_write_zeroes(t.s, CS - 1, CS + 2, 0, &err), ==, 0);
    g_assert_no_error(err);
    memset(model + CS - 1, 0, CS + 2);
    model_check(t.s, model, size);
    assert_clean(t.s);

    /* the file holds ciphertext */
    struct qcow2_run r;
    g_assert_cmpint(qcow2_map_run(t.s, 0, CS, &r, &err), ==, 0);
    g_assert_cmpint(r.type, ==, QC_NORMAL);
    uint8_t disk[512];
    g_assert_cmpint(diskimg_node_pread(t.s->file, disk, sizeof(disk), r.host, &err), ==, 0);
    g_assert_true(memcmp(disk, model, sizeof(disk)) != 0);
    /* block status never points at ciphertext */
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    g_assert_cmpint(qcow2_block_status(t.s, 0, CS, &ext, &err), ==, 0);
    g_assert_true(ext.flags & DISKIMG_BS_DATA);
    g_assert_false(ext.flags & DISKIMG_BS_OFFSET_VALID);
    /* compressed writes are refused */
    g_autofree uint8_t *zeros = g_malloc0(CS);
    g_assert_cmpint(qcow2_write_compressed(t.s, zeros, CS, 8 * CS, &err), <, 0);
    g_assert_nonnull(strstr(err->message, "Compression and encryption"));
    g_clear_error(&err);
    timg_close(&t);

    t.s = open_opts(&t, 0, schema, "encrypt.key-secret=qsec", &err);
    g_assert_no_error(err);
    model_check(t.s, model, size);
    timg_close(&t);
    qemu_reads(&t, model, size);

    if (g_str_equal(format, "luks")) {
        expect_open_error(&t, 0, schema, "encrypt.key-secret=qbad",
                          "Invalid password, cannot unlock any keyslot");
    } else {
        /* AES has no key check: a wrong password reads garbage */
        t.s = open_opts(&t, 0, schema, "encrypt.key-secret=qbad", &err);
        g_assert_no_error(err);
        uint8_t b[512];
        g_assert_cmpint(qcow2_read(t.s, b, sizeof(b), 0, &err), ==, 0);
        g_assert_true(memcmp(b, model, sizeof(b)) != 0);
        timg_close(&t);
    }
    expect_open_error(&t, 0, schema, NULL, "Parameter 'encrypt.key-secret' is required");
    expect_open_error(&t, 0, schema, g_str_equal(format, "luks") ? "encrypt.format=aes"
                                                                : "encrypt.format=luks",
                      "encryption format but options specify");

    /* metadata only (info) needs no key; data requests fail cleanly */
    t.s = open_opts(&t, DISKIMG_OPEN_NO_IO, schema, NULL, &err);
    g_assert_no_error(err);
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    g_autoptr(JsonObject) jo = json_object_new();
    g_assert_cmpint(qcow2_info(t.s, &info, diskimg_obj_from_json(jo), &err), ==, 0);
    g_assert_true(info.encrypted);
    g_autoptr(JsonObject) conformed = diskimg_schema_conform(schema, "info", jo, &err);
    g_assert_no_error(err);
    JsonObject *enc = json_object_get_object_member(conformed, "encrypt");
    g_assert_nonnull(enc);
    g_assert_cmpstr(json_object_get_string_member(enc, "format"), ==, format);
    g_assert_cmpint(json_object_has_member(enc, "slots"), ==, g_str_equal(format, "luks"));
    uint8_t b[512];
    g_assert_cmpint(qcow2_read(t.s, b, sizeof(b), 0, &err), <, 0);
    g_assert_nonnull(err);
    g_clear_error(&err);
    timg_destroy(&t);
    diskimg_schema_free(schema);
}

static void test_encrypt_luks(void)
{
    encrypt_roundtrip("luks");
}

static void test_encrypt_aes(void)
{
    encrypt_roundtrip("aes");
}

/* Offset of the crypto header extension's data in the header cluster. */
static uint64_t crypto_ext_at(struct timg *t)
{
    uint8_t h[4096];
    g_assert_cmpint(diskimg_node_pread(diskimg_node_file(t->raw), h, sizeof(h), 0, NULL), ==, 0);
    for (uint64_t off = QCOW2_HEADER_LEN_DEFAULT; off + 8 <= sizeof(h);) {
        uint32_t type = diskimg_be32(h + off), len = diskimg_be32(h + off + 4);
        if (type == QCOW2_EXT_CRYPTO)
            return off + 8;
        g_assert_cmpuint(type, !=, 0);
        off += 8 + ((len + 7) & ~7u);
    }
    g_assert_not_reached();
}

/* Damaged encryption metadata: open fails with an error, never crashes,
 * with and without the key. */
static void test_encrypt_hostile(void)
{
    if (!crypto_or_skip())
        return;
    define_secrets();
    diskimg_schema *schema = qschema();
    struct timg t = { 0 };
    timg_create_opts(&t, 4 * MiB, schema, "encrypt.format=luks,encrypt.key-secret=qsec,"
                     "encrypt.iter-time=10");
    GError *err = NULL;
    t.s = open_opts(&t, 0, schema, "encrypt.key-secret=qsec", &err);
    g_assert_no_error(err);
    uint64_t off = t.s->h.crypto_offset, len = t.s->h.crypto_length;
    uint64_t l1 = t.s->h.l1_offset;
    timg_close(&t);
    uint64_t ext = crypto_ext_at(&t);
    const struct {
        int field;              /* 0: offset, 1: length */
        uint64_t value;
        const char *expect;
    } cases[] = {
        { 0, CS + 512, "not a multiple of cluster size" },
        { 0, 0, "Invalid encryption header offset" },
        { 0, 1ull << 60, "Invalid encryption header offset" },
        { 0, UINT64_MAX & ~(uint64_t)(CS - 1), "Invalid encryption header offset" },
        { 1, UINT64_MAX, "Invalid encryption header offset" },
        { 1, 100, "too small" },
        { 1, 4096, "beyond the encryption header length" },
        { 0, 1000 * CS, "LUKS" },        /* beyond the end of the file */
        { 0, l1, "LUKS" },               /* over other metadata */
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint64_t v = cases[i].value;
        raw_put(&t, ext, 8, cases[i].field == 0 ? v : off);
        raw_put(&t, ext + 8, 8, cases[i].field == 1 ? v : len);
        expect_open_error(&t, DISKIMG_OPEN_NO_IO, schema, NULL, cases[i].expect);
        expect_open_error(&t, 0, schema, "encrypt.key-secret=qsec", cases[i].expect);
    }
    raw_put(&t, ext, 8, off);
    raw_put(&t, ext + 8, 8, len);
    /* the extension only goes with method 2, method 2 needs it */
    raw_put(&t, 32, 4, QCOW2_CRYPT_AES);
    expect_open_error(&t, DISKIMG_OPEN_NO_IO, schema, NULL, "only expected with LUKS");
    raw_put(&t, 32, 4, QCOW2_CRYPT_LUKS);
    raw_put(&t, ext - 4, 4, 8);
    expect_open_error(&t, DISKIMG_OPEN_NO_IO, schema, NULL, "size 8, but expected size 16");
    raw_put(&t, ext - 4, 4, 16);
    raw_put(&t, ext - 8, 4, 0x12345678);
    expect_open_error(&t, DISKIMG_OPEN_NO_IO, schema, NULL, "Missing CRYPTO header");
    raw_put(&t, ext - 8, 4, QCOW2_EXT_CRYPTO);

    /* random bytes over the LUKS header: parsing fails or succeeds, never
     * more (metadata-only opens, no key derivation from hostile counts) */
    GRand *r = g_rand_new_with_seed(7);
    g_autofree uint8_t *orig = g_malloc(DISKIMG_LUKS_HEADER_SIZE);
    g_assert_cmpint(diskimg_node_pread(diskimg_node_file(t.raw), orig,
                                       DISKIMG_LUKS_HEADER_SIZE, off, NULL), ==, 0);
    for (int iter = 0; iter < 200; iter++) {
        for (int k = 0; k < 4; k++)
            raw_put(&t, off + (uint64_t)g_rand_int_range(r, 0, DISKIMG_LUKS_HEADER_SIZE), 1,
                    (uint8_t)g_rand_int(r));
        t.s = open_opts(&t, DISKIMG_OPEN_NO_IO, schema, NULL, &err);
        if (!t.s) {
            g_assert_nonnull(err);
            g_clear_error(&err);
        } else {
            /* what info prints stays valid output, whatever the bytes */
            struct diskimg_image_info info = { .struct_size = sizeof(info) };
            g_autoptr(JsonObject) jo = json_object_new();
            g_assert_cmpint(qcow2_info(t.s, &info, diskimg_obj_from_json(jo), &err), ==, 0);
            g_assert_true(info.encrypted);
            g_autoptr(JsonObject) conformed = diskimg_schema_conform(schema, "info", jo, &err);
            g_assert_no_error(err);
            g_assert_nonnull(conformed);
            timg_close(&t);
        }
        g_assert_cmpint(diskimg_node_pwrite(diskimg_node_file(t.raw), orig,
                                            DISKIMG_LUKS_HEADER_SIZE, off, 0, NULL), ==, 0);
    }
    g_rand_free(r);
    /* restored: the image opens again */
    t.s = open_opts(&t, 0, schema, "encrypt.key-secret=qsec", &err);
    g_assert_no_error(err);
    assert_clean(t.s);
    timg_destroy(&t);
    diskimg_schema_free(schema);
}

/* Encryption create options: qemu's refusals. */
static void test_encrypt_options(void)
{
    define_secrets();
    diskimg_schema *schema = qschema();
    static const struct {
        const char *opts;
        const char *expect;     /* NULL: accepted */
        uint32_t method;
    } cases[] = {
        { "encryption=on,encrypt.format=luks", "can't be used at the same time", 0 },
        { "encrypt.format=aes,encrypt.key-secret=qsec,encrypt.cipher-alg=aes-128",
          "Parameter 'encrypt.cipher-alg' is unexpected", 0 },
        { "encrypt.key-secret=qsec", "Parameter 'encrypt.format' is missing", 0 },
        { "encrypt.format=luks", "Parameter 'encrypt.key-secret' is required for cipher", 0 },
        { "encryption=on", "Parameter 'encrypt.key-secret' is required for cipher", 0 },
        { "encryption=on,encrypt.key-secret=qsec", NULL, QCOW2_CRYPT_AES },
        { "encryption=off,encrypt.format=luks,encrypt.key-secret=qsec", NULL,
          QCOW2_CRYPT_LUKS },
        { "compat=0.10", NULL, QCOW2_CRYPT_NONE },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        diskimg_options *o = qopts(schema, "create-options", cases[i].opts);
        uint32_t method = 99;
        GError *err = NULL;
        int ret = qcow2_crypto_parse_create(o, &method, &err);
        if (cases[i].expect) {
            g_assert_cmpint(ret, <, 0);
            g_assert_nonnull(err);
            g_assert_nonnull(strstr(err->message, cases[i].expect));
            g_clear_error(&err);
        } else {
            g_assert_no_error(err);
            g_assert_cmpuint(method, ==, cases[i].method);
        }
        diskimg_options_free(o);
    }
    /* measure: qemu's sizes (header area rounded up to clusters) */
    static const struct {
        const char *opts;
        uint64_t cs, bytes;
    } m[] = {
        { "encrypt.format=luks,encrypt.key-secret=qsec", 65536, 2097152 },
        { "encrypt.format=luks,encrypt.key-secret=qsec,encrypt.cipher-alg=aes-128", 512,
          1052672 },
        { "encrypt.format=luks,encrypt.key-secret=qsec,encrypt.cipher-mode=cbc", 65536,
          1114112 },
        { "encrypt.format=aes", 65536, 0 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(m); i++) {
        diskimg_options *o = qopts(schema, "create-options", m[i].opts);
        uint64_t bytes = 1;
        GError *err = NULL;
        g_assert_cmpint(qcow2_crypto_measure(o, m[i].cs, &bytes, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpuint(bytes, ==, m[i].bytes);
        diskimg_options_free(o);
    }
    diskimg_schema_free(schema);
}

/* ------------------------------------------------------------ concurrency */

/* Requests of several threads on one handle, through the descriptor's
 * callbacks (which take the plugin's locks).  Each thread owns the
 * clusters of every STRESS_THREADS-th block of STRESS_BLOCK clusters, so
 * the expected content is deterministic: a model of the image that only
 * the owner of a byte writes.  A ninth thread snapshots, checks and
 * flushes meanwhile: check must find nothing wrong while writes run. */
#define STRESS_THREADS 8
#define STRESS_BLOCK 4u

struct stress {
    struct qcow2 *s;
    uint8_t *model;
    uint64_t size, cs;
    bool compress;           /* compressed writes too (not with encryption) */
    gint64 deadline;
    guint32 seed;
    gint stop;               /* a worker failed: everyone stops */
};

struct stress_worker {
    struct stress *st;
    unsigned id;
    uint64_t ops;
};

/* A random range inside one block the worker owns; sometimes unaligned. */
static void stress_range(struct stress_worker *w, GRand *r, uint64_t *off, uint64_t *len)
{
    struct stress *st = w->st;
    uint64_t bsize = STRESS_BLOCK * st->cs, blocks = st->size / bsize;
    uint64_t mine = (blocks - w->id + STRESS_THREADS - 1) / STRESS_THREADS;
    uint64_t b = w->id + STRESS_THREADS * (uint64_t)g_rand_int_range(r, 0, (gint32)mine);
    uint64_t unit = g_rand_boolean(r) ? st->cs : 512;
    if (g_rand_int_range(r, 0, 4) == 0)
        unit = 1;
    uint64_t units = bsize / unit;
    uint64_t a = (uint64_t)g_rand_int_range(r, 0, (gint32)units);
    uint64_t n = (uint64_t)g_rand_int_range(r, 1, (gint32)(units - a + 1));
    *off = b * bsize + a * unit;
    *len = MIN(n * unit, 3 * st->cs);
}

static bool stress_read(struct stress_worker *w, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *b = g_malloc(len);
    GError *err = NULL;
    if (qcow2_ops.read(w->st->s, b, len, off, &err) < 0) {
        g_printerr("read %#" PRIx64 "+%#" PRIx64 ": %s\n", off, len, err->message);
        g_error_free(err);
        return false;
    }
    if (memcmp(b, w->st->model + off, len) != 0) {
        g_printerr("thread %u: read %#" PRIx64 "+%#" PRIx64 " differs from the model\n", w->id,
                   off, len);
        return false;
    }
    return true;
}

static bool stress_write(struct stress_worker *w, GRand *r, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *b = g_malloc(len);
    for (uint64_t i = 0; i < len; i++)
        b[i] = (uint8_t)(off + i + w->ops);
    GError *err = NULL;
    unsigned flags = g_rand_int_range(r, 0, 16) == 0 ? DISKIMG_WRITE_FUA : 0;
    if (qcow2_ops.write(w->st->s, b, len, off, flags, &err) < 0) {
        g_printerr("write %#" PRIx64 "+%#" PRIx64 ": %s\n", off, len, err->message);
        g_error_free(err);
        return false;
    }
    memcpy(w->st->model + off, b, len);
    return true;
}

/* Zero writes zero the range; discards only the whole clusters in it
 * (without a backing file they then read as zeroes). */
static bool stress_zero(struct stress_worker *w, GRand *r, uint64_t off, uint64_t len)
{
    struct stress *st = w->st;
    GError *err = NULL;
    bool discard = g_rand_boolean(r);
    int ret = discard ? qcow2_ops.discard(st->s, off, len, &err)
                      : qcow2_ops.write_zeroes(st->s, off, len,
                                               g_rand_boolean(r) ? DISKIMG_WRITE_MAY_UNMAP : 0,
                                               &err);
    if (ret < 0) {
        g_printerr("%s %#" PRIx64 "+%#" PRIx64 ": %s\n", discard ? "discard" : "zero", off,
                   len, err->message);
        g_error_free(err);
        return false;
    }
    uint64_t a = off, b = off + len;
    if (discard) {
        a = (off + st->cs - 1) / st->cs * st->cs;
        b = (off + len) / st->cs * st->cs;
    }
    if (a < b)
        memset(st->model + a, 0, b - a);
    return true;
}

/* Compresses one whole cluster of the range (mostly compressible data). */
static bool stress_compressed(struct stress_worker *w, uint64_t off)
{
    struct stress *st = w->st;
    uint64_t c = off / st->cs * st->cs;
    g_autofree uint8_t *b = g_malloc(st->cs);
    for (uint64_t i = 0; i < st->cs; i++)
        b[i] = (uint8_t)((i / 64) ^ w->ops);
    GError *err = NULL;
    if (qcow2_ops.write_compressed(st->s, b, st->cs, c, &err) < 0) {
        g_printerr("compressed write %#" PRIx64 ": %s\n", c, err->message);
        g_error_free(err);
        return false;
    }
    memcpy(st->model + c, b, st->cs);
    return true;
}

static bool stress_op(struct stress_worker *w, GRand *r)
{
    uint64_t off, len;
    stress_range(w, r, &off, &len);
    switch (g_rand_int_range(r, 0, 10)) {
    case 0:
    case 1:
    case 2:
    case 3:
        return stress_read(w, off, len);
    case 4:
    case 5:
    case 6:
        return stress_write(w, r, off, len);
    case 7:
    case 8:
        return stress_zero(w, r, off, len);
    default:
        return w->st->compress ? stress_compressed(w, off) : stress_read(w, off, len);
    }
}

static gpointer stress_thread(gpointer data)
{
    struct stress_worker *w = data;
    GRand *r = g_rand_new_with_seed(w->st->seed + w->id);
    while (!g_atomic_int_get(&w->st->stop) && g_get_monotonic_time() < w->st->deadline) {
        if (!stress_op(w, r)) {
            g_atomic_int_set(&w->st->stop, 1);
            break;
        }
        w->ops++;
    }
    g_rand_free(r);
    return NULL;
}

static bool admin_check(struct stress *st)
{
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    GError *err = NULL;
    if (qcow2_ops.check(st->s, 0, &res, &err) < 0 || res.corruptions || res.leaks ||
        res.check_errors) {
        g_printerr("check during writes: %s, %" PRIu64 " corruptions, %" PRIu64 " leaks\n",
                   err ? err->message : "ok", res.corruptions, res.leaks);
        g_clear_error(&err);
        return false;
    }
    return true;
}

/* Snapshots make the clusters shared, so that writes copy them and free
 * the copies' sources; the snapshot is deleted again at once. */
static bool admin_snapshot(struct stress *st)
{
    struct diskimg_snapshot sn = { .struct_size = sizeof(sn), .name = "stress", .date_sec = 1 };
    GError *err = NULL;
    if (qcow2_ops.snapshot_create(st->s, &sn, &err) < 0 ||
        qcow2_ops.flush(st->s, &err) < 0 || qcow2_ops.snapshot_delete(st->s, "stress", &err) < 0) {
        g_printerr("snapshot during writes: %s\n", err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

static gpointer stress_admin(gpointer data)
{
    struct stress *st = data;
    for (unsigned i = 0; !g_atomic_int_get(&st->stop) && g_get_monotonic_time() < st->deadline;
         i++) {
        g_usleep(20000);
        if (!(i % 2 ? admin_check(st) : admin_snapshot(st)))
            g_atomic_int_set(&st->stop, 1);
    }
    return NULL;
}

/* Runs the workers and the admin thread for `ms` on the open image. */
static void stress_run(struct stress *st, unsigned ms)
{
    struct stress_worker w[STRESS_THREADS];
    GThread *t[STRESS_THREADS];
    st->deadline = g_get_monotonic_time() + (gint64)ms * 1000;
    st->seed = g_test_rand_int();
    g_test_message("stress seed %" PRIu32, st->seed);
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        w[i] = (struct stress_worker){ .st = st, .id = i };
        t[i] = g_thread_new("qcow2-stress", stress_thread, &w[i]);
    }
    GThread *admin = g_thread_new("qcow2-admin", stress_admin, st);
    uint64_t ops = 0;
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        g_thread_join(t[i]);
        ops += w[i].ops;
    }
    g_thread_join(admin);
    g_test_message("%" PRIu64 " requests", ops);
    g_assert_cmpint(g_atomic_int_get(&st->stop), ==, 0);
}

static void stress_verify(struct stress *st)
{
    assert_clean(st->s);
    g_autofree uint8_t *b = g_malloc(st->size);
    GError *err = NULL;
    g_assert_cmpint(qcow2_ops.read(st->s, b, st->size, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(memcmp(b, st->model, st->size) == 0);
}

static void stress_image(struct timg *t, struct stress *st, const char *what)
{
    g_test_message("%s", what);
    st->s = t->s;
    st->model = g_malloc0(st->size);
    stress_run(st, 1500);
    stress_verify(st);
    /* what reached the disk is what the model says */
    timg_reopen(t, DISKIMG_OPEN_RDWR);
    st->s = t->s;
    stress_verify(st);
    g_free(st->model);
}

static void test_parallel_requests(void)
{
    static const struct {
        const char *opts;
        uint64_t cs;
    } images[] = {
        { "cluster_size=65536", 65536 },
        { "cluster_size=4096", 4096 },            /* many requests share an L2 table */
        { "cluster_size=65536,extended_l2=on", 65536 },
    };
    diskimg_schema *schema = qschema();
    for (size_t i = 0; i < G_N_ELEMENTS(images); i++) {
        struct timg t = { 0 };
        struct stress st = { .cs = images[i].cs, .compress = true };
        st.size = STRESS_THREADS * STRESS_BLOCK * st.cs * 8;
        timg_create_opts(&t, st.size, schema, images[i].opts);
        timg_open(&t, DISKIMG_OPEN_RDWR);
        stress_image(&t, &st, images[i].opts);
        timg_destroy(&t);
    }
    diskimg_schema_free(schema);
}

/* Encrypted: requests encrypt and decrypt concurrently; unaligned ones
 * take the locked read-modify-write path. */
static void test_parallel_encrypted(void)
{
    if (!crypto_or_skip())
        return;
    define_secrets();
    diskimg_schema *schema = qschema();
    struct timg t = { 0 };
    struct stress st = { .cs = 65536 };
    st.size = STRESS_THREADS * STRESS_BLOCK * st.cs * 2;
    timg_create_opts(&t, st.size, schema, "encrypt.format=luks,encrypt.key-secret=qsec,"
                     "encrypt.iter-time=10");
    GError *err = NULL;
    t.s = open_opts(&t, DISKIMG_OPEN_RDWR, schema, "encrypt.key-secret=qsec", &err);
    g_assert_no_error(err);
    st.s = t.s;
    st.model = g_malloc0(st.size);
    stress_run(&st, 1000);
    stress_verify(&st);
    g_free(st.model);
    timg_destroy(&t);
    diskimg_schema_free(schema);
}

/* The compressed allocation cursor must not outlive its cluster: once
 * freed and reused as a data cluster, compressed bytes appended there
 * would overwrite guest data (found by the parallel test). */
static void test_compressed_cursor_reuse(void)
{
    struct timg t = { 0 };
    timg_create(&t, 4 * MiB);
    g_autofree uint8_t *z = g_malloc0(CS);
    GError *err = NULL;
    g_assert_cmpint(qcow2_write_compressed(t.s, z, CS, 0, &err), ==, 0);
    g_assert_cmpint(qcow2_discard(t.s, 0, CS, &err), ==, 0);
    g_assert_no_error(err);
    fill_write(t.s, 0xaa, CS, CS);          /* reuses the freed cluster */
    g_assert_cmpint(qcow2_write_compressed(t.s, z, CS, 2 * CS, &err), ==, 0);
    g_assert_no_error(err);
    assert_reads(t.s, 0xaa, CS, CS);
    assert_reads(t.s, 0, 2 * CS, CS);
    assert_clean(t.s);
    timg_destroy(&t);
}

struct creader {
    struct qcow2 *s;
    const uint8_t *model;
    uint64_t size, cs;
    guint32 seed;
    gint failed;
};

/* Whole clusters, partial ones (the per-thread cache) and runs across
 * several compressed clusters. */
static gpointer creader_thread(gpointer data)
{
    struct creader *c = data;
    GRand *r = g_rand_new_with_seed(c->seed);
    g_autofree uint8_t *b = g_malloc(4 * c->cs);
    for (unsigned i = 0; i < 400 && !g_atomic_int_get(&c->failed); i++) {
        uint64_t off = (uint64_t)g_rand_int_range(r, 0, (gint32)(c->size / 512)) * 512;
        uint64_t want = g_rand_boolean(r) ? c->cs
                        : 512 * (uint64_t)g_rand_int_range(r, 1, (gint32)(4 * c->cs / 512));
        uint64_t len = MIN(c->size - off, want);
        GError *err = NULL;
        if (qcow2_ops.read(c->s, b, len, off, &err) < 0 || memcmp(b, c->model + off, len)) {
            g_printerr("read %#" PRIx64 "+%#" PRIx64 ": %s\n", off, len,
                       err ? err->message : "differs from the model");
            g_clear_error(&err);
            g_atomic_int_set(&c->failed, 1);
        }
    }
    g_rand_free(r);
    return NULL;
}

static void test_parallel_compressed_reads(void)
{
    struct timg t = { 0 };
    uint64_t size = 4 * MiB;
    timg_create(&t, size);
    g_autofree uint8_t *model = g_malloc(size);
    for (uint64_t i = 0; i < size; i++)
        model[i] = (uint8_t)((i / 100) * 7 + (i >> 16));
    GError *err = NULL;
    for (uint64_t off = 0; off < size; off += CS)
        g_assert_cmpint(qcow2_ops.write_compressed(t.s, model + off, CS, off, &err), ==, 0);
    g_assert_no_error(err);
    struct creader c[STRESS_THREADS];
    GThread *th[STRESS_THREADS];
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        c[i] = (struct creader){ .s = t.s, .model = model, .size = size, .cs = CS,
                                 .seed = g_test_rand_int() };
        th[i] = g_thread_new("qcow2-creader", creader_thread, &c[i]);
    }
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        g_thread_join(th[i]);
        g_assert_cmpint(c[i].failed, ==, 0);
    }
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    g_assert_cmpint(qcow2_block_status(t.s, 0, CS, &ext, &err), ==, 0);
    g_assert_true(ext.flags & DISKIMG_BS_COMPRESSED);
    assert_clean(t.s);
    timg_destroy(&t);
}

/* ------------------------------------------------------------ refcount width */

static void change_order(struct qcow2 *s, uint32_t order)
{
    GError *err = NULL;
    g_assert_cmpint(qcow2_change_refcount_order(s, order, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(s->h.refcount_order, ==, order);
    g_assert_cmpuint(s->refcount_bits, ==, 1u << order);
    assert_clean(s);
}

static void write_compressed_fill(struct qcow2 *s, uint8_t v, uint64_t off)
{
    g_autofree uint8_t *b = g_malloc(CS);
    memset(b, v, CS);
    GError *err = NULL;
    g_assert_cmpint(qcow2_write_compressed(s, b, CS, off, &err), ==, 0);
    g_assert_no_error(err);
}

/* 16 -> 1 -> 64 -> 16 and the other widths: after every switch the image
 * checks clean, reads the same, and allocates (plain and compressed)
 * through the new width; the last state survives a reopen. */
static void test_refcount_order_roundtrip(void)
{
    static const uint32_t orders[] = { 0, 6, 4, 1, 3, 5, 2, 4 };
    struct timg t = { 0 };
    timg_create(&t, 8 << 20);
    fill_write(t.s, 0x11, 0, 1 << 20);
    fill_write(t.s, 0x22, 5 << 20, 128 << 10);
    write_compressed_fill(t.s, 0x33, 3 << 20);
    assert_clean(t.s);
    for (unsigned i = 0; i < G_N_ELEMENTS(orders); i++) {
        uint64_t off = (6 << 20) + (uint64_t)i * 2 * CS;
        uint64_t old_table = t.s->h.reftable_offset;
        change_order(t.s, orders[i]);
        g_assert_cmpuint(t.s->h.reftable_offset, !=, old_table);
        assert_reads(t.s, 0x11, 0, 1 << 20);
        assert_reads(t.s, 0x22, 5 << 20, 128 << 10);
        assert_reads(t.s, 0x33, 3 << 20, CS);
        /* allocations in the new width, the freed old structures reused */
        fill_write(t.s, (uint8_t)(0x40 + i), off, CS);
        write_compressed_fill(t.s, (uint8_t)(0x80 + i), off + CS);
        assert_clean(t.s);
    }
    /* the same width again changes nothing */
    uint64_t table = t.s->h.reftable_offset;
    change_order(t.s, 4);
    g_assert_cmpuint(t.s->h.reftable_offset, ==, table);

    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(t.s->refcount_bits, ==, 16);
    assert_clean(t.s);
    for (unsigned i = 0; i < G_N_ELEMENTS(orders); i++) {
        uint64_t off = (6 << 20) + (uint64_t)i * 2 * CS;
        assert_reads(t.s, (uint8_t)(0x40 + i), off, CS);
        assert_reads(t.s, (uint8_t)(0x80 + i), off + CS, CS);
    }
    assert_reads(t.s, 0x11, 0, 1 << 20);
    timg_destroy(&t);
}

/* A refcount the new width cannot hold refuses the change before
 * anything is written. */
static void test_refcount_order_refuse(void)
{
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create(&t, 4 << 20);
    fill_write(t.s, 0x33, 0, 256 << 10);
    snap_create(t.s, "s1");                 /* data clusters: refcount 2 */
    g_assert_cmpint(qcow2_flush_metadata(t.s, &err), ==, 0);
    g_autofree char *before = NULL, *after = NULL;
    gsize blen = 0, alen = 0;
    g_assert_true(g_file_get_contents(t.path, &before, &blen, NULL));

    g_assert_cmpint(qcow2_change_refcount_order(t.s, 0, &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_true(g_str_has_prefix(err->message, "Cannot decrease refcount entry width to 1 "
                                   "bits: Cluster at offset 0x"));
    g_assert_true(g_str_has_suffix(err->message, " has a refcount of 2"));
    g_clear_error(&err);
    g_assert_true(g_file_get_contents(t.path, &after, &alen, NULL));
    g_assert_cmpmem(before, blen, after, alen);
    g_assert_cmpuint(t.s->refcount_bits, ==, 16);
    assert_clean(t.s);

    change_order(t.s, 1);                   /* 2 bits hold 2 */
    g_assert_cmpint(qcow2_snapshot_delete(t.s, "s1", &err), ==, 0);
    g_assert_no_error(err);
    assert_clean(t.s);
    change_order(t.s, 0);                   /* and now every refcount is 1 */
    assert_reads(t.s, 0x33, 0, 256 << 10);

    /* out of range and read-only */
    g_assert_cmpint(qcow2_change_refcount_order(t.s, 7, &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    timg_reopen(&t, 0);
    g_assert_cmpint(qcow2_change_refcount_order(t.s, 4, &err), <, 0);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_cmpuint(t.s->refcount_bits, ==, 1);
    timg_destroy(&t);
}

static int amend_text(struct qcow2 *s, diskimg_schema *schema, const char *text, GError **errp)
{
    diskimg_options *o = qopts(schema, "amend-options", text);
    int ret = qcow2_amend(s, o, false, errp);
    diskimg_options_free(o);
    return ret;
}

/* Through amend, on 512-byte clusters (many blocks, a table of several
 * clusters), with the compat rules of qemu. */
static void test_refcount_order_amend(void)
{
    diskimg_schema *schema = qschema();
    struct timg t = { 0 };
    GError *err = NULL;
    timg_create_opts(&t, 16 << 20, schema, "compat=0.10,cluster_size=512");
    timg_open(&t, DISKIMG_OPEN_RDWR);
    fill_write(t.s, 0x5a, 0, 12 << 20);

    g_assert_cmpint(amend_text(t.s, schema, "refcount_bits=8", &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "Refcount widths other than 16 bits require "
                    "compatibility level 1.1 or above (use compat=1.1 or greater)");
    g_clear_error(&err);
    g_assert_cmpint(amend_text(t.s, schema, "compat=1.1,refcount_bits=3", &err), <, 0);
    g_assert_cmpstr(err->message, ==, "Refcount width must be a power of two and may not "
                    "exceed 64 bits");
    g_clear_error(&err);
    g_assert_cmpuint(t.s->h.version, ==, 2);

    g_assert_cmpint(amend_text(t.s, schema, "compat=1.1,refcount_bits=64", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(t.s->h.version, ==, 3);
    g_assert_cmpuint(t.s->refcount_bits, ==, 64);
    g_assert_cmpuint(t.s->h.reftable_clusters, >, 1);
    assert_clean(t.s);
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(t.s->refcount_bits, ==, 64);
    assert_clean(t.s);

    /* the width changes before the downgrade, which needs 16 bits */
    g_assert_cmpint(amend_text(t.s, schema, "compat=0.10,refcount_bits=16", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(t.s->h.version, ==, 2);
    g_assert_cmpuint(t.s->refcount_bits, ==, 16);
    assert_clean(t.s);
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(t.s->h.version, ==, 2);
    assert_clean(t.s);
    assert_reads(t.s, 0x5a, 0, 12 << 20);
    timg_destroy(&t);
    diskimg_schema_free(schema);
}

/* ------------------------------------------------------------ growth ahead of allocation */

static uint64_t file_size(struct timg *t)
{
    int64_t n = diskimg_node_size(diskimg_node_file(t->raw), NULL);
    g_assert_cmpint(n, >=, 0);
    return (uint64_t)n;
}

/* fill_write through the descriptor's callback (the unlocking path). */
static void ops_fill_write(struct qcow2 *s, uint8_t v, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *b = g_malloc(len);
    memset(b, v, len);
    GError *err = NULL;
    g_assert_cmpint(qcow2_ops.write(s, b, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

/* Whether the next cluster allocated would be taken as zeroes; the
 * cluster is given back. */
static bool next_alloc_zero(struct qcow2 *s)
{
    uint64_t old_end = s->end_cluster << s->cluster_bits, host;
    GError *err = NULL;
    g_assert_cmpint(qcow2_alloc_clusters(s, 1, &host, &err), ==, 0);
    g_assert_no_error(err);
    bool zero = qcow2_tail_reserve(s, host, s->cluster_size, old_end);
    g_assert_cmpint(qcow2_update_refcount(s, host, s->cluster_size, -1, &err), ==, 0);
    return zero;
}

/* Small writes into fresh clusters at the end: the file grows ahead in
 * large steps, what the writes leave out of their clusters reads as
 * zeroes without being written, and close cuts the file back to the
 * clusters in use. */
static void test_tail_grow_trim(void)
{
    struct timg t = { 0 };
    timg_create(&t, 64 * MiB);
    uint64_t created = file_size(&t);
    for (uint64_t c = 0; c < 40; c++)
        ops_fill_write(t.s, (uint8_t)(c + 1), c * CS + 4096, 4096);
    g_assert_cmpuint(diskimg_tail_grown_from(t.s->tail), >=, created);
    g_assert_true(next_alloc_zero(t.s));
    uint64_t used = t.s->end_cluster * CS;
    g_assert_cmpuint(file_size(&t), >, used);
    for (uint64_t c = 0; c < 40; c++) {
        assert_reads(t.s, 0, c * CS, 4096);
        assert_reads(t.s, (uint8_t)(c + 1), c * CS + 4096, 4096);
        assert_reads(t.s, 0, c * CS + 8192, CS - 8192);
    }
    assert_clean(t.s);
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(file_size(&t), ==, used);
    assert_reads(t.s, 40, 39 * CS + 4096, 4096);
    assert_clean(t.s);
    timg_destroy(&t);
}

/* Bytes past the clusters in use that growing did not add (here: junk
 * some tool left) are never taken as zeroes, and are not cut. */
static void test_tail_foreign(void)
{
    struct timg t = { 0 };
    timg_create(&t, 64 * MiB);
    timg_close(&t);
    uint64_t end = file_size(&t);
    g_autofree uint8_t *junk = g_malloc(4 * CS);
    memset(junk, 0xff, 4 * CS);
    g_assert_cmpint(diskimg_node_pwrite(diskimg_node_file(t.raw), junk, 4 * CS, end, 0, NULL),
                    ==, 0);
    timg_open(&t, DISKIMG_OPEN_RDWR);
    g_assert_false(next_alloc_zero(t.s));
    /* the first clusters land in the junk, the next ones past it */
    for (uint64_t c = 0; c < 8; c++)
        ops_fill_write(t.s, 0x22, c * CS + 4096, 4096);
    for (uint64_t c = 0; c < 8; c++) {
        assert_reads(t.s, 0, c * CS, 4096);
        assert_reads(t.s, 0x22, c * CS + 4096, 4096);
        assert_reads(t.s, 0, c * CS + 8192, CS - 8192);
    }
    timg_reopen(&t, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(file_size(&t), >=, end + 4 * CS);
    assert_reads(t.s, 0, 7 * CS + 8192, CS - 8192);
    assert_clean(t.s);
    timg_destroy(&t);
}

/* The image as a crash after a flush leaves it: the grown tail is still
 * there.  It checks clean, reads right, and later allocations reuse the
 * tail (not taken as zeroes: nothing says it is) without cutting it. */
static void test_tail_crash(void)
{
    struct timg t = { 0 };
    timg_create(&t, 64 * MiB);
    for (uint64_t c = 0; c < 4; c++)
        ops_fill_write(t.s, 0x33, c * CS, 4096);
    GError *err = NULL;
    g_assert_cmpint(qcow2_flush(t.s, &err), ==, 0);
    g_assert_no_error(err);
    uint64_t used = t.s->end_cluster * CS;
    g_autofree char *copy = NULL;
    gsize len;
    g_assert_true(g_file_get_contents(t.path, &copy, &len, NULL));
    timg_destroy(&t);

    struct timg c = { 0 };
    timg_create(&c, MiB);
    timg_close(&c);
    diskimg_node *f = diskimg_node_file(c.raw);
    g_assert_cmpint(diskimg_node_truncate(f, 0, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                                          NULL), ==, 0);
    g_assert_cmpint(diskimg_node_pwrite(f, copy, len, 0, 0, NULL), ==, 0);
    timg_open(&c, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(file_size(&c), >, used);
    assert_clean(c.s);
    assert_reads(c.s, 0x33, 3 * CS, 4096);
    assert_reads(c.s, 0, 3 * CS + 4096, CS - 4096);
    g_assert_false(next_alloc_zero(c.s));
    for (uint64_t i = 4; i < 8; i++)
        ops_fill_write(c.s, 0x44, i * CS + 4096, 4096);
    g_assert_cmpuint(c.s->end_cluster * CS, <=, len);
    timg_reopen(&c, DISKIMG_OPEN_RDWR);
    g_assert_cmpuint(file_size(&c), ==, len);
    assert_reads(c.s, 0x33, 3 * CS, 4096);
    assert_reads(c.s, 0, 7 * CS, 4096);
    assert_reads(c.s, 0x44, 7 * CS + 4096, 4096);
    assert_reads(c.s, 0, 7 * CS + 8192, CS - 8192);
    assert_clean(c.s);
    timg_destroy(&c);
}

/* Writers that all start on the same fresh clusters at once, each with
 * its own piece of every cluster (as a parallel sequential stream). */
struct same_cluster {
    struct qcow2 *s;
    uint64_t clusters, cs;
    unsigned id;
    gint *ready, *failed;
};

static uint8_t piece_byte(uint64_t cluster, unsigned id)
{
    return (uint8_t)(cluster * STRESS_THREADS + id + 1);
}

static gpointer same_cluster_thread(gpointer data)
{
    struct same_cluster *w = data;
    uint64_t piece = w->cs / STRESS_THREADS;
    g_autofree uint8_t *b = g_malloc(piece);
    /* start together, so that the writers meet on every cluster */
    g_atomic_int_inc(w->ready);
    while (g_atomic_int_get(w->ready) < STRESS_THREADS)
        g_thread_yield();
    for (uint64_t c = 0; c < w->clusters && !g_atomic_int_get(w->failed); c++) {
        GError *err = NULL;
        memset(b, piece_byte(c, w->id), piece);
        if (qcow2_ops.write(w->s, b, piece, c * w->cs + w->id * piece, 0, &err) < 0) {
            g_printerr("write: %s\n", err->message);
            g_error_free(err);
            g_atomic_int_set(w->failed, 1);
        }
    }
    return NULL;
}

static void same_cluster_run(struct qcow2 *s, uint64_t clusters, uint64_t cs)
{
    struct same_cluster w[STRESS_THREADS];
    GThread *th[STRESS_THREADS];
    gint ready = 0, failed = 0;
    for (unsigned i = 0; i < STRESS_THREADS; i++) {
        w[i] = (struct same_cluster){ .s = s, .clusters = clusters, .cs = cs, .id = i,
                                      .ready = &ready, .failed = &failed };
        th[i] = g_thread_new("qcow2-same", same_cluster_thread, &w[i]);
    }
    for (unsigned i = 0; i < STRESS_THREADS; i++)
        g_thread_join(th[i]);
    g_assert_cmpint(failed, ==, 0);
}

static void same_cluster_verify(struct qcow2 *s, uint64_t clusters, uint64_t cs)
{
    uint64_t piece = cs / STRESS_THREADS;
    for (uint64_t c = 0; c < clusters; c++) {
        for (unsigned i = 0; i < STRESS_THREADS; i++)
            assert_reads(s, piece_byte(c, i), c * cs + i * piece, piece);
    }
    assert_clean(s);
}

/* Fresh clusters of zeroes (linked at once), extended L2 (allocations in
 * flight that the other writers wait for) and clusters freed before
 * (not known to be zeroes: zero-filled, unlocked). */
static void test_parallel_same_cluster(void)
{
    static const struct {
        const char *opts;
        bool reuse;
    } cases[] = {
        { "cluster_size=65536", false },
        { "cluster_size=65536,extended_l2=on", false },
        { "cluster_size=65536", true },
    };
    diskimg_schema *schema = qschema();
    uint64_t clusters = 96;
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct timg t = { 0 };
        timg_create_opts(&t, clusters * CS, schema, cases[i].opts);
        timg_open(&t, DISKIMG_OPEN_RDWR);
        GError *err = NULL;
        if (cases[i].reuse) {
            fill_write(t.s, 0xee, 0, clusters * CS);
            g_assert_cmpint(qcow2_discard(t.s, 0, clusters * CS, &err), ==, 0);
            g_assert_no_error(err);
        }
        same_cluster_run(t.s, clusters, CS);
        same_cluster_verify(t.s, clusters, CS);
        timg_reopen(&t, DISKIMG_OPEN_RDWR);
        same_cluster_verify(t.s, clusters, CS);
        timg_destroy(&t);
    }
    diskimg_schema_free(schema);
}

/* ------------------------------------------------------------ metadata cache hooks */

/* qcow2's hooks on the core's metadata cache: a metadata offset inside a
 * cluster (a damaged reftable entry, say; L1 entries are checked before
 * with qemu's own message) marks the image corrupt, qemu's corruption
 * signal, and once corrupt no cached metadata is written back. */
static void test_cache_hooks_corrupt(void)
{
    struct timg t = { 0 };
    timg_create(&t, 64 * MiB);
    ops_fill_write(t.s, 0x11, 0, 4096);
    uint64_t l2 = t.s->l1[0] & QCOW2_OFFSET_MASK, rb = t.s->reftable[0] & QCOW2_OFFSET_MASK;
    GError *err = NULL;
    uint8_t *d;
    g_assert_cmpint(diskimg_mcache_get(t.s->rbc, rb + 512, 0, &d, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_autofree char *want = g_strdup_printf("%s: refcount block offset %#" PRIx64 " is invalid",
                                            t.path, rb + 512);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    g_assert_true(t.s->corrupt);
    g_assert_true(t.s->h.incompat & QCOW2_INCOMPAT_CORRUPT);

    /* a dirty L2 table of the corrupt image (and the refcount blocks it
     * depends on) stays in memory */
    g_assert_cmpint(diskimg_mcache_get(t.s->l2c, l2, 0, &d, &err), ==, 0);
    diskimg_mcache_mark_dirty(t.s->l2c, d);
    diskimg_mcache_put(t.s->l2c, d);
    g_assert_cmpint(diskimg_mcache_flush(t.s->l2c, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "image is marked corrupt; not writing"));
    g_clear_error(&err);
    diskimg_mcache_discard(t.s->l2c, l2);
    timg_destroy(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    GError *err = NULL;
    if (diskimg_init(&err) < 0)
        g_error("%s", err->message);
    g_test_add_func("/qcow2/header/valid", test_header_valid);
    g_test_add_func("/qcow2/header/damaged", test_header_damaged);
    g_test_add_func("/qcow2/header/truncated", test_header_truncated);
    g_test_add_func("/qcow2/header/fuzz", test_header_fuzz);
    g_test_add_func("/qcow2/codec/roundtrip", test_codecs);
    g_test_add_func("/qcow2/codec/incompressible", test_codec_incompressible);
    g_test_add_func("/qcow2/snapshot/roundtrip", test_snapshot_roundtrip);
    g_test_add_func("/qcow2/snapshot/load", test_snapshot_load);
    g_test_add_func("/qcow2/snapshot/hostile", test_snapshot_hostile);
    g_test_add_func("/qcow2/bitmap/persist", test_bitmap_persist);
    g_test_add_func("/qcow2/bitmap/resize", test_bitmap_resize);
    g_test_add_func("/qcow2/bitmap/hostile", test_bitmap_hostile);
    g_test_add_func("/qcow2/tables/fuzz", test_tables_fuzz);
    g_test_add_func("/qcow2/guard/ranges", test_guard_ranges);
    g_test_add_func("/qcow2/guard/allocation", test_guard_allocation);
    g_test_add_func("/qcow2/check/rebuild", test_check_rebuild);
    g_test_add_func("/qcow2/check/copied-not-l2", test_check_copied_not_l2);
    g_test_add_func("/qcow2/check/data-beyond-eof", test_check_data_beyond_eof);
    g_test_add_func("/qcow2/check/l1-reserved", test_check_l1_reserved);
    g_test_add_func("/qcow2/check/l1-unaligned", test_check_l1_unaligned);
    g_test_add_func("/qcow2/check/refcount64-leak", test_check_refcount64_leak);
    g_test_add_func("/qcow2/guard/new-refblocks", test_guard_new_refblocks);
    g_test_add_func("/qcow2/check/snapshot-incomplete", test_check_snapshot_incomplete);
    g_test_add_func("/qcow2/check/snapshot-extra-too-large",
                    test_check_snapshot_extra_too_large);
    g_test_add_func("/qcow2/check/snapshot-l1-unaligned", test_check_snapshot_l1_unaligned);
    g_test_add_func("/qcow2/encrypt/luks", test_encrypt_luks);
    g_test_add_func("/qcow2/encrypt/aes", test_encrypt_aes);
    g_test_add_func("/qcow2/encrypt/hostile", test_encrypt_hostile);
    g_test_add_func("/qcow2/encrypt/options", test_encrypt_options);
    g_test_add_func("/qcow2/compressed/cursor-reuse", test_compressed_cursor_reuse);
    g_test_add_func("/qcow2/parallel/requests", test_parallel_requests);
    g_test_add_func("/qcow2/parallel/encrypted", test_parallel_encrypted);
    g_test_add_func("/qcow2/parallel/compressed-reads", test_parallel_compressed_reads);
    g_test_add_func("/qcow2/refcount-order/roundtrip", test_refcount_order_roundtrip);
    g_test_add_func("/qcow2/refcount-order/refuse", test_refcount_order_refuse);
    g_test_add_func("/qcow2/refcount-order/amend", test_refcount_order_amend);
    g_test_add_func("/qcow2/cache/hooks-corrupt", test_cache_hooks_corrupt);
    g_test_add_func("/qcow2/tail/grow-trim", test_tail_grow_trim);
    g_test_add_func("/qcow2/tail/foreign", test_tail_foreign);
    g_test_add_func("/qcow2/tail/crash", test_tail_crash);
    g_test_add_func("/qcow2/parallel/same-cluster", test_parallel_same_cluster);
    g_test_add_func("/qcow2/open/cache-sizes", test_cache_sizes);
    return g_test_run();
}
