/* SPDX-License-Identifier: MIT */
/*
 * koly.c — the UDIF trailer: 512 bytes starting with "koly", normally the
 * last 512 bytes of the file.
 *
 * Fields used (big endian, offsets within the trailer):
 *   0x018  data fork offset (u64): chunk offsets are relative to it
 *   0x028  resource fork offset, 0x030 its length (u64)
 *   0x0d8  XML property list offset, 0x0e0 its length (u64)
 *   0x1ec  sector count (u64): the virtual size
 */
#include <inttypes.h>
#include <string.h>

#include "dmg.h"

/* qemu's search window: images may have odd sizes, so the magic may start
 * anywhere in the last 511 bytes of the second-last sector or in the first
 * 4 bytes of the last one. */
#define SEARCH_LEN 515u
/* No disk of more sectors than this has a size in bytes that fits an
 * int64_t (what every size of the core is). */
#define MAX_SECTORS ((uint64_t)INT64_MAX / DMG_SECTOR)

/* The offset of "koly" within the search window at the file's end. */
static int find_koly(diskimg_node *file, uint64_t file_size, uint64_t *at, GError **errp)
{
    uint8_t buf[SEARCH_LEN];
    uint64_t start = file_size > 511 + DMG_SECTOR ? file_size - 511 - DMG_SECTOR : 0;
    size_t n = (size_t)MIN((uint64_t)SEARCH_LEN, file_size - start);

    if (file_size < DMG_KOLY_SIZE)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "dmg file must be at least 512 bytes long");
    if (diskimg_node_pread(file, buf, n, start, errp) < 0)
        return -1;
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(buf + i, "koly", 4) == 0) {
            *at = start + i;
            return 0;
        }
    }
    return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                             "Could not locate UDIF trailer in dmg file");
}

/* A region [offset, offset + length) must lie before the trailer. */
static int check_region(uint64_t offset, uint64_t length, uint64_t koly_at, const char *what,
                        GError **errp)
{
    if (length == 0)
        return 0;
    if (offset >= koly_at || length > koly_at - offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "UDIF trailer: the %s (%" PRIu64 " bytes at offset %" PRIu64
                                 ") does not lie before the trailer (at offset %" PRIu64 ")",
                                 what, length, offset, koly_at);
    return 0;
}

static int parse_koly(const struct diskimg_reader *r, struct dmg_koly *k, GError **errp)
{
    if (diskimg_read_u64(r, 0x18, "DataForkOffset", &k->data_fork_offset, errp) < 0 ||
        diskimg_read_u64(r, 0x28, "RsrcForkOffset", &k->rsrc_offset, errp) < 0 ||
        diskimg_read_u64(r, 0x30, "RsrcForkLength", &k->rsrc_length, errp) < 0 ||
        diskimg_read_u64(r, 0xd8, "XMLOffset", &k->xml_offset, errp) < 0 ||
        diskimg_read_u64(r, 0xe0, "XMLLength", &k->xml_length, errp) < 0 ||
        diskimg_read_u64(r, 0x1ec, "SectorCount", &k->sectors, errp) < 0)
        return -1;
    if (k->data_fork_offset > k->koly_offset)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "UDIF trailer: field 'DataForkOffset' (%" PRIu64
                                 ") lies beyond the trailer (at offset %" PRIu64 ")",
                                 k->data_fork_offset, k->koly_offset);
    if (k->sectors > MAX_SECTORS)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "UDIF trailer: field 'SectorCount' (%" PRIu64
                                 ") is too large", k->sectors);
    if (check_region(k->rsrc_offset, k->rsrc_length, k->koly_offset, "resource fork",
                     errp) < 0 ||
        check_region(k->xml_offset, k->xml_length, k->koly_offset, "property list", errp) < 0)
        return -1;
    if (k->rsrc_length == 0 && k->xml_length == 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                                 "UDIF trailer names neither a resource fork nor a property "
                                 "list (fields 'RsrcForkLength' and 'XMLLength' are 0)");
    return 0;
}

int dmg_read_koly(diskimg_node *file, uint64_t file_size, struct dmg_koly *k, GError **errp)
{
    uint8_t buf[DMG_KOLY_SIZE];
    struct diskimg_reader r;
    size_t have;

    memset(k, 0, sizeof(*k));
    if (find_koly(file, file_size, &k->koly_offset, errp) < 0)
        return -1;
    /* The trailer may be cut short by the end of the file: the reader then
     * names the first field that lies beyond it. */
    have = (size_t)MIN((uint64_t)DMG_KOLY_SIZE, file_size - k->koly_offset);
    if (diskimg_node_pread(file, buf, have, k->koly_offset, errp) < 0)
        return -1;
    r = diskimg_reader_make(buf, have, DISKIMG_BIG_ENDIAN, NULL, "UDIF trailer");
    return parse_koly(&r, k, errp);
}
