/* SPDX-License-Identifier: MIT */
/*
 * raw.c — the "raw" format: the image is the file's bytes, optionally a
 * window of them (open options offset= and size=), as qemu's
 * block/raw-format.c.
 *
 * Thread model: PARALLEL.  The handle is read-only after open except for
 * a hint of the file's size, which is read and written atomically; every
 * request passes straight to the file node, whose own thread model rules.
 *
 * Sizes follow qemu 7.2, which counts lengths in 512-byte sectors: a file
 * of 1000 bytes is an image of 1024 bytes whose last 24 read as zeroes
 * and are created by the first write that touches them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <diskimg/plugin.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char raw_schema_yaml[];

#define SECTOR 512u
/* qemu's allocate_first_block: 4 KiB, or one sector for tiny images. */
#define FIRST_BLOCK 4096u

struct raw_state {
    diskimg_node *file;
    uint64_t offset;           /* where the image starts in the file */
    uint64_t size;             /* window size, valid with has_size */
    bool has_size;
    uint64_t file_size_hint;   /* last known file size (atomic); see file_size() */
    bool probed;               /* format guessed by probing: guard block 0 */
    GMutex block0_lock;        /* orders checked writes into the probe window */
};

/* ---------------------------------------------------------------- helpers */

static bool round_up_sector(uint64_t v, uint64_t *out)
{
    if (v > UINT64_MAX - (SECTOR - 1))
        return false;
    *out = (v + SECTOR - 1) / SECTOR * SECTOR;
    return true;
}

static uint64_t hint_get(struct raw_state *s)
{
    return __atomic_load_n(&s->file_size_hint, __ATOMIC_RELAXED);
}

static void hint_set(struct raw_state *s, uint64_t v)
{
    __atomic_store_n(&s->file_size_hint, v, __ATOMIC_RELAXED);
}

/* Raises the hint to at least v (after a write that may extend the file). */
static void hint_raise(struct raw_state *s, uint64_t v)
{
    uint64_t cur = hint_get(s);

    while (cur < v &&
           !__atomic_compare_exchange_n(&s->file_size_hint, &cur, v, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        ;
}

/* The file's current size, asking the file node for it. */
static int file_size_now(struct raw_state *s, uint64_t *size, GError **errp)
{
    int64_t n = diskimg_node_size(s->file, errp);

    if (n < 0)
        return -1;
    hint_set(s, (uint64_t)n);
    *size = (uint64_t)n;
    return 0;
}

/*
 * The file's size as far as a request ending at file offset `end` needs
 * it: the hint when the request lies inside it (the common case costs no
 * system call), the file node's answer otherwise.
 */
static int file_size(struct raw_state *s, uint64_t end, uint64_t *size, GError **errp)
{
    uint64_t hint = hint_get(s);

    if (end <= hint) {
        *size = hint;
        return 0;
    }
    return file_size_now(s, size, errp);
}

/* The virtual size for a file of fsize bytes (qemu's raw_getlength, then
 * rounded to whole sectors as qemu's block layer does). */
static uint64_t virtual_size(const struct raw_state *s, uint64_t fsize)
{
    uint64_t len, v, rounded;

    if (!round_up_sector(fsize, &len))
        len = fsize;
    v = len < s->offset ? 0 : len - s->offset;
    if (s->has_size)
        v = MIN(v, s->size);
    return round_up_sector(v, &rounded) ? rounded : v;
}

/*
 * Validates a request [off, off+len) of the image and maps it into the
 * file: *fo is the file offset, *fsize the file's size.  Like qemu, a
 * write past a fixed size= window is "No space left on device", anything
 * else out of range is invalid.
 */
static int map_request(struct raw_state *s, uint64_t off, uint64_t len, bool write,
                       uint64_t *fo, uint64_t *fsize, GError **errp)
{
    uint64_t end;

    if (len > UINT64_MAX - off || off + len > (uint64_t)INT64_MAX - s->offset) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Request at offset %" PRIu64 " is out of range", off);
        return -1;
    }
    end = off + len;
    if (s->has_size && end > s->size) {
        if (write)
            diskimg_set_errno(errp, ENOSPC, "Cannot write beyond the image size %" PRIu64,
                              s->size);
        else
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                        "Cannot read beyond the image size %" PRIu64, s->size);
        return -1;
    }
    if (file_size(s, s->offset + end, fsize, errp) < 0)
        return -1;
    if (end > virtual_size(s, *fsize)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Request at offset %" PRIu64 " length %" PRIu64
                    " is beyond the end of the image", off, len);
        return -1;
    }
    *fo = s->offset + off;
    return 0;
}

/* How many of len bytes at file offset fo lie before EOF. */
static uint64_t inside_file(uint64_t fo, uint64_t len, uint64_t fsize)
{
    return fo >= fsize ? 0 : MIN(len, fsize - fo);
}

/* ---------------------------------------------------------------- probing */

/*
 * qemu's rule for images probed as raw: a write must not make the first
 * bytes look like another format (or the next open would interpret guest
 * data as image metadata).  Writes into the probe window of a probed image
 * are checked and made under one lock, so two of them cannot race past the
 * check; every other write runs in parallel as before.  buf NULL: zeroes.
 */
typedef int (*raw_file_op)(struct raw_state *s, const void *buf, uint64_t fo, uint64_t len,
                           unsigned flags, GError **errp);

/* Formats known by a trailer (a fixed VHD's footer) are probed from the
 * file's last bytes, so writes reaching them are checked as well.  A size
 * that cannot be read counts as "near": the check then decides. */
static bool near_file_end(struct raw_state *s, uint64_t fo, uint64_t len)
{
    int64_t size = diskimg_node_size(s->file, NULL);
    return size < 0 || fo + len + DISKIMG_PROBE_TAIL_LEN > (uint64_t)size;
}

static int guarded(struct raw_state *s, raw_file_op op, const void *buf, uint64_t fo,
                   uint64_t len, unsigned flags, GError **errp)
{
    int ret;

    if (!s->probed || (fo >= DISKIMG_PROBE_MAX_LEN && !near_file_end(s, fo, len)))
        return op(s, buf, fo, len, flags, errp);
    g_mutex_lock(&s->block0_lock);
    ret = diskimg_probed_write_check(s->file, fo, buf, len, errp);
    if (ret == 0)
        ret = op(s, buf, fo, len, flags, errp);
    g_mutex_unlock(&s->block0_lock);
    return ret;
}

/*
 * Raw has no magic: like qemu's raw_probe it claims every file with the
 * lowest positive score, so it wins only when no other format does.  The
 * schema's probe-fallback flag tells the core that such a win is a
 * fallback (qemu's "probing guessed raw" warning and write restrictions).
 */
static int raw_probe(const uint8_t *buf, size_t len, const char *filename)
{
    (void)buf;
    (void)len;
    (void)filename;
    return 1;
}

/* ---------------------------------------------------------------- opening */

static const diskimg_options *open_options(const struct diskimg_format_open_args *args)
{
    if (args->struct_size < offsetof(struct diskimg_format_open_args, options) +
                            sizeof(args->options))
        return NULL;
    return args->options;
}

/* qemu's raw_apply_options, with its messages (the double space too). */
static int check_window(const struct raw_state *s, uint64_t fsize, GError **errp)
{
    uint64_t real;

    if (!round_up_sector(fsize, &real))
        real = fsize;
    if (s->offset > real) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Offset (%" PRIu64 ") cannot be greater than size of the containing "
                    "file (%" PRIu64 ")", s->offset, real);
        return -1;
    }
    if (s->has_size && real - s->offset < s->size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "The sum of offset (%" PRIu64 ") and size (%" PRIu64 ") has to be "
                    "smaller or equal to the  actual size of the containing file (%" PRIu64 ")",
                    s->offset, s->size, real);
        return -1;
    }
    /* A size that is not whole sectors would be rounded up and leak out
     * of the window. */
    if (s->has_size && s->size % SECTOR != 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Specified size is not multiple of %u", SECTOR);
        return -1;
    }
    return 0;
}

static void raw_close(void *h)
{
    struct raw_state *s = h;

    g_mutex_clear(&s->block0_lock);
    g_free(s);
}

static void *raw_open(const struct diskimg_format_open_args *args, GError **errp)
{
    const diskimg_options *o = open_options(args);
    struct raw_state *s;
    uint64_t fsize;

    if (!args->file) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "raw: no file to open");
        return NULL;
    }
    s = g_new0(struct raw_state, 1);
    s->file = args->file;
    s->probed = args->flags & DISKIMG_OPEN_PROBED;
    g_mutex_init(&s->block0_lock);
    if (o) {
        s->offset = diskimg_options_get_uint(o, "offset", 0);
        s->has_size = diskimg_options_has(o, "size");
        s->size = diskimg_options_get_uint(o, "size", 0);
    }
    if (s->offset > (uint64_t)INT64_MAX || s->size > (uint64_t)INT64_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "offset and size must be smaller than 2^63");
        g_free(s);
        return NULL;
    }
    if (file_size_now(s, &fsize, errp) < 0 || check_window(s, fsize, errp) < 0) {
        raw_close(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------------- data */

static int64_t raw_get_size(void *h, GError **errp)
{
    struct raw_state *s = h;
    uint64_t fsize;

    if (file_size_now(s, &fsize, errp) < 0)
        return -1;
    return (int64_t)virtual_size(s, fsize);
}

static int raw_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct raw_state *s = h;
    uint64_t fo, fsize, in;

    if (map_request(s, offset, len, false, &fo, &fsize, errp) < 0)
        return -1;
    /* The tail of the last sector past EOF reads as zeroes. */
    in = inside_file(fo, len, fsize);
    if (in > 0 && diskimg_node_pread(s->file, buf, in, fo, errp) < 0)
        return -1;
    if (in < len)
        memset((uint8_t *)buf + in, 0, len - in);
    return 0;
}

static int file_write(struct raw_state *s, const void *buf, uint64_t fo, uint64_t len,
                      unsigned flags, GError **errp)
{
    return diskimg_node_pwrite(s->file, buf, len, fo, flags, errp);
}

static int file_write_zeroes(struct raw_state *s, const void *buf, uint64_t fo, uint64_t len,
                             unsigned flags, GError **errp)
{
    (void)buf;
    return diskimg_node_write_zeroes(s->file, fo, len, flags, errp);
}

static int file_discard(struct raw_state *s, const void *buf, uint64_t fo, uint64_t len,
                        unsigned flags, GError **errp)
{
    (void)buf;
    (void)flags;
    return diskimg_node_discard(s->file, fo, len, errp);
}

static int raw_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
                     GError **errp)
{
    struct raw_state *s = h;
    uint64_t fo, fsize;

    if (map_request(s, offset, len, true, &fo, &fsize, errp) < 0)
        return -1;
    if (len == 0)
        return 0;
    if (guarded(s, file_write, buf, fo, len, flags, errp) < 0)
        return -1;
    hint_raise(s, fo + len);
    return 0;
}

/* Zeroes and discards stop at EOF: what lies past it reads as zeroes. */
static int raw_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags,
                            GError **errp)
{
    struct raw_state *s = h;
    uint64_t fo, fsize, in;

    if (map_request(s, offset, len, true, &fo, &fsize, errp) < 0)
        return -1;
    in = inside_file(fo, len, fsize);
    return in > 0 ? guarded(s, file_write_zeroes, NULL, fo, in, flags, errp) : 0;
}

static int raw_discard(void *h, uint64_t offset, uint64_t len, GError **errp)
{
    struct raw_state *s = h;
    uint64_t fo, fsize, in;

    if (map_request(s, offset, len, true, &fo, &fsize, errp) < 0)
        return -1;
    in = inside_file(fo, len, fsize);
    /* A discarded range may read as zeroes afterwards. */
    return in > 0 ? guarded(s, file_discard, NULL, fo, in, 0, errp) : 0;
}

static int raw_flush(void *h, GError **errp)
{
    struct raw_state *s = h;

    return diskimg_node_flush(s->file, errp);
}

/*
 * The file's own data/zero status, shifted by the window offset.  Every
 * byte of a raw image is defined by it (ALLOCATED, qemu's map shows depth
 * 0 "present") and lives at a known place in the file (OFFSET_VALID).
 */
static int raw_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                            GError **errp)
{
    struct raw_state *s = h;
    struct diskimg_extent fext = { .struct_size = sizeof(fext) };
    uint64_t fo, fsize, in;

    if (len == 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Empty block status request at offset %" PRIu64, offset);
        return -1;
    }
    if (map_request(s, offset, len, false, &fo, &fsize, errp) < 0)
        return -1;
    in = inside_file(fo, len, fsize);
    if (in == 0) {
        /* Past EOF, inside the last sector: zeroes. */
        fext.flags = DISKIMG_BS_ZERO;
        fext.length = len;
    } else {
        if (diskimg_node_block_status(s->file, fo, in, &fext, errp) < 0)
            return -1;
        if (fext.length == 0) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                        "Block status of the file at offset %" PRIu64 " is empty", fo);
            return -1;
        }
        fext.length = MIN(fext.length, in);
    }
    ext->flags = (fext.flags & (DISKIMG_BS_DATA | DISKIMG_BS_ZERO));
    if (!ext->flags)
        ext->flags = DISKIMG_BS_DATA;
    ext->flags |= DISKIMG_BS_OFFSET_VALID | DISKIMG_BS_ALLOCATED;
    ext->length = fext.length;
    ext->offset = fo;
    ext->file = s->file;
    return 0;
}

static int raw_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                        GError **errp)
{
    struct raw_state *s = h;

    if (s->has_size) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Cannot resize fixed-size raw disks");
        return -1;
    }
    if (size > (uint64_t)INT64_MAX - s->offset) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Disk size too large for the chosen offset");
        return -1;
    }
    if (diskimg_node_truncate(s->file, size + s->offset, prealloc, flags, errp) < 0) {
        uint64_t ignored;

        /* The file may have changed partly; re-learn its size. */
        (void)file_size_now(s, &ignored, NULL);
        return -1;
    }
    hint_set(s, size + s->offset);
    return 0;
}

/* ---------------------------------------------------------------- info */

static int raw_info(void *h, struct diskimg_image_info *info, diskimg_obj *specific,
                    GError **errp)
{
    (void)h;
    (void)specific;   /* qemu shows no format-specific data for raw */
    (void)errp;
    if (info && info->struct_size >= offsetof(struct diskimg_image_info, cluster_size) +
                                      sizeof(info->cluster_size))
        info->cluster_size = 0;
    return 0;
}

/* qemu's raw_measure: every sector of the virtual disk is stored, so
 * required = fully allocated = the virtual size in whole sectors. */
static int raw_measure(const struct diskimg_measure_args *args,
                       struct diskimg_measure_result *res, GError **errp)
{
    uint64_t size = args->size;

    if (args->source) {
        int64_t n = diskimg_node_size(args->source, errp);

        if (n < 0) {
            g_prefix_error(errp, "Unable to get image size: ");
            return -1;
        }
        size = (uint64_t)n;
    }
    if (!round_up_sector(size, &size)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Image size too large");
        return -1;
    }
    res->required = size;
    res->fully_allocated = size;
    res->bitmaps = 0;
    res->has_bitmaps = false;
    return 0;
}

/* ----------------------------------------------------------------- create */

static int create_prealloc(const struct diskimg_format_create_args *args,
                           enum diskimg_prealloc *prealloc, GError **errp)
{
    const char *mode = NULL;

    if (args->struct_size >= offsetof(struct diskimg_format_create_args, options) +
                             sizeof(args->options) && args->options)
        mode = diskimg_options_get_str(args->options, "preallocation");
    *prealloc = DISKIMG_PREALLOC_OFF;
    if (mode && diskimg_prealloc_parse(mode, prealloc, errp) < 0)
        return -1;
    if (*prealloc == DISKIMG_PREALLOC_METADATA) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Unsupported preallocation mode: metadata");
        return -1;
    }
    return 0;
}

/*
 * qemu writes zeroes over the first block of a file it grows from empty,
 * so that O_DIRECT alignment probing later finds real data; qemu-img map
 * of a new raw image shows it as data.  Skipped when the file node already
 * reports data there (the posix backend does this itself on truncate, and
 * a block device must not be written).
 */
static int allocate_first_block(diskimg_node *file, uint64_t size, GError **errp)
{
    uint64_t n = MIN(size < FIRST_BLOCK ? SECTOR : FIRST_BLOCK, size);
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    void *zeroes;
    int ret;

    if (diskimg_node_block_status(file, 0, n, &ext, NULL) == 0 &&
        (ext.flags & DISKIMG_BS_DATA) && ext.length >= n)
        return 0;
    zeroes = diskimg_alloc_aligned(FIRST_BLOCK);
    if (!zeroes) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_MEMORY, "Out of memory");
        return -1;
    }
    memset(zeroes, 0, FIRST_BLOCK);
    ret = diskimg_node_pwrite(file, zeroes, n, 0, 0, errp);
    diskimg_free_aligned(zeroes);
    return ret;
}

/* Creating a raw image only sizes the file: sizes are whole sectors, as
 * qemu's file driver rounds them. */
static int raw_create(const struct diskimg_format_create_args *args, GError **errp)
{
    enum diskimg_prealloc prealloc;
    uint64_t size;

    if (!round_up_sector(args->size, &size) || size > (uint64_t)INT64_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Image size too large");
        return -1;
    }
    if (create_prealloc(args, &prealloc, errp) < 0)
        return -1;
    if (diskimg_node_truncate(args->file, size, prealloc, 0, errp) < 0)
        return -1;
    if (size > 0 && prealloc != DISKIMG_PREALLOC_FULL)
        return allocate_first_block(args->file, size, errp);
    return 0;
}

/* ------------------------------------------------------------- descriptor */

static const struct diskimg_format_ops raw_ops = {
    .struct_size = sizeof(struct diskimg_format_ops),
    .probe = raw_probe,
    .open = raw_open,
    .close = raw_close,
    .create = raw_create,
    .get_size = raw_get_size,
    .read = raw_read,
    .write = raw_write,
    .write_zeroes = raw_write_zeroes,
    .discard = raw_discard,
    .flush = raw_flush,
    .block_status = raw_block_status,
    .truncate = raw_truncate,
    .info = raw_info,
    .measure = raw_measure,
};

static const struct diskimg_plugin raw_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_FORMAT,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "raw",
    .version = PLUGIN_VERSION,
    .summary = "Raw disk image: the file's bytes are the disk's bytes",
    .schema = raw_schema_yaml,
    .capabilities = DISKIMG_CAP_ZERO_INIT | DISKIMG_CAP_PROBE_GUARD,
    .ops = &raw_ops,
};

DISKIMG_PLUGIN_DEFINE(raw_plugin)
