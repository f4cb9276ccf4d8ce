-- Gold's queue of silver changes not yet applied to the marts. While transform is behind
-- (a backlog, a backfill), a batch lands bronze and silver and queues the keys it touched
-- here, in its own transaction; gold drains the queue in one transaction at most
-- `transform.gold_catch_up_secs` later, or as soon as transform has caught up. Nothing is
-- lost by a crash in between: the queue commits with silver, and the drain commits with gold.
CREATE TABLE pipeline.gold_queue (
    model text NOT NULL,
    key text NOT NULL,
    PRIMARY KEY (model, key)
);
COMMENT ON TABLE pipeline.gold_queue IS 'Keys of silver rows changed by batches whose gold maintenance was deferred (transform catching up); emptied by the next gold refresh.';
COMMENT ON COLUMN pipeline.gold_queue.model IS 'sales, customers or products (keys of those silver models), or web_day (a day of web events, ISO date).';
COMMENT ON COLUMN pipeline.gold_queue.key IS 'The silver key (or the day).';

CREATE TABLE pipeline.gold_queue_state (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    since timestamptz,
    batches bigint NOT NULL DEFAULT 0,
    records bigint NOT NULL DEFAULT 0,
    newest_event_ms bigint,
    newest_kafka_ms bigint,
    deferred_total bigint NOT NULL DEFAULT 0,
    drains_total bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE pipeline.gold_queue_state IS 'One row: since when gold is behind silver (null: gold is up to date), how many batches and records are queued, and the newest source and Kafka times among them (for gold.freshness when the queue is drained); deferred_total and drains_total count the deferred batches and the drains since the warehouse was created.';
COMMENT ON COLUMN pipeline.gold_queue_state.only_row IS 'Always true: the table has one row.';
COMMENT ON COLUMN pipeline.gold_queue_state.since IS 'Commit time of the first deferred batch not yet applied to gold; null when gold is up to date with silver.';
COMMENT ON COLUMN pipeline.gold_queue_state.batches IS 'Deferred batches waiting in the queue.';
COMMENT ON COLUMN pipeline.gold_queue_state.records IS 'Kafka records of those batches.';
COMMENT ON COLUMN pipeline.gold_queue_state.newest_event_ms IS 'Newest source event time among them (ms since the epoch).';
COMMENT ON COLUMN pipeline.gold_queue_state.newest_kafka_ms IS 'Newest Kafka timestamp among them (ms since the epoch).';
COMMENT ON COLUMN pipeline.gold_queue_state.deferred_total IS 'Batches that deferred their gold changes, since the warehouse was created.';
COMMENT ON COLUMN pipeline.gold_queue_state.drains_total IS 'Drains of the queue into gold, since the warehouse was created.';
INSERT INTO pipeline.gold_queue_state (only_row) VALUES (true);
