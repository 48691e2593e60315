/* SPDX-License-Identifier: MIT */
/*
 * create.c — image creation (qemu's layout: header, refcount table,
 * refcount block, then the L1 table), preallocation and qemu's size
 * measurement formula.
 */
#include <string.h>

#include "qcow2.h"

struct create_opts {
    uint32_t version;
    uint64_t size;
    uint64_t cluster_size;
    uint32_t cluster_bits;
    uint32_t refcount_order;
    bool lazy, ext_l2, data_raw;
    uint8_t compression;
    uint32_t crypt_method;  /* QCOW2_CRYPT_* */
    const char *backing_file, *backing_fmt, *data_file;
    enum diskimg_prealloc prealloc;
};

static int parse_version(const diskimg_options *o, uint32_t *version, GError **errp)
{
    const char *compat = o ? diskimg_options_get_str(o, "compat") : NULL;
    if (!compat || g_str_equal(compat, "1.1") || g_str_equal(compat, "v3"))
        *version = 3;
    else if (g_str_equal(compat, "0.10") || g_str_equal(compat, "v2"))
        *version = 2;
    else
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid compatibility level");
    return 0;
}

static int parse_refcount(const diskimg_options *o, uint32_t version, uint32_t *order,
                          GError **errp)
{
    uint64_t bits = o ? diskimg_options_get_uint(o, "refcount_bits", 16) : 16;
    if (bits == 0 || bits > 64 || (bits & (bits - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Refcount width must be a power of two and may not exceed "
                                 "64 bits");
    if (version < 3 && bits != 16)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Different refcount widths than 16 bits require compatibility "
                                 "level 1.1 or above (use version=v3 or greater)");
    *order = (uint32_t)__builtin_ctzll(bits);
    return 0;
}

/* Options shared by create and measure. */
static int parse_common(const diskimg_options *o, struct create_opts *c, GError **errp)
{
    memset(c, 0, sizeof(*c));
    if (parse_version(o, &c->version, errp) < 0 ||
        parse_refcount(o, c->version, &c->refcount_order, errp) < 0)
        return -1;
    c->cluster_size = o ? diskimg_options_get_uint(o, "cluster_size", 65536) : 65536;
    if (c->cluster_size < 512 || c->cluster_size > (2u << 20) ||
        (c->cluster_size & (c->cluster_size - 1)))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Cluster size must be a power of two between 512 and 2048k");
    c->cluster_bits = (uint32_t)__builtin_ctzll(c->cluster_size);
    c->ext_l2 = o && diskimg_options_get_bool(o, "extended_l2", false);
    if (c->ext_l2 && c->version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Extended L2 entries are only supported with compatibility level "
                                 "1.1 and above (use version=v3 or greater)");
    if (c->ext_l2 && c->cluster_size < 16384)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Extended L2 entries are only supported with cluster sizes of at "
                                 "least 16384 bytes");
    const char *p = o ? diskimg_options_get_str(o, "preallocation") : NULL;
    c->prealloc = DISKIMG_PREALLOC_OFF;
    if (p && diskimg_prealloc_parse(p, &c->prealloc, errp) < 0)
        return -1;
    c->backing_file = o ? diskimg_options_get_str(o, "backing_file") : NULL;
    c->backing_fmt = o ? diskimg_options_get_str(o, "backing_fmt") : NULL;
    return 0;
}

static int parse_create(const diskimg_options *o, struct create_opts *c, GError **errp)
{
    if (parse_common(o, c, errp) < 0)
        return -1;
    if (qcow2_crypto_parse_create(o, &c->crypt_method, errp) < 0)
        return -1;
    if (c->crypt_method && c->prealloc != DISKIMG_PREALLOC_OFF && c->version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Preallocation of encrypted images requires compatibility level "
                                 "1.1 or above (use version=v3 or greater)");
    c->lazy = o && diskimg_options_get_bool(o, "lazy_refcounts", false);
    if (c->lazy && c->version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Lazy refcounts only supported with compatibility level 1.1 and "
                                 "above (use version=v3 or greater)");
    const char *ct = o ? diskimg_options_get_str(o, "compression_type") : NULL;
    c->compression = ct && g_str_equal(ct, "zstd") ? QCOW2_COMPRESSION_ZSTD
                                                    : QCOW2_COMPRESSION_ZLIB;
    if (c->compression != QCOW2_COMPRESSION_ZLIB && c->version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Non-zlib compression type is only supported with compatibility "
                                 "level 1.1 and above (use version=v3 or greater)");
    c->data_file = o ? diskimg_options_get_str(o, "data_file") : NULL;
    c->data_raw = o && diskimg_options_get_bool(o, "data_file_raw", false);
    if (c->data_raw && !c->data_file)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "data-file-raw requires data-file");
    if (c->data_file && c->version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "External data files are only supported with compatibility level "
                                 "1.1 and above (use version=v3 or greater)");
    if (c->backing_fmt && !c->backing_file)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Backing format cannot be used without backing file");
    if (c->backing_file && c->data_raw)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Backing file and data-file-raw cannot be used at the same time");
    /* A raw data file is readable without the tables, but the tables are
     * still read: they must map it 1:1, so qemu preallocates them. */
    if (c->data_raw && c->prealloc == DISKIMG_PREALLOC_OFF)
        c->prealloc = DISKIMG_PREALLOC_METADATA;
    if (c->backing_file && c->prealloc != DISKIMG_PREALLOC_OFF && !c->ext_l2)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Backing file and preallocation can only be used at the same time "
                                 "if extended_l2 is on");
    return 0;
}

/* Checks the backing file opens (qemu's create does, unless -u). */
static int check_backing(const char *filename, struct create_opts *c, GError **errp)
{
    g_autofree char *path = diskimg_resolve_relative(filename, c->backing_file);
    struct diskimg_open_params p = { .struct_size = sizeof(p) };
    p.format = c->backing_fmt;
    p.flags = DISKIMG_OPEN_FORCE_SHARE | DISKIMG_OPEN_NO_IO;
    GError *err = NULL;
    diskimg_node *n = diskimg_open(path, &p, &err);
    if (!n) {
        g_set_error(errp, err->domain, err->code, "%s\nCould not open backing image.",
                    err->message);
        g_error_free(err);
        return -1;
    }
    const char *detected = diskimg_node_driver(n);
    int ret = 0;
    if (!c->backing_fmt) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Backing file specified without backing format\nDetected format of %s.",
                    detected);
        ret = -1;
    }
    diskimg_close(n);
    return ret;
}

static void initial_header(const struct create_opts *c, struct qcow2_header *h)
{
    memset(h, 0, sizeof(*h));
    h->version = c->version;
    h->cluster_bits = c->cluster_bits;
    h->reftable_offset = c->cluster_size;
    h->reftable_clusters = 1;
    h->refcount_order = c->refcount_order;
    h->header_length = c->version >= 3 ? QCOW2_HEADER_LEN_DEFAULT : QCOW2_V2_HEADER_LEN;
    if (c->ext_l2)
        h->incompat |= QCOW2_INCOMPAT_EXTL2;
    if (c->data_file)
        h->incompat |= QCOW2_INCOMPAT_DATA_FILE;
    if (c->compression != QCOW2_COMPRESSION_ZLIB)
        h->incompat |= QCOW2_INCOMPAT_COMPRESS;
    h->compression_type = c->compression;
    if (c->lazy)
        h->compat |= QCOW2_COMPAT_LAZY;
    if (c->data_raw)
        h->autoclear |= QCOW2_AUTOCLEAR_DATA_RAW;
    h->data_file = c->data_file ? g_strdup(c->data_file) : NULL;
}

/* Header at cluster 0, refcount table at 1, an empty refcount block at 2. */
static int write_skeleton(diskimg_node *file, const struct create_opts *c, GError **errp)
{
    struct qcow2_header h;
    uint64_t cs = c->cluster_size;
    uint8_t *buf = g_malloc0(3 * cs);
    initial_header(c, &h);
    int ret = qcow2_header_build(&h, buf, cs, errp);
    qcow2_header_clear(&h);
    if (ret == 0) {
        diskimg_put_be64(buf + cs, 2 * cs);
        ret = diskimg_node_pwrite(file, buf, 3 * cs, 0, 0, errp);
    }
    g_free(buf);
    return ret;
}

static int open_data_file(const struct diskimg_format_create_args *args,
                          const struct create_opts *c, GError **errp)
{
    if (!c->data_file)
        return 0;
    diskimg_node *d = diskimg_node_create_child(args->file, DISKIMG_CHILD_DATA_FILE,
                                                c->data_file, DISKIMG_CHILD_UNCOUNTED, errp);
    if (!d)
        return -1;
    enum diskimg_prealloc mode = c->data_raw ? c->prealloc : DISKIMG_PREALLOC_OFF;
    if (mode == DISKIMG_PREALLOC_METADATA)
        mode = DISKIMG_PREALLOC_OFF;
    return diskimg_node_truncate(d, c->size, mode, 0, errp);
}

static int set_backing(struct qcow2 *s, const struct create_opts *c, GError **errp)
{
    if (!c->backing_file)
        return 0;
    s->h.backing_file = g_strdup(c->backing_file);
    s->h.backing_fmt = c->backing_fmt ? g_strdup(c->backing_fmt) : NULL;
    return qcow2_header_write(s, errp);
}

static int finish_image(const struct diskimg_format_create_args *args,
                        const struct create_opts *c, GError **errp)
{
    struct qcow2 *s = qcow2_open_file(NULL, args->file, args->filename, DISKIMG_OPEN_RDWR,
                                      NULL, errp);
    if (!s)
        return -1;
    uint32_t shift = s->cluster_bits + s->l2_bits;
    uint64_t l1 = (c->size >> shift) + !!(c->size & ((1ull << shift) - 1));
    uint8_t v[8];
    diskimg_put_be64(v, c->size);
    /* The skeleton's three clusters get their refcounts (they are in use
     * already: not an allocation, which the overlap guard would refuse). */
    int ret = qcow2_update_refcount(s, 0, 3 * s->cluster_size, 1, errp);
    if (ret == 0)
        ret = qcow2_grow_l1(s, l1, errp);
    if (ret == 0)
        ret = diskimg_node_pwrite(s->file, v, 8, 24, 0, errp);
    if (ret == 0) {
        s->h.size = c->size;
        if (c->prealloc != DISKIMG_PREALLOC_OFF)
            ret = qcow2_preallocate(s, 0, c->size, c->prealloc, c->crypt_method != 0, errp);
    }
    if (ret == 0)
        ret = set_backing(s, c, errp);
    /* last, as qemu: the encryption header follows the preallocated data */
    if (ret == 0)
        ret = qcow2_crypto_create(s, args->options, c->crypt_method, errp);
    if (ret == 0)
        ret = qcow2_flush_metadata(s, errp);
    qcow2_close(s);
    return ret;
}

int qcow2_create(const struct diskimg_format_create_args *args, GError **errp)
{
    struct create_opts c;
    if (parse_create(args->options, &c, errp) < 0)
        return -1;
    c.size = (args->size + 511) & ~511ull;
    if (c.backing_file && !(args->flags & DISKIMG_CREATE_UNSAFE) &&
        check_backing(args->filename, &c, errp) < 0)
        return -1;
    if (open_data_file(args, &c, errp) < 0 || write_skeleton(args->file, &c, errp) < 0)
        return -1;
    return finish_image(args, &c, errp);
}

/* ------------------------------------------------------------ preallocation */

/* Maps every unallocated cluster of [from, to) to a new host cluster. */
static int prealloc_table(struct qcow2 *s, uint64_t from, uint64_t to, bool zero,
                          GError **errp)
{
    uint8_t *l2;
    uint64_t idx;
    if (qcow2_l2_table(s, from, true, &l2, &idx, errp) < 0)
        return -1;
    uint64_t n = qcow2_size_to_clusters(s, to - from), host = 0;
    int ret = 0;
    if (!s->ext_data)
        ret = qcow2_alloc_clusters(s, n, &host, errp);
    for (uint64_t i = 0; ret == 0 && i < n; i++) {
        uint64_t h = s->ext_data ? from + (i << s->cluster_bits) : host + (i << s->cluster_bits);
        uint64_t e = (s->ext_data && h == 0 ? 0 : h) | QCOW2_OFLAG_COPIED;
        if (zero && !s->ext_l2)
            e |= QCOW2_OFLAG_ZERO;
        qcow2_l2_set(s, l2, idx + i, e, s->ext_l2 ? 0xffffffff00000000ull : 0);
    }
    /* Preallocated clusters read as zeroes: ext L2 marks them zero; plain
     * entries point at host clusters that are holes or zeroes (qemu), or,
     * when `zero`, carry the zero flag. */
    diskimg_mcache_mark_dirty(s->l2c, l2);
    diskimg_mcache_put(s->l2c, l2);
    return ret;
}

int qcow2_preallocate(struct qcow2 *s, uint64_t from, uint64_t size,
                      enum diskimg_prealloc mode, bool zero, GError **errp)
{
    if (zero && s->h.version < 3)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Preallocation of encrypted images requires compatibility level "
                                 "1.1 or above (use version=v3 or greater)");
    uint64_t span = s->l2_entries << s->cluster_bits;
    uint64_t off = (from + s->cluster_size - 1) & ~(s->cluster_size - 1);
    while (off < size) {
        uint64_t end = MIN(size, (off & ~(span - 1)) + span);
        if (prealloc_table(s, off, end, zero, errp) < 0)
            return -1;
        off = (end + s->cluster_size - 1) & ~(s->cluster_size - 1);
    }
    if (qcow2_flush_metadata(s, errp) < 0)
        return -1;
    uint64_t file_end = s->end_cluster << s->cluster_bits;
    int64_t cur = diskimg_node_size(s->file, errp);
    if (cur < 0)
        return -1;
    if (s->ext_data || (uint64_t)cur >= file_end)
        return 0;
    enum diskimg_prealloc fmode = mode == DISKIMG_PREALLOC_METADATA ? DISKIMG_PREALLOC_OFF : mode;
    return diskimg_node_truncate(s->file, file_end, fmode, 0, errp);
}

/* ------------------------------------------------------------ measure */

uint64_t qcow2_refcount_metadata_size(uint64_t clusters, uint64_t cluster_size,
                                      uint32_t refcount_order, bool generous,
                                      uint64_t *refblocks)
{
    uint64_t per_table_cluster = cluster_size / 8;
    uint64_t per_block = cluster_size * 8 / (1u << refcount_order);
    uint64_t table = 0, blocks = 0, n = 0, last;
    do {
        last = n;
        blocks = (clusters + table + blocks + per_block - 1) / per_block;
        table = (blocks + per_table_cluster - 1) / per_table_cluster;
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += (table + 1) / 2;
            n = 0;
            generous = false;
        }
    } while (n != last);
    if (refblocks)
        *refblocks = blocks;
    return (blocks + table) * cluster_size;
}

/* qemu's qcow2_calc_prealloc_size: every structure of a fully allocated image. */
static uint64_t prealloc_size(uint64_t total, uint64_t cs, uint32_t order, bool ext_l2)
{
    uint64_t aligned = (total + cs - 1) / cs * cs;
    uint64_t l2e = ext_l2 ? 16 : 8, meta = cs;
    uint64_t nl2e = aligned / cs;
    nl2e = (nl2e + cs / l2e - 1) / (cs / l2e) * (cs / l2e);
    meta += nl2e * l2e;
    uint64_t nl1e = nl2e * l2e / cs;
    nl1e = (nl1e + cs / 8 - 1) / (cs / 8) * (cs / 8);
    meta += nl1e * 8;
    meta += qcow2_refcount_metadata_size((meta + aligned) / cs, cs, order, false, NULL);
    return meta + aligned;
}

/* Bytes of the source that a copy would allocate, cluster-rounded. */
static int measure_source(diskimg_node *src, uint64_t ssize, uint64_t cs, uint64_t *required,
                          GError **errp)
{
    uint64_t off = 0;
    *required = 0;
    while (off < ssize) {
        struct diskimg_extent ext = { .struct_size = sizeof(ext) };
        if (diskimg_node_block_status_chain(src, off, ssize - off, &ext, NULL, errp) < 0)
            return -1;
        uint64_t n = ext.length;
        if (!(ext.flags & DISKIMG_BS_ZERO) && (ext.flags & DISKIMG_BS_DATA)) {
            n = (off + n + cs - 1) / cs * cs - off;
            *required += off % cs + n;
        }
        off += n;
    }
    return 0;
}

int qcow2_measure(const struct diskimg_measure_args *args, struct diskimg_measure_result *res,
                  GError **errp)
{
    struct create_opts c;
    if (parse_common(args->options, &c, errp) < 0)
        return -1;
    uint64_t cs = c.cluster_size;
    uint64_t vsize = (args->size + 511) & ~511ull, required = 0;
    uint64_t l2_tables = ((vsize + cs - 1) / cs + cs / 8 - 1) / (cs / 8);
    if (l2_tables * 8 > QCOW2_MAX_L1_BYTES)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "The image size is too large (try using a larger cluster size)");
    if (args->source) {
        int64_t ssize = diskimg_node_size(args->source, errp);
        if (ssize < 0)
            return -1;
        vsize = ((uint64_t)ssize + cs - 1) / cs * cs;
        if (c.backing_file)
            required = vsize;
        else if (measure_source(args->source, (uint64_t)ssize, cs, &required, errp) < 0)
            return -1;
    }
    if (c.prealloc == DISKIMG_PREALLOC_FULL || c.prealloc == DISKIMG_PREALLOC_FALLOC)
        required = vsize;
    uint64_t crypto_bytes;
    if (qcow2_crypto_measure(args->options, cs, &crypto_bytes, errp) < 0)
        return -1;
    res->fully_allocated = prealloc_size(vsize, cs, c.refcount_order, c.ext_l2) + crypto_bytes;
    res->required = res->fully_allocated - vsize + required;
    /* qemu: a v3 target of a source that can hold persistent bitmaps */
    res->has_bitmaps = c.version >= 3 && args->source &&
                       g_str_equal(diskimg_node_driver(args->source), "qcow2") &&
                       ((const struct qcow2 *)diskimg_node_handle(args->source))->h.version >= 3;
    res->bitmaps = res->has_bitmaps ? qcow2_bitmaps_measure(args->source, cs) : 0;
    return 0;
}
