/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the schema engine: YAML schema parsing and its errors,
 * typed options, the size syntax, -o help, conform and the renderers.
 */
#include <string.h>

#include <diskimg/schema.h>

/* A qcow2-like schema exercising every option type. */
static const char sample_yaml[] =
    "plugin: qcow2\n"
    "kind: format\n"
    "summary: QEMU copy-on-write image\n"
    "package: diskimg-format-qcow2\n"
    "probe-fallback: true\n"
    "create-options:\n"
    "  size: {type: size, help: Virtual disk size}\n"
    "  compat: {type: enum, values: [\"0.10\", \"1.1\", v2, v3], default: \"1.1\",\n"
    "           help: Compatibility level}\n"
    "  backing_file: {type: str, help: File name of a base image}\n"
    "  backing_fmt: {type: str, alias: backing-fmt, help: Image format of the base image}\n"
    "  cluster_size: {type: size, min: 512, max: 2M, power-of-two: true, default: 64k,\n"
    "                 help: qcow2 cluster size}\n"
    "  preallocation: {type: enum, values: [off, falloc, full], default: \"off\",\n"
    "                  refused: {metadata: \"Unsupported preallocation mode: metadata\"},\n"
    "                  print-default: false, help: Preallocation mode}\n"
    "  lazy_refcounts: {type: bool, default: off, help: Postpone refcount updates}\n"
    "  refcount_bits: {type: int, min: 1, max: 64, default: 16,\n"
    "                  help: Width of a reference count entry in bits}\n"
    "  encrypt:\n"
    "    type: struct\n"
    "    members:\n"
    "      format: {type: enum, values: [aes, luks], help: Encryption format}\n"
    "      key-secret: {type: secret-id, help: ID of the secret}\n"
    "  tags: {type: list, element: str}\n"
    "amend-options: [lazy_refcounts, compat, encrypt]\n"
    "info:\n"
    "  compat: {type: str}\n"
    "  lazy-refcounts: {type: bool, optional: true}\n"
    "  refcount-bits: {type: int}\n"
    "  bitmaps: {type: list, element: BitmapInfo, optional: true}\n"
    "types:\n"
    "  BitmapInfo:\n"
    "    name: {type: str}\n"
    "    granularity: {type: int}\n"
    "    flags: {type: list, element: {type: enum, values: [in-use, auto]}}\n";

static diskimg_schema *sample_schema(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse(sample_yaml, "qcow2.yaml", &err);
    g_assert_no_error(err);
    g_assert_nonnull(s);
    return s;
}

static diskimg_options *sample_options(diskimg_schema *s, const char *set)
{
    diskimg_options *o = diskimg_options_new(s, set);
    g_assert_nonnull(o);
    return o;
}

/* --------------------------------------------------------------- parsing */

static void test_parse_good(void)
{
    diskimg_schema *s = sample_schema();
    g_assert_cmpstr(diskimg_schema_name(s), ==, "qcow2");
    g_assert_cmpstr(diskimg_schema_kind(s), ==, "format");
    g_assert_cmpstr(diskimg_schema_summary(s), ==, "QEMU copy-on-write image");
    g_assert_cmpstr(diskimg_schema_string(s, "package"), ==, "diskimg-format-qcow2");
    g_assert_null(diskimg_schema_string(s, "nothing"));
    g_assert_true(diskimg_schema_flag(s, "probe-fallback"));
    g_assert_false(diskimg_schema_flag(s, "package"));
    g_assert_false(diskimg_schema_flag(s, "absent"));
    g_assert_true(diskimg_schema_has_set(s, "create-options"));
    g_assert_true(diskimg_schema_has_set(s, "amend-options"));
    g_assert_false(diskimg_schema_has_set(s, "open-options"));

    g_auto(GStrv) keys = diskimg_schema_set_keys(s, "create-options");
    const char *expected[] = { "size", "compat", "backing_file", "backing_fmt", "cluster_size",
                               "preallocation", "lazy_refcounts", "refcount_bits",
                               "encrypt.format", "encrypt.key-secret", "tags", NULL };
    g_assert_cmpstrv(keys, expected);

    /* amend-options keeps create-options order. */
    g_auto(GStrv) amend = diskimg_schema_set_keys(s, "amend-options");
    const char *amend_expected[] = { "compat", "lazy_refcounts", "encrypt.format",
                                     "encrypt.key-secret", NULL };
    g_assert_cmpstrv(amend, amend_expected);

    g_auto(GStrv) none = diskimg_schema_set_keys(s, "open-options");
    g_assert_null(none[0]);
    diskimg_schema_free(s);
}

static void test_parse_tree(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse("# commands\n"
                                             "commands:\n"
                                             "  info:\n"
                                             "    options: {force-share: {short: U, arg: false}}\n"
                                             "    args: [filename, 123]\n",
                                             "commands.yaml", &err);
    g_assert_no_error(err);
    g_assert_null(diskimg_schema_name(s));
    JsonNode *tree = diskimg_schema_tree(s);
    g_autofree char *json = diskimg_render_json(tree, false);
    g_assert_cmpstr(json, ==,
                    "{\"commands\": {\"info\": {\"options\": {\"force-share\": "
                    "{\"short\": \"U\", \"arg\": \"false\"}}, \"args\": [\"filename\", \"123\"]}}}");
    diskimg_schema_free(s);

    s = diskimg_schema_parse("types: {}\n", "types.yaml", &err);
    g_assert_no_error(err);
    diskimg_schema_free(s);
    s = diskimg_schema_parse("formats: []\n", "magic.yaml", &err);
    g_assert_no_error(err);
    diskimg_schema_free(s);
}

/* What diskimg-embed-schema embeds: the validated document as compact JSON. */
static char *compact_json(const diskimg_schema *s)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, diskimg_schema_tree(s));
    return json_generator_to_data(gen, NULL);
}

static char *introspect(const diskimg_schema *s)
{
    JsonNode *n = diskimg_schema_to_json(s);
    char *text = diskimg_render_json(n, false);
    json_node_unref(n);
    return text;
}

static void test_parse_json(void)
{
    /* The JSON form reads back as the very same schema. */
    diskimg_schema *yaml = sample_schema();
    g_autofree char *json = compact_json(yaml);
    g_assert_true(json[0] == '{');
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse(json, "qcow2.json", &err);
    g_assert_no_error(err);
    g_assert_true(json_node_equal(diskimg_schema_tree(s), diskimg_schema_tree(yaml)));
    g_autofree char *a = introspect(yaml), *b = introspect(s);
    g_assert_cmpstr(a, ==, b);
    g_assert_true(diskimg_schema_flag(s, "probe-fallback"));
    diskimg_schema_free(s);
    diskimg_schema_free(yaml);

    /* Escapes, surrogate pairs and literals, as YAML would read them. */
    s = diskimg_schema_parse("{\"plugin\": \"raw\", \"kind\":\"format\",\n"
                             " \"summary\": \"q\\\"b\\\\s\\/\\u00e9\\ud83d\\ude00\\t\",\n"
                             " \"probe-fallback\": true, \"n\": -1.5e3}",
                             "raw.json", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_schema_summary(s), ==, "q\"b\\s/\xc3\xa9\xf0\x9f\x98\x80\t");
    g_assert_true(diskimg_schema_flag(s, "probe-fallback"));
    g_assert_cmpstr(diskimg_schema_string(s, "n"), ==, "-1.5e3");
    diskimg_schema_free(s);

    /* YAML flow style that is not JSON still reads (through libyaml). */
    s = diskimg_schema_parse("{plugin: raw, kind: format}", "raw.yaml", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_schema_name(s), ==, "raw");
    diskimg_schema_free(s);
}

static void test_json_errors(void)
{
    /* Mistakes in JSON are reported by the YAML reader, with positions. */
    GError *err = NULL;
    const char *dup = "{\"plugin\":\"raw\",\n\"kind\":\"format\",\n\"plugin\":\"x\"}";
    g_assert_null(diskimg_schema_parse(dup, "raw.json", &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "raw.json:3:1: duplicate key 'plugin'");
    g_clear_error(&err);

    GString *deep = g_string_new("{\"plugin\":\"raw\",\"kind\":\"format\",\"x\":");
    for (int i = 0; i < 40; i++)
        g_string_append_c(deep, '[');
    for (int i = 0; i < 40; i++)
        g_string_append_c(deep, ']');
    g_string_append_c(deep, '}');
    g_assert_null(diskimg_schema_parse(deep->str, "raw.json", &err));
    g_assert_nonnull(strstr(err->message, "nesting deeper than 32 levels"));
    g_clear_error(&err);
    g_string_free(deep, TRUE);

    /* Not JSON and not YAML either: an unterminated string, a lone
     * surrogate escape, trailing text. */
    const char *bad[] = {
        "{\"plugin\":\"raw",
        "{\"plugin\":\"raw\",\"kind\":\"format\",\"summary\":\"\\udc00\"}",
        "{\"plugin\":\"raw\",\"kind\":\"format\"} x",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_null(diskimg_schema_parse(bad[i], "raw.json", &err));
        g_assert_true(g_str_has_prefix(err->message, "raw.json:"));
        g_clear_error(&err);
    }
}

static void assert_schema_error(const char *yaml, const char *message)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse(yaml, "raw.yaml", &err);
    g_assert_null(s);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, message);
    g_error_free(err);
}

#define RAW_HEAD "plugin: raw\nkind: format\ncreate-options:\n"

/* io plugins name the URI schemes they serve; the core dispatches on them. */
static void test_protocols(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse("plugin: nbd\nkind: io\n"
                                             "protocols: [nbd, nbds, nbd+unix]\n", "nbd.yaml",
                                             &err);
    g_assert_no_error(err);
    g_auto(GStrv) list = diskimg_schema_protocols(s);
    g_assert_cmpuint(g_strv_length(list), ==, 3);
    g_assert_cmpstr(list[2], ==, "nbd+unix");
    /* Introspection lists them as an array, not as a flag. */
    JsonNode *doc = diskimg_schema_to_json(s);
    JsonObject *o = json_node_get_object(doc);
    JsonArray *schemes = json_object_get_array_member(o, "protocols");
    g_assert_cmpuint(json_array_get_length(schemes), ==, 3);
    g_assert_cmpstr(json_array_get_string_element(schemes, 1), ==, "nbds");
    g_assert_false(json_object_has_member(json_object_get_object_member(o, "flags"),
                                          "protocols"));
    json_node_unref(doc);
    diskimg_schema_free(s);
    s = diskimg_schema_parse("plugin: posix\nkind: io\n", "posix.yaml", &err);
    g_auto(GStrv) none = diskimg_schema_protocols(s);
    g_assert_cmpuint(g_strv_length(none), ==, 0);
    diskimg_schema_free(s);
    assert_schema_error("plugin: raw\nkind: format\nprotocols: [x]\n",
                        "raw.yaml:3:1: 'protocols' is only for io plugins");
    assert_schema_error("plugin: raw\nkind: io\nprotocols: []\n",
                        "raw.yaml:3:1: 'protocols' must be a non-empty list of URI schemes");
    assert_schema_error("plugin: raw\nkind: io\nprotocols: [NBD]\n",
                        "raw.yaml:3:13: protocol names are lower-case URI schemes (letters, "
                        "digits, '+', '-', '.'), like nbd or nbd+unix");
    assert_schema_error("plugin: raw\nkind: io\nprotocols: [a, 9p]\n",
                        "raw.yaml:3:16: protocol names are lower-case URI schemes (letters, "
                        "digits, '+', '-', '.'), like nbd or nbd+unix");
}

static void test_schema_errors(void)
{
    assert_schema_error(RAW_HEAD
                        "  preallocation:\n"
                        "    type: str\n"
                        "  size:\n"
                        "    type: sise\n",
                        "raw.yaml:7:5: unknown type 'sise' (expected str, bool, int, size, enum, "
                        "secret-id, struct, list)");
    assert_schema_error(RAW_HEAD "  size: {type: size, hepl: x}\n",
                        "raw.yaml:4:22: unknown attribute 'hepl' (expected type, help, default, "
                        "min, max, power-of-two, values, members, print-default, invalid, refused, element, alias, deprecated, "
                        "required)");
    assert_schema_error(RAW_HEAD "  mode: {type: enum}\n", "raw.yaml:4:3: enum 'mode' has no values");
    assert_schema_error(RAW_HEAD "  mode: {type: enum, values: [a, b], default: c}\n",
                        "raw.yaml:4:38: invalid default: mode must be one of a, b, not 'c'");
    assert_schema_error(RAW_HEAD "  cs: {type: size, min: 2M, max: 512}\n",
                        "raw.yaml:4:20: min 2M is greater than max 512");
    assert_schema_error(RAW_HEAD "  cs: {type: size, power-of-two: true, default: 3000}\n",
                        "raw.yaml:4:40: invalid default: cs must be a power of two, not 3000");
    assert_schema_error(RAW_HEAD "  on: {type: bool, default: maybe}\n",
                        "raw.yaml:4:20: invalid default: on must be on or off, not 'maybe'");
    assert_schema_error(RAW_HEAD "  n: {type: int, min: x}\n", "raw.yaml:4:18: min 'x' is not a valid integer");
    assert_schema_error(RAW_HEAD "  n: {type: int, values: [a]}\n",
                        "raw.yaml:4:18: 'values' does not apply to type int");
    assert_schema_error(RAW_HEAD "  n: {help: no type}\n", "raw.yaml:4:3: 'n' has no type");
    assert_schema_error(RAW_HEAD "  n: int\n", "raw.yaml:4:3: 'n' must be a mapping of attributes");
    assert_schema_error(RAW_HEAD "  a: {type: str}\n  b: {type: str, alias: a}\n",
                        "raw.yaml:5:3: option name 'a' is used twice in create-options");
    assert_schema_error(RAW_HEAD "  a: {type: str}\n  a: {type: int}\n",
                        "raw.yaml:5:3: duplicate key 'a'");
    assert_schema_error(RAW_HEAD "  a: {type: str}\namend-options: [a, b]\n",
                        "raw.yaml:5:20: amend option 'b' is not in create-options");
    assert_schema_error(RAW_HEAD "  a: {type: str, optional: true}\n",
                        "raw.yaml:4:18: unknown attribute 'optional' (expected type, help, "
                        "default, min, max, power-of-two, values, members, print-default, invalid, refused, element, alias, "
                        "deprecated, required)");
    assert_schema_error("plugin: raw\nkind: format\ninfo:\n  x: {type: Missing}\n",
                        "raw.yaml:4:7: unknown type 'Missing' (expected str, bool, int, number, "
                        "size, enum, secret-id, struct, list, object or a name from types)");
    assert_schema_error("plugin: raw\nkind: disk\n",
                        "raw.yaml:2:1: unknown kind 'disk' (expected format, io or crypto)");
    assert_schema_error("kind: format\n", "raw.yaml:1:1: missing 'plugin'");
    assert_schema_error("plugin: raw\nkind: format\nsummary: [a]\n",
                        "raw.yaml:3:1: 'summary' must be a plain value");
    assert_schema_error("plugin: raw\nkind: format\nx: &a 1\ny: *a\n",
                        "raw.yaml:4:4: aliases are not allowed");
    assert_schema_error("plugin: raw\nkind: [format\n",
                        "raw.yaml:3:1: did not find expected ',' or ']' while parsing a flow "
                        "sequence");
    assert_schema_error("# nothing\n", "raw.yaml:1:1: empty schema document");
    assert_schema_error("plugin: a\n---\nplugin: b\n", "raw.yaml:2:1: only one document is allowed");
    assert_schema_error("- a\n", "raw.yaml:1:1: a schema must be a mapping");

    /* Hostile documents: deep nesting and huge text. */
    GString *deep = g_string_new("plugin: raw\nkind: format\nx: ");
    for (int i = 0; i < 40; i++)
        g_string_append_c(deep, '[');
    assert_schema_error(deep->str, "raw.yaml:3:35: nesting deeper than 32 levels");
    g_string_free(deep, TRUE);
    GString *big = g_string_new("plugin: raw\nkind: format\nsummary: ");
    while (big->len <= 1024 * 1024)
        g_string_append(big, "xxxxxxxxxxxxxxxx");
    assert_schema_error(big->str, "raw.yaml:1:1: schema is larger than 1 MiB");
    g_string_free(big, TRUE);
}

/* --------------------------------------------------------------- options */

static void assert_set_code(diskimg_options *o, const char *key, const char *value, int code,
                            const char *message)
{
    GError *err = NULL;
    g_assert_cmpint(diskimg_options_set(o, key, value, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, code);
    g_assert_cmpstr(err->message, ==, message);
    g_error_free(err);
}

/* Unknown keys and mistyped values: what qemu's option parser refuses. */
static void assert_set_error(diskimg_options *o, const char *key, const char *value,
                             const char *message)
{
    assert_set_code(o, key, value, DISKIMG_ERROR_INVALID, message);
}

/* Values of the right type the schema refuses: what qemu's drivers refuse. */
static void assert_refused(diskimg_options *o, const char *key, const char *value,
                           const char *message)
{
    assert_set_code(o, key, value, DISKIMG_ERROR_VALUE_REFUSED, message);
}

static void test_option_errors(void)
{
    diskimg_schema *s = sample_schema();
    diskimg_options *o = sample_options(s, "create-options");
    /* qemu-img's wording (QemuOpts, QAPI enums); the closest name follows
     * on a second line, the allowed range where qemu has no text. */
    assert_set_error(o, "clustersize", "64k",
                     "Invalid parameter 'clustersize'\nDid you mean 'cluster_size'?");
    assert_set_error(o, "cluster", "64k",
                     "Invalid parameter 'cluster'\nDid you mean 'cluster_size'?");
    assert_set_error(o, "encrypt.formt", "luks",
                     "Invalid parameter 'encrypt.formt'\nDid you mean 'encrypt.format'?");
    assert_set_error(o, "xyzzy", "1", "Invalid parameter 'xyzzy'");
    assert_refused(o, "cluster_size", "3000",
                     "cluster_size must be a power of two between 512 and 2M, not 3000");
    assert_refused(o, "cluster_size", "4M",
                     "cluster_size must be a power of two between 512 and 2M, not 4M");
    assert_set_error(o, "cluster_size", "big",
                     "Parameter 'cluster_size' expects a non-negative number below 2^64\n"
                     "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                     "peta-\nand exabytes, respectively.");
    assert_refused(o, "preallocation", "sparse",
                     "Parameter 'preallocation' does not accept value 'sparse'");
    assert_refused(o, "preallocation", "metadata", "Unsupported preallocation mode: metadata");
    assert_set_error(o, "lazy_refcounts", "maybe",
                     "Parameter 'lazy_refcounts' expects 'on' or 'off'");
    assert_set_error(o, "lazy_refcounts", "ON", "Parameter 'lazy_refcounts' expects 'on' or 'off'");
    assert_set_error(o, "refcount_bits", "x", "Parameter 'refcount_bits' expects a number");
    assert_refused(o, "refcount_bits", "65",
                     "refcount_bits must be an integer between 1 and 64, not 65");
    assert_set_error(o, "size", "12Q",
                     "Parameter 'size' expects a non-negative number below 2^64\n"
                     "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, "
                     "peta-\nand exabytes, respectively.");
    assert_refused(o, "encrypt.key-secret", "",
                     "encrypt.key-secret must be the id of a secret object, not ''");
    assert_set_error(o, "encrypt", "luks",
                     "Invalid parameter 'encrypt'\nDid you mean 'encrypt.format'?");
    g_assert_false(diskimg_options_has(o, "cluster_size"));
    diskimg_options_free(o);
    diskimg_schema_free(s);
}

static void test_option_values(void)
{
    diskimg_schema *s = sample_schema();
    diskimg_options *o = sample_options(s, "create-options");
    GError *err = NULL;

    /* Defaults through the getters, fallbacks for what the schema lacks. */
    g_assert_cmpuint(diskimg_options_get_uint(o, "cluster_size", 0), ==, 65536);
    g_assert_cmpint(diskimg_options_get_int(o, "refcount_bits", 0), ==, 16);
    g_assert_false(diskimg_options_get_bool(o, "lazy_refcounts", true));
    g_assert_cmpstr(diskimg_options_get_str(o, "compat"), ==, "1.1");
    g_assert_null(diskimg_options_get_str(o, "backing_file"));
    g_assert_cmpuint(diskimg_options_get_uint(o, "size", 7), ==, 7);
    g_assert_cmpuint(diskimg_options_get_uint(o, "no-such", 9), ==, 9);
    g_assert_true(diskimg_options_get_bool(o, "no-such", true));
    g_assert_null(diskimg_options_get_str(o, "no-such"));
    g_assert_null(diskimg_options_get_list(o, "tags"));

    g_assert_cmpint(diskimg_options_parse(o, "size=1.5M,cluster_size=4k,lazy_refcounts,"
                                             "refcount_bits=0x10,backing_file=a,,b.img,"
                                             "encrypt.format=luks,tags=x,tags=y,backing-fmt=raw",
                                          &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(diskimg_options_get_uint(o, "size", 0), ==, 1572864);
    g_assert_cmpuint(diskimg_options_get_uint(o, "cluster_size", 0), ==, 4096);
    g_assert_true(diskimg_options_get_bool(o, "lazy_refcounts", false));
    g_assert_cmpint(diskimg_options_get_int(o, "refcount_bits", 0), ==, 16);
    g_assert_cmpstr(diskimg_options_get_str(o, "backing_file"), ==, "a,b.img");
    g_assert_cmpstr(diskimg_options_get_str(o, "encrypt.format"), ==, "luks");
    g_assert_cmpstr(diskimg_options_get_str(o, "backing_fmt"), ==, "raw");
    const char *tags[] = { "x", "y", NULL };
    g_assert_cmpstrv(diskimg_options_get_list(o, "tags"), tags);
    g_assert_true(diskimg_options_has(o, "encrypt"));
    g_assert_true(diskimg_options_has(o, "backing-fmt"));
    g_assert_false(diskimg_options_has(o, "encrypt.key-secret"));
    g_assert_false(diskimg_options_has(o, "compat"));

    /* The last value wins. */
    g_assert_cmpint(diskimg_options_set(o, "cluster_size", "2M", &err), ==, 0);
    g_assert_cmpuint(diskimg_options_get_uint(o, "cluster_size", 0), ==, 2097152);

    g_autofree char *text = diskimg_options_to_string(o);
    g_assert_cmpstr(text, ==,
                    "size=1.5M,backing_file=a,,b.img,backing_fmt=raw,cluster_size=2M,"
                    "lazy_refcounts=on,refcount_bits=0x10,encrypt.format=luks,tags=x,tags=y");
    g_autofree char *line = diskimg_options_format_line(o);
    g_assert_cmpstr(line, ==,
                    "size=1572864 compat=1.1 backing_file=a,b.img backing_fmt=raw "
                    "cluster_size=2097152 lazy_refcounts=on refcount_bits=16 "
                    "encrypt.format=luks tags=x tags=y");
    JsonNode *json = diskimg_options_to_json(o);
    g_autofree char *json_text = diskimg_render_json(json, false);
    g_assert_cmpstr(json_text, ==,
                    "{\"size\": 1572864, \"backing_file\": \"a,b.img\", \"backing_fmt\": \"raw\", "
                    "\"cluster_size\": 2097152, \"lazy_refcounts\": true, \"refcount_bits\": 16, "
                    "\"encrypt\": {\"format\": \"luks\"}, \"tags\": [\"x\", \"y\"]}");
    json_node_unref(json);

    diskimg_options_unset(o, "encrypt");
    g_assert_false(diskimg_options_has(o, "encrypt.format"));
    diskimg_options_unset(o, "size");
    g_assert_false(diskimg_options_has(o, "size"));
    g_assert_cmpint(diskimg_options_check_required(o, &err), ==, 0);
    diskimg_options_free(o);
    diskimg_schema_free(s);
}

static void test_option_amend_subset(void)
{
    diskimg_schema *s = sample_schema();
    diskimg_options *o = sample_options(s, "amend-options");
    GError *err = NULL;
    g_assert_cmpint(diskimg_options_parse(o, "compat=v3,lazy_refcounts=off,encrypt.format=aes",
                                          &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_options_get_str(o, "compat"), ==, "v3");
    assert_set_error(o, "cluster_size", "64k", "Invalid parameter 'cluster_size'");
    assert_refused(o, "compat", "v4", "Parameter 'compat' does not accept value 'v4'");
    diskimg_options_free(o);

    /* A set the schema lacks accepts nothing and defaults nothing. */
    o = sample_options(s, "open-options");
    assert_set_error(o, "size", "1", "Invalid parameter 'size'");
    g_assert_cmpuint(diskimg_options_get_uint(o, "size", 3), ==, 3);
    diskimg_options_free(o);
    diskimg_schema_free(s);
}

/* amend-options may define options of amend only (qemu's LUKS keyslot
 * options); they follow the names taken from create-options. */
static void test_amend_definitions(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse(
        RAW_HEAD "  a: {type: str}\n  b: {type: int}\n"
        "amend-options:\n"
        "  - state: {type: enum, values: [active, inactive], help: new state}\n"
        "  - b\n"
        "  - keyslot: {type: int, min: 0, max: 7}\n", "raw.yaml", &err);
    g_assert_no_error(err);
    g_auto(GStrv) keys = diskimg_schema_set_keys(s, "amend-options");
    const char *expected[] = { "b", "state", "keyslot", NULL };
    g_assert_cmpstrv(keys, expected);
    g_auto(GStrv) create = diskimg_schema_set_keys(s, "create-options");
    const char *create_expected[] = { "a", "b", NULL };
    g_assert_cmpstrv(create, create_expected);
    diskimg_options *o = diskimg_options_new(s, "amend-options");
    g_assert_cmpint(diskimg_options_parse(o, "state=inactive,keyslot=3,b=1", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpstr(diskimg_options_get_str(o, "state"), ==, "inactive");
    g_assert_cmpint(diskimg_options_get_int(o, "keyslot", -1), ==, 3);
    assert_refused(o, "keyslot", "9", "keyslot must be an integer between 0 and 7, not 9");
    assert_set_error(o, "zzzzzz", "x", "Invalid parameter 'zzzzzz'");
    diskimg_options_free(o);
    o = diskimg_options_new(s, "create-options");
    assert_set_error(o, "state", "active", "Invalid parameter 'state'");
    diskimg_options_free(o);
    diskimg_schema_free(s);

    assert_schema_error(RAW_HEAD "  a: {type: str}\namend-options:\n  - a: {type: int}\n",
                        "raw.yaml:6:5: amend option 'a' is already in create-options");
    assert_schema_error(RAW_HEAD "  a: {type: str}\namend-options:\n  - k: {type: int}\n"
                        "  - k: {type: str}\n",
                        "raw.yaml:7:5: amend option 'k' is listed twice");
    assert_schema_error(RAW_HEAD "  a: {type: str}\namend-options:\n  - [a]\n",
                        "raw.yaml:6:5: amend options must be names or one-member mappings");
    assert_schema_error(RAW_HEAD "  a: {type: str}\namend-options:\n  - k: {type: sise}\n",
                        "raw.yaml:6:9: unknown type 'sise' (expected str, bool, int, size, enum, "
                        "secret-id, struct, list)");
}

static void test_option_required(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse("plugin: posix\nkind: io\nopen-options:\n"
                                             "  filename: {type: str, required: true}\n",
                                             "posix.yaml", &err);
    g_assert_no_error(err);
    diskimg_options *o = sample_options(s, "open-options");
    g_assert_cmpint(diskimg_options_check_required(o, &err), ==, -1);
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_assert_cmpstr(err->message, ==, "posix: missing required option 'filename'");
    g_clear_error(&err);
    g_assert_cmpint(diskimg_options_set(o, "filename", "x", &err), ==, 0);
    g_assert_cmpint(diskimg_options_check_required(o, &err), ==, 0);
    diskimg_options_free(o);
    diskimg_schema_free(s);
}

static void test_wants_help(void)
{
    g_assert_true(diskimg_options_text_wants_help("help"));
    g_assert_true(diskimg_options_text_wants_help("size=1G,?"));
    g_assert_true(diskimg_options_text_wants_help("a=b,,c,help"));
    g_assert_false(diskimg_options_text_wants_help("backing_file=help"));
    g_assert_false(diskimg_options_text_wants_help("a=x,,help"));
    g_assert_false(diskimg_options_text_wants_help(""));
    g_assert_false(diskimg_options_text_wants_help(NULL));
}

/* ------------------------------------------------------------------ sizes */

static void assert_size(const char *text, uint64_t expected)
{
    GError *err = NULL;
    uint64_t v = 0;
    g_assert_cmpint(diskimg_parse_size(text, &v, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(v, ==, expected);
}

static void assert_size_error(const char *text, const char *message)
{
    GError *err = NULL;
    uint64_t v = 42;
    g_assert_cmpint(diskimg_parse_size(text, &v, &err), ==, -1);
    /* out of range has its own code (qemu words it differently) */
    int code = strstr(message, "too large") ? DISKIMG_ERROR_FAILED : DISKIMG_ERROR_INVALID;
    g_assert_error(err, DISKIMG_ERROR, code);
    g_assert_cmpstr(err->message, ==, message);
    g_assert_cmpuint(v, ==, 42);
    g_error_free(err);
}

static void test_parse_size(void)
{
    assert_size("512", 512);
    assert_size("64k", 65536);
    assert_size("64K", 65536);
    assert_size("1.5M", 1572864);
    assert_size("1G", 1073741824);
    assert_size("1g", 1073741824);
    assert_size("2T", UINT64_C(2) << 40);
    assert_size("1E", UINT64_C(1) << 60);
    assert_size("100b", 100);
    assert_size(" 4k", 4096);
    assert_size("0x10", 16);
    assert_size("0X1000", 4096);
    assert_size("0.5k", 512);
    assert_size("15E", UINT64_C(15) << 60);
    assert_size("18446744073709551615", UINT64_MAX);
    assert_size_error("12Q", "invalid size '12Q': use a number with an optional k, M, G, T, P or "
                             "E suffix");
    assert_size_error("-5", "invalid size '-5': sizes cannot be negative");
    assert_size_error("20E", "invalid size '20E': the value is too large");
    assert_size_error("18446744073709551616", "invalid size '18446744073709551616': the value is "
                                              "too large");
    assert_size_error("1.5", "invalid size '1.5': a fraction needs a k, M, G, T, P or E suffix");
    assert_size_error("", "invalid size '': use a number with an optional k, M, G, T, P or E "
                          "suffix");
    assert_size_error("4kB", "invalid size '4kB': use a number with an optional k, M, G, T, P "
                             "or E suffix");
    assert_size_error("0x1.5k", "invalid size '0x1.5k': hexadecimal sizes cannot have a "
                                "fraction");
    assert_size_error("1.k", "invalid size '1.k': use a number with an optional k, M, G, T, P or "
                             "E suffix");
}

/* ------------------------------------------------------------------- help */

static void test_help(void)
{
    diskimg_schema *s = sample_schema();
    g_autofree char *help = diskimg_schema_options_help(s, "create-options");
    g_assert_cmpstr(help, ==,
        "Supported qcow2 options:\n"
        "  backing_file=<str>     - File name of a base image\n"
        "  backing_fmt=<str>      - Image format of the base image\n"
        "  cluster_size=<size>    - qcow2 cluster size (512 to 2M, power of two; default: 64k)\n"
        "  compat=<str>           - Compatibility level (allowed values: 0.10, 1.1, v2, v3; "
        "default: 1.1)\n"
        "  encrypt.format=<str>   - Encryption format (allowed values: aes, luks)\n"
        "  encrypt.key-secret=<str> - ID of the secret\n"
        "  lazy_refcounts=<bool (on/off)> - Postpone refcount updates (default: off)\n"
        "  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full; "
        "default: off)\n"
        "  refcount_bits=<num>    - Width of a reference count entry in bits (1 to 64; "
        "default: 16)\n"
        "  size=<size>            - Virtual disk size\n"
        "  tags=<str>\n");
    g_autofree char *none = diskimg_schema_options_help(s, "open-options");
    g_assert_cmpstr(none, ==, "Supported qcow2 options:\n");
    diskimg_schema_free(s);
}

/* -------------------------------------------------------------- rendering */

static JsonNode *json_from_text(const char *text)
{
    GError *err = NULL;
    JsonNode *n = json_from_string(text, &err);
    g_assert_no_error(err);
    return n;
}

static void test_render_human(void)
{
    JsonNode *n = json_from_text("{\"compat\": \"1.1\", \"lazy-refcounts\": false,"
                                 " \"bitmaps\": [{\"flags\": [\"auto\"], \"name\": \"b1\","
                                 " \"granularity\": 65536}], \"empty\": {}, \"ints\": [1, 2]}");
    GString *out = g_string_new(NULL);
    diskimg_render_human(out, n, 4);
    g_assert_cmpstr(out->str, ==,
                    "    compat: 1.1\n"
                    "    lazy refcounts: false\n"
                    "    bitmaps:\n"
                    "        [0]:\n"
                    "            flags:\n"
                    "                [0]: auto\n"
                    "            name: b1\n"
                    "            granularity: 65536\n"
                    "    empty:\n"
                    "    ints:\n"
                    "        [0]: 1\n"
                    "        [1]: 2\n");
    g_string_free(out, TRUE);
    json_node_unref(n);
}

static void test_render_json(void)
{
    JsonNode *n = json_from_text("{\"a\": 1, \"b\": [{\"c\": true}, {\"d\": null}], \"e\": {},"
                                 " \"f\": [], \"s\": \"x\\\"\\\\\\n\\u0001\\u00e9\\ud83d\\ude00\","
                                 " \"g\": 0.5}");
    g_autofree char *compact = diskimg_render_json(n, false);
    g_assert_cmpstr(compact, ==,
                    "{\"a\": 1, \"b\": [{\"c\": true}, {\"d\": null}], \"e\": {}, \"f\": [], "
                    "\"s\": \"x\\\"\\\\\\n\\u0001\\u00E9\\uD83D\\uDE00\", \"g\": 0.5}");
    g_autofree char *pretty = diskimg_render_json(n, true);
    g_assert_cmpstr(pretty, ==,
                    "{\n"
                    "    \"a\": 1,\n"
                    "    \"b\": [\n"
                    "        {\n"
                    "            \"c\": true\n"
                    "        },\n"
                    "        {\n"
                    "            \"d\": null\n"
                    "        }\n"
                    "    ],\n"
                    "    \"e\": {\n"
                    "    },\n"
                    "    \"f\": [\n"
                    "    ],\n"
                    "    \"s\": \"x\\\"\\\\\\n\\u0001\\u00E9\\uD83D\\uDE00\",\n"
                    "    \"g\": 0.5\n"
                    "}");
    json_node_unref(n);
}

/* ---------------------------------------------------------------- conform */

static JsonObject *conform_text(diskimg_schema *s, const char *type, const char *text,
                                GError **err)
{
    JsonNode *n = json_from_text(text);
    JsonObject *o = diskimg_schema_conform(s, type, json_node_get_object(n), err);
    json_node_unref(n);
    return o;
}

static void test_conform(void)
{
    diskimg_schema *s = sample_schema();
    GError *err = NULL;
    JsonObject *o = conform_text(s, "info",
                                 "{\"bitmaps\": [{\"flags\": [\"auto\"], \"granularity\": 65536,"
                                 " \"name\": \"b1\"}], \"refcount-bits\": 16, \"compat\": \"1.1\"}",
                                 &err);
    g_assert_no_error(err);
    JsonNode *n = json_node_init_object(json_node_alloc(), o);
    g_autofree char *text = diskimg_render_json(n, false);
    g_assert_cmpstr(text, ==,
                    "{\"compat\": \"1.1\", \"refcount-bits\": 16, \"bitmaps\": [{\"name\": \"b1\","
                    " \"granularity\": 65536, \"flags\": [\"auto\"]}]}");
    json_node_unref(n);
    json_object_unref(o);

    static const struct {
        const char *json, *message;
    } bad[] = {
        { "{\"compat\": \"1.1\", \"refcount-bits\": 16, \"x\": 1}",
          "plugin qcow2: info member 'x' is not in the schema" },
        { "{\"compat\": \"1.1\"}", "plugin qcow2: info member 'refcount-bits' is missing" },
        { "{\"compat\": 1, \"refcount-bits\": 16}",
          "plugin qcow2: info member 'compat' must be a string, not an integer" },
        { "{\"compat\": \"1.1\", \"refcount-bits\": \"16\"}",
          "plugin qcow2: info member 'refcount-bits' must be an integer, not a string" },
        { "{\"compat\": \"1.1\", \"refcount-bits\": 16, \"lazy-refcounts\": 0}",
          "plugin qcow2: info member 'lazy-refcounts' must be a boolean, not an integer" },
        { "{\"compat\": \"1.1\", \"refcount-bits\": 16, \"bitmaps\": {}}",
          "plugin qcow2: info member 'bitmaps' must be a list, not an object" },
        { "{\"compat\": \"1.1\", \"refcount-bits\": 16, \"bitmaps\": [{\"name\": \"b\","
          " \"granularity\": 1, \"flags\": [\"dirty\"]}]}",
          "plugin qcow2: info member 'bitmaps[0].flags[0]' must be one of in-use, auto, "
          "not 'dirty'" },
        { "{\"compat\": \"1.1\", \"refcount-bits\": 16, \"bitmaps\": [{\"name\": \"b\"}]}",
          "plugin qcow2: info member 'bitmaps[0].granularity' is missing" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_null(conform_text(s, "info", bad[i].json, &err));
        g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_FAILED);
        g_assert_cmpstr(err->message, ==, bad[i].message);
        g_clear_error(&err);
    }
    g_assert_null(conform_text(s, "Nope", "{}", &err));
    g_assert_error(err, DISKIMG_ERROR, DISKIMG_ERROR_INVALID);
    g_clear_error(&err);

    o = conform_text(s, "BitmapInfo", "{\"flags\": [], \"name\": \"n\", \"granularity\": 2}", &err);
    g_assert_no_error(err);
    g_assert_cmpint(json_object_get_size(o), ==, 3);
    json_object_unref(o);
    diskimg_schema_free(s);
}

static void test_schema_to_json(void)
{
    GError *err = NULL;
    diskimg_schema *s = diskimg_schema_parse("plugin: raw\nkind: format\nsummary: Raw\n"
                                             "probe-fallback: true\npackage: p\n"
                                             "create-options:\n"
                                             "  cs: {type: size, min: 1k, default: 64k, help: H}\n"
                                             "  e: {type: struct, members: {f: {type: enum,"
                                             " values: [a], refused: {b: no}, alias: g}}}\n"
                                             "info:\n  l: {type: list, element: int, optional: true}\n",
                                             "raw.yaml", &err);
    g_assert_no_error(err);
    JsonNode *n = diskimg_schema_to_json(s);
    g_autofree char *text = diskimg_render_json(n, false);
    g_assert_cmpstr(text, ==,
                    "{\"introspection-version\": 1, "
                    "\"name\": \"raw\", \"kind\": \"format\", \"summary\": \"Raw\", "
                    "\"flags\": {\"probe-fallback\": true, \"package\": \"p\"}, "
                    "\"options\": {\"create-options\": ["
                    "{\"name\": \"cs\", \"type\": \"size\", \"help\": \"H\", \"default\": 65536, "
                    "\"min\": 1024}, "
                    "{\"name\": \"e\", \"type\": \"struct\", \"members\": [{\"name\": \"f\", "
                    "\"type\": \"enum\", \"values\": [\"a\"], \"refused\": {\"b\": \"no\"}, "
                    "\"alias\": \"g\"}]}]}, "
                    "\"info\": [{\"name\": \"l\", \"type\": \"list\", \"element\": "
                    "{\"type\": \"int\"}, \"optional\": true}], \"types\": {}}");
    json_node_unref(n);
    diskimg_schema_free(s);
}

/* ---------------------------------------------------------------- objects */

static void test_obj(void)
{
    JsonObject *root = json_object_new();
    diskimg_obj *o = diskimg_obj_from_json(root);
    diskimg_obj_set_str(o, "compat", "1.1");
    diskimg_obj_set_bool(o, "lazy-refcounts", false);
    diskimg_obj_set_int(o, "refcount-bits", 16);
    diskimg_obj_set_str(o, "gone", NULL);
    diskimg_list *l = diskimg_obj_add_list(o, "bitmaps");
    diskimg_obj *b = diskimg_list_add_obj(l);
    diskimg_obj_set_str(b, "name", "b1");
    diskimg_list *flags = diskimg_obj_add_list(b, "flags");
    diskimg_list_add_str(flags, "auto");
    diskimg_list_add_int(flags, 3);
    diskimg_obj *sub = diskimg_obj_add_obj(o, "sub");
    diskimg_obj_set_int(sub, "x", -1);
    diskimg_obj_set_int(o, "refcount-bits", 32);   /* replacing keeps the position */
    g_assert_true(diskimg_obj_json(o) == root);

    JsonNode *n = json_node_init_object(json_node_alloc(), root);
    g_autofree char *text = diskimg_render_json(n, false);
    g_assert_cmpstr(text, ==,
                    "{\"compat\": \"1.1\", \"lazy-refcounts\": false, \"refcount-bits\": 32, "
                    "\"bitmaps\": [{\"name\": \"b1\", \"flags\": [\"auto\", 3]}], "
                    "\"sub\": {\"x\": -1}}");
    json_node_unref(n);
    json_object_unref(root);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/schema/parse/good", test_parse_good);
    g_test_add_func("/schema/parse/tree", test_parse_tree);
    g_test_add_func("/schema/parse/errors", test_schema_errors);
    g_test_add_func("/schema/parse/protocols", test_protocols);
    g_test_add_func("/schema/parse/json", test_parse_json);
    g_test_add_func("/schema/parse/json-errors", test_json_errors);
    g_test_add_func("/schema/options/errors", test_option_errors);
    g_test_add_func("/schema/options/values", test_option_values);
    g_test_add_func("/schema/options/amend", test_option_amend_subset);
    g_test_add_func("/schema/options/amend-definitions", test_amend_definitions);
    g_test_add_func("/schema/options/required", test_option_required);
    g_test_add_func("/schema/options/wants-help", test_wants_help);
    g_test_add_func("/schema/size", test_parse_size);
    g_test_add_func("/schema/help", test_help);
    g_test_add_func("/schema/render/human", test_render_human);
    g_test_add_func("/schema/render/json", test_render_json);
    g_test_add_func("/schema/conform", test_conform);
    g_test_add_func("/schema/to-json", test_schema_to_json);
    g_test_add_func("/schema/obj", test_obj);
    return g_test_run();
}
