-- transactional staging: aborted rows never appear
SET timezone = 'UTC';
CREATE TABLE tx (ts timestamptz NOT NULL, v int) USING chronicle;

BEGIN;
INSERT INTO tx VALUES ('2026-01-01', 1);
-- a transaction does not see its own uncommitted events
SELECT count(*) AS own_rows_visible FROM tx;
ROLLBACK;
SELECT count(*) FROM tx;

BEGIN;
INSERT INTO tx VALUES ('2026-01-01', 1);
SAVEPOINT a;
INSERT INTO tx VALUES ('2026-01-02', 2);
SAVEPOINT b;
INSERT INTO tx VALUES ('2026-01-03', 3);
ROLLBACK TO SAVEPOINT b;
INSERT INTO tx VALUES ('2026-01-04', 4);
RELEASE SAVEPOINT a;
SAVEPOINT c;
INSERT INTO tx VALUES ('2026-01-05', 5);
ROLLBACK TO SAVEPOINT c;
COMMIT;
SELECT * FROM tx;

-- an error inside a plpgsql exception block rolls back only that block
DO $$
BEGIN
  INSERT INTO tx VALUES ('2026-01-06', 6);
  BEGIN
    INSERT INTO tx VALUES ('2026-01-07', 7);
    PERFORM 1 / 0;
  EXCEPTION WHEN division_by_zero THEN
    NULL;
  END;
END $$;
SELECT * FROM tx WHERE ts >= '2026-01-06';

-- a failing statement aborts the whole transaction
BEGIN;
INSERT INTO tx VALUES ('2026-01-08', 8);
INSERT INTO tx VALUES ('2026-01-09', 1 / 0);
COMMIT;
SELECT count(*) FROM tx WHERE ts >= '2026-01-08';

-- TRUNCATE in the same transaction discards earlier staged events,
-- unless the TRUNCATE itself is rolled back
BEGIN;
INSERT INTO tx VALUES ('2026-02-01', 10);
SAVEPOINT t;
TRUNCATE tx;
ROLLBACK TO SAVEPOINT t;
INSERT INTO tx VALUES ('2026-02-02', 11);
COMMIT;
SELECT * FROM tx WHERE ts >= '2026-02-01';
BEGIN;
INSERT INTO tx VALUES ('2026-03-01', 12);
TRUNCATE tx;
INSERT INTO tx VALUES ('2026-03-02', 13);
COMMIT;
SELECT * FROM tx;

-- one transaction, two streams: both or neither
CREATE TABLE tx2 (ts bigint NOT NULL, v int) USING chronicle;
BEGIN;
INSERT INTO tx VALUES ('2026-04-01', 20);
INSERT INTO tx2 VALUES (1, 20);
ROLLBACK;
BEGIN;
INSERT INTO tx VALUES ('2026-04-01', 21);
INSERT INTO tx2 VALUES (1, 21);
COMMIT;
SELECT (SELECT count(*) FROM tx) AS tx_rows, (SELECT count(*) FROM tx2) AS tx2_rows;

-- dropping a stream after inserting into it in the same transaction
BEGIN;
INSERT INTO tx2 VALUES (2, 22);
DROP TABLE tx2;
COMMIT;
SELECT count(*) FROM chronicle.streams WHERE stream::text = 'tx2';

-- a stream created and filled in one transaction
BEGIN;
CREATE TABLE tx3 (ts bigint NOT NULL, v int) USING chronicle;
INSERT INTO tx3 SELECT i, i FROM generate_series(1, 1000) i;
COMMIT;
SELECT count(*), sum(v) FROM tx3;
BEGIN;
CREATE TABLE tx4 (ts bigint NOT NULL, v int) USING chronicle;
INSERT INTO tx4 VALUES (1, 1);
ROLLBACK;
SELECT count(*) FROM pg_class WHERE relname = 'tx4';
