/* SPDX-License-Identifier: MIT */
/*
 * test-format.h — the helpers every format plugin's unit test shares, so
 * none of them keeps its own copy.  Test code only; all functions assert
 * (g_assert / g_error) instead of returning errors unless named try_.
 *
 * Program set-up (main):
 *   tf_init(&argc, &argv, "vdi", env)  g_test_init, diskimg_init, the
 *                                      plugin must be found, scratch dir
 *   return tf_run_tests();             g_test_run, scratch dir removed
 *   test_tmp_path("x.img")             a scratch path (g_free), from
 *                                      test-tmpdir.h, which this includes
 *
 * Files:
 *   tf_write_file / tf_read_file / tf_file_size
 *   tf_patch(path, off, bytes, len), tf_patch_le32/le64, tf_file_le32/le64
 *   tf_pattern(buf, len, offset, seed) non-zero bytes that depend on the
 *                                      guest offset and the seed
 *
 * Images through libdiskimg (format given, NULL probes):
 *   tf_create / tf_try_create(format, path, size, "k=v,...")
 *   tf_open / tf_try_open(format, path, flags, open-options)
 *   tf_write, tf_read, tf_zero, tf_write_pattern (node and model), tf_expect_model
 *   tf_write_scattered                 six awkward runs, node and model
 *   tf_read_all / tf_read_all_step     the whole guest view
 *   tf_expect_reopened                 reopened, and by qemu-img, the model
 *
 * Errors:
 *   tf_assert_message(err, path, needle, needle2)
 *                       one line, names the file (basename), holds needles
 *   tf_assert_message_path                 ... and the full path
 *   tf_expect_open_error / tf_expect_read_error (path, fmt, needle)
 *   tf_open_fails(fmt, path, flags, code, needles)
 *                       error code checked, full path, every needle
 *
 * External programs (qemu-img, qemu-io, ...):
 *   tf_have(prog), tf_need(prog) (the latter marks the test skipped)
 *   tf_run(out, argv) / TF_RUN(out, ...)  exit status; stdout captured
 *                       (never mixed with the TAP stream); qemu's flaky
 *                       PBKDF2 calibration is retried
 *   tf_qemu_compare, tf_qemu_agrees (compare + check), tf_qemu_data_bytes,
 *   tf_qemu_convert (qemu-img's guest view of an image),
 *   tf_check_qemu_made (an image qemu-img/qemu-io made reads as written)
 *   tf_check_failed_write_rolls_back (a refused write leaves no trace)
 *
 * Measure:
 *   tf_measure_and_convert(format, opts, src, path, &m)
 *                       measure, then convert as the command does; the
 *                       numbers and the result's file size and allocation
 *   tf_write_sparse_raw(path, size, step)  data in every step-th MiB
 *
 * Independent readers:
 *   tf_libyal_same_bytes(tool, image, exported, src)
 *                       vmdkmount/vhdimount (FUSE) exports the bytes of src
 *   tf_sha256_padded(path, size)
 */
#ifndef DISKIMG_TEST_FORMAT_H
#define DISKIMG_TEST_FORMAT_H

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include <diskimg/core.h>

#include "test-tmpdir.h"

#ifndef KiB
#define KiB UINT64_C(1024)
#endif
#ifndef MiB
#define MiB (KiB * 1024)
#endif

/* ------------------------------------------------------------ program */

/* The common start of main(): fails loudly when the plugin under test
 * was not found, so a broken plugin path is not mistaken for a pass. */
static inline void tf_init(int *argc, char ***argv, const char *format, const char *env_name)
{
    GError *err = NULL;
    g_autofree char *prefix = g_strdup_printf("diskimg-%s", format);

    g_test_init(argc, argv, NULL);
    if (diskimg_init(&err) < 0)
        g_error("diskimg_init: %s", err->message);
    if (!diskimg_plugin_descriptor(DISKIMG_KIND_FORMAT, format))
        g_error("the %s plugin was not found (DISKIMG_PLUGIN_PATH=%s)", format,
                g_getenv("DISKIMG_PLUGIN_PATH"));
    test_tmpdir_create(prefix, env_name);
}

static inline int tf_run_tests(void)
{
    int ret = g_test_run();

    test_tmpdir_remove();
    return ret;
}

/* -------------------------------------------------------------- files */

static inline void tf_write_file(const char *path, const void *data, size_t len)
{
    GError *err = NULL;

    g_assert_true(g_file_set_contents(path, data, (gssize)len, &err));
    g_assert_no_error(err);
}

static inline uint8_t *tf_read_file(const char *path, size_t *len)
{
    gchar *data = NULL;
    gsize n = 0;
    GError *err = NULL;

    g_assert_true(g_file_get_contents(path, &data, &n, &err));
    g_assert_no_error(err);
    *len = n;
    return (uint8_t *)data;
}

static inline uint64_t tf_file_size(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (uint64_t)st.st_size;
}

/* Overwrites `len` bytes at `off` in place, inside the file. */
static inline void tf_patch(const char *path, uint64_t off, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY);

    g_assert_cmpuint(off + len, <=, tf_file_size(path));
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, bytes, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
}

static inline void tf_patch_le32(const char *path, uint64_t off, uint32_t v)
{
    uint8_t b[4];

    diskimg_put_le32(b, v);
    tf_patch(path, off, b, sizeof(b));
}

static inline void tf_patch_le64(const char *path, uint64_t off, uint64_t v)
{
    uint8_t b[8];

    diskimg_put_le64(b, v);
    tf_patch(path, off, b, sizeof(b));
}

static inline void tf_file_pread(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
}

static inline uint32_t tf_file_le32(const char *path, uint64_t off)
{
    uint8_t b[4];

    tf_file_pread(path, off, b, sizeof(b));
    return diskimg_le32(b);
}

static inline uint64_t tf_file_le64(const char *path, uint64_t off)
{
    uint8_t b[8];

    tf_file_pread(path, off, b, sizeof(b));
    return diskimg_le64(b);
}

/* Never zero (so a lost write cannot pass for a hole), and different per
 * guest offset with a period (251) prime to every block size, so data
 * landing in the wrong block is seen. */
static inline void tf_pattern(uint8_t *buf, uint64_t len, uint64_t offset, unsigned seed)
{
    for (uint64_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(((offset + i) * 7 + (uint64_t)seed * 31) % 251 + 1);
}

/* -------------------------------------------------- images via libdiskimg */

static inline diskimg_options *tf_options(const char *format, const char *set, const char *text)
{
    const diskimg_schema *sch = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    diskimg_options *o;
    GError *err = NULL;

    g_assert_nonnull(sch);
    o = diskimg_options_new(sch, set);
    if (text) {
        g_assert_cmpint(diskimg_options_parse(o, text, &err), ==, 0);
        g_assert_no_error(err);
    }
    return o;
}

/* Creates an image; 0, or -1 with *errp set. */
static inline int tf_try_create(const char *format, const char *path, uint64_t size,
                                const char *options, GError **errp)
{
    diskimg_options *o = tf_options(format, "create-options", options);
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = format, .options = o, .size = size,
    };
    int ret = diskimg_create(path, &p, errp);

    diskimg_options_free(o);
    return ret;
}

static inline void tf_create(const char *format, const char *path, uint64_t size,
                             const char *options)
{
    GError *err = NULL;

    g_assert_cmpint(tf_try_create(format, path, size, options, &err), ==, 0);
    g_assert_no_error(err);
}

/* Opens with `format` (NULL probes) and open-options text (may be NULL);
 * NULL with *errp set on failure. */
static inline diskimg_node *tf_try_open(const char *format, const char *path, unsigned flags,
                                        const char *options, GError **errp)
{
    diskimg_options *o = options ? tf_options(format, "open-options", options) : NULL;
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = format, .flags = flags, .format_options = o,
    };
    diskimg_node *n = diskimg_open(path, &p, errp);

    diskimg_options_free(o);
    return n;
}

static inline diskimg_node *tf_open(const char *format, const char *path, unsigned flags,
                                    const char *options)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open(format, path, flags, options, &err);

    g_assert_no_error(err);
    g_assert_nonnull(n);
    return n;
}

static inline void tf_write(diskimg_node *n, const void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_pwrite(n, buf, len, off, 0, &err), ==, 0);
    g_assert_no_error(err);
}

static inline void tf_read(diskimg_node *n, void *buf, uint64_t len, uint64_t off)
{
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_pread(n, buf, len, off, &err), ==, 0);
    g_assert_no_error(err);
}

static inline void tf_zero(diskimg_node *n, uint64_t off, uint64_t len)
{
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_write_zeroes(n, off, len, 0, &err), ==, 0);
    g_assert_no_error(err);
}

/* Writes tf_pattern(seed) at `offset` into the node and into the model. */
static inline void tf_write_pattern(diskimg_node *n, uint8_t *model, uint64_t offset,
                                    uint64_t len, unsigned seed)
{
    uint8_t *buf = g_malloc(len);

    tf_pattern(buf, len, offset, seed);
    tf_write(n, buf, len, offset);
    memcpy(model + offset, buf, len);
    g_free(buf);
}

/* Writes six runs into the node and the model (size >= 8 MiB), covering
 * the awkward cases: the first sector, a run across the first boundary of
 * `block`, one over several blocks at an odd offset, the last 1000 bytes,
 * a whole aligned MiB, and a small rewrite inside the first block.  Run i
 * holds tf_pattern(seed i + 1) from its own start. */
static inline void tf_write_scattered(diskimg_node *n, uint8_t *model, uint64_t size,
                                      uint64_t block)
{
    const struct { uint64_t off, len; } w[] = {
        { 0, 512 }, { block - 100, 300 }, { 5 * MiB + 7, 2 * MiB + 11 },
        { size - 1000, 1000 }, { 3 * MiB, MiB }, { 200, 100 },
    };
    uint8_t *buf = g_malloc(3 * MiB);

    for (size_t i = 0; i < G_N_ELEMENTS(w); i++) {
        tf_pattern(buf, w[i].len, 0, (unsigned)i + 1);
        tf_write(n, buf, w[i].len, w[i].off);
        memcpy(model + w[i].off, buf, w[i].len);
    }
    g_free(buf);
}

/* The node's size is `size` and its whole guest view equals the model;
 * the first differing byte is named. */
static inline void tf_expect_model(diskimg_node *n, const uint8_t *model, uint64_t size)
{
    uint8_t *buf = g_malloc(size);
    GError *err = NULL;

    g_assert_cmpint(diskimg_node_size(n, &err), ==, (int64_t)size);
    g_assert_cmpint(diskimg_node_pread(n, buf, size, 0, &err), ==, 0);
    g_assert_no_error(err);
    for (uint64_t i = 0; i < size; i++)
        if (buf[i] != model[i])
            g_error("byte %" PRIu64 " is %#x, expected %#x", i, buf[i], model[i]);
    g_free(buf);
}

/* Reads the whole image in requests of `step` bytes (exercising requests
 * that straddle the format's blocks); NULL with *errp set. */
static inline uint8_t *tf_read_all_step(diskimg_node *n, size_t step, size_t *len, GError **errp)
{
    int64_t size = diskimg_node_size(n, errp);
    uint8_t *buf;

    if (size < 0)
        return NULL;
    buf = g_malloc((size_t)size + 1);
    for (uint64_t off = 0; off < (uint64_t)size; off += step) {
        uint64_t n_bytes = MIN((uint64_t)step, (uint64_t)size - off);

        if (diskimg_node_pread(n, buf + off, n_bytes, off, errp) < 0) {
            g_free(buf);
            return NULL;
        }
    }
    *len = (size_t)size;
    return buf;
}

static inline uint8_t *tf_read_all(diskimg_node *n, size_t *len)
{
    GError *err = NULL;
    uint8_t *buf = tf_read_all_step(n, 1u << 20, len, &err);

    g_assert_no_error(err);
    return buf;
}

/* ------------------------------------------------------------- errors */

/* The message is one line, names the file (its basename; `path` NULL
 * skips that check) and holds both needles (either may be NULL). */
static inline void tf_assert_message(const GError *err, const char *path, const char *needle,
                                     const char *needle2)
{
    g_autofree char *base = path ? g_path_get_basename(path) : NULL;

    g_assert_nonnull(err);
    if (g_test_verbose())
        g_printerr("%s\n", err->message);
    if ((base && !strstr(err->message, base)) || (needle && !strstr(err->message, needle)) ||
        (needle2 && !strstr(err->message, needle2)) || strchr(err->message, '\n'))
        g_error("unexpected message \"%s\" (wanted one line naming %s and holding \"%s\"%s%s)",
                err->message, base ? base : "-", needle ? needle : "",
                needle2 ? " and " : "", needle2 ? needle2 : "");
}

/* As tf_assert_message, and the message holds the full path. */
static inline void tf_assert_message_path(const GError *err, const char *path,
                                          const char *needle, const char *needle2)
{
    tf_assert_message(err, path, needle, needle2);
    if (!strstr(err->message, path))
        g_error("\"%s\" does not name %s", err->message, path);
}

static inline void tf_expect_open_error(const char *path, const char *fmt, const char *needle)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open(fmt, path, 0, NULL, &err);

    if (n)
        g_error("%s opened although it is damaged (expected \"%s\")", path, needle);
    tf_assert_message(err, path, needle, NULL);
    g_error_free(err);
}

static inline void tf_expect_read_error(const char *path, const char *fmt, const char *needle)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open(fmt, path, 0, NULL, &err);
    size_t len;
    uint8_t *buf;

    g_assert_no_error(err);
    g_assert_nonnull(n);
    buf = tf_read_all_step(n, 1u << 20, &len, &err);
    if (buf)
        g_error("%s read completely although it is damaged (expected \"%s\")", path, needle);
    tf_assert_message(err, path, needle, NULL);
    g_error_free(err);
    diskimg_close(n);
}

/* The open must fail with `code` and a one-line message holding the
 * full path and every string of `needles` (NULL-terminated, may be NULL). */
static inline void tf_open_fails(const char *format, const char *path, unsigned flags, int code,
                                 const char *const *needles)
{
    GError *err = NULL;
    diskimg_node *n = tf_try_open(format, path, flags, NULL, &err);

    g_assert_null(n);
    g_assert_nonnull(err);
    g_assert_error(err, DISKIMG_ERROR, code);
    tf_assert_message_path(err, path, NULL, NULL);
    for (; needles && *needles; needles++)
        if (!strstr(err->message, *needles))
            g_error("'%s' not in '%s'", *needles, err->message);
    g_error_free(err);
}

/* -------------------------------------------------- external programs */

static inline bool tf_have(const char *program)
{
    g_autofree char *p = g_find_program_in_path(program);

    return p != NULL;
}

/* tf_have, marking the test skipped when the program is missing. */
static inline bool tf_need(const char *program)
{
    if (tf_have(program))
        return true;
    g_test_skip_printf("%s is not installed", program);
    return false;
}

static inline bool tf_have_qemu(void)
{
    return tf_have("qemu-img") && tf_have("qemu-io");
}

static inline bool tf_need_qemu(void)
{
    return tf_need("qemu-img") && tf_need("qemu-io");
}

/* Runs argv (NULL-terminated) in the scratch directory; returns its exit
 * status, -1 when it could not run or died.  Stdout goes to *out when out
 * is not NULL, stderr to *errout, or to the test log on failure.  qemu-img
 * 7.2's PBKDF2 calibration fails now and then with "Unable to get accurate
 * CPU usage" (its millisecond CPU clock read 0 elapsed): such runs are
 * retried after a short pause, so the next starts on a fresh tick. */
static inline int tf_run_full(const char *const *argv, char **out, char **errout)
{
    for (int attempt = 0;; attempt++) {
        g_autofree char *o = NULL, *e = NULL;
        GError *gerr = NULL;
        int status = 0;

        if (!g_spawn_sync(test_tmpdir, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                          &o, &e, &status, &gerr)) {
            g_test_message("%s: %s", argv[0], gerr->message);
            g_error_free(gerr);
            return -1;
        }
        if (!g_spawn_check_wait_status(status, NULL)) {
            if (attempt < 40 && e && strstr(e, "Unable to get accurate CPU usage")) {
                g_usleep(3000 + 1000 * (attempt % 7));
                continue;
            }
            if (!errout)
                g_test_message("%s: %s", argv[0], e ? e : "");
        }
        if (out)
            *out = g_steal_pointer(&o);
        if (errout)
            *errout = g_steal_pointer(&e);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
}

static inline int tf_run(char **out, const char *const *argv)
{
    return tf_run_full(argv, out, NULL);
}

#define TF_RUN(out, ...) tf_run(out, (const char *const[]){ __VA_ARGS__, NULL })

/* The program must exit 0; its output is shown when it does not. */
static inline void tf_run_ok(const char *const *argv)
{
    g_autofree char *out = NULL, *err = NULL;
    g_autofree char *cmd = g_strjoinv(" ", (char **)argv);

    if (tf_run_full(argv, &out, &err) != 0)
        g_error("%s failed:\n%s%s", cmd, out ? out : "", err ? err : "");
}

/* qemu-img compare of an image with a raw file: identical. */
static inline void tf_qemu_compare(const char *format, const char *image, const char *raw_path)
{
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "compare", "-q", "-f", format, "-F", "raw",
                           image, raw_path), ==, 0);
}

/* qemu-img reads the image as the model says, and its check is clean. */
static inline void tf_qemu_agrees(const char *format, const char *path, const uint8_t *model,
                                  uint64_t size)
{
    g_autofree char *raw_path = g_strdup_printf("%s.model", path);

    tf_write_file(raw_path, model, size);
    tf_qemu_compare(format, path, raw_path);
    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "check", "-f", format, path), ==, 0);
    unlink(raw_path);
}

/* Bytes qemu-img map --output=json reports as data of the top layer
 * (depth 0): holes must stay holes through our writes. */
static inline uint64_t tf_qemu_data_bytes(const char *format, const char *image)
{
    g_autofree char *out = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    uint64_t bytes = 0;

    g_assert_cmpint(TF_RUN(&out, "qemu-img", "map", "--output=json", "-f", format, image),
                    ==, 0);
    g_assert_true(json_parser_load_from_data(parser, out, -1, NULL));
    JsonArray *runs = json_node_get_array(json_parser_get_root(parser));
    for (guint i = 0; i < json_array_get_length(runs); i++) {
        JsonObject *run = json_array_get_object_element(runs, i);

        if (json_object_get_boolean_member(run, "data") &&
            json_object_get_int_member(run, "depth") == 0)
            bytes += (uint64_t)json_object_get_int_member(run, "length");
    }
    return bytes;
}

/* A write the file system refuses (RLIMIT_FSIZE: the file may not grow
 * past `fsize_limit`, 0 meaning 4 KiB more than after the first MiB is
 * written) fails cleanly and leaves no trace: the block stays a hole, the
 * earlier data stays, the next write into that block finds its other bytes
 * zero, and (when qemu is installed) qemu-img agrees and its check is
 * clean.  For formats that allocate blocks at the end of the file. */
static inline void tf_check_failed_write_rolls_back(const char *format, const char *path,
                                                    uint64_t fsize_limit)
{
    uint8_t *buf = g_malloc(MiB);
    uint8_t *model = g_malloc0(8 * MiB);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    struct rlimit old, small;
    GError *err = NULL;
    diskimg_node *n;
    int ret;

    tf_create(format, path, 8 * MiB, NULL);
    n = tf_open(format, path, DISKIMG_OPEN_RDWR, NULL);
    tf_pattern(buf, MiB, 0, 1);
    tf_write(n, buf, MiB, 0);
    memcpy(model, buf, MiB);
    g_assert_cmpint(diskimg_node_flush(n, &err), ==, 0);

    signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    small = old;
    small.rlim_cur = fsize_limit ? fsize_limit : tf_file_size(path) + 4096;
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &small), ==, 0);
    tf_pattern(buf, MiB, 0, 2);
    ret = diskimg_node_pwrite(n, buf, MiB, 4 * MiB, 0, &err);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    g_assert_cmpint(ret, ==, -1);
    g_assert_nonnull(err);
    g_clear_error(&err);

    g_assert_cmpint(diskimg_node_block_status(n, 4 * MiB, MiB, &ext, &err), ==, 0);
    g_assert_false(ext.flags & DISKIMG_BS_DATA);
    tf_expect_model(n, model, 8 * MiB);
    tf_write(n, buf, 4096, 4 * MiB + 8192);
    memcpy(model + 4 * MiB + 8192, buf, 4096);
    diskimg_close(n);
    n = tf_open(format, path, 0, NULL);
    tf_expect_model(n, model, 8 * MiB);
    diskimg_close(n);
    if (tf_need_qemu())
        tf_qemu_agrees(format, path, model, 8 * MiB);
    g_free(buf);
    g_free(model);
}

/* An image qemu made is read as qemu wrote it: qemu-img creates `path`
 * (7 MiB, create options `opts`), qemu-io writes a run that crosses
 * block boundaries and one near the end; the format must be probed as
 * `format` and the guest view hold exactly those bytes. */
static inline void tf_check_qemu_made(const char *format, const char *opts, const char *path)
{
    uint8_t *model = g_malloc0(7 * MiB);
    diskimg_node *n;

    g_assert_cmpint(TF_RUN(NULL, "qemu-img", "create", "-q", "-f", format, "-o", opts, path,
                           "7M"), ==, 0);
    g_assert_cmpint(TF_RUN(NULL, "qemu-io", "-f", format, "-c", "write -P 0x5a 1000 70000",
                           "-c", "write -P 0xa5 6M 4096", path), ==, 0);
    memset(model + 1000, 0x5a, 70000);
    memset(model + 6 * MiB, 0xa5, 4096);
    n = tf_open(NULL, path, 0, NULL);
    g_assert_cmpstr(diskimg_node_driver(n), ==, format);
    tf_expect_model(n, model, 7 * MiB);
    diskimg_close(n);
    g_free(model);
    unlink(path);
}

/* What was written lasts: reopened read-only, the image equals the model,
 * and qemu-img (when installed) reads the same; the scratch file
 * (raw_path) the model is saved to for qemu-img compare. */
static inline void tf_expect_reopened(const char *format, const char *path, const uint8_t *model,
                                      uint64_t size, const char *raw_path)
{
    diskimg_node *n = tf_open(format, path, 0, NULL);

    tf_expect_model(n, model, size);
    diskimg_close(n);
    if (tf_have_qemu()) {
        tf_write_file(raw_path, model, size);
        tf_qemu_compare(format, path, raw_path);
    }
}

/* qemu-img's guest view of an image, NULL when qemu-img is missing. */
static inline uint8_t *tf_qemu_convert(const char *fmt, const char *path, size_t *len)
{
    g_autofree char *out = g_strconcat(path, ".qemu.raw", NULL);
    uint8_t *contents;

    if (!tf_have("qemu-img"))
        return NULL;
    tf_run_ok((const char *const[]){ "qemu-img", "convert", "-f", fmt, "-O", "raw", path, out,
                                     NULL });
    contents = tf_read_file(out, len);
    g_unlink(out);
    return contents;
}

/* ------------------------------------------------------------- measure */

/* What measure said and what convert then made. */
struct tf_measured {
    uint64_t required, fully_allocated;
    uint64_t file_size;         /* of the converted image (all its files for vmdk
                                   extents: the caller adds them) */
    uint64_t allocated;         /* st_blocks * 512 of the converted image */
};

/* `measure -O format -o opts src` through libdiskimg, then `convert` of
 * the raw `src` into a new image at `path` made as the convert command
 * makes it (zero runs of 4 KiB skipped on an image that reads as zeroes,
 * whole clusters compressed when the format needs it). */
static inline void tf_measure_and_convert(const char *format, const char *opts,
                                          const char *src, const char *path,
                                          struct tf_measured *out)
{
    diskimg_node *source = tf_open("raw", src, 0, NULL);
    diskimg_options *o = tf_options(format, "create-options", opts);
    GError *err = NULL;
    int64_t size = diskimg_node_size(source, &err);
    struct diskimg_measure_args a = { .struct_size = sizeof(a), .options = o,
                                      .size = (uint64_t)size, .source = source };
    struct diskimg_measure_result r = { .struct_size = sizeof(r) };
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    struct stat st;

    g_assert_cmpint(size, >=, 0);
    g_assert_cmpint(diskimg_measure(format, &a, &r, &err), ==, 0);
    g_assert_no_error(err);
    out->required = r.required;
    out->fully_allocated = r.fully_allocated;
    tf_create(format, path, (uint64_t)size, opts);
    diskimg_node *target = tf_open(format, path, DISKIMG_OPEN_RDWR, NULL);
    g_assert_cmpint(diskimg_node_info(target, &info, &err), ==, 0);
    struct diskimg_copy_params p = {
        .struct_size = sizeof(p), .sources = &source, .n_sources = 1, .target = target,
        .sparse_size = 4096, .parallel = 8, .quiet = true,
        .target_is_zero = (diskimg_node_capabilities(target) & DISKIMG_CAP_ZERO_INIT) != 0,
        .compress = info.needs_compressed_writes,
    };
    g_assert_cmpint(diskimg_copy(&p, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_flush(target, &err), ==, 0);
    diskimg_close(target);
    diskimg_close(source);
    diskimg_options_free(o);
    g_assert_cmpint(stat(path, &st), ==, 0);
    out->file_size = (uint64_t)st.st_size;
    out->allocated = (uint64_t)st.st_blocks * 512;
}

/* A raw file of `size` bytes with data in every `step`-th MiB (seeded
 * pattern) and holes between; step 1 fills it. */
static inline void tf_write_sparse_raw(const char *path, uint64_t size, unsigned step)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    uint8_t *buf = g_malloc(MiB);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    for (uint64_t off = 0; off < size; off += (uint64_t)step * MiB) {
        uint64_t n = MIN(MiB, size - off);
        tf_pattern(buf, n, off, 11);
        g_assert_cmpint(pwrite(fd, buf, n, (off_t)off), ==, (ssize_t)n);
    }
    close(fd);
    g_free(buf);
}

/* --------------------------------------------- independent readers (libyal) */

/* sha256 (hex, g_free) of the file at `path`, read up to `size` bytes and
 * padded with zeroes to `size`; NULL when it cannot be read. */
static inline char *tf_sha256_padded(const char *path, uint64_t size)
{
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    uint8_t *buf = g_malloc0(MiB);
    int fd = open(path, O_RDONLY);
    uint64_t done = 0;
    char *hex = NULL;

    if (fd < 0)
        goto out;
    while (done < size) {
        size_t want = (size_t)MIN(MiB, size - done);
        ssize_t n = read(fd, buf, want);
        if (n < 0)
            goto out;
        if (n == 0) {                   /* past the end: zeroes */
            memset(buf, 0, want);
            n = (ssize_t)want;
        }
        g_checksum_update(sum, buf, (gssize)n);
        done += (uint64_t)n;
    }
    hex = g_strdup(g_checksum_get_string(sum));
out:
    if (fd >= 0)
        close(fd);
    g_free(buf);
    g_checksum_free(sum);
    return hex;
}

/* The guest view of `image` as a libyal FUSE tool exports it (vmdkmount
 * names it vmdk1, vhdimount vhdi1; Debian 12 ships no vmdkexport or
 * vhdiexport): its sha256 and *size.  NULL, with the test marked skipped,
 * when the tool is missing or the mount fails (no /dev/fuse, no rights);
 * a mount that works but refuses the image is a failure. */
static inline char *tf_libyal_sha256(const char *tool, const char *image, const char *exported,
                                     uint64_t *size)
{
    g_autofree char *mnt = g_build_filename(test_tmpdir, "libyal-mnt-XXXXXX", NULL);
    g_autofree char *err_text = NULL;
    char *hex = NULL;
    struct stat st;

    if (!tf_need(tool))
        return NULL;
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        g_test_skip("/dev/fuse is not usable here");
        return NULL;
    }
    g_assert_nonnull(g_mkdtemp(mnt));
    int rc = tf_run_full((const char *const[]){ tool, image, mnt, NULL }, NULL, &err_text);
    g_autofree char *file = g_build_filename(mnt, exported, NULL);
    if (rc != 0 || stat(file, &st) != 0) {
        if (err_text && strstr(err_text, "fuse"))
            g_test_skip_printf("%s cannot mount here: %s", tool, err_text);
        else
            g_error("%s %s failed (exit %d): %s", tool, image, rc, err_text ? err_text : "");
        g_rmdir(mnt);
        return NULL;
    }
    *size = (uint64_t)st.st_size;
    hex = tf_sha256_padded(file, *size);
    if (TF_RUN(NULL, "fusermount", "-u", mnt) != 0)
        g_assert_cmpint(TF_RUN(NULL, "umount", mnt), ==, 0);
    g_rmdir(mnt);
    g_assert_nonnull(hex);
    return hex;
}

/* The libyal reader exports the same bytes as the raw `src` (padded with
 * zeroes to the exported size, which must be at least the source's). */
static inline void tf_libyal_same_bytes(const char *tool, const char *image, const char *exported,
                                        const char *src)
{
    uint64_t size = 0;
    g_autofree char *got = tf_libyal_sha256(tool, image, exported, &size);

    if (!got)
        return;
    g_assert_cmpuint(size, >=, tf_file_size(src));
    g_autofree char *want = tf_sha256_padded(src, size);
    g_assert_cmpstr(got, ==, want);
}

#endif
