/* SPDX-License-Identifier: MIT */
/*
 * fuzz-secret-object.c — the --object parser of the core (core/secrets.c):
 * keyval and JSON syntax, qemu's object rules, base64 and the decryption
 * of keyid= secrets.
 *
 * core/secrets.c is included here, not linked: the harness then owns a
 * private copy of the secret store and empties it after every input
 * (libdiskimg's store only grows, as a command's does, which a campaign of
 * millions of inputs must not).  Each input starts with one 32-byte master
 * key "k32" defined, so that keyid=k32 reaches the decryption.
 *
 * Inputs that could name a file (file=, or a JSON \u escape that could
 * spell it) are skipped: reading whatever path the fuzzer makes up
 * (/dev/zero, a FIFO) would measure the host, not the parser.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../core/secrets.c"
/* --object also defines TLS credentials (tls-creds-x509/psk), which the
 * parser hands to core/tlscreds.c: its copy comes along for the same reason */
#include "../../../core/tlscreds.c"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    GError *err = NULL;
    /* the crypto plugin, for keyid= */
    if (diskimg_init(&err) < 0) {
        fprintf(stderr, "fuzz-secret-object: %s\n", err->message);
        exit(2);
    }
    return 0;
}

static void forget_secrets(void)
{
    G_LOCK(secrets);
    g_clear_pointer(&secrets, g_ptr_array_unref);
    G_UNLOCK(secrets);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = fuzz_text(data, size);
    if (strstr(text, "file") || strstr(text, "\\u"))
        return 0;
    if (diskimg_object_add("secret,id=k32,data=0123456789abcdef0123456789abcdef", NULL) < 0)
        abort();   /* the harness's own definition must always be taken */
    char *help = NULL;
    diskimg_object_help(text, &help, NULL);
    g_free(help);
    diskimg_object_add(text, NULL);
    /* and once more: the second time it is a duplicate (when it had an id) */
    diskimg_object_add(text, NULL);
    forget_secrets();
    return 0;
}
