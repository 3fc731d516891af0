
# Copyright (c) chronicle_raft authors
#
# Transaction semantics of streams, checked live and again after a crash:
# savepoints (nested, released, rolled back, PL/pgSQL exception blocks),
# aborted transactions (ROLLBACK, statement errors, deferred constraint
# failures at COMMIT, serialization failures at COMMIT, lock timeouts while
# COMMIT applies a second stream, PREPARE TRANSACTION), TRUNCATE inside the
# inserting transaction (also in a rolled-back savepoint), streams created
# and loaded in one transaction, and transactions inserting into two
# streams.  Runs once with wal_level = minimal (where streams created or
# truncated in the transaction skip WAL) and once with wal_level = replica.

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

my $node = new_node('xact');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'chronicle_raft'");
$node->append_conf(
	'postgresql.conf', qq{
max_prepared_transactions = 2
max_parallel_workers_per_gather = 0
log_statement = 'none'
TimeZone = 'UTC'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION chronicle_raft');

# Run SQL that is expected to fail; returns its stderr.
sub psql_fails
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	return $ret == 0 ? undef : $err;
}

# Every check records the query and its expected result, to redo after the
# crash.
my @after_crash;

sub check
{
	my ($query, $expected, $label) = @_;
	is($node->safe_psql('postgres', $query), $expected, $label);
	push @after_crash, [ $query, $expected, $label ];
	return;
}

sub check_contents
{
	my ($stream, $expected, $label) = @_;
	check(
		"SELECT coalesce(string_agg(x.*::text, ','), '') FROM $stream x",
		$expected, $label);
	return;
}

# count and sum of column v from the tree's aggregates and from a scan agree
sub check_aggregates
{
	my ($stream, $label) = @_;
	my ($type) = $node->safe_psql('postgres',
		"SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = '$stream'::regclass AND attnum = 1"
	);
	check(
		qq{SELECT (a.count, a.sum, a.min, a.max) IS NOT DISTINCT FROM (s.count, s.sum, s.min, s.max)
  FROM chronicle.aggregate('$stream', 'v', NULL::$type, NULL) a,
       (SELECT count(v), sum(v)::numeric AS sum, min(v)::numeric AS min, max(v)::numeric AS max
          FROM $stream) s},
		't', "$label: aggregates agree with a scan");
	return;
}

sub run_round
{
	my ($r) = @_;    # suffix of this round's streams

	# ---------------------------------------------------------- savepoints
	$node->safe_psql('postgres',
		"CREATE TABLE sp_$r (ts bigint NOT NULL, v int, tag text) USING chronicle");
	my $inside = $node->safe_psql(
		'postgres', qq{
BEGIN;
INSERT INTO sp_$r VALUES (10, 1, 'a');
SAVEPOINT s1;
INSERT INTO sp_$r VALUES (20, 2, 'b');
ROLLBACK TO s1;
INSERT INTO sp_$r VALUES (30, 3, 'c');
SAVEPOINT s2;
INSERT INTO sp_$r VALUES (40, 4, 'd');
RELEASE s2;
SAVEPOINT s3;
INSERT INTO sp_$r VALUES (50, 5, 'e');
SAVEPOINT s4;
INSERT INTO sp_$r VALUES (60, 6, 'f');
RELEASE s4;
ROLLBACK TO s3;
SAVEPOINT s5;
INSERT INTO sp_$r VALUES (5, 7, 'g');
SAVEPOINT s6;
INSERT INTO sp_$r SELECT i, 8, 'h' FROM generate_series(1, 1000) i;
ROLLBACK TO s6;
RELEASE s5;
DO \$\$
BEGIN
  BEGIN
    INSERT INTO sp_$r VALUES (90, 9, 'i'), (95, 9, 'j');
    INSERT INTO sp_$r VALUES (96, 9, 'k'), (NULL, 0, 'null time');
  EXCEPTION WHEN not_null_violation THEN
    RAISE NOTICE 'caught';
  END;
  BEGIN
    INSERT INTO sp_$r VALUES (30, 10, 'l');
  END;
END
\$\$;
SAVEPOINT s7;
INSERT INTO sp_$r VALUES (100, 11, 'm');
ROLLBACK TO s7;
INSERT INTO sp_$r VALUES (30, 12, 'n');
ROLLBACK TO s7;
SELECT count(*) FROM sp_$r;
SELECT count FROM chronicle.aggregate('sp_$r', 'v', NULL::bigint, NULL);
COMMIT;
});
	is($inside, "0\n0", "$r: a transaction does not see its own uncommitted events");
	check_contents("sp_$r", '(5,7,g),(10,1,a),(30,3,c),(30,10,l),(40,4,d)',
		"$r: savepoints: only events of committed (sub)transactions, in time then arrival order");
	check("SELECT batches, events FROM chronicle.streams WHERE stream = 'sp_$r'::regclass",
		'1|5', "$r: savepoints: one batch for the transaction");
	check_aggregates("sp_$r", "$r: savepoints");

	# a transaction whose every staged event was rolled back applies nothing
	$node->safe_psql(
		'postgres', qq{
BEGIN; SAVEPOINT a; INSERT INTO sp_$r VALUES (1, 1, 'gone'); ROLLBACK TO a; COMMIT;});
	check("SELECT batches, events FROM chronicle.streams WHERE stream = 'sp_$r'::regclass",
		'1|5', "$r: savepoints: a transaction left with no events applies no batch");

	# ---------------------------------------------------- aborted transactions
	$node->safe_psql(
		'postgres', qq{
CREATE TABLE ab_$r (ts timestamptz NOT NULL, v float8) USING chronicle;
CREATE TABLE dc_$r (x int UNIQUE DEFERRABLE INITIALLY DEFERRED);
INSERT INTO ab_$r VALUES ('2024-01-01 00:00:00+00', 0.5);
BEGIN;
INSERT INTO ab_$r SELECT '2024-01-01'::timestamptz + i * interval '1 min', 1 FROM generate_series(1, 100) i;
ROLLBACK;
});
	like(
		psql_fails(
			"INSERT INTO ab_$r VALUES ('2024-01-02', 2), ('2024-01-03', 3), (NULL, 4)"),
		qr/null value/,
		"$r: a failing multi-row INSERT errors");
	like(
		psql_fails(
			"BEGIN; INSERT INTO ab_$r VALUES ('2024-01-04', 5); SELECT 1/0; COMMIT;"),
		qr/division by zero/,
		"$r: an error later in the transaction aborts it");
	like(
		psql_fails(
			"BEGIN; INSERT INTO ab_$r VALUES ('2024-01-05', 6); INSERT INTO dc_$r VALUES (1), (1); COMMIT;"
		),
		qr/duplicate key/,
		"$r: a deferred constraint fails at COMMIT");
	like(
		psql_fails(
			"BEGIN; INSERT INTO ab_$r VALUES ('2024-01-06', 7); PREPARE TRANSACTION 'p_$r';"),
		qr/cannot PREPARE a transaction that inserted into a stream/,
		"$r: PREPARE TRANSACTION of stream inserts is refused");
	check("SELECT count(*) FROM pg_prepared_xacts", 0, "$r: nothing was prepared");
	check_contents("ab_$r", '("2024-01-01 00:00:00+00",0.5)',
		"$r: aborted transactions left no events");
	check("SELECT batches FROM chronicle.streams WHERE stream = 'ab_$r'::regclass",
		1, "$r: aborted transactions applied no batch");

	# --------------------------------------------- TRUNCATE in the transaction
	$node->safe_psql(
		'postgres', qq{
CREATE TABLE tr_$r (ts bigint NOT NULL, v int8) USING chronicle;
INSERT INTO tr_$r SELECT i, i FROM generate_series(1, 20000) i;
BEGIN;
INSERT INTO tr_$r VALUES (200, 1);
TRUNCATE tr_$r;
INSERT INTO tr_$r VALUES (300, 2), (250, 3);
COMMIT;
});
	# (an intermediate state: not checked again after the crash)
	is($node->safe_psql('postgres', "SELECT string_agg(x.*::text, ',') FROM tr_$r x"),
		'(250,3),(300,2)',
		"$r: TRUNCATE discards older events and those staged before it");
	$node->safe_psql(
		'postgres', qq{
BEGIN;
INSERT INTO tr_$r VALUES (400, 4);
SAVEPOINT a;
TRUNCATE tr_$r;
INSERT INTO tr_$r VALUES (500, 5);
ROLLBACK TO a;
INSERT INTO tr_$r VALUES (450, 6);
COMMIT;
BEGIN;
TRUNCATE tr_$r;
INSERT INTO tr_$r VALUES (1, 7);
ROLLBACK;
BEGIN;
INSERT INTO tr_$r VALUES (600, 8);
SAVEPOINT b;
TRUNCATE tr_$r;
INSERT INTO tr_$r VALUES (700, 9);
RELEASE b;
INSERT INTO tr_$r VALUES (650, 10);
COMMIT;
});
	check_contents("tr_$r", '(650,10),(700,9)',
		"$r: TRUNCATE in rolled-back and released savepoints, and in a rolled-back transaction");
	check("SELECT events, first_event IS NULL, tree_height FROM chronicle.streams WHERE stream = 'tr_$r'::regclass",
		'2|t|1', "$r: TRUNCATE: statistics describe the new tree only");
	check_aggregates("tr_$r", "$r: TRUNCATE");

	# created, loaded, truncated and loaded again in one transaction
	$node->safe_psql(
		'postgres', qq{
BEGIN;
CREATE TABLE nt_$r (ts bigint NOT NULL, v int) USING chronicle;
INSERT INTO nt_$r SELECT i, i FROM generate_series(1, 30000) i;
TRUNCATE nt_$r;
INSERT INTO nt_$r SELECT i, 2 * i FROM generate_series(1, 40000) i;
COMMIT;
INSERT INTO nt_$r VALUES (0, 0), (40001, 1);
});
	check(
		"SELECT count(*), sum(v), min(ts), max(ts) FROM nt_$r",
		'40002|1600040001|0|40001',
		"$r: stream created, truncated and loaded in one transaction");
	check_aggregates("nt_$r", "$r: created in the transaction");

	# ------------------------------------------------------- two streams
	$node->safe_psql(
		'postgres', qq{
CREATE TABLE two_a_$r (ts bigint NOT NULL, v int) USING chronicle;
CREATE TABLE two_b_$r (ts timestamptz NOT NULL, v int) USING chronicle;
BEGIN;
INSERT INTO two_a_$r SELECT i, 1 FROM generate_series(1, 3000) i;
INSERT INTO two_b_$r SELECT '2024-01-01'::timestamptz + i * interval '1 s', 2 FROM generate_series(1, 2000) i;
INSERT INTO two_a_$r SELECT i, 3 FROM generate_series(-999, 0) i;
COMMIT;
BEGIN;
INSERT INTO two_a_$r VALUES (5000, 100);
INSERT INTO two_b_$r VALUES ('2030-01-01', 100);
ROLLBACK;
});
	check(
		"SELECT (SELECT count(*) || '/' || sum(v) FROM two_a_$r) || ' ' || (SELECT count(*) || '/' || sum(v) FROM two_b_$r)",
		'4000/6000 2000/4000',
		"$r: a transaction into two streams commits into both, an aborted one into neither");
	check_aggregates("two_a_$r", "$r: two streams, a");
	check_aggregates("two_b_$r", "$r: two streams, b");

	# --------------------- failures at COMMIT after the events were applied

	# A SERIALIZABLE transaction that fails its commit-time serialization
	# check must leave no events behind.
	$node->safe_psql(
		'postgres', qq{
CREATE TABLE acc_$r (k int, v int);
INSERT INTO acc_$r VALUES (1, 0), (2, 0);
CREATE TABLE ser_$r (ts bigint NOT NULL, v int) USING chronicle;
});
	my $s1 = $node->background_psql('postgres', on_error_stop => 0);
	my $s2 = $node->background_psql('postgres', on_error_stop => 0);
	$s1->query_safe("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM acc_$r WHERE k = 1;");
	$s2->query_safe("BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM acc_$r WHERE k = 2;");
	$s1->query_safe("INSERT INTO acc_$r VALUES (2, 1);");
	$s2->query_safe("INSERT INTO acc_$r VALUES (1, 1); INSERT INTO ser_$r VALUES (1, 1), (2, 2);");
	$s1->query_safe("COMMIT;");
	$s2->query("COMMIT;");
	like($s2->{stderr}, qr/could not serialize access/,
		"$r: the second SERIALIZABLE transaction fails at COMMIT");
	$s1->quit;
	$s2->quit;
	check("SELECT count(*) FROM acc_$r WHERE k = 1 AND v = 1", 0,
		"$r: its heap row is gone");
	check("SELECT count(*) FROM ser_$r", 0,
		"$r: its stream events are gone too (serialization failure at COMMIT)");

	# COMMIT applies its streams one after the other; when waiting for the
	# second one's lock times out, the transaction aborts, and the first
	# stream must not keep its events.
	$node->safe_psql(
		'postgres', qq{
CREATE TABLE lt_a_$r (ts bigint NOT NULL, v int) USING chronicle;
CREATE TABLE lt_b_$r (ts bigint NOT NULL, v int) USING chronicle;
INSERT INTO lt_b_$r VALUES (0, 0), (1, 0);
});
	my $holder = $node->background_psql('postgres', on_error_stop => 1);
	$holder->query_safe("BEGIN; DECLARE c CURSOR FOR SELECT * FROM lt_b_$r; FETCH 1 FROM c;");
	like(
		psql_fails(
			"SET lock_timeout = '300ms'; BEGIN; INSERT INTO lt_a_$r VALUES (1, 1); INSERT INTO lt_b_$r VALUES (2, 1); COMMIT;"
		),
		qr/lock timeout/,
		"$r: COMMIT times out waiting for the second stream");
	$holder->query_safe('COMMIT;');
	$holder->quit;
	check("SELECT count(*) FROM lt_b_$r", 2, "$r: the second stream did not get the events");
	check("SELECT count(*) FROM lt_a_$r", 0,
		"$r: the first stream did not keep the events of the aborted transaction (lock timeout at COMMIT)");
	return;
}

run_round('min');

$node->append_conf('postgresql.conf', "wal_level = replica");
$node->restart;
is($node->safe_psql('postgres', 'SHOW wal_level'), 'replica', 'second round with wal_level = replica');
run_round('rep');

# ------------------------------------------------------------ crash
#
# The crash comes while a transaction is blocked in COMMIT: it has applied
# its events to a stream that was empty (creating its tree) and waits for the
# lock of a second stream that a cursor holds.  The WAL writer is stopped
# (SIGSTOP) so that none of that transaction's WAL reaches disk, then killed
# (SIGKILL), which makes the postmaster crash the server.  The transaction
# never committed: after the restart the first stream must be empty and
# usable.

$node->safe_psql(
	'postgres', q{
CREATE TABLE w_a (ts bigint NOT NULL, v int) USING chronicle;
CREATE TABLE w_b (ts bigint NOT NULL, v int) USING chronicle;
INSERT INTO w_b VALUES (0, 0);
});
my $walwriter = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
my $holder = $node->background_psql('postgres', on_error_stop => 1);
$holder->query_safe("BEGIN; DECLARE c CURSOR FOR SELECT * FROM w_b; FETCH 1 FROM c;");
kill 'STOP', $walwriter;
my $blocked = $node->background_psql('postgres', on_error_stop => 1);
$blocked->{stdin} .=
  "BEGIN; INSERT INTO w_a SELECT i, i FROM generate_series(1, 100) i; INSERT INTO w_b VALUES (1, 1); COMMIT;\n";
$blocked->{run}->pump_nb();
my $waiting = 0;
my $deadline = time() + 60;
while (!$waiting && time() < $deadline)
{
	$waiting = $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_locks
 WHERE locktype = 'page' AND relation = 'w_b'::regclass AND mode = 'ExclusiveLock' AND NOT granted});
	usleep(20_000) unless $waiting;
}
ok($waiting, 'a COMMIT waits for the lock of its second stream');

kill 'KILL', $walwriter;
kill 'CONT', $walwriter;
my $pidfile = $node->data_dir . '/postmaster.pid';
for (my $i = 0; $i < 600 && -e $pidfile; $i++)
{
	usleep(50_000);
}
$node->stop('immediate', fail_ok => 1);    # only forgets the old pid
eval { $holder->quit; };
eval { $blocked->quit; };

my $ok = $node->start(fail_ok => 1);
ok($ok, 'the server restarts after the crash');
if ($ok)
{
	for my $c (@after_crash)
	{
		my ($query, $expected, $label) = @$c;
		my ($ret, $out, $err) = $node->psql('postgres', $query);
		is($ret == 0 ? $out : "ERROR: $err", $expected, "after crash: $label");
	}

	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM w_a');
	is($ret == 0 ? $out : "ERROR: $err", 0,
		'after crash: the stream of the transaction that was blocked in COMMIT has no events and can be read');
	($ret, $out, $err) = $node->psql('postgres',
		'INSERT INTO w_a VALUES (7, 7); SELECT count(*), sum(v) FROM w_a;');
	is($ret == 0 ? $out : "ERROR: $err", '1|7', 'after crash: that stream takes new events');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM w_b'), 1,
		'after crash: its second stream has only its committed event');
}

$node->stop;
done_testing();
