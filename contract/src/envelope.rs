use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

/// Kind of change, as in Debezium: `c` create, `u` update, `d` delete, `r` read (snapshot);
/// and `s`, a schema change of a database table (its `after` holds the table's columns from
/// then on; see docs/change-events.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "c")]
    Create,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "d")]
    Delete,
    #[serde(rename = "r")]
    Read,
    #[serde(rename = "s")]
    Schema,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Schema => "s",
        }
    }
}

/// The record value published by a source agent. `R` is the row image (usually a map of
/// column name to value) and `S` the connector's source block.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, R: Serialize, S: Serialize> {
    pub before: Option<R>,
    pub after: Option<R>,
    pub op: Op,
    pub source: &'a S,
    pub ts_ms: i64,
}

/// `source` block of the CSV connector: where the row sits in its file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CsvSource<'a> {
    pub version: &'a str,
    /// Always `csv`.
    pub connector: &'a str,
    /// Logical name of the pipeline (the topic prefix).
    pub name: &'a str,
    pub entity: &'a str,
    /// When the agent read the row, in milliseconds since the epoch.
    pub ts_ms: i64,
    /// Path of the file when the row was read.
    pub file: &'a str,
    /// Identity of the file's content generation: stays the same across renames and appends,
    /// changes when the file is truncated or replaced.
    pub file_id: &'a str,
    /// 1-based line number of the record's first line (the header is line 1).
    pub line: u64,
    /// Byte offset of the record's first byte in the file.
    pub offset: u64,
    pub snapshot: bool,
}

/// A record that could not be turned into a change event, published to `<prefix>.dlq`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// Why the record was rejected, in words a user can act on.
    pub reason: String,
    pub connector: String,
    pub name: String,
    pub entity: Option<String>,
    /// Where the record came from (for CSV: file, file_id, line, offset).
    pub origin: serde_json::Value,
    /// Stable identity of the origin, so that a record published twice is stored once.
    pub source_key: String,
    /// The original bytes, base64 (standard alphabet, padded).
    pub raw_base64: String,
    /// The original bytes as text, when they are valid UTF-8.
    pub raw_text: Option<String>,
    /// Length of the original record; `raw_*` hold only its first
    /// [`DEAD_LETTER_RAW_LIMIT`] bytes when `raw_truncated` is true.
    #[serde(default)]
    pub raw_length: u64,
    #[serde(default)]
    pub raw_truncated: bool,
    pub ts_ms: i64,
}

/// Bytes of the original record kept in a dead letter: enough to diagnose it, small enough
/// for the dead letter itself to fit in a Kafka message.
pub const DEAD_LETTER_RAW_LIMIT: usize = 256 * 1024;

/// Where a dead letter came from.
#[derive(Debug, Clone)]
pub struct DeadLetterOrigin<'a> {
    pub connector: &'a str,
    pub name: &'a str,
    pub entity: Option<&'a str>,
    /// Position fields (for CSV: file, file_id, line, offset).
    pub position: serde_json::Value,
    pub source_key: String,
}

impl DeadLetter {
    pub fn new(
        reason: impl Into<String>,
        origin: DeadLetterOrigin<'_>,
        raw: &[u8],
        ts_ms: i64,
    ) -> Self {
        let raw_length = raw.len() as u64;
        let raw_truncated = raw.len() > DEAD_LETTER_RAW_LIMIT;
        let raw = &raw[..raw.len().min(DEAD_LETTER_RAW_LIMIT)];
        DeadLetter {
            reason: reason.into(),
            connector: origin.connector.to_string(),
            name: origin.name.to_string(),
            entity: origin.entity.map(str::to_string),
            origin: origin.position,
            source_key: origin.source_key,
            raw_base64: base64::engine::general_purpose::STANDARD.encode(raw),
            raw_text: std::str::from_utf8(raw).ok().map(str::to_string),
            raw_length,
            raw_truncated,
            ts_ms,
        }
    }

    /// The original bytes.
    pub fn raw(&self) -> Result<Vec<u8>, ContractError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.raw_base64)
            .map_err(|e| ContractError::Invalid(format!("raw_base64 is not base64: {e}")))
    }
}

/// Errors reading a record of the contract.
#[derive(Debug, Error)]
pub enum ContractError {
    #[error("not a change-event envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid change event: {0}")]
    Invalid(String),
}

/// Consumer view of an envelope; borrows from the record bytes.
#[derive(Debug, Deserialize)]
pub struct EnvelopeIn<'a> {
    #[serde(borrow, default)]
    pub before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub after: Option<&'a RawValue>,
    pub op: Op,
    #[serde(borrow)]
    pub source: &'a RawValue,
    #[serde(default)]
    pub ts_ms: Option<i64>,
}

/// The position fields of a `source` block that identify an event, for every connector.
#[derive(Debug, Default, Deserialize)]
pub struct SourceFields {
    pub connector: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub entity: Option<String>,
    #[serde(default)]
    pub ts_ms: Option<i64>,
    /// Explicit identity of the event's position, for connectors whose position is not
    /// the CSV one (binlog file/pos/row, API record and content hash, blob etag/offset...).
    #[serde(default)]
    pub source_key: Option<String>,
    // csv
    #[serde(default)]
    pub file_id: Option<String>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub line: Option<u64>,
}

impl<'a> EnvelopeIn<'a> {
    /// Parses a record value and checks the fields every event must have.
    pub fn parse(value: &'a [u8]) -> Result<(Self, SourceFields), ContractError> {
        let env: EnvelopeIn<'a> = serde_json::from_slice(value)?;
        let src: SourceFields = serde_json::from_str(env.source.get())?;
        match env.op {
            Op::Delete if env.before.is_none() => {
                return Err(ContractError::Invalid("op d without a before image".into()))
            }
            Op::Create | Op::Update | Op::Read | Op::Schema if env.after.is_none() => {
                return Err(ContractError::Invalid(format!(
                    "op {} without an after image",
                    env.op.as_str()
                )))
            }
            _ => {}
        }
        Ok((env, src))
    }
}

/// Stable identity of an event's source position: the same row read twice (for example
/// re-published after a crash) gets the same key, two different rows never do.
///
/// CSV: `csv:<file_id>:<offset>`. Every other connector writes its own `source_key` string
/// into the source block (e.g. `<server_id>:<binlog file>:<pos>:<row>`), and the key is
/// `<connector>:<source_key>`.
pub fn source_key(src: &SourceFields) -> Result<String, ContractError> {
    match src.connector.as_str() {
        "csv" => match (&src.file_id, src.offset) {
            (Some(file_id), Some(offset)) => Ok(csv_source_key(file_id, offset)),
            _ => Err(ContractError::Invalid(
                "csv source without file_id and offset".into(),
            )),
        },
        other => match &src.source_key {
            Some(k) if !k.is_empty() => Ok(format!("{other}:{k}")),
            _ => Err(ContractError::Invalid(format!(
                "source block of connector {other:?} has no source_key"
            ))),
        },
    }
}

/// `csv:<file_id>:<byte offset>`.
pub fn csv_source_key(file_id: &str, offset: u64) -> String {
    format!("csv:{file_id}:{offset}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn csv_envelope_round_trip() {
        let src = CsvSource {
            version: crate::CONTRACT_VERSION,
            connector: "csv",
            name: "etl",
            entity: "sales",
            ts_ms: 1,
            file: "/in/sales.csv",
            file_id: "abc",
            line: 7,
            offset: 120,
            snapshot: false,
        };
        let mut row = BTreeMap::new();
        row.insert("sale_id", "S1");
        row.insert("amount", "9.50");
        let env = Envelope {
            before: None,
            after: Some(&row),
            op: Op::Create,
            source: &src,
            ts_ms: 2,
        };
        let bytes = serde_json::to_vec(&env).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["op"], "c");
        assert_eq!(v["before"], serde_json::Value::Null);
        assert_eq!(v["after"]["amount"], "9.50");
        assert_eq!(v["source"]["line"], 7);
        let (back, fields) = EnvelopeIn::parse(&bytes).unwrap();
        assert_eq!(back.op, Op::Create);
        assert_eq!(source_key(&fields).unwrap(), "csv:abc:120");
    }

    #[test]
    fn rejects_incomplete_events() {
        let err = EnvelopeIn::parse(br#"{"op":"c","source":{"connector":"csv"},"after":null}"#);
        assert!(err.is_err());
        let err = EnvelopeIn::parse(br#"{"op":"d","source":{"connector":"csv"},"after":null}"#);
        assert!(err.is_err());
        assert!(EnvelopeIn::parse(b"not json").is_err());
        let (_, f) =
            EnvelopeIn::parse(br#"{"op":"c","source":{"connector":"x"},"after":{}}"#).unwrap();
        assert!(source_key(&f).is_err());
        let (_, f) = EnvelopeIn::parse(
            br#"{"op":"c","source":{"connector":"mysql","source_key":"1:bin.000002:4711:0"},"after":{}}"#,
        )
        .unwrap();
        assert_eq!(source_key(&f).unwrap(), "mysql:1:bin.000002:4711:0");
    }

    #[test]
    fn dead_letter_keeps_bytes() {
        let dl = DeadLetter::new(
            "bad",
            DeadLetterOrigin {
                connector: "csv",
                name: "etl",
                entity: Some("sales"),
                position: serde_json::json!({"line": 3}),
                source_key: "csv:x:10".into(),
            },
            b"\xff\x00a",
            0,
        );
        assert_eq!(dl.raw().unwrap(), b"\xff\x00a");
        assert!(dl.raw_text.is_none());
    }
}
