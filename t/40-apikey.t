#!/usr/bin/perl
# The apikey access phase against a real nginx and Redis: where keys are
# found, every refusal and its JSON, scopes, IP allowlists, revocation,
# Redis failures, multiplexing, and that the key goes nowhere.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use Harness;
use Keys qw(make_key key_text);

my $h = Harness->new;

# A backend in the same nginx echoes what it received as JSON headers.
my $conf = <<'EOF';
log_format keys '$remote_addr "$request" $status auth="$http_authorization" '
                'xkey="$http_x_api_key" org=$apikey_org id=$apikey_id';
integrations_redis 127.0.0.1:%%REDIS_PORT%% timeout=300ms;
large_client_header_buffers 4 16k;
server {
    listen 127.0.0.1:%%PORT%%;
    access_log %%DIR%%/keys.log keys;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Real-IP;

    location /api/ {
        apikey on;
        apikey_scope events:read;
        proxy_set_header X-Org $apikey_org;
        proxy_set_header X-Key-Id $apikey_id;
        proxy_set_header X-Key-Name $apikey_name;
        proxy_set_header X-Scopes $apikey_scopes;
        proxy_set_header X-Env $apikey_env;
        proxy_pass http://127.0.0.1:%%PORT2%%;

        location /api/write {
            apikey_scope events:read events:write;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
    }
    location /custom {
        apikey on;
        apikey_header "Authorization: Token" X-Custom-Key;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location /open {
        apikey off;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    access_log %%DIR%%/backend.log keys;
    location / {
        default_type application/json;
        return 200 '{"org":"$http_x_org","id":"$http_x_key_id","name":"$http_x_key_name","scopes":"$http_x_scopes","env":"$http_x_env","auth":"$http_authorization","xkey":"$http_x_api_key","apikey":"$http_api_key","custom":"$http_x_custom_key","all":"$http_keep_alive"}';
    }
}
EOF
$h->start_nginx($conf);

my ($key, $id) = make_key($h, org => 'acme', name => 'CRM sync',
                          scopes => 'events:read attendees:read');
my @all_keys = ($key);

sub get { my ($p, %hd) = @_; $h->get($p, \%hd) }

sub is_refusal {
    my ($res, $status, $name) = @_;
    is($res->{status}, $status, "$name: status $status");
    like($res->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON content type");
    my $j = eval { $h->json($res) };
    ok($j, "$name: body is JSON") or diag $res->{content};
    return $j // {};
}

# -- where the key is found ---------------------------------------------
for my $case (
    ['Authorization', "Bearer $key"],
    ['X-Api-Key', $key],
    ['api-key', $key],
    ['AUTHORIZATION', "bearer $key"],
    ['x-API-KEY', $key],
    ['Api-Key', "  $key  "],
) {
    my $res = get('/api/events', $case->[0] => $case->[1]);
    is($res->{status}, 200, "key in $case->[0] accepted");
    my $j = $h->json($res);
    is($j->{org}, 'acme', "$case->[0]: \$apikey_org reaches the upstream");
    is($j->{id}, $id, "$case->[0]: \$apikey_id");
    is($j->{auth} . $j->{xkey} . $j->{apikey}, '',
       "$case->[0]: no key header reaches the upstream");
}

{
    my $j = $h->json(get('/api/x', 'X-Api-Key' => $key));
    is($j->{name}, 'CRM sync', '$apikey_name');
    is($j->{scopes}, 'events:read attendees:read', '$apikey_scopes');
    is($j->{env}, 'live', '$apikey_env');
    is($j->{all}, '', 'the stripped header carries no value');
}

# Another scheme in Authorization is not a key.
is_refusal(get('/api/x', Authorization => "Basic $key"), 401,
           'Basic scheme is not an API key');
# ... and reaches the backend: only the key's header leaves the request
{
    my $res = get('/api/x', 'X-Api-Key' => $key,
                  Authorization => 'Basic dXNlcjpwdw==');
    is($res->{status}, 200, 'a key beside Authorization: Basic');
    my $j = $h->json($res);
    is($j->{auth}, 'Basic dXNlcjpwdw==', '... Basic is passed on');
    is($j->{xkey}, '', '... the key is not');
    $res = get('/api/x', Authorization => "bearer $key");
    is($h->json($res)->{auth}, '', 'a key in any case of Bearer: stripped');
}
# Configured headers and scheme.
is(get('/custom', Authorization => "Token $key")->{status}, 200,
   'apikey_header "Authorization: Token"');
is(get('/custom', 'X-Custom-Key' => $key)->{status}, 200,
   'apikey_header custom name');
{
    # X-Api-Key is an ordinary header in /custom, which this operator's
    # log_format records: use a throwaway key, kept out of the leak check.
    my ($throwaway) = make_key($h, org => 'acme');
    is(get('/custom', 'X-Api-Key' => $throwaway)->{status}, 401,
       'a header not configured there is ignored');
}

# -- the same key twice, or two different keys ---------------------------
is(get('/api/x', Authorization => "Bearer $key", 'X-Api-Key' => $key)
       ->{status}, 200, 'the same key in two headers is accepted');
{
    my ($other) = make_key($h, org => 'acme');
    push @all_keys, $other;
    my $j = is_refusal(get('/api/x', Authorization => "Bearer $key",
                           'X-Api-Key' => $other), 400, 'two different keys');
    is($j->{error}, 'Validation failed', 'ambiguous: error');
    # the later of the two headers is named; HTTP::Tiny orders them freely
    like($j->{details}[0]{field}, qr/^(X-Api-Key|Authorization)$/,
         'ambiguous: names a conflicting header');
    my $raw = $h->raw("GET /api/x HTTP/1.1\r\nHost: x\r\n"
                      . "X-Api-Key: $key\r\nX-Api-Key: $other\r\n"
                      . "Connection: close\r\n\r\n");
    is($raw->{status}, 400, 'the same header twice with different keys: 400');
    $raw = $h->raw("GET /api/x HTTP/1.1\r\nHost: x\r\n"
                   . "X-Api-Key: $key\r\nX-Api-Key: $key\r\n"
                   . "Connection: close\r\n\r\n");
    is($raw->{status}, 200, 'the same header twice with the same key: 200');
}

# -- refusals -------------------------------------------------------------
{
    my $res = get('/api/x');
    my $j = is_refusal($res, 401, 'missing key');
    is($j->{error}, 'Unauthorized', 'missing: error');
    like($j->{hint}, qr/Authorization: Bearer/, 'missing: hint names headers');
    like($res->{headers}{'www-authenticate'}, qr/^Bearer realm=/,
         'missing: WWW-Authenticate');
}
{
    my %bad = (
        'junk' => 'hello',
        'one character changed' => do { (my $k = $key) =~ s/(.)$/$1 eq 'a' ? 'b' : 'a'/e; $k },
        'wrong env' => do { (my $k = $key) =~ s/_live_/_prod_/; $k },
        'truncated' => substr($key, 0, -1),
    );
    my $calls = sub {
        for ($h->redis('INFO', 'commandstats')) {
            return $1 if /^cmdstat_evalsha:calls=(\d+)/;
        }
        return 0;
    };
    my $before = $calls->();
    for my $n (sort keys %bad) {
        my $res = get('/api/x', 'X-Api-Key' => $bad{$n});
        my $j = is_refusal($res, 401, "malformed key ($n)");
        like($res->{headers}{'www-authenticate'}, qr/invalid_token/,
             "malformed ($n): invalid_token");
    }
    is($calls->(), $before,
       'a mistyped or junk key is refused without asking Redis');
    get('/api/x', 'X-Api-Key' => $key);
    is($calls->(), $before + 1, '... a well-formed one asks it once');
}
{
    my ($unknown) = key_text();
    my $j = is_refusal(get('/api/x', 'X-Api-Key' => $unknown), 401,
                       'well-formed but unknown key');
    like($j->{hint}, qr/not valid/, 'unknown: hint');

    # same id, another secret with a valid checksum
    my ($forged) = key_text(id => $id);
    is_refusal(get('/api/x', 'X-Api-Key' => $forged), 401, 'wrong secret');
}
{
    my ($k) = make_key($h, org => 'acme', status => 'revoked');
    my $j = is_refusal(get('/api/x', 'X-Api-Key' => $k), 401, 'revoked key');
    like($j->{hint}, qr/revoked/, 'revoked: hint');
    ($k) = make_key($h, org => 'acme', expires => time - 5);
    $j = is_refusal(get('/api/x', 'X-Api-Key' => $k), 401, 'expired key');
    like($j->{hint}, qr/expired/, 'expired: hint');
    ($k) = make_key($h, org => 'acme', expires => time + 3600);
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 200,
       'key expiring later works');
}
{
    # SPEC: a secret of at least 32 characters, the checksum included
    # (integrationsctl makes 38); longer ones from another generator work
    my @b62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');
    my $rnd = sub { join '', map { $b62[rand 62] } 1 .. $_[0] };
    for my $n (26, 58, 122) {
        my ($k, $kid) = make_key($h, org => 'acme', random => $rnd->($n));
        push @all_keys, $k;
        my $res = get('/api/x', 'X-Api-Key' => $k);
        is($res->{status}, 200, 'a secret of ' . ($n + 6) . ' characters');
        is(eval { $h->json($res)->{id} }, $kid, '... its own identity');
    }
    for my $n (25, 123) {
        my ($k) = make_key($h, org => 'acme', random => $rnd->($n));
        push @all_keys, $k;
        is_refusal(get('/api/x', 'X-Api-Key' => $k), 401,
                   'a secret of ' . ($n + 6) . ' characters');
    }
}
{
    my $big = 'q' x 8192;
    is_refusal(get('/api/x', 'X-Api-Key' => $big), 401, '8 KB key header');
    is_refusal(get('/api/x', Authorization => "Bearer $big"), 401,
               '8 KB Authorization header');
    is(get('/api/x', 'X-Api-Key' => $key)->{status}, 200,
       'still serving after the 8 KB headers');
}

# -- scopes ---------------------------------------------------------------
{
    my ($ro) = make_key($h, org => 'acme', scopes => 'events:read');
    my $res = get('/api/write', 'X-Api-Key' => $ro);
    my $j = is_refusal($res, 403, 'scope missing');
    is_deeply($j, { error => 'Forbidden', code => 'SCOPE_REQUIRED',
                    missingScopes => ['events:write'] },
              'missingScopes lists exactly the missing scope');
    like($res->{headers}{'www-authenticate'},
         qr/error="insufficient_scope", scope="events:write"/,
         '403 WWW-Authenticate insufficient_scope');

    my ($none) = make_key($h, org => 'acme', scopes => 'attendees:read');
    $j = $h->json(get('/api/write', 'X-Api-Key' => $none));
    is_deeply($j->{missingScopes}, ['events:read', 'events:write'],
              'both missing scopes listed, in configured order');

    my ($rw) = make_key($h, org => 'acme',
                        scopes => 'events:write events:read');
    is(get('/api/write', 'X-Api-Key' => $rw)->{status}, 200,
       'all scopes present (any order) passes');
    is(get('/api/events', 'X-Api-Key' => $rw)->{status}, 200,
       'parent location scope inherited');

    my ($prefix) = make_key($h, org => 'acme', scopes => 'events:reader');
    is(get('/api/events', 'X-Api-Key' => $prefix)->{status}, 403,
       'a scope is a whole token, not a prefix');
}

# -- IP allowlists (client address after realip) --------------------------
{
    my ($k) = make_key($h, org => 'acme', ips => '10.1.0.0/16, 192.0.2.7');
    is(get('/api/x', 'X-Api-Key' => $k, 'X-Real-IP' => '10.1.200.3')
           ->{status}, 200, 'IPv4 inside the CIDR passes');
    is(get('/api/x', 'X-Api-Key' => $k, 'X-Real-IP' => '192.0.2.7')
           ->{status}, 200, 'exact IPv4 passes');
    my $j = is_refusal(get('/api/x', 'X-Api-Key' => $k,
                           'X-Real-IP' => '10.2.0.1'), 403, 'IPv4 outside');
    is_deeply($j, { error => 'Forbidden', code => 'IP_NOT_ALLOWED' },
              'IP_NOT_ALLOWED body');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 403,
       'loopback not in the list is refused');

    my ($k6) = make_key($h, org => 'acme', ips => '2001:db8:abcd::/48');
    is(get('/api/x', 'X-Api-Key' => $k6, 'X-Real-IP' => '2001:db8:abcd:12::1')
           ->{status}, 200, 'IPv6 inside the CIDR passes');
    is(get('/api/x', 'X-Api-Key' => $k6, 'X-Real-IP' => '2001:db8:abce::1')
           ->{status}, 403, 'IPv6 outside the CIDR refused');
    is(get('/api/x', 'X-Api-Key' => $k6, 'X-Real-IP' => '10.1.2.3')
           ->{status}, 403, 'IPv4 client against an IPv6 list refused');

    my ($odd) = make_key($h, org => 'acme', ips => '10.0.0.0/13');
    is(get('/api/x', 'X-Api-Key' => $odd, 'X-Real-IP' => '10.7.255.255')
           ->{status}, 200, '/13 boundary inside');
    is(get('/api/x', 'X-Api-Key' => $odd, 'X-Real-IP' => '10.8.0.0')
           ->{status}, 403, '/13 boundary outside');

    # a record with an allowlist the script cannot read fails closed
    my ($broken) = make_key($h, org => 'acme', ips => '10.0.0.1', nets => '');
    is(get('/api/x', 'X-Api-Key' => $broken, 'X-Real-IP' => '10.0.0.1')
           ->{status}, 403, 'allowlist without compiled nets fails closed');
}

# -- revocation is seen by the very next request ---------------------------
{
    my ($k, $kid) = make_key($h, org => 'acme');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 200, 'before revoke');
    $h->redis('HSET', "{k:$kid}", 'status', 'revoked');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 401,
       'revoked: the very next request is 401');
    $h->redis('HSET', "{k:$kid}", 'expires', time - 1, 'status', 'active');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 401,
       'expiry set in the past: the next request is 401');
}

# -- the worker remembers the record's stable fields (DATA_MODEL.md) ------
{
    my ($k, $kid) = make_key($h, org => 'acme',
                             scopes => 'events:read events:write');
    is(get('/api/write', 'X-Api-Key' => $k)->{status}, 200,
       'remembered: first use reads the whole record');
    # a hand edit without gen: the worker goes on from memory (<= 10 s)
    $h->redis('HSET', "{k:$kid}", 'scopes', 'events:read', 'org', 'other');
    my $r = get('/api/write', 'X-Api-Key' => $k);
    is($r->{status}, 200, 'an edit without gen: still from memory');
    is($h->json($r)->{org}, 'acme', '... with the old org');
    # status and expiry are read on every request all the same
    $h->redis('HSET', "{k:$kid}", 'expires', time - 1);
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 401,
       'remembered: an expiry set by hand is seen at once');
    $h->redis('HSET', "{k:$kid}", 'expires', 0);
    # gen moved: the same request asks again for the whole record
    $h->redis('HINCRBY', "{k:$kid}", 'gen', 1);
    $r = get('/api/write', 'X-Api-Key' => $k);
    is($r->{status}, 403, 'gen bumped: the scope taken away is seen at once');
    is($r->{headers}{'ratelimit-limit'}, undef,
       '... (no limit here, no RateLimit headers)');
    $r = get('/api/x', 'X-Api-Key' => $k);
    is($r->{status}, 200, '... and the remaining scope still works');
    is($h->json($r)->{org}, 'other', '... with the new org');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 200,
       '... again, from memory');
    # without gen, the edit is seen once the memory is 10 s old
    $h->redis('HSET', "{k:$kid}", 'scopes', 'attendees:read');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 200,
       'an edit without gen: from memory at first');
    sleep 10.3;
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 403,
       '... and seen within 10 s');
    $h->redis('HSET', "{k:$kid}", 'status', 'revoked');
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 401,
       'revoked: 401 whatever the worker remembers');

    # an expiry that is no time fails closed
    for my $bad ('abc', '-5') {
        my ($e) = make_key($h, org => 'acme', expires => $bad);
        is(get('/api/x', 'X-Api-Key' => $e)->{status}, 401,
           "expires \"$bad\" (written by hand): 401, as expired");
    }

    # only an answer that passed the address check is remembered
    my ($n) = make_key($h, org => 'acme', ips => '10.0.0.1', nets => '*');
    is(get('/api/x', 'X-Api-Key' => $n)->{status}, 403,
       'nets of "*" (written by hand): refused');
    is(get('/api/x', 'X-Api-Key' => $n)->{status}, 403,
       '... and again: nothing was remembered from the refusal');
}

# -- last_used is refreshed, at most once a minute --------------------------
{
    my ($k, $kid) = make_key($h, org => 'acme');
    get('/api/x', 'X-Api-Key' => $k);
    my $lu = $h->redis('HGET', "{k:$kid}", 'last_used');
    ok(abs($lu - time) < 5, 'last_used set on use');
    my $t = int(time) - 30;
    $h->redis('HSET', "{k:$kid}", 'last_used', $t);
    get('/api/x', 'X-Api-Key' => $k);
    is($h->redis('HGET', "{k:$kid}", 'last_used'), $t,
       'last_used not rewritten within a minute') ;
}

# -- many requests share one connection per worker --------------------------
{
    my $before = $h->redis('INFO', 'stats') =~ /total_connections_received:(\d+)/
                 ? $1 : 0;
    my $port = $h->port;
    my $res = $h->parallel(200, 20, sub {
        my $r = HTTP::Tiny->new(timeout => 10)->get(
            "http://127.0.0.1:$port/api/x", { headers => { 'X-Api-Key' => $key } });
        return $r->{status};
    });
    is(scalar(grep { $_ == 200 } @$res), 200, '200 concurrent requests: all 200');
    my $after = $h->redis('INFO', 'stats') =~ /total_connections_received:(\d+)/
                ? $1 : 0;
    # the INFO calls themselves are the only other connections
    ok($after - $before <= 2,
       'no new Redis connection for the burst (multiplexed)')
        or diag "connections: $before -> $after";
}

# -- the key goes nowhere ---------------------------------------------------
{
    my $dump = join "\n", map {
        my $k = $_;
        my $type = $h->redis('TYPE', $k);
        $type eq 'hash' ? join(' ', $k, $h->redis('HGETALL', $k))
                        : $type eq 'zset' ? join(' ', $k, $h->redis('ZRANGE', $k, 0, -1))
                        : $k
    } $h->redis('KEYS', '*');
    my $logs = $h->error_log . $h->access_log
             . Harness::_slurp($h->dir . '/keys.log')
             . Harness::_slurp($h->dir . '/backend.log');
    for my $k (@all_keys) {
        my ($secret) = $k =~ /_([0-9A-Za-z]+)$/;
        unlike($dump, qr/\Q$secret\E/, 'no secret anywhere in Redis');
        unlike($logs, qr/\Q$secret\E/, 'no secret in nginx or upstream logs');
    }
    like(Harness::_slurp($h->dir . '/keys.log'), qr/id=\Q$id\E/,
         'the key id is logged (the public part)');
}

# -- apikey_pepper: keys stored as HMAC-SHA-256(pepper, key) -----------------
{
    my $n2 = $h->nginx2(<<'EOF', workers => 1);
apikey_pepper "s3cr3t-pepper";
integrations_redis 127.0.0.1:%%REDIS_PORT%% timeout=300ms;
server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        apikey on;
        integrations_whoami;
    }
}
EOF
    my ($pk, $pid) = make_key($h, org => 'peppered',
                              pepper => 's3cr3t-pepper');
    my ($plain) = make_key($h, org => 'peppered');
    my ($other) = make_key($h, org => 'peppered', pepper => 'another');
    my @st = map { $n2->get('/x', { 'X-Api-Key' => $pk })->{status} } 1 .. 5;
    is_deeply(\@st, [ (200) x 5 ],
              'pepper: a key hashed with the pepper is admitted, every time');
    my $j = $h->json($n2->get('/x', { 'X-Api-Key' => $pk }));
    is_deeply([ $j->{org}, $j->{keyId} ], [ 'peppered', $pid ],
              '... as its own organization and key id');
    is($n2->get('/x', { 'X-Api-Key' => $plain })->{status}, 401,
       'pepper: a key stored as plain SHA-256 is refused');
    is($n2->get('/x', { 'X-Api-Key' => $other })->{status}, 401,
       'pepper: a key hashed with another pepper is refused');
    is($n2->get('/x', { 'X-Api-Key' => $pk })->{status}, 200,
       '... and the right one still admitted after refusals');
    is(get('/api/x', 'X-Api-Key' => $pk)->{status}, 401,
       'the same key on the nginx without a pepper: refused');
}

# -- read handlers in locations reached from a keyed one --------------------
{
    my $n3 = $h->nginx2(<<'EOF', workers => 1);
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%/none;
    location /who/ {
        apikey on;
        try_files $uri @who;
    }
    location @who {
        integrations_whoami;
    }
    location /err/ {
        apikey on;
        error_page 404 = /hidden/;
    }
    location /hidden/ {
        internal;
        integrations_whoami;
    }
    location /skip/ {
        apikey on;
        rewrite ^ /hidden/ last;
    }
    location /if/ {
        apikey on;
        if ($http_x_debug) {
            add_header X-Debug 1;
        }
        integrations_whoami;
    }
    location /ifp/ {
        apikey on;
        if ($http_x_legacy) {
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        integrations_whoami;
    }
    location /who2/ {
        apikey on;
        try_files $uri @who2;
    }
    location @who2 {
        if ($http_x_debug) {
            add_header X-Debug 1;
        }
        integrations_whoami;
    }
    location /lx/ {
        apikey on;
        limit_except POST {
            allow 127.0.0.1;
            deny all;
        }
        integrations_whoami;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / {
        return 200 "org=[$http_x_integrations_org] id=[$http_x_integrations_key_id]";
    }
}
EOF
    my ($k, $kid) = make_key($h, org => 'named');
    my $res = $n3->get('/who/x', { 'X-Api-Key' => $k });
    is($res->{status}, 200, 'try_files @named: the read handler answers')
        or diag $res->{content};
    my $j = $h->json($res);
    is_deeply([ $j->{org}, $j->{keyId} ], [ 'named', $kid ],
              '... with the key checked in the location it came from');
    is($n3->get('/who/x')->{status}, 401,
       'try_files @named: no key is still refused');
    $res = $n3->get('/err/x', { 'X-Api-Key' => $k });
    is($res->{status}, 200, 'error_page = internal location: answers');
    is($h->json($res)->{keyId}, $kid, '... for the key checked before');
    # a rewrite runs before the key is read: no identity, and said so
    $res = $n3->get('/skip/x', { 'X-Api-Key' => $k });
    is($res->{status}, 401, 'rewritten before the key check: 401');
    like($res->{headers}{'content-type'}, qr{^application/json},
         '... as JSON');
    like($n3->error_log, qr/no API key identity in this location/,
         '... and the error log says why');
    # an "if" with a content handler of its own keeps it, and the proxied
    # request gets the identity, never the client's own X-Integrations-*
    $res = $n3->get('/ifp/x', { 'X-Api-Key' => $k, 'X-Legacy' => 1,
                                'X-Integrations-Org' => 'evil' });
    is($res->{content}, "org=[named] id=[$kid]",
       'an if that proxies: the backend gets the identity, not the forgery');
    # ... and in a named location, reached from a keyed one
    $res = $n3->get('/who2/x', { 'X-Api-Key' => $k, 'X-Debug' => 1 });
    is($res->{status}, 200, 'a named location with an if: answers');
    is(eval { $h->json($res)->{keyId} }, $kid, '... for the key');
    is($res->{headers}{'x-debug'}, 1, '... with the if block\'s header');
    # limit_except: the methods it restricts get the block's confs
    $res = $n3->get('/lx/x', { 'X-Api-Key' => $k });
    is($res->{status}, 200, 'limit_except in a read location: GET answers');
    is(eval { $h->json($res)->{keyId} }, $kid, '... with the read handler');
    # an "if" that matches runs the handler with the if block's confs
    for my $debug (0, 1) {
        $res = $n3->get('/if/x', { 'X-Api-Key' => $k,
                                   $debug ? ('X-Debug' => 1) : () });
        is($res->{status}, 200, "a location's if, matching: $debug: 200")
            or diag $res->{content};
        is(eval { $h->json($res)->{keyId} }, $kid, '... the handler\'s answer');
        is($res->{headers}{'x-debug'}, $debug ? 1 : undef,
           '... and the if block\'s own directives apply');
    }
}

# -- Redis down, hung, restarted ---------------------------------------------
{
    $h->stop_redis;
    my $t0 = time;
    my $res = get('/api/x', 'X-Api-Key' => $key);
    my $j = is_refusal($res, 503, 'Redis stopped');
    is_deeply($j, { error => 'Service unavailable' }, '503 body');
    is($res->{headers}{'retry-after'}, 1, '503: Retry-After: 1');
    ok(time - $t0 < 1, 'Redis stopped: answered at once');
    is(get('/open/x')->{status}, 200, 'locations without apikey unaffected');

    $h->start_redis;
    make_key($h, org => 'acme', id => $id, random => substr(
        ($key =~ /_([0-9A-Za-z]{38})$/)[0], 0, 32));
    my $ok = 0;
    for (1 .. 40) {
        $ok = get('/api/x', 'X-Api-Key' => $key)->{status} == 200 and last;
        sleep 0.1;
    }
    ok($ok, 'Redis restarted: requests succeed again without reload');

    $h->pause_redis(3);
    $t0 = time;
    $res = get('/api/x', 'X-Api-Key' => $key);
    my $took = time - $t0;
    is($res->{status}, 503, 'Redis hung: 503');
    ok($took >= 0.25 && $took < 1.0, 'Redis hung: answered within the timeout')
        or diag "took $took s";
    $h->resume_redis;
    $ok = 0;
    for (1 .. 40) {
        $ok = get('/api/x', 'X-Api-Key' => $key)->{status} == 200 and last;
        sleep 0.1;
    }
    ok($ok, 'Redis resumed: requests succeed again');
}

# -- an error Redis gives every request is logged once a second ----------
{
    # a record that is not a hash: the script fails on every request
    my ($k, $kid) = make_key($h, org => 'acme');
    $h->redis('DEL', "{k:$kid}");
    $h->redis('SET', "{k:$kid}", 'not a hash');
    my $before = () = $h->error_log =~ /unexpected reply from redis/g;
    my @s = map { get('/api/x', 'X-Api-Key' => $k)->{status} } 1 .. 30;
    is(scalar(grep { $_ == 503 } @s), 30, 'Redis errs each time: 503 each');
    my $lines = (() = $h->error_log =~ /unexpected reply from redis/g)
                - $before;
    ok($lines >= 1 && $lines <= 2, '... logged once a second, not 30 times')
        or diag "$lines lines";
    sleep 1.1;
    is(get('/api/x', 'X-Api-Key' => $k)->{status}, 503, 'a second later');
    like($h->error_log,
         qr/WRONGTYPE.*\(and [1-9]\d* more not logged since the one before\)/,
         '... logged, with how many were not');
    is(get('/api/x', 'X-Api-Key' => $key)->{status}, 200,
       'another key meanwhile: 200');
}

# -- Redis closing an idle connection is no failure -------------------------
{
    is(get('/api/x', 'X-Api-Key' => $key)->{status}, 200,
       'a request before Redis closes idle connections');
    my $errors = () = $h->error_log =~ /\[error\].*connection closed/g;
    $h->redis('CONFIG', 'SET', 'timeout', 1);
    my $closed;
    for (1 .. 60) {
        sleep 0.1;
        $closed = $h->error_log =~ /\[info\].*closed while idle, reconnecting/
            and last;
    }
    $h->redis('CONFIG', 'SET', 'timeout', 0);
    ok($closed, 'Redis closed the idle connection: said at info');
    is(get('/api/x', 'X-Api-Key' => $key)->{status}, 200,
       '... the next request: 200');
    is(scalar(() = $h->error_log =~ /\[error\].*connection closed/g), $errors,
       '... and no error logged for it');
}

unlike($h->error_log, qr/\[(alert|emerg|crit)\]/, 'no alerts in the error log');

$h->done;
done_testing;
