/* SPDX-License-Identifier: MIT */
/*
 * create.c — new Parallels images as qemu 7.2 writes them: a
 * "WithouFreSpacExt" header, a zeroed BAT padded to whole clusters, no
 * data clusters yet.
 */
#include <string.h>

#include "parallels.h"

static uint64_t round_up_sector(uint64_t v)
{
    return v > UINT64_MAX - (PRL_SECTOR - 1) ? UINT64_MAX
                                             : (v + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
}

int prl_create(const struct diskimg_format_create_args *args, GError **errp)
{
    /* qemu rounds both to sectors before checking them. */
    uint64_t cluster_size = round_up_sector(
        diskimg_options_get_uint(args->options, "cluster_size", PRL_DEFAULT_CLUSTER));
    uint64_t size = round_up_sector(args->size);
    uint8_t header[PRL_SECTOR];

    if (cluster_size >= INT32_MAX)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Cluster size is too large");
    if (cluster_size == 0 || size / PRL_SIZE_FACTOR >= cluster_size)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Image size is too large for this cluster size");
    memset(header, 0, sizeof(header));
    prl_header_build(header, size, (uint32_t)cluster_size);
    uint64_t data_bytes = (uint64_t)diskimg_le32(header + PRL_OFF_DATA_OFF) * PRL_SECTOR;
    if (diskimg_node_pwrite(args->file, header, sizeof(header), 0, 0, errp) < 0)
        return -1;
    /* The rest of the BAT area, written as zeroes like qemu does (so the
     * space is allocated, as qemu-img's "disk size" shows). */
    return diskimg_node_write_zeroes(args->file, sizeof(header), data_bytes - sizeof(header), 0,
                                     errp);
}
