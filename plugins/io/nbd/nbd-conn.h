/* SPDX-License-Identifier: MIT */
/*
 * nbd-conn.h — one NBD connection driven by its own event thread, so that
 * any number of calling threads can have requests in flight on it at once.
 *
 * libnbd's synchronous calls hold the handle's lock until the reply
 * arrives, which would turn the copy engine's worker threads into one.
 * Instead each request is issued with the aio API (which only queues it
 * and sends what the socket takes) and the caller sleeps on a condition
 * until the connection's event thread, which alone polls the socket and
 * runs libnbd's state machine, sees the reply.
 */
#ifndef DISKIMG_NBD_CONN_H
#define DISKIMG_NBD_CONN_H

#include <libnbd.h>
#include <diskimg/diskimg.h>

struct nbd_conn;

/* What a connection sets up before connecting: TLS and the export. */
struct nbd_conn_setup {
    const char *export;
    int tls;                    /* LIBNBD_TLS_* */
    const char *tls_certificates; /* x509: directory, or NULL for the system's */
    const char *tls_psk_file;   /* psk: keys file, or NULL */
    const char *tls_username;   /* psk: user name, or NULL */
    bool tls_verify_peer;
};

/* Connects to the target (unix path, or host and port) and negotiates the
 * export; NULL with a one-line error. */
struct nbd_conn *nbd_conn_open(bool is_unix, const char *host, const char *port,
                               const char *path, const char *describe,
                               const struct nbd_conn_setup *setup, GError **errp);
void nbd_conn_close(struct nbd_conn *c);

/* The libnbd handle, for capability queries (not for requests). */
struct nbd_handle *nbd_conn_handle(struct nbd_conn *c);

/* Tells c's event thread that a request was queued (it may have to wait
 * for the socket to take the rest of it). */
void nbd_conn_kick(struct nbd_conn *c);

/* A request in flight: the caller's stack frame owns it. */
struct nbd_wait {
    GMutex lock;
    GCond cond;
    bool done;
    int error;                  /* errno from the server or libnbd, 0 = success */
};

void nbd_wait_init(struct nbd_wait *w);
/* The completion callback that wakes the waiter. */
nbd_completion_callback nbd_wait_callback(struct nbd_wait *w);
/* After an nbd_aio_* call returned `cookie` on c: wakes c's event thread,
 * waits for the reply and returns 0 or an errno (for a refused submission,
 * libnbd's errno, and *why its message). */
int nbd_wait_finish(struct nbd_conn *c, struct nbd_wait *w, int64_t cookie, char **why);

#endif
