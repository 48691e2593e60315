/* SPDX-License-Identifier: MIT */
/*
 * test-raw.c — unit tests of the raw format plugin.  Images are created
 * and opened through libdiskimg with this build's posix and raw modules
 * (DISKIMG_PLUGIN_PATH is set by meson); raw's ops are then also called
 * directly on the file node, to check its own answers and messages.
 *
 * Expected layouts are what qemu-img 7.2 produces (qemu-img create -f raw
 * + qemu-img map --output=json), recorded here as data.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/core.h>


static const struct diskimg_format_ops *raw;
static const diskimg_schema *schema;
#include "test-format.h"
#define tmpdir test_tmpdir

/* ---------------------------------------------------------------- helpers */

#define tmp_path test_tmp_path

static void create_raw(const char *path, uint64_t size, const char *prealloc)
{
    diskimg_options *o = diskimg_options_new(schema, "create-options");
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = "raw", .options = o, .size = size,
    };
    GError *err = NULL;

    if (prealloc) {
        g_assert_cmpint(diskimg_options_set(o, "preallocation", prealloc, &err), ==, 0);
        g_assert_no_error(err);
    }
    g_assert_cmpint(diskimg_create(path, &p, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_options_free(o);
}

static diskimg_node *open_raw(const char *path, unsigned flags)
{
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = "raw", .flags = flags,
    };
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);

    g_assert_no_error(err);
    g_assert_nonnull(n);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "raw");
    return n;
}

/* A raw handle on the file node of `n`, opened by calling raw's op
 * directly with the given open options ("offset=..,size=.." or NULL). */
static void *raw_handle(diskimg_node *n, const char *opts, GError **errp)
{
    diskimg_options *o = diskimg_options_new(schema, "open-options");
    struct diskimg_format_open_args args = {
        .struct_size = sizeof(args),
        .file = diskimg_node_file(n),
        .filename = diskimg_node_filename(n),
        .flags = diskimg_node_is_writable(n) ? DISKIMG_OPEN_RDWR : 0,
        .options = o,
    };
    GError *err = NULL;
    void *h;

    if (opts) {
        g_assert_cmpint(diskimg_options_parse(o, opts, &err), ==, 0);
        g_assert_no_error(err);
    }
    h = raw->open(&args, errp);
    diskimg_options_free(o);
    return h;
}

static struct diskimg_extent status(void *h, uint64_t off, uint64_t len)
{
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;

    g_assert_cmpint(raw->block_status(h, off, len, &ext, &err), ==, 0);
    g_assert_no_error(err);
    return ext;
}

/* One run of qemu-img map: [start, start+length) is data or zero. */
struct map_run {
    uint64_t start, length;
    bool data;
};

/* Walks the whole image like qemu-img map and compares with `expect`. */
static void assert_map(diskimg_node *n, const struct map_run *expect, size_t count)
{
    void *h = diskimg_node_handle(n);
    GError *err = NULL;
    int64_t size = diskimg_node_size(n, &err);
    uint64_t off = 0;
    size_t i = 0;

    g_assert_no_error(err);
    while (off < (uint64_t)size) {
        struct diskimg_extent ext = status(h, off, (uint64_t)size - off);
        bool data = ext.flags & DISKIMG_BS_DATA;

        g_assert_true(ext.flags & DISKIMG_BS_ALLOCATED);
        g_assert_true(ext.flags & DISKIMG_BS_OFFSET_VALID);
        g_assert_cmpuint(ext.offset, ==, off);
        g_assert_true(ext.file == diskimg_node_file(n));
        g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==,
                        data ? DISKIMG_BS_DATA : DISKIMG_BS_ZERO);
        /* Merge runs of the same kind, as qemu-img map does. */
        g_assert_cmpuint(i, <, count);
        g_assert_cmpuint(off, >=, expect[i].start);
        g_assert_cmpint(data, ==, expect[i].data);
        off += ext.length;
        g_assert_cmpuint(off, <=, expect[i].start + expect[i].length);
        if (off == expect[i].start + expect[i].length)
            i++;
    }
    g_assert_cmpuint(i, ==, count);
}

static uint64_t file_blocks_of(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (uint64_t)st.st_blocks * 512;
}

/* ------------------------------------------------------------------ tests */

static void test_descriptor(gconstpointer module_path)
{
    const struct diskimg_plugin *p = diskimg_plugin_descriptor(DISKIMG_KIND_FORMAT, "raw");
    char **keys;

    g_assert_nonnull(p);
    if (module_path) {
        char *want = realpath(module_path, NULL), *have;

        have = realpath(diskimg_plugin_path(DISKIMG_KIND_FORMAT, "raw"), NULL);
        g_assert_cmpstr(have, ==, want);     /* this build's module was loaded */
        free(want);
        free(have);
    }
    g_assert_cmpuint(p->kind, ==, DISKIMG_KIND_FORMAT);
    g_assert_cmpuint(p->thread_model, ==, DISKIMG_THREAD_PARALLEL);
    g_assert_cmphex(p->capabilities & DISKIMG_CAP_ZERO_INIT, ==, DISKIMG_CAP_ZERO_INIT);
    g_assert_cmphex(p->capabilities & DISKIMG_CAP_READ_ONLY, ==, 0);
    g_assert_true(diskimg_schema_flag(schema, "probe-fallback"));
    g_assert_false(diskimg_schema_has_set(schema, "info"));
    keys = diskimg_schema_set_keys(schema, "create-options");
    g_assert_cmpuint(g_strv_length(keys), ==, 2);
    g_assert_cmpstr(keys[0], ==, "size");
    g_assert_cmpstr(keys[1], ==, "preallocation");
    g_strfreev(keys);
    keys = diskimg_schema_set_keys(schema, "open-options");
    g_assert_cmpuint(g_strv_length(keys), ==, 2);
    g_assert_cmpstr(keys[0], ==, "offset");
    g_assert_cmpstr(keys[1], ==, "size");
    g_strfreev(keys);
    /* Lowest positive score: raw never outbids a real format. */
    g_assert_cmpint(raw->probe((const uint8_t *)"QFI\xfb", 4, "x.qcow2"), ==, 1);
}

static void test_create_first_block(void)
{
    static const struct {
        uint64_t size, file_size;
        struct map_run map[2];
        size_t runs;
    } cases[] = {
        { 1u << 30, 1u << 30, { { 0, 4096, true }, { 4096, (1u << 30) - 4096, false } }, 2 },
        { 3 * MiB / 2, 3 * MiB / 2, { { 0, 4096, true }, { 4096, 3 * MiB / 2 - 4096, false } },
          2 },
        { 4097, 4608, { { 0, 4096, true }, { 4096, 512, false } }, 2 },
        { 512, 512, { { 0, 512, true } }, 1 },
        { 100, 512, { { 0, 512, true } }, 1 },
        { 0, 0, { { 0 } }, 0 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *name = g_strdup_printf("create-%zu.img", i);
        char *path = tmp_path(name);
        diskimg_node *n;
        GError *err = NULL;

        create_raw(path, cases[i].size, NULL);
        g_assert_cmpuint(tf_file_size(path), ==, cases[i].file_size);
        n = open_raw(path, 0);
        g_assert_cmpint(diskimg_node_size(n, &err), ==, (int64_t)cases[i].file_size);
        assert_map(n, cases[i].map, cases[i].runs);
        diskimg_close(n);
        g_free(path);
        g_free(name);
    }
}

static void test_create_prealloc(void)
{
    char *path = tmp_path("falloc.img");
    diskimg_node *n;
    static const struct map_run falloc_map[] = { { 0, 4096, true }, { 4096, MiB - 4096, false } };
    static const struct map_run full_map[] = { { 0, MiB, true } };

    create_raw(path, MiB, "falloc");
    g_assert_cmpuint(tf_file_size(path), ==, MiB);
    g_assert_cmpuint(file_blocks_of(path), >=, MiB);
    n = open_raw(path, 0);
    assert_map(n, falloc_map, G_N_ELEMENTS(falloc_map));
    diskimg_close(n);

    create_raw(path, MiB, "full");   /* over the old image: truncated first */
    g_assert_cmpuint(file_blocks_of(path), >=, MiB);
    n = open_raw(path, 0);
    assert_map(n, full_map, G_N_ELEMENTS(full_map));
    diskimg_close(n);
    g_free(path);
}

static void test_window(void)
{
    char *path = tmp_path("window.img");
    uint8_t file[1000], buf[1024];
    diskimg_node *n;
    void *h;
    GError *err = NULL;
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };

    tf_pattern(file, sizeof(file), 0, 3);
    tf_write_file(path, file, sizeof(file));
    n = open_raw(path, DISKIMG_OPEN_RDWR);

    h = raw_handle(n, "offset=100,size=512", &err);
    g_assert_no_error(err);
    g_assert_cmpint(raw->get_size(h, &err), ==, 512);
    g_assert_cmpint(raw->read(h, buf, 512, 0, &err), ==, 0);
    g_assert_cmpmem(buf, 512, file + 100, 512);

    /* Writes land at offset+off in the file. */
    g_assert_cmpint(raw->write(h, "ABCD", 4, 508, 0, &err), ==, 0);
    g_assert_no_error(err);
    {
        gchar *contents;
        gsize len;

        g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
        g_assert_cmpuint(len, ==, 1000);
        g_assert_cmpmem(contents + 608, 4, "ABCD", 4);
        g_assert_cmpmem(contents + 612, 388, file + 612, 388);
        g_free(contents);
    }
    /* Nothing leaks out of the window. */
    g_assert_cmpint(raw->write(h, "X", 1, 512, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NO_SPACE);
    g_clear_error(&err);
    g_assert_cmpint(raw->read(h, buf, 2, 511, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_cmpint(raw->read(h, buf, 8, UINT64_MAX - 4, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);

    /* Status is the file's, shifted, defined by this layer. */
    ext = status(h, 0, 512);
    g_assert_cmphex(ext.flags, ==, DISKIMG_BS_DATA | DISKIMG_BS_OFFSET_VALID |
                                   DISKIMG_BS_ALLOCATED);
    g_assert_cmpuint(ext.offset, ==, 100);
    g_assert_cmpuint(ext.length, ==, 512);
    g_assert_true(ext.file == diskimg_node_file(n));

    /* A fixed-size window cannot be resized. */
    g_assert_cmpint(raw->truncate(h, 1024, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_assert_cmpstr(err->message, ==, "Cannot resize fixed-size raw disks");
    g_clear_error(&err);
    raw->close(h);

    /* offset alone: the rest of the file, in whole sectors (qemu: 1 KiB). */
    h = raw_handle(n, "offset=100", &err);
    g_assert_no_error(err);
    g_assert_cmpint(raw->get_size(h, &err), ==, 1024);
    memset(buf, 0xee, sizeof(buf));
    g_assert_cmpint(raw->read(h, buf, 1024, 0, &err), ==, 0);
    g_assert_cmpmem(buf + 600, 300, file + 700, 300);
    for (size_t i = 900; i < 1024; i++)
        g_assert_cmpuint(buf[i], ==, 0);
    ext = status(h, 900, 124);
    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==, DISKIMG_BS_ZERO);
    g_assert_cmpuint(ext.length, ==, 124);
    g_assert_cmpuint(ext.offset, ==, 1000);
    raw->close(h);
    diskimg_close(n);
    g_free(path);
}

static void expect_open_error(diskimg_node *n, const char *opts, const char *message)
{
    GError *err = NULL;

    g_assert_null(raw_handle(n, opts, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, message);
    g_clear_error(&err);
}

static void test_window_errors(void)
{
    char *path = tmp_path("odd.img");
    uint8_t file[1000] = { 1 };
    diskimg_node *n;

    tf_write_file(path, file, sizeof(file));
    n = open_raw(path, 0);
    /* qemu 7.2's texts, the double space included. */
    expect_open_error(n, "offset=2000",
                      "Offset (2000) cannot be greater than size of the containing file (1024)");
    expect_open_error(n, "offset=600,size=512",
                      "The sum of offset (600) and size (512) has to be smaller or equal to "
                      "the  actual size of the containing file (1024)");
    expect_open_error(n, "offset=100,size=1000",
                      "The sum of offset (100) and size (1000) has to be smaller or equal to "
                      "the  actual size of the containing file (1024)");
    expect_open_error(n, "offset=100,size=500", "Specified size is not multiple of 512");
    {
        GError *err = NULL;
        void *h = raw_handle(n, "offset=1024,size=0", &err);

        g_assert_no_error(err);
        g_assert_cmpint(raw->get_size(h, &err), ==, 0);
        raw->close(h);
    }
    diskimg_close(n);
    g_free(path);
}

static void test_odd_size_file(void)
{
    char *path = tmp_path("odd2.img");
    uint8_t file[1000], buf[1024];
    static const struct map_run map[] = { { 0, 1000, true }, { 1000, 24, false } };
    diskimg_node *n;
    GError *err = NULL;

    tf_pattern(file, sizeof(file), 0, 9);
    tf_write_file(path, file, sizeof(file));
    n = open_raw(path, DISKIMG_OPEN_RDWR);
    g_assert_cmpint(diskimg_node_size(n, &err), ==, 1024);
    assert_map(n, map, G_N_ELEMENTS(map));
    memset(buf, 0xee, sizeof(buf));
    g_assert_cmpint(diskimg_node_pread(n, buf, 1024, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpmem(buf, 1000, file, 1000);
    for (size_t i = 1000; i < 1024; i++)
        g_assert_cmpuint(buf[i], ==, 0);
    /* Zeroing the tail past EOF does not need to touch the file... */
    g_assert_cmpint(diskimg_node_write_zeroes(n, 1000, 24, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(tf_file_size(path), ==, 1000);
    /* ...but writing data there grows it. */
    g_assert_cmpint(diskimg_node_pwrite(n, "WXYZ", 4, 1020, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(tf_file_size(path), ==, 1024);
    diskimg_close(n);
    g_free(path);
}

static void test_passthrough(void)
{
    char *path = tmp_path("pass.img");
    uint8_t *data = g_malloc(MiB), *back = g_malloc(MiB);
    diskimg_node *n;
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;

    create_raw(path, 4 * MiB, NULL);
    n = open_raw(path, DISKIMG_OPEN_RDWR);
    tf_pattern(data, MiB, 0, 4);
    g_assert_cmpint(diskimg_node_pwrite(n, data, MiB, MiB, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_pread(n, back, MiB, MiB, &err), ==, 0);
    g_assert_cmpmem(back, MiB, data, MiB);
    ext = status(diskimg_node_handle(n), MiB, 3 * MiB);
    g_assert_cmphex(ext.flags & DISKIMG_BS_DATA, ==, DISKIMG_BS_DATA);
    g_assert_cmpuint(ext.length, ==, MiB);

    /* Discard and zeroing reach the file. */
    g_assert_cmpint(diskimg_node_discard(n, MiB, 256 * KiB, &err), ==, 0);
    g_assert_no_error(err);
    ext = status(diskimg_node_handle(n), MiB, 3 * MiB);
    g_assert_cmphex(ext.flags & DISKIMG_BS_ZERO, ==, DISKIMG_BS_ZERO);
    g_assert_cmpuint(ext.length, ==, 256 * KiB);
    g_assert_cmpint(diskimg_node_write_zeroes(n, MiB + 512 * KiB, 512 * KiB,
                                              DISKIMG_WRITE_MAY_UNMAP, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_pread(n, back, MiB, MiB, &err), ==, 0);
    for (size_t i = 0; i < MiB; i++) {
        bool zero = i < 256 * KiB || i >= 512 * KiB;

        if (back[i] != (zero ? 0 : data[i]))
            g_error("byte %zu of the second MiB is wrong", i);
    }
    g_assert_cmpint(diskimg_node_flush(n, &err), ==, 0);
    g_assert_no_error(err);

    /* Resizing: shrinking needs the flag, growing goes to the file. */
    g_assert_cmpint(diskimg_node_truncate(n, MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_truncate(n, 8 * MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(tf_file_size(path), ==, 8 * MiB);
    g_assert_cmpint(diskimg_node_size(n, &err), ==, 8 * MiB);
    g_assert_cmpint(diskimg_node_truncate(n, 2 * MiB, DISKIMG_PREALLOC_OFF,
                                          DISKIMG_TRUNCATE_SHRINK, &err), ==, 0);
    g_assert_cmpuint(tf_file_size(path), ==, 2 * MiB);
    diskimg_close(n);
    g_free(data);
    g_free(back);
    g_free(path);
}

/* Writes buf at off and says whether the guard let it through. */
static bool write_allowed(diskimg_node *n, const void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;
    int ret = diskimg_node_pwrite(n, buf, len, off, 0, &err);

    if (ret == 0)
        return true;
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_assert_nonnull(strstr(err->message, "Operation not permitted"));
    g_assert_nonnull(strstr(err->message, "qcow2"));
    g_error_free(err);
    return false;
}

/*
 * An image whose format was probed (qemu's bs->probed) refuses writes that
 * would make probing find another format there next time: a qcow2 magic in
 * one piece, or completed by a write of its second half, but not elsewhere,
 * not harmless data, and not when the format was given.  What is refused
 * never reaches the file.
 */
static void test_probed_guard(void)
{
    static const uint8_t magic[8] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
    char *path = tmp_path("probed.img");
    uint8_t data[4096], back[4096];
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .flags = DISKIMG_OPEN_RDWR,
    };
    diskimg_node *n;
    GError *err = NULL;

    create_raw(path, MiB, NULL);
    n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    g_assert_true(diskimg_node_was_probed(n));

    memset(data, 0, sizeof(data));
    memcpy(data, magic, sizeof(magic));
    g_assert_false(write_allowed(n, data, sizeof(data), 0));
    g_assert_false(write_allowed(n, data, 512, 0));
    g_assert_cmpint(diskimg_node_pread(n, back, sizeof(back), 0, &err), ==, 0);
    g_assert_true(diskimg_is_zero(back, sizeof(back)));

    /* The first half alone is harmless; the second completes the magic. */
    g_assert_true(write_allowed(n, magic, 4, 0));
    g_assert_false(write_allowed(n, magic + 4, 4, 4));
    g_assert_true(write_allowed(n, "RAWDATA!", 8, 0));
    g_assert_true(write_allowed(n, data, sizeof(data), 2048));
    g_assert_cmpint(diskimg_node_write_zeroes(n, 0, 4096, 0, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);

    /* With the format named there is nothing to guard. */
    n = open_raw(path, DISKIMG_OPEN_RDWR);
    g_assert_false(diskimg_node_was_probed(n));
    g_assert_true(write_allowed(n, data, sizeof(data), 0));
    g_assert_cmpint(diskimg_node_write_zeroes(n, 0, 4096, 0, &err), ==, 0);
    diskimg_close(n);

    /* ...unless the caller reopens a probed image as such (commit). */
    p.format = "raw";
    p.flags |= DISKIMG_OPEN_PROBED;
    n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    g_assert_true(diskimg_node_was_probed(n));
    g_assert_false(write_allowed(n, data, sizeof(data), 0));
    diskimg_close(n);
    g_free(path);
}

static void test_truncate_with_offset(void)
{
    char *path = tmp_path("trunc-offset.img");
    uint8_t file[4096] = { 0 };
    diskimg_node *n;
    GError *err = NULL;
    void *h;

    tf_write_file(path, file, sizeof(file));
    n = open_raw(path, DISKIMG_OPEN_RDWR);
    h = raw_handle(n, "offset=1024", &err);
    g_assert_no_error(err);
    g_assert_cmpint(raw->truncate(h, MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(tf_file_size(path), ==, MiB + 1024);
    g_assert_cmpint(raw->get_size(h, &err), ==, MiB);
    g_assert_cmpint(raw->truncate(h, UINT64_MAX / 2, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Disk size too large for the chosen offset");
    g_clear_error(&err);
    raw->close(h);
    diskimg_close(n);
    g_free(path);
}

static void test_measure(void)
{
    char *path = tmp_path("measure.img");
    struct diskimg_measure_args args = { .struct_size = sizeof(args), .size = 100 };
    struct diskimg_measure_result res = { .struct_size = sizeof(res) };
    diskimg_node *n;
    GError *err = NULL;

    /* qemu-img measure -O raw --size 100: 512 and 512. */
    g_assert_cmpint(raw->measure(&args, &res, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(res.required, ==, 512);
    g_assert_cmpuint(res.fully_allocated, ==, 512);
    g_assert_false(res.has_bitmaps);

    /* From a sparse 10 MiB image: every sector counts (qemu: 10485760). */
    create_raw(path, 10 * MiB, NULL);
    n = open_raw(path, 0);
    args.source = n;
    args.size = 10 * MiB;
    g_assert_cmpint(raw->measure(&args, &res, &err), ==, 0);
    g_assert_cmpuint(res.required, ==, 10 * MiB);
    g_assert_cmpuint(res.fully_allocated, ==, 10 * MiB);
    diskimg_close(n);
    g_free(path);
}

static void test_info(void)
{
    char *path = tmp_path("info.img");
    struct diskimg_image_info info = { .struct_size = sizeof(info), .cluster_size = 77 };
    diskimg_node *n;
    GError *err = NULL;

    create_raw(path, MiB, NULL);
    n = open_raw(path, 0);
    g_assert_cmpint(raw->info(diskimg_node_handle(n), &info, NULL, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(info.cluster_size, ==, 0);
    diskimg_close(n);
    g_free(path);
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "raw", NULL);
    raw = diskimg_plugin_descriptor(DISKIMG_KIND_FORMAT, "raw")->ops;
    schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "raw");

    g_test_add_data_func("/raw/descriptor", argc > 1 ? argv[1] : NULL, test_descriptor);
    g_test_add_func("/raw/create-first-block", test_create_first_block);
    g_test_add_func("/raw/create-prealloc", test_create_prealloc);
    g_test_add_func("/raw/window", test_window);
    g_test_add_func("/raw/window-errors", test_window_errors);
    g_test_add_func("/raw/odd-size-file", test_odd_size_file);
    g_test_add_func("/raw/passthrough", test_passthrough);
    g_test_add_func("/raw/truncate-offset", test_truncate_with_offset);
    g_test_add_func("/raw/probed-guard", test_probed_guard);
    g_test_add_func("/raw/measure", test_measure);
    g_test_add_func("/raw/info", test_info);

    return tf_run_tests();
}
