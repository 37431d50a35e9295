/*
 * The page cache: rendered 200 responses of the read API, per worker,
 * each tagged with the data version (D:ver) it was rendered at. A request
 * only serves a page after Redis confirmed that version is still current,
 * so a cached page is never stale; it saves fetching and rendering.
 */

#ifndef _NGX_INTEGRATIONS_CACHE_H_INCLUDED_
#define _NGX_INTEGRATIONS_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct ngx_integrations_cache_entry_s
    ngx_integrations_cache_entry_t;

struct ngx_integrations_cache_entry_s {
    ngx_integrations_cache_entry_t *next;     /* in its hash bucket */
    ngx_str_t                       key;
    uint32_t                        hash;
    ngx_queue_t                     lru;
    ngx_str_t                       version;
    ngx_str_t                       etag;
    u_char                         *body;
    size_t                          len;
    size_t                          size;     /* bytes held, all told */
    ngx_uint_t                      refs;     /* requests sending it */
    unsigned                        dead:1;   /* out of the table */
};


/* max == 0: no cache in this worker */
void ngx_integrations_cache_init(size_t max);
void ngx_integrations_cache_done(void);
ngx_uint_t ngx_integrations_cache_enabled(void);

uint32_t ngx_integrations_cache_hash(ngx_str_t *key);

/* the live entry of key, or NULL */
ngx_integrations_cache_entry_t *ngx_integrations_cache_lookup(
    ngx_str_t *key, uint32_t hash);

/* keeps the entry's memory until the request's pool is destroyed */
ngx_int_t ngx_integrations_cache_hold(ngx_pool_t *pool,
    ngx_integrations_cache_entry_t *e);

/* stores (or replaces) the page of key: the chain's bytes are copied */
ngx_int_t ngx_integrations_cache_store(ngx_str_t *key, uint32_t hash,
    ngx_str_t *version, ngx_str_t *etag, ngx_chain_t *body, size_t len);


#endif /* _NGX_INTEGRATIONS_CACHE_H_INCLUDED_ */
