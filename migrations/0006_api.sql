-- HTTP API sources: exchange rates and the product catalogue in silver; sales converted
-- to one reporting currency in gold (the rate of the sale's date: the latest on or before it).

CREATE TABLE silver.exchange_rates (
    rate_id text NOT NULL PRIMARY KEY,
    rate_date date NOT NULL,
    base_currency text NOT NULL,
    currency text NOT NULL,
    rate numeric(18,8) NOT NULL,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX exchange_rates_lookup ON silver.exchange_rates (base_currency, currency, rate_date DESC);
COMMENT ON TABLE silver.exchange_rates IS 'Daily exchange rates from an API source (e.g. the ECB reference rates): one row per base currency, currency and day.';
COMMENT ON COLUMN silver.exchange_rates.rate_id IS 'Key: <base>:<currency>:<YYYY-MM-DD>, derived from the other fields unless the source has one.';
COMMENT ON COLUMN silver.exchange_rates.rate_date IS 'Day the rate applies to.';
COMMENT ON COLUMN silver.exchange_rates.base_currency IS 'ISO 4217 code of the base currency (EUR when the source does not say).';
COMMENT ON COLUMN silver.exchange_rates.currency IS 'ISO 4217 code of the quoted currency, upper-cased.';
COMMENT ON COLUMN silver.exchange_rates.rate IS 'Units of currency for one unit of base_currency.';
COMMENT ON COLUMN silver.exchange_rates._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.exchange_rates._source IS 'Lineage: source block of that event (API endpoint, page URL, poll, content hash).';
COMMENT ON COLUMN silver.exchange_rates._updated_at IS 'When this row was last written.';

CREATE TABLE silver.catalogue (
    product_id text NOT NULL PRIMARY KEY,
    product_name text,
    category text,
    list_price numeric(12,2) NOT NULL,
    currency text,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE silver.catalogue IS 'Current product catalogue from an API source; each price change is a u event in bronze.events (the history).';
COMMENT ON COLUMN silver.catalogue.product_id IS 'Natural key of the product, upper-cased.';
COMMENT ON COLUMN silver.catalogue.product_name IS 'Product name, trimmed.';
COMMENT ON COLUMN silver.catalogue.category IS 'Product category, trimmed and title-cased.';
COMMENT ON COLUMN silver.catalogue.list_price IS 'Current list price, exact decimal.';
COMMENT ON COLUMN silver.catalogue.currency IS 'ISO 4217 code of the list price.';
COMMENT ON COLUMN silver.catalogue._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.catalogue._source IS 'Lineage: source block of that event (API endpoint, page URL, poll, content hash).';
COMMENT ON COLUMN silver.catalogue._updated_at IS 'When this row was last written.';

CREATE TABLE gold.country_currency (
    country_code text NOT NULL PRIMARY KEY,
    currency text NOT NULL
);
INSERT INTO gold.country_currency VALUES
    ('AT', 'EUR'), ('BE', 'EUR'), ('CY', 'EUR'), ('DE', 'EUR'), ('EE', 'EUR'), ('ES', 'EUR'),
    ('FI', 'EUR'), ('FR', 'EUR'), ('GR', 'EUR'), ('HR', 'EUR'), ('IE', 'EUR'), ('IT', 'EUR'),
    ('LT', 'EUR'), ('LU', 'EUR'), ('LV', 'EUR'), ('MT', 'EUR'), ('NL', 'EUR'), ('PT', 'EUR'),
    ('SI', 'EUR'), ('SK', 'EUR'), ('CH', 'CHF'), ('GB', 'GBP'), ('US', 'USD'), ('SE', 'SEK'),
    ('DK', 'DKK'), ('NO', 'NOK'), ('PL', 'PLN'), ('CZ', 'CZK'), ('HU', 'HUF'), ('RO', 'RON'),
    ('BG', 'BGN'), ('JP', 'JPY'), ('CA', 'CAD'), ('AU', 'AUD'), ('CN', 'CNY'), ('IN', 'INR');
COMMENT ON TABLE gold.country_currency IS 'Reference: the currency sales are made in, per country code (the country of the buying customer). Edit to match your business.';
COMMENT ON COLUMN gold.country_currency.country_code IS 'Country code as in silver.countries.';
COMMENT ON COLUMN gold.country_currency.currency IS 'ISO 4217 code of the currency sales in that country are in.';

CREATE TABLE gold.reporting_currency (
    only_row boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (only_row),
    currency text NOT NULL DEFAULT 'EUR',
    rates_base text NOT NULL DEFAULT 'EUR'
);
INSERT INTO gold.reporting_currency DEFAULT VALUES;
COMMENT ON TABLE gold.reporting_currency IS 'Setting (one row): the currency gold reports in, and the base currency of silver.exchange_rates. UPDATE it to report in another currency.';
COMMENT ON COLUMN gold.reporting_currency.only_row IS 'Always true: the table holds one row.';
COMMENT ON COLUMN gold.reporting_currency.currency IS 'ISO 4217 code of the reporting currency.';
COMMENT ON COLUMN gold.reporting_currency.rates_base IS 'Base currency of the rates used (silver.exchange_rates.base_currency).';

CREATE VIEW gold.fact_sales_reporting AS
SELECT f.sale_id, f.date_key, f.sale_date, f.customer_id, f.product_id, f.employee_id, f.country,
       f.quantity, f.unit_price, f.amount,
       cur.sale_currency,
       cfg.currency AS reporting_currency,
       r1.rate_date AS rate_date,
       round(r2.rate / r1.rate, 8) AS fx_rate,
       round(f.amount * r2.rate / r1.rate, 2) AS amount_reporting
FROM gold.fact_sales f
CROSS JOIN gold.reporting_currency cfg
LEFT JOIN silver.countries co ON co.country_name = f.country
LEFT JOIN gold.country_currency cc ON cc.country_code = co.country_code
CROSS JOIN LATERAL (SELECT coalesce(cc.currency, cfg.rates_base) AS sale_currency) cur
LEFT JOIN LATERAL (
    SELECT f.sale_date AS rate_date, 1::numeric AS rate WHERE cur.sale_currency = cfg.rates_base
    UNION ALL
    (SELECT r.rate_date, r.rate FROM silver.exchange_rates r
     WHERE cur.sale_currency <> cfg.rates_base AND r.base_currency = cfg.rates_base
       AND r.currency = cur.sale_currency AND r.rate_date <= f.sale_date
     ORDER BY r.rate_date DESC LIMIT 1)
) r1 ON true
LEFT JOIN LATERAL (
    SELECT 1::numeric AS rate WHERE cfg.currency = cfg.rates_base
    UNION ALL
    (SELECT r.rate FROM silver.exchange_rates r
     WHERE cfg.currency <> cfg.rates_base AND r.base_currency = cfg.rates_base
       AND r.currency = cfg.currency AND r.rate_date <= f.sale_date
     ORDER BY r.rate_date DESC LIMIT 1)
) r2 ON true;
COMMENT ON VIEW gold.fact_sales_reporting IS 'fact_sales with each amount converted to the reporting currency (gold.reporting_currency) at the rate of the sale''s date: the latest rate on or before it. A sale is in the currency of its customer''s country (gold.country_currency; the rates'' base currency when unknown). amount_reporting is null when no rate is known on or before the sale''s date.';
COMMENT ON COLUMN gold.fact_sales_reporting.sale_id IS 'Natural key of the sale.';
COMMENT ON COLUMN gold.fact_sales_reporting.date_key IS 'Key into dim_date (YYYYMMDD).';
COMMENT ON COLUMN gold.fact_sales_reporting.sale_date IS 'Date of the sale.';
COMMENT ON COLUMN gold.fact_sales_reporting.customer_id IS 'Key into dim_customer.';
COMMENT ON COLUMN gold.fact_sales_reporting.product_id IS 'Key into dim_product.';
COMMENT ON COLUMN gold.fact_sales_reporting.employee_id IS 'Sales person, if any.';
COMMENT ON COLUMN gold.fact_sales_reporting.country IS 'Key into dim_country: the customer''s country.';
COMMENT ON COLUMN gold.fact_sales_reporting.quantity IS 'Units sold.';
COMMENT ON COLUMN gold.fact_sales_reporting.unit_price IS 'Price per unit, in sale_currency.';
COMMENT ON COLUMN gold.fact_sales_reporting.amount IS 'Revenue of the line, in sale_currency.';
COMMENT ON COLUMN gold.fact_sales_reporting.sale_currency IS 'Currency of the sale: that of the customer''s country, else the rates'' base currency.';
COMMENT ON COLUMN gold.fact_sales_reporting.reporting_currency IS 'Currency of amount_reporting.';
COMMENT ON COLUMN gold.fact_sales_reporting.rate_date IS 'Date of the rate used for sale_currency (the sale date itself when no conversion from the base is needed).';
COMMENT ON COLUMN gold.fact_sales_reporting.fx_rate IS 'Units of reporting currency per unit of sale currency.';
COMMENT ON COLUMN gold.fact_sales_reporting.amount_reporting IS 'amount x fx_rate, rounded to cents; null when a rate is missing.';

CREATE VIEW gold.revenue_by_country_reporting AS
SELECT country, sale_currency, reporting_currency,
       sum(amount) AS revenue_local,
       sum(amount_reporting) AS revenue_reporting,
       count(*) AS orders,
       count(*) FILTER (WHERE amount_reporting IS NULL) AS unconverted_orders
FROM gold.fact_sales_reporting
GROUP BY country, sale_currency, reporting_currency;
COMMENT ON VIEW gold.revenue_by_country_reporting IS 'Revenue per customer country in its own currency and in the reporting currency.';
COMMENT ON COLUMN gold.revenue_by_country_reporting.country IS 'Customer country.';
COMMENT ON COLUMN gold.revenue_by_country_reporting.sale_currency IS 'Currency of the country''s sales.';
COMMENT ON COLUMN gold.revenue_by_country_reporting.reporting_currency IS 'Currency of revenue_reporting.';
COMMENT ON COLUMN gold.revenue_by_country_reporting.revenue_local IS 'Sum of sale amounts in sale_currency.';
COMMENT ON COLUMN gold.revenue_by_country_reporting.revenue_reporting IS 'Sum of the converted amounts (sales without a rate are left out; see unconverted_orders).';
COMMENT ON COLUMN gold.revenue_by_country_reporting.orders IS 'Number of sale lines.';
COMMENT ON COLUMN gold.revenue_by_country_reporting.unconverted_orders IS 'Sale lines without a known rate on or before their date.';
