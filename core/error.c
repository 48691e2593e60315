/* SPDX-License-Identifier: MIT */
/* Errors and warnings: the core never prints by itself; warnings and report
 * lines go to the handlers the command layer installs (stderr, or nowhere
 * under -q), and nowhere without one. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "internal.h"

G_DEFINE_QUARK(diskimg-error-quark, diskimg_error)

static int code_for_errno(int errnum)
{
    switch (errnum) {
    case ENOENT:    return DISKIMG_ERROR_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:     return DISKIMG_ERROR_PERMISSION;
    case ENOSPC:
    case EDQUOT:    return DISKIMG_ERROR_NO_SPACE;
    case ENOMEM:    return DISKIMG_ERROR_NO_MEMORY;
    case EINVAL:    return DISKIMG_ERROR_INVALID;
    case ENOTSUP:   return DISKIMG_ERROR_NOT_SUPPORTED;
    case EAGAIN:    return DISKIMG_ERROR_LOCKED;
    default:        return DISKIMG_ERROR_IO;
    }
}

void diskimg_set_errno(GError **errp, int errnum, const char *fmt, ...)
{
    if (!errp)
        return;
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, DISKIMG_ERROR, code_for_errno(errnum), "%s: %s", prefix,
                g_strerror(errnum));
}

int diskimg_set_error(GError **errp, int code, const char *fmt, ...)
{
    if (!errp)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    g_propagate_error(errp, g_error_new_valist(DISKIMG_ERROR, code, fmt, ap));
    va_end(ap);
    return -1;
}

/* Where warnings and report lines go: a handler the caller installed. */
struct sink {
    diskimg_warn_fn fn;
    void *opaque;
};

static struct sink warnings, reports;

static void emit(const struct sink *sink, const char *fmt, va_list ap)
{
    if (!sink->fn)
        return;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    sink->fn(msg, sink->opaque);
}

void diskimg_set_warn_handler(diskimg_warn_fn fn, void *opaque)
{
    warnings = (struct sink){ fn, opaque };
}

void diskimg_set_report_handler(diskimg_warn_fn fn, void *opaque)
{
    reports = (struct sink){ fn, opaque };
}

void diskimg_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(&warnings, fmt, ap);
    va_end(ap);
}

void diskimg_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(&reports, fmt, ap);
    va_end(ap);
}
