
# Copyright (c) chronicle_raft authors
#
# Cluster membership on real servers: a fourth server joins as a learner,
# catches up and is promoted; leadership is transferred to it; an original
# member is removed while another is down (its data stays readable, it
# receives nothing more) and the cluster keeps committing.  Errors: a reused or removed node id, a
# duplicate address, removing a non-member, a change while another is in
# progress (and cancelling the addition of a server that never comes up).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Path qw(rmtree);
use File::Basename qw(basename);
use Time::HiRes qw(usleep time);

my @ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 4;
my $members = join(',', map { ($_ + 1) . "=127.0.0.1:$ports[$_]" } 0 .. 2);
my $common = qq{
shared_preload_libraries = 'chronicle_raft'
chronicle_raft.initial_cluster = '$members'
chronicle_raft.cluster_secret = 'membership test secret'
chronicle_raft.election_timeout = 400
chronicle_raft.heartbeat_interval = 50
};
my @nodes;
for my $i (0 .. 2)
{
	my $node = new_node('m' . ($i + 1));
	$node->init;
	$node->append_conf('postgresql.conf', $common . "chronicle_raft.node_id = " . ($i + 1) . "\n");
	$node->start;
	push @nodes, $node;
}

sub st { return split /\|/, $_[0]->safe_psql('postgres', 'SELECT role, leader_id FROM chronicle.status()'); }

sub count_on { return $_[0]->safe_psql('postgres', 'SELECT count(*) FROM ev'); }

ok(wait_for(sub { grep { (st($_))[0] eq 'leader' } @nodes }), 'a leader is elected');
$nodes[0]->safe_psql('postgres', 'CREATE TABLE ev (ts bigint NOT NULL, v int) USING chronicle');
$nodes[1]->safe_psql('postgres', 'INSERT INTO ev SELECT g, g FROM generate_series(1, 5000) g');

# ------------------------------------------------------------ a fourth node

my $n4 = new_node('m4');
$n4->init;
$n4->append_conf('postgresql.conf', $common . qq{
chronicle_raft.node_id = 4
chronicle_raft.initial_cluster_state = existing
chronicle_raft.listen_address = '127.0.0.1:$ports[3]'
});
$n4->start;
$nodes[2]->safe_psql('postgres', "SELECT chronicle.add_node(4, '127.0.0.1:$ports[3]')");
ok(wait_for(sub { (eval { count_on($n4) } // '') eq '5000' }), 'the new node receives every stream and event');
ok(wait_for(sub {
	my ($l) = grep { (st($_))[0] eq 'leader' } @nodes;
	return 0 unless $l;
	return $l->safe_psql('postgres', "SELECT voting FROM chronicle.nodes WHERE node_id = 4") eq 't';
}), 'and is promoted to voter once caught up');
$n4->safe_psql('postgres', 'INSERT INTO ev VALUES (6000, 6000)');
ok(wait_for(sub { (grep { count_on($_) eq '5001' } (@nodes, $n4)) == 4 }), 'inserts on the new node reach all four');

my ($rc, $out, $err) = $nodes[0]->psql('postgres', "SELECT chronicle.add_node(4, '127.0.0.1:1')");
like($err, qr/node id 4 is already a member/, 'a member id cannot be added twice');
($rc, $out, $err) = $nodes[0]->psql('postgres', "SELECT chronicle.add_node(5, '127.0.0.1:$ports[0]')");
like($err, qr/address 127\.0\.0\.1:$ports[0] is already used by node 1/, 'a duplicate address is refused');
($rc, $out, $err) = $nodes[0]->psql('postgres', 'SELECT chronicle.remove_node(9)');
like($err, qr/node 9 is not a member/, 'removing a non-member is refused');
($rc, $out, $err) = $nodes[0]->psql('postgres', "SELECT chronicle.add_node(5, 'nonsense')");
like($err, qr/is not a host:port address/, 'a bad address is refused');

# ------------------------------------------------------------ leadership transfer

$nodes[0]->safe_psql('postgres', 'SELECT chronicle.transfer_leadership(4)');
ok(wait_for(sub { (st($n4))[0] eq 'leader' }), 'leadership moves to node 4 on request');

# ------------------------------------------------------------ removing node 1

# ... while node 3 is down: of the four voters, node 1's own acknowledgement
# is needed to commit its removal, so it must stay connected until then
$nodes[2]->stop;
$nodes[1]->safe_psql('postgres', 'SELECT chronicle.remove_node(1)');
ok(wait_for(sub {
	$n4->safe_psql('postgres', "SELECT count(*) FROM chronicle.nodes WHERE node_id = 1") eq '0'
}), 'node 1 is no longer listed');
$n4->safe_psql('postgres', 'INSERT INTO ev VALUES (7000, 7000)');
ok(wait_for(sub { (grep { count_on($_) eq '5002' } ($nodes[1], $n4)) == 2 }),
	'the removal commits with another member down, and nodes 2 and 4 keep committing');
$nodes[2]->start;
ok(wait_for(sub { (grep { count_on($_) eq '5002' } ($nodes[1], $nodes[2], $n4)) == 3 }),
	'node 3 returns and the remaining three agree');
usleep(1_000_000);
is(count_on($nodes[0]), '5001', 'the removed node keeps its data readable but receives nothing more');
($rc, $out, $err) = $nodes[2]->psql('postgres', "SELECT chronicle.add_node(1, '127.0.0.1:1')");
like($err, qr/node id 1 was removed; node ids are never reused/, 'a removed id is never reused');

# ------------------------------------------------------------ one change at a time

# node 5 is added but its server never starts: it stays a learner
my $port5 = PostgreSQL::Test::Cluster::get_free_port();
$nodes[1]->safe_psql('postgres', "SELECT chronicle.add_node(5, '127.0.0.1:$port5')");
my $refused = '';
ok(wait_for(sub {
	my ($r, $o, $e) = $nodes[1]->psql('postgres', "SELECT chronicle.add_node(6, '127.0.0.1:1')");
	$refused = $e;
	return $r != 0;
}), 'a second membership change is refused while node 5 is being added');
like($refused, qr/another membership change is in progress \(node 5\)/, 'the error names the change in progress');
like($refused, qr/HINT:.*chronicle\.remove_node\(5\)/, 'and the hint says how to cancel it');
$nodes[2]->safe_psql('postgres', 'SELECT chronicle.remove_node(5)');
ok(wait_for(sub {
	my ($r, $o, $e) = $n4->psql('postgres', "SELECT chronicle.add_node(6, '127.0.0.1:1')");
	return $r == 0;
}), 'removing the node that never came up cancels its addition; the next change is taken');
ok(wait_for(sub {
	my ($r, $o, $e) = $nodes[2]->psql('postgres', 'SELECT chronicle.remove_node(6)');
	return $r == 0;
}), 'node 6 is taken out the same way');
$n4->safe_psql('postgres', 'INSERT INTO ev VALUES (8000, 8000)');
ok(wait_for(sub { (grep { count_on($_) eq '5003' } ($nodes[1], $nodes[2], $n4)) == 3 }),
	'and the three voters still commit');

$_->stop for (@nodes, $n4);
done_testing();
