#!/usr/bin/perl
# The page cache: a page is served from the worker's cache only while
# Redis says its data set's version (D:ver, bumped by every import line)
# is the one it was rendered at. Every change made by integrationsctl is
# visible on the very next request; ETags follow the data; a cache that is
# off serves the same bytes; Redis gone is a 503, never a cached page.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Harness;
use ReadSeed;
use Keys;

my $h = Harness->new;
plan skip_all => 'integrationsctl is not built (make cli)'
    unless -x $h->build . '/integrationsctl';

my $status = <<'EOF';
    location = /status { integrations_status; }
EOF
$h->start_nginx(ReadSeed::conf(extra => $status, rate => '100000r/m'));

my $J = JSON::PP->new->utf8->canonical;

sub ndjson { join '', map { $J->encode($_) . "\n" } @_ }

sub import_ok {
    my ($org, @lines) = @_;
    my ($rc, $out, $err) = $h->ctl_stdin(ndjson(@lines), 'data', 'import',
                                         '--org', $org, '-');
    is($rc, 0, "import into $org") or diag "$out$err";
}

sub key_for {
    my ($org) = @_;
    my ($rc, $out) = $h->ctl('keys', 'create', '--org', $org, '--name', 'pc',
                             '--scopes', 'events:read,attendees:read',
                             '--json');
    return $J->decode($out)->{key};
}

sub pages {
    my $s = $h->json($h->get('/status?format=json'));
    return ($s->{pages}{cached}, $s->{pages}{fetched});
}

sub event {
    my (%o) = @_;
    return { kind => 'event', id => 1, slug => 'gala', title => 'Gala',
             starts => '2026-09-01T19:00:00Z', status => 'approved',
             published => JSON::PP::true, passCount => 0, revenue => 0,
             updated => '2026-03-01T10:00:00Z', %o };
}

sub attendee {
    my ($id, %o) = @_;
    return { kind => 'attendee', event => 'gala', id => $id,
             name => "Guest $id", email => "g$id\@example.com",
             createdTime => sprintf('2026-04-01T10:00:%02dZ', $id),
             promo => JSON::PP::false, scanned => JSON::PP::false,
             reference => "R$id", category => 'General', categoryId => 5,
             updated => '2026-04-02T00:00:00Z', %o };
}

import_ok('acme', event(), map { attendee($_) } 1 .. 3);
import_ok('other', event(title => 'Other Gala'));
my $key = key_for('acme');
my $okey = key_for('other');
my %hd = ('X-Api-Key' => $key);
my $ver = $h->redis('GET', '{o:acme}:live:ver');
ok($ver, "imports set D:ver ($ver)");

# the first read fetches, the second is served from the cache
my ($c0, $f0) = pages();
my $r1 = $h->get('/v2/integrations/events', \%hd);
is($r1->{status}, 200, 'events: 200');
my $r2 = $h->get('/v2/integrations/events', \%hd);
is($r2->{status}, 200, 'events again: 200');
is($r2->{content}, $r1->{content}, 'same bytes from the cache');
is($r2->{headers}{etag}, $r1->{headers}{etag}, 'same ETag');
like($r2->{headers}{'content-type'}, qr{^application/json}, 'JSON');
is($r2->{headers}{'cache-control'}, 'private, no-cache', 'Cache-Control');
is($r2->{headers}{'content-length'}, length $r1->{content},
   'Content-Length of the cached page');
# the rate-limit headers are this request's, not the cached page's
is($r1->{headers}{'ratelimit-limit'}, 100000, 'RateLimit-Limit');
is($r2->{headers}{'ratelimit-limit'}, 100000, '... on the cached page');
is($r2->{headers}{'ratelimit-remaining'},
   $r1->{headers}{'ratelimit-remaining'} - 1,
   'RateLimit-Remaining of the cached page counts this request');
is($r2->{headers}{'ratelimit-policy'}, '"default";q=100000;w=60',
   'RateLimit-Policy');
my ($c1, $f1) = pages();
is($f1 - $f0, 1, 'one page fetched from Redis');
is($c1 - $c0, 1, 'one page served from the cache');
is($h->json($r2)->{items}[0]{title}, 'Gala', 'the data');

# a cached page costs the key's script and one GET, nothing else
sub calls {
    my %c;
    for ($h->redis('INFO', 'commandstats')) {
        $c{$1} = $2 if /^cmdstat_(\w+):calls=(\d+)/;
    }
    return \%c;
}
my $before = calls();
for (1 .. 10) {
    is($h->get('/v2/integrations/events', \%hd)->{content}, $r1->{content},
       "cached page $_");
}
my $after = calls();
my %delta = map { $_ => ($after->{$_} // 0) - ($before->{$_} // 0) }
            keys %$after;
delete $delta{info};
is($delta{get}, 10, 'one GET of the version per request');
is(($delta{evalsha} // 0) + ($delta{eval} // 0), 10,
   'one script per request: the key check');
is($delta{zcard} // 0, 0, 'the page script did not run');
is($delta{hmget}, 10, 'the key record read once per request');

# If-None-Match against a cached page
my $r = $h->get('/v2/integrations/events',
                { %hd, 'If-None-Match' => $r1->{headers}{etag} });
is($r->{status}, 304, 'If-None-Match on a cached page: 304');

# another organization with the same slug: its own page
$r = $h->get('/v2/integrations/events', { 'X-Api-Key' => $okey });
is($h->json($r)->{items}[0]{title}, 'Other Gala', 'other org: its data');
$r = $h->get('/v2/integrations/events', \%hd);
is($h->json($r)->{items}[0]{title}, 'Gala', 'and acme still its own');

# a change through the CLI shows on the very next request
$h->get("/v2/integrations/events/gala", \%hd) for 1 .. 2;
import_ok('acme', event(title => 'Gala (moved)'));
ok($h->redis('GET', '{o:acme}:live:ver') > $ver, 'D:ver went up');
$r = $h->get('/v2/integrations/events', \%hd);
is($h->json($r)->{items}[0]{title}, 'Gala (moved)', 'list: new title');
isnt($r->{headers}{etag}, $r1->{headers}{etag}, 'list: new ETag');
$r = $h->get('/v2/integrations/events',
             { %hd, 'If-None-Match' => $r1->{headers}{etag} });
is($r->{status}, 200, 'the old ETag no longer matches: 200');
$r = $h->get('/v2/integrations/events/gala', \%hd);
is($h->json($r)->{title}, 'Gala (moved)', 'detail: new title');

# attendees: pages, aliases and filters are distinct pages
my $att = '/v2/integrations/events/gala/attendees';
my $p1 = $h->json($h->get("$att?page_size=2", \%hd));
my $p2 = $h->json($h->get("$att?page_size=2&page=2", \%hd));
is_deeply([ map { $_->{id} } @{ $p1->{items} } ], [ 1, 2 ], 'page 1');
is_deeply([ map { $_->{id} } @{ $p2->{items} } ], [ 3 ], 'page 2');
is_deeply($h->json($h->get("$att?limit=2", \%hd)), $p1,
          'limit alias: the same page');
is($h->json($h->get("$att?page_size=2&page=2", \%hd))->{totalItems}, 3,
   'page 2 again, from the cache');
is(scalar @{ $h->json($h->get("$att?scanned=true", \%hd))->{items} }, 0,
   'a filter is a page of its own');

import_ok('acme', attendee(4), attendee(2, scanned => JSON::PP::true));
$p2 = $h->json($h->get("$att?page_size=2&page=2", \%hd));
is($p2->{totalItems}, 4, 'an added attendee counts at once');
is_deeply([ map { $_->{id} } @{ $p2->{items} } ], [ 3, 4 ],
          'and shows on its page');
is_deeply([ map { $_->{id} } @{ $h->json($h->get("$att?scanned=true",
                                                  \%hd))->{items} } ],
          [ 2 ], 'a changed attendee moves between filters at once');

import_ok('acme', { kind => 'delete_attendee', event => 'gala', id => 4 });
is($h->json($h->get("$att?page_size=2&page=2", \%hd))->{totalItems}, 3,
   'a deleted attendee is gone at once');

# an event deleted: 404 at once, not a cached page
my ($rc, $out, $err) = $h->ctl('data', 'delete', '--org', 'acme',
                               '--event', 'gala');
is($rc, 0, 'data delete') or diag "$out$err";
is($h->get('/v2/integrations/events/gala', \%hd)->{status}, 404,
   'deleted event: 404');
is($h->json($h->get('/v2/integrations/events', \%hd))->{totalItems}, 0,
   'deleted event: not listed');
is($h->get($att, \%hd)->{status}, 404, 'its attendees: 404');

# a data set no import versioned (written by another tool): never cached
my $seed = ReadSeed->new($h, org => 'seeded');
$seed->event({ id => 7, slug => 'seeded', title => 'Seeded',
               starts => '2026-09-01T19:00:00Z', status => 'approved',
               published => 1 });
$seed->flush;
my ($skey) = Keys::make_key($h, org => 'seeded', scopes => 'events:read');
is($h->json($h->get('/v2/integrations/events',
                    { 'X-Api-Key' => $skey }))->{items}[0]{title},
   'Seeded', 'seeded data set readable');
my ($c3) = pages();
$h->get('/v2/integrations/events', { 'X-Api-Key' => $skey }) for 1 .. 3;
my ($c4) = pages();
is($c4, $c3, 'no D:ver: nothing served from the cache');

# integrations_cache off: the same bytes, nothing cached
import_ok('acme', event(slug => 'third', id => 3));
my $n2 = $h->nginx2("integrations_cache off;\n" . ReadSeed::conf(
    extra => $status));
my $on = $h->get('/v2/integrations/events', \%hd);
my $off = $h->get('/v2/integrations/events', \%hd, port => $n2->port);
is($off->{status}, 200, 'cache off: 200');
is($off->{content}, $on->{content}, 'cache off: the same body');
is($off->{headers}{etag}, $on->{headers}{etag}, 'cache off: the same ETag');
$n2->get('/v2/integrations/events', \%hd) for 1 .. 2;
my $s2 = $h->json($h->get('/status?format=json', undef, port => $n2->port));
is($s2->{pages}{fetched}, 3, 'cache off: every page fetched')
    or diag explain $s2;
is($s2->{pages}{cached}, 0, 'cache off: none served from a cache');

# a data set deleted and written again never repeats a version
import_ok('reset', event(title => 'First'));
my $rkey = key_for('reset');
my $v1 = $h->redis('GET', '{o:reset}:live:ver');
ok($v1 > 1e15, "a new version starts at Redis's clock in microseconds");
$h->get('/v2/integrations/events', { 'X-Api-Key' => $rkey }) for 1 .. 2;
$h->redis('DEL', map { $_ } $h->redis('--scan', '--pattern', '{o:reset}:live*'));
is($h->redis('EXISTS', '{o:reset}:live:ver'), 0, 'data set deleted');
import_ok('reset', event(title => 'Second'));
my $v2 = $h->redis('GET', '{o:reset}:live:ver');
ok($v2 > $v1, "written again: a later version ($v2 > $v1)");
is($h->json($h->get('/v2/integrations/events',
                    { 'X-Api-Key' => $rkey }))->{items}[0]{title},
   'Second', 'the new data, not the page cached before the delete');

# hundreds of pages (the table grows past its first 256 buckets): each
# found again after the growth, each answer the same as when fetched
{
    my (%first, $same);
    my ($c0, $f0) = pages();
    for my $p (1 .. 300) {
        $first{$p} = $h->get("/v2/integrations/events?page=$p&page_size=1",
                             \%hd)->{content};
    }
    my ($c1, $f1) = pages();
    is($f1 - $f0, 300, '300 distinct pages: each fetched once');
    $same = grep {
        $h->get("/v2/integrations/events?page=$_&page_size=1", \%hd)
          ->{content} eq $first{$_}
    } 1 .. 300;
    my ($c2, $f2) = pages();
    is($c2 - $c1, 300, '... then each served from the cache');
    is($f2, $f1, '... with no fetch');
    is($same, 300, '... and the same bytes');
    like($first{1}, qr/"page":1,/, '... (page 1 is page 1)');
    like($first{300}, qr/"page":300,/, '... (page 300 is page 300)');
}

# Redis gone: 503, never an unconfirmed page
import_ok('acme', event(slug => 'again', id => 2));
$h->get('/v2/integrations/events', \%hd) for 1 .. 2;
my ($c2) = pages();
ok($c2 > $c1, 'pages were served from the cache');
$h->stop_redis;
$r = $h->get('/v2/integrations/events', \%hd);
is($r->{status}, 503, 'Redis down: 503');
like($r->{headers}{'content-type'}, qr{^application/json}, '503 is JSON');

# directive errors
my ($trc, $tout) = $h->nginx_test("integrations_cache lots;\n"
                                  . ReadSeed::conf());
isnt($trc, 0, 'integrations_cache lots: nginx -t fails');
like($tout, qr/invalid page cache size "lots".*\.conf:\d+/,
     'with the file and line');
($trc, $tout) = $h->nginx_test("integrations_cache 1m;\n"
                               . "integrations_cache 2m;\n"
                               . ReadSeed::conf());
like($tout, qr/"integrations_cache" directive is duplicate/,
     'duplicate integrations_cache refused');

done_testing;
