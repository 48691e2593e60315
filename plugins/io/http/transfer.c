/* SPDX-License-Identifier: MIT */
/*
 * transfer.c — libcurl connections and the two requests the plugin makes:
 * the probe at open (HEAD, or a one-byte ranged GET) and ranged GETs.
 *
 * Nothing the server says is taken on trust: a body is only accepted as the
 * answer to a ranged GET when the status is 206 and Content-Range names
 * exactly the bytes asked for, in a resource of the size found at open; the
 * body goes straight into a buffer of the requested length and a byte more
 * aborts the transfer, so a server that ignores Range (200 and the whole
 * file) costs one buffer's worth of socket reads, never the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "http.h"

/* Concurrent requests per open image; more callers wait for a connection.
 * The copy engine runs at most one request per worker thread. */
#define MAX_CONNECTIONS 8
/* Redirects followed per request (curl's own default is 30). */
#define MAX_REDIRECTS 10
#define TOTAL_UNKNOWN UINT64_MAX

/* The last response's status line and the headers that matter; reset at
 * each status line, so a followed redirect leaves nothing behind. */
struct response {
    long status;
    bool accept_ranges;        /* Accept-Ranges: bytes */
    bool has_range;            /* a Content-Range we could parse */
    bool unsatisfied;          /* Content-Range: bytes * /TOTAL (416) */
    uint64_t first, last, total;
};

/* Where one request's body goes. */
struct sink {
    struct response resp;
    uint8_t *buf;
    uint64_t cap, got;
    bool whole_body;           /* a 2xx other than 206: refused unread */
    bool overflow;             /* more bytes than asked for */
};

/* ------------------------------------------------------------- parsing */

/* A decimal number of at most 19 digits (no sign, no spaces) at *p. */
static bool parse_decimal(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    int digits = 0;

    while (g_ascii_isdigit(*s) && digits < 19) {
        v = v * 10 + (uint64_t)(*s - '0');
        s++;
        digits++;
    }
    if (digits == 0 || g_ascii_isdigit(*s))
        return false;
    *p = s;
    *out = v;
    return true;
}

/* "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/(star)" or "bytes (star)/TOTAL". */
static void parse_content_range(const char *v, struct response *r)
{
    const char *p = v;

    r->has_range = false;
    if (g_ascii_strncasecmp(p, "bytes ", 6) != 0)
        return;
    p += 6;
    while (*p == ' ')
        p++;
    if (*p == '*') {
        p++;
        r->unsatisfied = true;
    } else if (!parse_decimal(&p, &r->first) || *p++ != '-' ||
               !parse_decimal(&p, &r->last) || r->last < r->first) {
        return;
    }
    if (*p++ != '/')
        return;
    if (*p == '*' && !r->unsatisfied) {
        p++;
        r->total = TOTAL_UNKNOWN;
    } else if (!parse_decimal(&p, &r->total) ||
               (!r->unsatisfied && r->last >= r->total)) {
        return;
    }
    r->has_range = *p == '\0';
}

/* Does the comma-separated header value name the token? */
static bool value_has_token(const char *value, const char *token)
{
    g_auto(GStrv) items = g_strsplit(value, ",", 16);

    for (char **it = items; *it; it++)
        if (g_ascii_strcasecmp(g_strstrip(*it), token) == 0)
            return true;
    return false;
}

static void parse_status_line(const char *line, struct response *r)
{
    const char *sp = strchr(line, ' ');
    uint64_t code = 0;

    memset(r, 0, sizeof(*r));
    if (sp && (sp++, parse_decimal(&sp, &code)) && code < 1000)
        r->status = (long)code;
}

/* curl hands every header line of every response (redirects too). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct sink *s = opaque;
    size_t n = size * nmemb;
    g_autofree char *line = g_strndup(data, n);
    char *colon;

    g_strchomp(line);
    if (g_str_has_prefix(line, "HTTP/")) {
        parse_status_line(line, &s->resp);
        return n;
    }
    colon = strchr(line, ':');
    if (!colon)
        return n;
    *colon = '\0';
    if (g_ascii_strcasecmp(line, "Accept-Ranges") == 0)
        s->resp.accept_ranges = value_has_token(colon + 1, "bytes");
    else if (g_ascii_strcasecmp(line, "Content-Range") == 0)
        parse_content_range(g_strchug(colon + 1), &s->resp);
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct sink *s = opaque;
    size_t n = size * nmemb;

    if (s->resp.status != 206) {
        s->whole_body = true;
        return 0;              /* anything but n aborts the transfer */
    }
    if (n > s->cap - s->got) {
        s->overflow = true;
        return 0;
    }
    memcpy(s->buf + s->got, data, n);
    s->got += n;
    return n;
}

/* --------------------------------------------------------- connections */

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *opaque)
{
    struct http_pool *p = opaque;

    (void)c;
    (void)access;
    g_mutex_lock(&p->share_locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *opaque)
{
    struct http_pool *p = opaque;

    (void)c;
    g_mutex_unlock(&p->share_locks[data]);
}

static gpointer global_init_once(gpointer unused)
{
    (void)unused;
    return GINT_TO_POINTER(curl_global_init(CURL_GLOBAL_DEFAULT));
}

int http_pool_init(struct http_pool *p, const struct http_settings *s, GError **errp)
{
    static GOnce once = G_ONCE_INIT;
    CURLcode r = GPOINTER_TO_INT(g_once(&once, global_init_once, NULL));

    memset(p, 0, sizeof(*p));
    p->settings = s;
    g_mutex_init(&p->lock);
    g_cond_init(&p->freed);
    for (unsigned i = 0; i < CURL_LOCK_DATA_LAST; i++)
        g_mutex_init(&p->share_locks[i]);
    p->idle = g_ptr_array_new();
    if (r != CURLE_OK || !(p->share = curl_share_init())) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_FAILED,
                    "libcurl initialization failed with %d", (int)r);
        return -1;
    }
    curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(p->share, CURLSHOPT_USERDATA, p);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 0;
}

void http_pool_clear(struct http_pool *p)
{
    if (p->idle) {
        for (guint i = 0; i < p->idle->len; i++)
            curl_easy_cleanup(p->idle->pdata[i]);
        g_ptr_array_free(p->idle, TRUE);
    }
    /* Only after every handle that used it is gone. */
    if (p->share)
        curl_share_cleanup(p->share);
    for (unsigned i = 0; i < CURL_LOCK_DATA_LAST; i++)
        g_mutex_clear(&p->share_locks[i]);
    g_cond_clear(&p->freed);
    g_mutex_clear(&p->lock);
}

static void set_protocols(CURL *c)
{
    /* Only what the plugin serves, also after a redirect (qemu does the
     * same, CVE-2013-0249: no file://, smtp:// ... behind a Location). */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

static void set_credentials(CURL *c, const struct http_settings *s)
{
    if (s->cookie)
        curl_easy_setopt(c, CURLOPT_COOKIE, s->cookie);
    if (s->username)
        curl_easy_setopt(c, CURLOPT_USERNAME, s->username);
    if (s->password)
        curl_easy_setopt(c, CURLOPT_PASSWORD, s->password);
    if (s->proxy_username)
        curl_easy_setopt(c, CURLOPT_PROXYUSERNAME, s->proxy_username);
    if (s->proxy_password)
        curl_easy_setopt(c, CURLOPT_PROXYPASSWORD, s->proxy_password);
}

static CURL *conn_new(struct http_pool *p)
{
    const struct http_settings *s = p->settings;
    CURL *c = curl_easy_init();

    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, s->url);
    curl_easy_setopt(c, CURLOPT_SHARE, p->share);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
    curl_easy_setopt(c, CURLOPT_AUTOREFERER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, s->sslverify ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, s->sslverify ? 2L : 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, s->timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, s->timeout);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "diskimg/" PLUGIN_VERSION);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    set_protocols(c);
    set_credentials(c, s);
    return c;
}

/* A connection for one request: an idle one, a new one while fewer than
 * MAX_CONNECTIONS exist, else the next one given back. */
static CURL *conn_take(struct http_pool *p, GError **errp)
{
    CURL *c = NULL;

    g_mutex_lock(&p->lock);
    while (p->idle->len == 0 && p->open >= MAX_CONNECTIONS)
        g_cond_wait(&p->freed, &p->lock);
    if (p->idle->len)
        c = g_ptr_array_steal_index_fast(p->idle, p->idle->len - 1);
    else
        p->open++;
    g_mutex_unlock(&p->lock);
    if (c)
        return c;
    c = conn_new(p);
    if (!c) {
        g_mutex_lock(&p->lock);
        p->open--;
        g_cond_signal(&p->freed);
        g_mutex_unlock(&p->lock);
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NO_MEMORY,
                    "%s: could not create a libcurl handle", p->settings->display);
    }
    return c;
}

static void conn_give(struct http_pool *p, CURL *c)
{
    g_mutex_lock(&p->lock);
    g_ptr_array_add(p->idle, c);
    g_cond_signal(&p->freed);
    g_mutex_unlock(&p->lock);
}

/* Runs the request the handle is set up for; *why gets curl's reason. */
static CURLcode perform(CURL *c, struct sink *s, char *errbuf)
{
    CURLcode r;

    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    r = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    if (r != CURLE_OK && !errbuf[0])
        g_strlcpy(errbuf, curl_easy_strerror(r), CURL_ERROR_SIZE);
    return r;
}

/* --------------------------------------------------------------- probe */

static int open_error(GError **errp, const char *why)
{
    /* qemu's curl driver's wording, after the core's "Could not open 'URL': " */
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_IO, "CURL: Error opening file: %s", why);
    return -1;
}

static bool is_success(long status)
{
    return status >= 200 && status < 300;
}

/* HEAD: true when it gave the size and promised byte ranges. */
static bool probe_head(CURL *c, struct http_resource *res, CURLcode *r, char *errbuf)
{
    struct sink s = { 0 };
    curl_off_t length = -1;

    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    *r = perform(c, &s, errbuf);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (*r != CURLE_OK || !is_success(s.resp.status) ||
        curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) != CURLE_OK ||
        length < 0 || !s.resp.accept_ranges)
        return false;
    res->size = (uint64_t)length;
    return true;
}

/* An empty resource: servers answer the range 0-0 of it with 416 and
 * "bytes (star)/0", or (nginx) with 200 and an empty body. */
static bool is_empty_answer(CURL *c, const struct sink *s, CURLcode r)
{
    curl_off_t length = -1;

    if (r == CURLE_HTTP_RETURNED_ERROR)
        return s->resp.status == 416 && s->resp.has_range && s->resp.unsatisfied &&
               s->resp.total == 0;
    return r == CURLE_OK && s->resp.status == 200 && s->got == 0 &&
           curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK &&
           length == 0;
}

/* A GET of the first byte: the size from Content-Range, and the proof that
 * ranges are served. */
static int probe_first_byte(CURL *c, struct http_resource *res, GError **errp)
{
    char errbuf[CURL_ERROR_SIZE];
    uint8_t byte;
    struct sink s = { .buf = &byte, .cap = 1 };
    CURLcode r;

    curl_easy_setopt(c, CURLOPT_RANGE, "0-0");
    r = perform(c, &s, errbuf);
    curl_easy_setopt(c, CURLOPT_RANGE, NULL);
    if (s.whole_body)
        return open_error(errp, "Server does not support 'range' (byte ranges): "
                          "it answered a ranged GET with the whole file");
    if (is_empty_answer(c, &s, r)) {
        res->size = 0;
        return 0;
    }
    if (r != CURLE_OK)
        return open_error(errp, errbuf);
    if (!s.resp.has_range || s.resp.unsatisfied || s.resp.first != 0 || s.resp.last != 0)
        return open_error(errp, "Server sent no valid Content-Range for the range 0-0");
    if (s.resp.total == TOTAL_UNKNOWN)
        return open_error(errp, "Server didn't report file size.");
    if (s.got != 1)
        return open_error(errp, "Server sent an empty body for the range 0-0");
    res->size = s.resp.total;
    return 0;
}

int http_probe(struct http_pool *p, struct http_resource *res, GError **errp)
{
    char errbuf[CURL_ERROR_SIZE];
    CURLcode r;
    int ret = 0;
    CURL *c = conn_take(p, errp);

    if (!c)
        return -1;
    /* A refused HEAD (405, or a 403 from URLs signed for GET only) or one
     * without Content-Length or Accept-Ranges: ask with a ranged GET.
     * Failures to reach the server at all are final. */
    if (!probe_head(c, res, &r, errbuf)) {
        if (r == CURLE_OK || r == CURLE_HTTP_RETURNED_ERROR)
            ret = probe_first_byte(c, res, errp);
        else
            ret = open_error(errp, errbuf);
    }
    conn_give(p, c);
    if (ret == 0 && res->size > (uint64_t)INT64_MAX)
        return open_error(errp, "Server reported a size beyond 2^63 bytes");
    return ret;
}

/* -------------------------------------------------------- ranged GETs */

static int check_range_answer(const struct http_pool *p, const struct sink *s, CURLcode r,
                              const char *errbuf, uint64_t size, uint64_t len, uint64_t off,
                              GError **errp)
{
    const char *url = p->settings->display;
    const struct response *resp = &s->resp;

    if (s->whole_body)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: the server answered a ranged GET at offset %" PRIu64
                                 " with status %ld and the whole file: it does not "
                                 "serve byte ranges", url, off, resp->status);
    if (s->overflow)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: the server sent more than the %" PRIu64
                                 " bytes asked for at offset %" PRIu64, url, len, off);
    if (r != CURLE_OK)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: read of %" PRIu64 " bytes at offset %" PRIu64
                                 " failed: %s", url, len, off, errbuf);
    if (!resp->has_range || resp->unsatisfied || resp->first != off ||
        resp->last != off + len - 1)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: the server answered the range %" PRIu64 "-%" PRIu64
                                 " with another Content-Range", url, off, off + len - 1);
    if (resp->total != TOTAL_UNKNOWN && resp->total != size)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: the file changed size on the server (%" PRIu64
                                 " bytes, was %" PRIu64 ")", url, resp->total, size);
    if (s->got != len)
        return diskimg_set_error(errp, DISKIMG_ERROR_IO,
                                 "%s: short answer: %" PRIu64 " of %" PRIu64
                                 " bytes at offset %" PRIu64, url, s->got, len, off);
    return 0;
}

int http_get_range(struct http_pool *p, uint64_t size, void *buf, uint64_t len, uint64_t off,
                   GError **errp)
{
    char errbuf[CURL_ERROR_SIZE];
    char range[48];
    struct sink s = { .buf = buf, .cap = len };
    CURLcode r;
    CURL *c;

    if (len == 0 || off >= size || len > size - off)
        return diskimg_set_error(errp, DISKIMG_ERROR_INVALID,
                                 "%s: range %" PRIu64 "+%" PRIu64 " outside the file",
                                 p->settings->display, off, len);
    c = conn_take(p, errp);
    if (!c)
        return -1;
    g_snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
    curl_easy_setopt(c, CURLOPT_RANGE, range);
    r = perform(c, &s, errbuf);
    curl_easy_setopt(c, CURLOPT_RANGE, NULL);
    conn_give(p, c);
    return check_range_answer(p, &s, r, errbuf, size, len, off, errp);
}
