/* SPDX-License-Identifier: MIT */
/*
 * reader.c — the bounded reader for on-disk structures and checked table
 * loads (toolkit.h).
 *
 * Parsers of image metadata read fields at offsets that come from the
 * image itself; every such read goes through a length check here, so a
 * hostile offset gives an error naming the field instead of a read past
 * the buffer.  Table loads check their size against a cap and the file
 * before allocating, so a hostile count cannot make us allocate more
 * than the caller allowed or read what the file does not hold.
 */
#include <string.h>

#include "internal.h"
#include <diskimg/toolkit.h>

/* Members of the plugin's reader we may read: those within its
 * struct_size (a plugin built against older headers has fewer). */
#define READER_HAS(r, member) \
    ((r)->struct_size >= offsetof(struct diskimg_reader, member) + sizeof((r)->member))

static const char *reader_file(const struct diskimg_reader *r)
{
    return READER_HAS(r, filename) ? r->filename : NULL;
}

static const char *reader_what(const struct diskimg_reader *r)
{
    const char *w = READER_HAS(r, what) ? r->what : NULL;
    return w ? w : "structure";
}

bool diskimg_reader_has(const struct diskimg_reader *r, uint64_t off, uint64_t n)
{
    return off <= r->len && n <= r->len - off;
}

/* The error of a field read outside the view. */
static void out_of_bounds(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                          const char *field, GError **errp)
{
    const char *file = reader_file(r);
    diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                      "%s%s%s: field '%s' (%" PRIu64 " bytes at offset %" PRIu64
                      ") lies beyond its %zu bytes",
                      file ? file : "", file ? ": " : "", reader_what(r), field ? field : "?",
                      n, off, r->len);
}

static const uint8_t *field_at(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                               const char *field, GError **errp)
{
    if (!diskimg_reader_has(r, off, n)) {
        out_of_bounds(r, off, n, field, errp);
        return NULL;
    }
    /* the empty field of an empty view: a valid pointer all the same */
    static const uint8_t nothing;
    return r->data ? r->data + off : &nothing;
}

static bool little(const struct diskimg_reader *r)
{
    return r->order == DISKIMG_LITTLE_ENDIAN;
}

int diskimg_read_u8(const struct diskimg_reader *r, uint64_t off, const char *field,
                    uint8_t *v, GError **errp)
{
    const uint8_t *p = field_at(r, off, 1, field, errp);
    *v = p ? *p : 0;
    return p ? 0 : -1;
}

int diskimg_read_u16(const struct diskimg_reader *r, uint64_t off, const char *field,
                     uint16_t *v, GError **errp)
{
    const uint8_t *p = field_at(r, off, 2, field, errp);
    *v = !p ? 0 : little(r) ? diskimg_le16(p) : diskimg_be16(p);
    return p ? 0 : -1;
}

int diskimg_read_u32(const struct diskimg_reader *r, uint64_t off, const char *field,
                     uint32_t *v, GError **errp)
{
    const uint8_t *p = field_at(r, off, 4, field, errp);
    *v = !p ? 0 : little(r) ? diskimg_le32(p) : diskimg_be32(p);
    return p ? 0 : -1;
}

int diskimg_read_u64(const struct diskimg_reader *r, uint64_t off, const char *field,
                     uint64_t *v, GError **errp)
{
    const uint8_t *p = field_at(r, off, 8, field, errp);
    *v = !p ? 0 : little(r) ? diskimg_le64(p) : diskimg_be64(p);
    return p ? 0 : -1;
}

const uint8_t *diskimg_read_bytes(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                                  const char *field, GError **errp)
{
    return field_at(r, off, n, field, errp);
}

char *diskimg_read_string(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                          const char *field, GError **errp)
{
    const uint8_t *p = field_at(r, off, n, field, errp);
    return p ? g_strndup((const char *)p, n) : NULL;
}

int diskimg_reader_sub(const struct diskimg_reader *r, uint64_t off, uint64_t n,
                       const char *what, struct diskimg_reader *out, GError **errp)
{
    const uint8_t *p = field_at(r, off, n, what, errp);
    if (!p)
        return -1;
    *out = diskimg_reader_make(p, n, r->order, reader_file(r), what);
    return 0;
}

/* ------------------------------------------------------------ table loads */

/* Checks a table against the cap and the file; *bytes receives its size. */
static int table_fits(diskimg_node *file, uint64_t offset, uint64_t count, uint32_t entry_size,
                      uint64_t max_bytes, const char *what, uint64_t *bytes, GError **errp)
{
    const char *name = diskimg_node_filename(file);
    *bytes = 0;
    max_bytes = trust_table_cap(file, max_bytes);    /* smaller for --untrusted */
    if (entry_size == 0 || count > max_bytes / entry_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: %s (%" PRIu64 " entries of %" PRIu32 " bytes) exceeds "
                                 "the limit of %" PRIu64 " bytes",
                                 name, what, count, entry_size, max_bytes);
    *bytes = count * entry_size;
    if (*bytes == 0)
        return 0;
    int64_t size = diskimg_node_size(file, errp);
    if (size < 0)
        return -1;
    if (offset > (uint64_t)size || *bytes > (uint64_t)size - offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "%s: %s (%" PRIu64 " entries of %" PRIu32 " bytes at offset %#"
                                 PRIx64 ") lies beyond the end of the file (%" PRId64 " bytes)",
                                 name, what, count, entry_size, offset, size);
    return 0;
}

static int load(diskimg_node *file, uint64_t offset, uint64_t bytes, uint64_t alloc,
                void **table, GError **errp)
{
    uint8_t *buf = g_try_malloc(MAX(alloc, 1));
    if (!buf)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "Out of memory");
    if (bytes && diskimg_node_pread(file, buf, bytes, offset, errp) < 0) {
        g_free(buf);
        return -1;
    }
    memset(buf + bytes, 0, MAX(alloc, 1) - bytes);
    *table = buf;
    return 0;
}

int diskimg_load_table(diskimg_node *file, uint64_t offset, uint64_t count, uint32_t entry_size,
                       uint64_t max_bytes, const char *what, void **table, GError **errp)
{
    uint64_t bytes = 0;
    *table = NULL;
    if (table_fits(file, offset, count, entry_size, max_bytes, what, &bytes, errp) < 0)
        return -1;
    return load(file, offset, bytes, bytes, table, errp);
}

int diskimg_load_u64_table(diskimg_node *file, uint64_t offset, uint64_t count,
                           uint64_t capacity, enum diskimg_byte_order order, uint64_t max_bytes,
                           const char *what, uint64_t **table, GError **errp)
{
    uint64_t bytes = 0;
    void *buf = NULL;
    *table = NULL;
    if (table_fits(file, offset, count, 8, max_bytes, what, &bytes, errp) < 0)
        return -1;
    /* the room beyond count is the caller's choice, bounded like the table */
    capacity = MAX(capacity, count);
    if (capacity > max_bytes / 8)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: %s of %" PRIu64 " entries exceeds the limit of %" PRIu64
                                 " bytes", diskimg_node_filename(file), what, capacity,
                                 max_bytes);
    if (load(file, offset, bytes, capacity * 8, &buf, errp) < 0)
        return -1;
    uint64_t *t = buf;
    for (uint64_t i = 0; i < count; i++)
        t[i] = order == DISKIMG_LITTLE_ENDIAN ? diskimg_le64(&t[i]) : diskimg_be64(&t[i]);
    *table = t;
    return 0;
}

/* ------------------------------------------------------------ stored names */

int diskimg_load_name(diskimg_node *file, uint64_t offset, uint64_t size, uint64_t max_bytes,
                      const char *what, char **name, GError **errp)
{
    void *raw = NULL;
    char *s;

    *name = NULL;
    /* A name is a table of bytes: the same cap and file-size checks. */
    if (diskimg_load_table(file, offset, size, 1, max_bytes, what, &raw, errp) < 0)
        return -1;
    /* It stops at the first NUL (as qemu's string copies do). */
    s = g_strndup(raw, size);
    g_free(raw);
    if (s[0] == '\0')
        g_free(s);
    else
        *name = s;
    return 0;
}
