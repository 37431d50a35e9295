#!/usr/bin/perl
# ETag on every 200 and If-None-Match -> 304; every body valid JSON on
# hostile data (quotes, backslashes, control characters, emoji, other
# scripts, invalid UTF-8 in a key record); Redis failures are JSON 503s.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
$h->start_nginx(ReadSeed::conf(failure => 'open', timeout => '300ms'));

my ($key) = make_key($h, org => 'acme');
my $strict = JSON::PP->new->utf8->allow_nonref;

my $s = ReadSeed->new($h, org => 'acme');
$s->event({ id => 1, slug => 'fest', title => 'Fest',
            starts => '2026-09-01T19:00:00Z', status => 'approved',
            published => 1 },
          ticketTypes => [ { id => 1, name => 'GA', price => 100 } ],
          availability => { eventId => 1, available => 5 });
for my $i (1 .. 30) {
    $s->attendee('fest', { id => $i, name => "Person $i",
                           createdTime => 1780000000 + $i });
}
$s->flush;

sub get {
    my ($path, %hdr) = @_;
    return $h->get($path, { 'X-Api-Key' => $key, %hdr });
}


# ETag on every 200, and 304

my @paths = ('/v2/integrations/events', '/v2/integrations/events?page=2',
             '/v2/integrations/events/fest',
             '/v2/integrations/events/fest/ticket-types',
             '/v2/integrations/events/fest/availability',
             '/v2/integrations/events/fest/attendees',
             '/v2/integrations/events/fest/attendees?page_size=5&page=2',
             '/v2/integrations/whoami');
my %seen;
for my $p (@paths) {
    my $r = get($p);
    is $r->{status}, 200, "$p: 200";
    my $etag = $r->{headers}{etag};
    like $etag, qr/^"[0-9a-f]{16}"$/, "$p: ETag $etag";
    ok !$seen{$etag}++, '... different bodies, different tags';
    is $r->{headers}{'cache-control'}, 'private, no-cache',
        '... private, revalidated';
    is get($p)->{headers}{etag}, $etag, '... stable';

    for my $inm ($etag, "W/$etag", "\"nope\", $etag", '*',
                 "\"a\",$etag,\"b\"")
    {
        my $r2 = get($p, 'If-None-Match' => $inm);
        is $r2->{status}, 304, "If-None-Match: $inm -> 304";
        is $r2->{headers}{etag}, $etag, '... with the ETag';
        is $r2->{content} // '', '', '... and no body';
    }
    for my $inm ('"0000000000000000"', '"nope", "other"', 'W/"x"') {
        my $r2 = get($p, 'If-None-Match' => $inm);
        is $r2->{status}, 200, "If-None-Match: $inm -> 200";
        is $r2->{content}, $r->{content}, '... the body';
    }
    my $r4 = get($p, 'If-None-Match' => $etag,
                 'If-Modified-Since' => 'Thu, 01 Jan 1970 00:00:00 GMT');
    is $r4->{status}, 304, 'If-None-Match wins over If-Modified-Since';
    my $r3 = $h->request('HEAD', $p,
                         { 'X-Api-Key' => $key, 'If-None-Match' => $etag });
    is $r3->{status}, 304, 'HEAD with If-None-Match: 304';
}

my $p = '/v2/integrations/events/fest/attendees';
my $old = get($p)->{headers}{etag};
$s->attendee('fest', { id => 31, name => 'Late Comer',
                       createdTime => 1780000100 });
$s->flush;
my $r = get($p, 'If-None-Match' => $old);
is $r->{status}, 200, 'the data changed: the old tag gets a 200';
isnt $r->{headers}{etag}, $old, '... and a new tag';
is get($p, 'If-None-Match' => $r->{headers}{etag})->{status}, 304,
    '... which is then a 304';


# hostile data: every body through a strict decoder

my @hostile = (
    qq{Quote " inside "twice"},
    q{Back\\slash \\ and \\\\ double, \\u0041 literal},
    "Controls \x00\x01\x02\x07\x08\t\n\x0b\x0c\r\x1b\x1f end",
    "DEL \x7f",
    "Emoji \x{1F389}\x{1F3B6} and \x{1F468}\x{200D}\x{1F469}\x{200D}\x{1F467}",
    "CJK \x{4E2D}\x{6587} Arabic \x{627}\x{644}\x{639}\x{631}\x{628}\x{64A}\x{629}",
    "Accents \x{e9}\x{e8}\x{ea} \x{c9}T\x{c9} \x{df}",
    "Separators \x{2028} and \x{2029}",
    "</script><script>alert(1)</script>",
    "{\"items\":[],\"page\":99}",
    "\x{FEFF}BOM and \x{FFFD}",
    ' ' x 3 . 'spaces ' . '&amp;%20+%' ,
);
my $hs = ReadSeed->new($h, org => 'hostile');
my $n = 0;
for my $t (@hostile) {
    $n++;
    $hs->event({ id => $n, slug => "ev-$n", title => $t,
                 starts => 1780000000 + $n, status => $t,
                 published => 1 },
               ticketTypes => [ { id => $n, name => $t } ],
               availability => { eventId => $n, note => $t },
               eventFields => [ { name => $t } ],
               categoryFields => [ { name => $t } ]);
    my $m = 0;
    for my $u (@hostile) {
        $m++;
        $hs->attendee("ev-$n", { id => $m, name => $u, email => $u,
                                 phone => $u, reference => $u,
                                 createdTime => 1780000000 + $m,
                                 customFields => { $u => $u } });
    }
}
$hs->flush;
my ($hkey, $hid) = make_key($h, org => 'hostile',
                            name => "Key \"q\" \\ \x01\n\t\x{1F511}");
utf8::encode(my $hname = "Key \"q\" \\ \x01\n\t\x{1F511}");
$h->redis('HSET', "{k:$hid}", 'name', $hname);

my $bodies = 0;
sub check {
    my ($path, $k) = @_;
    my $r = $h->get($path, { 'X-Api-Key' => $k // $hkey });
    my $j = eval { $strict->decode($r->{content}) };
    ok defined $j, "$path: $r->{status}, valid JSON" or diag $@;
    $bodies++;
    return ($r, $j);
}

my ($res, $j) = check('/v2/integrations/events?page_size=100');
is_deeply [ map { $_->{title} } @{ $j->{items} } ], \@hostile,
    'every hostile title comes back unchanged';
for my $i (1 .. @hostile) {
    my ($r2, $e) = check("/v2/integrations/events/ev-$i");
    is $e->{title}, $hostile[$i - 1], "event $i detail: title";
    ($r2, $e) = check("/v2/integrations/events/ev-$i/ticket-types");
    is $e->{items}[0]{name}, $hostile[$i - 1], '... ticket type name';
    ($r2, $e) = check("/v2/integrations/events/ev-$i/availability");
    is $e->{note}, $hostile[$i - 1], '... availability';
    ($r2, $e) = check("/v2/integrations/events/ev-$i/attendees");
    is_deeply [ map { $_->{name} } @{ $e->{items} } ], \@hostile,
        '... attendee names';
    is_deeply [ map { $_->{customFields} } @{ $e->{items} } ],
        [ map { { $_ => $_ } } @hostile ], '... custom fields';
    is $e->{eventFields}[0]{name}, $hostile[$i - 1], '... eventFields';
}

# searching for the hostile characters themselves
for my $q ('"', '\\', "\x{1F389}", "\x{4E2D}", '</script>', "\x{e9}", '%',
           '+', "\x{2028}", '{"items"')
{
    my ($r2, $e) = check('/v2/integrations/events/ev-1/attendees?search='
                         . ReadSeed::qs($q));
    my @want;
    for my $i (0 .. $#hostile) {
        my $t = $hostile[$i];
        utf8::encode($t);
        my $l = ReadSeed::fold($t);
        my $n = $q;
        utf8::encode($n);
        $n = ReadSeed::fold($n);
        push @want, $i + 1 if index($l, $n) >= 0;
    }
    is_deeply [ map { $_->{id} } @{ $e->{items} } ], \@want,
        "search for " . ReadSeed::qs($q);
    ($r2, $e) = check('/v2/integrations/events?search=' . ReadSeed::qs($q));
    ($r2, $e) = check('/v2/integrations/events?status=' . ReadSeed::qs($q));
}
($res, $j) = check('/v2/integrations/events?status='
                   . ReadSeed::qs($hostile[0]));
is_deeply [ map { $_->{id} } @{ $j->{items} } ], [1],
    'status matches a hostile value exactly';

# the identity: quotes, control characters, emoji in the key's name
($res, $j) = check('/v2/integrations/whoami');
is $j->{name}, "Key \"q\" \\ \x01\n\t\x{1F511}", 'whoami: hostile name';
$h->redis('HSET', "{k:$hid}", 'name', "bad \xff\xfe utf-8 \xc3");
$h->redis('HINCRBY', "{k:$hid}", 'gen', 1);   # a hand edit: DATA_MODEL.md
($res, $j) = check('/v2/integrations/whoami');
is $j->{name}, "bad \x{FFFD}\x{FFFD} utf-8 \x{FFFD}",
    'invalid UTF-8 in a key record becomes U+FFFD';
$h->redis('HSET', "{k:$hid}", 'scopes', "events:read \"x\\y\" \x{01}");
$h->redis('HINCRBY', "{k:$hid}", 'gen', 1);
($res, $j) = check('/v2/integrations/whoami');
is_deeply $j->{scopes}, [ 'events:read', "\"x\\y\"", "\x01" ],
    'hostile scopes are escaped';

# the errors too
check('/v2/integrations/events?page=%22%5C%00&dateFrom=%E2%82%AC');
check('/v2/integrations/events/%E2%82%AC%22/attendees?page_size=%F0%9F');
check('/v2/integrations/events/nope');
ok $bodies > 50, "$bodies bodies decoded";


# Redis failures: always JSON

my ($rkey) = make_key($h, org => 'acme');
is get('/v2/integrations/events')->{status}, 200, 'before the outage';
$h->redis('SET', '{o:broken}:live:slugs', 'not a hash');
my ($bkey) = make_key($h, org => 'broken');
$r = $h->get('/v2/integrations/events/x', { 'X-Api-Key' => $bkey });
is $r->{status}, 503, 'a script error: 503';
is_deeply $h->json($r), { error => 'Service unavailable' }, '... JSON';
ok $h->logs_contain('unexpected reply from redis'), '... logged';

$h->stop_redis;
for my $p (qw(/v2/integrations/events /v2/integrations/events/fest
              /v2/integrations/events/fest/attendees))
{
    $r = get($p);
    is $r->{status}, 503, "Redis down (key admitted by the open policy): $p";
    is_deeply $h->json($r), { error => 'Service unavailable' }, '... JSON';
}
$r = get('/v2/integrations/whoami');
is $r->{status}, 200, 'whoami needs no Redis';
$h->start_redis;

unlike $h->error_log, qr/\[(?:alert|crit|emerg)\]/, 'no alerts in the log';

$h->done;
done_testing;
