/* SPDX-License-Identifier: MIT */
/*
 * test-rbd-location.c — the rbd name grammar and its merge with
 * --image-opts options, without a cluster (location.c alone).
 */
#include <string.h>

#include <diskimg/schema.h>

#include "rbd.h"

extern const char rbd_schema_yaml[];

static void parse_ok(const char *name, struct rbd_location *loc)
{
    GError *err = NULL;
    memset(loc, 0, sizeof(*loc));
    g_assert_cmpint(rbd_location_parse(name, loc, &err), ==, 0);
    g_assert_no_error(err);
}

static void parse_fails(const char *name, const char *message)
{
    struct rbd_location loc = { 0 };
    GError *err = NULL;
    g_assert_cmpint(rbd_location_parse(name, &loc, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, message);
    g_error_free(err);
    rbd_location_clear(&loc);
}

static void test_pool_image(void)
{
    struct rbd_location loc;
    parse_ok("rbd:mypool/disk-1", &loc);
    g_assert_cmpstr(loc.pool, ==, "mypool");
    g_assert_cmpstr(loc.image, ==, "disk-1");
    g_assert_null(loc.ns);
    g_assert_null(loc.snap);
    g_assert_null(loc.conf);
    g_assert_null(loc.user);
    g_assert_null(loc.conf_pairs);
    rbd_location_clear(&loc);
}

static void test_namespace_snapshot(void)
{
    struct rbd_location loc;
    parse_ok("rbd:p/tenant/img@before-upgrade", &loc);
    g_assert_cmpstr(loc.pool, ==, "p");
    g_assert_cmpstr(loc.ns, ==, "tenant");
    g_assert_cmpstr(loc.image, ==, "img");
    g_assert_cmpstr(loc.snap, ==, "before-upgrade");
    rbd_location_clear(&loc);
}

static void test_pairs(void)
{
    struct rbd_location loc;
    parse_ok("rbd:p/img@s:conf=/etc/ceph/a.conf:id=bob:mon_host=10.0.0.1\\:6789:"
             "keyring=/k", &loc);
    g_assert_cmpstr(loc.snap, ==, "s");
    g_assert_cmpstr(loc.conf, ==, "/etc/ceph/a.conf");
    g_assert_cmpstr(loc.user, ==, "bob");
    g_assert_nonnull(loc.conf_pairs);
    g_assert_cmpuint(loc.conf_pairs->len, ==, 4);
    g_assert_cmpstr(loc.conf_pairs->pdata[0], ==, "mon_host");
    g_assert_cmpstr(loc.conf_pairs->pdata[1], ==, "10.0.0.1:6789");
    g_assert_cmpstr(loc.conf_pairs->pdata[2], ==, "keyring");
    g_assert_cmpstr(loc.conf_pairs->pdata[3], ==, "/k");
    rbd_location_clear(&loc);
}

static void test_escapes(void)
{
    struct rbd_location loc;
    /* "\:" and "\/" stay in names; a trailing backslash is kept as is. */
    parse_ok("rbd:po\\/ol/im\\:g:conf=/a\\:b.conf", &loc);
    g_assert_cmpstr(loc.pool, ==, "po/ol");
    g_assert_cmpstr(loc.image, ==, "im:g");
    g_assert_null(loc.ns);
    g_assert_cmpstr(loc.conf, ==, "/a:b.conf");
    rbd_location_clear(&loc);
    parse_ok("rbd:p/img\\", &loc);
    g_assert_cmpstr(loc.image, ==, "img\\");
    rbd_location_clear(&loc);
}

static void test_errors(void)
{
    parse_fails("nbd://x", "File name must start with 'rbd:'");
    parse_fails("rbd:justapool", "Pool name is required");
    parse_fails("rbd:p/img:flag", "conf option flag has no value");
    parse_fails("rbd:p/img:conf=/x:id", "conf option id has no value");
}

static diskimg_options *options(const char *text)
{
    static diskimg_schema *schema;
    GError *err = NULL;
    if (!schema)
        schema = diskimg_schema_parse(rbd_schema_yaml, "rbd.yaml", &err);
    g_assert_no_error(err);
    diskimg_options *o = diskimg_options_new(schema, "open-options");
    g_assert_cmpint(diskimg_options_parse(o, text, &err), ==, 0);
    g_assert_no_error(err);
    return o;
}

static void test_from_options(void)
{
    diskimg_options *o = options("pool=p,namespace=ns,image=i,snapshot=s,conf=/c,user=u");
    struct rbd_location loc = { 0 };
    GError *err = NULL;
    /* The core's display name for an options-only image is not parsed. */
    g_assert_cmpint(rbd_location_from_open("json:{\"driver\": \"rbd\"}", o, &loc, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpstr(loc.pool, ==, "p");
    g_assert_cmpstr(loc.ns, ==, "ns");
    g_assert_cmpstr(loc.image, ==, "i");
    g_assert_cmpstr(loc.snap, ==, "s");
    g_assert_cmpstr(loc.conf, ==, "/c");
    g_assert_cmpstr(loc.user, ==, "u");
    rbd_location_clear(&loc);
    diskimg_options_free(o);
}

static void merge_fails(const char *name, const char *text, const char *message)
{
    diskimg_options *o = options(text);
    struct rbd_location loc = { 0 };
    GError *err = NULL;
    g_assert_cmpint(rbd_location_from_open(name, o, &loc, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, message);
    g_error_free(err);
    rbd_location_clear(&loc);
    diskimg_options_free(o);
}

static void test_merge(void)
{
    /* Agreeing values are fine; the options fill in what the name lacks. */
    diskimg_options *o = options("pool=p,user=admin");
    struct rbd_location loc = { 0 };
    GError *err = NULL;
    g_assert_cmpint(rbd_location_from_open("rbd:p/img", o, &loc, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpstr(loc.user, ==, "admin");
    rbd_location_clear(&loc);
    diskimg_options_free(o);

    merge_fails("rbd:p/img", "image=other",
                "'image' is 'img' in the file name but 'other' in the options");
    merge_fails("json:{}", "image=i", "Parameter 'pool' is missing");
    merge_fails("json:{}", "pool=p", "Parameter 'image' is missing");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/rbd/location/pool-image", test_pool_image);
    g_test_add_func("/rbd/location/namespace-snapshot", test_namespace_snapshot);
    g_test_add_func("/rbd/location/pairs", test_pairs);
    g_test_add_func("/rbd/location/escapes", test_escapes);
    g_test_add_func("/rbd/location/errors", test_errors);
    g_test_add_func("/rbd/location/from-options", test_from_options);
    g_test_add_func("/rbd/location/merge", test_merge);
    return g_test_run();
}
