/*
 * libFuzzer target for the pure logic of src/ngx_integrations_key.c: the
 * first byte picks the function, the rest is its input. Each case checks
 * a property a caller relies on, not only that nothing crashes:
 * a parsed key is exactly prefix_env_id_secret with a valid checksum;
 * folding keeps the length, is idempotent and leaves no ASCII capital;
 * the decimal writer agrees with printf; a scope is found iff it is one
 * of the list's space-separated tokens; an allowlist is valid iff it
 * converts to nets of the form the access script reads, and then never
 * answers "malformed".
 *
 * make fuzz (clang, -fsanitize=fuzzer,address,undefined); t/02 replays
 * t/fuzz/corpus/ through the same function with any C compiler.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ngx_integrations_key.h>


#define fuzz_require(cond)                                                    \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_key: %s:%d: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                   \
            abort();                                                          \
        }                                                                     \
    } while (0)


int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);


static void
fuzz_key_parse(const unsigned char *s, size_t n)
{
    size_t                        at;
    unsigned char                 sum[NGX_INTEGRATIONS_KEY_CHECKSUM_LEN];
    ngx_integrations_key_parts_t  parts;

    if (ngx_integrations_key_parse(s, n, &parts) != 0) {
        return;
    }

    fuzz_require(parts.prefix == s);
    fuzz_require(parts.prefix_len >= 2
                 && parts.prefix_len <= NGX_INTEGRATIONS_KEY_PREFIX_MAX);
    at = parts.prefix_len + 1;
    fuzz_require(parts.env == s + at && parts.env_len == 4);
    fuzz_require(memcmp(parts.env, "live", 4) == 0
                 || memcmp(parts.env, "test", 4) == 0);
    at += 5;
    fuzz_require(parts.id == s + at);
    at += NGX_INTEGRATIONS_KEY_ID_LEN + 1;
    fuzz_require(parts.secret == s + at && at + parts.secret_len == n);
    fuzz_require(parts.secret_len >= NGX_INTEGRATIONS_KEY_SECRET_MIN
                 && parts.secret_len <= NGX_INTEGRATIONS_KEY_SECRET_MAX);

    ngx_integrations_key_checksum(s, n - NGX_INTEGRATIONS_KEY_CHECKSUM_LEN,
                                  sum);
    fuzz_require(memcmp(sum, s + n - NGX_INTEGRATIONS_KEY_CHECKSUM_LEN,
                        NGX_INTEGRATIONS_KEY_CHECKSUM_LEN) == 0);
}


static void
fuzz_fold(const unsigned char *s, size_t n)
{
    size_t          i, len, again;
    unsigned char  *a, *b;

    a = malloc(n + 1);
    b = malloc(n + 1);
    fuzz_require(a != NULL && b != NULL);

    len = ngx_integrations_fold(a, s, n);
    fuzz_require(len == n);

    for (i = 0; i < len; i++) {
        fuzz_require(a[i] < 'A' || a[i] > 'Z');
    }

    again = ngx_integrations_fold(b, a, len);
    fuzz_require(again == len && memcmp(a, b, len) == 0);

    /* in place, as the module folds a query */
    memcpy(b, s, n);
    fuzz_require(ngx_integrations_fold(b, b, n) == n);
    fuzz_require(memcmp(a, b, n) == 0);

    free(a);
    free(b);
}


static void
fuzz_decimal(const unsigned char *s, size_t n)
{
    char           want[32];
    int64_t        v;
    unsigned char  got[32], *end;

    if (n < sizeof(v)) {
        return;
    }

    memcpy(&v, s, sizeof(v));
    end = ngx_integrations_decimal(got, v);
    snprintf(want, sizeof(want), "%lld", (long long) v);
    fuzz_require((size_t) (end - got) == strlen(want));
    fuzz_require(memcmp(got, want, strlen(want)) == 0);
}


static void
fuzz_scope(const unsigned char *s, size_t n)
{
    int                   want;
    size_t                i, start, cut;
    const unsigned char  *list, *scope;

    /* "scope\nlist" */
    for (cut = 0; cut < n && s[cut] != '\n'; cut++) {
        /* void */
    }

    if (cut == n) {
        return;
    }

    scope = s;
    list = s + cut + 1;
    n -= cut + 1;
    want = 0;

    for (i = 0; i < n; i = start) {
        while (i < n && list[i] == ' ') {
            i++;
        }

        for (start = i; start < n && list[start] != ' '; start++) {
            /* void */
        }

        if (start > i && start - i == cut && memcmp(list + i, scope, cut) == 0)
        {
            want = 1;
        }
    }

    fuzz_require(ngx_integrations_scope_has(list, n, scope, cut) == want);
}


/* what the access script's gmatch('(%x+)/(%d+)') reads */
static void
fuzz_nets_form(const char *p)
{
    int     i;
    long    bits;
    char   *end;

    if (*p == '\0') {
        return;
    }

    for ( ;; ) {
        for (i = 0; i < 32; i++) {
            fuzz_require((p[i] >= '0' && p[i] <= '9')
                         || (p[i] >= 'a' && p[i] <= 'f'));
        }

        fuzz_require(p[32] == '/' && p[33] >= '0' && p[33] <= '9');
        bits = strtol(p + 33, &end, 10);
        fuzz_require(bits >= 0 && bits <= 128);

        if (*end == '\0') {
            return;
        }

        fuzz_require(*end == ' ');
        p = end + 1;
    }
}


static void
fuzz_ip(const unsigned char *s, size_t n)
{
    int                   valid, allowed;
    char                 *nets, hex[33];
    size_t                size;
    struct sockaddr_in    sin;
    struct sockaddr_in6   sin6;
    const struct sockaddr *sa;

    /* one byte of family, 16 of address, then the list */
    if (n < 17) {
        return;
    }

    if (s[0] & 1) {
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, s + 1, 16);
        sa = (const struct sockaddr *) &sin6;

    } else {
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, s + 1, 4);
        sa = (const struct sockaddr *) &sin;
    }

    s += 17;
    n -= 17;

    valid = ngx_integrations_ip_list_valid(s, n);
    allowed = ngx_integrations_ip_allowed(s, n, sa);

    if (valid == 0) {
        fuzz_require(allowed == 0 || allowed == 1);

        /* an entry takes 2 bytes and a separator at least, 38 out */
        size = 38 * (n / 2 + 1) + 1;
        nets = malloc(size);
        fuzz_require(nets != NULL);
        fuzz_require(ngx_integrations_ip_list_nets(s, n, nets, size) == 0);
        fuzz_nets_form(nets);
        /* no entry (",,"): every address, as ip_allowed says */
        fuzz_require(nets[0] != '\0' || allowed == 1);
        /*
         * what the list allows, its nets allow (the open policy's filter,
         * as the script matches); the nets may allow more: IPv4 is mapped
         * into IPv6, so "::/32" takes 10.0.0.1 there, not in the list
         */
        fuzz_require(ngx_integrations_ip_hex(sa, hex) == 0);
        fuzz_require(nets[0] == '\0' || allowed == 0
                     || ngx_integrations_ip_hex_in_nets(
                            hex, (const unsigned char *) nets, strlen(nets)));
        free(nets);

    } else {
        fuzz_require(allowed == -1);
    }
}


static void
fuzz_rate(const unsigned char *s, size_t n)
{
    uint64_t  count, window, ms;

    if (ngx_integrations_rate_parse(s, n, &count, &window) == 0) {
        fuzz_require(count > 0 && window > 0);
    }

    (void) ngx_integrations_duration_parse(s, n, &ms);
}


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0) {
        return 0;
    }

    switch (data[0] % 6) {
    case 0:
        fuzz_key_parse(data + 1, size - 1);
        break;
    case 1:
        fuzz_fold(data + 1, size - 1);
        break;
    case 2:
        fuzz_decimal(data + 1, size - 1);
        break;
    case 3:
        fuzz_scope(data + 1, size - 1);
        break;
    case 4:
        fuzz_ip(data + 1, size - 1);
        break;
    default:
        fuzz_rate(data + 1, size - 1);
        break;
    }

    return 0;
}
