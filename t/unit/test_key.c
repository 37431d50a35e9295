/*
 * Unit tests of src/ngx_integrations_key.c, printing TAP for prove.
 */

#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "ngx_integrations_key.h"


static int  test_n;


static void
ok(int cond, const char *name)
{
    printf("%sok %d - %s\n", cond ? "" : "not ", ++test_n, name);
}


static struct sockaddr *
v4(const char *ip)
{
    static struct sockaddr_in  sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &sin.sin_addr);

    return (struct sockaddr *) &sin;
}


static struct sockaddr *
v6(const char *ip)
{
    static struct sockaddr_in6  sin6;

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &sin6.sin6_addr);

    return (struct sockaddr *) &sin6;
}


static int
allowed(const char *list, struct sockaddr *sa)
{
    return ngx_integrations_ip_allowed((const unsigned char *) list,
                                       strlen(list), sa);
}


static int
parse(const char *key)
{
    ngx_integrations_key_parts_t  parts;

    return ngx_integrations_key_parse((const unsigned char *) key,
                                      strlen(key), &parts);
}


static int
rate(const char *s, uint64_t *n, uint64_t *w)
{
    return ngx_integrations_rate_parse((const unsigned char *) s, strlen(s),
                                       n, w);
}


/*
 * A key whose secret is n random characters and the checksum: the parse
 * result, or (len) the secret length the parse found.
 */
static int
with_secret(int n, int len)
{
    int                           i, rc;
    char                          key[256];
    size_t                        body;
    ngx_integrations_key_parts_t  parts;

    body = (size_t) sprintf(key, "qkt_test_zz99yy88_");

    for (i = 0; i < n; i++) {
        key[body++] = "0123456789ABCDEFGHIJabcdefghij"[i % 30];
    }

    ngx_integrations_key_checksum((unsigned char *) key, body,
                                  (unsigned char *) key + body);
    body += 6;

    memset(&parts, 0, sizeof(parts));
    rc = ngx_integrations_key_parse((unsigned char *) key, body, &parts);

    return len ? (int) parts.secret_len : rc;
}


/* folds in place, keeps the length */
static int
fold(const char *in, const char *expect)
{
    unsigned char  buf[128];
    size_t         n;

    n = strlen(in);
    memcpy(buf, in, n);

    return ngx_integrations_fold(buf, buf, n) == n
           && n == strlen(expect) && memcmp(buf, expect, n) == 0;
}


/* the digits written, and nothing past them */
static int
decimal(int64_t n, const char *expect)
{
    unsigned char  buf[32], *end;

    memset(buf, 'x', sizeof(buf));
    end = ngx_integrations_decimal(buf, n);

    return (size_t) (end - buf) == strlen(expect)
           && memcmp(buf, expect, strlen(expect)) == 0
           && *end == 'x';
}


int
main(void)
{
    int                           i;
    char                          key[128], bad[128], nets[512], hex[33];
    unsigned char                 pep[4];
    size_t                        len;
    uint64_t                      n, w, ms;
    unsigned char                 sum[6], h[64];
    ngx_integrations_key_parts_t  parts;

    /* a key built like integrationsctl builds them */
    strcpy(key, "qkt_live_ab12cd34_0123456789ABCDEFGHIJabcdefghij01");
    len = strlen(key);
    ngx_integrations_key_checksum((unsigned char *) key, len, sum);
    memcpy(key + len, sum, 6);
    key[len + 6] = '\0';

    ok(parse(key) == 0, "a well-formed key with its checksum parses");
    ngx_integrations_key_parse((unsigned char *) key, strlen(key), &parts);
    ok(parts.prefix_len == 3 && memcmp(parts.env, "live", 4) == 0
       && memcmp(parts.id, "ab12cd34", 8) == 0, "parts found");

    ngx_integrations_key_checksum((unsigned char *) key, len, h);
    ok(memcmp(h, sum, 6) == 0, "checksum is deterministic");

    for (i = 0; key[i]; i++) {
        if (key[i] == '_') {
            continue;
        }
        strcpy(bad, key);
        bad[i] = (bad[i] == 'a') ? 'b' : 'a';
        if (parse(bad) == 0) {
            break;
        }
    }
    ok(key[i] == '\0', "any one character changed is refused");

    ok(parse("") != 0, "empty refused");
    ok(parse("hello") != 0, "junk refused");
    strcpy(bad, key);
    memcpy(bad, "QKT", 3);
    ok(parse(bad) != 0, "uppercase prefix refused");
    strcpy(bad, key);
    memcpy(bad + 4, "prod", 4);
    ok(parse(bad) != 0, "env other than live/test refused");
    ok(parse("qkt_live_ab12cd3_0123456789ABCDEFGHIJabcdefghij01xxxxxx") != 0,
       "short id refused");
    strcpy(bad, key);
    bad[strlen(bad) - 1] = '\0';
    ok(parse(bad) != 0, "short secret refused");
    strcpy(bad, key);
    bad[20] = '+';
    ok(parse(bad) != 0, "non-base62 secret refused");
    memset(bad, 'a', 100);
    bad[100] = '\0';
    ok(parse(bad) != 0, "overlong refused");

    /* SPEC: a secret of at least 32 characters, the checksum included */
    ok(with_secret(26, 0) == 0 && with_secret(26, 1) == 32,
       "a 32-character secret parses");
    ok(with_secret(25, 0) != 0, "a 31-character secret is refused");
    ok(with_secret(122, 0) == 0 && with_secret(122, 1) == 128,
       "a 128-character secret parses");
    ok(with_secret(123, 0) != 0, "a 129-character secret is refused");

    ngx_integrations_key_hash((unsigned char *) "abc", 3, NULL, 0, h);
    ok(memcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
                 "0015ad", 64) == 0, "SHA-256 of abc");
    ngx_integrations_key_hash((unsigned char *) "abc", 3,
                              (unsigned char *) "pepper", 6, h);
    /* echo -n abc | openssl dgst -sha256 -hmac pepper */
    ok(memcmp(h, "95ac8d48c4886bae06029b433c46c419"
                 "019bf03a65a842069d84b7755b1d08c4", 64) == 0,
       "HMAC-SHA-256 with a pepper");

    /* the kept contexts: same pepper again, another pepper, none, freed */
    ngx_integrations_key_hash((unsigned char *) "ik_live_xyz", 11,
                              (unsigned char *) "pepper", 6, h);
    ok(memcmp(h, "6dacd592c2e4ca3ce89bd2129fa385b2"
                 "8128b0a440ea90a49d8b77484b0c2333", 64) == 0,
       "HMAC again with the same pepper, another key");
    memcpy(pep, "salt", 4);
    ngx_integrations_key_hash((unsigned char *) "abc", 3, pep, 4, h);
    ok(memcmp(h, "5031dfb5b067c1d64e70ad09acb9c542"
                 "1c194ebb0ecff635f6eea656d1fc8e2c", 64) == 0,
       "HMAC with another pepper");
    memcpy(pep, "salx", 4);
    ngx_integrations_key_hash((unsigned char *) "abc", 3, pep, 4, h);
    ok(memcmp(h, "5031dfb5b067c1d64e70ad09acb9c542"
                 "1c194ebb0ecff635f6eea656d1fc8e2c", 64) != 0,
       "... a pepper changed in place is seen");
    ngx_integrations_key_hash((unsigned char *) "ik_live_xyz", 11, NULL, 0,
                              h);
    ok(memcmp(h, "b563206d68bdeb338a92c38011b87e55"
                 "a16309f6a67ec7de4d93d90b8f831ce4", 64) == 0,
       "SHA-256 after HMAC");
    ngx_integrations_key_hash_free();
    ngx_integrations_key_hash((unsigned char *) "abc", 3,
                              (unsigned char *) "pepper", 6, h);
    ok(memcmp(h, "95ac8d48c4886bae06029b433c46c419"
                 "019bf03a65a842069d84b7755b1d08c4", 64) == 0,
       "HMAC after the contexts were freed");
    ngx_integrations_key_hash_free();

    ok(ngx_integrations_key_equal((unsigned char *) "abcd",
                                  (unsigned char *) "abcd", 4),
       "equal: same");
    ok(!ngx_integrations_key_equal((unsigned char *) "abcd",
                                   (unsigned char *) "abce", 4),
       "equal: differs");

    ok(allowed("", v4("1.2.3.4")) == 1, "empty allowlist allows");
    ok(allowed("10.0.0.0/8", v4("10.200.1.1")) == 1, "IPv4 /8 inside");
    ok(allowed("10.0.0.0/8", v4("11.0.0.1")) == 0, "IPv4 /8 outside");
    ok(allowed("192.0.2.7", v4("192.0.2.7")) == 1, "IPv4 /32 exact");
    ok(allowed("192.0.2.7", v4("192.0.2.8")) == 0, "IPv4 /32 other");
    ok(allowed("0.0.0.0/0", v4("8.8.8.8")) == 1, "IPv4 /0");
    ok(allowed("10.0.0.0/13", v4("10.7.255.255")) == 1, "/13 last inside");
    ok(allowed("10.0.0.0/13", v4("10.8.0.0")) == 0, "/13 first outside");
    ok(allowed("2001:db8::/32", v6("2001:db8:ffff::1")) == 1, "IPv6 /32");
    ok(allowed("2001:db8::/64", v6("2001:db8:0:1::1")) == 0, "IPv6 /64 out");
    ok(allowed("::1", v6("::1")) == 1, "IPv6 /128");
    ok(allowed("::/0", v6("fe80::1")) == 1, "IPv6 /0");
    ok(allowed("10.0.0.0/8", v6("::ffff:10.1.2.3")) == 1,
       "IPv4-mapped client matches an IPv4 entry");
    ok(allowed("10.0.0.0/8", v6("2001:db8::1")) == 0,
       "IPv6 client does not match an IPv4 entry");
    ok(allowed("10.0.0.0/33", v4("10.0.0.1")) == -1, "bad prefix: -1");
    ok(allowed("10.0.0.300", v4("10.0.0.1")) == -1, "bad address: -1");
    ok(ngx_integrations_ip_list_valid((unsigned char *) "1.2.3.4, ::1/128",
                                      16) == 0, "list valid");

    ngx_integrations_ip_list_nets((unsigned char *) "10.1.0.0/16,::1", 15,
                                  nets, sizeof(nets));
    ok(strcmp(nets, "00000000000000000000ffff0a010000/112 "
                    "00000000000000000000000000000001/128") == 0,
       "nets: IPv4 mapped with bits + 96, IPv6 as is");
    ngx_integrations_ip_hex(v4("10.1.2.3"), hex);
    ok(strcmp(hex, "00000000000000000000ffff0a010203") == 0, "client hex");

#define in_nets(h, n)                                                         \
    ngx_integrations_ip_hex_in_nets(h, (const unsigned char *) n, strlen(n))
    ok(in_nets(hex, nets), "10.1.2.3 in 10.1.0.0/16 (nets)");
    ngx_integrations_ip_hex(v4("10.2.0.1"), hex);
    ok(!in_nets(hex, nets), "10.2.0.1 not in 10.1.0.0/16 nor ::1");
    ngx_integrations_ip_list_nets((unsigned char *) "10.1.2.0/26", 11,
                                  nets, sizeof(nets));
    ngx_integrations_ip_hex(v4("10.1.2.63"), hex);
    ok(in_nets(hex, nets), "a /26 (a masked digit): .63 in");
    ngx_integrations_ip_hex(v4("10.1.2.64"), hex);
    ok(!in_nets(hex, nets), "... .64 out");
    ngx_integrations_ip_hex(v6("::1"), hex);
    ok(in_nets(hex, "00000000000000000000000000000000/0"), "/0: every one");
    ok(!in_nets(hex, ""), "no nets: none");
    ok(!in_nets(hex, "0000/128"), "malformed nets: none");
    ok(!in_nets(hex, "00000000000000000000000000000001/129"),
       "more than 128 bits: none");
    ok(in_nets(hex, "  00000000000000000000000000000002/128 "
                    "00000000000000000000000000000001/128"),
       "the second of two, spaces around");
#undef in_nets

    ok(ngx_integrations_scope_has((unsigned char *) "events:read x", 13,
                                  (unsigned char *) "events:read", 11),
       "scope present");
    ok(!ngx_integrations_scope_has((unsigned char *) "events:reader", 13,
                                   (unsigned char *) "events:read", 11),
       "a prefix of a scope is not the scope");
    ok(!ngx_integrations_scope_has((unsigned char *) "", 0,
                                   (unsigned char *) "a", 1),
       "no scopes");
    ok(!ngx_integrations_scope_has((unsigned char *) "events:read  ", 13,
                                   (unsigned char *) "", 0),
       "the empty scope is never held, trailing spaces or not");

    ok(rate("60r/m", &n, &w) == 0 && n == 60 && w == 60000, "60r/m");
    ok(rate("10r/s", &n, &w) == 0 && n == 10 && w == 1000, "10r/s");
    ok(rate("5r/2s", &n, &w) == 0 && n == 5 && w == 2000, "5r/2s");
    ok(rate("100r/h", &n, &w) == 0 && w == 3600000, "100r/h");
    ok(rate("0r/s", &n, &w) != 0, "0r/s invalid");
    ok(rate("r/s", &n, &w) != 0, "r/s invalid");
    ok(rate("60r/x", &n, &w) != 0, "60r/x invalid");
    ok(rate("5r/0s", &n, &w) != 0, "5r/0s invalid");

    ok(ngx_integrations_duration_parse((unsigned char *) "24h", 3, &ms) == 0
       && ms == 86400000, "24h");
    ok(ngx_integrations_duration_parse((unsigned char *) "90d", 3, &ms) == 0
       && ms == 7776000000ULL, "90d");
    ok(ngx_integrations_duration_parse((unsigned char *) "1500ms", 6, &ms)
       == 0 && ms == 1500, "1500ms");
    ok(ngx_integrations_duration_parse((unsigned char *) "soon", 4, &ms) != 0,
       "soon invalid");

    ok(decimal(0, "0"), "decimal 0");
    ok(decimal(7, "7"), "decimal 7");
    ok(decimal(10, "10"), "decimal 10");
    ok(decimal(9, "9"), "decimal 9 (one digit, the short way)");
    ok(decimal(99, "99"), "decimal 99 (two digits, the short way)");
    ok(decimal(100, "100"), "decimal 100 (the long way)");
    ok(decimal(1000000, "1000000"), "decimal 1000000");
    ok(decimal(-1, "-1"), "decimal -1");
    ok(decimal(-450, "-450"), "decimal -450");
    ok(decimal(INT64_MAX, "9223372036854775807"), "decimal INT64_MAX");
    ok(decimal(INT64_MIN, "-9223372036854775808"), "decimal INT64_MIN");

    ok(fold("ABC xyz 09", "abc xyz 09"), "fold: ASCII");
    ok(fold("\xc3\x89LODIE M\xc3\x9cLLER", "\xc3\xa9lodie m\xc3\xbcller"),
       "fold: Latin-1");
    ok(fold("\xc5\x81\xc3\x93" "D\xc5\xb9", "\xc5\x82\xc3\xb3" "d\xc5\xba"),
       "fold: Latin Extended-A");
    ok(fold("\xce\xa3\xce\x86 \xd0\x9e\xd0\x81",
            "\xcf\x83\xce\xac \xd0\xbe\xd1\x91"), "fold: Greek, Cyrillic");
    ok(fold("NGUY\xe1\xbb\x84N", "nguy\xe1\xbb\x85n"),
       "fold: three-byte letters (Vietnamese)");
    ok(fold("\xc3\x97 \xe2\x80\xa8 \xf0\x9f\x98\x80",
            "\xc3\x97 \xe2\x80\xa8 \xf0\x9f\x98\x80"),
       "fold: no case, and four-byte sequences, kept");
    ok(fold("\xc3 \xc3\x28 \xed\xa0\x80 \xe0\x80\x80 \xff",
            "\xc3 \xc3\x28 \xed\xa0\x80 \xe0\x80\x80 \xff"),
       "fold: invalid UTF-8 kept byte for byte");
    ok(fold("\xc4\xb0\xe1\xba\x9e", "\xc4\xb0\xe1\xba\x9e"),
       "fold: letters whose fold is longer kept");
    ok(fold("\xcf\x82 \xc2\xb5", "\xcf\x83 \xce\xbc"),
       "fold: final sigma and the micro sign as their letters");

    printf("1..%d\n", test_n);

    return 0;
}
