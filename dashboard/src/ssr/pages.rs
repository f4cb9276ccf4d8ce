//! What each page shows: its panels, one query over gold each (see [`super::panels`]).
//! Binds are text; `$n::text IS NULL` means "no such filter".

use super::panels::{Bind, Bind::*, Chart, Link, PageSpec, PanelSpec};
use crate::model::{Kind::*, Role};

const fn panel(
    id: &'static str,
    title: &'static str,
    sql: &'static str,
    binds: &'static [Bind],
    columns: &'static [(&'static str, &'static str, crate::model::Kind)],
) -> PanelSpec {
    PanelSpec {
        id,
        title,
        hint: "",
        sql,
        binds,
        columns,
        chart: None,
        links: &[],
        limit: 100,
        role: Role::Viewer,
        lines: false,
        keyset: &[],
    }
}

// ------------------------------------------------------------------ sales
const SALES_TREND: PanelSpec = PanelSpec {
    hint: "By the chosen grain, latest first; growth against the previous period and the same period a year before",
    chart: Some(Chart::Line("period_start", "revenue")),
    limit: 800,
    lines: true,
    ..panel(
        "trend",
        "Revenue by period",
        "WITH g AS (SELECT coalesce($3::text, 'month') AS grain)
         SELECT s.period_start, s.revenue, s.orders, s.customers, s.avg_basket, s.growth_prev_pct, s.growth_yoy_pct
         FROM gold.sales_by_period s, g
         WHERE $4::text IS NULL AND s.grain = g.grain
           AND ($1::text IS NULL OR s.period_start >= date_trunc(CASE WHEN g.grain IN ('day','week','month','quarter','year') THEN g.grain ELSE 'day' END, $1::text::date)::date)
           AND ($2::text IS NULL OR s.period_start <= $2::text::date)
         UNION ALL
         SELECT c.period_start, c.revenue, c.orders, c.customers, c.avg_basket, NULL, NULL
         FROM gold.country_sales c, g
         WHERE $4::text IS NOT NULL AND c.country = $4::text
           AND c.grain = CASE WHEN g.grain IN ('year', 'all') THEN g.grain ELSE 'month' END
           AND ($1::text IS NULL OR c.period_start >= date_trunc('month', $1::text::date)::date)
           AND ($2::text IS NULL OR c.period_start <= $2::text::date)
         ORDER BY 1 DESC LIMIT $5::text::bigint",
        &[From, To, Param("grain"), Param("country"), Limit],
        &[
            ("period_start", "Period", Date),
            ("revenue", "Revenue", Money),
            ("orders", "Orders", Count),
            ("customers", "Customers", Count),
            ("avg_basket", "Avg basket", Money),
            ("growth_prev_pct", "vs previous", Pct),
            ("growth_yoy_pct", "vs year before", Pct),
        ],
    )
};

const SALES_BY_COUNTRY: PanelSpec = PanelSpec {
    hint: "Click a country to filter the page",
    chart: Some(Chart::Bars("country", "revenue")),
    links: &[Link::Filter("country", "country")],
    lines: true,
    ..panel(
        "by_country",
        "Revenue by country",
        "SELECT country, sum(revenue) AS revenue, sum(orders) AS orders, sum(lines) AS lines
         FROM gold.country_sales
         WHERE grain = CASE WHEN $1::text IS NULL AND $2::text IS NULL THEN 'all' ELSE 'month' END
           AND ($1::text IS NULL OR period_start >= date_trunc('month', $1::text::date)::date)
           AND ($2::text IS NULL OR period_start <= $2::text::date)
           AND ($3::text IS NULL OR country = $3::text)
         GROUP BY country ORDER BY revenue DESC, country LIMIT $4::text::bigint",
        &[From, To, Param("country"), Limit],
        &[
            ("country", "Country", Text),
            ("revenue", "Revenue", Money),
            ("orders", "Orders", Count),
            ("lines", "Lines", Count),
        ],
    )
};

const SALES_COUNTRY_YEAR: PanelSpec = PanelSpec {
    hint: "Revenue per country and year",
    chart: Some(Chart::Heat("country", "year", "revenue")),
    limit: 2000,
    ..panel(
        "country_year",
        "Revenue by country and year",
        "SELECT country, extract(year FROM period_start)::int AS year, revenue
         FROM gold.country_sales WHERE grain = 'year' AND ($1::text IS NULL OR country = $1::text)
         ORDER BY country, year LIMIT $2::text::bigint",
        &[Param("country"), Limit],
        &[
            ("country", "Country", Text),
            ("year", "Year", Text),
            ("revenue", "Revenue", Money),
        ],
    )
};

const SALES_DISTRIBUTION: PanelSpec = PanelSpec {
    hint: "Line amounts and basket values per month (per country with the country filter)",
    limit: 48,
    ..panel(
        "distribution",
        "Distribution statistics",
        "SELECT period_start, measure, n, mean, stddev, min, p25, median, p75, max
         FROM gold.distribution
         WHERE scope = 'month' AND $3::text IS NULL
           AND ($1::text IS NULL OR period_start >= date_trunc('month', $1::text::date)::date)
           AND ($2::text IS NULL OR period_start <= $2::text::date)
         UNION ALL
         SELECT period_start, measure, n, mean, stddev, min, p25, median, p75, max
         FROM gold.distribution WHERE scope = 'country' AND country = $3::text
         ORDER BY 1 DESC, 2 LIMIT $4::text::bigint",
        &[From, To, Param("country"), Limit],
        &[
            ("period_start", "Month", Date),
            ("measure", "Of", Text),
            ("n", "Count", Count),
            ("mean", "Mean", Money),
            ("stddev", "Std dev", Money),
            ("min", "Min", Money),
            ("p25", "P25", Money),
            ("median", "Median", Money),
            ("p75", "P75", Money),
            ("max", "Max", Money),
        ],
    )
};

pub const SALES: PageSpec = PageSpec {
    id: "sales",
    panels: &[
        SALES_TREND,
        SALES_BY_COUNTRY,
        SALES_COUNTRY_YEAR,
        SALES_DISTRIBUTION,
    ],
};

// --------------------------------------------------------------- products
const PRODUCTS_TOP: PanelSpec = PanelSpec {
    hint: "Ranked by revenue over the period; click a product for its page",
    links: &[Link::Page("product_key", "/products/"), Link::Filter("category", "category")],
    limit: 50,
    ..panel(
        "top",
        "Top products",
        "WITH p AS (
           SELECT product_key, sum(revenue) AS revenue, sum(units) AS units, sum(orders) AS orders
           FROM gold.product_month
           WHERE ($1::text IS NULL OR month >= date_trunc('month', $1::text::date)::date)
             AND ($2::text IS NULL OR month <= $2::text::date)
           GROUP BY product_key)
         SELECT rank() OVER (ORDER BY p.revenue DESC) AS rank, p.product_key, d.product_name, d.category,
                p.revenue, p.units, p.orders,
                round(100 * p.revenue / nullif(sum(p.revenue) OVER (), 0), 2) AS share_pct
         FROM p LEFT JOIN gold.dim_product d USING (product_key)
         WHERE ($3::text IS NULL OR d.category = $3::text)
         ORDER BY p.revenue DESC, p.product_key LIMIT $4::text::bigint",
        &[From, To, Param("category"), Limit],
        &[
            ("rank", "#", Count),
            ("product_key", "Product", Text),
            ("product_name", "Name", Text),
            ("category", "Category", Text),
            ("revenue", "Revenue", Money),
            ("units", "Units", Number),
            ("orders", "Orders", Count),
            ("share_pct", "Share", Pct),
        ],
    )
};

const PRODUCTS_CATEGORIES: PanelSpec = PanelSpec {
    hint: "Click a category to filter the page",
    chart: Some(Chart::Bars("category", "revenue")),
    links: &[Link::Filter("category", "category")],
    ..panel(
        "categories",
        "Revenue by category",
        "SELECT coalesce(d.category, 'Unknown') AS category, sum(p.revenue) AS revenue,
                sum(p.units) AS units, count(DISTINCT p.product_key) AS products
         FROM gold.product_month p LEFT JOIN gold.dim_product d USING (product_key)
         WHERE ($1::text IS NULL OR p.month >= date_trunc('month', $1::text::date)::date)
           AND ($2::text IS NULL OR p.month <= $2::text::date)
         GROUP BY 1 ORDER BY revenue DESC, 1 LIMIT $3::text::bigint",
        &[From, To, Limit],
        &[
            ("category", "Category", Text),
            ("revenue", "Revenue", Money),
            ("units", "Units", Number),
            ("products", "Products", Count),
        ],
    )
};

pub const PRODUCTS: PageSpec = PageSpec {
    id: "products",
    panels: &[PRODUCTS_TOP, PRODUCTS_CATEGORIES],
};

const PRODUCT_TREND: PanelSpec = PanelSpec {
    chart: Some(Chart::Line("month", "revenue")),
    limit: 240,
    ..panel(
        "trend",
        "Monthly performance",
        "SELECT month, revenue, units, orders, revenue_rank, revenue_share, growth_prev_pct
         FROM gold.product_month WHERE product_key = $1::text
           AND ($2::text IS NULL OR month >= date_trunc('month', $2::text::date)::date)
           AND ($3::text IS NULL OR month <= $3::text::date)
         ORDER BY month LIMIT $4::text::bigint",
        &[Param("id"), From, To, Limit],
        &[
            ("month", "Month", Date),
            ("revenue", "Revenue", Money),
            ("units", "Units", Number),
            ("orders", "Orders", Count),
            ("revenue_rank", "Rank", Count),
            ("revenue_share", "Share", Ratio),
            ("growth_prev_pct", "vs previous", Pct),
        ],
    )
};

const PRODUCT_CUSTOMERS: PanelSpec = PanelSpec {
    links: &[Link::Page("customer_key", "/customers/")],
    limit: 20,
    ..panel(
        "best_customers",
        "Best customers",
        "SELECT f.customer_key, c.full_name, sum(f.amount) AS revenue, count(DISTINCT f.order_id) AS orders
         FROM gold.fact_sales f
         LEFT JOIN gold.dim_customer c ON c.customer_key = f.customer_key AND c.is_current
         WHERE f.source_product_id = $1::text AND f.product_key = $1::text
           AND ($2::text IS NULL OR f.sale_date >= $2::text::date)
           AND ($3::text IS NULL OR f.sale_date <= $3::text::date)
         GROUP BY 1, 2 ORDER BY revenue DESC, 1 LIMIT $4::text::bigint",
        &[Param("id"), From, To, Limit],
        &[
            ("customer_key", "Customer", Text),
            ("full_name", "Name", Text),
            ("revenue", "Revenue", Money),
            ("orders", "Orders", Count),
        ],
    )
};

pub const PRODUCT: PageSpec = PageSpec {
    id: "product",
    panels: &[PRODUCT_TREND, PRODUCT_CUSTOMERS],
};

// -------------------------------------------------------------- customers
const CUSTOMERS_LTV: PanelSpec = PanelSpec {
    hint: "Lifetime value ranking; click a customer for their page",
    links: &[
        Link::Page("customer_key", "/customers/"),
        Link::Filter("country", "country"),
        Link::Filter("segment", "segment"),
    ],
    limit: 50,
    ..panel(
        "ltv",
        "Customer lifetime value",
        "SELECT l.customer_key, c.full_name, l.country, r.segment, l.orders, l.revenue, l.avg_basket,
                l.first_order_date, l.last_order_date, l.tenure_days
         FROM gold.customer_ltv l
         LEFT JOIN gold.dim_customer c ON c.customer_key = l.customer_key AND c.is_current
         LEFT JOIN gold.customer_rfm r ON r.customer_key = l.customer_key
         WHERE ($1::text IS NULL OR l.country = $1::text) AND ($2::text IS NULL OR r.segment = $2::text)
         ORDER BY l.revenue DESC, l.customer_key LIMIT $3::text::bigint",
        &[Param("country"), Param("segment"), Limit],
        &[
            ("customer_key", "Customer", Text),
            ("full_name", "Name", Text),
            ("country", "Country", Text),
            ("segment", "Segment", Text),
            ("orders", "Orders", Count),
            ("revenue", "Revenue", Money),
            ("avg_basket", "Avg basket", Money),
            ("first_order_date", "First order", Date),
            ("last_order_date", "Last order", Date),
            ("tenure_days", "Tenure (days)", Count),
        ],
    )
};

const CUSTOMERS_SEGMENTS: PanelSpec = PanelSpec {
    hint: "RFM segments (rules in the configuration); click one to filter",
    chart: Some(Chart::Bars("segment", "customers")),
    links: &[Link::Filter("segment", "segment")],
    ..panel(
        "segments",
        "RFM segments",
        "SELECT r.segment, count(*) AS customers, sum(r.monetary) AS revenue,
                round(avg(r.recency_days), 1) AS recency, round(avg(r.frequency), 2) AS frequency
         FROM gold.customer_rfm r LEFT JOIN gold.customer_ltv l USING (customer_key)
         WHERE ($1::text IS NULL OR l.country = $1::text)
         GROUP BY 1 ORDER BY revenue DESC, 1 LIMIT $2::text::bigint",
        &[Param("country"), Limit],
        &[
            ("segment", "Segment", Text),
            ("customers", "Customers", Count),
            ("revenue", "Revenue", Money),
            ("recency", "Avg recency (days)", Number),
            ("frequency", "Avg orders", Number),
        ],
    )
};

const CUSTOMERS_COHORTS: PanelSpec = PanelSpec {
    hint:
        "Share of each first-purchase cohort buying again k months later; future months are blank",
    chart: Some(Chart::Heat("cohort_month", "months_since", "retention")),
    limit: 5000,
    ..panel(
        "cohorts",
        "Cohort retention",
        "SELECT cohort_month, months_since, cohort_size, customers, retention
         FROM gold.cohort_retention ORDER BY cohort_month, months_since LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("cohort_month", "Cohort", Date),
            ("months_since", "Months since", Count),
            ("cohort_size", "Cohort size", Count),
            ("customers", "Active", Count),
            ("retention", "Retention", Ratio),
        ],
    )
};

const CUSTOMERS_COUNTRIES: PanelSpec = PanelSpec {
    chart: Some(Chart::Bars("country", "customers")),
    links: &[Link::Filter("country", "country")],
    ..panel(
        "countries",
        "Customers by country",
        "SELECT country, count(*) AS customers, sum(revenue) AS revenue, round(avg(revenue), 2) AS avg_value
         FROM gold.customer_ltv GROUP BY country ORDER BY customers DESC, country LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("country", "Country", Text),
            ("customers", "Customers", Count),
            ("revenue", "Revenue", Money),
            ("avg_value", "Avg value", Money),
        ],
    )
};

pub const CUSTOMERS: PageSpec = PageSpec {
    id: "customers",
    panels: &[
        CUSTOMERS_LTV,
        CUSTOMERS_SEGMENTS,
        CUSTOMERS_COHORTS,
        CUSTOMERS_COUNTRIES,
    ],
};

const CUSTOMER_PROFILE: PanelSpec = panel(
    "profile",
    "Value and segment",
    "SELECT l.customer_key, c.full_name, l.country, l.orders, l.revenue, l.avg_basket,
            l.first_order_date, l.last_order_date, r.recency_days, r.r_score, r.f_score, r.m_score, r.segment
     FROM gold.customer_ltv l
     LEFT JOIN gold.dim_customer c ON c.customer_key = l.customer_key AND c.is_current
     LEFT JOIN gold.customer_rfm r ON r.customer_key = l.customer_key
     WHERE l.customer_key = $1::text LIMIT $2::text::bigint",
    &[Param("id"), Limit],
    &[
        ("customer_key", "Customer", Text),
        ("full_name", "Name", Text),
        ("country", "Country", Text),
        ("orders", "Orders", Count),
        ("revenue", "Revenue", Money),
        ("avg_basket", "Avg basket", Money),
        ("first_order_date", "First order", Date),
        ("last_order_date", "Last order", Date),
        ("recency_days", "Recency (days)", Count),
        ("r_score", "R", Count),
        ("f_score", "F", Count),
        ("m_score", "M", Count),
        ("segment", "Segment", Text),
    ],
);

const CUSTOMER_ORDERS: PanelSpec = PanelSpec {
    limit: 50,
    ..panel(
        "orders",
        "Orders",
        "SELECT order_id, order_date, country, employee_key, lines, units, amount
         FROM gold.fact_orders WHERE customer_key = $1::text
         ORDER BY order_date DESC, order_id LIMIT $2::text::bigint",
        &[Param("id"), Limit],
        &[
            ("order_id", "Order", Text),
            ("order_date", "Date", Date),
            ("country", "Country", Text),
            ("employee_key", "Employee", Text),
            ("lines", "Lines", Count),
            ("units", "Units", Number),
            ("amount", "Amount", Money),
        ],
    )
};

const CUSTOMER_HISTORY: PanelSpec = panel(
    "history",
    "History (country, city, segment)",
    "SELECT version, country, city, segment, valid_from, valid_to, is_current
     FROM gold.dim_customer WHERE customer_key = $1::text ORDER BY version LIMIT $2::text::bigint",
    &[Param("id"), Limit],
    &[
        ("version", "Version", Count),
        ("country", "Country", Text),
        ("city", "City", Text),
        ("segment", "Segment", Text),
        ("valid_from", "Valid from", Text),
        ("valid_to", "Valid to", Text),
        ("is_current", "Current", Text),
    ],
);

pub const CUSTOMER: PageSpec = PageSpec {
    id: "customer",
    panels: &[CUSTOMER_PROFILE, CUSTOMER_ORDERS, CUSTOMER_HISTORY],
};

// -------------------------------------------------------------- employees
const EMPLOYEES_RANKING: PanelSpec = PanelSpec {
    chart: Some(Chart::Bars("employee_key", "revenue")),
    links: &[Link::Filter("employee_key", "employee")],
    hint: "Over the period; click an employee to filter",
    lines: true,
    ..panel(
        "ranking",
        "Sales by employee",
        "SELECT e.employee_key, d.full_name, d.title, sum(e.revenue) AS revenue, sum(e.orders) AS orders,
                round(sum(e.revenue) / nullif(sum(e.orders), 0), 2) AS avg_basket
         FROM gold.employee_sales e LEFT JOIN gold.dim_employee d USING (employee_key)
         WHERE e.grain = CASE WHEN $1::text IS NULL AND $2::text IS NULL THEN 'all' ELSE 'month' END
           AND ($1::text IS NULL OR e.period_start >= date_trunc('month', $1::text::date)::date)
           AND ($2::text IS NULL OR e.period_start <= $2::text::date)
           AND ($3::text IS NULL OR e.employee_key = $3::text)
         GROUP BY 1, 2, 3 ORDER BY revenue DESC, 1 LIMIT $4::text::bigint",
        &[From, To, Param("employee"), Limit],
        &[
            ("employee_key", "Employee", Text),
            ("full_name", "Name", Text),
            ("title", "Title", Text),
            ("revenue", "Revenue", Money),
            ("orders", "Orders", Count),
            ("avg_basket", "Avg basket", Money),
        ],
    )
};

const EMPLOYEES_MONTHS: PanelSpec = PanelSpec {
    hint: "The latest months first (the CSV export has every month)",
    limit: 150,
    ..panel(
        "by_month",
        "Per employee and month",
        "SELECT e.period_start, e.employee_key, d.full_name, e.revenue, e.orders, e.customers, e.avg_basket
         FROM gold.employee_sales e LEFT JOIN gold.dim_employee d USING (employee_key)
         WHERE e.grain = 'month'
           AND ($1::text IS NULL OR e.period_start >= date_trunc('month', $1::text::date)::date)
           AND ($2::text IS NULL OR e.period_start <= $2::text::date)
           AND ($3::text IS NULL OR e.employee_key = $3::text)
         ORDER BY e.period_start DESC, e.revenue DESC, e.employee_key LIMIT $4::text::bigint",
        &[From, To, Param("employee"), Limit],
        &[
            ("period_start", "Month", Date),
            ("employee_key", "Employee", Text),
            ("full_name", "Name", Text),
            ("revenue", "Revenue", Money),
            ("orders", "Orders", Count),
            ("customers", "Customers", Count),
            ("avg_basket", "Avg basket", Money),
        ],
    )
};

pub const EMPLOYEES: PageSpec = PageSpec {
    id: "employees",
    panels: &[EMPLOYEES_RANKING, EMPLOYEES_MONTHS],
};

// ------------------------------------------------------------------- live
const LIVE_ANOMALIES: PanelSpec = PanelSpec {
    hint: "Minutes whose value is far from the expected one (modified z-score)",
    limit: 30,
    ..panel(
        "live_anomalies",
        "Live anomalies",
        "SELECT minute, metric, value, expected, score FROM gold.anomalies_live
         WHERE is_anomaly ORDER BY minute DESC, metric LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("minute", "Minute", Text),
            ("metric", "Metric", Text),
            ("value", "Value", Number),
            ("expected", "Expected", Number),
            ("score", "Score", Number),
        ],
    )
};

const DAILY_ANOMALIES: PanelSpec = PanelSpec {
    hint: "Days whose revenue is far from the expected one, per country",
    limit: 30,
    links: &[Link::Filter("country", "country")],
    ..panel(
        "daily_anomalies",
        "Daily revenue anomalies",
        "SELECT day, country, revenue, expected, score FROM gold.anomalies_daily
         WHERE is_anomaly AND ($1::text IS NULL OR country = $1::text)
         ORDER BY day DESC, country LIMIT $2::text::bigint",
        &[Param("country"), Limit],
        &[
            ("day", "Day", Date),
            ("country", "Country", Text),
            ("revenue", "Revenue", Money),
            ("expected", "Expected", Money),
            ("score", "Score", Number),
        ],
    )
};

const LIVE_WEB: PanelSpec = PanelSpec {
    chart: Some(Chart::Line("day", "sessions")),
    limit: 60,
    ..panel(
        "web_usage",
        "Web and app usage",
        "SELECT day, channel, sessions, page_views, customers, events FROM gold.web_usage_daily
         ORDER BY day DESC, channel LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("day", "Day", Date),
            ("channel", "Channel", Text),
            ("sessions", "Sessions", Count),
            ("page_views", "Page views", Count),
            ("customers", "Customers", Count),
            ("events", "Events", Count),
        ],
    )
};

pub const LIVE: PageSpec = PageSpec {
    id: "live",
    panels: &[LIVE_WEB, LIVE_ANOMALIES, DAILY_ANOMALIES],
};

// --------------------------------------------------------------- pipeline
const PIPELINE_FRESHNESS: PanelSpec = panel(
    "freshness",
    "Freshness per mart",
    "SELECT mart, newest_event_at, committed_at, source_to_kafka_ms, kafka_to_gold_ms, version
     FROM gold.freshness ORDER BY mart LIMIT $1::text::bigint",
    &[Limit],
    &[
        ("mart", "Mart", Text),
        ("newest_event_at", "Newest event", Text),
        ("committed_at", "Committed", Text),
        ("source_to_kafka_ms", "Source→Kafka (ms)", Count),
        ("kafka_to_gold_ms", "Kafka→gold (ms)", Count),
        ("version", "Gold version", Count),
    ],
);

const PIPELINE_SERVICES: PanelSpec = panel(
    "services",
    "Services",
    "SELECT DISTINCT ON (service, host) service, host, pid, version, started_at, heartbeat_at,
            CASE WHEN stopped_at IS NOT NULL THEN 'stopped'
                 WHEN heartbeat_at < now() - interval '2 minutes' THEN 'silent'
                 ELSE 'running' END AS state
     FROM pipeline.runs ORDER BY service, host, started_at DESC LIMIT $1::text::bigint",
    &[Limit],
    &[
        ("service", "Service", Text),
        ("host", "Host", Text),
        ("pid", "Pid", Text),
        ("version", "Version", Text),
        ("started_at", "Started", Text),
        ("heartbeat_at", "Last heartbeat", Text),
        ("state", "State", Text),
    ],
);

const PIPELINE_JOBS: PanelSpec = panel(
    "jobs",
    "Scheduled jobs (last run)",
    "SELECT DISTINCT ON (job) job, status, started_at, finished_at, rows, error
     FROM pipeline.job_runs ORDER BY job, started_at DESC LIMIT $1::text::bigint",
    &[Limit],
    &[
        ("job", "Job", Text),
        ("status", "Status", Text),
        ("started_at", "Started", Text),
        ("finished_at", "Finished", Text),
        ("rows", "Rows", Count),
        ("error", "Error", Text),
    ],
);

const PIPELINE_QUALITY: PanelSpec = PanelSpec {
    limit: 60,
    ..panel(
        "quality",
        "Data quality per day and model",
        "SELECT day, model, rows_in, valid, quarantined, filtered FROM gold.data_quality_daily
         ORDER BY day DESC, model LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("day", "Day", Date),
            ("model", "Model", Text),
            ("rows_in", "Rows in", Count),
            ("valid", "Valid", Count),
            ("quarantined", "Quarantined", Count),
            ("filtered", "Filtered", Count),
        ],
    )
};

const PIPELINE_QUARANTINE: PanelSpec = panel(
    "quarantine",
    "Quarantine by model and reason",
    "SELECT model, reason, count(*) AS rows, max(quarantined_at) AS latest
     FROM silver.quarantine GROUP BY 1, 2 ORDER BY rows DESC, 1, 2 LIMIT $1::text::bigint",
    &[Limit],
    &[
        ("model", "Model", Text),
        ("reason", "Reason", Text),
        ("rows", "Rows", Count),
        ("latest", "Latest", Text),
    ],
);

const PIPELINE_QUARANTINE_RAW: PanelSpec = PanelSpec {
    role: Role::Admin,
    limit: 50,
    ..panel(
        "quarantine_records",
        "Quarantined records (admins)",
        "SELECT quarantine_id, model, reason, source_key, record::text AS record, quarantined_at
         FROM silver.quarantine ORDER BY quarantine_id DESC LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("quarantine_id", "Id", Count),
            ("model", "Model", Text),
            ("reason", "Reason", Text),
            ("source_key", "Source", Text),
            ("record", "Record", Text),
            ("quarantined_at", "When", Text),
        ],
    )
};

const PIPELINE_DEAD_LETTERS: PanelSpec = PanelSpec {
    role: Role::Analyst,
    limit: 50,
    ..panel(
        "dead_letters",
        "Dead letters",
        "SELECT dead_letter_id, connector, topic, reason, length(raw) AS bytes,
                encode(substring(raw FROM 1 FOR 120), 'escape') AS raw_start, ingested_at
         FROM bronze.dead_letters ORDER BY dead_letter_id DESC LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("dead_letter_id", "Id", Count),
            ("connector", "Connector", Text),
            ("topic", "Topic", Text),
            ("reason", "Reason", Text),
            ("bytes", "Bytes", Count),
            ("raw_start", "Raw (first 120 bytes, escaped)", Text),
            ("ingested_at", "When", Text),
        ],
    )
};

const PIPELINE_SCHEMA: PanelSpec = PanelSpec {
    limit: 30,
    ..panel(
        "schema_history",
        "Schema history (MySQL binlog)",
        "SELECT history_id, connector, db, table_name, verb, ddl, executed_at
         FROM pipeline.schema_history ORDER BY history_id DESC LIMIT $1::text::bigint",
        &[Limit],
        &[
            ("history_id", "Id", Count),
            ("connector", "Connector", Text),
            ("db", "Database", Text),
            ("table_name", "Table", Text),
            ("verb", "Verb", Text),
            ("ddl", "DDL", Text),
            ("executed_at", "Executed", Text),
        ],
    )
};

pub const PIPELINE: PageSpec = PageSpec {
    id: "pipeline",
    panels: &[
        PIPELINE_SERVICES,
        PIPELINE_FRESHNESS,
        PIPELINE_JOBS,
        PIPELINE_QUALITY,
        PIPELINE_QUARANTINE,
        PIPELINE_QUARANTINE_RAW,
        PIPELINE_DEAD_LETTERS,
        PIPELINE_SCHEMA,
    ],
};

// --------------------------------------------------------- drill-through
const LINES: PanelSpec = PanelSpec {
    role: Role::Analyst,
    keyset: &["sale_date", "sale_id"],
    limit: 200,
    links: &[
        Link::Page("customer_key", "/customers/"),
        Link::Page("product_key", "/products/"),
    ],
    ..panel(
        "lines",
        "Sale lines",
        "SELECT sale_id, order_id, sale_date, customer_key, product_key, employee_key, country,
                quantity, unit_price, amount
         FROM gold.fact_sales
         WHERE ($1::text IS NULL OR sale_date >= $1::text::date)
           AND ($2::text IS NULL OR sale_date <= $2::text::date)
           AND ($3::text IS NULL OR country = $3::text)
           AND ($4::text IS NULL OR product_key = $4::text)
           AND ($5::text IS NULL OR employee_key = $5::text)
           AND ($6::text IS NULL OR (sale_date, sale_id) > (split_part($6::text, '|', 1)::date, split_part($6::text, '|', 2)))
         ORDER BY sale_date, sale_id LIMIT $7::text::bigint",
        &[From, To, Param("country"), Param("product"), Param("employee"), Param("cursor"), Limit],
        &[
            ("sale_id", "Line", Text),
            ("order_id", "Order", Text),
            ("sale_date", "Date", Date),
            ("customer_key", "Customer", Text),
            ("product_key", "Product", Text),
            ("employee_key", "Employee", Text),
            ("country", "Country", Text),
            ("quantity", "Qty", Number),
            ("unit_price", "Unit price", Money),
            ("amount", "Amount", Money),
        ],
    )
};

pub const LINES_PAGE: PageSpec = PageSpec {
    id: "lines",
    panels: &[LINES],
};

/// Every page, for the export route.
pub const ALL: &[&PageSpec] = &[
    &SALES,
    &PRODUCTS,
    &PRODUCT,
    &CUSTOMERS,
    &CUSTOMER,
    &EMPLOYEES,
    &LIVE,
    &PIPELINE,
    &LINES_PAGE,
];

pub fn find(id: &str) -> Option<&'static PageSpec> {
    ALL.iter().copied().find(|p| p.id == id)
}
