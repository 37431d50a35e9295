#!/usr/bin/perl
# GET /v2/integrations/events: the envelope, order, pagination at its
# boundaries, every filter alone and combined (checked against an oracle
# over the same data), validation errors, methods, and isolation between
# organizations and between the live and test data sets.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
$h->start_nginx(ReadSeed::conf());

my ($key)  = make_key($h, org => 'acme');
my ($tkey) = make_key($h, org => 'acme', env => 'test');
my ($okey) = make_key($h, org => 'other');

my $now = time;
my $day = 86400;
my $iso = \&ReadSeed::iso;

# id, slug, title, starts (offset in days), ends (offset), status,
# published, updated (offset in days)
my @spec = (
    [ 1, 'summer-fest', 'Summer Fest', -30, -29.8, 'finished', 1, -20 ],
    [ 2, 'jazz-night', 'Jazz Night', 10, 10.2, 'approved', 1, -1 ],
    [ 3, 'cafe-creme', "Caf\x{e9} Cr\x{e8}me Evening", 12, 12.2,
      'approved', 1, -2 ],
    [ 4, 'secret-draft', 'Secret Draft', 20, 20.1, 'draft', 0, -3 ],
    [ 5, 'ongoing-expo', 'Ongoing Expo', -0.1, 0.3, 'ONGOING', 1, -4 ],
    [ 6, 'no-end', 'No End Party', 5, undef, 'Approved', 1, -5 ],
    [ 7, 'past-no-end', 'Past Party', -5, undef, 'approved', 1, -6 ],
    [ 9, 'twin-b', 'Twin Show B', 40, 40.1, 'approved', 1, -7 ],
    [ 8, 'twin-a', 'Twin Show A', 40, 40.1, 'approved', 1, -8 ],
    [ 10, 'jazz-brunch', 'Sunday Brunch', 41, 41.1, 'draft', 1, -9 ],
);
# filler, so that pagination has pages
for my $i (11 .. 27) {
    push @spec, [ $i, "filler-$i", "Filler Event $i", 50 + $i, 50.1 + $i,
                  $i % 3 ? 'approved' : 'cancelled', $i % 2, -10 - $i ];
}

my @events;
my $seed = ReadSeed->new($h, org => 'acme');
for my $e (@spec) {
    my %ev = (
        id => $e->[0], slug => $e->[1], title => $e->[2],
        starts => $iso->(int($now + $e->[3] * $day)),
        ends => defined $e->[4] ? $iso->(int($now + $e->[4] * $day)) : undef,
        status => $e->[5], published => $e->[6],
        passCount => 10 * $e->[0], revenue => 100.5 * $e->[0],
        updated => $iso->(int($now + $e->[7] * $day)),
    );
    $seed->event(\%ev);
    push @events, {
        %ev,
        s => int($now + $e->[3] * $day),
        e => defined $e->[4] ? int($now + $e->[4] * $day) : undef,
        u => int($now + $e->[7] * $day),
    };
}
$seed->flush;

# the same org's test data set and another org: never visible here
my $test = ReadSeed->new($h, org => 'acme', env => 'test');
$test->event({ id => 100, slug => 'test-only', title => 'Test Only',
               starts => $iso->($now), status => 'approved', published => 1 });
$test->flush;
my $other = ReadSeed->new($h, org => 'other');
$other->event({ id => 200, slug => 'other-org', title => 'Jazz Elsewhere',
                starts => $iso->($now), status => 'approved',
                published => 1 });
$other->flush;

my $B = '/v2/integrations/events';

sub api {
    my ($q, $k) = @_;
    my $r = $h->get($B . (length $q ? "?$q" : ''),
                    { 'X-Api-Key' => $k // $key });
    return ($r, $h->json($r));
}

sub ids { [ map { $_->{id} } @{ $_[0]{items} } ] }

# the expected ids for a filter, in the API's order
sub oracle {
    my (%f) = @_;
    my @m = @events;
    if (defined $f{status}) {
        @m = grep { lc $_->{status} eq lc $f{status} } @m;
    }
    if (defined $f{search}) {
        my $n = $f{search};
        utf8::encode($n);
        $n = ReadSeed::fold($n);
        @m = grep {
            my $t = $_->{title};
            utf8::encode($t);
            index(ReadSeed::fold("$t\n$_->{slug}"), $n) >= 0;
        } @m;
    }
    @m = grep { $_->{s} >= $f{from} } @m if defined $f{from};
    @m = grep { $_->{s} <= $f{to} } @m if defined $f{to};
    @m = grep { $_->{published} && ($_->{e} // $_->{s}) >= time } @m
        if $f{live};
    @m = grep { $_->{u} >= $f{since} } @m if defined $f{since};
    return [ map { $_->{id} } sort {
        $a->{s} <=> $b->{s} || $a->{id} <=> $b->{id}
    } @m ];
}

# every page of a query; checks the envelope of each
sub all_pages {
    my ($q, $size, $name) = @_;
    my (@ids, $total);
    my $page = 1;
    while (1) {
        my ($r, $j) = api(join('&', grep { length } $q,
                               "page=$page", "page_size=$size"));
        is $r->{status}, 200, "$name: page $page is 200" or return [];
        is $j->{page}, $page, "$name: page $page echoed";
        is $j->{pageSize}, $size, "$name: pageSize";
        $total //= $j->{totalItems};
        is $j->{totalItems}, $total, "$name: totalItems stable";
        my $pages = int(($total + $size - 1) / $size);
        is $j->{totalPages}, $pages, "$name: totalPages";
        push @ids, @{ ids($j) };
        last if $page >= $pages;
        $page++;
    }
    is scalar(@ids), $total, "$name: totalItems = items over all pages";
    return \@ids;
}


# the envelope, defaults, order

my ($r, $j) = api('');
is $r->{status}, 200, 'list is 200';
like $r->{headers}{'content-type'}, qr{^application/json}, 'JSON';
ok $r->{headers}{etag}, 'ETag';
is_deeply [ sort keys %$j ],
    [ qw(items page pageSize totalItems totalPages) ], 'envelope keys';
is $j->{page}, 1, 'page defaults to 1';
is $j->{pageSize}, 50, 'page_size defaults to 50';
is $j->{totalItems}, scalar @events, 'totalItems';
is $j->{totalPages}, 1, 'totalPages';
is_deeply ids($j), oracle(), 'ordered by starts, then id';
my @twins = grep { $_ == 8 || $_ == 9 } @{ ids($j) };
is_deeply \@twins, [ 8, 9 ], 'equal starts: by id';
like $r->{content}, qr/^\{"items":\[\{"id":1,"slug":"summer-fest"/,
    'items are the stored JSON';
my ($fest) = grep { $_->{id} == 3 } @{ $j->{items} };
is_deeply [ sort keys %$fest ],
    [ sort qw(id slug title starts ends status published passCount revenue
              updated) ], 'event fields';
is $fest->{title}, "Caf\x{e9} Cr\x{e8}me Evening", 'UTF-8 title intact';
ok JSON::PP::is_bool($fest->{published}), 'published is a boolean';


# pagination

is_deeply all_pages('', 10, 'by 10'), oracle(), 'pages of 10 = the list';
is_deeply all_pages('', 1, 'by 1'), oracle(), 'pages of 1 = the list';
is_deeply all_pages('', 100, 'by 100'), oracle(), 'page_size 100 (max)';

($r, $j) = api('page=3&page_size=10');
is scalar @{ $j->{items} }, @events - 20, 'last page is partial';
($r, $j) = api('page=4&page_size=10');
is $r->{status}, 200, 'page past the end is 200';
is_deeply $j->{items}, [], '... with no items';
is $j->{totalItems}, scalar @events, '... and the totals';
is $j->{totalPages}, 3, '... and totalPages';
($r, $j) = api('page=999999999999&page_size=100');
is $r->{status}, 200, 'a huge page is 200';
is_deeply $j->{items}, [], '... empty';

($r, $j) = api('limit=7');
is $j->{pageSize}, 7, 'limit is an alias of page_size';
is scalar @{ $j->{items} }, 7, '... 7 items';
($r, $j) = api('limit=7&page=2');
is_deeply ids($j), [ @{ oracle() }[7 .. 13] ], 'limit with page';
($r, $j) = api('page_size=5&limit=7');
is $j->{pageSize}, 5, 'page_size wins over limit';
($r, $j) = api('page_size=5&limit=abc');
is $r->{status}, 200, 'page_size given: a bad limit is not read';
is $j->{pageSize}, 5, '... page_size counts';
($r, $j) = api('page=2&page_size=10&page_size=3');
is $j->{pageSize}, 3, 'a repeated parameter: the last counts';
($r, $j) = api('page%5Fsize=4&%70age=2');
is $j->{pageSize}, 4, 'a %-escaped name: page%5Fsize is page_size';
is $j->{page}, 2, '... and %70age is page';
($r, $j) = api('page%5fsize%3D4');
is $j->{pageSize}, 50, 'an escaped "=" is part of the name, not a value';
($r, $j) = api('%page_size=3&page_size%=3&page_siz%e=3');
is $r->{status}, 200, 'names with broken escapes: ignored';
is $j->{pageSize}, 50, '... none of them is page_size';
($r, $j) = api(join('', map { sprintf '%%%02X', ord } split //, 'updated_since')
               . '=garbage');
is $r->{status}, 400, 'a name escaped whole (39 bytes) is still read';
is $j->{details}[0]{field}, 'updated_since', '... as updated_since';
($r, $j) = api('Page=2&foo=bar&page_size=abc_ignored_no&x');
is $r->{status}, 400, 'page_size=abc... is invalid (name matched)';
($r, $j) = api('foo=bar&PAGE=7&pageSize=1&x&=&&');
is $r->{status}, 200, 'unknown parameters are ignored';
is $j->{page}, 1, '... (names are case-sensitive)';
is $j->{pageSize}, 50, '... pageSize is not page_size';


# validation: every bad field at once

($r, $j) = api('page=0&page_size=101&liveOnly=maybe&dateFrom=yesterday'
               . '&updated_since=garbage&dateTo=2026-13-01');
is $r->{status}, 400, 'invalid parameters: 400';
like $r->{headers}{'content-type'}, qr{^application/json}, '400 is JSON';
is $j->{error}, 'Validation failed', 'error';
is_deeply [ sort map { $_->{field} } @{ $j->{details} } ],
    [ sort qw(page page_size liveOnly dateFrom updated_since dateTo) ],
    'every bad field is listed';
ok !grep({ !length $_->{message} } @{ $j->{details} }), 'with messages';

for my $bad ('page=abc', 'page=-1', 'page=1.5', 'page=', 'page=%201',
             'page_size=0', 'page_size=101', 'page_size=x', 'limit=101',
             'limit=0', 'liveOnly=yes', 'liveOnly=', 'dateFrom=2026-02-30',
             'dateFrom=2026-1-1', 'dateTo=2026-01-01T25:00:00Z',
             'dateFrom=2026-01-01T10:00:00+2', 'updated_since=1700000000',
             'updated_since=2026-01-01T10:00:00Q',
             'search=' . ('x' x 300))
{
    my ($f) = $bad =~ /^(\w+)/;
    ($r, $j) = api($bad);
    is $r->{status}, 400, "$bad is 400";
    is $j->{details}[0]{field}, $f, "... names $f";
}

($r, $j) = api('page=1' . ('0' x 18));
is $r->{status}, 400, 'a page past 18 digits is 400';
is $j->{details}[0]{message}, 'must be an integer from 1 to 999999999999999999',
   '... saying the range';
($r, $j) = api('dateFrom=2026-05-01&dateTo=2026-04-01');
is $r->{status}, 400, 'dateTo before dateFrom is 400';
is $j->{details}[0]{field}, 'dateTo', '... names dateTo';
for my $q ('dateFrom=2026-05-02&dateTo=2026-05-01',
           'dateFrom=2026-05-01T10:00:00.5Z&dateTo=2026-05-01T10:00:00.4Z',
           'dateFrom=2026-05-01T10:00:00.5Z&dateTo=2026-05-01T10:00:00Z')
{
    ($r, $j) = api($q);
    is $r->{status}, 400, "$q: dateTo before dateFrom";
    is $j->{details}[0]{field}, 'dateTo', '... names dateTo';
}
for my $q ('dateFrom=2026-05-01&dateTo=2026-05-01',
           'dateFrom=2026-05-01T23:59:59.9Z&dateTo=2026-05-01',
           'dateFrom=2026-05-01T10:00:00.5Z&dateTo=2026-05-01T10:00:00.5Z',
           'dateFrom=2026-05-01T10:00:00.4Z&dateTo=2026-05-01T10:00:00.5Z')
{
    ($r, $j) = api($q);
    is $r->{status}, 200, "$q: a range";
}

for my $ok ('page=1', 'page=0001', 'page_size=1', 'page_size=100',
            'limit=100', 'liveOnly=true', 'liveOnly=false', 'liveOnly=TRUE',
            'liveOnly=1', 'liveOnly=0', 'dateFrom=2026-01-01',
            'dateFrom=2026-01-01T10:00Z', 'dateFrom=2026-01-01T10:00:00.123Z',
            'dateFrom=2026-01-01T10:00:00%2B02:00',
            'dateFrom=2026-01-01T10:00:00+02:00',
            'dateFrom=2026-01-01T10:00:00-0530', 'dateTo=2024-02-29',
            'updated_since=2026-01-01T00:00:00Z', 'status=', 'search=')
{
    ($r, $j) = api($ok);
    is $r->{status}, 200, "$ok is valid";
}


# filters alone

for my $st (qw(approved APPROVED Approved draft ongoing cancelled nothing)) {
    ($r, $j) = api("status=$st");
    is_deeply ids($j), oracle(status => $st), "status=$st";
    is $j->{totalItems}, scalar @{ oracle(status => $st) }, '... total';
}

for my $q ('jazz', 'JAZZ', 'Night', 'twin-', 'show b', 'brunch',
           "caf\x{e9}", "\x{e9}", "CAF\x{c9}", "CR\x{c8}ME", "\x{c9}",
           'Filler Event 1', 'nothing at all',
           'summer-fest', 'fest')
{
    ($r, $j) = api('search=' . ReadSeed::qs($q));
    is_deeply ids($j), oracle(search => $q), "search=$q";
}
($r, $j) = api('search=show+b');
is_deeply ids($j), oracle(search => 'show b'), '+ is a space';
($r, $j) = api('search=%C3%A9');
is_deeply ids($j), [3], 'search=%C3%A9 finds the accented title';
($r, $j) = api('search=jazz-b');
is_deeply ids($j), [10], 'search matches the slug';

my $t2 = $iso->(int($now + 10 * $day));
($r, $j) = api("dateFrom=$t2");
is_deeply ids($j), oracle(from => int($now + 10 * $day)),
    'dateFrom is inclusive';
($r, $j) = api("dateTo=$t2");
is_deeply ids($j), oracle(to => int($now + 10 * $day)),
    'dateTo is inclusive';
($r, $j) = api("dateFrom=$t2&dateTo=$t2");
is_deeply ids($j), [2], 'dateFrom = dateTo = starts: that event';
my ($d) = $t2 =~ /^(\d{4}-\d\d-\d\d)/;
my $d0 = ReadSeed::epoch($d);
($r, $j) = api("dateTo=$d");
is_deeply ids($j), oracle(to => $d0 + $day - 1),
    'a date-only dateTo includes that whole day';
($r, $j) = api("dateFrom=$d");
is_deeply ids($j), oracle(from => $d0), 'a date-only dateFrom: from 00:00';
(my $t2o = $t2) =~ s/Z$/+00:00/;
($r, $j) = api('dateFrom=' . ReadSeed::qs($t2o));
is_deeply ids($j), oracle(from => int($now + 10 * $day)), 'offset +00:00';
my @t = gmtime(int($now + 10 * $day) + 2 * 3600);
my $t2p = sprintf '%04d-%02d-%02dT%02d:%02d:%02d+02:00', $t[5] + 1900,
    $t[4] + 1, @t[3, 2, 1, 0];
($r, $j) = api('dateFrom=' . ReadSeed::qs($t2p));
is_deeply ids($j), oracle(from => int($now + 10 * $day)),
    'offset +02:00 is converted';
(my $t2sp = $t2p) =~ s/\+/%20/;
($r, $j) = api("dateFrom=$t2p");
is_deeply ids($j), oracle(from => int($now + 10 * $day)),
    'an unencoded + in the offset (a space) still means +';
($r, $j) = api("dateFrom=$t2sp");
is_deeply ids($j), oracle(from => int($now + 10 * $day)), '... %20 too';
($r, $j) = api("dateFrom=" . $iso->(int($now + 10 * $day) + 1));
ok !grep({ $_ == 2 } @{ ids($j) }), 'dateFrom one second later excludes it';
($r, $j) = api("dateFrom=" . substr($t2, 0, 19) . '.001Z');
ok !grep({ $_ == 2 } @{ ids($j) }), '... as does one millisecond';

($r, $j) = api('liveOnly=true');
is_deeply ids($j), oracle(live => 1),
    'liveOnly: published and not ended (an event without an end: starts)';
ok grep({ $_ == 5 } @{ ids($j) }), '... an ongoing event is live';
ok !grep({ $_ == 4 } @{ ids($j) }), '... an unpublished one is not';
ok !grep({ $_ == 1 } @{ ids($j) }), '... an ended one is not';
($r, $j) = api('liveOnly=false');
is_deeply ids($j), oracle(), 'liveOnly=false: no filter';

for my $ago (-30, -5, -2, 0) {
    my $since = int($now + $ago * $day);
    ($r, $j) = api('updated_since=' . $iso->($since));
    is_deeply ids($j), oracle(since => $since), "updated_since $ago days";
}


# combined, and with pagination

my @combos = (
    [ 'status=approved&search=twin', status => 'approved', search => 'twin' ],
    [ 'status=approved&liveOnly=true', status => 'approved', live => 1 ],
    [ "search=e&dateFrom=$t2&liveOnly=true", search => 'e',
      from => int($now + 10 * $day), live => 1 ],
    [ 'status=approved&updated_since=' . $iso->(int($now - 9 * $day)),
      status => 'approved', since => int($now - 9 * $day) ],
    [ "dateFrom=$t2&dateTo=" . $iso->(int($now + 45 * $day)),
      from => int($now + 10 * $day), to => int($now + 45 * $day) ],
    [ 'search=filler&status=approved&liveOnly=true&updated_since='
      . $iso->(int($now - 30 * $day)), search => 'filler',
      status => 'approved', live => 1, since => int($now - 30 * $day) ],
);
for my $c (@combos) {
    my ($q, %f) = @$c;
    ($r, $j) = api($q);
    is_deeply ids($j), oracle(%f), "combined: $q";
    is_deeply all_pages($q, 2, $q), oracle(%f), "... by pages of 2";
}


# methods

$r = $h->request('HEAD', $B, { 'X-Api-Key' => $key });
is $r->{status}, 200, 'HEAD is 200';
is $r->{content} // '', '', '... without a body';
my ($g) = api('');
is $r->{headers}{etag}, $g->{headers}{etag}, '... with the same ETag';
is $r->{headers}{'content-length'}, length $g->{content},
    '... and Content-Length';
for my $m (qw(POST PUT DELETE PATCH)) {
    $r = $h->request($m, $B, { 'X-Api-Key' => $key }, '{}');
    is $r->{status}, 405, "$m is 405";
    is $r->{headers}{allow}, 'GET, HEAD', '... Allow: GET, HEAD';
    is $h->json($r)->{error}, 'Method not allowed', '... JSON';
}


# isolation: org and env come from the key

($r, $j) = api('', $tkey);
is_deeply ids($j), [100], 'a test key sees the test data set only';
($r, $j) = api('search=jazz', $okey);
is_deeply ids($j), [200], 'another org sees its own events only';
my ($nkey) = make_key($h, org => 'empty');
($r, $j) = api('', $nkey);
is $r->{status}, 200, 'an org without data: 200';
is_deeply $j, { items => [], page => 1, pageSize => 50, totalItems => 0,
                totalPages => 0 }, '... an empty list';

$r = $h->get($B);
is $r->{status}, 401, 'no key: 401';
# (a handler in a location without apikey on fails nginx -t: t/42)

unlike $h->error_log, qr/\[(?:alert|crit|emerg)\]/, 'no alerts in the log';

$h->done;
done_testing;
