/* SPDX-License-Identifier: MIT */
/* fuzz-common.c — scratch files for the harnesses (see fuzz.h). */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

static char *scratch;

static void remove_scratch(void)
{
    GDir *d = g_dir_open(scratch, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(scratch, name, NULL);
        g_unlink(path);
    }
    if (d)
        g_dir_close(d);
    g_rmdir(scratch);
}

const char *fuzz_scratch_dir(void)
{
    if (scratch)
        return scratch;
    /* tmpfs: a campaign writes every input to a file, often millions of
     * times, and must not wear a disk or wait for one */
    const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
    g_autofree char *tmpl = g_build_filename(base, "diskimg-fuzz-XXXXXX", NULL);
    scratch = g_mkdtemp(g_steal_pointer(&tmpl));
    if (!scratch) {
        fprintf(stderr, "fuzz: cannot make a scratch directory in %s: %s\n", base,
                strerror(errno));
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t done = 0;
    while (fd >= 0 && done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (fd < 0 || done != size) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    close(fd);
}

char *fuzz_text(const uint8_t *data, size_t size)
{
    char *text = g_malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    return text;
}
