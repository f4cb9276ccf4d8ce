//! The durable local broker (nisshi with PostgreSQL storage, as `./dev stack` runs it):
//! `kill -9` of the broker twice during a 20k-row load, then a restart on the same
//! storage. Rows appended before, during and after reach bronze, silver and gold exactly
//! once with no manual step, the topic keeps its partition count, and `transform verify`
//! finds no drift.
//!
//! The broker is this test's own (its own port and storage database), so the other tests'
//! broker is never touched. `ETL_TEST_NISSHI` names the binary (set by `./dev test`).

use anyhow::Result;
use e2e_tests::{
    bin_dir, count, query_value, tail, test_seed, topic_partitions, transform_verify, wait_for,
    wait_sales_in_silver, AppendPlan, NisshiBroker, Scratch, SALES_HEADER,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::process::Command;
use std::time::Duration;

const ROWS: usize = 20_000;
const FILES: usize = 4;
const APPENDS_PER_FILE: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_9_of_the_broker_loses_and_duplicates_nothing() -> Result<()> {
    let mut s = Scratch::new("broker", None).await?;
    let mut broker = NisshiBroker::start_for(&mut s).await?;

    let seed = test_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let writer = AppendPlan {
        rows: ROWS,
        files: FILES,
        appends: APPENDS_PER_FILE,
        prefix: "B",
        customers: 300,
        split_chance: 0.0,
        pause: Duration::from_millis(100),
    }
    .spawn(&s.watch_dir, seed ^ 0xb40e);

    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    let topic = s.topic("sales");
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..4000))).await;
        let before = count(&db, "SELECT count(*) FROM silver.sales").await?;
        broker.kill9();
        println!("round {round}: broker killed with {before} rows in silver");
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        broker.start()?;
    }
    let total_cents = writer.join().expect("writer thread")?;

    // All rows in silver, then 3 s for anything still in flight to land (a duplicate would
    // show).
    wait_sales_in_silver(&s, ROWS as i64, Duration::from_secs(240))
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}\nbroker log (tail):\n{}", tail(&broker.log_text(), 40))
        })?;

    let bronze = count(
        &db,
        &format!("SELECT count(*) FROM bronze.events WHERE topic = '{topic}'"),
    )
    .await?;
    let silver = count(&db, "SELECT count(*) FROM silver.sales").await?;
    let orders = count(
        &db,
        "SELECT coalesce(sum(orders), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all'",
    )
    .await?;
    let revenue: String = query_value(
        &db,
        "SELECT coalesce(sum(revenue), 0)::numeric(16,2)::text FROM gold.sales_by_period WHERE grain = 'all'",
    )
    .await?;
    let dead = count(&db, "SELECT count(*) FROM bronze.dead_letters").await?;
    assert_eq!(bronze, ROWS as i64, "bronze holds each source row once");
    assert_eq!(silver, ROWS as i64, "silver holds every row once");
    assert_eq!(orders, ROWS as i64, "gold counts every order once");
    assert_eq!(
        revenue,
        format!("{}.{:02}", total_cents / 100, total_cents % 100),
        "gold revenue"
    );
    assert_eq!(dead, 0, "nothing was dead-lettered");
    // config/etl.toml creates topics with 3 partitions; a broker that lost the topic would
    // auto-create it again with its own default.
    assert_eq!(
        topic_partitions(&broker.brokers(), &topic)?,
        3,
        "the topic keeps its partitions across broker restarts"
    );
    // transform verify finds no drift.
    transform_verify(&s)?;

    ingest.stop()?;
    transform.stop()?;
    broker.cleanup().await;
    s.cleanup().await;
    Ok(())
}

/// A broker that lost its state (the warehouse's offsets point past the end of the new
/// log) is detected: the transform says so, forgets the stale offsets and reads the new
/// log from its beginning instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_past_the_end_of_a_new_log_do_not_stall_the_transform() -> Result<()> {
    let s = Scratch::new("lostbroker", None).await?;
    let db = s.db().await?;
    // `transform migrate` creates pipeline.consumer_offsets.
    let migrate = Command::new(bin_dir().join("transform"))
        .arg("--config")
        .arg(&s.config)
        .arg("migrate")
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .output()?;
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let topic = s.topic("sales");
    let group = format!("g{}", s.id);
    for p in 0..3i32 {
        db.execute(
            "INSERT INTO pipeline.consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, 1000000)",
            &[&group, &topic, &p],
        )
        .await?;
    }
    let mut csv = String::from_utf8_lossy(SALES_HEADER).into_owned();
    for i in 0..300 {
        csv.push_str(&format!(
            "L{i:04},2024-03-{:02},C1,P1,E1,1,2.50,2.50\n",
            1 + i % 28
        ));
    }
    s.drop_file("sales_lost.csv", csv.as_bytes())?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    wait_for(Duration::from_secs(90), "300 rows in silver", || async {
        Ok((count(&db, "SELECT count(*) FROM silver.sales").await? >= 300).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ntransform log:\n{}", s.log("transform")))?;
    let stale = count(
        &db,
        &format!("SELECT count(*) FROM pipeline.consumer_offsets WHERE topic = '{topic}' AND next_offset >= 1000000"),
    )
    .await?;
    assert_eq!(stale, 0, "the stale offsets were forgotten");
    let revenue: String = query_value(
        &db,
        "SELECT revenue::numeric(16,2)::text FROM gold.sales_by_period WHERE grain = 'all'",
    )
    .await?;
    assert_eq!(revenue, "750.00", "gold holds the 300 lines once");
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
