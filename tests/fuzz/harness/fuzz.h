/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h — what every fuzz harness of tests/fuzz/harness shares.
 *
 * A harness defines libFuzzer's entry points: LLVMFuzzerTestOneInput (one
 * input, never fails: every error of the code under test is a value that
 * is dropped) and, when it needs set-up, LLVMFuzzerInitialize.  The same
 * object is linked either with libFuzzer (clang, -Dfuzzing=true) or with
 * replay.c (any compiler), which feeds it the regression corpus in an
 * ordinary `meson test` run.  docs/fuzzing.md describes the campaigns.
 */
#ifndef DISKIMG_FUZZ_H
#define DISKIMG_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A scratch directory of this process on a tmpfs (/dev/shm, else the
 * temporary directory), made on first use and removed at exit with what
 * the harness left in it.  Owned by fuzz_common.c: do not free. */
const char *fuzz_scratch_dir(void);

/* Replaces file `path` by the `size` bytes of `data`; aborts when the
 * scratch file system refuses (a harness fault, not a finding). */
void fuzz_write_file(const char *path, const uint8_t *data, size_t size);

/* The input as a NUL-terminated string (g_free): parsers of text take
 * C strings, and a NUL inside the input simply ends the text early. */
char *fuzz_text(const uint8_t *data, size_t size);

#endif /* DISKIMG_FUZZ_H */
