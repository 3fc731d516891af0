
# Copyright (c) chronicle_raft authors
#
# Replicated DDL meets an object of one node's own: a plain table named like
# a new stream, a view on a stream the cluster drops.  The statement
# succeeds on the other nodes, so skipping it on this one would make the
# nodes differ for good.  Instead that node stops applying at the entry
# (WARNING with a hint, chronicle.status().apply_error), keeps voting and
# storing the log, survives a crash in that state, and resumes by itself
# once the object is gone, ending identical to the others.  A DDL failure
# that follows from replicated state (a stream of that name exists) fails
# on every node alike and stops nothing.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use ChronicleTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my ($nodes_ref, $ports_ref) = start_cluster('x', 3);
my @nodes = @$nodes_ref;

sub role { return (eval { $_[0]->safe_psql('postgres', 'SELECT role FROM chronicle.status()') } // ''); }
sub apply_error { return $_[0]->safe_psql('postgres', "SELECT coalesce(apply_error, '') FROM chronicle.status()"); }

sub digest
{
	my ($node, $stream) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) || ':' || coalesce(md5(string_agg(ts::text || '/' || v::text, ',')), '') FROM $stream");
}

sub same_everywhere
{
	my ($stream) = @_;
	my @d = map { digest($_, $stream) } @nodes;
	return $d[0] eq $d[1] && $d[1] eq $d[2];
}

ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader is elected');
my ($leader) = grep { role($_) eq 'leader' } @nodes;
my @followers = grep { $_ != $leader } @nodes;
my ($f, $other) = @followers;

$leader->safe_psql('postgres', 'CREATE TABLE ev (ts bigint NOT NULL, v int8) USING chronicle');
$leader->safe_psql('postgres', 'INSERT INTO ev SELECT g, g FROM generate_series(1, 1000) g');
ok(wait_for(sub { (grep { (eval { $_->safe_psql('postgres', 'SELECT count(*) FROM ev') } // '') eq '1000' } @nodes) == 3 }),
	'a stream with 1000 events on every node');

# ---------------------------------------------- a local table in the way of CREATE

$f->safe_psql('postgres', 'CREATE TABLE s2 (note text)');
$f->safe_psql('postgres', "INSERT INTO s2 VALUES ('local')");
my $off = -s $f->logfile;
my $applied_before = $f->safe_psql('postgres', 'SELECT applied_index FROM chronicle.status()');
# With commit_wait = off the three statements are queued at once and
# usually travel in one Raft entry: events of ev before and after the DDL.
# Retrying that entry must skip the events already in and only those.
$other->safe_psql('postgres', q{
SET chronicle_raft.commit_wait = off;
INSERT INTO ev SELECT g, g FROM generate_series(1001, 1010) g;
CREATE TABLE s2 (ts bigint NOT NULL, v int8) USING chronicle;
INSERT INTO ev SELECT g, g FROM generate_series(1011, 1020) g;
});
ok(wait_for(sub { $other->safe_psql('postgres', "SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE relname = 's2'") eq 'chronicle' }),
	'the stream is created on a node without the obstacle');
ok(wait_for(sub { $leader->safe_psql('postgres', 'SELECT count(*) FROM ev') eq '1020' }),
	'with commit_wait = off, each of the session\'s transactions lands (not only its last)');

my $err = '';
ok(wait_for(sub { ($err = apply_error($f)) ne '' }), 'the node with a local table named s2 stops applying');
like($err, qr/^Raft entry \d+: relation "s2" already exists$/, 'apply_error names the entry and the error');
my $log = '';
ok(wait_for(sub { ($log = slurp_file($f->logfile, $off)) =~ /HINT:/ }), 'and says so in its log');
like($log, qr/WARNING:\s+replicated DDL of Raft entry \d+ cannot be applied on this node: relation "s2" already exists/,
	'a WARNING names the entry');
like($log, qr/HINT:\s+Drop or rename the object of this node's own that is in the way/, 'with a hint');
unlike($log, qr/which is not a stream here; skipped/, 'nothing is skipped');

# the cluster goes on; the stopped node stores the log and still votes
$leader->safe_psql('postgres', 'INSERT INTO s2 SELECT g, -g FROM generate_series(1, 500) g');
$other->safe_psql('postgres', 'INSERT INTO ev SELECT g, g FROM generate_series(1021, 1500) g');
like($f->safe_psql('postgres', 'SELECT count(*) FROM ev'), qr/^10(00|10)$/, 'the stopped node does not apply later entries');
is($f->safe_psql('postgres', 'SELECT count(*) FROM s2'), '1', 'its local table is untouched');
my ($commit, $last) = split /\|/, $f->safe_psql('postgres', 'SELECT commit_index, last_log_index FROM chronicle.status()');
cmp_ok($last, '>', $applied_before + 2, 'but it stores the entries that follow');
$other->stop;
my ($rc, $out, $errtxt) = $leader->psql('postgres',
	"SET statement_timeout = '20s'; INSERT INTO ev VALUES (1501, 1501)");
is($rc, 0, 'with another node down, the stopped node still makes the quorum');
$other->start;

# a crash while stopped: it stops at the same entry again
$f->stop('immediate');
$f->start;
ok(wait_for(sub { apply_error($f) eq $err }), 'after a crash it stops at the same entry again');
like($f->safe_psql('postgres', 'SELECT count(*) FROM ev'), qr/^10(00|10)$/, 'and has not applied past it');

$f->safe_psql('postgres', 'DROP TABLE s2');
ok(wait_for(sub { apply_error($f) eq '' && digest($f, 'ev') eq digest($leader, 'ev') }, 30),
	'once the table is gone, applying resumes by itself');
ok(wait_for(sub { same_everywhere('ev') && same_everywhere('s2') }), 'and every node is identical');
is($f->safe_psql('postgres', 'SELECT count(*) FROM s2'), '500', 'the stream s2 holds its 500 events there too');
like(slurp_file($f->logfile, $off), qr/applying resumed: Raft entry \d+ is applied on this node/, 'the log says it resumed');

# ---------------------------------------------- a local view in the way of DROP

$f->safe_psql('postgres', 'CREATE VIEW ev_view AS SELECT count(*) AS n FROM ev');
$off = -s $f->logfile;
$leader->safe_psql('postgres', 'DROP TABLE ev');
ok(wait_for(sub { ($err = apply_error($f)) ne '' }), 'a local view on a dropped stream stops applying there');
like($err, qr/cannot drop table ev because other objects depend on it/, 'apply_error says why');
$leader->safe_psql('postgres', 'INSERT INTO s2 VALUES (501, -501)');
is($f->safe_psql('postgres', 'SELECT n FROM ev_view'), '1501', 'the view still answers on the stopped node');
$f->safe_psql('postgres', 'DROP VIEW ev_view');
ok(wait_for(sub { apply_error($f) eq '' && $f->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'ev'") eq '0' }, 30),
	'once the view is gone the stream is dropped there too');
ok(wait_for(sub { same_everywhere('s2') }), 'and the later events arrive');

# ---------------------------------------------- a session's lock in the way of DDL
#
# The worker does not wait for a lock inside its loop (that would stop the
# Raft engine too): it pauses applying at the entry and retries.

my $reader = $f->background_psql('postgres', on_error_stop => 1);
$reader->query_safe('BEGIN; SELECT count(*) FROM s2;');
my $reader_pid = $reader->query_safe('SELECT pg_backend_pid()');
$off = -s $f->logfile;
my $last_before = $f->safe_psql('postgres', 'SELECT last_log_index FROM chronicle.status()');
$leader->safe_psql('postgres', 'ALTER TABLE s2 RENAME TO s2r');
$leader->safe_psql('postgres', 'INSERT INTO s2r VALUES (600, -600)');
ok(wait_for(sub { apply_error($f) =~ /waiting for a lock held by process $reader_pid$/ }),
	'a reader in an open transaction holds up the rename on its node; apply_error names its pid');
ok(wait_for(sub { $f->safe_psql('postgres', 'SELECT last_log_index FROM chronicle.status()') > $last_before + 1 }),
	'the Raft engine goes on meanwhile (the node stores new entries)');
is($f->safe_psql('postgres', 'SELECT role FROM chronicle.status()'), 'follower', 'and stays a follower');
ok(wait_for(sub { slurp_file($f->logfile, $off) =~ /HINT:\s+End the sessions holding the lock/ }, 20),
	'after a few seconds the log says who holds the lock, with a hint');
like(slurp_file($f->logfile, $off),
	qr/WARNING:\s+replicated DDL of Raft entry \d+ has waited \d+ seconds: waiting for a lock held by process $reader_pid/,
	'naming the entry and the process');
$reader->query_safe('COMMIT');
$reader->quit;
ok(wait_for(sub { apply_error($f) eq '' && same_everywhere('s2r') }), 'once the reader is done the rename applies and the node catches up');

# An inserter of this node waits for its own batch while holding the lock
# the rename before it needs: it is told at once (08007), not after a timeout.
my $inserter = $f->background_psql('postgres', on_error_stop => 0);
$inserter->query_safe('BEGIN; INSERT INTO s2r VALUES (700, -700);');
$leader->safe_psql('postgres', 'ALTER TABLE s2r RENAME TO s2');
ok(wait_for(sub { apply_error($f) =~ /waiting for a lock/ }), 'the inserter holds up the next rename');
my $t0 = time();
my $commit_out = $inserter->query('COMMIT');
my $commit_err = $inserter->{stderr};
my $dt = time() - $t0;
$inserter->quit;
like($commit_err, qr/outcome of the transaction's events is unknown: replicated DDL ordered before these events needs this session's lock/,
	'its COMMIT ends with an unknown outcome that says why');
ok($dt < 5, sprintf('within %.1f s, not after the commit timeout', $dt));
ok(wait_for(sub { apply_error($f) eq '' && same_everywhere('s2') }), 'then the rename applies everywhere');
is($f->safe_psql('postgres', 'SELECT count(*) FROM s2 WHERE ts = 700'), '0',
	'its events, named for the stream before the rename, are refused alike on every node');
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM s2') } @nodes), '502,502,502', 'every node has the same events');

# The same with commit_wait = committed.  The batch is durable on a quorum
# while the rename ordered before it still waits here for the session's
# lock, and that rename makes every node refuse it: the session must not be
# told "committed" (it used to be, and its events were then dropped).
$inserter = $f->background_psql('postgres', on_error_stop => 0);
$inserter->query_safe('SET chronicle_raft.commit_wait = committed');
$inserter->query_safe('BEGIN; INSERT INTO s2 VALUES (701, -701);');
$leader->safe_psql('postgres', 'ALTER TABLE s2 RENAME TO s2r');
ok(wait_for(sub { apply_error($f) =~ /waiting for a lock/ }), 'with commit_wait = committed an inserter holds up a rename too');
$inserter->query('COMMIT');
$commit_err = $inserter->{stderr};
$inserter->quit;
like($commit_err, qr/outcome of the transaction's events is unknown: replicated DDL ordered before these events needs this session's lock/,
	'its COMMIT is not reported committed: the outcome is unknown, and it says why');
ok(wait_for(sub { apply_error($f) eq '' && same_everywhere('s2r') }), 'the rename applies everywhere');
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM s2r WHERE ts = 701') } @nodes), '0,0,0',
	'and the events are refused on every node');
$leader->safe_psql('postgres', 'ALTER TABLE s2r RENAME TO s2');
ok(wait_for(sub { same_everywhere('s2') }), 'renamed back');

# ---------------------------------------------- a failure every node shares stops nothing

($rc, $out, $errtxt) = $other->psql('postgres', 'CREATE TABLE s2 (ts bigint NOT NULL, v int8) USING chronicle');
isnt($rc, 0, 'creating a stream whose name another stream holds fails');
like($errtxt, qr/relation "s2" already exists/, 'with the usual error');
$other->safe_psql('postgres', 'INSERT INTO s2 VALUES (502, -502)');
ok(wait_for(sub { same_everywhere('s2') && digest($f, 's2') =~ /^503:/ }), 'and every node goes on applying');
is(join(',', map { apply_error($_) } @nodes), ',,', 'no node stopped');

# ---------------------------------------------- queued batches behind a DROP

# Three transactions wait in an isolated node's queue (commit_wait = off
# lets their sessions go) while the cluster drops one of their streams;
# when the node returns they are forwarded and usually travel in one entry
# behind the DROP.  The one that touches the dropped stream is refused
# whole, also its event for s2, a stream the entry's earlier batch already
# holds events for; the ones before and after it apply.
$leader->safe_psql('postgres', 'CREATE TABLE dd (ts bigint NOT NULL, v int8) USING chronicle');
ok(wait_for(sub { (grep { $_->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'dd'") eq '1' } @nodes) == 3 }),
	'stream dd exists everywhere');
$other->append_conf('postgresql.conf', "chronicle_raft.debug_isolate = on\n");
$other->reload;
ok(wait_for(sub { $other->safe_psql('postgres', 'SELECT coalesce(leader_id, 0) FROM chronicle.status()') eq '0' }, 20),
	'the isolated node no longer knows a leader');
$other->safe_psql('postgres', q{
SET chronicle_raft.commit_wait = off;
INSERT INTO s2 VALUES (900000, 0);
BEGIN; INSERT INTO s2 VALUES (900001, 1); INSERT INTO dd VALUES (900001, 1); COMMIT;
INSERT INTO s2 VALUES (900002, 2);
});
$leader->safe_psql('postgres', 'DROP TABLE dd');
ok(wait_for(sub { $f->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'dd'") eq '0' }),
	'the drop applies on the connected nodes');
$other->append_conf('postgresql.conf', "chronicle_raft.debug_isolate = off\n");
$other->reload;
ok(wait_for(sub { (grep { $_->safe_psql('postgres', 'SELECT count(*) FROM s2 WHERE ts >= 900000') eq '2' } @nodes) == 3 }),
	'the batches before and after the refused one apply on every node');
is(join(',', map { $_->safe_psql('postgres', 'SELECT string_agg(ts::text, \'/\' ORDER BY ts) FROM s2 WHERE ts >= 900000') } @nodes),
	'900000/900002,900000/900002,900000/900002',
	'the transaction with an event for the dropped stream is refused whole, on every node');
ok(wait_for(sub { same_everywhere('s2') }), 'every node holds the same events');
is(join(',', map { apply_error($_) } @nodes), ',,', 'no node stopped');

$_->stop for @nodes;
done_testing();
