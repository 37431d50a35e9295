/*
 * integrationsctl: API keys and data of the Integrations API, in the Redis
 * the nginx module reads (docs/DATA_MODEL.md).
 *
 * Exit codes: 0 ok, 1 bad input, 2 Redis error.
 */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "ngx_integrations_key.h"


#define ICTL_OK          0
#define ICTL_BAD_INPUT   1
#define ICTL_REDIS       2

#define ICTL_MAX_KEYS    10
#define ICTL_BATCH       1000
#define ICTL_MAX_ERRORS  20
/* --prefix: the Redis key names of the longest org still fit */
#define ICTL_PREFIX_MAX  64
/* an import line: a value this big would hold Redis for every tenant */
#define ICTL_LINE_MAX    (1024 * 1024)
/* "updated" until the script stamps it: as long as the stamp */
#define ICTL_PLACEHOLDER "0000-00-00T00:00:00.000Z"


typedef struct {
    redisContext  *rc;
    const char    *prefix;       /* Redis key prefix */
    const char    *key_prefix;   /* key text prefix, "qkt" */
    const char    *pepper;
    int            at_cap;       /* a create was refused for the cap */
} ictl_t;


static const char  ictl_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


/*
 * {o:<org>}: reserve a slot under the cap of active keys; 0: the cap is
 * reached, 2: the id is taken. ARGV[6], if any, is a key whose slot the
 * new one takes in the same step (a rotation without grace), so that no
 * other create can take the slot between the two.
 */
static const char  ictl_reserve_lua[] =
"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])\n"
"if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 2 end\n"
"local n = redis.call('ZCARD', KEYS[1])\n"
"if ARGV[6] and redis.call('ZSCORE', KEYS[1], ARGV[6]) then n = n - 1 end\n"
"if n >= tonumber(ARGV[5]) then return 0 end\n"
"if ARGV[6] then redis.call('ZREM', KEYS[1], ARGV[6]) end\n"
"redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])\n"
"redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])\n"
"return 1\n";

/* {o:<org>}: undo a reservation, giving a replaced key its slot back */
static const char  ictl_unreserve_lua[] =
"redis.call('ZREM', KEYS[1], ARGV[1])\n"
"redis.call('ZREM', KEYS[2], ARGV[1])\n"
"if ARGV[2] then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) end\n"
"return 1\n";

/*
 * {k:<id>}: set the key's successor to ARGV[2] only if it is still
 * ARGV[1] ("": none), so that of two rotations at once one goes on
 */
static const char  ictl_successor_lua[] =
"local s = redis.call('HGET', KEYS[1], 'successor') or ''\n"
"if s ~= ARGV[1] then return 0 end\n"
"redis.call('HSET', KEYS[1], 'successor', ARGV[2])\n"
"return 1\n";

/* {k:<id>}: write the record only if the id is new */
static const char  ictl_record_lua[] =
"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
"redis.call('HSET', KEYS[1], unpack(ARGV))\n"
"return 1\n";

/*
 * Bumps D:ver, which nginx's page cache compares. A new counter starts at
 * Redis's clock in microseconds: each write takes more than a microsecond,
 * so a data set deleted and written again never repeats a version.
 */
#define ICTL_BUMP_VERSION(D)                                                 \
"local vk = " D " .. ':ver'\n"                                               \
"if redis.call('INCR', vk) == 1 then\n"                                      \
"  local t = redis.call('TIME')\n"                                           \
"  redis.call('SET', vk, t[1] .. string.rep('0', 6 - #t[2]) .. t[2])\n"      \
"end\n"

/*
 * A line without "updated" is stamped here, with Redis's clock when the
 * write becomes visible (the CLI's clock at the start of an import left a
 * gap that an incremental sync fell into): stamped(s, at) writes the
 * ISO time, milliseconds, over the 24-character placeholder at "at".
 * The stamp's epoch (with its milliseconds) is the updated_since score.
 */
#define ICTL_STAMP                                                           \
"local function stamp()\n"                                                   \
"  local t = redis.call('TIME')\n"                                           \
"  local s, ms = tonumber(t[1]), math.floor(tonumber(t[2]) / 1000)\n"        \
"  local z = math.floor(s / 86400)\n"                                        \
"  local r = s - z * 86400\n"                                                \
"  z = z + 719468\n"                                                         \
"  local era = math.floor(z / 146097)\n"                                     \
"  local doe = z - era * 146097\n"                                           \
"  local yoe = math.floor((doe - math.floor(doe / 1460)\n"                   \
"    + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)\n"         \
"  local doy = doe - (365 * yoe + math.floor(yoe / 4)\n"                     \
"    - math.floor(yoe / 100))\n"                                             \
"  local mp = math.floor((5 * doy + 2) / 153)\n"                             \
"  local d = doy - math.floor((153 * mp + 2) / 5) + 1\n"                     \
"  local m = mp < 10 and mp + 3 or mp - 9\n"                                 \
"  local y = yoe + era * 400 + (m <= 2 and 1 or 0)\n"                        \
"  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,\n"   \
"    math.floor(r / 3600), math.floor(r % 3600 / 60), r % 60, ms),\n"        \
"    t[1] .. string.format('.%03d', ms)\n"                                   \
"end\n"                                                                      \
"local function stamped(s, at, iso)\n"                                       \
"  at = tonumber(at)\n"                                                      \
"  return s:sub(1, at - 1) .. iso .. s:sub(at + 24)\n"                       \
"end\n"

/*
 * A script that failed half way would leave its first writes: the scores
 * it will write are checked before any (the CLI checked the times; this
 * is the last line of defence against a line half written).
 */
#define ICTL_SCORES(starts, updated)                                         \
"if not tonumber(" starts ") or not (" updated ") then\n"                    \
"  return redis.error_reply('a time is not a number')\n"                     \
"end\n"

/*
 * D: upsert an event. ARGV[4]: the detail's item fields (an unclosed
 * object), ARGV[21]: the line's other fields ("{...}" or ""); the stored
 * detail's other fields that the line leaves out are kept, like its
 * ticket types, so that a list item imported back loses nothing.
 * members() splits an object that jansson wrote (compact) into its
 * members' texts, so that kept values stay byte for byte, or gives nil
 * (a stored detail another writer laid out otherwise is then not merged).
 * Everything that can fail comes before the first write. ARGV[19],
 * ARGV[20]: where the item's and the detail's "updated" is to be
 * stamped, or "0".
 */
static const char  ictl_event_lua[] =
ICTL_STAMP
"local function members(s)\n"
"  if s:byte(1) ~= 123 then return nil end\n"
"  local out, i, n = {}, 2, #s\n"
"  while i < n do\n"
"    if s:byte(i) ~= 34 then return nil end\n"
"    local j = i + 1\n"
"    while true do\n"
"      j = s:find('[\\\\\"]', j)\n"
"      if not j then return nil end\n"
"      if s:byte(j) == 34 then break end\n"
"      j = j + 2\n"
"    end\n"
"    if s:byte(j + 1) ~= 58 then return nil end\n"
"    local v, k, depth = j + 2, j + 2, 0\n"
"    while true do\n"
"      k = s:find('[\"{}%[%],]', k)\n"
"      if not k then return nil end\n"
"      local c = s:byte(k)\n"
"      if c == 34 then\n"
"        k = k + 1\n"
"        while true do\n"
"          k = s:find('[\\\\\"]', k)\n"
"          if not k then return nil end\n"
"          if s:byte(k) == 34 then break end\n"
"          k = k + 2\n"
"        end\n"
"      elseif c == 123 or c == 91 then depth = depth + 1\n"
"      elseif depth == 0 then break\n"
"      elseif c ~= 44 then depth = depth - 1\n"
"      end\n"
"      k = k + 1\n"
"    end\n"
"    out[#out + 1] = {s:sub(i, j), s:sub(v, k - 1)}\n"
"    i = k + 1\n"
"  end\n"
"  return out\n"
"end\n"
"local D, id, slug = KEYS[1], ARGV[1], ARGV[2]\n"
"local item, detail, upd = ARGV[3], ARGV[4], ARGV[10]\n"
ICTL_SCORES("ARGV[6]", "ARGV[19] ~= '0' or tonumber(upd)")
"local E = D .. ':ev:' .. id\n"
"local other = redis.call('HGET', D .. ':slugs', slug)\n"
"if other and other ~= id then\n"
"  return redis.error_reply('slug ' .. slug .. ' belongs to another event')\n"
"end\n"
"local rest, seen = {}, {}\n"
"if ARGV[21] ~= '' then\n"
"  local ms = members(ARGV[21])\n"
"  if not ms then return redis.error_reply('fields not compact JSON') end\n"
"  for _, m in ipairs(ms) do\n"
"    rest[#rest + 1] = m[1] .. ':' .. m[2]\n"
"    seen[m[1]] = true\n"
"  end\n"
"end\n"
"local stored = redis.call('HGET', E, 'detail')\n"
"local ms = stored and members(stored)\n"
"if ms then\n"
"  for _, f in ipairs({'id', 'slug', 'title', 'starts', 'ends', 'status',\n"
"      'published', 'passCount', 'revenue', 'updated', 'ticketTypes'}) do\n"
"    seen['\"' .. f .. '\"'] = true\n"
"  end\n"
"  for _, m in ipairs(ms) do\n"
"    if not seen[m[1]] then rest[#rest + 1] = m[1] .. ':' .. m[2] end\n"
"  end\n"
"end\n"
"local tt = ARGV[11] == '1' and ARGV[12]\n"
"  or redis.call('HGET', E, 'tt') or '[]'\n"
"if ARGV[19] ~= '0' then\n"
"  local iso\n"
"  iso, upd = stamp()\n"
"  item = stamped(item, ARGV[19], iso)\n"
"  detail = stamped(detail, ARGV[20], iso)\n"
"end\n"
"if #rest > 0 then detail = detail .. ',' .. table.concat(rest, ',') end\n"
"-- every check done: the writes\n"
"local old = redis.call('HGET', E, 'slug')\n"
"if old and old ~= slug then redis.call('HDEL', D .. ':slugs', old) end\n"
"local fields = {'tt', 'av', 'ef', 'cf'}\n"
"for i, f in ipairs(fields) do\n"
"  if ARGV[9 + 2 * i] == '1' then\n"
"    redis.call('HSET', E, f, ARGV[10 + 2 * i])\n"
"  end\n"
"end\n"
"redis.call('HSET', E, 'item', item,\n"
"  'detail', detail .. ',\"ticketTypes\":' .. tt .. '}',\n"
"  'slug', slug, 'search', ARGV[5], 'starts', ARGV[6], 'ends', ARGV[7],\n"
"  'status', ARGV[8], 'published', ARGV[9], 'updated', upd)\n"
"redis.call('ZADD', D .. ':events', ARGV[6], id)\n"
"redis.call('HSET', D .. ':items', id, item)\n"
"redis.call('HSET', D .. ':slugs', slug, id)\n"
ICTL_BUMP_VERSION("D")
"return 1\n";

/* an attendee script's refusal, told apart by ictl_drain() */
#define ICTL_EVENT_GONE  "its event was deleted during the import"

/*
 * E (KEYS[2]: its D): upsert an attendee, moving it between indexes;
 * ARGV[9]: where its "updated" is to be stamped, or "0". An event
 * deleted since the import checked its lines takes no more attendees:
 * they would outlive it, and come back with an event of the same id.
 */
static const char  ictl_attendee_lua[] =
ICTL_STAMP
"local E, m, ct = KEYS[1], ARGV[1], ARGV[2]\n"
"local item, upd = ARGV[3], ARGV[8]\n"
ICTL_SCORES("ct", "ARGV[9] ~= '0' or tonumber(upd)")
"if redis.call('EXISTS', E) == 0 then\n"
"  return redis.error_reply('" ICTL_EVENT_GONE "')\n"
"end\n"
"if ARGV[9] ~= '0' then\n"
"  local iso\n"
"  iso, upd = stamp()\n"
"  item = stamped(item, ARGV[9], iso)\n"
"end\n"
"local old = redis.call('HGET', E .. ':am', m)\n"
"if old then\n"
"  local s, p, c = string.match(old, '^(%d)(%d):(.*)$')\n"
"  redis.call('ZREM', E .. ':s' .. s, m)\n"
"  redis.call('ZREM', E .. ':p' .. p, m)\n"
"  if c ~= '' then redis.call('ZREM', E .. ':c:' .. c, m) end\n"
"end\n"
"redis.call('ZADD', E .. ':att', ct, m)\n"
"redis.call('HSET', E .. ':ai', m, item)\n"
"redis.call('HSET', E .. ':as', m, ARGV[4])\n"
"redis.call('ZADD', E .. ':s' .. ARGV[5], ct, m)\n"
"redis.call('ZADD', E .. ':p' .. ARGV[6], ct, m)\n"
"if ARGV[7] ~= '' then\n"
"  redis.call('ZADD', E .. ':c:' .. ARGV[7], ct, m)\n"
"  redis.call('SADD', E .. ':cats', ARGV[7])\n"
"end\n"
"redis.call('ZADD', E .. ':upd', upd, m)\n"
"redis.call('HSET', E .. ':am', m, ARGV[5] .. ARGV[6] .. ':' .. ARGV[7])\n"
ICTL_BUMP_VERSION("KEYS[2]")
"return 1\n";

/* E (KEYS[2]: its D): remove an attendee from everything */
static const char  ictl_delete_attendee_lua[] =
"local E, m = KEYS[1], ARGV[1]\n"
"local old = redis.call('HGET', E .. ':am', m)\n"
"if not old then return 0 end\n"
"local s, p, c = string.match(old, '^(%d)(%d):(.*)$')\n"
"redis.call('ZREM', E .. ':s' .. s, m)\n"
"redis.call('ZREM', E .. ':p' .. p, m)\n"
"if c ~= '' then redis.call('ZREM', E .. ':c:' .. c, m) end\n"
"redis.call('ZREM', E .. ':att', m)\n"
"redis.call('ZREM', E .. ':upd', m)\n"
"redis.call('HDEL', E .. ':ai', m)\n"
"redis.call('HDEL', E .. ':as', m)\n"
"redis.call('HDEL', E .. ':am', m)\n"
ICTL_BUMP_VERSION("KEYS[2]")
"return 1\n";

/*
 * D: remove an event and every key of it. Its category sets are those the
 * CLI found in E:am (ARGV[2...]: scanned before, since an HVALS here held
 * Redis for 80 ms per 200,000 attendees) and those of E:cats (imports
 * since then add to it, so a category added after the scan is found).
 * UNLINK frees large values off Redis's main thread.
 */
static const char  ictl_delete_event_lua[] =
"local D, slug = KEYS[1], ARGV[1]\n"
"local id = redis.call('HGET', D .. ':slugs', slug)\n"
"if not id then return 0 end\n"
"local E = D .. ':ev:' .. id\n"
"local cats = {}\n"
"for _, c in ipairs(redis.call('SMEMBERS', E .. ':cats')) do\n"
"  cats[c] = true\n"
"end\n"
"for i = 2, #ARGV do cats[ARGV[i]] = true end\n"
"for c in pairs(cats) do redis.call('UNLINK', E .. ':c:' .. c) end\n"
"for _, s in ipairs({'', ':att', ':ai', ':as', ':s0', ':s1', ':p0',\n"
"                    ':p1', ':upd', ':am', ':cats'}) do\n"
"  redis.call('UNLINK', E .. s)\n"
"end\n"
"redis.call('ZREM', D .. ':events', id)\n"
"redis.call('HDEL', D .. ':items', id)\n"
"redis.call('HDEL', D .. ':slugs', slug)\n"
ICTL_BUMP_VERSION("D")
"return 1\n";


static void
ictl_error(const char *fmt, ...)
{
    va_list  args;

    fputs("integrationsctl: ", stderr);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}


static void
ictl_usage(FILE *f)
{
    fputs(
"usage: integrationsctl [--redis redis://[[user]:pw@]host:port/db\n"
"                       | unix:/path[?db=N&password=P]]\n"
"                       [--prefix P] [--key-prefix qkt] [--pepper S] COMMAND\n"
"  keys create --org ORG --name NAME [--scopes a,b] [--expires ISO|DURATION]\n"
"              [--allow-ip CIDR,...] [--rate-limit N] [--env live|test]\n"
"              [--json]\n"
"  keys list   --org ORG [--json]\n"
"  keys revoke --org ORG ID\n"
"  keys rotate --org ORG ID [--grace 24h] [--json]\n"
"  data import --org ORG [--env live|test] FILE|-\n"
"  data delete --org ORG [--env live|test] --event SLUG\n"
"DURATION: a number with s, m, h or d. --redis defaults to\n"
"$INTEGRATIONS_REDIS or redis://127.0.0.1:6379/0; --pepper to\n"
"$INTEGRATIONS_PEPPER. Exit codes: 0 ok, 1 bad input, 2 Redis error.\n",
          f);
}


/* -- Redis ------------------------------------------------------------- */

/*
 * %XX in a password, as in any URL, so that one may hold "@", "&" or "/";
 * 0: a bad escape
 */
static int
ictl_unescape(char *s)
{
    char          *d;
    unsigned int   v;

    for (d = s; *s; s++) {
        if (*s != '%') {
            *d++ = *s;
            continue;
        }

        if (!isxdigit((unsigned char) s[1]) || !isxdigit((unsigned char) s[2])
            || sscanf(s + 1, "%2x", &v) != 1 || v == 0)
        {
            return 0;
        }

        *d++ = (char) v;
        s += 2;
    }

    *d = '\0';

    return 1;
}


static int
ictl_connect(ictl_t *ctx, const char *url)
{
    int             db, port;
    char            host[1024], *pw, *p, *end, *path, *user,
                    buf[1024];
    redisReply     *r;
    struct timeval  tv = { 5, 0 };

    db = 0;
    port = 0;
    pw = NULL;
    user = NULL;
    path = NULL;
    host[0] = '\0';

    if (strlen(url) >= sizeof(buf)) {
        ictl_error("--redis is too long");
        return ICTL_BAD_INPUT;
    }

    strcpy(buf, url);

    if (strncmp(buf, "unix:", 5) == 0) {
        /* unix:/path[?db=N][&password=P] */
        p = strchr(buf, '?');
        if (p) {
            *p++ = '\0';
        }

        while (p && *p) {
            end = strchr(p, '&');
            if (end) {
                *end++ = '\0';
            }

            if (strncmp(p, "db=", 3) == 0 && p[3]
                && strspn(p + 3, "0123456789") == strlen(p + 3))
            {
                db = atoi(p + 3);

            } else if (strncmp(p, "password=", 9) == 0) {
                pw = p + 9;

            } else {
                /* the name only: a misspelt password's value stays out */
                ictl_error("--redis unix:/path takes ?db=N and "
                           "&password=P, not \"%.*s\"",
                           (int) strcspn(p, "="), p);
                return ICTL_BAD_INPUT;
            }

            p = end;
        }

        path = buf + 5;

    } else if (strncmp(buf, "redis://", 8) == 0) {
        p = buf + 8;
        end = strrchr(p, '@');

        if (end) {
            *end = '\0';
            pw = strchr(p, ':') ? strchr(p, ':') + 1 : p;
            /* redis://user:pw@: a Redis 6 ACL user, AUTH user pw */
            if (pw != p && pw - 1 != p) {
                user = p;
                pw[-1] = '\0';
            }
            p = end + 1;
        }

        end = strchr(p, '/');
        if (end) {
            *end++ = '\0';
            if (*end) {
                if (strspn(end, "0123456789") != strlen(end)
                    || strlen(end) > 5)
                {
                    ictl_error("--redis: the database must be a number");
                    return ICTL_BAD_INPUT;
                }
                db = atoi(end);
            }
        }

        port = 6379;
        end = strrchr(p, ':');
        if (end && (!strchr(p, ']') || end > strchr(p, ']'))) {
            *end++ = '\0';
            port = (strspn(end, "0123456789") == strlen(end)
                    && strlen(end) <= 5) ? atoi(end) : 0;
            if (port < 1 || port > 65535) {
                ictl_error("--redis: the port must be 1-65535");
                return ICTL_BAD_INPUT;
            }
        }

        if (*p == '[') {
            p++;
            end = strchr(p, ']');
            if (end) {
                *end = '\0';
            }
        }

        snprintf(host, sizeof(host), "%s", *p ? p : "127.0.0.1");

    } else {
        ictl_error("--redis must be redis://... or unix:/path: \"%s\"",
                   strchr(url, '@') || strstr(url, "password=")
                   ? "(not shown: it may hold a password)" : url);
        return ICTL_BAD_INPUT;
    }

    if (pw && *pw && !ictl_unescape(pw)) {
        ictl_error("--redis: a bad %%XX escape in the password");
        return ICTL_BAD_INPUT;
    }

    if (user && !ictl_unescape(user)) {
        ictl_error("--redis: a bad %%XX escape in the user name");
        return ICTL_BAD_INPUT;
    }

    ctx->rc = path ? redisConnectUnixWithTimeout(path, tv)
                   : redisConnectWithTimeout(host, port, tv);

    if (ctx->rc == NULL || ctx->rc->err) {
        ictl_error("cannot connect to Redis at %s: %s",
                   pw ? "the --redis address (password not shown)" : url,
                   ctx->rc ? ctx->rc->errstr : "out of memory");
        return ICTL_REDIS;
    }

    redisSetTimeout(ctx->rc, (struct timeval) { 30, 0 });

    if (pw && *pw) {
        r = user ? redisCommand(ctx->rc, "AUTH %s %s", user, pw)
                 : redisCommand(ctx->rc, "AUTH %s", pw);

        /*
         * a Redis before 6 has no users: its URLs name one anyway
         * (redis://h:pw@), and AUTH takes the password alone
         */
        if (user && r && r->type == REDIS_REPLY_ERROR
            && strstr(r->str, "wrong number of arguments"))
        {
            freeReplyObject(r);
            r = redisCommand(ctx->rc, "AUTH %s", pw);
        }

        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            ictl_error("Redis AUTH failed: %s",
                       r ? r->str : ctx->rc->errstr);
            if (r) {
                freeReplyObject(r);
            }
            return ICTL_REDIS;
        }
        freeReplyObject(r);
    }

    if (db) {
        r = redisCommand(ctx->rc, "SELECT %d", db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            ictl_error("Redis SELECT %d failed: %s", db,
                       r ? r->str : ctx->rc->errstr);
            if (r) {
                freeReplyObject(r);
            }
            return ICTL_REDIS;
        }
        freeReplyObject(r);
    }

    return ICTL_OK;
}


/* a reply, or NULL with the error printed */
static redisReply *
ictl_check(ictl_t *ctx, redisReply *r, const char *what)
{
    if (r == NULL) {
        ictl_error("Redis: %s: %s", what, ctx->rc->errstr);
        return NULL;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        ictl_error("Redis: %s: %s", what, r->str);
        freeReplyObject(r);
        return NULL;
    }

    return r;
}


/* EVAL of a script; argv after the script: nkeys, keys, args */
static redisReply *
ictl_eval(ictl_t *ctx, const char *script, int argc, const char **argv)
{
    int           i;
    size_t       *lens;
    redisReply   *r;
    const char  **av;

    av = malloc((argc + 2) * sizeof(char *));
    lens = malloc((argc + 2) * sizeof(size_t));

    if (av == NULL || lens == NULL) {
        free(av);
        free(lens);
        ictl_error("out of memory");
        return NULL;
    }

    av[0] = "EVAL";
    av[1] = script;

    for (i = 0; i < argc; i++) {
        av[i + 2] = argv[i];
    }

    for (i = 0; i < argc + 2; i++) {
        lens[i] = strlen(av[i]);
    }

    r = ictl_check(ctx, redisCommandArgv(ctx->rc, argc + 2, av, lens),
                   "script");

    free(av);
    free(lens);

    return r;
}


static int
ictl_load(ictl_t *ctx, const char *script, char *sha)
{
    redisReply  *r;

    r = ictl_check(ctx, redisCommand(ctx->rc, "SCRIPT LOAD %s", script),
                   "SCRIPT LOAD");
    if (r == NULL) {
        return ICTL_REDIS;
    }

    snprintf(sha, 41, "%s", r->str);
    freeReplyObject(r);

    return ICTL_OK;
}


/* -- small helpers ----------------------------------------------------- */

static int
ictl_name_ok(const char *s)
{
    size_t  i, n;

    n = strlen(s);
    if (n == 0 || n > 64) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (!isalnum((unsigned char) s[i]) && s[i] != '_' && s[i] != '.'
            && s[i] != '-')
        {
            return 0;
        }
    }

    return 1;
}


static double
ictl_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return tv.tv_sec + tv.tv_usec / 1e6;
}


static void
ictl_iso(time_t t, char *buf, size_t size)
{
    struct tm  tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


static int
ictl_digits(const char *s, int n, int *v)
{
    int  i;

    *v = 0;

    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char) s[i])) {
            return -1;
        }
        *v = *v * 10 + (s[i] - '0');
    }

    return 0;
}


/*
 * ISO-8601 as the API's filters read it: YYYY-MM-DD or
 * YYYY-MM-DDTHH:MM[:SS[.fff|,fff]][Z|+-HH:MM|+-HHMM|+-HH].
 * Epoch seconds (fractions kept) in *t; 0 on success.
 */
static int
ictl_parse_iso(const char *s, double *t)
{
    int        y, mo, d, h, mi, sec, zh, zm, sign;
    double     frac, f;
    struct tm  tm;

    h = mi = sec = 0;
    frac = 0;

    if (strlen(s) < 10 || ictl_digits(s, 4, &y) || s[4] != '-'
        || ictl_digits(s + 5, 2, &mo) || s[7] != '-'
        || ictl_digits(s + 8, 2, &d))
    {
        return -1;
    }

    s += 10;

    if (*s == 'T' || *s == 't' || *s == ' ') {
        s++;
        if (ictl_digits(s, 2, &h) || s[2] != ':'
            || ictl_digits(s + 3, 2, &mi))
        {
            return -1;
        }
        s += 5;

        if (*s == ':') {
            if (ictl_digits(s + 1, 2, &sec)) {
                return -1;
            }
            s += 3;

            if (*s == '.' || *s == ',') {
                s++;
                if (!isdigit((unsigned char) *s)) {
                    return -1;
                }
                for (f = 0.1; isdigit((unsigned char) *s); s++, f /= 10) {
                    frac += (*s - '0') * f;
                }
            }
        }

        if (*s == 'Z' || *s == 'z') {
            s++;

        } else if (*s == '+' || *s == '-') {
            sign = (*s == '-') ? -1 : 1;
            if (ictl_digits(s + 1, 2, &zh)) {
                return -1;
            }
            s += 3;
            zm = 0;
            if (*s == ':' || isdigit((unsigned char) *s)) {
                s += (*s == ':');
                if (ictl_digits(s, 2, &zm)) {
                    return -1;
                }
                s += 2;
            }
            if (zh > 23 || zm > 59) {
                return -1;
            }
            frac -= sign * (zh * 3600 + zm * 60);
        }
    }

    if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23
        || mi > 59 || sec > 60)
    {
        return -1;
    }

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;

    *t = (double) timegm(&tm) + frac;

    /* 2026-02-31 is not a date */
    {
        struct tm  back;
        time_t     whole = timegm(&tm);

        gmtime_r(&whole, &back);
        if (back.tm_mday != d) {
            return -1;
        }
    }

    return 0;
}


static void
ictl_num(double v, char *buf, size_t size)
{
    if (v == (double) (long long) v) {
        snprintf(buf, size, "%lld", (long long) v);

    } else {
        snprintf(buf, size, "%.6f", v);
    }
}


/* the fewest significant digits, up to 17, that read back as v */
static int
ictl_real_digits(double v)
{
    int   p;
    char  buf[40];

    for (p = 1; p < 17; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, v);
        if (strtod(buf, NULL) == v) {
            return p;
        }
    }

    return 17;
}


typedef struct {
    char        *p;
    size_t       len;
    size_t       size;
} ictl_text_t;


/* appends n bytes of s (NUL-terminated after); -1 if out of memory */
static int
ictl_text_add(ictl_text_t *t, const char *s, size_t n)
{
    char    *bigger;
    size_t   size;

    if (t->len + n + 1 > t->size) {
        for (size = t->size ? t->size : 64; t->len + n + 1 > size; size *= 2)
        {
            /* void */
        }

        bigger = realloc(t->p, size);
        if (bigger == NULL) {
            return -1;
        }

        t->p = bigger;
        t->size = size;
    }

    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';

    return 0;
}


/*
 * A real in the fewest digits that read back the same, written out as
 * JavaScript does between 1e-7 and 1e21 (900.0, not %g's 9e+02), and
 * with ".0" if whole, so that it stays a real as it was written.
 */
static void
ictl_real_text(double v, char *buf, size_t size)
{
    int     p, e, i, n;
    char    sci[40], digits[24], *q, *end;

    p = ictl_real_digits(v);
    snprintf(sci, sizeof(sci), "%.*e", p - 1, v);

    /* "-d.ddde+XX": the digits, then the exponent */
    n = 0;
    for (q = sci; *q && *q != 'e'; q++) {
        if (*q >= '0' && *q <= '9' && n < (int) sizeof(digits) - 1) {
            digits[n++] = *q;
        }
    }
    digits[n] = '\0';
    e = (*q == 'e') ? (int) strtol(q + 1, NULL, 10) : 0;

    if (e < -7 || e >= 21) {
        snprintf(buf, size, "%s", sci);
        return;
    }

    q = buf;
    end = buf + size - 1;

    if (v < 0 || (v == 0 && signbit(v))) {
        *q++ = '-';
    }

    if (e < 0) {
        q += snprintf(q, end - q, "0.");
        for (i = -1; i > e && q < end; i--) {
            *q++ = '0';
        }
        q += snprintf(q, end - q, "%s", digits);

    } else {
        for (i = 0; i <= e && q < end; i++) {
            *q++ = (i < n) ? digits[i] : '0';
        }
        *q++ = '.';
        if (n > e + 1) {
            q += snprintf(q, end - q, "%s", digits + e + 1);
        } else if (q < end) {
            *q++ = '0';
        }
    }

    *q = '\0';
}


/* a scalar as jansson writes it, a real as ictl_real_text() does */
static int
ictl_text_scalar(ictl_text_t *t, json_t *v)
{
    int     rc;
    char   *s, real[64];
    size_t  flags;

    if (json_is_real(v)) {
        ictl_real_text(json_real_value(v), real, sizeof(real));
        return ictl_text_add(t, real, strlen(real));
    }

    flags = JSON_COMPACT | JSON_ENCODE_ANY;

    s = json_dumps(v, flags);
    if (s == NULL) {
        return -1;
    }

    rc = ictl_text_add(t, s, strlen(s));
    free(s);

    return rc;
}


/* v, compact, containers walked here so that each number is its own */
static int
ictl_text_value(ictl_text_t *t, json_t *v)
{
    int          rc;
    size_t       i;
    json_t      *e, *k;
    const char  *key;

    if (json_is_array(v)) {
        rc = ictl_text_add(t, "[", 1);
        json_array_foreach(v, i, e) {
            if (rc == 0 && i) {
                rc = ictl_text_add(t, ",", 1);
            }
            if (rc == 0) {
                rc = ictl_text_value(t, e);
            }
        }
        return rc ? rc : ictl_text_add(t, "]", 1);
    }

    if (json_is_object(v)) {
        rc = ictl_text_add(t, "{", 1);
        i = 0;
        json_object_foreach(v, key, e) {
            if (rc == 0 && i++) {
                rc = ictl_text_add(t, ",", 1);
            }
            if (rc == 0) {
                k = json_string(key);
                rc = k ? ictl_text_scalar(t, k) : -1;
                json_decref(k);
            }
            if (rc == 0) {
                rc = ictl_text_add(t, ":", 1);
            }
            if (rc == 0) {
                rc = ictl_text_value(t, e);
            }
        }
        return rc ? rc : ictl_text_add(t, "}", 1);
    }

    return ictl_text_scalar(t, v);
}


/*
 * Compact, in the order given, and each number as short as it can be
 * written and read back the same (19.99, not jansson's 17 digits,
 * 19.989999999999998): what was imported is what the API returns.
 * NULL if out of memory.
 */
static char *
ictl_dump(json_t *v)
{
    ictl_text_t  t;

    memset(&t, 0, sizeof(t));

    if (ictl_text_value(&t, v) != 0) {
        free(t.p);
        return NULL;
    }

    return t.p;
}


/* {"f1":v1,...} of the named fields in this order; absent ones null */
static char *
ictl_object(json_t *obj, const char **fields, int closed)
{
    int           i, rc;
    json_t       *v, *k;
    ictl_text_t   t;

    memset(&t, 0, sizeof(t));
    rc = ictl_text_add(&t, "{", 1);

    for (i = 0; rc == 0 && fields[i]; i++) {
        if (i) {
            rc = ictl_text_add(&t, ",", 1);
        }

        k = json_string(fields[i]);
        if (rc == 0) {
            rc = k ? ictl_text_scalar(&t, k) : -1;
        }
        json_decref(k);

        if (rc == 0) {
            rc = ictl_text_add(&t, ":", 1);
        }

        v = json_object_get(obj, fields[i]);
        if (rc == 0) {
            rc = ictl_text_value(&t, v ? v : json_null());
        }
    }

    if (rc == 0 && closed) {
        rc = ictl_text_add(&t, "}", 1);
    }

    if (rc != 0) {
        free(t.p);
        return NULL;
    }

    return t.p;
}


static int
ictl_random_text(char *out, size_t n, const char *alphabet, unsigned m)
{
    size_t         i;
    unsigned char  b;
    unsigned       limit;

    /* rejection sampling: no modulo bias */
    limit = 256 - 256 % m;

    for (i = 0; i < n; /* void */) {
        if (getrandom(&b, 1, 0) != 1) {
            return -1;
        }
        if (b < limit) {
            out[i++] = alphabet[b % m];
        }
    }

    out[n] = '\0';

    return 0;
}


/* -- keys -------------------------------------------------------------- */

typedef struct {
    const char  *org;
    const char  *name;
    const char  *scopes;      /* comma-separated */
    const char  *expires;
    const char  *allow_ip;
    const char  *rate_limit;
    const char  *env;
    const char  *replace;     /* rotation without grace: the old key's id */
    const char  *replace_score;  /* ... and its score in :active */
    int          json;
} ictl_key_opts_t;


/*
 * s in a column of w characters: cut at most w characters in, never
 * inside one, and padded with spaces to w
 */
static void
ictl_column(const char *s, size_t w, char *out, size_t size)
{
    size_t  i, n, chars;

    n = 0;
    chars = 0;

    for (i = 0; s[i] && n + 5 < size; i++) {
        /* a UTF-8 lead or ASCII byte starts a character */
        if (((unsigned char) s[i] & 0xc0) != 0x80) {
            if (chars == w) {
                break;
            }
            chars++;
        }
        out[n++] = s[i];
    }

    while (chars++ < w && n + 1 < size) {
        out[n++] = ' ';
    }

    out[n] = '\0';
}


/* the tokens of s between any of seps, as a JSON array of strings */
static json_t *
ictl_tokens(const char *s, const char *seps)
{
    char    *copy, *tok, *save;
    json_t  *a;

    a = json_array();
    copy = strdup(s);

    if (a == NULL || copy == NULL) {
        free(copy);
        return a;
    }

    for (tok = strtok_r(copy, seps, &save); tok;
         tok = strtok_r(NULL, seps, &save))
    {
        json_array_append_new(a, json_string(tok));
    }

    free(copy);

    return a;
}


/* 0: written; -1: stdout failed (full, closed), errno says why */
static int
ictl_print_key(ictl_key_opts_t *o, const char *key, const char *id,
    const char *scopes, time_t created, time_t expires, const char *ips,
    long rate, int json)
{
    char    buf[64], *out;
    json_t  *j;

    if (json) {
        j = json_object();
        json_object_set_new(j, "key", json_string(key));
        json_object_set_new(j, "id", json_string(id));
        json_object_set_new(j, "org", json_string(o->org));
        json_object_set_new(j, "name", json_string(o->name));
        json_object_set_new(j, "scopes", ictl_tokens(scopes, " "));
        json_object_set_new(j, "env", json_string(o->env));
        ictl_iso(created, buf, sizeof(buf));
        json_object_set_new(j, "created", json_string(buf));
        if (expires) {
            ictl_iso(expires, buf, sizeof(buf));
            json_object_set_new(j, "expires", json_string(buf));
        } else {
            json_object_set_new(j, "expires", json_null());
        }
        json_object_set_new(j, "allowIps", ictl_tokens(ips, ", "));
        json_object_set_new(j, "rateLimit",
                            rate ? json_integer(rate) : json_null());
        out = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (out) {
            puts(out);
        }
        free(out);
        json_decref(j);
        return (out == NULL || fflush(stdout) != 0 || ferror(stdout)) ? -1
                                                                     : 0;
    }

    printf("API key created. It is shown only this once; store it now:\n\n"
           "    %s\n\n", key);
    printf("id:      %s\norg:     %s\nname:    %s\nscopes:  %s\nenv:     %s\n",
           id, o->org, o->name, scopes, o->env);
    if (expires) {
        ictl_iso(expires, buf, sizeof(buf));
        printf("expires: %s\n", buf);
    } else {
        printf("expires: never\n");
    }
    if (*ips) {
        printf("allow:   %s\n", ips);
    }
    if (rate) {
        printf("limit:   %ld per window\n", rate);
    }

    return (fflush(stdout) != 0 || ferror(stdout)) ? -1 : 0;
}


static int ictl_revoke(ictl_t *ctx, const char *org, const char *id);


/* gives a reserved slot back (and a replaced key its own); said if not */
static int
ictl_unreserve(ictl_t *ctx, const char *active, const char *all,
    const char *id, ictl_key_opts_t *o)
{
    const char  *argv[6];
    redisReply  *r;

    argv[0] = "2";
    argv[1] = active;
    argv[2] = all;
    argv[3] = id;
    argv[4] = o->replace;
    argv[5] = o->replace_score;

    r = ictl_eval(ctx, ictl_unreserve_lua, o->replace ? 6 : 4, argv);
    if (r == NULL) {
        if (o->replace) {
            /* the old key is still the one in use: never say revoke it */
            ictl_error("key %s still works, but Redis may not have given "
                       "it back its slot under organization %s's cap; if "
                       "keys list shows key %s, revoke %s", o->replace,
                       o->org, id, id);

        } else {
            ictl_error("key %s holds a slot of organization %s: revoke it",
                       id, o->org);
        }
        return ICTL_REDIS;
    }

    freeReplyObject(r);

    return ICTL_OK;
}


/* a comma-separated list without its empty entries ("a,,b" -> "a,b") */

static char *
ictl_list_clean(const char *list)
{
    char        *out, *w;
    size_t       n;
    const char  *a, *b;

    out = malloc(strlen(list) + 1);
    if (out == NULL) {
        return NULL;
    }

    w = out;

    for (a = list; *a; a = *b ? b + 1 : b) {
        b = strchr(a, ',');
        if (b == NULL) {
            b = a + strlen(a);
        }

        n = (size_t) (b - a);

        if (strspn(a, " \t") < n) {
            if (w != out) {
                *w++ = ',';
            }

            memcpy(w, a, n);
            w += n;
        }
    }

    *w = '\0';

    return out;
}


/* what --key-prefix takes, and a record's prefix must be to be reused */

static int
ictl_key_prefix_ok(const char *p)
{
    size_t  n;

    n = strlen(p);

    return n >= 2 && n <= 8 && strspn(p, "abcdefghijklmnopqrstuvwxyz") == n;
}


static int
ictl_keys_create(ictl_t *ctx, ictl_key_opts_t *o, char *new_id)
{
    int          attempt, rc;
    char         scopes[1024], nets[16384], id[9], rnd[33], key[128],
                 sum[8], hash[65], created_s[32], expires_s[32], score[32],
                 now_s[32], rate_s[32], active[256], all[256], rec[256],
                 max[8];
    const char  *argv[40], *p;
    size_t       i, n;
    long         rate;
    time_t       now, expires;
    double       t;
    uint64_t     ms;
    json_t      *j;
    redisReply  *r;

    if (!o->org || !ictl_name_ok(o->org)) {
        ictl_error("--org is required: 1-64 of A-Z a-z 0-9 _ . -");
        return ICTL_BAD_INPUT;
    }

    if (!o->name || !*o->name) {
        ictl_error("--name is required");
        return ICTL_BAD_INPUT;
    }

    if (strlen(o->name) > 128) {
        ictl_error("--name is longer than 128 bytes");
        return ICTL_BAD_INPUT;
    }

    for (i = 0; o->name[i]; i++) {
        if ((unsigned char) o->name[i] < 0x20 || o->name[i] == 0x7f) {
            ictl_error("--name must not contain control characters");
            return ICTL_BAD_INPUT;
        }
    }

    /* jansson refuses what is not UTF-8: --json could not show it */
    j = json_string(o->name);
    if (j == NULL) {
        ictl_error("--name is not UTF-8 text");
        return ICTL_BAD_INPUT;
    }
    json_decref(j);

    if (strcmp(o->env, "live") != 0 && strcmp(o->env, "test") != 0) {
        ictl_error("--env must be live or test");
        return ICTL_BAD_INPUT;
    }

    /* scopes: comma-separated tokens, stored space-separated */
    n = 0;
    for (p = o->scopes; *p; p++) {
        if (*p == ' ' || *p == '"' || *p == '\\' || (unsigned char) *p < 0x21
            || (unsigned char) *p >= 0x7f)
        {
            ictl_error("invalid --scopes \"%s\"", o->scopes);
            return ICTL_BAD_INPUT;
        }
        if (n + 2 >= sizeof(scopes)) {
            ictl_error("--scopes is too long");
            return ICTL_BAD_INPUT;
        }
        if (*p == ',') {
            if (n == 0 || scopes[n - 1] == ' ' || p[1] == '\0') {
                ictl_error("invalid --scopes \"%s\"", o->scopes);
                return ICTL_BAD_INPUT;
            }
            scopes[n++] = ' ';
        } else {
            scopes[n++] = *p;
        }
    }
    scopes[n] = '\0';

    if (n == 0) {
        ictl_error("--scopes is empty");
        return ICTL_BAD_INPUT;
    }

    if (o->allow_ip) {
        int    empty;
        char  *clean;

        /* "10.0.0.1,,10.0.0.2" is refused as --scopes a,,b is */
        clean = ictl_list_clean(o->allow_ip);
        if (clean == NULL) {
            ictl_error("out of memory");
            return ICTL_REDIS;
        }

        empty = (strcmp(clean, o->allow_ip) != 0);
        free(clean);

        if (empty) {
            ictl_error("--allow-ip has an empty entry: \"%s\"",
                       o->allow_ip);
            return ICTL_BAD_INPUT;
        }
    }

    nets[0] = '\0';
    if (o->allow_ip
        && (ngx_integrations_ip_list_nets((const unsigned char *) o->allow_ip,
                                          strlen(o->allow_ip), nets,
                                          sizeof(nets)) != 0
            || nets[0] == '\0'))
    {
        if (ngx_integrations_ip_list_valid((const unsigned char *)
                                           o->allow_ip, strlen(o->allow_ip))
            != 0)
        {
            ictl_error("invalid --allow-ip \"%s\": addresses or CIDRs, "
                       "comma-separated", o->allow_ip);

        } else if (nets[0] == '\0') {
            /* "" or ",": stored, no address would allow every one */
            ictl_error("--allow-ip names no address");

        } else {
            ictl_error("--allow-ip lists more than a key holds (%d "
                       "addresses of IPv6 length)", (int) sizeof(nets) / 37);
        }
        return ICTL_BAD_INPUT;
    }

    rate = 0;
    if (o->rate_limit) {
        char  *end;

        rate = strtol(o->rate_limit, &end, 10);
        if (*end || rate <= 0 || rate > 1000000000) {
            ictl_error("--rate-limit must be a positive integer");
            return ICTL_BAD_INPUT;
        }
    }

    now = time(NULL);
    expires = 0;

    if (o->expires) {
        if (ngx_integrations_duration_parse((const unsigned char *) o->expires,
                                            strlen(o->expires), &ms) == 0)
        {
            expires = now + (time_t) (ms / 1000);

        } else if (ictl_parse_iso(o->expires, &t) == 0) {
            expires = (time_t) t;

        } else {
            ictl_error("invalid --expires \"%s\": ISO-8601 or a duration "
                       "such as 90d", o->expires);
            return ICTL_BAD_INPUT;
        }

        if (expires <= now) {
            ictl_error("--expires is in the past");
            return ICTL_BAD_INPUT;
        }

        /* what ISO-8601 can write (and a score below 2^53) */
        if (expires > 253402300799LL) {
            ictl_error("--expires is past 9999-12-31T23:59:59Z");
            return ICTL_BAD_INPUT;
        }
    }

    snprintf(now_s, sizeof(now_s), "%ld", (long) now);
    snprintf(created_s, sizeof(created_s), "%ld", (long) now);
    snprintf(expires_s, sizeof(expires_s), "%ld", (long) expires);
    snprintf(score, sizeof(score), "%s", expires ? expires_s : "+inf");
    snprintf(rate_s, sizeof(rate_s), "%ld", rate);
    snprintf(active, sizeof(active), "%s{o:%s}:active", ctx->prefix, o->org);
    snprintf(all, sizeof(all), "%s{o:%s}:keys", ctx->prefix, o->org);
    snprintf(max, sizeof(max), "%d", ICTL_MAX_KEYS);

    for (attempt = 0; attempt < 5; attempt++) {
        if (ictl_random_text(id, 8, "abcdefghijklmnopqrstuvwxyz0123456789",
                             36) != 0
            || ictl_random_text(rnd, NGX_INTEGRATIONS_KEY_RANDOM_LEN,
                                ictl_base62, 62) != 0)
        {
            ictl_error("no randomness from the OS: %s", strerror(errno));
            return ICTL_REDIS;
        }

        n = snprintf(key, sizeof(key), "%s_%s_%s_%s", ctx->key_prefix,
                     o->env, id, rnd);
        ngx_integrations_key_checksum((unsigned char *) key, n,
                                      (unsigned char *) sum);
        memcpy(key + n, sum, 6);
        key[n + 6] = '\0';

        if (ngx_integrations_key_hash((unsigned char *) key, n + 6,
                                      (const unsigned char *) ctx->pepper,
                                      strlen(ctx->pepper),
                                      (unsigned char *) hash) != 0)
        {
            ictl_error("hashing failed");
            return ICTL_REDIS;
        }
        hash[64] = '\0';

        argv[0] = "2";
        argv[1] = active;
        argv[2] = all;
        argv[3] = now_s;
        argv[4] = id;
        argv[5] = score;
        argv[6] = created_s;
        argv[7] = max;
        argv[8] = o->replace;

        r = ictl_eval(ctx, ictl_reserve_lua, o->replace ? 9 : 8, argv);
        if (r == NULL) {
            return ICTL_REDIS;
        }

        rc = (int) r->integer;
        freeReplyObject(r);

        if (rc == 0) {
            ictl_error("organization %s already has %d active keys; revoke "
                       "one first", o->org, ICTL_MAX_KEYS);
            ctx->at_cap = 1;
            return ICTL_BAD_INPUT;
        }

        if (rc == 2) {
            continue;
        }

        snprintf(rec, sizeof(rec), "%s{k:%s}", ctx->prefix, id);

        i = 0;
        argv[i++] = "1";
        argv[i++] = rec;
#define ictl_field(k, v)  argv[i++] = k; argv[i++] = v
        ictl_field("hash", hash);
        ictl_field("org", o->org);
        ictl_field("name", o->name);
        ictl_field("scopes", scopes);
        ictl_field("status", "active");
        ictl_field("created", created_s);
        ictl_field("expires", expires_s);
        ictl_field("last_used", "0");
        ictl_field("ips", o->allow_ip ? o->allow_ip : "");
        ictl_field("nets", nets);
        ictl_field("rate_limit", rate ? rate_s : "");
        ictl_field("env", o->env);
        ictl_field("prefix", ctx->key_prefix);
#undef ictl_field

        r = ictl_eval(ctx, ictl_record_lua, (int) i, argv);
        if (r == NULL) {
            /* no record, no key: a slot held for it would never free */
            ictl_unreserve(ctx, active, all, id, o);
            return ICTL_REDIS;
        }

        rc = (int) r->integer;
        freeReplyObject(r);

        if (rc == 1) {
            if (new_id) {
                strcpy(new_id, id);
            }

            if (ictl_print_key(o, key, id, scopes, now, expires,
                               o->allow_ip ? o->allow_ip : "", rate, o->json)
                != 0)
            {
                /* a key nobody saw is of no use to anyone: revoked */
                ictl_error("cannot write the new key: %s; it is revoked",
                           strerror(errno));
                memset(key, 0, sizeof(key));
                rc = ictl_revoke(ctx, o->org, id);
                if (rc == ICTL_OK && o->replace) {
                    ictl_unreserve(ctx, active, all, id, o);
                }
                return rc == ICTL_OK ? ICTL_BAD_INPUT : rc;
            }

            memset(key, 0, sizeof(key));
            return ICTL_OK;
        }

        /* the id is another organization's: give the slot back, again */
        if (ictl_unreserve(ctx, active, all, id, o) != ICTL_OK) {
            return ICTL_REDIS;
        }
    }

    ictl_error("could not find a free key id");
    return ICTL_REDIS;
}


static const char *
ictl_field_of(redisReply *h, const char *name)
{
    size_t  i;

    if (h == NULL || h->type != REDIS_REPLY_ARRAY) {
        return NULL;
    }

    for (i = 0; i + 1 < h->elements; i += 2) {
        if (strcmp(h->element[i]->str, name) == 0) {
            return h->element[i + 1]->str;
        }
    }

    return NULL;
}


static int
ictl_keys_list(ictl_t *ctx, const char *org, int json)
{
    char         all[256], when[32], used[32], *out;
    size_t       i;
    time_t       now, exp, lu, created;
    json_t      *arr, *j;
    redisReply  *ids, *h;
    const char  *status, *f;

    snprintf(all, sizeof(all), "%s{o:%s}:keys", ctx->prefix, org);

    ids = ictl_check(ctx, redisCommand(ctx->rc, "ZRANGE %s 0 -1", all),
                     "ZRANGE");
    if (ids == NULL) {
        return ICTL_REDIS;
    }

    for (i = 0; i < ids->elements; i++) {
        redisAppendCommand(ctx->rc, "HGETALL %s{k:%s}", ctx->prefix,
                           ids->element[i]->str);
    }

    now = time(NULL);
    arr = json_array();

    if (!json) {
        printf("%-8s  %-24s  %-28s  %-20s  %-20s  %-7s  %s\n", "ID", "NAME",
               "KEY", "CREATED", "LAST USED", "STATUS", "SCOPES");
    }

    for (i = 0; i < ids->elements; i++) {
        h = NULL;
        if (redisGetReply(ctx->rc, (void **) &h) != REDIS_OK
            || ictl_check(ctx, h, "HGETALL") == NULL)
        {
            freeReplyObject(ids);
            json_decref(arr);
            return ICTL_REDIS;
        }

        if (h->elements == 0) {
            freeReplyObject(h);
            continue;
        }

        f = ictl_field_of(h, "expires");
        exp = f ? atol(f) : 0;
        f = ictl_field_of(h, "last_used");
        lu = f ? atol(f) : 0;
        f = ictl_field_of(h, "created");
        created = f ? atol(f) : 0;
        f = ictl_field_of(h, "status");
        status = (f && strcmp(f, "active") != 0) ? "revoked"
                 : (exp && exp <= now) ? "expired" : "active";

        ictl_iso(created, when, sizeof(when));
        if (lu) {
            ictl_iso(lu, used, sizeof(used));
        } else {
            strcpy(used, "never");
        }

#define ictl_get(n)  (ictl_field_of(h, n) ? ictl_field_of(h, n) : "")
        if (json) {
            j = json_object();
            json_object_set_new(j, "id", json_string(ids->element[i]->str));
            json_object_set_new(j, "name", json_string(ictl_get("name")));
            out = malloc(64);
            snprintf(out, 64, "%s_%s_%s_\xe2\x80\xa6", ictl_get("prefix"),
                     ictl_get("env"), ids->element[i]->str);
            json_object_set_new(j, "key", json_string(out));
            free(out);
            json_object_set_new(j, "env", json_string(ictl_get("env")));
            json_object_set_new(j, "scopes",
                                ictl_tokens(ictl_get("scopes"), " "));
            json_object_set_new(j, "created", json_string(when));
            json_object_set_new(j, "lastUsed",
                                lu ? json_string(used) : json_null());
            if (exp) {
                ictl_iso(exp, when, sizeof(when));
                json_object_set_new(j, "expires", json_string(when));
            } else {
                json_object_set_new(j, "expires", json_null());
            }
            json_object_set_new(j, "status", json_string(status));
            json_object_set_new(j, "allowIps",
                                ictl_tokens(ictl_get("ips"), ", "));
            json_object_set_new(j, "rateLimit", *ictl_get("rate_limit")
                                ? json_integer(atoll(ictl_get("rate_limit")))
                                : json_null());
            json_array_append_new(arr, j);

        } else {
            char  disp[64], name[160];

            snprintf(disp, sizeof(disp), "%s_%s_%s_...", ictl_get("prefix"),
                     ictl_get("env"), ids->element[i]->str);
            ictl_column(ictl_get("name"), 24, name, sizeof(name));
            printf("%-8s  %s  %-28s  %-20s  %-20s  %-7s  %s\n",
                   ids->element[i]->str, name, disp, when, used,
                   status, ictl_get("scopes"));
        }
#undef ictl_get

        freeReplyObject(h);
    }

    freeReplyObject(ids);

    /*
     * a slot of the 10 held by an id with no record: a create cut short
     * (or under way); listed so that `keys revoke` can free it
     */
    snprintf(all, sizeof(all), "%s{o:%s}:active", ctx->prefix, org);

    ids = ictl_check(ctx, redisCommand(ctx->rc, "ZRANGE %s 0 -1", all),
                     "ZRANGE");
    if (ids == NULL) {
        json_decref(arr);
        return ICTL_REDIS;
    }

    for (i = 0; i < ids->elements; i++) {
        redisAppendCommand(ctx->rc, "EXISTS %s{k:%s}", ctx->prefix,
                           ids->element[i]->str);
    }

    for (i = 0; i < ids->elements; i++) {
        h = NULL;
        if (redisGetReply(ctx->rc, (void **) &h) != REDIS_OK
            || ictl_check(ctx, h, "EXISTS") == NULL)
        {
            freeReplyObject(ids);
            json_decref(arr);
            return ICTL_REDIS;
        }

        if (h->integer == 0) {
            if (json) {
                j = json_object();
                json_object_set_new(j, "id",
                                    json_string(ids->element[i]->str));
                json_object_set_new(j, "status", json_string("unfinished"));
                json_array_append_new(arr, j);

            } else {
                printf("%-8s  %-24s  %-28s  %-20s  %-20s  %-7s\n",
                       ids->element[i]->str, "(a create cut short)", "-",
                       "-", "-", "unfinished");
            }
        }

        freeReplyObject(h);
    }

    freeReplyObject(ids);

    if (json) {
        out = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(out);
        free(out);
    }

    json_decref(arr);

    return ICTL_OK;
}


/* the record of id if it belongs to org; NULL (and a message) if not */
static redisReply *
ictl_key_of_org(ictl_t *ctx, const char *org, const char *id, int *rc)
{
    const char  *f;
    redisReply  *h;

    *rc = ICTL_BAD_INPUT;

    if (strlen(id) != 8 || !ictl_name_ok(id)) {
        ictl_error("no key %s in organization %s", id, org);
        return NULL;
    }

    h = ictl_check(ctx, redisCommand(ctx->rc, "HGETALL %s{k:%s}", ctx->prefix,
                                     id), "HGETALL");
    if (h == NULL) {
        *rc = ICTL_REDIS;
        return NULL;
    }

    f = ictl_field_of(h, "org");

    if (f == NULL || strcmp(f, org) != 0) {
        ictl_error("no key %s in organization %s", id, org);
        freeReplyObject(h);
        return NULL;
    }

    return h;
}


static int
ictl_revoke(ictl_t *ctx, const char *org, const char *id)
{
    redisReply  *r;

    /* the record first: every node sees it on the next request */
    r = ictl_check(ctx, redisCommand(ctx->rc, "HSET %s{k:%s} status revoked",
                                     ctx->prefix, id), "HSET");
    if (r == NULL) {
        return ICTL_REDIS;
    }
    freeReplyObject(r);

    r = ictl_check(ctx, redisCommand(ctx->rc, "ZREM %s{o:%s}:active %s",
                                     ctx->prefix, org, id), "ZREM");
    if (r == NULL) {
        return ICTL_REDIS;
    }
    freeReplyObject(r);

    return ICTL_OK;
}


static int
ictl_keys_revoke(ictl_t *ctx, const char *org, const char *id)
{
    int          rc, orphan;
    redisReply  *h, *r;

    /* a slot whose record was never written (a create cut short) */
    if (strlen(id) == 8 && ictl_name_ok(id)) {
        r = ictl_check(ctx, redisCommand(ctx->rc, "EXISTS %s{k:%s}",
                                         ctx->prefix, id), "EXISTS");
        if (r == NULL) {
            return ICTL_REDIS;
        }

        orphan = (r->integer == 0);
        freeReplyObject(r);

        if (orphan) {
            r = ictl_check(ctx, redisCommand(ctx->rc,
                                             "ZSCORE %s{o:%s}:active %s",
                                             ctx->prefix, org, id), "ZSCORE");
            if (r == NULL) {
                return ICTL_REDIS;
            }

            orphan = (r->type == REDIS_REPLY_STRING);
            freeReplyObject(r);
        }

        if (orphan) {
            /*
             * a tombstone first: a create still under way finds the id
             * taken and draws another; a record written meanwhile is
             * revoked as asked (HSET answers 0: the field was there)
             */
            r = ictl_check(ctx, redisCommand(ctx->rc,
                                             "HSET %s{k:%s} status revoked",
                                             ctx->prefix, id), "HSET");
            if (r == NULL) {
                return ICTL_REDIS;
            }

            rc = (int) r->integer;
            freeReplyObject(r);

            if (rc == 1) {
                freeReplyObject(redisCommand(ctx->rc, "EXPIRE %s{k:%s} 86400",
                                             ctx->prefix, id));
            }

            r = ictl_check(ctx, redisCommand(ctx->rc, "ZREM %s{o:%s}:active %s",
                                             ctx->prefix, org, id), "ZREM");
            if (r == NULL) {
                return ICTL_REDIS;
            }
            freeReplyObject(r);

            if (rc == 1) {
                freeReplyObject(redisCommand(ctx->rc, "ZREM %s{o:%s}:keys %s",
                                             ctx->prefix, org, id));
                printf("revoked %s (its record was never written)\n", id);
                return ICTL_OK;
            }
        }
    }

    h = ictl_key_of_org(ctx, org, id, &rc);
    if (h == NULL) {
        return rc;
    }

    freeReplyObject(h);

    rc = ictl_revoke(ctx, org, id);
    if (rc == ICTL_OK) {
        printf("revoked %s\n", id);
    }

    return rc;
}


/*
 * The successor of the key of record rec: from, if it is still that, to
 * to; ICTL_BAD_INPUT (unsaid) if it is not.
 */
static int
ictl_successor(ictl_t *ctx, const char *rec, const char *from,
    const char *to)
{
    int          rc;
    const char  *argv[4];
    redisReply  *r;

    argv[0] = "1";
    argv[1] = rec;
    argv[2] = from;
    argv[3] = to;

    r = ictl_eval(ctx, ictl_successor_lua, 4, argv);
    if (r == NULL) {
        return ICTL_REDIS;
    }

    rc = (r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);

    return rc ? ICTL_OK : ICTL_BAD_INPUT;
}


static int
ictl_keys_rotate(ictl_t *ctx, ictl_key_opts_t *o, const char *id,
    const char *grace)
{
    int              rc;
    char            *scopes, *ips, *p, exp_s[32], old_s[32], score[32],
                     new_id[NGX_INTEGRATIONS_KEY_ID_LEN + 1], seen[64],
                     mark[32], rec[160], kprefix[16];
    time_t           now, old_exp, new_exp, life;
    const char      *ctx_kprefix;
    uint64_t         ms;
    redisReply      *h, *r;
    const char      *f;
    ictl_key_opts_t  n;

    ms = 0;

    if (strcmp(grace, "0") != 0
        && ngx_integrations_duration_parse((const unsigned char *) grace,
                                           strlen(grace), &ms) != 0)
    {
        ictl_error("invalid --grace \"%s\"", grace);
        return ICTL_BAD_INPUT;
    }

    h = ictl_key_of_org(ctx, o->org, id, &rc);
    if (h == NULL) {
        return rc;
    }

    f = ictl_field_of(h, "status");
    if (f == NULL || strcmp(f, "active") != 0) {
        ictl_error("key %s is revoked", id);
        freeReplyObject(h);
        return ICTL_BAD_INPUT;
    }

    now = time(NULL);

    /*
     * A key in its grace period already has a successor: one is enough.
     * "~<time>" marks a rotation under way (one cut short is stale after
     * a minute).
     */
    f = ictl_field_of(h, "successor");
    snprintf(seen, sizeof(seen), "%s", f ? f : "");

    if (seen[0] == '~' && now - atol(seen + 1) < 60) {
        ictl_error("key %s is being rotated by another command", id);
        freeReplyObject(h);
        return ICTL_BAD_INPUT;
    }

    if (seen[0] && seen[0] != '~') {
        r = ictl_check(ctx, redisCommand(ctx->rc, "HGET %s{k:%s} status",
                                         ctx->prefix, seen), "HGET");
        if (r == NULL) {
            freeReplyObject(h);
            return ICTL_REDIS;
        }

        rc = (r->type == REDIS_REPLY_STRING && strcmp(r->str, "active") == 0);
        freeReplyObject(r);

        if (rc) {
            ictl_error("key %s was rotated to %s already: rotate %s, or "
                       "revoke %s now", id, seen, seen, id);
            freeReplyObject(h);
            return ICTL_BAD_INPUT;
        }
    }

    f = ictl_field_of(h, "expires");
    old_exp = f ? atol(f) : 0;

    if (old_exp && old_exp <= now) {
        ictl_error("key %s has expired", id);
        freeReplyObject(h);
        return ICTL_BAD_INPUT;
    }

    /*
     * how long the key may live: a grace period cut "expires" short, and
     * the first rotation kept what it was (a successor revoked, say, and
     * the key rotated again)
     */
    f = ictl_field_of(h, "key_expires");
    life = f ? atol(f) : old_exp;

    /* the new key is written as the old one was (qkt_..., acme_...) */
    f = ictl_field_of(h, "prefix");
    snprintf(kprefix, sizeof(kprefix), "%s", f ? f : "");

    /*
     * The successor gets the old key's fields whole, straight from the
     * reply (kept until the key is made): a copy cut short could turn
     * "10.1.2.0/24" into "10.1.2.0/2" and widen who may use it.
     */
    f = ictl_field_of(h, "scopes");
    scopes = strdup(f ? f : "");
    if (scopes == NULL) {
        ictl_error("out of memory");
        freeReplyObject(h);
        return ICTL_REDIS;
    }

    for (p = scopes; *p; p++) {
        if (*p == ' ') {
            *p = ',';
        }
    }

    n = *o;
    f = ictl_field_of(h, "name");
    n.name = f ? f : id;
    n.scopes = scopes;
    f = ictl_field_of(h, "env");
    n.env = f ? f : "live";
    /* without the empty entries create refuses (older keys may hold) */
    f = ictl_field_of(h, "ips");
    ips = ictl_list_clean(f ? f : "");
    if (ips == NULL) {
        ictl_error("out of memory");
        free(scopes);
        freeReplyObject(h);
        return ICTL_REDIS;
    }

    n.allow_ip = *ips ? ips : NULL;
    f = ictl_field_of(h, "rate_limit");
    n.rate_limit = (f && *f) ? f : NULL;

    /* a rotation changes the secret, not how long the key may live */
    n.expires = NULL;
    if (life) {
        ictl_iso(life, old_s, sizeof(old_s));
        n.expires = old_s;
    }

    if (ms == 0) {
        /* the new key takes the old one's slot, then the old one goes */
        snprintf(score, sizeof(score), "%ld", (long) life);
        n.replace = id;
        n.replace_score = life ? score : "+inf";
    }

    snprintf(rec, sizeof(rec), "%s{k:%s}", ctx->prefix, id);
    snprintf(mark, sizeof(mark), "~%ld", (long) now);
    rc = ictl_successor(ctx, rec, seen, mark);

    if (rc == ICTL_BAD_INPUT) {
        ictl_error("key %s is being rotated by another command", id);

    } else if (rc == ICTL_OK) {
        ctx_kprefix = ctx->key_prefix;

        if (ictl_key_prefix_ok(kprefix)) {
            ctx->key_prefix = kprefix;
        }

        rc = ictl_keys_create(ctx, &n, new_id);
        ctx->key_prefix = ctx_kprefix;

        if (rc != ICTL_OK) {
            ictl_successor(ctx, rec, mark, seen);
        }
    }

    free(scopes);
    free(ips);
    freeReplyObject(h);

    if (rc == ICTL_OK && ms == 0) {
        rc = ictl_revoke(ctx, o->org, id);
        if (rc != ICTL_OK) {
            /* the old key has no slot now, but its record may be active */
            ictl_error("key %s replaces key %s, which is not revoked: "
                       "revoke %s", new_id, id, id);
            return rc;
        }

        /* only says what replaced it: the rotation is done either way */
        (void) ictl_successor(ctx, rec, mark, new_id);
        return ICTL_OK;
    }

    if (rc != ICTL_OK) {
        if (ctx->at_cap && ms != 0) {
            ictl_error("rotate with --grace 0, or revoke a key first");
        }
        return rc;
    }

    new_exp = now + (time_t) (ms / 1000);
    if (old_exp && old_exp < new_exp) {
        new_exp = old_exp;
    }

    snprintf(exp_s, sizeof(exp_s), "%ld", (long) new_exp);
    snprintf(old_s, sizeof(old_s), "%ld", (long) life);

    r = ictl_check(ctx, redisCommand(ctx->rc,
                                     "HSET %s{k:%s} expires %s successor %s "
                                     "key_expires %s",
                                     ctx->prefix, id, exp_s, new_id, old_s),
                   "HSET");
    if (r == NULL) {
        return ICTL_REDIS;
    }
    freeReplyObject(r);

    r = ictl_check(ctx, redisCommand(ctx->rc, "ZADD %s{o:%s}:active XX %s %s",
                                     ctx->prefix, o->org, exp_s, id), "ZADD");
    if (r == NULL) {
        return ICTL_REDIS;
    }
    freeReplyObject(r);

    if (!o->json) {
        ictl_iso(new_exp, exp_s, sizeof(exp_s));
        printf("old key %s expires at %s\n", id, exp_s);
    }

    return ICTL_OK;
}


/* -- data import ------------------------------------------------------- */

static const char  *ictl_event_fields[] = {
    "id", "slug", "title", "starts", "ends", "status", "published",
    "passCount", "revenue", "updated", NULL
};

static const char  *ictl_attendee_fields[] = {
    "id", "name", "email", "phone", "createdTime", "promo", "scanned",
    "reference", "identifier", "category", "categoryId", "amount", "paid",
    "customFields", "updated", NULL
};


typedef struct {
    ictl_t      *ctx;
    const char  *org;
    const char  *env;
    char         D[256];
    json_t      *slugs;      /* slug -> padded id, this file so far; null:
                                renamed away by a line before */
    json_t      *ids;        /* padded id -> its slug, this file so far */
    json_t      *redis_ids;  /* slug -> id known in Redis, or null */
    json_t      *redis_slugs;   /* padded id -> its slug in Redis, or null */
    long         line;
    int          errors;        /* messages */
    long         bad_lines;
    long         last_bad;
    int          redis_failed;  /* a lookup failed: said, exit 2 */
    long         events;
    long         attendees;
} ictl_import_t;


static void
ictl_bad(ictl_import_t *im, const char *fmt, ...)
{
    va_list  args;

    im->errors++;

    if (im->last_bad != im->line) {
        im->last_bad = im->line;
        im->bad_lines++;
    }

    if (im->errors > ICTL_MAX_ERRORS) {
        return;
    }

    fprintf(stderr, "integrationsctl: line %ld: ", im->line);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}


static int
ictl_slug_ok(const char *s)
{
    size_t  i, n;

    n = strlen(s);
    if (n == 0 || n > 128 || !(islower((unsigned char) s[0])
                               || isdigit((unsigned char) s[0])))
    {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if (!islower((unsigned char) s[i]) && !isdigit((unsigned char) s[i])
            && s[i] != '-' && s[i] != '_')
        {
            return 0;
        }
    }

    return 1;
}


static int
ictl_id_ok(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}


static int
ictl_time_ok(ictl_import_t *im, json_t *obj, const char *f, int required)
{
    double   t;
    json_t  *v;

    v = json_object_get(obj, f);

    if (v == NULL || json_is_null(v)) {
        if (required) {
            ictl_bad(im, "\"%s\" is required", f);
            return 0;
        }
        return 1;
    }

    if (!json_is_string(v) || ictl_parse_iso(json_string_value(v), &t) != 0) {
        ictl_bad(im, "\"%s\" must be an ISO-8601 date-time", f);
        return 0;
    }

    return 1;
}


/* a string or null */
static void
ictl_text_ok(ictl_import_t *im, json_t *obj, const char *f)
{
    json_t  *v;

    v = json_object_get(obj, f);

    if (v && !json_is_string(v) && !json_is_null(v)) {
        ictl_bad(im, "\"%s\" must be a string", f);
    }
}


/* HGET D<hash> field, cached in cache under name: the value, or NULL */
static const char *
ictl_redis_cached(ictl_import_t *im, json_t *cache, const char *name,
    const char *hash, const char *field)
{
    json_t      *v;
    redisReply  *r;

    v = json_object_get(cache, name);
    if (v) {
        return json_is_string(v) ? json_string_value(v) : NULL;
    }

    if (im->redis_failed) {
        return NULL;
    }

    r = ictl_check(im->ctx, redisCommand(im->ctx->rc, "HGET %s%s %s", im->D,
                                         hash, field), "HGET");
    if (r == NULL) {
        im->redis_failed = 1;
        return NULL;
    }

    json_object_set_new(cache, name,
                        r->type == REDIS_REPLY_STRING ? json_string(r->str)
                                                      : json_null());
    freeReplyObject(r);

    v = json_object_get(cache, name);

    return json_is_string(v) ? json_string_value(v) : NULL;
}


/* the event id a slug maps to in Redis (cached), or NULL */
static const char *
ictl_redis_slug(ictl_import_t *im, const char *slug)
{
    return ictl_redis_cached(im, im->redis_ids, slug, ":slugs", slug);
}


/* the slug an event id has in Redis (cached), or NULL */
static const char *
ictl_redis_slug_of(ictl_import_t *im, const char *pad)
{
    char  hash[64];

    snprintf(hash, sizeof(hash), ":ev:%s", pad);

    return ictl_redis_cached(im, im->redis_slugs, pad, hash, "slug");
}


/*
 * An event line gives its id the slug: the slug it had (earlier in the
 * file, or in Redis) is free from here on, as the script frees it, so
 * both passes see the file's renames in its order.
 */
static void
ictl_slug_move(ictl_import_t *im, const char *pad, const char *slug)
{
    json_t      *v;
    const char  *old;

    v = json_object_get(im->ids, pad);
    old = v ? json_string_value(v) : ictl_redis_slug_of(im, pad);

    if (old && strcmp(old, slug) != 0) {
        json_object_set_new(im->slugs, old, json_null());
    }

    json_object_set_new(im->ids, pad, json_string(slug));
    json_object_set_new(im->slugs, slug, json_string(pad));
}


/* the padded id a slug names at this line: this file's, else Redis's */
static const char *
ictl_slug_id(ictl_import_t *im, const char *slug)
{
    json_t  *v;

    v = json_object_get(im->slugs, slug);
    if (v) {
        return json_string_value(v);  /* NULL: renamed away */
    }

    return ictl_redis_slug(im, slug);
}


static const char *
ictl_event_of(ictl_import_t *im, json_t *obj)
{
    json_t      *ev, *v;
    const char  *slug, *id;

    ev = json_object_get(obj, "event");
    if (!json_is_string(ev)) {
        ictl_bad(im, "\"event\" (the event's slug) is required");
        return NULL;
    }

    slug = json_string_value(ev);
    v = json_object_get(im->slugs, slug);
    if (v && json_is_null(v)) {
        ictl_bad(im, "unknown event \"%s\" (a line before gave its event "
                 "another slug)", slug);
        return NULL;
    }

    id = ictl_slug_id(im, slug);
    if (id) {
        return id;
    }

    if (im->redis_failed) {
        return NULL;
    }

    ictl_bad(im, "unknown event \"%s\" (import the event first)", slug);

    return NULL;
}


/* what the API promises of a ticket type: integer cents, whole counts */

static void
ictl_ticket_types_ok(ictl_import_t *im, json_t *types)
{
    size_t       i, j;
    json_t      *t, *v;
    const char  *f;

    static const char  *counts[] = { "price", "quantity", "sold",
                                     "available", NULL };
    static const char  *orders[] = { "minPerOrder", "maxPerOrder", NULL };

    json_array_foreach(types, i, t) {
        if (!json_is_object(t)) {
            ictl_bad(im, "\"ticketTypes\"[%zu] must be an object", i);
            continue;
        }

        for (j = 0; counts[j]; j++) {
            f = counts[j];
            v = json_object_get(t, f);

            /* sold and available are counts the source may not know */
            if (v && !ictl_id_ok(v) && !(j >= 2 && json_is_null(v))) {
                ictl_bad(im, "\"ticketTypes\"[%zu].%s must be an integer "
                         ">= 0%s", i, f, j == 0 ? " (cents: 2500 is 25.00)"
                                                : "");
            }
        }

        for (j = 0; orders[j]; j++) {
            f = orders[j];
            v = json_object_get(t, f);

            if (v && !json_is_null(v)
                && !(json_is_integer(v) && json_integer_value(v) >= 1))
            {
                ictl_bad(im, "\"ticketTypes\"[%zu].%s must be an integer "
                         ">= 1", i, f);
            }
        }
    }
}


static void
ictl_validate(ictl_import_t *im, json_t *obj)
{
    char         pad[32];
    json_t      *kind, *v;
    const char  *k, *slug, *known;

    kind = json_object_get(obj, "kind");
    k = json_is_string(kind) ? json_string_value(kind) : "";

    if (strcmp(k, "event") == 0) {
        v = json_object_get(obj, "id");
        if (!ictl_id_ok(v)) {
            ictl_bad(im, "\"id\" must be a non-negative integer");
            return;
        }

        snprintf(pad, sizeof(pad), "%020lld",
                 (long long) json_integer_value(v));

        v = json_object_get(obj, "slug");
        if (!json_is_string(v) || !ictl_slug_ok(json_string_value(v))) {
            ictl_bad(im, "\"slug\" must match [a-z0-9][a-z0-9_-]*");
            return;
        }
        slug = json_string_value(v);

        v = json_object_get(obj, "title");
        if (!json_is_string(v)) {
            ictl_bad(im, "\"title\" must be a string");
        }

        /* the status filter reads it */
        ictl_text_ok(im, obj, "status");

        ictl_time_ok(im, obj, "starts", 1);
        ictl_time_ok(im, obj, "ends", 0);
        ictl_time_ok(im, obj, "updated", 0);

        /* liveOnly reads it: "true" (a string) would hide the event */
        v = json_object_get(obj, "published");
        if (v && !json_is_boolean(v) && !json_is_null(v)) {
            ictl_bad(im, "\"published\" must be true or false");
        }

        v = json_object_get(obj, "ticketTypes");
        if (v && !json_is_array(v)) {
            ictl_bad(im, "\"ticketTypes\" must be an array");

        } else if (v) {
            ictl_ticket_types_ok(im, v);
        }
        v = json_object_get(obj, "availability");
        if (v && !json_is_object(v)) {
            ictl_bad(im, "\"availability\" must be an object");
        }
        v = json_object_get(obj, "eventFields");
        if (v && !json_is_array(v)) {
            ictl_bad(im, "\"eventFields\" must be an array");
        }
        v = json_object_get(obj, "categoryFields");
        if (v && !json_is_array(v)) {
            ictl_bad(im, "\"categoryFields\" must be an array");
        }

        known = ictl_slug_id(im, slug);

        if (known && strcmp(known, pad) != 0) {
            ictl_bad(im, "slug \"%s\" belongs to another event", slug);
            return;
        }

        ictl_slug_move(im, pad, slug);
        return;
    }

    if (strcmp(k, "attendee") == 0) {
        ictl_event_of(im, obj);

        if (!ictl_id_ok(json_object_get(obj, "id"))) {
            ictl_bad(im, "\"id\" must be a non-negative integer");
        }

        ictl_time_ok(im, obj, "createdTime", 1);
        ictl_time_ok(im, obj, "updated", 0);

        /* what search reads: a number there would never be found */
        ictl_text_ok(im, obj, "name");
        ictl_text_ok(im, obj, "email");
        ictl_text_ok(im, obj, "phone");
        ictl_text_ok(im, obj, "reference");

        /*
         * labelled by the event's descriptors, name by name; the other
         * fields (amount, paid, ...) are served as the source gave them
         */
        v = json_object_get(obj, "customFields");
        if (v && !json_is_object(v) && !json_is_null(v)) {
            ictl_bad(im, "\"customFields\" must be an object");
        }

        v = json_object_get(obj, "promo");
        if (v && !json_is_boolean(v) && !json_is_null(v)) {
            ictl_bad(im, "\"promo\" must be true or false");
        }
        v = json_object_get(obj, "scanned");
        if (v && !json_is_boolean(v) && !json_is_null(v)) {
            ictl_bad(im, "\"scanned\" must be true or false");
        }
        v = json_object_get(obj, "categoryId");
        if (v && !json_is_null(v) && !ictl_id_ok(v)) {
            ictl_bad(im, "\"categoryId\" must be a non-negative integer");
        }
        return;
    }

    if (strcmp(k, "delete_attendee") == 0) {
        ictl_event_of(im, obj);
        if (!ictl_id_ok(json_object_get(obj, "id"))) {
            ictl_bad(im, "\"id\" must be a non-negative integer");
        }
        return;
    }

    ictl_bad(im, "\"kind\" must be event, attendee or delete_attendee");
}


/* a copy of s case-folded, as the module folds a search term */
static char *
ictl_folded(const char *s)
{
    char  *out;

    out = strdup(s ? s : "");
    if (out == NULL) {
        return NULL;
    }

    /* as the module folds the query */
    ngx_integrations_fold((unsigned char *) out, (unsigned char *) out,
                          strlen(out));

    return out;
}


static const char *
ictl_str(json_t *obj, const char *f)
{
    json_t  *v;

    v = json_object_get(obj, f);

    return json_is_string(v) ? json_string_value(v) : "";
}


static void
ictl_epoch_of(json_t *obj, const char *f, char *buf, size_t size)
{
    double  t;

    if (json_is_string(json_object_get(obj, f))
        && ictl_parse_iso(ictl_str(obj, f), &t) == 0)
    {
        ictl_num(t, buf, size);
    } else {
        buf[0] = '\0';
    }
}


typedef struct {
    char         sha[5][41];
    long         queued;
    long         sent;              /* commands sent, replies read */
    long         read;
    long         lines[ICTL_BATCH]; /* the line of each command in flight */
    char         deletes[ICTL_BATCH];  /* ... and whether it deletes */
    long         failed;            /* the first line Redis refused, or 0 */
    int          gone;              /* ... as its event was deleted */
    long         last;              /* the last line whose reply was read */
    long         deletions;         /* attendees deleted that were there */
} ictl_pipe_t;


static int
ictl_drain(ictl_import_t *im, ictl_pipe_t *pp)
{
    int          rc, deletes;
    long         line;
    redisReply  *r;

    rc = ICTL_OK;

    while (pp->queued > 0) {
        r = NULL;
        if (redisGetReply(im->ctx->rc, (void **) &r) != REDIS_OK) {
            ictl_error("Redis: %s", im->ctx->rc->errstr);
            return ICTL_REDIS;
        }
        pp->queued--;
        deletes = pp->deletes[pp->read % ICTL_BATCH];
        line = pp->lines[pp->read++ % ICTL_BATCH];
        pp->last = line;

        /* each line is one script: refused, it wrote nothing */
        if (r->type == REDIS_REPLY_ERROR) {
            if (pp->failed == 0) {
                ictl_error("line %ld: Redis: %s", line, r->str);
                pp->failed = line;
                pp->gone = (strstr(r->str, ICTL_EVENT_GONE) != NULL);
            }
            rc = ICTL_REDIS;

        } else if (deletes && r->type == REDIS_REPLY_INTEGER
                   && r->integer == 1)
        {
            pp->deletions++;
        }

        freeReplyObject(r);
    }

    return rc;
}


/*
 * Where the placeholder of "updated", the last of the item's fields, is
 * in the JSON text s (closed: s ends with "}"), as the script's 1-based
 * position; the script writes the stamp over it.
 */
static int
ictl_stamp_at(const char *s, int closed, char *at)
{
    size_t  len, n;

    n = sizeof(ICTL_PLACEHOLDER) - 1;
    len = s ? strlen(s) : 0;

    if (len < n + 2 + (closed ? 1 : 0)) {
        goto fail;
    }

    len -= 1 + (closed ? 1 : 0);

    if (memcmp(s + len - n, ICTL_PLACEHOLDER, n) != 0) {
        goto fail;
    }

    snprintf(at, 32, "%zu", len - n + 1);

    return ICTL_OK;

fail:

    ictl_error("internal error: no \"updated\" to stamp");

    return ICTL_REDIS;
}


static int
ictl_apply(ictl_import_t *im, ictl_pipe_t *pp, json_t *obj)
{
    int          argc, i;
    char        *item, *detail, *search, *rest_text, *s;
    char         pad[32], starts[32], ends[32], upd[32], E[320], cat[32],
                 ct[32], at_item[32], at_detail[32];
    size_t       lens[32];
    json_t      *v;
    const char  *argv[32], *k, *names[4] = {
                     "ticketTypes", "availability", "eventFields",
                     "categoryFields" };
    char        *extra[4];
    const char  *id;
    int          rc, stamp, deleting;

    k = ictl_str(obj, "kind");
    item = detail = search = rest_text = NULL;
    memset(extra, 0, sizeof(extra));
    rc = ICTL_OK;

    /* k is freed with "kind" below */
    deleting = (strcmp(k, "delete_attendee") == 0);

    /* no "updated" of its own: the script stamps it, see ICTL_STAMP */
    v = json_object_get(obj, "updated");
    stamp = (v == NULL || json_is_null(v)) && !deleting;

    if (stamp) {
        json_object_set_new(obj, "updated", json_string(ICTL_PLACEHOLDER));
    }

    at_item[0] = '0';
    at_item[1] = '\0';
    at_detail[0] = '0';
    at_detail[1] = '\0';

    if (strcmp(k, "event") == 0) {
        snprintf(pad, sizeof(pad), "%020lld",
                 (long long) json_integer_value(json_object_get(obj, "id")));

        ictl_slug_move(im, pad, ictl_str(obj, "slug"));

        item = ictl_object(obj, ictl_event_fields, 1);
        rc = stamp ? ictl_stamp_at(item, 1, at_item) : ICTL_OK;
        if (rc != ICTL_OK) {
            goto done;
        }

        /* detail: the item's fields, then the rest (merged by the script) */
        {
            json_t      *rest;
            const char  *key;

            rest = json_object();
            json_object_foreach(obj, key, v) {
                int  j, skip = 0;

                for (j = 0; ictl_event_fields[j]; j++) {
                    if (strcmp(key, ictl_event_fields[j]) == 0) {
                        skip = 1;
                    }
                }
                for (j = 0; j < 4; j++) {
                    if (strcmp(key, names[j]) == 0) {
                        skip = 1;
                    }
                }
                if (!skip && strcmp(key, "kind") != 0) {
                    json_object_set(rest, key, v);
                }
            }

            detail = ictl_object(obj, ictl_event_fields, 0);
            rc = stamp ? ictl_stamp_at(detail, 0, at_detail) : ICTL_OK;
            if (rc != ICTL_OK) {
                json_decref(rest);
                goto done;
            }
            rest_text = json_object_size(rest) ? ictl_dump(rest) : NULL;
            json_decref(rest);
        }

        s = malloc(strlen(ictl_str(obj, "title"))
                   + strlen(ictl_str(obj, "slug")) + 2);
        if (s) {
            sprintf(s, "%s\n%s", ictl_str(obj, "title"),
                    ictl_str(obj, "slug"));
            search = ictl_folded(s);
            free(s);
        }

        ictl_epoch_of(obj, "starts", starts, sizeof(starts));
        ictl_epoch_of(obj, "ends", ends, sizeof(ends));
        ictl_epoch_of(obj, "updated", upd, sizeof(upd));

        argc = 0;
        argv[argc++] = "EVALSHA";
        argv[argc++] = pp->sha[0];
        argv[argc++] = "1";
        argv[argc++] = im->D;
        argv[argc++] = pad;
        argv[argc++] = ictl_str(obj, "slug");
        argv[argc++] = item;
        argv[argc++] = detail;
        argv[argc++] = search;
        argv[argc++] = starts;
        argv[argc++] = ends;
        argv[argc++] = ictl_str(obj, "status");
        v = json_object_get(obj, "published");
        argv[argc++] = json_is_true(v) ? "1" : "0";
        argv[argc++] = upd;

        for (i = 0; i < 4; i++) {
            v = json_object_get(obj, names[i]);
            if (v) {
                extra[i] = ictl_dump(v);
            }
            argv[argc++] = v ? "1" : "0";
            argv[argc++] = v ? extra[i] : "";
        }

        argv[argc++] = at_item;
        argv[argc++] = at_detail;
        argv[argc++] = rest_text ? rest_text : "";

        im->events++;

    } else {
        /* checked in the first pass: the slug names an event here */
        id = ictl_slug_id(im, ictl_str(obj, "event"));

        snprintf(E, sizeof(E), "%s:ev:%s", im->D, id);
        snprintf(pad, sizeof(pad), "%020lld",
                 (long long) json_integer_value(json_object_get(obj, "id")));

        argc = 0;
        argv[argc++] = "EVALSHA";

        if (deleting) {
            argv[argc++] = pp->sha[2];
            argv[argc++] = "2";
            argv[argc++] = E;
            argv[argc++] = im->D;
            argv[argc++] = pad;

        } else {
            json_object_del(obj, "kind");
            json_object_del(obj, "event");
            item = ictl_object(obj, ictl_attendee_fields, 1);
            rc = stamp ? ictl_stamp_at(item, 1, at_item) : ICTL_OK;
            if (rc != ICTL_OK) {
                goto done;
            }

            s = malloc(strlen(ictl_str(obj, "name"))
                       + strlen(ictl_str(obj, "email"))
                       + strlen(ictl_str(obj, "phone"))
                       + strlen(ictl_str(obj, "reference")) + 4);
            if (s) {
                sprintf(s, "%s\n%s\n%s\n%s", ictl_str(obj, "name"),
                        ictl_str(obj, "email"), ictl_str(obj, "phone"),
                        ictl_str(obj, "reference"));
                search = ictl_folded(s);
                free(s);
            }

            ictl_epoch_of(obj, "createdTime", ct, sizeof(ct));
            ictl_epoch_of(obj, "updated", upd, sizeof(upd));

            v = json_object_get(obj, "categoryId");
            if (json_is_integer(v)) {
                snprintf(cat, sizeof(cat), "%lld",
                         (long long) json_integer_value(v));
            } else {
                cat[0] = '\0';
            }

            argv[argc++] = pp->sha[1];
            argv[argc++] = "2";
            argv[argc++] = E;
            argv[argc++] = im->D;
            argv[argc++] = pad;
            argv[argc++] = ct;
            argv[argc++] = item;
            argv[argc++] = search;
            argv[argc++] = json_is_true(json_object_get(obj, "scanned"))
                           ? "1" : "0";
            argv[argc++] = json_is_true(json_object_get(obj, "promo"))
                           ? "1" : "0";
            argv[argc++] = cat;
            argv[argc++] = upd;
            argv[argc++] = at_item;
            im->attendees++;
        }
    }

    for (i = 0; i < argc; i++) {
        if (argv[i] == NULL) {
            ictl_error("out of memory");
            rc = ICTL_REDIS;
            goto done;
        }
        lens[i] = strlen(argv[i]);
    }

    redisAppendCommandArgv(im->ctx->rc, argc, argv, lens);
    pp->deletes[pp->sent % ICTL_BATCH] = (char) deleting;
    pp->lines[pp->sent++ % ICTL_BATCH] = im->line;
    pp->queued++;

    if (pp->queued >= ICTL_BATCH) {
        rc = ictl_drain(im, pp);
    }

done:

    free(item);
    free(detail);
    free(search);
    free(rest_text);
    for (i = 0; i < 4; i++) {
        free(extra[i]);
    }

    return rc;
}


/*
 * The next line of f into line (ICTL_LINE_MAX + 2 bytes, "\r\n"
 * included), its length in *n; a longer one is read past, not kept, and
 * *n is then -1. 0: a line, 1: the end, -1: a read error.
 */
static int
ictl_read_line(FILE *f, char *line, ssize_t *n)
{
    int     c;
    size_t  len;

    len = 0;

    while ((c = getc_unlocked(f)) != EOF) {
        if (len < ICTL_LINE_MAX + 2) {
            line[len] = (char) c;
        }
        len++;

        if (c == '\n') {
            break;
        }
    }

    if (ferror(f)) {
        return -1;
    }

    if (len == 0) {
        return 1;
    }

    /* "\r\n" and "\n" do not count */
    if (len > ICTL_LINE_MAX + 2
        || len - (c == '\n') - (c == '\n' && len > 1 && line[len - 2] == '\r')
           > ICTL_LINE_MAX)
    {
        *n = -1;
        return 0;
    }

    *n = (ssize_t) len;

    return 0;
}


/* one pass over the file: validate (apply == 0) or write (apply == 1) */
static int
ictl_pass(ictl_import_t *im, FILE *f, ictl_pipe_t *pp)
{
    int            rc, got;
    char          *line, *p;
    ssize_t        n;
    json_t        *obj;
    json_error_t   err;

    line = malloc(ICTL_LINE_MAX + 2);
    if (line == NULL) {
        ictl_error("out of memory");
        return ICTL_BAD_INPUT;
    }

    im->line = 0;
    rc = ICTL_OK;

    while ((got = ictl_read_line(f, line, &n)) == 0) {
        im->line++;

        if (n == -1) {
            if (pp == NULL) {
                ictl_bad(im, "longer than %d bytes", ICTL_LINE_MAX);
            }
            continue;
        }

        /* a UTF-8 byte order mark, as some editors write, is no JSON */
        if (im->line == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0)
        {
            memmove(line, line + 3, (size_t) n - 3);
            n -= 3;
        }

        /* by length: a NUL byte is not the end of a line, but bad JSON */
        for (p = line; p < line + n
                       && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n');
             p++)
        {
            /* void */
        }

        if (p == line + n) {
            continue;
        }

        if (memchr(line, '\0', (size_t) n)) {
            if (pp == NULL) {
                ictl_bad(im, "a NUL byte is not JSON");
            }
            continue;
        }

        obj = json_loadb(line, (size_t) n, JSON_REJECT_DUPLICATES, &err);

        if (pp == NULL) {
            if (obj == NULL) {
                /* jansson's words for what it cannot hold */
                if (strstr(err.text, "JSON_ALLOW_NUL")) {
                    ictl_bad(im, "a \\u0000 in a string is not taken "
                             "(column %d)", err.column);

                } else if (strstr(err.text, "too big")) {
                    ictl_bad(im, "a number past 64-bit integers "
                             "(column %d): write it as a string or a real",
                             err.column);

                } else {
                    ictl_bad(im, "invalid JSON: %s", err.text);
                }
                continue;
            }

            if (!json_is_object(obj)) {
                ictl_bad(im, "a line must be a JSON object");
            } else {
                ictl_validate(im, obj);
            }

        } else {
            rc = ictl_apply(im, pp, obj);
        }

        json_decref(obj);

        if (rc != ICTL_OK || im->redis_failed) {
            break;
        }
    }

    if (rc == ICTL_OK && got == -1) {
        ictl_error("cannot read the input: %s", strerror(errno));
        rc = ICTL_BAD_INPUT;
    }

    free(line);

    if (pp && (rc == ICTL_OK || rc == ICTL_REDIS)) {
        /* the replies of what was sent: the line Redis refused first */
        if (ictl_drain(im, pp) != ICTL_OK) {
            rc = ICTL_REDIS;
        }
    }

    if (pp && pp->failed && pp->gone) {
        ictl_error("import stopped at line %ld: its event was deleted "
                   "(data delete) while the import ran; the attendees "
                   "written before went with it, the rest are not "
                   "written", pp->failed);

    } else if (pp && pp->failed) {
        ictl_error("import stopped at line %ld: the lines before it are "
                   "written, it is not, and those sent with it (to line "
                   "%ld) may be; each line is written whole or not at all, "
                   "and the import is idempotent: run it again once Redis "
                   "takes writes", pp->failed, pp->last);
    }

    return rc;
}


/* in, copied to a temporary file, rewound; NULL after an error said */
static FILE *
ictl_spool(FILE *in, const char *path)
{
    char    buf[65536];
    FILE   *f;
    size_t  n;

    f = tmpfile();
    if (f == NULL) {
        ictl_error("cannot create a temporary file: %s", strerror(errno));
        return NULL;
    }

    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, f) != n) {
            ictl_error("cannot write a temporary file: %s", strerror(errno));
            fclose(f);
            return NULL;
        }
    }

    if (ferror(in) || fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0) {
        ictl_error("%s: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }

    return f;
}


static int
ictl_data_import(ictl_t *ctx, const char *org, const char *env,
    const char *path)
{
    int            rc;
    FILE          *f, *in;
    double         t0;
    struct stat    st;
    ictl_pipe_t    pp;
    ictl_import_t  im;

    memset(&im, 0, sizeof(im));
    im.ctx = ctx;
    im.org = org;
    im.env = env;
    snprintf(im.D, sizeof(im.D), "%s{o:%s}:%s", ctx->prefix, org, env);
    im.slugs = json_object();
    im.ids = json_object();
    im.redis_ids = json_object();
    im.redis_slugs = json_object();
    t0 = ictl_now();

    in = stdin;
    f = NULL;

    if (strcmp(path, "-") != 0) {
        in = fopen(path, "r");
        if (in == NULL) {
            ictl_error("%s: %s", path, strerror(errno));
            rc = ICTL_BAD_INPUT;
            goto done;
        }
    }

    if (fstat(fileno(in), &st) != 0) {
        ictl_error("%s: %s", path, strerror(errno));
        rc = ICTL_BAD_INPUT;
        goto done;
    }

    if (S_ISDIR(st.st_mode)) {
        ictl_error("%s: is a directory", path);
        rc = ICTL_BAD_INPUT;
        goto done;
    }

    if (S_ISREG(st.st_mode) && in != stdin) {
        f = in;

    } else {
        /*
         * read twice, so spooled: a pipe cannot be, and stdin may start
         * past a file's beginning; nothing is written before all of it
         * was checked
         */
        f = ictl_spool(in, path);
        if (in != stdin) {
            fclose(in);
        }
        in = NULL;
        if (f == NULL) {
            rc = ICTL_BAD_INPUT;
            goto done;
        }
    }

    rc = ictl_pass(&im, f, NULL);

    if (im.redis_failed) {
        ictl_error("nothing imported");
        rc = ICTL_REDIS;
        goto done;
    }

    if (rc != ICTL_OK) {
        goto done;
    }

    if (im.errors) {
        if (im.errors > ICTL_MAX_ERRORS) {
            ictl_error("... and %d more errors",
                       im.errors - ICTL_MAX_ERRORS);
        }
        ictl_error("nothing imported: %ld bad line%s", im.bad_lines,
                   im.bad_lines == 1 ? "" : "s");
        rc = ICTL_BAD_INPUT;
        goto done;
    }

    memset(&pp, 0, sizeof(pp));

    if (ictl_load(ctx, ictl_event_lua, pp.sha[0]) != ICTL_OK
        || ictl_load(ctx, ictl_attendee_lua, pp.sha[1]) != ICTL_OK
        || ictl_load(ctx, ictl_delete_attendee_lua, pp.sha[2]) != ICTL_OK)
    {
        rc = ICTL_REDIS;
        goto done;
    }

    if (fseek(f, 0, SEEK_SET) != 0) {
        ictl_error("%s: cannot read it again: %s", path, strerror(errno));
        rc = ICTL_BAD_INPUT;
        goto done;
    }

    /* the writes follow the file's renames again, line by line */
    json_object_clear(im.slugs);
    json_object_clear(im.ids);

    rc = ictl_pass(&im, f, &pp);

    if (rc == ICTL_OK) {
        fprintf(stderr, "imported: %ld events, %ld attendees, %ld deletions "
                "(%ld lines) in %.2f s\n", im.events, im.attendees,
                pp.deletions, im.line, ictl_now() - t0);
    }

done:

    if (f && f != stdin) {
        fclose(f);
    }
    if (in && in != stdin && in != f) {
        fclose(in);
    }
    json_decref(im.slugs);
    json_decref(im.ids);
    json_decref(im.redis_ids);
    json_decref(im.redis_slugs);

    return rc;
}


/* adds c to the sorted set of n ids in cats (grown as needed) */
static int
ictl_add_category(long long **cats, size_t *n, size_t *size, long long c)
{
    size_t      lo, hi, mid;
    long long  *p;

    lo = 0;
    hi = *n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if ((*cats)[mid] == c) {
            return ICTL_OK;
        }

        if ((*cats)[mid] < c) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    if (*n == *size) {
        p = realloc(*cats, (*size ? 2 * *size : 16) * sizeof(long long));
        if (p == NULL) {
            ictl_error("out of memory");
            return ICTL_REDIS;
        }

        *cats = p;
        *size = *size ? 2 * *size : 16;
    }

    memmove(*cats + lo + 1, *cats + lo, (*n - lo) * sizeof(long long));
    (*cats)[lo] = c;
    (*n)++;

    return ICTL_OK;
}


/*
 * The categories of an event's attendees, sorted and unique in *cats (n
 * of them; malloc'ed, the caller frees): E:am's values ("<scanned><promo>:
 * <categoryId>") read 1000 fields a call, so that Redis is never held for
 * long by one command. E:cats alone would miss the categories of
 * attendees imported before it was kept.
 */
static int
ictl_scan_categories(ictl_t *ctx, const char *E, long long **cats,
    size_t *n)
{
    int          rc;
    char         cursor[32];
    size_t       i, size;
    redisReply  *r, *f;

    *cats = NULL;
    *n = 0;
    size = 0;
    strcpy(cursor, "0");

    do {
        r = ictl_check(ctx, redisCommand(ctx->rc,
                                         "HSCAN %s:am %s COUNT 1000", E,
                                         cursor),
                       "HSCAN");
        if (r == NULL) {
            return ICTL_REDIS;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
            || r->element[0]->type != REDIS_REPLY_STRING
            || r->element[0]->len >= sizeof(cursor)
            || r->element[1]->type != REDIS_REPLY_ARRAY)
        {
            ictl_error("Redis: HSCAN: unexpected reply");
            freeReplyObject(r);
            return ICTL_REDIS;
        }

        memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
        f = r->element[1];
        rc = ICTL_OK;

        for (i = 1; i < f->elements && rc == ICTL_OK; i += 2) {
            if (f->element[i]->type == REDIS_REPLY_STRING
                && f->element[i]->len > 3 && f->element[i]->str[2] == ':')
            {
                rc = ictl_add_category(cats, n, &size,
                                       strtoll(f->element[i]->str + 3,
                                               NULL, 10));
            }
        }

        freeReplyObject(r);

        if (rc != ICTL_OK) {
            return rc;
        }

    } while (strcmp(cursor, "0") != 0);

    return ICTL_OK;
}


static int
ictl_data_delete(ictl_t *ctx, const char *org, const char *env,
    const char *slug)
{
    char          D[256], E[320], *nums;
    size_t        i, ncats;
    long long     n, *cats;
    redisReply   *r;
    const char  **av;

    snprintf(D, sizeof(D), "%s{o:%s}:%s", ctx->prefix, org, env);

    cats = NULL;
    ncats = 0;

    r = ictl_check(ctx, redisCommand(ctx->rc, "HGET %s:slugs %s", D, slug),
                   "HGET");
    if (r == NULL) {
        return ICTL_REDIS;
    }

    if (r->type == REDIS_REPLY_STRING) {
        snprintf(E, sizeof(E), "%s:ev:%s", D, r->str);
        freeReplyObject(r);

        if (ictl_scan_categories(ctx, E, &cats, &ncats) != ICTL_OK) {
            free(cats);
            return ICTL_REDIS;
        }

    } else {
        freeReplyObject(r);
    }

    av = malloc((ncats + 3) * sizeof(char *));
    nums = malloc(ncats * 24 + 1);

    if (av == NULL || nums == NULL) {
        free(av);
        free(nums);
        free(cats);
        ictl_error("out of memory");
        return ICTL_REDIS;
    }

    av[0] = "1";
    av[1] = D;
    av[2] = slug;

    for (i = 0; i < ncats; i++) {
        av[3 + i] = nums + 24 * i;
        snprintf(nums + 24 * i, 24, "%lld", cats[i]);
    }

    r = ictl_eval(ctx, ictl_delete_event_lua, (int) (ncats + 3), av);

    free(av);
    free(nums);
    free(cats);

    if (r == NULL) {
        return ICTL_REDIS;
    }

    n = r->integer;
    freeReplyObject(r);

    if (n == 0) {
        ictl_error("no event \"%s\" in organization %s (%s)", slug, org, env);
        return ICTL_BAD_INPUT;
    }

    printf("deleted event %s\n", slug);

    return ICTL_OK;
}


/* -- main -------------------------------------------------------------- */

#define ICTL_OPT_REDIS       0x0001
#define ICTL_OPT_PREFIX      0x0002
#define ICTL_OPT_KEY_PREFIX  0x0004
#define ICTL_OPT_PEPPER      0x0008
#define ICTL_OPT_ORG         0x0010
#define ICTL_OPT_NAME        0x0020
#define ICTL_OPT_SCOPES      0x0040
#define ICTL_OPT_EXPIRES     0x0080
#define ICTL_OPT_ALLOW_IP    0x0100
#define ICTL_OPT_RATE_LIMIT  0x0200
#define ICTL_OPT_ENV         0x0400
#define ICTL_OPT_EVENT       0x0800
#define ICTL_OPT_GRACE       0x1000
#define ICTL_OPT_JSON        0x2000
#define ICTL_OPT_GLOBAL                                                      \
    (ICTL_OPT_REDIS | ICTL_OPT_PREFIX | ICTL_OPT_KEY_PREFIX | ICTL_OPT_PEPPER \
     | ICTL_OPT_ORG)


/* an option: its bit, and where its value goes (NULL: a flag) */
typedef struct {
    const char   *name;
    unsigned      bit;
    const char  **value;
} ictl_option_t;


/* the options each command reads besides the global ones */
static const struct {
    const char  *group;
    const char  *cmd;
    unsigned     options;
    int          positional;
} ictl_commands[] = {
    { "keys", "create", ICTL_OPT_NAME | ICTL_OPT_SCOPES | ICTL_OPT_EXPIRES
                        | ICTL_OPT_ALLOW_IP | ICTL_OPT_RATE_LIMIT
                        | ICTL_OPT_ENV | ICTL_OPT_JSON, 0 },
    { "keys", "list", ICTL_OPT_JSON, 0 },
    { "keys", "revoke", 0, 1 },
    { "keys", "rotate", ICTL_OPT_GRACE | ICTL_OPT_JSON, 1 },
    { "data", "import", ICTL_OPT_ENV, 1 },
    { "data", "delete", ICTL_OPT_ENV | ICTL_OPT_EVENT, 0 },
    { NULL, NULL, 0, 0 }
};


int
main(int argc, char **argv)
{
    int              i, j, rc, json;
    char             key_id[NGX_INTEGRATIONS_KEY_ID_LEN + 1];
    unsigned         given, unknown;
    ictl_t           ctx;
    const char      *url, *group, *cmd, *org, *env, *event, *grace, *file,
                    *pos;
    ictl_key_opts_t  ko;

    /* where each option's value goes: set as they are read */
    ictl_option_t    options[] = {
        { "--redis", ICTL_OPT_REDIS, &url },
        { "--prefix", ICTL_OPT_PREFIX, &ctx.prefix },
        { "--key-prefix", ICTL_OPT_KEY_PREFIX, &ctx.key_prefix },
        { "--pepper", ICTL_OPT_PEPPER, &ctx.pepper },
        { "--org", ICTL_OPT_ORG, &org },
        { "--name", ICTL_OPT_NAME, &ko.name },
        { "--scopes", ICTL_OPT_SCOPES, &ko.scopes },
        { "--expires", ICTL_OPT_EXPIRES, &ko.expires },
        { "--allow-ip", ICTL_OPT_ALLOW_IP, &ko.allow_ip },
        { "--rate-limit", ICTL_OPT_RATE_LIMIT, &ko.rate_limit },
        { "--env", ICTL_OPT_ENV, &env },
        { "--event", ICTL_OPT_EVENT, &event },
        { "--grace", ICTL_OPT_GRACE, &grace },
        { "--json", ICTL_OPT_JSON, NULL },
        { NULL, 0, NULL }
    };

    /*
     * A reader gone (keys create | head -0) must fail the write, not
     * kill us: a key nobody saw is then taken back, not left active.
     */
    signal(SIGPIPE, SIG_IGN);

    memset(&ctx, 0, sizeof(ctx));
    memset(&ko, 0, sizeof(ko));

    url = getenv("INTEGRATIONS_REDIS");
    if (url == NULL || *url == '\0') {
        url = "redis://127.0.0.1:6379/0";
    }

    ctx.prefix = "";
    ctx.key_prefix = "qkt";
    ctx.pepper = getenv("INTEGRATIONS_PEPPER") ? getenv("INTEGRATIONS_PEPPER")
                                               : "";
    group = cmd = org = event = pos = NULL;
    env = "live";
    grace = "24h";
    json = 0;
    ko.scopes = "events:read,attendees:read";

    given = 0;

    for (i = 1; i < argc; i++) {
        const char  *a = argv[i];

        for (j = 0; options[j].name; j++) {
            if (strcmp(a, options[j].name) == 0) {
                break;
            }
        }

        if (options[j].name) {
            given |= options[j].bit;

            if (options[j].value == NULL) {
                json = 1;
                continue;
            }

            if (i + 1 >= argc) {
                ictl_error("%s needs a value", a);
                return ICTL_BAD_INPUT;
            }

            *options[j].value = argv[++i];
            continue;
        }

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            ictl_usage(stdout);
            return ICTL_OK;
        }

        if (a[0] == '-' && a[1] != '\0') {
            ictl_error("unknown option %s", a);
            ictl_usage(stderr);
            return ICTL_BAD_INPUT;
        }

        if (group == NULL) {
            group = a;
        } else if (cmd == NULL) {
            cmd = a;
        } else if (pos == NULL) {
            pos = a;
        } else {
            ictl_error("unexpected argument %s", a);
            return ICTL_BAD_INPUT;
        }
    }

    if (group == NULL || cmd == NULL) {
        ictl_usage(stderr);
        return ICTL_BAD_INPUT;
    }

    if (strchr(ctx.prefix, '{') || strchr(ctx.prefix, '}')) {
        ictl_error("--prefix must not contain braces");
        return ICTL_BAD_INPUT;
    }

    /* key names are built in fixed buffers: never cut one short */
    if (strlen(ctx.prefix) > ICTL_PREFIX_MAX) {
        ictl_error("--prefix is longer than %d characters", ICTL_PREFIX_MAX);
        return ICTL_BAD_INPUT;
    }

    if (!ictl_key_prefix_ok(ctx.key_prefix)) {
        ictl_error("--key-prefix must be 2-8 lowercase letters");
        return ICTL_BAD_INPUT;
    }

    if (org == NULL || !ictl_name_ok(org)) {
        ictl_error("--org is required: 1-64 of A-Z a-z 0-9 _ . -");
        return ICTL_BAD_INPUT;
    }

    if (strcmp(env, "live") != 0 && strcmp(env, "test") != 0) {
        ictl_error("--env must be live or test");
        return ICTL_BAD_INPUT;
    }

    ko.org = org;
    ko.env = env;
    ko.json = json;

    /* an option the command does not read would be silently lost */
    for (i = 0; ictl_commands[i].group; i++) {
        if (strcmp(group, ictl_commands[i].group) == 0
            && strcmp(cmd, ictl_commands[i].cmd) == 0)
        {
            break;
        }
    }

    if (ictl_commands[i].group) {
        unknown = given & ~(ictl_commands[i].options | ICTL_OPT_GLOBAL);

        for (j = 0; unknown && options[j].name; j++) {
            if (unknown & options[j].bit) {
                ictl_error("%s %s does not take %s", group, cmd,
                           options[j].name);
                return ICTL_BAD_INPUT;
            }
        }

        if (pos && !ictl_commands[i].positional) {
            ictl_error("unexpected argument %s", pos);
            return ICTL_BAD_INPUT;
        }
    }

    /* revoke and rotate take the key's id; the whole key gives it too */
    if (pos && strcmp(group, "keys") == 0
        && (strcmp(cmd, "revoke") == 0 || strcmp(cmd, "rotate") == 0)
        && (strlen(pos) != 8 || !ictl_name_ok(pos)))
    {
        ngx_integrations_key_parts_t  parts;

        if (ngx_integrations_key_parse((const unsigned char *) pos,
                                       strlen(pos), &parts) != 0)
        {
            /* never echoed: it may be a key with a typo */
            ictl_error("keys %s needs the key's id (8 characters, as keys "
                       "list shows) or the whole key", cmd);
            return ICTL_BAD_INPUT;
        }

        memcpy(key_id, parts.id, NGX_INTEGRATIONS_KEY_ID_LEN);
        key_id[NGX_INTEGRATIONS_KEY_ID_LEN] = '\0';
        pos = key_id;
    }

    if (strcmp(group, "keys") == 0) {
        if (strcmp(cmd, "create") == 0) {
            rc = ictl_connect(&ctx, url);
            if (rc == ICTL_OK) {
                rc = ictl_keys_create(&ctx, &ko, NULL);
            }

        } else if (strcmp(cmd, "list") == 0) {
            rc = ictl_connect(&ctx, url);
            if (rc == ICTL_OK) {
                rc = ictl_keys_list(&ctx, org, json);
            }

        } else if (strcmp(cmd, "revoke") == 0 || strcmp(cmd, "rotate") == 0) {
            if (pos == NULL) {
                ictl_error("keys %s needs the key ID", cmd);
                return ICTL_BAD_INPUT;
            }
            rc = ictl_connect(&ctx, url);
            if (rc == ICTL_OK) {
                rc = (cmd[1] == 'e') ? ictl_keys_revoke(&ctx, org, pos)
                                     : ictl_keys_rotate(&ctx, &ko, pos, grace);
            }

        } else {
            ictl_error("unknown command keys %s", cmd);
            return ICTL_BAD_INPUT;
        }

    } else if (strcmp(group, "data") == 0) {
        if (strcmp(cmd, "import") == 0) {
            file = pos;
            if (file == NULL) {
                ictl_error("data import needs a FILE or -");
                return ICTL_BAD_INPUT;
            }
            rc = ictl_connect(&ctx, url);
            if (rc == ICTL_OK) {
                rc = ictl_data_import(&ctx, org, env, file);
            }

        } else if (strcmp(cmd, "delete") == 0) {
            if (event == NULL) {
                ictl_error("data delete needs --event SLUG");
                return ICTL_BAD_INPUT;
            }
            rc = ictl_connect(&ctx, url);
            if (rc == ICTL_OK) {
                rc = ictl_data_delete(&ctx, org, env, event);
            }

        } else {
            ictl_error("unknown command data %s", cmd);
            return ICTL_BAD_INPUT;
        }

    } else {
        ictl_error("unknown command %s", group);
        ictl_usage(stderr);
        return ICTL_BAD_INPUT;
    }

    if (ctx.rc) {
        redisFree(ctx.rc);
    }

    return rc;
}
