/* SPDX-License-Identifier: MIT */
/*
 * test-dmg.c — unit tests of the dmg plugin.  UDIF images are built here
 * (chunks of every type, block tables in the XML property list or in the
 * resource fork) and read through the core with this build's modules; the
 * parsers are also called directly.  Where qemu-img and dmg2img are
 * installed, their reading of the same images is the reference.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <zlib.h>
#ifdef HAVE_BZIP2
#include <bzlib.h>
#endif

#include <diskimg/core.h>

#include "dmg.h"
#include "test-format.h"

#define SECTOR 512u

/* ---------------------------------------------------------------- builder */

struct entry {
    uint32_t type;
    uint64_t sector, sectors, offset, length;
};

struct builder {
    GByteArray *fork;          /* the data fork */
    GArray *entries;           /* struct entry */
    GByteArray *expect;        /* the guest view */
    uint64_t sectors;
};

static struct builder *builder_new(void)
{
    struct builder *b = g_new0(struct builder, 1);

    b->fork = g_byte_array_new();
    b->entries = g_array_new(FALSE, TRUE, sizeof(struct entry));
    b->expect = g_byte_array_new();
    return b;
}

static void builder_free(struct builder *b)
{
    g_byte_array_free(b->fork, TRUE);
    g_array_free(b->entries, TRUE);
    g_byte_array_free(b->expect, TRUE);
    g_free(b);
}

/* Appends a chunk of `sectors` sectors whose guest bytes are `guest`
 * (NULL: zeroes) and whose stored bytes are `stored`. */
static void add_entry(struct builder *b, uint32_t type, uint64_t sectors, const uint8_t *guest,
                      const uint8_t *stored, size_t stored_len)
{
    struct entry e = { type, b->sectors, sectors, b->fork->len, stored_len };

    g_array_append_val(b->entries, e);
    if (stored_len)
        g_byte_array_append(b->fork, stored, (guint)stored_len);
    if (guest) {
        g_byte_array_append(b->expect, guest, (guint)(sectors * SECTOR));
    } else {
        g_autofree uint8_t *z = g_malloc0(sectors * SECTOR);
        g_byte_array_append(b->expect, z, (guint)(sectors * SECTOR));
    }
    b->sectors += sectors;
}

/* Entries that describe no data (comment, terminator) take no sectors. */
static void add_marker(struct builder *b, uint32_t type)
{
    struct entry e = { type, b->sectors, 0, b->fork->len, 0 };

    g_array_append_val(b->entries, e);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        /* Half compressible text, half noise. */
        x = x * 1103515245u + 12345u;
        buf[i] = (i / 4096) % 2 ? (uint8_t)(x >> 16) : (uint8_t)("dmg chunk "[i % 10]);
    }
}

static void add_raw(struct builder *b, uint64_t sectors, unsigned seed)
{
    g_autofree uint8_t *d = g_malloc(sectors * SECTOR);

    fill(d, sectors * SECTOR, seed);
    add_entry(b, DMG_CHUNK_RAW, sectors, d, d, sectors * SECTOR);
}

static void add_zero(struct builder *b, uint32_t type, uint64_t sectors)
{
    add_entry(b, type, sectors, NULL, NULL, 0);
}

static void add_zlib(struct builder *b, uint64_t sectors, unsigned seed)
{
    size_t len = sectors * SECTOR;
    g_autofree uint8_t *d = g_malloc(len);
    uLongf clen = compressBound(len);
    g_autofree uint8_t *z = g_malloc(clen);

    fill(d, len, seed);
    g_assert_cmpint(compress2(z, &clen, d, len, 6), ==, Z_OK);
    add_entry(b, DMG_CHUNK_ZLIB, sectors, d, z, clen);
}

#ifdef HAVE_BZIP2
static void add_bzip2(struct builder *b, uint64_t sectors, unsigned seed)
{
    size_t len = sectors * SECTOR;
    g_autofree uint8_t *d = g_malloc(len);
    unsigned clen = (unsigned)(len + len / 100 + 600);
    g_autofree uint8_t *z = g_malloc(clen);

    fill(d, len, seed);
    g_assert_cmpint(BZ2_bzBuffToBuffCompress((char *)z, &clen, (char *)d, (unsigned)len, 9, 0,
                                             0), ==, BZ_OK);
    add_entry(b, DMG_CHUNK_BZIP2, sectors, d, z, clen);
}
#endif

/* A small ADC encoder: runs of one byte become long matches at distance
 * 1 (after one literal), repeats of the previous 8 bytes short matches at
 * distance 8, everything else literal runs. */
static size_t adc_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t i = 0, o = 0, lit_start = 0;

#define FLUSH_LITERALS()                                                          \
    while (lit_start < i) {                                                       \
        size_t n = MIN(i - lit_start, (size_t)128);                               \
        out[o++] = (uint8_t)(0x80 | (n - 1));                                     \
        memcpy(out + o, in + lit_start, n);                                       \
        o += n;                                                                   \
        lit_start += n;                                                           \
    }
    while (i < len) {
        size_t run = 0;

        if (i >= 1)
            while (i + run < len && run < 67 && in[i + run] == in[i - 1])
                run++;
        if (run >= 4) {
            FLUSH_LITERALS();
            out[o++] = (uint8_t)(0x40 | (run - 4));
            out[o++] = 0;
            out[o++] = 0;          /* distance 1 */
            i += run;
            lit_start = i;
            continue;
        }
        run = 0;
        if (i >= 8)
            while (i + run < len && run < 18 && in[i + run] == in[i + run - 8])
                run++;
        if (run >= 3) {
            FLUSH_LITERALS();
            out[o++] = (uint8_t)(((run - 3) << 2) | 0);
            out[o++] = 7;          /* distance 8 */
            i += run;
            lit_start = i;
            continue;
        }
        i++;
    }
    FLUSH_LITERALS();
#undef FLUSH_LITERALS
    return o;
}

static void add_adc(struct builder *b, uint64_t sectors, unsigned seed)
{
    size_t len = sectors * SECTOR;
    g_autofree uint8_t *d = g_malloc(len);
    g_autofree uint8_t *z = g_malloc(len + len / 128 + 16);

    fill(d, len, seed);
    /* Runs and period-8 repeats for the match codes. */
    memset(d + 100, 0xab, 300);
    for (size_t i = 1000; i < 1400; i++)
        d[i] = (uint8_t)(i % 8);
    add_entry(b, DMG_CHUNK_ADC, sectors, d, z, adc_encode(d, len, z));
}

/* The mish block of the entries (relative to sector 0 and offset 0). */
static GByteArray *mish_blob(const struct builder *b, uint64_t data_offset)
{
    GByteArray *m = g_byte_array_new();
    uint8_t hdr[204] = { 0 };

    memcpy(hdr, "mish", 4);
    diskimg_put_be32(hdr + 4, 1);
    diskimg_put_be64(hdr + 0x10, b->sectors);
    diskimg_put_be64(hdr + 0x18, data_offset);
    diskimg_put_be32(hdr + 0xc8, b->entries->len);
    g_byte_array_append(m, hdr, sizeof(hdr));
    for (guint i = 0; i < b->entries->len; i++) {
        const struct entry *e = &g_array_index(b->entries, struct entry, i);
        uint8_t c[40] = { 0 };

        diskimg_put_be32(c, e->type);
        diskimg_put_be64(c + 8, e->sector);
        diskimg_put_be64(c + 16, e->sectors);
        diskimg_put_be64(c + 24, e->offset - data_offset);
        diskimg_put_be64(c + 32, e->length);
        g_byte_array_append(m, c, sizeof(c));
    }
    return m;
}

/* A property list with the blob as blkx entry, as Apple writes them
 * (base64 wrapped over lines, comments and attributes around). */
static char *plist_xml(const GByteArray *mish)
{
    g_autofree char *b64 = g_base64_encode(mish->data, mish->len);
    GString *wrapped = g_string_new(NULL);

    for (size_t i = 0, n = strlen(b64); i < n; i += 52)
        g_string_append_printf(wrapped, "\n\t\t\t\t%.52s", b64 + i);
    g_autofree char *data = g_string_free(wrapped, FALSE);
    return g_strdup_printf(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
        "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
        "<plist version=\"1.0\">\n<dict>\n"
        "\t<!-- <data>not a block table</data> -->\n"
        "\t<key>other</key>\n\t<array><data>AAAA</data><true/></array>\n"
        "\t<key>resource-fork</key>\n\t<dict>\n"
        "\t\t<key>blkx</key>\n\t\t<array>\n\t\t\t<dict>\n"
        "\t\t\t\t<key>Attributes</key>\n\t\t\t\t<string>0x0050</string>\n"
        "\t\t\t\t<key>Data</key>\n\t\t\t\t<data>%s\n\t\t\t\t</data>\n"
        "\t\t\t\t<key>Name</key>\n\t\t\t\t<string>whole disk (test &amp; more)</string>\n"
        "\t\t\t</dict>\n\t\t</array>\n\t\t<key>plst</key>\n\t\t<array/>\n"
        "\t</dict>\n</dict>\n</plist>\n", data);
}

/* A resource fork: 16-byte header, the data (one resource: the mish
 * block, preceded by a resource that is not one), a dummy map. */
static GByteArray *rsrc_fork(const GByteArray *mish)
{
    GByteArray *r = g_byte_array_new();
    uint8_t hdr[256] = { 0 }, len[4], other[8] = "plst....";
    uint32_t data_len = 4 + sizeof(other) + 4 + mish->len;

    diskimg_put_be32(hdr, 256);
    diskimg_put_be32(hdr + 4, 256 + data_len);
    diskimg_put_be32(hdr + 8, data_len);
    diskimg_put_be32(hdr + 12, 16);
    g_byte_array_append(r, hdr, sizeof(hdr));
    diskimg_put_be32(len, sizeof(other));
    g_byte_array_append(r, len, 4);
    g_byte_array_append(r, other, sizeof(other));
    diskimg_put_be32(len, mish->len);
    g_byte_array_append(r, len, 4);
    g_byte_array_append(r, mish->data, mish->len);
    g_byte_array_append(r, hdr, 16);   /* the map, ignored */
    return r;
}

enum table_place { IN_PLIST, IN_RSRC };

/* The image: data fork, block table (after `change`, when not NULL, edited
 * the mish blob), trailer. */
static GByteArray *build_changed(const struct builder *b, enum table_place place,
                                 void (*change)(GByteArray *m))
{
    GByteArray *img = g_byte_array_new();
    g_autoptr(GByteArray) mish = mish_blob(b, 0);
    uint8_t koly[512] = { 0 };
    uint64_t table_at;
    size_t table_len;

    if (change)
        change(mish);
    g_byte_array_append(img, b->fork->data, b->fork->len);
    table_at = img->len;
    if (place == IN_PLIST) {
        g_autofree char *xml = plist_xml(mish);
        table_len = strlen(xml);
        g_byte_array_append(img, (const guint8 *)xml, (guint)table_len);
    } else {
        g_autoptr(GByteArray) r = rsrc_fork(mish);
        table_len = r->len;
        g_byte_array_append(img, r->data, r->len);
    }
    memcpy(koly, "koly", 4);
    diskimg_put_be32(koly + 4, 4);
    diskimg_put_be32(koly + 8, 512);
    diskimg_put_be64(koly + 0x20, b->fork->len);
    diskimg_put_be64(koly + (place == IN_PLIST ? 0xd8 : 0x28), table_at);
    diskimg_put_be64(koly + (place == IN_PLIST ? 0xe0 : 0x30), table_len);
    diskimg_put_be32(koly + 0x1e8, 1);
    diskimg_put_be64(koly + 0x1ec, b->sectors);
    g_byte_array_append(img, koly, sizeof(koly));
    return img;
}

static GByteArray *build(const struct builder *b, enum table_place place)
{
    return build_changed(b, place, NULL);
}

static char *write_image(const char *name, const GByteArray *img)
{
    char *path = test_tmp_path(name);

    tf_write_file(path, img->data, img->len);
    return path;
}

/* Every chunk type this build reads, a zlib chunk larger than the decoder
 * window, and markers that take no sectors. */
static struct builder *all_types(void)
{
    struct builder *b = builder_new();

    add_raw(b, 7, 1);
    add_zero(b, DMG_CHUNK_ZERO, 300);
    add_marker(b, DMG_CHUNK_COMMENT);
    add_zlib(b, 128, 2);
    add_zero(b, DMG_CHUNK_IGNORE, 64);
    add_adc(b, 40, 3);
#ifdef HAVE_BZIP2
    add_bzip2(b, 200, 4);
#endif
    add_zlib(b, 6000, 5);          /* 3 MiB: several windows */
    add_raw(b, 1, 6);
    add_marker(b, DMG_CHUNK_TERMINATOR);
    return b;
}

static void assert_reads_steps(const char *path, const GByteArray *expect, size_t n_steps)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open("dmg", path, 0, NULL, &err);
    size_t len = 0;

    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_size(n, NULL), ==, expect->len);
    /* Whole, in odd steps that straddle chunks and windows, then backwards
     * (each read restarts the decoder of a large chunk). */
    static const size_t steps[] = { 1u << 20, 3000, 512 };
    for (size_t i = 0; i < MIN(n_steps, G_N_ELEMENTS(steps)); i++) {
        g_autofree uint8_t *got = tf_read_all_step(n, steps[i], &len, &err);
        g_assert_no_error(err);
        g_assert_cmpmem(got, len, expect->data, expect->len);
    }
    /* Pieces out of order, as convert's parallel requests arrive: each
     * pair of 1.5 MiB pieces second first. */
    for (uint64_t off = 0; off + 3 * (768u << 10) <= expect->len; off += 3 * (768u << 10)) {
        g_autofree uint8_t *piece = g_malloc(3 * (768u << 10));
        uint64_t half = 3 * (384u << 10);

        g_assert_cmpint(diskimg_node_pread(n, piece + half, half, off + half, &err), ==, 0);
        g_assert_cmpint(diskimg_node_pread(n, piece, half, off, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpmem(piece, 2 * half, expect->data + off, 2 * half);
    }
    for (uint64_t off = expect->len; off >= 70000;) {
        uint8_t buf[5000];

        off -= 70000;
        g_assert_cmpint(diskimg_node_pread(n, buf, sizeof(buf), off, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpmem(buf, sizeof(buf), expect->data + off, sizeof(buf));
    }
    diskimg_close(n);
}

static void assert_reads(const char *path, const GByteArray *expect)
{
    assert_reads_steps(path, expect, 3);
}

/* ------------------------------------------------------------------ tests */

static void test_read_plist(void)
{
    struct builder *b = all_types();
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("all.dmg", img);

    assert_reads(path, b->expect);
    builder_free(b);
}

static void test_read_rsrc(void)
{
    struct builder *b = all_types();
    g_autoptr(GByteArray) img = build(b, IN_RSRC);
    g_autofree char *path = write_image("rsrc.dmg", img);

    assert_reads(path, b->expect);
    builder_free(b);
}

/* Two partitions, each a mish block with its own first sector and data
 * offset; the disk's second partition comes first in the file. */
static GByteArray *two_partitions(struct builder *a, struct builder *b, bool disk_order)
{
    GByteArray *img = g_byte_array_new();
    uint8_t koly[512] = { 0 };
    g_autoptr(GByteArray) ma = mish_blob(a, 0);
    g_autoptr(GByteArray) mb = mish_blob(b, 0);

    /* a: sectors 8.. of the disk, data at 0; b: sectors 0..7, data after a's */
    diskimg_put_be64(ma->data + 0x08, b->sectors);
    diskimg_put_be64(mb->data + 0x18, a->fork->len);
    g_autofree char *xa = plist_xml(ma);
    g_autofree char *xb = plist_xml(mb);
    /* One list of both blkx entries: the entry of one spliced after the
     * entry of the other. */
    const char *first = disk_order ? xb : xa, *second = disk_order ? xa : xb;
    const char *e2 = strstr(second, "<dict>\n\t\t\t\t<key>Attributes");
    const char *e2_end = strstr(e2, "</dict>") + strlen("</dict>");
    const char *e1_end = strstr(strstr(first, "<key>Attributes"), "</dict>") + strlen("</dict>");
    g_autofree char *xml = g_strdup_printf("%.*s\n%.*s%s", (int)(e1_end - first), first,
                                           (int)(e2_end - e2), e2, e1_end);
    uint64_t xml_at;

    g_byte_array_append(img, a->fork->data, a->fork->len);
    g_byte_array_append(img, b->fork->data, b->fork->len);
    xml_at = img->len;
    g_byte_array_append(img, (const guint8 *)xml, (guint)strlen(xml));
    memcpy(koly, "koly", 4);
    diskimg_put_be64(koly + 0xd8, xml_at);
    diskimg_put_be64(koly + 0xe0, strlen(xml));
    diskimg_put_be64(koly + 0x1ec, a->sectors + b->sectors);
    g_byte_array_append(img, koly, sizeof(koly));
    return img;
}

static void test_partitions(void)
{
    struct builder *a = builder_new(), *b = builder_new();
    GByteArray *expect = g_byte_array_new();
    size_t qlen;

    add_raw(a, 4, 1);
    add_zlib(b, 8, 2);
    g_byte_array_append(expect, b->expect->data, b->expect->len);
    g_byte_array_append(expect, a->expect->data, a->expect->len);

    /* Listed in disk order: qemu-img reads it the same. */
    g_autoptr(GByteArray) img = two_partitions(a, b, true);
    g_autofree char *path = write_image("parts.dmg", img);
    assert_reads(path, expect);
    g_autofree uint8_t *ref = tf_qemu_convert("dmg", path, &qlen);
    if (ref)
        g_assert_cmpmem(ref, qlen, expect->data, expect->len);

    /* Listed in the other order: the table is sorted (qemu 7.2 searches it
     * unsorted and fails to read). */
    g_autoptr(GByteArray) img2 = two_partitions(a, b, false);
    g_autofree char *path2 = write_image("parts-reversed.dmg", img2);
    assert_reads(path2, expect);

    g_byte_array_free(expect, TRUE);
    builder_free(a);
    builder_free(b);
}

/* The image probes as dmg by its name, as in qemu, and is read-only. */
static void test_probe_and_read_only(void)
{
    struct builder *b = builder_new();
    GError *err = NULL;
    diskimg_node *n;

    add_raw(b, 8, 9);
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("probe.dmg", img);
    n = tf_try_open(NULL, path, 0, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "dmg");
    g_assert_true(diskimg_node_capabilities(n) & DISKIMG_CAP_READ_ONLY);
    g_assert_false(diskimg_node_is_writable(n));
    diskimg_close(n);

    n = tf_try_open("dmg", path, DISKIMG_OPEN_RDWR, NULL, &err);
    g_assert_null(n);
    tf_assert_message(err, path, "read-only", NULL);
    g_clear_error(&err);
    g_assert_true(diskimg_format_capabilities("dmg") & DISKIMG_CAP_READ_ONLY);
    builder_free(b);
}

/* Block status: data everywhere as qemu-img map shows, extents ending at
 * chunk boundaries. */
static void test_block_status(void)
{
    struct builder *b = builder_new();
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;

    add_raw(b, 8, 1);
    add_zero(b, DMG_CHUNK_ZERO, 16);
    add_zlib(b, 8, 2);
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("bs.dmg", img);
    diskimg_node *n = tf_try_open("dmg", path, 0, NULL, &err);

    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_block_status(n, 0, 32 * SECTOR, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_ZERO), ==,
                     DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED);
    g_assert_cmpuint(ext.length, ==, 8 * SECTOR);
    g_assert_cmpint(diskimg_node_block_status(n, 10 * SECTOR, 22 * SECTOR, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.length, ==, 14 * SECTOR);
    diskimg_close(n);
    builder_free(b);
}

static void test_lzfse_unsupported(void)
{
    struct builder *b = builder_new();
    const uint8_t junk[64] = "bvx2";

    add_raw(b, 4, 1);
    add_entry(b, DMG_CHUNK_LZFSE, 8, NULL, junk, sizeof(junk));
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("lzfse.dmg", img);

    tf_expect_read_error(path, "dmg", "unsupported chunk type lzfse");
    builder_free(b);
}

/* qemu-img (which reads zero, raw, ignore and zlib chunks without its
 * block-extra modules) sees the same bytes. */
static void test_against_qemu(void)
{
    struct builder *b = builder_new();
    size_t qlen;

    add_raw(b, 9, 1);
    add_zero(b, DMG_CHUNK_ZERO, 200);
    add_zlib(b, 333, 2);
    add_zero(b, DMG_CHUNK_IGNORE, 20);
    add_zlib(b, 4000, 3);
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("qemu.dmg", img);
    g_autofree uint8_t *ref = tf_qemu_convert("dmg", path, &qlen);

    if (!ref) {
        g_test_skip("qemu-img is not installed");
        builder_free(b);
        return;
    }
    g_assert_cmpmem(ref, qlen, b->expect->data, b->expect->len);
    assert_reads(path, b->expect);

    /* ... also from the resource fork. */
    g_autoptr(GByteArray) img2 = build(b, IN_RSRC);
    g_autofree char *path2 = write_image("qemu-rsrc.dmg", img2);
    g_autofree uint8_t *ref2 = tf_qemu_convert("dmg", path2, &qlen);
    g_assert_cmpmem(ref2, qlen, b->expect->data, b->expect->len);
    assert_reads(path2, b->expect);
    builder_free(b);
}

/* dmg2img, an independent reader, makes the same bytes of every chunk type
 * it knows. */
static void test_against_dmg2img(void)
{
    g_autofree char *tool = g_find_program_in_path("dmg2img");
    struct builder *b;

    if (!tool) {
        g_test_skip("dmg2img is not installed");
        return;
    }
    b = all_types();
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("d2i.dmg", img);
    g_autofree char *out = test_tmp_path("d2i.raw");
    const char *argv[] = { tool, "-s", path, out, NULL };
    GError *err = NULL;
    int status;
    gchar *got = NULL;
    gsize len;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                               NULL, NULL, NULL, &status, &err));
    g_assert_no_error(err);
    g_assert_true(g_spawn_check_wait_status(status, NULL));
    g_assert_true(g_file_get_contents(out, &got, &len, &err));
    g_assert_cmpmem(got, len, b->expect->data, b->expect->len);
    g_free(got);
    g_unlink(out);
    builder_free(b);
}

/* A zlib chunk of 100 MiB, which qemu-img 7.2 refuses (it caps chunks at
 * 64 MiB), read through the fixed decoder window. */
static void test_large_chunk(void)
{
    struct builder *b = builder_new();
    size_t len = 100u << 20;
    g_autofree uint8_t *d = g_malloc0(len);
    uLongf clen = compressBound(len);
    g_autofree uint8_t *z = g_malloc(clen);
    g_autofree char *qemu = g_find_program_in_path("qemu-img");

    for (size_t off = 0; off < len; off += 3u << 20)
        fill(d + off, 4096, (unsigned)(off >> 20));
    g_assert_cmpint(compress2(z, &clen, d, len, 1), ==, Z_OK);
    add_raw(b, 3, 1);
    add_entry(b, DMG_CHUNK_ZLIB, len / SECTOR, d, z, clen);
    g_autoptr(GByteArray) img = build(b, IN_PLIST);
    g_autofree char *path = write_image("large.dmg", img);
    assert_reads_steps(path, b->expect, 1);
    if (!qemu)
        g_test_skip("qemu-img is not installed: its refusal of the image is not checked");
    if (qemu) {
        const char *argv[] = { qemu, "info", "-f", "dmg", path, NULL };
        g_autofree char *err_text = NULL;
        int status;

        g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                                   NULL, NULL, &err_text, &status, NULL));
        g_assert_false(g_spawn_check_wait_status(status, NULL));
        g_assert_nonnull(strstr(err_text, "is larger than max"));
    }
    builder_free(b);
}

/* ---------------------------------------------------------- corrupt images */

/* A small valid image to damage: raw, zero, zlib, ADC chunks. */
static struct builder *small(void)
{
    struct builder *b = builder_new();

    add_raw(b, 4, 1);
    add_zero(b, DMG_CHUNK_ZERO, 4);
    add_zlib(b, 16, 2);
    add_adc(b, 8, 3);
    return b;
}

static GByteArray *koly_set(GByteArray *img, size_t field, uint64_t v)
{
    diskimg_put_be64(img->data + img->len - 512 + field, v);
    return img;
}

static void expect_open(const char *name, GByteArray *img, const char *substring)
{
    g_autofree char *path = write_image(name, img);

    tf_expect_open_error(path, "dmg", substring);
    g_byte_array_free(img, TRUE);
}

static void expect_read(const char *name, GByteArray *img, const char *substring)
{
    g_autofree char *path = write_image(name, img);

    tf_expect_read_error(path, "dmg", substring);
    g_byte_array_free(img, TRUE);
}

static void test_corrupt_trailer(void)
{
    struct builder *b = small();
    GByteArray *img = build(b, IN_PLIST);
    GByteArray *tiny = g_byte_array_new();

    g_byte_array_append(tiny, img->data + img->len - 100, 100);
    expect_open("tiny.dmg", tiny, "at least 512 bytes");

    GByteArray *nokoly = build(b, IN_PLIST);
    memcpy(nokoly->data + nokoly->len - 512, "kolx", 4);
    expect_open("nokoly.dmg", nokoly, "Could not locate UDIF trailer");

    /* Cut inside the trailer: it is no longer where it must be. */
    GByteArray *cut = build(b, IN_PLIST);
    g_byte_array_set_size(cut, cut->len - 300);
    expect_open("cut.dmg", cut, "Could not locate UDIF trailer");

    expect_open("xmloff.dmg", koly_set(build(b, IN_PLIST), 0xd8, img->len),
                "property list");
    expect_open("xmllen.dmg", koly_set(build(b, IN_PLIST), 0xe0, UINT64_MAX - 5),
                "property list");
    expect_open("none.dmg", koly_set(build(b, IN_PLIST), 0xe0, 0), "neither");
    expect_open("sectors.dmg", koly_set(build(b, IN_PLIST), 0x1ec, UINT64_MAX / 2),
                "SectorCount");
    expect_open("fork.dmg", koly_set(build(b, IN_PLIST), 0x18, img->len), "DataForkOffset");
    expect_open("rsrcoff.dmg", koly_set(build(b, IN_RSRC), 0x28, UINT64_MAX - 1),
                "resource fork");
    /* A disk smaller than its chunks. */
    expect_open("small.dmg", koly_set(build(b, IN_PLIST), 0x1ec, 10), "beyond the disk");
    g_byte_array_free(img, TRUE);
    builder_free(b);
}

/* Replaces the first occurrence of `from` in the image by `to` (same
 * length), in the plist text. */
static GByteArray *patch_text(GByteArray *img, const char *from, const char *to)
{
    size_t n = strlen(from);

    g_assert_cmpuint(n, ==, strlen(to));
    for (size_t i = 0; i + n <= img->len; i++) {
        if (memcmp(img->data + i, from, n) == 0) {
            memcpy(img->data + i, to, n);
            return img;
        }
    }
    g_error("'%s' not found in the image", from);
}

static void test_corrupt_plist(void)
{
    struct builder *b = small();

    expect_open("unterminated.dmg", patch_text(build(b, IN_PLIST), "</plist>", "</plisx>"),
                "end tag does not match");
    expect_open("noblkx.dmg", patch_text(build(b, IN_PLIST), "<key>blkx<", "<key>blkz<"),
                "no \"blkx\" array");
    expect_open("nodata.dmg",
                patch_text(build(b, IN_PLIST), "<key>Data</key>", "<key>Dat_</key>"),
                "has no \"Data\"");
    expect_open("base64.dmg", patch_text(build(b, IN_PLIST), "\t\t\t\tbWlza", "\t\t\t\tb!lza"),
                "invalid base64");
    expect_open("fork.dmg",
                patch_text(build(b, IN_PLIST), "resource-fork", "resource-fark"),
                "no \"resource-fork\"");
    expect_open("notplist.dmg", patch_text(build(b, IN_PLIST), "<plist", "<plisx"),
                "end tag does not match");
    builder_free(b);
}

/* Builds the image after `change` edited the mish blob. */
static GByteArray *with_mish(struct builder *b, void (*change)(GByteArray *m),
                             enum table_place place)
{
    return build_changed(b, place, change);
}

#define CHUNK(i) (204 + 40 * (i))
static void bad_magic(GByteArray *m) { memcpy(m->data, "mosh", 4); }
static void absurd_count(GByteArray *m) { diskimg_put_be32(m->data + 0xc8, 0x7fffffff); }
static void offset_past_eof(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(2) + 24, 1u << 30); }
static void length_past_eof(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(2) + 32, UINT64_MAX); }
static void sector_past_disk(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(3) + 8, 1u << 20); }
static void overlapping(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(1) + 8, 2); }
static void raw_short(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(0) + 32, 100); }
static void gap(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(1) + 16, 2); }
static void huge_sectors(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(2) + 16, UINT64_MAX); }
static void truncated_blob(GByteArray *m) { g_byte_array_set_size(m, 100); }
static void empty_zlib(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(2) + 32, 0); }
static void short_zlib(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(2) + 32, 20); }
static void zlib_longer(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(1) + 16, 40); }
static void adc_longer(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(1) + 16, 9); }
static void adc_much_longer(GByteArray *m) { diskimg_put_be64(m->data + CHUNK(1) + 16, 4000); }

static void test_corrupt_tables(void)
{
    struct builder *b = small();

    expect_open("magic.dmg", with_mish(b, bad_magic, IN_PLIST), "bad magic");
    expect_open("count.dmg", with_mish(b, absurd_count, IN_PLIST), "chunk count");
    expect_open("count-rsrc.dmg", with_mish(b, absurd_count, IN_RSRC), "chunk count");
    expect_open("offset.dmg", with_mish(b, offset_past_eof, IN_PLIST),
                "lies beyond the end of the file");
    expect_open("length.dmg", with_mish(b, length_past_eof, IN_PLIST),
                "lies beyond the end of the file");
    expect_open("sector.dmg", with_mish(b, sector_past_disk, IN_PLIST), "beyond the disk");
    expect_open("huge.dmg", with_mish(b, huge_sectors, IN_PLIST), "beyond the disk");
    expect_open("overlap.dmg", with_mish(b, overlapping, IN_PLIST), "overlap");
    expect_open("rawshort.dmg", with_mish(b, raw_short, IN_PLIST), "raw chunk stores");
    expect_open("blob.dmg", with_mish(b, truncated_blob, IN_PLIST), "mish block");
    expect_open("zempty.dmg", with_mish(b, empty_zlib, IN_PLIST), "is empty");
    /* Damage only found when the data is decoded. */
    expect_read("gap.dmg", with_mish(b, gap, IN_PLIST), "no chunk describes sector 6");
    expect_read("zshort.dmg", with_mish(b, short_zlib, IN_PLIST), "truncated");
    builder_free(b);

    /* A last chunk claiming more sectors than its stream holds (the disk
     * grown to match, so that only decoding finds it). */
    b = builder_new();
    add_raw(b, 4, 1);
    add_zlib(b, 16, 2);
    GByteArray *img = with_mish(b, zlib_longer, IN_PLIST);
    koly_set(img, 0x1ec, 44);
    expect_read("zlong.dmg", img, "ends early");
    builder_free(b);

    b = builder_new();
    add_raw(b, 4, 1);
    add_adc(b, 8, 3);
    img = with_mish(b, adc_longer, IN_PLIST);
    koly_set(img, 0x1ec, 13);
    expect_read("adclong.dmg", img, "ends early");
    img = with_mish(b, adc_much_longer, IN_PLIST);
    koly_set(img, 0x1ec, 4004);
    expect_read("adchuge.dmg", img, "cannot expand");
    builder_free(b);
}

static void test_corrupt_streams(void)
{
    struct builder *b = small();
    const struct entry *zl = &g_array_index(b->entries, struct entry, 2);
    const struct entry *adc = &g_array_index(b->entries, struct entry, 3);
    GByteArray *img = build(b, IN_PLIST);

    /* zlib header byte, then a reserved block type */
    img->data[zl->offset + 2] ^= 0xff;
    img->data[zl->offset + 3] ^= 0xff;
    expect_read("zbad.dmg", img, "bad compressed stream");

    img = build(b, IN_PLIST);
    /* a match reaching before the start of the output */
    img->data[adc->offset] = 0x40;
    img->data[adc->offset + 1] = 0xff;
    img->data[adc->offset + 2] = 0xff;
    expect_read("adcbad.dmg", img, "invalid ADC code");
    builder_free(b);
}

/* The chunk reader of this build, called directly on a bzip2 chunk: it
 * decodes it with libbz2, and without libbz2 it fails clearly (the second
 * test program, test-dmg-nobz2, is built without it). */
static void test_reader_bzip2(void)
{
    uint8_t guest[8192];
    g_autofree char *path = test_tmp_path("bz2.bin");
    struct dmg_chunk c = { DMG_CHUNK_BZIP2, 0, sizeof(guest) / SECTOR, 0, 0 };
    uint8_t got[sizeof(guest)];
    GError *err = NULL;

    fill(guest, sizeof(guest), 7);
#ifdef HAVE_BZIP2
    unsigned clen = sizeof(guest) * 2;
    g_autofree uint8_t *z = g_malloc(clen);
    g_assert_cmpint(BZ2_bzBuffToBuffCompress((char *)z, &clen, (char *)guest, sizeof(guest), 9,
                                             0, 0), ==, BZ_OK);
#else
    unsigned clen = 64;
    g_autofree uint8_t *z = g_malloc0(clen);
    memcpy(z, "BZh9", 4);
#endif
    c.length = clen;
    tf_write_file(path, z, clen);
    diskimg_node *file = tf_try_open("raw", path, 0, NULL, &err);
    g_assert_no_error(err);
    dmg_reader *r = dmg_reader_new(file, "bz2.bin", &err);
    g_assert_no_error(err);
    int ret = dmg_reader_read(r, &c, 1000, got, sizeof(guest) - 1000, &err);
#ifdef HAVE_BZIP2
    g_assert_no_error(err);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpmem(got, sizeof(guest) - 1000, guest + 1000, sizeof(guest) - 1000);
    g_assert_true(dmg_reader_supports(DMG_CHUNK_BZIP2));
#else
    g_assert_cmpint(ret, ==, -1);
    tf_assert_message(err, "bz2.bin", "no bzip2 support (libbz2)", NULL);
    g_clear_error(&err);
    g_assert_false(dmg_reader_supports(DMG_CHUNK_BZIP2));
#endif
    dmg_reader_free(r);
    diskimg_close(file);
}

/* -------------------------------------------------------- parser details */

static int count_blob(void *opaque, unsigned index, const uint8_t *data, size_t len,
                      GError **errp)
{
    GString *s = opaque;

    (void)errp;
    g_string_append_printf(s, "%u:%.*s;", index, (int)len, (const char *)data);
    return 0;
}

static void test_plist_parser(void)
{
    static const struct {
        const char *xml, *result, *error;
    } cases[] = {
        { "<plist><dict><key>resource-fork</key><dict><key>blkx</key><array>"
          "<dict><key>Data</key><data>YWJj</data></dict>"
          "<dict><key>Name</key><string>x</string><key>Data</key><data>\n ZGVm\n</data></dict>"
          "</array></dict></dict></plist>", "0:abc;1:def;", NULL },
        { "<?xml version='1.0'?><!DOCTYPE plist [ <!ENTITY x 'y'> ]><!-- c -->"
          "<plist a='>' b=\"/>\"><dict><key> resource-fork </key><dict><key>blkx</key>"
          "<array/></dict></dict></plist>", "", NULL },
        { "<plist><dict><key>resource-fork</key><dict><key>blkx</key><array>"
          "<string>x</string></array></dict></dict></plist>", NULL, "not a <dict>" },
        { "<plist><dict></plist>", NULL, "end tag does not match" },
        { "<plist><dict>", NULL, "document ends inside an element" },
        { "</plist>", NULL, "end tag without a start tag" },
        { "<plist><dict><!-- x", NULL, "unterminated comment" },
        { "<plist <dict>", NULL, "unterminated start tag" },
        { "<plist></plist>", NULL, "does not hold a <dict>" },
        { "<dict/>", NULL, "no <plist> element" },
        { "<plist><dict><key>resource-fork</key><dict><key>blkx</key><array><dict>"
          "<key>Data</key><data>YW=Jj</data></dict></array></dict></dict></plist>",
          NULL, "invalid base64" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        GString *s = g_string_new(NULL);
        GError *err = NULL;
        int ret = dmg_plist_blkx(cases[i].xml, strlen(cases[i].xml), count_blob, s, &err);

        if (cases[i].result) {
            g_assert_no_error(err);
            g_assert_cmpint(ret, ==, 0);
            g_assert_cmpstr(s->str, ==, cases[i].result);
        } else {
            g_assert_cmpint(ret, ==, -1);
            g_assert_nonnull(err);
            if (!strstr(err->message, cases[i].error))
                g_error("case %zu: \"%s\" lacks \"%s\"", i, err->message, cases[i].error);
            g_error_free(err);
        }
        g_string_free(s, TRUE);
    }

    /* Nesting is bounded. */
    GString *deep = g_string_new("<plist>");
    for (int i = 0; i < 100; i++)
        g_string_append(deep, "<array>");
    GError *err = NULL;
    g_assert_cmpint(dmg_plist_blkx(deep->str, deep->len, count_blob, NULL, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "nested too deeply"));
    g_clear_error(&err);
    g_string_free(deep, TRUE);

    /* So is the number of elements. */
    GString *wide = g_string_new("<plist><dict>");
    for (int i = 0; i < 100001; i++)
        g_string_append(wide, "<a/>");
    g_string_append(wide, "</dict></plist>");
    g_assert_cmpint(dmg_plist_blkx(wide->str, wide->len, count_blob, NULL, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "too many elements"));
    g_clear_error(&err);
    g_string_free(wide, TRUE);
}

int main(int argc, char **argv)
{
    tf_init(&argc, &argv, "dmg", NULL);

#ifndef HAVE_BZIP2
    /* test-dmg-nobz2: only what depends on libbz2 being absent. */
    if (g_getenv("DMG_TEST_NOBZ2")) {
        g_test_add_func("/dmg/reader/bzip2", test_reader_bzip2);
            return tf_run_tests();
    }
#endif

    g_test_add_func("/dmg/read/plist", test_read_plist);
    g_test_add_func("/dmg/read/rsrc-fork", test_read_rsrc);
    g_test_add_func("/dmg/read/large-chunk", test_large_chunk);
    g_test_add_func("/dmg/read/partitions", test_partitions);
    g_test_add_func("/dmg/probe-read-only", test_probe_and_read_only);
    g_test_add_func("/dmg/block-status", test_block_status);
    g_test_add_func("/dmg/lzfse", test_lzfse_unsupported);
    g_test_add_func("/dmg/against-qemu", test_against_qemu);
    g_test_add_func("/dmg/against-dmg2img", test_against_dmg2img);
    g_test_add_func("/dmg/corrupt/trailer", test_corrupt_trailer);
    g_test_add_func("/dmg/corrupt/plist", test_corrupt_plist);
    g_test_add_func("/dmg/corrupt/tables", test_corrupt_tables);
    g_test_add_func("/dmg/corrupt/streams", test_corrupt_streams);
    g_test_add_func("/dmg/plist-parser", test_plist_parser);
    g_test_add_func("/dmg/reader/bzip2", test_reader_bzip2);
    return tf_run_tests();
}
