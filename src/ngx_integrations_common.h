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
} ngx_integrations_identity_t;


extern ngx_module_t  ngx_http_apikey_module;
extern ngx_module_t  ngx_http_integrations_module;


/* NULL when the request went through no apikey check */
ngx_integrations_identity_t *ngx_http_apikey_identity(ngx_http_request_t *r);


#endif /* _NGX_INTEGRATIONS_COMMON_H_INCLUDED_ */
