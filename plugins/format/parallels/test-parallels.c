/* SPDX-License-Identifier: MIT */
/*
 * test-parallels.c — unit tests of the parallels plugin: the header qemu
 * writes and each damaged field, both signatures, round trips through the
 * core, the "in use" flag, BAT validation, check and repair, the format
 * extension, and interop with qemu-img where it is installed.
 */

#include <diskimg/crypto.h>

#include "test-format.h"
#include "parallels.h"

/* ------------------------------------------------------ header validator */

static void test_header_layout(void)
{
    uint8_t buf[PRL_HEADER_LEN];
    struct prl_header h;
    GError *err = NULL;

    /* The header of qemu-img create -f parallels x 65M. */
    prl_header_build(buf, 65 * MiB, MiB);
    g_assert_cmpmem(buf, 16, PRL_MAGIC_EXT, 16);
    g_assert_cmpuint(diskimg_le32(buf + PRL_OFF_VERSION), ==, 2);
    g_assert_cmpuint(diskimg_le32(buf + PRL_OFF_HEADS), ==, 16);
    g_assert_cmpuint(diskimg_le32(buf + PRL_OFF_CYLINDERS), ==, 260);
    g_assert_cmpuint(diskimg_le32(buf + PRL_OFF_TRACKS), ==, 2048);
    g_assert_cmpuint(diskimg_le32(buf + PRL_OFF_BAT_ENTRIES), ==, 65);
    g_assert_cmpuint(diskimg_le64(buf + PRL_OFF_NB_SECTORS), ==, 133120);
    g_assert_cmpuint(diskimg_le32(buf + PRL_OFF_DATA_OFF), ==, 2048);
    g_assert_cmpint(prl_header_parse(buf, sizeof(buf), &h, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(h.ext_magic);
    g_assert_cmpuint(prl_first_data_sector(&h), ==, 2048);
    /* data_off 0: the sector after the BAT. */
    diskimg_put_le32(buf + PRL_OFF_DATA_OFF, 0);
    g_assert_cmpint(prl_header_parse(buf, sizeof(buf), &h, &err), ==, 0);
    g_assert_cmpuint(prl_first_data_sector(&h), ==, 1);
    /* Old images: 32-bit sector count, entries in sectors. */
    memcpy(buf, PRL_MAGIC_OLD, 16);
    diskimg_put_le64(buf + PRL_OFF_NB_SECTORS, (1ull << 32) | 100);
    g_assert_cmpint(prl_header_parse(buf, sizeof(buf), &h, &err), ==, 0);
    g_assert_false(h.ext_magic);
    g_assert_cmpuint(h.nb_sectors, ==, 100);
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
        { PRL_OFF_VERSION, 3, DISKIMG_ERROR_INVALID, "Image not in Parallels format" },
        { 0, 0x41414141, DISKIMG_ERROR_INVALID, "bad magic" },
        { PRL_OFF_TRACKS, 0, DISKIMG_ERROR_INVALID, "Zero sectors per track" },
        { PRL_OFF_TRACKS, INT32_MAX / 513 + 1, DISKIMG_ERROR_NOT_SUPPORTED, "Too big cluster" },
        { PRL_OFF_BAT_ENTRIES, INT32_MAX / 4 + 1, DISKIMG_ERROR_NOT_SUPPORTED,
          "Catalog too large" },
        { PRL_OFF_DATA_OFF, 1, DISKIMG_ERROR_CORRUPT, "'data_off' (sector 1)" },
        { PRL_OFF_NB_SECTORS + 4, 0x7fffffff, DISKIMG_ERROR_CORRUPT, "nb_sectors" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint8_t buf[PRL_HEADER_LEN];
        struct prl_header h;
        GError *err = NULL;

        prl_header_build(buf, 65 * MiB, 4096);
        diskimg_put_le32(buf + cases[i].off, cases[i].value);
        g_assert_cmpint(prl_header_parse(buf, sizeof(buf), &h, &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, cases[i].code);
        if (!strstr(err->message, cases[i].needle))
            g_error("case %zu: '%s' not in '%s'", i, cases[i].needle, err->message);
        g_error_free(err);
    }
    /* A short header names the first field it lacks. */
    uint8_t buf[PRL_HEADER_LEN];
    struct prl_header h;
    GError *err = NULL;
    prl_header_build(buf, MiB, MiB);
    g_assert_cmpint(prl_header_parse(buf, 40, &h, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "'nb_sectors'"));
    g_clear_error(&err);
}

static void test_create_options(void)
{
    g_autofree char *path = test_tmp_path("opts.prl");
    size_t n;

    /* qemu rounds cluster_size up to a sector: 1000 -> 1024. */
    tf_create("parallels", path, MiB, "cluster_size=1000");
    uint8_t *data = tf_read_file(path, &n);
    g_assert_cmpuint(n, ==, 5120);
    g_assert_cmpuint(diskimg_le32(data + PRL_OFF_TRACKS), ==, 2);
    g_assert_cmpuint(diskimg_le32(data + PRL_OFF_BAT_ENTRIES), ==, 1024);
    g_assert_cmpuint(diskimg_le32(data + PRL_OFF_DATA_OFF), ==, 10);
    g_free(data);

    /* qemu's limits, in its words. */
    const diskimg_schema *schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "parallels");
    struct { const char *opts; uint64_t size; const char *msg; } bad[] = {
        { "cluster_size=2147483647", MiB, "Cluster size is too large" },
        { "cluster_size=512", 8ull << 40, "Image size is too large for this cluster size" },
        { "cluster_size=0", MiB, "Image size is too large for this cluster size" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        diskimg_options *o = diskimg_options_new(schema, "create-options");
        GError *err = NULL;
        g_assert_cmpint(diskimg_options_parse(o, bad[i].opts, &err), ==, 0);
        struct diskimg_create_params p = { .struct_size = sizeof(p), .format = "parallels",
                                           .options = o, .size = bad[i].size };
        g_assert_cmpint(diskimg_create(path, &p, &err), ==, -1);
        g_assert_nonnull(strstr(err->message, bad[i].msg));
        g_assert_nonnull(strstr(err->message, path));
        g_clear_error(&err);
        diskimg_options_free(o);
    }
}

/* ---------------------------------------------------------------- images */

static void roundtrip(const char *opts, uint64_t size, uint64_t cluster, const char *name)
{
    g_autofree char *path = test_tmp_path(name);
    uint8_t *model = g_malloc0(size);

    tf_create("parallels", path, size, opts);
    diskimg_node *n = tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_scattered(n, model, size, cluster);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    n = tf_open("parallels", path, 0, NULL);
    tf_expect_model(n, model, size);
    /* Unwritten clusters are holes of this layer. */
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_block_status(n, 4 * MiB, cluster, &ext, &err), ==, 0);
    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED), ==, 0);
    g_assert_cmpint(diskimg_node_block_status(n, 3 * MiB, cluster, &ext, &err), ==, 0);
    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED), ==,
                    DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED);
    diskimg_close(n);
    if (tf_need_qemu())
        tf_qemu_agrees("parallels", path, model, size);
    g_free(model);
}

static void test_roundtrip_1m(void)
{
    g_autofree char *path = test_tmp_path("rt1m.prl");

    roundtrip(NULL, 12 * MiB, MiB, "rt1m.prl");
    /* BAT cluster + clusters 0, 1, 3, 5, 6, 7, 11: cut after the last;
     * qemu-img map sees the others as holes. */
    g_assert_cmpuint(tf_file_size(path), ==, 8 * MiB);
    if (tf_need_qemu())
        g_assert_cmpuint(tf_qemu_data_bytes("parallels", path), ==, 7 * MiB);
}

static void test_roundtrip_64k(void)
{
    roundtrip("cluster_size=64k", 12 * MiB, 64 * KiB, "rt64k.prl");
}

static void test_roundtrip_odd(void)
{
    roundtrip(NULL, 9 * MiB + 1024, MiB, "odd.prl");
}

/* An old "WithoutFreeSpace" image whose entries count sectors and whose
 * clusters do not start on cluster boundaries. */
static void test_old_signature(void)
{
    g_autofree char *path = test_tmp_path("old.prl");
    const uint32_t tracks = 8;                     /* 4 KiB clusters */
    uint8_t *file = g_malloc0(64 * KiB);
    uint8_t *model = g_malloc0(16 * KiB);

    memcpy(file, PRL_MAGIC_OLD, 16);
    diskimg_put_le32(file + PRL_OFF_VERSION, 2);
    diskimg_put_le32(file + PRL_OFF_TRACKS, tracks);
    diskimg_put_le32(file + PRL_OFF_BAT_ENTRIES, 4);
    diskimg_put_le64(file + PRL_OFF_NB_SECTORS, 32);
    diskimg_put_le32(file + PRL_OFF_DATA_OFF, 3);
    /* cluster 1 at sector 3, cluster 3 at sector 11 */
    diskimg_put_le32(file + PRL_HEADER_LEN + 1 * 4, 3);
    diskimg_put_le32(file + PRL_HEADER_LEN + 3 * 4, 11);
    tf_pattern(file + 3 * 512, 4096, 0, 5);
    tf_pattern(file + 11 * 512, 4096, 0, 6);
    memcpy(model + 4096, file + 3 * 512, 4096);
    memcpy(model + 3 * 4096, file + 11 * 512, 4096);
    tf_write_file(path, file, 19 * 512);
    diskimg_node *n = tf_open(NULL, path, 0, NULL);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "parallels");
    tf_expect_model(n, model, 16 * KiB);
    diskimg_close(n);
    if (tf_need_qemu())
        tf_qemu_agrees("parallels", path, model, 16 * KiB);
    /* Writing allocates after the last cluster, counted in sectors. */
    n = tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL);
    uint8_t buf[4096];
    tf_pattern(buf, sizeof(buf), 0, 7);
    tf_write(n, buf, 1000, 2 * 4096 + 100);
    memcpy(model + 2 * 4096 + 100, buf, 1000);
    diskimg_close(n);
    uint8_t *bytes = tf_read_file(path, &(size_t){ 0 });
    g_assert_cmpuint(diskimg_le32(bytes + PRL_HEADER_LEN + 2 * 4), ==, 19);
    g_free(bytes);
    n = tf_open("parallels", path, 0, NULL);
    tf_expect_model(n, model, 16 * KiB);
    diskimg_close(n);
    g_free(file);
    g_free(model);
}

/* A "WithouFreSpacExt" image whose data_off is not a whole cluster:
 * entries count clusters, so new clusters start on the next cluster
 * boundary. */
static void test_misaligned_data_off(void)
{
    g_autofree char *path = test_tmp_path("misaligned.prl");
    uint8_t file[3 * 512] = { 0 };
    uint8_t *model = g_malloc0(16 * KiB);
    uint8_t buf[100];

    memcpy(file, PRL_MAGIC_EXT, 16);
    diskimg_put_le32(file + PRL_OFF_VERSION, 2);
    diskimg_put_le32(file + PRL_OFF_TRACKS, 8);
    diskimg_put_le32(file + PRL_OFF_BAT_ENTRIES, 4);
    diskimg_put_le64(file + PRL_OFF_NB_SECTORS, 32);
    diskimg_put_le32(file + PRL_OFF_DATA_OFF, 3);
    tf_write_file(path, file, sizeof(file));
    diskimg_node *n = tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, sizeof(buf), 0, 4);
    tf_write(n, buf, sizeof(buf), 4096 + 10);
    memcpy(model + 4096 + 10, buf, sizeof(buf));
    tf_zero(n, 0, 4096);                       /* nothing to allocate */
    diskimg_close(n);
    size_t len;
    uint8_t *bytes = tf_read_file(path, &len);
    g_assert_cmpuint(diskimg_le32(bytes + PRL_HEADER_LEN + 4), ==, 1);   /* sector 8 */
    g_assert_cmpuint(diskimg_le32(bytes + PRL_HEADER_LEN), ==, 0);
    g_assert_cmpuint(len, ==, 2 * 4096);
    g_free(bytes);
    n = tf_open("parallels", path, 0, NULL);
    tf_expect_model(n, model, 16 * KiB);
    diskimg_close(n);
    if (tf_need_qemu())
        tf_qemu_agrees("parallels", path, model, 16 * KiB);
    g_free(model);
}

/* -------------------------------------------------------- the in-use flag */

static uint32_t inuse_of(const char *path)
{
    size_t n;
    uint8_t *data = tf_read_file(path, &n);
    uint32_t v = diskimg_le32(data + PRL_OFF_INUSE);

    g_free(data);
    return v;
}

static struct diskimg_check_result run_check(const char *path, unsigned fix)
{
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    GError *err = NULL;
    diskimg_node *n = tf_open("parallels", path,
                              DISKIMG_OPEN_CHECK | (fix ? DISKIMG_OPEN_RDWR : 0), NULL);

    g_assert_cmpint(diskimg_node_check(n, fix, &res, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
    return res;
}

static void test_inuse(void)
{
    g_autofree char *path = test_tmp_path("inuse.prl");

    tf_create("parallels", path, 4 * MiB, NULL);
    diskimg_node *n = tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmphex(inuse_of(path), ==, PRL_INUSE_MAGIC);      /* set on open */
    diskimg_close(n);
    g_assert_cmphex(inuse_of(path), ==, 0);                    /* cleared on close */

    /* Left in use (a crash): read-only opens work, read-write ones are
     * refused, check reports it and -r clears it. */
    tf_patch_le32(path, PRL_OFF_INUSE, PRL_INUSE_MAGIC);
    n = tf_open("parallels", path, 0, NULL);
    diskimg_close(n);
    tf_open_fails("parallels", path, DISKIMG_OPEN_RDWR, DISKIMG_ERROR_PERMISSION,
                  (const char *[]){ "Image was not closed correctly", NULL });
    struct diskimg_check_result res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 1);
    g_assert_true(res.has_cluster_stats);
    g_assert_cmpuint(res.total_clusters, ==, 4);
    g_assert_cmpuint(res.image_end_offset, ==, MiB);
    res = run_check(path, DISKIMG_CHECK_FIX_ERRORS | DISKIMG_CHECK_FIX_LEAKS);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    g_assert_cmphex(inuse_of(path), ==, 0);
    res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 0);
}

/* ------------------------------------------------------- BAT validation */

/* A 4 MiB image, 1 MiB clusters, clusters 0 and 2 written. */
static char *two_cluster_image(const char *name, uint8_t *model)
{
    char *path = test_tmp_path(name);
    uint8_t *buf = g_malloc(MiB);

    tf_create("parallels", path, 4 * MiB, NULL);
    diskimg_node *n = tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, MiB, 0, 1);
    tf_write(n, buf, MiB, 0);
    if (model)
        memcpy(model, buf, MiB);
    tf_pattern(buf, MiB, 0, 2);
    tf_write(n, buf, MiB, 2 * MiB);
    if (model)
        memcpy(model + 2 * MiB, buf, MiB);
    diskimg_close(n);
    g_free(buf);
    return path;
}

static void test_bat_errors(void)
{
    uint8_t *model = g_malloc0(4 * MiB);
    g_autofree char *path = two_cluster_image("bat.prl", model);
    size_t n;
    uint8_t *orig = tf_read_file(path, &n);
    g_assert_cmpuint(n, ==, 3 * MiB);

    /* Beyond the end of the file. */
    tf_patch_le32(path, PRL_HEADER_LEN + 3 * 4, 100);
    tf_open_fails("parallels", path, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "BAT entry 3", "beyond the end of the file", NULL });
    struct diskimg_check_result res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 1);
    /* A read-write open that leaves the entry never grows the file to it. */
    res = run_check(path, DISKIMG_CHECK_FIX_LEAKS);
    g_assert_cmpuint(res.corruptions_fixed, ==, 0);
    g_assert_cmpuint(tf_file_size(path), ==, 3 * MiB);
    res = run_check(path, DISKIMG_CHECK_FIX_ERRORS);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    diskimg_node *node = tf_open("parallels", path, 0, NULL);
    tf_expect_model(node, model, 4 * MiB);
    diskimg_close(node);

    /* Two entries naming one cluster: the later loses it. */
    tf_write_file(path, orig, n);
    tf_patch_le32(path, PRL_HEADER_LEN + 3 * 4, 2);
    tf_open_fails("parallels", path, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "BAT entry 3 overlaps", NULL });
    res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 1);
    res = run_check(path, DISKIMG_CHECK_FIX_ERRORS);
    g_assert_cmpuint(res.corruptions_fixed, ==, 1);
    node = tf_open("parallels", path, 0, NULL);
    tf_expect_model(node, model, 4 * MiB);
    diskimg_close(node);

    /* A cluster inside the header and BAT: with the old signature
     * entries count sectors, and sector 1 lies in the BAT. */
    tf_write_file(path, orig, n);
    tf_patch(path, 0, PRL_MAGIC_OLD, 16);
    tf_patch_le32(path, PRL_HEADER_LEN + 0 * 4, 2048);
    tf_patch_le32(path, PRL_HEADER_LEN + 1 * 4, 1);
    tf_patch_le32(path, PRL_HEADER_LEN + 2 * 4, 4096);
    tf_open_fails("parallels", path, 0, DISKIMG_ERROR_CORRUPT,
                  (const char *[]){ "BAT entry 1", "inside the header or BAT", NULL });
    /* ...and its cluster reaches into the one at sector 2048. */
    res = run_check(path, 0);
    g_assert_cmpuint(res.corruptions, ==, 2);

    /* Space leaked after the last cluster: reported, cut with -r leaks. */
    tf_write_file(path, orig, n);
    uint8_t *longer = g_malloc0(n + 3 * MiB);
    memcpy(longer, orig, n);
    tf_write_file(path, longer, n + 3 * MiB);
    res = run_check(path, 0);
    g_assert_cmpuint(res.leaks, ==, 3);
    g_assert_cmpuint(res.image_end_offset, ==, 3 * MiB);
    res = run_check(path, DISKIMG_CHECK_FIX_LEAKS);
    g_assert_cmpuint(res.leaks_fixed, ==, 3);
    g_assert_cmpuint(tf_file_size(path), ==, 3 * MiB);
    g_free(longer);
    g_free(orig);
    g_free(model);
}

/* A BAT larger than one cluster is not "space leaked" (qemu 7.2 says it
 * is, and its repair cuts the BAT off). */
static void test_big_bat_no_leak(void)
{
    g_autofree char *path = test_tmp_path("bigbat.prl");

    tf_create("parallels", path, 8 * MiB, "cluster_size=4k");
    g_assert_cmpuint(tf_file_size(path), ==, 3 * 4096);
    struct diskimg_check_result res = run_check(path, 0);
    g_assert_cmpuint(res.leaks, ==, 0);
    g_assert_cmpuint(res.image_end_offset, ==, 3 * 4096);
}

/* --------------------------------------------------- format extension */

#define EXT_MAGIC 0xab234cef23dcea87ull

/* Adds a format extension cluster (1 MiB clusters) at the end of `path`:
 * `features` bytes after the header, checksummed unless `bad_sum`. */
static void add_extension(const char *path, const uint8_t *features, size_t len, bool bad_sum)
{
    size_t n;
    uint8_t *data = tf_read_file(path, &n);
    uint8_t *out = g_malloc0(n + MiB);

    memcpy(out, data, n);
    uint8_t *ext = out + n;
    diskimg_put_le64(ext, EXT_MAGIC);
    memcpy(ext + 24, features, len);
    GChecksum *md5 = g_checksum_new(G_CHECKSUM_MD5);
    g_checksum_update(md5, ext + 24, MiB - 24);
    gsize dlen = 16;
    g_checksum_get_digest(md5, ext + 8, &dlen);
    g_checksum_free(md5);
    if (bad_sum)
        ext[8] ^= 1;
    diskimg_put_le64(out + PRL_OFF_EXT_OFF, n / 512);
    tf_write_file(path, out, n + MiB);
    g_free(out);
    g_free(data);
}

static bool have_md5(void)
{
    uint8_t out[16];
    GError *err = NULL;

    if (diskimg_hash("md5", "", 0, out, sizeof(out), &err) == 0)
        return true;
    g_test_skip("no crypto plugin for MD5");
    g_clear_error(&err);
    return false;
}

static void test_extension(void)
{
    if (!have_md5())
        return;
    g_autofree char *path = test_tmp_path("ext.prl");
    uint8_t end[24] = { 0 };                       /* end-of-features */
    uint8_t unknown[24] = { 0 };
    diskimg_put_le64(unknown, 0x1234);
    /* a bitmap feature for 4 MiB at 64 KiB granularity: one L1 entry */
    uint8_t bitmap[24 + 40 + 24] = { 0 };
    diskimg_put_le64(bitmap, 0x20385fae252cb34aull);
    diskimg_put_le32(bitmap + 16, 40);
    diskimg_put_le64(bitmap + 24, 4 * MiB / 512);
    diskimg_put_le32(bitmap + 24 + 24, 64 * KiB / 512);
    diskimg_put_le32(bitmap + 24 + 28, 1);
    diskimg_put_le64(bitmap + 24 + 32, 1);         /* all set */

    struct { const uint8_t *f; size_t len; bool bad_sum; int code; const char *msg; } cases[] = {
        { end, sizeof(end), false, 0, NULL },
        { bitmap, sizeof(bitmap), false, 0, NULL },
        { end, sizeof(end), true, DISKIMG_ERROR_CORRUPT,
          "Wrong checksum in Format Extension header" },
        { unknown, sizeof(unknown), false, DISKIMG_ERROR_NOT_SUPPORTED,
          "Unknown feature: 0x1234" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_free(two_cluster_image("ext.prl", NULL));
        add_extension(path, cases[i].f, cases[i].len, cases[i].bad_sum);
        if (!cases[i].msg) {
            diskimg_close(tf_open("parallels", path, 0, NULL));
        } else {
            tf_open_fails("parallels", path, 0, cases[i].code,
                          (const char *[]){ cases[i].msg, NULL });
        }
        /* qemu ignores the extension of read-write opens. */
        diskimg_close(tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL));
    }

    /* Writing to an image with an extension allocates after it and keeps
     * it: it still validates, and check sees no leak. */
    g_free(two_cluster_image("ext.prl", NULL));
    add_extension(path, end, sizeof(end), false);
    uint64_t ext_end = tf_file_size(path);
    diskimg_node *n = tf_open("parallels", path, DISKIMG_OPEN_RDWR, NULL);
    uint8_t buf[4096];
    tf_pattern(buf, sizeof(buf), 0, 8);
    tf_write(n, buf, sizeof(buf), MiB);
    diskimg_close(n);
    g_assert_cmpuint(tf_file_size(path), ==, ext_end + MiB);
    size_t len;
    uint8_t *bytes = tf_read_file(path, &len);
    g_assert_cmpuint(diskimg_le32(bytes + PRL_HEADER_LEN + 4), ==, ext_end / MiB);
    g_free(bytes);
    n = tf_open("parallels", path, 0, NULL);
    uint8_t got[4096];
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pread(n, got, sizeof(got), MiB, &err), ==, 0);
    g_assert_cmpmem(got, sizeof(got), buf, sizeof(buf));
    diskimg_close(n);
    struct diskimg_check_result res = run_check(path, DISKIMG_CHECK_FIX_LEAKS);
    g_assert_cmpuint(res.leaks, ==, 0);
    g_assert_cmpuint(tf_file_size(path), ==, ext_end + MiB);
    /* ...also when the extension is the last thing in the file. */
    g_free(two_cluster_image("ext.prl", NULL));
    add_extension(path, end, sizeof(end), false);
    res = run_check(path, DISKIMG_CHECK_FIX_LEAKS);
    g_assert_cmpuint(res.leaks, ==, 0);
    diskimg_close(tf_open("parallels", path, 0, NULL));
}

/* A write whose allocation fails (the file may not grow: RLIMIT_FSIZE)
 * leaves the cluster unallocated, and the image consistent. */
static void test_failed_write_rolls_back(void)
{
    g_autofree char *path = test_tmp_path("efbig.prl");

    tf_check_failed_write_rolls_back("parallels", path, 2 * MiB + 4096);
}

/* --------------------------------------------------------- qemu interop */

static void test_qemu_made(void)
{
    if (!tf_need_qemu())
        return;
    const char *sizes[] = { "cluster_size=1M", "cluster_size=64k" };
    for (size_t v = 0; v < G_N_ELEMENTS(sizes); v++) {
        g_autofree char *path = test_tmp_path("qemu.prl");
        tf_check_qemu_made("parallels", sizes[v], path);
    }
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "parallels", NULL);

    g_test_add_func("/parallels/header/layout", test_header_layout);
    g_test_add_func("/parallels/header/errors", test_header_errors);
    g_test_add_func("/parallels/create-options", test_create_options);
    g_test_add_func("/parallels/roundtrip/1m", test_roundtrip_1m);
    g_test_add_func("/parallels/roundtrip/64k", test_roundtrip_64k);
    g_test_add_func("/parallels/roundtrip/odd-size", test_roundtrip_odd);
    g_test_add_func("/parallels/old-signature", test_old_signature);
    g_test_add_func("/parallels/misaligned-data-off", test_misaligned_data_off);
    g_test_add_func("/parallels/inuse", test_inuse);
    g_test_add_func("/parallels/bat-errors", test_bat_errors);
    g_test_add_func("/parallels/big-bat-no-leak", test_big_bat_no_leak);
    g_test_add_func("/parallels/extension", test_extension);
    g_test_add_func("/parallels/failed-write-rolls-back", test_failed_write_rolls_back);
    g_test_add_func("/parallels/qemu-made", test_qemu_made);

    return tf_run_tests();
}
