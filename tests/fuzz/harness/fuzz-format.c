/* SPDX-License-Identifier: MIT */
/*
 * fuzz-format.c — one harness for every format plugin.
 *
 * The input is an image file.  It is written to a tmpfs scratch file and
 * driven through the public libdiskimg API the way the commands drive a
 * file a stranger sent:
 *   1. info:   opened metadata-only with its backing chain, ImageInfo,
 *              snapshot and bitmap lists, rendered as JSON;
 *   2. read:   opened read-only, block status walked from 0 to the end,
 *              the start of every extent read;
 *   3. check:  opened for check, checked without repairing;
 *   4. repair: a copy opened read-write for check, `check -r all`, then
 *              checked again, as qemu-img check -r does.
 * The format is fixed when the harness is built (-DFUZZ_FORMAT="qcow2",
 * one libFuzzer binary per format) or, in the replay driver, taken from
 * $DISKIMG_FUZZ_FORMAT.  Plugins come from the build tree, or from
 * $DISKIMG_PLUGIN_PATH.
 *
 * With $DISKIMG_FUZZ_VERBOSE set, every step prints what it got to
 * stderr (to see how far a seed or a finding gets).
 *
 * Work per input is bounded so that a campaign measures the parser, not
 * the size of the guest: at most FUZZ_MAX_EXTENTS block-status answers and
 * FUZZ_READ_BUDGET bytes of guest data per input.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diskimg/core.h>

#define FUZZ_MAX_EXTENTS 1024
#define FUZZ_READ_CHUNK (64 * 1024)
#define FUZZ_READ_BUDGET (1024 * 1024)
/* Encrypted formats (luks, qcow2/qcow encryption) are opened with this
 * secret, which is also the password of their seed images. */
#define FUZZ_SECRET_ID "fuzzsec"
#define FUZZ_PASSWORD "fuzzpass"

static const char *format;
static char *image_path, *copy_path;
static void *read_buffer;

static bool verbose;

/* Reports a step's outcome when verbose; consumes err. */
static void note(const char *step, GError *err)
{
    if (verbose)
        fprintf(stderr, "fuzz-format %s %s: %s\n", format, step, err ? err->message : "ok");
    g_clear_error(&err);
}

static void die(const char *what, GError *err)
{
    fprintf(stderr, "fuzz-format: %s: %s\n", what, err ? err->message : "failed");
    exit(2);
}

static const char *target_format(void)
{
#ifdef FUZZ_FORMAT
    return FUZZ_FORMAT;
#else
    return g_getenv("DISKIMG_FUZZ_FORMAT");
#endif
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    GError *err = NULL;
    format = target_format();
    verbose = g_getenv("DISKIMG_FUZZ_VERBOSE") != NULL;
    if (!format || !*format)
        die("no format", NULL);
    if (diskimg_init(&err) < 0)
        die("diskimg_init", err);
    /* Loading the plugin now, before the campaign starts, lets libFuzzer
     * see the coverage counters of the plugin it dlopens. */
    if (diskimg_format_require(format, &err) < 0)
        die(format, err);
    if (diskimg_object_add("secret,id=" FUZZ_SECRET_ID ",data=" FUZZ_PASSWORD, &err) < 0)
        die("secret", err);
    image_path = g_build_filename(fuzz_scratch_dir(), "image", NULL);
    copy_path = g_build_filename(fuzz_scratch_dir(), "copy", NULL);
    read_buffer = g_malloc(FUZZ_READ_CHUNK);
    return 0;
}

/* The open-options that name a secret get the harness's secret, so that
 * encrypted images are decrypted and their data paths reached. */
static diskimg_options *open_options(void)
{
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    if (!s || !diskimg_schema_has_set(s, "open-options"))
        return NULL;
    diskimg_options *o = diskimg_options_new(s, "open-options");
    g_auto(GStrv) keys = diskimg_schema_set_keys(s, "open-options");
    for (char **k = keys; k && *k; k++)
        if (g_str_has_suffix(*k, "key-secret"))
            diskimg_options_set(o, *k, FUZZ_SECRET_ID, NULL);
    return o;
}

static diskimg_node *open_image(const char *path, unsigned flags, const char *step)
{
    GError *err = NULL;
    struct diskimg_open_params p = { .struct_size = sizeof(p) };
    p.format = format;
    p.flags = flags | DISKIMG_OPEN_NO_LOCK;
    diskimg_options *o = open_options();
    p.format_options = o;
    diskimg_node *n = diskimg_open(path, &p, &err);
    diskimg_options_free(o);
    note(step, err);
    return n;
}

static void render_info(diskimg_node *n)
{
    GError *err = NULL;
    JsonObject *info = diskimg_image_info(n, &err);
    note("image info", err);
    if (!info)
        return;
    JsonNode *node = json_node_init_object(json_node_alloc(), info);
    g_free(diskimg_render_json(node, true));
    GString *human = g_string_new(NULL);
    diskimg_render_human(human, node, 0);
    g_string_free(human, TRUE);
    json_node_unref(node);
    json_object_unref(info);
}

/* As `info --backing-chain`: every layer the core opened. */
static void run_info(void)
{
    diskimg_node *top = open_image(image_path, DISKIMG_OPEN_NO_IO, "open for info");
    for (diskimg_node *n = top; n; n = diskimg_node_backing(n))
        render_info(n);
    if (top) {
        diskimg_snapshot_list_free(diskimg_node_snapshots(top, NULL));
        diskimg_bitmap_list_free(diskimg_node_bitmaps(top, NULL));
    }
    diskimg_close(top);
}

/* Reads the start of an extent, within what is left of the budget. */
static void read_extent(diskimg_node *n, uint64_t offset, uint64_t length, uint64_t *budget)
{
    uint64_t len = MIN(MIN(length, (uint64_t)FUZZ_READ_CHUNK), *budget);
    if (len == 0)
        return;
    *budget -= len;
    GError *err = NULL;
    diskimg_node_pread(n, read_buffer, len, offset, &err);
    if (err)
        note("read", err);
}

static void run_read(void)
{
    diskimg_node *n = open_image(image_path, DISKIMG_OPEN_NO_BACKING, "open for read");
    if (!n)
        return;
    int64_t size = diskimg_node_size(n, NULL);
    uint64_t offset = 0, budget = FUZZ_READ_BUDGET;
    unsigned i;
    for (i = 0; size > 0 && offset < (uint64_t)size && i < FUZZ_MAX_EXTENTS; i++) {
        struct diskimg_extent ext = { .struct_size = sizeof(ext) };
        GError *err = NULL;
        if (diskimg_node_block_status(n, offset, (uint64_t)size - offset, &ext, &err) < 0 ||
            ext.length == 0) {
            note("block status", err);
            break;
        }
        uint64_t length = MIN(ext.length, (uint64_t)size - offset);
        if (ext.flags & DISKIMG_BS_DATA)
            read_extent(n, offset, length, &budget);
        offset += length;
    }
    if (verbose)
        fprintf(stderr, "fuzz-format %s read: %u extents, %" PRIu64 " bytes read\n", format, i,
                (uint64_t)FUZZ_READ_BUDGET - budget);
    diskimg_close(n);
}

static void check(const char *path, unsigned flags, unsigned fix)
{
    const char *step = fix ? "repair" : "check";
    diskimg_node *n = open_image(path, flags | DISKIMG_OPEN_CHECK | DISKIMG_OPEN_NO_BACKING,
                                 fix ? "open for repair" : "open for check");
    if (!n)
        return;
    struct diskimg_check_result r = { .struct_size = sizeof(r) };
    GError *err = NULL;
    int ret = diskimg_node_check(n, fix, &r, &err);
    if (verbose && ret == 0)
        fprintf(stderr, "fuzz-format %s %s: %" PRIu64 " corruptions, %" PRIu64 " leaks, %"
                PRIu64 " fixed\n", format, step, r.corruptions, r.leaks,
                r.corruptions_fixed + r.leaks_fixed);
    note(step, err);
    if (ret == 0 && fix &&
        (r.corruptions_fixed || r.leaks_fixed)) {
        /* qemu-img check -r checks the repaired image once more */
        struct diskimg_check_result again = { .struct_size = sizeof(again) };
        diskimg_node_check(n, 0, &again, NULL);
    }
    diskimg_close(n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(image_path, data, size);
    run_info();
    run_read();
    check(image_path, 0, 0);
    bool writable = !(diskimg_format_capabilities(format) & DISKIMG_CAP_READ_ONLY);
    if (writable && diskimg_format_has_op(format, "check")) {
        fuzz_write_file(copy_path, data, size);
        check(copy_path, DISKIMG_OPEN_RDWR, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS);
    }
    return 0;
}
