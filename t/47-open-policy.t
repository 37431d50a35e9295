#!/usr/bin/perl
# apikey_redis_failure open [ttl=]: with Redis stopped, only a key this
# node validated, from the same client address, within ttl, before its
# recorded expiry is admitted, and only where its remembered scopes allow;
# when Redis is back the normal check (and its rate limit) takes over.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use HTTP::Tiny;
use Harness;
use Keys qw(make_key);
use Digest::SHA qw(sha256_hex);

my $h = Harness->new;

# One worker: "this node validated" is then one worker's memory, so what
# is admitted does not depend on which worker took the connection. The
# memory is shared by every location; the ttl is the location's own.
$h->start_nginx(<<'EOF', workers => 1);
integrations_redis 127.0.0.1:%%REDIS_PORT%% timeout=300ms;
server {
    listen 127.0.0.1:%%PORT%%;
    location /long {
        apikey on;
        apikey_rate_limit 100r/m bucket=b;
        apikey_redis_failure open ttl=60s;
        proxy_set_header X-Org $apikey_org;
        proxy_set_header X-Id $apikey_id;
        proxy_pass http://127.0.0.1:%%PORT2%%;

        location /long/write {
            apikey_scope events:write;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
    }
    location /tight {
        apikey on;
        apikey_scope events:read;
        apikey_rate_limit 3r/2s bucket=t;
        apikey_redis_failure open ttl=60s;
        proxy_pass http://127.0.0.1:%%PORT2%%;

        location /tight/write {
            apikey_scope events:write;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
    }
    location /short {
        apikey on;
        apikey_rate_limit 100r/m bucket=b;
        apikey_redis_failure open ttl=2s;
        proxy_set_header X-Org $apikey_org;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "org=$http_x_org id=$http_x_id\n"; }
}
EOF

# a request from a chosen loopback source address (127.0.0.1 by default)
sub get {
    my ($path, $key, $from) = @_;
    my $http = HTTP::Tiny->new(timeout => 10, keep_alive => 0,
                               local_address => $from // '127.0.0.1');
    my $url = 'http://127.0.0.1:' . $h->port . $path;
    return $http->get($url, { headers => { 'X-Api-Key' => $key } });
}

# the body as JSON, or {} (so that a wrong body fails a test, not the file)
sub jbody { my $j = eval { $h->json($_[0]) }; ref $j ? $j : {} }

sub is_503 {
    my ($res, $what) = @_;
    is($res->{status}, 503, "$what: 503");
    is($res->{headers}{'content-type'}, 'application/json', "$what: JSON");
    is($res->{headers}{'retry-after'}, 1, "$what: Retry-After: 1");
    is_deeply(jbody($res), { error => 'Service unavailable' },
              "$what: 503 body");
}

# The memory has 4,096 slots chosen by a key's hash, and two keys in one
# slot replace each other: each key of this test gets a slot of its own,
# so that what is remembered does not depend on the draw.
my %slot;
sub own_slot_key {
    for (1 .. 1000) {
        my ($key, $id) = make_key($h, @_);
        next if $slot{ hex(substr(sha256_hex($key), 0, 6)) % 4096 }++;
        return ($key, $id);
    }
    die 'no free slot';
}

# -- validated while Redis is up -----------------------------------------------
my %k;
my %id;
for my $name (qw(reader other_ip timed writer)) {
    ($k{$name}, $id{$name}) = own_slot_key(org => 'acme', scopes =>
        $name eq 'writer' ? 'events:read events:write' : 'events:read');
}
# a recorded expiry that passes during the outage
my $expires = int(time) + 3;
($k{expiring}, $id{expiring}) = own_slot_key(org => 'acme',
                                             expires => $expires);

for my $name (qw(reader other_ip timed writer expiring)) {
    is(get('/long', $k{$name})->{status}, 200, "$name validated with Redis up");
}
# an expiry set after the key was remembered (a rotation's grace), seen
# by the very next request: the outage's memory has it too
($k{graced}, $id{graced}) = own_slot_key(org => 'acme');
is(get('/long', $k{graced})->{status}, 200, 'graced validated, no expiry');
$h->redis('HSET', "{k:$id{graced}}", 'expires', $expires);
is(get('/long', $k{graced})->{status}, 200, '... then given an expiry: 200');
# keys for the outage's own count: the location's limit, and a key's own
($k{tight}, $id{tight}) = own_slot_key(org => 'acme');
($k{own}, $id{own}) = own_slot_key(org => 'acme', rate_limit => 2);
# a key's own limit equal to the location's is still its own elsewhere
($k{own3}, $id{own3}) = own_slot_key(org => 'acme', rate_limit => 3);
is(get('/tight', $k{$_})->{status}, 200, "$_ validated with Redis up")
    for qw(tight own own3);
# a key used from five addresses (an integrator's NAT pool): the last four
# are remembered
($k{pool}, $id{pool}) = own_slot_key(org => 'acme');
is(get('/long', $k{pool}, "127.0.0.$_")->{status}, 200,
   "pool validated from 127.0.0.$_") for 1 .. 5;
my $t_validated = time;
my $w = get('/long/write', $k{reader});
is($w->{status}, 403, 'Redis up: reader lacks events:write, 403');

# what Redis refused after the key was remembered is not admitted from
# memory: revoked, or its address or scopes narrowed, while Redis is up
for my $name (qw(revoked narrowed rescoped)) {
    ($k{$name}, $id{$name}) = own_slot_key(org => 'acme',
        scopes => 'events:read events:write');
    is(get('/long/write', $k{$name})->{status}, 200,
       "$name validated with Redis up");
}
$h->redis('HSET', "{k:$id{revoked}}", 'status', 'revoked');
is(get('/long', $k{revoked})->{status}, 401, 'revoked: 401 with Redis up');
$h->redis('HSET', "{k:$id{narrowed}}", 'ips', '10.0.0.0/8',
          'nets', Keys::nets_of('10.0.0.0/8'));
# a hand edit of more than status or expiry bumps gen (DATA_MODEL.md)
$h->redis('HINCRBY', "{k:$id{narrowed}}", 'gen', 1);
is(get('/long', $k{narrowed})->{status}, 403,
   'allowlist narrowed: 403 with Redis up');
$h->redis('HSET', "{k:$id{rescoped}}", 'scopes', 'events:read');
$h->redis('HINCRBY', "{k:$id{rescoped}}", 'gen', 1);
is(get('/long/write', $k{rescoped})->{status}, 403,
   'events:write taken away: 403 with Redis up');
# one address taken off a key used from four: only that one is forgotten,
# and a new one is remembered after the rest
($k{partial}, $id{partial}) = own_slot_key(org => 'acme');
is(get('/long', $k{partial}, "127.0.0.$_")->{status}, 200,
   "partial validated from 127.0.0.$_") for 1 .. 4;
my $kept = '127.0.0.1,127.0.0.3,127.0.0.4,127.0.0.5';
$h->redis('HSET', "{k:$id{partial}}", 'ips', $kept,
          'nets', Keys::nets_of($kept));
$h->redis('HINCRBY', "{k:$id{partial}}", 'gen', 1);
is(get('/long', $k{partial}, '127.0.0.2')->{status}, 403,
   'one address taken off the key: 403 from it with Redis up');
is(get('/long', $k{partial}, '127.0.0.5')->{status}, 200,
   '... and a new allowed address: 200');
# an allowlist narrowed to one address: a refusal from another forgets
# every remembered address the new list does not allow, not just its own
($k{narrow1}, $id{narrow1}) = own_slot_key(org => 'acme');
is(get('/long', $k{narrow1}, "127.0.0.$_")->{status}, 200,
   "narrow1 validated from 127.0.0.$_") for 1 .. 3;
$h->redis('HSET', "{k:$id{narrow1}}", 'ips', '127.0.0.1',
          'nets', Keys::nets_of('127.0.0.1'));
$h->redis('HINCRBY', "{k:$id{narrow1}}", 'gen', 1);
is(get('/long', $k{narrow1}, '127.0.0.2')->{status}, 403,
   'allowlist narrowed to 127.0.0.1: 403 from 127.0.0.2');

$h->stop_redis;
ok(!$h->redis_alive, 'Redis is stopped');

is_503(get('/long', $k{revoked}), 'open: a key refused as revoked');
is_503(get('/long', $k{narrowed}), 'open: a key refused for its address');
is(get('/long/write', $k{rescoped})->{status}, 403,
   'open: a key remembered with its scopes as they are now: 403');
is(get('/long', $k{rescoped})->{status}, 200,
   '... and 200 where they still allow');
is_deeply([ map { get('/long', $k{partial}, "127.0.0.$_")->{status} }
            1, 3, 4, 5 ], [ (200) x 4 ],
          'open: the key\'s other addresses are still remembered');
is_503(get('/long', $k{partial}, '127.0.0.2'),
       'open: the address Redis refused for the key');
is(get('/long', $k{narrow1}, '127.0.0.1')->{status}, 200,
   'open: the address the narrowed list allows: 200');
is_503(get('/long', $k{narrow1}, '127.0.0.3'),
       'open: an address it no longer allows, never refused itself');

# -- the same address within ttl: admitted -------------------------------------
{
    my $r = get('/long', $k{reader});
    is($r->{status}, 200, 'open: validated key, same address, within ttl: 200');
    is($r->{content}, "org=acme id=$id{reader}\n",
       'open: the identity comes from the remembered record');
    is($r->{headers}{'ratelimit-limit'}, 100,
       'open: RateLimit-Limit of the location');
    is($r->{headers}{'ratelimit-remaining'}, 99,
       'open: RateLimit-Remaining counted on this node');
    ok($h->logs_contain(qr/admitting key "\Q$id{reader}\E"/),
       'open: the admission is logged with the key id');

    is(get('/short', $k{timed})->{status}, 200,
       'open: ttl=2s, validated under 2 s ago: 200');
    is(get('/long', $k{expiring})->{status}, 200,
       'open: before its recorded expiry: 200');
}

# -- never unlimited: at most the limit per window on this node ---------------
{
    my @r = get('/tight', $k{tight});
    my $w = get('/tight/write', $k{tight});
    is($w->{status}, 403, 'open: a scope refusal: 403');
    is($w->{headers}{'ratelimit-remaining'}, 2, '... that counts nothing');
    push @r, map { get('/tight', $k{tight}) } 1 .. 2;
    is_deeply([ map { $_->{status} } @r ], [ 200, 200, 200 ],
              'open: 3r/2s admits 3 while Redis is down');
    is_deeply([ map { $_->{headers}{'ratelimit-remaining'} } @r ], [ 2, 1, 0 ],
              'open: ... counting down');
    $w = get('/tight/write', $k{tight});
    is($w->{status}, 403, 'open: a scope refusal at the limit: 403');
    my $t0 = time;
    my $r = get('/tight', $k{tight});
    is($r->{status}, 429, 'open: the 4th in the window: 429');
    is(jbody($r)->{error}, 'Rate limit exceeded. Try again later.',
       'open: 429 body');
    ok($r->{headers}{'retry-after'} >= 1 && $r->{headers}{'retry-after'} <= 2,
       'open: Retry-After within the window');
    my $logged = () = $h->error_log =~ /admitting key "\Q$id{tight}\E"/g;
    is($logged, 3, 'open: the 3 admissions are logged, the refusals not');

    my @o = map { get('/tight', $k{own})->{status} } 1 .. 3;
    is_deeply(\@o, [ 200, 200, 429 ], 'open: a key\'s own limit (2) holds');
    my @o3 = map { get('/long', $k{own3})->{status} } 1 .. 4;
    is_deeply(\@o3, [ 200, 200, 200, 429 ],
              'open: a key\'s own limit equal to where it was seen (3) holds '
              . 'in a location of 100r/m');

    sleep(2.1 - (time - $t0)) if time - $t0 < 2.1;
    $r = get('/tight', $k{tight});
    is($r->{status}, 200, 'open: admitted again in the next window');
    is($r->{headers}{'ratelimit-remaining'}, 2, '... from a fresh count');
}

# -- another client address: refused -------------------------------------------
{
    is_503(get('/long', $k{other_ip}, '127.0.0.2'),
           'open: key validated from 127.0.0.1, sent from 127.0.0.2');
    is(get('/long', $k{other_ip}, '127.0.0.1')->{status}, 200,
       'open: ... and still admitted from 127.0.0.1');
    is_deeply([ map { get('/long', $k{pool}, "127.0.0.$_")->{status} } 2 .. 5 ],
              [ (200) x 4 ], 'open: the last four addresses of a key: 200');
    is_503(get('/long', $k{pool}, '127.0.0.1'),
           'open: its fifth-last address is forgotten');
    is_503(get('/long', $k{pool}, '127.0.0.9'), 'open: a new address');
}

# -- scopes against the remembered record --------------------------------------
{
    my $r = get('/long/write', $k{reader});
    is($r->{status}, 403, 'open: remembered key lacks the scope: 403');
    is_deeply(jbody($r), { error => 'Forbidden', code => 'SCOPE_REQUIRED',
                              missingScopes => ['events:write'] },
              'open: 403 body names the missing scope');
    like($r->{headers}{'www-authenticate'} // '',
         qr/error="insufficient_scope"/, 'open: 403 WWW-Authenticate');
    is(get('/long/write', $k{writer})->{status}, 200,
       'open: remembered key with the scope: 200');
}

# -- past ttl, past expiry -----------------------------------------------------
{
    my $until = $t_validated + 2.5;
    $until = $expires + 1.2 if $expires + 1.2 > $until;
    sleep($until - time) if $until > time;

    is_503(get('/short', $k{timed}), 'open: validated longer ago than ttl=2s');
    is(get('/long', $k{timed})->{status}, 200,
       'open: ... the same key within ttl=60s is still admitted');
    my $r = get('/long', $k{expiring});
    is($r->{status}, 401,
       'open: recorded expiry passed while Redis is down: 401, as with Redis');
    like(jbody($r)->{hint} // '', qr/expired/, '... saying it expired');
    $r = get('/long', $k{expiring}, '127.0.0.2');
    is($r->{status}, 401, '... from any address');
    is(get('/long', $k{graced})->{status}, 401,
       'open: an expiry given a moment after the key was validated: 401');
}

# -- Redis back: the normal check again ----------------------------------------
$h->start_redis;
# Redis kept nothing (no persistence): write the records again; the one
# "revoked" meanwhile must now be refused although this node remembers it
make_key($h, org => 'acme', id => $id{reader},
         random => substr(($k{reader} =~ /_(\w{38})$/)[0], 0, 32));
make_key($h, org => 'acme', id => $id{other_ip}, status => 'revoked',
         random => substr(($k{other_ip} =~ /_(\w{38})$/)[0], 0, 32));
{
    my $r;
    my $t0 = time;
    # until the module is reconnected: the admission lands in Redis's log
    while (time - $t0 < 10) {
        $r = get('/long', $k{reader});
        last if $r->{status} == 200
                && $h->redis('LLEN', "{k:$id{reader}}:log:b") == 1;
        sleep 0.1;
    }
    is($r->{status}, 200, 'Redis back: the key is admitted');
    is($r->{headers}{'ratelimit-limit'}, 100, 'Redis back: RateLimit-Limit');
    is($r->{headers}{'ratelimit-remaining'}, 99,
       'Redis back: RateLimit-Remaining counts again');
    is($h->redis('LLEN', "{k:$id{reader}}:log:b"), 1,
       'Redis back: the admission is in the Redis log');

    my $rv = get('/long', $k{other_ip});
    is($rv->{status}, 401, 'Redis back: a key revoked during the outage: 401');
    like(jbody($rv)->{hint} // '', qr/revoked/, '... because it is revoked');
    is(get('/long', $k{timed})->{status}, 401,
       'Redis back: a remembered key Redis no longer holds: 401');
}

$h->done;
done_testing;
