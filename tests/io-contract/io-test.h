/* SPDX-License-Identifier: MIT */
/*
 * io-test.h — what the io contract test and the io plugins' own tests
 * share: loading an io plugin module, a scratch directory, and helpers
 * that call the plugin's ops and assert that they succeed.
 *
 * Every test program here takes the same command line,
 *
 *     PROGRAM [GTEST OPTIONS] MODULE [NAME] [--peer=MODULE] [--options=TEXT]
 *
 * MODULE is the plugin's .so, NAME the name its descriptor must carry
 * (default: whatever it says), --peer a second io module that must honour
 * the same image locks, --options open-options added to every open (to
 * run the whole contract again under, say, a tiny queue depth).  The
 * values are also exported to the environment, because a GTest
 * subprocess (g_test_trap_subprocess) is started without them.
 */
#ifndef DISKIMG_IO_TEST_H
#define DISKIMG_IO_TEST_H

#include <diskimg/plugin.h>
#include <diskimg/schema.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* A loaded io plugin module. */
struct io_module {
    const char *path;
    const struct diskimg_plugin *desc;
    const struct diskimg_io_ops *ops;
    void *dl;
};

/* The plugin under test; `ops` is io_plugin.ops, for brevity. */
extern struct io_module io_plugin;
extern const struct diskimg_io_ops *ops;
/* --peer: ops NULL when not given. */
extern struct io_module io_peer;
/* NAME, or the name the plugin's descriptor gives. */
extern char *io_name;
/* --options, or NULL. */
extern const char *io_options;
/* Why the plugin cannot open files here (io_uring refused...), or NULL. */
extern char *io_unavailable;

/* g_test_init, the command line (see above), the scratch directory named
 * after `prefix`, and a probe of whether the plugin works here. */
void io_test_init(int *argc, char ***argv, const char *prefix);
/* Runs the tests, then unloads and cleans up; returns g_test_run()'s. */
int io_test_run(void);

/* The scratch directory, and a path in it (g_free it). */
const char *io_tmpdir(void);
char *io_tmp_path(const char *name);

/* Registers `fn` under /NAME/PATH (NAME: the plugin's); skipped while
 * io_unavailable is set unless `always`. */
void io_test_add(const char *path, void (*fn)(void), bool always);

/* ------------------------------------------------------------- opening */

void *io_open_with(const struct diskimg_io_ops *o, const char *path, unsigned flags,
                   enum diskimg_cache cache, const diskimg_options *options, GError **errp);
/* Opens through the plugin under test, with --options and `extra` (both
 * may be NULL) as open-options. */
void *io_open_opts(const char *path, unsigned flags, enum diskimg_cache cache,
                   const char *extra, GError **errp);
void *io_open(const char *path, unsigned flags, enum diskimg_cache cache, GError **errp);
void *open_ok(const char *path, unsigned flags);
/* Creates (or empties) `name` in the scratch directory; *path_out, when
 * given, receives its path (g_free it). */
void *create_ok(const char *name, char **path_out);
/* Opens with O_DIRECT, or marks the test skipped and returns NULL where
 * the file system refuses O_DIRECT. */
void *open_direct(const char *path, unsigned flags, enum diskimg_cache cache);
/* The plugin's embedded schema, parsed. */
diskimg_schema *io_schema(void);

/* ---------------------------------------------------------------- data */

void fill_pattern(uint8_t *buf, size_t len, unsigned seed);
void assert_zero(const uint8_t *buf, size_t len);
void write_ok(void *h, const void *buf, uint64_t len, uint64_t off);
void read_ok(void *h, void *buf, uint64_t len, uint64_t off);
int64_t size_of(void *h);
int64_t allocated_of(void *h);
void truncate_ok(void *h, uint64_t size, enum diskimg_prealloc p, unsigned flags);
/* Block status at off, checked to start there with OFFSET_VALID. */
struct diskimg_extent status_of(void *h, uint64_t off, uint64_t len);
/* ...and to be `kind` (DATA or ZERO) for `expect_len` bytes. */
void assert_status(void *h, uint64_t off, uint64_t len, uint32_t kind, uint64_t expect_len);

/* ---------------------------------------------------------- batch path */

void submit_ok(void *h, struct diskimg_io_request *const *reqs, unsigned n);
/* Reaps n completions, at least one per call. */
unsigned reap_all(void *h, struct diskimg_io_request **done, unsigned n);

/* -------------------------------------------------------------- locks */

/* Whether some open file description holds lock byte `byte` of path. */
bool byte_locked(const char *path, int64_t byte);
void lock_ok(const struct diskimg_io_ops *o, void *h, uint64_t perm, uint64_t shared);
/* The lock is refused with qemu's message naming `what` and path. */
void expect_lock_error(const struct diskimg_io_ops *o, void *h, uint64_t perm,
                       uint64_t shared, const char *what, const char *path);

/* ----------------------------------------------------------- watchdog */

/* Fails the process with `what` unless io_watchdog_stop() comes within
 * `seconds`: for calls that must not block (opening FIFOs, reaping). */
void io_watchdog_start(const char *what, unsigned seconds);
void io_watchdog_stop(void);

#endif
