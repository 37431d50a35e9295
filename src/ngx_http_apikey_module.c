/*
 * ngx_http_apikey_module: the access phase.
 *
 * Finds the API key in the configured headers, refuses junk without asking
 * Redis (format + checksum), then asks Redis once: one script checks the
 * key record (hash, status, expiry, IP allowlist, scopes) and applies the
 * per-key rolling-window rate limit. The request waits (NGX_AGAIN) while
 * Redis answers and is resumed with ngx_http_core_run_phases().
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_json.h"
#include "ngx_integrations_key.h"


#define NGX_HTTP_APIKEY_NEW          0
#define NGX_HTTP_APIKEY_WAITING      1
#define NGX_HTTP_APIKEY_DONE         2

/* results of the access script */
#define NGX_HTTP_APIKEY_UNKNOWN      0
#define NGX_HTTP_APIKEY_BAD_SECRET   1
#define NGX_HTTP_APIKEY_REVOKED      2
#define NGX_HTTP_APIKEY_EXPIRED      3
#define NGX_HTTP_APIKEY_IP           4
#define NGX_HTTP_APIKEY_SCOPE        5
#define NGX_HTTP_APIKEY_LIMITED      6
#define NGX_HTTP_APIKEY_OK           7
/* the record changed since this worker read it: ask again in full */
#define NGX_HTTP_APIKEY_STALE        8
/* found no key, or a malformed one, or two different ones */
#define NGX_HTTP_APIKEY_MISSING      100
#define NGX_HTTP_APIKEY_MALFORMED    101
#define NGX_HTTP_APIKEY_AMBIGUOUS    102
#define NGX_HTTP_APIKEY_REDIS_DOWN   103

#define NGX_HTTP_APIKEY_FAILURE_CLOSED  0
#define NGX_HTTP_APIKEY_FAILURE_OPEN    1

#define NGX_HTTP_APIKEY_MAX_HEADERS  8

#define NGX_HTTP_APIKEY_503_BODY     "{\"error\":\"Service unavailable\"}"
/* request headers only this module may set (lowercase) */
#define NGX_HTTP_APIKEY_IDENT        "x-integrations-"
#define NGX_HTTP_APIKEY_SCOPE_BODY                                            \
    "{\"error\":\"Forbidden\",\"code\":\"SCOPE_REQUIRED\",\"missingScopes\":["
#define NGX_HTTP_APIKEY_CACHE_SIZE   4096
/* client addresses remembered per key (an integrator's NAT pool) */
#define NGX_HTTP_APIKEY_CACHE_IPS    4
/* a slot is rewritten at most this often for the same key */
#define NGX_HTTP_APIKEY_CACHE_FRESH  1000
/* the worker's memory of key records (see ngx_http_apikey_record_t) */
#define NGX_HTTP_APIKEY_RECORDS      4096
#define NGX_HTTP_APIKEY_RECORD_TTL   10000


typedef struct {
    ngx_str_t                         name;      /* lowercase */
    ngx_str_t                         scheme;    /* "Bearer" or empty */
    ngx_str_t                         display;   /* as configured */
} ngx_http_apikey_header_t;


/* a directive that needs "apikey on", and where it was given */
typedef struct {
    const char                       *name;
    ngx_str_t                         file;
    ngx_uint_t                        line;
} ngx_http_apikey_set_t;


typedef struct {
    ngx_flag_t                        enable;
    ngx_array_t                      *headers;   /* apikey_header_t */
    ngx_array_t                      *scopes;    /* ngx_str_t */
    ngx_array_t                      *script_args;  /* limit, window,
                                                       " scope "... */
    ngx_uint_t                        rate;      /* 0: no limit */
    ngx_msec_t                        window;
    ngx_str_t                         bucket;
    ngx_uint_t                        failure;
    ngx_msec_t                        open_ttl;
    ngx_flag_t                        pass_key;
    ngx_str_t                         hint;
    /* where apikey_scope [0] and apikey_rate_limit [1] are in this block */
    ngx_http_apikey_set_t             set[2];
} ngx_http_apikey_loc_conf_t;


typedef struct {
    ngx_str_t                         pepper;
    ngx_integrations_redis_script_t  *script;
    ngx_integrations_redis_conf_t    *redis;
    ngx_shm_zone_t                   *cache;
    ngx_str_t                         used_file;   /* first "apikey on" */
    ngx_uint_t                        used_line;
    ngx_uint_t                        used;
    ngx_uint_t                        open;
    ngx_array_t                      *buckets;  /* apikey_bucket_t */
} ngx_http_apikey_main_conf_t;


/* a bucket's one window, and where it was first given */
typedef struct {
    ngx_str_t                         name;
    ngx_msec_t                        window;
    ngx_str_t                         file;
    ngx_uint_t                        line;
} ngx_http_apikey_bucket_t;


typedef struct {
    ngx_http_request_t               *request;
    ngx_integrations_redis_cmd_t      cmd;
    ngx_uint_t                        state;
    ngx_int_t                         code;
    ngx_integrations_identity_t       identity;
    u_char                            hash[NGX_INTEGRATIONS_HASH_HEX_LEN];
    u_char                            ip[33];
    ngx_str_t                         nets;  /* the key's, on a code 4 */
    ngx_str_t                         conflict;  /* ambiguous header */
    ngx_str_t                         bucket;
    int64_t                           limit;
    int64_t                           remaining;
    int64_t                           reset_ms;
    int64_t                           retry_ms;
    int64_t                           own_limit;   /* the key's, 0: none */
    ngx_msec_t                        window;
    unsigned                          keyed:1;
    unsigned                          counted:1;
    unsigned                          fast:1;   /* record from memory */
} ngx_http_apikey_ctx_t;


/*
 * The open policy's memory of keys this node validated: a table in shared
 * memory, so every worker knows what any worker saw. Each slot has its own
 * try-lock; a busy slot counts as a miss, so a worker never waits.
 */
typedef struct {
    ngx_atomic_t                      lock;
    ngx_msec_t                        at;       /* epoch ms */
    time_t                            expires;
    uint64_t                          own_limit;   /* the key's, 0: none */
    ngx_msec_t                        open_start;  /* an outage's window */
    uint64_t                          open_used;   /* admitted in it */
    u_char                            hash[NGX_INTEGRATIONS_HASH_HEX_LEN];
    u_char                            ips[NGX_HTTP_APIKEY_CACHE_IPS][33];
    u_char                            ip_next;   /* the oldest one */
    u_char                            ip_count;  /* in use */
    u_char                            id[NGX_INTEGRATIONS_KEY_ID_LEN];
    u_char                            org_len;
    u_char                            name_len;
    u_char                            env_len;
    uint16_t                          scopes_len;
    u_char                            org[64];
    u_char                            name[128];
    u_char                            env[8];
    u_char                            scopes[512];
} ngx_http_apikey_cache_entry_t;


/*
 * A worker's memory of the key records Redis gave it whole: what rarely
 * changes (org, name, scopes, env, networks, own limit) is not asked for
 * again for NGX_HTTP_APIKEY_RECORD_TTL; the access script still reads the
 * hash, status, expiry and the record's `gen` on every request, and a
 * `gen` other than the one remembered gets the whole record again. One
 * block per record, in a direct-mapped table: a collision replaces.
 */
typedef struct {
    ngx_msec_t                        at;       /* ngx_current_msec */
    int64_t                           own_limit;
    ngx_str_t                         own;      /* own_limit, decimal */
    ngx_str_t                         gen;      /* "=" and the field */
    ngx_str_t                         org;
    ngx_str_t                         name;
    ngx_str_t                         scopes;
    ngx_str_t                         env;
    ngx_str_t                         nets;     /* "": any address */
    u_char                            id[NGX_INTEGRATIONS_KEY_ID_LEN];
    u_char                            hash[NGX_INTEGRATIONS_HASH_HEX_LEN];
} ngx_http_apikey_record_t;


static ngx_int_t ngx_http_apikey_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_apikey_finish(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx, ngx_http_apikey_loc_conf_t *alcf);
static void ngx_http_apikey_reply(void *data, redisReply *reply);
static ngx_int_t ngx_http_apikey_script_args(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx, ngx_http_apikey_loc_conf_t *alcf,
    ngx_http_apikey_record_t *rec);
static ngx_http_apikey_record_t *ngx_http_apikey_record_get(
    ngx_http_apikey_ctx_t *ctx, ngx_http_apikey_loc_conf_t *alcf);
static void ngx_http_apikey_record_put(ngx_http_apikey_ctx_t *ctx,
    redisReply **e);
static void ngx_http_apikey_record_forget(ngx_http_apikey_ctx_t *ctx);
static u_char *ngx_http_apikey_str_put(u_char *p, ngx_str_t *dst,
    ngx_str_t *src);
static void ngx_http_apikey_exit_process(ngx_cycle_t *cycle);
static ngx_http_apikey_ctx_t *ngx_http_apikey_get_ctx(ngx_http_request_t *r);
static void ngx_http_apikey_ctx_marker(void *data);
static ngx_uint_t ngx_http_apikey_scheme_ok(ngx_http_apikey_header_t *hd,
    ngx_str_t *v);
static ngx_int_t ngx_http_apikey_find_key(ngx_http_request_t *r,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_ctx_t *ctx,
    ngx_str_t *key);
static void ngx_http_apikey_cache_put(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx);
static void ngx_http_apikey_cache_forget(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx);
static void ngx_http_apikey_cache_forget_ip(ngx_http_apikey_cache_entry_t *e,
    u_char *ip, ngx_str_t *nets);
static ngx_uint_t ngx_http_apikey_cache_lock(
    ngx_http_apikey_cache_entry_t *e);
static ngx_uint_t ngx_http_apikey_cache_has_ip(
    ngx_http_apikey_cache_entry_t *e, u_char *ip);
static ngx_int_t ngx_http_apikey_cache_init(ngx_shm_zone_t *zone,
    void *data);
static ngx_uint_t ngx_http_apikey_open_count(ngx_http_apikey_ctx_t *ctx,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_cache_entry_t *e,
    ngx_msec_t now);
static ngx_uint_t ngx_http_apikey_scopes_missing(
    ngx_http_apikey_loc_conf_t *alcf, u_char *have, size_t have_len,
    size_t *len);
static ngx_int_t ngx_http_apikey_cache_get(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx, ngx_http_apikey_loc_conf_t *alcf);
static ngx_int_t ngx_http_apikey_header_filter(ngx_http_request_t *r);
static u_char *ngx_http_apikey_item(u_char *p, ngx_str_t *bucket, u_char k1,
    int64_t v1, u_char k2, int64_t v2);
static ngx_int_t ngx_http_apikey_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_apikey_add_variables(ngx_conf_t *cf);
static void *ngx_http_apikey_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_apikey_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_apikey_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_apikey(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_scope(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_apikey_redis_failure(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_apikey_init(ngx_conf_t *cf);
static ngx_uint_t ngx_http_apikey_nested_on(ngx_http_core_loc_conf_t *clcf);


/*
 * KEYS: the key record, the rate-limit log of this bucket, the log's name
 * before 2026-12 (a sorted set, moved into the list once; same hash tag).
 * ARGV: key hash, limit, window ms, the record's `gen` as this worker
 * remembers it ("=" and the field; "": the whole record, please), then,
 * for the whole record, the client IP (32 hex) and each required scope
 * padded with spaces (" events:read ").
 * The whole record's answer: {code, hash, org, name, scopes, env, expires,
 * limit, remaining, reset ms, retry ms, the key's own limit (0: none),
 * nets, gen}; the nets also serve the open policy's
 * memory, which keeps only the addresses they still allow. With a `gen`
 * the worker checked the address, scopes and own limit (given as the
 * limit) itself, and gets {code, limit, remaining, reset ms, retry ms,
 * expires}, or {8} if the record's `gen` moved. Time is Redis's, so every
 * node agrees on the window.
 * The hash is compared here only to decide whether to spend allowance; the
 * module compares it again in constant time.
 *
 * The log is a list of admission times in ms, oldest first: trimmed from
 * the head, appended at the tail, and no number is formatted as a float
 * (a sorted set cost a third more Redis CPU). Peeking at the two oldest
 * settles the usual case; when both left the window, the first entry
 * still in it is found by galloping then bisecting with LINDEX, so a long
 * log that aged out at once costs O(log n) calls, not one per entry. A
 * refusal pushes and pops back in the same script: nothing is spent. A
 * key refused for its address or scopes (4, 5) spends nothing either, but
 * still gets the limit's figures, for its response's RateLimit headers.
 * tonumber() is a strtod() inside Redis (as dear as a small command), so
 * default fields ("0", "") are told apart as strings and each log entry
 * is converted once.
 */
static const char  ngx_http_apikey_script[] =
"local fast, r, st, ex, lu = ARGV[4] ~= '', nil, nil, nil, nil\n"
"if fast then\n"
"  r = redis.call('HMGET', KEYS[1], 'hash', 'status', 'expires', 'last_used',\n"
"    'gen')\n"
"  if not r[1] then return {0} end\n"
"  if r[1] ~= ARGV[1] then return {1} end\n"
"  if ARGV[4] ~= '=' .. (r[5] or '') then return {8} end\n"
"  st, ex, lu = r[2], r[3], r[4]\n"
"else\n"
"  r = redis.call('HMGET', KEYS[1], 'hash', 'org', 'name', 'scopes',\n"
"    'status', 'expires', 'nets', 'rate_limit', 'env', 'last_used', 'ips',\n"
"    'gen')\n"
"  if not r[1] then return {0} end\n"
"  if r[1] ~= ARGV[1] then return {1} end\n"
"  st, ex, lu = r[5], r[6], r[10]\n"
"end\n"
"local t = redis.call('TIME')\n"
"local ts = t[1] .. string.sub('00000' .. t[2], -6, -4)\n"
"local now = tonumber(ts)\n"
"local exp = 0\n"
"if ex and ex ~= '0' and ex ~= '' then exp = tonumber(ex) or -1 end\n"
"local own = 0\n"
"if not fast and r[8] and r[8] ~= '' then\n"
"  own = tonumber(r[8]) or 0\n"
"  if own < 0 then own = 0 end\n"
"end\n"
"local function res(code, limit, rem, reset, retry)\n"
"  if fast then\n"
"    return {code, limit or 0, rem or 0, reset or 0, retry or 0, exp}\n"
"  end\n"
"  return {code, r[1], r[2] or '', r[3] or '', r[4] or '', r[9] or 'live',\n"
"    exp, limit or 0, rem or 0, reset or 0, retry or 0, own, r[7] or '',\n"
"    '=' .. (r[12] or '')}\n"
"end\n"
"if st ~= 'active' then return res(2) end\n"
"if exp < 0 or (exp > 0 and exp * 1000 <= now) then return res(3) end\n"
"if now - (tonumber(lu) or 0) * 1000 >= 60000 then\n"
"  redis.call('HSET', KEYS[1], 'last_used', t[1])\n"
"end\n"
"local deny = nil\n"
"if not fast then\n"
"  local nets = r[7] or ''\n"
"  if nets == '' and (r[11] or '') ~= '' then deny = 4 end\n"
"  if nets ~= '' then\n"
"    local ip, ok = ARGV[5], false\n"
"    if ip ~= '' then\n"
"      for hex, bits in string.gmatch(nets, '(%x+)/(%d+)') do\n"
"        bits = tonumber(bits)\n"
"        local full = math.floor(bits / 4)\n"
"        if string.sub(hex, 1, full) == string.sub(ip, 1, full) then\n"
"          local rest = bits % 4\n"
"          if rest == 0 then ok = true break end\n"
"          local m = 16 - 2 ^ (4 - rest)\n"
"          local a = tonumber(string.sub(hex, full + 1, full + 1), 16)\n"
"          local b = tonumber(string.sub(ip, full + 1, full + 1), 16)\n"
"          if bit.band(a, m) == bit.band(b, m) then ok = true break end\n"
"        end\n"
"      end\n"
"    end\n"
"    if not ok then deny = 4 end\n"
"  end\n"
"  if not deny then\n"
"    local have = ' ' .. (r[4] or '') .. ' '\n"
"    for i = 6, #ARGV do\n"
"      if not string.find(have, ARGV[i], 1, true) then deny = 5 break end\n"
"    end\n"
"  end\n"
"end\n"
"local limit = tonumber(ARGV[2])\n"
"if limit == 0 then return res(deny or 7) end\n"
"if own > 0 then limit = own end\n"
"local win = tonumber(ARGV[3])\n"
"local k, old, first = KEYS[2], now - win, nil\n"
"local h = redis.call('LRANGE', k, '0', '1')\n"
"local j = 0\n"
"while j < #h do\n"
"  local v = tonumber(h[j + 1])\n"
"  if v > old then first = v break end\n"
"  j = j + 1\n"
"end\n"
"if not first and j == 2 then\n"
"  local lo, hi = 1, 2\n"
"  local v = redis.call('LINDEX', k, hi)\n"
"  while v and tonumber(v) <= old do\n"
"    lo, hi = hi, hi * 2\n"
"    v = redis.call('LINDEX', k, hi)\n"
"  end\n"
"  while hi - lo > 1 do\n"
"    local mid = math.floor((lo + hi) / 2)\n"
"    local m = redis.call('LINDEX', k, mid)\n"
"    if m and tonumber(m) <= old then lo = mid else hi, v = mid, m end\n"
"  end\n"
"  j = hi\n"
"  if v then first = tonumber(v) end\n"
"end\n"
"if j > 0 then redis.call('LTRIM', k, j, '-1') end\n"
"if not first and redis.call('EXISTS', KEYS[3]) == 1 then\n"
"  local z = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. old, '+inf',\n"
"    'WITHSCORES')\n"
"  redis.call('DEL', KEYS[3])\n"
"  local b = {}\n"
"  for i = 2, #z, 2 do\n"
"    b[#b + 1] = z[i]\n"
"    if #b == 1000 or i == #z then\n"
"      redis.call('RPUSH', k, unpack(b))\n"
"      b = {}\n"
"    end\n"
"  end\n"
"  if #z > 0 then first = tonumber(z[2]) end\n"
"end\n"
"if deny then\n"
"  local rem = limit - redis.call('LLEN', k)\n"
"  return res(deny, limit, rem > 0 and rem or 0, (first or now) + win - now)\n"
"end\n"
"local n = redis.call('RPUSH', k, ts)\n"
"if n > limit then\n"
"  redis.call('RPOP', k)\n"
"  local retry = tonumber(redis.call('LINDEX', k, n - 1 - limit)) + win - now\n"
"  return res(6, limit, 0, retry, retry)\n"
"end\n"
"redis.call('PEXPIRE', k, ARGV[3])\n"
"return res(7, limit, limit - n, (first or now) + win - now, 0)\n";


static char *
ngx_http_apikey_pepper_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *pepper = data;

    if (pepper->len == 0) {
        return "must not be empty (leave it out for plain SHA-256)";
    }

    return NGX_CONF_OK;
}


static ngx_conf_post_t  ngx_http_apikey_pepper_post = {
    ngx_http_apikey_pepper_check
};


static ngx_conf_enum_t  ngx_http_apikey_failure_enum[] = {
    { ngx_string("closed"), NGX_HTTP_APIKEY_FAILURE_CLOSED },
    { ngx_string("open"), NGX_HTTP_APIKEY_FAILURE_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_apikey_commands[] = {

    { ngx_string("apikey"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_apikey,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_apikey_loc_conf_t, enable),
      NULL },

    { ngx_string("apikey_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_apikey_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("apikey_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_apikey_scope,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("apikey_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_apikey_rate_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("apikey_redis_failure"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_apikey_redis_failure,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_apikey_failure_enum },

    { ngx_string("apikey_pass_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_apikey_loc_conf_t, pass_key),
      NULL },

    { ngx_string("apikey_pepper"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_apikey_main_conf_t, pepper),
      &ngx_http_apikey_pepper_post },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_apikey_module_ctx = {
    ngx_http_apikey_add_variables,         /* preconfiguration */
    ngx_http_apikey_init,                  /* postconfiguration */

    ngx_http_apikey_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_apikey_create_loc_conf,       /* create location configuration */
    ngx_http_apikey_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_apikey_module = {
    NGX_MODULE_V1,
    &ngx_http_apikey_module_ctx,           /* module context */
    ngx_http_apikey_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_apikey_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_apikey_record_t  *ngx_http_apikey_records[
                                                     NGX_HTTP_APIKEY_RECORDS];


enum {
    NGX_HTTP_APIKEY_VAR_ORG = 0,
    NGX_HTTP_APIKEY_VAR_ID,
    NGX_HTTP_APIKEY_VAR_NAME,
    NGX_HTTP_APIKEY_VAR_SCOPES,
    NGX_HTTP_APIKEY_VAR_ENV,
    NGX_HTTP_APIKEY_VAR_REMAINING
};


static ngx_http_variable_t  ngx_http_apikey_vars[] = {

    { ngx_string("apikey_org"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_ORG, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_id"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_name"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_scopes"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_SCOPES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_env"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_ENV, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("apikey_rate_remaining"), NULL, ngx_http_apikey_variable,
      NGX_HTTP_APIKEY_VAR_REMAINING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_int_t
ngx_http_apikey_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     key, part[4], *args;
    ngx_http_apikey_ctx_t        *ctx;
    ngx_integrations_key_parts_t  parts;
    ngx_http_apikey_loc_conf_t   *alcf;
    ngx_http_apikey_main_conf_t  *amcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_apikey_module);

    if (!alcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_apikey_get_ctx(r);

    if (ctx) {
        if (ctx->state == NGX_HTTP_APIKEY_WAITING) {
            return NGX_AGAIN;
        }

        /* resumed after Redis answered, or after an internal redirect */
        return ngx_http_apikey_finish(r, ctx, alcf);
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

    {
        ngx_pool_cleanup_t  *cln;

        cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_apikey_ctx_t));
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx = cln->data;
        ngx_memzero(ctx, sizeof(ngx_http_apikey_ctx_t));
        cln->handler = ngx_http_apikey_ctx_marker;
    }

    ctx->request = r;
    ctx->window = alcf->window;
    ctx->bucket = alcf->bucket;
    ngx_http_set_ctx(r, ctx, ngx_http_apikey_module);

    rc = ngx_http_apikey_find_key(r, alcf, ctx, &key);

    if (rc != NGX_OK) {
        ctx->state = NGX_HTTP_APIKEY_DONE;
        ctx->code = rc == NGX_DECLINED ? NGX_HTTP_APIKEY_AMBIGUOUS
                                       : NGX_HTTP_APIKEY_MISSING;
        return ngx_http_apikey_finish(r, ctx, alcf);
    }

    if (ngx_integrations_key_parse(key.data, key.len, &parts) != 0) {
        ctx->state = NGX_HTTP_APIKEY_DONE;
        ctx->code = NGX_HTTP_APIKEY_MALFORMED;
        return ngx_http_apikey_finish(r, ctx, alcf);
    }

    if (ngx_integrations_key_hash(key.data, key.len, amcf->pepper.data,
                                  amcf->pepper.len, ctx->hash)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->identity.id.data = ngx_pnalloc(r->pool, NGX_INTEGRATIONS_KEY_ID_LEN);
    if (ctx->identity.id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->identity.id.data, parts.id, NGX_INTEGRATIONS_KEY_ID_LEN);
    ctx->identity.id.len = NGX_INTEGRATIONS_KEY_ID_LEN;

    (void) ngx_integrations_ip_hex(r->connection->sockaddr,
                                   (char *) ctx->ip);

    args = ngx_palloc(r->pool,
                      (6 + alcf->script_args->nelts) * sizeof(ngx_str_t));
    if (args == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* P{k:<id>}, P{k:<id>}:log:<bucket>, P{k:<id>}:rl:<bucket> */
    ngx_str_set(&part[0], "{k:");
    part[1] = ctx->identity.id;
    ngx_str_set(&part[2], "}");

    if (ngx_integrations_redis_key(r->pool, amcf->redis, &args[0], part, 3)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&part[2], "}:log:");
    part[3] = alcf->bucket;

    if (ngx_integrations_redis_key(r->pool, amcf->redis, &args[1], part, 4)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&part[2], "}:rl:");

    if (ngx_integrations_redis_key(r->pool, amcf->redis, &args[2], part, 4)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->cmd.script = amcf->script;
    ctx->cmd.nkeys = 3;
    ctx->cmd.args = args;
    ctx->cmd.handler = ngx_http_apikey_reply;
    ctx->cmd.data = ctx;

    if (ngx_http_apikey_script_args(r, ctx, alcf,
                                    ngx_http_apikey_record_get(ctx, alcf))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_integrations_redis_send_r(r, amcf->redis, &ctx->cmd);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ctx->state = NGX_HTTP_APIKEY_DONE;
        ctx->code = NGX_HTTP_APIKEY_REDIS_DOWN;
        return ngx_http_apikey_finish(r, ctx, alcf);
    }

    ctx->state = NGX_HTTP_APIKEY_WAITING;

    /* the page's version travels with the key check: no second wait */
    ctx->identity.prefetch = ngx_http_integrations_prefetch(r,
                                                       &ctx->identity.id);

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_apikey_copy(ngx_pool_t *pool, ngx_str_t *dst, redisReply *e)
{
    if (e->type != REDIS_REPLY_STRING) {
        dst->len = 0;
        dst->data = NULL;
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(pool, e->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, e->str, e->len);
    dst->len = e->len;

    return NGX_OK;
}


/*
 * The script's arguments after its keys: the whole record asked for
 * (rec NULL), or the record this worker remembers, whose address, scopes
 * and own limit it has checked here.
 */

static ngx_int_t
ngx_http_apikey_script_args(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_record_t *rec)
{
    u_char                       *p;
    ngx_str_t                    *args, *a;
    ngx_integrations_identity_t  *id;

    args = ctx->cmd.args;
    a = alcf->script_args->elts;

    args[3].data = ctx->hash;
    args[3].len = NGX_INTEGRATIONS_HASH_HEX_LEN;
    args[5] = a[1];

    if (rec == NULL) {
        ctx->fast = 0;
        args[4] = a[0];
        ngx_str_set(&args[6], "");
        args[7].data = ctx->ip;
        args[7].len = ngx_strlen(ctx->ip);
        ngx_memcpy(&args[8], &a[2],
                   (alcf->script_args->nelts - 2) * sizeof(ngx_str_t));
        ctx->cmd.nargs = 6 + alcf->script_args->nelts;

        return NGX_OK;
    }

    id = &ctx->identity;

    /*
     * the record may be replaced while this request waits, and a NOSCRIPT
     * answer sends the arguments again: all of it is copied
     */
    id->org.data = ngx_pnalloc(r->pool, rec->org.len + rec->name.len
                                        + rec->scopes.len + rec->env.len
                                        + rec->own.len + rec->gen.len);
    if (id->org.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_http_apikey_str_put(id->org.data, &id->org, &rec->org);
    p = ngx_http_apikey_str_put(p, &id->name, &rec->name);
    p = ngx_http_apikey_str_put(p, &id->scopes, &rec->scopes);
    p = ngx_http_apikey_str_put(p, &id->env, &rec->env);
    p = ngx_http_apikey_str_put(p, &args[6], &rec->gen);

    ctx->own_limit = rec->own_limit;
    ctx->fast = 1;

    /* the script's own-limit rule, applied here */
    if (alcf->rate && rec->own_limit > 0) {
        (void) ngx_http_apikey_str_put(p, &args[4], &rec->own);

    } else {
        args[4] = a[0];
    }

    ctx->cmd.nargs = 7;

    return NGX_OK;
}


/* dst: src copied to p; returns the end of the copy */

static u_char *
ngx_http_apikey_str_put(u_char *p, ngx_str_t *dst, ngx_str_t *src)
{
    dst->data = p;
    dst->len = src->len;

    return ngx_cpymem(p, src->data, src->len);
}


/* a key's slot of n in a table chosen by its hash (hex) */

static ngx_uint_t
ngx_http_apikey_slot(u_char *hash, ngx_uint_t n)
{
    return (ngx_hextoi(hash, 6) & 0xffffff) % n;
}


static ngx_http_apikey_record_t **
ngx_http_apikey_record_slot(u_char *hash)
{
    return &ngx_http_apikey_records[ngx_http_apikey_slot(hash,
                                                 NGX_HTTP_APIKEY_RECORDS)];
}


/* the remembered record, if it is fresh and lets this request through */

static ngx_http_apikey_record_t *
ngx_http_apikey_record_get(ngx_http_apikey_ctx_t *ctx,
    ngx_http_apikey_loc_conf_t *alcf)
{
    size_t                     len;
    ngx_http_apikey_record_t  *rec;

    rec = *ngx_http_apikey_record_slot(ctx->hash);

    if (rec == NULL
        || ngx_current_msec - rec->at >= NGX_HTTP_APIKEY_RECORD_TTL
        || ngx_memcmp(rec->id, ctx->identity.id.data,
                      NGX_INTEGRATIONS_KEY_ID_LEN) != 0
        || !ngx_integrations_key_equal(rec->hash, ctx->hash,
                                       NGX_INTEGRATIONS_HASH_HEX_LEN))
    {
        return NULL;
    }

    len = 0;

    if (ngx_http_apikey_scopes_missing(alcf, rec->scopes.data,
                                       rec->scopes.len, &len))
    {
        return NULL;
    }

    /*
     * no nets: any address (a record is remembered only from an answer
     * that passed the address check); a refusal is the script's to give,
     * with its RateLimit figures
     */
    if (rec->nets.len
        && (ctx->ip[0] == '\0'
            || !ngx_integrations_ip_hex_in_nets((char *) ctx->ip,
                                                rec->nets.data,
                                                rec->nets.len)))
    {
        return NULL;
    }

    return rec;
}


/* e: the whole record's answer (see the script), ctx: its copies */

static void
ngx_http_apikey_record_put(ngx_http_apikey_ctx_t *ctx, redisReply **e)
{
    u_char                       *p;
    size_t                        len;
    ngx_str_t                     s;
    ngx_http_apikey_record_t     *rec, **slot;
    ngx_integrations_identity_t  *id;

    id = &ctx->identity;
    slot = ngx_http_apikey_record_slot(ctx->hash);

    len = sizeof(ngx_http_apikey_record_t) + NGX_INT64_LEN + e[13]->len
          + id->org.len + id->name.len + id->scopes.len + id->env.len
          + e[12]->len;

    /* an outsized record is asked for whole each time */
    rec = len > 16384 ? NULL : ngx_alloc(len, ngx_cycle->log);

    if (rec == NULL) {
        ngx_http_apikey_record_forget(ctx);
        return;
    }

    rec->at = ngx_current_msec;
    rec->own_limit = ctx->own_limit;
    ngx_memcpy(rec->id, id->id.data, NGX_INTEGRATIONS_KEY_ID_LEN);
    ngx_memcpy(rec->hash, ctx->hash, NGX_INTEGRATIONS_HASH_HEX_LEN);

    p = (u_char *) (rec + 1);
    rec->own.data = p;
    p = ngx_integrations_decimal(p, ctx->own_limit);
    rec->own.len = p - rec->own.data;

    s.len = e[13]->len;
    s.data = (u_char *) e[13]->str;
    p = ngx_http_apikey_str_put(p, &rec->gen, &s);
    s.len = e[12]->len;
    s.data = (u_char *) e[12]->str;
    p = ngx_http_apikey_str_put(p, &rec->nets, &s);

    p = ngx_http_apikey_str_put(p, &rec->org, &id->org);
    p = ngx_http_apikey_str_put(p, &rec->name, &id->name);
    p = ngx_http_apikey_str_put(p, &rec->scopes, &id->scopes);
    (void) ngx_http_apikey_str_put(p, &rec->env, &id->env);

    ngx_free(*slot);
    *slot = rec;
}


static void
ngx_http_apikey_record_forget(ngx_http_apikey_ctx_t *ctx)
{
    ngx_http_apikey_record_t  **slot;

    slot = ngx_http_apikey_record_slot(ctx->hash);

    if (*slot && ngx_memcmp((*slot)->id, ctx->identity.id.data,
                            NGX_INTEGRATIONS_KEY_ID_LEN) == 0)
    {
        ngx_free(*slot);
        *slot = NULL;
    }
}


static void
ngx_http_apikey_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_APIKEY_RECORDS; i++) {
        ngx_free(ngx_http_apikey_records[i]);
        ngx_http_apikey_records[i] = NULL;
    }
}


static void
ngx_http_apikey_reply(void *data, redisReply *reply)
{
    ngx_http_apikey_ctx_t        *ctx = data;

    ngx_uint_t                    i;
    redisReply                  **e;
    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_http_apikey_loc_conf_t   *alcf;
    ngx_http_apikey_main_conf_t  *amcf;

    r = ctx->request;
    c = r->connection;

    ctx->state = NGX_HTTP_APIKEY_DONE;
    ctx->code = NGX_HTTP_APIKEY_REDIS_DOWN;

    if (reply == NULL) {
        goto resume;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_integrations_redis_log_reply(c->log, "apikey", reply);
        goto resume;
    }

    e = reply->element;

    if (ctx->fast && e[0]->integer == NGX_HTTP_APIKEY_STALE) {
        /* the record changed: this once, the whole of it */
        ngx_http_apikey_record_forget(ctx);

        alcf = ngx_http_get_module_loc_conf(r, ngx_http_apikey_module);
        amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

        if (ngx_http_apikey_script_args(r, ctx, alcf, NULL) == NGX_OK
            && ngx_integrations_redis_send_r(r, amcf->redis, &ctx->cmd)
               == NGX_OK)
        {
            ctx->state = NGX_HTTP_APIKEY_WAITING;
            return;
        }

        goto resume;
    }

    if (e[0]->integer < NGX_HTTP_APIKEY_REVOKED) {
        ctx->code = e[0]->integer;

        /* a wrong secret for a good id must not evict the record */
        if (ctx->fast || ctx->code == NGX_HTTP_APIKEY_UNKNOWN) {
            ngx_http_apikey_record_forget(ctx);
        }

        ngx_http_apikey_cache_forget(r, ctx);
        goto resume;
    }

    if (ctx->fast) {
        /* {code, limit, remaining, reset, retry, expires} */
        if (reply->elements != 6) {
            goto resume;
        }

        for (i = 1; i < 6; i++) {
            if (e[i]->type != REDIS_REPLY_INTEGER) {
                goto resume;
            }
        }

        ctx->limit = e[1]->integer;
        ctx->remaining = e[2]->integer;
        ctx->reset_ms = e[3]->integer;
        ctx->retry_ms = e[4]->integer;
        ctx->identity.expires = (time_t) e[5]->integer;
        ctx->code = e[0]->integer;

        if (ctx->code != NGX_HTTP_APIKEY_OK
            && ctx->code != NGX_HTTP_APIKEY_LIMITED)
        {
            ngx_http_apikey_record_forget(ctx);
        }

        goto remember;
    }

    if (reply->elements != 14
        || e[12]->type != REDIS_REPLY_STRING
        || e[13]->type != REDIS_REPLY_STRING)
    {
        goto resume;
    }

    for (i = 7; i < 12; i++) {
        if (e[i]->type != REDIS_REPLY_INTEGER) {
            goto resume;
        }
    }

    /* the authoritative comparison, in constant time */
    if (e[1]->type != REDIS_REPLY_STRING
        || e[1]->len != NGX_INTEGRATIONS_HASH_HEX_LEN
        || !ngx_integrations_key_equal((u_char *) e[1]->str, ctx->hash,
                                       NGX_INTEGRATIONS_HASH_HEX_LEN))
    {
        ctx->code = NGX_HTTP_APIKEY_BAD_SECRET;
        goto resume;
    }

    if (ngx_http_apikey_copy(r->pool, &ctx->identity.org, e[2]) != NGX_OK
        || ngx_http_apikey_copy(r->pool, &ctx->identity.name, e[3])
           != NGX_OK
        || ngx_http_apikey_copy(r->pool, &ctx->identity.scopes, e[4])
           != NGX_OK
        || ngx_http_apikey_copy(r->pool, &ctx->identity.env, e[5])
           != NGX_OK)
    {
        goto resume;
    }

    if (e[0]->integer == NGX_HTTP_APIKEY_IP) {
        if (e[12]->len == 0) {
            /* addresses listed, none matchable: no address is allowed */
            ngx_str_set(&ctx->nets, "");

        } else if (ngx_http_apikey_copy(r->pool, &ctx->nets, e[12])
                   != NGX_OK)
        {
            goto resume;
        }
    }

    ctx->identity.expires = (time_t) e[6]->integer;
    ctx->limit = e[7]->integer;
    ctx->remaining = e[8]->integer;
    ctx->reset_ms = e[9]->integer;
    ctx->retry_ms = e[10]->integer;
    ctx->own_limit = e[11]->integer;
    ctx->code = e[0]->integer;

    /* past the address check: the nets are the ones that allowed it */
    if (ctx->code >= NGX_HTTP_APIKEY_SCOPE) {
        ngx_http_apikey_record_put(ctx, e);

    } else {
        ngx_http_apikey_record_forget(ctx);
    }

remember:

    /*
     * what Redis refuses now, the open policy must not admit from memory
     * in an outage; a key refused only for this location's scopes is
     * still good, and its scopes as they are now are kept
     */
    if (ctx->code == NGX_HTTP_APIKEY_OK || ctx->code == NGX_HTTP_APIKEY_SCOPE
        || ctx->code == NGX_HTTP_APIKEY_LIMITED)
    {
        ngx_http_apikey_cache_put(r, ctx);

    } else {
        ngx_http_apikey_cache_forget(r, ctx);
    }

resume:

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_apikey_send(ngx_http_request_t *r, ngx_uint_t status, u_char *body,
    size_t len)
{
    ngx_int_t  rc;
    ngx_str_t  retry;

    switch (status) {
    case NGX_HTTP_UNAUTHORIZED:
        ngx_integrations_stat(keys_unauthorized);
        break;
    case NGX_HTTP_FORBIDDEN:
        ngx_integrations_stat(keys_forbidden);
        break;
    case NGX_HTTP_TOO_MANY_REQUESTS:
        ngx_integrations_stat(keys_limited);
        break;
    default:
        ngx_integrations_stat(keys_unavailable);

        /* the reconnect backoff tops out at 2 s: a second is a fair try */
        ngx_str_set(&retry, "1");
        if (ngx_integrations_json_header(r, "Retry-After", &retry) != NGX_OK)
        {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return NGX_DONE;
        }
    }

    rc = ngx_integrations_json_send(r, status, body, len);
    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_apikey_unauthorized(ngx_http_request_t *r,
    ngx_http_apikey_loc_conf_t *alcf, const char *hint, ngx_uint_t invalid)
{
    u_char     *body, *p;
    size_t      len;
    ngx_str_t   v;

    if (invalid) {
        ngx_str_set(&v, "Bearer realm=\"integrations\", "
                        "error=\"invalid_token\"");

    } else {
        ngx_str_set(&v, "Bearer realm=\"integrations\"");
    }

    if (ngx_integrations_json_header(r, "WWW-Authenticate", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (hint == NULL) {
        hint = (const char *) alcf->hint.data;
    }

    len = sizeof("{\"error\":\"Unauthorized\",\"hint\":\"\"}")
          + ngx_integrations_json_escaped_len((u_char *) hint,
                                              ngx_strlen(hint));

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"error\":\"Unauthorized\",\"hint\":\"",
                   sizeof("{\"error\":\"Unauthorized\",\"hint\":\"") - 1);
    p = ngx_integrations_json_escape(p, (u_char *) hint, ngx_strlen(hint));
    p = ngx_cpymem(p, "\"}", 2);

    return ngx_http_apikey_send(r, NGX_HTTP_UNAUTHORIZED, body, p - body);
}


/*
 * How many of the location's scopes "have" (space-separated) lacks; *len
 * grows by what listing them in JSON takes (escaped, quoted, a comma).
 */

static ngx_uint_t
ngx_http_apikey_scopes_missing(ngx_http_apikey_loc_conf_t *alcf,
    u_char *have, size_t have_len, size_t *len)
{
    ngx_str_t   *s;
    ngx_uint_t   i, n;

    if (alcf->scopes == NULL) {
        return 0;
    }

    s = alcf->scopes->elts;
    n = 0;

    for (i = 0; i < alcf->scopes->nelts; i++) {
        if (!ngx_integrations_scope_has(have, have_len, s[i].data, s[i].len))
        {
            *len += s[i].len * 2 + 3;
            n++;
        }
    }

    return n;
}


static ngx_int_t
ngx_http_apikey_scope_refusal(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx, ngx_http_apikey_loc_conf_t *alcf)
{
    u_char      *body, *p, *h;
    size_t       len;
    ngx_str_t   *s, v;
    ngx_uint_t   i, n;

    len = sizeof("{\"error\":\"Forbidden\",\"code\":\"SCOPE_REQUIRED\","
                 "\"missingScopes\":[]}");
    n = ngx_http_apikey_scopes_missing(alcf, ctx->identity.scopes.data,
                                       ctx->identity.scopes.len, &len);

    if (n == 0) {
        return NGX_OK;
    }

    s = alcf->scopes->elts;
    body = ngx_pnalloc(r->pool, len);
    h = ngx_pnalloc(r->pool, len + sizeof("Bearer error=\"insufficient_scope\""
                                          ", scope=\"\""));
    if (body == NULL || h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, NGX_HTTP_APIKEY_SCOPE_BODY,
                   sizeof(NGX_HTTP_APIKEY_SCOPE_BODY) - 1);

    v.data = h;
    h = ngx_cpymem(h, "Bearer error=\"insufficient_scope\", scope=\"",
                   sizeof("Bearer error=\"insufficient_scope\", scope=\"")
                   - 1);
    n = 0;

    for (i = 0; i < alcf->scopes->nelts; i++) {
        if (ngx_integrations_scope_has(ctx->identity.scopes.data,
                                       ctx->identity.scopes.len,
                                       s[i].data, s[i].len))
        {
            continue;
        }

        if (n++) {
            *p++ = ',';
            *h++ = ' ';
        }

        *p++ = '"';
        p = ngx_integrations_json_escape(p, s[i].data, s[i].len);
        *p++ = '"';
        h = ngx_cpymem(h, s[i].data, s[i].len);
    }

    p = ngx_cpymem(p, "]}", 2);
    *h++ = '"';
    v.len = h - v.data;

    if (ngx_integrations_json_header(r, "WWW-Authenticate", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_apikey_send(r, NGX_HTTP_FORBIDDEN, body, p - body);
}


/*
 * nginx 1.22 cannot unlink a request header. An empty Keep-Alive is a
 * hop-by-hop header proxy_pass never forwards, and $http_<name> no longer
 * finds it.
 */

static void
ngx_http_apikey_unset(ngx_http_request_t *r, ngx_table_elt_t *h)
{
    static ngx_uint_t  hash;

    if (hash == 0) {
        hash = ngx_hash_key((u_char *) "keep-alive", 10);
    }

    if (r->headers_in.authorization == h) {
        r->headers_in.authorization = NULL;
    }

    ngx_str_set(&h->key, "Keep-Alive");
    h->lowcase_key = (u_char *) "keep-alive";
    h->hash = hash;
    h->value.len = 0;
}


/*
 * The key headers go no further than this module, unless kept; nor do
 * X-Integrations-* headers of the client's where the identity is handed
 * on (ident), so that a backend can trust them.
 */

/*
 * With underscores_in_headers on, "X_Api_Key" is a header of its own to
 * nginx, but the same variable as "X-Api-Key" to a CGI, FastCGI or WSGI
 * backend: for what is taken away, "_" is "-".
 */

static ngx_uint_t
ngx_http_apikey_name_eq(u_char *lowcase, u_char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (lowcase[i] != name[i]
            && !(lowcase[i] == '_' && name[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * admitted: the request goes on, and a header of a key header's name in
 * another scheme (Authorization: Basic, for the backend) stays; refused,
 * nothing goes on, and no such header reaches the access log either (but
 * for the rare refusal the open policy gives from memory)
 */
static void
ngx_http_apikey_strip(ngx_http_request_t *r, ngx_http_apikey_loc_conf_t *alcf,
    ngx_uint_t ident, ngx_uint_t admitted)
{
    ngx_uint_t                 i, j;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    ngx_http_apikey_header_t  *hd;

    if (alcf->pass_key && !ident) {
        return;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;
    hd = alcf->headers->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ident
            && h[i].key.len > sizeof(NGX_HTTP_APIKEY_IDENT) - 1
            && ngx_http_apikey_name_eq(h[i].lowcase_key,
                                       (u_char *) NGX_HTTP_APIKEY_IDENT,
                                       sizeof(NGX_HTTP_APIKEY_IDENT) - 1))
        {
            ngx_http_apikey_unset(r, &h[i]);
            continue;
        }

        if (alcf->pass_key) {
            continue;
        }

        /* an Authorization: Basic ... for the backend stays */
        for (j = 0; j < alcf->headers->nelts; j++) {
            if (h[i].key.len == hd[j].name.len
                && ngx_http_apikey_name_eq(h[i].lowcase_key, hd[j].name.data,
                                           hd[j].name.len)
                && (!admitted
                    || ngx_http_apikey_scheme_ok(&hd[j], &h[i].value)))
            {
                ngx_http_apikey_unset(r, &h[i]);
                break;
            }
        }
    }
}


/*
 * The identity, as request headers for an upstream: set where the
 * location has no read-API handler of this module's (a proxy_pass, most
 * likely). A value with a control character is left out.
 */

typedef struct {
    ngx_str_t                         name;
    ngx_str_t                         lowcase;
    size_t                            field;   /* in the identity */
} ngx_http_apikey_ident_header_t;


static ngx_int_t
ngx_http_apikey_hand_on(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx)
{
    u_char                          *p;
    ngx_str_t                       *v;
    ngx_uint_t                       i;
    ngx_table_elt_t                 *h;
    ngx_http_apikey_ident_header_t  *ih;

    static ngx_http_apikey_ident_header_t  headers[] = {
        { ngx_string("X-Integrations-Org"), ngx_string("x-integrations-org"),
          offsetof(ngx_integrations_identity_t, org) },
        { ngx_string("X-Integrations-Key-Id"),
          ngx_string("x-integrations-key-id"),
          offsetof(ngx_integrations_identity_t, id) },
        { ngx_string("X-Integrations-Scopes"),
          ngx_string("x-integrations-scopes"),
          offsetof(ngx_integrations_identity_t, scopes) },
        { ngx_string("X-Integrations-Env"), ngx_string("x-integrations-env"),
          offsetof(ngx_integrations_identity_t, env) }
    };

    for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        ih = &headers[i];
        v = (ngx_str_t *) ((u_char *) &ctx->identity + ih->field);

        if (v->len == 0) {
            continue;
        }

        for (p = v->data; p < v->data + v->len; p++) {
            if (*p < 0x20 || *p == 0x7f) {
                break;
            }
        }

        if (p != v->data + v->len) {
            continue;
        }

        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->key = ih->name;
        h->lowcase_key = ih->lowcase.data;
        h->hash = ngx_hash_key(ih->lowcase.data, ih->lowcase.len);
        h->value = *v;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_apikey_finish(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx,
    ngx_http_apikey_loc_conf_t *alcf)
{
    u_char                            *p, buf[128];
    size_t                             len;
    ngx_int_t                          rc;
    ngx_str_t                          field;
    ngx_uint_t                         ident;
    ngx_http_integrations_loc_conf_t  *ilcf;

    /* a read-API location answers itself: nothing is handed on */
    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);
    ident = (ilcf->handler == 0);

    /*
     * admitted: an OK whose scopes cover this location (an internal
     * redirect may need others), or what the open policy may admit
     */
    len = 0;
    ngx_http_apikey_strip(r, alcf, ident,
                          (ctx->code == NGX_HTTP_APIKEY_OK
                           && ngx_http_apikey_scopes_missing(alcf,
                                  ctx->identity.scopes.data,
                                  ctx->identity.scopes.len, &len) == 0)
                          || (ctx->code == NGX_HTTP_APIKEY_REDIS_DOWN
                              && alcf->failure
                                 == NGX_HTTP_APIKEY_FAILURE_OPEN));

    /* the open policy's memory sets the code (OK, LIMITED, EXPIRED) */
    if (ctx->code == NGX_HTTP_APIKEY_REDIS_DOWN
        && (alcf->failure != NGX_HTTP_APIKEY_FAILURE_OPEN
            || ngx_http_apikey_cache_get(r, ctx, alcf) != NGX_OK))
    {
        return ngx_http_apikey_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    (u_char *) NGX_HTTP_APIKEY_503_BODY,
                                    sizeof(NGX_HTTP_APIKEY_503_BODY) - 1);
    }

    switch (ctx->code) {

    case NGX_HTTP_APIKEY_MISSING:
        return ngx_http_apikey_unauthorized(r, alcf, NULL, 0);

    case NGX_HTTP_APIKEY_MALFORMED:
        return ngx_http_apikey_unauthorized(r, alcf,
                                            "The API key is malformed", 1);

    case NGX_HTTP_APIKEY_UNKNOWN:
    case NGX_HTTP_APIKEY_BAD_SECRET:
        return ngx_http_apikey_unauthorized(r, alcf,
                                            "The API key is not valid", 1);

    case NGX_HTTP_APIKEY_REVOKED:
        return ngx_http_apikey_unauthorized(r, alcf,
                                            "The API key has been revoked", 1);

    case NGX_HTTP_APIKEY_EXPIRED:
        return ngx_http_apikey_unauthorized(r, alcf,
                                            "The API key has expired", 1);

    case NGX_HTTP_APIKEY_AMBIGUOUS:
        field = ctx->conflict;
        ngx_integrations_stat(keys_ambiguous);
        rc = ngx_integrations_json_invalid(r, NGX_HTTP_BAD_REQUEST, &field,
                                           "a different API key was sent "
                                           "in another header");
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;

    default:
        break;
    }

    /* from here on the request has a known identity */
    ctx->keyed = 1;

    if (ctx->code == NGX_HTTP_APIKEY_IP) {
        return ngx_http_apikey_send(r, NGX_HTTP_FORBIDDEN,
                   (u_char *) "{\"error\":\"Forbidden\","
                              "\"code\":\"IP_NOT_ALLOWED\"}",
                   sizeof("{\"error\":\"Forbidden\","
                          "\"code\":\"IP_NOT_ALLOWED\"}") - 1);
    }

    /* checked here too, so that an internal redirect gets its own scopes */
    rc = ngx_http_apikey_scope_refusal(r, ctx, alcf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->code == NGX_HTTP_APIKEY_LIMITED) {
        p = ngx_sprintf(buf, "{\"error\":\"Rate limit exceeded. Try again "
                        "later.\",\"retryAfter\":%L}",
                        (int64_t) ((ctx->retry_ms + 999) / 1000));
        return ngx_http_apikey_send(r, NGX_HTTP_TOO_MANY_REQUESTS, buf,
                                    p - buf);
    }

    if (ident && ngx_http_apikey_hand_on(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ctx->counted) {
        ctx->counted = 1;
        ngx_integrations_stat(keys_ok);
    }

    return NGX_OK;
}


/* a value in the header's scheme ("Bearer <key>"), or any if it has none */

static ngx_uint_t
ngx_http_apikey_scheme_ok(ngx_http_apikey_header_t *hd, ngx_str_t *v)
{
    if (hd->scheme.len == 0) {
        return 1;
    }

    return v->len > hd->scheme.len
           && ngx_strncasecmp(v->data, hd->scheme.data, hd->scheme.len) == 0
           && (v->data[hd->scheme.len] == ' '
               || v->data[hd->scheme.len] == '\t');
}


static ngx_int_t
ngx_http_apikey_find_key(ngx_http_request_t *r,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_ctx_t *ctx,
    ngx_str_t *key)
{
    u_char                    *s, *e;
    ngx_uint_t                 i, j;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    ngx_http_apikey_header_t  *hd;

    key->len = 0;
    key->data = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;
    hd = alcf->headers->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        for (j = 0; j < alcf->headers->nelts; j++) {

            if (h[i].key.len != hd[j].name.len
                || ngx_strncmp(h[i].lowcase_key, hd[j].name.data,
                               hd[j].name.len) != 0)
            {
                continue;
            }

            /* another scheme (Basic, ...): not an API key */
            if (!ngx_http_apikey_scheme_ok(&hd[j], &h[i].value)) {
                continue;
            }

            s = h[i].value.data + hd[j].scheme.len;
            e = h[i].value.data + h[i].value.len;

            while (s < e && (*s == ' ' || *s == '\t')) {
                s++;
            }

            while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
                e--;
            }

            if (s == e) {
                continue;
            }

            if (key->len == 0) {
                key->data = s;
                key->len = e - s;
                continue;
            }

            if (key->len != (size_t) (e - s)
                || ngx_memcmp(key->data, s, key->len) != 0)
            {
                ctx->conflict = hd[j].display;
                return NGX_DECLINED;
            }
        }
    }

    return key->len ? NGX_OK : NGX_ERROR;
}


/* marks the pool cleanup that holds the context; nothing to free */

static void
ngx_http_apikey_ctx_marker(void *data)
{
}


/* also finds the context after an internal redirect */

static ngx_http_apikey_ctx_t *
ngx_http_apikey_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t     *cln;
    ngx_http_apikey_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_apikey_module);
    if (ctx) {
        return ctx;
    }

    /* an internal redirect clears module contexts, not the pool */
    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_apikey_ctx_marker) {
            ctx = cln->data;
            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_apikey_module);
                return ctx;
            }
        }
    }

    return NULL;
}


/* "Authorization, X-Api-Key, api-key": the key headers of r's location */

ngx_int_t
ngx_http_apikey_header_names(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                      *p;
    size_t                       len;
    ngx_uint_t                   i;
    ngx_http_apikey_header_t    *hd;
    ngx_http_apikey_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_apikey_module);
    hd = alcf->headers->elts;
    len = 0;

    for (i = 0; i < alcf->headers->nelts; i++) {
        len += hd[i].display.len + 2;
    }

    out->data = ngx_pnalloc(r->pool, len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;

    for (i = 0; i < alcf->headers->nelts; i++) {
        if (i) {
            p = ngx_cpymem(p, ", ", 2);
        }

        p = ngx_cpymem(p, hd[i].display.data, hd[i].display.len);
    }

    out->len = p - out->data;

    return NGX_OK;
}


ngx_uint_t
ngx_http_apikey_enabled(ngx_http_request_t *r)
{
    return ngx_http_apikey_conf_enabled(r->loc_conf);
}


/* the same of a location's configuration (at configuration time) */
ngx_uint_t
ngx_http_apikey_conf_enabled(void **loc_conf)
{
    ngx_http_apikey_loc_conf_t  *alcf;

    alcf = loc_conf[ngx_http_apikey_module.ctx_index];

    return alcf->enable == 1;
}


ngx_integrations_identity_t *
ngx_http_apikey_identity(ngx_http_request_t *r)
{
    ngx_http_apikey_ctx_t  *ctx;

    ctx = ngx_http_apikey_get_ctx(r->main);

    if (ctx == NULL || !ctx->keyed || ctx->code != NGX_HTTP_APIKEY_OK) {
        return NULL;
    }

    return &ctx->identity;
}


static ngx_msec_t
ngx_http_apikey_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (ngx_msec_t) tp->sec * 1000 + tp->msec;
}


static ngx_http_apikey_cache_entry_t *
ngx_http_apikey_cache_slot(ngx_http_request_t *r, u_char *hash)
{
    ngx_http_apikey_main_conf_t    *amcf;
    ngx_http_apikey_cache_entry_t  *table;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_apikey_module);

    if (amcf->cache == NULL) {
        return NULL;
    }

    table = amcf->cache->data;

    return &table[ngx_http_apikey_slot(hash, NGX_HTTP_APIKEY_CACHE_SIZE)];
}


static void
ngx_http_apikey_cache_put(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx)
{
    uint64_t                        own;
    ngx_msec_t                      now;
    ngx_integrations_identity_t    *id;
    ngx_http_apikey_cache_entry_t  *e;

    e = ngx_http_apikey_cache_slot(r, ctx->hash);
    if (e == NULL) {
        return;
    }

    id = &ctx->identity;
    now = ngx_http_apikey_now_ms();
    own = ctx->own_limit > 0 ? (uint64_t) ctx->own_limit : 0;

    if (id->org.len > sizeof(e->org) || id->name.len > sizeof(e->name)
        || id->scopes.len > sizeof(e->scopes) || id->env.len > sizeof(e->env))
    {
        return;
    }

    /*
     * the hot path only reads: refresh a slot at most once a second, or
     * at once when the key's scopes, expiry (a rotation's grace) or own
     * limit changed
     */
    if (now - e->at < NGX_HTTP_APIKEY_CACHE_FRESH
        && ngx_memcmp(e->hash, ctx->hash, NGX_INTEGRATIONS_HASH_HEX_LEN) == 0
        && ngx_http_apikey_cache_has_ip(e, ctx->ip)
        && e->expires == id->expires
        && e->own_limit == own
        && e->scopes_len == id->scopes.len
        && ngx_memcmp(e->scopes, id->scopes.data, id->scopes.len) == 0)
    {
        return;
    }

    if (!ngx_atomic_cmp_set(&e->lock, 0, 1)) {
        return;
    }

    /*
     * an outage's count belongs to its key; it is not reset when Redis
     * answers (one worker may be reconnecting while another is not)
     */
    if (ngx_memcmp(e->hash, ctx->hash, NGX_INTEGRATIONS_HASH_HEX_LEN) != 0) {
        e->open_start = 0;
        e->open_used = 0;
        e->ip_next = 0;
        e->ip_count = 0;
    }

    /* a new address replaces the oldest of the key's */
    if (!ngx_http_apikey_cache_has_ip(e, ctx->ip)) {
        ngx_memcpy(e->ips[e->ip_next], ctx->ip, sizeof(e->ips[0]));
        e->ip_next = (e->ip_next + 1) % NGX_HTTP_APIKEY_CACHE_IPS;

        if (e->ip_count < NGX_HTTP_APIKEY_CACHE_IPS) {
            e->ip_count++;
        }
    }

    ngx_memcpy(e->hash, ctx->hash, NGX_INTEGRATIONS_HASH_HEX_LEN);
    ngx_memcpy(e->id, id->id.data, NGX_INTEGRATIONS_KEY_ID_LEN);
    e->org_len = (u_char) id->org.len;
    ngx_memcpy(e->org, id->org.data, id->org.len);
    e->name_len = (u_char) id->name.len;
    ngx_memcpy(e->name, id->name.data, id->name.len);
    e->env_len = (u_char) id->env.len;
    ngx_memcpy(e->env, id->env.data, id->env.len);
    e->scopes_len = (uint16_t) id->scopes.len;
    ngx_memcpy(e->scopes, id->scopes.data, id->scopes.len);
    e->expires = id->expires;
    e->own_limit = own;
    e->at = now;

    ngx_memory_barrier();
    e->lock = 0;
}


/*
 * A slot held for a copy and a count: a short spin, then a miss,
 * never a worker waiting; 0: still busy.
 */

static ngx_uint_t
ngx_http_apikey_cache_lock(ngx_http_apikey_cache_entry_t *e)
{
    ngx_uint_t  spin;

    for (spin = 0; !ngx_atomic_cmp_set(&e->lock, 0, 1); spin++) {
        if (spin == 1024) {
            return 0;
        }

        ngx_cpu_pause();
    }

    return 1;
}


/*
 * A key Redis refused (unknown, revoked, expired) leaves the open
 * policy's memory; an address refused for the key leaves the key's
 * addresses. A forget that loses the race for the lock leaves at most
 * what a later refusal forgets.
 */

static void
ngx_http_apikey_cache_forget(ngx_http_request_t *r,
    ngx_http_apikey_ctx_t *ctx)
{
    ngx_http_apikey_cache_entry_t  *e;

    if (ctx->hash[0] == '\0') {
        return;
    }

    e = ngx_http_apikey_cache_slot(r, ctx->hash);
    if (e == NULL || e->at == 0
        || ngx_memcmp(e->hash, ctx->hash, NGX_INTEGRATIONS_HASH_HEX_LEN) != 0)
    {
        return;
    }

    if (!ngx_http_apikey_cache_lock(e)) {
        return;
    }

    if (ngx_memcmp(e->hash, ctx->hash, NGX_INTEGRATIONS_HASH_HEX_LEN) == 0) {

        if (ctx->code == NGX_HTTP_APIKEY_IP) {
            /* the key is good; only this address is not (any more) */
            ngx_http_apikey_cache_forget_ip(e, ctx->ip, &ctx->nets);

        } else {
            e->at = 0;
            e->ip_count = 0;
            e->ip_next = 0;
        }
    }

    ngx_memory_barrier();
    e->lock = 0;
}


/*
 * Under the slot's lock: the addresses the key's networks (as Redis has
 * them now) still allow, other than ip, kept oldest first, so the next
 * new one goes after them and replaces the oldest when full.
 */

static void
ngx_http_apikey_cache_forget_ip(ngx_http_apikey_cache_entry_t *e, u_char *ip,
    ngx_str_t *nets)
{
    u_char      *a, kept[NGX_HTTP_APIKEY_CACHE_IPS][33];
    ngx_uint_t   i, j, n, first;

    n = ngx_min(e->ip_count, NGX_HTTP_APIKEY_CACHE_IPS);
    first = (n == NGX_HTTP_APIKEY_CACHE_IPS) ? e->ip_next : 0;

    for (i = 0, j = 0; i < n; i++) {
        a = e->ips[(first + i) % NGX_HTTP_APIKEY_CACHE_IPS];

        if (ngx_strncmp(a, ip, sizeof(e->ips[0])) != 0
            && (nets->data == NULL
                || ngx_integrations_ip_hex_in_nets((char *) a, nets->data,
                                                   nets->len)))
        {
            ngx_memcpy(kept[j++], a, sizeof(e->ips[0]));
        }
    }

    ngx_memcpy(e->ips, kept, j * sizeof(e->ips[0]));
    e->ip_count = j;
    e->ip_next = j % NGX_HTTP_APIKEY_CACHE_IPS;
}


/*
 * Bounded compares: put() reads a slot without its lock, and a torn read
 * must not run past an address.
 */

static ngx_uint_t
ngx_http_apikey_cache_has_ip(ngx_http_apikey_cache_entry_t *e, u_char *ip)
{
    ngx_uint_t  i, n;

    n = ngx_min(e->ip_count, NGX_HTTP_APIKEY_CACHE_IPS);

    for (i = 0; i < n; i++) {
        if (ngx_strncmp(e->ips[i], ip, sizeof(e->ips[0])) == 0) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_apikey_cache_copy(ngx_pool_t *pool, ngx_str_t *dst, u_char *src,
    size_t len)
{
    dst->data = ngx_pnalloc(pool, len ? len : 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->len = len;

    return NGX_OK;
}


/*
 * The open policy: a key this node validated (from the same client
 * address) within open_ttl is admitted while Redis is unreachable.
 */

/*
 * While Redis is down the rolling window cannot be read, so a remembered
 * key gets at most its limit per window on this node, counted in its
 * slot (all buckets together) from the outage's first admission: never
 * unlimited. A request the scopes refuse counts nothing. Called with the
 * slot locked; 1: an admission (not refused for the limit or scopes).
 */

static ngx_uint_t
ngx_http_apikey_open_count(ngx_http_apikey_ctx_t *ctx,
    ngx_http_apikey_loc_conf_t *alcf, ngx_http_apikey_cache_entry_t *e,
    ngx_msec_t now)
{
    size_t       len;
    uint64_t     limit;
    ngx_uint_t   allowed;

    ctx->code = NGX_HTTP_APIKEY_OK;
    ctx->limit = 0;
    len = 0;
    allowed = (ngx_http_apikey_scopes_missing(alcf, e->scopes, e->scopes_len,
                                              &len) == 0);

    limit = e->own_limit ? e->own_limit : alcf->rate;

    if (alcf->rate == 0 || limit == 0) {
        return allowed;
    }

    if (e->open_start == 0 || now - e->open_start >= alcf->window) {
        e->open_start = now;
        e->open_used = 0;
    }

    ctx->limit = (int64_t) limit;
    ctx->reset_ms = (int64_t) (e->open_start + alcf->window - now);

    if (e->open_used >= limit) {
        ctx->code = NGX_HTTP_APIKEY_LIMITED;
        ctx->remaining = 0;
        ctx->retry_ms = ctx->reset_ms;
        return 0;
    }

    if (allowed) {
        e->open_used++;
    }

    ctx->remaining = (int64_t) (limit - e->open_used);

    return allowed;
}


static ngx_int_t
ngx_http_apikey_cache_get(ngx_http_request_t *r, ngx_http_apikey_ctx_t *ctx,
    ngx_http_apikey_loc_conf_t *alcf)
{
    ngx_int_t                       rc;
    ngx_uint_t                      admitted;
    ngx_msec_t                      now, at;
    ngx_integrations_identity_t    *id;
    ngx_http_apikey_cache_entry_t  *e;

    if (ctx->hash[0] == '\0') {
        return NGX_DECLINED;
    }

    e = ngx_http_apikey_cache_slot(r, ctx->hash);
    if (e == NULL) {
        return NGX_DECLINED;
    }

    if (!ngx_http_apikey_cache_lock(e)) {
        return NGX_DECLINED;
    }

    now = ngx_http_apikey_now_ms();
    id = &ctx->identity;
    rc = NGX_DECLINED;
    admitted = 0;
    at = e->at;

    if (e->at == 0
        || !ngx_integrations_key_equal(e->hash, ctx->hash,
                                       NGX_INTEGRATIONS_HASH_HEX_LEN))
    {
        /* another key's slot, or none: a miss */

    } else if (e->expires != 0 && e->expires <= ngx_time()) {
        /* its recorded expiry passed: 401, as with Redis up */
        ctx->code = NGX_HTTP_APIKEY_EXPIRED;
        rc = NGX_OK;

    } else if (ngx_http_apikey_cache_has_ip(e, ctx->ip)
               && now - e->at <= alcf->open_ttl)
    {
        rc = NGX_OK;

        if (ngx_http_apikey_cache_copy(r->pool, &id->org, e->org,
                                       e->org_len) != NGX_OK
            || ngx_http_apikey_cache_copy(r->pool, &id->name, e->name,
                                          e->name_len) != NGX_OK
            || ngx_http_apikey_cache_copy(r->pool, &id->env, e->env,
                                          e->env_len) != NGX_OK
            || ngx_http_apikey_cache_copy(r->pool, &id->scopes, e->scopes,
                                          e->scopes_len) != NGX_OK)
        {
            rc = NGX_DECLINED;
        }

        id->expires = e->expires;

        if (rc == NGX_OK) {
            admitted = ngx_http_apikey_open_count(ctx, alcf, e, now);
        }
    }

    ngx_memory_barrier();
    e->lock = 0;

    if (admitted) {
        ngx_integrations_stat(keys_open);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "apikey: redis unreachable, admitting key \"%V\" "
                      "validated %M ms ago (apikey_redis_failure open)",
                      &id->id, now - at);
    }

    return rc;
}


static ngx_int_t
ngx_http_apikey_cache_init(ngx_shm_zone_t *zone, void *data)
{
    size_t            size;
    ngx_slab_pool_t  *sp;

    /* a reload keeps what the old workers learnt */
    if (data) {
        zone->data = data;
        return NGX_OK;
    }

    /* nginx keeps its own slab header at the start of every zone */
    sp = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = sp->data;
        return NGX_OK;
    }

    size = NGX_HTTP_APIKEY_CACHE_SIZE * sizeof(ngx_http_apikey_cache_entry_t);

    sp->data = ngx_slab_alloc(sp, size);
    if (sp->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sp->data, size);
    zone->data = sp->data;

    return NGX_OK;
}


/* "<bucket>";<k1>=<v1>;<k2>=<v2>: a RateLimit-Policy or RateLimit item */

static u_char *
ngx_http_apikey_item(u_char *p, ngx_str_t *bucket, u_char k1, int64_t v1,
    u_char k2, int64_t v2)
{
    *p++ = '"';
    p = ngx_cpymem(p, bucket->data, bucket->len);
    *p++ = '"';
    *p++ = ';';
    *p++ = k1;
    *p++ = '=';
    p = ngx_integrations_decimal(p, v1);
    *p++ = ';';
    *p++ = k2;
    *p++ = '=';

    return ngx_integrations_decimal(p, v2);
}


static ngx_int_t
ngx_http_apikey_header_filter(ngx_http_request_t *r)
{
    u_char                 *p;
    size_t                  len;
    int64_t                 reset, window;
    ngx_str_t               v[6];
    ngx_http_apikey_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_apikey_get_ctx(r);

    if (ctx == NULL || !ctx->keyed || ctx->limit <= 0) {
        return ngx_http_next_header_filter(r);
    }

    reset = (ctx->reset_ms + 999) / 1000;
    window = (int64_t) (ctx->window + 999) / 1000;

    /* every value in one block, written by hand: this runs per request */
    len = 8 * NGX_INT64_LEN + 2 * ctx->bucket.len
          + sizeof("\"\";q=;w=\"\";r=;t=");

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v[0].data = p;
    p = ngx_integrations_decimal(p, ctx->limit);
    v[0].len = p - v[0].data;

    v[1].data = p;
    p = ngx_integrations_decimal(p, ctx->remaining);
    v[1].len = p - v[1].data;

    v[2].data = p;
    p = ngx_integrations_decimal(p, reset);
    v[2].len = p - v[2].data;

    v[3].data = p;
    p = ngx_http_apikey_item(p, &ctx->bucket, 'q', ctx->limit, 'w', window);
    v[3].len = p - v[3].data;

    v[4].data = p;
    p = ngx_http_apikey_item(p, &ctx->bucket, 'r', ctx->remaining, 't',
                             reset);
    v[4].len = p - v[4].data;

    v[5].data = p;
    p = ngx_integrations_decimal(p, (ctx->retry_ms + 999) / 1000);
    v[5].len = p - v[5].data;

    if (ngx_integrations_json_header(r, "RateLimit-Limit", &v[0]) != NGX_OK
        || ngx_integrations_json_header(r, "RateLimit-Remaining", &v[1])
           != NGX_OK
        || ngx_integrations_json_header(r, "RateLimit-Reset", &v[2])
           != NGX_OK
        || ngx_integrations_json_header(r, "RateLimit-Policy", &v[3])
           != NGX_OK
        || ngx_integrations_json_header(r, "RateLimit", &v[4]) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->code == NGX_HTTP_APIKEY_LIMITED
        && ngx_integrations_json_header(r, "Retry-After", &v[5]) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_apikey_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                 *p;
    ngx_str_t              *s;
    ngx_http_apikey_ctx_t  *ctx;

    ctx = ngx_http_apikey_get_ctx(r->main);

    if (ctx == NULL || !ctx->keyed) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {
    case NGX_HTTP_APIKEY_VAR_ORG:
        s = &ctx->identity.org;
        break;
    case NGX_HTTP_APIKEY_VAR_ID:
        s = &ctx->identity.id;
        break;
    case NGX_HTTP_APIKEY_VAR_NAME:
        s = &ctx->identity.name;
        break;
    case NGX_HTTP_APIKEY_VAR_SCOPES:
        s = &ctx->identity.scopes;
        break;
    case NGX_HTTP_APIKEY_VAR_ENV:
        s = &ctx->identity.env;
        break;
    default: /* NGX_HTTP_APIKEY_VAR_REMAINING */
        if (ctx->limit <= 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_sprintf(p, "%L", ctx->remaining) - p;
        v->data = p;
        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_apikey_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_apikey_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_apikey_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_apikey_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     amcf->pepper = { 0, NULL };
     *     amcf->script = NULL;
     *     amcf->redis = NULL;
     *     amcf->used = 0;
     */

    return amcf;
}


static void *
ngx_http_apikey_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_apikey_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_apikey_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     alcf->script_args = NULL;
     *     alcf->bucket = { 0, NULL };
     *     alcf->hint = { 0, NULL };
     */

    alcf->enable = NGX_CONF_UNSET;
    alcf->headers = NGX_CONF_UNSET_PTR;
    alcf->scopes = NGX_CONF_UNSET_PTR;
    alcf->rate = NGX_CONF_UNSET_UINT;
    alcf->window = NGX_CONF_UNSET_MSEC;
    alcf->failure = NGX_CONF_UNSET_UINT;
    alcf->open_ttl = NGX_CONF_UNSET_MSEC;
    alcf->pass_key = NGX_CONF_UNSET;

    return alcf;
}


/*
 * Some location nested in clcf, at any depth, says "apikey on" (read at
 * clcf's merge: the nested ones are merged after it, and the queue is
 * not yet split into trees).
 */

static ngx_uint_t
ngx_http_apikey_nested_on(ngx_http_core_loc_conf_t *clcf)
{
    ngx_queue_t                 *q;
    ngx_http_core_loc_conf_t    *nested;
    ngx_http_location_queue_t   *lq;
    ngx_http_apikey_loc_conf_t  *alcf;

    if (clcf->locations == NULL) {
        return 0;
    }

    for (q = ngx_queue_head(clcf->locations);
         q != ngx_queue_sentinel(clcf->locations);
         q = ngx_queue_next(q))
    {
        lq = (ngx_http_location_queue_t *) q;
        nested = lq->exact ? lq->exact : lq->inclusive;
        alcf = nested->loc_conf[ngx_http_apikey_module.ctx_index];

        if (alcf->enable == 1 || ngx_http_apikey_nested_on(nested)) {
            return 1;
        }
    }

    return 0;
}


static char *
ngx_http_apikey_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_apikey_loc_conf_t *prev = parent;
    ngx_http_apikey_loc_conf_t *conf = child;

    u_char                            *p;
    size_t                             len;
    ngx_str_t                         *s, *a;
    ngx_uint_t                         i, n, used;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_apikey_header_t          *hd;
    ngx_http_apikey_main_conf_t       *amcf;
    ngx_http_integrations_loc_conf_t  *ilcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    /*
     * checked here, where "apikey" is merged: the content handlers are
     * set per location, and their module's confs are merged before these
     */
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    ilcf = ngx_http_conf_get_module_loc_conf(cf,
                                             ngx_http_integrations_module);

    if (!conf->enable) {
        /*
         * a named or internal location is reached from another one
         * (try_files, error_page, X-Accel-Redirect) whose key it keeps
         */
        if (clcf->name.len && !clcf->noname && ilcf->handler
            && !clcf->named && !clcf->internal)
        {
            /* every request there would be a 401 */
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V\" needs \"apikey on\" in its location or "
                          "above it in %V:%ui", &ilcf->handler_name,
                          &ilcf->handler_file, ilcf->handler_line);
            return NGX_CONF_ERROR;
        }

        /*
         * in a location or a server; fine if set for the locations
         * inside, which turn it on
         */
        used = (conf->set[0].line || conf->set[1].line)
               && ngx_http_apikey_nested_on(clcf);

        for (i = 0; i < 2; i++) {
            if (conf->set[i].line && !used) {
                ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                              "\"%s\" has no effect where \"apikey\" is "
                              "off in %V:%ui", conf->set[i].name,
                              &conf->set[i].file, conf->set[i].line);
            }
        }
    }
    ngx_conf_merge_ptr_value(conf->headers, prev->headers, NULL);
    ngx_conf_merge_ptr_value(conf->scopes, prev->scopes, NULL);
    ngx_conf_merge_uint_value(conf->failure, prev->failure,
                              NGX_HTTP_APIKEY_FAILURE_CLOSED);
    ngx_conf_merge_msec_value(conf->open_ttl, prev->open_ttl, 60000);
    ngx_conf_merge_value(conf->pass_key, prev->pass_key, 0);

    if (conf->rate == NGX_CONF_UNSET_UINT) {
        conf->rate = (prev->rate == NGX_CONF_UNSET_UINT) ? 0 : prev->rate;
        conf->window = prev->window;
        conf->bucket = prev->bucket;
    }

    if (conf->window == NGX_CONF_UNSET_MSEC) {
        conf->window = 60000;
    }

    if (conf->bucket.len == 0) {
        ngx_str_set(&conf->bucket, "default");
    }

    if (conf->headers == NULL) {
        /* the SPEC's default: Authorization: Bearer, X-Api-Key, api-key */
        conf->headers = ngx_array_create(cf->pool, 3,
                                         sizeof(ngx_http_apikey_header_t));
        if (conf->headers == NULL) {
            return NGX_CONF_ERROR;
        }

        hd = ngx_array_push_n(conf->headers, 3);
        if (hd == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_str_set(&hd[0].name, "authorization");
        ngx_str_set(&hd[0].scheme, "Bearer");
        ngx_str_set(&hd[0].display, "Authorization");
        ngx_str_set(&hd[1].name, "x-api-key");
        ngx_str_null(&hd[1].scheme);
        ngx_str_set(&hd[1].display, "X-Api-Key");
        ngx_str_set(&hd[2].name, "api-key");
        ngx_str_null(&hd[2].scheme);
        ngx_str_set(&hd[2].display, "api-key");
    }

    /* the script's constant arguments, formatted once */
    n = conf->scopes ? conf->scopes->nelts : 0;

    conf->script_args = ngx_array_create(cf->pool, 2 + n, sizeof(ngx_str_t));
    if (conf->script_args == NULL) {
        return NGX_CONF_ERROR;
    }

    a = ngx_array_push_n(conf->script_args, 2 + n);
    p = ngx_pnalloc(cf->pool, 2 * NGX_INT_T_LEN);
    if (a == NULL || p == NULL) {
        return NGX_CONF_ERROR;
    }

    a[0].data = p;
    a[0].len = ngx_sprintf(p, "%ui", conf->rate) - p;
    a[1].data = p + a[0].len;
    a[1].len = ngx_sprintf(a[1].data, "%M", conf->window) - a[1].data;

    s = n ? conf->scopes->elts : NULL;

    for (i = 0; i < n; i++) {
        p = ngx_pnalloc(cf->pool, s[i].len + 2);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        a[2 + i].data = p;
        *p++ = ' ';
        p = ngx_cpymem(p, s[i].data, s[i].len);
        *p++ = ' ';
        a[2 + i].len = p - a[2 + i].data;
    }

    if (conf->hint.data == NULL) {
        hd = conf->headers->elts;
        len = sizeof("Send your API key in the  header") + 2;

        for (i = 0; i < conf->headers->nelts; i++) {
            len += hd[i].display.len + hd[i].scheme.len + 8;
        }

        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->hint.data = p;
        p = ngx_cpymem(p, "Send your API key in the ",
                       sizeof("Send your API key in the ") - 1);

        for (i = 0; i < conf->headers->nelts; i++) {
            if (i) {
                p = (i == conf->headers->nelts - 1) ? ngx_cpymem(p, " or ", 4)
                                                    : ngx_cpymem(p, ", ", 2);
            }

            p = ngx_cpymem(p, hd[i].display.data, hd[i].display.len);

            if (hd[i].scheme.len) {
                p = ngx_cpymem(p, ": ", 2);
                p = ngx_cpymem(p, hd[i].scheme.data, hd[i].scheme.len);
            }
        }

        p = ngx_cpymem(p, " header", sizeof(" header"));
        conf->hint.len = p - conf->hint.data - 1;
    }

    if (conf->enable) {
        amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);
        amcf->used = 1;

        if (conf->failure == NGX_HTTP_APIKEY_FAILURE_OPEN) {
            amcf->open = 1;
        }
    }

    return NGX_CONF_OK;
}


/* apikey on|off; remembers where, for errors found after parsing */

static char *
ngx_http_apikey(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                         *rv;
    ngx_http_apikey_main_conf_t  *amcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);

    if (amcf->used_line == 0) {
        amcf->used_file = cf->conf_file->file.name;
        amcf->used_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


/* apikey_header "Authorization: Bearer" X-Api-Key api-key; */

static char *
ngx_http_apikey_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_loc_conf_t *alcf = conf;

    u_char                    *colon, *end;
    ngx_str_t                 *value;
    ngx_uint_t                 i, k;
    ngx_http_apikey_header_t  *hd;

    if (alcf->headers != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    if (cf->args->nelts - 1 > NGX_HTTP_APIKEY_MAX_HEADERS) {
        return "has too many headers";
    }

    alcf->headers = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                     sizeof(ngx_http_apikey_header_t));
    if (alcf->headers == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        hd = ngx_array_push(alcf->headers);
        if (hd == NULL) {
            return NGX_CONF_ERROR;
        }

        end = value[i].data + value[i].len;
        colon = ngx_strlchr(value[i].data, end, ':');

        hd->name.data = value[i].data;
        hd->name.len = colon ? (size_t) (colon - value[i].data)
                             : value[i].len;
        ngx_str_null(&hd->scheme);

        if (colon) {
            colon++;
            while (colon < end && *colon == ' ') {
                colon++;
            }

            hd->scheme.data = colon;
            hd->scheme.len = end - colon;

            for (k = 0; k < hd->scheme.len; k++) {
                if (!isalnum(hd->scheme.data[k])) {
                    goto invalid;
                }
            }

            if (hd->scheme.len == 0) {
                goto invalid;
            }
        }

        if (hd->name.len == 0) {
            goto invalid;
        }

        for (k = 0; k < hd->name.len; k++) {
            if (!isalnum(hd->name.data[k]) && hd->name.data[k] != '-'
                && hd->name.data[k] != '_')
            {
                goto invalid;
            }
        }

        hd->display.data = hd->name.data;
        hd->display.len = hd->name.len;

        hd->name.data = ngx_pnalloc(cf->pool, hd->name.len);
        if (hd->name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(hd->name.data, hd->display.data, hd->name.len);
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid key header \"%V\", expected a header name "
                       "or \"Name: Scheme\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* where a block first asks for keys, for the warning where none are read */

static void
ngx_http_apikey_note_set(ngx_conf_t *cf, ngx_http_apikey_loc_conf_t *alcf,
    ngx_uint_t which, const char *name)
{
    ngx_http_apikey_set_t  *set;

    set = &alcf->set[which];

    if (set->line == 0) {
        set->name = name;
        set->file = cf->conf_file->file.name;
        set->line = cf->conf_file->line;
    }
}


static char *
ngx_http_apikey_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_loc_conf_t *alcf = conf;

    ngx_str_t   *value, *s;
    ngx_uint_t   i, k;

    if (alcf->scopes != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    alcf->scopes = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ngx_str_t));
    if (alcf->scopes == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        for (k = 0; k < value[i].len; k++) {
            if (value[i].data[k] <= ' ' || value[i].data[k] == ','
                || value[i].data[k] == '"' || value[i].data[k] == '\\'
                || value[i].data[k] >= 0x7f)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid scope \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty scope");
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(alcf->scopes);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    ngx_http_apikey_note_set(cf, alcf, 0, "apikey_scope");

    return NGX_CONF_OK;
}


/* apikey_rate_limit 60r/m [window=30s] [bucket=events] | off */

static char *
ngx_http_apikey_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_loc_conf_t *alcf = conf;

    uint64_t                      count, window, w;
    ngx_str_t                    *value, s;
    ngx_uint_t                    i, k, window_set, unnamed;
    ngx_http_apikey_bucket_t     *b;
    ngx_http_apikey_main_conf_t  *amcf;

    if (alcf->rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    window_set = 0;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        alcf->rate = 0;
        return NGX_CONF_OK;
    }

    if (ngx_integrations_rate_parse(value[1].data, value[1].len, &count,
                                    &window)
        != 0 || count > 1000000000)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\", expected e.g. 60r/m, "
                           "10r/s or 5r/2s", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            if (window_set++) {
                goto twice;
            }

            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            if (ngx_integrations_duration_parse(s.data, s.len, &w) != 0
                || w == 0 || w > 86400000ULL * 7)
            {
                goto invalid;
            }

            /* the same rate, measured over another window */
            count = count * w / window;
            window = w;

            if (count == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" allows no request in a window",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "bucket=", 7) == 0) {
            if (alcf->bucket.len) {
                goto twice;
            }

            alcf->bucket.data = value[i].data + 7;
            alcf->bucket.len = value[i].len - 7;

            if (alcf->bucket.len == 0 || alcf->bucket.len > 64) {
                goto invalid;
            }

            for (k = 0; k < alcf->bucket.len; k++) {
                if (!isalnum(alcf->bucket.data[k])
                    && alcf->bucket.data[k] != '-'
                    && alcf->bucket.data[k] != '_'
                    && alcf->bucket.data[k] != '.')
                {
                    goto invalid;
                }
            }

            continue;
        }

        goto invalid;
    }

    if (window > 86400000ULL * 7) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rate window of \"%V\" is longer than 7 days",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    alcf->rate = (ngx_uint_t) count;
    alcf->window = (ngx_msec_t) window;

    ngx_http_apikey_note_set(cf, alcf, 1, "apikey_rate_limit");

    /*
     * a bucket is one log per key: a shorter window elsewhere would trim
     * what a longer one still counts
     */
    unnamed = (alcf->bucket.len == 0);

    if (unnamed) {
        ngx_str_set(&alcf->bucket, "default");
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);

    if (amcf->buckets == NULL) {
        amcf->buckets = ngx_array_create(cf->pool, 4,
                                         sizeof(ngx_http_apikey_bucket_t));
        if (amcf->buckets == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    b = amcf->buckets->elts;

    for (i = 0; i < amcf->buckets->nelts; i++) {
        if (b[i].name.len != alcf->bucket.len
            || ngx_strncmp(b[i].name.data, alcf->bucket.data,
                           alcf->bucket.len) != 0)
        {
            continue;
        }

        if (b[i].window != alcf->window) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%sbucket \"%V\" has a window of %Mms in "
                               "%V:%ui, not %Mms: a bucket keeps one rolling "
                               "window (name another with bucket=)",
                               unnamed ? "a limit without bucket= counts in "
                                         "the default bucket: " : "",
                               &alcf->bucket, b[i].window, &b[i].file,
                               b[i].line, alcf->window);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    b = ngx_array_push(amcf->buckets);
    if (b == NULL) {
        return NGX_CONF_ERROR;
    }

    b->name = alcf->bucket;
    b->window = alcf->window;
    b->file = cf->conf_file->file.name;
    b->line = cf->conf_file->line;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;

twice:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%*s\" is given twice", (size_t) 7, value[i].data);

    return NGX_CONF_ERROR;
}


/* apikey_redis_failure closed | open [ttl=60s] */

static char *
ngx_http_apikey_redis_failure(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_apikey_loc_conf_t *alcf = conf;

    ngx_str_t        *value, s;
    ngx_uint_t        i;
    ngx_msec_t        ttl;
    ngx_conf_enum_t  *e;

    if (alcf->failure != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcmp(e[i].name.data, value[1].data) == 0)
        {
            alcf->failure = e[i].value;
            break;
        }
    }

    if (e[i].name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\", expected \"closed\" or "
                           "\"open\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (alcf->failure != NGX_HTTP_APIKEY_FAILURE_OPEN
            || ngx_strncmp(value[2].data, "ttl=", 4) != 0)
        {
            goto invalid;
        }

        s.data = value[2].data + 4;
        s.len = value[2].len - 4;

        ttl = ngx_parse_time(&s, 0);
        if (ttl == (ngx_msec_t) NGX_ERROR || ttl == 0) {
            goto invalid;
        }

        /* what Redis said a day ago is no ground to admit a key on */
        if (ttl > 86400000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" is over a day", &value[2]);
            return NGX_CONF_ERROR;
        }

        alcf->open_ttl = ttl;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[2]);

    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_apikey_init(ngx_conf_t *cf)
{
    ngx_str_t                           name;
    ngx_http_handler_pt                *h;
    ngx_http_core_main_conf_t          *cmcf;
    ngx_http_apikey_main_conf_t        *amcf;
    ngx_http_integrations_main_conf_t  *imcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_apikey_module);
    imcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_integrations_module);

    if (!amcf->used) {
        return NGX_OK;
    }

    if (!imcf->redis_set) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"apikey on\" requires \"integrations_redis\" in the "
                      "http block in %V:%ui",
                      &amcf->used_file, amcf->used_line);
        return NGX_ERROR;
    }

    amcf->redis = &imcf->redis;
    amcf->script = ngx_integrations_redis_add_script(cf, amcf->redis,
                                                     ngx_http_apikey_script);
    if (amcf->script == NULL) {
        return NGX_ERROR;
    }

    if (amcf->open) {
        ngx_str_set(&name, "apikey_open_cache");
        amcf->cache = ngx_shared_memory_add(cf, &name,
                          ngx_align(NGX_HTTP_APIKEY_CACHE_SIZE
                                    * sizeof(ngx_http_apikey_cache_entry_t),
                                    ngx_pagesize)
                          + 64 * ngx_pagesize, &ngx_http_apikey_module);
        if (amcf->cache == NULL) {
            return NGX_ERROR;
        }

        amcf->cache->init = ngx_http_apikey_cache_init;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_apikey_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_apikey_header_filter;

    return NGX_OK;
}
