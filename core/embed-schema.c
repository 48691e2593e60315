/* SPDX-License-Identifier: MIT */
/*
 * diskimg-embed-schema: turns a YAML schema into a C source defining
 *
 *     const char SYMBOL[] = "...";
 *
 * so that one .so file is the whole plugin.  The schema is validated here,
 * with the same code the library runs, so a mistake fails the build with
 * "file.yaml:LINE:COL: ..." instead of surfacing on a user's machine.  What
 * is embedded is the validated document as compact JSON: JSON is YAML, so
 * the descriptor still carries a YAML schema, and the library reads it
 * through a fast path instead of libyaml (start-up time).
 *
 * Usage: diskimg-embed-schema INPUT.yaml OUTPUT.c SYMBOL
 */
#include <stdio.h>
#include <string.h>

#include <diskimg/schema.h>
#include <json-glib/json-glib.h>

#define LINE_WIDTH 96

static void write_c_string(FILE *out, const char *s)
{
    size_t col = 0;
    fputs("    \"", out);
    for (const char *p = s; *p; p++) {
        if (col >= LINE_WIDTH) {
            fputs("\"\n    \"", out);
            col = 0;
        }
        switch (*p) {
        case '"':  fputs("\\\"", out); col += 2; break;
        case '\\': fputs("\\\\", out); col += 2; break;
        case '\n': fputs("\\n", out); col += 2; break;
        case '\t': fputs("\\t", out); col += 2; break;
        case '?':  fputs("\\?", out); col += 2; break;   /* no trigraphs, ever */
        default:   fputc(*p, out); col++; break;
        }
    }
    fputs("\"", out);
}

static char *compact_json(const diskimg_schema *schema)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, diskimg_schema_tree(schema));
    return json_generator_to_data(gen, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: diskimg-embed-schema INPUT.yaml OUTPUT.c SYMBOL\n");
        return 2;
    }
    const char *input = argv[1], *output = argv[2], *symbol = argv[3];
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;
    if (!g_file_get_contents(input, &text, NULL, &err)) {
        fprintf(stderr, "diskimg-embed-schema: %s\n", err->message);
        return 1;
    }
    diskimg_schema *schema = diskimg_schema_parse(text, input, &err);
    if (!schema) {
        fprintf(stderr, "diskimg-embed-schema: %s\n", err->message);
        return 1;
    }
    g_autofree char *json = compact_json(schema);
    diskimg_schema_free(schema);
    FILE *out = fopen(output, "w");
    if (!out) {
        perror(output);
        return 1;
    }
    const char *base = strrchr(input, '/');
    fprintf(out, "/* generated from %s by diskimg-embed-schema; do not edit */\n",
            base ? base + 1 : input);
    fprintf(out, "const char %s[] =\n", symbol);
    write_c_string(out, json);
    fputs(";\n", out);
    if (fclose(out) != 0) {
        perror(output);
        return 1;
    }
    return 0;
}
