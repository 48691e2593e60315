/* SPDX-License-Identifier: MIT */
/*
 * test-trust.c — unit tests of the trust policy (core/trust.c): which names
 * count as protocols (qemu's path_has_protocol), how names found in an image
 * resolve, and the probed-image check on what probing would find.  Images
 * are opened through the build tree's posix, raw and qcow2 plugins.
 */
#include <stddef.h>
#include <string.h>

#include <diskimg/core.h>

#include "test-tmpdir.h"

static void test_has_protocol(void)
{
    static const struct {
        const char *name;
        bool protocol;
    } cases[] = {
        { "nbd://host:10809/export", true }, { "json:{\"driver\":\"raw\"}", true },
        { "file:base.raw", true },           { "a:b.img", true },
        { ":x", true },                      { "http:/x", true },
        { "base.raw", false },               { "./a:b.img", false },
        { "/abs/a:b.img", false },           { "dir/nbd://x", false },
        { "", false },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
        g_assert_cmpint(diskimg_name_has_protocol(cases[i].name), ==, cases[i].protocol);
}

static diskimg_node *open_image(const char *path, unsigned flags, const char *format)
{
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = format, .flags = flags,
    };
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);
    g_assert_no_error(err);
    g_assert_nonnull(n);
    return n;
}

static char *make_raw(const char *name, size_t size)
{
    char *path = test_tmp_path(name);
    g_autofree char *zeroes = g_malloc0(size);
    GError *err = NULL;
    g_assert_true(g_file_set_contents(path, zeroes, (gssize)size, &err));
    g_assert_no_error(err);
    return path;
}

/* Resolves `name` as recorded in `n` and checks the outcome. */
static void expect_resolved(diskimg_node *n, const char *name, const char *want)
{
    GError *err = NULL;
    g_autofree char *got = diskimg_trust_resolve(n, DISKIMG_CHILD_BACKING, name, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(got, ==, want);
}

static void expect_refused(diskimg_node *n, enum diskimg_child_role role, const char *name,
                           const char *text)
{
    GError *err = NULL;
    g_assert_null(diskimg_trust_resolve(n, role, name, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, diskimg_node_filename(n)));
    g_assert_nonnull(strstr(err->message, text));
    g_assert_null(strchr(err->message, '\n'));
    g_error_free(err);
}

static void test_resolve(void)
{
    g_autofree char *path = make_raw("img.raw", 4096);
    diskimg_node *n = open_image(path, 0, "raw");
    g_autofree char *beside = test_tmp_path("b.raw");
    g_autofree char *dotted = test_tmp_path("./nbd://x");

    expect_resolved(n, "b.raw", beside);
    expect_resolved(n, "/elsewhere/b.raw", "/elsewhere/b.raw");
    expect_resolved(n, "./nbd://x", dotted);
    expect_refused(n, DISKIMG_CHILD_BACKING, "nbd://h/x",
                   "refusing backing file name 'nbd://h/x' recorded in the image");
    expect_refused(n, DISKIMG_CHILD_DATA_FILE, "json:{}", "refusing data file name 'json:{}'");
    expect_refused(n, DISKIMG_CHILD_EXTENT, "file:x", "refusing extent name 'file:x'");
    expect_refused(n, DISKIMG_CHILD_BACKING, "", "names an empty backing file");
    g_autofree char *huge = g_strnfill(5000, 'a');
    expect_refused(n, DISKIMG_CHILD_BACKING, huge, "longer than 4095 bytes");

    /* Names the user typed: protocol names stay as they are. */
    g_autofree char *user = diskimg_resolve_relative(path, "nbd://h/x");
    g_assert_cmpstr(user, ==, "nbd://h/x");
    g_autofree char *user_rel = diskimg_resolve_relative(path, "b.raw");
    g_assert_cmpstr(user_rel, ==, beside);

    GError *err = NULL;
    g_assert_cmpint(diskimg_trust_check_to_record(DISKIMG_CHILD_DATA_FILE, "d.raw", &err), ==, 0);
    g_assert_cmpint(diskimg_trust_check_to_record(DISKIMG_CHILD_DATA_FILE, "nbd:x", &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    diskimg_close(n);
}

static void test_open_flags(void)
{
    g_autofree char *path = make_raw("flags.raw", 4096);
    diskimg_node *n = open_image(path, DISKIMG_OPEN_NO_IO, NULL);
    uint8_t buf[512];
    GError *err = NULL;

    g_assert_true(diskimg_node_was_probed(n));
    g_assert_true(diskimg_node_metadata_only(n));
    /* No guest data through a metadata-only node. */
    g_assert_cmpint(diskimg_node_pread(n, buf, sizeof(buf), 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_null(diskimg_node_open_child(n, DISKIMG_CHILD_DATA_FILE, "d.raw", 0, &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "metadata-only"));
    g_clear_error(&err);
    diskimg_close(n);

    n = open_image(path, 0, "raw");
    g_assert_false(diskimg_node_was_probed(n));
    g_assert_false(diskimg_node_metadata_only(n));
    g_assert_cmpint(diskimg_node_pread(n, buf, sizeof(buf), 0, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_close(n);
}

static void expect_check(diskimg_node *file, uint64_t off, const void *buf, uint64_t len,
                         const char *found)
{
    GError *err = NULL;
    int ret = diskimg_probed_write_check(file, off, buf, len, &err);
    if (!found) {
        g_assert_no_error(err);
        g_assert_cmpint(ret, ==, 0);
        return;
    }
    g_assert_cmpint(ret, ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_assert_nonnull(strstr(err->message, "Operation not permitted"));
    g_assert_nonnull(strstr(err->message, found));
    g_error_free(err);
}

/* The check sees what probing would: plugins' probes (qcow2) and the magic
 * list of formats without a plugin here (vmdk), within the first 2048 bytes. */
static void test_probed_write_check(void)
{
    static const uint8_t qcow2[8] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
    g_autofree char *path = make_raw("probe.raw", 8192);
    diskimg_node *n = open_image(path, 0, "raw");
    diskimg_node *file = diskimg_node_file(n);

    expect_check(file, 0, qcow2, sizeof(qcow2), "qcow2");
    expect_check(file, 0, "KDMV", 4, "vmdk");
    expect_check(file, 0, "plain data", 10, NULL);
    expect_check(file, 0, NULL, 4096, NULL);
    expect_check(file, 2048, qcow2, sizeof(qcow2), NULL);
    expect_check(file, 4, qcow2 + 4, 4, NULL);   /* nothing before it */
    diskimg_close(n);
}

/* A fixed VHD is known by its footer, the file's last 512 bytes: writes
 * that would put one there are refused as well, and the same bytes
 * elsewhere are not (vpc's probe_tail through the build tree's plugin). */
static void test_probed_tail_check(void)
{
    g_autofree char *vhd = test_tmp_path("fixed.vpc");
    diskimg_options *o = diskimg_options_new(diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "vpc"),
                                             "create-options");
    GError *err = NULL;
    g_assert_cmpint(diskimg_options_set(o, "subformat", "fixed", &err), ==, 0);
    struct diskimg_create_params p = { .struct_size = sizeof(p), .format = "vpc",
                                       .options = o, .size = 1 << 20 };
    g_assert_cmpint(diskimg_create(vhd, &p, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_options_free(o);
    gchar *bytes = NULL;
    gsize size = 0;
    g_assert_true(g_file_get_contents(vhd, &bytes, &size, NULL));
    g_assert_cmpuint(size, >, 512);
    const uint8_t *footer = (const uint8_t *)bytes + size - 512;

    /* A raw file of the same length, opened as probing would open it. */
    g_autofree char *path = make_raw("tail.raw", size);
    diskimg_node *n = open_image(path, 0, "raw");
    diskimg_node *file = diskimg_node_file(n);
    expect_check(file, size - 512, footer, 512, "vpc");
    expect_check(file, size - 512, NULL, 512, NULL);
    expect_check(file, size - 1024, footer, 512, NULL);   /* not the last bytes */
    expect_check(file, 4096, footer, 512, NULL);          /* nor the first ones */
    expect_check(file, 0, footer, 512, "vpc");            /* (a dynamic disk's footer copy) */
    diskimg_close(n);

    /* Growing the file by exactly a footer makes it the new tail. */
    g_autofree char *shorter = make_raw("short.raw", size - 512);
    n = open_image(shorter, 0, "raw");
    expect_check(diskimg_node_file(n), size - 512, footer, 512, "vpc");
    diskimg_close(n);
    g_free(bytes);
}

/* The findings collection: order kept, repeats dropped, copies bounded
 * by the caller's struct_size. */
static void test_findings(void)
{
    diskimg_findings *f = diskimg_findings_new();
    diskimg_findings_add(f, "backing-file", DISKIMG_SEVERITY_UNSAFE, "backing-filename",
                         "names '%s'", "b.raw");
    diskimg_findings_add(f, "backing-file", DISKIMG_SEVERITY_UNSAFE, "backing-filename",
                         "names '%s'", "b.raw");
    diskimg_findings_add(f, "dirty", DISKIMG_SEVERITY_WARNING, NULL, "not closed");
    g_assert_cmpuint(diskimg_findings_count(f), ==, 2);
    struct diskimg_finding x = { .struct_size = sizeof(x) };
    g_assert_cmpint(diskimg_findings_get(f, 0, &x), ==, 0);
    g_assert_cmpstr(x.id, ==, "backing-file");
    g_assert_cmpstr(x.message, ==, "names 'b.raw'");
    g_assert_cmpuint(x.severity, ==, DISKIMG_SEVERITY_UNSAFE);
    g_assert_cmpint(diskimg_findings_get(f, 1, &x), ==, 0);
    g_assert_cmpstr(x.field, ==, "");
    g_assert_cmpint(diskimg_findings_get(f, 2, &x), ==, -1);
    /* an older caller that knows only id: nothing beyond it is written */
    struct diskimg_finding small;
    memset(&small, 0x5a, sizeof(small));
    small.struct_size = offsetof(struct diskimg_finding, id) + sizeof(small.id);
    g_assert_cmpint(diskimg_findings_get(f, 1, &small), ==, 0);
    g_assert_cmpstr(small.id, ==, "dirty");
    g_assert_cmpuint(small.severity, ==, 0x5a5a5a5a);
    for (int i = 0; i < 5000; i++)
        diskimg_findings_add(f, "external-extent", DISKIMG_SEVERITY_UNSAFE, "extents", "%d", i);
    g_assert_cmpuint(diskimg_findings_count(f), ==, 1000);
    diskimg_findings_free(f);
}

/* Opening a qcow2 that names a backing file, with a collection: the core
 * records the name without opening it; under DISKIMG_OPEN_UNTRUSTED the
 * chain open refuses it. */
static void test_findings_from_open(void)
{
    g_autofree char *top = test_tmp_path("findings.qcow2");
    diskimg_options *o = diskimg_options_new(diskimg_plugin_schema(DISKIMG_KIND_FORMAT,
                                                                   "qcow2"), "create-options");
    GError *err = NULL;
    g_assert_cmpint(diskimg_options_set(o, "backing_file", "../base.raw", &err), ==, 0);
    g_assert_cmpint(diskimg_options_set(o, "backing_fmt", "raw", &err), ==, 0);
    struct diskimg_create_params cp = { .struct_size = sizeof(cp), .format = "qcow2",
                                        .options = o, .size = 1 << 20,
                                        .flags = DISKIMG_CREATE_UNSAFE };
    g_assert_cmpint(diskimg_create(top, &cp, &err), ==, 0);
    g_assert_no_error(err);
    diskimg_options_free(o);
    diskimg_findings *f = diskimg_findings_new();
    struct diskimg_open_params p = { .struct_size = sizeof(p), .findings = f,
                                     .flags = DISKIMG_OPEN_NO_BACKING | DISKIMG_OPEN_NO_IO };
    diskimg_node *n = diskimg_open(top, &p, &err);
    g_assert_no_error(err);
    diskimg_close(n);
    g_assert_cmpuint(diskimg_findings_count(f), ==, 1);
    struct diskimg_finding x = { .struct_size = sizeof(x) };
    diskimg_findings_get(f, 0, &x);
    g_assert_cmpstr(x.id, ==, "backing-file");
    g_assert_cmpstr(x.field, ==, "backing-filename");
    g_assert_nonnull(strstr(x.message, "../base.raw"));
    p.flags = DISKIMG_OPEN_UNTRUSTED;
    g_assert_null(diskimg_open(top, &p, &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_assert_nonnull(strstr(err->message, "untrusted"));
    g_clear_error(&err);
    diskimg_findings_free(f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    test_tmpdir_create("diskimg-trust", NULL);
    g_test_add_func("/trust/has-protocol", test_has_protocol);
    g_test_add_func("/trust/resolve", test_resolve);
    g_test_add_func("/trust/open-flags", test_open_flags);
    g_test_add_func("/trust/probed-write-check", test_probed_write_check);
    g_test_add_func("/trust/probed-tail-check", test_probed_tail_check);
    g_test_add_func("/trust/findings", test_findings);
    g_test_add_func("/trust/findings-from-open", test_findings_from_open);
    int ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
