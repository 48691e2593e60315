/* SPDX-License-Identifier: MIT */
/*
 * The introspection C API (core/introspect.c) through the build tree's
 * posix, raw and qcow2 plugins: the versioned plugin listing of each kind
 * and option validation that creates nothing.  The documents' shape is
 * checked against the JSON Schemas by tests/scripts/introspection.py.
 */
#include <string.h>
#include <unistd.h>

#include <diskimg/core.h>

static JsonObject *entry_named(JsonArray *plugins, const char *name)
{
    for (guint i = 0; i < json_array_get_length(plugins); i++) {
        JsonObject *p = json_array_get_object_element(plugins, i);
        if (g_str_equal(json_object_get_string_member(p, "name"), name))
            return p;
    }
    return NULL;
}

static bool array_has(JsonArray *a, const char *s)
{
    for (guint i = 0; i < json_array_get_length(a); i++)
        if (g_str_equal(json_array_get_string_element(a, i), s))
            return true;
    return false;
}

static void test_formats(void)
{
    g_autoptr(JsonNode) doc = diskimg_introspect_plugins(DISKIMG_KIND_FORMAT);
    JsonObject *root = json_node_get_object(doc);
    g_assert_cmpint(json_object_get_int_member(root, "introspection-version"), ==,
                    DISKIMG_INTROSPECTION_VERSION);
    g_assert_cmpstr(json_object_get_string_member(root, "kind"), ==, "format");
    JsonArray *plugins = json_object_get_array_member(root, "plugins");

    JsonObject *qcow2 = entry_named(plugins, "qcow2");
    g_assert_nonnull(qcow2);
    g_assert_true(json_object_get_boolean_member(qcow2, "writable"));
    g_assert_cmpstr(json_object_get_string_member(qcow2, "package"), ==,
                    "diskimg-format-qcow2");
    g_assert_true(g_str_has_suffix(json_object_get_string_member(qcow2, "path"), "/qcow2.so"));
    JsonArray *caps = json_object_get_array_member(qcow2, "capabilities");
    g_assert_true(array_has(caps, "backing"));
    g_assert_false(array_has(caps, "read-only"));
    JsonArray *ops = json_object_get_array_member(qcow2, "operations");
    g_assert_true(array_has(ops, "check"));
    g_assert_true(array_has(ops, "snapshot_create"));

    /* raw has no check and no backing file: the listing says so. */
    JsonObject *raw = entry_named(plugins, "raw");
    g_assert_nonnull(raw);
    g_assert_false(array_has(json_object_get_array_member(raw, "operations"), "check"));
    g_assert_false(array_has(json_object_get_array_member(raw, "capabilities"), "backing"));
}

static void test_io(void)
{
    g_autoptr(JsonNode) doc = diskimg_introspect_plugins(DISKIMG_KIND_IO);
    JsonObject *root = json_node_get_object(doc);
    g_assert_cmpstr(json_object_get_string_member(root, "kind"), ==, "io");
    JsonObject *posix = entry_named(json_object_get_array_member(root, "plugins"), "posix");
    g_assert_nonnull(posix);
    /* Format-only members stay out of other kinds' entries. */
    g_assert_false(json_object_has_member(posix, "writable"));
    g_assert_false(json_object_has_member(posix, "operations"));
    g_assert_null(diskimg_introspect_plugins((enum diskimg_plugin_kind)9));
}

static void expect_invalid(const char *format, const char *set, const char *text,
                           const char *fragment)
{
    GError *err = NULL;
    g_assert_cmpint(diskimg_options_validate(DISKIMG_KIND_FORMAT, format, set, text, &err), ==,
                    -1);
    g_assert_nonnull(err);
    if (!strstr(err->message, fragment))
        g_error("'%s' for %s: expected '%s' in: %s", text, format, fragment, err->message);
    g_error_free(err);
}

static unsigned entries_in(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    g_assert_nonnull(dir);
    unsigned n = 0;
    while (g_dir_read_name(dir))
        n++;
    return n;
}

static void test_validate(void)
{
    g_autofree char *cwd = g_get_current_dir();
    unsigned before = entries_in(cwd);
    GError *err = NULL;
    g_assert_cmpint(diskimg_options_validate(DISKIMG_KIND_FORMAT, "qcow2", "create-options",
                                             "cluster_size=64k,compat=1.1,lazy_refcounts=on",
                                             &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_options_validate(DISKIMG_KIND_FORMAT, "qcow2", "create-options",
                                             "", &err), ==, 0);
    expect_invalid("qcow2", "create-options", "cluster_size=3000", "power of two");
    expect_invalid("qcow2", "create-options", "clustersize=64k", "cluster_size");
    expect_invalid("qcow2", "create-options", "preallocation=sometimes", "preallocation");
    expect_invalid("qcow2", "no-such-options", "", "no option set");
    expect_invalid("nosuchformat", "create-options", "", "nosuchformat");
    g_assert_cmpint(diskimg_options_validate(DISKIMG_KIND_IO, "posix", "open-options",
                                             "locking=off", &err), ==, 0);
    g_assert_no_error(err);
    /* Nothing was created on the way. */
    g_assert_cmpuint(entries_in(cwd), ==, before);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    GError *err = NULL;
    g_assert_cmpint(diskimg_init(&err), ==, 0);
    g_test_add_func("/introspect/formats", test_formats);
    g_test_add_func("/introspect/io", test_io);
    g_test_add_func("/introspect/validate", test_validate);
    return g_test_run();
}
