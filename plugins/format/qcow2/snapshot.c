/* SPDX-License-Identifier: MIT */
/*
 * snapshot.c — internal snapshots: list, create, revert (apply), delete
 * and the read-only view used by convert -l.
 *
 * Reference counting follows qemu's model: a snapshot holds one reference
 * to every L2 table and data cluster its L1 table reaches, and the COPIED
 * flag (L1 and L2 entries of the active table) is set exactly where the
 * refcount is 1.  walk_l1() is qemu's qcow2_update_snapshot_refcount: it
 * adds -1, 0 or +1 to everything an L1 table references and recomputes
 * the COPIED flags on the way.
 *
 * Update order (crash consistency, as qemu): new structures and their
 * refcounts are durable before anything points at them; the snapshot
 * table is switched with one header write; references are dropped only
 * after nothing on disk uses them any more.  A crash leaks clusters at
 * worst, which `check -r leaks` repairs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

/* QEMUSnapshotInfo.name is char[256]: qemu-img cuts longer names there. */
#define QEMU_SNAPSHOT_NAME_MAX 255u

int qcow2_sync(struct qcow2 *s, GError **errp)
{
    if (qcow2_flush_metadata(s, errp) < 0)
        return -1;
    return diskimg_node_flush(s->file, errp);
}

static void snapshot_clear(struct qcow2_snapshot *sn)
{
    g_free(sn->id);
    g_free(sn->name);
    g_free(sn->extra);
    memset(sn, 0, sizeof(*sn));
}

void qcow2_snapshots_free(struct qcow2 *s)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        snapshot_clear(&s->snapshots[i]);
    g_clear_pointer(&s->snapshots, g_free);
    s->nb_snapshots = 0;
}

/* ------------------------------------------------------------ lookup */

static int find_by_id(const struct qcow2 *s, const char *id)
{
    for (uint32_t i = 0; id && i < s->nb_snapshots; i++) {
        if (g_str_equal(s->snapshots[i].id, id))
            return (int)i;
    }
    return -1;
}

static int find_by_name(const struct qcow2 *s, const char *name)
{
    for (uint32_t i = 0; name && i < s->nb_snapshots; i++) {
        if (g_str_equal(s->snapshots[i].name, name))
            return (int)i;
    }
    return -1;
}

/* qemu's find_snapshot_by_id_and_name: both must match when both given. */
static int find_by_id_and_name(const struct qcow2 *s, const char *id, const char *name)
{
    if (!id)
        return find_by_name(s, name);
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        if (g_str_equal(s->snapshots[i].id, id) &&
            (!name || g_str_equal(s->snapshots[i].name, name)))
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------ list */

int qcow2_snapshot_list(void *h, diskimg_snapshot_list *out, GError **errp)
{
    struct qcow2 *s = h;
    (void)errp;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *q = &s->snapshots[i];
        struct diskimg_snapshot sn = {
            .struct_size = sizeof(sn),
            .id = q->id, .name = q->name, .vm_state_size = q->vm_state_size,
            .date_sec = q->date_sec, .date_nsec = q->date_nsec,
            .vm_clock_nsec = q->vm_clock_nsec, .icount = q->icount,
            .has_icount = q->has_icount,
        };
        diskimg_snapshot_list_add(out, &sn);
    }
    return 0;
}

/* ------------------------------------------------------------ table */

static uint32_t entry_extra_len(const struct qcow2_snapshot *sn)
{
    return QCOW2_SNAPSHOT_EXTRA_LEN + sn->extra_unknown;
}

static uint64_t entry_len(const struct qcow2_snapshot *sn)
{
    return 40 + entry_extra_len(sn) + strlen(sn->id) + strlen(sn->name);
}

/* qemu's layout: every entry starts 8-aligned, the last is not padded. */
static uint64_t snapshot_table_size(const struct qcow2 *s)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        size = ((size + 7) & ~7ull) + entry_len(&s->snapshots[i]);
    return size;
}

static void put_entry(uint8_t *p, const struct qcow2_snapshot *sn)
{
    size_t id_len = strlen(sn->id), name_len = strlen(sn->name);
    diskimg_put_be64(p, sn->l1_offset);
    diskimg_put_be32(p + 8, sn->l1_size);
    diskimg_put_be16(p + 12, (uint16_t)id_len);
    diskimg_put_be16(p + 14, (uint16_t)name_len);
    diskimg_put_be32(p + 16, sn->date_sec);
    diskimg_put_be32(p + 20, sn->date_nsec);
    diskimg_put_be64(p + 24, sn->vm_clock_nsec);
    /* a VM state beyond 4 GiB reads as "disk only" to old readers */
    diskimg_put_be32(p + 32, sn->vm_state_size <= UINT32_MAX ? (uint32_t)sn->vm_state_size : 0);
    diskimg_put_be32(p + 36, entry_extra_len(sn));
    diskimg_put_be64(p + 40, sn->vm_state_size);
    diskimg_put_be64(p + 48, sn->disk_size);
    diskimg_put_be64(p + 56, sn->has_icount ? sn->icount : UINT64_MAX);
    p += 40 + QCOW2_SNAPSHOT_EXTRA_LEN;
    if (sn->extra_unknown)
        memcpy(p, sn->extra, sn->extra_unknown);
    p += sn->extra_unknown;
    memcpy(p, sn->id, id_len);
    memcpy(p + id_len, sn->name, name_len);
}

static int write_table_data(struct qcow2 *s, uint64_t off, uint64_t size, GError **errp)
{
    uint8_t *buf = g_try_malloc0(size);
    if (!buf)
        return qcow2_enomem(errp);
    uint64_t pos = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        pos = (pos + 7) & ~7ull;
        put_entry(buf + pos, &s->snapshots[i]);
        pos += entry_len(&s->snapshots[i]);
    }
    int ret = diskimg_node_pwrite(s->file, buf, size, off, 0, errp);
    g_free(buf);
    return ret;
}

static int write_header_snapshots(struct qcow2 *s, uint32_t n, uint64_t off, GError **errp)
{
    uint8_t v[12];
    diskimg_put_be32(v, n);
    diskimg_put_be64(v + 4, off);
    if (diskimg_node_pwrite(s->file, v, sizeof(v), 60, 0, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0)
        return -1;
    s->h.nb_snapshots = n;
    s->h.snapshots_offset = off;
    return 0;
}

/* qemu's qcow2_write_snapshots: the table of s->snapshots goes to new
 * clusters, the header switches to it, the old table is freed (when
 * free_old: its clusters are counted as the table's). */
static int write_snapshot_table_from(struct qcow2 *s, bool free_old, GError **errp)
{
    uint64_t size = snapshot_table_size(s), off = 0;
    if (size > QCOW2_MAX_SNAPSHOT_TABLE)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "-27 (File too large)");
    if (size && qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, size), &off, errp) < 0)
        return -1;
    if (qcow2_sync(s, errp) < 0 || (size && write_table_data(s, off, size, errp) < 0) ||
        diskimg_node_flush(s->file, errp) < 0)
        goto fail;
    uint64_t old_off = s->h.snapshots_offset, old_size = s->snapshots_size;
    if (write_header_snapshots(s, s->nb_snapshots, off, errp) < 0)
        goto fail;
    s->snapshots_size = size;
    if (free_old && old_size && qcow2_update_refcount(s, old_off, old_size, -1, errp) < 0)
        return -1;
    return 0;
fail:
    if (size)
        (void)qcow2_update_refcount(s, off, size, -1, NULL);
    return -1;
}

static int write_snapshot_table(struct qcow2 *s, GError **errp)
{
    return write_snapshot_table_from(s, true, errp);
}

int qcow2_snapshot_table_drop(struct qcow2 *s, GError **errp)
{
    uint8_t v[12] = { 0 };
    /* forgotten first: the guard must not see the garbage "snapshots"
     * (their L1 tables may name the header itself) */
    qcow2_snapshots_free(s);
    s->h.nb_snapshots = 0;
    s->h.snapshots_offset = 0;
    s->snapshots_size = 0;
    s->snap_repairs = 0;
    if (qcow2_guard_check_write(s, 60, sizeof(v), QCOW2_OL_HEADER, errp) < 0 ||
        diskimg_node_pwrite(s->file, v, sizeof(v), 60, 0, errp) < 0)
        return -1;
    return diskimg_node_flush(s->file, errp);
}

/* Repair (qemu's qcow2_check_fix_snapshot_table): the entries as read
 * (incomplete ones completed, overlong extra data cut, overhanging
 * entries dropped) are written as a new table.  Its clusters are taken
 * from `first_free` on, where check counted nothing: refcounts check
 * could not repair must not hand out a cluster in use.  The old table is
 * freed only when check counted it (it may lie beyond the end of the
 * file, where nothing holds a reference for it). */
int qcow2_snapshot_table_repair(struct qcow2 *s, uint64_t first_free, bool free_old,
                                GError **errp)
{
    s->free_cluster_index = MAX(s->free_cluster_index, first_free);
    if (write_snapshot_table_from(s, free_old, errp) < 0)
        return -1;
    /* the entries are now as written: complete, extra data within bounds */
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        s->snapshots[i].extra_size = entry_extra_len(&s->snapshots[i]);
    s->snap_repairs = 0;
    return 0;
}

/* ------------------------------------------------------------ refcount walk */

/* One L2 entry: adjust its cluster's refcount, recompute COPIED. */
static int walk_entry(struct qcow2 *s, uint8_t *l2, uint64_t j, uint64_t l2off, int addend,
                      bool *dirty, GError **errp)
{
    uint64_t e = qcow2_l2_entry(s, l2, j), ne = e & ~QCOW2_OFLAG_COPIED, rc = 0;
    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t off, len;
        qcow2_compressed_span(s, e, &off, &len);
        if (addend && qcow2_update_refcount(s, off & ~511ull, len + (off & 511), addend,
                                            errp) < 0)
            return -1;
        rc = 2;     /* compressed clusters are never written in place */
    } else if (ne & QCOW2_OFFSET_MASK) {
        uint64_t host = ne & QCOW2_OFFSET_MASK;
        if (qcow2_offset_into_cluster(s, host))
            return qcow2_corrupt(s, errp, "Cluster allocation offset %#" PRIx64 " unaligned "
                                 "(L2 offset: %#" PRIx64 ", L2 index: %#" PRIx64 ")", host,
                                 l2off, j);
        if (addend && qcow2_update_refcount(s, host, s->cluster_size, addend, errp) < 0)
            return -1;
        if (qcow2_get_refcount(s, host >> s->cluster_bits, &rc, errp) < 0)
            return -1;
    }
    if (rc == 1)
        ne |= QCOW2_OFLAG_COPIED;
    if (ne != e) {
        qcow2_l2_set(s, l2, j, ne, qcow2_l2_bitmap(s, l2, j));
        *dirty = true;
    }
    return 0;
}

static int walk_l2(struct qcow2 *s, uint64_t l2off, int addend, GError **errp)
{
    uint8_t *l2;
    bool dirty = false;
    if (diskimg_mcache_get(s->l2c, l2off, 0, &l2, errp) < 0)
        return -1;
    int ret = 0;
    for (uint64_t j = 0; j < s->l2_entries && ret == 0; j++)
        ret = walk_entry(s, l2, j, l2off, addend, &dirty, errp);
    if (dirty)
        diskimg_mcache_mark_dirty(s->l2c, l2);
    diskimg_mcache_put(s->l2c, l2);
    return ret;
}

/* qemu's qcow2_update_snapshot_refcount on an L1 table held in memory;
 * *changed tells whether l1[] itself was modified (COPIED flags). */
static int walk_l1(struct qcow2 *s, uint64_t *l1, uint32_t n, int addend, bool *changed,
                   GError **errp)
{
    *changed = false;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK, rc;
        if (!l2off)
            continue;
        if (qcow2_offset_into_cluster(s, l2off) || l2off < s->cluster_size)
            return qcow2_corrupt(s, errp, "L2 table offset %#" PRIx64 " unaligned (L1 index: "
                                 "%#" PRIx32 ")", l2off, i);
        if (walk_l2(s, l2off, addend, errp) < 0)
            return -1;
        if (addend && qcow2_update_refcount(s, l2off, s->cluster_size, addend, errp) < 0)
            return -1;
        if (qcow2_get_refcount(s, l2off >> s->cluster_bits, &rc, errp) < 0)
            return -1;
        uint64_t ne = l2off | (rc == 1 ? QCOW2_OFLAG_COPIED : 0);
        if (ne != l1[i]) {
            l1[i] = ne;
            *changed = true;
        }
    }
    return qcow2_sync(s, errp);
}

static int write_l1(struct qcow2 *s, const uint64_t *l1, uint32_t n, uint64_t off,
                    GError **errp)
{
    if (n == 0)
        return 0;
    uint8_t *raw = g_try_malloc((size_t)n * 8);
    if (!raw)
        return qcow2_enomem(errp);
    for (uint32_t i = 0; i < n; i++)
        diskimg_put_be64(raw + (size_t)i * 8, l1[i]);
    int ret = diskimg_node_pwrite(s->file, raw, (uint64_t)n * 8, off, 0, errp);
    g_free(raw);
    return ret < 0 ? -1 : diskimg_node_flush(s->file, errp);
}

/* The active L1 after a walk that may have changed its COPIED flags.  A
 * walk that fails half way (refcount limit) has still changed refcounts
 * and flags in memory: those reach the disk too, so that only leaks
 * remain, as after qemu's failure. */
static int walk_active(struct qcow2 *s, int addend, GError **errp)
{
    bool changed = false;
    int ret = walk_l1(s, s->l1, s->l1_size, addend, &changed, errp);
    if (!changed || addend < 0)
        return ret;
    if (ret < 0) {
        if (!s->corrupt && qcow2_sync(s, NULL) == 0)
            (void)write_l1(s, s->l1, s->l1_size, s->l1_offset, NULL);
        return -1;
    }
    return write_l1(s, s->l1, s->l1_size, s->l1_offset, errp);
}

/* A snapshot's L1 table, read into a zeroed array of `entries` >= l1_size. */
static int read_snapshot_l1(struct qcow2 *s, const struct qcow2_snapshot *sn, uint64_t entries,
                            uint64_t **out, GError **errp)
{
    return diskimg_load_u64_table(s->file, sn->l1_offset, sn->l1_size, entries,
                                  DISKIMG_BIG_ENDIAN, QCOW2_MAX_L1_BYTES, "snapshot L1 table",
                                  out, errp);
}

/* ------------------------------------------------------------ create */

static int modifiable(struct qcow2 *s, GError **errp)
{
    if (!s->writable || s->snapshot_loaded)
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION, "Image is read-only");
    if (s->corrupt)
        return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT, "Image is corrupt");
    if (s->ext_data)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "-95 (Operation not supported)");
    return 0;
}

/* qemu's find_new_snapshot_id: one more than the largest numeric id. */
static char *new_snapshot_id(const struct qcow2 *s)
{
    uint64_t max = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        uint64_t id = g_ascii_strtoull(s->snapshots[i].id, NULL, 10);
        max = MAX(max, id);
    }
    return g_strdup_printf("%" PRIu64, max + 1);
}

static void init_snapshot(const struct qcow2 *s, const struct diskimg_snapshot *in,
                          struct qcow2_snapshot *sn)
{
    const char *name = in->name ? in->name : "";
    memset(sn, 0, sizeof(*sn));
    sn->id = new_snapshot_id(s);
    sn->name = g_strndup(name, QEMU_SNAPSHOT_NAME_MAX);
    sn->date_sec = in->date_sec;
    sn->date_nsec = in->date_nsec;
    sn->vm_clock_nsec = in->vm_clock_nsec;
    sn->vm_state_size = in->vm_state_size;
    sn->disk_size = s->h.size & ~511ull;
    /* qemu-img hands over a zeroed QEMUSnapshotInfo: icount 0 */
    sn->icount = in->has_icount ? in->icount : 0;
    sn->has_icount = sn->icount != UINT64_MAX;
    sn->extra_size = QCOW2_SNAPSHOT_EXTRA_LEN;
}

/* Copies the active L1 to new clusters with one more reference to all it
 * reaches; fills sn->l1_offset/l1_size. */
static int copy_active_l1(struct qcow2 *s, struct qcow2_snapshot *sn, GError **errp)
{
    uint64_t bytes = (uint64_t)s->l1_size * 8, off = 0;
    if (bytes && qcow2_alloc_clusters(s, qcow2_size_to_clusters(s, bytes), &off, errp) < 0)
        return -1;
    if (walk_active(s, 1, errp) < 0 || write_l1(s, s->l1, s->l1_size, off, errp) < 0)
        return -1;
    sn->l1_offset = off;
    sn->l1_size = s->l1_size;
    return 0;
}

static int append_snapshot(struct qcow2 *s, struct qcow2_snapshot *sn, GError **errp)
{
    struct qcow2_snapshot *list = g_try_renew(struct qcow2_snapshot, s->snapshots,
                                              s->nb_snapshots + 1);
    if (!list)
        return qcow2_enomem(errp);
    s->snapshots = list;
    s->snapshots[s->nb_snapshots++] = *sn;
    if (write_snapshot_table(s, errp) < 0) {
        s->nb_snapshots--;
        return -1;
    }
    return 0;
}

int qcow2_snapshot_create(void *h, const struct diskimg_snapshot *in, GError **errp)
{
    struct qcow2 *s = h;
    if (modifiable(s, errp) < 0)
        return -1;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_SPACE, "-27 (File too large)");
    struct qcow2_snapshot sn;
    init_snapshot(s, in, &sn);
    /* the refcounts taken here leak on a later failure, as in qemu */
    if (copy_active_l1(s, &sn, errp) < 0 || append_snapshot(s, &sn, errp) < 0) {
        snapshot_clear(&sn);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ apply */

static int snapshot_geometry_ok(struct qcow2 *s, const struct qcow2_snapshot *sn,
                                uint64_t *l1_entries, GError **errp)
{
    uint32_t shift = s->cluster_bits + s->l2_bits;
    uint64_t size = sn->disk_size;
    uint64_t need = (size >> shift) + !!(size & ((1ull << shift) - 1));
    if (size > (uint64_t)INT64_MAX || (size & 511) || need > QCOW2_MAX_L1_BYTES / 8)
        return qcow2_corrupt(s, errp, "Snapshot '%s' has an invalid disk size %" PRIu64,
                             sn->id, size);
    *l1_entries = MAX(need, sn->l1_size);
    return 0;
}

/* qemu truncates to the snapshot's size first (bitmaps follow the size). */
static int set_size_for(struct qcow2 *s, uint64_t size, GError **errp)
{
    if (size == (s->h.size & ~511ull))
        return 0;
    if (qcow2_bitmaps_resize_check(s, size, errp) < 0)
        return -1;
    uint8_t v[8];
    diskimg_put_be64(v, size);
    if (diskimg_node_pwrite(s->file, v, 8, 24, 0, errp) < 0 ||
        diskimg_node_flush(s->file, errp) < 0)
        return -1;
    s->h.size = size;
    return qcow2_bitmaps_resize(s, errp);
}

/* Makes `l1` (s->l1_size entries) the active L1 table: its references are
 * taken, it is written over the active table, the old one's are dropped. */
static int switch_active_l1(struct qcow2 *s, uint64_t *l1, uint32_t sn_size, GError **errp)
{
    bool changed;
    if (walk_l1(s, l1, sn_size, 1, &changed, errp) < 0 ||
        write_l1(s, l1, s->l1_size, s->l1_offset, errp) < 0)
        return -1;
    /* on disk the new table is active; drop the old one's references */
    int ret = walk_l1(s, s->l1, s->l1_size, -1, &changed, errp);
    memcpy(s->l1, l1, (size_t)s->l1_size * 8);
    return ret < 0 ? -1 : walk_active(s, 0, errp);
}

int qcow2_snapshot_apply(void *h, const char *id_or_name, GError **errp)
{
    struct qcow2 *s = h;
    if (modifiable(s, errp) < 0)
        return -1;
    /* qemu's bdrv_snapshot_goto refuses any named bitmap, even disabled */
    if (s->nb_bitmaps)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Device has active dirty bitmaps");
    int i = find_by_id(s, id_or_name);
    if (i < 0)
        i = find_by_name(s, id_or_name);
    if (i < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND,
                                 "Failed to load snapshot: No such file or directory");
    const struct qcow2_snapshot *sn = &s->snapshots[i];
    uint64_t entries = 0, *l1 = NULL;
    if (snapshot_geometry_ok(s, sn, &entries, errp) < 0 || qcow2_grow_l1(s, entries, errp) < 0 ||
        set_size_for(s, sn->disk_size, errp) < 0 ||
        read_snapshot_l1(s, sn, s->l1_size, &l1, errp) < 0)
        return -1;
    int ret = switch_active_l1(s, l1, sn->l1_size, errp);
    g_free(l1);
    return ret;
}

/* ------------------------------------------------------------ delete */

static void remove_from_list(struct qcow2 *s, uint32_t i)
{
    memmove(&s->snapshots[i], &s->snapshots[i + 1],
            (s->nb_snapshots - i - 1) * sizeof(s->snapshots[0]));
    s->nb_snapshots--;
}

void qcow2_snapshot_forget(struct qcow2 *s, uint32_t i)
{
    snapshot_clear(&s->snapshots[i]);
    remove_from_list(s, i);
}

/* Drops the references of a snapshot no longer in the table. */
static int release_snapshot(struct qcow2 *s, const struct qcow2_snapshot *sn, GError **errp)
{
    uint64_t *l1;
    bool changed;
    if (read_snapshot_l1(s, sn, sn->l1_size, &l1, errp) < 0)
        return -1;
    int ret = walk_l1(s, l1, sn->l1_size, -1, &changed, errp);
    g_free(l1);
    if (ret == 0 && sn->l1_size)
        ret = qcow2_update_refcount(s, sn->l1_offset, (uint64_t)sn->l1_size * 8, -1, errp);
    /* COPIED flags of the active table may be due now */
    return ret < 0 ? -1 : walk_active(s, 0, errp);
}

/* `qemu-img snapshot -d` looks the snapshot up by name only
 * (bdrv_snapshot_find); so does this, for identical results. */
int qcow2_snapshot_delete(void *h, const char *name, GError **errp)
{
    struct qcow2 *s = h;
    int i = find_by_name(s, name);
    if (i < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND, "snapshot not found");
    if (modifiable(s, errp) < 0)
        return -1;
    struct qcow2_snapshot sn = s->snapshots[i];
    remove_from_list(s, (uint32_t)i);
    if (write_snapshot_table(s, errp) < 0) {
        /* put it back where it was */
        memmove(&s->snapshots[i + 1], &s->snapshots[i],
                (s->nb_snapshots - (uint32_t)i) * sizeof(sn));
        s->snapshots[i] = sn;
        s->nb_snapshots++;
        g_prefix_error(errp, "Failed to remove snapshot from snapshot list: ");
        return -1;
    }
    int ret = release_snapshot(s, &sn, errp);
    snapshot_clear(&sn);
    return ret;
}

/* ------------------------------------------------------------ load */

/* qemu's qcow2_snapshot_load_tmp: reads see the snapshot's L1 table; the
 * virtual size stays the image's (qemu does not change it either). */
int qcow2_snapshot_load(void *h, const char *id, const char *name, GError **errp)
{
    struct qcow2 *s = h;
    if (s->writable)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Device is not readonly");
    int i = find_by_id_and_name(s, id, name);
    if (i < 0 && id && !name)
        i = find_by_name(s, id);    /* a bare argument is an ID or a name */
    if (i < 0)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND, "Can't find snapshot");
    const struct qcow2_snapshot *sn = &s->snapshots[i];
    uint64_t *l1;
    if (read_snapshot_l1(s, sn, sn->l1_size, &l1, errp) < 0)
        return -1;
    g_free(s->l1);
    s->l1 = l1;
    s->l1_size = sn->l1_size;
    s->l1_offset = sn->l1_offset;
    s->cgen++;                  /* cached decompressed clusters are stale */
    s->snapshot_loaded = true;
    return 0;
}
