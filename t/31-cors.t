#!/usr/bin/perl
# integrations_cors: preflights answered without a key; CORS headers on
# every response, refusals included.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);

my $h = Harness->new;
$h->start_nginx(<<'EOF2');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v2/integrations/ {
        apikey on;
        apikey_header "Authorization: Bearer" x-api-key;
        apikey_scope events:read;
        apikey_rate_limit 1r/m;
        integrations_cors on;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /nocors/ {
        apikey on;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /defaults/ {
        apikey on;
        apikey_scope events:write;
        integrations_cors on;
        proxy_pass http://127.0.0.1:%%PORT2%%;
        location /defaults/off/ {
            integrations_cors off;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "ok\n"; }
}
EOF2

my ($key) = make_key($h, org => 'acme', scopes => 'events:read');
my %pre = (Origin => 'https://app.example',
           'Access-Control-Request-Method' => 'POST',
           'Access-Control-Request-Headers' => 'x-api-key, content-type');

my $r = $h->request('OPTIONS', '/v2/integrations/events', \%pre);
is($r->{status}, 204, 'preflight without a key: 204');
is($r->{headers}{'access-control-allow-origin'}, '*', 'Allow-Origin');
is($r->{headers}{'access-control-allow-methods'},
   'GET, POST, PATCH, PUT, OPTIONS', 'Allow-Methods');
is($r->{headers}{'access-control-allow-headers'},
   'Content-Type, If-None-Match, Authorization, x-api-key',
   'Allow-Headers lists every configured key header');
is($r->{headers}{'access-control-max-age'}, 86400, 'Max-Age');
is($r->{content} // '', '', 'no body');

$r = $h->request('OPTIONS', '/nocors/x', \%pre);
is($r->{status}, 401, 'without integrations_cors a preflight needs a key');

$r = $h->get('/v2/integrations/events', { Origin => 'https://app.example' });
is($r->{status}, 401, '401 without a key');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 401');
like($r->{headers}{'access-control-expose-headers'}, qr/RateLimit-Remaining/,
     'Expose-Headers on the 401');
like($r->{headers}{'content-type'}, qr/json/, 'the 401 is still JSON');

$r = $h->get('/v2/integrations/events', { 'x-api-key' => $key });
is($r->{status}, 200, 'keyed request');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 200');

$r = $h->get('/v2/integrations/events', { 'x-api-key' => $key });
is($r->{status}, 429, 'rate limited');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 429');
ok($r->{headers}{'retry-after'}, 'Retry-After kept');

ok(!exists $h->get('/nocors/x', { 'x-api-key' => $key })->{headers}
       {'access-control-allow-origin'}, 'no CORS where it is off');

# a preflight needs both Origin and Access-Control-Request-Method
$r = $h->request('OPTIONS', '/v2/integrations/events',
                 { Origin => 'https://app.example' });
is($r->{status}, 401, 'OPTIONS without Access-Control-Request-Method: '
   . 'not a preflight, the key is needed');
is($r->{headers}{'access-control-allow-origin'}, '*', 'still with CORS');
$r = $h->request('OPTIONS', '/v2/integrations/events',
                 { 'Access-Control-Request-Method' => 'GET' });
is($r->{status}, 401, 'OPTIONS without Origin: not a preflight');

# the default key headers, inheritance, a 403
$r = $h->request('OPTIONS', '/defaults/x', \%pre);
is($r->{status}, 204, 'preflight, default key headers');
is($r->{headers}{'access-control-allow-headers'},
   'Content-Type, If-None-Match, Authorization, X-Api-Key, api-key',
   'Allow-Headers: Content-Type and the three default key headers');
$r = $h->request('OPTIONS', '/defaults/off/x', \%pre);
is($r->{status}, 401, 'integrations_cors off in a nested location');
ok(!exists $r->{headers}{'access-control-allow-origin'}, 'no CORS there');
$r = $h->get('/defaults/x', { 'X-Api-Key' => $key });
is($r->{status}, 403, 'missing scope: 403');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 403');
is($r->{headers}{'access-control-expose-headers'},
   'RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, '
   . 'RateLimit-Policy, RateLimit, Retry-After, ETag, WWW-Authenticate',
   'Expose-Headers, complete');

# Redis gone (closed policy): 503, with CORS; a preflight needs no Redis
$h->stop_redis;
$r = $h->get('/defaults/x', { 'X-Api-Key' => $key });
is($r->{status}, 503, 'Redis down: 503');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 503');
like($r->{headers}{'content-type'}, qr/json/, 'the 503 is JSON');
$r = $h->request('OPTIONS', '/defaults/x', \%pre);
is($r->{status}, 204, 'preflight answered with Redis down');

$h->done;
done_testing;
