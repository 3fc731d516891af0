#!/usr/bin/env bash
# bench/bench_streams.sh - heap table vs chronicle stream: ingest, range
# aggregates and size on a private, temporary PostgreSQL 15 server.
#
#   bash bench/bench_streams.sh                      # default: ROWS=10000000
#   ROWS=200000 ROWS_INSERT=50000 SECONDS_PGBENCH=6 SECONDS_QUERY=2 \
#       bash bench/bench_streams.sh                  # quick run, under a minute
#
# See bench/README.md for what is measured, the knobs and the caveats.
# This is a benchmark, not a test: it exits 0 even when a target is missed
# (it exits non-zero only when something actually fails).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO_DIR=$(dirname "$SCRIPT_DIR")
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- settings
# Every knob is an environment variable so runs are reproducible from the
# command line alone; the defaults are the issue's numbers.
: "${ROWS:=10000000}"            # events COPYed (twice: the aggregate set has 2*ROWS)
: "${ROWS_INSERT:=1000000}"      # events loaded by 1000-row INSERT statements
: "${COPY_REPEAT:=3}"            # COPY runs per side (median reported)
: "${SECONDS_PGBENCH:=30}"       # single-row INSERT seconds per side (8 clients)
: "${PGBENCH_CLIENTS:=8}"
: "${PGBENCH_JOBS:=2}"
: "${PGBENCH_ROUNDS:=3}"         # SECONDS_PGBENCH split into rounds, ABBA order
: "${SECONDS_QUERY:=5}"          # duration of each aggregate latency run
: "${STEP_TIMEOUT:=1800}"        # upper bound (s) for any single step/statement
: "${PGBIN:=/usr/lib/postgresql/15/bin}"
: "${OUT_DIR:=$SCRIPT_DIR/out}"
: "${BENCH_PORT:=}"              # empty: pick a free port in 54320..54419
: "${SHARED_BUFFERS:=2GB}"
: "${KEEP_DATA:=0}"              # 1: keep the data directory and input files

FORWARDED_VARS=(ROWS ROWS_INSERT COPY_REPEAT SECONDS_PGBENCH PGBENCH_CLIENTS PGBENCH_JOBS PGBENCH_ROUNDS
	SECONDS_QUERY STEP_TIMEOUT PGBIN OUT_DIR BENCH_PORT SHARED_BUFFERS KEEP_DATA)

# Event time of the first event; events are 10 ms apart, in time order.
T0="2026-01-01 00:00:00+00"
EVENT_US=10000

# ---------------------------------------------------------------- re-exec
reexec_as_postgres "$@"

# ---------------------------------------------------------------- helpers
RUN_DIR=""
PGDATA_DIR=""
SERVER_STARTED=0
LOG=/dev/null
declare -A R=()        # measured results, by key
NOTES=()               # anything odd, printed after the table

# Stop the server we started (by its postmaster PID, via pg_ctl) and remove
# the bulky data unless asked to keep it.  Runs on every exit path.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ $SERVER_STARTED -eq 1 && -f $PGDATA_DIR/postmaster.pid ]]; then
		local pid
		pid=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
		log "stopping server (postmaster PID $pid)"
		if ! timeout 120 "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 90 stop >>"$LOG" 2>&1; then
			# pg_ctl gave up: signal our own postmaster directly, by PID.
			kill -QUIT "$pid" 2>/dev/null || true
		fi
	fi
	if [[ -n $RUN_DIR && $KEEP_DATA != 1 ]]; then
		rm -rf "$RUN_DIR/data" "$RUN_DIR"/events_*.tsv "$RUN_DIR"/insert_1000.sql
	fi
	[[ -n $RUN_DIR ]] && log "logs kept in $RUN_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# psql against the private server, failing on the first error; bounded in time.
psql_b() {
	timeout "$STEP_TIMEOUT" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$RUN_DIR" -p "$SERVER_PORT" -d bench "$@"
}

# One value from a query.
sql_val() { psql_b -At -c "$1"; }

# Run a statement and print how long it took in seconds (wall clock around
# one psql call: the client cost is a few ms against statements of seconds).
timed_sql() {
	local t0 t1
	t0=$(now_ns)
	psql_b -c "$1" >>"$LOG" 2>&1 || die "failed: $1"
	t1=$(now_ns)
	calc "($t1 - $t0) / 1e9"
}

# COPY a file in an explicit transaction and print "<copy s> <commit s>",
# server round trips timed by psql's \timing.  A stream stages the rows
# during COPY and sorts/applies them to the tree at COMMIT, so the split
# shows where its time goes; the heap's COMMIT is just the WAL flush.
timed_copy() {
	local table=$1 file=$2 out
	out=$(psql_b <<EOF 2>>"$LOG"
\timing on
BEGIN;
COPY $table FROM '$file';
COMMIT;
EOF
) || die "COPY into $table failed"
	printf '%s\n' "$out" >>"$LOG"
	printf '%s\n' "$out" | awk '/^Time: / { t[++n] = $2 } END { if (n != 3) exit 1; printf "%.6f %.6f\n", t[2] / 1000, t[3] / 1000 }' \
		|| die "could not read the timing of COPY into $table"
}

# Start each timed step from the same state: no dirty buffers left over from
# the other side's load, so no checkpoint lands in the middle of a step.
checkpoint() { psql_b -c "CHECKPOINT" >>"$LOG" 2>&1; }

# ---------------------------------------------------------------- server
# The one server (the cluster scripts' helpers in lib.sh run several).
setup_server() {
	PGDATA_DIR="$RUN_DIR/data"
	if [[ -n $BENCH_PORT ]]; then
		SERVER_PORT=$BENCH_PORT
	else
		pick_port_in 54320 100 BENCH_PORT
		SERVER_PORT=$PICKED
	fi
	log "initdb in $PGDATA_DIR (port $SERVER_PORT)"
	"$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -E UTF8 --locale=C -N >>"$LOG" 2>&1 \
		|| die "initdb failed (see $LOG)"

	# Settings for a 2-core / 24 GB box.  Durability is the default for both
	# sides (fsync, synchronous_commit = on, full_page_writes).  autovacuum is
	# off so that no background vacuum/analyze of the heap lands inside a
	# timed step; the heap is vacuumed and analyzed explicitly before it is
	# queried (its best case).  jit is off: compiling costs the heap ~100 ms
	# per aggregate and would dominate the BRIN timings.
	cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# ---- bench/bench_streams.sh ----
listen_addresses = '127.0.0.1'
port = $SERVER_PORT
unix_socket_directories = '$RUN_DIR'
shared_preload_libraries = 'chronicle_raft'
max_connections = 30
shared_buffers = $SHARED_BUFFERS
effective_cache_size = 16GB
work_mem = 64MB
maintenance_work_mem = 1GB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
synchronous_commit = on
fsync = on
random_page_cost = 1.1
effective_io_concurrency = 200
max_parallel_workers_per_gather = 2
autovacuum = off
jit = off
timezone = 'UTC'
log_timezone = 'UTC'
log_checkpoints = on
statement_timeout = '${STEP_TIMEOUT}s'
EOF
	"$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$RUN_DIR/server.log" -w -t 120 start >>"$LOG" 2>&1 \
		|| die "server did not start (see $RUN_DIR/server.log)"
	SERVER_STARTED=1
	log "server up, postmaster PID $(head -n 1 "$PGDATA_DIR/postmaster.pid")"
	timeout 60 "$PGBIN/createdb" -h "$RUN_DIR" -p "$SERVER_PORT" bench
	psql_b -c "CREATE EXTENSION chronicle_raft" >>"$LOG" 2>&1
}

# ---------------------------------------------------------------- input data
# One file per half of the aggregate set; events_1 is the COPY benchmark's
# input, events_2 continues it in time so the stream and the heap end up with
# 2*ROWS events for the aggregate part.  Values: a slow sine plus noise,
# rounded to 3 decimals like a real sensor.
gen_events() {
	local file=$1 first=$2 n=$3
	psql_b -c "SELECT setseed(0.25)" -c "
		COPY (SELECT '$T0'::timestamptz + i * interval '10 milliseconds',
		             (i % 1000)::int4,
		             floor((20 + 10 * sin(i / 6000.0) + random()) * 1000) / 1000
		        FROM generate_series($first::bigint, $((first + n - 1))::bigint) AS i)
		TO '$file'" >>"$LOG"
}

# ROWS_INSERT events of events_1 as INSERT statements of 1000 rows each; the
# table is a psql variable (:"tbl") so one file serves both sides.
gen_insert_sql() {
	head -n "$ROWS_INSERT" "$RUN_DIR/events_1.tsv" | awk -F'\t' -v q="'" '
		(NR - 1) % 1000 == 0 { if (NR > 1) print ";"; printf "INSERT INTO :\"tbl\" (ts, sensor_id, value) VALUES\n"; sep = "" }
		{ printf "%s(%s%s%s,%s,%s)", sep, q, $1, q, $2, $3; sep = ",\n" }
		END { if (NR > 0) print ";" }' >"$RUN_DIR/insert_1000.sql"
}

create_pair() {
	local base=$1
	psql_b >>"$LOG" <<EOF
CREATE TABLE heap_$base (ts timestamptz NOT NULL, sensor_id int4, value float8);
CREATE TABLE stream_$base (ts timestamptz NOT NULL, sensor_id int4, value float8) USING chronicle;
EOF
}

stream_events() { sql_val "SELECT events FROM chronicle.streams WHERE stream = '$1'::regclass"; }

# ---------------------------------------------------------------- phases
wal_lsn() { sql_val "SELECT pg_current_wal_insert_lsn()"; }
wal_bytes() { sql_val "SELECT pg_wal_lsn_diff('$2', '$1')"; }

# COPY the same file into a fresh heap table and a fresh stream COPY_REPEAT
# times, alternating which side goes first (so neither always profits from a
# warmer page cache or a just-finished checkpoint); report the median.  The
# last repetition's tables stay for the rest of the benchmark.
bench_copy() {
	local side secs rep lsn0 lsn1 order copy_s commit_s
	local -a rps_heap=() rps_stream=()
	for ((rep = 1; rep <= COPY_REPEAT; rep++)); do
		psql_b -c "DROP TABLE IF EXISTS heap_copy, stream_copy" >>"$LOG" 2>&1
		create_pair copy
		if ((rep % 2)); then order="heap stream"; else order="stream heap"; fi
		for side in $order; do
			checkpoint
			log "COPY $ROWS events into ${side}_copy (repetition $rep/$COPY_REPEAT)"
			lsn0=$(wal_lsn)
			read -r copy_s commit_s < <(timed_copy "${side}_copy" "$RUN_DIR/events_1.tsv")
			lsn1=$(wal_lsn)
			secs=$(calc "$copy_s + $commit_s")
			if [[ $side == heap ]]; then rps_heap+=("$(calc "$ROWS / $secs")"); else rps_stream+=("$(calc "$ROWS / $secs")"); fi
			R[copy_split_$side]="${R[copy_split_$side]:-} $(awk -v a="$copy_s" -v b="$commit_s" 'BEGIN { printf "%.2f+%.2f", a, b }')"
			R[copy_walbpe_$side]=$(calc "$(wal_bytes "$lsn0" "$lsn1") / $ROWS")
			log "  ${secs}s (COPY ${copy_s}s + COMMIT ${commit_s}s) = $(calc "$ROWS / $secs") rows/s, WAL ${R[copy_walbpe_$side]} bytes/event"
		done
	done
	R[copy_rps_heap]=$(median "${rps_heap[@]}")
	R[copy_rps_stream]=$(median "${rps_stream[@]}")
	R[copy_all_heap]="${rps_heap[*]}"
	R[copy_all_stream]="${rps_stream[*]}"
	# size right after the load, before the second half goes in
	R[bpe_heap]=$(calc "$(sql_val "SELECT pg_relation_size('heap_copy')") / $ROWS")
	R[bpe_stream]=$(calc "$(sql_val "SELECT pg_relation_size('stream_copy')") / $ROWS")
	check_count heap_copy "$ROWS" "$(sql_val "SELECT count(*) FROM heap_copy")"
	check_count stream_copy "$ROWS" "$(stream_events stream_copy)"

	# Second half (later times) appended to both: the 2*ROWS aggregate set.
	for side in heap stream; do
		checkpoint
		log "COPY $ROWS more events into ${side}_copy (append)"
		read -r copy_s commit_s < <(timed_copy "${side}_copy" "$RUN_DIR/events_2.tsv")
		secs=$(calc "$copy_s + $commit_s")
		R[copy2_rps_$side]=$(calc "$ROWS / $secs")
		log "  ${secs}s (COPY ${copy_s}s + COMMIT ${commit_s}s) = ${R[copy2_rps_$side]} rows/s"
	done
	check_count stream_copy "$((2 * ROWS))" "$(stream_events stream_copy)"
}

bench_insert_1000() {
	local side t0 t1 secs
	create_pair ins
	for side in heap stream; do
		checkpoint
		log "1000-row INSERTs: $ROWS_INSERT events into ${side}_ins"
		t0=$(now_ns)
		psql_b -v tbl="${side}_ins" -f "$RUN_DIR/insert_1000.sql" >>"$LOG" 2>&1 \
			|| die "1000-row INSERT into ${side}_ins failed"
		t1=$(now_ns)
		secs=$(calc "($t1 - $t0) / 1e9")
		R[ins_rps_$side]=$(calc "$ROWS_INSERT / $secs")
		log "  ${secs}s = ${R[ins_rps_$side]} rows/s"
	done
	R[bpe_ins_heap]=$(calc "$(sql_val "SELECT pg_relation_size('heap_ins')") / $ROWS_INSERT")
	R[bpe_ins_stream]=$(calc "$(sql_val "SELECT pg_relation_size('stream_ins')") / $ROWS_INSERT")
	check_count stream_ins "$ROWS_INSERT" "$(stream_events stream_ins)"
}

# 8 clients doing one-row INSERT transactions.  The SECONDS_PGBENCH per side
# are split into PGBENCH_ROUNDS rounds run in ABBA order (heap, stream,
# stream, heap, ...) so that a drift in background load hits both sides
# alike; tps and latency are the means over the rounds (equal durations).
bench_pgbench_insert() {
	local side script out n lsn0 lsn1 round secs order
	local -A wal=() txn=()
	local -a tps_heap=() tps_stream=() lat_heap=() lat_stream=()
	secs=$(((SECONDS_PGBENCH + PGBENCH_ROUNDS - 1) / PGBENCH_ROUNDS))
	create_pair pgb
	for side in heap stream; do
		# table names cannot be parameters of a prepared statement, hence
		# one script per side
		cat >"$RUN_DIR/pgb_insert_$side.sql" <<EOF
\set sid random(1, 1000)
INSERT INTO ${side}_pgb (ts, sensor_id, value) VALUES (clock_timestamp(), :sid, random() * 100);
EOF
		wal[$side]=0
		txn[$side]=0
	done
	for ((round = 1; round <= PGBENCH_ROUNDS; round++)); do
		if ((round % 2)); then order="heap stream"; else order="stream heap"; fi
		for side in $order; do
			script="$RUN_DIR/pgb_insert_$side.sql"
			out="$RUN_DIR/pgbench_insert_${side}_$round.out"
			checkpoint
			log "pgbench: $PGBENCH_CLIENTS clients single-row INSERT into ${side}_pgb for ${secs}s (round $round/$PGBENCH_ROUNDS)"
			lsn0=$(wal_lsn)
			timeout $((secs + 120)) "$PGBIN/pgbench" -n -M prepared \
				-c "$PGBENCH_CLIENTS" -j "$PGBENCH_JOBS" -T "$secs" \
				-h "$RUN_DIR" -p "$SERVER_PORT" -f "$script" bench >"$out" 2>&1 \
				|| { cat "$out" >>"$LOG"; die "pgbench INSERT into ${side}_pgb failed (see $out)"; }
			lsn1=$(wal_lsn)
			cat "$out" >>"$LOG"
			n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
			txn[$side]=$((txn[$side] + n))
			wal[$side]=$((wal[$side] + $(wal_bytes "$lsn0" "$lsn1")))
			if [[ $side == heap ]]; then
				tps_heap+=("$(pgb_num "$out" tps)"); lat_heap+=("$(pgb_num "$out" "latency average")")
			else
				tps_stream+=("$(pgb_num "$out" tps)"); lat_stream+=("$(pgb_num "$out" "latency average")")
			fi
			log "  tps $(pgb_num "$out" tps), latency avg $(pgb_num "$out" "latency average") ms"
		done
	done
	R[pgb_tps_heap]=$(mean "${tps_heap[@]}")
	R[pgb_tps_stream]=$(mean "${tps_stream[@]}")
	R[pgb_lat_heap]=$(mean "${lat_heap[@]}")
	R[pgb_lat_stream]=$(mean "${lat_stream[@]}")
	R[pgb_all_heap]="${tps_heap[*]}"
	R[pgb_all_stream]="${tps_stream[*]}"
	R[pgb_rows_heap]=$(sql_val "SELECT count(*) FROM heap_pgb")
	R[pgb_rows_stream]=$(stream_events stream_pgb)
	# commits land in a different order than clock_timestamp() was taken:
	# such events are inserted inside a leaf instead of appended
	R[pgb_ooo]=$(sql_val "SELECT out_of_order_events FROM chronicle.streams WHERE stream = 'stream_pgb'::regclass")
	for side in heap stream; do
		check_count "${side}_pgb" "${txn[$side]}" "${R[pgb_rows_$side]}"
		R[pgb_walbpe_$side]=$(calc "${wal[$side]} / ${R[pgb_rows_$side]}")
	done
	R[bpe_pgb_heap]=$(calc "$(sql_val "SELECT pg_relation_size('heap_pgb')") / ${R[pgb_rows_heap]}")
	R[bpe_pgb_stream]=$(calc "$(sql_val "SELECT pg_relation_size('stream_pgb')") / ${R[pgb_rows_stream]}")
}

check_count() {
	local what=$1 want=$2 got=$3
	[[ $want == "$got" ]] || note "$what holds $got events, expected $want"
}

# Median and mean latency (ms) of one query run by pgbench: one client,
# prepared, for SECONDS_QUERY seconds after one warm-up execution.  The
# per-transaction log gives the median; pgbench's own average the mean.
time_query() {
	local key=$1 sql=$2 qfile="$RUN_DIR/q_$1.sql" out="$RUN_DIR/q_$1.out"
	printf '%s\n' "$sql" >"$qfile"
	psql_b -c "EXPLAIN $sql" >>"$LOG" 2>&1
	psql_b -At -F ' ' -c "$sql" >"$RUN_DIR/q_$key.result" 2>>"$LOG" || die "query $key failed: $sql"
	rm -f "$RUN_DIR/lat_$key".*
	timeout $((SECONDS_QUERY + STEP_TIMEOUT)) "$PGBIN/pgbench" -n -M prepared -c 1 -j 1 \
		-T "$SECONDS_QUERY" -l --log-prefix="$RUN_DIR/lat_$key" \
		-h "$RUN_DIR" -p "$SERVER_PORT" -f "$qfile" bench >"$out" 2>&1 \
		|| { cat "$out" >>"$LOG"; die "pgbench query $key failed (see $out)"; }
	cat "$out" >>"$LOG"
	R[q_mean_$key]=$(pgb_num "$out" "latency average")
	# per-transaction log: field 3 is the latency in microseconds
	R[q_med_$key]=$(cat "$RUN_DIR/lat_$key".* | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) printf "%.4f", v[(NR + 1) / 2] / 1000; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2000 }')
	rm -f "$RUN_DIR/lat_$key".*  # medians kept; the raw logs are large
	R[q_n_$key]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	log "  $key: median ${R[q_med_$key]} ms, mean ${R[q_mean_$key]} ms over ${R[q_n_$key]} runs"
}

# Same count and (to float rounding) the same sum/min/max on both sides.
check_results() {
	local a=$1 b=$2
	if ! awk -v a="$(cat "$RUN_DIR/q_$a.result")" -v b="$(cat "$RUN_DIR/q_$b.result")" 'BEGIN {
			n = split(a, x, " "); m = split(b, y, " ");
			if (n < 4 || m < 4) exit 1;
			for (i = 1; i <= 4; i++) {
				d = x[i] - y[i]; if (d < 0) d = -d;
				s = (x[i] < 0 ? -x[i] : x[i]); if (s < 1) s = 1;
				if (d / s > 1e-9) exit 1;
			}
		}'; then
		note "aggregate results differ: $a=[$(cat "$RUN_DIR/q_$a.result")] $b=[$(cat "$RUN_DIR/q_$b.result")]"
	fi
}

bench_aggregates() {
	local n2=$((2 * ROWS)) span_s from_off range from to key secs
	span_s=$((n2 * EVENT_US / 1000000))
	# A window starting 40% into the data, off the 10 ms grid so both ends
	# cut through a leaf.
	from_off=$((span_s * 4 / 10))
	declare -A RANGE_FROM RANGE_TO
	local base="'$T0'::timestamptz"
	for range in 3min 2h all; do
		case $range in
			3min) from="$base + interval '$from_off.123456 seconds'"; to="$from + interval '3 minutes'" ;;
			2h) from="$base + interval '$from_off.123456 seconds'"; to="$from + interval '2 hours'" ;;
			all) from="$base - interval '1 day'"; to="$base + interval '$((span_s + 86400)) seconds'" ;;
		esac
		# literal bounds: a stable expression would hide the range from the
		# planner's estimates (and from BRIN costing)
		RANGE_FROM[$range]=$(sql_val "SELECT ($from)::text")
		RANGE_TO[$range]=$(sql_val "SELECT ($to)::text")
		R[range_events_$range]=$(sql_val "SELECT count FROM chronicle.aggregate('stream_copy', 'value', '${RANGE_FROM[$range]}'::timestamptz, '${RANGE_TO[$range]}'::timestamptz)")
		R[range_pages_$range]=$(sql_val "SELECT chronicle.aggregate_pages_read('stream_copy', '${RANGE_FROM[$range]}'::timestamptz, '${RANGE_TO[$range]}'::timestamptz)")
		log "range $range: [${RANGE_FROM[$range]}, ${RANGE_TO[$range]}) = ${R[range_events_$range]} events, stream reads ${R[range_pages_$range]} pages"
	done

	# The heap's best case: hint bits set, visibility map built, statistics.
	log "VACUUM ANALYZE heap_copy"
	secs=$(timed_sql "VACUUM (ANALYZE) heap_copy")
	log "  ${secs}s"

	for range in 3min 2h all; do
		from=${RANGE_FROM[$range]}
		to=${RANGE_TO[$range]}
		log "aggregate over $range"
		time_query "stream_$range" \
			"SELECT count, sum, min, max FROM chronicle.aggregate('stream_copy', 'value', '$from'::timestamptz, '$to'::timestamptz);"
		# no index exists yet: this is the plain (parallel) sequential scan
		time_query "heap_$range" \
			"SELECT count(value), sum(value), min(value), max(value) FROM heap_copy WHERE ts >= '$from' AND ts < '$to';"
		check_results "stream_$range" "heap_$range"
	done

	log "CREATE INDEX ... USING brin (ts) on heap_copy"
	R[brin_s]=$(timed_sql "CREATE INDEX heap_copy_ts_brin ON heap_copy USING brin (ts)")
	psql_b -c "ANALYZE heap_copy" >>"$LOG"
	R[brin_bytes]=$(sql_val "SELECT pg_relation_size('heap_copy_ts_brin')")
	for range in 3min 2h all; do
		from=${RANGE_FROM[$range]}
		to=${RANGE_TO[$range]}
		log "aggregate over $range, heap with BRIN"
		time_query "brin_$range" \
			"SELECT count(value), sum(value), min(value), max(value) FROM heap_copy WHERE ts >= '$from' AND ts < '$to';"
		check_results "stream_$range" "brin_$range"
		grep -q "Bitmap Index Scan on heap_copy_ts_brin" <(psql_b -c "EXPLAIN SELECT count(value) FROM heap_copy WHERE ts >= '$from' AND ts < '$to'") \
			&& R[brin_used_$range]=1 || R[brin_used_$range]=0
	done
}

# ---------------------------------------------------------------- report
fmt_ms() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.3f", v; else printf "%.1f", v }'; }
fmt_x() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.2fx", v; else printf "%.0fx", v }'; }
# pass '<awk condition>': PASS or MISS (the condition is code, not data)

build_table() {
	local r h s ratio key range label target res stream_ok
	row "metric" "heap" "stream" "ratio" "target" "result"

	ratio=$(calc "${R[copy_rps_stream]} / ${R[copy_rps_heap]}")
	row "COPY ${ROWS} events, rows/s (median of ${COPY_REPEAT})" "$(fmt_int "${R[copy_rps_heap]}")" "$(fmt_int "${R[copy_rps_stream]}")" \
		"$(fmt_x "$ratio") s/h" ">= 1.0x heap" "$(pass "$ratio >= 1.0")"
	ratio=$(calc "${R[copy2_rps_stream]} / ${R[copy2_rps_heap]}")
	row "COPY ${ROWS} more (append), rows/s" "$(fmt_int "${R[copy2_rps_heap]}")" "$(fmt_int "${R[copy2_rps_stream]}")" \
		"$(fmt_x "$ratio") s/h" "-" "info"
	ratio=$(calc "${R[ins_rps_stream]} / ${R[ins_rps_heap]}")
	row "1000-row INSERT (${ROWS_INSERT}), rows/s" "$(fmt_int "${R[ins_rps_heap]}")" "$(fmt_int "${R[ins_rps_stream]}")" \
		"$(fmt_x "$ratio") s/h" "-" "info"
	ratio=$(calc "${R[pgb_tps_stream]} / ${R[pgb_tps_heap]}")
	row "1-row INSERT ${PGBENCH_CLIENTS} clients, tps (${PGBENCH_ROUNDS} rounds)" "$(fmt_int "${R[pgb_tps_heap]}")" "$(fmt_int "${R[pgb_tps_stream]}")" \
		"$(fmt_x "$ratio") s/h" ">= 0.9x heap" "$(pass "$ratio >= 0.9")"
	ratio=$(calc "${R[pgb_lat_heap]} / ${R[pgb_lat_stream]}")
	row "1-row INSERT latency avg, ms" "$(fmt_ms "${R[pgb_lat_heap]}")" "$(fmt_ms "${R[pgb_lat_stream]}")" \
		"$(fmt_x "$ratio") h/s" "-" "info"

	for range in 3min 2h all; do
		s=${R[q_med_stream_$range]}
		for kind in heap brin; do
			h=${R[q_med_${kind}_$range]}
			ratio=$(calc "$h / $s")
			if [[ $kind == heap ]]; then
				label="agg $range (${R[range_events_$range]} ev), heap seq scan, ms"
			else
				label="agg $range (${R[range_events_$range]} ev), heap+BRIN, ms"
				[[ ${R[brin_used_$range]} == 1 ]] || label="$label [planner: no BRIN]"
			fi
			stream_ok=$(pass "$s <= 2.0")
			if [[ $kind == brin && $range == 2h ]]; then
				target="stream <= 2 ms, >= 100x"
				res=$(pass "$s <= 2.0 && $ratio >= 100")
			else
				target="stream <= 2 ms"
				res=$stream_ok
			fi
			row "$label" "$(fmt_ms "$h")" "$(fmt_ms "$s")" "$(fmt_x "$ratio") h/s" "$target" "$res"
		done
	done

	ratio=$(calc "${R[bpe_stream]} / ${R[bpe_heap]}")
	row "bytes/event (COPY, ${ROWS} ev)" "$(calc "${R[bpe_heap]}" | awk '{printf "%.1f", $1}')" \
		"$(calc "${R[bpe_stream]}" | awk '{printf "%.1f", $1}')" "$(fmt_x "$ratio") s/h" "<= 0.5x heap" "$(pass "$ratio <= 0.5")"
	ratio=$(calc "${R[bpe_ins_stream]} / ${R[bpe_ins_heap]}")
	row "bytes/event (1000-row INSERT)" "$(awk -v v="${R[bpe_ins_heap]}" 'BEGIN{printf "%.1f", v}')" \
		"$(awk -v v="${R[bpe_ins_stream]}" 'BEGIN{printf "%.1f", v}')" "$(fmt_x "$ratio") s/h" "-" "info"
	ratio=$(calc "${R[bpe_pgb_stream]} / ${R[bpe_pgb_heap]}")
	row "bytes/event (1-row INSERT)" "$(awk -v v="${R[bpe_pgb_heap]}" 'BEGIN{printf "%.1f", v}')" \
		"$(awk -v v="${R[bpe_pgb_stream]}" 'BEGIN{printf "%.1f", v}')" "$(fmt_x "$ratio") s/h" "-" "info"
	ratio=$(calc "${R[copy_walbpe_stream]} / ${R[copy_walbpe_heap]}")
	row "WAL bytes/event (COPY)" "$(awk -v v="${R[copy_walbpe_heap]}" 'BEGIN{printf "%.1f", v}')" \
		"$(awk -v v="${R[copy_walbpe_stream]}" 'BEGIN{printf "%.1f", v}')" "$(fmt_x "$ratio") s/h" "-" "info"
	ratio=$(calc "${R[pgb_walbpe_stream]} / ${R[pgb_walbpe_heap]}")
	row "WAL bytes/event (1-row INSERT)" "$(awk -v v="${R[pgb_walbpe_heap]}" 'BEGIN{printf "%.1f", v}')" \
		"$(awk -v v="${R[pgb_walbpe_stream]}" 'BEGIN{printf "%.1f", v}')" "$(fmt_x "$ratio") s/h" "-" "info"
}

# ---------------------------------------------------------------- main
main() {
	local t_start t_end stamp result_file
	t_start=$(date +%s)
	# other work on the box skews every number: record the load around the run
	R[load_start]=$(cut -d ' ' -f 1-3 /proc/loadavg)
	[[ -x $PGBIN/initdb ]] || die "no PostgreSQL binaries in $PGBIN"
	[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 1000 ]] || die "ROWS must be an integer >= 1000"
	[[ $ROWS_INSERT =~ ^[0-9]+$ && $ROWS_INSERT -ge 1 ]] || die "ROWS_INSERT must be a positive integer"
	((ROWS_INSERT <= ROWS)) || ROWS_INSERT=$ROWS
	[[ $COPY_REPEAT =~ ^[1-9]$ ]] || die "COPY_REPEAT must be 1..9"
	[[ $PGBENCH_ROUNDS =~ ^[1-9]$ ]] || die "PGBENCH_ROUNDS must be 1..9"
	mkdir -p "$OUT_DIR"
	RUN_DIR=$(mktemp -d "$OUT_DIR/run.XXXXXX")
	LOG="$RUN_DIR/bench.log"
	log "run directory $RUN_DIR; ROWS=$ROWS ROWS_INSERT=$ROWS_INSERT SECONDS_PGBENCH=$SECONDS_PGBENCH SECONDS_QUERY=$SECONDS_QUERY"

	setup_server

	log "generating $ROWS + $ROWS events"
	gen_events "$RUN_DIR/events_1.tsv" 0 "$ROWS"
	gen_events "$RUN_DIR/events_2.tsv" "$ROWS" "$ROWS"
	gen_insert_sql

	bench_copy
	bench_insert_1000
	bench_pgbench_insert
	bench_aggregates

	build_table
	t_end=$(date +%s)
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	result_file="$OUT_DIR/results-$stamp.txt"
	{
		echo "chronicle_raft bench_streams: heap vs stream  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, commit $(git_head))"
		echo "ROWS=$ROWS (aggregate set: $((2 * ROWS)) events)  ROWS_INSERT=$ROWS_INSERT  pgbench: ${PGBENCH_CLIENTS} clients, ${SECONDS_PGBENCH}s  queries: ${SECONDS_QUERY}s each, median latency"
		echo "ratio: s/h = stream/heap (higher is better for throughput, lower for size); h/s = heap/stream = speedup of the stream"
		echo
		format_table
		echo
		echo "BRIN index: $(awk -v v="${R[brin_bytes]}" 'BEGIN{printf "%.0f kB", v/1024}'), built in $(awk -v v="${R[brin_s]}" 'BEGIN{printf "%.1f s", v}'); stream pages read per aggregate: 3min ${R[range_pages_3min]}, 2h ${R[range_pages_2h]}, all ${R[range_pages_all]}"
		echo "COPY rows/s per repetition: heap ${R[copy_all_heap]}; stream ${R[copy_all_stream]}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+;?$/) { t = ($i ~ /;$/) ? ";" : ""; sub(/;$/, "", $i); $i = sprintf("%.0f%s", $i, t) } print }'
		echo "COPY seconds per repetition, statement+COMMIT: heap${R[copy_split_heap]}; stream${R[copy_split_stream]}"
		echo "1-row INSERT tps per round: heap ${R[pgb_all_heap]}; stream ${R[pgb_all_stream]}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+;?$/) { t = ($i ~ /;$/) ? ";" : ""; sub(/;$/, "", $i); $i = sprintf("%.0f%s", $i, t) } print }'
		echo "1-row INSERT into the stream: ${R[pgb_ooo]} of ${R[pgb_rows_stream]} events arrived out of time order (committed after a newer event)"
		echo "runtime: $((t_end - t_start)) s; load average at start: ${R[load_start]}, at end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
		print_notes
	} >"$result_file"
	publish_results "$result_file" results-latest.txt
}

main "$@"
