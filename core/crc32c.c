/* SPDX-License-Identifier: MIT */
/*
 * crc32c.c — CRC-32C (Castagnoli; iSCSI, ext4, VHDX), toolkit.h.
 *
 * None of the libraries the core links (glib, zlib, zstd, json-glib,
 * libyaml) exports CRC-32C, so it is computed here: the reflected
 * polynomial 0x82F63B78, eight bytes per step with eight 256-entry tables
 * ("slicing-by-8"), about 1-2 GB/s — far more than checksumming headers
 * and log entries needs.  The tables are built once, on first use.
 */
#include <string.h>

#include "internal.h"
#include <diskimg/toolkit.h>

#define CRC32C_POLY 0x82f63b78u

static uint32_t crc_table[8][256];

static void build_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
        crc_table[0][i] = c;
    }
    /* table k: the CRC of byte i followed by k zero bytes */
    for (uint32_t i = 0; i < 256; i++) {
        for (int k = 1; k < 8; k++) {
            uint32_t prev = crc_table[k - 1][i];
            crc_table[k][i] = (prev >> 8) ^ crc_table[0][prev & 0xff];
        }
    }
}

static void ensure_tables(void)
{
    static gsize ready;
    if (g_once_init_enter(&ready)) {
        build_tables();
        g_once_init_leave(&ready, 1);
    }
}

uint32_t diskimg_crc32c(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    ensure_tables();
    for (; len && ((uintptr_t)p & 7); len--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    for (; len >= 8; len -= 8, p += 8) {
        /* the first four bytes fold into the running CRC (little endian) */
        uint32_t lo = diskimg_le32(p) ^ c, hi = diskimg_le32(p + 4);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
            crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
    }
    while (len--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return ~c;
}
