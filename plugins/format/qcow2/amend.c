/* SPDX-License-Identifier: MIT */
/*
 * amend.c — qemu-img amend for qcow2: compat upgrade/downgrade, lazy
 * refcounts, data file name and raw flag, backing file, size, refcount
 * width (refcount-order.c); the encryption options are creation-only (not
 * in the schema's amend-options).
 */
#include <inttypes.h>
#include <string.h>

#include "qcow2.h"

/* v2 has no zero flag: zero clusters become unallocated (no backing file)
 * or real zeroes. */
static int expand_zero_clusters(struct qcow2 *s, GError **errp)
{
    bool backing = s->node && diskimg_node_backing(s->node);
    uint64_t off = 0, end = s->h.size;
    uint8_t *zero = NULL;
    int ret = 0;
    while (off < end && ret == 0) {
        struct qcow2_run r;
        if (qcow2_map_run(s, off, end - off, &r, errp) < 0)
            return -1;
        if (r.type == QC_ZERO_PLAIN || r.type == QC_ZERO_ALLOC) {
            if (!backing && r.type == QC_ZERO_PLAIN) {
                ret = qcow2_zero_clusters(s, qcow2_align_down(s, off),
                                          qcow2_size_to_clusters(s, r.len) << s->cluster_bits,
                                          false, true, errp);
            } else {
                if (!zero)
                    zero = g_malloc0(s->cluster_size);
                for (uint64_t p = 0; p < r.len && ret == 0; p += s->cluster_size)
                    ret = qcow2_write(s, zero, MIN(s->cluster_size, r.len - p), off + p, 0,
                                      errp);
            }
        }
        off += r.len;
    }
    g_free(zero);
    return ret;
}

static int downgrade(struct qcow2 *s, GError **errp)
{
    if (s->h.refcount_order != 4)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "compat=0.10 requires refcount_bits=16");
    if (s->ext_data)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Cannot downgrade an image with a data file");
    uint64_t blocking = s->h.incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESS);
    if (blocking)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Cannot downgrade an image with incompatible features 0x%" PRIx64
                                 " set", blocking);
    /* qemu-img 7.2 goes ahead with these two: a v2 reader would take zstd
     * clusters for zlib ones, and the bitmaps' clusters would leak */
    if (s->h.compression_type != QCOW2_COMPRESSION_ZLIB)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Cannot downgrade an image with a non-zlib compression type");
    if (s->nb_bitmaps)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Cannot downgrade an image with bitmaps");
    if (s->h.incompat & QCOW2_INCOMPAT_DIRTY)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Cannot downgrade an image that is not clean");
    if (expand_zero_clusters(s, errp) < 0 || qcow2_flush_metadata(s, errp) < 0)
        return -1;
    s->h.version = 2;
    s->h.header_length = QCOW2_V2_HEADER_LEN;
    s->h.incompat = s->h.compat = s->h.autoclear = 0;
    s->h.compression_type = 0;
    return 0;
}

static void upgrade(struct qcow2 *s)
{
    s->h.version = 3;
    s->h.header_length = QCOW2_HEADER_LEN_DEFAULT;
    s->h.refcount_order = 4;
}

/* The compat= asked for, else the image's: whether the result is v3. */
static bool target_is_v3(const struct qcow2 *s, const diskimg_options *o)
{
    if (!diskimg_options_has(o, "compat"))
        return s->h.version >= 3;
    const char *c = diskimg_options_get_str(o, "compat");
    return g_str_equal(c, "1.1") || g_str_equal(c, "v3");
}

/* As qemu: an upgrade comes first (other changes may need v3), a
 * downgrade last, once every other option has been checked and applied. */
static void amend_upgrade(struct qcow2 *s, const diskimg_options *o)
{
    if (target_is_v3(s, o) && s->h.version < 3)
        upgrade(s);
}

static int amend_downgrade(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    return !target_is_v3(s, o) && s->h.version >= 3 ? downgrade(s, errp) : 0;
}

static int amend_lazy(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    if (!diskimg_options_has(o, "lazy_refcounts"))
        return 0;
    bool lazy = diskimg_options_get_bool(o, "lazy_refcounts", false);
    if (lazy && !target_is_v3(s, o))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Lazy refcounts only supported with compatibility level 1.1 and "
                                 "above (use compat=1.1 or greater)");
    s->h.compat = lazy ? s->h.compat | QCOW2_COMPAT_LAZY : s->h.compat & ~QCOW2_COMPAT_LAZY;
    return 0;
}

static int amend_data_file(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    if (diskimg_options_has(o, "data_file")) {
        if (!s->ext_data)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "data-file can only be set for images that use an external "
                                     "data file");
        const char *name = diskimg_options_get_str(o, "data_file");
        if (diskimg_trust_check_to_record(DISKIMG_CHILD_DATA_FILE, name, errp) < 0)
            return -1;
        g_free(s->h.data_file);
        s->h.data_file = g_strdup(name);
    }
    if (diskimg_options_has(o, "data_file_raw")) {
        bool raw = diskimg_options_get_bool(o, "data_file_raw", false);
        if (raw && !s->ext_data)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "data-file-raw cannot be set on existing images");
        if (!raw && s->data_raw)
            s->h.autoclear &= ~QCOW2_AUTOCLEAR_DATA_RAW;
        else if (raw && !s->data_raw)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "data-file-raw cannot be set on existing images");
        s->data_raw = raw;
    }
    return 0;
}

/* As qemu: an upgrade comes first (other widths need v3), the width
 * changes before any downgrade (which needs 16 bits). */
static int amend_refcount_bits(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    if (!diskimg_options_has(o, "refcount_bits"))
        return 0;
    uint64_t bits = diskimg_options_get_uint(o, "refcount_bits", 16);
    if (bits == 0 || bits > 64 || (bits & (bits - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Refcount width must be a power of two and may not exceed "
                                 "64 bits");
    if (bits == s->refcount_bits)
        return 0;
    if (!target_is_v3(s, o) && bits != 16)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Refcount widths other than 16 bits require compatibility "
                                 "level 1.1 or above (use compat=1.1 or greater)");
    uint32_t version = s->h.version, header_length = s->h.header_length;
    if (version < 3)
        upgrade(s);
    if (qcow2_change_refcount_order(s, (uint32_t)__builtin_ctzll(bits), errp) < 0) {
        if (s->h.refcount_order != (uint32_t)__builtin_ctzll(bits)) {
            s->h.version = version;
            s->h.header_length = header_length;
        }
        return -1;
    }
    return 0;
}

/* qemu-img 7.2 accepts backing_file/backing_fmt only when both equal what
 * the image records (an absent one compares as empty): changing them
 * without copying data would change the guest view; rebase does it right. */
static int check_backing_unchanged(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    bool file = diskimg_options_has(o, "backing_file"), fmt = diskimg_options_has(o, "backing_fmt");
    if (!file && !fmt)
        return 0;
    const char *f = file ? diskimg_options_get_str(o, "backing_file") : NULL;
    const char *ff = fmt ? diskimg_options_get_str(o, "backing_fmt") : NULL;
    if (g_strcmp0(f, s->h.backing_file) == 0 && g_strcmp0(ff, s->h.backing_fmt) == 0)
        return 0;
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.");
}

/* size= may shrink, as qemu-img amend does (it truncates with shrinking
 * allowed). */
static int amend_size(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    if (!diskimg_options_has(o, "size"))
        return 0;
    uint64_t size = diskimg_options_get_uint(o, "size", s->h.size);
    if (size == s->h.size)
        return 0;
    return qcow2_resize(s, size, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK, errp);
}

int qcow2_amend(void *h, const diskimg_options *o, bool force, GError **errp)
{
    struct qcow2 *s = h;
    /* qemu-img only consults --force for LUKS key-slot changes, which qcow2
     * amend does not offer; every change here is safe without it. */
    (void)force;
    if (check_backing_unchanged(s, o, errp) < 0)
        return -1;
    uint32_t version = s->h.version, header_length = s->h.header_length;
    uint32_t refcount_order = s->h.refcount_order;
    amend_upgrade(s, o);
    if (amend_refcount_bits(s, o, errp) < 0 || amend_lazy(s, o, errp) < 0 ||
        amend_data_file(s, o, errp) < 0 || amend_size(s, o, errp) < 0 ||
        amend_downgrade(s, o, errp) < 0) {
        /* a refused option leaves the header as it was (the upgrade was
         * only in memory unless the refcount width was rewritten) */
        if (s->h.refcount_order == refcount_order && s->h.version > version) {
            s->h.version = version;
            s->h.header_length = header_length;
        }
        return -1;
    }
    if (qcow2_flush_metadata(s, errp) < 0 || qcow2_header_write(s, errp) < 0)
        return -1;
    return diskimg_node_flush(s->file, errp);
}
