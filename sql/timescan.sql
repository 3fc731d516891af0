-- WHERE clauses on the event time read only the matching range
SET timezone = 'UTC';
CREATE TABLE ev (ts bigint NOT NULL, v int) USING chronicle;
-- runs of duplicate times that span leaf boundaries, plus out-of-order events
INSERT INTO ev SELECT (i / 500) * 10, i FROM generate_series(0, 99999) i;
INSERT INTO ev SELECT i * 7 + 3, -i FROM generate_series(0, 2000) i;
ANALYZE ev;

EXPLAIN (COSTS OFF) SELECT * FROM ev WHERE ts >= 100 AND ts < 200;
EXPLAIN (COSTS OFF) SELECT * FROM ev WHERE 100 <= ts;
EXPLAIN (COSTS OFF) SELECT * FROM ev WHERE v > 5;

-- pushdown gives the same rows as a full scan, for many ranges and operators
CREATE FUNCTION ranges_agree(n int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  mismatches bigint := 0;
  a bigint; b bigint; r1 text; r2 text; q text;
  ops text[] := ARRAY['>=', '>', '=', '<=', '<'];
  op1 text; op2 text;
BEGIN
  PERFORM setseed(0.42);
  FOR i IN 1..n LOOP
    a := (random() * 2100)::bigint - 50;
    b := a + (random() * 300)::bigint;
    op1 := ops[1 + (i % 5)];
    op2 := ops[1 + ((i / 5) % 5)];
    q := format('SELECT count(*)::text || '':'' || coalesce(sum(v), 0) || '':'' || coalesce(string_agg(v::text, '','' ORDER BY v), '''') FROM (SELECT v FROM ev WHERE ts %s %s AND ts %s %s) s',
                op1, a, op2, b);
    SET LOCAL chronicle_raft.enable_time_range_scan = on;
    EXECUTE q INTO r1;
    SET LOCAL chronicle_raft.enable_time_range_scan = off;
    EXECUTE q INTO r2;
    IF r1 IS DISTINCT FROM r2 THEN
      mismatches := mismatches + 1;
      RAISE NOTICE 'mismatch for %', q;
    END IF;
  END LOOP;
  RETURN mismatches;
END $$;
SELECT ranges_agree(150) AS mismatches;

-- a narrow range reads a handful of pages; a full scan reads them all
CREATE FUNCTION blocks_read(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE p json;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ' || q INTO p;
  RETURN (p -> 0 -> 'Plan' -> 'Plans' -> 0 ->> 'Shared Hit Blocks')::bigint
       + (p -> 0 -> 'Plan' -> 'Plans' -> 0 ->> 'Shared Read Blocks')::bigint;
END $$;
SELECT blocks_read('SELECT count(*) FROM ev WHERE ts >= 1000 AND ts < 1010') <= 8 AS narrow_reads_few,
       blocks_read('SELECT count(*) FROM ev WHERE v >= 0') > 100 AS full_scan_reads_all;

-- the order of a range scan is the stream's order, ties in arrival order
SELECT ts, v FROM ev WHERE ts = 20 ORDER BY ts LIMIT 3;
SELECT count(*), min(v), max(v) FROM ev WHERE ts = 20;
SELECT count(*) FROM ev WHERE ts = 20 AND ts = 30;
SELECT count(*) FROM ev WHERE ts > 9223372036854775807;
SELECT count(*) FROM ev WHERE ts < -9223372036854775808;
SELECT count(*) FROM ev WHERE ts >= 1995 AND ts <= 1995;
SELECT count(*) FROM ev WHERE ts > NULL::bigint;
-- integer constants of other widths
SELECT count(*) FROM ev WHERE ts < 20::int2;

-- parameters: prepared statements and nested loops re-evaluate the bounds
PREPARE q(bigint, bigint) AS SELECT count(*), sum(v) FROM ev WHERE ts >= $1 AND ts < $2;
EXECUTE q(100, 200);
EXECUTE q(1000, 1010);
SELECT count(*), sum(v) FROM ev WHERE ts >= 100 AND ts < 200;
SELECT b.lo, (SELECT count(*) FROM ev WHERE ev.ts >= b.lo AND ev.ts < b.lo + 10) AS n
  FROM (VALUES (0), (100), (1995), (5000)) b(lo) ORDER BY b.lo;

-- timestamp streams accept timestamptz, timestamp and date bounds
CREATE TABLE tev (ts timestamptz NOT NULL, v int) USING chronicle;
INSERT INTO tev SELECT '2026-01-01'::timestamptz + i * interval '1 minute', i FROM generate_series(0, 9999) i;
EXPLAIN (COSTS OFF) SELECT * FROM tev WHERE ts >= '2026-01-02'::date AND ts < now();
SELECT count(*), min(v), max(v) FROM tev WHERE ts >= '2026-01-02'::date AND ts < '2026-01-03'::date;
SELECT count(*) FROM tev WHERE ts >= '2026-01-02 00:00'::timestamp AND ts < '2026-01-02 01:00';
SELECT count(*) FROM tev WHERE ts BETWEEN '2026-01-05 00:00' AND '2026-01-05 00:10';
SET chronicle_raft.enable_time_range_scan = off;
SELECT count(*) FROM tev WHERE ts BETWEEN '2026-01-05 00:00' AND '2026-01-05 00:10';
EXPLAIN (COSTS OFF) SELECT * FROM tev WHERE ts >= '2026-01-02'::date;
RESET chronicle_raft.enable_time_range_scan;
SHOW chronicle_raft.enable_time_range_scan;
