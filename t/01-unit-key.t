#!/usr/bin/perl
# C unit tests of the pure logic (key format, hashing, CIDR, scopes, rate
# strings): compiled here and run; the program prints TAP.
use strict;
use warnings;
use FindBin;

my $root = "$FindBin::Bin/..";
my $out = "$root/t/tmp/test_key";
mkdir "$root/t/tmp";
my $cc = $ENV{CC} // 'cc';
my $san = $ENV{INTEGRATIONS_ASAN} ? '-fsanitize=address,undefined' : '';
system("$cc -Wall -Wextra -O1 -g $san -I$root/src -o $out "
       . "$root/t/unit/test_key.c $root/src/ngx_integrations_key.c "
       . "-lcrypto -lz") == 0
    or do { print "1..0 # SKIP cannot compile the unit tests\n"; exit 1 };
exec $out;
