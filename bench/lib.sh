# Helpers the benchmark scripts share.  Sourced by bench_streams.sh,
# bench_cluster.sh and bench_catchup.sh right after they set SCRIPT_PATH
# and SCRIPT_DIR; the functions read the caller's settings (PGBIN,
# STEP_TIMEOUT, OUT_DIR, ...) and state (LOG, RUN_DIR, NOTES, R) when they
# run, not when this file is sourced.

# ---------------------------------------------------------------- re-exec
# initdb refuses to run as root: run the whole benchmark as "postgres", with
# an output directory that user can write.  The settings named in
# FORWARDED_VARS are forwarded explicitly because runuser may reset parts of
# the environment.  Call as: reexec_as_postgres "$@" (returns unless root).
reexec_as_postgres() {
	local v fwd=()
	[[ $EUID -eq 0 ]] || return 0
	mkdir -p "$OUT_DIR"
	chown postgres: "$OUT_DIR"
	for v in "${FORWARDED_VARS[@]}"; do
		fwd+=("$v=${!v}")
	done
	exec runuser -u postgres -- env "${fwd[@]}" bash "$SCRIPT_PATH" "$@"
}

# ---------------------------------------------------------------- basics
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
die() { log "ERROR: $*"; exit 1; }
# anything odd: logged now, printed after the table
note() { NOTES+=("$*"); log "NOTE: $*"; }

# Floating-point arithmetic via awk: calc '<expr>' (bash has integers only).
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
now_ns() { date +%s%N; }

# Median and mean of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.6f", v[(NR + 1) / 2]; else printf "%.6f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mean() { printf '%s\n' "$@" | awk '{ t += $1 } END { printf "%.6f", t / NR }'; }

# ---------------------------------------------------------------- pgbench
# Value of "name = number" in pgbench's report: pgb_num FILE NAME.
pgb_num() { sed -n "s/^$2 = \([0-9.]*\).*/\1/p" "$1" | head -n 1; }

# latency_pct P DECIMALS FILE...: percentile P (0..100) of the latencies (ms)
# in pgbench per-transaction logs (field 3 is the latency in microseconds),
# nearest rank; "nan" when the logs hold no transaction.
latency_pct() {
	local p=$1 decimals=$2
	shift 2
	cat "$@" 2>/dev/null | awk '{ print $3 }' | sort -n |
		awk -v p="$p" -v d="$decimals" '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } k = int(NR * p / 100 + 0.999999); if (k < 1) k = 1; if (k > NR) k = NR; printf "%.*f", d, v[k] / 1000 }'
}

# ---------------------------------------------------------------- servers
# The servers of the cluster scripts, by name; they listen on 127.0.0.1 and
# in the socket directory RUN_DIR.
declare -A DATA=()       # server name -> data directory
declare -A PORT=()       # server name -> PostgreSQL port
declare -A STARTED=()    # server name -> 1 once we started it
ALL_SERVERS=()           # in start order; stopped in reverse
PICKED_PORTS=" "         # every port picked in this run

# pick_port_in FIRST COUNT KNOB: a free TCP port on 127.0.0.1 in
# FIRST..FIRST+COUNT-1, distinct from the ones already picked in this run,
# into PICKED (no subshell: PICKED_PORTS must remember it).  KNOB names the
# setting to change when none is free.
pick_port_in() {
	local first=$1 count=$2 knob=$3 p
	for ((p = first; p < first + count; p++)); do
		[[ $PICKED_PORTS == *" $p "* ]] && continue
		# a refused connection means nobody listens there
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			PICKED_PORTS+="$p "
			PICKED=$p
			return
		fi
	done
	die "no free port in $first..$((first + count - 1)); set $knob"
}
# the cluster scripts pick from PORT_BASE .. PORT_BASE+199
pick_port() { pick_port_in "$PORT_BASE" 200 PORT_BASE; }

# PID of a server's postmaster, only while it is the live postmaster of
# that data directory (guards against a stale postmaster.pid and PID reuse).
postmaster_pid() {
	local dir=${DATA[$1]} pid
	[[ -f $dir/postmaster.pid ]] || return 1
	pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir" || return 1
	echo "$pid"
}

# Settings shared by every server of the cluster scripts, for a 2-core /
# 24 GB box.  Durability is the default everywhere (fsync,
# synchronous_commit = on).  autovacuum off: no background vacuum of the
# heap inside a timed step; jit off.
common_conf() {
	cat <<EOF

# ---- bench/${SCRIPT_PATH##*/} ----
listen_addresses = '127.0.0.1'
port = ${PORT[$1]}
unix_socket_directories = '$RUN_DIR'
max_connections = 40
shared_buffers = $SHARED_BUFFERS
work_mem = 16MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
synchronous_commit = on
fsync = on
autovacuum = off
jit = off
timezone = 'UTC'
log_timezone = 'UTC'
log_checkpoints = on
log_line_prefix = '%m [%p] '
statement_timeout = '${STEP_TIMEOUT}s'
EOF
}

# A server's data directory and port, before anything creates it (initdb,
# pg_basebackup); from now on cleanup stops and removes it.
register_server() {
	local name=$1
	DATA[$name]="$RUN_DIR/$name"
	pick_port
	PORT[$name]=$PICKED
	ALL_SERVERS+=("$name")
}

init_server() {
	local name=$1
	register_server "$name"
	"$PGBIN/initdb" -D "${DATA[$name]}" -A trust -E UTF8 --locale=C -N >>"$LOG" 2>&1 \
		|| die "initdb of $name failed (see $LOG)"
	common_conf "$name" >>"${DATA[$name]}/postgresql.conf"
}

start_server() {
	local name=$1
	"$PGBIN/pg_ctl" -D "${DATA[$name]}" -l "$RUN_DIR/$name.log" -w -t 120 start >>"$LOG" 2>&1 \
		|| die "$name did not start (see $RUN_DIR/$name.log)"
	STARTED[$name]=1
	log "$name up: port ${PORT[$name]}, postmaster PID $(postmaster_pid "$name")"
}

# For cleanup: stop every server we started, newest first (by pg_ctl -D,
# falling back to SIGQUIT of our own postmaster PID).
stop_servers() {
	local i name pid
	for ((i = ${#ALL_SERVERS[@]} - 1; i >= 0; i--)); do
		name=${ALL_SERVERS[$i]}
		[[ ${STARTED[$name]:-0} == 1 ]] || continue
		pid=$(postmaster_pid "$name") || continue
		log "stopping $name (postmaster PID $pid)"
		if ! timeout 100 "$PGBIN/pg_ctl" -D "${DATA[$name]}" -m fast -w -t 60 stop >>"$LOG" 2>&1; then
			pid=$(postmaster_pid "$name") && kill -QUIT "$pid" 2>/dev/null || true
		fi
	done
}

# For cleanup: the data directories are bulky; the server logs stay.
remove_server_data() {
	local name
	for name in "${ALL_SERVERS[@]}"; do
		if [[ -n ${DATA[$name]:-} ]]; then rm -rf "${DATA[$name]}"; fi
	done
}

# psql against one of our servers (database postgres: chronicle_raft
# replicates the streams of chronicle_raft.database, default postgres).
psql_n() {
	local name=$1
	shift
	timeout "$STEP_TIMEOUT" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$RUN_DIR" -p "${PORT[$name]}" -d postgres "$@"
}
sql_n() { psql_n "$1" -At -c "$2"; }

# wait_until SECONDS WHAT CONDITION: poll a bash condition every 0.1 s;
# returns 1 (with a log line) when it does not hold within SECONDS.
wait_until() {
	local secs=$1 what=$2 cond=$3 deadline
	deadline=$(($(date +%s) + secs))
	while (($(date +%s) < deadline)); do
		if eval "$cond" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "timed out after ${secs}s waiting until $what"
	return 1
}
# the same, but a timeout ends the benchmark
must_wait() { wait_until "$@" || die "timed out waiting until $2"; }

# ---------------------------------------------------------------- chronicle
# Chronicle nodes are named c<node id>.

# chronicle_conf ID MEMBERS SECRET [LINE...]: the chronicle_raft settings of
# node ID; the LINEs come before CHRONICLE_CONF so that it can override them.
chronicle_conf() {
	local id=$1 members=$2 secret=$3
	shift 3
	cat <<EOF
shared_preload_libraries = 'chronicle_raft'
chronicle_raft.node_id = $id
chronicle_raft.initial_cluster = '$members'
chronicle_raft.cluster_secret = '$secret'
chronicle_raft.election_timeout = $ELECTION_TIMEOUT
chronicle_raft.heartbeat_interval = $HEARTBEAT_INTERVAL
EOF
	if (($#)); then printf '%s\n' "$@"; fi
	printf '%s\n' "$CHRONICLE_CONF"
}

# The chronicle_raft settings a node runs with, for the result header.
chronicle_settings() {
	sql_n "$1" "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name) FROM pg_settings WHERE name IN ('chronicle_raft.election_timeout', 'chronicle_raft.heartbeat_interval', 'chronicle_raft.commit_wait', 'chronicle_raft.buffer_size', 'chronicle_raft.flush_interval', 'chronicle_raft.max_log_size')"
}

# Print the name of the node the given live nodes agree is the leader
# (exactly one says "leader" and all name it); fail after 60 s.
wait_leader() {
	local deadline name out role lid leaders ids n
	deadline=$(($(date +%s) + 60))
	while (($(date +%s) < deadline)); do
		leaders=0
		ids=" "
		n=0
		for name in "$@"; do
			out=$(timeout 5 "$PGBIN/psql" -X -At -h "$RUN_DIR" -p "${PORT[$name]}" -d postgres \
				-c "SELECT role, coalesce(leader_id, 0) FROM chronicle.status()" 2>/dev/null) || continue
			IFS='|' read -r role lid <<<"$out"
			[[ $role == leader ]] && leaders=$((leaders + 1))
			[[ $ids == *" $lid "* ]] || ids+="$lid "
			n=$((n + 1))
		done
		ids=${ids# }
		ids=${ids% }
		if ((n == $# && leaders == 1)) && [[ $ids =~ ^[1-9][0-9]*$ ]]; then
			echo "c$ids"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# The installed extension library: others may rebuild and reinstall it
# while the benchmark runs (a node restarted mid-run would then load a
# different build), so its checksum is recorded at both ends.
so_fingerprint() {
	local so
	so="$("$PGBIN/pg_config" --pkglibdir)/chronicle_raft.so"
	[[ -f $so ]] || { echo "missing"; return; }
	echo "$(md5sum "$so" | cut -c 1-12) $(date -u -r "$so" '+%Y-%m-%d %H:%M:%S UTC')"
}

# bench/copyload.c, the parallel COPY client, into the run directory.
build_copyload() {
	log "building copyload"
	cc -O2 -Wall -o "$RUN_DIR/copyload" "$SCRIPT_DIR/copyload.c" -I"$("$PGBIN/pg_config" --includedir)" \
		-lpq -lpthread -lm >>"$LOG" 2>&1 || die "could not build bench/copyload.c (libpq-dev installed?)"
}

# ---------------------------------------------------------------- report
# other work on the box skews every number: say so when it was busy
note_busy_start() {
	if awk -v l="${R[load_start]%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
		note "the machine was busy at the start (load average ${R[load_start]} on $(nproc) cores): numbers are lower than on an idle box"
	fi
}

# Short commit of the repository, for the result header.
git_head() { git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo '?'; }

# Rows of the table, tab-separated; aligned by format_table.
TABLE=()
row() { local IFS=$'\t'; TABLE+=("$*"); }

fmt_int() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }

# pass EXPR: PASS if the awk expression holds, else MISS
pass() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }

format_table() {
	printf '%s\n' "${TABLE[@]}" | awk -F'\t' '
		{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > nf) nf = NF }
		END {
			for (r = 1; r <= NR; r++) {
				line = ""
				for (i = 1; i <= nf; i++) {
					c = cell[r, i]
					# numbers right-aligned, text left-aligned
					if (i > 1 && i <= 4) line = line sprintf("%*s", w[i], c); else line = line sprintf("%-*s", w[i], c)
					if (i < nf) line = line " | "
				}
				sub(/ +$/, "", line); print line
				if (r == 1) { sep = ""; for (i = 1; i <= nf; i++) { sep = sep sprintf("%*s", w[i], ""); if (i < nf) sep = sep "-+-" } gsub(/ /, "-", sep); print sep }
			}
		}'
}

# The notes, if any, after the table.
print_notes() {
	if ((${#NOTES[@]})); then
		echo "notes:"
		printf '  - %s\n' "${NOTES[@]}"
	fi
}

# publish_results FILE LATEST: keep the result file under the name LATEST
# in OUT_DIR and in the run directory too, and print it.
publish_results() {
	cp "$1" "$OUT_DIR/$2"
	cp "$1" "$RUN_DIR/results.txt"
	cat "$1"
	log "table saved to $1"
}
