-- range aggregates over the TAB+ tree, checked against plain SQL
SET timezone = 'UTC';
CREATE TABLE m (ts timestamptz NOT NULL, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, label text) USING chronicle;
-- 100k events, one per second, values exactly representable in float8
INSERT INTO m SELECT '2026-01-01'::timestamptz + i * interval '1 second',
                     (i % 100)::int2, i, i::int8 * 1000000000000, (i % 8) * 0.5, i * 0.25,
                     i * 0.125, 'x'
                FROM generate_series(0, 99999) i;
-- NULLs are skipped; out-of-order events land inside
INSERT INTO m SELECT '2026-01-01'::timestamptz + i * interval '1 second' + interval '500 ms',
                     NULL, NULL, NULL, NULL, -1, NULL, NULL
                FROM generate_series(0, 99999, 1000) i;

SELECT * FROM chronicle.aggregate('m', 'i4', '2026-01-01 01:00', '2026-01-01 02:00');
SELECT count(i4), sum(i4), min(i4), max(i4), avg(i4) FROM m WHERE ts >= '2026-01-01 01:00' AND ts < '2026-01-01 02:00';

-- every numeric type over the same interval
SELECT 'i2' AS col, * FROM chronicle.aggregate('m', 'i2', '2026-01-01 00:10', '2026-01-01 10:00')
UNION ALL SELECT 'i8', * FROM chronicle.aggregate('m', 'i8', '2026-01-01 00:10', '2026-01-01 10:00')
UNION ALL SELECT 'f4', * FROM chronicle.aggregate('m', 'f4', '2026-01-01 00:10', '2026-01-01 10:00')
UNION ALL SELECT 'f8', * FROM chronicle.aggregate('m', 'f8', '2026-01-01 00:10', '2026-01-01 10:00')
UNION ALL SELECT 'n', * FROM chronicle.aggregate('m', 'n', '2026-01-01 00:10', '2026-01-01 10:00');
SELECT count(i2), sum(i2), min(i2), max(i2), count(i8), sum(i8), count(f4), sum(f4), count(f8), sum(f8), min(f8), count(n), sum(n)
  FROM m WHERE ts >= '2026-01-01 00:10' AND ts < '2026-01-01 10:00';

-- int8 sums beyond 2^63 stay exact
SELECT sum FROM chronicle.aggregate('m', 'i8', NULL, NULL);
SELECT sum(i8) FROM m;

-- unbounded sides, empty intervals, intervals outside the data
SELECT count, sum FROM chronicle.aggregate('m', 'i4', NULL, '2026-01-01 00:00:10');
SELECT count, sum FROM chronicle.aggregate('m', 'i4', '2026-01-02 03:46:30', NULL);
SELECT * FROM chronicle.aggregate('m', 'i4', '2026-01-01 05:00', '2026-01-01 05:00');
SELECT * FROM chronicle.aggregate('m', 'i4', '2030-01-01', '2031-01-01');
SELECT count FROM chronicle.aggregate('m', 'i4', '-infinity'::timestamptz, 'infinity'::timestamptz);
-- bounds as timestamptz, timestamp, date and text all work
SELECT count FROM chronicle.aggregate('m', 'i4', '2026-01-01'::date, '2026-01-02'::date);
SELECT count FROM chronicle.aggregate('m', 'i4', '2026-01-01'::timestamp, now() + interval '100 years');

-- cost is O(log n): a narrow and a whole-range aggregate read a handful of pages
SELECT tree_height FROM chronicle.streams WHERE stream = 'm'::regclass;
SELECT chronicle.aggregate_pages_read('m', '2026-01-01 01:00'::timestamptz, '2026-01-01 01:00:05'::timestamptz) <= 8 AS narrow_cheap,
       chronicle.aggregate_pages_read('m', '2026-01-01 00:00:01'::timestamptz, '2026-01-02 03:46:38'::timestamptz) <= 8 AS wide_cheap,
       chronicle.aggregate_pages_read('m', NULL::timestamptz, NULL) AS whole;

-- bucketed aggregates: the dashboard query
SELECT * FROM chronicle.aggregate('m', 'f8', '2026-01-01 00:00', '2026-01-01 04:00', interval '1 hour');
SELECT date_trunc('hour', ts) AS bucket_start, count(f8), sum(f8), min(f8), max(f8)
  FROM m WHERE ts >= '2026-01-01 00:00' AND ts < '2026-01-01 04:00' GROUP BY 1 ORDER BY 1;
-- the last bucket is cut at "to"; NULL bounds take the stream's range
SELECT count(*), sum(count) FROM chronicle.aggregate('m', 'i4', '2026-01-01 00:00', '2026-01-01 00:25', interval '10 minutes');
SELECT count(*), sum(count) FROM chronicle.aggregate('m', 'i4', NULL::timestamptz, NULL, interval '1 day');
-- month buckets follow the calendar
SELECT bucket_start, count FROM chronicle.aggregate('m', 'i4', '2025-12-01'::timestamptz, '2026-03-01', interval '1 month');

-- bigint streams
CREATE TABLE k (ts bigint NOT NULL, v int8) USING chronicle;
INSERT INTO k SELECT i, i * 2 FROM generate_series(1, 1000) i;
SELECT * FROM chronicle.aggregate('k', 'v', 100, 200);
SELECT * FROM chronicle.aggregate('k', 'v', 1, 1001, 250::bigint);

-- time_range and the streams view
SELECT * FROM chronicle.time_range('m');
SELECT * FROM chronicle.time_range('k');
SELECT stream, events, first_event, last_event, out_of_order_events, batches FROM chronicle.streams ORDER BY stream::text;

-- only fixed-width columns before the text one: the apply folds each run of
-- NULL-free events column by column, and a run with NULLs event by event.
-- The index entries (a whole-range aggregate reads only the root's) must
-- agree with plain SQL over the same events: extremes, infinities, NaN,
-- negatives, and NULLs clustered in a few leaves.
CREATE TABLE fx (ts bigint NOT NULL, a int2, b int4, c int8, d float4, e float8, note text) USING chronicle;
INSERT INTO fx SELECT g,
       CASE WHEN g BETWEEN 4000 AND 4100 THEN NULL WHEN g = 10 THEN -32768 WHEN g = 11 THEN 32767 ELSE (g * 37) % 30000 - 15000 END,
       CASE WHEN g = 12 THEN -2147483648 WHEN g = 13 THEN 2147483647 ELSE ((g::int8 * 1000003) % 2000000000 - 1000000000)::int4 END,
       CASE WHEN g BETWEEN 9000 AND 9005 THEN NULL ELSE g::int8 * -123456789012 END,
       CASE WHEN g = 500 THEN 'Infinity' WHEN g = 501 THEN '-Infinity' ELSE (g % 1000) * 0.5 - 200 END,
       CASE WHEN g = 777 THEN 'NaN' WHEN g BETWEEN 4050 AND 4060 THEN NULL ELSE g * 0.25 - 1000 END,
       'n' || g
  FROM generate_series(1, 20000) g;
SELECT agg.count = sql.count AND agg.sum = sql.sum AND agg.min = sql.min AND agg.max = sql.max AS agrees, col
  FROM (SELECT 'a' AS col, count(a) AS count, sum(a)::numeric AS sum, min(a)::numeric AS min, max(a)::numeric AS max FROM fx
        UNION ALL SELECT 'b', count(b), sum(b), min(b), max(b) FROM fx
        UNION ALL SELECT 'c', count(c), sum(c), min(c), max(c) FROM fx) sql
  CROSS JOIN LATERAL chronicle.aggregate('fx', sql.col, NULL::bigint, NULL) agg
 ORDER BY col;
SELECT agg.count = sql.count AND agg.sum::float8 = sql.sum AND agg.min::float8 = sql.min AND agg.max::float8 = sql.max AS agrees,
       col, agg.min, agg.max
  FROM (SELECT 'd' AS col, count(d) AS count, sum(d::float8) AS sum, min(d::float8) AS min, max(d::float8) AS max FROM fx
        UNION ALL SELECT 'e', count(e), sum(e), min(e), max(e) FROM fx) sql
  CROSS JOIN LATERAL chronicle.aggregate('fx', sql.col, NULL::bigint, NULL) agg
 ORDER BY col;
SELECT count, sum FROM chronicle.aggregate('fx', 'e', 1::bigint, 777);

-- errors
SELECT * FROM chronicle.aggregate('m', 'nope', NULL::timestamptz, NULL);
SELECT * FROM chronicle.aggregate('m', 'label', NULL::timestamptz, NULL);
SELECT * FROM chronicle.aggregate('m', 'ts', NULL::timestamptz, NULL);
SELECT * FROM chronicle.aggregate('m', 'i4', '2026-01-02', '2026-01-01');
SELECT * FROM chronicle.aggregate('m', 'i4', 1, 2);
SELECT * FROM chronicle.aggregate('m', 'i4', 'not a time', NULL);
SELECT * FROM chronicle.aggregate('k', 'v', '2026-01-01'::timestamptz, NULL);
SELECT * FROM chronicle.aggregate('pg_class', 'relpages', 1, 2);
SELECT * FROM chronicle.aggregate('no_such_table', 'v', 1, 2);
SELECT * FROM chronicle.aggregate(NULL, 'v', 1, 2);
SELECT * FROM chronicle.aggregate('m', 'i4', '2026-01-01'::timestamptz, '2026-01-02', interval '0 seconds');
SELECT * FROM chronicle.aggregate('m', 'i4', '2026-01-01'::timestamptz, '2026-01-02', interval '-1 hour');
SELECT * FROM chronicle.aggregate('m', 'i4', '2026-01-01'::timestamptz, '2026-01-02', 10::bigint);
SELECT * FROM chronicle.aggregate('k', 'v', 1, 100, interval '1 hour');
SELECT * FROM chronicle.aggregate('k', 'v', 1, 100, 0::bigint);
SELECT count(*) FROM chronicle.aggregate('m', 'i4', '2000-01-01'::timestamptz, '2026-01-01', interval '1 second');
