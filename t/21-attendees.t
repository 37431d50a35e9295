#!/usr/bin/perl
# GET /v2/integrations/events/{slug|id}/attendees: envelope with
# eventFields/categoryFields, order, pagination, every filter alone and
# combined against an oracle over the same data, search on each field,
# incremental sync with updated_since, event lookup, 404s, and a 20,000
# attendee event where a one-index filter reads no more than its page.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
$h->start_nginx(ReadSeed::conf());

my ($key)  = make_key($h, org => 'acme');
my ($tkey) = make_key($h, org => 'acme', env => 'test');
my ($okey) = make_key($h, org => 'other');
my ($ekey) = make_key($h, org => 'acme', scopes => 'events:read');

my $now = int(time);
my $iso = \&ReadSeed::iso;

my $s = ReadSeed->new($h, org => 'acme', now => $now - 86400);
$s->event({ id => 1, slug => 'fest', title => 'Fest',
            starts => '2026-09-01T19:00:00Z', status => 'approved',
            published => 1 },
          eventFields => [ { id => 1, name => 'Company', type => 'text' } ],
          categoryFields => [ { categoryId => 7, fields => [ 'Size' ] } ]);
$s->event({ id => 2, slug => 'gala', title => 'Gala',
            starts => '2026-10-01T19:00:00Z' });
$s->event({ id => 3, slug => '2024', title => 'Numeric slug',
            starts => '2026-11-01T19:00:00Z' });

my @first = qw(Ann Bob Cleo Dave Eve Finn Gus Hana Ivo June);
my @last  = qw(Smith JONES Brown Nkosi van-Wyk O'Neil);
srand(7);
my @att;
for my $i (1 .. 150) {
    my $a = {
        id => 1000 + $i,
        name => $first[$i % @first] . ' ' . $last[$i % @last],
        email => lc($first[$i % @first]) . ".$i\@Example.COM",
        phone => sprintf('+2782%07d', $i * 37),
        createdTime => $iso->(1780000000 + int($i / 3) * 60),
        promo => ($i % 5 == 0) ? 1 : 0,
        scanned => ($i % 3 == 0) ? 1 : 0,
        reference => sprintf('REF-%05d', $i * 11),
        identifier => "T$i",
        category => $i % 4 ? "Cat " . (7 + $i % 3) : undef,
        categoryId => $i % 4 ? 7 + $i % 3 : undef,
        amount => 150 + $i, paid => 1,
        customFields => { Company => "Co $i" },
        updated => $iso->($now - 86400 + $i),
    };
    $a->{id} = 5000 + $i if $i % 10 == 0;   # ids not in createdTime order
    push @att, $a;
    $s->attendee('fest', $a);
}
$s->attendee('gala', { id => 1, name => 'Only One',
                       createdTime => '2026-01-01T00:00:00Z' });
$s->attendee('2024', { id => 2, name => 'Numeric',
                       createdTime => '2026-01-01T00:00:00Z' });
$s->flush;

my $t = ReadSeed->new($h, org => 'acme', env => 'test');
$t->event({ id => 1, slug => 'fest', title => 'Test Fest',
            starts => '2026-09-01T19:00:00Z' });
$t->attendee('fest', { id => 9, name => 'Test Person',
                       createdTime => '2026-01-01T00:00:00Z' });
$t->flush;
my $o = ReadSeed->new($h, org => 'other');
$o->event({ id => 50, slug => 'elsewhere', title => 'Elsewhere',
            starts => '2026-09-01T19:00:00Z' });
$o->flush;

sub A { "/v2/integrations/events/$_[0]/attendees" }

sub api {
    my ($ev, $q, $k) = @_;
    my $r = $h->get(A($ev) . (length $q ? "?$q" : ''),
                    { 'X-Api-Key' => $k // $key });
    return ($r, $h->json($r));
}

sub ids { [ map { $_->{id} } @{ $_[0]{items} } ] }

sub epoch { ReadSeed::epoch($_[0]) }

sub oracle {
    my (%f) = @_;
    my @m = @att;
    if (defined $f{search}) {
        my $n = $f{search};
        utf8::encode($n);
        $n = ReadSeed::fold($n);
        @m = grep {
            my $a = $_;
            my $t = join "\n", map { $a->{$_} // '' }
                qw(name email phone reference);
            utf8::encode($t);
            index(ReadSeed::fold($t), $n) >= 0;
        } @m;
    }
    @m = grep { ($_->{categoryId} // -1) == $f{category} } @m
        if defined $f{category};
    @m = grep { $_->{scanned} == $f{scanned} } @m if defined $f{scanned};
    @m = grep { $_->{promo} == $f{promo} } @m if defined $f{promo};
    @m = grep { epoch($_->{updated}) >= $f{since} } @m if defined $f{since};
    return [ map { $_->{id} } sort {
        epoch($a->{createdTime}) <=> epoch($b->{createdTime})
            || $a->{id} <=> $b->{id}
    } @m ];
}

sub all_pages {
    my ($ev, $q, $size, $name) = @_;
    my (@ids, $total);
    my $page = 1;
    while (1) {
        my ($r, $j) = api($ev, join('&', grep { length } $q, "page=$page",
                                    "page_size=$size"));
        is $r->{status}, 200, "$name: page $page" or return [];
        $total //= $j->{totalItems};
        is $j->{totalItems}, $total, "$name: totalItems stable";
        is $j->{totalPages}, int(($total + $size - 1) / $size),
            "$name: totalPages";
        push @ids, @{ ids($j) };
        last if $page >= $j->{totalPages};
        $page++;
    }
    is scalar(@ids), $total, "$name: the pages hold totalItems";
    return \@ids;
}


# envelope

my ($r, $j) = api('fest', '');
is $r->{status}, 200, 'attendees: 200';
ok $r->{headers}{etag}, 'ETag';
is_deeply [ sort keys %$j ],
    [ sort qw(items page pageSize totalItems totalPages eventFields
              categoryFields) ], 'envelope keys';
is $j->{pageSize}, 100, 'page_size defaults to 100';
is $j->{totalItems}, 150, 'totalItems';
is $j->{totalPages}, 2, 'totalPages';
is_deeply ids($j), [ @{ oracle() }[0 .. 99] ], 'by createdTime, then id';
is_deeply $j->{eventFields}, [ { id => 1, name => 'Company',
                                 type => 'text' } ], 'eventFields';
is_deeply $j->{categoryFields}, [ { categoryId => 7, fields => ['Size'] } ],
    'categoryFields';
is_deeply [ sort keys %{ $j->{items}[0] } ],
    [ sort qw(id name email phone createdTime promo scanned reference
              identifier category categoryId amount paid customFields
              updated) ], 'attendee fields';
is_deeply $j->{items}[0]{customFields}, { Company => 'Co 1' },
    'customFields';

($r, $j) = api('gala', '');
is_deeply $j->{eventFields}, [], 'no eventFields stored: []';
is_deeply $j->{categoryFields}, [], 'no categoryFields stored: []';
is_deeply ids($j), [1], 'gala has its attendee';


# event lookup

($r, $j) = api('1', 'page_size=1');
is $j->{totalItems}, 150, 'by numeric id';
($r, $j) = api('0001', 'page_size=1');
is $j->{totalItems}, 150, 'by id with leading zeros';
($r, $j) = api('2024', '');
is_deeply ids($j), [2], 'a numeric slug wins over an id';
($r, $j) = api('3', '');
is_deeply ids($j), [2], 'the numeric-slug event by its id';
for my $ev (qw(nope 999 123456789012345678901 elsewhere),
            '%20')
{
    ($r, $j) = api($ev, '');
    is $r->{status}, 404, "unknown event $ev: 404";
    is_deeply $j, { error => 'Event not found' }, '... JSON';
}
($r, $j) = api('elsewhere', '', $okey);
is $r->{status}, 200, "the other org's event for its own key";
($r, $j) = api('fest', '', $okey);
is $r->{status}, 404, "another org's event: 404, not 403";
($r, $j) = api('fest', '', $tkey);
is_deeply ids($j), [9], 'a test key reads the test data set';
($r, $j) = api('gala', '', $tkey);
is $r->{status}, 404, 'a live-only event is 404 for a test key';
$r = $h->get(A('fest'), { 'X-Api-Key' => $ekey });
is $r->{status}, 403, 'attendees:read is required (location scope)';


# pagination

is_deeply all_pages('fest', '', 100, 'default'), oracle(), 'all by 100';
is_deeply all_pages('fest', '', 7, 'by 7'), oracle(), 'all by 7';
($r, $j) = api('fest', 'page_size=500');
is scalar @{ $j->{items} }, 150, 'page_size=500 (max)';
($r, $j) = api('fest', 'page_size=501');
is $r->{status}, 400, 'page_size=501: 400';
is $j->{details}[0]{field}, 'page_size', '... page_size';
($r, $j) = api('fest', 'limit=501');
is $j->{details}[0]{field}, 'limit', 'limit=501: names limit';
($r, $j) = api('fest', 'limit=20&page=3');
is_deeply ids($j), [ @{ oracle() }[40 .. 59] ], 'limit alias with page';
($r, $j) = api('fest', 'page=2');
is_deeply ids($j), [ @{ oracle() }[100 .. 149] ], 'last page partial';
($r, $j) = api('fest', 'page=3');
is $r->{status}, 200, 'past the end: 200';
is_deeply $j->{items}, [], '... no items';
is $j->{totalItems}, 150, '... totals kept';
($r, $j) = api('fest', 'page=0&page_size=0&scanned=maybe&promo=2'
                       . '&category_id=x&updated_since=no');
is $r->{status}, 400, 'invalid: 400';
is_deeply [ sort map { $_->{field} } @{ $j->{details} } ],
    [ sort qw(page page_size scanned promo category_id updated_since) ],
    'every bad field listed';
for my $bad (qw(category_id=-1 category_id=1.5 category_id=
                category_id=123456789012345678901 scanned= promo=yes))
{
    ($r, $j) = api('fest', $bad);
    is $r->{status}, 400, "$bad: 400";
}
($r, $j) = api('fest', 'status=x&dateFrom=garbage&liveOnly=maybe');
is $r->{status}, 200, "the events' filters are not the attendees'";


# filters alone

for my $f ([ 'scanned=true', scanned => 1 ], [ 'scanned=false', scanned => 0 ],
           [ 'scanned=1', scanned => 1 ], [ 'scanned=FALSE', scanned => 0 ],
           [ 'promo=true', promo => 1 ], [ 'promo=false', promo => 0 ],
           [ 'category_id=7', category => 7 ],
           [ 'category_id=8', category => 8 ],
           [ 'category_id=0009', category => 9 ],
           [ 'category_id=10', category => 10 ])
{
    my ($q, %f) = @$f;
    is_deeply all_pages('fest', $q, 9, $q), oracle(%f), $q;
    ($r, $j) = api('fest', $q);
    is $j->{totalItems}, scalar @{ oracle(%f) }, "$q: totalItems";
}

# search on each field, case-insensitive
my %searches = (
    'name'            => 'cleo',
    'name, any case'  => 'CLEO SMITH',
    'surname quote'   => "o'neil",
    'email'           => 'ann.11@example.com',
    'email domain'    => 'EXAMPLE.com',
    'phone'           => '+27820000370',
    'phone digits'    => '0000370',
    'reference'       => 'ref-00110',
    'reference case'  => 'Ref-0011',
    'nothing'         => 'zzzz',
    'one letter'      => 'a',
);
for my $what (sort keys %searches) {
    my $q = $searches{$what};
    ($r, $j) = api('fest', 'search=' . ReadSeed::qs($q) . '&page_size=500');
    my $want = oracle(search => $q);
    is_deeply ids($j), $want, "search $what ($q)";
    is $j->{totalItems}, scalar @$want, '... totalItems';
}
($r, $j) = api('fest', 'search=cleo+smith');
is_deeply ids($j), oracle(search => 'cleo smith'), 'search: + is a space';
ok scalar @{ ids($j) }, '... and finds';

# updated_since: incremental sync
my $t0 = $now - 86400;
for my $since ($t0, $t0 + 50, $t0 + 149, $t0 + 150, $t0 + 151) {
    my $q = 'updated_since=' . $iso->($since);
    is_deeply all_pages('fest', $q, 40, $q), oracle(since => $since),
        "updated_since $since";
}


# combined, and with pagination

my @combos = (
    [ 'scanned=true&promo=true', scanned => 1, promo => 1 ],
    [ 'scanned=false&category_id=7', scanned => 0, category => 7 ],
    [ 'promo=false&category_id=8&scanned=true', promo => 0, category => 8,
      scanned => 1 ],
    [ 'search=smith&scanned=true', search => 'smith', scanned => 1 ],
    [ 'search=example&category_id=9&promo=false', search => 'example',
      category => 9, promo => 0 ],
    [ 'updated_since=' . $iso->($t0 + 100) . '&scanned=true',
      since => $t0 + 100, scanned => 1 ],
    [ 'updated_since=' . $iso->($t0 + 10) . '&category_id=7&search=a',
      since => $t0 + 10, category => 7, search => 'a' ],
    [ 'updated_since=' . $iso->($t0 + 140) . '&search=e',
      since => $t0 + 140, search => 'e' ],
    # few updated, fewer than any index set: the updated set drives
    [ 'updated_since=' . $iso->($t0 + 130) . '&scanned=true',
      since => $t0 + 130, scanned => 1 ],
    [ 'updated_since=' . $iso->($t0 + 120) . '&category_id=7&promo=false',
      since => $t0 + 120, category => 7, promo => 0 ],
    [ 'updated_since=' . $iso->($t0 + 120) . '&scanned=false&search=o',
      since => $t0 + 120, scanned => 0, search => 'o' ],
);
for my $c (@combos) {
    my ($q, %f) = @$c;
    is_deeply all_pages('fest', $q, 4, $q), oracle(%f), "combined: $q";
}

# an update moves an attendee into an incremental sync, keeps its place
my $sync = $now - 10;
my @changed = @att[ 4, 77, 120 ];
my $oldcat = $att[4]{categoryId};
for my $a (@changed) {
    $a->{scanned} = 1 - $a->{scanned};
    $a->{categoryId} = 42;
    $a->{updated} = $iso->($now);
    $s->attendee('fest', $a);
}
$s->flush;
($r, $j) = api('fest', 'updated_since=' . $iso->($sync));
is_deeply ids($j), oracle(since => $sync), 'updated since the last sync';
is scalar @{ ids($j) }, 3, '... the three changed attendees';
($r, $j) = api('fest', 'category_id=42');
is_deeply ids($j), oracle(category => 42), 'indexes follow the update';
($r, $j) = api('fest', 'category_id=' . $oldcat);
ok !grep({ $_ == $att[4]{id} } @{ ids($j) }), '... out of the old category';
is_deeply all_pages('fest', 'scanned=true', 50, 'scanned after update'),
    oracle(scanned => 1), '... scanned index updated';


# 20,000 attendees: a one-index filter reads its page, not the event

my $big = ReadSeed->new($h, org => 'acme');
$big->{ev} = $s->{ev};
$big->event({ id => 4, slug => 'big', title => 'Big',
              starts => '2026-12-01T19:00:00Z' });
my $N = 20000;
for my $i (1 .. $N) {
    $big->attendee('big', { id => $i, name => "Person $i",
                            email => "p$i\@example.com",
                            createdTime => 1780000000 + $i,
                            scanned => $i % 4 == 0 ? 1 : 0,
                            promo => $i % 100 == 0 ? 1 : 0,
                            categoryId => $i % 7 });
}
$big->flush;

sub stats {
    my %c;
    for ($h->redis('INFO', 'commandstats')) {
        $c{$1} = $2 if /^cmdstat_(\w+):calls=(\d+)/;
    }
    return \%c;
}

for my $q ('scanned=true&page=30', 'promo=true&page=2&page_size=50',
           'category_id=3&page=20', 'page=150')
{
    $h->redis('CONFIG', 'RESETSTAT');
    my $t1 = time;
    ($r, $j) = api('big', $q);
    my $dt = time - $t1;
    is $r->{status}, 200, "big: $q";
    my $c = stats();
    ok !$c->{zscore} && !$c->{hgetall} && !$c->{hscan}
        && !$c->{zrangebyscore} && !$c->{hvals},
        '... no membership tests, no scans' or diag explain $c;
    is $c->{zrange} // 0, 1, '... one ZRANGE by rank';
    ok(($c->{hmget} // 0) <= 3, '... HMGETs: the key, the event, the page')
        or diag explain $c;
    cmp_ok $dt, '<', 0.5, "... answered in ${dt}s";
}
($r, $j) = api('big', 'scanned=true&page=30');
is $j->{totalItems}, $N / 4, 'big: scanned total';
is_deeply ids($j), [ map { $_ * 4 } 2901 .. 3000 ], 'big: page 30';
($r, $j) = api('big', 'promo=true&page=2&page_size=50');
is_deeply ids($j), [ map { $_ * 100 } 51 .. 100 ], 'big: promo page 2';
($r, $j) = api('big', 'scanned=true&promo=true&page=2&page_size=10');
is $j->{totalItems}, $N / 100, 'big: scanned and promo total';
is_deeply ids($j), [ map { $_ * 100 } 11 .. 20 ], 'big: combined page';
($r, $j) = api('big', 'search=person+1999');
is_deeply ids($j), [ 1999, 19990 .. 19999 ], 'big: search scans';

# search folds case beyond ASCII, in the stored text and the query alike
{
    my $u = ReadSeed->new($h, org => 'acme', now => $now);
    $u->event({ id => 60, slug => 'intl', title => 'Intl',
                starts => '2026-09-01T19:00:00Z' });
    my @names = ("\x{c9}LODIE Dupont", "Zo\x{eb} M\x{fc}ller",
                 "\x{3a3}\x{3bf}\x{3c6}\x{3af}\x{3b1} \x{3a0}\x{3b1}\x{3c0}\x{3ac}",
                 "\x{41e}\x{43b}\x{44c}\x{433}\x{430} \x{418}\x{432}\x{430}",
                 "NGUY\x{1ec4}N V\x{102}N An", "\x{141}ukasz \x{17b}\x{f3}\x{142}w");
    for my $i (0 .. $#names) {
        $u->attendee('intl', { id => 601 + $i, name => $names[$i],
                               createdTime => $iso->(1780000000 + $i) });
    }
    # an attendee imported before folding: its text lowered in ASCII only
    my $old = ReadSeed->new($h, org => 'acme', now => $now,
                            ascii_search => 1);
    $old->{ev} = $u->{ev};
    $old->attendee('intl', { id => 650, name => "\x{c9}LODIE Legacy",
                             createdTime => $iso->(1780000100) });
    $u->flush;
    $old->flush;
    for my $c (["\x{e9}lodie", [601]], ["\x{c9}LODIE", [601, 650]],
               ["\x{c9}lodie", [601, 650]], ["M\x{dc}LLER", [602]],
               ["\x{3c3}\x{3bf}\x{3c6}\x{3af}\x{3b1}", [603]],
               ["\x{3a0}\x{391}\x{3a0}\x{386}", [603]],
               ["\x{43e}\x{43b}\x{42c}\x{413}\x{410}", [604]],
               ["nguy\x{1ec5}n v\x{103}n", [605]],
               ["\x{142}UKASZ \x{17c}\x{d3}\x{141}W", [606]]) {
        my ($q, $want) = @$c;
        ($r, $j) = api('intl', 'search=' . ReadSeed::qs($q));
        is $r->{status}, 200, 'search=' . ReadSeed::qs($q);
        is_deeply ids($j), $want, '... finds ' . join(',', @$want);
    }
    for my $bad ('%0A', 'a%0Db', '%09', '%7F') {
        ($r, $j) = api('intl', "search=$bad");
        is $r->{status}, 400, "search=$bad (a control character): 400";
        is $j->{details}[0]{field}, 'search', '... names search';
    }
    # a broken escape was dropped by nginx's unescape: "" matched all
    for my $bad ('%', '%2', 'a%zz', '%G0') {
        ($r, $j) = api('intl', "search=$bad");
        is $r->{status}, 400, "search=$bad (a malformed escape): 400";
        is_deeply [ map { $_->{field} } @{ $j->{details} } ], ['search'],
            '... names search, once';
        like $j->{details}[0]{message}, qr/%25/, '... says how to write %';
    }
    # a piece of a character would match inside other characters
    for my $bad ('%BC', '%C3', 'a%C3%28', '%E4%B8', '%F4%90%80%80') {
        ($r, $j) = api('intl', "search=$bad");
        is $r->{status}, 400, "search=$bad (not UTF-8): 400";
        is_deeply [ map { [$_->{field}, $_->{message}] }
                    @{ $j->{details} || [] } ],
            [['search', 'must be UTF-8']], '... says search must be UTF-8';
    }
    # a parameter given twice counts once, with its last value
    ($r, $j) = api('intl', 'search=%zz&search=' . ReadSeed::qs("\x{e9}lodie"));
    is $r->{status}, 200, 'search=%zz then a good search: the last counts';
    is_deeply ids($j), [601], '... and finds by it';
    ($r, $j) = api('intl', 'search=x&search=%');
    is $r->{status}, 400, 'a good search then search=%: 400, the last counts';
    ($r, $j) = api('intl', 'page=%3');
    is_deeply [ map { $_->{field} } @{ $j->{details} || [] } ], ['page'],
        'page=%3: 400 naming page once';
    ($r, $j) = api('intl', 'search=%25');
    is $r->{status}, 200, 'search=%25 (a percent sign) is a search';
    is_deeply ids($j), [], '... that finds no one here';
}

unlike $h->error_log, qr/\[(?:alert|crit|emerg)\]/, 'no alerts in the log';

$h->done;
done_testing;
