/* SPDX-License-Identifier: MIT */
/*
 * cache.c — the readahead cache of the http plugin: a handful of blocks,
 * each one ranged GET's worth of bytes, least recently used evicted first.
 * Its memory is bounded by HTTP_CACHE_BLOCKS x the readahead option.
 *
 * Two threads missing on the same range both fetch it (the second insert
 * replaces nothing useful, it only adds a duplicate that ages out): waiting
 * for another thread's transfer would need per-block state and buys little,
 * since the copy engine's workers read disjoint ranges.
 */
#include <string.h>

#include "http.h"

void http_cache_init(struct http_cache *c)
{
    memset(c, 0, sizeof(*c));
    g_mutex_init(&c->lock);
}

void http_cache_clear(struct http_cache *c)
{
    for (unsigned i = 0; i < HTTP_CACHE_BLOCKS; i++)
        g_free(c->blocks[i].data);
    g_mutex_clear(&c->lock);
}

static bool block_holds(const struct http_cache_block *b, uint64_t off)
{
    return b->data && off >= b->start && off - b->start < b->len;
}

uint64_t http_cache_read(struct http_cache *c, void *buf, uint64_t len, uint64_t off)
{
    uint64_t n = 0;

    g_mutex_lock(&c->lock);
    for (unsigned i = 0; i < HTTP_CACHE_BLOCKS; i++) {
        struct http_cache_block *b = &c->blocks[i];

        if (!block_holds(b, off))
            continue;
        n = MIN(len, b->len - (off - b->start));
        memcpy(buf, b->data + (off - b->start), n);
        b->last_use = ++c->clock;
        break;
    }
    g_mutex_unlock(&c->lock);
    return n;
}

void http_cache_insert(struct http_cache *c, uint8_t *data, uint64_t start, uint64_t len)
{
    struct http_cache_block *victim = &c->blocks[0];

    g_mutex_lock(&c->lock);
    for (unsigned i = 0; i < HTTP_CACHE_BLOCKS; i++) {
        struct http_cache_block *b = &c->blocks[i];

        if (!b->data) {
            victim = b;
            break;
        }
        if (b->last_use < victim->last_use)
            victim = b;
    }
    g_free(victim->data);
    victim->data = data;
    victim->start = start;
    victim->len = len;
    victim->last_use = ++c->clock;
    g_mutex_unlock(&c->lock);
}
