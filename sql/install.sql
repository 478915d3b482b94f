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
COMMENT ON SCHEMA pgsink IS 'pgsink 2: Kafka offsets and dead letters of pgsink sinks';

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

-- The fenced offset update of one synchronized flush. For each partition i, the flush loads
-- the messages [p_from[i], p_next[i]) and moves the stored offset to p_next[i]. It is accepted
-- only where the data starts exactly at the stored offset (or, for a partition without a
-- stored row, anywhere: nothing was loaded of it). Anything else means the writer's data and
-- the table disagree — another process loaded these messages (overlap: duplicates) or some
-- were skipped (gap: loss) — so it raises SQLSTATE PSK01 and the caller's transaction, rows
-- included, rolls back; the caller re-reads the stored offsets and resumes from them.
-- (pgsink 1 passed the offset it believed stored, NULL for "no row"; a NULL p_from still
-- means "insert only".)
DROP FUNCTION IF EXISTS pgsink.commit_offsets(text, text, text[], integer[], bigint[], bigint[], text);
CREATE FUNCTION pgsink.commit_offsets(
    p_schema      text,
    p_table       text,
    p_topics      text[],
    p_partitions  integer[],
    p_from        bigint[],
    p_next        bigint[],
    p_plugin_hash text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    moved integer;
    stored bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_topics, 1), 0) LOOP
        moved := 0;
        IF p_from[i] IS NOT NULL THEN
            UPDATE pgsink.offsets
               SET next_offset = p_next[i], plugin_hash = p_plugin_hash, committed_at = now()
             WHERE table_schema = p_schema AND table_name = p_table
               AND topic = p_topics[i] AND partition = p_partitions[i]
               AND next_offset = p_from[i];
            GET DIAGNOSTICS moved = ROW_COUNT;
        END IF;
        IF moved = 0 THEN
            INSERT INTO pgsink.offsets AS o
                (table_schema, table_name, topic, partition, next_offset, plugin_hash)
            VALUES (p_schema, p_table, p_topics[i], p_partitions[i], p_next[i], p_plugin_hash)
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS moved = ROW_COUNT;
        END IF;
        IF moved <> 1 THEN
            SELECT next_offset INTO stored FROM pgsink.offsets
             WHERE table_schema = p_schema AND table_name = p_table
               AND topic = p_topics[i] AND partition = p_partitions[i];
            RAISE EXCEPTION USING
                ERRCODE = 'PSK01',
                MESSAGE = format('pgsink offset fence: %s[%s] of %I.%I is stored at offset %s, the flush starts at %s',
                                 p_topics[i], p_partitions[i], p_schema, p_table,
                                 coalesce(stored::text, '(none)'), coalesce(p_from[i]::text, '(none)')),
                HINT = 'another pgsink process loaded these messages, or this one skipped some; it rolls back and resumes from the stored offset';
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
