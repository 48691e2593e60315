/* SPDX-License-Identifier: MIT */
/*
 * Opening image graphs: file node through an I/O plugin, format probing,
 * the format node, then the backing chain (format taken from the image when
 * it names one, never guessed then; depth limit; loop detection).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_CHAIN_DEPTH 256

/* The I/O backend file nodes use unless told otherwise (--io). */
static char *default_io_name;

void diskimg_set_default_io(const char *name)
{
    g_free(default_io_name);
    default_io_name = g_strdup(name);
}

const char *diskimg_default_io(void)
{
    return default_io_name ? default_io_name : "posix";
}

static const char *default_io(const char *io)
{
    if (io)
        return io;
    return default_io_name ? default_io_name : "posix";
}

/* The backend every system has, used when the chosen one cannot run here. */
#define FALLBACK_IO "posix"

/* qemu's lock permissions for an image opened read-only or read-write. */
static void lock_permissions(unsigned flags, uint64_t *perm, uint64_t *shared)
{
    if (flags & DISKIMG_OPEN_RDWR) {
        *perm = DISKIMG_PERM_CONSISTENT_READ | DISKIMG_PERM_WRITE | DISKIMG_PERM_RESIZE;
        *shared = DISKIMG_PERM_CONSISTENT_READ | DISKIMG_PERM_WRITE_UNCHANGED;
    } else {
        *perm = DISKIMG_PERM_CONSISTENT_READ;
        *shared = DISKIMG_PERM_ALL & ~(DISKIMG_PERM_WRITE | DISKIMG_PERM_RESIZE);
    }
}

static int apply_locks(diskimg_node *n, GError **errp)
{
    if (n->flags & (DISKIMG_OPEN_NO_LOCK | DISKIMG_OPEN_FORCE_SHARE))
        return 0;
    if (!n->plugin->ops.io.lock)
        return 0;
    uint64_t perm, shared;
    lock_permissions(n->flags, &perm, &shared);
    node_lock(n);
    int ret = n->plugin->ops.io.lock(n->handle, perm, shared, errp);
    node_unlock(n);
    return ret;
}

diskimg_node *open_file_node(const char *filename, const char *io, unsigned flags,
                             enum diskimg_cache cache, const diskimg_options *options,
                             GError **errp)
{
    if (diskimg_init(errp) < 0)
        return NULL;
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_IO, default_io(io));
    if (!lp) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Unknown protocol '%s' (no I/O plugin of that name is installed)",
                    default_io(io));
        return NULL;
    }
    diskimg_node *n = node_new(lp, filename, flags);
    n->cache = cache;
    struct diskimg_io_open_args args = {
        .struct_size = sizeof(args),
        .node = n,
        .filename = filename,
        .flags = flags,
        .cache = cache,
        .options = options,
    };
    GError *err = NULL;
    node_lock(n);
    n->handle = lp->ops.io.open(&args, &err);
    node_unlock(n);
    if (!n->handle && !err)
        g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_FAILED, "%s: I/O plugin '%s' failed",
                    filename, lp->desc->name);
    if (!n->handle && err->code == DISKIMG_ERROR_NOT_SUPPORTED &&
        !g_str_equal(lp->desc->name, FALLBACK_IO)) {
        /* e.g. io_uring refused by the kernel or a sandbox: say so once,
         * then carry on with the portable backend. */
        static gsize noticed;
        if (g_once_init_enter(&noticed)) {
            diskimg_warn("%s; using the %s I/O backend instead", err->message, FALLBACK_IO);
            g_once_init_leave(&noticed, 1);
        }
        g_error_free(err);
        diskimg_close(n);
        return open_file_node(filename, FALLBACK_IO, flags, cache, options, errp);
    }
    if (!n->handle) {
        g_propagate_error(errp, err);
        diskimg_close(n);
        return NULL;
    }
    if (apply_locks(n, errp) < 0) {
        diskimg_close(n);
        return NULL;
    }
    return n;
}

/* Reads the first bytes of the file for probing (fewer for short files). */
int read_probe_bytes(diskimg_node *file, uint8_t *buf, size_t *len, GError **errp)
{
    int64_t size = diskimg_node_size(file, errp);
    if (size < 0)
        return -1;
    *len = MIN((uint64_t)size, DISKIMG_PROBE_BYTES);
    memset(buf, 0, DISKIMG_PROBE_BYTES);
    return diskimg_node_pread(file, buf, *len, 0, errp);
}

struct loaded_plugin *fallback_format(void)
{
    g_autoptr(GPtrArray) formats = registry_list(DISKIMG_KIND_FORMAT);
    for (guint i = 0; i < formats->len; i++) {
        struct loaded_plugin *lp = formats->pdata[i];
        if (diskimg_schema_flag(lp->schema, "probe-fallback"))
            return lp;
    }
    return NULL;
}

/* Calls fn for every format plugin whose probe claims buf (score > 0),
 * fallbacks excluded: the one walk behind plain probing and inspect. */
static void header_probes(const uint8_t *buf, size_t len, const char *filename,
                          void (*fn)(struct loaded_plugin *lp, int score, void *data),
                          void *data)
{
    g_autoptr(GPtrArray) formats = registry_list(DISKIMG_KIND_FORMAT);
    for (guint i = 0; i < formats->len; i++) {
        struct loaded_plugin *lp = formats->pdata[i];
        if (!lp->ops.format.probe || diskimg_schema_flag(lp->schema, "probe-fallback"))
            continue;
        int score = lp->ops.format.probe(buf, len, filename);
        if (score > 0)
            fn(lp, score, data);
    }
}

struct best_probe {
    struct loaded_plugin *lp;
    int score;
};

static void keep_best(struct loaded_plugin *lp, int score, void *data)
{
    struct best_probe *best = data;
    if (score > best->score)
        *best = (struct best_probe){ lp, score };
}

struct loaded_plugin *probe_scan(const uint8_t *buf, size_t len, const char *filename)
{
    struct best_probe best = { NULL, 0 };
    header_probes(buf, len, filename, keep_best, &best);
    return best.lp;
}

struct loaded_plugin *probe_scan_tail(diskimg_node *file, const char *filename)
{
    int64_t size = diskimg_node_size(file, NULL);
    if (size <= 0)
        return NULL;
    uint8_t buf[DISKIMG_PROBE_TAIL_LEN];
    size_t len = (size_t)MIN((uint64_t)size, DISKIMG_PROBE_TAIL_LEN);
    if (diskimg_node_pread(file, buf, len, (uint64_t)size - len, NULL) < 0)
        return NULL;
    return probe_scan_tail_buf(buf, len, (uint64_t)size, filename);
}

struct loaded_plugin *probe_scan_tail_buf(const uint8_t *buf, size_t len, uint64_t size,
                                          const char *filename)
{
    struct loaded_plugin *best = NULL;
    int best_score = 0;
    g_autoptr(GPtrArray) formats = registry_list(DISKIMG_KIND_FORMAT);
    for (guint i = 0; i < formats->len; i++) {
        struct loaded_plugin *lp = formats->pdata[i];
        if (!lp->ops.format.probe_tail || diskimg_schema_flag(lp->schema, "probe-fallback"))
            continue;
        int score = lp->ops.format.probe_tail(buf, len, size, filename);
        if (score > best_score) {
            best = lp;
            best_score = score;
        }
    }
    return best;
}

/* Tells the user that probing fell back to `fb`, and says block 0 is
 * restricted only when the plugin restricts it (DISKIMG_CAP_PROBE_GUARD). */
static void warn_fallback(const char *filename, const struct loaded_plugin *fb)
{
    const char *name = fb->desc->name;
    bool guarded = fb->desc->capabilities & DISKIMG_CAP_PROBE_GUARD;
    g_autofree char *consequence = guarded
        ? g_strdup("write operations on block 0 will be restricted")
        : g_strdup_printf("and the %s plugin does not restrict writes on block 0", name);
    diskimg_warn("WARNING: Image format was not specified for '%s' and probing guessed %s.\n"
                 "         Automatically detecting the format is dangerous for %s images, "
                 "%s.\n"
                 "         Specify the '%s' format explicitly%s.",
                 filename, name, name, consequence, name,
                 guarded ? " to remove the restrictions" : "");
}

/* The format probing settles on, with the rule that decided (static
 * text); NULL with *errp set when no plugin fits. */
static struct loaded_plugin *decide_format(diskimg_node *file, const char *filename,
                                           const char **reason, GError **errp)
{
    uint8_t buf[DISKIMG_PROBE_BYTES];
    size_t len;
    if (read_probe_bytes(file, buf, &len, errp) < 0)
        return NULL;
    struct loaded_plugin *best = probe_scan(buf, len, filename);
    *reason = "its header probe gave the highest score on the first 2 KiB";
    if (best)
        return best;
    /* A format we know by its magic but have no plugin for is named, never
     * silently opened as raw. */
    const char *known = registry_magic_match(buf, len);
    if (known) {
        const char *package = registry_package_for(known);
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "%s: looks like a %s image, but no plugin for it is installed%s%s%s",
                    filename, known, package ? " (install package " : "",
                    package ? package : "", package ? ")" : "");
        return NULL;
    }
    /* Formats known only by a trailer come after every header and magic. */
    best = probe_scan_tail(file, filename);
    *reason = "no header matched and its trailer probe claims the last 512 bytes";
    if (best)
        return best;
    struct loaded_plugin *fb = fallback_format();
    *reason = "no format claims the file, so the fallback format is used";
    if (!fb) {
        /* schema/magic.yaml names raw's package: say what would help */
        const char *raw_package = registry_package_for("raw");
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Could not open '%s': Could not determine image format (no plugin "
                    "recognises it and no fallback format is installed%s%s)", filename,
                    raw_package ? "; install package " : "", raw_package ? raw_package : "");
        return NULL;
    }
    return fb;
}

static struct loaded_plugin *probe_format(diskimg_node *file, const char *filename,
                                          unsigned flags, GError **errp)
{
    if ((flags & DISKIMG_OPEN_UNTRUSTED) && trust_check_probe(file, filename, errp) < 0)
        return NULL;
    const char *reason;
    struct loaded_plugin *lp = decide_format(file, filename, &reason, errp);
    if (lp && (flags & DISKIMG_OPEN_RDWR) && diskimg_schema_flag(lp->schema, "probe-fallback"))
        warn_fallback(filename, lp);
    return lp;
}

const char *diskimg_probe_decide(diskimg_node *file, const char **reason, GError **errp)
{
    const char *why = NULL;
    struct loaded_plugin *lp = decide_format(file, diskimg_node_filename(file), &why, errp);
    if (reason)
        *reason = lp ? why : NULL;
    return lp ? lp->desc->name : NULL;
}

/* Reports a match unless the same format was reported already. */
static void report_match(GPtrArray *seen, const char *format, enum diskimg_probe_source src,
                         int score, diskimg_probe_fn fn, void *opaque)
{
    for (guint i = 0; i < seen->len; i++)
        if (g_str_equal(seen->pdata[i], format))
            return;
    g_ptr_array_add(seen, (gpointer)format);
    struct diskimg_probe_match m = {
        .struct_size = sizeof(m),
        .format = format,
        .source = src,
        .score = score,
        .installed = registry_find(DISKIMG_KIND_FORMAT, format) != NULL,
    };
    if (fn)
        fn(&m, opaque);
}

struct header_report {
    GPtrArray *seen;
    diskimg_probe_fn fn;
    void *opaque;
};

static void report_header_match(struct loaded_plugin *lp, int score, void *data)
{
    struct header_report *r = data;
    report_match(r->seen, lp->desc->name, DISKIMG_PROBE_HEADER, score, r->fn, r->opaque);
}

static void header_matches(const uint8_t *buf, size_t len, const char *filename,
                           GPtrArray *seen, diskimg_probe_fn fn, void *opaque)
{
    struct header_report r = { seen, fn, opaque };
    header_probes(buf, len, filename, report_header_match, &r);
}

/* Magic of formats whose plugin is missing (an installed plugin's own
 * probe has the last word on its format), within DISKIMG_MAGIC_WINDOW. */
static int magic_matches_all(diskimg_node *file, GPtrArray *seen, diskimg_probe_fn fn,
                             void *opaque, GError **errp)
{
    int64_t size = diskimg_node_size(file, errp);
    if (size < 0)
        return -1;
    size_t len = (size_t)MIN((uint64_t)size, DISKIMG_MAGIC_WINDOW);
    g_autofree uint8_t *buf = g_malloc0(MAX(len, 1));
    if (len && diskimg_node_pread(file, buf, len, 0, errp) < 0)
        return -1;
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    registry_magic_matches(buf, len, names);
    for (guint i = 0; i < names->len; i++)
        if (!registry_find(DISKIMG_KIND_FORMAT, names->pdata[i]))
            report_match(seen, names->pdata[i], DISKIMG_PROBE_MAGIC, 100, fn, opaque);
    return 0;
}

static int tail_matches(diskimg_node *file, const char *filename, GPtrArray *seen,
                        diskimg_probe_fn fn, void *opaque, GError **errp)
{
    int64_t size = diskimg_node_size(file, errp);
    if (size < 0)
        return -1;
    if (size == 0)
        return 0;
    uint8_t buf[DISKIMG_PROBE_TAIL_LEN];
    size_t len = (size_t)MIN((uint64_t)size, DISKIMG_PROBE_TAIL_LEN);
    if (diskimg_node_pread(file, buf, len, (uint64_t)size - len, errp) < 0)
        return -1;
    g_autoptr(GPtrArray) formats = registry_list(DISKIMG_KIND_FORMAT);
    for (guint i = 0; i < formats->len; i++) {
        struct loaded_plugin *lp = formats->pdata[i];
        if (!lp->ops.format.probe_tail || diskimg_schema_flag(lp->schema, "probe-fallback"))
            continue;
        int score = lp->ops.format.probe_tail(buf, len, (uint64_t)size, filename);
        if (score > 0)
            report_match(seen, lp->desc->name, DISKIMG_PROBE_TRAILER, score, fn, opaque);
    }
    return 0;
}

int diskimg_probe_all(diskimg_node *file, diskimg_probe_fn fn, void *opaque, GError **errp)
{
    uint8_t buf[DISKIMG_PROBE_BYTES];
    size_t len;
    if (read_probe_bytes(file, buf, &len, errp) < 0)
        return -1;
    g_autoptr(GPtrArray) seen = g_ptr_array_new();
    header_matches(buf, len, diskimg_node_filename(file), seen, fn, opaque);
    if (magic_matches_all(file, seen, fn, opaque, errp) < 0 ||
        tail_matches(file, diskimg_node_filename(file), seen, fn, opaque, errp) < 0)
        return -1;
    return (int)seen->len;
}

diskimg_node *diskimg_open_file(const char *filename, unsigned flags, GError **errp)
{
    const char *path, *protocol_io;
    if (diskimg_init(errp) < 0 || trust_user_filename(filename, &path, &protocol_io, errp) < 0)
        return NULL;
    if (protocol_io) {
        /* what this opens is read by inspect: a local file, never a network */
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED,
                    "Could not open '%s': only local files can be opened this way (the "
                    "name is for the %s plugin)", filename, protocol_io);
        return NULL;
    }
    unsigned allowed = DISKIMG_OPEN_FORCE_SHARE | DISKIMG_OPEN_NO_LOCK;
    return open_file_node(path, NULL, flags & allowed, DISKIMG_CACHE_WRITEBACK, NULL, errp);
}

static struct loaded_plugin *format_by_name(const char *name, GError **errp)
{
    if (diskimg_format_require(name, errp) < 0)
        return NULL;
    return registry_find(DISKIMG_KIND_FORMAT, name);
}

static bool format_open(diskimg_node *n, const char *filename, const diskimg_options *opts,
                        GError **errp)
{
    struct diskimg_format_open_args args = {
        .struct_size = sizeof(args),
        .node = n,
        .file = n->file,
        .filename = filename,
        .flags = n->flags,
        .options = opts,
    };
    GError *err = NULL;
    node_lock(n);
    n->handle = n->plugin->ops.format.open(&args, &err);
    node_unlock(n);
    if (n->handle)
        return true;
    if (!err)
        g_set_error(&err, DISKIMG_ERROR, DISKIMG_ERROR_FAILED, "plugin '%s' failed to open it",
                    n->plugin->desc->name);
    g_set_error(errp, err->domain, err->code, "Could not open '%s': %s", filename, err->message);
    g_error_free(err);
    return false;
}

static void remember_backing(diskimg_node *n)
{
    if (!n->plugin->ops.format.get_backing)
        return;
    struct diskimg_backing_ref ref = { .struct_size = sizeof(ref) };
    node_lock(n);
    n->plugin->ops.format.get_backing(n->handle, &ref);
    node_unlock(n);
    if (ref.filename && *ref.filename) {
        n->backing_name = g_strdup(ref.filename);
        n->backing_format = g_strdup(ref.format);
        trust_check_child_name(n, DISKIMG_CHILD_BACKING, ref.filename, false, NULL);
    }
}

static bool io_serves_protocols(const char *io)
{
    const diskimg_schema *s = io ? diskimg_plugin_schema(DISKIMG_KIND_IO, io) : NULL;
    g_auto(GStrv) protocols = s ? diskimg_schema_protocols(s) : NULL;
    return protocols && protocols[0];
}

/* The io open-options to hand the file node: the caller's, unless they
 * were made for another io plugin than the one a protocol name chose
 * (options always belong to exactly one plugin's schema). */
static const diskimg_options *file_options_for(const struct diskimg_open_params *p,
                                               const char *protocol_io)
{
    if (!p->file_options || !protocol_io)
        return p->file_options;
    const diskimg_schema *s = diskimg_plugin_schema(DISKIMG_KIND_IO, protocol_io);
    return diskimg_options_schema(p->file_options) == s ? p->file_options : NULL;
}

/* One image node (format over file), without its backing chain. */
static diskimg_node *open_one(const char *filename, const char *protocol_io,
                              const struct diskimg_open_params *p, unsigned flags,
                              GError **errp)
{
    unsigned file_flags = flags & ~(DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE);
    GError *err = NULL;
    diskimg_node *file = open_file_node(filename, protocol_io ? protocol_io : p->io, file_flags,
                                        p->cache, file_options_for(p, protocol_io), &err);
    if (!file) {
        /* qemu names the image, then the file layer names the file. */
        g_set_error(errp, err->domain, err->code, "Could not open '%s': %s", filename,
                    err->message);
        g_error_free(err);
        return NULL;
    }
    struct loaded_plugin *lp = p->format ? format_by_name(p->format, errp)
                                         : probe_format(file, filename, flags, errp);
    if (!lp) {
        diskimg_close(file);
        return NULL;
    }
    if ((flags & DISKIMG_OPEN_RDWR) && (lp->desc->capabilities & DISKIMG_CAP_READ_ONLY)) {
        /* qemu's read-only drivers (bochs, cloop, dmg, vvfat...) refuse a
         * read-write open with bdrv_apply_auto_read_only()'s text. */
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "Could not open '%s': Image is read-only", filename);
        diskimg_close(file);
        return NULL;
    }
    /* qemu's bs->probed: the format came from the bytes, not from the user
     * or the image above; a fallback format then guards block 0. */
    if (!p->format)
        flags |= DISKIMG_OPEN_PROBED;
    diskimg_node *n = node_new(lp, filename, flags);
    n->cache = p->cache;
    n->file = file;
    n->findings = p->findings;
    n->user_files = g_strdupv((char **)p->user_files);
    if (!format_open(n, filename, p->format_options, errp)) {
        diskimg_close(n);
        return NULL;
    }
    node_init_capabilities(n);
    if ((flags & DISKIMG_OPEN_RDWR) && (n->caps & DISKIMG_CAP_READ_ONLY)) {
        /* qemu's bdrv_apply_auto_read_only() text */
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "Could not open '%s': Image is read-only", filename);
        diskimg_close(n);
        return NULL;
    }
    remember_backing(n);
    return n;
}

/* Where n's backing file is: the user's name when given (-o/--image-opts
 * backing.file.filename, opened as typed), else the recorded one under the
 * trust policy. */
static char *backing_path(diskimg_node *n, const char *user_name, const char **io,
                          GError **errp)
{
    *io = NULL;
    if (!user_name) {
        if (trust_check_untrusted_open(n, DISKIMG_CHILD_BACKING,
                                       n->backing_name, errp) < 0)
            return NULL;
        return diskimg_trust_resolve(n, DISKIMG_CHILD_BACKING, n->backing_name, errp);
    }
    const char *path;
    if (trust_user_filename(user_name, &path, io, errp) < 0)
        return NULL;
    return g_strdup(path);
}

/* Opens n's backing file and, recursively, the rest of the chain. */
static int open_backing_chain(diskimg_node *top, const struct diskimg_open_params *p,
                              GError **errp)
{
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    char *real = realpath(top->filename, NULL);
    if (real)
        g_hash_table_add(seen, real);
    int depth = 0;
    for (diskimg_node *n = top; n->backing_name; n = n->backing) {
        if (++depth > MAX_CHAIN_DEPTH) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                        "Could not open '%s': backing chain is deeper than %d images",
                        top->filename, MAX_CHAIN_DEPTH);
            return -1;
        }
        GError *err = NULL;
        const char *protocol_io;
        g_autofree char *path = backing_path(n, n == top ? p->backing_filename : NULL,
                                             &protocol_io, &err);
        if (!path) {
            /* The refusal names the image that records the name; deeper in
             * the chain, the top is named first as for any open error. */
            if (n != top)
                g_prefix_error(&err, "Could not open '%s': ", top->filename);
            g_propagate_error(errp, err);
            return -1;
        }
        char *rp = realpath(path, NULL);
        if (rp && !g_hash_table_add(seen, rp)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                        "Could not open '%s': backing chain loops back to '%s'",
                        top->filename, path);
            return -1;
        }
        struct diskimg_open_params bp = *p;
        bp.format = n->backing_format;
        if (!bp.format && n == top)
            bp.format = p->backing_format;
        unsigned flags = (p->flags & ~(DISKIMG_OPEN_RDWR | DISKIMG_OPEN_PROBED)) |
                         DISKIMG_OPEN_NO_BACKING;
        n->backing = open_one(path, protocol_io, &bp, flags, &err);
        if (!n->backing) {
            /* open_one names the file as qemu-img names a top image; below
             * "Could not open backing file" qemu leaves that out (only the
             * file layer's own "Could not open 'X': errno" remains).  As
             * qemu, the message names the top image and says "Could not
             * open backing file" once per level down to the failing one. */
            g_autofree char *named = g_strdup_printf("Could not open '%s': ", path);
            const char *why = err->message;
            if (g_str_has_prefix(why, named))
                why += strlen(named);
            g_autoptr(GString) text = g_string_new(NULL);
            g_string_printf(text, "Could not open '%s': ", top->filename);
            for (int level = 0; level < depth; level++)
                g_string_append(text, "Could not open backing file: ");
            g_set_error(errp, err->domain, err->code, "%s%s", text->str, why);
            g_error_free(err);
            return -1;
        }
        n->backing_resolved = g_strdup(path);
        if (!n->backing_format)
            n->backing_format = g_strdup(diskimg_node_driver(n->backing));
    }
    return 0;
}

diskimg_node *diskimg_open(const char *filename, const struct diskimg_open_params *params,
                           GError **errp)
{
    /* A full copy: the backing chain's opens copy it in turn, and members a
     * shorter (older) caller's struct lacks read as unset. */
    struct diskimg_open_params full = { .struct_size = sizeof(full) };
    if (params) {
        if (abi_check_size(params->struct_size, ABI_END(struct diskimg_open_params, flags),
                           "diskimg_open_params", errp) < 0)
            return NULL;
        abi_copy_in(&full, sizeof(full), params, params->struct_size);
    }
    full.flags = trust_open_flags(full.flags);
    const struct diskimg_open_params *p = &full;
    if (diskimg_init(errp) < 0)
        return NULL;
    const char *path = filename, *protocol_io = NULL;
    /* A caller that names a protocol io plugin (--image-opts file.driver=nbd)
     * hands it the name as is: it and its options say what to reach. */
    if (!io_serves_protocols(p->io) &&
        trust_user_filename(filename, &path, &protocol_io, errp) < 0)
        return NULL;
    diskimg_node *n = open_one(path, protocol_io, p, p->flags, errp);
    if (!n)
        return NULL;
    if (!(p->flags & DISKIMG_OPEN_NO_BACKING) && open_backing_chain(n, p, errp) < 0) {
        if (!(p->flags & DISKIMG_OPEN_UNSAFE_CHAIN)) {
            diskimg_close(n);
            return NULL;
        }
        g_clear_error(errp);
    }
    return n;
}
