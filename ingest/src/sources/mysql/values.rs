//! Column kinds and the canonical JSON form of MySQL values, shared by the snapshot (binary
//! protocol) and the binlog stream, so that a row read either way serializes identically.
//!
//! * integers (signed and unsigned, any width): JSON numbers (exact: serde_json keeps i64/u64)
//! * DECIMAL: string, exactly as MySQL prints it (`"12.30"`), never through f64
//! * FLOAT/DOUBLE: string (shortest round-trip form)
//! * DATE `"2024-01-31"`, DATETIME(p) `"2024-01-31 12:00:00.123456"` (p fractional digits),
//!   TIMESTAMP(p) `"2024-01-31T12:00:00.123Z"` (UTC, made explicit), TIME(p) `"-838:59:59.000"`
//! * YEAR: number; ENUM/SET: their literals (`"a,c"` for a SET); JSON and text: string
//! * BINARY/VARBINARY/BLOB/BIT/GEOMETRY: base64 (standard alphabet, padded)
//! * NULL: null

use base64::Engine as _;
use mysql_async::Value;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::Arc;

/// How a column's values are rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Decimal,
    Year,
    Date,
    /// DATETIME with its fractional-second precision.
    DateTime(u8),
    /// TIMESTAMP with its fractional-second precision.
    Timestamp(u8),
    /// TIME with its fractional-second precision.
    Time(u8),
    Text,
    Json,
    Binary,
    /// ENUM in the binlog: a 1-based index into these literals.
    Enum(Arc<[String]>),
    /// SET in the binlog: a bitmask over these literals.
    Set(Arc<[String]>),
}

impl Kind {
    /// Kind of a column from `information_schema.COLUMNS` (snapshot side, binary protocol:
    /// ENUM and SET arrive as their literals there, hence `Text`).
    pub fn from_information_schema(
        data_type: &str,
        precision: Option<u64>,
        charset: Option<&str>,
    ) -> Kind {
        let p = precision.unwrap_or(0).min(6) as u8;
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => Kind::Int,
            "float" | "double" | "real" => Kind::Float,
            "decimal" | "numeric" => Kind::Decimal,
            "year" => Kind::Year,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime(p),
            "timestamp" => Kind::Timestamp(p),
            "time" => Kind::Time(p),
            "json" => Kind::Json,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" => Kind::Binary,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
                if matches!(charset, None | Some("binary")) =>
            {
                Kind::Binary
            }
            _ => Kind::Text,
        }
    }
}

/// A value in its canonical form.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Null,
    I(i64),
    U(u64),
    S(String),
}

impl Serialize for Out {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Null => s.serialize_none(),
            Out::I(v) => s.serialize_i64(*v),
            Out::U(v) => s.serialize_u64(*v),
            Out::S(v) => s.serialize_str(v),
        }
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn push_fraction(s: &mut String, micros: u32, p: u8) {
    if p > 0 {
        let digits = format!("{:06}", micros.min(999_999));
        s.push('.');
        s.push_str(&digits[..p as usize]);
    }
}

/// `YYYY-MM-DD<sep>HH:MM:SS[.f]` with `p` fractional digits.
#[allow(clippy::too_many_arguments)]
fn date_time(y: u16, mo: u8, d: u8, h: u8, mi: u8, sec: u8, us: u32, p: u8, sep: char) -> String {
    let mut s = String::with_capacity(27);
    let _ = write!(s, "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}");
    push_fraction(&mut s, us, p);
    s
}

/// TIMESTAMP as seconds and microseconds since the epoch (the binlog's form) to UTC text.
fn timestamp_from_epoch(sec: i64, us: u32, p: u8) -> Result<String, String> {
    if sec == 0 && us == 0 {
        // MySQL's zero timestamp.
        return Ok(format!("{}Z", date_time(0, 0, 0, 0, 0, 0, 0, p, 'T')));
    }
    // A binlog fraction can hold up to 16777215 "microseconds" (3 bytes) in a corrupt event.
    let nanos = us
        .checked_mul(1000)
        .filter(|&n| n < 1_000_000_000)
        .ok_or_else(|| "a timestamp whose microseconds are out of range".to_string())?;
    let t = chrono::DateTime::from_timestamp(sec, nanos)
        .ok_or_else(|| "a timestamp out of the representable range".to_string())?;
    use chrono::{Datelike, Timelike};
    Ok(format!(
        "{}Z",
        date_time(
            t.year() as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            us,
            p,
            'T'
        )
    ))
}

/// Renders one value of a column of kind `kind`. An unexpected combination (which would be
/// a bug or a type this agent does not know) is an error naming both.
pub fn render(kind: &Kind, v: Value) -> Result<Out, String> {
    Ok(match (kind, v) {
        (_, Value::NULL) => Out::Null,
        (Kind::Int, Value::Int(i)) => Out::I(i),
        (Kind::Int, Value::UInt(u)) => Out::U(u),
        (Kind::Year, Value::Int(i)) => Out::I(i),
        (Kind::Year, Value::UInt(u)) => Out::U(u),
        (Kind::Year, Value::Bytes(b)) => {
            // The binlog decoder renders YEAR as 1900 + the stored byte, so 0000 shows as 1900
            // (1900 itself is not a valid YEAR).
            let t = text(b);
            match t.parse::<i64>() {
                Ok(1900) => Out::I(0),
                Ok(y) => Out::I(y),
                Err(_) => Out::S(t),
            }
        }
        (Kind::Float, Value::Float(f)) => Out::S(f.to_string()),
        (Kind::Float, Value::Double(f)) => Out::S(f.to_string()),
        (Kind::Float | Kind::Decimal | Kind::Text | Kind::Json, Value::Bytes(b)) => Out::S(text(b)),
        (Kind::Date, Value::Date(y, mo, d, ..)) => Out::S(format!("{y:04}-{mo:02}-{d:02}")),
        (Kind::DateTime(p), Value::Date(y, mo, d, h, mi, s, us)) => {
            Out::S(date_time(y, mo, d, h, mi, s, us, *p, ' '))
        }
        // Binary protocol, session time zone +00:00.
        (Kind::Timestamp(p), Value::Date(y, mo, d, h, mi, s, us)) => {
            Out::S(format!("{}Z", date_time(y, mo, d, h, mi, s, us, *p, 'T')))
        }
        // Binlog: "<epoch seconds>[.<microseconds>]".
        (Kind::Timestamp(p), Value::Bytes(b)) => {
            let t = text(b);
            let (sec, us) = match t.split_once('.') {
                Some((s, f)) => (s, f),
                None => (t.as_str(), "0"),
            };
            let sec: i64 = sec
                .parse()
                .map_err(|_| "a binlog timestamp whose seconds are not a number".to_string())?;
            let us: u32 = us.parse().map_err(|_| {
                "a binlog timestamp whose microseconds are not a number".to_string()
            })?;
            Out::S(timestamp_from_epoch(sec, us, *p)?)
        }
        (Kind::Timestamp(p), Value::Int(sec)) => Out::S(timestamp_from_epoch(sec, 0, *p)?),
        (Kind::Time(p), Value::Time(neg, days, h, m, s, us)) => {
            let mut out = String::with_capacity(18);
            let hours = days as u64 * 24 + h as u64;
            let _ = write!(
                out,
                "{}{hours:02}:{m:02}:{s:02}",
                if neg { "-" } else { "" }
            );
            push_fraction(&mut out, us, *p);
            Out::S(out)
        }
        (Kind::Binary, Value::Bytes(b)) => Out::S(b64(&b)),
        (Kind::Enum(lits), Value::Int(i)) => Out::S(
            usize::try_from(i)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| lits.get(i))
                .cloned()
                .unwrap_or_default(),
        ),
        (Kind::Enum(_), Value::Bytes(b)) => Out::S(text(b)),
        (Kind::Set(lits), Value::Bytes(mask)) => {
            let mut out = String::new();
            for (i, lit) in lits.iter().enumerate() {
                if mask
                    .get(i / 8)
                    .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
                {
                    if !out.is_empty() {
                        out.push(',');
                    }
                    out.push_str(lit);
                }
            }
            Out::S(out)
        }
        // The value's type, never the value: a dead letter's reason holds no row content.
        (k, v) => {
            let found = match v {
                Value::NULL => "NULL",
                Value::Bytes(_) => "bytes",
                Value::Int(_) => "a signed integer",
                Value::UInt(_) => "an unsigned integer",
                Value::Float(_) | Value::Double(_) => "a floating-point number",
                Value::Date(..) => "a date",
                Value::Time(..) => "a time",
            };
            return Err(format!(
                "a {k:?} column holds a value of unexpected type ({found})"
            ));
        }
    })
}

/// A row image: column names to canonical values, serialized as a JSON object.
pub struct RowImage<'a> {
    pub names: &'a [String],
    pub values: &'a [Out],
}

impl Serialize for RowImage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.names.len()))?;
        for (n, v) in self.names.iter().zip(self.values) {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

/// The record key: the primary-key columns (all columns for a table without one).
pub struct KeyImage<'a> {
    pub names: &'a [String],
    pub idx: &'a [usize],
    pub values: &'a [Out],
}

impl Serialize for KeyImage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.idx.is_empty() {
            return RowImage {
                names: self.names,
                values: self.values,
            }
            .serialize(s);
        }
        let mut m = s.serialize_map(Some(self.idx.len()))?;
        for &i in self.idx {
            if let (Some(n), Some(v)) = (self.names.get(i), self.values.get(i)) {
                m.serialize_entry(n, v)?;
            }
        }
        m.end()
    }
}

/// A primary-key value persisted in the checkpoint (the snapshot's resume point), convertible
/// back to a query parameter without loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum PkValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    /// base64 of the bytes
    Bytes(String),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&Value> for PkValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::NULL => PkValue::Null,
            Value::Int(i) => PkValue::Int(*i),
            Value::UInt(u) => PkValue::UInt(*u),
            Value::Float(f) => PkValue::Float(*f as f64),
            Value::Double(f) => PkValue::Float(*f),
            Value::Bytes(b) => PkValue::Bytes(b64(b)),
            Value::Date(a, b, c, d, e, f, g) => PkValue::Date(*a, *b, *c, *d, *e, *f, *g),
            Value::Time(a, b, c, d, e, f) => PkValue::Time(*a, *b, *c, *d, *e, *f),
        }
    }
}

impl PkValue {
    pub fn to_value(&self) -> Value {
        match self {
            PkValue::Null => Value::NULL,
            PkValue::Int(i) => Value::Int(*i),
            PkValue::UInt(u) => Value::UInt(*u),
            PkValue::Float(f) => Value::Double(*f),
            PkValue::Bytes(b) => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_default(),
            ),
            PkValue::Date(a, b, c, d, e, f, g) => Value::Date(*a, *b, *c, *d, *e, *f, *g),
            PkValue::Time(a, b, c, d, e, f) => Value::Time(*a, *b, *c, *d, *e, *f),
        }
    }
}

/// FNV-1a, 64 bits, hex: a content fingerprint for snapshot source keys.
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(o: Out) -> String {
        match o {
            Out::S(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn temporal_values() {
        let v = Value::Date(2024, 1, 31, 12, 5, 9, 120);
        assert_eq!(
            s(render(&Kind::DateTime(6), v.clone()).unwrap()),
            "2024-01-31 12:05:09.000120"
        );
        assert_eq!(
            s(render(&Kind::DateTime(3), v.clone()).unwrap()),
            "2024-01-31 12:05:09.000"
        );
        assert_eq!(
            s(render(&Kind::DateTime(0), v.clone()).unwrap()),
            "2024-01-31 12:05:09"
        );
        assert_eq!(s(render(&Kind::Date, v.clone()).unwrap()), "2024-01-31");
        assert_eq!(
            s(render(&Kind::Timestamp(3), v).unwrap()),
            "2024-01-31T12:05:09.000Z"
        );
        // The binlog's form of the same instant.
        let b = Value::Bytes(b"1706702709.000120".to_vec());
        assert_eq!(
            s(render(&Kind::Timestamp(6), b).unwrap()),
            "2024-01-31T12:05:09.000120Z"
        );
        let b = Value::Bytes(b"1706702709".to_vec());
        assert_eq!(
            s(render(&Kind::Timestamp(0), b).unwrap()),
            "2024-01-31T12:05:09Z"
        );
        let t = Value::Time(true, 1, 2, 3, 4, 500_000);
        assert_eq!(s(render(&Kind::Time(1), t).unwrap()), "-26:03:04.5");
    }

    #[test]
    fn binlog_timestamp_microseconds_out_of_range() {
        // Found by fuzz/fuzz_targets/binlog_value.rs: a TIMESTAMP2 fraction past 999999 (its
        // 3 bytes hold up to 16777215) overflowed `us * 1000`: a panic with overflow checks,
        // a wrong timestamp (or a leap second) without.
        for frac in ["16777215", "4294968", "1000000"] {
            let v = Value::Bytes(format!("1706702709.{frac}").into_bytes());
            assert!(render(&Kind::Timestamp(6), v).is_err(), "{frac}");
        }
        let v = Value::Bytes(b"1706702709.999999".to_vec());
        assert_eq!(
            s(render(&Kind::Timestamp(6), v).unwrap()),
            "2024-01-31T12:05:09.999999Z"
        );
    }

    #[test]
    fn enums_sets_numbers_bytes() {
        let lits: Arc<[String]> = vec!["a".to_string(), "b".into(), "c".into()].into();
        assert_eq!(
            s(render(&Kind::Enum(lits.clone()), Value::Int(2)).unwrap()),
            "b"
        );
        assert_eq!(
            s(render(&Kind::Enum(lits.clone()), Value::Int(0)).unwrap()),
            ""
        );
        assert_eq!(
            s(render(&Kind::Set(lits), Value::Bytes(vec![0b101])).unwrap()),
            "a,c"
        );
        assert_eq!(
            render(&Kind::Int, Value::UInt(u64::MAX)).unwrap(),
            Out::U(u64::MAX)
        );
        assert_eq!(
            render(&Kind::Year, Value::Bytes(b"1900".to_vec())).unwrap(),
            Out::I(0)
        );
        assert_eq!(
            s(render(&Kind::Decimal, Value::Bytes(b"-0.50".to_vec())).unwrap()),
            "-0.50"
        );
        assert_eq!(
            s(render(&Kind::Binary, Value::Bytes(vec![0, 255])).unwrap()),
            "AP8="
        );
        assert_eq!(render(&Kind::Text, Value::NULL).unwrap(), Out::Null);
        assert!(render(&Kind::Date, Value::Int(3)).is_err());
        let names = vec!["id".to_string(), "x".into()];
        let vals = vec![Out::I(1), Out::Null];
        let row = serde_json::to_string(&RowImage {
            names: &names,
            values: &vals,
        })
        .unwrap();
        assert_eq!(row, r#"{"id":1,"x":null}"#);
        let key = serde_json::to_string(&KeyImage {
            names: &names,
            idx: &[0],
            values: &vals,
        })
        .unwrap();
        assert_eq!(key, r#"{"id":1}"#);
    }

    #[test]
    fn pk_values_round_trip() {
        for v in [
            Value::Int(-3),
            Value::UInt(7),
            Value::Bytes(b"k\x00".to_vec()),
            Value::Date(2024, 2, 3, 4, 5, 6, 7),
        ] {
            let p = PkValue::from(&v);
            let back: PkValue = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(back.to_value(), v);
        }
    }
}
