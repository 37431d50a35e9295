#!/usr/bin/perl
# C unit tests of the pure logic (key format, hashing, CIDR, scopes, rate
# strings): compiled here and run; the program prints TAP.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use CProgram;

exec CProgram::build('test_key', 't/unit/test_key.c',
                     'src/ngx_integrations_key.c');
