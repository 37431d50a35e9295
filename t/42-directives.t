#!/usr/bin/perl
# Every bad directive form fails `nginx -t` naming the file and the line;
# good forms pass. No Redis is needed to test a configuration.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;

my $h = Harness->new(redis => 0);

sub conf {
    my ($http, $loc) = @_;
    $http //= 'integrations_redis 127.0.0.1:6379;';
    return "$http\nserver {\n    listen 127.0.0.1:%%PORT%%;\n"
         . "    location / {\n        $loc\n    }\n}\n";
}

# the directive under test is on line 4 of the snippet (see conf())
sub bad {
    my ($name, $http, $loc, $msg) = @_;
    my ($rc, $out, $file) = $h->nginx_test(conf($http, $loc));
    isnt($rc, 0, "nginx -t fails: $name");
    like($out, qr/\Q$file\E:\d+/, "$name: names file and line") or diag $out;
    like($out, $msg, "$name: says what is wrong") if $msg;
}

sub good {
    my ($name, $http, $loc) = @_;
    my ($rc, $out) = $h->nginx_test(conf($http, $loc));
    is($rc, 0, "nginx -t passes: $name") or diag $out;
}

good('defaults', undef, 'apikey on;');
good('everything', 'integrations_redis unix:/run/redis.sock password=pw '
     . 'db=2 prefix=tenant1: timeout=150ms connect_timeout=1s;',
     'apikey on; apikey_header "Authorization: Bearer" X-Api-Key api-key; '
     . 'apikey_scope events:read events.read; apikey_rate_limit 60r/m '
     . 'bucket=events; apikey_redis_failure open ttl=2m; apikey_pass_key off;');
good('5r/2s window', undef, 'apikey on; apikey_rate_limit 5r/2s;');
good('rate with window=', undef,
     'apikey on; apikey_rate_limit 10r/s window=10s bucket=x;');
good('rate off', undef, 'apikey on; apikey_rate_limit off;');

bad('redis timeout over a minute',
    'integrations_redis 127.0.0.1:6379 timeout=100000d;', 'apikey on;',
    qr/"timeout=100000d" is over 60s/);
bad('redis connect_timeout over a minute',
    'integrations_redis 127.0.0.1:6379 connect_timeout=2m;', 'apikey on;',
    qr/"connect_timeout=2m" is over 60s/);
good('redis timeout of a minute',
     'integrations_redis 127.0.0.1:6379 timeout=60s;', 'apikey on;');
bad('integrations_cache in g', "integrations_redis 127.0.0.1:6379;\n"
    . 'integrations_cache 1g;', 'apikey on;',
    qr/invalid page cache size "1g", expected a size of at least 64k in k or m/);
bad('open ttl over a day', undef,
    'apikey on; apikey_redis_failure open ttl=2d;', qr/"ttl=2d" is over a day/);
good('open ttl of a day', undef, 'apikey on; apikey_redis_failure open ttl=1d;');
bad('empty pepper', "apikey_pepper \"\";\nintegrations_redis 127.0.0.1:6379;",
    'apikey on;', qr/"apikey_pepper" directive must not be empty/);
bad('redis user= without password=',
    'integrations_redis 127.0.0.1:6379 user=ops;', 'apikey on;',
    qr/"user=" needs "password="/);
good('redis user= and password=',
     'integrations_redis 127.0.0.1:6379 user=ops password=pw;', 'apikey on;');
bad('apikey maybe', undef, 'apikey maybe;', qr/invalid value "maybe"/);
bad('apikey without integrations_redis', '', 'apikey on;',
    qr/requires "integrations_redis"/);
bad('header with a space', undef, 'apikey on; apikey_header "X Key";',
    qr/invalid key header/);
bad('header scheme empty', undef, 'apikey on; apikey_header "Authorization:";',
    qr/invalid key header/);
bad('header twice', undef,
    'apikey on; apikey_header X-A; apikey_header X-B;', qr/is duplicate/);
bad('scope with a comma', undef, 'apikey on; apikey_scope "a,b";',
    qr/invalid scope/);
bad('scope with a quote', undef, "apikey on; apikey_scope 'a\"b';",
    qr/invalid scope/);
bad('rate 0r/s', undef, 'apikey on; apikey_rate_limit 0r/s;', qr/invalid rate/);
bad('rate unit', undef, 'apikey on; apikey_rate_limit 10r/x;', qr/invalid rate/);
bad('rate junk', undef, 'apikey on; apikey_rate_limit fast;', qr/invalid rate/);
bad('rate bucket empty', undef, 'apikey on; apikey_rate_limit 1r/s bucket=;',
    qr/invalid parameter "bucket="/);
bad('rate bucket chars', undef,
    'apikey on; apikey_rate_limit 1r/s bucket=a/b;', qr/invalid parameter/);
bad('rate window=0', undef,
    'apikey on; apikey_rate_limit 1r/s window=0s;', qr/invalid parameter/);
bad('rate window allows nothing', undef,
    'apikey on; apikey_rate_limit 1r/m window=1s;', qr/allows no request/);
bad('rate unknown parameter', undef,
    'apikey on; apikey_rate_limit 1r/s burst=5;', qr/invalid parameter "burst=5"/);
bad('failure policy', undef, 'apikey on; apikey_redis_failure sometimes;',
    qr/expected "closed" or "open"/);
bad('failure ttl on closed', undef,
    'apikey on; apikey_redis_failure closed ttl=5s;', qr/invalid parameter/);
bad('failure ttl junk', undef,
    'apikey on; apikey_redis_failure open ttl=soon;', qr/invalid parameter/);
bad('redis address', 'integrations_redis 127.0.0.1:99999;', 'apikey on;',
    qr/redis address|invalid port/);
bad('redis db', 'integrations_redis 127.0.0.1 db=x;', 'apikey on;',
    qr/invalid parameter "db=x"/);
bad('redis timeout', 'integrations_redis 127.0.0.1 timeout=soon;',
    'apikey on;', qr/invalid parameter "timeout=soon"/);
bad('redis prefix with a brace', 'integrations_redis 127.0.0.1 "prefix=a{";',
    'apikey on;', qr/invalid parameter "prefix=a\{"/);
bad('redis unknown parameter', 'integrations_redis 127.0.0.1 pool=3;',
    'apikey on;', qr/invalid parameter "pool=3"/);
bad('redis db twice', 'integrations_redis 127.0.0.1 db=1 db=2;',
    'apikey on;', qr/"db=" is given twice/);
bad('redis timeout twice',
    'integrations_redis 127.0.0.1 timeout=1s connect_timeout=1s timeout=2s;',
    'apikey on;', qr/"timeout=" is given twice/);
bad('redis empty password', 'integrations_redis 127.0.0.1 password=;',
    'apikey on;', qr/invalid parameter "password="/);
bad('redis twice',
    "integrations_redis 127.0.0.1;\nintegrations_redis 127.0.0.1;",
    'apikey on;', qr/is duplicate/);


# a bucket is one log per key: one window for it everywhere
bad('bucket with two windows', undef,
    "apikey on; apikey_rate_limit 2r/s bucket=bx; }\n"
    . '    location /b { apikey on; apikey_rate_limit 3r/h bucket=bx;',
    qr/\[emerg\] \S+ bucket "bx" has a window of 1000ms in \S+:(\d+), not 3600000ms.* in \S+:(?!\1)\d+/);
bad('default bucket with two windows', undef,
    "apikey on; apikey_rate_limit 2r/s; }\n"
    . '    location /b { apikey on; apikey_rate_limit 3r/h;',
    qr/a limit without bucket= counts in the default bucket: bucket "default" has a window/);
good('one bucket, one window, two limits', undef,
     "apikey on; apikey_rate_limit 2r/s bucket=bx; }\n"
     . '    location /b { apikey on; apikey_rate_limit 5r/s bucket=bx;');
good('two buckets, two windows', undef,
     "apikey on; apikey_rate_limit 2r/s; }\n"
     . '    location /b { apikey on; apikey_rate_limit 3r/h bucket=hourly;');
bad('bucket= twice', undef,
    'apikey on; apikey_rate_limit 1r/s bucket=a bucket=b;',
    qr/"bucket=" is given twice/);
bad('window= twice', undef,
    'apikey on; apikey_rate_limit 1r/s window=2s window=4s;',
    qr/"window=" is given twice/);

# a read handler where no key is checked could only ever answer 401
for my $d ('integrations_events', 'integrations_whoami',
           'integrations_attendees $uri') {
    (my $name = $d) =~ s/ .*//;
    bad("$name without apikey on", undef, "$d;",
        qr/"$name" needs "apikey on" in its location or above it in \S+:\d+/);
    bad("$name under apikey off", undef, "apikey off; $d;",
        qr/"$name" needs "apikey on"/);
}
# a read handler and proxy_pass in one location: one would never run
bad('proxy_pass, then a read handler', undef,
    'apikey on; proxy_pass http://127.0.0.1:1; integrations_whoami;',
    qr/"integrations_whoami" directive cannot share a location with another/);
bad('a read handler, then proxy_pass', undef,
    'apikey on; integrations_events; proxy_pass http://127.0.0.1:1;',
    qr/"integrations_events" in \S+:\d+ shares its location with another/);
bad('integrations_status, then proxy_pass', undef,
    'integrations_status; proxy_pass http://127.0.0.1:1;',
    qr/"integrations_status" in \S+:\d+ shares its location with another/);
bad('proxy_pass, then integrations_status', undef,
    'proxy_pass http://127.0.0.1:1; integrations_status;',
    qr/"integrations_status" directive cannot share a location with another/);
good('a read handler beside a proxying nested location', undef,
     "apikey on; integrations_events;
"
     . '        location /w/ { proxy_pass http://127.0.0.1:1; }');
good('a read handler in a named location', undef,
     "apikey on; try_files \$uri \@w; }\n"
     . '    location @w { integrations_whoami;');
good('a read handler in an internal location', undef,
     "apikey on; error_page 404 = /in/; }\n"
     . '    location /in/ { internal; integrations_events;');
good('a read handler under a server\'s apikey on', 'integrations_redis '
     . "127.0.0.1:6379;\napikey on;", 'integrations_whoami;');

# scopes or a limit where no key is checked: allowed, but said
sub warns {
    my ($name, $loc, $msg) = @_;
    my ($rc, $out, $file) = $h->nginx_test(conf(undef, $loc));
    is($rc, 0, "nginx -t passes: $name") or diag $out;
    like($out, qr/\[warn\].*$msg.*\Q$file\E:\d+/, "$name: warns, naming the line")
        or diag $out;
}
warns('scope without apikey on', 'apikey_scope events:write;',
      qr/"apikey_scope" has no effect where "apikey" is off/);
warns('rate limit under apikey off', 'apikey off; apikey_rate_limit 1r/m;',
      qr/"apikey_rate_limit" has no effect where "apikey" is off/);
{
    my ($rc, $out) = $h->nginx_test(conf(undef,
        "apikey_scope events:read;\n"
        . '        location /in/ { apikey on; integrations_events; }'));
    is($rc, 0, 'scope above a nested keyed location: passes') or diag $out;
    unlike($out, qr/\[warn\].*has no effect/,
           '... without a warning (the nested location uses it)');
}
{
    my ($rc, $out, $file) = $h->nginx_test(conf(undef,
        'apikey_scope events:read; apikey_rate_limit 5r/s;'));
    like($out, qr/\[warn\].*"apikey_scope" has no effect/, 'both warn: scope');
    like($out, qr/\[warn\].*"apikey_rate_limit" has no effect/,
         '... and the rate limit');
    my $server = sub { "integrations_redis 127.0.0.1:6379;\nserver {\n"
        . "    listen 127.0.0.1:%%PORT%%;\n    apikey_scope events:read;\n"
        . "    location / { $_[0] }\n}\n" };
    ($rc, $out, $file) = $h->nginx_test($server->('return 204;'));
    is($rc, 0, 'a server-level scope, apikey never on: passes') or diag $out;
    like($out, qr/\[warn\].*"apikey_scope" has no effect.*\Q$file\E:\d+/,
         '... with the warning, naming the server\'s line');
    ($rc, $out) = $h->nginx_test($server->('apikey on;'));
    unlike($out, qr/\[warn\].*has no effect/,
           '... none when a location turns apikey on');
}
for my $inner ('location /in/ { return 204; }', 'if ($arg_a) { return 204; }',
               'location /in/ { location /in/deep/ { apikey on; '
               . 'integrations_events; } }') {
    my $keyed = $inner =~ /apikey on/;
    my ($rc, $out) = $h->nginx_test(conf(undef,
        "apikey_scope events:read;\n        $inner"));
    is($rc, 0, "scope above \"$inner\": passes") or diag $out;
    if ($keyed) {
        unlike($out, qr/\[warn\].*has no effect/,
               '... without a warning (a location deeper turns it on)');
    } else {
        like($out, qr/\[warn\].*"apikey_scope" has no effect/,
             '... with the warning (nothing inside turns apikey on)');
    }
}
{
    my ($rc, $out) = $h->nginx_test(conf(undef,
        'apikey on; apikey_scope events:read; apikey_rate_limit 1r/m;'));
    unlike($out, qr/\[warn\].*has no effect/, 'no warning where keys are read');
}

$h->done;
done_testing;
