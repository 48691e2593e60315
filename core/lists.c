/* SPDX-License-Identifier: MIT */
/* Snapshot and bitmap lists that plugins fill and commands read. */
#include <string.h>

#include "internal.h"

static void snapshot_clear(gpointer p)
{
    struct diskimg_snapshot *sn = p;
    g_free((char *)sn->id);
    g_free((char *)sn->name);
}

/* An entry a plugin passed with a struct_size too small to hold the members
 * of ABI 2 is refused; the listing then fails with that error. */
static bool entry_ok(GError **refused, uint32_t size, size_t need, const char *what)
{
    if (size >= need)
        return true;
    if (!*refused)
        abi_check_size(size, need, what, refused);
    return false;
}

void diskimg_snapshot_list_add(diskimg_snapshot_list *l, const struct diskimg_snapshot *sn)
{
    if (!entry_ok(&l->refused, sn->struct_size, ABI_END(struct diskimg_snapshot, has_icount),
                  "diskimg_snapshot"))
        return;
    struct diskimg_snapshot copy;
    abi_copy_in(&copy, sizeof(copy), sn, sn->struct_size);
    copy.id = g_strdup(sn->id ? sn->id : "");
    copy.name = g_strdup(sn->name ? sn->name : "");
    g_array_append_val(l->items, copy);
}

void diskimg_snapshot_list_free(diskimg_snapshot_list *l)
{
    if (!l)
        return;
    g_clear_error(&l->refused);
    g_array_unref(l->items);
    g_free(l);
}

diskimg_snapshot_list *diskimg_node_snapshots(diskimg_node *n, GError **errp)
{
    diskimg_snapshot_list *l = g_new0(diskimg_snapshot_list, 1);
    l->items = g_array_new(FALSE, TRUE, sizeof(struct diskimg_snapshot));
    g_array_set_clear_func(l->items, snapshot_clear);
    const struct diskimg_format_ops *ops = &n->plugin->ops.format;
    if (n->is_file || !ops->snapshot_list)
        return l;   /* no snapshots is a valid answer */
    node_lock(n);
    int ret = ops->snapshot_list(n->handle, l, errp);
    node_unlock(n);
    if (ret == 0 && l->refused) {
        g_propagate_error(errp, g_steal_pointer(&l->refused));
        ret = -1;
    }
    if (ret < 0) {
        diskimg_snapshot_list_free(l);
        return NULL;
    }
    return l;
}

static void bitmap_clear(gpointer p)
{
    struct diskimg_bitmap *b = p;
    g_free((char *)b->name);
}

void diskimg_bitmap_list_add(diskimg_bitmap_list *l, const struct diskimg_bitmap *b)
{
    if (!entry_ok(&l->refused, b->struct_size, ABI_END(struct diskimg_bitmap, persistent),
                  "diskimg_bitmap"))
        return;
    struct diskimg_bitmap copy;
    abi_copy_in(&copy, sizeof(copy), b, b->struct_size);
    copy.name = g_strdup(b->name ? b->name : "");
    g_array_append_val(l->items, copy);
}

void diskimg_bitmap_list_free(diskimg_bitmap_list *l)
{
    if (!l)
        return;
    g_clear_error(&l->refused);
    g_array_unref(l->items);
    g_free(l);
}

diskimg_bitmap_list *diskimg_node_bitmaps(diskimg_node *n, GError **errp)
{
    diskimg_bitmap_list *l = g_new0(diskimg_bitmap_list, 1);
    l->items = g_array_new(FALSE, TRUE, sizeof(struct diskimg_bitmap));
    g_array_set_clear_func(l->items, bitmap_clear);
    const struct diskimg_format_ops *ops = &n->plugin->ops.format;
    if (n->is_file || !ops->bitmap_list)
        return l;
    node_lock(n);
    int ret = ops->bitmap_list(n->handle, l, errp);
    node_unlock(n);
    if (ret == 0 && l->refused) {
        g_propagate_error(errp, g_steal_pointer(&l->refused));
        ret = -1;
    }
    if (ret < 0) {
        diskimg_bitmap_list_free(l);
        return NULL;
    }
    return l;
}

/* ------------------------------------------------- snapshot and bitmap ops */

#define FMT_OPS(n) (&(n)->plugin->ops.format)

static int missing(diskimg_node *n, const void *op, GError **errp)
{
    if (!n->is_file && op)
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "Operation not supported by format '%s'", diskimg_node_driver(n));
    return -1;
}

#define CALL_OP(n, op, ...)                                                    \
    ({                                                                         \
        int r_ = missing(n, (const void *)FMT_OPS(n)->op, errp);               \
        if (r_ == 0) {                                                         \
            node_lock(n);                                                      \
            r_ = FMT_OPS(n)->op((n)->handle, __VA_ARGS__);                     \
            node_unlock(n);                                                    \
        }                                                                      \
        r_;                                                                    \
    })

/* The same for operations that change the image. */
#define CALL_WRITING_OP(n, op, ...)                                            \
    (node_check_writable(n, errp) < 0 ? -1 : CALL_OP(n, op, __VA_ARGS__))

int diskimg_node_snapshot_create(diskimg_node *n, const struct diskimg_snapshot *sn,
                                 GError **errp)
{
    /* The plugin sees a full struct whatever the caller was built with. */
    if (abi_check_size(sn->struct_size, ABI_END(struct diskimg_snapshot, has_icount),
                       "diskimg_snapshot", errp) < 0)
        return -1;
    struct diskimg_snapshot full;
    abi_copy_in(&full, sizeof(full), sn, sn->struct_size);
    return CALL_WRITING_OP(n, snapshot_create, &full, errp);
}

int diskimg_node_snapshot_apply(diskimg_node *n, const char *id_or_name, GError **errp)
{
    return CALL_WRITING_OP(n, snapshot_apply, id_or_name, errp);
}

int diskimg_node_snapshot_delete(diskimg_node *n, const char *id_or_name, GError **errp)
{
    return CALL_WRITING_OP(n, snapshot_delete, id_or_name, errp);
}

int diskimg_node_snapshot_load(diskimg_node *n, const char *id, const char *name,
                               GError **errp)
{
    int ret = CALL_OP(n, snapshot_load, id, name, errp);
    n->cached_size = -1;   /* the snapshot may have another size */
    return ret;
}

int diskimg_node_bitmap_add(diskimg_node *n, const struct diskimg_bitmap *b, GError **errp)
{
    if (abi_check_size(b->struct_size, ABI_END(struct diskimg_bitmap, persistent),
                       "diskimg_bitmap", errp) < 0)
        return -1;
    struct diskimg_bitmap full;
    abi_copy_in(&full, sizeof(full), b, b->struct_size);
    return CALL_WRITING_OP(n, bitmap_add, &full, errp);
}

int diskimg_node_bitmap_remove(diskimg_node *n, const char *name, GError **errp)
{
    return CALL_WRITING_OP(n, bitmap_remove, name, errp);
}

int diskimg_node_bitmap_set_enabled(diskimg_node *n, const char *name, bool enabled,
                                    GError **errp)
{
    return CALL_WRITING_OP(n, bitmap_set_enabled, name, enabled, errp);
}

int diskimg_node_bitmap_query(diskimg_node *n, const char *name, uint64_t offset, uint64_t len,
                              bool *dirty, uint64_t *run, GError **errp)
{
    return CALL_OP(n, bitmap_query, name, offset, len, dirty, run, errp);
}

int diskimg_node_bitmap_set(diskimg_node *n, const char *name, uint64_t offset, uint64_t len,
                            bool dirty, GError **errp)
{
    return CALL_WRITING_OP(n, bitmap_set, name, offset, len, dirty, errp);
}

int diskimg_bitmap_merge(diskimg_node *dst, const char *dst_name, diskimg_node *src,
                         const char *src_name, GError **errp)
{
    int64_t size = diskimg_node_size(src, errp);
    if (size < 0)
        return -1;
    for (uint64_t off = 0; off < (uint64_t)size;) {
        bool dirty;
        uint64_t run;
        if (diskimg_node_bitmap_query(src, src_name, off, (uint64_t)size - off, &dirty, &run,
                                      errp) < 0)
            return -1;
        if (run == 0 || run > (uint64_t)size - off) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                        "%s: bitmap query returned an invalid run", src->filename);
            return -1;
        }
        if (dirty && diskimg_node_bitmap_set(dst, dst_name, off, run, true, errp) < 0)
            return -1;
        off += run;
    }
    return 0;
}
