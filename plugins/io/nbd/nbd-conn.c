/* SPDX-License-Identifier: MIT */
/*
 * nbd-conn.c — connections and their event threads (see nbd-conn.h).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "nbd-conn.h"

struct nbd_conn {
    struct nbd_handle *nbd;
    GThread *events;            /* the event thread; NULL before it runs */
    int wake_fd;                /* eventfd: a request was queued, or stop */
    gint stop;                  /* atomic */
};

struct nbd_handle *nbd_conn_handle(struct nbd_conn *c)
{
    return c->nbd;
}

/* ----------------------------------------------------------- event thread */

void nbd_conn_kick(struct nbd_conn *c)
{
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(c->wake_fd, &one, sizeof(one));
    while (r < 0 && errno == EINTR);
}

/* Polls the socket for what libnbd wants (its direction changes as
 * requests are queued, hence the wake-up fd) and runs its state machine.
 * Ends when asked to or when the connection is dead; libnbd then fails
 * the requests in flight and refuses new ones. */
static gpointer event_main(gpointer data)
{
    struct nbd_conn *c = data;
    int fd = nbd_aio_get_fd(c->nbd);

    while (fd >= 0 && !g_atomic_int_get(&c->stop)) {
        unsigned dir = nbd_aio_get_direction(c->nbd);
        struct pollfd p[2] = {
            { .fd = fd, .events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                          ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0)) },
            { .fd = c->wake_fd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents & POLLIN) {
            uint64_t count;
            if (read(c->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
                break;
        }
        int r = 0;
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
            r = nbd_aio_notify_read(c->nbd);
        else if (p[0].revents & POLLOUT)
            r = nbd_aio_notify_write(c->nbd);
        if (r < 0 || nbd_aio_is_dead(c->nbd) || nbd_aio_is_closed(c->nbd))
            break;
    }
    return NULL;
}

/* --------------------------------------------------------------- waiting */

void nbd_wait_init(struct nbd_wait *w)
{
    g_mutex_init(&w->lock);
    g_cond_init(&w->cond);
    w->done = false;
    w->error = 0;
}

static int wait_done(void *user, int *error)
{
    struct nbd_wait *w = user;
    g_mutex_lock(&w->lock);
    w->error = *error;
    w->done = true;
    g_cond_signal(&w->cond);
    g_mutex_unlock(&w->lock);
    return 1;   /* retire the command: nobody asks for it by cookie */
}

nbd_completion_callback nbd_wait_callback(struct nbd_wait *w)
{
    return (nbd_completion_callback){ .callback = wait_done, .user_data = w };
}

int nbd_wait_finish(struct nbd_conn *c, struct nbd_wait *w, int64_t cookie, char **why)
{
    *why = NULL;
    if (cookie < 0) {
        int err = nbd_get_errno();
        *why = g_strdup(nbd_get_error());
        g_mutex_clear(&w->lock);
        g_cond_clear(&w->cond);
        return err ? err : EIO;
    }
    nbd_conn_kick(c);
    g_mutex_lock(&w->lock);
    while (!w->done)
        g_cond_wait(&w->cond, &w->lock);
    g_mutex_unlock(&w->lock);
    g_mutex_clear(&w->lock);
    g_cond_clear(&w->cond);
    return w->error;
}

/* ------------------------------------------------------------ connecting */

static int apply_setup(struct nbd_handle *nbd, const struct nbd_conn_setup *s)
{
    if (nbd_set_export_name(nbd, s->export) < 0 ||
        nbd_add_meta_context(nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
        /* we check every reply, so libnbd need not zero read buffers */
        nbd_set_pread_initialize(nbd, false) < 0 ||
        /* the server decides about alignment; bounds and flags stay checked */
        nbd_set_strict_mode(nbd, LIBNBD_STRICT_MASK & ~LIBNBD_STRICT_ALIGN) < 0 ||
        nbd_set_opt_mode(nbd, true) < 0 ||
        nbd_set_tls(nbd, s->tls) < 0)
        return -1;
    if (s->tls == LIBNBD_TLS_DISABLE)
        return 0;
    if (s->tls_certificates && nbd_set_tls_certificates(nbd, s->tls_certificates) < 0)
        return -1;
    if (s->tls_psk_file && nbd_set_tls_psk_file(nbd, s->tls_psk_file) < 0)
        return -1;
    if (s->tls_username && nbd_set_tls_username(nbd, s->tls_username) < 0)
        return -1;
    return nbd_set_tls_verify_peer(nbd, s->tls_verify_peer);
}

/* libnbd's last error as our one-line message: the system's words for
 * plain socket errors (as qemu-img), libnbd's own text for the rest. */
static void connect_error(const char *describe, GError **errp)
{
    int err = nbd_get_errno();
    const char *msg = nbd_get_error();
    switch (err) {
    case ECONNREFUSED: case ENOENT: case EACCES: case ENETUNREACH: case EHOSTUNREACH:
    case ETIMEDOUT: case ENOTSOCK: case ECONNRESET:
        diskimg_set_error(errp, DISKIMG_ERROR_IO, "Failed to connect to '%s': %s", describe,
                          g_strerror(err));
        break;
    default:
        diskimg_set_error(errp, DISKIMG_ERROR_IO, "Failed to connect to '%s': %s", describe,
                          msg ? msg : "unknown error");
    }
}

/* Option negotiation: NBD_OPT_GO for the export.  A refusal there means
 * the server does not offer it. */
static int go(struct nbd_handle *nbd, const char *export, const char *describe, GError **errp)
{
    if (nbd_opt_go(nbd) == 0)
        return 0;
    int err = nbd_get_errno();
    if (err == ENOENT || err == EINVAL)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_FOUND,
                                 "Requested export '%s' not available on '%s' (%s)", export,
                                 describe, nbd_get_error());
    return diskimg_set_error(errp, DISKIMG_ERROR_IO, "Negotiating export '%s' with '%s' failed: %s",
                             export, describe, nbd_get_error());
}

struct nbd_conn *nbd_conn_open(bool is_unix, const char *host, const char *port,
                               const char *path, const char *describe,
                               const struct nbd_conn_setup *setup, GError **errp)
{
    struct nbd_conn *c = g_new0(struct nbd_conn, 1);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->nbd = nbd_create();
    if (c->wake_fd < 0 || !c->nbd) {
        diskimg_set_errno(errp, c->wake_fd < 0 ? errno : ENOMEM, "NBD connection to '%s'",
                          describe);
        nbd_conn_close(c);
        return NULL;
    }
    if (setup->tls != LIBNBD_TLS_DISABLE && nbd_supports_tls(c->nbd) != 1) {
        diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                          "NBD connection to '%s': TLS was asked for, but libnbd was built "
                          "without TLS support", describe);
        nbd_conn_close(c);
        return NULL;
    }
    if (apply_setup(c->nbd, setup) < 0) {
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "NBD connection to '%s': %s", describe,
                          nbd_get_error());
        nbd_conn_close(c);
        return NULL;
    }
    int r = is_unix ? nbd_connect_unix(c->nbd, path) : nbd_connect_tcp(c->nbd, host, port);
    if (r < 0) {
        connect_error(describe, errp);
        nbd_conn_close(c);
        return NULL;
    }
    if (go(c->nbd, setup->export, describe, errp) < 0) {
        nbd_conn_close(c);
        return NULL;
    }
    c->events = g_thread_new("diskimg-nbd", event_main, c);
    return c;
}

void nbd_conn_close(struct nbd_conn *c)
{
    if (!c)
        return;
    if (c->events) {
        g_atomic_int_set(&c->stop, 1);
        nbd_conn_kick(c);
        g_thread_join(c->events);
    }
    if (c->nbd) {
        /* Tells the server we are done (NBD_CMD_DISC) after what is in
         * flight; nobody else uses the handle any more. */
        if (nbd_aio_is_ready(c->nbd))
            nbd_shutdown(c->nbd, 0);
        nbd_close(c->nbd);
    }
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    g_free(c);
}
