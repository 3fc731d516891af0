
# Copyright (c) chronicle_raft authors
#
# Replicated transactions larger than one Raft entry travel as parts: every
# node keeps them (noted in chronicle.open_parts; their events stay in the
# Raft log, and are copied into the table only if the log is compacted
# first) until the final part applies all of them as one batch.  Checks:
# such transactions through a follower and through the leader land whole
# on every node (counts, sums, order); a
# session terminated between parts, and a server crashed between parts,
# leave nothing behind anywhere; a transaction whose stream is dropped
# while its parts are out fails alike everywhere; a log compacted while a
# session is stopped between parts keeps them; a snapshot a follower
# needs waits for open parts, and after a minute the leader discards them;
# removing a member discards its parts.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my ($nodes_ref, $ports_ref) = start_cluster('l', 3, "chronicle_raft.max_log_size = '16MB'\n");
my @nodes = @$nodes_ref;

sub role { return (eval { $_[0]->safe_psql('postgres', 'SELECT role FROM chronicle.status()') } // ''); }
sub sql_on { my ($n, $sql) = @_; return $n->safe_psql('postgres', $sql); }

sub digest
{
	my ($node, $stream) = @_;
	return sql_on($node, "SELECT count(*) || ':' || coalesce(sum(v), 0) || ':' || coalesce(md5(string_agg(ts::text || '/' || s::text, ',')), '') FROM $stream");
}

sub wait_same
{
	my ($stream, $expect_count) = @_;
	return wait_for(sub {
		my @d = map { digest($_, $stream) } @nodes;
		return $d[0] eq $d[1] && $d[1] eq $d[2] && $d[0] =~ /^$expect_count:/;
	}, 120);
}

# SIGSTOP a session sending parts only while it waits for a part's outcome
# (wait event "Extension"), never while it holds the insert queue's lock
# copying a part in: a stopped lock holder would stall this node's worker,
# which no real session does.
sub stop_while_waiting
{
	my ($node, $pid) = @_;
	for (1 .. 500)
	{
		kill 'STOP', $pid;
		return 1
		  if sql_on($node, "SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid = $pid") eq 'Extension';
		kill 'CONT', $pid;
		usleep(20_000);
	}
	return 0;
}

sub open_parts { return join(',', map { sql_on($_, 'SELECT count(*) FROM chronicle.open_parts') } @nodes); }

ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader is elected');
my ($leader) = grep { role($_) eq 'leader' } @nodes;
my ($f1, $f2) = grep { $_ != $leader } @nodes;

sql_on($leader, 'CREATE TABLE big (ts bigint NOT NULL, s int, v int8) USING chronicle');
sql_on($leader, 'CREATE TABLE side (ts bigint NOT NULL, s int, v int8) USING chronicle');

# ---------------------------------------------- through a follower

# about 2 M events of ~24 bytes: well above the 32 MB one batch may take
my $n = 2_000_000;
my $t0 = time();
sql_on($f1, "INSERT INTO big SELECT (g::int8 * 7919) % $n, g % 100, g FROM generate_series(1, $n) g");
note(sprintf('2M events through a follower in one transaction: %.1f s', time() - $t0));
ok(wait_same('big', $n), "a $n-event transaction through a follower is on every node, identical");
is(sql_on($f2, 'SELECT sum(v) FROM big'), $n * ($n + 1) / 2, 'every event once (sum of 1..n)');
is(sql_on($f2, "SELECT count(*) FROM (SELECT ts, lag(ts) OVER () AS prev FROM big) x WHERE prev > ts"), '0',
	'in event-time order');
is(sql_on($f2, "SELECT count FROM chronicle.aggregate('big', 'v', NULL, NULL)"), $n, 'and the aggregates count them');
ok(wait_for(sub { open_parts() eq '0,0,0' }), 'no kept part is left on any node');

# ---------------------------------------------- through the leader, two streams at once

sql_on($leader, "BEGIN; INSERT INTO big SELECT $n + g, 1, 1 FROM generate_series(1, 1500000) g; "
	. "INSERT INTO side SELECT g, 2, 2 FROM generate_series(1, 200000) g; COMMIT;");
ok(wait_same('big', $n + 1_500_000) && wait_same('side', 200_000),
	'a two-stream transaction through the leader lands whole on every node');
ok(wait_for(sub { open_parts() eq '0,0,0' }), 'no kept part is left');

# commit_wait = committed: the final part still waits for its apply's verdict
sql_on($f2, "SET chronicle_raft.commit_wait = committed; "
	. "INSERT INTO big SELECT 4000000 + g, 106, 0 FROM generate_series(1, 1600000) g");
is(sql_on($f2, 'SELECT count(*) FROM big WHERE s = 106'), '1600000',
	'with commit_wait = committed a large transaction is applied on its node when COMMIT returns');

# ---------------------------------------------- a session terminated between parts

my $errfile = "$PostgreSQL::Test::Utils::tmp_check/large_terminated.err";
sub start_large_insert
{
	my ($node, $first) = @_;
	return psql_in_background($node,
		"INSERT INTO side SELECT $first + g, 3, 3 FROM generate_series(1, 3000000) g", $errfile);
}

my $before = digest($leader, 'side');
my $cpid = start_large_insert($f1, 1_000_000);
ok(wait_for(sub { sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts') > 0 }),
	'the parts of a large transaction are kept while it is sent');
sql_on($f1, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO side SELECT 1000000%'");
waitpid($cpid, 0);
like(slurp_file($errfile), qr/FATAL:  57P01: terminating connection due to administrator command/,
	'a session terminated between parts ends with the ordinary FATAL (nothing is decided before the final part)');
ok(wait_for(sub { open_parts() eq '0,0,0' }), 'and its parts are discarded on every node');
is(digest($_, 'side'), $before, 'none of its events appears') for @nodes;

# ---------------------------------------------- the origin server crashes between parts

$cpid = start_large_insert($f2, 2_000_000);
ok(wait_for(sub { sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts') > 0 }), 'parts of another one are kept');
$f2->stop('immediate');
waitpid($cpid, 0);
is(sql_on($leader, 'SELECT count(*) > 0 FROM chronicle.open_parts'), 't', 'with its server down they stay kept');
$f2->start;
ok(wait_for(sub { open_parts() eq '0,0,0' }, 60), 'once its server is back its worker has them discarded everywhere');
ok(wait_same('side', 200_000), 'none of its events appears, and the nodes are identical');

# ---------------------------------------------- a large transaction meets a DROP of its stream

sql_on($leader, 'CREATE TABLE doomed (ts bigint NOT NULL, s int, v int8) USING chronicle');
$cpid = psql_in_background($f1, 'INSERT INTO doomed SELECT g, 4, 4 FROM generate_series(1, 3000000) g', $errfile);
ok(wait_for(sub { sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts') > 0 }), 'a third one is under way');
my ($rc, $out, $err) = $f2->psql('postgres', 'DROP TABLE doomed');
waitpid($cpid, 0);
my $large_err = slurp_file($errfile);
note("the large insert: $large_err");
note("the drop: rc $rc $err");
ok(wait_for(sub { open_parts() eq '0,0,0' }), 'whatever the order, no part is left');
is(join(',', map { sql_on($_, "SELECT count(*) FROM pg_class WHERE relname = 'doomed'") } @nodes),
	$rc == 0 ? '0,0,0' : '1,1,1', 'the nodes agree on the stream');
if ($rc != 0)
{
	ok(wait_same('doomed', 3_000_000), 'the drop lost to the insert: all events everywhere');
}
else
{
	like($large_err, qr/stream public\.doomed was dropped or renamed before its events were applied|lock/,
		'the insert fails, saying why');
}

# ---------------------------------------------- the log is compacted while parts are out
#
# A kept part is only noted where its Raft entry holds it; before a node's
# log forgets that entry, the node copies the part's events into
# chronicle.open_parts.  A session stopped (SIGSTOP) between parts keeps
# its transaction open while the log is compacted; resumed, it commits.

$cpid = psql_in_background($f1, 'INSERT INTO side SELECT 6000000 + g, 7, 7 FROM generate_series(1, 3000000) g', $errfile);
ok(wait_for(sub { sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts') > 0 }), 'a large transaction is under way');
my $stopped = sql_on($f1, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO side SELECT 6000000%'");
ok(stop_while_waiting($f1, $stopped), 'the session is stopped between parts');
my $leader_log_at = -s $leader->logfile;
is(sql_on($leader, 'SELECT bool_and(entry_index > 0 AND entry_length > 0) FROM chronicle.open_parts'), 't',
	'every kept part notes the Raft entry that holds its events');
for my $round (1 .. 8)
{
	sql_on($leader, "INSERT INTO big SELECT 20000000 + $round * 100000 + g, 8, 8 FROM generate_series(1, 100000) g");
}
ok(wait_for(sub { raft_log_bytes($leader) < 20 * 1024 * 1024 }), 'the logs are compacted past the kept parts');
ok(wait_for(sub {
		join(',', map { sql_on($_, 'SELECT count(*) > 0 AND bool_and(data IS NOT NULL) FROM chronicle.open_parts') } @nodes)
		  eq 't,t,t' }),
	'every node copied the kept parts out of its log first');
like(slurp_file($leader->logfile, $leader_log_at), qr/copied \d+ parts of open large transactions out of the Raft log before compacting it/,
	'and says so in its log');
kill 'CONT', $stopped;
waitpid($cpid, 0);
unlike(slurp_file($errfile), qr/ERROR|FATAL/, 'resumed, the session commits');
ok(wait_same('side', 3_200_000), 'with all its events, parts from the table and the final from the log, on every node');
is(sql_on($f2, 'SELECT count(*) || \':\' || sum(v) FROM side WHERE s = 7'), '3000000:21000000', 'each event once');
ok(wait_for(sub { open_parts() eq '0,0,0' }), 'no part is left');

# ---------------------------------------------- a snapshot meets open parts
#
# Kept parts are not in a snapshot file, so the leader writes one only when
# no large transaction is open, and discards those still open after a
# minute.  A session stopped (SIGSTOP) between parts keeps one open.

$f2->stop;
$cpid = start_large_insert($f1, 5_000_000);
ok(wait_for(sub { sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts') > 0 }), 'a large transaction is under way');
my $sender = sql_on($f1, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO side SELECT 5000000%'");
ok(stop_while_waiting($f1, $sender), 'the session is stopped between parts');
my $kept = sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts');
# while the follower is away: enough small transactions to compact the log
for my $round (1 .. 8)
{
	sql_on($leader, "INSERT INTO big SELECT 10000000 + $round * 100000 + g, 5, 5 FROM generate_series(1, 100000) g");
}
ok(wait_for(sub { raft_log_bytes($leader) < 20 * 1024 * 1024 }), 'the live nodes compacted their logs');
my $loff = -s $leader->logfile;
$f2->start;
ok(wait_for(sub { slurp_file($leader->logfile, $loff) =~ /discarding 1 large transactions still open after a minute/ }, 100),
	'the snapshot the returning follower needs waits, then the leader discards the open transaction');
ok(wait_same('big', $n + 1_500_000 + 1_600_000 + 800_000 + 800_000), 'the follower catches up by snapshot; every node identical');
like(slurp_file($f2->logfile), qr/installed snapshot at index/, 'it did install a snapshot');
kill 'CONT', $sender;
waitpid($cpid, 0);
like(slurp_file($errfile), qr/replicated change not committed: a part of the transaction's events was not committed/,
	'the stopped session, resumed, fails at its final part');
ok(wait_for(sub { open_parts() eq '0,0,0' }), 'no part is left');
ok(wait_same('side', 3_200_000), 'and none of its events appears anywhere');

# ---------------------------------------------- a member removed while its parts are out
#
# Its sessions can never send their final parts: the removal discards the
# member's kept parts on every node, at the removal's place in the log.

$cpid = psql_in_background($f1, 'INSERT INTO side SELECT 9000000 + g, 9, 9 FROM generate_series(1, 3000000) g', $errfile);
ok(wait_for(sub { sql_on($leader, 'SELECT count(*) FROM chronicle.open_parts') > 0 }), 'a member has a large transaction under way');
my $stuck = sql_on($f1, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO side SELECT 9000000%'");
ok(stop_while_waiting($f1, $stuck), 'the session is stopped between parts');
my $f1_id = sql_on($f1, 'SELECT node_id FROM chronicle.status()');
sql_on($leader, "SELECT chronicle.remove_node($f1_id)");
ok(wait_for(sub { join(',', map { sql_on($_, 'SELECT count(*) FROM chronicle.open_parts') } ($leader, $f2)) eq '0,0' }),
	'removing the member discards its kept parts on the remaining nodes');
kill 'CONT', $stuck;
waitpid($cpid, 0);
like(slurp_file($errfile), qr/ERROR/, 'its session fails');
is(join(',', map { sql_on($_, 'SELECT count(*) FROM side WHERE s = 9') } ($leader, $f2)), '0,0',
	'and none of its events appears');

$_->stop for @nodes;
done_testing();
