/* SPDX-License-Identifier: MIT */
/*
 * The plugin registry: finds plugin files, dlopen()s them, checks their
 * descriptors and schemas, and answers "which plugin is called X".
 *
 * Loading is lazy.  diskimg_init() only lists the candidate files; a
 * plugin is opened when it is first asked for, trying first the files
 * named after it (<name>.so, the packaging convention) and then, if none
 * of those is it, every other candidate of its kind.  Listing a kind, as
 * probing and --list-formats do, loads all of it.  A short command such as
 * `info -f qcow2` so opens two plugins instead of all of them, and a
 * broken optional plugin only bothers the commands that reach for it.
 *
 * Search order (first hit of a name wins; later ones are shadowed):
 *   1. every directory of $DISKIMG_PLUGIN_PATH (colon-separated);
 *   2. the build tree's plugins/, when this very library was loaded from
 *      the build tree (so an uninstalled build works with no environment),
 *      otherwise the system directory <libdir>/diskimg/plugins/<kind>/.
 * Two plugins with one name inside the same tier are a packaging error and
 * are reported.  Plugin files must be owned by root or by us and must not be
 * writable by group or others, wherever they were found: code that anyone
 * else can change must never be loaded.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

extern const char diskimg_schema_commands_yaml[];
extern const char diskimg_schema_types_yaml[];
extern const char diskimg_schema_magic_yaml[];

/* ABI 2 put struct_size first in every struct filled across the boundary
 * (extents, snapshots, bitmaps, backing refs, measure results): plugins
 * built for ABI 1 would misread them. */
#define OLDEST_ABI 2

#define MAX_SCAN_DEPTH 3     /* dir/<kind>/<name>/<name>.so in the build tree */
#define MAX_PLUGIN_FILES 1024

/* A plugin file found by the scan, not necessarily opened yet. */
struct candidate {
    char *path;
    char *stem;                    /* file name without ".so" */
    uint32_t kind;                 /* implied by the path; 0 = unknown */
    unsigned tier;                 /* 0 = $DISKIMG_PLUGIN_PATH, 1 = build tree or system */
    bool tried;
};

static struct {
    GMutex lock;                   /* candidates' `tried`, plugins, shadowed */
    GPtrArray *candidates;         /* struct candidate *, in search order */
    GPtrArray *plugins;            /* struct loaded_plugin *, the active ones */
    GPtrArray *shadowed;           /* loaded, then displaced by an earlier tier */
} registry;

/* The core's own schema documents, read on first use: a short command
 * needs the command schema only, and reading costs start-up time.  They
 * were validated when the library was built (diskimg-embed-schema). */
static struct core_doc {
    const char *which;
    const char *text;
    GOnce once;
    diskimg_schema *schema;
} core_docs[] = {
    { "commands", diskimg_schema_commands_yaml, G_ONCE_INIT, NULL },
    { "types", diskimg_schema_types_yaml, G_ONCE_INIT, NULL },
    { "magic", diskimg_schema_magic_yaml, G_ONCE_INIT, NULL },
};

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case DISKIMG_KIND_FORMAT: return "format";
    case DISKIMG_KIND_IO:     return "io";
    case DISKIMG_KIND_CRYPTO: return "crypto";
    default:                  return NULL;
    }
}

/* The kind a path implies by a "format", "io" or "crypto" component. */
static uint32_t kind_from_path(const char *path)
{
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);
    uint32_t kind = 0;
    for (char **p = parts; *p; p++) {
        for (uint32_t k = DISKIMG_KIND_FORMAT; k <= DISKIMG_KIND_CRYPTO; k++)
            if (g_str_equal(*p, kind_name(k)))
                kind = k;
    }
    return kind;
}

static bool name_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 32)
        return false;
    for (const char *c = name; *c; c++)
        if (!g_ascii_islower(*c) && !g_ascii_isdigit(*c) && *c != '_' && *c != '-')
            return false;
    return true;
}

/* Ownership and mode rules for a plugin file and every directory above it:
 * owned by root or by us, and nobody else may change it.  A directory that
 * others may write is accepted only with the sticky bit (/tmp): there they
 * cannot rename or remove what is ours. */
static bool owner_trusted(const struct stat *st)
{
    return st->st_uid == 0 || st->st_uid == geteuid();
}

static bool dirs_above_trusted(const char *path, GError **errp)
{
    g_autofree char *real = realpath(path, NULL);
    if (!real) {
        diskimg_set_errno(errp, errno, "%s", path);
        return false;
    }
    g_autofree char *dir = g_path_get_dirname(real);
    for (;;) {
        struct stat st;
        if (stat(dir, &st) < 0) {
            diskimg_set_errno(errp, errno, "%s", dir);
            return false;
        }
        if (!owner_trusted(&st)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                        "%s: directory %s is owned by uid %u, neither root nor the current user",
                        path, dir, (unsigned)st.st_uid);
            return false;
        }
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                        "%s: directory %s is writable by group or others", path, dir);
            return false;
        }
        if (g_str_equal(dir, "/"))
            return true;
        char *up = g_path_get_dirname(dir);
        g_free(dir);
        dir = up;
    }
}

/* Opens a plugin file for loading: no symlink as the last component, and
 * the checks are made on the open descriptor, which is what gets loaded
 * (no window between checking a name and loading what it names then). */
static int open_trusted_file(const char *path, GError **errp)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "%s: a symbolic link (plugins are loaded from regular files only)", path);
        return -1;
    }
    if (fd < 0) {
        diskimg_set_errno(errp, errno, "%s", path);
        return -1;
    }
    struct stat st;
    const char *why = NULL;
    if (fstat(fd, &st) < 0)
        why = g_strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    else if (!owner_trusted(&st))
        why = "owned by a user who is neither root nor the current user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        why = "writable by group or others";
    if (why) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION, "%s: %s", path, why);
        close(fd);
        return -1;
    }
    if (!dirs_above_trusted(path, errp)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* dlopen()s the file open on fd (kept open while loaded).  /proc/self/fd/N
 * names exactly that open file, whatever happened to its path since.  Without /proc (a bare
 * chroot) the path is loaded, and refused unless it is still the file
 * that was checked. */
static void *dlopen_fd(int fd, const char *path, GError **errp)
{
    g_autofree char *by_fd = g_strdup_printf("/proc/self/fd/%d", fd);
    bool have_proc = access(by_fd, R_OK) == 0;
    void *dl = dlopen(have_proc ? by_fd : path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s", dlerror());
        return NULL;
    }
    struct stat checked, now;
    if (!have_proc && (fstat(fd, &checked) < 0 || stat(path, &now) < 0 ||
                       checked.st_dev != now.st_dev || checked.st_ino != now.st_ino)) {
        dlclose(dl);
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "%s: the file changed while it was loaded", path);
        return NULL;
    }
    return dl;
}

/* Copies a plugin's ops struct into our full-size one: callbacks beyond the
 * plugin's struct_size stay NULL, and so does one that struct_size cuts
 * through (only whole pointers are copied). */
static bool copy_ops(struct loaded_plugin *lp, GError **errp)
{
    const void *ops = lp->desc->ops;
    size_t full;
    switch (lp->desc->kind) {
    case DISKIMG_KIND_FORMAT: full = sizeof(lp->ops.format); break;
    case DISKIMG_KIND_IO:     full = sizeof(lp->ops.io); break;
    default:                  full = sizeof(lp->ops.crypto); break;
    }
    if (!ops) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: descriptor has no ops",
                    lp->path);
        return false;
    }
    /* Every ops struct is struct_size, then nothing but callbacks, the first
     * one aligned like a pointer. */
#define FIRST_CALLBACK offsetof(struct diskimg_format_ops, probe)
    G_STATIC_ASSERT(offsetof(struct diskimg_io_ops, open) == FIRST_CALLBACK);
    G_STATIC_ASSERT(offsetof(struct diskimg_crypto_ops, cipher_new) == FIRST_CALLBACK);
    const size_t first = FIRST_CALLBACK;
#undef FIRST_CALLBACK
    uint32_t size = *(const uint32_t *)ops;
    if (size < first + sizeof(void *)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: ops struct_size %u is too small to hold a callback", lp->path, size);
        return false;
    }
    size_t whole = first + (MIN((size_t)size, full) - first) / sizeof(void *) * sizeof(void *);
    memset(&lp->ops, 0, sizeof(lp->ops));
    memcpy(&lp->ops, ops, whole);
    return true;
}

static bool check_required_ops(struct loaded_plugin *lp, GError **errp)
{
    const char *missing = NULL;
    switch (lp->desc->kind) {
    case DISKIMG_KIND_FORMAT:
        if (!lp->ops.format.open) missing = "open";
        else if (!lp->ops.format.close) missing = "close";
        else if (!lp->ops.format.get_size) missing = "get_size";
        else if (!lp->ops.format.read) missing = "read";
        break;
    case DISKIMG_KIND_IO:
        if (!lp->ops.io.open) missing = "open";
        else if (!lp->ops.io.close) missing = "close";
        else if (!lp->ops.io.pread) missing = "pread";
        else if (!lp->ops.io.pwrite) missing = "pwrite";
        else if (!lp->ops.io.get_size) missing = "get_size";
        break;
    default:
        if (!lp->ops.crypto.cipher_new) missing = "cipher_new";
        break;
    }
    if (missing) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: required callback '%s' is missing", lp->path, missing);
        return false;
    }
    return true;
}

static bool check_descriptor(struct loaded_plugin *lp, uint32_t expected_kind, GError **errp)
{
    const struct diskimg_plugin *d = lp->desc;
    if (d->abi_version < OLDEST_ABI || d->abi_version > DISKIMG_ABI_VERSION) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: built for plugin ABI %u, this diskimg supports ABI %d to %d",
                    lp->path, d->abi_version, OLDEST_ABI, DISKIMG_ABI_VERSION);
        return false;
    }
    if (d->struct_size < offsetof(struct diskimg_plugin, ops) + sizeof(void *)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: descriptor struct_size %u is too small", lp->path, d->struct_size);
        return false;
    }
    if (!kind_name(d->kind)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: unknown plugin kind %u",
                    lp->path, d->kind);
        return false;
    }
    if (expected_kind && d->kind != expected_kind) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: is a %s plugin but is installed among %s plugins",
                    lp->path, kind_name(d->kind), kind_name(expected_kind));
        return false;
    }
    if (d->thread_model > DISKIMG_THREAD_PARALLEL) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: unknown thread model %u",
                    lp->path, d->thread_model);
        return false;
    }
    if (!d->name || !name_is_valid(d->name)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: plugin name must be 1-32 characters of a-z 0-9 _ -", lp->path);
        return false;
    }
    if (!d->schema) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: plugin has no schema",
                    lp->path);
        return false;
    }
    return copy_ops(lp, errp) && check_required_ops(lp, errp);
}

static bool check_schema(struct loaded_plugin *lp, GError **errp)
{
    g_autofree char *origin = g_strdup_printf("%s(%s.yaml)", lp->path, lp->desc->name);
    lp->schema = diskimg_schema_parse(lp->desc->schema, origin, errp);
    if (!lp->schema)
        return false;
    const char *name = diskimg_schema_name(lp->schema);
    const char *kind = diskimg_schema_kind(lp->schema);
    if (!name || !g_str_equal(name, lp->desc->name)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: schema names plugin '%s' but the descriptor says '%s'",
                    lp->path, name ? name : "", lp->desc->name);
        return false;
    }
    if (!kind || !g_str_equal(kind, kind_name(lp->desc->kind))) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: schema says kind '%s' but the descriptor says '%s'",
                    lp->path, kind ? kind : "", kind_name(lp->desc->kind));
        return false;
    }
    return true;
}

static void loaded_plugin_free(struct loaded_plugin *lp)
{
    if (!lp)
        return;
    diskimg_schema_free(lp->schema);
    if (lp->dl)
        dlclose(lp->dl);
    if (lp->fd >= 0)
        close(lp->fd);
    g_rec_mutex_clear(&lp->serialize_all);
    g_free(lp->path);
    g_free(lp);
}

/* Is this file loaded already (under another name)?  dlopen() would hand
 * back that handle and remember our /proc/self/fd/N name as its alias, so
 * that a later plugin opened on descriptor N would get the wrong handle. */
static bool file_already_loaded(const struct stat *st)
{
    GPtrArray *lists[] = { registry.plugins, registry.shadowed };
    for (size_t l = 0; l < G_N_ELEMENTS(lists); l++) {
        for (guint i = 0; i < lists[l]->len; i++) {
            const struct loaded_plugin *lp = lists[l]->pdata[i];
            if (lp->dev == st->st_dev && lp->ino == st->st_ino)
                return true;
        }
    }
    return false;
}

/* Loads one plugin file; NULL with no error when that file is loaded. */
static struct loaded_plugin *load_plugin(const char *path, GError **errp)
{
    int fd = open_trusted_file(path, errp);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || file_already_loaded(&st)) {
        close(fd);
        return NULL;
    }
    struct loaded_plugin *lp = g_new0(struct loaded_plugin, 1);
    lp->dev = st.st_dev;
    lp->ino = st.st_ino;
    g_rec_mutex_init(&lp->serialize_all);
    lp->path = g_strdup(path);
    lp->fd = fd;
    lp->dl = dlopen_fd(fd, path, errp);
    if (!lp->dl)
        goto fail;
    const struct diskimg_plugin *(*entry)(void);
    *(void **)&entry = dlsym(lp->dl, DISKIMG_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: no %s symbol, not a diskimg plugin", path, DISKIMG_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    lp->desc = entry();
    if (!lp->desc) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: plugin entry returned NULL",
                    path);
        goto fail;
    }
    if (!check_descriptor(lp, kind_from_path(path), errp) || !check_schema(lp, errp))
        goto fail;
    return lp;
fail:
    loaded_plugin_free(lp);
    return NULL;
}

static struct loaded_plugin *find_loaded(uint32_t kind, const char *name)
{
    for (guint i = 0; i < registry.plugins->len; i++) {
        struct loaded_plugin *lp = registry.plugins->pdata[i];
        if (lp->desc->kind == kind && g_str_equal(lp->desc->name, name))
            return lp;
    }
    return NULL;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect_files(const char *dir, int depth, GPtrArray *out)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    if (!d)
        return;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *entry;
    while ((entry = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(entry));
    g_dir_close(d);
    /* Sorted, so that which duplicate wins does not depend on the fs. */
    g_ptr_array_sort(names, compare_names);
    for (guint i = 0; i < names->len; i++) {
        const char *name = *(char **)&names->pdata[i];
        g_autofree char *path = g_build_filename(dir, name, NULL);
        if (out->len >= MAX_PLUGIN_FILES)
            return;
        if (g_str_has_suffix(name, ".so") && g_file_test(path, G_FILE_TEST_IS_REGULAR))
            g_ptr_array_add(out, g_steal_pointer(&path));
        else if (depth > 1 && g_file_test(path, G_FILE_TEST_IS_DIR) && name[0] != '.')
            collect_files(path, depth - 1, out);
    }
}

/* Lists the plugin files under the directories of one tier. */
static void scan_tier(char **dirs, unsigned tier)
{
    for (char **dir = dirs; dir && *dir; dir++) {
        if (!**dir)
            continue;
        g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
        collect_files(*dir, MAX_SCAN_DEPTH, files);
        for (guint i = 0; i < files->len; i++) {
            struct candidate *c = g_new0(struct candidate, 1);
            c->path = g_strdup(files->pdata[i]);
            g_autofree char *base = g_path_get_basename(c->path);
            c->stem = g_strndup(base, strlen(base) - strlen(".so"));
            c->kind = kind_from_path(c->path);
            c->tier = tier;
            g_ptr_array_add(registry.candidates, c);
        }
    }
}

/* Opens a candidate once; called with registry.lock held. */
static void try_candidate(struct candidate *c)
{
    if (c->tried)
        return;
    c->tried = true;
    GError *err = NULL;
    struct loaded_plugin *lp = load_plugin(c->path, &err);
    if (!lp && !err)
        return;   /* a file already loaded under another name (the tiers overlap) */
    if (!lp) {
        diskimg_warn("ignoring plugin %s", err->message);
        g_error_free(err);
        return;
    }
    lp->tier = c->tier;
    struct loaded_plugin *other = find_loaded(lp->desc->kind, lp->desc->name);
    if (!other) {
        g_ptr_array_add(registry.plugins, lp);
    } else if (other->tier == lp->tier) {
        diskimg_warn("ignoring plugin %s: duplicate %s plugin name '%s' (already loaded "
                     "from %s)", lp->path, kind_name(lp->desc->kind), lp->desc->name,
                     other->path);
        loaded_plugin_free(lp);
    } else if (other->tier < lp->tier) {
        loaded_plugin_free(lp);          /* shadowed by an earlier tier */
    } else {
        /* An earlier tier's file with an unexpected name: it wins from now
         * on; the displaced plugin may be in use, so it stays loaded. */
        g_ptr_array_remove(registry.plugins, other);
        g_ptr_array_add(registry.shadowed, other);
        g_ptr_array_add(registry.plugins, lp);
    }
}

static bool may_be_kind(const struct candidate *c, uint32_t kind)
{
    return c->kind == 0 || c->kind == kind;
}

/* Opens every candidate that may hold a plugin of `kind`, in search order. */
static void load_kind(uint32_t kind)
{
    for (guint i = 0; i < registry.candidates->len; i++) {
        struct candidate *c = registry.candidates->pdata[i];
        if (may_be_kind(c, kind))
            try_candidate(c);
    }
}

/* The plugin called `name`: files named after it first, in search order
 * (so an earlier tier's file wins), then everything else of its kind. */
static struct loaded_plugin *load_by_name(uint32_t kind, const char *name)
{
    for (guint i = 0; i < registry.candidates->len; i++) {
        struct candidate *c = registry.candidates->pdata[i];
        if (may_be_kind(c, kind) && g_str_equal(c->stem, name))
            try_candidate(c);
    }
    struct loaded_plugin *lp = find_loaded(kind, name);
    if (lp)
        return lp;
    load_kind(kind);
    return find_loaded(kind, name);
}

/* True when this library itself was loaded from the build tree. */
static bool running_from_build_tree(void)
{
    Dl_info info;
    if (!dladdr((void *)running_from_build_tree, &info) || !info.dli_fname)
        return false;
    g_autofree char *real = realpath(info.dli_fname, NULL);
    g_autofree char *root = realpath(DISKIMG_BUILD_ROOT, NULL);
    return real && root && g_str_has_prefix(real, root) && real[strlen(root)] == '/';
}

static gpointer init_once(gpointer unused)
{
    g_mutex_init(&registry.lock);
    registry.candidates = g_ptr_array_new();
    registry.plugins = g_ptr_array_new();
    registry.shadowed = g_ptr_array_new();
    /* secure_getenv: a set-uid or set-gid program that links libdiskimg
     * never takes plugins from its caller's environment. */
    const char *env = secure_getenv("DISKIMG_PLUGIN_PATH");
    if (env && *env) {
        g_auto(GStrv) dirs = g_strsplit(env, ":", -1);
        scan_tier(dirs, 0);
    }
    if (running_from_build_tree()) {
        char *dirs[] = { (char *)DISKIMG_BUILD_ROOT "/plugins", NULL };
        scan_tier(dirs, 1);
    } else {
        char *dirs[] = { (char *)DISKIMG_PLUGIN_DIR, NULL };
        scan_tier(dirs, 1);
    }
    return NULL;
}

int diskimg_init(GError **errp)
{
    static GOnce once = G_ONCE_INIT;
    g_once(&once, init_once, NULL);
    (void)errp;   /* nothing here can fail today; plugins that do are skipped */
    return 0;
}

int registry_init(GError **errp)
{
    return diskimg_init(errp);
}

struct loaded_plugin *registry_find(enum diskimg_plugin_kind kind, const char *name)
{
    if (diskimg_init(NULL) < 0 || !name)
        return NULL;
    g_mutex_lock(&registry.lock);
    struct loaded_plugin *lp = find_loaded(kind, name);
    if (!lp)
        lp = load_by_name(kind, name);
    g_mutex_unlock(&registry.lock);
    /* qemu names protocol drivers after their schemes (its curl driver is
     * "http" and "https"), so an io plugin also answers to each scheme of
     * its `protocols:` list: --image-opts file.driver=https. */
    if (!lp && kind == DISKIMG_KIND_IO)
        lp = registry_io_for_protocol(name);
    return lp;
}

static gint compare_by_name(gconstpointer a, gconstpointer b)
{
    const struct loaded_plugin *pa = *(struct loaded_plugin *const *)a;
    const struct loaded_plugin *pb = *(struct loaded_plugin *const *)b;
    return strcmp(pa->desc->name, pb->desc->name);
}

GPtrArray *registry_list(enum diskimg_plugin_kind kind)
{
    GPtrArray *out = g_ptr_array_new();
    if (diskimg_init(NULL) < 0)
        return out;
    g_mutex_lock(&registry.lock);
    load_kind(kind);
    for (guint i = 0; i < registry.plugins->len; i++) {
        struct loaded_plugin *lp = registry.plugins->pdata[i];
        if (lp->desc->kind == kind)
            g_ptr_array_add(out, lp);
    }
    g_mutex_unlock(&registry.lock);
    g_ptr_array_sort(out, compare_by_name);
    return out;
}

char **diskimg_plugin_names(enum diskimg_plugin_kind kind)
{
    g_autoptr(GPtrArray) list = registry_list(kind);
    char **names = g_new0(char *, list->len + 1);
    for (guint i = 0; i < list->len; i++)
        names[i] = g_strdup(((struct loaded_plugin *)list->pdata[i])->desc->name);
    return names;
}

const struct diskimg_plugin *diskimg_plugin_descriptor(enum diskimg_plugin_kind kind,
                                                       const char *name)
{
    struct loaded_plugin *lp = registry_find(kind, name);
    return lp ? lp->desc : NULL;
}

const diskimg_schema *diskimg_plugin_schema(enum diskimg_plugin_kind kind, const char *name)
{
    struct loaded_plugin *lp = registry_find(kind, name);
    return lp ? lp->schema : NULL;
}

const char *diskimg_plugin_path(enum diskimg_plugin_kind kind, const char *name)
{
    struct loaded_plugin *lp = registry_find(kind, name);
    return lp ? lp->path : NULL;
}

static gpointer parse_core_doc(gpointer data)
{
    struct core_doc *d = data;
    g_autofree char *origin = g_strdup_printf("schema/%s.yaml", d->which);
    GError *err = NULL;
    d->schema = diskimg_schema_parse(d->text, origin, &err);
    if (!d->schema) {
        diskimg_warn("%s", err->message);   /* a broken build; say so once */
        g_error_free(err);
    }
    return NULL;
}

const diskimg_schema *registry_core_schema(const char *which)
{
    for (size_t i = 0; i < G_N_ELEMENTS(core_docs); i++) {
        if (g_str_equal(which, core_docs[i].which)) {
            g_once(&core_docs[i].once, parse_core_doc, &core_docs[i]);
            return core_docs[i].schema;
        }
    }
    return NULL;
}

const diskimg_schema *diskimg_core_schema(const char *which)
{
    return registry_core_schema(which);
}

/* ------------------------------------------------------------ magic table */

static const char *member_str(JsonObject *o, const char *key)
{
    return json_object_has_member(o, key) ? json_object_get_string_member(o, key) : NULL;
}

static JsonArray *magic_formats(void)
{
    const diskimg_schema *m = registry_core_schema("magic");
    JsonNode *tree = m ? diskimg_schema_tree(m) : NULL;
    if (!tree || !JSON_NODE_HOLDS_OBJECT(tree))
        return NULL;
    JsonObject *root = json_node_get_object(tree);
    if (!json_object_has_member(root, "formats"))
        return NULL;
    JsonNode *f = json_object_get_member(root, "formats");
    return JSON_NODE_HOLDS_ARRAY(f) ? json_node_get_array(f) : NULL;
}

const char *registry_package_for(const char *format)
{
    JsonArray *formats = magic_formats();
    for (guint i = 0; formats && i < json_array_get_length(formats); i++) {
        JsonObject *e = json_array_get_object_element(formats, i);
        const char *name = e ? member_str(e, "format") : NULL;
        if (name && g_str_equal(name, format))
            return member_str(e, "package");
    }
    return NULL;
}

/* The io plugin whose schema lists `scheme` under `protocols:`, or NULL.
 * Only reached for names with a protocol prefix, so loading every io
 * plugin here costs nothing on the common path. */
struct loaded_plugin *registry_io_for_protocol(const char *scheme)
{
    g_autoptr(GPtrArray) ios = registry_list(DISKIMG_KIND_IO);
    for (guint i = 0; i < ios->len; i++) {
        struct loaded_plugin *lp = ios->pdata[i];
        g_auto(GStrv) protocols = lp->schema ? diskimg_schema_protocols(lp->schema) : NULL;
        if (protocols && g_strv_contains((const char *const *)protocols, scheme))
            return lp;
    }
    return NULL;
}

const char *registry_protocol_package(const char *scheme)
{
    const diskimg_schema *m = registry_core_schema("magic");
    JsonNode *tree = m ? diskimg_schema_tree(m) : NULL;
    if (!tree || !JSON_NODE_HOLDS_OBJECT(tree))
        return NULL;
    JsonObject *root = json_node_get_object(tree);
    JsonNode *list = json_object_has_member(root, "protocols")
                         ? json_object_get_member(root, "protocols") : NULL;
    if (!list || !JSON_NODE_HOLDS_ARRAY(list))
        return NULL;
    JsonArray *a = json_node_get_array(list);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *e = json_array_get_object_element(a, i);
        const char *name = e ? member_str(e, "protocol") : NULL;
        if (name && g_str_equal(name, scheme))
            return member_str(e, "package");
    }
    return NULL;
}

/* Does hex string `hex` equal buf[offset...]? */
static bool magic_matches(const uint8_t *buf, size_t len, uint64_t offset, const char *hex)
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || offset > len || n / 2 > len - offset)
        return false;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0 || buf[offset + i] != (uint8_t)(hi << 4 | lo))
            return false;
    }
    return true;
}

const char *registry_magic_match(const uint8_t *buf, size_t len)
{
    JsonArray *formats = magic_formats();
    for (guint i = 0; formats && i < json_array_get_length(formats); i++) {
        JsonObject *e = json_array_get_object_element(formats, i);
        const char *magic = e ? member_str(e, "magic") : NULL;
        const char *off = e ? member_str(e, "offset") : NULL;
        if (magic && magic_matches(buf, len, off ? g_ascii_strtoull(off, NULL, 0) : 0, magic))
            return member_str(e, "format");
    }
    return NULL;
}

void registry_magic_matches(const uint8_t *buf, size_t len, GPtrArray *out)
{
    JsonArray *formats = magic_formats();
    for (guint i = 0; formats && i < json_array_get_length(formats); i++) {
        JsonObject *e = json_array_get_object_element(formats, i);
        const char *magic = e ? member_str(e, "magic") : NULL;
        const char *off = e ? member_str(e, "offset") : NULL;
        if (!magic || !magic_matches(buf, len, off ? g_ascii_strtoull(off, NULL, 0) : 0, magic))
            continue;
        const char *name = member_str(e, "format");
        bool seen = false;
        for (guint j = 0; j < out->len && !seen; j++)
            seen = g_str_equal(out->pdata[j], name);
        if (!seen)
            g_ptr_array_add(out, (gpointer)name);
    }
}

int diskimg_format_require(const char *name, GError **errp)
{
    if (diskimg_init(errp) < 0)
        return -1;
    if (registry_find(DISKIMG_KIND_FORMAT, name))
        return 0;
    const char *package = registry_package_for(name);
    if (package)
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Unknown file format '%s' (install package %s)", name, package);
    else
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_PLUGIN,
                    "Unknown file format '%s'", name);
    return -1;
}

uint64_t diskimg_format_capabilities(const char *format)
{
    struct loaded_plugin *lp = registry_find(DISKIMG_KIND_FORMAT, format);
    return lp ? lp->desc->capabilities : 0;
}
