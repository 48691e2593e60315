/* SPDX-License-Identifier: MIT */
/*
 * nbd-tls.h — the TLS settings of a connection, from the name (nbds...)
 * and the tls-creds / tls-hostname options.
 */
#ifndef DISKIMG_NBD_TLS_H
#define DISKIMG_NBD_TLS_H

#include <diskimg/diskimg.h>

struct nbd_tls {
    int mode;                   /* LIBNBD_TLS_DISABLE or LIBNBD_TLS_REQUIRE */
    char *certificates;         /* x509 directory, NULL: libnbd's defaults */
    char *psk_file;             /* psk keys file */
    char *username;             /* psk user name */
    bool verify_peer;
};

/* TLS is required when the name says so (nbds) or tls-creds names
 * credentials; `host` is the server's host name (NULL for unix sockets),
 * which tls-hostname may only repeat (libnbd verifies the certificate
 * against the host it connects to). */
int nbd_tls_resolve(const diskimg_options *o, bool name_wants_tls, const char *host,
                    struct nbd_tls *tls, GError **errp);
void nbd_tls_clear(struct nbd_tls *tls);

#endif
