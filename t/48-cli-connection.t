#!/usr/bin/perl
# integrationsctl's connection options: --redis unix:/path, a password, a
# database number, --prefix; each lands where an nginx configured the same
# way reads it (and only there). Exit 2 on every Redis error; --expires
# with an ISO-8601 time; list shows revoked and expired keys as such.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha256_hex);
use Harness;

my $J = JSON::PP->new->utf8->canonical;
my $h = Harness->new;

# the same server block for every nginx: keyed echo of the org, the events
my $server = <<'EOF';
server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        apikey on;
        proxy_set_header X-Org $apikey_org;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /events {
        apikey on;
        integrations_events;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "org=$http_x_org\n"; }
}
EOF

# this harness's nginx reads under a prefix; two more read db 0 over the
# unix socket and db 5 over TCP, without a prefix
$h->start_nginx("integrations_redis 127.0.0.1:%%REDIS_PORT%% "
                . "prefix=tenantA:;\n$server");
my $n0 = $h->nginx2("integrations_redis unix:%%REDIS_SOCK%%;\n$server");
my $n5 = $h->nginx2("integrations_redis 127.0.0.1:%%REDIS_PORT%% db=5;\n"
                    . $server);

my $tcp = 'redis://127.0.0.1:' . $h->redis_port;

sub create {
    my ($hh, $global, @a) = @_;
    my ($rc, $out, $err) = $hh->ctl(@$global, 'keys', 'create', '--name', 'c',
                                    @a, '--json');
    return ($rc, $rc == 0 ? eval { $J->decode($out) } : undef, $err);
}

sub list {
    my ($hh, @a) = @_;
    my ($rc, $out, $err) = $hh->ctl(@a, 'keys', 'list', '--json');
    my $l = $rc == 0 ? eval { $J->decode($out) } : undef;
    diag("keys list: $rc $err $@") unless ref $l;
    return $l;
}

sub call {
    my ($nginx, $key, $path) = @_;
    return $nginx->get($path // '/x', { 'X-Api-Key' => $key });
}

# the body as JSON, or {} (so that a wrong body fails a test, not the file)
sub jbody { my $j = eval { $h->json($_[0]) }; ref $j ? $j : {} }

sub nd { join '', map { $J->encode($_) . "\n" } @_ }

my $event = { kind => 'event', id => 7, slug => 'fest', title => 'Fest',
              starts => '2026-09-01T19:00:00Z', status => 'approved' };
my $ev7 = sprintf '%020d', 7;

# -- --redis unix:/path --------------------------------------------------------
{
    my @u = ('--redis', 'unix:' . $h->redis_sock);
    my ($rc, $k, $err) = create($h, \@u, '--org', 'uni');
    is($rc, 0, 'unix socket: keys create') or diag $err;
    is($h->redis('HGET', "{k:$k->{id}}", 'hash'), sha256_hex($k->{key}),
       'unix socket: the record is in the harness Redis, db 0');
    my $r = call($n0, $k->{key});
    is($r->{status}, 200, 'unix socket: nginx on the same Redis accepts it');
    is($r->{content}, "org=uni\n", '... as org uni');
    is_deeply([ map { $_->{id} } @{ list($h, @u, '--org', 'uni') || [] } ],
              [ $k->{id} ], 'unix socket: keys list');

    ($rc, undef, $err) = $h->ctl_stdin(nd($event), @u, 'data', 'import',
                                       '--org', 'uni', '-');
    is($rc, 0, 'unix socket: data import') or diag $err;
    is($h->redis('HGET', '{o:uni}:live:slugs', 'fest'), $ev7,
       'unix socket: the event is in Redis');
    is(jbody(call($n0, $k->{key}, '/events'))->{items}[0]{slug}, 'fest',
       'unix socket: and nginx lists it');
    ($rc, undef, $err) = $h->ctl(@u, 'data', 'delete', '--org', 'uni',
                                 '--event', 'fest');
    is($rc, 0, 'unix socket: data delete') or diag $err;
    is($h->redis('HEXISTS', '{o:uni}:live:slugs', 'fest'), 0,
       'unix socket: the event is gone');
}

# -- a database number ---------------------------------------------------------
{
    my @d = ('--redis', "$tcp/5");
    my ($rc, $k, $err) = create($h, \@d, '--org', 'dbn');
    is($rc, 0, 'db 5: keys create') or diag $err;
    is($h->redis('-n', 5, 'HGET', "{k:$k->{id}}", 'org'), 'dbn',
       'db 5: the record is in db 5');
    is($h->redis('-n', 5, 'ZCARD', '{o:dbn}:active'), 1,
       'db 5: the active slot is in db 5');
    is($h->redis('EXISTS', "{k:$k->{id}}", '{o:dbn}:active', '{o:dbn}:keys'),
       0, 'db 5: nothing in db 0');
    is(call($n5, $k->{key})->{status}, 200, 'db 5: nginx with db=5 accepts it');
    is(call($n0, $k->{key})->{status}, 401, 'db 5: nginx on db 0: 401');
    is(scalar @{ list($h, @d, '--org', 'dbn') || [] }, 1,
       'db 5: keys list .../5 finds it');
    is_deeply(list($h, '--redis', "$tcp/0", '--org', 'dbn'), [],
              'db 5: keys list .../0 does not');

    ($rc, undef, $err) = $h->ctl_stdin(nd($event), @d, 'data', 'import',
                                       '--org', 'dbn', '-');
    is($rc, 0, 'db 5: data import') or diag $err;
    is($h->redis('-n', 5, 'HGET', '{o:dbn}:live:slugs', 'fest'), $ev7,
       'db 5: the event is in db 5');
    is(scalar(grep { /\{o:dbn\}/ } $h->redis('KEYS', '*')), 0,
       'db 5: no key of org dbn in db 0');
    is(jbody(call($n5, $k->{key}, '/events'))->{items}[0]{slug}, 'fest',
       'db 5: nginx with db=5 lists the event');

    ($rc, undef, $err) = $h->ctl('--redis', "$tcp/99", 'keys', 'list',
                                 '--org', 'dbn');
    is($rc, 2, 'db 99 (out of range): exit 2');
    like($err, qr/SELECT 99 failed/, '... saying SELECT failed');
}

# -- --prefix ------------------------------------------------------------------
{
    my @p = ('--prefix', 'tenantA:');
    my ($rc, $k, $err) = create($h, \@p, '--org', 'pre');
    is($rc, 0, '--prefix: keys create') or diag $err;
    is($h->redis('HGET', "tenantA:{k:$k->{id}}", 'org'), 'pre',
       '--prefix: the record is under the prefix');
    is($h->redis('ZCARD', 'tenantA:{o:pre}:active'), 1,
       '--prefix: the active slot is under the prefix');
    is($h->redis('EXISTS', "{k:$k->{id}}", '{o:pre}:active', '{o:pre}:keys'),
       0, '--prefix: nothing without the prefix');
    my $r = call($h, $k->{key});
    is($r->{status}, 200, '--prefix: nginx with prefix=tenantA: accepts it');
    is($r->{content}, "org=pre\n", '... as org pre');
    is(call($n0, $k->{key})->{status}, 401,
       '--prefix: nginx without the prefix does not find it: 401');
    is(scalar @{ list($h, @p, '--org', 'pre') || [] }, 1,
       '--prefix: keys list with the prefix finds it');
    is_deeply(list($h, '--org', 'pre'), [],
              '--prefix: keys list without it does not');

    ($rc, undef, $err) = $h->ctl_stdin(nd($event), @p, 'data', 'import',
                                       '--org', 'pre', '-');
    is($rc, 0, '--prefix: data import') or diag $err;
    is($h->redis('HGET', 'tenantA:{o:pre}:live:slugs', 'fest'), $ev7,
       '--prefix: the event is under the prefix');
    is(scalar(grep { /^\{o:pre\}/ } $h->redis('KEYS', '*')), 0,
       '--prefix: no data key without the prefix');
    is(jbody(call($h, $k->{key}, '/events'))->{items}[0]{slug}, 'fest',
       '--prefix: nginx with the prefix lists the event');

    is(($h->ctl('keys', 'revoke', '--org', 'pre', $k->{id}))[0], 1,
       '--prefix: revoke without the prefix: unknown id, exit 1');
    is(call($h, $k->{key})->{status}, 200, '... and the key still works');
    is(($h->ctl(@p, 'keys', 'revoke', '--org', 'pre', $k->{id}))[0], 0,
       '--prefix: revoke with the prefix');
    is(call($h, $k->{key})->{status}, 401, '... and the key is refused');

    is(($h->ctl('--prefix', 'a{b', 'keys', 'list', '--org', 'pre'))[0], 1,
       '--prefix with a brace: exit 1');
}

# -- a password ----------------------------------------------------------------
{
    my $p = Harness->new(redis_args => ['--requirepass', 'hunter2']);
    $p->start_nginx("integrations_redis 127.0.0.1:%%REDIS_PORT%% "
                    . "password=hunter2 db=2;\n$server");
    my $base = '127.0.0.1:' . $p->redis_port;
    my @pw = ('--redis', "redis://:hunter2\@$base/2");

    my ($rc, $k, $err) = create($p, \@pw, '--org', 'pw');
    is($rc, 0, 'password + db 2: keys create') or diag $err;
    is($p->redis('-n', 2, 'HGET', "{k:$k->{id}}", 'org'), 'pw',
       'password + db 2: the record is in db 2');
    is($p->redis('DBSIZE'), 0, 'password + db 2: db 0 is empty');
    is(call($p, $k->{key})->{status}, 200,
       'password + db 2: nginx with password= db=2 accepts it');

    ($rc, undef, $err) = $p->ctl_stdin(nd($event), @pw, 'data', 'import',
                                       '--org', 'pw', '-');
    is($rc, 0, 'password + db 2: data import') or diag $err;
    is($p->redis('-n', 2, 'HGET', '{o:pw}:live:slugs', 'fest'), $ev7,
       'password + db 2: the event is in db 2');

    my $size = $p->redis('-n', 2, 'DBSIZE');
    ($rc, undef, $err) = create($p, [ '--redis', "redis://:wrong\@$base/2" ],
                                '--org', 'pw');
    is($rc, 2, 'wrong password: exit 2');
    like($err, qr/AUTH failed/, '... saying AUTH failed');
    unlike($err, qr/hunter2/, '... without the real password');
    ($rc, undef, $err) = create($p, [ '--redis', "redis://$base/2" ],
                                '--org', 'pw');
    is($rc, 2, 'no password to a Redis that wants one: exit 2');
    like($err, qr/NOAUTH|Authentication required/i, '... saying why');
    ($rc) = $p->ctl_stdin(nd($event), '--redis', "redis://:wrong\@$base/2",
                          'data', 'import', '--org', 'pw', '-');
    is($rc, 2, 'wrong password: data import exit 2');
    is($p->redis('-n', 2, 'DBSIZE'), $size, 'nothing written by the refusals');

    # a Redis 6 ACL user: AUTH user password (%XX-escaped in the URL)
    $p->redis('ACL', 'SETUSER', 'ops@x', 'on', '>s3 cret', '~*', '&*',
              '+@all');
    ($rc, $k, $err) = create($p, [ '--redis', "redis://ops%40x:s3%20cret\@$base/2" ],
                             '--org', 'acl');
    is($rc, 0, 'an ACL user: keys create') or diag $err;
    is($p->redis('-n', 2, 'HGET', "{k:$k->{id}}", 'org'), 'acl',
       '... written as that user');
    ($rc, undef, $err) = create($p, [ '--redis', "redis://ops%40x:hunter2\@$base/2" ],
                                '--org', 'acl');
    is($rc, 2, 'an ACL user with the default user\'s password: exit 2');
    like($err, qr/AUTH failed/, '... AUTH failed (the user was sent)');

    # ... and nginx as that user: integrations_redis user= password=
    my $n2 = $p->nginx2("integrations_redis 127.0.0.1:%%REDIS_PORT%% "
                        . "user=ops\@x \"password=s3 cret\" db=2;\n$server");
    is(call($n2, $k->{key})->{status}, 200,
       'nginx with user= password=: the ACL user checks the key');
    my $n3 = $p->nginx2("integrations_redis 127.0.0.1:%%REDIS_PORT%% "
                        . "user=ops\@x password=hunter2 db=2 timeout=300ms;"
                        . "\n$server");
    is(call($n3, $k->{key})->{status}, 503,
       '... and with the default user\'s password: 503 (the user was sent)');

    # the unix socket takes the password and the database as parameters
    my $sock = 'unix:' . $p->redis_sock;
    ($rc, $k, $err) = create($p, [ '--redis', "$sock?db=2&password=hunter2" ],
                             '--org', 'pwu');
    is($rc, 0, 'unix socket + password + db 2: keys create') or diag $err;
    is($p->redis('-n', 2, 'HGET', "{k:$k->{id}}", 'org'), 'pwu',
       '... the record is in db 2');
    is(call($p, $k->{key})->{status}, 200, '... and nginx accepts it');
    ($rc, undef, $err) = create($p, [ '--redis', "$sock?password=wrong" ],
                                '--org', 'pwu');
    is($rc, 2, 'unix socket, wrong password: exit 2');
    like($err, qr/AUTH failed/, '... saying AUTH failed');
    ($rc, undef, $err) = create($p, [ '--redis', "$sock?pasword=hunter2" ],
                                '--org', 'pwu');
    is($rc, 1, 'unix socket, unknown parameter: exit 1');
    like($err, qr/takes \?db=N and &password=P/, '... saying what it takes');
    unlike($err, qr/hunter2/, '... without the password');
    $size = $p->redis('-n', 2, 'DBSIZE');
    ($rc, undef, $err) = create($p, [ '--redis', "$sock?db=x" ], '--org', 'x');
    is($rc, 1, 'unix socket, db=x: exit 1');
    is($p->redis('-n', 2, 'DBSIZE'), $size, '... nothing written');

    # redis://: a database or port that is not a number is refused (the
    # database read as 0 wrote into another one)
    my $at = '127.0.0.1:' . $p->redis_port;
    $size = $p->redis('DBSIZE');
    for my $bad ("redis://$at/abc", "redis://$at/2x",
                 'redis://127.0.0.1:99999/0', 'redis://127.0.0.1:x/0') {
        ($rc, undef, $err) = create($p, [ '--redis', $bad ], '--org', 'u');
        is($rc, 1, "$bad: exit 1");
        like($err, qr/must be (a number|1-65535)/, '... saying what it must be');
    }
    is($p->redis('DBSIZE'), $size, '... nothing written');

    # an address that cannot be reached is named without its password
    ($rc, undef, $err) = create($p,
        [ '--redis', 'redis://:hunter2@127.0.0.1:1/0' ], '--org', 'pw');
    is($rc, 2, 'unreachable, with a password: exit 2');
    like($err, qr/cannot connect to Redis/, '... saying so');
    unlike($err, qr/hunter2/, '... without the password');
    $p->done;
}

# -- a password with URL characters, percent-encoded ---------------------------
{
    my $p = Harness->new(redis_args => ['--requirepass', 'p@ss&w/rd%']);
    my $enc = 'p%40ss%26w%2Frd%25';
    my $base = '127.0.0.1:' . $p->redis_port;
    my ($rc, $k, $err) = create($p, [ '--redis', "redis://:$enc\@$base/0" ],
                                '--org', 'esc');
    is($rc, 0, 'redis://, password with @ & / %: percent-encoded, accepted')
        or diag $err;
    is($p->redis('HGET', "{k:$k->{id}}", 'org'), 'esc', '... the record');
    ($rc, $k, $err) = create($p,
        [ '--redis', 'unix:' . $p->redis_sock . "?password=$enc" ],
        '--org', 'esc');
    is($rc, 0, 'unix:, the same password percent-encoded') or diag $err;
    ($rc, undef, $err) = create($p, [ '--redis', "redis://:p%4\@$base/0" ],
                                '--org', 'esc');
    is($rc, 1, 'a bad %XX escape: exit 1');
    like($err, qr/bad %XX escape/, '... saying so');
    $p->done;
}

# -- Redis unreachable: exit 2 -------------------------------------------------
{
    my $dead = $h->dir . '/no-such.sock';
    for my $url ('redis://127.0.0.1:1/0', "unix:$dead") {
        my ($rc, $out, $err) = $h->ctl_stdin(nd($event), '--redis', $url,
                                             'data', 'import', '--org', 'x',
                                             '-');
        is($rc, 2, "data import, $url unreachable: exit 2");
        like($err, qr/cannot connect to Redis/, '... saying so');
        ($rc, $out, $err) = $h->ctl('--redis', $url, 'data', 'delete',
                                    '--org', 'x', '--event', 'fest');
        is($rc, 2, "data delete, $url unreachable: exit 2");
        like($err, qr/cannot connect to Redis/, '... saying so');
    }
}

# -- --expires ISO-8601; list shows status -------------------------------------
{
    # 4 s ahead, written in +02:00: the same instant as ...Z
    my $t = int(time) + 4;
    my $iso_z = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $t);
    my $iso_2 = strftime('%Y-%m-%dT%H:%M:%S+02:00', gmtime($t + 7200));
    my @db0 = ('--redis', "unix:" . $h->redis_sock);
    my ($rc, $k, $err) = create($h, \@db0, '--org', 'exp',
                                '--expires', $iso_2);
    is($rc, 0, "--expires $iso_2") or diag $err;
    is($k->{expires}, $iso_z, '... printed as the same instant in UTC');
    is($h->redis('HGET', "{k:$k->{id}}", 'expires'), $t,
       '... stored as that epoch second');
    is($h->redis('ZSCORE', '{o:exp}:active', $k->{id}), $t,
       '... and its active slot ends then');
    is(call($n0, $k->{key})->{status}, 200, 'the key works before it expires');
    my ($l) = grep { $_->{id} eq $k->{id} } @{ list($h, @db0, '--org', 'exp')
                                               || [] };
    is($l->{expires}, $iso_z, 'keys list --json shows the expiry');
    is($l->{status}, 'active', '... and status active');

    my ($far) = (create($h, \@db0, '--org', 'exp',
                        '--expires', '2099-01-02T03:04:05Z'))[1];
    is($far->{expires}, '2099-01-02T03:04:05Z', 'a far ISO-8601 expiry');
    my ($rev) = (create($h, \@db0, '--org', 'exp'))[1];
    is(($h->ctl(@db0, 'keys', 'revoke', '--org', 'exp', $rev->{id}))[0], 0,
       'revoke');

    sleep($t + 1.2 - time) if $t + 1.2 > time;
    my $r = call($n0, $k->{key});
    is($r->{status}, 401, 'after its ISO-8601 expiry: 401');
    like(jbody($r)->{hint} // '', qr/expired/, '... because it expired');

    my %st = map { $_->{id} => $_->{status} }
             @{ list($h, @db0, '--org', 'exp') || [] };
    is_deeply(\%st, { $k->{id} => 'expired', $far->{id} => 'active',
                      $rev->{id} => 'revoked' },
              'keys list --json: expired, active, revoked');
    (undef, my $table) = $h->ctl(@db0, 'keys', 'list', '--org', 'exp');
    like($table, qr/^\Q$rev->{id}\E\s.*\srevoked\s/m,
         'keys list: the revoked key\'s row says revoked');
    like($table, qr/^\Q$k->{id}\E\s.*\sexpired\s/m,
         'keys list: the expired key\'s row says expired');
    like($table, qr/^\Q$far->{id}\E\s.*\sactive\s/m,
         'keys list: the other key\'s row says active');
}

$h->done;
done_testing;
