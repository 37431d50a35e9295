#!/usr/bin/perl
# What a backend behind a keyed location gets: the identity as
# X-Integrations-* headers set by the module (never the client's own, never
# the key); and what a client gets when nginx itself fails in any keyed or
# read-API location, or refuses a request before it chose one in a server
# with such locations: a JSON error, not nginx's HTML page.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;
use Keys qw(make_key);
use ReadSeed;

my $h = Harness->new;
$h->start_nginx(<<'EOF2');
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    root %%DIR%%;
    underscores_in_headers on;
    location /api/ {
        apikey on;
        apikey_scope events:write;
        proxy_pass http://127.0.0.1:%%PORT2%%/echo;
    }
    location /dotted/ {
        apikey on;
        apikey_scope events.read;
        proxy_pass http://127.0.0.1:%%PORT2%%/echo;
    }
    location /own/ {
        apikey on;
        proxy_set_header X-Integrations-Org "op-$apikey_org";
        proxy_set_header X-Integrations-Scopes "";
        proxy_pass http://127.0.0.1:%%PORT2%%/echo;
    }
    location /kept/ {
        apikey on;
        apikey_pass_key on;
        proxy_pass http://127.0.0.1:%%PORT2%%/echo;
    }
    location = /v2/integrations/events {
        apikey on;
        if ($request_method = POST) {
            rewrite ^ /_writes/events last;
        }
        integrations_events;
    }
    location /_writes/ {
        internal;
        apikey on;
        proxy_pass http://127.0.0.1:%%PORT2%%/echo;
    }
    location /dead/ {
        apikey on;
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
    location /files/ {
        apikey on;
    }
    location /plain/ {
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    underscores_in_headers on;
    location /echo {
        default_type text/plain;
        return 200 "org=$http_x_integrations_org
id=$http_x_integrations_key_id
scopes=$http_x_integrations_scopes
env=$http_x_integrations_env
other=$http_x_integrations_other
key=$http_x_api_key
";
    }
}
EOF2

my ($key, $id) = make_key($h, org => 'acme',
                          scopes => 'events:read events:write', env => 'test');

sub echo {
    my ($path, %hd) = @_;
    my $r = $h->request('POST', $path, { 'X-Api-Key' => $key, %hd }, '{}');
    is($r->{status}, 200, "$path: proxied") or diag $r->{content};
    return { map { /^(\w+)=(.*)$/ ? ($1, $2) : () } split /\n/, $r->{content} };
}

# the module hands the identity on; a client's X-Integrations-* are dropped
my $r;
my $got = echo('/api/x', 'X-Integrations-Org' => 'victim',
               'X-Integrations-Other' => 'spoofed');
is_deeply($got, { org => 'acme', id => $id,
                  scopes => 'events:read events:write', env => 'test',
                  other => '', key => '' },
          'the backend gets the identity, not the client\'s headers or key');

# with underscores_in_headers on, X_Integrations_Org and X_Api_Key are
# the same variables as the dashed names to a CGI or WSGI backend (and to
# nginx's $http_x_*): dropped as well
$got = echo('/api/x', 'X_Integrations_Org' => 'victim',
            'X-Integrations_Env' => 'live', 'X_Api_Key' => $key);
is_deeply($got, { org => 'acme', id => $id,
                  scopes => 'events:read events:write', env => 'test',
                  other => '', key => '' },
          'underscored X_Integrations_* and key headers are dropped too');

# a value with a control character (a record written by hand) is left out
my ($tab) = make_key($h, org => 'acme', scopes => "events:write x\ty");
$r = $h->request('POST', '/api/x', { 'X-Api-Key' => $tab }, '{}');
is($r->{status}, 200, 'a key whose scopes hold a tab: proxied');
like($r->{content}, qr/^scopes=\n/m, '... without X-Integrations-Scopes');
like($r->{content}, qr/^org=acme\n/m, '... with the rest of the identity');

# scope names are the operator's tokens: a dotted one works as well
my ($dot) = make_key($h, org => 'acme', scopes => 'events.read');
$r = $h->request('POST', '/dotted/x', { 'X-Api-Key' => $dot }, '{}');
is($r->{status}, 200, 'a dotted scope (events.read): admitted');
like($r->{content}, qr/^scopes=events\.read$/m, '... and handed on');
$r = $h->request('POST', '/dotted/x', { 'X-Api-Key' => $key }, '{}');
is($r->{status}, 403, 'events:read is not events.read: 403');
is_deeply($h->json($r)->{missingScopes}, ['events.read'],
          '... naming the dotted scope');

# proxy_set_header of the operator's wins, and is sent once
$got = echo('/own/x', 'X-Integrations-Org' => 'victim');
is($got->{org}, 'op-acme', 'proxy_set_header overrides the module');
is($got->{scopes}, '', 'proxy_set_header ... "": left out');
is($got->{id}, $id, '... the other identity headers still come');

# apikey_pass_key on keeps the key, the identity comes as well
$got = echo('/kept/x');
is($got->{key}, $key, 'apikey_pass_key on: the key reaches the backend');
is($got->{org}, 'acme', '... with the identity');

# a write routed from a read-API location by rewrite: the identity of the
# key as the final location checked it, never the client's
$got = echo('/v2/integrations/events', 'X-Integrations-Org' => 'victim');
is($got->{org}, 'acme', 'rewritten write: the identity, not the client\'s');

# the read API in the same server still answers (it hands nothing on)
$r = $h->get('/v2/integrations/events', { 'X-Api-Key' => $key });
is($r->{status}, 200, 'the read API itself');

# nginx's own errors are JSON in every keyed location
$r = $h->get('/dead/x', { 'X-Api-Key' => $key });
is($r->{status}, 502, 'upstream down: 502');
like($r->{headers}{'content-type'}, qr{^application/json}, '... JSON');
is_deeply($h->json($r), { error => 'Bad gateway' }, '... the body');

$r = $h->get('/files/none.txt', { 'X-Api-Key' => $key });
is($r->{status}, 404, 'a keyed location without the file: 404');
is_deeply($h->json($r), { error => 'Not found' }, '... as JSON');
is($r->{headers}{'content-length'}, length $r->{content},
   '... with its own Content-Length');

$r = $h->request('HEAD', '/files/none.txt', { 'X-Api-Key' => $key });
is($r->{status}, 404, 'HEAD: 404');
is($r->{content} // '', '', '... no body');

# refusals are the module's own JSON, as before
$r = $h->get('/files/none.txt');
is($r->{status}, 401, 'no key: 401');
is($h->json($r)->{error}, 'Unauthorized', '... its JSON');

# a location that is not the product's keeps nginx's page
$r = $h->get('/plain/x');
is($r->{status}, 502, 'an unkeyed location: 502');
like($r->{headers}{'content-type'}, qr{^text/html}, '... nginx\'s own HTML');

# what a client gets: status, type, body and its length
sub answer {
    my ($r) = @_;
    return { status => $r->{status},
             type   => $r->{headers}{'content-type'} // '',
             json   => scalar eval { Harness->json($r->{body}) },
             length => $r->{headers}{'content-length'} // '' };
}

sub json_error {
    my ($status, $error, $body) = @_;
    return { status => $status, type => 'application/json',
             json => { error => $error }, length => length($body // '') };
}

# a precondition the read API's ETag fails (the not-modified filter)
$r = $h->get('/v2/integrations/events', { 'X-Api-Key' => $key,
                                          'If-Match' => '"nope"' });
is_deeply(answer($r), json_error(412, 'Precondition failed', $r->{content}),
          'If-Match another ETag: 412 {"error":"Precondition failed"}');

# a path no location of a keyed server matches: the server's own conf
$r = $h->get('/nowhere.txt');
is_deeply(answer($r), json_error(404, 'Not found', $r->{content}),
          'a path no location matches, keyed server: 404 as JSON');

# What nginx refuses before it chooses a location has the server's own
# configuration. A server with a product location (the single-tenant
# example's, as `make run` serves it) answers that in JSON too; a server
# without one keeps nginx's HTML.
open my $fh, '<', Harness->root . '/conf-examples/single-tenant.conf'
    or die "single-tenant.conf: $!";
my ($example) = do { local $/; <$fh> } =~ /^(    server \{\n.*?^    \}\n)/ms
    or die 'no server block in single-tenant.conf';
$example =~ s/\@PORT\@/%%PORT%%/g;
my $ex = $h->nginx2(<<"EOF2");
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
$example
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "plain"; }
}
EOF2

my $long = 'a' x 9000;
my $get = "GET /v2/integrations/events HTTP/1.1\r\nHost: a\r\n";
my $post = "POST /v2/integrations/events HTTP/1.1\r\nHost: a\r\n";
my @refused = (
    [ 'a duplicate Host header', 400, 'Bad request',
      "${get}Host: b\r\n\r\n" ],
    [ 'no Host header', 400, 'Bad request',
      "GET /v2/integrations/events HTTP/1.1\r\n\r\n" ],
    [ 'a garbage request line', 400, 'Bad request',
      "\x16\x03\x01 hello\r\n\r\n" ],
    [ 'a NUL in the path (%00)', 400, 'Bad request',
      "GET /v2/integrations/events/%00 HTTP/1.1\r\nHost: a\r\n\r\n" ],
    [ 'a path above the root', 400, 'Bad request',
      "GET /../v2/integrations/events HTTP/1.1\r\nHost: a\r\n\r\n" ],
    [ 'a 9000-byte URI', 414, 'URI too long',
      "GET /v2/integrations/events?q=$long HTTP/1.1\r\nHost: a\r\n\r\n" ],
    [ 'a 9000-byte header', 400, 'Request header or cookie too large',
      "${get}X-Long: $long\r\n\r\n" ],
    [ 'a 9000-byte cookie', 400, 'Request header or cookie too large',
      "${get}Cookie: $long\r\n\r\n" ],
    [ 'two If-None-Match headers', 400, 'Bad request',
      "${get}If-None-Match: \"a\"\r\nIf-None-Match: \"b\"\r\n\r\n" ],
    [ 'an invalid Content-Length', 400, 'Bad request',
      "${post}Content-Length: x\r\n\r\n" ],
    [ 'Content-Length and Transfer-Encoding', 400, 'Bad request',
      "${post}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n" ],
    [ 'HTTP/2.0 in the request line', 505, 'HTTP version not supported',
      "GET /v2/integrations/events HTTP/2.0\r\nHost: a\r\n\r\n" ],
    [ 'Transfer-Encoding: gzip', 501, 'Not implemented',
      "${post}Transfer-Encoding: gzip\r\n\r\n" ],
);

for my $t (@refused) {
    my ($what, $status, $error, $req) = @$t;

    $r = $ex->raw($req);
    is_deeply(answer($r), json_error($status, $error, $r->{body}),
              "$what: $status {\"error\":\"$error\"}") or diag $r->{raw};

    $r = $ex->raw($req, port => $ex->port2);
    is_deeply([ $r->{status}, $r->{headers}{'content-type'} // '' ],
              [ $status, 'text/html' ],
              "$what, a server without the product: nginx's HTML");
}

# HEAD: the header alone, as long as its JSON; nginx sends no page for
# HEAD, so a 494 (header too large) is a plain "Bad request" here
$r = $ex->raw("HEAD /v2/integrations/events HTTP/1.1\r\nHost: a\r\n"
              . "X-Long: $long\r\n\r\n");
is_deeply([ $r->{status}, $r->{headers}{'content-type'} // '',
            $r->{headers}{'content-length'}, $r->{body} ],
          [ 400, 'application/json', length('{"error":"Bad request"}' . "\n"),
            '' ],
          'HEAD with a 9000-byte header: 400, JSON headers, no body');

$h->done;
done_testing;
