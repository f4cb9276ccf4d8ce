//! Gold against an independent engine. The test writes a dataset of its own (not the demo
//! generator's): customers whose countries are spelt anyhow, some customers and products
//! missing (their sales go to UNKNOWN), orders of 1–4 lines sharing date and customer,
//! quantities written `17.00` / `2.500`, prices with thousands separators or three
//! decimals, totals sometimes left empty (amount = quantity × price, rounded half away from
//! zero), dirty rows silver must quarantine, a row without a key, a filtered product, and
//! sales written again later with other amounts (the last one wins). It goes through the
//! real binaries under a configuration of its own (other file, entity and column names).
//! Then `tests/duckdb/marts.py` computes the seed marts with DuckDB (PyPI `duckdb`) from
//! the same CSV files, and every row of every mart must equal the stored gold row, to the
//! cent, in both directions.
//!
//! `ETL_TEST_PYTHON` names a Python with duckdb (set by `./dev test`); without one the test
//! fails, it is never skipped.

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use e2e_tests::{count, wait_for, Scratch};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const SEED: u64 = 0x2024_0229;
const SALES_FILES: usize = 4;
const LINES_PER_FILE: usize = 5_000;
/// Customers C-0001..C-0420 are referenced; C-0401.. are never in a customers file.
const CUSTOMER_REFS: u32 = 420;
const CUSTOMERS: u32 = 400;
/// Products P-001..P-063 are referenced; P-061.. are not in the products file.
const PRODUCT_REFS: u32 = 63;
const PRODUCTS: u32 = 60;

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
delimiter = ","

[[ingest.csv.entities]]
name = "clients"
pattern = "customers_*.csv"
key = ["client_id"]

[[ingest.csv.entities]]
name = "articles"
pattern = "products_*.csv"
key = ["sku"]

[[ingest.csv.entities]]
name = "order_lines"
pattern = "sales_*.csv"
key = ["line_id"]

[transform]
metrics_addr = "127.0.0.1:1"
group_id = "overridden"

[transform.silver.customers]
entity = "clients"
[transform.silver.customers.columns]
customer_id = "client_id"
full_name = "name"

[transform.silver.products]
entity = "articles"
[transform.silver.products.columns]
product_id = "sku"
product_name = "title"
unit_price = "list_price"

[transform.silver.sales]
entity = "order_lines"
date_formats = ["%Y-%m-%d", "%d.%m.%Y"]
decimal_separator = "."
filter = ["product_id != 'SAMPLE'"]
[transform.silver.sales.columns]
sale_id = "line_id"
order_id = "order_no"
sale_date = "date"
customer_id = "customer"
product_id = "article"
quantity = "qty"
unit_price = "price"
amount = "total"
"#;

const CUSTOMER_HEADER: &[&str] = &["client_id", "name", "country", "city"];
const PRODUCT_HEADER: &[&str] = &["sku", "title", "category", "list_price"];
const SALES_HEADER: &[&str] = &[
    "line_id", "order_no", "date", "customer", "article", "qty", "price", "total",
];

/// Spellings of each country (silver title-cases and collapses whitespace).
const COUNTRIES: &[&[&str]] = &[
    &["France", "france", " FRANCE "],
    &["United Kingdom", "united   kingdom", "UNITED\tKINGDOM"],
    &["Germany", "GERMANY", "germany "],
    &["Côte d'Ivoire", "côte d'IVOIRE", "CÔTE D'IVOIRE"],
    &["Guinea-Bissau", "guinea-BISSAU"],
    &["New Zealand", "new  zealand"],
    &["Österreich", "ÖSTERREICH", "österreich"],
];

/// Dirty sales rows: cells overwritten (column index, value) and the expected reason.
const DIRTY: &[(&[(usize, &str)], &str)] = &[
    (&[(2, "2024-02-30")], "matches none of the date formats"),
    (&[(2, "31.04.2024")], "matches none of the date formats"),
    (&[(2, "yesterday")], "matches none of the date formats"),
    (&[(5, "-2.00")], "quantity must be positive"),
    (&[(5, "0.000")], "quantity must be positive"),
    (&[(5, "two")], "is not a number"),
    (&[(3, "")], "missing customer_id"),
    (&[(4, "   ")], "missing product_id"),
    (&[(7, "-5.00")], "amount is negative"),
    (&[(6, "n/a")], "is not a number"),
    (&[(6, ""), (7, "")], "missing amount"),
];

/// What silver must make of a written sales row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// Valid, but the row filter removes the sale.
    Filtered,
    Dirty(&'static str),
    /// No key: the ingest agent dead-letters it.
    DeadLetter,
}

struct Line {
    cells: Vec<String>,
    verdict: Verdict,
}

/// A sale line in numbers: quantity and price in thousandths, total in cents.
#[derive(Clone)]
struct Sale {
    id: String,
    order: Option<u32>,
    date: NaiveDate,
    customer: u32,
    /// 0 is the SAMPLE product the filter removes.
    product: u32,
    qty: i64,
    price: i64,
    total: Option<i64>,
}

struct CsvFile {
    name: String,
    entity: &'static str,
    content: String,
    rows: i64,
}

struct Dataset {
    /// Files dropped together, step after step; names sort in drop order.
    steps: Vec<Vec<CsvFile>>,
    sales: usize,
    customers: usize,
    products: usize,
    /// Sale id and expected quarantine reason of every dirty row.
    dirty: Vec<(String, &'static str)>,
}

/// A CSV cell, quoted when it holds a delimiter, quote, tab or outer space.
fn cell(s: &str) -> String {
    if s.contains([',', '"', '\t']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn render(header: &[&str], rows: &[Vec<String>], crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = header.join(",") + nl;
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str(nl);
    }
    out
}

/// Cents as the source writes them: `12.99`, `1,234.50`, `1 234.50`, `12.99 €`.
fn money_text(r: &mut StdRng, cents: i64) -> String {
    let (u, c) = (cents / 100, cents % 100);
    if u >= 1000 {
        match r.random_range(0..3) {
            0 => format!("{},{:03}.{c:02}", u / 1000, u % 1000),
            1 => format!("{} {:03}.{c:02}", u / 1000, u % 1000),
            _ => format!("{u}.{c:02}"),
        }
    } else if r.random_bool(0.05) {
        format!("{u}.{c:02} €")
    } else {
        format!("{u}.{c:02}")
    }
}

/// A price in thousandths: with cents when it has no third decimal, else `0.995`.
fn price_text(r: &mut StdRng, mills: i64) -> String {
    if mills % 10 == 0 {
        money_text(r, mills / 10)
    } else {
        format!("{}.{:03}", mills / 1000, mills % 1000)
    }
}

/// A quantity in thousandths: whole ones as `17.00` or `17`, others as `2.500`.
fn qty_text(r: &mut StdRng, q: i64) -> String {
    if q % 1000 != 0 {
        format!("{}.{:03}", q / 1000, q % 1000)
    } else if r.random_bool(0.7) {
        format!("{}.00", q / 1000)
    } else {
        format!("{}", q / 1000)
    }
}

/// An id with messy case and spaces: `C-0012`, `c-0012`, ` C-0012 `.
fn messy_id(r: &mut StdRng, prefix: char, digits: String) -> String {
    match r.random_range(0..10) {
        0..=6 => format!("{prefix}-{digits}"),
        7 | 8 => format!("{}-{digits}", prefix.to_ascii_lowercase()),
        _ => format!(" {prefix}-{digits} "),
    }
}

/// quantity × price rounded to the cent, half away from zero (all positive here).
fn derived_cents(qty: i64, price_mills: i64) -> i64 {
    (qty * price_mills + 5_000) / 10_000
}

fn product_prices(r: &mut StdRng) -> Vec<i64> {
    (0..=PRODUCT_REFS)
        .map(|p| match p {
            0 => 0,
            1..=3 => r.random_range(100_000..250_000) * 10,
            51..=55 => r.random_range(10..500) * 10 + r.random_range(1..10),
            _ => r.random_range(50..30_000) * 10,
        })
        .collect()
}

fn products_file(r: &mut StdRng, prices: &[i64]) -> CsvFile {
    let rows: Vec<Vec<String>> = (1..=PRODUCTS)
        .map(|p| {
            vec![
                format!("P-{p:03}"),
                format!("Article  {p}"),
                ["tools", "TOYS", "garden "][p as usize % 3].to_string(),
                price_text(r, prices[p as usize]),
            ]
        })
        .collect();
    CsvFile {
        name: "products_1.csv".into(),
        entity: "articles",
        content: render(PRODUCT_HEADER, &rows, false),
        rows: rows.len() as i64,
    }
}

fn country(r: &mut StdRng) -> String {
    let spellings = COUNTRIES[r.random_range(0..COUNTRIES.len())];
    spellings[r.random_range(0..spellings.len())].to_string()
}

/// customers_1.csv lacks every id ending in 3 (and C-0401..); customers_2.csv moves some
/// customers to another country and brings five of the missing ones late, after their
/// sales. Returns the files and the customers silver ends with.
fn customer_files(r: &mut StdRng) -> (CsvFile, CsvFile, usize) {
    let mut first = Vec::new();
    for i in (1..=CUSTOMERS).filter(|i| i % 10 != 3) {
        let c = if i == 7 { String::new() } else { country(r) };
        let id = messy_id(r, 'C', format!("{i:04}"));
        first.push(vec![id, format!("Client  {i}"), c, "town".into()]);
    }
    let mut second = Vec::new();
    for _ in 0..25 {
        let i = loop {
            let i = r.random_range(1..=CUSTOMERS);
            if i % 10 != 3 {
                break i;
            }
        };
        let c = country(r);
        second.push(vec![
            format!("C-{i:04}"),
            format!("Client {i}"),
            c,
            "moved".into(),
        ]);
    }
    for i in [3, 13, 23, 33, 43] {
        let c = country(r);
        second.push(vec![
            format!("c-{i:04}"),
            format!("Late {i}"),
            c,
            "late".into(),
        ]);
    }
    let silver = first.len() + 5;
    let file = |name: &str, rows: &[Vec<String>]| CsvFile {
        name: name.into(),
        entity: "clients",
        content: render(CUSTOMER_HEADER, rows, false),
        rows: rows.len() as i64,
    };
    (
        file("customers_1.csv", &first),
        file("customers_2.csv", &second),
        silver,
    )
}

/// Writes the sales lines: orders, duplicates, dirty rows, samples.
struct SalesGen {
    r: StdRng,
    prices: Vec<i64>,
    next_line: u32,
    next_order: u32,
    history: Vec<Sale>,
    samples: Vec<Sale>,
    dirty_kind: usize,
}

impl SalesGen {
    fn date(&mut self) -> NaiveDate {
        let start = NaiveDate::from_ymd_opt(2023, 1, 1).expect("a date");
        start + chrono::Days::new(self.r.random_range(0..731))
    }

    fn qty(&mut self) -> i64 {
        match self.r.random_range(0..10) {
            0..=5 => self.r.random_range(1..=20) * 1000,
            6 => [500, 2500, 1250, 125, 1375][self.r.random_range(0..5)],
            _ => self.r.random_range(1..=12_000),
        }
    }

    fn fresh(&mut self, order: Option<u32>, date: NaiveDate, customer: u32) -> Sale {
        self.next_line += 1;
        let product = self.r.random_range(1..=PRODUCT_REFS);
        let qty = self.qty();
        let mut price = self.prices[product as usize];
        if self.r.random_bool(0.2) {
            price = (price * self.r.random_range(80..100) + 50) / 100;
        }
        let total = self.r.random_bool(0.5).then(|| {
            let c = derived_cents(qty, price);
            if self.r.random_bool(0.3) {
                c * 95 / 100
            } else {
                c
            }
        });
        Sale {
            id: format!("L-{:07}", self.next_line),
            order,
            date,
            customer,
            product,
            qty,
            price,
            total,
        }
    }

    fn cells(&mut self, s: &Sale) -> Vec<String> {
        let r = &mut self.r;
        let order = match s.order {
            None => String::new(),
            Some(o) if r.random_bool(0.2) => format!("o-{o:06}"),
            Some(o) => format!("O-{o:06}"),
        };
        let day = s.date.format("%Y-%m-%d");
        let date = match r.random_range(0..10) {
            0..=5 => day.to_string(),
            6 | 7 => s.date.format("%d.%m.%Y").to_string(),
            8 => format!(
                "{day}T{:02}:{:02}:00",
                r.random_range(0..24),
                r.random_range(0..60)
            ),
            _ => format!(
                "{day} {:02}:{:02}",
                r.random_range(0..24),
                r.random_range(0..60)
            ),
        };
        let customer = messy_id(r, 'C', format!("{:04}", s.customer));
        let product = match s.product {
            0 => ["sample", "Sample", " SAMPLE "][r.random_range(0..3)].to_string(),
            p => messy_id(r, 'P', format!("{p:03}")),
        };
        let qty = qty_text(r, s.qty);
        let price = price_text(r, s.price);
        let total = s.total.map(|c| money_text(r, c)).unwrap_or_default();
        vec![
            s.id.clone(),
            order,
            date,
            customer,
            product,
            qty,
            price,
            total,
        ]
    }

    fn emit(&mut self, out: &mut Vec<Line>, s: &Sale, verdict: Verdict) {
        let cells = self.cells(s);
        out.push(Line { cells, verdict });
    }

    fn order(&mut self, out: &mut Vec<Line>, with_id: bool) {
        self.next_order += 1;
        let order = with_id.then_some(self.next_order);
        let date = self.date();
        let customer = self.r.random_range(1..=CUSTOMER_REFS);
        let n = if with_id {
            self.r.random_range(1..=4)
        } else {
            1
        };
        for _ in 0..n {
            let s = self.fresh(order, date, customer);
            self.emit(out, &s, Verdict::Valid);
            self.history.push(s);
        }
    }

    /// A sale written again: another total, another quantity (total left empty) or a
    /// date a few days later.
    fn duplicate(&mut self, out: &mut Vec<Line>) {
        let mut s = self.history[self.r.random_range(0..self.history.len())].clone();
        match self.r.random_range(0..10) {
            0..=5 => s.total = Some(self.r.random_range(100..500_000)),
            6..=7 => {
                s.qty = self.qty();
                s.total = None;
            }
            _ => s.date = s.date + chrono::Days::new(self.r.random_range(1..=3)),
        }
        self.emit(out, &s, Verdict::Valid);
        self.history.push(s);
    }

    fn dirty(&mut self, out: &mut Vec<Line>) {
        self.next_order += 1;
        let (date, customer) = (self.date(), self.r.random_range(1..=CUSTOMER_REFS));
        let s = self.fresh(Some(self.next_order), date, customer);
        let mut cells = self.cells(&s);
        let (changes, reason) = DIRTY[self.dirty_kind % DIRTY.len()];
        self.dirty_kind += 1;
        for (col, v) in changes {
            cells[*col] = v.to_string();
        }
        out.push(Line {
            cells,
            verdict: Verdict::Dirty(reason),
        });
    }

    fn sample(&mut self, out: &mut Vec<Line>) {
        let (date, customer) = (self.date(), self.r.random_range(1..=CUSTOMER_REFS));
        let mut s = self.fresh(None, date, customer);
        (s.product, s.qty, s.price, s.total) = (0, 1000, 0, None);
        self.emit(out, &s, Verdict::Filtered);
        self.samples.push(s);
    }

    fn file(&mut self, lines: usize) -> Vec<Line> {
        let mut out = Vec::new();
        while out.len() < lines {
            match self.r.random_range(0..1000) {
                0..=899 => self.order(&mut out, true),
                900..=959 => self.duplicate(&mut out),
                960..=969 => self.order(&mut out, false),
                970..=974 => self.sample(&mut out),
                _ => self.dirty(&mut out),
            }
        }
        out
    }

    /// Rows the last file ends with: no key; a valid sale written again dirty (the older
    /// image stays); a sale turned into a sample (filtered out: removed); a sample turned
    /// into a real sale (kept).
    fn specials(&mut self, out: &mut Vec<Line>) {
        let keyless = self.history[10].clone();
        let mut cells = self.cells(&keyless);
        cells[0] = String::new();
        out.push(Line {
            cells,
            verdict: Verdict::DeadLetter,
        });
        let redone = self.history[20].clone();
        let mut cells = self.cells(&redone);
        cells[5] = "-1.00".into();
        out.push(Line {
            cells,
            verdict: Verdict::Dirty("quantity must be positive"),
        });
        let mut s = self.history[30].clone();
        s.product = 0;
        self.emit(out, &s, Verdict::Filtered);
        let mut s = self.samples[0].clone();
        (s.product, s.price) = (5, self.prices[5]);
        self.emit(out, &s, Verdict::Valid);
    }
}

/// Sales in silver at the end: per key, the last row that parses decides (a filtered one
/// removes the key); dirty rows leave the key as it was.
fn expected_sales(files: &[Vec<Line>]) -> usize {
    let mut present: HashMap<&str, bool> = HashMap::new();
    for l in files.iter().flatten() {
        match l.verdict {
            Verdict::Valid => present.insert(&l.cells[0], true),
            Verdict::Filtered => present.insert(&l.cells[0], false),
            Verdict::Dirty(_) | Verdict::DeadLetter => None,
        };
    }
    present.values().filter(|p| **p).count()
}

impl Dataset {
    fn generate(seed: u64) -> Dataset {
        let mut r = StdRng::seed_from_u64(seed);
        let prices = product_prices(&mut r);
        let products = products_file(&mut r, &prices);
        let (customers_1, customers_2, customers) = customer_files(&mut r);
        let mut g = SalesGen {
            r,
            prices,
            next_line: 0,
            next_order: 0,
            history: Vec::new(),
            samples: Vec::new(),
            dirty_kind: 0,
        };
        let mut sales: Vec<Vec<Line>> = (0..SALES_FILES).map(|_| g.file(LINES_PER_FILE)).collect();
        g.specials(sales.last_mut().expect("sales files"));
        let dirty = sales
            .iter()
            .flatten()
            .filter_map(|l| match l.verdict {
                Verdict::Dirty(why) => Some((l.cells[0].clone(), why)),
                _ => None,
            })
            .collect();
        let expected = expected_sales(&sales);
        let mut files: Vec<CsvFile> = sales
            .iter()
            .enumerate()
            .map(|(i, lines)| {
                let rows: Vec<Vec<String>> = lines.iter().map(|l| l.cells.clone()).collect();
                CsvFile {
                    name: format!("sales_{}.csv", i + 1),
                    entity: "order_lines",
                    // The second file has Windows line ends.
                    content: render(SALES_HEADER, &rows, i == 1),
                    rows: lines
                        .iter()
                        .filter(|l| l.verdict != Verdict::DeadLetter)
                        .count() as i64,
                }
            })
            .collect();
        let mut next = || files.remove(0);
        let steps = vec![
            vec![products, next()],
            vec![customers_1, next()],
            vec![next()],
            vec![customers_2],
            vec![next()],
        ];
        Dataset {
            steps,
            sales: expected,
            customers,
            products: PRODUCTS as usize,
            dirty,
        }
    }
}

fn scratch_config(s: &mut Scratch) -> Result<()> {
    let path = s.dir.join("duck.toml");
    std::fs::write(&path, CONFIG)?;
    s.config = path;
    Ok(())
}

/// Drops each step's files, then waits until bronze holds every row written so far (the
/// next step's files are then read after them: a sale written again in a later file is
/// newer in Kafka too).
async fn feed(s: &Scratch, db: &tokio_postgres::Client, data: &Dataset) -> Result<()> {
    let mut written: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, step) in data.steps.iter().enumerate() {
        for f in step {
            s.drop_file(&f.name, f.content.as_bytes())?;
            *written.entry(f.entity).or_default() += f.rows;
        }
        let written = &written;
        wait_for(
            Duration::from_secs(180),
            &format!("step {} ({:?}) in bronze", i + 1, written),
            || async move {
                for (entity, n) in written {
                    let sql = format!(
                        "SELECT count(*) FROM bronze.events WHERE topic = '{}'",
                        s.topic(entity)
                    );
                    if count(db, &sql).await? < *n {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            },
        )
        .await?;
        println!("step {}: {:?} rows in bronze", i + 1, written);
    }
    let want = data.sales as i64;
    wait_for(Duration::from_secs(60), "silver.sales", || async move {
        let n = count(db, "SELECT count(*) FROM silver.sales").await?;
        Ok((n == want).then_some(()))
    })
    .await
}

fn python() -> String {
    std::env::var("ETL_TEST_PYTHON")
        .unwrap_or_else(|_| "/root/.cache/etl-platform/venv/bin/python".into())
}

/// Fails (never skips) when the Python has no duckdb.
fn require_duckdb() -> Result<String> {
    let py = python();
    let out = std::process::Command::new(&py)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => bail!(
            "DuckDB is required: `{py} -c 'import duckdb'` failed ({}): {}\nRun ./dev test (it installs PyPI duckdb into ~/.cache/etl-platform/venv) or set ETL_TEST_PYTHON to a Python with duckdb.",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!(
            "DuckDB is required: cannot run {py} ({e}). Run ./dev test or set ETL_TEST_PYTHON to a Python with duckdb."
        ),
    }
}

fn run_duckdb(s: &Scratch) -> Result<Json> {
    let script = e2e_tests::repo_root().join("tests/duckdb/marts.py");
    let out_path = s.dir.join("duckdb.json");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(&s.watch_dir)
        .arg(&out_path)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&out_path)?;
    serde_json::from_str(&text).context("reading the DuckDB marts")
}

/// The stored marts, every value as text with the same rounding as the script's output.
const MARTS: &[(&str, &str)] = &[
    (
        "sales_by_period",
        "SELECT grain, period_start::text, round(revenue, 2)::text, lines::text,
                round(units, 3)::text, orders::text, customers::text, round(avg_basket, 2)::text,
                round(prev_revenue, 2)::text, round(growth_prev_pct, 2)::text,
                round(yoy_revenue, 2)::text, round(growth_yoy_pct, 2)::text
         FROM gold.sales_by_period",
    ),
    (
        "country_sales",
        "SELECT grain, period_start::text, country, round(revenue, 2)::text, lines::text,
                round(units, 3)::text, orders::text, customers::text, round(avg_basket, 2)::text
         FROM gold.country_sales",
    ),
    (
        "product_month",
        "SELECT month::text, product_key, round(revenue, 2)::text, round(units, 3)::text,
                lines::text, orders::text, revenue_rank::text, round(revenue_share, 6)::text,
                round(prev_revenue, 2)::text, round(growth_prev_pct, 2)::text
         FROM gold.product_month",
    ),
    (
        "customer_ltv",
        "SELECT customer_key, country, first_order_date::text, last_order_date::text,
                orders::text, lines::text, round(revenue, 2)::text, round(avg_basket, 2)::text,
                tenure_days::text
         FROM gold.customer_ltv",
    ),
    (
        "distribution",
        "SELECT scope, period_start::text, country, measure, n::text, round(total, 2)::text,
                round(sum_squares, 4)::text, round(mean, 6)::text, round(stddev, 6)::text,
                round(min, 2)::text, round(p25, 6)::text, round(median, 6)::text,
                round(p75, 6)::text, round(max, 2)::text
         FROM gold.distribution",
    ),
];

type Row = Vec<Option<String>>;

fn json_rows(v: &Json) -> Result<Vec<Row>> {
    let rows = v.as_array().context("rows is not an array")?;
    rows.iter()
        .map(|r| {
            r.as_array().context("a row is not an array").map(|cells| {
                cells
                    .iter()
                    .map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
        })
        .collect()
}

fn show(columns: &[String], row: &Row) -> String {
    let cells: Vec<String> = columns
        .iter()
        .zip(row)
        .map(|(c, v)| format!("{c}={}", v.as_deref().unwrap_or("NULL")))
        .collect();
    cells.join(" ")
}

/// Differences between DuckDB's rows and gold's, matched on the key columns.
fn diff_rows(columns: &[String], key: usize, duck: &[Row], gold: &[Row]) -> Vec<String> {
    let index = |rows: &[Row]| -> BTreeMap<Row, Row> {
        rows.iter()
            .map(|r| (r[..key].to_vec(), r.clone()))
            .collect()
    };
    let (d, g) = (index(duck), index(gold));
    let mut out = Vec::new();
    if d.len() != duck.len() || g.len() != gold.len() {
        out.push(format!(
            "duplicate keys: {} / {} rows, {} / {} keys",
            duck.len(),
            gold.len(),
            d.len(),
            g.len()
        ));
    }
    for (k, dr) in &d {
        match g.get(k) {
            None => out.push(format!("only in DuckDB: {}", show(columns, dr))),
            Some(gr) if gr != dr => {
                let what: Vec<String> = (key..columns.len())
                    .filter(|&i| dr.get(i) != gr.get(i))
                    .map(|i| {
                        let v = |r: &Row| r.get(i).cloned().flatten().unwrap_or("NULL".into());
                        format!("{}: DuckDB {} gold {}", columns[i], v(dr), v(gr))
                    })
                    .collect();
                out.push(format!(
                    "differs at {}: {}",
                    show(&columns[..key], k),
                    what.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    for (k, gr) in &g {
        if !d.contains_key(k) {
            out.push(format!("only in gold: {}", show(columns, gr)));
        }
    }
    out
}

/// Compares every mart; returns one report per mart that differs.
async fn compare_marts(db: &tokio_postgres::Client, duck: &Json) -> Result<Vec<String>> {
    let mut reports = Vec::new();
    for (name, sql) in MARTS {
        let spec = &duck["marts"][name];
        let columns: Vec<String> = serde_json::from_value(spec["columns"].clone())
            .with_context(|| format!("columns of {name}"))?;
        let key = spec["key"].as_u64().context("key")? as usize;
        let expected = json_rows(&spec["rows"])?;
        let stored: Vec<Row> = db
            .query(*sql, &[])
            .await
            .with_context(|| format!("reading gold.{name}"))?
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i))
                    .collect()
            })
            .collect();
        if let Some(r) = stored.first() {
            if r.len() != columns.len() {
                bail!(
                    "gold.{name}: {} columns read, DuckDB has {columns:?}",
                    r.len()
                );
            }
        }
        println!(
            "{name}: {} rows in DuckDB, {} in gold",
            expected.len(),
            stored.len()
        );
        let diffs = diff_rows(&columns, key, &expected, &stored);
        if expected.is_empty() {
            reports.push(format!("{name}: DuckDB computed no rows"));
        } else if !diffs.is_empty() {
            reports.push(format!(
                "gold.{name}: {} differences ({} rows in DuckDB, {} in gold):\n  {}",
                diffs.len(),
                expected.len(),
                stored.len(),
                diffs[..diffs.len().min(60)].join("\n  ")
            ));
        }
    }
    Ok(reports)
}

/// Silver's counts against the test's own and DuckDB's; the dirty rows in the quarantine
/// with their reasons; the row without a key in the dead letters.
async fn check_silver(db: &tokio_postgres::Client, data: &Dataset, duck: &Json) -> Result<()> {
    let got = |sql: &'static str| async move { count(db, sql).await };
    let counts = [
        (
            "sales",
            data.sales,
            got("SELECT count(*) FROM silver.sales").await?,
        ),
        (
            "customers",
            data.customers,
            got("SELECT count(*) FROM silver.customers").await?,
        ),
        (
            "products",
            data.products,
            got("SELECT count(*) FROM silver.products").await?,
        ),
        (
            "dead_letters",
            1,
            got("SELECT count(*) FROM bronze.dead_letters").await?,
        ),
    ];
    for (what, mine, stored) in counts {
        let theirs = duck["silver"][what].as_i64();
        assert_eq!(
            (stored, theirs),
            (mine as i64, Some(mine as i64)),
            "{what}: warehouse / DuckDB, expected {mine}"
        );
    }
    let orders = count(db, "SELECT count(*) FROM gold.fact_orders").await?;
    assert_eq!(
        Some(orders),
        duck["silver"]["fact_orders"].as_i64(),
        "gold.fact_orders rows"
    );
    let stored: BTreeMap<String, String> = db
        .query(
            "SELECT record->>'line_id', reason FROM silver.quarantine WHERE model = 'sales'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (id, why) in &data.dirty {
        let reason = stored
            .get(id)
            .with_context(|| format!("dirty row {id} is not in silver.quarantine"))?;
        assert!(
            reason.contains(why),
            "{id}: reason {reason:?} lacks {why:?}"
        );
    }
    let mine: BTreeSet<&str> = data.dirty.iter().map(|(id, _)| id.as_str()).collect();
    let theirs: BTreeSet<&str> = duck["quarantined"]
        .as_array()
        .context("quarantined")?
        .iter()
        .filter_map(|r| r[0].as_str())
        .collect();
    assert_eq!(
        stored.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        mine,
        "quarantined sales"
    );
    assert_eq!(theirs, mine, "sales DuckDB rejects");
    let reason: String = db
        .query_one("SELECT reason FROM bronze.dead_letters", &[])
        .await?
        .get(0);
    assert!(reason.contains("\"line_id\" is empty"), "{reason}");
    println!("silver: {counts:?}; {} quarantined", data.dirty.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_marts_equal_duckdb_on_an_own_dataset() -> Result<()> {
    let version = require_duckdb()?;
    let data = Dataset::generate(SEED);
    let lines: i64 = data
        .steps
        .iter()
        .flatten()
        .filter(|f| f.entity == "order_lines")
        .map(|f| f.rows)
        .sum();
    println!(
        "duckdb {version}; {lines} sales rows, {} sales expected in silver, {} dirty",
        data.sales,
        data.dirty.len()
    );
    let mut s = Scratch::new("duck", None).await?;
    scratch_config(&mut s)?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    let fed = feed(&s, &db, &data).await;
    fed.map_err(|e| {
        anyhow::anyhow!(
            "{e}\ningest:\n{}\ntransform:\n{}",
            s.log("ingest"),
            s.log("transform")
        )
    })?;
    let started = std::time::Instant::now();
    let duck = run_duckdb(&s)?;
    println!("DuckDB computed the marts in {:?}", started.elapsed());
    check_silver(&db, &data, &duck).await?;
    let reports = compare_marts(&db, &duck).await?;
    ingest.stop()?;
    transform.stop()?;
    if !reports.is_empty() {
        bail!(
            "gold differs from DuckDB (scratch kept: {} and database {}):\n{}",
            s.dir.display(),
            s.db,
            reports.join("\n")
        );
    }
    s.cleanup().await;
    Ok(())
}
