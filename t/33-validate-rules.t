#!/usr/bin/perl
# Every rule of integrations_validate, alone and together: the exact
# details list (order and messages), the status (400, or 422 when only a
# conditional field is missing), and nothing but valid bodies upstream.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use Harness;
use Keys qw(make_key);

my $h = Harness->new;
$h->start_nginx(<<'EOF');
log_format backend escape=json '$request_body';
integrations_redis 127.0.0.1:%%REDIS_PORT%%;
server {
    listen 127.0.0.1:%%PORT%%;
    location /w/ {
        apikey on;
        apikey_scope events:write;
        location = /w/create { integrations_validate event_create;
                               proxy_pass http://127.0.0.1:%%PORT2%%; }
        location = /w/update { integrations_validate event_update;
                               proxy_pass http://127.0.0.1:%%PORT2%%; }
        location = /w/checkin { integrations_validate checkin;
                                proxy_pass http://127.0.0.1:%%PORT2%%; }
    }
}
server {
    listen 127.0.0.1:%%PORT2%%;
    location / {
        access_log %%DIR%%/backend.log backend;
        proxy_pass http://127.0.0.1:%%PORT3%%;
    }
}
server {
    listen 127.0.0.1:%%PORT3%%;
    access_log off;
    location / { return 201; }
}
EOF

my ($key) = make_key($h, org => 'acme', scopes => 'events:write');
my $ISO = 'must be an ISO-8601 date-time, e.g. 2026-09-01T19:00:00Z';
my $NONNEG = 'must be a non-negative integer';
my $PRICE = 'must be a non-negative integer (cents: 2500 is 25.00)';
my $T = '"title":"x","startsAt":"2026-09-01T19:00:00Z"';
my $passed = 0;

sub check {
    my ($schema, $body, $status, @details) = @_;
    my $name = "$schema " . (length $body > 70 ? substr($body, 0, 67) . '...'
                                                : $body);
    $name =~ s/\n/\\n/g;
    my $r = $h->request('POST', "/w/$schema", { 'X-Api-Key' => $key,
                        'Content-Type' => 'application/json' }, $body);
    if (!@details && $status == 201) {
        is($r->{status}, 201, "$name: passed") or diag $r->{content};
        $passed++;
        return;
    }
    is($r->{status}, $status, "$name: $status");
    like($r->{headers}{'content-type'}, qr{^application/json}, "$name: JSON");
    my $j = eval { $h->json($r) } || {};
    is_deeply($j, { error => 'Validation failed', details =>
        [ map { { field => $_->[0], message => $_->[1] } } @details ] },
        "$name: details") or diag $r->{content};
}

# -- event_create -------------------------------------------------------------
check('create', qq({$T}), 201);
check('create', <<'EOF', 201);
{
"title": "Comedy Night",
"startsAt": "2026-09-01T19:00:00Z",
"timezone": "America/New_York",
"venueName": "Main Room",
"city": "New York",
"country": "US",
"currency": "USD",
"visibility": "PUBLIC",
"category": "COMEDY",
"ticketTypes": [
{ "name": "General Admission", "price": 2500, "quantity": 120 }
]
}
EOF
check('create', qq({$T,"ticketTypes":[{"name":"Free","price":0,"quantity":0,)
      . qq("minPerOrder":1,"maxPerOrder":10,"hidden":false,)
      . qq("salesStart":"2026-06-01T00:00:00Z","salesEnd":null}]}), 201);
check('create', qq({$T,"endsAt":null,"doorsOpen":null,"description":null}),
      201);
check('create', qq({$T,"unknownField":[1,2,3]}), 201);

for my $ok ('2026-09-01T19:00Z', '2026-09-01T19:00:00.123+02:00',
            '2026-09-01T19:00:00.123456789-04:30', '2024-02-29T00:00:00Z',
            '2000-02-29T23:59:59Z', '2026-12-31T00:00:00+14:00')
{
    check('create', qq({"title":"x","startsAt":"$ok"}), 201);
}
for my $bad ('2026-09-01', '2026-09-01 19:00:00Z', '2026-09-01T19:00:00',
             '2026-02-29T10:00:00Z', '1900-02-29T10:00:00Z',
             '2026-04-31T10:00:00Z', '2026-09-01T24:00:00Z',
             '2026-09-01T19:60Z', '2026-09-01T19:00:60Z',
             '2026-09-01T19:00:00+0200', '2026-09-01T19:00:00Z\n',
             '2026-09-01t19:00:00z', '2026-13-01T10:00:00Z',
             '2026-00-10T10:00:00Z', '26-09-01T19:00:00Z',
             '2026-09-01T19:00:00.Z', ' 2026-09-01T19:00:00Z')
{
    check('create', qq({"title":"x","startsAt":"$bad"}), 400,
          ['startsAt', $ISO]);
}
check('create', qq({"title":"x","startsAt":1788282000}), 400,
      ['startsAt', $ISO]);
check('create', qq({$T,"endsAt":"tomorrow"}), 400, ['endsAt', $ISO]);
check('create', qq({$T,"doorsOpen":false}), 400, ['doorsOpen', $ISO]);

check('create', '{"startsAt":"2026-09-01T19:00:00Z"}', 400,
      ['title', 'is required']);
check('create', '{"title":"","startsAt":"2026-09-01T19:00:00Z"}', 400,
      ['title', 'must be a non-empty string']);
check('create', '{"title":7,"startsAt":"2026-09-01T19:00:00Z"}', 400,
      ['title', 'must be a non-empty string']);
check('create', '{"title":"x"}', 400, ['startsAt', 'is required']);
check('create', '{"title":"x","startsAt":null}', 400,
      ['startsAt', 'is required']);

for my $c ('"usd"', '"US"', '"USDX"', '"USD\n"', '840', '"U$D"', 'null') {
    check('create', qq({$T,"currency":$c}), 400,
          ['currency', 'must be a three-letter currency code, e.g. USD']);
}
check('create', qq({$T,"currency":"EUR"}), 201);
check('create', qq({$T,"visibility":"public"}), 400,
      ['visibility', 'must be PUBLIC, UNLISTED or PRIVATE']);
check('create', qq({$T,"visibility":"UNLISTED","category":"THEATER"}), 201);
check('create', qq({$T,"category":"OPERA"}), 400,
      ['category', 'must be COMEDY, MUSIC, CONFERENCE, WORKSHOP, THEATER, '
                   . 'SPORTS or OTHER']);
check('create', qq({$T,"status":"PUBLISHED"}), 400,
      ['status', 'Status changes are not accepted']);
check('create', qq({$T,"status":null}), 400,
      ['status', 'Status changes are not accepted']);
check('create', qq({$T,"timezone":-5}), 400, ['timezone', 'must be a string']);
check('create', qq({$T,"venueName":{}}), 400,
      ['venueName', 'must be a string']);
check('create', qq({$T,"slug":"Comedy Night"}), 400,
      ['slug', 'must match [a-z0-9][a-z0-9-]* (at most 128 characters)']);

# ticket types
check('create', qq({$T,"ticketTypes":{}}), 400,
      ['ticketTypes', 'must be an array']);
check('create', qq({$T,"ticketTypes":[]}), 201);
check('create', qq({$T,"ticketTypes":[5]}), 400,
      ['ticketTypes[0]', 'must be an object']);
check('create', qq({$T,"ticketTypes":[{"name":"a","price":25.5,)
      . qq("quantity":1}]}), 400, ['ticketTypes[0].price', $PRICE]);
check('create', qq({$T,"ticketTypes":[{"name":"a","price":"2500",)
      . qq("quantity":1}]}), 400, ['ticketTypes[0].price', $PRICE]);
check('create', qq({$T,"ticketTypes":[{"name":"a","price":-1,)
      . qq("quantity":1}]}), 400, ['ticketTypes[0].price', $PRICE]);
check('create', qq({$T,"ticketTypes":[{"name":"a","price":1,)
      . qq("quantity":2.0}]}), 400, ['ticketTypes[0].quantity', $NONNEG]);
check('create', qq({$T,"ticketTypes":[{"name":"a","price":1}]}), 400,
      ['ticketTypes[0].quantity', 'is required']);
check('create', qq({$T,"ticketTypes":[{"price":1,"quantity":1}]}), 400,
      ['ticketTypes[0].name', 'is required']);
check('create', qq({$T,"ticketTypes":[{"name":"","price":1,"quantity":1}]}),
      400, ['ticketTypes[0].name', 'must be a non-empty string']);
check('create', qq({$T,"ticketTypes":[{"name":"a","price":1,"quantity":1},)
      . qq({"name":"b","price":1,"quantity":1,"minPerOrder":0,)
      . qq("maxPerOrder":"10","hidden":"no","salesEnd":"soon"}]}), 400,
      ['ticketTypes[1].minPerOrder', 'must be a positive integer'],
      ['ticketTypes[1].maxPerOrder', 'must be a positive integer'],
      ['ticketTypes[1].salesEnd', $ISO],
      ['ticketTypes[1].hidden', 'must be true or false']);

# everything at once, in the documented order
check('create', '{"status":"DRAFT","title":"","startsAt":"2026-02-30T10:00Z",'
      . '"endsAt":"x","doorsOpen":1,"currency":"usd","visibility":"ALL",'
      . '"category":"opera","timezone":1,"city":[],"slug":"-x",'
      . '"ticketTypes":[{"name":"ok","price":1,"quantity":1},'
      . '{"price":25.5},7]}', 400,
      ['status', 'Status changes are not accepted'],
      ['title', 'must be a non-empty string'],
      ['startsAt', $ISO], ['endsAt', $ISO], ['doorsOpen', $ISO],
      ['currency', 'must be a three-letter currency code, e.g. USD'],
      ['visibility', 'must be PUBLIC, UNLISTED or PRIVATE'],
      ['category', 'must be COMEDY, MUSIC, CONFERENCE, WORKSHOP, THEATER, '
                   . 'SPORTS or OTHER'],
      ['timezone', 'must be a string'], ['city', 'must be a string'],
      ['slug', 'must match [a-z0-9][a-z0-9-]* (at most 128 characters)'],
      ['ticketTypes[1].name', 'is required'],
      ['ticketTypes[1].price', $PRICE],
      ['ticketTypes[1].quantity', 'is required'],
      ['ticketTypes[2]', 'must be an object']);

# -- event_update -------------------------------------------------------------
check('update', '{"title":"Late Show","slug":"late-show",'
      . '"addTicketType":{"name":"VIP","price":4500,"quantity":20}}', 201);
check('update', '{"removeTicketTypeId":7}', 201);
check('update', '{"endsAt":null}', 201);
check('update', '{"slug":"a"}', 201);
check('update', '{"slug":"' . ('a' x 128) . '"}', 201);
check('update', '{}', 400, ['body', 'has no field to update']);
check('update', '{"title":""}', 400, ['title', 'must be a non-empty string']);
check('update', '{"title":null}', 400,
      ['title', 'must be a non-empty string']);
check('update', '{"startsAt":null}', 400, ['startsAt', 'cannot be removed']);
check('update', '{"startsAt":"soon"}', 400, ['startsAt', $ISO]);
check('update', '{"status":"CANCELLED"}', 400,
      ['status', 'Status changes are not accepted']);
for my $s ('"Bad Slug"', '"-x"', '"a_b"', '"late-show\n"', '""', '7',
           '"' . ('a' x 129) . '"')
{
    check('update', qq({"slug":$s}), 400,
          ['slug', 'must match [a-z0-9][a-z0-9-]* (at most 128 characters)']);
}
check('update', '{"addTicketType":[]}', 400,
      ['addTicketType', 'must be an object']);
check('update', '{"addTicketType":{"name":"VIP","price":-5,"quantity":1}}',
      400, ['addTicketType.price', $PRICE]);
check('update', '{"addTicketType":{}}', 400,
      ['addTicketType.name', 'is required'],
      ['addTicketType.price', 'is required'],
      ['addTicketType.quantity', 'is required']);
for my $id ('"7"', '-1', '1.5', 'null') {
    check('update', qq({"removeTicketTypeId":$id}), 400,
          ['removeTicketTypeId', 'must be an integer ticket type id']);
}
check('update', '{"currency":"eur","visibility":"x","title":"","status":1,'
      . '"removeTicketTypeId":"x","addTicketType":{"name":"a","price":1,'
      . '"quantity":-1}}', 400,
      ['status', 'Status changes are not accepted'],
      ['title', 'must be a non-empty string'],
      ['currency', 'must be a three-letter currency code, e.g. USD'],
      ['visibility', 'must be PUBLIC, UNLISTED or PRIVATE'],
      ['addTicketType.quantity', $NONNEG],
      ['removeTicketTypeId', 'must be an integer ticket type id']);

# -- checkin (Fourvenues) -----------------------------------------------------
my $D = '"entry_date":"2024-09-28T23:00:00.000Z"';
check('checkin', qq({"enter":1,$D}), 201);
check('checkin', '{"enter":0}', 201);
check('checkin', qq({"enter":0,$D}), 201);
check('checkin', '{"enter":1}', 422,
      ['entry_date', 'is required when enter is 1']);
check('checkin', '{"enter":1,"entry_date":null}', 422,
      ['entry_date', 'is required when enter is 1']);
check('checkin', '{"enter":2}', 400, ['enter', 'must be 0 or 1']);
check('checkin', '{"enter":"1"}', 400, ['enter', 'must be 0 or 1']);
check('checkin', '{"enter":true}', 400, ['enter', 'must be 0 or 1']);
check('checkin', '{"enter":1.0}', 400, ['enter', 'must be 0 or 1']);
check('checkin', '{}', 400,
      ['enter', 'is required (1 to mark as entered, 0 to revert)']);
check('checkin', qq({$D}), 400,
      ['enter', 'is required (1 to mark as entered, 0 to revert)']);
check('checkin', '{"enter":1,"entry_date":"28/09/2024"}', 400,
      ['entry_date', $ISO]);
check('checkin', '{"enter":0,"entry_date":"yesterday"}', 400,
      ['entry_date', $ISO]);
check('checkin', '{"enter":2,"entry_date":5}', 400,
      ['enter', 'must be 0 or 1'], ['entry_date', $ISO]);

# -- the body itself ----------------------------------------------------------
for my $s ('create', 'update', 'checkin') {
    check($s, '', 400, ['body', 'is empty; a JSON object is expected']);
    check($s, '[1,2]', 400, ['body', 'must be a JSON object']);
    check($s, 'null', 400, ['body', 'must be a JSON object']);
    check($s, '"enter"', 400, ['body', 'must be a JSON object']);
}

for my $bad ('{"title": "x",', '{"title":"x"} trailing', "\n  \n",
             '{"title":"x","title":"y"}', '{"title":"a\u0000b"}',
             "{\"title\":\"\xff\"}", "{'title':'x'}", '{"a":1,}')
{
    my $r = $h->request('POST', '/w/create', { 'X-Api-Key' => $key },
                        $bad);
    (my $n = $bad) =~ s/([^\x20-\x7e])/sprintf '\\x%02x', ord $1/ge;
    is($r->{status}, 400, "invalid JSON $n: 400");
    my $j = eval { $h->json($r) } || {};
    is(scalar @{ $j->{details} || [] }, 1, "invalid JSON $n: one failure");
    is($j->{details}[0]{field}, 'body', "invalid JSON $n: field body");
    like($j->{details}[0]{message},
         qr/^is not valid JSON: .+ \(line \d+, column \d+\)$/,
         "invalid JSON $n: says where");
}

# -- many failures: the first 100 listed, the rest counted -------------------
sub many {
    my ($n) = @_;
    my $body = qq({$T,"ticketTypes":[) . join(',', (1) x $n) . ']}';
    my $r = $h->request('POST', '/w/create', { 'X-Api-Key' => $key,
                        'Content-Type' => 'application/json' }, $body);
    return ($r, scalar eval { $h->json($r) } || {});
}

sub listed {
    my ($from, $to) = @_;
    return [ map { { field => "ticketTypes[$_]",
                     message => 'must be an object' } } $from .. $to ];
}

my ($r, $j) = many(100);
is_deeply([ $r->{status}, $j ],
          [ 400, { error => 'Validation failed', details => listed(0, 99) } ],
          '100 failures: all listed, no detailsOmitted');

($r, $j) = many(101);
is_deeply([ $r->{status}, $j ],
          [ 400, { error => 'Validation failed', details => listed(0, 99),
                   detailsOmitted => 1 } ],
          '101 failures: the first 100 listed, detailsOmitted 1');

($r, $j) = many(30000);
is_deeply([ $r->{status}, $j ],
          [ 400, { error => 'Validation failed', details => listed(0, 99),
                   detailsOmitted => 29900 } ],
          '30,000 failures: the first 100 listed, detailsOmitted 29900');
cmp_ok(length $r->{content}, '<', 8192, '... in a small body')
    or diag length $r->{content};

# -- what the backend got -----------------------------------------------------
sleep 0.2;
my @got = grep { length } split /\n/, Harness::_slurp($h->dir . '/backend.log');
is(scalar @got, $passed, "the backend got the $passed valid bodies, no other");

$h->done;
done_testing;
