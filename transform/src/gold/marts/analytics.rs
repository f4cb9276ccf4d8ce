//! Tables of the history-wide analytics (RFM segments, cohort retention, the revenue
//! forecast, anomalies), written by the scheduled analytics jobs (see `gold::analytics`)
//! rather than by each batch: they depend on the whole history and on the reporting date.

use crate::gold::{col, Mart};

pub const CUSTOMER_RFM: Mart = Mart {
    name: "customer_rfm",
    table: "gold.customer_rfm",
    comment: "RFM scores 1-5 and named segment per customer, as of reference_date. Recency: the most recent buyers get 5; frequency (distinct orders) and monetary (revenue): the largest get 5. Equal values share a score: score = least(5, 1 + floor(5 * percent_rank)). Segments: the first matching rule of [transform.analytics.rfm_segments].",
    columns: &[
        col("customer_key", "text", "Customer (UNKNOWN excluded)."),
        col("reference_date", "date", "Date the recency is measured from (the last order date in the data)."),
        col("recency_days", "integer", "Days from the last order to the reference date."),
        col("frequency", "bigint", "Distinct orders."),
        col("monetary", "numeric", "Revenue."),
        col("r_score", "smallint", "Recency score 1-5 (5 = most recent)."),
        col("f_score", "smallint", "Frequency score 1-5 (5 = most orders)."),
        col("m_score", "smallint", "Monetary score 1-5 (5 = largest revenue)."),
        col("segment", "text", "Named segment."),
        col("computed_at", "timestamp with time zone", "When the job computed it."),
    ],
    key: &["customer_key"],
    indexes: &["segment"],
    module: "transform/src/gold/marts/analytics.rs",
};

pub const COHORT_RETENTION: Mart = Mart {
    name: "cohort_retention",
    table: "gold.cohort_retention",
    comment: "Cohort retention: customers by month of first order (cohort) x months since; cells after the last observed month are NULL (right-censored), not 0.",
    columns: &[
        col("cohort_month", "date", "Month of the customers' first order."),
        col("months_since", "integer", "Months since the cohort month (0 = the cohort month)."),
        col("cohort_size", "bigint", "Customers in the cohort."),
        col("customers", "bigint", "Customers of the cohort with at least one order in that month (null: not observed yet)."),
        col("revenue", "numeric", "Their revenue in that month (null: not observed yet)."),
        col("retention", "double precision", "customers / cohort_size (1 for months_since 0; null when not observed)."),
        col("computed_at", "timestamp with time zone", "When the job computed it."),
    ],
    key: &["cohort_month", "months_since"],
    indexes: &[],
    module: "transform/src/gold/marts/analytics.rs",
};

pub const FORECAST_DAILY: Mart = Mart {
    name: "forecast_daily",
    table: "gold.forecast_daily",
    comment: "Forecast of daily revenue for the next 90 days: additive Holt-Winters (ETS A,A,A) with weekly seasonality, with 80 % and 95 % prediction bands. The latest run only; see forecast_runs.",
    columns: &[
        col("day", "date", "Forecast day."),
        col("made_on", "date", "Last observed day the forecast was made from."),
        col("horizon", "integer", "Days ahead of made_on."),
        col("revenue", "numeric", "Point forecast."),
        col("lo80", "numeric", "Lower bound of the 80 % band."),
        col("hi80", "numeric", "Upper bound of the 80 % band."),
        col("lo95", "numeric", "Lower bound of the 95 % band."),
        col("hi95", "numeric", "Upper bound of the 95 % band."),
    ],
    key: &["day"],
    indexes: &[],
    module: "transform/src/gold/marts/analytics.rs",
};

pub const FORECAST_RUNS: Mart = Mart {
    name: "forecast_runs",
    table: "gold.forecast_runs",
    comment: "Every forecast run: when, from which history, the fitted parameters and the backtest error (MASE on the last held-out weeks; below 1 beats the seasonal-naive forecast).",
    columns: &[
        col("made_at", "timestamp with time zone", "When the forecast was made."),
        col("made_on", "date", "Last observed day."),
        col("history_days", "integer", "Days of history used."),
        col("method", "text", "Model, e.g. holt-winters additive m=7."),
        col("alpha", "double precision", "Level smoothing."),
        col("beta", "double precision", "Trend smoothing."),
        col("gamma", "double precision", "Seasonal smoothing."),
        col("mase", "double precision", "Backtest MASE of the model."),
        col("mase_seasonal_naive", "double precision", "Backtest MASE of the seasonal-naive forecast (the reference)."),
    ],
    key: &["made_at"],
    indexes: &[],
    module: "transform/src/gold/marts/analytics.rs",
};

pub const ANOMALIES_DAILY: Mart = Mart {
    name: "anomalies_daily",
    table: "gold.anomalies_daily",
    comment: "Daily revenue, overall (country = '') and per country, scored against its recent norm: modified z-score 0.6745 (y - median) / MAD over the same weekday of the previous 8 weeks; anomalous when |score| > 3.5.",
    columns: &[
        col("day", "date", "Day."),
        col("country", "text", "Country, or empty for all countries."),
        col("revenue", "numeric", "Observed revenue."),
        col("expected", "numeric", "Expected value (the median of the reference days)."),
        col("score", "double precision", "Robust score."),
        col("is_anomaly", "boolean", "True when |score| exceeds the threshold."),
        col("computed_at", "timestamp with time zone", "When the job computed it."),
    ],
    key: &["day", "country"],
    indexes: &["is_anomaly, day"],
    module: "transform/src/gold/marts/analytics.rs",
};

pub const ANOMALIES_LIVE: Mart = Mart {
    name: "anomalies_live",
    table: "gold.anomalies_live",
    comment: "Live anomalies while the stream runs: sales per minute (metric sales) and web sessions per minute (metric web_sessions), each minute scored against the 60 minutes before it (modified z-score, |score| > 3.5), refreshed every minute by the live_anomalies job.",
    columns: &[
        col("minute", "timestamp with time zone", "The minute."),
        col("metric", "text", "sales or web_sessions."),
        col("value", "numeric", "Observed value."),
        col("expected", "numeric", "Expected value."),
        col("score", "double precision", "Robust score."),
        col("is_anomaly", "boolean", "True when |score| exceeds the threshold."),
    ],
    key: &["minute", "metric"],
    indexes: &[],
    module: "transform/src/gold/marts/analytics.rs",
};

pub const COUNTRY_SALES_REPORTING: Mart = Mart {
    name: "country_sales_reporting",
    table: "gold.country_sales_reporting",
    comment: "Revenue per customer country and period (grain month, year or all) in the sale currency and in the reporting currency ([transform.analytics.reporting]), written by the reporting_currency job. Each day of a country is converted at that day's rate (the latest on or before it) and rounded to the cent; days without a rate are left out of revenue_reporting and counted in unconverted_days.",
    columns: &[
        col("grain", "text", "month, year or all."),
        col("period_start", "date", "First day of the period (0001-01-01 for all)."),
        col("country", "text", "Customer's current country, as in gold.fact_sales."),
        col("sale_currency", "text", "Currency the country's sales are in."),
        col("reporting_currency", "text", "Currency of revenue_reporting."),
        col("revenue_local", "numeric", "Revenue in sale_currency."),
        col("revenue_reporting", "numeric", "Revenue converted day by day into reporting_currency (days without a rate left out)."),
        col("days", "bigint", "Days of the period with sales in the country."),
        col("unconverted_days", "bigint", "Of those, days without a usable rate."),
        col("computed_at", "timestamp with time zone", "When the job computed it."),
    ],
    key: &["grain", "period_start", "country"],
    indexes: &[],
    module: "transform/src/gold/marts/analytics.rs",
};
