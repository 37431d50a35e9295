#!/usr/bin/perl
# integrationsctl data import -> the read API -> what the API returned,
# imported back into another organization -> the API answers identically
# (bodies and ETags). Also: the API shows exactly what the NDJSON said, and
# data written by t/lib/ReadSeed.pm (the tests' own writer of
# docs/DATA_MODEL.md) reads the same as data written by the real CLI.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
plan skip_all => 'integrationsctl is not built (make cli)'
    unless -x $h->build . '/integrationsctl';

$h->start_nginx(ReadSeed::conf());

my $J = JSON::PP->new->utf8->canonical->allow_nonref;

# the data set: events with everything, attendees with every field,
# values chosen to be awkward
my @lines;
my @titles = ('Summer Fest', "Caf\x{e9} \"Cr\x{e8}me\" \\ \x{1F389}",
              "Line\nbreak\tand \x01 control", 'Plain');
my $aid = 100;
for my $e (1 .. 4) {
    my $slug = "rt-event-$e";
    push @lines, {
        kind => 'event', id => $e * 10, slug => $slug,
        title => $titles[$e - 1],
        starts => sprintf('2026-0%d-01T19:00:00Z', $e + 4),
        ends => $e == 3 ? undef : sprintf('2026-0%d-01T23:00:00Z', $e + 4),
        status => $e == 2 ? 'draft' : 'approved',
        published => $e == 2 ? JSON::PP::false : JSON::PP::true,
        passCount => 12 * $e, revenue => $e == 4 ? 0 : 1234.5 * $e,
        updated => '2026-03-0' . $e . 'T10:00:00Z',
        ticketTypes => [
            { id => $e * 100 + 1, name => 'GA', price => 2500,
              quantity => 100, available => 40, hidden => JSON::PP::false,
              salesStart => '2026-01-01T00:00:00Z', salesEnd => undef,
              minPerOrder => 1, maxPerOrder => 8 },
            { id => $e * 100 + 2, name => "VIP \x{2728}", price => 0,
              quantity => 10, available => 0, hidden => JSON::PP::true },
        ],
        availability => { eventId => $e * 10, available => 40,
                          soldOut => JSON::PP::false,
                          ticketTypes => [ { id => $e * 100 + 1,
                                             available => 40 } ] },
        eventFields => [ { id => 1, name => 'Company', type => 'text' } ],
        categoryFields => [ { categoryId => 5, fields => ['T-shirt size'] } ],
    };
    for my $i (1 .. ($e == 1 ? 260 : 15)) {
        $aid++;
        push @lines, {
            kind => 'attendee', event => $slug, id => $aid,
            name => ($i % 7 ? "Person $i" : "O'Brien \"Q\" \\ \x{c9}\x{1F600}"),
            email => "p$i\@example.com",
            phone => $i % 5 ? sprintf('+27 82 %07d', $i) : undef,
            createdTime => sprintf('2026-04-%02dT%02d:00:00Z', 1 + $i % 28,
                                   $i % 24),
            promo => ($i % 9 == 0) ? JSON::PP::true : JSON::PP::false,
            scanned => ($i % 2) ? JSON::PP::true : JSON::PP::false,
            reference => "R-$aid", identifier => "ID$aid",
            category => $i % 3 ? 'General' : 'Student',
            categoryId => $i % 3 ? 5 : 6,
            amount => $i % 3 ? 150.5 : 75, paid => JSON::PP::true,
            customFields => $i % 4 ? { Company => "Acme $i" } : {},
            updated => sprintf('2026-05-01T00:00:%02dZ', $i % 60),
        };
    }
}

sub ndjson { join '', map { $J->encode($_) . "\n" } @_ }

sub ctl_ok {
    my ($in, @args) = @_;
    my ($rc, $out, $err) = defined $in ? $h->ctl_stdin($in, @args)
                                       : $h->ctl(@args);
    is $rc, 0, "integrationsctl @args" or diag "$out$err";
    return $out;
}

sub key_for {
    my ($org) = @_;
    my $out = ctl_ok(undef, 'keys', 'create', '--org', $org, '--name', 'rt',
                     '--scopes', 'events:read,attendees:read', '--json');
    my $j = eval { $J->decode($out) } || {};
    ok $j->{key}, "a key for $org" or diag $out;
    return $j->{key};
}

# every response of the read API for one key, by path
sub snapshot {
    my ($key) = @_;
    my %snap;
    my $get = sub {
        my ($p) = @_;
        my $r = $h->get($p, { 'X-Api-Key' => $key });
        is $r->{status}, 200, "GET $p" or return;
        $snap{$p} = $r;
        return $h->json($r);
    };
    my @events;
    for (my $page = 1; ; $page++) {
        my $j = $get->("/v2/integrations/events?page=$page&page_size=2")
            or last;
        push @events, @{ $j->{items} };
        last if $page >= $j->{totalPages};
    }
    my %data = (events => \@events);
    for my $ev (@events) {
        my $b = "/v2/integrations/events/$ev->{slug}";
        $data{detail}{ $ev->{slug} } = $get->($b);
        $data{tt}{ $ev->{slug} } = $get->("$b/ticket-types");
        $data{av}{ $ev->{slug} } = $get->("$b/availability");
        for (my $page = 1; ; $page++) {
            my $j = $get->("$b/attendees?page=$page&page_size=100") or last;
            push @{ $data{att}{ $ev->{slug} } }, @{ $j->{items} };
            $data{ef}{ $ev->{slug} } = $j->{eventFields};
            $data{cf}{ $ev->{slug} } = $j->{categoryFields};
            last if $page >= $j->{totalPages};
        }
        for my $q ('scanned=true', 'promo=true&scanned=false',
                   'category_id=6', 'search=o%27brien', 'search=EXAMPLE',
                   'search=%C3%A9%F0%9F%98%80',
                   'updated_since=2026-05-01T00:00:30Z&page_size=7&page=2')
        {
            $get->("$b/attendees?$q");
        }
    }
    for my $q ('status=draft', 'search=caf%C3%A9', 'liveOnly=true',
               'dateFrom=2026-06-01&dateTo=2026-07-01',
               'updated_since=2026-03-02T10:00:00Z')
    {
        $get->("/v2/integrations/events?$q");
    }
    return (\%snap, \%data);
}


# 1. import, read back: the API shows what the NDJSON said

ctl_ok(ndjson(@lines), 'data', 'import', '--org', 'rt1', '-');
my $k1 = key_for('rt1');
my ($s1, $d1) = snapshot($k1);

my @in_events = grep { $_->{kind} eq 'event' } @lines;
is scalar @{ $d1->{events} }, scalar @in_events, 'every event listed';
for my $in (@in_events) {
    my %want = map { $_ => $in->{$_} } @ReadSeed::EVENT_FIELDS;
    my ($got) = grep { $_->{id} == $in->{id} } @{ $d1->{events} };
    is_deeply $got, \%want, "event $in->{slug}: the list item";
    is_deeply [ @ReadSeed::EVENT_FIELDS ],
        [ grep { exists $got->{$_} } @ReadSeed::EVENT_FIELDS ],
        '... every event field present';
    is_deeply $d1->{tt}{ $in->{slug} },
        { eventId => $in->{id}, items => $in->{ticketTypes} },
        '... ticket types';
    is_deeply $d1->{detail}{ $in->{slug} }{ticketTypes}, $in->{ticketTypes},
        '... detail carries the ticket types';
    is $d1->{detail}{ $in->{slug} }{title}, $in->{title}, '... detail title';
    is_deeply $d1->{av}{ $in->{slug} }, $in->{availability},
        '... availability';
    is_deeply $d1->{ef}{ $in->{slug} }, $in->{eventFields}, '... eventFields';
    is_deeply $d1->{cf}{ $in->{slug} }, $in->{categoryFields},
        '... categoryFields';
    my @atts = grep { $_->{kind} eq 'attendee'
                      && $_->{event} eq $in->{slug} } @lines;
    my @want = map {
        my $a = $_;
        +{ map { $_ => $a->{$_} } @ReadSeed::ATTENDEE_FIELDS };
    } sort {
        ReadSeed::epoch($a->{createdTime}) <=> ReadSeed::epoch($b->{createdTime})
            || $a->{id} <=> $b->{id}
    } @atts;
    is_deeply $d1->{att}{ $in->{slug} }, \@want,
        '... attendees, in createdTime order, every field';
}


# 2. what the API returned, imported into another org: the same answers

my @back;
for my $ev (@{ $d1->{events} }) {
    my $slug = $ev->{slug};
    push @back, { kind => 'event', %{ $d1->{detail}{$slug} },
                  availability => $d1->{av}{$slug},
                  eventFields => $d1->{ef}{$slug},
                  categoryFields => $d1->{cf}{$slug} };
    push @back, map { { kind => 'attendee', event => $slug, %$_ } }
        @{ $d1->{att}{$slug} };
}
ctl_ok(ndjson(@back), 'data', 'import', '--org', 'rt2', '-');
my $k2 = key_for('rt2');
my ($s2) = snapshot($k2);

is_deeply [ sort keys %$s2 ], [ sort keys %$s1 ], 'the same requests';
for my $p (sort keys %$s1) {
    is $s2->{$p}{content}, $s1->{$p}{content}, "re-imported: $p identical";
    is $s2->{$p}{headers}{etag}, $s1->{$p}{headers}{etag}, '... same ETag';
}

# importing the same lines again changes nothing
ctl_ok(ndjson(@back), 'data', 'import', '--org', 'rt2', '-');
my ($s3) = snapshot($k2);
is_deeply [ map { $s3->{$_}{content} } sort keys %$s3 ],
    [ map { $s2->{$_}{content} } sort keys %$s2 ], 'idempotent';


# 3. the tests' own writer agrees with the CLI

my $seed = ReadSeed->new($h, org => 'rt4');
for my $l (@lines) {
    my %l = %$l;
    my $kind = delete $l{kind};
    if ($kind eq 'event') {
        my %o = map { $_ => delete $l{$_} }
            qw(ticketTypes availability eventFields categoryFields);
        $seed->event(\%l, %o);
    } else {
        my $ev = delete $l{event};
        $seed->attendee($ev, \%l);
    }
}
$seed->flush;
my ($krt4) = make_key($h, org => 'rt4');
my ($s4) = snapshot($krt4);
for my $p (sort grep { !m{/events/[^/?]+$} } keys %$s1) {
    is $s4->{$p}{content}, $s1->{$p}{content},
        "ReadSeed and integrationsctl agree: $p";
}


# 4. a list item imported back loses nothing of the detail; numbers and
# key order come back as they were written

my $line5 = '{"kind":"event","id":51,"slug":"five","title":"Five",'
    . '"starts":"2026-09-01T19:00:00Z","revenue":19.99,"venueName":"Hall",'
    . '"description":"a, b} {c]","where":{"city":"Durban","geo":[-29.85,31.02]},'
    . '"ticketTypes":[{"id":1,"name":"GA","price":2500,"fee":0.1,'
    . '"tax":0.30000000000000004}],'
    . '"updated":"2026-08-01T00:00:00Z"}' . "\n"
    . '{"kind":"attendee","event":"five","id":7,"name":"Zoe",'
    . '"createdTime":"2026-08-01T10:00:00Z","amount":19.99,'
    . '"customFields":{"Zeta":1,"Alpha":2.5},'
    . '"updated":"2026-08-01T00:00:00Z"}' . "\n";
ctl_ok($line5, 'data', 'import', '--org', 'rt5', '-');
my $k5 = key_for('rt5');
my $B5 = '/v2/integrations/events';
my $get5 = sub { $h->get($_[0], { 'X-Api-Key' => $k5 }) };
{
    my $d = $get5->("$B5/five");
    like $d->{content}, qr/"revenue":19\.99,/, 'a decimal as it was written';
    like $d->{content}, qr/"geo":\[-29\.85,31\.02\]/, '... inside the rest';
    like $d->{content}, qr/"fee":0\.1,/, '... in a ticket type';
    like $d->{content}, qr/"tax":0\.30000000000000004\}/,
        '... each number its own: one that needs 17 digits beside it';
    like $d->{content},
        qr/"venueName":"Hall","description":"a, b\} \{c\]","where":/,
        '... the other fields in the order given';
    my $a = $get5->("$B5/five/attendees");
    like $a->{content}, qr/"amount":19\.99,/, 'an attendee amount as written';
    like $a->{content}, qr/"customFields":\{"Zeta":1,"Alpha":2\.5\}/,
        'customFields in the order given';

    my $item = $h->json($get5->("$B5?search=five"))->{items}[0];
    ctl_ok(ndjson({ kind => 'event', %$item }), 'data', 'import', '--org',
           'rt5', '-');
    my $again = $get5->("$B5/five");
    is $again->{content}, $d->{content},
        'a list item imported back: the detail keeps its other fields';
    is $again->{headers}{etag}, $d->{headers}{etag}, '... and its ETag';

    # a field the line does carry replaces the stored one; the rest stay
    ctl_ok(ndjson({ kind => 'event', %$item, venueName => 'Dome' }),
           'data', 'import', '--org', 'rt5', '-');
    my $j = $h->json($get5->("$B5/five"));
    is $j->{venueName}, 'Dome', 'a field given again is replaced';
    is $j->{description}, 'a, b} {c]', '... the others kept';
    is_deeply $j->{where}, { city => 'Durban', geo => [ -29.85, 31.02 ] },
        '... nested ones too';
}


# 5. an import that runs while a sync starts: what it writes after the
# sync's start shows up in the next sync from that start

{
    my $cmd = $h->ctl_shell('data', 'import', '--org', 'rt5', '-');
    open(my $in, '|-', "$cmd 2>'" . $h->dir . "/slow.err'")
        or die "integrationsctl: $!";
    select((select($in), $| = 1)[0]);
    select(undef, undef, undef, 1.2);
    my ($sec, $usec) = $h->redis('TIME');
    my @t = gmtime $sec;
    my $since = sprintf '%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', $t[5] + 1900,
        $t[4] + 1, @t[3, 2, 1, 0], int($usec / 1000);
    my $q = "$B5/five/attendees?updated_since=$since";
    my $first = $h->json($get5->($q));
    is $first->{totalItems}, 0, "a sync from $since: nothing yet";
    print $in '{"kind":"attendee","event":"five","id":8,"name":"Late",'
        . '"createdTime":"2026-08-02T10:00:00Z"}' . "\n";
    close $in;
    is $?, 0, 'the slow import succeeded';
    my $next = $h->json($get5->($q));
    is_deeply [ map { $_->{id} } @{ $next->{items} } ], [8],
        'the next sync from that start gets what the import wrote';
    like $next->{items}[0]{updated} // '',
        qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
        '... stamped to the millisecond';
    ok(($next->{items}[0]{updated} // '') ge $since,
       '... not before the sync started');
}

$h->done;
done_testing;
