/* SPDX-License-Identifier: MIT */
/*
 * nbd-target.h — what an NBD name or the nbd open-options say to reach:
 * transport, address, export and whether TLS is required.  Pure parsing,
 * no I/O, so that every rule is unit-tested (test-nbd-target.c).
 */
#ifndef DISKIMG_NBD_TARGET_H
#define DISKIMG_NBD_TARGET_H

#include <diskimg/diskimg.h>

#define NBD_DEFAULT_PORT "10809"

struct nbd_target {
    bool is_unix;       /* unix socket (path) rather than TCP (host, port) */
    char *host;         /* TCP: host name or address, IPv6 without brackets */
    char *port;         /* TCP: port or service name */
    char *path;         /* unix: socket path */
    char *export;       /* export name, "" for the server's default */
    bool tls;           /* the name asks for TLS (nbds...) */
};

/* Parses a name the user typed: nbd[s][+tcp]://HOST[:PORT][/EXPORT],
 * nbd[s]+unix:///[EXPORT]?socket=PATH, nbd:HOST:PORT[:exportname=EXPORT]
 * or nbd:unix:PATH[:exportname=EXPORT].  The error says what is wrong. */
int nbd_target_parse_name(const char *name, struct nbd_target *t, GError **errp);

/* Builds the target from open-options (server.type, server.host,
 * server.port, server.path, export), qemu's --image-opts keys. */
int nbd_target_from_options(const diskimg_options *o, struct nbd_target *t, GError **errp);

/* True when the options name a server or export (then no URI may). */
bool nbd_options_name_target(const diskimg_options *o);

/* "host:port" or the socket path, for messages. */
char *nbd_target_describe(const struct nbd_target *t);

void nbd_target_clear(struct nbd_target *t);

#endif
