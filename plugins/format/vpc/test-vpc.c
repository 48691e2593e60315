/* SPDX-License-Identifier: MIT */
/*
 * test-vpc.c — unit tests of the vpc (VHD) plugin.
 *
 * The geometry and size rules are tested on the plugin's own functions
 * (this program is built from its sources); images are created, written,
 * probed and opened through libdiskimg with this build's posix, raw and vpc
 * modules.  Expected sizes are what qemu-img 7.2 prints for the same
 * commands (qemu-img create -f vpc ...; qemu-img info), recorded as data.
 * Where qemu-img / qemu-io / vhdiinfo are installed the images are also
 * exchanged with them; those parts skip without the tools.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diskimg/core.h>

#include "vpc.h"
#include "test-format.h"

#define GiB (MiB * 1024)

static const diskimg_schema *schema;

/* ---------------------------------------------------------------- helpers */

static diskimg_options *create_options(const char *subformat, bool force_size)
{
    diskimg_options *o = diskimg_options_new(schema, "create-options");
    GError *err = NULL;

    if (subformat)
        g_assert_cmpint(diskimg_options_set(o, "subformat", subformat, &err), ==, 0);
    if (force_size)
        g_assert_cmpint(diskimg_options_set(o, "force_size", "on", &err), ==, 0);
    g_assert_no_error(err);
    return o;
}

static void create_vpc(const char *path, uint64_t size, const char *subformat, bool force_size)
{
    diskimg_options *o = create_options(subformat, force_size);
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = "vpc", .options = o, .size = size,
    };
    GError *err = NULL;

    g_assert_cmpint(diskimg_create(path, &p, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_options_free(o);
}

static uint64_t node_size(diskimg_node *n)
{
    int64_t size = diskimg_node_size(n, NULL);
    g_assert_cmpint(size, >=, 0);
    return (uint64_t)size;
}

/* --------------------------------------------------------- size and CHS */

/* qemu-img 7.2: `qemu-img create -f vpc x SIZE; qemu-img info x`. */
static void test_create_sizes(void)
{
    static const struct {
        uint64_t request, virtual_size;
        bool force;
    } cases[] = {
        { 0, 0, false },
        { 1000, 34816, false },
        { 1 * MiB, 1079296, false },
        { 10 * MiB, 10514432, false },
        { 16 * MiB, 16781312, false },
        { 65 * MiB, 68169728, false },
        { 130 * MiB, 136339456, false },
        { 1 * GiB, 1073995776, false },
        { 127 * GiB, 136365219840, false },
        { 128 * GiB, 137438953472, false },     /* beyond CHS: current_size */
        { 200 * GiB, 214748364800, false },
        { 2040 * GiB, 2190433320960, false },
        { 1024, 1024, true },
        { 65 * MiB + 512, 65 * MiB + 512, true },
        { 2040 * GiB, 2190433320960, true },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        struct vpc_geometry geo;
        uint64_t total = 0;
        GError *err = NULL;

        g_assert_cmpint(vpc_create_geometry(cases[i].request, cases[i].force, &geo, &total,
                                            &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpuint(total, ==, cases[i].virtual_size);
        /* What open computes from the footer create writes. */
        struct vpc_footer f = { .geo = geo, .current_size = total };
        memcpy(f.creator_app, cases[i].force ? "qem2" : "qemu", 4);
        g_assert_cmpuint(vpc_footer_virtual_size(&f, VPC_SIZE_AUTO), ==, total);
    }
}

/* qemu-img create -f vpc -o force_size=on x 1001: rounded up to a sector
 * first (1024), then kept exactly; without force_size CHS-sized (34816). */
static void test_create_rounds_to_sectors(void)
{
    g_autofree char *path = test_tmp_path("round.vpc");
    const struct { bool force; uint64_t size; } cases[] = { { true, 1024 }, { false, 34816 } };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        create_vpc(path, 1001, NULL, cases[i].force);
        diskimg_node *n = tf_open("vpc", path, 0, NULL);
        g_assert_cmpuint(node_size(n), ==, cases[i].size);
        diskimg_close(n);
        unlink(path);
    }
}

static void test_create_too_large(void)
{
    for (int force = 0; force <= 1; force++) {
        struct vpc_geometry geo;
        uint64_t total;
        GError *err = NULL;

        g_assert_cmpint(vpc_create_geometry(2041 * GiB, force, &geo, &total, &err), ==, -1);
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
        g_assert_cmpstr(err->message, ==, "The image size is too large for file format 'vpc'");
        g_error_free(err);
    }
}

/* The spec's CHS examples and the geometry qemu wrote for 16 MiB. */
static void test_chs(void)
{
    struct vpc_geometry g;

    vpc_chs_for(32776, &g);
    g_assert_cmpuint(g.cylinders, ==, 482);
    g_assert_cmpuint(g.heads, ==, 4);
    g_assert_cmpuint(g.sectors, ==, 17);
    vpc_chs_for(VPC_CHS_MAX_SECTORS + 5, &g);
    g_assert_cmpuint(g.cylinders, ==, 65535);
    g_assert_cmpuint(g.heads, ==, 16);
    g_assert_cmpuint(g.sectors, ==, 255);
}

/* The creator table of qemu 7.2 (checked against qemu-img info on images
 * whose current_size was changed to 10 MiB). */
static void test_size_rule(void)
{
    static const struct {
        const char app[5];
        bool by_current_size;
    } apps[] = {
        { "win ", true }, { "d2v ", true }, { "qem2", true }, { "CTXS", true },
        { "tap\0", true }, { "vpc ", false }, { "qemu", false }, { "abcd", false },
    };
    struct vpc_footer f = { .geo = { 482, 4, 17 }, .current_size = 10 * MiB + 100 };

    for (size_t i = 0; i < G_N_ELEMENTS(apps); i++) {
        memcpy(f.creator_app, apps[i].app, 4);
        g_assert_cmpuint(vpc_footer_virtual_size(&f, VPC_SIZE_AUTO), ==,
                         apps[i].by_current_size ? 10 * MiB : 16781312);
        g_assert_cmpuint(vpc_footer_virtual_size(&f, VPC_SIZE_CHS), ==, 16781312);
        g_assert_cmpuint(vpc_footer_virtual_size(&f, VPC_SIZE_CURRENT), ==, 10 * MiB);
    }
    /* The maximum geometry means current_size even for "vpc ". */
    memcpy(f.creator_app, "vpc ", 4);
    f.geo = (struct vpc_geometry){ 65535, 16, 255 };
    g_assert_cmpuint(vpc_footer_virtual_size(&f, VPC_SIZE_CHS), ==, 10 * MiB);
}

static void test_checksum_and_bitmap(void)
{
    uint8_t buf[VPC_FOOTER_SIZE];
    struct vpc_footer f = { .disk_type = VPC_TYPE_FIXED, .current_size = 4096 }, back;
    GError *err = NULL;

    memcpy(f.creator_app, "qemu", 4);
    vpc_footer_encode(&f, buf);
    g_assert_cmpint(vpc_footer_parse(buf, &back, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(back.current_size, ==, 4096);
    g_assert_cmpuint(back.disk_type, ==, VPC_TYPE_FIXED);
    buf[100] ^= 1;
    g_assert_cmpint(vpc_footer_parse(buf, &back, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT);
    g_assert_nonnull(strstr(err->message, "Incorrect header checksum"));
    g_assert_nonnull(strstr(err->message, "'checksum'"));
    g_clear_error(&err);

    g_assert_cmpuint(vpc_bitmap_size(2 * MiB), ==, 512);
    g_assert_cmpuint(vpc_bitmap_size(4 * MiB), ==, 1024);
    g_assert_cmpuint(vpc_bitmap_size(512), ==, 512);
}

/* ------------------------------------------------------------ round trips */

/* Writes pieces that start and end off block and sector boundaries, one
 * across the first block boundary, one in the last sector; returns the
 * image's expected content. */
static uint8_t *write_pattern(diskimg_node *n, uint64_t size)
{
    uint8_t *model = g_malloc0(size);
    const struct { uint64_t off, len; } pieces[] = {
        { 0, 4096 },
        { 2 * MiB - 1000, 3000 },               /* across blocks 0 and 1 */
        { 5 * MiB + 17, 65536 + 3 },
        { size - 700, 700 },                    /* up to the end */
    };
    GError *err = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(pieces); i++) {
        tf_pattern(model + pieces[i].off, pieces[i].len, 0, (unsigned)i + 1);
        g_assert_cmpint(diskimg_node_pwrite(n, model + pieces[i].off, pieces[i].len,
                                            pieces[i].off, 0, &err), ==, 0);
        g_assert_no_error(err);
    }
    return model;
}

static void assert_content(diskimg_node *n, const uint8_t *model, uint64_t size)
{
    g_autofree uint8_t *got = g_malloc(size);
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_pread(n, got, size, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpmem(got, size, model, size);
}

/* Block status of a dynamic image: written blocks are data, the rest one
 * zero run per gap (what qemu-img map shows). */
static void assert_dynamic_map(diskimg_node *n, uint64_t size)
{
    /* Allocated: blocks 0, 1, 2 (5 MiB + 17 .. + 64 KiB) and the last. */
    uint64_t last = (size - 1) / (2 * MiB);
    uint64_t off = 0;

    while (off < size) {
        struct diskimg_extent e = { .struct_size = sizeof(e) };
        GError *err = NULL;
        g_assert_cmpint(diskimg_node_block_status(n, off, size - off, &e, &err), ==, 0);
        g_assert_no_error(err);
        uint64_t block = off / (2 * MiB);
        bool written = block <= 2 || block == last;
        g_assert_cmpuint(e.flags & DISKIMG_BS_ALLOCATED, !=, 0);
        if (written) {
            g_assert_cmpuint(e.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==,
                             DISKIMG_BS_DATA);
            g_assert_cmpuint(e.length, <=, 2 * MiB);
        } else {
            g_assert_cmpuint(e.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==,
                             DISKIMG_BS_ZERO);
            g_assert_cmpuint(off + e.length, ==, MIN(last * 2 * MiB, size));
        }
        off += e.length;
    }
}

static void roundtrip(const char *subformat, uint64_t request, bool force)
{
    g_autofree char *path = test_tmp_path("rt.vpc");
    create_vpc(path, request, subformat, force);

    diskimg_node *n = tf_open("vpc", path, DISKIMG_OPEN_RDWR, NULL);
    uint64_t size = node_size(n);
    g_assert_cmpuint(size, >=, request);
    g_autofree uint8_t *model = write_pattern(n, size);
    assert_content(n, model, size);
    diskimg_close(n);

    n = tf_open("vpc", path, 0, NULL);
    g_assert_cmpuint(node_size(n), ==, size);
    assert_content(n, model, size);
    if (g_str_equal(subformat, "dynamic")) {
        assert_dynamic_map(n, size);
        /* 4 blocks of 512 + 2 MiB after the metadata, then the footer. */
        uint64_t blocks = (size + 2 * MiB - 1) / (2 * MiB);
        uint64_t meta = 1536 + (blocks * 4 + 511) / 512 * 512;
        g_assert_cmpuint(tf_file_size(path), ==, meta + 4 * (512 + 2 * MiB) + 512);
    } else {
        g_assert_cmpuint(tf_file_size(path), ==, size + 512);
    }
    diskimg_close(n);

    /* A fixed VHD is recognised without -f, by its footer at the end. */
    GError *err = NULL;
    n = tf_try_open(NULL, path, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "vpc");
    g_assert_cmpuint(node_size(n), ==, size);
    diskimg_close(n);
    unlink(path);
}

static void test_roundtrip_dynamic(void)
{
    roundtrip("dynamic", 16 * MiB, false);
    roundtrip("dynamic", 65 * MiB + 512, true);
    roundtrip("dynamic", 10 * MiB + 3, false);      /* odd: rounded to a sector, then CHS */
}

static void test_roundtrip_fixed(void)
{
    roundtrip("fixed", 16 * MiB, false);
    roundtrip("fixed", 65 * MiB + 512, true);
    roundtrip("fixed", 10 * MiB + 3, false);
}

/* Zero writes: nothing allocated for unallocated blocks, zeroes in place
 * for allocated ones. */
static void test_write_zeroes(void)
{
    g_autofree char *path = test_tmp_path("z.vpc");
    create_vpc(path, 8 * MiB, NULL, false);
    diskimg_node *n = tf_open("vpc", path, DISKIMG_OPEN_RDWR, NULL);
    uint64_t size = node_size(n);
    g_autofree uint8_t *model = write_pattern(n, size);
    uint64_t before = tf_file_size(path);
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_write_zeroes(n, 1000, 4 * MiB, 0, &err), ==, 0);
    g_assert_no_error(err);
    memset(model + 1000, 0, 4 * MiB);
    assert_content(n, model, size);
    g_assert_cmpuint(tf_file_size(path), ==, before);
    diskimg_close(n);
    unlink(path);
}

/* qemu-img 7.2's info: cluster-size is a dynamic disk's block size and
 * absent for a fixed disk, no format-specific data; both start zeroed. */
static void test_info_and_capabilities(void)
{
    const char *subformats[] = { "dynamic", "fixed" };

    for (size_t i = 0; i < G_N_ELEMENTS(subformats); i++) {
        g_autofree char *path = test_tmp_path("info.vpc");
        create_vpc(path, 16 * MiB, subformats[i], false);
        diskimg_node *n = tf_open("vpc", path, 0, NULL);
        GError *err = NULL;
        JsonObject *info = diskimg_image_info(n, &err);
        g_assert_no_error(err);
        g_assert_nonnull(info);
        g_assert_cmpstr(json_object_get_string_member(info, "format"), ==, "vpc");
        g_assert_cmpint(json_object_get_int_member(info, "virtual-size"), ==, 16781312);
        if (i == 0)
            g_assert_cmpint(json_object_get_int_member(info, "cluster-size"), ==, 2 * MiB);
        else
            g_assert_false(json_object_has_member(info, "cluster-size"));
        g_assert_false(json_object_has_member(info, "format-specific"));
        g_assert_cmpuint(diskimg_node_capabilities(n) & DISKIMG_CAP_ZERO_INIT, !=, 0);
        json_object_unref(info);
        diskimg_close(n);
        unlink(path);
    }
}

/* PARALLEL: threads writing and reading interleaved pieces of different
 * blocks at once (allocations race for next_block) end with every piece
 * in place and every block allocated once. */
struct worker {
    diskimg_node *n;
    unsigned id;
    uint8_t *model;
};

#define WORKERS 4
#define ROUNDS 6

static uint64_t worker_offset(unsigned id, unsigned round)
{
    return (uint64_t)(round * WORKERS + id) * 2 * MiB + id * 4096 + 100;
}

static gpointer worker_run(gpointer data)
{
    struct worker *w = data;
    uint8_t got[8192];

    for (unsigned r = 0; r < ROUNDS; r++) {
        uint64_t off = worker_offset(w->id, r);
        g_assert_cmpint(diskimg_node_pwrite(w->n, w->model + off, 8192, off, 0, NULL), ==, 0);
        g_assert_cmpint(diskimg_node_pread(w->n, got, sizeof(got), off, NULL), ==, 0);
        g_assert_cmpmem(got, sizeof(got), w->model + off, 8192);
    }
    return NULL;
}

static void test_parallel_writers(void)
{
    g_autofree char *path = test_tmp_path("par.vpc");
    create_vpc(path, 64 * MiB, NULL, false);
    diskimg_node *n = tf_open("vpc", path, DISKIMG_OPEN_RDWR, NULL);
    uint64_t size = node_size(n);
    g_autofree uint8_t *model = g_malloc0(size);
    struct worker w[WORKERS];
    GThread *t[WORKERS];

    for (unsigned i = 0; i < WORKERS; i++) {
        for (unsigned r = 0; r < ROUNDS; r++)
            tf_pattern(model + worker_offset(i, r), 8192, 0, i * ROUNDS + r);
        w[i] = (struct worker){ .n = n, .id = i, .model = model };
        t[i] = g_thread_new("vpc-writer", worker_run, &w[i]);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        g_thread_join(t[i]);
    diskimg_close(n);

    n = tf_open("vpc", path, 0, NULL);
    assert_content(n, model, size);
    diskimg_close(n);
    /* 24 blocks, each allocated once: metadata, blocks, footer. */
    g_assert_cmpuint(tf_file_size(path), ==, 1536 + 512 + WORKERS * ROUNDS * (512 + 2 * MiB) + 512);
    unlink(path);
}

/* ----------------------------------------------------------------- probe */

static void test_probe(void)
{
    g_autofree char *path = test_tmp_path("probe.img");
    uint8_t buf[8192];
    GError *err = NULL;

    /* A raw disk that ends in "conectix" junk stays raw. */
    memset(buf, 0x55, sizeof(buf));
    memcpy(buf + sizeof(buf) - 512, VPC_COOKIE, VPC_COOKIE_LEN);
    tf_write_file(path, buf, sizeof(buf));
    diskimg_node *n = tf_try_open(NULL, path, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "raw");
    diskimg_close(n);

    /* A valid fixed footer that claims more data than the file has: raw. */
    struct vpc_footer f = { .disk_type = VPC_TYPE_FIXED, .current_size = 8192 };
    memcpy(f.creator_app, "win ", 4);
    vpc_footer_encode(&f, buf + sizeof(buf) - 512);
    g_assert_cmpint(vpc_fixed_trailer_score(buf + sizeof(buf) - 512, 512, sizeof(buf)), ==, 0);
    f.current_size = sizeof(buf) - 512;
    vpc_footer_encode(&f, buf + sizeof(buf) - 512);
    g_assert_cmpint(vpc_fixed_trailer_score(buf + sizeof(buf) - 512, 512, sizeof(buf)), ==, 100);
    tf_write_file(path, buf, sizeof(buf));
    n = tf_try_open(NULL, path, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "vpc");
    g_assert_cmpuint(node_size(n), ==, sizeof(buf) - 512);
    diskimg_close(n);
    unlink(path);
}

/* -------------------------------------------------------------- corruption */

/* A dynamic image to damage: 6 MiB + blocks 0 and 2 allocated. */
static uint8_t *damageable(gsize *len)
{
    g_autofree char *path = test_tmp_path("base.vpc");
    create_vpc(path, 6 * MiB, NULL, false);
    diskimg_node *n = tf_open("vpc", path, DISKIMG_OPEN_RDWR, NULL);
    uint8_t data[4096];
    tf_pattern(data, sizeof(data), 0, 9);
    g_assert_cmpint(diskimg_node_pwrite(n, data, sizeof(data), 0, 0, NULL), ==, 0);
    g_assert_cmpint(diskimg_node_pwrite(n, data, sizeof(data), 4 * MiB, 0, NULL), ==, 0);
    diskimg_close(n);
    uint8_t *img = tf_read_file(path, len);
    unlink(path);
    return img;
}

static void reseal_footer(uint8_t *footer)
{
    diskimg_put_be32(footer + VPC_F_CHECKSUM,
                     vpc_checksum(footer, VPC_FOOTER_SIZE, VPC_F_CHECKSUM));
}

static void reseal_header(uint8_t *img)
{
    uint8_t *h = img + VPC_FOOTER_SIZE;
    diskimg_put_be32(h + VPC_H_CHECKSUM, vpc_checksum(h, VPC_DYN_HEADER_SIZE, VPC_H_CHECKSUM));
}

/* Opening must fail with one line naming the file and containing `what`. */
static void expect_refused(const char *name, const uint8_t *img, size_t len, const char *what)
{
    g_autofree char *path = test_tmp_path(name);
    GError *err = NULL;

    tf_write_file(path, img, len);
    diskimg_node *n = tf_try_open("vpc", path, 0, NULL, &err);
    if (n)
        g_error("%s: opened although damaged (expected '%s')", name, what);
    g_assert_nonnull(err);
    g_autofree char *prefix = g_strdup_printf("Could not open '%s': ", path);
    if (!g_str_has_prefix(err->message, prefix) || !strstr(err->message, what) ||
        strchr(err->message, '\n'))
        g_error("%s: message '%s' lacks '%s'", name, err->message, what);
    g_error_free(err);
    unlink(path);
}

static void test_corrupt_footer(void)
{
    gsize len;
    g_autofree uint8_t *base = damageable(&len);
    g_autofree uint8_t *img = g_malloc(len);

    expect_refused("short.vpc", base, 300, "less than a VHD footer");

    memcpy(img, base, len);
    img[0] = 'C';
    img[len - 512] = 'C';
    expect_refused("cookie.vpc", img, len, "no footer cookie");

    memcpy(img, base, len);
    img[VPC_F_ORIGINAL_SIZE] ^= 0x40;
    expect_refused("checksum.vpc", img, len, "field 'checksum'");

    memcpy(img, base, len);
    diskimg_put_be32(img + VPC_F_DISK_TYPE, 7);
    reseal_footer(img);
    expect_refused("type.vpc", img, len, "'disk_type'");

    memcpy(img, base, len);
    diskimg_put_be32(img + VPC_F_DISK_TYPE, VPC_TYPE_DIFFERENCING);
    reseal_footer(img);
    expect_refused("diff.vpc", img, len, "Differencing");

    memcpy(img, base, len);
    memcpy(img + VPC_F_CREATOR_APP, "qem2", 4);
    diskimg_put_be64(img + VPC_F_CURRENT_SIZE, UINT64_C(1) << 60);
    reseal_footer(img);
    expect_refused("huge.vpc", img, len, "File too large");

    memcpy(img, base, len);
    diskimg_put_be64(img + VPC_F_DATA_OFFSET, UINT64_C(1) << 40);
    reseal_footer(img);
    expect_refused("dataoff.vpc", img, len, "'data_offset'");

    /* A fixed disk whose size runs into its own footer. */
    g_autofree char *fixed = test_tmp_path("f.vpc");
    create_vpc(fixed, 1 * MiB, "fixed", false);
    gsize flen;
    g_autofree uint8_t *f = tf_read_file(fixed, &flen);
    uint8_t *foot = f + flen - 512;
    memcpy(foot + VPC_F_CREATOR_APP, "win ", 4);
    diskimg_put_be64(foot + VPC_F_CURRENT_SIZE, flen);
    reseal_footer(foot);
    expect_refused("fixedsize.vpc", f, flen, "exceeds");
    unlink(fixed);
}

static void test_corrupt_header_and_bat(void)
{
    gsize len;
    g_autofree uint8_t *base = damageable(&len);
    g_autofree uint8_t *img = g_malloc(len);
    uint8_t *h = img + VPC_FOOTER_SIZE;
    uint8_t *bat = img + 1536;

    memcpy(img, base, len);
    h[0] = 'X';
    expect_refused("hmagic.vpc", img, len, "'cookie'");

    /* Dynamic header fields, each changed alone and the header resealed;
     * `file_len` 0 keeps the whole image. */
    static const struct {
        const char *name;
        unsigned field, width;
        uint64_t value;
        gsize file_len;
        const char *needle;
    } bad[] = {
        { "bsize.vpc", VPC_H_BLOCK_SIZE, 4, 3000, 0, "'block_size'" },
        { "fewentries.vpc", VPC_H_MAX_TABLE_ENTRIES, 4, 2, 0, "'max_table_entries'" },
        { "manyentries.vpc", VPC_H_MAX_TABLE_ENTRIES, 4, 0xfffffff0, 0, "'max_table_entries'" },
        /* 2040 GiB: 4 MiB of BAT */
        { "longbat.vpc", VPC_H_MAX_TABLE_ENTRIES, 4, 1044480, 1 * MiB,
          "the BAT's 1044480 entries" },
        { "tableoff.vpc", VPC_H_TABLE_OFFSET, 8, UINT64_C(1) << 50, 0, "BAT" },
        { "tableinheader.vpc", VPC_H_TABLE_OFFSET, 8, 600, 0, "'table_offset'" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        memcpy(img, base, len);
        if (bad[i].width == 4)
            diskimg_put_be32(h + bad[i].field, (uint32_t)bad[i].value);
        else
            diskimg_put_be64(h + bad[i].field, bad[i].value);
        reseal_header(img);
        expect_refused(bad[i].name, img, bad[i].file_len ? bad[i].file_len : len, bad[i].needle);
    }

    memcpy(img, base, len);
    diskimg_put_be32(bat + 4, 0x00ffffff);
    expect_refused("batpast.vpc", img, len, "BAT entry 1");

    memcpy(img, base, len);
    diskimg_put_be32(bat + 4, 2);                   /* into the dynamic header */
    expect_refused("batmeta.vpc", img, len, "overlaps the");

    memcpy(img, base, len);
    diskimg_put_be32(bat + 4, diskimg_be32(bat) + 8);   /* inside block 0 */
    expect_refused("batoverlap.vpc", img, len, "overlap");

    expect_refused("truncated.vpc", base, len - 4096, "truncated");

    /* A wrong dynamic header checksum is only a warning, as in qemu. */
    memcpy(img, base, len);
    h[VPC_H_CHECKSUM] ^= 1;
    g_autofree char *path = test_tmp_path("hsum.vpc");
    tf_write_file(path, img, len);
    diskimg_node *n = tf_open("vpc", path, 0, NULL);
    g_assert_cmpuint(node_size(n), ==, 6301696);     /* qemu-img info of 6M */
    diskimg_close(n);
    unlink(path);
}

/* A block another tool allocated with a partial sector bitmap: read whole
 * (qemu's view), and the first write into it makes the bitmap full. */
static void test_partial_bitmap(void)
{
    gsize len;
    g_autofree uint8_t *img = damageable(&len);
    g_autofree char *path = test_tmp_path("bitmap.vpc");
    uint64_t bitmap_at = (uint64_t)diskimg_be32(img + 1536) * 512;
    uint8_t data[4096], got[4096];

    memset(img + bitmap_at, 0, 512);
    tf_write_file(path, img, len);
    tf_pattern(data, sizeof(data), 0, 9);                    /* what damageable() wrote */
    diskimg_node *n = tf_open("vpc", path, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_pread(n, got, sizeof(got), 0, NULL), ==, 0);
    g_assert_cmpmem(got, sizeof(got), data, sizeof(data));
    g_assert_cmpint(diskimg_node_pwrite(n, data, 512, 8192, 0, NULL), ==, 0);
    diskimg_close(n);

    g_autofree uint8_t *after = tf_read_file(path, &len);
    for (unsigned i = 0; i < 512; i++)
        g_assert_cmpuint(after[bitmap_at + i], ==, 0xff);
    unlink(path);
}

/* Random damage to the footer copy, the dynamic header and the BAT (the
 * footer resealed half the time, so that the checks behind the checksum
 * are reached): every open either fails with an error or gives an image
 * whose data and block status can be walked. */
static void test_corrupt_fuzz(void)
{
    gsize len;
    g_autofree uint8_t *base = damageable(&len);
    g_autofree uint8_t *img = g_malloc(len);
    g_autofree char *path = test_tmp_path("fuzz.vpc");
    g_autofree uint8_t *buf = g_malloc(MiB);
    GRand *rand = g_rand_new_with_seed(20261202);
    unsigned opened = 0;

    for (int round = 0; round < 400; round++) {
        memcpy(img, base, len);
        int flips = g_rand_int_range(rand, 1, 5);
        for (int i = 0; i < flips; i++)
            img[g_rand_int_range(rand, 0, 2048)] = (uint8_t)g_rand_int(rand);
        if (g_rand_boolean(rand))
            reseal_footer(img);
        tf_write_file(path, img, len);
        GError *err = NULL;
        diskimg_node *n = tf_try_open("vpc", path, 0, NULL, &err);
        if (!n) {
            g_assert_nonnull(err);
            g_assert_null(strchr(err->message, '\n'));
            g_error_free(err);
            continue;
        }
        opened++;
        uint64_t size = node_size(n);
        uint64_t off = 0;
        for (int step = 0; step < 64 && off < size; step++) {
            struct diskimg_extent e = { .struct_size = sizeof(e) };
            g_assert_cmpint(diskimg_node_block_status(n, off, size - off, &e, NULL), ==, 0);
            g_assert_cmpuint(e.length, >, 0);
            off += e.length;
        }
        uint64_t chunk = MIN(size, MiB);
        if (chunk)
            g_assert_cmpint(diskimg_node_pread(n, buf, chunk, size - chunk, NULL), ==, 0);
        diskimg_close(n);
    }
    g_assert_cmpuint(opened, >, 0);     /* some damage is harmless (timestamps...) */
    g_rand_free(rand);
    unlink(path);
}

/* ------------------------------------------------------- other programs */

/* qemu-img writes, we read; we write, qemu-img reads. */
static void test_qemu_interop(void)
{
    if (!tf_have("qemu-img") || !tf_have("qemu-io")) {
        g_test_skip("qemu-img or qemu-io not installed");
        return;
    }
    const char *subformats[] = { "dynamic", "fixed" };
    for (size_t i = 0; i < G_N_ELEMENTS(subformats); i++) {
        g_autofree char *q = test_tmp_path("qemu.vpc");
        g_autofree char *raw = test_tmp_path("qemu.raw");
        g_autofree char *opt = g_strdup_printf("subformat=%s", subformats[i]);
        const char *mk[] = { "qemu-img", "create", "-q", "-f", "vpc", "-o", opt, q, "9M", NULL };
        const char *io[] = { "qemu-io", "-f", "vpc", "-c", "write -P 0x5a 1000 3M",
                             "-c", "write -P 0xa5 8M 4096", q, NULL };
        g_assert_cmpint(tf_run(NULL, mk), ==, 0);
        g_assert_cmpint(tf_run(NULL, io), ==, 0);

        diskimg_node *n = tf_open("vpc", q, 0, NULL);
        uint64_t size = node_size(n);
        g_assert_cmpuint(size, ==, 9469952);     /* qemu-img info says so */
        g_autofree uint8_t *model = g_malloc0(size);
        memset(model + 1000, 0x5a, 3 * MiB);
        memset(model + 8 * MiB, 0xa5, 4096);
        assert_content(n, model, size);
        diskimg_close(n);

        /* Ours, written the same way, converted by qemu-img. */
        g_autofree char *ours = test_tmp_path("ours.vpc");
        create_vpc(ours, 9 * MiB, subformats[i], false);
        n = tf_open("vpc", ours, DISKIMG_OPEN_RDWR, NULL);
        g_assert_cmpint(diskimg_node_pwrite(n, model, size, 0, 0, NULL), ==, 0);
        diskimg_close(n);
        const char *conv[] = { "qemu-img", "convert", "-f", "vpc", "-O", "raw", ours, raw, NULL };
        g_assert_cmpint(tf_run(NULL, conv), ==, 0);
        gsize len;
        g_autofree uint8_t *back = tf_read_file(raw, &len);
        g_assert_cmpmem(back, len, model, size);
        const char *cmp[] = { "qemu-img", "compare", "-f", "vpc", "-F", "vpc", q, ours, NULL };
        g_assert_cmpint(tf_run(NULL, cmp), ==, 0);
        unlink(q);
        unlink(raw);
        unlink(ours);
    }
}

/* libyal's vhdiinfo agrees on the media size of both subformats. */
static void test_vhdiinfo(void)
{
    if (!tf_have("vhdiinfo")) {
        g_test_skip("vhdiinfo not installed (Debian package libvhdi-utils)");
        return;
    }
    const char *subformats[] = { "dynamic", "fixed" };
    for (size_t i = 0; i < G_N_ELEMENTS(subformats); i++) {
        g_autofree char *path = test_tmp_path("libvhdi.vpc");
        create_vpc(path, 65 * MiB + 512, subformats[i], true);
        g_autofree char *out = NULL;
        const char *argv[] = { "vhdiinfo", path, NULL };
        g_assert_cmpint(tf_run(&out, argv), ==, 0);
        g_autofree char *want = g_strdup_printf("%" PRIu64 " bytes", 65 * MiB + 512);
        if (!strstr(out, want))
            g_error("vhdiinfo does not report %s:\n%s", want, out);
        unlink(path);
    }
}

/* ---------------------------------------------------------------- measure */

/* measure, then convert: a dynamic disk needs exactly what measure says
 * required (the file holds no more), and a source with data in every
 * block makes a file of the fully allocated size; a fixed disk is always
 * fully allocated. */
static void test_measure(void)
{
    g_autofree char *sparse = test_tmp_path("measure-sparse.raw");
    g_autofree char *full = test_tmp_path("measure-full.raw");
    g_autofree char *out = test_tmp_path("measure.vpc");
    struct tf_measured m;

    tf_write_sparse_raw(sparse, 40 * MiB, 5);
    tf_write_sparse_raw(full, 40 * MiB, 1);

    tf_measure_and_convert("vpc", "subformat=dynamic", sparse, out, &m);
    g_assert_cmpuint(m.required, ==, m.file_size);
    g_assert_cmpuint(m.required, >=, m.allocated);
    g_assert_cmpuint(m.required, <, m.fully_allocated);
    unlink(out);
    /* force_size: no CHS-rounded tail block the source cannot fill. */
    tf_measure_and_convert("vpc", "subformat=dynamic,force_size=on", full, out, &m);
    g_assert_cmpuint(m.required, ==, m.fully_allocated);
    g_assert_cmpuint(m.file_size, ==, m.fully_allocated);
    unlink(out);
    tf_measure_and_convert("vpc", "subformat=fixed,force_size=on", sparse, out, &m);
    g_assert_cmpuint(m.fully_allocated, ==, 40 * MiB + 512);
    g_assert_cmpuint(m.required, ==, m.fully_allocated);
    g_assert_cmpuint(m.file_size, ==, m.fully_allocated);
    unlink(out);

    /* --size: the empty image create makes. */
    diskimg_options *o = tf_options("vpc", "create-options", NULL);
    struct diskimg_measure_args a = { .struct_size = sizeof(a), .options = o,
                                      .size = 10ull << 30 };
    struct diskimg_measure_result r = { .struct_size = sizeof(r) };
    GError *err = NULL;
    g_assert_cmpint(diskimg_measure("vpc", &a, &r, &err), ==, 0);
    tf_create("vpc", out, 10ull << 30, NULL);
    g_assert_cmpuint(r.required, ==, tf_file_size(out));
    diskimg_options_free(o);
}

/* What we write, vhdimount (libvhdi, an independent reader) exports byte
 * for byte as the source (plus the zeroes of the CHS-rounded tail). */
static void test_libyal_content(void)
{
    g_autofree char *src = test_tmp_path("libyal.raw");
    const char *subformats[] = { "subformat=dynamic", "subformat=fixed" };

    tf_write_sparse_raw(src, 24 * MiB + 512, 3);
    for (size_t i = 0; i < G_N_ELEMENTS(subformats); i++) {
        g_autofree char *img = test_tmp_path("libyal.vpc");
        struct tf_measured m;
        tf_measure_and_convert("vpc", subformats[i], src, img, &m);
        tf_libyal_same_bytes("vhdimount", img, "vhdi1", src);
        unlink(img);
    }
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "vpc", NULL);
    schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "vpc");

    g_test_add_func("/vpc/size/create", test_create_sizes);
    g_test_add_func("/vpc/size/too-large", test_create_too_large);
    g_test_add_func("/vpc/size/sector-rounding", test_create_rounds_to_sectors);
    g_test_add_func("/vpc/size/chs", test_chs);
    g_test_add_func("/vpc/size/creator-rule", test_size_rule);
    g_test_add_func("/vpc/footer/checksum", test_checksum_and_bitmap);
    g_test_add_func("/vpc/roundtrip/dynamic", test_roundtrip_dynamic);
    g_test_add_func("/vpc/roundtrip/fixed", test_roundtrip_fixed);
    g_test_add_func("/vpc/write-zeroes", test_write_zeroes);
    g_test_add_func("/vpc/info", test_info_and_capabilities);
    g_test_add_func("/vpc/parallel-writers", test_parallel_writers);
    g_test_add_func("/vpc/probe", test_probe);
    g_test_add_func("/vpc/corrupt/footer", test_corrupt_footer);
    g_test_add_func("/vpc/corrupt/header-bat", test_corrupt_header_and_bat);
    g_test_add_func("/vpc/partial-bitmap", test_partial_bitmap);
    g_test_add_func("/vpc/corrupt/fuzz", test_corrupt_fuzz);
    g_test_add_func("/vpc/interop/qemu", test_qemu_interop);
    g_test_add_func("/vpc/interop/vhdiinfo", test_vhdiinfo);
    g_test_add_func("/vpc/measure", test_measure);
    g_test_add_func("/vpc/interop/vhdimount-content", test_libyal_content);

    return tf_run_tests();
}
