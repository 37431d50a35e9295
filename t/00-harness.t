# The harness itself, without our module: Redis, nginx, HTTP helpers,
# reload, nginx -t, parallel load and Redis restarts behave as documented.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use Harness;

my $h = Harness->new;

my $server = <<'EOF';
server {
    listen 127.0.0.1:%%PORT%%;
    location /x { return 200 "hi"; }
    location /json {
        default_type application/json;
        return 200 '{"port":%%PORT%%,"redis":%%REDIS_PORT%%}';
    }
}
EOF


# Redis
ok -S $h->redis_sock, 'redis unix socket exists';
is $h->redis('SET', 'harness:k', 'v 1'), 'OK', 'redis SET';
is $h->redis('GET', 'harness:k'), 'v 1', 'redis GET (argument with a space)';
$h->redis('RPUSH', 'harness:l', 'a', 'b');
is_deeply [ $h->redis('LRANGE', 'harness:l', 0, -1) ], [ 'a', 'b' ],
    'redis in list context returns lines';
is $h->redis('-s', $h->redis_sock, 'PING'), 'PONG', 'redis over the socket';


# nginx up, GET
$h->start_nginx($server, no_module => 1);
my $r = $h->get('/x');
is $r->{status}, 200, 'GET /x';
is $r->{content}, 'hi', 'GET /x body';
is $h->json($h->get('/json'))->{port}, $h->port, 'placeholders substituted';
is $h->json($h->get('/json'))->{redis}, $h->redis_port, '%%REDIS_PORT%%';
is $h->get('/nothing')->{status}, 404, 'GET unknown path is 404';
is $h->request('POST', '/x', { 'X-A' => [ 1, 2 ] }, 'body')->{status}, 200,
    'request with a body and a repeated header';
ok !eval { $h->json({ content => '<html>' }); 1 }, 'json dies on non-JSON';
like $@, qr/<html>/, 'json error names the body';


# raw: keep-alive response read by its length, not by close
my $t0 = time;
$r = $h->raw("GET /x HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n");
is $r->{status}, 200, 'raw request';
is $r->{body}, 'hi', 'raw body';
is $r->{headers}{'content-length'}, 2, 'raw headers lower-cased';
cmp_ok time - $t0, '<', 2, 'raw does not wait for keep-alive close';

$r = $h->raw("GET /x HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n");
is $r->{status}, 400, 'raw duplicate Host is 400';

$r = $h->raw("GARBAGE\r\n\r\n");
is $r->{status}, 400, 'raw malformed request is 400';

$r = $h->raw("GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /nothing HTTP/1.1\r\n"
             . "Host: a\r\nConnection: close\r\n\r\n", read_all => 1);
like $r->{raw}, qr/200 OK.*404 Not Found/s, 'raw read_all sees pipelined responses';


# parallel load from forked children
my $st = $h->parallel(50, 10, sub { $h->get('/x')->{status} });
is scalar(@$st), 50, 'parallel returns one result per call';
is scalar(grep { defined && $_ == 200 } @$st), 50, 'parallel: 50 x 200';
is_deeply $h->parallel(6, 3, sub { $_[0] * 2 }), [ 0, 2, 4, 6, 8, 10 ],
    'parallel results are in index order';


# reload
(my $changed = $server) =~ s/"hi"/"changed"/;
my $master = $h->nginx_pid;
$h->reload_nginx($changed);
is $h->nginx_pid, $master, 'reload keeps the master';
is $h->get('/x')->{content}, 'changed', 'reload serves the new config';
ok $h->logs_contain('reconfiguring'), 'logs_contain searches error.log';
ok $h->logs_contain(qr{"GET /x HTTP/1\.1" 200}), 'and access.log';


# nginx -t names the file and line of a bad directive
my $bad = <<'EOF';
server {
    listen 127.0.0.1:%%PORT2%%;
    no_such_directive on;
}
EOF
my ($rc, $out, $file) = $h->nginx_test($bad, no_module => 1);
isnt $rc, 0, 'nginx -t fails on a bad directive';
my $line = do {
    open my $fh, '<', $file or die "$file: $!";
    my $n = 0;
    my $at;
    while (<$fh>) { $n++; $at = $n if /no_such_directive/ }
    $at;
};
like $out, qr/unknown directive "no_such_directive" in \Q$file\E:$line\b/,
    "nginx -t output names $file:$line";
($rc, $out) = $h->nginx_test($server, no_module => 1);
is $rc, 0, 'nginx -t passes a good config' or diag $out;
is $h->get('/x')->{content}, 'changed', 'nginx -t left the running nginx alone';


# a second nginx sharing the same Redis
my $n2 = $h->nginx2($server, no_module => 1);
isnt $n2->port, $h->port, 'second nginx has its own port';
is $n2->get('/x')->{content}, 'hi', 'second nginx serves';
is $h->get('/x', undef, port => $n2->port)->{content}, 'hi', 'get port =>';
is $n2->redis('GET', 'harness:k'), 'v 1', 'second nginx shares the Redis';
$n2->stop_nginx;
is $h->get('/x', undef, port => $n2->port)->{status}, 599,
    'stopped nginx refuses connections';


# Redis stop/start on the same port, kill, pause
$h->stop_redis;
ok !$h->redis_alive, 'redis stopped';
$h->start_redis;
is $h->redis('PING'), 'PONG', 'redis started again';
is $h->redis('GET', 'harness:k'), '', 'restarted redis is empty (no save)';

$h->kill_redis;
ok !$h->redis_alive, 'redis killed';
$h->start_redis;
is $h->redis('PING'), 'PONG', 'redis started after SIGKILL';

$t0 = time;
$h->pause_redis(1);
ok !$h->redis_alive(0.3), 'paused redis does not answer';
is $h->redis('PING'), 'PONG', 'paused redis answers after the pause';
cmp_ok time - $t0, '>', 0.9, 'the pause lasted';
$h->pause_redis;
ok !$h->redis_alive(0.3), 'redis paused until resumed';
$h->resume_redis;
ok $h->redis_alive, 'resume_redis';


# a password-protected Redis, and teardown
my $pw = Harness->new(redis_args => [ '--requirepass', 'sekret' ]);
is $pw->redis('SET', 'a', 'b'), 'OK', 'redis with requirepass';
like $pw->redis_url, qr{^redis://:sekret\@127\.0\.0\.1:\d+/0$}, 'redis_url';
my $redis_pid = $pw->redis_pid;
undef $pw;
ok !kill(0, $redis_pid), 'a harness going out of scope stops its Redis';

$h->done;
ok !kill(0, $master), 'done stops nginx';

done_testing;
