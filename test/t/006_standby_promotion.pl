
# Copyright (c) chronicle_raft authors
#
# A single-node server with a streaming physical standby (plain PostgreSQL
# replication of the stream's WAL).  The standby reads the streams while
# it replays; the primary's commit intents reach it with the commit
# records.  When the primary stops in the worst place, after a COMMIT's
# intent and commit record were shipped but before its apply steps were,
# the promoted standby must finish those committed batches (from the side
# files it writes at the end of recovery): every committed event is there,
# none twice, and the aggregates agree with a recount.
#
# wal_consistency_checking on the primary makes the standby compare every
# replayed TAB+ page with the image the primary wrote.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $primary = new_node('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'chronicle_raft'
wal_consistency_checking = 'chronicle_raft'
TimeZone = 'UTC'
# nothing may flush the primary's WAL behind the test's back: no ANALYZE
# commit, and no eviction of a dirty page (allows_streaming sets 1MB)
autovacuum = off
shared_buffers = 128MB
});
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION chronicle_raft;
CREATE TABLE m (ts bigint NOT NULL, sensor int, v float8) USING chronicle;
INSERT INTO m SELECT i, i % 7, i * 0.5 FROM generate_series(1, 20000) i;
});

$primary->backup('b');
my $standby = new_node('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

# ---------------------------------------------- the standby reads while it replays
$primary->safe_psql('postgres',
	"INSERT INTO m SELECT 20000 + i, i % 7, 1 FROM generate_series(1, 5000) i");
# the events are applied after the commit record: wait for their records too
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($standby->safe_psql('postgres', 'SELECT count(*), sum(v) FROM m'),
	'25000|100010000', 'the hot standby reads the replicated stream');
is( $standby->safe_psql(
		'postgres', "SELECT count, sum FROM chronicle.aggregate('m', 'v', 100::bigint, 20101::bigint)"),
	'20001|100002625',
	'the hot standby answers aggregates from the replayed tree');

# ------------------------- the primary stops after a commit but before its apply
#
# With the WAL writer stopped, a COMMIT flushes its intents and commit
# record (and the walsender ships them), while its apply steps stay in the
# primary's WAL buffers.  Then the primary is killed and the standby
# promoted.

my $walwriter = $primary->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'");
like($walwriter, qr/^\d+$/, 'found the primary\'s WAL writer');
$primary->safe_psql('postgres', 'CHECKPOINT');
kill 'STOP', $walwriter;
# a fresh segment: finishing one would flush (and ship) the apply steps
$primary->safe_psql('postgres', 'SELECT pg_switch_wal()');
$primary->safe_psql(
	'postgres', q{
BEGIN;
INSERT INTO m SELECT 100000 + i, 3, 2 FROM generate_series(1, 20000) i;
INSERT INTO m SELECT -i, 4, 3 FROM generate_series(1, 200) i;
COMMIT;
});
my $commit_lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
$primary->wait_for_catchup($standby, 'replay', $commit_lsn);
$primary->stop('immediate');
kill 'CONT', $walwriter;

my $log_offset = -s $standby->logfile;
$standby->promote;
ok( wait_for(
		sub {
			$standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 'f';
		}),
	'the standby is promoted');
like(substr(slurp_file($standby->logfile), $log_offset),
	qr/committed stream batches to finish after recovery/,
	'the promoted standby keeps the committed batch whose apply it never received');

is( $standby->safe_psql(
		'postgres', 'SELECT count(*), count(DISTINCT ts), sum(v) FROM m'),
	'45200|45200|100050600',
	'the promoted standby has every committed event, none twice');
is( $standby->safe_psql(
		'postgres', q{
SELECT a.count = r.c AND a.sum = r.s AND a.min = r.mn AND a.max = r.mx
  FROM chronicle.aggregate('m', 'v', 40::bigint, 100500::bigint) a,
       (SELECT count(*) c, sum(v)::numeric s, min(v)::numeric mn, max(v)::numeric mx
          FROM m WHERE ts >= 40 AND ts < 100500) r}),
	't', 'its aggregates agree with a recount over the same range');
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_ls_dir('chronicle_raft_pending', true, false)"),
	'0', 'the side files are gone once applied');

# the promoted server takes new inserts and survives a crash of its own
$standby->safe_psql('postgres', "INSERT INTO m VALUES (999999, 1, 1)");
$standby->stop('immediate');
$standby->start;
is($standby->safe_psql('postgres', 'SELECT count(*) FROM m'),
	'45201', 'the promoted server keeps its new events across a crash');

$standby->stop;
done_testing();
