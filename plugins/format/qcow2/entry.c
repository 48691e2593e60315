/* SPDX-License-Identifier: MIT */
/*
 * entry.c — the callbacks of the descriptor.  The plugin is
 * DISKIMG_THREAD_PARALLEL: the core may run any of them concurrently on
 * one handle, so each takes the image's lock as "Thread model" in qcow2.h
 * describes, then calls the implementation (which expects it held):
 *
 *   unlocking  read, write: metadata under the lock, data transfers
 *              without it; write_compressed compresses without it
 *   locked     requests that change or read metadata only, or allocate
 *   exclusive  rare operations that rewrite tables wholesale or free
 *              clusters on their own: they also wait until no transfer
 *              is in flight
 *   none       no handle (probe, create, measure), pure (compress), or
 *              no other callback can run (open, close)
 */
#include "qcow2.h"

static void qcow2_lock(struct qcow2 *s)
{
    diskimg_tracker_lock(s->tracker);
}

static void qcow2_unlock(struct qcow2 *s)
{
    diskimg_tracker_unlock(s->tracker);
}

/* Exclusive: the lock with nothing in flight (not even writes parked to
 * free clusters).  Snapshots, amend, check... may free compressed
 * clusters: the per-thread decompression caches are stale afterwards, and
 * before too, should a parked write have freed some. */
static void qcow2_lock_exclusive(struct qcow2 *s)
{
    diskimg_tracker_lock_exclusive(s->tracker);
    s->cgen++;
}

static void qcow2_unlock_exclusive(struct qcow2 *s)
{
    s->cgen++;
    diskimg_tracker_unlock(s->tracker);
}

/* Evaluates `expr` (an int) with the lock held. */
#define LOCKED(s, expr)                                                        \
    ({ qcow2_lock(s); int r_ = (expr); qcow2_unlock(s); r_; })
/* Exclusive operations may write or size the file on their own terms:
 * what growing added beyond the clusters in use goes first (tail.c). */
#define EXCLUSIVE(s, expr)                                                     \
    ({ qcow2_lock_exclusive(s);                                                \
       int r_ = qcow2_tail_trim(s, errp) < 0 ? -1 : (expr);                    \
       qcow2_unlock_exclusive(s); r_; })

/* ------------------------------------------------------------ unlocking */

static int op_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    return LOCKED(h, qcow2_read_unlocking(h, buf, len, offset, errp));
}

static int op_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                    GError **errp)
{
    return LOCKED(h, qcow2_write_unlocking(h, buf, len, offset, flags, errp));
}

static int op_write_compressed(void *h, const void *buf, uint64_t len, uint64_t offset,
                               GError **errp)
{
    return LOCKED(h, qcow2_write_compressed_unlocking(h, buf, len, offset, errp));
}

/* ------------------------------------------------------------ locked */

static int64_t op_get_size(void *h, GError **errp)
{
    qcow2_lock(h);
    int64_t size = qcow2_get_size(h, errp);
    qcow2_unlock(h);
    return size;
}

static int op_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags,
                           GError **errp)
{
    return LOCKED(h, qcow2_write_zeroes(h, offset, len, flags, errp));
}

static int op_write_precompressed(void *h, const void *data, uint64_t len, uint64_t offset,
                                  uint64_t guest_len, GError **errp)
{
    return LOCKED(h, qcow2_write_precompressed(h, data, len, offset, guest_len, errp));
}

static int op_discard(void *h, uint64_t offset, uint64_t len, GError **errp)
{
    return LOCKED(h, qcow2_discard(h, offset, len, errp));
}

static int op_flush(void *h, GError **errp)
{
    return LOCKED(h, qcow2_flush(h, errp));
}

static int op_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                           GError **errp)
{
    return LOCKED(h, qcow2_block_status(h, offset, len, ext, errp));
}

static int op_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                   GError **errp)
{
    return LOCKED(h, qcow2_info(h, info, specific, errp));
}

static int op_get_backing(void *h, struct diskimg_backing_ref *ref)
{
    return LOCKED(h, qcow2_get_backing(h, ref));
}

static int op_snapshot_list(void *h, diskimg_snapshot_list *out, GError **errp)
{
    return LOCKED(h, qcow2_snapshot_list(h, out, errp));
}

static int op_bitmap_list(void *h, diskimg_bitmap_list *out, GError **errp)
{
    return LOCKED(h, qcow2_bitmap_list(h, out, errp));
}

static int op_bitmap_query(void *h, const char *name, uint64_t offset, uint64_t len,
                           bool *dirty, uint64_t *run, GError **errp)
{
    return LOCKED(h, qcow2_bitmap_query(h, name, offset, len, dirty, run, errp));
}

/* ------------------------------------------------------------ exclusive */

static int op_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                       GError **errp)
{
    return EXCLUSIVE(h, qcow2_resize(h, size, prealloc, flags, errp));
}

static int op_set_backing(void *h, const char *filename, const char *format, GError **errp)
{
    return EXCLUSIVE(h, qcow2_set_backing(h, filename, format, errp));
}

static int op_make_empty(void *h, GError **errp)
{
    return EXCLUSIVE(h, qcow2_make_empty(h, errp));
}

/* Exclusive even without repairs: a write between unmapping and freeing
 * its old clusters would show them as leaks. */
static int op_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    return EXCLUSIVE(h, qcow2_check(h, fix, res, errp));
}

static int op_amend(void *h, const diskimg_options *options, bool force, GError **errp)
{
    return EXCLUSIVE(h, qcow2_amend(h, options, force, errp));
}

static int op_snapshot_create(void *h, const struct diskimg_snapshot *sn, GError **errp)
{
    return EXCLUSIVE(h, qcow2_snapshot_create(h, sn, errp));
}

static int op_snapshot_apply(void *h, const char *id_or_name, GError **errp)
{
    return EXCLUSIVE(h, qcow2_snapshot_apply(h, id_or_name, errp));
}

static int op_snapshot_delete(void *h, const char *id_or_name, GError **errp)
{
    return EXCLUSIVE(h, qcow2_snapshot_delete(h, id_or_name, errp));
}

static int op_snapshot_load(void *h, const char *id, const char *name, GError **errp)
{
    return EXCLUSIVE(h, qcow2_snapshot_load(h, id, name, errp));
}

static int op_bitmap_add(void *h, const struct diskimg_bitmap *b, GError **errp)
{
    return EXCLUSIVE(h, qcow2_bitmap_add(h, b, errp));
}

static int op_bitmap_remove(void *h, const char *name, GError **errp)
{
    return EXCLUSIVE(h, qcow2_bitmap_remove(h, name, errp));
}

static int op_bitmap_set_enabled(void *h, const char *name, bool enabled, GError **errp)
{
    return EXCLUSIVE(h, qcow2_bitmap_set_enabled(h, name, enabled, errp));
}

static int op_bitmap_set(void *h, const char *name, uint64_t offset, uint64_t len, bool dirty,
                         GError **errp)
{
    return EXCLUSIVE(h, qcow2_bitmap_set(h, name, offset, len, dirty, errp));
}

/* ------------------------------------------------------------ none */

static void *op_open(const struct diskimg_format_open_args *args, GError **errp)
{
    return qcow2_open_file(args->node, args->file, args->filename, args->flags, args->options,
                           errp);
}

const struct diskimg_format_ops qcow2_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = qcow2_probe,
    .open = op_open,
    .close = qcow2_close,
    .create = qcow2_create,
    .get_size = op_get_size,
    .read = op_read,
    .write = op_write,
    .write_zeroes = op_write_zeroes,
    .write_compressed = op_write_compressed,
    .compress = qcow2_compress,
    .write_precompressed = op_write_precompressed,
    .discard = op_discard,
    .flush = op_flush,
    .block_status = op_block_status,
    .truncate = op_truncate,
    .info = op_info,
    .get_backing = op_get_backing,
    .set_backing = op_set_backing,
    .make_empty = op_make_empty,
    .check = op_check,
    .measure = qcow2_measure,
    .amend = op_amend,
    .snapshot_list = op_snapshot_list,
    .snapshot_create = op_snapshot_create,
    .snapshot_apply = op_snapshot_apply,
    .snapshot_delete = op_snapshot_delete,
    .snapshot_load = op_snapshot_load,
    .bitmap_list = op_bitmap_list,
    .bitmap_add = op_bitmap_add,
    .bitmap_remove = op_bitmap_remove,
    .bitmap_set_enabled = op_bitmap_set_enabled,
    .bitmap_query = op_bitmap_query,
    .bitmap_set = op_bitmap_set,
};
