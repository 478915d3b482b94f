-- pgsink database package: installs (or upgrades in place) the `pgsink` schema
-- that holds the sink's state. Idempotent: run it as often as you like, from
-- psql (`\i sql/install.sql`) or with `pgsink sql install`; `pgsink run`
-- runs it by itself when the schema is missing or older.
--
-- What it creates:
--   pgsink.offsets           the next Kafka offset to load, per sink, topic and partition
--                            (synchronized delivery: written in the same transaction as the
--                            rows of every table the sink writes, so they never disagree)
--   pgsink.dead_letters      messages that could not become rows, with the reason
--   pgsink.commit_offsets()  the fenced offset update of a synchronized flush
--   pgsink.progress          a view: per sink, topic and partition, the stored offset,
--                            when it was committed and by which converter version
--
-- Version 3 keys the offsets by sink (its `name`, else `<db.schema>.<db.table>`) instead of
-- by table: a sink may write several tables in one transaction. Each row also records the
-- table the topic's positions are kept with (the sink's first table that takes the topic),
-- and one such table, topic and partition belong to one sink only, so two sinks cannot load
-- a message into that table twice, nor one sink resume in a table from another table's
-- position (a renamed sink is told how to take its positions over).
-- Upgrading from version 1 or 2 keeps every stored position: each old row is marked
-- `table "<schema>"."<table>"` (quoted identifiers, so no two tables share a mark), and a sink
-- adopts, at its next start, the marked rows of its first table and its topics.
BEGIN;

-- Two pgsink processes starting together must not install concurrently.
SELECT pg_advisory_xact_lock(hashtext('pgsink.install'));

CREATE SCHEMA IF NOT EXISTS pgsink;
COMMENT ON SCHEMA pgsink IS 'pgsink 3: Kafka offsets and dead letters of pgsink sinks';

-- A table's name as the offsets record it: schema and table, always double-quoted (unlike
-- quote_ident, whose output changes with the server's keyword list), as pgsink's own
-- `Target::qualified` writes it.
CREATE OR REPLACE FUNCTION pgsink.qualified(p_schema text, p_table text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT '"' || replace(p_schema, '"', '""') || '"."' || replace(p_table, '"', '""') || '"'
$$;

-- Versions 1 and 2 keyed the offsets by table: re-key them in place, positions kept.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = 'pgsink' AND table_name = 'offsets'
                  AND column_name = 'table_schema') THEN
        DROP VIEW IF EXISTS pgsink.progress;
        ALTER TABLE pgsink.offsets ADD COLUMN sink text, ADD COLUMN first_table text;
        UPDATE pgsink.offsets
           SET first_table = pgsink.qualified(table_schema, table_name),
               sink = 'table ' || pgsink.qualified(table_schema, table_name);
        ALTER TABLE pgsink.offsets DROP CONSTRAINT offsets_pkey;
        ALTER TABLE pgsink.offsets DROP COLUMN table_schema, DROP COLUMN table_name;
        ALTER TABLE pgsink.offsets ALTER COLUMN sink SET NOT NULL,
                                   ALTER COLUMN first_table SET NOT NULL;
        ALTER TABLE pgsink.offsets ADD PRIMARY KEY (sink, topic, partition);
    END IF;
    IF to_regclass('pgsink.dead_letters') IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM information_schema.columns
            WHERE table_schema = 'pgsink' AND table_name = 'dead_letters'
              AND column_name = 'sink') THEN
        ALTER TABLE pgsink.dead_letters ADD COLUMN sink text;
        UPDATE pgsink.dead_letters
           SET sink = 'table ' || pgsink.qualified(table_schema, table_name);
        ALTER TABLE pgsink.dead_letters ALTER COLUMN sink SET NOT NULL;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS pgsink.offsets (
    sink          text        NOT NULL,
    first_table   text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL,
    next_offset   bigint      NOT NULL,
    plugin_hash   text,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, topic, partition)
);
COMMENT ON TABLE pgsink.offsets IS
    'Next Kafka offset to load per sink, topic and partition (synchronized delivery)';
COMMENT ON COLUMN pgsink.offsets.first_table IS
    'The sink''s first table, as pgsink.qualified() writes it';
-- One sink per table, topic and partition: what version 2's key (the table) guaranteed.
CREATE UNIQUE INDEX IF NOT EXISTS offsets_one_sink_per_table
    ON pgsink.offsets (first_table, topic, partition);

CREATE TABLE IF NOT EXISTS pgsink.dead_letters (
    id                 bigserial   PRIMARY KEY,
    sink               text        NOT NULL,
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
COMMENT ON COLUMN pgsink.dead_letters.table_schema IS 'Schema of the sink''s first table';
COMMENT ON COLUMN pgsink.dead_letters.table_name IS 'The sink''s first table (db.table)';
CREATE INDEX IF NOT EXISTS dead_letters_by_message
    ON pgsink.dead_letters (table_schema, table_name, topic, partition, "offset");
CREATE INDEX IF NOT EXISTS dead_letters_by_sink
    ON pgsink.dead_letters (sink, id);

-- The fenced offset update of one synchronized flush. For each partition i, the flush loads
-- the messages [p_from[i], p_next[i]) and moves the stored offset to p_next[i]. It is accepted
-- only where the data starts exactly at the stored offset (or, for a partition without a
-- stored row, anywhere: nothing was loaded of it). Anything else means the writer's data and
-- the tables disagree — another process loaded these messages (overlap: duplicates) or some
-- were skipped (gap: loss) — so it raises SQLSTATE PSK01 and the caller's transaction, rows
-- included, rolls back; the caller re-reads the stored offsets and resumes from them.
-- (pgsink 1 passed the offset it believed stored, NULL for "no row"; a NULL p_from still
-- means "insert only". Versions 1 and 2 named a table where version 3 names a sink.)
DROP FUNCTION IF EXISTS pgsink.commit_offsets(text, text, text[], integer[], bigint[], bigint[], text);
CREATE OR REPLACE FUNCTION pgsink.commit_offsets(
    p_sink        text,
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
    first text := pgsink.qualified(p_schema, p_table);
    i integer;
    moved integer;
    stored bigint;
    stored_table text;
    owner text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_topics, 1), 0) LOOP
        -- A sink's position belongs to the table it was loaded into: another sink of the same
        -- name, or one whose db.table changed, must not resume from it.
        SELECT first_table INTO stored_table FROM pgsink.offsets
         WHERE sink = p_sink AND topic = p_topics[i] AND partition = p_partitions[i];
        IF FOUND AND stored_table <> first THEN
            RAISE EXCEPTION USING
                ERRCODE = 'PSK02',
                MESSAGE = format('pgsink offsets: sink %s stored %s[%s] for table %s, and this flush writes %s',
                                 p_sink, p_topics[i], p_partitions[i], stored_table, first),
                HINT = format('two sinks share this name (give each its own), or db.table changed: then start the sink over with DELETE FROM pgsink.offsets WHERE sink = %L AND first_table = %L', p_sink, stored_table);
        END IF;
        moved := 0;
        IF p_from[i] IS NOT NULL THEN
            UPDATE pgsink.offsets
               SET next_offset = p_next[i], plugin_hash = p_plugin_hash, committed_at = now()
             WHERE sink = p_sink AND topic = p_topics[i] AND partition = p_partitions[i]
               AND next_offset = p_from[i];
            GET DIAGNOSTICS moved = ROW_COUNT;
        END IF;
        IF moved = 0 THEN
            INSERT INTO pgsink.offsets AS o (sink, first_table, topic, partition, next_offset, plugin_hash)
            VALUES (p_sink, first, p_topics[i], p_partitions[i], p_next[i], p_plugin_hash)
            ON CONFLICT DO NOTHING;
            GET DIAGNOSTICS moved = ROW_COUNT;
        END IF;
        IF moved = 0 THEN
            -- One sink per table, topic and partition (a renamed sink, or a second one). Looked
            -- up after the INSERT, which waits for a racing first flush of another sink: its
            -- row is then committed and seen here.
            SELECT sink INTO owner FROM pgsink.offsets
             WHERE first_table = first AND topic = p_topics[i] AND partition = p_partitions[i]
               AND sink <> p_sink;
            IF FOUND THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'PSK02',
                    MESSAGE = format('pgsink offsets: %s[%s] of table %s is loaded by sink %s; sink %s would load it again',
                                     p_topics[i], p_partitions[i], first, owner, p_sink),
                    HINT = format('if this sink was renamed, take its positions over: UPDATE pgsink.offsets SET sink = %L WHERE sink = %L AND first_table = %L', p_sink, owner, first);
            END IF;
        END IF;
        IF moved <> 1 THEN
            SELECT next_offset INTO stored FROM pgsink.offsets
             WHERE sink = p_sink AND topic = p_topics[i] AND partition = p_partitions[i];
            RAISE EXCEPTION USING
                ERRCODE = 'PSK01',
                MESSAGE = format('pgsink offset fence: %s[%s] of sink %s is stored at offset %s, the flush starts at %s',
                                 p_topics[i], p_partitions[i], p_sink,
                                 coalesce(stored::text, '(none)'), coalesce(p_from[i]::text, '(none)')),
                HINT = 'another pgsink process loaded these messages, or this one skipped some; it rolls back and resumes from the stored offset';
        END IF;
    END LOOP;
END
$$;

-- A synchronized sink's first start on version 3: the positions an older version stored under
-- the sink's first table, for the sink's topics, become the sink's own (where it has none
-- yet). Only rows marked by the upgrade are taken, so a running sink's positions are never
-- moved. Returns the partitions adopted.
CREATE OR REPLACE FUNCTION pgsink.adopt_offsets(
    p_sink    text,
    p_schema  text,
    p_table   text,
    p_topics  text[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    legacy text := 'table ' || pgsink.qualified(p_schema, p_table);
    adopted integer;
BEGIN
    UPDATE pgsink.offsets o
       SET sink = p_sink
     WHERE o.sink = legacy AND o.topic = ANY(p_topics)
       AND NOT EXISTS (SELECT 1 FROM pgsink.offsets m
                        WHERE m.sink = p_sink AND m.topic = o.topic AND m.partition = o.partition);
    GET DIAGNOSTICS adopted = ROW_COUNT;
    UPDATE pgsink.dead_letters SET sink = p_sink
     WHERE sink = legacy AND topic = ANY(p_topics);
    RETURN adopted;
END
$$;

CREATE OR REPLACE VIEW pgsink.progress AS
SELECT sink, first_table, topic, partition, next_offset,
       committed_at, now() - committed_at AS since_commit, plugin_hash
  FROM pgsink.offsets;
COMMENT ON VIEW pgsink.progress IS 'Where each synchronized sink stands, per topic and partition';

COMMIT;
