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
