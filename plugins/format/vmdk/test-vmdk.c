/* SPDX-License-Identifier: MIT */
/*
 * test-vmdk.c — unit tests of the vmdk plugin.
 *
 * The descriptor parser is tested directly; images are created, written
 * and read through libdiskimg with this build's posix, raw and vmdk
 * modules (DISKIMG_PLUGIN_PATH is set by meson).  Where qemu-img / qemu-io
 * and libyal's vmdkinfo are installed, images go both ways between them
 * and us; those tests skip cleanly without the tools.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/core.h>
#include <json-glib/json-glib.h>

#include "vmdk.h"

#include "test-format.h"

#define GRAIN (64 * KiB)

static const diskimg_schema *schema;

/* ---------------------------------------------------------------- helpers */

/* The open error of a damaged image: asserts it fails, names the file
 * and contains `needle`. */
static void assert_open_fails(const char *path, const char *needle)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open("vmdk", path, 0, NULL, &err);
    g_assert_null(n);
    tf_assert_message_path(err, path, needle, NULL);
    g_error_free(err);
}

/* ------------------------------------------------------------- descriptor */

static const char sample_desc[] =
    "# Disk DescriptorFile\r\n"
    "version=1\r\n"
    "CID=fffffffe\n"
    "parentCID=ffffffff\n"
    "createType=\"twoGbMaxExtentFlat\"\n"
    "\n"
    "# Extent description\n"
    "RW 4194304 FLAT \"a b-f001.vmdk\" 0\n"
    "RDONLY 2048 SPARSE \"x.vmdk\"\n"
    "  RW 100 ZERO\n"
    "\n"
    "ddb.adapterType = \"lsilogic\" # a comment\n"
    "ddb.uuid = \"60 00 C2 9d\"\n";

static void test_desc_parse(void)
{
    struct vmdk_desc *d = NULL;
    GError *err = NULL;
    g_assert_cmpint(vmdk_desc_parse(sample_desc, sizeof(sample_desc) - 1, "s.vmdk", &d, &err),
                    ==, 0);
    g_assert_no_error(err);
    g_assert_cmpstr(vmdk_desc_get(d, "version"), ==, "1");
    g_assert_cmpstr(vmdk_desc_get(d, "createType"), ==, "twoGbMaxExtentFlat");
    g_assert_cmpstr(vmdk_desc_get(d, "ddb.adapterType"), ==, "lsilogic");
    g_assert_cmpstr(vmdk_desc_get(d, "ddb.uuid"), ==, "60 00 C2 9d");
    g_assert_null(vmdk_desc_get(d, "parentFileNameHint"));
    uint32_t cid = 0;
    g_assert_true(vmdk_parse_cid(vmdk_desc_get(d, "CID"), &cid));
    g_assert_cmphex(cid, ==, 0xfffffffe);
    g_assert_false(vmdk_parse_cid("12345678a", &cid));
    g_assert_false(vmdk_parse_cid("xyz", &cid));
    g_assert_cmpuint(d->extents->len, ==, 3);
    struct vmdk_desc_extent *x = &g_array_index(d->extents, struct vmdk_desc_extent, 0);
    g_assert_cmpstr(x->access, ==, "RW");
    g_assert_cmpuint(x->sectors, ==, 4194304);
    g_assert_cmpstr(x->type, ==, "FLAT");
    g_assert_cmpstr(x->file, ==, "a b-f001.vmdk");
    g_assert_true(x->has_offset);
    x = &g_array_index(d->extents, struct vmdk_desc_extent, 1);
    g_assert_cmpstr(x->access, ==, "RDONLY");
    g_assert_false(x->has_offset);
    x = &g_array_index(d->extents, struct vmdk_desc_extent, 2);
    g_assert_cmpstr(x->type, ==, "ZERO");
    g_assert_null(x->file);
    vmdk_desc_free(d);
}

static void test_desc_edit(void)
{
    struct vmdk_desc *d = NULL;
    g_assert_cmpint(vmdk_desc_parse(sample_desc, sizeof(sample_desc) - 1, "s.vmdk", &d, NULL),
                    ==, 0);
    vmdk_desc_set(d, "CID", "1234abcd", false, NULL);
    vmdk_desc_set(d, "parentFileNameHint", "base.vmdk", true, "parentCID");
    g_autofree char *text = vmdk_desc_format(d);
    g_assert_nonnull(strstr(text, "\nCID=1234abcd\nparentCID=ffffffff\n"
                                  "parentFileNameHint=\"base.vmdk\"\ncreateType="));
    /* Everything else is kept as it was (without the CRs). */
    g_assert_nonnull(strstr(text, "ddb.adapterType = \"lsilogic\" # a comment\n"));
    g_assert_nonnull(strstr(text, "RW 4194304 FLAT \"a b-f001.vmdk\" 0\n"));
    vmdk_desc_remove(d, "parentFileNameHint");
    g_autofree char *again = vmdk_desc_format(d);
    g_assert_null(strstr(again, "parentFileNameHint"));
    vmdk_desc_free(d);
}

static void expect_desc_error(const char *text, size_t len, const char *needle)
{
    struct vmdk_desc *d = NULL;
    GError *err = NULL;
    g_assert_cmpint(vmdk_desc_parse(text, len, "bad.vmdk", &d, &err), ==, -1);
    g_assert_null(d);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "bad.vmdk"));
    g_assert_nonnull(strstr(err->message, needle));
    g_error_free(err);
}

static void test_desc_errors(void)
{
    static const char *const bad_extents[] = {
        "RW abc SPARSE \"x.vmdk\"\n",
        "RW 100 SPARSE x.vmdk\n",
        "RW 100 SPARSE \"x.vmdk\n",
        "RW 100 FLAT \"x.vmdk\" 12x\n",
        "RW 100 FLAT \"x.vmdk\" 0 junk\n",
        "RW 100\n",
        "RW 99999999999999999999999 SPARSE \"x.vmdk\"\n",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad_extents); i++) {
        g_autofree char *t = g_strconcat("version=1\n", bad_extents[i], NULL);
        expect_desc_error(t, strlen(t), "invalid extent line 2");
    }
    GString *longline = g_string_new("version=1\n# ");
    for (int i = 0; i < 5000; i++)
        g_string_append_c(longline, 'x');
    expect_desc_error(longline->str, longline->len, "line 2 is longer than 4096 bytes");
    g_string_free(longline, TRUE);
    GString *many = g_string_new("version=1\n");
    for (unsigned i = 0; i <= VMDK_MAX_EXTENTS; i++)
        g_string_append(many, "RW 1 FLAT \"f\" 0\n");
    expect_desc_error(many->str, many->len, "more than 1024 extents");
    g_string_free(many, TRUE);
    g_autofree char *huge = g_malloc(VMDK_DESC_MAX + 2);
    memset(huge, '\n', VMDK_DESC_MAX + 1);
    expect_desc_error(huge, VMDK_DESC_MAX + 1, "larger than");
}

/* ------------------------------------------------------------- round trips */

static const char *const subformats[] = {
    "monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat",
    "streamOptimized",
};

/* Ranges written by the round trips: whole grains (a stream image takes
 * nothing else), one of them in the second 2 GiB extent of split images. */
static const struct { uint64_t off, len; } pieces[] = {
    { 0, GRAIN }, { 3 * GRAIN, 2 * GRAIN }, { 40 * MiB, GRAIN },
    { 2048ull * MiB + 8 * GRAIN, GRAIN }, { 2049ull * MiB, 3 * GRAIN },
};
#define RT_SIZE ((uint64_t)2050 * MiB)

static void write_pieces(diskimg_node *n, int fd_raw)
{
    GError *err = NULL;
    uint8_t *buf = g_malloc(3 * GRAIN);
    for (size_t i = 0; i < G_N_ELEMENTS(pieces); i++) {
        tf_pattern(buf, pieces[i].len, 0, (unsigned)i + 1);
        /* an incompressible grain too, for the stored-deflate path */
        if (i == 2)
            for (size_t j = 0; j < pieces[i].len; j++)
                buf[j] = (uint8_t)g_random_int();
        int r = diskimg_node_pwrite(n, buf, pieces[i].len, pieces[i].off, 0, &err);
        if (r < 0)
            g_test_message("piece %zu failed", i);
        g_assert_no_error(err);
        g_assert_cmpint(r, ==, 0);
        if (fd_raw >= 0)
            g_assert_cmpint(pwrite(fd_raw, buf, pieces[i].len, (off_t)pieces[i].off), ==,
                            (ssize_t)pieces[i].len);
    }
    g_free(buf);
}

static void compare_with_raw(diskimg_node *n, const char *raw)
{
    GError *err = NULL;
    int fd = open(raw, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    uint8_t *buf = g_malloc(5 * GRAIN), *want = g_malloc(5 * GRAIN);
    for (size_t i = 0; i < G_N_ELEMENTS(pieces); i++) {
        /* the piece and a grain around it */
        uint64_t off = pieces[i].off >= GRAIN ? pieces[i].off - GRAIN : 0;
        uint64_t n_bytes = pieces[i].len + 2 * GRAIN;
        g_assert_cmpint(diskimg_node_pread(n, buf, n_bytes, off, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpint(pread(fd, want, n_bytes, (off_t)off), ==, (ssize_t)n_bytes);
        g_assert_cmpmem(buf, n_bytes, want, n_bytes);
    }
    close(fd);
    g_free(buf);
    g_free(want);
}

/* Holes stay holes: block status says unallocated for a grain never
 * written (sparse), data for a written one. */
static void check_holes(diskimg_node *n, bool flat)
{
    GError *err = NULL;
    struct diskimg_extent e = { .struct_size = sizeof(e) };
    g_assert_cmpint(diskimg_node_block_status(n, 10 * MiB, GRAIN, &e, &err), ==, 0);
    g_assert_no_error(err);
    if (flat)
        g_assert_true(e.flags & DISKIMG_BS_ZERO);
    else
        g_assert_false(e.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED));
    g_assert_cmpint(diskimg_node_block_status(n, 40 * MiB, GRAIN, &e, &err), ==, 0);
    g_assert_true(e.flags & DISKIMG_BS_DATA);
    g_assert_false(e.flags & DISKIMG_BS_ZERO);
}

static void test_roundtrip(gconstpointer data)
{
    const char *sub = data;
    g_autofree char *name = g_strdup_printf("rt-%s.vmdk", sub);
    g_autofree char *path = test_tmp_path(name);
    g_autofree char *rawname = g_strdup_printf("rt-%s.raw", sub);
    g_autofree char *raw = test_tmp_path(rawname);
    g_autofree char *opts = g_strdup_printf("subformat=%s", sub);
    tf_create("vmdk", path, RT_SIZE, opts);
    int fd = open(raw, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)RT_SIZE), ==, 0);
    diskimg_node *n = tf_open("vmdk", path, DISKIMG_OPEN_RDWR, NULL);
    write_pieces(n, fd);
    close(fd);
    diskimg_close(n);

    n = tf_open("vmdk", path, 0, NULL);
    g_assert_cmpint(diskimg_node_size(n, NULL), ==, (int64_t)RT_SIZE);
    compare_with_raw(n, raw);
    check_holes(n, strstr(sub, "Flat") != NULL);
    diskimg_close(n);

    if (tf_have("qemu-img")) {
        const char *cmp[] = { "qemu-img", "compare", "-q", "-f", "raw", "-F", "vmdk",
                              rawname, name, NULL };
        g_assert_cmpint(tf_run(NULL, cmp), ==, 0);
        const char *check[] = { "qemu-img", "check", "-q", "-f", "vmdk", name, NULL };
        g_assert_cmpint(tf_run(NULL, check), ==, 0);
    }
    if (tf_have("vmdkinfo")) {
        g_autofree char *out = NULL;
        const char *info[] = { "vmdkinfo", name, NULL };
        g_assert_cmpint(tf_run(&out, info), ==, 0);
        g_autofree char *want = g_strdup_printf("(%" PRIu64 " bytes)", RT_SIZE);
        g_assert_nonnull(strstr(out, want));
    }
}

/* Images qemu-io wrote are read as qemu-img reads them. */
static void test_read_qemu(gconstpointer data)
{
    const char *sub = data;
    if (!tf_have("qemu-img") || !tf_have("qemu-io")) {
        g_test_skip("qemu-img/qemu-io not installed");
        return;
    }
    g_autofree char *name = g_strdup_printf("q-%s.vmdk", sub);
    g_autofree char *path = test_tmp_path(name);
    g_autofree char *opt = g_strdup_printf("subformat=%s", sub);
    const char *create[] = { "qemu-img", "create", "-q", "-f", "vmdk", "-o", opt, name,
                             "70M", NULL };
    g_assert_cmpint(tf_run(NULL, create), ==, 0);
    bool stream = !strcmp(sub, "streamOptimized");
    const char *io[] = { "qemu-io", "-f", "vmdk", "-c", "write -P 0xa5 0 64k", "-c",
                         stream ? "write -P 0x5a 1M 64k" : "write -P 0x5a 1000k 3000",
                         "-c", "write -P 0x33 69M 64k", name, NULL };
    g_assert_cmpint(tf_run(NULL, io), ==, 0);
    diskimg_node *n = tf_open("vmdk", path, 0, NULL);
    uint8_t *buf = g_malloc(70 * MiB);
    g_assert_cmpint(diskimg_node_pread(n, buf, 70 * MiB, 0, NULL), ==, 0);
    for (uint64_t i = 0; i < 70 * MiB; i += 511) {
        uint8_t want = 0;
        if (i < GRAIN)
            want = 0xa5;
        else if (stream ? (i >= MiB && i < MiB + GRAIN) : (i >= 1000 * KiB && i < 1000 * KiB + 3000))
            want = 0x5a;
        else if (i >= 69 * MiB && i < 69 * MiB + GRAIN)
            want = 0x33;
        if (buf[i] != want)
            g_error("%s: byte %" PRIu64 " is 0x%02x, qemu wrote 0x%02x", sub, i, buf[i], want);
    }
    g_free(buf);
    diskimg_close(n);
}

/* A written grain of a stream image cannot be written again (qemu refuses
 * the same way); a partial grain is refused too. */
static void test_stream_rules(void)
{
    g_autofree char *path = test_tmp_path("rules.vmdk");
    tf_create("vmdk", path, 4 * MiB, "subformat=streamOptimized");
    diskimg_node *n = tf_open("vmdk", path, DISKIMG_OPEN_RDWR, NULL);
    uint8_t *buf = g_malloc0(GRAIN);
    tf_pattern(buf, GRAIN, 0, 9);
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pwrite(n, buf, GRAIN, GRAIN, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, GRAIN, GRAIN, 0, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "Could not write to allocated cluster"));
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, 512, 2 * GRAIN, 0, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "whole grains"));
    g_clear_error(&err);
    /* The parallel-compression path: compress on "a worker", then store. */
    g_assert_true(diskimg_node_can_compress_parallel(n));
    uint8_t *out = g_malloc(GRAIN);
    int64_t clen = diskimg_node_compress(n, buf, GRAIN, out, GRAIN, &err);
    g_assert_no_error(err);
    g_assert_cmpint(clen, >, 0);
    g_assert_cmpint(diskimg_node_write_precompressed(n, out, (uint64_t)clen, 3 * GRAIN, GRAIN,
                                                     &err), ==, 0);
    g_assert_no_error(err);
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    g_assert_cmpint(diskimg_node_info(n, &info, NULL), ==, 0);
    g_assert_true(info.needs_compressed_writes);
    g_assert_cmpuint(info.cluster_size, ==, GRAIN);
    diskimg_close(n);
    n = tf_open("vmdk", path, 0, NULL);
    uint8_t *back = g_malloc(GRAIN);
    g_assert_cmpint(diskimg_node_pread(n, back, GRAIN, 3 * GRAIN, NULL), ==, 0);
    g_assert_cmpmem(back, GRAIN, buf, GRAIN);
    g_assert_cmpint(diskimg_node_pread(n, back, GRAIN, GRAIN, NULL), ==, 0);
    g_assert_cmpmem(back, GRAIN, buf, GRAIN);
    diskimg_close(n);
    /* Reopened for writing, the stream goes on behind its last grain and
     * still ends in a footer; earlier grains stay readable. */
    n = tf_open("vmdk", path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, GRAIN, 0, 11);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, GRAIN, 6 * GRAIN, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, GRAIN, GRAIN, 0, &err), ==, -1);
    g_clear_error(&err);
    diskimg_close(n);
    n = tf_open("vmdk", path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, back, GRAIN, 6 * GRAIN, NULL), ==, 0);
    g_assert_cmpmem(back, GRAIN, buf, GRAIN);
    tf_pattern(buf, GRAIN, 0, 9);
    g_assert_cmpint(diskimg_node_pread(n, back, GRAIN, 3 * GRAIN, NULL), ==, 0);
    g_assert_cmpmem(back, GRAIN, buf, GRAIN);
    diskimg_close(n);
    if (tf_have("qemu-img")) {
        const char *check[] = { "qemu-img", "check", "-q", "rules.vmdk", NULL };
        g_assert_cmpint(tf_run(NULL, check), ==, 0);
    }
    /* The file ends in footer marker, footer, end-of-stream marker. */
    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpuint(tf_file_le32(path, (uint64_t)st.st_size - 1536 + 12), ==, VMDK_MARKER_FOOTER);
    g_assert_cmpuint(tf_file_le32(path, (uint64_t)st.st_size - 1024), ==, 0x564d444bu);  /* "KDMV" */
    g_assert_cmpuint(tf_file_le32(path, (uint64_t)st.st_size - 512 + 12), ==, VMDK_MARKER_EOS);
    g_free(buf);
    g_free(out);
    g_free(back);
}

static void test_zeroed_grain(void)
{
    g_autofree char *path = test_tmp_path("zg.vmdk");
    tf_create("vmdk", path, 4 * MiB, "zeroed_grain=on");
    g_assert_cmpuint(tf_file_le32(path, 4), ==, 2);   /* version 2 */
    diskimg_node *n = tf_open("vmdk", path, DISKIMG_OPEN_RDWR, NULL);
    uint8_t *buf = g_malloc(2 * GRAIN);
    tf_pattern(buf, 2 * GRAIN, 0, 3);
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pwrite(n, buf, 2 * GRAIN, 0, 0, &err), ==, 0);
    g_assert_cmpint(diskimg_node_write_zeroes(n, GRAIN, GRAIN, DISKIMG_WRITE_NO_FALLBACK, &err),
                    ==, 0);
    g_assert_no_error(err);
    struct diskimg_extent e = { .struct_size = sizeof(e) };
    g_assert_cmpint(diskimg_node_block_status(n, GRAIN, GRAIN, &e, &err), ==, 0);
    g_assert_cmpuint(e.flags & (DISKIMG_BS_ZERO | DISKIMG_BS_DATA), ==, DISKIMG_BS_ZERO);
    g_assert_cmpint(diskimg_node_pread(n, buf, 2 * GRAIN, 0, &err), ==, 0);
    g_assert_true(diskimg_is_zero(buf + GRAIN, GRAIN));
    g_assert_false(diskimg_is_zero(buf, GRAIN));
    diskimg_close(n);
    if (tf_have("qemu-img")) {
        g_autofree char *out = NULL;
        const char *map[] = { "qemu-img", "map", "--output=json", "zg.vmdk", NULL };
        g_assert_cmpint(tf_run(&out, map), ==, 0);
        g_assert_nonnull(strstr(out, "{ \"start\": 65536, \"length\": 65536, \"depth\": 0, "
                                     "\"present\": true, \"zero\": true, \"data\": false}"));
    }
    g_free(buf);
}

static void test_backing(void)
{
    g_autofree char *base = test_tmp_path("base.vmdk");
    g_autofree char *top = test_tmp_path("top.vmdk");
    tf_create("vmdk", base, 4 * MiB, NULL);
    diskimg_node *n = tf_open("vmdk", base, DISKIMG_OPEN_RDWR, NULL);
    uint8_t *buf = g_malloc(GRAIN);
    tf_pattern(buf, GRAIN, 0, 5);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, GRAIN, 0, 0, NULL), ==, 0);
    uint32_t base_cid = ((struct vmdk_image *)diskimg_node_handle(n))->cid;
    diskimg_close(n);
    tf_create("vmdk", top, 4 * MiB, "backing_file=base.vmdk,backing_fmt=vmdk");
    n = tf_open("vmdk", top, DISKIMG_OPEN_RDWR, NULL);
    const struct vmdk_image *img = diskimg_node_handle(n);
    g_assert_cmphex(img->parent_cid, ==, base_cid);
    g_assert_cmpstr(img->parent_hint, ==, "base.vmdk");
    g_assert_nonnull(diskimg_node_backing(n));
    /* a partial write copies the rest of the grain from the base */
    uint8_t patch_bytes[100];
    memset(patch_bytes, 0xee, sizeof(patch_bytes));
    g_assert_cmpint(diskimg_node_pwrite(n, patch_bytes, sizeof(patch_bytes), 1000, 0, NULL),
                    ==, 0);
    diskimg_close(n);
    n = tf_open("vmdk", top, DISKIMG_OPEN_RDWR, NULL);
    uint8_t *back = g_malloc(GRAIN);
    g_assert_cmpint(diskimg_node_pread(n, back, GRAIN, 0, NULL), ==, 0);
    memset(buf + 1000, 0xee, sizeof(patch_bytes));
    g_assert_cmpmem(back, GRAIN, buf, GRAIN);
    diskimg_close(n);
    /* A base written since (its CID changed) is no longer read through. */
    n = tf_open("vmdk", base, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_pwrite(n, buf, 512, 8 * GRAIN, 0, NULL), ==, 0);
    diskimg_close(n);
    n = tf_open("vmdk", top, DISKIMG_OPEN_RDWR, NULL);
    GError *cid_err = NULL;
    g_assert_cmpint(diskimg_node_pread(n, back, 512, 2 * GRAIN, &cid_err), ==, -1);
    g_assert_nonnull(strstr(cid_err->message, "does not match the CID"));
    g_clear_error(&cid_err);
    /* set_backing: removing the parent rewrites the descriptor */
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_set_backing(n, NULL, NULL, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
    n = tf_open("vmdk", top, 0, NULL);
    img = diskimg_node_handle(n);
    g_assert_null(img->parent_hint);
    g_assert_cmphex(img->parent_cid, ==, 0xffffffffu);
    diskimg_close(n);
    g_free(buf);
    g_free(back);
}

/* info opens metadata only: sparse extents' headers are read (as
 * METADATA children, for their cluster size), flat extents are named
 * but not opened. */
static void test_metadata_only(void)
{
    g_autofree char *sp = test_tmp_path("mo-s.vmdk");
    g_autofree char *fl = test_tmp_path("mo-f.vmdk");
    tf_create("vmdk", sp, 3 * 1024ull * MiB, "subformat=twoGbMaxExtentSparse");
    tf_create("vmdk", fl, 3 * 1024ull * MiB, "subformat=twoGbMaxExtentFlat");
    diskimg_node *n = tf_open("vmdk", sp, DISKIMG_OPEN_NO_IO, NULL);
    g_assert_cmpuint(diskimg_node_child_count(n, DISKIMG_CHILD_METADATA), ==, 2);
    g_assert_cmpuint(diskimg_node_child_count(n, DISKIMG_CHILD_EXTENT), ==, 0);
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    g_assert_cmpint(diskimg_node_info(n, &info, NULL), ==, 0);
    g_assert_cmpuint(info.cluster_size, ==, GRAIN);
    diskimg_close(n);
    n = tf_open("vmdk", fl, DISKIMG_OPEN_NO_IO, NULL);
    g_assert_cmpuint(diskimg_node_child_count(n, 0), ==, 0);
    g_assert_cmpint(diskimg_node_size(n, NULL), ==, (int64_t)(3 * 1024ull * MiB));
    JsonObject *o = diskimg_image_info(n, NULL);
    g_assert_nonnull(o);
    JsonObject *spec = json_object_get_object_member(o, "format-specific");
    JsonObject *data = json_object_get_object_member(spec, "data");
    JsonArray *ext = json_object_get_array_member(data, "extents");
    g_assert_cmpuint(json_array_get_length(ext), ==, 2);
    JsonObject *e1 = json_array_get_object_element(ext, 1);
    g_assert_true(g_str_has_suffix(json_object_get_string_member(e1, "filename"),
                                   "/mo-f-f002.vmdk"));
    g_assert_cmpint(json_object_get_int_member(e1, "virtual-size"), ==, 1024 * MiB);
    g_assert_false(json_object_has_member(e1, "cluster-size"));
    json_object_unref(o);
    diskimg_close(n);
}

/* ----------------------------------------------------------------- corrupt */

static char *fresh_copy(const char *name, const char *opts, uint64_t size)
{
    char *path = test_tmp_path(name);
    tf_create("vmdk", path, size, opts);
    return path;
}

static void test_corrupt_header(void)
{
    struct {
        uint64_t off;
        int width;
        uint64_t value;
        const char *needle;
    } cases[] = {
        { 4, 4, 9, "Unsupported VMDK version 9" },
        { 20, 8, 0, "grainSize" },
        { 44, 4, 4096, "numGTEsPerGT" },
        { 12, 8, 1ull << 50, "capacity" },
        { 56, 8, 1ull << 30, "gdOffset" },
        { 64, 8, 1ull << 30, "File truncated" },
        { 36, 8, 1ull << 30, "descriptorSize" },
        { 77, 2, 7, "compressAlgorithm" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = g_strdup_printf("hdr%zu.vmdk", i);
        g_autofree char *path = fresh_copy(name, NULL, 8 * MiB);
        if (cases[i].width == 8)
            tf_patch_le64(path, cases[i].off, cases[i].value);
        else if (cases[i].width == 4)
            tf_patch_le32(path, cases[i].off, (uint32_t)cases[i].value);
        else {
            uint8_t b[2];
            diskimg_put_le16(b, (uint16_t)cases[i].value);
            tf_patch(path, cases[i].off, b, 2);
        }
        assert_open_fails(path, cases[i].needle);
    }
}

static void test_corrupt_files(void)
{
    /* truncated inside the header */
    g_autofree char *t = fresh_copy("trunc.vmdk", NULL, 8 * MiB);
    g_assert_cmpint(truncate(t, 300), ==, 0);
    assert_open_fails(t, "too small");
    /* truncated before the end of the metadata */
    g_autofree char *t2 = fresh_copy("trunc2.vmdk", NULL, 8 * MiB);
    g_assert_cmpint(truncate(t2, 4096), ==, 0);
    assert_open_fails(t2, "File truncated");
    /* a stream image whose footer is gone */
    g_autofree char *s = fresh_copy("nofoot.vmdk", "subformat=streamOptimized", 8 * MiB);
    struct stat st;
    g_assert_cmpint(stat(s, &st), ==, 0);
    g_assert_cmpint(truncate(s, st.st_size - 512), ==, 0);
    assert_open_fails(s, "Invalid footer");
    /* a descriptor file with a broken extent line, a missing CID, an
     * unsupported type, an extent beyond the trust policy */
    static const char *const descs[][2] = {
        { "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
          "RW 10 FLAT \"x.raw\" zz\n", "invalid extent line 5" },
        { "version=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
          "RW 10 FLAT \"x.raw\" 0\n", "field 'CID'" },
        { "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"fancyDisk\"\n",
          "Unsupported image type 'fancyDisk'" },
        { "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
          "RW 10 FLAT \"nbd://host/x\" 0\n", "nbd://host/x" },
        { "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
          "RW 10 FLAT \"x.raw\"\n", "has no offset" },
        { "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n"
          "RW 100000 SPARSE \"small.vmdk\"\n", "the descriptor says 100000" },
        { "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n",
          "names no extent" },
    };
    g_autofree char *small = fresh_copy("small.vmdk", NULL, 64 * KiB);
    g_autofree char *rawx = test_tmp_path("x.raw");
    g_assert_true(g_file_set_contents(rawx, "0123456789", 10, NULL));
    for (size_t i = 0; i < G_N_ELEMENTS(descs); i++) {
        g_autofree char *name = g_strdup_printf("desc%zu.vmdk", i);
        g_autofree char *path = test_tmp_path(name);
        g_assert_true(g_file_set_contents(path, descs[i][0], -1, NULL));
        assert_open_fails(path, descs[i][1]);
    }
}

/* A grain table entry pointing past the end of the file: reads fail with
 * a clean error, check counts one corruption. */
static void test_corrupt_table(void)
{
    g_autofree char *path = fresh_copy("gte.vmdk", NULL, 8 * MiB);
    uint64_t gd = 0;
    {
        g_autofree char *data = NULL;
        gsize len;
        g_assert_true(g_file_get_contents(path, &data, &len, NULL));
        gd = diskimg_le64(data + 56);
    }
    uint32_t gt = tf_file_le32(path, gd * 512);
    tf_patch_le32(path, (uint64_t)gt * 512 + 4, 0x7fffffff);   /* grain 1 */
    diskimg_node *n = tf_open("vmdk", path, 0, NULL);
    uint8_t buf[512];
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pread(n, buf, sizeof(buf), GRAIN, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "grain table entry"));
    g_assert_nonnull(strstr(err->message, "gte.vmdk"));
    g_clear_error(&err);
    /* check fails as qemu's does ("Check failed", exit 1 in the command) */
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    g_assert_cmpint(diskimg_node_check(n, 0, &res, &err), ==, -1);
    g_assert_cmpstr(err->message, ==, "Check failed: Invalid argument");
    g_clear_error(&err);
    g_assert_cmpuint(res.corruptions, ==, 1);
    diskimg_close(n);
    /* A directory entry pointing past the end */
    g_autofree char *p2 = fresh_copy("gde.vmdk", NULL, 8 * MiB);
    tf_patch_le32(p2, gd * 512, 0x7ffffff0);
    tf_patch_le32(p2, tf_file_le32(p2, 48) * 512, 0x7ffffff0);  /* and the redundant one */
    n = tf_open("vmdk", p2, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, buf, sizeof(buf), 0, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "grain directory entry 0"));
    g_clear_error(&err);
    diskimg_close(n);
    /* Tables that were not preallocated are allocated at the end; a grain
     * entry that points into one is refused by the metadata guard. */
    g_autofree char *p4 = fresh_copy("guard.vmdk", NULL, 64 * MiB);
    uint64_t gd4 = 0;
    {
        g_autofree char *data = NULL;
        gsize len;
        g_assert_true(g_file_get_contents(p4, &data, &len, NULL));
        gd4 = diskimg_le64(data + 56);
    }
    uint64_t rgd4 = tf_file_le32(p4, 48);
    uint32_t gt0 = tf_file_le32(p4, gd4 * 512);
    tf_patch_le32(p4, gd4 * 512 + 4, 0);   /* directory entry 1: no table */
    tf_patch_le32(p4, rgd4 * 512 + 4, 0);
    n = tf_open("vmdk", p4, DISKIMG_OPEN_RDWR, NULL);
    uint8_t *g4 = g_malloc(GRAIN);
    tf_pattern(g4, GRAIN, 0, 2);
    g_assert_cmpint(diskimg_node_pwrite(n, g4, GRAIN, 32 * MiB, 0, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
    uint32_t new_gt = tf_file_le32(p4, gd4 * 512 + 4);
    g_assert_cmpuint(new_gt, >, gt0);
    n = tf_open("vmdk", p4, 0, NULL);
    uint8_t *b4 = g_malloc(GRAIN);
    g_assert_cmpint(diskimg_node_pread(n, b4, GRAIN, 32 * MiB, NULL), ==, 0);
    g_assert_cmpmem(b4, GRAIN, g4, GRAIN);
    diskimg_close(n);
    tf_patch_le32(p4, (uint64_t)gt0 * 512 + 2 * 4, new_gt);   /* grain 2 -> that table */
    n = tf_open("vmdk", p4, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_pwrite(n, g4, 512, 2 * GRAIN, 0, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "Preventing invalid write"));
    g_assert_nonnull(strstr(err->message, "grain table"));
    g_clear_error(&err);
    diskimg_close(n);
    g_free(g4);
    g_free(b4);
    /* A compressed grain whose marker claims more bytes than there are */
    g_autofree char *p3 = fresh_copy("marker.vmdk", "subformat=streamOptimized", 4 * MiB);
    n = tf_open("vmdk", p3, DISKIMG_OPEN_RDWR, NULL);
    uint8_t *g = g_malloc(GRAIN);
    tf_pattern(g, GRAIN, 0, 1);
    g_assert_cmpint(diskimg_node_pwrite(n, g, GRAIN, 0, 0, NULL), ==, 0);
    diskimg_close(n);
    tf_patch_le32(p3, 128 * 512 + 8, 0x7fffffff);   /* the first grain's marker size */
    n = tf_open("vmdk", p3, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, g, GRAIN, 0, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "field 'size'"));
    g_clear_error(&err);
    diskimg_close(n);
    g_free(g);
}

/* A vmfsSparse (COWD) extent built by hand, 64 MiB of 8 KiB grains with
 * two of them written, behind its descriptor. */
static void test_cowd(void)
{
    const uint32_t sectors = 131072, gran = 16, gtes = 4096;
    const uint32_t gd_n = 2, gd_off = 4, gt_off = 5, gt_sec = gtes * 4 / 512;
    const uint32_t data_off = gt_off + gd_n * gt_sec;
    size_t len = (size_t)(data_off + 2 * gran) * 512;
    uint8_t *img = g_malloc0(len);
    memcpy(img, "COWD", 4);
    uint32_t fields[] = { 1, 3, sectors, gran, gd_off, gd_n };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
        diskimg_put_le32(img + 4 + 4 * i, fields[i]);
    for (uint32_t i = 0; i < gd_n; i++)
        diskimg_put_le32(img + gd_off * 512 + 4 * i, gt_off + i * gt_sec);
    diskimg_put_le32(img + gt_off * 512 + 3 * 4, data_off);
    diskimg_put_le32(img + (gt_off + gt_sec) * 512 + 5 * 4, data_off + gran);
    memset(img + data_off * 512, 0xab, gran * 512);
    memset(img + (data_off + gran) * 512, 0xcd, gran * 512);
    g_autofree char *delta = test_tmp_path("c-delta.vmdk");
    g_autofree char *desc = test_tmp_path("c.vmdk");
    g_assert_true(g_file_set_contents(delta, (char *)img, (gssize)len, NULL));
    g_autofree char *text = g_strdup_printf("# Disk DescriptorFile\nversion=1\nCID=12345678\n"
                                            "parentCID=ffffffff\ncreateType=\"vmfsSparse\"\n"
                                            "RW %u VMFSSPARSE \"c-delta.vmdk\"\n", sectors);
    g_assert_true(g_file_set_contents(desc, text, -1, NULL));
    diskimg_node *n = tf_open("vmdk", desc, 0, NULL);
    g_assert_true(diskimg_node_capabilities(n) & DISKIMG_CAP_READ_ONLY);
    g_assert_cmpint(diskimg_node_size(n, NULL), ==, (int64_t)sectors * 512);
    uint8_t *buf = g_malloc(16 * KiB);
    g_assert_cmpint(diskimg_node_pread(n, buf, 16 * KiB, 2 * 8 * KiB, NULL), ==, 0);
    g_assert_true(diskimg_is_zero(buf, 8 * KiB));
    g_assert_cmpuint(buf[8 * KiB], ==, 0xab);
    g_assert_cmpuint(buf[16 * KiB - 1], ==, 0xab);
    uint64_t second = (uint64_t)gtes * 8 * KiB + 5 * 8 * KiB;
    g_assert_cmpint(diskimg_node_pread(n, buf, 8 * KiB, second, NULL), ==, 0);
    g_assert_cmpuint(buf[0], ==, 0xcd);
    struct diskimg_extent e = { .struct_size = sizeof(e) };
    g_assert_cmpint(diskimg_node_block_status(n, 0, 64 * KiB, &e, NULL), ==, 0);
    g_assert_cmpuint(e.flags & DISKIMG_BS_ALLOCATED, ==, 0);
    g_assert_cmpuint(e.length, ==, 3 * 8 * KiB);
    diskimg_close(n);
    GError *err = NULL;
    g_assert_null(tf_try_open("vmdk", desc, DISKIMG_OPEN_RDWR, NULL, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    /* a directory too small for the disk */
    diskimg_put_le32(img + 24, 1);
    g_assert_true(g_file_set_contents(delta, (char *)img, (gssize)len, NULL));
    assert_open_fails(desc, "l1dir_size");
    g_free(img);
    g_free(buf);
}

/* An seSparse extent built by hand (as qemu reads them): 64 MiB of 4 KiB
 * grains, grain 5 allocated, grain 6 a zero grain, grain 4096 + 7
 * allocated. */
static uint64_t se_entry(uint64_t grain_number)
{
    return 0x3000000000000000ull | ((grain_number & 0xfff) << 48) | (grain_number >> 12);
}

static void test_sesparse(void)
{
    const uint64_t cap = 131072, gd_off = 2, tables = 3, grains = tables + 2 * 64;
    size_t len = (size_t)(grains + 32) * 512;
    uint8_t *img = g_malloc0(len);
    const struct { unsigned off; uint64_t v; } fields[] = {
        { 0, 0xcafebabe }, { 8, 0x200000001ull }, { 16, cap }, { 24, 8 }, { 32, 64 },
        { 80, 1 }, { 88, 1 }, { 128, gd_off }, { 136, 1 }, { 144, tables }, { 152, 128 },
        { 192, grains }, { 200, 16 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
        diskimg_put_le64(img + fields[i].off, fields[i].v);
    diskimg_put_le64(img + 512, 0xcafecafe);
    diskimg_put_le64(img + gd_off * 512, 0x1000000000000000ull);
    diskimg_put_le64(img + gd_off * 512 + 8, 0x1000000000000001ull);
    diskimg_put_le64(img + tables * 512 + 5 * 8, se_entry(0));
    diskimg_put_le64(img + tables * 512 + 6 * 8, 0x2000000000000000ull);
    diskimg_put_le64(img + (tables + 64) * 512 + 7 * 8, se_entry(2));
    memset(img + grains * 512, 0xab, 4096);
    memset(img + (grains + 16) * 512, 0xcd, 4096);
    g_autofree char *ext = test_tmp_path("se-sesparse.vmdk");
    g_autofree char *desc = test_tmp_path("se.vmdk");
    g_assert_true(g_file_set_contents(ext, (char *)img, (gssize)len, NULL));
    g_autofree char *text = g_strdup_printf("# Disk DescriptorFile\nversion=1\nCID=12345678\n"
                                            "parentCID=ffffffff\ncreateType=\"seSparse\"\n"
                                            "RW %" PRIu64 " SESPARSE \"se-sesparse.vmdk\"\n",
                                            cap);
    g_assert_true(g_file_set_contents(desc, text, -1, NULL));
    diskimg_node *n = tf_open("vmdk", desc, 0, NULL);
    g_assert_true(diskimg_node_capabilities(n) & DISKIMG_CAP_READ_ONLY);
    uint8_t *buf = g_malloc(12 * KiB);
    g_assert_cmpint(diskimg_node_pread(n, buf, 12 * KiB, 4 * 4 * KiB, NULL), ==, 0);
    g_assert_true(diskimg_is_zero(buf, 4 * KiB));
    g_assert_cmpuint(buf[4 * KiB], ==, 0xab);
    g_assert_true(diskimg_is_zero(buf + 8 * KiB, 4 * KiB));
    g_assert_cmpint(diskimg_node_pread(n, buf, 4 * KiB, (4096 + 7) * 4 * KiB, NULL), ==, 0);
    g_assert_cmpuint(buf[100], ==, 0xcd);
    struct diskimg_extent e = { .struct_size = sizeof(e) };
    g_assert_cmpint(diskimg_node_block_status(n, 6 * 4 * KiB, 4 * KiB, &e, NULL), ==, 0);
    g_assert_cmpuint(e.flags & (DISKIMG_BS_ZERO | DISKIMG_BS_DATA), ==, DISKIMG_BS_ZERO);
    diskimg_close(n);
    /* an entry of an unknown kind, then a journal to replay */
    diskimg_put_le64(img + tables * 512 + 9 * 8, 0x5000000000000000ull);
    g_assert_true(g_file_set_contents(ext, (char *)img, (gssize)len, NULL));
    n = tf_open("vmdk", desc, 0, NULL);
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pread(n, buf, 4 * KiB, 9 * 4 * KiB, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "seSparse grain table entry 9"));
    g_clear_error(&err);
    diskimg_close(n);
    diskimg_put_le64(img + 512 + 24, 1);
    g_assert_true(g_file_set_contents(ext, (char *)img, (gssize)len, NULL));
    assert_open_fails(desc, "Replaying journal not supported");
    diskimg_put_le64(img + 512 + 24, 0);
    diskimg_put_le64(img + 24, 16);
    g_assert_true(g_file_set_contents(ext, (char *)img, (gssize)len, NULL));
    assert_open_fails(desc, "unsupported grain_size");
    g_free(img);
    g_free(buf);
}

static void test_probe(void)
{
    const struct diskimg_plugin *p = diskimg_plugin_descriptor(DISKIMG_KIND_FORMAT, "vmdk");
    const struct diskimg_format_ops *ops = p->ops;
    g_assert_cmpint(ops->probe((const uint8_t *)"KDMV\1\0\0\0", 8, "x"), ==, 100);
    g_assert_cmpint(ops->probe((const uint8_t *)"COWD", 4, "x"), ==, 100);
    const char *d = "# Disk DescriptorFile\n  \nversion=1\nCID=1\n";
    g_assert_cmpint(ops->probe((const uint8_t *)d, strlen(d), "x"), ==, 100);
    const char *crlf = "# x\r\nversion=3\r\n";
    g_assert_cmpint(ops->probe((const uint8_t *)crlf, strlen(crlf), "x"), ==, 100);
    const char *empty_line = "# x\n\nversion=1\n";
    g_assert_cmpint(ops->probe((const uint8_t *)empty_line, strlen(empty_line), "x"), ==, 0);
    const char *other = "# x\nhello=1\n";
    g_assert_cmpint(ops->probe((const uint8_t *)other, strlen(other), "x"), ==, 0);
    g_assert_cmpint(ops->probe((const uint8_t *)"QFI\xfb", 4, "x"), ==, 0);
}

/* ---------------------------------------------------------------- measure */

/* Bytes (apparent and allocated) of every file in `dir`: an image and its
 * extent files. */
static void dir_bytes(const char *dir, uint64_t *size, uint64_t *allocated)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    g_assert_nonnull(d);
    *size = *allocated = 0;
    while ((name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        struct stat st;
        g_assert_cmpint(stat(path, &st), ==, 0);
        *size += (uint64_t)st.st_size;
        *allocated += (uint64_t)st.st_blocks * 512;
    }
    g_dir_close(d);
}

/* A fresh directory of the scratch area (removed with it). */
static char *fresh_dir(const char *name)
{
    char *dir = test_tmp_path(name);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    return dir;
}

/* measure, then convert into a directory of its own; *files and *alloc
 * sum all the image's files. */
static void measure_convert(const char *sub, const char *src, const char *dir_name,
                            struct tf_measured *m, uint64_t *files, uint64_t *alloc)
{
    g_autofree char *dir = fresh_dir(dir_name);
    g_autofree char *img = g_build_filename(dir, "m.vmdk", NULL);
    g_autofree char *opts = g_strdup_printf("subformat=%s", sub);

    tf_measure_and_convert("vmdk", opts, src, img, m);
    dir_bytes(dir, files, alloc);
    g_assert_cmpuint(m->required, >=, *files);
    g_assert_cmpuint(m->required, >=, *alloc);
    g_assert_cmpuint(m->fully_allocated, >=, m->required);
}

/* Each subformat: required covers the files a convert makes; sparse ones
 * need exactly that (grains are appended whole), and with data in every
 * grain the files are fully allocated; flat ones are always (up to the
 * room left for extent names in the descriptor file, 255 bytes each). */
static void test_measure(void)
{
    g_autofree char *sparse = test_tmp_path("measure-sparse.raw");
    g_autofree char *full = test_tmp_path("measure-full.raw");
    struct tf_measured m;
    uint64_t files, alloc;

    tf_write_sparse_raw(sparse, 40 * MiB, 5);
    tf_write_sparse_raw(full, 40 * MiB, 1);

    measure_convert("monolithicSparse", sparse, "m-sparse", &m, &files, &alloc);
    g_assert_cmpuint(m.required, ==, files);
    g_assert_cmpuint(m.required, <, m.fully_allocated);
    measure_convert("monolithicSparse", full, "m-sparse-full", &m, &files, &alloc);
    g_assert_cmpuint(files, ==, m.fully_allocated);

    measure_convert("twoGbMaxExtentSparse", sparse, "m-split", &m, &files, &alloc);
    g_assert_cmpuint(m.required - files, <=, 255);
    measure_convert("twoGbMaxExtentSparse", full, "m-split-full", &m, &files, &alloc);
    g_assert_cmpuint(m.fully_allocated - files, <=, 255);

    measure_convert("monolithicFlat", sparse, "m-flat", &m, &files, &alloc);
    g_assert_cmpuint(m.required, ==, m.fully_allocated);
    g_assert_cmpuint(m.fully_allocated - files, <=, 255);
    measure_convert("twoGbMaxExtentFlat", sparse, "m-split-flat", &m, &files, &alloc);
    g_assert_cmpuint(m.fully_allocated - files, <=, 255);

    /* Compressed grains: an upper bound, the worst case for each grain. */
    measure_convert("streamOptimized", sparse, "m-stream", &m, &files, &alloc);
    measure_convert("streamOptimized", full, "m-stream-full", &m, &files, &alloc);
    g_assert_cmpuint(m.required, ==, m.fully_allocated);

    /* --size: the empty monolithicSparse and streamOptimized files. */
    const char *subs[] = { "subformat=monolithicSparse", "subformat=streamOptimized" };
    for (size_t i = 0; i < G_N_ELEMENTS(subs); i++) {
        g_autofree char *img = test_tmp_path("m-size.vmdk");
        diskimg_options *o = tf_options("vmdk", "create-options", subs[i]);
        struct diskimg_measure_args a = { .struct_size = sizeof(a), .options = o,
                                          .size = 100ull << 30 };
        struct diskimg_measure_result r = { .struct_size = sizeof(r) };
        GError *err = NULL;
        g_assert_cmpint(diskimg_measure("vmdk", &a, &r, &err), ==, 0);
        tf_create("vmdk", img, 100ull << 30, subs[i]);
        g_assert_cmpuint(r.required, ==, tf_file_size(img));
        diskimg_options_free(o);
        unlink(img);
    }
}

/* What we write, libvmdk's vmdkmount (an independent reader) exports
 * byte for byte as the source.  vmdkmount 20200926 (Debian 12) refuses
 * flat images with "Unsupported disk type." — qemu-img's own too — so for
 * monolithicFlat vmdkinfo must accept the image with the source's size
 * and the flat extent must hold the source's bytes. */
static void test_libyal_content(void)
{
    g_autofree char *src = test_tmp_path("libyal.raw");
    const char *subs[] = { "monolithicSparse", "streamOptimized", "twoGbMaxExtentSparse" };
    struct tf_measured m;
    uint64_t files, alloc;

    tf_write_sparse_raw(src, 24 * MiB + 512, 3);
    for (size_t i = 0; i < G_N_ELEMENTS(subs); i++) {
        g_autofree char *dir_name = g_strdup_printf("libyal-%s", subs[i]);
        measure_convert(subs[i], src, dir_name, &m, &files, &alloc);
        g_autofree char *img = test_tmp_path(dir_name);
        g_autofree char *path = g_build_filename(img, "m.vmdk", NULL);
        tf_libyal_same_bytes("vmdkmount", path, "vmdk1", src);
    }
    measure_convert("monolithicFlat", src, "libyal-flat", &m, &files, &alloc);
    g_autofree char *flat_dir = test_tmp_path("libyal-flat");
    g_autofree char *desc = g_build_filename(flat_dir, "m.vmdk", NULL);
    g_autofree char *extent = g_build_filename(flat_dir, "m-flat.vmdk", NULL);
    if (!tf_need("vmdkinfo"))
        return;
    g_autofree char *out = NULL;
    g_assert_cmpint(TF_RUN(&out, "vmdkinfo", desc), ==, 0);
    g_autofree char *want_size = g_strdup_printf("(%" PRIu64 " bytes)", 24 * MiB + 512);
    g_assert_nonnull(strstr(out, want_size));
    g_assert_nonnull(strstr(out, "Monolithic flat"));
    g_autofree char *got = tf_sha256_padded(extent, tf_file_size(extent));
    g_autofree char *want = tf_sha256_padded(src, tf_file_size(src));
    g_assert_cmpuint(tf_file_size(extent), ==, tf_file_size(src));
    g_assert_cmpstr(got, ==, want);
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "vmdk", NULL);
    schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "vmdk");

    g_test_add_func("/vmdk/descriptor/parse", test_desc_parse);
    g_test_add_func("/vmdk/descriptor/edit", test_desc_edit);
    g_test_add_func("/vmdk/descriptor/errors", test_desc_errors);
    g_test_add_func("/vmdk/probe", test_probe);
    for (size_t i = 0; i < G_N_ELEMENTS(subformats); i++) {
        g_autofree char *rt = g_strdup_printf("/vmdk/roundtrip/%s", subformats[i]);
        g_autofree char *rq = g_strdup_printf("/vmdk/read-qemu/%s", subformats[i]);
        g_test_add_data_func(rt, subformats[i], test_roundtrip);
        g_test_add_data_func(rq, subformats[i], test_read_qemu);
    }
    g_test_add_func("/vmdk/stream-rules", test_stream_rules);
    g_test_add_func("/vmdk/zeroed-grain", test_zeroed_grain);
    g_test_add_func("/vmdk/backing", test_backing);
    g_test_add_func("/vmdk/metadata-only", test_metadata_only);
    g_test_add_func("/vmdk/vmfs-sparse", test_cowd);
    g_test_add_func("/vmdk/se-sparse", test_sesparse);
    g_test_add_func("/vmdk/corrupt/header", test_corrupt_header);
    g_test_add_func("/vmdk/corrupt/files", test_corrupt_files);
    g_test_add_func("/vmdk/corrupt/tables", test_corrupt_table);
    g_test_add_func("/vmdk/measure", test_measure);
    g_test_add_func("/vmdk/interop/vmdkmount-content", test_libyal_content);

    return tf_run_tests();
}
