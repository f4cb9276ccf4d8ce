//! The MySQL source's binlog decoding: a TABLE_MAP event read into the table's shape
//! (`TableSchema::from_table_map`), the row images of a rows event decoded by mysql_common
//! with each column's type and metadata and rendered into their canonical JSON values
//! (`row_values`, `render`), and the change event built from them (`encode`): the path of
//! `stream.rs`. A second mode renders any value as any column kind (`render`, shared with
//! the snapshot's binary protocol).
//!
//! Input (a byte past the end reads as 0):
//! * byte 0, the mode: bit 7 set: render mode (below). Otherwise bits 0-1 the event (write,
//!   update, delete), bit 2 no column names in the metadata, bit 3 one name missing, bit 4
//!   a primary-key index past the last column (malformed metadata);
//! * byte 1: number of columns, 1 + b % 8;
//! * 4 bytes per column: type (index into `TYPES`), two parameters (fractional digits,
//!   precision and scale, lengths, pack lengths, labels), flags (bit 0 unsigned, bit 1
//!   binary character set, bit 2 primary key);
//! * the rest: the rows event's row images, as the server writes them.
//!
//! Render mode: byte 1 the kind, byte 2 its fractional digits (% 7), byte 3 the value's
//! type; the rest the value.
//!
//! Checked:
//! * no panic, whatever the bytes;
//! * the table's shape: one name, kind and type per column, each column's kind as its type,
//!   character set and labels say (the n-th ENUM column gets the n-th label list); refused
//!   exactly when the names are missing or the primary key is out of range;
//! * each decoded image has one value per column, of the form its kind promises (numbers
//!   for integers, base64 for binary, `p` fractional digits for DATETIME/TIME/TIMESTAMP(p),
//!   a final `Z` for TIMESTAMP, SET members among its labels);
//! * the change event's value is an envelope the contract accepts, with the op and images
//!   (a JSON object, one member per column) it was given, and a source key; its key is a
//!   JSON object.
#![no_main]

use etl_contract::{source_key, EnvelopeIn, Op};
use ingest::fuzzing::mysql::{
    encode, render, row_values, Kind, MysqlSourceBlock, Out, TableSchema,
};
use libfuzzer_sys::fuzz_target;
use mysql_common::binlog::consts::{BinlogVersion, EventType};
use mysql_common::binlog::events::{
    DeleteRowsEvent, FormatDescriptionEvent, RowsEventRows, TableMapEvent, UpdateRowsEvent,
    WriteRowsEvent,
};
use mysql_common::binlog::BinlogCtx;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;
use mysql_common::value::Value;
use std::sync::Arc;

/// Reads the input byte by byte; past the end, zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Tiny,
    Short,
    Int24,
    Long,
    LongLong,
    Float,
    Double,
    Decimal,
    Year,
    Date,
    Time,
    Time2,
    DateTime,
    DateTime2,
    Timestamp,
    Timestamp2,
    Varchar,
    Char,
    Blob,
    Json,
    Bit,
    Enum,
    Set,
    Geometry,
}

const TYPES: [Ty; 24] = [
    Ty::Tiny,
    Ty::Short,
    Ty::Int24,
    Ty::Long,
    Ty::LongLong,
    Ty::Float,
    Ty::Double,
    Ty::Decimal,
    Ty::Year,
    Ty::Date,
    Ty::Time,
    Ty::Time2,
    Ty::DateTime,
    Ty::DateTime2,
    Ty::Timestamp,
    Ty::Timestamp2,
    Ty::Varchar,
    Ty::Char,
    Ty::Blob,
    Ty::Json,
    Ty::Bit,
    Ty::Enum,
    Ty::Set,
    Ty::Geometry,
];

/// Column names (distinct, as MySQL's are), some needing JSON escapes.
const NAMES: [&str; 8] = [
    "id",
    "name",
    "amount",
    "créé_le",
    "a\"b",
    "x y",
    "k\\v",
    "ts",
];

/// One column of the table, as a TABLE_MAP event describes it.
struct Col {
    ty: Ty,
    /// The type byte in the event (ENUM and SET are STRING there, told by their metadata).
    wire: ColumnType,
    meta: Vec<u8>,
    unsigned: bool,
    binary: bool,
    pk: bool,
    labels: Vec<String>,
}

impl Col {
    fn new(ty: Ty, a: u8, b: u8, flags: u8) -> Col {
        use ColumnType::*;
        let (wire, meta) = match ty {
            Ty::Tiny => (MYSQL_TYPE_TINY, vec![]),
            Ty::Short => (MYSQL_TYPE_SHORT, vec![]),
            Ty::Int24 => (MYSQL_TYPE_INT24, vec![]),
            Ty::Long => (MYSQL_TYPE_LONG, vec![]),
            Ty::LongLong => (MYSQL_TYPE_LONGLONG, vec![]),
            Ty::Float => (MYSQL_TYPE_FLOAT, vec![4]),
            Ty::Double => (MYSQL_TYPE_DOUBLE, vec![8]),
            Ty::Decimal => {
                let p = 1 + a % 65;
                (MYSQL_TYPE_NEWDECIMAL, vec![p, b % (p.min(30) + 1)])
            }
            Ty::Year => (MYSQL_TYPE_YEAR, vec![]),
            Ty::Date => (MYSQL_TYPE_DATE, vec![]),
            Ty::Time => (MYSQL_TYPE_TIME, vec![]),
            // mysql_common 0.37.3 decodes a negative TIME(1)/TIME(2) with a fraction wrongly
            // (`frac -= 0x100` on a u32 in `my_time_packed_from_binary`): no crash with the
            // dependencies built without overflow checks, as shipped; see fuzz/README.md.
            Ty::Time2 => (MYSQL_TYPE_TIME2, vec![a % 7]),
            Ty::DateTime => (MYSQL_TYPE_DATETIME, vec![]),
            Ty::DateTime2 => (MYSQL_TYPE_DATETIME2, vec![a % 7]),
            Ty::Timestamp => (MYSQL_TYPE_TIMESTAMP, vec![]),
            Ty::Timestamp2 => (MYSQL_TYPE_TIMESTAMP2, vec![a % 7]),
            Ty::Varchar => (
                MYSQL_TYPE_VARCHAR,
                u16::from_le_bytes([a, b]).max(1).to_le_bytes().to_vec(),
            ),
            Ty::Char => {
                // Byte length up to 255 characters of 4 bytes; a length over 255 has its
                // two high bits folded into the type byte, as the server writes it.
                let len = (1 + u16::from(a) + (u16::from(b & 3) << 8)).min(1020);
                let hi = ((len & 0x300) >> 4) as u8;
                (MYSQL_TYPE_STRING, vec![0xFE ^ hi, len as u8])
            }
            Ty::Blob => (MYSQL_TYPE_BLOB, vec![1 + a % 4]),
            Ty::Json => (MYSQL_TYPE_JSON, vec![4]),
            Ty::Bit => {
                let bytes = a % 9;
                let bits = match bytes {
                    0 => 1 + b % 7,
                    8 => 0,
                    _ => b % 8,
                };
                (MYSQL_TYPE_BIT, vec![bits, bytes])
            }
            Ty::Enum => (MYSQL_TYPE_STRING, vec![0xF7, 1 + a % 2]),
            Ty::Set => (MYSQL_TYPE_STRING, vec![0xF8, 1 + a % 8]),
            Ty::Geometry => (MYSQL_TYPE_GEOMETRY, vec![4]),
        };
        let n_labels = match ty {
            Ty::Enum => usize::from(b % 12),
            Ty::Set => usize::from(b % 65),
            _ => 0,
        };
        let labels = (0..n_labels)
            .map(|i| {
                if i == 3 {
                    "naïve".to_string()
                } else {
                    format!("v{i}")
                }
            })
            .collect();
        Col {
            ty,
            wire,
            meta,
            unsigned: flags & 1 != 0,
            binary: flags & 2 != 0,
            pk: flags & 4 != 0,
            labels,
        }
    }

    /// The type after the TABLE_MAP's own decoding (ENUM and SET told apart from STRING).
    fn real_type(&self) -> ColumnType {
        match self.ty {
            Ty::Enum => ColumnType::MYSQL_TYPE_ENUM,
            Ty::Set => ColumnType::MYSQL_TYPE_SET,
            _ => self.wire,
        }
    }

    fn expected_kind(&self) -> Kind {
        let dec = self.meta.first().copied().unwrap_or(0);
        let text = if self.binary {
            Kind::Binary
        } else {
            Kind::Text
        };
        match self.ty {
            Ty::Tiny | Ty::Short | Ty::Int24 | Ty::Long | Ty::LongLong => Kind::Int,
            Ty::Float | Ty::Double => Kind::Float,
            Ty::Decimal => Kind::Decimal,
            Ty::Year => Kind::Year,
            Ty::Date => Kind::Date,
            Ty::Time => Kind::Time(0),
            Ty::Time2 => Kind::Time(dec),
            Ty::DateTime => Kind::DateTime(0),
            Ty::DateTime2 => Kind::DateTime(dec),
            Ty::Timestamp => Kind::Timestamp(0),
            Ty::Timestamp2 => Kind::Timestamp(dec),
            Ty::Varchar | Ty::Char | Ty::Blob => text,
            Ty::Json => Kind::Json,
            Ty::Bit | Ty::Geometry => Kind::Binary,
            Ty::Enum => Kind::Enum(self.labels.clone().into()),
            Ty::Set => Kind::Set(self.labels.clone().into()),
        }
    }
}

fn lenenc(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => out.push(v as u8),
        251..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// An optional-metadata field: type, length, value.
fn tlv(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    out.push(ty);
    lenenc_str(out, value);
}

const TABLE_ID: u64 = 4711;

fn post_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&TABLE_ID.to_le_bytes()[..6]);
    out.extend_from_slice(&[0, 0]); // flags
}

/// The optional metadata of `binlog_row_metadata=FULL`, in the server's field order.
fn optional_metadata(cols: &[Col], mode: u8) -> Vec<u8> {
    let mut out = Vec::new();
    // SIGNEDNESS: one bit per numeric column, most significant first; "numeric" as
    // mysql_common counts them, which sizes the field it accepts.
    let numeric: Vec<bool> = cols
        .iter()
        .filter(|c| c.wire.is_numeric_type())
        .map(|c| c.unsigned)
        .collect();
    if !numeric.is_empty() {
        let mut bits = vec![0u8; numeric.len().div_ceil(8)];
        for (i, _) in numeric.iter().enumerate().filter(|(_, u)| **u) {
            bits[i / 8] |= 0x80 >> (i % 8);
        }
        tlv(&mut out, 1, &bits);
    }
    // DEFAULT_CHARSET: utf8mb4, and `binary` (63) for the flagged character columns
    // (numbered among the character columns).
    let mut cs = Vec::new();
    lenenc(&mut cs, 45);
    let chars = cols.iter().filter(|c| c.real_type().is_character_type());
    for (i, _) in chars.enumerate().filter(|(_, c)| c.binary) {
        lenenc(&mut cs, i as u64);
        lenenc(&mut cs, 63);
    }
    tlv(&mut out, 2, &cs);
    // COLUMN_NAME, unless left out (bit 2) or one short (bit 3).
    if mode & 4 == 0 {
        let shown = if mode & 8 != 0 {
            cols.len() - 1
        } else {
            cols.len()
        };
        let mut names = Vec::new();
        for name in &NAMES[..shown] {
            lenenc_str(&mut names, name.as_bytes());
        }
        tlv(&mut out, 4, &names);
    }
    // SET_STR_VALUE (5) and ENUM_STR_VALUE (6): each column's labels.
    for (field, ty) in [(5, Ty::Set), (6, Ty::Enum)] {
        let mut v = Vec::new();
        for c in cols.iter().filter(|c| c.ty == ty) {
            lenenc(&mut v, c.labels.len() as u64);
            for l in &c.labels {
                lenenc_str(&mut v, l.as_bytes());
            }
        }
        if !v.is_empty() {
            tlv(&mut out, field, &v);
        }
    }
    // SIMPLE_PRIMARY_KEY, with a bogus index past the last column when bit 4 says so.
    let mut pk = Vec::new();
    for (i, _) in cols.iter().enumerate().filter(|(_, c)| c.pk) {
        lenenc(&mut pk, i as u64);
    }
    if mode & 16 != 0 {
        lenenc(&mut pk, cols.len() as u64);
    }
    if !pk.is_empty() {
        tlv(&mut out, 8, &pk);
    }
    // ENUM_AND_SET_DEFAULT_CHARSET.
    if cols.iter().any(|c| matches!(c.ty, Ty::Enum | Ty::Set)) {
        let mut cs = Vec::new();
        lenenc(&mut cs, 45);
        tlv(&mut out, 10, &cs);
    }
    out
}

/// The body of a TABLE_MAP event for `shop.orders` with these columns.
fn table_map(cols: &[Col], mode: u8) -> Vec<u8> {
    let mut out = Vec::new();
    post_header(&mut out);
    for name in [&b"shop"[..], b"orders"] {
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(0);
    }
    lenenc(&mut out, cols.len() as u64);
    out.extend(cols.iter().map(|c| c.wire as u8));
    let meta: Vec<u8> = cols.iter().flat_map(|c| c.meta.iter().copied()).collect();
    lenenc_str(&mut out, &meta);
    out.extend(std::iter::repeat_n(0xFF, cols.len().div_ceil(8))); // all nullable
    out.extend(optional_metadata(cols, mode));
    out
}

/// The body of a v2 rows event: every column in each image, then `rows`.
fn rows_event(n: usize, images: usize, rows: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    post_header(&mut out);
    out.extend_from_slice(&2u16.to_le_bytes()); // no extra data
    lenenc(&mut out, n as u64);
    for _ in 0..images {
        out.extend(std::iter::repeat_n(0xFF, n.div_ceil(8)));
    }
    out.extend_from_slice(rows);
    out
}

fn fraction_digits(s: &str) -> usize {
    match s.rsplit_once('.') {
        Some((_, f)) if f.bytes().all(|c| c.is_ascii_digit()) => f.len(),
        _ => 0,
    }
}

/// A value has the form its column's kind promises.
fn check_out(kind: &Kind, out: &Out) {
    use base64::Engine as _;
    match (kind, out) {
        (_, Out::Null) | (Kind::Int | Kind::Year, Out::I(_) | Out::U(_)) => {}
        (Kind::Binary, Out::S(s)) => {
            let ok = base64::engine::general_purpose::STANDARD.decode(s).is_ok();
            assert!(ok, "binary value not base64: {s:?}");
        }
        (Kind::DateTime(p) | Kind::Time(p), Out::S(s)) => {
            assert_eq!(fraction_digits(s), usize::from(*p), "{kind:?} {s:?}");
        }
        (Kind::Timestamp(p), Out::S(s)) => {
            let t = s.strip_suffix('Z').expect("a timestamp ends with Z");
            assert_eq!(fraction_digits(t), usize::from(*p), "{kind:?} {s:?}");
        }
        (Kind::Date, Out::S(s)) => assert_eq!(s.matches('-').count(), 2, "{s:?}"),
        (Kind::Set(lits), Out::S(s)) => {
            assert!(s.is_empty() || s.split(',').all(|m| lits.iter().any(|l| l == m)));
        }
        (Kind::Year | Kind::Float | Kind::Decimal | Kind::Text | Kind::Json, Out::S(_)) => {}
        (Kind::Enum(_), Out::S(_)) => {}
        (k, o) => panic!("a {k:?} column rendered as {o:?}"),
    }
}

/// One change event from decoded images, read back as the transform reads it.
fn check_event(schema: &TableSchema, before: Option<&[Out]>, after: Option<&[Out]>) {
    let op = match (before, after) {
        (None, Some(_)) => Op::Create,
        (Some(_), None) => Op::Delete,
        (Some(_), Some(_)) => Op::Update,
        (None, None) => return,
    };
    let src = MysqlSourceBlock {
        version: "1",
        connector: "mysql",
        name: "etl",
        entity: &schema.entity,
        ts_ms: 1_700_000_000_000,
        server_id: 1,
        file: "mysql-bin.000003",
        pos: 4711,
        row: 0,
        gtid: Some("0-1-42"),
        db: &schema.db,
        table: &schema.table,
        snapshot: false,
        source_key: "1:mysql-bin.000003:4711:0",
    };
    let ev = encode(schema, op, before, after, &src, 0);
    let (env, fields) = EnvelopeIn::parse(&ev.payload).expect("the change event is an envelope");
    assert_eq!(env.op, op);
    for (image, raw) in [(before, env.before), (after, env.after)] {
        let Some(image) = image else { continue };
        let raw = raw.expect("the image is in the envelope").get();
        let m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(raw).expect("an image is a JSON object");
        assert_eq!(m.len(), image.len(), "one member per column");
    }
    let key = source_key(&fields).expect("a source key");
    assert_eq!(key, "mysql:1:mysql-bin.000003:4711:0");
    let k: serde_json::Value = serde_json::from_slice(&ev.key).expect("the key is JSON");
    assert!(k.is_object());
}

/// A rows event's images through the stream's decoding, as `stream.rs` does.
fn decode_rows(schema: &TableSchema, rows: RowsEventRows<'_>) {
    for row in rows {
        // A broken row ends the event (its end cannot be found).
        let Ok((before, after)) = row else { break };
        let before = before.map(|mut r| row_values(schema, &mut r)).transpose();
        let after = after.map(|mut r| row_values(schema, &mut r)).transpose();
        // A row that cannot be rendered is dead-lettered.
        let (Ok(before), Ok(after)) = (before, after) else {
            continue;
        };
        for image in [&before, &after].into_iter().flatten() {
            assert_eq!(image.len(), schema.kinds.len());
            for (kind, out) in schema.kinds.iter().zip(image) {
                check_out(kind, out);
            }
        }
        check_event(schema, before.as_deref(), after.as_deref());
    }
}

fn check_schema(schema: &TableSchema, cols: &[Col]) {
    let n = cols.len();
    assert_eq!(schema.names.len(), n);
    assert_eq!(schema.kinds.len(), n);
    assert_eq!(schema.types.len(), n);
    for (c, kind) in cols.iter().zip(&schema.kinds) {
        assert_eq!(*kind, c.expected_kind(), "{:?}", c.ty);
    }
    let shape = schema.shape();
    assert_eq!(shape.columns.len(), n);
    assert_eq!(shape.pk.len(), schema.pk.len());
}

fn rows_mode(mode: u8, mut input: Input<'_>) {
    let n = 1 + usize::from(input.byte() % 8);
    let cols: Vec<Col> = (0..n)
        .map(|_| {
            let [t, a, b, f] = input.array();
            Col::new(TYPES[usize::from(t) % TYPES.len()], a, b, f)
        })
        .collect();
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let tm = table_map(&cols, mode);
    let ctx = BinlogCtx::new(tm.len(), &fde, EventType::TABLE_MAP_EVENT as u8);
    let tme = TableMapEvent::deserialize(ctx, &mut ParseBuf(&tm)).expect("a valid TABLE_MAP");
    let schema = TableSchema::from_table_map(&tme, "etl");
    if let Ok(schema) = &schema {
        check_schema(schema, &cols);
    }
    let names_ok = mode & (4 | 8) == 0;
    let pk_ok = mode & 16 == 0;
    assert_eq!(
        schema.is_ok(),
        names_ok && pk_ok,
        "{:?}",
        schema.as_ref().err()
    );
    let Ok(schema) = schema else { return };

    let kind = [
        EventType::WRITE_ROWS_EVENT,
        EventType::UPDATE_ROWS_EVENT,
        EventType::DELETE_ROWS_EVENT,
        EventType::WRITE_ROWS_EVENT,
    ][usize::from(mode & 3)];
    let images = if kind == EventType::UPDATE_ROWS_EVENT {
        2
    } else {
        1
    };
    let body = rows_event(n, images, input.rest());
    let ctx = BinlogCtx::new(body.len(), &fde, kind as u8);
    let mut buf = ParseBuf(&body);
    match kind {
        EventType::UPDATE_ROWS_EVENT => {
            let ev = UpdateRowsEvent::deserialize(ctx, &mut buf).expect("a rows event");
            decode_rows(&schema, ev.rows(&tme));
        }
        EventType::DELETE_ROWS_EVENT => {
            let ev = DeleteRowsEvent::deserialize(ctx, &mut buf).expect("a rows event");
            decode_rows(&schema, ev.rows(&tme));
        }
        _ => {
            let ev = WriteRowsEvent::deserialize(ctx, &mut buf).expect("a rows event");
            decode_rows(&schema, ev.rows(&tme));
        }
    }
}

fn render_mode(mut input: Input<'_>) {
    let [k, p, v] = input.array();
    let p = p % 7;
    let labels: Arc<[String]> = (0..3 + usize::from(p)).map(|i| format!("v{i}")).collect();
    let kind = match k % 13 {
        0 => Kind::Int,
        1 => Kind::Float,
        2 => Kind::Decimal,
        3 => Kind::Year,
        4 => Kind::Date,
        5 => Kind::DateTime(p),
        6 => Kind::Timestamp(p),
        7 => Kind::Time(p),
        8 => Kind::Text,
        9 => Kind::Json,
        10 => Kind::Binary,
        11 => Kind::Enum(labels),
        _ => Kind::Set(labels),
    };
    let value = match v % 8 {
        0 => Value::NULL,
        1 => Value::Bytes(input.rest().to_vec()),
        2 => Value::Int(i64::from_le_bytes(input.array())),
        3 => Value::UInt(u64::from_le_bytes(input.array())),
        4 => Value::Float(f32::from_le_bytes(input.array())),
        5 => Value::Double(f64::from_le_bytes(input.array())),
        6 => {
            let [y0, y1, mo, d, h, mi, s] = input.array();
            let us = u32::from_le_bytes(input.array());
            Value::Date(u16::from_le_bytes([y0, y1]), mo, d, h, mi, s, us)
        }
        _ => {
            let neg = input.byte() & 1 != 0;
            let days = u32::from_le_bytes(input.array());
            let [h, m, s] = input.array();
            Value::Time(neg, days, h, m, s, u32::from_le_bytes(input.array()))
        }
    };
    if let Ok(out) = render(&kind, value) {
        check_out(&kind, &out);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte();
    if mode & 0x80 != 0 {
        render_mode(input);
    } else {
        rows_mode(mode, input);
    }
});
