#!/usr/bin/perl
# One event: detail, ticket types and availability (seed 001's shapes) by
# slug or id, their 404s across organizations and environments; whoami
# (seed 002's "verify your key"); and the directives' nginx -t errors.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
$h->start_nginx(ReadSeed::conf());

my ($key, $kid) = make_key($h, org => 'acme', name => 'CRM sync',
                           scopes => 'events:read attendees:read');
my ($tkey, $tid) = make_key($h, org => 'acme', env => 'test',
                            scopes => 'events:read', expires => 4102444800);
my ($okey) = make_key($h, org => 'other');

my @tt = (
    { id => 11, name => 'General Admission', price => 2500, currency => 'USD',
      quantity => 120, sold => 20, available => 100, minPerOrder => 1,
      maxPerOrder => 10, salesStart => '2026-06-01T00:00:00Z',
      salesEnd => '2026-09-01T18:00:00Z', hidden => JSON::PP::false },
    { id => 12, name => 'VIP', price => 4500, currency => 'USD',
      quantity => 20, sold => 20, available => 0, minPerOrder => 1,
      maxPerOrder => 2, salesStart => undef, salesEnd => undef,
      hidden => JSON::PP::true },
);
my $av = { eventId => 1, status => 'PUBLISHED', soldOut => JSON::PP::false,
           available => 100,
           ticketTypes => [ { id => 11, available => 100,
                              soldOut => JSON::PP::false },
                            { id => 12, available => 0,
                              soldOut => JSON::PP::true } ] };

my $s = ReadSeed->new($h, org => 'acme');
$s->event({ id => 1, slug => 'comedy-night', title => 'Comedy Night',
            starts => '2026-09-01T19:00:00Z', ends => '2026-09-01T22:00:00Z',
            status => 'PUBLISHED', published => 1, passCount => 20,
            revenue => 90000 },
          ticketTypes => \@tt, availability => $av);
$s->event({ id => 2, slug => 'bare', title => 'Bare',
            starts => '2026-10-01T19:00:00Z' });
$s->event({ id => 12345678901234567, slug => 'big-id', title => 'Big id',
            starts => '2026-10-02T19:00:00Z' }, ticketTypes => []);
$s->flush;
my $t = ReadSeed->new($h, org => 'acme', env => 'test');
$t->event({ id => 7, slug => 'alpha-only', title => 'Alpha',
            starts => '2026-10-01T19:00:00Z' });
$t->flush;

sub api {
    my ($path, $k) = @_;
    my $r = $h->get("/v2/integrations$path", { 'X-Api-Key' => $k // $key });
    return ($r, $h->json($r));
}


# detail

my ($r, $j) = api('/events/comedy-night');
is $r->{status}, 200, 'detail by slug';
ok $r->{headers}{etag}, '... ETag';
is $j->{id}, 1, '... id';
is $j->{title}, 'Comedy Night', '... title';
is_deeply $j->{ticketTypes}, \@tt, '... with its ticket types';
my $body = $r->{content};
($r, $j) = api('/events/1');
is $r->{status}, 200, 'detail by id';
is $r->{content}, $body, '... the same body';
is $r->{headers}{etag}, $h->get('/v2/integrations/events/comedy-night',
    { 'X-Api-Key' => $key })->{headers}{etag}, '... the same ETag';
($r, $j) = api('/events/comedy-night?debug=1');
is $r->{status}, 200, 'the location\'s "if" matching: still the detail';
is $r->{content}, $body, '... the same body (the handler and its $ev kept)';
is $r->{headers}{'x-debug'}, 1, '... and the if block\'s header';
($r, $j) = api('/events/bare');
is_deeply $j->{ticketTypes}, [], 'no ticket types: []';
($r, $j) = api('/events/12345678901234567');
is $r->{status}, 200, 'a 17-digit id';
like $r->{content}, qr/"id":12345678901234567\b/, '... exact in the body';


# ticket types

($r, $j) = api('/events/comedy-night/ticket-types');
is $r->{status}, 200, 'ticket types';
is_deeply [ sort keys %$j ], [qw(eventId items)], '... {eventId, items}';
is $j->{eventId}, 1, '... eventId';
is_deeply $j->{items}, \@tt, '... the stored ticket types';
is $j->{items}[0]{price}, 2500, '... integer cents';
($r, $j) = api('/events/2/ticket-types');
is_deeply $j, { eventId => 2, items => [] }, 'none stored: []';
($r, $j) = api('/events/big-id/ticket-types');
like $r->{content}, qr/^\{"eventId":12345678901234567,"items":\[\]\}/,
    'eventId is the unpadded id';


# availability

($r, $j) = api('/events/comedy-night/availability');
is $r->{status}, 200, 'availability';
is_deeply $j, $av, '... the stored object';
($r, $j) = api('/events/bare/availability');
is_deeply $j, { eventId => 2, ticketTypes => [] },
    'none stored: {eventId, ticketTypes: []}';


# 404: unknown, another org, another env

for my $p ('/events/nope', '/events/999', '/events/nope/ticket-types',
           '/events/nope/availability', '/events/alpha-only',
           '/events/7', '/events/7/availability')
{
    ($r, $j) = api($p);
    is $r->{status}, 404, "$p: 404";
    is_deeply $j, { error => 'Event not found' }, '... JSON';
}
for my $p ('/events/comedy-night', '/events/1/ticket-types',
           '/events/comedy-night/availability')
{
    ($r, $j) = api($p, $okey);
    is $r->{status}, 404, "$p, another org: 404";
    ($r, $j) = api($p, $tkey);
    is $r->{status}, 404, "$p, a test key: 404";
}
($r, $j) = api('/events/alpha-only', $tkey);
is $r->{status}, 200, 'a test key reads the test data set';
is $j->{title}, 'Alpha', '... its event';

for my $m (qw(POST PUT PATCH DELETE)) {
    $r = $h->request($m, '/v2/integrations/events/comedy-night',
                     { 'X-Api-Key' => $key }, '{"title":"x"}');
    is $r->{status}, 405, "$m on the detail: 405";
}


# whoami

($r, $j) = api('/whoami');
is $r->{status}, 200, 'whoami';
ok $r->{headers}{etag}, '... ETag';
is_deeply $j, { org => 'acme', keyId => $kid, name => 'CRM sync',
                scopes => [ 'events:read', 'attendees:read' ],
                env => 'live', expires => undef }, '... identity';
($r, $j) = api('/whoami', $tkey);
is_deeply $j, { org => 'acme', keyId => $tid, name => "key $tid",
                scopes => ['events:read'], env => 'test',
                expires => '2100-01-01T00:00:00Z' },
    'a test key with an expiry';
my ($fkey) = make_key($h, org => 'acme', expires => 99999999999);
($r, $j) = api('/whoami', $fkey);
is $j->{expires}, '5138-11-16T09:46:39Z', 'a far-off expiry';
($fkey) = make_key($h, org => 'acme', expires => 9999999999999);
($r, $j) = api('/whoami', $fkey);
is $j->{expires}, '9999-12-31T23:59:59Z', 'past year 9999: the last second';
$r = $h->get('/v2/integrations/whoami');
is $r->{status}, 401, 'whoami without a key: 401';


# nginx -t

my ($rc, $out) = $h->nginx_test(<<'EOF');
server {
    listen 127.0.0.1:%%PORT%%;
    location /a { apikey on; integrations_events; }
}
EOF
isnt $rc, 0, 'a handler without integrations_redis fails nginx -t';
like $out, qr/integrations_redis.*nginx-test-\d+\.conf:\d+/,
    '... naming integrations_redis and where the handler is';

($rc, $out) = $h->nginx_test(<<'EOF');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a { apikey on; integrations_events; integrations_whoami; }
}
EOF
isnt $rc, 0, 'two handlers in one location fail';
like $out, qr/integrations_whoami.*duplicate/, '... duplicate';

for my $pair ('integrations_status; integrations_events;',
              'integrations_events; integrations_status;') {
    ($rc, $out) = $h->nginx_test(<<"EOF");
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a { apikey on; $pair }
}
EOF
    isnt $rc, 0, "$pair: fails";
    like $out, qr/duplicate.*nginx-test-\d+\.conf:\d+/, '... duplicate, where';
}

($rc, $out) = $h->nginx_test(<<'EOF');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a { apikey on; integrations_event; }
}
EOF
isnt $rc, 0, 'integrations_event needs its argument';

($rc, $out) = $h->nginx_test(<<'EOF');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /a { apikey on; integrations_events x; }
}
EOF
isnt $rc, 0, 'integrations_events takes none';

($rc, $out) = $h->nginx_test(<<'EOF');
server {
    listen 127.0.0.1:%%PORT%%;
    location ~ ^/e/(?<ev>[^/]+)$ { apikey on; integrations_event "$ev"; }
    location = /w { apikey on; integrations_whoami; }
}
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
EOF
is $rc, 0, 'integrations_redis may come after the handlers' or diag $out;

unlike $h->error_log, qr/\[(?:alert|crit|emerg)\]/, 'no alerts in the log';

$h->done;
done_testing;
