#!/usr/bin/perl
# conf-examples/writes.conf, run for real: reads and writes on the same
# URLs routed by method (map + rewrite, no "if"), preflights without a key,
# one key check per request, the identity (not the key) sent upstream.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
my $J = JSON::PP->new;

# the example's http block, with the harness's ports and paths
my $conf = Harness::_slurp(Harness->root . '/conf-examples/writes.conf');
my ($http) = $conf =~ /^http \{\n(.*)^\}/ms or die 'no http block';
$http =~ s/^\s*(access_log|\w+_temp_path) .*\n//mg;   # the harness's own
$http =~ s/\@PORT\@/%%PORT%%/g;
$http =~ s/\@REDIS\@/127.0.0.1:%%REDIS_PORT%%/g;
$http =~ s/\@BACKEND\@/127.0.0.1:%%PORT2%%/g;
unlike($http, qr/\@[A-Z]+\@/, 'every placeholder replaced');

$h->start_nginx($http . <<'EOF');
log_format backend escape=json '{"method":"$request_method",'
    '"uri":"$request_uri","body":"$request_body",'
    '"org":"$http_x_integrations_org","id":"$http_x_integrations_key_id",'
    '"scopes":"$http_x_integrations_scopes",'
    '"env":"$http_x_integrations_env","auth":"$http_authorization",'
    '"xkey":"$http_x_api_key","apikey":"$http_api_key"}';
server {
    listen 127.0.0.1:%%PORT2%%;
    location / {
        access_log %%DIR%%/backend.log backend;
        client_body_buffer_size 64k;
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
}
server {
    listen 127.0.0.1:%%PORT3%%;
    access_log off;
    location / {
        default_type application/json;
        return 201 '{"ok":true}';
    }
}
EOF

my $seed = ReadSeed->new($h, org => 'acme');
$seed->event({ id => 42, slug => 'comedy-night', title => 'Comedy Night',
               starts => '2026-09-01T19:00:00Z', status => 'PUBLISHED' });
$seed->flush;

my ($rw, $rwid) = make_key($h, org => 'acme',
    scopes => 'events:read events:write tickets:write');
my ($ro) = make_key($h, org => 'acme', scopes => 'events:read');
my ($scanner) = make_key($h, org => 'acme', scopes => 'tickets:write');

sub backend {
    sleep 0.2;
    return map { $J->decode($_) } grep { length }
        split /\n/, Harness::_slurp($h->dir . '/backend.log');
}

my %json = ('Content-Type' => 'application/json');

# -- reads --------------------------------------------------------------------
my $r = $h->get('/v2/integrations/events', { 'X-Api-Key' => $rw });
is($r->{status}, 200, 'GET events: from Redis');
is($h->json($r)->{items}[0]{slug}, 'comedy-night', 'the seeded event');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on reads');

$r = $h->get('/v2/integrations/events/comedy-night',
             { Authorization => "Bearer $rw" });
is($r->{status}, 200, 'GET event: the id captured in the public location');
is($h->json($r)->{title}, 'Comedy Night', 'event detail');
ok($r->{headers}{etag}, 'ETag');

$r = $h->get('/v2/integrations/events/nope', { 'X-Api-Key' => $rw });
is($r->{status}, 404, 'unknown event');
is_deeply($h->json($r), { error => 'Event not found' }, 'its JSON');

$r = $h->get('/v2/integrations/events');
is($r->{status}, 401, 'no key: 401');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 401');

# -- writes -------------------------------------------------------------------
my $create = qq({"title":"Late Show", "startsAt":"2026-10-01T21:00:00-04:00",\n)
    . qq( "ticketTypes":[{"name":"GA","price":1500,"quantity":80}]});
$r = $h->request('POST', '/v2/integrations/events?dry_run=1',
                 { %json, 'X-Api-Key' => $rw }, $create);
is($r->{status}, 201, 'POST events: validated, passed to the backend');
is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 201');

my $patch = '{ "slug" : "late-show" }';
$r = $h->request('PATCH', '/v2/integrations/events/comedy%2Dnight',
                 { %json, 'api-key' => $rw }, $patch);
is($r->{status}, 201, 'PATCH event: passed to the backend');

my $checkin = '{"enter":1,"entry_date":"2024-09-28T23:00:00.000Z"}';
$r = $h->request('PUT', '/v2/integrations/tickets/t-9/checkin',
                 { %json, 'X-Api-Key' => $scanner }, $checkin);
is($r->{status}, 201, 'PUT check-in with a tickets:write key');

my @b = backend();
is(scalar @b, 3, 'the backend saw three writes, once each');
is_deeply([map { "$_->{method} $_->{uri}" } @b],
          ['POST /v2/integrations/events?dry_run=1',
           'PATCH /v2/integrations/events/comedy%2Dnight',
           'PUT /v2/integrations/tickets/t-9/checkin'],
          'the client\'s own URIs, as sent');
is_deeply([map { $_->{body} } @b], [$create, $patch, $checkin],
          'the bodies, byte for byte');
is($b[0]{org}, 'acme', 'X-Integrations-Org');
is($b[0]{id}, $rwid, 'X-Integrations-Key-Id');
is($b[0]{scopes}, 'events:read events:write tickets:write',
   'X-Integrations-Scopes');
is($b[0]{env}, 'live', 'X-Integrations-Env');
is(join('', map { @$_{qw(auth xkey apikey)} } @b), '',
   'no key header reached the backend');
my $log = Harness::_slurp($h->dir . '/backend.log');
ok(index($log, $rw) < 0 && index($log, $scanner) < 0,
   'no key anywhere in what the backend saw');

is($h->redis('LLEN', "{k:$rwid}:log:events"), 5,
   'five requests of that key, five admissions: the rewrite counts once');

# -- refusals -----------------------------------------------------------------
$r = $h->request('POST', '/v2/integrations/events',
                 { %json, 'X-Api-Key' => $ro }, $create);
is($r->{status}, 403, 'POST with a read-only key: 403');
is_deeply($h->json($r)->{missingScopes}, ['events:write'], 'events:write');

$r = $h->request('PUT', '/v2/integrations/tickets/t-9/checkin',
                 { %json, 'X-Api-Key' => $ro }, $checkin);
is($r->{status}, 403, 'check-in with a read-only key: 403');
is_deeply($h->json($r)->{missingScopes}, ['tickets:write'], 'tickets:write');

$r = $h->get('/v2/integrations/events', { 'X-Api-Key' => $scanner });
is($r->{status}, 403, 'a scanner key cannot read events');

$r = $h->request('PATCH', '/v2/integrations/events/comedy-night',
                 { %json, 'X-Api-Key' => $rw }, '{"status":"CANCELLED"}');
is($r->{status}, 400, 'PATCH with a status change: 400');
is_deeply($h->json($r), { error => 'Validation failed', details =>
          [{ field => 'status',
             message => 'Status changes are not accepted' }]},
          'its details');

$r = $h->request('PUT', '/v2/integrations/tickets/t-9/checkin',
                 { %json, 'X-Api-Key' => $scanner }, '{"enter":1}');
is($r->{status}, 422, 'check-in without entry_date: 422');

$r = $h->request('DELETE', '/v2/integrations/tickets/t-9/checkin',
                 { 'X-Api-Key' => $scanner });
is($r->{status}, 405, 'check-in with another method: 405');
is($r->{headers}{allow}, 'PUT, OPTIONS', 'Allow');
is_deeply($h->json($r), { error => 'Method not allowed' }, 'JSON 405');

# a 405's Allow names every method the URL serves, writes included
for my $c (['PUT', '/v2/integrations/events/comedy-night',
            'GET, HEAD, PATCH, OPTIONS'],
           ['POST', '/v2/integrations/events/comedy-night',
            'GET, HEAD, PATCH, OPTIONS'],
           ['DELETE', '/v2/integrations/events', 'GET, HEAD, POST, OPTIONS'],
           ['PUT', '/v2/integrations/events', 'GET, HEAD, POST, OPTIONS'],
           ['OPTIONS', '/v2/integrations/events', 'GET, HEAD, POST, OPTIONS'])
{
    my ($m, $path, $allow) = @$c;
    $r = $h->request($m, $path, { %json, 'X-Api-Key' => $rw }, '{}');
    is($r->{status}, 405, "$m $path: 405");
    is($r->{headers}{allow}, $allow, "... Allow: $allow");
    is_deeply($h->json($r), { error => 'Method not allowed' }, '... JSON');
    ok(!exists $r->{headers}{'ratelimit-remaining'},
       '... and no allowance spent on it');
}

$r = $h->get('/_writes/event-create', { 'X-Api-Key' => $rw });
is($r->{status}, 404, 'the internal locations are not reachable');

is(scalar(my @b2 = backend()), 3, 'no refused write reached the backend');

# -- preflights ---------------------------------------------------------------
for my $path ('/v2/integrations/events', '/v2/integrations/events/x',
              '/v2/integrations/tickets/t-9/checkin')
{
    $r = $h->request('OPTIONS', $path, {
        Origin => 'https://app.example',
        'Access-Control-Request-Method' => 'PATCH',
        'Access-Control-Request-Headers' => 'content-type, x-api-key' });
    is($r->{status}, 204, "preflight $path: 204 without a key");
    is($r->{headers}{'access-control-allow-headers'},
       'Content-Type, If-None-Match, Authorization, X-Api-Key, api-key',
       "preflight $path: the key headers");
    is($r->{headers}{'access-control-allow-methods'},
       'GET, POST, PATCH, PUT, OPTIONS', "preflight $path: methods");
}

$h->done;
done_testing;
