/* SPDX-License-Identifier: MIT */
/*
 * io.c — guest data of a luks image: payload sectors encrypted with the
 * master key, sector n (counted from the payload's start) taking IV n.
 *
 * Whole-sector ranges are read and decrypted in place in the caller's
 * buffer, or encrypted through a bounce buffer (the caller's data is
 * const) and written, under the shared side of the image lock.  A request
 * that starts or ends inside a sector takes the exclusive side and
 * patches those sectors (read, decrypt, copy, encrypt, write), so that no
 * other write can slip between the read and the write of the same sector.
 */
#include <string.h>

#include "luks.h"

/* Bounce buffer size for encrypting writes: large enough to keep the
 * file's requests big, small enough to stay in cache. */
#define LUKS_BOUNCE (1u << 20)

static bool sector_aligned(uint64_t v)
{
    return v % LUKS_SECTOR == 0;
}

/* Reads and decrypts whole sectors [offset, offset + len) into buf. */
static int read_sectors(struct luks_image *s, uint8_t *buf, uint64_t len, uint64_t offset,
                        GError **errp)
{
    if (diskimg_node_pread(s->file, buf, len, s->payload_offset + offset, errp) < 0)
        return -1;
    return diskimg_luks_decrypt(s->hdr, offset, buf, (size_t)len, errp);
}

/* Encrypts whole sectors of buf and writes them at offset. */
static int write_sectors(struct luks_image *s, const uint8_t *buf, uint64_t len,
                         uint64_t offset, unsigned flags, GError **errp)
{
    size_t chunk_max = (size_t)MIN(len, (uint64_t)LUKS_BOUNCE);
    uint8_t *bounce = diskimg_alloc_aligned(chunk_max);
    int ret = 0;

    if (!bounce)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "Out of memory");
    for (uint64_t done = 0; done < len && ret == 0;) {
        size_t n = (size_t)MIN(len - done, (uint64_t)chunk_max);
        memcpy(bounce, buf + done, n);
        ret = diskimg_luks_encrypt(s->hdr, offset + done, bounce, n, errp);
        if (ret == 0)
            ret = diskimg_node_pwrite(s->file, bounce, n, s->payload_offset + offset + done,
                                      flags, errp);
        done += n;
    }
    diskimg_crypto_wipe(bounce, chunk_max);
    diskimg_free_aligned(bounce);
    return ret;
}

/* The sector holding `offset`, decrypted, with buf's bytes copied over
 * [offset, offset + n) (n within that sector), encrypted and written. */
static int patch_sector(struct luks_image *s, const uint8_t *buf, uint64_t n, uint64_t offset,
                        unsigned flags, GError **errp)
{
    uint8_t sector[LUKS_SECTOR];
    uint64_t start = offset / LUKS_SECTOR * LUKS_SECTOR;
    int ret = read_sectors(s, sector, LUKS_SECTOR, start, errp);

    if (ret == 0) {
        memcpy(sector + (offset - start), buf, n);
        ret = write_sectors(s, sector, LUKS_SECTOR, start, flags, errp);
    }
    diskimg_crypto_wipe(sector, sizeof(sector));
    return ret;
}

/* Reads [offset, offset + n) lying within one sector. */
static int read_part(struct luks_image *s, uint8_t *buf, uint64_t n, uint64_t offset,
                     GError **errp)
{
    uint8_t sector[LUKS_SECTOR];
    uint64_t start = offset / LUKS_SECTOR * LUKS_SECTOR;
    int ret = read_sectors(s, sector, LUKS_SECTOR, start, errp);

    if (ret == 0)
        memcpy(buf, sector + (offset - start), n);
    diskimg_crypto_wipe(sector, sizeof(sector));
    return ret;
}

/* How many bytes from `offset` up to the next sector boundary (or len). */
static uint64_t head_len(uint64_t offset, uint64_t len)
{
    return MIN(len, LUKS_SECTOR - offset % LUKS_SECTOR);
}

int luks_read(void *h, void *buf, uint64_t len, uint64_t offset, GError **errp)
{
    struct luks_image *s = h;
    uint8_t *p = buf;
    int ret = 0;

    if (len > SIZE_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "%s: request too large",
                                 s->filename);
    g_rw_lock_reader_lock(&s->lock);
    if (!sector_aligned(offset)) {
        uint64_t n = head_len(offset, len);
        ret = read_part(s, p, n, offset, errp);
        p += n, offset += n, len -= n;
    }
    uint64_t whole = len / LUKS_SECTOR * LUKS_SECTOR;
    if (ret == 0 && whole)
        ret = read_sectors(s, p, whole, offset, errp);
    if (ret == 0 && len > whole)
        ret = read_part(s, p + whole, len - whole, offset + whole, errp);
    g_rw_lock_reader_unlock(&s->lock);
    return ret;
}

static int write_unaligned(struct luks_image *s, const uint8_t *p, uint64_t len,
                           uint64_t offset, unsigned flags, GError **errp)
{
    int ret = 0;

    if (!sector_aligned(offset)) {
        uint64_t n = head_len(offset, len);
        ret = patch_sector(s, p, n, offset, flags, errp);
        p += n, offset += n, len -= n;
    }
    uint64_t whole = len / LUKS_SECTOR * LUKS_SECTOR;
    if (ret == 0 && whole)
        ret = write_sectors(s, p, whole, offset, flags, errp);
    if (ret == 0 && len > whole)
        ret = patch_sector(s, p + whole, len - whole, offset + whole, flags, errp);
    return ret;
}

int luks_write(void *h, const void *buf, uint64_t len, uint64_t offset, unsigned flags,
               GError **errp)
{
    struct luks_image *s = h;
    int ret;

    if (len > SIZE_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "%s: request too large",
                                 s->filename);
    if (sector_aligned(offset) && sector_aligned(len)) {
        g_rw_lock_reader_lock(&s->lock);
        ret = write_sectors(s, buf, len, offset, flags, errp);
        g_rw_lock_reader_unlock(&s->lock);
        return ret;
    }
    g_rw_lock_writer_lock(&s->lock);
    ret = write_unaligned(s, buf, len, offset, flags, errp);
    g_rw_lock_writer_unlock(&s->lock);
    return ret;
}

/* ---------------------------------------------------------------- resize */

/*
 * qemu's block_crypto_co_truncate: the file is cut or grown to the
 * payload offset plus the new size, with the preallocation asked for
 * ("metadata" has nothing to allocate here: like qemu, a sparse file).
 * New space is not encrypted: it reads as whatever its zeroes decrypt to,
 * as with qemu.
 */
int luks_size_payload(diskimg_node *file, uint64_t payload_offset, uint64_t new_size,
                      enum diskimg_prealloc prealloc, GError **errp)
{
    if (new_size > (uint64_t)INT64_MAX - payload_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Image size too large");
    if (prealloc == DISKIMG_PREALLOC_METADATA)
        prealloc = DISKIMG_PREALLOC_OFF;
    return diskimg_node_truncate(file, payload_offset + new_size, prealloc,
                                 DISKIMG_TRUNCATE_SHRINK, errp);
}

int luks_truncate(void *h, uint64_t size, enum diskimg_prealloc prealloc, unsigned flags,
                  GError **errp)
{
    struct luks_image *s = h;
    int ret;

    g_rw_lock_writer_lock(&s->lock);
    if (size < s->size && !(flags & DISKIMG_TRUNCATE_SHRINK)) {
        g_rw_lock_writer_unlock(&s->lock);
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: shrinking needs DISKIMG_TRUNCATE_SHRINK", s->filename);
    }
    ret = luks_size_payload(s->file, s->payload_offset, size, prealloc, errp);
    if (ret == 0)
        s->size = (size + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
    g_rw_lock_writer_unlock(&s->lock);
    return ret;
}
