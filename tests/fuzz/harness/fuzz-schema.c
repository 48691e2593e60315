/* SPDX-License-Identifier: MIT */
/*
 * fuzz-schema.c — the schema engine on a whole document
 * (diskimg_schema_parse): YAML read by libyaml, or compact JSON by the
 * reader's fast path, then validated as a plugin schema; a schema that
 * validates is rendered as introspection JSON and as -o help text for
 * every option set.
 */
#include "fuzz.h"

#include <diskimg/core.h>

static const char *const option_sets[] = { "create-options", "open-options", "amend-options" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = fuzz_text(data, size);
    diskimg_schema *s = diskimg_schema_parse(text, "fuzz.yaml", NULL);
    if (!s)
        return 0;
    JsonNode *json = diskimg_schema_to_json(s);
    if (json)
        json_node_unref(json);
    for (size_t i = 0; i < G_N_ELEMENTS(option_sets); i++) {
        if (!diskimg_schema_has_set(s, option_sets[i]))
            continue;
        g_free(diskimg_schema_options_help(s, option_sets[i]));
        g_strfreev(diskimg_schema_set_keys(s, option_sets[i]));
    }
    diskimg_schema_free(s);
    return 0;
}
