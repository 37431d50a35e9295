#!/usr/bin/perl
# The fuzz target's inputs in t/fuzz/corpus (seeds, and what `make fuzz`
# found worth keeping) replayed through its property checks with the
# ordinary compiler: a property that breaks aborts the program.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use CProgram;

my @inputs = sort glob "$FindBin::Bin/fuzz/corpus/*";
@inputs or do { print "1..1\nnot ok 1 - no inputs in t/fuzz/corpus\n"; exit 1 };
exec CProgram::build('fuzz_replay', 't/fuzz/fuzz_key.c', 't/fuzz/replay.c',
                     'src/ngx_integrations_key.c'), @inputs;
