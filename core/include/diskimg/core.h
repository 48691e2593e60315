/* SPDX-License-Identifier: MIT */
/*
 * core.h — services of libdiskimg that the command layer (and programs
 * embedding the library) use: the plugin registry, image creation, image
 * information and progress reporting.  Plugins do not need this header.
 */
#ifndef DISKIMG_CORE_H
#define DISKIMG_CORE_H

#include <diskimg/plugin.h>
#include <diskimg/schema.h>

#ifdef __cplusplus
extern "C" {
#endif

DISKIMG_API const char *diskimg_version(void);

/* Finds the plugin files (idempotent, thread-safe; they are loaded when
 * first asked for).  Problems with a single plugin file are warnings
 * (diskimg_warn, so they reach only the installed warning handler) naming
 * the file; only a broken core schema is an error.  It installs no signal
 * handler and prints nothing: neither does any other call of the library. */
DISKIMG_API int diskimg_init(GError **errp);

/* The I/O plugin file nodes use when the caller names none ("posix" by
 * default); a backend that the system refuses falls back to posix with a
 * one-line notice. */
DISKIMG_API void diskimg_set_default_io(const char *name);
DISKIMG_API const char *diskimg_default_io(void);

/* Names of the loaded plugins of a kind, sorted; free with g_strfreev. */
DISKIMG_API char **diskimg_plugin_names(enum diskimg_plugin_kind kind);
DISKIMG_API const struct diskimg_plugin *diskimg_plugin_descriptor(enum diskimg_plugin_kind kind,
                                                                   const char *name);
DISKIMG_API const diskimg_schema *diskimg_plugin_schema(enum diskimg_plugin_kind kind,
                                                        const char *name);
DISKIMG_API const char *diskimg_plugin_path(enum diskimg_plugin_kind kind, const char *name);
/* The core's schemas: "commands", "types" or "magic". */
DISKIMG_API const diskimg_schema *diskimg_core_schema(const char *which);
/* The package that ships a plugin (its schema's `package:`, else the hint
 * of schema/magic.yaml for formats), or NULL when unknown. */
DISKIMG_API const char *diskimg_plugin_package(enum diskimg_plugin_kind kind, const char *name);
/* The installed plugins of a kind as the versioned document of
 * docs/introspection.md: {"introspection-version": 1, "kind": "format",
 * "plugins": [{name, version, summary, path, package, and for formats
 * writable, capabilities, operations}]}.  json_node_unref() it. */
DISKIMG_API JsonNode *diskimg_introspect_plugins(enum diskimg_plugin_kind kind);
/* Checks an option string ("cluster_size=64k,compat=1.1") against option
 * set `set` ("create-options", "open-options"...) of plugin `name` without
 * creating or opening anything: 0, or -1 with the error the command would
 * print (unknown key with its closest name, bad value, range). */
DISKIMG_API int diskimg_options_validate(enum diskimg_plugin_kind kind, const char *name,
                                         const char *set, const char *text, GError **errp);

/* Succeeds when a format plugin `name` is loaded; otherwise the error is
 * qemu-img's "Unknown file format 'NAME'", with an install hint for formats
 * that schema/magic.yaml knows. */
DISKIMG_API int diskimg_format_require(const char *name, GError **errp);
/* Whether the format plugin has the named optional operation ("check",
 * "snapshot_list", "bitmap_add"...). */
DISKIMG_API bool diskimg_format_has_op(const char *format, const char *op);
DISKIMG_API uint64_t diskimg_format_capabilities(const char *format);

/* Creates an image: makes the file (through the io backend), then lets the
 * format write its structures.  On failure a file this call created is
 * removed again. */
struct diskimg_create_params {
    uint32_t struct_size;
    const char *format;
    const diskimg_options *options;  /* validated create-options; may be NULL */
    uint64_t size;
    unsigned flags;                  /* DISKIMG_CREATE_* */
    const char *io;                  /* NULL: the default backend */
    const diskimg_options *file_options; /* the io plugin's create-options (nocow...) */
};
DISKIMG_API int diskimg_create(const char *filename, const struct diskimg_create_params *p,
                               GError **errp);
/* Whether images can be created under `filename` as far as its protocol is
 * concerned: 0 for local names and for protocols whose io plugin can create
 * them; -1 with qemu's "Protocol driver 'SCHEME' does not support image
 * creation" when the plugin serving the name's scheme declares
 * DISKIMG_CAP_READ_ONLY (http).  diskimg_create checks it first; commands
 * ask earlier, where qemu-img does (before "Formatting ..."). */
DISKIMG_API int diskimg_protocol_check_create(const char *filename, GError **errp);

/* ImageInfo of one node (no backing chain), members in qemu's order:
 * virtual-size, filename, format, actual-size, cluster-size, encrypted,
 * backing-filename, full-backing-filename, backing-filename-format,
 * snapshots, dirty-flag, format-specific. */
DISKIMG_API JsonObject *diskimg_image_info(diskimg_node *n, GError **errp);

/* Operations dispatched to optional format callbacks; a missing callback
 * gives qemu-img's wording for that operation (DISKIMG_ERROR_NOT_SUPPORTED). */
DISKIMG_API int diskimg_node_check(diskimg_node *n, unsigned fix,
                                   struct diskimg_check_result *res, GError **errp);
DISKIMG_API int diskimg_measure(const char *format, const struct diskimg_measure_args *args,
                                struct diskimg_measure_result *res, GError **errp);
DISKIMG_API int diskimg_node_amend(diskimg_node *n, const diskimg_options *o, bool force,
                                   GError **errp);
DISKIMG_API int diskimg_node_set_backing(diskimg_node *n, const char *filename,
                                         const char *format, GError **errp);
DISKIMG_API int diskimg_node_make_empty(diskimg_node *n, GError **errp);
DISKIMG_API int diskimg_node_info(diskimg_node *n, struct diskimg_image_info *info,
                                  GError **errp);

/* Snapshot and bitmap lists as returned by the plugins. */
struct diskimg_snapshot_list {
    GArray *items;              /* struct diskimg_snapshot, strings owned */
    GError *refused;            /* internal: an entry the plugin passed unreadably */
};
struct diskimg_bitmap_list {
    GArray *items;              /* struct diskimg_bitmap, strings owned */
    GError *refused;            /* internal: as above */
};
DISKIMG_API diskimg_snapshot_list *diskimg_node_snapshots(diskimg_node *n, GError **errp);
DISKIMG_API void diskimg_snapshot_list_free(diskimg_snapshot_list *l);
DISKIMG_API diskimg_bitmap_list *diskimg_node_bitmaps(diskimg_node *n, GError **errp);
DISKIMG_API void diskimg_bitmap_list_free(diskimg_bitmap_list *l);

/* Snapshot and bitmap operations (NOT_SUPPORTED when the format lacks them). */
DISKIMG_API int diskimg_node_snapshot_create(diskimg_node *n, const struct diskimg_snapshot *sn,
                                             GError **errp);
DISKIMG_API int diskimg_node_snapshot_apply(diskimg_node *n, const char *id_or_name,
                                            GError **errp);
DISKIMG_API int diskimg_node_snapshot_delete(diskimg_node *n, const char *id_or_name,
                                             GError **errp);
DISKIMG_API int diskimg_node_snapshot_load(diskimg_node *n, const char *id, const char *name,
                                           GError **errp);
DISKIMG_API int diskimg_node_bitmap_add(diskimg_node *n, const struct diskimg_bitmap *b,
                                        GError **errp);
DISKIMG_API int diskimg_node_bitmap_remove(diskimg_node *n, const char *name, GError **errp);
DISKIMG_API int diskimg_node_bitmap_set_enabled(diskimg_node *n, const char *name, bool enabled,
                                                GError **errp);
DISKIMG_API int diskimg_node_bitmap_query(diskimg_node *n, const char *name, uint64_t offset,
                                          uint64_t len, bool *dirty, uint64_t *run,
                                          GError **errp);
DISKIMG_API int diskimg_node_bitmap_set(diskimg_node *n, const char *name, uint64_t offset,
                                        uint64_t len, bool dirty, GError **errp);
/* Sets in dst every bit set in src (the images may differ). */
DISKIMG_API int diskimg_bitmap_merge(diskimg_node *dst, const char *dst_name, diskimg_node *src,
                                     const char *src_name, GError **errp);

/* Parallel compression of whole clusters (see the format ops `compress` and
 * `write_precompressed`): compress may run on any thread, concurrently. */
DISKIMG_API bool diskimg_node_can_compress_parallel(const diskimg_node *n);
DISKIMG_API int64_t diskimg_node_compress(diskimg_node *n, const void *buf, uint64_t len,
                                          void *out, uint64_t out_cap, GError **errp);
DISKIMG_API int diskimg_node_write_precompressed(diskimg_node *n, const void *data,
                                                 uint64_t len, uint64_t offset,
                                                 uint64_t guest_len, GError **errp);
/* Copy offload between two file nodes of one I/O backend: bytes copied
 * (maybe fewer than len), 0 when offload is impossible here, -1 on error. */
DISKIMG_API int64_t diskimg_node_copy_range(diskimg_node *src, uint64_t src_offset,
                                            diskimg_node *dst, uint64_t dst_offset,
                                            uint64_t len, GError **errp);

/* ------------------------------------------------------------ copy engine */

/*
 * The engine behind convert, dd, commit and rebase: copies the guest view of
 * one or more source nodes (concatenated) into a target node, using block
 * status to skip holes and known-zero ranges without reading them.
 */
struct diskimg_progress;

/*
 * A consumer that takes the place of the target node (checksum): the engine
 * walks and reads the sources as for a copy, with the same workers, and
 * hands every range to the sink instead of writing it.
 *
 * Ranges start on multiples of block_size from the first source byte and
 * hold whole blocks, except the last one, which ends with the sources; a
 * block that is partly data and partly zeroes is read as data.  Data
 * ranges are at most DISKIMG_COPY_MAX_DATA bytes; zero ranges (what block
 * status reports as reading zeroes) are never read and may be much longer.
 *
 *   process  data ranges only: on a worker thread, several at once, in no
 *            particular order; may leave a result for commit in *result.
 *   commit   every range, one at a time, in order of offset; `buf` is NULL
 *            for zero ranges.  Offsets count from the first source byte.
 *   release  frees a result; called for every result process left, once
 *            commit has seen it or when the copy stops early.  May be NULL.
 *
 * A callback that fails sets *errp and returns -1; the copy stops with that
 * error.  compress, copy offload, out-of-order and the differences modes do
 * not apply to a sink.
 */
#define DISKIMG_COPY_MAX_DATA (2u << 20)
struct diskimg_copy_sink {
    uint32_t struct_size;          /* sizeof(struct diskimg_copy_sink) */
    uint64_t block_size;           /* a power of two, at most DISKIMG_COPY_MAX_DATA */
    void *opaque;
    int (*process)(void *opaque, uint64_t offset, const uint8_t *buf, uint64_t len,
                   void **result, GError **errp);
    int (*commit)(void *opaque, uint64_t offset, uint64_t len, const uint8_t *buf,
                  void *result, GError **errp);
    void (*release)(void *opaque, void *result);
};

struct diskimg_copy_params {
    uint32_t struct_size;
    diskimg_node *const *sources;   /* concatenated in order */
    size_t n_sources;
    diskimg_node *target;
    uint64_t target_offset;         /* where the first source byte lands */
    uint64_t source_offset;         /* first byte of the (single) source to copy */
    uint64_t length;                /* bytes to copy; 0 = to the end of the sources */
    uint64_t sparse_size;           /* -S: zero runs this long become holes; 0 = allocate all */
    bool target_is_zero;            /* target reads as zeroes (fresh, or --target-is-zero) */
    bool target_has_backing;        /* -B: zeroes must be written, never skipped */
    bool top_only;                  /* copy only what the sources' top layer allocates */
    bool compress;                  /* -c: write whole clusters compressed */
    bool salvage;                   /* unreadable ranges become zeroes, with a warning */
    bool quiet;
    uint64_t rate_limit;            /* bytes per second, 0 = unlimited */
    unsigned parallel;              /* -m: requests in flight */
    bool out_of_order;              /* -W */
    bool copy_offload;              /* -C */
    struct diskimg_progress *progress;
    /* Members below were appended later; callers that predate them pass a
     * smaller struct_size and get the plain copy above. */
    diskimg_node *base;             /* commit: copy only ranges that some layer
                                       between the source and base (exclusive)
                                       allocates; base must be in the source's
                                       backing chain.  NULL: off */
    bool only_unallocated;          /* rebase: copy only ranges the source's own
                                       layer does not allocate (what its backing
                                       chain shows) */
    diskimg_node *differences_against; /* with only_unallocated: write only the
                                       512-byte sectors where the source differs
                                       from this node, read at the same offsets
                                       (zeroes past its end) */
    bool differences_against_zeroes; /* with differences_against NULL: compare
                                       with zeroes instead (rebase -b '') */
    const struct diskimg_copy_sink *sink; /* instead of target (which is then
                                       NULL): see struct diskimg_copy_sink */
    bool progress_counts_work;      /* progress counts only the bytes the copy
                                       reads or writes (holes and free zeroes
                                       skipped count nothing), so give it the
                                       total diskimg_copy_work() reports;
                                       false: every byte of the range counts */
};
DISKIMG_API int diskimg_copy(const struct diskimg_copy_params *p, GError **errp);
/* The bytes diskimg_copy(p) would read or write, found by walking block
 * status as the copy does, without reading data: a progress total that
 * tracks the work (qemu-img convert's bar), for progress_counts_work. */
DISKIMG_API int diskimg_copy_work(const struct diskimg_copy_params *p, uint64_t *bytes,
                                  GError **errp);

/* ---------------------------------------------------------------- progress */

/* One facility for -p, --progress-fd and SIGUSR1: the command sets a total,
 * the engine adds work done (skipped ranges count as done).  The library
 * only counts; the handler the caller installs decides what to show (the
 * diskimg command draws qemu-img's "    (12.34/100%)", writes JSON lines to
 * --progress-fd and answers SIGUSR1; see docs/progress.md). */
typedef struct diskimg_progress diskimg_progress;
enum diskimg_progress_mode {
    DISKIMG_PROGRESS_QUIET = 0,  /* no bar (SIGUSR1 may still ask for a line) */
    DISKIMG_PROGRESS_BAR,        /* -p */
};
enum diskimg_progress_event {
    DISKIMG_PROGRESS_STARTED = 0, /* diskimg_progress_new */
    DISKIMG_PROGRESS_UPDATED,     /* every diskimg_progress_add */
    DISKIMG_PROGRESS_FINISHED,    /* diskimg_progress_finish; a bar is at 100 % */
    /* Seen only by a diskimg_progress_observer_fn: */
    DISKIMG_PROGRESS_COMPLETED,   /* diskimg_progress_complete: succeeded, done = total */
    DISKIMG_PROGRESS_PHASE,       /* diskimg_progress_set_phase */
};
/* Called with the operation's mode and its progress in 1/100 % (0..10000),
 * serialised per operation (from whichever thread did the work). */
typedef void (*diskimg_progress_fn)(enum diskimg_progress_mode mode,
                                    enum diskimg_progress_event event, unsigned hundredths,
                                    void *opaque);
/* NULL: progress is counted but goes nowhere (the default). */
DISKIMG_API void diskimg_set_progress_handler(diskimg_progress_fn fn, void *opaque);

/* What an observer sees: the counts themselves, for programs that want
 * bytes and rates rather than a percentage. */
struct diskimg_progress_state {
    uint32_t struct_size;
    enum diskimg_progress_mode mode;
    enum diskimg_progress_event event;
    uint64_t done, total;       /* done <= total unless the total was an estimate */
    int64_t elapsed_us;         /* monotonic time since diskimg_progress_new */
    const char *phase;          /* the last diskimg_progress_set_phase, or "" */
};
/* Called like a diskimg_progress_fn, under the operation's lock, with
 * every event; `s` is valid during the call only.  An observer and a
 * handler may both be installed. */
typedef void (*diskimg_progress_observer_fn)(const struct diskimg_progress_state *s,
                                             void *opaque);
DISKIMG_API void diskimg_set_progress_observer(diskimg_progress_observer_fn fn, void *opaque);

DISKIMG_API diskimg_progress *diskimg_progress_new(enum diskimg_progress_mode mode,
                                                   uint64_t total);
DISKIMG_API void diskimg_progress_add(diskimg_progress *p, uint64_t done);
DISKIMG_API void diskimg_progress_set_total(diskimg_progress *p, uint64_t total);
/* Names the step the operation is in ("copy", "flush", ...: a short
 * lowercase word, copied); observers get a PHASE event. */
DISKIMG_API void diskimg_progress_set_phase(diskimg_progress *p, const char *phase);
/* The operation succeeded: done becomes total, observers get COMPLETED
 * (handlers an UPDATED at 100 %).  Call it before diskimg_progress_finish;
 * an operation finished without it failed or was cut short. */
DISKIMG_API void diskimg_progress_complete(diskimg_progress *p);
DISKIMG_API void diskimg_progress_finish(diskimg_progress *p);  /* FINISHED, then frees */

/* Not for use: makes the plugin ABI structs visible to ABI checkers. */
DISKIMG_API size_t diskimg_abi_anchor(const struct diskimg_plugin *plugin,
                                      const struct diskimg_format_ops *format,
                                      const struct diskimg_io_ops *io,
                                      const struct diskimg_crypto_ops *crypto,
                                      const struct diskimg_format_open_args *open_args,
                                      const struct diskimg_format_create_args *create_args,
                                      const struct diskimg_io_open_args *io_args,
                                      const struct diskimg_io_request *request,
                                      const struct diskimg_image_info *info,
                                      const struct diskimg_backing_ref *backing,
                                      const struct diskimg_check_result *check,
                                      const struct diskimg_bitmap *bitmap,
                                      const struct diskimg_extent *extent);

#ifdef __cplusplus
}
#endif
#endif /* DISKIMG_CORE_H */
