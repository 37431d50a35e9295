package Keys;
# Builds valid API keys and writes their records straight into Redis,
# following docs/DATA_MODEL.md. For tests of the access phase that must
# set fields the CLI does not (a record already expired, a bad nets list).
# Tests of the CLI itself use integrationsctl.
use strict;
use warnings;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Socket qw(inet_pton AF_INET AF_INET6);
use Exporter 'import';

our @EXPORT_OK = qw(make_key key_text crc32 nets_of);

my @B62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');

my @CRC_TABLE = map {
    my $c = $_;
    for (1 .. 8) { $c = ($c & 1) ? (0xEDB88320 ^ ($c >> 1)) : ($c >> 1) }
    $c;
} 0 .. 255;

sub crc32 {
    my ($s) = @_;
    my $c = 0xFFFFFFFF;
    $c = $CRC_TABLE[($c ^ ord($_)) & 0xFF] ^ ($c >> 8) for split //, $s;
    return $c ^ 0xFFFFFFFF;
}

sub _b62 {
    my ($n, $w) = @_;
    my $s = '';
    for (1 .. $w) { $s = $B62[$n % 62] . $s; $n = int($n / 62) }
    return $s;
}

# key_text(env => 'live', id => 'abcd1234', random => '...32 chars...')
sub key_text {
    my (%o) = @_;
    my $prefix = $o{prefix} // 'qkt';
    my $env = $o{env} // 'live';
    my $id = $o{id} // join '', map { ('a' .. 'z', 0 .. 9)[rand 36] } 1 .. 8;
    my $rnd = $o{random} // join '', map { $B62[rand 62] } 1 .. 32;
    my $body = "${prefix}_${env}_${id}_${rnd}";
    return ($body . _b62(crc32($body), 6), $id);
}

# "10.0.0.0/8, 2001:db8::/32" -> "<32 hex>/<bits> ..." (IPv4 mapped)
sub nets_of {
    my ($list) = @_;
    my @out;
    for my $e (grep { length } split /[,\s]+/, $list) {
        my ($addr, $bits) = split m{/}, $e;
        if (my $b = inet_pton(AF_INET, $addr)) {
            push @out, unpack('H*', ("\0" x 10) . "\xff\xff" . $b) . '/'
                . (96 + ($bits // 32));
        } else {
            my $b6 = inet_pton(AF_INET6, $addr) or die "bad address $addr";
            push @out, unpack('H*', $b6) . '/' . ($bits // 128);
        }
    }
    return join ' ', @out;
}

# make_key($h, org => 'acme', scopes => 'events:read', ...) -> ($key, $id)
sub make_key {
    my ($h, %o) = @_;
    my ($key, $id) = key_text(%o);
    my $hash = defined $o{pepper} ? hmac_sha256_hex($key, $o{pepper})
                                  : sha256_hex($key);
    my $org = $o{org} // 'acme';
    my $prefix = $o{redis_prefix} // '';
    my @f = (
        hash => $hash, org => $org, name => $o{name} // "key $id",
        scopes => $o{scopes} // 'events:read attendees:read',
        status => $o{status} // 'active', created => time,
        expires => $o{expires} // 0, last_used => 0,
        ips => $o{ips} // '',
        nets => $o{nets} // (defined $o{ips} ? nets_of($o{ips}) : ''),
        rate_limit => $o{rate_limit} // '', env => $o{env} // 'live',
        prefix => $o{prefix} // 'qkt',
    );
    $h->redis('HSET', "$prefix\{k:$id}", @f);
    $h->redis('ZADD', "$prefix\{o:$org}:keys", time, $id);
    $h->redis('ZADD', "$prefix\{o:$org}:active", '+inf', $id)
        if ($o{status} // 'active') eq 'active';
    return ($key, $id);
}

1;
