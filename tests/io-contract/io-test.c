/* SPDX-License-Identifier: MIT */
/*
 * io-test.c — the helpers of io-test.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "io-test.h"
#include "test-tmpdir.h"

struct io_module io_plugin;
struct io_module io_peer;
const struct diskimg_io_ops *ops;
const char *io_options;
char *io_name;
char *io_unavailable;

static char *module_path;
static char *peer_path;
static char *options_text;

/* ------------------------------------------------------------ modules */

static void module_load(struct io_module *m, const char *path)
{
    const struct diskimg_plugin *(*entry)(void);

    m->path = path;
    m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!m->dl)
        g_error("cannot load %s: %s", path, dlerror());
    entry = (const struct diskimg_plugin *(*)(void))dlsym(m->dl, DISKIMG_PLUGIN_ENTRY_SYMBOL);
    g_assert_nonnull(entry);
    m->desc = entry();
    g_assert_cmpuint(m->desc->kind, ==, DISKIMG_KIND_IO);
    m->ops = m->desc->ops;
}

static void module_unload(struct io_module *m)
{
    if (m->dl)
        dlclose(m->dl);
    memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------- command line */

/* A value given on the command line is exported, since GTest starts its
 * subprocesses without it; without one, the parent's export is used. */
static char *exported(const char *value, const char *var)
{
    if (value) {
        g_setenv(var, value, TRUE);
        return g_strdup(value);
    }
    return g_strdup(g_getenv(var));
}

static void parse_command_line(int *argc, char ***argv)
{
    char *peer = NULL, *options = NULL;
    GOptionEntry entries[] = {
        { "peer", 0, 0, G_OPTION_ARG_FILENAME, &peer,
          "a second io module that must honour the same locks", "MODULE" },
        { "options", 0, 0, G_OPTION_ARG_STRING, &options,
          "open-options added to every open", "TEXT" },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    GOptionContext *ctx = g_option_context_new("MODULE [NAME]");
    GError *err = NULL;

    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, argc, argv, &err))
        g_error("%s", err->message);
    g_option_context_free(ctx);
    module_path = exported(*argc > 1 ? (*argv)[1] : NULL, "IO_TEST_MODULE");
    io_name = exported(*argc > 2 ? (*argv)[2] : NULL, "IO_TEST_NAME");
    peer_path = exported(peer, "IO_TEST_PEER");
    options_text = exported(options, "IO_TEST_OPTIONS");
    g_free(peer);
    g_free(options);
    if (!module_path)
        g_error("usage: %s MODULE [NAME] [--peer=MODULE] [--options=TEXT]", g_get_prgname());
}

/* Whether the plugin opens files at all here; NOT_SUPPORTED is its way of
 * saying "not on this system" (the core then falls back to posix). */
static void probe_plugin(void)
{
    char *path = test_tmp_path("probe.img");
    GError *err = NULL;
    void *h = io_open(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE,
                      DISKIMG_CACHE_WRITEBACK, &err);

    if (h) {
        ops->close(h);
    } else {
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED);
        io_unavailable = g_strdup(err->message);
        g_clear_error(&err);
    }
    unlink(path);
    g_free(path);
}

void io_test_init(int *argc, char ***argv, const char *prefix)
{
    g_test_init(argc, argv, NULL);
    parse_command_line(argc, argv);
    module_load(&io_plugin, module_path);
    ops = io_plugin.ops;
    if (!io_name)
        io_name = g_strdup(io_plugin.desc->name);
    if (peer_path)
        module_load(&io_peer, peer_path);
    io_options = options_text;
    test_tmpdir_create(prefix, "IO_TEST_DIR");
    probe_plugin();
}

int io_test_run(void)
{
    int ret = g_test_run();

    test_tmpdir_remove();
    module_unload(&io_peer);
    module_unload(&io_plugin);
    ops = NULL;
    g_clear_pointer(&io_unavailable, g_free);
    g_clear_pointer(&module_path, g_free);
    g_clear_pointer(&io_name, g_free);
    g_clear_pointer(&peer_path, g_free);
    g_clear_pointer(&options_text, g_free);
    return ret;
}

const char *io_tmpdir(void)
{
    return test_tmpdir;
}

char *io_tmp_path(const char *name)
{
    return test_tmp_path(name);
}

/* ------------------------------------------------------- registration */

static void run_if_available(gconstpointer data)
{
    void (*fn)(void) = (void (*)(void))data;

    if (io_unavailable) {
        g_test_skip(io_unavailable);
        return;
    }
    fn();
}

static void run_always(gconstpointer data)
{
    ((void (*)(void))data)();
}

void io_test_add(const char *path, void (*fn)(void), bool always)
{
    char *full = g_strdup_printf("/%s/%s", io_name, path);

    g_test_add_data_func(full, (gconstpointer)fn, always ? run_always : run_if_available);
    g_free(full);
}

/* ------------------------------------------------------------- opening */

void *io_open_with(const struct diskimg_io_ops *o, const char *path, unsigned flags,
                   enum diskimg_cache cache, const diskimg_options *options, GError **errp)
{
    struct diskimg_io_open_args args = {
        .struct_size = sizeof(args),
        .filename = path,
        .flags = flags,
        .cache = cache,
        .options = options,
    };

    return o->open(&args, errp);
}

diskimg_schema *io_schema(void)
{
    GError *err = NULL;
    char *name = g_strdup_printf("%s.yaml", io_plugin.desc->name);
    diskimg_schema *s = diskimg_schema_parse(io_plugin.desc->schema, name, &err);

    g_assert_no_error(err);
    g_free(name);
    return s;
}

static void parse_into(diskimg_options *o, const char *text)
{
    GError *err = NULL;

    if (!text)
        return;
    g_assert_cmpint(diskimg_options_parse(o, text, &err), ==, 0);
    g_assert_no_error(err);
}

void *io_open_opts(const char *path, unsigned flags, enum diskimg_cache cache,
                   const char *extra, GError **errp)
{
    diskimg_schema *schema;
    diskimg_options *o;
    void *h;

    if (!io_options && !extra)
        return io_open_with(ops, path, flags, cache, NULL, errp);
    schema = io_schema();
    o = diskimg_options_new(schema, "open-options");
    parse_into(o, io_options);
    parse_into(o, extra);
    h = io_open_with(ops, path, flags, cache, o, errp);
    diskimg_options_free(o);
    diskimg_schema_free(schema);
    return h;
}

void *io_open(const char *path, unsigned flags, enum diskimg_cache cache, GError **errp)
{
    return io_open_opts(path, flags, cache, NULL, errp);
}

void *open_ok(const char *path, unsigned flags)
{
    GError *err = NULL;
    void *h = io_open(path, flags, DISKIMG_CACHE_WRITEBACK, &err);

    g_assert_no_error(err);
    g_assert_nonnull(h);
    return h;
}

void *create_ok(const char *name, char **path_out)
{
    char *path = test_tmp_path(name);
    void *h = open_ok(path, DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);

    if (path_out)
        *path_out = path;
    else
        g_free(path);
    return h;
}

void *open_direct(const char *path, unsigned flags, enum diskimg_cache cache)
{
    GError *err = NULL;
    void *h = io_open(path, flags, cache, &err);

    if (!h && g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED)) {
        g_assert_nonnull(strstr(err->message, "filesystem does not support O_DIRECT"));
        g_test_skip(err->message);
        g_clear_error(&err);
        return NULL;
    }
    g_assert_no_error(err);
    return h;
}

/* ---------------------------------------------------------------- data */

void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 31 + seed * 7 + (i >> 9)) ^ seed);
}

void assert_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0)
            g_error("byte %zu is 0x%02x, expected 0", i, buf[i]);
    }
}

void write_ok(void *h, const void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(ops->pwrite(h, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

void read_ok(void *h, void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(ops->pread(h, buf, len, off, &err), ==, 0);
    g_assert_no_error(err);
}

int64_t size_of(void *h)
{
    GError *err = NULL;
    int64_t n = ops->get_size(h, &err);

    g_assert_no_error(err);
    return n;
}

int64_t allocated_of(void *h)
{
    GError *err = NULL;
    int64_t n = ops->allocated_size(h, &err);

    g_assert_no_error(err);
    return n;
}

void truncate_ok(void *h, uint64_t size, enum diskimg_prealloc p, unsigned flags)
{
    GError *err = NULL;

    g_assert_cmpint(ops->truncate(h, size, p, flags, &err), ==, 0);
    g_assert_no_error(err);
}

struct diskimg_extent status_of(void *h, uint64_t off, uint64_t len)
{
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    GError *err = NULL;

    g_assert_cmpint(ops->block_status(h, off, len, &ext, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(ext.offset, ==, off);
    g_assert_true(ext.flags & DISKIMG_BS_OFFSET_VALID);
    return ext;
}

void assert_status(void *h, uint64_t off, uint64_t len, uint32_t kind, uint64_t expect_len)
{
    struct diskimg_extent ext = status_of(h, off, len);

    g_assert_cmphex(ext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO), ==, kind);
    g_assert_cmpuint(ext.length, ==, expect_len);
}

/* ---------------------------------------------------------- batch path */

void submit_ok(void *h, struct diskimg_io_request *const *reqs, unsigned n)
{
    GError *err = NULL;

    g_assert_cmpint(ops->submit(h, reqs, n, &err), ==, 0);
    g_assert_no_error(err);
}

unsigned reap_all(void *h, struct diskimg_io_request **done, unsigned n)
{
    unsigned got = 0;

    while (got < n) {
        GError *err = NULL;
        int r = ops->reap(h, done + got, n - got, 1, &err);

        g_assert_no_error(err);
        g_assert_cmpint(r, >=, 1);
        got += (unsigned)r;
    }
    return got;
}

/* -------------------------------------------------------------- locks */

bool byte_locked(const char *path, int64_t byte)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct flock fl = { .l_whence = SEEK_SET, .l_start = byte, .l_len = 1, .l_type = F_WRLCK };

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type != F_UNLCK;
}

void lock_ok(const struct diskimg_io_ops *o, void *h, uint64_t perm, uint64_t shared)
{
    GError *err = NULL;
    int r = o->lock(h, perm, shared, &err);

    g_assert_no_error(err);
    g_assert_cmpint(r, ==, 0);
}

void expect_lock_error(const struct diskimg_io_ops *o, void *h, uint64_t perm,
                       uint64_t shared, const char *what, const char *path)
{
    GError *err = NULL;
    char *expect = g_strdup_printf("Failed to get %s lock\nIs another process using the "
                                   "image [%s]?", what, path);

    g_assert_cmpint(o->lock(h, perm, shared, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_LOCKED);
    g_assert_cmpstr(err->message, ==, expect);
    g_clear_error(&err);
    g_free(expect);
}

/* ----------------------------------------------------------- watchdog */

static char watchdog_msg[128];
static size_t watchdog_len;

static void on_watchdog(int sig)
{
    (void)sig;
    (void)!write(2, watchdog_msg, watchdog_len);
    _exit(99);
}

void io_watchdog_start(const char *what, unsigned seconds)
{
    g_snprintf(watchdog_msg, sizeof(watchdog_msg), "%s blocked\n", what);
    watchdog_len = strlen(watchdog_msg);
    signal(SIGALRM, on_watchdog);
    alarm(seconds);
}

void io_watchdog_stop(void)
{
    alarm(0);
    signal(SIGALRM, SIG_DFL);
}
