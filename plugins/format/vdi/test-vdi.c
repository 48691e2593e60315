/* SPDX-License-Identifier: MIT */
/*
 * test-vdi.c — unit tests of the vdi plugin and of the flat block map:
 * the header validator on qemu's layout and on each damaged field, the
 * map's runs, write-back and overlap search, whole images through the
 * core (round trips, holes, odd sizes, static images, zero writes), check
 * and repair, measure, and interop with qemu-img where it is installed.
 */

#include "test-format.h"
#include "vdi.h"

/* ------------------------------------------------------ header validator */

static void good_header(uint8_t *buf, uint64_t size)
{
    uint32_t blocks = (uint32_t)((size + VDI_BLOCK_SIZE - 1) / VDI_BLOCK_SIZE);
    struct vdi_header h = {
        .image_type = VDI_TYPE_DYNAMIC, .offset_bmap = 0x200,
        .offset_data = (uint32_t)(0x200 + vdi_bmap_bytes(blocks)), .disk_size = size,
        .block_size = VDI_BLOCK_SIZE, .blocks_in_image = blocks,
    };
    vdi_header_build(buf, &h);
}

static void test_header_layout(void)
{
    uint8_t buf[VDI_HEADER_LEN];
    struct vdi_header h;
    GError *err = NULL;

    /* The bytes qemu-img create -f vdi x 65M writes (UUIDs aside). */
    good_header(buf, 65 * MiB);
    g_assert_cmpmem(buf, 36, VDI_TEXT, 36);
    g_assert_cmphex(diskimg_le32(buf + 0x40), ==, 0xbeda107f);
    g_assert_cmphex(diskimg_le32(buf + 0x44), ==, 0x00010001);
    g_assert_cmphex(diskimg_le32(buf + 0x48), ==, 0x180);
    g_assert_cmphex(diskimg_le32(buf + 0x154), ==, 0x200);
    g_assert_cmphex(diskimg_le32(buf + 0x158), ==, 0x400);
    g_assert_cmphex(diskimg_le32(buf + 0x168), ==, 512);
    g_assert_cmphex(diskimg_le64(buf + 0x170), ==, 65 * MiB);
    g_assert_cmphex(diskimg_le32(buf + 0x180), ==, 65);
    /* Version 4 UUIDs, stored with their first fields little endian. */
    g_assert_cmphex(buf[0x188 + 7] >> 4, ==, 4);
    g_assert_cmphex(buf[0x188 + 8] >> 6, ==, 2);
    g_assert_cmpint(memcmp(buf + 0x188, buf + 0x198, 16), !=, 0);
    g_assert_cmpint(vdi_header_parse(buf, sizeof(buf), &h, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(h.blocks_in_image, ==, 65);
    g_assert_cmpuint(h.disk_size, ==, 65 * MiB);
    /* Odd sizes round up to a sector, as qemu does. */
    diskimg_put_le64(buf + VDI_OFF_DISK_SIZE, 1000);
    g_assert_cmpint(vdi_header_parse(buf, sizeof(buf), &h, &err), ==, 0);
    g_assert_cmpuint(h.disk_size, ==, 1024);
}

struct bad_field {
    uint32_t off;
    uint32_t value;
    int code;
    const char *needle;
};

static void test_header_errors(void)
{
    static const struct bad_field cases[] = {
        { VDI_OFF_SIGNATURE, 0x12345678, DISKIMG_ERROR_INVALID, "bad signature 12345678" },
        { VDI_OFF_VERSION, 0x00010000, DISKIMG_ERROR_NOT_SUPPORTED, "version 1.0" },
        { VDI_OFF_OFFSET_BMAP, 0x201, DISKIMG_ERROR_NOT_SUPPORTED, "block map offset 0x201" },
        { VDI_OFF_OFFSET_DATA, 0x401, DISKIMG_ERROR_NOT_SUPPORTED, "data offset 0x401" },
        { VDI_OFF_SECTOR_SIZE, 4096, DISKIMG_ERROR_NOT_SUPPORTED, "sector size 4096" },
        { VDI_OFF_BLOCK_SIZE, 2 * MiB, DISKIMG_ERROR_NOT_SUPPORTED, "block size 2097152" },
        { VDI_OFF_BLOCKS_IN_IMAGE, 3, DISKIMG_ERROR_NOT_SUPPORTED, "room for 3145728" },
        { VDI_OFF_UUID_LINK, 1, DISKIMG_ERROR_NOT_SUPPORTED, "non-NULL link UUID" },
        { VDI_OFF_UUID_PARENT, 1, DISKIMG_ERROR_NOT_SUPPORTED, "non-NULL parent UUID" },
        { VDI_OFF_OFFSET_BMAP, 0, DISKIMG_ERROR_CORRUPT, "'offset_bmap' (0x0)" },
        { VDI_OFF_OFFSET_DATA, 0x200, DISKIMG_ERROR_CORRUPT, "'offset_data' (0x200)" },
        { VDI_OFF_BLOCKS_ALLOCATED, 66, DISKIMG_ERROR_CORRUPT, "'blocks_allocated' (66)" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint8_t buf[VDI_HEADER_LEN];
        struct vdi_header h;
        GError *err = NULL;

        good_header(buf, 65 * MiB);
        diskimg_put_le32(buf + cases[i].off, cases[i].value);
        g_assert_cmpint(vdi_header_parse(buf, sizeof(buf), &h, &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, cases[i].code);
        if (!strstr(err->message, cases[i].needle))
            g_error("case %zu: '%s' not in '%s'", i, cases[i].needle, err->message);
        g_error_free(err);
    }
}

static void test_header_limits(void)
{
    uint8_t buf[VDI_HEADER_LEN];
    struct vdi_header h;
    GError *err = NULL;

    good_header(buf, 65 * MiB);
    diskimg_put_le64(buf + VDI_OFF_DISK_SIZE, VDI_DISK_SIZE_MAX + 1);
    g_assert_cmpint(vdi_header_parse(buf, sizeof(buf), &h, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_assert_nonnull(strstr(err->message, "Unsupported VDI image size"));
    g_clear_error(&err);

    good_header(buf, 65 * MiB);
    diskimg_put_le32(buf + VDI_OFF_BLOCKS_IN_IMAGE, VDI_BLOCKS_MAX + 1);
    g_assert_cmpint(vdi_header_parse(buf, sizeof(buf), &h, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "too many blocks"));
    g_clear_error(&err);

    /* A short header names the first field it lacks. */
    good_header(buf, 65 * MiB);
    g_assert_cmpint(vdi_header_parse(buf, 0x160, &h, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "'sector_size'"));
    g_clear_error(&err);
}

/* ---------------------------------------------------------------- images */

/* Writes of every shape into a fresh image, checked against a model,
 * before and after reopening. */
static void roundtrip(const char *opts, uint64_t size, const char *name)
{
    g_autofree char *path = test_tmp_path(name);
    uint8_t *model = g_malloc0(size);

    tf_create("vdi", path, size, opts);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_scattered(n, model, size, MiB);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    n = tf_open("vdi", path, 0, NULL);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    if (tf_need_qemu())
        tf_qemu_agrees("vdi", path, model, size);
    g_free(model);
}

static void test_roundtrip_dynamic(void)
{
    g_autofree char *path = test_tmp_path("rt-dyn.vdi");

    roundtrip(NULL, 12 * MiB, "rt-dyn.vdi");
    /* Blocks touched: 0, 1, 3, 5, 6, 7, 11; the file holds exactly those,
     * and qemu-img map sees the others as holes. */
    g_assert_cmpuint(tf_file_size(path), ==, 0x200 + 512 + 7 * MiB);
    if (tf_need_qemu())
        g_assert_cmpuint(tf_qemu_data_bytes("vdi", path), ==, 7 * MiB);
}

static void test_roundtrip_static(void)
{
    g_autofree char *path = test_tmp_path("rt-static.vdi");

    roundtrip("static=on", 12 * MiB, "rt-static.vdi");
    g_assert_cmpuint(tf_file_size(path), ==, 0x200 + 512 + 12 * MiB);
}

static void test_roundtrip_odd_size(void)
{
    /* Not a multiple of a block nor of a sector: qemu rounds to 512. */
    g_autofree char *path = test_tmp_path("odd.vdi");
    tf_create("vdi", path, 9 * MiB + 1000, NULL);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_size(n, &err), ==, 9 * MiB + 1024);
    diskimg_close(n);
    roundtrip(NULL, 9 * MiB + 1024, "odd2.vdi");
}

/* Unallocated blocks are zero and stay holes; written ones are data. */
static void test_block_status_and_zeroes(void)
{
    g_autofree char *path = test_tmp_path("bs.vdi");
    uint8_t buf[4096];
    GError *err = NULL;

    tf_create("vdi", path, 8 * MiB, NULL);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, sizeof(buf), 0, 3);
    tf_write(n, buf, sizeof(buf), 2 * MiB + 4096);
    uint64_t before = tf_file_size(path);
    /* Zeroing unallocated blocks allocates nothing. */
    tf_zero(n, 4 * MiB, 4 * MiB);
    tf_zero(n, 100, 5000);
    g_assert_cmpuint(tf_file_size(path), ==, before);

    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    g_assert_cmpint(diskimg_node_block_status(n, 0, 8 * MiB, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.length, ==, 2 * MiB);
    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED), ==,
                    DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED);
    g_assert_cmpint(diskimg_node_block_status(n, 2 * MiB, 6 * MiB, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.length, ==, MiB);
    g_assert_true(ext.flags & DISKIMG_BS_DATA);
    g_assert_true(ext.flags & DISKIMG_BS_OFFSET_VALID);
    g_assert_cmpuint(ext.offset, ==, 0x200 + 512);
    /* Zeroing the allocated block keeps it allocated, reading zeroes. */
    tf_zero(n, 2 * MiB, MiB);
    uint8_t *model = g_malloc0(8 * MiB);
    tf_expect_model(n, model, 8 * MiB);
    g_free(model);
    diskimg_close(n);
}

/* Static images: every block mapped, holes of the file reported zero. */
static void test_static_status(void)
{
    g_autofree char *path = test_tmp_path("st.vdi");
    uint8_t buf[512];
    GError *err = NULL;

    tf_create("vdi", path, 4 * MiB, "static=on");
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, sizeof(buf), 0, 1);
    tf_write(n, buf, sizeof(buf), 0);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    g_assert_cmpint(diskimg_node_block_status(n, MiB, 3 * MiB, &ext, &err), ==, 0);
    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==,
                    DISKIMG_BS_DATA | DISKIMG_BS_ZERO);
    diskimg_close(n);
}

/* ------------------------------------------------------- corrupt images */

/* A dynamic 4 MiB image with blocks 0 and 2 written (entries 0 and 1). */
static char *two_block_image(const char *name)
{
    char *path = test_tmp_path(name);
    uint8_t *buf = g_malloc(MiB);

    tf_create("vdi", path, 4 * MiB, NULL);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, MiB, 0, 1);
    tf_write(n, buf, MiB, 0);
    tf_pattern(buf, MiB, 0, 2);
    tf_write(n, buf, MiB, 2 * MiB);
    diskimg_close(n);
    g_free(buf);
    return path;
}

static void test_corrupt_opens(void)
{
    g_autofree char *good = two_block_image("good.vdi");
    g_autofree char *bad = test_tmp_path("bad.vdi");

    /* Truncated inside the header. */
    size_t n;
    uint8_t *data = tf_read_file(good, &n);
    tf_write_file(bad, data, 0x100);
    tf_open_fails("vdi", bad, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "'offset_bmap'", NULL });
    /* Bad magic. */
    tf_write_file(bad, data, n);
    tf_patch_le32(bad, VDI_OFF_SIGNATURE, 0);
    tf_open_fails("vdi", bad, 0, DISKIMG_ERROR_INVALID,
                  (const char *[]){ "bad signature 00000000", NULL });
    /* A block map reaching past the end of the file. */
    tf_write_file(bad, data, 0x300);
    tf_patch_le32(bad, VDI_OFF_OFFSET_BMAP, 0x1000);
    tf_patch_le32(bad, VDI_OFF_OFFSET_DATA, 0x2000);
    tf_open_fails("vdi", bad, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "VDI block map", "beyond the end of the file", NULL });
    /* An absurd block count against a small file. */
    tf_write_file(bad, data, n);
    tf_patch_le32(bad, VDI_OFF_BLOCKS_IN_IMAGE, 0x3000000);
    tf_patch_le32(bad, VDI_OFF_OFFSET_DATA, 0xc000400);
    tf_open_fails("vdi", bad, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "VDI block map", NULL });
    /* Entries naming blocks never allocated, or one block twice. */
    tf_write_file(bad, data, n);
    tf_patch_le32(bad, 0x200 + 4, 7);
    tf_open_fails("vdi", bad, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "block map entry 1 (7)", "blocks_allocated", NULL });
    /* info opens metadata-only, without the map (as qemu, which never
     * validates entries); data requests are then refused by the core. */
    diskimg_node *meta = tf_open("vdi", bad, DISKIMG_OPEN_NO_IO, NULL);
    GError *err = NULL;
    uint8_t byte;
    g_assert_cmpint(diskimg_node_pread(meta, &byte, 1, 0, &err), ==, -1);
    g_clear_error(&err);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(diskimg_node_check(meta, 0, &res, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    diskimg_close(meta);
    tf_write_file(bad, data, n);
    tf_patch_le32(bad, 0x200 + 3 * 4, 1);
    tf_open_fails("vdi", bad, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "block map entry 3 (1)", NULL });
    g_free(data);
}

static struct diskimg_check_result run_check(const char *path, unsigned fix)
{
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    GError *err = NULL;
    diskimg_node *n = tf_open("vdi", path,
                              DISKIMG_OPEN_CHECK | (fix ? DISKIMG_OPEN_RDWR : 0), NULL);

    g_assert_cmpint(diskimg_node_check(n, fix, &res, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
    return res;
}

static void test_check_and_repair(void)
{
    g_autofree char *path = two_block_image("check.vdi");
    uint8_t *want = g_malloc0(4 * MiB);

    tf_pattern(want, MiB, 0, 1);
    tf_pattern(want + 2 * MiB, MiB, 0, 2);
    struct diskimg_check_result res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 0);

    /* Guest block 3 also names data block 0; guest block 1 names a block
     * beyond the image. */
    tf_patch_le32(path, 0x200 + 3 * 4, 0);
    tf_patch_le32(path, 0x200 + 1 * 4, 9);
    res = run_check(path, 0);
    /* too large, used twice, count mismatch (3 in range vs 2) */
    g_assert_cmpuint(res.corruptions, ==, 3);
    res = run_check(path, DISKIMG_CHECK_FIX_ERRORS);
    g_assert_cmpuint(res.corruptions_fixed, ==, res.corruptions);
    res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 0);
    diskimg_node *n = tf_open("vdi", path, 0, NULL);
    tf_expect_model(n, want, 4 * MiB);
    diskimg_close(n);

    /* A gap: data block 0 unused, block 1 used, count 1.  Repair moves the
     * block down so the next allocation cannot collide with it. */
    tf_patch_le32(path, 0x200 + 0 * 4, VDI_UNALLOCATED);
    memset(want, 0, MiB);
    tf_patch_le32(path, VDI_OFF_BLOCKS_ALLOCATED, 1);
    res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 1);
    res = run_check(path, DISKIMG_CHECK_FIX_ERRORS);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    tf_expect_model(n, want, 4 * MiB);
    uint8_t buf[512];
    tf_pattern(buf, sizeof(buf), 0, 9);
    tf_write(n, buf, sizeof(buf), 0);
    memcpy(want, buf, sizeof(buf));
    tf_expect_model(n, want, 4 * MiB);
    diskimg_close(n);
    if (tf_need_qemu())
        tf_qemu_agrees("vdi", path, want, 4 * MiB);
    g_free(want);
}

static void test_measure(void)
{
    const diskimg_schema *schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "vdi");
    diskimg_options *o = diskimg_options_new(schema, "create-options");
    struct diskimg_measure_args a = { .struct_size = sizeof(a), .options = o,
                                      .size = 65 * MiB };
    struct diskimg_measure_result r = { .struct_size = sizeof(r) };
    GError *err = NULL;

    g_assert_cmpint(vdi_measure(&a, &r, &err), ==, 0);
    g_assert_cmpuint(r.required, ==, 0x400);
    g_assert_cmpuint(r.fully_allocated, ==, 0x400 + 65 * MiB);
    /* A source with two blocks of data needs two blocks. */
    g_autofree char *path = two_block_image("measure.vdi");
    diskimg_node *n = tf_open("vdi", path, 0, NULL);
    a.size = 4 * MiB;
    a.source = n;
    g_assert_cmpint(vdi_measure(&a, &r, &err), ==, 0);
    g_assert_cmpuint(r.required, ==, 0x400 + 2 * MiB);
    diskimg_close(n);
    diskimg_options_free(o);
}

/* A write whose allocation fails (the file may not grow: RLIMIT_FSIZE)
 * leaves the block unallocated, and the image consistent. */
static void test_failed_write_rolls_back(void)
{
    g_autofree char *path = test_tmp_path("efbig.vdi");

    tf_check_failed_write_rolls_back("vdi", path, 0);
}

/* ---------------------------------------------------------------- resize */

/* Grows an image holding scattered data from `from` to `to` bytes; the
 * old data stays, the new part reads as zeroes, the header says the new
 * size, and qemu-img reads the same and finds the image clean. */
static void grow_and_verify(const char *opts, uint64_t from, uint64_t to, const char *name,
                            uint32_t want_offset_data)
{
    g_autofree char *path = test_tmp_path(name);
    g_autofree char *raw = g_strconcat(path, ".model", NULL);
    uint8_t *model = g_malloc0(to);
    GError *err = NULL;

    tf_create("vdi", path, from, opts);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_scattered(n, model, from, VDI_BLOCK_SIZE);
    g_assert_cmpint(diskimg_node_truncate(n, to, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    tf_expect_model(n, model, to);
    /* The new area takes writes: the last byte of the grown image. */
    tf_write_pattern(n, model, to - 4096, 4096, 9);
    diskimg_close(n);

    g_assert_cmpuint(tf_file_le64(path, VDI_OFF_DISK_SIZE), ==, to);
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_BLOCKS_IN_IMAGE), ==, to / VDI_BLOCK_SIZE);
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_OFFSET_DATA), ==, want_offset_data);
    tf_expect_reopened("vdi", path, model, to, raw);
    if (tf_have_qemu())
        g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-f", "vdi", path), ==, 0);
    g_free(model);
}

/* 16 MiB: a 64-byte map padded to a sector, data from 0x400.  To 100 MiB
 * the map still fits its sector; to 140 MiB it needs 560 bytes, so the
 * first data block moves to the end and the data area starts one block
 * later. */
static void test_resize_grow_dynamic(void)
{
    grow_and_verify(NULL, 16 * MiB, 100 * MiB, "grow-small.vdi", 0x400);
    grow_and_verify(NULL, 16 * MiB, 140 * MiB, "grow-move.vdi", 0x400 + VDI_BLOCK_SIZE);
}

static void test_resize_grow_static(void)
{
    g_autofree char *path = test_tmp_path("grow-move-static.vdi");

    grow_and_verify("static=on", 16 * MiB, 100 * MiB, "grow-small-static.vdi", 0x400);
    grow_and_verify("static=on", 16 * MiB, 140 * MiB, "grow-move-static.vdi",
                    0x400 + VDI_BLOCK_SIZE);
    /* Static stays static: every block is stored, and the file holds them. */
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_BLOCKS_ALLOCATED), ==, 140);
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_IMAGE_TYPE), ==, VDI_TYPE_STATIC);
    g_assert_cmpuint(tf_file_size(path), ==, 0x400 + VDI_BLOCK_SIZE + 140 * MiB);
}

/* An empty dynamic image needs no block moved: the data area starts
 * right after the bigger map. */
static void test_resize_grow_empty(void)
{
    g_autofree char *path = test_tmp_path("grow-empty.vdi");
    GError *err = NULL;

    tf_create("vdi", path, 100 * MiB, NULL);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_truncate(n, 1000 * MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_OFFSET_DATA), ==, 0x200 + 4096);
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_BLOCKS_ALLOCATED), ==, 0);
    if (tf_need_qemu()) {
        g_assert_cmpuint(tf_qemu_data_bytes("vdi", path), ==, 0);
        g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-f", "vdi", path), ==, 0);
    }
}

/* A map growing by many blocks' worth moves as many data blocks; and an
 * image qemu-img wrote grows and stays readable by it. */
static void test_resize_qemu_made(void)
{
    if (!tf_need_qemu())
        return;
    g_autofree char *path = test_tmp_path("grow-qemu.vdi");
    GError *err = NULL;

    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "create", "-q", "-f", "vdi", path, "64M"), ==, 0);
    g_assert_cmpint(TF_RUN(NULL, "qemu-io", "-f", "vdi", "-c", "write -P 0x5a 0 3M", "-c",
                           "write -P 0xa5 40M 1M", path), ==, 0);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    /* 1 TiB: a 4 MiB map, so the first four blocks (all there are) move. */
    g_assert_cmpint(diskimg_node_truncate(n, 1ull << 40, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le32(path, VDI_OFF_OFFSET_DATA), ==, 0x400 + 4 * VDI_BLOCK_SIZE);
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-f", "vdi", path), ==, 0);
    g_assert_cmpuint(tf_qemu_data_bytes("vdi", path), ==, 4 * MiB);
    g_autofree char *out = NULL;
    g_assert_cmpint(TF_RUN(&out, "qemu-io", "-f", "vdi", "-c", "read -P 0x5a 0 3M", "-c",
                           "read -P 0xa5 40M 1M", "-c", "read -P 0 3M 37M", "-c",
                           "read -P 0 1023G 1G", path), ==, 0);
    g_assert_null(strstr(out, "Pattern verification failed"));
}

/* Shrinking is refused in qemu's words for formats that cannot shrink;
 * so is preallocation, and the image keeps its size. */
static void test_resize_refused(void)
{
    g_autofree char *path = test_tmp_path("shrink.vdi");
    GError *err = NULL;

    tf_create("vdi", path, 10 * MiB, NULL);
    diskimg_node *n = tf_open("vdi", path, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_truncate(n, 5 * MiB, DISKIMG_PREALLOC_OFF,
                                          DISKIMG_TRUNCATE_SHRINK, &err), ==, -1);
    tf_assert_message(err, NULL, "Shrinking images is currently not supported", NULL);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_truncate(n, 20 * MiB, DISKIMG_PREALLOC_FULL, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "Unsupported preallocation mode 'full'", NULL);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_size(n, &err), ==, 10 * MiB);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_le64(path, VDI_OFF_DISK_SIZE), ==, 10 * MiB);
}

/* --------------------------------------------------------- qemu interop */

static void test_qemu_made(void)
{
    if (!tf_need_qemu())
        return;
    const char *variants[] = { "static=off", "static=on" };
    for (size_t v = 0; v < G_N_ELEMENTS(variants); v++) {
        g_autofree char *path = test_tmp_path("qemu.vdi");
        tf_check_qemu_made("vdi", variants[v], path);
    }
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "vdi", NULL);

    g_test_add_func("/vdi/header/layout", test_header_layout);
    g_test_add_func("/vdi/header/errors", test_header_errors);
    g_test_add_func("/vdi/header/limits", test_header_limits);
    g_test_add_func("/vdi/roundtrip/dynamic", test_roundtrip_dynamic);
    g_test_add_func("/vdi/roundtrip/static", test_roundtrip_static);
    g_test_add_func("/vdi/roundtrip/odd-size", test_roundtrip_odd_size);
    g_test_add_func("/vdi/block-status-zeroes", test_block_status_and_zeroes);
    g_test_add_func("/vdi/static-status", test_static_status);
    g_test_add_func("/vdi/corrupt-opens", test_corrupt_opens);
    g_test_add_func("/vdi/check-repair", test_check_and_repair);
    g_test_add_func("/vdi/measure", test_measure);
    g_test_add_func("/vdi/failed-write-rolls-back", test_failed_write_rolls_back);
    g_test_add_func("/vdi/qemu-made", test_qemu_made);
    g_test_add_func("/vdi/resize/grow-dynamic", test_resize_grow_dynamic);
    g_test_add_func("/vdi/resize/grow-static", test_resize_grow_static);
    g_test_add_func("/vdi/resize/grow-empty", test_resize_grow_empty);
    g_test_add_func("/vdi/resize/qemu-made", test_resize_qemu_made);
    g_test_add_func("/vdi/resize/refused", test_resize_refused);

    return tf_run_tests();
}
