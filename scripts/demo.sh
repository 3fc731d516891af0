#!/usr/bin/env bash
# The main job: install what is needed, build and install chronicle_raft,
# start a local PostgreSQL 15 server with the library preloaded, and create
# a demo stream you can query.  Prints how to connect.
#
#   sudo bash scripts/demo.sh            one server (a cluster of one)
#   sudo bash scripts/demo.sh cluster    three replicated servers on loopback
#   sudo bash scripts/demo.sh stop       stop whatever the demo started
#
# Each start re-creates the demo from scratch.  Environment: DEMO_DIR (default
# /tmp/chronicle_demo), DEMO_PORT (first SQL port, default 5440; the cluster
# uses 5440-5442 and Raft ports 7440-7442), DEMO_EVENTS (default 1000000).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-/tmp/chronicle_demo}
DEMO_PORT=${DEMO_PORT:-5440}
DEMO_EVENTS=${DEMO_EVENTS:-1000000}
BIN=/usr/lib/postgresql/15/bin

as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

stop_all() {
	local d
	for d in "$DEMO_DIR"/data "$DEMO_DIR"/node*; do
		if [ -f "$d/postmaster.pid" ]; then
			as_postgres "$BIN/pg_ctl" -D "$d" -m fast stop >/dev/null || true
		fi
	done
}

MODE=${1:-single}
if [ "$MODE" = "stop" ]; then
	stop_all
	echo "demo stopped"
	exit 0
fi
if [ "$MODE" != "single" ] && [ "$MODE" != "cluster" ]; then
	echo "usage: $0 [single|cluster|stop]" >&2
	exit 2
fi

cd "$top"
bash scripts/install-deps.sh
if [ "$(id -u)" -eq 0 ]; then
	make -s PG_CONFIG=$BIN/pg_config >/dev/null
	make -s install PG_CONFIG=$BIN/pg_config >/dev/null
else
	make -s PG_CONFIG=$BIN/pg_config >/dev/null
	sudo make -s install PG_CONFIG=$BIN/pg_config >/dev/null
fi

stop_all
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$DEMO_DIR"

# init_server DIR PORT [EXTRA_CONF]
init_server() {
	as_postgres "$BIN/initdb" -D "$1" -A trust -U postgres >/dev/null
	cat >> "$1/postgresql.conf" <<CONF
shared_preload_libraries = 'chronicle_raft'
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DEMO_DIR'
shared_buffers = 256MB
max_wal_size = 4GB
$3
CONF
	as_postgres "$BIN/pg_ctl" -D "$1" -l "$1.log" -w start >/dev/null
}

psql_at() {
	local port=$1
	shift
	as_postgres "$BIN/psql" -X -q -h "$DEMO_DIR" -p "$port" -U postgres -d postgres "$@"
}

if [ "$MODE" = "single" ]; then
	init_server "$DEMO_DIR/data" "$DEMO_PORT" ""
	PORTS="$DEMO_PORT"
else
	members=""
	for i in 1 2 3; do
		members="$members${members:+,}$i=127.0.0.1:$((7439 + i))"
	done
	secret=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
	for i in 1 2 3; do
		init_server "$DEMO_DIR/node$i" $((DEMO_PORT + i - 1)) "chronicle_raft.node_id = $i
chronicle_raft.initial_cluster = '$members'
chronicle_raft.cluster_secret = '$secret'"
	done
	PORTS="$DEMO_PORT $((DEMO_PORT + 1)) $((DEMO_PORT + 2))"
	# wait for a leader
	for _ in $(seq 1 100); do
		roles=$(for p in $PORTS; do psql_at "$p" -At -c "SELECT role FROM chronicle.status()" 2>/dev/null; done | tr '\n' ' ')
		case "$roles" in *leader*) break ;; esac
		sleep 0.2
	done
fi

psql_at "$DEMO_PORT" -v ON_ERROR_STOP=1 -c "CREATE EXTENSION IF NOT EXISTS chronicle_raft" \
	-c "CREATE TABLE readings (ts timestamptz NOT NULL, sensor_id int, value float8) USING chronicle"
# one event per 100 ms, 10% arriving 30 s late (out of order), loaded in
# transactions of 100000 events
step=100000
for ((lo = 1; lo <= DEMO_EVENTS; lo += step)); do
	hi=$((lo + step - 1 < DEMO_EVENTS ? lo + step - 1 : DEMO_EVENTS))
	psql_at "$DEMO_PORT" -v ON_ERROR_STOP=1 -c "
INSERT INTO readings
SELECT '2026-01-01'::timestamptz + i * interval '100 ms'
         - CASE WHEN i % 10 = 0 THEN interval '30 seconds' ELSE interval '0' END,
       i % 50, round((20 + 5 * sin(i / 5000.0) + (i % 7) * 0.1)::numeric, 2)
  FROM generate_series($lo, $hi) i"
done
psql_at "$DEMO_PORT" -v ON_ERROR_STOP=1 -c "SELECT chronicle.insert('readings', '{\"ts\": \"2026-01-02 12:00:00+00\", \"sensor_id\": 7, \"value\": 21.5}')" >/dev/null

echo
if [ "$MODE" = "single" ]; then
	echo "chronicle_raft demo: one server (a cluster of one)."
else
	echo "chronicle_raft demo: three replicated servers."
	for p in $PORTS; do
		echo "--- node on port $p"
		psql_at "$p" -c "SELECT node_id, role, term, leader_id, commit_index, applied_index FROM chronicle.status()"
	done
	psql_at "$DEMO_PORT" -c "SELECT * FROM chronicle.nodes"
fi
for p in $PORTS; do
	psql_at "$p" -c "SELECT stream, events, first_event, last_event FROM chronicle.streams"
done
psql_at "$DEMO_PORT" -c "SELECT * FROM chronicle.aggregate('readings', 'value', '2026-01-01 00:00'::timestamptz, '2026-01-01 06:00', interval '1 hour')"
echo "Connect:"
for p in $PORTS; do
	echo "           psql -h 127.0.0.1 -p $p -U postgres postgres"
done
cat <<MSG
           (as root: runuser -u postgres -- psql -h $DEMO_DIR -p $DEMO_PORT postgres)
Try:       SELECT * FROM readings WHERE ts >= '2026-01-01 01:00' LIMIT 5;
           SELECT * FROM chronicle.aggregate('readings', 'value', '2026-01-01'::timestamptz, '2026-01-02');
           INSERT INTO readings VALUES (now(), 1, 22.5);   -- on any node
           SELECT * FROM chronicle.status();
Stop:      sudo bash scripts/demo.sh stop      (logs: $DEMO_DIR/*.log)
MSG
