/* yajl_pool.c - a small block cache behind yajl's allocator. */
#include "filter/sanitize/yajl_pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define POOL_SLOTS 16

struct pool {
    void *slot[POOL_SLOTS]; /* free blocks, each preceded by its size */
};

static size_t *block_head(void *p)
{
    return (size_t *)p - 2; /* two words keep the block 16-byte aligned */
}

static void *pool_malloc(void *ctx, size_t sz)
{
    struct pool *pool = ctx;
    int best = -1;
    for (int i = 0; i < POOL_SLOTS; i++) {
        if (pool->slot[i] != NULL && *block_head(pool->slot[i]) >= sz &&
            (best < 0 ||
             *block_head(pool->slot[i]) < *block_head(pool->slot[best]))) {
            best = i;
        }
    }
    if (best >= 0) {
        void *p = pool->slot[best];
        pool->slot[best] = NULL;
        return p;
    }
    if (sz > SIZE_MAX - 2 * sizeof(size_t)) {
        return NULL;
    }
    size_t *b = malloc(sz + 2 * sizeof(size_t));
    if (b == NULL) {
        return NULL;
    }
    b[0] = sz;
    return b + 2;
}

static void pool_free(void *ctx, void *p)
{
    struct pool *pool = ctx;
    if (p == NULL) {
        return;
    }
    for (int i = 0; i < POOL_SLOTS; i++) {
        if (pool->slot[i] == NULL) {
            pool->slot[i] = p;
            return;
        }
    }
    free(block_head(p));
}

static void *pool_realloc(void *ctx, void *p, size_t sz)
{
    if (p == NULL) {
        return pool_malloc(ctx, sz);
    }
    size_t have = *block_head(p);
    if (have >= sz) {
        return p;
    }
    void *q = pool_malloc(ctx, sz);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, have);
    pool_free(ctx, p);
    return q;
}

int yajl_pool_init(yajl_alloc_funcs *funcs)
{
    struct pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) {
        return -1;
    }
    funcs->malloc = pool_malloc;
    funcs->realloc = pool_realloc;
    funcs->free = pool_free;
    funcs->ctx = pool;
    return 0;
}

void yajl_pool_destroy(yajl_alloc_funcs *funcs)
{
    struct pool *pool = funcs->ctx;
    if (pool == NULL) {
        return;
    }
    for (int i = 0; i < POOL_SLOTS; i++) {
        if (pool->slot[i] != NULL) {
            free(block_head(pool->slot[i]));
        }
    }
    free(pool);
    funcs->ctx = NULL;
}
