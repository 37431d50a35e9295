#!/usr/bin/perl
# No surprises on reload: requests keep being served through a reload, the
# new configuration applies at once, old workers leave and take their Redis
# connections with them, and the rate-limit window carries over.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use Harness;
use Keys qw(make_key);

my $h = Harness->new;

my $tpl = <<'EOF';
integrations_redis 127.0.0.1:%%REDIS_PORT%% timeout=500ms;
server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        apikey on;
        apikey_scope SCOPE;
        apikey_rate_limit 10r/m bucket=b;
        apikey_redis_failure open;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "ok\n"; }
}
EOF
(my $c1 = $tpl) =~ s/SCOPE/events:read/;
(my $c2 = $tpl) =~ s/SCOPE/events:write/;

$h->start_nginx($c1, workers => 2);
my ($key) = make_key($h, org => 'acme', scopes => 'events:read');

sub status { $h->get('/x', { 'X-Api-Key' => $key })->{status} }

is(status(), 200, 'before reload') for 1 .. 3;

# requests during a reload are all answered
my $pid = fork // die;
if (!$pid) {
    sleep 0.2;
    $h->reload_nginx($c1);
    POSIX::_exit(0);
}
my @during;
my $t0 = time;
while (time - $t0 < 1.5) {
    push @during, status();
    sleep 0.02;
}
waitpid $pid, 0;
# 10r/m: only the first 7 remaining slots are 200, the rest 429 - never 5xx
ok(!grep({ $_ >= 500 || $_ == 0 } @during),
   'no request failed during the reload') or diag "@during";
is(scalar(grep { $_ == 200 } @during), 7,
   'the rate-limit window carries over the reload (10 in total)');

$h->reload_nginx($c2);
is(status(), 403, 'a new scope applies right after reload');

sleep 1;
my @clients = grep { /addr=127\.0\.0\.1/ && !/cmd=client/ }
              $h->redis('CLIENT', 'LIST');
ok(@clients <= 2, 'old workers closed their Redis connections')
    or diag join "\n", @clients;
unlike($h->error_log, qr/open socket #\d+ left/,
       'no socket left open at worker exit');
unlike($h->error_log, qr/\[alert\]/, 'no alerts');

$h->done;
done_testing;
