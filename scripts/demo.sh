#!/usr/bin/env bash
# The main job: install what is needed, build and install chronicle_raft,
# start a local PostgreSQL 15 server with the library preloaded, and create
# a demo stream you can query.  Prints how to connect.
#
#   sudo bash scripts/demo.sh          start (idempotent: re-creates the demo)
#   sudo bash scripts/demo.sh stop     stop the demo server
#
# Environment: DEMO_DIR (default /tmp/chronicle_demo), DEMO_PORT (default 5440),
# DEMO_EVENTS (default 1000000).
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

if [ "${1:-}" = "stop" ]; then
	as_postgres "$BIN/pg_ctl" -D "$DEMO_DIR/data" -m fast stop
	exit 0
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

if [ -f "$DEMO_DIR/data/postmaster.pid" ]; then
	as_postgres "$BIN/pg_ctl" -D "$DEMO_DIR/data" -m fast stop || true
fi
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$DEMO_DIR"
as_postgres "$BIN/initdb" -D "$DEMO_DIR/data" -A trust -U postgres >/dev/null
cat >> "$DEMO_DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'chronicle_raft'
port = $DEMO_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DEMO_DIR'
shared_buffers = 512MB
max_wal_size = 4GB
CONF
as_postgres "$BIN/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w start >/dev/null

psql_demo() {
	as_postgres "$BIN/psql" -X -q -h "$DEMO_DIR" -p "$DEMO_PORT" -U postgres -d postgres "$@"
}

psql_demo -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION chronicle_raft;
CREATE TABLE readings (ts timestamptz NOT NULL, sensor_id int, value float8) USING chronicle;
-- one event per second per sensor group, 10% arriving late (out of order)
INSERT INTO readings
SELECT '2026-01-01'::timestamptz + i * interval '100 ms'
         - CASE WHEN i % 10 = 0 THEN interval '30 seconds' ELSE interval '0' END,
       i % 50, round((20 + 5 * sin(i / 5000.0) + (i % 7) * 0.1)::numeric, 2)
  FROM generate_series(1, $DEMO_EVENTS) i;
SELECT chronicle.insert('readings', '{"ts": "2026-01-02 12:00:00+00", "sensor_id": 7, "value": 21.5}');
SQL

echo
echo "chronicle_raft demo server is running (single node, a cluster of one)."
psql_demo -c "SELECT * FROM chronicle.streams"
psql_demo -c "SELECT * FROM chronicle.aggregate('readings', 'value', '2026-01-01 00:00'::timestamptz, '2026-01-01 01:00')"
psql_demo -c "SELECT * FROM chronicle.aggregate('readings', 'value', '2026-01-01 00:00'::timestamptz, '2026-01-01 06:00', interval '1 hour')"
cat <<MSG
Connect:   psql -h 127.0.0.1 -p $DEMO_PORT -U postgres postgres
           (as root: runuser -u postgres -- psql -h $DEMO_DIR -p $DEMO_PORT postgres)
Try:       SELECT * FROM readings LIMIT 5;
           SELECT * FROM chronicle.aggregate('readings', 'value', '2026-01-01'::timestamptz, '2026-01-02');
           INSERT INTO readings VALUES (now(), 1, 22.5);
Stop:      sudo bash scripts/demo.sh stop      (log: $DEMO_DIR/server.log)
MSG
