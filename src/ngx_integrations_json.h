/*
 * JSON responses: error bodies of the SPEC and helpers to build bodies.
 */

#ifndef _NGX_INTEGRATIONS_JSON_H_INCLUDED_
#define _NGX_INTEGRATIONS_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* sends status + JSON body (a copy is made) and returns the filter rc */
ngx_int_t ngx_integrations_json_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);

/* sends a body chain already built in the request pool */
ngx_int_t ngx_integrations_json_send_chain(ngx_http_request_t *r,
    ngx_uint_t status, ngx_chain_t *out, off_t len);

/* {"error":"<error>"} */
ngx_int_t ngx_integrations_json_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *error);

/* 400/422 {"error":"Validation failed","details":[{"field","message"}]} */
ngx_int_t ngx_integrations_json_invalid(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *field, const char *message);

/* length of s once escaped for a JSON string (without quotes) */
size_t ngx_integrations_json_escaped_len(u_char *s, size_t len);

/* writes the escaped string, returns the end */
u_char *ngx_integrations_json_escape(u_char *dst, u_char *s, size_t len);

/* adds a response header (value in the request pool or static) */
ngx_int_t ngx_integrations_json_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);


#endif /* _NGX_INTEGRATIONS_JSON_H_INCLUDED_ */
