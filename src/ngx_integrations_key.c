/*
 * Pure logic shared by the modules and integrationsctl (see the header).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/opensslv.h>
#include <openssl/crypto.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#endif
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "ngx_integrations_key.h"
#include "ngx_integrations_fold.h"


static const char  ngx_integrations_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


static int
ngx_integrations_is_base62(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')
           || (c >= 'a' && c <= 'z');
}


void
ngx_integrations_key_checksum(const unsigned char *text, size_t len,
    unsigned char *out)
{
    int            i;
    unsigned long  crc;

    crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, text, (uInt) len);

    for (i = NGX_INTEGRATIONS_KEY_CHECKSUM_LEN - 1; i >= 0; i--) {
        out[i] = (unsigned char) ngx_integrations_base62[crc % 62];
        crc /= 62;
    }
}


int
ngx_integrations_key_parse(const unsigned char *key, size_t len,
    ngx_integrations_key_parts_t *parts)
{
    size_t                i, n, body;
    unsigned char         sum[NGX_INTEGRATIONS_KEY_CHECKSUM_LEN];
    const unsigned char  *p, *last;

    if (len > NGX_INTEGRATIONS_KEY_MAX_LEN) {
        return -1;
    }

    p = key;
    last = key + len;

    /* prefix: [a-z]{2,8} */
    for (n = 0; p + n < last && key[n] >= 'a' && key[n] <= 'z'; n++) {
        /* void */
    }

    if (n < 2 || n > NGX_INTEGRATIONS_KEY_PREFIX_MAX
        || p + n >= last || p[n] != '_')
    {
        return -1;
    }

    parts->prefix = p;
    parts->prefix_len = n;
    p += n + 1;

    /* env */
    if (last - p < 5
        || (memcmp(p, "live_", 5) != 0 && memcmp(p, "test_", 5) != 0))
    {
        return -1;
    }

    parts->env = p;
    parts->env_len = 4;
    p += 5;

    /* id */
    if ((size_t) (last - p) < NGX_INTEGRATIONS_KEY_ID_LEN + 1) {
        return -1;
    }

    for (i = 0; i < NGX_INTEGRATIONS_KEY_ID_LEN; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9'))) {
            return -1;
        }
    }

    if (p[NGX_INTEGRATIONS_KEY_ID_LEN] != '_') {
        return -1;
    }

    parts->id = p;
    p += NGX_INTEGRATIONS_KEY_ID_LEN + 1;

    /* secret: base62, its last characters the checksum */
    n = (size_t) (last - p);

    if (n < NGX_INTEGRATIONS_KEY_SECRET_MIN
        || n > NGX_INTEGRATIONS_KEY_SECRET_MAX)
    {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (!ngx_integrations_is_base62(p[i])) {
            return -1;
        }
    }

    parts->secret = p;
    parts->secret_len = n;

    body = len - NGX_INTEGRATIONS_KEY_CHECKSUM_LEN;
    ngx_integrations_key_checksum(key, body, sum);

    if (memcmp(sum, key + body, NGX_INTEGRATIONS_KEY_CHECKSUM_LEN) != 0) {
        return -1;
    }

    return 0;
}


/*
 * OpenSSL 3 fetches the implementation behind EVP_sha256() on every call,
 * under a lock, and its one-shot HMAC() fetches HMAC and allocates a
 * dozen objects per call (1.6 us against 0.2 us for a kept context). So
 * each process keeps the digest, a digest context and an HMAC context
 * keyed with the pepper, until ngx_integrations_key_hash_free().
 */
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static EVP_MD         *ngx_integrations_md;
static EVP_MAC_CTX    *ngx_integrations_mac_ctx;
static unsigned char  *ngx_integrations_mac_key;
static size_t          ngx_integrations_mac_key_len;
#endif
static EVP_MD_CTX     *ngx_integrations_md_ctx;

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static void ngx_integrations_mac_free(void);
#endif


static const EVP_MD *
ngx_integrations_sha256(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    if (ngx_integrations_md == NULL) {
        ngx_integrations_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }

    if (ngx_integrations_md) {
        return ngx_integrations_md;
    }
#endif

    return EVP_sha256();
}


static int
ngx_integrations_hmac(const unsigned char *pepper, size_t pepper_len,
    const unsigned char *key, size_t len, unsigned char *md)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    size_t        n;
    EVP_MAC      *mac;
    OSSL_PARAM    params[2];
    EVP_MAC_CTX  *ctx;

    ctx = ngx_integrations_mac_ctx;

    if (ctx && ngx_integrations_mac_key_len == pepper_len
        && memcmp(ngx_integrations_mac_key, pepper, pepper_len) == 0)
    {
        /* the same key again: NULL keeps it */
        if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1) {
            return -1;
        }

    } else {
        ngx_integrations_mac_free();

        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (mac == NULL) {
            return -1;
        }

        ctx = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac);

        if (ctx == NULL) {
            return -1;
        }

        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                     (char *) "SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();

        ngx_integrations_mac_key = malloc(pepper_len);

        if (ngx_integrations_mac_key == NULL
            || EVP_MAC_init(ctx, pepper, pepper_len, params) != 1)
        {
            free(ngx_integrations_mac_key);
            ngx_integrations_mac_key = NULL;
            EVP_MAC_CTX_free(ctx);
            return -1;
        }

        memcpy(ngx_integrations_mac_key, pepper, pepper_len);
        ngx_integrations_mac_key_len = pepper_len;
        ngx_integrations_mac_ctx = ctx;
    }

    if (EVP_MAC_update(ctx, key, len) != 1
        || EVP_MAC_final(ctx, md, &n, EVP_MAX_MD_SIZE) != 1)
    {
        return -1;
    }

    return 0;
#else
    unsigned int  mdlen;

    return HMAC(ngx_integrations_sha256(), pepper, (int) pepper_len, key,
                len, md, &mdlen)
           ? 0 : -1;
#endif
}


#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static void
ngx_integrations_mac_free(void)
{
    EVP_MAC_CTX_free(ngx_integrations_mac_ctx);
    ngx_integrations_mac_ctx = NULL;

    if (ngx_integrations_mac_key) {
        OPENSSL_cleanse(ngx_integrations_mac_key,
                        ngx_integrations_mac_key_len);
        free(ngx_integrations_mac_key);
        ngx_integrations_mac_key = NULL;
    }

    ngx_integrations_mac_key_len = 0;
}
#endif


void
ngx_integrations_key_hash_free(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    ngx_integrations_mac_free();

    EVP_MD_free(ngx_integrations_md);
    ngx_integrations_md = NULL;
#endif

    EVP_MD_CTX_free(ngx_integrations_md_ctx);
    ngx_integrations_md_ctx = NULL;
}


int
ngx_integrations_key_hash(const unsigned char *key, size_t len,
    const unsigned char *pepper, size_t pepper_len, unsigned char *hex)
{
    size_t         i;
    unsigned int   mdlen;
    unsigned char  md[EVP_MAX_MD_SIZE];

    static const char  digits[] = "0123456789abcdef";

    if (pepper_len) {
        if (ngx_integrations_hmac(pepper, pepper_len, key, len, md) != 0) {
            return -1;
        }

    } else {
        if (ngx_integrations_md_ctx == NULL) {
            ngx_integrations_md_ctx = EVP_MD_CTX_new();
            if (ngx_integrations_md_ctx == NULL) {
                return -1;
            }
        }

        if (EVP_DigestInit_ex(ngx_integrations_md_ctx,
                              ngx_integrations_sha256(), NULL)
            != 1
            || EVP_DigestUpdate(ngx_integrations_md_ctx, key, len) != 1
            || EVP_DigestFinal_ex(ngx_integrations_md_ctx, md, &mdlen) != 1)
        {
            return -1;
        }
    }

    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        hex[2 * i] = (unsigned char) digits[md[i] >> 4];
        hex[2 * i + 1] = (unsigned char) digits[md[i] & 0xf];
    }

    return 0;
}


int
ngx_integrations_key_equal(const unsigned char *a, const unsigned char *b,
    size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}


/* one entry "addr" or "addr/bits": 1 match, 0 no match, -1 malformed */

static int
ngx_integrations_ip_entry(const char *entry, const struct sockaddr *sa)
{
    int                   family, bits, max, i, full, rest;
    char                  addr[INET6_ADDRSTRLEN + 1], *slash, *end;
    long                  v;
    size_t                n;
    unsigned char         net[16], mask;
    const unsigned char  *ip;

    slash = strchr(entry, '/');
    n = slash ? (size_t) (slash - entry) : strlen(entry);

    if (n == 0 || n > INET6_ADDRSTRLEN) {
        return -1;
    }

    memcpy(addr, entry, n);
    addr[n] = '\0';

    if (inet_pton(AF_INET, addr, net) == 1) {
        family = AF_INET;
        max = 32;

    } else if (inet_pton(AF_INET6, addr, net) == 1) {
        family = AF_INET6;
        max = 128;

    } else {
        return -1;
    }

    bits = max;

    if (slash) {
        if (slash[1] < '0' || slash[1] > '9') {
            return -1;
        }

        v = strtol(slash + 1, &end, 10);
        if (*end != '\0' || v < 0 || v > max) {
            return -1;
        }

        bits = (int) v;
    }

    if (sa == NULL) {
        return 0;
    }

    ip = NULL;

    if (sa->sa_family == AF_INET && family == AF_INET) {
        ip = (const unsigned char *)
                 &((const struct sockaddr_in *) sa)->sin_addr;

    } else if (sa->sa_family == AF_INET6) {
        ip = (const unsigned char *)
                 &((const struct sockaddr_in6 *) sa)->sin6_addr;

        if (family == AF_INET) {
            /* an IPv4-mapped IPv6 client matches IPv4 entries */
            if (!IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) ip)) {
                return 0;
            }

            ip += 12;

        }

    } else {
        return 0;
    }

    full = bits / 8;
    rest = bits % 8;

    for (i = 0; i < full; i++) {
        if (ip[i] != net[i]) {
            return 0;
        }
    }

    if (rest) {
        mask = (unsigned char) (0xff << (8 - rest));
        if ((ip[full] & mask) != (net[full] & mask)) {
            return 0;
        }
    }

    return 1;
}


static int
ngx_integrations_ip_walk(const unsigned char *list, size_t len,
    const struct sockaddr *sa)
{
    int      rc, matched, entries;
    char     entry[64];
    size_t   i, start, n;

    matched = 0;
    entries = 0;
    i = 0;

    while (i < len) {
        while (i < len && (list[i] == ',' || list[i] == ' ')) {
            i++;
        }

        start = i;

        while (i < len && list[i] != ',' && list[i] != ' ') {
            i++;
        }

        n = i - start;
        if (n == 0) {
            continue;
        }

        if (n >= sizeof(entry)) {
            return -1;
        }

        memcpy(entry, list + start, n);
        entry[n] = '\0';
        entries++;

        rc = ngx_integrations_ip_entry(entry, sa);
        if (rc == -1) {
            return -1;
        }

        if (rc == 1) {
            matched = 1;
        }
    }

    if (sa == NULL) {
        return 0;
    }

    return entries == 0 ? 1 : matched;
}


int
ngx_integrations_ip_allowed(const unsigned char *list, size_t len,
    const struct sockaddr *sa)
{
    return ngx_integrations_ip_walk(list, len, sa);
}


int
ngx_integrations_ip_list_nets(const unsigned char *list, size_t len,
    char *out, size_t size)
{
    int            family, bits, i;
    char           entry[64], addr[INET6_ADDRSTRLEN + 1], *slash, *end;
    long           v;
    size_t         pos, start, n, k;
    unsigned char  net[16], *b;

    static const char  digits[] = "0123456789abcdef";

    if (ngx_integrations_ip_list_valid(list, len) != 0) {
        return -1;
    }

    pos = 0;
    k = 0;

    while (k < len) {
        while (k < len && (list[k] == ',' || list[k] == ' ')) {
            k++;
        }

        start = k;

        while (k < len && list[k] != ',' && list[k] != ' ') {
            k++;
        }

        n = k - start;
        if (n == 0) {
            continue;
        }

        memcpy(entry, list + start, n);
        entry[n] = '\0';

        slash = strchr(entry, '/');
        n = slash ? (size_t) (slash - entry) : strlen(entry);
        memcpy(addr, entry, n);
        addr[n] = '\0';

        memset(net, 0, sizeof(net));

        if (inet_pton(AF_INET, addr, net + 12) == 1) {
            family = AF_INET;
            net[10] = 0xff;
            net[11] = 0xff;

        } else {
            family = AF_INET6;
            (void) inet_pton(AF_INET6, addr, net);
        }

        bits = (family == AF_INET) ? 32 : 128;

        if (slash) {
            v = strtol(slash + 1, &end, 10);
            bits = (int) v;
        }

        if (family == AF_INET) {
            bits += 96;
        }

        /* 32 hex digits, '/', up to 3 digits, separator */
        if (pos + 32 + 1 + 3 + 2 > size) {
            return -1;
        }

        if (pos) {
            out[pos++] = ' ';
        }

        b = net;
        for (i = 0; i < 16; i++) {
            out[pos++] = digits[b[i] >> 4];
            out[pos++] = digits[b[i] & 0xf];
        }

        pos += (size_t) snprintf(out + pos, size - pos, "/%d", bits);
    }

    if (pos >= size) {
        return -1;
    }

    out[pos] = '\0';

    return 0;
}


int
ngx_integrations_ip_hex(const struct sockaddr *sa, char *out)
{
    int                   i;
    unsigned char         ip[16];

    static const char  digits[] = "0123456789abcdef";

    memset(ip, 0, sizeof(ip));

    if (sa->sa_family == AF_INET) {
        ip[10] = 0xff;
        ip[11] = 0xff;
        memcpy(ip + 12, &((const struct sockaddr_in *) sa)->sin_addr, 4);

    } else if (sa->sa_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);

    } else {
        out[0] = '\0';
        return -1;
    }

    for (i = 0; i < 16; i++) {
        out[2 * i] = digits[ip[i] >> 4];
        out[2 * i + 1] = digits[ip[i] & 0xf];
    }

    out[32] = '\0';

    return 0;
}


static int
ngx_integrations_hex_digit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* as the access script matches: whole hex digits, then a masked one */
int
ngx_integrations_ip_hex_in_nets(const char *hex, const unsigned char *nets,
    size_t len)
{
    int     a, b, mask;
    size_t  i, j, bits, full, rest;

    i = 0;

    while (i < len) {
        while (i < len && nets[i] == ' ') {
            i++;
        }

        if (i + 33 > len || nets[i + 32] != '/') {
            return 0;
        }

        bits = 0;

        for (j = i + 33; j < len && nets[j] >= '0' && nets[j] <= '9'; j++) {
            bits = bits * 10 + (nets[j] - '0');
            if (bits > 128) {
                return 0;
            }
        }

        if (j == i + 33 || (j < len && nets[j] != ' ')) {
            return 0;
        }

        full = bits / 4;
        rest = bits % 4;

        if (memcmp(nets + i, hex, full) == 0) {
            if (rest == 0) {
                return 1;
            }

            mask = (0xf << (4 - rest)) & 0xf;
            a = ngx_integrations_hex_digit(nets[i + full]);
            b = ngx_integrations_hex_digit((unsigned char) hex[full]);

            if (a >= 0 && b >= 0 && (a & mask) == (b & mask)) {
                return 1;
            }
        }

        i = j;
    }

    return 0;
}


int
ngx_integrations_ip_list_valid(const unsigned char *list, size_t len)
{
    return ngx_integrations_ip_walk(list, len, NULL);
}


int
ngx_integrations_scope_has(const unsigned char *list, size_t list_len,
    const unsigned char *scope, size_t scope_len)
{
    size_t  i, start;

    /* no token is empty: a list's trailing spaces held "" */
    if (scope_len == 0) {
        return 0;
    }

    i = 0;

    while (i < list_len) {
        while (i < list_len && list[i] == ' ') {
            i++;
        }

        start = i;

        while (i < list_len && list[i] != ' ') {
            i++;
        }

        if (i - start == scope_len
            && memcmp(list + start, scope, scope_len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static int
ngx_integrations_number(const unsigned char **p, const unsigned char *last,
    uint64_t *n)
{
    const unsigned char  *s;

    s = *p;
    *n = 0;

    while (*p < last && **p >= '0' && **p <= '9') {
        if (*n > (UINT64_MAX - 9) / 10) {
            return -1;
        }

        *n = *n * 10 + (uint64_t) (**p - '0');
        (*p)++;
    }

    return *p == s ? -1 : 0;
}


static int
ngx_integrations_unit_ms(const unsigned char *u, size_t len, uint64_t *ms)
{
    if (len == 2 && memcmp(u, "ms", 2) == 0) {
        *ms = 1;
        return 0;
    }

    if (len != 1) {
        return -1;
    }

    switch (u[0]) {
    case 's':
        *ms = 1000;
        return 0;
    case 'm':
        *ms = 60000;
        return 0;
    case 'h':
        *ms = 3600000;
        return 0;
    case 'd':
        *ms = 86400000;
        return 0;
    default:
        return -1;
    }
}


int
ngx_integrations_rate_parse(const unsigned char *s, size_t len,
    uint64_t *count, uint64_t *window_ms)
{
    const unsigned char  *p, *last;

    p = s;
    last = s + len;

    if (ngx_integrations_number(&p, last, count) != 0 || *count == 0) {
        return -1;
    }

    if (last - p < 3 || p[0] != 'r' || p[1] != '/') {
        return -1;
    }

    p += 2;

    /* "r/m" or "r/2s" */
    if (*p >= '0' && *p <= '9') {
        if (ngx_integrations_duration_parse(p, (size_t) (last - p),
                                            window_ms)
            != 0 || *window_ms == 0)
        {
            return -1;
        }

        return 0;
    }

    return ngx_integrations_unit_ms(p, (size_t) (last - p), window_ms);
}


int
ngx_integrations_duration_parse(const unsigned char *s, size_t len,
    uint64_t *ms)
{
    uint64_t              n, unit;
    const unsigned char  *p, *last;

    p = s;
    last = s + len;

    if (ngx_integrations_number(&p, last, &n) != 0) {
        return -1;
    }

    if (ngx_integrations_unit_ms(p, (size_t) (last - p), &unit) != 0) {
        return -1;
    }

    if (n > UINT64_MAX / unit) {
        return -1;
    }

    *ms = n * unit;

    return 0;
}


unsigned char *
ngx_integrations_decimal(unsigned char *dst, int64_t n)
{
    size_t         k;
    uint64_t       u;
    unsigned char  digits[20];

    /* most numbers here are lengths and counts: one or two digits */
    if (n >= 0 && n < 100) {
        if (n >= 10) {
            *dst++ = (unsigned char) ('0' + n / 10);
        }

        *dst++ = (unsigned char) ('0' + n % 10);

        return dst;
    }

    if (n < 0) {
        *dst++ = '-';
        /* -INT64_MIN does not fit an int64_t */
        u = (uint64_t) -(n + 1) + 1;

    } else {
        u = (uint64_t) n;
    }

    k = 0;

    do {
        digits[k++] = (unsigned char) ('0' + u % 10);
        u /= 10;
    } while (u);

    while (k) {
        *dst++ = digits[--k];
    }

    return dst;
}



/* the lowercase of a BMP code point, or cp itself: a binary search */
static unsigned
ngx_integrations_fold_cp(unsigned cp)
{
    size_t  lo, hi, mid;

    lo = 0;
    hi = sizeof(ngx_integrations_fold_table)
         / sizeof(ngx_integrations_fold_table[0]);

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (ngx_integrations_fold_table[mid][0] == cp) {
            return ngx_integrations_fold_table[mid][1];
        }

        if (ngx_integrations_fold_table[mid][0] < cp) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return cp;
}


size_t
ngx_integrations_fold(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t    i;
    unsigned  cp;

    for (i = 0; i < len; i++) {
        if (src[i] < 0x80) {
            dst[i] = (src[i] >= 'A' && src[i] <= 'Z')
                     ? (unsigned char) (src[i] | 0x20) : src[i];
            continue;
        }

        /* two- and three-byte sequences: the table keeps their length */
        if (src[i] >= 0xc2 && src[i] <= 0xdf && i + 1 < len
            && (src[i + 1] & 0xc0) == 0x80)
        {
            cp = ngx_integrations_fold_cp(((src[i] & 0x1fu) << 6)
                                          | (src[i + 1] & 0x3fu));
            dst[i] = (unsigned char) (0xc0 | (cp >> 6));
            dst[i + 1] = (unsigned char) (0x80 | (cp & 0x3f));
            i++;
            continue;
        }

        if (src[i] >= 0xe0 && src[i] <= 0xef && i + 2 < len
            && (src[i + 1] & 0xc0) == 0x80 && (src[i + 2] & 0xc0) == 0x80)
        {
            cp = ((src[i] & 0x0fu) << 12) | ((src[i + 1] & 0x3fu) << 6)
                 | (src[i + 2] & 0x3fu);

            /* overlong or surrogate: not a letter, kept as it is */
            if (cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) {
                cp = ngx_integrations_fold_cp(cp);
            }

            dst[i] = (unsigned char) (0xe0 | (cp >> 12));
            dst[i + 1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            dst[i + 2] = (unsigned char) (0x80 | (cp & 0x3f));
            i += 2;
            continue;
        }

        dst[i] = src[i];
    }

    return len;
}
