/* SPDX-License-Identifier: MIT */
/*
 * Child nodes: the extra files a format keeps besides its own (qcow2's
 * external data file, vmdk's extents...).  The core opens them the way the
 * parent was opened, so that --io, -t, -U and locking reach every file of
 * an image without the format knowing about any of them, and it owns them
 * afterwards: flush, allocated size and close walk the children, and a
 * failed create removes exactly the files that create made.
 */
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct node_child {
    diskimg_node *node;
    enum diskimg_child_role role;
    unsigned flags;                 /* DISKIMG_CHILD_* */
    bool created;                   /* did not exist before create_child made it */
};

static const char *role_name(enum diskimg_child_role role)
{
    switch (role) {
    case DISKIMG_CHILD_BACKING:   return "backing";
    case DISKIMG_CHILD_DATA_FILE: return "data-file";
    case DISKIMG_CHILD_EXTENT:    return "extent";
    case DISKIMG_CHILD_METADATA:  return "metadata";
    }
    return NULL;
}

/* The flags a child takes over from its parent: the access mode and the
 * locking choice (-U, no locks) are the user's, for every file. */
static unsigned inherited_flags(const diskimg_node *parent, unsigned child_flags)
{
    unsigned f = parent->flags & (DISKIMG_OPEN_NO_LOCK | DISKIMG_OPEN_FORCE_SHARE |
                                  DISKIMG_OPEN_UNTRUSTED);
    if ((parent->flags & DISKIMG_OPEN_RDWR) && !(child_flags & DISKIMG_CHILD_READ_ONLY))
        f |= DISKIMG_OPEN_RDWR;
    return f;
}

/* The I/O backend of the parent's own file (after any fallback). */
static const char *inherited_io(const diskimg_node *parent)
{
    const diskimg_node *file_level = parent->is_file ? parent : parent->file;
    return file_level ? file_level->plugin->desc->name : NULL;
}

static diskimg_node *attach(diskimg_node *parent, enum diskimg_child_role role,
                            const char *name, unsigned flags, bool create, GError **errp)
{
    if (!role_name(role) || role == DISKIMG_CHILD_BACKING) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: a format cannot open a child of role %d (the core opens the "
                    "backing chain from get_backing)", parent->filename, (int)role);
        return NULL;
    }
    if (!name || !*name) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "%s: empty %s file name",
                    parent->filename, role_name(role));
        return NULL;
    }
    /* The name is recorded (inspect's findings) before anything may refuse
     * it; a created child's name is the user's, not the image's. */
    if (!create && trust_check_child_name(parent, role, name, true, errp) < 0)
        return NULL;
    if (!create && !diskimg_node_may_open_children(parent)) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                    "%s: this open does not open the %s file '%s' the image names",
                    parent->filename, role_name(role), name);
        return NULL;
    }
    if (diskimg_node_metadata_only(parent) &&
        (role != DISKIMG_CHILD_METADATA || create)) {
        /* The format must report the name only (trust policy); failing here
         * keeps a format that forgets from reaching the file anyway.  A
         * METADATA child (structures `info` shows, such as a vmdk sparse
         * extent's header) may be read: it is opened like the image file
         * itself, and the node refuses every guest data request. */
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "%s: a metadata-only open does not open its %s file '%s'",
                    parent->filename, role_name(role), name);
        return NULL;
    }
    /* A created child's name is the user's, but it is recorded in the image
     * at once: refuse what later opens would refuse. */
    if (create && diskimg_trust_check_to_record(role, name, errp) < 0)
        return NULL;
    g_autofree char *path = diskimg_trust_resolve(parent, role, name, errp);
    if (!path)
        return NULL;
    unsigned open_flags = inherited_flags(parent, flags);
    bool existed = false;
    if (create) {
        if (!(open_flags & DISKIMG_OPEN_RDWR)) {
            g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_PERMISSION,
                        "Cannot create '%s': image is opened read-only", path);
            return NULL;
        }
        existed = g_file_test(path, G_FILE_TEST_EXISTS);
        open_flags |= DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE;
    }
    diskimg_node *d = open_file_node(path, inherited_io(parent), open_flags, parent->cache,
                                     NULL, errp);
    if (!d)
        return NULL;
    d->findings = parent->findings;
    struct node_child c = { .node = d, .role = role, .flags = flags,
                            .created = create && !existed };
    if (!parent->children)
        parent->children = g_array_new(FALSE, TRUE, sizeof(struct node_child));
    g_array_append_val(parent->children, c);
    return d;
}

diskimg_node *diskimg_node_open_child(diskimg_node *parent, enum diskimg_child_role role,
                                      const char *name, unsigned flags, GError **errp)
{
    return attach(parent, role, name, flags, false, errp);
}

diskimg_node *diskimg_node_create_child(diskimg_node *parent, enum diskimg_child_role role,
                                        const char *name, unsigned flags, GError **errp)
{
    return attach(parent, role, name, flags, true, errp);
}

static struct node_child *child_at(const diskimg_node *n, guint i)
{
    return &g_array_index(n->children, struct node_child, i);
}

unsigned diskimg_node_child_count(const diskimg_node *n, enum diskimg_child_role role)
{
    if (role == DISKIMG_CHILD_BACKING)
        return n->backing ? 1 : 0;
    unsigned count = 0;
    for (guint i = 0; n->children && i < n->children->len; i++)
        count += role == 0 || child_at(n, i)->role == role;
    return count;
}

diskimg_node *diskimg_node_child(const diskimg_node *n, enum diskimg_child_role role,
                                 unsigned index)
{
    if (role == DISKIMG_CHILD_BACKING)
        return index == 0 ? n->backing : NULL;
    for (guint i = 0; n->children && i < n->children->len; i++) {
        struct node_child *c = child_at(n, i);
        if ((role == 0 || c->role == role) && index-- == 0)
            return c->node;
    }
    return NULL;
}

diskimg_node *diskimg_node_data_file(const diskimg_node *n)
{
    return diskimg_node_child(n, DISKIMG_CHILD_DATA_FILE, 0);
}

int64_t child_allocated_size(diskimg_node *n, GError **errp)
{
    int64_t total = 0;
    for (guint i = 0; n->children && i < n->children->len; i++) {
        struct node_child *c = child_at(n, i);
        if (c->flags & DISKIMG_CHILD_UNCOUNTED)
            continue;
        GError *err = NULL;
        int64_t a = diskimg_node_allocated_size(c->node, &err);
        if (a < 0 && err) {
            g_propagate_error(errp, err);
            return -1;
        }
        if (a > 0)      /* -1 without an error: the backend cannot tell */
            total += a;
    }
    return total;
}

int child_flush_all(diskimg_node *n, GError **errp)
{
    for (guint i = 0; n->children && i < n->children->len; i++)
        if (diskimg_node_flush(child_at(n, i)->node, errp) < 0)
            return -1;
    return 0;
}

void child_close_all(diskimg_node *n)
{
    if (!n->children)
        return;
    /* Last opened first: a format may have opened an extent through an
     * earlier one's name. */
    for (guint i = n->children->len; i-- > 0;)
        diskimg_close(child_at(n, i)->node);
    g_array_free(n->children, TRUE);
    n->children = NULL;
}

void child_take_created(diskimg_node *n, GPtrArray *paths)
{
    for (guint i = 0; n->children && i < n->children->len; i++) {
        struct node_child *c = child_at(n, i);
        child_take_created(c->node, paths);
        if (c->created)
            g_ptr_array_add(paths, g_strdup(c->node->filename));
    }
}
