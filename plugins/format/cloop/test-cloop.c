/* SPDX-License-Identifier: MIT */
/*
 * test-cloop.c — unit tests of the cloop plugin.  Version 2 images are
 * built here (zlib blocks through the core's codec) and read through the
 * core with this build's modules; qemu-img's reading of the same images
 * and create_compressed_fs (cloop-utils) images are the references where
 * those tools are installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <diskimg/core.h>

#include "test-format.h"

#define SECTOR 512u

static const char magic[] =
    "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 7;

    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (i / 3000) % 3 == 0 ? 0 : (i / 3000) % 3 == 1 ? (uint8_t)(x >> 16)
                                                                 : (uint8_t)('a' + i % 26);
    }
}

/* A cloop image of `n_blocks` blocks of the guest bytes `guest`. */
static GByteArray *build(const uint8_t *guest, uint32_t block_size, uint32_t n_blocks)
{
    GByteArray *img = g_byte_array_new();
    uint8_t hdr[136] = { 0 };
    g_autofree uint64_t *offsets = g_new0(uint64_t, n_blocks + 1);
    GByteArray *data = g_byte_array_new();
    size_t cap = block_size + block_size / 10 + 64;
    g_autofree uint8_t *z = g_malloc(cap);
    uint64_t table_end = 136 + ((uint64_t)n_blocks + 1) * 8;

    memcpy(hdr, magic, sizeof(magic) - 1);
    diskimg_put_be32(hdr + 128, block_size);
    diskimg_put_be32(hdr + 132, n_blocks);
    g_byte_array_append(img, hdr, sizeof(hdr));
    for (uint32_t i = 0; i < n_blocks; i++) {
        GError *err = NULL;
        int64_t n = diskimg_compress(DISKIMG_CODEC_ZLIB, 9, 0, guest + (size_t)i * block_size,
                                     block_size, z, cap, &err);

        g_assert_no_error(err);
        g_assert_cmpint(n, >, 0);
        offsets[i] = table_end + data->len;
        g_byte_array_append(data, z, (guint)n);
    }
    offsets[n_blocks] = table_end + data->len;
    for (uint32_t i = 0; i <= n_blocks; i++) {
        uint8_t be[8];

        diskimg_put_be64(be, offsets[i]);
        g_byte_array_append(img, be, 8);
    }
    g_byte_array_append(img, data->data, data->len);
    g_byte_array_free(data, TRUE);
    return img;
}

struct image {
    GByteArray *img;
    uint8_t *guest;
    size_t guest_len;
};

static struct image standard(uint32_t block_size, uint32_t n_blocks)
{
    struct image im;

    im.guest_len = (size_t)block_size * n_blocks;
    im.guest = g_malloc(im.guest_len);
    fill(im.guest, im.guest_len, block_size + n_blocks);
    im.img = build(im.guest, block_size, n_blocks);
    return im;
}

static void image_free(struct image *im)
{
    g_byte_array_free(im->img, TRUE);
    g_free(im->guest);
}

static char *write_image(const char *name, const GByteArray *img)
{
    char *path = test_tmp_path(name);

    tf_write_file(path, img->data, img->len);
    return path;
}

static void assert_reads(const char *path, const uint8_t *expect, size_t expect_len)
{
    static const size_t steps[] = { 1u << 20, 5000, 512 };
    GError *err = NULL;
    diskimg_node *n = tf_try_open("cloop", path, 0, NULL, &err);

    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_size(n, NULL), ==, expect_len);
    for (size_t i = 0; i < G_N_ELEMENTS(steps); i++) {
        size_t len = 0;
        g_autofree uint8_t *got = tf_read_all_step(n, steps[i], &len, &err);

        g_assert_no_error(err);
        g_assert_cmpmem(got, len, expect, expect_len);
    }
    diskimg_close(n);
}

/* ------------------------------------------------------------------ tests */

static void test_read(void)
{
    struct image im = standard(16384, 37);
    g_autofree char *path = write_image("read.cloop", im.img);
    size_t qlen;
    g_autofree uint8_t *ref = tf_qemu_convert("cloop", path, &qlen);

    assert_reads(path, im.guest, im.guest_len);
    if (ref)
        g_assert_cmpmem(ref, qlen, im.guest, im.guest_len);
    else
        g_test_message("qemu-img is not installed: no reference read");
    image_free(&im);
}

static void test_probe_and_read_only(void)
{
    struct image im = standard(4096, 3);
    g_autofree char *path = write_image("probe.img", im.img);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;
    diskimg_node *n = tf_try_open(NULL, path, 0, NULL, &err);

    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "cloop");
    g_assert_false(diskimg_node_is_writable(n));
    /* Every block is data (qemu-img map shows the same); extents end at
     * block boundaries. */
    g_assert_cmpint(diskimg_node_block_status(n, 1000, 12288 - 1000, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED), ==,
                     DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED);
    g_assert_cmpuint(ext.length, ==, 4096 - 1000);
    diskimg_close(n);

    n = tf_try_open("cloop", path, DISKIMG_OPEN_RDWR, NULL, &err);
    g_assert_null(n);
    tf_assert_message(err, path, "read-only", NULL);
    g_clear_error(&err);
    image_free(&im);
}

/* Images of cloop-utils' create_compressed_fs read back as their input. */
static void test_create_compressed_fs(void)
{
    g_autofree char *tool = g_find_program_in_path("create_compressed_fs");
    g_autofree char *in = test_tmp_path("ccfs.raw");
    g_autofree char *out = test_tmp_path("ccfs.cloop");
    size_t len = 3 * 65536 + 4096;
    g_autofree uint8_t *guest = g_malloc(len);
    const char *argv[] = { tool, "-q", "-B", "65536", in, out, NULL };
    GError *err = NULL;
    int status;

    if (!tool) {
        g_test_skip("create_compressed_fs (cloop-utils) is not installed");
        return;
    }
    fill(guest, len, 3);
    tf_write_file(in, guest, len);
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                               NULL, NULL, NULL, &status, &err));
    g_assert_no_error(err);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    /* The last block is padded with zeroes to the block size. */
    g_autofree uint8_t *padded = g_malloc0(4 * 65536);
    memcpy(padded, guest, len);
    assert_reads(out, padded, 4 * 65536);
}

/* ---------------------------------------------------------- corrupt images */

static void expect_open(const char *name, GByteArray *img, const char *substring)
{
    g_autofree char *path = write_image(name, img);

    tf_expect_open_error(path, "cloop", substring);
}

static void expect_read(const char *name, GByteArray *img, const char *substring)
{
    g_autofree char *path = write_image(name, img);

    tf_expect_read_error(path, "cloop", substring);
}

static void set32(GByteArray *img, size_t at, uint32_t v)
{
    diskimg_put_be32(img->data + at, v);
}

static void set_offset(GByteArray *img, uint32_t i, uint64_t v)
{
    diskimg_put_be64(img->data + 136 + 8 * i, v);
}

static uint64_t get_offset(GByteArray *img, uint32_t i)
{
    return diskimg_be64(img->data + 136 + 8 * i);
}

static void test_corrupt_header(void)
{
    struct image im = standard(4096, 8);
    GByteArray *img = g_byte_array_new();

    g_byte_array_append(img, im.img->data, 130);
    expect_open("short.cloop", img, "block_size");
    g_byte_array_free(img, TRUE);

    static const struct {
        const char *name;
        uint32_t block_size, n_blocks;
        const char *message;
    } cases[] = {
        { "multiple.cloop", 1000, 8, "block_size 1000 must be a multiple of 512" },
        { "zero.cloop", 0, 8, "block_size cannot be zero" },
        { "big.cloop", 128u << 20, 8, "block_size 134217728 must be 64 MB or less" },
        { "nblocks.cloop", 4096, 0x20000000, "n_blocks 536870912 must be 536870911 or less" },
        { "offsets.cloop", 4096, 0x04000000,
          "image requires too many offsets, try increasing block size" },
        { "table.cloop", 4096, 100000, "lies beyond the end of the file" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        set32(im.img, 128, cases[i].block_size);
        set32(im.img, 132, cases[i].n_blocks);
        expect_open(cases[i].name, im.img, cases[i].message);
    }
    image_free(&im);
}

static void test_corrupt_offsets(void)
{
    struct image im = standard(4096, 8);
    uint64_t o2 = get_offset(im.img, 2), o3 = get_offset(im.img, 3);

    set_offset(im.img, 2, 0);
    expect_open("monotonic.cloop", im.img,
                "offsets not monotonically increasing at index 2, image file is corrupt");
    set_offset(im.img, 2, o2);

    set_offset(im.img, 8, 1ull << 40);
    expect_open("size.cloop", im.img,
                "invalid compressed block size at index 8, image file is corrupt");
    set_offset(im.img, 8, get_offset(im.img, 7) + (64u << 20));
    expect_open("eof.cloop", im.img, "beyond the end of the file");
    image_free(&im);

    im = standard(4096, 8);
    set_offset(im.img, 0, 100);
    expect_open("first.cloop", im.img, "inside the header or the offsets table");
    image_free(&im);

    /* Damage found when a block is decoded. */
    im = standard(4096, 8);
    im.img->data[o2 + 1] ^= 0x55;      /* zlib header check bits */
    expect_read("stream.cloop", im.img, "bad compressed stream");
    image_free(&im);

    im = standard(4096, 8);
    set_offset(im.img, 3, o2);         /* block 2 empty, block 3 twice as long */
    expect_read("empty.cloop", im.img, "cloop block 2 is empty");
    image_free(&im);

    im = standard(4096, 8);
    set_offset(im.img, 3, o2 + (o3 - o2) / 2);  /* block 2 cut in half */
    expect_read("cut.cloop", im.img, "cloop block 2");
    image_free(&im);
}

/* A block that is a valid stream of fewer bytes than block_size. */
static void test_short_block(void)
{
    uint8_t guest[4096];

    fill(guest, sizeof(guest), 1);
    /* One 4096-byte block, claimed to be 8192 bytes long. */
    g_autoptr(GByteArray) one = build(guest, 4096, 1);
    set32(one, 128, 8192);
    expect_read("shortblock.cloop", one, "inflates to 4096 bytes instead of 8192");
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "cloop", NULL);

    g_test_add_func("/cloop/read", test_read);
    g_test_add_func("/cloop/probe-read-only", test_probe_and_read_only);
    g_test_add_func("/cloop/create-compressed-fs", test_create_compressed_fs);
    g_test_add_func("/cloop/corrupt/header", test_corrupt_header);
    g_test_add_func("/cloop/corrupt/offsets", test_corrupt_offsets);
    g_test_add_func("/cloop/corrupt/short-block", test_short_block);
    return tf_run_tests();
}
