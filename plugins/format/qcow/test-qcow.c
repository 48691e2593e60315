/* SPDX-License-Identifier: MIT */
/*
 * test-qcow.c — unit tests of the qcow plugin: the header validator on
 * hand-made headers, then images created, written and read through
 * libdiskimg with this build's modules.
 */
#include <string.h>

#include "qcow.h"
#include "test-format.h"

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
    expect_bad(buf, 20, 20, "field 'mtime'");   /* truncated */
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


/* ------------------------------------------------------------------ images */

#define QCOW "qcow"

/* Writes of every shape into a fresh image: whole clusters, pieces across
 * cluster edges, rewrites in place, the last sector; read back before and
 * after reopening, then by qemu-img, with the holes kept. */
static void test_roundtrip(void)
{
    const uint64_t size = 5 * MiB + 1536;
    g_autofree char *path = test_tmp_path("rt.qcow");
    g_autofree char *raw = test_tmp_path("rt.raw");
    uint8_t *model = g_malloc0(size);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;
    diskimg_node *n;

    tf_create(QCOW, path, size, NULL);
    n = tf_open(QCOW, path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 0, 4096, 1);
    tf_write_pattern(n, model, 3 * 4096 + 100, 10000, 2);
    tf_write_pattern(n, model, 1 * MiB, 1 * MiB, 3);
    tf_write_pattern(n, model, 5000, 3000, 4);                 /* in place */
    tf_write_pattern(n, model, size - 700, 700, 5);
    /* zeroes: over data they are written, over holes nothing is */
    g_assert_cmpint(diskimg_node_write_zeroes(n, 4000, 200, 0, &err), ==, 0);
    memset(model + 4000, 0, 200);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 3 * MiB, 1 * MiB,
                                              DISKIMG_WRITE_NO_FALLBACK, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 0, 4096, DISKIMG_WRITE_NO_FALLBACK, &err),
                    ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
    g_clear_error(&err);
    tf_expect_model(n, model, size);
    diskimg_close(n);

    n = tf_open(QCOW, path, 0, NULL);
    tf_expect_model(n, model, size);
    g_assert_cmpint(diskimg_node_block_status(n, 3 * MiB, 1 * MiB, &ext, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED), ==, 0);
    g_assert_cmpint(diskimg_node_block_status(n, 1 * MiB, 1 * MiB, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.flags & DISKIMG_BS_OFFSET_VALID, !=, 0);
    g_assert_cmpuint(ext.length, ==, 1 * MiB);           /* one contiguous run */
    diskimg_close(n);

    if (tf_have_qemu()) {
        tf_write_file(raw, model, size);
        tf_qemu_compare(QCOW, path, raw);
        /* 2 + 3 + 256 clusters of 4 KiB and the 1536 bytes of the last
         * (partial) one hold data; the rest are holes */
        g_assert_cmpuint(tf_qemu_data_bytes(QCOW, path), ==, (2 + 3 + 256) * 4096u + 1536);
    }
    g_free(model);
}

/* Images qemu wrote, plain and compressed, read as qemu reads them. */
static void test_qemu_made(void)
{
    const uint64_t size = 4 * MiB;
    g_autofree char *path = test_tmp_path("q.qcow");
    g_autofree char *zpath = test_tmp_path("qz.qcow");
    uint8_t *model = g_malloc0(size);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;
    diskimg_node *n;

    if (!tf_have_qemu()) {
        g_test_skip("qemu-img not installed");
        g_free(model);
        return;
    }
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "create", "-q", "-f", "qcow", path, "4M"), ==, 0);
    g_assert_cmpint(TF_RUN(NULL, "qemu-io", "-f", "qcow", "-c", "write -P 0x5a 4096 8192",
                           "-c", "write -P 0xa5 1M 512", path), ==, 0);
    memset(model + 4096, 0x5a, 8192);
    memset(model + MiB, 0xa5, 512);
    n = tf_open(QCOW, path, 0, NULL);
    tf_expect_model(n, model, size);
    diskimg_close(n);

    /* compressed clusters: raw deflate, as qemu writes them (qemu-io:
     * qemu-img convert -c to qcow fails at its final empty compressed
     * write in 7.2) */
    memset(model, 0, size);
    memset(model, 0x33, 4096);
    memset(model + 64 * KiB, 0x44, 4096);
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "create", "-q", "-f", "qcow", zpath, "4M"), ==, 0);
    g_assert_cmpint(TF_RUN(NULL, "qemu-io", "-f", "qcow", "-c", "write -c -P 0x33 0 4k",
                           "-c", "write -c -P 0x44 64k 4k", zpath), ==, 0);
    n = tf_open(QCOW, zpath, 0, NULL);
    tf_expect_model(n, model, size);
    g_assert_cmpint(diskimg_node_block_status(n, 0, 4096, &ext, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(ext.flags & DISKIMG_BS_COMPRESSED, !=, 0);
    diskimg_close(n);
    g_free(model);
}

/* Our compressed writes read back by us and by qemu-img; a partial
 * rewrite of a compressed cluster keeps the rest of it. */
static void test_compressed_write(void)
{
    const uint64_t size = 1 * MiB;
    g_autofree char *path = test_tmp_path("cw.qcow");
    g_autofree char *raw = test_tmp_path("cw.raw");
    uint8_t *model = g_malloc0(size);
    uint8_t *cluster = g_malloc0(4096);
    GError *err = NULL;
    diskimg_node *n;

    tf_create(QCOW, path, size, NULL);
    n = tf_open(QCOW, path, DISKIMG_OPEN_RDWR, NULL);
    for (uint64_t off = 0; off < 64 * 4096; off += 4096) {
        for (unsigned i = 0; i < 4096; i++)
            cluster[i] = (uint8_t)((off / 4096 + i / 64) & 0x7);
        g_assert_cmpint(diskimg_node_write_compressed(n, cluster, 4096, off, &err), ==, 0);
        g_assert_no_error(err);
        memcpy(model + off, cluster, 4096);
    }
    tf_write_pattern(n, model, 8 * 4096 + 10, 100, 7);         /* over a compressed cluster */
    /* the parallel path: compressed by the core's workers, then stored */
    g_assert_true(diskimg_node_can_compress_parallel(n));
    uint8_t *packed = g_malloc(4096);
    for (uint64_t off = 100 * 4096; off < 104 * 4096; off += 4096) {
        memset(cluster, (int)(off >> 12), 4096);
        int64_t len = diskimg_node_compress(n, cluster, 4096, packed, 4096, &err);
        g_assert_no_error(err);
        g_assert_cmpint(len, >, 0);
        g_assert_cmpint(len, <, 4096);
        g_assert_cmpint(diskimg_node_write_precompressed(n, packed, (uint64_t)len, off, 4096,
                                                         &err), ==, 0);
        g_assert_no_error(err);
        memcpy(model + off, cluster, 4096);
    }
    g_free(packed);
    diskimg_close(n);
    tf_expect_reopened(QCOW, path, model, size, raw);
    g_free(cluster);
    g_free(model);
}

/* An overlay with a backing file: partial writes keep the backing bytes
 * around them, qemu-img reads the chain the same, make_empty empties it. */
static void test_backing(void)
{
    const uint64_t size = 2 * MiB;
    g_autofree char *base = test_tmp_path("base.qcow");
    g_autofree char *top = test_tmp_path("top.qcow");
    g_autofree char *raw = test_tmp_path("top.raw");
    uint8_t *model = g_malloc0(size), *base_model = g_malloc0(size);
    GError *err = NULL;
    diskimg_node *n;

    tf_create(QCOW, base, size, NULL);
    n = tf_open(QCOW, base, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, base_model, 0, size, 1);
    diskimg_close(n);
    memcpy(model, base_model, size);

    tf_create(QCOW, top, size, "backing_file=base.qcow,backing_fmt=qcow");
    n = tf_open(QCOW, top, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 1000, 100, 2);
    tf_write_pattern(n, model, 70000, 5000, 3);
    tf_expect_model(n, model, size);
    diskimg_close(n);
    tf_expect_reopened(QCOW, top, model, size, raw);
    n = tf_open(QCOW, top, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_make_empty(n, &err), ==, 0);
    g_assert_no_error(err);
    tf_expect_model(n, base_model, size);
    diskimg_close(n);
    g_free(model);
    g_free(base_model);
}

/* Legacy AES: qemu's images read with the key, ours read by qemu. */
static void test_encrypted(void)
{
    const uint64_t size = 1 * MiB;
    g_autofree char *ours = test_tmp_path("enc.qcow");
    g_autofree char *theirs = test_tmp_path("qenc.qcow");
    g_autofree char *raw = test_tmp_path("enc.raw");
    uint8_t *model = g_malloc0(size);
    GError *err = NULL;
    diskimg_node *n;

    if (!diskimg_crypto_available()) {
        g_test_skip("no crypto plugin");
        g_free(model);
        return;
    }
    g_assert_cmpint(diskimg_object_add("secret,id=qk,data=sesame", &err), ==, 0);
    g_assert_no_error(err);
    tf_create(QCOW, ours, size, "encrypt.format=aes,encrypt.key-secret=qk");
    g_assert_null(tf_try_open(QCOW, ours, 0, NULL, &err));
    tf_assert_message(err, NULL, "encrypt.key-secret", NULL);
    g_clear_error(&err);
    n = tf_open(QCOW, ours, DISKIMG_OPEN_RDWR, "encrypt.key-secret=qk");
    tf_write_pattern(n, model, 0, 4096, 1);
    tf_write_pattern(n, model, 10000, 777, 2);                 /* unaligned: sectors merged */
    diskimg_close(n);
    n = tf_open(QCOW, ours, 0, "encrypt.key-secret=qk");
    tf_expect_model(n, model, size);
    diskimg_close(n);
    if (!tf_have_qemu()) {
        g_free(model);
        return;
    }
    tf_write_file(raw, model, size);
    g_autofree char *opts = g_strdup_printf("driver=qcow,encrypt.key-secret=qk,"
                                            "file.filename=%s", ours);
    g_autofree char *rawopts = g_strdup_printf("driver=raw,file.filename=%s", raw);
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "compare", "-q", "--object",
                           "secret,id=qk,data=sesame", "--image-opts", opts, rawopts), ==, 0);
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "convert", "--object",
                           "secret,id=qk,data=sesame", "-f", "raw", "-O", "qcow", "-o",
                           "encrypt.format=aes,encrypt.key-secret=qk", raw, theirs), ==, 0);
    n = tf_open(QCOW, theirs, 0, "encrypt.key-secret=qk");
    tf_expect_model(n, model, size);
    diskimg_close(n);
    g_free(model);
}

/* Patches 8 bytes big-endian at `off` of a file. */
static void patch_be64(const char *path, uint64_t off, uint64_t v)
{
    FILE *f = fopen(path, "r+b");
    uint8_t be[8];

    g_assert_nonnull(f);
    diskimg_put_be64(be, v);
    g_assert_cmpint(fseek(f, (long)off, SEEK_SET), ==, 0);
    g_assert_cmpuint(fwrite(be, 1, 8, f), ==, 8);
    fclose(f);
}

/* Damaged tables: one-line errors naming the file and what is wrong. */
static void test_corrupt(void)
{
    g_autofree char *path = test_tmp_path("bad.qcow");
    uint8_t model[4096] = { 0 }, buf[4096];
    GError *err = NULL;
    diskimg_node *n;
    uint64_t l2;

    tf_create(QCOW, path, 1 * MiB, NULL);
    n = tf_open(QCOW, path, DISKIMG_OPEN_RDWR, NULL);
    tf_write_pattern(n, model, 0, 4096, 1);
    diskimg_close(n);
    /* layout: header 48 bytes, L1 at 48 (1 entry), L2 table, data */
    FILE *f = fopen(path, "rb");
    uint8_t be[8];
    g_assert_nonnull(f);
    g_assert_cmpint(fseek(f, 48, SEEK_SET), ==, 0);
    g_assert_cmpuint(fread(be, 1, 8, f), ==, 8);
    fclose(f);
    l2 = diskimg_be64(be);
    g_assert_cmpuint(l2, ==, 4096);

    patch_be64(path, l2, 1ull << 40);                   /* data past EOF */
    n = tf_open(QCOW, path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, buf, 4096, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "bad.qcow", "beyond the end of the file");
    g_clear_error(&err);
    diskimg_close(n);

    patch_be64(path, l2, 8);                            /* data over the header */
    n = tf_open(QCOW, path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, buf, 4096, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "bad.qcow", "points into the ");
    g_clear_error(&err);
    diskimg_close(n);

    patch_be64(path, l2, l2);                           /* data over its L2 table */
    n = tf_open(QCOW, path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, buf, 4096, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "bad.qcow", "points into the L2 table");
    g_clear_error(&err);
    diskimg_close(n);

    patch_be64(path, l2, QCOW_OFLAG_COMPRESSED | (100ull << 51) | 8192);  /* bad deflate */
    n = tf_open(QCOW, path, 0, NULL);
    g_assert_cmpint(diskimg_node_pread(n, buf, 4096, 0, &err), ==, -1);
    tf_assert_message(err, NULL, "bad.qcow", "does not inflate");
    g_clear_error(&err);
    diskimg_close(n);

    patch_be64(path, 48, 1ull << 50);                   /* L2 table past EOF */
    g_assert_null(tf_try_open(QCOW, path, 0, NULL, &err));
    tf_assert_message(err, NULL, "bad.qcow", "L1 table entry 0");
    g_clear_error(&err);

    patch_be64(path, 48, 4097);                         /* misaligned L2 table */
    g_assert_null(tf_try_open(QCOW, path, 0, NULL, &err));
    tf_assert_message(err, NULL, "bad.qcow", "L1 table entry 0");
    g_clear_error(&err);

    g_assert_cmpint(truncate(path, 30), ==, 0);         /* truncated header */
    g_assert_null(tf_try_open(QCOW, path, 0, NULL, &err));
    tf_assert_message(err, NULL, "bad.qcow", "qcow header");
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "qcow", NULL);
    g_test_add_func("/qcow/header/good", test_header_good);
    g_test_add_func("/qcow/header/bad", test_header_bad);
    g_test_add_func("/qcow/image/roundtrip", test_roundtrip);
    g_test_add_func("/qcow/image/qemu-made", test_qemu_made);
    g_test_add_func("/qcow/image/compressed-write", test_compressed_write);
    g_test_add_func("/qcow/image/backing", test_backing);
    g_test_add_func("/qcow/image/encrypted", test_encrypted);
    g_test_add_func("/qcow/image/corrupt", test_corrupt);
    return tf_run_tests();
}
