//! `demo-shop`: a small online shop living in MariaDB/MySQL, for the binlog CDC demo.
//!
//! Creates the `shop` database (customers, orders, order_items) when missing, seeds it,
//! then keeps it busy: orders are placed with their items, move placed → paid → shipped,
//! some are cancelled (deleted with their items), customers sign up and change their
//! e-mail or country. The ingest agent's MySQL source captures it and the dashboard shows
//! the orders live.

use anyhow::{Context, Result};
use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, TxOpts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use tracing::info;

#[derive(Parser, Debug)]
#[command(
    name = "demo-shop",
    about = "Runs a demo online shop in MySQL/MariaDB (orders placed → paid → shipped, cancellations, customer updates) for the binlog CDC demo"
)]
struct Args {
    /// Server URL of a user that may create the database (the CDC user only reads).
    #[arg(
        long,
        env = "ETL_DEMO_SHOP_URL",
        default_value = "mysql://root@127.0.0.1:3307"
    )]
    url: String,
    /// Database name.
    #[arg(long, default_value = "shop")]
    db: String,
    /// New orders per second.
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    seconds: Option<u64>,
    /// Random seed (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Customers created when the database is new.
    #[arg(long, default_value_t = 300)]
    customers: u32,
}

const COUNTRIES: [&str; 10] = ["FR", "DE", "ES", "IT", "GB", "US", "BE", "NL", "PT", "CH"];
const PRODUCTS: [(&str, &str); 10] = [
    ("P001", "19.90"),
    ("P002", "4.50"),
    ("P003", "129.00"),
    ("P004", "59.95"),
    ("P005", "8.99"),
    ("P006", "249.00"),
    ("P007", "15.00"),
    ("P008", "34.90"),
    ("P009", "2.20"),
    ("P010", "79.00"),
];

async fn setup(conn: &mut Conn, db: &str, customers: u32, rng: &mut StdRng) -> Result<()> {
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4"
    ))
    .await
    .with_context(|| format!("creating database {db}"))?;
    conn.query_drop(format!("USE `{db}`")).await?;
    for ddl in [
        "CREATE TABLE IF NOT EXISTS customers (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            name VARCHAR(100) NOT NULL,
            email VARCHAR(200) NULL,
            country CHAR(2) NOT NULL,
            created_at DATETIME(3) NOT NULL,
            updated_at DATETIME(3) NOT NULL
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS orders (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            customer_id INT NOT NULL,
            status ENUM('placed','paid','shipped') NOT NULL,
            total DECIMAL(12,2) NOT NULL,
            placed_at DATETIME(3) NOT NULL,
            paid_at DATETIME(3) NULL,
            shipped_at DATETIME(3) NULL,
            KEY status_idx (status, placed_at)
        ) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS order_items (
            order_id BIGINT NOT NULL,
            line_no SMALLINT NOT NULL,
            product_code VARCHAR(16) NOT NULL,
            qty INT NOT NULL,
            unit_price DECIMAL(10,2) NOT NULL,
            PRIMARY KEY (order_id, line_no)
        ) ENGINE=InnoDB",
    ] {
        conn.query_drop(ddl)
            .await
            .context("creating the shop tables")?;
    }
    let existing: Option<i64> = conn.query_first("SELECT COUNT(*) FROM customers").await?;
    if existing.unwrap_or(0) == 0 {
        let values: Vec<String> = (1..=customers).map(|i| customer_values(rng, i)).collect();
        for chunk in values.chunks(500) {
            conn.query_drop(format!(
                "INSERT INTO customers (name, email, country, created_at, updated_at) VALUES {}",
                chunk.join(",")
            ))
            .await?;
        }
        info!(db, customers, "shop seeded");
    }
    Ok(())
}

fn customer_values(rng: &mut StdRng, i: u32) -> String {
    let country = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
    format!("('Customer {i}', 'customer{i}@shop.example', '{country}', NOW(3), NOW(3))")
}

async fn place_order(conn: &mut Conn, rng: &mut StdRng) -> Result<()> {
    let mut tx = conn.start_transaction(TxOpts::default()).await?;
    let customer: Option<i64> = tx
        .query_first("SELECT id FROM customers ORDER BY RAND() LIMIT 1")
        .await?;
    let Some(customer) = customer else {
        return Ok(());
    };
    let lines: Vec<(usize, u32)> = (0..rng.random_range(1..=4))
        .map(|_| (rng.random_range(0..PRODUCTS.len()), rng.random_range(1..=3)))
        .collect();
    tx.query_drop(format!(
        "INSERT INTO orders (customer_id, status, total, placed_at) VALUES ({customer}, 'placed', 0, NOW(3))"
    ))
    .await?;
    let order: Option<i64> = tx.query_first("SELECT LAST_INSERT_ID()").await?;
    let order = order.unwrap_or_default();
    let values: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(n, (p, q))| {
            let (code, price) = PRODUCTS[*p];
            format!("({order}, {}, '{code}', {q}, {price})", n + 1)
        })
        .collect();
    tx.query_drop(format!(
        "INSERT INTO order_items VALUES {}",
        values.join(",")
    ))
    .await?;
    tx.query_drop(format!(
        "UPDATE orders SET total = (SELECT SUM(qty * unit_price) FROM order_items WHERE order_id = {order}) WHERE id = {order}"
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let opts = Opts::from_url(&args.url)
        .with_context(|| format!("--url {:?} is not a mysql:// URL", args.url))?;
    let mut conn = Conn::new(opts).await.with_context(|| {
        format!(
            "connecting to {} (is the MariaDB CDC instance up? ./dev stack)",
            args.url
        )
    })?;
    setup(&mut conn, &args.db, args.customers, &mut rng).await?;
    let started = Instant::now();
    let tick = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    let mut counts = [0u64; 6];
    let mut last_report = Instant::now();
    info!(db = %args.db, rate = args.rate, seed, "shop open");
    loop {
        if args
            .seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        place_order(&mut conn, &mut rng).await?;
        counts[0] += 1;
        // Orders move on after a few seconds: placed → paid → shipped.
        if rng.random_bool(0.8) {
            counts[1] += {
                conn.query_drop("UPDATE orders SET status = 'paid', paid_at = NOW(3) WHERE status = 'placed' AND placed_at < NOW(3) - INTERVAL 3 SECOND ORDER BY placed_at LIMIT 1").await?;
                conn.affected_rows()
            };
        }
        if rng.random_bool(0.7) {
            counts[2] += {
                conn.query_drop("UPDATE orders SET status = 'shipped', shipped_at = NOW(3) WHERE status = 'paid' AND paid_at < NOW(3) - INTERVAL 5 SECOND ORDER BY paid_at LIMIT 1").await?;
                conn.affected_rows()
            };
        }
        // Cancellations: a placed order disappears with its items.
        if rng.random_bool(0.08) {
            let mut tx = conn.start_transaction(TxOpts::default()).await?;
            let victim: Option<i64> = tx
                .query_first(
                    "SELECT id FROM orders WHERE status = 'placed' ORDER BY RAND() LIMIT 1",
                )
                .await?;
            if let Some(id) = victim {
                tx.query_drop(format!("DELETE FROM order_items WHERE order_id = {id}"))
                    .await?;
                tx.query_drop(format!("DELETE FROM orders WHERE id = {id}"))
                    .await?;
                counts[3] += 1;
            }
            tx.commit().await?;
        }
        if rng.random_bool(0.1) {
            let country = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
            counts[4] += {
                conn.query_drop(format!("UPDATE customers SET country = '{country}', email = CONCAT('c', id, '.', FLOOR(RAND() * 1000), '@shop.example'), updated_at = NOW(3) ORDER BY RAND() LIMIT 1")).await?;
                conn.affected_rows()
            };
        }
        if rng.random_bool(0.03) {
            let n = rng.random_range(10_000..99_999);
            let v = customer_values(&mut rng, n);
            conn.query_drop(format!(
                "INSERT INTO customers (name, email, country, created_at, updated_at) VALUES {v}"
            ))
            .await?;
            counts[5] += 1;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            info!(
                placed = counts[0],
                paid = counts[1],
                shipped = counts[2],
                cancelled = counts[3],
                customers_updated = counts[4],
                customers_new = counts[5],
                "shop activity"
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(tick).await;
    }
    println!(
        "{}",
        serde_json::json!({
            "placed": counts[0], "paid": counts[1], "shipped": counts[2], "cancelled": counts[3],
            "customers_updated": counts[4], "customers_new": counts[5], "seed": seed
        })
    );
    Ok(())
}
