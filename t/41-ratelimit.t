#!/usr/bin/perl
# Per-key rolling-window rate limits: exact under concurrency, across
# workers and nginx nodes, one Redis round trip, honest headers.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use HTTP::Tiny;
use Harness;
use Keys qw(make_key);

my $h = Harness->new;

my $conf = <<'EOF';
integrations_redis 127.0.0.1:%%REDIS_PORT%% timeout=500ms;
server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        apikey on;
        apikey_rate_limit 5r/2s bucket=events;
        proxy_set_header X-Remaining $apikey_rate_remaining;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /attendees {
        apikey on;
        apikey_rate_limit 3r/2s bucket=attendees;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /burst {
        apikey on;
        apikey_rate_limit 60r/m bucket=burst;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /unlimited {
        apikey on;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /write {
        apikey on;
        apikey_scope events:write;
        apikey_rate_limit 5r/2s bucket=events;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /closed {
        apikey on;
        apikey_rate_limit 100r/s bucket=policy;
        apikey_redis_failure closed;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /open {
        apikey on;
        apikey_rate_limit 100r/s bucket=policy;
        apikey_redis_failure open ttl=30s;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "remaining=$http_x_remaining\n"; }
}
EOF
$h->start_nginx($conf, workers => 2);

sub get { my ($p, $k, %o) = @_; $h->get($p, { 'X-Api-Key' => $k }, %o) }

# -- N then N+1 --------------------------------------------------------------
{
    my ($key, $id) = make_key($h, org => 'acme');
    my @res = map { get('/e', $key) } 1 .. 5;
    is_deeply([map { $_->{status} } @res], [(200) x 5], '5 of 5r/2s admitted');
    is_deeply([map { $_->{headers}{'ratelimit-remaining'} } @res],
              [4, 3, 2, 1, 0], 'RateLimit-Remaining counts down');
    is($res[0]{headers}{'ratelimit-limit'}, 5, 'RateLimit-Limit');
    ok($res[0]{headers}{'ratelimit-reset'} >= 1
       && $res[0]{headers}{'ratelimit-reset'} <= 2, 'RateLimit-Reset');
    is($res[0]{headers}{'ratelimit-policy'}, '"events";q=5;w=2',
       'RateLimit-Policy');
    like($res[4]{headers}{'ratelimit'}, qr/^"events";r=0;t=[12]$/,
         'RateLimit');
    is($res[2]{content}, "remaining=2\n",
       '$apikey_rate_remaining reaches the upstream');

    my $t0 = time;
    my $r = get('/e', $key);
    is($r->{status}, 429, 'the 6th is 429');
    is($r->{headers}{'content-type'}, 'application/json', '429 is JSON');
    my $j = $h->json($r);
    is($j->{error}, 'Rate limit exceeded. Try again later.', '429 error');
    is($j->{retryAfter}, $r->{headers}{'retry-after'},
       'retryAfter equals Retry-After');
    ok($r->{headers}{'retry-after'} >= 1 && $r->{headers}{'retry-after'} <= 2,
       'Retry-After within the window');
    is($r->{headers}{'ratelimit-remaining'}, 0, '429 carries RateLimit-*');

    is($h->redis('LLEN', "{k:$id}:log:events"), 5,
       'refused requests do not consume allowance');

    # Retry-After is the truth within a second: poll until admitted.
    my $admitted_at;
    while (time - $t0 < 4) {
        if (get('/e', $key)->{status} == 200) { $admitted_at = time; last }
        sleep 0.05;
    }
    ok($admitted_at, 'admitted again after the window rolled');
    ok(abs(($admitted_at - $t0) - $j->{retryAfter}) <= 1.0,
       'Retry-After within a second of the truth')
        or diag "retryAfter $j->{retryAfter}, admitted after "
              . ($admitted_at - $t0);
}

# -- a refusal for scopes or address: RateLimit headers, nothing spent -------
{
    my ($key, $id) = make_key($h, org => 'acme', scopes => 'events:read');
    get('/e', $key) for 1 .. 2;
    my $r = get('/write', $key);
    is($r->{status}, 403, 'scope refusal: 403');
    is($r->{headers}{'ratelimit-limit'}, 5, '... with RateLimit-Limit');
    is($r->{headers}{'ratelimit-remaining'}, 3,
       '... and the bucket\'s RateLimit-Remaining');
    ok($r->{headers}{'ratelimit-reset'} >= 1
       && $r->{headers}{'ratelimit-reset'} <= 2, '... and RateLimit-Reset');
    is($r->{headers}{'ratelimit-policy'}, '"events";q=5;w=2',
       '... and RateLimit-Policy');
    is($h->redis('LLEN', "{k:$id}:log:events"), 2,
       'a scope refusal spends nothing');

    my ($far, $fid) = make_key($h, org => 'acme', ips => '10.9.9.9');
    $r = get('/e', $far);
    is($r->{status}, 403, 'address refusal: 403');
    is($r->{headers}{'ratelimit-remaining'}, 5,
       '... with the untouched RateLimit-Remaining');
    is($h->redis('EXISTS', "{k:$fid}:log:events"), 0,
       'an address refusal spends nothing');
    $r = get('/unlimited', $far);
    is($r->{status}, 403, 'address refusal where nothing is limited: 403');
    ok(!exists $r->{headers}{'ratelimit-limit'}, '... no RateLimit headers');
}

# -- a rolling, not fixed, window ---------------------------------------------
{
    my ($key) = make_key($h, org => 'acme');
    my $t0 = time;
    is(get('/e', $key)->{status}, 200, 'rolling: request 1 at t0') for 1 .. 3;
    sleep 1.2;
    is(get('/e', $key)->{status}, 200, 'rolling: request at t0+1.2s') for 1 .. 2;
    is(get('/e', $key)->{status}, 429, 'rolling: window full');
    # t0 + 2.3 s: the three early ones have left, the two late ones have not
    sleep(2.3 - (time - $t0)) if time - $t0 < 2.3;
    my @s = map { get('/e', $key)->{status} } 1 .. 4;
    is_deeply(\@s, [200, 200, 200, 429],
              'after the early requests left: exactly 3 slots, not 5');
}

# -- exact under concurrency, two workers -----------------------------------
sub burst {
    my ($key, @ports) = @_;
    my $res = $h->parallel(200, 25, sub {
        my ($i) = @_;
        my $port = $ports[$i % @ports];
        return HTTP::Tiny->new(timeout => 10)->get(
            "http://127.0.0.1:$port/burst",
            { headers => { 'X-Api-Key' => $key } })->{status};
    });
    return (scalar(grep { $_ == 200 } @$res), scalar(grep { $_ == 429 } @$res));
}
{
    my ($key) = make_key($h, org => 'acme');
    my ($ok, $limited) = burst($key, $h->port);
    is($ok, 60, '200 concurrent requests against 60r/m: exactly 60 admitted');
    is($limited, 140, 'and 140 refused with 429');
}

# -- the same across two nginx nodes sharing one Redis ------------------------
{
    my $n2 = $h->nginx2($conf, workers => 2);
    my ($key, $id) = make_key($h, org => 'acme');
    my ($ok, $limited) = burst($key, $h->port, $n2->port);
    is($ok, 60, 'two nginx nodes, one Redis: exactly 60 admitted');
    is($limited, 140, 'two nodes: 140 refused');
    is($h->redis('LLEN', "{k:$id}:log:burst"), 60, 'Redis holds 60 entries');
}

# -- buckets are independent; the key's own limit wins ------------------------
{
    my ($key) = make_key($h, org => 'acme');
    get('/e', $key) for 1 .. 5;
    is(get('/e', $key)->{status}, 429, 'events bucket spent');
    my $r = get('/attendees', $key);
    is($r->{status}, 200, 'attendees bucket independent');
    is($r->{headers}{'ratelimit-limit'}, 3, 'attendees limit');
    is($r->{headers}{'ratelimit-policy'}, '"attendees";q=3;w=2',
       'attendees policy');

    my ($own, $oid) = make_key($h, org => 'acme', rate_limit => 8);
    my @s = map { get('/e', $own)->{status} } 1 .. 9;
    is(scalar(grep { $_ == 200 } @s), 8, 'key override (8) wins over 5r/2s');
    is($s[8], 429, 'the 9th is refused');

    # the operator lowers the key's limit below what its log holds
    $h->redis('HSET', "{k:$oid}", 'rate_limit', 3);
    $h->redis('HINCRBY', "{k:$oid}", 'gen', 1);   # DATA_MODEL.md
    my $low = get('/e', $own);
    is($low->{status}, 429, 'limit lowered to 3 under a log of 8: refused');
    is($low->{headers}{'ratelimit-limit'}, 3, '... RateLimit-Limit is 3');
    ok($low->{headers}{'retry-after'} >= 1
       && $low->{headers}{'retry-after'} <= 2,
       '... Retry-After within the window');
    is($h->redis('LLEN', "{k:$oid}:log:events"), 8, '... nothing spent');

    # a log written before 2026-12 (a sorted set under :rl:) still counts
    my $redis_ms = sub {
        my ($s, $us) = $h->redis('TIME');
        return $s * 1000 + int($us / 1000);
    };
    my ($full, $fid) = make_key($h, org => 'acme');
    my $t = $redis_ms->();
    $h->redis('ZADD', "{k:$fid}:rl:events", map { ($t - $_, "$t-$_") }
              10, 20, 30, 40, 50, 5000);
    my $f = get('/e', $full);
    is($f->{status}, 429, 'legacy log of 5 in the window: 6th refused');
    is($h->redis('EXISTS', "{k:$fid}:rl:events"), 0, '... legacy log moved');
    is($h->redis('LLEN', "{k:$fid}:log:events"), 5,
       '... into the list, without the entry older than the window');
    my ($part, $pid) = make_key($h, org => 'acme');
    $t = $redis_ms->();
    $h->redis('ZADD', "{k:$pid}:rl:events", $t - 100, "a", $t - 50, "b");
    my $pr = get('/e', $part);
    is($pr->{status}, 200, 'legacy log of 2: admitted');
    is($pr->{headers}{'ratelimit-remaining'}, 2, '... 2 remaining of 5');
    is($h->redis('LLEN', "{k:$pid}:log:events"), 3, '... list holds 3');

    # a long log that left the window at once: found in O(log n) steps
    my ($long, $lid) = make_key($h, org => 'acme');
    $t = $redis_ms->();
    for my $c (0 .. 4) {
        $h->redis('RPUSH', "{k:$lid}:log:events",
                  map { $t - 20000 - 5000 + $c * 1000 + $_ } 0 .. 999);
    }
    $h->redis('RPUSH', "{k:$lid}:log:events", $t - 200, $t - 100);
    $h->redis('CONFIG', 'RESETSTAT');
    my $lr = get('/e', $long);
    my %lc = $h->redis('INFO', 'commandstats') =~ /cmdstat_(\w+):calls=(\d+)/g;
    is($lr->{status}, 200, '5,000 entries older than the window: admitted');
    is($lr->{headers}{'ratelimit-remaining'}, 2, '... 2 remaining of 5');
    is($h->redis('LLEN', "{k:$lid}:log:events"), 3,
       '... the old entries trimmed, the 2 in the window kept');
    is($lc{ltrim}, 1, '... in one LTRIM');
    ok(($lc{lindex} // 0) <= 30, '... found with at most 30 LINDEX')
        or diag "lindex calls: $lc{lindex}";

    my $u = get('/unlimited', $key);
    is($u->{status}, 200, 'no limit configured: admitted');
    ok(!exists $u->{headers}{'ratelimit-limit'},
       'no limit configured: no RateLimit headers');
}

# -- one round trip: one EVALSHA per request, nothing else --------------------
{
    my ($key) = make_key($h, org => 'acme');
    get('/e', $key);   # warm: the key's worker connection is up
    $h->redis('CONFIG', 'RESETSTAT');
    get('/attendees', $key) for 1 .. 3;
    my $stats = $h->redis('INFO', 'commandstats');
    my %calls = $stats =~ /cmdstat_(\w+):calls=(\d+)/g;
    is($calls{evalsha}, 3, 'one EVALSHA per request');
    my @other = grep { !/^(evalsha|info|config|hmget|time|lrange|ltrim|rpush|rpop|lindex|pexpire|hset|exists)$/ }
                keys %calls;
    is_deeply(\@other, [], 'no other top-level command') or diag $stats;
    ok(!$calls{eval}, 'script not resent (EVALSHA hit the cache)');
}

# -- script cache flushed: EVAL fallback, still one answer ---------------------
{
    my ($key) = make_key($h, org => 'acme');
    $h->redis('SCRIPT', 'FLUSH');
    is(get('/unlimited', $key)->{status}, 200, 'after SCRIPT FLUSH: admitted');
    is(get('/unlimited', $key)->{status}, 200, 'and again');
}

# -- rate-limit data expires on its own --------------------------------------
{
    my ($key, $id) = make_key($h, org => 'acme');
    get('/attendees', $key) for 1 .. 2;
    ok($h->redis('PTTL', "{k:$id}:log:attendees") <= 2000, 'log expires within a window');
    sleep 4.1;
    is($h->redis('EXISTS', "{k:$id}:log:attendees"), 0,
       'no rate-limit key left after two windows of silence');
}

# -- Redis down: closed and open policies --------------------------------------
{
    my ($seen) = make_key($h, org => 'acme');
    my ($never) = make_key($h, org => 'acme');
    # validate "seen" on every worker (connections spread over workers)
    get('/open', $seen) for 1 .. 6;

    $h->stop_redis;
    is(get('/closed', $seen)->{status}, 503, 'closed: Redis down is 503');
    my @s = map { get('/open', $seen)->{status} } 1 .. 4;
    is_deeply(\@s, [200, 200, 200, 200],
              'open: a key this node validated recently is admitted');
    my $r = get('/open', $never);
    is($r->{status}, 503, 'open: a key never seen is 503');
    is_deeply($h->json($r), { error => 'Service unavailable' }, '503 body');
    is(get('/open', $seen)->{headers}{'ratelimit-limit'}, 100,
       'open: the limit still counts, on this node (t/47)');
    ok($h->logs_contain('apikey_redis_failure open'),
       'open admissions are logged');
    $h->start_redis;
}

$h->done;
done_testing;
