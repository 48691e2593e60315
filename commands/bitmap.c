/* SPDX-License-Identifier: MIT */
/* diskimg bitmap: add, remove, clear, enable, disable and merge bitmaps. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int clear_bitmap(diskimg_node *n, const char *name, GError **errp)
{
    int64_t size = diskimg_node_size(n, errp);
    if (size < 0)
        return -1;
    return diskimg_node_bitmap_set(n, name, 0, (uint64_t)size, false, errp);
}

enum { OPEN_REPORTED = -2 };

static int merge_from(struct cli *c, diskimg_node *n, const char *dst, const char *src,
                      GError **errp)
{
    const char *file = cli_get(c, "source-file");
    if (!file)
        return diskimg_bitmap_merge(n, dst, n, src, errp);
    struct cli_open o = { .format = cli_get(c, "source-format"), .no_backing = true };
    /* qemu-img reports a source that does not open as any image, without
     * the "Operation merge ... failed" prefix: printed here, -2 says so */
    GError *err = NULL;
    diskimg_node *other = cli_open_image(file, &o, &err);
    if (!other) {
        cli_gerror(err);
        return OPEN_REPORTED;
    }
    int ret = diskimg_bitmap_merge(n, dst, other, src, errp);
    diskimg_close(other);
    return ret;
}

static int run_action(struct cli *c, diskimg_node *n, const char *action, const char *name,
                      uint32_t granularity, bool add_disabled, GError **errp)
{
    if (g_str_equal(action, "add")) {
        struct diskimg_bitmap b = { .struct_size = sizeof(b), .name = name,
                                    .granularity = granularity,
                                    .enabled = !add_disabled, .persistent = true };
        return diskimg_node_bitmap_add(n, &b, errp);
    }
    if (g_str_equal(action, "remove"))
        return diskimg_node_bitmap_remove(n, name, errp);
    if (g_str_equal(action, "clear"))
        return clear_bitmap(n, name, errp);
    if (g_str_equal(action, "enable"))
        return diskimg_node_bitmap_set_enabled(n, name, true, errp);
    if (g_str_equal(action, "disable"))
        return diskimg_node_bitmap_set_enabled(n, name, false, errp);
    return merge_from(c, n, name, action + strlen("merge:"), errp);
}

static bool has_action(GPtrArray *actions, const char *what)
{
    for (guint i = 0; i < actions->len; i++)
        if (g_str_equal(actions->pdata[i], what))
            return true;
    return false;
}

int cmd_bitmap(struct cli *c)
{
    if (cli_objects(c))
        return 1;
    GPtrArray *actions = cli_list(c, "actions");
    if (!actions || !actions->len)
        return cli_usage_error("Need at least one of --add, --remove, --clear, --enable, "
                               "--disable, or --merge");
    uint64_t granularity = 0;
    const char *g = cli_get(c, "granularity");
    if (g && cli_parse_size(g, &granularity, "granularity"))
        return 1;
    if (g && !has_action(actions, "add"))
        return cli_usage_error("granularity only supported with --add");
    /* The ABI carries granularity in 32 bits; anything larger is invalid
     * anyway (qemu's limit is 2^31). */
    if (granularity > (1ull << 31)) {
        cli_error("Operation add on bitmap %s failed: Granularity must be power of 2 and at "
                  "least 512", c->args[1]);
        return 1;
    }
    if (cli_get(c, "source-format") && !cli_get(c, "source-file"))
        return cli_usage_error("-F only supported with -b");
    /* --add --disable makes a disabled bitmap (qemu-img does the same). */
    bool add_disabled = has_action(actions, "add") && has_action(actions, "disable");
    struct cli_open o;
    cli_open_defaults(c, &o);
    o.writable = true;
    o.no_backing = true;
    GError *err = NULL;
    diskimg_node *n = cli_open_image(c->args[0], &o, &err);
    if (!n) {
        cli_gerror(err);
        return 1;
    }
    const char *name = c->args[1];
    int ret = 0;
    for (guint i = 0; i < actions->len && ret == 0; i++) {
        const char *action = actions->pdata[i];
        if (add_disabled && g_str_equal(action, "disable"))
            continue;
        int r = run_action(c, n, action, name, (uint32_t)granularity, add_disabled, &err);
        if (r == OPEN_REPORTED) {
            ret = 1;
        } else if (r < 0) {
            cli_error("Operation %.*s on bitmap %s failed: %s",
                      (int)strcspn(action, ":"), action, name, err->message);
            g_clear_error(&err);
            ret = 1;
        }
    }
    if (ret == 0 && diskimg_node_flush(n, &err) < 0) {
        cli_gerror(err);
        ret = 1;
    }
    diskimg_close(n);
    return ret;
}

int cli_copy_bitmaps(diskimg_node *src, diskimg_node *dst, bool skip_broken, GError **errp)
{
    diskimg_bitmap_list *l = diskimg_node_bitmaps(src, errp);
    if (!l)
        return -1;
    int ret = 0;
    for (guint i = 0; i < l->items->len && ret == 0; i++) {
        struct diskimg_bitmap *b = &g_array_index(l->items, struct diskimg_bitmap, i);
        if (b->in_use) {
            if (skip_broken) {
                diskimg_warn("warning: Skipping inconsistent bitmap '%s'", b->name);
                continue;
            }
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                        "Cannot copy inconsistent bitmap '%s' (try --skip-broken-bitmaps, or "
                        "'diskimg bitmap --remove' to delete it)", b->name);
            ret = -1;
            break;
        }
        ret = diskimg_node_bitmap_add(dst, b, errp);
        if (ret == 0)
            ret = diskimg_bitmap_merge(dst, b->name, src, b->name, errp);
    }
    diskimg_bitmap_list_free(l);
    return ret;
}
