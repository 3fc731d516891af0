#!/usr/bin/env bash
# bench/bench_catchup.sh - catch-up of a new node by Raft snapshot: a 3-node
# chronicle_raft cluster on private, temporary PostgreSQL 15 servers is
# loaded with ROWS events, then a fourth server joins (add_node) while one
# client keeps inserting; measures how fast it installs the snapshot and
# catches up, the snapshot's size, and the Raft log size of every node
# during and after the load against chronicle_raft.max_log_size.
#
#   bash bench/bench_catchup.sh                     # default: ROWS=10000000, ~1.5-2 min
#   ROWS=2000000 INSERT_SECONDS=20 bash bench/bench_catchup.sh   # quick run
#
# See bench/README.md ("bench_catchup.sh").  This is a benchmark, not a
# test: it exits 0 even when a target is missed (non-zero only when a step
# fails).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO_DIR=$(dirname "$SCRIPT_DIR")
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- settings
: "${ROWS:=10000000}"            # events loaded before the fourth node joins
: "${LOAD_CHUNK:=1000000}"       # events per copyload run (the log sizes are sampled between)
: "${COPY_BATCH:=100000}"        # events per COPY statement (= per transaction)
: "${COPY_CLIENTS:=2}"           # copyload clients
: "${MAX_LOG_SIZE:=64MB}"        # chronicle_raft.max_log_size
: "${INSERT_SECONDS:=60}"        # the inserting client runs this long (from just before add_node)
: "${INSERT_ROWS:=100}"          # events per INSERT of that client
: "${CATCHUP_LIMIT:=600}"        # give up waiting for the catch-up after this many seconds
: "${SAMPLE_INTERVAL:=0.5}"      # seconds between Raft log size samples
: "${ELECTION_TIMEOUT:=1000}"    # chronicle_raft.election_timeout (ms)
: "${HEARTBEAT_INTERVAL:=100}"   # chronicle_raft.heartbeat_interval (ms)
: "${CHRONICLE_CONF:=}"          # extra lines for every node's postgresql.conf
: "${STEP_TIMEOUT:=900}"         # upper bound (s) for any single step/statement
: "${SHARED_BUFFERS:=1GB}"       # per server; four servers run at once
: "${PGBIN:=/usr/lib/postgresql/15/bin}"
: "${OUT_DIR:=$SCRIPT_DIR/out}"
: "${PORT_BASE:=56320}"          # ports are picked from PORT_BASE .. PORT_BASE+199
: "${KEEP_DATA:=0}"              # 1: keep the data directories

FORWARDED_VARS=(ROWS LOAD_CHUNK COPY_BATCH COPY_CLIENTS MAX_LOG_SIZE INSERT_SECONDS INSERT_ROWS
	CATCHUP_LIMIT SAMPLE_INTERVAL ELECTION_TIMEOUT HEARTBEAT_INTERVAL CHRONICLE_CONF STEP_TIMEOUT
	SHARED_BUFFERS PGBIN OUT_DIR PORT_BASE KEEP_DATA)

# ---------------------------------------------------------------- re-exec
reexec_as_postgres "$@"

# ---------------------------------------------------------------- helpers
RUN_DIR=""
LOG=/dev/null
declare -A R=()          # measured results, by key
declare -A RAFT_PORT=()  # chronicle node id -> Raft port
NOTES=()
CHR=(c1 c2 c3)           # the initial members; node id = index + 1
SAMPLER_PID=""
INSERTER_PID=""

secs_since() { calc "($(now_ns) - $1) / 1e9"; }
fmt_s() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
fmt_mb() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1048576 }'; }

# bytes of a size setting such as 64MB / 512kB / 1GB
size_bytes() {
	awk -v s="$1" 'BEGIN {
		n = s + 0; u = s; sub(/^[0-9.]+ */, "", u); u = toupper(u)
		m = 1024  # a bare number is in kB, as PostgreSQL reads it
		if (u == "B") m = 1; else if (u == "KB") m = 1024; else if (u == "MB") m = 1048576
		else if (u == "GB") m = 1073741824; else if (u == "TB") m = 1099511627776
		printf "%.0f", n * m }'
}

# Stop a background job of ours by its PID (only if it still is our child).
stop_job() {
	local pid=$1
	[[ -n $pid ]] || return 0
	if kill -0 "$pid" 2>/dev/null && [[ $(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ') == "$$" ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}

# Stop the background jobs and every server we started, then remove the
# data unless asked to keep it.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -n $RUN_DIR ]] && touch "$RUN_DIR/sampler.stop" 2>/dev/null
	stop_job "$INSERTER_PID"
	stop_job "$SAMPLER_PID"
	stop_servers
	if [[ -n $RUN_DIR && $KEEP_DATA != 1 ]]; then
		remove_server_data
		rm -f "$RUN_DIR"/ins.* "$RUN_DIR/copyload"
	fi
	[[ -n $RUN_DIR ]] && log "logs kept in $RUN_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# a short query for polling: bounded, never fatal (prints nothing on error)
poll_n() {
	timeout 30 "$PGBIN/psql" -X -q -At -h "$RUN_DIR" -p "${PORT[$1]}" -d postgres -c "$2" 2>/dev/null || true
}

# Events of a stream on a node (from its meta page: cheap); -1 if absent.
events_in() { sql_n "$1" "SELECT coalesce((SELECT events FROM chronicle.streams WHERE stream = to_regclass('$2')), -1)"; }

# Sum of the Raft log segments ($PGDATA/chronicle_raft/*.seg) of a node
# (data directories are $RUN_DIR/<name>; 0 before initdb).
log_bytes() {
	local dir=$RUN_DIR/$1/chronicle_raft
	[[ -d $dir ]] || { echo 0; return; }
	find "$dir" -maxdepth 1 -name '*.seg' -printf '%s\n' 2>/dev/null | awk '{ t += $1 } END { printf "%.0f", t }'
}
snap_bytes() {
	local dir=${DATA[$1]}/chronicle_raft_snapshots
	[[ -d $dir ]] || { echo 0; return; }
	find "$dir" -maxdepth 1 -type f -printf '%s\n' 2>/dev/null | awk '{ t += $1 } END { printf "%.0f", t }'
}

# ---------------------------------------------------------------- servers
# chronicle_raft settings of node ID of this cluster, with the log bound
node_conf() {
	chronicle_conf "$1" "${R[members]}" "$SECRET" "chronicle_raft.max_log_size = '$MAX_LOG_SIZE'"
}

setup_cluster() {
	local i name members=""
	for i in 1 2 3 4; do
		pick_port
		RAFT_PORT[$i]=$PICKED
	done
	for i in 1 2 3; do
		members+="${members:+,}$i=127.0.0.1:${RAFT_PORT[$i]}"
	done
	R[members]=$members
	SECRET=$(head -c 18 /dev/urandom | base64)
	for i in 1 2 3; do
		name=c$i
		init_server "$name"
		node_conf "$i" >>"${DATA[$name]}/postgresql.conf"
	done
	for name in "${CHR[@]}"; do start_server "$name"; done
	LEADER=$(wait_leader "${CHR[@]}") || die "the chronicle nodes elected no leader in 60 s"
	log "leader: $LEADER"
	R[settings]=$(chronicle_settings "$LEADER")
	psql_n "$LEADER" -c "CREATE TABLE events (ts timestamptz NOT NULL, sensor_id int4, value float8) USING chronicle" >>"$LOG" 2>&1
	psql_n "$LEADER" -c "CREATE TABLE live (ts timestamptz NOT NULL, sensor_id int4, value float8) USING chronicle" >>"$LOG" 2>&1
	for name in "${CHR[@]}"; do
		must_wait 60 "both streams exist on $name" \
			"[[ \$(sql_n $name \"SELECT count(*) FROM chronicle.cluster_streams\") == 2 ]]"
	done
}

# ---------------------------------------------------------------- sampler
# Every SAMPLE_INTERVAL s, one line: phase, then the Raft log bytes of c1..c4
# (0 for a node not started yet).  Stops on $RUN_DIR/sampler.stop, or after
# STEP_TIMEOUT + CATCHUP_LIMIT + INSERT_SECONDS seconds at the latest.
set_phase() { echo "$1" >"$RUN_DIR/phase"; }

sampler() {
	local end=$(($(date +%s) + STEP_TIMEOUT + CATCHUP_LIMIT + INSERT_SECONDS + 120)) line name
	trap - EXIT INT TERM
	while [[ ! -e $RUN_DIR/sampler.stop ]] && (($(date +%s) < end)); do
		line=$(cat "$RUN_DIR/phase" 2>/dev/null || echo "?")
		for name in c1 c2 c3 c4; do
			line+=" $(log_bytes "$name")"
		done
		echo "$line" >>"$RUN_DIR/logsize.samples"
		sleep "$SAMPLE_INTERVAL"
	done
}

# max of node column (c1 = 1 .. c4 = 4) over the samples of a phase
sample_max() {
	awk -v p="$1" -v c="$(($2 + 1))" '$1 == p && $c > m { m = $c } END { printf "%.0f", m + 0 }' "$RUN_DIR/logsize.samples"
}

# ---------------------------------------------------------------- load
load() {
	local first=0 n out rps name t0 chunk=0 sizes
	set_phase load
	t0=$(now_ns)
	while ((first < ROWS)); do
		n=$((ROWS - first < LOAD_CHUNK ? ROWS - first : LOAD_CHUNK))
		chunk=$((chunk + 1))
		out=$("$RUN_DIR/copyload" -d "host=$RUN_DIR port=${PORT[$LEADER]} dbname=postgres" -t events \
			-n "$n" -f "$first" -c "$COPY_CLIENTS" -b "$COPY_BATCH" -T "$STEP_TIMEOUT" 2>>"$LOG") \
			|| die "copyload into events failed (see $LOG and $RUN_DIR/$LEADER.log)"
		rps=$(sed -n 's/.*rows_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
		first=$((first + n))
		sizes=""
		for name in "${CHR[@]}"; do sizes+=" $name=$(fmt_mb "$(log_bytes "$name")")MB"; done
		log "chunk $chunk: $first/$ROWS events loaded ($(fmt_int "$rps") rows/s); Raft logs:$sizes"
		echo "$first:$sizes" >>"$RUN_DIR/logsize.chunks"
	done
	R[load_s]=$(secs_since "$t0")
	for name in "${CHR[@]}"; do
		must_wait 300 "$name holds the $ROWS events" "[[ \$(events_in $name events) == $ROWS ]]"
	done
	R[load_rps]=$(calc "$ROWS / ${R[load_s]}")
	log "loaded $ROWS events in $(fmt_s "${R[load_s]}") s ($(fmt_int "${R[load_rps]}") events/s, on every node)"
	set_phase idle
	for name in "${CHR[@]}"; do R[log_end_load_$name]=$(log_bytes "$name"); done
	# compaction may still be on its way: give it a few seconds
	sleep 3
	for name in "${CHR[@]}"; do R[log_settled_$name]=$(log_bytes "$name"); done
}

# ---------------------------------------------------------------- catch-up
catchup() {
	local off t_add lead_commit applied lead_total total line deadline written name voting
	local t_inst="" t_rows="" t_equal="" t_applied="" t_voter="" t_caught=""
	init_server c4
	node_conf 4 >>"${DATA[c4]}/postgresql.conf"
	cat >>"${DATA[c4]}/postgresql.conf" <<EOF
chronicle_raft.initial_cluster_state = existing
chronicle_raft.listen_address = '127.0.0.1:${RAFT_PORT[4]}'
EOF
	start_server c4
	for name in "${CHR[@]}"; do R[off_$name]=$(stat -c %s "$RUN_DIR/$name.log"); done
	LEADER=$(wait_leader "${CHR[@]}") || die "no leader before add_node"

	# one client inserts INSERT_ROWS events per transaction into "live" on
	# the leader for INSERT_SECONDS (pgbench -T bounds it)
	cat >"$RUN_DIR/insert.sql" <<EOF
\set s random(0, 999)
INSERT INTO live SELECT clock_timestamp(), :s, g FROM generate_series(1, $INSERT_ROWS) g;
EOF
	timeout $((INSERT_SECONDS + 60)) "$PGBIN/pgbench" -n -c 1 -j 1 -T "$INSERT_SECONDS" -f "$RUN_DIR/insert.sql" \
		-l --log-prefix="$RUN_DIR/ins" -h "$RUN_DIR" -p "${PORT[$LEADER]}" postgres >"$RUN_DIR/inserter.out" 2>&1 &
	INSERTER_PID=$!
	sleep 1
	R[live_before]=$(events_in "$LEADER" live)

	set_phase catchup
	log "add_node(4) on $LEADER while the client inserts"
	t_add=$(now_ns)
	sql_n "$LEADER" "SELECT chronicle.add_node(4, '127.0.0.1:${RAFT_PORT[4]}')" >>"$LOG" 2>&1 \
		|| die "add_node failed (see $LOG)"
	R[add_call_s]=$(secs_since "$t_add")

	deadline=$(($(date +%s) + CATCHUP_LIMIT))
	while (($(date +%s) < deadline)); do
		if [[ -z $t_inst ]] && line=$(grep -m 1 'chronicle_raft: installed snapshot at index' "$RUN_DIR/c4.log"); then
			# the time the server logged it (log_line_prefix %m), not when we saw it
			t_inst=$(calc "($(date -d "$(cut -d ' ' -f 1-3 <<<"$line")" +%s%N) - $t_add) / 1e9")
			R[inst_line]=$(grep -o 'installed snapshot at index [0-9]*: [0-9]* streams, [0-9]* bytes[^"]*' <<<"$line")
			log "c4: ${R[inst_line]} (logged ${t_inst} s after add_node)"
		fi
		if [[ -z $t_rows ]] && [[ $(poll_n c4 "SELECT coalesce((SELECT events FROM chronicle.streams WHERE stream = to_regclass('events')), -1)") == "$ROWS" ]]; then
			t_rows=$(secs_since "$t_add")
			R[total_at_rows]=$(poll_n c4 "SELECT sum(events) FROM chronicle.streams")
			log "c4 holds the $ROWS events ${t_rows} s after add_node (${R[total_at_rows]} events in all)"
		fi
		if [[ -n $t_rows && -z $t_equal ]]; then
			lead_total=$(poll_n "$LEADER" "SELECT sum(events) FROM chronicle.streams")
			total=$(poll_n c4 "SELECT sum(events) FROM chronicle.streams")
			if [[ -n $lead_total && -n $total ]] && ((total >= lead_total)); then
				t_equal=$(secs_since "$t_add")
				log "c4 holds as many events as the leader ($total) ${t_equal} s after add_node"
			fi
		fi
		if [[ -n $t_rows && -z $t_applied ]]; then
			lead_commit=$(poll_n "$LEADER" "SELECT commit_index FROM chronicle.status()")
			applied=$(poll_n c4 "SELECT applied_index FROM chronicle.status()")
			if [[ -n $lead_commit && -n $applied ]] && ((applied >= lead_commit)); then
				t_applied=$(secs_since "$t_add")
				log "c4 applied index $applied >= leader's commit index $lead_commit ${t_applied} s after add_node"
			fi
		fi
		if [[ -z $t_voter ]]; then
			voting=$(poll_n "$LEADER" "SELECT voting FROM chronicle.nodes WHERE node_id = 4")
			if [[ $voting == t ]]; then
				t_voter=$(secs_since "$t_add")
				log "c4 is a voter ${t_voter} s after add_node"
			fi
		fi
		[[ -n $t_inst && -n $t_rows && -n $t_equal && -n $t_applied && -n $t_voter ]] && break
		# caught up from the log alone (the log still held everything): no snapshot
		# will come.  The install's log line follows its commit by a moment, so
		# give it 2 s before concluding that.
		if [[ -z $t_inst && -n $t_equal && -n $t_applied && -n $t_voter ]]; then
			[[ -n $t_caught ]] || t_caught=$(date +%s)
			if (($(date +%s) - t_caught >= 2)); then
				note "c4 caught up from the Raft log without a snapshot (the log still held every entry; load more than max_log_size)"
				break
			fi
		fi
		sleep 0.1
	done
	R[t_inst]=$t_inst
	R[t_rows]=$t_rows
	R[t_equal]=$t_equal
	R[t_applied]=$t_applied
	R[t_voter]=$t_voter
	[[ -n $t_rows ]] || note "c4 did not hold the $ROWS events within ${CATCHUP_LIMIT}s of add_node"
	[[ -n $t_inst ]] || note "no 'installed snapshot' line in c4's log within ${CATCHUP_LIMIT}s"
	[[ -n $t_voter ]] || note "c4 was not a voter within ${CATCHUP_LIMIT}s of add_node"
	set_phase after_catchup

	# the snapshots the leader(s) wrote since the node was added
	written=""
	R[n_written]=0
	for name in "${CHR[@]}"; do
		off=${R[off_$name]}
		tail -c +"$((off + 1))" "$RUN_DIR/$name.log" | grep -o 'snapshot at index [0-9]* written: [^"]*' >"$RUN_DIR/written.$name" || true
		R[n_written]=$((R[n_written] + $(wc -l <"$RUN_DIR/written.$name")))
		line=$(tail -n 1 "$RUN_DIR/written.$name")
		[[ -n $line ]] && written+="${written:+; }$name: $line"
	done
	R[written]=${written:-none}
	R[written_idx]=$(cat "$RUN_DIR"/written.c? | sed -n 's/snapshot at index \([0-9]*\) written: [0-9]* streams, \([0-9]*\) bytes in \([0-9]*\) ms.*/\1 (\3 ms)/p' | paste -sd ',' | sed 's/,/, /g')
	log "snapshots written: ${R[n_written]}; last: ${R[written]}"

	log "waiting for the inserting client (at most ${INSERT_SECONDS}s from its start)"
	wait "$INSERTER_PID" || note "the inserting client (pgbench) failed: $(tail -n 3 "$RUN_DIR/inserter.out" | tr '\n' ' ')"
	INSERTER_PID=""
	cat "$RUN_DIR/inserter.out" >>"$LOG"
	R[ins_txn]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$RUN_DIR/inserter.out")
	R[ins_failed]=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$RUN_DIR/inserter.out")
	R[ins_p50]=$(latency_pct 50 1 "$RUN_DIR"/ins.*)
	R[ins_p99]=$(latency_pct 99 1 "$RUN_DIR"/ins.*)
	R[ins_max]=$(latency_pct 100 1 "$RUN_DIR"/ins.*)
	set_phase end
}

# Every node ends with the same events (aggregates over both streams).
verify() {
	local name want got agg_want n ok=1
	local -a all=(c1 c2 c3 c4)
	want=$(events_in "$LEADER" live)
	for name in "${all[@]}"; do
		wait_until 120 "$name holds the $want events of live" "[[ \$(events_in $name live) == $want ]]" || ok=0
	done
	agg_want=$(sql_n "$LEADER" "SELECT a::text || ' ' || b::text FROM chronicle.aggregate('events', 'value', NULL::timestamptz, NULL::timestamptz) a, chronicle.aggregate('live', 'value', NULL::timestamptz, NULL::timestamptz) b")
	for name in "${all[@]}"; do
		got=$(sql_n "$name" "SELECT a::text || ' ' || b::text FROM chronicle.aggregate('events', 'value', NULL::timestamptz, NULL::timestamptz) a, chronicle.aggregate('live', 'value', NULL::timestamptz, NULL::timestamptz) b")
		if [[ $got != "$agg_want" ]]; then
			ok=0
			note "$name differs from the leader: $got vs $agg_want"
		fi
	done
	n=$(sql_n c4 "SELECT count(*) FROM events")
	[[ $n == "$ROWS" ]] || { ok=0; note "c4: count(*) of events is $n, expected $ROWS"; }
	R[verify]=$ok
	R[live_events]=$want
	for name in "${all[@]}"; do
		R[log_final_$name]=$(log_bytes "$name")
		R[snap_final_$name]=$(snap_bytes "$name")
	done
}

# ---------------------------------------------------------------- report
build_table() {
	local bound rate name i bytes idx streams ms mx
	bound=$(size_bytes "$MAX_LOG_SIZE")
	row "metric" "value" "target" "result"
	row "load: $ROWS events by COPY ($COPY_CLIENTS clients, $COPY_BATCH per txn), events/s" "$(fmt_int "${R[load_rps]}")" "info" "info"
	read -r idx streams bytes ms < <(sed -n 's/installed snapshot at index \([0-9]*\): \([0-9]*\) streams, \([0-9]*\) bytes in \([0-9]*\) ms.*/\1 \2 \3 \4/p' <<<"${R[inst_line]:-}") || true
	row "snapshot installed on c4: index / streams / install ms" "${idx:-?} / ${streams:-?} / ${ms:-?}" "info" "info"
	row "snapshots the leader wrote for this one catch-up" "${R[n_written]}" "1" "$(pass "${R[n_written]} == 1")"
	row "snapshot size, MB (bytes per event)" "$(fmt_mb "${bytes:-0}") ($(awk -v b="${bytes:-0}" -v n="$ROWS" 'BEGIN { printf "%.1f", b / n }'))" "info" "info"
	row "add_node -> snapshot installed on c4, s" "${R[t_inst]:+$(fmt_s "${R[t_inst]}")}" "printed" "info"
	row "add_node -> c4 holds all $ROWS events, s" "${R[t_rows]:+$(fmt_s "${R[t_rows]}")}" "printed" "info"
	if [[ -n ${R[t_rows]} ]]; then
		rate=$(calc "${R[total_at_rows]:-$ROWS} / ${R[t_rows]}")
		row "catch-up rate: events on c4 / s since add_node" "$(fmt_int "$rate")" ">= 500000" "$(pass "$rate >= 500000")"
	else
		row "catch-up rate: events on c4 / s since add_node" "not caught up" ">= 500000" "MISS"
	fi
	row "add_node -> c4 holds as many events as the leader, s" "${R[t_equal]:+$(fmt_s "${R[t_equal]}")}" "printed" "info"
	row "add_node -> c4 applied index >= leader's commit index, s" "${R[t_applied]:+$(fmt_s "${R[t_applied]}")}" "printed" "info"
	row "add_node -> c4 is a voter, s" "${R[t_voter]:+$(fmt_s "${R[t_voter]}")}" "printed" "info"
	row "inserting client: txns ($INSERT_ROWS ev each) / failed" "${R[ins_txn]:-?} / ${R[ins_failed]:-0}" "0 failed" "$(pass "${R[ins_failed]:-0} == 0 && ${R[ins_txn]:-0} > 0")"
	row "inserting client commit latency p50 / p99 / max, ms" "${R[ins_p50]} / ${R[ins_p99]} / ${R[ins_max]}" "info" "info"
	row "all 4 nodes identical at the end (counts, aggregates)" "$([[ ${R[verify]} == 1 ]] && echo yes || echo no)" "yes" "$( [[ ${R[verify]} == 1 ]] && echo PASS || echo MISS)"
	for name in c1 c2 c3 c4; do
		i=${name#c}
		mx=0
		if [[ $name != c4 ]]; then
			mx=$(sample_max load "$i")
			row "Raft log $name, MB: max during load / end of load / +3 s" \
				"$(fmt_mb "$mx") / $(fmt_mb "${R[log_end_load_$name]}") / $(fmt_mb "${R[log_settled_$name]}")" \
				"<= $MAX_LOG_SIZE" "$(pass "$mx <= $bound")"
		fi
		mx=$(sample_max catchup "$i")
		row "Raft log $name, MB: max during catch-up / at the end" \
			"$(fmt_mb "$mx") / $(fmt_mb "${R[log_final_$name]}")" "<= $MAX_LOG_SIZE" \
			"$(pass "$mx <= $bound && ${R[log_final_$name]} <= $bound")"
	done
}

# ---------------------------------------------------------------- main
main() {
	local t_start t_end stamp result_file name
	t_start=$(date +%s)
	R[load_start]=$(cut -d ' ' -f 1-3 /proc/loadavg)
	R[so_start]=$(so_fingerprint)
	[[ -x $PGBIN/initdb && -x $PGBIN/pgbench ]] || die "no PostgreSQL binaries in $PGBIN"
	[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 1000 ]] || die "ROWS must be an integer >= 1000"
	[[ $LOAD_CHUNK =~ ^[0-9]+$ && $LOAD_CHUNK -ge 1000 ]] || die "LOAD_CHUNK must be an integer >= 1000"
	[[ $COPY_BATCH =~ ^[0-9]+$ && $COPY_BATCH -ge 1 ]] || die "COPY_BATCH must be a positive integer"
	[[ $COPY_CLIENTS =~ ^[0-9]+$ && $COPY_CLIENTS -ge 1 && $COPY_CLIENTS -le 64 ]] || die "COPY_CLIENTS must be 1..64"
	[[ $INSERT_SECONDS =~ ^[0-9]+$ && $INSERT_SECONDS -ge 1 ]] || die "INSERT_SECONDS must be a positive integer"
	[[ $INSERT_ROWS =~ ^[0-9]+$ && $INSERT_ROWS -ge 1 ]] || die "INSERT_ROWS must be a positive integer"
	[[ $CATCHUP_LIMIT =~ ^[0-9]+$ && $CATCHUP_LIMIT -ge 1 ]] || die "CATCHUP_LIMIT must be a positive integer"
	[[ $MAX_LOG_SIZE =~ ^[0-9]+\ *(B|kB|MB|GB|TB)?$ ]] || die "MAX_LOG_SIZE must be a size such as 64MB"
	mkdir -p "$OUT_DIR"
	RUN_DIR=$(mktemp -d "$OUT_DIR/catchup.XXXXXX")
	LOG="$RUN_DIR/bench.log"
	log "run directory $RUN_DIR; ROWS=$ROWS MAX_LOG_SIZE=$MAX_LOG_SIZE INSERT_SECONDS=$INSERT_SECONDS; load average ${R[load_start]}"

	build_copyload

	setup_cluster
	set_phase setup
	sampler &
	SAMPLER_PID=$!

	load
	catchup
	verify
	touch "$RUN_DIR/sampler.stop"
	stop_job "$SAMPLER_PID"
	SAMPLER_PID=""
	R[so_end]=$(so_fingerprint)
	[[ ${R[so_end]} == "${R[so_start]}" ]] \
		|| note "chronicle_raft.so was reinstalled during the run (${R[so_start]} -> ${R[so_end]})"
	note_busy_start

	build_table
	t_end=$(date +%s)
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	result_file="$OUT_DIR/catchup-results-$stamp.txt"
	{
		echo "chronicle_raft bench_catchup: a fourth node catches up by snapshot  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, commit $(git_head))"
		echo "3 nodes loaded with $ROWS events (ts timestamptz, sensor_id int4, value float8) by copyload; then add_node(4) while pgbench -c 1 inserts $INSERT_ROWS events per transaction into another stream on the leader for ${INSERT_SECONDS}s"
		echo "chronicle: ${R[settings]}"
		echo "chronicle_raft.so: md5 ${R[so_start]} (the library may hold uncommitted work)"
		echo
		format_table
		echo
		echo "snapshot written (leader): ${R[written]}"
		echo "snapshots written since add_node (index (write ms)): ${R[written_idx]:-none}"
		echo "snapshot installed (c4): ${R[inst_line]:-none}"
		echo "snapshot files at the end, MB: c1 $(fmt_mb "${R[snap_final_c1]}"), c2 $(fmt_mb "${R[snap_final_c2]}"), c3 $(fmt_mb "${R[snap_final_c3]}"), c4 $(fmt_mb "${R[snap_final_c4]}")"
		echo "events on c4 when it first held all $ROWS: ${R[total_at_rows]:-?} (both streams); live stream at the end: ${R[live_events]} events (${R[live_before]} before add_node)"
		echo "Raft log after each load chunk (events loaded: sizes): $(paste -sd ';' "$RUN_DIR/logsize.chunks" | sed 's/;/; /g')"
		echo "add_node() returned after $(fmt_s "${R[add_call_s]}") s; Raft log bound: chronicle_raft.max_log_size = $MAX_LOG_SIZE ($(size_bytes "$MAX_LOG_SIZE") bytes)"
		echo "runtime: $((t_end - t_start)) s; load average at start: ${R[load_start]}, at end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
		print_notes
	} >"$result_file"
	publish_results "$result_file" catchup-results-latest.txt
}

main "$@"
