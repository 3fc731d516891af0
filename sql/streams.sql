-- basic stream behaviour: ordering, ties, out-of-order, inserts of every kind
CREATE TABLE r (ts timestamptz NOT NULL, sensor_id int, value float8) USING chronicle;
SET timezone = 'UTC';

-- single-row and multi-row INSERT, out of order within and across statements
INSERT INTO r VALUES ('2026-01-01 00:00:05', 1, 5.0);
INSERT INTO r VALUES ('2026-01-01 00:00:03', 2, 3.0), ('2026-01-01 00:00:01', 3, 1.0),
                     ('2026-01-01 00:00:04', 4, 4.0);
-- ties keep insertion order
INSERT INTO r VALUES ('2026-01-01 00:00:03', 5, 3.1);
INSERT INTO r VALUES ('2026-01-01 00:00:03', 6, 3.2), ('2026-01-01 00:00:03', 7, 3.3);
SELECT * FROM r;

-- INSERT ... SELECT, including from the stream itself
INSERT INTO r SELECT ts + interval '1 hour', sensor_id + 100, value * 2 FROM r;
SELECT count(*), min(ts), max(ts) FROM r;
SELECT * FROM r WHERE sensor_id > 100 LIMIT 3;

-- COPY goes through multi_insert
COPY r FROM STDIN WITH (FORMAT csv);
2026-01-01 00:00:02,8,2.0
2026-01-01 00:00:00,9,0.5
2026-01-02 00:00:00,10,
\.
SELECT * FROM r WHERE ts < '2026-01-01 00:00:03' OR ts >= '2026-01-02';

-- RETURNING works for new rows
INSERT INTO r VALUES ('2026-01-03', 11, 11.0) RETURNING ts, sensor_id, value;

-- a larger load: spans many leaves and index levels, then out-of-order rows
CREATE TABLE big (ts bigint NOT NULL, v int8) USING chronicle;
INSERT INTO big SELECT i * 10, i FROM generate_series(1, 200000) i;
-- every 7th position gets an older event, forcing leaf splits deep inside
INSERT INTO big SELECT i * 70 + 5, -i FROM generate_series(1, 20000) i;
SELECT events, out_of_order_events, tree_height >= 3 AS tall FROM chronicle.streams WHERE stream = 'big'::regclass;
SELECT count(*), sum(v), min(ts), max(ts) FROM big;
-- the scan is in time order
SELECT count(*) AS order_violations FROM (
  SELECT ts < lag(ts) OVER () AS bad FROM big) s WHERE bad;
SELECT * FROM big WHERE ts BETWEEN 60 AND 90;

-- CREATE TABLE AS and SELECT INTO a stream need a NOT NULL time column
CREATE TABLE copy_of_r USING chronicle AS SELECT * FROM r;

-- ANALYZE gives the planner correct row estimates
ANALYZE big;
SELECT reltuples::bigint FROM pg_class WHERE relname = 'big';
CREATE FUNCTION plan_rows(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE p json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO p;
  RETURN (p -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END $$;
SELECT plan_rows('SELECT * FROM big') AS planner_rows;

-- pg_relation_size and a dense layout: in-order appends fill leaves
-- completely (an (int8, int8) event is 17 bytes + a 2-byte offset); splits
-- from events arriving out of order leave leaves half full
CREATE TABLE dense (ts bigint NOT NULL, v int8) USING chronicle;
INSERT INTO dense SELECT i, i FROM generate_series(1, 100000) i;
SELECT pg_relation_size('dense') / 100000.0 BETWEEN 19 AND 20 AS dense_in_order,
       pg_relation_size('big') / 220000.0 < 40 AS dense_enough_out_of_order;
DROP TABLE dense;
-- late batches that fall in a gap between stored events are split around,
-- so they fill leaves too: ten ranges of 10,000 events, loaded one
-- transaction each in the order 9 7 5 3 1 (each before all stored events)
-- then 8 6 4 2 0 (each between two stored ranges)
CREATE TABLE gaps (ts bigint NOT NULL, v int8) USING chronicle;
DO $$
DECLARE r int;
BEGIN
  FOREACH r IN ARRAY ARRAY[9, 7, 5, 3, 1, 8, 6, 4, 2, 0] LOOP
    INSERT INTO gaps SELECT i, i FROM generate_series(r * 10000, r * 10000 + 9999) i;
    COMMIT;
  END LOOP;
END $$;
SELECT pg_relation_size('gaps') / 100000.0 < 22 AS dense_late_batches,
       count(*), sum(v), min(ts), max(ts) FROM gaps;
SELECT count(*) AS order_violations FROM (
  SELECT ts <> lag(ts) OVER () + 1 AS bad FROM gaps) s WHERE bad;
SELECT count, sum FROM chronicle.aggregate('gaps', 'v', 25000::bigint, 75000::bigint);
DROP TABLE gaps;
-- transactions that each overlap the previous one by half (the usual
-- disorder of concurrent sessions: some events are a little late): the
-- rightmost leaf splits before its newest eighth, and a full leaf before it
-- moves its newest eighth into it instead of splitting, so leaves stay
-- nearly full (split in half: 29 bytes/event; now 22.5; dense: 19.5)
CREATE TABLE late (ts bigint NOT NULL, v int8) USING chronicle;
DO $$
BEGIN
  FOR k IN 1 .. 400 LOOP
    INSERT INTO late SELECT i, k FROM generate_series(k * 50, k * 50 + 99) i;
    COMMIT;
  END LOOP;
END $$;
SELECT pg_relation_size('late') / 40000.0 < 24 AS dense_slightly_late,
       count(*), sum(ts), count(DISTINCT ts) FROM late;
-- time order, and ties in commit order
SELECT count(*) AS order_violations FROM (
  SELECT ts < lag(ts) OVER () OR (ts = lag(ts) OVER () AND v < lag(v) OVER ()) AS bad
    FROM late) s WHERE bad;
SELECT a.count, a.sum, (a.count, a.sum) = (SELECT count(*), sum(v) FROM late WHERE ts >= 100 AND ts < 20000)
       AS agrees FROM chronicle.aggregate('late', 'v', 100::bigint, 20000::bigint) a;
DROP TABLE late;
-- the file grows ahead of the tree in chunks of at most 1/64 of its size
-- (one write and an fallocate instead of a zeroed write per block); the
-- meta page's next_block (bytes 112..115 of the meta, after the 24-byte
-- page header) counts the blocks in use
CREATE EXTENSION pageinspect;
CREATE FUNCTION blocks_in_use(stream regclass) RETURNS bigint LANGUAGE sql AS $$
  SELECT get_byte(p, 136)::bigint | (get_byte(p, 137) << 8) | (get_byte(p, 138) << 16)
         | (get_byte(p, 139)::bigint << 24)
    FROM get_raw_page(stream::text, 0) p $$;
CREATE TABLE grow (ts bigint NOT NULL, v int8) USING chronicle;
INSERT INTO grow SELECT i, i FROM generate_series(1, 300000) i;
SELECT blocks_in_use('grow') BETWEEN 690 AND 720 AS used_as_dense,
       pg_relation_size('grow') / 8192 > blocks_in_use('grow') AS extended_ahead,
       pg_relation_size('grow') / 8192 <= blocks_in_use('grow') * 65 / 64 + 1 AS bounded,
       (SELECT count(*) FROM grow) AS events;
-- blocks past next_block are reused, not skipped, after TRUNCATE too
TRUNCATE grow;
INSERT INTO grow SELECT i, i FROM generate_series(1, 1000) i;
SELECT blocks_in_use('grow') AS used, pg_relation_size('grow') / 8192 AS file_blocks,
       (SELECT sum(v) FROM grow) AS sum;
DROP TABLE grow;
DROP FUNCTION blocks_in_use(regclass);
DROP EXTENSION pageinspect;

-- rename keeps working
ALTER TABLE r RENAME TO readings;
ALTER TABLE readings RENAME COLUMN value TO reading;
SELECT count(*) FROM readings;
SELECT stream, events FROM chronicle.streams ORDER BY stream::text;

-- TRUNCATE empties, new inserts work after it
TRUNCATE readings;
SELECT count(*) FROM readings;
INSERT INTO readings VALUES ('2026-02-01', 1, 1);
SELECT * FROM readings;
SELECT stream, events, batches FROM chronicle.streams WHERE stream = 'readings'::regclass;

-- VACUUM and ANALYZE are accepted
VACUUM readings;
ANALYZE readings;

DROP TABLE readings;
SELECT count(*) FROM chronicle.streams WHERE stream::text = 'readings';
