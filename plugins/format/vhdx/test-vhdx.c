/* SPDX-License-Identifier: MIT */
/*
 * test-vhdx.c — unit tests of the vhdx format plugin.
 *
 * Images are created, written and read through libdiskimg with this
 * build's vhdx, raw and posix modules (DISKIMG_PLUGIN_PATH is set by
 * meson); the plugin's internals, compiled into this program, are used
 * to craft what the public API cannot make (a log left dirty by a crash).
 * Where qemu-img and qemu-io are installed, images go both ways between
 * them and us; where libyal's vhdiinfo is, it must agree on the size.
 * Tools that are missing make their tests skip, saying so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/core.h>

#include "vhdx.h"
#include "test-format.h"

static const diskimg_schema *schema;

/* ---------------------------------------------------------------- helpers */

static void node_write(diskimg_node *n, uint64_t off, uint64_t len, unsigned seed)
{
    uint8_t *buf = g_malloc(len);
    GError *err = NULL;

    tf_pattern(buf, len, 0, seed);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_free(buf);
}

/* Asserts [off, off+len) of n holds tf_pattern(seed) (seed < 0: zeroes). */
static void node_expect(diskimg_node *n, uint64_t off, uint64_t len, int seed)
{
    uint8_t *got = g_malloc(len), *want = g_malloc0(len);
    GError *err = NULL;

    if (seed >= 0)
        tf_pattern(want, len, 0, (unsigned)seed);
    g_assert_cmpint(diskimg_node_pread(n, got, len, off, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(memcmp(got, want, len) == 0);
    g_free(got);
    g_free(want);
}

/* Recomputes the CRC-32C of the structure of `len` bytes at `off`
 * (checksum at +4), so that a test reaches the field check behind it. */
static void reseal(const char *path, uint64_t off, size_t len)
{
    uint8_t *buf = g_malloc(len);
    int fd = open(path, O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, (off_t)off), ==, (ssize_t)len);
    diskimg_put_le32(buf + 4, 0);
    diskimg_put_le32(buf + 4, diskimg_crc32c(0, buf, len));
    g_assert_cmpint(pwrite(fd, buf, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
    g_free(buf);
}

static void reseal_headers(const char *path)
{
    reseal(path, VHDX_HEADER1_OFFSET, VHDX_HEADER_SIZE);
    reseal(path, VHDX_HEADER2_OFFSET, VHDX_HEADER_SIZE);
}

static void reseal_regions(const char *path)
{
    reseal(path, VHDX_REGION1_OFFSET, VHDX_REGION_SIZE);
    reseal(path, VHDX_REGION2_OFFSET, VHDX_REGION_SIZE);
}

/* The open fails with `code`, one line naming the file and `field`. */
static void expect_open_error(const char *path, unsigned flags, int code, const char *field)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open("vhdx", path, flags, NULL, &err);

    g_assert_null(n);
    g_assert_nonnull(err);
    if (g_test_verbose())
        g_printerr("  %s\n", err->message);
    g_assert_error(err, DISKIMG_ERROR, code);
    g_assert_nonnull(strstr(err->message, path));
    g_assert_nonnull(strstr(err->message, field));
    g_assert_null(strchr(err->message, '\n'));
    g_error_free(err);
}

static char *fresh(const char *name, uint64_t size, const char *opts)
{
    char *p = test_tmp_path(name);
    g_unlink(p);
    tf_create("vhdx", p, size, opts);
    return p;
}

static struct diskimg_extent status(diskimg_node *n, uint64_t off, uint64_t len)
{
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_block_status(n, off, len, &ext, &err), ==, 0);
    g_assert_no_error(err);
    return ext;
}

/* ------------------------------------------------------------- structures */

static void test_geometry(void)
{
    /* chunk ratio = 2^23 * logical sector / block size (spec 2.5). */
    g_assert_cmpuint(vhdx_chunk_ratio(8 * MiB, 512), ==, 512);
    g_assert_cmpuint(vhdx_chunk_ratio(1 * MiB, 512), ==, 4096);
    g_assert_cmpuint(vhdx_chunk_ratio(256 * MiB, 512), ==, 16);
    g_assert_cmpuint(vhdx_chunk_ratio(1 * MiB, 4096), ==, 32768);
    /* 100 MiB in 8 MiB blocks: 13 payload entries, no bitmap entry yet. */
    g_assert_cmpuint(vhdx_bat_entry_count(100 * MiB, 8 * MiB, 512), ==, 13);
    /* 4097 blocks of 1 MiB: one sector bitmap entry after the first 4096. */
    g_assert_cmpuint(vhdx_bat_entry_count(4097 * MiB, 1 * MiB, 512), ==, 4098);
    g_assert_cmpuint(vhdx_bat_entry_count(4096 * MiB, 1 * MiB, 512), ==, 4096);
    g_assert_cmpuint(vhdx_bat_entry_count(0, 8 * MiB, 512), ==, 0);
    /* qemu's default block sizes. */
    g_assert_cmpuint(vhdx_default_block_size(1 * GiB), ==, 8 * MiB);
    g_assert_cmpuint(vhdx_default_block_size(1 * GiB + 512), ==, 16 * MiB);
    g_assert_cmpuint(vhdx_default_block_size(200 * GiB), ==, 32 * MiB);
    g_assert_cmpuint(vhdx_default_block_size(40 * TiB), ==, 64 * MiB);
}

static void test_guid(void)
{
    vhdx_guid a, b;
    vhdx_guid_generate(&a);
    vhdx_guid_generate(&b);
    g_assert_false(vhdx_guid_equal(&a, &b));
    g_assert_false(vhdx_guid_is_zero(&a));
    g_assert_cmpuint(a.b[7] >> 4, ==, 4);          /* version 4 */
    g_assert_cmpuint(a.b[8] & 0xc0, ==, 0x80);     /* RFC 4122 variant */
}

/* The header codec writes what qemu-made headers hold: the CRC checks. */
static void test_header_codec(void)
{
    struct vhdx_header h = { .sequence = 7, .version = 1, .log_length = MiB,
                             .log_offset = MiB };
    uint8_t *buf = g_malloc(VHDX_HEADER_SIZE);

    vhdx_header_encode(&h, buf);
    g_assert_true(memcmp(buf, "head", 4) == 0);
    g_assert_cmpuint(diskimg_le64(buf + 8), ==, 7);
    g_assert_cmpuint(diskimg_le32(buf + 68), ==, MiB);
    uint32_t crc = diskimg_le32(buf + 4);
    diskimg_put_le32(buf + 4, 0);
    g_assert_cmpuint(diskimg_crc32c(0, buf, VHDX_HEADER_SIZE), ==, crc);
    g_free(buf);
}

/* ------------------------------------------------------------ round trips */

struct layout_case {
    const char *name, *opts;
    uint64_t size;
};

static const struct layout_case layouts[] = {
    { "dynamic", NULL, 64 * MiB },
    { "fixed", "subformat=fixed", 24 * MiB },
    { "block-1M", "block_size=1M", 20 * MiB },
    { "block-32M", "block_size=32M", 70 * MiB },
    { "no-zero-blocks", "block_state_zero=off", 20 * MiB },
    { "log-2M", "log_size=2M", 20 * MiB },
    { "odd-size", NULL, 65 * MiB + 512 },
    { "fixed-odd", "subformat=fixed,block_size=1M", 5 * MiB + 1536 },
};

/* Writes data at unaligned places, across block boundaries and in the
 * last sector, reads it back before and after reopening, and checks that
 * untouched blocks stay holes. */
static void test_round_trip(gconstpointer data)
{
    const struct layout_case *c = data;
    g_autofree char *name = g_strdup_printf("rt-%s.vhdx", c->name);
    g_autofree char *path = fresh(name, c->size, c->opts);
    diskimg_node *n = tf_open("vhdx", path, DISKIMG_OPEN_RDWR, NULL);
    GError *err = NULL;
    uint64_t size = c->size;
    uint32_t bs;

    g_assert_cmpint(diskimg_node_size(n, &err), ==, (int64_t)size);
    bs = ((struct vhdx_state *)diskimg_node_handle(n))->block_size;
    node_write(n, 512, 3000, 1);
    node_write(n, bs - 1000, 5000, 2);            /* straddles blocks 0 and 1 */
    node_write(n, size - 512, 512, 3);            /* the last sector */
    node_expect(n, 512, 3000, 1);
    g_assert_cmpint(diskimg_node_flush(n, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);

    n = tf_open("vhdx", path, 0, NULL);
    node_expect(n, 0, 512, -1);
    node_expect(n, 512, 3000, 1);
    node_expect(n, bs - 1000, 5000, 2);
    node_expect(n, size - 512, 512, 3);
    if (size > 3 * (uint64_t)bs) {
        /* Block 2 was never written: a hole that reads as zeroes. */
        struct diskimg_extent e = status(n, 2 * (uint64_t)bs, bs);
        g_assert_true(e.flags & DISKIMG_BS_ZERO);
        g_assert_false(e.flags & DISKIMG_BS_DATA);
        node_expect(n, 2 * (uint64_t)bs, 4096, -1);
    }
    struct diskimg_extent first = status(n, 0, size);
    g_assert_true(first.flags & DISKIMG_BS_DATA);
    g_assert_true(first.flags & DISKIMG_BS_OFFSET_VALID);
    diskimg_close(n);
}

/* raw -> vhdx -> raw through the copy engine (convert): identical bytes,
 * and a hole of the source stays a hole of the vhdx. */
static void test_convert_round_trip(void)
{
    g_autofree char *raw = test_tmp_path("src.raw");
    g_autofree char *back = test_tmp_path("back.raw");
    g_autofree char *img = fresh("conv.vhdx", 48 * MiB, "block_size=1M");
    uint8_t *buf = g_malloc0(48 * MiB);
    GError *err = NULL;

    tf_pattern(buf + 3 * MiB, 2 * MiB, 0, 4);
    tf_pattern(buf + 40 * MiB + 77, 1000, 0, 5);
    g_assert_true(g_file_set_contents(raw, (char *)buf, 48 * MiB, &err));
    diskimg_node *src = tf_try_open("raw", raw, 0, NULL, &err);
    g_assert_no_error(err);
    diskimg_node *dst = tf_open("vhdx", img, DISKIMG_OPEN_RDWR, NULL);
    struct diskimg_copy_params p = {
        .struct_size = sizeof(p), .sources = &src, .n_sources = 1, .target = dst,
        .sparse_size = 4096, .target_is_zero = true, .quiet = true, .parallel = 8,
    };
    g_assert_cmpint(diskimg_copy(&p, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(dst);
    diskimg_close(src);

    dst = tf_open("vhdx", img, 0, NULL);
    struct diskimg_extent e = status(dst, 10 * MiB, MiB);
    g_assert_true(e.flags & DISKIMG_BS_ZERO);
    g_assert_false(e.flags & DISKIMG_BS_DATA);
    /* Only the blocks holding data were allocated. */
    struct stat st;
    g_assert_cmpint(stat(img, &st), ==, 0);
    g_assert_cmpint(st.st_size, <=, 16 * MiB);
    uint8_t *got = g_malloc(48 * MiB);
    g_assert_cmpint(diskimg_node_pread(dst, got, 48 * MiB, 0, &err), ==, 0);
    g_assert_true(memcmp(got, buf, 48 * MiB) == 0);
    g_assert_true(g_file_set_contents(back, (char *)got, 48 * MiB, &err));
    diskimg_close(dst);
    g_free(got);
    g_free(buf);
}

static void test_write_zeroes(void)
{
    g_autofree char *path = fresh("zeroes.vhdx", 8 * MiB, "block_size=1M");
    diskimg_node *n = tf_open("vhdx", path, DISKIMG_OPEN_RDWR, NULL);
    GError *err = NULL;

    node_write(n, 0, 4 * MiB, 6);
    /* A whole block with unmap: it becomes a ZERO block, not written. */
    g_assert_cmpint(diskimg_node_write_zeroes(n, MiB, MiB, DISKIMG_WRITE_MAY_UNMAP, &err),
                    ==, 0);
    /* Part of a block: zeroes written in place. */
    g_assert_cmpint(diskimg_node_write_zeroes(n, 2 * MiB + 100, 1000, 0, &err), ==, 0);
    /* An unallocated block needs nothing. */
    g_assert_cmpint(diskimg_node_write_zeroes(n, 6 * MiB, MiB, DISKIMG_WRITE_MAY_UNMAP, &err),
                    ==, 0);
    g_assert_no_error(err);
    struct vhdx_state *s = diskimg_node_handle(n);
    g_assert_cmpuint(s->bat[1] & VHDX_BAT_STATE_MASK, ==, VHDX_BLOCK_ZERO);
    g_assert_cmpuint(s->bat[6] & VHDX_BAT_STATE_MASK, ==, VHDX_BLOCK_ZERO);
    diskimg_close(n);

    n = tf_open("vhdx", path, 0, NULL);
    node_expect(n, 0, MiB, 6);
    node_expect(n, MiB, MiB, -1);
    node_expect(n, 2 * MiB + 100, 1000, -1);
    /* The 100 bytes before the zeroed range keep what node_write put there. */
    uint8_t *buf = g_malloc(100);
    tf_pattern(buf, 100, 2 * MiB, 6);
    uint8_t *got = g_malloc(100);
    g_assert_cmpint(diskimg_node_pread(n, got, 100, 2 * MiB, &err), ==, 0);
    g_assert_true(memcmp(got, buf, 100) == 0);
    struct diskimg_extent e = status(n, MiB, MiB);
    g_assert_true(e.flags & DISKIMG_BS_ZERO);
    diskimg_close(n);
    g_free(buf);
    g_free(got);

    /* A fixed image keeps its blocks allocated: zeroes are written in place. */
    g_autofree char *f = fresh("zeroes-fixed.vhdx", 4 * MiB, "subformat=fixed,block_size=1M");
    n = tf_open("vhdx", f, DISKIMG_OPEN_RDWR, NULL);
    node_write(n, MiB, MiB, 8);
    g_assert_cmpint(diskimg_node_write_zeroes(n, MiB, MiB, DISKIMG_WRITE_MAY_UNMAP, &err),
                    ==, 0);
    s = diskimg_node_handle(n);
    g_assert_cmpuint(s->bat[1] & VHDX_BAT_STATE_MASK, ==, VHDX_BLOCK_FULLY_PRESENT);
    node_expect(n, MiB, MiB, -1);
    diskimg_close(n);
}

/* The spec's header rules, as qemu applies them: a writable open rewrites
 * both headers (new file write GUID), the first guest write changes the
 * data write GUID, and metadata updates leave the log empty. */
static void test_header_updates(void)
{
    g_autofree char *path = fresh("hdr.vhdx", 16 * MiB, NULL);
    diskimg_node *n = tf_open("vhdx", path, 0, NULL);
    struct vhdx_header before = ((struct vhdx_state *)diskimg_node_handle(n))->header;
    diskimg_close(n);

    n = tf_open("vhdx", path, DISKIMG_OPEN_RDWR, NULL);
    struct vhdx_header opened = ((struct vhdx_state *)diskimg_node_handle(n))->header;
    g_assert_cmpuint(opened.sequence, ==, before.sequence + 2);
    g_assert_false(vhdx_guid_equal(&opened.file_write_guid, &before.file_write_guid));
    g_assert_true(vhdx_guid_equal(&opened.data_write_guid, &before.data_write_guid));
    node_write(n, 0, 4096, 7);
    diskimg_close(n);

    n = tf_open("vhdx", path, 0, NULL);
    struct vhdx_header after = ((struct vhdx_state *)diskimg_node_handle(n))->header;
    g_assert_false(vhdx_guid_equal(&after.data_write_guid, &before.data_write_guid));
    g_assert_true(vhdx_guid_is_zero(&after.log_guid));
    /* Both copies are valid and agree on everything but the sequence. */
    g_assert_cmpuint(tf_file_le64(path, VHDX_HEADER1_OFFSET + 8) ^
                         tf_file_le64(path, VHDX_HEADER2_OFFSET + 8), !=, 0);
    g_assert_cmpuint(tf_file_le64(path, VHDX_HEADER1_OFFSET + 32), ==,
                     tf_file_le64(path, VHDX_HEADER2_OFFSET + 32));
    node_expect(n, 0, 4096, 7);
    diskimg_close(n);
}

static void test_info_and_probe(void)
{
    g_autofree char *path = fresh("info.vhdx", 3 * GiB, NULL);
    GError *err = NULL;
    diskimg_node *n = tf_try_open(NULL, path, 0, NULL, &err);    /* probed */

    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "vhdx");
    JsonObject *info = diskimg_image_info(n, &err);
    g_assert_no_error(err);
    g_assert_cmpint(json_object_get_int_member(info, "cluster-size"), ==, 16 * MiB);
    g_assert_cmpint(json_object_get_int_member(info, "virtual-size"), ==, 3 * GiB);
    g_assert_false(json_object_has_member(info, "format-specific"));
    json_object_unref(info);
    diskimg_close(n);
}

static void test_create_options(void)
{
    g_autofree char *path = test_tmp_path("opts.vhdx");
    static const struct { const char *opts; uint64_t size; const char *msg; } bad[] = {
        { "block_size=3M", MiB, "Block size must be a power of two" },
        { "log_size=0", MiB, "Log size must be a multiple of 1 MB" },
        { "log_size=5000M", MiB, "Log size must be smaller than 4 GB" },
        { NULL, 65 * TiB, "Image size too large; max of 64TB" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        diskimg_options *o = diskimg_options_new(schema, "create-options");
        struct diskimg_create_params p = {
            .struct_size = sizeof(p), .format = "vhdx", .options = o, .size = bad[i].size,
        };
        GError *err = NULL;
        if (bad[i].opts)
            g_assert_cmpint(diskimg_options_parse(o, bad[i].opts, &err), ==, 0);
        g_assert_cmpint(diskimg_create(path, &p, &err), <, 0);
        g_assert_nonnull(strstr(err->message, bad[i].msg));
        g_error_free(err);
        diskimg_options_free(o);
    }
    /* qemu's rounding: 512k blocks become 1 MiB, 512M is capped at 256M,
     * 1500k of log becomes 2 MiB, 1000 bytes become two sectors. */
    g_autofree char *a = fresh("round1.vhdx", 1000, "block_size=512k,log_size=1500k");
    diskimg_node *n = tf_open("vhdx", a, 0, NULL);
    struct vhdx_state *s = diskimg_node_handle(n);
    g_assert_cmpuint(s->block_size, ==, MiB);
    g_assert_cmpuint(s->header.log_length, ==, 2 * MiB);
    g_assert_cmpuint(s->disk_size, ==, 1024);
    diskimg_close(n);
    g_autofree char *b = fresh("round2.vhdx", MiB, "block_size=512M");
    n = tf_open("vhdx", b, 0, NULL);
    g_assert_cmpuint(((struct vhdx_state *)diskimg_node_handle(n))->block_size, ==, 256 * MiB);
    diskimg_close(n);
    /* A fixed image has every block present, in file order. */
    g_autofree char *f = fresh("fixed.vhdx", 3 * MiB, "subformat=fixed,block_size=1M");
    n = tf_open("vhdx", f, 0, NULL);
    s = diskimg_node_handle(n);
    for (unsigned i = 0; i < 3; i++) {
        g_assert_cmpuint(s->bat[i] & VHDX_BAT_STATE_MASK, ==, VHDX_BLOCK_FULLY_PRESENT);
        g_assert_cmpuint(s->bat[i] & VHDX_BAT_OFFSET_MASK, ==, (8 + i) * MiB);
    }
    g_assert_cmpuint(s->param_flags & VHDX_PARAM_LEAVE_ALLOCATED, !=, 0);
    diskimg_close(n);
}

/* ---------------------------------------------------------- corrupt files */

/* Offsets in an image we create with the default 1 MiB log. */
#define BAT_AT (2 * MiB)
#define META_AT (3 * MiB)
#define ITEMS_AT (META_AT + 64 * KiB)

/* A structure kept twice: with the copy at `first` damaged the image
 * still opens, with the one at `second` damaged too it is refused. */
static void expect_both_copies_needed(const char *name, uint64_t first, uint64_t second,
                                      const char *needle)
{
    static const uint8_t junk[4] = { 0xde, 0xad, 0xbe, 0xef };
    char *p = fresh(name, 16 * MiB, NULL);

    tf_patch(p, first, junk, sizeof(junk));
    diskimg_close(tf_open("vhdx", p, 0, NULL));
    tf_patch(p, second, junk, sizeof(junk));
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, needle);
    g_free(p);
}

static void test_corrupt(void)
{
    char *p;

    /* Truncated below the region tables. */
    p = fresh("c-trunc.vhdx", 16 * MiB, NULL);
    g_assert_cmpint(truncate(p, 100 * KiB), ==, 0);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "too small");
    g_free(p);

    p = fresh("c-ident.vhdx", 16 * MiB, NULL);
    tf_patch(p, 0, "xhdxfile", 8);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "file type identifier");
    g_free(p);

    /* One damaged header copy is survived; two are not. */
    expect_both_copies_needed("c-hdr.vhdx", VHDX_HEADER2_OFFSET + 100,
                              VHDX_HEADER1_OFFSET + 100, "checksum mismatch");

    p = fresh("c-version.vhdx", 16 * MiB, NULL);
    tf_patch_le32(p, VHDX_HEADER1_OFFSET + 66, 2);     /* version 2 ... */
    tf_patch_le32(p, VHDX_HEADER2_OFFSET + 66, 2);
    reseal_headers(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "unsupported version");
    g_free(p);

    p = fresh("c-logoff.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, VHDX_HEADER1_OFFSET + 72, MiB + 4096);
    tf_patch_le64(p, VHDX_HEADER2_OFFSET + 72, MiB + 4096);
    reseal_headers(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "log_offset");
    g_free(p);

    /* Region table: the second copy stands in for a damaged first. */
    expect_both_copies_needed("c-region.vhdx", VHDX_REGION1_OFFSET + 200,
                              VHDX_REGION2_OFFSET + 200, "checksum");

    p = fresh("c-region-eof.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, VHDX_REGION1_OFFSET + 16 + 16, 1 * TiB);  /* BAT file_offset */
    tf_patch_le64(p, VHDX_REGION2_OFFSET + 16 + 16, 1 * TiB);
    reseal_regions(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "BAT region");
    g_free(p);

    /* An offset near 2^64, where offset + length wraps to a small number. */
    p = fresh("c-region-wrap.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, VHDX_REGION1_OFFSET + 16 + 16, UINT64_C(0xfffffffffff00000));
    tf_patch_le32(p, VHDX_REGION1_OFFSET + 16 + 24, 2 * MiB);
    tf_patch_le64(p, VHDX_REGION2_OFFSET + 16 + 16, UINT64_C(0xfffffffffff00000));
    tf_patch_le32(p, VHDX_REGION2_OFFSET + 16 + 24, 2 * MiB);
    reseal_regions(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "BAT region");
    g_free(p);

    p = fresh("c-log-wrap.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, VHDX_HEADER1_OFFSET + 72, UINT64_C(0xfffffffffff00000));
    tf_patch_le64(p, VHDX_HEADER2_OFFSET + 72, UINT64_C(0xfffffffffff00000));
    reseal_headers(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "log");
    g_free(p);

    p = fresh("c-region-count.vhdx", 16 * MiB, NULL);
    tf_patch_le32(p, VHDX_REGION1_OFFSET + 8, 5000);
    tf_patch_le32(p, VHDX_REGION2_OFFSET + 8, 5000);
    reseal_regions(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "entry_count");
    g_free(p);

    p = fresh("c-region-overlap.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, VHDX_REGION1_OFFSET + 48 + 16, BAT_AT);    /* metadata onto the BAT */
    tf_patch_le64(p, VHDX_REGION2_OFFSET + 48 + 16, BAT_AT);
    reseal_regions(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "overlap");
    g_free(p);

    /* Metadata: no checksum, so every field is checked on its own. */
    p = fresh("c-meta-sig.vhdx", 16 * MiB, NULL);
    tf_patch(p, META_AT, "metadat?", 8);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "metadata table");
    g_free(p);

    p = fresh("c-meta-count.vhdx", 16 * MiB, NULL);
    tf_patch(p, META_AT + 10, "\xff\xff", 2);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "entry_count");
    g_free(p);

    p = fresh("c-meta-item.vhdx", 16 * MiB, NULL);
    tf_patch_le32(p, META_AT + 32 + 16, 2 * MiB);               /* file parameters offset */
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "file parameters item");
    g_free(p);

    p = fresh("c-meta-missing.vhdx", 16 * MiB, NULL);
    /* The physical sector size item becomes an unknown optional item. */
    tf_patch(p, META_AT + 32 + 32 * 4, "\0\0\0\0", 4);
    tf_patch_le32(p, META_AT + 32 + 32 * 4 + 24, 0);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "physical sector size");
    g_free(p);

    p = fresh("c-blocksize.vhdx", 16 * MiB, NULL);
    tf_patch_le32(p, ITEMS_AT, 3 * MiB);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "block_size");
    g_free(p);

    p = fresh("c-disksize.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, ITEMS_AT + 8, UINT64_C(1) << 50);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "virtual_disk_size");
    g_free(p);

    /* A size the BAT region cannot cover. */
    p = fresh("c-batsmall.vhdx", 16 * MiB, "block_size=1M");
    tf_patch_le64(p, ITEMS_AT + 8, 60 * TiB);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "BAT region");
    g_free(p);

    p = fresh("c-lss.vhdx", 16 * MiB, NULL);
    tf_patch_le32(p, ITEMS_AT + 32, 1000);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "logical_sector_size");
    g_free(p);

    p = fresh("c-parent.vhdx", 16 * MiB, NULL);
    tf_patch_le32(p, ITEMS_AT + 4, VHDX_PARAM_HAS_PARENT);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "parent locator");
    g_free(p);

    /* BAT entries. */
    p = fresh("c-bat-eof.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, BAT_AT + 8, (400 * MiB) | VHDX_BLOCK_FULLY_PRESENT);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "BAT entry 1 start offset");
    g_free(p);

    /* A block that starts inside the file but ends past it (8 MiB file). */
    p = fresh("c-bat-end.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, BAT_AT, (4 * MiB) | VHDX_BLOCK_FULLY_PRESENT);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "end offset 12582912");
    g_free(p);

    p = fresh("c-bat-hdr.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, BAT_AT, VHDX_BLOCK_FULLY_PRESENT);         /* offset 0 */
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "header area");
    g_free(p);

    p = fresh("c-bat-meta.vhdx", 16 * MiB, "block_size=1M");
    tf_patch_le64(p, BAT_AT, META_AT | VHDX_BLOCK_FULLY_PRESENT);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "overlaps");
    g_free(p);

    p = fresh("c-bat-state.vhdx", 16 * MiB, NULL);
    tf_patch_le64(p, BAT_AT, 4);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "invalid state");
    g_free(p);
}

/* check counts bad BAT entries that a plain open refuses. */
static void test_check(void)
{
    g_autofree char *p = fresh("chk.vhdx", 16 * MiB, NULL);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    GError *err = NULL;

    diskimg_node *n = tf_open("vhdx", p, DISKIMG_OPEN_CHECK, NULL);
    g_assert_cmpint(diskimg_node_check(n, 0, &res, &err), ==, 0);
    g_assert_cmpuint(res.corruptions, ==, 0);
    diskimg_close(n);

    tf_patch_le64(p, BAT_AT + 8, (400 * MiB) | VHDX_BLOCK_FULLY_PRESENT);
    n = tf_open("vhdx", p, DISKIMG_OPEN_CHECK, NULL);
    g_assert_cmpint(diskimg_node_check(n, 0, &res, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.corruptions, ==, 1);
    diskimg_close(n);

    /* Opened for a repairing check, an entry pointing into the metadata
     * region is kept, but guest data is never written there. */
    g_autofree char *q = fresh("chk-guard.vhdx", 16 * MiB, "block_size=1M");
    tf_patch_le64(q, BAT_AT, META_AT | VHDX_BLOCK_FULLY_PRESENT);
    n = tf_open("vhdx", q, DISKIMG_OPEN_CHECK | DISKIMG_OPEN_RDWR, NULL);
    uint8_t buf[512] = { 1 };
    g_assert_cmpint(diskimg_node_pwrite(n, buf, sizeof(buf), 0, 0, &err), <, 0);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "overlaps with metadata region"));
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 0, 512, 0, &err), <, 0);
    g_clear_error(&err);
    diskimg_close(n);
    n = tf_open("vhdx", q, DISKIMG_OPEN_CHECK, NULL);
    g_assert_cmpint(diskimg_node_check(n, 0, &res, &err), ==, 0);
    diskimg_close(n);
    n = tf_try_open("vhdx", q, 0, NULL, &err);
    g_assert_null(n);
    g_clear_error(&err);
    /* The metadata survived: the table signature is intact. */
    uint8_t sig[8];
    int fd = open(q, O_RDONLY);
    g_assert_cmpint(pread(fd, sig, 8, META_AT), ==, 8);
    close(fd);
    g_assert_true(memcmp(sig, "metadata", 8) == 0);
}

/* A damaged region table 1: we read copy 2 (qemu reads only copy 1 and
 * cannot open the image); check counts it, a repairing check rewrites it. */
static void test_region_repair(void)
{
    g_autofree char *p = fresh("regrepair.vhdx", 16 * MiB, NULL);
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    uint8_t junk[4] = { 0xde, 0xad, 0xbe, 0xef };
    GError *err = NULL;

    tf_patch(p, VHDX_REGION1_OFFSET + 300, junk, 4);
    diskimg_node *n = tf_open("vhdx", p, DISKIMG_OPEN_CHECK, NULL);
    g_assert_cmpint(diskimg_node_check(n, 0, &res, &err), ==, 0);
    g_assert_cmpuint(res.corruptions, ==, 1);
    diskimg_close(n);

    res = (struct diskimg_check_result){ .struct_size = sizeof(res) };
    n = tf_open("vhdx", p, DISKIMG_OPEN_CHECK | DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_check(n, DISKIMG_CHECK_FIX_ERRORS, &res, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.corruptions, ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    diskimg_close(n);

    res = (struct diskimg_check_result){ .struct_size = sizeof(res) };
    n = tf_open("vhdx", p, DISKIMG_OPEN_CHECK, NULL);
    g_assert_cmpint(diskimg_node_check(n, 0, &res, &err), ==, 0);
    g_assert_cmpuint(res.corruptions + res.corruptions_fixed, ==, 0);
    diskimg_close(n);
    if (tf_need("qemu-img")) {
        const char *check[] = { "qemu-img", "check", "-f", "vhdx", p, NULL };
        g_assert_cmpint(tf_run(NULL, check), ==, 0);
    }
}

/* -------------------------------------------------------------------- log */

/* Leaves a crash's state behind: block 0 of the image gets new data at the
 * end of the file, and the BAT page naming it is only in the log. */
static void make_dirty_log(const char *path, unsigned seed)
{
    GError *err = NULL;
    diskimg_node *raw = tf_try_open("raw", path, DISKIMG_OPEN_RDWR, NULL, &err);
    g_assert_no_error(err);
    struct vhdx_state s = { .file = diskimg_node_file(raw), .filename = path,
                            .writable = true };
    g_assert_cmpint(vhdx_read_headers(&s, &err), ==, 0);
    g_assert_cmpint(vhdx_read_region_table(&s, &err), ==, 0);
    g_assert_cmpint(vhdx_read_metadata(&s, &err), ==, 0);
    g_assert_cmpint(vhdx_load_bat(&s, &err), ==, 0);
    g_assert_no_error(err);

    int64_t end = diskimg_node_size(s.file, &err);
    uint64_t block_at = ((uint64_t)end + MiB - 1) / MiB * MiB;
    uint8_t *data = g_malloc(s.block_size);
    tf_pattern(data, s.block_size, 0, seed);
    g_assert_cmpint(diskimg_node_pwrite(s.file, data, s.block_size, block_at, 0, &err), ==, 0);
    uint8_t page[VHDX_LOG_SECTOR] = { 0 };
    for (unsigned k = 0; k < 512 && k < s.bat_entries; k++)
        diskimg_put_le64(page + 8 * k, s.bat[k]);
    diskimg_put_le64(page, block_at | VHDX_BLOCK_FULLY_PRESENT);
    const uint8_t *pages[1] = { page };
    uint64_t offsets[1] = { s.bat_region.offset };
    g_assert_cmpint(vhdx_log_write_entry(&s, pages, offsets, 1, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_false(vhdx_guid_is_zero(&s.header.log_guid));
    vhdx_bat_free(&s);
    g_free(data);
    diskimg_close(raw);
}

static void test_log_replay(void)
{
    g_autofree char *p = fresh("dirty.vhdx", 16 * MiB, NULL);
    GError *err = NULL;

    make_dirty_log(p, 9);
    /* Read-only: refused, with qemu's message. */
    expect_open_error(p, 0, DISKIMG_ERROR_PERMISSION,
                      "opened read-only, but contains a log that needs to be replayed");
    /* Check (read-only) too, as qemu's. */
    expect_open_error(p, DISKIMG_OPEN_CHECK, DISKIMG_ERROR_PERMISSION, "log");
    /* Writable: replayed; the data the log's BAT names is read. */
    diskimg_node *n = tf_open("vhdx", p, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CHECK, NULL);
    struct vhdx_state *s = diskimg_node_handle(n);
    g_assert_true(s->log_replayed);
    g_assert_true(vhdx_guid_is_zero(&s->header.log_guid));
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(diskimg_node_check(n, DISKIMG_CHECK_FIX_ERRORS, &res, &err), ==, 0);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    diskimg_close(n);
    n = tf_open("vhdx", p, 0, NULL);
    node_expect(n, 0, 8 * MiB, 9);
    node_expect(n, 8 * MiB, 8 * MiB, -1);
    diskimg_close(n);
}

/* A crash between guest writes and the flush that publishes their BAT
 * entries: the child process writes into new blocks and into a present
 * one, then dies without flushing or closing.  The image must still be
 * consistent: valid headers and log, the old BAT (new blocks read as the
 * zeroes they were), the in-place write kept. */
static void test_crash_before_flush(void)
{
    g_autofree char *p = test_tmp_path("crash.vhdx");

    if (g_test_subprocess()) {
        diskimg_node *n = tf_open("vhdx", p, DISKIMG_OPEN_RDWR, NULL);
        node_write(n, 0, 4096, 41);                 /* block 0 exists already */
        node_write(n, 9 * MiB, 2 * MiB, 42);        /* blocks 9 and 10 are new */
        _exit(0);
    }
    g_unlink(p);
    tf_create("vhdx", p, 16 * MiB, "block_size=1M");
    diskimg_node *n = tf_open("vhdx", p, DISKIMG_OPEN_RDWR, NULL);
    node_write(n, 0, 4096, 40);
    diskimg_close(n);

    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();

    n = tf_open("vhdx", p, 0, NULL);
    struct vhdx_state *s = diskimg_node_handle(n);
    g_assert_true(vhdx_guid_is_zero(&s->header.log_guid));
    node_expect(n, 0, 4096, 41);
    node_expect(n, 9 * MiB, 2 * MiB, -1);
    diskimg_close(n);
    if (tf_need("qemu-img")) {
        const char *check[] = { "qemu-img", "check", "-f", "vhdx", p, NULL };
        g_assert_cmpint(tf_run(NULL, check), ==, 0);
    }
}

/* An image without a log (log_length 0, which the spec allows): BAT pages
 * are then written in place, after the data they name. */
static void test_no_log(void)
{
    g_autofree char *p = fresh("nolog.vhdx", 16 * MiB, "block_size=1M");

    tf_patch_le32(p, VHDX_HEADER1_OFFSET + 68, 0);
    tf_patch_le32(p, VHDX_HEADER2_OFFSET + 68, 0);
    reseal_headers(p);
    diskimg_node *n = tf_open("vhdx", p, DISKIMG_OPEN_RDWR, NULL);
    node_write(n, 5 * MiB + 100, 3 * MiB, 51);
    diskimg_close(n);
    n = tf_open("vhdx", p, 0, NULL);
    struct vhdx_state *s = diskimg_node_handle(n);
    g_assert_cmpuint(s->header.log_length, ==, 0);
    g_assert_true(vhdx_guid_is_zero(&s->header.log_guid));
    node_expect(n, 5 * MiB + 100, 3 * MiB, 51);
    diskimg_close(n);
}

/* A log GUID whose log holds garbage, or an entry whose checksum fails,
 * has nothing to replay: the image opens read-only as it is. */
static void test_log_invalid(void)
{
    g_autofree char *p = fresh("badlog.vhdx", 16 * MiB, NULL);
    uint8_t junk[64];

    make_dirty_log(p, 3);
    memset(junk, 0x5a, sizeof(junk));
    tf_patch(p, MiB + 100, junk, sizeof(junk));            /* inside the entry */
    diskimg_node *n = tf_open("vhdx", p, 0, NULL);
    node_expect(n, 0, 4096, -1);                        /* the old BAT: a hole */
    diskimg_close(n);
    /* A descriptor count near 2^32 in an entry with a valid checksum: it
     * must not pass as a few descriptor sectors (nor take hours). */
    g_autofree char *q = fresh("hugelog.vhdx", 16 * MiB, NULL);
    make_dirty_log(q, 4);
    tf_patch_le32(q, MiB + 24, UINT32_MAX);
    reseal(q, MiB, 8192);
    n = tf_open("vhdx", q, 0, NULL);
    node_expect(n, 0, 4096, -1);
    diskimg_close(n);

    /* A log_length the log region cannot hold. */
    tf_patch_le32(p, VHDX_HEADER1_OFFSET + 68, 1024 * MiB);
    tf_patch_le32(p, VHDX_HEADER2_OFFSET + 68, 1024 * MiB);
    reseal_headers(p);
    expect_open_error(p, 0, DISKIMG_ERROR_CORRUPT, "log");
}

/* ------------------------------------------------------- other programs */

/* qemu-img makes images, qemu-io writes them, we read the same bytes. */
static void test_qemu_made(gconstpointer data)
{
    const char *opts = data;
    g_autofree char *img = test_tmp_path("qemu.vhdx");
    g_autofree char *raw = test_tmp_path("qemu.raw");
    char *out = NULL;

    if (!tf_need("qemu-img") || !tf_need("qemu-io"))
        return;
    g_unlink(img);
    const char *create[] = { "qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, img, "40M",
                             NULL };
    g_assert_cmpint(tf_run(NULL, create), ==, 0);
    const char *io[] = { "qemu-io", "-f", "vhdx", "-c", "write -P 0xa5 1000k 3000k",
                         "-c", "write -P 0x3c 20M 512", "-c", "write -z 1M 64k", img, NULL };
    g_assert_cmpint(tf_run(&out, io), ==, 0);
    g_free(out);
    const char *conv[] = { "qemu-img", "convert", "-f", "vhdx", "-O", "raw", img, raw, NULL };
    g_assert_cmpint(tf_run(NULL, conv), ==, 0);

    gchar *want = NULL;
    gsize want_len = 0;
    GError *err = NULL;
    g_assert_true(g_file_get_contents(raw, &want, &want_len, &err));
    g_assert_cmpuint(want_len, ==, 40 * MiB);
    diskimg_node *n = tf_open("vhdx", img, 0, NULL);
    uint8_t *got = g_malloc(want_len);
    g_assert_cmpint(diskimg_node_pread(n, got, want_len, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(memcmp(got, want, want_len) == 0);
    g_assert_cmpuint(got[1000 * KiB], ==, 0xa5);
    g_assert_cmpuint(got[20 * MiB + 511], ==, 0x3c);
    g_assert_cmpuint(got[MiB + 10], ==, 0);
    diskimg_close(n);
    g_free(got);
    g_free(want);
}

/* Ours, written, pass qemu-img check and compare equal to what we read. */
static void test_qemu_reads_ours(gconstpointer data)
{
    const char *opts = data;
    g_autofree char *img = fresh("ours.vhdx", 33 * MiB + 512, opts);
    g_autofree char *raw = test_tmp_path("ours.raw");

    if (!tf_need("qemu-img"))
        return;
    diskimg_node *n = tf_open("vhdx", img, DISKIMG_OPEN_RDWR, NULL);
    node_write(n, 7 * MiB + 3, 9 * MiB, 11);
    node_write(n, 33 * MiB, 512, 12);
    diskimg_close(n);
    n = tf_open("vhdx", img, 0, NULL);
    uint8_t *buf = g_malloc(33 * MiB + 512);
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pread(n, buf, 33 * MiB + 512, 0, &err), ==, 0);
    g_assert_true(g_file_set_contents(raw, (char *)buf, 33 * MiB + 512, &err));
    diskimg_close(n);
    g_free(buf);

    const char *check[] = { "qemu-img", "check", "-f", "vhdx", img, NULL };
    g_assert_cmpint(tf_run(NULL, check), ==, 0);
    const char *cmp[] = { "qemu-img", "compare", "-f", "vhdx", "-F", "raw", img, raw, NULL };
    g_assert_cmpint(tf_run(NULL, cmp), ==, 0);
    /* libyal's reader (libvhdi-utils) agrees on the size. */
    char *out = NULL;
    const char *info[] = { "vhdiinfo", img, NULL };
    if (tf_run(&out, info) == 0 && out) {
        g_assert_nonnull(strstr(out, "34603520 bytes"));
    } else if (g_test_verbose()) {
        g_printerr("  vhdiinfo (libvhdi-utils) not installed: size cross-check skipped\n");
    }
    g_free(out);
}

static void node_fill(diskimg_node *n, uint64_t off, uint64_t len, uint8_t byte)
{
    uint8_t *buf = g_malloc(len);
    GError *err = NULL;

    memset(buf, byte, len);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_free(buf);
}

/* Past the first chunk (4096 blocks of 1 MiB with 512-byte sectors) the
 * BAT has a sector-bitmap entry between payload entries: data written
 * across that boundary must be where qemu looks for it, and the other
 * way round. */
static void test_chunk_boundary(void)
{
    g_autofree char *img = fresh("chunk.vhdx", 5 * GiB, "block_size=1M");
    uint64_t at = 4 * GiB - 512 * KiB;
    diskimg_node *n = tf_open("vhdx", img, DISKIMG_OPEN_RDWR, NULL);
    struct vhdx_state *s = diskimg_node_handle(n);

    g_assert_cmpuint(s->bat_entries, ==, 5120 + 1);
    node_fill(n, at, MiB, 0x5c);
    g_assert_cmpuint(s->bat[4095] & VHDX_BAT_STATE_MASK, ==, VHDX_BLOCK_FULLY_PRESENT);
    g_assert_cmpuint(s->bat[4096], ==, 0);              /* the sector bitmap entry */
    g_assert_cmpuint(s->bat[4097] & VHDX_BAT_STATE_MASK, ==, VHDX_BLOCK_FULLY_PRESENT);
    diskimg_close(n);
    if (!tf_need("qemu-io"))
        return;
    g_autofree char *rd = g_strdup_printf("read -P 0x5c %" PRIu64 " 1M", at);
    const char *check[] = { "qemu-io", "-f", "vhdx", "-c", rd, img, NULL };
    g_assert_cmpint(tf_run(NULL, check), ==, 0);
    g_autofree char *wr = g_strdup_printf("write -P 0xc5 %" PRIu64 " 64k", 4 * GiB + 3 * MiB);
    const char *write[] = { "qemu-io", "-f", "vhdx", "-c", wr, img, NULL };
    g_assert_cmpint(tf_run(NULL, write), ==, 0);
    n = tf_open("vhdx", img, 0, NULL);
    uint8_t *got = g_malloc(64 * KiB), *want = g_malloc(64 * KiB);
    GError *err = NULL;
    memset(want, 0xc5, 64 * KiB);
    g_assert_cmpint(diskimg_node_pread(n, got, 64 * KiB, 4 * GiB + 3 * MiB, &err), ==, 0);
    g_assert_true(memcmp(got, want, 64 * KiB) == 0);
    memset(want, 0x5c, 64 * KiB);
    g_assert_cmpint(diskimg_node_pread(n, got, 64 * KiB, at + MiB - 64 * KiB, &err), ==, 0);
    g_assert_true(memcmp(got, want, 64 * KiB) == 0);
    diskimg_close(n);
    g_free(got);
    g_free(want);
}

/* 4096-byte logical sectors (Hyper-V makes them; qemu cannot): the chunk
 * ratio grows eightfold, and reads and writes work as with 512. */
static void test_4k_sectors(void)
{
    g_autofree char *img = fresh("4k.vhdx", 16 * MiB, "block_size=1M");
    tf_patch_le32(img, ITEMS_AT + 32, 4096);
    tf_patch_le32(img, ITEMS_AT + 36, 4096);
    diskimg_node *n = tf_open("vhdx", img, DISKIMG_OPEN_RDWR, NULL);
    struct vhdx_state *s = diskimg_node_handle(n);
    g_assert_cmpuint(s->chunk_ratio, ==, 32768);
    node_write(n, 3 * MiB - 4096, 8192, 31);
    diskimg_close(n);
    n = tf_open("vhdx", img, 0, NULL);
    node_expect(n, 3 * MiB - 4096, 8192, 31);
    node_expect(n, 0, 4096, -1);
    diskimg_close(n);
    /* A size that is not a multiple of the 4 KiB sector is refused. */
    g_autofree char *odd = fresh("4k-odd.vhdx", 16 * MiB + 512, "block_size=1M");
    tf_patch_le32(odd, ITEMS_AT + 32, 4096);
    expect_open_error(odd, 0, DISKIMG_ERROR_CORRUPT, "virtual_disk_size");
}

/* An empty disk: qemu 7.2 computes its BAT size with a 32-bit wrap and
 * opens only images whose BAT region is that large. */
static void test_qemu_reads_empty(void)
{
    g_autofree char *img = fresh("empty.vhdx", 0, NULL);
    diskimg_node *n = tf_open("vhdx", img, 0, NULL);
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_size(n, &err), ==, 0);
    g_assert_cmpuint(((struct vhdx_state *)diskimg_node_handle(n))->bat_region.length, ==,
                     64 * MiB);
    diskimg_close(n);
    if (!tf_need("qemu-img"))
        return;
    const char *check[] = { "qemu-img", "check", "-f", "vhdx", img, NULL };
    g_assert_cmpint(tf_run(NULL, check), ==, 0);
}

/* qemu replays a log we left dirty: our log entries are what qemu writes. */
static void test_qemu_replays_ours(void)
{
    g_autofree char *p = fresh("qdirty.vhdx", 16 * MiB, NULL);
    g_autofree char *raw = test_tmp_path("qdirty.raw");

    if (!tf_need("qemu-img"))
        return;
    make_dirty_log(p, 21);
    const char *ro[] = { "qemu-img", "info", "-f", "vhdx", p, NULL };
    g_assert_cmpint(tf_run(NULL, ro), !=, 0);
    const char *fix[] = { "qemu-img", "check", "-r", "all", "-f", "vhdx", p, NULL };
    g_assert_cmpint(tf_run(NULL, fix), ==, 0);
    uint8_t *buf = g_malloc0(16 * MiB);
    tf_pattern(buf, 8 * MiB, 0, 21);
    GError *err = NULL;
    g_assert_true(g_file_set_contents(raw, (char *)buf, 16 * MiB, &err));
    const char *cmp[] = { "qemu-img", "compare", "-f", "vhdx", "-F", "raw", p, raw, NULL };
    g_assert_cmpint(tf_run(NULL, cmp), ==, 0);
    g_free(buf);
}

/* ---------------------------------------------------------------- measure */

/* measure, then convert: a dynamic image needs exactly what measure says
 * required (blocks are appended whole after the metadata), one whose
 * source fills every block is fully allocated, and a fixed image always
 * is.  --size gives the empty image's file size. */
static void test_measure(void)
{
    g_autofree char *sparse = test_tmp_path("measure-sparse.raw");
    g_autofree char *full = test_tmp_path("measure-full.raw");
    g_autofree char *out = test_tmp_path("measure.vhdx");
    const char *dynamic[] = { "subformat=dynamic", "subformat=dynamic,block_size=1M" };
    struct tf_measured m;

    tf_write_sparse_raw(sparse, 48 * MiB, 17);    /* data in blocks 0, 2 and 4 of 8 MiB */
    tf_write_sparse_raw(full, 48 * MiB, 1);
    for (size_t i = 0; i < G_N_ELEMENTS(dynamic); i++) {
        tf_measure_and_convert("vhdx", dynamic[i], sparse, out, &m);
        g_assert_cmpuint(m.required, ==, m.file_size);
        g_assert_cmpuint(m.required, >=, m.allocated);
        g_assert_cmpuint(m.required, <, m.fully_allocated);
        unlink(out);
        tf_measure_and_convert("vhdx", dynamic[i], full, out, &m);
        g_assert_cmpuint(m.file_size, ==, m.fully_allocated);
        g_assert_cmpuint(m.required, ==, m.fully_allocated);
        unlink(out);
    }
    tf_measure_and_convert("vhdx", "subformat=fixed", sparse, out, &m);
    g_assert_cmpuint(m.required, ==, m.fully_allocated);
    g_assert_cmpuint(m.file_size, ==, m.fully_allocated);
    unlink(out);

    diskimg_options *o = tf_options("vhdx", "create-options", "log_size=2M");
    struct diskimg_measure_args a = { .struct_size = sizeof(a), .options = o,
                                      .size = 100ull << 30 };
    struct diskimg_measure_result r = { .struct_size = sizeof(r) };
    GError *err = NULL;
    g_assert_cmpint(diskimg_measure("vhdx", &a, &r, &err), ==, 0);
    tf_create("vhdx", out, 100ull << 30, "log_size=2M");
    g_assert_cmpuint(r.required, ==, tf_file_size(out));
    diskimg_options_free(o);
}

/* What we write, vhdimount (libvhdi, an independent reader) exports byte
 * for byte as the source. */
static void test_libyal_content(void)
{
    g_autofree char *src = test_tmp_path("libyal.raw");
    const char *subformats[] = { "subformat=dynamic", "subformat=fixed",
                                 "subformat=dynamic,block_size=1M" };

    tf_write_sparse_raw(src, 24 * MiB + 512, 3);
    for (size_t i = 0; i < G_N_ELEMENTS(subformats); i++) {
        g_autofree char *img = test_tmp_path("libyal.vhdx");
        struct tf_measured m;
        tf_measure_and_convert("vhdx", subformats[i], src, img, &m);
        tf_libyal_same_bytes("vhdimount", img, "vhdi1", src);
        unlink(img);
    }
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "vhdx", "DISKIMG_VHDX_TEST_TMPDIR");
    schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "vhdx");

    g_test_add_func("/vhdx/geometry", test_geometry);
    g_test_add_func("/vhdx/guid", test_guid);
    g_test_add_func("/vhdx/header-codec", test_header_codec);
    for (size_t i = 0; i < G_N_ELEMENTS(layouts); i++) {
        g_autofree char *name = g_strdup_printf("/vhdx/round-trip/%s", layouts[i].name);
        g_test_add_data_func(name, &layouts[i], test_round_trip);
    }
    g_test_add_func("/vhdx/convert-round-trip", test_convert_round_trip);
    g_test_add_func("/vhdx/write-zeroes", test_write_zeroes);
    g_test_add_func("/vhdx/header-updates", test_header_updates);
    g_test_add_func("/vhdx/info-probe", test_info_and_probe);
    g_test_add_func("/vhdx/create-options", test_create_options);
    g_test_add_func("/vhdx/corrupt", test_corrupt);
    g_test_add_func("/vhdx/check", test_check);
    g_test_add_func("/vhdx/region-repair", test_region_repair);
    g_test_add_func("/vhdx/log-replay", test_log_replay);
    g_test_add_func("/vhdx/log-invalid", test_log_invalid);
    g_test_add_func("/vhdx/crash-before-flush", test_crash_before_flush);
    g_test_add_func("/vhdx/no-log", test_no_log);
    g_test_add_data_func("/vhdx/qemu-made/dynamic", "subformat=dynamic", test_qemu_made);
    g_test_add_data_func("/vhdx/qemu-made/fixed", "subformat=fixed", test_qemu_made);
    g_test_add_data_func("/vhdx/qemu-made/block-1M", "block_size=1M", test_qemu_made);
    g_test_add_data_func("/vhdx/qemu-made/no-zero", "block_state_zero=off", test_qemu_made);
    g_test_add_data_func("/vhdx/qemu-reads-ours/dynamic", "subformat=dynamic",
                         test_qemu_reads_ours);
    g_test_add_data_func("/vhdx/qemu-reads-ours/fixed", "subformat=fixed",
                         test_qemu_reads_ours);
    g_test_add_data_func("/vhdx/qemu-reads-ours/block-1M", "block_size=1M",
                         test_qemu_reads_ours);
    g_test_add_func("/vhdx/qemu-reads-ours/empty", test_qemu_reads_empty);
    g_test_add_func("/vhdx/chunk-boundary", test_chunk_boundary);
    g_test_add_func("/vhdx/4k-sectors", test_4k_sectors);
    g_test_add_func("/vhdx/qemu-replays-ours", test_qemu_replays_ours);

    g_test_add_func("/vhdx/measure", test_measure);
    g_test_add_func("/vhdx/interop/vhdimount-content", test_libyal_content);

    return tf_run_tests();
}
