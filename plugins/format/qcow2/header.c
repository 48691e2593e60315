/* SPDX-License-Identifier: MIT */
/*
 * header.c — the qcow2 header: parsing (every field validated before any
 * other code sees it), serialisation, in-place field updates, and the
 * snapshot table and bitmap directory readers.
 *
 * All reads of on-disk bytes go through the core's bounded reader
 * (struct diskimg_reader, <diskimg/toolkit.h>): an access outside the
 * bytes read fails instead of reading past them.
 */
#include <errno.h>
#include <string.h>

#include "qcow2.h"

/* ------------------------------------------------------- fixed header */

static void ext_free(gpointer p)
{
    struct qcow2_ext *e = p;
    g_free(e->data);
    g_free(e);
}

void qcow2_header_clear(struct qcow2_header *h)
{
    g_free(h->backing_file);
    g_free(h->backing_fmt);
    g_free(h->data_file);
    if (h->unknown_ext)
        g_ptr_array_free(h->unknown_ext, TRUE);
    memset(h, 0, sizeof(*h));
}

static int read_fixed_fields(struct qcow2_header *h, const struct diskimg_reader *r, GError **errp)
{
    uint32_t magic;
    if (diskimg_read_u32(r, 0, "magic", &magic, NULL) < 0 || magic != QCOW2_MAGIC)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Image is not in qcow2 format");
    if (!diskimg_reader_has(r, 0, QCOW2_V2_HEADER_LEN))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "qcow2 header truncated");
    diskimg_read_u32(r, 4, "version", &h->version, NULL);
    diskimg_read_u64(r, 8, "backing_offset", &h->backing_offset, NULL);
    diskimg_read_u32(r, 16, "backing_size", &h->backing_size, NULL);
    diskimg_read_u32(r, 20, "cluster_bits", &h->cluster_bits, NULL);
    diskimg_read_u64(r, 24, "size", &h->size, NULL);
    diskimg_read_u32(r, 32, "crypt_method", &h->crypt_method, NULL);
    diskimg_read_u32(r, 36, "l1_size", &h->l1_size, NULL);
    diskimg_read_u64(r, 40, "l1_offset", &h->l1_offset, NULL);
    diskimg_read_u64(r, 48, "reftable_offset", &h->reftable_offset, NULL);
    diskimg_read_u32(r, 56, "reftable_clusters", &h->reftable_clusters, NULL);
    diskimg_read_u32(r, 60, "nb_snapshots", &h->nb_snapshots, NULL);
    diskimg_read_u64(r, 64, "snapshots_offset", &h->snapshots_offset, NULL);
    if (h->version < 2 || h->version > 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Unsupported qcow2 version %" PRIu32, h->version);
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Unsupported cluster size: 2^%" PRIu32, h->cluster_bits);
    if (h->version == 2) {
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LEN;
        return 0;
    }
    if (!diskimg_reader_has(r, 0, QCOW2_V3_HEADER_LEN))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "qcow2 header truncated");
    diskimg_read_u64(r, 72, "incompat", &h->incompat, NULL);
    diskimg_read_u64(r, 80, "compat", &h->compat, NULL);
    diskimg_read_u64(r, 88, "autoclear", &h->autoclear, NULL);
    diskimg_read_u32(r, 96, "refcount_order", &h->refcount_order, NULL);
    diskimg_read_u32(r, 100, "header_length", &h->header_length, NULL);
    if (h->header_length < QCOW2_V3_HEADER_LEN)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "qcow2 header too short");
    if (h->header_length > (1u << h->cluster_bits))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "qcow2 header exceeds cluster size");
    if (h->header_length > 104 &&
        diskimg_read_u8(r, 104, "compression_type", &h->compression_type, NULL) < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "qcow2 header truncated");
    return 0;
}

/* An aligned table of `entries` entries of `esize` bytes at `off`. */
static bool table_ok(uint64_t off, uint64_t entries, uint64_t esize, uint64_t cluster_size)
{
    if (off & (cluster_size - 1))
        return false;
    if (entries > (UINT64_MAX >> 8) / esize)
        return false;
    uint64_t bytes = entries * esize;
    /* Nothing in a qcow2 file lies beyond 2^56 (the L2 offset width). */
    return off <= (1ull << 56) && bytes <= (1ull << 56) - off;
}

static int check_geometry(struct qcow2_header *h, GError **errp)
{
    uint64_t cs = 1ull << h->cluster_bits;
    if (h->refcount_order > 6)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Reference count entry width too large; may not exceed 64 bits");
    if (h->reftable_clusters == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Image does not contain a reference count table");
    if ((uint64_t)h->reftable_clusters > (QCOW2_MAX_REFTABLE_BYTES >> h->cluster_bits))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Reference count table too large");
    /* qemu's rule (aligned, ends before 2^63), as for the L1 table: a table
     * beyond the end of the file reads as zeroes there, and check then
     * reports every refcount and rebuilds them */
    uint64_t rt_bytes = (uint64_t)h->reftable_clusters << h->cluster_bits;
    if ((h->reftable_offset & (cs - 1)) || h->reftable_offset == 0 ||
        h->reftable_offset > (uint64_t)INT64_MAX - rt_bytes)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid reference count table offset");
    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Too many snapshots");
    if (h->nb_snapshots && !table_ok(h->snapshots_offset, h->nb_snapshots, 40, cs))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Invalid snapshot table offset");
    if (h->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Active L1 table too large");
    uint32_t l2e = (h->incompat & QCOW2_INCOMPAT_EXTL2) ? 16 : 8;
    uint32_t l2_bits = h->cluster_bits - (l2e == 16 ? 4 : 3);
    uint32_t shift = h->cluster_bits + l2_bits;
    uint64_t needed = shift >= 64 ? 1 : (h->size >> shift) + !!(h->size & ((1ull << shift) - 1));
    if (h->size > (uint64_t)INT64_MAX || needed > INT32_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Image is too big");
    if (h->l1_size < needed)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "L1 table is too small");
    /* qemu's rule (aligned, ends before 2^63): a table far beyond the end
     * of the file is then refused by the L1 loader, or, opened for check,
     * reads as zeroes and is reported by check, as qemu does */
    if (h->l1_size && ((h->l1_offset & (cs - 1)) || h->l1_offset == 0 ||
                       h->l1_offset > (uint64_t)INT64_MAX - (uint64_t)h->l1_size * 8))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Invalid L1 table offset");
    if (h->backing_offset) {
        if (h->backing_size > QCOW2_MAX_BACKING_NAME)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Backing file name too long");
        if (h->backing_offset > cs || h->backing_size > cs - h->backing_offset)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Invalid backing file offset");
    }
    return 0;
}

/* ------------------------------------------------------- features */

/* "name" of a feature from the image's feature table, or NULL. */
static char *feature_name(const struct diskimg_reader *table, uint8_t type, uint8_t bit)
{
    for (uint64_t off = 0; diskimg_reader_has(table, off, 48); off += 48) {
        const uint8_t *e = diskimg_read_bytes(table, off, 48, "feature", NULL);
        if (e[0] == type && e[1] == bit)
            return g_strndup((const char *)e + 2, 46);
    }
    return NULL;
}

static int report_unsupported(uint64_t bits, const struct diskimg_reader *table, GError **errp)
{
    g_autoptr(GString) s = g_string_new(NULL);
    for (unsigned b = 0; b < 64; b++) {
        if (!(bits & (1ull << b)))
            continue;
        g_autofree char *name = feature_name(table, 0, (uint8_t)b);
        if (s->len)
            g_string_append(s, ", ");
        if (name && *name)
            g_string_append(s, name);
        else
            g_string_append_printf(s, "Unknown incompatible feature: %llx", 1ull << b);
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "Unsupported qcow2 feature(s): %s", s->str);
    return -1;
}

static int check_features(struct qcow2_header *h, const struct diskimg_reader *table, GError **errp)
{
    if (h->incompat & ~QCOW2_INCOMPAT_KNOWN)
        return report_unsupported(h->incompat & ~QCOW2_INCOMPAT_KNOWN, table, errp);
    if (h->incompat & QCOW2_INCOMPAT_COMPRESS) {
        if (h->header_length <= 104 || h->compression_type == QCOW2_COMPRESSION_ZLIB)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Compression type incompatible feature bit must not be "
                                     "set when the compression type is zlib");
    } else if (h->compression_type != QCOW2_COMPRESSION_ZLIB) {
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Compression type incompatible feature bit must be set when "
                                 "the compression type is not zlib");
    }
    if (h->compression_type > QCOW2_COMPRESSION_ZSTD)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Unknown compression type %u", h->compression_type);
    if ((h->incompat & QCOW2_INCOMPAT_EXTL2) && h->cluster_bits < 14)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Extended L2 entries need a cluster size of at least 16k");
    if (h->crypt_method > 2)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Unsupported encryption method: %" PRIu32, h->crypt_method);
    if ((h->autoclear & QCOW2_AUTOCLEAR_DATA_RAW) && !(h->incompat & QCOW2_INCOMPAT_DATA_FILE))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "data-file-raw requires a data file");
    return 0;
}

/* ------------------------------------------------------- extensions */

/* A name extension of len bytes: at most max_len of them (qemu's rule for
 * the backing format; SIZE_MAX: any), and a name of at most max_name. */
static int ext_string(char **dst, const struct diskimg_reader *r, uint64_t off, uint32_t len,
                      size_t max_len, size_t max_name, const char *what, GError **errp)
{
    if (*dst)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Duplicate %s header extension", what);
    if (len > max_len)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "ERROR: %s: len=%" PRIu32 " too large (>=%zu)", what, len,
                                 max_len + 1);
    /* qemu reads the name as a C string: it ends at an embedded NUL (what
     * follows is padding to qemu, so it is not judged here either) */
    *dst = diskimg_read_string(r, off, len, what, NULL);
    if (*dst && strlen(*dst) > max_name)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "%s is longer than %zu bytes",
                                 what, max_name);
    return 0;
}

static int ext_bitmaps(struct qcow2_header *h, const struct diskimg_reader *r, uint64_t off,
                       uint32_t len, GError **errp)
{
    uint32_t reserved;
    if (h->has_bitmaps_ext)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Duplicate bitmaps header extension");
    if (len != 24)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "bitmaps_ext: Invalid extension length");
    if (!(h->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
        diskimg_warn("warning: a program lacking bitmap support modified this file, so all "
                     "bitmaps are now considered inconsistent");
        return 0;
    }
    diskimg_read_u32(r, off, "nb_bitmaps", &h->nb_bitmaps, NULL);
    diskimg_read_u32(r, off + 4, "reserved", &reserved, NULL);
    diskimg_read_u64(r, off + 8, "bitmap_dir_size", &h->bitmap_dir_size, NULL);
    diskimg_read_u64(r, off + 16, "bitmap_dir_offset", &h->bitmap_dir_offset, NULL);
    if (reserved)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "bitmaps_ext: Reserved field is not zero");
    if (h->nb_bitmaps == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "found bitmaps extension with zero bitmaps");
    if (h->nb_bitmaps > QCOW2_MAX_BITMAPS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "bitmaps_ext: Image has %" PRIu32 " bitmaps, exceeding the "
                                 "QEMU supported maximum of %u", h->nb_bitmaps, QCOW2_MAX_BITMAPS);
    if (h->bitmap_dir_size > QCOW2_MAX_BITMAP_DIR)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "bitmaps_ext: bitmap directory size (%" PRIu64 ") exceeds the "
                                 "maximum supported size (%u)", h->bitmap_dir_size,
                                 QCOW2_MAX_BITMAP_DIR);
    if (!table_ok(h->bitmap_dir_offset, h->bitmap_dir_size, 1, 1ull << h->cluster_bits))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "bitmaps_ext: invalid bitmap directory offset");
    h->has_bitmaps_ext = true;
    return 0;
}

static int ext_crypto(struct qcow2_header *h, const struct diskimg_reader *r, uint64_t off,
                      uint32_t len, GError **errp)
{
    uint64_t cs = 1ull << h->cluster_bits;
    if (h->has_crypto_ext)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Duplicate CRYPTO header extension");
    if (h->crypt_method != QCOW2_CRYPT_LUKS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "CRYPTO header extension only expected with LUKS encryption "
                                 "method");
    if (len != 16)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "CRYPTO header extension size %" PRIu32 ", but expected size 16",
                                 len);
    diskimg_read_u64(r, off, "crypto_offset", &h->crypto_offset, NULL);
    diskimg_read_u64(r, off + 8, "crypto_length", &h->crypto_length, NULL);
    if (h->crypto_offset % cs)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Encryption header offset '%" PRIu64 "' is not a multiple of "
                                 "cluster size '%" PRIu64 "'", h->crypto_offset, cs);
    /* the area must lie where qcow2 data can (and not in the header cluster) */
    if (h->crypto_offset == 0 || !table_ok(h->crypto_offset, h->crypto_length, 1, cs))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Invalid encryption header offset '%" PRIu64 "' or length '%"
                                 PRIu64 "'", h->crypto_offset, h->crypto_length);
    h->has_crypto_ext = true;
    return 0;
}

static int ext_keep(struct qcow2_header *h, uint32_t type, const struct diskimg_reader *r,
                    uint64_t off, uint32_t len)
{
    struct qcow2_ext *e = g_new0(struct qcow2_ext, 1);
    e->type = type;
    e->len = len;
    e->data = g_memdup2(r->data + off, len);
    if (!h->unknown_ext)
        h->unknown_ext = g_ptr_array_new_with_free_func(ext_free);
    g_ptr_array_add(h->unknown_ext, e);
    return 0;
}

static int parse_one_ext(struct qcow2_header *h, uint32_t type, const struct diskimg_reader *r,
                         uint64_t off, uint32_t len, GError **errp)
{
    switch (type) {
    case QCOW2_EXT_BACKING_FMT:
        return ext_string(&h->backing_fmt, r, off, len, 15, 15, "ext_backing_format", errp);
    case QCOW2_EXT_DATA_FILE:
        return ext_string(&h->data_file, r, off, len, SIZE_MAX, 4095, "external data file name",
                          errp);
    case QCOW2_EXT_FEATURES:
        return 0;   /* read on demand for error messages */
    case QCOW2_EXT_BITMAPS:
        return ext_bitmaps(h, r, off, len, errp);
    case QCOW2_EXT_CRYPTO:
        return ext_crypto(h, r, off, len, errp);
    default:
        return ext_keep(h, type, r, off, len);
    }
}

/* Walks the extensions between the header and `end`; *features receives
 * the feature table (for error messages). */
static int parse_extensions(struct qcow2_header *h, const struct diskimg_reader *r, uint64_t end,
                            struct diskimg_reader *features, GError **errp)
{
    uint64_t off = h->header_length;
    *features = diskimg_reader_make(NULL, 0, DISKIMG_BIG_ENDIAN, NULL, "feature table");
    while (off < end) {
        uint32_t type, len;
        /* as qemu: whatever starts before the end must fit, header too */
        if (end - off < 8)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Header extension too large");
        if (diskimg_read_u32(r, off, "extension type", &type, NULL) < 0 ||
            diskimg_read_u32(r, off + 4, "extension length", &len, NULL) < 0)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "qcow2 header extension truncated");
        off += 8;
        /* qemu checks the length first: even the end marker's must fit */
        if (len > end - off)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Header extension too large");
        if (type == QCOW2_EXT_END)
            break;
        if (type == QCOW2_EXT_FEATURES) {
            *features = diskimg_reader_make(r->data + off, len, DISKIMG_BIG_ENDIAN, NULL,
                                            "feature table");
        }
        if (parse_one_ext(h, type, r, off, len, errp) < 0)
            return -1;
        off += ((uint64_t)len + 7) & ~7ull;
    }
    h->ext_end = MIN(off, end);
    return 0;
}

static int read_backing_name(struct qcow2_header *h, const struct diskimg_reader *r, GError **errp)
{
    if (!h->backing_offset)
        return 0;
    h->backing_file = diskimg_read_string(r, h->backing_offset, h->backing_size,
                                           "backing file name", NULL);
    if (!h->backing_file)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Invalid backing file offset");
    /* as qemu reads it: the name ends at its first NUL, and an empty one
     * names no backing file */
    if (h->backing_file[0] == '\0')
        g_clear_pointer(&h->backing_file, g_free);
    return 0;
}

int qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len,
                       uint64_t file_size, GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, len, DISKIMG_BIG_ENDIAN, NULL,
                                                  "qcow2 header");
    struct diskimg_reader features;
    memset(h, 0, sizeof(*h));
    (void)file_size;
    if (read_fixed_fields(h, &r, errp) < 0 || check_geometry(h, errp) < 0)
        goto fail;
    uint64_t cs = 1ull << h->cluster_bits;
    /* Extensions lie between the header and the backing file name; a name
     * inside the header leaves no room for any (qemu then reads none). */
    uint64_t end = h->backing_offset ? h->backing_offset : cs;
    if (parse_extensions(h, &r, MIN(end, (uint64_t)len), &features, errp) < 0)
        goto fail;
    if (check_features(h, &features, errp) < 0 || read_backing_name(h, &r, errp) < 0)
        goto fail;
    if (h->crypt_method == QCOW2_CRYPT_LUKS && !h->has_crypto_ext) {
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Missing CRYPTO header for crypt method 2");
        goto fail;
    }
    if (h->data_file && !(h->incompat & QCOW2_INCOMPAT_DATA_FILE)) {
        /* qemu ignores the name without the feature bit */
        g_clear_pointer(&h->data_file, g_free);
    }
    return 0;
fail:
    qcow2_header_clear(h);
    return -1;
}

/* ------------------------------------------------------- serialisation */

static const struct {
    uint8_t type, bit;
    const char *name;
} feature_table[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

struct qwr {
    uint8_t *p;
    size_t len, off;
    bool overflow;
};

static uint8_t *qwr_take(struct qwr *w, size_t n)
{
    if (w->overflow || n > w->len - w->off) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *p = w->p + w->off;
    w->off += n;
    return p;
}

static void qwr_ext(struct qwr *w, uint32_t type, const void *data, uint32_t len)
{
    uint8_t *p = qwr_take(w, 8 + (((size_t)len + 7) & ~(size_t)7));
    if (!p)
        return;
    diskimg_put_be32(p, type);
    diskimg_put_be32(p + 4, len);
    if (len)
        memcpy(p + 8, data, len);
}

static void write_fixed(const struct qcow2_header *h, uint8_t *p)
{
    diskimg_put_be32(p, QCOW2_MAGIC);
    diskimg_put_be32(p + 4, h->version);
    diskimg_put_be32(p + 20, h->cluster_bits);
    diskimg_put_be64(p + 24, h->size);
    diskimg_put_be32(p + 32, h->crypt_method);
    diskimg_put_be32(p + 36, h->l1_size);
    diskimg_put_be64(p + 40, h->l1_offset);
    diskimg_put_be64(p + 48, h->reftable_offset);
    diskimg_put_be32(p + 56, h->reftable_clusters);
    diskimg_put_be32(p + 60, h->nb_snapshots);
    diskimg_put_be64(p + 64, h->snapshots_offset);
    if (h->version < 3)
        return;
    diskimg_put_be64(p + 72, h->incompat);
    diskimg_put_be64(p + 80, h->compat);
    diskimg_put_be64(p + 88, h->autoclear);
    diskimg_put_be32(p + 96, h->refcount_order);
    diskimg_put_be32(p + 100, h->header_length);
    if (h->header_length > 104)
        p[104] = h->compression_type;
}

static void write_feature_table(struct qwr *w)
{
    uint8_t table[G_N_ELEMENTS(feature_table) * 48];
    memset(table, 0, sizeof(table));
    for (size_t i = 0; i < G_N_ELEMENTS(feature_table); i++) {
        table[i * 48] = feature_table[i].type;
        table[i * 48 + 1] = feature_table[i].bit;
        memcpy(table + i * 48 + 2, feature_table[i].name, strlen(feature_table[i].name));
    }
    qwr_ext(w, QCOW2_EXT_FEATURES, table, sizeof(table));
}

static void write_extensions(const struct qcow2_header *h, struct qwr *w)
{
    if (h->backing_fmt && h->backing_file)
        qwr_ext(w, QCOW2_EXT_BACKING_FMT, h->backing_fmt, (uint32_t)strlen(h->backing_fmt));
    if (h->data_file)
        qwr_ext(w, QCOW2_EXT_DATA_FILE, h->data_file, (uint32_t)strlen(h->data_file));
    if (h->has_crypto_ext) {
        uint8_t c[16];
        diskimg_put_be64(c, h->crypto_offset);
        diskimg_put_be64(c + 8, h->crypto_length);
        qwr_ext(w, QCOW2_EXT_CRYPTO, c, sizeof(c));
    }
    /* qemu omits the table (392 bytes) with clusters of 4k and less, to
     * leave room for extensions and the backing file name */
    if (h->version >= 3 && h->cluster_bits > 12)
        write_feature_table(w);
    if (h->has_bitmaps_ext) {
        uint8_t b[24] = { 0 };
        diskimg_put_be32(b, h->nb_bitmaps);
        diskimg_put_be64(b + 8, h->bitmap_dir_size);
        diskimg_put_be64(b + 16, h->bitmap_dir_offset);
        qwr_ext(w, QCOW2_EXT_BITMAPS, b, sizeof(b));
    }
    for (guint i = 0; h->unknown_ext && i < h->unknown_ext->len; i++) {
        const struct qcow2_ext *e = g_ptr_array_index(h->unknown_ext, i);
        qwr_ext(w, e->type, e->data, e->len);
    }
    qwr_ext(w, QCOW2_EXT_END, NULL, 0);
}

int qcow2_header_build(const struct qcow2_header *h, uint8_t *buf, size_t len, GError **errp)
{
    struct qwr w = { buf, len, 0, false };
    memset(buf, 0, len);
    uint8_t *fixed = qwr_take(&w, h->header_length);
    if (!fixed)
        goto too_big;
    write_fixed(h, fixed);
    write_extensions(h, &w);
    if (h->backing_file) {
        size_t n = strlen(h->backing_file);
        uint8_t *p = qwr_take(&w, n);
        if (!p)
            goto too_big;
        memcpy(p, h->backing_file, n);
        diskimg_put_be64(fixed + 8, p - buf);
        diskimg_put_be32(fixed + 16, (uint32_t)n);
    }
    if (!w.overflow)
        return 0;
too_big:
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "Cannot fit the qcow2 header and its extensions into one cluster");
    return -1;
}

int qcow2_header_write(struct qcow2 *s, GError **errp)
{
    uint8_t *buf = g_malloc(s->cluster_size);
    int ret = qcow2_header_build(&s->h, buf, s->cluster_size, errp);
    if (ret == 0)
        ret = diskimg_node_pwrite(s->file, buf, s->cluster_size, 0, 0, errp);
    g_free(buf);
    return ret;
}

int qcow2_header_set_incompat(struct qcow2 *s, uint64_t bits, GError **errp)
{
    uint8_t v[8];
    if (s->h.version < 3)
        return 0;
    diskimg_put_be64(v, bits);
    if (diskimg_node_pwrite(s->file, v, 8, QH_INCOMPAT, 0, errp) < 0)
        return -1;
    s->h.incompat = bits;
    return 0;
}

/* ------------------------------------------------------- snapshots */

/* Repairing in check mode: damage qemu's check -r all works around while
 * reading the snapshot table is worked around here too (and counted). */
static bool snapshot_repairing(const struct qcow2 *s)
{
    return s->check_open && s->writable;
}

/* Where the bytes of the snapshot table come from: a window of the file
 * that slides along the table, so that memory stays bounded by one window
 * however many entries the header claims (the table is never loaded
 * whole).  Opened normally, the table ends with the file; opened for
 * check, the file is read as qemu reads it: zeroes past its end, so that
 * an entry whose extra data or names lie beyond the end is still reported
 * on. */
#define SNAP_WINDOW (256u << 10)    /* > the largest entry, 40 + 1 KiB + 2 * 64 KiB */
struct snap_source {
    struct qcow2 *s;
    uint64_t file_size;
    bool padded;                    /* zeroes past the end of the file (check) */
    uint8_t *win;                   /* SNAP_WINDOW bytes */
    uint64_t win_off, win_len;      /* the table bytes [win_off, win_off + win_len) */
};

static int snap_truncated(GError **errp)
{
    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Snapshot table is truncated");
}

/* Moves the window to start at table offset off. */
static int snap_fill(struct snap_source *src, uint64_t off, GError **errp)
{
    uint64_t base = src->s->h.snapshots_offset;
    /* qemu cannot read beyond 2^63 either */
    if (off > (1ull << 62) || base + off > (1ull << 62))
        return snap_truncated(errp);
    uint64_t pos = base + off, n = SNAP_WINDOW;
    if (!src->padded)
        n = pos < src->file_size ? MIN(n, src->file_size - pos) : 0;
    src->win_len = 0;
    if (n && qcow2_pread_padded(src->s, src->win, n, pos, src->file_size, errp) < 0)
        return -1;
    src->win_off = off;
    src->win_len = n;
    return 0;
}

/* Copies len (<= SNAP_WINDOW) bytes at offset off of the table into out. */
static int snap_bytes(struct snap_source *src, uint64_t off, uint64_t len, void *out,
                      GError **errp)
{
    if (len == 0)
        return 0;
    bool inside = off >= src->win_off && off - src->win_off <= src->win_len &&
                  len <= src->win_len - (off - src->win_off);
    if (!inside) {
        if (snap_fill(src, off, errp) < 0)
            return -1;
        if (len > src->win_len)
            return snap_truncated(errp);
    }
    memcpy(out, src->win + (off - src->win_off), len);
    return 0;
}

/* The extra data of entry idx at off: the known fields, and what follows
 * them, kept.  More than qemu's maximum is refused, except when
 * repairing, where qemu keeps the first QCOW2_MAX_SNAPSHOT_EXTRA bytes. */
static int parse_snapshot_extra(struct snap_source *src, uint64_t off, uint32_t idx,
                                struct qcow2_snapshot *sn, GError **errp)
{
    struct qcow2 *s = src->s;
    uint8_t buf[QCOW2_MAX_SNAPSHOT_EXTRA];
    uint32_t keep = sn->extra_size;
    if (sn->extra_size > QCOW2_MAX_SNAPSHOT_EXTRA) {
        if (!snapshot_repairing(s))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Too much extra metadata in snapshot table entry %" PRIu32,
                                     idx);
        diskimg_report("Discarding too much extra metadata in snapshot table entry %" PRIu32
                       " (%" PRIu32 " > %u)", idx, sn->extra_size, QCOW2_MAX_SNAPSHOT_EXTRA);
        s->snap_repairs++;
        keep = QCOW2_MAX_SNAPSHOT_EXTRA;
    }
    if (snap_bytes(src, off, keep, buf, errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(buf, keep, DISKIMG_BIG_ENDIAN, NULL,
                                                  "snapshot extra data");
    if (keep >= 8)
        diskimg_read_u64(&r, 0, "vm_state_size", &sn->vm_state_size, NULL);
    if (keep >= 16)
        diskimg_read_u64(&r, 8, "disk_size", &sn->disk_size, NULL);
    else
        sn->disk_size = s->h.size;
    if (keep >= 24) {
        diskimg_read_u64(&r, 16, "icount", &sn->icount, NULL);
        sn->has_icount = sn->icount != UINT64_MAX;
    }
    if (keep > 24) {
        sn->extra_unknown = keep - 24;
        sn->extra = g_memdup2(buf + 24, sn->extra_unknown);
    }
    return 0;
}

/* The ID and the name, which follow the extra data (as C strings: an
 * embedded NUL ends them, as in qemu). */
static int parse_snapshot_names(struct snap_source *src, uint64_t off, uint16_t id_len,
                                uint16_t name_len, struct qcow2_snapshot *sn, GError **errp)
{
    uint64_t n = (uint64_t)id_len + name_len;
    g_autofree uint8_t *buf = g_malloc(MAX(n, 1));
    if (snap_bytes(src, off, n, buf, errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(buf, n, DISKIMG_BIG_ENDIAN, NULL,
                                                  "snapshot names");
    sn->id = diskimg_read_string(&r, 0, id_len, "id_str", NULL);
    sn->name = diskimg_read_string(&r, id_len, name_len, "name", NULL);
    return 0;
}

/* The L1 table of a snapshot.  Opened for check, an unaligned, too large
 * or unreadable one is left to check to report (qemu opens such images
 * and its check reports them). */
static int check_snapshot_l1(const struct qcow2 *s, const struct qcow2_snapshot *sn,
                             GError **errp)
{
    if (s->check_open)
        return 0;
    if (sn->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Snapshot L1 table too large");
    if (!table_ok(sn->l1_offset, sn->l1_size, 8, s->cluster_size))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Snapshot L1 table offset invalid");
    return 0;
}

/* Entry idx at *pos: *end is where it ends, *pos where the next starts,
 * *len its length with the extra data as kept. */
static int parse_snapshot(struct snap_source *src, uint32_t idx, uint64_t *pos,
                          struct qcow2_snapshot *sn, uint64_t *end, uint64_t *len,
                          GError **errp)
{
    uint8_t head[40];
    uint64_t off = *pos;
    uint16_t id_len = 0, name_len = 0;
    uint32_t vm32;
    if (snap_bytes(src, off, sizeof(head), head, errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(head, sizeof(head), DISKIMG_BIG_ENDIAN, NULL,
                                                  "snapshot table entry");
    diskimg_read_u64(&r, 0, "l1_offset", &sn->l1_offset, NULL);
    diskimg_read_u32(&r, 8, "l1_size", &sn->l1_size, NULL);
    diskimg_read_u16(&r, 12, "id_len", &id_len, NULL);
    diskimg_read_u16(&r, 14, "name_len", &name_len, NULL);
    diskimg_read_u32(&r, 16, "date_sec", &sn->date_sec, NULL);
    diskimg_read_u32(&r, 20, "date_nsec", &sn->date_nsec, NULL);
    diskimg_read_u64(&r, 24, "vm_clock_nsec", &sn->vm_clock_nsec, NULL);
    diskimg_read_u32(&r, 32, "vm32", &vm32, NULL);
    diskimg_read_u32(&r, 36, "extra_size", &sn->extra_size, NULL);
    sn->vm_state_size = vm32;
    off += 40;
    if (parse_snapshot_extra(src, off, idx, sn, errp) < 0)
        return -1;
    off += sn->extra_size;
    if (parse_snapshot_names(src, off, id_len, name_len, sn, errp) < 0)
        return -1;
    off += (uint64_t)id_len + name_len;
    *end = off;
    *len = 40 + (uint64_t)MIN(sn->extra_size, QCOW2_MAX_SNAPSHOT_EXTRA) + id_len + name_len;
    *pos = (off + 7) & ~7ull;
    return check_snapshot_l1(src->s, sn, errp);
}

static void snapshot_entry_free(struct qcow2_snapshot *sn)
{
    g_free(sn->id);
    g_free(sn->name);
    g_free(sn->extra);
    memset(sn, 0, sizeof(*sn));
}

/* Entries past qemu's maximum table size: refused, or, when repairing,
 * dropped as qemu drops them (their clusters become leaks that the
 * refcount repair frees). */
static int overhanging_snapshots(struct qcow2 *s, uint32_t i, GError **errp)
{
    if (!snapshot_repairing(s))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Snapshot table exceeds the maximum size");
    uint32_t n = s->nb_snapshots;
    diskimg_report("Discarding %" PRIu32 " overhanging snapshots (snapshot table is too big)",
                   n - i);
    s->snap_repairs += n - i;
    for (uint32_t j = i; j < n; j++)
        snapshot_entry_free(&s->snapshots[j]);
    s->nb_snapshots = i;
    return 0;
}

static int parse_snapshots(struct qcow2 *s, struct snap_source *src, GError **errp)
{
    uint32_t n = s->h.nb_snapshots;
    s->snapshots = g_new0(struct qcow2_snapshot, n);
    s->nb_snapshots = n;
    uint64_t pos = 0, end = 0, table_len = 0;
    int ret = 0;
    for (uint32_t i = 0; i < n && ret == 0; i++) {
        uint64_t entry_end = 0, entry_len = 0;
        ret = parse_snapshot(src, i, &pos, &s->snapshots[i], &entry_end, &entry_len, errp);
        table_len = ((table_len + 7) & ~7ull) + entry_len;
        if (ret == 0 && (table_len > QCOW2_MAX_SNAPSHOT_TABLE || entry_end > INT32_MAX)) {
            ret = overhanging_snapshots(s, i, errp);
            break;
        }
        end = entry_end;
    }
    s->snapshots_size = end;
    return ret;
}

int qcow2_snapshots_load(struct qcow2 *s, GError **errp)
{
    uint32_t n = s->h.nb_snapshots;
    /* qemu validates the offset even of an empty table (aligned, and the
     * table must end before 2^63) */
    if (n == 0)
        return s->h.snapshots_offset & ((s->cluster_size - 1) | (1ull << 63))
               ? diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Snapshot table offset invalid") : 0;
    int64_t fsize = diskimg_node_size(s->file, errp);
    if (fsize < 0)
        return -1;
    /* Every entry takes at least 40 bytes: a count the file cannot hold is
     * refused before the entries are allocated (check reads zeroes past
     * the end, as qemu, so it only has the count's own cap). */
    uint64_t avail = s->h.snapshots_offset < (uint64_t)fsize
                     ? (uint64_t)fsize - s->h.snapshots_offset : 0;
    if (!s->check_open && (uint64_t)n * 40 > avail)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Snapshot table (%" PRIu32 " entries at offset %#" PRIx64
                                 ") lies beyond the end of the file", n,
                                 s->h.snapshots_offset);
    struct snap_source src = { .s = s, .file_size = (uint64_t)fsize,
                               .padded = s->check_open };
    src.win = g_try_malloc(SNAP_WINDOW);
    if (!src.win)
        return qcow2_enomem(errp);
    int ret = parse_snapshots(s, &src, errp);
    g_free(src.win);
    return ret;
}

/* ------------------------------------------------------- bitmaps */

/* qemu's check_dir_entry: the constraints every directory entry meets. */
static bool bitmap_entry_ok(const struct qcow2 *s, const struct qcow2_bitmap *bm)
{
    if (bm->table_size == 0 || bm->table_offset == 0 ||
        (bm->table_offset & (s->cluster_size - 1)) || bm->table_size > QCOW2_BME_MAX_TABLE ||
        bm->granularity_bits > 31 || bm->granularity_bits < 9 ||
        (bm->flags & QCOW2_BME_RESERVED) || bm->type != 1)
        return false;
    uint64_t phys = (uint64_t)bm->table_size << s->cluster_bits;
    if (phys > QCOW2_BME_MAX_PHYS || !table_ok(bm->table_offset, bm->table_size, 8,
                                               s->cluster_size))
        return false;
    /* a consistent bitmap must cover the whole disk */
    return (bm->flags & QCOW2_BME_IN_USE) || s->h.size <= ((phys * 8) << bm->granularity_bits);
}

static int parse_bitmap(struct qcow2 *s, const struct diskimg_reader *r, uint64_t *pos,
                        struct qcow2_bitmap *bm, GError **errp)
{
    uint64_t off = *pos;
    uint16_t name_len = 0;
    uint32_t extra_size = 0;
    if (!diskimg_reader_has(r, off, 24))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Broken bitmap directory");
    diskimg_read_u64(r, off, "table_offset", &bm->table_offset, NULL);
    diskimg_read_u32(r, off + 8, "table_size", &bm->table_size, NULL);
    diskimg_read_u32(r, off + 12, "flags", &bm->flags, NULL);
    diskimg_read_u8(r, off + 16, "type", &bm->type, NULL);
    diskimg_read_u8(r, off + 17, "granularity_bits", &bm->granularity_bits, NULL);
    diskimg_read_u16(r, off + 18, "name_len", &name_len, NULL);
    diskimg_read_u32(r, off + 20, "extra_size", &extra_size, NULL);
    uint64_t end = (off + 24 + (uint64_t)extra_size + name_len + 7) & ~7ull;
    if (end > r->len)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Broken bitmap directory");
    if (extra_size != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Bitmap extra data is not supported");
    /* as qemu reads it: the name ends at its first NUL, if any */
    bm->name = diskimg_read_string(r, off + 24, name_len, "name", NULL);
    if (name_len > QCOW2_BME_MAX_NAME || !bitmap_entry_ok(s, bm))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Bitmap '%s' doesn't satisfy the constraints", bm->name);
    bm->enabled = bm->flags & QCOW2_BME_AUTO;
    bm->inconsistent = bm->flags & QCOW2_BME_IN_USE;
    *pos = end;
    return 0;
}

static int check_bitmap_names(const struct qcow2 *s, GError **errp)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (uint32_t i = 0; i < s->nb_bitmaps; i++) {
        if (!g_hash_table_add(seen, s->bitmaps[i].name))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "Bitmap already exists: %s", s->bitmaps[i].name);
    }
    return 0;
}

int qcow2_bitmaps_load(struct qcow2 *s, GError **errp)
{
    if (!s->h.has_bitmaps_ext)
        return 0;
    if (s->h.bitmap_dir_size == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "Requested bitmap directory size is zero");
    void *buf;
    if (diskimg_load_table(s->file, s->h.bitmap_dir_offset, s->h.bitmap_dir_size, 1,
                           QCOW2_MAX_BITMAP_DIR, "bitmap directory", &buf, errp) < 0)
        return -1;
    struct diskimg_reader r = diskimg_reader_make(buf, s->h.bitmap_dir_size, DISKIMG_BIG_ENDIAN,
                                                  NULL, "bitmap directory");
    uint32_t n = s->h.nb_bitmaps;
    s->bitmaps = g_new0(struct qcow2_bitmap, n);
    uint64_t pos = 0;
    int ret = 0;
    while (ret == 0 && pos < r.len) {
        if (s->nb_bitmaps == n) {
            ret = diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                    "More bitmaps found than specified in header extension");
            break;
        }
        ret = parse_bitmap(s, &r, &pos, &s->bitmaps[s->nb_bitmaps++], errp);
    }
    if (ret == 0 && s->nb_bitmaps != n)
        ret = diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                "Less bitmaps found than specified in header extension");
    if (ret == 0)
        ret = check_bitmap_names(s, errp);
    g_free(buf);
    return ret;
}

int qcow2_header_update(struct qcow2 *s, GError **errp)
{
    if (qcow2_header_write(s, errp) < 0)
        return -1;
    return diskimg_node_flush(s->file, errp);
}
