package Harness;

# Our small stand-in for Test::Nginx: every test states its config, its
# requests and its expectations; the harness starts a real Redis and a real
# nginx on free loopback ports in a private directory, and tears them down.
#
#   use lib 't/lib';
#   use Test::More;
#   use Harness;
#
#   my $h = Harness->new;                       # Redis started, nginx not
#   $h->start_nginx(<<'EOF');
#   server {
#       listen 127.0.0.1:%%PORT%%;
#       location /x { return 200 "hi"; }
#   }
#   EOF
#   is $h->get('/x')->{status}, 200;
#   $h->done;
#   done_testing;
#
# API (tests are written against it):
#   Harness->new(redis => 1, redis_args => [...], nginx => 0, http => $snip,
#                nginx_opt => {...}, redis_port/redis_sock/redis_pass => ...)
#       private dir t/tmp/<test>-<pid>/; Redis on a free port and a unix
#       socket; redis => 0 with redis_port etc. shares another Redis;
#       nginx => 1 starts nginx at once with the http => snippet
#   dir port port2 port3 redis_port redis_sock redis_pass redis_url
#   redis(@args)                 redis-cli; stdout chomped, or its lines
#   redis_alive($timeout)        PING answered?
#   start_redis stop_redis kill_redis pause_redis($secs) resume_redis
#   ctl(@args), ctl_stdin($in, @args)   integrationsctl: ($rc, $out, $err)
#   start_nginx($http, %o)       %o: no_module workers log_level main
#                                wait_port no_retry; placeholders %%PORT%%
#                                %%PORT2%% %%PORT3%% %%REDIS_PORT%%
#                                %%REDIS_SOCK%% %%DIR%%
#   reload_nginx($http, %o)  stop_nginx  nginx_pid
#   nginx_test($http, %o)        nginx -t: ($rc, $output, $conf_file)
#   nginx2($http, %o)            another nginx (a Harness) on this Redis
#   get($path, \%hdr, port => P)  request($method, $path, \%hdr, $body, ...)
#                                HTTP::Tiny response (+ body => content)
#   raw($bytes, port => P, read_all => 1, timeout => S)
#                                {status reason protocol headers body raw}
#   parallel($n, $concurrency, sub { my ($i) = @_; ... })   [results]
#   json($res)  error_log  access_log  logs_contain($str|qr//)  asan_clean
#   done                         also run by DESTROY / at the end
#
# At the end a test fails if a sanitizer reported anything (ASan mode) or
# an nginx process died of SIGSEGV/SIGBUS/SIGABRT/SIGFPE/SIGILL; its dir
# is kept if anything failed.  Only core Perl modules; Linux (reads /proc).
#
# Environment:
#   INTEGRATIONS_BUILD   build directory, relative to the repo root (build)
#   INTEGRATIONS_ASAN=1  nginx runs with libasan/libubsan preloaded; reports
#                        go to <dir>/asan.* or, from workers, to error.log
#   KEEP_TMP=1           keep t/tmp/<test>-<pid>/ even when the test passed
#   NGINX_BIN, REDIS_SERVER, REDIS_CLI   override the binaries

use strict;
use warnings;

use Test::More ();
use Carp qw(croak);
use Config;
use Cwd qw(abs_path);
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

our $ROOT = abs_path(dirname(__FILE__) . '/../..');

my $START_TIMEOUT = 5;
my $STOP_TIMEOUT  = 5;
my $HTTP_TIMEOUT  = 10;
my $RUN_TIMEOUT   = 300;    # a redis-cli / integrationsctl run never hangs

# signals that mean a crash when they end an nginx worker
my $CRASH_SIGNALS = qr/exited on signal (?:4|6|7|8|11)\b/;

my @LIVE;                   # weak refs to every harness of this process
my @DIRS;                   # their dirs, removed at the end if all passed
my %USED_PORT;
my $SEQ = 0;
my $ASAN_PRELOAD;


sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        owner      => $$,
        redis_args => [ @{ $opt{redis_args} || [] } ],
        others     => [],
        n_conf     => 0,
    }, $class;

    $self->{dir} = $opt{dir} // do {
        my $name = basename($0);
        $name =~ s/\.t$//;
        $name =~ s/[^\w.-]+/_/g;
        $SEQ++;
        "$ROOT/t/tmp/$name-$$" . ($SEQ > 1 ? "-$SEQ" : '');
    };
    remove_tree($self->{dir}) if -e $self->{dir};
    make_path($self->{dir});
    $self->{dir} = abs_path($self->{dir});

    my $build = $ENV{INTEGRATIONS_BUILD} // 'build';
    $build = "$ROOT/$build" unless $build =~ m{^/};
    $self->{build} = $build;

    my @ra = @{ $self->{redis_args} };
    for my $i (0 .. $#ra - 1) {
        $self->{redis_pass} = $ra[$i + 1] if $ra[$i] eq '--requirepass';
    }

    push @LIVE, $self;
    weaken($LIVE[-1]);
    _install_signal_handlers();

    $self->{port}  = _free_port();
    $self->{port2} = _free_port();
    $self->{port3} = _free_port();

    if ($opt{redis} // 1) {
        $self->{redis_own}  = 1;
        $self->{redis_port} = _free_port();
        my $sock = "$self->{dir}/redis.sock";
        if (length($sock) > 100) {
            # sun_path holds 108 bytes; a deep checkout would not fit
            $self->{sock_dir} = tempdir('harness-XXXXXX', TMPDIR => 1);
            $sock = "$self->{sock_dir}/redis.sock";
        }
        $self->{redis_sock} = $sock;
        $self->start_redis;
    } else {
        # share somebody else's Redis (see nginx2)
        $self->{redis_port} = $opt{redis_port};
        $self->{redis_sock} = $opt{redis_sock};
        $self->{redis_pass} = $opt{redis_pass} if defined $opt{redis_pass};
    }

    if ($opt{nginx}) {
        croak "nginx => 1 needs http => \$snippet" unless defined $opt{http};
        $self->start_nginx($opt{http}, %{ $opt{nginx_opt} || {} });
    }

    return $self;
}


sub dir        { $_[0]{dir} }
sub root       { $ROOT }
sub build      { $_[0]{build} }
sub port       { $_[0]{port} }
sub port2      { $_[0]{port2} }
sub port3      { $_[0]{port3} }
sub redis_port { $_[0]{redis_port} }
sub redis_sock { $_[0]{redis_sock} }
sub redis_pass { $_[0]{redis_pass} }
sub nginx_pid  { $_[0]{nginx_pid} }
sub redis_pid  { $_[0]{redis_pid} }


sub redis_url {
    my $self = shift;
    my $auth = defined $self->{redis_pass} ? ":$self->{redis_pass}\@" : '';
    return "redis://${auth}127.0.0.1:$self->{redis_port}/0";
}


# ---------------------------------------------------------------- Redis

sub start_redis {
    my $self = shift;

    croak 'this harness does not own its Redis' unless $self->{redis_own};
    croak 'redis-server is already running' if $self->{redis_pid};

    # the first start may pick another port if ours was taken meanwhile
    my $tries = $self->{redis_started} ? 1 : 3;
    my $log   = "$self->{dir}/redis.log";

    for my $try (1 .. $tries) {
        my $offset = -s $log // 0;
        my $pid = $self->_spawn(
            cmd => [ _bin('REDIS_SERVER', 'redis-server'),
                     '--port', $self->{redis_port},
                     '--bind', '127.0.0.1',
                     '--save', '',
                     '--appendonly', 'no',
                     '--unixsocket', $self->{redis_sock},
                     '--unixsocketperm', '700',
                     '--daemonize', 'no',
                     '--dir', $self->{dir},
                     '--pidfile', "$self->{dir}/redis.pid",
                     @{ $self->{redis_args} } ],
            out => $log,
            cwd => $self->{dir},
        );
        $self->{redis_pid} = $pid;

        my $err = $self->_wait_redis_up($pid);
        unless ($err) {
            $self->{redis_started} = 1;
            return $self;
        }

        delete $self->{redis_pid};
        my $tail = _tail($log, $offset);
        if ($tail =~ /Address already in use/ && $try < $tries) {
            $self->{redis_port} = _free_port();
            next;
        }
        croak "redis-server did not start: $err\n$tail";
    }
}


# '' once PING answers; otherwise why not (the process is reaped)
sub _wait_redis_up {
    my ($self, $pid) = @_;

    my $deadline = time + $START_TIMEOUT;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            return "redis-server exited (wait status $?)";
        }
        return '' if $self->redis_alive;
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return "no answer to PING within ${START_TIMEOUT}s";
}


sub stop_redis {
    my $self = shift;

    croak 'this harness does not own its Redis' unless $self->{redis_own};
    $self->resume_redis;
    my $pid = delete $self->{redis_pid} or return;
    _terminate($pid, 'TERM');
    return;
}


sub kill_redis {
    my $self = shift;

    croak 'this harness does not own its Redis' unless $self->{redis_own};
    my $pid = delete $self->{redis_pid} or return;
    $self->_stop_pause_child;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return;
}


sub pause_redis {
    my ($self, $secs) = @_;

    croak 'this harness does not own its Redis' unless $self->{redis_own};
    my $pid = $self->{redis_pid} or croak 'redis-server is not running';
    $self->_stop_pause_child;
    kill 'STOP', $pid;
    return unless defined $secs;

    _flush();
    my $child = fork // croak "fork: $!";
    if ($child == 0) {
        $SIG{$_} = sub { POSIX::_exit(0) } for qw(INT TERM HUP);
        sleep $secs;
        kill 'CONT', $pid;
        POSIX::_exit(0);
    }
    $self->{pause_child} = $child;
    return;
}


sub resume_redis {
    my $self = shift;
    $self->_stop_pause_child;
    kill 'CONT', $self->{redis_pid} if $self->{redis_pid};
    return;
}


sub _stop_pause_child {
    my $self  = shift;
    my $child = delete $self->{pause_child} or return;
    kill 'TERM', $child;
    waitpid($child, 0);
}


# redis-cli with our port (and password); stdout chomped, or its lines
sub redis {
    my ($self, @args) = @_;

    croak 'no Redis configured' unless $self->{redis_port};
    my ($rc, $out, $err) = $self->_run(
        cmd => [ _bin('REDIS_CLI', 'redis-cli'),
                 '-h', '127.0.0.1', '-p', $self->{redis_port},
                 (defined $self->{redis_pass}
                     ? ('-a', $self->{redis_pass}, '--no-auth-warning') : ()),
                 @args ],
    );
    print STDERR $err if length $err;
    chomp $out;
    return wantarray ? split(/\n/, $out) : $out;
}


# does Redis answer PING within $timeout seconds (default 1)?
sub redis_alive {
    my ($self, $timeout) = @_;
    $timeout //= 1;
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $self->{redis_port},
        Proto    => 'tcp',
        Timeout  => $timeout,
    ) or return 0;
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, "PING\r\n") or return 0;
    return 0 unless IO::Select->new($s)->can_read($timeout);
    my $line = '';
    sysread($s, $line, 128);
    close $s;
    # with requirepass an unauthenticated PING gets NOAUTH: still up
    return $line =~ /^(?:\+PONG|-NOAUTH)/ ? 1 : 0;
}


# ---------------------------------------------------------------- CLI

sub ctl {
    my ($self, @args) = @_;
    return $self->ctl_stdin(undef, @args);
}


# the same call as a shell command line, for pipes and redirections:
# quoted, with the sanitizer options ctl_stdin would pass
sub ctl_shell {
    my ($self, @args) = @_;
    my %env = $ENV{INTEGRATIONS_ASAN} ? $self->_sanitizer_options : ();
    return join ' ', (map { "$_='$env{$_}'" } sort keys %env),
        map { "'$_'" } "$self->{build}/integrationsctl", '--redis',
        $self->redis_url, @args;
}


sub ctl_stdin {
    my ($self, $input, @args) = @_;

    my $bin = "$self->{build}/integrationsctl";
    croak "$bin is not built (run make)" unless -x $bin;
    croak 'no Redis configured' unless $self->{redis_port};

    my %env;
    if ($ENV{INTEGRATIONS_ASAN}) {
        # the CLI links the sanitizers itself: only route their reports
        %env = $self->_sanitizer_options;
    }
    return $self->_run(
        cmd   => [ $bin, '--redis', $self->redis_url, @args ],
        stdin => $input,
        env   => \%env,
    );
}


# ---------------------------------------------------------------- nginx

sub start_nginx {
    my ($self, $snippet, %o) = @_;

    croak 'nginx is already running' if $self->{nginx_pid};

    $self->{nginx_snippet} = $snippet;
    $self->{nginx_o}       = { %o };

    my $log   = "$self->{dir}/error.log";
    my $tries = $self->{nginx_started} || $o{no_retry} ? 1 : 3;

    for my $try (1 .. $tries) {
        $self->_write_conf("$self->{dir}/nginx.conf", $snippet, \%o,
                           $log, "$self->{dir}/nginx.pid");
        my $offset = -s $log // 0;
        my $pid = $self->_spawn(
            cmd => [ _bin('NGINX_BIN', 'nginx'),
                     '-p', "$self->{dir}/",
                     '-e', $log,
                     '-c', "$self->{dir}/nginx.conf" ],
            out => "$self->{dir}/nginx.out",
            cwd => $self->{dir},
            env => { $self->_nginx_env },
        );
        $self->{nginx_pid} = $pid;

        my $err = $self->_wait_nginx_up($pid, $snippet, \%o);
        unless ($err) {
            $self->{nginx_started} = 1;
            return $self;
        }

        my $tail = _tail($log, $offset) . _tail("$self->{dir}/nginx.out");
        $self->_kill_nginx;
        if ($tail =~ /Address already in use/ && $try < $tries) {
            # a picked port was taken before nginx bound it: pick again
            $self->{$_} = _free_port() for qw(port port2 port3);
            next;
        }
        croak "nginx did not start: $err\n$tail";
    }
}


sub _wait_nginx_up {
    my ($self, $pid, $snippet, $o) = @_;

    my $port = $o->{wait_port}
        // ($snippet =~ /%%PORT%%/ ? $self->{port} : undef);
    my $workers = $o->{workers} // 1;
    $workers = 1 unless $workers =~ /^\d+$/;
    my $deadline = time + $START_TIMEOUT;

    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            return "nginx exited (wait status $?)";
        }
        if ((!defined $port || _listening($port))
            && $self->_workers($pid) >= $workers)
        {
            return '';
        }
        sleep 0.02;
    }
    return "not up within ${START_TIMEOUT}s"
        . (defined $port ? " (port $port)" : '');
}


sub reload_nginx {
    my ($self, $snippet, %o) = @_;

    my $pid = $self->{nginx_pid} or croak 'nginx is not running';
    $snippet //= $self->{nginx_snippet};
    %o = (%{ $self->{nginx_o} }, %o);
    $self->{nginx_snippet} = $snippet;
    $self->{nginx_o}       = { %o };

    my $log = "$self->{dir}/error.log";
    $self->_write_conf("$self->{dir}/nginx.conf", $snippet, \%o,
                       $log, "$self->{dir}/nginx.pid");

    my %old = map { $_ => 1 } $self->_workers($pid);
    my $offset = -s $log // 0;
    my $workers = $o{workers} // 1;
    $workers = 1 unless $workers =~ /^\d+$/;

    kill 'HUP', $pid;

    # new workers: children titled "nginx: worker process" we did not know
    # (this works at any error_log level, unlike counting log lines)
    my $deadline = time + $START_TIMEOUT;
    my $up = 0;
    while (!$up && time < $deadline) {
        my $tail = _tail($log, $offset);
        if ($tail =~ /\[emerg\]/) {
            croak "nginx reload failed (old configuration still serving):\n"
                . $tail;
        }
        $up = grep({ !$old{$_} } $self->_workers($pid)) >= $workers;
        sleep 0.02 unless $up;
    }
    unless ($up) {
        croak "nginx reload: no new worker within ${START_TIMEOUT}s:\n"
            . _tail($log, $offset);
    }
    sleep 0.3;
    return $self;
}


sub stop_nginx {
    my $self = shift;
    $self->_kill_nginx('QUIT');
    return;
}


sub _kill_nginx {
    my ($self, $sig) = @_;
    my $pid = delete $self->{nginx_pid} or return;
    my @workers = _children($pid);
    _terminate($pid, $sig // 'KILL');
    # a master killed hard leaves its workers behind
    kill 'KILL', grep { _alive($_) } @workers;
}


# nginx -t on the same template; returns ($exit_code, $output, $conf_file)
sub nginx_test {
    my ($self, $snippet, %o) = @_;

    my $n    = ++$self->{n_conf};
    my $file = "$self->{dir}/nginx-test-$n.conf";
    $self->_write_conf($file, $snippet, \%o,
                       "$self->{dir}/nginx-test.error.log",
                       "$self->{dir}/nginx-test.pid");

    my ($rc, $out, $err) = $self->_run(
        cmd => [ _bin('NGINX_BIN', 'nginx'), '-t',
                 '-p', "$self->{dir}/", '-e', 'stderr', '-c', $file ],
        env => { $self->_nginx_env },
    );
    unlink "$self->{dir}/nginx-test.pid";     # -t writes it
    return ($rc, $out . $err, $file);
}


# another nginx on its own dir and ports, sharing this harness's Redis;
# it is stopped with this harness
sub nginx2 {
    my ($self, $snippet, %o) = @_;

    my $n  = @{ $self->{others} } + 2;
    my $n2 = Harness->new(
        redis      => 0,
        redis_port => $self->{redis_port},
        redis_sock => $self->{redis_sock},
        redis_pass => $self->{redis_pass},
        dir        => "$self->{dir}/nginx$n",
    );
    push @{ $self->{others} }, $n2;
    $n2->start_nginx($snippet, %o);
    return $n2;
}


sub _write_conf {
    my ($self, $file, $snippet, $o, $error_log, $pid_file) = @_;

    my $dir  = $self->{dir};
    my $main = $o->{main} // '';
    my $module = '';

    unless ($o->{no_module}) {
        my $so = "$self->{build}/ngx_http_integrations_module.so";
        croak "$so is not built (run make)" unless -f $so;
        $module = "load_module $so;\n";
    }

    # as root the workers would run as nobody and could not reach our
    # private dir, the 0700 Redis socket, or write sanitizer logs
    my $user = ($> == 0 && $main !~ /^\s*user\s/m) ? "user root;\n" : '';

    my $level   = $o->{log_level} // 'info';
    my $workers = $o->{workers} // 1;

    my $conf = <<"EOF";
${module}${user}worker_processes $workers;
daemon off;
master_process on;
pid $pid_file;
error_log $error_log $level;
$main
events {
    worker_connections 1024;
}

http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

$snippet
}
EOF

    open my $fh, '>', $file or croak "$file: $!";
    print $fh $self->_subst($conf);
    close $fh or croak "$file: $!";
}


sub _subst {
    my ($self, $text) = @_;
    my %map = (
        PORT       => $self->{port},
        PORT2      => $self->{port2},
        PORT3      => $self->{port3},
        REDIS_PORT => $self->{redis_port},
        REDIS_SOCK => $self->{redis_sock},
        DIR        => $self->{dir},
    );
    $text =~ s{%%(\w+)%%}{
        defined $map{$1} ? $map{$1} : croak "no value for %%$1%%"
    }ge;
    return $text;
}


sub _nginx_env {
    my $self = shift;

    return () unless $ENV{INTEGRATIONS_ASAN};
    # nginx itself is not instrumented: the runtimes must come first
    $ASAN_PRELOAD //= join ':', grep { m{/} && -e } map {
        my $p = `gcc -print-file-name=$_ 2>/dev/null` // '';
        chomp $p;
        $p;
    } qw(libasan.so libubsan.so);
    return (LD_PRELOAD => $ASAN_PRELOAD, $self->_sanitizer_options);
}


sub _sanitizer_options {
    my $self = shift;
    my $dir  = $self->{dir};
    return (
        ASAN_OPTIONS  => "detect_leaks=0:log_path=$dir/asan:abort_on_error=0",
        UBSAN_OPTIONS => "print_stacktrace=1:log_path=$dir/ubsan",
    );
}


# live "nginx: worker process" children of the master (not the ones
# shutting down after a reload)
sub _workers {
    my ($self, $master) = @_;
    return grep { _cmdline($_) =~ /^nginx: worker process\s*$/ }
        _children($master);
}


# ---------------------------------------------------------------- HTTP

sub get {
    my ($self, $path, $headers, %o) = @_;
    return $self->request('GET', $path, $headers, undef, %o);
}


sub request {
    my ($self, $method, $path, $headers, $body, %o) = @_;

    my $port = $o{port} // $self->{port};
    my $url  = $path =~ m{^https?://} ? $path : "http://127.0.0.1:$port$path";
    my $http = HTTP::Tiny->new(
        timeout      => $o{timeout} // $HTTP_TIMEOUT,
        keep_alive   => 0,
        max_redirect => 0,
        agent        => 'harness',
    );
    my %args;
    $args{headers} = $headers if $headers;
    $args{content} = $body if defined $body;

    local $SIG{PIPE} = 'IGNORE';
    my $res = $http->request($method, $url, \%args);
    $res->{body} = $res->{content};
    return $res;
}


# bytes as they are; reads one response (or until close with
# read_all => 1); {status, reason, protocol, headers, body, raw[, timeout]}
sub raw {
    my ($self, $bytes, %o) = @_;

    my $port     = $o{port} // $self->{port};
    my $deadline = time + ($o{timeout} // $HTTP_TIMEOUT);
    my $head_req = $bytes =~ /^HEAD /;

    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $HTTP_TIMEOUT,
    ) or return { status => undef, error => "connect: $!", raw => '' };
    $s->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    my ($buf, $res, $closed, $sent) = ('', undef, 0, 0);
    my $sel = IO::Select->new($s);

    while (!$closed) {
        my $left = $deadline - time;
        last if $left <= 0;
        my @w = $sent < length($bytes) ? ($sel) : ();
        my ($r, $w) = IO::Select->select($sel, @w ? $w[0] : undef, undef,
                                         $left);
        if ($w && @$w) {
            my $n = syswrite($s, $bytes, 65536, $sent);
            if (defined $n) {
                $sent += $n;
            } elsif (!$!{EAGAIN} && !$!{EWOULDBLOCK}) {
                $sent = length $bytes;      # peer gone: just read
            }
        }
        if ($r && @$r) {
            my $n = sysread($s, $buf, 65536, length $buf);
            if (!defined $n) {
                $closed = 1 unless $!{EAGAIN} || $!{EWOULDBLOCK};
            } elsif ($n == 0) {
                $closed = 1;
            }
            unless ($o{read_all}) {
                $res = _parse_response($buf, $head_req, $closed);
                last if $res && $res->{complete};
            }
        }
    }
    close $s;

    $res = _parse_response($buf, $head_req, 1)
        if !$res || !$res->{complete} || $o{read_all};
    $res //= { status => undef, headers => {}, body => '' };
    $res->{raw} = $buf;
    $res->{timeout} = 1 if !$closed && !$res->{complete};
    delete $res->{complete};
    return $res;
}


sub _parse_response {
    my ($buf, $head_req, $closed) = @_;

    while (1) {
        my $i = index($buf, "\r\n\r\n");
        return $closed ? { status => undef, headers => {}, body => $buf,
                           complete => 1 } : undef
            if $i < 0;

        my ($line, @lines) = split /\r\n/, substr($buf, 0, $i);
        my $rest = substr($buf, $i + 4);
        my ($proto, $status, $reason) =
            $line =~ m{^(HTTP/\d\.\d)\s+(\d{3})\s*(.*)$}
            or return { status => undef, headers => {}, body => $buf,
                        complete => 1 };

        if ($status =~ /^1/ && $status != 101) {    # 100 Continue
            $buf = $rest;
            next;
        }

        my %h;
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $k = lc $k;
            if (!exists $h{$k}) {
                $h{$k} = $v;
            } else {
                $h{$k} = [ $h{$k} ] unless ref $h{$k};
                push @{ $h{$k} }, $v;
            }
        }
        my $res = { status => $status, reason => $reason, protocol => $proto,
                    headers => \%h, body => '' };

        if ($head_req || $status =~ /^(?:1|204|304)/) {
            $res->{complete} = 1;
        } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            my ($body, $done) = _dechunk($rest);
            $res->{body}     = $body;
            $res->{complete} = $done || $closed;
        } elsif (defined $h{'content-length'} && !ref $h{'content-length'}) {
            my $cl = $h{'content-length'};
            $res->{body}     = substr($rest, 0, $cl);
            $res->{complete} = length($rest) >= $cl || $closed;
        } else {
            $res->{body}     = $rest;
            $res->{complete} = $closed;
        }
        return $res;
    }
}


sub _dechunk {
    my ($data) = @_;
    my $body = '';
    while ($data =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
        my $len = hex $1;
        if ($len == 0) {
            return ($body, $data =~ /^(?:[^\r\n]+\r\n)*\r\n/ ? 1 : 0);
        }
        return ($body . $data, 0) if length($data) < $len + 2;
        $body .= substr($data, 0, $len);
        $data = substr($data, $len + 2);
    }
    return ($body, 0);
}


# $n calls of $code->($i) spread over $concurrency forked children;
# results in index order (undef, with a diag, where the call died)
sub parallel {
    my ($self, $n, $concurrency, $code) = @_;

    $concurrency = $n if $concurrency > $n;
    $concurrency = 1 if $concurrency < 1;
    my @kids;

    _flush();
    for my $k (0 .. $concurrency - 1) {
        my $file = "$self->{dir}/parallel-$$-$k.json";
        my $pid  = fork // croak "fork: $!";
        if ($pid == 0) {
            $SIG{$_} = sub { POSIX::_exit(1) } for qw(INT TERM HUP);
            my @res;
            for (my $i = $k; $i < $n; $i += $concurrency) {
                my $r = eval { $code->($i) };
                push @res, [ $i, $r, $@ ? "$@" : undef ];
            }
            my $ok = eval {
                open my $fh, '>', "$file.part" or die "$file: $!";
                print $fh JSON::PP->new->allow_nonref->allow_unknown
                    ->allow_blessed->encode(\@res);
                close $fh or die "$file: $!";
                rename "$file.part", $file or die "$file: $!";
                1;
            };
            print STDERR "parallel child $k: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @kids, [ $pid, $file ];
    }

    my @results = (undef) x $n;
    for my $kid (@kids) {
        my ($pid, $file) = @$kid;
        waitpid($pid, 0);
        open my $fh, '<', $file or do {
            Test::More::diag("parallel: child $pid wrote no results");
            next;
        };
        my $res = JSON::PP->new->allow_nonref->decode(do { local $/; <$fh> });
        close $fh;
        unlink $file;
        for (@$res) {
            my ($i, $r, $err) = @$_;
            Test::More::diag("parallel call $i died: $err") if defined $err;
            $results[$i] = $r;
        }
    }
    return \@results;
}


sub json {
    my ($self, $res) = @_;
    my $body = ref $res ? $res->{content} // $res->{body} : $res;
    my $data = eval { JSON::PP->new->utf8->allow_nonref->decode($body // '') };
    croak "invalid JSON ($@) in body:\n" . ($body // '(undef)')
        if $@;
    return $data;
}


# ---------------------------------------------------------------- logs

sub error_log  { _slurp("$_[0]{dir}/error.log") }
sub access_log { _slurp("$_[0]{dir}/access.log") }


sub logs_contain {
    my ($self, $what) = @_;
    my $text = $self->error_log . $self->access_log;
    return ref $what eq 'Regexp' ? $text =~ $what : index($text, $what) >= 0;
}


# true when no sanitizer report exists (reports are diag'ed otherwise)
sub asan_clean {
    my $self  = shift;
    my $dir   = $self->{dir};
    my $clean = 1;

    opendir my $dh, $dir or return 1;
    for my $f (sort grep { /^(?:asan|ubsan)/ } readdir $dh) {
        $clean = 0;
        Test::More::diag("sanitizer report $dir/$f:\n"
                         . substr(_slurp("$dir/$f"), 0, 20000));
    }
    closedir $dh;

    # a report written to stderr ends up in the error log
    for my $f ("$dir/error.log", "$dir/nginx.out") {
        my @hits = grep { /AddressSanitizer|LeakSanitizer|runtime error:/ }
            split /\n/, _slurp($f);
        next unless @hits;
        $clean = 0;
        Test::More::diag("sanitizer output in $f:\n"
                         . join("\n", @hits[0 .. ($#hits > 40 ? 40 : $#hits)]));
    }
    return $clean;
}


# ---------------------------------------------------------------- teardown

# stops nginx (every instance) and Redis and checks the sanitizer and
# crash reports; the dir goes at the end of the test file if it passed
sub done {
    my $self = shift;

    return if $self->{done} || $$ != $self->{owner};
    $self->{done} = 1;
    local ($?, $!, $@);

    for my $other (@{ $self->{others} }) {
        $other->done if $other;
    }
    eval { $self->stop_nginx };
    if ($self->{redis_own}) {
        eval { $self->stop_redis };
    }
    remove_tree($self->{sock_dir}) if $self->{sock_dir};

    if ($ENV{INTEGRATIONS_ASAN} && !$self->asan_clean) {
        Test::More::ok(0, 'sanitizer report');
    }
    my @crash = grep { $_ =~ $CRASH_SIGNALS } split /\n/, $self->error_log;
    if (@crash) {
        Test::More::ok(0, 'no nginx process crashed');
        Test::More::diag(join "\n", @crash);
    }

    push @DIRS, $self->{dir};
    return;
}


sub DESTROY {
    my $self = shift;
    # END below has already done the work during global destruction
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT';
    $self->done;
}


# Runs before Test::Builder's own END (this file is compiled after
# Test::More), so a late failure still counts.  $? is the exit code of a
# test that died or called exit.
END {
    my $failed = $? != 0;
    for my $h (@LIVE) {
        $h->done if $h;
    }
    $failed ||= !Test::More->builder->is_passing;
    for my $dir (@DIRS) {
        next unless -d $dir;
        if ($failed || $ENV{KEEP_TMP}) {
            Test::More::diag("kept $dir");
        } else {
            remove_tree($dir);
        }
    }
}


# ---------------------------------------------------------------- helpers

my $SIGNALS_SET;

sub _install_signal_handlers {
    return if $SIGNALS_SET++;
    my %num = (HUP => 1, INT => 2, TERM => 15);
    for my $sig (keys %num) {
        next if $SIG{$sig} && $SIG{$sig} ne 'DEFAULT';
        # exit runs END, which stops nginx and Redis
        $SIG{$sig} = sub { exit(128 + $num{$sig}) };
    }
}


sub _spawn {
    my ($self, %a) = @_;

    _flush();
    my $pid = fork // croak "fork: $!";
    return $pid if $pid;

    eval {
        $SIG{$_} = 'DEFAULT' for grep { exists $SIG{$_} }
            qw(INT TERM QUIT HUP PIPE CHLD ALRM USR1 USR2 WINCH);
        open STDIN, '<', '/dev/null' or die "stdin: $!";
        open STDOUT, '>>', $a{out} or die "$a{out}: $!";
        open STDERR, '>&', \*STDOUT or die "stderr: $!";
        chdir $a{cwd} or die "chdir $a{cwd}: $!" if $a{cwd};
        $ENV{$_} = $a{env}{$_} for keys %{ $a{env} || {} };
        _die_with_parent();
        exec { $a{cmd}[0] } @{ $a{cmd} } or die "exec $a{cmd}[0]: $!";
    };
    print STDERR $@;
    POSIX::_exit(127);
}


# run a command to completion: ($exit_code, $stdout, $stderr)
sub _run {
    my ($self, %a) = @_;

    my $base = "$self->{dir}/.run-$$-" . ++$self->{n_run};
    my $in   = '/dev/null';
    if (defined $a{stdin}) {
        $in = "$base.in";
        open my $fh, '>', $in or croak "$in: $!";
        binmode $fh;
        print $fh $a{stdin};
        close $fh or croak "$in: $!";
    }

    _flush();
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        eval {
            $SIG{$_} = 'DEFAULT' for grep { exists $SIG{$_} }
                qw(INT TERM QUIT HUP PIPE CHLD ALRM);
            open STDIN, '<', $in or die "$in: $!";
            open STDOUT, '>', "$base.out" or die "$base.out: $!";
            open STDERR, '>', "$base.err" or die "$base.err: $!";
            $ENV{$_} = $a{env}{$_} for keys %{ $a{env} || {} };
            _die_with_parent();
            exec { $a{cmd}[0] } @{ $a{cmd} } or die "exec $a{cmd}[0]: $!";
        };
        print STDERR $@;
        POSIX::_exit(127);
    }

    my $timeout  = $a{timeout} // $RUN_TIMEOUT;
    my $deadline = time + $timeout;
    my $nap = 0.001;
    my $status;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $?;
            last;
        }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $status = $?;
            Test::More::diag("killed after ${timeout}s: @{ $a{cmd} }");
            last;
        }
        sleep $nap;
        $nap *= 2 if $nap < 0.02;
    }

    my $out = _slurp("$base.out");
    my $err = _slurp("$base.err");
    unlink "$base.out", "$base.err", "$base.in";
    my $rc = $status & 127 ? 128 + ($status & 127) : $status >> 8;
    return ($rc, $out, $err);
}


# SIGTERM the child if the test process dies without cleaning up
# (prctl(PR_SET_PDEATHSIG)); best effort, Linux only
sub _die_with_parent {
    my %nr = (x86_64 => 157, aarch64 => 167, riscv64 => 167,
              i386 => 172, i686 => 172, arm => 172, s390x => 172,
              ppc64 => 171, ppc64le => 171);
    my ($arch) = $Config{archname} =~ /^([^-]+)/;
    my $sys = $nr{$arch // ''} or return;
    syscall($sys, 1, 15);
}


sub _terminate {
    my ($pid, $sig) = @_;
    kill $sig, $pid;
    my $deadline = time + $STOP_TIMEOUT;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.01;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}


sub _free_port {
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => 0,
            Proto     => 'tcp',
            Listen    => 1,
        ) or croak "cannot bind a free port: $!";
        my $port = $s->sockport;
        close $s;
        next if $USED_PORT{$port}++;
        return $port;
    }
    croak 'no free port';
}


# is something listening on the port (any address)?  Reading
# /proc/net/tcp avoids a probe connection that nginx would log.
sub _listening {
    my $port = shift;
    my $hex  = sprintf '%04X', $port;
    my $seen = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        $seen = 1;
        while (<$fh>) {
            my (undef, $local, undef, $st) = split ' ';
            return 1 if $st && $st eq '0A' && $local =~ /:$hex$/;
        }
    }
    return 0 if $seen;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}


sub _children {
    my $ppid = shift;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$pid/stat" or next;
        my $stat = <$fh> // next;
        # pid (comm) state ppid ...; comm may hold spaces and parens
        my @f = split ' ', substr($stat, rindex($stat, ')') + 2);
        push @kids, $pid if $f[1] == $ppid && $f[0] ne 'Z';
    }
    closedir $dh;
    return @kids;
}


sub _cmdline {
    my $pid = shift;
    my $c = _slurp("/proc/$pid/cmdline");
    $c =~ tr/\0/ /;
    return $c;
}


sub _alive {
    my $pid = shift;
    return 0 unless -e "/proc/$pid";
    my $stat = _slurp("/proc/$pid/stat");
    return $stat !~ /\) Z /;
}


sub _bin {
    my ($env, $name) = @_;
    return $ENV{$env} if $ENV{$env};
    for my $d (split(/:/, $ENV{PATH} // ''), qw(/usr/sbin /usr/bin /sbin)) {
        return "$d/$name" if length $d && -x "$d/$name";
    }
    croak "$name not found (install it, or set $env)";
}


sub _slurp {
    my $file = shift;
    open my $fh, '<', $file or return '';
    binmode $fh;
    local $/;
    return <$fh> // '';
}


sub _tail {
    my ($file, $offset, $lines) = @_;
    my $text = _slurp($file);
    $text = substr($text, $offset) if $offset && $offset <= length $text;
    my @l = split /\n/, $text;
    $lines //= 30;
    @l = @l[-$lines .. -1] if @l > $lines;
    return @l ? "--- $file:\n" . join("\n", @l) . "\n" : '';
}


sub _flush {
    STDOUT->flush;
    STDERR->flush;
}


1;
