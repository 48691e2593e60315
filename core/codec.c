/* SPDX-License-Identifier: MIT */
/*
 * codec.c — format-neutral compression codecs for cluster- and
 * grain-based formats (qcow2 compressed clusters, vmdk streamOptimized
 * grains, ...): one buffer in, one buffer out.
 *
 * Compression that does not fit the output buffer is not an error: the
 * caller then stores the data uncompressed.  Data that is already random
 * (compressed files, encrypted volumes: a large share of real disks) is
 * recognised before the codec runs, see "incompressible data" below.  Decompression stops when the
 * output buffer is full (trailing input is ignored, as qemu does for
 * qcow2, whose compressed clusters end on sector boundaries).
 */
#include <math.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "internal.h"

static int codec_error(GError **errp, const char *what, const char *detail)
{
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT, "%s: %s", what,
                detail ? detail : "invalid compressed data");
    return -1;
}

/* zlib's windowBits for a codec: negative = raw deflate, +16 = gzip. */
static int zlib_window(enum diskimg_codec codec, int window_bits, bool inflating)
{
    int w = window_bits ? window_bits : 15;
    if (w < 9)
        w = 9;
    if (w > 15)
        w = 15;
    /* Inflating with the largest window accepts data made with any smaller one. */
    if (inflating)
        w = 15;
    switch (codec) {
    case DISKIMG_CODEC_DEFLATE: return -w;
    case DISKIMG_CODEC_GZIP: return w + 16;
    default: return w;
    }
}

static int64_t zlib_compress(enum diskimg_codec codec, int level, int window_bits,
                             const void *src, size_t src_len, void *dst, size_t dst_cap,
                             GError **errp)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, level < 0 ? Z_DEFAULT_COMPRESSION : level, Z_DEFLATED,
                     zlib_window(codec, window_bits, false), 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return codec_error(errp, "deflate", "cannot initialise zlib");
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_cap;
    int ret = deflate(&z, Z_FINISH);
    int64_t out = ret == Z_STREAM_END ? (int64_t)(dst_cap - z.avail_out) : 0;
    deflateEnd(&z);
    if (ret != Z_STREAM_END && ret != Z_OK && ret != Z_BUF_ERROR)
        return codec_error(errp, "deflate", z.msg);
    return out;
}

/* With dst full and the stream not at its end: would it produce more?
 * One byte more is enough to tell; exhausted input or damage after the
 * last byte needed are not "more". */
static bool zlib_more(z_stream *z)
{
    uint8_t byte;
    z->next_out = &byte;
    z->avail_out = 1;
    inflate(z, Z_FINISH);
    return z->avail_out == 0;
}

/* `more` (when not NULL) tells whether the stream goes on past dst. */
static int64_t zlib_decompress(enum diskimg_codec codec, const void *src, size_t src_len,
                               void *dst, size_t dst_len, bool *more, GError **errp)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, zlib_window(codec, 0, true)) != Z_OK)
        return codec_error(errp, "inflate", "cannot initialise zlib");
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)src_len;
    z.next_out = dst;
    z.avail_out = (uInt)dst_len;
    int ret = inflate(&z, Z_FINISH);
    int64_t out = (int64_t)(dst_len - z.avail_out);
    bool ok = ret == Z_STREAM_END || ((ret == Z_BUF_ERROR || ret == Z_OK) && z.avail_out == 0);
    g_autofree char *msg = z.msg ? g_strdup(z.msg) : NULL;
    if (more)
        *more = ok && ret != Z_STREAM_END && zlib_more(&z);
    inflateEnd(&z);
    if (!ok && ret != Z_BUF_ERROR)
        return codec_error(errp, "inflate", msg);
    return out;
}

static int64_t zstd_compress(int level, const void *src, size_t src_len, void *dst,
                             size_t dst_cap, GError **errp)
{
    size_t n = ZSTD_compress(dst, dst_cap, src, src_len, level < 0 ? ZSTD_CLEVEL_DEFAULT : level);
    if (!ZSTD_isError(n))
        return (int64_t)n;
    if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
        return 0;
    return codec_error(errp, "zstd", ZSTD_getErrorName(n));
}

/* Streaming, so that frames without a content size and trailing padding
 * are accepted; stops when dst is full.  `more` (when not NULL) tells
 * whether the frame goes on past dst. */
static int64_t zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len,
                               bool *more, GError **errp)
{
    ZSTD_DStream *d = ZSTD_createDStream();
    if (!d)
        return codec_error(errp, "zstd", "cannot initialise");
    ZSTD_inBuffer in = { src, src_len, 0 };
    ZSTD_outBuffer out = { dst, dst_len, 0 };
    int64_t ret = 0;
    bool ended = false;
    while (out.pos < out.size) {
        size_t r = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(r)) {
            ret = codec_error(errp, "zstd", ZSTD_getErrorName(r));
            break;
        }
        ended = r == 0;
        if (r == 0 || (in.pos == in.size && out.pos < out.size))
            break;  /* end of frame, or input exhausted */
    }
    if (more) {
        uint8_t byte;
        ZSTD_outBuffer extra = { &byte, 1, 0 };
        *more = ret == 0 && !ended && out.pos == out.size &&
                !ZSTD_isError(ZSTD_decompressStream(d, &extra, &in)) && extra.pos == 1;
    }
    ZSTD_freeDStream(d);
    return ret < 0 ? ret : (int64_t)out.pos;
}

/* ------------------------------------------------------ incompressible data */

/*
 * Deflate and zstd save bytes in two ways only: repeats within their
 * window become matches, and literals are entropy-coded.  Both gains are
 * cheap to bound: a hash table of 4-byte sequences finds the repeats, byte
 * histograms give the entropy.  When together they promise less than
 * 1/128 of the data, running the codec (deflate at qemu's level manages
 * ~40 MB/s a core, on random data too) is wasted: the data is stored
 * as is.  The decision only ever costs that fraction of one block's size.
 *
 * Histograms are taken per 4 KiB piece as well as over the whole, because
 * a codec may switch tables between blocks: data whose pieces each use few
 * byte values but together use all of them looks random as a whole only.
 */
#define PROBE_PIECE 4096
#define PROBE_HASH_BITS 12

/* Entropy in bits per byte of a histogram of n bytes. */
static double histogram_entropy(const uint32_t count[256], size_t n)
{
    double h = 0;
    for (int i = 0; i < 256; i++) {
        if (count[i]) {
            double q = (double)count[i] / (double)n;
            h -= q * log2(q);
        }
    }
    return h;
}

/* Can entropy coding of literals save more than 1/256 of the data?  The
 * bounds allow for the bias of an estimate from few samples: uniformly
 * random 4 KiB pieces measure ~7.955 bits a byte, whole 64 KiB ~7.997. */
static bool literals_compress(const uint8_t *p, size_t len)
{
    uint32_t total[256] = { 0 };
    for (size_t start = 0; start < len; start += PROBE_PIECE) {
        uint32_t count[256] = { 0 };
        size_t n = MIN((size_t)PROBE_PIECE, len - start);
        for (size_t i = 0; i < n; i++)
            count[p[start + i]]++;
        if (n == PROBE_PIECE && histogram_entropy(count, n) < 7.9)
            return true;
        for (int i = 0; i < 256; i++)
            total[i] += count[i];
    }
    return histogram_entropy(total, len) < 8.0 - 8.0 / 256;
}

/* Do repeats of 4 bytes or more, at most `window` bytes apart, cover more
 * than 1/256 of the data? */
static bool repeats_compress(const uint8_t *p, size_t len, size_t window)
{
    uint32_t *last = g_new0(uint32_t, 1u << PROBE_HASH_BITS);   /* position + 1 */
    size_t covered = 0, limit = len / 256;
    bool found = false;
    for (size_t i = 0; i + 4 <= len && !found;) {
        uint32_t v;
        memcpy(&v, p + i, 4);
        uint32_t h = (v * 2654435761u) >> (32 - PROBE_HASH_BITS);
        size_t prev = last[h];
        last[h] = (uint32_t)i + 1;
        if (prev && i - (prev - 1) <= window && memcmp(p + prev - 1, p + i, 4) == 0) {
            size_t m = 4;
            while (i + m < len && p[prev - 1 + m] == p[i + m])
                m++;
            covered += m;
            found = covered > limit;
            i += m;
        } else {
            i++;
        }
    }
    g_free(last);
    return found;
}

/* The span a codec looks back for repeats. */
static size_t codec_window(enum diskimg_codec codec, int window_bits, size_t len)
{
    if (codec == DISKIMG_CODEC_ZSTD)
        return len;
    return (size_t)1 << (window_bits ? window_bits : 15);
}

bool diskimg_probably_incompressible(enum diskimg_codec codec, int window_bits,
                                     const void *data, size_t len)
{
    if (len < PROBE_PIECE)
        return false;   /* too few bytes for the estimates to mean much */
    return !literals_compress(data, len) &&
           !repeats_compress(data, len, codec_window(codec, window_bits, len));
}

int64_t diskimg_compress(enum diskimg_codec codec, int level, int window_bits,
                         const void *src, size_t src_len, void *dst, size_t dst_cap,
                         GError **errp)
{
    if (src_len > UINT32_MAX || dst_cap > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "compression buffer too large");
        return -1;
    }
    /* A caller that leaves no room for growth wants savings, not a stream. */
    if (dst_cap < src_len && diskimg_probably_incompressible(codec, window_bits, src, src_len))
        return 0;
    switch (codec) {
    case DISKIMG_CODEC_DEFLATE:
    case DISKIMG_CODEC_ZLIB:
    case DISKIMG_CODEC_GZIP:
        return zlib_compress(codec, level, window_bits, src, src_len, dst, dst_cap, errp);
    case DISKIMG_CODEC_ZSTD:
        return zstd_compress(level, src, src_len, dst, dst_cap, errp);
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED, "unknown codec %d", codec);
    return -1;
}

static int64_t decompress(enum diskimg_codec codec, const void *src, size_t src_len,
                          void *dst, size_t dst_len, bool *more, GError **errp)
{
    if (src_len > UINT32_MAX || dst_len > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "decompression buffer too large");
        return -1;
    }
    switch (codec) {
    case DISKIMG_CODEC_DEFLATE:
    case DISKIMG_CODEC_ZLIB:
    case DISKIMG_CODEC_GZIP:
        return zlib_decompress(codec, src, src_len, dst, dst_len, more, errp);
    case DISKIMG_CODEC_ZSTD:
        return zstd_decompress(src, src_len, dst, dst_len, more, errp);
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED, "unknown codec %d", codec);
    return -1;
}

int64_t diskimg_decompress(enum diskimg_codec codec, int window_bits, const void *src,
                           size_t src_len, void *dst, size_t dst_len, GError **errp)
{
    (void)window_bits;
    return decompress(codec, src, src_len, dst, dst_len, NULL, errp);
}

int diskimg_decompress_exact(enum diskimg_codec codec, const void *src, size_t src_len,
                             void *dst, size_t dst_len, GError **errp)
{
    bool more = false;
    int64_t n = decompress(codec, src, src_len, dst, dst_len, &more, errp);
    if (n < 0)
        return -1;
    if ((uint64_t)n < dst_len) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "compressed data inflates to %" PRId64 " bytes instead of %zu", n, dst_len);
        return -1;
    }
    if (more) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_CORRUPT,
                    "compressed data inflates to more than %zu bytes", dst_len);
        return -1;
    }
    return 0;
}
