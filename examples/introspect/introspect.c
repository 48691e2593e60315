/* SPDX-License-Identifier: MIT */
/*
 * diskimg-introspect: what a management program asks libdiskimg before it
 * builds a command line.
 *
 *   diskimg-introspect                     every installed format: whether it
 *                                          is writable, its package and its
 *                                          create options
 *   diskimg-introspect FORMAT OPTIONS      is "OPTIONS" a valid -o string for
 *                                          `create -f FORMAT`? (exit 0 or 1)
 *
 * It uses only the installed SDK (pkg-config diskimg): the versioned plugin
 * listing, the schema tree of each plugin, and option validation that
 * neither creates nor opens anything.
 */
#include <stdio.h>
#include <stdlib.h>

#include <diskimg/core.h>

static void print_format(JsonObject *plugin)
{
    const char *name = json_object_get_string_member(plugin, "name");
    JsonNode *package = json_object_get_member(plugin, "package");
    printf("%s (%s, package %s)\n", name,
           json_object_get_boolean_member(plugin, "writable") ? "read-write" : "read-only",
           JSON_NODE_HOLDS_NULL(package) ? "unknown" : json_node_get_string(package));

    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, name);
    if (!diskimg_schema_has_set(s, "create-options"))
        return;
    char **keys = diskimg_schema_set_keys(s, "create-options");
    for (char **k = keys; *k; k++)
        printf("    %s\n", *k);
    g_strfreev(keys);
}

static int list(void)
{
    JsonNode *doc = diskimg_introspect_plugins(DISKIMG_KIND_FORMAT);
    JsonObject *root = json_node_get_object(doc);
    /* A program checks the version it was written for; members are only
     * added within one version. */
    if (json_object_get_int_member(root, "introspection-version") !=
        DISKIMG_INTROSPECTION_VERSION) {
        fprintf(stderr, "diskimg-introspect: unexpected introspection version\n");
        json_node_unref(doc);
        return 1;
    }
    JsonArray *plugins = json_object_get_array_member(root, "plugins");
    for (guint i = 0; i < json_array_get_length(plugins); i++)
        print_format(json_array_get_object_element(plugins, i));
    json_node_unref(doc);
    return 0;
}

static int validate(const char *format, const char *options)
{
    GError *err = NULL;
    if (diskimg_options_validate(DISKIMG_KIND_FORMAT, format, "create-options", options,
                                 &err) < 0) {
        fprintf(stderr, "invalid: %s\n", err->message);
        g_error_free(err);
        return 1;
    }
    printf("valid\n");
    return 0;
}

int main(int argc, char **argv)
{
    GError *err = NULL;
    if (diskimg_init(&err) < 0) {
        fprintf(stderr, "diskimg-introspect: %s\n", err->message);
        g_error_free(err);
        return 1;
    }
    if (argc == 1)
        return list();
    if (argc == 3)
        return validate(argv[1], argv[2]);
    fprintf(stderr, "usage: diskimg-introspect [FORMAT OPTIONS]\n");
    return 2;
}
