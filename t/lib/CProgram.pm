package CProgram;
# Builds a C test program from the project's sources (with ASan and UBSan
# under make test-asan) into t/tmp; on failure prints TAP's skip and
# exits 1, so prove reports the test as failed.
use strict;
use warnings;
use FindBin;

sub build {
    my ($name, @sources) = @_;
    my $root = "$FindBin::Bin/..";
    my $out = "$root/t/tmp/$name";
    mkdir "$root/t/tmp";
    my $cc = $ENV{CC} // 'cc';
    my $san = $ENV{INTEGRATIONS_ASAN} ? '-fsanitize=address,undefined' : '';
    my $srcs = join ' ', map { "$root/$_" } @sources;
    system("$cc -Wall -Wextra -O1 -g $san -I$root/src -o $out $srcs "
           . "-lcrypto -lz") == 0
        or do { print "1..0 # SKIP cannot compile $name\n"; exit 1 };
    return $out;
}

1;
