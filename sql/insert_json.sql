-- chronicle.insert(stream, jsonb)
SET timezone = 'UTC';
CREATE TABLE j (ts timestamptz NOT NULL, sensor_id int, value float8, tag text DEFAULT 'none', payload jsonb, ok bool) USING chronicle;
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:01", "sensor_id": 1, "value": 1.5}');
SELECT chronicle.insert('j', '[{"ts": "2026-01-01 00:00:03", "sensor_id": 3, "value": "3.5", "tag": "t3"},
                              {"ts": "2026-01-01 00:00:02", "sensor_id": null, "payload": {"k": [1, 2]}, "ok": true}]');
SELECT chronicle.insert('j', '[]');
SELECT * FROM j;

-- errors insert nothing
SELECT chronicle.insert('j', '[{"ts": "2026-01-01 00:00:04"}, {"ts": "2026-01-01 00:00:05", "nope": 1}]');
SELECT chronicle.insert('j', '[{"ts": "2026-01-01 00:00:04"}, {"sensor_id": 5}]');
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:04", "sensor_id": "five"}');
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:04", "sensor_id": 4.5}');
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:04", "sensor_id": true}');
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:04", "tag": {"a": 1}}');
SELECT chronicle.insert('j', '{"ts": 12345}');
SELECT chronicle.insert('j', '{"ts": null}');
SELECT chronicle.insert('j', '{"ts": "infinity"}');
SELECT chronicle.insert('j', '[1, 2]');
SELECT chronicle.insert('j', '"just a string"');
SELECT chronicle.insert('j', NULL);
SELECT chronicle.insert('pg_class', '{}');
SELECT count(*) FROM j;

-- constraints and triggers apply as for INSERT
ALTER TABLE j ADD CONSTRAINT positive CHECK (sensor_id > 0);
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:06", "sensor_id": -1}');
SELECT count(*) FROM j;

-- transactional like INSERT
BEGIN;
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:07", "sensor_id": 7}');
ROLLBACK;
SELECT count(*) FROM j;

-- privileges are checked
CREATE ROLE chronicle_reader;
GRANT USAGE ON SCHEMA public TO chronicle_reader;
GRANT SELECT ON j TO chronicle_reader;
SET ROLE chronicle_reader;
SELECT chronicle.insert('j', '{"ts": "2026-01-01 00:00:08"}');
INSERT INTO j (ts) VALUES ('2026-01-01 00:00:08');
SELECT count(*) FROM j;
RESET ROLE;
DROP OWNED BY chronicle_reader;
DROP ROLE chronicle_reader;
