/* SPDX-License-Identifier: MIT */
/*
 * fuzz-dmg-plist.c — the dmg property-list reader
 * (plugins/format/dmg/plist.c, compiled into the harness): the bounded XML
 * reader, the walk to resource-fork/blkx and the base64 decoder of each
 * Data blob; the input is also decoded as base64 on its own.
 */
#include "fuzz.h"

#include "dmg.h"

static int count_blob(void *opaque, unsigned index, const uint8_t *data, size_t len,
                      GError **errp)
{
    size_t *total = opaque;
    *total += len;
    /* touch the blob so that a short decode shows under ASan */
    if (len)
        *total += data[0] + data[len - 1];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t total = 0, len = 0;
    dmg_plist_blkx((const char *)data, size, count_blob, &total, NULL);
    g_free(dmg_base64_decode((const char *)data, size, &len, NULL));
    return 0;
}
