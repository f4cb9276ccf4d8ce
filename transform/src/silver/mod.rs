//! Silver: typed, cleaned, deduplicated current state per entity.
//!
//! Each model ([`models`]) declares its table, key and fields; [`Mapping`] applies a
//! configured source→field mapping, date formats and decimal separator. For each batch,
//! the last valid image per key wins (upsert), a delete removes the key, and a row that fails
//! validation goes to `silver.quarantine` with every reason, leaving the current state as it
//! was.

pub mod filter;
pub mod history;
pub mod mirror;
pub mod models;
pub mod replay;

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
    /// Row filters every kept row passes.
    pub filters: Vec<filter::RowFilter>,
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
            filters: settings
                .filter
                .iter()
                .filter_map(|f| filter::RowFilter::parse(model, f).ok())
                .collect(),
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

    /// A number written with the configured decimal separator: grouping spaces, thin spaces
    /// and apostrophes, the other separator as thousands grouping, currency signs and an
    /// exponent (`1e3`) are accepted.
    fn parse_decimal(&self, s: &str) -> Option<Decimal> {
        let mut t: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && !matches!(c, '€' | '$' | '£' | '\'' | '’'))
            .collect();
        if self.decimal_separator == ',' {
            t = t.replace('.', "").replace(',', ".");
        } else {
            t = t.replace(',', "");
        }
        Decimal::from_str(&t).ok().or_else(|| {
            t.contains(['e', 'E'])
                .then(|| Decimal::from_scientific(&t).ok())
                .flatten()
        })
    }

    /// A whole number: `17`, `17.00`, `1e3`, `1 234` are; `17.50` is not.
    fn parse_whole(&self, s: &str) -> Result<i32, &'static str> {
        if let Ok(n) = s.parse::<i32>() {
            return Ok(n);
        }
        let d = self.parse_decimal(s).ok_or("is not a number")?;
        if !d.fract().is_zero() {
            return Err("is not a whole number");
        }
        use rust_decimal::prelude::ToPrimitive;
        d.trunc()
            .to_i32()
            .ok_or("is out of range for a whole number")
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
                    FieldType::Int => match self.parse_whole(&s) {
                        Ok(n) => Value::Int(n),
                        Err(why) => {
                            errors.push(format!("{} {s:?} {why} (column {col:?})", field.name));
                            Value::Null
                        }
                    },
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
    /// Rows that failed a configured row filter (counted, not quarantined).
    pub filtered: u64,
    /// Schema events and snapshot markers of a database source: control, not rows.
    pub control: u64,
    /// Images older than the stored row (by event position): ignored.
    pub stale: u64,
}

impl SilverStats {
    pub fn add(&mut self, o: &SilverStats) {
        self.upserts += o.upserts;
        self.deletes += o.deletes;
        self.quarantined += o.quarantined;
        self.filtered += o.filtered;
        self.control += o.control;
        self.stale += o.stale;
    }
}

/// What [`apply`] did: counts, and every key whose row was written or removed (for gold).
#[derive(Debug, Default)]
pub struct Applied {
    pub stats: SilverStats,
    pub touched: Vec<String>,
    /// Quarantined rows by failure, values left out (`sale_date "…" matches none of …`).
    pub reasons: std::collections::BTreeMap<String, i64>,
}

/// A failure without the offending value, so that failures can be counted by kind.
pub fn reason_class(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut quoted = false;
    for c in reason.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

enum Final<'a> {
    Upsert(Vec<Value>, &'a SilverEvent<'a>),
    Delete(i64),
}

/// A database source's marker: rows whose source position comes before it are gone
/// (a `TRUNCATE`, or the end of a new snapshot of the table).
#[derive(Debug, serde::Deserialize)]
struct Marker {
    position: MarkerPos,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    snapshot: Option<MarkerSnap>,
}

#[derive(Debug, serde::Deserialize)]
struct MarkerPos {
    file: String,
    pos: i64,
}

#[derive(Debug, serde::Deserialize)]
struct MarkerSnap {
    phase: String,
}

/// A run of the batch's events between two markers, reduced to the last change per key;
/// `purge` (a marker's position) is applied before its writes.
#[derive(Default)]
struct Segment<'a> {
    purge: Option<MarkerPos>,
    finals: HashMap<String, Final<'a>>,
    order: Vec<String>,
}

impl<'a> Segment<'a> {
    fn set(&mut self, k: String, f: Final<'a>) {
        if !self.finals.contains_key(&k) {
            self.order.push(k.clone());
        }
        self.finals.insert(k, f);
    }
}

/// The batch's events for one model.
#[derive(Default)]
struct Plan<'a> {
    segments: Vec<Segment<'a>>,
    rejected: Vec<(&'a SilverEvent<'a>, String, &'a str)>,
    stats: SilverStats,
}

impl<'a> Plan<'a> {
    fn current(&mut self) -> &mut Segment<'a> {
        if self.segments.is_empty() {
            self.segments.push(Segment::default());
        }
        self.segments.last_mut().expect("one segment at least")
    }

    /// A schema event or snapshot marker of a database source: a control event, not a
    /// row. A `TRUNCATE` or the end of a new snapshot removes the rows seen before it.
    fn control(&mut self, ev: &SilverEvent<'_>) {
        self.stats.control += 1;
        let marker = ev
            .after
            .and_then(|a| serde_json::from_str::<Marker>(a.get()).ok());
        if let Some(m) = marker {
            if m.truncated || m.snapshot.is_some_and(|s| s.phase == "end") {
                self.segments.push(Segment {
                    purge: Some(m.position),
                    ..Segment::default()
                });
            }
        }
    }

    fn event(&mut self, mapping: &Mapping, ev: &'a SilverEvent<'a>) {
        let delete = ev.op == Op::Delete;
        let image_raw = if delete { ev.before } else { ev.after };
        let raw_text = image_raw.map(|r| r.get()).unwrap_or("null");
        let image: Option<serde_json::Map<String, serde_json::Value>> =
            image_raw.and_then(|r| serde_json::from_str(r.get()).ok());
        let Some(image) = image else {
            let why = "the change event's row image is not a JSON object";
            self.rejected.push((ev, why.into(), raw_text));
            return;
        };
        let key = mapping.model.key;
        if delete {
            match mapping.key_of(&image) {
                Some(k) => self.current().set(k, Final::Delete(ev.event_id)),
                None => {
                    let why = format!("delete without a {key} in its before image");
                    self.rejected.push((ev, why, raw_text));
                }
            }
            return;
        }
        match mapping.parse(&image) {
            Ok(values) => {
                let Value::Text(k) = &values[0] else {
                    self.rejected.push((ev, format!("missing {key}"), raw_text));
                    return;
                };
                let k = k.clone();
                if mapping.filtered_by(&values).is_some() {
                    self.stats.filtered += 1;
                    self.current().set(k, Final::Delete(ev.event_id));
                } else {
                    self.current().set(k, Final::Upsert(values, ev));
                }
            }
            Err(reason) => self.rejected.push((ev, reason, raw_text)),
        }
    }
}

fn plan<'a>(mapping: &Mapping, events: &'a [SilverEvent<'a>]) -> Plan<'a> {
    let mut p = Plan::default();
    for ev in events {
        if ev.op == Op::Schema {
            p.control(ev);
        } else {
            p.event(mapping, ev);
        }
    }
    p
}

/// Applies a batch of events, in order, to one model inside the caller's transaction.
///
/// Upserts and deletes are guarded by the event's position (its bronze event id, which
/// grows in the order a key's events were published): an older image arriving late, or
/// replayed from the quarantine, never overwrites a newer one.
pub async fn apply(
    tx: &Transaction<'_>,
    mapping: &Mapping,
    events: &[SilverEvent<'_>],
) -> Result<Applied, DbError> {
    let p = plan(mapping, events);
    let mut out = Applied::default();
    for seg in &p.segments {
        if let Some(pos) = &seg.purge {
            let gone = purge_before(tx, mapping.model, pos).await?;
            out.stats.deletes += gone.len() as u64;
            out.touched.extend(gone);
        }
        write_segment(tx, mapping.model, seg, &mut out).await?;
    }
    out.stats.add(&p.stats);
    out.stats.quarantined += quarantine(tx, mapping.model, &p.rejected).await?;
    for (_, reason, _) in &p.rejected {
        for part in reason.split("; ") {
            *out.reasons.entry(reason_class(part)).or_default() += 1;
        }
    }
    if mapping.model.name == models::customers::MODEL.name && !out.touched.is_empty() {
        history::track(tx, &out.touched).await?;
    }
    Ok(out)
}

/// Removes the rows a database source's marker says are gone; returns their keys.
async fn purge_before(
    tx: &Transaction<'_>,
    model: &Model,
    pos: &MarkerPos,
) -> Result<Vec<String>, DbError> {
    let rows = tx
        .query(
            &format!(
                "DELETE FROM {t} WHERE (coalesce(_source->>'file', ''), coalesce((_source->>'pos')::bigint, 0)) < ($1::text, $2::bigint) RETURNING {k}",
                t = model.table,
                k = model.key
            ),
            &[&pos.file, &pos.pos],
        )
        .await
        .map_err(DbError::query(format!("removing rows gone from the source of {}", model.table)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn write_segment(
    tx: &Transaction<'_>,
    model: &Model,
    p: &Segment<'_>,
    out: &mut Applied,
) -> Result<(), DbError> {
    let mut del_keys: Vec<&str> = Vec::new();
    let mut del_ids: Vec<i64> = Vec::new();
    let mut upserts: Vec<(&Vec<Value>, &SilverEvent)> = Vec::new();
    for k in &p.order {
        match &p.finals[k] {
            Final::Delete(id) => {
                del_keys.push(k);
                del_ids.push(*id);
            }
            Final::Upsert(values, ev) => upserts.push((values, ev)),
        }
    }
    if !upserts.is_empty() {
        stage(tx, model, &upserts).await?;
        let set: Vec<String> = model
            .fields
            .iter()
            .skip(1)
            .map(|f| f.name)
            .chain(["_bronze_event_id", "_source"])
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({k}) DO UPDATE SET {set}, _updated_at = now() \
             WHERE t._bronze_event_id < EXCLUDED._bronze_event_id RETURNING {k}",
            t = model.table,
            cols = model.columns(),
            s = model.stage(),
            k = model.key,
            set = set.join(", ")
        );
        let rows = tx
            .query(&sql, &[])
            .await
            .map_err(DbError::query(format!("upserting into {}", model.table)))?;
        out.stats.upserts += rows.len() as u64;
        out.stats.stale += (upserts.len() - rows.len()) as u64;
        out.touched
            .extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    if !del_keys.is_empty() {
        let rows = tx
            .query(
                &format!(
                    "DELETE FROM {t} AS t USING unnest($1::text[], $2::bigint[]) AS d(k, id) \
                     WHERE t.{k} = d.k AND t._bronze_event_id < d.id RETURNING t.{k}",
                    t = model.table,
                    k = model.key
                ),
                &[&del_keys, &del_ids],
            )
            .await
            .map_err(DbError::query(format!("deleting from {}", model.table)))?;
        out.stats.deletes += rows.len() as u64;
        out.touched
            .extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    Ok(())
}

/// Binary COPY of the upserted rows into the model's staging table (emptied first).
async fn stage(
    tx: &Transaction<'_>,
    model: &Model,
    upserts: &[(&Vec<Value>, &SilverEvent<'_>)],
) -> Result<(), DbError> {
    let ctx = || format!("staging {}", model.table);
    tx.execute(&format!("DELETE FROM {}", model.stage()), &[])
        .await
        .map_err(DbError::query(ctx()))?;
    let mut types: Vec<Type> = model.fields.iter().map(Field::pg_type).collect();
    types.extend([Type::INT8, Type::JSONB]);
    let sink = tx
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            model.stage(),
            model.columns()
        ))
        .await
        .map_err(DbError::query(ctx()))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for (values, ev) in upserts {
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
            .map_err(DbError::query(ctx()))?;
    }
    writer.finish().await.map_err(DbError::query(ctx()))?;
    Ok(())
}

/// Rejected rows into `silver.quarantine` (once per model and source position).
async fn quarantine(
    tx: &Transaction<'_>,
    model: &Model,
    rejected: &[(&SilverEvent<'_>, String, &str)],
) -> Result<u64, DbError> {
    if rejected.is_empty() {
        return Ok(0);
    }
    let ctx = "staging quarantined rows";
    let sink = tx
        .copy_in("COPY stage_quarantine (model, bronze_event_id, topic, source_key, source, record, reason) FROM STDIN (FORMAT binary)")
        .await
        .map_err(DbError::query(ctx))?;
    let types = [
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        Type::JSONB,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    for (ev, reason, record) in rejected {
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
            .map_err(DbError::query(ctx))?;
    }
    writer.finish().await.map_err(DbError::query(ctx))?;
    let n = tx
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
    Ok(n)
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
            ..Default::default()
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
    fn numbers_as_spreadsheets_write_them() {
        let m = mapping("sales", &[], ',');
        let sale = |q: &str, p: &str| {
            m.parse(&obj(
                serde_json::json!({"sale_id":"s1","sale_date":"2024-01-02",
                "customer_id":"c","product_id":"p","quantity":q,"unit_price":p}),
            ))
        };
        let v = sale("17,00", "1 234,50").unwrap();
        assert_eq!(v[5], Value::Decimal(Decimal::from_str("17.00").unwrap()));
        assert_eq!(v[6], Value::Decimal(Decimal::from_str("1234.50").unwrap()));
        assert_eq!(v[7], Value::Decimal(Decimal::from_str("20986.50").unwrap()));
        assert_eq!(
            v[8],
            Value::Text("S1".into()),
            "a line without order is its own order"
        );
        // Fractional quantities (kilograms), rounded to the cent half away from zero.
        let v = sale("0,125", "2,00").unwrap();
        assert_eq!(v[7], Value::Decimal(Decimal::from_str("0.25").unwrap()));
        let v = sale("1e3", "0,01").unwrap();
        assert_eq!(v[7], Value::Decimal(Decimal::from_str("10.00").unwrap()));

        let dot = mapping("sales", &[], '.');
        assert_eq!(dot.parse_whole("17.00"), Ok(17));
        assert_eq!(dot.parse_whole("1,234"), Ok(1234));
        assert_eq!(dot.parse_whole("1e3"), Ok(1000));
        assert_eq!(dot.parse_whole("17.50"), Err("is not a whole number"));
        assert_eq!(dot.parse_whole("abc"), Err("is not a number"));
        assert_eq!(
            dot.parse_whole("1e12"),
            Err("is out of range for a whole number")
        );
    }

    #[test]
    fn reasons_are_counted_without_their_values() {
        assert_eq!(
            reason_class(
                r#"sale_date "31/31/2024" matches none of the date formats ["%Y-%m-%d"] (column "sale_date")"#
            ),
            r#"sale_date "…" matches none of the date formats ["…"] (column "…")"#
        );
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
