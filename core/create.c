/* SPDX-License-Identifier: MIT */
/* Image creation: the core makes the file, the format fills it. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static int check_can_create(const char *format, GError **errp)
{
    if (diskimg_format_require(format, errp) < 0)
        return -1;
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_FORMAT, format);
    if (!lp->ops.format.create || (lp->desc->capabilities & DISKIMG_CAP_READ_ONLY)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Format driver '%s' does not support image creation", format);
        return -1;
    }
    return 0;
}

static void remove_file(const char *io, const char *filename)
{
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_IO, io ? io : "posix");
    if (lp && lp->ops.io.remove)
        lp->ops.io.remove(filename, NULL);
    else
        unlink(filename);
}

int diskimg_protocol_check_create(const char *filename, GError **errp)
{
    if (!filename || !diskimg_name_has_protocol(filename) || diskimg_init(errp) < 0)
        return filename ? 0 : -1;
    g_autofree char *scheme = g_ascii_strdown(filename, (gssize)strcspn(filename, ":"));
    struct loaded_plugin *lp = registry_io_for_protocol(scheme);
    if (!lp || !(lp->desc->capabilities & DISKIMG_CAP_READ_ONLY))
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                "Protocol driver '%s' does not support image creation", scheme);
    return -1;
}

int diskimg_create(const char *filename, const struct diskimg_create_params *params,
                   GError **errp)
{
    if (abi_check_size(params->struct_size, ABI_END(struct diskimg_create_params, format),
                       "diskimg_create_params", errp) < 0)
        return -1;
    /* Members a shorter (older) caller's struct lacks read as unset. */
    struct diskimg_create_params full;
    abi_copy_in(&full, sizeof(full), params, params->struct_size);
    const struct diskimg_create_params *p = &full;
    if (check_can_create(p->format, errp) < 0 || diskimg_protocol_check_create(filename, errp) < 0)
        return -1;
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_FORMAT, p->format);
    const char *path, *protocol_io;
    if (trust_user_filename(filename, &path, &protocol_io, errp) < 0)
        return -1;
    const char *io = protocol_io ? protocol_io : p->io;
    /* A remote object that cannot be told apart from a new one counts as
     * existing: a failed create never removes what it may not have made. */
    bool existed = protocol_io || g_file_test(path, G_FILE_TEST_EXISTS);
    const diskimg_options *file_options = p->file_options;
    if (protocol_io && diskimg_options_schema(file_options) !=
                           diskimg_plugin_schema(DISKIMG_KIND_IO, protocol_io))
        file_options = NULL;
    unsigned flags = DISKIMG_OPEN_RDWR | DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE;
    diskimg_node *file = open_file_node(path, io, flags, DISKIMG_CACHE_WRITEBACK,
                                        file_options, errp);
    if (!file)
        return -1;
    struct diskimg_format_create_args args = {
        .struct_size = sizeof(args),
        .filename = filename,
        .file = file,
        .options = p->options,
        .size = p->size,
        .flags = p->flags,
    };
    GError *err = NULL;
    /* A format's write ordering (refcounts before the tables naming them,
     * data before metadata) guards images that hold data; an image being
     * created holds none, and one a crash cut short is no image either
     * way.  Its barriers are kept for the end: one flush instead of one per
     * table (qcow2 preallocation=metadata at 512-byte clusters: ~6700). */
    node_defer_flushes(file, true, NULL);
    int ret = lp->ops.format.create(&args, &err);
    if (node_defer_flushes(file, false, ret == 0 ? &err : NULL) < 0)
        ret = -1;
    if (ret == 0)
        ret = diskimg_node_flush(file, &err);
    /* The files the format made besides this one, to undo a failure. */
    g_autoptr(GPtrArray) made = g_ptr_array_new_with_free_func(g_free);
    child_take_created(file, made);
    diskimg_close(file);
    if (ret < 0) {
        if (!err)
            g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_FAILED, "format plugin failed");
        g_set_error(errp, err->domain, err->code, "%s: %s", filename, err->message);
        g_error_free(err);
        for (guint i = 0; i < made->len; i++)
            remove_file(io, made->pdata[i]);
        if (!existed)
            remove_file(io, path);
        return -1;
    }
    return 0;
}
