#!/usr/bin/perl
# Reads and writes on the same URL, routed by method to an internal write
# location (as conf-examples/hosting-provider.conf does): the key is
# checked once (allowance spent once), and the write scope applies.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);
use JSON::PP;

my $h = Harness->new;
$h->start_nginx(<<'EOF2');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v2/integrations/ {
        apikey on;
        apikey_scope events:read;
        apikey_rate_limit 100r/m bucket=events;
        location = /v2/integrations/events {
            if ($request_method = POST) {
                rewrite ^ /_writes/event-create last;
            }
            if ($request_method !~ ^(GET|HEAD)$) {
                rewrite ^ /_errors/events-method last;
            }
            integrations_events;
        }
    }
    location = /_errors/events-method {
        internal;
        default_type application/json;
        add_header Allow "GET, HEAD, POST, OPTIONS" always;
        return 405 '{"error":"Method not allowed"}\n';
    }
    location /_writes/ {
        internal;
        apikey on;
        apikey_scope events:write;
        apikey_rate_limit 100r/m bucket=events;
        proxy_set_header X-Org $apikey_org;
        proxy_next_upstream off;
        location = /_writes/event-create {
            integrations_validate event_create;
            proxy_pass http://127.0.0.1:%%PORT2%%/backend/events;
        }
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location = /backend/events {
        default_type application/json;
        return 201 '{"created":true,"org":"$http_x_org","uri":"$uri"}';
    }
}
EOF2

my ($rw, $rwid) = make_key($h, org => 'acme',
                           scopes => 'events:read events:write');
my ($ro) = make_key($h, org => 'acme', scopes => 'events:read');
my $body = '{"title":"x","startsAt":"2026-09-01T19:00:00Z"}';

my $r = $h->get('/v2/integrations/events', { 'X-Api-Key' => $rw });
is($r->{status}, 200, 'GET served from Redis');
is($h->json($r)->{totalItems}, 0, 'the (empty) events list');

$r = $h->request('POST', '/v2/integrations/events', { 'X-Api-Key' => $rw,
                 'Content-Type' => 'application/json' }, $body);
is($r->{status}, 201, 'POST validated and proxied');
is_deeply($h->json($r), { created => JSON::PP::true(), org => 'acme',
                          uri => '/backend/events' },
          'the backend got the identity');
is($h->redis('LLEN', "{k:$rwid}:log:events"), 2,
   'two requests, two admissions: the redirect did not count twice');
is($r->{headers}{'ratelimit-remaining'}, 98, 'RateLimit headers on the write');

$r = $h->request('HEAD', '/v2/integrations/events', { 'X-Api-Key' => $rw });
is($r->{status}, 200, 'HEAD served from Redis too');

for my $m ('DELETE', 'PUT', 'PATCH') {
    $r = $h->request($m, '/v2/integrations/events', { 'X-Api-Key' => $rw },
                     $body);
    is($r->{status}, 405, "$m: 405");
    is($r->{headers}{allow}, 'GET, HEAD, POST, OPTIONS',
       '... whose Allow names the write as well');
}

$r = $h->request('POST', '/v2/integrations/events', { 'X-Api-Key' => $ro,
                 'Content-Type' => 'application/json' }, $body);
is($r->{status}, 403, 'read-only key: 403 on the write');
is_deeply($h->json($r)->{missingScopes}, ['events:write'], 'missing scope');

$r = $h->request('POST', '/v2/integrations/events', { 'X-Api-Key' => $rw,
                 'Content-Type' => 'application/json' }, '{"title":1}');
is($r->{status}, 400, 'invalid write body: 400');

$h->done;
done_testing;
