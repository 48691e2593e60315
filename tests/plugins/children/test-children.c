/* SPDX-License-Identifier: MIT */
/*
 * Child nodes, end to end, through the "children" test format (three
 * extent children): the children follow --io, -t none and -U/locking, the
 * image's disk size counts them, a failed create removes exactly the files
 * it made, and a read-only image refuses every write.
 *
 * Run with DISKIMG_PLUGIN_PATH naming the directory of children.so.  With
 * "--hold-lock FILE" the program instead opens FILE read-write as raw,
 * prints "locked", and waits for its stdin to close: the second process
 * that holds a lock on one child.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <diskimg/core.h>
#include "test-tmpdir.h"

#define PART (64 * 1024)

static char *image_path(const char *name)
{
    return test_tmp_path(name);
}

static char *part_path(const char *image, unsigned i)
{
    return g_strdup_printf("%s.%u", image, i);
}

static void create_image(const char *path, const char *options, GError **errp)
{
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "children");
    g_assert_nonnull(s);
    diskimg_options *o = diskimg_options_new(s, "create-options");
    if (options)
        g_assert_cmpint(diskimg_options_parse(o, options, NULL), ==, 0);
    struct diskimg_create_params p = {
        .struct_size = sizeof(p), .format = "children", .options = o, .size = 3 * PART,
    };
    diskimg_create(path, &p, errp);
    diskimg_options_free(o);
}

static diskimg_node *open_image(const char *path, const char *io, enum diskimg_cache cache,
                                unsigned flags, GError **errp)
{
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = "children", .io = io, .cache = cache,
        .flags = flags | DISKIMG_OPEN_NO_BACKING,
    };
    return diskimg_open(path, &p, errp);
}

/* The open flags (fdinfo "flags:", octal) of our descriptor for `path`, or -1. */
static long fd_flags_of(const char *path)
{
    g_autofree char *want = realpath(path, NULL);
    g_assert_nonnull(want);
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    g_assert_nonnull(d);
    long flags = -1;
    const char *e;
    while (flags < 0 && (e = g_dir_read_name(d))) {
        g_autofree char *link = g_strdup_printf("/proc/self/fd/%s", e);
        g_autofree char *target = g_file_read_link(link, NULL);
        if (!target || strcmp(target, want) != 0)
            continue;
        g_autofree char *info_path = g_strdup_printf("/proc/self/fdinfo/%s", e);
        g_autofree char *info = NULL;
        if (!g_file_get_contents(info_path, &info, NULL, NULL))
            continue;
        const char *f = strstr(info, "flags:");
        if (f)
            flags = strtol(f + 6, NULL, 8);
    }
    g_dir_close(d);
    return flags;
}

static void test_follow_io_and_cache(void)
{
    g_autofree char *img = image_path("io.img");
    GError *err = NULL;
    create_image(img, NULL, &err);
    g_assert_no_error(err);
    /* uring where this build has it: a backend other than the default. */
    const char *io = diskimg_plugin_descriptor(DISKIMG_KIND_IO, "uring") ? "uring" : "posix";
    diskimg_node *n = open_image(img, io, DISKIMG_CACHE_NONE, DISKIMG_OPEN_RDWR, &err);
    g_assert_no_error(err);
    const char *top_io = diskimg_node_driver(diskimg_node_file(n));
    if (strcmp(top_io, io) != 0)
        g_test_message("%s unavailable here: the image fell back to %s", io, top_io);
    g_assert_cmpuint(diskimg_node_child_count(n, DISKIMG_CHILD_EXTENT), ==, 3);
    g_assert_cmpuint(diskimg_node_child_count(n, 0), ==, 3);
    for (unsigned i = 0; i < 3; i++) {
        diskimg_node *c = diskimg_node_child(n, DISKIMG_CHILD_EXTENT, i);
        g_assert_nonnull(c);
        g_assert_cmpstr(diskimg_node_driver(c), ==, top_io);
        g_assert_true(diskimg_node_is_writable(c));
        g_autofree char *part = part_path(img, i + 1);
        g_assert_cmpstr(diskimg_node_filename(c), ==, part);
        long flags = fd_flags_of(part);
        g_assert_cmpint(flags, >=, 0);
        g_assert_true(flags & O_DIRECT);
        g_assert_cmpint(flags & O_ACCMODE, ==, O_RDWR);
    }
    g_assert_null(diskimg_node_child(n, DISKIMG_CHILD_EXTENT, 3));
    g_assert_null(diskimg_node_data_file(n));
    diskimg_close(n);

    /* Without -t none, no O_DIRECT; read-only parent, read-only children. */
    n = open_image(img, NULL, DISKIMG_CACHE_WRITEBACK, 0, &err);
    g_assert_no_error(err);
    g_autofree char *part2 = part_path(img, 2);
    long flags = fd_flags_of(part2);
    g_assert_cmpint(flags, >=, 0);
    g_assert_false(flags & O_DIRECT);
    g_assert_cmpint(flags & O_ACCMODE, ==, O_RDONLY);
    g_assert_false(diskimg_node_is_writable(diskimg_node_child(n, DISKIMG_CHILD_EXTENT, 1)));
    diskimg_close(n);
}

static int64_t st_bytes(const char *path)
{
    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    return (int64_t)st.st_blocks * 512;
}

static void test_disk_size(void)
{
    g_autofree char *img = image_path("size.img");
    GError *err = NULL;
    create_image(img, NULL, &err);
    g_assert_no_error(err);
    diskimg_node *n = open_image(img, NULL, DISKIMG_CACHE_WRITEBACK, DISKIMG_OPEN_RDWR, &err);
    g_assert_no_error(err);
    /* One written 64 KiB run in each child, then flushed by the core. */
    g_autofree uint8_t *buf = g_malloc(PART);
    memset(buf, 0xa5, PART);
    for (unsigned i = 0; i < 3; i++)
        g_assert_cmpint(diskimg_node_pwrite(n, buf, PART, (uint64_t)i * PART, 0, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpint(diskimg_node_flush(n, &err), ==, 0);
    int64_t expect = st_bytes(img);
    for (unsigned i = 1; i <= 3; i++) {
        g_autofree char *part = part_path(img, i);
        g_assert_cmpint(st_bytes(part), >=, PART);
        expect += st_bytes(part);
    }
    g_assert_cmpint(diskimg_node_allocated_size(n, &err), ==, expect);
    JsonObject *info = diskimg_image_info(n, &err);
    g_assert_no_error(err);
    g_assert_cmpint(json_object_get_int_member(info, "actual-size"), ==, expect);
    json_object_unref(info);
    /* What was written reads back through the children. */
    memset(buf, 0, PART);
    g_assert_cmpint(diskimg_node_pread(n, buf, PART, 2 * PART, &err), ==, 0);
    g_assert_cmpint(buf[0], ==, 0xa5);
    g_assert_cmpint(buf[PART - 1], ==, 0xa5);
    diskimg_close(n);
}

/* Starts this program holding a read-write lock on `path`. */
static GPid hold_lock(const char *self, const char *path, int *to_child)
{
    const char *argv[] = { self, "--hold-lock", path, NULL };
    GPid pid;
    int out;
    GError *err = NULL;
    g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                             &pid, to_child, &out, NULL, &err);
    g_assert_no_error(err);
    char line[16] = { 0 };
    g_assert_cmpint(read(out, line, sizeof(line) - 1), >, 0);
    g_assert_cmpstr(line, ==, "locked\n");
    close(out);
    return pid;
}

static const char *self_path;

static void test_locks(void)
{
    g_autofree char *img = image_path("lock.img");
    GError *err = NULL;
    create_image(img, NULL, &err);
    g_assert_no_error(err);
    g_autofree char *part3 = part_path(img, 3);
    int to_child;
    GPid pid = hold_lock(self_path, part3, &to_child);

    /* The lock on the third child stops a plain open of the image... */
    diskimg_node *n = open_image(img, NULL, DISKIMG_CACHE_WRITEBACK, 0, &err);
    g_assert_null(n);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "lock"));
    g_assert_nonnull(strstr(err->message, "lock.img.3"));
    g_clear_error(&err);
    /* ...while -U reads through it. */
    n = open_image(img, NULL, DISKIMG_CACHE_WRITEBACK, DISKIMG_OPEN_FORCE_SHARE, &err);
    g_assert_no_error(err);
    uint8_t b[512];
    g_assert_cmpint(diskimg_node_pread(n, b, sizeof(b), 2 * PART, &err), ==, 0);
    diskimg_close(n);

    close(to_child);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_spawn_close_pid(pid);

    /* And the other way round: our read-write open locks every child. */
    n = open_image(img, NULL, DISKIMG_CACHE_WRITEBACK, DISKIMG_OPEN_RDWR, &err);
    g_assert_no_error(err);
    struct diskimg_open_params rawp = { .struct_size = sizeof(rawp), .format = "raw",
                                        .flags = DISKIMG_OPEN_NO_BACKING };
    diskimg_node *other = diskimg_open(part3, &rawp, &err);
    g_assert_null(other);
    g_assert_nonnull(err);
    g_clear_error(&err);
    diskimg_close(n);
}

static void write_file(const char *path, const char *text)
{
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void test_failed_create(void)
{
    g_autofree char *img = image_path("fail.img");
    g_autofree char *p1 = part_path(img, 1), *p2 = part_path(img, 2), *p3 = part_path(img, 3);
    /* The third child's name is taken by a file that must survive. */
    write_file(p3, "precious");
    GError *err = NULL;
    create_image(img, "fail_after=2", &err);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, "failing on purpose"));
    g_clear_error(&err);
    g_assert_false(g_file_test(img, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(p1, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(p2, G_FILE_TEST_EXISTS));
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(p3, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "precious");

    /* A child file that existed before is reused but never removed. */
    write_file(p1, "old");
    create_image(img, "fail_after=2", &err);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_true(g_file_test(p1, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(p2, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(img, G_FILE_TEST_EXISTS));
    unlink(p1);
    unlink(p3);
}

static void test_read_only_image(void)
{
    g_autofree char *img = image_path("ro.img");
    GError *err = NULL;
    create_image(img, NULL, &err);
    g_assert_no_error(err);
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, "children");
    diskimg_options *o = diskimg_options_new(s, "open-options");
    g_assert_cmpint(diskimg_options_parse(o, "read_only_image=on", NULL), ==, 0);
    struct diskimg_open_params p = {
        .struct_size = sizeof(p), .format = "children", .format_options = o,
        .flags = DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_BACKING,
    };
    diskimg_node *n = diskimg_open(img, &p, &err);
    g_assert_null(n);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_assert_nonnull(strstr(err->message, "Image is read-only"));
    g_clear_error(&err);
    p.flags &= ~DISKIMG_OPEN_RDWR;
    n = diskimg_open(img, &p, &err);
    g_assert_no_error(err);
    g_assert_true(diskimg_node_capabilities(n) & DISKIMG_CAP_READ_ONLY);
    g_assert_true(diskimg_node_capabilities(n) & DISKIMG_CAP_ZERO_INIT);
    g_assert_false(diskimg_node_is_writable(n));
    uint8_t b[512] = { 0 };
    g_assert_cmpint(diskimg_node_pwrite(n, b, 512, 0, 0, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_write_zeroes(n, 0, 512, 0, &err), ==, -1);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_discard(n, 0, 512, &err), ==, -1);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_truncate(n, 6 * PART, DISKIMG_PREALLOC_OFF, 0, &err), ==, -1);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_make_empty(n, &err), ==, -1);
    g_clear_error(&err);
    /* Snapshot and bitmap changes are refused for the image before the
     * format is even asked (it has no such callbacks). */
    struct diskimg_snapshot sn = { .struct_size = sizeof(sn), .name = "s" };
    g_assert_cmpint(diskimg_node_snapshot_create(n, &sn, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_clear_error(&err);
    struct diskimg_bitmap bm = { .struct_size = sizeof(bm), .name = "b", .granularity = 65536 };
    g_assert_cmpint(diskimg_node_bitmap_add(n, &bm, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_clear_error(&err);
    g_assert_cmpint(diskimg_node_snapshot_delete(n, "s", &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION);
    g_clear_error(&err);
    /* A struct whose struct_size was never set is refused, not misread. */
    struct diskimg_extent ext = { 0 };
    g_assert_cmpint(diskimg_node_block_status(n, 0, 512, &ext, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);
    ext.struct_size = sizeof(ext);
    g_assert_cmpint(diskimg_node_block_status(n, 0, 512, &ext, &err), ==, 0);
    g_assert_cmpuint(ext.struct_size, ==, sizeof(ext));
    g_assert_true(ext.flags & DISKIMG_BS_ALLOCATED);
    diskimg_close(n);
    diskimg_options_free(o);
}

static int hold_lock_main(const char *path)
{
    struct diskimg_open_params p = { .struct_size = sizeof(p), .format = "raw",
                                     .flags = DISKIMG_OPEN_RDWR | DISKIMG_OPEN_NO_BACKING };
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);
    if (!n) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
    }
    printf("locked\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    diskimg_close(n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--hold-lock") == 0)
        return hold_lock_main(argv[2]);
    self_path = argv[0];
    g_test_init(&argc, &argv, NULL);
    g_assert_cmpint(diskimg_init(NULL), ==, 0);
    test_tmpdir_create("diskimg-children", NULL);
    g_test_add_func("/children/follow-io-and-cache", test_follow_io_and_cache);
    g_test_add_func("/children/disk-size", test_disk_size);
    g_test_add_func("/children/locks", test_locks);
    g_test_add_func("/children/failed-create", test_failed_create);
    g_test_add_func("/children/read-only-image", test_read_only_image);
    int ret = g_test_run();
    test_tmpdir_remove();
    return ret;
}
