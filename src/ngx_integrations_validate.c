/*
 * Writes: integrations_validate checks a request body with jansson before
 * anything goes upstream; integrations_cors answers preflights and adds
 * CORS headers; nginx's own HTML error pages (413, 502, 504, ...) become
 * JSON in every location of the product's, and for what nginx refuses
 * before it chose a location (400, 414, 501, 505) in a server that has one.
 *
 * The body is read in the PRECONTENT phase, after the access phase, so a
 * key without the location's scope is refused before its body is read.
 * A valid body is left exactly as nginx read it (memory or temporary
 * file): proxy_pass sends those bytes, nothing is re-serialised.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_json.h"


#define NGX_INTEGRATIONS_FIELD_LEN    96

/* more are counted ("detailsOmitted"), not listed */
#define NGX_INTEGRATIONS_MAX_DETAILS  100


typedef struct {
    ngx_int_t                  status;      /* NGX_DONE while reading */
    unsigned                   started:1;   /* the body is being read */
    unsigned                   json_error:1;
    unsigned                   json_sent:1;
    unsigned                   json_deferred:1;  /* header after the page */
    const char                *json_text;
} ngx_integrations_validate_ctx_t;


typedef struct {
    json_t                    *details;
    ngx_uint_t                 conditional; /* failures that are 422 */
    ngx_uint_t                 other;
} ngx_integrations_validate_result_t;


typedef struct {
    ngx_uint_t                 status;
    const char                *text;
} ngx_integrations_error_t;


static ngx_regex_t *ngx_integrations_validate_regex(ngx_conf_t *cf,
    const char *pattern);
static ngx_int_t ngx_integrations_validate_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_integrations_json_type(ngx_str_t *type);
static u_char *ngx_integrations_validate_bytes(ngx_http_request_t *r,
    size_t *len);
static void ngx_integrations_validate_body(ngx_http_request_t *r);
static ngx_int_t ngx_integrations_cors_preflight(ngx_http_request_t *r);
static ngx_uint_t ngx_integrations_product(ngx_http_request_t *r);
static ngx_uint_t ngx_integrations_product_conf(void **loc_conf);
static ngx_uint_t ngx_integrations_product_nested(
    ngx_http_core_loc_conf_t *clcf);
static ngx_uint_t ngx_integrations_product_location(
    ngx_http_core_loc_conf_t *clcf);
static ngx_uint_t ngx_integrations_product_tree(
    ngx_http_location_tree_node_t *node);
static void ngx_integrations_product_servers(ngx_conf_t *cf);
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

/* optional free-text fields of an event: only their type is checked */
static const char  *ngx_integrations_event_strings[] = {
    "timezone", "venueName", "city", "country", "description", NULL
};

static const char  *ngx_integrations_expose =
    "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
    "RateLimit-Policy, RateLimit, Retry-After, ETag, WWW-Authenticate";

/* every status nginx has a page for, and 422 (a bare "return 422") */
static ngx_integrations_error_t  ngx_integrations_errors[] = {
    { 400, "Bad request" },
    { 401, "Unauthorized" },
    { 402, "Payment required" },
    { 403, "Forbidden" },
    { 404, "Not found" },
    { 405, "Method not allowed" },
    { 406, "Not acceptable" },
    { 408, "Request timeout" },
    { 409, "Conflict" },
    { 410, "Gone" },
    { 411, "Length required" },
    { 412, "Precondition failed" },
    { 413, "Payload too large" },
    { 414, "URI too long" },
    { 415, "Unsupported media type" },
    { 416, "Range not satisfiable" },
    { 421, "Misdirected request" },
    { 422, "Unprocessable content" },
    { 429, "Too many requests" },
    { 500, "Internal server error" },
    { 501, "Not implemented" },
    { 502, "Bad gateway" },
    { 503, "Service unavailable" },
    { 504, "Gateway timeout" },
    { 505, "HTTP version not supported" },
    { 507, "Insufficient storage" },
    { 0, NULL }
};


/*
 * nginx sends 494 to 497 as 400 with a page of their own; the page's
 * title is all that is left of the code
 */
static const char  *ngx_integrations_bad_requests[][2] = {
    { "Request Header Or Cookie Too Large",
      "Request header or cookie too large" },
    { "The SSL certificate error", "SSL certificate error" },
    { "No required SSL certificate was sent",
      "No required SSL certificate was sent" },
    { "The plain HTTP request was sent to HTTPS port",
      "Plain HTTP request sent to HTTPS port" },
    { NULL, NULL }
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

    /*
     * Compiled once, at configuration time. "\z", not "$": "$" would also
     * match before a final newline ("USD\n").
     */
    ngx_integrations_iso_re = ngx_integrations_validate_regex(cf,
        "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
        "T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?"
        "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])\\z");
    ngx_integrations_currency_re = ngx_integrations_validate_regex(cf,
        "^[A-Z]{3}\\z");
    ngx_integrations_slug_re = ngx_integrations_validate_regex(cf,
        "^[a-z0-9][a-z0-9-]{0,127}\\z");

    if (ngx_integrations_iso_re == NULL
        || ngx_integrations_currency_re == NULL
        || ngx_integrations_slug_re == NULL)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* preflights carry no key: answered before the access phase */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_integrations_cors_preflight;

    /* bodies are read only once the access phase admitted the key */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_integrations_validate_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_integrations_validate_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_integrations_validate_body_filter;

    ngx_integrations_product_servers(cf);

    return NGX_OK;
}


/* -- the rules ------------------------------------------------------------ */

static void
ngx_integrations_fail(ngx_integrations_validate_result_t *res,
    const char *field, const char *message, ngx_uint_t conditional)
{
    json_t  *d, *m;

    if (conditional) {
        res->conditional++;

    } else {
        res->other++;
    }

    /* 30,000 bad ticket types must not make a 30,000-entry answer */
    if (json_array_size(res->details) >= NGX_INTEGRATIONS_MAX_DETAILS) {
        return;
    }

    /* jansson's parse errors are UTF-8, but never trust it blindly */
    m = json_string(message);
    if (m == NULL) {
        m = json_string("is not valid");
    }

    d = json_object();
    json_object_set_new(d, "field", json_string(field));
    json_object_set_new(d, "message", m);
    json_array_append_new(res->details, d);
}


static void
ngx_integrations_field(char *buf, const char *path, const char *f)
{
    u_char  *p;

    p = ngx_snprintf((u_char *) buf, NGX_INTEGRATIONS_FIELD_LEN - 1, "%s%s",
                     path, f);
    *p = '\0';
}


static ngx_uint_t
ngx_integrations_match(ngx_regex_t *re, json_t *v)
{
    ngx_str_t  s;

    if (!json_is_string(v)) {
        return 0;
    }

    s.data = (u_char *) json_string_value(v);
    s.len = json_string_length(v);

    return ngx_regex_exec(re, &s, NULL, 0) >= 0;
}


static ngx_uint_t
ngx_integrations_is_datetime(json_t *v)
{
    u_char      *p;
    ngx_int_t    year, month, day, last;

    static ngx_int_t  days[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (!ngx_integrations_match(ngx_integrations_iso_re, v)) {
        return 0;
    }

    /* the pattern fixed the positions of YYYY-MM-DD; now the calendar */
    p = (u_char *) json_string_value(v);

    year = ngx_atoi(p, 4);
    month = ngx_atoi(p + 5, 2);
    day = ngx_atoi(p + 8, 2);

    last = days[month - 1];

    if (month == 2
        && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
    {
        last = 29;
    }

    return day <= last;
}


static void
ngx_integrations_check_time(ngx_integrations_validate_result_t *res,
    json_t *obj, const char *path, const char *f, ngx_uint_t required)
{
    char     field[NGX_INTEGRATIONS_FIELD_LEN];
    json_t  *v;

    ngx_integrations_field(field, path, f);

    v = json_object_get(obj, f);

    /* required 1: must be there; 2: may be absent, but never null */

    if (v == NULL || json_is_null(v)) {
        if (required == 1) {
            ngx_integrations_fail(res, field, "is required", 0);

        } else if (v && required == 2) {
            ngx_integrations_fail(res, field, "cannot be removed", 0);
        }

        /* an optional one may be null: none */
        return;
    }

    if (!ngx_integrations_is_datetime(v)) {
        ngx_integrations_fail(res, field, "must be an ISO-8601 date-time, "
                              "e.g. 2026-09-01T19:00:00Z", 0);
    }
}


static void
ngx_integrations_check_string(ngx_integrations_validate_result_t *res,
    json_t *obj, const char *f)
{
    json_t  *v;

    v = json_object_get(obj, f);

    if (v && !json_is_null(v) && !json_is_string(v)) {
        ngx_integrations_fail(res, f, "must be a string", 0);
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


/* min 0: a non-negative integer (counts, cents); min 1: positive */

static void
ngx_integrations_check_count(ngx_integrations_validate_result_t *res,
    json_t *obj, const char *path, const char *f, ngx_uint_t required,
    json_int_t min)
{
    char     field[NGX_INTEGRATIONS_FIELD_LEN];
    json_t  *v;

    ngx_integrations_field(field, path, f);

    v = json_object_get(obj, f);

    if (v == NULL) {
        if (required) {
            ngx_integrations_fail(res, field, "is required", 0);
        }
        return;
    }

    if (json_is_integer(v) && json_integer_value(v) >= min) {
        return;
    }

    ngx_integrations_fail(res, field,
                          min ? "must be a positive integer"
                              : "must be a non-negative integer", 0);
}


static void
ngx_integrations_check_ticket(ngx_integrations_validate_result_t *res,
    json_t *t, const char *path)
{
    char     prefix[NGX_INTEGRATIONS_FIELD_LEN];
    char     field[NGX_INTEGRATIONS_FIELD_LEN];
    json_t  *v;

    if (!json_is_object(t)) {
        ngx_integrations_fail(res, path, "must be an object", 0);
        return;
    }

    ngx_integrations_field(prefix, path, ".");

    ngx_integrations_field(field, prefix, "name");
    v = json_object_get(t, "name");

    if (v == NULL) {
        ngx_integrations_fail(res, field, "is required", 0);

    } else if (!json_is_string(v) || json_string_length(v) == 0) {
        ngx_integrations_fail(res, field, "must be a non-empty string", 0);
    }

    /* prices are integer cents: 2500 is 25.00, 25.5 is refused */
    ngx_integrations_field(field, prefix, "price");
    v = json_object_get(t, "price");

    if (v == NULL) {
        ngx_integrations_fail(res, field, "is required", 0);

    } else if (!json_is_integer(v) || json_integer_value(v) < 0) {
        ngx_integrations_fail(res, field, "must be a non-negative integer "
                              "(cents: 2500 is 25.00)", 0);
    }

    ngx_integrations_check_count(res, t, prefix, "quantity", 1, 0);
    ngx_integrations_check_count(res, t, prefix, "minPerOrder", 0, 1);
    ngx_integrations_check_count(res, t, prefix, "maxPerOrder", 0, 1);
    ngx_integrations_check_time(res, t, prefix, "salesStart", 0);
    ngx_integrations_check_time(res, t, prefix, "salesEnd", 0);

    v = json_object_get(t, "hidden");
    if (v && !json_is_boolean(v)) {
        ngx_integrations_field(field, prefix, "hidden");
        ngx_integrations_fail(res, field, "must be true or false", 0);
    }
}


static void
ngx_integrations_check_event(ngx_integrations_validate_result_t *res,
    json_t *obj, ngx_uint_t create)
{
    char     path[NGX_INTEGRATIONS_FIELD_LEN];
    u_char  *p;
    size_t   i;
    json_t  *v, *t;

    if (!create && json_object_size(obj) == 0) {
        ngx_integrations_fail(res, "body", "has no field to update", 0);
        return;
    }

    if (json_object_get(obj, "status")) {
        ngx_integrations_fail(res, "status", "Status changes are not "
                              "accepted", 0);
    }

    v = json_object_get(obj, "title");

    if (v == NULL) {
        if (create) {
            ngx_integrations_fail(res, "title", "is required", 0);
        }

    } else if (!json_is_string(v) || json_string_length(v) == 0) {
        ngx_integrations_fail(res, "title", "must be a non-empty string", 0);
    }

    /* startsAt: required on create, never removable (2: null refused) */
    ngx_integrations_check_time(res, obj, "", "startsAt", create ? 1 : 2);
    ngx_integrations_check_time(res, obj, "", "endsAt", 0);
    ngx_integrations_check_time(res, obj, "", "doorsOpen", 0);

    v = json_object_get(obj, "currency");
    if (v && !ngx_integrations_match(ngx_integrations_currency_re, v)) {
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

    for (i = 0; ngx_integrations_event_strings[i]; i++) {
        ngx_integrations_check_string(res, obj,
                                      ngx_integrations_event_strings[i]);
    }

    v = json_object_get(obj, "slug");
    if (v && !ngx_integrations_match(ngx_integrations_slug_re, v)) {
        ngx_integrations_fail(res, "slug", "must match [a-z0-9][a-z0-9-]* "
                              "(at most 128 characters)", 0);
    }

    v = json_object_get(obj, "ticketTypes");
    if (v) {
        if (!json_is_array(v)) {
            ngx_integrations_fail(res, "ticketTypes", "must be an array", 0);

        } else {
            json_array_foreach(v, i, t) {
                p = ngx_snprintf((u_char *) path, sizeof(path) - 1,
                                 "ticketTypes[%uz]", i);
                *p = '\0';
                ngx_integrations_check_ticket(res, t, path);
            }
        }
    }

    if (create) {
        return;
    }

    v = json_object_get(obj, "addTicketType");
    if (v) {
        ngx_integrations_check_ticket(res, v, "addTicketType");
    }

    v = json_object_get(obj, "removeTicketTypeId");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
        ngx_integrations_fail(res, "removeTicketTypeId",
                              "must be an integer ticket type id", 0);
    }
}


static void
ngx_integrations_check_checkin(ngx_integrations_validate_result_t *res,
    json_t *obj)
{
    json_t  *enter, *date;

    enter = json_object_get(obj, "enter");
    date = json_object_get(obj, "entry_date");

    if (enter == NULL) {
        ngx_integrations_fail(res, "enter", "is required (1 to mark as "
                              "entered, 0 to revert)", 0);

    } else if (!json_is_integer(enter)
               || (json_integer_value(enter) != 0
                   && json_integer_value(enter) != 1))
    {
        ngx_integrations_fail(res, "enter", "must be 0 or 1", 0);
    }

    /* Fourvenues: a field required by another one's value is a 422 */
    if (json_is_integer(enter) && json_integer_value(enter) == 1
        && (date == NULL || json_is_null(date)))
    {
        ngx_integrations_fail(res, "entry_date", "is required when enter "
                              "is 1", 1);
        return;
    }

    ngx_integrations_check_time(res, obj, "", "entry_date", 0);
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

    if (ctx && ctx->started) {
        /* NGX_DONE while the body is read, NGX_DECLINED once it is valid */
        return ctx->status;
    }

    /* a body declared as a form or XML is not read as JSON: 415 */
    if ((r->headers_in.content_length_n > 0 || r->headers_in.chunked)
        && r->headers_in.content_type
        && !ngx_integrations_json_type(&r->headers_in.content_type->value))
    {
        return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_integrations_validate_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_integrations_module);
    }

    ctx->started = 1;
    ctx->status = NGX_DONE;

    /*
     * One buffer when it fits client_body_buffer_size, else a temporary
     * file; client_max_body_size (413) bounds both.
     */
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                           ngx_integrations_validate_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/*
 * A body declared as another structured format (a form, multipart, XML)
 * is not JSON; untyped or loosely typed ones (text/plain,
 * application/octet-stream, none) are read as JSON, as clients send them.
 */
static ngx_uint_t
ngx_integrations_json_type(ngx_str_t *type)
{
    u_char      *p, *end;
    size_t       len;
    ngx_uint_t   i;

    static ngx_str_t  refused[] = {
        ngx_string("application/x-www-form-urlencoded"),
        ngx_string("multipart/"),
        ngx_string("application/xml"),
        ngx_string("text/xml"),
    };

    p = type->data;
    end = ngx_strlchr(p, p + type->len, ';');
    if (end == NULL) {
        end = p + type->len;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    len = end - p;

    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (len >= refused[i].len
            && ngx_strncasecmp(p, refused[i].data, refused[i].len) == 0
            && (refused[i].data[refused[i].len - 1] == '/'
                || len == refused[i].len))
        {
            return 0;
        }
    }

    /* application/atom+xml, image/svg+xml, ... */
    return !(len > 4 && ngx_strncasecmp(end - 4, (u_char *) "+xml", 4) == 0);
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

    data = ngx_pnalloc(r->pool, (size_t) size + 1);
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

        /* a large body went to a temporary file; it stays there */
        n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "integrations_validate: could not read the body "
                          "back from \"%V\"", &b->file->name);
            return NULL;
        }

        p += n;
    }

    return data;
}


static void
ngx_integrations_validate_body(ngx_http_request_t *r)
{
    char                                msg[256], *out;
    u_char                             *p, *data;
    size_t                              len, omitted;
    json_t                             *obj, *body;
    ngx_int_t                           rc;
    ngx_uint_t                          status;
    json_error_t                        err;
    ngx_integrations_validate_ctx_t    *ctx;
    ngx_http_integrations_loc_conf_t   *ilcf;
    ngx_integrations_validate_result_t  res;

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);
    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (ctx == NULL || r->request_body == NULL) {
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

    if (res.details == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    obj = NULL;

    if (len == 0) {
        ngx_integrations_fail(&res, "body", "is empty; a JSON object is "
                              "expected", 0);

    } else {
        /* a scalar parses, to be refused as "must be a JSON object" */
        obj = json_loadb((char *) data, len,
                         JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);

        if (obj == NULL) {
            p = ngx_snprintf((u_char *) msg, sizeof(msg) - 1,
                             "is not valid JSON: %s (line %d, column %d)",
                             err.text, err.line, err.column);
            *p = '\0';
            ngx_integrations_fail(&res, "body", msg, 0);

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

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "integrations_validate: body refused with %ui, "
                  "%ui failure(s)", status, res.conditional + res.other);

    body = json_object();
    if (body == NULL) {
        json_decref(res.details);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    omitted = res.conditional + res.other - json_array_size(res.details);

    json_object_set_new(body, "error", json_string("Validation failed"));
    json_object_set_new(body, "details", res.details);

    if (omitted) {
        json_object_set_new(body, "detailsOmitted",
                            json_integer((json_int_t) omitted));
    }

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


/* the module owns these headers: an upstream's own ones are dropped */

static ngx_int_t
ngx_integrations_cors_set(ngx_http_request_t *r, const char *name,
    const char *value)
{
    size_t            len;
    ngx_str_t         v;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash && h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            h[i].hash = 0;
        }
    }

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

    /* If-None-Match: a browser revalidates the ETag the API sends */
    allow.data = ngx_pnalloc(r->pool, keys.len
                             + sizeof("Content-Type, If-None-Match, "));
    if (allow.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(allow.data, "Content-Type, If-None-Match",
                   sizeof("Content-Type, If-None-Match") - 1);

    if (keys.len) {
        p = ngx_cpymem(p, ", ", 2);
        p = ngx_cpymem(p, keys.data, keys.len);
    }

    allow.len = p - allow.data;

    if (ngx_integrations_cors_set(r, "Access-Control-Allow-Methods",
                                  "GET, POST, PATCH, PUT, OPTIONS") != NGX_OK
        || ngx_integrations_json_header(r, "Access-Control-Allow-Headers",
                                        &allow) != NGX_OK
        || ngx_integrations_cors_set(r, "Access-Control-Max-Age", "86400")
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
    ngx_integrations_error_t  *e;

    for (e = ngx_integrations_errors; e->status; e++) {
        if (e->status == status) {
            return e->text;
        }
    }

    return status < 500 ? "Request failed" : "Server error";
}


static const char *
ngx_integrations_bad_request_text(ngx_chain_t *in)
{
    size_t       len;
    ngx_buf_t   *b;
    ngx_uint_t   i;

    /* the page is the first buffer, nginx's static text */
    if (in == NULL || !ngx_buf_in_memory(in->buf)) {
        return "Bad request";
    }

    b = in->buf;
    len = b->last - b->pos;

    for (i = 0; ngx_integrations_bad_requests[i][0]; i++) {
        if (ngx_strnstr(b->pos, (char *) ngx_integrations_bad_requests[i][0],
                        len))
        {
            return ngx_integrations_bad_requests[i][1];
        }
    }

    return "Bad request";
}


/*
 * A page nginx made itself: ngx_http_special_response_handler() sets
 * r->err_status and answers text/html (or nothing at all for the codes
 * it has no page for). An upstream's own response has a status_n.
 */

static ngx_uint_t
ngx_integrations_nginx_error(ngx_http_request_t *r)
{
    ngx_str_t  *type;

    if (r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || r->err_status == 0
        || (r->upstream && r->upstream->headers_in.status_n))
    {
        return 0;
    }

    type = &r->headers_out.content_type;

    if (type->len == 0) {
        return r->headers_out.content_length_n <= 0;
    }

    return type->len == sizeof("text/html") - 1
           && ngx_strncasecmp(type->data, (u_char *) "text/html",
                              sizeof("text/html") - 1) == 0;
}


/*
 * r's location has a directive of the product's; or r has the server's
 * own configuration (nginx refused it before choosing a location, or no
 * location matched) and the server has such a location somewhere.
 */

static ngx_uint_t
ngx_integrations_product(ngx_http_request_t *r)
{
    return ngx_integrations_product_conf(r->loc_conf);
}


static ngx_uint_t
ngx_integrations_product_conf(void **loc_conf)
{
    ngx_http_integrations_loc_conf_t  *ilcf;

    ilcf = loc_conf[ngx_http_integrations_module.ctx_index];

    return ilcf->handler
           || ilcf->cors
           || ilcf->validate != NGX_INTEGRATIONS_VALIDATE_NONE
           || ilcf->product_server
           || ngx_http_apikey_conf_enabled(loc_conf);
}


/* the locations nested in clcf (a server's: all of them) */

static ngx_uint_t
ngx_integrations_product_nested(ngx_http_core_loc_conf_t *clcf)
{
#if (NGX_PCRE)
    ngx_http_core_loc_conf_t  **regex;

    for (regex = clcf->regex_locations; regex && *regex; regex++) {
        if (ngx_integrations_product_location(*regex)) {
            return 1;
        }
    }
#endif

    return ngx_integrations_product_tree(clcf->static_locations);
}


static ngx_uint_t
ngx_integrations_product_location(ngx_http_core_loc_conf_t *clcf)
{
    return ngx_integrations_product_conf(clcf->loc_conf)
           || ngx_integrations_product_nested(clcf);
}


static ngx_uint_t
ngx_integrations_product_tree(ngx_http_location_tree_node_t *node)
{
    if (node == NULL) {
        return 0;
    }

    return (node->exact && ngx_integrations_product_location(node->exact))
           || (node->inclusive
               && ngx_integrations_product_location(node->inclusive))
           || ngx_integrations_product_tree(node->left)
           || ngx_integrations_product_tree(node->right)
           || ngx_integrations_product_tree(node->tree);
}


/*
 * Postconfiguration, once the location trees exist: marks the server{}
 * level conf, the one a request has before nginx chose a location, of
 * every server with a product location (nested, regex, named too).
 */

static void
ngx_integrations_product_servers(ngx_conf_t *cf)
{
    void                              **loc_conf;
    ngx_uint_t                          s;
    ngx_http_core_loc_conf_t          **named, *clcf;
    ngx_http_core_srv_conf_t          **cscfp;
    ngx_http_core_main_conf_t          *cmcf;
    ngx_http_integrations_loc_conf_t   *ilcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        loc_conf = cscfp[s]->ctx->loc_conf;
        clcf = loc_conf[ngx_http_core_module.ctx_index];
        ilcf = loc_conf[ngx_http_integrations_module.ctx_index];

        ilcf->product_server = ngx_integrations_product_nested(clcf);

        for (named = cscfp[s]->named_locations;
             named && *named && !ilcf->product_server;
             named++)
        {
            ilcf->product_server = ngx_integrations_product_location(*named);
        }
    }
}


static ngx_int_t
ngx_integrations_validate_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                         page;
    ngx_integrations_validate_ctx_t   *ctx;
    ngx_http_integrations_loc_conf_t  *ilcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (ilcf->cors
        && (ngx_integrations_cors_set(r, "Access-Control-Allow-Origin", "*")
            != NGX_OK
            || ngx_integrations_cors_set(r, "Access-Control-Expose-Headers",
                                         ngx_integrations_expose)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    if (!ngx_integrations_nginx_error(r) || !ngx_integrations_product(r)) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_integrations_validate_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_integrations_module);
    }

    page = r->headers_out.content_length_n > 0;

    ctx->json_error = 1;
    ctx->json_text = ngx_integrations_error_text(r->headers_out.status);

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    /*
     * a 400 may be a 494 to 497, which only the page says: the header
     * waits for it in the body filter (as the image filter's waits for
     * the image)
     */
    if (r->headers_out.status == NGX_HTTP_BAD_REQUEST && page
        && r->method != NGX_HTTP_HEAD)
    {
        ctx->json_deferred = 1;
        return NGX_OK;
    }

    r->headers_out.content_length_n = sizeof("{\"error\":\"\"}\n") - 1
                                      + ngx_strlen(ctx->json_text);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_integrations_validate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char                           *p;
    size_t                            len;
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_chain_t                      *cl, out;
    ngx_integrations_validate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_integrations_module);

    if (ctx == NULL || !ctx->json_error || r->header_only) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->json_deferred) {
        ctx->json_deferred = 0;
        ctx->json_text = ngx_integrations_bad_request_text(in);

        r->headers_out.content_length_n = sizeof("{\"error\":\"\"}\n") - 1
                                          + ngx_strlen(ctx->json_text);

        rc = ngx_http_next_header_filter(r);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        if (r->header_only) {
            ctx->json_sent = 1;
        }
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

    len = ngx_strlen(ctx->json_text);

    b = ngx_create_temp_buf(r->pool, len + sizeof("{\"error\":\"\"}\n") - 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->pos, "{\"error\":\"", sizeof("{\"error\":\"") - 1);
    p = ngx_cpymem(p, ctx->json_text, len);
    p = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);
    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
