/* SPDX-License-Identifier: MIT */
/*
 * fuzz-options.c — the option parser (diskimg_options_parse) against the
 * real schemas of the plugins.
 *
 * The first byte of the input picks a plugin and an option set (modulo
 * their number), the rest is the option text as a user types it after -o.
 * A parsed set is then printed in every form the commands print it.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>

#include <diskimg/core.h>

static const char *const option_sets[] = { "create-options", "open-options", "amend-options" };
static GPtrArray *targets;   /* const diskimg_schema *, then set name, in pairs */

static void add_plugins(enum diskimg_plugin_kind kind)
{
    g_auto(GStrv) names = diskimg_plugin_names(kind);
    for (char **n = names; n && *n; n++) {
        const diskimg_schema *s = diskimg_plugin_schema(kind, *n);
        for (size_t i = 0; s && i < G_N_ELEMENTS(option_sets); i++) {
            if (!diskimg_schema_has_set(s, option_sets[i]))
                continue;
            g_ptr_array_add(targets, (gpointer)s);
            g_ptr_array_add(targets, (gpointer)option_sets[i]);
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    GError *err = NULL;
    if (diskimg_init(&err) < 0) {
        fprintf(stderr, "fuzz-options: %s\n", err->message);
        exit(2);
    }
    targets = g_ptr_array_new();
    add_plugins(DISKIMG_KIND_FORMAT);
    add_plugins(DISKIMG_KIND_IO);
    if (targets->len == 0) {
        fprintf(stderr, "fuzz-options: no plugin schema found\n");
        exit(2);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!targets)
        LLVMFuzzerInitialize(NULL, NULL);
    guint pairs = targets->len / 2;
    guint pick = data[0] % pairs;
    const diskimg_schema *s = targets->pdata[2 * pick];
    const char *set = targets->pdata[2 * pick + 1];
    g_autofree char *text = fuzz_text(data + 1, size - 1);

    diskimg_options_text_wants_help(text);
    uint64_t size_value;
    diskimg_parse_size(text, &size_value, NULL);

    diskimg_options *o = diskimg_options_new(s, set);
    if (diskimg_options_parse(o, text, NULL) == 0) {
        diskimg_options_check_required(o, NULL);
        g_free(diskimg_options_to_string(o));
        g_free(diskimg_options_format_line(o));
        JsonNode *json = diskimg_options_to_json(o);
        if (json)
            json_node_unref(json);
    }
    diskimg_options_free(o);
    return 0;
}
