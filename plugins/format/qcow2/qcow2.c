/* SPDX-License-Identifier: MIT */
/*
 * qcow2.c — the qcow2 plugin: open/close, info, flush, resize and the
 * descriptor.  See qcow2.h for the map of the other files and the thread
 * model; the callbacks with their locking are in entry.c.
 */
#include <errno.h>
#include <string.h>

#include "qcow2.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char qcow2_schema_yaml[];

#define L2_CACHE_BUDGET (1u << 20)
#define REFCOUNT_CACHE_BUDGET (256u << 10)

int qcow2_enomem(GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "Out of memory");
}

int qcow2_pread_padded(struct qcow2 *s, void *buf, uint64_t len, uint64_t off,
                       uint64_t file_size, GError **errp)
{
    uint64_t in_file = off < file_size ? MIN(len, file_size - off) : 0;
    memset((uint8_t *)buf + in_file, 0, len - in_file);
    return in_file ? diskimg_node_pread(s->file, buf, in_file, off, errp) : 0;
}

int qcow2_corrupt(struct qcow2 *s, GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (s->writable && !s->corrupt) {
        s->corrupt = true;
        diskimg_warn("warning: qcow2: Marking image as corrupt: %s; further corruption "
                     "events will be suppressed", msg);
        (void)qcow2_header_set_incompat(s, s->h.incompat | QCOW2_INCOMPAT_CORRUPT, NULL);
        (void)diskimg_node_flush(s->file, NULL);
    }
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: %s", s->filename, msg);
}

/* ------------------------------------------------------------ probe */

int qcow2_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)filename;
    if (len >= 8 && diskimg_be32(buf) == QCOW2_MAGIC && diskimg_be32(buf + 4) >= 2)
        return 100;
    return 0;
}

/* ------------------------------------------------------------ open */

static void setup_geometry(struct qcow2 *s)
{
    s->cluster_bits = s->h.cluster_bits;
    s->cluster_size = 1ull << s->cluster_bits;
    s->ext_l2 = s->h.incompat & QCOW2_INCOMPAT_EXTL2;
    s->ext_data = s->h.incompat & QCOW2_INCOMPAT_DATA_FILE;
    s->data_raw = s->ext_data && (s->h.autoclear & QCOW2_AUTOCLEAR_DATA_RAW);
    s->l2e_size = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_entries = 1ull << s->l2_bits;
    s->subcluster_size = s->ext_l2 ? s->cluster_size / QCOW2_SUBCLUSTERS : s->cluster_size;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;
}

/* For inspect: incompatible bits we do not know make the open fail below,
 * and the finding says which ones, before that. */
static void note_unknown_features(struct qcow2 *s, const uint8_t *buf, size_t len)
{
    if (len < 80 || diskimg_be32(buf + 4) < 3)
        return;
    uint64_t unknown = diskimg_be64(buf + 72) & ~QCOW2_INCOMPAT_KNOWN;
    if (unknown)
        diskimg_node_add_finding(s->node, "unknown-incompatible-features",
                                 DISKIMG_SEVERITY_UNSAFE, "incompatible-features",
                                 "the header sets incompatible feature bits %#" PRIx64
                                 " that this qcow2 plugin does not know", unknown);
}

static int read_header(struct qcow2 *s, GError **errp)
{
    uint8_t small[QCOW2_V2_HEADER_LEN];
    int64_t fsize = diskimg_node_size(s->file, errp);
    if (fsize < 0 || diskimg_node_pread(s->file, small, sizeof(small), 0, errp) < 0)
        return -1;
    uint32_t bits = diskimg_be32(small + 20);
    if (diskimg_be32(small) != QCOW2_MAGIC || bits < QCOW2_MIN_CLUSTER_BITS ||
        bits > QCOW2_MAX_CLUSTER_BITS)
        return qcow2_header_parse(&s->h, small, sizeof(small), (uint64_t)fsize, errp);
    size_t cs = (size_t)1 << bits;
    g_autofree uint8_t *buf = g_malloc(cs);
    if (diskimg_node_pread(s->file, buf, cs, 0, errp) < 0)
        return -1;
    note_unknown_features(s, buf, cs);
    if (qcow2_header_parse(&s->h, buf, cs, (uint64_t)fsize, errp) < 0)
        return -1;
    setup_geometry(s);
    return 0;
}

static int check_open_mode(struct qcow2 *s, unsigned flags, GError **errp)
{
    if ((s->h.incompat & QCOW2_INCOMPAT_CORRUPT) && (flags & DISKIMG_OPEN_RDWR) &&
        !(flags & DISKIMG_OPEN_CHECK)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "qcow2: Image is corrupt; cannot be opened read/write");
        return -1;
    }
    return 0;
}

static int open_data_file(struct qcow2 *s, diskimg_node *node, GError **errp)
{
    s->data = s->file;
    if (!s->ext_data)
        return 0;
    diskimg_node *existing = diskimg_node_data_file(node ? node : s->file);
    if (existing) {
        s->data = existing;
        return 0;
    }
    if (!s->h.data_file) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "'data-file' is required for this image");
        return -1;
    }
    if (node && diskimg_node_metadata_only(node)) {
        /* info reports the name only (trust policy, as qemu 7.2); the core
         * refuses guest data requests, so s->data is never used. */
        diskimg_node_note_child(node, DISKIMG_CHILD_DATA_FILE, s->h.data_file);
        s->data = NULL;
        return 0;
    }
    /* qemu-img's actual-size leaves the data file out: so do we.  The
     * core's error names the data file, as qemu-img's does. */
    s->data = diskimg_node_open_child(node ? node : s->file, DISKIMG_CHILD_DATA_FILE,
                                      s->h.data_file, DISKIMG_CHILD_UNCOUNTED, errp);
    return s->data ? 0 : -1;
}

/* Metadata write-backs of the caches: none once corruption was seen (the
 * metadata is not to be trusted, and qemu stops writing too), and none over
 * another structure (the overlap guard, overlap.c). */
static int metadata_write_ok(struct qcow2 *s, const char *what, uint64_t offset, uint64_t len,
                             uint32_t allowed, GError **errp)
{
    if (s->corrupt)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: image is marked corrupt; not writing %s at %#" PRIx64,
                                 s->filename, what, offset);
    return qcow2_guard_check_write(s, offset, len, allowed, errp);
}

static int refblock_write_ok(void *opaque, const char *what, uint64_t offset, uint64_t len,
                             GError **errp)
{
    return metadata_write_ok(opaque, what, offset, len, QCOW2_OL_REFCOUNT_BLOCK, errp);
}

static int l2_write_ok(void *opaque, const char *what, uint64_t offset, uint64_t len,
                       GError **errp)
{
    return metadata_write_ok(opaque, what, offset, len,
                             QCOW2_OL_ACTIVE_L2 | QCOW2_OL_INACTIVE_L2, errp);
}

/* An L1 or reftable entry pointing at offset 0 or into the middle of a
 * cluster: qemu's corruption signal. */
static void bad_metadata_offset(void *opaque, const char *what, uint64_t offset, GError **errp)
{
    qcow2_corrupt(opaque, errp, "%s offset %#" PRIx64 " is invalid", what, offset);
}

/* The cache budgets from the open-options l2-cache-size, refcount-cache-size
 * and cache-size, combined by qemu's rules (read_cache_sizes): with
 * cache-size alone the L2 cache takes what covers the whole disk and the
 * refcount cache the rest (at least 4 clusters).  A user's L2 size never
 * exceeds what covers the disk; each cache keeps its minimum (2 and 4
 * clusters).  Without options: our defaults. */
static int cache_budgets(struct qcow2 *s, const diskimg_options *o, GError **errp)
{
    uint64_t cs = s->cluster_size;
    uint64_t clusters = s->h.size / cs + !!(s->h.size % cs);
    uint64_t max_l2 = MAX((clusters + s->l2_entries - 1) / s->l2_entries, 1) * cs;
    uint64_t min_rc = 4 * cs;
    bool has_all = o && diskimg_options_has(o, "cache-size");
    bool has_l2 = o && diskimg_options_has(o, "l2-cache-size");
    bool has_rc = o && diskimg_options_has(o, "refcount-cache-size");
    uint64_t all = has_all ? diskimg_options_get_uint(o, "cache-size", 0) : 0;
    uint64_t l2 = has_l2 ? diskimg_options_get_uint(o, "l2-cache-size", 0) : L2_CACHE_BUDGET;
    uint64_t rc = has_rc ? diskimg_options_get_uint(o, "refcount-cache-size", 0)
                         : REFCOUNT_CACHE_BUDGET;
    if (has_all) {
        const char *bad = has_l2 && has_rc ? "cache-size, l2-cache-size and refcount-cache-size "
                                             "may not be set at the same time"
                          : has_l2 && l2 > all ? "l2-cache-size may not exceed cache-size"
                          : has_rc && rc > all ? "refcount-cache-size may not exceed cache-size"
                                               : NULL;
        if (bad)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "%s", bad);
        if (has_l2)
            rc = all - l2;
        else if (has_rc)
            l2 = all - rc;
        else if (all >= max_l2 + min_rc)
            l2 = max_l2, rc = all - max_l2;
        else
            rc = MIN(all, min_rc), l2 = all - rc;
    }
    if (has_all || has_l2)
        l2 = MIN(l2, max_l2);
    s->l2_cache_bytes = MAX(l2, 2 * cs);
    s->refcount_cache_bytes = MAX(rc, min_rc);
    return 0;
}

/* The L2 and refcount caches: refcount blocks reach the disk before the
 * L2 tables that need them (the L2 cache depends on the refcount cache);
 * and the growth of the file's tail (tail.c). */
static int setup_caches(struct qcow2 *s, GError **errp)
{
    const struct diskimg_mcache_hooks refblock_hooks = {
        .struct_size = sizeof(refblock_hooks),
        .opaque = s,
        .before_write = refblock_write_ok,
        .bad_offset = bad_metadata_offset,
    };
    struct diskimg_mcache_hooks l2_hooks = refblock_hooks;
    l2_hooks.before_write = l2_write_ok;
    s->rbc = diskimg_mcache_new(s->file, "refcount block", (uint32_t)s->cluster_size,
                                s->refcount_cache_bytes, errp);
    s->l2c = s->rbc ? diskimg_mcache_new(s->file, "L2 table", (uint32_t)s->cluster_size,
                                         s->l2_cache_bytes, errp) : NULL;
    if (!s->l2c)
        return -1;
    diskimg_mcache_set_hooks(s->rbc, &refblock_hooks);
    diskimg_mcache_set_hooks(s->l2c, &l2_hooks);
    diskimg_mcache_set_dependency(s->l2c, s->rbc);
    s->tail = diskimg_tail_new(s->file, (uint32_t)s->cluster_size);
    return 0;
}

static int setup_state(struct qcow2 *s, diskimg_node *node, GError **errp)
{
    if (open_data_file(s, node, errp) < 0 || qcow2_refcount_init(s, errp) < 0 ||
        qcow2_l1_load(s, errp) < 0)
        return -1;
    if (setup_caches(s, errp) < 0)
        return -1;
    if (qcow2_snapshots_load(s, errp) < 0 || qcow2_bitmaps_load(s, errp) < 0)
        return -1;
    return qcow2_bitmaps_validate(s, errp);
}

/* An image left dirty (lazy refcounts, crash) gets its refcounts rebuilt
 * before the first write, then is marked clean, as qemu does on open. */
static int repair_dirty(struct qcow2 *s, unsigned flags, GError **errp)
{
    if (!s->writable || !(s->h.incompat & QCOW2_INCOMPAT_DIRTY) || (flags & DISKIMG_OPEN_CHECK))
        return 0;
    struct diskimg_check_result res = { .struct_size = sizeof(res) };
    if (qcow2_check(s, DISKIMG_CHECK_FIX_LEAKS | DISKIMG_CHECK_FIX_ERRORS, &res, errp) < 0) {
        g_prefix_error(errp, "Could not repair dirty image: ");
        return -1;
    }
    if (diskimg_node_flush(s->file, errp) < 0)
        return -1;
    return qcow2_header_set_incompat(s, s->h.incompat & ~QCOW2_INCOMPAT_DIRTY, errp);
}

void *qcow2_open_file(diskimg_node *node, diskimg_node *file, const char *filename,
                      unsigned flags, const diskimg_options *options, GError **errp)
{
    static uint64_t next_id;
    struct qcow2 *s = g_new0(struct qcow2, 1);
    s->tracker = diskimg_tracker_new();
    s->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    qcow2_guard_init(s);
    s->node = node;
    s->file = file;
    s->filename = g_strdup(filename);
    if (read_header(s, errp) < 0 || check_open_mode(s, flags, errp) < 0 ||
        cache_budgets(s, options, errp) < 0 || qcow2_crypto_open(s, options, flags, errp) < 0) {
        qcow2_close(s);
        return NULL;
    }
    s->writable = flags & DISKIMG_OPEN_RDWR;
    s->check_open = flags & DISKIMG_OPEN_CHECK;
    /* Bitmaps are flagged in use only before the first change of guest
     * content (qcow2_bitmaps_mark), not at open as qemu does: a crash of a
     * command that changes no guest data then leaves them usable. */
    if (setup_state(s, node, errp) < 0 || repair_dirty(s, flags, errp) < 0) {
        s->writable = false;
        qcow2_close(s);
        return NULL;
    }
    return s;
}

int qcow2_flush_metadata(struct qcow2 *s, GError **errp)
{
    if (!s->writable)
        return 0;
    return diskimg_mcache_flush(s->rbc, errp) < 0 ? -1 : diskimg_mcache_flush(s->l2c, errp);
}

static void free_tables(struct qcow2 *s)
{
    qcow2_snapshots_free(s);
    qcow2_bitmaps_free(s);
}

void qcow2_close(void *h)
{
    struct qcow2 *s = h;
    if (!s)
        return;
    if (s->writable && s->l2c) {
        GError *err = NULL;
        if (qcow2_bitmaps_store(s, &err) < 0) {
            diskimg_warn("warning: %s: %s", s->filename, err->message);
            g_clear_error(&err);
        }
        if (qcow2_flush_metadata(s, &err) < 0) {
            diskimg_warn("warning: %s: metadata could not be written: %s", s->filename,
                         err->message);
            g_clear_error(&err);
        }
        if (qcow2_tail_trim(s, &err) < 0) {
            diskimg_warn("warning: %s: %s", s->filename, err->message);
            g_error_free(err);
        }
    }
    diskimg_mcache_free(s->l2c);
    diskimg_mcache_free(s->rbc);
    diskimg_tail_free(s->tail);
    qcow2_guard_free(s);
    free_tables(s);
    g_free(s->l1);
    g_free(s->reftable);
    qcow2_crypto_close(s);
    qcow2_header_clear(&s->h);
    g_free(s->filename);
    diskimg_tracker_free(s->tracker);
    g_free(s);
}

/* ------------------------------------------------------------ queries */

int64_t qcow2_get_size(void *h, GError **errp)
{
    struct qcow2 *s = h;
    (void)errp;
    return (int64_t)(s->h.size & ~511ull);
}

int qcow2_get_backing(void *h, struct diskimg_backing_ref *ref)
{
    struct qcow2 *s = h;
    ref->filename = s->h.backing_file;
    ref->format = s->h.backing_fmt;
    return 0;
}

/* The directory as stored on disk (qemu reads it back for info). */
static void info_bitmaps(struct qcow2 *s, diskimg_obj *specific)
{
    if (!s->h.has_bitmaps_ext)
        return;
    diskimg_list *l = diskimg_obj_add_list(specific, "bitmaps");
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (!s->bitmaps[i].table_offset)
            continue;
        diskimg_obj *b = diskimg_list_add_obj(l);
        diskimg_list *flags = diskimg_obj_add_list(b, "flags");
        if (s->bitmaps[i].flags & QCOW2_BME_IN_USE)
            diskimg_list_add_str(flags, "in-use");
        if (s->bitmaps[i].flags & QCOW2_BME_AUTO)
            diskimg_list_add_str(flags, "auto");
        diskimg_obj_set_str(b, "name", s->bitmaps[i].name);
        diskimg_obj_set_int(b, "granularity", (int64_t)1 << s->bitmaps[i].granularity_bits);
    }
}

int qcow2_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
               GError **errp)
{
    struct qcow2 *s = h;
    (void)errp;
    info->cluster_size = s->cluster_size;
    info->encrypted = s->h.crypt_method != 0;
    info->dirty = s->h.incompat & QCOW2_INCOMPAT_DIRTY;
    if (info->struct_size >= offsetof(struct diskimg_image_info, corrupt) + sizeof(bool))
        info->corrupt = s->h.incompat & QCOW2_INCOMPAT_CORRUPT;
    if (!specific)
        return 0;
    bool v3 = s->h.version >= 3;
    diskimg_obj_set_str(specific, "compat", v3 ? "1.1" : "0.10");
    diskimg_obj_set_str(specific, "compression-type",
                        s->h.compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
    if (v3)
        diskimg_obj_set_bool(specific, "lazy-refcounts", s->h.compat & QCOW2_COMPAT_LAZY);
    info_bitmaps(s, specific);
    diskimg_obj_set_int(specific, "refcount-bits", s->refcount_bits);
    qcow2_crypto_info(s, specific);
    if (s->ext_data) {
        if (s->h.data_file)
            diskimg_obj_set_str(specific, "data-file", s->h.data_file);
        diskimg_obj_set_bool(specific, "data-file-raw", s->data_raw);
    }
    if (v3) {
        diskimg_obj_set_bool(specific, "corrupt", s->h.incompat & QCOW2_INCOMPAT_CORRUPT);
        diskimg_obj_set_bool(specific, "extended-l2", s->ext_l2);
    }
    return 0;
}

int qcow2_flush(void *h, GError **errp)
{
    if (qcow2_bitmaps_store(h, errp) < 0)
        return -1;
    return qcow2_flush_metadata(h, errp);
}

/* ------------------------------------------------------------ backing */

int qcow2_set_backing(void *h, const char *filename, const char *format, GError **errp)
{
    struct qcow2 *s = h;
    if (filename && *filename && s->data_raw) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Cannot use a backing file with a raw external data file");
        return -1;
    }
    if (filename && strlen(filename) > QCOW2_MAX_BACKING_NAME) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Backing file name too long");
        return -1;
    }
    if (format && strlen(format) > 15) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Backing format name too long");
        return -1;
    }
    char *old_file = s->h.backing_file, *old_fmt = s->h.backing_fmt;
    bool set = filename && *filename;
    s->h.backing_file = set ? g_strdup(filename) : NULL;
    s->h.backing_fmt = set && format ? g_strdup(format) : NULL;
    if (qcow2_flush_metadata(s, errp) < 0 || qcow2_header_write(s, errp) < 0) {
        g_free(s->h.backing_file);
        g_free(s->h.backing_fmt);
        s->h.backing_file = old_file;
        s->h.backing_fmt = old_fmt;
        return -1;
    }
    g_free(old_file);
    g_free(old_fmt);
    return diskimg_node_flush(s->file, errp);
}

/* Whether qemu would reset the whole file (make_completely_empty): only a
 * v3 image without anything else that owns clusters (snapshots, bitmaps,
 * a LUKS header, a data file), whose first refcount block can describe
 * the header, table, block and L1 table. */
static bool can_reset_completely(const struct qcow2 *s, uint64_t l1_clusters)
{
    return s->h.version >= 3 && !s->nb_snapshots && !s->nb_bitmaps &&
           s->h.crypt_method != QCOW2_CRYPT_LUKS && !s->ext_data &&
           3 + l1_clusters <= s->rb_entries && s->h.reftable_clusters >= 1;
}

static int set_dirty_bit(struct qcow2 *s, bool dirty, GError **errp)
{
    if (dirty)
        s->h.incompat |= QCOW2_INCOMPAT_DIRTY;
    else
        s->h.incompat &= ~QCOW2_INCOMPAT_DIRTY;
    return qcow2_header_write(s, errp) < 0 ? -1 : diskimg_node_flush(s->file, errp);
}

/* qemu's make_completely_empty: the file becomes header, refcount table
 * (cluster 1), one refcount block (2) and an empty L1 table (from 3), and
 * is cut there; the dirty bit covers the steps in between. */
static int reset_completely(struct qcow2 *s, uint64_t l1_clusters, GError **errp)
{
    uint64_t cs = s->cluster_size, end = (3 + l1_clusters) * cs;
    uint8_t entry[8];
    diskimg_put_be64(entry, 2 * cs);
    if (qcow2_flush_metadata(s, errp) < 0 || diskimg_mcache_empty(s->l2c, errp) < 0 ||
        diskimg_mcache_empty(s->rbc, errp) < 0 || set_dirty_bit(s, true, errp) < 0 ||
        diskimg_node_write_zeroes(s->file, cs, end - cs, 0, errp) < 0 ||
        diskimg_node_pwrite(s->file, entry, sizeof(entry), cs, 0, errp) < 0)
        return -1;
    memset(s->l1, 0, (size_t)s->l1_size * 8);
    s->l1_offset = s->h.l1_offset = 3 * cs;
    s->h.reftable_offset = cs;
    s->h.reftable_clusters = 1;
    diskimg_tail_forget(s->tail);
    if (qcow2_header_write(s, errp) < 0 ||
        diskimg_node_truncate(s->file, end, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                              errp) < 0)
        return -1;
    g_free(s->reftable);
    s->reftable = NULL;
    s->reftable_size = 0;
    s->free_byte_offset = 0;
    s->cgen++;
    if (qcow2_refcount_init(s, errp) < 0 || qcow2_update_refcount(s, 0, end, 1, errp) < 0 ||
        qcow2_flush_metadata(s, errp) < 0) {
        s->writable = false;    /* the file is in between: reopen it */
        return -1;
    }
    return set_dirty_bit(s, false, errp);
}

/* After commit: every cluster falls through to the backing file again. */
int qcow2_make_empty(void *h, GError **errp)
{
    struct qcow2 *s = h;
    uint64_t l1_clusters = qcow2_size_to_clusters(s, (uint64_t)s->l1_size * 8);
    if (can_reset_completely(s, l1_clusters))
        return reset_completely(s, l1_clusters, errp);
    uint64_t end = (s->h.size + s->cluster_size - 1) & ~(s->cluster_size - 1);
    if (qcow2_bitmaps_mark(s, 0, s->h.size, errp) < 0)
        return -1;
    if (end && qcow2_zero_clusters(s, 0, end, false, true, errp) < 0)
        return -1;
    /* The point of a commit is often the space: give it back. */
    return qcow2_punch_free_clusters(s, errp);
}

/* ------------------------------------------------------------ resize */

static int write_size(struct qcow2 *s, uint64_t size, GError **errp)
{
    uint8_t v[8];
    diskimg_put_be64(v, size);
    if (diskimg_node_pwrite(s->file, v, 8, 24, 0, errp) < 0)
        return -1;
    s->h.size = size;
    return 0;
}

static uint64_t l1_entries_for(const struct qcow2 *s, uint64_t size)
{
    uint32_t shift = s->cluster_bits + s->l2_bits;
    return (size >> shift) + !!(size & ((1ull << shift) - 1));
}

static int shrink(struct qcow2 *s, uint64_t size, GError **errp)
{
    uint64_t from = (size + s->cluster_size - 1) & ~(s->cluster_size - 1);
    uint64_t old = (s->h.size + s->cluster_size - 1) & ~(s->cluster_size - 1);
    if (from < old && qcow2_zero_clusters(s, from, old - from, false, true, errp) < 0)
        return -1;
    return write_size(s, size, errp);
}

/* An external data file follows the virtual size, as qemu's does: to the
 * exact size when shrinking or growing plainly, only ever up when
 * preallocating (the preallocated clusters map 1:1 onto it). */
static int resize_data_file(struct qcow2 *s, uint64_t size, enum diskimg_prealloc prealloc,
                            GError **errp)
{
    if (!s->ext_data)
        return 0;
    int64_t cur = diskimg_node_size(s->data, errp);
    if (cur < 0)
        return -1;
    if ((uint64_t)cur == size || (prealloc != DISKIMG_PREALLOC_OFF && (uint64_t)cur > size))
        return 0;
    enum diskimg_prealloc mode = prealloc == DISKIMG_PREALLOC_METADATA ? DISKIMG_PREALLOC_OFF
                                                                       : prealloc;
    return diskimg_node_truncate(s->data, size, mode, DISKIMG_TRUNCATE_SHRINK, errp);
}

/* The last cluster with a refcount, + 1 (qemu's qcow2_get_last_cluster). */
static int used_end(struct qcow2 *s, uint64_t *end, GError **errp)
{
    uint64_t n;
    if (qcow2_file_clusters(s, &n, errp) < 0)
        return -1;
    for (uint64_t c = n; c > 0; c--) {
        uint64_t rc;
        if (qcow2_get_refcount(s, c - 1, &rc, errp) < 0)
            return -1;
        if (rc) {
            *end = c;
            return 0;
        }
    }
    *end = 0;
    return 0;
}

/* Maps guest clusters from `guest` on, n of them, to host clusters from
 * `host` on. */
static int link_clusters(struct qcow2 *s, uint64_t guest, uint64_t host, uint64_t n,
                         GError **errp)
{
    while (n) {
        uint8_t *l2;
        uint64_t idx;
        if (qcow2_l2_table(s, guest, true, &l2, &idx, errp) < 0)
            return -1;
        uint64_t run = MIN(n, s->l2_entries - idx);
        for (uint64_t i = 0; i < run; i++)
            qcow2_l2_set(s, l2, idx + i, (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED, 0);
        diskimg_mcache_mark_dirty(s->l2c, l2);
        diskimg_mcache_put(s->l2c, l2);
        guest += run << s->cluster_bits;
        host += run << s->cluster_bits;
        n -= run;
    }
    return 0;
}

/* Growth with falloc/full as qemu's qcow2_co_truncate does it: the
 * refcount table moves behind the last used cluster, the new data
 * clusters follow it in one run (the file grows by them with the mode),
 * and only then are they entered in the L2 tables (new tables go where
 * the allocator finds room, the old refcount table's clusters first).
 * 1: not this image (an external data file, encryption, subclusters, an
 * unaligned old size, or a new refcount block needed): preallocate as
 * for metadata. */
static int grow_preallocated(struct qcow2 *s, uint64_t old, uint64_t size,
                             enum diskimg_prealloc prealloc, GError **errp)
{
    if (s->ext_data || s->ext_l2 || s->h.crypt_method != QCOW2_CRYPT_NONE ||
        old % s->cluster_size || (prealloc != DISKIMG_PREALLOC_FALLOC &&
                                  prealloc != DISKIMG_PREALLOC_FULL))
        return 1;
    uint64_t n = qcow2_size_to_clusters(s, size) - (old >> s->cluster_bits);
    uint64_t l2_tables = (n + s->l2_entries - 1) / s->l2_entries + 1, start, data;
    if (n == 0 || qcow2_flush_metadata(s, errp) < 0 || used_end(s, &start, errp) < 0)
        return n == 0 ? 1 : -1;
    int r = qcow2_refcount_area(s, start, n + l2_tables, &data, errp);
    if (r != 0)
        return r;
    if (qcow2_alloc_clusters_at(s, data, n, errp) < 0 ||
        diskimg_node_truncate(s->file, (data + n) << s->cluster_bits, prealloc, 0, errp) < 0 ||
        link_clusters(s, old, data << s->cluster_bits, n, errp) < 0)
        return -1;
    return qcow2_flush_metadata(s, errp);
}

static int grow(struct qcow2 *s, uint64_t size, enum diskimg_prealloc prealloc, GError **errp)
{
    uint64_t old = s->h.size;
    if (qcow2_grow_l1(s, l1_entries_for(s, size), errp) < 0 ||
        write_size(s, size, errp) < 0 || qcow2_bitmaps_resize(s, errp) < 0)
        return -1;
    /* The tables of a raw data file map it 1:1 (qemu preallocates them). */
    enum diskimg_prealloc tables = prealloc == DISKIMG_PREALLOC_OFF && s->data_raw
                                       ? DISKIMG_PREALLOC_METADATA : prealloc;
    int placed = grow_preallocated(s, old, size, prealloc, errp);
    if (placed < 0)
        return -1;
    if (placed && tables != DISKIMG_PREALLOC_OFF &&
        qcow2_preallocate(s, old, size, tables, s->h.crypt_method != QCOW2_CRYPT_NONE,
                          errp) < 0)
        return -1;
    if (resize_data_file(s, size, prealloc, errp) < 0)
        return -1;
    return qcow2_flush_metadata(s, errp);
}

int qcow2_resize(void *h, uint64_t size, enum diskimg_prealloc prealloc,
                          unsigned flags, GError **errp)
{
    struct qcow2 *s = h;
    if (size % 512) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "The new size must be a multiple of 512");
        return -1;
    }
    /* the snapshot size was not required before v3 (qemu's rule) */
    if (s->nb_snapshots && s->h.version < 3) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Can't resize a v2 image which has snapshots");
        return -1;
    }
    if (size < s->h.size && !(flags & DISKIMG_TRUNCATE_SHRINK)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "qcow2 doesn't support shrinking images yet");
        return -1;
    }
    if (qcow2_bitmaps_resize_check(s, size, errp) < 0)
        return -1;
    if (size < s->h.size)
        return shrink(s, size, errp) < 0 || qcow2_bitmaps_resize(s, errp) < 0
                   ? -1 : resize_data_file(s, size, DISKIMG_PREALLOC_OFF, errp);
    return grow(s, size, prealloc, errp);
}

/* ------------------------------------------------------------ descriptor */

static const struct diskimg_plugin qcow2_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "qcow2",
    .version = PLUGIN_VERSION,
    .summary = "QEMU copy-on-write image, version 2 and 3",
    .schema = qcow2_schema_yaml,
    .capabilities = DISKIMG_CAP_BACKING | DISKIMG_CAP_ZERO_INIT,
    .ops = &qcow2_ops,
};

DISKIMG_PLUGIN_DEFINE(qcow2_plugin)
