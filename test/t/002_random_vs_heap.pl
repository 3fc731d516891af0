
# Copyright (c) chronicle_raft authors
#
# Differential test: the same pseudo-random events (fixed seed) go into a
# heap table and into a stream, in transactions of varying sizes, 10% of them
# out of order, with duplicate times and NULLs.  Then the stream must answer
# exactly like SQL over the heap:
#   - SELECT * returns the rows ordered by (event time, insertion order);
#   - chronicle.aggregate() over >= 1000 random intervals [from, to) (empty,
#     single-event, whole-range, on duplicated times, unbounded) equals
#     count/sum/min/max/avg over the heap, for an int4, an int8 (sums beyond
#     int64) and a float8 column (values exact in binary, so sums are exact);
#   - bucketed chronicle.aggregate() equals a GROUP BY of the heap;
#   - aggregates read O(log n) pages.
# All comparisons run as a few set-oriented queries that return mismatches.

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

my $node = new_node('diff');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'chronicle_raft'");
$node->append_conf(
	'postgresql.conf', qq{
log_statement = 'none'
max_parallel_workers_per_gather = 0
TimeZone = 'UTC'
work_mem = '64MB'
});
$node->start;

# ------------------------------------------------------------ the events

srand(20241122);

my $N = 100_000;
my $T0_MS = 1_704_067_200_000;    # 2024-01-01 00:00:00 UTC in ms
my @ev;                            # [seq, batch, ts_ms, a, b, v, tag]
my $newest = 0;                    # ms after T0 of the newest event so far
my $batch = 0;
my $seq = 0;
my $n_ooo = 0;

sub rand_int8
{
	my $x = (int(rand(2**31)) << 31) | int(rand(2**31));
	return rand() < 0.5 ? -$x : $x;
}

while ($seq < $N)
{
	my $r = rand();
	my $size =
	    $r < 0.6 ? 1 + int(rand(50))
	  : $r < 0.9 ? 50 + int(rand(1500))
	  :            1500 + int(rand(6500));
	$size = $N - $seq if $seq + $size > $N;
	$batch++;
	for (1 .. $size)
	{
		$seq++;
		my $ts;
		if ($seq > 1 && rand() < 0.10)
		{
			# out of order: older than the newest event inserted so far;
			# every third one lands exactly on an existing event time
			if (rand() < 0.33)
			{
				$ts = $ev[ int(rand(@ev)) ][2];
				$ts = $newest - 1 if $ts >= $newest;
			}
			else
			{
				$ts = int(rand($newest));
			}
			$ts = 0 if $ts < 0;
			$n_ooo++ if $ts < $newest;
		}
		else
		{
			# in order; one in ten repeats the newest time
			$newest += rand() < 0.1 ? 0 : 1 + int(rand(2000));
			$ts = $newest;
		}
		my $a = rand() < 0.03 ? undef : int(rand(2_000_001)) - 1_000_000;
		my $b = rand() < 0.03 ? undef : rand_int8();
		my $v = rand() < 0.03 ? undef : (int(rand(2_000_001)) - 1_000_000) / 4;
		my $tag =
		  rand() < 0.05
		  ? undef
		  : join('', map { chr(97 + int(rand(26))) } 1 .. int(rand(30)));
		push @ev, [ $seq, $batch, $ts, $a, $b, $v, $tag ];
	}
}
note("generated $N events in $batch transactions, $n_ooo out of order");

# what out_of_order_events must say: a batch is applied sorted by (time,
# arrival); an event counts when it is older than the newest event in the
# stream at that moment
my $expect_ooo = 0;
{
	my ($max, $count) = (undef, 0);
	my %by_batch;
	push @{ $by_batch{ $_->[1] } }, $_ for @ev;
	for my $k (sort { $a <=> $b } keys %by_batch)
	{
		for my $e (sort { $a->[2] <=> $b->[2] || $a->[0] <=> $b->[0] } @{ $by_batch{$k} })
		{
			$expect_ooo++ if $count > 0 && $e->[2] < $max;
			$max = $e->[2] if !defined $max || $e->[2] > $max;
			$count++;
		}
	}
}

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION chronicle_raft;
CREATE TABLE src (seq int, batch int, ts_ms bigint, a int4, b int8, v float8, tag text);
CREATE TABLE h (ts timestamptz NOT NULL, seq int, a int4, b int8, v float8, tag text);
CREATE TABLE s (ts timestamptz NOT NULL, seq int, a int4, b int8, v float8, tag text) USING chronicle;
});

my $copy = "COPY src FROM STDIN;\n";
for my $e (@ev)
{
	$copy .= join("\t", map { defined $_ ? $_ : '\N' } @$e) . "\n";
}
$copy .= "\\.\n";
$node->safe_psql('postgres', $copy);

# One transaction per batch, rows in sequence order, the same rows into the
# heap and the stream.  Every fifth batch goes through chronicle.insert(jsonb)
# instead of INSERT ... SELECT.
$node->safe_psql(
	'postgres', qq{
CREATE INDEX ON h (ts);
CREATE TEMP VIEW srcv AS
  SELECT 'epoch'::timestamptz + (ts_ms + $T0_MS) * interval '1 millisecond' AS ts, seq, a, b, v, tag, batch
    FROM src;
DO \$\$
DECLARE
  k int;
BEGIN
  FOR k IN SELECT DISTINCT batch FROM src ORDER BY 1 LOOP
    INSERT INTO h SELECT ts, seq, a, b, v, tag FROM srcv WHERE batch = k ORDER BY seq;
    IF k % 5 = 0 THEN
      PERFORM chronicle.insert('s', jsonb_agg(jsonb_build_object(
                 'ts', ts::text, 'seq', seq, 'a', a, 'b', b, 'v', v, 'tag', tag) ORDER BY seq))
         FROM srcv WHERE batch = k;
    ELSE
      INSERT INTO s SELECT ts, seq, a, b, v, tag FROM srcv WHERE batch = k ORDER BY seq;
    END IF;
    COMMIT;
  END LOOP;
END
\$\$;
ANALYZE h;
});

my ($events, $ooo, $batches, $height) = split /\|/,
  $node->safe_psql('postgres',
	"SELECT events, out_of_order_events, batches, tree_height FROM chronicle.streams WHERE stream = 's'::regclass"
  );
is($events, $N, 'stream holds every event');
is($batches, $batch, 'one batch per committed transaction');
is($ooo, $expect_ooo, 'out_of_order_events counts the events older than the newest at arrival');
cmp_ok($height, '>=', 3, "tree height >= 3 (got $height)");

# ----------------------------------------------------- full scan vs heap

is( $node->safe_psql(
		'postgres', q{
WITH x AS (SELECT row_number() OVER () AS rn, * FROM s),
     y AS (SELECT row_number() OVER (ORDER BY ts, seq) AS rn, * FROM h)
SELECT count(*) FILTER (WHERE x.rn IS NULL OR y.rn IS NULL
                         OR (x.ts, x.seq, x.a, x.b, x.v, x.tag)
                            IS DISTINCT FROM (y.ts, y.seq, y.a, y.b, y.v, y.tag)),
       count(*)
  FROM x FULL JOIN y USING (rn)}),
	"0|$N",
	'SELECT * FROM stream returns every row, in (event time, insertion order) order');

is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (SELECT seq, lag(seq) OVER () AS p, ts, lag(ts) OVER () AS pts FROM s) x
 WHERE ts = pts AND seq < p}),
	0,
	'events with equal times come out in insertion order');

# ----------------------------------------------------------- the intervals

# candidate bounds: event times (many duplicated), a microsecond either side,
# arbitrary times in and around the range
my @times = sort { $a <=> $b } map { $_->[2] } @ev;
my %count_at;
$count_at{$_}++ for @times;
my @dups = grep { $count_at{$_} > 1 } keys %count_at;
my @singles = grep { $count_at{$_} == 1 } keys %count_at;
@dups = sort { $a <=> $b } @dups;
@singles = sort { $a <=> $b } @singles;
note(scalar(@dups) . " duplicated event times, " . scalar(@singles) . " unique ones");
my ($tmin, $tmax) = ($times[0], $times[-1]);

# bound as microseconds after T0
sub rand_bound_us
{
	my $r = rand();
	return $times[ int(rand(@times)) ] * 1000 if $r < 0.35;
	return $dups[ int(rand(@dups)) ] * 1000 if $r < 0.55;
	return $times[ int(rand(@times)) ] * 1000 + (rand() < 0.5 ? -1 : 1) if $r < 0.75;
	return int(rand(($tmax - $tmin + 20_000) * 1000)) + ($tmin - 10_000) * 1000;
}

sub ts_sql
{
	my ($us) = @_;
	return 'NULL' unless defined $us;
	return "'epoch'::timestamptz + " . ($us + $T0_MS * 1000) . " * interval '1 microsecond'";
}

my @iv;    # [from_us or undef, to_us or undef]
push @iv, [ undef, undef ];
push @iv, [ $tmin * 1000, $tmax * 1000 + 1 ];
push @iv, [ $tmin * 1000, $tmax * 1000 ];    # all but the newest time
push @iv, [ undef, $tmin * 1000 ];           # empty: before everything
push @iv, [ $tmax * 1000 + 1, undef ];       # empty: after everything
for (1 .. 40)
{
	# empty intervals [t, t)
	my $t = rand_bound_us();
	push @iv, [ $t, $t ];
}
for (1 .. 100)
{
	# exactly one event: [t, t + 1us) on a unique time
	my $t = $singles[ int(rand(@singles)) ] * 1000;
	push @iv, [ $t, $t + 1 ];
}
for (1 .. 60)
{
	# all events of one duplicated time
	my $t = $dups[ int(rand(@dups)) ] * 1000;
	push @iv, [ $t, $t + 1 ];
}
for (1 .. 60)
{
	# half-bounded
	my $t = rand_bound_us();
	push @iv, rand() < 0.5 ? [ undef, $t ] : [ $t, undef ];
}
while (@iv < 1100)
{
	# random: log-uniform widths, most narrow, some very wide
	my $f = rand_bound_us();
	my $w;
	if (rand() < 0.3)
	{
		my $t = rand_bound_us();
		($f, $w) = $t < $f ? ($t, $f - $t) : ($f, $t - $f);
	}
	else
	{
		$w = int(exp(rand(log(($tmax - $tmin) * 1000.0))));
	}
	push @iv, [ $f, $f + $w ];
}
note(scalar(@iv) . " intervals");

my $ivalues = join(",\n",
	map { "($_, " . ts_sql($iv[$_][0]) . ", " . ts_sql($iv[$_][1]) . ")" } 0 .. $#iv);

# per interval: chronicle.aggregate of a, b and v against the heap
my $result = $node->safe_psql(
	'postgres', qq{
CREATE TABLE iv (i int, f timestamptz, t timestamptz);
INSERT INTO iv VALUES $ivalues;
ANALYZE iv;
WITH c AS (
  SELECT iv.i, ca.count AS ca_n, ca.sum AS ca_s, ca.min AS ca_lo, ca.max AS ca_hi, ca.avg AS ca_avg,
               cb.count AS cb_n, cb.sum AS cb_s, cb.min AS cb_lo, cb.max AS cb_hi, cb.avg AS cb_avg,
               cv.count AS cv_n, cv.sum AS cv_s, cv.min AS cv_lo, cv.max AS cv_hi, cv.avg AS cv_avg
    FROM iv,
         LATERAL chronicle.aggregate('s', 'a', iv.f, iv.t) ca,
         LATERAL chronicle.aggregate('s', 'b', iv.f, iv.t) cb,
         LATERAL chronicle.aggregate('s', 'v', iv.f, iv.t) cv),
hh AS (
  SELECT iv.i, x.*
    FROM iv, LATERAL (
      SELECT count(*) AS rows,
             count(a) AS a_n, sum(a)::numeric AS a_s, min(a)::numeric AS a_lo, max(a)::numeric AS a_hi,
             count(b) AS b_n, sum(b)::numeric AS b_s, min(b)::numeric AS b_lo, max(b)::numeric AS b_hi,
             count(v) AS v_n, sum(v)::numeric AS v_s, min(v)::numeric AS v_lo, max(v)::numeric AS v_hi
        FROM h
       WHERE ts >= coalesce(iv.f, '-infinity') AND ts < coalesce(iv.t, 'infinity')) x),
cmp AS (
  SELECT c.*, hh.rows, a_n, a_s, a_lo, a_hi, b_n, b_s, b_lo, b_hi, v_n, v_s, v_lo, v_hi,
         (ca_n, ca_s, ca_lo, ca_hi, ca_avg) IS NOT DISTINCT FROM
           (a_n, a_s, a_lo, a_hi, a_s / nullif(a_n, 0))
         AND (cb_n, cb_s, cb_lo, cb_hi, cb_avg) IS NOT DISTINCT FROM
           (b_n, b_s, b_lo, b_hi, b_s / nullif(b_n, 0))
         AND (cv_n, cv_s, cv_lo, cv_hi, cv_avg) IS NOT DISTINCT FROM
           (v_n, v_s, v_lo, v_hi, v_s / nullif(v_n, 0)) AS ok
    FROM c JOIN hh USING (i))
SELECT 'n', count(*), count(*) FILTER (WHERE rows = 0), count(*) FILTER (WHERE rows = 1),
       count(*) FILTER (WHERE rows > 1000), count(*) FILTER (WHERE rows = $N),
       count(*) FILTER (WHERE abs(b_s) > 9223372036854775807)
  FROM cmp
UNION ALL
SELECT * FROM (
  SELECT 'bad', i, rows, ca_n, a_n, ca_s, a_s
    FROM cmp WHERE NOT ok ORDER BY i LIMIT 20) bad});

my @lines = split /\n/, $result;
my ($tag, $n, $n0, $n1, $nwide, $nall, $nbig) = split /\|/, shift @lines;
is($n, scalar(@iv), 'every interval was compared');
ok($n0 >= 40 && $n1 >= 100 && $nwide >= 50 && $nall >= 2,
	"the intervals include empty ($n0), single-event ($n1), wide ($nwide) and whole-range ($nall) ones");
cmp_ok($nbig, '>', 0, "int8 sums beyond int64 were compared ($nbig intervals)");
is(scalar(@lines), 0,
	'chronicle.aggregate equals count/sum/min/max/avg over the heap for every interval')
  or diag("first mismatches (i|rows|stream a count|heap a count|stream a sum|heap a sum):\n"
	  . join("\n", @lines));

# the same bounds given as text literals and as timestamps without time zone
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM iv
 WHERE iv.f IS NOT NULL AND iv.t IS NOT NULL AND i % 10 = 0
   AND (SELECT (count, sum) FROM chronicle.aggregate('s', 'b', iv.f, iv.t))
       IS DISTINCT FROM
       (SELECT (count, sum) FROM chronicle.aggregate('s', 'b', iv.f::text, iv.t::text))}),
	0,
	'bounds as text literals give the same aggregates');

# range-restricted plain SQL over the stream agrees with the heap as well
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM iv,
  LATERAL (SELECT count(*) AS n, sum(a) AS sa, max(tag) AS mt FROM s
            WHERE ts >= coalesce(iv.f, '-infinity') AND ts < coalesce(iv.t, 'infinity')) x,
  LATERAL (SELECT count(*) AS n, sum(a) AS sa, max(tag) AS mt FROM h
            WHERE ts >= coalesce(iv.f, '-infinity') AND ts < coalesce(iv.t, 'infinity')) y
 WHERE i % 20 = 1 AND (x.n, x.sa, x.mt) IS DISTINCT FROM (y.n, y.sa, y.mt)}),
	0,
	'SELECT ... WHERE ts in [from, to) on the stream equals the heap');

# ---------------------------------------- WHERE clauses on the event time

# Queries with literal bounds (and a prepared statement run often enough to
# get a generic plan) return the same rows, in (ts, seq) order, as the heap.
sub ts_lit
{
	my ($us) = @_;
	return "(" . ts_sql($us) . ")";
}
my @where;
for my $k (1 .. 80)
{
	my ($x, $y) = (rand_bound_us(), rand_bound_us());
	($x, $y) = ($y, $x) if $y < $x;
	my $d = $dups[ int(rand(@dups)) ] * 1000;
	my $m = $k % 10;
	push @where,
	    $m == 0 ? "ts >= " . ts_lit($x) . " AND ts < " . ts_lit($y)
	  : $m == 1 ? "ts > " . ts_lit($x) . " AND ts <= " . ts_lit($y)
	  : $m == 2 ? "ts BETWEEN " . ts_lit($x) . " AND " . ts_lit($y)
	  : $m == 3 ? "ts = " . ts_lit($d)
	  : $m == 4 ? "ts < " . ts_lit($x)
	  : $m == 5 ? "ts >= " . ts_lit($y)
	  : $m == 6 ? "ts > " . ts_lit($d) . " AND ts < " . ts_lit($d + 1)
	  : $m == 7 ? "ts >= " . ts_lit($d) . " AND ts <= " . ts_lit($d) . " AND a IS NOT NULL"
	  : $m == 8 ? "ts < " . ts_lit($y) . " AND ts >= " . ts_lit($x) . " AND ts > " . ts_lit($x - 5_000_000)
	  :           "ts >= (" . ts_sql($x) . ")::timestamp AND ts < '2024-01-02'::date";
}
sub where_script
{
	my ($table, $order) = @_;
	my $sql = "SET TimeZone = 'UTC';\n";
	for my $w (@where)
	{
		$sql .= "SELECT count(*), sum(a), md5(coalesce(string_agg(seq::text, ','$order), '')) FROM $table WHERE $w;\n";
	}
	$sql .= "PREPARE q(timestamptz, timestamptz) AS SELECT count(*), sum(b), md5(coalesce(string_agg(seq::text, ','$order), '')) FROM $table WHERE ts >= \$1 AND ts < \$2;\n";
	for my $k (0 .. 9)
	{
		my ($x, $y) = ($iv[ 5 + $k * 90 ][0], $iv[ 5 + $k * 90 ][1]);
		$sql .= "EXECUTE q(" . ts_sql($x) . ", " . ts_sql($y) . ");\n";
	}
	return $sql;
}
note("plan of a range query on the stream:\n"
	  . $node->safe_psql('postgres', "EXPLAIN (COSTS OFF) SELECT count(*) FROM s WHERE $where[0]"));
my $from_stream = $node->safe_psql('postgres', where_script('s', ''));
my $from_heap = $node->safe_psql('postgres', where_script('h', ' ORDER BY ts, seq'));
my @ws = split /\n/, $from_stream;
my @wh = split /\n/, $from_heap;
my @wbad = grep { $ws[$_] ne $wh[$_] } 0 .. $#wh;
is(scalar(@ws) . '/' . scalar(@wbad), scalar(@wh) . '/0',
	'SELECT ... WHERE <conditions on ts> on the stream returns the heap\'s rows in (ts, insertion) order')
  or diag(join("\n", map { "$where[$_] -- stream $ws[$_], heap $wh[$_]" } @wbad[ 0 .. ($#wbad < 9 ? $#wbad : 9) ]));

# ---------------------------------------------------------------- buckets

# width in microseconds, buckets [from + k w, from + (k+1) w) up to `to`
my @bq;
for my $k (1 .. 60)
{
	my ($f, $t);
	if ($k <= 3)
	{
		($f, $t) = (undef, undef);    # the whole stream
	}
	elsif ($k <= 6)
	{
		($f, $t) = ($k == 4 ? undef : rand_bound_us(), $k == 4 ? rand_bound_us() : undef);
	}
	else
	{
		($f, $t) = (rand_bound_us(), rand_bound_us());
		($f, $t) = ($t, $f) if $t < $f;
	}
	$t = $f + 1 if defined $f && defined $t && $t == $f;
	my $span = (defined $t ? $t : $tmax * 1000 + 1) - (defined $f ? $f : $tmin * 1000);
	$span = 1 if $span < 1;
	my $nb = 1 + int(rand(300));
	my $w = int($span / $nb) + 1 + int(rand(1000));
	$w = 1 + int(rand(5_000_000)) if rand() < 0.1;    # narrow buckets
	$w = 60_000_000 if $k == 1;                         # a round minute
	if ($span / $w > 5000)
	{
		$w = int($span / 5000) + 1;
	}
	push @bq, [ $f, $t, $w ];
}

my $bucket_sql = join(
	"\nUNION ALL\n",
	map {
		my ($f, $t, $w) = @{ $bq[$_] };
		my $fs = ts_sql($f);
		my $ts = ts_sql($t);
		# the effective bounds of a NULL from/to: first event, last event + 1us
		my $fe = defined $f ? $fs : "(SELECT min(ts) FROM h)";
		my $te = defined $t ? $ts : "(SELECT max(ts) + interval '1 microsecond' FROM h)";
		qq{SELECT $_ AS q, $w AS w, bucket_start, count, sum, min, max, avg,
       $fe AS f, $te AS t, 'c' AS side
  FROM chronicle.aggregate('s', 'a', $fs, $ts, interval '$w microseconds')}
	} 0 .. $#bq);

my $bres = $node->safe_psql(
	'postgres', qq{
CREATE TABLE cb AS $bucket_sql;
WITH q AS (SELECT DISTINCT q, w, f, t FROM cb),
hb AS (
  SELECT q.q, q.f + (floor(extract(epoch FROM h.ts - q.f) * 1000000 / q.w) * q.w)::bigint
                    * interval '1 microsecond' AS bucket_start,
         count(h.a) AS count, sum(h.a)::numeric AS sum, min(h.a)::numeric AS min,
         max(h.a)::numeric AS max
    FROM q JOIN h ON h.ts >= q.f AND h.ts < q.t
   GROUP BY 1, 2),
expected_buckets AS (
  SELECT q, ceil(extract(epoch FROM t - f) * 1000000 / w) AS n FROM q)
SELECT 'n', (SELECT count(*) FROM cb)::text, (SELECT count(DISTINCT q) FROM cb)::text,
       (SELECT count(*) FROM cb WHERE count > 0)::text,
       (SELECT count(*) FROM expected_buckets e
         WHERE n IS DISTINCT FROM (SELECT count(*) FROM cb WHERE cb.q = e.q))::text,
       (SELECT count(*) FROM cb WHERE count = 0 AND NOT ((sum, min, max, avg) IS NULL))::text,
       ''
UNION ALL
SELECT * FROM (
  SELECT 'bad', coalesce(cb.q, hb.q)::text, coalesce(cb.bucket_start, hb.bucket_start)::text,
         cb.count::text, hb.count::text, cb.sum::text, hb.sum::text
    FROM cb FULL JOIN hb ON cb.q = hb.q AND cb.bucket_start = hb.bucket_start
   WHERE cb.q IS NULL
      OR (hb.q IS NULL AND cb.count <> 0)
      OR (hb.q IS NOT NULL
          AND (cb.count, cb.sum, cb.min, cb.max, cb.avg)
              IS DISTINCT FROM (hb.count, hb.sum, hb.min, hb.max, hb.sum / nullif(hb.count, 0)))
   LIMIT 20) bad});

my @blines = split /\n/, $bres;
my ($btag, $nrows, $nq, $nonempty, $badn, $badempty) = split /\|/, shift @blines;
is($nq, scalar(@bq), 'every bucketed aggregate returned buckets');
is($badn, 0, 'each bucketed aggregate returns one row per bucket between from and to');
is($badempty, 0, 'empty buckets have count 0 and NULL sum/min/max/avg');
cmp_ok($nonempty, '>=', 500, "non-empty buckets compared: $nonempty of $nrows");
is(scalar(@blines), 0, 'bucketed chronicle.aggregate equals GROUP BY bucket over the heap')
  or diag("first mismatches (q|bucket|stream count|heap count|stream sum|heap sum):\n"
	  . join("\n", @blines));

# ------------------------------------------------------------ pages read

my ($maxpages, $wholepages) = split /\|/, $node->safe_psql(
	'postgres', q{
SELECT max(chronicle.aggregate_pages_read('s', f, t)),
       chronicle.aggregate_pages_read('s', NULL::timestamptz, NULL::timestamptz)
  FROM iv});
my $bound = 2 * $height + 2;
cmp_ok($maxpages, '<=', $bound,
	"aggregate_pages_read <= 2 * tree_height + 2 = $bound for every interval (max $maxpages)");
cmp_ok($wholepages, '<=', $bound, "whole-range aggregate reads $wholepages pages");

$node->stop;
done_testing();
