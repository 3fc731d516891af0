-- invalid stream definitions: clear errors with hints
\set VERBOSITY default
CREATE TABLE e1 (id int, ts timestamptz NOT NULL) USING chronicle;
CREATE TABLE e2 (ts timestamptz, v int) USING chronicle;
CREATE TABLE e3 (ts text NOT NULL) USING chronicle;
CREATE TABLE e4 (ts timestamptz NOT NULL, p point) USING chronicle;
CREATE TABLE e5 (ts timestamptz NOT NULL, a int[]) USING chronicle;
CREATE TABLE e6 () USING chronicle;
CREATE UNLOGGED TABLE e7 (ts timestamptz NOT NULL) USING chronicle;
CREATE TEMP TABLE e8 (ts timestamptz NOT NULL) USING chronicle;
CREATE TABLE e9 (ts timestamptz NOT NULL, v int, PRIMARY KEY (ts)) USING chronicle;
CREATE TABLE parent (ts timestamptz NOT NULL);
CREATE TABLE e10 (v int) INHERITS (parent) USING chronicle;
CREATE TABLE ref (id int PRIMARY KEY);
CREATE TABLE e11 (ts timestamptz NOT NULL, id int REFERENCES ref) USING chronicle;
CREATE TABLE part (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
CREATE TABLE e12 PARTITION OF part FOR VALUES FROM ('2026-01-01') TO ('2026-02-01') USING chronicle;
SELECT count(*) FROM pg_class WHERE relname LIKE 'e_' OR relname LIKE 'e__';

-- unsupported operations on a stream
CREATE TABLE s (ts timestamptz NOT NULL, v int, note text) USING chronicle;
INSERT INTO s VALUES ('2026-01-01', 1, 'a'), ('2026-01-02', 2, 'b');
UPDATE s SET v = 3;
DELETE FROM s;
DELETE FROM s WHERE v = 1;
MERGE INTO s USING (SELECT 1 AS x) src ON false WHEN NOT MATCHED THEN INSERT VALUES ('2026-01-03', 3, 'c');
INSERT INTO s VALUES ('2026-01-03', 3, 'c') ON CONFLICT DO NOTHING;
SELECT * FROM s FOR UPDATE;
SELECT * FROM s FOR SHARE;
SELECT * FROM (SELECT * FROM s FOR KEY SHARE) sub;
WITH x AS (DELETE FROM s RETURNING *) SELECT * FROM x;
SELECT * FROM s TABLESAMPLE SYSTEM (50);
SELECT * FROM s WHERE ctid = '(0,1)';
CREATE INDEX ON s (ts);
CREATE INDEX ON s USING brin (ts);
CREATE UNIQUE INDEX ON s (v);
ALTER TABLE s ADD PRIMARY KEY (ts);
ALTER TABLE s ADD COLUMN w int;
ALTER TABLE s DROP COLUMN note;
ALTER TABLE s ALTER COLUMN v TYPE bigint;
ALTER TABLE s ALTER COLUMN ts DROP NOT NULL;
ALTER TABLE s SET ACCESS METHOD heap;
ALTER TABLE s SET TABLESPACE pg_default;
ALTER TABLE s SET (fillfactor = 50);
ALTER TABLE s ADD CONSTRAINT fk FOREIGN KEY (v) REFERENCES ref (id);
CREATE TABLE refs_stream (ts timestamptz REFERENCES s (ts));
ALTER TABLE ref ADD CONSTRAINT fk2 FOREIGN KEY (id) REFERENCES s (v);
CREATE TABLE h (ts timestamptz NOT NULL, v int);
ALTER TABLE h SET ACCESS METHOD chronicle;
VACUUM FULL s;
CLUSTER s;
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER after_row AFTER INSERT ON s FOR EACH ROW EXECUTE FUNCTION noop();
BEGIN;
INSERT INTO s VALUES ('2026-01-05', 5, 'e');
PREPARE TRANSACTION 'p1';
-- the stream is untouched by all of the above
SELECT * FROM s;

-- what streams do support
ALTER TABLE s ALTER COLUMN v SET DEFAULT 42;
ALTER TABLE s ADD CONSTRAINT v_positive CHECK (v > 0);
INSERT INTO s (ts, note) VALUES ('2026-01-04', 'defaulted');
INSERT INTO s VALUES ('2026-01-04', -1, 'violates');
CREATE TRIGGER before_row BEFORE INSERT ON s FOR EACH ROW EXECUTE FUNCTION noop();
INSERT INTO s VALUES ('2026-01-06', 6, 'triggered');
SELECT * FROM s;
-- NULL event time is refused
INSERT INTO s VALUES (NULL, 1, 'x');
