/*
 * Content handlers of the read API: events, event, ticket types,
 * availability, attendees, whoami.
 *
 * Each data request costs one Redis round trip: one script per endpoint
 * resolves the event (slug or id), applies the filters and the page, and
 * returns the stored, pre-serialised JSON (only a scan of a large event
 * takes more: it runs in bounded slices). Nothing is re-encoded: the
 * body is a buffer chain over the kept reply's strings, with a page's
 * items joined into one buffer. The ETag is a 64-bit hash of the chain;
 * If-None-Match is answered by nginx's not_modified filter (304).
 *
 * Rendered pages are cached per worker (ngx_integrations_cache.c), tagged
 * with the data set's version D:ver, which every import bumps. A request
 * first asks Redis for D:ver (a plain GET); the cached page is served only
 * if its tag is that version, else the script runs. On a miss the GET and
 * the script go together, GET first: the page is then at least as new as
 * its tag, so a tag can be too old (one extra fetch), never too new.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_integrations_common.h"
#include "ngx_integrations_json.h"
#include "ngx_integrations_cache.h"
#include "ngx_integrations_key.h"


#define NGX_HTTP_INTEGRATIONS_EVENTS_SIZE      50
#define NGX_HTTP_INTEGRATIONS_EVENTS_MAX       100
#define NGX_HTTP_INTEGRATIONS_ATTENDEES_SIZE   100
#define NGX_HTTP_INTEGRATIONS_ATTENDEES_MAX    500

/* a start past any data set, printed by Lua without an exponent */
#define NGX_HTTP_INTEGRATIONS_MAX_START        1000000000000LL

#define NGX_HTTP_INTEGRATIONS_MAX_TEXT         256
#define NGX_HTTP_INTEGRATIONS_MAX_ERRORS       16

/* query parameters */
#define NGX_HTTP_INTEGRATIONS_P_PAGE           0
#define NGX_HTTP_INTEGRATIONS_P_PAGE_SIZE      1
#define NGX_HTTP_INTEGRATIONS_P_LIMIT          2
#define NGX_HTTP_INTEGRATIONS_P_STATUS         3
#define NGX_HTTP_INTEGRATIONS_P_SEARCH         4
#define NGX_HTTP_INTEGRATIONS_P_DATE_FROM      5
#define NGX_HTTP_INTEGRATIONS_P_DATE_TO        6
#define NGX_HTTP_INTEGRATIONS_P_LIVE_ONLY      7
#define NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE  8
#define NGX_HTTP_INTEGRATIONS_P_CATEGORY_ID    9
#define NGX_HTTP_INTEGRATIONS_P_SCANNED        10
#define NGX_HTTP_INTEGRATIONS_P_PROMO          11
#define NGX_HTTP_INTEGRATIONS_P_N              12

#define NGX_HTTP_INTEGRATIONS_BIT(p)  ((ngx_uint_t) 1 << (p))

#define NGX_HTTP_INTEGRATIONS_PAGED                                          \
    (NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_PAGE)                 \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_PAGE_SIZE)          \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_LIMIT)              \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_SEARCH)             \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE))

#define NGX_HTTP_INTEGRATIONS_EVENTS_PARAMS                                  \
    (NGX_HTTP_INTEGRATIONS_PAGED                                             \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_STATUS)             \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_DATE_FROM)          \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_DATE_TO)            \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_LIVE_ONLY))

#define NGX_HTTP_INTEGRATIONS_ATTENDEES_PARAMS                               \
    (NGX_HTTP_INTEGRATIONS_PAGED                                             \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_CATEGORY_ID)        \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_SCANNED)            \
     | NGX_HTTP_INTEGRATIONS_BIT(NGX_HTTP_INTEGRATIONS_P_PROMO))

/* "k " and a key id, the page cache's name of a key's data set */
#define NGX_HTTP_INTEGRATIONS_KEY_NAME         (2 + 64)

/* a createdTime as Redis writes a score ("%.17g") */
#define NGX_HTTP_INTEGRATIONS_SCORE_LEN        32

/* script arguments: KEYS[1] + ARGV */
#define NGX_HTTP_INTEGRATIONS_NARGS            11

#define NGX_HTTP_INTEGRATIONS_503  "{\"error\":\"Service unavailable\"}"


typedef struct {
    ngx_str_t                           file;   /* first handler, for */
    ngx_uint_t                          line;   /* nginx -t errors */
    ngx_integrations_redis_script_t    *events;
    ngx_integrations_redis_script_t    *event;
    ngx_integrations_redis_script_t    *attendees;
} ngx_http_integrations_handlers_main_t;


typedef struct {
    ngx_str_t                           field;
    const char                         *message;
} ngx_http_integrations_error_t;


/* a match of a collect: its createdTime and its member */
typedef struct {
    double                              score;
    ngx_str_t                           member;
} ngx_http_integrations_pair_t;


/* the query of a list request, validated */
typedef struct {
    ngx_str_t                       value[NGX_HTTP_INTEGRATIONS_P_N];
    ngx_uint_t                      page;
    ngx_uint_t                      size;
    ngx_uint_t                      nerrors;
    ngx_http_integrations_error_t   errors[NGX_HTTP_INTEGRATIONS_MAX_ERRORS];
} ngx_http_integrations_query_t;


typedef struct {
    ngx_http_request_t                 *request;
    ngx_uint_t                          handler;
    ngx_uint_t                          page;
    ngx_uint_t                          size;
    ngx_integrations_redis_cmd_t        cmd;
    ngx_str_t                           args[NGX_HTTP_INTEGRATIONS_NARGS];

    /* the page cache: this page's key, D:ver as Redis said it */
    ngx_str_t                           cache_key;
    uint32_t                            cache_hash;
    ngx_str_t                           version;
    ngx_integrations_redis_cmd_t        version_cmd;
    ngx_str_t                           version_args[2];

    /* a list: what the replies said (strings of kept replies) */
    long long                           total;
    redisReply                         *ef;
    redisReply                         *cf;
    ngx_array_t                         parts;     /* redisReply * */

    /* a scan in slices: what is left to skip and to collect */
    long long                           skip;
    long long                           need;
    ngx_uint_t                          slices;

    /* a collect: the matches so far, then the page's HMGET */
    ngx_array_t                         pairs;
    redisReply                         *ai;
    ngx_integrations_redis_cmd_t        items_cmd;

    unsigned                            more:1;
    unsigned                            fetching:1;
    unsigned                            revalidating:1;
} ngx_http_integrations_ctx_t;


/* D:ver asked for by the access phase, alongside the key's script */
typedef struct {
    ngx_http_request_t                 *request;
    ngx_integrations_redis_cmd_t        cmd;
    ngx_str_t                           args[2];
    ngx_str_t                           D;
    ngx_str_t                           version;
    ngx_http_integrations_ctx_t        *ctx;      /* waiting for it */
    unsigned                            done:1;
    unsigned                            failed:1;
} ngx_http_integrations_prefetch_t;


/* a body under construction: memory buffers over existing bytes */
typedef struct {
    ngx_pool_t                         *pool;
    ngx_chain_t                        *out;
    ngx_chain_t                       **last;
    ngx_buf_t                          *buf;
    off_t                               len;
} ngx_http_integrations_body_t;


static ngx_int_t ngx_http_integrations_start(ngx_http_request_t *r,
    ngx_http_integrations_loc_conf_t *ilcf,
    ngx_integrations_identity_t *id);
static void ngx_http_integrations_reply(void *data, redisReply *reply);
static ngx_int_t ngx_http_integrations_cache_key(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx);
static void ngx_http_integrations_version(void *data, redisReply *reply);
static ngx_int_t ngx_http_integrations_version_cmd(ngx_pool_t *pool,
    ngx_integrations_redis_cmd_t *cmd, ngx_str_t *args, ngx_str_t *D);
static void ngx_http_integrations_prefetched(void *data, redisReply *reply);
static ngx_http_integrations_prefetch_t *ngx_http_integrations_prefetch_of(
    ngx_http_request_t *r, ngx_integrations_identity_t *id, ngx_str_t *D);
static ngx_uint_t ngx_http_integrations_current(
    ngx_integrations_cache_entry_t *e, ngx_str_t *version);
static ngx_int_t ngx_http_integrations_key_name(ngx_str_t *key_id,
    u_char *buf, ngx_str_t *name);
static void ngx_http_integrations_version_copy(ngx_pool_t *pool,
    redisReply *reply, ngx_str_t *version);
static void ngx_http_integrations_versioned(ngx_http_integrations_ctx_t *ctx,
    ngx_uint_t failed);
static ngx_int_t ngx_http_integrations_send_cached(ngx_http_request_t *r,
    ngx_integrations_cache_entry_t *e);
static ngx_int_t ngx_http_integrations_send_page(ngx_http_request_t *r,
    ngx_str_t *etag, ngx_chain_t *out, off_t len);
static ngx_int_t ngx_http_integrations_respond(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_integrations_slice(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_integrations_collect(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_integrations_fetch_page(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx);
static int ngx_libc_cdecl ngx_http_integrations_member_cmp(const void *one,
    const void *two);
static int ngx_libc_cdecl ngx_http_integrations_pair_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_integrations_again(ngx_http_request_t *r,
    ngx_integrations_redis_cmd_t *cmd);
static ngx_int_t ngx_http_integrations_items_page(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_integrations_unexpected(ngx_http_request_t *r,
    redisReply *reply);
static ngx_int_t ngx_http_integrations_list(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, ngx_http_integrations_body_t *body);
static ngx_int_t ngx_http_integrations_event(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, ngx_http_integrations_body_t *body,
    redisReply *reply);
static ngx_int_t ngx_http_integrations_whoami(ngx_http_request_t *r,
    ngx_integrations_identity_t *id);
static ngx_int_t ngx_http_integrations_utf8(ngx_pool_t *pool,
    ngx_str_t *s);
static ngx_int_t ngx_http_integrations_send(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx,
    ngx_http_integrations_body_t *body);
static ngx_integrations_redis_conf_t *ngx_http_integrations_redis(
    ngx_http_request_t *r);

static ngx_int_t ngx_http_integrations_add(ngx_http_integrations_body_t *body,
    u_char *p, size_t len);
static ngx_int_t ngx_http_integrations_add_items(
    ngx_http_integrations_body_t *body, ngx_array_t *parts);
static ngx_int_t ngx_http_integrations_query(ngx_http_request_t *r,
    ngx_uint_t params, ngx_uint_t def, ngx_uint_t max,
    ngx_http_integrations_query_t *q);
static void ngx_http_integrations_invalid(ngx_http_integrations_query_t *q,
    ngx_uint_t p, const char *message);
static ngx_int_t ngx_http_integrations_search(ngx_pool_t *pool,
    ngx_str_t *s);
static ngx_int_t ngx_http_integrations_uint(ngx_str_t *s, uint64_t *v);
static ngx_uint_t ngx_http_integrations_escapes_ok(ngx_str_t *s);
static ngx_int_t ngx_http_integrations_bool(ngx_str_t *s);
static ngx_int_t ngx_http_integrations_time(ngx_pool_t *pool, ngx_str_t *s,
    ngx_uint_t end_of_day, ngx_str_t *score, int64_t *sec, int64_t *nsec);
static ngx_int_t ngx_http_integrations_bad_request(ngx_http_request_t *r,
    ngx_http_integrations_query_t *q);
static ngx_int_t ngx_http_integrations_unauthorized(ngx_http_request_t *r);
static ngx_int_t ngx_http_integrations_not_allowed(ngx_http_request_t *r);
static ngx_int_t ngx_http_integrations_unavailable(ngx_http_request_t *r);


static ngx_str_t  ngx_http_integrations_params[] = {
    ngx_string("page"),
    ngx_string("page_size"),
    ngx_string("limit"),
    ngx_string("status"),
    ngx_string("search"),
    ngx_string("dateFrom"),
    ngx_string("dateTo"),
    ngx_string("liveOnly"),
    ngx_string("updated_since"),
    ngx_string("category_id"),
    ngx_string("scanned"),
    ngx_string("promo")
};


/*
 * found(text): does the stored (folded) text hold the search term, or
 * its ASCII-lowered form after a "\n" (text imported before folding)?
 */
#define NGX_HTTP_INTEGRATIONS_FOUND                                           \
"local search2\n"                                                            \
"do\n"                                                                       \
"  local nl = string.find(search, string.char(10), 1, true)\n"              \
"  if nl then\n"                                                             \
"    search, search2 = string.sub(search, 1, nl - 1),\n"                     \
"      string.sub(search, nl + 1)\n"                                         \
"  end\n"                                                                    \
"end\n"                                                                      \
"local function found(text)\n"                                               \
"  return string.find(text, search, 1, true)\n"                              \
"    or (search2 and string.find(text, search2, 1, true))\n"                 \
"end\n"


/*
 * Events of one data set.
 * KEYS[1]: D = P{o:<org>}:<env>.
 * ARGV: start, size, status (lowercase or ""), search (lowercase or ""),
 * min and max score of starts ("-inf"/"+inf", "(" = exclusive), now (the
 * liveOnly filter, or ""), updated_since (or ""), where a continued walk
 * starts: "<member> <score>" of the last event read (or "").
 * Returns {total, {items}}; a filter walks the events in order, and stops
 * after 5000 events or 5 ms (20,000 took 65-85 ms of Redis in one call):
 * then, and for every continued call, it returns a slice of a walk as the
 * attendees script does, {2, matches, "", "", {items}, where to continue
 * ("": done), 0, -1, items in the slice}. A walk continues after the last
 * event read (its ties at the same starts counted by rank, or one by one
 * if it moved or left), so that events added or deleted meanwhile do not
 * shift it.
 */
static const char  ngx_http_integrations_events_script[] =
"local D = KEYS[1]\n"
"local start, size = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
"local status, search = ARGV[3], ARGV[4]\n"
NGX_HTTP_INTEGRATIONS_FOUND
"local dmin, dmax = ARGV[5], ARGV[6]\n"
"local now, since = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
"local z, ev = D .. ':events', D .. ':ev:'\n"
"local total, out = 0, {}\n"
"if status == '' and search == '' and not now and not since then\n"
"  local ids\n"
"  if dmin == '-inf' and dmax == '+inf' then\n"
"    total = redis.call('ZCARD', z)\n"
"    ids = redis.call('ZRANGE', z, start, start + size - 1)\n"
"  else\n"
"    total = redis.call('ZCOUNT', z, dmin, dmax)\n"
"    ids = redis.call('ZRANGEBYSCORE', z, dmin, dmax, 'LIMIT', start, size)\n"
"  end\n"
"  if #ids > 0 then\n"
"    local items = redis.call('HMGET', D .. ':items', unpack(ids))\n"
"    for _, it in ipairs(items) do\n"
"      if it then out[#out + 1] = it end\n"
"    end\n"
"  end\n"
"  return {total, out}\n"
"end\n"
"local cont = ARGV[9] ~= ''\n"
"local lo, off, nxt, walked = dmin, 0, '', 0\n"
"if cont then\n"
"  local sp = string.find(ARGV[9], ' ', 1, true)\n"
"  local lm = string.sub(ARGV[9], 1, sp - 1)\n"
"  local ls = string.sub(ARGV[9], sp + 1)\n"
"  lo = ls\n"
"  if redis.call('ZSCORE', z, lm) == ls then\n"
"    off = redis.call('ZRANK', z, lm) + 1\n"
"      - redis.call('ZCOUNT', z, '-inf', '(' .. ls)\n"
"  else\n"
"    for _, v in ipairs(redis.call('ZRANGEBYSCORE', z, ls, ls)) do\n"
"      if v <= lm then off = off + 1 end\n"
"    end\n"
"  end\n"
"end\n"
"local clock = redis.call('TIME')\n"
"local t0 = clock[1] * 1000 + math.floor(clock[2] / 1000)\n"
"while true do\n"
"  local ids = redis.call('ZRANGEBYSCORE', z, lo, dmax, 'LIMIT', off, 500)\n"
"  for i = 1, #ids do\n"
"    local e = ev .. ids[i]\n"
"    local f = redis.call('HMGET', e, 'status', 'search', 'published',\n"
"      'ends', 'starts', 'updated')\n"
"    local ok = true\n"
"    if status ~= '' and string.lower(f[1] or '') ~= status then\n"
"      ok = false\n"
"    end\n"
"    if ok and search ~= '' and not found(f[2] or '') then\n"
"      ok = false\n"
"    end\n"
"    if ok and now then\n"
"      local t = tonumber(f[4] or '') or tonumber(f[5] or '')\n"
"      if f[3] ~= '1' or not t or t < now then ok = false end\n"
"    end\n"
"    if ok and since and (tonumber(f[6] or '') or -1 / 0) < since then\n"
"      ok = false\n"
"    end\n"
"    if ok then\n"
"      total = total + 1\n"
"      if total > start and #out < size then\n"
"        local it = redis.call('HGET', e, 'item')\n"
"        if it then out[#out + 1] = it end\n"
"      end\n"
"    end\n"
"  end\n"
"  off, walked = off + #ids, walked + #ids\n"
"  if #ids < 500 then break end\n"
"  clock = redis.call('TIME')\n"
"  if walked >= 5000\n"
"    or clock[1] * 1000 + math.floor(clock[2] / 1000) - t0 >= 5\n"
"  then\n"
"    nxt = ids[#ids] .. ' ' .. redis.call('ZSCORE', z, ids[#ids])\n"
"    break\n"
"  end\n"
"end\n"
"if not cont and nxt == '' then return {total, out} end\n"
"return {2, total, '', '', out, nxt, 0, -1, #out}\n";


/*
 * One field of one event.
 * KEYS[1]: D. ARGV: event slug or id, field (detail, tt, av).
 * Returns {0} (no such event) or {1, id without padding, value or ""}.
 */
static const char  ngx_http_integrations_event_script[] =
"local D, ref = KEYS[1], ARGV[1]\n"
"local id = redis.call('HGET', D .. ':slugs', ref)\n"
"if not id then\n"
"  if #ref > 20 or not string.find(ref, '^%d+$') then return {0} end\n"
"  id = string.rep('0', 20 - #ref) .. ref\n"
"end\n"
"local f = redis.call('HMGET', D .. ':ev:' .. id, 'slug', ARGV[2], 'item')\n"
"if not f[1] then return {0} end\n"
"local n = string.gsub(id, '^0+', '')\n"
"if n == '' then n = '0' end\n"
"return {1, n, f[2] or (ARGV[2] == 'detail' and f[3]) or ''}\n";


/*
 * Attendees of one event.
 * KEYS[1]: D. ARGV: event slug or id, start, size, search (lowercase or
 * ""), category id (or ""), scanned ("1", "0" or ""), promo (same),
 * updated_since (or ""), then for a continued call: where to continue,
 * "<member> <score>" of the last member read, and the driver (-1 for a
 * collect) (else "", "").
 * Returns {0} (no such event), {1, total, eventFields, categoryFields,
 * {items}}, for a slice of a walk {2, matches in the slice,
 * eventFields, categoryFields, {items}, where to continue ("": done),
 * driver, exact total (-1: count the matches), items in the slice}, or
 * for a slice of a collect {3, eventFields, categoryFields, {member,
 * createdTime, ...}, where to continue ("": done), the key of E:ai}.
 *
 * Items come back as an array, not joined: a large Lua string costs Redis
 * (the shared resource) far more than the elements of an array reply.
 *
 * One index filter alone is answered from its sorted set by rank (ZCARD +
 * ZRANGE): nothing else of the event is read. Several filters walk the
 * smallest candidate set in order and test the others (ZMSCORE and, for
 * a search, HMGET of E:as, a chunk of 1000 candidates at a time).
 * updated_since alone walks E:att until the page is full, unless its
 * match set is small: up to 1000 matches are sorted by createdTime here;
 * up to 50000 are collected with their createdTime, in slices, and nginx
 * sorts them and fetches the page (a sort of 50000 in Lua held Redis for
 * 90 ms). A collect walks E:upd newest first: a member updated meanwhile
 * moves to the part already read, so no unchanged match is missed.
 * Walks and collects continue from the member they read last, found again
 * by its rank (or, if it moved or left, by its score and its ties), not
 * from a rank that writes between the calls shift. A search reads E:as
 * for every candidate: it scans the event.
 * A walk or a collect stops after 10000 candidates or 5 ms, whichever
 * comes first, and is continued by another call, so that Redis is never
 * held for long by one request.
 */
static const char  ngx_http_integrations_attendees_script[] =
"local D, ref = KEYS[1], ARGV[1]\n"
"local start, size = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
"local search, cat, scanned, promo = ARGV[4], ARGV[5], ARGV[6], ARGV[7]\n"
NGX_HTTP_INTEGRATIONS_FOUND
"local since = tonumber(ARGV[8])\n"
"local cont = ARGV[9] ~= ''\n"
"local id = redis.call('HGET', D .. ':slugs', ref)\n"
"if not id then\n"
"  if #ref > 20 or not string.find(ref, '^%d+$') then return {0} end\n"
"  id = string.rep('0', 20 - #ref) .. ref\n"
"end\n"
"local E = D .. ':ev:' .. id\n"
"local h = redis.call('HMGET', E, 'slug', 'ef', 'cf')\n"
"if not h[1] then return {0} end\n"
"local ef, cf = h[2] or '[]', h[3] or '[]'\n"
"local att, upd, as = E .. ':att', E .. ':upd', E .. ':as'\n"
"local sets = {}\n"
"if cat ~= '' then sets[#sets + 1] = E .. ':c:' .. cat end\n"
"if scanned ~= '' then sets[#sets + 1] = E .. ':s' .. scanned end\n"
"if promo ~= '' then sets[#sets + 1] = E .. ':p' .. promo end\n"
"local function items(page)\n"
"  if #page == 0 then return {} end\n"
"  return redis.call('HMGET', E .. ':ai', unpack(page))\n"
"end\n"
"if not cont and search == '' and not since and #sets <= 1 then\n"
"  local z = sets[1] or att\n"
"  local page = redis.call('ZRANGE', z, start, start + size - 1)\n"
"  return {1, redis.call('ZCARD', z), ef, cf, items(page)}\n"
"end\n"
"local function pass(ms, list)\n"
"  for i = 1, #list do\n"
"    if #ms == 0 then return ms end\n"
"    local sc, keep = redis.call('ZMSCORE', list[i], unpack(ms)), {}\n"
"    for j = 1, #ms do\n"
"      if sc[j] then keep[#keep + 1] = ms[j] end\n"
"    end\n"
"    ms = keep\n"
"  end\n"
"  if search ~= '' and #ms > 0 then\n"
"    local sv, keep = redis.call('HMGET', as, unpack(ms)), {}\n"
"    for j = 1, #ms do\n"
"      if sv[j] and found(sv[j]) then\n"
"        keep[#keep + 1] = ms[j]\n"
"      end\n"
"    end\n"
"    ms = keep\n"
"  end\n"
"  return ms\n"
"end\n"
"local function ms_now()\n"
"  local t = redis.call('TIME')\n"
"  return t[1] * 1000 + math.floor(t[2] / 1000)\n"
"end\n"
"local t0 = ms_now()\n"
"local function spent(walked)\n"
"  return walked >= 10000 or ms_now() - t0 >= 5\n"
"end\n"
"local drv, di, n = att, 0, 0\n"
"if cont then\n"
"  di = tonumber(ARGV[10])\n"
"  if di > 0 then drv = sets[di] end\n"
"else\n"
"  n = redis.call('ZCARD', att)\n"
"  for i = 1, #sets do\n"
"    local c = redis.call('ZCARD', sets[i])\n"
"    if c < n then drv, n, di = sets[i], c, i end\n"
"  end\n"
"end\n"
"local others = {}\n"
"for i = 1, #sets do\n"
"  if i ~= di then others[#others + 1] = sets[i] end\n"
"end\n"
"local known = since and #sets == 0 and search == ''\n"
"local m = since and redis.call('ZCOUNT', upd, ARGV[8], '+inf')\n"
"local total, page = 0, {}\n"
"if not cont then\n"
"  if known and start >= m then return {1, m, ef, cf, {}} end\n"
"  if known and m >= n then\n"
"    local page = redis.call('ZRANGE', att, start, start + size - 1)\n"
"    return {1, m, ef, cf, items(page)}\n"
"  end\n"
"  local sorted = false\n"
"  if known then\n"
"    sorted = m * 4 < math.min(n, (start + size) * n / math.max(m, 1))\n"
"  elseif since then\n"
"    sorted = m < n\n"
"  end\n"
"  if sorted and m <= 1000 then\n"
"    local ms = pass(redis.call('ZRANGEBYSCORE', upd, ARGV[8], '+inf'), sets)\n"
"    local keep = {}\n"
"    if #ms > 0 then\n"
"      local c = redis.call('ZMSCORE', att, unpack(ms))\n"
"      for j = 1, #ms do\n"
"        if c[j] then keep[#keep + 1] = {tonumber(c[j]), ms[j]} end\n"
"      end\n"
"    end\n"
"    table.sort(keep, function(a, b)\n"
"      if a[1] ~= b[1] then return a[1] < b[1] end\n"
"      return a[2] < b[2]\n"
"    end)\n"
"    for i = start + 1, math.min(start + size, #keep) do\n"
"      page[#page + 1] = keep[i][2]\n"
"    end\n"
"    return {1, #keep, ef, cf, items(page)}\n"
"  end\n"
"  if sorted and m <= 50000 then di = -1 end\n"
"end\n"
"local function resume(z, desc)\n"
"  local sp = string.find(ARGV[9], ' ', 1, true)\n"
"  local lm = string.sub(ARGV[9], 1, sp - 1)\n"
"  local ls = string.sub(ARGV[9], sp + 1)\n"
"  if redis.call('ZSCORE', z, lm) == ls then\n"
"    return redis.call(desc and 'ZREVRANK' or 'ZRANK', z, lm) + 1\n"
"  end\n"
"  local n = desc and redis.call('ZCOUNT', z, '(' .. ls, '+inf')\n"
"    or redis.call('ZCOUNT', z, '-inf', '(' .. ls)\n"
"  for _, v in ipairs(redis.call('ZRANGEBYSCORE', z, ls, ls)) do\n"
"    if (desc and v >= lm) or (not desc and v <= lm) then n = n + 1 end\n"
"  end\n"
"  return n\n"
"end\n"
"local off, nxt, walked = 0, '', 0\n"
"if di < 0 then\n"
"  local top, out, cur = 0, {}, ''\n"
"  if cont then top = resume(upd, true) end\n"
"  while true do\n"
"    local z = redis.call('ZREVRANGE', upd, top, top + 999, 'WITHSCORES')\n"
"    local n = #z\n"
"    if n > 0 and tonumber(z[n]) < since then\n"
"      n = 0\n"
"      while tonumber(z[n + 2]) >= since do n = n + 2 end\n"
"    end\n"
"    local ms = {}\n"
"    for i = 1, n, 2 do ms[#ms + 1] = z[i] end\n"
"    local ok = pass(ms, sets)\n"
"    if #ok > 0 then\n"
"      local c = redis.call('ZMSCORE', att, unpack(ok))\n"
"      for j = 1, #ok do\n"
"        if c[j] then\n"
"          out[#out + 1] = ok[j]\n"
"          out[#out + 1] = c[j]\n"
"        end\n"
"      end\n"
"    end\n"
"    top, walked = top + #ms, walked + #ms\n"
"    if n < 2000 then break end\n"
"    if spent(walked) then cur = z[n - 1] .. ' ' .. z[n] break end\n"
"  end\n"
"  return {3, ef, cf, out, cur, E .. ':ai'}\n"
"end\n"
"if cont then off = resume(drv, false) end\n"
"while true do\n"
"  local ms = redis.call('ZRANGE', drv, off, off + 999)\n"
"  local ok = pass(ms, others)\n"
"  if since and #ok > 0 then\n"
"    local u, keep = redis.call('ZMSCORE', upd, unpack(ok)), {}\n"
"    for j = 1, #ok do\n"
"      if u[j] and tonumber(u[j]) >= since then keep[#keep + 1] = ok[j] end\n"
"    end\n"
"    ok = keep\n"
"  end\n"
"  for j = 1, #ok do\n"
"    total = total + 1\n"
"    if total > start and #page < size then page[#page + 1] = ok[j] end\n"
"  end\n"
"  off, walked = off + #ms, walked + #ms\n"
"  if #ms < 1000 or (known and #page >= size) then break end\n"
"  if spent(walked) then\n"
"    nxt = ms[#ms] .. ' ' .. redis.call('ZSCORE', drv, ms[#ms])\n"
"    break\n"
"  end\n"
"end\n"
"return {2, total, ef, cf, items(page), nxt, di, known and m or -1, #page}\n";


ngx_int_t
ngx_http_integrations_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_integrations_identity_t       *id;
    ngx_http_integrations_loc_conf_t  *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_integrations_not_allowed(r);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    id = ngx_http_apikey_identity(r);

    if (id == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "integrations: no API key identity in this location; "
                      "the read API needs \"apikey on\"");
        return ngx_http_integrations_unauthorized(r);
    }

    if (ilcf->handler == NGX_INTEGRATIONS_WHOAMI) {
        return ngx_http_integrations_whoami(r, id);
    }

    return ngx_http_integrations_start(r, ilcf, id);
}


/* validates the request and sends its script */

static ngx_int_t
ngx_http_integrations_start(ngx_http_request_t *r,
    ngx_http_integrations_loc_conf_t *ilcf, ngx_integrations_identity_t *id)
{
    u_char                                 *p;
    int64_t                                 from, to, start, from_ns,
                                            to_ns;
    ngx_int_t                               rc;
    ngx_str_t                              *a, ev, env, part[4], *v;
    ngx_uint_t                              params, def, max, i;
    ngx_http_integrations_ctx_t            *ctx;
    ngx_http_integrations_query_t          *q;
    ngx_integrations_cache_entry_t         *e;
    ngx_http_integrations_prefetch_t       *pf;
    ngx_integrations_redis_conf_t          *rcf;
    ngx_http_integrations_main_conf_t      *imcf;
    ngx_http_integrations_handlers_main_t  *hm;

    imcf = ngx_http_get_module_main_conf(r, ngx_http_integrations_module);
    rcf = &imcf->redis;
    hm = imcf->handlers;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_integrations_ctx_t));
    q = ngx_pcalloc(r->pool, sizeof(ngx_http_integrations_query_t));
    if (ctx == NULL || q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->handler = ilcf->handler;
    a = ctx->args;

    env = id->env;
    if (env.len == 0) {
        ngx_str_set(&env, "live");
    }

    ngx_str_set(&part[0], "{o:");
    part[1] = id->org;
    ngx_str_set(&part[2], "}:");
    part[3] = env;

    if (ngx_integrations_redis_key(r->pool, rcf, &a[0], part, 4) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&ev);

    if (ilcf->event) {
        if (ngx_http_complex_value(r, ilcf->event, &ev) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ev.len == 0) {
            return ngx_integrations_json_error(r, NGX_HTTP_NOT_FOUND,
                                               "Event not found");
        }
    }

    switch (ilcf->handler) {

    case NGX_INTEGRATIONS_EVENTS:
        params = NGX_HTTP_INTEGRATIONS_EVENTS_PARAMS;
        def = NGX_HTTP_INTEGRATIONS_EVENTS_SIZE;
        max = NGX_HTTP_INTEGRATIONS_EVENTS_MAX;
        break;

    case NGX_INTEGRATIONS_ATTENDEES:
        params = NGX_HTTP_INTEGRATIONS_ATTENDEES_PARAMS;
        def = NGX_HTTP_INTEGRATIONS_ATTENDEES_SIZE;
        max = NGX_HTTP_INTEGRATIONS_ATTENDEES_MAX;
        break;

    default:
        /* event, ticket types, availability: the query is not read */
        ctx->cmd.script = hm->event;
        ctx->cmd.nargs = 3;
        a[1] = ev;

        if (ilcf->handler == NGX_INTEGRATIONS_EVENT) {
            ngx_str_set(&a[2], "detail");

        } else if (ilcf->handler == NGX_INTEGRATIONS_TICKET_TYPES) {
            ngx_str_set(&a[2], "tt");

        } else {
            ngx_str_set(&a[2], "av");
        }

        goto send;
    }

    if (ngx_http_integrations_query(r, params, def, max, q) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = q->value;

    /* dates: ISO-8601 in the query, epoch seconds as Redis scores */

    from = 0;
    to = 0;
    from_ns = 0;
    to_ns = 0;

    if (v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM].data
        && ngx_http_integrations_time(r->pool,
                                      &v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM],
                                      0, &v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM],
                                      &from, &from_ns)
           != NGX_OK)
    {
        ngx_http_integrations_invalid(q, NGX_HTTP_INTEGRATIONS_P_DATE_FROM,
                                      "must be an ISO-8601 date or date-time"
                                      ", e.g. 2026-09-01T19:00:00Z");
        ngx_str_null(&v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM]);
    }

    if (v[NGX_HTTP_INTEGRATIONS_P_DATE_TO].data
        && ngx_http_integrations_time(r->pool,
                                      &v[NGX_HTTP_INTEGRATIONS_P_DATE_TO],
                                      1, &v[NGX_HTTP_INTEGRATIONS_P_DATE_TO],
                                      &to, &to_ns)
           != NGX_OK)
    {
        ngx_http_integrations_invalid(q, NGX_HTTP_INTEGRATIONS_P_DATE_TO,
                                      "must be an ISO-8601 date or date-time"
                                      ", e.g. 2026-09-30T23:59:59Z");
        ngx_str_null(&v[NGX_HTTP_INTEGRATIONS_P_DATE_TO]);
    }

    /*
     * A date alone as dateTo ends where the next day starts ("(" score):
     * before dateFrom if that is at or before it; else to the nanosecond.
     */
    if (v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM].data
        && v[NGX_HTTP_INTEGRATIONS_P_DATE_TO].data
        && (v[NGX_HTTP_INTEGRATIONS_P_DATE_TO].data[0] == '('
            ? to <= from
            : to < from || (to == from && to_ns < from_ns)))
    {
        ngx_http_integrations_invalid(q, NGX_HTTP_INTEGRATIONS_P_DATE_TO,
                                      "must not be before dateFrom");
    }

    if (v[NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE].data
        && ngx_http_integrations_time(r->pool,
                                  &v[NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE],
                                  0, &v[NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE],
                                  &from, &from_ns)
           != NGX_OK)
    {
        ngx_http_integrations_invalid(q,
                                      NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE,
                                      "must be an ISO-8601 date or date-time"
                                      ", e.g. 2026-09-01T00:00:00Z");
    }

    if (q->nerrors) {
        return ngx_http_integrations_bad_request(r, q);
    }

    ctx->page = q->page;
    ctx->size = q->size;

    if (ngx_array_init(&ctx->parts, r->pool, 2, sizeof(redisReply *))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if ((uint64_t) (q->page - 1)
        > (uint64_t) NGX_HTTP_INTEGRATIONS_MAX_START / q->size)
    {
        start = NGX_HTTP_INTEGRATIONS_MAX_START;

    } else {
        start = (int64_t) (q->page - 1) * q->size;
    }

    p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ilcf->handler == NGX_INTEGRATIONS_EVENTS) {
        ctx->cmd.script = hm->events;
        ctx->cmd.nargs = 10;

        a[1].data = p;
        p = ngx_integrations_decimal(p, start);
        a[1].len = p - a[1].data;

        a[2].data = p;
        p = ngx_integrations_decimal(p, (int64_t) q->size);
        a[2].len = p - a[2].data;

        a[3] = v[NGX_HTTP_INTEGRATIONS_P_STATUS];
        a[4] = v[NGX_HTTP_INTEGRATIONS_P_SEARCH];

        if (v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM].data) {
            a[5] = v[NGX_HTTP_INTEGRATIONS_P_DATE_FROM];

        } else {
            ngx_str_set(&a[5], "-inf");
        }

        if (v[NGX_HTTP_INTEGRATIONS_P_DATE_TO].data) {
            a[6] = v[NGX_HTTP_INTEGRATIONS_P_DATE_TO];

        } else {
            ngx_str_set(&a[6], "+inf");
        }

        if (v[NGX_HTTP_INTEGRATIONS_P_LIVE_ONLY].len) {
            a[7].data = p;
            p = ngx_sprintf(p, "%T", ngx_time());
            a[7].len = p - a[7].data;
        }

        a[8] = v[NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE];
        ngx_str_null(&a[9]);

    } else {
        ctx->cmd.script = hm->attendees;

        a[1] = ev;

        a[2].data = p;
        p = ngx_integrations_decimal(p, start);
        a[2].len = p - a[2].data;

        a[3].data = p;
        p = ngx_integrations_decimal(p, (int64_t) q->size);
        a[3].len = p - a[3].data;

        a[4] = v[NGX_HTTP_INTEGRATIONS_P_SEARCH];
        a[5] = v[NGX_HTTP_INTEGRATIONS_P_CATEGORY_ID];
        a[6] = v[NGX_HTTP_INTEGRATIONS_P_SCANNED];
        a[7] = v[NGX_HTTP_INTEGRATIONS_P_PROMO];
        a[8] = v[NGX_HTTP_INTEGRATIONS_P_UPDATED_SINCE];
        ngx_str_null(&a[9]);
        ngx_str_null(&a[10]);

        ctx->cmd.nargs = 11;
    }

    ctx->skip = start;
    ctx->need = q->size;

send:

    for (i = 0; i < ctx->cmd.nargs; i++) {
        if (a[i].data == NULL) {
            a[i].data = (u_char *) "";
        }
    }

    ctx->cmd.nkeys = 1;
    ctx->cmd.args = a;
    ctx->cmd.handler = ngx_http_integrations_reply;
    ctx->cmd.data = ctx;

    /* liveOnly depends on the time, not only on the data */
    if (ngx_integrations_cache_enabled()
        && !(ilcf->handler == NGX_INTEGRATIONS_EVENTS && a[7].len))
    {
        if (ngx_http_integrations_cache_key(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        e = ngx_integrations_cache_lookup(&ctx->cache_key, ctx->cache_hash);
        pf = ngx_http_integrations_prefetch_of(r, id, &a[0]);

        if (pf == NULL) {
            rc = ngx_integrations_redis_send_r(r, rcf, &ctx->version_cmd);

            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (rc == NGX_DECLINED) {
                return ngx_http_integrations_unavailable(r);
            }

        } else if (!pf->done) {
            /* its reply comes right behind the key's */
            pf->ctx = ctx;

        } else if (pf->failed) {
            return ngx_http_integrations_unavailable(r);

        } else {
            ctx->version = pf->version;

            if (e && ngx_http_integrations_current(e, &ctx->version)) {
                return ngx_http_integrations_send_cached(r, e);
            }

            e = NULL;
        }

        if (e) {
            /* the version's reply decides: the page, or the script */
            ctx->revalidating = 1;
            r->main->count++;
            return NGX_DONE;
        }
    }

    rc = ngx_integrations_redis_send_r(r, rcf, &ctx->cmd);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_integrations_unavailable(r);
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_integrations_reply(void *data, redisReply *reply)
{
    ngx_http_integrations_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    rc = ctx->fetching ? ngx_http_integrations_items_page(r, ctx, reply)
                       : ngx_http_integrations_respond(r, ctx, reply);

    if (ctx->more) {
        /* another slice of a scan is on its way */
        ctx->more = 0;
        return;
    }

    /* r and ctx may be gone after this */
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the page's identity: the handler, the page and the script's arguments */

static ngx_int_t
ngx_http_integrations_cache_key(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *a;
    ngx_uint_t   i;

    a = ctx->args;
    len = 3 * (NGX_INT64_LEN + 1);

    for (i = 0; i < ctx->cmd.nargs; i++) {
        len += NGX_INT64_LEN + 2 + a[i].len;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* by hand: per request, ngx_sprintf took 3k instructions here */
    ctx->cache_key.data = p;
    p = ngx_integrations_decimal(p, (int64_t) ctx->handler);
    *p++ = ' ';
    p = ngx_integrations_decimal(p, (int64_t) ctx->page);
    *p++ = ' ';
    p = ngx_integrations_decimal(p, (int64_t) ctx->size);

    /* length-prefixed: no argument can pass for two */
    for (i = 0; i < ctx->cmd.nargs; i++) {
        *p++ = ' ';
        p = ngx_integrations_decimal(p, (int64_t) a[i].len);
        *p++ = ':';
        p = ngx_cpymem(p, a[i].data, a[i].len);
    }

    ctx->cache_key.len = p - ctx->cache_key.data;
    ctx->cache_hash = ngx_integrations_cache_hash(&ctx->cache_key);

    if (ngx_http_integrations_version_cmd(r->pool, &ctx->version_cmd,
                                          ctx->version_args, &a[0])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->version_cmd.handler = ngx_http_integrations_version;
    ctx->version_cmd.data = ctx;

    return NGX_OK;
}


/* the access phase's prefetch, if it asked about D; else remembers D */

static ngx_http_integrations_prefetch_t *
ngx_http_integrations_prefetch_of(ngx_http_request_t *r,
    ngx_integrations_identity_t *id, ngx_str_t *D)
{
    u_char                             buf[NGX_HTTP_INTEGRATIONS_KEY_NAME];
    ngx_buf_t                          b;
    ngx_str_t                          name, none;
    ngx_chain_t                        cl;
    ngx_http_integrations_prefetch_t  *pf;

    pf = id->prefetch;

    if (pf && pf->D.len == D->len
        && ngx_memcmp(pf->D.data, D->data, D->len) == 0)
    {
        return pf;
    }

    if (ngx_http_integrations_key_name(&id->id, buf, &name) != NGX_OK) {
        return NULL;
    }

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.pos = D->data;
    b.last = D->data + D->len;
    b.memory = 1;
    cl.buf = &b;
    cl.next = NULL;
    ngx_str_null(&none);

    (void) ngx_integrations_cache_store(&name,
                                        ngx_integrations_cache_hash(&name),
                                        &none, &none, &cl, D->len);
    return NULL;
}


/* "k <id>": where the worker keeps a key's data set in the page cache */

static ngx_int_t
ngx_http_integrations_key_name(ngx_str_t *key_id, u_char *buf,
    ngx_str_t *name)
{
    if (key_id->len > NGX_HTTP_INTEGRATIONS_KEY_NAME - 2) {
        return NGX_DECLINED;
    }

    name->data = buf;
    buf[0] = 'k';
    buf[1] = ' ';
    name->len = ngx_cpymem(buf + 2, key_id->data, key_id->len) - buf;

    return NGX_OK;
}


/* GET D:ver */

static ngx_int_t
ngx_http_integrations_version_cmd(ngx_pool_t *pool,
    ngx_integrations_redis_cmd_t *cmd, ngx_str_t *args, ngx_str_t *D)
{
    u_char  *p;

    p = ngx_pnalloc(pool, D->len + sizeof(":ver") - 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&args[0], "GET");
    args[1].data = p;
    p = ngx_cpymem(p, D->data, D->len);
    p = ngx_cpymem(p, ":ver", sizeof(":ver") - 1);
    args[1].len = p - args[1].data;

    cmd->nargs = 2;
    cmd->args = args;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_integrations_current(ngx_integrations_cache_entry_t *e,
    ngx_str_t *version)
{
    return version->len
           && e->version.len == version->len
           && ngx_memcmp(e->version.data, version->data, version->len) == 0;
}


/*
 * The worker remembers which data set each key read ("k <id>" in the page
 * cache), so that the key's next request can ask for its version early.
 * A key's organization and environment never change.
 */

void *
ngx_http_integrations_prefetch(ngx_http_request_t *r, ngx_str_t *key_id)
{
    u_char                              buf[NGX_HTTP_INTEGRATIONS_KEY_NAME];
    ngx_str_t                           name;
    ngx_http_integrations_prefetch_t   *pf;
    ngx_integrations_cache_entry_t     *e;
    ngx_http_integrations_loc_conf_t   *ilcf;

    ilcf = ngx_http_get_module_loc_conf(r, ngx_http_integrations_module);

    if (ilcf->handler == 0 || ilcf->handler == NGX_INTEGRATIONS_WHOAMI
        || !ngx_integrations_cache_enabled()
        || ngx_http_integrations_key_name(key_id, buf, &name) != NGX_OK)
    {
        return NULL;
    }

    e = ngx_integrations_cache_lookup(&name,
                                      ngx_integrations_cache_hash(&name));
    if (e == NULL) {
        return NULL;
    }

    pf = ngx_pcalloc(r->pool, sizeof(ngx_http_integrations_prefetch_t));
    if (pf == NULL) {
        return NULL;
    }

    pf->request = r;
    pf->D.data = ngx_pnalloc(r->pool, e->len);
    if (pf->D.data == NULL) {
        return NULL;
    }

    ngx_memcpy(pf->D.data, e->body, e->len);
    pf->D.len = e->len;

    if (ngx_http_integrations_version_cmd(r->pool, &pf->cmd, pf->args,
                                          &pf->D)
        != NGX_OK)
    {
        return NULL;
    }

    pf->cmd.handler = ngx_http_integrations_prefetched;
    pf->cmd.data = pf;

    if (ngx_integrations_redis_send_r(r, ngx_http_integrations_redis(r),
                                      &pf->cmd)
        != NGX_OK)
    {
        return NULL;
    }

    return pf;
}


static void
ngx_http_integrations_prefetched(void *data, redisReply *reply)
{
    ngx_http_integrations_prefetch_t  *pf = data;

    pf->done = 1;
    pf->failed = (reply == NULL);

    ngx_http_integrations_version_copy(pf->request->pool, reply,
                                       &pf->version);

    if (pf->ctx) {
        /* the content handler is waiting: as if it had asked itself */
        pf->ctx->version = pf->version;
        ngx_http_integrations_versioned(pf->ctx, pf->failed);
    }
}


/* nil: a data set no import versioned yet, never cached */

static void
ngx_http_integrations_version_copy(ngx_pool_t *pool, redisReply *reply,
    ngx_str_t *version)
{
    if (reply == NULL || reply->type != REDIS_REPLY_STRING
        || reply->len == 0)
    {
        return;
    }

    version->data = ngx_pnalloc(pool, reply->len);

    if (version->data) {
        ngx_memcpy(version->data, reply->str, reply->len);
        version->len = reply->len;
    }
}


/*
 * D:ver's reply. On a miss the script follows on its own; when a page is
 * cached, this reply decides whether it is served or fetched again.
 */

static void
ngx_http_integrations_version(void *data, redisReply *reply)
{
    ngx_http_integrations_ctx_t  *ctx = data;

    ngx_http_integrations_version_copy(ctx->request->pool, reply,
                                       &ctx->version);
    ngx_http_integrations_versioned(ctx, reply == NULL);
}


/* the version is known (ctx->version, empty if none) or Redis failed */

static void
ngx_http_integrations_versioned(ngx_http_integrations_ctx_t *ctx,
    ngx_uint_t failed)
{
    ngx_int_t                        rc;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_integrations_cache_entry_t  *e;

    if (!ctx->revalidating) {
        return;
    }

    ctx->revalidating = 0;
    r = ctx->request;
    c = r->connection;

    if (failed) {
        rc = ngx_http_integrations_unavailable(r);
        goto done;
    }

    /* looked up again: the entry may have changed while Redis answered */
    e = ngx_integrations_cache_lookup(&ctx->cache_key, ctx->cache_hash);

    if (e && ngx_http_integrations_current(e, &ctx->version)) {
        rc = ngx_http_integrations_send_cached(r, e);
        goto done;
    }

    rc = ngx_integrations_redis_send_r(r,
                                       ngx_http_integrations_redis(r),
                                       &ctx->cmd);
    if (rc == NGX_OK) {
        return;
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_integrations_unavailable(r);

    } else {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

done:

    /* r may be gone after this */
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_integrations_respond(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply)
{
    ngx_int_t                      rc;
    redisReply                   **e, **part;
    ngx_http_integrations_body_t   body;

    if (reply == NULL) {
        goto unavailable;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        return ngx_http_integrations_unexpected(r, reply);
    }

    e = reply->element;

    if (ctx->handler != NGX_INTEGRATIONS_EVENTS && e[0]->integer == 0) {
        return ngx_integrations_json_error(r, NGX_HTTP_NOT_FOUND,
                                           "Event not found");
    }

    /*
     * the body points into the reply: keep it as long as the request (a
     * collect decides for itself: it copies from all but its first slice)
     */

    if (!(ctx->handler == NGX_INTEGRATIONS_ATTENDEES && e[0]->integer == 3)
        && ngx_integrations_redis_keep_reply(r->pool) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&body, sizeof(ngx_http_integrations_body_t));
    body.pool = r->pool;
    body.last = &body.out;

    rc = NGX_OK;

    switch (ctx->handler) {

    case NGX_INTEGRATIONS_EVENTS:
        if (reply->elements == 9 && e[0]->integer == 2) {
            rc = ngx_http_integrations_slice(r, ctx, reply);
            break;
        }

        if (reply->elements != 2 || e[1]->type != REDIS_REPLY_ARRAY) {
            goto malformed;
        }

        ctx->total = e[0]->integer;
        break;

    case NGX_INTEGRATIONS_ATTENDEES:
        if (e[0]->integer == 2) {
            rc = ngx_http_integrations_slice(r, ctx, reply);
            break;
        }

        if (e[0]->integer == 3) {
            rc = ngx_http_integrations_collect(r, ctx, reply);
            break;
        }

        if (reply->elements != 5 || e[1]->type != REDIS_REPLY_INTEGER
            || e[2]->type != REDIS_REPLY_STRING
            || e[3]->type != REDIS_REPLY_STRING
            || e[4]->type != REDIS_REPLY_ARRAY)
        {
            goto malformed;
        }

        ctx->total = e[1]->integer;
        ctx->ef = e[2];
        ctx->cf = e[3];
        break;

    default:
        rc = ngx_http_integrations_event(r, ctx, &body, reply);

        if (rc == NGX_DECLINED) {
            goto malformed;
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_integrations_send(r, ctx, &body);
    }

    /* a slice: another call may be on its way */

    if (rc == NGX_AGAIN) {
        ctx->more = 1;
        return NGX_OK;
    }

    if (rc == NGX_DECLINED) {
        goto malformed;
    }

    if (rc == NGX_BUSY) {
        goto unavailable;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->slices == 0) {
        part = ngx_array_push(&ctx->parts);
        if (part == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *part = e[reply->elements - 1];
    }

    if (ngx_http_integrations_list(r, ctx, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_integrations_send(r, ctx, &body);

malformed:

    ngx_integrations_redis_log_reply(r->connection->log, "integrations",
                                     NULL);

unavailable:

    return ngx_http_integrations_unavailable(r);
}


/*
 * One slice of a walk (attendees, or filtered events with "" for ef and
 * cf): {2, matches, ef, cf, items, where to continue, driver, exact
 * total, items in the slice}. NGX_AGAIN: the next slice was sent;
 * NGX_OK: the list is complete; NGX_DECLINED: a malformed reply; NGX_BUSY:
 * Redis went away.
 */

static ngx_int_t
ngx_http_integrations_slice(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply)
{
    u_char        *p;
    ngx_str_t     *a;
    ngx_uint_t     i;
    long long      matched, next, exact, got;
    redisReply   **e, **part;

    e = reply->element;

    if (reply->elements != 9) {
        return NGX_DECLINED;
    }

    for (i = 1; i < 9; i++) {
        if (e[i]->type != (i == 2 || i == 3 || i == 5
                           ? REDIS_REPLY_STRING
                           : i == 4 ? REDIS_REPLY_ARRAY : REDIS_REPLY_INTEGER))
        {
            return NGX_DECLINED;
        }
    }

    matched = e[1]->integer;
    next = e[5]->len ? 0 : -1;
    exact = e[7]->integer;
    got = e[8]->integer;

    if (matched < 0 || got < 0 || got > ctx->need) {
        return NGX_DECLINED;
    }

    ctx->slices++;

    if (ctx->ef == NULL && ctx->handler == NGX_INTEGRATIONS_ATTENDEES) {
        ctx->ef = e[2];
        ctx->cf = e[3];
    }

    if (e[4]->elements) {
        part = ngx_array_push(&ctx->parts);
        if (part == NULL) {
            return NGX_ERROR;
        }

        *part = e[4];
    }

    ctx->total += matched;
    ctx->skip -= ngx_min(matched, ctx->skip);
    ctx->need -= got;

    if (next < 0 || (exact >= 0 && ctx->need == 0)) {
        if (exact >= 0) {
            ctx->total = exact;
        }

        return NGX_OK;
    }

    /*
     * the same script, from where this slice stopped: start and size are
     * ARGV[1-2] of the events script, ARGV[2-3] of the attendees script;
     * ARGV[9] is the last member read, "<member> <score>" in this (kept)
     * reply (and ARGV[10] the attendees' driver)
     */

    a = ctx->args;
    i = (ctx->handler == NGX_INTEGRATIONS_EVENTS) ? 1 : 2;

    p = ngx_pnalloc(r->pool, 4 * NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    a[i].data = p;
    p = ngx_sprintf(p, "%L", (int64_t) ctx->skip);
    a[i].len = p - a[i].data;

    a[i + 1].data = p;
    p = ngx_sprintf(p, "%L", (int64_t) ctx->need);
    a[i + 1].len = p - a[i + 1].data;

    a[9].data = (u_char *) e[5]->str;
    a[9].len = e[5]->len;

    if (ctx->handler == NGX_INTEGRATIONS_ATTENDEES) {
        a[10].data = p;
        p = ngx_sprintf(p, "%L", (int64_t) e[6]->integer);
        a[10].len = p - a[10].data;
    }

    return ngx_http_integrations_again(r, &ctx->cmd);
}


/*
 * One slice of a collect: {3, ef, cf, {member, createdTime, ...}, the
 * cursor ("<member> <updated>" of the last read, "" when done), E:ai}.
 * The matches are gathered here (members copied: only the first slice's
 * reply is kept), sorted as E:att orders them (createdTime, then member)
 * and the page's items fetched with one HMGET.
 * NGX_AGAIN: the next slice or the HMGET was sent; NGX_OK: the page is
 * empty; NGX_DECLINED: a malformed reply; NGX_BUSY: Redis went away.
 */

static ngx_int_t
ngx_http_integrations_collect(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply)
{
    u_char                         *p;
    char                           *end;
    char                            num[NGX_HTTP_INTEGRATIONS_SCORE_LEN + 1];
    size_t                          len;
    ngx_str_t                      *a;
    ngx_uint_t                      i;
    redisReply                    **e, **m;
    ngx_http_integrations_pair_t   *pair;

    e = reply->element;

    if (reply->elements != 6
        || e[1]->type != REDIS_REPLY_STRING
        || e[2]->type != REDIS_REPLY_STRING
        || e[3]->type != REDIS_REPLY_ARRAY || e[3]->elements % 2
        || e[4]->type != REDIS_REPLY_STRING
        || e[5]->type != REDIS_REPLY_STRING)
    {
        return NGX_DECLINED;
    }

    if (ctx->slices++ == 0) {
        /* kept: ef, cf and E:ai point into this reply */
        if (ngx_integrations_redis_keep_reply(r->pool) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->ef = e[1];
        ctx->cf = e[2];
        ctx->ai = e[5];

        if (ngx_array_init(&ctx->pairs, r->pool,
                           ngx_max(e[3]->elements / 2, 16),
                           sizeof(ngx_http_integrations_pair_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    m = e[3]->element;
    len = 0;

    for (i = 0; i < e[3]->elements; i += 2) {
        if (m[i]->type != REDIS_REPLY_STRING
            || m[i + 1]->type != REDIS_REPLY_STRING
            || m[i + 1]->len == 0
            || m[i + 1]->len > NGX_HTTP_INTEGRATIONS_SCORE_LEN)
        {
            return NGX_DECLINED;
        }

        len += m[i]->len;
    }

    p = ngx_pnalloc(r->pool, len + e[4]->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < e[3]->elements; i += 2) {
        ngx_memcpy(num, m[i + 1]->str, m[i + 1]->len);
        num[m[i + 1]->len] = '\0';

        pair = ngx_array_push(&ctx->pairs);
        if (pair == NULL) {
            return NGX_ERROR;
        }

        pair->score = strtod(num, &end);
        pair->member.data = p;
        pair->member.len = m[i]->len;
        p = ngx_cpymem(p, m[i]->str, m[i]->len);

        if (end != num + m[i + 1]->len) {
            return NGX_DECLINED;
        }
    }

    if (e[4]->len == 0) {
        return ngx_http_integrations_fetch_page(r, ctx);
    }

    /* the same collect, from the last member it read */

    a = ctx->args;
    a[9].data = p;
    a[9].len = e[4]->len;
    ngx_memcpy(p, e[4]->str, e[4]->len);
    ngx_str_set(&a[10], "-1");

    return ngx_http_integrations_again(r, &ctx->cmd);
}


/*
 * Drops the members read twice (a member updated between two slices may
 * be), sorts the matches and asks for the page's items.
 */

static ngx_int_t
ngx_http_integrations_fetch_page(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx)
{
    ngx_str_t                      *a;
    ngx_uint_t                      i, j, n;
    ngx_http_integrations_pair_t   *pair;

    pair = ctx->pairs.elts;
    n = ctx->pairs.nelts;

    ngx_qsort(pair, n, sizeof(ngx_http_integrations_pair_t),
              ngx_http_integrations_member_cmp);

    for (i = 0, j = 0; i < n; i++) {
        if (j == 0 || ngx_http_integrations_member_cmp(&pair[j - 1], &pair[i])
                      != 0)
        {
            pair[j++] = pair[i];
        }
    }

    ctx->pairs.nelts = j;
    ctx->total = j;

    if ((ngx_uint_t) ctx->skip >= j) {
        return NGX_OK;
    }

    ngx_qsort(pair, j, sizeof(ngx_http_integrations_pair_t),
              ngx_http_integrations_pair_cmp);

    pair += ctx->skip;
    n = ngx_min(j - (ngx_uint_t) ctx->skip, (ngx_uint_t) ctx->need);

    a = ngx_palloc(r->pool, (2 + n) * sizeof(ngx_str_t));
    if (a == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&a[0], "HMGET");
    a[1].data = (u_char *) ctx->ai->str;
    a[1].len = ctx->ai->len;

    for (i = 0; i < n; i++) {
        a[2 + i] = pair[i].member;
    }

    ctx->items_cmd.nargs = 2 + n;
    ctx->items_cmd.args = a;
    ctx->items_cmd.handler = ngx_http_integrations_reply;
    ctx->items_cmd.data = ctx;
    ctx->fetching = 1;

    return ngx_http_integrations_again(r, &ctx->items_cmd);
}


/* one more call of a request: NGX_AGAIN sent, NGX_BUSY Redis is away */

static ngx_int_t
ngx_http_integrations_again(ngx_http_request_t *r,
    ngx_integrations_redis_cmd_t *cmd)
{
    ngx_int_t  rc;

    rc = ngx_integrations_redis_send_r(r, ngx_http_integrations_redis(r),
                                       cmd);

    if (rc == NGX_DECLINED) {
        return NGX_BUSY;
    }

    return rc == NGX_OK ? NGX_AGAIN : NGX_ERROR;
}


/* members by their bytes */

static int ngx_libc_cdecl
ngx_http_integrations_member_cmp(const void *one, const void *two)
{
    int                                  rc;
    const ngx_http_integrations_pair_t  *a, *b;

    a = one;
    b = two;

    rc = ngx_memcmp(a->member.data, b->member.data,
                    ngx_min(a->member.len, b->member.len));

    if (rc != 0) {
        return rc;
    }

    return (a->member.len > b->member.len) - (a->member.len < b->member.len);
}


/* E:att's order: createdTime, then the member's bytes */

static int ngx_libc_cdecl
ngx_http_integrations_pair_cmp(const void *one, const void *two)
{
    const ngx_http_integrations_pair_t  *a, *b;

    a = one;
    b = two;

    if (a->score != b->score) {
        return a->score < b->score ? -1 : 1;
    }

    return ngx_http_integrations_member_cmp(one, two);
}


/* the page's items of a collect */

static ngx_int_t
ngx_http_integrations_items_page(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, redisReply *reply)
{
    redisReply                   **part;
    ngx_http_integrations_body_t   body;

    if (reply == NULL) {
        return ngx_http_integrations_unavailable(r);
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        return ngx_http_integrations_unexpected(r, reply);
    }

    if (ngx_integrations_redis_keep_reply(r->pool) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    part = ngx_array_push(&ctx->parts);
    if (part == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *part = reply;

    ngx_memzero(&body, sizeof(ngx_http_integrations_body_t));
    body.pool = r->pool;
    body.last = &body.out;

    if (ngx_http_integrations_list(r, ctx, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_integrations_send(r, ctx, &body);
}


/*
 * {"items":[<joined items>],"page":P,"pageSize":S,"totalItems":T,
 *  "totalPages":N} and for attendees ,"eventFields":..,"categoryFields":..
 */

static ngx_int_t
ngx_http_integrations_list(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, ngx_http_integrations_body_t *body)
{
    u_char     *p, *tail;
    size_t      n;
    long long   total, pages;

    total = ngx_max(ctx->total, 0);
    pages = (total + ctx->size - 1) / ctx->size;

    n = sizeof("],\"page\":,\"pageSize\":,\"totalItems\":,\"totalPages\":"
               ",\"eventFields\":,\"categoryFields\":}\n")
        + NGX_INT_T_LEN * 2 + NGX_INT64_LEN * 2;

    tail = ngx_pnalloc(r->pool, n);
    if (tail == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_integrations_add(body, (u_char *) "{\"items\":[",
                                  sizeof("{\"items\":[") - 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_integrations_add_items(body, &ctx->parts) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(tail, "],\"page\":%ui,\"pageSize\":%ui,\"totalItems\":%L"
                    ",\"totalPages\":%L", ctx->page, ctx->size,
                    (int64_t) total, (int64_t) pages);

    if (ctx->ef == NULL) {
        p = ngx_cpymem(p, "}\n", 2);
        return ngx_http_integrations_add(body, tail, p - tail);
    }

    p = ngx_cpymem(p, ",\"eventFields\":", sizeof(",\"eventFields\":") - 1);

    if (ngx_http_integrations_add(body, tail, p - tail) != NGX_OK
        || ngx_http_integrations_add(body, (u_char *) ctx->ef->str,
                                     ctx->ef->len)
           != NGX_OK
        || ngx_http_integrations_add(body, (u_char *) ",\"categoryFields\":",
                                     sizeof(",\"categoryFields\":") - 1)
           != NGX_OK
        || ngx_http_integrations_add(body, (u_char *) ctx->cf->str,
                                     ctx->cf->len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_integrations_add(body, (u_char *) "}\n", 2);
}


/*
 * event: the stored detail; ticket types: {"eventId":N,"items":<tt>};
 * availability: the stored object, or {"eventId":N,"ticketTypes":[]}.
 */

static ngx_int_t
ngx_http_integrations_event(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, ngx_http_integrations_body_t *body,
    redisReply *reply)
{
    redisReply  **e;

    e = reply->element;

    if (reply->elements != 3 || e[1]->type != REDIS_REPLY_STRING
        || e[2]->type != REDIS_REPLY_STRING)
    {
        return NGX_DECLINED;
    }

    switch (ctx->handler) {

    case NGX_INTEGRATIONS_EVENT:
        if (e[2]->len == 0) {
            return NGX_DECLINED;
        }

        break;

    case NGX_INTEGRATIONS_TICKET_TYPES:
        if (ngx_http_integrations_add(body, (u_char *) "{\"eventId\":",
                                      sizeof("{\"eventId\":") - 1)
            != NGX_OK
            || ngx_http_integrations_add(body, (u_char *) e[1]->str,
                                         e[1]->len)
               != NGX_OK
            || ngx_http_integrations_add(body, (u_char *) ",\"items\":",
                                         sizeof(",\"items\":") - 1)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (e[2]->len == 0) {
            if (ngx_http_integrations_add(body, (u_char *) "[]", 2)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_http_integrations_add(body, (u_char *) e[2]->str,
                                             e[2]->len)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_integrations_add(body, (u_char *) "}\n", 2);

    default: /* NGX_INTEGRATIONS_AVAILABILITY */
        if (e[2]->len) {
            break;
        }

        if (ngx_http_integrations_add(body, (u_char *) "{\"eventId\":",
                                      sizeof("{\"eventId\":") - 1)
            != NGX_OK
            || ngx_http_integrations_add(body, (u_char *) e[1]->str,
                                         e[1]->len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_integrations_add(body,
                                         (u_char *) ",\"ticketTypes\":[]}\n",
                                         sizeof(",\"ticketTypes\":[]}\n")
                                         - 1);
    }

    if (ngx_http_integrations_add(body, (u_char *) e[2]->str, e[2]->len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_integrations_add(body, (u_char *) "\n", 1);
}


/* the identity of the key itself, without asking Redis */

static ngx_int_t
ngx_http_integrations_whoami(ngx_http_request_t *r,
    ngx_integrations_identity_t *id)
{
    u_char                        *p, *s, *e, *w, *start;
    size_t                         len;
    ngx_str_t                     *f, env, scopes, fields[3];
    ngx_tm_t                       tm;
    ngx_uint_t                     i, n;
    ngx_http_integrations_body_t   body;

    static const char             *names[] = {
        "{\"org\":\"", "\",\"keyId\":\"", "\",\"name\":\""
    };

    env = id->env;
    if (env.len == 0) {
        ngx_str_set(&env, "live");
    }

    fields[0] = id->org;
    fields[1] = id->id;
    fields[2] = id->name;
    scopes = id->scopes;

    /* these come from a key record, not from jansson: valid UTF-8 only */
    if (ngx_http_integrations_utf8(r->pool, &fields[0]) != NGX_OK
        || ngx_http_integrations_utf8(r->pool, &fields[1]) != NGX_OK
        || ngx_http_integrations_utf8(r->pool, &fields[2]) != NGX_OK
        || ngx_http_integrations_utf8(r->pool, &scopes) != NGX_OK
        || ngx_http_integrations_utf8(r->pool, &env) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NGX_TIME_T_LEN: a far-off expiry has a year of more than 4 digits */
    len = sizeof("{\"org\":\"\",\"keyId\":\"\",\"name\":\"\",\"scopes\":[],"
                 "\"env\":\"\",\"expires\":\"-00-00T00:00:00Z\"}\n")
          + NGX_TIME_T_LEN
          + ngx_integrations_json_escaped_len(env.data, env.len);

    for (i = 0; i < 3; i++) {
        len += ngx_integrations_json_escaped_len(fields[i].data,
                                                 fields[i].len);
    }

    /* each scope may gain two quotes and a comma */
    len += ngx_integrations_json_escaped_len(scopes.data, scopes.len)
           + 3 * scopes.len;

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = start;

    for (i = 0; i < 3; i++) {
        f = &fields[i];
        p = ngx_cpymem(p, names[i], ngx_strlen(names[i]));
        p = ngx_integrations_json_escape(p, f->data, f->len);
    }

    p = ngx_cpymem(p, "\",\"scopes\":[", sizeof("\",\"scopes\":[") - 1);

    s = scopes.data;
    e = s + scopes.len;
    n = 0;

    while (s < e) {
        while (s < e && (*s == ' ' || *s == ',')) {
            s++;
        }

        w = s;

        while (s < e && *s != ' ' && *s != ',') {
            s++;
        }

        if (w == s) {
            break;
        }

        if (n++) {
            *p++ = ',';
        }

        *p++ = '"';
        p = ngx_integrations_json_escape(p, w, s - w);
        *p++ = '"';
    }

    p = ngx_cpymem(p, "],\"env\":\"", sizeof("],\"env\":\"") - 1);
    p = ngx_integrations_json_escape(p, env.data, env.len);

    if (id->expires > 0) {
        ngx_gmtime(id->expires, &tm);
        p = ngx_sprintf(p, "\",\"expires\":\"%4d-%02d-%02dT%02d:%02d:%02dZ"
                        "\"}\n", tm.ngx_tm_year, tm.ngx_tm_mon,
                        tm.ngx_tm_mday, tm.ngx_tm_hour, tm.ngx_tm_min,
                        tm.ngx_tm_sec);

    } else {
        p = ngx_cpymem(p, "\",\"expires\":null}\n",
                       sizeof("\",\"expires\":null}\n") - 1);
    }

    ngx_memzero(&body, sizeof(ngx_http_integrations_body_t));
    body.pool = r->pool;
    body.last = &body.out;

    if (ngx_http_integrations_add(&body, start, p - start) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_integrations_send(r, NULL, &body);
}


/* invalid UTF-8 sequences become U+FFFD (a copy is made only then) */

static ngx_int_t
ngx_http_integrations_utf8(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char    *p, *q, *end, *d, *dst;
    uint32_t   u;

    p = s->data;
    end = p + s->len;

    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        q = p;
        u = ngx_utf8_decode(&p, end - p);

        if (u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
            p = q;
            break;
        }
    }

    if (p == end) {
        return NGX_OK;
    }

    dst = ngx_pnalloc(pool, s->len * 3);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    d = ngx_cpymem(dst, s->data, p - s->data);

    while (p < end) {
        if (*p < 0x80) {
            *d++ = *p++;
            continue;
        }

        q = p;
        u = ngx_utf8_decode(&p, end - p);

        if (u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
            /* one replacement per bad lead byte, then resynchronise */
            p = q + 1;
            d = ngx_cpymem(d, "\xef\xbf\xbd", 3);
            continue;
        }

        d = ngx_cpymem(d, q, p - q);
    }

    s->data = dst;
    s->len = d - dst;

    return NGX_OK;
}


/* ETag over the chain, then 200 (or 304 by the not_modified filter) */

static ngx_int_t
ngx_http_integrations_send(ngx_http_request_t *r,
    ngx_http_integrations_ctx_t *ctx, ngx_http_integrations_body_t *body)
{
    u_char       *p, *end, *etag;
    uint64_t      h, w;
    ngx_str_t     tag;
    ngx_chain_t  *cl;

    body->buf->last_buf = (r == r->main) ? 1 : 0;
    body->buf->last_in_chain = 1;

    /*
     * A 64-bit multiply-xorshift hash, eight bytes at a time: the same
     * body always gives the same tag, and it costs far less than sending.
     */

    h = 0xcbf29ce484222325ULL ^ (uint64_t) body->len;

    for (cl = body->out; cl; cl = cl->next) {
        p = cl->buf->pos;
        end = cl->buf->last;

        while (end - p >= 8) {
            ngx_memcpy(&w, p, 8);
            h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
            h ^= h >> 29;
            p += 8;
        }

        while (p < end) {
            h = (h ^ *p++) * 0x100000001b3ULL;
        }

        h ^= h >> 31;
    }

    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    h ^= h >> 33;

    etag = ngx_pnalloc(r->pool, sizeof("\"0123456789abcdef\"") - 1);
    if (etag == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    tag.data = etag;
    tag.len = ngx_sprintf(etag, "\"%016uxL\"", h) - etag;

    if (ctx) {
        ngx_integrations_stat(pages_fetched);
    }

    if (ctx && ctx->version.len) {
        /* a page that cannot be kept is still sent */
        (void) ngx_integrations_cache_store(&ctx->cache_key,
                                            ctx->cache_hash, &ctx->version,
                                            &tag, body->out,
                                            (size_t) body->len);
    }

    return ngx_http_integrations_send_page(r, &tag, body->out, body->len);
}


/* a cached page: a buffer over the entry, held until the request ends */

static ngx_int_t
ngx_http_integrations_send_cached(ngx_http_request_t *r,
    ngx_integrations_cache_entry_t *e)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL
        || ngx_integrations_cache_hold(r->pool, e) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = e->body;
    b->last = e->body + e->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;

    ngx_integrations_stat(pages_cached);

    return ngx_http_integrations_send_page(r, &e->etag, cl, e->len);
}


static ngx_int_t
ngx_http_integrations_send_page(ngx_http_request_t *r, ngx_str_t *etag,
    ngx_chain_t *out, off_t len)
{
    ngx_table_elt_t  *t;

    t = ngx_list_push(&r->headers_out.headers);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->hash = 1;
    ngx_str_set(&t->key, "ETag");
    t->value = *etag;
#if (nginx_version >= 1023000)
    t->next = NULL;
#endif
    r->headers_out.etag = t;

    /* If-None-Match decides alone: If-Modified-Since is then ignored */
    if (r->headers_in.if_none_match) {
        r->headers_in.if_modified_since = NULL;
    }

    t = ngx_list_push(&r->headers_out.headers);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* keyed, personal data: revalidate with the ETag, never share */
    t->hash = 1;
    ngx_str_set(&t->key, "Cache-Control");
    ngx_str_set(&t->value, "private, no-cache");
#if (nginx_version >= 1023000)
    t->next = NULL;
#endif

    return ngx_integrations_json_send_chain(r, NGX_HTTP_OK, out, len);
}


static ngx_integrations_redis_conf_t *
ngx_http_integrations_redis(ngx_http_request_t *r)
{
    ngx_http_integrations_main_conf_t  *imcf;

    imcf = ngx_http_get_module_main_conf(r, ngx_http_integrations_module);

    return &imcf->redis;
}


/* appends a memory buffer over len bytes at p (not copied) */

static ngx_int_t
ngx_http_integrations_add(ngx_http_integrations_body_t *body, u_char *p,
    size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (len == 0) {
        /* an empty buffer would be an error in the output chain */
        return NGX_OK;
    }

    b = ngx_calloc_buf(body->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(body->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    b->last = p + len;
    b->start = p;
    b->end = p + len;
    b->memory = 1;

    cl->buf = b;
    cl->next = NULL;

    *body->last = cl;
    body->last = &cl->next;
    body->buf = b;
    body->len += len;

    return NGX_OK;
}


/*
 * Appends the items of the array replies in parts, separated by commas,
 * as one buffer: one allocation and one copy of the bytes per page. (A
 * buffer per item over the reply's strings was measured slower: nginx
 * writes at most 64 iovecs per writev(), so a page of 100 items took
 * several system calls, which cost more than copying ~35 KB.)
 */

static ngx_int_t
ngx_http_integrations_add_items(ngx_http_integrations_body_t *body,
    ngx_array_t *parts)
{
    u_char       *start, *p;
    size_t        len;
    ngx_uint_t    i, j, n;
    redisReply  **part, *it;

    part = parts->elts;
    len = 0;

    for (i = 0; i < parts->nelts; i++) {
        for (j = 0; j < part[i]->elements; j++) {
            it = part[i]->element[j];

            if (it->type == REDIS_REPLY_STRING) {
                len += it->len + 1;
            }
        }
    }

    if (len == 0) {
        return NGX_OK;
    }

    start = ngx_pnalloc(body->pool, len);
    if (start == NULL) {
        return NGX_ERROR;
    }

    p = start;
    n = 0;

    for (i = 0; i < parts->nelts; i++) {
        for (j = 0; j < part[i]->elements; j++) {
            it = part[i]->element[j];

            if (it->type != REDIS_REPLY_STRING || it->len == 0) {
                continue;
            }

            if (n++) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, it->str, it->len);
        }
    }

    return ngx_http_integrations_add(body, start, p - start);
}


/*
 * Reads the query string: the known parameters of this endpoint are
 * percent-decoded ("+" is a space) and checked; unknown ones are ignored;
 * a repeated one counts as its last occurrence. Every invalid parameter
 * is recorded in q->errors.
 */

static ngx_int_t
ngx_http_integrations_query(ngx_http_request_t *r, ngx_uint_t params,
    ngx_uint_t def, ngx_uint_t max, ngx_http_integrations_query_t *q)
{
    u_char      *p, *end, *amp, *eq, *d, *s, nbuf[64];
    uint64_t     n;
    ngx_int_t    b, rc;
    ngx_str_t   *v, name, raw;
    ngx_uint_t   i, k, broken;

    v = q->value;
    broken = 0;
    p = r->args.data;
    end = p + r->args.len;

    while (p < end) {
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        eq = ngx_strlchr(p, amp, '=');

        name.data = p;
        name.len = (eq ? eq : amp) - p;

        /*
         * a client may escape a name as it escapes values (page%5Fsize);
         * a name with a broken escape matches none, as nginx would drop
         * the stray "%"
         */
        if (ngx_strlchr(name.data, name.data + name.len, '%') != NULL) {
            if (name.len >= sizeof(nbuf)
                || !ngx_http_integrations_escapes_ok(&name))
            {
                p = amp + 1;
                continue;
            }

            d = nbuf;
            s = name.data;
            ngx_unescape_uri(&d, &s, name.len, 0);
            name.data = nbuf;
            name.len = d - nbuf;
        }

        for (i = 0; i < NGX_HTTP_INTEGRATIONS_P_N; i++) {
            if ((params & NGX_HTTP_INTEGRATIONS_BIT(i))
                && name.len == ngx_http_integrations_params[i].len
                && ngx_strncmp(name.data, ngx_http_integrations_params[i].data,
                               name.len) == 0)
            {
                break;
            }
        }

        if (i < NGX_HTTP_INTEGRATIONS_P_N) {
            s = eq ? eq + 1 : amp;
            d = ngx_pnalloc(r->pool, (amp - s) + 1);
            if (d == NULL) {
                return NGX_ERROR;
            }

            v[i].data = d;

            /* nginx would drop "%" or "%2" silently ("" matches all) */
            raw.data = s;
            raw.len = amp - s;

            /* the last occurrence decides, broken or not */
            if (ngx_http_integrations_escapes_ok(&raw)) {
                broken &= ~NGX_HTTP_INTEGRATIONS_BIT(i);

            } else {
                broken |= NGX_HTTP_INTEGRATIONS_BIT(i);
            }

            for (k = 0; s + k < amp; k++) {
                d[k] = (s[k] == '+') ? ' ' : s[k];
            }

            s = d;
            ngx_unescape_uri(&d, &s, k, 0);
            v[i].len = d - v[i].data;
        }

        p = amp + 1;
    }

    for (i = 0; i < NGX_HTTP_INTEGRATIONS_P_N; i++) {
        if (broken & NGX_HTTP_INTEGRATIONS_BIT(i)) {
            ngx_http_integrations_invalid(q, i, "has a malformed %-escape "
                                          "(a % itself is written %25)");
            ngx_str_null(&v[i]);
        }
    }

    /* page */

    q->page = 1;

    if (v[NGX_HTTP_INTEGRATIONS_P_PAGE].data) {
        if (ngx_http_integrations_uint(&v[NGX_HTTP_INTEGRATIONS_P_PAGE], &n)
            != NGX_OK || n == 0)
        {
            ngx_http_integrations_invalid(q, NGX_HTTP_INTEGRATIONS_P_PAGE,
                                          "must be an integer from 1 to "
                                          "999999999999999999");
        } else {
            q->page = (ngx_uint_t) n;
        }
    }

    /* page_size, or its alias limit */

    q->size = def;

    for (i = NGX_HTTP_INTEGRATIONS_P_LIMIT;
         i >= NGX_HTTP_INTEGRATIONS_P_PAGE_SIZE;
         i--)
    {
        /* page_size wins: the alias is then not read at all */
        if (v[i].data == NULL
            || (i == NGX_HTTP_INTEGRATIONS_P_LIMIT
                && v[NGX_HTTP_INTEGRATIONS_P_PAGE_SIZE].data != NULL))
        {
            continue;
        }

        if (ngx_http_integrations_uint(&v[i], &n) != NGX_OK
            || n == 0 || n > max)
        {
            ngx_http_integrations_invalid(q, i,
                max == NGX_HTTP_INTEGRATIONS_EVENTS_MAX
                ? "must be an integer from 1 to 100"
                : "must be an integer from 1 to 500");

        } else {
            q->size = (ngx_uint_t) n;
        }
    }

    /* texts: status compared in lowercase (ASCII), search folded */

    for (i = NGX_HTTP_INTEGRATIONS_P_STATUS;
         i <= NGX_HTTP_INTEGRATIONS_P_SEARCH;
         i++)
    {
        if (v[i].len > NGX_HTTP_INTEGRATIONS_MAX_TEXT) {
            ngx_http_integrations_invalid(q, i, "must be at most 256 bytes");
            continue;
        }

        if (i == NGX_HTTP_INTEGRATIONS_P_SEARCH && v[i].len) {
            rc = ngx_http_integrations_search(r->pool, &v[i]);

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == NGX_DECLINED) {
                ngx_http_integrations_invalid(q, i,
                                        "must not contain control characters");
            }

            if (rc == NGX_ABORT) {
                ngx_http_integrations_invalid(q, i, "must be UTF-8");
            }

            continue;
        }

        ngx_strlow(v[i].data, v[i].data, v[i].len);
    }

    /* booleans: "" means no filter; the scripts take "1" and "0" */

    for (i = NGX_HTTP_INTEGRATIONS_P_SCANNED;
         i <= NGX_HTTP_INTEGRATIONS_P_PROMO;
         i++)
    {
        if (v[i].data == NULL) {
            continue;
        }

        b = ngx_http_integrations_bool(&v[i]);

        if (b == NGX_ERROR) {
            ngx_http_integrations_invalid(q, i, "must be true or false");
            continue;
        }

        if (b) {
            ngx_str_set(&v[i], "1");

        } else {
            ngx_str_set(&v[i], "0");
        }
    }

    i = NGX_HTTP_INTEGRATIONS_P_LIVE_ONLY;

    if (v[i].data) {
        b = ngx_http_integrations_bool(&v[i]);

        if (b == NGX_ERROR) {
            ngx_http_integrations_invalid(q, i, "must be true or false");

        } else if (b) {
            ngx_str_set(&v[i], "1");

        } else {
            /* liveOnly=false: no filter */
            ngx_str_null(&v[i]);
        }
    }

    /* category_id: the canonical decimal, as in E:c:<id> */

    i = NGX_HTTP_INTEGRATIONS_P_CATEGORY_ID;

    if (v[i].data) {
        s = v[i].data;
        end = s + v[i].len;

        for (p = s; p < end && *p >= '0' && *p <= '9'; p++) {
            /* void */
        }

        if (s == end || p != end) {
            ngx_http_integrations_invalid(q, i,
                                          "must be a non-negative integer");

        } else {
            while (end - s > 1 && *s == '0') {
                s++;
            }

            if (end - s > 20) {
                ngx_http_integrations_invalid(q, i,
                                              "must be a non-negative "
                                              "integer");
            }

            v[i].data = s;
            v[i].len = end - s;
        }
    }

    return NGX_OK;
}


static void
ngx_http_integrations_invalid(ngx_http_integrations_query_t *q, ngx_uint_t p,
    const char *message)
{
    if (q->nerrors == NGX_HTTP_INTEGRATIONS_MAX_ERRORS) {
        return;
    }

    q->errors[q->nerrors].field = ngx_http_integrations_params[p];
    q->errors[q->nerrors].message = message;
    q->nerrors++;
}


/* digits only, at most 18 of them */

/*
 * The search term as the scripts take it: case-folded as the CLI folds the
 * stored text (ngx_integrations_fold), and, where that differs from
 * ASCII-only lowercase, "\n" and that too, since text imported before
 * 2026-12-02 was lowered in ASCII only. NGX_DECLINED: a control character
 * (the stored fields are joined by "\n"); NGX_ABORT: not UTF-8 (a piece
 * of a character would match inside others).
 */
static ngx_int_t
ngx_http_integrations_search(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char      *p, *end;
    ngx_uint_t   i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            return NGX_DECLINED;
        }
    }

    p = s->data;
    end = p + s->len;

    while (p < end) {
        if (*p < 0x80) {
            p++;

        } else if (ngx_utf8_decode(&p, end - p) > 0x10ffff) {
            return NGX_ABORT;
        }
    }

    p = ngx_pnalloc(pool, 2 * s->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_integrations_fold(p, s->data, s->len);
    ngx_strlow(p + s->len + 1, s->data, s->len);

    if (ngx_memcmp(p, p + s->len + 1, s->len) != 0) {
        p[s->len] = '\n';
        s->len = 2 * s->len + 1;

    }

    s->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_integrations_uint(ngx_str_t *s, uint64_t *v)
{
    size_t  i;

    if (s->len == 0 || s->len > 18) {
        return NGX_ERROR;
    }

    *v = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return NGX_ERROR;
        }

        *v = *v * 10 + (s->data[i] - '0');
    }

    return NGX_OK;
}


/* every "%" of s is followed by two hex digits */

static ngx_uint_t
ngx_http_integrations_escapes_ok(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '%'
            && (i + 2 >= s->len
                || ngx_hextoi(&s->data[i + 1], 2) == NGX_ERROR))
        {
            return 0;
        }
    }

    return 1;
}


/* true/false (any case), 1/0 */

static ngx_int_t
ngx_http_integrations_bool(ngx_str_t *s)
{
    if ((s->len == 4 && ngx_strncasecmp(s->data, (u_char *) "true", 4) == 0)
        || (s->len == 1 && s->data[0] == '1'))
    {
        return 1;
    }

    if ((s->len == 5 && ngx_strncasecmp(s->data, (u_char *) "false", 5) == 0)
        || (s->len == 1 && s->data[0] == '0'))
    {
        return 0;
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_integrations_digits(u_char **pp, u_char *end, ngx_uint_t n,
    ngx_int_t *v)
{
    u_char  *p;

    p = *pp;

    if (end - p < (ssize_t) n) {
        return NGX_ERROR;
    }

    *v = 0;

    while (n--) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        *v = *v * 10 + (*p++ - '0');
    }

    *pp = p;

    return NGX_OK;
}


/*
 * ISO-8601: YYYY-MM-DD, optionally followed by T (or a space) and
 * HH:MM[:SS[.fraction]] and Z, +HH:MM, +HHMM or +HH (no zone: UTC). A space
 * before the zone is read as "+": an unencoded "+" in a query becomes one.
 * The score is epoch seconds with the fraction as given; a date alone as
 * the end of a range (end_of_day) includes the whole day: "(" next day.
 */

static ngx_int_t
ngx_http_integrations_time(ngx_pool_t *pool, ngx_str_t *s,
    ngx_uint_t end_of_day, ngx_str_t *score, int64_t *sec, int64_t *nsec)
{
    u_char      *p, *end, *frac, *o;
    int64_t      days, t, y;
    ngx_int_t    year, mon, mday, hour, min, secs, zh, zm, m;
    ngx_uint_t   nfrac, sign, date_only, i, f, pow;

    static ngx_uint_t  mdays[] = {
        31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    p = s->data;
    end = p + s->len;

    hour = 0;
    min = 0;
    secs = 0;
    frac = NULL;
    nfrac = 0;
    zh = 0;
    zm = 0;
    sign = 0;

    if (ngx_http_integrations_digits(&p, end, 4, &year) != NGX_OK
        || p == end || *p++ != '-'
        || ngx_http_integrations_digits(&p, end, 2, &mon) != NGX_OK
        || p == end || *p++ != '-'
        || ngx_http_integrations_digits(&p, end, 2, &mday) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mon < 1 || mon > 12 || mday < 1 || mday > (ngx_int_t) mdays[mon - 1]
        || (mon == 2 && mday == 29
            && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))))
    {
        return NGX_ERROR;
    }

    date_only = (p == end);

    if (!date_only) {
        if (*p != 'T' && *p != 't' && *p != ' ') {
            return NGX_ERROR;
        }

        p++;

        if (ngx_http_integrations_digits(&p, end, 2, &hour) != NGX_OK
            || p == end || *p++ != ':'
            || ngx_http_integrations_digits(&p, end, 2, &min) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (p < end && *p == ':') {
            p++;

            if (ngx_http_integrations_digits(&p, end, 2, &secs) != NGX_OK) {
                return NGX_ERROR;
            }

            if (p < end && (*p == '.' || *p == ',')) {
                p++;
                frac = p;

                while (p < end && *p >= '0' && *p <= '9') {
                    p++;
                }

                nfrac = p - frac;

                if (nfrac == 0) {
                    return NGX_ERROR;
                }

                /* beyond nanoseconds nothing is stored anyway */
                if (nfrac > 9) {
                    nfrac = 9;
                }
            }
        }

        if (hour > 23 || min > 59 || secs > 60) {
            return NGX_ERROR;
        }

        if (p < end) {
            if (*p == 'Z' || *p == 'z') {
                p++;

            } else if (*p == '+' || *p == '-' || *p == ' ') {
                sign = (*p == '-') ? 1 : 0;
                p++;

                if (ngx_http_integrations_digits(&p, end, 2, &zh) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (p < end && *p == ':') {
                    p++;
                }

                if (p < end
                    && ngx_http_integrations_digits(&p, end, 2, &zm)
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (zh > 23 || zm > 59) {
                    return NGX_ERROR;
                }

            } else {
                return NGX_ERROR;
            }
        }

        if (p != end) {
            return NGX_ERROR;
        }
    }

    /* days from civil (proleptic Gregorian), H. Hinnant's algorithm */

    y = year - (mon <= 2);
    m = mon;
    days = (y >= 0 ? y : y - 399) / 400;
    t = y - days * 400;
    t = t * 365 + t / 4 - t / 100
        + (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + mday - 1;
    days = days * 146097 + t - 719468;

    if (date_only && end_of_day) {
        days++;
    }

    t = days * 86400 + hour * 3600 + min * 60 + secs;

    if (sign) {
        t += zh * 3600 + zm * 60;

    } else {
        t -= zh * 3600 + zm * 60;
    }

    *sec = t;

    /* the time is t + nsec / 10^9 */
    for (*nsec = 0, i = 0; i < 9; i++) {
        *nsec = *nsec * 10 + (i < nfrac ? frac[i] - '0' : 0);
    }

    o = ngx_pnalloc(pool, NGX_INT64_LEN + 12);
    if (o == NULL) {
        return NGX_ERROR;
    }

    score->data = o;

    if (date_only && end_of_day) {
        *o++ = '(';
    }

    f = 0;

    for (i = 0; i < nfrac; i++) {
        f = f * 10 + (frac[i] - '0');
    }

    if (f == 0) {
        o = ngx_sprintf(o, "%L", t);

    } else if (t >= 0) {
        o = ngx_sprintf(o, "%L.%*s", t, (size_t) nfrac, frac);

    } else {
        /* t + 0.f = -((|t| - 1) + (1 - 0.f)) */
        for (pow = 1, i = 0; i < nfrac; i++) {
            pow *= 10;
        }

        o = ngx_sprintf(o, "-%L.", -t - 1);
        f = pow - f;

        for (i = nfrac; i > 0; i--) {
            o[i - 1] = (u_char) ('0' + f % 10);
            f /= 10;
        }

        o += nfrac;
    }

    score->len = o - score->data;

    return NGX_OK;
}


/* 400 {"error":"Validation failed","details":[{"field","message"}...]} */

static ngx_int_t
ngx_http_integrations_bad_request(ngx_http_request_t *r,
    ngx_http_integrations_query_t *q)
{
    u_char      *body, *p;
    size_t       len;
    ngx_uint_t   i;

    len = sizeof("{\"error\":\"Validation failed\",\"details\":[]}");

    for (i = 0; i < q->nerrors; i++) {
        len += sizeof("{\"field\":\"\",\"message\":\"\"},")
               + ngx_integrations_json_escaped_len(q->errors[i].field.data,
                                                   q->errors[i].field.len)
               + ngx_integrations_json_escaped_len(
                     (u_char *) q->errors[i].message,
                     ngx_strlen(q->errors[i].message));
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"error\":\"Validation failed\",\"details\":[",
                   sizeof("{\"error\":\"Validation failed\",\"details\":[")
                   - 1);

    for (i = 0; i < q->nerrors; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, "{\"field\":\"", sizeof("{\"field\":\"") - 1);
        p = ngx_integrations_json_escape(p, q->errors[i].field.data,
                                         q->errors[i].field.len);
        p = ngx_cpymem(p, "\",\"message\":\"",
                       sizeof("\",\"message\":\"") - 1);
        p = ngx_integrations_json_escape(p, (u_char *) q->errors[i].message,
                                         ngx_strlen(q->errors[i].message));
        p = ngx_cpymem(p, "\"}", 2);
    }

    p = ngx_cpymem(p, "]}", 2);

    return ngx_integrations_json_send(r, NGX_HTTP_BAD_REQUEST, body,
                                      p - body);
}


static ngx_int_t
ngx_http_integrations_unauthorized(ngx_http_request_t *r)
{
    static u_char  body[] = "{\"error\":\"Unauthorized\",\"hint\":\"This "
                            "endpoint requires an API key (apikey on)\"}";

    return ngx_integrations_json_send(r, NGX_HTTP_UNAUTHORIZED, body,
                                      sizeof(body) - 1);
}


static ngx_int_t
ngx_http_integrations_unavailable(ngx_http_request_t *r)
{
    ngx_str_t  retry;

    /* as the access phase's 503: Redis is tried again within a second */
    ngx_str_set(&retry, "1");
    if (ngx_integrations_json_header(r, "Retry-After", &retry) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_integrations_json_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      (u_char *) NGX_HTTP_INTEGRATIONS_503,
                                      sizeof(NGX_HTTP_INTEGRATIONS_503) - 1);
}


/* a reply of the wrong shape (a script error, say): logged, then 503 */

static ngx_int_t
ngx_http_integrations_unexpected(ngx_http_request_t *r, redisReply *reply)
{
    ngx_integrations_redis_log_reply(r->connection->log, "integrations",
                                     reply);

    return ngx_http_integrations_unavailable(r);
}


static ngx_int_t
ngx_http_integrations_not_allowed(ngx_http_request_t *r)
{
    ngx_str_t  allow;

    static u_char  body[] = "{\"error\":\"Method not allowed\"}";

    ngx_str_set(&allow, "GET, HEAD");

    if (ngx_integrations_json_header(r, "Allow", &allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_integrations_json_send(r, NGX_HTTP_NOT_ALLOWED, body,
                                      sizeof(body) - 1);
}


/*
 * integrations_events; integrations_event $ev; ... integrations_whoami;
 * cmd->offset says which. The event argument is a complex value.
 */

char *
ngx_integrations_handlers_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_integrations_loc_conf_t *ilcf = conf;

    ngx_str_t                              *value;
    ngx_http_core_loc_conf_t               *clcf;
    ngx_http_complex_value_t               *cv;
    ngx_http_compile_complex_value_t        ccv;
    ngx_http_integrations_main_conf_t      *imcf;
    ngx_http_integrations_handlers_main_t  *hm;

    if (ilcf->handler || ilcf->status) {
        return "is duplicate: a location has one integrations handler";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* proxy_pass before it: one of the two would silently lose */
    if (clcf->handler && clcf->handler != ngx_http_integrations_handler) {
        return "cannot share a location with another content handler "
               "(proxy_pass, ...) given before it";
    }

    ilcf->handler = cmd->offset;
    ilcf->handler_name = cmd->name;
    ilcf->handler_file = cf->conf_file->file.name;
    ilcf->handler_line = cf->conf_file->line;

    if (cf->args->nelts == 2) {
        value = cf->args->elts;

        cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        ilcf->event = cv;
    }

    imcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_integrations_module);

    if (imcf->handlers == NULL) {
        hm = ngx_pcalloc(cf->pool,
                         sizeof(ngx_http_integrations_handlers_main_t));
        if (hm == NULL) {
            return NGX_CONF_ERROR;
        }

        hm->file = cf->conf_file->file.name;
        hm->line = cf->conf_file->line;
        imcf->handlers = hm;
    }

    clcf->handler = ngx_http_integrations_handler;

    return NGX_CONF_OK;
}


/* postconfiguration: the scripts, if some location serves the read API */

ngx_int_t
ngx_integrations_handlers_init(ngx_conf_t *cf)
{
    ngx_integrations_redis_conf_t          *rcf;
    ngx_http_integrations_main_conf_t      *imcf;
    ngx_http_integrations_handlers_main_t  *hm;

    imcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_integrations_module);
    hm = imcf->handlers;

    if (hm == NULL) {
        return NGX_OK;
    }

    if (!imcf->redis_set) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "the integrations handlers require "
                      "\"integrations_redis\" in the http block in %V:%ui",
                      &hm->file, hm->line);
        return NGX_ERROR;
    }

    rcf = &imcf->redis;

    hm->events = ngx_integrations_redis_add_script(cf, rcf,
                                         ngx_http_integrations_events_script);
    hm->event = ngx_integrations_redis_add_script(cf, rcf,
                                          ngx_http_integrations_event_script);
    hm->attendees = ngx_integrations_redis_add_script(cf, rcf,
                                      ngx_http_integrations_attendees_script);

    if (hm->events == NULL || hm->event == NULL || hm->attendees == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
