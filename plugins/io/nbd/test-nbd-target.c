/* SPDX-License-Identifier: MIT */
/* The NBD name parser (nbd-target.c): every accepted form gives the
 * transport, address and export it names; every refused one says why. */
#include <string.h>

#include "nbd-target.h"

struct good {
    const char *name;
    bool is_unix, tls;
    const char *host, *port, *path, *export;
};

static const struct good goods[] = {
    { "nbd://example.com/disk", false, false, "example.com", "10809", NULL, "disk" },
    { "nbd://example.com:2000", false, false, "example.com", "2000", NULL, "" },
    { "nbd://[::1]:2000/a%20b", false, false, "::1", "2000", NULL, "a b" },
    { "nbd://h//abs", false, false, "h", "10809", NULL, "/abs" },
    { "nbd+tcp://h:1/x", false, false, "h", "1", NULL, "x" },
    { "nbds://h/x", false, true, "h", "10809", NULL, "x" },
    { "nbd+unix:///exp?socket=/run/s.sock", true, false, NULL, NULL, "/run/s.sock", "exp" },
    { "nbd+unix://?socket=%2Ftmp%2Fa%26b", true, false, NULL, NULL, "/tmp/a&b", "" },
    { "nbds+unix:///?socket=s", true, true, NULL, NULL, "s", "" },
    { "nbd:localhost:10809", false, false, "localhost", "10809", NULL, "" },
    { "nbd:[fe80::1]:99:exportname=a:b", false, false, "fe80::1", "99", NULL, "a:b" },
    { "nbd:unix:/tmp/x.sock:exportname=disk", true, false, NULL, NULL, "/tmp/x.sock", "disk" },
    { "NBD://H/x", false, false, "H", "10809", NULL, "x" },
};

struct bad {
    const char *name;
    const char *why;       /* a part of the message */
};

static const struct bad bads[] = {
    { "nbd:localhost", "error parsing address 'localhost'" },
    { "nbd:host:", "error parsing address" },
    { "nbd:host:99999", "error parsing address" },
    { "nbd:unix:", "needs the path" },
    { "nbd://", "names no host" },
    { "nbd://u:p@h/x", "no user name" },
    { "nbd://h/x#frag", "no #fragment" },
    { "nbd://h/x?socket=/s", "unexpected query parameter 'socket'" },
    { "nbd+unix:///x", "?socket=PATH" },
    { "nbd+unix://host/x?socket=/s", "take no host" },
    { "nbd+unix:///x?socket=/a&socket=/b", "twice" },
    { "nbd+unix:///x?socket=", "needs the path" },
    { "nbd+unix:///x?socket=/s&tls-certificates=/etc", "'tls-certificates'" },
    { "nbd+vsock://1/x", "unknown NBD URI scheme 'nbd+vsock'" },
    { "nbd://h:0/", "invalid port" },
    { "nbd://h:x/", "invalid NBD URI" },
};

static void test_good(gconstpointer data)
{
    const struct good *g = data;
    struct nbd_target t;
    GError *err = NULL;
    int ret = nbd_target_parse_name(g->name, &t, &err);
    g_assert_no_error(err);
    g_assert_cmpint(ret, ==, 0);
    g_assert_cmpint(t.is_unix, ==, g->is_unix);
    g_assert_cmpint(t.tls, ==, g->tls);
    g_assert_cmpstr(t.host, ==, g->host);
    g_assert_cmpstr(t.port, ==, g->port);
    g_assert_cmpstr(t.path, ==, g->path);
    g_assert_cmpstr(t.export, ==, g->export);
    nbd_target_clear(&t);
}

static void test_bad(gconstpointer data)
{
    const struct bad *b = data;
    struct nbd_target t;
    GError *err = NULL;
    g_assert_cmpint(nbd_target_parse_name(b->name, &t, &err), ==, -1);
    g_assert_nonnull(err);
    if (!strstr(err->message, b->why))
        g_error("'%s': message '%s' lacks '%s'", b->name, err->message, b->why);
    g_assert_null(strchr(err->message, '\n'));
    g_assert_null(t.host);
    g_assert_null(t.path);
    g_error_free(err);
}

static void test_describe(void)
{
    struct nbd_target t;
    g_assert_cmpint(nbd_target_parse_name("nbd://[::1]:7/x", &t, NULL), ==, 0);
    g_autofree char *d = nbd_target_describe(&t);
    g_assert_cmpstr(d, ==, "[::1]:7");
    nbd_target_clear(&t);
    g_assert_cmpint(nbd_target_parse_name("nbd:unix:/s", &t, NULL), ==, 0);
    g_autofree char *u = nbd_target_describe(&t);
    g_assert_cmpstr(u, ==, "/s");
    nbd_target_clear(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(goods); i++) {
        g_autofree char *path = g_strdup_printf("/nbd-target/good/%zu", i);
        g_test_add_data_func(path, &goods[i], test_good);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(bads); i++) {
        g_autofree char *path = g_strdup_printf("/nbd-target/bad/%zu", i);
        g_test_add_data_func(path, &bads[i], test_bad);
    }
    g_test_add_func("/nbd-target/describe", test_describe);
    return g_test_run();
}
