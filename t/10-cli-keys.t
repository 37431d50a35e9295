#!/usr/bin/perl
# integrationsctl keys: create/list/revoke/rotate against a real Redis and
# a real nginx; the 10-key cap under racing creates; only hashes stored.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Harness;

my $h = Harness->new;
my $J = JSON::PP->new;

$h->start_nginx(<<'EOF');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        apikey on;
        apikey_scope events:read;
        proxy_set_header X-Org $apikey_org;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "org=$http_x_org\n"; }
}
EOF

sub create {
    my (@a) = @_;
    my ($rc, $out, $err) = $h->ctl('keys', 'create', @a, '--json');
    return ($rc, $rc == 0 ? $J->decode($out) : undef, $err);
}

sub call { $h->get('/x', { Authorization => "Bearer $_[0]" })->{status} }

my @secrets;

# -- create ----------------------------------------------------------------
my ($rc, $k) = create('--org', 'acme', '--name', 'CRM sync',
                      '--scopes', 'events:read,attendees:read');
is($rc, 0, 'create --json');
like($k->{key}, qr/^qkt_live_[a-z0-9]{8}_[0-9A-Za-z]{38}$/, 'key format');
push @secrets, $k->{key};
is_deeply($k->{scopes}, ['events:read', 'attendees:read'], 'scopes');
is($k->{org}, 'acme', 'org');
is($k->{expires}, undef, 'no expiry');
my $rec = { $h->redis('HGETALL', "{k:$k->{id}}") };
is($rec->{hash}, sha256_hex($k->{key}), 'Redis holds the SHA-256 only');
is($rec->{status}, 'active', 'status active');
is($rec->{scopes}, 'events:read attendees:read', 'scopes space-separated');
is(call($k->{key}), 200, 'the new key works in nginx');

{
    my ($rc2, $out) = $h->ctl('keys', 'create', '--org', 'acme',
                              '--name', 'human');
    is($rc2, 0, 'create (human form)');
    like($out, qr/shown only this once/, 'says it is shown once');
    my ($key) = $out =~ /(qkt_live_\S+)/;
    ok($key, 'prints the key') and push @secrets, $key;
    is(call($key), 200, 'and it works');
}

# -- options --------------------------------------------------------------
{
    my ($r, $t) = create('--org', 'acme', '--name', 't', '--env', 'test',
                         '--expires', '30d', '--allow-ip',
                         '127.0.0.1,10.0.0.0/8', '--rate-limit', '100');
    is($r, 0, 'create with every option');
    push @secrets, $t->{key};
    like($t->{key}, qr/^qkt_test_/, 'test env key');
    ok($t->{expires}, 'expiry set');
    is($t->{rateLimit}, 100, 'rate limit');
    my $tr = { $h->redis('HGETALL', "{k:$t->{id}}") };
    ok(abs($tr->{expires} - (time + 30 * 86400)) < 5, 'expires in 30 days');
    is($tr->{nets}, '00000000000000000000ffff7f000001/128 '
                    . '00000000000000000000ffff0a000000/104',
       'allowlist compiled for the access script');
    is(call($t->{key}), 200, 'allowlisted loopback passes');

    my ($r2, $t2) = create('--org', 'acme', '--name', 'ip',
                           '--allow-ip', '10.0.0.0/8');
    push @secrets, $t2->{key};
    is(call($t2->{key}), 403, 'outside the allowlist: 403');
}

# -- bad input exits 1 -----------------------------------------------------
for my $bad (
    ['--allow-ip', '10.0.0.0/33'], ['--allow-ip', 'nope'],
    ['--expires', 'tomorrow'], ['--expires', '2001-01-01T00:00:00Z'],
    ['--rate-limit', '0'], ['--rate-limit', 'x'], ['--env', 'prod'],
    ['--scopes', 'a,,b'], ['--scopes', 'has space'],
    ['--allow-ip', ',,'], ['--name', "line\nbreak"], ['--name', "nul\x01"],
) {
    my ($r, undef, $err) = create('--org', 'acme', '--name', 'x', @$bad);
    (my $what = "@$bad") =~ s/[\x00-\x1f]/?/g;
    is($r, 1, "create $what: exit 1");
    like($err, qr/^integrationsctl: /, "... with a message");
}
is(($h->ctl('keys', 'create', '--name', 'x'))[0], 1, 'missing --org: 1');
is(($h->ctl('--prefix', 'p' x 65, 'keys', 'create', '--org', 'acme',
            '--name', 'x'))[0], 1,
   'a --prefix longer than 64 (key names would be cut short): 1');
is(($h->ctl('keys', 'create', '--org', 'a}b', '--name', 'x'))[0], 1,
   'org with a brace: 1');
is(($h->ctl('keys', 'revoke', '--org', 'other', $k->{id}))[0], 1,
   'revoke of another organization\'s key: 1');
is(($h->ctl('keys', 'revoke', '--org', 'acme', 'zzzzzzzz'))[0], 1,
   'revoke of an unknown id: 1');
is(($h->ctl('--redis', 'redis://127.0.0.1:1/0', 'keys', 'list',
            '--org', 'acme'))[0], 2, 'Redis down: exit 2');

# -- list ------------------------------------------------------------------
{
    my ($r, $out) = $h->ctl('keys', 'list', '--org', 'acme', '--json');
    is($r, 0, 'list --json');
    my $list = $J->decode($out);
    my ($mine) = grep { $_->{id} eq $k->{id} } @$list;
    is($mine->{name}, 'CRM sync', 'listed with its name');
    is($mine->{status}, 'active', 'and status');
    like($mine->{key}, qr/^qkt_live_\Q$k->{id}\E_/, 'display prefix');
    is_deeply($mine->{scopes}, $k->{scopes}, 'scopes: the array create gave');
    is_deeply($mine->{allowIps}, $k->{allowIps}, 'allowIps as well');
    ok(exists $mine->{rateLimit}, 'and rateLimit');
    is($mine->{rateLimit}, $k->{rateLimit}, '... as create gave it');
    ($r, $out) = $h->ctl('keys', 'list', '--org', 'acme');
    like($out, qr/ID\s+NAME\s+KEY\s+CREATED\s+LAST USED\s+STATUS/, 'table');
    for my $s (@secrets) {
        my ($sec) = $s =~ /_(\w{38})$/;
        unlike($out, qr/\Q$sec\E/, 'list never shows a secret');
    }
}

# -- revoke: the very next request ------------------------------------------
{
    my ($r, $v) = create('--org', 'acme', '--name', 'rev');
    push @secrets, $v->{key};
    is(call($v->{key}), 200, 'before revoke');
    is(($h->ctl('keys', 'revoke', '--org', 'acme', $v->{id}))[0], 0,
       'revoke');
    is(call($v->{key}), 401, 'revoked: the very next request is 401');
    is($h->redis('ZSCORE', '{o:acme}:active', $v->{id}), '',
       'its slot is free');

    # a second nginx node on the same Redis, each with two workers: the
    # revocation is seen by the next request on every node and worker
    my $n2 = $h->nginx2(<<'EOF2', workers => 2);
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location / { apikey on; integrations_whoami; }
}
EOF2
    my (undef, $w) = create('--org', 'acme', '--name', 'two-nodes');
    push @secrets, $w->{key};
    my $node2 = sub {
        $n2->get('/x', { Authorization => "Bearer $w->{key}" })->{status};
    };
    is_deeply([ map { (call($w->{key}), $node2->()) } 1 .. 4 ],
              [ (200) x 8 ], 'two nodes admit the key');
    is(($h->ctl('keys', 'revoke', '--org', 'acme', $w->{id}))[0], 0,
       'revoke');
    is_deeply([ map { (call($w->{key}), $node2->()) } 1 .. 4 ],
              [ (401) x 8 ], 'revoked: 401 on both nodes, every request');
}

# -- rotate -----------------------------------------------------------------
{
    my ($r, $old) = create('--org', 'rot', '--name', 'old',
                           '--scopes', 'events:read');
    push @secrets, $old->{key};
    my ($r2, $out) = $h->ctl('keys', 'rotate', '--org', 'rot', $old->{id},
                             '--grace', '1h', '--json');
    is($r2, 0, 'rotate --grace 1h');
    my $new = $J->decode($out);
    push @secrets, $new->{key};
    isnt($new->{id}, $old->{id}, 'a new key');
    is($new->{name}, 'old', 'same name');
    is_deeply($new->{scopes}, ['events:read'], 'same scopes');
    is(call($old->{key}), 200, 'old key works during the grace period');
    is(call($new->{key}), 200, 'new key works');
    my $exp = $h->redis('HGET', "{k:$old->{id}}", 'expires');
    ok(abs($exp - (time + 3600)) < 5, 'old key expires after the grace');
    is($h->redis('HGET', "{k:$old->{id}}", 'successor'), $new->{id},
       '... and names its successor');

    # a second rotation in the grace period would make a second successor
    my $n0 = $h->redis('ZCARD', '{o:rot}:keys');
    my ($r3, undef, $err3) = $h->ctl('keys', 'rotate', '--org', 'rot',
                                     $old->{id}, '--grace', '1h');
    is($r3, 1, 'rotating the old key again: exit 1');
    like($err3, qr/rotated to \Q$new->{id}\E already/, '... naming its successor');
    is($h->redis('ZCARD', '{o:rot}:keys'), $n0, '... and no key is made');
    is($h->redis('HGET', "{k:$old->{id}}", 'expires'), $exp,
       '... nor its grace changed');

    ($r2, $out) = $h->ctl('keys', 'rotate', '--org', 'rot', $new->{id},
                          '--grace', '0', '--json');
    is($r2, 0, 'rotate --grace 0');
    push @secrets, $J->decode($out)->{key};
    is(call($new->{key}), 401, 'grace 0: the old key stops at once');
}

# -- two rotations of one key at once: one successor ---------------------------
{
    my $both = 0;
    for my $round (1 .. 8) {
        my (undef, $k) = create('--org', 'race2', '--name', "r$round");
        my $res = $h->parallel(2, 2, sub {
            my ($rc) = $h->ctl('keys', 'rotate', '--org', 'race2', $k->{id},
                               '--grace', '1h', '--json');
            return $rc;
        });
        my @rc = sort map { $_ } @$res;
        $both++ if "@rc" eq '0 0';
        my @succ = grep { $_ ne $k->{id} } $h->redis('ZRANGE',
                                                      '{o:race2}:keys', 0, -1);
        my $named = $h->redis('HGET', "{k:$k->{id}}", 'successor');
        my @made = grep { ($h->redis('HGET', "{k:$_}", 'name'))[0] eq "r$round" }
                   @succ;
        is(scalar @made, 1, "round $round: one successor made")
            or diag "exit codes @rc";
        is($named, $made[0], "round $round: ... and the old key names it");
        $h->ctl('keys', 'revoke', '--org', 'race2', $_) for $k->{id}, @made;
    }
    is($both, 0, 'two rotations at once never both succeed');
}

# -- rotate keeps the key's life, takes only --grace ---------------------------
{
    my ($r, $old) = create('--org', 'rot2', '--name', 'dated',
                           '--expires', '7d', '--scopes', 'events:read');
    push @secrets, $old->{key};
    my ($r2, $out, $err) = $h->ctl('keys', 'rotate', '--org', 'rot2',
                                   $old->{id}, '--scopes', 'attendees:read');
    is($r2, 1, 'rotate --scopes: exit 1 (rotate changes the secret only)');
    like($err, qr/keys rotate does not take --scopes/, '... saying so');
    ($r2, $out) = $h->ctl('keys', 'rotate', '--org', 'rot2', $old->{id},
                          '--grace', '0', '--json');
    is($r2, 0, 'rotate a key with an expiry');
    my $new = $J->decode($out);
    push @secrets, $new->{key};
    is($new->{expires}, $old->{expires}, '... the new key keeps its expiry');
    my $old_exp = $h->redis('HGET', "{k:$old->{id}}", 'expires');
    ok($old_exp > time + 6 * 86400, 'the old key had its 7 days');
    is($h->redis('HGET', "{k:$new->{id}}", 'expires'), $old_exp,
       '... and the new key has the same in Redis');

    # an expired key is not brought back to life by a rotation
    $h->redis('HSET', "{k:$new->{id}}", 'expires', time - 5);
    ($r2, undef, $err) = $h->ctl('keys', 'rotate', '--org', 'rot2',
                                 $new->{id});
    is($r2, 1, 'rotate of an expired key: exit 1');
    like($err, qr/has expired/, '... saying so');
    is($h->redis('ZCARD', '{o:rot2}:keys'), 2, '... and no key is made');
}

# -- a second rotation (the successor revoked) keeps the key's own life ------
{
    my ($r, $a) = create('--org', 'rot3', '--name', 'forever',
                         '--key-prefix', 'acme');
    push @secrets, $a->{key};
    my ($r2, $out) = $h->ctl('keys', 'rotate', '--org', 'rot3', $a->{id},
                             '--grace', '1h', '--json');
    is($r2, 0, 'rotate --grace 1h a key that never expires');
    my $b = $J->decode($out);
    push @secrets, $b->{key};
    is($b->{expires}, undef, '... the new key never expires');
    like($b->{key}, qr/^acme_live_/, '... and is written as the old one was');
    is($h->redis('HGET', "{k:$a->{id}}", 'key_expires'), 0,
       '... the old record keeps its own life (0: never)');
    is(($h->ctl('keys', 'revoke', '--org', 'rot3', $b->{id}))[0], 0,
       'the successor revoked (leaked, say)');
    ($r2, $out) = $h->ctl('keys', 'rotate', '--org', 'rot3', $a->{id},
                          '--grace', '1h', '--json');
    is($r2, 0, 'the key rotated again in its grace period');
    my $c = $J->decode($out);
    push @secrets, $c->{key};
    is($c->{expires}, undef, '... its new successor never expires either');
    is($h->redis('HGET', "{k:$c->{id}}", 'expires'), 0, '... (Redis: 0)');
    ok(call($c->{key}) == 200, '... and works');
}

# -- a slot a killed create left is listed, and revoke frees it ------------
{
    my ($r, $k) = create('--org', 'orphan', '--name', 'real');
    push @secrets, $k->{key};
    $h->redis('ZADD', '{o:orphan}:active', '+inf', 'zzzz2222');
    my ($rc, $out) = $h->ctl('keys', 'list', '--org', 'orphan');
    is($rc, 0, 'keys list with a slot held by no record');
    like($out, qr/^zzzz2222 .*unfinished/m, '... lists it as unfinished');
    like($out, qr/^\Q$k->{id}\E .*active/m, '... beside the real key');
    ($rc, $out) = $h->ctl('keys', 'list', '--org', 'orphan', '--json');
    my @u = grep { $_->{status} eq 'unfinished' } @{ $J->decode($out) };
    is_deeply([ map { $_->{id} } @u ], ['zzzz2222'], '... and in --json');
    is(($h->ctl('keys', 'revoke', '--org', 'orphan', 'zzzz2222'))[0], 0,
       'keys revoke of that id');
    is($h->redis('ZCARD', '{o:orphan}:active'), 1, '... frees the slot');
    # a create still writing that id now finds it taken and draws another
    is($h->redis('HGET', '{k:zzzz2222}', 'status'), 'revoked',
       '... leaving a revoked tombstone in its place');
    my $ttl = $h->redis('TTL', '{k:zzzz2222}');
    ok($ttl > 0 && $ttl <= 86400, '... which expires within a day');
    ($rc, $out) = $h->ctl('keys', 'list', '--org', 'orphan');
    unlike($out, qr/unfinished/, '... and the list no longer shows it');
}

# -- a key stored with empty entries in its list still rotates ---------------
{
    my ($r, $k) = create('--org', 'oldips', '--name', 'n',
                         '--allow-ip', '127.0.0.1,10.0.0.2');
    push @secrets, $k->{key};
    # as an older integrationsctl wrote "127.0.0.1,,10.0.0.2"
    $h->redis('HSET', "{k:$k->{id}}", 'ips', '127.0.0.1,,10.0.0.2');
    my ($rc, $out, $err) = $h->ctl('keys', 'rotate', '--org', 'oldips',
                                   $k->{id}, '--grace', '0', '--json');
    is($rc, 0, 'rotate of a key whose ips has an empty entry') or diag $err;
    my $n = $J->decode($out);
    push @secrets, $n->{key};
    is($h->redis('HGET', "{k:$n->{id}}", 'ips'), '127.0.0.1,10.0.0.2',
       '... the new key has the list without it');
}

# -- input the CLI refuses ------------------------------------------------------
{
    my ($r, undef, $err) = create('--org', 'bad', '--name', 'n',
                                  '--allow-ip', '10.0.0.1,,10.0.0.2');
    is($r, 1, '--allow-ip with an empty entry: exit 1');
    like($err, qr/--allow-ip has an empty entry/, '... saying so');
    ($r, undef, $err) = create('--org', 'bad', '--name', 'n',
                               '--expires', '106751991167d');
    is($r, 1, '--expires past 9999: exit 1');
    like($err, qr/--expires is past 9999-12-31T23:59:59Z/, '... saying so');
    ($r, undef, $err) = create('--org', 'bad', '--name', 'n',
                               '--expires', '9999-12-31T23:59:59Z');
    is($r, 0, '... 9999-12-31T23:59:59Z itself is fine') or diag $err;
    ($r, undef, $err) = create('--org', 'bad', '--name', 'n',
                               '--expires', '2030-01-01T00:00:00Z');
    is($r, 0, '... an ISO date, any (no duration read)') or diag $err;
    is($h->redis('ZCARD', '{o:bad}:keys'), 2, 'two keys made of the four');
}

# -- rotate --grace 0 at the cap: the new key takes the old one's slot -------
{
    my @ids = map { (create('--org', 'full', '--name', "k$_"))[1]{id} } 1 .. 10;
    my $fails = 0;
    for my $round (1 .. 4) {
        my $old = shift @ids;
        my $res = $h->parallel(4, 4, sub {
            my ($i) = @_;
            my @c = $i == 0
                ? ('keys', 'rotate', '--org', 'full', $old, '--grace', '0',
                   '--json')
                : ('keys', 'create', '--org', 'full', '--name', 'racer');
            my ($rc, $out) = $h->ctl(@c);
            return $i == 0 ? "$rc " . ($rc == 0 ? $J->decode($out)->{id} : '')
                           : $rc;
        });
        my ($rc, $id) = split / /, $res->[0];
        $fails++ if $rc != 0;
        push @ids, $id if $rc == 0;
        is($h->redis('HGET', "{k:$old}", 'status'),
           $rc == 0 ? 'revoked' : 'active',
           "round $round: the old key is revoked only if its successor exists");
    }
    is($fails, 0, '4 rotations at the cap, racing creates: all succeed');
    is($h->redis('ZCARD', '{o:full}:active'), 10, 'still 10 active');
}

# -- a create cut short leaves no slot behind ---------------------------------
{
    # a Redis user that may write the organization's sets, not records
    $h->redis('ACL', 'SETUSER', 'default', 'resetkeys', '~{o:*');
    my ($r, undef, $err) = create('--org', 'leaky', '--name', 'x');
    $h->redis('ACL', 'SETUSER', 'default', 'allkeys');
    is($r, 2, 'the record cannot be written: exit 2');
    like($err, qr/NOPERM/, '... with Redis\'s error');
    is($h->redis('ZCARD', '{o:leaky}:active'), 0, '... and the slot is given back');
    is($h->redis('ZCARD', '{o:leaky}:keys'), 0, '... and nothing is listed');

    # a slot whose record never came (a create killed half way): revocable
    $h->redis('ZADD', '{o:leaky}:active', '+inf', 'orphan01');
    $h->redis('ZADD', '{o:leaky}:keys', time, 'orphan01');
    my $out;
    ($r, $out) = $h->ctl('keys', 'revoke', '--org', 'leaky', 'orphan01');
    is($r, 0, 'revoke of a slot without a record: exit 0');
    like($out, qr/revoked orphan01/, '... said');
    is($h->redis('ZCARD', '{o:leaky}:active'), 0, '... and the slot is free');
}

# -- the key could not be shown: it is revoked, not left active --------------
SKIP: {
    skip 'no /dev/full', 3 unless -w '/dev/full';
    my $cmd = $h->ctl_shell('keys', 'create', '--org', 'unseen', '--name', 'u',
                            '--json') . ' >/dev/full 2>/dev/null';
    system($cmd);
    is($? >> 8, 1, 'stdout full: exit 1');
    my ($id) = $h->redis('ZRANGE', '{o:unseen}:keys', 0, -1);
    is($h->redis('HGET', "{k:$id}", 'status'), 'revoked',
       '... the key nobody saw is revoked');
    is($h->redis('ZCARD', '{o:unseen}:active'), 0, '... and holds no slot');
}

# -- the reader gone (keys create | head -0): revoked, not killed by SIGPIPE --
{
    my $cmd = $h->ctl_shell('keys', 'create', '--org', 'piped', '--name', 'p');
    pipe(my $rd, my $wr) or die "pipe: $!";
    close $rd;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{PIPE} = 'DEFAULT';
        open STDOUT, '>&', $wr or die;
        open STDERR, '>', '/dev/null' or die;
        exec 'sh', '-c', $cmd;
    }
    close $wr;
    waitpid $pid, 0;
    # sh says a command killed by a signal as 128 + the signal
    ok(!($? & 127) && $? >> 8 != 128 + 13, 'no reader: not killed by SIGPIPE');
    is($? >> 8, 1, '... exit 1');
    my ($id) = $h->redis('ZRANGE', '{o:piped}:keys', 0, -1);
    is($h->redis('HGET', "{k:$id}", 'status'), 'revoked',
       '... the key nobody saw is revoked');
    is($h->redis('ZCARD', '{o:piped}:active'), 0, '... and holds no slot');
}

# -- rotate copies a long allowlist whole ------------------------------------
{
    # over 1 KiB of addresses, the one the tests call from last
    my $ips = join(',', map { sprintf '2001:db8:%x::/48', $_ } 1 .. 80)
            . ',127.0.0.1';
    cmp_ok(length $ips, '>', 1300, 'an allowlist of over 1.3 KB');
    my ($r, $old) = create('--org', 'longip', '--name', 'l',
                           '--scopes', 'events:read', '--allow-ip', $ips);
    is($r, 0, 'create with it');
    push @secrets, $old->{key};
    my ($r2, $out) = $h->ctl('keys', 'rotate', '--org', 'longip', $old->{id},
                             '--grace', '0', '--json');
    is($r2, 0, 'rotate it');
    my $new = $J->decode($out);
    push @secrets, $new->{key};
    my %o = $h->redis('HGETALL', "{k:$old->{id}}");
    my %n = $h->redis('HGETALL', "{k:$new->{id}}");
    is($n{ips}, $ips, '... the successor has the whole list');
    is($n{nets}, $o{nets}, '... and the same networks');
    is(call($new->{key}), 200, '... and works from the last address');
}

# -- revoke by the whole key; a mistyped one is never echoed ------------------
{
    my ($r, $k) = create('--org', 'whole', '--name', 'w');
    push @secrets, $k->{key};
    my ($r2, $out, $err) = $h->ctl('keys', 'revoke', '--org', 'whole',
                                   $k->{key} . 'x');
    is($r2, 1, 'revoke of a mistyped key: exit 1');
    my ($secret) = $k->{key} =~ /_(\w{38})$/;
    unlike($err, qr/\Q$secret\E/, '... the secret is not echoed');
    ($r2, $out) = $h->ctl('keys', 'revoke', '--org', 'whole', $k->{key});
    is($r2, 0, 'revoke by the whole key');
    like($out, qr/^revoked \Q$k->{id}\E$/m, '... names only its id');
    is(call($k->{key}), 401, '... and it is revoked');
}

# -- options a command does not read, a name that is not text ----------------
{
    my ($r, undef, $err) = $h->ctl('keys', 'list', '--org', 'acme',
                                   '--expires', '1d');
    is($r, 1, 'keys list --expires: exit 1');
    like($err, qr/keys list does not take --expires/, '... saying so');
    ($r, undef, $err) = $h->ctl('keys', 'create', '--org', 'acme', '--name',
                                'n', '--allow-ip', '');
    is($r, 1, '--allow-ip "": exit 1 (no address would allow every one)');
    like($err, qr/--allow-ip names no address/, '... saying so');
    ($r, undef, $err) = $h->ctl('keys', 'create', '--org', 'acme', '--name',
                                "caf\xe9");
    is($r, 1, 'a --name that is not UTF-8: exit 1');
    like($err, qr/not UTF-8/, '... saying so');
}

# -- the cap holds under racing creates --------------------------------------
{
    my $res = $h->parallel(25, 25, sub {
        my ($rc) = $h->ctl('keys', 'create', '--org', 'race', '--name', 'r');
        return $rc;
    });
    is(scalar(grep { $_ == 0 } @$res), 10, '25 racing creates: 10 succeed');
    is(scalar(grep { $_ == 1 } @$res), 15, 'and 15 are refused (exit 1)');
    is($h->redis('ZCARD', '{o:race}:active'), 10, '10 active in Redis');
    my ($r, undef, $err) = create('--org', 'race', '--name', 'one more');
    like($err, qr/already has 10 active keys/, 'the refusal says why');

    # an expired key frees its slot
    my ($id) = $h->redis('ZRANGE', '{o:race}:active', 0, 0);
    $h->redis('ZADD', '{o:race}:active', time - 1, $id);
    ($r) = create('--org', 'race', '--name', 'after expiry');
    is($r, 0, 'an expired key frees a slot');
}

# -- pepper ------------------------------------------------------------------
{
    my ($r, $out) = $h->ctl('--pepper', 's3', 'keys', 'create', '--org', 'p',
                            '--name', 'p', '--json');
    my $p = $J->decode($out);
    is($h->redis('HGET', "{k:$p->{id}}", 'hash'), hmac_sha256_hex($p->{key}, 's3'),
       '--pepper stores HMAC-SHA-256');
}

# -- no secret anywhere in Redis -----------------------------------------------
{
    my $dump = join "\n", map {
        my $key = $_;
        my $t = $h->redis('TYPE', $key);
        $t eq 'hash' ? join(' ', $key, $h->redis('HGETALL', $key))
                     : join(' ', $key, $h->redis('ZRANGE', $key, 0, -1))
    } $h->redis('KEYS', '*');
    my $leaks = grep { my ($s) = /_(\w{38})$/; $dump =~ /\Q$s\E/ } @secrets;
    is($leaks, 0, 'no secret stored anywhere in Redis (' . @secrets
                  . ' keys checked)');
}

$h->done;
done_testing;
