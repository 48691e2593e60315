/* SPDX-License-Identifier: MIT */
/*
 * replay.c — runs a harness on files, without libFuzzer (any compiler):
 *
 *     fuzz-replay-TARGET FILE-OR-DIRECTORY...
 *
 * Every file given, and every file in a directory given (sorted by name,
 * not recursing), is passed to the harness's LLVMFuzzerTestOneInput once,
 * with a TAP line per file.  A crash, a sanitizer report or a hang is the
 * failure (the harness itself never fails an input): each input has 10
 * seconds ($DISKIMG_FUZZ_TIMEOUT), as the campaigns' -timeout=10, after
 * which SIGALRM ends the program.  No file at all is
 * a skip (TAP "1..0 # SKIP"): a target without regressions yet.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <glib.h>

/* Harnesses that need no set-up define no LLVMFuzzerInitialize. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static void add_path(GPtrArray *files, const char *path)
{
    if (!g_file_test(path, G_FILE_TEST_IS_DIR)) {
        if (g_file_test(path, G_FILE_TEST_EXISTS))
            g_ptr_array_add(files, g_strdup(path));
        return;
    }
    GDir *d = g_dir_open(path, 0, NULL);
    const char *name;
    GPtrArray *here = g_ptr_array_new();
    while (d && (name = g_dir_read_name(d)))
        if (name[0] != '.')
            g_ptr_array_add(here, g_build_filename(path, name, NULL));
    if (d)
        g_dir_close(d);
    g_ptr_array_sort(here, (GCompareFunc)(void (*)(void))g_strcmp0);
    for (guint i = 0; i < here->len; i++)
        if (!g_file_test(here->pdata[i], G_FILE_TEST_IS_DIR))
            g_ptr_array_add(files, here->pdata[i]);   /* files takes it */
        else
            g_free(here->pdata[i]);
    g_ptr_array_free(here, TRUE);
}

int main(int argc, char **argv)
{
    g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
    for (int i = 1; i < argc; i++)
        add_path(files, argv[i]);
    if (files->len == 0) {
        printf("1..0 # SKIP no input files\n");
        return 0;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    const char *timeout_text = g_getenv("DISKIMG_FUZZ_TIMEOUT");
    unsigned timeout = timeout_text ? (unsigned)atoi(timeout_text) : 10;
    printf("1..%u\n", files->len);
    for (guint i = 0; i < files->len; i++) {
        const char *path = files->pdata[i];
        gchar *data = NULL;
        gsize size = 0;
        GError *err = NULL;
        if (!g_file_get_contents(path, &data, &size, &err)) {
            printf("not ok %u - %s: %s\n", i + 1, path, err->message);
            g_error_free(err);
            return 1;
        }
        fflush(stdout);
        alarm(timeout);   /* the default action ends the program: a hang fails */
        LLVMFuzzerTestOneInput((const uint8_t *)data, size);
        alarm(0);
        g_free(data);
        printf("ok %u - %s\n", i + 1, path);
    }
    return 0;
}
