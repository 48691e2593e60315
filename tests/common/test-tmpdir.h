/* SPDX-License-Identifier: MIT */
/*
 * test-tmpdir.h — a scratch directory for a unit test program, shared by
 * the plugins' GTest programs so none of them writes its own.
 *
 *   test_tmpdir_create("diskimg-raw");   once, in main()
 *   char *p = test_tmp_path("x.img");    g_free() it
 *   test_tmpdir_remove();                at the end of main()
 *
 * With `env_name` set, test_tmpdir_create reuses the directory a parent
 * process exported there (g_test_trap_subprocess runs main() again).
 */
#ifndef DISKIMG_TEST_TMPDIR_H
#define DISKIMG_TEST_TMPDIR_H

#include <glib.h>
#include <glib/gstdio.h>

static char *test_tmpdir;

static inline void test_tmpdir_create(const char *prefix, const char *env_name)
{
    const char *inherited = env_name ? g_getenv(env_name) : NULL;
    if (inherited) {
        test_tmpdir = g_strdup(inherited);
        return;
    }
    g_autofree char *tmpl = g_strdup_printf("%s-XXXXXX", prefix);
    GError *err = NULL;
    test_tmpdir = g_dir_make_tmp(tmpl, &err);
    g_assert_no_error(err);
    if (env_name)
        g_setenv(env_name, test_tmpdir, TRUE);
}

static inline char *test_tmp_path(const char *name)
{
    return g_build_filename(test_tmpdir, name, NULL);
}

/* Removes the directory and the files in it (tests make no subdirectories). */
static inline void test_tmpdir_remove(void)
{
    if (!test_tmpdir)
        return;
    if (!g_test_subprocess()) {
        GDir *d = g_dir_open(test_tmpdir, 0, NULL);
        const char *name;
        while (d && (name = g_dir_read_name(d)) != NULL) {
            g_autofree char *p = g_build_filename(test_tmpdir, name, NULL);
            g_unlink(p);
        }
        if (d)
            g_dir_close(d);
        g_rmdir(test_tmpdir);
    }
    g_clear_pointer(&test_tmpdir, g_free);
}

#endif
