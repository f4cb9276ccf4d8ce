-- Gold: star schema (facts and dimensions) and KPIs over silver, for BI tools and the dashboard.
CREATE SCHEMA IF NOT EXISTS gold;
COMMENT ON SCHEMA gold IS 'Star schema for analysis: fact_sales with its dimensions (date, customer, product, country) and KPI views. Views over silver, so they are always consistent with the last committed batch.';

CREATE TABLE gold.dim_date (
    date_key     integer  PRIMARY KEY,
    date         date     NOT NULL UNIQUE,
    year         smallint NOT NULL,
    quarter      smallint NOT NULL,
    month        smallint NOT NULL,
    month_name   text     NOT NULL,
    iso_week     smallint NOT NULL,
    day_of_month smallint NOT NULL,
    day_of_week  smallint NOT NULL,
    day_name     text     NOT NULL,
    is_weekend   boolean  NOT NULL
);
INSERT INTO gold.dim_date
SELECT to_char(d, 'YYYYMMDD')::integer, d::date,
       extract(year FROM d), extract(quarter FROM d), extract(month FROM d), trim(to_char(d, 'Month')),
       extract(week FROM d), extract(day FROM d), extract(isodow FROM d), trim(to_char(d, 'Day')),
       extract(isodow FROM d) IN (6, 7)
FROM generate_series(date '2000-01-01', date '2040-12-31', interval '1 day') AS d;
COMMENT ON TABLE gold.dim_date IS 'Calendar dimension, one row per day from 2000 to 2040.';
COMMENT ON COLUMN gold.dim_date.date_key IS 'Surrogate key YYYYMMDD, referenced by fact_sales.date_key.';
COMMENT ON COLUMN gold.dim_date.date IS 'The calendar day.';
COMMENT ON COLUMN gold.dim_date.year IS 'Calendar year.';
COMMENT ON COLUMN gold.dim_date.quarter IS 'Quarter of the year, 1-4.';
COMMENT ON COLUMN gold.dim_date.month IS 'Month of the year, 1-12.';
COMMENT ON COLUMN gold.dim_date.month_name IS 'English month name.';
COMMENT ON COLUMN gold.dim_date.iso_week IS 'ISO 8601 week number.';
COMMENT ON COLUMN gold.dim_date.day_of_month IS 'Day of the month, 1-31.';
COMMENT ON COLUMN gold.dim_date.day_of_week IS 'ISO day of week, 1 = Monday ... 7 = Sunday.';
COMMENT ON COLUMN gold.dim_date.day_name IS 'English day name.';
COMMENT ON COLUMN gold.dim_date.is_weekend IS 'True on Saturday and Sunday.';

CREATE VIEW gold.dim_customer AS
SELECT customer_id, full_name, email, coalesce(country, 'Unknown') AS country, city, signup_date
FROM silver.customers
UNION ALL
SELECT 'UNKNOWN', 'Unknown customer', NULL, 'Unknown', NULL, NULL;
COMMENT ON VIEW gold.dim_customer IS 'Customer dimension: every silver customer plus the Unknown member that sales with an unknown customer reference point to.';
COMMENT ON COLUMN gold.dim_customer.customer_id IS 'Customer key (natural key; UNKNOWN for the unknown member).';
COMMENT ON COLUMN gold.dim_customer.full_name IS 'Customer name.';
COMMENT ON COLUMN gold.dim_customer.email IS 'E-mail address.';
COMMENT ON COLUMN gold.dim_customer.country IS 'Country name (Unknown when missing).';
COMMENT ON COLUMN gold.dim_customer.city IS 'City.';
COMMENT ON COLUMN gold.dim_customer.signup_date IS 'Sign-up date.';

CREATE VIEW gold.dim_product AS
SELECT product_id, product_name, coalesce(category, 'Unknown') AS category, unit_price
FROM silver.products
UNION ALL
SELECT 'UNKNOWN', 'Unknown product', 'Unknown', NULL;
COMMENT ON VIEW gold.dim_product IS 'Product dimension: every silver product plus the Unknown member.';
COMMENT ON COLUMN gold.dim_product.product_id IS 'Product key (natural key; UNKNOWN for the unknown member).';
COMMENT ON COLUMN gold.dim_product.product_name IS 'Product name.';
COMMENT ON COLUMN gold.dim_product.category IS 'Product category.';
COMMENT ON COLUMN gold.dim_product.unit_price IS 'List price per unit.';

CREATE VIEW gold.dim_country AS
SELECT c.country_name, c.country_code, c.region FROM silver.countries c
UNION
SELECT DISTINCT cu.country, NULL::text, NULL::text FROM silver.customers cu
WHERE cu.country IS NOT NULL AND NOT EXISTS (SELECT 1 FROM silver.countries c2 WHERE c2.country_name = cu.country)
UNION
SELECT 'Unknown', NULL, NULL;
COMMENT ON VIEW gold.dim_country IS 'Country dimension: the reference countries, plus any country a customer names that the reference lacks, plus Unknown.';
COMMENT ON COLUMN gold.dim_country.country_name IS 'Country name, the key used by fact_sales.country.';
COMMENT ON COLUMN gold.dim_country.country_code IS 'Country code from the reference list (null if the country is not in it).';
COMMENT ON COLUMN gold.dim_country.region IS 'Region from the reference list.';

CREATE VIEW gold.fact_sales AS
SELECT s.sale_id,
       to_char(s.sale_date, 'YYYYMMDD')::integer AS date_key,
       s.sale_date,
       CASE WHEN c.customer_id IS NULL THEN 'UNKNOWN' ELSE s.customer_id END AS customer_id,
       CASE WHEN p.product_id IS NULL THEN 'UNKNOWN' ELSE s.product_id END AS product_id,
       s.employee_id,
       coalesce(c.country, 'Unknown') AS country,
       s.quantity,
       s.unit_price,
       s.amount
FROM silver.sales s
LEFT JOIN silver.customers c ON c.customer_id = s.customer_id
LEFT JOIN silver.products p ON p.product_id = s.product_id;
COMMENT ON VIEW gold.fact_sales IS 'Sales fact, one row per valid sale line, with keys into dim_date, dim_customer, dim_product and dim_country.';
COMMENT ON COLUMN gold.fact_sales.sale_id IS 'Natural key of the sale.';
COMMENT ON COLUMN gold.fact_sales.date_key IS 'Key into dim_date (YYYYMMDD).';
COMMENT ON COLUMN gold.fact_sales.sale_date IS 'Date of the sale.';
COMMENT ON COLUMN gold.fact_sales.customer_id IS 'Key into dim_customer (UNKNOWN when the customer is not in silver).';
COMMENT ON COLUMN gold.fact_sales.product_id IS 'Key into dim_product (UNKNOWN when the product is not in silver).';
COMMENT ON COLUMN gold.fact_sales.employee_id IS 'Sales person, if any.';
COMMENT ON COLUMN gold.fact_sales.country IS 'Key into dim_country: the customer''s country (Unknown when not known).';
COMMENT ON COLUMN gold.fact_sales.quantity IS 'Units sold.';
COMMENT ON COLUMN gold.fact_sales.unit_price IS 'Price per unit.';
COMMENT ON COLUMN gold.fact_sales.amount IS 'Revenue of the line.';

CREATE VIEW gold.daily_revenue AS
SELECT sale_date, sum(amount) AS revenue, count(*) AS orders,
       count(DISTINCT customer_id) AS customers, round(avg(amount), 2) AS avg_basket
FROM gold.fact_sales GROUP BY sale_date;
COMMENT ON VIEW gold.daily_revenue IS 'Revenue, order count, distinct customers and average basket per day.';
COMMENT ON COLUMN gold.daily_revenue.sale_date IS 'The day.';
COMMENT ON COLUMN gold.daily_revenue.revenue IS 'Sum of sale amounts that day.';
COMMENT ON COLUMN gold.daily_revenue.orders IS 'Number of sale lines that day.';
COMMENT ON COLUMN gold.daily_revenue.customers IS 'Distinct customer keys that bought that day (UNKNOWN counts once).';
COMMENT ON COLUMN gold.daily_revenue.avg_basket IS 'Average amount per sale line that day.';

CREATE VIEW gold.revenue_by_country AS
SELECT country, sum(amount) AS revenue, count(*) AS orders, count(DISTINCT customer_id) AS customers
FROM gold.fact_sales GROUP BY country;
COMMENT ON VIEW gold.revenue_by_country IS 'Revenue, order count and distinct customers per customer country.';
COMMENT ON COLUMN gold.revenue_by_country.country IS 'Customer country (Unknown when the customer or its country is unknown).';
COMMENT ON COLUMN gold.revenue_by_country.revenue IS 'Sum of sale amounts.';
COMMENT ON COLUMN gold.revenue_by_country.orders IS 'Number of sale lines.';
COMMENT ON COLUMN gold.revenue_by_country.customers IS 'Distinct customer keys.';

CREATE VIEW gold.kpi_overview AS
SELECT coalesce(sum(amount), 0)::numeric(16,2) AS revenue,
       count(*) AS orders,
       count(DISTINCT customer_id) AS customers,
       coalesce(round(avg(amount), 2), 0) AS avg_basket,
       min(sale_date) AS first_sale_date,
       max(sale_date) AS last_sale_date
FROM gold.fact_sales;
COMMENT ON VIEW gold.kpi_overview IS 'Headline KPIs over all sales: revenue, orders, buying customers, average basket and the date range.';
COMMENT ON COLUMN gold.kpi_overview.revenue IS 'Total revenue.';
COMMENT ON COLUMN gold.kpi_overview.orders IS 'Number of sale lines.';
COMMENT ON COLUMN gold.kpi_overview.customers IS 'Distinct customer keys that bought (UNKNOWN counts once).';
COMMENT ON COLUMN gold.kpi_overview.avg_basket IS 'Average amount per sale line.';
COMMENT ON COLUMN gold.kpi_overview.first_sale_date IS 'Date of the first sale.';
COMMENT ON COLUMN gold.kpi_overview.last_sale_date IS 'Date of the last sale.';
