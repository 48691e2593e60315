/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the format toolkit (<diskimg/toolkit.h>): the bounded
 * reader and table loads, the metadata cache, the request tracker, tail
 * growth and CRC32C.  Files are raw images in a scratch directory, opened
 * through the posix and raw plugins of the build tree.
 */
#include <string.h>

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
    int ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
