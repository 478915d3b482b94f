-- pgsink database package: installs (or upgrades in place) the `pgsink` schema
-- that holds the sink's state. Idempotent: run it as often as you like, from
-- psql (`\i sql/install.sql`) or with `pgsink sql install`; `pgsink run`
-- runs it by itself when the schema is missing or older.
--
-- What it creates:
--   pgsink.offsets           the next Kafka offset to load, per target table, topic and
--                            partition (synchronized delivery: written in the same
--                            transaction as the rows, so the table and its offsets
--                            never disagree)
--   pgsink.dead_letters      messages that could not become rows, with the reason
--   pgsink.commit_offsets()  the fenced offset update of a synchronized flush
--   pgsink.progress          a view: per table, topic and partition, the stored offset,
--                            when it was committed and by which converter version
BEGIN;

-- Two pgsink processes starting together must not install concurrently.
SELECT pg_advisory_xact_lock(hashtext('pgsink.install'));

CREATE SCHEMA IF NOT EXISTS pgsink;
COMMENT ON SCHEMA pgsink IS 'pgsink 1: Kafka offsets and dead letters of pgsink sinks';

CREATE TABLE IF NOT EXISTS pgsink.offsets (
    table_schema  text        NOT NULL,
    table_name    text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    next_offset   bigint      NOT NULL,
    plugin_hash   text,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, topic, partition)
);
COMMENT ON TABLE pgsink.offsets IS
    'Next Kafka offset to load per target table, topic and partition (synchronized delivery)';

CREATE TABLE IF NOT EXISTS pgsink.dead_letters (
    id                 bigserial   PRIMARY KEY,
    table_schema       text        NOT NULL,
    table_name         text        NOT NULL,
    topic              text        NOT NULL,
    partition          integer     NOT NULL,
    "offset"           bigint      NOT NULL,
    message_timestamp  timestamptz,
    key                bytea,
    value              bytea,
    reason             text        NOT NULL,
    plugin             text,
    plugin_hash        text,
    failed_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgsink.dead_letters IS
    'Messages pgsink could not load, with the reason; written in the same transaction as the rows';
CREATE INDEX IF NOT EXISTS dead_letters_by_message
    ON pgsink.dead_letters (table_schema, table_name, topic, partition, "offset");

-- The fenced offset update of one synchronized flush. For each partition i it
-- moves the stored offset from p_expected[i] (NULL: no row yet) to p_next[i].
-- If another process has moved it meanwhile, it raises SQLSTATE PSK01 and the
-- caller's transaction, rows included, rolls back: a stale consumer of a
-- partition can never load the same messages twice.
CREATE OR REPLACE FUNCTION pgsink.commit_offsets(
    p_schema      text,
    p_table       text,
    p_topics      text[],
    p_partitions  integer[],
    p_expected    bigint[],
    p_next        bigint[],
    p_plugin_hash text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    moved integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_topics, 1), 0) LOOP
        IF p_expected[i] IS NULL THEN
            INSERT INTO pgsink.offsets AS o
                (table_schema, table_name, topic, partition, next_offset, plugin_hash)
            VALUES (p_schema, p_table, p_topics[i], p_partitions[i], p_next[i], p_plugin_hash)
            ON CONFLICT DO NOTHING;
        ELSE
            UPDATE pgsink.offsets
               SET next_offset = p_next[i], plugin_hash = p_plugin_hash, committed_at = now()
             WHERE table_schema = p_schema AND table_name = p_table
               AND topic = p_topics[i] AND partition = p_partitions[i]
               AND next_offset = p_expected[i];
        END IF;
        GET DIAGNOSTICS moved = ROW_COUNT;
        IF moved <> 1 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'PSK01',
                MESSAGE = format('pgsink offset fence: %s[%s] of %I.%I is no longer at offset %s',
                                 p_topics[i], p_partitions[i], p_schema, p_table,
                                 coalesce(p_expected[i]::text, '(none)')),
                HINT = 'another pgsink process loaded these messages; this one rolls back and resumes from the stored offset';
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW pgsink.progress AS
SELECT table_schema, table_name, topic, partition, next_offset,
       committed_at, now() - committed_at AS since_commit, plugin_hash
  FROM pgsink.offsets;
COMMENT ON VIEW pgsink.progress IS 'Where each synchronized sink stands, per table, topic and partition';

COMMIT;
