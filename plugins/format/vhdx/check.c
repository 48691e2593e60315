/* SPDX-License-Identifier: MIT */
/*
 * check.c — qemu 7.2's vhdx check: a log replayed by the (writable) open
 * counts as one repaired corruption (and so, our addition, does a damaged
 * region table 1 rewritten from copy 2); every payload BAT entry that names
 * an unusable block (past the end of the file, inside the header area or
 * another region, or in a state only differencing images may use) is one
 * corruption, reported on its own line.  qemu repairs nothing else, and
 * neither do we: a dangling entry cannot be fixed without losing data the
 * user may still recover by other means.
 */
#include "vhdx.h"

int vhdx_check(void *h, unsigned fix, struct diskimg_check_result *res, GError **errp)
{
    struct vhdx_state *s = h;
    int64_t file_size = diskimg_node_size(s->file, errp);

    (void)fix;
    if (file_size < 0)
        return -1;
    if (s->log_replayed)
        res->corruptions_fixed++;
    /* qemu reads only region table 1: a damaged one, though we read copy
     * 2, is a corruption for it until a writable open rewrites it. */
    if (s->region1_repaired)
        res->corruptions_fixed++;
    else if (s->region1_damaged) {
        diskimg_report("VHDX region table 1 is damaged; copy 2 is intact");
        res->corruptions++;
    }
    for (uint64_t b = 0; b < s->payload_blocks; b++) {
        char *why = vhdx_bat_entry_problem(s, b, (uint64_t)file_size);
        if (why) {
            diskimg_report("%s", why);
            res->corruptions++;
            g_free(why);
        }
    }
    return 0;
}
