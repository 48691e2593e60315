/* SPDX-License-Identifier: MIT */
/*
 * test-bochs.c — unit tests of the bochs plugin.  No Debian tool makes
 * Bochs redolog images, so the test writes them (both header versions,
 * extents missing, partly and fully allocated) and reads them through the
 * core with this build's modules; qemu-img's reading of the same images is
 * the reference where it is installed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <diskimg/core.h>

#include "test-format.h"

#define SECTOR 512u
#define UNALLOCATED 0xffffffffu

struct layout {
    uint32_t version;          /* 0x00020000 or 0x00010000 */
    uint32_t extent;           /* bytes */
    uint32_t bitmap;           /* bytes */
    uint32_t catalog;          /* entries */
    uint64_t disk;             /* bytes */
};

struct image {
    GByteArray *img;
    GByteArray *guest;
    struct layout l;
};

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + seed + i / 512);
}

static void put_header(uint8_t *h, const struct layout *l)
{
    memset(h, 0, 512);
    strcpy((char *)h, "Bochs Virtual HD Image");
    strcpy((char *)h + 32, "Redolog");
    strcpy((char *)h + 48, "Growing");
    diskimg_put_le32(h + 64, l->version);
    diskimg_put_le32(h + 68, 512);
    diskimg_put_le32(h + 72, l->catalog);
    diskimg_put_le32(h + 76, l->bitmap);
    diskimg_put_le32(h + 80, l->extent);
    diskimg_put_le64(h + (l->version == 0x00010000 ? 84 : 88), l->disk);
}

/*
 * An image whose disk extent i is: missing when i % 3 == 1, stored with
 * every other sector allocated when i % 3 == 2, fully stored otherwise.
 * Stored extents are numbered in reverse so that the catalog is not the
 * identity.
 */
static struct image build(const struct layout *l)
{
    struct image im = { g_byte_array_new(), g_byte_array_new(), *l };
    uint32_t per_extent = l->extent / SECTOR;
    uint32_t bitmap_span = (l->bitmap + SECTOR - 1) / SECTOR * SECTOR;
    uint32_t n_extents = (uint32_t)((l->disk / SECTOR + per_extent - 1) / per_extent);
    g_autofree uint32_t *catalog = g_new(uint32_t, l->catalog);
    uint8_t h[512];
    uint32_t stored = 0, total_stored = 0;

    for (uint32_t i = 0; i < n_extents; i++)
        total_stored += i % 3 != 1;
    for (uint32_t i = 0; i < l->catalog; i++)
        catalog[i] = UNALLOCATED;
    for (uint32_t i = 0; i < n_extents; i++)
        if (i % 3 != 1)
            catalog[i] = total_stored - 1 - stored++;

    put_header(h, l);
    g_byte_array_append(im.img, h, sizeof(h));
    for (uint32_t i = 0; i < l->catalog; i++) {
        uint8_t le[4];
        diskimg_put_le32(le, catalog[i]);
        g_byte_array_append(im.img, le, 4);
    }
    size_t data_at = im.img->len;
    g_byte_array_set_size(im.img, (guint)(data_at + (size_t)total_stored *
                                          (bitmap_span + l->extent)));
    memset(im.img->data + data_at, 0, im.img->len - data_at);
    g_byte_array_set_size(im.guest, (guint)l->disk);
    memset(im.guest->data, 0, l->disk);
    for (uint32_t i = 0; i < n_extents; i++) {
        uint8_t *ext;

        if (catalog[i] == UNALLOCATED)
            continue;
        ext = im.img->data + data_at + (size_t)catalog[i] * (bitmap_span + l->extent);
        for (uint32_t s = 0; s < per_extent; s++) {
            uint64_t guest_off = ((uint64_t)i * per_extent + s) * SECTOR;

            if (guest_off >= l->disk || (i % 3 == 2 && s % 2 == 1))
                continue;
            ext[s / 8] |= (uint8_t)(1u << (s % 8));
            fill(ext + bitmap_span + s * SECTOR, SECTOR, i * 131 + s);
            memcpy(im.guest->data + guest_off, ext + bitmap_span + s * SECTOR, SECTOR);
        }
    }
    return im;
}

static void image_free(struct image *im)
{
    g_byte_array_free(im->img, TRUE);
    g_byte_array_free(im->guest, TRUE);
}

static char *write_image(const char *name, const GByteArray *img)
{
    char *path = test_tmp_path(name);

    tf_write_file(path, img->data, img->len);
    return path;
}

static void assert_reads(const char *path, const GByteArray *expect)
{
    static const size_t steps[] = { 1u << 20, 1500, 512 };
    GError *err = NULL;
    diskimg_node *n = tf_try_open("bochs", path, 0, NULL, &err);

    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_size(n, NULL), ==, expect->len);
    for (size_t i = 0; i < G_N_ELEMENTS(steps); i++) {
        size_t len = 0;
        g_autofree uint8_t *got = tf_read_all_step(n, steps[i], &len, &err);

        g_assert_no_error(err);
        g_assert_cmpmem(got, len, expect->data, expect->len);
    }
    diskimg_close(n);
}

static void check_layout(const char *name, const struct layout *l)
{
    struct image im = build(l);
    g_autofree char *path = write_image(name, im.img);
    size_t qlen;
    g_autofree uint8_t *ref = tf_qemu_convert("bochs", path, &qlen);

    assert_reads(path, im.guest);
    if (ref)
        g_assert_cmpmem(ref, qlen, im.guest->data, im.guest->len);
    image_free(&im);
}

/* ------------------------------------------------------------------ tests */

static void test_read(void)
{
    /* bximage's geometry: 512-byte bitmaps for 2 MiB extents... */
    check_layout("v2.bochs", &(struct layout){ 0x00020000, 2u << 20, 512, 8, 13u << 20 });
    /* ...small extents with a bitmap of less than a sector... */
    check_layout("small.bochs", &(struct layout){ 0x00020000, 8192, 2, 40, 300 * 1024 });
    /* ...and the older header version. */
    check_layout("v1.bochs", &(struct layout){ 0x00010000, 4096, 1, 30, 100 * 1024 });
}

static void test_probe_and_read_only(void)
{
    struct image im = build(&(struct layout){ 0x00020000, 4096, 1, 4, 16384 });
    g_autofree char *path = write_image("probe.img", im.img);
    GError *err = NULL;
    diskimg_node *n = tf_try_open(NULL, path, 0, NULL, &err);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };

    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "bochs");
    g_assert_false(diskimg_node_is_writable(n));
    /* qemu-img map shows data everywhere; extents end at extent bounds. */
    g_assert_cmpint(diskimg_node_block_status(n, 4096, 8192, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED), ==,
                     DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED);
    g_assert_cmpuint(ext.length, ==, 4096);
    diskimg_close(n);

    n = tf_try_open("bochs", path, DISKIMG_OPEN_RDWR, NULL, &err);
    g_assert_null(n);
    tf_assert_message(err, path, "read-only", NULL);
    g_clear_error(&err);
    image_free(&im);
}

/* ---------------------------------------------------------- corrupt images */

static void expect_open(const char *name, const GByteArray *img, const char *substring)
{
    g_autofree char *path = write_image(name, img);

    tf_expect_open_error(path, "bochs", substring);
}

static void test_corrupt(void)
{
    const struct layout good = { 0x00020000, 4096, 1, 10, 40960 };
    static const struct {
        const char *name;
        size_t at;
        size_t width;          /* 4: le32, 8: le64, else: string */
        uint64_t value;
        const char *text;
        const char *message;
    } cases[] = {
        { "magic.bochs", 0, 0, 0, "Bochs Virtual HD Imagf", "Image not in Bochs format" },
        { "type.bochs", 32, 0, 0, "Redolof", "Image not in Bochs format" },
        { "subtype.bochs", 48, 0, 0, "Undoabl", "Image not in Bochs format" },
        { "version.bochs", 64, 4, 0x00030000, NULL, "Image not in Bochs format" },
        { "catalog-big.bochs", 72, 4, 0x100001, NULL, "Catalog size is too large" },
        { "extent-small.bochs", 80, 4, 256, NULL, "Extent size must be at least 512" },
        { "extent-odd.bochs", 80, 4, 3000, NULL, "Extent size 3000 is not a power of two" },
        { "extent-big.bochs", 80, 4, 16u << 20, NULL, "Extent size 16777216 is too large" },
        { "catalog-small.bochs", 88, 8, 1u << 30, NULL,
          "Catalog size is too small for this disk size" },
        { "bitmap.bochs", 76, 4, 0, NULL, "field 'bitmap'" },
        { "catalog-eof.bochs", 68, 4, 1u << 30, NULL, "lies beyond the end of the file" },
        { "entry-range.bochs", 512, 4, 10, NULL, "entry 0 names extent 10" },
        { "entry-eof.bochs", 516, 4, 9, NULL, "lies beyond the end of the file" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct image im = build(&good);
        uint8_t *p = im.img->data + cases[i].at;

        if (cases[i].width == 4)
            diskimg_put_le32(p, (uint32_t)cases[i].value);
        else if (cases[i].width == 8)
            diskimg_put_le64(p, cases[i].value);
        else
            memcpy(p, cases[i].text, strlen(cases[i].text));
        expect_open(cases[i].name, im.img, cases[i].message);
        image_free(&im);
    }

    /* A file shorter than the header. */
    struct image im = build(&good);
    g_byte_array_set_size(im.img, 300);
    expect_open("short.bochs", im.img, "Image not in Bochs format");
    image_free(&im);
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "bochs", NULL);

    g_test_add_func("/bochs/read", test_read);
    g_test_add_func("/bochs/probe-read-only", test_probe_and_read_only);
    g_test_add_func("/bochs/corrupt", test_corrupt);
    return tf_run_tests();
}
