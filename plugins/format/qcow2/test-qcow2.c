/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the qcow2 plugin internals: the header validator against
 * damaged and random headers, the codecs, and the bounds of the metadata
 * cache.  Built with the plugin's sources; file I/O goes through the core
 * with the posix plugin of the build tree.
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
    { 40, 8, 1ull << 60, "Invalid L1 table offset" },
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

static void test_header_truncated(void)
{
    g_autofree uint8_t *buf = valid_header();
    for (size_t len = 0; len < 512; len += 7) {
        struct qcow2_header h;
        GError *err = NULL;
        if (qcow2_header_parse(&h, buf, len, len, &err) == 0)
            qcow2_header_clear(&h);
        else
            g_error_free(err);
    }
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

/* ------------------------------------------------------------ cache */

static void test_cache_bounds(void)
{
    g_autofree char *dir = g_dir_make_tmp("qcow2-test-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "img.raw", NULL);
    uint64_t clusters = 64;
    g_autofree uint8_t *content = g_malloc(clusters * CS);
    for (uint64_t i = 0; i < clusters; i++)
        memset(content + i * CS, (int)i, CS);
    g_assert_true(g_file_set_contents(path, (char *)content, clusters * CS, NULL));

    struct diskimg_open_params p = { .struct_size = sizeof(p), .format = "raw",
                                     .flags = DISKIMG_OPEN_NO_LOCK };
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    struct qcow2 s = { 0 };
    s.file = diskimg_node_file(n);
    s.filename = path;
    s.cluster_size = CS;
    s.cluster_bits = 16;
    struct qcow2_cache c;
    g_assert_cmpint(qcow2_cache_init(&c, &s, "L2 table", 4 * CS, &err), ==, 0);
    g_assert_cmpuint(c.n, ==, 4);
    for (int round = 0; round < 3; round++) {
        for (uint64_t i = 1; i < clusters; i++) {
            uint8_t *d;
            g_assert_cmpint(qcow2_cache_get(&c, i * CS, false, &d, &err), ==, 0);
            g_assert_cmpint(d[0], ==, (int)i);
            g_assert_cmpint(d[CS - 1], ==, (int)i);
            qcow2_cache_put(&c, d);
            g_assert_cmpuint(g_hash_table_size(c.index), <=, c.n);
        }
    }
    /* every entry pinned: a fifth table cannot be loaded */
    uint8_t *pinned[4];
    for (int i = 0; i < 4; i++)
        g_assert_cmpint(qcow2_cache_get(&c, (uint64_t)(i + 1) * CS, false, &pinned[i], &err),
                        ==, 0);
    uint8_t *d;
    g_assert_cmpint(qcow2_cache_get(&c, 10 * CS, false, &d, &err), <, 0);
    g_assert_nonnull(err);
    g_clear_error(&err);
    for (int i = 0; i < 4; i++)
        qcow2_cache_put(&c, pinned[i]);
    /* an unaligned offset is refused (read-only: not marked corrupt) */
    g_assert_cmpint(qcow2_cache_get(&c, CS + 8, false, &d, &err), <, 0);
    g_clear_error(&err);
    qcow2_cache_destroy(&c);
    diskimg_close(n);
    unlink(path);
    rmdir(dir);
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
    g_test_add_func("/qcow2/cache/bounds", test_cache_bounds);
    return g_test_run();
}
