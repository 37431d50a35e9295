#!/usr/bin/perl
# A search (or several filters) on a large event walks it in slices of at
# most 10,000 candidates (fewer if 5 ms pass), one script call each,
# continued by the handler: Redis is never held for long by one request,
# and the answer is the same as in one piece -- totals, order, and pages
# that straddle two slices. A mid-sized updated_since match set combined
# with other filters is collected in slices and sorted by nginx.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
$h->start_nginx(ReadSeed::conf(timeout => '1s'));
my ($key) = make_key($h, org => 'acme');

my $N = 120_000;
my $s = ReadSeed->new($h, org => 'acme', now => 1790000000);
$s->event({ id => 1, slug => 'huge', title => 'Huge',
            starts => '2026-12-01T19:00:00Z' },
          eventFields => [ { name => 'Company' } ]);
my @att = map {
    { id => $_, name => ($_ % 1000 == 7 ? "Needle $_" : "Person $_"),
      email => "p$_\@example.com", createdTime => 1780000000 + $_,
      scanned => $_ % 2, promo => $_ % 3 == 0 ? 1 : 0,
      categoryId => $_ % 5,
      updated => 1790000000 + ($_ > 100_000 ? 100 : 0)
                 + ($_ % 2 ? 10 : 0) }
} 1 .. $N;
$s->attendees_bulk('huge', @att);
$s->flush;

sub api {
    my ($q) = @_;
    my $r = $h->get("/v2/integrations/events/huge/attendees?$q",
                    { 'X-Api-Key' => $key });
    is $r->{status}, 200, $q;
    return $h->json($r);
}

sub ids { [ map { $_->{id} } @{ $_[0]{items} } ] }

# page $page of @$all, $size a page
sub page_of {
    my ($all, $page, $size) = @_;
    my $from = ($page - 1) * $size;
    return [] if $from > $#$all;
    my $to = $from + $size - 1 > $#$all ? $#$all : $from + $size - 1;
    return [ @$all[ $from .. $to ] ];
}

sub evalsha_calls {
    for ($h->redis('INFO', 'commandstats')) {
        return $1 if /^cmdstat_evalsha:calls=(\d+)/;
    }
    return 0;
}

# a search matching a few, spread over every slice
$h->redis('CONFIG', 'RESETSTAT');
my $j = api('search=needle&page_size=500');
my @want = grep { $_ % 1000 == 7 } 1 .. $N;
is $j->{totalItems}, scalar @want, 'needles: total';
is_deeply ids($j), \@want, 'needles: all, in order';
cmp_ok evalsha_calls() - 1, '>=', 12,
    '... after the key check, slices of at most 10,000 candidates';
is_deeply $j->{eventFields}, [ { name => 'Company' } ], '... eventFields';

# a search matching everything: pages inside and across slices
for my $page (1, 100, 101, 120, 200, 240, 241) {
    $j = api("search=person&page=$page&page_size=500");
    my @all = grep { $_ % 1000 != 7 } 1 .. $N;
    is $j->{totalItems}, scalar @all, "everything, page $page: total";
    is_deeply ids($j), page_of(\@all, $page, 500),
        "everything, page $page: the page";
}

# several filters: the smallest set drives, in slices if it is large
$j = api('scanned=true&category_id=3&page=7&page_size=100');
my @sc3 = grep { $_ % 2 && $_ % 5 == 3 } 1 .. $N;
is $j->{totalItems}, scalar @sc3, 'scanned + category: total';
is_deeply ids($j), [ @sc3[ 600 .. 699 ] ], '... page 7';
$j = api('scanned=false&promo=false&search=person&page=300&page_size=100');
my @c = grep { !($_ % 2) && $_ % 3 && $_ % 1000 != 7 } 1 .. $N;
is $j->{totalItems}, scalar @c, 'three filters: total';
is_deeply ids($j), [ @c[ 29900 .. 29999 ] ], '... page 300';

# updated_since matching most: the walk stops once the page is full
$h->redis('CONFIG', 'RESETSTAT');
$j = api('updated_since=2026-09-21T00:00:00Z&page=2&page_size=100');
is $j->{totalItems}, $N, 'updated_since (all): exact total';
is_deeply ids($j), [ 101 .. 200 ], '... page 2';
is evalsha_calls(), 2, '... in one call';
$j = api('updated_since=2026-09-21T00:00:00Z&page=700&page_size=100');
is_deeply ids($j), [ 69_901 .. 70_000 ], '... page 700 (second slice)';
$j = api('updated_since=2026-09-21T00:00:00Z&page=1201&page_size=100');
is_deeply ids($j), [], '... past the end';
is $j->{totalItems}, $N, '... total kept';
$h->redis('CONFIG', 'RESETSTAT');
$j = api('updated_since=' . ReadSeed::iso(1790000005)
         . '&page=400&page_size=100');
is $j->{totalItems}, 70_000, 'updated_since (most): exact total';
is_deeply ids($j), [ map { 2 * $_ - 1 } 39_901 .. 40_000 ],
    '... a deep page, walked';
cmp_ok evalsha_calls() - 1, '>=', 8,
    '... 80,000 candidates walked, in slices of at most 10,000';
$j = api('updated_since=' . ReadSeed::iso(1790000050));
is $j->{totalItems}, 20_000, 'updated_since (few): total';
is_deeply ids($j), [ 100_001 .. 100_100 ], '... sorted by createdTime';
$j = api('updated_since=' . ReadSeed::iso(1790000050) . '&scanned=true');
is $j->{totalItems}, 10_000, 'updated_since (few) and scanned: total';
is_deeply ids($j), [ map { 100_001 + 2 * $_ } 0 .. 99 ], '... the page';

# updated_since and a search, 20,000 matches: collected in slices (each
# match with its createdTime), sorted by nginx, the page fetched at once
my @recent = grep { $_ % 1000 != 7 } 100_001 .. $N;
for my $page (1, 17, 40, 41) {
    $h->redis('CONFIG', 'RESETSTAT');
    $j = api('search=person&updated_since=' . ReadSeed::iso(1790000050)
             . "&page=$page&page_size=500");
    is $j->{totalItems}, scalar @recent, "collect, page $page: total";
    is_deeply ids($j), page_of(\@recent, $page, 500),
        "collect, page $page: the page";
    cmp_ok evalsha_calls() - 1, '>=', 2,
        "collect, page $page: 20,000 matches in slices";
}
is_deeply $j->{eventFields}, [ { name => 'Company' } ], 'collect: eventFields';

# ties of createdTime are ordered by id, as E:att orders them: 1,500
# matches are collected (and sorted by nginx), 300 sorted in one call
$s->event({ id => 2, slug => 'ties', title => 'Ties',
            starts => '2026-12-02T19:00:00Z' });
my $ct = sub { 1780000000 + int((3000 - $_[0]) / 10) };
$s->attendees_bulk('ties', map {
    { id => $_, name => "Tie $_", createdTime => $ct->($_), scanned => 0,
      updated => 1790000000 + ($_ % 2 ? 0 : 100) + ($_ % 10 ? 0 : 100) }
} 1 .. 3000);
$s->flush;
my %want = (
    1790000050 => [ sort { $ct->($a) <=> $ct->($b) || $a <=> $b }
                    grep { $_ % 2 == 0 } 1 .. 3000 ],
    1790000150 => [ sort { $ct->($a) <=> $ct->($b) || $a <=> $b }
                    grep { $_ % 10 == 0 } 1 .. 3000 ],
);
for my $since (sort keys %want) {
    my $all = $want{$since};
    my $pages = int((@$all + 399) / 400);
    for my $page (1 .. $pages + 1) {
        my $r = $h->get('/v2/integrations/events/ties/attendees?scanned=false'
                        . '&updated_since=' . ReadSeed::iso($since)
                        . "&page=$page&page_size=400",
                        { 'X-Api-Key' => $key });
        is $r->{status}, 200, "ties, since $since, page $page: 200";
        my $t = $h->json($r);
        is $t->{totalItems}, scalar @$all, '... total';
        is $t->{totalPages}, $pages, '... pages';
        is_deeply ids($t), page_of($all, $page, 400),
            '... the page, ties by id';
        is_deeply [ map { $_->{createdTime} } @{ $t->{items} } ],
            [ map { $ct->($_) } @{ ids($t) } ],
            '... each item its own createdTime'
            if $page == 1;
    }
}

# an organization with 12,000 events: a filter walks them in slices of at
# most 5,000 (fewer if 5 ms pass); totals and pages as in one piece
my ($bkey) = make_key($h, org => 'big');
my $b = ReadSeed->new($h, org => 'big', now => 1790000000);
my $NE = 12_000;
$b->event({ id => $_, slug => "show-$_", title => "Show $_",
            status => ($_ % 3 ? 'approved' : 'draft'), published => 1,
            starts => 1780000000 + 3600 * $_,
            updated => 1790000000 + ($_ % 4 ? 0 : 100) }) for 1 .. $NE;
$b->flush;
sub events {
    my ($q) = @_;
    my $r = $h->get("/v2/integrations/events?$q", { 'X-Api-Key' => $bkey });
    is $r->{status}, 200, "events: $q";
    return $h->json($r);
}
my @approved = grep { $_ % 3 } 1 .. $NE;
for my $page (1, 30, 80, 81) {
    $h->redis('CONFIG', 'RESETSTAT');
    my $e = events("status=approved&page=$page&page_size=100");
    is $e->{totalItems}, scalar @approved, "events, page $page: total";
    is_deeply ids($e), page_of(\@approved, $page, 100),
        "events, page $page: the page";
    cmp_ok evalsha_calls() - 1, '>=', 3,
        "events, page $page: 12,000 walked in slices of at most 5,000";
}
my $e = events('search=show+11999');
is_deeply ids($e), [ 11_999 ], 'events: a search, found in the last slice';
$e = events('updated_since=' . ReadSeed::iso(1790000050)
            . '&page=20&page_size=100');
is $e->{totalItems}, $NE / 4, 'events: updated_since total';
is_deeply ids($e), [ map { 4 * $_ } 1901 .. 2000 ], '... a deep page';
$h->redis('CONFIG', 'RESETSTAT');
$e = events('page=7&page_size=100');
is_deeply ids($e), [ 601 .. 700 ], 'events: no filter, by rank';
is evalsha_calls(), 2, '... in one call after the key check';

# one of the module's Lua scripts, out of its C string literal
sub script_of {
    my ($name) = @_;
    open my $src, '<', Harness->root . '/src/ngx_integrations_handlers.c'
        or die $!;
    my $text = do { local $/; <$src> };
    my ($c) = $text =~ /ngx_http_integrations_${name}_script\[\] =\n(.*?);\n/s;
    # a line naming a macro of string lines (#define NAME \ ...) is its text
    my $line;
    $line = sub {
        my ($l) = @_;
        return "$1\n" if $l =~ /^"(.*)\\n"\s*\\?$/;
        if ($l =~ /^([A-Z_]+)$/) {
            my ($body) = $text =~ /#define $1\s*\\\n(.*?)\n\n/s
                or die "no macro $1";
            return join '', map { $line->($_) } split /\n/, $body;
        }
        die "line: $l";
    };
    return join '', map { $line->($_) } split /\n/, $c;
}

# an events walk continued while two events it read are deleted and one
# is added before where it stopped (a rank would skip one): the events
# script run slice by slice by hand; every event there at the start is
# counted once
{
    my $lua = script_of('events');
    my $slice = sub {
        my ($cursor) = @_;
        my @r = $h->redis('EVAL', $lua, 1, $b->D, 0, 100, 'approved', '',
                          '-inf', '+inf', '', '', $cursor);
        is $r[0], 2, 'events: a slice of a walk' or diag "@r[0 .. 3]";
        return ($r[1], $r[-4]);
    };
    my ($n, $at) = $slice->('');
    like $at, qr/^(0{16}\d{4}) (\d+)$/, 'events: the first slice stops early';
    my ($last) = $at =~ /^(\d+)/;
    # the event read last leaves too: the walk goes on from its score
    $b->cmd('ZREM', $b->D . ':events', ReadSeed::pad(1), $last);
    $b->event({ id => 20_001, slug => 'early', title => 'Early',
                status => 'approved', published => 1,
                starts => 1780000001 });
    $b->flush;
    my $total = $n;
    while (length $at) {
        ($n, $at) = $slice->($at);
        $total += $n;
    }
    is $total, scalar @approved,
        'events walk: every match counted once, none skipped';
    is events('status=approved&page_size=1')->{totalItems},
        @approved + 1 - ($last % 3 ? 2 : 1),
        '... and the module counts the changes';
    $b->cmd('ZADD', $b->D . ':events', 1780000000 + 3600, ReadSeed::pad(1),
            1780000000 + 3600 * $last, $last);
    $b->cmd('ZREM', $b->D . ':events', ReadSeed::pad(20_001));
    $b->flush;
}

# the same with 8,000 events that all start at once: the walk continues
# inside their ties (ordered by id), found by rank or, once the event
# read last is deleted, by counting the ties
{
    my $lua = script_of('events');
    my $t = ReadSeed->new($h, org => 'ties', now => 1790000000);
    $t->event({ id => $_, slug => "tie-$_", title => "Tie $_",
                status => 'approved', starts => 1781000000 }) for 1 .. 8000;
    $t->flush;
    my $walk = sub {
        my ($cursor) = @_;
        my @r = $h->redis('EVAL', $lua, 1, $t->D, 0, 10, 'approved', '',
                          '-inf', '+inf', '', '', $cursor);
        # redis-cli flattens the items (no items: one empty line)
        return ($r[1], $r[-4], [ map { $h->json($_)->{id} }
                                 grep { length } @r[ 4 .. $#r - 4 ] ]);
    };
    my ($n, $at, $items) = $walk->('');
    is_deeply $items, [ 1 .. 10 ], 'ties: the first page, by id';
    like $at, qr/^0+(\d+) 1781000000$/, 'ties: the first slice stops early';
    my ($last) = $at =~ /^0+(\d+)/;
    $t->cmd('ZREM', $t->D . ':events', ReadSeed::pad(5), ReadSeed::pad($last));
    $t->flush;
    my ($total, $slices) = ($n, 1);
    while (length $at) {
        ($n, $at) = $walk->($at);
        ($total, $slices) = ($total + $n, $slices + 1);
    }
    is $total, 8000, 'ties: every event counted once across the slices';
    cmp_ok $slices, '>=', 2, "ties: $slices slices";
}

# a collect continued while the event changes: the attendees script run
# slice by slice by hand (its source from the module), with writes in
# between that shift every rank: nothing unchanged is missed
{
    my $lua = script_of('attendees');
    my $slice = sub {
        my ($cursor) = @_;
        my @r = $h->redis('EVAL', $lua, 1, $s->D, 'huge', 0, 100, 'person',
                          '', '', '', 1790000050, $cursor,
                          length $cursor ? -1 : '');
        is $r[0], 3, 'a slice of a collect' or diag "@r[0 .. 3]";
        # no pairs: redis-cli prints one empty line
        return ([ grep { length } @r[ 3 .. $#r - 2 ] ], $r[-2]);
    };
    my ($pairs, $cursor) = $slice->('');
    ok length $cursor, '20,000 matches: the first slice is not the last';
    my %seen = @$pairs;
    my @read = sort keys %seen;
    # a member already read leaves, a new one arrives, and one read member
    # is updated: under a rank cursor the first would hide an unread one
    $s->cmd('ZREM', $s->D . ':ev:' . ReadSeed::pad(1) . ":upd", $read[0]);
    $s->attendees_bulk('huge', { id => 130_001, name => 'Person new',
                                 createdTime => 1780130001,
                                 updated => 1790000900 },
                       { id => $read[1] + 0, name => "Person $read[1]",
                         createdTime => 1780000000 + $read[1],
                         updated => 1790000900 });
    $s->flush;
    while (length $cursor) {
        ($pairs, $cursor) = $slice->($cursor);
        my %p = @$pairs;
        @seen{ keys %p } = values %p;
    }
    my @lost = grep { !$seen{ ReadSeed::pad($_) } } @recent;
    is_deeply \@lost, [], 'collect: no unchanged match lost';
    # the module itself: the same set with the changes, sorted, no twice
    my $j = api('search=person&updated_since=' . ReadSeed::iso(1790000050)
                . '&page=1&page_size=500');
    is $j->{totalItems}, scalar @recent, 'collect after the changes: total';

    # a walk (a search through E:att) continued while two attendees it
    # read are deleted and one is added before where it stopped (each
    # shifts the ranks after it): every match counted once
    my $all = api('search=person&page_size=1')->{totalItems};
    my $walk = sub {
        my ($cursor) = @_;
        my @r = $h->redis('EVAL', $lua, 1, $s->D, 'huge', 0, 100, 'person',
                          '', '', '', '', $cursor, length $cursor ? 0 : '');
        is $r[0], 2, 'a slice of a walk' or diag "@r[0 .. 3]";
        return ($r[1], $r[-4]);
    };
    my ($n, $at) = $walk->('');
    like $at, qr/^0{15}\d{5} \d+$/, 'the first slice stops early in E:att';
    my ($rc, $out, $err) = $h->ctl_stdin(
        qq({"kind":"delete_attendee","event":"huge","id":2}\n)
        . qq({"kind":"delete_attendee","event":"huge","id":3}\n),
        'data', 'import', '--org', 'acme', '-');
    is $rc, 0, 'two attendees read by the first slice deleted' or diag $err;
    $s->attendees_bulk('huge', { id => 130_002, name => 'Person early',
                                 createdTime => 1780000001 });
    $s->flush;
    my $total = $n;
    while (length $at) {
        ($n, $at) = $walk->($at);
        $total += $n;
    }
    is $total, $all, 'walk: every match counted once, none skipped';
    is api('search=person&page_size=1')->{totalItems}, $all - 1,
        '... and the module counts the changes after them';
}

# Redis is not held: a plain request gets through during a long search
my $res = $h->parallel(6, 6, sub {
    my ($i) = @_;
    my $q = $i % 2 ? 'search=zzz' : 'page=3';
    my $t0 = Time::HiRes::time();
    my $r = $h->get("/v2/integrations/events/huge/attendees?$q",
                    { 'X-Api-Key' => $key });
    return [ $r->{status}, Time::HiRes::time() - $t0 ];
});
is_deeply [ map { $_->[0] } @$res ], [ (200) x 6 ],
    'searches and pages side by side: all 200';

unlike $h->error_log, qr/\[(?:alert|crit|emerg)\]/, 'no alerts in the log';

$h->done;
done_testing;
