/* SPDX-License-Identifier: MIT */
/*
 * diskimg schema: introspection for programs.  Without a name it lists the
 * plugins and core schemas; with one it prints that schema (YAML text for
 * people, JSON for programs).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_schema(struct cli *c);

static const char *const kinds[] = { NULL, "format", "io", "crypto" };

static JsonNode *listing(void)
{
    JsonObject *root = json_object_new();
    json_object_set_int_member(root, "introspection-version", DISKIMG_INTROSPECTION_VERSION);
    for (int k = DISKIMG_KIND_FORMAT; k <= DISKIMG_KIND_CRYPTO; k++) {
        JsonArray *a = json_array_new();
        g_auto(GStrv) names = diskimg_plugin_names((enum diskimg_plugin_kind)k);
        for (char **n = names; *n; n++)
            json_array_add_string_element(a, *n);
        json_object_set_array_member(root, kinds[k], a);
    }
    JsonArray *core = json_array_new();
    json_array_add_string_element(core, "commands");
    json_array_add_string_element(core, "types");
    json_array_add_string_element(core, "magic");
    json_object_set_array_member(root, "core", core);
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, root);
    return n;
}

static int find_schema(const char *name, const char *kind, const diskimg_schema **out,
                       const char **yaml)
{
    *yaml = NULL;
    if (!kind && (*out = diskimg_core_schema(name)))
        return 0;
    for (int k = DISKIMG_KIND_FORMAT; k <= DISKIMG_KIND_CRYPTO; k++) {
        if (kind && !g_str_equal(kind, kinds[k]))
            continue;
        const struct diskimg_plugin *d = diskimg_plugin_descriptor((enum diskimg_plugin_kind)k,
                                                                   name);
        if (d) {
            *out = diskimg_plugin_schema((enum diskimg_plugin_kind)k, name);
            *yaml = d->schema;
            return 0;
        }
    }
    cli_error("No plugin or core schema named '%s'", name);
    return 1;
}

int cmd_schema(struct cli *c)
{
    enum cli_output output;
    if (cli_output_format(c, &output))
        return 1;
    if (c->nargs == 0) {
        g_autoptr(JsonNode) n = listing();
        if (output == CLI_OUTPUT_JSON) {
            cli_print_json(n);
        } else {
            JsonObject *o = json_node_get_object(n);
            GList *keys = json_object_get_members(o);
            for (GList *k = keys; k; k = k->next) {
                JsonNode *member = json_object_get_member(o, k->data);
                if (!JSON_NODE_HOLDS_ARRAY(member))
                    continue;   /* introspection-version */
                JsonArray *a = json_node_get_array(member);
                printf("%s:", (char *)k->data);
                for (guint i = 0; i < json_array_get_length(a); i++)
                    printf(" %s", json_array_get_string_element(a, i));
                printf("\n");
            }
            g_list_free(keys);
        }
        return 0;
    }
    const diskimg_schema *s;
    const char *yaml;
    if (find_schema(c->args[0], cli_get(c, "kind"), &s, &yaml))
        return 1;
    if (output == CLI_OUTPUT_JSON) {
        g_autoptr(JsonNode) n = diskimg_schema_to_json(s);
        cli_print_json(n);
    } else if (yaml) {
        fputs(yaml, stdout);
    } else {
        g_autoptr(JsonNode) n = diskimg_schema_tree(s) ? json_node_copy(diskimg_schema_tree(s))
                                                        : NULL;
        if (n)
            cli_print_json(n);
    }
    return 0;
}
