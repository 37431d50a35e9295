#!/usr/bin/perl
# integrations_status: node-wide counters (all workers), Prometheus text or
# JSON, kept across a reload.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);

my $h = Harness->new;
my $conf = <<'EOF2';
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /api/ {
        apikey on;
        apikey_scope events:read;
        apikey_rate_limit 2r/m;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /status {
        allow 127.0.0.1;
        deny all;
        integrations_status;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "ok\n"; }
}
EOF2
$h->start_nginx($conf, workers => 2);
my ($key) = make_key($h, org => 'acme', scopes => 'events:read');
my ($ro) = make_key($h, org => 'acme', scopes => 'other');

$h->get('/api/x', { 'X-Api-Key' => $key }) for 1 .. 3;   # 2 ok, 1 limited
$h->get('/api/x') for 1 .. 4;                             # 4 unauthorized
$h->get('/api/x', { 'X-Api-Key' => $ro });               # 1 forbidden

my $res = $h->get('/status');
is($res->{status}, 200, 'status page');
like($res->{headers}{'content-type'}, qr{^text/plain}, 'Prometheus text');
my $t = $res->{content};
like($t, qr/^integrations_keys_total\{result="ok"\} 2$/m, 'ok counted');
like($t, qr/^integrations_keys_total\{result="limited"\} 1$/m, 'limited');
like($t, qr/^integrations_keys_total\{result="unauthorized"\} 4$/m,
     'unauthorized, over both workers');
like($t, qr/^integrations_keys_total\{result="forbidden"\} 1$/m, 'forbidden');
my ($cmds) = $t =~ /^integrations_redis_commands_total (\d+)$/m;
my ($replies) = $t =~ /^integrations_redis_replies_total (\d+)$/m;
is($cmds, 4, 'Redis commands: the 4 key checks, not the handshakes');
is($replies, $cmds, 'every command answered');
unlike($t, qr/qkt_/, 'no key material on the status page');

my $j = $h->json($h->get('/status?format=json'));
is($j->{keys}{ok}, 2, 'JSON form');

$h->reload_nginx($conf);
$j = $h->json($h->get('/status?format=json'));
is($j->{keys}{unauthorized}, 4, 'counters kept across a reload');

$h->stop_redis;
$h->get('/api/x', { 'X-Api-Key' => $key });
$j = $h->json($h->get('/status?format=json'));
is($j->{keys}{unavailable}, 1, 'Redis down counted');
ok($j->{redis}{failures} >= 1, 'Redis failure counted');
# reconnect attempts while Redis is down: connects, never commands
my ($c0, $n0) = ($j->{redis}{commands}, $j->{redis}{connects});
select(undef, undef, undef, 1.5);
$j = $h->json($h->get('/status?format=json'));
is($j->{redis}{commands}, $c0, 'an outage without requests: no commands');
ok($j->{redis}{connects} > $n0, '... but the reconnect attempts, as connects')
    or diag "$n0 -> $j->{redis}{connects}";

$h->done;
done_testing;
