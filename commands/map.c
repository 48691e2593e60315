/* SPDX-License-Identifier: MIT */
/* diskimg map: where each guest range lives, merged as qemu-img merges. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define MAP_STEP (1ull << 30)   /* qemu asks for at most 1 GiB at a time */

struct map_entry {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
    const char *filename;
};

static bool can_merge(const struct map_entry *a, const struct map_entry *b)
{
    return a->length && a->start + a->length == b->start && a->depth == b->depth &&
           a->present == b->present && a->zero == b->zero && a->data == b->data &&
           a->has_offset == b->has_offset &&
           (!a->has_offset || a->offset + a->length == b->offset) &&
           g_strcmp0(a->filename, b->filename) == 0;
}

static int print_entry(const struct map_entry *e, enum cli_output output, bool last)
{
    if (output == CLI_OUTPUT_JSON) {
        printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %d, "
               "\"present\": %s, \"zero\": %s, \"data\": %s", e->start, e->length, e->depth,
               e->present ? "true" : "false", e->zero ? "true" : "false",
               e->data ? "true" : "false");
        if (e->has_offset)
            printf(", \"offset\": %" PRIu64, e->offset);
        printf("}%s", last ? "" : ",\n");
        return 0;
    }
    if (e->data && !e->has_offset) {
        cli_error("File contains external, encrypted or compressed clusters.");
        return 1;
    }
    if (e->data && !e->zero)
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
               e->has_offset ? e->offset : 0, e->filename ? e->filename : "");
    return 0;
}

/* A format whose schema says `map-as-data: true` stands for a qemu driver
 * without block status: qemu-img map shows its layers as data throughout,
 * with no offset.  Only map pretends so; convert and compare keep using
 * the plugin's real block status. */
static bool layer_maps_as_data(diskimg_node *n, int depth)
{
    for (int i = 0; i < depth && n; i++)
        n = diskimg_node_backing(n);
    if (!n)
        return false;
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_FORMAT,
                                                    diskimg_node_driver(n));
    return s && diskimg_schema_flag(s, "map-as-data");
}

static int entry_at(diskimg_node *n, uint64_t off, uint64_t len, struct map_entry *e,
                    GError **errp)
{
    struct diskimg_extent ext = { .struct_size = sizeof(ext) };
    int depth;
    if (diskimg_node_block_status_chain(n, off, len, &ext, &depth, errp) < 0)
        return -1;
    if ((ext.flags & DISKIMG_BS_ALLOCATED) && layer_maps_as_data(n, depth))
        ext.flags = DISKIMG_BS_DATA | DISKIMG_BS_ALLOCATED;
    *e = (struct map_entry){
        .start = off,
        .length = ext.length,
        .depth = depth,
        .present = ext.flags & DISKIMG_BS_ALLOCATED,
        .zero = ext.flags & DISKIMG_BS_ZERO,
        .data = ext.flags & DISKIMG_BS_DATA,
        .has_offset = (ext.flags & DISKIMG_BS_OFFSET_VALID) != 0,
        .offset = ext.offset,
        .filename = (ext.flags & DISKIMG_BS_OFFSET_VALID) && ext.file
                        ? diskimg_node_filename(ext.file) : NULL,
    };
    return 0;
}

/* An empty range still gives one entry in JSON, as qemu-img prints its
 * initial (all-false) entry at the requested start. */
static int map_range(diskimg_node *n, uint64_t start, uint64_t end, enum cli_output output,
                     uint64_t requested_start)
{
    struct map_entry cur = { .start = requested_start };
    GError *err = NULL;
    if (output == CLI_OUTPUT_JSON)
        printf("[");
    else
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    for (uint64_t off = start; off < end;) {
        struct map_entry next;
        if (entry_at(n, off, MIN(MAP_STEP, end - off), &next, &err) < 0) {
            if (output == CLI_OUTPUT_JSON)
                printf("]\n");
            cli_gerror(err);
            return 1;
        }
        off += next.length;
        if (can_merge(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (cur.length && print_entry(&cur, output, false))
            return 1;
        cur = next;
    }
    if ((cur.length || output == CLI_OUTPUT_JSON) && print_entry(&cur, output, true))
        return 1;
    if (output == CLI_OUTPUT_JSON)
        printf("]\n");
    return 0;
}

int cmd_map(struct cli *c)
{
    enum cli_output output;
    if (cli_output_format(c, &output) || cli_objects(c))
        return 1;
    uint64_t start = 0, max_length = UINT64_MAX;
    const char *s = cli_get(c, "start-offset"), *l = cli_get(c, "max-length");
    if (s && cli_parse_size(s, &start, "start offset"))
        return 1;
    if (l && cli_parse_size(l, &max_length, "max length"))
        return 1;
    struct cli_open o;
    cli_open_defaults(c, &o);
    GError *err = NULL;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    if (!n) {
        cli_gerror(err);
        return 1;
    }
    int64_t size = diskimg_node_size(n, &err);
    int ret = 1;
    if (size < 0) {
        cli_gerror(err);
    } else {
        uint64_t end = MIN((uint64_t)size, start > (uint64_t)size ? start
                                                : start + MIN(max_length, (uint64_t)size - start));
        ret = map_range(n, MIN(start, (uint64_t)size), end, output, start);
    }
    diskimg_close(n);
    return ret;
}
