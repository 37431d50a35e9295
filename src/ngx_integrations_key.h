/*
 * Pure logic shared by the nginx modules and integrationsctl: key format
 * and checksum, key hashing, IP allowlists, scope sets, rate strings.
 * No nginx types here, so the CLI and the C unit tests can link it alone.
 */

#ifndef _NGX_INTEGRATIONS_KEY_H_INCLUDED_
#define _NGX_INTEGRATIONS_KEY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>


#define NGX_INTEGRATIONS_KEY_ID_LEN        8
/* the CLI makes 32 random characters and the checksum */
#define NGX_INTEGRATIONS_KEY_RANDOM_LEN    32
#define NGX_INTEGRATIONS_KEY_CHECKSUM_LEN  6
/* the secrets accepted (SPEC: at least 32, checksum included) */
#define NGX_INTEGRATIONS_KEY_SECRET_MIN    32
#define NGX_INTEGRATIONS_KEY_SECRET_MAX    128
#define NGX_INTEGRATIONS_KEY_PREFIX_MAX    8
/* prefix_env_id_secret */
#define NGX_INTEGRATIONS_KEY_MAX_LEN                                          \
    (NGX_INTEGRATIONS_KEY_PREFIX_MAX + 1 + 4 + 1 + NGX_INTEGRATIONS_KEY_ID_LEN \
     + 1 + NGX_INTEGRATIONS_KEY_SECRET_MAX)
#define NGX_INTEGRATIONS_HASH_HEX_LEN      64


typedef struct {
    const unsigned char  *prefix;
    size_t                prefix_len;
    const unsigned char  *env;          /* "live" or "test" */
    size_t                env_len;
    const unsigned char  *id;           /* NGX_INTEGRATIONS_KEY_ID_LEN */
    const unsigned char  *secret;       /* checksum included */
    size_t                secret_len;
} ngx_integrations_key_parts_t;


/* 0: well formed and checksum valid; -1 otherwise */
int ngx_integrations_key_parse(const unsigned char *key, size_t len,
    ngx_integrations_key_parts_t *parts);

/* checksum of the key text before the checksum, 6 base62 characters */
void ngx_integrations_key_checksum(const unsigned char *text, size_t len,
    unsigned char *out);

/*
 * lowercase hex SHA-256 of key, or HMAC-SHA-256(pepper, key); 0 on success.
 * Keeps OpenSSL contexts per process (not thread-safe): freed by
 * ngx_integrations_key_hash_free().
 */
int ngx_integrations_key_hash(const unsigned char *key, size_t len,
    const unsigned char *pepper, size_t pepper_len, unsigned char *hex);
void ngx_integrations_key_hash_free(void);

/* constant-time equality of two equally long byte strings */
int ngx_integrations_key_equal(const unsigned char *a,
    const unsigned char *b, size_t len);

/*
 * Allowlist: comma or space separated IPv4/IPv6 addresses and CIDRs.
 * 1: sa matches an entry, or the list is empty; 0: no match;
 * -1: the list is malformed (treated as a refusal by callers).
 */
int ngx_integrations_ip_allowed(const unsigned char *list, size_t len,
    const struct sockaddr *sa);

/* 0 if the list parses; used by the CLI to check --allow-ip */
int ngx_integrations_ip_list_valid(const unsigned char *list, size_t len);

/*
 * The list as the access script matches it: space-separated
 * "<32 hex digits>/<bits>", IPv4 mapped into IPv6 (::ffff:a.b.c.d, bits
 * + 96). out gets a NUL-terminated string; 0 on success.
 */
int ngx_integrations_ip_list_nets(const unsigned char *list, size_t len,
    char *out, size_t size);

/* client address as 32 hex digits (IPv4 mapped); -1 for non-IP sockets */
int ngx_integrations_ip_hex(const struct sockaddr *sa, char *out);

/*
 * 1 if the address as 32 (lowercase) hex digits is in one of nets, the
 * list ngx_integrations_ip_list_nets() writes; 0 if not or if nets is
 * malformed
 */
int ngx_integrations_ip_hex_in_nets(const char *hex, const unsigned char *nets,
    size_t len);

/*
 * Is the scope token present in the space-separated scope list?
 * Exact, case-sensitive token match.
 */
int ngx_integrations_scope_has(const unsigned char *list, size_t list_len,
    const unsigned char *scope, size_t scope_len);

/*
 * "60r/m", "5r/s", "100r/h", "5r/2s": count and window in ms.
 * 0 on success, -1 if malformed.
 */
int ngx_integrations_rate_parse(const unsigned char *s, size_t len,
    uint64_t *count, uint64_t *window_ms);

/*
 * Writes n in decimal, returns the end (at most 20 bytes): what a request
 * formats on the hot path, without ngx_sprintf's format parsing.
 */
unsigned char *ngx_integrations_decimal(unsigned char *dst, int64_t n);

/*
 * Case folding for search, the same in the CLI (the stored text) and the
 * module (the query): every letter of the BMP whose case fold is one
 * letter of the same UTF-8 length (ngx_integrations_fold.h), so len bytes
 * in, len out; dst may be src.
 */
size_t ngx_integrations_fold(unsigned char *dst, const unsigned char *src,
    size_t len);

/* "30s", "5m", "24h", "7d", "1500ms" to ms; 0 on success */
int ngx_integrations_duration_parse(const unsigned char *s, size_t len,
    uint64_t *ms);


#endif /* _NGX_INTEGRATIONS_KEY_H_INCLUDED_ */
