#!/usr/bin/env bash
# t_perl: perl runs an allocation-heavy script (hashes, regexes, sorting, string building,
# JSON::PP, Storable, Digest::MD5, pack/unpack, closures, ithreads if available) under glibc and
# preloaded; stdout must be identical.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
command -v perl >/dev/null || pm_fail "perl not found (scripts/install-deps.sh check installs it)"

cat >"$PM_TMP/workload.pl" <<'PERL'
use strict;
use warnings;
use Config;
use Digest::MD5 qw(md5_hex);
use JSON::PP;
use Storable qw(dclone freeze thaw);
use List::Util qw(sum max min shuffle reduce);

my $seed = 12345;
sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed >> 8; }   # own PRNG (high bits)
sub word { my $n = 1 + rnd() % 12; join '', map { chr(97 + rnd() % 26) } 1 .. $n }

my %out;
# hash churn
my %h;
for my $i (1 .. 200000) {
    my $k = word();
    if (rnd() % 4) { $h{$k} .= chr(65 + $i % 26) } else { delete $h{$k} }
}
$out{hash} = join ',', scalar(keys %h), md5_hex(join "\n", map { "$_=$h{$_}" } sort keys %h);

# regexes and substitutions
my $text = join "\n", map { sprintf "%05d %s %s-%d %s", $_, word(), word(), rnd() % 1000, word() } 1 .. 30000;
my @m = $text =~ /^(\d+) (\w+) (\w+)-(\d+)/mg;
(my $t2 = $text) =~ s/(\d+)/$1*2/ge;
$t2 =~ s/\b([a-e])(\w*)/\U$1\E$2/g;
my %count;
$count{$_}++ for $text =~ /\b(\w\w)\w*\b/g;
$out{regex} = join ',', scalar(@m), md5_hex($t2), (map { "$_:$count{$_}" } (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9]);

# sorting
my @nums = map { rnd() % 1000000 } 1 .. 100000;
my @sorted = sort { $a <=> $b } @nums;
my @words = sort { length($a) <=> length($b) or $a cmp $b } map { word() } 1 .. 50000;
$out{sort} = join ',', @sorted[0, 100, 50000, 99999], md5_hex("@words"), sum(@nums) % 1000003;

# string building and pack/unpack
my $s = '';
$s .= pack('NnC', $_, $_ % 65536, $_ % 256) . word() for 1 .. 50000;
my @u = unpack('(NnC)*', pack('(NnC)*', map { ($_, $_ % 65536, $_ % 256) } 1 .. 20000));
$out{string} = join ',', length($s), md5_hex($s), scalar(@u), sum(@u) % 99991, length(join('-', map { $_ x 3 } @words[0 .. 999]));

# nested structures, JSON and Storable
my $data = { map { ("k$_" => { id => $_, tags => [map { word() } 1 .. ($_ % 7)], nested => { v => [1 .. $_ % 13] } }) } 1 .. 3000 };
my $json = JSON::PP->new->canonical->encode($data);
my $back = JSON::PP->new->decode($json);
my $clone = dclone($back);
my $thawed = thaw(freeze($clone));
$out{json} = join ',', length($json), md5_hex(JSON::PP->new->canonical->encode($thawed)), scalar(keys %$thawed);

# closures and objects
package Counter { sub new { my ($c, $n) = @_; bless { n => $n, log => [] }, $c } sub inc { my $s = shift; push @{ $s->{log} }, $s->{n}++; $s } }
package main;
my @subs = map { my $k = $_; sub { $_[0] * $k + 1 } } 1 .. 5000;
my $acc = reduce { $b->($a) % 1000003 } 1, @subs;
my @objs = map { Counter->new($_) } 1 .. 20000;
$_->inc->inc for @objs;
$out{objects} = join ',', $acc, sum(map { $_->{n} } @objs), scalar(map { @{ $_->{log} } } @objs);

# ithreads: each thread clones the interpreter (lots of allocation), results joined in order
if ($Config{useithreads}) {
    require threads;
    my @thr = map { my $k = $_; threads->create(sub { my %x; $x{$_ * $k % 7919} .= "ab" for 1 .. 50000; return join ',', scalar(keys %x), md5_hex(join '', map { "$_$x{$_}" } sort { $a <=> $b } keys %x) }) } 1 .. 4;
    $out{threads} = join ';', map { $_->join } @thr;
} else {
    $out{threads} = 'no ithreads';
}

print "$_: $out{$_}\n" for sort keys %out;
print "total: ", md5_hex(join '|', map { "$_=$out{$_}" } sort keys %out), "\n";
PERL

export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
pm_compare perl perl "$PM_TMP/workload.pl"
cat "$PM_TMP/perl.glibc.out"
