#!/usr/bin/env bash
# bench/bench_cluster.sh - replicated streams: a 3-node chronicle_raft cluster
# against PostgreSQL heap tables on a primary with two synchronous standbys,
# all on private, temporary PostgreSQL 15 servers on this machine.
#
#   bash bench/bench_cluster.sh                        # default: ROWS=2000000, ~5 min
#   ROWS=200000 SECONDS_PGBENCH=6 COPY_REPEAT=1 FAILOVER_ROUNDS=2 \
#       bash bench/bench_cluster.sh                    # quick run, under a minute
#
# See bench/README.md ("bench_cluster.sh") for what is measured, the knobs
# and the caveats.  This is a benchmark, not a test: it exits 0 even when a
# target is missed (non-zero only when something actually fails).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO_DIR=$(dirname "$SCRIPT_DIR")
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- settings
: "${ROWS:=2000000}"             # events per COPY run
: "${COPY_BATCH:=100000}"        # events per COPY statement (= per transaction)
: "${COPY_CLIENTS:=4}"           # clients of the parallel COPY runs
: "${COPY_REPEAT:=5}"            # COPY runs per system and client count (median)
: "${COPY_WARMUP:=1}"            # untimed COPY runs per system and client count first
: "${SECONDS_PGBENCH:=60}"       # single-row INSERT seconds per target
: "${PGBENCH_ROUNDS:=3}"         # SECONDS_PGBENCH split into rounds, rotating order
: "${PGBENCH_CLIENTS:=8}"
: "${PGBENCH_JOBS:=2}"
: "${FAILOVER_ROUNDS:=5}"
: "${FAILOVER_LIMIT:=60}"        # give up on one failover after this many seconds
: "${PROBE_TIMEOUT_MS:=1000}"    # client-side bound (cancel) of each failover probe INSERT
: "${ELECTION_TIMEOUT:=1000}"    # chronicle_raft.election_timeout (ms)
: "${HEARTBEAT_INTERVAL:=100}"   # chronicle_raft.heartbeat_interval (ms)
: "${CHRONICLE_CONF:=}"          # extra lines for the chronicle nodes' postgresql.conf
: "${STEP_TIMEOUT:=900}"         # upper bound (s) for any single step/statement
: "${SHARED_BUFFERS:=512MB}"     # per server; seven servers run at once
: "${PGBIN:=/usr/lib/postgresql/15/bin}"
: "${OUT_DIR:=$SCRIPT_DIR/out}"
: "${PORT_BASE:=55320}"          # ports are picked from PORT_BASE .. PORT_BASE+199
: "${KEEP_DATA:=0}"              # 1: keep the data directories

FORWARDED_VARS=(ROWS COPY_BATCH COPY_CLIENTS COPY_REPEAT COPY_WARMUP SECONDS_PGBENCH PGBENCH_ROUNDS PGBENCH_CLIENTS
	PGBENCH_JOBS FAILOVER_ROUNDS FAILOVER_LIMIT PROBE_TIMEOUT_MS ELECTION_TIMEOUT HEARTBEAT_INTERVAL
	CHRONICLE_CONF STEP_TIMEOUT SHARED_BUFFERS PGBIN OUT_DIR PORT_BASE KEEP_DATA)

# ---------------------------------------------------------------- re-exec
reexec_as_postgres "$@"

# ---------------------------------------------------------------- helpers
RUN_DIR=""
LOG=/dev/null
CLK_TCK=$(getconf CLK_TCK)
declare -A R=()          # measured results, by key
declare -A RAFT_PORT=()  # chronicle node id -> Raft port
NOTES=()
CHR=(c1 c2 c3)           # the chronicle nodes; node id = index + 1

# Stop every server we started, then remove the data unless asked to keep it.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_servers
	if [[ -n $RUN_DIR && $KEEP_DATA != 1 ]]; then
		remove_server_data
		rm -f "$RUN_DIR"/lat_*
	fi
	[[ -n $RUN_DIR ]] && log "logs kept in $RUN_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the peer
# Primary "p0" with two streaming standbys s1, s2 from pg_basebackup -R;
# the primary waits for ANY 1 of them to flush each commit.
setup_peer() {
	local s
	init_server p0
	cat >>"${DATA[p0]}/postgresql.conf" <<EOF
wal_level = replica
max_wal_senders = 10
synchronous_standby_names = 'ANY 1 (s1, s2)'
EOF
	start_server p0
	for s in s1 s2; do
		register_server "$s"
		log "pg_basebackup -R for standby $s"
		timeout "$STEP_TIMEOUT" "$PGBIN/pg_basebackup" -D "${DATA[$s]}" -R -X stream -c fast \
			-d "host=127.0.0.1 port=${PORT[p0]} user=postgres application_name=$s" >>"$LOG" 2>&1 \
			|| die "pg_basebackup for $s failed"
		grep -q "application_name=$s" "${DATA[$s]}/postgresql.auto.conf" \
			|| die "primary_conninfo of $s has no application_name=$s"
		cat >>"${DATA[$s]}/postgresql.conf" <<EOF
# ---- standby $s ----
port = ${PORT[$s]}
hot_standby = on
EOF
		start_server "$s"
	done
	must_wait 60 "both standbys stream synchronously (quorum)" \
		"[[ \$(sql_n p0 \"SELECT count(*) FROM pg_stat_replication WHERE application_name IN ('s1', 's2') AND state = 'streaming' AND sync_state = 'quorum'\") == 2 ]]"
	sql_n p0 "SELECT application_name, state, sync_state FROM pg_stat_replication" >>"$LOG"
}

# ---------------------------------------------------------------- chronicle
setup_chronicle() {
	local i name members="" secret
	for i in 1 2 3; do
		pick_port
		RAFT_PORT[$i]=$PICKED
		members+="${members:+,}$i=127.0.0.1:${RAFT_PORT[$i]}"
	done
	secret=$(head -c 18 /dev/urandom | base64)
	for i in 1 2 3; do
		name=c$i
		init_server "$name"
		chronicle_conf "$i" "$members" "$secret" >>"${DATA[$name]}/postgresql.conf"
	done
	for name in "${CHR[@]}"; do start_server "$name"; done
	R[raft_members]=$members
	LEADER=$(wait_leader "${CHR[@]}") || die "the chronicle nodes elected no leader in 60 s"
	log "chronicle leader: $LEADER"
	for name in "${CHR[@]}"; do
		R[chr_settings]=$(chronicle_settings "$name")
	done
}

# The single-node chronicle server (no initial_cluster: a cluster of one).
setup_single() {
	init_server single
	echo "shared_preload_libraries = 'chronicle_raft'" >>"${DATA[single]}/postgresql.conf"
	start_server single
	psql_n single -c "CREATE EXTENSION chronicle_raft" >>"$LOG"
}

status_of() { sql_n "$1" "SELECT role, term, coalesce(leader_id, 0), commit_index, applied_index FROM chronicle.status()"; }

# Create a fresh table on a system: "peer" (heap on the primary), "chr"
# (stream, created on the leader; replicated DDL, waits until it is on
# every node) or "single" (stream).
fresh_table() {
	local sys=$1 tbl=$2 name
	case $sys in
		peer)
			psql_n p0 -c "DROP TABLE IF EXISTS $tbl" -c "CREATE TABLE $tbl (ts timestamptz NOT NULL, sensor_id int4, value float8)" >>"$LOG" 2>&1 ;;
		chr)
			psql_n "$LEADER" -c "DROP TABLE IF EXISTS $tbl" >>"$LOG" 2>&1
			psql_n "$LEADER" -c "CREATE TABLE $tbl (ts timestamptz NOT NULL, sensor_id int4, value float8) USING chronicle" >>"$LOG" 2>&1
			for name in "${CHR[@]}"; do
				must_wait 60 "stream $tbl exists on $name" \
					"[[ \$(sql_n $name \"SELECT count(*) FROM chronicle.streams WHERE stream = to_regclass('$tbl')\") == 1 ]]"
			done ;;
		single)
			psql_n single -c "DROP TABLE IF EXISTS $tbl" -c "CREATE TABLE $tbl (ts timestamptz NOT NULL, sensor_id int4, value float8) USING chronicle" >>"$LOG" 2>&1 ;;
	esac
}

# Every timed step starts without dirty buffers of an earlier step.
checkpoint_sys() {
	local name
	case $1 in
		peer) for name in p0 s1 s2; do psql_n "$name" -c "CHECKPOINT" >>"$LOG" 2>&1; done ;;
		chr) for name in "${CHR[@]}"; do psql_n "$name" -c "CHECKPOINT" >>"$LOG" 2>&1; done ;;
		single) psql_n single -c "CHECKPOINT" >>"$LOG" 2>&1 ;;
	esac
}

# Events in a table on one server (streams: from chronicle.streams).
events_in() {
	case $1 in
		p0 | s1 | s2) sql_n "$1" "SELECT count(*) FROM $2" ;;
		*) sql_n "$1" "SELECT coalesce((SELECT events FROM chronicle.streams WHERE stream = to_regclass('$2')), -1)" ;;
	esac
}

# ---------------------------------------------------------------- COPY
# CPU time (clock ticks) of one server: its postmaster, the children it
# reaped (cutime/cstime) and its live children.  Deltas around a step give
# the server's CPU for the step (a child that exits in between moves from
# the live sum to cutime with its whole time).
server_ticks() {
	local pid kids
	pid=$(postmaster_pid "$1") || { echo 0; return; }
	kids=$(ps -o pid= --ppid "$pid" | tr -s ' \n' ' ')
	# shellcheck disable=SC2086
	(cat "/proc/$pid/stat"; for k in $kids; do cat "/proc/$k/stat" 2>/dev/null | sed 's/^/child /'; done) |
		awk '{ child = ($1 == "child"); sub(/^.*\) /, ""); t += $12 + $13; if (!child) t += $14 + $15 } END { print t + 0 }'
}
system_ticks() {
	local name t=0
	case $1 in
		peer) for name in p0 s1 s2; do t=$((t + $(server_ticks "$name"))); done ;;
		chr) for name in "${CHR[@]}"; do t=$((t + $(server_ticks "$name"))); done ;;
		single) t=$(server_ticks single) ;;
	esac
	echo "$t"
}

# One COPY run: copyload with CLIENTS clients against the system's write
# node; sets COPY_RPS (rows/s).  Checks the count, and for the cluster how long the
# other nodes took to hold every event after the last COPY returned.  A
# warm-up run (rep "warm-up") records nothing.
copy_run() {
	local sys=$1 clients=$2 rep=$3 tbl target out rps t0 name lag ticks0 cpu secs
	tbl="copy_${sys}_$clients"
	case $sys in peer) target=p0 ;; chr) target=$LEADER ;; single) target=single ;; esac
	fresh_table "$sys" "$tbl"
	checkpoint_sys "$sys"
	log "COPY $ROWS events into $sys ($target), $clients client(s), $COPY_BATCH per transaction (repetition $rep/$COPY_REPEAT)"
	ticks0=$(system_ticks "$sys")
	out=$("$RUN_DIR/copyload" -d "host=$RUN_DIR port=${PORT[$target]} dbname=postgres" -t "$tbl" \
		-n "$ROWS" -c "$clients" -b "$COPY_BATCH" -T "$STEP_TIMEOUT" 2>>"$LOG") \
		|| die "copyload into $sys/$tbl failed (see $LOG and $RUN_DIR/$target.log)"
	t0=$(now_ns)
	log "  $out"
	rps=$(sed -n 's/.*rows_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
	if [[ $rep == warm-up ]]; then
		[[ $(events_in "$target" "$tbl") == "$ROWS" ]] || note "$sys: warm-up $tbl holds $(events_in "$target" "$tbl") events, expected $ROWS"
		R[copy_warm_${sys}_$clients]="${R[copy_warm_${sys}_$clients]:-}$(printf '%.0f' "$rps") "
		if [[ $sys == chr ]]; then
			for name in "${CHR[@]}"; do
				must_wait 300 "$name holds the $ROWS events of $tbl" "[[ \$(events_in $name $tbl) == $ROWS ]]"
			done
		fi
		COPY_RPS=$rps
		return
	fi
	R[copy_cpu_max]=$(awk -v a="${R[copy_cpu_max]:-0}" -v b="$(sed -n 's/.*client_cpu_pct=\([0-9.]*\).*/\1/p' <<<"$out")" 'BEGIN { print (b > a) ? b : a }')
	R[copy_p50b_${sys}_$clients]="${R[copy_p50b_${sys}_$clients]:-}$(sed -n 's/.*batch_p50_ms=\([0-9.]*\).*/\1/p' <<<"$out") "
	[[ $(events_in "$target" "$tbl") == "$ROWS" ]] || note "$sys: $tbl holds $(events_in "$target" "$tbl") events on $target, expected $ROWS"
	if [[ $sys == chr ]]; then
		for name in "${CHR[@]}"; do
			must_wait 300 "$name holds the $ROWS events of $tbl" "[[ \$(events_in $name $tbl) == $ROWS ]]"
		done
		lag=$(calc "($(now_ns) - $t0) / 1e9")
		R[copy_lag_chr_$clients]="${R[copy_lag_chr_$clients]:-}$(awk -v v="$lag" 'BEGIN { printf "%.2f", v }') "
	elif [[ $sys == peer ]]; then
		# the standbys replay what they flushed; wait so that the next run
		# does not pay for this one's replay
		for name in s1 s2; do
			must_wait 120 "$name replayed $tbl" \
				"[[ \$(sql_n p0 \"SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) FROM pg_stat_replication WHERE application_name = '$name'\") == t ]]"
		done
	fi
	# server CPU of the whole system (all its servers) for this load, up to
	# every replica having it: microseconds per event, and how busy that kept
	# the box's cores during the COPY
	cpu=$(calc "($(system_ticks "$sys") - $ticks0) / $CLK_TCK")
	secs=$(calc "$ROWS / $rps")
	R[copy_cpu_${sys}_$clients]="${R[copy_cpu_${sys}_$clients]:-}$(calc "$cpu * 1e6 / $ROWS") "
	R[copy_busy_${sys}_$clients]="${R[copy_busy_${sys}_$clients]:-}$(calc "100 * $cpu / ($secs * $(nproc))") "
	log "  server CPU ${cpu}s for $sys ($(calc "$cpu * 1e6 / $ROWS") us/event)"
	COPY_RPS=$rps
}

bench_copy() {
	local rep clients sys i k
	local -a systems=(peer chr single) order
	for clients in 1 "$COPY_CLIENTS"; do
		local -a rps_peer=() rps_chr=() rps_single=()
		# every system's first runs create WAL and Raft log segments and
		# fill fresh caches (20-40% slower on this VM): untimed, for all
		for ((rep = 1; rep <= COPY_WARMUP; rep++)); do
			for sys in "${systems[@]}"; do
				copy_run "$sys" "$clients" warm-up
			done
		done
		for ((rep = 1; rep <= COPY_REPEAT; rep++)); do
			# rotate which system goes first
			order=()
			for ((i = 0; i < 3; i++)); do
				k=$(((i + rep - 1) % 3))
				order+=("${systems[$k]}")
			done
			for sys in "${order[@]}"; do
				copy_run "$sys" "$clients" "$rep"
				case $sys in
					peer) rps_peer+=("$COPY_RPS") ;;
					chr) rps_chr+=("$COPY_RPS") ;;
					single) rps_single+=("$COPY_RPS") ;;
				esac
			done
		done
		for sys in peer chr single; do
			local -n arr="rps_$sys"
			R[copy_${sys}_$clients]=$(median "${arr[@]}")
			R[copy_all_${sys}_$clients]="${arr[*]}"
			unset -n arr
		done
	done
}

# ---------------------------------------------------------------- pgbench
# 8 clients of one-row INSERT transactions against the peer's primary, the
# chronicle leader and a chronicle follower, SECONDS_PGBENCH each, split
# into PGBENCH_ROUNDS rounds in rotating order.
bench_pgbench() {
	local secs round i k tgt node out n
	local -a targets=(peer leader follower) order
	local -A tps=() txn=()
	local TIMEFORMAT='%U %S %R'
	secs=$(((SECONDS_PGBENCH + PGBENCH_ROUNDS - 1) / PGBENCH_ROUNDS))
	fresh_table peer pgb
	fresh_table chr pgb
	cat >"$RUN_DIR/pgb_insert.sql" <<EOF
\set sid random(1, 1000)
INSERT INTO pgb (ts, sensor_id, value) VALUES (clock_timestamp(), :sid, random() * 100);
EOF
	FOLLOWER=""
	for node in "${CHR[@]}"; do [[ $node != "$LEADER" ]] && { FOLLOWER=$node; break; }; done
	R[pgb_leader_node]=$LEADER
	R[pgb_follower_node]=$FOLLOWER
	rm -f "$RUN_DIR"/lat_*
	for ((round = 1; round <= PGBENCH_ROUNDS; round++)); do
		order=()
		for ((i = 0; i < 3; i++)); do
			k=$(((i + round - 1) % 3))
			order+=("${targets[$k]}")
		done
		for tgt in "${order[@]}"; do
			case $tgt in
				peer) node=p0; checkpoint_sys peer ;;
				leader) node=$LEADER; checkpoint_sys chr ;;
				follower) node=$FOLLOWER; checkpoint_sys chr ;;
			esac
			if [[ $tgt != peer ]]; then
				local lnow
				lnow=$(wait_leader "${CHR[@]}") || die "no chronicle leader before pgbench"
				[[ $lnow == "$LEADER" ]] || note "the chronicle leader moved from $LEADER to $lnow during the pgbench phase"
			fi
			out="$RUN_DIR/pgbench_${tgt}_$round.out"
			log "pgbench: $PGBENCH_CLIENTS clients single-row INSERT via $tgt ($node) for ${secs}s (round $round/$PGBENCH_ROUNDS)"
			# bash's time keyword: pgbench's own CPU use (is the client a bottleneck?)
			{ time timeout $((secs + 120)) "$PGBIN/pgbench" -n -M prepared -c "$PGBENCH_CLIENTS" -j "$PGBENCH_JOBS" \
				-T "$secs" -l --log-prefix="$RUN_DIR/lat_${tgt}_$round" \
				-h "$RUN_DIR" -p "${PORT[$node]}" -f "$RUN_DIR/pgb_insert.sql" postgres >"$out" 2>&1; } 2>"$out.time" \
				|| { cat "$out" >>"$LOG"; die "pgbench via $tgt failed (see $out)"; }
			cat "$out" >>"$LOG"
			R[pgb_cpu_max]=$(awk -v a="${R[pgb_cpu_max]:-0}" '{ c = 100 * ($1 + $2) / ($3 > 0 ? $3 : 1); printf "%.1f", (c > a) ? c : a }' "$out.time")
			n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
			txn[$tgt]=$((${txn[$tgt]:-0} + n))
			tps[$tgt]="${tps[$tgt]:-}$(pgb_num "$out" tps) "
			log "  tps $(pgb_num "$out" tps), latency avg $(pgb_num "$out" "latency average") ms"
		done
	done
	for tgt in "${targets[@]}"; do
		# shellcheck disable=SC2086
		R[pgb_tps_$tgt]=$(mean ${tps[$tgt]})
		R[pgb_all_$tgt]=${tps[$tgt]}
		R[pgb_txn_$tgt]=${txn[$tgt]}
		R[pgb_p50_$tgt]=$(latency_pct 50 3 "$RUN_DIR"/lat_"${tgt}"_*)
		R[pgb_p99_$tgt]=$(latency_pct 99 3 "$RUN_DIR"/lat_"${tgt}"_*)
		R[pgb_max_$tgt]=$(latency_pct 100 3 "$RUN_DIR"/lat_"${tgt}"_*)
	done
	rm -f "$RUN_DIR"/lat_*
	# every acknowledged INSERT is there, on every node
	[[ $(events_in p0 pgb) == "${txn[peer]}" ]] || note "peer: pgb holds $(events_in p0 pgb) rows, pgbench committed ${txn[peer]}"
	n=$((txn[leader] + txn[follower]))
	for node in "${CHR[@]}"; do
		wait_until 60 "$node holds the $n pgbench events" "[[ \$(events_in $node pgb) -ge $n ]]" || true
		[[ $(events_in "$node" pgb) == "$n" ]] || note "chronicle: pgb holds $(events_in "$node" pgb) events on $node, pgbench committed $n"
	done
	R[pgb_ooo]=$(sql_n "$LEADER" "SELECT out_of_order_events FROM chronicle.streams WHERE stream = 'pgb'::regclass")
}

# ---------------------------------------------------------------- failover
# One probe: an INSERT through a node, given PROBE_TIMEOUT_MS.  The bound
# is enforced by the client: psql gets SIGINT and sends a cancel request,
# because statement_timeout does not cover a commit (PostgreSQL disables it
# before COMMIT, and a stream's replicated commit waits at pre-commit).
probe_insert() {
	local node=$1 round=$2 attempt=$3
	timeout -s INT -k 2 "$(calc "$PROBE_TIMEOUT_MS / 1000")" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-d "host=$RUN_DIR port=${PORT[$node]} dbname=postgres connect_timeout=2 options='-c statement_timeout=$PROBE_TIMEOUT_MS'" \
		-c "INSERT INTO fo VALUES (clock_timestamp(), $round, $attempt)"
}

# FAILOVER_ROUNDS times: find the leader, SIGKILL its postmaster, time
# until an INSERT through one of the two others commits (probes alternate
# between them), then restart the killed node and wait until it caught up.
bench_failover() {
	local round leader pid children t0 t1 attempt node secs deadline ok i out
	local -a survivors vals=() catchups=()
	local newleader target started
	fresh_table chr fo
	for ((round = 1; round <= FAILOVER_ROUNDS; round++)); do
		leader=$(wait_leader "${CHR[@]}") || die "no leader before failover round $round"
		survivors=()
		for node in "${CHR[@]}"; do [[ $node != "$leader" ]] && survivors+=("$node"); done
		# the cluster works before the kill
		for ((attempt = 1; attempt <= 5; attempt++)); do
			probe_insert "${survivors[0]}" "$round" 0 >>"$LOG" 2>&1 && break
			((attempt < 5)) || die "no INSERT committed before failover round $round"
			sleep 1
		done
		pid=$(postmaster_pid "$leader") || die "no postmaster for $leader"
		children=$(ps -o pid= --ppid "$pid" | tr -s ' \n' ' ')
		log "failover $round/$FAILOVER_ROUNDS: SIGKILL leader $leader (postmaster PID $pid), probing ${survivors[*]}"
		t0=$(now_ns)
		kill -9 "$pid"
		ok=0
		deadline=$(($(date +%s) + FAILOVER_LIMIT))
		for ((attempt = 1; attempt <= 2000; attempt++)); do
			node=${survivors[$(((attempt - 1) % 2))]}
			if out=$(probe_insert "$node" "$round" "$attempt" 2>&1); then
				t1=$(now_ns)
				ok=1
				break
			fi
			printf '[%s] probe %d via %s: %s\n' "$(date +%H:%M:%S.%N)" "$attempt" "$node" "$out" >>"$LOG"
			(($(date +%s) < deadline)) || break
			sleep 0.02
		done
		if ((ok)); then
			secs=$(calc "($t1 - $t0) / 1e9")
		else
			secs=$FAILOVER_LIMIT
			note "failover round $round: no INSERT committed within ${FAILOVER_LIMIT}s of the kill"
		fi
		vals+=("$secs")
		newleader=$(wait_leader "${survivors[@]}") || newleader="?"
		log "  first commit via $node after ${secs}s (attempt $attempt); new leader $newleader"
		R[fo_detail]="${R[fo_detail]:-}${R[fo_detail]:+; }$leader->$newleader $(awk -v v="$secs" 'BEGIN { printf "%.2f", v }')s/$attempt"

		# restart the killed node: its children exit when they notice the
		# postmaster is gone; then the stale postmaster.pid goes
		deadline=$(($(date +%s) + 60))
		for i in $children; do
			while kill -0 "$i" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.1; done
		done
		for i in $children; do
			kill -0 "$i" 2>/dev/null && die "process $i of the killed $leader still runs after 60 s"
		done
		rm -f "${DATA[$leader]}/postmaster.pid"
		started=0
		for ((i = 1; i <= 10; i++)); do
			if "$PGBIN/pg_ctl" -D "${DATA[$leader]}" -l "$RUN_DIR/$leader.log" -w -t 120 start >>"$LOG" 2>&1; then
				started=1
				break
			fi
			sleep 1
		done
		((started)) || die "the killed node $leader did not restart (see $RUN_DIR/$leader.log)"
		t0=$(now_ns)
		target=$(sql_n "$newleader" "SELECT commit_index FROM chronicle.status()")
		must_wait 120 "$leader applied up to index $target" \
			"[[ \$(sql_n $leader \"SELECT applied_index >= $target AND role = 'follower' FROM chronicle.status()\") == t ]]"
		catchups+=("$(calc "($(now_ns) - $t0) / 1e9")")
		log "  $leader restarted and caught up to index $target in ${catchups[-1]}s"
	done
	R[fo_median]=$(median "${vals[@]}")
	R[fo_all]="${vals[*]}"
	R[fo_catchup]="${catchups[*]}"
	# every node ends with the same events
	local want
	want=$(events_in "$(wait_leader "${CHR[@]}")" fo)
	for node in "${CHR[@]}"; do
		wait_until 60 "$node holds the $want failover events" "[[ \$(events_in $node fo) == $want ]]" \
			|| note "after the failovers fo holds $(events_in "$node" fo) events on $node, $want on the leader"
	done
	R[fo_events]=$want
}

# ---------------------------------------------------------------- report
fmt_ms() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.2f", v; else printf "%.1f", v }'; }
# two decimals, three when two would round a miss up to 1.00 (or a pass down)
fmt_x() { awk -v v="$1" 'BEGIN { if (v >= 0.995 && v < 1.005) printf "%.3fx", v; else printf "%.2fx", v }'; }
fmt_list() { awk '{ for (i = 1; i <= NF; i++) printf "%s%.0f", (i > 1 ? " " : ""), $i }' <<<"$1"; }
# shellcheck disable=SC2086
fmt_med() { awk -v v="$(median $1)" 'BEGIN { printf "%.1f", v }'; }
fmt_list1() { awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " " : ""), $i }' <<<"$1"; }

build_table() {
	local c ratio p s tgt label
	row "metric" "peer (heap + 2 sync standbys)" "chronicle 3-node" "ratio" "target" "result"
	for c in 1 "$COPY_CLIENTS"; do
		ratio=$(calc "${R[copy_chr_$c]} / ${R[copy_peer_$c]}")
		row "COPY $ROWS ev, $c client(s), rows/s (median of $COPY_REPEAT)" "$(fmt_int "${R[copy_peer_$c]}")" \
			"$(fmt_int "${R[copy_chr_$c]}")" "$(fmt_x "$ratio") c/p" ">= 1.0x peer" "$(pass "$ratio >= 1.0")"
	done
	for tgt in leader follower; do
		ratio=$(calc "${R[pgb_tps_$tgt]} / ${R[pgb_tps_peer]}")
		label="1-row INSERT $PGBENCH_CLIENTS clients via $tgt, tps"
		[[ $tgt == follower ]] && label="1-row INSERT $PGBENCH_CLIENTS clients via follower, tps (peer: primary)"
		row "$label" "$(fmt_int "${R[pgb_tps_peer]}")" "$(fmt_int "${R[pgb_tps_$tgt]}")" \
			"$(fmt_x "$ratio") c/p" ">= 1.0x peer" "$(pass "$ratio >= 1.0")"
	done
	for tgt in leader follower; do
		for p in p50 p99; do
			s=${R[pgb_${p}_$tgt]}
			ratio=$(calc "${R[pgb_${p}_peer]} / $s")
			row "commit latency $p via $tgt, ms" "$(fmt_ms "${R[pgb_${p}_peer]}")" "$(fmt_ms "$s")" \
				"$(fmt_x "$ratio") p/c" "printed" "info"
		done
	done
	row "failover: leader SIGKILL -> commit via other node, s (median of $FAILOVER_ROUNDS)" "n/a" \
		"$(awk -v v="${R[fo_median]}" 'BEGIN { printf "%.2f", v }')" "-" "<= 3 s" "$(pass "${R[fo_median]} <= 3.0")"
}

# ---------------------------------------------------------------- main
main() {
	local t_start t_end stamp result_file c r1 rn
	t_start=$(date +%s)
	R[load_start]=$(cut -d ' ' -f 1-3 /proc/loadavg)
	R[so_start]=$(so_fingerprint)
	[[ -x $PGBIN/initdb && -x $PGBIN/pgbench && -x $PGBIN/pg_basebackup ]] || die "no PostgreSQL binaries in $PGBIN"
	[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 1000 ]] || die "ROWS must be an integer >= 1000"
	[[ $COPY_BATCH =~ ^[0-9]+$ && $COPY_BATCH -ge 1 ]] || die "COPY_BATCH must be a positive integer"
	[[ $COPY_CLIENTS =~ ^[0-9]+$ && $COPY_CLIENTS -ge 2 && $COPY_CLIENTS -le 64 ]] || die "COPY_CLIENTS must be 2..64"
	[[ $COPY_REPEAT =~ ^[1-9]$ ]] || die "COPY_REPEAT must be 1..9"
	[[ $COPY_WARMUP =~ ^[0-9]$ ]] || die "COPY_WARMUP must be 0..9"
	[[ $PGBENCH_ROUNDS =~ ^[1-9]$ ]] || die "PGBENCH_ROUNDS must be 1..9"
	[[ $FAILOVER_ROUNDS =~ ^[1-9]$ ]] || die "FAILOVER_ROUNDS must be 1..9"
	[[ $SECONDS_PGBENCH =~ ^[0-9]+$ && $SECONDS_PGBENCH -ge 1 ]] || die "SECONDS_PGBENCH must be a positive integer"
	mkdir -p "$OUT_DIR"
	RUN_DIR=$(mktemp -d "$OUT_DIR/cluster.XXXXXX")
	((ROWS >= COPY_BATCH * COPY_CLIENTS)) \
		|| NOTES+=("ROWS < COPY_BATCH x COPY_CLIENTS: some of the $COPY_CLIENTS COPY clients had no batch to send")
	LOG="$RUN_DIR/bench.log"
	log "run directory $RUN_DIR; ROWS=$ROWS COPY_BATCH=$COPY_BATCH COPY_CLIENTS=$COPY_CLIENTS SECONDS_PGBENCH=$SECONDS_PGBENCH FAILOVER_ROUNDS=$FAILOVER_ROUNDS; load average ${R[load_start]}"

	build_copyload

	setup_peer
	setup_chronicle
	setup_single
	R[t_setup]=$(($(date +%s) - t_start))

	# other work on the box skews every number: record the load per phase
	R[load_phases]="copy $(cut -d ' ' -f 1 /proc/loadavg)"
	bench_copy
	R[load_phases]+=", pgbench $(cut -d ' ' -f 1 /proc/loadavg)"
	bench_pgbench
	R[load_phases]+=", failover $(cut -d ' ' -f 1 /proc/loadavg)"
	bench_failover
	R[load_phases]+=", end $(cut -d ' ' -f 1 /proc/loadavg)"
	R[raftlog_mb]=$(du -sm "${DATA[c1]}/chronicle_raft" 2>/dev/null | cut -f 1)
	R[so_end]=$(so_fingerprint)
	[[ ${R[so_end]} == "${R[so_start]}" ]] \
		|| note "chronicle_raft.so was reinstalled during the run (${R[so_start]} -> ${R[so_end]}): nodes restarted in the failover phase loaded the new build"
	note_busy_start

	build_table
	t_end=$(date +%s)
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	result_file="$OUT_DIR/cluster-results-$stamp.txt"
	r1=$(calc "${R[copy_chr_1]} / ${R[copy_single_1]}")
	rn=$(calc "${R[copy_chr_$COPY_CLIENTS]} / ${R[copy_single_$COPY_CLIENTS]}")
	{
		echo "chronicle_raft bench_cluster: 3-node chronicle vs heap + 2 sync standbys  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, commit $(git_head))"
		echo "COPY: $ROWS events per run, $COPY_BATCH per transaction, copyload (libpq, text COPY); INSERT: pgbench -c $PGBENCH_CLIENTS -j $PGBENCH_JOBS, ${SECONDS_PGBENCH}s per target"
		echo "peer: primary + s1, s2 (pg_basebackup -R), synchronous_standby_names = 'ANY 1 (s1, s2)', synchronous_commit = on"
		echo "chronicle: ${R[chr_settings]}"
		echo "chronicle_raft.so: md5 ${R[so_start]} (git HEAD of the repository: $(git_head); the library may hold uncommitted work)"
		echo "ratio: c/p = chronicle/peer (throughput, higher is better); p/c = peer/chronicle (latency, >1 = chronicle faster)"
		echo
		format_table
		echo
		echo "single-node chronicle COPY: $(fmt_int "${R[copy_single_1]}") rows/s (1 client), $(fmt_int "${R[copy_single_$COPY_CLIENTS]}") rows/s ($COPY_CLIENTS clients); replicated/single-node: $(awk -v v="$r1" 'BEGIN { printf "%.2f", v }') (1 client), $(awk -v v="$rn" 'BEGIN { printf "%.2f", v }') ($COPY_CLIENTS clients)  [aim >= 0.8: $(pass "$r1 >= 0.8") / $(pass "$rn >= 0.8"); Java prototype ~0.33]"
		echo "failover (s, leader SIGKILL -> first commit via another node): median $(awk -v v="${R[fo_median]}" 'BEGIN { printf "%.2f", v }'), all: $(awk '{ for (i = 1; i <= NF; i++) printf "%s%.2f", (i > 1 ? " " : ""), $i }' <<<"${R[fo_all]}")  [killed->new leader time/probes: ${R[fo_detail]}]; restart + catch-up of the killed node (s): $(awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " " : ""), $i }' <<<"${R[fo_catchup]}")"
		for c in 1 "$COPY_CLIENTS"; do
			echo "COPY rows/s per repetition, $c client(s): peer $(fmt_list "${R[copy_all_peer_$c]}"); chronicle $(fmt_list "${R[copy_all_chr_$c]}"); single $(fmt_list "${R[copy_all_single_$c]}")"
			if [[ $COPY_WARMUP -gt 0 ]]; then
				echo "  untimed warm-up runs first, rows/s: peer ${R[copy_warm_peer_$c]:-}; chronicle ${R[copy_warm_chr_$c]:-}; single ${R[copy_warm_single_$c]:-}"
			fi
			echo "  server CPU (all servers of the system), median us/event: peer $(fmt_med "${R[copy_cpu_peer_$c]}"), chronicle $(fmt_med "${R[copy_cpu_chr_$c]}"), single $(fmt_med "${R[copy_cpu_single_$c]}"); = % of the $(nproc) cores over the COPY time: peer $(fmt_med "${R[copy_busy_peer_$c]}"), chronicle $(fmt_med "${R[copy_busy_chr_$c]}"), single $(fmt_med "${R[copy_busy_single_$c]}")"
			echo "  median ms per $COPY_BATCH-event COPY transaction: peer $(fmt_list1 "${R[copy_p50b_peer_$c]}"); chronicle $(fmt_list1 "${R[copy_p50b_chr_$c]}"); single $(fmt_list1 "${R[copy_p50b_single_$c]}"); chronicle followers held every event $(fmt_list1 "${R[copy_lag_chr_$c]}") s after the last COPY returned"
		done
		echo "copyload CPU: at most ${R[copy_cpu_max]}% of one core during a timed COPY (rows are formatted before the clock starts); Raft log of c1 at the end: ${R[raftlog_mb]} MB"
		echo "1-row INSERT tps per round: peer $(fmt_list "${R[pgb_all_peer]}"); chronicle leader (${R[pgb_leader_node]}) $(fmt_list "${R[pgb_all_leader]}"); follower (${R[pgb_follower_node]}) $(fmt_list "${R[pgb_all_follower]}")"
		echo "1-row INSERT max latency (ms): peer ${R[pgb_max_peer]}, leader ${R[pgb_max_leader]}, follower ${R[pgb_max_follower]}; pgbench CPU at most ${R[pgb_cpu_max]}% of one core; stream events out of time order: ${R[pgb_ooo]}"
		echo "runtime: $((t_end - t_start)) s (setup ${R[t_setup]} s); load average at start: ${R[load_start]}, at end: $(cut -d ' ' -f 1-3 /proc/loadavg); 1-min load before each phase: ${R[load_phases]} (this run's own servers and clients count too)"
		print_notes
	} >"$result_file"
	publish_results "$result_file" cluster-results-latest.txt
}

main "$@"
