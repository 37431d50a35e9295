#!/usr/bin/perl
# `make run` as the README's quick start uses it (scripts/run.sh, here on
# free ports and a temporary directory): the demo key it prints works on
# the curl lines it prints, and `make stop` (run.sh stop) ends it all.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Harness;

my $root  = Harness->root;
my $build = $ENV{INTEGRATIONS_BUILD} // 'build';
plan skip_all => "no $build/ to run" unless -e "$root/$build/integrationsctl";

mkdir "$root/t/tmp" unless -d "$root/t/tmp";
my $dir = tempdir('make-run-XXXX', DIR => "$root/t/tmp", CLEANUP => 1);
my %env = (
    PORT => Harness::_free_port(), REDIS_PORT => Harness::_free_port(),
    RUN_DIR => $dir, INTEGRATIONS_BUILD => $build,
);
if ($ENV{INTEGRATIONS_ASAN}) {
    # an nginx loading a sanitized module needs the runtimes preloaded
    $env{LD_PRELOAD} = join ':', grep { m{/} && -e } map {
        my $p = `gcc -print-file-name=$_ 2>/dev/null` // '';
        chomp $p;
        $p;
    } qw(libasan.so libubsan.so);
    $env{ASAN_OPTIONS} = "detect_leaks=0:log_path=$dir/asan";
    $env{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$dir/ubsan";
}

sub run_sh {
    my ($arg) = @_;
    local @ENV{ keys %env } = values %env;
    my $out = `$root/scripts/run.sh $arg 2>&1`;
    return ($? >> 8, $out);
}
END { run_sh('stop') if $env{PORT} }

my ($rc, $out) = run_sh('');
is($rc, 0, 'run.sh starts Redis and nginx') or diag $out;
my ($key) = $out =~ /shown once\):\s+(\S+)/;
like($key // '', qr/^qkt_live_[a-z0-9]{8}_\w{38}$/, 'it prints a demo key');
like($out, qr{http://127\.0\.0\.1:$env{PORT}/v2/integrations},
     '... and the URL');

my $http = HTTP::Tiny->new(timeout => 10);
my $base = "http://127.0.0.1:$env{PORT}/v2/integrations";
sub api {
    my ($path, $hd) = @_;
    my $r = $http->get("$base$path", { headers => $hd });
    is($r->{status}, 200, "GET $path") or diag $r->{content};
    return eval { decode_json($r->{content}) } // {};
}

is(api('/whoami', { Authorization => "Bearer $key" })->{org}, 'demo',
   'whoami: the demo organization');
my $ev = api('/events?page=1&page_size=50', { Authorization => "Bearer $key" });
ok((grep { $_->{slug} eq 'summer-fest' } @{ $ev->{items} || [] }),
   'events: the demo data, summer-fest among them');
my $att = api('/events/summer-fest/attendees?scanned=true',
              { 'X-Api-Key' => $key });
ok(ref $att->{items} eq 'ARRAY' && exists $att->{eventFields},
   'attendees: a list with its eventFields');
ok(!grep({ !$_->{scanned} } @{ $att->{items} || [] }),
   '... every one scanned');

($rc, $out) = run_sh('stop');
is($rc, 0, 'run.sh stop') or diag $out;
ok(!defined IO::Socket::INET->new(PeerAddr => "127.0.0.1:$env{PORT}"),
   'nginx is gone');
ok(!defined IO::Socket::INET->new(PeerAddr => "127.0.0.1:$env{REDIS_PORT}"),
   'Redis is gone');
delete $env{PORT};
is_deeply([ glob("$dir/asan* $dir/ubsan*") ], [], 'no sanitizer reports')
    if $ENV{INTEGRATIONS_ASAN};

done_testing;
