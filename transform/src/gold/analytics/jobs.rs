//! The analytics jobs: each reads its inputs from stored marts (or silver) with plain SQL,
//! computes with the pure functions of [`super`] and replaces its output table in **one**
//! transaction (inputs read in it too), writing with multi-row `INSERT … SELECT FROM
//! unnest($arrays)`.
//!
//! | job | reads | writes |
//! |---|---|---|
//! | [`rfm`] | `gold.fact_orders` | `gold.customer_rfm` |
//! | [`cohorts`] | `gold.fact_orders` | `gold.cohort_retention` |
//! | [`forecast`] | `gold.sales_by_period` (day) | `gold.forecast_daily`, `gold.forecast_runs` |
//! | [`anomalies`] | `gold.sales_by_period` (day), `gold.fact_sales` | `gold.anomalies_daily` |
//! | [`live_anomalies`] | `silver.sales`, `silver.web_events` | `gold.anomalies_live` |
//!
//! Each returns the number of rows it wrote. The scheduler is [`crate::jobs`].

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Row, Transaction};

use super::{anomaly, cohort, forecast, rfm};
use crate::sql::DbError;

/// Months after the cohort month every cohort gets cells for (NULL when not observed yet).
pub const COHORT_HORIZON: i32 = 12;
/// Seasonal period of the daily revenue forecast (a week).
pub const FORECAST_PERIOD: usize = 7;
/// Most recent days of history the forecast is fitted on.
pub const FORECAST_MAX_HISTORY: usize = 730;
/// Days of history below which no forecast is made (two seasons).
pub const FORECAST_MIN_HISTORY: usize = 2 * FORECAST_PERIOD;
/// Held-out days of the backtest (fewer when the history is short).
pub const FORECAST_BACKTEST: usize = 28;
/// Days forecast.
pub const FORECAST_DAYS: usize = 90;
/// Method name stored in `gold.forecast_runs`.
pub const FORECAST_METHOD: &str = "holt-winters additive m=7";
/// Trailing window, in minutes, of the live anomaly scores.
pub const LIVE_WINDOW_MINUTES: usize = 60;
/// Threshold on the live anomaly scores.
pub const LIVE_THRESHOLD: f64 = anomaly::DEFAULT_THRESHOLD;
/// Hours of minutes (re)scored by each live run.
pub const LIVE_HOURS: i32 = 6;

/// Why an analytics job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A query failed (or the warehouse is unreachable).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The RFM segment rules cannot match as written.
    #[error("invalid RFM segment rules: {0}")]
    Rules(#[from] rfm::RuleError),
    /// The forecast could not be computed.
    #[error("forecast: {0}")]
    Forecast(#[from] forecast::ForecastError),
}

async fn begin<'a>(client: &'a mut Client, job: &str) -> Result<Transaction<'a>, DbError> {
    client
        .transaction()
        .await
        .map_err(DbError::query(format!("starting the {job} transaction")))
}

/// Bumps `gold.version` and the freshness of the job's marts, then commits: the app's
/// cache (keyed by the version) sees the new figures at once.
async fn commit(tx: Transaction<'_>, job: &str) -> Result<(), DbError> {
    let marts: &[&str] = match job {
        "rfm" => &["customer_rfm"],
        "cohorts" => &["cohort_retention"],
        "forecast" => &["forecast_daily", "forecast_runs"],
        "anomalies" => &["anomalies_daily"],
        "live_anomalies" => &["anomalies_live"],
        _ => &[],
    };
    if !marts.is_empty() {
        crate::gold::marts::freshness::bump(&tx, marts, &crate::gold::Touched::default()).await?;
    }
    tx.commit()
        .await
        .map_err(DbError::query(format!("committing the {job} job")))
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, ctx: &str) -> Result<T, DbError> {
    row.try_get(idx).map_err(DbError::query(ctx))
}

fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The latest order date over all orders (UNKNOWN customers included).
async fn last_order_date(tx: &Transaction<'_>) -> Result<Option<NaiveDate>, DbError> {
    let ctx = "reading the last order date from gold.fact_orders";
    let row = tx
        .query_one("SELECT max(order_date) FROM gold.fact_orders", &[])
        .await
        .map_err(DbError::query(ctx))?;
    get(&row, 0, ctx)
}

/// Per-customer aggregates of `gold.fact_orders` (UNKNOWN excluded), by customer key.
async fn customer_aggregates(tx: &Transaction<'_>) -> Result<Vec<rfm::CustomerAgg>, DbError> {
    let ctx = "reading customers from gold.fact_orders";
    let rows = tx
        .query(
            "SELECT customer_key, max(order_date), count(DISTINCT order_id), coalesce(sum(amount), 0)
             FROM gold.fact_orders
             WHERE customer_key <> 'UNKNOWN' AND order_date IS NOT NULL
             GROUP BY customer_key ORDER BY customer_key",
            &[],
        )
        .await
        .map_err(DbError::query(ctx))?;
    rows.iter()
        .map(|r| {
            Ok(rfm::CustomerAgg {
                customer_key: get(r, 0, ctx)?,
                last_order: get(r, 1, ctx)?,
                orders: get(r, 2, ctx)?,
                revenue: get(r, 3, ctx)?,
            })
        })
        .collect()
}

/// Recomputes `gold.customer_rfm`: recency from the last order date in the data, distinct
/// orders, revenue; segments from `rules` (first match wins; see [`rfm::default_rules`]).
pub async fn rfm(client: &mut Client, rules: &[rfm::SegmentRule]) -> Result<u64, JobError> {
    rfm::validate_rules(rules)?;
    let tx = begin(client, "rfm").await?;
    let reference = last_order_date(&tx).await?;
    let customers = customer_aggregates(&tx).await?;
    let scores = match reference {
        Some(day) => rfm::score(&customers, day, rules),
        None => Vec::new(),
    };
    tx.execute("DELETE FROM gold.customer_rfm", &[])
        .await
        .map_err(DbError::query("emptying gold.customer_rfm"))?;
    let small = |v: u8| i16::from(v);
    let keys: Vec<&str> = scores.iter().map(|s| s.customer_key.as_str()).collect();
    let recency: Vec<i32> = scores
        .iter()
        .map(|s| i32::try_from(s.recency_days).unwrap_or(i32::MAX))
        .collect();
    let frequency: Vec<i64> = scores.iter().map(|s| s.frequency).collect();
    let monetary: Vec<Decimal> = scores.iter().map(|s| s.monetary).collect();
    let r: Vec<i16> = scores.iter().map(|s| small(s.r)).collect();
    let f: Vec<i16> = scores.iter().map(|s| small(s.f)).collect();
    let m: Vec<i16> = scores.iter().map(|s| small(s.m)).collect();
    let segment: Vec<&str> = scores.iter().map(|s| s.segment.as_str()).collect();
    let n = tx
        .execute(
            "INSERT INTO gold.customer_rfm (customer_key, reference_date, recency_days, frequency,
                 monetary, r_score, f_score, m_score, segment, computed_at)
             SELECT k, $1, rd, fr, mo, r, f, m, seg, now()
             FROM unnest($2::text[], $3::int4[], $4::int8[], $5::numeric[], $6::int2[],
                         $7::int2[], $8::int2[], $9::text[]) AS u(k, rd, fr, mo, r, f, m, seg)",
            &[
                &reference, &keys, &recency, &frequency, &monetary, &r, &f, &m, &segment,
            ],
        )
        .await
        .map_err(DbError::query("writing gold.customer_rfm"))?;
    commit(tx, "rfm").await?;
    Ok(n)
}

/// Recomputes `gold.cohort_retention` from `gold.fact_orders` (UNKNOWN excluded), observed
/// up to the month of the last order date, [`COHORT_HORIZON`] months per cohort; censored
/// cells are NULL.
pub async fn cohorts(client: &mut Client) -> Result<u64, JobError> {
    let tx = begin(client, "cohorts").await?;
    let last = last_order_date(&tx).await?;
    let ctx = "reading customer months from gold.fact_orders";
    let rows = tx
        .query(
            "SELECT customer_key, date_trunc('month', order_date)::date, coalesce(sum(amount), 0)
             FROM gold.fact_orders
             WHERE customer_key <> 'UNKNOWN' AND order_date IS NOT NULL
             GROUP BY 1, 2",
            &[],
        )
        .await
        .map_err(DbError::query(ctx))?;
    let orders = rows
        .iter()
        .map(|r| {
            Ok(cohort::CohortOrder {
                customer_key: get(r, 0, ctx)?,
                month: get(r, 1, ctx)?,
                revenue: get(r, 2, ctx)?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    let cells = match last {
        Some(day) => cohort::retention(&orders, day, COHORT_HORIZON),
        None => Vec::new(),
    };
    tx.execute("DELETE FROM gold.cohort_retention", &[])
        .await
        .map_err(DbError::query("emptying gold.cohort_retention"))?;
    let month: Vec<NaiveDate> = cells.iter().map(|c| c.cohort_month).collect();
    let since: Vec<i32> = cells.iter().map(|c| c.months_since).collect();
    let size: Vec<i64> = cells.iter().map(|c| c.cohort_size).collect();
    let customers: Vec<Option<i64>> = cells.iter().map(|c| c.customers).collect();
    let revenue: Vec<Option<Decimal>> = cells.iter().map(|c| c.revenue).collect();
    let retention: Vec<Option<f64>> = cells.iter().map(|c| c.retention).collect();
    let n = tx
        .execute(
            "INSERT INTO gold.cohort_retention (cohort_month, months_since, cohort_size, customers,
                 revenue, retention, computed_at)
             SELECT cm, k, sz, cu, rv, rt, now()
             FROM unnest($1::date[], $2::int4[], $3::int8[], $4::int8[], $5::numeric[],
                         $6::float8[]) AS u(cm, k, sz, cu, rv, rt)",
            &[&month, &since, &size, &customers, &revenue, &retention],
        )
        .await
        .map_err(DbError::query("writing gold.cohort_retention"))?;
    commit(tx, "cohorts").await?;
    Ok(n)
}

/// Consecutive days from the first day of `points` to the later of its last day and `until`,
/// missing days as zero. Empty when `points` is.
pub fn fill_days(
    points: &BTreeMap<NaiveDate, Decimal>,
    until: Option<NaiveDate>,
) -> Vec<(NaiveDate, Decimal)> {
    let (Some((&first, _)), Some((&last, _))) = (points.first_key_value(), points.last_key_value())
    else {
        return Vec::new();
    };
    let last = until.map_or(last, |u| u.max(last));
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| (d, points.get(&d).copied().unwrap_or(Decimal::ZERO)))
        .collect()
}

/// Daily revenue of `gold.sales_by_period` (grain day), by day.
async fn daily_revenue(tx: &Transaction<'_>) -> Result<BTreeMap<NaiveDate, Decimal>, DbError> {
    let ctx = "reading daily revenue from gold.sales_by_period";
    let rows = tx
        .query(
            "SELECT period_start, coalesce(revenue, 0) FROM gold.sales_by_period
             WHERE grain = 'day' AND period_start IS NOT NULL",
            &[],
        )
        .await
        .map_err(DbError::query(ctx))?;
    rows.iter()
        .map(|r| Ok((get(r, 0, ctx)?, get(r, 1, ctx)?)))
        .collect()
}

/// A forecast ready to be stored.
#[derive(Debug, Clone)]
pub struct ForecastRun {
    /// Last observed day; forecast day `h` is `made_on + h`.
    pub made_on: NaiveDate,
    /// Days of history the model was fitted on.
    pub history_days: usize,
    /// The fitted model.
    pub model: forecast::HoltWinters,
    /// [`FORECAST_DAYS`] forecast points, horizon 1 first.
    pub points: Vec<forecast::Point>,
    /// The backtest on the last held-out days; `None` when the history leaves no days to
    /// hold out or MASE is undefined (a series without seasonal-naive error).
    pub backtest: Option<forecast::Backtest>,
}

/// Fits and backtests the forecast of a zero-filled daily series ending on `last_day`, on its
/// last [`FORECAST_MAX_HISTORY`] days. `None` when fewer than [`FORECAST_MIN_HISTORY`] days.
pub fn plan_forecast(
    last_day: NaiveDate,
    y: &[f64],
) -> Result<Option<ForecastRun>, forecast::ForecastError> {
    let y = &y[y.len().saturating_sub(FORECAST_MAX_HISTORY)..];
    if y.len() < FORECAST_MIN_HISTORY {
        return Ok(None);
    }
    let model = forecast::fit(y, FORECAST_PERIOD)?;
    let points = model.forecast(FORECAST_DAYS);
    let horizon = FORECAST_BACKTEST.min(y.len() - 2 * FORECAST_PERIOD);
    let backtest = if horizon == 0 {
        None
    } else {
        match forecast::backtest(y, FORECAST_PERIOD, horizon) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, horizon, "forecast backtest not possible; MASE left empty");
                None
            }
        }
    };
    Ok(Some(ForecastRun {
        made_on: last_day,
        history_days: y.len(),
        model,
        points,
        backtest,
    }))
}

/// Writes a forecast: replaces `gold.forecast_daily`, appends to `gold.forecast_runs`.
async fn store_forecast(tx: &Transaction<'_>, run: &ForecastRun) -> Result<u64, DbError> {
    tx.execute("DELETE FROM gold.forecast_daily", &[])
        .await
        .map_err(DbError::query("emptying gold.forecast_daily"))?;
    let p = &run.points;
    let horizon: Vec<i32> = (1..=p.len()).map(|h| h as i32).collect();
    let col = |f: fn(&forecast::Point) -> f64| p.iter().map(f).collect::<Vec<f64>>();
    let (mean, lo80, hi80) = (col(|x| x.mean), col(|x| x.lo80), col(|x| x.hi80));
    let (lo95, hi95) = (col(|x| x.lo95), col(|x| x.hi95));
    let n = tx
        .execute(
            "INSERT INTO gold.forecast_daily (day, made_on, horizon, revenue, lo80, hi80, lo95, hi95)
             SELECT $1::date + h, $1::date, h, round(m::numeric, 2), round(l80::numeric, 2),
                    round(h80::numeric, 2), round(l95::numeric, 2), round(h95::numeric, 2)
             FROM unnest($2::int4[], $3::float8[], $4::float8[], $5::float8[], $6::float8[],
                         $7::float8[]) AS u(h, m, l80, h80, l95, h95)",
            &[&run.made_on, &horizon, &mean, &lo80, &hi80, &lo95, &hi95],
        )
        .await
        .map_err(DbError::query("writing gold.forecast_daily"))?;
    let m = &run.model;
    let history = i32::try_from(run.history_days).unwrap_or(i32::MAX);
    let mase = run.backtest.as_ref().map(|b| b.hw_mase);
    let naive = run.backtest.as_ref().map(|b| b.naive_mase);
    let runs = tx
        .execute(
            "INSERT INTO gold.forecast_runs (made_at, made_on, history_days, method, alpha, beta,
                 gamma, mase, mase_seasonal_naive)
             VALUES (now(), $1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &run.made_on,
                &history,
                &FORECAST_METHOD,
                &m.alpha,
                &m.beta,
                &m.gamma,
                &mase,
                &naive,
            ],
        )
        .await
        .map_err(DbError::query("writing gold.forecast_runs"))?;
    Ok(n + runs)
}

/// Forecasts daily revenue for the next [`FORECAST_DAYS`] days (Holt-Winters, weekly
/// seasonality) from `gold.sales_by_period` (missing days as 0), with a backtest against the
/// seasonal-naive forecast. Returns the rows written (forecast days + 1 run row), or 0
/// without writing anything when the history is shorter than [`FORECAST_MIN_HISTORY`] days.
pub async fn forecast(client: &mut Client) -> Result<u64, JobError> {
    let tx = begin(client, "forecast").await?;
    let days = fill_days(&daily_revenue(&tx).await?, None);
    let Some(&(last_day, _)) = days.last() else {
        tracing::info!("forecast skipped: gold.sales_by_period has no daily revenue yet");
        return Ok(0);
    };
    let y: Vec<f64> = days.iter().map(|(_, v)| to_f64(*v)).collect();
    let Some(run) = plan_forecast(last_day, &y)? else {
        tracing::info!(
            history_days = y.len(),
            needed = FORECAST_MIN_HISTORY,
            "forecast skipped: too little daily history for a weekly-seasonal model"
        );
        return Ok(0);
    };
    let n = store_forecast(&tx, &run).await?;
    commit(tx, "forecast").await?;
    tracing::info!(
        made_on = %run.made_on,
        history_days = run.history_days,
        mase = ?run.backtest.as_ref().map(|b| b.hw_mase),
        mase_seasonal_naive = ?run.backtest.as_ref().map(|b| b.naive_mase),
        "revenue forecast stored"
    );
    Ok(n)
}

/// Rows of `gold.anomalies_daily`, column by column.
#[derive(Debug, Default)]
struct DailyScores {
    day: Vec<NaiveDate>,
    country: Vec<String>,
    revenue: Vec<Decimal>,
    expected: Vec<f64>,
    score: Vec<f64>,
    is_anomaly: Vec<bool>,
}

impl DailyScores {
    /// Scores one zero-filled series with [`anomaly::score_daily`]; keeps the scored days.
    fn push_series(&mut self, country: &str, days: &[(NaiveDate, Decimal)]) {
        let y: Vec<f64> = days.iter().map(|(_, v)| to_f64(*v)).collect();
        for (&(day, revenue), s) in days.iter().zip(anomaly::score_daily(&y)) {
            let Some(s) = s else { continue };
            self.day.push(day);
            self.country.push(country.to_owned());
            self.revenue.push(revenue);
            self.expected.push(s.expected);
            self.score.push(s.score);
            self.is_anomaly.push(s.is_anomaly);
        }
    }
}

/// Daily revenue per country from `gold.fact_sales` (an empty country counts as Unknown).
async fn country_daily_revenue(
    tx: &Transaction<'_>,
) -> Result<BTreeMap<String, BTreeMap<NaiveDate, Decimal>>, DbError> {
    let ctx = "reading daily revenue per country from gold.fact_sales";
    let rows = tx
        .query(
            "SELECT coalesce(nullif(country, ''), 'Unknown'), sale_date, coalesce(sum(amount), 0)
             FROM gold.fact_sales WHERE sale_date IS NOT NULL GROUP BY 1, 2",
            &[],
        )
        .await
        .map_err(DbError::query(ctx))?;
    let mut out: BTreeMap<String, BTreeMap<NaiveDate, Decimal>> = BTreeMap::new();
    for r in &rows {
        let country: String = get(r, 0, ctx)?;
        out.entry(country)
            .or_default()
            .insert(get(r, 1, ctx)?, get(r, 2, ctx)?);
    }
    Ok(out)
}

/// Recomputes `gold.anomalies_daily`: daily revenue overall (country `''`, from
/// `gold.sales_by_period`) and per country (from `gold.fact_sales`), each zero-filled from its
/// first day to the last day of any sale, scored with [`anomaly::score_daily`]; every scored
/// day is written.
pub async fn anomalies(client: &mut Client) -> Result<u64, JobError> {
    let tx = begin(client, "anomalies").await?;
    let overall = daily_revenue(&tx).await?;
    let countries = country_daily_revenue(&tx).await?;
    let last = countries
        .values()
        .filter_map(|days| days.last_key_value().map(|(d, _)| *d))
        .chain(overall.last_key_value().map(|(d, _)| *d))
        .max();
    let mut rows = DailyScores::default();
    rows.push_series("", &fill_days(&overall, last));
    for (country, days) in &countries {
        rows.push_series(country, &fill_days(days, last));
    }
    tx.execute("DELETE FROM gold.anomalies_daily", &[])
        .await
        .map_err(DbError::query("emptying gold.anomalies_daily"))?;
    let n = tx
        .execute(
            "INSERT INTO gold.anomalies_daily (day, country, revenue, expected, score, is_anomaly,
                 computed_at)
             SELECT d, c, r, round(e::numeric, 2), s, a, now()
             FROM unnest($1::date[], $2::text[], $3::numeric[], $4::float8[], $5::float8[],
                         $6::bool[]) AS u(d, c, r, e, s, a)",
            &[
                &rows.day,
                &rows.country,
                &rows.revenue,
                &rows.expected,
                &rows.score,
                &rows.is_anomaly,
            ],
        )
        .await
        .map_err(DbError::query("writing gold.anomalies_daily"))?;
    commit(tx, "anomalies").await?;
    Ok(n)
}

/// Bounds of the live window: `lo` goes back [`LIVE_WINDOW_MINUTES`] more than the scored
/// hours so every scored minute has its full trailing window; `hi` is the current,
/// incomplete minute (excluded).
const BOUNDS: &str = "
bounds AS (SELECT date_trunc('minute', now()) AS hi,
                  date_trunc('minute', now()) - make_interval(hours => $1, mins => $2) AS lo),";

/// Every minute of the window with its count (`counts`: `minute`, `n`), zero-filled.
const MINUTES: &str = "
minutes AS (SELECT generate_series(lo, hi - interval '1 minute', interval '1 minute') AS minute
            FROM bounds)
SELECT m.minute, coalesce(c.n, 0)::float8 FROM minutes m LEFT JOIN counts c USING (minute)
ORDER BY m.minute";

/// Sale lines written to silver per minute.
const SALES_COUNTS: &str = "
counts AS (SELECT date_trunc('minute', s._updated_at) AS minute, count(*) AS n
           FROM silver.sales s, bounds b WHERE s._updated_at >= b.lo AND s._updated_at < b.hi
           GROUP BY 1),";

/// Distinct web sessions per minute of `event_time`. Only text that is a valid ISO timestamp
/// is cast (regular expression, then the day checked against the month's length; nested
/// `CASE`s fix the evaluation order), so a malformed `event_time` is skipped rather than
/// failing the query. `event_date` (indexed) narrows the scan, with two days of slack for
/// time zones.
const SESSION_COUNTS: &str = r"
parsed AS (
    SELECT w.session_id,
           CASE WHEN w.event_time ~ '^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?([Zz]|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?$'
                THEN CASE WHEN substr(w.event_time, 9, 2)::int <= extract(day FROM
                               make_date(substr(w.event_time, 1, 4)::int, substr(w.event_time, 6, 2)::int, 1)
                               + interval '1 month' - interval '1 day')
                          THEN w.event_time::timestamptz END
           END AS ts
    FROM silver.web_events w, bounds b
    WHERE w.event_date IS NULL
       OR w.event_date BETWEEN (b.lo - interval '2 days')::date AND (b.hi + interval '2 days')::date),
counts AS (SELECT date_trunc('minute', p.ts) AS minute, count(DISTINCT p.session_id) AS n
           FROM parsed p, bounds b WHERE p.ts >= b.lo AND p.ts < b.hi GROUP BY 1),";

/// One per-minute series of the live window, oldest minute first.
async fn minute_series(
    tx: &Transaction<'_>,
    counts: &str,
    metric: &str,
) -> Result<Vec<(DateTime<Utc>, f64)>, DbError> {
    let window = i32::try_from(LIVE_WINDOW_MINUTES).unwrap_or(i32::MAX);
    let ctx = format!("counting {metric} per minute");
    let rows = tx
        .query(
            &format!("WITH {BOUNDS}{counts}{MINUTES}"),
            &[&LIVE_HOURS, &window],
        )
        .await
        .map_err(DbError::query(ctx.as_str()))?;
    rows.iter()
        .map(|r| Ok((get(r, 0, &ctx)?, get(r, 1, &ctx)?)))
        .collect()
}

/// Rows of `gold.anomalies_live`, column by column.
#[derive(Debug, Default)]
struct LiveScores {
    minute: Vec<DateTime<Utc>>,
    metric: Vec<&'static str>,
    value: Vec<f64>,
    expected: Vec<f64>,
    score: Vec<f64>,
    is_anomaly: Vec<bool>,
}

impl LiveScores {
    /// Scores a series with [`anomaly::score_series`] over [`LIVE_WINDOW_MINUTES`]; keeps the
    /// minutes with a full trailing window.
    fn push_series(&mut self, metric: &'static str, series: &[(DateTime<Utc>, f64)]) {
        let y: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
        let scores = anomaly::score_series(&y, LIVE_WINDOW_MINUTES, LIVE_THRESHOLD);
        for (i, (&(minute, value), s)) in series.iter().zip(scores).enumerate() {
            let Some(s) = s.filter(|_| i >= LIVE_WINDOW_MINUTES) else {
                continue;
            };
            self.minute.push(minute);
            self.metric.push(metric);
            self.value.push(value);
            self.expected.push(s.expected);
            self.score.push(s.score);
            self.is_anomaly.push(s.is_anomaly);
        }
    }
}

/// Scores the last [`LIVE_HOURS`] hours minute by minute (the current minute excluded):
/// metric `sales` = silver sale lines written that minute (`_updated_at`), metric
/// `web_sessions` = distinct sessions with an event that minute (`event_time`; unparseable
/// values skipped), each against its previous [`LIVE_WINDOW_MINUTES`] minutes. Upserts
/// `gold.anomalies_live` on (minute, metric) and deletes rows older than 7 days.
pub async fn live_anomalies(client: &mut Client) -> Result<u64, JobError> {
    let tx = begin(client, "live_anomalies").await?;
    let sales = minute_series(&tx, SALES_COUNTS, "sales").await?;
    let sessions = minute_series(&tx, SESSION_COUNTS, "web sessions").await?;
    let mut rows = LiveScores::default();
    rows.push_series("sales", &sales);
    rows.push_series("web_sessions", &sessions);
    let n = tx
        .execute(
            "INSERT INTO gold.anomalies_live (minute, metric, value, expected, score, is_anomaly)
             SELECT mi, me, v::numeric, round(e::numeric, 2), s, a
             FROM unnest($1::timestamptz[], $2::text[], $3::float8[], $4::float8[], $5::float8[],
                         $6::bool[]) AS u(mi, me, v, e, s, a)
             ON CONFLICT (minute, metric) DO UPDATE SET value = EXCLUDED.value,
                 expected = EXCLUDED.expected, score = EXCLUDED.score, is_anomaly = EXCLUDED.is_anomaly",
            &[
                &rows.minute,
                &rows.metric,
                &rows.value,
                &rows.expected,
                &rows.score,
                &rows.is_anomaly,
            ],
        )
        .await
        .map_err(DbError::query("writing gold.anomalies_live"))?;
    tx.execute(
        "DELETE FROM gold.anomalies_live WHERE minute < now() - interval '7 days'",
        &[],
    )
    .await
    .map_err(DbError::query("deleting live anomalies older than 7 days"))?;
    commit(tx, "live_anomalies").await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, m, d).unwrap()
    }

    #[test]
    fn fill_days_zero_fills_gaps_and_extends_to_until() {
        let points: BTreeMap<NaiveDate, Decimal> = [(day(2, 27), 5), (day(3, 1), 7)]
            .into_iter()
            .map(|(d, v)| (d, Decimal::from(v)))
            .collect();
        let filled = fill_days(&points, Some(day(3, 2)));
        let expected: Vec<(NaiveDate, Decimal)> = [
            (day(2, 27), 5),
            (day(2, 28), 0),
            (day(2, 29), 0),
            (day(3, 1), 7),
            (day(3, 2), 0),
        ]
        .into_iter()
        .map(|(d, v)| (d, Decimal::from(v)))
        .collect();
        assert_eq!(filled, expected);
        // `until` before the last day changes nothing; no points, no days.
        assert_eq!(fill_days(&points, Some(day(1, 1))).len(), 4);
        assert!(fill_days(&BTreeMap::new(), Some(day(1, 1))).is_empty());
    }

    fn weekly(n: usize) -> Vec<f64> {
        const W: [f64; 7] = [0.0, -100.0, -80.0, -60.0, 50.0, 200.0, 300.0];
        (0..n)
            .map(|t| 1000.0 + 2.0 * t as f64 + W[t % 7] + ((t * 37 % 17) as f64 - 8.0))
            .collect()
    }

    #[test]
    fn forecast_needs_two_weeks_and_shortens_the_backtest() {
        assert!(plan_forecast(day(1, 13), &weekly(13)).unwrap().is_none());
        let two_weeks = plan_forecast(day(1, 14), &weekly(14)).unwrap().unwrap();
        assert_eq!(two_weeks.points.len(), FORECAST_DAYS);
        assert!(two_weeks.backtest.is_none(), "nothing left to hold out");
        let short = plan_forecast(day(1, 20), &weekly(20)).unwrap().unwrap();
        assert_eq!(short.backtest.unwrap().horizon, 6);
        let long = plan_forecast(day(6, 1), &weekly(1000)).unwrap().unwrap();
        assert_eq!(long.history_days, FORECAST_MAX_HISTORY);
        let b = long.backtest.unwrap();
        assert_eq!(b.horizon, FORECAST_BACKTEST);
        assert!(b.hw_mase < 1.0, "{b:?}");
    }

    #[test]
    fn forecast_bands_are_ordered() {
        let run = plan_forecast(day(5, 1), &weekly(120)).unwrap().unwrap();
        for p in &run.points {
            assert!(p.lo95 <= p.lo80 && p.lo80 <= p.mean && p.mean <= p.hi80 && p.hi80 <= p.hi95);
        }
    }

    #[test]
    fn live_scores_keep_only_minutes_with_a_full_window() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let series: Vec<(DateTime<Utc>, f64)> = (0..100)
            .map(|i| {
                let v = if i == 90 { 50.0 } else { 5.0 + (i % 3) as f64 };
                (t0 + chrono::Duration::minutes(i), v)
            })
            .collect();
        let mut rows = LiveScores::default();
        rows.push_series("sales", &series);
        assert_eq!(rows.minute.len(), 100 - LIVE_WINDOW_MINUTES);
        assert_eq!(rows.minute[0], series[LIVE_WINDOW_MINUTES].0);
        let flagged: Vec<DateTime<Utc>> = rows
            .minute
            .iter()
            .zip(&rows.is_anomaly)
            .filter(|(_, a)| **a)
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(flagged, vec![series[90].0]);
    }
}
