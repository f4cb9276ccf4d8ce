//! demo-data: writes realistic, deliberately dirty CSV files for the CSV source agent.
//!
//! The initial data set (countries, products, employees, customers, one sales file per
//! month) is deterministic for a given `--seed` and day. Every file is written under a
//! temporary name that matches none of the agent's patterns and then renamed into place.
//! With `--follow`, new sales dated today are appended to `sales_live.csv` (and now and
//! then a new customer to `customers_live.csv`) until SIGINT or SIGTERM.
//!
//! Logs go to stderr; stdout carries only the one-line JSON summary.

use std::collections::{BTreeMap, HashSet};
use std::f64::consts::PI;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{Datelike, NaiveDate};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tracing::{info, warn};

/// Writes demo CSV files (customers, products, countries, employees, monthly sales) with
/// realistic dirt into a folder watched by the CSV source agent, and optionally keeps
/// appending live sales.
#[derive(Parser, Debug, Clone)]
#[command(name = "demo-data", version)]
struct Cli {
    /// Folder to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the generator: the same seed (on the same day) gives the same files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of customers.
    #[arg(long, default_value_t = 1500)]
    customers: usize,
    /// Number of historical sales (duplicate rows come on top).
    #[arg(long, default_value_t = 25000)]
    sales: usize,
    /// Days of history, ending yesterday.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// After the initial files, keep appending sales dated today to sales_live.csv.
    #[arg(long)]
    follow: bool,
    /// Pause between two live appends, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    interval_ms: u64,
    /// Accepted (and ignored) so the binary can be started like the other services.
    #[arg(long)]
    config: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------
// Reference data
// ---------------------------------------------------------------------------------------

struct Country {
    code: &'static str,
    name: &'static str,
    region: &'static str,
    /// Share of customers.
    weight: u32,
    cities: &'static [&'static str],
    first: &'static [&'static str],
    last: &'static [&'static str],
    domains: &'static [&'static str],
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "FR",
        name: "France",
        region: "Western Europe",
        weight: 22,
        cities: &[
            "Paris",
            "Lyon",
            "Marseille",
            "Toulouse",
            "Lille",
            "Bordeaux",
            "Nantes",
        ],
        first: &[
            "Camille",
            "Léa",
            "Manon",
            "Chloé",
            "Julien",
            "Thomas",
            "Nicolas",
            "Antoine",
            "Émilie",
            "Mathieu",
            "Hélène",
            "François",
        ],
        last: &[
            "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
            "Lefèvre", "Moreau", "Girard", "Lemaire",
        ],
        domains: &["orange.fr", "gmail.com", "free.fr", "laposte.net"],
    },
    Country {
        code: "DE",
        name: "Germany",
        region: "Western Europe",
        weight: 18,
        cities: &[
            "Berlin",
            "Hamburg",
            "München",
            "Köln",
            "Düsseldorf",
            "Stuttgart",
        ],
        first: &[
            "Lukas",
            "Leon",
            "Finn",
            "Anna",
            "Lena",
            "Hannah",
            "Jonas",
            "Felix",
            "Sophie",
            "Maximilian",
            "Jürgen",
            "Katrin",
        ],
        last: &[
            "Müller",
            "Schmidt",
            "Schneider",
            "Fischer",
            "Weber",
            "Meyer",
            "Wagner",
            "Becker",
            "Schulz",
            "Hoffmann",
            "Krüger",
        ],
        domains: &["web.de", "gmx.de", "gmail.com", "t-online.de"],
    },
    Country {
        code: "ES",
        name: "Spain",
        region: "Southern Europe",
        weight: 12,
        cities: &[
            "Madrid",
            "Barcelona",
            "Valencia",
            "Sevilla",
            "Bilbao",
            "Málaga",
        ],
        first: &[
            "Lucía",
            "Sofía",
            "Martina",
            "Hugo",
            "Pablo",
            "Alejandro",
            "Javier",
            "Carmen",
            "Daniel",
            "Elena",
        ],
        last: &[
            "García",
            "Fernández",
            "González",
            "Rodríguez",
            "López",
            "Martínez",
            "Sánchez",
            "Pérez",
            "Gómez",
            "Ruiz",
        ],
        domains: &["gmail.com", "hotmail.es", "yahoo.es", "telefonica.net"],
    },
    Country {
        code: "IT",
        name: "Italy",
        region: "Southern Europe",
        weight: 12,
        cities: &["Roma", "Milano", "Napoli", "Torino", "Bologna", "Firenze"],
        first: &[
            "Giulia",
            "Francesco",
            "Alessandro",
            "Sofia",
            "Lorenzo",
            "Chiara",
            "Matteo",
            "Martina",
            "Marco",
            "Federica",
        ],
        last: &[
            "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
            "Marino", "Greco",
        ],
        domains: &["libero.it", "gmail.com", "virgilio.it", "tiscali.it"],
    },
    Country {
        code: "BE",
        name: "Belgium",
        region: "Western Europe",
        weight: 8,
        cities: &["Bruxelles", "Antwerpen", "Gent", "Liège", "Brugge", "Namur"],
        first: &[
            "Lucas", "Emma", "Louis", "Olivia", "Noah", "Elise", "Arthur", "Louise", "Jules",
            "Marie",
        ],
        last: &[
            "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens",
            "Dubois", "Lambert",
        ],
        domains: &["skynet.be", "telenet.be", "gmail.com", "proximus.be"],
    },
    Country {
        code: "NL",
        name: "Netherlands",
        region: "Western Europe",
        weight: 9,
        cities: &[
            "Amsterdam",
            "Rotterdam",
            "Den Haag",
            "Utrecht",
            "Eindhoven",
            "Groningen",
        ],
        first: &[
            "Daan", "Sem", "Julia", "Tess", "Lieke", "Bram", "Sanne", "Ruben", "Fleur", "Jesse",
        ],
        last: &[
            "de Jong",
            "Jansen",
            "de Vries",
            "van den Berg",
            "van Dijk",
            "Bakker",
            "Visser",
            "Smit",
            "Meijer",
            "de Boer",
        ],
        domains: &["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl"],
    },
    Country {
        code: "CH",
        name: "Switzerland",
        region: "Western Europe",
        weight: 5,
        cities: &["Zürich", "Genève", "Basel", "Lausanne", "Bern"],
        first: &[
            "Noah", "Mia", "Luca", "Elena", "Levin", "Lina", "Nico", "Laura", "Jan", "Sara",
        ],
        last: &[
            "Müller",
            "Meier",
            "Schmid",
            "Keller",
            "Weber",
            "Huber",
            "Meyer",
            "Schneider",
            "Favre",
            "Rochat",
        ],
        domains: &["bluewin.ch", "gmx.ch", "gmail.com", "sunrise.ch"],
    },
    Country {
        code: "PT",
        name: "Portugal",
        region: "Southern Europe",
        weight: 5,
        cities: &["Lisboa", "Porto", "Braga", "Coimbra", "Faro"],
        first: &[
            "João", "Maria", "Beatriz", "Duarte", "Tiago", "Inês", "Rodrigo", "Ana", "Afonso",
            "Mariana",
        ],
        last: &[
            "Silva",
            "Santos",
            "Ferreira",
            "Pereira",
            "Oliveira",
            "Costa",
            "Rodrigues",
            "Martins",
            "Sousa",
            "Fernandes",
        ],
        domains: &["sapo.pt", "gmail.com", "hotmail.com", "netcabo.pt"],
    },
    Country {
        code: "GB",
        name: "United Kingdom",
        region: "Northern Europe",
        weight: 9,
        cities: &[
            "London",
            "Manchester",
            "Birmingham",
            "Leeds",
            "Glasgow",
            "Bristol",
            "Edinburgh",
        ],
        first: &[
            "Oliver", "Amelia", "Harry", "Isla", "George", "Emily", "Jack", "Olivia", "Charlie",
            "Grace",
        ],
        last: &[
            "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
            "O'Brien", "Evans",
        ],
        domains: &["gmail.com", "btinternet.com", "outlook.com", "yahoo.co.uk"],
    },
    // Reference only: an office, no customers (yet).
    Country {
        code: "LU",
        name: "Luxembourg",
        region: "Western Europe",
        weight: 0,
        cities: &["Luxembourg"],
        first: &["Luc", "Anne", "Marc", "Claire"],
        last: &["Schmit", "Muller", "Weber", "Wagner"],
        domains: &["pt.lu"],
    },
];

struct ProductDef {
    id: &'static str,
    name: &'static str,
    category: &'static str,
    price_cents: i64,
    /// Relative popularity.
    weight: u32,
}

const PRODUCTS: &[ProductDef] = &[
    ProductDef {
        id: "P001",
        name: "Laptop Pro 14",
        category: "Electronics",
        price_cents: 119_900,
        weight: 5,
    },
    ProductDef {
        id: "P002",
        name: "Wireless Mouse",
        category: "Accessories",
        price_cents: 2_490,
        weight: 18,
    },
    ProductDef {
        id: "P003",
        name: "Mechanical Keyboard",
        category: "Accessories",
        price_cents: 8_900,
        weight: 12,
    },
    ProductDef {
        id: "P004",
        name: "27\" 4K Monitor",
        category: "Electronics",
        price_cents: 37_900,
        weight: 8,
    },
    ProductDef {
        id: "P005",
        name: "Noise-Cancelling Headphones",
        category: "Audio",
        price_cents: 24_900,
        weight: 10,
    },
    ProductDef {
        id: "P006",
        name: "Smartphone X12",
        category: "Electronics",
        price_cents: 79_900,
        weight: 7,
    },
    ProductDef {
        id: "P007",
        name: "USB-C Dock, 12-in-1",
        category: "Accessories",
        price_cents: 13_900,
        weight: 10,
    },
    ProductDef {
        id: "P008",
        name: "Ergonomic Office Chair",
        category: "Furniture",
        price_cents: 32_900,
        weight: 6,
    },
    ProductDef {
        id: "P009",
        name: "Standing Desk\n(Electric)",
        category: "Furniture",
        price_cents: 54_900,
        weight: 4,
    },
    ProductDef {
        id: "P010",
        name: "Tablet 11",
        category: "Electronics",
        price_cents: 44_900,
        weight: 8,
    },
];

const TITLES: &[&str] = &[
    "Sales Representative",
    "Sales Representative",
    "Senior Sales Representative",
    "Account Manager",
    "Account Manager",
    "Key Account Manager",
];

/// Employees per country (index into COUNTRIES), 20 in all.
const EMPLOYEES_PER_COUNTRY: &[usize] = &[4, 3, 2, 2, 2, 2, 1, 1, 2, 1];

const SALES_HEADER: &str =
    "sale_id,order_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount";
/// Positions of the fields of a sales record (see SALES_HEADER).
const F_SALE: usize = 0;
const F_ORDER: usize = 1;
const F_DATE: usize = 2;
const F_CUSTOMER: usize = 3;
const F_PRODUCT: usize = 4;
const F_EMPLOYEE: usize = 5;
const F_QTY: usize = 6;
const F_PRICE: usize = 7;
const F_AMOUNT: usize = 8;
const SALES_FIELDS: usize = 9;
/// Relative frequency of orders of 1, 2, 3, 4 and 5 lines (mean 1.86 lines an order).
const ORDER_LINES: &[f64] = &[50.0, 28.0, 12.0, 6.0, 4.0];
/// Share of the customers who signed up during the sales window (the others before it).
const SIGNUP_IN_WINDOW: f64 = 0.3;
/// Customers who move country: one in this many (at least 3 when there are 50 or more).
const MOVER_EVERY: usize = 250;
const CUSTOMERS_HEADER: &str = "customer_id,full_name,email,country,city,signup_date";
const SALES_DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y", "%b %d %Y"];
const CUSTOMER_DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y"];
const EMPLOYEE_DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%d/%m/%Y"];
const MANIFEST: &str = ".demo-data.json";

// ---------------------------------------------------------------------------------------
// Output model
// ---------------------------------------------------------------------------------------

/// One CSV file: header and records, each without its terminator.
struct CsvFile {
    name: String,
    header: String,
    records: Vec<Vec<u8>>,
    crlf: bool,
    bom: bool,
}

impl CsvFile {
    fn new(name: impl Into<String>, header: &str) -> Self {
        CsvFile {
            name: name.into(),
            header: header.to_string(),
            records: Vec::new(),
            crlf: false,
            bom: false,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let eol: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let mut out = Vec::with_capacity(64 * (self.records.len() + 1));
        if self.bom {
            out.extend_from_slice(b"\xEF\xBB\xBF");
        }
        out.extend_from_slice(self.header.as_bytes());
        out.extend_from_slice(eol);
        for r in &self.records {
            out.extend_from_slice(r);
            out.extend_from_slice(eol);
        }
        out
    }
}

/// Counts per entity: dirt kinds and date formats used.
#[derive(Default, Debug, Clone, Serialize, PartialEq)]
struct Stats {
    dirt: BTreeMap<String, u64>,
    date_formats: BTreeMap<String, u64>,
}

impl Stats {
    fn dirt(&mut self, kind: &str) {
        *self.dirt.entry(kind.to_string()).or_default() += 1;
    }
    fn format(&mut self, f: &str) {
        *self.date_formats.entry(f.to_string()).or_default() += 1;
    }
}

/// A record and its sort position (duplicates land a little after their original).
type Placed = (f64, Vec<u8>);

struct Generated {
    files: Vec<CsvFile>,
    stats: BTreeMap<&'static str, Stats>,
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Quotes a field when CSV needs it.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn line(fields: &[String]) -> Vec<u8> {
    fields
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Index drawn from a cumulative weight table.
fn sample_cum(rng: &mut StdRng, cum: &[f64]) -> usize {
    let total = *cum.last().expect("non-empty table");
    let x = rng.random::<f64>() * total;
    cum.partition_point(|&c| c <= x).min(cum.len() - 1)
}

fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

/// Lower-case ASCII for e-mail local parts: accents dropped, other symbols removed.
fn ascii_slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(|c| c.to_lowercase()) {
        let m = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
            'ç' => "c",
            'è' | 'é' | 'ê' | 'ë' => "e",
            'ì' | 'í' | 'î' | 'ï' => "i",
            'ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
            'ù' | 'ú' | 'û' | 'ü' => "u",
            'ß' => "ss",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => "",
        };
        out.push_str(m);
    }
    out
}

/// Random case mangling of a value ("france" -> "FRANCE", "fRANCE", "france").
fn mangle_case(rng: &mut StdRng, s: &str) -> String {
    match rng.random_range(0..3) {
        0 => s.to_uppercase(),
        1 => s.to_lowercase(),
        _ => s
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_lowercase().collect::<String>()
                } else {
                    c.to_uppercase().collect()
                }
            })
            .collect(),
    }
}

/// Stray whitespace around and inside a value.
fn pad(rng: &mut StdRng, s: &str) -> String {
    match rng.random_range(0..3) {
        0 => format!("  {s}"),
        1 => format!("{s}   "),
        _ => format!(" {} ", s.replacen(' ', "  ", 1)),
    }
}

/// Draws a date format: mostly ISO, the rest spread over the other accepted ones.
fn pick_format(rng: &mut StdRng, formats: &'static [&'static str], iso_share: f64) -> &'static str {
    if rng.random_bool(iso_share) {
        formats[0]
    } else {
        formats[rng.random_range(1..formats.len())]
    }
}

// ---------------------------------------------------------------------------------------
// The world: customers, employees and the weights used to draw sales
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Customer {
    id: String,
    country: usize,
    /// A move: from this day on, the customer lives in the other country (index into COUNTRIES).
    moved: Option<(NaiveDate, usize)>,
}

impl Customer {
    /// The country the customer lived in on `day`.
    fn country_on(&self, day: NaiveDate) -> usize {
        match self.moved {
            Some((from, to)) if day >= from => to,
            _ => self.country,
        }
    }
}

struct Employee {
    id: String,
    country: usize,
}

struct World {
    customers: Vec<Customer>,
    customer_cum: Vec<f64>,
    signup: Vec<NaiveDate>,
    employees: Vec<Employee>,
    product_cum: Vec<f64>,
    n_customers: usize,
}

impl World {
    /// The sales person of an order: an employee of the customer's country, any employee
    /// where the country has none.
    fn employee_for(&self, rng: &mut StdRng, country: usize) -> String {
        let local: Vec<&Employee> = self
            .employees
            .iter()
            .filter(|e| e.country == country)
            .collect();
        if local.is_empty() {
            pick(rng, &self.employees).id.clone()
        } else {
            pick(rng, &local).id.clone()
        }
    }
}

fn country_cum() -> Vec<f64> {
    cumulative(COUNTRIES.iter().map(|c| c.weight as f64))
}

fn person_name(rng: &mut StdRng, c: &Country) -> (String, String) {
    (
        pick(rng, c.first).to_string(),
        pick(rng, c.last).to_string(),
    )
}

fn email_for(
    rng: &mut StdRng,
    first: &str,
    last: &str,
    c: &Country,
    taken: &mut HashSet<String>,
) -> String {
    let (f, l) = (ascii_slug(first), ascii_slug(last));
    let base = match rng.random_range(0..4) {
        0 => format!("{f}.{l}"),
        1 => format!("{}.{l}", &f[..1.min(f.len())]),
        2 => format!("{f}{l}{}", rng.random_range(70..=99)),
        _ => format!("{f}_{l}"),
    };
    let domain = pick(rng, c.domains);
    let mut email = format!("{base}@{domain}");
    let mut n = 2;
    while !taken.insert(email.clone()) {
        email = format!("{base}{n}@{domain}");
        n += 1;
    }
    email
}

// ---------------------------------------------------------------------------------------
// Generation of the initial files
// ---------------------------------------------------------------------------------------

struct Params {
    seed: u64,
    customers: usize,
    sales: usize,
    days: u32,
}

fn countries_file(stats: &mut Stats) -> CsvFile {
    let mut f = CsvFile::new("countries.csv", "country_code,country_name,region");
    f.crlf = true;
    for c in COUNTRIES {
        let (code, name) = match c.code {
            "PT" => {
                stats.dirt("whitespace_case");
                ("pt".to_string(), c.name.to_string())
            }
            "BE" => {
                stats.dirt("whitespace_case");
                (c.code.to_string(), format!(" {} ", c.name))
            }
            "GB" => {
                stats.dirt("whitespace_case");
                (c.code.to_string(), c.name.to_uppercase())
            }
            _ => (c.code.to_string(), c.name.to_string()),
        };
        f.records.push(line(&[code, name, c.region.to_string()]));
    }
    f
}

fn products_file(stats: &mut Stats) -> CsvFile {
    let mut f = CsvFile::new(
        "products.csv",
        "product_id,product_name,category,unit_price",
    );
    for p in PRODUCTS {
        if p.name.contains(',') {
            stats.dirt("quoted_comma");
        }
        if p.name.contains('\n') {
            stats.dirt("quoted_newline");
        }
        if p.name.contains('"') {
            stats.dirt("escaped_quote");
        }
        let category = if p.id == "P006" {
            stats.dirt("whitespace_case");
            format!(" {} ", p.category.to_lowercase())
        } else {
            p.category.to_string()
        };
        f.records.push(line(&[
            p.id.to_string(),
            p.name.to_string(),
            category,
            money(p.price_cents),
        ]));
    }
    f
}

fn employees(rng: &mut StdRng, today: NaiveDate, stats: &mut Stats) -> (CsvFile, Vec<Employee>) {
    let mut f = CsvFile::new(
        "employees.csv",
        "employee_id,full_name,title,country,hire_date",
    );
    let mut list = Vec::new();
    let mut n = 0;
    for (ci, &count) in EMPLOYEES_PER_COUNTRY.iter().enumerate() {
        let c = &COUNTRIES[ci];
        for k in 0..count {
            n += 1;
            let id = format!("E{n:03}");
            let (first, last) = person_name(rng, c);
            let mut name = format!("{first} {last}");
            let mut title = if k == 0 && count > 1 {
                "Sales Manager".to_string()
            } else {
                pick(rng, TITLES).to_string()
            };
            let mut country = c.name.to_string();
            let hire = today - chrono::Duration::days(rng.random_range(120..3650));
            let fmt = pick_format(rng, EMPLOYEE_DATE_FORMATS, 0.7);
            stats.format(fmt);
            let mut id_out = id.clone();
            match n {
                3 => {
                    stats.dirt("whitespace_case");
                    title = title.to_lowercase();
                }
                8 => {
                    stats.dirt("whitespace_case");
                    name = format!("  {first}  {last} ");
                }
                13 => {
                    stats.dirt("whitespace_case");
                    id_out = id.to_lowercase();
                    country = country.to_uppercase();
                }
                _ => {}
            }
            f.records.push(line(&[
                id_out,
                name,
                title,
                country,
                hire.format(fmt).to_string(),
            ]));
            list.push(Employee { id, country: ci });
        }
    }
    (f, list)
}

/// Rows with one-off dirt (by position) and the customers who move country, at distinct
/// positions: a mover's first row stays free of one-off dirt.
fn customer_plan(rng: &mut StdRng, n: usize) -> (BTreeMap<usize, &'static str>, HashSet<usize>) {
    let mut special: BTreeMap<usize, &'static str> = BTreeMap::new();
    let mut movers = HashSet::new();
    if n < 50 {
        return (special, movers);
    }
    let plan: [(&str, usize); 5] = [
        ("quoted_newline", (n / 700).max(1)),
        ("wrong_field_count", (n / 700).max(1)),
        ("invalid_utf8", 1),
        ("empty_key", 1),
        ("move", (n / MOVER_EVERY).max(3)),
    ];
    for (kind, count) in plan {
        let mut placed = 0;
        while placed < count {
            let i = rng.random_range(0..n);
            if let std::collections::btree_map::Entry::Vacant(e) = special.entry(i) {
                e.insert(kind);
                placed += 1;
            }
        }
    }
    special.retain(|&i, kind| {
        if *kind == "move" {
            movers.insert(i);
        }
        *kind != "move"
    });
    (special, movers)
}

/// Puts a customer row's dirt into `v` (one-off `kind`, else random); returns the raw bytes
/// when the row is no longer what `line` would write.
fn customer_dirt(
    rng: &mut StdRng,
    v: &mut [String],
    kind: Option<&str>,
    (first, last, c): (&str, &str, &Country),
    stats: &mut Stats,
) -> Option<Vec<u8>> {
    match kind {
        Some("quoted_newline") => {
            stats.dirt("quoted_newline");
            v[1] = format!("{first}\n{last}");
        }
        Some("wrong_field_count") => {
            // "Last, First" exported without quotes: one field too many.
            stats.dirt("wrong_field_count");
            v[1] = format!("{last}, {first}");
            return Some(v.join(",").into_bytes());
        }
        Some("invalid_utf8") => {
            // A Latin-1 export: "ü" as the single byte 0xFC.
            stats.dirt("invalid_utf8");
            if v[1].is_ascii() {
                v[1] = format!("{first} Müller");
                v[2] = format!("{}.mueller@{}", ascii_slug(first), pick(rng, c.domains));
            }
            let s = String::from_utf8(line(v)).expect("utf-8");
            return Some(
                s.chars()
                    .map(|c| {
                        if (c as u32) < 256 {
                            c as u32 as u8
                        } else {
                            b'?'
                        }
                    })
                    .collect(),
            );
        }
        Some("empty_key") => {
            stats.dirt("empty_key");
            v[0] = "  ".to_string();
        }
        _ => {
            let r: f64 = rng.random();
            if r < 0.014 {
                stats.dirt("null_field");
                let k = rng.random_range(1..v.len());
                v[k] = String::new();
            } else if r < 0.019 {
                stats.dirt("quoted_comma");
                v[1] = format!("{last}, {first}");
            }
            if rng.random_bool(0.06) {
                stats.dirt("whitespace_case");
                match rng.random_range(0..5) {
                    0 => v[0] = v[0].to_lowercase(),
                    1 => {
                        v[1] = if rng.random_bool(0.5) {
                            pad(rng, &v[1])
                        } else {
                            mangle_case(rng, &v[1])
                        }
                    }
                    2 => v[2] = mangle_case(rng, &v[2]),
                    3 => {
                        let m = mangle_case(rng, &v[3]);
                        v[3] = pad(rng, &m);
                    }
                    _ => v[4] = pad(rng, &v[4].to_lowercase()),
                }
            }
        }
    }
    None
}

/// A customer's move: another country that has customers, a city there and the day of the
/// move (in the last three quarters of the window, after the signup, at the latest
/// yesterday). Returns the second row (the same person, email and signup date) with it.
fn customer_move(
    rng: &mut StdRng,
    clean: &[String],
    from: usize,
    signup: NaiveDate,
    (window_start, days, today): (NaiveDate, u32, NaiveDate),
) -> (Vec<u8>, NaiveDate, usize) {
    let ccum = country_cum();
    let mut to = sample_cum(rng, &ccum);
    while to == from {
        to = sample_cum(rng, &ccum);
    }
    let c = &COUNTRIES[to];
    let lo = (window_start + chrono::Duration::days(days as i64 / 4))
        .max(signup + chrono::Duration::days(1));
    let hi = today - chrono::Duration::days(1);
    let day = if lo >= hi {
        hi
    } else {
        lo + chrono::Duration::days(rng.random_range(0..=(hi - lo).num_days()))
    };
    let row = line(&[
        clean[0].clone(),
        clean[1].clone(),
        clean[2].clone(),
        c.name.to_string(),
        pick(rng, c.cities).to_string(),
        signup.format("%Y-%m-%d").to_string(),
    ]);
    (row, day, to)
}

/// Customers: the clean list for the world, and the file with its dirt. The customers who
/// move country get a second row (same customer_id, another country and city) after every
/// first row, so the CSV source reads it later and silver sees an update.
fn customers(
    rng: &mut StdRng,
    p: &Params,
    today: NaiveDate,
    stats: &mut Stats,
) -> (CsvFile, Vec<Customer>, Vec<NaiveDate>) {
    let mut f = CsvFile::new("customers.csv", CUSTOMERS_HEADER);
    f.bom = true;
    let ccum = country_cum();
    let mut taken = HashSet::new();
    let window_start = today - chrono::Duration::days(p.days as i64);
    let n = p.customers;
    let (special, movers) = customer_plan(rng, n);
    let mut list = Vec::with_capacity(n);
    let mut signups = Vec::with_capacity(n);
    let mut rows: Vec<Placed> = Vec::with_capacity(n + n / 50);
    for i in 0..n {
        let ci = sample_cum(rng, &ccum);
        let c = &COUNTRIES[ci];
        let id = format!("C{:05}", i + 1);
        let (first, last) = person_name(rng, c);
        let email = email_for(rng, &first, &last, c, &mut taken);
        let city = pick(rng, c.cities).to_string();
        // Most customers signed up before the sales window, the others during it.
        let signup = if rng.random_bool(1.0 - SIGNUP_IN_WINDOW) {
            window_start - chrono::Duration::days(rng.random_range(1..730))
        } else {
            window_start + chrono::Duration::days(rng.random_range(0..p.days.max(1) as i64))
        };
        let fmt = pick_format(rng, CUSTOMER_DATE_FORMATS, 0.75);
        stats.format(fmt);
        let mut v = vec![
            id.clone(),
            format!("{first} {last}"),
            email,
            c.name.to_string(),
            city,
            signup.format(fmt).to_string(),
        ];
        let mut moved = None;
        if movers.contains(&i) {
            let (row, day, to) = customer_move(rng, &v, ci, signup, (window_start, p.days, today));
            rows.push((n as f64 + 100.0 + rows.len() as f64, row));
            moved = Some((day, to));
        }
        list.push(Customer {
            id: id.clone(),
            country: ci,
            moved,
        });
        signups.push(signup);
        let kind = special.get(&i).copied();
        let raw = customer_dirt(rng, &mut v, kind, (&first, &last, c), stats);
        let bytes = raw.unwrap_or_else(|| line(&v));
        if rng.random_bool(0.01) {
            stats.dirt("duplicate_row");
            rows.push((
                i as f64 + rng.random_range(1..40) as f64 + 0.5,
                bytes.clone(),
            ));
        }
        rows.push((i as f64, bytes));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    f.records = rows.into_iter().map(|r| r.1).collect();
    (f, list, signups)
}

/// Relative number of sales by weekday, Monday first: a busy Friday and Saturday, a quiet
/// Sunday (mean 1.01).
const WEEKLY: [f64; 7] = [0.92, 0.95, 1.0, 1.05, 1.2, 1.3, 0.65];

/// Anomalous days of the history: (days before `today`, factor on a normal day's volume,
/// what happened). The same for every seed, relative to the day the files are made:
/// today-9 a spike (x4), today-38 a drop (x0.2), today-94 a spike (x4) and today-211 a drop
/// (x0.2); those before the window (`--days`) are left out. A normal day's volume is the
/// day's season, events and trend with an average weekday and no noise, so the factor is
/// what the day shows against its neighbours.
const ANOMALIES: &[(i64, f64, &str)] = &[
    (9, 4.0, "flash sale"),
    (38, 0.2, "payment outage"),
    (94, 4.0, "viral campaign"),
    (211, 0.2, "site down"),
];

/// The factor of an anomalous day of the history made on `today`, if `d` is one.
fn anomaly_on(today: NaiveDate, d: NaiveDate) -> Option<f64> {
    let before = (today - d).num_days();
    ANOMALIES
        .iter()
        .find(|a| a.0 == before)
        .map(|&(_, factor, _)| factor)
}

/// Relative volume of a day without its weekday and noise: the yearly pattern (a seasonal
/// wave peaking mid-December and lowest mid-June, the Christmas season from late November,
/// January sales, the summer holidays' dip from mid-July to August) and a growth trend
/// (`idx` is the day's position in a window of `days` days).
fn base_weight(d: NaiveDate, idx: usize, days: usize) -> f64 {
    let season = 1.0 + 0.18 * (2.0 * PI * (d.ordinal() as f64 - 350.0) / 365.25).cos();
    let event = match (d.month(), d.day()) {
        (11, 24..) | (12, ..=23) => 1.35,
        (1, ..=10) => 1.15,
        (7, 15..) | (8, _) => 0.85,
        _ => 1.0,
    };
    let trend = 1.0 + 0.15 * idx as f64 / days.max(1) as f64;
    season * event * trend
}

/// Relative number of sales on a normal day: weekly pattern, yearly pattern, trend and noise
/// (`noise` in 0..1, 0.5 on average).
fn day_weight(d: NaiveDate, idx: usize, days: usize, noise: f64) -> f64 {
    WEEKLY[d.weekday().num_days_from_monday() as usize]
        * base_weight(d, idx, days)
        * (0.85 + 0.3 * noise)
}

/// Relative number of sales on a day of the history made on `today`: a normal day's, or
/// an anomaly's.
fn history_weight(today: NaiveDate, d: NaiveDate, idx: usize, days: usize, noise: f64) -> f64 {
    match anomaly_on(today, d) {
        Some(factor) => factor * WEEKLY.iter().sum::<f64>() / 7.0 * base_weight(d, idx, days),
        None => day_weight(d, idx, days, noise),
    }
}

/// Number of lines of an order: 1 to 5, mostly 1 or 2.
fn order_size(rng: &mut StdRng) -> usize {
    sample_cum(rng, &cumulative(ORDER_LINES.iter().copied())) + 1
}

/// What a sale row turns out to be. (An unknown customer is a matter of the whole order.)
#[derive(Clone, Copy, Debug, PartialEq)]
enum SaleKind {
    Clean,
    NullRequired,
    NegativeAmount,
    ZeroQuantity,
    UnparseableDate,
    WrongFieldCount,
    EmptyKey,
    MissingAmount,
}

fn draw_sale_kind(rng: &mut StdRng) -> SaleKind {
    let r: f64 = rng.random();
    match r {
        r if r < 0.030 => SaleKind::NullRequired,
        r if r < 0.035 => SaleKind::NegativeAmount,
        r if r < 0.037 => SaleKind::ZeroQuantity,
        r if r < 0.039 => SaleKind::UnparseableDate,
        r if r < 0.040 => SaleKind::WrongFieldCount,
        r if r < 0.0405 => SaleKind::EmptyKey,
        r if r < 0.0455 => SaleKind::MissingAmount,
        _ => SaleKind::Clean,
    }
}

/// What the lines of one order share.
struct OrderHead {
    id: String,
    date: NaiveDate,
    /// As written: the customer's id or, for the dirt, one that no customer has.
    customer_id: String,
    unknown_customer: bool,
    /// An employee of the country the customer lived in on the order's date.
    employee_id: String,
}

/// The head of an order of `customer` on `date`; one order in a hundred names an unknown
/// customer on all its lines.
fn order_head(
    rng: &mut StdRng,
    w: &World,
    id: String,
    date: NaiveDate,
    customer: &Customer,
) -> OrderHead {
    let employee_id = w.employee_for(rng, customer.country_on(date));
    let unknown_customer = rng.random_bool(0.01);
    let customer_id = if unknown_customer {
        format!("C{:05}", w.n_customers + 1000 + rng.random_range(0..9000))
    } else {
        customer.id.clone()
    };
    OrderHead {
        id,
        date,
        customer_id,
        unknown_customer,
        employee_id,
    }
}

/// The lines of an order, one a sale id, each of another product: records (with their
/// dirt) and whether each should appear twice.
fn order_records(
    rng: &mut StdRng,
    w: &World,
    head: &OrderHead,
    sale_ids: &[String],
    stats: &mut Stats,
) -> Vec<(Vec<u8>, bool)> {
    let mut used: Vec<usize> = Vec::with_capacity(sale_ids.len());
    let mut out = Vec::with_capacity(sale_ids.len());
    for id in sale_ids {
        let mut pi = sample_cum(rng, &w.product_cum);
        for _ in 0..100 {
            if !used.contains(&pi) {
                break;
            }
            pi = sample_cum(rng, &w.product_cum);
        }
        used.push(pi);
        out.push(sale_record(rng, head, id, &PRODUCTS[pi], stats));
    }
    out
}

/// One sale line as a CSV record (with its dirt), and whether it should appear twice.
fn sale_record(
    rng: &mut StdRng,
    head: &OrderHead,
    id: &str,
    product: &ProductDef,
    stats: &mut Stats,
) -> (Vec<u8>, bool) {
    let qty_weights: &[f64] = if product.price_cents > 50_000 {
        &[80.0, 15.0, 4.0, 1.0, 0.0]
    } else {
        &[45.0, 25.0, 15.0, 9.0, 6.0]
    };
    let quantity = sample_cum(rng, &cumulative(qty_weights.iter().copied())) as i64 + 1;
    let price = if rng.random_bool(0.15) {
        let pct = *pick(rng, &[5, 10, 15, 20]);
        stats.dirt("discounted_price");
        (product.price_cents * (100 - pct) + 50) / 100
    } else {
        product.price_cents
    };
    let fmt = pick_format(rng, SALES_DATE_FORMATS, 0.7);
    stats.format(fmt);
    let mut v = vec![String::new(); SALES_FIELDS];
    v[F_SALE] = id.to_string();
    v[F_ORDER] = head.id.clone();
    v[F_DATE] = head.date.format(fmt).to_string();
    v[F_CUSTOMER] = head.customer_id.clone();
    v[F_PRODUCT] = product.id.to_string();
    v[F_EMPLOYEE] = head.employee_id.clone();
    v[F_QTY] = quantity.to_string();
    v[F_PRICE] = money(price);
    v[F_AMOUNT] = money(quantity * price);
    if head.unknown_customer {
        stats.dirt("unknown_customer");
    }
    let mut raw = None;
    match draw_sale_kind(rng) {
        SaleKind::Clean => {}
        SaleKind::NullRequired => {
            stats.dirt("null_required");
            let k = *pick(
                rng,
                &[
                    F_DATE, F_DATE, F_DATE, F_CUSTOMER, F_CUSTOMER, F_CUSTOMER, F_PRODUCT,
                    F_PRODUCT, F_QTY, F_QTY,
                ],
            );
            v[k] = if rng.random_bool(0.8) {
                String::new()
            } else {
                "   ".to_string()
            };
        }
        SaleKind::NegativeAmount => {
            stats.dirt("negative_amount");
            v[F_AMOUNT] = money(-quantity * price);
        }
        SaleKind::ZeroQuantity => {
            stats.dirt("zero_quantity");
            v[F_QTY] = "0".to_string();
            v[F_AMOUNT] = money(0);
        }
        SaleKind::UnparseableDate => {
            // German dotted dates are not among the accepted formats.
            stats.dirt("unparseable_date");
            v[F_DATE] = head.date.format("%d.%m.%Y").to_string();
        }
        SaleKind::WrongFieldCount => {
            stats.dirt("wrong_field_count");
            raw = Some(wrong_field_count(rng, &mut v, quantity * price));
        }
        SaleKind::EmptyKey => {
            stats.dirt("empty_key");
            v[F_SALE] = String::new();
        }
        SaleKind::MissingAmount => {
            stats.dirt("missing_amount");
            v[F_AMOUNT] = String::new();
        }
    }
    if raw.is_none() && rng.random_bool(0.04) {
        stats.dirt("whitespace_case");
        match rng.random_range(0..6) {
            0 => v[F_SALE] = pad(rng, &v[F_SALE].to_lowercase()),
            1 => v[F_DATE] = pad(rng, &v[F_DATE]),
            2 => v[F_CUSTOMER] = pad(rng, &v[F_CUSTOMER].to_lowercase()),
            3 => v[F_PRODUCT] = v[F_PRODUCT].to_lowercase(),
            4 => v[F_EMPLOYEE] = pad(rng, &v[F_EMPLOYEE].to_lowercase()),
            _ => v[F_PRICE] = pad(rng, &v[F_PRICE]),
        }
    }
    let dup = rng.random_bool(0.01);
    if dup {
        stats.dirt("duplicate_row");
    }
    (raw.unwrap_or_else(|| line(&v)), dup)
}

/// A sales record with one field too many or too few.
fn wrong_field_count(rng: &mut StdRng, v: &mut [String], amount: i64) -> Vec<u8> {
    match rng.random_range(0..3) {
        // Thousands separator without quotes: one field too many.
        0 if amount >= 100_000 => {
            let s = money(amount);
            let (int, dec) = s.split_at(s.len() - 3);
            v[F_AMOUNT] = format!("{},{}{dec}", &int[..int.len() - 3], &int[int.len() - 3..]);
            v.join(",").into_bytes()
        }
        // A truncated row: no amount.
        0 | 1 => v[..F_AMOUNT].join(",").into_bytes(),
        // A stray trailing delimiter.
        _ => format!("{},", v.join(",")).into_bytes(),
    }
}

fn world(
    rng: &mut StdRng,
    p: &Params,
    today: NaiveDate,
    stats: &mut BTreeMap<&'static str, Stats>,
) -> (World, Vec<CsvFile>) {
    let countries = countries_file(stats.entry("countries").or_default());
    let products = products_file(stats.entry("products").or_default());
    let (emp_file, employees) = employees(rng, today, stats.entry("employees").or_default());
    let (cust_file, customers, signup) =
        customers(rng, p, today, stats.entry("customers").or_default());
    // Some customers buy much more than others.
    let customer_cum = cumulative((0..customers.len()).map(|_| {
        let u: f64 = rng.random_range(0.0001..1.0);
        -u.ln()
    }));
    let w = World {
        customers,
        customer_cum,
        signup,
        employees,
        product_cum: cumulative(PRODUCTS.iter().map(|p| p.weight as f64)),
        n_customers: p.customers,
    };
    (w, vec![countries, products, emp_file, cust_file])
}

/// The days of the history made on `today`: `days` days, ending yesterday.
fn history_window(today: NaiveDate, days: usize) -> Vec<NaiveDate> {
    let first = today - chrono::Duration::days(days as i64);
    (0..days)
        .map(|i| first + chrono::Duration::days(i as i64))
        .collect()
}

/// Generates every initial file. Pure: the same parameters and day give the same bytes.
///
/// `p.sales` lines (duplicates come on top) in orders of 1 to 5 lines; the lines of an
/// order share its order_id, date, customer and employee.
fn generate(p: &Params, today: NaiveDate) -> Generated {
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut stats: BTreeMap<&'static str, Stats> = BTreeMap::new();
    let (w, mut files) = world(&mut rng, p, today, &mut stats);
    let sales_stats = stats.entry("sales").or_default();

    let days = p.days.max(1) as usize;
    let window = history_window(today, days);
    let day_cum = cumulative(
        window
            .iter()
            .enumerate()
            .map(|(i, &d)| history_weight(today, d, i, days, rng.random())),
    );
    // Orders (date, lines) until the lines add up to the sales asked for.
    let mut orders: Vec<(NaiveDate, usize)> = Vec::new();
    let mut lines = 0;
    while lines < p.sales {
        let k = order_size(&mut rng).min(p.sales - lines);
        orders.push((window[sample_cum(&mut rng, &day_cum)], k));
        lines += k;
    }
    orders.sort_by_key(|o| o.0);

    let mut months: BTreeMap<(i32, u32), Vec<Placed>> = BTreeMap::new();
    let mut next_sale = 1;
    for (o, &(date, k)) in orders.iter().enumerate() {
        // A customer who had signed up by then, if one is found quickly.
        let mut ci = sample_cum(&mut rng, &w.customer_cum);
        for _ in 0..8 {
            if w.signup[ci] <= date {
                break;
            }
            ci = sample_cum(&mut rng, &w.customer_cum);
        }
        let head = order_head(
            &mut rng,
            &w,
            format!("O{:07}", o + 1),
            date,
            &w.customers[ci],
        );
        let ids: Vec<String> = (next_sale..next_sale + k)
            .map(|i| format!("S{i:07}"))
            .collect();
        next_sale += k;
        let rows = months.entry((date.year(), date.month())).or_default();
        for (rec, dup) in order_records(&mut rng, &w, &head, &ids, sales_stats) {
            let pos = rows.len() as f64;
            if dup {
                rows.push((pos + rng.random_range(1..60) as f64 + 0.5, rec.clone()));
            }
            rows.push((pos, rec));
        }
    }
    for ((y, m), mut rows) in months {
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut f = CsvFile::new(format!("sales_{y:04}-{m:02}.csv"), SALES_HEADER);
        f.records = rows.into_iter().map(|r| r.1).collect();
        files.push(f);
    }
    Generated { files, stats }
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Writes `bytes` to `dir/.tmp-<name>` (matches no pattern) and renames it to `dir/<name>`.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".tmp-{name}"));
    let dst = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, &dst)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dst.display()))?;
    Ok(())
}

#[derive(Serialize)]
struct FileSummary {
    file: String,
    rows: usize,
    bytes: usize,
    written: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    out: String,
    seed: u64,
    today: String,
    /// "written", "partly written" or "skipped (already present)".
    initial: &'static str,
    files: Vec<FileSummary>,
    rows: BTreeMap<&'static str, usize>,
    dirt: BTreeMap<&'static str, &'a BTreeMap<String, u64>>,
    date_formats: BTreeMap<&'static str, &'a BTreeMap<String, u64>>,
    follow: bool,
}

fn entity_of(file: &str) -> &'static str {
    ["customers", "products", "countries", "employees", "sales"]
        .into_iter()
        .find(|e| file.starts_with(e))
        .unwrap_or("other")
}

fn write_initial<'a>(
    out: &Path,
    cli: &Cli,
    today: NaiveDate,
    g: &'a Generated,
) -> Result<Summary<'a>> {
    let manifest = out.join(MANIFEST);
    let done_before = manifest.exists();
    let mut files = Vec::new();
    let mut written = 0;
    for f in &g.files {
        let bytes = f.bytes();
        let exists = out.join(&f.name).exists();
        let write = !done_before && !exists;
        if write {
            write_atomic(out, &f.name, &bytes)?;
            written += 1;
        }
        files.push(FileSummary {
            file: f.name.clone(),
            rows: f.records.len(),
            bytes: bytes.len(),
            written: write,
        });
    }
    let mut rows = BTreeMap::new();
    for f in &files {
        *rows.entry(entity_of(&f.file)).or_default() += f.rows;
    }
    let initial = if written == g.files.len() {
        "written"
    } else if written > 0 {
        "partly written"
    } else {
        "skipped (already present)"
    };
    let summary = Summary {
        out: out.display().to_string(),
        seed: cli.seed,
        today: today.to_string(),
        initial,
        files,
        rows,
        dirt: g.stats.iter().map(|(k, s)| (*k, &s.dirt)).collect(),
        date_formats: g
            .stats
            .iter()
            .filter(|(_, s)| !s.date_formats.is_empty())
            .map(|(k, s)| (*k, &s.date_formats))
            .collect(),
        follow: cli.follow,
    };
    if !done_before {
        let m = serde_json::json!({ "seed": cli.seed, "today": today.to_string(), "customers": cli.customers, "sales": cli.sales, "days": cli.days });
        write_atomic(out, MANIFEST, m.to_string().as_bytes())?;
    }
    Ok(summary)
}

// ---------------------------------------------------------------------------------------
// Follow mode
// ---------------------------------------------------------------------------------------

/// Whether the file's first line is `header` (a BOM and a CR aside).
fn has_header(path: &Path, header: &str) -> Result<bool> {
    let mut head = Vec::with_capacity(header.len() + 8);
    std::fs::File::open(path)?
        .take(header.len() as u64 + 8)
        .read_to_end(&mut head)?;
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(first.strip_suffix(b"\r").unwrap_or(first) == header.as_bytes() && first.len() < head.len())
}

/// Creates `path` with its header if missing or empty; if a previous run died mid-line,
/// ends that line. A file with another header (made by an older version, before the sales
/// had an order_id) is renamed to `<stem>_until_<timestamp>.csv`, which keeps it read (the
/// agent follows renames), and a new one is started.
fn prepare_live_file(dir: &Path, name: &str, header: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if len == 0 {
        write_atomic(dir, name, format!("{header}\n").as_bytes())?;
        return Ok(path);
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(&path)?;
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] != b'\n' {
        warn!(file = %path.display(), "file does not end with a newline (interrupted write?); ending the line");
        f.write_all(b"\n")?;
    }
    drop(f);
    if !has_header(&path, header)? {
        let stem = name.strip_suffix(".csv").unwrap_or(name);
        let old = format!(
            "{stem}_until_{}.csv",
            chrono::Local::now().format("%Y%m%d%H%M%S")
        );
        warn!(file = %path.display(), renamed_to = %old, "live file has another header; starting a new one");
        std::fs::rename(&path, dir.join(&old))?;
        write_atomic(dir, name, format!("{header}\n").as_bytes())?;
    }
    Ok(path)
}

/// A date in any of the accepted sales formats.
fn parse_sale_date(s: &str) -> Option<NaiveDate> {
    SALES_DATE_FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s.trim(), f).ok())
}

/// Distinct ids (field `id_field`) of the records of a live file dated `day` (field
/// `date_field`): what an earlier run already wrote today. 0 when the file is missing.
fn written_on(path: &Path, id_field: usize, date_field: usize, day: NaiveDate) -> usize {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut ids = HashSet::new();
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let (Some(id), Some(d)) = (f.get(id_field), f.get(date_field)) else {
            continue;
        };
        let id = id.trim().to_uppercase();
        if !id.is_empty() && parse_sale_date(d) == Some(day) {
            ids.insert(id);
        }
    }
    ids.len()
}

/// Share of a day's sales made in each hour (local time): quiet nights, a morning ramp, a
/// lunch bump and an evening peak.
const HOURLY: [f64; 24] = [
    0.35, 0.2, 0.12, 0.08, 0.08, 0.12, 0.25, 0.5, 0.8, 1.0, 1.1, 1.2, 1.35, 1.3, 1.15, 1.1, 1.15,
    1.25, 1.4, 1.55, 1.6, 1.4, 1.0, 0.6,
];

/// Share of a day's sales made by `secs` seconds after midnight (0 to 1, linear within an hour).
fn share_of_day_by(secs: f64) -> f64 {
    let total: f64 = HOURLY.iter().sum();
    let secs = secs.clamp(0.0, 86_400.0);
    let h = ((secs / 3600.0) as usize).min(23);
    let done: f64 = HOURLY[..h].iter().sum();
    ((done + HOURLY[h] * (secs / 3600.0 - h as f64)) / total).min(1.0)
}

/// The volume of a normal day, continuing the history made on `today`: the same lines per
/// unit of `day_weight` as the history had, so a live day looks like the days before it.
#[derive(Clone, Debug)]
struct Volume {
    today: NaiveDate,
    days: usize,
    lines_per_weight: f64,
    customers_per_day: f64,
}

impl Volume {
    fn new(p: &Params, today: NaiveDate) -> Self {
        let days = p.days.max(1) as usize;
        let total: f64 = history_window(today, days)
            .iter()
            .enumerate()
            .map(|(i, &d)| history_weight(today, d, i, days, 0.5))
            .sum();
        Volume {
            today,
            days,
            lines_per_weight: p.sales as f64 / total,
            customers_per_day: SIGNUP_IN_WINDOW * p.customers as f64 / days as f64,
        }
    }

    /// Expected sale lines (duplicates aside) on `day`, today or later.
    fn lines_on(&self, day: NaiveDate) -> f64 {
        let idx = self.days as i64 + (day - self.today).num_days().max(0);
        self.lines_per_weight * day_weight(day, idx as usize, self.days, 0.5)
    }
}

/// What a live append should write.
#[derive(Debug, Default)]
struct Due {
    /// Number of lines of each order.
    orders: Vec<usize>,
    customers: usize,
}

/// Paces the live appends: by a moment of a day, the lines dated that day add up to the
/// day's expected volume times the share of a day's sales made by then (`HOURLY`), and so
/// do the new customers. Whatever the append interval, a day ends near a normal day's
/// volume; a first append late in the day catches up on the hours before (less what an
/// earlier run wrote that day).
struct Pacer {
    volume: Volume,
    day: NaiveDate,
    lines: usize,
    customers: usize,
    /// Lines of the next order, drawn ahead.
    next: usize,
}

impl Pacer {
    fn new(
        rng: &mut StdRng,
        volume: Volume,
        day: NaiveDate,
        lines: usize,
        customers: usize,
    ) -> Self {
        Pacer {
            volume,
            day,
            lines,
            customers,
            next: order_size(rng),
        }
    }

    /// What is due at `secs` seconds after midnight of `day`.
    fn due(&mut self, rng: &mut StdRng, day: NaiveDate, secs: f64) -> Due {
        if day != self.day {
            (self.day, self.lines, self.customers) = (day, 0, 0);
        }
        let share = share_of_day_by(secs);
        let lines = self.volume.lines_on(day) * share;
        let customers = self.volume.customers_per_day * share;
        let mut due = Due::default();
        // An order is written once more than half of it is due.
        while (self.lines as f64) + self.next as f64 / 2.0 <= lines {
            due.orders.push(self.next);
            self.lines += self.next;
            self.next = order_size(rng);
        }
        while self.customers as f64 + 0.5 <= customers {
            due.customers += 1;
            self.customers += 1;
        }
        due
    }
}

struct Live {
    world: World,
    rng: StdRng,
    pacer: Pacer,
    /// New customers waiting for their first order.
    pending: Vec<Customer>,
    taken: HashSet<String>,
    stats: Stats,
}

impl Live {
    fn new_customer(&mut self, dir: &Path, today: NaiveDate, id: String) -> Result<Customer> {
        let path = prepare_live_file(dir, "customers_live.csv", CUSTOMERS_HEADER)?;
        let rng = &mut self.rng;
        let ci = sample_cum(rng, &country_cum());
        let c = &COUNTRIES[ci];
        let (first, last) = person_name(rng, c);
        let email = email_for(rng, &first, &last, c, &mut self.taken);
        let rec = line(&[
            id.clone(),
            format!("{first} {last}"),
            email,
            c.name.to_string(),
            pick(rng, c.cities).to_string(),
            today.format("%Y-%m-%d").to_string(),
        ]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
        f.write_all(&[rec.as_slice(), b"\n"].concat())?;
        info!(file = %path.display(), customer_id = %id, name = %format!("{first} {last}"), country = c.name, "appended a new customer");
        Ok(Customer {
            id,
            country: ci,
            moved: None,
        })
    }

    /// The records of live orders of the given sizes, dated `today`; a new customer places
    /// the first order after signing up.
    fn records(&mut self, today: NaiveDate, millis: i64, sizes: &[usize]) -> Vec<Vec<u8>> {
        let mut recs = Vec::new();
        let mut k = 0;
        for (j, &n) in sizes.iter().enumerate() {
            let cust = match self.pending.pop() {
                Some(c) => c,
                None => self.world.customers[sample_cum(&mut self.rng, &self.world.customer_cum)]
                    .clone(),
            };
            let id = format!("LO-{millis}-{j}");
            let head = order_head(&mut self.rng, &self.world, id, today, &cust);
            let ids: Vec<String> = (k..k + n).map(|i| format!("L-{millis}-{i}")).collect();
            k += n;
            for (rec, dup) in
                order_records(&mut self.rng, &self.world, &head, &ids, &mut self.stats)
            {
                if dup {
                    recs.push(rec.clone());
                }
                recs.push(rec);
            }
        }
        recs
    }

    async fn batch(&mut self, dir: &Path) -> Result<()> {
        let now = chrono::Local::now();
        let today = now.date_naive();
        let millis = now.timestamp_millis();
        let secs = chrono::Timelike::num_seconds_from_midnight(&now) as f64;
        let due = self.pacer.due(&mut self.rng, today, secs);
        for j in 0..due.customers {
            let c = self.new_customer(dir, today, format!("CL-{millis}-{j}"))?;
            self.pending.push(c);
        }
        if due.orders.is_empty() {
            return Ok(());
        }
        let path = prepare_live_file(dir, "sales_live.csv", SALES_HEADER)?;
        let recs = self.records(today, millis, &due.orders);
        let mut bytes: Vec<u8> = Vec::new();
        for r in &recs {
            bytes.extend_from_slice(r);
            bytes.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
        // Now and then the last line arrives in two writes, a moment apart.
        let split = self.rng.random_bool(0.25);
        if split {
            let last_len = recs.last().map_or(0, |r| r.len()) + 1;
            let head = bytes.len() - last_len + self.rng.random_range(1..last_len);
            f.write_all(&bytes[..head])?;
            f.flush()?;
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(200..900))).await;
            f.write_all(&bytes[head..])?;
        } else {
            f.write_all(&bytes)?;
        }
        info!(file = %path.display(), orders = due.orders.len(), rows = recs.len(), first_id = %format!("L-{millis}-0"),
            lines_today = self.pacer.lines, expected_today = format!("{:.0}", self.pacer.volume.lines_on(today)),
            split_write = split, "appended live sales");
        Ok(())
    }
}

async fn follow(dir: &Path, cli: &Cli, world: World, volume: Volume) -> Result<()> {
    let sales = prepare_live_file(dir, "sales_live.csv", SALES_HEADER)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    };
    tokio::pin!(shutdown);
    let now = chrono::Local::now();
    let today = now.date_naive();
    let start = now.timestamp_millis() as u64;
    let mut rng = StdRng::seed_from_u64(cli.seed ^ start.rotate_left(17));
    // Sales and customers an earlier run already wrote today count towards today's volume.
    let lines = written_on(&sales, F_SALE, F_DATE, today);
    let customers = written_on(&dir.join("customers_live.csv"), 0, 5, today);
    info!(dir = %dir.display(), interval_ms = cli.interval_ms, expected_today = format!("{:.0}", volume.lines_on(today)),
        already_today = lines, "following: appending live sales at a normal day's pace");
    let pacer = Pacer::new(&mut rng, volume, today, lines, customers);
    let mut live = Live {
        world,
        rng,
        pacer,
        pending: Vec::new(),
        taken: HashSet::new(),
        stats: Stats::default(),
    };
    loop {
        // A batch is not interrupted halfway: it ends its last line before the next signal check.
        if let Err(e) = live.batch(dir).await {
            warn!(error = %format!("{e:#}"), "live append failed; retrying at the next tick");
        }
        tokio::select! {
            sig = &mut shutdown => {
                info!(signal = sig, dirt = ?live.stats.dirt, "stopping");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(cli.interval_ms)) => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ETL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    if cli.days == 0 {
        bail!("--days must be at least 1");
    }
    if cli.customers == 0 {
        bail!("--customers must be at least 1");
    }
    std::fs::create_dir_all(&cli.out)
        .with_context(|| format!("cannot create {}", cli.out.display()))?;
    let today = chrono::Local::now().date_naive();
    let params = Params {
        seed: cli.seed,
        customers: cli.customers,
        sales: cli.sales,
        days: cli.days,
    };
    let generated = generate(&params, today);
    let summary = write_initial(&cli.out, &cli, today, &generated)?;
    info!(dir = %cli.out.display(), initial = summary.initial, files = summary.files.len(), "initial files");
    println!("{}", serde_json::to_string(&summary)?);
    std::io::stdout().flush().ok();
    if cli.follow {
        // Rebuild the world (customers, employees, weights) the files were made from.
        let mut rng = StdRng::seed_from_u64(cli.seed);
        let mut scratch = BTreeMap::new();
        let (w, _) = world(&mut rng, &params, today, &mut scratch);
        follow(&cli.out, &cli, w, Volume::new(&params, today)).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
    }

    fn params(seed: u64) -> Params {
        Params {
            seed,
            customers: 1500,
            sales: 25_000,
            days: 365,
        }
    }

    /// Minimal RFC 4180 reader: records as lists of fields (terminators CRLF or LF).
    fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut recs = Vec::new();
        let (mut rec, mut fld, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, text.chars().peekable());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    fld.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => fld.push(c),
                (false, '"') => quoted = true,
                (false, ',') => rec.push(std::mem::take(&mut fld)),
                (false, '\r') => {}
                (false, '\n') => {
                    rec.push(std::mem::take(&mut fld));
                    recs.push(std::mem::take(&mut rec));
                }
                (false, c) => fld.push(c),
            }
        }
        assert!(
            fld.is_empty() && rec.is_empty(),
            "file ends with its terminator"
        );
        recs
    }

    fn cents(s: &str) -> Option<i64> {
        let t = s.trim();
        let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
        let (i, d) = t.split_once('.')?;
        if d.len() != 2 {
            return None;
        }
        let v = i.parse::<i64>().ok()? * 100 + d.parse::<i64>().ok()?;
        Some(if neg { -v } else { v })
    }

    fn parse_date(s: &str) -> Option<NaiveDate> {
        parse_sale_date(s)
    }

    fn sales_records(g: &Generated) -> Vec<Vec<String>> {
        g.files
            .iter()
            .filter(|f| f.name.starts_with("sales_"))
            .flat_map(|f| {
                let recs = parse_csv(&f.bytes());
                assert_eq!(recs[0].join(","), SALES_HEADER);
                recs.into_iter().skip(1)
            })
            .collect()
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(&params(7), today());
        let b = generate(&params(7), today());
        let c = generate(&params(8), today());
        let bytes = |g: &Generated| {
            g.files
                .iter()
                .map(|f| (f.name.clone(), f.bytes()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bytes(&a), bytes(&b));
        assert_eq!(a.stats, b.stats);
        assert_ne!(bytes(&a), bytes(&c));
    }

    #[test]
    fn sales_count_and_monthly_files() {
        let g = generate(&params(42), today());
        let s = &g.stats["sales"];
        let dups = s.dirt["duplicate_row"] as usize;
        let recs = sales_records(&g);
        assert_eq!(recs.len(), 25_000 + dups);
        let ids: HashSet<&str> = recs
            .iter()
            .map(|r| r[F_SALE].trim())
            .filter(|s| !s.is_empty())
            .collect();
        let empty = s.dirt["empty_key"] as usize;
        assert!(
            ids.len() >= 25_000 - empty - 10,
            "distinct sale ids: {}",
            ids.len()
        );
        let months: Vec<&str> = g
            .files
            .iter()
            .filter(|f| f.name.starts_with("sales_"))
            .map(|f| f.name.as_str())
            .collect();
        assert!(months.len() == 12 || months.len() == 13, "{months:?}");
        assert!(months
            .iter()
            .all(|m| m.len() == "sales_2025-01.csv".len() && m.ends_with(".csv")));
        // Every dated row lies in the window, up to yesterday, and in its month's file.
        for f in g.files.iter().filter(|f| f.name.starts_with("sales_")) {
            for r in parse_csv(&f.bytes())
                .iter()
                .skip(1)
                .filter(|r| r.len() == SALES_FIELDS)
            {
                if let Some(d) = parse_date(&r[F_DATE]) {
                    assert!(d < today() && d >= today() - chrono::Duration::days(365));
                    assert_eq!(f.name, format!("sales_{}.csv", d.format("%Y-%m")));
                }
            }
        }
        assert_eq!(
            g.files
                .iter()
                .find(|f| f.name == "customers.csv")
                .unwrap()
                .records
                .len(),
            1500 + g.stats["customers"].dirt["duplicate_row"] as usize + movers(&g).len()
        );
    }

    #[test]
    fn clean_amounts_are_quantity_times_price() {
        let g = generate(&params(42), today());
        let mut checked = 0;
        for r in sales_records(&g).iter().filter(|r| r.len() == SALES_FIELDS) {
            let (Ok(q), Some(p), Some(a)) = (
                r[F_QTY].trim().parse::<i64>(),
                cents(&r[F_PRICE]),
                cents(&r[F_AMOUNT]),
            ) else {
                continue;
            };
            if q <= 0 || a < 0 || parse_date(&r[F_DATE]).is_none() || r[F_PRODUCT].trim().is_empty()
            {
                continue;
            }
            assert!((1..=5).contains(&q));
            assert_eq!(a, q * p, "row {r:?}");
            let list = PRODUCTS
                .iter()
                .find(|x| x.id == r[F_PRODUCT].trim().to_uppercase())
                .expect("known product")
                .price_cents;
            assert!(
                p <= list && p >= list * 80 / 100,
                "price {p} for list {list}"
            );
            checked += 1;
        }
        assert!(checked > 22_000, "checked {checked}");
    }

    #[test]
    fn every_dirt_kind_appears_at_its_rate() {
        let g = generate(&params(42), today());
        let s = &g.stats["sales"].dirt;
        let rate = |k: &str| s.get(k).copied().unwrap_or(0) as f64 / 25_000.0;
        assert!((0.02..=0.04).contains(&rate("null_required")), "{s:?}");
        assert!((0.005..=0.015).contains(&rate("duplicate_row")), "{s:?}");
        assert!((0.003..=0.008).contains(&rate("negative_amount")), "{s:?}");
        assert!((0.006..=0.015).contains(&rate("unknown_customer")), "{s:?}");
        assert!(
            (0.0004..=0.002).contains(&rate("wrong_field_count")),
            "{s:?}"
        );
        for k in [
            "whitespace_case",
            "zero_quantity",
            "unparseable_date",
            "empty_key",
            "missing_amount",
            "discounted_price",
        ] {
            assert!(rate(k) > 0.0, "{k}: {s:?}");
        }
        let f = &g.stats["sales"].date_formats;
        assert!(
            SALES_DATE_FORMATS
                .iter()
                .all(|x| f.get(*x).copied().unwrap_or(0) > 100),
            "{f:?}"
        );
        let c = &g.stats["customers"].dirt;
        for k in [
            "null_field",
            "duplicate_row",
            "whitespace_case",
            "quoted_comma",
            "quoted_newline",
            "wrong_field_count",
            "invalid_utf8",
            "empty_key",
        ] {
            assert!(c.get(k).copied().unwrap_or(0) > 0, "customers {k}: {c:?}");
        }
        let p = &g.stats["products"].dirt;
        assert_eq!((p["quoted_comma"], p["quoted_newline"]), (1, 1));

        // The dirt is really in the bytes.
        let file = |n: &str| g.files.iter().find(|f| f.name == n).unwrap().bytes();
        assert!(file("customers.csv").starts_with(b"\xEF\xBB\xBF"));
        assert!(std::str::from_utf8(&file("customers.csv")).is_err());
        assert!(
            file("countries.csv")
                .windows(2)
                .filter(|w| w == b"\r\n")
                .count()
                == COUNTRIES.len() + 1
        );
        let products = parse_csv(&file("products.csv"));
        assert!(products.iter().all(|r| r.len() == 4));
        assert!(
            products.iter().any(|r| r[1].contains('\n'))
                && products.iter().any(|r| r[1].contains(','))
        );
        let recs = sales_records(&g);
        let broken = recs.iter().filter(|r| r.len() != SALES_FIELDS).count() as u64;
        assert_eq!(broken, s["wrong_field_count"] + dup_of_broken(&g));
        assert!(recs
            .iter()
            .any(|r| r.len() == SALES_FIELDS && r[F_AMOUNT].starts_with('-')));
    }

    /// Broken rows that were also duplicated (counted once as broken).
    fn dup_of_broken(g: &Generated) -> u64 {
        let mut seen = HashSet::new();
        let mut n = 0;
        for f in g.files.iter().filter(|f| f.name.starts_with("sales_")) {
            for r in &f.records {
                if r.iter().filter(|&&b| b == b',').count() != SALES_FIELDS - 1
                    && !seen.insert(r.clone())
                {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn only_known_formats_and_weekly_pattern() {
        let g = generate(&params(1), today());
        let mut per_weekday = [0u32; 7];
        for r in sales_records(&g).iter().filter(|r| r.len() == SALES_FIELDS) {
            if let Some(d) = parse_date(&r[F_DATE]) {
                per_weekday[d.weekday().num_days_from_monday() as usize] += 1;
            }
        }
        // Saturdays busier than Sundays.
        assert!(
            per_weekday[5] as f64 > 1.5 * per_weekday[6] as f64,
            "{per_weekday:?}"
        );
    }

    #[test]
    fn writes_atomically_and_skips_existing() {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli::parse_from([
            "demo-data",
            "--out",
            dir.path().to_str().unwrap(),
            "--customers",
            "200",
            "--sales",
            "2000",
            "--days",
            "60",
        ]);
        let p = Params {
            seed: cli.seed,
            customers: 200,
            sales: 2000,
            days: 60,
        };
        let g = generate(&p, today());
        let s = write_initial(dir.path(), &cli, today(), &g).unwrap();
        assert_eq!(s.initial, "written");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with(".tmp-")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("sales_")));
        let s2 = write_initial(dir.path(), &cli, today(), &g).unwrap();
        assert_eq!(s2.initial, "skipped (already present)");
        assert!(s2.files.iter().all(|f| !f.written));
        // Live files get a header and are mended after an interrupted line.
        let p = prepare_live_file(dir.path(), "sales_live.csv", SALES_HEADER).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"L-1-0,2025-")
            .unwrap();
        prepare_live_file(dir.path(), "sales_live.csv", SALES_HEADER).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{SALES_HEADER}\nL-1-0,2025-\n")
        );
    }

    #[test]
    fn cli_accepts_config() {
        let cli = Cli::parse_from([
            "demo-data",
            "--config",
            "config/etl.toml",
            "--out",
            "x",
            "--follow",
        ]);
        assert!(cli.follow && cli.seed == 42 && cli.sales == 25_000 && cli.interval_ms == 3000);
    }

    /// The world main rebuilds for the live mode, as the files were made from.
    fn world_of(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        world(&mut rng, &params(seed), today(), &mut BTreeMap::new()).0
    }

    /// Rows of customers.csv with the right field count by normalised customer id, in file
    /// order: (country, city), normalised.
    fn customer_rows(g: &Generated) -> BTreeMap<String, Vec<(String, String)>> {
        let f = g.files.iter().find(|f| f.name == "customers.csv").unwrap();
        let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for r in parse_csv(&f.bytes())
            .into_iter()
            .skip(1)
            .filter(|r| r.len() == 6)
        {
            out.entry(r[0].trim().to_uppercase())
                .or_default()
                .push((r[3].trim().to_lowercase(), r[4].trim().to_lowercase()));
        }
        out
    }

    /// Customers with rows in more than one country.
    fn movers(g: &Generated) -> Vec<String> {
        customer_rows(g)
            .into_iter()
            .filter(|(_, rows)| rows.iter().map(|r| &r.0).collect::<HashSet<_>>().len() > 1)
            .map(|(id, _)| id)
            .collect()
    }

    /// Distinct sale ids per parseable date.
    fn lines_per_day(g: &Generated) -> BTreeMap<NaiveDate, HashSet<String>> {
        let mut out: BTreeMap<NaiveDate, HashSet<String>> = BTreeMap::new();
        for r in sales_records(g).iter().filter(|r| r.len() == SALES_FIELDS) {
            let id = r[F_SALE].trim().to_uppercase();
            if let (Some(d), false) = (parse_date(&r[F_DATE]), id.is_empty()) {
                out.entry(d).or_default().insert(id);
            }
        }
        out
    }

    #[test]
    fn lines_of_an_order_share_date_customer_and_employee() {
        let g = generate(&params(42), today());
        let w = world_of(42);
        let employee_country: BTreeMap<&str, usize> = w
            .employees
            .iter()
            .map(|e| (e.id.as_str(), e.country))
            .collect();
        let customers: BTreeMap<&str, &Customer> =
            w.customers.iter().map(|c| (c.id.as_str(), c)).collect();
        let recs = sales_records(&g);
        let mut orders: BTreeMap<String, Vec<&Vec<String>>> = BTreeMap::new();
        for r in recs.iter().filter(|r| r.len() == SALES_FIELDS) {
            orders.entry(r[F_ORDER].clone()).or_default().push(r);
        }
        assert!(orders.keys().all(|k| k.starts_with('O') && k.len() == 8));
        let norm = |s: &str| s.trim().to_uppercase();
        let (mut sizes, mut checked, mut after_move) = ([0usize; 6], 0, 0);
        for lines in orders.values() {
            let set = |k: usize| -> HashSet<String> {
                lines
                    .iter()
                    .map(|r| norm(&r[k]))
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let dates: HashSet<NaiveDate> = lines
                .iter()
                .filter_map(|r| parse_date(&r[F_DATE]))
                .collect();
            let (customer, employee) = (set(F_CUSTOMER), set(F_EMPLOYEE));
            assert!(dates.len() <= 1 && customer.len() <= 1, "{lines:?}");
            assert_eq!(employee.len(), 1, "{lines:?}");
            // Each line its own sale id and product (duplicates are the same line twice).
            let sale_ids = set(F_SALE);
            let pairs: HashSet<(String, String)> = lines
                .iter()
                .map(|r| (norm(&r[F_SALE]), norm(&r[F_PRODUCT])))
                .filter(|(s, p)| !s.is_empty() && !p.is_empty())
                .collect();
            let products: HashSet<&String> = pairs.iter().map(|p| &p.1).collect();
            assert_eq!(products.len(), pairs.len(), "{lines:?}");
            assert!(sale_ids.len() <= 5, "{lines:?}");
            sizes[sale_ids.len()] += 1;
            // The sales person works in the country the customer lived in that day.
            let (Some(&d), Some(c)) = (
                dates.iter().next(),
                customer
                    .iter()
                    .next()
                    .and_then(|c| customers.get(c.as_str())),
            ) else {
                continue;
            };
            let e = employee.iter().next().unwrap();
            assert_eq!(employee_country[e.as_str()], c.country_on(d), "{lines:?}");
            checked += 1;
            if c.moved.is_some_and(|(from, _)| d >= from) {
                after_move += 1;
            }
        }
        let total: usize = sizes.iter().sum();
        assert!(
            (25_000 / 3..25_000 * 2 / 3).contains(&orders.len()),
            "{}",
            orders.len()
        );
        assert!(sizes[1] + sizes[2] > total * 7 / 10, "{sizes:?}");
        assert!(sizes[3] + sizes[4] + sizes[5] > total / 10, "{sizes:?}");
        assert!(sizes[5] > 0, "{sizes:?}");
        assert!(checked > total * 9 / 10, "checked {checked} of {total}");
        assert!(after_move > 0, "no order by a customer after a move");
    }

    #[test]
    fn anomalous_days_stand_out_from_their_neighbours() {
        let g = generate(&params(42), today());
        let per_day = lines_per_day(&g);
        let count = |d: NaiveDate| per_day.get(&d).map_or(0, |s| s.len()) as f64;
        for &(before, factor, what) in ANOMALIES {
            let d = today() - chrono::Duration::days(before);
            let neighbours: f64 = (1..=3)
                .flat_map(|k| [d - chrono::Duration::days(k), d + chrono::Duration::days(k)])
                .map(count)
                .sum::<f64>()
                / 6.0;
            let ratio = count(d) / neighbours;
            if factor > 1.0 {
                assert!(ratio > 2.5, "{what} on {d}: {ratio:.2}");
            } else {
                assert!(ratio < 0.4, "{what} on {d}: {ratio:.2}");
            }
        }
        // A short history keeps only the anomalies inside it.
        let mut p = params(42);
        p.days = 30;
        p.sales = 2000;
        let days = 30;
        let anomalous = history_window(today(), days)
            .iter()
            .filter(|&&d| anomaly_on(today(), d).is_some())
            .count();
        assert_eq!(anomalous, 1);
        assert!(sales_records(&generate(&p, today())).len() >= 2000);
    }

    #[test]
    fn yearly_pattern_december_peak_and_summer_dip() {
        let g = generate(&params(42), today());
        let per_day = lines_per_day(&g);
        let per_month = |y: i32, m: u32| {
            let days: Vec<usize> = per_day
                .iter()
                .filter(|(d, _)| d.year() == y && d.month() == m)
                .map(|(_, s)| s.len())
                .collect();
            days.iter().sum::<usize>() as f64 / days.len() as f64
        };
        let (dec, jul, aug, apr) = (
            per_month(2024, 12),
            per_month(2024, 7),
            per_month(2024, 8),
            per_month(2025, 4),
        );
        assert!(dec > 1.5 * jul && dec > 1.5 * aug, "{dec} {jul} {aug}");
        assert!(apr > aug, "{apr} {aug}");
    }

    #[test]
    fn customers_move_country_in_a_later_row() {
        let g = generate(&params(42), today());
        let w = world_of(42);
        let rows = customer_rows(&g);
        let moved: Vec<&Customer> = w.customers.iter().filter(|c| c.moved.is_some()).collect();
        assert_eq!(moved.len(), 1500 / MOVER_EVERY);
        let mut ids: Vec<String> = moved.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        assert_eq!(movers(&g), ids);
        for c in &moved {
            let (day, to) = c.moved.unwrap();
            assert_ne!(to, c.country);
            assert!(day < today() && day >= today() - chrono::Duration::days(365));
            let r = &rows[&c.id];
            let (country, city) = r.last().unwrap();
            assert_eq!(*country, COUNTRIES[to].name.to_lowercase());
            assert!(COUNTRIES[to]
                .cities
                .iter()
                .any(|x| x.to_lowercase() == *city));
        }
        // The moves are the last rows of the file, after every first row.
        let f = g.files.iter().find(|f| f.name == "customers.csv").unwrap();
        let tail = parse_csv(&f.bytes());
        let tail: Vec<String> = tail[tail.len() - moved.len()..]
            .iter()
            .map(|r| r[0].clone())
            .collect();
        let mut sorted = tail.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
    }

    #[test]
    fn live_pacing_gives_about_one_normal_day_per_day() {
        let p = params(42);
        let volume = Volume::new(&p, today());
        let expected = volume.lines_on(today());
        let mut rng = StdRng::seed_from_u64(5);
        for interval in [3.0, 60.0, 900.0] {
            let mut pacer = Pacer::new(&mut rng, volume.clone(), today(), 0, 0);
            let (mut lines, mut night, mut evening, mut customers) = (0, 0, 0, 0);
            let mut t = 0.0;
            while t <= 86_400.0 {
                let due = pacer.due(&mut rng, today(), t);
                assert!(due.orders.iter().all(|n| (1..=5).contains(n)));
                let n: usize = due.orders.iter().sum();
                lines += n;
                if t < 5.0 * 3600.0 {
                    night += n;
                } else if (18.0 * 3600.0..21.0 * 3600.0).contains(&t) {
                    evening += n;
                }
                customers += due.customers;
                t += interval;
            }
            assert!(
                (lines as f64 - expected).abs() <= 5.0,
                "every {interval} s: {lines} lines for {expected:.1}"
            );
            assert!(evening > 3 * night, "{evening} {night}");
            assert!((customers as f64 - volume.customers_per_day).abs() <= 1.0);
        }
        // A normal day: about the volume of the same weekday in the weeks before, not ten
        // times any day of the history.
        let g = generate(&p, today());
        let per_day = lines_per_day(&g);
        let before: f64 = (1..=4)
            .map(|k| per_day[&(today() - chrono::Duration::days(7 * k))].len() as f64)
            .sum::<f64>()
            / 4.0;
        assert!(
            (0.7..1.4).contains(&(expected / before)),
            "{expected:.1} vs {before:.1}"
        );
        let busiest = per_day.values().map(|s| s.len()).max().unwrap() as f64;
        assert!(expected < busiest, "{expected:.1} vs {busiest}");
        // A restart at 14:00 goes on from what the first run wrote; the next day starts at zero.
        let mut first = Pacer::new(&mut rng, volume.clone(), today(), 0, 0);
        let so_far: usize = first
            .due(&mut rng, today(), 14.0 * 3600.0)
            .orders
            .iter()
            .sum();
        let mut again = Pacer::new(&mut rng, volume.clone(), today(), so_far, 0);
        assert!(again.due(&mut rng, today(), 14.0 * 3600.0).orders.len() <= 1);
        let rest: usize = again.due(&mut rng, today(), 86_400.0).orders.iter().sum();
        assert!(((so_far + rest) as f64 - expected).abs() <= 5.0);
        let tomorrow = today() + chrono::Duration::days(1);
        let morning: usize = again
            .due(&mut rng, tomorrow, 9.0 * 3600.0)
            .orders
            .iter()
            .sum();
        let want = volume.lines_on(tomorrow) * share_of_day_by(9.0 * 3600.0);
        assert!((morning as f64 - want).abs() <= 5.0, "{morning} {want:.1}");
    }

    #[test]
    fn live_file_with_an_older_header_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let old = "sale_id,sale_date,customer_id,product_id,employee_id,quantity,unit_price,amount\nL-1-0,2025-06-01,C00001,P001,E001,1,1.00,1.00\n";
        std::fs::write(dir.path().join("sales_live.csv"), old).unwrap();
        let p = prepare_live_file(dir.path(), "sales_live.csv", SALES_HEADER).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{SALES_HEADER}\n")
        );
        let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with("sales_live_until_") && n.ends_with(".csv")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), old);
        // What an earlier run wrote today counts once per sale id.
        let t = today().format("%d/%m/%Y");
        let recs = format!(
            "L-2-0,LO-2-0,{t},C00001,P001,E001,1,1.00,1.00\nL-2-0,LO-2-0,{t},C00001,P001,E001,1,1.00,1.00\n\
             l-2-1 ,LO-2-0,{t},C00001,P002,E001,1,1.00,1.00\nL-3-0,LO-3-0,2025-06-14,C00001,P001,E001,1,1.00,1.00\n"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(recs.as_bytes())
            .unwrap();
        assert_eq!(written_on(&p, F_SALE, F_DATE, today()), 2);
        assert_eq!(written_on(&dir.path().join("none.csv"), 0, 5, today()), 0);
    }
}
