/*
 * ngx_http_integrations_module: the Redis connection of each worker
 * (integrations_redis) and the content handlers of the read API.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_json.h"
#include "ngx_integrations_cache.h"
#include "ngx_integrations_key.h"


/* per worker: about a thousand 30 KB attendee pages, far more event pages */
#define NGX_HTTP_INTEGRATIONS_CACHE_SIZE  (32 * 1024 * 1024)


static void *ngx_http_integrations_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_integrations_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_integrations_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_integrations_init(ngx_conf_t *cf);
static char *ngx_http_integrations_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_integrations_cache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_integrations_init_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_integrations_stats_init(ngx_shm_zone_t *zone,
    void *data);
static char *ngx_http_integrations_status(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_integrations_status_handler(ngx_http_request_t *r);
static void ngx_http_integrations_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_integrations_commands[] = {

    { ngx_string("integrations_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_integrations_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("integrations_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_integrations_cache,
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

    { ngx_string("integrations_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_integrations_status,
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


static ngx_integrations_stats_t   ngx_integrations_local_stats;
ngx_integrations_stats_t         *ngx_integrations_stats =
    &ngx_integrations_local_stats;


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

    imcf->cache_size = NGX_CONF_UNSET_SIZE;

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
     *     ilcf->product_server = 0;   (set at postconfiguration)
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

    ngx_http_core_loc_conf_t  *clcf;

    /*
     * An "if" block without a content handler of its own runs its
     * location's with the block's confs: it needs the handler's. A
     * "limit_except" block's requests take the block's content handler,
     * which nginx leaves unset: set as the proxy module does.
     */
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->noname && clcf->handler == NULL && conf->handler == 0
        && !conf->status)
    {
        conf->handler = prev->handler;
        conf->handler_name = prev->handler_name;
        conf->handler_file = prev->handler_file;
        conf->handler_line = prev->handler_line;
        conf->status = prev->status;
        conf->event = prev->event;

        if (clcf->lmt_excpt) {
            if (conf->handler) {
                clcf->handler = ngx_http_integrations_handler;

            } else if (conf->status) {
                clcf->handler = ngx_http_integrations_status_handler;
            }
        }
    }

    /* proxy_pass after it took the location's content over */
    if (!clcf->noname
        && ((conf->handler
             && clcf->handler != ngx_http_integrations_handler)
            || (conf->status
                && clcf->handler != ngx_http_integrations_status_handler)))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%V\" in %V:%ui shares its location with another "
                      "content handler (proxy_pass, ...): one of them "
                      "would never run", &conf->handler_name,
                      &conf->handler_file, conf->handler_line);
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->validate, prev->validate,
                              NGX_INTEGRATIONS_VALIDATE_NONE);

    /* a body is validated whole, in one buffer of its size */
    if (conf->validate != NGX_INTEGRATIONS_VALIDATE_NONE
        && clcf->client_max_body_size == 0 && clcf->name.len
        && !clcf->noname)
    {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "\"integrations_validate\" with "
                      "\"client_max_body_size 0\" in location \"%V\": a "
                      "body of any size would be read into memory to be "
                      "validated", &clcf->name);
    }
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


/* integrations_cache 64m | off: the page cache's budget per worker */

static char *
ngx_http_integrations_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_integrations_main_conf_t  *imcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (imcf->cache_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        imcf->cache_size = 0;
        return NGX_CONF_OK;
    }

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < 64 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid page cache size \"%V\", expected a "
                           "size of at least 64k in k or m (e.g. 32m, "
                           "2048m) or \"off\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    imcf->cache_size = (size_t) size;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_integrations_init(ngx_conf_t *cf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, "integrations_stats");

    zone = ngx_shared_memory_add(cf, &name, 16 * ngx_pagesize,
                                 &ngx_http_integrations_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_integrations_stats_init;

    if (ngx_integrations_handlers_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_integrations_validate_init(cf);
}


static ngx_int_t
ngx_http_integrations_stats_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t  *sp;

    /* counters survive a reload */
    if (data) {
        zone->data = data;
        ngx_integrations_stats = data;
        return NGX_OK;
    }

    sp = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = sp->data;
        ngx_integrations_stats = sp->data;
        return NGX_OK;
    }

    sp->data = ngx_slab_calloc(sp, sizeof(ngx_integrations_stats_t));
    if (sp->data == NULL) {
        return NGX_ERROR;
    }

    zone->data = sp->data;
    ngx_integrations_stats = sp->data;

    return NGX_OK;
}


static char *
ngx_http_integrations_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_integrations_loc_conf_t *ilcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (ilcf->handler || ilcf->status) {
        return "is duplicate: a location has one integrations handler";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler
        && clcf->handler != ngx_http_integrations_status_handler)
    {
        return "cannot share a location with another content handler "
               "(proxy_pass, ...) given before it";
    }

    ilcf->status = 1;
    ilcf->handler_name = cmd->name;
    ilcf->handler_file = cf->conf_file->file.name;
    ilcf->handler_line = cf->conf_file->line;
    clcf->handler = ngx_http_integrations_status_handler;

    return NGX_CONF_OK;
}


/* Prometheus text by default; JSON with ?format=json */

static ngx_int_t
ngx_http_integrations_status_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  fmt;
    ngx_buf_t                 *b;
    ngx_chain_t                out;
    ngx_integrations_stats_t  *st;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    st = ngx_integrations_stats;

    b = ngx_create_temp_buf(r->pool, 2048);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &fmt) == NGX_OK
        && fmt.len == 4 && ngx_strncmp(fmt.data, "json", 4) == 0)
    {
        p = ngx_sprintf(b->last,
                "{\"redis\":{\"commands\":%uA,\"replies\":%uA,"
                "\"timeouts\":%uA,\"failures\":%uA,\"connects\":%uA},"
                "\"keys\":{\"ok\":%uA,\"unauthorized\":%uA,"
                "\"forbidden\":%uA,\"limited\":%uA,\"unavailable\":%uA,"
                "\"open\":%uA,\"ambiguous\":%uA},"
                "\"pages\":{\"cached\":%uA,\"fetched\":%uA}}\n",
                st->redis_commands, st->redis_replies, st->redis_timeouts,
                st->redis_failures, st->redis_connects, st->keys_ok,
                st->keys_unauthorized, st->keys_forbidden, st->keys_limited,
                st->keys_unavailable, st->keys_open, st->keys_ambiguous,
                st->pages_cached, st->pages_fetched);
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        p = ngx_sprintf(b->last,
                "# TYPE integrations_redis_commands_total counter\n"
                "integrations_redis_commands_total %uA\n"
                "# TYPE integrations_redis_replies_total counter\n"
                "integrations_redis_replies_total %uA\n"
                "# TYPE integrations_redis_timeouts_total counter\n"
                "integrations_redis_timeouts_total %uA\n"
                "# TYPE integrations_redis_failures_total counter\n"
                "integrations_redis_failures_total %uA\n"
                "# TYPE integrations_redis_connects_total counter\n"
                "integrations_redis_connects_total %uA\n"
                "# TYPE integrations_keys_total counter\n"
                "integrations_keys_total{result=\"ok\"} %uA\n"
                "integrations_keys_total{result=\"unauthorized\"} %uA\n"
                "integrations_keys_total{result=\"forbidden\"} %uA\n"
                "integrations_keys_total{result=\"limited\"} %uA\n"
                "integrations_keys_total{result=\"unavailable\"} %uA\n"
                "integrations_keys_total{result=\"open\"} %uA\n"
                "integrations_keys_total{result=\"ambiguous\"} %uA\n"
                "# TYPE integrations_pages_total counter\n"
                "integrations_pages_total{source=\"cache\"} %uA\n"
                "integrations_pages_total{source=\"redis\"} %uA\n",
                st->redis_commands, st->redis_replies, st->redis_timeouts,
                st->redis_failures, st->redis_connects, st->keys_ok,
                st->keys_unauthorized, st->keys_forbidden, st->keys_limited,
                st->keys_unavailable, st->keys_open, st->keys_ambiguous,
                st->pages_cached, st->pages_fetched);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4");
    }

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
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

    ngx_integrations_cache_init(imcf->cache_size == NGX_CONF_UNSET_SIZE
                                ? NGX_HTTP_INTEGRATIONS_CACHE_SIZE
                                : imcf->cache_size);

    return ngx_integrations_redis_init_worker(cycle, &imcf->redis);
}


static void
ngx_http_integrations_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_integrations_main_conf_t  *imcf;

    /* the OpenSSL contexts the key check kept */
    ngx_integrations_key_hash_free();

    imcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_integrations_module);

    if (imcf == NULL || !imcf->redis_set) {
        return;
    }

    ngx_integrations_redis_exit_worker(&imcf->redis);
    ngx_integrations_cache_done();
}
