//! Crash safety: `kill -9` of ingest and transform at random points during a 100k-row load,
//! five rounds, then restart. The warehouse must hold exactly the source rows: none lost,
//! none duplicated, in bronze, silver and gold.

use anyhow::Result;
use e2e_tests::{append_sales, count, read_topic, test_seed, wait_for, AppendPlan, Scratch};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Duration;

const ROWS: usize = 100_000;
const FILES: usize = 10;
const APPENDS_PER_FILE: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_9_during_a_100k_load_loses_and_duplicates_nothing() -> Result<()> {
    let s = Scratch::new("crash", None).await?;
    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);

    // The writer appends 100k rows to 10 files, 1k rows at a time, sometimes cutting a line
    // in two writes, over ~15 s.
    let dir = s.watch_dir.clone();
    let writer = std::thread::spawn(move || {
        let plan = AppendPlan {
            rows: ROWS,
            files: FILES,
            appends: APPENDS_PER_FILE,
            prefix: "K",
            customers: 500,
            split_chance: 0.3,
            pause: Duration::from_millis(15),
        };
        append_sales(&dir, seed ^ 0x5eed, &plan)
    });

    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    for round in 1..=5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..2500))).await;
        let which = rng.random_range(0..3);
        if which != 1 {
            ingest.kill9();
        }
        if which != 0 {
            transform.kill9();
        }
        println!(
            "round {round}: killed {}",
            ["ingest", "transform", "ingest and transform"][which]
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        if which != 1 {
            ingest = s.start("ingest")?;
        }
        if which != 0 {
            transform = s.start("transform")?;
        }
    }
    let total_cents = writer.join().expect("writer thread")?;

    let db = s.db().await?;
    wait_for(
        Duration::from_secs(300),
        "all 100k rows in silver and gold caught up",
        || async {
            Ok(e2e_tests::sales_caught_up(&db, ROWS as i64)
                .await
                .unwrap_or(false)
                .then_some(()))
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\ningest log:\n{}\ntransform log:\n{}",
            s.log("ingest"),
            s.log("transform")
        )
    })?;
    // Let anything still in flight land, so that a duplicate would show.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let topic = s.topic("sales");
    let bronze = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
    )
    .await?;
    let distinct = count(&db, &format!("SELECT count(DISTINCT payload->'after'->>'sale_id') FROM bronze.events WHERE topic = '{topic}'")).await?;
    let silver = count(&db, "SELECT count(*) FROM silver.sales").await?;
    let orders = count(
        &db,
        "SELECT coalesce(sum(orders), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all'",
    )
    .await?;
    let revenue: String = db
        .query_one("SELECT coalesce(sum(revenue), 0)::numeric(16,2)::text FROM gold.sales_by_period WHERE grain = 'all'", &[])
        .await?
        .get(0);
    let quarantined = count(&db, "SELECT count(*) FROM silver.quarantine").await?;
    let dead = count(&db, "SELECT count(*) FROM bronze.dead_letters").await?;
    let published = read_topic(&topic, ROWS)?.len();
    println!("kafka records {published} (re-published after crashes: {}), bronze {bronze}, silver {silver}", published - ROWS);
    assert_eq!(bronze, ROWS as i64, "bronze holds each source row once");
    assert_eq!(distinct, ROWS as i64, "bronze holds every source row");
    assert_eq!(silver, ROWS as i64, "silver holds every row once");
    assert_eq!(orders, ROWS as i64, "gold counts every order once");
    assert_eq!(
        revenue,
        format!("{}.{:02}", total_cents / 100, total_cents % 100),
        "gold revenue"
    );
    assert_eq!(
        (quarantined, dead),
        (0, 0),
        "no row was mangled into a bad one"
    );
    let offsets_ok = count(
        &db,
        &format!("SELECT count(*) FROM pipeline.consumer_offsets WHERE topic = '{topic}' AND next_offset > 0"),
    )
    .await?;
    assert!(offsets_ok > 0, "offsets are stored in the warehouse");

    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
