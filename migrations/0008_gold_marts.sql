-- Silver deepened for the stored gold marts: orders (baskets) and fractional quantities in
-- sales, customer segments and their type-2 history, an index per reference that gold
-- re-resolves; the gold views of 0004/0006/0007 give way to the stored marts that
-- transform declares in transform/src/gold/marts/ (created at start, one module each).

DROP VIEW IF EXISTS gold.revenue_by_country_reporting, gold.fact_sales_reporting, gold.kpi_overview,
    gold.daily_revenue, gold.revenue_by_country, gold.fact_sales, gold.dim_customer,
    gold.dim_product, gold.dim_country, gold.web_usage_daily CASCADE;
DROP FUNCTION IF EXISTS gold.shop_order_status(text);
DROP TABLE IF EXISTS gold.dim_date, gold.country_currency, gold.reporting_currency CASCADE;

ALTER TABLE silver.sales ADD COLUMN order_id text;
UPDATE silver.sales SET order_id = sale_id WHERE order_id IS NULL;
ALTER TABLE silver.sales ALTER COLUMN order_id SET NOT NULL;
ALTER TABLE silver.sales ALTER COLUMN quantity TYPE numeric USING quantity::numeric;
CREATE INDEX sales_order_id_idx ON silver.sales (order_id);
CREATE INDEX sales_product_id_idx ON silver.sales (product_id);
COMMENT ON COLUMN silver.sales.order_id IS 'The order (basket) the line belongs to; a source without one makes each line its own order (order_id = sale_id).';
COMMENT ON COLUMN silver.sales.quantity IS 'Quantity sold, > 0; may be fractional (kilograms, hours). Written 17, 17.00, 1e3 or 1 234,5 in the source.';

ALTER TABLE silver.customers ADD COLUMN segment text;
COMMENT ON COLUMN silver.customers.segment IS 'Customer segment as the source names it (title-cased), if any.';

CREATE TABLE silver.customer_history (
    customer_id text NOT NULL,
    version integer NOT NULL,
    full_name text,
    email text,
    country text,
    city text,
    segment text,
    signup_date date,
    valid_from timestamptz NOT NULL,
    valid_to timestamptz,
    is_current boolean NOT NULL,
    _bronze_event_id bigint NOT NULL,
    PRIMARY KEY (customer_id, version)
);
CREATE UNIQUE INDEX customer_history_current ON silver.customer_history (customer_id) WHERE is_current;
COMMENT ON TABLE silver.customer_history IS 'Type-2 history of each customer: a new version whenever the country, city or segment changes (other attributes are updated in the current version). A deleted customer''s last version is closed.';
COMMENT ON COLUMN silver.customer_history.customer_id IS 'Natural key of the customer.';
COMMENT ON COLUMN silver.customer_history.version IS 'Version number, 1 for the first one seen.';
COMMENT ON COLUMN silver.customer_history.full_name IS 'Customer name in this version.';
COMMENT ON COLUMN silver.customer_history.email IS 'E-mail address in this version.';
COMMENT ON COLUMN silver.customer_history.country IS 'Country in this version (tracked).';
COMMENT ON COLUMN silver.customer_history.city IS 'City in this version (tracked).';
COMMENT ON COLUMN silver.customer_history.segment IS 'Segment in this version (tracked).';
COMMENT ON COLUMN silver.customer_history.signup_date IS 'Sign-up date.';
COMMENT ON COLUMN silver.customer_history.valid_from IS 'Commit time of the batch that brought this version.';
COMMENT ON COLUMN silver.customer_history.valid_to IS 'Commit time of the batch that replaced it; null while current.';
COMMENT ON COLUMN silver.customer_history.is_current IS 'True for the version in force.';
COMMENT ON COLUMN silver.customer_history._bronze_event_id IS 'Lineage: bronze event of the last change applied to this version.';
INSERT INTO silver.customer_history
    (customer_id, version, full_name, email, country, city, segment, signup_date, valid_from, valid_to, is_current, _bronze_event_id)
SELECT customer_id, 1, full_name, email, country, city, segment, signup_date, _updated_at, NULL, true, _bronze_event_id
FROM silver.customers;


CREATE TABLE pipeline.job_runs (
    run_id bigserial PRIMARY KEY,
    job text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed', 'timeout')),
    attempt integer NOT NULL DEFAULT 1,
    rows bigint,
    error text,
    host text,
    pid integer
);
CREATE INDEX job_runs_job_started ON pipeline.job_runs (job, started_at DESC);
COMMENT ON TABLE pipeline.job_runs IS 'Every run of a scheduled transform job (analytics refreshes, verify): when, how it ended, rows written, the error.';
COMMENT ON COLUMN pipeline.job_runs.run_id IS 'Surrogate key.';
COMMENT ON COLUMN pipeline.job_runs.job IS 'Job name as in [transform.analytics.jobs].';
COMMENT ON COLUMN pipeline.job_runs.started_at IS 'Start of the run.';
COMMENT ON COLUMN pipeline.job_runs.finished_at IS 'End of the run; null while running (or if the process died).';
COMMENT ON COLUMN pipeline.job_runs.status IS 'running, ok, failed or timeout.';
COMMENT ON COLUMN pipeline.job_runs.attempt IS 'Attempt number within one scheduled occurrence (retries with backoff).';
COMMENT ON COLUMN pipeline.job_runs.rows IS 'Rows the run wrote.';
COMMENT ON COLUMN pipeline.job_runs.error IS 'Error message of a failed run.';
COMMENT ON COLUMN pipeline.job_runs.host IS 'Host that ran it.';
COMMENT ON COLUMN pipeline.job_runs.pid IS 'Process id that ran it.';
