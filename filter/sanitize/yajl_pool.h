/* yajl_pool.h - a small block cache behind yajl's allocator.
 *
 * yajl has no reset, so a sanitizer frees and allocates a yajl parser for
 * every message; with this allocator that is reuse of the same few blocks,
 * not malloc. One pool per handle (not thread safe). */
#ifndef NANGUARD_YAJL_POOL_H
#define NANGUARD_YAJL_POOL_H

#include <yajl/yajl_common.h>

/* Fills funcs with a new pool's functions. Returns 0, or -1 when out of
 * memory. */
int yajl_pool_init(yajl_alloc_funcs *funcs);
/* Frees every cached block and the pool; funcs must have no parser left. */
void yajl_pool_destroy(yajl_alloc_funcs *funcs);

#endif
