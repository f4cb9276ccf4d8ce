-- Bronze without the copies: the envelope's `source`, `op` and `ts_ms` are kept once, in
-- their own columns, and the payload holds the rest (before, after and any other key).
-- bronze.events_envelope puts the envelope back together, as it was published.
UPDATE bronze.events SET payload = payload - 'source' - 'op' - 'ts_ms'
WHERE payload ?| ARRAY['source', 'op', 'ts_ms'];
-- Compress payloads from 128 bytes up (lz4: fast to write and read).
ALTER TABLE bronze.events ALTER COLUMN payload SET COMPRESSION lz4;
ALTER TABLE bronze.events ALTER COLUMN source SET COMPRESSION lz4;
ALTER TABLE bronze.events SET (toast_tuple_target = 128);
COMMENT ON COLUMN bronze.events.payload IS 'The envelope as published without the keys stored in their own columns (source, op, ts_ms): before, after and any other key. bronze.events_envelope gives the whole envelope back.';

CREATE VIEW bronze.events_envelope AS
SELECT event_id, topic, kafka_partition, kafka_offset, event_key, source_key, ingested_at,
       payload || jsonb_build_object('op', op::text, 'source', source)
               || CASE WHEN event_ts IS NULL THEN '{}'::jsonb
                       ELSE jsonb_build_object('ts_ms', (extract(epoch FROM event_ts) * 1000)::bigint) END
           AS envelope
FROM bronze.events;
COMMENT ON VIEW bronze.events_envelope IS 'Every change event of bronze.events with its whole envelope (before, after, op, source, ts_ms), as published.';
COMMENT ON COLUMN bronze.events_envelope.event_id IS 'bronze.events.event_id.';
COMMENT ON COLUMN bronze.events_envelope.topic IS 'Kafka topic.';
COMMENT ON COLUMN bronze.events_envelope.kafka_partition IS 'Kafka partition.';
COMMENT ON COLUMN bronze.events_envelope.kafka_offset IS 'Kafka offset.';
COMMENT ON COLUMN bronze.events_envelope.event_key IS 'Kafka record key.';
COMMENT ON COLUMN bronze.events_envelope.source_key IS 'Stable identity of the source position.';
COMMENT ON COLUMN bronze.events_envelope.ingested_at IS 'When the row was written to the warehouse.';
COMMENT ON COLUMN bronze.events_envelope.envelope IS 'The whole envelope: payload with op, source and ts_ms put back.';
