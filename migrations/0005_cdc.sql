-- Database sources (MySQL/MariaDB binlog): schema history, and the silver mirrors of the
-- captured tables.

-- Schema events (op 's') announce a table's columns on every partition of its topic.
ALTER TABLE bronze.events DROP CONSTRAINT IF EXISTS events_op_check;
ALTER TABLE bronze.events ADD CONSTRAINT events_op_check CHECK (op IN ('c', 'u', 'd', 'r', 's'));
COMMENT ON COLUMN bronze.events.op IS 'Change type: c = create, u = update, d = delete, r = read (snapshot), s = schema change of a database table (its columns from then on).';

CREATE TABLE pipeline.schema_history (
    history_id  bigserial   PRIMARY KEY,
    connector   text        NOT NULL,
    server_id   bigint,
    binlog_file text,
    binlog_pos  bigint,
    gtid        text,
    db          text,
    table_name  text,
    verb        text,
    ddl         text        NOT NULL,
    renames     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    executed_at timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    source_key  text        NOT NULL UNIQUE
);
CREATE INDEX schema_history_table_idx ON pipeline.schema_history (db, table_name, binlog_file, binlog_pos);
COMMENT ON TABLE pipeline.schema_history IS 'Every DDL statement read from a source database''s binlog, in the warehouse for good (unlike a Kafka history topic, it does not expire). One row per statement, in binlog order.';
COMMENT ON COLUMN pipeline.schema_history.history_id IS 'Surrogate key, increasing in load order.';
COMMENT ON COLUMN pipeline.schema_history.connector IS 'Source connector (mysql).';
COMMENT ON COLUMN pipeline.schema_history.server_id IS 'server_id of the database server that wrote the statement to its binlog.';
COMMENT ON COLUMN pipeline.schema_history.binlog_file IS 'Binlog file holding the statement.';
COMMENT ON COLUMN pipeline.schema_history.binlog_pos IS 'End position of the statement''s event in binlog_file.';
COMMENT ON COLUMN pipeline.schema_history.gtid IS 'GTID of the statement (MariaDB domain-server-seq, MySQL uuid:gno), when known.';
COMMENT ON COLUMN pipeline.schema_history.db IS 'Database the statement applies to (named in it, or the session''s default).';
COMMENT ON COLUMN pipeline.schema_history.table_name IS 'Table named by the statement, when it names one.';
COMMENT ON COLUMN pipeline.schema_history.verb IS 'First word of the statement (ALTER, CREATE, DROP, TRUNCATE, RENAME...).';
COMMENT ON COLUMN pipeline.schema_history.ddl IS 'The statement as the server logged it.';
COMMENT ON COLUMN pipeline.schema_history.renames IS 'Columns the statement renamed: [{"from": ..., "to": ...}].';
COMMENT ON COLUMN pipeline.schema_history.executed_at IS 'When the source server executed the statement (binlog event time).';
COMMENT ON COLUMN pipeline.schema_history.recorded_at IS 'When the warehouse recorded it.';
COMMENT ON COLUMN pipeline.schema_history.source_key IS 'Stable identity of the statement (ddl:<server_id>:<file>:<pos>); a statement re-published after a crash is recorded once.';

CREATE TABLE pipeline.mirror_tables (
    entity       text        PRIMARY KEY,
    connector    text        NOT NULL,
    db           text        NOT NULL,
    table_name   text        NOT NULL,
    columns      jsonb       NOT NULL,
    pk           jsonb       NOT NULL,
    renames      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    dropped      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    schema_file  text        NOT NULL,
    schema_pos   bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pipeline.mirror_tables IS 'One row per source database table mirrored in silver (silver.<db>_<table>): its columns as last announced by a schema event, and how to read rows written with older columns.';
COMMENT ON COLUMN pipeline.mirror_tables.entity IS 'Entity name <db>_<table>: the silver table''s name and the last part of its topic.';
COMMENT ON COLUMN pipeline.mirror_tables.connector IS 'Source connector (mysql).';
COMMENT ON COLUMN pipeline.mirror_tables.db IS 'Source database.';
COMMENT ON COLUMN pipeline.mirror_tables.table_name IS 'Source table.';
COMMENT ON COLUMN pipeline.mirror_tables.columns IS 'Current columns: [{"name": ..., "type": <PostgreSQL type>}], in source order.';
COMMENT ON COLUMN pipeline.mirror_tables.pk IS 'Primary-key column names (empty: the table has none and rows are keyed by their whole content).';
COMMENT ON COLUMN pipeline.mirror_tables.renames IS 'Renamed columns, {"old name": "current name"}: rows written before a rename (still in flight on other partitions) are read with it.';
COMMENT ON COLUMN pipeline.mirror_tables.dropped IS 'Names of dropped columns: values of rows written before the drop are ignored.';
COMMENT ON COLUMN pipeline.mirror_tables.schema_file IS 'Binlog file of the schema event last applied.';
COMMENT ON COLUMN pipeline.mirror_tables.schema_pos IS 'Binlog position of the schema event last applied; an older one (from a lagging partition) changes nothing.';
COMMENT ON COLUMN pipeline.mirror_tables.updated_at IS 'When the columns last changed.';

-- Gold over the mirrors. Mirror tables appear when their first change event arrives, so
-- gold reads them through functions (a view could not be created before its table exists).
CREATE FUNCTION gold.shop_order_status(p_entity text DEFAULT 'shop_orders')
RETURNS TABLE (status text, orders bigint, order_value numeric, last_change timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF to_regclass(format('silver.%I', p_entity)) IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT status::text, count(*), coalesce(sum(total), 0)::numeric, max(_committed_at) FROM silver.%I GROUP BY status ORDER BY 1',
        p_entity);
END
$$;
COMMENT ON FUNCTION gold.shop_order_status(text) IS 'Live order pipeline of the demo shop (MySQL binlog → silver mirror silver.<p_entity>, default shop_orders): orders and their value per status (placed, paid, shipped), and the last change applied. Empty while the mirror does not exist.';
