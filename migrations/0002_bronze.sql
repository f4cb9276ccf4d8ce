-- Bronze: every change event exactly as it arrived, append-only.
CREATE SCHEMA IF NOT EXISTS bronze;
COMMENT ON SCHEMA bronze IS 'Raw change events as published to Kafka, append-only, one row per source event (duplicates re-published after a crash are absorbed by the unique source key).';

CREATE TABLE bronze.events (
    event_id        bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_key       jsonb,
    op              char(1)     NOT NULL CHECK (op IN ('c', 'u', 'd', 'r')),
    source_key      text        NOT NULL,
    source          jsonb       NOT NULL,
    payload         jsonb       NOT NULL,
    event_ts        timestamptz,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_source_key_uq UNIQUE (topic, source_key)
);
CREATE INDEX events_ingested_at_idx ON bronze.events (ingested_at);
COMMENT ON TABLE bronze.events IS 'Every change event read from Kafka (Debezium-style envelope), append-only. The unique (topic, source_key) makes a re-published event a no-op.';
COMMENT ON COLUMN bronze.events.event_id IS 'Surrogate key, increasing in load order.';
COMMENT ON COLUMN bronze.events.topic IS 'Kafka topic the event was read from (<prefix>.<source>.<entity>).';
COMMENT ON COLUMN bronze.events.kafka_partition IS 'Kafka partition the event was read from.';
COMMENT ON COLUMN bronze.events.kafka_offset IS 'Offset of the record in its partition (the first copy, if the event was published twice).';
COMMENT ON COLUMN bronze.events.event_key IS 'Kafka record key: the primary key of the source row as a JSON object.';
COMMENT ON COLUMN bronze.events.op IS 'Change type: c = create, u = update, d = delete, r = read (snapshot).';
COMMENT ON COLUMN bronze.events.source_key IS 'Stable identity of the source position (e.g. csv:<file id>:<byte offset>); unique per topic.';
COMMENT ON COLUMN bronze.events.source IS 'The envelope''s source block: connector, name, entity and position (file, line, byte offset for CSV).';
COMMENT ON COLUMN bronze.events.payload IS 'The whole envelope value as published: before, after, op, source, ts_ms.';
COMMENT ON COLUMN bronze.events.event_ts IS 'When the source agent produced the event (envelope ts_ms).';
COMMENT ON COLUMN bronze.events.ingested_at IS 'When the row was written to the warehouse.';

CREATE TABLE bronze.dead_letters (
    dead_letter_id  bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    source_key      text        NOT NULL,
    connector       text        NOT NULL,
    origin          jsonb       NOT NULL,
    reason          text        NOT NULL,
    raw             bytea       NOT NULL,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_source_key_uq UNIQUE (source_key)
);
COMMENT ON TABLE bronze.dead_letters IS 'Records that could not be parsed, from the dead-letter topic and from Kafka records that were not valid envelopes: original bytes, where they came from and why.';
COMMENT ON COLUMN bronze.dead_letters.dead_letter_id IS 'Surrogate key.';
COMMENT ON COLUMN bronze.dead_letters.topic IS 'Kafka topic the record was read from (the dead-letter topic, or the data topic for an invalid envelope).';
COMMENT ON COLUMN bronze.dead_letters.kafka_partition IS 'Kafka partition.';
COMMENT ON COLUMN bronze.dead_letters.kafka_offset IS 'Kafka offset.';
COMMENT ON COLUMN bronze.dead_letters.source_key IS 'Stable identity of the bad record''s origin; unique, so a re-published record is stored once.';
COMMENT ON COLUMN bronze.dead_letters.connector IS 'Connector that rejected the record (csv, ...) or "transform".';
COMMENT ON COLUMN bronze.dead_letters.origin IS 'Where the record came from: file, line and byte offset for CSV; topic, partition and offset for an invalid envelope.';
COMMENT ON COLUMN bronze.dead_letters.reason IS 'Why the record was rejected.';
COMMENT ON COLUMN bronze.dead_letters.raw IS 'The original bytes, unchanged.';
COMMENT ON COLUMN bronze.dead_letters.ingested_at IS 'When the row was written to the warehouse.';
