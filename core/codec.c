/* SPDX-License-Identifier: MIT */
/*
 * codec.c — format-neutral compression codecs for cluster- and
 * grain-based formats (qcow2 compressed clusters, vmdk streamOptimized
 * grains, ...): one buffer in, one buffer out.
 *
 * Compression that does not fit the output buffer is not an error: the
 * caller then stores the data uncompressed.  Decompression stops when the
 * output buffer is full (trailing input is ignored, as qemu does for
 * qcow2, whose compressed clusters end on sector boundaries).
 */
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

static int64_t zlib_decompress(enum diskimg_codec codec, const void *src, size_t src_len,
                               void *dst, size_t dst_len, GError **errp)
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
 * are accepted; stops when dst is full. */
static int64_t zstd_decompress(const void *src, size_t src_len, void *dst, size_t dst_len,
                               GError **errp)
{
    ZSTD_DStream *d = ZSTD_createDStream();
    if (!d)
        return codec_error(errp, "zstd", "cannot initialise");
    ZSTD_inBuffer in = { src, src_len, 0 };
    ZSTD_outBuffer out = { dst, dst_len, 0 };
    int64_t ret = 0;
    while (out.pos < out.size) {
        size_t r = ZSTD_decompressStream(d, &out, &in);
        if (ZSTD_isError(r)) {
            ret = codec_error(errp, "zstd", ZSTD_getErrorName(r));
            break;
        }
        if (r == 0 || (in.pos == in.size && out.pos < out.size))
            break;  /* end of frame, or input exhausted */
    }
    ZSTD_freeDStream(d);
    return ret < 0 ? ret : (int64_t)out.pos;
}

int64_t diskimg_compress(enum diskimg_codec codec, int level, int window_bits,
                         const void *src, size_t src_len, void *dst, size_t dst_cap,
                         GError **errp)
{
    if (src_len > UINT32_MAX || dst_cap > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID, "compression buffer too large");
        return -1;
    }
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

int64_t diskimg_decompress(enum diskimg_codec codec, int window_bits, const void *src,
                           size_t src_len, void *dst, size_t dst_len, GError **errp)
{
    (void)window_bits;
    if (src_len > UINT32_MAX || dst_len > UINT32_MAX) {
        g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_INVALID,
                    "decompression buffer too large");
        return -1;
    }
    switch (codec) {
    case DISKIMG_CODEC_DEFLATE:
    case DISKIMG_CODEC_ZLIB:
    case DISKIMG_CODEC_GZIP:
        return zlib_decompress(codec, src, src_len, dst, dst_len, errp);
    case DISKIMG_CODEC_ZSTD:
        return zstd_decompress(src, src_len, dst, dst_len, errp);
    }
    g_set_error(errp, DISKIMG_ERROR, DISKIMG_ERROR_NOT_SUPPORTED, "unknown codec %d", codec);
    return -1;
}
