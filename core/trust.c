/* SPDX-License-Identifier: MIT */
/*
 * The trust policy for what an image says about other files.
 *
 * An image is data: whoever made it chose its backing file name, its data
 * file name and (vmdk) its extent names.  Opening such a name must not let
 * the image reach further than a plain local file next to it would:
 *
 *   - names that qemu would take for a protocol or a json: pseudo-filename
 *     ("nbd://host/x", "json:{...}", "file:x", anything with a ':' before
 *     the first '/') are refused, never interpreted; only the user gives
 *     those (-b, -B on the command line);
 *   - relative names are resolved against the directory of the image that
 *     records them, never against the current directory;
 *   - a metadata-only open (info) opens no data file or extent at all; the
 *     format reports the name only;
 *   - an image whose format was probed as the fallback format (raw) refuses
 *     a write into its first bytes that would make probing find another
 *     format (qemu's rule, the CVE-2008-2004 pattern).
 *
 * docs/architecture.md ("Trust policy") describes it for users,
 * docs/plugin-guide.md for formats.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* Longer names cannot be opened on Linux; refusing them early gives a
 * clearer message than ENAMETOOLONG from deep inside an open. */
#define MAX_NAME_LEN 4095

bool diskimg_name_has_protocol(const char *name)
{
    /* qemu's path_has_protocol: a ':' before any '/'. */
    size_t prefix = strcspn(name, ":/");
    return name[prefix] == ':';
}

const char *diskimg_protocol_io(const char *name)
{
    if (!name || !diskimg_name_has_protocol(name) || diskimg_init(NULL) < 0)
        return NULL;
    g_autofree char *scheme = g_ascii_strdown(name, (gssize)strcspn(name, ":"));
    struct loaded_plugin *lp = registry_io_for_protocol(scheme);
    return lp ? lp->desc->name : NULL;
}

static const char *role_text(enum diskimg_child_role role)
{
    switch (role) {
    case DISKIMG_CHILD_BACKING:
        return "backing file";
    case DISKIMG_CHILD_DATA_FILE:
        return "data file";
    case DISKIMG_CHILD_EXTENT:
        return "extent";
    case DISKIMG_CHILD_METADATA:
        return "metadata file";
    }
    return "file";
}

/* Directory part of the parent's name joined with a relative `name`. */
static char *join_with_parent_dir(const char *parent, const char *name)
{
    if (g_path_is_absolute(name))
        return g_strdup(name);
    g_autofree char *dir = g_path_get_dirname(parent);
    if (g_str_equal(dir, "."))
        return g_strdup(name);
    return g_build_filename(dir, name, NULL);
}

char *diskimg_trust_resolve(const diskimg_node *parent, enum diskimg_child_role role,
                            const char *name, GError **errp)
{
    const char *image = parent->filename;
    if (!name || !*name) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "%s: the image names an empty %s", image, role_text(role));
        return NULL;
    }
    if (strlen(name) > MAX_NAME_LEN) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "%s: the %s name recorded in the image is longer than %d bytes", image,
                    role_text(role), MAX_NAME_LEN);
        return NULL;
    }
    if (diskimg_name_has_protocol(name)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "%s: refusing %s name '%s' recorded in the image: json: and protocol "
                    "names are only accepted from the command line", image, role_text(role),
                    name);
        return NULL;
    }
    return join_with_parent_dir(image, name);
}

int diskimg_trust_check_to_record(enum diskimg_child_role role, const char *name,
                                  GError **errp)
{
    if (!diskimg_name_has_protocol(name))
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "%s name '%s' has a protocol prefix, which opening the image would refuse "
                "(write ./%s for a file of that name)", role_text(role), name, name);
    return -1;
}

char *diskimg_resolve_relative(const char *image_filename, const char *name)
{
    /* A protocol name the user typed means what it says (qemu keeps it as
     * is too); metadata names never get here, see diskimg_trust_resolve. */
    if (diskimg_name_has_protocol(name))
        return g_strdup(name);
    return join_with_parent_dir(image_filename, name);
}

bool diskimg_node_metadata_only(const diskimg_node *n)
{
    return n->flags & DISKIMG_OPEN_NO_IO;
}

bool diskimg_node_was_probed(const diskimg_node *n)
{
    return n->flags & DISKIMG_OPEN_PROBED;
}

int trust_user_filename(const char *filename, const char **path, const char **io,
                        GError **errp)
{
    *path = filename;
    *io = NULL;
    if (!diskimg_name_has_protocol(filename))
        return 0;
    size_t len = strcspn(filename, ":");
    if (len == 4 && g_str_has_prefix(filename, "file")) {
        /* qemu's file protocol: the rest is a plain name ("file:a:b.img"). */
        *path = filename + 5;
        return 0;
    }
    if (len == 4 && g_str_has_prefix(filename, "json")) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Could not open '%s': json: pseudo-filenames are not supported "
                    "(use --image-opts)", filename);
        return -1;
    }
    g_autofree char *scheme = g_ascii_strdown(filename, (gssize)len);
    struct loaded_plugin *lp = registry_io_for_protocol(scheme);
    if (lp) {
        *io = lp->desc->name;
        return 0;
    }
    /* As qemu's bdrv_find_protocol: a file with a ':' before its first '/'
     * is reached as "./a:b.img" or "file:a:b.img". */
    const char *package = registry_protocol_package(scheme);
    if (package)
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Could not open '%s': Unknown protocol '%.*s' (install package %s)",
                    filename, (int)len, filename, package);
    else
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Could not open '%s': Unknown protocol '%.*s'", filename, (int)len,
                    filename);
    return -1;
}

/* ------------------------------------------------------- probed images */

/* The probe window of `file` as it would read after the write. */
static int window_after_write(diskimg_node *file, uint64_t offset, const void *buf,
                              uint64_t len, uint8_t *win, size_t *win_len, GError **errp)
{
    if (read_probe_bytes(file, win, win_len, errp) < 0)
        return -1;
    size_t n = (size_t)MIN(len, DISKIMG_PROBE_BYTES - offset);
    if (buf)
        memcpy(win + offset, buf, n);
    else
        memset(win + offset, 0, n);
    *win_len = MAX(*win_len, (size_t)offset + n);
    return 0;
}

/* What a probe of the file's first bytes would find after the write, or
 * NULL (also when the write does not reach them). */
static int head_after_write(diskimg_node *file, uint64_t offset, const void *buf, uint64_t len,
                            const char **found, GError **errp)
{
    *found = NULL;
    if (offset >= DISKIMG_PROBE_BYTES)
        return 0;
    uint8_t win[DISKIMG_PROBE_BYTES];
    size_t win_len;
    if (window_after_write(file, offset, buf, len, win, &win_len, errp) < 0)
        return -1;
    struct loaded_plugin *other = probe_scan(win, win_len, file->filename);
    *found = other ? other->desc->name : registry_magic_match(win, win_len);
    return 0;
}

/* What a probe of the file's last bytes (probe_tail, a fixed VHD's footer)
 * would find after the write, or NULL (also when the write does not reach
 * them).  A write past the end grows the file: the tail is then its end. */
static int tail_after_write(diskimg_node *file, uint64_t offset, const void *buf, uint64_t len,
                            const char **found, GError **errp)
{
    *found = NULL;
    int64_t now = diskimg_node_size(file, errp);
    if (now < 0)
        return -1;
    uint64_t size = MAX((uint64_t)now, offset + len);
    uint64_t tail_len = MIN(size, (uint64_t)DISKIMG_PROBE_TAIL_LEN), start = size - tail_len;
    if (offset + len <= start)
        return 0;
    uint8_t tail[DISKIMG_PROBE_TAIL_LEN] = { 0 };
    uint64_t have = (uint64_t)now > start ? MIN((uint64_t)now - start, tail_len) : 0;
    if (have && diskimg_node_pread(file, tail, have, start, errp) < 0)
        return -1;
    /* Overlay [offset, offset+len) on [start, size). */
    uint64_t from = MAX(offset, start), to = offset + len;
    if (buf)
        memcpy(tail + (from - start), (const uint8_t *)buf + (from - offset), to - from);
    else
        memset(tail + (from - start), 0, to - from);
    struct loaded_plugin *other = probe_scan_tail_buf(tail, tail_len, size, file->filename);
    *found = other ? other->desc->name : NULL;
    return 0;
}

int diskimg_probed_write_check(diskimg_node *file, uint64_t offset, const void *buf,
                               uint64_t len, GError **errp)
{
    if (len == 0)
        return 0;
    const char *found;
    if (head_after_write(file, offset, buf, len, &found, errp) < 0)
        return -1;
    if (!found && tail_after_write(file, offset, buf, len, &found, errp) < 0)
        return -1;
    if (!found)
        return 0;
    const struct loaded_plugin *fb = fallback_format();
    const char *guessed = fb ? fb->desc->name : "the fallback format";
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                "%s: Operation not permitted: the image's format was probed as %s and this "
                "write would make it look like %s (name the format %s to allow it)",
                file->filename, guessed, found, guessed);
    return -1;
}

int diskimg_node_probed_head_check(diskimg_node *n, const void *head, uint64_t len,
                                   GError **errp)
{
    /* Only a fallback format stores guest bytes at the file's start, and
     * only a probed one is judged by them. */
    if (n->is_file || !(n->flags & DISKIMG_OPEN_PROBED) ||
        !diskimg_schema_flag(n->plugin->schema, "probe-fallback"))
        return 0;
    return diskimg_probed_write_check(n->file, 0, head, len, errp);
}

/* ------------------------------------------------------------ --untrusted */

/* -1: not decided yet (the environment decides on first use). */
static int untrusted_policy = -1;

void diskimg_set_untrusted(bool on)
{
    untrusted_policy = on;
}

bool diskimg_untrusted(void)
{
    if (untrusted_policy < 0) {
        const char *env = g_getenv("DISKIMG_UNTRUSTED");
        untrusted_policy = env && g_str_equal(env, "1");
    }
    return untrusted_policy;
}

unsigned trust_open_flags(unsigned flags)
{
    return diskimg_untrusted() ? flags | DISKIMG_OPEN_UNTRUSTED : flags;
}

/* Caps of an untrusted open (docs/untrusted.md "Resource caps"): a table
 * the image asks for (L1, refcount table, BAT, grain directory) may take
 * this much memory, and each metadata cache this much. */
#define UNTRUSTED_TABLE_CAP (32u << 20)
#define UNTRUSTED_CACHE_BUDGET (8u << 20)

uint64_t trust_table_cap(const diskimg_node *n, uint64_t cap)
{
    return n && (n->flags & DISKIMG_OPEN_UNTRUSTED) ? MIN(cap, UNTRUSTED_TABLE_CAP) : cap;
}

uint64_t trust_cache_budget(const diskimg_node *n, uint64_t budget)
{
    return n && (n->flags & DISKIMG_OPEN_UNTRUSTED) ? MIN(budget, UNTRUSTED_CACHE_BUDGET)
                                                    : budget;
}

bool diskimg_node_may_open_children(const diskimg_node *n)
{
    return !(n->flags & DISKIMG_OPEN_NO_CHILDREN);
}

/* Is `path` one of the files the user named for n's children? */
static bool user_named(const diskimg_node *n, const char *path)
{
    struct stat want;
    if (!n->user_files || stat(path, &want) < 0)
        return false;
    for (char **u = n->user_files; *u; u++) {
        struct stat st;
        if (stat(*u, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino)
            return true;
    }
    return false;
}

static const char *role_field(enum diskimg_child_role role)
{
    switch (role) {
    case DISKIMG_CHILD_BACKING:   return "backing-filename";
    case DISKIMG_CHILD_DATA_FILE: return "data-file";
    case DISKIMG_CHILD_EXTENT:    return "extents";
    case DISKIMG_CHILD_METADATA:  return "metadata-file";
    }
    return "";
}

static const char *role_finding(enum diskimg_child_role role)
{
    switch (role) {
    case DISKIMG_CHILD_BACKING:   return "backing-file";
    case DISKIMG_CHILD_DATA_FILE: return "data-file";
    case DISKIMG_CHILD_EXTENT:    return "external-extent";
    case DISKIMG_CHILD_METADATA:  return "external-file";
    }
    return "external-file";
}

/* Does `path` (resolved) leave the directory of `image`?  Judged on the
 * names alone ("sub/../../x", "/etc/x"): symbolic links are the host's,
 * and inspect must not look at other files to follow them. */
static bool leaves_image_dir(const char *image, const char *path)
{
    g_autofree char *cwd = g_get_current_dir();
    g_autofree char *dir = g_path_get_dirname(image);
    g_autofree char *cdir = g_canonicalize_filename(dir, cwd);
    g_autofree char *cpath = g_canonicalize_filename(path, cwd);
    size_t n = strlen(cdir);
    if (g_str_equal(cdir, "/"))
        return false;
    return strncmp(cpath, cdir, n) != 0 || cpath[n] != '/';
}

static void note_findings(diskimg_node *n, enum diskimg_child_role role, unsigned index,
                          const char *name)
{
    if (!n->findings || !name)
        return;
    g_autofree char *field = role == DISKIMG_CHILD_EXTENT
        ? g_strdup_printf("extents[%u].filename", index) : g_strdup(role_field(role));
    if (diskimg_name_has_protocol(name)) {
        bool json = g_str_has_prefix(name, "json:");
        diskimg_findings_add(n->findings, json ? "json-name" : "protocol-name",
                             DISKIMG_SEVERITY_UNSAFE, field,
                             "the %s name '%s' is a %s; qemu-img would interpret it",
                             role_text(role), name,
                             json ? "json: pseudo-filename" : "protocol URI");
    }
    g_autofree char *path = diskimg_name_has_protocol(name)
        ? g_strdup(name) : join_with_parent_dir(n->filename, name);
    diskimg_findings_add(n->findings, role_finding(role), DISKIMG_SEVERITY_UNSAFE, field,
                         "the image names %s '%s'%s%s", role == DISKIMG_CHILD_EXTENT
                         ? "an extent in another file" : role_text(role), name,
                         g_str_equal(path, name) ? "" : ", which resolves to ",
                         g_str_equal(path, name) ? "" : path);
    if (role != DISKIMG_CHILD_EXTENT || diskimg_name_has_protocol(name))
        return;
    if (g_path_is_absolute(name))
        diskimg_findings_add(n->findings, "absolute-extent", DISKIMG_SEVERITY_UNSAFE, field,
                             "extent '%s' is an absolute path", name);
    if (leaves_image_dir(n->filename, path))
        diskimg_findings_add(n->findings, "extent-outside-dir", DISKIMG_SEVERITY_UNSAFE, field,
                             "extent '%s' lies outside the image's directory", name);
}

/* The index of the next name of `role` n's metadata holds: extents are
 * numbered in the order the format meets them, opened or not. */
static unsigned next_index(diskimg_node *n, enum diskimg_child_role role)
{
    if (!n->child_name_counts)
        n->child_name_counts = g_hash_table_new(g_direct_hash, g_direct_equal);
    gpointer key = GUINT_TO_POINTER(role);
    unsigned index = GPOINTER_TO_UINT(g_hash_table_lookup(n->child_name_counts, key));
    g_hash_table_insert(n->child_name_counts, key, GUINT_TO_POINTER(index + 1));
    return index;
}

int trust_check_child_name(diskimg_node *n, enum diskimg_child_role role, const char *name,
                           bool opening, GError **errp)
{
    note_findings(n, role, next_index(n, role), name);
    return opening ? trust_check_untrusted_open(n, role, name, errp) : 0;
}

int trust_check_untrusted_open(diskimg_node *n, enum diskimg_child_role role, const char *name,
                               GError **errp)
{
    if (!(n->flags & DISKIMG_OPEN_UNTRUSTED) || !name)
        return 0;
    g_autofree char *path = diskimg_trust_resolve(n, role, name, errp);
    if (!path)
        return -1;
    if (user_named(n, path))
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                             "%s: refusing to open %s '%s' named in the image: an untrusted "
                             "image may only open files named on the command line%s",
                             n->filename, role_text(role), name,
                             role == DISKIMG_CHILD_BACKING
                             ? " (-b, or --image-opts backing.file.filename=)"
                             : role == DISKIMG_CHILD_DATA_FILE
                             ? " (--image-opts data-file.filename=)" : "");
}

void diskimg_node_note_child(diskimg_node *parent, enum diskimg_child_role role,
                             const char *name)
{
    if (parent && name)
        trust_check_child_name(parent, role, name, false, NULL);
}

/* Collects the distinct formats diskimg_probe_all reports. */
static void collect_format(const struct diskimg_probe_match *m, void *opaque)
{
    GPtrArray *names = opaque;
    for (guint i = 0; i < names->len; i++)
        if (g_str_equal(names->pdata[i], m->format))
            return;
    g_ptr_array_add(names, (gpointer)m->format);
}

int trust_check_probe(diskimg_node *file, const char *filename, GError **errp)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    if (diskimg_probe_all(file, collect_format, names, errp) < 0)
        return -1;
    if (names->len <= 1)
        return 0;
    g_ptr_array_add(names, NULL);
    g_autofree char *list = g_strjoinv(", ", (char **)names->pdata);
    return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                             "%s: refusing to guess the format of an untrusted image: "
                             "it looks like %s (name the format with -f)", filename, list);
}
