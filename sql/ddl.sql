-- catalog integration: schema, dependencies, dump-visible definitions
SET timezone = 'UTC';
CREATE SCHEMA app;
CREATE TABLE app.events (ts timestamptz NOT NULL, v int) USING chronicle;
INSERT INTO app.events VALUES ('2026-01-01', 1);
SELECT c.relname, a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relname = 'events';
ALTER TABLE app.events SET SCHEMA public;
SELECT * FROM chronicle.aggregate('public.events', 'v', NULL::timestamptz, NULL);
-- default_table_access_method makes CREATE TABLE create streams
SET default_table_access_method = chronicle;
CREATE TABLE by_default (ts bigint NOT NULL, v int);
SELECT amname FROM pg_am a JOIN pg_class c ON c.relam = a.oid WHERE c.relname = 'by_default';
CREATE TABLE by_default_bad (v int, ts bigint NOT NULL);
RESET default_table_access_method;
-- views over streams work
CREATE VIEW recent AS SELECT * FROM events WHERE ts > '2025-01-01';
SELECT * FROM recent;
-- the extension cannot be dropped while streams exist, only with CASCADE
\set VERBOSITY terse
DROP EXTENSION chronicle_raft;
DROP SCHEMA app;
