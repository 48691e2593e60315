/* SPDX-License-Identifier: MIT */
/*
 * fuzz-schema-json.c — the first pass of the schema engine alone
 * (schema_tree_read of core/schema-tree.c): the compact-JSON fast path that
 * reads every embedded schema, with its fall-back to libyaml, and the
 * generic JSON view of the tree.  Linked with the engine's static library,
 * since the reader is internal to libdiskimg.
 */
#include "fuzz.h"

#include "schema-tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = fuzz_text(data, size);
    struct ynode *tree = schema_tree_read(text, "fuzz.json", NULL);
    if (!tree)
        return 0;
    JsonNode *json = ynode_to_json(tree);
    if (json)
        json_node_unref(json);
    ynode_free(tree);
    return 0;
}
