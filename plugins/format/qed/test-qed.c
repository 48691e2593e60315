/* SPDX-License-Identifier: MIT */
/*
 * test-qed.c — unit tests of the qed plugin: the header validator on
 * hand-made headers, then images through libdiskimg.
 */
#include <string.h>

#include "qed.h"

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
    buf[0] = 'X';
    expect_bad(buf, sizeof(buf), "Image not in QED format");
    good_header(buf);
    buf[17] = 1;
    expect_bad(buf, sizeof(buf), "Unsupported QED features: 100");
    good_header(buf);
    diskimg_put_le32(buf + 4, 3000);
    expect_bad(buf, sizeof(buf), "'cluster_size' is 3000");
    good_header(buf);
    diskimg_put_le32(buf + 8, 32);
    expect_bad(buf, sizeof(buf), "'table_size' is 32");
    good_header(buf);
    diskimg_put_le64(buf + 48, 1000);
    expect_bad(buf, sizeof(buf), "'image_size' is 1000");
    good_header(buf);
    diskimg_put_le64(buf + 48, UINT64_MAX & ~511ull);
    expect_bad(buf, sizeof(buf), "QED image size is invalid");
    good_header(buf);
    diskimg_put_le32(buf + 12, 0);
    expect_bad(buf, sizeof(buf), "'header_size' is 0");
    good_header(buf);
    diskimg_put_le32(buf + 12, 0x10000);
    expect_bad(buf, sizeof(buf), "'header_size'");
    good_header(buf);
    buf[16] = QED_F_BACKING_FILE;
    diskimg_put_le32(buf + 56, 65000);
    diskimg_put_le32(buf + 60, 1000);
    expect_bad(buf, sizeof(buf), "'backing_filename_offset'");
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qed/header", test_header);
    g_test_add_func("/qed/limits", test_limits);
    return g_test_run();
}
