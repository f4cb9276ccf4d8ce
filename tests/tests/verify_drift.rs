//! `transform verify` (polars) against PostgreSQL only, with the real binary: silver rows
//! written directly (orders of several lines, fractional quantities, negative amounts,
//! customers that moved country, unknown customers and products, web events with nulls),
//! `transform rebuild` fills gold and verify finds no drift; then a cent more in one
//! country_sales revenue, a changed distribution median and a deleted product_month row:
//! verify names each of them and exits 1.

use anyhow::Result;
use e2e_tests::Scratch;

const SEED: &str = include_str!("verify_drift_seed.sql");

fn transform(s: &Scratch, args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(e2e_tests::bin_dir().join("transform"))
        .args(["--config", &s.config.display().to_string()])
        .args(args)
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .env("NO_COLOR", "1")
        .output()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_no_drift_then_names_each_drifted_cell() -> Result<()> {
    let s = Scratch::new("pverify", None).await?;
    let (ok, text) = transform(&s, &["migrate"])?;
    anyhow::ensure!(ok, "migrate: {text}");
    let db = s.db().await?;
    db.batch_execute(SEED).await?;
    let (ok, text) = transform(&s, &["rebuild"])?;
    anyhow::ensure!(ok, "rebuild: {text}");
    let (ok, text) = transform(&s, &["verify"])?;
    anyhow::ensure!(ok && text.contains("gold matches silver"), "verify: {text}");

    db.batch_execute(
        "UPDATE gold.country_sales SET revenue = revenue + 0.01
         WHERE (grain, period_start, country) = (SELECT grain, period_start, country FROM gold.country_sales
                                                 WHERE grain = 'month' ORDER BY 1, 2, 3 LIMIT 1);
         UPDATE gold.distribution SET median = median + 0.5
         WHERE (scope, country, measure) = ('country', 'France', 'line');
         DELETE FROM gold.product_month
         WHERE (month, product_key) = (SELECT month, product_key FROM gold.product_month ORDER BY 1, 2 LIMIT 1);",
    )
    .await?;
    let (ok, text) = transform(&s, &["verify"])?;
    anyhow::ensure!(!ok, "verify passed over drift: {text}");
    for needle in [
        "DRIFT  country_sales",
        "revenue stored",
        "DRIFT  distribution",
        "median stored",
        "DRIFT  product_month",
        "recomputed, not stored: month=",
        "3 gold marts drifted",
    ] {
        anyhow::ensure!(text.contains(needle), "{needle:?} not in: {text}");
    }
    anyhow::ensure!(text.contains("ok     fact_sales"), "{text}");
    s.cleanup().await;
    Ok(())
}
