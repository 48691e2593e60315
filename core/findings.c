/* SPDX-License-Identifier: MIT */
/*
 * Findings: what an inspection of an image noticed, collected while the
 * image is opened (diskimg inspect).  The collection belongs to whoever
 * opens the image, not to a node, so that what was seen before a failed
 * open (an unknown feature bit the format refuses) is still reported.
 */
#include <string.h>

#include "internal.h"

struct diskimg_findings {
    GPtrArray *items;               /* struct item, owned */
    GMutex lock;                    /* formats may report from any thread */
};

struct item {
    char *id, *field, *message;
    enum diskimg_severity severity;
};

static void item_free(gpointer p)
{
    struct item *it = p;
    g_free(it->id);
    g_free(it->field);
    g_free(it->message);
    g_free(it);
}

diskimg_findings *diskimg_findings_new(void)
{
    diskimg_findings *f = g_new0(diskimg_findings, 1);
    f->items = g_ptr_array_new_with_free_func(item_free);
    g_mutex_init(&f->lock);
    return f;
}

void diskimg_findings_free(diskimg_findings *f)
{
    if (!f)
        return;
    g_ptr_array_free(f->items, TRUE);
    g_mutex_clear(&f->lock);
    g_free(f);
}

static bool already_there(const diskimg_findings *f, const struct item *it)
{
    for (guint i = 0; i < f->items->len; i++) {
        const struct item *o = f->items->pdata[i];
        if (g_str_equal(o->id, it->id) && g_str_equal(o->field, it->field) &&
            g_str_equal(o->message, it->message))
            return true;
    }
    return false;
}

/* A hostile image could repeat a name a million times: the list of what
 * it shows stays bounded like everything else read from it. */
#define MAX_FINDINGS 1000

static void add_v(diskimg_findings *f, const char *id, enum diskimg_severity severity,
                  const char *field, const char *fmt, va_list ap)
{
    struct item *it = g_new0(struct item, 1);
    it->id = g_strdup(id);
    it->field = g_strdup(field ? field : "");
    it->message = g_strdup_vprintf(fmt, ap);
    it->severity = severity;
    g_mutex_lock(&f->lock);
    if (f->items->len < MAX_FINDINGS && !already_there(f, it)) {
        g_ptr_array_add(f->items, it);
        it = NULL;
    }
    g_mutex_unlock(&f->lock);
    if (it)
        item_free(it);
}

void diskimg_findings_add(diskimg_findings *f, const char *id, enum diskimg_severity severity,
                          const char *field, const char *fmt, ...)
{
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    add_v(f, id, severity, field, fmt, ap);
    va_end(ap);
}

void diskimg_node_add_finding(diskimg_node *n, const char *id, enum diskimg_severity severity,
                              const char *field, const char *fmt, ...)
{
    if (!n || !n->findings)
        return;
    va_list ap;
    va_start(ap, fmt);
    add_v(n->findings, id, severity, field, fmt, ap);
    va_end(ap);
}

unsigned diskimg_findings_count(const diskimg_findings *f)
{
    return f ? f->items->len : 0;
}

int diskimg_findings_get(const diskimg_findings *f, unsigned i, struct diskimg_finding *out)
{
    if (!f || i >= f->items->len || !out)
        return -1;
    const struct item *it = f->items->pdata[i];
    struct diskimg_finding full = {
        .struct_size = sizeof(full),
        .id = it->id,
        .severity = it->severity,
        .field = it->field,
        .message = it->message,
    };
    abi_copy_out(out, &full, sizeof(full));
    return 0;
}
