#!/usr/bin/perl
# Every configuration in conf-examples/ passes `nginx -t` with the module.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp qw(tempdir);
use Harness;

my $root = Harness->root;
my $build = $ENV{INTEGRATIONS_BUILD} // 'build';
$build = "$root/$build" unless $build =~ m{^/};   # as t/lib/Harness.pm
my $module = "$build/ngx_http_integrations_module.so";
my @confs = sort glob "$root/conf-examples/*.conf";
ok(scalar(@confs) >= 2, 'examples exist');

for my $conf (@confs) {
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    open my $in, '<', $conf or die;
    my $text = do { local $/; <$in> };
    $text =~ s/\@MODULE\@/$module/g;
    $text =~ s/\@PORT\@/18999/g;
    $text =~ s/\@REDIS\@/127.0.0.1:6379/g;
    $text =~ s/\@BACKEND\@/127.0.0.1:19000/g;
    unlike($text, qr/\@[A-Z]+\@/, "$conf: every placeholder documented");
    open my $out, '>', "$dir/nginx.conf" or die;
    print $out $text;
    close $out;
    # an ASan-built module needs the sanitizer runtimes preloaded
    local $ENV{LD_PRELOAD} = join ':', grep { m{/} && -e } map {
        my $p = `gcc -print-file-name=$_ 2>/dev/null`;
        chomp $p;
        $p;
    } qw(libasan.so libubsan.so) if $ENV{INTEGRATIONS_ASAN};
    local $ENV{ASAN_OPTIONS} = 'detect_leaks=0' if $ENV{INTEGRATIONS_ASAN};
    my $res = `nginx -t -p $dir -c $dir/nginx.conf -g "pid $dir/nginx.pid;" -e stderr 2>&1`;
    is($?, 0, "nginx -t: $conf") or diag $res;
}

done_testing;
