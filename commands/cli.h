/* SPDX-License-Identifier: MIT */
/*
 * cli.h — what every subcommand shares: the argument parser generated from
 * schema/commands.yaml, opening images the qemu-img way (-f, -U,
 * --image-opts, cache modes), output helpers and error reporting.
 *
 * A command is `int cmd_NAME(struct cli *c)` returning its exit code; it
 * prints errors with cli_error() and never calls exit().
 */
#ifndef DISKIMG_COMMANDS_CLI_H
#define DISKIMG_COMMANDS_CLI_H

#include <diskimg/core.h>

struct cli {
    const char *command;
    GHashTable *values;         /* key -> GPtrArray of values, in order given */
    GHashTable *defaults;       /* key -> default from commands.yaml */
    char **args;                /* positional arguments */
    int nargs;
    bool quiet;                 /* -q */
};

typedef int (*cli_command_fn)(struct cli *c);

/* Parses argv (argv[0] = the command name) per commands.yaml. Returns 0, or
 * an exit code after printing the problem (1, or 0 for --help). */
int cli_parse(struct cli *c, const char *command, int argc, char **argv, bool *done);
void cli_free(struct cli *c);
/* `diskimg CMD --help` text. */
char *cli_command_help(const char *command);
/* One line per command: "  create [...synopsis]". */
char *cli_synopses(void);

/* Values: the last one given, else the schema default, else NULL. */
const char *cli_get(const struct cli *c, const char *key);
bool cli_flag(const struct cli *c, const char *key);
/* Every value given for a repeatable option (NULL when none). */
GPtrArray *cli_list(const struct cli *c, const char *key);
/* -o style options joined with ",". NULL when none; free with g_free. */
char *cli_joined(const struct cli *c, const char *key);

/* Errors: "diskimg: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) DISKIMG_PRINTF(1, 2);
void cli_gerror(GError *err);       /* prints and frees */
/* Progress (progress.c, docs/progress.md): draws the library's progress
 * (-p), answers SIGUSR1 and writes --progress-fd lines. */
void cli_progress_install(void);
/* An operation's progress: a bar with -p (unless -q), in PHASE. */
diskimg_progress *cli_progress_new(const struct cli *c, uint64_t total, const char *phase);
/* Completes it when the operation succeeded, then finishes it. */
void cli_progress_end(diskimg_progress *p, bool succeeded);
/* Before parsing COMMAND: names it in the lines and picks its -p habits. */
void cli_progress_begin(const char *command);
/* --progress-fd=TEXT: checks that TEXT names a descriptor open for
 * writing; 0, or 1 after printing the problem. */
int cli_progress_open_fd(const char *text);
/* cli_error() reports each error here; the first goes in the result. */
void cli_progress_note_error(const char *message);
/* After the command: the last --progress-fd line, with its exit status. */
void cli_progress_result(int status);
/* "Expecting one image file name" plus the help hint; returns 1. */
int cli_usage_error(const char *fmt, ...) DISKIMG_PRINTF(1, 2);

/* --output=human|json */
enum cli_output { CLI_OUTPUT_HUMAN, CLI_OUTPUT_JSON };
int cli_output_format(const struct cli *c, enum cli_output *out);

/* Defines --object secrets. Returns 0 or prints and returns 1. */
int cli_objects(const struct cli *c);

/* Opens an image as qemu-img does: name or --image-opts string, optional
 * format, -U (force-share), cache mode. Prints errors itself. */
struct cli_open {
    const char *format;
    bool image_opts;
    bool force_share;
    bool writable;
    bool no_backing;
    bool unsafe_chain;
    bool no_lock;
    bool check;                 /* opened for check: tolerate damage */
    const char *cache;          /* NULL: writeback */
    bool source_cache;          /* cache came from -T ("Invalid source cache option") */
    const char *backing_format; /* -F for the top image */
    bool no_io;                 /* metadata only (info): DISKIMG_OPEN_NO_IO */
    bool probed;                /* reopening a probed image: DISKIMG_OPEN_PROBED */
    /* open-options for the format when not given by --image-opts */
    const diskimg_options *format_options;
};
diskimg_node *cli_open_image(const char *name, const struct cli_open *o, GError **errp);
/* Fills the common struct cli_open fields from -f, -U, --image-opts. */
void cli_open_defaults(const struct cli *c, struct cli_open *o);

/* The image's cluster size (4096 when it has none): the block zero
 * detection works on when writing into an image in place, so that an
 * all-zero cluster becomes a zero cluster instead of stored zeroes. */
uint64_t cli_cluster_size(diskimg_node *n);
/* Parses a size argument as qemu-img does: on error prints "Invalid WHAT
 * specified. You may use k, M, ... suffixes" (WHAT NULL: "image size", which
 * must also stay below 2^63) and returns 1. */
int cli_parse_size(const char *text, uint64_t *out, const char *what);
/* Parses TEXT as qemu's option parser reads a size parameter NAME; on error
 * prints its words ("Parameter 'NAME' expects a non-negative number below
 * 2^64" or "Value 'TEXT' is out of range for parameter 'NAME'") and
 * returns 1. */
/* An open error of PATH without its leading "Could not open 'PATH': ":
 * qemu-img opens backing files with the block layer, whose errors lack
 * the prefix its image opening (and ours) adds. */
const char *cli_open_error_detail(const char *path, const char *message);
int cli_parse_size_parameter(const char *text, const char *name, uint64_t *out);

/* Human sizes as qemu prints them: "64 MiB", "1.5 GiB", "196 KiB", "0 B". */
char *cli_human_size(uint64_t bytes);

/* Prints a JSON node with qemu's layout and a newline. */
void cli_print_json(JsonNode *node);
/* Prints `obj` (consumed) as the output type `type` of schema/types.yaml:
 * checked, members in qemu-img's order.  Returns 0, or 1 after printing
 * the problem. */
int cli_print_typed(const char *type, JsonObject *obj);

/* Validated create-options of a format from -o text (NULL = none).  With
 * `file_options` non-NULL, options the format lacks but the I/O backend
 * creates files with (nocow, extent_size_hint) go there, as qemu-img passes
 * them to its protocol layer; the backend is the one serving `filename`'s
 * protocol (rbd:...: the rbd plugin's create-options), else the default
 * (`filename` may be NULL).  With `deferred` non-NULL, values the schema
 * refuses (DISKIMG_ERROR_VALUE_REFUSED: qemu's drivers find those, after
 * its option parser) do not stop parsing: the first such error is left in
 * *deferred and the options are returned without that value. */
diskimg_options *cli_create_options(const char *format, const char *text, const char *filename,
                                    diskimg_options **file_options, GError **deferred,
                                    GError **errp);
/* Handles "-o help": prints the help of FORMAT's option set; with a
 * `filename` (NULL: none was given) the create options of the I/O backend
 * that would create it are merged in, as qemu-img does. */
void cli_print_options_help(const char *format, const char *set, const char *filename);
/* qemu-img's "Format driver 'X' does not support image creation" for a
 * format without create (or a read-only one), checked before -o help and
 * the size, as qemu-img does: 0 when the format can create images. */
int cli_require_creatable(const char *format, GError **errp);

/* convert -l: make `src` read the snapshot named by a qemu snapshot_param
 * ("snapshot.id=ID,snapshot.name=NAME" or "ID_OR_NAME"). */
int cli_load_snapshot(diskimg_node *src, const char *param, GError **errp);
/* convert --bitmaps: copies every persistent bitmap of src to dst. */
int cli_copy_bitmaps(diskimg_node *src, diskimg_node *dst, bool skip_broken, GError **errp);
/* qemu's snapshot table. */
void cli_print_snapshot_header(void);
void cli_print_snapshot_row(JsonObject *sn);

/* The subcommands. */
int cmd_amend(struct cli *c);
int cmd_bench(struct cli *c);
int cmd_bitmap(struct cli *c);
int cmd_check(struct cli *c);
int cmd_checksum(struct cli *c);
int cmd_commit(struct cli *c);
int cmd_compare(struct cli *c);
int cmd_convert(struct cli *c);
int cmd_create(struct cli *c);
int cmd_dd(struct cli *c);
int cmd_info(struct cli *c);
int cmd_inspect(struct cli *c);
int cmd_map(struct cli *c);
int cmd_measure(struct cli *c);
int cmd_rebase(struct cli *c);
int cmd_resize(struct cli *c);
int cmd_snapshot(struct cli *c);

#endif
