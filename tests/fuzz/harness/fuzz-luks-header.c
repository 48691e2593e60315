/* SPDX-License-Identifier: MIT */
/*
 * fuzz-luks-header.c — the LUKS version 1 header parser of the core
 * (diskimg_luks_parse): the input is the header area (shorter inputs are
 * padded with zeroes to the header's 592 bytes, so that every field is
 * reached); a header that validates is queried for its layout and slots.
 * Unlocking is left to the luks format harness: a hostile iteration count
 * makes it slow by design, not by a bug.
 */
#include "fuzz.h"

#include <string.h>

#include <diskimg/crypto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = MAX(size, (size_t)DISKIMG_LUKS_HEADER_SIZE);
    g_autofree uint8_t *buf = g_malloc0(len);
    memcpy(buf, data, size);
    diskimg_luks_probe(buf, len);
    diskimg_luks *l = diskimg_luks_parse(buf, len, NULL);
    if (!l)
        return 0;
    diskimg_luks_payload_offset(l);
    diskimg_luks_header_end(l);
    for (unsigned i = 0; i < DISKIMG_LUKS_NUM_KEY_SLOTS + 1; i++)
        diskimg_luks_slot_active(l, i);
    diskimg_luks_free(l);
    return 0;
}
