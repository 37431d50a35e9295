#!/usr/bin/perl
# Bodies however nginx holds them (one buffer, a temporary file, chunked)
# are validated and forwarded byte for byte; nginx's own error pages in
# integrations_validate / integrations_cors locations are JSON with the
# right length, HEAD included; an upstream's own responses pass untouched.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Harness;
use Keys qw(make_key);

my $h = Harness->new;
my $J = JSON::PP->new;

my $down_port = do {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die;
    my $p = $s->sockport;
    close $s;
    $p;
};

$h->start_nginx(<<"EOF");
log_format backend escape=json '{"uri":"\$uri","body":"\$request_body",'
    '"len":"\$http_content_length","te":"\$http_transfer_encoding"}';
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    client_max_body_size 16k;
    client_body_buffer_size 1k;
    apikey on;
    apikey_scope events:write;

    location = /mem {
        client_body_buffer_size 16k;
        integrations_validate event_create;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /file {
        integrations_validate event_create;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /file-only {
        client_body_in_file_only clean;
        integrations_validate event_create;
        proxy_pass http://127.0.0.1:%%PORT2%%;
    }
    location = /down {
        integrations_cors on;
        integrations_validate event_create;
        proxy_pass http://127.0.0.1:$down_port;
    }
    location = /conflict {
        integrations_cors on;
        integrations_validate event_create;
        proxy_pass http://127.0.0.1:%%PORT2%%/conflict;
    }
    location = /upstream-502 {
        integrations_validate event_create;
        proxy_pass http://127.0.0.1:%%PORT2%%/html-502;
    }
    location = /cors-upstream {
        integrations_cors on;
        proxy_pass http://127.0.0.1:%%PORT2%%/cors;
    }
    location /nginx/ {
        apikey off;
        integrations_cors on;
        location = /nginx/404 { return 404; }
        location = /nginx/418 { return 418; }
        location = /nginx/503 { return 503; }
        location = /nginx/text { return 404 'own text'; }
    }
    location = /plain {
        apikey off;
        return 404;
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    client_body_buffer_size 64k;
    location / {
        access_log %%DIR%%/backend.log backend;
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
    location = /conflict {
        default_type application/json;
        return 409 '{"error":"Slug is already taken"}';
    }
    location = /html-502 {
        default_type text/html;
        return 502 '<html>the backend says bad gateway</html>';
    }
    location = /cors {
        add_header Access-Control-Allow-Origin https://evil.example;
        add_header Access-Control-Expose-Headers X-Secret;
        return 200 'ok';
    }
}
server {
    listen 127.0.0.1:%%PORT3%%;
    access_log off;
    location / {
        default_type application/json;
        return 201 '{"created":true}';
    }
}
EOF

my ($key) = make_key($h, org => 'acme', scopes => 'events:write');
my ($ro) = make_key($h, org => 'acme', scopes => 'events:read');

sub post {
    my ($path, $body, %hd) = @_;
    return $h->request('POST', $path, { 'X-Api-Key' => $key,
        'Content-Type' => 'application/json', %hd }, $body);
}

sub backend {
    sleep 0.2;
    return map { $J->decode($_) } grep { length }
        split /\n/, Harness::_slurp($h->dir . '/backend.log');
}

sub chunked {
    my ($path, $body, $piece, %o) = @_;
    my $req = "POST $path HTTP/1.1\r\nHost: x\r\nX-Api-Key: $key\r\n"
        . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        . "Connection: close\r\n\r\n";
    for (my $i = 0; $i < length $body; $i += $piece) {
        my $c = substr($body, $i, $piece);
        $req .= sprintf("%x\r\n", length $c) . "$c\r\n";
    }
    return $h->raw($req . "0\r\n\r\n", %o);
}

# a valid body of some 6 KB: whitespace, key order, escapes, UTF-8 kept
my $tt = join ",\n  ", map {
    qq({ "quantity" : $_, "name" : "Tier \\u00e9 $_ \xc3\xa9", "price":$_ })
} 1 .. 100;
my $big = qq({\n  "startsAt":"2026-09-01T19:00:00+02:00",  "title" : "Big",\n)
        . qq(  "ticketTypes" : [\n  $tt\n  ]\t}\n);
ok(length($big) > 4096 && length($big) < 16384, 'the body: ' . length $big);

my $n = 0;
for my $path ('/mem', '/file', '/file-only') {
    my $r = post($path, $big);
    is($r->{status}, 201, "$path: valid body forwarded");
    $n++;
    my @b = backend();
    is(scalar @b, $n, "$path: one request upstream");
    ok($b[-1]{body} eq $big, "$path: byte for byte") or diag $b[-1]{body};
    is($b[-1]{len}, length $big, "$path: Content-Length");

    (my $bad = $big) =~ s/"price":100/"price":100.5/;
    $r = post($path, $bad);
    is($r->{status}, 400, "$path: an invalid body is read whole and refused");
    is_deeply($h->json($r)->{details}, [{ field => 'ticketTypes[99].price',
        message => 'must be a non-negative integer (cents: 2500 is 25.00)' }],
        "$path: the failure is found at the end of the body");
}
# a body declared as a form or XML: 415, never read nor forwarded; an
# untyped one (text/plain, octet-stream, none) is read as JSON
{
    my $ok = '{"title":"T","startsAt":"2026-09-01T19:00:00Z"}';
    for my $type ('application/x-www-form-urlencoded',
                  'multipart/form-data; boundary=x', 'application/xml',
                  'text/xml; charset=utf-8', 'application/atom+xml') {
        my $r = post('/mem', $ok, 'Content-Type' => $type);
        is($r->{status}, 415, "Content-Type $type: 415");
        is_deeply(eval { $h->json($r) }, { error => 'Unsupported media type' },
                  '... {"error":"Unsupported media type"}');
    }
    for my $type ('application/json; charset=utf-8', 'Application/JSON',
                  'application/merge-patch+json', 'text/plain',
                  'application/octet-stream') {
        my $r = post('/mem', $ok, 'Content-Type' => $type);
        is($r->{status}, 201, "Content-Type $type: forwarded");
        $n++;
    }
    my $r = $h->request('POST', '/mem', { 'X-Api-Key' => $key }, $ok);
    is($r->{status}, 201, 'no Content-Type: read as JSON, forwarded');
    $n++;
}
is(scalar(my @b0 = backend()), $n, 'no invalid body upstream');
ok($h->logs_contain('a client request body is buffered to a temporary file'),
   'the larger bodies were read from temporary files');

# chunked: read whole, forwarded with a Content-Length, same bytes
{
    my $r = chunked('/file', $big, 1000);
    is($r->{status}, 201, 'chunked body forwarded');
    my @b = backend();
    ok($b[-1]{body} eq $big, 'chunked: byte for byte');
    is($b[-1]{len}, length $big, 'chunked: sent upstream with its length');
    is($b[-1]{te}, '', 'chunked: not chunked upstream');

    $r = chunked('/file', $big x 3, 4000);
    is($r->{status}, 413, 'chunked over client_max_body_size: 413');
    like($r->{headers}{'content-type'}, qr{^application/json}, '413 JSON');
    is($r->{body}, qq({"error":"Payload too large"}\n), '413 body');
    is($r->{headers}{'content-length'}, length $r->{body}, 'its length');
}

# a malformed chunked body: nginx's 400, as JSON
{
    my $r = $h->raw("POST /file HTTP/1.1\r\nHost: x\r\nX-Api-Key: $key\r\n"
                    . "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
                    timeout => 5);
    is($r->{status}, 400, 'malformed chunked body: 400');
    is($r->{body}, qq({"error":"Bad request"}\n), 'JSON');
}

# declared too large: refused before anything is read (and before the key)
{
    my $r = $h->raw("POST /file HTTP/1.1\r\nHost: x\r\nX-Api-Key: $key\r\n"
                    . "Content-Length: 100000\r\n"
                    . "Expect: 100-continue\r\n\r\n", timeout => 5);
    is($r->{status}, 413, 'Content-Length over the limit: 413 at once');
    is($r->{body}, qq({"error":"Payload too large"}\n), 'JSON');
}

# the scope is checked before the body is read: no "100 Continue"
{
    my $t0 = time;
    my $r = $h->raw("POST /file HTTP/1.1\r\nHost: x\r\nX-Api-Key: $ro\r\n"
                    . "Content-Length: 10000\r\nExpect: 100-continue\r\n"
                    . "\r\n", timeout => 5);
    is($r->{status}, 403, 'read-only key, Expect: 100-continue: 403');
    unlike($r->{raw}, qr{^HTTP/1.1 100}, 'no 100 Continue was sent');
    ok(time - $t0 < 2, 'at once');
}

# a refused body leaves the connection usable
{
    my $bad = '{"title":1}';
    my $r = $h->raw("POST /mem HTTP/1.1\r\nHost: x\r\nX-Api-Key: $key\r\n"
                    . "Content-Length: " . length($bad) . "\r\n\r\n$bad"
                    . "POST /mem HTTP/1.1\r\nHost: x\r\nX-Api-Key: $key\r\n"
                    . "Content-Length: " . length($big) . "\r\n"
                    . "Connection: close\r\n\r\n$big", read_all => 1);
    my @st = $r->{raw} =~ m{^HTTP/1\.1 (\d+)}mg;
    is_deeply(\@st, [400, 201], 'keep-alive: 400 then 201 on one connection');
}

# -- nginx's own error pages become JSON --------------------------------------
my $valid = '{"title":"x","startsAt":"2026-09-01T19:00:00Z"}';
{
    my $r = post('/down', $valid, Origin => 'https://app.example');
    is($r->{status}, 502, 'upstream down: 502');
    is($r->{content}, qq({"error":"Bad gateway"}\n), '502 JSON');
    like($r->{headers}{'content-type'}, qr{^application/json}, 'its type');
    is($r->{headers}{'access-control-allow-origin'}, '*', 'CORS on the 502');

    $r = $h->raw("HEAD /nginx/503 HTTP/1.1\r\nHost: x\r\n"
                 . "Connection: close\r\n\r\n", read_all => 1);
    is($r->{status}, 503, 'HEAD: 503');
    like($r->{headers}{'content-type'}, qr{^application/json},
         'HEAD: JSON type');
    is($r->{headers}{'content-length'},
       length(qq({"error":"Service unavailable"}\n)), 'HEAD: the JSON length');
    is($r->{body}, '', 'HEAD: no body');
}

for my $c ([404, 'Not found'], [418, 'Request failed'],
           [503, 'Service unavailable'])
{
    my ($code, $text) = @$c;
    my $r = $h->get("/nginx/$code");
    is($r->{status}, $code, "return $code");
    is($r->{content}, qq({"error":"$text"}\n), "return $code: JSON");
    is($r->{headers}{'access-control-allow-origin'}, '*', "$code: CORS");
}
{
    my $r = $h->get('/nginx/text');
    is($r->{content}, 'own text', 'a configured body is left alone');
    $r = $h->get('/plain');
    like($r->{content}, qr/<html>/, 'outside these locations: nginx as is');
}

# -- the upstream's own answers pass through ----------------------------------
{
    my $r = post('/conflict', $valid);
    is($r->{status}, 409, 'upstream 409');
    is($r->{content}, '{"error":"Slug is already taken"}', 'untouched');
    is($r->{headers}{'access-control-allow-origin'}, '*', 'with CORS');

    $r = post('/upstream-502', $valid);
    is($r->{status}, 502, 'the upstream\'s own 502');
    is($r->{content}, '<html>the backend says bad gateway</html>',
       'its body untouched');

    $r = $h->raw("GET /cors-upstream HTTP/1.1\r\nHost: x\r\n"
                 . "X-Api-Key: $key\r\nConnection: close\r\n\r\n",
                 read_all => 1);
    my @acao = $r->{raw} =~ /^Access-Control-Allow-Origin: (.*?)\r$/mgi;
    is_deeply(\@acao, ['*'], 'one Access-Control-Allow-Origin: ours');
    my @aceh = $r->{raw} =~ /^Access-Control-Expose-Headers: (.*?)\r$/mgi;
    is(scalar @aceh, 1, 'one Access-Control-Expose-Headers');
    unlike($aceh[0] // '', qr/X-Secret/, 'the upstream\'s is replaced');
}

$h->done;
done_testing;
