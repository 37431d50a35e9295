/*
 * The page cache (see ngx_integrations_cache.h): a hash table of entries
 * keyed by the page's identity (chained, doubled as it fills: a request
 * looks up to three entries, and a tree's walk showed in the profile), a
 * least recently used queue, and a byte budget. Per worker, so no lock:
 * an entry is one malloc'ed block, and a page being sent holds a
 * reference, so eviction only unlinks it and the last request frees it.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_integrations_cache.h"


#define NGX_INTEGRATIONS_CACHE_BUCKETS  256


typedef struct {
    ngx_integrations_cache_entry_t **buckets;
    ngx_uint_t                      nbuckets;  /* a power of 2 */
    ngx_uint_t                      n;
    ngx_queue_t                     lru;
    size_t                          used;
    size_t                          max;
} ngx_integrations_cache_t;


static void ngx_integrations_cache_unlink(ngx_integrations_cache_entry_t *e);
static ngx_integrations_cache_entry_t *ngx_integrations_cache_find(
    ngx_str_t *key, uint32_t hash);
static void ngx_integrations_cache_insert(ngx_integrations_cache_entry_t *e);
static void ngx_integrations_cache_grow(void);
static void ngx_integrations_cache_release(void *data);
static u_char *ngx_integrations_cache_copy(u_char *dst, u_char *src,
    size_t n);


static ngx_integrations_cache_t  ngx_integrations_cache;


void
ngx_integrations_cache_init(size_t max)
{
    ngx_integrations_cache_t  *c = &ngx_integrations_cache;

    c->buckets = NULL;
    c->nbuckets = 0;
    c->n = 0;
    ngx_queue_init(&c->lru);
    c->used = 0;
    c->max = max;
}


void
ngx_integrations_cache_done(void)
{
    ngx_queue_t                     *q;
    ngx_integrations_cache_t        *c = &ngx_integrations_cache;
    ngx_integrations_cache_entry_t  *e;

    if (c->max == 0) {
        return;
    }

    /* the worker is exiting: requests still sending a page free it */
    while (!ngx_queue_empty(&c->lru)) {
        q = ngx_queue_head(&c->lru);
        e = ngx_queue_data(q, ngx_integrations_cache_entry_t, lru);
        ngx_integrations_cache_unlink(e);
    }

    if (c->buckets) {
        ngx_free(c->buckets);
        c->buckets = NULL;
        c->nbuckets = 0;
    }

    c->max = 0;
}


ngx_uint_t
ngx_integrations_cache_enabled(void)
{
    return ngx_integrations_cache.max != 0;
}


uint32_t
ngx_integrations_cache_hash(ngx_str_t *key)
{
    return ngx_murmur_hash2(key->data, key->len);
}


ngx_integrations_cache_entry_t *
ngx_integrations_cache_lookup(ngx_str_t *key, uint32_t hash)
{
    ngx_integrations_cache_t        *c = &ngx_integrations_cache;
    ngx_integrations_cache_entry_t  *e;

    if (c->max == 0) {
        return NULL;
    }

    e = ngx_integrations_cache_find(key, hash);
    if (e == NULL) {
        return NULL;
    }

    ngx_queue_remove(&e->lru);
    ngx_queue_insert_head(&c->lru, &e->lru);

    return e;
}


ngx_int_t
ngx_integrations_cache_hold(ngx_pool_t *pool,
    ngx_integrations_cache_entry_t *e)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_integrations_cache_release;
    cln->data = e;
    e->refs++;

    return NGX_OK;
}


ngx_int_t
ngx_integrations_cache_store(ngx_str_t *key, uint32_t hash,
    ngx_str_t *version, ngx_str_t *etag, ngx_chain_t *body, size_t len)
{
    size_t                           size;
    u_char                          *p;
    ngx_chain_t                     *cl;
    ngx_queue_t                     *q;
    ngx_integrations_cache_t        *c = &ngx_integrations_cache;
    ngx_integrations_cache_entry_t  *e;

    if (c->max == 0) {
        return NGX_DECLINED;
    }

    size = 0;

    for (cl = body; cl; cl = cl->next) {
        if (!ngx_buf_in_memory(cl->buf)) {
            return NGX_DECLINED;
        }

        size += cl->buf->last - cl->buf->pos;
    }

    if (size != len) {
        return NGX_DECLINED;
    }

    size += sizeof(ngx_integrations_cache_entry_t) + key->len + version->len
            + etag->len;

    /* one page never takes more than an eighth of the budget */
    if (size > c->max / 8) {
        return NGX_DECLINED;
    }

    e = ngx_integrations_cache_find(key, hash);
    if (e) {
        ngx_integrations_cache_unlink(e);
    }

    while (c->used + size > c->max && !ngx_queue_empty(&c->lru)) {
        q = ngx_queue_last(&c->lru);
        e = ngx_queue_data(q, ngx_integrations_cache_entry_t, lru);
        ngx_integrations_cache_unlink(e);
    }

    if (c->n >= c->nbuckets) {
        ngx_integrations_cache_grow();

        if (c->buckets == NULL) {
            return NGX_ERROR;
        }
    }

    e = ngx_alloc(size, ngx_cycle->log);
    if (e == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(e, sizeof(ngx_integrations_cache_entry_t));
    p = (u_char *) (e + 1);

    e->key.data = p;
    e->key.len = key->len;
    p = ngx_integrations_cache_copy(p, key->data, key->len);

    e->version.data = p;
    e->version.len = version->len;
    p = ngx_integrations_cache_copy(p, version->data, version->len);

    e->etag.data = p;
    e->etag.len = etag->len;
    p = ngx_integrations_cache_copy(p, etag->data, etag->len);

    e->body = p;
    e->len = len;

    for (cl = body; cl; cl = cl->next) {
        p = ngx_integrations_cache_copy(p, cl->buf->pos,
                                        cl->buf->last - cl->buf->pos);
    }

    e->size = size;
    e->hash = hash;

    ngx_integrations_cache_insert(e);
    ngx_queue_insert_head(&c->lru, &e->lru);
    c->used += size;

    return NGX_OK;
}


/* memcpy, but an empty string may have no data pointer at all */

static u_char *
ngx_integrations_cache_copy(u_char *dst, u_char *src, size_t n)
{
    return n ? ngx_cpymem(dst, src, n) : dst;
}


static ngx_integrations_cache_entry_t *
ngx_integrations_cache_find(ngx_str_t *key, uint32_t hash)
{
    ngx_integrations_cache_t        *c = &ngx_integrations_cache;
    ngx_integrations_cache_entry_t  *e;

    if (c->buckets == NULL) {
        return NULL;
    }

    for (e = c->buckets[hash & (c->nbuckets - 1)]; e; e = e->next) {
        if (e->hash == hash && e->key.len == key->len
            && ngx_memcmp(e->key.data, key->data, key->len) == 0)
        {
            return e;
        }
    }

    return NULL;
}


static void
ngx_integrations_cache_insert(ngx_integrations_cache_entry_t *e)
{
    ngx_uint_t                 i;
    ngx_integrations_cache_t  *c = &ngx_integrations_cache;

    i = e->hash & (c->nbuckets - 1);
    e->next = c->buckets[i];
    c->buckets[i] = e;
    c->n++;
}


/* twice the buckets (the first 256); on failure the chains get longer */

static void
ngx_integrations_cache_grow(void)
{
    ngx_uint_t                        i, j, n;
    ngx_integrations_cache_t         *c = &ngx_integrations_cache;
    ngx_integrations_cache_entry_t  **b, *e, *next;

    n = c->nbuckets ? c->nbuckets * 2 : NGX_INTEGRATIONS_CACHE_BUCKETS;

    b = ngx_alloc(n * sizeof(ngx_integrations_cache_entry_t *),
                  ngx_cycle->log);
    if (b == NULL) {
        return;
    }

    ngx_memzero(b, n * sizeof(ngx_integrations_cache_entry_t *));

    for (i = 0; i < c->nbuckets; i++) {
        for (e = c->buckets[i]; e; e = next) {
            next = e->next;
            j = e->hash & (n - 1);
            e->next = b[j];
            b[j] = e;
        }
    }

    if (c->buckets) {
        ngx_free(c->buckets);
    }

    c->buckets = b;
    c->nbuckets = n;
}


/* out of the table and the budget; freed now unless a request sends it */

static void
ngx_integrations_cache_unlink(ngx_integrations_cache_entry_t *e)
{
    ngx_integrations_cache_t         *c = &ngx_integrations_cache;
    ngx_integrations_cache_entry_t  **pe;

    /* every entry is in the table: store makes room before linking one */
    for (pe = &c->buckets[e->hash & (c->nbuckets - 1)]; *pe != e;
         pe = &(*pe)->next)
    { /* void */ }

    *pe = e->next;
    c->n--;

    ngx_queue_remove(&e->lru);
    c->used -= e->size;

    if (e->refs) {
        e->dead = 1;
        return;
    }

    ngx_free(e);
}


static void
ngx_integrations_cache_release(void *data)
{
    ngx_integrations_cache_entry_t  *e = data;

    if (--e->refs == 0 && e->dead) {
        ngx_free(e);
    }
}
