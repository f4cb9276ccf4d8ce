//! Reading tables into polars: `COPY (SELECT …) TO STDOUT` in text format, parsed as it
//! streams into typed columns. Numerics arrive as text and become exact integers of
//! units of 10^-scale, the scale being the column's largest (trailing zeros dropped),
//! at least the one asked for; dates become days since 1970-01-01.

use super::fixed;
use super::Table;
use crate::sql::DbError;
use anyhow::{bail, Context as _};
use futures::TryStreamExt as _;
use polars::prelude::*;
use std::collections::HashMap;
use tokio_postgres::Transaction;

/// The type a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    /// Any integer, as Int64.
    Int,
    /// A date, as Int32 days since 1970-01-01.
    Date,
    Bool,
    /// A numeric, as Int64 units of 10^-scale, the scale at least the given one.
    Num(u32),
}

enum Builder {
    Text(StringChunkedBuilder),
    Int(PrimitiveChunkedBuilder<Int64Type>),
    Date(PrimitiveChunkedBuilder<Int32Type>),
    Bool(BooleanChunkedBuilder),
    Num(Vec<Option<(i128, u32)>>, u32),
}

impl Builder {
    fn new(name: &str, ty: Ty) -> Self {
        let (name, cap) = (PlSmallStr::from(name), 1024);
        match ty {
            Ty::Text => Builder::Text(StringChunkedBuilder::new(name, cap)),
            Ty::Int => Builder::Int(PrimitiveChunkedBuilder::new(name, cap)),
            Ty::Date => Builder::Date(PrimitiveChunkedBuilder::new(name, cap)),
            Ty::Bool => Builder::Bool(BooleanChunkedBuilder::new(name, cap)),
            Ty::Num(scale) => Builder::Num(Vec::with_capacity(cap), scale),
        }
    }

    fn push(&mut self, field: Option<&str>) -> anyhow::Result<()> {
        let Some(v) = field else {
            match self {
                Builder::Text(b) => b.append_null(),
                Builder::Int(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Num(b, _) => b.push(None),
            }
            return Ok(());
        };
        match self {
            Builder::Text(b) => b.append_value(v),
            Builder::Int(b) => b
                .append_value(anyhow::Context::with_context(v.parse::<i64>(), || {
                    format!("integer {v:?}")
                })?),
            Builder::Date(b) => {
                b.append_value(parse_date(v).with_context(|| format!("date {v:?}"))?)
            }
            Builder::Bool(b) => b.append_value(v == "t"),
            Builder::Num(b, scale) => {
                let (m, s) = fixed::parse(v).with_context(|| format!("numeric {v:?}"))?;
                *scale = (*scale).max(s);
                b.push(Some((m, s)));
            }
        }
        Ok(())
    }

    fn finish(self, name: &str, scales: &mut HashMap<String, u32>) -> anyhow::Result<Column> {
        Ok(match self {
            Builder::Text(b) => b.finish().into_column(),
            Builder::Int(b) => b.finish().into_column(),
            Builder::Date(b) => b.finish().into_column(),
            Builder::Bool(b) => b.finish().into_column(),
            Builder::Num(values, scale) => {
                scales.insert(name.to_string(), scale);
                let mut out = PrimitiveChunkedBuilder::<Int64Type>::new(name.into(), values.len());
                for v in values {
                    match v {
                        None => out.append_null(),
                        Some((m, s)) => {
                            let scaled = 10i128
                                .checked_pow(scale - s)
                                .and_then(|p| p.checked_mul(m))
                                .and_then(|v| i64::try_from(v).ok());
                            let Some(scaled) = scaled else {
                                bail!("{name}: {m}e-{s} does not fit 64 bits at scale {scale}");
                            };
                            out.append_value(scaled);
                        }
                    }
                }
                out.finish().into_column()
            }
        })
    }
}

/// `YYYY-MM-DD` (DateStyle ISO) as days since 1970-01-01.
fn parse_date(v: &str) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
    Some(super::calendar::to_days(d))
}

/// Undoes COPY text format's backslash escapes.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Parses one COPY text line into the builders.
fn push_line(line: &[u8], builders: &mut [Builder]) -> anyhow::Result<()> {
    let line = std::str::from_utf8(line).context("COPY line is not UTF-8")?;
    let mut fields = line.split('\t');
    for b in builders.iter_mut() {
        let f = fields.next().context("COPY line has too few fields")?;
        if f == "\\N" {
            b.push(None)?;
        } else if f.contains('\\') {
            b.push(Some(&unescape(f)))?;
        } else {
            b.push(Some(f))?;
        }
    }
    anyhow::ensure!(fields.next().is_none(), "COPY line has too many fields");
    Ok(())
}

/// Reads the rows of `sql` (which yields `cols` in order) into a [`Table`].
pub async fn copy(
    tx: &Transaction<'_>,
    what: &str,
    sql: &str,
    cols: &[(&str, Ty)],
) -> anyhow::Result<Table> {
    let stream = tx
        .copy_out(&format!("COPY ({sql}) TO STDOUT"))
        .await
        .map_err(DbError::query(format!("reading {what}")))?;
    futures::pin_mut!(stream);
    let mut builders: Vec<Builder> = cols.iter().map(|(n, t)| Builder::new(n, *t)).collect();
    let mut buf: Vec<u8> = Vec::new();
    let mut rows = 0usize;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(DbError::query(format!("reading {what}")))?
    {
        buf.extend_from_slice(&chunk);
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        for line in buf[..end].split(|&b| b == b'\n') {
            push_line(line, &mut builders).with_context(|| format!("reading {what}"))?;
            rows += 1;
        }
        buf.drain(..=end);
    }
    anyhow::ensure!(buf.is_empty(), "reading {what}: COPY ended mid-line");
    let mut scales = HashMap::new();
    let mut columns = Vec::with_capacity(cols.len());
    for (b, (name, _)) in builders.into_iter().zip(cols) {
        columns.push(b.finish(name, &mut scales)?);
    }
    Ok(Table {
        df: DataFrame::new(rows, columns)?,
        scales,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_copy_text_lines() {
        let cols = [
            ("a", Ty::Text),
            ("d", Ty::Date),
            ("q", Ty::Num(0)),
            ("m", Ty::Num(2)),
        ];
        let mut b: Vec<Builder> = cols.iter().map(|(n, t)| Builder::new(n, *t)).collect();
        push_line(b"x\\ty\t2024-01-31\t17.00\t1.5", &mut b).unwrap();
        push_line(b"\\N\t\\N\t0.125\t\\N", &mut b).unwrap();
        assert!(push_line(b"x\t2024-01-31", &mut b).is_err());
        let mut scales = HashMap::new();
        let cols: Vec<Column> = b
            .into_iter()
            .zip(cols)
            .map(|(b, (n, _))| b.finish(n, &mut scales).unwrap())
            .collect();
        assert_eq!(cols[0].str().unwrap().get(0), Some("x\ty"));
        assert_eq!(cols[1].i32().unwrap().get(0), Some(19753));
        assert_eq!(cols[2].i64().unwrap().get(0), Some(17000));
        assert_eq!(cols[2].i64().unwrap().get(1), Some(125));
        assert_eq!(cols[3].i64().unwrap().get(0), Some(150));
        assert_eq!((scales["q"], scales["m"]), (3, 2));
    }
}
