/* SPDX-License-Identifier: MIT */
/*
 * http.c — the "http" io plugin: read-only images over http:// and
 * https:// with libcurl, as qemu's curl driver serves them (same option
 * names, defaults and messages), with ranged GETs only.
 *
 * Thread model: PARALLEL.  The copy engine calls pread from several worker
 * threads on one handle; each call borrows one of up to eight libcurl
 * connections (transfer.c) for its ranged GET, so the workers' requests
 * are on the wire at the same time.  The shared state is the connection
 * pool and the readahead cache, each behind its own mutex, neither held
 * during a transfer.
 *
 * Readahead: a read shorter than `readahead` fetches `readahead` bytes from
 * its offset into the cache, so a format's small metadata reads (headers,
 * tables) and short sequential reads cost one request per block.  Reads of
 * `readahead` bytes or more go straight into the caller's buffer: qemu adds
 * the readahead to every request, which for the copy engine's 2 MiB reads
 * means fetching every 256 KiB twice.
 */
#include <inttypes.h>
#include <string.h>

#include <diskimg/crypto.h>

#include "http.h"

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0"
#endif

extern const char http_schema_yaml[];

/* Largest single GET: under `timeout`, a request must finish in time (as
 * in qemu, whose requests are the guest's plus readahead). */
#define MAX_GET_LEN ((uint64_t)4 << 20)
#define DEFAULT_READAHEAD (256 * 1024)
#define DEFAULT_TIMEOUT 5

struct http_handle {
    struct http_settings settings;
    struct http_pool pool;
    struct http_cache cache;
    uint64_t size;
};

/* ------------------------------------------------------------ settings */

static void free_secret(char **s)
{
    if (*s) {
        diskimg_crypto_wipe(*s, strlen(*s));
        g_free(*s);
        *s = NULL;
    }
}

void http_settings_clear(struct http_settings *s)
{
    free_secret(&s->url);        /* may carry user:password */
    g_free(s->display);
    free_secret(&s->cookie);
    g_free(s->username);
    free_secret(&s->password);
    g_free(s->proxy_username);
    free_secret(&s->proxy_password);
    memset(s, 0, sizeof(*s));
}

/* The text of the --object secret an option names, or NULL if unset. */
static int secret_option(const diskimg_options *o, const char *key, char **out,
                         GError **errp)
{
    const char *id = diskimg_options_get_str(o, key);
    uint8_t *data;
    size_t len;

    *out = NULL;
    if (!id)
        return 0;
    if (diskimg_crypto_password(id, &data, &len, errp) < 0)
        return -1;
    *out = g_malloc(len + 1);
    memcpy(*out, data, len);
    (*out)[len] = '\0';
    diskimg_secret_wipe(data, len);
    return 0;
}

static int resolve_cookie(const diskimg_options *o, struct http_settings *s, GError **errp)
{
    const char *cookie = diskimg_options_get_str(o, "cookie");

    if (cookie && diskimg_options_get_str(o, "cookie-secret"))
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "curl driver cannot handle both cookie and cookie secret");
    if (cookie) {
        s->cookie = g_strdup(cookie);
        return 0;
    }
    return secret_option(o, "cookie-secret", &s->cookie, errp);
}

static int resolve_numbers(const diskimg_options *o, struct http_settings *s, GError **errp)
{
    s->readahead = diskimg_options_get_uint(o, "readahead", DEFAULT_READAHEAD);
    if (s->readahead % 512)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "HTTP_READAHEAD_SIZE %" PRIu64 " is not a multiple of 512",
                                 s->readahead);
    /* The schema bounds it to 0..10000 with qemu's message. */
    s->timeout = (long)diskimg_options_get_int(o, "timeout", DEFAULT_TIMEOUT);
    s->sslverify = diskimg_options_get_bool(o, "sslverify", true);
    return 0;
}

/* ----------------------------------------------------------------- URL */

static bool has_http_scheme(const char *name)
{
    return g_ascii_strncasecmp(name, "http://", 7) == 0 ||
           g_ascii_strncasecmp(name, "https://", 8) == 0;
}

/* The URL to reach: the url option, else the name typed (http://...).
 * Under --image-opts without url= the core passes a json:{...} display
 * name, which is no URL. */
static const char *url_source(const struct diskimg_io_open_args *args)
{
    const char *url = args->options ? diskimg_options_get_str(args->options, "url") : NULL;

    if (url)
        return url;
    return args->filename && has_http_scheme(args->filename) ? args->filename : NULL;
}

/* Parses the URL as libcurl will and keeps it with a copy for messages
 * that leaves out any user:password. */
static int resolve_url(const char *url, struct http_settings *s, GError **errp)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *display = NULL;
    int ret = -1;

    if (!u)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "out of memory");
    if (!has_http_scheme(url))
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                          "http driver cannot handle the URL '%s' (does not start with "
                          "'http://' or 'https://')", url);
    else if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid URL '%s'", url);
    else if (curl_url_set(u, CURLUPART_USER, NULL, 0) != CURLUE_OK ||
             curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) != CURLUE_OK ||
             curl_url_get(u, CURLUPART_URL, &display, 0) != CURLUE_OK)
        diskimg_set_error(errp, DISKIMG_ERROR_INVALID, "Invalid URL '%s'", url);
    else {
        s->url = g_strdup(url);
        s->display = g_strdup(display);
        ret = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(display);
    curl_url_cleanup(u);
    return ret;
}

static int resolve_settings(const struct diskimg_io_open_args *args, struct http_settings *s,
                            GError **errp)
{
    const diskimg_options *o = args->options;
    const char *url = url_source(args);

    if (resolve_numbers(o, s, errp) < 0 || resolve_cookie(o, s, errp) < 0)
        return -1;
    if (!url)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "curl block driver requires an 'url' option");
    if (resolve_url(url, s, errp) < 0)
        return -1;
    s->username = g_strdup(diskimg_options_get_str(o, "username"));
    s->proxy_username = g_strdup(diskimg_options_get_str(o, "proxy-username"));
    if (secret_option(o, "password-secret", &s->password, errp) < 0 ||
        secret_option(o, "proxy-password-secret", &s->proxy_password, errp) < 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------- open/close */

/* qemu's answers for a protocol that cannot write: creating (create,
 * convert targets) and opening read-write (commit, resize...).  Not
 * DISKIMG_ERROR_NOT_SUPPORTED, which makes the core retry with posix. */
static int refuse_writes(const struct diskimg_io_open_args *args, GError **errp)
{
    const char *name = args->filename ? args->filename : "";
    const char *scheme = g_ascii_strncasecmp(name, "https:", 6) == 0 ? "https" : "http";

    if (args->flags & (DISKIMG_OPEN_CREATE | DISKIMG_OPEN_TRUNCATE))
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                                 "Protocol driver '%s' does not support image creation",
                                 scheme);
    if (args->flags & DISKIMG_OPEN_RDWR)
        return diskimg_set_error(errp, DISKIMG_ERROR_PERMISSION,
                                 "curl driver does not support writes");
    return 0;
}

static void http_close(void *opaque)
{
    struct http_handle *h = opaque;

    if (!h)
        return;
    http_pool_clear(&h->pool);
    http_cache_clear(&h->cache);
    http_settings_clear(&h->settings);
    g_free(h);
}

static void *http_open(const struct diskimg_io_open_args *args, GError **errp)
{
    struct http_handle *h;
    struct http_resource res = { 0 };

    if (refuse_writes(args, errp) < 0)
        return NULL;
    h = g_new0(struct http_handle, 1);
    http_cache_init(&h->cache);
    if (http_pool_init(&h->pool, &h->settings, errp) < 0 ||
        resolve_settings(args, &h->settings, errp) < 0 ||
        http_probe(&h->pool, &res, errp) < 0) {
        http_close(h);
        return NULL;
    }
    h->size = res.size;
    return h;
}

/* ---------------------------------------------------------------- data */

/* A short read: one readahead block from off into the cache, then the
 * caller's part of it out of the cache's copy. */
static int read_through_cache(struct http_handle *h, uint8_t *buf, uint64_t len, uint64_t off,
                              GError **errp)
{
    uint64_t block = MIN(h->settings.readahead, h->size - off);
    uint8_t *data = g_try_malloc(block);

    if (!data)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory",
                                 h->settings.display);
    if (http_get_range(&h->pool, h->size, data, block, off, errp) < 0) {
        g_free(data);
        return -1;
    }
    memcpy(buf, data, len);
    http_cache_insert(&h->cache, data, off, block);
    return 0;
}

/* Bytes [off, off+len) that lie inside the file. */
static int read_inside(struct http_handle *h, uint8_t *buf, uint64_t len, uint64_t off,
                       GError **errp)
{
    while (len) {
        uint64_t n = http_cache_read(&h->cache, buf, len, off);

        if (n == 0 && len < h->settings.readahead) {
            if (read_through_cache(h, buf, len, off, errp) < 0)
                return -1;
            n = len;
        } else if (n == 0) {
            n = MIN(len, MAX_GET_LEN);
            if (http_get_range(&h->pool, h->size, buf, n, off, errp) < 0)
                return -1;
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

static int http_pread(void *opaque, void *buf, uint64_t len, uint64_t off, GError **errp)
{
    struct http_handle *h = opaque;
    uint64_t inside = off < h->size ? MIN(len, h->size - off) : 0;

    /* As for files: what lies past the end reads as zeroes. */
    memset((uint8_t *)buf + inside, 0, len - inside);
    return inside ? read_inside(h, buf, inside, off, errp) : 0;
}

static int http_pwrite(void *opaque, const void *buf, uint64_t len, uint64_t off,
                       unsigned flags, GError **errp)
{
    (void)opaque, (void)buf, (void)len, (void)off, (void)flags;
    return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                             "curl driver does not support writes");
}

static int64_t http_get_size(void *opaque, GError **errp)
{
    struct http_handle *h = opaque;

    (void)errp;
    return (int64_t)h->size;
}

/* ---------------------------------------------------------- descriptor */

static const struct diskimg_io_ops http_ops = {
    .struct_size = sizeof(struct diskimg_io_ops),
    .open = http_open,
    .close = http_close,
    .pread = http_pread,
    .pwrite = http_pwrite,
    .get_size = http_get_size,
};

static const struct diskimg_plugin http_plugin = {
    .abi_version = DISKIMG_ABI_VERSION,
    .struct_size = sizeof(struct diskimg_plugin),
    .kind = DISKIMG_KIND_IO,
    .thread_model = DISKIMG_THREAD_PARALLEL,
    .name = "http",
    .version = PLUGIN_VERSION,
    .summary = "Read-only images over HTTP and HTTPS (libcurl)",
    .schema = http_schema_yaml,
    /* For an io plugin: cannot create images (diskimg_protocol_check_create). */
    .capabilities = DISKIMG_CAP_READ_ONLY,
    .ops = &http_ops,
};

DISKIMG_PLUGIN_DEFINE(http_plugin)
