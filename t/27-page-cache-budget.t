#!/usr/bin/perl
# The page cache under a small budget: pages are evicted least recently
# used first and every answer stays right; a page over an eighth of the
# budget is never kept; pages evicted while concurrent requests send them
# are freed only after (ASan runs check that).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Harness;
use ReadSeed;

my $h = Harness->new;
plan skip_all => 'integrationsctl is not built (make cli)'
    unless -x $h->build . '/integrationsctl';

$h->start_nginx("integrations_cache 64k;\n" . ReadSeed::conf(
    extra => "    location = /status { integrations_status; }\n"));

my $J = JSON::PP->new->utf8->canonical;

# 40 events, each about 2 KB: 80 KB of pages for a 64 KB budget
my @lines = map {
    { kind => 'event', id => $_, slug => "ev-$_",
      title => "Event $_ " . ('x' x 1500),
      starts => sprintf('2026-09-%02dT19:00:00Z', 1 + $_ % 28),
      status => 'approved', published => JSON::PP::true,
      passCount => 0, revenue => 0, updated => '2026-03-01T10:00:00Z' }
} 1 .. 40;
my ($rc, $out, $err) = $h->ctl_stdin(join('', map { $J->encode($_) . "\n" }
                                          @lines),
                                     'data', 'import', '--org', 'acme', '-');
is($rc, 0, 'import') or diag "$out$err";
($rc, $out) = $h->ctl('keys', 'create', '--org', 'acme', '--name', 'b',
                      '--scopes', 'events:read', '--json');
my %hd = ('X-Api-Key' => $J->decode($out)->{key});

sub pages {
    my $s = $h->json($h->get('/status?format=json'));
    return ($s->{pages}{cached}, $s->{pages}{fetched});
}

# every event page by id, asked twice in a row, three rounds: 80 KB of
# pages cycled through a 64 KB budget, least recently used first out
my $wrong = 0;
for my $round (1 .. 3) {
    for my $id (1 .. 40) {
        for (1 .. 2) {
            my $r = $h->get("/v2/integrations/events/$id", \%hd);
            my $j = $r->{status} == 200 ? $h->json($r) : {};
            $wrong++ unless ($j->{title} // '') eq "Event $id " . ('x' x 1500);
        }
    }
}
is($wrong, 0, '240 detail requests over 40 pages: every answer right');
my ($cached, $fetched) = pages();
is($fetched, 120, 'a cycle longer than the budget: every first ask fetches');
is($cached, 120, 'every second ask, right after, is served from the cache');

# the most recent pages stay: the last one asked is served from the cache
$h->get('/v2/integrations/events/40', \%hd);
my ($c1) = pages();
$h->get('/v2/integrations/events/40', \%hd);
my ($c2) = pages();
is($c2 - $c1, 1, 'the page just fetched is kept');

# a page over an eighth of the budget (8 KB) is sent but never kept
my $big = $h->get('/v2/integrations/events?page_size=40', \%hd);
is($big->{status}, 200, 'a 60 KB page: 200');
is(scalar @{ $h->json($big)->{items} }, 40, 'with its 40 items');
my ($c3) = pages();
my $again = $h->get('/v2/integrations/events?page_size=40', \%hd);
is($again->{content}, $big->{content}, 'the same page again');
my ($c4) = pages();
is($c4, $c3, 'not from the cache');

# concurrent requests over more pages than fit: evictions while sending
my $res = $h->parallel(200, 20, sub {
    my ($i) = @_;
    my $id = 1 + $i % 40;
    my $r = $h->get("/v2/integrations/events/$id", \%hd);
    my $j = eval { $h->json($r) } || {};
    return { status => $r->{status}, title => $j->{title}, id => $id };
});
is(scalar(grep { $_ && $_->{status} == 200 } @$res), 200,
   '200 concurrent requests over 40 pages (20 at a time): all 200');
is(scalar(grep { !$_ || ($_->{title} // '') ne
                        "Event $_->{id} " . ('x' x 1500) } @$res), 0,
   'each with its own page');

done_testing;
