/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the core codecs: round trips, and the probe that lets
 * near-random data skip compression without costing output size.
 */
#include <string.h>

#include <diskimg/diskimg.h>

#define CLUSTER 65536

static void fill_random(uint8_t *p, size_t len, GRand *r)
{
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = g_rand_int(r);
        memcpy(p + i, &v, MIN((size_t)4, len - i));
    }
}

/* Log-like text: what compresses well in real disks. */
static void fill_text(uint8_t *p, size_t len, GRand *r)
{
    static const char *const words[] = { "kernel:", "eth0", "link up", "systemd[1]:",
                                         "Started", "session", "user", "42", "\n" };
    size_t pos = 0;
    while (pos < len) {
        const char *w = words[g_rand_int_range(r, 0, G_N_ELEMENTS(words))];
        size_t n = MIN(strlen(w) + 1, len - pos);
        memcpy(p + pos, w, n);
        p[pos + n - 1] = ' ';
        pos += n;
    }
}

static void test_round_trip(void)
{
    GRand *r = g_rand_new_with_seed(1);
    uint8_t *in = g_malloc(CLUSTER), *out = g_malloc(2 * CLUSTER), *back = g_malloc(CLUSTER);
    fill_text(in, CLUSTER, r);
    const enum diskimg_codec codecs[] = { DISKIMG_CODEC_DEFLATE, DISKIMG_CODEC_ZLIB,
                                          DISKIMG_CODEC_GZIP, DISKIMG_CODEC_ZSTD };
    for (size_t i = 0; i < G_N_ELEMENTS(codecs); i++) {
        GError *err = NULL;
        int64_t n = diskimg_compress(codecs[i], -1, 12, in, CLUSTER, out, CLUSTER - 1, &err);
        g_assert_no_error(err);
        g_assert_cmpint(n, >, 0);
        g_assert_cmpint(n, <, CLUSTER / 2);
        int64_t m = diskimg_decompress(codecs[i], 12, out, (size_t)n, back, CLUSTER, &err);
        g_assert_no_error(err);
        g_assert_cmpint(m, ==, CLUSTER);
        g_assert_cmpmem(in, CLUSTER, back, CLUSTER);
    }
    g_free(in);
    g_free(out);
    g_free(back);
    g_rand_free(r);
}

/* diskimg_decompress_exact: a stream of exactly the block passes (with
 * trailing bytes after it, as packed formats have), one that inflates to
 * more or to less is refused with its size in the message. */
static void test_exact(void)
{
    GRand *r = g_rand_new_with_seed(2);
    uint8_t *in = g_malloc(2 * CLUSTER), *z = g_malloc(4 * CLUSTER);
    uint8_t *back = g_malloc(2 * CLUSTER);
    fill_text(in, 2 * CLUSTER, r);
    const enum diskimg_codec codecs[] = { DISKIMG_CODEC_DEFLATE, DISKIMG_CODEC_ZLIB,
                                          DISKIMG_CODEC_GZIP, DISKIMG_CODEC_ZSTD };
    for (size_t i = 0; i < G_N_ELEMENTS(codecs); i++) {
        GError *err = NULL;
        int64_t n = diskimg_compress(codecs[i], -1, 12, in, CLUSTER, z, 2 * CLUSTER, &err);
        g_assert_no_error(err);
        g_assert_cmpint(n, >, 0);
        memset(z + n, 0xa5, 64);        /* the next block's bytes */
        g_assert_cmpint(diskimg_decompress_exact(codecs[i], z, (size_t)n + 64, back, CLUSTER,
                                                 &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpmem(in, CLUSTER, back, CLUSTER);

        /* a cluster too short */
        g_assert_cmpint(diskimg_decompress_exact(codecs[i], z, (size_t)n, back, CLUSTER * 2,
                                                 &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
        g_assert_nonnull(strstr(err->message, "instead of"));
        g_clear_error(&err);

        /* two clusters' worth where one fits */
        n = diskimg_compress(codecs[i], -1, 12, in, 2 * CLUSTER, z, 4 * CLUSTER, &err);
        g_assert_no_error(err);
        g_assert_cmpint(diskimg_decompress_exact(codecs[i], z, (size_t)n, back, CLUSTER,
                                                 &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
        g_assert_nonnull(strstr(err->message, "more than"));
        g_clear_error(&err);
        /* diskimg_decompress itself still cuts it short, as before */
        g_assert_cmpint(diskimg_decompress(codecs[i], 12, z, (size_t)n, back, CLUSTER, &err),
                        ==, CLUSTER);
        g_assert_no_error(err);
    }
    g_free(in);
    g_free(z);
    g_free(back);
    g_rand_free(r);
}

static bool incompressible(const uint8_t *p, size_t len)
{
    return diskimg_probably_incompressible(DISKIMG_CODEC_DEFLATE, 12, p, len);
}

static void test_probe(void)
{
    GRand *r = g_rand_new_with_seed(7);
    uint8_t *p = g_malloc(CLUSTER), *out = g_malloc(2 * CLUSTER);

    /* Random data is recognised, and skips the codec when savings are asked for... */
    fill_random(p, CLUSTER, r);
    g_assert_true(incompressible(p, CLUSTER));
    g_assert_true(diskimg_probably_incompressible(DISKIMG_CODEC_ZSTD, 0, p, CLUSTER));
    GError *err = NULL;
    g_assert_cmpint(diskimg_compress(DISKIMG_CODEC_DEFLATE, -1, 12, p, CLUSTER, out,
                                     CLUSTER - 1, &err), ==, 0);
    g_assert_no_error(err);
    /* ...but a caller with room for growth (a stream format) still gets one. */
    int64_t n = diskimg_compress(DISKIMG_CODEC_DEFLATE, -1, 12, p, CLUSTER, out, 2 * CLUSTER,
                                 &err);
    g_assert_no_error(err);
    g_assert_cmpint(n, >=, CLUSTER);

    /* Too few bytes to judge. */
    g_assert_false(incompressible(p, 1024));

    /* Text, half zeroes, one byte value. */
    fill_text(p, CLUSTER, r);
    g_assert_false(incompressible(p, CLUSTER));
    fill_random(p, CLUSTER, r);
    memset(p + CLUSTER / 2, 0, CLUSTER / 2);
    g_assert_false(incompressible(p, CLUSTER));
    memset(p, 0xa5, CLUSTER);
    g_assert_false(incompressible(p, CLUSTER));

    /* Uniform as a whole, but each 4 KiB piece uses only 64 byte values:
     * a codec that switches tables per block would save a quarter. */
    fill_random(p, CLUSTER, r);
    for (size_t i = 0; i < CLUSTER; i++)
        p[i] = (uint8_t)((p[i] & 63) | ((i / 4096) % 4) << 6);
    g_assert_false(incompressible(p, CLUSTER));

    /* A random block repeated: matches within the window. */
    fill_random(p, 1024, r);
    for (size_t i = 1024; i < CLUSTER; i += 1024)
        memcpy(p + i, p, 1024);
    g_assert_false(incompressible(p, CLUSTER));
    /* Repeats 16 KiB apart are beyond deflate's 4 KiB window (qcow2), but
     * within zstd's. */
    fill_random(p, CLUSTER / 4, r);
    for (size_t i = 1; i < 4; i++)
        memcpy(p + i * (CLUSTER / 4), p, CLUSTER / 4);
    g_assert_true(incompressible(p, CLUSTER));
    g_assert_false(diskimg_probably_incompressible(DISKIMG_CODEC_ZSTD, 0, p, CLUSTER));
    g_free(p);
    g_free(out);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/codec/round-trip", test_round_trip);
    g_test_add_func("/codec/probe", test_probe);
    g_test_add_func("/codec/exact", test_exact);
    return g_test_run();
}
