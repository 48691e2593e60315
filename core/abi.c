/* SPDX-License-Identifier: MIT */
/*
 * The plugin ABI structs are not reachable from any exported function, so
 * abidiff would not notice a change to their layout.  This exported
 * function takes each of them, which puts them into the library's debug
 * information; tests/scripts/abi-check.sh compares that with the committed
 * baseline (core/abi/libdiskimg.abi).
 */
#include "internal.h"

size_t diskimg_abi_anchor(const struct diskimg_plugin *plugin,
                          const struct diskimg_format_ops *format,
                          const struct diskimg_io_ops *io,
                          const struct diskimg_crypto_ops *crypto,
                          const struct diskimg_format_open_args *open_args,
                          const struct diskimg_format_create_args *create_args,
                          const struct diskimg_io_open_args *io_args,
                          const struct diskimg_io_request *request,
                          const struct diskimg_image_info *info,
                          const struct diskimg_backing_ref *backing,
                          const struct diskimg_check_result *check,
                          const struct diskimg_bitmap *bitmap,
                          const struct diskimg_extent *extent)
{
    return sizeof(*plugin) + sizeof(*format) + sizeof(*io) + sizeof(*crypto) +
           sizeof(*open_args) + sizeof(*create_args) + sizeof(*io_args) + sizeof(*request) +
           sizeof(*info) + sizeof(*backing) + sizeof(*check) + sizeof(*bitmap) + sizeof(*extent);
}
