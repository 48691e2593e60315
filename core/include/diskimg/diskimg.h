/* SPDX-License-Identifier: MIT */
/*
 * diskimg.h — the public API of libdiskimg.
 *
 * This is what the diskimg command and every plugin use to talk to the core:
 * errors, typed options, nodes of an image graph and the requests on them,
 * output objects and small helpers every format needs.  Plugins include
 * <diskimg/plugin.h>, which includes this file.
 *
 * Conventions
 *   - Functions that can fail take a trailing `GError **errp` and return
 *     0 / a valid pointer on success, -1 / NULL with *errp set on failure.
 *   - Offsets and lengths are bytes, unsigned 64-bit.
 *   - Nothing in the core prints or exits: callers decide.
 */
#ifndef DISKIMG_DISKIMG_H
#define DISKIMG_DISKIMG_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DISKIMG_API __attribute__((visibility("default")))
#define DISKIMG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DISKIMG_API
#define DISKIMG_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ errors */

/* All diskimg errors are GErrors in this domain.  The message is one line
 * meant for the user; it names the file when a file is involved. */
#define DISKIMG_ERROR (diskimg_error_quark())
DISKIMG_API GQuark diskimg_error_quark(void);

enum diskimg_error_code {
    DISKIMG_ERROR_FAILED = 1,      /* anything without a better code */
    DISKIMG_ERROR_INVALID,         /* bad argument or option value */
    DISKIMG_ERROR_NOT_SUPPORTED,   /* the format/backend lacks the operation */
    DISKIMG_ERROR_IO,              /* an I/O error from the host */
    DISKIMG_ERROR_CORRUPT,         /* the image is damaged or hostile */
    DISKIMG_ERROR_NO_PLUGIN,       /* no plugin for the named/probed format */
    DISKIMG_ERROR_NOT_FOUND,       /* file, snapshot, bitmap... does not exist */
    DISKIMG_ERROR_PERMISSION,
    DISKIMG_ERROR_NO_SPACE,
    DISKIMG_ERROR_LOCKED,          /* another process holds the image lock */
    DISKIMG_ERROR_NO_MEMORY,
    /* An option value of the right type that its schema refuses (not one
     * of the enum's values, out of range, not a power of two).  qemu-img
     * finds these in the format driver, after the option string parsed;
     * DISKIMG_ERROR_INVALID is kept for unknown keys and mistyped values. */
    DISKIMG_ERROR_VALUE_REFUSED,
};

/* Sets *errp from an errno value, prefixed with the formatted text:
 * diskimg_set_errno(errp, ENOENT, "%s", "x.img") -> "x.img: No such file or directory" */
DISKIMG_API void diskimg_set_errno(GError **errp, int errnum, const char *fmt, ...)
    DISKIMG_PRINTF(3, 4);

/* Sets *errp (when errp is not NULL) to a DISKIMG_ERROR with `code` and the
 * formatted one-line message, and returns -1, so that error paths read
 * `return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "...", ...)`.
 * Name the file in the message ("%s: ...") unless the core adds it (the
 * messages of open and create are prefixed with the file name). */
DISKIMG_API int diskimg_set_error(GError **errp, int code, const char *fmt, ...)
    DISKIMG_PRINTF(3, 4);

/* ---------------------------------------------------------------- options */

/*
 * A set of typed option values, validated against a schema (a plugin's
 * create-options, open-options or amend-options, or a command's options).
 * Struct members use dotted keys ("encrypt.format").  Values that were not
 * given fall back to the schema default; `has` tells whether the user set it.
 */
typedef struct diskimg_options diskimg_options;

DISKIMG_API bool diskimg_options_has(const diskimg_options *o, const char *key);
/* For str, enum and secret-id options; NULL when neither set nor defaulted. */
DISKIMG_API const char *diskimg_options_get_str(const diskimg_options *o, const char *key);
/* For int and size options. */
DISKIMG_API uint64_t diskimg_options_get_uint(const diskimg_options *o, const char *key,
                                              uint64_t fallback);
DISKIMG_API int64_t diskimg_options_get_int(const diskimg_options *o, const char *key,
                                            int64_t fallback);
DISKIMG_API bool diskimg_options_get_bool(const diskimg_options *o, const char *key,
                                          bool fallback);
/* For list options: a NULL-terminated vector owned by `o`. */
DISKIMG_API const char *const *diskimg_options_get_list(const diskimg_options *o,
                                                        const char *key);

/* Parsing of the size syntax shared by every command and option, as
 * qemu_strtosz: leading blanks, decimal digits with an optional fraction or
 * 0x hexadecimal, then at most one unit: k/K M G T P E (1024-based) or b/B
 * (bytes).  Errors: DISKIMG_ERROR_INVALID for the syntax,
 * DISKIMG_ERROR_FAILED for a value past 2^64 - 1. */
DISKIMG_API int diskimg_parse_size(const char *text, uint64_t *out, GError **errp);

/* ----------------------------------------------------------------- objects */

/*
 * A generic output object (an ordered JSON object).  Plugins fill one in
 * their `info`, `check` and snapshot callbacks; the core checks it against
 * the plugin schema's types and renders it as JSON or as human text.
 */
typedef struct diskimg_obj diskimg_obj;
typedef struct diskimg_list diskimg_list;

DISKIMG_API void diskimg_obj_set_str(diskimg_obj *o, const char *key, const char *value);
DISKIMG_API void diskimg_obj_set_int(diskimg_obj *o, const char *key, int64_t value);
DISKIMG_API void diskimg_obj_set_bool(diskimg_obj *o, const char *key, bool value);
/* Adds and returns a nested object or list, owned by `o`. */
DISKIMG_API diskimg_obj *diskimg_obj_add_obj(diskimg_obj *o, const char *key);
DISKIMG_API diskimg_list *diskimg_obj_add_list(diskimg_obj *o, const char *key);
DISKIMG_API diskimg_obj *diskimg_list_add_obj(diskimg_list *l);
DISKIMG_API void diskimg_list_add_str(diskimg_list *l, const char *value);
DISKIMG_API void diskimg_list_add_int(diskimg_list *l, int64_t value);

/* ------------------------------------------------------------------- nodes */

/*
 * An image is a graph of nodes: a format node (qcow2, raw...) on top of a
 * file node (an I/O backend such as posix), plus an optional backing node
 * and any child nodes the format opens (data file, extents; see below).
 * The same request functions work on every node; a format plugin reads its
 * own file with diskimg_node_pread(file, ...).
 */
typedef struct diskimg_node diskimg_node;

/* Flags of diskimg_open() and of a plugin's open. */
enum {
    DISKIMG_OPEN_RDWR        = 1u << 0,
    DISKIMG_OPEN_NO_BACKING  = 1u << 1, /* do not open the backing chain */
    DISKIMG_OPEN_FORCE_SHARE = 1u << 2, /* -U: read-only open ignoring others' locks */
    DISKIMG_OPEN_NO_LOCK     = 1u << 3, /* take no image locks at all */
    DISKIMG_OPEN_CREATE      = 1u << 4, /* file nodes: create if missing */
    DISKIMG_OPEN_TRUNCATE    = 1u << 5, /* file nodes: truncate to zero */
    DISKIMG_OPEN_NO_IO       = 1u << 6, /* metadata only (info): no data requests follow */
    DISKIMG_OPEN_CHECK       = 1u << 7, /* opened for check: tolerate corruption, skip replay */
    DISKIMG_OPEN_UNSAFE_CHAIN= 1u << 8, /* backing failures are warnings (rebase -u) */
    /* The format was guessed by probing (qemu's bs->probed).  The core sets
     * it for plugins; a caller sets it with an explicit format to reopen a
     * node that was probed (diskimg_node_was_probed) with the same limits.
     * A probe-fallback format then refuses writes that would change what
     * probing finds (diskimg_probed_write_check). */
    DISKIMG_OPEN_PROBED      = 1u << 9,
    /* No file named inside the image is opened at all, not even a
     * metadata child: formats report such names with
     * diskimg_node_note_child instead (diskimg inspect; implies nothing
     * about NO_IO, which callers add). */
    DISKIMG_OPEN_NO_CHILDREN = 1u << 10,
    /* The image comes from a stranger (--untrusted, DISKIMG_UNTRUSTED=1;
     * docs/untrusted.md): probing must find exactly one format, no file
     * or protocol named inside an image is opened unless the user named it
     * (diskimg_open_params.backing_filename, .user_files), and the
     * toolkit's table and cache caps shrink.  diskimg_set_untrusted()
     * sets it for every open of the process. */
    DISKIMG_OPEN_UNTRUSTED   = 1u << 11,
};

/* Cache modes, as qemu-img's -t/-T. */
enum diskimg_cache {
    DISKIMG_CACHE_WRITEBACK = 0, /* page cache, flush on request */
    DISKIMG_CACHE_NONE,          /* O_DIRECT, flush on request */
    DISKIMG_CACHE_WRITETHROUGH,  /* page cache, O_DSYNC */
    DISKIMG_CACHE_DIRECTSYNC,    /* O_DIRECT | O_DSYNC */
    DISKIMG_CACHE_UNSAFE,        /* page cache, flushes ignored */
};
DISKIMG_API int diskimg_cache_parse(const char *name, enum diskimg_cache *out, GError **errp);

struct diskimg_open_params {
    uint32_t struct_size;        /* sizeof(struct diskimg_open_params) */
    const char *format;          /* NULL: probe the file */
    const char *io;              /* I/O backend plugin, NULL: "posix" */
    unsigned flags;              /* DISKIMG_OPEN_* */
    enum diskimg_cache cache;
    /* Runtime options for the format (its schema's open-options) and for
     * the file (the io plugin's open-options); either may be NULL. */
    const diskimg_options *format_options;
    const diskimg_options *file_options;
    const char *backing_format;  /* override for the top image's backing (-F) */
    /* The user's name for the top image's backing file, used instead of the
     * name the image records (trusted as the user's; NULL: the recorded
     * name under the trust policy). */
    const char *backing_filename;
    /* Appended.  Where the core and the format record what they find
     * worth reporting about the image (names of other files, unknown
     * features...; see "findings" below); NULL: nothing is recorded. */
    struct diskimg_findings *findings;
    /* Appended.  NULL-terminated list of files the user named for this
     * image's children (--image-opts data-file.filename=NAME): under
     * DISKIMG_OPEN_UNTRUSTED a child the image names is opened only when
     * it is one of these files (same device and inode). */
    const char *const *user_files;
};

/* Opens filename (probing its format unless params->format) and, unless
 * DISKIMG_OPEN_NO_BACKING, its whole backing chain. */
DISKIMG_API diskimg_node *diskimg_open(const char *filename,
                                       const struct diskimg_open_params *params,
                                       GError **errp);
/* Closes the node and every child it owns. Safe on NULL. */
DISKIMG_API void diskimg_close(diskimg_node *node);

/* Queries; strings are owned by the node. */
DISKIMG_API const char *diskimg_node_filename(const diskimg_node *n);
DISKIMG_API const char *diskimg_node_driver(const diskimg_node *n);   /* plugin name */
DISKIMG_API bool diskimg_node_is_writable(const diskimg_node *n);
/* DISKIMG_CAP_* of the open image: the format's image_capabilities answer,
 * or its descriptor's flags (0 for file nodes). */
DISKIMG_API uint64_t diskimg_node_capabilities(const diskimg_node *n);
DISKIMG_API diskimg_node *diskimg_node_file(const diskimg_node *n);   /* NULL on file nodes */
DISKIMG_API diskimg_node *diskimg_node_backing(const diskimg_node *n);
/* The first DISKIMG_CHILD_DATA_FILE child (see diskimg_node_child). */
DISKIMG_API diskimg_node *diskimg_node_data_file(const diskimg_node *n);
/* The plugin's per-node state (what its open returned). */
DISKIMG_API void *diskimg_node_handle(const diskimg_node *n);
DISKIMG_API int64_t diskimg_node_size(diskimg_node *n, GError **errp);
/* Bytes the node's own host file occupies (st_blocks based; an external data
 * file is not counted, as in qemu-img's actual-size), -1 unknown. */
DISKIMG_API int64_t diskimg_node_allocated_size(diskimg_node *n, GError **errp);
/* Alignment the node needs for data requests (512 or 4096 for O_DIRECT files). */
DISKIMG_API uint32_t diskimg_node_request_alignment(const diskimg_node *n);

/* Write flags. */
enum {
    DISKIMG_WRITE_FUA        = 1u << 0, /* durable before returning */
    DISKIMG_WRITE_MAY_UNMAP  = 1u << 1, /* write_zeroes may deallocate */
    DISKIMG_WRITE_NO_FALLBACK= 1u << 2, /* write_zeroes: fail instead of writing buffers */
};

/* Requests.  Ranges past the end of the node fail with DISKIMG_ERROR_INVALID,
 * except reads of format nodes, which are clamped by callers. */
DISKIMG_API int diskimg_node_pread(diskimg_node *n, void *buf, uint64_t len, uint64_t offset,
                                   GError **errp);
DISKIMG_API int diskimg_node_pwrite(diskimg_node *n, const void *buf, uint64_t len,
                                    uint64_t offset, unsigned flags, GError **errp);
DISKIMG_API int diskimg_node_write_zeroes(diskimg_node *n, uint64_t offset, uint64_t len,
                                          unsigned flags, GError **errp);
/* One whole cluster of data to store compressed (format nodes that can). */
DISKIMG_API int diskimg_node_write_compressed(diskimg_node *n, const void *buf, uint64_t len,
                                              uint64_t offset, GError **errp);
DISKIMG_API int diskimg_node_discard(diskimg_node *n, uint64_t offset, uint64_t len,
                                     GError **errp);
DISKIMG_API int diskimg_node_flush(diskimg_node *n, GError **errp);

enum diskimg_prealloc {
    DISKIMG_PREALLOC_OFF = 0,
    DISKIMG_PREALLOC_METADATA,
    DISKIMG_PREALLOC_FALLOC,
    DISKIMG_PREALLOC_FULL,
};
/* "off", "metadata", "falloc" or "full" (NULL: off); anything else is
 * refused in qemu-img's words: "Invalid preallocation mode 'NAME'". */
DISKIMG_API int diskimg_prealloc_parse(const char *name, enum diskimg_prealloc *out,
                                       GError **errp);
enum { DISKIMG_TRUNCATE_SHRINK = 1u << 0 /* allow making the node smaller */ };
DISKIMG_API int diskimg_node_truncate(diskimg_node *n, uint64_t size,
                                      enum diskimg_prealloc prealloc, unsigned flags,
                                      GError **errp);

/* ------------------------------------------------------------ block status */

/* What a range of a node holds, as qemu's block status. */
enum {
    DISKIMG_BS_DATA         = 1u << 0, /* reads return data from this node or below */
    DISKIMG_BS_ZERO         = 1u << 1, /* reads return zeroes */
    DISKIMG_BS_OFFSET_VALID = 1u << 2, /* `offset` in `file` holds the bytes */
    DISKIMG_BS_ALLOCATED    = 1u << 3, /* this layer defines the content (no fall-through) */
    DISKIMG_BS_COMPRESSED   = 1u << 4, /* stored compressed (no usable offset) */
    DISKIMG_BS_RECURSE      = 1u << 5, /* plugin asks the core to ask `file` at `offset`
                                          for the data/zero detail (raw, flat extents) */
};
/* Out-parameter of block status.  Callers of diskimg_node_block_status set
 * struct_size = sizeof(struct diskimg_extent) first (the core fills nothing
 * beyond it); a plugin's block_status callback gets one from the core with
 * struct_size set and must not write beyond it. */
struct diskimg_extent {
    uint32_t struct_size;
    uint32_t flags;         /* DISKIMG_BS_* */
    uint64_t length;        /* > 0; may be shorter than asked */
    uint64_t offset;        /* host offset when OFFSET_VALID */
    diskimg_node *file;     /* node that `offset` refers to */
};
/* Status of the range starting at `offset` within this node only. */
DISKIMG_API int diskimg_node_block_status(diskimg_node *n, uint64_t offset, uint64_t len,
                                          struct diskimg_extent *ext, GError **errp);
/* Status looked up through the backing chain: `depth` receives the chain
 * index of the layer that defines the range (0 = n itself); unallocated in
 * the whole chain gives flags without ALLOCATED and depth = chain length. */
DISKIMG_API int diskimg_node_block_status_chain(diskimg_node *n, uint64_t offset, uint64_t len,
                                                struct diskimg_extent *ext, int *depth,
                                                GError **errp);

/* For format plugins: fills buf with what the backing chain holds at
 * [offset, offset+len) — zeroes where there is no backing or it is shorter. */
DISKIMG_API int diskimg_node_read_backing(diskimg_node *n, void *buf, uint64_t len,
                                          uint64_t offset, GError **errp);

/* ------------------------------------------------------------ child nodes */

/*
 * Files of an image besides its own file: qcow2's external data file,
 * vmdk's extents, a descriptor's companions.  A format opens each as a child
 * of its node (args->node in open, args->file in create).  A child is a file
 * node that inherits from its parent everything the user chose for the
 * image: the I/O backend (--io), the cache mode (-t/-T, so O_DIRECT with
 * -t none), read-only or read-write, -U and locking.  The core owns
 * children: flushing, closing and the allocated size of the parent cover
 * them, and when diskimg_create fails, every file that
 * diskimg_node_create_child made is removed again (never one that existed
 * before).  `name` is the file name as the format found it (in the image or
 * in an option); the core resolves it against the parent's directory.
 */
enum diskimg_child_role {
    DISKIMG_CHILD_BACKING   = 1, /* the backing image: opened by the core from
                                    get_backing, only looked up by formats */
    DISKIMG_CHILD_DATA_FILE = 2, /* guest data outside the image file (qcow2 data-file) */
    DISKIMG_CHILD_EXTENT    = 3, /* one of several files holding guest data (vmdk) */
    DISKIMG_CHILD_METADATA  = 4, /* other structures of the image in a file of their own */
};
/* Flags of a child. */
enum {
    DISKIMG_CHILD_READ_ONLY = 1u << 0, /* read-only even when the parent is read-write */
    DISKIMG_CHILD_UNCOUNTED = 1u << 1, /* not part of the parent's allocated size ("disk
                                          size"); qemu-img leaves qcow2's data file out */
};
/* Opens an existing file as a child of `parent`. */
DISKIMG_API diskimg_node *diskimg_node_open_child(diskimg_node *parent,
                                                  enum diskimg_child_role role,
                                                  const char *name, unsigned flags,
                                                  GError **errp);
/* Creates (or truncates) a file as a child of `parent`, read-write; for the
 * create callback.  A failed create removes it if this call made it. */
DISKIMG_API diskimg_node *diskimg_node_create_child(diskimg_node *parent,
                                                    enum diskimg_child_role role,
                                                    const char *name, unsigned flags,
                                                    GError **errp);
/* Children of a role (0: every role except backing), in the order opened. */
DISKIMG_API unsigned diskimg_node_child_count(const diskimg_node *n,
                                              enum diskimg_child_role role);
/* The index-th child of a role, NULL past the last. */
DISKIMG_API diskimg_node *diskimg_node_child(const diskimg_node *n, enum diskimg_child_role role,
                                             unsigned index);
/* A name the *user* gave (-b, -B, create options) as seen from the
 * directory of image `image_filename`: absolute names and names with a
 * protocol prefix (diskimg_name_has_protocol) are returned as is.  Names
 * read from an image go through diskimg_trust_resolve instead.  Free with
 * g_free. */
DISKIMG_API char *diskimg_resolve_relative(const char *image_filename, const char *name);

/* ------------------------------------------------------------ trust policy */
/*
 * Names found inside an image (core/trust.c; docs/architecture.md "Trust
 * policy").  Every format resolves the names its metadata holds through
 * diskimg_trust_resolve, which refuses what only a user may give.
 */
/* True when qemu would take `name` for a protocol or json: pseudo-filename
 * rather than a file: it has a ':' before its first '/'. */
DISKIMG_API bool diskimg_name_has_protocol(const char *name);
/* The io plugin that serves `name`'s protocol prefix (its schema lists the
 * scheme under `protocols:`: "rbd" for rbd:pool/image), or NULL for a plain
 * file name, a json: name or a scheme no installed plugin serves.  For
 * choosing the option sets a command applies to such a target (-o). */
DISKIMG_API const char *diskimg_protocol_io(const char *name);
/* The path to open for `name`, recorded in the metadata of `parent` in the
 * given role: relative names are joined to the parent's directory.  Empty
 * names, names longer than 4095 bytes and protocol/json: names fail with a
 * one-line error naming the image and the name.  Free with g_free. */
DISKIMG_API char *diskimg_trust_resolve(const diskimg_node *parent, enum diskimg_child_role role,
                                        const char *name, GError **errp);
/* For a name the user gives that a format is about to record in an image
 * (create or amend -o data_file=): fails when later opens would refuse it
 * (a protocol name), so no image is written that cannot be opened. */
DISKIMG_API int diskimg_trust_check_to_record(enum diskimg_child_role role, const char *name,
                                              GError **errp);
/* True when n was opened metadata-only (DISKIMG_OPEN_NO_IO, info): a format
 * must then open no child named in its metadata and report names only. */
DISKIMG_API bool diskimg_node_metadata_only(const diskimg_node *n);
/* True when n's format was guessed by probing (DISKIMG_OPEN_PROBED). */
DISKIMG_API bool diskimg_node_was_probed(const diskimg_node *n);
/* For probe-fallback formats opened DISKIMG_OPEN_PROBED: checks a write of
 * len bytes of buf (NULL: zeroes) at `offset` of `file` before it is made.
 * When it touches the bytes probing reads (the first 2048, and the last
 * 512 that trailer probes read: a fixed VHD's footer) and would make
 * probing find another format, fails with DISKIMG_ERROR_PERMISSION ("Operation not
 * permitted", as qemu's raw driver); otherwise returns 0. */
DISKIMG_API int diskimg_probed_write_check(diskimg_node *file, uint64_t offset,
                                           const void *buf, uint64_t len, GError **errp);
/* For callers about to write guest data `head` (len bytes) at offset 0 of
 * format node n (commit's check before it starts): the same check when n
 * is a probed probe-fallback image, 0 otherwise. */
DISKIMG_API int diskimg_node_probed_head_check(diskimg_node *n, const void *head,
                                               uint64_t len, GError **errp);

/* Makes every later diskimg_open() of this process DISKIMG_OPEN_UNTRUSTED
 * (the diskimg command's --untrusted).  diskimg_init() turns it on when
 * the environment holds DISKIMG_UNTRUSTED=1. */
DISKIMG_API void diskimg_set_untrusted(bool on);
DISKIMG_API bool diskimg_untrusted(void);
/* For formats opened metadata-only or DISKIMG_OPEN_NO_CHILDREN: reports
 * a file that the image's metadata names in `role` but that this open does
 * not open (qcow2's data file, a vmdk extent), so that the trust findings
 * cover it as if it had been opened with diskimg_node_open_child. */
DISKIMG_API void diskimg_node_note_child(diskimg_node *parent, enum diskimg_child_role role,
                                         const char *name);
/* False when children must not be opened at all (DISKIMG_OPEN_NO_CHILDREN):
 * a format then reports their names with diskimg_node_note_child and
 * carries on with what its own file says. */
DISKIMG_API bool diskimg_node_may_open_children(const diskimg_node *n);

/* ---------------------------------------------------------------- findings */
/*
 * What an inspection found about an image (diskimg inspect,
 * docs/untrusted.md): each finding has a stable id ("backing-file",
 * "unknown-incompatible-features"...), a severity, the field involved and a
 * one-line message.  The caller owns a diskimg_findings and passes it in
 * diskimg_open_params.findings; the core records every name of another file
 * the image holds, and formats add what only they can see with
 * diskimg_node_add_finding (a no-op when nobody collects findings).
 */
enum diskimg_severity {
    DISKIMG_SEVERITY_INFO    = 0, /* worth knowing, harmless */
    DISKIMG_SEVERITY_WARNING = 1, /* suspicious or damaged, reads no other file */
    DISKIMG_SEVERITY_UNSAFE  = 2, /* opening it normally may reach other files
                                     or hosts, or be misread */
};
struct diskimg_finding {
    uint32_t struct_size;      /* set by the caller of diskimg_findings_get */
    const char *id;
    uint32_t severity;         /* enum diskimg_severity */
    const char *field;         /* the field involved, "" when none */
    const char *message;
};
typedef struct diskimg_findings diskimg_findings;
DISKIMG_API diskimg_findings *diskimg_findings_new(void);
DISKIMG_API void diskimg_findings_free(diskimg_findings *f);    /* safe on NULL */
/* Appends a finding; an id already recorded for the same field and
 * message is not repeated. */
DISKIMG_API void diskimg_findings_add(diskimg_findings *f, const char *id,
                                      enum diskimg_severity severity, const char *field,
                                      const char *fmt, ...) DISKIMG_PRINTF(5, 6);
DISKIMG_API unsigned diskimg_findings_count(const diskimg_findings *f);
/* Copies the i-th finding into *out (as far as out->struct_size); the
 * strings stay owned by f.  -1 past the end. */
DISKIMG_API int diskimg_findings_get(const diskimg_findings *f, unsigned i,
                                     struct diskimg_finding *out);
/* For plugins: records a finding about node n where its opener collects
 * them (diskimg_open_params.findings); nothing happens otherwise. */
DISKIMG_API void diskimg_node_add_finding(diskimg_node *n, const char *id,
                                          enum diskimg_severity severity, const char *field,
                                          const char *fmt, ...) DISKIMG_PRINTF(5, 6);

/* ------------------------------------------------------------------ probing */
/*
 * Every claim on a file's format, not only the winner's (diskimg inspect,
 * and --untrusted's "exactly one format" rule).
 */
enum diskimg_probe_source {
    DISKIMG_PROBE_HEADER  = 1, /* a plugin's probe() of the first 2 KiB */
    DISKIMG_PROBE_TRAILER = 2, /* a plugin's probe_tail() of the last 512 bytes */
    DISKIMG_PROBE_MAGIC   = 3, /* schema/magic.yaml, for a format not installed */
};
struct diskimg_probe_match {
    uint32_t struct_size;
    const char *format;
    uint32_t source;           /* enum diskimg_probe_source */
    int score;                 /* 1..100; 100 for magic matches */
    bool installed;            /* a plugin for the format is loaded */
};
typedef void (*diskimg_probe_fn)(const struct diskimg_probe_match *m, void *opaque);
/* Calls fn for every format whose header probe, trailer probe or known
 * magic claims the file node `file` (the probe-fallback format never
 * claims).  Reads the first 64 KiB (known magic may lie that far: an ISO
 * 9660 volume descriptor) and the last 512 bytes only.  Returns the
 * number of distinct formats, or -1 when the file cannot be read. */
DISKIMG_API int diskimg_probe_all(diskimg_node *file, diskimg_probe_fn fn, void *opaque,
                                  GError **errp);
/* The format plain probing decides on for `file` (the winner of the rules
 * in docs/architecture.md), with why in *reason (static text); NULL with
 * *errp set when nothing fits. */
DISKIMG_API const char *diskimg_probe_decide(diskimg_node *file, const char **reason,
                                             GError **errp);
/* Opens a bare file node for reading (the I/O backend of --io), so that a
 * caller can probe a file before opening it as an image.  Local files
 * only: a name with a remote protocol prefix is refused. */
DISKIMG_API diskimg_node *diskimg_open_file(const char *filename, unsigned flags,
                                            GError **errp);

/* ----------------------------------------------------------------- helpers */

/* True when all len bytes are zero (fast, word at a time). */
DISKIMG_API bool diskimg_is_zero(const void *buf, size_t len);

/* Allocates memory aligned for O_DIRECT (4096); free with diskimg_free_aligned. */
DISKIMG_API void *diskimg_alloc_aligned(size_t len);
DISKIMG_API void diskimg_free_aligned(void *p);

/* Byte-order helpers: formats read their structures through these. */
static inline uint16_t diskimg_be16(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)((b[0] << 8) | b[1]);
}
static inline uint32_t diskimg_be32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint64_t diskimg_be64(const void *p)
{
    return ((uint64_t)diskimg_be32(p) << 32) | diskimg_be32((const uint8_t *)p + 4);
}
static inline uint16_t diskimg_le16(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t diskimg_le32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint64_t diskimg_le64(const void *p)
{
    return diskimg_le32(p) | ((uint64_t)diskimg_le32((const uint8_t *)p + 4) << 32);
}
static inline void diskimg_put_be16(void *p, uint16_t v)
{
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)(v >> 8); b[1] = (uint8_t)v;
}
static inline void diskimg_put_be32(void *p, uint32_t v)
{
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)(v >> 24); b[1] = (uint8_t)(v >> 16); b[2] = (uint8_t)(v >> 8); b[3] = (uint8_t)v;
}
static inline void diskimg_put_be64(void *p, uint64_t v)
{
    diskimg_put_be32(p, (uint32_t)(v >> 32));
    diskimg_put_be32((uint8_t *)p + 4, (uint32_t)v);
}
static inline void diskimg_put_le16(void *p, uint16_t v)
{
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8);
}
static inline void diskimg_put_le32(void *p, uint32_t v)
{
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); b[2] = (uint8_t)(v >> 16); b[3] = (uint8_t)(v >> 24);
}
static inline void diskimg_put_le64(void *p, uint64_t v)
{
    diskimg_put_le32(p, (uint32_t)v);
    diskimg_put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

/* ----------------------------------------------------------------- secrets */

/* Defines an object from a --object argument, with qemu-img's syntax,
 * rules and messages.  Secrets and TLS credentials are known:
 * "secret,id=ID,data=X|file=PATH[,format=raw|base64][,keyid=ID,iv=B64]"
 * (keyid: AES-256-CBC encrypted with the 32-byte secret ID, iv base64),
 * "tls-creds-x509,id=ID,dir=DIR[,endpoint=client|server][,verify-peer=on|off]
 * [,priority=P]" and "tls-creds-psk,id=ID,dir=DIR[,endpoint=...][,username=U]
 * [,priority=P]" (see diskimg_tls_creds_lookup).  Ids are one namespace. */
DISKIMG_API int diskimg_object_add(const char *objdef, GError **errp);
/* 1 and *text (g_free) when the argument asks for help ("help", or
 * "secret,help"): what qemu-img prints then, before exiting; 0 when it
 * does not; -1 on a malformed argument or an unknown type. */
DISKIMG_API int diskimg_object_help(const char *objdef, char **text, GError **errp);
/* A copy of the secret's bytes; release it with diskimg_secret_wipe. */
DISKIMG_API int diskimg_secret_lookup(const char *id, uint8_t **data, size_t *len,
                                      GError **errp);
DISKIMG_API void diskimg_secret_wipe(uint8_t *data, size_t len);

/* TLS credentials of a --object tls-creds-x509 or tls-creds-psk, for io
 * plugins that speak TLS (qemu's tls-creds option).  The directory holds
 * qemu's (and GnuTLS's) file names: ca-cert.pem, client-cert.pem,
 * client-key.pem (server-cert.pem, server-key.pem for a server endpoint)
 * for x509, keys.psk for psk; the core checked at definition that the
 * required ones are readable, the plugin's TLS library parses them. */
enum diskimg_tls_creds_type {
    DISKIMG_TLS_CREDS_X509 = 1,
    DISKIMG_TLS_CREDS_PSK  = 2,
};
struct diskimg_tls_creds {
    uint32_t struct_size;      /* set by the caller: filled no further */
    uint32_t type;             /* enum diskimg_tls_creds_type */
    const char *dir;           /* the credentials directory */
    const char *endpoint;      /* "client" or "server" */
    bool verify_peer;          /* verify-peer (default on) */
    const char *username;      /* psk: username=, NULL when not given */
    const char *priority;      /* GnuTLS priority string, NULL when not given */
};
/* Fills *creds for object `id` (strings owned by the core, valid until the
 * process ends).  Errors as qemu's: "No TLS credentials with id 'x'",
 * "Object with id 'x' is not TLS credentials". */
DISKIMG_API int diskimg_tls_creds_lookup(const char *id, struct diskimg_tls_creds *creds,
                                         GError **errp);

/* ---------------------------------------------------------------- logging */

/* Warnings go to the handler the command layer installs (the diskimg
 * command prints them on stderr; -q and JSON output stay clean).  Without a
 * handler they are dropped: the library never prints. */
DISKIMG_API void diskimg_warn(const char *fmt, ...) DISKIMG_PRINTF(1, 2);
typedef void (*diskimg_warn_fn)(const char *message, void *opaque);
DISKIMG_API void diskimg_set_warn_handler(diskimg_warn_fn fn, void *opaque);
/* One line of an operation's findings, shown as is (no prefix) — what
 * qemu-img check prints per problem ("Leaked cluster 12 refcount=1
 * reference=0").  Goes to the report handler; dropped without one. */
DISKIMG_API void diskimg_report(const char *fmt, ...) DISKIMG_PRINTF(1, 2);
DISKIMG_API void diskimg_set_report_handler(diskimg_warn_fn fn, void *opaque);


/* ================================================================= codecs */
/*
 * Compression codecs shared by formats (core/codec.c).
 *
 * diskimg_compress returns the compressed length, 0 when the result does
 * not fit in dst_cap (store the data uncompressed then), -1 on error.
 * With dst_cap < src_len it also returns 0, without compressing, when
 * diskimg_probably_incompressible() says the data is close to random.
 * `level` -1 is the codec's default; `window_bits` (zlib family, 9..15,
 * 0 = 15) sets the deflate window, e.g. 12 for qcow2 as qemu writes it.
 *
 * diskimg_decompress returns the bytes produced (at most dst_len; it stops
 * when dst is full and ignores trailing input), -1 on corrupt data.
 * Inflating always uses the largest window, so data made with any window
 * is accepted; `window_bits` is reserved.
 */
enum diskimg_codec {
    DISKIMG_CODEC_DEFLATE = 1,   /* raw deflate (RFC 1951), qcow2 "zlib" */
    DISKIMG_CODEC_ZLIB,          /* zlib stream (RFC 1950), vmdk grains */
    DISKIMG_CODEC_GZIP,          /* gzip member (RFC 1952) */
    DISKIMG_CODEC_ZSTD,          /* zstd frame */
};
DISKIMG_API int64_t diskimg_compress(enum diskimg_codec codec, int level, int window_bits,
                                     const void *src, size_t src_len, void *dst,
                                     size_t dst_cap, GError **errp);
/* True when `codec` could save at most ~1/128 of the data (repeats and
 * byte statistics are both near random): cheap, ~25x faster than deflate. */
DISKIMG_API bool diskimg_probably_incompressible(enum diskimg_codec codec, int window_bits,
                                                 const void *data, size_t len);
DISKIMG_API int64_t diskimg_decompress(enum diskimg_codec codec, int window_bits,
                                       const void *src, size_t src_len, void *dst,
                                       size_t dst_len, GError **errp);
/* For blocks of a known size (a cluster, a grain, a chunk): 0 when the
 * data inflates to exactly dst_len bytes, else -1 with a
 * DISKIMG_ERROR_CORRUPT error ("compressed data inflates to more than
 * 65536 bytes" / "... to 100 bytes instead of 65536"; the caller adds the
 * file and the block).  Trailing input after the end of the stream is
 * ignored (it is the next block's, in formats that pack them); what the
 * stream would produce past dst_len is found by asking it for one byte
 * more, so the check costs nothing extra on valid data. */
DISKIMG_API int diskimg_decompress_exact(enum diskimg_codec codec, const void *src,
                                         size_t src_len, void *dst, size_t dst_len,
                                         GError **errp);
/* ============================================================ end codecs */

#ifdef __cplusplus
}
#endif
#endif /* DISKIMG_DISKIMG_H */
