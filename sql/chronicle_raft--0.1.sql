/* chronicle_raft 0.1: event streams on a TAB+ tree */

\echo Use "CREATE EXTENSION chronicle_raft" to load this file. \quit

CREATE FUNCTION chronicle.chronicle_am_handler(internal)
RETURNS table_am_handler
AS 'MODULE_PATHNAME', 'chronicle_am_handler'
LANGUAGE C;

CREATE ACCESS METHOD chronicle TYPE TABLE HANDLER chronicle.chronicle_am_handler;
COMMENT ON ACCESS METHOD chronicle IS 'append-only event streams stored in a TAB+ tree';

CREATE FUNCTION chronicle.insert(stream regclass, events jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'chronicle_insert'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chronicle.insert(regclass, jsonb) IS
'insert one JSON object or an array of objects keyed by column name; returns the number of events';

CREATE FUNCTION chronicle.aggregate(stream regclass, "column" name,
                                    "from" anycompatible, "to" anycompatible,
                                    OUT count bigint, OUT sum numeric,
                                    OUT min numeric, OUT max numeric,
                                    OUT avg numeric)
RETURNS record
AS 'MODULE_PATHNAME', 'chronicle_aggregate'
LANGUAGE C STABLE;
COMMENT ON FUNCTION chronicle.aggregate(regclass, name, anycompatible, anycompatible) IS
'count, sum, min, max and avg of a numeric column over event times [from, to); NULL bounds are unbounded; O(log n)';

CREATE FUNCTION chronicle.aggregate(stream regclass, "column" name,
                                    "from" anycompatible, "to" anycompatible,
                                    bucket interval)
RETURNS TABLE (bucket_start timestamptz, count bigint, sum numeric,
               min numeric, max numeric, avg numeric)
AS 'MODULE_PATHNAME', 'chronicle_aggregate_buckets'
LANGUAGE C STABLE;
COMMENT ON FUNCTION chronicle.aggregate(regclass, name, anycompatible, anycompatible, interval) IS
'one aggregate row per time bucket of a timestamp stream';

CREATE FUNCTION chronicle.aggregate(stream regclass, "column" name,
                                    "from" anycompatible, "to" anycompatible,
                                    bucket bigint)
RETURNS TABLE (bucket_start bigint, count bigint, sum numeric,
               min numeric, max numeric, avg numeric)
AS 'MODULE_PATHNAME', 'chronicle_aggregate_buckets'
LANGUAGE C STABLE;
COMMENT ON FUNCTION chronicle.aggregate(regclass, name, anycompatible, anycompatible, bigint) IS
'one aggregate row per bucket of a bigint-time stream';

CREATE FUNCTION chronicle.aggregate_pages_read(stream regclass,
                                               "from" anycompatible, "to" anycompatible)
RETURNS bigint
AS 'MODULE_PATHNAME', 'chronicle_aggregate_pages_read'
LANGUAGE C STABLE;
COMMENT ON FUNCTION chronicle.aggregate_pages_read(regclass, anycompatible, anycompatible) IS
'pages a range aggregate over [from, to) reads: shows its O(log n) cost';

CREATE FUNCTION chronicle.time_range(stream regclass,
                                     OUT first_event timestamptz,
                                     OUT last_event timestamptz,
                                     OUT first_key bigint,
                                     OUT last_key bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'chronicle_time_range'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION chronicle.time_range(regclass) IS
'first and last event time (keys: microseconds for timestamp streams, the value for bigint streams)';

CREATE FUNCTION chronicle.stream_stats(stream regclass,
                                       OUT events bigint,
                                       OUT first_event timestamptz,
                                       OUT last_event timestamptz,
                                       OUT out_of_order_events bigint,
                                       OUT batches bigint,
                                       OUT tree_height int,
                                       OUT bytes bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'chronicle_stream_stats'
LANGUAGE C STABLE STRICT;

CREATE VIEW chronicle.streams AS
SELECT c.oid::regclass AS stream, s.*
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_am a ON a.oid = c.relam
 CROSS JOIN LATERAL chronicle.stream_stats(c.oid) s
 WHERE a.amname = 'chronicle' AND c.relkind = 'r';
COMMENT ON VIEW chronicle.streams IS
'one row per stream: events, first/last event time, out-of-order events seen, batches, tree height, bytes';

GRANT USAGE ON SCHEMA chronicle TO PUBLIC;

CREATE FUNCTION chronicle.status(OUT node_id bigint, OUT role text, OUT term bigint,
                                 OUT leader_id bigint, OUT commit_index bigint,
                                 OUT applied_index bigint, OUT last_log_index bigint,
                                 OUT replicated boolean, OUT apply_error text)
RETURNS record
AS 'MODULE_PATHNAME', 'chronicle_status'
LANGUAGE C STABLE;
COMMENT ON FUNCTION chronicle.status() IS
'this node''s Raft state: role, term, leader, commit/applied/last log index; apply_error says why applying stopped (NULL while it goes on)';

-- The replication worker's applied Raft index, updated in the same
-- transaction as each applied entry (so replicated DDL is applied once).
CREATE TABLE chronicle.raft_applied (applied_index bigint NOT NULL);
INSERT INTO chronicle.raft_applied VALUES (0);
REVOKE ALL ON chronicle.raft_applied FROM PUBLIC;

CREATE FUNCTION chronicle.node_list(OUT node_id bigint, OUT address text, OUT role text,
                                    OUT voting boolean, OUT match_index bigint,
                                    OUT last_contact timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'chronicle_nodes'
LANGUAGE C STABLE;

CREATE VIEW chronicle.nodes AS SELECT * FROM chronicle.node_list();
COMMENT ON VIEW chronicle.nodes IS
'cluster members as this node sees them; match_index is known on the leader only';

CREATE FUNCTION chronicle.read_barrier()
RETURNS bigint
AS 'MODULE_PATHNAME', 'chronicle_read_barrier'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION chronicle.read_barrier() IS
'confirm leadership with a quorum (ReadIndex) and wait until this node applied up to it: reads after it are linearizable';

-- Streams created through the Raft log (known on every node).  Inserting
-- into any other stream on a replicated server is refused.
CREATE TABLE chronicle.cluster_streams (relid oid PRIMARY KEY);
REVOKE ALL ON chronicle.cluster_streams FROM PUBLIC;
GRANT SELECT ON chronicle.cluster_streams TO PUBLIC;

-- Parts of replicated transactions too large for one Raft entry, kept by
-- every node's worker until the transaction's final part applies them all
-- at once (or an abort discards them).  Filled and emptied by the apply of
-- Raft entries only, so every node holds the same rows at the same index.
CREATE TABLE chronicle.open_parts (
    origin bigint NOT NULL,        -- node whose session sent the transaction
    txn bigint NOT NULL,           -- random id chosen by that session
    part int NOT NULL,             -- 0, 1, ... in sending order
    boot bigint NOT NULL,          -- the origin worker's run (a restart discards older)
    entry_index bigint NOT NULL,   -- the Raft log entry that carried the part ...
    entry_offset int NOT NULL,     -- ... where in it the part's events start ...
    entry_length int NOT NULL,     -- ... and their length (batch format)
    data bytea,                    -- the events themselves, copied here only when the
                                   -- log is compacted past entry_index; else NULL
    PRIMARY KEY (origin, txn, part)
);
-- the events are already compact; do not spend CPU compressing them
ALTER TABLE chronicle.open_parts ALTER COLUMN data SET STORAGE EXTERNAL;
REVOKE ALL ON chronicle.open_parts FROM PUBLIC;
GRANT SELECT (origin, txn, part, boot, entry_index, entry_length) ON chronicle.open_parts TO PUBLIC;

-- Members added with chronicle.add_node() (the initial ones come from
-- chronicle_raft.initial_cluster), replicated through the Raft log.
CREATE TABLE chronicle.cluster_members (
    node_id bigint PRIMARY KEY,
    address text NOT NULL,
    removed boolean NOT NULL DEFAULT false
);
REVOKE ALL ON chronicle.cluster_members FROM PUBLIC;
GRANT SELECT ON chronicle.cluster_members TO PUBLIC;

CREATE FUNCTION chronicle.add_node(node_id int, address text)
RETURNS void
AS 'MODULE_PATHNAME', 'chronicle_add_node'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION chronicle.add_node(int, text) IS
'add a server (host:port of its Raft transport) as a learner; it is promoted to voter once caught up';

CREATE FUNCTION chronicle.remove_node(node_id int)
RETURNS void
AS 'MODULE_PATHNAME', 'chronicle_remove_node'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION chronicle.remove_node(int) IS
'remove a member for good (its id is never reused); its data stays readable locally';

CREATE FUNCTION chronicle.transfer_leadership(node_id int)
RETURNS void
AS 'MODULE_PATHNAME', 'chronicle_transfer_leadership'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION chronicle.transfer_leadership(int) IS
'ask the leader to hand leadership to this voter (for rolling restarts)';

REVOKE EXECUTE ON FUNCTION chronicle.add_node(int, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION chronicle.remove_node(int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION chronicle.transfer_leadership(int) FROM PUBLIC;
