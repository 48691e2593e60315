/* SPDX-License-Identifier: MIT */
/* Small helpers every format needs: zero detection, aligned buffers,
 * parsing of the enums shared by commands and plugins. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *diskimg_version(void)
{
    return DISKIMG_VERSION;
}

bool diskimg_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    /* Bytes up to word alignment, then words 4 at a time, then the tail. */
    while (len && ((uintptr_t)p & (sizeof(uint64_t) - 1))) {
        if (*p)
            return false;
        p++, len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)p;
    while (len >= 4 * sizeof(uint64_t)) {
        if (w[0] | w[1] | w[2] | w[3])
            return false;
        w += 4;
        len -= 4 * sizeof(uint64_t);
    }
    p = (const unsigned char *)w;
    while (len--) {
        if (*p++)
            return false;
    }
    return true;
}

void *diskimg_alloc_aligned(size_t len)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, len ? len : 1) != 0)
        return NULL;
    return p;
}

void diskimg_free_aligned(void *p)
{
    free(p);
}

static const char *const cache_names[] = {
    [DISKIMG_CACHE_WRITEBACK] = "writeback",
    [DISKIMG_CACHE_NONE] = "none",
    [DISKIMG_CACHE_WRITETHROUGH] = "writethrough",
    [DISKIMG_CACHE_DIRECTSYNC] = "directsync",
    [DISKIMG_CACHE_UNSAFE] = "unsafe",
};

int diskimg_cache_parse(const char *name, enum diskimg_cache *out, GError **errp)
{
    for (size_t i = 0; i < G_N_ELEMENTS(cache_names); i++) {
        if (g_str_equal(name, cache_names[i])) {
            *out = (enum diskimg_cache)i;
            return 0;
        }
    }
    /* qemu also accepts "off" as an alias of none */
    if (g_str_equal(name, "off")) {
        *out = DISKIMG_CACHE_NONE;
        return 0;
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "Invalid cache option: %s", name);
    return -1;
}

static const char *const prealloc_names[] = {
    [DISKIMG_PREALLOC_OFF] = "off",
    [DISKIMG_PREALLOC_METADATA] = "metadata",
    [DISKIMG_PREALLOC_FALLOC] = "falloc",
    [DISKIMG_PREALLOC_FULL] = "full",
};

int diskimg_prealloc_parse(const char *name, enum diskimg_prealloc *out, GError **errp)
{
    if (!name) {
        *out = DISKIMG_PREALLOC_OFF;
        return 0;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(prealloc_names); i++) {
        if (g_str_equal(name, prealloc_names[i])) {
            *out = (enum diskimg_prealloc)i;
            return 0;
        }
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "Invalid preallocation mode '%s'", name);
    return -1;
}

/* ------------------------------------------------------------- ABI structs */

int abi_check_size(uint32_t size, size_t need, const char *what, GError **errp)
{
    if (size >= need)
        return 0;
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                "struct %s has struct_size %u, at least %zu is needed (was it set?)", what,
                size, need);
    return -1;
}

void abi_copy_in(void *full, size_t full_size, const void *theirs, uint32_t their_size)
{
    memset(full, 0, full_size);
    memcpy(full, theirs, MIN((size_t)their_size, full_size));
    *(uint32_t *)full = (uint32_t)full_size;
}

void abi_copy_out(void *theirs, const void *full, size_t full_size)
{
    uint32_t their_size = *(const uint32_t *)theirs;
    memcpy(theirs, full, MIN((size_t)their_size, full_size));
    *(uint32_t *)theirs = their_size;
}
