/* SPDX-License-Identifier: MIT */
/*
 * test-luks.c — the luks format plugin through the core: create, read and
 * write (whole and partial sectors), resize, info, every cipher, mode and
 * IV generator the engine supports, amend of key slots with qemu's
 * refusals, damaged headers, and interop with qemu-img and cryptsetup
 * (skipped where they are not installed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <string.h>
#include <sys/stat.h>

#include <diskimg/core.h>
#include <diskimg/crypto.h>

#include "test-tmpdir.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

static const diskimg_schema *schema;

/* ---------------------------------------------------------------- helpers */

static void add_secret(const char *def)
{
    GError *err = NULL;
    g_assert_cmpint(diskimg_object_add(def, &err), ==, 0);
    g_assert_no_error(err);
}

static diskimg_options *options(const char *set, const char *text)
{
    GError *err = NULL;
    diskimg_options *o = diskimg_options_new(schema, set);
    g_assert_cmpint(diskimg_options_parse(o, text, &err), ==, 0);
    g_assert_no_error(err);
    return o;
}

/* Creates a luks image with the create options `text`; -1 with *errp on
 * failure. */
static int try_create(const char *path, uint64_t size, const char *text, GError **errp)
{
    diskimg_options *o = options("create-options", text);
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = "luks", .options = o, .size = size,
    };
    int ret = diskimg_create(path, &p, errp);
    diskimg_options_free(o);
    return ret;
}

static void create(const char *path, uint64_t size, const char *text)
{
    GError *err = NULL;
    g_assert_cmpint(try_create(path, size, text, &err), ==, 0);
    g_assert_no_error(err);
}

/* Opens with open options `text` (NULL: none); NULL with *errp. */
static diskimg_node *try_open(const char *path, const char *text, unsigned flags,
                              GError **errp)
{
    diskimg_options *o = text ? options("open-options", text) : NULL;
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = "luks", .flags = flags, .format_options = o,
    };
    diskimg_node *n = diskimg_open(path, &p, errp);
    diskimg_options_free(o);
    return n;
}

static diskimg_node *open_image(const char *path, const char *text, unsigned flags)
{
    GError *err = NULL;
    diskimg_node *n = try_open(path, text, flags, &err);
    g_assert_no_error(err);
    g_assert_nonnull(n);
    return n;
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 31 + seed + i / 4099);
}

static void pwrite_ok(diskimg_node *n, const void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pwrite(n, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

static void pread_ok(diskimg_node *n, void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;
    g_assert_cmpint(diskimg_node_pread(n, buf, len, off, &err), ==, 0);
    g_assert_no_error(err);
}

static int64_t size_of(diskimg_node *n)
{
    GError *err = NULL;
    int64_t s = diskimg_node_size(n, &err);
    g_assert_no_error(err);
    return s;
}

static JsonObject *info_data(diskimg_node *n)
{
    GError *err = NULL;
    JsonObject *info = diskimg_image_info(n, &err);
    g_assert_no_error(err);
    g_assert_nonnull(info);
    return info;
}

/* format-specific.data of `info` (borrowed). */
static JsonObject *specific(JsonObject *info)
{
    JsonObject *fs = json_object_get_object_member(info, "format-specific");
    g_assert_nonnull(fs);
    g_assert_cmpstr(json_object_get_string_member(fs, "type"), ==, "luks");
    return json_object_get_object_member(fs, "data");
}

/* "10100000": which key slots are active. */
static char *slot_states(const char *path)
{
    diskimg_node *n = open_image(path, NULL, DISKIMG_OPEN_NO_IO);
    JsonObject *info = info_data(n);
    JsonArray *slots = json_object_get_array_member(specific(info), "slots");
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < json_array_get_length(slots); i++)
        g_string_append_c(s, json_object_get_boolean_member(
                                 json_array_get_object_element(slots, i), "active") ? '1' : '0');
    json_object_unref(info);
    diskimg_close(n);
    return g_string_free(s, FALSE);
}

static void assert_error_contains(GError *err, const char *text)
{
    g_assert_nonnull(err);
    if (!strstr(err->message, text))
        g_error("error '%s' does not contain '%s'", err->message, text);
    g_assert_null(strchr(err->message, '\n'));
}

/* ------------------------------------------------------------ round trips */

/* Writes a pattern in whole and partial sectors and reads it back through a
 * fresh open. */
static void test_round_trip(void)
{
    g_autofree char *path = test_tmp_path("rt.luks");
    const uint64_t size = 2 * MiB;
    uint8_t *data = g_malloc(size), *back = g_malloc(size);

    create(path, size, "key-secret=sec0,iter-time=10");
    fill_pattern(data, size, 1);
    diskimg_node *n = open_image(path, "key-secret=sec0", DISKIMG_OPEN_RDWR);
    g_assert_cmpint(size_of(n), ==, (int64_t)size);
    pwrite_ok(n, data, size, 0);
    /* partial sectors: head, tail, inside one sector, across two */
    fill_pattern(data + 100, 1000, 7);
    pwrite_ok(n, data + 100, 1000, 100);
    fill_pattern(data + 4096 + 5, 7, 9);
    pwrite_ok(n, data + 4096 + 5, 7, 4096 + 5);
    fill_pattern(data + MiB - 300, 600, 11);
    pwrite_ok(n, data + MiB - 300, 600, MiB - 300);
    diskimg_close(n);

    n = open_image(path, "key-secret=sec0", 0);
    pread_ok(n, back, size, 0);
    g_assert_cmpmem(back, size, data, size);
    memset(back, 0, 3000);
    pread_ok(n, back, 3000, 77);
    g_assert_cmpmem(back, 3000, data + 77, 3000);
    pread_ok(n, back, 3, 511);
    g_assert_cmpmem(back, 3, data + 511, 3);
    diskimg_close(n);

    /* the data is stored encrypted: the pattern is nowhere in the file */
    g_autofree char *raw = NULL;
    gsize raw_len = 0;
    g_assert_true(g_file_get_contents(path, &raw, &raw_len, NULL));
    g_assert_null(memmem(raw, raw_len, data + 8192, 64));
    g_free(data);
    g_free(back);
}

static void test_resize(void)
{
    g_autofree char *path = test_tmp_path("resize.luks");
    uint8_t buf[4096], back[4096];
    GError *err = NULL;

    create(path, 1 * MiB, "key-secret=sec0,iter-time=10");
    diskimg_node *n = open_image(path, "key-secret=sec0", DISKIMG_OPEN_RDWR);
    fill_pattern(buf, sizeof(buf), 3);
    pwrite_ok(n, buf, sizeof(buf), MiB - 4096);
    g_assert_cmpint(diskimg_node_truncate(n, 3 * MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(size_of(n), ==, 3 * MiB);
    pwrite_ok(n, buf, sizeof(buf), 3 * MiB - 4096);
    /* shrinking needs the flag */
    g_assert_cmpint(diskimg_node_truncate(n, MiB, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_truncate(n, 2 * MiB, DISKIMG_PREALLOC_OFF,
                                          DISKIMG_TRUNCATE_SHRINK, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);

    n = open_image(path, "key-secret=sec0", 0);
    g_assert_cmpint(size_of(n), ==, 2 * MiB);
    pread_ok(n, back, sizeof(back), MiB - 4096);
    g_assert_cmpmem(back, sizeof(back), buf, sizeof(buf));
    diskimg_close(n);

    /* the file is the payload offset plus the size */
    struct stat st;
    n = open_image(path, NULL, DISKIMG_OPEN_NO_IO);
    JsonObject *info = info_data(n);
    int64_t payload = json_object_get_int_member(specific(info), "payload-offset");
    json_object_unref(info);
    diskimg_close(n);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, payload + 2 * MiB);
}

/* A size that is not whole sectors: the file holds it exactly, the virtual
 * size is rounded up to the sector as qemu reports it. */
static void test_odd_size(void)
{
    g_autofree char *path = test_tmp_path("odd.luks");
    struct stat st;

    create(path, 1000, "key-secret=sec0,iter-time=10");
    diskimg_node *n = open_image(path, "key-secret=sec0", 0);
    g_assert_cmpint(size_of(n), ==, 1024);
    diskimg_close(n);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size % 512, ==, 1000 % 512);
}

/* ------------------------------------------------------------------ info */

static void test_info(void)
{
    g_autofree char *path = test_tmp_path("info.luks");

    create(path, MiB, "key-secret=sec0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,"
                      "ivgen-alg=essiv,ivgen-hash-alg=sha256,hash-alg=sha1");
    /* info needs no key */
    diskimg_node *n = open_image(path, NULL, DISKIMG_OPEN_NO_IO);
    JsonObject *info = info_data(n);
    g_assert_true(json_object_get_boolean_member(info, "encrypted"));
    g_assert_cmpint(json_object_get_int_member(info, "virtual-size"), ==, MiB);
    JsonObject *d = specific(info);
    g_assert_cmpstr(json_object_get_string_member(d, "cipher-alg"), ==, "aes-128");
    g_assert_cmpstr(json_object_get_string_member(d, "cipher-mode"), ==, "cbc");
    g_assert_cmpstr(json_object_get_string_member(d, "ivgen-alg"), ==, "essiv");
    g_assert_cmpstr(json_object_get_string_member(d, "ivgen-hash-alg"), ==, "sha256");
    g_assert_cmpstr(json_object_get_string_member(d, "hash-alg"), ==, "sha1");
    g_assert_cmpint(strlen(json_object_get_string_member(d, "uuid")), ==, 36);
    g_assert_cmpint(json_object_get_int_member(d, "master-key-iters"), >=, 1000);
    /* qemu's layout for a 16-byte key: 4 KiB header, 8 slots of
     * 64000 bytes rounded up to 4 KiB */
    g_assert_cmpint(json_object_get_int_member(d, "payload-offset"), ==, 4096 + 8 * 65536);
    /* member order is qemu-img's */
    GList *keys = json_object_get_members(d);
    const char *order[] = { "ivgen-alg", "hash-alg", "cipher-alg", "uuid", "ivgen-hash-alg",
                            "cipher-mode", "slots", "payload-offset", "master-key-iters" };
    guint i = 0;
    for (GList *k = keys; k; k = k->next, i++)
        g_assert_cmpstr(k->data, ==, order[i]);
    g_assert_cmpuint(i, ==, G_N_ELEMENTS(order));
    g_list_free(keys);
    JsonArray *slots = json_object_get_array_member(d, "slots");
    g_assert_cmpuint(json_array_get_length(slots), ==, 8);
    JsonObject *s0 = json_array_get_object_element(slots, 0);
    g_assert_true(json_object_get_boolean_member(s0, "active"));
    g_assert_cmpint(json_object_get_int_member(s0, "stripes"), ==, 4000);
    g_assert_cmpint(json_object_get_int_member(s0, "key-offset"), ==, 4096);
    JsonObject *s1 = json_array_get_object_element(slots, 1);
    g_assert_false(json_object_get_boolean_member(s1, "active"));
    g_assert_false(json_object_has_member(s1, "iters"));
    g_assert_cmpint(json_object_get_int_member(s1, "key-offset"), ==, 4096 + 65536);
    json_object_unref(info);
    diskimg_close(n);

    /* plain64 shows no ivgen hash */
    g_autofree char *p2 = test_tmp_path("info2.luks");
    create(p2, MiB, "key-secret=sec0,iter-time=10");
    n = open_image(p2, NULL, DISKIMG_OPEN_NO_IO);
    info = info_data(n);
    d = specific(info);
    g_assert_false(json_object_has_member(d, "ivgen-hash-alg"));
    g_assert_cmpstr(json_object_get_string_member(d, "cipher-alg"), ==, "aes-256");
    g_assert_cmpstr(json_object_get_string_member(d, "cipher-mode"), ==, "xts");
    g_assert_cmpstr(json_object_get_string_member(d, "ivgen-alg"), ==, "plain64");
    g_assert_cmpstr(json_object_get_string_member(d, "hash-alg"), ==, "sha256");
    g_assert_cmpint(json_object_get_int_member(d, "payload-offset"), ==, 2068480);
    json_object_unref(info);
    diskimg_close(n);
}

static void test_probe(void)
{
    g_autofree char *path = test_tmp_path("probe.luks");
    GError *err = NULL;

    create(path, MiB, "key-secret=sec0,iter-time=10");
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .flags = DISKIMG_OPEN_NO_IO,
    };
    diskimg_node *n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_node_driver(n), ==, "luks");
    diskimg_close(n);
}

/* ------------------------------------------------------------- passwords */

static void test_password_errors(void)
{
    g_autofree char *path = test_tmp_path("pw.luks");
    GError *err = NULL;

    create(path, MiB, "key-secret=sec0,iter-time=10");
    g_assert_null(try_open(path, NULL, 0, &err));
    assert_error_contains(err, "Parameter 'key-secret' is required for cipher");
    g_clear_error(&err);
    g_assert_null(try_open(path, "key-secret=sec1", 0, &err));
    assert_error_contains(err, "Invalid password, cannot unlock any keyslot");
    g_clear_error(&err);
    g_assert_null(try_open(path, "key-secret=nosuch", 0, &err));
    assert_error_contains(err, "No secret with id 'nosuch'");
    g_clear_error(&err);

    g_autofree char *p2 = test_tmp_path("pw2.luks");
    g_assert_cmpint(try_create(p2, MiB, "iter-time=10", &err), ==, -1);
    assert_error_contains(err, "Parameter 'key-secret' is required for cipher");
    g_clear_error(&err);
    g_assert_false(g_file_test(p2, G_FILE_TEST_EXISTS));
}

int main(int argc, char **argv)
{
    GError *err = NULL;
    int ret;

    g_test_init(&argc, &argv, NULL);
    if (diskimg_init(&err) < 0)
        g_error("diskimg_init: %s", err->message);
    schema = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "luks");
    if (!schema)
        g_error("the luks plugin was not found (DISKIMG_PLUGIN_PATH=%s)",
                g_getenv("DISKIMG_PLUGIN_PATH"));
    test_tmpdir_create("diskimg-luks", NULL);
    add_secret("secret,id=sec0,data=abc");
    add_secret("secret,id=sec1,data=def");
    add_secret("secret,id=sec2,data=ghi");

    g_test_add_func("/luks/probe", test_probe);
    g_test_add_func("/luks/info", test_info);
    g_test_add_func("/luks/password-errors", test_password_errors);
    if (diskimg_crypto_available()) {
        g_test_add_func("/luks/round-trip", test_round_trip);
        g_test_add_func("/luks/resize", test_resize);
        g_test_add_func("/luks/odd-size", test_odd_size);
    }

    ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
