/*
 * Redis client on nginx's event loop: one pipelined connection per worker,
 * RESP parsed by hiredis's redisReader, timeouts on nginx timers.
 */

#ifndef _NGX_INTEGRATIONS_REDIS_H_INCLUDED_
#define _NGX_INTEGRATIONS_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>


typedef struct ngx_integrations_redis_s  ngx_integrations_redis_t;

/* reply == NULL: timeout, connection lost or Redis unreachable */
typedef void (*ngx_integrations_redis_handler_pt)(void *data,
    redisReply *reply);


typedef struct {
    ngx_str_t                           source;
    u_char                              sha1[40];
} ngx_integrations_redis_script_t;


typedef struct {
    ngx_url_t                           url;
    ngx_str_t                           password;
    ngx_str_t                           user;     /* with password= */
    ngx_str_t                           prefix;
    ngx_int_t                           db;
    ngx_msec_t                          timeout;
    ngx_msec_t                          connect_timeout;
    ngx_array_t                         scripts;  /* script_t * */
    ngx_integrations_redis_t           *conn;     /* this worker's */
    ngx_str_t                           name;     /* for logs */
} ngx_integrations_redis_conf_t;


/*
 * A command owned by its caller (usually in r->pool). For a script, args
 * are KEYS then ARGV and nkeys counts the keys; otherwise args are the
 * whole command.
 */
typedef struct {
    ngx_integrations_redis_script_t    *script;
    ngx_uint_t                          nkeys;
    ngx_uint_t                          nargs;
    ngx_str_t                          *args;
    ngx_integrations_redis_handler_pt   handler;
    void                               *data;
    /* internal */
    void                               *pending;
} ngx_integrations_redis_cmd_t;


ngx_integrations_redis_script_t *ngx_integrations_redis_add_script(
    ngx_conf_t *cf, ngx_integrations_redis_conf_t *rcf, const char *source);

char *ngx_integrations_redis_parse(ngx_conf_t *cf,
    ngx_integrations_redis_conf_t *rcf, ngx_str_t *args, ngx_uint_t n);

ngx_int_t ngx_integrations_redis_init_worker(ngx_cycle_t *cycle,
    ngx_integrations_redis_conf_t *rcf);
void ngx_integrations_redis_exit_worker(ngx_integrations_redis_conf_t *rcf);

/*
 * Queues the command. NGX_OK: the handler will be called exactly once
 * (unless cancelled). NGX_DECLINED: Redis is known to be down right now;
 * the handler will not be called. NGX_ERROR: out of memory.
 */
ngx_int_t ngx_integrations_redis_send(ngx_integrations_redis_conf_t *rcf,
    ngx_integrations_redis_cmd_t *cmd);

/*
 * Called by a handler to keep the reply it was given (to point buffers at
 * its strings) until the owner pool is destroyed. Otherwise the reply is
 * gone when the handler returns. Replies are not malloc'ed: never pass one
 * to freeReplyObject().
 */
ngx_int_t ngx_integrations_redis_keep_reply(ngx_pool_t *owner);
void ngx_integrations_redis_log_reply(ngx_log_t *log, const char *who,
    redisReply *reply);

/* the handler will not be called; the reply is dropped when it comes */
void ngx_integrations_redis_cancel(ngx_integrations_redis_cmd_t *cmd);

/* send + cancel on request pool cleanup */
ngx_int_t ngx_integrations_redis_send_r(ngx_http_request_t *r,
    ngx_integrations_redis_conf_t *rcf, ngx_integrations_redis_cmd_t *cmd);

/*
 * A key name in the pool: the configured prefix, then the n parts
 * ("{k:", id, "}" ...). Concatenated, not formatted: it runs per request.
 */
ngx_int_t ngx_integrations_redis_key(ngx_pool_t *pool,
    ngx_integrations_redis_conf_t *rcf, ngx_str_t *out, ngx_str_t *parts,
    ngx_uint_t n);


#endif /* _NGX_INTEGRATIONS_REDIS_H_INCLUDED_ */
