/*
 * JSON responses. nginx's own error pages are HTML; everything this
 * product answers is JSON, so every refusal is built here.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_json.h"


size_t
ngx_integrations_json_escaped_len(u_char *s, size_t len)
{
    return len + ngx_escape_json(NULL, s, len);
}


u_char *
ngx_integrations_json_escape(u_char *dst, u_char *s, size_t len)
{
    return (u_char *) ngx_escape_json(dst, s, len);
}


ngx_int_t
ngx_integrations_json_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


ngx_int_t
ngx_integrations_json_send_chain(ngx_http_request_t *r, ngx_uint_t status,
    ngx_chain_t *out, off_t len)
{
    ngx_int_t  rc;

    /*
     * the request body, if any, is not wanted here; as for nginx's own
     * error pages, no "100 Continue" invites a client to send it
     */
    r->expect_tested = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_HEAD || len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


ngx_int_t
ngx_integrations_json_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->pos, body, len);
    *b->last++ = '\n';
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_integrations_json_send_chain(r, status, &out, len + 1);
}


ngx_int_t
ngx_integrations_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *error)
{
    u_char  *p, buf[256];
    size_t   len;

    len = ngx_strlen(error);
    if (len > 128) {
        len = 128;
    }

    p = ngx_snprintf(buf, sizeof(buf), "{\"error\":\"");
    p = ngx_integrations_json_escape(p, (u_char *) error, len);
    p = ngx_cpymem(p, "\"}", 2);

    return ngx_integrations_json_send(r, status, buf, p - buf);
}


ngx_int_t
ngx_integrations_json_invalid(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *field, const char *message)
{
    u_char  *body, *p;
    size_t   len, mlen;

    mlen = ngx_strlen(message);

    len = sizeof("{\"error\":\"Validation failed\",\"details\":[{\"field\":\""
                 "\",\"message\":\"\"}]}")
          + ngx_integrations_json_escaped_len(field->data, field->len)
          + ngx_integrations_json_escaped_len((u_char *) message, mlen);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body, "{\"error\":\"Validation failed\",\"details\":"
                   "[{\"field\":\"", sizeof("{\"error\":\"Validation failed"
                   "\",\"details\":[{\"field\":\"") - 1);
    p = ngx_integrations_json_escape(p, field->data, field->len);
    p = ngx_cpymem(p, "\",\"message\":\"", sizeof("\",\"message\":\"") - 1);
    p = ngx_integrations_json_escape(p, (u_char *) message, mlen);
    p = ngx_cpymem(p, "\"}]}", 4);

    return ngx_integrations_json_send(r, status, body, p - body);
}
