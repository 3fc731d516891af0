
# Copyright (c) chronicle_raft authors
#
# The replicated path on a cluster of one: the worker hosts the Raft engine,
# commits go through the shared insert queue, the durable Raft log and the
# worker's apply.  Checks settings validation at startup, inserts and
# replicated DDL, that an immediate shutdown loses no acknowledged event and
# applies none twice, and that a killed worker comes back.

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
use Time::HiRes qw(usleep);

my $node = new_node('single');
$node->init;
my $raft_port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'chronicle_raft'
chronicle_raft.initial_cluster = '1=127.0.0.1:$raft_port'
chronicle_raft.election_timeout = 300
chronicle_raft.heartbeat_interval = 50
});

# ---------------------------------------------- bad settings stop startup

sub start_fails_with
{
	my ($conf, $pattern, $name) = @_;
	my $orig = slurp_file($node->data_dir . '/postgresql.conf');
	$node->append_conf('postgresql.conf', $conf);
	my $ret = $node->start(fail_ok => 1);
	ok(!$ret, "$name: the server refuses to start");
	like(slurp_file($node->logfile), $pattern, "$name: the log names the setting");
	open(my $fh, '>', $node->data_dir . '/postgresql.conf') or die;
	print $fh $orig;
	close $fh;
}

start_fails_with("chronicle_raft.initial_cluster = '1=127.0.0.1'\n",
	qr/invalid value for parameter "chronicle_raft.initial_cluster"/, 'initial_cluster without port');
start_fails_with("chronicle_raft.node_id = 7\n",
	qr/chronicle_raft.node_id 7 is not a member of chronicle_raft.initial_cluster/, 'node_id not a member');
start_fails_with("chronicle_raft.heartbeat_interval = 200\n",
	qr/chronicle_raft.heartbeat_interval \(200 ms\) must be at most half/, 'heartbeat too slow');
start_fails_with("chronicle_raft.commit_wait = 'maybe'\n",
	qr/invalid value for parameter "chronicle_raft.commit_wait"/, 'bad commit_wait');

$node->start;

sub wait_leader
{
	for (1 .. 100)
	{
		my $role = $node->safe_psql('postgres', 'SELECT role FROM chronicle.status()');
		return 1 if $role eq 'leader';
		usleep(100_000);
	}
	return 0;
}
ok(wait_leader(), 'the single node elects itself');
is($node->safe_psql('postgres', 'SELECT replicated, node_id FROM chronicle.status()'),
	't|1', 'status reports a replicated node 1');

# ---------------------------------------------- inserts and DDL via the log

$node->safe_psql('postgres',
	'CREATE TABLE r (ts bigint NOT NULL, src int, seq int, v int8) USING chronicle');
my ($rc, $out, $err) = $node->psql('postgres',
	'BEGIN; CREATE TABLE r2 (ts bigint NOT NULL) USING chronicle; COMMIT;');
like($err, qr/cannot run inside a transaction block/, 'replicated stream DDL refuses transaction blocks');
($rc, $out, $err) = $node->psql('postgres', 'CREATE TABLE r (ts bigint NOT NULL) USING chronicle');
like($err, qr/replicated change not committed: relation "r" already exists/,
	'a failing replicated CREATE reports the error');
($rc, $out, $err) = $node->psql('postgres', 'TRUNCATE r');
like($err, qr/TRUNCATE of a replicated stream is not supported/, 'TRUNCATE is refused');

$node->safe_psql('postgres',
	'INSERT INTO r SELECT (i * 7919) % 100000, 1, i, i FROM generate_series(1, 50000) i');
for my $i (1 .. 20)
{
	$node->safe_psql('postgres', "INSERT INTO r VALUES ($i * 13, 2, $i, 1)");
}
$node->safe_psql('postgres', "SELECT chronicle.insert('r', '[{\"ts\": 5, \"src\": 3, \"seq\": 1, \"v\": 7}]')");
($rc, $out, $err) = $node->psql('postgres', 'BEGIN; INSERT INTO r VALUES (1, 4, 1, 1); ROLLBACK;');
my $expect = '50021|' . (50000 * 50001 / 2 + 20 + 7);
is($node->safe_psql('postgres', 'SELECT count(*), sum(v) FROM r'), $expect,
	'every committed event is applied once, rolled back ones never');
is($node->safe_psql('postgres',
	"SELECT count, sum FROM chronicle.aggregate('r', 'v', NULL::bigint, NULL)"),
	$expect, 'aggregates agree');
is($node->safe_psql('postgres',
	'SELECT count(*) FROM (SELECT ts < lag(ts) OVER () AS bad FROM r) s WHERE bad'),
	'0', 'events are in time order');

my $applied = $node->safe_psql('postgres', 'SELECT applied_index FROM chronicle.status()');
ok($applied >= 24, "the worker applied the entries (applied index $applied)");

# ---------------------------------------------- immediate shutdown

$node->stop('immediate');
$node->start;
ok(wait_leader(), 'leader again after an immediate shutdown');
is($node->safe_psql('postgres', 'SELECT count(*), sum(v) FROM r'), $expect,
	'no acknowledged event lost and none applied twice after the restart');
$node->safe_psql('postgres', 'INSERT INTO r VALUES (100001, 5, 1, 100)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM r'), '50022', 'inserts work after the restart');

# ---------------------------------------------- worker killed: server restarts it

my $wpid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'chronicle_raft'");
ok($wpid > 0, 'the worker runs');
kill 'TERM', $wpid;
my $back = 0;
for (1 .. 100)
{
	my $new = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'chronicle_raft'");
	if ($new ne '' && $new != $wpid)
	{
		$back = 1;
		last;
	}
	usleep(100_000);
}
ok($back, 'a stopped worker is restarted');
ok(wait_leader(), 'and leads again');
$node->safe_psql('postgres', 'INSERT INTO r VALUES (100002, 5, 2, 100)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM r'), '50023', 'inserts work after the worker restart');

# renaming and altering a replicated stream go through the log too
$node->safe_psql('postgres', 'ALTER TABLE r RENAME TO r_renamed');
$node->safe_psql('postgres', 'ALTER TABLE r_renamed ALTER COLUMN v SET DEFAULT 5');
$node->safe_psql('postgres', 'INSERT INTO r_renamed (ts, src, seq) VALUES (100004, 7, 1)');
is($node->safe_psql('postgres', 'SELECT v FROM r_renamed WHERE src = 7'), '5',
	'a renamed and altered replicated stream keeps taking events');
($rc, $out, $err) = $node->psql('postgres', 'BEGIN; ALTER TABLE r_renamed RENAME TO r2; COMMIT;');
like($err, qr/renaming a replicated stream cannot run inside a transaction block/,
	'renaming a replicated stream refuses transaction blocks');
$node->safe_psql('postgres', 'ALTER TABLE r_renamed RENAME TO r');

# a stream the cluster does not know takes no events
$node->safe_psql('postgres', 'CREATE TABLE lonely (ts bigint NOT NULL) USING chronicle');
$node->safe_psql('postgres', "DELETE FROM chronicle.cluster_streams WHERE relid = 'lonely'::regclass");
($rc, $out, $err) = $node->psql('postgres', 'INSERT INTO lonely VALUES (1)');
like($err, qr/stream "lonely" is not known cluster-wide/, 'a stream unknown cluster-wide refuses inserts');

# commit_wait = off returns at once; the events still arrive
$node->safe_psql('postgres', "SET chronicle_raft.commit_wait = off; INSERT INTO r VALUES (100003, 6, 1, 100)");
my $seen = 0;
for (1 .. 50)
{
	if ($node->safe_psql('postgres', 'SELECT count(*) FROM r WHERE src = 6') eq '1')
	{
		$seen = 1;
		last;
	}
	usleep(100_000);
}
ok($seen, 'an insert with commit_wait = off is applied shortly after');

$node->safe_psql('postgres', 'DROP TABLE r');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'r'"), '0',
	'replicated DROP TABLE');
is($node->safe_psql('postgres', "SELECT count(*) FROM chronicle.cluster_streams"), '0',
	'dropped streams leave chronicle.cluster_streams');

$node->stop;
done_testing();
