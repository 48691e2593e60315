/* SPDX-License-Identifier: MIT */
/*
 * test-qed.c — unit tests of the qed plugin: the header validator on
 * hand-made headers, then images through libdiskimg.
 */
#include <string.h>

#include "qed.h"
#include "test-format.h"

static void good_header(uint8_t *buf)
{
    struct qed_header h = {
        .magic = QED_MAGIC, .cluster_size = 65536, .table_size = 4, .header_size = 1,
        .l1_offset = 65536, .image_size = 1u << 30,
    };

    qed_header_encode(&h, buf);
}

static void expect_bad(const uint8_t *buf, size_t len, const char *needle)
{
    struct qed_header h;
    GError *err = NULL;

    g_assert_cmpint(qed_header_parse(buf, len, &h, &err), ==, -1);
    g_assert_nonnull(err);
    if (!strstr(err->message, needle))
        g_error("expected '%s' in '%s'", needle, err->message);
    g_assert_null(strchr(err->message, '\n'));
    g_error_free(err);
}

static void test_header(void)
{
    uint8_t buf[QED_HEADER_BYTES];
    struct qed_header h;
    GError *err = NULL;

    good_header(buf);
    g_assert_cmpint(qed_header_parse(buf, sizeof(buf), &h, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(h.image_size, ==, 1u << 30);
    expect_bad(buf, 40, "field 'l1_table_offset'");    /* truncated */

    /* Each bad header is the good one with up to three fields changed. */
    static const struct {
        struct { unsigned at, width; uint64_t value; } set[3];
        const char *needle;
    } bad[] = {
        { { { 0, 1, 'X' } }, "Image not in QED format" },
        { { { 17, 1, 1 } }, "Unsupported QED features: 100" },
        { { { 4, 4, 3000 } }, "'cluster_size' is 3000" },
        { { { 8, 4, 32 } }, "'table_size' is 32" },
        { { { 48, 8, 1000 } }, "'image_size' is 1000" },
        { { { 48, 8, UINT64_MAX & ~511ull } }, "QED image size is invalid" },
        { { { 12, 4, 0 } }, "'header_size' is 0" },
        { { { 12, 4, 0x10000 } }, "'header_size'" },
        { { { 16, 1, QED_F_BACKING_FILE }, { 56, 4, 65000 }, { 60, 4, 1000 } },
          "'backing_filename_offset'" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        good_header(buf);
        for (size_t k = 0; k < G_N_ELEMENTS(bad[i].set) && bad[i].set[k].width; k++) {
            unsigned at = bad[i].set[k].at;
            uint64_t v = bad[i].set[k].value;

            if (bad[i].set[k].width == 1)
                buf[at] = (uint8_t)v;
            else if (bad[i].set[k].width == 4)
                diskimg_put_le32(buf + at, (uint32_t)v);
            else
                diskimg_put_le64(buf + at, v);
        }
        expect_bad(buf, sizeof(buf), bad[i].needle);
    }
}

static void test_limits(void)
{
    g_assert_true(qed_cluster_size_valid(4096));
    g_assert_false(qed_cluster_size_valid(2048));
    g_assert_true(qed_cluster_size_valid(64u << 20));
    g_assert_false(qed_cluster_size_valid(128u << 20));
    g_assert_true(qed_table_size_valid(1));
    g_assert_false(qed_table_size_valid(3));
    g_assert_false(qed_table_size_valid(32));
    /* qemu's message for 300T: the maximum of 64k clusters, 4-cluster tables */
    g_assert_cmpuint(qed_max_image_size(65536, 4), ==, 70368744177664ull);
    g_assert_cmpuint(qed_max_image_size(64u << 20, 16), ==, UINT64_MAX);
}


/* ------------------------------------------------------------------ images */

#define QED "qed"

static void check_counts(diskimg_node *n, unsigned fix, struct diskimg_check_result *res)
{
    GError *err = NULL;

    memset(res, 0, sizeof(*res));
    res->struct_size = sizeof(*res);
    g_assert_cmpint(diskimg_node_check(n, fix, res, &err), ==, 0);
    g_assert_no_error(err);
}

/* Every kind of write, read back, then by qemu-img: identical, check clean,
 * holes kept; QED_F_NEED_CHECK is set while allocating and cleared on close. */
static void test_roundtrip(void)
{
    const uint64_t size = 9 * MiB + 512;
    g_autofree char *path = test_tmp_path("rt.qed");
    g_autofree char *raw = test_tmp_path("rt.raw");
    uint8_t *model = g_malloc0(size);
    struct diskimg_check_result res;
    diskimg_node *n;

    tf_create(QED, path, size, "cluster_size=4k,table_size=2");
    g_assert_cmpuint(tf_file_le64(path, 16) & QED_F_NEED_CHECK, ==, 0);
    n = tf_open(QED, path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 0, 4096, 1);
    g_assert_cmpuint(tf_file_le64(path, 16) & QED_F_NEED_CHECK, !=, 0);
    tf_write_pattern(n, model, 3 * 4096 + 100, 10000, 2);
    tf_write_pattern(n, model, 1 * MiB, 3 * MiB, 3);          /* crosses L2 spans (1 MiB) */
    tf_write_pattern(n, model, 5000, 3000, 4);
    tf_write_pattern(n, model, size - 700, 700, 5);
    tf_expect_model(n, model, size);
    check_counts(n, 0, &res);
    g_assert_cmpuint(res.corruptions + res.leaks + res.check_errors, ==, 0);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le64(path, 16) & QED_F_NEED_CHECK, ==, 0);

    n = tf_open(QED, path, 0, NULL);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    if (tf_have_qemu()) {
        tf_write_file(raw, model, size);
        tf_qemu_compare(QED, path, raw);
        g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-q", "-f", "qed", path), ==, 0);
        /* clusters 0-1, 3-5, 768 of the big write, the one before the
         * last and the 512 bytes of the last (partial) one */
        g_assert_cmpuint(tf_qemu_data_bytes(QED, path), ==, (2 + 3 + 768 + 1) * 4096u + 512);
    }
    g_free(model);
}

/* Images qemu wrote, zero clusters included, read as qemu reads them. */
static void test_qemu_made(void)
{
    const uint64_t size = 4 * MiB;
    g_autofree char *path = test_tmp_path("q.qed");
    uint8_t *model = g_malloc0(size);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    struct diskimg_check_result res;
    GError *err = NULL;
    diskimg_node *n;

    if (!tf_have_qemu()) {
        g_test_skip("qemu-img not installed");
        g_free(model);
        return;
    }
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "create", "-q", "-f", "qed", "-o",
                           "cluster_size=4k", path, "4M"), ==, 0);
    g_assert_cmpint(TF_RUN(NULL, "qemu-io", "-f", "qed", "-c", "write -P 0x5a 4096 8192",
                           "-c", "write -P 0xa5 1M 512", "-c", "write -P 0x11 2M 64k",
                           "-c", "write -z 2M 32k", path), ==, 0);
    memset(model + 4096, 0x5a, 8192);
    memset(model + MiB, 0xa5, 512);
    memset(model + 2 * MiB + 32 * KiB, 0x11, 32 * KiB);
    n = tf_open(QED, path, 0, NULL);
    tf_expect_model(n, model, size);
    g_assert_cmpint(diskimg_node_block_status(n, 4096, 8192, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.flags, ==, DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED |
                                   DISKIMG_BS_OFFSET_VALID);
    g_assert_cmpuint(ext.length, ==, 8192);
    check_counts(n, 0, &res);
    g_assert_cmpuint(res.corruptions + res.leaks, ==, 0);
    g_assert_cmpuint(res.allocated_clusters, ==, 2 + 1 + 16);
    diskimg_close(n);
    g_free(model);
}

/* Aligned zero writes become zero clusters (or zero allocated ones in
 * place); unaligned ones fall back unless no fallback is wanted. */
static void test_zeroes(void)
{
    const uint64_t size = 2 * MiB;
    g_autofree char *path = test_tmp_path("z.qed");
    g_autofree char *raw = test_tmp_path("z.raw");
    uint8_t *model = g_malloc0(size);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;
    diskimg_node *n;

    tf_create(QED, path, size, "cluster_size=4k");
    n = tf_open(QED, path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 0, 64 * KiB, 1);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 8 * KiB, 16 * KiB, 0, &err), ==, 0);
    memset(model + 8 * KiB, 0, 16 * KiB);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 1 * MiB, 64 * KiB, 0, &err), ==, 0);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 100, 1000, 0, &err), ==, 0);
    memset(model + 100, 0, 1000);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 200, 100, DISKIMG_WRITE_NO_FALLBACK, &err),
                    ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_block_status(n, 1 * MiB, 64 * KiB, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.flags, ==, DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED);
    g_assert_cmpuint(ext.length, ==, 64 * KiB);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    if (tf_have_qemu()) {
        tf_write_file(raw, model, size);
        tf_qemu_compare(QED, path, raw);
        g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-q", "-f", "qed", path), ==, 0);
    }
    g_free(model);
}

/* A raw backing file recorded with QED_F_BACKING_FORMAT_NO_PROBE; partial
 * writes copy the backing bytes around them; the backing can be changed
 * and the image grown. */
static void test_backing(void)
{
    const uint64_t size = 2 * MiB;
    g_autofree char *base = test_tmp_path("base.raw");
    g_autofree char *top = test_tmp_path("top.qed");
    g_autofree char *raw = test_tmp_path("top.raw");
    uint8_t *model = g_malloc0(size);
    GError *err = NULL;
    diskimg_node *n;

    tf_pattern(model, size, 0, 7);
    tf_write_file(base, model, size);
    tf_create(QED, top, size, "backing_file=base.raw,backing_fmt=raw");
    g_assert_cmpuint(tf_file_le64(top, 16), ==, QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
    n = tf_open(QED, top, DISKIMG_OPEN_RDWR, NULL);
    g_assert_nonnull(diskimg_node_backing(n));
    g_assert_cmpstr(diskimg_node_driver(diskimg_node_backing(n)), ==, "raw");
    tf_write_pattern(n, model, 1000, 100, 2);
    tf_write_pattern(n, model, 70000, 200000, 3);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    if (tf_have_qemu()) {
        tf_write_file(raw, model, size);
        tf_qemu_compare(QED, top, raw);
        g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-q", "-f", "qed", top), ==, 0);
    }
    /* no backing any more: what it held reads as zeroes; then grow */
    n = tf_open(QED, top, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_BACKING, NULL);
    g_assert_cmpint(diskimg_node_set_backing(n, NULL, NULL, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_truncate(n, 6 * MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le64(top, 16), ==, 0);
    n = tf_open(QED, top, 0, NULL);
    g_assert_null(diskimg_node_backing(n));
    g_assert_cmpint(diskimg_node_size(n, &err), ==, 6 * MiB);
    uint8_t buf[100];
    g_assert_cmpint(diskimg_node_pread(n, buf, 100, 1000, &err), ==, 0);
    g_assert_cmpmem(buf, 100, model + 1000, 100);
    /* copied from the backing file into the cluster the write allocated */
    g_assert_cmpint(diskimg_node_pread(n, buf, 100, 500, &err), ==, 0);
    g_assert_cmpmem(buf, 100, model + 500, 100);
    g_assert_cmpint(diskimg_node_pread(n, buf, 100, 3 * MiB / 2, &err), ==, 0);
    g_assert_true(diskimg_is_zero(buf, 100));
    diskimg_close(n);
    g_free(model);
}

/* An image left with QED_F_NEED_CHECK and a damaged L2 entry: check
 * counts it, a read-write open repairs it, read-only opens leave it. */
static void test_need_check(void)
{
    g_autofree char *path = test_tmp_path("nc.qed");
    g_autofree char *copy = test_tmp_path("nc2.qed");
    uint8_t model[8192] = { 0 }, buf[4096];
    struct diskimg_check_result res;
    GError *err = NULL;
    diskimg_node *n;
    gchar *data;
    gsize len;

    tf_create(QED, path, 1 * MiB, "cluster_size=4k");
    n = tf_open(QED, path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 0, 8192, 1);
    diskimg_close(n);
    /* header 4 KiB, L1 16 KiB at 4 KiB, then the L2 table and the data */
    uint64_t l2 = tf_file_le64(path, 4096);
    g_assert_cmpuint(l2, !=, 0);
    tf_patch_le64(path, l2 + 8, 1ull << 40);                /* cluster 1: past EOF */
    tf_patch_le64(path, 16, QED_F_NEED_CHECK);
    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    g_assert_true(g_file_set_contents(copy, data, (gssize)len, NULL));
    g_free(data);

    n = tf_open(QED, path, DISKIMG_OPEN_CHECK, NULL);
    check_counts(n, 0, &res);
    g_assert_cmpuint(res.corruptions, ==, 1);
    g_assert_cmpuint(res.leaks, ==, 1);                  /* cluster 1's old data */
    diskimg_close(n);
    n = tf_open(QED, path, 0, NULL);                  /* read-only: as it is */
    g_assert_cmpint(diskimg_node_pread(n, buf, 4096, 4096, &err), ==, -1);
    tf_assert_message(err, NULL, "nc.qed", "data cluster offset");
    g_clear_error(&err);
    diskimg_close(n);

    n = tf_open(QED, path, DISKIMG_OPEN_RDWR, NULL);   /* repaired on open */
    g_assert_cmpint(diskimg_node_pread(n, buf, 4096, 4096, &err), ==, 0);
    g_assert_true(diskimg_is_zero(buf, 4096));
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le64(path, 16), ==, 0);
    n = tf_open(QED, path, DISKIMG_OPEN_CHECK, NULL);
    check_counts(n, 0, &res);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.leaks, ==, 1);                  /* leaks are never repaired */
    diskimg_close(n);

    /* check -r on the copy: the same repair, and qemu agrees */
    n = tf_open(QED, copy, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CHECK, NULL);
    check_counts(n, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS, &res);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    g_assert_cmpuint(res.corruptions, ==, 0);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le64(copy, 16), ==, 0);
    if (tf_have_qemu())
        g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-q", "-f", "qed", copy), ==, 3);
}

/* Damaged headers and tables: one-line errors naming the file and what. */
static void test_corrupt(void)
{
    g_autofree char *path = test_tmp_path("bad.qed");
    uint8_t model[4096] = { 0 };
    GError *err = NULL;
    diskimg_node *n;

    tf_create(QED, path, 1 * MiB, "cluster_size=4k");
    n = tf_open(QED, path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 0, 4096, 1);
    diskimg_close(n);
    uint64_t l2 = tf_file_le64(path, 4096);

    tf_patch_le64(path, 4096, 4096 * 3);                    /* L2 over the L1 table */
    n = tf_open(QED, path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, model, 4096, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "bad.qed", "L2 table offset");
    g_clear_error(&err);
    diskimg_close(n);
    tf_patch_le64(path, 4096, l2);

    tf_patch_le64(path, l2, 4096);                          /* data over the L1 table */
    n = tf_open(QED, path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, model, 4096, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "bad.qed", "points into the L1 table");
    g_clear_error(&err);
    diskimg_close(n);

    tf_patch_le64(path, 40, 1ull << 40);                    /* L1 past EOF */
    g_assert_null(tf_try_open(QED, path, 0, NULL, &err));
    tf_assert_message(err, NULL, "bad.qed", "QED table offset is invalid");
    g_clear_error(&err);
    tf_patch_le64(path, 40, 4096);

    tf_patch_le64(path, 16, QED_F_BACKING_FILE);            /* name past EOF... */
    tf_patch_le64(path, 56, 64 | (4000ull << 32));          /* ...inside the header */
    g_assert_cmpint(truncate(path, 2000), ==, 0);
    g_assert_null(tf_try_open(QED, path, 0, NULL, &err));
    tf_assert_message(err, NULL, "bad.qed", NULL);
    g_clear_error(&err);

    g_assert_cmpint(truncate(path, 30), ==, 0);          /* truncated header */
    g_assert_null(tf_try_open(QED, path, 0, NULL, &err));
    tf_assert_message(err, NULL, "bad.qed", "QED header");
    g_clear_error(&err);
}

/* Create refuses what qemu refuses, with its messages. */
static void test_create_limits(void)
{
    g_autofree char *path = test_tmp_path("lim.qed");
    GError *err = NULL;

    g_assert_cmpint(tf_try_create(QED, path, 300ull << 40, NULL, &err), ==, -1);
    tf_assert_message(err, NULL, "less than 70368744177664 bytes", NULL);
    g_clear_error(&err);
    /* the schema's ranges carry qemu's messages */
    diskimg_options *o = tf_options(QED, "create-options", NULL);
    g_assert_cmpint(diskimg_options_parse(o, "table_size=3", &err), ==, -1);
    tf_assert_message(err, NULL, "QED table size must be within range [1, 16] and power of 2", NULL);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_options_parse(o, "cluster_size=2k", &err), ==, -1);
    tf_assert_message(err, NULL, "QED cluster size must be within range [4096, 67108864]", NULL);
    g_clear_error(&err);
    diskimg_options_free(o);
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "qed", NULL);
    g_test_add_func("/qed/header", test_header);
    g_test_add_func("/qed/limits", test_limits);
    g_test_add_func("/qed/image/roundtrip", test_roundtrip);
    g_test_add_func("/qed/image/qemu-made", test_qemu_made);
    g_test_add_func("/qed/image/zeroes", test_zeroes);
    g_test_add_func("/qed/image/backing", test_backing);
    g_test_add_func("/qed/image/need-check", test_need_check);
    g_test_add_func("/qed/image/corrupt", test_corrupt);
    g_test_add_func("/qed/image/create-limits", test_create_limits);
    return tf_run_tests();
}
