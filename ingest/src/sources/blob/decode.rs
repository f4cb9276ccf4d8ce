//! Streaming record decoders for blobs: CSV, JSON lines and JSON arrays, optionally
//! gzip-compressed. A blob is fed chunk by chunk (ranged GETs); the decoder keeps only the
//! bytes of the record in progress, never the whole blob.
//!
//! Every record gets an index (0-based, counting bad records too, not the CSV header) and
//! the offset of its first byte in the decoded stream. For uncompressed blobs that offset is
//! the byte offset in the blob, so a reader can resume there with
//! [`Decoder::resume_at`]; a gzip blob is re-read from its start and the records before the
//! checkpointed index are skipped.

use crate::sources::csv::records::{Item, Splitter};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;

/// The record format of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
    /// One JSON array of objects.
    Json,
}

/// Format and compression of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub format: Format,
    pub gzip: bool,
}

/// Format by file extension (`.csv`, `.jsonl`, `.ndjson`, `.json`, each optionally `.gz`);
/// `configured` (when not `auto`) wins over the extension, but `.gz` still means gzip.
pub fn detect(name: &str, configured: Option<Format>) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    let (stem, gzip) = match lower.strip_suffix(".gz") {
        Some(s) => (s, true),
        None => (lower.as_str(), false),
    };
    let by_ext = if stem.ends_with(".csv") {
        Some(Format::Csv)
    } else if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
        Some(Format::Jsonl)
    } else if stem.ends_with(".json") {
        Some(Format::Json)
    } else {
        None
    };
    configured.or(by_ext).map(|format| Kind { format, gzip })
}

/// One record found in a blob.
#[derive(Debug)]
pub struct Record<'a> {
    pub index: u64,
    /// Offset of the record's first byte in the decoded stream.
    pub offset: u64,
    /// 1-based line of the record's first byte (JSON lines, CSV; 0 for JSON arrays).
    pub line: u64,
    pub raw: &'a [u8],
    /// The record as a JSON object, or why it is not one.
    pub value: Result<Obj<'a>, String>,
}

/// A record: a JSON object as found in the blob (published verbatim, no re-encoding), or
/// built from a CSV row.
#[derive(Debug)]
pub enum Obj<'a> {
    /// The object's text and its top-level members (raw JSON values).
    Raw(&'a RawValue, BTreeMap<&'a str, &'a RawValue>),
    Map(Map<String, Value>),
}

impl Obj<'_> {
    /// A top-level member as key text: strings unquoted, numbers and booleans as written;
    /// `None` when missing, null, an object or an array.
    pub fn key_text(&self, field: &str) -> Option<String> {
        match self {
            Obj::Raw(_, fields) => {
                let raw = fields.get(field)?.get();
                match raw.as_bytes().first()? {
                    b'"' => serde_json::from_str::<String>(raw).ok(),
                    b'{' | b'[' | b'n' => None,
                    _ => Some(raw.to_string()),
                }
            }
            Obj::Map(m) => match m.get(field)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
        }
    }
}

impl Serialize for Obj<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Obj::Raw(text, _) => text.serialize(s),
            Obj::Map(m) => m.serialize(s),
        }
    }
}

/// The blob itself cannot be read on (corrupt gzip, broken JSON array structure): the
/// rest of it goes to the dead-letter topic in one piece.
#[derive(Debug)]
pub struct Fatal {
    pub reason: String,
    /// Decoded offset where the unreadable part starts.
    pub offset: u64,
    /// The first bytes of the unreadable part (decoded when possible).
    pub raw: Vec<u8>,
}

enum Inner {
    Jsonl {
        /// Skipping the rest of an oversized line.
        skipping: bool,
    },
    Json(JsonArray),
    Csv {
        splitter: Box<Splitter>,
        header: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Before the opening `[`.
    Start,
    /// Inside the array, between elements.
    Between,
    /// After the closing `]`.
    End,
}

struct JsonArray {
    state: ArrayState,
}

pub struct Decoder {
    inner: Inner,
    gz: Option<flate2::write::MultiGzDecoder<Vec<u8>>>,
    /// Decoded bytes not yet consumed, starting at decoded offset `base`.
    buf: Vec<u8>,
    base: u64,
    line: u64,
    index: u64,
    max_record: usize,
    fatal: bool,
}

/// Offset, line and index right after the last record returned: where to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    pub offset: u64,
    pub line: u64,
    pub index: u64,
}

/// A CSV record as an object of the header's names to its fields (strings), or why it is
/// not one (field count differs from the header's, a field is not UTF-8).
fn csv_object<F: AsRef<[u8]>>(h: &[String], fields: &[F]) -> Result<Obj<'static>, String> {
    if fields.len() != h.len() {
        return Err(format!(
            "expected {} fields as in the header, found {}",
            h.len(),
            fields.len()
        ));
    }
    let mut m = Map::with_capacity(h.len());
    for (name, v) in h.iter().zip(fields) {
        match std::str::from_utf8(v.as_ref()) {
            Ok(s) => {
                m.insert(name.clone(), Value::String(s.to_string()));
            }
            Err(e) => {
                // The column's name (capped), never the field's bytes.
                let name: String = name.chars().take(80).collect();
                return Err(format!(
                    "field {name:?} is not valid UTF-8 (invalid byte at {} of the field)",
                    e.valid_up_to()
                ));
            }
        }
    }
    Ok(Obj::Map(m))
}

impl Decoder {
    pub fn new(kind: Kind, delimiter: u8, max_record: usize) -> Self {
        let inner = match kind.format {
            Format::Jsonl => Inner::Jsonl { skipping: false },
            Format::Json => Inner::Json(JsonArray {
                state: ArrayState::Start,
            }),
            Format::Csv => Inner::Csv {
                splitter: Box::new(Splitter::new(delimiter, max_record)),
                header: None,
            },
        };
        Decoder {
            inner,
            gz: kind
                .gzip
                .then(|| flate2::write::MultiGzDecoder::new(Vec::new())),
            buf: Vec::new(),
            base: 0,
            line: 1,
            index: 0,
            max_record,
            fatal: false,
        }
    }

    /// Positions an uncompressed decoder at a checkpointed record boundary (the CSV header,
    /// when any, must be given: it is not read again).
    pub fn resume_at(&mut self, at: Resume, csv_header: Option<Vec<String>>) {
        self.base = at.offset;
        self.line = at.line.max(1);
        self.index = at.index;
        match &mut self.inner {
            Inner::Json(a) if at.offset > 0 => a.state = ArrayState::Between,
            Inner::Csv { header, .. } => *header = csv_header,
            _ => {}
        }
    }

    pub fn csv_header(&self) -> Option<&[String]> {
        match &self.inner {
            Inner::Csv { header, .. } => header.as_deref(),
            _ => None,
        }
    }

    pub fn position(&self) -> Resume {
        Resume {
            offset: self.base,
            line: self.line,
            index: self.index,
        }
    }

    /// Feeds the next bytes of the blob (as stored: compressed or not) and calls `f` for every
    /// complete record. `eof` says these are the last bytes. Returns the error that makes
    /// the rest of the blob unreadable, after the records before it were given to `f`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        eof: bool,
        f: &mut dyn FnMut(Record<'_>),
    ) -> Result<(), Fatal> {
        if self.fatal {
            return Ok(());
        }
        let mut gz_err = None;
        if let Some(gz) = &mut self.gz {
            let res = gz.write_all(chunk).and_then(|_| gz.flush());
            let res = match res {
                Ok(()) if eof => gz.try_finish(),
                other => other,
            };
            self.buf.append(gz.get_mut());
            if let Err(e) = res {
                gz_err = Some(format!("gzip stream is corrupt or truncated: {e}"));
            }
        } else {
            self.buf.extend_from_slice(chunk);
        }
        let at_end = eof || gz_err.is_some();
        let res = self.split(at_end && gz_err.is_none(), f);
        let res = match (res, gz_err) {
            (Err(fatal), _) => Err(fatal),
            (Ok(()), Some(reason)) => Err(Fatal {
                reason,
                offset: self.base,
                raw: std::mem::take(&mut self.buf),
            }),
            (Ok(()), None) => Ok(()),
        };
        if res.is_err() {
            self.fatal = true;
            self.buf.clear();
        }
        res
    }

    fn split(&mut self, eof: bool, f: &mut dyn FnMut(Record<'_>)) -> Result<(), Fatal> {
        // The format's state is taken out while the buffer is split, and put back after.
        let mut inner = std::mem::replace(&mut self.inner, Inner::Jsonl { skipping: false });
        let consumed = match &mut inner {
            Inner::Jsonl { skipping } => Ok(self.split_jsonl(skipping, eof, f)),
            Inner::Json(arr) => self.split_json(arr, eof, f),
            Inner::Csv { splitter, header } => Ok(self.split_csv(splitter, header, eof, f)),
        };
        self.inner = inner;
        let consumed = consumed?;
        self.buf.drain(..consumed);
        self.base += consumed as u64;
        Ok(())
    }

    /// JSON lines: every complete line (and the last one at `eof`) is a record; returns the
    /// bytes consumed.
    fn split_jsonl(
        &mut self,
        skipping: &mut bool,
        eof: bool,
        f: &mut dyn FnMut(Record<'_>),
    ) -> usize {
        let max = self.max_record;
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            let nl = rest.iter().position(|&b| b == b'\n');
            let (end, next) = match nl {
                Some(i) => (pos + i, pos + i + 1),
                None if eof && !rest.is_empty() => (self.buf.len(), self.buf.len()),
                None => {
                    if !*skipping && rest.len() > max {
                        // A line without an end past the limit: dead-letter its start
                        // and skip to the next newline.
                        let raw = &self.buf[pos..pos + max];
                        f(Record {
                            index: self.index,
                            offset: self.base + pos as u64,
                            line: self.line,
                            raw,
                            value: Err(format!("line longer than {max} bytes")),
                        });
                        self.index += 1;
                        *skipping = true;
                    }
                    if *skipping {
                        pos = self.buf.len();
                    }
                    break pos;
                }
            };
            let line_bytes = &self.buf[pos..end];
            let line_no = self.line;
            self.line += 1;
            if *skipping {
                *skipping = false;
                pos = next;
                continue;
            }
            let trimmed = trim_ascii(line_bytes);
            if !trimmed.is_empty() {
                f(Record {
                    index: self.index,
                    offset: self.base + pos as u64,
                    line: line_no,
                    raw: line_bytes,
                    value: parse_object(trimmed),
                });
                self.index += 1;
            }
            pos = next;
            if pos >= self.buf.len() {
                break pos;
            }
        }
    }

    /// One JSON array: every complete element is a record; returns the bytes consumed, or
    /// the error that makes the rest of the blob unreadable.
    fn split_json(
        &mut self,
        arr: &mut JsonArray,
        eof: bool,
        f: &mut dyn FnMut(Record<'_>),
    ) -> Result<usize, Fatal> {
        let max = self.max_record;
        let mut pos = 0;
        loop {
            while pos < self.buf.len() && self.buf[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if pos >= self.buf.len() {
                break;
            }
            match arr.state {
                ArrayState::Start => {
                    if self.buf[pos] == b'[' {
                        arr.state = ArrayState::Between;
                        pos += 1;
                    } else {
                        return Err(
                            self.fatal_at(pos, "a JSON array blob must start with '['".into())
                        );
                    }
                }
                ArrayState::End => {
                    return Err(self.fatal_at(pos, "data after the end of the JSON array".into()));
                }
                ArrayState::Between => match self.buf[pos] {
                    b',' => pos += 1,
                    b']' => {
                        arr.state = ArrayState::End;
                        pos += 1;
                    }
                    _ => match element_end(&self.buf[pos..]) {
                        Some(len) => {
                            let raw = &self.buf[pos..pos + len];
                            f(Record {
                                index: self.index,
                                offset: self.base + pos as u64,
                                line: 0,
                                raw,
                                value: parse_object(raw),
                            });
                            self.index += 1;
                            pos += len;
                        }
                        None if self.buf.len() - pos > max => {
                            return Err(self.fatal_at(
                                pos,
                                format!("JSON array element longer than {max} bytes"),
                            ))
                        }
                        None => break,
                    },
                },
            }
        }
        if eof && arr.state != ArrayState::End {
            let reason = if arr.state == ArrayState::Start && pos >= self.buf.len() {
                None // an empty blob holds no records
            } else {
                Some("the JSON array is not closed (truncated blob?)".to_string())
            };
            if let Some(reason) = reason {
                return Err(self.fatal_at(pos.min(self.buf.len()), reason));
            }
        }
        Ok(pos)
    }

    /// CSV: the first record is the header, every later complete record (and the last one
    /// at `eof`, newline or not) a record; returns the bytes consumed.
    fn split_csv(
        &mut self,
        splitter: &mut Splitter,
        header: &mut Option<Vec<String>>,
        eof: bool,
        f: &mut dyn FnMut(Record<'_>),
    ) -> usize {
        let max = self.max_record;
        let base = self.base;
        let mut line = self.line;
        let mut index = self.index;
        let mut tail = Vec::new();
        let data: &[u8] = if eof && !self.buf.ends_with(b"\n") && !self.buf.is_empty() {
            // The last record has no newline: complete it.
            tail.extend_from_slice(&self.buf);
            tail.push(b'\n');
            &tail
        } else {
            &self.buf
        };
        let consumed = splitter.split(data, |item| {
            let (start, raw, nl_before, nl, fields) = match item {
                Item::Record(r) => (
                    r.start,
                    r.raw,
                    r.newlines_before,
                    r.newlines,
                    Some(r.fields),
                ),
                Item::Oversized(o) => (o.start, o.raw, o.newlines_before, o.newlines, None),
            };
            line += nl_before;
            let rec_line = line;
            line += nl;
            let Some(h) = header.as_ref() else {
                // The first record is the header.
                let names = fields
                    .unwrap_or_default()
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).trim().to_string())
                    .collect();
                *header = Some(names);
                return;
            };
            let value = match fields {
                None => Err(format!(
                    "record longer than {max} bytes without an end (unbalanced quote?)"
                )),
                Some(fields) => csv_object(h, &fields),
            };
            f(Record {
                index,
                offset: base + start as u64,
                line: rec_line,
                raw,
                value,
            });
            index += 1;
        });
        self.line = line;
        self.index = index;
        consumed.min(self.buf.len())
    }

    fn fatal_at(&mut self, pos: usize, reason: String) -> Fatal {
        let raw = self.buf[pos..].to_vec();
        Fatal {
            reason,
            offset: self.base + pos as u64,
            raw,
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &b[s..e]
}

/// The byte that opens a JSON object.
const OBJECT_START: u8 = b'{';

fn parse_object(raw: &[u8]) -> Result<Obj<'_>, String> {
    // Fast path: the object's text and its members borrowed from the blob's bytes.
    if raw.first() == Some(&OBJECT_START) {
        if let (Ok(text), Ok(fields)) = (
            serde_json::from_slice::<&RawValue>(raw),
            serde_json::from_slice::<BTreeMap<&str, &RawValue>>(raw),
        ) {
            return Ok(Obj::Raw(text, fields));
        }
    }
    // Escaped member names cannot be borrowed; errors need the full parse anyway.
    match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(m)) => Ok(Obj::Map(m)),
        Ok(other) => Err(format!(
            "expected a JSON object, found {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Length of the JSON value at the start of `b` (which starts at a non-space byte), when
/// its end is in `b`: the value ends at depth 0 before a `,` or `]` outside strings.
fn element_end(b: &[u8]) -> Option<usize> {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => return Some(trim_end(&b[..i])),
            _ => {}
        }
    }
    None
}

fn trim_end(b: &[u8]) -> usize {
    b.iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Vec<(u64, u64, Result<String, String>)>;

    fn run(kind: Kind, data: &[u8], chunk: usize) -> (Out, Option<String>) {
        let mut d = Decoder::new(kind, b',', 1 << 20);
        let mut out = Vec::new();
        let mut fatal = None;
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(chunk).collect()
        };
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            if let Err(e) = d.feed(c, i + 1 == n, &mut |r| {
                out.push((
                    r.index,
                    r.offset,
                    r.value.map(|m| {
                        let v: Value =
                            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
                        v.to_string()
                    }),
                ))
            }) {
                fatal = Some(e.reason);
            }
        }
        (out, fatal)
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const JSONL: Kind = Kind {
        format: Format::Jsonl,
        gzip: false,
    };

    #[test]
    fn detects_formats() {
        assert_eq!(
            detect("2026/01/02/events-1.jsonl.gz", None),
            Some(Kind {
                format: Format::Jsonl,
                gzip: true
            })
        );
        assert_eq!(detect("a.JSON", None).unwrap().format, Format::Json);
        assert_eq!(detect("a.csv", None).unwrap().format, Format::Csv);
        assert!(detect("a.txt", None).is_none());
        assert_eq!(
            detect("a.txt.gz", Some(Format::Csv)),
            Some(Kind {
                format: Format::Csv,
                gzip: true
            })
        );
    }

    #[test]
    fn jsonl_in_any_chunking_with_a_bad_line() {
        let data = b"{\"id\":1}\n\n{\"id\":2,\"s\":\"a\\nb\"}\nnot json\n{\"id\":3}";
        for chunk in [1, 3, 7, 100] {
            let (out, fatal) = run(JSONL, data, chunk);
            assert!(fatal.is_none());
            assert_eq!(out.len(), 4, "chunk {chunk}");
            assert_eq!(out[0], (0, 0, Ok("{\"id\":1}".into())));
            assert_eq!(out[1].1, 10);
            assert!(out[2].2.as_ref().unwrap_err().contains("invalid JSON"));
            assert_eq!(out[3], (3, 39, Ok("{\"id\":3}".into())));
        }
    }

    #[test]
    fn json_array_streams_elements() {
        let data = br#" [ {"id":1,"a":[1,{"b":"]"}]} , {"id":2}, 5 ] "#;
        let kind = Kind {
            format: Format::Json,
            gzip: false,
        };
        for chunk in [1, 4, 100] {
            let (out, fatal) = run(kind, data, chunk);
            assert!(fatal.is_none(), "{fatal:?}");
            assert_eq!(out.len(), 3);
            assert_eq!(out[1].2, Ok("{\"id\":2}".into()));
            assert!(out[2].2.as_ref().unwrap_err().contains("a number"));
        }
        let (out, fatal) = run(kind, br#"[{"id":1},{"id":2"#, 5);
        assert_eq!(out.len(), 1);
        assert!(fatal.unwrap().contains("not closed"));
        let (out, fatal) = run(kind, b"", 5);
        assert!(out.is_empty() && fatal.is_none());
    }

    #[test]
    fn json_array_resumes_mid_array() {
        let data = br#"[{"id":1},{"id":2},{"id":3}]"#;
        let kind = Kind {
            format: Format::Json,
            gzip: false,
        };
        let mut d = Decoder::new(kind, b',', 1 << 20);
        let mut seen = Vec::new();
        d.feed(&data[..12], false, &mut |r| seen.push(r.index))
            .unwrap();
        let at = d.position();
        assert_eq!(seen, vec![0]);
        let mut d2 = Decoder::new(kind, b',', 1 << 20);
        d2.resume_at(at, None);
        let mut got = Vec::new();
        d2.feed(&data[at.offset as usize..], true, &mut |r| {
            got.push((r.index, r.value.unwrap().key_text("id").unwrap()))
        })
        .unwrap();
        assert_eq!(got, vec![(1, "2".to_string()), (2, "3".to_string())]);
    }

    #[test]
    fn csv_with_header_and_bad_row() {
        let kind = Kind {
            format: Format::Csv,
            gzip: false,
        };
        let data = b"id,name\n1,\"a,b\"\n2\n3,c";
        for chunk in [1, 5, 100] {
            let (out, fatal) = run(kind, data, chunk);
            assert!(fatal.is_none());
            assert_eq!(out.len(), 3, "chunk {chunk}");
            assert_eq!(out[0], (0, 8, Ok(r#"{"id":"1","name":"a,b"}"#.into())));
            assert!(out[1].2.as_ref().unwrap_err().contains("expected 2 fields"));
            assert_eq!(out[2].2, Ok(r#"{"id":"3","name":"c"}"#.into()));
        }
    }

    #[test]
    fn gzip_streams_and_truncation_is_fatal_after_the_good_records() {
        let mut data = Vec::new();
        for i in 0..5000 {
            data.extend_from_slice(
                format!("{{\"id\":{i},\"pad\":\"xxxxxxxxxxxxxxxx\"}}\n").as_bytes(),
            );
        }
        let z = gz(&data);
        let kind = Kind {
            format: Format::Jsonl,
            gzip: true,
        };
        let (out, fatal) = run(kind, &z, 333);
        assert!(fatal.is_none());
        assert_eq!(out.len(), 5000);
        let (out, fatal) = run(kind, &z[..z.len() / 2], 333);
        assert!(fatal.unwrap().contains("gzip"));
        assert!(out.len() > 100 && out.len() < 5000, "{}", out.len());
        assert!(out.iter().all(|o| o.2.is_ok()));
        let (out, fatal) = run(kind, b"this is not gzip at all", 333);
        assert!(out.is_empty());
        assert!(fatal.unwrap().contains("gzip"));
    }
}
