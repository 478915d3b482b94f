-- pgsink database package: removes the `pgsink` schema and everything in it —
-- the stored offsets (synchronized sinks then restart from Kafka's committed
-- offsets or auto.offset.reset) and the dead letters. Target tables are not
-- touched. Run from psql (`\i sql/uninstall.sql`) or with `pgsink sql uninstall`.
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('pgsink.install'));
DROP SCHEMA IF EXISTS pgsink CASCADE;
COMMIT;
