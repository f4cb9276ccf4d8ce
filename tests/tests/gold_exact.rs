//! Gold stays exact, on the real MariaDB (binlog), broker and PostgreSQL with the real
//! binaries: a sales database fed through the silver models (`source = "mysql"`) takes
//! random inserts, key-moving updates (date, customer, product, order, amount), deletes,
//! customer moves between countries and orders of several lines, while `ingest` (which
//! re-publishes what it had not checkpointed: duplicates) and `transform` (mid-batch) are
//! killed with `kill -9`. After each round, once silver has caught up with MariaDB,
//! `transform verify` recomputes every mart from silver (in polars) and must find no
//! difference in either direction; the totals must equal MariaDB's own.
//!
//! Batches are capped at a few records, so that most of them come full and defer their
//! gold changes to the queue (`pipeline.gold_queue`, drained at least every second): the
//! kills land with gold behind silver as well as in a live batch.

use anyhow::{Context, Result};
use e2e_tests::{count, wait_for, MysqlScratch, Scratch};
use mysql_async::prelude::Queryable;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Duration;

const COUNTRIES: &[&str] = &["France", "Germany", "Spain", "Italy"];

fn config(s: &Scratch, db: &str) -> Result<std::path::PathBuf> {
    let path = e2e_tests::mysql_config(
        s,
        "gold.toml",
        3,
        e2e_tests::random_server_id(),
        &format!("include = [\"{db}.*\"]"),
    )?;
    let mut text = std::fs::read_to_string(&path)?;
    for (model, table) in [
        ("customers", "customers"),
        ("products", "products"),
        ("sales", "sales"),
    ] {
        text.push_str(&format!(
            "\n[transform.silver.{model}]\nsource = \"mysql\"\nentity = \"{db}_{table}\"\n"
        ));
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn setup(my: &MysqlScratch) -> Result<()> {
    let mut c = my.conn().await?;
    c.query_drop(
        "CREATE TABLE customers (customer_id VARCHAR(16) PRIMARY KEY, full_name VARCHAR(64), country VARCHAR(32), city VARCHAR(32));
         CREATE TABLE products (product_id VARCHAR(16) PRIMARY KEY, product_name VARCHAR(64), category VARCHAR(32), unit_price DECIMAL(12,2));
         CREATE TABLE sales (sale_id VARCHAR(16) PRIMARY KEY, order_id VARCHAR(16), sale_date DATE NOT NULL,
             customer_id VARCHAR(16) NOT NULL, product_id VARCHAR(16) NOT NULL, employee_id VARCHAR(16),
             quantity DECIMAL(10,3) NOT NULL, unit_price DECIMAL(12,2), amount DECIMAL(14,2) NOT NULL)",
    )
    .await?;
    for i in 0..40 {
        c.exec_drop(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            (
                format!("C{i}"),
                format!("Name {i}"),
                COUNTRIES[i % 4],
                "Town",
            ),
        )
        .await?;
    }
    for i in 0..12 {
        c.exec_drop(
            "INSERT INTO products VALUES (?, ?, ?, ?)",
            (
                format!("P{i}"),
                format!("Product {i}"),
                ["Tools", "Toys"][i % 2],
                "9.99",
            ),
        )
        .await?;
    }
    Ok(())
}

/// One random change; `next` numbers new sales and orders.
async fn random_change(c: &mut mysql_async::Conn, rng: &mut StdRng, next: &mut u32) -> Result<()> {
    let ids: Vec<String> = c
        .query("SELECT sale_id FROM sales ORDER BY RAND() LIMIT 1")
        .await?;
    let roll = rng.random_range(0..100);
    let date = format!(
        "2024-{:02}-{:02}",
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    );
    // Customers C40.. are never created: their sales point to the UNKNOWN member.
    let customer = format!("C{}", rng.random_range(0..44));
    let product = format!("P{}", rng.random_range(0..13));
    let amount = format!(
        "{}.{:02}",
        rng.random_range(1..500),
        rng.random_range(0..100)
    );
    match (roll, ids.first()) {
        (0..=54, _) | (_, None) => {
            // A new order of 1-3 lines.
            let order = format!("O{next}");
            for _ in 0..rng.random_range(1..=3) {
                *next += 1;
                c.exec_drop(
                    "INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                    (
                        format!("S{next}"),
                        &order,
                        &date,
                        &customer,
                        &product,
                        format!("E{}", *next % 3),
                        "1.500",
                        &amount,
                    ),
                )
                .await?;
            }
        }
        (55..=79, Some(id)) => {
            let col = [
                "sale_date",
                "customer_id",
                "product_id",
                "order_id",
                "amount",
            ][rng.random_range(0..5)];
            let value = match col {
                "sale_date" => date,
                "customer_id" => customer,
                "product_id" => product,
                "order_id" => format!("O{}", rng.random_range(0..=*next)),
                _ => amount,
            };
            c.exec_drop(
                format!("UPDATE sales SET {col} = ? WHERE sale_id = ?"),
                (value, id),
            )
            .await?;
        }
        (80..=91, Some(id)) => {
            c.exec_drop("DELETE FROM sales WHERE sale_id = ?", (id,))
                .await?;
        }
        _ => {
            let who = format!("C{}", rng.random_range(0..40));
            let country = COUNTRIES[rng.random_range(0..4)];
            c.exec_drop(
                "UPDATE customers SET country = ? WHERE customer_id = ?",
                (country, who),
            )
            .await?;
        }
    }
    Ok(())
}

async fn caught_up(s: &Scratch, my: &MysqlScratch) -> Result<()> {
    let mut c = my.conn().await?;
    let (n, sum): (i64, String) = c
        .query_first("SELECT count(*), CAST(coalesce(sum(amount), 0) AS CHAR) FROM sales")
        .await?
        .context("counting MariaDB's sales")?;
    let moved: Vec<(String, String)> = c
        .query("SELECT customer_id, country FROM customers ORDER BY 1")
        .await?;
    let db = s.db().await?;
    wait_for(Duration::from_secs(120), "silver and gold to catch up with MariaDB", || async {
        // Until the transform has created gold, the query fails: not caught up yet.
        let Ok(row) = db
            .query_one(
                "SELECT (SELECT count(*) FROM silver.sales), (SELECT coalesce(sum(amount), 0)::text FROM silver.sales),
                        (SELECT coalesce(sum(revenue), 0)::text FROM gold.sales_by_period WHERE grain = 'all'),
                        (SELECT string_agg(customer_id || '=' || country, ',' ORDER BY customer_id) FROM silver.customers)",
                &[],
            )
            .await
        else {
            return Ok(None);
        };
        let expected_customers = moved.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let (sn, ssum, gsum, cust): (i64, String, String, Option<String>) = (row.get(0), row.get(1), row.get(2), row.get(3));
        Ok((sn == n && ssum == sum && gsum == sum && cust.as_deref() == Some(expected_customers.as_str())).then_some(()))
    })
    .await
}

fn verify(s: &Scratch) -> Result<String> {
    let out = std::process::Command::new(e2e_tests::bin_dir().join("transform"))
        .args(["--config", &s.config.display().to_string(), "verify"])
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .env("NO_COLOR", "1")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "transform verify found drift:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_marts_stay_exact_under_random_changes_and_kill_9() -> Result<()> {
    let mut s = Scratch::new("goldx", None).await?;
    let my = MysqlScratch::new("goldx").await?;
    let seed: u64 = std::env::var("ETL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set ETL_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    setup(&my).await?;
    s.config = config(&s, &my.db)?;
    s.extra_env.extend([
        (
            "ETL_TRANSFORM__BATCH_MAX_RECORDS".to_string(),
            "6".to_string(),
        ),
        (
            "ETL_TRANSFORM__GOLD_CATCH_UP_SECS".to_string(),
            "1".to_string(),
        ),
    ]);
    let mut transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    let mut c = my.conn().await?;
    let mut next = 0u32;
    for round in 1..=3 {
        let kill_at = rng.random_range(50..250);
        for i in 0..300 {
            random_change(&mut c, &mut rng, &mut next).await?;
            if i == kill_at {
                transform.kill9();
                if round == 2 {
                    ingest.kill9();
                }
                println!("round {round}: kill -9 at change {i}");
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
                transform = s.start("transform")?;
                if round == 2 {
                    ingest = s.start("ingest")?;
                }
            }
            // Paced so that the kill lands while batches are being applied.
            if i % 5 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        caught_up(&s, &my).await?;
        let report = verify(&s)?;
        println!("round {round}:\n{report}");
        let db = s.db().await?;
        let unknown = count(&db, "SELECT count(*) FROM gold.fact_sales WHERE customer_key = 'UNKNOWN' OR product_key = 'UNKNOWN'").await?;
        let orders = count(
            &db,
            "SELECT coalesce(sum(orders), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all'",
        )
        .await?;
        let distinct: i64 = c
            .query_first::<i64, _>("SELECT count(DISTINCT order_id) FROM sales")
            .await?
            .unwrap_or_default();
        assert_eq!(
            orders, distinct,
            "orders in gold vs distinct orders in MariaDB"
        );
        assert!(
            unknown > 0,
            "the dataset has sales with unknown customers or products"
        );
        let (behind, deferred, drains): (bool, i64, i64) = {
            let r = db
                .query_one(
                    "SELECT since IS NOT NULL, deferred_total, drains_total FROM pipeline.gold_queue_state",
                    &[],
                )
                .await?;
            (r.get(0), r.get(1), r.get(2))
        };
        println!("round {round}: {deferred} batches deferred gold, {drains} catch-ups");
        assert!(!behind, "gold caught up: its queue is empty");
        assert!(
            deferred > 0 && drains > 0,
            "batches deferred gold and gold caught up ({deferred} deferred, {drains} catch-ups)"
        );
    }
    drop(transform);
    drop(ingest);
    // The pool's disconnect waits for every connection to come back.
    drop(c);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}
