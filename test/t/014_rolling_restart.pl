
# Copyright (c) chronicle_raft authors
#
# A rolling restart of a three-node cluster while a client writes all the
# time: followers are restarted one after another, then leadership is moved
# away from the leader and it is restarted last.  The client retries a write
# that failed (not committed) and, after an unknown outcome (08007, or its
# connection lost in the middle of a COMMIT), first checks with a
# linearizable read whether it committed, so every write lands exactly once.  Checks:
# no write is lost or doubled, nothing failed for good, and all nodes end
# identical.  Notes the latency bump.

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
use POSIX qw(:sys_wait_h);

my ($nodes_ref, $ports_ref) = start_cluster('r', 3);
my @nodes = @$nodes_ref;
my @ports = @$ports_ref;

sub role { my $r = eval { $_[0]->safe_psql('postgres', 'SELECT role FROM chronicle.status()') }; return $r // ''; }

ok(wait_for(sub { grep { role($_) eq 'leader' } @nodes }), 'a leader is elected');
$nodes[0]->safe_psql('postgres', 'CREATE TABLE w (ts bigint NOT NULL, id int) USING chronicle');
ok(wait_for(sub { (grep { $_->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'w'") eq '1' } @nodes) == 3 }),
	'the stream exists everywhere');

# ---------------------------------------------------------------- the writer

my $bindir = $nodes[0]->config_data('--bindir');
my $result_file = "$PostgreSQL::Test::Utils::tmp_check/rolling_writer.txt";
my $stop_file = "$PostgreSQL::Test::Utils::tmp_check/rolling_stop";
unlink $stop_file;

sub run_sql
{
	my ($node, $sql) = @_;
	my $out = `$bindir/psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h $node->{_host} -p $node->{_port} -d postgres -c "$sql" 2>&1`;
	return ($? == 0, $out);
}

my $pid = fork();
die "fork failed" unless defined $pid;
if ($pid == 0)
{
	# child: write ids 1.. until told to stop (bounded by count and time)
	my ($acked, $failed, $unknown, $retries) = (0, 0, 0, 0);
	my @lat;
	my $t_end = time() + 90;
	my $k = 0;
	for my $id (1 .. 3000)
	{
		last if -e $stop_file || time() > $t_end;
		my $done = 0;
		my $t0 = time();
		for my $attempt (1 .. 60)
		{
			my $node = $nodes[ $k++ % 3 ];
			my ($ok, $out) = run_sql($node, "SET statement_timeout = '5s'; INSERT INTO w VALUES ($id, $id)");
			if ($ok)
			{
				$done = 1;
				last;
			}
			# A definite "not committed" is an ERROR of this statement.  An
			# unknown outcome is 08007, or the connection ending while the
			# COMMIT was in flight (a node restarting): ask, and retry only
			# if the write is absent.
			my $lost = $out =~ /08007|57P01|server closed the connection|connection to server was lost|terminating connection/
			  && $out !~ /could not connect|Connection refused|the database system is (starting up|shutting down)/;
			if ($lost)
			{
				$unknown++;
				my $present;
				for my $ask (1 .. 100)
				{
					usleep(300_000);
					my ($qok, $cnt) = run_sql($nodes[ $k++ % 3 ],
						"SELECT chronicle.read_barrier(); SELECT count(*) FROM w WHERE id = $id");
					if ($qok && $cnt =~ /\n(\d+)\s*$/)
					{
						$present = $1;
						last;
					}
				}
				last unless defined $present;	# never answered: counted failed
				if ($present >= 1)
				{
					$done = 1;
					last;
				}
			}
			$retries++;
			usleep(100_000);
		}
		push @lat, time() - $t0;
		if ($done) { $acked++; } else { $failed++; }
	}
	my @s = sort { $a <=> $b } @lat;
	my $p50 = @s ? $s[ int(@s / 2) ] : 0;
	my $max = @s ? $s[-1] : 0;
	open(my $fh, '>', $result_file) or die;
	printf $fh "%d %d %d %d %.3f %.3f\n", $acked, $failed, $unknown, $retries, $p50, $max;
	close $fh;
	POSIX::_exit(0);			# skip the test modules' END blocks (they stop the servers)
}

# ---------------------------------------------------------------- the restarts

usleep(2_000_000);
my ($leader) = grep { role($_) eq 'leader' } @nodes;
my @followers = grep { $_ != $leader } @nodes;
for my $f (@followers)
{
	$f->restart;
	ok(wait_for(sub { role($f) eq 'follower' }), 'a follower restarts and rejoins');
	usleep(1_000_000);
}
my ($target_id) = $followers[0]->safe_psql('postgres', 'SELECT node_id FROM chronicle.status()');
$leader->safe_psql('postgres', "SELECT chronicle.transfer_leadership($target_id)");
ok(wait_for(sub { role($followers[0]) eq 'leader' }), "leadership moved to node $target_id before the leader restarts");
$leader->restart;
ok(wait_for(sub { role($leader) eq 'follower' }), 'the old leader restarts as a follower');
usleep(2_000_000);

open(my $sf, '>', $stop_file) or die;
close $sf;
waitpid($pid, 0);
my ($acked, $failed, $unknown, $retries, $p50, $max) = split ' ', slurp_file($result_file);
note("writer: $acked acknowledged, $failed failed, $unknown unknown outcomes, $retries retries; latency p50 ${p50}s max ${max}s");
ok($acked >= 20, "the client kept writing ($acked writes)");
is($failed, 0, 'zero failed writes for a client that retries');

ok(wait_for(sub { (grep { $_->safe_psql('postgres', 'SELECT count(*) FROM w') eq $acked } @nodes) == 3 }),
	'every acknowledged write is on every node');
is($nodes[1]->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT id) FROM w'), '0', 'none twice');
my @d = map { $_->safe_psql('postgres', "SELECT md5(string_agg(id::text, ',')) FROM w") } @nodes;
ok($d[0] eq $d[1] && $d[1] eq $d[2], 'all nodes identical');

$_->stop for @nodes;
done_testing();
