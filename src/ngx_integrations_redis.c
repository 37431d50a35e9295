/*
 * Redis client on nginx's event loop.
 *
 * One connection per worker, shared by every request of that worker.
 * Commands are formatted by hiredis into one output buffer; the write
 * event is posted, so every command queued during one turn of the event
 * loop leaves in one send(): requests pipeline across each other. Replies
 * are parsed by hiredis's redisReader and matched to callers in FIFO order.
 *
 * A single timer watches the oldest command in flight: when it is older
 * than the timeout, the connection is treated as hung, every caller gets a
 * NULL reply at once, and a reconnect is scheduled with backoff. While
 * disconnected, sends fail fast, so no request ever waits on a dead Redis.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include <ngx_sha1.h>
#include <netinet/tcp.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_redis.h"
#include "ngx_integrations_key.h"


#define NGX_INTEGRATIONS_REDIS_OUT_SIZE      16384
/* the largest command: HMGET of a page of 500 attendees (a collect) */
#define NGX_INTEGRATIONS_REDIS_MAX_ARGS      512
#define NGX_INTEGRATIONS_REDIS_BACKOFF_MIN   100
#define NGX_INTEGRATIONS_REDIS_BACKOFF_MAX   2000
#define NGX_INTEGRATIONS_REDIS_TIMEOUT_MAX   60000
/*
 * Reply pools: a key check's reply fits the first block; a pool that a
 * large reply grew past this many blocks is freed rather than kept.
 */
#define NGX_INTEGRATIONS_REDIS_REPLY_POOL    4096
#define NGX_INTEGRATIONS_REDIS_REPLY_BLOCKS  8


typedef enum {
    NGX_INTEGRATIONS_REDIS_DOWN = 0,
    NGX_INTEGRATIONS_REDIS_CONNECTING,
    NGX_INTEGRATIONS_REDIS_UP
} ngx_integrations_redis_state_e;


typedef enum {
    NGX_INTEGRATIONS_REDIS_USER = 0,
    NGX_INTEGRATIONS_REDIS_AUTH,
    NGX_INTEGRATIONS_REDIS_SELECT,
    NGX_INTEGRATIONS_REDIS_LOAD
} ngx_integrations_redis_kind_e;


typedef struct {
    ngx_queue_t                       queue;
    ngx_integrations_redis_cmd_t     *cmd;       /* NULL: cancelled */
    ngx_msec_t                        deadline;
    ngx_integrations_redis_kind_e     kind;
} ngx_integrations_redis_pending_t;


struct ngx_integrations_redis_s {
    ngx_integrations_redis_conf_t    *conf;
    ngx_log_t                        *log;
    ngx_peer_connection_t             peer;
    ngx_connection_t                 *c;
    redisReader                      *reader;
    ngx_pool_t                       *reply_pool;

    u_char                           *out;
    size_t                            out_pos;
    size_t                            out_len;
    size_t                            out_size;

    ngx_queue_t                       pending;
    ngx_queue_t                       free;

    ngx_event_t                       timeout_ev;
    ngx_event_t                       reconnect_ev;
    ngx_msec_t                        backoff;
    ngx_integrations_redis_state_e    state;
    unsigned                          read_posted:1;
    unsigned                          served:1;   /* a reply of a request */
};


static void ngx_integrations_redis_connect(ngx_integrations_redis_t *rc);
static void ngx_integrations_redis_close(ngx_integrations_redis_t *rc);
static void ngx_integrations_redis_fail(ngx_integrations_redis_t *rc,
    const char *why);
static void ngx_integrations_redis_read_handler(ngx_event_t *rev);
static void ngx_integrations_redis_write_handler(ngx_event_t *wev);
static void ngx_integrations_redis_timeout_handler(ngx_event_t *ev);
static void ngx_integrations_redis_reconnect_handler(ngx_event_t *ev);
static ngx_int_t ngx_integrations_redis_append(ngx_integrations_redis_t *rc,
    ngx_integrations_redis_kind_e kind, ngx_integrations_redis_cmd_t *cmd,
    int argc, const char **argv, const size_t *argvlen);
static ngx_int_t ngx_integrations_redis_append_cmd(
    ngx_integrations_redis_t *rc, ngx_integrations_redis_cmd_t *cmd,
    ngx_uint_t eval);
static void ngx_integrations_redis_dispatch(ngx_integrations_redis_t *rc,
    redisReply *reply);
static void ngx_integrations_redis_cleanup(void *data);
static void ngx_integrations_redis_release(ngx_integrations_redis_t *rc);
static redisReply *ngx_integrations_redis_reply_new(
    const redisReadTask *task);
static void *ngx_integrations_redis_create_string(const redisReadTask *task,
    char *str, size_t len);
#if (HIREDIS_MAJOR >= 1)
static void *ngx_integrations_redis_create_array(const redisReadTask *task,
    size_t elements);
#else
static void *ngx_integrations_redis_create_array(const redisReadTask *task,
    int elements);
#endif
static void *ngx_integrations_redis_create_integer(
    const redisReadTask *task, long long value);
static void *ngx_integrations_redis_create_nil(const redisReadTask *task);
static void ngx_integrations_redis_free_object(void *reply);
static void ngx_integrations_redis_free_pool(void *data);


/* RESP2 only: hiredis 1.x's RESP3 constructors stay unset */
static redisReplyObjectFunctions  ngx_integrations_redis_reply_functions = {
    .createString = ngx_integrations_redis_create_string,
    .createArray = ngx_integrations_redis_create_array,
    .createInteger = ngx_integrations_redis_create_integer,
    .createNil = ngx_integrations_redis_create_nil,
    .freeObject = ngx_integrations_redis_free_object
};

/* the connection whose reader runs, and the one whose reply is handled */
static ngx_integrations_redis_t  *ngx_integrations_redis_parsing;
static ngx_integrations_redis_t  *ngx_integrations_redis_replying;


/*
 * A reply of the wrong shape, or an error Redis gives every request (OOM,
 * READONLY, a broken script): logged at most once a second per worker,
 * not once per request, with how many were not; reply NULL: a reply the
 * caller found malformed.
 */

void
ngx_integrations_redis_log_reply(ngx_log_t *log, const char *who,
    redisReply *reply)
{
    static time_t      last;
    static ngx_uint_t  quiet;

    if (ngx_time() == last) {
        quiet++;
        return;
    }

    last = ngx_time();

    if (reply == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "%s: malformed reply from redis "
                      "(and %ui more not logged since the one before)",
                      who, quiet);

    } else {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "%s: unexpected reply from redis: \"%*s\" "
                      "(and %ui more not logged since the one before)",
                      who, reply->type == REDIS_REPLY_ERROR
                           ? (size_t) reply->len : (size_t) 0,
                      reply->str, quiet);
    }

    quiet = 0;
}


ngx_int_t
ngx_integrations_redis_keep_reply(ngx_pool_t *owner)
{
    ngx_pool_cleanup_t        *cln;
    ngx_integrations_redis_t  *rc;

    rc = ngx_integrations_redis_replying;

    if (rc == NULL || rc->reply_pool == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(owner, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_integrations_redis_free_pool;
    cln->data = rc->reply_pool;
    rc->reply_pool = NULL;

    return NGX_OK;
}


static void
ngx_integrations_redis_free_pool(void *data)
{
    ngx_destroy_pool(data);
}


/* the objects of the reply just handled go, unless it was kept */

static void
ngx_integrations_redis_release(ngx_integrations_redis_t *rc)
{
    ngx_uint_t   n;
    ngx_pool_t  *p;

    if (rc->reply_pool == NULL) {
        return;
    }

    n = 0;

    for (p = rc->reply_pool; p; p = p->d.next) {
        n++;
    }

    /* a large reply's blocks are not held for the small ones after it */
    if (n > NGX_INTEGRATIONS_REDIS_REPLY_BLOCKS) {
        ngx_destroy_pool(rc->reply_pool);
        rc->reply_pool = NULL;
        return;
    }

    ngx_reset_pool(rc->reply_pool);
}


static redisReply *
ngx_integrations_redis_reply_new(const redisReadTask *task)
{
    redisReply                *reply, *parent;
    ngx_integrations_redis_t  *rc;

    rc = ngx_integrations_redis_parsing;

    if (rc->reply_pool == NULL) {
        rc->reply_pool = ngx_create_pool(NGX_INTEGRATIONS_REDIS_REPLY_POOL,
                                         rc->log);
        if (rc->reply_pool == NULL) {
            return NULL;
        }
    }

    reply = ngx_pcalloc(rc->reply_pool, sizeof(redisReply));
    if (reply == NULL) {
        return NULL;
    }

    reply->type = task->type;

    if (task->parent) {
        parent = task->parent->obj;
        parent->element[task->idx] = reply;
    }

    return reply;
}


static void *
ngx_integrations_redis_create_string(const redisReadTask *task, char *str,
    size_t len)
{
    redisReply  *reply;

    reply = ngx_integrations_redis_reply_new(task);
    if (reply == NULL) {
        return NULL;
    }

    /* NUL-terminated, as hiredis's own */
    reply->str = ngx_pnalloc(ngx_integrations_redis_parsing->reply_pool,
                             len + 1);
    if (reply->str == NULL) {
        return NULL;
    }

    ngx_memcpy(reply->str, str, len);
    reply->str[len] = '\0';
    reply->len = len;

    return reply;
}


#if (HIREDIS_MAJOR >= 1)
static void *
ngx_integrations_redis_create_array(const redisReadTask *task,
    size_t elements)
#else
static void *
ngx_integrations_redis_create_array(const redisReadTask *task, int elements)
#endif
{
    redisReply  *reply;

    reply = ngx_integrations_redis_reply_new(task);
    if (reply == NULL) {
        return NULL;
    }

    if (elements > 0) {
        reply->element = ngx_pcalloc(
                             ngx_integrations_redis_parsing->reply_pool,
                             (size_t) elements * sizeof(redisReply *));
        if (reply->element == NULL) {
            return NULL;
        }
    }

    reply->elements = elements;

    return reply;
}


static void *
ngx_integrations_redis_create_integer(const redisReadTask *task,
    long long value)
{
    redisReply  *reply;

    reply = ngx_integrations_redis_reply_new(task);
    if (reply == NULL) {
        return NULL;
    }

    reply->integer = value;

    return reply;
}


static void *
ngx_integrations_redis_create_nil(const redisReadTask *task)
{
    return ngx_integrations_redis_reply_new(task);
}


/* the pool holds it: released after the reply, or reset on reconnect */

static void
ngx_integrations_redis_free_object(void *reply)
{
}


ngx_integrations_redis_script_t *
ngx_integrations_redis_add_script(ngx_conf_t *cf,
    ngx_integrations_redis_conf_t *rcf, const char *source)
{
    ngx_uint_t                         i;
    ngx_sha1_t                         sha;
    u_char                             md[20];
    ngx_integrations_redis_script_t   *s, **sp;

    sp = rcf->scripts.elts;

    for (i = 0; i < rcf->scripts.nelts; i++) {
        if ((const char *) sp[i]->source.data == source) {
            return sp[i];
        }
    }

    s = ngx_pcalloc(cf->pool, sizeof(ngx_integrations_redis_script_t));
    if (s == NULL) {
        return NULL;
    }

    s->source.data = (u_char *) source;
    s->source.len = ngx_strlen(source);

    ngx_sha1_init(&sha);
    ngx_sha1_update(&sha, s->source.data, s->source.len);
    ngx_sha1_final(md, &sha);
    ngx_hex_dump(s->sha1, md, 20);

    sp = ngx_array_push(&rcf->scripts);
    if (sp == NULL) {
        return NULL;
    }

    *sp = s;

    return s;
}


/* the parameters, in the order of names[] below */
#define NGX_INTEGRATIONS_REDIS_P_PASSWORD  0
#define NGX_INTEGRATIONS_REDIS_P_DB        1
#define NGX_INTEGRATIONS_REDIS_P_PREFIX    2
#define NGX_INTEGRATIONS_REDIS_P_TIMEOUT   3
#define NGX_INTEGRATIONS_REDIS_P_CONNECT   4
#define NGX_INTEGRATIONS_REDIS_P_USER      5


/*
 * integrations_redis <addr> [user=] [password=] [db=] [prefix=]
 * [timeout=] [connect_timeout=]
 */

char *
ngx_integrations_redis_parse(ngx_conf_t *cf,
    ngx_integrations_redis_conf_t *rcf, ngx_str_t *value, ngx_uint_t n)
{
    size_t      len;
    ngx_int_t   db;
    ngx_str_t   s;
    ngx_uint_t  i, k, seen;
    ngx_msec_t  ms;

    /* each parameter once: a second one silently winning is a typo kept */
    static const char  *names[] = {
        "password=", "db=", "prefix=", "timeout=", "connect_timeout=",
        "user=", NULL
    };

    ngx_memzero(&rcf->url, sizeof(ngx_url_t));
    rcf->url.url = value[1];
    rcf->url.default_port = 6379;

    if (ngx_parse_url(cf->pool, &rcf->url) != NGX_OK) {
        if (rcf->url.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis address \"%V\"",
                               rcf->url.err, &rcf->url.url);
        }

        return NGX_CONF_ERROR;
    }

    if (rcf->url.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis address \"%V\" has no address",
                           &rcf->url.url);
        return NGX_CONF_ERROR;
    }

    rcf->name = value[1];
    rcf->db = 0;
    rcf->timeout = 200;
    rcf->connect_timeout = NGX_CONF_UNSET_MSEC;

    seen = 0;

    for (i = 2; i < n; i++) {

        len = 0;

        for (k = 0; names[k]; k++) {
            len = ngx_strlen(names[k]);

            if (value[i].len >= len
                && ngx_strncmp(value[i].data, names[k], len) == 0)
            {
                break;
            }
        }

        if (names[k] == NULL) {
            goto invalid;
        }

        if (seen & (1 << k)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%s\" is given twice", names[k]);
            return NGX_CONF_ERROR;
        }

        seen |= 1 << k;

        /* the value after "name=" */
        s.data = value[i].data + len;
        s.len = value[i].len - len;

        switch (k) {

        case NGX_INTEGRATIONS_REDIS_P_PASSWORD:
            /* no password is said by leaving password= out */
            if (s.len == 0) {
                goto invalid;
            }

            rcf->password = s;
            break;

        case NGX_INTEGRATIONS_REDIS_P_USER:
            /* a Redis 6 ACL user: AUTH user password */
            if (s.len == 0) {
                goto invalid;
            }

            rcf->user = s;
            break;

        case NGX_INTEGRATIONS_REDIS_P_DB:
            db = ngx_atoi(s.data, s.len);
            if (db == NGX_ERROR || db > 65535) {
                goto invalid;
            }

            rcf->db = db;
            break;

        case NGX_INTEGRATIONS_REDIS_P_PREFIX:
            /* a brace would break the hash tags that follow the prefix */
            if (ngx_strlchr(s.data, s.data + s.len, '{')
                || ngx_strlchr(s.data, s.data + s.len, '}'))
            {
                goto invalid;
            }

            rcf->prefix = s;
            break;

        default: /* timeout=, connect_timeout= */
            ms = ngx_parse_time(&s, 0);
            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            /* a request waits this long on a hung Redis, and its client */
            if (ms > NGX_INTEGRATIONS_REDIS_TIMEOUT_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" is over 60s: a request would "
                                   "wait that long for a hung Redis",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            if (k == NGX_INTEGRATIONS_REDIS_P_TIMEOUT) {
                rcf->timeout = ms;

            } else {
                rcf->connect_timeout = ms;
            }
        }
    }

    if (rcf->connect_timeout == NGX_CONF_UNSET_MSEC) {
        rcf->connect_timeout = rcf->timeout;
    }

    if (rcf->user.len && rcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"user=\" needs \"password=\" (AUTH user "
                           "password)");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_integrations_redis_init_worker(ngx_cycle_t *cycle,
    ngx_integrations_redis_conf_t *rcf)
{
    ngx_integrations_redis_t  *rc;

    rc = ngx_calloc(sizeof(ngx_integrations_redis_t), cycle->log);
    if (rc == NULL) {
        return NGX_ERROR;
    }

    rc->out = ngx_alloc(NGX_INTEGRATIONS_REDIS_OUT_SIZE, cycle->log);
    if (rc->out == NULL) {
        ngx_free(rc);
        return NGX_ERROR;
    }

    rc->out_size = NGX_INTEGRATIONS_REDIS_OUT_SIZE;
    rc->conf = rcf;
    rc->log = cycle->log;

    ngx_queue_init(&rc->pending);
    ngx_queue_init(&rc->free);

    rc->timeout_ev.handler = ngx_integrations_redis_timeout_handler;
    rc->timeout_ev.data = rc;
    rc->timeout_ev.log = cycle->log;

    rc->reconnect_ev.handler = ngx_integrations_redis_reconnect_handler;
    rc->reconnect_ev.data = rc;
    rc->reconnect_ev.log = cycle->log;
    /* an idle reconnect timer must not hold up a graceful shutdown */
    rc->reconnect_ev.cancelable = 1;

    rcf->conn = rc;

    ngx_integrations_redis_connect(rc);

    return NGX_OK;
}


void
ngx_integrations_redis_exit_worker(ngx_integrations_redis_conf_t *rcf)
{
    ngx_queue_t                       *q;
    ngx_integrations_redis_t          *rc;
    ngx_integrations_redis_pending_t  *p;

    rc = rcf->conn;
    if (rc == NULL) {
        return;
    }

    if (rc->c) {
        ngx_close_connection(rc->c);
        rc->c = NULL;
    }

    if (rc->timeout_ev.timer_set) {
        ngx_del_timer(&rc->timeout_ev);
    }

    if (rc->reconnect_ev.timer_set) {
        ngx_del_timer(&rc->reconnect_ev);
    }

    while (!ngx_queue_empty(&rc->pending)) {
        q = ngx_queue_head(&rc->pending);
        ngx_queue_remove(q);
        p = ngx_queue_data(q, ngx_integrations_redis_pending_t, queue);
        if (p->cmd) {
            p->cmd->pending = NULL;
        }
        ngx_free(p);
    }

    while (!ngx_queue_empty(&rc->free)) {
        q = ngx_queue_head(&rc->free);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_integrations_redis_pending_t, queue));
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
    }

    if (rc->reply_pool) {
        ngx_destroy_pool(rc->reply_pool);
    }

    ngx_free(rc->out);
    ngx_free(rc);
    rcf->conn = NULL;
}


static void
ngx_integrations_redis_connect(ngx_integrations_redis_t *rc)
{
    int                               tcp_nodelay;
    char                              db[NGX_INT_T_LEN];
    size_t                            dblen;
    ngx_int_t                         rv;
    ngx_uint_t                        i, n;
    const char                       *argv[3];
    size_t                            argvlen[3];
    ngx_connection_t                 *c;
    ngx_integrations_redis_conf_t    *rcf;
    ngx_integrations_redis_script_t **sp;

    rcf = rc->conf;

    ngx_memzero(&rc->peer, sizeof(ngx_peer_connection_t));
    rc->peer.sockaddr = rcf->url.addrs[0].sockaddr;
    rc->peer.socklen = rcf->url.addrs[0].socklen;
    rc->peer.name = &rcf->url.addrs[0].name;
    rc->peer.get = ngx_event_get_peer;
    rc->peer.log = rc->log;
    rc->peer.log_error = NGX_ERROR_ERR;

    rv = ngx_event_connect_peer(&rc->peer);

    if (rv == NGX_ERROR || rv == NGX_BUSY || rv == NGX_DECLINED) {
        if (rc->peer.connection) {
            ngx_close_connection(rc->peer.connection);
        }

        ngx_integrations_redis_fail(rc, "connect failed");
        return;
    }

    c = rc->peer.connection;
    c->data = rc;
    c->read->handler = ngx_integrations_redis_read_handler;
    c->write->handler = ngx_integrations_redis_write_handler;
    c->log = rc->log;
    c->read->log = rc->log;
    c->write->log = rc->log;
    rc->c = c;
    rc->read_posted = 0;
    rc->served = 0;

    if (rc->peer.sockaddr->sa_family != AF_UNIX) {
        tcp_nodelay = 1;
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY,
                          (const void *) &tcp_nodelay, sizeof(int));
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
    }

    /*
     * A reply the old reader left half parsed. No reply is being handled:
     * connecting happens at worker start, on the reconnect timer, or
     * after an idle close, with nothing in flight.
     */
    if (rc->reply_pool) {
        ngx_reset_pool(rc->reply_pool);
    }

    rc->reader = redisReaderCreateWithFunctions(
                     &ngx_integrations_redis_reply_functions);
    if (rc->reader == NULL) {
        ngx_integrations_redis_fail(rc, "out of memory");
        return;
    }

    rc->out_pos = 0;
    rc->out_len = 0;
    rc->state = (rv == NGX_AGAIN) ? NGX_INTEGRATIONS_REDIS_CONNECTING
                                  : NGX_INTEGRATIONS_REDIS_UP;

    ngx_integrations_stat(redis_connects);

    /* the handshake goes first in the pipeline; requests queue after it */

    if (rcf->password.len) {
        n = 0;
        argv[n] = "AUTH";
        argvlen[n++] = 4;

        if (rcf->user.len) {
            argv[n] = (const char *) rcf->user.data;
            argvlen[n++] = rcf->user.len;
        }

        argv[n] = (const char *) rcf->password.data;
        argvlen[n++] = rcf->password.len;

        if (ngx_integrations_redis_append(rc, NGX_INTEGRATIONS_REDIS_AUTH,
                                          NULL, n, argv, argvlen)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (rcf->db) {
        dblen = ngx_sprintf((u_char *) db, "%i", rcf->db) - (u_char *) db;
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = db;
        argvlen[1] = dblen;

        if (ngx_integrations_redis_append(rc, NGX_INTEGRATIONS_REDIS_SELECT,
                                          NULL, 2, argv, argvlen)
            != NGX_OK)
        {
            goto failed;
        }
    }

    sp = rcf->scripts.elts;

    for (i = 0; i < rcf->scripts.nelts; i++) {
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = (const char *) sp[i]->source.data;
        argvlen[2] = sp[i]->source.len;

        if (ngx_integrations_redis_append(rc, NGX_INTEGRATIONS_REDIS_LOAD,
                                          NULL, 3, argv, argvlen)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (rv == NGX_AGAIN) {
        ngx_add_timer(c->write, rcf->connect_timeout);
        return;
    }

    ngx_integrations_redis_write_handler(c->write);

    return;

failed:

    ngx_integrations_redis_fail(rc, "out of memory");
}


/* closes the connection, fails every caller, schedules a reconnect */

/* the connection closed, its output dropped, its timer off: "down" */

static void
ngx_integrations_redis_close(ngx_integrations_redis_t *rc)
{
    rc->state = NGX_INTEGRATIONS_REDIS_DOWN;

    if (rc->c) {
        ngx_close_connection(rc->c);
        rc->c = NULL;
    }

    rc->out_pos = 0;
    rc->out_len = 0;

    if (rc->timeout_ev.timer_set) {
        ngx_del_timer(&rc->timeout_ev);
    }
}


static void
ngx_integrations_redis_fail(ngx_integrations_redis_t *rc, const char *why)
{
    ngx_msec_t                         delay;
    ngx_queue_t                       *q, failed;
    ngx_integrations_redis_cmd_t      *cmd;
    ngx_integrations_redis_pending_t  *p;

    if (rc->state != NGX_INTEGRATIONS_REDIS_DOWN || rc->backoff == 0) {
        ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                      "integrations redis \"%V\": %s",
                      &rc->conf->name, why);
    }

    ngx_integrations_stat(redis_failures);

    ngx_integrations_redis_close(rc);

    /* handlers may queue new commands; they will see the state "down" */

    ngx_queue_init(&failed);

    if (!ngx_queue_empty(&rc->pending)) {
        failed = rc->pending;
        failed.next->prev = &failed;
        failed.prev->next = &failed;
        ngx_queue_init(&rc->pending);
    }

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&rc->free, q);

        p = ngx_queue_data(q, ngx_integrations_redis_pending_t, queue);
        cmd = p->cmd;
        p->cmd = NULL;

        if (cmd) {
            cmd->pending = NULL;
            cmd->handler(cmd->data, NULL);
        }
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    rc->backoff = rc->backoff ? ngx_min(rc->backoff * 2,
                                        NGX_INTEGRATIONS_REDIS_BACKOFF_MAX)
                              : NGX_INTEGRATIONS_REDIS_BACKOFF_MIN;

    /* jitter, so that the workers of many nodes do not reconnect at once */
    delay = rc->backoff - rc->backoff / 4
            + (ngx_msec_t) ngx_random() % (rc->backoff / 2 + 1);

    if (!rc->reconnect_ev.timer_set) {
        ngx_add_timer(&rc->reconnect_ev, delay);
    }
}


static void
ngx_integrations_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_integrations_redis_t  *rc;

    rc = ev->data;

    if (rc->state == NGX_INTEGRATIONS_REDIS_DOWN) {
        ngx_integrations_redis_connect(rc);
    }
}


static void
ngx_integrations_redis_timeout_handler(ngx_event_t *ev)
{
    ngx_msec_int_t                     left;
    ngx_integrations_redis_t          *rc;
    ngx_integrations_redis_pending_t  *p;

    rc = ev->data;

    if (ngx_queue_empty(&rc->pending)) {
        return;
    }

    p = ngx_queue_data(ngx_queue_head(&rc->pending),
                       ngx_integrations_redis_pending_t, queue);

    left = (ngx_msec_int_t) (p->deadline - ngx_current_msec);

    if (left > 0) {
        ngx_add_timer(ev, (ngx_msec_t) left);
        return;
    }

    if (rc->read_posted) {
        /* replies arrived in this turn and are read right after timers */
        ngx_add_timer(ev, 1);
        return;
    }

    ngx_integrations_stat(redis_timeouts);
    ngx_integrations_redis_fail(rc, "timed out");
}


static ngx_int_t
ngx_integrations_redis_reserve(ngx_integrations_redis_t *rc, size_t len)
{
    u_char  *out;
    size_t   size;

    if (rc->out_pos && rc->out_pos == rc->out_len) {
        rc->out_pos = 0;
        rc->out_len = 0;
    }

    if (rc->out_size - rc->out_len >= len) {
        return NGX_OK;
    }

    /* compact first, grow if that is not enough */

    if (rc->out_pos) {
        ngx_memmove(rc->out, rc->out + rc->out_pos,
                    rc->out_len - rc->out_pos);
        rc->out_len -= rc->out_pos;
        rc->out_pos = 0;

        if (rc->out_size - rc->out_len >= len) {
            return NGX_OK;
        }
    }

    size = rc->out_size;

    while (size - rc->out_len < len) {
        size *= 2;
    }

    out = ngx_alloc(size, rc->log);
    if (out == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out, rc->out, rc->out_len);
    ngx_free(rc->out);
    rc->out = out;
    rc->out_size = size;

    return NGX_OK;
}


/* n in decimal, then CRLF */

static u_char *
ngx_integrations_redis_uint(u_char *w, size_t n)
{
    w = ngx_integrations_decimal(w, (int64_t) n);
    *w++ = CR;
    *w++ = LF;

    return w;
}


static ngx_int_t
ngx_integrations_redis_append(ngx_integrations_redis_t *rc,
    ngx_integrations_redis_kind_e kind, ngx_integrations_redis_cmd_t *cmd,
    int argc, const char **argv, const size_t *argvlen)
{
    int                                i;
    size_t                             len;
    u_char                            *w;
    ngx_queue_t                       *q;
    ngx_integrations_redis_pending_t  *p;

    /* RESP written in place: no allocation, no printf, per command */

    len = 1 + NGX_INT_T_LEN + 2;

    for (i = 0; i < argc; i++) {
        len += 1 + NGX_SIZE_T_LEN + 2 + argvlen[i] + 2;
    }

    if (ngx_integrations_redis_reserve(rc, len) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_queue_empty(&rc->free)) {
        q = ngx_queue_head(&rc->free);
        ngx_queue_remove(q);
        p = ngx_queue_data(q, ngx_integrations_redis_pending_t, queue);

    } else {
        p = ngx_alloc(sizeof(ngx_integrations_redis_pending_t), rc->log);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    w = (u_char *) rc->out + rc->out_len;
    *w++ = '*';
    w = ngx_integrations_redis_uint(w, (size_t) argc);

    for (i = 0; i < argc; i++) {
        *w++ = '$';
        w = ngx_integrations_redis_uint(w, argvlen[i]);

        if (argvlen[i]) {
            w = ngx_cpymem(w, argv[i], argvlen[i]);
        }

        *w++ = CR;
        *w++ = LF;
    }

    rc->out_len = w - (u_char *) rc->out;

    p->cmd = cmd;
    p->kind = kind;
    p->deadline = ngx_current_msec + rc->conf->timeout;

    if (cmd) {
        cmd->pending = p;
    }

    ngx_queue_insert_tail(&rc->pending, &p->queue);

    if (!rc->timeout_ev.timer_set) {
        ngx_add_timer(&rc->timeout_ev, rc->conf->timeout);
    }

    /* requests' commands: a handshake to a Redis that is down is no load */
    if (kind == NGX_INTEGRATIONS_REDIS_USER) {
        ngx_integrations_stat(redis_commands);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_integrations_redis_append_cmd(ngx_integrations_redis_t *rc,
    ngx_integrations_redis_cmd_t *cmd, ngx_uint_t eval)
{
    int          argc;
    u_char       nkeys[NGX_INT64_LEN];
    size_t       argvlen[NGX_INTEGRATIONS_REDIS_MAX_ARGS + 3];
    ngx_uint_t   i;
    const char  *argv[NGX_INTEGRATIONS_REDIS_MAX_ARGS + 3];

    if (cmd->nargs > NGX_INTEGRATIONS_REDIS_MAX_ARGS) {
        return NGX_ERROR;
    }

    argc = 0;

    if (cmd->script) {
        if (eval) {
            argv[0] = "EVAL";
            argvlen[0] = 4;
            argv[1] = (const char *) cmd->script->source.data;
            argvlen[1] = cmd->script->source.len;

        } else {
            argv[0] = "EVALSHA";
            argvlen[0] = 7;
            argv[1] = (const char *) cmd->script->sha1;
            argvlen[1] = 40;
        }

        argv[2] = (const char *) nkeys;
        argvlen[2] = ngx_integrations_decimal(nkeys, (int64_t) cmd->nkeys)
                     - nkeys;
        argc = 3;
    }

    for (i = 0; i < cmd->nargs; i++) {
        argv[argc] = (const char *) cmd->args[i].data;
        argvlen[argc] = cmd->args[i].len;
        argc++;
    }

    return ngx_integrations_redis_append(rc, NGX_INTEGRATIONS_REDIS_USER, cmd,
                                         argc, argv, argvlen);
}


ngx_int_t
ngx_integrations_redis_send(ngx_integrations_redis_conf_t *rcf,
    ngx_integrations_redis_cmd_t *cmd)
{
    ngx_integrations_redis_t  *rc;

    rc = rcf->conn;

    if (rc == NULL || rc->state == NGX_INTEGRATIONS_REDIS_DOWN) {
        return NGX_DECLINED;
    }

    if (ngx_integrations_redis_append_cmd(rc, cmd, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    /* flush once per event loop turn: queued commands leave together */
    if (rc->state == NGX_INTEGRATIONS_REDIS_UP && !rc->c->write->posted) {
        ngx_post_event(rc->c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_integrations_redis_cancel(ngx_integrations_redis_cmd_t *cmd)
{
    ngx_integrations_redis_pending_t  *p;

    p = cmd->pending;

    if (p) {
        p->cmd = NULL;
        cmd->pending = NULL;
    }
}


static void
ngx_integrations_redis_cleanup(void *data)
{
    ngx_integrations_redis_cancel(data);
}


ngx_int_t
ngx_integrations_redis_send_r(ngx_http_request_t *r,
    ngx_integrations_redis_conf_t *rcf, ngx_integrations_redis_cmd_t *cmd)
{
    ngx_int_t            rv;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    rv = ngx_integrations_redis_send(rcf, cmd);

    if (rv == NGX_OK) {
        cln->handler = ngx_integrations_redis_cleanup;
        cln->data = cmd;
    }

    return rv;
}


static void
ngx_integrations_redis_write_handler(ngx_event_t *wev)
{
    int                        err;
    ssize_t                    n;
    socklen_t                  len;
    ngx_connection_t          *c;
    ngx_integrations_redis_t  *rc;

    c = wev->data;
    rc = c->data;

    if (rc->state == NGX_INTEGRATIONS_REDIS_CONNECTING) {

        if (wev->timedout) {
            ngx_integrations_redis_fail(rc, "connect timed out");
            return;
        }

        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_ERR, rc->log, err,
                          "integrations redis connect() to %V failed",
                          rc->peer.name);
            ngx_integrations_redis_fail(rc, "connect failed");
            return;
        }

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        rc->state = NGX_INTEGRATIONS_REDIS_UP;
    }

    while (rc->out_pos < rc->out_len) {
        n = c->send(c, rc->out + rc->out_pos, rc->out_len - rc->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_integrations_redis_fail(rc, "send failed");
            return;
        }

        rc->out_pos += n;
    }

    if (rc->out_pos == rc->out_len) {
        rc->out_pos = 0;
        rc->out_len = 0;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_integrations_redis_fail(rc, "event error");
    }
}


static void
ngx_integrations_redis_read_handler(ngx_event_t *rev)
{
    ssize_t                    n;
    void                      *reply;
    ngx_connection_t          *c;
    ngx_integrations_redis_t  *rc;

    static u_char              buf[16384];

    c = rev->data;
    rc = c->data;

    if (rc->state == NGX_INTEGRATIONS_REDIS_CONNECTING) {
        /* an error on connect may be reported on the read side */
        ngx_integrations_redis_write_handler(c->write);
        if (rc->c != c) {
            return;
        }
    }

    /*
     * Replies are dispatched after this turn's other events: the requests
     * read in this turn are queued first, and leave before the responses
     * are written, so Redis works on them meanwhile.
     */
    if (rc->state == NGX_INTEGRATIONS_REDIS_UP) {

        if (!rc->read_posted) {
            rc->read_posted = 1;
            ngx_post_event(rev, &ngx_posted_events);
            return;
        }

        rc->read_posted = 0;

        if (rc->out_len) {
            ngx_integrations_redis_write_handler(c->write);

            if (rc->c != c) {
                return;
            }
        }
    }

    while (rev->ready) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 && rc->served && ngx_queue_empty(&rc->pending)) {
            /*
             * Redis's "timeout" (or a proxy's) closed a connection with
             * nothing in flight: no failure, and no fail-fast window
             */
            ngx_log_error(NGX_LOG_INFO, rc->log, 0,
                          "integrations redis \"%V\": closed while idle, "
                          "reconnecting", &rc->conf->name);

            ngx_integrations_redis_close(rc);
            ngx_integrations_redis_connect(rc);
            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_integrations_redis_fail(rc, n == 0 ? "connection closed"
                                                   : "recv failed");
            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_integrations_redis_fail(rc, "out of memory");
            return;
        }

        for ( ;; ) {
            reply = NULL;
            ngx_integrations_redis_parsing = rc;

            if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
                ngx_integrations_redis_fail(rc, "protocol error");
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_integrations_redis_replying = rc;
            ngx_integrations_redis_dispatch(rc, reply);
            ngx_integrations_redis_replying = NULL;
            ngx_integrations_redis_release(rc);

            if (rc->c != c) {
                /* failed while dispatching */
                return;
            }
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_integrations_redis_fail(rc, "event error");
    }
}


static void
ngx_integrations_redis_dispatch(ngx_integrations_redis_t *rc,
    redisReply *reply)
{
    ngx_queue_t                       *q;
    ngx_integrations_redis_cmd_t      *cmd;
    ngx_integrations_redis_pending_t  *p, *next;

    if (ngx_queue_empty(&rc->pending)) {
        ngx_integrations_redis_fail(rc, "unexpected reply");
        return;
    }

    q = ngx_queue_head(&rc->pending);
    ngx_queue_remove(q);
    ngx_queue_insert_tail(&rc->free, q);

    p = ngx_queue_data(q, ngx_integrations_redis_pending_t, queue);
    cmd = p->cmd;
    p->cmd = NULL;

    if (p->kind != NGX_INTEGRATIONS_REDIS_USER) {

        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, rc->log, 0,
                          "integrations redis \"%V\": %s failed: %*s",
                          &rc->conf->name,
                          p->kind == NGX_INTEGRATIONS_REDIS_AUTH ? "AUTH"
                          : p->kind == NGX_INTEGRATIONS_REDIS_SELECT
                            ? "SELECT" : "SCRIPT LOAD",
                          (size_t) reply->len, reply->str);
            /* keep backing off: a wrong password will not heal by itself */
            ngx_integrations_redis_fail(rc, "handshake failed");
            return;
        }

        /*
         * only the handshake's last reply proves the connection good: an
         * AUTH that passed before a SELECT that fails must not reset it
         */
        next = ngx_queue_empty(&rc->pending)
               ? NULL
               : ngx_queue_data(ngx_queue_head(&rc->pending),
                                ngx_integrations_redis_pending_t, queue);

        if (next == NULL || next->kind == NGX_INTEGRATIONS_REDIS_USER) {
            rc->backoff = 0;
        }

        return;
    }

    /* counted as the commands are: those of requests */
    ngx_integrations_stat(redis_replies);

    if (cmd == NULL) {
        return;
    }

    cmd->pending = NULL;

    if (reply->type == REDIS_REPLY_ERROR && cmd->script
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* the script cache was flushed: send the source this once */
        if (ngx_integrations_redis_append_cmd(rc, cmd, 1) != NGX_OK) {
            cmd->handler(cmd->data, NULL);
            return;
        }

        if (!rc->c->write->posted) {
            ngx_post_event(rc->c->write, &ngx_posted_events);
        }

        return;
    }

    rc->backoff = 0;
    rc->served = 1;

    /* the handler may finalize the request and free cmd with it */
    cmd->handler(cmd->data, reply);
}


ngx_int_t
ngx_integrations_redis_key(ngx_pool_t *pool,
    ngx_integrations_redis_conf_t *rcf, ngx_str_t *out, ngx_str_t *parts,
    ngx_uint_t n)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    len = rcf->prefix.len;

    for (i = 0; i < n; i++) {
        len += parts[i].len;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;

    if (rcf->prefix.len) {
        p = ngx_cpymem(p, rcf->prefix.data, rcf->prefix.len);
    }

    for (i = 0; i < n; i++) {
        if (parts[i].len) {
            p = ngx_cpymem(p, parts[i].data, parts[i].len);
        }
    }

    return NGX_OK;
}
