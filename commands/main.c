/* SPDX-License-Identifier: MIT */
/* diskimg: the command dispatcher and the global options. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_schema(struct cli *c);

static const struct {
    const char *name;
    cli_command_fn fn;
} commands[] = {
    { "amend", cmd_amend },     { "bench", cmd_bench },       { "bitmap", cmd_bitmap },
    { "check", cmd_check },     { "checksum", cmd_checksum }, { "commit", cmd_commit },
    { "compare", cmd_compare },
    { "convert", cmd_convert }, { "create", cmd_create },     { "dd", cmd_dd },
    { "info", cmd_info },       { "inspect", cmd_inspect },   { "map", cmd_map },
    { "measure", cmd_measure },
    { "rebase", cmd_rebase },   { "resize", cmd_resize },     { "snapshot", cmd_snapshot },
    { "schema", cmd_schema },
};

static void print_warning(const char *message, void *opaque)
{
    (void)opaque;
    if (g_ascii_strncasecmp(message, "warning", 7) == 0)
        fprintf(stderr, "%s\n", message);
    else
        fprintf(stderr, "diskimg: %s\n", message);
}

/* Findings of an operation (check's per-problem lines), as they are. */
static void print_report(const char *message, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "%s\n", message);
}

static void print_formats_line(void)
{
    g_auto(GStrv) names = diskimg_plugin_names(DISKIMG_KIND_FORMAT);
    g_autofree char *joined = g_strjoinv(" ", names);
    printf("Supported formats: %s\n", joined);
}

static int usage(void)
{
    g_autofree char *synopses = cli_synopses();
    printf("diskimg version %s\n"
           "usage: diskimg [standard options] command [command options]\n"
           "Disk image utility, command-line compatible with qemu-img\n\n"
           "    '-h', '--help'          display this help and exit\n"
           "    '-V', '--version'       output version information and exit\n"
           "    '--io=BACKEND'          I/O backend for every file: posix (default) or uring\n"
           "    '--untrusted'           the images come from strangers: open no file they name,\n"
           "                            guess no format two formats claim (also\n"
           "                            DISKIMG_UNTRUSTED=1; see docs/untrusted.md)\n"
           "    '--list-formats'        list the installed format plugins\n"
           "                            ([--output=json] for programs)\n\n"
           "Command syntax:\n%s\n"
           "'diskimg COMMAND --help' describes a command's options.\n\n",
           diskimg_version(), synopses);
    print_formats_line();
    return 0;
}

static int list_formats(bool json)
{
    g_auto(GStrv) names = diskimg_plugin_names(DISKIMG_KIND_FORMAT);
    if (!json) {
        for (char **n = names; *n; n++) {
            const struct diskimg_plugin *d = diskimg_plugin_descriptor(DISKIMG_KIND_FORMAT, *n);
            printf("%-12s %s\n", *n, d->summary ? d->summary : "");
        }
        return 0;
    }
    g_autoptr(JsonNode) node = diskimg_introspect_plugins(DISKIMG_KIND_FORMAT);
    cli_print_json(node);
    return 0;
}

static int global_option(int argc, char **argv)
{
    const char *opt = argv[1];
    if (g_str_equal(opt, "-h") || g_str_equal(opt, "--help"))
        return usage();
    if (g_str_equal(opt, "-V") || g_str_equal(opt, "--version")) {
        printf("diskimg version %s\nCopyright (c) the diskimg authors (MIT licence)\n",
               diskimg_version());
        return 0;
    }
    if (g_str_equal(opt, "--list-formats")) {
        bool json = argc > 2 && (g_str_equal(argv[2], "--output=json") ||
                                 (argc > 3 && g_str_equal(argv[2], "--output") &&
                                  g_str_equal(argv[3], "json")));
        return list_formats(json);
    }
    return cli_usage_error("unrecognized option '%s'", opt);
}

int main(int argc, char **argv)
{
    diskimg_set_warn_handler(print_warning, NULL);
    diskimg_set_report_handler(print_report, NULL);
    cli_progress_install();
    GError *err = NULL;
    if (diskimg_init(&err) < 0) {
        cli_gerror(err);
        return 1;
    }
    /* --io=NAME before the command picks the I/O backend of every file;
     * --untrusted makes every open follow docs/untrusted.md. */
    while (argc > 1 && (g_str_has_prefix(argv[1], "--io=") ||
                        g_str_equal(argv[1], "--untrusted"))) {
        if (g_str_equal(argv[1], "--untrusted")) {
            diskimg_set_untrusted(true);
            argv++;
            argc--;
            continue;
        }
        const char *io = argv[1] + strlen("--io=");
        if (!diskimg_plugin_descriptor(DISKIMG_KIND_IO, io)) {
            cli_error("Unknown I/O backend '%s' (see 'diskimg schema')", io);
            return 1;
        }
        diskimg_set_default_io(io);
        argv++;
        argc--;
    }
    if (argc < 2)
        return cli_usage_error("Not enough arguments");
    if (argv[1][0] == '-')
        return global_option(argc, argv);
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (!g_str_equal(argv[1], commands[i].name))
            continue;
        struct cli c = { 0 };
        bool done;
        cli_progress_begin(commands[i].name);
        int ret = cli_parse(&c, commands[i].name, argc - 1, argv + 1, &done);
        if (ret == 0 && !done)
            ret = commands[i].fn(&c);
        cli_free(&c);
        fflush(stdout);
        cli_progress_result(ret);
        return ret;
    }
    cli_error("Command not found: %s", argv[1]);
    return 1;
}
