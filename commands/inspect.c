/* SPDX-License-Identifier: MIT */
/*
 * diskimg inspect: what an image from a stranger is, and what opening it
 * the usual way would reach, judged from FILE alone (docs/untrusted.md).
 *
 * Every judgement about the image comes from the core: the probe claims
 * (diskimg_probe_all), the findings the core and the format record while
 * the image is opened metadata-only with no other file allowed
 * (DISKIMG_OPEN_NO_CHILDREN), and the generic info.  This file only adds
 * what follows from those (several formats, a raw file that looks like
 * another) and prints.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* Exit codes (schema/commands.yaml, docs/untrusted.md). */
enum { INSPECT_OK = 0, INSPECT_ERROR = 1, INSPECT_UNSAFE = 2 };

/* Block status calls the size-exceeds-file walk may make: enough for any
 * sane image, bounded for a hostile one. */
#define MAX_STATUS_CALLS 65536

struct inspection {
    const char *filename;
    int64_t file_size;
    GArray *matches;                /* struct diskimg_probe_match (format static) */
    const char *format;             /* decided, NULL when none */
    const char *reason;
    char *reason_owned;
    int64_t virtual_size;           /* -1: unknown */
    diskimg_findings *findings;
};

static void inspection_clear(struct inspection *in)
{
    g_array_free(in->matches, TRUE);
    g_free(in->reason_owned);
    diskimg_findings_free(in->findings);
}

static void keep_match(const struct diskimg_probe_match *m, void *opaque)
{
    g_array_append_val((GArray *)opaque, *m);
}

static const char *source_name(uint32_t source)
{
    switch (source) {
    case DISKIMG_PROBE_HEADER:  return "header";
    case DISKIMG_PROBE_TRAILER: return "trailer";
    case DISKIMG_PROBE_MAGIC:   return "magic";
    }
    return "unknown";
}

static const char *severity_name(uint32_t severity)
{
    switch (severity) {
    case DISKIMG_SEVERITY_INFO:    return "info";
    case DISKIMG_SEVERITY_WARNING: return "warning";
    }
    return "unsafe";
}

/* Refuses what would block or is no image: reading a FIFO waits for a
 * writer forever, a directory or socket has no bytes to inspect. */
static int check_file_type(const char *filename, GError **errp)
{
    struct stat st;
    if (stat(filename, &st) < 0) {
        diskimg_set_errno(errp, errno, "Could not open '%s'", filename);
        return -1;
    }
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "%s: not a regular file or block device", filename);
}

/* A polyglot: more than one format claims the file. */
static void judge_matches(struct inspection *in)
{
    if (in->matches->len < 2)
        return;
    g_autoptr(GString) names = g_string_new(NULL);
    for (guint i = 0; i < in->matches->len; i++)
        g_string_append_printf(names, "%s%s", i ? ", " : "",
                               g_array_index(in->matches, struct diskimg_probe_match, i).format);
    diskimg_findings_add(in->findings, "multiple-formats", DISKIMG_SEVERITY_UNSAFE, "formats",
                         "more than one format claims the file: %s", names->str);
}

/* A fallback (raw) image whose bytes another format claims: a guest, or
 * whoever made the file, may have written a header that tools probing the
 * file would take for that format.  A claim on a format we know by magic
 * only without a package (an ISO 9660 volume) is plain content. */
static void judge_raw(struct inspection *in)
{
    if (!in->format || !g_str_equal(in->format, "raw"))
        return;
    for (guint i = 0; i < in->matches->len; i++) {
        const struct diskimg_probe_match *m =
            &g_array_index(in->matches, struct diskimg_probe_match, i);
        bool image_format = m->installed || diskimg_plugin_package(DISKIMG_KIND_FORMAT,
                                                                    m->format);
        g_autofree char *id = g_strdup_printf("raw-looks-like-%s", m->format);
        diskimg_findings_add(in->findings, id,
                             image_format ? DISKIMG_SEVERITY_UNSAFE : DISKIMG_SEVERITY_INFO,
                             "format", "the image is read as raw, but its %s looks like %s",
                             source_name(m->source), m->format);
    }
}

static int decide(struct inspection *in, diskimg_node *file, const char *named)
{
    if (named) {
        if (diskimg_format_require(named, NULL) < 0) {
            cli_error("Unknown file format '%s'", named);
            return -1;
        }
        in->format = named;
        in->reason = "named with -f";
        return 0;
    }
    GError *err = NULL;
    in->format = diskimg_probe_decide(file, &in->reason, &err);
    if (!in->format) {
        in->reason_owned = g_strdup(err->message);
        in->reason = in->reason_owned;
        diskimg_findings_add(in->findings, "no-plugin", DISKIMG_SEVERITY_WARNING, "format",
                             "%s", err->message);
        g_error_free(err);
    }
    return 0;
}

/* Host ranges the image maps past the end of its own file. */
static void judge_extents(struct inspection *in, diskimg_node *img)
{
    diskimg_node *file = diskimg_node_file(img);
    uint64_t size = (uint64_t)in->virtual_size;
    uint64_t off = 0;
    for (unsigned calls = 0; off < size && calls < MAX_STATUS_CALLS; calls++) {
        struct diskimg_extent ext = { .struct_size = sizeof(ext) };
        if (diskimg_node_block_status(img, off, size - off, &ext, NULL) < 0 || !ext.length)
            return;
        if ((ext.flags & DISKIMG_BS_OFFSET_VALID) && ext.file == file &&
            ext.offset + ext.length > (uint64_t)in->file_size) {
            diskimg_findings_add(in->findings, "size-exceeds-file", DISKIMG_SEVERITY_WARNING,
                                 "virtual-size", "guest offset %" PRIu64 " maps to host "
                                 "offset %" PRIu64 ", past the end of the file (%" PRId64
                                 " bytes)", off, ext.offset, in->file_size);
            return;
        }
        off += ext.length;
    }
}

static void judge_info(struct inspection *in, diskimg_node *img)
{
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    if (diskimg_node_info(img, &info, NULL) < 0)
        return;
    if (info.encrypted)
        diskimg_findings_add(in->findings, "encrypted", DISKIMG_SEVERITY_WARNING, "encrypted",
                             "the image is encrypted: its content cannot be checked without "
                             "the key");
    if (info.dirty)
        diskimg_findings_add(in->findings, "dirty", DISKIMG_SEVERITY_WARNING, "dirty-flag",
                             "the image was not closed cleanly");
    if (info.corrupt)
        diskimg_findings_add(in->findings, "corrupt", DISKIMG_SEVERITY_UNSAFE, "corrupt",
                             "the image is marked corrupt");
}

/* Opens the image metadata-only with no other file, collecting findings. */
static void open_and_judge(struct inspection *in)
{
    struct diskimg_open_params p = { .struct_size = sizeof(p) };
    p.format = in->format;
    p.flags = DISKIMG_OPEN_NO_IO | DISKIMG_OPEN_NO_BACKING | DISKIMG_OPEN_NO_CHILDREN |
              DISKIMG_OPEN_UNTRUSTED | DISKIMG_OPEN_FORCE_SHARE;
    p.findings = in->findings;
    GError *err = NULL;
    diskimg_node *img = diskimg_open(in->filename, &p, &err);
    if (!img) {
        bool corrupt = err->code == DISKIMG_ERROR_CORRUPT;
        diskimg_findings_add(in->findings, corrupt ? "corrupt" : "open-failed",
                             corrupt ? DISKIMG_SEVERITY_UNSAFE : DISKIMG_SEVERITY_WARNING,
                             "format", "%s", err->message);
        g_error_free(err);
        return;
    }
    in->virtual_size = diskimg_node_size(img, NULL);
    judge_info(in, img);
    if (in->virtual_size > 0)
        judge_extents(in, img);
    diskimg_close(img);
}

static bool any_unsafe(const diskimg_findings *f)
{
    for (unsigned i = 0; i < diskimg_findings_count(f); i++) {
        struct diskimg_finding x = { .struct_size = sizeof(x) };
        if (diskimg_findings_get(f, i, &x) == 0 && x.severity == DISKIMG_SEVERITY_UNSAFE)
            return true;
    }
    return false;
}

static JsonObject *to_json(const struct inspection *in)
{
    JsonObject *o = json_object_new();
    json_object_set_int_member(o, "inspect-version", 1);
    json_object_set_string_member(o, "filename", in->filename);
    json_object_set_int_member(o, "file-size", in->file_size);
    JsonArray *formats = json_array_new();
    for (guint i = 0; i < in->matches->len; i++) {
        const struct diskimg_probe_match *m =
            &g_array_index(in->matches, struct diskimg_probe_match, i);
        JsonObject *f = json_object_new();
        json_object_set_string_member(f, "format", m->format);
        json_object_set_string_member(f, "source", source_name(m->source));
        json_object_set_int_member(f, "score", m->score);
        json_object_set_boolean_member(f, "installed", m->installed);
        json_array_add_object_element(formats, f);
    }
    json_object_set_array_member(o, "formats", formats);
    if (in->format)
        json_object_set_string_member(o, "format", in->format);
    else
        json_object_set_null_member(o, "format");
    json_object_set_string_member(o, "format-reason", in->reason);
    if (in->virtual_size >= 0)
        json_object_set_int_member(o, "virtual-size", in->virtual_size);
    JsonArray *list = json_array_new();
    for (unsigned i = 0; i < diskimg_findings_count(in->findings); i++) {
        struct diskimg_finding x = { .struct_size = sizeof(x) };
        diskimg_findings_get(in->findings, i, &x);
        JsonObject *f = json_object_new();
        json_object_set_string_member(f, "id", x.id);
        json_object_set_string_member(f, "severity", severity_name(x.severity));
        json_object_set_string_member(f, "field", x.field);
        json_object_set_string_member(f, "message", x.message);
        json_array_add_object_element(list, f);
    }
    json_object_set_array_member(o, "findings", list);
    json_object_set_boolean_member(o, "unsafe", any_unsafe(in->findings));
    return o;
}

static void print_human(const struct inspection *in)
{
    printf("image: %s\nfile size: %" PRId64 " bytes\n", in->filename, in->file_size);
    printf("formats claiming it:");
    for (guint i = 0; i < in->matches->len; i++) {
        const struct diskimg_probe_match *m =
            &g_array_index(in->matches, struct diskimg_probe_match, i);
        printf("%s %s (%s, score %d%s)", i ? "," : "", m->format, source_name(m->source),
               m->score, m->installed ? "" : ", no plugin installed");
    }
    printf("%s\n", in->matches->len ? "" : " none");
    printf("file format: %s (%s)\n", in->format ? in->format : "unknown", in->reason);
    if (in->virtual_size >= 0) {
        g_autofree char *vs = cli_human_size((uint64_t)in->virtual_size);
        printf("virtual size: %s (%" PRId64 " bytes)\n", vs, in->virtual_size);
    }
    unsigned n = diskimg_findings_count(in->findings);
    printf("findings:%s\n", n ? "" : " none");
    for (unsigned i = 0; i < n; i++) {
        struct diskimg_finding x = { .struct_size = sizeof(x) };
        diskimg_findings_get(in->findings, i, &x);
        printf("    %-7s %s%s%s: %s\n", severity_name(x.severity), x.id, *x.field ? " in " : "",
               x.field, x.message);
    }
    printf("verdict: %s\n", any_unsafe(in->findings) ? "unsafe" : "no unsafe findings");
}

static int inspect_file(struct inspection *in, const char *named, GError **errp)
{
    if (check_file_type(in->filename, errp) < 0)
        return -1;
    diskimg_node *file = diskimg_open_file(in->filename, DISKIMG_OPEN_FORCE_SHARE, errp);
    if (!file)
        return -1;
    in->file_size = diskimg_node_size(file, errp);
    int ret = in->file_size < 0 ? -1
              : diskimg_probe_all(file, keep_match, in->matches, errp) < 0 ? -1
              : decide(in, file, named);
    diskimg_close(file);
    if (ret < 0)
        return -1;
    judge_matches(in);
    judge_raw(in);
    if (in->format)
        open_and_judge(in);
    return 0;
}

int cmd_inspect(struct cli *c)
{
    enum cli_output output;
    if (cli_output_format(c, &output))
        return INSPECT_ERROR;
    struct inspection in = {
        .filename = c->args[0],
        .matches = g_array_new(FALSE, TRUE, sizeof(struct diskimg_probe_match)),
        .virtual_size = -1,
        .findings = diskimg_findings_new(),
    };
    GError *err = NULL;
    if (inspect_file(&in, cli_get(c, "format"), &err) < 0) {
        if (err)
            cli_gerror(err);
        inspection_clear(&in);
        return INSPECT_ERROR;
    }
    if (output == CLI_OUTPUT_JSON) {
        g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(node, to_json(&in));
        cli_print_json(node);
    } else {
        print_human(&in);
    }
    int ret = any_unsafe(in.findings) ? INSPECT_UNSAFE : INSPECT_OK;
    inspection_clear(&in);
    return ret;
}
