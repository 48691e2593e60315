/* SPDX-License-Identifier: MIT */
/*
 * internal.h — structures shared by the core's own files.  Nothing here is
 * part of the ABI; plugins and commands see only the opaque types.
 */
#ifndef DISKIMG_CORE_INTERNAL_H
#define DISKIMG_CORE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include <diskimg/plugin.h>
#include <diskimg/schema.h>
#include <diskimg/core.h>

/* A plugin the registry loaded.  The ops are copied into full-size structs
 * zero-filled past the plugin's struct_size, so that callbacks a plugin
 * predates read as NULL. */
struct loaded_plugin {
    char *path;                     /* file it came from */
    unsigned tier;                  /* search tier it was found in (registry.c) */
    void *dl;                       /* dlopen handle */
    int fd;                         /* the file loaded, by /proc/self/fd/N: open
                                     * while loaded, so that no other plugin's
                                     * name is the same string (dlopen reuses a
                                     * handle by name), -1: none */
    dev_t dev;                      /* ... and which file that is */
    ino_t ino;
    const struct diskimg_plugin *desc;
    diskimg_schema *schema;
    /* DISKIMG_THREAD_SERIALIZE_ALL; recursive because a node may call into
     * another node of the same plugin (a qcow2 image reading its qcow2
     * backing file) while holding it. */
    GRecMutex serialize_all;
    union {
        struct diskimg_format_ops format;
        struct diskimg_io_ops io;
        struct diskimg_crypto_ops crypto;
    } ops;
};

struct diskimg_node {
    struct loaded_plugin *plugin;
    void *handle;                   /* what the plugin's open returned */
    bool is_file;                   /* an io node (else a format node) */
    char *filename;
    unsigned flags;                 /* DISKIMG_OPEN_* it was opened with */
    enum diskimg_cache cache;
    /* File nodes being created: flushes are only noted, and done once when
     * the create ends (flush_barriers_resume), see core/create.c. */
    bool flushes_deferred, flush_pending;
    diskimg_node *file;             /* owned */
    diskimg_node *backing;          /* owned */
    uint64_t caps;                  /* DISKIMG_CAP_* of this image (format nodes) */
    GArray *children;               /* struct node_child (child.c), owned; NULL: none */
    char *backing_name;             /* as recorded in the image */
    char *backing_format;           /* as recorded, or probed */
    char *backing_resolved;         /* path the backing was opened from */
    diskimg_findings *findings;     /* the opener's collection, not owned; NULL: none */
    char **user_files;              /* files the user named for children (owned) */
    GHashTable *child_name_counts;  /* role -> names of it seen (trust.c); owned */
    GMutex request_lock;            /* DISKIMG_THREAD_SERIALIZE_REQUESTS */
    /* -1 when unknown; atomic because requests of PARALLEL plugins run
     * concurrently and all of them ask for the size. */
    _Atomic int64_t cached_size;
};

/* ---------------------------------------------- structs crossing the ABI */
/*
 * Every struct of the ABI starts with its struct_size, set by whoever
 * provides it to sizeof() as that party was compiled.  The core never reads
 * or writes past a caller's struct_size: it works on a full copy.
 */
/* Bytes up to the end of `member`: the smallest struct_size holding it. */
#define ABI_END(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* Fails unless a caller's struct of `size` bytes holds the `need` bytes the
 * core must fill or read (`what` names the struct in the error). */
int abi_check_size(uint32_t size, size_t need, const char *what, GError **errp);
/* *full = the caller's struct (their_size bytes), zero beyond; then
 * full's struct_size = full_size. */
void abi_copy_in(void *full, size_t full_size, const void *theirs, uint32_t their_size);
/* Copies a full struct back into the caller's, as far as its struct_size. */
void abi_copy_out(void *theirs, const void *full, size_t full_size);

/* registry.c */
int registry_init(GError **errp);
/* The plugin of that kind and name; io plugins are also found by any URI
 * scheme their schema lists under `protocols:` (qemu's "https" driver). */
struct loaded_plugin *registry_find(enum diskimg_plugin_kind kind, const char *name);
/* All loaded plugins of a kind, sorted by name; array owned by the registry. */
GPtrArray *registry_list(enum diskimg_plugin_kind kind);
const diskimg_schema *registry_core_schema(const char *which); /* commands types magic */
/* The package that provides a well-known format, or NULL (schema/magic.yaml). */
const char *registry_package_for(const char *format);
/* The well-known format whose magic matches buf, or NULL. */
const char *registry_magic_match(const uint8_t *buf, size_t len);
/* The io plugin serving a URI scheme (its schema's `protocols:`), and the
 * package schema/magic.yaml names for a scheme no installed plugin serves. */
struct loaded_plugin *registry_io_for_protocol(const char *scheme);
const char *registry_protocol_package(const char *scheme);
/* Appends every distinct format whose magic matches buf (static names). */
void registry_magic_matches(const uint8_t *buf, size_t len, GPtrArray *out);
/* How far into a file magic.yaml's entries may look: probing proper reads
 * DISKIMG_PROBE_BYTES only, diskimg_probe_all this much (an ISO 9660
 * volume descriptor sits at 32 KiB). */
#define DISKIMG_MAGIC_WINDOW (64u << 10)

/* node.c */
/* The names diskimg_format_has_op() knows, in ops-struct order, NULL-ended. */
const char *const *node_format_op_names(void);
diskimg_node *node_new(struct loaded_plugin *plugin, const char *filename, unsigned flags);
void node_lock(diskimg_node *n);
void node_unlock(diskimg_node *n);
/* Fails with qemu-img's text unless n may be written (read-write open of a
 * writable image). */
int node_check_writable(diskimg_node *n, GError **errp);
/* Asks the format what the freshly opened image can do (n->caps). */
void node_init_capabilities(diskimg_node *n);

/* child.c: what the core does to every child of a node. */
int64_t child_allocated_size(diskimg_node *n, GError **errp);  /* counted children only */
int child_flush_all(diskimg_node *n, GError **errp);
void child_close_all(diskimg_node *n);
/* Appends (g_strdup) the paths of the children that create_child made. */
void child_take_created(diskimg_node *n, GPtrArray *paths);

/* open.c */
/* How many leading bytes of a file probing looks at. */
#define DISKIMG_PROBE_BYTES DISKIMG_PROBE_MAX_LEN
/* The first DISKIMG_PROBE_BYTES of file (zero-padded; *len = bytes read). */
int read_probe_bytes(diskimg_node *file, uint8_t *buf, size_t *len, GError **errp);
/* The probe-fallback format (raw), NULL when none is installed. */
struct loaded_plugin *fallback_format(void);
/* The format that claims buf with the highest score, fallbacks excluded. */
struct loaded_plugin *probe_scan(const uint8_t *buf, size_t len, const char *filename);
/* The format whose probe_tail claims the file's last bytes with the highest
 * score; NULL when none does (or the tail could not be read: probing then
 * goes on as if no trailer matched). */
struct loaded_plugin *probe_scan_tail(diskimg_node *file, const char *filename);
/* The same for the last `len` bytes of a file of `size` bytes, in buf. */
struct loaded_plugin *probe_scan_tail_buf(const uint8_t *buf, size_t len, uint64_t size,
                                          const char *filename);
/* trust.c: the findings and the --untrusted refusal for a name of
 * another file found in n's metadata in `role`;
 * `opening` when the core is about to open it.  -1 with *errp set when
 * the untrusted policy forbids opening it. */
int trust_check_child_name(diskimg_node *n, enum diskimg_child_role role, const char *name,
                           bool opening, GError **errp);
/* Only the refusal: 0 unless n was opened DISKIMG_OPEN_UNTRUSTED and `name`
 * is not a file the user named. */
int trust_check_untrusted_open(diskimg_node *n, enum diskimg_child_role role, const char *name,
                               GError **errp);
/* The process-wide --untrusted policy folded into a caller's open flags. */
unsigned trust_open_flags(unsigned flags);
/* Untrusted caps on what the toolkit allocates for a node's tables and
 * caches (the caller's own cap when smaller or when n is trusted). */
uint64_t trust_table_cap(const diskimg_node *n, uint64_t cap);
uint64_t trust_cache_budget(const diskimg_node *n, uint64_t budget);
/* Under --untrusted, probing must name exactly one format: fails naming
 * the candidates otherwise. */
int trust_check_probe(diskimg_node *file, const char *filename, GError **errp);
/* trust.c: a name the user typed, as a path to open ("file:x" -> "x") and
 * the io plugin to open it with: the one whose `protocols:` serve its
 * prefix ("nbd://h/x" -> "nbd", *path the whole name), else *io = NULL (the
 * caller's choice).  Other prefixes fail as qemu's "Unknown protocol",
 * naming the package that would serve it when schema/magic.yaml knows one. */
int trust_user_filename(const char *filename, const char **path, const char **io,
                        GError **errp);
/* node.c: defer the flushes of file node n (on), or do the one they owe (off). */
int node_defer_flushes(diskimg_node *n, bool on, GError **errp);
diskimg_node *open_file_node(const char *filename, const char *io, unsigned flags,
                             enum diskimg_cache cache, const diskimg_options *options,
                             GError **errp);

/* secrets.c and tlscreds.c: --object types besides secret, sharing one id
 * namespace (secrets.c parses and checks type and id; tlscreds.c the rest). */
bool secret_exists(const char *id);
bool tls_creds_type(const char *type);
bool tls_creds_exists(const char *id);
int tls_creds_add(const char *type, GHashTable *props, GError **errp);
char *tls_creds_help(const char *type);   /* "tls-creds-x509 options:\n..." */

#endif
