//! End to end, on the real broker and PostgreSQL: CSV files with dirt (duplicates, updates,
//! malformed rows, mixed date formats, a BOM, CRLF, quoted newlines, a half-written line)
//! go through `ingest` and `transform`; the gold figures must equal what this test computes
//! on its own from the rows it wrote, and every malformed row must be in the dead-letter
//! topic with its file and line.

use anyhow::Result;
use e2e_tests::{count, read_topic, wait_for, Scratch};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

/// A CSV file being written, tracking the line number of each record.
struct CsvText {
    text: String,
    line: u64,
}

impl CsvText {
    fn new(header: &str, bom: bool) -> Self {
        let mut text = String::new();
        if bom {
            text.push('\u{feff}');
        }
        text.push_str(header);
        text.push('\n');
        CsvText { text, line: 2 }
    }
    /// Appends a record (terminator included in `rec`), returns its first line number.
    fn push(&mut self, rec: &str) -> u64 {
        let l = self.line;
        self.text.push_str(rec);
        self.line += rec.matches('\n').count() as u64;
        l
    }
}

#[derive(Clone)]
struct Sale {
    date: chrono::NaiveDate,
    customer: String,
    cents: i64,
}

const COUNTRIES: &[&str] = &["France", "Germany", "Spain", "Italy", "Belgium"];

fn cents_str(c: i64) -> String {
    format!("{}.{:02}", c / 100, c.abs() % 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_to_gold_figures_and_dead_letters() -> Result<()> {
    let s = Scratch::new("e2e", None).await?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut dlq_expected: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut quarantine_expected = 0i64;
    let mut nul_rows = 0i64;
    let mut bronze_expected: BTreeMap<&str, i64> = BTreeMap::new();

    // Customers: a BOM, stray whitespace and case, a quoted newline, two broken rows.
    let mut cust = CsvText::new("customer_id,full_name,email,country,city,signup_date", true);
    let mut customer_country: BTreeMap<String, String> = BTreeMap::new();
    for i in 1..=60 {
        let id = format!("c{i:03}");
        let country = COUNTRIES[i % COUNTRIES.len()];
        let shown = match i % 3 {
            0 => format!("  {}  ", country.to_uppercase()),
            1 => country.to_lowercase(),
            _ => country.to_string(),
        };
        let name = if i == 5 {
            "\"Ann\nLee, Jr\"".to_string()
        } else {
            format!("Name {i}")
        };
        cust.push(&format!(
            "{id},{name}, USER{i}@Example.com ,{shown},paris,2024-01-{:02}\n",
            1 + i % 28
        ));
        customer_country.insert(id.to_uppercase(), country.to_string());
    }
    let l = cust.push("c999,only,three\n");
    dlq_expected.insert(("customers.csv".into(), l));
    let l = cust.push(",No Key,x@y.z,France,lyon,2024-01-01\n");
    dlq_expected.insert(("customers.csv".into(), l));
    *bronze_expected.entry("customers").or_default() += 60;

    // Sales in two files, one with CRLF line endings.
    let mut expected: BTreeMap<String, Sale> = BTreeMap::new();
    let mut files = vec![
        (
            "sales_a.csv",
            CsvText::new(
                "sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount",
                false,
            ),
            "\n",
        ),
        (
            "sales_b.csv",
            CsvText::new(
                "sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount",
                false,
            ),
            "\r\n",
        ),
    ];
    let mut next_id = 1;
    for (fname, f, eol) in files.iter_mut() {
        let mut written: Vec<String> = Vec::new();
        for _ in 0..1500 {
            let id = format!("s{next_id:05}");
            next_id += 1;
            let date = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                + chrono::Days::new(rng.random_range(0..120));
            let date_txt = if rng.random_bool(0.5) {
                date.format("%Y-%m-%d").to_string()
            } else {
                date.format("%d/%m/%Y").to_string()
            };
            let known = rng.random_bool(0.95);
            let customer = if known {
                format!("c{:03}", rng.random_range(1..=60))
            } else {
                "c777".to_string()
            };
            let qty: i64 = rng.random_range(1..=5);
            let price: i64 = rng.random_range(100..10_000);
            let cents = qty * price;
            let kind = rng.random_range(0..100);
            let (line, _) = match kind {
                0..=1 => (
                    format!(
                        "{id},{date_txt},,p1,e1,{qty},{},{}",
                        cents_str(price),
                        cents_str(cents)
                    ),
                    false,
                ), // missing customer
                2 => (
                    format!(
                        "{id},2024-13-45,{customer},p1,e1,{qty},{},{}",
                        cents_str(price),
                        cents_str(cents)
                    ),
                    false,
                ), // bad date
                3 => (
                    format!(
                        "{id},{date_txt},{customer},p1,e1,{qty},{},-{}",
                        cents_str(price),
                        cents_str(cents)
                    ),
                    false,
                ), // negative amount
                4 => (
                    format!(
                        "{id},{date_txt},{customer},p1,e1,0,{},0.00",
                        cents_str(price)
                    ),
                    false,
                ), // zero quantity
                5 => (format!("{id},{date_txt},{customer},p1"), false), // broken: wrong field count (dead letter)
                6 => (
                    format!(
                        ",{date_txt},{customer},p1,e1,{qty},{},{}",
                        cents_str(price),
                        cents_str(cents)
                    ),
                    false,
                ), // empty key (dead letter)
                _ => (
                    format!(
                        "  {} , {date_txt} ,{} ,p{},e1,{qty}, {} ,{}",
                        id.to_uppercase(),
                        customer.to_uppercase(),
                        1 + qty,
                        cents_str(price),
                        cents_str(cents)
                    ),
                    true,
                ),
            };
            let l = f.push(&format!("{line}{eol}"));
            match kind {
                5 | 6 => {
                    dlq_expected.insert((fname.to_string(), l));
                }
                0..=4 => {
                    quarantine_expected += 1;
                    *bronze_expected.entry("sales").or_default() += 1;
                }
                _ => {
                    *bronze_expected.entry("sales").or_default() += 1;
                    expected.insert(
                        id.to_uppercase(),
                        Sale {
                            date,
                            customer: customer.to_uppercase(),
                            cents,
                        },
                    );
                    written.push(line);
                }
            }
        }
        // A price too large for the warehouse's numeric(12,2): quarantined by silver. A NUL
        // character, which PostgreSQL cannot store in jsonb: the agent publishes the row (it
        // is valid UTF-8), the warehouse refuses it, and transform dead-letters that record
        // alone instead of retrying its batch for ever.
        f.push(&format!(
            "{}-BIG,2024-02-02,c001,p1,e1,1,123456789012.00,123456789012.00{eol}",
            fname
        ));
        quarantine_expected += 1;
        *bronze_expected.entry("sales").or_default() += 1;
        let nul = '\0';
        f.push(&format!(
            "{}-NUL,2024-02-02,c001,p1,e{nul}1,1,1.00,1.00{eol}",
            fname
        ));
        nul_rows += 1;
        // Exact duplicates of some rows, and updates of others (same id, new quantity).
        for i in (0..written.len()).step_by(50) {
            f.push(&format!("{}{eol}", written[i]));
            *bronze_expected.entry("sales").or_default() += 1;
        }
        for i in (25..written.len()).step_by(100) {
            let cols: Vec<&str> = written[i].split(',').collect();
            let id = cols[0].trim().to_string();
            let price = Decimal::from_str(cols[6].trim()).unwrap();
            let cents = (price * Decimal::from(9) * Decimal::from(100))
                .round()
                .to_string()
                .parse::<i64>()
                .unwrap();
            let upd = format!(
                "{id},{},{},{},e2,9,{},{}",
                cols[1],
                cols[2],
                cols[3],
                cols[6].trim(),
                cents_str(cents)
            );
            f.push(&format!("{upd}{eol}"));
            *bronze_expected.entry("sales").or_default() += 1;
            expected.get_mut(&id).unwrap().cents = cents;
        }
    }

    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    s.drop_file("customers.csv", cust.text.as_bytes())?;
    for (name, f, _) in &files {
        s.drop_file(name, f.text.as_bytes())?;
    }

    // A half-written last line must not be emitted until its newline arrives.
    let live = s.watch_dir.join("sales_live.csv");
    std::fs::write(&live, "sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount\nLIVE1,2024-02-01,c001,p1,e1,1,10.00,10")?;
    let db = s.db().await?;
    wait_for(
        Duration::from_secs(120),
        "the first files in silver",
        || async {
            Ok(
                (count(&db, "SELECT count(*) FROM silver.sales").await? as usize >= expected.len())
                    .then_some(()),
            )
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM bronze.events WHERE payload->'after'->>'sale_id' = 'LIVE1'"
        )
        .await?,
        0,
        "a half-written line was published"
    );
    // Bronze keeps source, op and ts_ms once (columns); the view gives the envelope back.
    let r = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE payload ?| ARRAY['source', 'op', 'ts_ms']),
                    count(*) FILTER (WHERE v.envelope->'source' = e.source AND v.envelope->>'op' = e.op::text
                                       AND v.envelope->'after' = e.payload->'after'
                                       AND (v.envelope->>'ts_ms')::bigint = (extract(epoch FROM e.event_ts) * 1000)::bigint)
             FROM bronze.events e JOIN bronze.events_envelope v USING (event_id)",
            &[],
        )
        .await?;
    let (all, copies, whole): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
    assert!(all > 0, "bronze holds events");
    assert_eq!(
        (copies, whole),
        (0, all),
        "payload without the copies; envelope whole"
    );
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&live)?;
        f.write_all(b".00\n")?;
    }
    expected.insert(
        "LIVE1".into(),
        Sale {
            date: chrono::NaiveDate::from_ymd_opt(2024, 2, 1).unwrap(),
            customer: "C001".into(),
            cents: 1000,
        },
    );
    *bronze_expected.entry("sales").or_default() += 1;

    let exp_sales = expected.len() as i64;
    // Dead letters in the warehouse: the agent's (in the topic) and transform's (NUL rows).
    let exp_dlq = dlq_expected.len() as i64 + nul_rows;
    wait_for(
        Duration::from_secs(120),
        "silver, quarantine and dead letters to be complete",
        || async {
            let n = count(&db, "SELECT count(*) FROM silver.sales").await?;
            let q = count(&db, "SELECT count(*) FROM silver.quarantine").await?;
            let d = count(&db, "SELECT count(*) FROM bronze.dead_letters").await?;
            let c = count(&db, "SELECT count(*) FROM silver.customers").await?;
            Ok(
                (n == exp_sales && q == quarantine_expected && d == exp_dlq && c == 60)
                    .then_some(()),
            )
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
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Bronze holds every well-formed record once, duplicates lines included (raw layer).
    for (entity, n) in &bronze_expected {
        let got = count(
            &db,
            &format!(
                "SELECT count(*) FROM bronze.events WHERE topic = '{}'",
                s.topic(entity)
            ),
        )
        .await?;
        assert_eq!(got, *n, "bronze rows for {entity}");
    }

    // Gold, computed independently.
    let revenue: i64 = expected.values().map(|s| s.cents).sum();
    let buyers: BTreeSet<String> = expected
        .values()
        .map(|s| {
            if customer_country.contains_key(&s.customer) {
                s.customer.clone()
            } else {
                "UNKNOWN".into()
            }
        })
        .collect();
    let row = db
        .query_one(
            "SELECT coalesce(sum(revenue), 0)::numeric(16,2)::text, coalesce(sum(orders), 0)::bigint, coalesce(sum(customers), 0)::bigint FROM gold.sales_by_period WHERE grain = 'all'",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, String>(0), cents_str(revenue), "total revenue");
    assert_eq!(row.get::<_, i64>(1), exp_sales, "orders");
    assert_eq!(
        row.get::<_, i64>(2),
        buyers.len() as i64,
        "distinct customers"
    );

    let mut by_day: BTreeMap<chrono::NaiveDate, i64> = BTreeMap::new();
    let mut by_country: BTreeMap<String, i64> = BTreeMap::new();
    for sale in expected.values() {
        *by_day.entry(sale.date).or_default() += sale.cents;
        let c = customer_country
            .get(&sale.customer)
            .cloned()
            .unwrap_or_else(|| "Unknown".into());
        *by_country.entry(c).or_default() += sale.cents;
    }
    let got_days: BTreeMap<chrono::NaiveDate, String> = db
        .query(
            "SELECT period_start, revenue::text FROM gold.sales_by_period WHERE grain = 'day'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want_days: BTreeMap<chrono::NaiveDate, String> =
        by_day.iter().map(|(d, c)| (*d, cents_str(*c))).collect();
    assert_eq!(got_days, want_days, "daily revenue");
    let got_countries: BTreeMap<String, String> = db
        .query(
            "SELECT country, revenue::text FROM gold.country_sales WHERE grain = 'all'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want_countries: BTreeMap<String, String> = by_country
        .iter()
        .map(|(k, c)| (k.clone(), cents_str(*c)))
        .collect();
    assert_eq!(got_countries, want_countries, "revenue by country");

    // Every malformed row is in the dead-letter topic, with its file and line.
    let mut got_dlq = BTreeSet::new();
    for (_, v) in read_topic(&format!("{}.dlq", s.prefix), dlq_expected.len())? {
        let dl: etl_contract::DeadLetter = serde_json::from_slice(&v)?;
        let file = dl.origin["file"].as_str().unwrap_or_default();
        let name = std::path::Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!dl.reason.is_empty());
        assert!(!dl.raw()?.is_empty());
        got_dlq.insert((name, dl.origin["line"].as_u64().unwrap()));
    }
    assert_eq!(got_dlq, dlq_expected, "dead letters (file, line)");

    // Cleaning and lineage in silver.
    let r = db
        .query_one(
            "SELECT full_name, email, country FROM silver.customers WHERE customer_id = 'C005'",
            &[],
        )
        .await?;
    assert_eq!(r.get::<_, String>(0), "Ann Lee, Jr");
    assert_eq!(r.get::<_, String>(1), "user5@example.com");
    assert_eq!(r.get::<_, String>(2), COUNTRIES[0]);
    let bad_lineage = count(&db, "SELECT count(*) FROM silver.sales s LEFT JOIN bronze.events e ON e.event_id = s._bronze_event_id WHERE e.event_id IS NULL").await?;
    assert_eq!(
        bad_lineage, 0,
        "every silver row points to its bronze event"
    );

    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
