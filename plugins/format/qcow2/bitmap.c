/* SPDX-License-Identifier: MIT */
/*
 * bitmap.c — persistent dirty bitmaps (the bitmaps extension, bitmap
 * directory and bitmap tables of docs/interop/qcow2.txt).
 *
 * The directory is parsed and validated at open (header.c).  Contents are
 * loaded on demand into one flat bit array per bitmap (bit i = granularity
 * chunk i, least significant bit first, as qemu serialises them), bounded
 * by qemu's own 512 MiB per bitmap and a per-image budget.
 *
 * In-use protocol (qemu's): a read-write open flags every consistent
 * bitmap "in use" on disk before anything can change it; guest writes set
 * the bits of enabled bitmaps in memory; flush and close store changed
 * bitmaps to new clusters, switch the directory and clear the flags.
 * After a store the flags are set again before the next change.  A bitmap
 * found in use at open was left by a crashed writer: it is inconsistent,
 * kept as it is and can only be removed.
 *
 * Every directory change writes a new directory and switches the header
 * to it with one header write; old clusters are freed afterwards.
 */
#include <string.h>

#include "qcow2.h"

/* ------------------------------------------------------------ geometry */

static uint64_t chunks_for(uint64_t size, uint8_t gbits)
{
    return (size >> gbits) + !!(size & ((1ull << gbits) - 1));
}

/* qemu serialises bitmaps in 64-bit words. */
static uint64_t bytes_for(uint64_t nbits)
{
    return (nbits + 63) / 64 * 8;
}

static uint64_t disk_size(const struct qcow2 *s)
{
    return s->h.size & ~511ull;
}

static uint64_t table_entries_for(const struct qcow2 *s, uint8_t gbits)
{
    return qcow2_size_to_clusters(s, bytes_for(chunks_for(disk_size(s), gbits)));
}

static uint64_t dir_entry_len(const char *name)
{
    return (24 + strlen(name) + 7) & ~7ull;
}

/* ------------------------------------------------------------ bit array */

static bool bit_get(const uint8_t *b, uint64_t i)
{
    return (b[i >> 3] >> (i & 7)) & 1;
}

static void bits_fill(uint8_t *b, uint64_t from, uint64_t to, bool v)
{
    while (from < to && (from & 7)) {
        b[from >> 3] = (uint8_t)(v ? b[from >> 3] | (1u << (from & 7))
                                   : b[from >> 3] & ~(1u << (from & 7)));
        from++;
    }
    if (to - from >= 8) {
        memset(b + (from >> 3), v ? 0xff : 0, (to - from) >> 3);
        from += (to - from) & ~7ull;
    }
    for (; from < to; from++)
        b[from >> 3] = (uint8_t)(v ? b[from >> 3] | (1u << (from & 7))
                                   : b[from >> 3] & ~(1u << (from & 7)));
}

/* First index in [from, to) whose bit is not v; `to` when none. */
static uint64_t bits_run(const uint8_t *b, uint64_t from, uint64_t to, bool v)
{
    uint8_t same = v ? 0xff : 0;
    while (from < to) {
        if (!(from & 7) && to - from >= 8 && b[from >> 3] == same) {
            from += 8;
            continue;
        }
        if (bit_get(b, from) != v)
            return from;
        from++;
    }
    return to;
}

/* ------------------------------------------------------------ lookup */

static struct qcow2_bitmap *find(struct qcow2 *s, const char *name, uint32_t *idx)
{
    for (uint32_t i = 0; name && i < s->nb_bitmaps; i++) {
        if (g_str_equal(s->bitmaps[i].name, name)) {
            if (idx)
                *idx = i;
            return &s->bitmaps[i];
        }
    }
    return NULL;
}

static struct qcow2_bitmap *lookup(struct qcow2 *s, const char *name, GError **errp)
{
    struct qcow2_bitmap *bm = find(s, name, NULL);
    if (!bm)
        diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND, "Dirty bitmap '%s' not found", name);
    return bm;
}

static int usable(const struct qcow2_bitmap *bm, GError **errp)
{
    if (bm->inconsistent)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Bitmap '%s' is inconsistent and cannot be used\n"
                                 "Try block-dirty-bitmap-remove to delete this bitmap from disk",
                                 bm->name);
    return 0;
}

static int modifiable(struct qcow2 *s, const struct qcow2_bitmap *bm, GError **errp)
{
    if (bm && usable(bm, errp) < 0)
        return -1;
    if (!s->writable && bm)
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                                 "Bitmap '%s' is readonly and cannot "
                                 "be modified", bm->name);
    if (!s->writable)
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                                 "%s: image is read-only", s->filename);
    if (s->corrupt)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s: image is corrupt", s->filename);
    return 0;
}

/* ------------------------------------------------------------ tables */

/* A table entry: no reserved bits; a data cluster offset is aligned and
 * then the "all ones" flag is reserved. */
static bool table_entry_ok(const struct qcow2 *s, uint64_t e)
{
    uint64_t off = e & QCOW2_OFFSET_MASK;
    return !(e & QCOW2_BME_TABLE_RESERVED) &&
           !(off && ((e & QCOW2_BME_ALL_ONES) || qcow2_offset_into_cluster(s, off)));
}

static int table_error(const struct qcow2_bitmap *bm, GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Could not read bitmap_table table "
                             "from image for bitmap '%s': Invalid argument", bm->name);
}

static int read_bitmap_table(struct qcow2 *s, const struct qcow2_bitmap *bm, uint64_t **out,
                             GError **errp)
{
    uint64_t n = bm->table_size;
    uint64_t *t;
    if (diskimg_load_u64_table(s->file, bm->table_offset, n, 1, DISKIMG_BIG_ENDIAN,
                               (uint64_t)QCOW2_BME_MAX_TABLE * 8, "bitmap table", &t, errp) < 0)
        return -1;
    for (uint64_t i = 0; i < n; i++) {
        if (!table_entry_ok(s, t[i])) {
            g_free(t);
            return table_error(bm, errp);
        }
    }
    *out = t;
    return 0;
}

/* qemu's check of a stored table at open (load_bitmap), chunk by chunk so
 * that memory stays small whatever the table's size. */
static int validate_bitmap_table(struct qcow2 *s, const struct qcow2_bitmap *bm, GError **errp)
{
    enum { CHUNK = 8192 };
    g_autofree uint64_t *t = g_new(uint64_t, CHUNK);
    for (uint64_t i = 0; i < bm->table_size; i += CHUNK) {
        uint64_t n = MIN(CHUNK, bm->table_size - i);
        if (diskimg_node_pread(s->file, t, n * 8, bm->table_offset + i * 8, errp) < 0)
            return -1;
        for (uint64_t j = 0; j < n; j++) {
            if (!table_entry_ok(s, diskimg_be64(&t[j])))
                return table_error(bm, errp);
        }
    }
    return 0;
}

/* Frees a stored bitmap's data clusters and table; failures leak only. */
static void free_bitmap_clusters(struct qcow2 *s, const struct qcow2_bitmap *bm)
{
    uint64_t *t;
    if (!bm->table_offset || read_bitmap_table(s, bm, &t, NULL) < 0)
        return;
    for (uint32_t i = 0; i < bm->table_size; i++) {
        uint64_t off = t[i] & QCOW2_OFFSET_MASK;
        if (off)
            (void)qcow2_update_refcount(s, off, s->cluster_size, -1, NULL);
    }
    g_free(t);
    (void)qcow2_update_refcount(s, bm->table_offset, (uint64_t)bm->table_size * 8, -1, NULL);
}

/* ------------------------------------------------------------ loading */

static void clear_tail(uint8_t *bits, uint64_t nbits, uint64_t bytes)
{
    if (nbits & 7)
        bits[nbits >> 3] &= (uint8_t)((1u << (nbits & 7)) - 1);
    uint64_t used = (nbits + 7) >> 3;
    memset(bits + used, 0, bytes - used);
}

static int read_bits(struct qcow2 *s, const struct qcow2_bitmap *bm, uint8_t *bits,
                     uint64_t bytes, GError **errp)
{
    uint64_t *t;
    if (bm->table_size != qcow2_size_to_clusters(s, bytes))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Could not read bitmap '%s' from image: "
                                 "Invalid argument", bm->name);
    if (read_bitmap_table(s, bm, &t, errp) < 0)
        return -1;
    int ret = 0;
    for (uint64_t i = 0; i < bm->table_size && ret == 0; i++) {
        uint64_t start = i << s->cluster_bits, n = MIN(s->cluster_size, bytes - start);
        uint64_t off = t[i] & QCOW2_OFFSET_MASK;
        if (off)
            ret = diskimg_node_pread(s->file, bits + start, n, off, errp);
        else if (t[i] & QCOW2_BME_ALL_ONES)
            memset(bits + start, 0xff, n);
    }
    g_free(t);
    return ret;
}

/* Contents of bm in memory (zeroes for a bitmap not stored yet). */
static int load_bits(struct qcow2 *s, struct qcow2_bitmap *bm, GError **errp)
{
    if (bm->bits)
        return 0;
    uint64_t nbits = chunks_for(disk_size(s), bm->granularity_bits);
    uint64_t bytes = MAX(bytes_for(nbits), 8);
    if (bytes > QCOW2_BME_MAX_PHYS || s->bm_mem + bytes > QCOW2_BITMAP_MEM_BUDGET)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "Bitmap '%s' is too large to load "
                                 "(%" PRIu64 " bytes)", bm->name, bytes);
    uint8_t *bits = g_try_malloc0(bytes);
    if (!bits)
        return qcow2_enomem(errp);
    if (bm->table_offset && read_bits(s, bm, bits, bytes, errp) < 0) {
        g_free(bits);
        return -1;
    }
    clear_tail(bits, nbits, bytes);
    bm->bits = bits;
    bm->nbits = nbits;
    s->bm_mem += bytes;
    return 0;
}

static void unload_bits(struct qcow2 *s, struct qcow2_bitmap *bm)
{
    if (bm->bits)
        s->bm_mem -= MAX(bytes_for(bm->nbits), 8);
    g_clear_pointer(&bm->bits, g_free);
    bm->nbits = 0;
}

int qcow2_bitmaps_validate(struct qcow2 *s, GError **errp)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (!bm->inconsistent &&
            bm->table_size != table_entries_for(s, bm->granularity_bits))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Could not read bitmap '%s' from image: Invalid argument", bm->name);
        if (!bm->inconsistent && bm->table_offset && validate_bitmap_table(s, bm, errp) < 0)
            return -1;
    }
    return 0;
}

void qcow2_bitmaps_free(struct qcow2 *s)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        unload_bits(s, &s->bitmaps[i]);
        g_free(s->bitmaps[i].name);
    }
    g_clear_pointer(&s->bitmaps, g_free);
    s->nb_bitmaps = 0;
}

/* ------------------------------------------------------------ directory */

static void put_dir_entry(uint8_t *p, const struct qcow2_bitmap *bm)
{
    size_t n = strlen(bm->name);
    diskimg_put_be64(p, bm->table_offset);
    diskimg_put_be32(p + 8, bm->table_size);
    diskimg_put_be32(p + 12, bm->flags);
    p[16] = 1;      /* dirty tracking bitmap */
    p[17] = bm->granularity_bits;
    diskimg_put_be16(p + 18, (uint16_t)n);
    diskimg_put_be32(p + 20, 0);
    memcpy(p + 24, bm->name, n);
}

/* Directory of the stored bitmaps (table_offset != 0), in order. */
static int build_directory(const struct qcow2 *s, uint8_t **out, uint64_t *size,
                           uint32_t *count, GError **errp)
{
    uint64_t len = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (s->bitmaps[i].table_offset) {
            len += dir_entry_len(s->bitmaps[i].name);
            n++;
        }
    }
    if (len > QCOW2_MAX_BITMAP_DIR)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "Bitmap directory is too large");
    uint8_t *buf = g_try_malloc0(MAX(len, 1));
    if (!buf)
        return qcow2_enomem(errp);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (s->bitmaps[i].table_offset) {
            put_dir_entry(buf + pos, &s->bitmaps[i]);
            pos += dir_entry_len(s->bitmaps[i].name);
        }
    }
    *out = buf;
    *size = len;
    *count = n;
    return 0;
}

static int switch_directory(struct qcow2 *s, uint32_t n, uint64_t off, uint64_t size,
                            GError **errp)
{
    struct qcow2_header old = s->h;
    s->h.has_bitmaps_ext = n != 0;
    s->h.nb_bitmaps = n;
    s->h.bitmap_dir_offset = off;
    s->h.bitmap_dir_size = size;
    if (n)
        s->h.autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    else
        s->h.autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    if (qcow2_header_update(s, errp) < 0) {
        s->h.has_bitmaps_ext = old.has_bitmaps_ext;
        s->h.nb_bitmaps = old.nb_bitmaps;
        s->h.bitmap_dir_offset = old.bitmap_dir_offset;
        s->h.bitmap_dir_size = old.bitmap_dir_size;
        s->h.autoclear = old.autoclear;
        return -1;
    }
    if (old.has_bitmaps_ext && old.bitmap_dir_size)
        (void)qcow2_update_refcount(s, old.bitmap_dir_offset, old.bitmap_dir_size, -1, NULL);
    return 0;
}

/* Writes the directory of s->bitmaps to new clusters and switches the
 * header to it (qemu's update_ext_header_and_dir). */
static int write_directory(struct qcow2 *s, GError **errp)
{
    uint8_t *buf = NULL;
    uint64_t size = 0, off = 0;
    uint32_t n = 0;
    if (build_directory(s, &buf, &size, &n, errp) < 0)
        return -1;
    int ret = 0;
    if (size)
        ret = qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, size), &off, errp);
    if (ret == 0 && size)
        ret = diskimg_node_pwrite(s->file, buf, size, off, 0, errp);
    g_free(buf);
    if (ret == 0)
        ret = qcow2_sync(s, errp);
    if (ret == 0)
        ret = switch_directory(s, n, off, size, errp);
    if (ret < 0 && off)
        (void)qcow2_update_refcount(s, off, size, -1, NULL);
    return ret;
}

/* Flags change, nothing else: qemu rewrites the directory where it is
 * (update_ext_header_and_dir_in_place), so no cluster moves. */
static int rewrite_directory_in_place(struct qcow2 *s, GError **errp)
{
    uint8_t *buf = NULL;
    uint64_t size = 0;
    uint32_t n = 0;
    if (build_directory(s, &buf, &size, &n, errp) < 0)
        return -1;
    bool same_shape = n == s->h.nb_bitmaps && size == s->h.bitmap_dir_size &&
                      s->h.bitmap_dir_offset && size;
    int ret = same_shape ? diskimg_node_pwrite(s->file, buf, size, s->h.bitmap_dir_offset, 0,
                                               errp)
                         : 0;
    g_free(buf);
    if (!same_shape)
        return write_directory(s, errp);
    return ret < 0 ? -1 : qcow2_sync(s, errp);
}

/* ------------------------------------------------------------ in use */

static int mark_in_use(struct qcow2 *s, GError **errp)
{
    bool any = false;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (bm->table_offset && !bm->inconsistent && !(bm->flags & QCOW2_BME_IN_USE)) {
            bm->flags |= QCOW2_BME_IN_USE;
            any = true;
        }
    }
    if (any && rewrite_directory_in_place(s, errp) < 0) {
        for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
            if (!s->bitmaps[i].inconsistent)
                s->bitmaps[i].flags &= ~QCOW2_BME_IN_USE;
        }
        return -1;
    }
    s->bm_marked = true;
    s->bm_need_store |= any;
    return 0;
}

/* Before contents change: the bitmaps must be flagged in use on disk (and
 * are only then: an open that changes nothing leaves them as they were). */
static int touch(struct qcow2 *s, GError **errp)
{
    return s->bm_marked ? 0 : mark_in_use(s, errp);
}

/* ------------------------------------------------------------ storing */

/* Is every valid bit of [from, to) equal to v? */
static bool bits_all(const struct qcow2_bitmap *bm, uint64_t from, uint64_t to, bool v)
{
    to = MIN(to, bm->nbits);
    return from >= to || bits_run(bm->bits, from, to, v) == to;
}

static int store_cluster(struct qcow2 *s, const struct qcow2_bitmap *bm, uint64_t i,
                         uint64_t bytes, uint8_t *buf, uint64_t *entry, GError **errp)
{
    uint64_t start = i << s->cluster_bits, n = MIN(s->cluster_size, bytes - start), off;
    *entry = 0;
    if (!bm->bits || bits_all(bm, start * 8, (start + n) * 8, false))
        return 0;
    if (bits_all(bm, start * 8, (start + n) * 8, true)) {
        *entry = QCOW2_BME_ALL_ONES;
        return 0;
    }
    if (qcow2_alloc_clusters(s, 1, &off, errp) < 0)
        return -1;
    *entry = off;
    memset(buf, 0, s->cluster_size);
    memcpy(buf, bm->bits + start, n);
    return diskimg_node_pwrite(s->file, buf, s->cluster_size, off, 0, errp);
}

static void free_entries(struct qcow2 *s, const uint64_t *t, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        if (t[i] & QCOW2_OFFSET_MASK)
            (void)qcow2_update_refcount(s, t[i] & QCOW2_OFFSET_MASK, s->cluster_size, -1,
                                        NULL);
    }
}

static int write_table(struct qcow2 *s, const uint64_t *t, uint64_t n, uint64_t *off,
                       GError **errp)
{
    g_autofree uint8_t *raw = g_try_malloc(n * 8);
    if (!raw)
        return qcow2_enomem(errp);
    for (uint64_t i = 0; i < n; i++)
        diskimg_put_be64(raw + i * 8, t[i]);
    if (qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, n * 8), off, errp) < 0)
        return -1;
    if (diskimg_node_pwrite(s->file, raw, n * 8, *off, 0, errp) < 0) {
        (void)qcow2_update_refcount(s, *off, n * 8, -1, NULL);
        return -1;
    }
    return 0;
}

/* Writes bm's contents and table to new clusters (qemu's store_bitmap);
 * on success bm->table_* describe them. */
static int store_bitmap(struct qcow2 *s, struct qcow2_bitmap *bm, GError **errp)
{
    uint64_t nbits = chunks_for(disk_size(s), bm->granularity_bits);
    uint64_t bytes = bytes_for(nbits), n = qcow2_size_to_clusters(s, bytes), toff;
    if (n == 0 || n > QCOW2_BME_MAX_TABLE || (n << s->cluster_bits) > QCOW2_BME_MAX_PHYS)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Bitmap '%s' is too big", bm->name);
    uint64_t *t = g_try_new0(uint64_t, n);
    uint8_t *buf = g_try_malloc(s->cluster_size);
    int ret = t && buf ? 0 : qcow2_enomem(errp);
    for (uint64_t i = 0; i < n && ret == 0; i++)
        ret = store_cluster(s, bm, i, bytes, buf, &t[i], errp);
    if (ret == 0)
        ret = write_table(s, t, n, &toff, errp);
    if (ret < 0 && t)
        free_entries(s, t, n);
    g_free(t);
    g_free(buf);
    if (ret == 0) {
        bm->table_offset = toff;
        bm->table_size = (uint32_t)n;
    }
    return ret;
}

struct saved_table {
    uint64_t offset;
    uint32_t size, flags;
    bool replaced;
};

/* qemu stores every consistent bitmap anew when it closes an image it
 * opened for writing (new data clusters and table, the old ones freed
 * after the directory switched), so the clusters land where qemu's do.  A
 * bitmap too large to load keeps its table: it did not change. */
static bool needs_rewrite(struct qcow2 *s, struct qcow2_bitmap *bm)
{
    if (bm->inconsistent)
        return false;
    if (bm->changed || !bm->table_offset)
        return true;
    GError *err = NULL;
    if (load_bits(s, bm, &err) == 0)
        return true;
    g_error_free(err);
    return false;
}

/* Undoes a failed store: new tables freed, old ones back in place. */
static void store_rollback(struct qcow2 *s, struct saved_table *old)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (old[i].replaced)
            free_bitmap_clusters(s, bm);
        bm->table_offset = old[i].offset;
        bm->table_size = old[i].size;
        bm->flags = old[i].flags;
    }
}

static int store_all(struct qcow2 *s, struct saved_table *old, GError **errp)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        old[i] = (struct saved_table){ bm->table_offset, bm->table_size, bm->flags, false };
        if (!needs_rewrite(s, bm))
            continue;
        if (store_bitmap(s, bm, errp) < 0)
            return -1;
        old[i].replaced = true;
    }
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (!bm->inconsistent)
            bm->flags = bm->enabled ? QCOW2_BME_AUTO : 0;
    }
    return qcow2_sync(s, errp) < 0 ? -1 : write_directory(s, errp);
}

int qcow2_bitmaps_store(struct qcow2 *s, GError **errp)
{
    if (!s->writable || !s->bm_need_store || s->corrupt)
        return 0;
    struct saved_table *old = g_new0(struct saved_table, MAX(s->nb_bitmaps, 1));
    if (store_all(s, old, errp) < 0) {
        store_rollback(s, old);
        g_free(old);
        g_prefix_error(errp, "Failed to store bitmaps: ");
        return -1;
    }
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (old[i].replaced && old[i].offset) {
            struct qcow2_bitmap prev = { .table_offset = old[i].offset,
                                         .table_size = old[i].size,
                                         .name = s->bitmaps[i].name };
            free_bitmap_clusters(s, &prev);
        }
        s->bitmaps[i].changed = false;
    }
    g_free(old);
    s->bm_marked = false;
    s->bm_need_store = false;
    return 0;
}

/* ------------------------------------------------------------ guest writes */

static void set_range(struct qcow2_bitmap *bm, uint64_t off, uint64_t len, bool dirty,
                      uint64_t size)
{
    uint64_t g = 1ull << bm->granularity_bits;
    uint64_t first, end;
    if (dirty) {
        first = off >> bm->granularity_bits;
        end = (off + len - 1) / g + 1;
    } else {
        /* only whole chunks (and the last, partial one) become clean */
        first = (off + g - 1) / g;
        end = off + len >= size ? bm->nbits : (off + len) / g;
    }
    end = MIN(end, bm->nbits);
    if (first < end) {
        bits_fill(bm->bits, first, end, dirty);
        bm->changed = true;
    }
}

int qcow2_bitmaps_mark(struct qcow2 *s, uint64_t off, uint64_t len, GError **errp)
{
    for (uint32_t i = 0; len && i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        if (!bm->enabled || bm->inconsistent)
            continue;
        if (touch(s, errp) < 0 || load_bits(s, bm, errp) < 0)
            return -1;
        set_range(bm, off, len, true, disk_size(s));
        s->bm_need_store = true;
    }
    return 0;
}

/* ------------------------------------------------------------ resize */

int qcow2_bitmaps_resize_check(struct qcow2 *s, uint64_t new_size, GError **errp)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t bytes = bytes_for(chunks_for(new_size & ~511ull, bm->granularity_bits));
        if (usable(bm, errp) < 0)
            return -1;
        if (bytes > QCOW2_BME_MAX_PHYS)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "Bitmap '%s' would become too large",
                                     bm->name);
        if (touch(s, errp) < 0 || load_bits(s, bm, errp) < 0)
            return -1;
    }
    return 0;
}

int qcow2_bitmaps_resize(struct qcow2 *s, GError **errp)
{
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t nbits = chunks_for(disk_size(s), bm->granularity_bits);
        uint64_t old_bytes = MAX(bytes_for(bm->nbits), 8), bytes = MAX(bytes_for(nbits), 8);
        uint8_t *bits = g_try_realloc(bm->bits, bytes);
        if (!bits)
            return qcow2_enomem(errp);
        if (bytes > old_bytes)
            memset(bits + old_bytes, 0, bytes - old_bytes);
        clear_tail(bits, MIN(nbits, bm->nbits), bytes);
        s->bm_mem = s->bm_mem - old_bytes + bytes;
        bm->bits = bits;
        bm->nbits = nbits;
        bm->changed = true;
        s->bm_need_store = true;
    }
    return 0;
}

/* ------------------------------------------------------------ plugin ops */

int qcow2_bitmap_list(void *h, diskimg_bitmap_list *out, GError **errp)
{
    struct qcow2 *s = h;
    (void)errp;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        struct diskimg_bitmap b = {
            .struct_size = sizeof(b),
            .name = bm->name, .granularity = 1u << bm->granularity_bits,
            .enabled = bm->enabled, .in_use = bm->inconsistent, .persistent = true,
        };
        diskimg_bitmap_list_add(out, &b);
    }
    return 0;
}

/* qemu's bdrv_get_default_bitmap_granularity */
static uint32_t default_granularity(const struct qcow2 *s)
{
    return (uint32_t)MIN(65536, MAX(4096, s->cluster_size));
}

/* qemu's qcow2_co_can_store_new_dirty_bitmap, without its message prefix. */
static int can_store(struct qcow2 *s, const char *name, uint32_t gran, GError **errp)
{
    uint8_t gbits = (uint8_t)__builtin_ctz(gran);
    uint64_t bytes = (chunks_for(disk_size(s), gbits) + 7) / 8, dir = dir_entry_len(name);
    if (s->h.version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Cannot store dirty bitmaps in qcow2 v2 files");
    if (bytes > QCOW2_BME_MAX_PHYS || bytes > (uint64_t)QCOW2_BME_MAX_TABLE * s->cluster_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Too much space will be occupied by the "
                                 "bitmap. Use larger granularity");
    if (strlen(name) > QCOW2_BME_MAX_NAME)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Name length exceeds maximum (%u "
                                 "characters)", QCOW2_BME_MAX_NAME);
    if (disk_size(s) == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Cannot store a bitmap of an empty image");
    for (uint32_t i = 0; i < s->nb_bitmaps; i++)
        dir += dir_entry_len(s->bitmaps[i].name);
    if (s->nb_bitmaps + 1 > QCOW2_MAX_BITMAPS)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "Maximum number of persistent bitmaps is already reached");
    if (dir > QCOW2_MAX_BITMAP_DIR)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "Not enough space in the bitmap "
                                 "directory");
    return 0;
}

static int check_new(struct qcow2 *s, const char *name, uint32_t gran, GError **errp)
{
    if (!*name)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Bitmap name cannot be empty");
    if (gran < 512 || (gran & (gran - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Granularity must be power of 2 and at least 512");
    if (find(s, name, NULL))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Bitmap already exists: %s", name);
    if (can_store(s, name, gran, errp) < 0) {
        g_prefix_error(errp, "Can't make bitmap '%s' persistent in '%s': ", name, s->filename);
        return -1;
    }
    return modifiable(s, NULL, errp);
}

int qcow2_bitmap_add(void *h, const struct diskimg_bitmap *b, GError **errp)
{
    struct qcow2 *s = h;
    const char *name = b->name ? b->name : "";
    uint32_t gran = b->granularity ? b->granularity : default_granularity(s);
    if (check_new(s, name, gran, errp) < 0)
        return -1;
    struct qcow2_bitmap *list = g_try_renew(struct qcow2_bitmap, s->bitmaps,
                                            s->nb_bitmaps + 1);
    if (!list)
        return qcow2_enomem(errp);
    s->bitmaps = list;
    s->bitmaps[s->nb_bitmaps++] = (struct qcow2_bitmap){
        .type = 1, .granularity_bits = (uint8_t)__builtin_ctz(gran), .name = g_strdup(name),
        .enabled = b->enabled, .changed = true,
    };
    s->bm_need_store = true;
    return 0;
}

int qcow2_bitmap_remove(void *h, const char *name, GError **errp)
{
    struct qcow2 *s = h;
    uint32_t i;
    struct qcow2_bitmap *found = find(s, name, &i);
    if (!found)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND,
                                 "Dirty bitmap '%s' not found", name);
    if (modifiable(s, NULL, errp) < 0)
        return -1;
    struct qcow2_bitmap bm = *found;
    memmove(&s->bitmaps[i], &s->bitmaps[i + 1], (s->nb_bitmaps - i - 1) * sizeof(bm));
    s->nb_bitmaps--;
    if (bm.table_offset && write_directory(s, errp) < 0) {
        memmove(&s->bitmaps[i + 1], &s->bitmaps[i], (s->nb_bitmaps - i) * sizeof(bm));
        s->bitmaps[i] = bm;
        s->nb_bitmaps++;
        return -1;
    }
    free_bitmap_clusters(s, &bm);
    unload_bits(s, &bm);
    g_free(bm.name);
    return 0;
}

int qcow2_bitmap_set_enabled(void *h, const char *name, bool enabled, GError **errp)
{
    struct qcow2 *s = h;
    struct qcow2_bitmap *bm = lookup(s, name, errp);
    if (!bm || modifiable(s, bm, errp) < 0)
        return -1;
    if (bm->enabled != enabled) {
        bm->enabled = enabled;
        s->bm_need_store = true;
    }
    return 0;
}

int qcow2_bitmap_query(void *h, const char *name, uint64_t offset, uint64_t len, bool *dirty,
                       uint64_t *run, GError **errp)
{
    struct qcow2 *s = h;
    struct qcow2_bitmap *bm = lookup(s, name, errp);
    if (!bm || usable(bm, errp) < 0 || load_bits(s, bm, errp) < 0)
        return -1;
    uint64_t chunk = offset >> bm->granularity_bits;
    *dirty = false;
    *run = len;
    if (chunk >= bm->nbits || len == 0)
        return 0;
    *dirty = bit_get(bm->bits, chunk);
    uint64_t end = bits_run(bm->bits, chunk, bm->nbits, *dirty);
    uint64_t stop = end >= bm->nbits ? UINT64_MAX : end << bm->granularity_bits;
    *run = MIN(stop - offset, len);
    return 0;
}

int qcow2_bitmap_set(void *h, const char *name, uint64_t offset, uint64_t len, bool dirty,
                     GError **errp)
{
    struct qcow2 *s = h;
    struct qcow2_bitmap *bm = lookup(s, name, errp);
    if (!bm || modifiable(s, bm, errp) < 0 || touch(s, errp) < 0 ||
        load_bits(s, bm, errp) < 0)
        return -1;
    if (len)
        set_range(bm, offset, len, dirty, disk_size(s));
    s->bm_need_store = true;
    return 0;
}

/* ------------------------------------------------------------ measure */

/* qemu's qcow2_get_persistent_dirty_bitmap_size for a qcow2 source. */
uint64_t qcow2_bitmaps_measure(diskimg_node *src, uint64_t cs)
{
    const struct qcow2 *s = diskimg_node_handle(src);
    uint64_t total = 0, dir = 0;
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        const struct qcow2_bitmap *bm = &s->bitmaps[i];
        uint64_t bytes = (chunks_for(disk_size(s), bm->granularity_bits) + 7) / 8;
        uint64_t clusters = (bytes + cs - 1) / cs;
        total += clusters * cs + (clusters * 8 + cs - 1) / cs * cs;
        dir += dir_entry_len(bm->name);
    }
    return total + (dir + cs - 1) / cs * cs;
}

/* ------------------------------------------------------------ check -r */

/* Byte offset of bitmap i's directory entry: the stored bitmaps' entries
 * follow each other in order. */
static uint64_t dir_entry_offset(const struct qcow2 *s, uint32_t i)
{
    uint64_t off = s->h.bitmap_dir_offset;
    for (uint32_t j = 0; j < i; j++) {
        if (s->bitmaps[j].table_offset)
            off += dir_entry_len(s->bitmaps[j].name);
    }
    return off;
}

int qcow2_bitmap_replace_lost_table(struct qcow2 *s, uint32_t i, uint64_t first_free,
                                    GError **errp)
{
    struct qcow2_bitmap *bm = &s->bitmaps[i];
    uint64_t bytes = (uint64_t)bm->table_size * 8, off, at = dir_entry_offset(s, i);
    uint64_t n = qcow2_size_to_clusters(s, bytes);
    s->free_cluster_index = MAX(s->free_cluster_index, first_free);
    if (qcow2_alloc_clusters(s, n, &off, errp) < 0)
        return -1;
    uint8_t v[8];
    diskimg_put_be64(v, off);
    /* the new table (all zeroes: every chunk clean) is durable before the
     * directory names it */
    if (qcow2_sync(s, errp) < 0 ||
        diskimg_node_write_zeroes(s->file, off, n << s->cluster_bits, 0, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0 ||
        qcow2_guard_check_write(s, at, 8, QCOW2_OL_BITMAP_DIRECTORY, errp) < 0 ||
        diskimg_node_pwrite(s->file, v, 8, at, 0, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0) {
        (void)qcow2_update_refcount(s, off, n << s->cluster_bits, -1, NULL);
        return -1;
    }
    bm->table_offset = off;
    return 0;
}
