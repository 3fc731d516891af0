-- every supported column type round-trips, with NULLs
SET timezone = 'UTC';
CREATE TABLE t_all (
  ts timestamptz NOT NULL, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
  n numeric, tz timestamptz, tl timestamp, d date, u uuid, t text, vc varchar(20),
  by bytea, j jsonb) USING chronicle;
INSERT INTO t_all VALUES
 ('2026-01-01 00:00:01', true, 1, 2, 3, 1.5, 2.25, 12345.6789, '2026-03-01 10:00', '2026-03-01 10:00',
  '2026-03-01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'hello', 'world', '\xdeadbeef', '{"a": [1, 2]}'),
 ('2026-01-01 00:00:02', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 ('2026-01-01 00:00:03', false, -32768, -2147483648, -9223372036854775808, '-Infinity', 'NaN',
  'NaN', '1999-12-31 23:59:59.999999', '1999-12-31', '0001-01-01', '00000000-0000-0000-0000-000000000000',
  '', '', '\x', 'null'),
 ('2026-01-01 00:00:04', true, 32767, 2147483647, 9223372036854775807, 'Infinity', '-0',
  '-0.000000000000000001', NULL, NULL, NULL, NULL, repeat('x', 1024), 'éàü', NULL, '"ütf"');
SELECT * FROM t_all;
SELECT length(t) FROM t_all WHERE ts = '2026-01-01 00:00:04';

-- timestamp and bigint event times
CREATE TABLE t_ts (ts timestamp NOT NULL, v int) USING chronicle;
INSERT INTO t_ts VALUES ('2026-01-01 12:00', 2), ('2026-01-01 11:00', 1);
SELECT * FROM t_ts;
CREATE TABLE t_big (ts bigint NOT NULL, v numeric) USING chronicle;
INSERT INTO t_big VALUES (9223372036854775807, 1), (-9223372036854775808, 2), (0, 3.5);
SELECT * FROM t_big;

-- inline value limit: 1024 bytes is fine, 1025 is an error naming the column
INSERT INTO t_all (ts, t) VALUES ('2026-01-02', repeat('y', 1025));
INSERT INTO t_all (ts, by) VALUES ('2026-01-02', convert_to(repeat('z', 2000), 'UTF8'));
-- the whole event must stay under the row limit
INSERT INTO t_all (ts, t, vc, j) VALUES ('2026-01-02', repeat('a', 1000), 'b', to_jsonb(repeat('c', 1000)));
SELECT count(*) FROM t_all;

-- infinite event times are refused
INSERT INTO t_ts VALUES ('infinity', 1);
