/* SPDX-License-Identifier: MIT */
/*
 * test-qcow.c — unit tests of the qcow plugin: the header validator on
 * hand-made headers, then images created, written and read through
 * libdiskimg with this build's modules.
 */
#include <string.h>

#include "qcow.h"

/* A valid header of a 1 MiB image without backing file, as qemu makes it. */
static void good_header(uint8_t *buf)
{
    struct qcow_header h = {
        .magic = QCOW_MAGIC, .version = 1, .size = 1u << 20,
        .cluster_bits = 12, .l2_bits = 9, .l1_offset = 48,
    };

    qcow_header_encode(&h, buf);
}

/* Parses buf, expecting a failure whose message contains `needle`. */
static void expect_bad(const uint8_t *buf, size_t len, uint64_t file_size, const char *needle)
{
    struct qcow_header h;
    GError *err = NULL;

    g_assert_cmpint(qcow_header_parse(buf, len, file_size, &h, &err), ==, -1);
    g_assert_nonnull(err);
    if (!strstr(err->message, needle))
        g_error("expected '%s' in '%s'", needle, err->message);
    g_assert_null(strchr(err->message, '\n'));
    g_error_free(err);
}

static void test_header_good(void)
{
    uint8_t buf[QCOW_HEADER_SIZE];
    struct qcow_header h;
    GError *err = NULL;

    good_header(buf);
    g_assert_cmpint(qcow_header_parse(buf, sizeof(buf), 4096, &h, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(h.size, ==, 1u << 20);
    g_assert_cmpuint(h.cluster_bits, ==, 12);
    g_assert_cmpuint(qcow_l1_size(h.size, h.cluster_bits, h.l2_bits), ==, 1);
    g_assert_cmpuint(qcow_l1_size(1073741824, 12, 9), ==, 512);
    g_assert_cmpuint(qcow_l1_size(1073741825, 12, 9), ==, 513);
}

static void test_header_bad(void)
{
    uint8_t buf[QCOW_HEADER_SIZE];

    good_header(buf);
    expect_bad(buf, 20, 20, "size");                 /* truncated */
    buf[0] = 'X';
    expect_bad(buf, sizeof(buf), 4096, "not in qcow format");
    good_header(buf);
    diskimg_put_be32(buf + 4, 2);
    expect_bad(buf, sizeof(buf), 4096, "qcow version 2");
    good_header(buf);
    diskimg_put_be64(buf + 24, 1);
    expect_bad(buf, sizeof(buf), 4096, "'size'");
    good_header(buf);
    buf[32] = 17;
    expect_bad(buf, sizeof(buf), 4096, "'cluster_bits' is 17");
    good_header(buf);
    buf[32] = 8;
    expect_bad(buf, sizeof(buf), 4096, "'cluster_bits' is 8");
    good_header(buf);
    buf[33] = 14;
    expect_bad(buf, sizeof(buf), 4096, "'l2_bits' is 14");
    good_header(buf);
    buf[33] = 5;
    expect_bad(buf, sizeof(buf), 4096, "'l2_bits' is 5");
    good_header(buf);
    diskimg_put_be32(buf + 36, 2);
    expect_bad(buf, sizeof(buf), 4096, "'crypt_method'");
    good_header(buf);
    diskimg_put_be64(buf + 24, UINT64_MAX - 10);     /* l1 size overflow */
    expect_bad(buf, sizeof(buf), 4096, "Image too large");
    good_header(buf);
    diskimg_put_be64(buf + 24, 1ull << 62);          /* L1 of 2^33 bytes */
    expect_bad(buf, sizeof(buf), 4096, "Image too large");
    good_header(buf);
    diskimg_put_be64(buf + 40, 1u << 30);            /* L1 past EOF */
    expect_bad(buf, sizeof(buf), 4096, "'l1_table_offset'");
    good_header(buf);
    diskimg_put_be64(buf + 8, 48);
    diskimg_put_be32(buf + 16, 1024);                /* name too long */
    expect_bad(buf, sizeof(buf), 1u << 20, "'backing_file_size' is 1024");
    good_header(buf);
    diskimg_put_be64(buf + 8, 1u << 20);
    diskimg_put_be32(buf + 16, 10);                  /* name past EOF */
    expect_bad(buf, sizeof(buf), 4096, "'backing_file_offset'");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow/header/good", test_header_good);
    g_test_add_func("/qcow/header/bad", test_header_bad);
    return g_test_run();
}
