/*
 * What the two modules share: the integrations main configuration (Redis)
 * and the identity the access phase establishes for a request.
 */

#ifndef _NGX_INTEGRATIONS_COMMON_H_INCLUDED_
#define _NGX_INTEGRATIONS_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_redis.h"


typedef struct {
    ngx_integrations_redis_conf_t   redis;
    ngx_flag_t                      redis_set;
    size_t                          cache_size;  /* per worker, 0: off */
    void                           *handlers;  /* handlers.c's own */
} ngx_http_integrations_main_conf_t;


/* the identity of an authenticated request, for the content handlers */
typedef struct {
    ngx_str_t                       org;
    ngx_str_t                       id;
    ngx_str_t                       name;
    ngx_str_t                       scopes;
    ngx_str_t                       env;
    ngx_str_t                       prefix;
    time_t                          expires;
    void                           *prefetch;  /* handlers.c's own */
} ngx_integrations_identity_t;


/* content handlers (ngx_integrations_handlers.c) */
#define NGX_INTEGRATIONS_EVENTS          1
#define NGX_INTEGRATIONS_EVENT           2
#define NGX_INTEGRATIONS_TICKET_TYPES    3
#define NGX_INTEGRATIONS_AVAILABILITY    4
#define NGX_INTEGRATIONS_ATTENDEES       5
#define NGX_INTEGRATIONS_WHOAMI          6

/* request body schemas (ngx_integrations_validate.c) */
#define NGX_INTEGRATIONS_VALIDATE_NONE          0
#define NGX_INTEGRATIONS_VALIDATE_EVENT_CREATE  1
#define NGX_INTEGRATIONS_VALIDATE_EVENT_UPDATE  2
#define NGX_INTEGRATIONS_VALIDATE_CHECKIN       3


typedef struct {
    ngx_uint_t                      handler;    /* 0: none */
    ngx_str_t                       handler_name;  /* its directive, */
    ngx_str_t                       handler_file;  /* ... where given */
    ngx_uint_t                      handler_line;
    ngx_flag_t                      status;     /* integrations_status */
    ngx_http_complex_value_t       *event;      /* id or slug */
    ngx_uint_t                      validate;   /* NGX_CONF_UNSET_UINT */
    ngx_flag_t                      cors;
    void                           *handlers_conf;  /* handlers.c's own */
    void                           *validate_conf;  /* validate.c's own */
    /* server{} level only: a product location is in it (validate.c) */
    ngx_flag_t                      product_server;
} ngx_http_integrations_loc_conf_t;


/* node-wide counters, in shared memory (integrations_status shows them) */
typedef struct {
    ngx_atomic_t                    redis_commands;
    ngx_atomic_t                    redis_replies;
    ngx_atomic_t                    redis_timeouts;
    ngx_atomic_t                    redis_failures;
    ngx_atomic_t                    redis_connects;
    ngx_atomic_t                    keys_ok;
    ngx_atomic_t                    keys_unauthorized;
    ngx_atomic_t                    keys_forbidden;
    ngx_atomic_t                    keys_limited;
    ngx_atomic_t                    keys_unavailable;
    ngx_atomic_t                    keys_open;
    ngx_atomic_t                    keys_ambiguous;
    ngx_atomic_t                    pages_cached;   /* served from cache */
    ngx_atomic_t                    pages_fetched;  /* read from Redis */
} ngx_integrations_stats_t;

/* never NULL: a process-local table until the shared one exists */
extern ngx_integrations_stats_t  *ngx_integrations_stats;

#define ngx_integrations_stat(name)                                           \
    (void) ngx_atomic_fetch_add(&ngx_integrations_stats->name, 1)


extern ngx_module_t  ngx_http_apikey_module;
extern ngx_module_t  ngx_http_integrations_module;


/* NULL when the request went through no apikey check */
ngx_integrations_identity_t *ngx_http_apikey_identity(ngx_http_request_t *r);

/* r's location checks keys ("apikey on"); the same of a location's conf */
ngx_uint_t ngx_http_apikey_enabled(ngx_http_request_t *r);
ngx_uint_t ngx_http_apikey_conf_enabled(void **loc_conf);

/* the configured key header names of r's location, comma-separated */
ngx_int_t ngx_http_apikey_header_names(ngx_http_request_t *r,
    ngx_str_t *out);


/* ngx_integrations_handlers.c */
/* the read API's content handler (a limit_except block needs it set) */
ngx_int_t ngx_http_integrations_handler(ngx_http_request_t *r);
char *ngx_integrations_handlers_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_integrations_handlers_init(ngx_conf_t *cf);

/*
 * Called by the access phase once the key's script is queued: asks Redis
 * for the version of the data set the key read last time, so the answer
 * is there when the content handler needs it. NULL: nothing asked.
 */
void *ngx_http_integrations_prefetch(ngx_http_request_t *r,
    ngx_str_t *key_id);

/* ngx_integrations_validate.c: integrations_validate, integrations_cors */
char *ngx_integrations_validate_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_integrations_validate_init(ngx_conf_t *cf);


#endif /* _NGX_INTEGRATIONS_COMMON_H_INCLUDED_ */
