//! Silver: typed, cleaned, deduplicated current state per entity.
//!
//! Each model ([`models`]) declares its table, key and fields; [`Mapping`] applies a
//! configured source→field mapping, date formats and decimal separator. For each batch,
//! the last valid image per key wins (upsert), a delete removes the key, and a row that fails
//! validation goes to `silver.quarantine` with every reason, leaving the current state as it
//! was.

pub mod mirror;
pub mod models;

use crate::config::SilverModelSettings;
use crate::sql::{DbError, RawJson, Value};
use chrono::NaiveDate;
use etl_contract::Op;
use futures::pin_mut;
use rust_decimal::Decimal;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::str::FromStr;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Int,
    Decimal,
    Date,
}

/// Text cleaning applied after trimming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clean {
    /// Collapse inner runs of whitespace.
    Collapse,
    Lower,
    Upper,
    /// "  united  STATES" -> "United States".
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Positive,
    NonNegative,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub clean: Clean,
    pub required: bool,
    pub check: Option<Check>,
    /// Digits allowed before the decimal point (a `numeric(p, s)` column allows p - s).
    pub int_digits: Option<u32>,
}

impl Field {
    pub const fn new(name: &'static str, ty: FieldType, clean: Clean) -> Self {
        Field {
            name,
            ty,
            clean,
            required: false,
            check: None,
            int_digits: None,
        }
    }
    /// Values with more integer digits are rejected (the column could not hold them).
    pub const fn int_digits(mut self, digits: u32) -> Self {
        self.int_digits = Some(digits);
        self
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn check(mut self, c: Check) -> Self {
        self.check = Some(c);
        self
    }
    fn pg_type(&self) -> Type {
        match self.ty {
            FieldType::Text => Type::TEXT,
            FieldType::Int => Type::INT4,
            FieldType::Decimal => Type::NUMERIC,
            FieldType::Date => Type::DATE,
        }
    }
}

/// Computes a model's derived fields from the parsed ones, or says why it cannot.
pub type Derive = fn(&mut [Value]) -> Result<(), String>;

/// A silver model: table, single-column key (the first field) and fields.
pub struct Model {
    pub name: &'static str,
    pub table: &'static str,
    pub key: &'static str,
    pub fields: &'static [Field],
    /// Computes derived fields after parsing (e.g. a sale's amount).
    pub derive: Option<Derive>,
}

pub const MODELS: &[Model] = &[
    models::customers::MODEL,
    models::products::MODEL,
    models::countries::MODEL,
    models::employees::MODEL,
    models::sales::MODEL,
    models::exchange_rates::MODEL,
    models::catalogue::MODEL,
    models::web_events::MODEL,
];

pub fn model(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}

impl Model {
    fn stage(&self) -> String {
        format!("stage_silver_{}", self.name)
    }
    fn columns(&self) -> String {
        let mut c: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        c.extend(["_bronze_event_id", "_source"]);
        c.join(", ")
    }
}

/// Creates the session's staging tables (temporary, emptied at each commit).
pub async fn prepare_session(client: &Client) -> Result<(), DbError> {
    let mut sql = String::new();
    for m in MODELS {
        sql.push_str(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;",
            m.stage(),
            m.table
        ));
    }
    sql.push_str(
        "CREATE TEMP TABLE IF NOT EXISTS stage_quarantine (model text, bronze_event_id bigint,
           topic text, source_key text, source jsonb, record jsonb, reason text) ON COMMIT DELETE ROWS;",
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(DbError::query("creating the silver staging tables"))
}

/// A model with its configured mapping.
pub struct Mapping {
    pub model: &'static Model,
    /// Source column of each field, in field order.
    pub columns: Vec<String>,
    pub date_formats: Vec<String>,
    pub decimal_separator: char,
}

fn clean_text(s: &str, clean: Clean) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match clean {
        Clean::Collapse => collapsed,
        Clean::Lower => collapsed.to_lowercase(),
        Clean::Upper => collapsed.to_uppercase(),
        Clean::Title => {
            let mut out = String::with_capacity(collapsed.len());
            let mut start = true;
            for ch in collapsed.chars() {
                if start {
                    out.extend(ch.to_uppercase());
                } else {
                    out.extend(ch.to_lowercase());
                }
                start = ch == ' ' || ch == '-' || ch == '\'';
            }
            out
        }
    }
}

impl Mapping {
    pub fn new(name: &str, settings: &SilverModelSettings) -> Option<Self> {
        let model = model(name)?;
        Some(Mapping {
            model,
            columns: model
                .fields
                .iter()
                .map(|f| {
                    settings
                        .columns
                        .get(f.name)
                        .cloned()
                        .unwrap_or_else(|| f.name.to_string())
                })
                .collect(),
            date_formats: settings.date_formats.clone(),
            decimal_separator: settings.decimal_separator,
        })
    }

    fn raw(image: &serde_json::Map<String, serde_json::Value>, col: &str) -> Option<String> {
        match image.get(col)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => {
                let t = s.trim();
                (!t.is_empty()).then(|| t.to_string())
            }
            other => Some(other.to_string()),
        }
    }

    fn parse_date(&self, s: &str) -> Option<NaiveDate> {
        let candidates = [s, s.split(['T', ' ']).next().unwrap_or(s)];
        for c in candidates {
            for f in &self.date_formats {
                if let Ok(d) = NaiveDate::parse_from_str(c, f) {
                    return Some(d);
                }
            }
        }
        None
    }

    fn parse_decimal(&self, s: &str) -> Option<Decimal> {
        let mut t: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '€' | '$' | '£' | '\''))
            .collect();
        if self.decimal_separator == ',' {
            t = t.replace('.', "").replace(',', ".");
        } else {
            t = t.replace(',', "");
        }
        Decimal::from_str(&t).ok()
    }

    /// Parses and validates an after image into the model's values, or every reason it
    /// cannot be.
    pub fn parse(
        &self,
        image: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<Value>, String> {
        let mut values = Vec::with_capacity(self.model.fields.len());
        let mut errors = Vec::new();
        for (field, col) in self.model.fields.iter().zip(&self.columns) {
            let v = match Self::raw(image, col) {
                None => {
                    if field.required {
                        errors.push(format!("missing {} (column {col:?})", field.name));
                    }
                    Value::Null
                }
                Some(s) => match field.ty {
                    FieldType::Text => Value::Text(clean_text(&s, field.clean)),
                    FieldType::Int => {
                        let n = s
                            .parse::<i64>()
                            .ok()
                            .or_else(|| {
                                self.parse_decimal(&s)
                                    .filter(|d| d.fract().is_zero())
                                    .and_then(|d| d.to_string().parse::<i64>().ok())
                            })
                            .and_then(|n| i32::try_from(n).ok());
                        match n {
                            Some(n) => Value::Int(n),
                            None => {
                                errors.push(format!(
                                    "{} {s:?} is not a whole number (column {col:?})",
                                    field.name
                                ));
                                Value::Null
                            }
                        }
                    }
                    FieldType::Decimal => match self.parse_decimal(&s) {
                        Some(d)
                            if field.int_digits.is_some_and(|n| {
                                d.trunc().abs() >= Decimal::from(10u64.pow(n))
                            }) =>
                        {
                            errors.push(format!(
                                "{} {s:?} is out of range (at most {} digits before the decimal point; column {col:?})",
                                field.name,
                                field.int_digits.unwrap_or_default()
                            ));
                            Value::Null
                        }
                        Some(d) => Value::Decimal(d),
                        None => {
                            errors.push(format!(
                                "{} {s:?} is not a number (column {col:?})",
                                field.name
                            ));
                            Value::Null
                        }
                    },
                    FieldType::Date => match self.parse_date(&s) {
                        Some(d) => Value::Date(d),
                        None => {
                            errors.push(format!(
                                "{} {s:?} matches none of the date formats {:?} (column {col:?})",
                                field.name, self.date_formats
                            ));
                            Value::Null
                        }
                    },
                },
            };
            if let Some(check) = field.check {
                let bad = match (&v, check) {
                    (Value::Int(n), Check::Positive) => *n <= 0,
                    (Value::Int(n), Check::NonNegative) => *n < 0,
                    (Value::Decimal(d), Check::Positive) => *d <= Decimal::ZERO,
                    (Value::Decimal(d), Check::NonNegative) => d.is_sign_negative() && !d.is_zero(),
                    _ => false,
                };
                if bad {
                    let what = if check == Check::Positive {
                        "must be positive"
                    } else {
                        "is negative"
                    };
                    errors.push(format!(
                        "{} {what} ({:?})",
                        field.name,
                        Self::raw(image, col).unwrap_or_default()
                    ));
                }
            }
            values.push(v);
        }
        if errors.is_empty() {
            if let Some(derive) = self.model.derive {
                derive(&mut values).map_err(|e| e.to_string())?;
            }
            Ok(values)
        } else {
            Err(errors.join("; "))
        }
    }

    /// The cleaned key of an image (used for deletes, from the before image).
    pub fn key_of(&self, image: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        let field = &self.model.fields[0];
        match Self::raw(image, &self.columns[0]) {
            Some(s) => Some(clean_text(&s, field.clean)),
            // A derived key (e.g. an exchange rate's `<base>:<currency>:<date>`) is computed
            // from the image like an upsert's.
            None if self.model.derive.is_some() => match self.parse(image).ok()?.first() {
                Some(Value::Text(k)) => Some(k.clone()),
                _ => None,
            },
            None => None,
        }
    }
}

/// One new bronze event for a silver model.
pub struct SilverEvent<'a> {
    pub event_id: i64,
    pub topic: &'a str,
    pub source_key: &'a str,
    pub source: &'a RawValue,
    pub op: Op,
    pub before: Option<&'a RawValue>,
    pub after: Option<&'a RawValue>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SilverStats {
    pub upserts: u64,
    pub deletes: u64,
    pub quarantined: u64,
}

enum Final<'a> {
    Upsert(Vec<Value>, &'a SilverEvent<'a>),
    Delete,
}

/// Applies a batch of events, in order, to one model inside the caller's transaction.
pub async fn apply(
    tx: &Transaction<'_>,
    mapping: &Mapping,
    events: &[SilverEvent<'_>],
) -> Result<SilverStats, DbError> {
    let model = mapping.model;
    let mut finals: HashMap<String, Final> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut rejected: Vec<(&SilverEvent, String, &str)> = Vec::new();
    for ev in events {
        let image_raw = if ev.op == Op::Delete {
            ev.before
        } else {
            ev.after
        };
        let image: Option<serde_json::Map<String, serde_json::Value>> =
            image_raw.and_then(|r| serde_json::from_str(r.get()).ok());
        let Some(image) = image else {
            rejected.push((
                ev,
                "the change event's row image is not a JSON object".into(),
                image_raw.map(|r| r.get()).unwrap_or("null"),
            ));
            continue;
        };
        let raw_text = image_raw.map(|r| r.get()).unwrap_or("null");
        if ev.op == Op::Delete {
            match mapping.key_of(&image) {
                Some(k) => {
                    if !finals.contains_key(&k) {
                        order.push(k.clone());
                    }
                    finals.insert(k, Final::Delete);
                }
                None => rejected.push((
                    ev,
                    format!("delete without a {} in its before image", model.key),
                    raw_text,
                )),
            }
            continue;
        }
        match mapping.parse(&image) {
            Ok(values) => {
                let Value::Text(k) = &values[0] else {
                    rejected.push((ev, format!("missing {}", model.key), raw_text));
                    continue;
                };
                let k = k.clone();
                if !finals.contains_key(&k) {
                    order.push(k.clone());
                }
                finals.insert(k, Final::Upsert(values, ev));
            }
            Err(reason) => rejected.push((ev, reason, raw_text)),
        }
    }

    let mut stats = SilverStats::default();
    let mut deletes: Vec<String> = Vec::new();
    let mut types: Vec<Type> = model.fields.iter().map(Field::pg_type).collect();
    types.extend([Type::INT8, Type::JSONB]);
    let sink = tx
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            model.stage(),
            model.columns()
        ))
        .await
        .map_err(DbError::query(format!("staging {}", model.table)))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for k in &order {
        match &finals[k] {
            Final::Delete => deletes.push(k.clone()),
            Final::Upsert(values, ev) => {
                let source = RawJson(ev.source.get());
                let mut row: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                    .iter()
                    .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                row.push(&ev.event_id);
                row.push(&source);
                writer
                    .as_mut()
                    .write(&row)
                    .await
                    .map_err(DbError::query(format!("staging {}", model.table)))?;
                stats.upserts += 1;
            }
        }
    }
    writer
        .finish()
        .await
        .map_err(DbError::query(format!("staging {}", model.table)))?;
    if stats.upserts > 0 {
        let set: Vec<String> = model
            .fields
            .iter()
            .skip(1)
            .map(|f| f.name)
            .chain(["_bronze_event_id", "_source"])
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({k}) DO UPDATE SET {set}, _updated_at = now()",
            t = model.table,
            cols = model.columns(),
            s = model.stage(),
            k = model.key,
            set = set.join(", ")
        );
        tx.execute(&sql, &[])
            .await
            .map_err(DbError::query(format!("upserting into {}", model.table)))?;
    }
    if !deletes.is_empty() {
        stats.deletes = tx
            .execute(
                &format!("DELETE FROM {} WHERE {} = ANY($1)", model.table, model.key),
                &[&deletes],
            )
            .await
            .map_err(DbError::query(format!("deleting from {}", model.table)))?;
    }
    if !rejected.is_empty() {
        let sink = tx
            .copy_in("COPY stage_quarantine (model, bronze_event_id, topic, source_key, source, record, reason) FROM STDIN (FORMAT binary)")
            .await
            .map_err(DbError::query("staging quarantined rows"))?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::JSONB,
                Type::JSONB,
                Type::TEXT,
            ],
        );
        pin_mut!(writer);
        for (ev, reason, record) in &rejected {
            writer
                .as_mut()
                .write(&[
                    &model.name,
                    &ev.event_id,
                    &ev.topic,
                    &ev.source_key,
                    &RawJson(ev.source.get()),
                    &RawJson(record),
                    reason,
                ])
                .await
                .map_err(DbError::query("staging quarantined rows"))?;
        }
        writer
            .finish()
            .await
            .map_err(DbError::query("staging quarantined rows"))?;
        stats.quarantined = tx
            .execute(
                "INSERT INTO silver.quarantine (model, bronze_event_id, topic, source_key, source, record, reason)
                 SELECT model, bronze_event_id, topic, source_key, source, record, reason FROM stage_quarantine
                 ON CONFLICT (model, source_key) DO NOTHING",
                &[],
            )
            .await
            .map_err(DbError::query("inserting into silver.quarantine"))?;
        tx.execute("DELETE FROM stage_quarantine", &[])
            .await
            .map_err(DbError::query("clearing the quarantine stage"))?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(name: &str, cols: &[(&str, &str)], dec: char) -> Mapping {
        let settings = SilverModelSettings {
            source: "csv".into(),
            entity: None,
            columns: cols
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            date_formats: vec!["%Y-%m-%d".into(), "%d/%m/%Y".into()],
            decimal_separator: dec,
        };
        Mapping::new(name, &settings).unwrap()
    }

    fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn sales_are_typed_cleaned_and_derived() {
        let m = mapping(
            "sales",
            &[("sale_date", "Date"), ("unit_price", "Price")],
            ',',
        );
        let v = m
            .parse(&obj(
                serde_json::json!({"sale_id":" s-1 ","Date":"05/03/2024","customer_id":"c1",
                "product_id":"p1","quantity":"2","Price":"1.234,50 €"}),
            ))
            .unwrap();
        assert_eq!(v[0], Value::Text("S-1".into()));
        assert_eq!(
            v[1],
            Value::Date(NaiveDate::from_ymd_opt(2024, 3, 5).unwrap())
        );
        assert_eq!(v[6], Value::Decimal(Decimal::from_str("1234.50").unwrap()));
        assert_eq!(v[7], Value::Decimal(Decimal::from_str("2469.00").unwrap()));
    }

    #[test]
    fn bad_rows_list_every_reason() {
        let m = mapping("sales", &[], '.');
        let err = m
            .parse(&obj(
                serde_json::json!({"sale_id":"s1","sale_date":"31/31/2024","customer_id":"",
                "product_id":"p","quantity":"-1","amount":"-5"}),
            ))
            .unwrap_err();
        assert!(
            err.contains("sale_date \"31/31/2024\" matches none"),
            "{err}"
        );
        assert!(err.contains("missing customer_id"), "{err}");
        assert!(err.contains("quantity must be positive"), "{err}");
        assert!(err.contains("amount is negative"), "{err}");
    }

    #[test]
    fn text_cleaning() {
        assert_eq!(
            clean_text("  united   STATES ", Clean::Title),
            "United States"
        );
        assert_eq!(clean_text(" A@B.Com ", Clean::Lower), "a@b.com");
        assert_eq!(clean_text("guinea-bissau", Clean::Title), "Guinea-Bissau");
    }
}
