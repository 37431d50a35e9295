#!/usr/bin/perl
# Writes: bodies validated before anything goes upstream, forwarded byte
# for byte with identity headers and without the key; JSON error pages.
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
my $J = JSON::PP->new->canonical;

# a socket that accepts and never answers: the upstream timeout case
my $mute = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1',
                                 LocalPort => 0, Proto => 'tcp') or die;
my $mute_port = $mute->sockport;
# a port nobody listens on: the upstream down case
my $down_port = do {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die;
    my $p = $s->sockport;
    close $s;
    $p;
};

$h->start_nginx(<<"EOF");
log_format backend escape=json '{"method":"\$request_method","uri":"\$uri",'
    '"body":"\$request_body","org":"\$http_x_integrations_org",'
    '"key_id":"\$http_x_integrations_key_id",'
    '"scopes":"\$http_x_integrations_scopes",'
    '"auth":"\$http_authorization","xkey":"\$http_x_api_key",'
    '"ctype":"\$http_content_type"}';
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    client_max_body_size 4k;

    location /v2/integrations/ {
        apikey on;
        apikey_scope events:write;
        proxy_set_header X-Integrations-Org \$apikey_org;
        proxy_set_header X-Integrations-Key-Id \$apikey_id;
        proxy_set_header X-Integrations-Scopes \$apikey_scopes;
        proxy_next_upstream off;

        location = /v2/integrations/events {
            integrations_validate event_create;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location ~ ^/v2/integrations/events/[^/]+\$ {
            integrations_validate event_update;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location ~ ^/v2/integrations/tickets/[^/]+/checkin\$ {
            apikey_scope tickets:write;
            integrations_validate checkin;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location = /v2/integrations/down {
            integrations_validate event_create;
            proxy_pass http://127.0.0.1:$down_port;
        }
        location = /v2/integrations/slow {
            integrations_validate event_create;
            proxy_read_timeout 1s;
            proxy_pass http://127.0.0.1:$mute_port;
        }
        location = /v2/integrations/upstream-error {
            integrations_validate event_create;
            proxy_pass http://127.0.0.1:%%PORT2%%/fail;
        }
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / {
        access_log %%DIR%%/backend.log backend;
        client_body_buffer_size 64k;
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
    location = /fail {
        access_log off;
        default_type text/html;
        return 409 '<p>upstream says conflict</p>';
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

my ($key, $id) = make_key($h, org => 'acme',
                          scopes => 'events:read events:write tickets:write');
my ($ro) = make_key($h, org => 'acme', scopes => 'events:read');

sub req {
    my ($method, $path, $body, %hd) = @_;
    return $h->request($method, $path, { 'X-Api-Key' => $key,
        'Content-Type' => 'application/json', %hd }, $body);
}

sub backend_lines {
    sleep 0.2;   # the backend logs after it has answered
    my @l = grep { length } split /\n/,
        Harness::_slurp($h->dir . '/backend.log');
    return map { $J->decode($_) } @l;
}

sub details {
    my ($res) = @_;
    my $j = $h->json($res);
    is($j->{error}, 'Validation failed', 'error text');
    return { map { $_->{field} => $_->{message} } @{ $j->{details} } };
}

# -- valid bodies are forwarded byte for byte ------------------------------
my $create = qq({ "title": "Comedy Night",  "startsAt": "2026-09-01T19:00:00Z",)
    . qq( "currency":"USD", "visibility":"PUBLIC", "category":"COMEDY",)
    . qq( "ticketTypes": [ {"name":"GA","price":2500,"quantity":120} ] });
my $res = req('POST', '/v2/integrations/events', $create);
is($res->{status}, 201, 'valid create reaches the backend');
my ($b) = backend_lines();
is($b->{body}, $create, 'the body arrives byte for byte');
is($b->{method}, 'POST', 'method');
is($b->{org}, 'acme', 'X-Integrations-Org');
is($b->{key_id}, $id, 'X-Integrations-Key-Id');
is($b->{scopes}, 'events:read events:write tickets:write', 'scopes');
is($b->{auth} . $b->{xkey}, '', 'no key header upstream');
unlike(Harness::_slurp($h->dir . '/backend.log'), qr/\Q$key\E/,
       'the key appears nowhere in what the backend saw');

$res = req('PATCH', '/v2/integrations/events/late-show',
           '{"title":"Late Show","slug":"late-show",'
           . '"addTicketType":{"name":"VIP","price":4500,"quantity":20}}');
is($res->{status}, 201, 'valid patch forwarded');
$res = req('PUT', '/v2/integrations/tickets/abc/checkin',
           '{"enter":1,"entry_date":"2024-09-28T23:00:00.000Z"}');
is($res->{status}, 201, 'valid check-in forwarded');
$res = req('PUT', '/v2/integrations/tickets/abc/checkin', '{"enter":0}');
is($res->{status}, 201, 'check-in revert without entry_date forwarded');
is(scalar(my @l = backend_lines()), 4, 'the backend saw exactly 4 requests');

# -- each rule alone ---------------------------------------------------------
my %create_cases = (
    'title missing' => ['{"startsAt":"2026-09-01T19:00:00Z"}', 'title'],
    'startsAt missing' => ['{"title":"x"}', 'startsAt'],
    'startsAt not ISO' => ['{"title":"x","startsAt":"tomorrow"}', 'startsAt'],
    'startsAt bad month' => ['{"title":"x","startsAt":"2026-13-01T10:00:00Z"}',
                             'startsAt'],
    'endsAt not ISO' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                         . '"endsAt":"2026-09-01"}', 'endsAt'],
    'doorsOpen not ISO' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                            . '"doorsOpen":123}', 'doorsOpen'],
    'currency' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                   . '"currency":"usd"}', 'currency'],
    'visibility' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                     . '"visibility":"SECRET"}', 'visibility'],
    'category' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                   . '"category":"OPERA"}', 'category'],
    'price fractional' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                           . '"ticketTypes":[{"name":"a","price":25.5,'
                           . '"quantity":1}]}', 'ticketTypes[0].price'],
    'quantity negative' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                            . '"ticketTypes":[{"name":"a","price":0,'
                            . '"quantity":-1}]}', 'ticketTypes[0].quantity'],
    'ticket name' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                      . '"ticketTypes":[{"price":0,"quantity":1}]}',
                      'ticketTypes[0].name'],
    'status refused' => ['{"title":"x","startsAt":"2026-09-01T19:00:00Z",'
                         . '"status":"PUBLISHED"}', 'status'],
);
for my $n (sort keys %create_cases) {
    my ($body, $field) = @{ $create_cases{$n} };
    my $r = req('POST', '/v2/integrations/events', $body);
    is($r->{status}, 400, "create, $n: 400");
    my $d = details($r);
    is_deeply([keys %$d], [$field], "create, $n: exactly $field reported");
}

# several at once: every failure listed
{
    my $r = req('POST', '/v2/integrations/events',
                '{"currency":"dollars","status":"x","ticketTypes":'
                . '[{"name":"a","price":1,"quantity":1},{"price":"5"}]}');
    is($r->{status}, 400, 'several failures: 400');
    my $d = details($r);
    is_deeply([sort keys %$d],
              [sort qw(title startsAt currency status ticketTypes[1].name
                       ticketTypes[1].price ticketTypes[1].quantity)],
              'several failures: every one listed');
    is($d->{status}, 'Status changes are not accepted', 'status message');
}

# patch rules
{
    my $r = req('PATCH', '/v2/integrations/events/x', '{}');
    is($r->{status}, 400, 'empty patch: 400');
    $r = req('PATCH', '/v2/integrations/events/x', '{"slug":"Bad Slug"}');
    is_deeply([keys %{ details($r) }], ['slug'], 'patch slug pattern');
    $r = req('PATCH', '/v2/integrations/events/x',
             '{"addTicketType":{"name":"VIP","price":-5,"quantity":1}}');
    is_deeply([keys %{ details($r) }], ['addTicketType.price'],
              'patch addTicketType rules');
    $r = req('PATCH', '/v2/integrations/events/x', '{"status":"CANCELLED"}');
    is_deeply([keys %{ details($r) }], ['status'], 'patch status refused');
}

# check-in: 422 for the conditional field, 400 for a bad value
{
    my $r = req('PUT', '/v2/integrations/tickets/t1/checkin', '{"enter":1}');
    is($r->{status}, 422, 'enter=1 without entry_date: 422');
    is_deeply(details($r), { entry_date => 'is required when enter is 1' },
              '422 details');
    $r = req('PUT', '/v2/integrations/tickets/t1/checkin', '{"enter":2}');
    is($r->{status}, 400, 'enter=2: 400');
    $r = req('PUT', '/v2/integrations/tickets/t1/checkin',
             '{"enter":1,"entry_date":"28/09/2024"}');
    is($r->{status}, 400, 'entry_date not ISO: 400');
    $r = req('PUT', '/v2/integrations/tickets/t1/checkin', '{}');
    is($r->{status}, 400, 'enter missing: 400');
}

# -- not JSON, empty, too large ------------------------------------------------
{
    my $r = req('POST', '/v2/integrations/events', '{"title": "x",');
    is($r->{status}, 400, 'invalid JSON: 400');
    is_deeply([keys %{ details($r) }], ['body'], 'invalid JSON: field body');
    $r = req('POST', '/v2/integrations/events', '');
    is($r->{status}, 400, 'empty body: 400');
    $r = req('POST', '/v2/integrations/events', '[1,2]');
    is($r->{status}, 400, 'not an object: 400');
    $r = req('POST', '/v2/integrations/events',
             '{"title":"' . ('x' x 5000) . '","startsAt":"2026-09-01T19:00:00Z"}');
    is($r->{status}, 413, 'over client_max_body_size: 413');
    like($r->{headers}{'content-type'}, qr{^application/json}, '413 is JSON');
    is_deeply($h->json($r), { error => 'Payload too large' }, '413 body');
}
is(scalar(my @l2 = backend_lines()), 4, 'no invalid body reached the backend');

# -- the scope is checked before the body is read ------------------------------
{
    my $t0 = time;
    my $r = $h->raw("POST /v2/integrations/events HTTP/1.1\r\nHost: x\r\n"
                    . "X-Api-Key: $ro\r\nContent-Type: application/json\r\n"
                    . "Content-Length: 3000\r\n\r\n", timeout => 5);
    is($r->{status}, 403, 'missing events:write: 403 without the body');
    ok(time - $t0 < 2, 'answered without waiting for the body');
    like($r->{body}, qr/"missingScopes":\["events:write"\]/, 'missingScopes');
}

# -- upstream failures are JSON --------------------------------------------------
my $valid = '{"title":"x","startsAt":"2026-09-01T19:00:00Z"}';
{
    my $r = req('POST', '/v2/integrations/down', $valid);
    is($r->{status}, 502, 'upstream down: 502');
    is_deeply($h->json($r), { error => 'Bad gateway' }, '502 JSON');
    my $t0 = time;
    $r = req('POST', '/v2/integrations/slow', $valid);
    is($r->{status}, 504, 'upstream timeout: 504');
    is_deeply($h->json($r), { error => 'Gateway timeout' }, '504 JSON');
    ok(time - $t0 < 3, 'after proxy_read_timeout, not retried');
    $r = req('POST', '/v2/integrations/upstream-error', $valid);
    is($r->{status}, 409, 'an upstream error response passes through');
    is($r->{content}, '<p>upstream says conflict</p>', 'untouched');
}

$h->done;
done_testing;
