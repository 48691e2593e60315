/* SPDX-License-Identifier: MIT */
/*
 * check.c — consistency check and repair of QED images, as qemu 7.2's
 * qed-check.c decides: every L2 table and data cluster must be a valid
 * offset and referenced once; invalid entries are counted as corruptions
 * and, when repairing, cleared (the data there is lost, as in qemu);
 * clusters of the file nobody references are leaks.  Leaks are counted,
 * never repaired (qemu does not either).  A repair that leaves nothing
 * broken clears QED_F_NEED_CHECK.
 */
#include <string.h>

#include "qed.h"

struct qed_checker {
    struct qed *s;
    struct diskimg_check_result *res;
    bool fix;
    uint64_t nclusters;            /* clusters of the file */
    uint32_t *used;                /* one bit per cluster */
};

/* Marks n clusters from file offset `off` used; false (a corruption each)
 * when one was already: two owners of one cluster. */
static bool mark_used(struct qed_checker *c, uint64_t off, uint64_t n)
{
    uint64_t first = off / c->s->h.cluster_size;
    uint64_t dup = 0;

    for (uint64_t i = first; i < first + n && i < c->nclusters; i++) {
        uint32_t bit = 1u << (i % 32);

        if (c->used[i / 32] & bit)
            dup++;
        c->used[i / 32] |= bit;
    }
    c->res->corruptions += dup;
    return dup == 0;
}

/* Checks one L2 table's entries; returns how many it cleared or found
 * invalid, or -1 when the table could not be read or written. */
static int64_t check_l2(struct qed_checker *c, uint64_t table, GError **errp)
{
    struct qed *s = c->s;
    uint64_t invalid = 0, last = 0;

    for (uint64_t i = 0; i < s->table_entries; i++) {
        uint64_t e;

        if (diskimg_table2_get(s->l2, table, i, &e, errp) < 0)
            return -1;
        if (e == 0 || e == QED_ZERO_CLUSTER)
            continue;
        c->res->allocated_clusters++;
        if (last && last + s->h.cluster_size != e)
            c->res->fragmented_clusters++;
        last = e;
        if (!qed_cluster_offset_valid(s, e)) {
            invalid++;
            if (!c->fix) {
                c->res->corruptions++;
                continue;
            }
            if (diskimg_table2_set(s->l2, table, i, 0, errp) < 0)
                return -1;
            c->res->corruptions_fixed++;
            continue;
        }
        mark_used(c, e, 1);
    }
    return (int64_t)invalid;
}

static int check_l1(struct qed_checker *c, GError **errp)
{
    struct qed *s = c->s;
    bool l1_changed = false;

    for (uint64_t i = 0; i < s->l1_count; i++) {
        uint64_t table = s->l1[i];
        GError *err = NULL;

        if (table == 0)
            continue;
        if (!qed_table_offset_valid(s, table)) {
            if (!c->fix) {
                c->res->corruptions++;
                continue;
            }
            s->l1[i] = 0;
            l1_changed = true;
            c->res->corruptions_fixed++;
            continue;
        }
        if (!mark_used(c, table, s->h.table_size))
            continue;
        if (check_l2(c, table, &err) < 0) {
            diskimg_report("Error while checking the L2 table at %#" PRIx64 ": %s",
                           table, err->message);
            g_error_free(err);
            c->res->check_errors++;
        }
    }
    for (uint64_t i = 0; l1_changed && i < s->l1_count; i++) {
        if (qed_write_l1_entry(s, i, errp) < 0) {
            c->res->check_errors++;
            return -1;
        }
    }
    return 0;
}

static void count_leaks(struct qed_checker *c)
{
    for (uint64_t i = c->s->h.header_size; i < c->nclusters; i++)
        if (!(c->used[i / 32] & (1u << (i % 32))))
            c->res->leaks++;
}

/* qemu's qed_check_mark_clean. */
static int mark_clean(struct qed *s, const struct diskimg_check_result *res, GError **errp)
{
    if (res->corruptions > 0 || res->check_errors > 0 ||
        !(s->h.features & QED_F_NEED_CHECK))
        return 0;
    if (diskimg_table2_flush(s->l2, errp) < 0)
        return -1;
    s->h.features &= ~(uint64_t)QED_F_NEED_CHECK;
    return qed_header_write(s, errp);
}

int qed_check_image(struct qed *s, bool fix, struct diskimg_check_result *res, GError **errp)
{
    struct qed_checker c = { .s = s, .res = res, .fix = fix };

    c.nclusters = s->file_size / s->h.cluster_size;
    c.used = g_try_new0(uint32_t, c.nclusters / 32 + 1);
    if (!c.used)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                                 "%s: no memory for the cluster map of the check",
                                 s->filename);
    res->total_clusters = (s->h.image_size + s->h.cluster_size - 1) / s->h.cluster_size;
    res->has_cluster_stats = true;
    /* the header and the L1 table are always in use */
    mark_used(&c, 0, s->h.header_size);
    mark_used(&c, s->h.l1_offset, s->h.table_size);
    int ret = check_l1(&c, errp);
    if (ret == 0 && fix)
        ret = diskimg_table2_flush(s->l2, errp);
    if (ret == 0 && res->check_errors == 0) {
        count_leaks(&c);
        if (fix)
            ret = mark_clean(s, res, errp);
    }
    g_free(c.used);
    return ret;
}

int qed_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct qed *s = h;

    return qed_check_image(s, fix != 0, res, errp);
}
