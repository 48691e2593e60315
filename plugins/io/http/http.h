/* SPDX-License-Identifier: MIT */
/*
 * http.h — the pieces of the http io plugin: what it was told to reach
 * (settings), its libcurl connections and ranged GETs (transfer.c) and the
 * readahead cache (cache.c).  Everything here is private to the plugin.
 */
#ifndef DISKIMG_HTTP_H
#define DISKIMG_HTTP_H

#include <curl/curl.h>

#include <diskimg/plugin.h>

/* What the open-options (and the typed name) ask for, resolved once at
 * open; every connection is configured from it.  The secrets are owned
 * and wiped on release. */
struct http_settings {
    char *url;                 /* what is requested, credentials and all */
    char *display;             /* the URL without user:password, for messages */
    uint64_t readahead;        /* bytes; 0 = none */
    long timeout;              /* seconds per request; 0 = none (as curl) */
    bool sslverify;
    char *cookie;              /* cookie or cookie-secret */
    char *username, *password;
    char *proxy_username, *proxy_password;
};

void http_settings_clear(struct http_settings *s);

/* ------------------------------------------------------------ transfer.c */

/* Connections to the server: libcurl easy handles, each keeping its own
 * keep-alive connection, lent to one request at a time so that requests of
 * several threads run in parallel.  DNS answers and TLS sessions are
 * shared between them. */
struct http_pool {
    const struct http_settings *settings;
    CURLSH *share;
    GMutex share_locks[CURL_LOCK_DATA_LAST];
    GMutex lock;
    GCond freed;
    GPtrArray *idle;           /* CURL * ready for the next request */
    unsigned open;             /* handles existing, idle or lent */
};

int http_pool_init(struct http_pool *p, const struct http_settings *s, GError **errp);
void http_pool_clear(struct http_pool *p);

/* What HEAD (or, where HEAD is refused or says too little, a one-byte
 * ranged GET) found out about the resource. */
struct http_resource {
    uint64_t size;
};

/* Size of the resource and proof that the server serves byte ranges;
 * fails with qemu's "CURL: Error opening file: ..." wording. */
int http_probe(struct http_pool *p, struct http_resource *res, GError **errp);

/* Reads exactly len bytes at off (inside the resource of `size` bytes)
 * with one ranged GET, checking that the answer is exactly that range. */
int http_get_range(struct http_pool *p, uint64_t size, void *buf, uint64_t len, uint64_t off,
                   GError **errp);

/* --------------------------------------------------------------- cache.c */

/* A few readahead blocks, least recently used evicted first. */
#define HTTP_CACHE_BLOCKS 8

struct http_cache_block {
    uint8_t *data;             /* NULL: slot unused */
    uint64_t start, len;
    uint64_t last_use;
};

struct http_cache {
    GMutex lock;
    struct http_cache_block blocks[HTTP_CACHE_BLOCKS];
    uint64_t clock;
};

void http_cache_init(struct http_cache *c);
void http_cache_clear(struct http_cache *c);
/* Copies into buf the longest run of [off, off+len) that starts at off and
 * lies in one cached block; returns its length (0 on a miss). */
uint64_t http_cache_read(struct http_cache *c, void *buf, uint64_t len, uint64_t off);
/* Takes ownership of data (g_malloc'd), the bytes [start, start+len). */
void http_cache_insert(struct http_cache *c, uint8_t *data, uint64_t start, uint64_t len);

#endif /* DISKIMG_HTTP_H */
