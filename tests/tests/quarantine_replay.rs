//! Quarantine replay, end to end on the real broker and PostgreSQL: sales whose date is
//! written in a format the configuration lacks are quarantined (nothing reaches gold); the
//! user adds the format and runs `transform replay --model sales`: the rows reach silver
//! and gold exactly once, the quarantine is empty, and a second replay changes nothing
//! (same gold figures, same gold version). A row still invalid stays, with its new reason.
//! Row filters count what they drop instead of quarantining it.

use anyhow::Result;
use e2e_tests::{count, wait_for, Scratch};
use std::time::Duration;

const CONFIG: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
topic_prefix = "overridden-by-the-test"

[warehouse]
url = "postgres://postgres@127.0.0.1:5432/overridden"

[ingest]
metrics_addr = "127.0.0.1:1"
checkpoint_dir = "overridden"

[ingest.csv]
watch_dir = "overridden"

[[ingest.csv.entities]]
name = "sales"
pattern = "sales*.csv"
key = ["sale_id"]

[transform]
metrics_addr = "127.0.0.1:1"
group_id = "overridden"

[transform.silver.sales]
filter = ["customer_id != 'TEST'"]
date_formats = DATES
"#;

fn config(dates: &str) -> String {
    CONFIG.replace("DATES", dates)
}

fn run(s: &Scratch, cfg: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(e2e_tests::bin_dir().join("transform"))
        .args(["--config", &cfg.display().to_string()])
        .args(args)
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .env("NO_COLOR", "1")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "transform {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn gold(db: &tokio_postgres::Client) -> Result<(String, i64, i64)> {
    let r = db
        .query_one(
            "SELECT coalesce((SELECT revenue::text FROM gold.sales_by_period WHERE grain = 'all'), '0'),
                    coalesce((SELECT orders FROM gold.sales_by_period WHERE grain = 'all'), 0),
                    (SELECT version FROM gold.version)",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_rows_replay_into_gold_once_after_a_fix() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("etl-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("replay.toml");
    std::fs::write(&cfg, config(r#"["%Y-%m-%d"]"#))?;
    let s = Scratch::new("replay", Some(cfg.clone())).await?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    s.drop_file(
        "sales.csv",
        "sale_id,order_id,sale_date,customer_id,product_id,quantity,unit_price,amount\n\
         S1,O1,2024-03-01,C1,P1,17.00,2.00,\n\
         S2,O2,05.03.2024,C1,P1,1,10.00,10.00\n\
         S3,O2,05.03.2024,C2,P2,2.5,4.00,\n\
         S4,O3,31/31/2024,C2,P2,1,1.00,1.00\n\
         S5,O4,2024-03-02,TEST,P1,1,99.00,99.00\n"
            .as_bytes(),
    )?;
    let db = s.db().await?;
    wait_for(Duration::from_secs(60), "the sales in silver and the quarantine", || async {
        let n = count(&db, "SELECT count(*) FROM silver.sales").await?;
        let q = count(&db, "SELECT count(*) FROM silver.quarantine").await?;
        let f = count(&db, "SELECT coalesce(sum(filtered), 0)::bigint FROM gold.data_quality_daily WHERE model = 'sales'").await?;
        Ok((n == 1 && q == 3 && f == 1).then_some(()))
    })
    .await?;
    assert_eq!(
        gold(&db).await?.0,
        "34.00",
        "17.00 x 2.00: a whole quantity written 17.00"
    );
    let q = count(&db, "SELECT count(*) FROM silver.quarantine WHERE reason LIKE '%matches none of the date formats%'").await?;
    assert_eq!(q, 3);
    // The same counts per batch, with the reasons.
    let r = db
        .query_one(
            "SELECT sum(rows_in)::bigint, sum(valid)::bigint, sum(quarantined)::bigint, sum(filtered)::bigint,
                    (SELECT sum(value::bigint)::bigint FROM gold.data_quality_batches b, jsonb_each_text(b.reasons)
                     WHERE b.model = 'sales' AND key LIKE '%matches none of the date formats%')
             FROM gold.data_quality_batches WHERE model = 'sales'",
            &[],
        )
        .await?;
    let per_batch: (i64, i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(
        per_batch,
        (5, 1, 3, 1, 3),
        "rows in, valid, quarantined, filtered, date-format reasons per batch"
    );
    transform.stop()?;
    ingest.stop()?;

    // The user adds the format and replays: S2 and S3 (one order) reach gold; S4 stays.
    std::fs::write(&cfg, config(r#"["%Y-%m-%d", "%d.%m.%Y"]"#))?;
    let out = run(
        &s,
        &cfg,
        &["replay", "--model", "sales", "--reason", "date formats"],
    )?;
    assert!(out.contains("2 now valid"), "{out}");
    assert!(out.contains("1 still quarantined"), "{out}");
    let (revenue, orders, version) = gold(&db).await?;
    assert_eq!(revenue, "54.00", "34.00 + 10.00 + 2.5 x 4.00");
    assert_eq!(orders, 2, "O1 and O2 (two lines)");
    let left = count(&db, "SELECT count(*) FROM silver.quarantine").await?;
    assert_eq!(left, 1, "S4 (31/31/2024) stays");
    let verify = run(&s, &cfg, &["verify"])?;
    assert!(verify.contains("gold matches silver"), "{verify}");

    // A second replay changes nothing.
    let out = run(&s, &cfg, &["replay", "--model", "sales"])?;
    assert!(out.contains("0 now valid"), "{out}");
    assert_eq!(gold(&db).await?, (revenue, orders, version));
    s.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
