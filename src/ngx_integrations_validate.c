/*
 * Writes: integrations_validate checks a request body with jansson before
 * anything goes upstream; integrations_cors answers preflights and adds
 * CORS headers; in either kind of location nginx's own HTML error pages
 * (413, 502, 504, ...) become JSON.
 *
 * The body is read in the PRECONTENT phase, after the access phase, so a
 * key without the location's scope is refused before its body is read.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_json.h"


typedef struct {
    ngx_int_t                  status;      /* NGX_DONE while reading */
    unsigned                   json_error:1;
    unsigned                   json_sent:1;
} ngx_integrations_validate_ctx_t;


typedef struct {
    json_t                    *details;
    ngx_uint_t                 conditional; /* failures that are 422 */
    ngx_uint_t                 other;
} ngx_integrations_validate_result_t;


static ngx_int_t ngx_integrations_validate_handler(ngx_http_request_t *r);
static void ngx_integrations_validate_body(ngx_http_request_t *r);
static ngx_int_t ngx_integrations_cors_preflight(ngx_http_request_t *r);
static ngx_int_t ngx_integrations_validate_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_integrations_validate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_regex_t  *ngx_integrations_iso_re;
static ngx_regex_t  *ngx_integrations_currency_re;
static ngx_regex_t  *ngx_integrations_slug_re;

static const char  *ngx_integrations_visibility[] = {
    "PUBLIC", "UNLISTED", "PRIVATE", NULL
};

static const char  *ngx_integrations_category[] = {
    "COMEDY", "MUSIC", "CONFERENCE", "WORKSHOP", "THEATER", "SPORTS",
    "OTHER", NULL
};


char *
ngx_integrations_validate_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_integrations_loc_conf_t *ilcf = conf;

    ngx_str_t  *value;

    if (ilcf->validate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "event_create") == 0) {
        ilcf->validate = NGX_INTEGRATIONS_VALIDATE_EVENT_CREATE;

    } else if (ngx_strcmp(value[1].data, "event_update") == 0) {
        ilcf->validate = NGX_INTEGRATIONS_VALIDATE_EVENT_UPDATE;

    } else if (ngx_strcmp(value[1].data, "checkin") == 0) {
        ilcf->validate = NGX_INTEGRATIONS_VALIDATE_CHECKIN;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid schema \"%V\", expected event_create, "
                           "event_update or checkin", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_regex_t *
ngx_integrations_validate_regex(ngx_conf_t *cf, const char *pattern)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t  rc;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern.data = (u_char *) pattern;
    rc.pattern.len = ngx_strlen(pattern);
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NULL;
    }

    return rc.regex;
}


ngx_int_t
ngx_integrations_validate_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    /* compiled once, at configuration time */
    ngx_integrations_iso_re = ngx_integrations_validate_regex(cf,
        "^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])"
        "T([01]\\d|2[0-3]):[0-5]\\d(:[0-5]\\d(\\.\\d{1,9})?)?"
        "(Z|[+-]([01]\\d|2[0-3]):?[0-5]\\d)$");
    ngx_integrations_currency_re = ngx_integrations_validate_regex(cf,
        "^[A-Z]{3}$");
    ngx_integrations_slug_re = ngx_integrations_validate_regex(cf,
        "^[a-z0-9][a-z0-9-]{0,127}$");

    if (ngx_integrations_iso_re == NULL
        || ngx_integrations_currency_re == NULL
        || ngx_integrations_slug_re == NULL)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_integrations_cors_preflight;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_integrations_validate_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_integrations_validate_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_integrations_validate_body_filter;

    return NGX_OK;
}


/* -- the rules ------------------------------------------------------------ */

static void
ngx_integrations_fail(ngx_integrations_validate_result_t *res,
    const char *field, const char *message, ngx_uint_t conditional)
{
    json_t  *d;

    d = json_object();
    json_object_set_new(d, "field", json_string(field));
    json_object_set_new(d, "message", json_string(message));
    json_array_append_new(res->details, d);

    if (conditional) {
        res->conditional++;

    } else {
        res->other++;
    }
}


static ngx_int_t
ngx_integrations_match(ngx_regex_t *re, const char *s)
{
    ngx_str_t  str;

    str.data = (u_char *) s;
    str.len = ngx_strlen(s);

    return ngx_regex_exec(re, &str, NULL, 0) >= 0;
}


static void
ngx_integrations_check_time(ngx_integrations_validate_result_t *res,
    json_t *obj, const char *f, ngx_uint_t required)
{
    json_t  *v;

    v = json_object_get(obj, f);

    if (v == NULL || json_is_null(v)) {
        if (required) {
            ngx_integrations_fail(res, f, "is required", 0);
        }
        return;
    }

    if (!json_is_string(v)
        || !ngx_integrations_match(ngx_integrations_iso_re,
                                   json_string_value(v)))
    {
        ngx_integrations_fail(res, f, "must be an ISO-8601 date-time, e.g. "
                              "2026-09-01T19:00:00Z", 0);
    }
}


static void
ngx_integrations_check_enum(ngx_integrations_validate_result_t *res,
    json_t *obj, const char *f, const char **values, const char *message)
{
    ngx_uint_t   i;
    const char  *s;
    json_t      *v;

    v = json_object_get(obj, f);
    if (v == NULL) {
        return;
    }

    if (json_is_string(v)) {
        s = json_string_value(v);

        for (i = 0; values[i]; i++) {
            if (ngx_strcmp(s, values[i]) == 0) {
                return;
            }
        }
    }

    ngx_integrations_fail(res, f, message, 0);
}


static void
ngx_integrations_check_count(ngx_integrations_validate_result_t *res,
    json_t *obj, const char *path, const char *f, ngx_uint_t required)
{
    char     field[128];
    json_t  *v;

    ngx_snprintf((u_char *) field, sizeof(field) - 1, "%s%s%Z", path, f);

    v = json_object_get(obj, f);

    if (v == NULL) {
        if (required) {
            ngx_integrations_fail(res, field, "is required", 0);
        }
        return;
    }

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        ngx_integrations_fail(res, field, "must be a non-negative integer "
                              "(prices in integer cents)", 0);
    }
}


static void
ngx_integrations_check_ticket(ngx_integrations_validate_result_t *res,
    json_t *t, const char *path)
{
    char     field[128];
    json_t  *v;

    if (!json_is_object(t)) {
        ngx_integrations_fail(res, path, "must be an object", 0);
        return;
    }

    ngx_snprintf((u_char *) field, sizeof(field) - 1, "%s.name%Z", path);
    v = json_object_get(t, "name");

    if (!json_is_string(v) || json_string_length(v) == 0) {
        ngx_integrations_fail(res, field, "is required (a non-empty string)",
                              0);
    }

    ngx_snprintf((u_char *) field, sizeof(field) - 1, "%s.%Z", path);
    ngx_integrations_check_count(res, t, field, "price", 1);
    ngx_integrations_check_count(res, t, field, "quantity", 1);
}


static void
ngx_integrations_check_event(ngx_integrations_validate_result_t *res,
    json_t *obj, ngx_uint_t create)
{
    char     path[64];
    size_t   i;
    json_t  *v, *t;

    if (json_object_get(obj, "status")) {
        ngx_integrations_fail(res, "status", "Status changes are not "
                              "accepted", 0);
    }

    v = json_object_get(obj, "title");
    if (create || v) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            ngx_integrations_fail(res, "title", create ? "is required"
                                  : "must be a non-empty string", 0);
        }
    }

    ngx_integrations_check_time(res, obj, "startsAt", create);
    ngx_integrations_check_time(res, obj, "endsAt", 0);
    ngx_integrations_check_time(res, obj, "doorsOpen", 0);

    v = json_object_get(obj, "currency");
    if (v && (!json_is_string(v)
              || !ngx_integrations_match(ngx_integrations_currency_re,
                                         json_string_value(v))))
    {
        ngx_integrations_fail(res, "currency", "must be a three-letter "
                              "currency code, e.g. USD", 0);
    }

    ngx_integrations_check_enum(res, obj, "visibility",
                                ngx_integrations_visibility,
                                "must be PUBLIC, UNLISTED or PRIVATE");
    ngx_integrations_check_enum(res, obj, "category",
                                ngx_integrations_category,
                                "must be COMEDY, MUSIC, CONFERENCE, "
                                "WORKSHOP, THEATER, SPORTS or OTHER");

    v = json_object_get(obj, "timezone");
    if (v && !json_is_string(v)) {
        ngx_integrations_fail(res, "timezone", "must be a string", 0);
    }

    v = json_object_get(obj, "ticketTypes");
    if (v) {
        if (!json_is_array(v)) {
            ngx_integrations_fail(res, "ticketTypes", "must be an array", 0);

        } else {
            json_array_foreach(v, i, t) {
                ngx_snprintf((u_char *) path, sizeof(path) - 1,
                             "ticketTypes[%uz]%Z", i);
                ngx_integrations_check_ticket(res, t, path);
            }
        }
    }

    if (create) {
        return;
    }

    v = json_object_get(obj, "slug");
    if (v && (!json_is_string(v)
              || !ngx_integrations_match(ngx_integrations_slug_re,
                                         json_string_value(v))))
    {
        ngx_integrations_fail(res, "slug", "must match [a-z0-9][a-z0-9-]*",
                              0);
    }

    v = json_object_get(obj, "addTicketType");
    if (v) {
        ngx_integrations_check_ticket(res, v, "addTicketType");
    }

    v = json_object_get(obj, "removeTicketTypeId");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
        ngx_integrations_fail(res, "removeTicketTypeId",
                              "must be a ticket type id", 0);
    }

    if (json_object_size(obj) == 0) {
        ngx_integrations_fail(res, "body", "has no field to update", 0);
    }
}


static void
ngx_integrations_check_checkin(ngx_integrations_validate_result_t *res,
    json_t *obj)
{
    json_t  *enter;

    enter = json_object_get(obj, "enter");

    if (enter == NULL) {
        ngx_integrations_fail(res, "enter", "is required (1 to mark as "
                              "entered, 0 to revert)", 0);

    } else if (!json_is_integer(enter)
               || (json_integer_value(enter) != 0
                   && json_integer_value(enter) != 1))
    {
        ngx_integrations_fail(res, "enter", "must be 0 or 1", 0);
    }

    if (json_is_integer(enter) && json_integer_value(enter) == 1) {
        if (json_object_get(obj, "entry_date") == NULL
            || json_is_null(json_object_get(obj, "entry_date")))
        {
            ngx_integrations_fail(res, "entry_date", "is required when "
                                  "enter is 1", 1);
            return;
        }
    }

    ngx_integrations_check_time(res, obj, "entry_date", 0);
}


/* -- reading and judging the body --------------------------------------- */

static ngx_int_t
ngx_integrations_validate_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_integrations_validate_ctx_t   *ctx;
    ngx_http_integrations_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (ilcf->validate == NGX_INTEGRATIONS_VALIDATE_NONE || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);

    if (ctx && ctx->status != NGX_DONE) {
        return ctx->status;
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_integrations_validate_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_integrations_module);
    }

    ctx->status = NGX_DONE;

    /* keep it whole in memory when it fits client_body_buffer_size */
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_integrations_validate_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static u_char *
ngx_integrations_validate_bytes(ngx_http_request_t *r, size_t *len)
{
    u_char       *p, *data;
    off_t         size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            size += b->last - b->pos;

        } else if (b->in_file && b->file) {
            size += b->file_last - b->file_pos;
        }
    }

    *len = (size_t) size;

    data = ngx_pnalloc(r->pool, size + 1);
    if (data == NULL) {
        return NULL;
    }

    p = data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        /* an empty body is a buffer with neither memory nor file */
        if (!b->in_file || b->file == NULL) {
            continue;
        }

        /* a large body went to a temporary file */
        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);
        if (n != b->file_last - b->file_pos) {
            return NULL;
        }

        p += n;
    }

    return data;
}


static void
ngx_integrations_validate_body(ngx_http_request_t *r)
{
    char                               *out;
    size_t                              len;
    u_char                             *data;
    json_t                             *obj, *body;
    ngx_int_t                           rc;
    ngx_uint_t                          status;
    json_error_t                        err;
    ngx_integrations_validate_ctx_t    *ctx;
    ngx_http_integrations_loc_conf_t   *ilcf;
    ngx_integrations_validate_result_t  res;

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);
    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (r->request_body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    data = ngx_integrations_validate_bytes(r, &len);
    if (data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    res.details = json_array();
    res.conditional = 0;
    res.other = 0;

    obj = NULL;

    if (len == 0) {
        ngx_integrations_fail(&res, "body", "is empty; a JSON object is "
                              "expected", 0);

    } else {
        obj = json_loadb((char *) data, len, JSON_REJECT_DUPLICATES, &err);

        if (obj == NULL) {
            ngx_integrations_fail(&res, "body", err.text, 0);

        } else if (!json_is_object(obj)) {
            ngx_integrations_fail(&res, "body", "must be a JSON object", 0);

        } else if (ilcf->validate == NGX_INTEGRATIONS_VALIDATE_CHECKIN) {
            ngx_integrations_check_checkin(&res, obj);

        } else {
            ngx_integrations_check_event(&res, obj, ilcf->validate
                                    == NGX_INTEGRATIONS_VALIDATE_EVENT_CREATE);
        }
    }

    json_decref(obj);

    if (res.conditional + res.other == 0) {
        json_decref(res.details);

        /* the body stays as read, for proxy_pass to send byte for byte */
        ctx->status = NGX_DECLINED;
        r->preserve_body = 1;
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    /* only conditional requirements missing: 422, as Fourvenues does */
    status = res.other ? NGX_HTTP_BAD_REQUEST : 422;

    body = json_object();
    json_object_set_new(body, "error", json_string("Validation failed"));
    json_object_set_new(body, "details", res.details);
    out = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);

    if (out == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->status = NGX_DONE;
    rc = ngx_integrations_json_send(r, status, (u_char *) out,
                                    ngx_strlen(out));
    free(out);

    ngx_http_finalize_request(r, rc);
}


/* -- CORS ----------------------------------------------------------------- */

static ngx_table_elt_t *
ngx_integrations_header_in(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


static ngx_int_t
ngx_integrations_cors_add(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_str_t  v;

    v.data = (u_char *) value;
    v.len = ngx_strlen(value);

    return ngx_integrations_json_header(r, name, &v);
}


static ngx_int_t
ngx_integrations_cors_preflight(ngx_http_request_t *r)
{
    u_char                            *p;
    ngx_int_t                          rc;
    ngx_str_t                          keys, allow;
    ngx_http_integrations_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (!ilcf->cors || r->method != NGX_HTTP_OPTIONS || r != r->main
        || ngx_integrations_header_in(r, "Origin") == NULL
        || ngx_integrations_header_in(r, "Access-Control-Request-Method")
           == NULL)
    {
        return NGX_DECLINED;
    }

    /* a preflight carries no key: answered here, before the access phase */

    if (ngx_http_apikey_header_names(r, &keys) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow.data = ngx_pnalloc(r->pool, keys.len + sizeof("Content-Type, "));
    if (allow.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(allow.data, "Content-Type, ", 14);
    p = ngx_cpymem(p, keys.data, keys.len);
    allow.len = p - allow.data;

    if (ngx_integrations_cors_add(r, "Access-Control-Allow-Methods",
                                  "GET, POST, PATCH, PUT, OPTIONS") != NGX_OK
        || ngx_integrations_json_header(r, "Access-Control-Allow-Headers",
                                        &allow) != NGX_OK
        || ngx_integrations_cors_add(r, "Access-Control-Max-Age", "86400")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* -- JSON instead of nginx's HTML error pages ---------------------------- */

static const char *
ngx_integrations_error_text(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        return "Bad request";
    case NGX_HTTP_NOT_FOUND:
        return "Not found";
    case NGX_HTTP_NOT_ALLOWED:
        return "Method not allowed";
    case NGX_HTTP_REQUEST_TIME_OUT:
        return "Request timeout";
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return "Payload too large";
    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        return "Internal server error";
    case NGX_HTTP_BAD_GATEWAY:
        return "Bad gateway";
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "Service unavailable";
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return "Gateway timeout";
    default:
        return status < 500 ? "Request failed" : "Server error";
    }
}


static ngx_int_t
ngx_integrations_validate_header_filter(ngx_http_request_t *r)
{
    ngx_integrations_validate_ctx_t   *ctx;
    ngx_http_integrations_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (r != r->main
        || (!ilcf->cors
            && ilcf->validate == NGX_INTEGRATIONS_VALIDATE_NONE))
    {
        return ngx_http_next_header_filter(r);
    }

    if (ilcf->cors
        && (ngx_integrations_cors_add(r, "Access-Control-Allow-Origin", "*")
            != NGX_OK
            || ngx_integrations_cors_add(r, "Access-Control-Expose-Headers",
                   "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
                   "RateLimit-Policy, RateLimit, Retry-After, ETag")
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    /*
     * An error page nginx made itself (413, 502, 504, ...) is HTML; an
     * upstream's own error response and this product's JSON are left as
     * they are.
     */
    if (r->headers_out.status < NGX_HTTP_BAD_REQUEST || r->header_only
        || (r->upstream && r->upstream->headers_in.status_n)
        || r->headers_out.content_type.len < 9
        || ngx_strncmp(r->headers_out.content_type.data, "text/html", 9)
           != 0)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_integrations_validate_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->status = NGX_DECLINED;
        ngx_http_set_ctx(r, ctx, ngx_http_integrations_module);
    }

    ctx->json_error = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n =
        sizeof("{\"error\":\"\"}\n") - 1
        + ngx_strlen(ngx_integrations_error_text(r->headers_out.status));

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_integrations_validate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char                           *p;
    ngx_buf_t                        *b;
    ngx_chain_t                      *cl, out;
    const char                       *text;
    ngx_integrations_validate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);

    if (ctx == NULL || !ctx->json_error) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's HTML is dropped */
    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->json_sent) {
        return NGX_OK;
    }

    ctx->json_sent = 1;

    text = ngx_integrations_error_text(r->headers_out.status);

    b = ngx_create_temp_buf(r->pool, ngx_strlen(text) + 16);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->pos, "{\"error\":\"", 10);
    p = ngx_cpymem(p, text, ngx_strlen(text));
    p = ngx_cpymem(p, "\"}\n", 3);
    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
