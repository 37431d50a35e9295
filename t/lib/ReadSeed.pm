package ReadSeed;

# Writes events and attendees straight into Redis exactly as
# docs/DATA_MODEL.md lays them out (what `integrationsctl data import`
# writes), so that the read API can be tested on its own and bulk data
# (tens of thousands of attendees) loads in seconds through redis-cli --pipe.
#
#   my $s = ReadSeed->new($h, org => 'acme', env => 'live');
#   $s->event({ id => 1, slug => 'fest', title => 'Fest',
#               starts => '2026-09-01T19:00:00Z', ... },
#             ticketTypes => [...], availability => {...},
#             eventFields => [...], categoryFields => [...]);
#   $s->attendee('fest', { id => 10, name => 'Ann', ... });
#   $s->flush;              # sends everything queued (one redis-cli --pipe)
#
# Item JSON is compact, fields in the documented order, absent ones null.
# Text is given as Perl character strings (stored as UTF-8).
# JSON values given as strings are strings, numbers are numbers (Perl's
# flags, as JSON::PP sees them); booleans: pass JSON::PP::true/false or
# 1/0 for promo/scanned/paid/published.

use strict;
use warnings;
use Carp qw(croak);
use JSON::PP;
use Time::Local qw(timegm);

our @EVENT_FIELDS = qw(id slug title starts ends status published passCount
                       revenue updated);
our @ATTENDEE_FIELDS = qw(id name email phone createdTime promo scanned
                          reference identifier category categoryId amount
                          paid customFields updated);

my $JSON = JSON::PP->new->utf8->allow_nonref->canonical;

sub new {
    my ($class, $h, %o) = @_;
    return bless {
        h      => $h,
        org    => $o{org} // 'acme',
        env    => $o{env} // 'live',
        prefix => $o{prefix} // '',
        now    => $o{now} // time,
        buf    => [],
        n      => 0,
        am     => {},
        ev     => {},
        # ascii_search: the search text as imports before 2026-12-02 wrote
        # it (ASCII lowercase only)
        ascii  => $o{ascii_search},
    }, $class;
}

# the search text as integrationsctl writes it (ngx_integrations_fold):
# UTF-8 bytes in and out, every letter of the BMP whose case fold is one
# letter of the same UTF-8 length folded
sub fold {
    my ($bytes) = @_;
    my $t = $bytes;
    utf8::decode($t) or return $bytes =~ tr/A-Z/a-z/r;
    my $out = join '', map {
        my $l = CORE::fc($_);
        my ($a, $b) = ($_, $l);
        utf8::encode($a);
        utf8::encode($b);
        ord($_) < 0x10000 && length($l) == 1 && length($a) == length($b)
            ? $l : $_;
    } split //, $t;
    utf8::encode($out);
    return $out;
}

sub _fold {
    my ($self, $bytes) = @_;
    return $self->{ascii} ? $bytes =~ tr/A-Z/a-z/r : fold($bytes);
}

sub D {
    my $self = shift;
    return "$self->{prefix}\{o:$self->{org}}:$self->{env}";
}

sub pad { sprintf '%020s', $_[0] }

# ISO-8601 (Z or offset) -> epoch seconds; numbers pass through
sub epoch {
    my ($t) = @_;
    return undef unless defined $t;
    return $t if $t =~ /^-?\d+(?:\.\d+)?$/;
    my ($y, $mo, $d, $H, $M, $S, $f, $z) = $t =~
        /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?)?
          (Z|[+-]\d\d:?\d\d)?$/xi or croak "bad time $t";
    my $e = timegm($S // 0, $M // 0, $H // 0, $d, $mo - 1, $y);
    if ($z && $z =~ /^([+-])(\d\d):?(\d\d)$/) {
        $e -= ($1 eq '-' ? -1 : 1) * ($2 * 3600 + $3 * 60);
    }
    $e .= $f if $f && $f !~ /^\.0*$/;
    return $e;
}

sub iso {
    my @t = gmtime($_[0]);
    return sprintf '%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900, $t[4] + 1,
        @t[3, 2, 1, 0];
}

sub _bool {
    my $v = shift;
    return JSON::PP::null() unless defined $v;
    return $v if JSON::PP::is_bool($v);
    return $v ? JSON::PP::true : JSON::PP::false;
}

sub _truthy {
    my $v = shift;
    return 0 unless defined $v;
    return $v ? 1 : 0;
}

# compact JSON object of the given fields in this order
sub _object {
    my ($r, @fields) = @_;
    return '{' . join(',', map {
        $JSON->encode($_) . ':' . $JSON->encode($r->{$_})
    } @fields) . '}';
}

sub cmd {
    my ($self, @args) = @_;
    my $s = '*' . @args . "\r\n";
    for my $a (@args) {
        # JSON is already UTF-8 bytes; other text is characters
        my $b = defined $a ? "$a" : '';
        utf8::encode($b) if utf8::is_utf8($b);
        $s .= '$' . length($b) . "\r\n$b\r\n";
    }
    push @{ $self->{buf} }, $s;
    $self->{n}++;
    $self->flush if @{ $self->{buf} } >= 200000;
    return;
}

sub flush {
    my $self = shift;
    return unless @{ $self->{buf} };
    my $h = $self->{h};
    my $file = $h->dir . "/seed-$$.resp";
    open my $fh, '>', $file or croak "$file: $!";
    binmode $fh;
    print $fh @{ $self->{buf} };
    close $fh;
    $self->{buf} = [];
    my @auth = defined $h->redis_pass
        ? ('-a', $h->redis_pass, '--no-auth-warning') : ();
    my $out = `redis-cli -h 127.0.0.1 -p @{[ $h->redis_port ]} @auth --pipe < $file 2>&1`;
    unlink $file;
    croak "redis-cli --pipe failed: $out" unless $out =~ /errors: 0,/;
    return;
}

# the event hash and its indexes; %o: ticketTypes availability eventFields
# categoryFields (absent: kept as stored, like the importer)
sub event {
    my ($self, $ev, %o) = @_;
    my %e = %$ev;
    $e{updated} //= iso($self->{now});
    $e{published} = _bool($e{published});
    my $id = pad($e{id});
    my $D = $self->D;
    my $E = "$D:ev:$id";
    my $item = _object(\%e, @EVENT_FIELDS);
    my %detail = %e;
    my $tt = $o{ticketTypes} // $self->{ev}{$id}{tt} // [];
    my $detail = substr(_object(\%e, @EVENT_FIELDS), 0, -1)
        . ',"ticketTypes":' . $JSON->encode($tt) . '}';
    $self->{ev}{$id}{tt} = $tt;

    my $title = $e{title} // '';
    utf8::encode($title);
    my $slug = $e{slug} // '';
    utf8::encode($slug);
    my $search = $self->_fold("$title\n$slug");

    if (my $old = $self->{ev}{$id}{slug}) {
        $self->cmd('HDEL', "$D:slugs", $old) if $old ne $slug;
    }
    $self->{ev}{$id}{slug} = $slug;

    my @f = (item => $item, detail => $detail, slug => $slug,
             search => $search, starts => epoch($e{starts}) // '',
             ends => epoch($e{ends}) // '', status => $e{status} // '',
             published => _truthy($ev->{published}),
             updated => epoch($e{updated}));
    push @f, tt => $JSON->encode($o{ticketTypes}) if $o{ticketTypes};
    push @f, av => $JSON->encode($o{availability}) if $o{availability};
    push @f, ef => $JSON->encode($o{eventFields}) if $o{eventFields};
    push @f, cf => $JSON->encode($o{categoryFields}) if $o{categoryFields};
    $self->cmd('HSET', $E, @f);
    $self->cmd('ZADD', "$D:events", epoch($e{starts}) // 0, $id);
    $self->cmd('HSET', "$D:items", $id, $item);
    $self->cmd('HSET', "$D:slugs", $slug, $id);
    return $id;
}

sub _event_of {
    my ($self, $slug) = @_;
    for my $id (keys %{ $self->{ev} }) {
        return $id if $self->{ev}{$id}{slug} eq $slug;
    }
    croak "unknown event $slug (seed it first)";
}

sub attendee {
    my ($self, $slug, $at) = @_;
    my %a = %$at;
    $a{updated} //= iso($self->{now});
    $a{$_} = _bool($a{$_}) for qw(promo scanned paid);
    my $m = pad($a{id});
    my $E = $self->D . ':ev:' . $self->_event_of($slug);
    my $ct = epoch($a{createdTime}) // 0;

    my @as = map { my $v = $a{$_} // ''; utf8::encode($v); $self->_fold($v) }
        qw(name email phone reference);
    my $sc = _truthy($at->{scanned});
    my $pr = _truthy($at->{promo});
    my $cat = $a{categoryId};

    if (my $old = $self->{am}{$E}{$m}) {
        my ($os, $op, $oc) = $old =~ /^(\d)(\d):(.*)$/;
        $self->cmd('ZREM', "$E:s$os", $m);
        $self->cmd('ZREM', "$E:p$op", $m);
        $self->cmd('ZREM', "$E:c:$oc", $m) if length $oc;
    }
    my $am = "$sc$pr:" . ($cat // '');
    $self->{am}{$E}{$m} = $am;

    $self->cmd('ZADD', "$E:att", $ct, $m);
    $self->cmd('HSET', "$E:ai", $m, _object(\%a, @ATTENDEE_FIELDS));
    $self->cmd('HSET', "$E:as", $m, join("\n", @as));
    $self->cmd('ZADD', "$E:s$sc", $ct, $m);
    $self->cmd('ZADD', "$E:p$pr", $ct, $m);
    $self->cmd('ZADD', "$E:c:$cat", $ct, $m) if defined $cat;
    $self->cmd('ZADD', "$E:upd", epoch($a{updated}), $m);
    $self->cmd('HSET', "$E:am", $m, $am);
    return $m;
}

# many new attendees of one event at once (variadic commands, 1000 a
# batch): the same data as attendee() for each, much faster
sub attendees_bulk {
    my ($self, $slug, @list) = @_;
    my $E = $self->D . ':ev:' . $self->_event_of($slug);
    while (my @batch = splice @list, 0, 1000) {
        my (%z, @ai, @as, @am);
        for my $at (@batch) {
            my %a = %$at;
            $a{updated} //= iso($self->{now});
            $a{$_} = _bool($a{$_}) for qw(promo scanned paid);
            my $m = pad($a{id});
            my $ct = epoch($a{createdTime}) // 0;
            my @t = map { my $v = $a{$_} // ''; utf8::encode($v);
                          $self->_fold($v) } qw(name email phone reference);
            my $sc = _truthy($at->{scanned});
            my $pr = _truthy($at->{promo});
            my $cat = $a{categoryId};
            push @ai, $m, _object(\%a, @ATTENDEE_FIELDS);
            push @as, $m, join("\n", @t);
            push @am, $m, "$sc$pr:" . ($cat // '');
            push @{ $z{"$E:att"} }, $ct, $m;
            push @{ $z{"$E:s$sc"} }, $ct, $m;
            push @{ $z{"$E:p$pr"} }, $ct, $m;
            push @{ $z{"$E:c:$cat"} }, $ct, $m if defined $cat;
            push @{ $z{"$E:upd"} }, epoch($a{updated}), $m;
            $self->{am}{$E}{$m} = "$sc$pr:" . ($cat // '');
        }
        $self->cmd('HSET', "$E:ai", @ai);
        $self->cmd('HSET', "$E:as", @as);
        $self->cmd('HSET', "$E:am", @am);
        $self->cmd('ZADD', $_, @{ $z{$_} }) for sort keys %z;
    }
    return;
}

sub json { $JSON }

# the read API as conf-examples/single-tenant.conf lays it out, without
# rate limits unless asked (tests send many requests); %o: timeout, extra
# (more server config), failure (apikey_redis_failure value), rate (an
# apikey_rate_limit for the whole API)
sub conf {
    my (%o) = @_;
    my $timeout = $o{timeout} // '2s';
    my $extra   = $o{extra} // '';
    my $failure = $o{failure} // 'closed';
    my $rate    = $o{rate} ? "apikey_rate_limit $o{rate};" : '';
    return <<"CONF";
integrations_redis 127.0.0.1:%%REDIS_PORT%% timeout=$timeout;
server {
    listen 127.0.0.1:%%PORT%%;
    location /v2/integrations/ {
        apikey on;
        apikey_scope events:read;
        apikey_redis_failure $failure;
        $rate
        location = /v2/integrations/events { integrations_events; }
        location ~ ^/v2/integrations/events/(?<ev>[^/]+)\$ {
            # t/22: an "if" that matches keeps the handler and its \$ev
            if (\$arg_debug) {
                add_header X-Debug 1;
            }
            integrations_event \$ev;
        }
        location ~ ^/v2/integrations/events/(?<ev>[^/]+)/attendees\$ {
            apikey_scope attendees:read;
            integrations_attendees \$ev;
        }
        location ~ ^/v2/integrations/events/(?<ev>[^/]+)/ticket-types\$ {
            integrations_ticket_types \$ev;
        }
        location ~ ^/v2/integrations/events/(?<ev>[^/]+)/availability\$ {
            integrations_availability \$ev;
        }
        location = /v2/integrations/whoami { integrations_whoami; }
        return 404 '{"error":"Not found"}';
    }
$extra
}
CONF
}

# percent-encodes a query value (UTF-8 bytes)
sub qs {
    my ($v) = @_;
    utf8::encode($v);
    $v =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $v;
}

1;
