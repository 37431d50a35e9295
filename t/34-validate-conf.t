#!/usr/bin/perl
# integrations_validate and integrations_cors in the configuration: a bad
# form fails `nginx -t` naming the file and the line of the directive.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Harness;

my $h = Harness->new(redis => 0);

# the snippet's directive is on line 5 of it; the harness's http block
# starts the file, so the line is found by searching the written file
sub conf {
    my ($srv, $loc) = @_;
    return "integrations_redis 127.0.0.1:6379;\nserver {\n"
         . "    listen 127.0.0.1:%%PORT%%;\n    $srv\n"
         . "    location /w {\n        $loc\n"
         . "        proxy_pass http://127.0.0.1:1;\n    }\n}\n";
}

sub line_of {
    my ($file, $text) = @_;
    open my $fh, '<', $file or die "$file: $!";
    while (<$fh>) {
        return $. if index($_, $text) >= 0;
    }
    return 0;
}

sub bad {
    my ($name, $srv, $loc, $msg, $at) = @_;
    my ($rc, $out, $file) = $h->nginx_test(conf($srv, $loc));
    isnt($rc, 0, "nginx -t fails: $name");
    my $line = line_of($file, $at);
    ok($line, "$name: the directive is in the file");
    like($out, qr/\Q$file\E:$line\b/, "$name: names file and line $line")
        or diag $out;
    like($out, $msg, "$name: says what is wrong") or diag $out;
}

sub good {
    my ($name, $srv, $loc) = @_;
    my ($rc, $out) = $h->nginx_test(conf($srv, $loc));
    is($rc, 0, "nginx -t passes: $name") or diag $out;
}

good("integrations_validate $_", '', "integrations_validate $_;")
    for qw(event_create event_update checkin);
{
    my ($rc, $out) = $h->nginx_test(conf('client_max_body_size 0;',
                                         'integrations_validate checkin;'));
    is($rc, 0, 'validate with client_max_body_size 0: passes');
    like($out, qr/\[warn\].*"integrations_validate" with "client_max_body_size 0" in location "\/w"/,
         '... with a warning naming the location');
    ($rc, $out) = $h->nginx_test(conf('client_max_body_size 0;',
        "integrations_validate checkin;\n"
        . '        location /w/in { proxy_pass http://127.0.0.1:1; }'));
    like($out, qr/\[warn\].*"client_max_body_size 0" in location "\/w\/in"/,
         '... and in a nested location that inherits the validation');
    ($rc, $out) = $h->nginx_test(conf('', 'integrations_validate checkin;'));
    unlike($out, qr/client_max_body_size 0/, '... none with the default');
}
good('integrations_cors in server and location', 'integrations_cors on;',
     'integrations_cors off; integrations_validate checkin;');

bad('unknown schema', '', 'integrations_validate event_delete;',
    qr/invalid schema "event_delete", expected event_create, \S+ or checkin/,
    'event_delete');
bad('case matters', '', 'integrations_validate Event_Create;',
    qr/invalid schema "Event_Create"/, 'Event_Create');
# reported on the second one
bad('duplicate', '',
    "integrations_validate checkin;\n        integrations_validate "
    . "event_create;",
    qr/"integrations_validate" directive is duplicate/, 'event_create');
bad('no schema', '', 'integrations_validate;',
    qr/invalid number of arguments in "integrations_validate"/,
    'integrations_validate;');
bad('two schemas', '', 'integrations_validate checkin event_create;',
    qr/invalid number of arguments/, 'checkin event_create');
bad('not in server', 'integrations_validate checkin;', '',
    qr/"integrations_validate" directive is not allowed here/,
    'integrations_validate checkin;');
bad('cors yes', '', 'integrations_cors yes;',
    qr/invalid value "yes" in "integrations_cors"/, 'integrations_cors yes');

$h->done;
done_testing;
