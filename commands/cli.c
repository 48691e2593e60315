/* SPDX-License-Identifier: MIT */
/*
 * The command-line machinery shared by all subcommands.  Option tables come
 * from schema/commands.yaml (embedded in libdiskimg), so adding an option is
 * a schema edit plus the code that reads its key.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LONG_ONLY_BASE 256

/* ------------------------------------------------------------ schema lookup */

static JsonObject *commands_root(void)
{
    const diskimg_schema *s = diskimg_core_schema("commands");
    JsonNode *tree = s ? diskimg_schema_tree(s) : NULL;
    if (!tree || !JSON_NODE_HOLDS_OBJECT(tree))
        return NULL;
    JsonObject *root = json_node_get_object(tree);
    return json_object_has_member(root, "commands")
               ? json_object_get_object_member(root, "commands") : NULL;
}

/* One command's entry; only that part of the document is converted, the
 * whole of it costs a noticeable share of a short command's run time. */
static JsonObject *command_spec(const char *command)
{
    static JsonNode *spec;
    static char *spec_of;
    if (spec_of && g_str_equal(spec_of, command))
        return json_node_get_object(spec);
    const diskimg_schema *s = diskimg_core_schema("commands");
    const char *const keys[] = { "commands", command, NULL };
    JsonNode *n = s ? diskimg_schema_subtree(s, keys) : NULL;
    if (!n || !JSON_NODE_HOLDS_OBJECT(n)) {
        if (n)
            json_node_unref(n);
        return NULL;
    }
    if (spec)
        json_node_unref(spec);
    g_free(spec_of);
    spec = n;
    spec_of = g_strdup(command);
    return json_node_get_object(spec);
}

static const char *str_member(JsonObject *o, const char *key)
{
    if (!o || !json_object_has_member(o, key))
        return NULL;
    JsonNode *n = json_object_get_member(o, key);
    return JSON_NODE_HOLDS_VALUE(n) ? json_node_get_string(n) : NULL;
}

static bool true_member(JsonObject *o, const char *key)
{
    const char *v = str_member(o, key);
    return v && (g_str_equal(v, "true") || g_str_equal(v, "yes"));
}

static JsonArray *array_member(JsonObject *o, const char *key)
{
    if (!o || !json_object_has_member(o, key))
        return NULL;
    JsonNode *n = json_object_get_member(o, key);
    return JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

/* The key under which an option's values are stored. */
static const char *option_key(JsonObject *opt)
{
    const char *key = str_member(opt, "key");
    if (key)
        return key;
    key = str_member(opt, "long");
    return key ? key : str_member(opt, "short");
}

/* ------------------------------------------------------------------ errors */

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "diskimg: %s\n", message);
    cli_progress_note_error(message);
}

void cli_gerror(GError *err)
{
    if (!err)
        return;
    cli_error("%s", err->message);
    g_error_free(err);
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fprintf(stderr, "diskimg: %s\nTry 'diskimg --help' for more information\n", message);
    cli_progress_note_error(message);
    return 1;
}

/* ------------------------------------------------------------------ values */

/* qemu-img's rule for each -o list, which it joins with ',': one that is
 * empty, starts with ',' or ends in an odd number of ',' would change the
 * meaning of the lists around it (",," is a literal comma). */
static bool is_valid_option_list(const char *list)
{
    size_t len = strlen(list), commas = 0;
    if (!len || list[0] == ',')
        return false;
    while (commas < len && list[len - 1 - commas] == ',')
        commas++;
    return commas % 2 == 0;
}

static void add_value(struct cli *c, JsonObject *opt, const char *value)
{
    const char *key = option_key(opt);
    GPtrArray *list = g_hash_table_lookup(c->values, key);
    if (!list) {
        list = g_ptr_array_new_with_free_func(g_free);
        g_hash_table_insert(c->values, g_strdup(key), list);
    }
    const char *repeat = str_member(opt, "repeat");
    if (!repeat)
        g_ptr_array_set_size(list, 0);       /* last one wins */
    /* `value: "merge:"` tags the value with its action, for --merge SRC. */
    const char *tag = str_member(opt, "value");
    if (tag && value)
        g_ptr_array_add(list, g_strconcat(tag, value, NULL));
    else
        g_ptr_array_add(list, g_strdup(tag ? tag : value ? value : "on"));
}

const char *cli_get(const struct cli *c, const char *key)
{
    GPtrArray *list = g_hash_table_lookup(c->values, key);
    if (list && list->len)
        return list->pdata[list->len - 1];
    return c->defaults ? g_hash_table_lookup(c->defaults, key) : NULL;
}

bool cli_flag(const struct cli *c, const char *key)
{
    GPtrArray *list = g_hash_table_lookup(c->values, key);
    return list && list->len;
}

GPtrArray *cli_list(const struct cli *c, const char *key)
{
    return g_hash_table_lookup(c->values, key);
}

char *cli_joined(const struct cli *c, const char *key)
{
    GPtrArray *list = cli_list(c, key);
    if (!list || !list->len)
        return NULL;
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < list->len; i++) {
        if (i)
            g_string_append_c(s, ',');
        g_string_append(s, list->pdata[i]);
    }
    return g_string_free(s, FALSE);
}

/* ------------------------------------------------------------------- parse */

/* commands.yaml is data the core does not validate: catch typos here (an
 * unquoted comma in a flow mapping silently makes a new key). */
static bool option_spec_is_valid(const char *command, JsonObject *opt)
{
    static const char *const known[] = { "short", "long", "arg", "key", "repeat", "value",
                                         "default", "help", NULL };
    GList *keys = json_object_get_members(opt);
    bool ok = true;
    for (GList *k = keys; k; k = k->next) {
        if (!g_strv_contains(known, k->data)) {
            cli_error("schema/commands.yaml: command '%s': unknown option attribute '%s'",
                      command, (char *)k->data);
            ok = false;
        }
    }
    g_list_free(keys);
    const char *s = str_member(opt, "short");
    if (!s && !str_member(opt, "long")) {
        cli_error("schema/commands.yaml: command '%s': option without short or long name",
                  command);
        ok = false;
    }
    if (s && strlen(s) != 1) {
        cli_error("schema/commands.yaml: command '%s': short option '%s' is not one letter",
                  command, s);
        ok = false;
    }
    return ok;
}

struct getopt_tables {
    GString *shortopts;
    GArray *longopts;           /* struct option */
    GPtrArray *specs;           /* JsonObject * per option index */
    GHashTable *defaults;       /* handed over to struct cli */
};

static bool build_tables(const char *command, JsonArray *options, struct getopt_tables *t)
{
    bool valid = true;
    /* Leading ':' makes getopt report a missing argument as ':'. */
    t->shortopts = g_string_new(":h");
    t->longopts = g_array_new(TRUE, TRUE, sizeof(struct option));
    t->specs = g_ptr_array_new();
    t->defaults = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    struct option help = { "help", no_argument, NULL, 'h' };
    g_array_append_val(t->longopts, help);
    for (guint i = 0; options && i < json_array_get_length(options); i++) {
        JsonObject *opt = json_array_get_object_element(options, i);
        valid = option_spec_is_valid(command, opt) && valid;
        const char *s = str_member(opt, "short");
        const char *l = str_member(opt, "long");
        bool has_arg = str_member(opt, "arg") != NULL;
        int val = s ? s[0] : LONG_ONLY_BASE + (int)i;
        g_ptr_array_add(t->specs, opt);
        if (str_member(opt, "default"))
            g_hash_table_replace(t->defaults, g_strdup(option_key(opt)),
                                 g_strdup(str_member(opt, "default")));
        if (s) {
            g_string_append_c(t->shortopts, s[0]);
            if (has_arg)
                g_string_append_c(t->shortopts, ':');
        }
        if (l) {
            struct option o = { l, has_arg ? required_argument : no_argument, NULL, val };
            g_array_append_val(t->longopts, o);
        }
    }
    return valid;
}

static JsonObject *spec_for_val(struct getopt_tables *t, int val)
{
    for (guint i = 0; i < t->specs->len; i++) {
        JsonObject *opt = t->specs->pdata[i];
        const char *s = str_member(opt, "short");
        if ((s && s[0] == val) || (!s && val == LONG_ONLY_BASE + (int)i))
            return opt;
    }
    return NULL;
}

static void free_tables(struct getopt_tables *t)
{
    g_string_free(t->shortopts, TRUE);
    g_array_free(t->longopts, TRUE);
    g_ptr_array_free(t->specs, TRUE);
}

/* qemu-img's wording for a wrong argument count: the command's
 * `argument-errors` in commands.yaml (`missing`, `extra`; "%s" in `extra`
 * is the first unexpected argument), else "Expecting one image file name". */
static int argument_count_error(struct cli *c, JsonObject *spec, const char *which,
                                const char *extra_arg)
{
    JsonObject *msgs = json_object_has_member(spec, "argument-errors")
                       ? json_object_get_object_member(spec, "argument-errors") : NULL;
    const char *fmt = msgs ? str_member(msgs, which) : NULL;
    if (!fmt)
        return cli_usage_error("Expecting one image file name");
    g_auto(GStrv) pieces = g_strsplit(fmt, "%s", -1);
    g_autofree char *text = g_strjoinv(extra_arg ? extra_arg : "", pieces);
    return cli_usage_error("%s", text);
}

/* Checks the number of positional arguments against the spec. */
static int check_arguments(struct cli *c, JsonObject *spec)
{
    JsonArray *arguments = array_member(spec, "arguments");
    guint n = arguments ? json_array_get_length(arguments) : 0;
    int required = 0, max = 0;
    bool many = false;
    for (guint i = 0; i < n; i++) {
        JsonObject *a = json_array_get_object_element(arguments, i);
        if (true_member(a, "many"))
            many = true;
        else if (!true_member(a, "optional"))
            required++;
        max++;
    }
    if (c->nargs < required || c->nargs < (many ? 1 : 0))
        return argument_count_error(c, spec, "missing", NULL);
    if (!many && c->nargs > max)
        return argument_count_error(c, spec, "extra", c->args[max]);
    return 0;
}

int cli_parse(struct cli *c, const char *command, int argc, char **argv, bool *done)
{
    *done = false;
    c->command = command;
    c->values = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)g_ptr_array_unref);
    JsonObject *spec = command_spec(command);
    if (!spec) {
        cli_error("Command not found: %s", command);
        return 1;
    }
    /* resize: the last argument is taken before options are parsed, so
     * that a size like -1G is not read as an option (qemu-img does this). */
    bool wants_help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    bool last_is_value = true_member(spec, "last-argument-is-value") && !wants_help;
    if (last_is_value) {
        if (argc < 3)
            return argument_count_error(c, spec, "too-short", NULL);
        argc--;
    }
    struct getopt_tables t;
    int ret = build_tables(command, array_member(spec, "options"), &t) ? 0 : 1;
    c->defaults = t.defaults;
    optind = 1;
    opterr = 0;
    while (ret == 0) {
        int longindex = -1;
        int val = getopt_long(argc, argv, t.shortopts->str,
                              (struct option *)(void *)t.longopts->data, &longindex);
        if (val == -1)
            break;
        if (val == 'h') {
            g_autofree char *help = cli_command_help(command);
            fputs(help, stdout);
            *done = true;
            break;
        }
        if (val == '?' || val == ':') {
            ret = cli_usage_error(val == ':' ? "missing argument for option '%s'"
                                             : "unrecognized option '%s'", argv[optind - 1]);
            break;
        }
        JsonObject *opt = spec_for_val(&t, val);
        const char *repeat = opt ? str_member(opt, "repeat") : NULL;
        if (repeat && g_str_equal(repeat, "join") && optarg && !is_valid_option_list(optarg)) {
            cli_error("Invalid option list: %s", optarg);
            ret = 1;
            break;
        }
        /* "--object help" and "--object secret,help" print what qemu-img
         * prints and end the command successfully, at once, as qemu-img's
         * option loop does. */
        if (opt && optarg && g_str_equal(option_key(opt), "object")) {
            g_autofree char *help = NULL;
            GError *err = NULL;
            /* a malformed one is refused by cli_objects(), with the
             * exit code of the command (compare's is 2) */
            int asked = diskimg_object_help(optarg, &help, &err);
            g_clear_error(&err);
            if (asked > 0) {
                fputs(help, stdout);
                *done = true;
                break;
            }
        }
        if (opt)
            add_value(c, opt, str_member(opt, "arg") ? optarg : NULL);
    }
    free_tables(&t);
    if (ret || *done)
        return ret;
    /* Any command that declares --progress-fd gets it: the lines come from
     * the progress layer, whatever the command counts. */
    const char *fd = cli_get(c, "progress-fd");
    if (fd && cli_progress_open_fd(fd))
        return 1;
    c->args = argv + optind;
    c->nargs = argc - optind + (last_is_value ? 1 : 0);
    c->quiet = cli_flag(c, "quiet");
    /* "-o help" needs no file names: the command prints help and stops. */
    g_autofree char *o = cli_joined(c, "options");
    if (o && diskimg_options_text_wants_help(o))
        return 0;
    return check_arguments(c, spec);
}

void cli_free(struct cli *c)
{
    if (c->values)
        g_hash_table_unref(c->values);
    if (c->defaults)
        g_hash_table_unref(c->defaults);
}

/* -------------------------------------------------------------------- help */

char *cli_command_help(const char *command)
{
    JsonObject *spec = command_spec(command);
    GString *s = g_string_new(NULL);
    if (!spec)
        return g_string_free(s, FALSE);
    g_string_append_printf(s, "Usage: diskimg %s\n\n%s.\n\nOptions:\n",
                           str_member(spec, "synopsis"), str_member(spec, "summary"));
    JsonArray *options = array_member(spec, "options");
    for (guint i = 0; options && i < json_array_get_length(options); i++) {
        JsonObject *opt = json_array_get_object_element(options, i);
        const char *sh = str_member(opt, "short"), *lo = str_member(opt, "long");
        const char *arg = str_member(opt, "arg");
        g_autofree char *names = g_strdup_printf(
            "%s%s%s%s%s%s%s", sh ? "-" : "", sh ? sh : "", sh && lo ? ", " : "",
            lo ? "--" : "", lo ? lo : "", arg ? (lo ? "=" : " ") : "", arg ? arg : "");
        g_string_append_printf(s, "  %-28s %s\n", names, str_member(opt, "help"));
    }
    g_string_append_printf(s, "  %-28s %s\n", "-h, --help", "show this help");
    JsonObject *codes = json_object_has_member(spec, "exit-codes")
                            ? json_object_get_object_member(spec, "exit-codes") : NULL;
    if (codes) {
        g_string_append(s, "\nExit status:\n");
        GList *keys = json_object_get_members(codes);
        for (GList *k = keys; k; k = k->next)
            g_string_append_printf(s, "  %-4s %s\n", (char *)k->data,
                                   str_member(codes, k->data));
        g_list_free(keys);
    }
    return g_string_free(s, FALSE);
}

char *cli_synopses(void)
{
    JsonObject *all = commands_root();
    GString *s = g_string_new(NULL);
    if (!all)
        return g_string_free(s, FALSE);
    GList *keys = json_object_get_members(all);
    for (GList *k = keys; k; k = k->next)
        g_string_append_printf(s, "  %s\n", str_member(json_object_get_object_member(all,
                                                                                      k->data),
                                                       "synopsis"));
    g_list_free(keys);
    return g_string_free(s, FALSE);
}

/* ----------------------------------------------------------------- helpers */

int cli_output_format(const struct cli *c, enum cli_output *out)
{
    const char *o = cli_get(c, "output");
    if (!o || g_str_equal(o, "human")) {
        *out = CLI_OUTPUT_HUMAN;
        return 0;
    }
    if (g_str_equal(o, "json")) {
        *out = CLI_OUTPUT_JSON;
        return 0;
    }
    cli_error("--output must be used with human or json as argument.");
    return 1;
}

/* Defines the --object arguments in order (a secret's keyid names an
 * earlier one).  Help requests ("--object help") were answered while
 * parsing (cli_parse), as qemu-img answers them. */
int cli_objects(const struct cli *c)
{
    GPtrArray *objs = cli_list(c, "object");
    for (guint i = 0; objs && i < objs->len; i++) {
        GError *err = NULL;
        if (diskimg_object_add(objs->pdata[i], &err) < 0) {
            cli_gerror(err);
            return 1;
        }
    }
    return 0;
}

void cli_open_defaults(const struct cli *c, struct cli_open *o)
{
    memset(o, 0, sizeof(*o));
    o->format = cli_get(c, "format");
    o->image_opts = cli_flag(c, "image-opts");
    o->force_share = cli_flag(c, "force-share");
}

/* What an --image-opts string names besides the format's own options. */
struct image_opts {
    char *driver, *filename;
    char *backing_driver;       /* backing.driver: the backing file's format */
    char *backing_filename;     /* backing.file.filename: replaces the recorded name */
    char *file_driver;          /* file.driver: an io plugin other than "file" */
    GString *file_rest;         /* file.KEY=VALUE: that io plugin's open-options */
    char *data_file;            /* data-file.filename: the user vouches for this file */
    const char *user_files[2];  /* { data_file, NULL } for diskimg_open_params */
};

static void image_opts_clear(struct image_opts *io)
{
    g_free(io->driver);
    g_free(io->filename);
    g_free(io->file_driver);
    if (io->file_rest)
        g_string_free(io->file_rest, TRUE);
    g_free(io->backing_driver);
    g_free(io->backing_filename);
    g_free(io->data_file);
}

/* Takes KEY=VALUE into *slot when item starts with key. */
static bool take_value(const GString *item, const char *key, char **slot)
{
    if (!g_str_has_prefix(item->str, key))
        return false;
    g_free(*slot);
    *slot = g_strdup(item->str + strlen(key));
    return true;
}

static void append_item(GString *list, const char *item)
{
    if (list->len)
        g_string_append_c(list, ',');
    /* values keep their escaped commas */
    for (const char *c = item; *c; c++) {
        if (*c == ',')
            g_string_append_c(list, ',');
        g_string_append_c(list, *c);
    }
}

/* True when `name` is an io plugin that serves protocols (nbd, rbd...):
 * qemu's protocol drivers, which --image-opts may name as driver=. */
static bool is_protocol_driver(const char *name)
{
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_IO, name);
    g_auto(GStrv) protocols = s ? diskimg_schema_protocols(s) : NULL;
    return protocols && protocols[0];
}

/* A name for a node that the options alone describe, as qemu names one:
 * json:{"driver": "nbd", "server.host": "h", ...}. */
static char *options_display_name(const char *driver, const char *options)
{
    GString *name = g_string_new(NULL);
    g_string_append_printf(name, "json:{\"driver\": \"%s\"", driver);
    g_auto(GStrv) items = g_strsplit(options, ",", -1);
    for (char **it = items; *it; it++) {
        const char *eq = strchr(*it, '=');
        if (eq)
            g_string_append_printf(name, ", \"%.*s\": \"%s\"", (int)(eq - *it), *it, eq + 1);
    }
    g_string_append_c(name, '}');
    return g_string_free(name, FALSE);
}

/* driver=nbd,server.host=h,...: the protocol is the image, as a raw
 * format over that io plugin; its keys are the plugin's open-options. */
static void take_protocol_driver(struct image_opts *io, GString *rest)
{
    io->file_driver = io->driver;
    io->driver = g_strdup("raw");
    g_string_assign(io->file_rest, rest->str);
    g_string_truncate(rest, 0);
}

/* Splits an --image-opts string into what struct image_opts holds and the
 * rest (the format's open-options). */
static int split_image_opts(const char *text, struct image_opts *io, GString *rest,
                            GError **errp)
{
    g_auto(GStrv) parts = g_strsplit(text, ",", -1);
    io->file_rest = g_string_new(NULL);
    g_autofree char *plain_filename = NULL;
    for (char **p = parts; *p; p++) {
        /* ",," is an escaped comma: glue the pieces back together. */
        GString *item = g_string_new(*p);
        while (p[1] && !*p[1] && p[2]) {
            g_string_append_printf(item, ",%s", p[2]);
            p += 2;
        }
        char *file_driver = NULL;
        if (take_value(item, "driver=", &io->driver) ||
            take_value(item, "file.filename=", &io->filename) ||
            take_value(item, "filename=", &plain_filename) ||
            take_value(item, "backing.driver=", &io->backing_driver) ||
            take_value(item, "backing.file.filename=", &io->backing_filename) ||
            take_value(item, "data-file.filename=", &io->data_file)) {
        } else if (take_value(item, "file.driver=", &file_driver)) {
            /* "file" is the default io plugin's protocol: nothing to choose */
            if (!g_str_equal(file_driver, "file")) {
                g_free(io->file_driver);
                io->file_driver = g_steal_pointer(&file_driver);
            }
            g_free(file_driver);
        } else if (g_str_has_prefix(item->str, "backing.file.driver=")) {
            /* the backing file's protocol follows from its name */
        } else if (g_str_has_prefix(item->str, "file.")) {
            append_item(io->file_rest, item->str + strlen("file."));
        } else if (item->len) {
            append_item(rest, item->str);
        }
        g_string_free(item, TRUE);
    }
    if (io->driver && is_protocol_driver(io->driver)) {
        if (plain_filename && !io->filename)
            io->filename = g_steal_pointer(&plain_filename);
        take_protocol_driver(io, rest);
    } else if (plain_filename) {
        append_item(rest, "filename=");
        g_string_append(rest, plain_filename);
    }
    if (!io->filename && io->file_driver)
        io->filename = options_display_name(io->file_driver, io->file_rest->str);
    io->user_files[0] = io->data_file;
    if (!io->filename) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "Parameter 'file.filename' is required in '%s'", text);
        return -1;
    }
    return 0;
}

/* Parses --image-opts keys into `o`; a key the schema does not have is
 * refused in qemu-img's words for the layer ("Block format 'qcow2' does not
 * support the option 'x'"); the "Did you mean" line stays. */
static int parse_layer_options(diskimg_options *o, const char *text, const char *layer,
                               const char *name, GError **errp)
{
    if (diskimg_options_parse(o, text, errp) == 0)
        return 0;
    static const char unknown[] = "Invalid parameter '";
    GError *e = *errp;
    if (e && g_str_has_prefix(e->message, unknown)) {
        const char *key = e->message + strlen(unknown);
        const char *end = strchr(key, '\'');
        const char *hint = strchr(key, '\n');
        g_autofree char *text2 = g_strdup_printf(
            "Block %s '%s' %s the option '%.*s'%s", layer, name,
            g_str_equal(layer, "format") ? "does not support" : "doesn't support",
            (int)(end ? end - key : (ptrdiff_t)strlen(key)), key, hint ? hint : "");
        g_free(e->message);
        e->message = g_steal_pointer(&text2);
    }
    return -1;
}

/* The io plugin's open-options an --image-opts string gave with file.KEY=;
 * without file.driver= they are the default plugin's (qemu's "file"
 * protocol: file.locking=off, file.aio=...). */
static int image_opts_file_options(const struct image_opts *io, struct diskimg_open_params *p,
                                   diskimg_options **out, GError **errp)
{
    *out = NULL;
    if (!io->file_driver && !io->file_rest->len)
        return 0;
    const char *plugin = io->file_driver ? io->file_driver : diskimg_default_io();
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_IO, plugin);
    if (!s) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Unknown protocol '%s' (no I/O plugin of that name is installed)", plugin);
        return -1;
    }
    p->io = plugin;
    *out = diskimg_options_new(s, "open-options");
    if (io->file_rest->len &&
        parse_layer_options(*out, io->file_rest->str, "protocol",
                            io->file_driver ? io->file_driver : "file", errp) < 0) {
        diskimg_options_free(*out);
        *out = NULL;
        return -1;
    }
    p->file_options = *out;
    return 0;
}

/* Opens what an --image-opts string describes; p holds the rest. */
/* qemu-img names an image given as options by the whole option string
 * in its open errors ("Could not open 'driver=...,file.filename=...'"),
 * and a driver it does not know as a driver. */
static void name_image_opts_error(const char *name, const struct image_opts *io, GError **errp)
{
    if (!errp || !*errp)
        return;
    GError *e = *errp;
    g_autofree char *message = NULL;
    if (io->driver && e->code == DISKIMG_ERROR_NO_PLUGIN && !strstr(e->message, "install"))
        message = g_strdup_printf("Unknown driver '%s'", io->driver);
    else
        message = g_strdup(io->filename ? cli_open_error_detail(io->filename, e->message)
                                        : e->message);
    g_autofree char *text = g_strdup_printf("Could not open '%s': %s", name, message);
    g_free(e->message);
    e->message = g_steal_pointer(&text);
}

static diskimg_node *open_with_image_opts(const struct image_opts *io, const GString *rest,
                                          struct diskimg_open_params *p, GError **errp)
{
    p->format = io->driver;
    if (io->backing_driver)
        p->backing_format = io->backing_driver;
    p->backing_filename = io->backing_filename;
    /* Under --untrusted, the data file the image names is opened only when
     * it is this one (docs/untrusted.md). */
    p->user_files = io->user_files;
    diskimg_options *fopts = NULL, *file_opts = NULL;
    if (image_opts_file_options(io, p, &file_opts, errp) < 0)
        return NULL;
    if (rest->len) {
        if (!io->driver || diskimg_format_require(io->driver, errp) < 0) {
            if (!io->driver)
                g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                            "Parameter 'driver' is required with image options");
            diskimg_options_free(file_opts);
            return NULL;
        }
        fopts = diskimg_options_new(diskimg_plugin_schema(DISKIMG_KIND_FORMAT, io->driver),
                                    "open-options");
        if (parse_layer_options(fopts, rest->str, "format", io->driver, errp) < 0) {
            diskimg_options_free(fopts);
            diskimg_options_free(file_opts);
            return NULL;
        }
        p->format_options = fopts;
    }
    diskimg_node *n = diskimg_open(io->filename, p, errp);
    /* Plugins copy what they keep of their options during open. */
    diskimg_options_free(fopts);
    diskimg_options_free(file_opts);
    return n;
}

diskimg_node *cli_open_image(const char *name, const struct cli_open *o, GError **errp)
{
    struct diskimg_open_params p = { .struct_size = sizeof(p) };
    p.format = o->format;
    p.backing_format = o->backing_format;
    p.flags = (o->writable ? DISKIMG_OPEN_RDWR : 0) |
              (o->force_share && !o->writable ? DISKIMG_OPEN_FORCE_SHARE : 0) |
              (o->no_backing ? DISKIMG_OPEN_NO_BACKING : 0) |
              (o->unsafe_chain ? DISKIMG_OPEN_UNSAFE_CHAIN : 0) |
              (o->no_lock ? DISKIMG_OPEN_NO_LOCK : 0) |
              (o->check ? DISKIMG_OPEN_CHECK : 0) |
              (o->no_io ? DISKIMG_OPEN_NO_IO : 0) |
              (o->probed ? DISKIMG_OPEN_PROBED : 0);
    p.format_options = o->format_options;
    if (o->cache && diskimg_cache_parse(o->cache, &p.cache, NULL) < 0) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Invalid %scache option: %s",
                    o->source_cache ? "source " : "", o->cache);
        return NULL;
    }
    if (o->format && !o->image_opts && diskimg_format_require(o->format, NULL) < 0) {
        GError *why = NULL;
        diskimg_format_require(o->format, &why);
        /* qemu's words, unless we can name the package that would help */
        if (strstr(why->message, "install")) {
            g_propagate_error(errp, why);
            return NULL;
        }
        g_error_free(why);
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Could not open '%s': Unknown driver '%s'", name, o->format);
        return NULL;
    }
    if (!o->image_opts)
        return diskimg_open(name, &p, errp);
    if (o->format) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "--image-opts and --format are mutually exclusive");
        return NULL;
    }

    struct image_opts io = { 0 };
    g_autoptr(GString) rest = g_string_new(NULL);
    if (split_image_opts(name, &io, rest, errp) < 0) {
        image_opts_clear(&io);
        return NULL;
    }
    diskimg_node *n = open_with_image_opts(&io, rest, &p, errp);
    if (!n)
        name_image_opts_error(name, &io, errp);
    image_opts_clear(&io);
    return n;
}


int cli_parse_size(const char *text, uint64_t *out, const char *what)
{
    GError *err = NULL;
    if (diskimg_parse_size(text, out, &err) < 0) {
        bool too_large = err->code == DISKIMG_ERROR_FAILED;
        g_clear_error(&err);
        if (too_large && !what) {
            cli_error("Invalid image size specified. Must be between 0 and %" PRId64 ".",
                      INT64_MAX);
            return 1;
        }
        cli_error("Invalid %s specified. You may use k, M, G, T, P or E suffixes for",
                  what ? what : "image size");
        cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
        return 1;
    }
    if (!what && *out > INT64_MAX) {
        cli_error("Invalid image size specified. Must be between 0 and %" PRId64 ".", INT64_MAX);
        return 1;
    }
    return 0;
}

const char *cli_open_error_detail(const char *path, const char *message)
{
    g_autofree char *outer = g_strdup_printf("Could not open '%s': ", path);
    return g_str_has_prefix(message, outer) ? message + strlen(outer) : message;
}

int cli_parse_size_parameter(const char *text, const char *name, uint64_t *out)
{
    GError *err = NULL;
    if (diskimg_parse_size(text, out, &err) == 0)
        return 0;
    bool too_large = err->code == DISKIMG_ERROR_FAILED;
    g_clear_error(&err);
    if (too_large)
        cli_error("Value '%s' is out of range for parameter '%s'", text, name);
    else
        cli_error("Parameter '%s' expects a non-negative number below 2^64\n"
                  "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                  "and exabytes, respectively.", name);
    return 1;
}

char *cli_human_size(uint64_t bytes)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    int exp;
    /* qemu scales by 1000/1024 so 1000..1023 KiB reads "0.98 MiB". */
    frexp((double)bytes / (1000.0 / 1024.0), &exp);
    int i = (exp - 1) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    double div = (double)(1ULL << (i * 10));
    return g_strdup_printf("%0.3g %s", (double)bytes / div, units[i]);
}

void cli_print_json(JsonNode *node)
{
    g_autofree char *text = diskimg_render_json(node, true);
    printf("%s\n", text);
}

int cli_print_typed(const char *type, JsonObject *obj)
{
    GError *err = NULL;
    g_autoptr(JsonObject) ordered = diskimg_schema_conform(diskimg_core_schema("types"), type,
                                                           obj, &err);
    json_object_unref(obj);
    if (!ordered) {
        cli_gerror(err);
        return 1;
    }
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(node, ordered);
    cli_print_json(node);
    return 0;
}

/* Splits "a=b,c=d" into key/value pairs (",," is a literal comma). */
static GPtrArray *split_option_text(const char *text)
{
    GPtrArray *items = g_ptr_array_new_with_free_func(g_free);
    GString *cur = g_string_new(NULL);
    for (const char *p = text;; p++) {
        if (*p == ',' && p[1] == ',') {
            g_string_append_c(cur, ',');
            p++;
        } else if (*p && *p != ',') {
            g_string_append_c(cur, *p);
        } else {
            if (cur->len)
                g_ptr_array_add(items, g_strdup(cur->str));
            g_string_truncate(cur, 0);
            if (!*p)
                break;
        }
    }
    g_string_free(cur, TRUE);
    return items;
}

static bool set_has_key(const diskimg_schema *s, const char *set, const char *key)
{
    g_auto(GStrv) keys = s ? diskimg_schema_set_keys(s, set) : NULL;
    return keys && g_strv_contains((const char *const *)keys, key);
}

/* The io plugin that will create `filename`: a protocol's (rbd:...) or
 * the default one. */
static const diskimg_schema *target_io_schema(const char *filename)
{
    const char *io = diskimg_protocol_io(filename);
    return diskimg_plugin_schema(DISKIMG_KIND_IO, io ? io : diskimg_default_io());
}

diskimg_options *cli_create_options(const char *format, const char *text, const char *filename,
                                    diskimg_options **file_options, GError **deferred,
                                    GError **errp)
{
    if (diskimg_format_require(format, errp) < 0)
        return NULL;
    const diskimg_schema *fs = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    const diskimg_schema *io = target_io_schema(filename);
    diskimg_options *o = diskimg_options_new(fs, "create-options");
    if (file_options)
        *file_options = io ? diskimg_options_new(io, "create-options") : NULL;
    g_autoptr(GPtrArray) items = split_option_text(text ? text : "");
    for (guint i = 0; i < items->len; i++) {
        const char *item = items->pdata[i];
        const char *eq = strchr(item, '=');
        g_autofree char *key = eq ? g_strndup(item, (gsize)(eq - item)) : g_strdup(item);
        const char *value = eq ? eq + 1 : "on";
        bool to_file = file_options && *file_options &&
                       !set_has_key(fs, "create-options", key) &&
                       set_has_key(io, "create-options", key);
        GError *err = NULL;
        if (diskimg_options_set(to_file ? *file_options : o, key, value, &err) < 0) {
            if (deferred && g_error_matches(err, DISKIMG_ERROR, DISKIMG_ERROR_VALUE_REFUSED)) {
                if (*deferred)
                    g_error_free(err);
                else
                    *deferred = err;
                continue;
            }
            g_propagate_error(errp, err);
            diskimg_options_free(o);
            if (file_options) {
                diskimg_options_free(*file_options);
                *file_options = NULL;
            }
            return NULL;
        }
    }
    return o;
}

static gint compare_strings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cli_require_creatable(const char *format, GError **errp)
{
    if (diskimg_format_has_op(format, "create") &&
        !(diskimg_format_capabilities(format) & DISKIMG_CAP_READ_ONLY))
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                "Format driver '%s' does not support image creation", format);
    return -1;
}

void cli_print_options_help(const char *format, const char *set, const char *filename)
{
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_FORMAT, format);
    const diskimg_schema *io = target_io_schema(filename);
    g_autofree char *help = diskimg_schema_options_help(s, set);
    if (!filename || !io || !g_str_equal(set, "create-options")) {
        /* qemu-img amend heads its list in words of its own */
        if (g_str_equal(set, "amend-options") && strchr(help, '\n'))
            printf("Amend options for '%s':\n%s", format, strchr(help, '\n') + 1);
        else
            fputs(help, stdout);
        if (g_str_equal(set, "create-options"))
            printf("\nThe protocol level may support further options.\n"
                   "Specify the target filename to include those options.\n");
        return;
    }
    /* With a file name qemu-img lists format and protocol options as one
     * sorted list under "Supported options:". */
    g_autofree char *file_help = diskimg_schema_options_help(io, set);
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    for (const char *text = help; text; text = text == help ? file_help : NULL) {
        g_auto(GStrv) split = g_strsplit(text, "\n", -1);
        for (char **l = split; *l; l++) {
            if (!g_str_has_prefix(*l, "  "))
                continue;
            /* An option both levels have (raw's preallocation) is the
             * format's: listed once, as qemu-img merges them. */
            g_autofree char *key = g_strndup(*l + 2, strcspn(*l + 2, "="));
            if (text == file_help && set_has_key(s, set, key))
                continue;
            g_ptr_array_add(lines, g_strdup(*l));
        }
    }
    g_ptr_array_sort(lines, compare_strings);
    printf("Supported options:\n");
    for (guint i = 0; i < lines->len; i++)
        printf("%s\n", (char *)lines->pdata[i]);
}

uint64_t cli_cluster_size(diskimg_node *n)
{
    struct diskimg_image_info info = { .struct_size = sizeof(info) };
    GError *err = NULL;
    if (diskimg_node_info(n, &info, &err) < 0) {
        g_error_free(err);
        return 4096;
    }
    return info.cluster_size ? info.cluster_size : 4096;
}
