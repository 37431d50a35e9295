/*
 * ngx_http_integrations_module: the Redis connection of each worker
 * (integrations_redis) and the content handlers of the read API.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_json.h"


static void *ngx_http_integrations_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_integrations_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_integrations_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_integrations_init(ngx_conf_t *cf);
static char *ngx_http_integrations_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_integrations_init_process(ngx_cycle_t *cycle);
static void ngx_http_integrations_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_integrations_commands[] = {

    { ngx_string("integrations_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_integrations_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("integrations_events"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_integrations_handlers_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_INTEGRATIONS_EVENTS,
      NULL },

    { ngx_string("integrations_event"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_integrations_handlers_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_INTEGRATIONS_EVENT,
      NULL },

    { ngx_string("integrations_ticket_types"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_integrations_handlers_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_INTEGRATIONS_TICKET_TYPES,
      NULL },

    { ngx_string("integrations_availability"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_integrations_handlers_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_INTEGRATIONS_AVAILABILITY,
      NULL },

    { ngx_string("integrations_attendees"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_integrations_handlers_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_INTEGRATIONS_ATTENDEES,
      NULL },

    { ngx_string("integrations_whoami"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_integrations_handlers_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_INTEGRATIONS_WHOAMI,
      NULL },

    { ngx_string("integrations_validate"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_integrations_validate_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("integrations_cors"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_integrations_loc_conf_t, cors),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_integrations_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_integrations_init,            /* postconfiguration */

    ngx_http_integrations_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_integrations_create_loc_conf, /* create location configuration */
    ngx_http_integrations_merge_loc_conf   /* merge location configuration */
};


ngx_module_t  ngx_http_integrations_module = {
    NGX_MODULE_V1,
    &ngx_http_integrations_module_ctx,     /* module context */
    ngx_http_integrations_commands,        /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_integrations_init_process,    /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_integrations_exit_process,    /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_integrations_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_integrations_main_conf_t  *imcf;

    imcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_integrations_main_conf_t));
    if (imcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     imcf->redis = { 0 };
     *     imcf->redis_set = 0;
     */

    if (ngx_array_init(&imcf->redis.scripts, cf->pool, 4,
                       sizeof(ngx_integrations_redis_script_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return imcf;
}


static void *
ngx_http_integrations_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_integrations_loc_conf_t  *ilcf;

    ilcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_integrations_loc_conf_t));
    if (ilcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     ilcf->handler = 0;
     *     ilcf->event = NULL;
     *     ilcf->handlers_conf = NULL;
     *     ilcf->validate_conf = NULL;
     */

    ilcf->validate = NGX_CONF_UNSET_UINT;
    ilcf->cors = NGX_CONF_UNSET;

    return ilcf;
}


static char *
ngx_http_integrations_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_integrations_loc_conf_t *prev = parent;
    ngx_http_integrations_loc_conf_t *conf = child;

    ngx_conf_merge_uint_value(conf->validate, prev->validate,
                              NGX_INTEGRATIONS_VALIDATE_NONE);
    ngx_conf_merge_value(conf->cors, prev->cors, 0);

    if (conf->validate_conf == NULL) {
        conf->validate_conf = prev->validate_conf;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_integrations_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_integrations_main_conf_t  *imcf = conf;

    if (imcf->redis_set) {
        return "is duplicate";
    }

    imcf->redis_set = 1;

    return ngx_integrations_redis_parse(cf, &imcf->redis, cf->args->elts,
                                        cf->args->nelts);
}


static ngx_int_t
ngx_http_integrations_init(ngx_conf_t *cf)
{
    if (ngx_integrations_handlers_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_integrations_validate_init(cf);
}


static ngx_int_t
ngx_http_integrations_init_process(ngx_cycle_t *cycle)
{
    ngx_http_integrations_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_integrations_module);

    if (imcf == NULL || !imcf->redis_set) {
        return NGX_OK;
    }

    return ngx_integrations_redis_init_worker(cycle, &imcf->redis);
}


static void
ngx_http_integrations_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_integrations_main_conf_t  *imcf;

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_integrations_module);

    if (imcf == NULL || !imcf->redis_set) {
        return;
    }

    ngx_integrations_redis_exit_worker(&imcf->redis);
}
