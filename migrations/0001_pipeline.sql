-- Pipeline state: consumer offsets and service runs.
CREATE SCHEMA IF NOT EXISTS pipeline;
COMMENT ON SCHEMA pipeline IS 'State of the pipeline itself: Kafka consumer offsets (stored with the rows they produced), service runs and applied migrations.';

CREATE TABLE pipeline.consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
COMMENT ON TABLE pipeline.consumer_offsets IS 'Kafka offsets of the transform consumer group, committed in the same transaction as the bronze/silver rows they produced (exactly-once into the warehouse).';
COMMENT ON COLUMN pipeline.consumer_offsets.group_id IS 'Kafka consumer group id of the transform service.';
COMMENT ON COLUMN pipeline.consumer_offsets.topic IS 'Kafka topic.';
COMMENT ON COLUMN pipeline.consumer_offsets.partition IS 'Kafka partition number.';
COMMENT ON COLUMN pipeline.consumer_offsets.next_offset IS 'Offset of the next record to read (last processed offset + 1); the consumer seeks here on partition assignment.';
COMMENT ON COLUMN pipeline.consumer_offsets.updated_at IS 'When this offset last moved.';

CREATE TABLE pipeline.runs (
    run_id       bigserial   PRIMARY KEY,
    service      text        NOT NULL,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    version      text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    stats        jsonb       NOT NULL DEFAULT '{}'::jsonb
);
COMMENT ON TABLE pipeline.runs IS 'One row per start of a pipeline service; heartbeat_at and stats are refreshed while it runs.';
COMMENT ON COLUMN pipeline.runs.run_id IS 'Surrogate key of the run.';
COMMENT ON COLUMN pipeline.runs.service IS 'Service name (transform, ...).';
COMMENT ON COLUMN pipeline.runs.host IS 'Host name the service ran on.';
COMMENT ON COLUMN pipeline.runs.pid IS 'Operating-system process id.';
COMMENT ON COLUMN pipeline.runs.version IS 'Version of the service binary.';
COMMENT ON COLUMN pipeline.runs.started_at IS 'When the service started.';
COMMENT ON COLUMN pipeline.runs.heartbeat_at IS 'Last heartbeat; a run whose heartbeat is old and stopped_at is null has crashed.';
COMMENT ON COLUMN pipeline.runs.stopped_at IS 'When the service stopped cleanly (null while running or after a crash).';
COMMENT ON COLUMN pipeline.runs.stats IS 'Counters at the last heartbeat (events, bronze rows, silver upserts, quarantined rows...).';
