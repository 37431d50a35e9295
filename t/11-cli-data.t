#!/usr/bin/perl
# integrationsctl data import/delete: the documented Redis layout, index
# moves on update, deletions, idempotence, bad lines reported by number
# with nothing written, test vs live apart, flat memory on a large file.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Harness;

my $h = Harness->new;
my $J = JSON::PP->new->canonical;
my $D = '{o:acme}:live';
my $E = "$D:ev:00000000000000000007";
my $m = sub { sprintf '%020d', $_[0] };

sub nd { join '', map { (ref $_ ? $J->encode($_) : $_) . "\n" } @_ }

sub import_ok {
    my ($text, @a) = @_;
    my ($rc, $out, $err) = $h->ctl_stdin($text, 'data', 'import',
                                         '--org', 'acme', @a, '-');
    is($rc, 0, 'import') or diag $err;
    return $err;
}

my $event = { kind => 'event', id => 7, slug => 'fest', title => 'Fest "7"',
              starts => '2026-09-01T19:00:00Z', ends => '2026-09-01T23:00:00Z',
              status => 'approved', published => JSON::PP::true,
              passCount => 2, revenue => 10.5, venueName => 'Hall',
              ticketTypes => [{ id => 1, name => 'GA', price => 2500,
                                quantity => 10 }],
              availability => { eventId => 7, available => 8 },
              eventFields => [{ id => 1, name => 'Company' }],
              categoryFields => [], updated => '2026-08-30T00:00:00Z' };
my @att = map {
    { kind => 'attendee', event => 'fest', id => $_, name => "Person $_",
      email => "p$_\@x.org", phone => "+2782$_", reference => "R$_",
      createdTime => sprintf('2026-08-%02dT10:00:00Z', $_),
      promo => ($_ == 2 ? JSON::PP::true : JSON::PP::false),
      scanned => ($_ == 1 ? JSON::PP::true : JSON::PP::false),
      categoryId => 5, category => 'GA', amount => 25, paid => JSON::PP::true,
      customFields => {}, updated => '2026-08-20T00:00:00Z' }
} 1 .. 3;

my $err = import_ok(nd($event, @att));
like($err, qr/imported: 1 events, 3 attendees, 0 deletions/, 'summary');

# -- the layout --------------------------------------------------------------
is_deeply([$h->redis('ZRANGE', "$D:events", 0, -1, 'WITHSCORES')],
          [$m->(7), 1788289200], 'events by starts');
is($h->redis('HGET', "$D:slugs", 'fest'), $m->(7), 'slug -> id');
is($h->redis('HGET', $E, 'item'),
   '{"id":7,"slug":"fest","title":"Fest \"7\"","starts":"2026-09-01T19:00:00Z",'
   . '"ends":"2026-09-01T23:00:00Z","status":"approved","published":true,'
   . '"passCount":2,"revenue":10.5,"updated":' . $J->encode(
       $J->decode($h->redis('HGET', $E, 'item'))->{updated}) . '}',
   'event item JSON in the documented order');
is($h->redis('HGET', "$D:items", $m->(7)), $h->redis('HGET', $E, 'item'),
   'D:items holds the same item (one HMGET per events page)');
my $detail = $J->decode($h->redis('HGET', $E, 'detail'));
is($detail->{venueName}, 'Hall', 'detail keeps other fields');
is($detail->{ticketTypes}[0]{price}, 2500, 'detail carries ticket types');
ok(!exists $detail->{availability}, 'availability is not in the detail');
is($h->redis('HGET', $E, 'search'), "fest \"7\"\nfest", 'search text');
is($h->redis('HGET', $E, 'published'), 1, 'published flag');
is($J->decode($h->redis('HGET', $E, 'av'))->{available}, 8, 'availability');
is_deeply([$h->redis('ZRANGE', "$E:att", 0, -1)], [map { $m->($_) } 1 .. 3],
          'attendees by createdTime');
is($h->redis('HGET', "$E:ai", $m->(1)),
   '{"id":1,"name":"Person 1","email":"p1@x.org","phone":"+27821",'
   . '"createdTime":"2026-08-01T10:00:00Z","promo":false,"scanned":true,'
   . '"reference":"R1","identifier":null,"category":"GA","categoryId":5,'
   . '"amount":25,"paid":true,"customFields":{},'
   . '"updated":"2026-08-20T00:00:00Z"}',
   'attendee item JSON in the documented order, absent fields null');
is($h->redis('HGET', "$E:as", $m->(1)), "person 1\np1\@x.org\n+27821\nr1",
   'attendee search text');
is_deeply([$h->redis('ZRANGE', "$E:s1", 0, -1)], [$m->(1)], 'scanned index');
is_deeply([$h->redis('ZRANGE', "$E:s0", 0, -1)], [$m->(2), $m->(3)],
          'not-scanned index');
is_deeply([$h->redis('ZRANGE', "$E:p1", 0, -1)], [$m->(2)], 'promo index');
is($h->redis('ZCARD', "$E:c:5"), 3, 'category index');
is_deeply([$h->redis('SMEMBERS', "$E:cats")], [5],
          'the categories the event has sets for');
is($h->redis('ZSCORE', "$E:upd", $m->(1)), 1787184000, 'updated index');
is($h->redis('HGET', "$E:am", $m->(1)), '10:5', 'index memberships');

# -- idempotent -----------------------------------------------------------------
my $snap = sub {
    join "\n", map {
        my $k = $_;
        my $t = $h->redis('TYPE', $k);
        $t eq 'hash' ? join(' ', $k, sort $h->redis('HGETALL', $k))
      : $t eq 'set'  ? join(' ', $k, sort $h->redis('SMEMBERS', $k))
                     : join(' ', $k, $h->redis('ZRANGE', $k, 0, -1, 'WITHSCORES'))
    } sort $h->redis('KEYS', '*');
};
my $before = $snap->();
import_ok(nd($event, @att));
is($snap->(), $before, 'importing the same file again changes nothing');
{
    # a line without "updated" is stamped with Redis's time of its write
    my %e = %$event;
    delete $e{updated};
    my ($t0) = $h->redis('TIME');
    import_ok(nd(\%e));
    my ($t1) = $h->redis('TIME');
    my $u = $J->decode($h->redis('HGET', $E, 'item'))->{updated};
    like($u, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
         'updated stamped, to the millisecond');
    is($J->decode($h->redis('HGET', $E, 'detail'))->{updated}, $u,
       '... the detail the same');
    my $score = $h->redis('HGET', $E, 'updated');
    my @t = gmtime int $score;
    is(sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', $t[5] + 1900,
               $t[4] + 1, @t[3, 2, 1, 0],
               int(($score - int $score) * 1000 + 0.5)),
       $u, '... the updated_since score the same time');
    ok($score >= $t0 && $score <= $t1 + 1, '... during the import');
    # "updated": null is stamped as well (it was written as "", which
    # Redis refused half way through the line's writes)
    $e{updated} = undef;
    $e{title} = 'Fest null';
    import_ok(nd(\%e));
    like($J->decode($h->redis('HGET', $E, 'item'))->{updated},
         qr/^\d{4}-.*\.\d{3}Z$/, '"updated": null is stamped');

    # the forms the API's filters read are imported too
    my $at = $h->redis('HGET', $E, 'starts');
    for my $st ('2026-09-01T21:00:00+02', '2026-09-01T21:00:00+0200',
                '2026-09-01T19:00:00,0Z', '2026-09-01T14:30-04:30')
    {
        import_ok(nd({ %$event, starts => $st }));
        is($h->redis('HGET', $E, 'starts'), $at, "starts $st");
    }
    import_ok(nd($event));
}

# -- an update moves an attendee between indexes ---------------------------------
import_ok(nd({ %{ $att[0] }, scanned => JSON::PP::false,
               promo => JSON::PP::true, categoryId => 6 }));
is($h->redis('ZSCORE', "$E:s1", $m->(1)), '', 'left scanned=true');
ok($h->redis('ZSCORE', "$E:s0", $m->(1)), 'now in scanned=false');
ok($h->redis('ZSCORE', "$E:p1", $m->(1)), 'now promo');
is($h->redis('ZSCORE', "$E:p0", $m->(1)), '', 'left promo=false');
is($h->redis('ZSCORE', "$E:c:5", $m->(1)), '', 'left category 5');
ok($h->redis('ZSCORE', "$E:c:6", $m->(1)), 'now category 6');
is_deeply([sort $h->redis('SMEMBERS', "$E:cats")], [5, 6],
          '... and category 6 is known to the event');

# an event line without ticketTypes keeps them
{
    my %e = %$event;
    delete @e{qw(ticketTypes availability eventFields categoryFields)};
    $e{title} = 'Fest renamed';
    import_ok(nd(\%e));
    my $d = $J->decode($h->redis('HGET', $E, 'detail'));
    is($d->{title}, 'Fest renamed', 'event updated');
    is($d->{ticketTypes}[0]{name}, 'GA', 'absent ticketTypes kept');
    ok($h->redis('HGET', $E, 'av'), 'absent availability kept');
}

# -- delete_attendee ------------------------------------------------------------
import_ok(nd({ kind => 'delete_attendee', event => 'fest', id => 2 }));
for my $k ("$E:att", "$E:s0", "$E:p1", "$E:c:5", "$E:upd") {
    is($h->redis('ZSCORE', $k, $m->(2)), '', "deleted attendee gone from $k");
}
is($h->redis('HEXISTS', "$E:ai", $m->(2)), 0, 'and its item');

# -- bad lines: reported by number, nothing written ------------------------------
{
    my $dbsize = $h->redis('DBSIZE');
    my $keys_before = $snap->();
    my $text = nd(
        { kind => 'event', id => 8, slug => 'other', title => 'O',
          starts => '2026-10-01T10:00:00Z' },
        { kind => 'attendee', event => 'other', id => 100,
          createdTime => '2026-09-01T00:00:00Z' },
        '{"kind":"attendee", broken',
        { kind => 'attendee', event => 'other', id => 101,
          createdTime => '2026-09-01T00:00:00Z' },
        '',
        { kind => 'attendee', event => 'nope', id => 102,
          createdTime => '2026-09-01T00:00:00Z' },
        { kind => 'attendee', event => 'other', id => 103,
          createdTime => 'yesterday' },
        { kind => 'event', id => 9, slug => 'fest', title => 'dup',
          starts => '2026-10-01T10:00:00Z' },
        { kind => 'ticket', id => 1 },
        "{\"kind\":\"attendee\",\"event\":\"other\",\"id\":104,"
            . "\"name\":\"\xff\xfe\",\"createdTime\":\"2026-09-01T00:00:00Z\"}",
        { kind => 'attendee', event => 'other', id => -1, scanned => 'yes',
          createdTime => '2026-09-01T00:00:00Z' },
        { kind => 'event', id => 10, slug => 'pub', title => 'P',
          starts => '2026-10-01T10:00:00Z', published => 'true' },
        { kind => 'event', id => 11, slug => 'zone', title => 'Z',
          starts => '2026-10-01T10:00:00+24:00' },
        "\0{\"kind\":\"event\",\"id\":\"garbage\"}",
        { kind => 'attendee', event => 'other', id => 105, name => 'x' x 1100000,
          createdTime => '2026-09-01T00:00:00Z' },
        { kind => 'attendee', event => 'other', id => 106, name => 5,
          createdTime => '2026-09-01T00:00:00Z' },
    );
    my ($rc, $out, $err) = $h->ctl_stdin($text, 'data', 'import',
                                         '--org', 'acme', '-');
    is($rc, 1, 'bad input: exit 1');
    like($err, qr/line 3: invalid JSON/, 'line 3: invalid JSON');
    like($err, qr/line 6: unknown event "nope"/, 'line 6: unknown event');
    like($err, qr/line 7: "createdTime" must be an ISO-8601/, 'line 7: time');
    like($err, qr/line 8: slug "fest" belongs to another event/,
         'line 8: slug taken by another event');
    like($err, qr/line 9: "kind" must be/, 'line 9: unknown kind');
    like($err, qr/line 10: invalid JSON/, 'line 10: invalid UTF-8');
    like($err, qr/line 11: "id" must be a non-negative integer/, 'line 11: id');
    like($err, qr/line 11: "scanned" must be true or false/,
         'line 11: every failure of a line');
    like($err, qr/line 12: "published" must be true or false/,
         'line 12: published as a string');
    like($err, qr/line 13: "starts" must be an ISO-8601/,
         'line 13: an offset of 24 hours');
    like($err, qr/line 14: a NUL byte/, 'line 14: a NUL byte');
    like($err, qr/line 15: longer than 1048576 bytes/, 'line 15: 1 MB');
    like($err, qr/line 16: "name" must be a string/, 'line 16: a number');
    unlike($err, qr/line (1|2|4|5):/, 'good lines are not blamed');
    like($err, qr/nothing imported: 12 bad lines\n/,
         'says nothing was imported, counting lines (13 errors in 12)');
    is($h->redis('DBSIZE'), $dbsize, 'nothing written: same number of keys');
    is($snap->(), $keys_before, 'nothing written: same contents');

    my ($rc2, undef, $err2) = $h->ctl('data', 'import', '--org', 'acme',
                                      '/nonexistent.ndjson');
    is($rc2, 1, 'missing file: exit 1');
}

# -- input that is not a plain file ----------------------------------------------
{
    my $ctl = $h->ctl_shell;
    my $dir = $h->dir;
    open my $fh, '>', "$dir/pipe.ndjson" or die $!;
    print $fh nd({ %$event, id => 21, slug => 'piped' });
    close $fh;
    my $rc = system("cat '$dir/pipe.ndjson' | $ctl data import --org pipe"
                    . " /dev/stdin 2>'$dir/pipe.err'") >> 8;
    is($rc, 0, 'a pipe as FILE: exit 0');
    is($h->redis('HGET', '{o:pipe}:live:slugs', 'piped'), $m->(21),
       '... and its lines are imported (it was read once, then found empty)');
    mkdir "$dir/adir";
    my ($rc2, undef, $err2) = $h->ctl('data', 'import', '--org', 'pipe',
                                      "$dir/adir");
    is($rc2, 1, 'a directory as FILE: exit 1');
    like($err2, qr/is a directory/, '... says so');
}

# stdin that is a file read from its middle: only what is left is checked
# and imported (it was read again from the file's start)
{
    my $dir = $h->dir;
    open my $fh, '>', "$dir/mid.ndjson" or die $!;
    print $fh '{"kind":"bogus","event":"nowhere","id":1}' . "\n"
        . nd({ %$event, id => 22, slug => 'after-the-header' });
    close $fh;
    my $ctl = $h->ctl_shell;
    my $rc = system("{ read -r header; $ctl data import --org mid -; }"
                    . " < '$dir/mid.ndjson' 2>'$dir/mid.err'") >> 8;
    is($rc, 0, 'stdin past its first line: exit 0');
    is($h->redis('HGET', '{o:mid}:live:slugs', 'after-the-header'), $m->(22),
       '... the rest imported');
    is(scalar(grep { /null|nowhere/ } $h->redis('KEYS', '{o:mid}*')), 0,
       '... and nothing of the line it never got');
}

# a line of exactly 1 MiB (its newline not counted) is imported
{
    my $l = nd({ %$event, id => 23, slug => 'mib', description => '' });
    chomp $l;
    my $pad = 1024 * 1024 - length($l);
    $l =~ s/"description":""/'"description":"' . ('d' x $pad) . '"'/e;
    is(length($l), 1024 * 1024, 'a line of 1,048,576 bytes');
    my ($rc, undef, $err) = $h->ctl_stdin("$l\n", 'data', 'import', '--org',
                                          'mib', '-');
    is($rc, 0, '... is imported') or diag $err;
}

# ... and with "\r\n": the CR is not counted either
{
    my $l = nd({ %$event, id => 24, slug => 'mib-crlf', description => '' });
    chomp $l;
    my $pad = 1024 * 1024 - length($l);
    $l =~ s/"description":""/'"description":"' . ('d' x $pad) . '"'/e;
    my ($rc, undef, $err) = $h->ctl_stdin("$l\r\n", 'data', 'import', '--org',
                                          'mib', '-');
    is($rc, 0, 'a line of 1 MiB ending in CRLF is imported') or diag $err;
}

# a line far over the limit is read past, never held whole in memory
{
    my $file = $h->dir . '/huge.ndjson';
    open my $fh, '>', $file or die $!;
    print $fh nd({ %$event, id => 25, slug => 'before-huge' });
    print $fh '{"kind":"event","x":"';
    print $fh 'y' x (1024 * 1024) for 1 .. 64;
    print $fh "\"}\n";
    print $fh nd({ %$event, id => 26, slug => 'after-huge' });
    close $fh;
    my $url = $h->redis_url;
    my $ctl = $h->build . '/integrationsctl';
    my $out = `/bin/sh -c 'command -v /usr/bin/time >/dev/null && exec /usr/bin/time -f "maxrss=%M" $ctl --redis $url data import --org huge $file || exec $ctl --redis $url data import --org huge $file' 2>&1`;
    is($? >> 8, 1, 'a 64 MB line: exit 1');
    like($out, qr/line 2: longer than 1048576 bytes/, '... naming the line');
    my @written = $h->redis('KEYS', '{o:huge}*');
    is(scalar(@written), 0, '... and nothing written');
    if ($out =~ /maxrss=(\d+)/ && !$ENV{INTEGRATIONS_ASAN}) {
        ok($1 < 32768, "... in a peak RSS of ${1} kB < 32 MB");
    }
}

# a UTF-8 byte order mark before the first line is no error
{
    my ($rc, undef, $err) = $h->ctl_stdin(
        "\xef\xbb\xbf" . nd({ %$event, id => 27, slug => 'bom' }),
        'data', 'import', '--org', 'bom', '-');
    is($rc, 0, 'a file starting with a BOM: imported') or diag $err;
    is($h->redis('HGET', '{o:bom}:live:slugs', 'bom'), $m->(27),
       '... its first line too');
}

# reals stay as written: 900.0, not 9e+02 (the API serves this text)
{
    import_ok(nd({ %$event, id => 28, slug => 'reals', revenue => '900.0',
                   ticketTypes => [{ id => 1, fee => '2500.0' }] }
                 ) =~ s/"(900\.0|2500\.0)"/$1/gr
              . qq({"kind":"attendee","event":"reals","id":1,"name":"A",)
              . qq("createdTime":"2026-08-01T10:00:00Z","amount":1e6,)
              . qq("paid":0.1,"customFields":{"f":-2.50}}\n),
              '--org', 'reals');
    my $X = '{o:reals}:live:ev:' . $m->(28);
    like($h->redis('HGET', $X, 'item'), qr/"revenue":900\.0[,}]/,
         'revenue 900.0 is stored as 900.0');
    like($h->redis('HGET', $X, 'tt'), qr/"fee":2500\.0[,}]/,
         'a ticket type\'s fee 2500.0 as 2500.0');
    my $a = $h->redis('HGET', "$X:ai", $m->(1));
    like($a, qr/"amount":1000000\.0[,}]/, 'amount 1e6 as 1000000.0');
    like($a, qr/"paid":0\.1[,}]/, 'paid 0.1 as 0.1');
    like($a, qr/"f":-2\.5[,}]/, 'a custom field -2.50 as -2.5');
}

# Redis refusing a lookup while the lines are checked is a Redis error
{
    import_ok(nd({ %$event, id => 29, slug => 'authless' }), '--org', 'na');
    $h->redis('CONFIG', 'SET', 'requirepass', 'later');
    my ($rc, undef, $err) = $h->ctl_stdin(
        nd({ kind => 'attendee', event => 'authless', id => 1, name => 'A',
             createdTime => '2026-08-01T10:00:00Z' }),
        'data', 'import', '--org', 'na', '-');
    $h->redis('-a', 'later', '--no-auth-warning', 'CONFIG', 'SET',
              'requirepass', '');
    is($rc, 2, 'NOAUTH while checking the lines: exit 2');
    like($err, qr/Redis: HGET: NOAUTH/, '... Redis\'s error, not "unknown event"');
    unlike($err, qr/unknown event/, '... never bad input');
}

# a stored detail not as the CLI writes it (another writer's): the line
# is imported whole, without merging it
{
    my $X = '{o:other}:live:ev:' . $m->(31);
    import_ok(nd({ %$event, id => 31, slug => 'spaced', city => 'Durban' }),
              '--org', 'other');
    $h->redis('HSET', $X, 'detail', '{ "id": 31, "city": "Durban" }');
    my ($rc, undef, $err) = $h->ctl_stdin(
        nd({ %$event, id => 31, slug => 'renamed', venueName => 'Dome' }),
        'data', 'import', '--org', 'other', '-');
    is($rc, 0, 'an event over a detail of another layout: imported') or diag $err;
    is($h->redis('HGET', '{o:other}:live:slugs', 'renamed'), $m->(31),
       '... under its new slug');
    is($h->redis('HEXISTS', '{o:other}:live:slugs', 'spaced'), 0,
       '... the old one gone');
    like($h->redis('HGET', $X, 'detail'), qr/"venueName":"Dome"/,
         '... with the line\'s fields');
}

# -- Redis refusing writes half way: the line is named, nothing half written --
{
    my $O = '{o:oom}:live:ev:' . $m->(1);
    my @lines = ({ kind => 'event', id => 1, slug => 'big', title => 'Big',
                   starts => '2026-10-01T10:00:00Z' });
    push @lines, map { { kind => 'attendee', event => 'big', id => $_,
                         name => "Person $_ " . ('x' x 300),
                         createdTime => '2026-09-01T00:00:00Z' } } 1 .. 20000;
    my ($used) = grep { /^used_memory:/ } $h->redis('INFO', 'memory');
    $used =~ s/\D//g;
    $h->redis('CONFIG', 'SET', 'maxmemory', $used + 1_500_000);
    my ($rc, undef, $err) = $h->ctl_stdin(nd(@lines), 'data', 'import',
                                          '--org', 'oom', '-');
    $h->redis('CONFIG', 'SET', 'maxmemory', 0);
    is($rc, 2, 'Redis out of memory: exit 2');
    my ($n) = $err =~ /line (\d+): Redis: OOM/;
    ok($n && $n > 2, 'the first refused line is named') or diag $err;
    is(scalar(() = $err =~ /Redis:/g), 1, '... once, not for every line after');
    like($err, qr/import stopped at line $n: the lines before it are (?#
                  )written, it is not, and those sent with it \(to line (?#
                  )\d+\) may be/,
         '... and what was written');
    $n //= 0;
    my @sizes = (scalar $h->redis('ZCARD', "$O:att"),
                 scalar $h->redis('HLEN', "$O:ai"),
                 scalar $h->redis('HLEN', "$O:am"),
                 scalar $h->redis('ZCARD', "$O:upd"));
    is_deeply(\@sizes, [ ($sizes[0]) x 4 ],
              'every attendee written is in every index (none half written)');
    ok($sizes[0] >= $n - 2 && $sizes[0] < 20000, "... $sizes[0] of them");
    ($rc) = $h->ctl_stdin(nd(@lines), 'data', 'import', '--org', 'oom', '-');
    is($rc, 0, 'run again once Redis takes writes');
    is($h->redis('ZCARD', "$O:att"), 20000, '... the whole file is there');
    my (undef, undef, $e1) = $h->ctl_stdin(nd(
        { kind => 'delete_attendee', event => 'big', id => 1 },
        { kind => 'delete_attendee', event => 'big', id => 999999 }),
        'data', 'import', '--org', 'oom', '-');
    like($e1, qr/ 1 deletions/, 'only attendees that were there are counted');
}

# -- test and live apart ----------------------------------------------------------
import_ok(nd({ %$event, title => 'Test fest' }), '--env', 'test');
is($J->decode($h->redis('HGET', '{o:acme}:test:ev:' . $m->(7), 'item'))
       ->{title}, 'Test fest', 'test data under :test');
is($J->decode($h->redis('HGET', $E, 'item'))->{title}, 'Fest renamed',
   'live data untouched');

# -- data delete -----------------------------------------------------------------
{
    my ($rc) = $h->ctl('data', 'delete', '--org', 'acme', '--event', 'fest');
    is($rc, 0, 'data delete');
    is(scalar(grep { /^\{o:acme\}:live:ev:/ } $h->redis('KEYS', '*')), 0,
       'every key of the event is gone');
    is($h->redis('HEXISTS', "$D:slugs", 'fest'), 0, 'slug gone');
    is($h->redis('HEXISTS', "$D:items", $m->(7)), 0, 'item gone');
    is($h->redis('ZCARD', "$D:events"), 0, 'not listed');
    ok($h->redis('EXISTS', '{o:acme}:test:ev:' . $m->(7)),
       'the test data set is untouched');
    ($rc) = $h->ctl('data', 'delete', '--org', 'acme', '--event', 'fest');
    is($rc, 1, 'deleting an unknown event: exit 1');

    # an event imported before E:cats was kept, then one attendee more:
    # the category sets are found in E:am (scanned, not read in one
    # command), not only in E:cats
    import_ok(nd($event, map {
        { %{ $att[0] }, id => $_, categoryId => $_ % 4 }
    } 1 .. 2000));
    is($h->redis('ZCARD', "$E:c:3"), 500, 'a large event in 4 categories');
    $h->redis('DEL', "$E:cats");
    import_ok(nd({ %{ $att[0] }, id => 2001, categoryId => 9 }));
    is_deeply([$h->redis('SMEMBERS', "$E:cats")], [9],
              '... E:cats knows only the category imported since');
    ($rc) = $h->ctl('data', 'delete', '--org', 'acme', '--event', 'fest');
    is($rc, 0, 'data delete of an event partly without E:cats');
    is_deeply([ grep { /^\{o:acme\}:live:ev:/ } $h->redis('KEYS', '*') ], [],
              '... every key of it is gone, category sets too');
}

# -- customFields not an object: refused by line, nothing written --------------
{
    my $ev = { kind => 'event', id => 90, slug => 'typed', title => 't',
               starts => '2026-10-01T10:00:00Z' };
    my $at = sub { { kind => 'attendee', event => 'typed', id => 1,
                     name => 'n', createdTime => '2026-09-01T10:00:00Z',
                     customFields => $_[0] } };
    my ($rc, undef, $err) = $h->ctl_stdin(nd($ev, $at->('notobj'),
                                             $at->([1])),
                                          'data', 'import', '--org', 'typed',
                                          '-');
    is($rc, 1, 'customFields a string or an array: exit 1');
    like($err, qr/line $_: "customFields" must be an object/,
         "... said on line $_") for 2, 3;
    is_deeply([ $h->redis('KEYS', '{o:typed}*') ], [], '... nothing written');
    ($rc, undef, $err) = $h->ctl_stdin(nd($ev, $at->({}), $at->(undef)),
                                       'data', 'import', '--org', 'typed', '-');
    is($rc, 0, '... an object, or null: imported') or diag $err;
}

# -- ticket types: integer cents and whole counts, as the API promises -------
{
    my $ev = sub { { kind => 'event', id => 91, slug => 'priced', title => 't',
                     starts => '2026-10-01T10:00:00Z', ticketTypes => $_[0] } };
    my $line = nd($ev->([{ id => 1, price => 25.5, quantity => 1.5 },
                         { id => 2, price => '2500' }, { id => 3, price => -100,
                           maxPerOrder => 0 }, 'x']));
    my ($rc, undef, $err) = $h->ctl_stdin($line, 'data', 'import', '--org',
                                          'priced', '-');
    is($rc, 1, 'prices not in integer cents: exit 1');
    for my $m ('"ticketTypes"\[0\].price must be an integer >= 0 \(cents',
               '"ticketTypes"\[0\].quantity must be an integer >= 0',
               '"ticketTypes"\[1\].price must be', '"ticketTypes"\[2\].price',
               '"ticketTypes"\[2\].maxPerOrder must be an integer >= 1',
               '"ticketTypes"\[3\] must be an object') {
        like($err, qr/line 1: $m/, "... said: $m");
    }
    is_deeply([ $h->redis('KEYS', '{o:priced}*') ], [], '... nothing written');
    ($rc, undef, $err) = $h->ctl_stdin(
        nd($ev->([{ id => 1, price => 0, quantity => 5, minPerOrder => 1,
                    maxPerOrder => undef }])),
        'data', 'import', '--org', 'priced', '-');
    is($rc, 0, '... 0 cents (free), whole counts: imported') or diag $err;
}

# -- what jansson cannot hold is said in the product's words -----------------
{
    my ($rc, undef, $err) = $h->ctl_stdin(
        qq({"kind":"event","id":92,"slug":"nul","title":"a\\u0000b",)
        . qq("starts":"2026-10-01T10:00:00Z"}\n)
        . qq({"kind":"event","id":93,"slug":"big","title":"b",)
        . qq("starts":"2026-10-01T10:00:00Z","revenue":12345678901234567890}\n),
        'data', 'import', '--org', 'janss', '-');
    is($rc, 1, '\\u0000 and a number past 64 bits: exit 1');
    like($err, qr/line 1: a \\u0000 in a string is not taken \(column \d+\)/,
         '... line 1 says \\u0000 is not taken');
    like($err, qr/line 2: a number past 64-bit integers \(column \d+\)/,
         '... line 2 says the number is too big');
    unlike($err, qr/JSON_ALLOW_NUL/, '... without jansson\'s flag names');
    is_deeply([ $h->redis('KEYS', '{o:janss}*') ], [], '... nothing written');
}

# -- renames inside one file are followed in the file's order -------------------
{
    my $ev = sub { { kind => 'event', id => $_[0], slug => $_[1], title => 't',
                     starts => '2026-10-01T10:00:00Z' } };
    my $at = sub { { kind => 'attendee', event => $_[0], id => $_[1],
                     name => 'n', createdTime => '2026-09-01T10:00:00Z' } };
    my $imp = sub { ($h->ctl_stdin(nd(@_), 'data', 'import', '--org', 'ren',
                                   '-'))[0, 2] };
    my ($rc, $err) = $imp->($ev->(1, 'y2024'), $ev->(2, 'other'));
    is($rc, 0, 'renames: two events');
    my $S = '{o:ren}:live';
    my $before = join ',', sort $h->redis('KEYS', "$S*");
    ($rc, $err) = $imp->($ev->(1, 'y2025'), $at->('y2024', 1));
    is($rc, 1, 'an attendee naming the slug a line before renamed away: exit 1');
    like($err, qr/line 2: unknown event "y2024" \(a line before gave its event another slug\)/,
         '... saying so, by line');
    is(join(',', sort $h->redis('KEYS', "$S*")), $before, '... nothing written');
    is($h->redis('HGET', "$S:slugs", 'y2024'), $m->(1), '... the slug unchanged');

    # a slug freed by a rename may go to another event further on
    my @swap = ($ev->(1, 'y2025'), $ev->(2, 'y2024'), $at->('y2024', 5),
                $at->('y2025', 6));
    for my $run (1, 2) {
        ($rc, $err) = $imp->(@swap);
        is($rc, 0, "a slug renamed away, then given to another event: run $run")
            or diag $err;
    }
    is($h->redis('HGET', "$S:slugs", 'y2024'), $m->(2), '... y2024 is event 2');
    is($h->redis('HGET', "$S:slugs", 'y2025'), $m->(1), '... y2025 is event 1');
    is($h->redis('HEXISTS', "$S:slugs", 'other'), 0, '... "other" is free');
    is_deeply([ $h->redis('ZRANGE', "$S:ev:" . $m->(2) . ':att', 0, -1) ],
              [ $m->(5) ], '... attendee 5 in event 2');
    is_deeply([ $h->redis('ZRANGE', "$S:ev:" . $m->(1) . ':att', 0, -1) ],
              [ $m->(6) ], '... attendee 6 in event 1');
    # an event given a slug in Redis that a line before took: refused
    ($rc, $err) = $imp->($ev->(3, 'y2025'));
    is($rc, 1, 'a slug another event holds: exit 1');
    like($err, qr/slug "y2025" belongs to another event/, '... saying so');
}

# -- an event deleted while its attendees are imported: none outlive it ----------
{
    my $n = 100_000;
    my $file = $h->dir . '/race.ndjson';
    my $R = '{o:race}:live:ev:' . $m->(800);
    open my $fh, '>', $file or die;
    print $fh $J->encode({ kind => 'event', id => 800, slug => 'race',
                           title => 'r', starts => '2026-10-01T10:00:00Z' }),
              "\n";
    print $fh qq({"kind":"attendee","event":"race","id":$_,"name":"P$_",)
            . qq("createdTime":"2026-09-01T10:00:00Z"}\n) for 1 .. $n;
    close $fh;
    my $cmd = $h->ctl_shell('data', 'import', '--org', 'race', $file);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        exec 'sh', '-c', "$cmd >/dev/null 2>'$file.err'";
    }
    # delete once the first attendees are in, before the last are
    my $seen = 0;
    for (1 .. 6000) {
        $seen = $h->redis('ZCARD', "$R:att") and last;
        select(undef, undef, undef, 0.01);
    }
    my ($rc) = $h->ctl('data', 'delete', '--org', 'race', '--event', 'race');
    waitpid $pid, 0;
    my $irc = $? >> 8;
    my $err = Harness::_slurp("$file.err");
    is($rc, 0, 'data delete while its attendees are imported: exit 0');
    is_deeply([ grep { /^\{o:race\}:live:ev:/ } $h->redis('KEYS', '*') ], [],
              '... and no key of the event is left once the import ends');
    SKIP: {
        skip 'the import ended before the delete', 3 if $irc == 0;
        is($irc, 2, 'the import stops: exit 2');
        like($err, qr/line \d+: Redis: its event was deleted during the import/,
             '... naming the first line refused and why');
        like($err, qr/import stopped at line \d+: its event was deleted/,
             '... and what became of the lines');
    }
    ok($seen > 0 && $seen < $n, 'the delete came while the import ran')
        or diag "attendees seen before the delete: $seen";
    my ($rc2) = $h->ctl_stdin(nd({ kind => 'event', id => 800, slug => 'race',
                                   title => 'r',
                                   starts => '2026-10-01T10:00:00Z' }),
                              'data', 'import', '--org', 'race', '-');
    is($rc2, 0, 'the event imported again');
    is($h->redis('ZCARD', "$R:att"), 0,
       'an event made again with the id has none of the old attendees');
}

# -- streaming: memory stays flat on a large file ---------------------------------
{
    my $n = 200_000;
    my $file = $h->dir . '/big.ndjson';
    open my $fh, '>', $file or die;
    print $fh $J->encode({ kind => 'event', id => 1, slug => 'big',
                           title => 'Big', starts => '2026-12-01T10:00:00Z' }),
              "\n";
    for my $i (1 .. $n) {
        print $fh qq({"kind":"attendee","event":"big","id":$i,"name":"Person $i",)
                . qq("email":"p$i\@example.com","createdTime":"2026-11-01T10:00:00Z",)
                . qq("scanned":) . ($i % 2 ? 'true' : 'false')
                . qq(,"customFields":{"Company":"Acme"}}\n);
    }
    close $fh;
    my $url = $h->redis_url;
    my $t0 = time;
    # ASan reserves terabytes of address space: no ulimit -v under it
    my $cap = $ENV{INTEGRATIONS_ASAN} ? '' : 'ulimit -v 262144; ';
    my $out = `/bin/sh -c '${cap}command -v /usr/bin/time >/dev/null && exec /usr/bin/time -f "maxrss=%M" @{[ $h->build ]}/integrationsctl --redis $url data import --org big $file || exec @{[ $h->build ]}/integrationsctl --redis $url data import --org big $file' 2>&1`;
    is($?, 0, "import of $n attendees"
            . ($cap ? ' under a 256 MB address-space limit' : ''))
        or diag $out;
    is($h->redis('ZCARD', '{o:big}:live:ev:' . $m->(1) . ':att'), $n,
       'all attendees imported');
    # (ASan's quarantine makes RSS meaningless)
    if ($out =~ /maxrss=(\d+)/ && !$ENV{INTEGRATIONS_ASAN}) {
        ok($1 < 65536, "peak RSS ${1} kB < 64 MB");
    }
    diag "$n attendees: " . (time - $t0) . " s; $out";
}

$h->done;
done_testing;
