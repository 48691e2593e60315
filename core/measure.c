/* SPDX-License-Identifier: MIT */
/*
 * measure.c — what a copy of an image would allocate in a format that
 * stores whole blocks (toolkit.h), for the formats' measure callbacks.
 */
#include "internal.h"
#include <diskimg/toolkit.h>

int diskimg_measure_data_blocks(diskimg_node *source, uint64_t size, uint64_t block_size,
                                uint64_t *blocks, GError **errp)
{
    uint64_t offset = 0;
    uint64_t next_uncounted = 0;    /* first block not counted yet */

    *blocks = 0;
    if (!block_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "measure: block size must not be 0");
    while (offset < size) {
        struct diskimg_extent ext = { .struct_size = sizeof(ext) };
        if (diskimg_node_block_status_chain(source, offset, size - offset, &ext, NULL, errp) < 0)
            return -1;
        if (ext.length == 0)
            return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                     "%s: block status made no progress at %" PRIu64,
                                     diskimg_node_filename(source), offset);
        /* Zero ranges need no storage: convert skips them on a new image. */
        if ((ext.flags & DISKIMG_BS_DATA) && !(ext.flags & DISKIMG_BS_ZERO)) {
            uint64_t first = MAX(offset / block_size, next_uncounted);
            uint64_t end = (offset + ext.length - 1) / block_size + 1;
            if (end > first)
                *blocks += end - first;
            next_uncounted = MAX(next_uncounted, end);
        }
        offset += ext.length;
    }
    return 0;
}
