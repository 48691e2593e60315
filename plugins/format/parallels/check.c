/* SPDX-License-Identifier: MIT */
/*
 * check.c — qemu 7.2's Parallels check: the "in use" flag, clusters
 * outside the file, cluster statistics, space leaked at the end; with two
 * additions that qemu lacks: clusters inside the header/BAT and clusters
 * overlapping each other are corruptions too (repair unmaps the later
 * user), and the image end never lies inside the BAT, so that repairing
 * leaks of an image whose BAT is larger than one cluster does not cut
 * its BAT off, as qemu 7.2's does; nor does it cut off the format
 * extension.
 */
#include <stdio.h>
#include <string.h>

#include "parallels.h"

struct check_run {
    struct prl_state *s;
    struct diskimg_check_result *res;
    unsigned fix;
    bool bat_changed;
};

static const char *verdict(const struct check_run *c, unsigned needed)
{
    return (c->fix & needed) ? "Repairing" : "ERROR";
}

static void corruption(struct check_run *c, uint32_t cluster, const char *what)
{
    diskimg_report("%s cluster %" PRIu32 " %s", verdict(c, DISKIMG_CHECK_FIX_ERRORS), cluster,
                   what);
    c->res->corruptions++;
    if (c->fix & DISKIMG_CHECK_FIX_ERRORS) {
        diskimg_blockmap_set(c->s->map, cluster, 0);
        c->res->corruptions_fixed++;
        c->bat_changed = true;
    }
}

static void check_unclean(struct check_run *c)
{
    if (!c->s->unclean)
        return;
    diskimg_report("%s image was not closed correctly", verdict(c, DISKIMG_CHECK_FIX_ERRORS));
    c->res->corruptions++;
    if (c->fix & DISKIMG_CHECK_FIX_ERRORS) {
        /* close writes the header with the flag cleared */
        c->s->unclean = false;
        c->res->corruptions_fixed++;
    }
}

static void check_placement(struct check_run *c, uint64_t file_size)
{
    uint64_t data_start = prl_first_data_sector(&c->s->h) * PRL_SECTOR;

    for (uint32_t i = 0; i < diskimg_blockmap_count(c->s->map); i++) {
        uint64_t host;
        if (diskimg_blockmap_get(c->s->map, i, &host) != DISKIMG_BLOCKMAP_MAPPED)
            continue;
        if (host > file_size)
            corruption(c, i, "is outside image");
        else if (host < data_start)
            corruption(c, i, "lies inside the header or BAT");
    }
}

static void found_overlap(void *opaque, uint32_t first, uint32_t later)
{
    struct check_run *c = opaque;
    char what[64];

    snprintf(what, sizeof(what), "overlaps cluster %" PRIu32, first);
    corruption(c, later, what);
}

/* Allocation statistics; returns the end of the highest cluster. */
static uint64_t count_clusters(struct check_run *c)
{
    const struct prl_state *s = c->s;
    uint64_t high = 0, prev = 0;

    c->res->has_cluster_stats = true;
    c->res->total_clusters = diskimg_blockmap_count(s->map);
    for (uint32_t i = 0; i < diskimg_blockmap_count(s->map); i++) {
        uint64_t host;
        if (diskimg_blockmap_get(s->map, i, &host) != DISKIMG_BLOCKMAP_MAPPED) {
            prev = 0;
            continue;
        }
        c->res->allocated_clusters++;
        if (host > high)
            high = host;
        if (prev && prev + s->cluster_size != host)
            c->res->fragmented_clusters++;
        prev = host;
    }
    return high + s->cluster_size;
}

static int check_leaks(struct check_run *c, uint64_t file_size, uint64_t end, GError **errp)
{
    struct prl_state *s = c->s;

    if (file_size <= end)
        return 0;
    uint64_t count = (file_size - end + s->cluster_size - 1) / s->cluster_size;
    diskimg_report("%s space leaked at the end of the image %" PRIu64,
                   verdict(c, DISKIMG_CHECK_FIX_LEAKS), file_size - end);
    c->res->leaks += count;
    if (!(c->fix & DISKIMG_CHECK_FIX_LEAKS))
        return 0;
    if (s->tail)
        diskimg_tail_forget(s->tail);
    if (diskimg_node_truncate(s->file, end, DISKIMG_PREALLOC_OFF, DISKIMG_TRUNCATE_SHRINK,
                              errp) < 0) {
        c->res->check_errors++;
        return -1;
    }
    c->res->leaks_fixed += count;
    return 0;
}

int prl_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct prl_state *s = h;
    struct check_run c = { .s = s, .res = res, .fix = fix };
    int64_t size;

    if (!s->map)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: opened for metadata only; cannot check", s->filename);
    size = diskimg_node_size(s->file, errp);
    if (size < 0) {
        res->check_errors++;
        return -1;
    }
    /* qemu measures the file in whole sectors. */
    size = (size + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
    check_unclean(&c);
    check_placement(&c, (uint64_t)size);
    if (diskimg_blockmap_find_overlaps(s->map, found_overlap, &c, errp) < 0) {
        res->check_errors++;
        return -1;
    }
    if (c.bat_changed && diskimg_blockmap_write_back(s->map, s->file, errp) < 0) {
        res->check_errors++;
        return -1;
    }
    uint64_t end = count_clusters(&c);
    uint64_t data_start = prl_first_data_sector(&s->h) * PRL_SECTOR;
    if (end < data_start)
        end = data_start;
    /* The format extension is no leak (qemu 7.2 cuts it off). */
    if (end < s->ext_end && s->ext_end <= (uint64_t)size)
        end = s->ext_end;
    res->image_end_offset = end;
    if (check_leaks(&c, (uint64_t)size, end, errp) < 0)
        return -1;
    if (c.bat_changed || (fix & DISKIMG_CHECK_FIX_LEAKS))
        s->data_end = end / PRL_SECTOR;
    return 0;
}
