-- Silver: typed, cleaned, deduplicated current state per entity; rejected rows in silver.quarantine.
CREATE SCHEMA IF NOT EXISTS silver;
COMMENT ON SCHEMA silver IS 'Typed, cleaned and deduplicated current state of each entity, one row per primary key. Upserts and deletes follow the change events; rows that fail validation go to silver.quarantine with the reason.';

CREATE TABLE silver.customers (
    customer_id text NOT NULL PRIMARY KEY,
    full_name text,
    email text,
    country text,
    city text,
    signup_date date,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE silver.customers IS 'Current state of each customer: trimmed, typed, deduplicated on customer_id.';
COMMENT ON COLUMN silver.customers.customer_id IS 'Natural key of the customer, as in the source.';
COMMENT ON COLUMN silver.customers.full_name IS 'Customer name, trimmed, inner whitespace collapsed.';
COMMENT ON COLUMN silver.customers.email IS 'E-mail address, trimmed and lower-cased.';
COMMENT ON COLUMN silver.customers.country IS 'Country name, trimmed and title-cased.';
COMMENT ON COLUMN silver.customers.city IS 'City, trimmed and title-cased.';
COMMENT ON COLUMN silver.customers.signup_date IS 'Date the customer signed up (parsed from the configured date formats).';
COMMENT ON COLUMN silver.customers._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.customers._source IS 'Lineage: source position of that event (file, line, byte offset for CSV).';
COMMENT ON COLUMN silver.customers._updated_at IS 'When this row was last written.';

CREATE TABLE silver.products (
    product_id text NOT NULL PRIMARY KEY,
    product_name text,
    category text,
    unit_price numeric(12,2),
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE silver.products IS 'Current state of each product.';
COMMENT ON COLUMN silver.products.product_id IS 'Natural key of the product.';
COMMENT ON COLUMN silver.products.product_name IS 'Product name, trimmed.';
COMMENT ON COLUMN silver.products.category IS 'Product category, trimmed and title-cased.';
COMMENT ON COLUMN silver.products.unit_price IS 'List price per unit, exact decimal.';
COMMENT ON COLUMN silver.products._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.products._source IS 'Lineage: source position of that event (file, line, byte offset for CSV).';
COMMENT ON COLUMN silver.products._updated_at IS 'When this row was last written.';

CREATE TABLE silver.countries (
    country_code text NOT NULL PRIMARY KEY,
    country_name text,
    region text,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE silver.countries IS 'Reference list of countries.';
COMMENT ON COLUMN silver.countries.country_code IS 'ISO-style country code, upper-cased.';
COMMENT ON COLUMN silver.countries.country_name IS 'Country name, trimmed and title-cased.';
COMMENT ON COLUMN silver.countries.region IS 'Region or continent.';
COMMENT ON COLUMN silver.countries._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.countries._source IS 'Lineage: source position of that event (file, line, byte offset for CSV).';
COMMENT ON COLUMN silver.countries._updated_at IS 'When this row was last written.';

CREATE TABLE silver.employees (
    employee_id text NOT NULL PRIMARY KEY,
    full_name text,
    title text,
    country text,
    hire_date date,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE silver.employees IS 'Current state of each employee (sales people).';
COMMENT ON COLUMN silver.employees.employee_id IS 'Natural key of the employee.';
COMMENT ON COLUMN silver.employees.full_name IS 'Employee name, trimmed.';
COMMENT ON COLUMN silver.employees.title IS 'Job title.';
COMMENT ON COLUMN silver.employees.country IS 'Country the employee works in, title-cased.';
COMMENT ON COLUMN silver.employees.hire_date IS 'Hiring date.';
COMMENT ON COLUMN silver.employees._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.employees._source IS 'Lineage: source position of that event (file, line, byte offset for CSV).';
COMMENT ON COLUMN silver.employees._updated_at IS 'When this row was last written.';

CREATE TABLE silver.sales (
    sale_id text NOT NULL PRIMARY KEY,
    sale_date date NOT NULL,
    customer_id text NOT NULL,
    product_id text NOT NULL,
    employee_id text,
    quantity integer NOT NULL,
    unit_price numeric(12,2),
    amount numeric(14,2) NOT NULL,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE silver.sales IS 'Current state of each sale (order line): typed, validated, deduplicated on sale_id. Rows that fail validation are in silver.quarantine instead.';
COMMENT ON COLUMN silver.sales.sale_id IS 'Natural key of the sale.';
COMMENT ON COLUMN silver.sales.sale_date IS 'Date of the sale (parsed from the configured date formats).';
COMMENT ON COLUMN silver.sales.customer_id IS 'Customer reference (may point to a customer not yet, or never, seen: gold maps it to the Unknown member).';
COMMENT ON COLUMN silver.sales.product_id IS 'Product reference.';
COMMENT ON COLUMN silver.sales.employee_id IS 'Sales person reference, if any.';
COMMENT ON COLUMN silver.sales.quantity IS 'Units sold, > 0.';
COMMENT ON COLUMN silver.sales.unit_price IS 'Price per unit, exact decimal.';
COMMENT ON COLUMN silver.sales.amount IS 'Line amount: the source amount, or quantity x unit_price when the source has none.';
COMMENT ON COLUMN silver.sales._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.sales._source IS 'Lineage: source position of that event (file, line, byte offset for CSV).';
COMMENT ON COLUMN silver.sales._updated_at IS 'When this row was last written.';

CREATE INDEX sales_sale_date_idx ON silver.sales (sale_date);
CREATE INDEX sales_customer_id_idx ON silver.sales (customer_id);

CREATE TABLE silver.quarantine (
    quarantine_id bigserial PRIMARY KEY,
    model text NOT NULL,
    bronze_event_id bigint NOT NULL,
    topic text NOT NULL,
    source_key text NOT NULL,
    source jsonb NOT NULL,
    record jsonb NOT NULL,
    reason text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT quarantine_model_source_uq UNIQUE (model, source_key)
);
COMMENT ON TABLE silver.quarantine IS 'Rows rejected by silver validation (missing required field, unparseable date or number, negative amount...), with the original record and where it came from. The current state of the entity is left as it was.';
COMMENT ON COLUMN silver.quarantine.quarantine_id IS 'Surrogate key.';
COMMENT ON COLUMN silver.quarantine.model IS 'Silver model the row was meant for (customers, products, sales...).';
COMMENT ON COLUMN silver.quarantine.bronze_event_id IS 'bronze.events.event_id of the rejected event.';
COMMENT ON COLUMN silver.quarantine.topic IS 'Kafka topic of the event.';
COMMENT ON COLUMN silver.quarantine.source_key IS 'Stable identity of the source position.';
COMMENT ON COLUMN silver.quarantine.source IS 'Source position: file, line and byte offset for CSV.';
COMMENT ON COLUMN silver.quarantine.record IS 'The row as received (envelope after image), untouched.';
COMMENT ON COLUMN silver.quarantine.reason IS 'Every validation failure of the row, separated by semicolons.';
COMMENT ON COLUMN silver.quarantine.quarantined_at IS 'When the row was rejected.';
