//! Users bring their own files: a dataset whose file names, column names, delimiter, date
//! format and decimal separator all differ from the demo's is ingested and modelled by
//! configuration alone.

use anyhow::Result;
use e2e_tests::{count, wait_for, Scratch};
use std::collections::BTreeMap;
use std::time::Duration;

const CONFIG: &str = r#"
mode = "development"

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
delimiter = ";"

[[ingest.csv.entities]]
name = "clients"
pattern = "clients_*.txt"
key = ["Client No"]

[[ingest.csv.entities]]
name = "orders"
pattern = "orders_*.txt"
key = ["Order No"]

[transform]
metrics_addr = "127.0.0.1:1"
group_id = "overridden"

[transform.silver.customers]
entity = "clients"
date_formats = ["%d.%m.%Y"]

[transform.silver.customers.columns]
customer_id = "Client No"
full_name = "Name"
country = "Land"
signup_date = "Since"

[transform.silver.sales]
entity = "orders"
date_formats = ["%d.%m.%Y"]
decimal_separator = ","

[transform.silver.sales.columns]
sale_id = "Order No"
sale_date = "Order Date"
customer_id = "Client No"
product_id = "Article"
quantity = "Qty"
unit_price = "Unit Price"
amount = "Total"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_dataset_is_modelled_by_configuration_alone() -> Result<()> {
    let cfg_dir = std::env::temp_dir().join(format!("etl-own-{}", std::process::id()));
    std::fs::create_dir_all(&cfg_dir)?;
    let cfg = cfg_dir.join("mine.toml");
    std::fs::write(&cfg, CONFIG)?;
    let s = Scratch::new("own", Some(cfg)).await?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    s.drop_file("clients_2024.txt", "Client No;Name;Land;Since\nK1;Müller  GmbH;deutschland;01.02.2023\nK2;\"Dupont; Fils\";FRANCE;15.06.2023\n".as_bytes())?;
    s.drop_file(
        "orders_march.txt",
        "Order No;Order Date;Client No;Article;Qty;Unit Price;Total\r\n\
         A-1;05.03.2024;K1;X-9;2;1.234,50;2.469,00\r\n\
         A-2;06.03.2024;K2;Y-1;1;10,00;\r\n\
         A-3;2024-03-07;K2;Y-1;1;10,00;10,00\r\n"
            .as_bytes(),
    )?;
    let db = s.db().await?;
    wait_for(
        Duration::from_secs(60),
        "orders and clients in silver",
        || async {
            let n = count(&db, "SELECT count(*) FROM silver.sales").await?;
            let q = count(&db, "SELECT count(*) FROM silver.quarantine").await?;
            let c = count(&db, "SELECT count(*) FROM silver.customers").await?;
            Ok((n == 2 && q == 1 && c == 2).then_some(()))
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\ningest:\n{}\ntransform:\n{}",
            s.log("ingest"),
            s.log("transform")
        )
    })?;

    let r = db
        .query_one(
            "SELECT coalesce(sum(revenue), 0)::numeric(16,2)::text, coalesce(sum(orders), 0)::bigint, coalesce(sum(customers), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all'",
            &[],
        )
        .await?;
    assert_eq!(
        (
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2)
        ),
        ("2479.00".to_string(), 2, 2)
    );
    let by_country: BTreeMap<String, String> = db
        .query(
            "SELECT country, revenue::text FROM gold.country_sales WHERE grain = 'all'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        by_country.get("Deutschland").map(String::as_str),
        Some("2469.00")
    );
    assert_eq!(by_country.get("France").map(String::as_str), Some("10.00"));
    let r = db
        .query_one(
            "SELECT full_name, signup_date::text FROM silver.customers WHERE customer_id = 'K2'",
            &[],
        )
        .await?;
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        ("Dupont; Fils".to_string(), "2023-06-15".to_string())
    );
    let reason: String = db
        .query_one("SELECT reason FROM silver.quarantine", &[])
        .await?
        .get(0);
    assert!(
        reason.contains("\"2024-03-07\" matches none of the date formats"),
        "{reason}"
    );
    let topics = count(
        &db,
        &format!(
            "SELECT count(DISTINCT topic) FROM bronze.events WHERE topic IN ('{}', '{}')",
            s.topic("clients"),
            s.topic("orders")
        ),
    )
    .await?;
    assert_eq!(topics, 2, "topics are named after the configured entities");

    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    let _ = std::fs::remove_dir_all(cfg_dir);
    Ok(())
}

/// Analysts read the warehouse in pgAdmin: every table, view and column has a comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_warehouse_table_and_column_is_commented() -> Result<()> {
    let s = Scratch::new("comments", None).await?;
    let out = std::process::Command::new(e2e_tests::bin_dir().join("transform"))
        .args(["--config", &s.config.display().to_string(), "migrate"])
        .env("ETL_WAREHOUSE__URL", &s.db_url)
        .env("NO_COLOR", "1")
        .output()?;
    assert!(
        out.status.success(),
        "transform migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = s.db().await?;
    let missing: Vec<String> = db
        .query(
            "SELECT c.relname || coalesce('.' || a.attname, '')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE n.nspname IN ('bronze', 'silver', 'gold', 'pipeline') AND c.relkind IN ('r', 'v')
               AND (obj_description(c.oid, 'pg_class') IS NULL
                    OR (a.attnum IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missing.is_empty(), "uncommented: {missing:?}");
    let tables = count(&db, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('bronze','silver','gold','pipeline') AND c.relkind IN ('r','v')").await?;
    assert!(tables >= 15, "only {tables} tables and views");
    s.cleanup().await;
    Ok(())
}
