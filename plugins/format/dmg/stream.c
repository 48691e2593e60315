/* SPDX-License-Identifier: MIT */
/*
 * stream.c — reading the bytes of one chunk.
 *
 * Zero and ignore chunks are zeroes, raw chunks are read in place.  zlib
 * and bzip2 chunks are decoded by a streaming decoder, one WINDOW-aligned
 * piece of WINDOW bytes at a time, into a small cache of such windows
 * (MAX_WINDOWS of them, least recently used reused first).  A read served
 * by no cached window continues the decoder when it lies ahead of it
 * (sequential reads decode each chunk once; the windows passed on the way
 * are cached too, so the parallel requests of convert, which reach the
 * handle out of order, find them) and restarts it at the chunk's start
 * otherwise.  Memory is thus fixed whatever a chunk's size: the windows,
 * an input buffer and the decoder's own state.  ADC chunks, whose back
 * references reach 64 KiB behind and whose decoder is small, are decoded
 * whole into a buffer whose size is bounded by the chunk's stored length
 * times ADC's largest expansion (a 3-byte code makes at most 67 bytes),
 * i.e. by the file.
 */
#include <inttypes.h>
#include <string.h>
#include <zlib.h>
#ifdef HAVE_BZIP2
#include <bzlib.h>
#endif

#include "dmg.h"

#define WINDOW (1u << 20)
/* 32 MiB of decoded data: more than the span of the requests convert keeps
 * in flight (8 workers of 2 MiB by default, so -m 16 still fits). */
#define MAX_WINDOWS 32u
#define INPUT (256u << 10)
/* Output bytes per input byte ADC can produce at most (67 / 3, rounded up). */
#define ADC_MAX_EXPANSION 23u

enum codec_state { CODEC_NONE = 0, CODEC_ZLIB, CODEC_BZIP2 };

struct dmg_reader {
    diskimg_node *file;
    char *filename;

    /* The streaming decoder, positioned in chunk `chunk`. */
    enum codec_state codec;
    struct dmg_chunk chunk;
    uint64_t produced;         /* bytes of output so far */
    uint64_t consumed;         /* bytes of input handed to the decoder */
    z_stream zs;
#ifdef HAVE_BZIP2
    bz_stream bz;
#endif
    uint8_t *in;               /* INPUT bytes */

    /* Decoded pieces of chunks, allocated as needed. */
    struct window {
        uint8_t *data;         /* WINDOW bytes, NULL: never used */
        struct dmg_chunk chunk;
        uint64_t start, len;   /* bytes [start, start + len) of the chunk */
        uint64_t used;         /* clock of the last use; 0: empty */
    } windows[MAX_WINDOWS];
    uint64_t clock;

    /* A whole decoded ADC chunk. */
    uint8_t *adc;
    struct dmg_chunk adc_chunk;
    bool adc_valid;
};

static bool same_chunk(const struct dmg_chunk *a, const struct dmg_chunk *b)
{
    return a->sector == b->sector && a->offset == b->offset && a->type == b->type;
}

bool dmg_reader_supports(uint32_t type)
{
    switch (type) {
    case DMG_CHUNK_ZERO:
    case DMG_CHUNK_IGNORE:
    case DMG_CHUNK_RAW:
    case DMG_CHUNK_ZLIB:
    case DMG_CHUNK_ADC:
        return true;
    case DMG_CHUNK_BZIP2:
#ifdef HAVE_BZIP2
        return true;
#else
        return false;
#endif
    default:
        return false;
    }
}

dmg_reader *dmg_reader_new(diskimg_node *file, const char *filename, GError **errp)
{
    dmg_reader *r = g_new0(dmg_reader, 1);

    r->file = file;
    r->filename = g_strdup(filename);
    r->in = g_try_malloc(INPUT);
    if (!r->in) {
        dmg_reader_free(r);
        diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "Could not allocate the chunk buffers");
        return NULL;
    }
    return r;
}

static void codec_end(dmg_reader *r)
{
    if (r->codec == CODEC_ZLIB)
        inflateEnd(&r->zs);
#ifdef HAVE_BZIP2
    else if (r->codec == CODEC_BZIP2)
        BZ2_bzDecompressEnd(&r->bz);
#endif
    r->codec = CODEC_NONE;
}

void dmg_reader_free(dmg_reader *r)
{
    if (!r)
        return;
    codec_end(r);
    g_free(r->in);
    for (unsigned i = 0; i < MAX_WINDOWS; i++)
        g_free(r->windows[i].data);
    g_free(r->adc);
    g_free(r->filename);
    g_free(r);
}

static int chunk_error(const dmg_reader *r, const struct dmg_chunk *c, GError **errp,
                       const char *what, const char *detail)
{
    char name[16];

    return diskimg_set_error(errp, DISKIMG_ERROR_CORRUPT,
                             "%s: %s chunk at sector %" PRIu64 " (%" PRIu64
                             " bytes at offset %" PRIu64 "): %s%s%s", r->filename,
                             dmg_chunk_type_name(c->type, name, sizeof(name)), c->sector,
                             c->length, c->offset, what, detail ? ": " : "",
                             detail ? detail : "");
}

/* ------------------------------------------------------------- streaming */

/* Starts decoding chunk c from its first byte. */
static int codec_begin(dmg_reader *r, const struct dmg_chunk *c, GError **errp)
{
    codec_end(r);
    r->chunk = *c;
    r->produced = 0;
    r->consumed = 0;
    if (c->type == DMG_CHUNK_ZLIB) {
        memset(&r->zs, 0, sizeof(r->zs));
        if (inflateInit(&r->zs) != Z_OK)
            return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: inflateInit failed",
                                     r->filename);
        r->codec = CODEC_ZLIB;
        return 0;
    }
#ifdef HAVE_BZIP2
    memset(&r->bz, 0, sizeof(r->bz));
    if (BZ2_bzDecompressInit(&r->bz, 0, 0) != BZ_OK)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                                 "%s: BZ2_bzDecompressInit failed", r->filename);
    r->codec = CODEC_BZIP2;
    return 0;
#else
    return chunk_error(r, c, errp, "unsupported chunk type",
                       "this build of the dmg plugin has no bzip2 support (libbz2)");
#endif
}

/* Reads the next piece of the chunk's stored bytes into r->in: its length,
 * 0 when all was consumed, -1 on error. */
static int64_t next_input(dmg_reader *r, GError **errp)
{
    uint64_t n = MIN((uint64_t)INPUT, r->chunk.length - r->consumed);

    if (n == 0)
        return 0;
    if (diskimg_node_pread(r->file, r->in, n, r->chunk.offset + r->consumed, errp) < 0)
        return -1;
    r->consumed += n;
    return (int64_t)n;
}

/* One decoder step into [out, out + *avail_out): refills input when the
 * decoder has none; sets *ended at the end of the stream. */
static int zlib_step(dmg_reader *r, uint8_t *out, size_t len, size_t *got, bool *ended,
                     GError **errp)
{
    int ret;

    if (r->zs.avail_in == 0) {
        int64_t n = next_input(r, errp);

        if (n < 0)
            return -1;
        if (n == 0)
            return chunk_error(r, &r->chunk, errp, "compressed stream is truncated", NULL);
        r->zs.next_in = r->in;
        r->zs.avail_in = (uInt)n;
    }
    r->zs.next_out = out;
    r->zs.avail_out = (uInt)len;
    ret = inflate(&r->zs, Z_NO_FLUSH);
    *got = len - r->zs.avail_out;
    if (ret == Z_STREAM_END) {
        *ended = true;
        return 0;
    }
    if (ret != Z_OK && ret != Z_BUF_ERROR)
        return chunk_error(r, &r->chunk, errp, "bad compressed stream",
                           r->zs.msg ? r->zs.msg : "inflate failed");
    return 0;
}

#ifdef HAVE_BZIP2
static int bzip2_step(dmg_reader *r, uint8_t *out, size_t len, size_t *got, bool *ended,
                      GError **errp)
{
    int ret;

    if (r->bz.avail_in == 0) {
        int64_t n = next_input(r, errp);

        if (n < 0)
            return -1;
        if (n == 0)
            return chunk_error(r, &r->chunk, errp, "compressed stream is truncated", NULL);
        r->bz.next_in = (char *)r->in;
        r->bz.avail_in = (unsigned)n;
    }
    r->bz.next_out = (char *)out;
    r->bz.avail_out = (unsigned)len;
    ret = BZ2_bzDecompress(&r->bz);
    *got = len - r->bz.avail_out;
    if (ret == BZ_STREAM_END) {
        *ended = true;
        return 0;
    }
    if (ret != BZ_OK) {
        char code[32];

        g_snprintf(code, sizeof(code), "libbz2 error %d", ret);
        return chunk_error(r, &r->chunk, errp, "bad compressed stream", code);
    }
    return 0;
}
#endif

static int codec_step(dmg_reader *r, uint8_t *out, size_t len, size_t *got, bool *ended,
                      GError **errp)
{
#ifdef HAVE_BZIP2
    if (r->codec == CODEC_BZIP2)
        return bzip2_step(r, out, len, got, ended, errp);
#endif
    return zlib_step(r, out, len, got, ended, errp);
}

/* The chunk's sectors are all decoded: its stream must end there, as qemu
 * requires, rather than go on (a chunk that inflates past its sectors). */
static int expect_end(dmg_reader *r, GError **errp)
{
    uint8_t byte;
    size_t got = 0;
    bool ended = false;
    while (!ended && got == 0)
        if (codec_step(r, &byte, 1, &got, &ended, errp) < 0)
            return -1;
    if (got)
        return chunk_error(r, &r->chunk, errp, "compressed stream inflates past the chunk's "
                           "sectors", NULL);
    return 0;
}

/* Decodes the next `len` bytes of the chunk into out; the stream must
 * produce them all. */
static int decode(dmg_reader *r, uint8_t *out, uint64_t len, GError **errp)
{
    bool ended = false;
    while (len > 0) {
        size_t want = (size_t)MIN(len, (uint64_t)WINDOW), got = 0;

        if (codec_step(r, out, want, &got, &ended, errp) < 0)
            return -1;
        r->produced += got;
        len -= got;
        out += got;
        if (ended && len > 0) {
            codec_end(r);
            return chunk_error(r, &r->chunk, errp, "compressed stream ends early", NULL);
        }
    }
    if (!ended && r->produced == r->chunk.sectors * DMG_SECTOR)
        return expect_end(r, errp);
    return 0;
}

static struct window *find_window(dmg_reader *r, const struct dmg_chunk *c, uint64_t start)
{
    for (unsigned i = 0; i < MAX_WINDOWS; i++) {
        struct window *w = &r->windows[i];

        if (w->used && w->start == start && same_chunk(&w->chunk, c))
            return w;
    }
    return NULL;
}

/* A window to fill: an empty one, else the least recently used. */
static struct window *take_window(dmg_reader *r, GError **errp)
{
    struct window *best = &r->windows[0];

    for (unsigned i = 0; i < MAX_WINDOWS && best->used; i++)
        if (r->windows[i].used < best->used)
            best = &r->windows[i];
    if (!best->data)
        best->data = g_try_malloc(WINDOW);
    if (!best->data) {
        diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY, "%s: out of memory for a chunk window",
                          r->filename);
        return NULL;
    }
    best->used = 0;
    return best;
}

/* Decodes the chunk's next window (the stream stands at a window start). */
static struct window *decode_window(dmg_reader *r, const struct dmg_chunk *c, GError **errp)
{
    uint64_t start = r->produced;
    uint64_t len = MIN((uint64_t)WINDOW, c->sectors * DMG_SECTOR - start);
    struct window *w = find_window(r, c, start);

    if (!w)
        w = take_window(r, errp);
    if (!w)
        return NULL;
    w->used = 0;
    if (decode(r, w->data, len, errp) < 0) {
        codec_end(r);
        return NULL;
    }
    w->chunk = *c;
    w->start = start;
    w->len = len;
    w->used = ++r->clock;
    return w;
}

/* The window of chunk c holding byte `within`, decoding it (and the ones
 * before it that the decoder has not passed yet) when no window has it. */
static struct window *get_window(dmg_reader *r, const struct dmg_chunk *c, uint64_t within,
                                 GError **errp)
{
    uint64_t start = within - within % WINDOW;
    struct window *w = find_window(r, c, start);

    if (w) {
        w->used = ++r->clock;
        return w;
    }
    if (r->codec == CODEC_NONE || !same_chunk(&r->chunk, c) || r->produced > start) {
        if (codec_begin(r, c, errp) < 0)
            return NULL;
    }
    do {
        w = decode_window(r, c, errp);
    } while (w && w->start < start);
    return w;
}

static int read_streamed(dmg_reader *r, const struct dmg_chunk *c, uint64_t within, uint8_t *buf,
                         uint64_t len, GError **errp)
{
    while (len > 0) {
        struct window *w = get_window(r, c, within, errp);
        uint64_t n;

        if (!w)
            return -1;
        n = MIN(len, w->start + w->len - within);
        memcpy(buf, w->data + (within - w->start), n);
        buf += n;
        within += n;
        len -= n;
    }
    return 0;
}

/* ------------------------------------------------------------------- ADC */

/*
 * Apple Data Compression: a sequence of codes.  A first byte with the top
 * bit set is a literal run of (b & 0x7f) + 1 bytes; 0x40 set: a match of
 * (b & 0x3f) + 4 bytes at distance (next two bytes, big endian) + 1;
 * otherwise a match of ((b >> 2) & 0x0f) + 3 bytes at distance
 * ((b & 3) << 8 | next byte) + 1.  Matches may overlap their output.
 */
static int adc_decode(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                      size_t *produced)
{
    size_t i = 0, o = 0;

    while (i < in_len && o < out_len) {
        uint8_t b = in[i++];
        size_t run, dist;

        if (b & 0x80) {
            run = (size_t)(b & 0x7f) + 1;
            if (run > in_len - i || run > out_len - o)
                return -1;
            memcpy(out + o, in + i, run);
            i += run;
            o += run;
            continue;
        }
        if (b & 0x40) {
            if (in_len - i < 2)
                return -1;
            run = (size_t)(b & 0x3f) + 4;
            dist = ((size_t)in[i] << 8 | in[i + 1]) + 1;
            i += 2;
        } else {
            if (in_len - i < 1)
                return -1;
            run = (size_t)((b >> 2) & 0x0f) + 3;
            dist = ((size_t)(b & 3) << 8 | in[i]) + 1;
            i += 1;
        }
        if (dist > o || run > out_len - o)
            return -1;
        for (size_t k = 0; k < run; k++, o++)
            out[o] = out[o - dist];
    }
    *produced = o;
    return 0;
}

static int load_adc(dmg_reader *r, const struct dmg_chunk *c, GError **errp)
{
    uint64_t out_len = c->sectors * DMG_SECTOR;
    g_autofree uint8_t *in = NULL;
    size_t produced = 0;

    if (r->adc_valid && same_chunk(&r->adc_chunk, c))
        return 0;
    r->adc_valid = false;
    if (c->length > SIZE_MAX / ADC_MAX_EXPANSION || out_len > c->length * ADC_MAX_EXPANSION)
        return chunk_error(r, c, errp, "ADC data cannot expand to the chunk's sectors", NULL);
    g_free(r->adc);
    r->adc = g_try_malloc(out_len);
    in = g_try_malloc(c->length);
    if (!r->adc || !in)
        return diskimg_set_error(errp, DISKIMG_ERROR_NO_MEMORY,
                                 "%s: out of memory for an ADC chunk of %" PRIu64 " bytes",
                                 r->filename, out_len);
    if (diskimg_node_pread(r->file, in, c->length, c->offset, errp) < 0)
        return -1;
    if (adc_decode(in, c->length, r->adc, out_len, &produced) < 0)
        return chunk_error(r, c, errp, "bad compressed stream", "invalid ADC code");
    if (produced < out_len)
        return chunk_error(r, c, errp, "compressed stream ends early", NULL);
    r->adc_chunk = *c;
    r->adc_valid = true;
    return 0;
}

/* ------------------------------------------------------------------ read */

int dmg_reader_read(dmg_reader *r, const struct dmg_chunk *c, uint64_t within, uint8_t *buf,
                    uint64_t len, GError **errp)
{
    char name[16];

    switch (c->type) {
    case DMG_CHUNK_ZERO:
    case DMG_CHUNK_IGNORE:
        memset(buf, 0, len);
        return 0;
    case DMG_CHUNK_RAW:
        return diskimg_node_pread(r->file, buf, len, c->offset + within, errp);
    case DMG_CHUNK_ADC:
        if (load_adc(r, c, errp) < 0)
            return -1;
        memcpy(buf, r->adc + within, len);
        return 0;
    case DMG_CHUNK_ZLIB:
        return read_streamed(r, c, within, buf, len, errp);
    case DMG_CHUNK_BZIP2:
        if (dmg_reader_supports(c->type))
            return read_streamed(r, c, within, buf, len, errp);
        return chunk_error(r, c, errp, "unsupported chunk type",
                           "this build of the dmg plugin has no bzip2 support (libbz2)");
    case DMG_CHUNK_LZFSE:
        /* Debian has no lzfse library to decode them with. */
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s: unsupported chunk type lzfse (0x%08" PRIx32
                                 ") at sector %" PRIu64, r->filename, c->type, c->sector);
    default:
        return diskimg_set_error(errp, DISKIMG_ERROR_NOT_SUPPORTED,
                                 "%s: unsupported chunk type %s at sector %" PRIu64,
                                 r->filename, dmg_chunk_type_name(c->type, name, sizeof(name)),
                                 c->sector);
    }
}
