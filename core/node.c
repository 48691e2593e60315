/* SPDX-License-Identifier: MIT */
/*
 * Nodes and the request API.  Every request goes through here so that the
 * plugin's thread model, bounds checks and the "operation not supported"
 * wording live in one place.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

diskimg_node *node_new(struct loaded_plugin *plugin, const char *filename, unsigned flags)
{
    diskimg_node *n = g_new0(diskimg_node, 1);
    n->plugin = plugin;
    n->is_file = plugin->desc->kind == DISKIMG_KIND_IO;
    n->filename = g_strdup(filename);
    n->flags = flags;
    n->cached_size = -1;
    g_mutex_init(&n->request_lock);
    return n;
}

/* Serialises callbacks as the plugin's thread model asks. */
void node_lock(diskimg_node *n)
{
    switch (n->plugin->desc->thread_model) {
    case DISKIMG_THREAD_SERIALIZE_ALL:
        g_rec_mutex_lock(&n->plugin->serialize_all);
        break;
    case DISKIMG_THREAD_SERIALIZE_REQUESTS:
        g_mutex_lock(&n->request_lock);
        break;
    default:
        break;
    }
}

void node_unlock(diskimg_node *n)
{
    switch (n->plugin->desc->thread_model) {
    case DISKIMG_THREAD_SERIALIZE_ALL:
        g_rec_mutex_unlock(&n->plugin->serialize_all);
        break;
    case DISKIMG_THREAD_SERIALIZE_REQUESTS:
        g_mutex_unlock(&n->request_lock);
        break;
    default:
        break;
    }
}

#define FMT(n) (&(n)->plugin->ops.format)
#define IO(n) (&(n)->plugin->ops.io)

/* Calls `expr` with the node locked; expr yields an int. */
#define LOCKED_CALL(n, expr) ({ node_lock(n); int r_ = (expr); node_unlock(n); r_; })

void diskimg_close(diskimg_node *n)
{
    if (!n)
        return;
    if (n->handle) {
        node_lock(n);
        if (n->is_file)
            IO(n)->close(n->handle);
        else
            FMT(n)->close(n->handle);
        node_unlock(n);
    }
    diskimg_close(n->backing);
    child_close_all(n);
    diskimg_close(n->file);
    g_mutex_clear(&n->request_lock);
    g_free(n->filename);
    g_free(n->backing_name);
    g_free(n->backing_format);
    g_free(n->backing_resolved);
    g_strfreev(n->user_files);
    if (n->child_name_counts)
        g_hash_table_destroy(n->child_name_counts);
    g_free(n);
}

const char *diskimg_node_filename(const diskimg_node *n) { return n->filename; }
const char *diskimg_node_driver(const diskimg_node *n) { return n->plugin->desc->name; }
bool diskimg_node_is_writable(const diskimg_node *n)
{
    return (n->flags & DISKIMG_OPEN_RDWR) && !(n->caps & DISKIMG_CAP_READ_ONLY);
}
diskimg_node *diskimg_node_file(const diskimg_node *n) { return n->file; }
diskimg_node *diskimg_node_backing(const diskimg_node *n) { return n->backing; }
void *diskimg_node_handle(const diskimg_node *n) { return n->handle; }

static int not_supported(GError **errp, const char *what)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED, "%s", what);
    return -1;
}

/* Every writing operation asks first: the node must be open read-write and,
 * for a format node, the image writable (its capabilities). */
int node_check_writable(diskimg_node *n, GError **errp)
{
    if ((n->flags & DISKIMG_OPEN_RDWR) && !(n->caps & DISKIMG_CAP_READ_ONLY))
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                "Cannot write to '%s': image is opened read-only", n->filename);
    return -1;
}

int64_t diskimg_node_size(diskimg_node *n, GError **errp)
{
    int64_t size = n->cached_size;
    if (size >= 0)
        return size;
    node_lock(n);
    size = n->is_file ? IO(n)->get_size(n->handle, errp) : FMT(n)->get_size(n->handle, errp);
    node_unlock(n);
    /* Files change size under us (format nodes append); formats don't. */
    if (size >= 0 && !n->is_file)
        n->cached_size = size;
    return size;
}

int64_t diskimg_node_allocated_size(diskimg_node *n, GError **errp)
{
    if (n->is_file) {
        if (!IO(n)->allocated_size)
            return -1;
        node_lock(n);
        int64_t a = IO(n)->allocated_size(n->handle, errp);
        node_unlock(n);
        return a;
    }
    /* A format node occupies what its file and its counted children occupy. */
    int64_t total = diskimg_node_allocated_size(n->file, errp);
    if (total < 0)
        return total;
    int64_t children = child_allocated_size(n, errp);
    return children < 0 ? -1 : total + children;
}

uint32_t diskimg_node_request_alignment(const diskimg_node *n)
{
    if (n->is_file)
        return IO(n)->alignment ? IO(n)->alignment(n->handle) : 1;
    return 1;   /* format nodes bounce to their file's needs themselves */
}

/* Format nodes reject ranges past their end; file nodes may grow. */
static int check_range(diskimg_node *n, uint64_t offset, uint64_t len, GError **errp)
{
    /* A metadata-only open may lack its data file (trust policy): guest
     * data requests are refused here rather than in every format. */
    if (!n->is_file && (n->flags & DISKIMG_OPEN_NO_IO)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: opened for metadata only; guest data cannot be accessed",
                    n->filename);
        return -1;
    }
    if (n->is_file) {
        if (offset + len < offset) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "%s: request range overflows", n->filename);
            return -1;
        }
        return 0;
    }
    int64_t size = diskimg_node_size(n, errp);
    if (size < 0)
        return -1;
    if (offset > (uint64_t)size || len > (uint64_t)size - offset) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: request at offset %" PRIu64 " length %" PRIu64
                    " is beyond the end of the image (%" PRId64 ")",
                    n->filename, offset, len, size);
        return -1;
    }
    return 0;
}

int diskimg_node_pread(diskimg_node *n, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    if (len == 0)
        return 0;
    if (check_range(n, offset, len, errp) < 0)
        return -1;
    if (n->is_file)
        return LOCKED_CALL(n, IO(n)->pread(n->handle, buf, len, offset, errp));
    return LOCKED_CALL(n, FMT(n)->read(n->handle, buf, len, offset, errp));
}

int diskimg_node_pwrite(diskimg_node *n, const void *buf, uint64_t len, uint64_t offset,
                        unsigned flags, GError **errp)
{
    if (len == 0)
        return 0;
    if (node_check_writable(n, errp) < 0 || check_range(n, offset, len, errp) < 0)
        return -1;
    if (n->is_file)
        return LOCKED_CALL(n, IO(n)->pwrite(n->handle, buf, len, offset, flags, errp));
    if (!FMT(n)->write)
        return not_supported(errp, "Driver does not support writes");
    return LOCKED_CALL(n, FMT(n)->write(n->handle, buf, len, offset, flags, errp));
}

/* Fallback for backends without write_zeroes: real zero buffers. */
static int write_zero_buffers(diskimg_node *n, uint64_t offset, uint64_t len, unsigned flags,
                              GError **errp)
{
    const uint64_t chunk = 1 << 20;
    void *z = diskimg_alloc_aligned(MIN(len, chunk));
    if (!z) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_MEMORY, "out of memory");
        return -1;
    }
    memset(z, 0, MIN(len, chunk));
    int ret = 0;
    while (len && ret == 0) {
        uint64_t n_now = MIN(len, chunk);
        ret = diskimg_node_pwrite(n, z, n_now, offset, flags & DISKIMG_WRITE_FUA, errp);
        offset += n_now;
        len -= n_now;
    }
    diskimg_free_aligned(z);
    return ret;
}

int diskimg_node_write_zeroes(diskimg_node *n, uint64_t offset, uint64_t len, unsigned flags,
                              GError **errp)
{
    if (len == 0)
        return 0;
    if (node_check_writable(n, errp) < 0 || check_range(n, offset, len, errp) < 0)
        return -1;
    int (*op)(void *, uint64_t, uint64_t, unsigned, GError **) =
        n->is_file ? IO(n)->write_zeroes : FMT(n)->write_zeroes;
    if (op)
        return LOCKED_CALL(n, op(n->handle, offset, len, flags, errp));
    if (flags & DISKIMG_WRITE_NO_FALLBACK)
        return not_supported(errp, "Driver does not support efficient zero writes");
    return write_zero_buffers(n, offset, len, flags, errp);
}

int diskimg_node_write_compressed(diskimg_node *n, const void *buf, uint64_t len,
                                  uint64_t offset, GError **errp)
{
    if (node_check_writable(n, errp) < 0 || check_range(n, offset, len, errp) < 0)
        return -1;
    if (n->is_file || !(n->caps & DISKIMG_CAP_COMPRESSED))
        return not_supported(errp, "Compression not supported for this file format");
    return LOCKED_CALL(n, FMT(n)->write_compressed(n->handle, buf, len, offset, errp));
}

bool diskimg_node_can_compress_parallel(const diskimg_node *n)
{
    return !n->is_file && (n->caps & DISKIMG_CAP_COMPRESSED) && FMT(n)->compress &&
           FMT(n)->write_precompressed;
}

int64_t diskimg_node_compress(diskimg_node *n, const void *buf, uint64_t len, void *out,
                              uint64_t out_cap, GError **errp)
{
    if (!diskimg_node_can_compress_parallel(n))
        return not_supported(errp, "Compression not supported for this file format");
    /* No lock: compress is a pure function of the plugin's settings. */
    int64_t got = FMT(n)->compress(n->handle, buf, len, out, out_cap, errp);
    if (got > (int64_t)out_cap) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "plugin '%s' compressed into %" PRId64 " bytes, more than the %" PRIu64
                    " it was given", diskimg_node_driver(n), got, out_cap);
        return -1;
    }
    return got;
}

int diskimg_node_write_precompressed(diskimg_node *n, const void *data, uint64_t len,
                                     uint64_t offset, uint64_t guest_len, GError **errp)
{
    if (node_check_writable(n, errp) < 0 || check_range(n, offset, guest_len, errp) < 0)
        return -1;
    if (!diskimg_node_can_compress_parallel(n))
        return not_supported(errp, "Compression not supported for this file format");
    return LOCKED_CALL(n, FMT(n)->write_precompressed(n->handle, data, len, offset, guest_len,
                                                      errp));
}

int64_t diskimg_node_copy_range(diskimg_node *src, uint64_t src_offset, diskimg_node *dst,
                                uint64_t dst_offset, uint64_t len, GError **errp)
{
    /* Only between two files of one I/O backend, which can hand the copy
     * to the kernel or the storage. */
    if (!src->is_file || !dst->is_file || src->plugin != dst->plugin ||
        !IO(src)->copy_range)
        return 0;
    if (node_check_writable(dst, errp) < 0)
        return -1;
    return IO(src)->copy_range(src->handle, src_offset, dst->handle, dst_offset, len, errp);
}

int diskimg_node_discard(diskimg_node *n, uint64_t offset, uint64_t len, GError **errp)
{
    if (len == 0)
        return 0;
    if (node_check_writable(n, errp) < 0 || check_range(n, offset, len, errp) < 0)
        return -1;
    if (n->is_file)
        return IO(n)->punch_hole ? LOCKED_CALL(n, IO(n)->punch_hole(n->handle, offset, len, errp))
                                 : 0;
    /* Discard is advisory: a format or image without it simply keeps the data. */
    if (!(n->caps & DISKIMG_CAP_DISCARD))
        return 0;
    return LOCKED_CALL(n, FMT(n)->discard(n->handle, offset, len, errp));
}

int node_defer_flushes(diskimg_node *n, bool on, GError **errp)
{
    n->flushes_deferred = on;
    if (on || !n->flush_pending)
        return 0;
    n->flush_pending = false;
    return diskimg_node_flush(n, errp);
}

int diskimg_node_flush(diskimg_node *n, GError **errp)
{
    if (n->is_file && n->flushes_deferred) {
        n->flush_pending = true;
        return 0;
    }
    int (*op)(void *, GError **) = n->is_file ? IO(n)->flush : FMT(n)->flush;
    if (op && LOCKED_CALL(n, op(n->handle, errp)) < 0)
        return -1;
    /* Flushing a format node flushes what lies below it. */
    if (child_flush_all(n, errp) < 0)
        return -1;
    return n->file ? diskimg_node_flush(n->file, errp) : 0;
}

int diskimg_node_truncate(diskimg_node *n, uint64_t size, enum diskimg_prealloc prealloc,
                          unsigned flags, GError **errp)
{
    if (node_check_writable(n, errp) < 0)
        return -1;
    int (*op)(void *, uint64_t, enum diskimg_prealloc, unsigned, GError **) =
        n->is_file ? IO(n)->truncate : FMT(n)->truncate;
    if (!op)
        return not_supported(errp, "Image format driver does not support resize");
    int ret = LOCKED_CALL(n, op(n->handle, size, prealloc, flags, errp));
    n->cached_size = -1;
    return ret;
}

/* --------------------------------------------------------------- status */

static int file_block_status(diskimg_node *n, uint64_t offset, uint64_t len,
                             struct diskimg_extent *ext, GError **errp)
{
    if (IO(n)->block_status)
        return LOCKED_CALL(n, IO(n)->block_status(n->handle, offset, len, ext, errp));
    ext->length = len;
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_OFFSET_VALID;
    ext->offset = offset;
    ext->file = n;
    return 0;
}

/* DISKIMG_BS_RECURSE: the plugin maps the range to its file; the file says
 * whether the bytes there are data or a hole. */
static int block_status(diskimg_node *n, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp);

static int recurse_into_file(struct diskimg_extent *ext, GError **errp)
{
    struct diskimg_extent sub;
    if (block_status(ext->file, ext->offset, ext->length, &sub, errp) < 0)
        return -1;
    ext->length = MIN(ext->length, sub.length);
    ext->flags &= ~(DISKIMG_BS_DATA | DISKIMG_BS_ZERO | DISKIMG_BS_RECURSE);
    ext->flags |= sub.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO);
    return 0;
}

/* Block status into the core's own full-size extent. */
static int block_status(diskimg_node *n, uint64_t offset, uint64_t len,
                        struct diskimg_extent *ext, GError **errp)
{
    memset(ext, 0, sizeof(*ext));
    ext->struct_size = sizeof(*ext);
    if (len == 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "block status of an empty range");
        return -1;
    }
    if (check_range(n, offset, len, errp) < 0)
        return -1;
    if (n->is_file)
        return file_block_status(n, offset, len, ext, errp);
    int ret;
    if (FMT(n)->block_status) {
        ret = LOCKED_CALL(n, FMT(n)->block_status(n->handle, offset, len, ext, errp));
    } else {
        /* Without block status everything is data defined by this layer. */
        ext->length = len;
        ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED;
        ret = 0;
    }
    if (ret < 0)
        return -1;
    ext->struct_size = sizeof(*ext);   /* whatever the plugin did to it */
    if (ext->length == 0 || ext->length > len) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "%s: plugin '%s' returned a block status of invalid length",
                    n->filename, diskimg_node_driver(n));
        return -1;
    }
    if ((ext->flags & DISKIMG_BS_RECURSE) && ext->file && (ext->flags & DISKIMG_BS_OFFSET_VALID))
        return recurse_into_file(ext, errp);
    return 0;
}

/* The smallest extent a caller may pass: the members of ABI 2. */
#define EXTENT_MIN_SIZE ABI_END(struct diskimg_extent, file)

int diskimg_node_block_status(diskimg_node *n, uint64_t offset, uint64_t len,
                              struct diskimg_extent *ext, GError **errp)
{
    if (abi_check_size(ext->struct_size, EXTENT_MIN_SIZE, "diskimg_extent", errp) < 0)
        return -1;
    struct diskimg_extent full;
    int ret = block_status(n, offset, len, &full, errp);
    abi_copy_out(ext, &full, sizeof(full));
    return ret;
}

static int block_status_chain(diskimg_node *n, uint64_t offset, uint64_t len,
                              struct diskimg_extent *ext, int *depth, GError **errp)
{
    int d = 0;
    diskimg_node *cur = n;
    uint64_t want = len;
    for (;;) {
        if (block_status(cur, offset, want, ext, errp) < 0)
            return -1;
        if ((ext->flags & DISKIMG_BS_ALLOCATED) || !cur->backing)
            break;
        /* Unallocated here: the backing layer decides, up to its end. */
        int64_t bsize = diskimg_node_size(cur->backing, errp);
        if (bsize < 0)
            return -1;
        if (offset >= (uint64_t)bsize) {
            ext->flags = DISKIMG_BS_ZERO;
            break;
        }
        want = MIN(ext->length, (uint64_t)bsize - offset);
        cur = cur->backing;
        d++;
    }
    /* Unallocated at the bottom of the chain reads as zeroes. */
    if (!(ext->flags & DISKIMG_BS_ALLOCATED) && !cur->backing)
        ext->flags = (ext->flags | DISKIMG_BS_ZERO) & ~DISKIMG_BS_DATA;
    if (depth)
        *depth = d;
    return 0;
}

int diskimg_node_block_status_chain(diskimg_node *n, uint64_t offset, uint64_t len,
                                    struct diskimg_extent *ext, int *depth, GError **errp)
{
    if (abi_check_size(ext->struct_size, EXTENT_MIN_SIZE, "diskimg_extent", errp) < 0)
        return -1;
    struct diskimg_extent full;
    int ret = block_status_chain(n, offset, len, &full, depth, errp);
    abi_copy_out(ext, &full, sizeof(full));
    return ret;
}

int diskimg_node_read_backing(diskimg_node *n, void *buf, uint64_t len, uint64_t offset,
                              GError **errp)
{
    uint64_t from_backing = 0;
    if (n->backing) {
        int64_t bsize = diskimg_node_size(n->backing, errp);
        if (bsize < 0)
            return -1;
        if (offset < (uint64_t)bsize)
            from_backing = MIN(len, (uint64_t)bsize - offset);
        if (from_backing &&
            diskimg_node_pread(n->backing, buf, from_backing, offset, errp) < 0)
            return -1;
    }
    memset((uint8_t *)buf + from_backing, 0, len - from_backing);
    return 0;
}

/* ------------------------------------------------------------ capabilities */

void node_init_capabilities(diskimg_node *n)
{
    uint64_t defaults = n->plugin->desc->capabilities;
    if (FMT(n)->write_compressed)
        defaults |= DISKIMG_CAP_COMPRESSED;
    if (FMT(n)->discard)
        defaults |= DISKIMG_CAP_DISCARD;
    uint64_t caps = defaults;
    if (FMT(n)->image_capabilities) {
        node_lock(n);
        caps = FMT(n)->image_capabilities(n->handle, defaults);
        node_unlock(n);
    }
    /* An image can do less than its plugin, never more; it may only add
     * that it is read-only. */
    n->caps = caps & (defaults | DISKIMG_CAP_READ_ONLY);
}

uint64_t diskimg_node_capabilities(const diskimg_node *n)
{
    return n->is_file ? 0 : n->caps;
}

/* ------------------------------------------------------ optional operations */

static const struct {
    const char *name;
    size_t offset;
} format_op_table[] = {
#define OP(x) { #x, offsetof(struct diskimg_format_ops, x) }
    OP(probe), OP(create), OP(write), OP(write_zeroes), OP(write_compressed), OP(discard),
    OP(flush), OP(block_status), OP(truncate), OP(info), OP(get_backing), OP(set_backing),
    OP(make_empty), OP(check), OP(measure), OP(amend), OP(snapshot_list), OP(snapshot_create),
    OP(snapshot_apply), OP(snapshot_delete), OP(snapshot_load), OP(bitmap_list),
    OP(bitmap_add), OP(bitmap_remove), OP(bitmap_set_enabled), OP(bitmap_query),
    OP(bitmap_set), OP(compress), OP(write_precompressed), OP(image_capabilities),
    OP(probe_tail),
#undef OP
};

const char *const *node_format_op_names(void)
{
    static const char *names[G_N_ELEMENTS(format_op_table) + 1];
    static gsize done;
    if (g_once_init_enter(&done)) {
        for (size_t i = 0; i < G_N_ELEMENTS(format_op_table); i++)
            names[i] = format_op_table[i].name;
        g_once_init_leave(&done, 1);
    }
    return names;
}

bool diskimg_format_has_op(const char *format, const char *op)
{
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_FORMAT, format);
    if (!lp)
        return false;
    for (size_t i = 0; i < G_N_ELEMENTS(format_op_table); i++) {
        if (g_str_equal(format_op_table[i].name, op)) {
            void *const *slot =
                (void *const *)((const char *)&lp->ops.format + format_op_table[i].offset);
            return *slot != NULL;
        }
    }
    return false;
}

static int format_only(diskimg_node *n, void *op, const char *what, GError **errp)
{
    if (n->is_file || !op)
        return not_supported(errp, what);
    return 0;
}

int diskimg_node_check(diskimg_node *n, unsigned fix, struct diskimg_check_result *res,
                       GError **errp)
{
    if (abi_check_size(res->struct_size, ABI_END(struct diskimg_check_result,
                                                 has_cluster_stats),
                       "diskimg_check_result", errp) < 0)
        return -1;
    struct diskimg_check_result full = { .struct_size = sizeof(full) };
    int ret = -1;
    if (format_only(n, (void *)FMT(n)->check, "This image format does not support checks",
                    errp) == 0 && (!fix || node_check_writable(n, errp) == 0))
        ret = LOCKED_CALL(n, FMT(n)->check(n->handle, fix, &full, errp));
    full.struct_size = sizeof(full);
    abi_copy_out(res, &full, sizeof(full));
    return ret;
}

int diskimg_node_amend(diskimg_node *n, const diskimg_options *o, bool force, GError **errp)
{
    if (format_only(n, (void *)FMT(n)->amend,
                    "Format driver does not support amending image options", errp) < 0)
        return -1;
    if (node_check_writable(n, errp) < 0)
        return -1;
    int ret = LOCKED_CALL(n, FMT(n)->amend(n->handle, o, force, errp));
    n->cached_size = -1;
    return ret;
}

int diskimg_node_set_backing(diskimg_node *n, const char *filename, const char *format,
                             GError **errp)
{
    /* qemu's bdrv_change_backing_file() answers -ENOTSUP in both cases */
    if (format_only(n, (void *)FMT(n)->set_backing, "Operation not supported", errp) < 0)
        return -1;
    if (!(n->caps & DISKIMG_CAP_BACKING) && filename && *filename)
        return not_supported(errp, "Operation not supported");
    if (node_check_writable(n, errp) < 0)
        return -1;
    return LOCKED_CALL(n, FMT(n)->set_backing(n->handle, filename, format, errp));
}

int diskimg_node_make_empty(diskimg_node *n, GError **errp)
{
    if (format_only(n, (void *)FMT(n)->make_empty,
                    "Image format does not support emptying after commit", errp) < 0 ||
        node_check_writable(n, errp) < 0)
        return -1;
    return LOCKED_CALL(n, FMT(n)->make_empty(n->handle, errp));
}

int diskimg_node_info(diskimg_node *n, struct diskimg_image_info *info, GError **errp)
{
    if (abi_check_size(info->struct_size, ABI_END(struct diskimg_image_info, dirty),
                       "diskimg_image_info", errp) < 0)
        return -1;
    struct diskimg_image_info full = { .struct_size = sizeof(full) };
    int ret = 0;
    if (!n->is_file && FMT(n)->info) {
        g_autoptr(JsonObject) scratch = json_object_new();
        ret = LOCKED_CALL(n, FMT(n)->info(n->handle, &full, diskimg_obj_from_json(scratch),
                                          errp));
    }
    full.struct_size = sizeof(full);
    abi_copy_out(info, &full, sizeof(full));
    return ret;
}

int diskimg_measure(const char *format, const struct diskimg_measure_args *args,
                    struct diskimg_measure_result *res, GError **errp)
{
    if (abi_check_size(res->struct_size, ABI_END(struct diskimg_measure_result, has_bitmaps),
                       "diskimg_measure_result", errp) < 0 ||
        abi_check_size(args->struct_size, ABI_END(struct diskimg_measure_args, source),
                       "diskimg_measure_args", errp) < 0 ||
        diskimg_format_require(format, errp) < 0)
        return -1;
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_FORMAT, format);
    if (!lp->ops.format.measure) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Block driver '%s' does not support size measurement", format);
        return -1;
    }
    struct diskimg_measure_args full_args;
    abi_copy_in(&full_args, sizeof(full_args), args, args->struct_size);
    struct diskimg_measure_result full = { .struct_size = sizeof(full) };
    int ret = lp->ops.format.measure(&full_args, &full, errp);
    full.struct_size = sizeof(full);
    abi_copy_out(res, &full, sizeof(full));
    return ret;
}
