/* SPDX-License-Identifier: MIT */
/*
 * header.c — the fixed structures at the start of a vhdx file: the file
 * type identifier, the two headers and the region table (spec 2.1-2.3).
 *
 * Two header copies let an update be atomic: the writer rewrites the copy
 * that is not current with a higher sequence number, so a torn write
 * leaves the other copy valid.  The reader takes the valid copy with the
 * higher sequence number, as qemu does (equal numbers are accepted only
 * when both copies are identical, which Microsoft's Disk2VHD writes).
 */
#include <string.h>

#include "vhdx.h"

const vhdx_guid vhdx_guid_bat = { { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                    0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 } };
const vhdx_guid vhdx_guid_metadata = { { 0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                         0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e } };

bool vhdx_guid_equal(const vhdx_guid *a, const vhdx_guid *b)
{
    return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

bool vhdx_guid_is_zero(const vhdx_guid *g)
{
    return diskimg_is_zero(g->b, sizeof(g->b));
}

void vhdx_guid_generate(vhdx_guid *g)
{
    for (unsigned i = 0; i < sizeof(g->b); i += 4)
        diskimg_put_le32(g->b + i, g_random_int());
    /* RFC 4122 version 4 and variant bits; byte 7 is the high byte of the
     * little-endian Data3 field. */
    g->b[7] = (uint8_t)((g->b[7] & 0x0f) | 0x40);
    g->b[8] = (uint8_t)((g->b[8] & 0x3f) | 0x80);
}

/* CRC-32C of a structure whose 4-byte checksum field at `at` counts as
 * zero (spec: "the checksum field is set to zero when computing"). */
static uint32_t crc_with_hole(const uint8_t *buf, size_t len, size_t at)
{
    static const uint8_t zero[4];
    uint32_t crc = diskimg_crc32c(0, buf, at);
    crc = diskimg_crc32c(crc, zero, 4);
    return diskimg_crc32c(crc, buf + at + 4, len - at - 4);
}

static void seal(uint8_t *buf, size_t len)
{
    diskimg_put_le32(buf + 4, 0);
    diskimg_put_le32(buf + 4, diskimg_crc32c(0, buf, len));
}

/* ------------------------------------------------------------ identifier */

void vhdx_identifier_encode(uint8_t *buf)
{
    static const char creator[] = "diskimg " PLUGIN_VERSION;

    memset(buf, 0, VHDX_HEADER1_OFFSET);
    memcpy(buf, "vhdxfile", 8);
    /* The creator is UTF-16LE, at most 256 characters; ours is ASCII. */
    for (size_t i = 0; i < sizeof(creator) - 1 && i < 255; i++)
        diskimg_put_le16(buf + 8 + 2 * i, (uint16_t)creator[i]);
}

/* --------------------------------------------------------------- headers */

void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf)
{
    memset(buf, 0, VHDX_HEADER_SIZE);
    memcpy(buf, "head", 4);
    diskimg_put_le64(buf + 8, h->sequence);
    memcpy(buf + 16, h->file_write_guid.b, 16);
    memcpy(buf + 32, h->data_write_guid.b, 16);
    memcpy(buf + 48, h->log_guid.b, 16);
    diskimg_put_le16(buf + 64, h->log_version);
    diskimg_put_le16(buf + 66, h->version);
    diskimg_put_le32(buf + 68, h->log_length);
    diskimg_put_le64(buf + 72, h->log_offset);
    seal(buf, VHDX_HEADER_SIZE);
}

/* Parses one copy; NULL when valid, else why not (g_free). */
static char *parse_header(const uint8_t *buf, struct vhdx_header *h)
{
    struct diskimg_reader r = diskimg_reader_make(buf, VHDX_HEADER_SIZE,
                                                  DISKIMG_LITTLE_ENDIAN, NULL, "vhdx header");
    uint32_t crc;
    const uint8_t *p;

    if (memcmp(buf, "head", 4) != 0)
        return g_strdup("bad signature");
    if (diskimg_read_u32(&r, 4, "checksum", &crc, NULL) < 0 ||
        crc != crc_with_hole(buf, VHDX_HEADER_SIZE, 4))
        return g_strdup("checksum mismatch");
    if (diskimg_read_u64(&r, 8, "sequence_number", &h->sequence, NULL) < 0 ||
        diskimg_read_u16(&r, 64, "log_version", &h->log_version, NULL) < 0 ||
        diskimg_read_u16(&r, 66, "version", &h->version, NULL) < 0 ||
        diskimg_read_u32(&r, 68, "log_length", &h->log_length, NULL) < 0 ||
        diskimg_read_u64(&r, 72, "log_offset", &h->log_offset, NULL) < 0 ||
        !(p = diskimg_read_bytes(&r, 16, 48, "guids", NULL)))
        return g_strdup("truncated");
    memcpy(h->file_write_guid.b, p, 16);
    memcpy(h->data_write_guid.b, p + 16, 16);
    memcpy(h->log_guid.b, p + 32, 16);
    if (h->version != 1)
        return g_strdup_printf("unsupported version %u", h->version);
    return NULL;
}

/* The fields qemu and the spec constrain once a header is chosen. */
static int validate_header(const struct vhdx_header *h, uint64_t file_size, GError **errp)
{
    if (h->log_version != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "vhdx header: unsupported log_version %u", h->log_version);
    if (h->log_offset < VHDX_HEADER_AREA_END || h->log_offset % MiB)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx header: field 'log_offset' (0x%" PRIx64
                                 ") is not a multiple of 1 MiB past the header area",
                                 h->log_offset);
    if (h->log_length % MiB)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx header: field 'log_length' (%" PRIu32
                                 ") is not a multiple of 1 MiB", h->log_length);
    /* Subtraction, not addition: offsets from the file may be near 2^64. */
    if (h->log_length > file_size || h->log_offset > file_size - h->log_length)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx header: log (%" PRIu32 " bytes at offset 0x%" PRIx64
                                 ") lies beyond the end of the file (%" PRIu64 " bytes)",
                                 h->log_length, h->log_offset, file_size);
    return 0;
}

int vhdx_read_headers(struct vhdx_state *s, GError **errp)
{
    uint8_t *buf = g_malloc(2 * VHDX_HEADER_SIZE);
    struct vhdx_header h[2];
    char *why[2] = { NULL, NULL };
    int64_t file_size = diskimg_node_size(s->file, errp);
    int ret = -1;

    if (file_size < 0)
        goto out;
    if (diskimg_node_pread(s->file, buf, VHDX_HEADER_SIZE, VHDX_HEADER1_OFFSET, errp) < 0 ||
        diskimg_node_pread(s->file, buf + VHDX_HEADER_SIZE, VHDX_HEADER_SIZE,
                           VHDX_HEADER2_OFFSET, errp) < 0)
        goto out;
    for (unsigned i = 0; i < 2; i++)
        why[i] = parse_header(buf + i * VHDX_HEADER_SIZE, &h[i]);

    if (why[0] && why[1]) {
        diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                          "No valid VHDX header found (header 1: %s; header 2: %s)",
                          why[0], why[1]);
        goto out;
    }
    if (!why[0] && !why[1]) {
        if (h[0].sequence == h[1].sequence &&
            memcmp(buf, buf + VHDX_HEADER_SIZE, VHDX_HEADER_SIZE) != 0) {
            diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                              "No valid VHDX header found (both headers have "
                              "sequence_number %" PRIu64 " but differ)", h[0].sequence);
            goto out;
        }
        s->current = h[1].sequence > h[0].sequence ? 1 : 0;
    } else {
        s->current = why[0] ? 1 : 0;
    }
    s->header = h[s->current];
    ret = validate_header(&s->header, (uint64_t)file_size, errp);
out:
    g_free(why[0]);
    g_free(why[1]);
    g_free(buf);
    return ret;
}

int vhdx_update_headers(struct vhdx_state *s, bool new_data_guid, const vhdx_guid *log_guid,
                        GError **errp)
{
    struct vhdx_header h = s->header;
    uint8_t *buf = g_malloc(VHDX_HEADER_SIZE);
    int ret = -1;

    /* One new file write GUID per update, as the spec asks for the first
     * update of a session; qemu keeps one per open instead.  Either way
     * readers only compare it for change. */
    vhdx_guid_generate(&h.file_write_guid);
    if (new_data_guid)
        vhdx_guid_generate(&h.data_write_guid);
    if (log_guid)
        h.log_guid = *log_guid;

    for (unsigned round = 0; round < 2; round++) {
        unsigned target = s->current ^ 1;
        h.sequence++;
        vhdx_header_encode(&h, buf);
        if (diskimg_node_pwrite(s->file, buf, VHDX_HEADER_SIZE,
                                target ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET, 0,
                                errp) < 0 ||
            diskimg_node_flush(s->file, errp) < 0)
            goto out;
        s->current = target;
        s->header = h;
    }
    ret = 0;
out:
    g_free(buf);
    return ret;
}

/* ---------------------------------------------------------- region table */

void vhdx_region_table_encode(const struct vhdx_region *bat, const struct vhdx_region *meta,
                              uint8_t *buf)
{
    const struct { const vhdx_guid *guid; const struct vhdx_region *r; } e[2] = {
        { &vhdx_guid_bat, bat }, { &vhdx_guid_metadata, meta },
    };

    memset(buf, 0, VHDX_REGION_SIZE);
    memcpy(buf, "regi", 4);
    diskimg_put_le32(buf + 8, 2);
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *p = buf + 16 + 32 * i;
        memcpy(p, e[i].guid->b, 16);
        diskimg_put_le64(p + 16, e[i].r->offset);
        diskimg_put_le32(p + 24, e[i].r->length);
        /* Both are required regions per the spec (qemu writes 0 here, which
         * readers of either kind accept). */
        diskimg_put_le32(p + 28, 1);
    }
    seal(buf, VHDX_REGION_SIZE);
}

/* Checks one region entry against the file and the fixed areas. */
static int check_region(const char *name, const struct vhdx_region *r, uint64_t file_size,
                        GError **errp)
{
    if (r->offset < VHDX_HEADER_AREA_END || r->offset % MiB || r->length == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: %s region (%" PRIu32
                                 " bytes at offset 0x%" PRIx64 ") is not a non-empty "
                                 "1 MiB aligned range past the header area",
                                 name, r->length, r->offset);
    if (r->length > file_size || r->offset > file_size - r->length)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: %s region (%" PRIu32
                                 " bytes at offset 0x%" PRIx64 ") lies beyond the end of "
                                 "the file (%" PRIu64 " bytes)",
                                 name, r->length, r->offset, file_size);
    return 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Parses one region table copy into s; -1 with *errp on any problem. */
static int parse_region_table(struct vhdx_state *s, const uint8_t *buf, uint64_t file_size,
                              GError **errp)
{
    struct diskimg_reader r = diskimg_reader_make(buf, VHDX_REGION_SIZE,
                                                  DISKIMG_LITTLE_ENDIAN, NULL,
                                                  "vhdx region table");
    uint32_t crc, count;
    bool have_bat = false, have_meta = false;

    if (memcmp(buf, "regi", 4) != 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: bad signature");
    if (diskimg_read_u32(&r, 4, "checksum", &crc, errp) < 0)
        return -1;
    if (crc != crc_with_hole(buf, VHDX_REGION_SIZE, 4))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: field 'checksum' (0x%08" PRIx32
                                 ") does not match its contents", crc);
    if (diskimg_read_u32(&r, 8, "entry_count", &count, errp) < 0)
        return -1;
    if (count > VHDX_REGION_MAX_ENTRIES)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: field 'entry_count' (%" PRIu32
                                 ") exceeds %u", count, VHDX_REGION_MAX_ENTRIES);
    for (uint32_t i = 0; i < count; i++) {
        struct diskimg_reader e;
        struct vhdx_region reg;
        uint32_t required;
        vhdx_guid g;
        const uint8_t *p;

        if (diskimg_reader_sub(&r, 16 + 32 * (uint64_t)i, 32, "vhdx region table entry", &e,
                               errp) < 0 ||
            !(p = diskimg_read_bytes(&e, 0, 16, "guid", errp)) ||
            diskimg_read_u64(&e, 16, "file_offset", &reg.offset, errp) < 0 ||
            diskimg_read_u32(&e, 24, "length", &reg.length, errp) < 0 ||
            diskimg_read_u32(&e, 28, "required", &required, errp) < 0)
            return -1;
        memcpy(g.b, p, 16);
        bool is_bat = vhdx_guid_equal(&g, &vhdx_guid_bat);
        bool is_meta = vhdx_guid_equal(&g, &vhdx_guid_metadata);
        if ((is_bat && have_bat) || (is_meta && have_meta))
            return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                     "vhdx region table: duplicate %s region entry",
                                     is_bat ? "BAT" : "metadata");
        if (!is_bat && !is_meta) {
            if (required & 1)
                return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                         "vhdx region table: entry %" PRIu32
                                         " is a required region this plugin does not know",
                                         i);
            continue;
        }
        if (check_region(is_bat ? "BAT" : "metadata", &reg, file_size, errp) < 0)
            return -1;
        if (is_bat) {
            s->bat_region = reg;
            have_bat = true;
        } else {
            s->meta_region = reg;
            have_meta = true;
        }
    }
    if (!have_bat || !have_meta)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: no %s region entry",
                                 have_bat ? "metadata" : "BAT");
    if (ranges_overlap(s->bat_region.offset, s->bat_region.length, s->meta_region.offset,
                       s->meta_region.length) ||
        (s->header.log_length &&
         (ranges_overlap(s->header.log_offset, s->header.log_length, s->bat_region.offset,
                         s->bat_region.length) ||
          ranges_overlap(s->header.log_offset, s->header.log_length, s->meta_region.offset,
                         s->meta_region.length))))
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "vhdx region table: the log, BAT and metadata regions overlap");
    return 0;
}

/* Region table 1 is authoritative (qemu reads only it); the second copy
 * serves when the first is damaged, as the spec allows. */
int vhdx_read_region_table(struct vhdx_state *s, GError **errp)
{
    uint8_t *buf = g_malloc(VHDX_REGION_SIZE);
    GError *first = NULL;
    int64_t file_size = diskimg_node_size(s->file, errp);
    int ret = -1;

    if (file_size < 0)
        goto out;
    if (diskimg_node_pread(s->file, buf, VHDX_REGION_SIZE, VHDX_REGION1_OFFSET, errp) < 0)
        goto out;
    if (parse_region_table(s, buf, (uint64_t)file_size, &first) == 0) {
        ret = 0;
        goto out;
    }
    if (diskimg_node_pread(s->file, buf, VHDX_REGION_SIZE, VHDX_REGION2_OFFSET, errp) < 0)
        goto out;
    if (parse_region_table(s, buf, (uint64_t)file_size, NULL) == 0) {
        s->region1_damaged = true;
        ret = 0;
        goto out;
    }
    g_propagate_error(errp, first);
    first = NULL;
out:
    g_clear_error(&first);
    g_free(buf);
    return ret;
}

int vhdx_repair_region_table(struct vhdx_state *s, GError **errp)
{
    uint8_t *buf;
    int ret;

    if (!s->region1_damaged)
        return 0;
    buf = g_malloc(VHDX_REGION_SIZE);
    ret = diskimg_node_pread(s->file, buf, VHDX_REGION_SIZE, VHDX_REGION2_OFFSET, errp);
    if (ret == 0)
        ret = diskimg_node_pwrite(s->file, buf, VHDX_REGION_SIZE, VHDX_REGION1_OFFSET, 0, errp);
    if (ret == 0)
        ret = diskimg_node_flush(s->file, errp);
    g_free(buf);
    if (ret == 0) {
        s->region1_damaged = false;
        s->region1_repaired = true;
    }
    return ret;
}
