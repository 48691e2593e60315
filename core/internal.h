/* SPDX-License-Identifier: MIT */
/*
 * internal.h — structures shared by the core's own files.  Nothing here is
 * part of the ABI; plugins and commands see only the opaque types.
 */
#ifndef DISKIMG_CORE_INTERNAL_H
#define DISKIMG_CORE_INTERNAL_H

#include <stdatomic.h>

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
    diskimg_node *file;             /* owned */
    diskimg_node *backing;          /* owned */
    diskimg_node *data_file;        /* owned, when the format attached one */
    char *backing_name;             /* as recorded in the image */
    char *backing_format;           /* as recorded, or probed */
    char *backing_resolved;         /* path the backing was opened from */
    GMutex request_lock;            /* DISKIMG_THREAD_SERIALIZE_REQUESTS */
    /* -1 when unknown; atomic because requests of PARALLEL plugins run
     * concurrently and all of them ask for the size. */
    _Atomic int64_t cached_size;
};

/* registry.c */
int registry_init(GError **errp);
struct loaded_plugin *registry_find(enum diskimg_plugin_kind kind, const char *name);
/* All loaded plugins of a kind, sorted by name; array owned by the registry. */
GPtrArray *registry_list(enum diskimg_plugin_kind kind);
const diskimg_schema *registry_core_schema(const char *which); /* commands types magic */
/* The package that provides a well-known format, or NULL (schema/magic.yaml). */
const char *registry_package_for(const char *format);
/* The well-known format whose magic matches buf, or NULL. */
const char *registry_magic_match(const uint8_t *buf, size_t len);

/* node.c */
diskimg_node *node_new(struct loaded_plugin *plugin, const char *filename, unsigned flags);
void node_lock(diskimg_node *n);
void node_unlock(diskimg_node *n);

/* open.c */
/* How many leading bytes of a file probing looks at. */
#define DISKIMG_PROBE_BYTES DISKIMG_PROBE_MAX_LEN
/* The first DISKIMG_PROBE_BYTES of file (zero-padded; *len = bytes read). */
int read_probe_bytes(diskimg_node *file, uint8_t *buf, size_t *len, GError **errp);
/* The probe-fallback format (raw), NULL when none is installed. */
struct loaded_plugin *fallback_format(void);
/* The format that claims buf with the highest score, fallbacks excluded. */
struct loaded_plugin *probe_scan(const uint8_t *buf, size_t len, const char *filename);
/* trust.c: a name the user typed, as a path to open ("file:x" -> "x");
 * other protocol prefixes fail as qemu's "Unknown protocol". */
int trust_user_filename(const char *filename, const char **path, GError **errp);
diskimg_node *open_file_node(const char *filename, const char *io, unsigned flags,
                             enum diskimg_cache cache, const diskimg_options *options,
                             GError **errp);

#endif
