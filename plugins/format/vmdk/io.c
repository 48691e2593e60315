/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest reads, writes, zero writes and block status, split at
 * extent and grain boundaries.
 */
#include "vmdk.h"

#include <string.h>

struct vmdk_extent *vmdk_find_extent(struct vmdk_image *img, uint64_t off)
{
    unsigned lo = 0, hi = img->n_ext;
    while (lo + 1 < hi) {
        unsigned mid = (lo + hi) / 2;
        if (img->ext[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    return &img->ext[lo];
}

/* Bytes from `off` to the end of its grain (flat: of its extent), at most len. */
static uint64_t piece(const struct vmdk_extent *e, uint64_t off, uint64_t len)
{
    uint64_t rel = off - e->start, left = e->length - rel;
    if (e->kind == VMDK_EXTENT_SPARSE)
        left = MIN(left, e->grain - rel % e->grain);
    return MIN(left, len);
}

/* Does one piece of a request: `done` bytes of it came before. */
typedef int (*piece_fn)(struct vmdk_image *img, struct vmdk_extent *e, uint64_t done,
                        uint64_t n, uint64_t off, void *opaque, GError **errp);

/* Splits [offset, offset + len) into pieces (within one extent and, in a
 * sparse extent, one grain) and calls `fn` for each in order. */
static int for_each_piece(struct vmdk_image *img, uint64_t offset, uint64_t len, piece_fn fn,
                          void *opaque, GError **errp)
{
    for (uint64_t done = 0; done < len;) {
        struct vmdk_extent *e = vmdk_find_extent(img, offset + done);
        uint64_t n = piece(e, offset + done, len - done);
        if (fn(img, e, done, n, offset + done, opaque, errp) < 0)
            return -1;
        done += n;
    }
    return 0;
}

static bool has_backing(const struct vmdk_image *img)
{
    return diskimg_node_backing(img->node) != NULL;
}

/* qemu reads through to a parent only while it is a vmdk whose CID is
 * the parentCID recorded here: a parent changed since (every write gives
 * it a new CID) no longer holds what this image was made against. */
static int check_parent(struct vmdk_image *img, GError **errp)
{
    if (img->parent_checked)
        return 0;
    diskimg_node *b = diskimg_node_backing(img->node);
    if (b && strcmp(diskimg_node_driver(b), "vmdk") != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: the backing file %s is not a vmdk image, so it has no "
                                 "CID to match parentCID", img->filename,
                                 diskimg_node_filename(b));
    if (b) {
        const struct vmdk_image *parent = diskimg_node_handle(b);
        if (parent->cid != img->parent_cid)
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "%s: parentCID %08" PRIx32 " does not match the CID %08"
                                     PRIx32 " of the backing file %s", img->filename,
                                     img->parent_cid, parent->cid, diskimg_node_filename(b));
    }
    img->parent_checked = true;
    return 0;
}

static int read_backing(struct vmdk_image *img, void *buf, uint64_t n, uint64_t off,
                        GError **errp)
{
    if (check_parent(img, errp) < 0)
        return -1;
    return diskimg_node_read_backing(img->node, buf, n, off, errp);
}

static int read_piece(struct vmdk_image *img, struct vmdk_extent *e, uint8_t *buf, uint64_t n,
                      uint64_t off, GError **errp)
{
    uint64_t rel = off - e->start;
    if (e->kind == VMDK_EXTENT_FLAT)
        return diskimg_node_pread(e->file, buf, n, e->flat_offset + rel, errp);
    enum vmdk_grain_state st;
    uint64_t host;
    if (vmdk_grain_lookup(e, rel, &st, &host, errp) < 0)
        return -1;
    if (st == VMDK_GRAIN_DATA)
        return vmdk_sparse_read(e, host, rel % e->grain, buf, n, errp);
    if (st == VMDK_GRAIN_UNALLOC && has_backing(img))
        return read_backing(img, buf, n, off, errp);
    memset(buf, 0, n);
    return 0;
}

static int read_at(struct vmdk_image *img, struct vmdk_extent *e, uint64_t done, uint64_t n,
                   uint64_t off, void *buf, GError **errp)
{
    return read_piece(img, e, (uint8_t *)buf + done, n, off, errp);
}

int vmdk_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    return for_each_piece(h, offset, len, read_at, buf, errp);
}

/* qemu gives an image a new CID on its first write after open, so that
 * children made from it notice the change. */
int vmdk_update_cid(struct vmdk_image *img, GError **errp)
{
    if (img->cid_updated)
        return 0;
    uint32_t cid = g_random_int();
    g_autofree char *hex = g_strdup_printf("%" PRIx32, cid);
    vmdk_desc_set(img->desc, "CID", hex, false, NULL);
    if (vmdk_write_descriptor(img, errp) < 0)
        return -1;
    img->cid = cid;
    img->cid_updated = true;
    return 0;
}

int vmdk_write_descriptor(struct vmdk_image *img, GError **errp)
{
    g_autofree char *text = vmdk_desc_format(img->desc);
    size_t len = strlen(text);
    if (len > img->desc_room)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE,
                                 "%s: the descriptor no longer fits its %" PRIu64 " bytes",
                                 img->filename, img->desc_room);
    if (!img->desc_embedded) {
        if (diskimg_node_pwrite(img->file, text, len, 0, 0, errp) < 0)
            return -1;
        return diskimg_node_truncate(img->file, len, DISKIMG_PREALLOC_OFF,
                                     DISKIMG_TRUNCATE_SHRINK, errp);
    }
    g_autofree char *room = g_malloc0(img->desc_room);
    memcpy(room, text, len);
    return diskimg_node_pwrite(img->file, room, img->desc_room, img->desc_offset, 0, errp);
}

/* A new grain for a partial or whole write into an unallocated or zero
 * grain: the rest comes from the backing file (unallocated) or is zero. */
static int allocate_grain(struct vmdk_image *img, struct vmdk_extent *e, const uint8_t *data,
                          uint64_t n, uint64_t off, enum vmdk_grain_state st, GError **errp)
{
    uint64_t rel = off - e->start, in = rel % e->grain;
    uint64_t grain_start = off - in;
    g_autofree uint8_t *g = NULL;
    const uint8_t *src = data;
    if (n != e->grain) {
        g = g_malloc0(e->grain);
        uint64_t valid = MIN(e->grain, e->start + e->length - grain_start);
        if (st == VMDK_GRAIN_UNALLOC && has_backing(img) &&
            read_backing(img, g, valid, grain_start, errp) < 0)
            return -1;
        memcpy(g + in, data, n);
        src = g;
    }
    uint64_t at = e->next_alloc;
    if (at / VMDK_SECTOR >= VMDK_EXTENT_MAX_SECTORS)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "%s: the extent is full",
                                 diskimg_node_filename(e->file));
    /* The grain first, then the table entry that points at it. */
    if (diskimg_node_pwrite(e->file, src, e->grain, at, 0, errp) < 0)
        return -1;
    e->next_alloc = at + e->grain;
    e->file_size = MAX(e->file_size, e->next_alloc);
    return vmdk_grain_set(e, rel - in, (uint32_t)(at / VMDK_SECTOR), errp);
}

static int write_compressed_grain(struct vmdk_extent *e, const uint8_t *data, uint64_t n,
                                  uint64_t off, GError **errp)
{
    uint64_t rel = off - e->start;
    if (rel % e->grain || (n != e->grain && rel + n != e->length))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: streamOptimized images take whole grains only",
                                 diskimg_node_filename(e->file));
    uint64_t cap = 2 * e->grain + 2 * VMDK_SECTOR;
    g_autofree uint8_t *out = g_malloc(cap);
    int64_t stored = vmdk_grain_compress(off / VMDK_SECTOR, data, n, out, cap, errp);
    if (stored < 0)
        return -1;
    return vmdk_compressed_append(e, rel, out, (uint64_t)stored, errp);
}

static int write_piece(struct vmdk_image *img, struct vmdk_extent *e, const uint8_t *data,
                       uint64_t n, uint64_t off, GError **errp)
{
    uint64_t rel = off - e->start;
    if (e->kind == VMDK_EXTENT_FLAT)
        return diskimg_node_pwrite(e->file, data, n, e->flat_offset + rel, 0, errp);
    if (e->compressed)
        return write_compressed_grain(e, data, n, off, errp);
    enum vmdk_grain_state st;
    uint64_t host;
    if (vmdk_grain_lookup(e, rel, &st, &host, errp) < 0)
        return -1;
    if (st == VMDK_GRAIN_DATA) {
        uint64_t at = host + rel % e->grain;
        if (vmdk_guard_data_write(e, at, n, errp) < 0)
            return -1;
        return diskimg_node_pwrite(e->file, data, n, at, 0, errp);
    }
    return allocate_grain(img, e, data, n, off, st, errp);
}

static int write_at(struct vmdk_image *img, struct vmdk_extent *e, uint64_t done, uint64_t n,
                    uint64_t off, void *opaque, GError **errp)
{
    const uint8_t *const *data = opaque;
    return write_piece(img, e, *data + done, n, off, errp);
}

int vmdk_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp)
{
    struct vmdk_image *img = h;
    const uint8_t *data = buf;
    if (vmdk_update_cid(img, errp) < 0 ||
        for_each_piece(img, offset, len, write_at, &data, errp) < 0)
        return -1;
    return (flags & DISKIMG_WRITE_FUA) ? vmdk_flush(h, errp) : 0;
}

/* Zeroes for one piece: nothing for a zero grain, a zero grain entry
 * where the image has them, else zero data — as qemu, which falls back to
 * writing zeroes (allocating the grain) when it cannot use an entry.  A
 * stream extent's unwritten grains already read as zero and cannot be
 * rewritten, so they are left alone. */
static int zero_piece(struct vmdk_image *img, struct vmdk_extent *e, uint64_t n, uint64_t off,
                      unsigned flags, GError **errp)
{
    uint64_t rel = off - e->start;
    if (e->kind == VMDK_EXTENT_FLAT)
        return diskimg_node_write_zeroes(e->file, e->flat_offset + rel, n, flags, errp);
    enum vmdk_grain_state st;
    uint64_t host;
    if (vmdk_grain_lookup(e, rel, &st, &host, errp) < 0)
        return -1;
    bool whole = rel % e->grain == 0 && (n == e->grain || rel + n == e->length);
    if (st == VMDK_GRAIN_ZERO ||
        (e->compressed && st == VMDK_GRAIN_UNALLOC && !has_backing(img)))
        return 0;
    if (e->zero_grain && whole && !e->compressed)
        return vmdk_grain_set(e, rel, VMDK_GTE_ZEROED, errp);
    if (flags & DISKIMG_WRITE_NO_FALLBACK)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "Driver does not support efficient zero writes");
    g_autofree uint8_t *zero = g_malloc0(n);
    return write_piece(img, e, zero, n, off, errp);
}

static int zero_at(struct vmdk_image *img, struct vmdk_extent *e, uint64_t done, uint64_t n,
                   uint64_t off, void *opaque, GError **errp)
{
    (void)done;
    return zero_piece(img, e, n, off, *(const unsigned *)opaque, errp);
}

int vmdk_write_zeroes(void *h, uint64_t offset, uint64_t len, unsigned flags, GError **errp)
{
    struct vmdk_image *img = h;
    if (vmdk_update_cid(img, errp) < 0)
        return -1;
    return for_each_piece(img, offset, len, zero_at, &flags, errp);
}

static uint32_t grain_flags(const struct vmdk_extent *e, enum vmdk_grain_state st)
{
    switch (st) {
    case VMDK_GRAIN_ZERO:
        return DISKIMG_BS_ZERO | DISKIMG_BS_ALLOCATED;
    case VMDK_GRAIN_DATA:
        return DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED |
               (e->compressed ? DISKIMG_BS_COMPRESSED : DISKIMG_BS_OFFSET_VALID);
    default:
        return 0;
    }
}

/* A flat extent is data; where its file has a hole it also reads as
 * zeroes (qemu keeps DATA and adds ZERO from the file's answer). */
static int flat_status(struct vmdk_extent *e, uint64_t offset, uint64_t len,
                       struct diskimg_extent *ext, GError **errp)
{
    uint64_t host = e->flat_offset + (offset - e->start);
    struct diskimg_extent f = { .struct_size = sizeof(f) };
    if (diskimg_node_block_status(e->file, host, piece(e, offset, len), &f, errp) < 0)
        return -1;
    ext->flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED | DISKIMG_BS_OFFSET_VALID |
                 (f.flags & DISKIMG_BS_ZERO);
    ext->length = f.length;
    ext->offset = host;
    ext->file = e->file;
    return 0;
}

int vmdk_block_status(void *h, uint64_t offset, uint64_t len, struct diskimg_extent *ext,
                      GError **errp)
{
    struct vmdk_image *img = h;
    struct vmdk_extent *e = vmdk_find_extent(img, offset);
    uint64_t rel = offset - e->start;
    if (e->kind == VMDK_EXTENT_FLAT)
        return flat_status(e, offset, len, ext, errp);
    enum vmdk_grain_state st;
    uint64_t host;
    if (vmdk_grain_lookup(e, rel, &st, &host, errp) < 0)
        return -1;
    ext->flags = grain_flags(e, st);
    if (ext->flags & DISKIMG_BS_OFFSET_VALID) {
        ext->offset = host + rel % e->grain;
        ext->file = e->file;
    } else if (st == VMDK_GRAIN_DATA) {
        ext->file = e->file;
    }
    /* Grow the answer over following grains of the same kind (and, for
     * mapped data, contiguous on disk), at most VMDK_STATUS_MAX_GRAINS of
     * them: a 100 KiB image may declare billions of grains, and one answer
     * must not walk them all (the caller asks again for the rest). */
    uint64_t n = piece(e, offset, len);
    for (unsigned grains = 1; n < len && rel + n < e->length && grains < VMDK_STATUS_MAX_GRAINS;
         grains++) {
        enum vmdk_grain_state st2;
        uint64_t host2;
        if (vmdk_grain_lookup(e, rel + n, &st2, &host2, errp) < 0)
            return -1;
        if (st2 != st || ((ext->flags & DISKIMG_BS_OFFSET_VALID) &&
                          host2 != ext->offset + n))
            break;
        n += piece(e, offset + n, len - n);
    }
    ext->length = n;
    return 0;
}

int vmdk_flush(void *h, GError **errp)
{
    struct vmdk_image *img = h;
    for (unsigned i = 0; i < img->n_ext; i++)
        if (img->ext[i].kind == VMDK_EXTENT_SPARSE && img->ext[i].gd &&
            vmdk_sparse_flush(&img->ext[i], errp) < 0)
            return -1;
    return 0;
}
