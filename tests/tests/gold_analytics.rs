//! The analytics jobs against a real warehouse: hand-made gold inputs (a weekly-seasonal daily
//! revenue with an injected spike and a missing day, the cohort fixture of the notes, a few
//! customers with known RFM scores, live minutes with spikes and malformed timestamps), the
//! job functions of the `transform` library, and the tables they write compared with the
//! answers worked out by hand. Also the scheduler's `run_once`: `pipeline.job_runs` rows,
//! the advisory lock, timeouts (the query is cancelled) and `verify` failing on drift.
//!
//! Needs PostgreSQL (`ETL_TEST_PG_URL`) and the `transform` binary (`ETL_BIN_DIR`); fails
//! without them.

use anyhow::{ensure, Context, Result};
use chrono::NaiveDate;
use e2e_tests::{count, wait_for, Scratch};
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_postgres::Client;
use transform::gold::analytics::jobs;
use transform::gold::analytics::rfm::{self, SegmentRule};
use transform::jobs::{lock_key, run_once, spawn, JobSettings, JobsSettings, JOBS};

/// A scratch warehouse with the schema applied by `transform migrate`.
async fn warehouse(name: &str) -> Result<(Scratch, Client)> {
    let s = Scratch::new(name, None).await?;
    let bin = e2e_tests::bin_dir().join("transform");
    let out = std::process::Command::new(&bin)
        .args(["--config", &s.config.display().to_string(), "migrate"])
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .env("NO_COLOR", "1")
        .output()
        .with_context(|| format!("running {} migrate", bin.display()))?;
    ensure!(
        out.status.success(),
        "transform migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = s.db().await?;
    Ok((s, db))
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

const DAYS: i32 = 120;
/// Day index of the injected spike (a Wednesday) and of the day without any sale (a Saturday).
const SPIKE: i32 = 72;
const MISSING: i32 = 47;

/// Revenue of day `t`: level, trend, weekly pattern, small deterministic noise; the spike.
fn revenue(t: i32) -> f64 {
    const WEEK: [f64; 7] = [0.0, -100.0, -80.0, -60.0, 50.0, 200.0, 300.0];
    let noise = (f64::from(t * 37 % 17) - 8.0) * 2.5;
    let spike = if t == SPIKE { 3000.0 } else { 0.0 };
    1000.0 + 2.0 * f64::from(t) + WEEK[(t % 7) as usize] + noise + spike
}

/// Daily revenue from Monday 2025-01-06 for [`DAYS`] days (none on [`MISSING`]): in
/// `gold.sales_by_period` (grain day) and as two lines a day in `gold.fact_sales`, France
/// 60 % and Germany the rest.
async fn load_daily(db: &Client) -> Result<NaiveDate> {
    let start = date(2025, 1, 6);
    let (t, v): (Vec<i32>, Vec<f64>) = (0..DAYS)
        .filter(|t| *t != MISSING)
        .map(|t| (t, revenue(t)))
        .unzip();
    db.execute(
        "INSERT INTO gold.sales_by_period (grain, period_start, revenue)
         SELECT 'day', $1::date + t, round(v::numeric, 2) FROM unnest($2::int4[], $3::float8[]) AS u(t, v)",
        &[&start, &t, &v],
    )
    .await?;
    db.execute(
        "INSERT INTO gold.fact_sales (sale_id, order_id, sale_date, customer_key, country, amount)
         SELECT 's' || p.period_start || c.country, 'o' || p.period_start || c.country, p.period_start,
                'C1', c.country,
                CASE c.country WHEN 'France' THEN round(p.revenue * 0.6, 2)
                               ELSE p.revenue - round(p.revenue * 0.6, 2) END
         FROM gold.sales_by_period p CROSS JOIN (VALUES ('France'), ('Germany')) AS c(country)
         WHERE p.grain = 'day'",
        &[],
    )
    .await?;
    Ok(start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_anomalies_flag_the_spike_and_the_missing_day_only() -> Result<()> {
    let (s, mut db) = warehouse("anom").await?;
    let start = load_daily(&db).await?;
    let day = |t: i32| start + chrono::Duration::days(i64::from(t));

    let n = jobs::anomalies(&mut db).await?;
    // Scored from the 5th week on (4 earlier same weekdays needed), overall and per country;
    // the missing day is zero-filled, so it is scored too.
    assert_eq!(n, 3 * (DAYS as u64 - 28));
    assert_eq!(
        count(&db, "SELECT count(*) FROM gold.anomalies_daily").await?,
        n as i64
    );
    for country in ["", "France", "Germany"] {
        let flagged: BTreeSet<NaiveDate> = db
            .query(
                "SELECT day FROM gold.anomalies_daily WHERE country = $1 AND is_anomaly",
                &[&country],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            flagged,
            BTreeSet::from([day(MISSING), day(SPIKE)]),
            "country {country:?}"
        );
        let normal_week = count(
            &db,
            &format!(
                "SELECT count(*) FROM gold.anomalies_daily WHERE country = '{country}'
                 AND day BETWEEN '{}' AND '{}' AND NOT is_anomaly AND abs(score) < 3.5",
                day(98),
                day(104)
            ),
        )
        .await?;
        assert_eq!(
            normal_week, 7,
            "a normal week of {country:?} is not flagged"
        );
    }
    let spike = db
        .query_one(
            "SELECT score, revenue - expected, revenue::text FROM gold.anomalies_daily
             WHERE country = '' AND day = $1",
            &[&day(SPIKE)],
        )
        .await?;
    assert!(spike.get::<_, f64>(0) > 3.5);
    assert!(spike.get::<_, Decimal>(1) > Decimal::from(2900));
    assert_eq!(spike.get::<_, String>(2), format!("{:.2}", revenue(SPIKE)));
    let drop = db
        .query_one(
            "SELECT score, revenue FROM gold.anomalies_daily WHERE country = 'France' AND day = $1",
            &[&day(MISSING)],
        )
        .await?;
    assert!(drop.get::<_, f64>(0) < -3.5);
    assert_eq!(drop.get::<_, Decimal>(1), Decimal::ZERO);
    let mismatched = count(
        &db,
        "SELECT count(*) FROM gold.anomalies_daily a JOIN gold.sales_by_period p
           ON p.grain = 'day' AND p.period_start = a.day
         WHERE a.country = '' AND a.revenue <> p.revenue",
    )
    .await?;
    assert_eq!(mismatched, 0, "the observed revenue is stored exactly");
    // Replacing, not appending.
    assert_eq!(jobs::anomalies(&mut db).await?, n);
    assert_eq!(
        count(&db, "SELECT count(*) FROM gold.anomalies_daily").await?,
        n as i64
    );
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecast_has_90_ordered_days_and_beats_seasonal_naive() -> Result<()> {
    let (s, mut db) = warehouse("fcst").await?;
    assert_eq!(jobs::forecast(&mut db).await?, 0, "no history, no forecast");
    let start = load_daily(&db).await?;
    let last = start + chrono::Duration::days(i64::from(DAYS - 1));

    assert_eq!(jobs::forecast(&mut db).await?, 91, "90 days and the run");
    let rows = db
        .query(
            "SELECT day, made_on, horizon, lo95 <= lo80 AND lo80 <= revenue AND revenue <= hi80
                    AND hi80 <= hi95 AND lo95 < hi95
             FROM gold.forecast_daily ORDER BY day",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 90);
    for (h, r) in (1..).zip(&rows) {
        assert_eq!(
            r.get::<_, NaiveDate>(0),
            last + chrono::Duration::days(i64::from(h))
        );
        assert_eq!(r.get::<_, NaiveDate>(1), last);
        assert_eq!(r.get::<_, i32>(2), h);
        assert!(r.get::<_, bool>(3), "bands ordered on horizon {h}");
    }
    let run = db
        .query_one(
            "SELECT made_on, history_days, method, mase, mase_seasonal_naive, alpha BETWEEN 0 AND 1
             FROM gold.forecast_runs",
            &[],
        )
        .await?;
    assert_eq!(run.get::<_, NaiveDate>(0), last);
    assert_eq!(
        run.get::<_, i32>(1),
        DAYS,
        "the missing day is filled with 0"
    );
    assert_eq!(run.get::<_, String>(2), "holt-winters additive m=7");
    let mase: f64 = run.get(3);
    assert!(mase < 1.0, "MASE {mase}");
    assert!(run.get::<_, Option<f64>>(4).is_some());
    assert!(run.get::<_, bool>(5));
    // Next week's forecast follows the weekly pattern: Saturday above Tuesday.
    let (sat, tue): (Decimal, Decimal) = {
        let r = db
            .query_one(
                "SELECT (SELECT revenue FROM gold.forecast_daily WHERE extract(isodow FROM day) = 6 ORDER BY day LIMIT 1),
                        (SELECT revenue FROM gold.forecast_daily WHERE extract(isodow FROM day) = 2 ORDER BY day LIMIT 1)",
                &[],
            )
            .await?;
        (r.get(0), r.get(1))
    };
    assert!(sat > tue + Decimal::from(200), "{sat} vs {tue}");
    // A second run replaces the days and appends a run.
    jobs::forecast(&mut db).await?;
    assert_eq!(
        count(&db, "SELECT count(*) FROM gold.forecast_daily").await?,
        90
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM gold.forecast_runs").await?,
        2
    );
    s.cleanup().await;
    Ok(())
}

/// The notes' fixture: all 2024, the last order in May; amounts = customer − 100.
async fn load_cohort_fixture(db: &Client) -> Result<()> {
    let orders: [(i32, &[(u32, u32)]); 7] = [
        (101, &[(1, 5), (2, 12), (4, 3)]),
        (102, &[(1, 18)]),
        (103, &[(2, 7), (3, 15)]),
        (104, &[(2, 20), (3, 22), (4, 18)]),
        (105, &[(3, 10)]),
        (106, &[(3, 25), (5, 10)]),
        (107, &[(4, 8), (5, 20)]),
    ];
    for (customer, days) in orders {
        for (m, d) in days {
            insert_order(
                db,
                &customer.to_string(),
                date(2024, *m, *d),
                Decimal::from(customer - 100),
            )
            .await?;
        }
    }
    // An order of an unknown customer: not a cohort member.
    insert_order(db, "UNKNOWN", date(2024, 5, 15), Decimal::from(1000)).await
}

async fn insert_order(db: &Client, customer: &str, day: NaiveDate, amount: Decimal) -> Result<()> {
    db.execute(
        "INSERT INTO gold.fact_orders (order_id, order_date, customer_key, country, employee_key, lines, units, amount)
         VALUES ($1::text || '-' || $2::date || '-' || (SELECT count(*) FROM gold.fact_orders), $2::date, $1::text,
                 'France', 'UNKNOWN', 1, 1, $3::numeric)",
        &[&customer, &day, &amount],
    )
    .await?;
    Ok(())
}

/// Cohort month (2024), size, and (active customers, revenue) per observed month since.
type CohortCells = (u32, i64, &'static [(i64, i64)]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_retention_reproduces_the_fixture_with_censored_nulls() -> Result<()> {
    let (s, mut db) = warehouse("coh").await?;
    load_cohort_fixture(&db).await?;
    // Per cohort: size and, per month since, (active customers, their revenue); NULL after May.
    let expected: [CohortCells; 4] = [
        (1, 2, &[(2, 3), (1, 1), (0, 0), (1, 1), (0, 0)]),
        (2, 2, &[(2, 7), (2, 7), (1, 4), (0, 0)]),
        (3, 2, &[(2, 11), (0, 0), (1, 6)]),
        (4, 1, &[(1, 7), (1, 7)]),
    ];
    let n = jobs::cohorts(&mut db).await?;
    assert_eq!(n, 4 * 13, "four cohorts, months 0..=12 each");
    let rows = db
        .query(
            "SELECT cohort_month, months_since, cohort_size, customers, revenue, retention
             FROM gold.cohort_retention ORDER BY cohort_month, months_since",
            &[],
        )
        .await?;
    let mut want = Vec::new();
    for (month, size, cells) in expected {
        for k in 0..=12 {
            let cell = cells.get(k as usize).copied();
            want.push((
                date(2024, month, 1),
                k,
                size,
                cell.map(|(c, _)| c),
                cell.map(|(_, r)| Decimal::from(r)),
                cell.map(|(c, _)| c as f64 / size as f64),
            ));
        }
    }
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, NaiveDate>(0),
                r.get::<_, i32>(1),
                r.get::<_, i64>(2),
                r.get::<_, Option<i64>>(3),
                r.get::<_, Option<Decimal>>(4).map(|d| d.normalize()),
                r.get::<_, Option<f64>>(5),
            )
        })
        .collect();
    assert_eq!(got, want);
    // Replacing, not appending.
    assert_eq!(jobs::cohorts(&mut db).await?, n);
    assert_eq!(
        count(&db, "SELECT count(*) FROM gold.cohort_retention").await?,
        n as i64
    );
    s.cleanup().await;
    Ok(())
}

/// A..E of the RFM unit test (reference 2024-06-01, the date of an UNKNOWN customer's order).
async fn load_rfm_fixture(db: &Client) -> Result<()> {
    // A: ten orders of 50, the last on May 31.
    for d in 22..=31 {
        insert_order(db, "A", date(2024, 5, d), Decimal::from(50)).await?;
    }
    let orders: [(&str, u32, u32, i64); 8] = [
        ("B", 4, 29, 40),
        ("B", 4, 30, 40),
        ("B", 5, 1, 40),
        ("C", 4, 29, 30),
        ("C", 4, 30, 30),
        ("C", 5, 1, 20),
        ("D", 3, 1, 40),
        ("E", 1, 1, 40),
    ];
    for (customer, m, d, amount) in orders {
        insert_order(db, customer, date(2024, m, d), Decimal::from(amount)).await?;
    }
    insert_order(db, "UNKNOWN", date(2024, 6, 1), Decimal::from(5000)).await
}

type RfmRow = (String, NaiveDate, i32, i64, Decimal, i16, i16, i16, String);

async fn rfm_rows(db: &Client) -> Result<Vec<RfmRow>> {
    Ok(db
        .query(
            "SELECT customer_key, reference_date, recency_days, frequency, monetary, r_score, f_score,
                    m_score, segment FROM gold.customer_rfm ORDER BY customer_key",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get::<_, Decimal>(4).normalize(),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfm_scores_and_segments_are_the_hand_computed_ones() -> Result<()> {
    let (s, mut db) = warehouse("rfm").await?;
    load_rfm_fixture(&db).await?;
    assert_eq!(jobs::rfm(&mut db, &rfm::default_rules()).await?, 5);
    let reference = date(2024, 6, 1);
    let row = |k: &str, rec: i32, f: i64, m: i64, scores: (i16, i16, i16), seg: &str| -> RfmRow {
        (
            k.into(),
            reference,
            rec,
            f,
            Decimal::from(m),
            scores.0,
            scores.1,
            scores.2,
            seg.into(),
        )
    };
    assert_eq!(
        rfm_rows(&db).await?,
        vec![
            row("A", 1, 10, 500, (5, 5, 5), "Champions"),
            row("B", 31, 3, 120, (3, 3, 4), "Need attention"),
            row("C", 31, 3, 80, (3, 3, 3), "Need attention"),
            row("D", 92, 1, 40, (2, 1, 1), "Hibernating"),
            row("E", 152, 1, 40, (1, 1, 1), "Lost"),
        ]
    );

    // Through the scheduler's run_once, with configured segments: a job_runs row.
    let settings = JobsSettings {
        rfm_segments: Some(vec![
            SegmentRule::new("Top", (5, 5), (1, 5), (1, 5)),
            SegmentRule::new("Rest", (1, 5), (1, 5), (1, 5)),
        ]),
        ..JobsSettings::default()
    };
    assert_eq!(run_once("rfm", &settings, &s.db_url).await?, 5);
    let segments: Vec<String> = rfm_rows(&db).await?.into_iter().map(|r| r.8).collect();
    assert_eq!(segments, ["Top", "Rest", "Rest", "Rest", "Rest"]);
    let run = db
        .query_one(
            "SELECT job, status, attempt, rows, error, host, pid, finished_at >= started_at
             FROM pipeline.job_runs",
            &[],
        )
        .await?;
    assert_eq!(run.get::<_, String>(0), "rfm");
    assert_eq!(run.get::<_, String>(1), "ok");
    assert_eq!(run.get::<_, i32>(2), 1);
    assert_eq!(run.get::<_, Option<i64>>(3), Some(5));
    assert_eq!(run.get::<_, Option<String>>(4), None);
    assert!(!run.get::<_, String>(5).is_empty());
    assert_eq!(run.get::<_, i32>(6), std::process::id() as i32);
    assert!(run.get::<_, bool>(7));
    s.cleanup().await;
    Ok(())
}

type Minute = chrono::DateTime<chrono::Utc>;

/// Sales: 5 lines a minute for the last 3 hours, 60 in the minute 90 minutes ago. Web: 4
/// sessions (2 events each) a minute, 40 in the minute 100 minutes ago, plus malformed times.
/// The current and the next two minutes have data too, in case the clock passes a minute
/// before the job runs. Returns the spikes' minutes, a calm minute (30 minutes ago), the
/// minutes inserted (sales, web events, malformed) and the first minute whose trailing hour
/// is all data (120 minutes ago).
const LIVE_FIXTURE: &str = "WITH base AS (SELECT date_trunc('minute', now()) AS hi),
             sales AS (INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, quantity,
                                                 amount, _bronze_event_id, _source, _updated_at)
                       SELECT 's' || k || '-' || i, 'o' || k || '-' || i, current_date, 'C', 'P', 1, 1, 1, '{}'::jsonb,
                              hi - make_interval(mins => k) + interval '10 seconds'
                       FROM base, generate_series(-2, 180) k,
                            generate_series(1, CASE k WHEN 90 THEN 60 ELSE 5 END) i RETURNING 1),
             web AS (INSERT INTO silver.web_events (event_id, event_date, event_time, session_id,
                                                    _bronze_event_id, _source)
                     SELECT 'w' || k || '-' || i || '-' || e, current_date,
                            to_char((hi - make_interval(mins => k) + make_interval(secs => 5 + e * 20)) AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                            'sess-' || k || '-' || i, 1, '{}'::jsonb
                     FROM base, generate_series(-2, 180) k,
                          generate_series(1, CASE k WHEN 100 THEN 40 ELSE 4 END) i, generate_series(1, 2) e
                     RETURNING 1),
             bad AS (INSERT INTO silver.web_events (event_id, event_date, event_time, session_id, _bronze_event_id, _source)
                     SELECT 'bad' || n, current_date, t, 'bad', 1, '{}'::jsonb
                     FROM unnest(ARRAY['not a time', '2024-02-30T10:00:00Z', '2023-02-29 10:00:00',
                                       '2024-13-01T00:00:00Z', '2024-01-01T25:00:00Z', '', NULL])
                          WITH ORDINALITY AS u(t, n) RETURNING 1)
             SELECT hi - interval '90 minutes', hi - interval '100 minutes', hi - interval '30 minutes',
                    (SELECT count(*) FROM sales), (SELECT count(*) FROM web), (SELECT count(*) FROM bad),
                    hi - interval '120 minutes'
             FROM base";

/// The minutes of [`LIVE_FIXTURE`].
struct LiveMinutes {
    sales_spike: Minute,
    web_spike: Minute,
    calm: Minute,
    settled: Minute,
}

async fn load_live_fixture(db: &Client) -> Result<LiveMinutes> {
    let r = db.query_one(LIVE_FIXTURE, &[]).await?;
    assert_eq!(r.get::<_, i64>(5), 7, "malformed web events");
    Ok(LiveMinutes {
        sales_spike: r.get(0),
        web_spike: r.get(1),
        calm: r.get(2),
        settled: r.get(6),
    })
}

/// Value, expected value and flag of one live minute.
async fn live_cell(db: &Client, metric: &str, minute: Minute) -> Result<(f64, f64, bool)> {
    let r = db
        .query_one(
            "SELECT value::float8, expected::float8, is_anomaly FROM gold.anomalies_live
             WHERE metric = $1 AND minute = $2",
            &[&metric, &minute],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_anomalies_flag_spiking_minutes_and_skip_bad_timestamps() -> Result<()> {
    let (s, mut db) = warehouse("live").await?;
    let LiveMinutes {
        sales_spike,
        web_spike,
        calm,
        settled,
    } = load_live_fixture(&db).await?;
    db.execute(
        "INSERT INTO gold.anomalies_live (minute, metric, value) VALUES (now() - interval '8 days', 'sales', 1)",
        &[],
    )
    .await?;

    let n = jobs::live_anomalies(&mut db).await?;
    assert_eq!(n, 2 * 360, "six hours of minutes, two metrics");
    assert_eq!(
        live_cell(&db, "sales", sales_spike).await?,
        (60.0, 5.0, true)
    );
    assert_eq!(live_cell(&db, "sales", calm).await?, (5.0, 5.0, false));
    assert_eq!(
        live_cell(&db, "web_sessions", web_spike).await?,
        (40.0, 4.0, true)
    );
    assert_eq!(
        live_cell(&db, "web_sessions", calm).await?,
        (4.0, 4.0, false)
    );
    // Once the trailing hour is all data (the stream started three hours ago, so its first
    // minutes stand out against the empty hour before), the spikes are the only anomalies.
    let flagged: BTreeSet<(String, Minute)> = db
        .query(
            "SELECT metric, minute FROM gold.anomalies_live WHERE is_anomaly AND minute >= $1",
            &[&settled],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        flagged,
        BTreeSet::from([
            ("sales".to_string(), sales_spike),
            ("web_sessions".to_string(), web_spike)
        ])
    );
    let sessions = count(
        &db,
        "SELECT count(*) FROM gold.anomalies_live WHERE metric = 'web_sessions' AND value > 0",
    )
    .await?;
    assert!(
        (180..=181).contains(&sessions),
        "{sessions} minutes with sessions"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM gold.anomalies_live WHERE minute < now() - interval '7 days'"
        )
        .await?,
        0,
        "rows older than 7 days are deleted"
    );
    // Upsert: the same minutes again, no duplicates.
    jobs::live_anomalies(&mut db).await?;
    let dups = count(
        &db,
        "SELECT count(*) FROM (SELECT minute, metric FROM gold.anomalies_live GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .await?;
    assert_eq!(dups, 0);
    s.cleanup().await;
    Ok(())
}

/// rfm: a 1 s timeout and one retry; verify: no retry.
fn scheduler_settings() -> JobsSettings {
    let mut jobs_cfg = std::collections::BTreeMap::new();
    jobs_cfg.insert(
        "rfm".to_string(),
        JobSettings {
            every_s: 60,
            timeout_s: 1,
            retries: 1,
            enabled: true,
        },
    );
    jobs_cfg.insert(
        "verify".to_string(),
        JobSettings {
            every_s: 60,
            timeout_s: 60,
            retries: 0,
            enabled: true,
        },
    );
    JobsSettings {
        jobs: jobs_cfg,
        rfm_segments: None,
        ..Default::default()
    }
}

/// The error of a run that must fail.
async fn run_err(name: &str, settings: &JobsSettings, url: &str) -> Result<String> {
    match run_once(name, settings, url).await {
        Ok(rows) => anyhow::bail!("job {name} succeeded ({rows} rows) but should have failed"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

/// A job blocked on a table lock times out after 1 s, twice (one retry); its query is
/// cancelled on the server.
async fn a_blocked_job_times_out(s: &Scratch, db: &Client, settings: &JobsSettings) -> Result<()> {
    let other = s.db().await?;
    other
        .batch_execute("BEGIN; LOCK TABLE gold.customer_rfm IN ACCESS EXCLUSIVE MODE")
        .await?;
    let e = run_err("rfm", settings, &s.db_url).await?;
    assert!(e.contains("timed out after 1 s"), "{e}");
    wait_for(Duration::from_secs(10), "the timed-out query to be cancelled", || async {
        let waiting = count(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await?;
        Ok((waiting == 0).then_some(()))
    })
    .await?;
    other.batch_execute("ROLLBACK").await?;
    Ok(())
}

/// job, status, attempt, rows, error, finished.
type RunRow = (String, String, i32, Option<i64>, Option<String>, bool);

async fn job_runs(db: &Client) -> Result<Vec<RunRow>> {
    Ok(db
        .query(
            "SELECT job, status, attempt, rows, error, finished_at IS NOT NULL FROM pipeline.job_runs ORDER BY run_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_records_runs_honours_the_lock_times_out_and_fails_on_drift() -> Result<()> {
    let (s, db) = warehouse("sched").await?;
    let settings = scheduler_settings();

    // Unknown job: the message lists the known ones.
    let e = run_err("rmf", &settings, &s.db_url).await?;
    assert!(e.contains("cohorts") && e.contains("live_anomalies"), "{e}");
    // Empty warehouse: nothing to write, still an ok run; verify passes.
    assert_eq!(run_once("cohorts", &settings, &s.db_url).await?, 0);
    assert!(run_once("verify", &settings, &s.db_url).await? > 0);

    // Another process holds the job's lock: skipped, no run recorded.
    let other = s.db().await?;
    other
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key("rfm")])
        .await?;
    let e = run_err("rfm", &settings, &s.db_url).await?;
    assert!(e.contains("another process"), "{e}");
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&lock_key("rfm")])
        .await?;

    a_blocked_job_times_out(&s, &db, &settings).await?;

    // Drift: an order in gold without silver.
    insert_order(&db, "X", date(2024, 1, 1), Decimal::from(1)).await?;
    let e = run_err("verify", &settings, &s.db_url).await?;
    assert!(e.contains("fact_orders"), "{e}");

    let runs = job_runs(&db).await?;
    let summary: Vec<(&str, &str, i32)> = runs
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2))
        .collect();
    assert_eq!(
        summary,
        [
            ("cohorts", "ok", 1),
            ("verify", "ok", 1),
            ("rfm", "timeout", 1),
            ("rfm", "timeout", 2),
            ("verify", "failed", 1),
        ]
    );
    assert!(runs.iter().all(|r| r.5), "every run finished");
    assert_eq!(runs[0].3, Some(0));
    assert_eq!(runs[2].4.as_deref(), Some("timed out after 1 s"));
    let drift = runs[4].4.clone().unwrap_or_default();
    assert!(
        drift.contains("drifted") && drift.contains("fact_orders"),
        "{drift}"
    );
    s.cleanup().await;
    Ok(())
}

/// Two transforms' schedulers (offset by nothing, the hardest case for a lock alone): each
/// occurrence runs once, and only the enabled job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_each_occurrence_once() -> Result<()> {
    let (s, db) = warehouse("spawn").await?;
    let jobs = JOBS
        .iter()
        .map(|(name, _)| {
            let cfg = JobSettings {
                every_s: 4,
                timeout_s: 60,
                retries: 0,
                enabled: *name == "cohorts",
            };
            (name.to_string(), cfg)
        })
        .collect();
    let settings = JobsSettings {
        jobs,
        rfm_segments: None,
        ..Default::default()
    };
    let a = spawn(settings.clone(), s.db_url.clone());
    let b = spawn(settings, s.db_url.clone());
    let ok = "SELECT count(*) FROM pipeline.job_runs WHERE job = 'cohorts' AND status = 'ok'";
    for n in 1..=2 {
        wait_for(Duration::from_secs(20), "a scheduled run", || async {
            Ok((count(&db, ok).await? >= n).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(count(&db, ok).await?, n, "one run per occurrence");
    }
    a.abort();
    b.abort();
    let others = count(
        &db,
        "SELECT count(*) FROM pipeline.job_runs WHERE job <> 'cohorts' OR status <> 'ok'",
    )
    .await?;
    assert_eq!(others, 0, "disabled jobs do not run");
    let gap: f64 = db
        .query_one(
            "SELECT extract(epoch FROM max(started_at) - min(started_at))::float8 FROM pipeline.job_runs",
            &[],
        )
        .await?
        .get(0);
    assert!((3.0..6.0).contains(&gap), "runs {gap} s apart, every 4 s");
    s.cleanup().await;
    Ok(())
}

/// `gold.country_sales_reporting`: each day of a country converted at the latest rate on or
/// before it, through the rates' base currency, rounded to the cent; a day without a rate
/// left out and counted; a country without a currency sells in the base currency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_currency_converts_each_day_at_its_rate() -> Result<()> {
    let (s, db) = warehouse("fx").await?;
    db.batch_execute(
        "INSERT INTO silver.countries (country_code, country_name, _bronze_event_id, _source) VALUES
             ('FR', 'France', 1, '{}'), ('GB', 'United Kingdom', 2, '{}'), ('US', 'United States', 3, '{}');
         INSERT INTO silver.exchange_rates (rate_id, rate_date, base_currency, currency, rate, _bronze_event_id, _source) VALUES
             ('a', '2024-01-01', 'EUR', 'USD', 1.10, 1, '{}'), ('b', '2024-01-03', 'EUR', 'USD', 1.20, 2, '{}'),
             ('c', '2024-01-02', 'EUR', 'GBP', 0.85, 3, '{}');
         INSERT INTO gold.fact_sales (sale_id, order_id, sale_date, customer_key, country, amount) VALUES
             ('1', '1', '2024-01-01', 'C1', 'France', 100.00),
             ('2', '2', '2024-01-02', 'C1', 'France', 50.00), ('3', '2', '2024-01-02', 'C1', 'France', 25.00),
             ('4', '4', '2024-01-01', 'C2', 'United Kingdom', 40.00),
             ('5', '5', '2024-01-03', 'C2', 'United Kingdom', 17.00),
             ('6', '6', '2024-02-10', 'C3', 'United States', 10.00),
             ('7', '7', '2024-01-05', 'C4', 'Atlantis', 5.00);",
    )
    .await?;
    let mut settings = JobsSettings::default();
    settings.reporting.currency = "USD".into();
    run_once("reporting_currency", &settings, &s.db_url).await?;
    let rows = db
        .query(
            "SELECT grain || ' ' || period_start || ' ' || country || ' ' || sale_currency || ' ' || reporting_currency
                    || ' ' || revenue_local || ' ' || revenue_reporting || ' ' || days || ' ' || unconverted_days
             FROM gold.country_sales_reporting WHERE grain <> 'year' ORDER BY grain DESC, period_start, country",
            &[],
        )
        .await?;
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        got,
        [
            "month 2024-01-01 Atlantis EUR USD 5.00 6.00 1 0",
            "month 2024-01-01 France EUR USD 175.00 192.50 2 0",
            "month 2024-01-01 United Kingdom GBP USD 57.00 24.00 2 1",
            "month 2024-02-01 United States USD USD 10.00 10.00 1 0",
            "all 0001-01-01 Atlantis EUR USD 5.00 6.00 1 0",
            "all 0001-01-01 France EUR USD 175.00 192.50 2 0",
            "all 0001-01-01 United Kingdom GBP USD 57.00 24.00 2 1",
            "all 0001-01-01 United States USD USD 10.00 10.00 1 0",
        ]
    );
    let runs = count(
        &db,
        "SELECT count(*) FROM pipeline.job_runs WHERE job = 'reporting_currency' AND status = 'ok'",
    )
    .await?;
    assert_eq!(runs, 1, "the run is recorded");
    s.cleanup().await;
    Ok(())
}
