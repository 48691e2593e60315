/* SPDX-License-Identifier: MIT */
/*
 * nbd-tls.c — TLS settings (see nbd-tls.h).
 *
 * qemu's nbd driver takes credentials as the id of a --object
 * tls-creds-x509 or tls-creds-psk; the core keeps those objects
 * (diskimg_tls_creds_lookup) and they map onto libnbd one to one: the x509
 * directory has the file names libnbd's nbd_set_tls_certificates expects
 * (ca-cert.pem, client-cert.pem, client-key.pem), a psk directory holds
 * keys.psk for nbd_set_tls_psk_file.
 */
#include <string.h>

#include <libnbd.h>

#include "nbd-tls.h"

void nbd_tls_clear(struct nbd_tls *tls)
{
    g_free(tls->certificates);
    g_free(tls->psk_file);
    g_free(tls->username);
    memset(tls, 0, sizeof(*tls));
}

static int take_creds(const char *id, struct nbd_tls *tls, GError **errp)
{
    struct diskimg_tls_creds c = { .struct_size = sizeof(c) };
    if (diskimg_tls_creds_lookup(id, &c, errp) < 0)
        return -1;
    if (!g_str_equal(c.endpoint, "client"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "Expecting TLS credentials with a client endpoint");
    if (c.priority)
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "TLS credentials '%s': priority= is not supported by the nbd "
                                 "plugin (libnbd uses GnuTLS's defaults)", id);
    tls->verify_peer = c.verify_peer;
    if (c.type == DISKIMG_TLS_CREDS_X509) {
        tls->certificates = g_strdup(c.dir);
    } else {
        tls->psk_file = g_build_filename(c.dir, "keys.psk", NULL);
        /* qemu's default PSK identity */
        tls->username = g_strdup(c.username ? c.username : "qemu");
    }
    return 0;
}

int nbd_tls_resolve(const diskimg_options *o, bool name_wants_tls, const char *host,
                    struct nbd_tls *tls, GError **errp)
{
    memset(tls, 0, sizeof(*tls));
    tls->verify_peer = true;
    const char *id = o ? diskimg_options_get_str(o, "tls-creds") : NULL;
    const char *hostname = o ? diskimg_options_get_str(o, "tls-hostname") : NULL;
    if (!id && !name_wants_tls) {
        if (hostname)
            return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                     "tls-hostname needs TLS (tls-creds or an nbds:// URI)");
        tls->mode = LIBNBD_TLS_DISABLE;
        return 0;
    }
    tls->mode = LIBNBD_TLS_REQUIRE;
    if (hostname && (!host || g_ascii_strcasecmp(hostname, host) != 0))
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "tls-hostname '%s' differs from the host connected to; this "
                                 "libnbd verifies the certificate against that host only",
                                 hostname);
    if (id && take_creds(id, tls, errp) < 0) {
        nbd_tls_clear(tls);
        return -1;
    }
    return 0;
}
