/*
 * Content handlers of the read API (stub: being written).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_common.h"


char *
ngx_integrations_handlers_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    return "is not implemented yet";
}


ngx_int_t
ngx_integrations_handlers_init(ngx_conf_t *cf)
{
    return NGX_OK;
}
