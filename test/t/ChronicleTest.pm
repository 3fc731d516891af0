
# Copyright (c) chronicle_raft authors
#
# What every chronicle_raft TAP test shares: where PostgreSQL::Test::Cluster
# keeps its files, fresh nodes, bounded waits and a ready-made cluster.
#
# PostgreSQL::Test::Cluster runs pg_regress --config-auth and keeps its files
# under $TESTDIR/tmp_check; PostgreSQL's own makefiles set PG_REGRESS and
# TESTDIR, "make tapcheck" does not.  TESTDIR defaults to test/t (whose
# tmp_check is git-ignored), away from ./tmp_check, which "make
# installcheck" (pg_regress --temp-instance) removes and recreates.  Load
# this module before PostgreSQL::Test::Cluster:
#
#     use FindBin;
#     use lib $FindBin::RealBin;
#     use ChronicleTest;

package ChronicleTest;

use strict;
use warnings;

BEGIN
{
	require Cwd;
	require File::Basename;
	if (!$ENV{PG_REGRESS})
	{
		my $libdir = `pg_config --pkglibdir`;
		chomp $libdir;
		$ENV{PG_REGRESS} = "$libdir/pgxs/src/test/regress/pg_regress";
	}
	$ENV{TESTDIR} ||= File::Basename::dirname(Cwd::abs_path($0));
}

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use File::Path qw(rmtree);
use File::Basename qw(basename);
use Time::HiRes qw(usleep time);
use Exporter 'import';
use POSIX ();

our @EXPORT = qw(new_node wait_for start_cluster raft_log_bytes raft_spares psql_in_background);

# A new node; first removes its directory if an earlier failed run left it
# (PostgreSQL::Test::Cluster refuses to reuse it).
sub new_node
{
	my ($name) = @_;
	my $testname = basename($0);
	$testname =~ s/\.[^.]+$//;
	rmtree("$PostgreSQL::Test::Utils::tmp_check/t_${testname}_${name}_data");
	return PostgreSQL::Test::Cluster->new($name);
}

# Poll $cond every 100 ms until it is true (1) or $seconds pass (0).
sub wait_for
{
	my ($cond, $seconds) = @_;
	my $deadline = time() + ($seconds // 40);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

# Start $n replicated servers named $prefix1.. with $extra settings added;
# returns (\@nodes, \@raft_ports).
sub start_cluster
{
	my ($prefix, $n, $extra) = @_;
	my @ports = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. $n;
	my $members = join(',', map { ($_ + 1) . "=127.0.0.1:$ports[$_]" } 0 .. $n - 1);
	my @nodes;

	for my $i (0 .. $n - 1)
	{
		my $node = new_node($prefix . ($i + 1));
		$node->init;
		$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'chronicle_raft'
chronicle_raft.node_id = @{[ $i + 1 ]}
chronicle_raft.initial_cluster = '$members'
chronicle_raft.cluster_secret = 'chronicle test secret $prefix'
chronicle_raft.election_timeout = 400
chronicle_raft.heartbeat_interval = 50
} . ($extra // ''));
		$node->start;
		push @nodes, $node;
	}
	return (\@nodes, \@ports);
}

# Run one SQL command with psql in a child process (its output discarded,
# its stderr, verbose, into $errfile); returns the child's pid to waitpid.
sub psql_in_background
{
	my ($node, $sql, $errfile) = @_;
	my $bindir = $node->config_data('--bindir');
	my $pid = fork();
	die "fork failed" unless defined $pid;
	if ($pid == 0)
	{
		exec("$bindir/psql", '-X', '-v', 'VERBOSITY=verbose', '-h', $node->host, '-p', $node->port,
			'-d', 'postgres', '-o', '/dev/null', '-c', $sql)
		  if open(STDERR, '>', $errfile);
		POSIX::_exit(1);
	}
	return $pid;
}

# Total bytes and number of a node's files in $PGDATA/chronicle_raft whose
# names match $re, or (-1, 0).
sub raft_files
{
	my ($node, $re) = @_;
	my $dir = $node->data_dir . '/chronicle_raft';
	my ($total, $n) = (0, 0);
	opendir(my $dh, $dir) or return (-1, 0);
	for my $f (readdir $dh)
	{
		next unless $f =~ $re;
		$total += -s "$dir/$f";
		$n++;
	}
	closedir $dh;
	return ($total, $n);
}

# Bytes of a node's Raft log segments ($PGDATA/chronicle_raft/*.seg), or -1.
sub raft_log_bytes
{
	my ($bytes) = raft_files($_[0], qr/\.seg$/);
	return $bytes;
}

# (bytes, count) of a node's spare segment files (compacted ones kept for
# reuse, docs/raft-log.md), or (-1, 0).
sub raft_spares
{
	return raft_files($_[0], qr/^spare-[0-9a-f]{16}$/);
}

1;
