//! A recomputed mart against the stored one, cell by cell on the mart's key: rows only
//! stored, rows only recomputed, and rows of both whose cells differ (null equals null;
//! numerics compared as integers at the larger of the two scales).

use super::calendar;
use super::fixed;
use super::load::Ty;
use super::{MartCheck, Table};
use polars::prelude::*;

/// Suffix of the recomputed side's columns after the join.
const R: &str = "__recomputed";

/// How a mart is compared: its key and its columns in order.
pub struct Shape<'a> {
    pub mart: &'static str,
    pub key: &'a [&'a str],
    pub cols: &'a [(&'a str, Ty)],
}

/// Both sides at the same scale for every numeric column; the scales used.
fn align(
    shape: &Shape,
    stored: Table,
    recomputed: Table,
) -> PolarsResult<(DataFrame, DataFrame, Vec<u32>)> {
    let (mut s_exprs, mut r_exprs, mut scales) = (Vec::new(), Vec::new(), Vec::new());
    for (name, ty) in shape.cols {
        let (ss, rs) = match ty {
            Ty::Num(_) => (
                stored.scales.get(*name).copied().unwrap_or(0),
                recomputed.scales.get(*name).copied().unwrap_or(0),
            ),
            _ => (0, 0),
        };
        let scale = ss.max(rs);
        let at = |from: u32| {
            let c = col(*name);
            if from == scale {
                c
            } else {
                c * lit(10i64.pow(scale - from))
            }
        };
        s_exprs.push(at(ss));
        r_exprs.push(at(rs));
        scales.push(scale);
    }
    s_exprs.push(lit(true).alias("_stored"));
    r_exprs.push(lit(true).alias("_recomputed"));
    let s = stored.df.lazy().select(s_exprs).collect()?;
    let r = recomputed.df.lazy().select(r_exprs).collect()?;
    Ok((s, r, scales))
}

pub fn compare(shape: &Shape, stored: Table, recomputed: Table) -> PolarsResult<MartCheck> {
    let stored_rows = stored.df.height() as i64;
    let (s, r, scales) = align(shape, stored, recomputed)?;
    let key: Vec<Expr> = shape.key.iter().map(|k| col(*k)).collect();
    let mut args = JoinArgs::new(JoinType::Full)
        .with_coalesce(JoinCoalesce::CoalesceColumns)
        .with_suffix(Some(R.into()));
    args.nulls_equal = true;
    let values: Vec<usize> = (0..shape.cols.len())
        .filter(|&i| !shape.key.contains(&shape.cols[i].0))
        .collect();
    let both = col("_stored")
        .is_not_null()
        .and(col("_recomputed").is_not_null());
    let diffs: Vec<Expr> = values
        .iter()
        .map(|&i| {
            let c = shape.cols[i].0;
            both.clone()
                .and(col(c).neq_missing(col(format!("{c}{R}"))))
                .alias(format!("_d_{c}"))
        })
        .collect();
    let any = diffs
        .iter()
        .fold(lit(false), |acc, d| acc.or(d.clone()))
        .alias("_differs");
    let j = s
        .lazy()
        .join(r.lazy(), key.clone(), key, args)
        .with_columns(diffs)
        .with_column(any)
        .collect()?;
    let n = |e: Expr| e.cast(DataType::Int64).sum();
    let mut counts = vec![
        n(col("_recomputed").is_null()).alias("extra"),
        n(col("_stored").is_null()).alias("missing"),
        n(col("_differs")).alias("rows"),
    ];
    counts.extend(
        values
            .iter()
            .map(|&i| n(col(format!("_d_{}", shape.cols[i].0)))),
    );
    let counts = j.clone().lazy().select(counts).collect()?;
    let get =
        |i: usize| -> PolarsResult<i64> { Ok(counts.columns()[i].i64()?.get(0).unwrap_or(0)) };
    let (extra, missing, differing_rows) = (get(0)?, get(1)?, get(2)?);
    let mut differing_cells = 0;
    let mut columns = Vec::new();
    for (k, &i) in values.iter().enumerate() {
        let c = get(3 + k)?;
        differing_cells += c;
        if c > 0 {
            columns.push(format!("{} ({c})", shape.cols[i].0));
        }
    }
    let samples = samples(shape, &scales, &values, &j)?;
    Ok(MartCheck {
        mart: shape.mart,
        stored_rows,
        extra,
        missing,
        differing_rows,
        differing_cells,
        differing_columns: columns,
        samples,
    })
}

/// Up to 3 differences: a differing row, a row only stored, a row only recomputed first,
/// then more of them in that order.
fn samples(
    shape: &Shape,
    scales: &[u32],
    values: &[usize],
    j: &DataFrame,
) -> PolarsResult<Vec<String>> {
    let kinds = [
        (col("_differs"), "differs"),
        (col("_recomputed").is_null(), "stored, not recomputed:"),
        (col("_stored").is_null(), "recomputed, not stored:"),
    ];
    let keys: Vec<PlSmallStr> = shape.key.iter().map(|k| PlSmallStr::from(*k)).collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    for (mask, label) in kinds {
        let rows = j
            .clone()
            .lazy()
            .filter(mask)
            .sort(keys.clone(), SortMultipleOptions::default())
            .limit(3)
            .collect()?;
        let mut lines = Vec::new();
        for i in 0..rows.height() {
            lines.push(match label {
                "differs" => differing_row(shape, scales, values, &rows, i)?,
                "stored, not recomputed:" => {
                    format!("{label} {}", row(shape, scales, &rows, i, "")?)
                }
                _ => format!("{label} {}", row(shape, scales, &rows, i, R)?),
            });
        }
        found.push(lines);
    }
    let mut out = Vec::new();
    for round in 0..3 {
        for lines in &found {
            if out.len() < 3 {
                out.extend(lines.get(round).cloned());
            }
        }
    }
    Ok(out)
}

fn value(rows: &DataFrame, name: &str, ty: Ty, scale: u32, i: usize) -> PolarsResult<String> {
    Ok(match rows.column(name)?.get(i)? {
        AnyValue::Null => "null".to_string(),
        AnyValue::Int64(v) if matches!(ty, Ty::Num(_)) => fixed::format(v, scale),
        AnyValue::Int64(v) => v.to_string(),
        AnyValue::Int32(v) if ty == Ty::Date => calendar::from_days(v).to_string(),
        AnyValue::Int32(v) => v.to_string(),
        AnyValue::String(v) => format!("{v:?}"),
        AnyValue::StringOwned(v) => format!("{:?}", v.as_str()),
        AnyValue::Boolean(v) => v.to_string(),
        other => format!("{other:?}"),
    })
}

/// `col=value …` of row i; key columns unsuffixed, the others with `suffix`.
fn row(
    shape: &Shape,
    scales: &[u32],
    rows: &DataFrame,
    i: usize,
    suffix: &str,
) -> PolarsResult<String> {
    let mut parts = Vec::new();
    for (k, (name, ty)) in shape.cols.iter().enumerate() {
        let col_name = if shape.key.contains(name) {
            name.to_string()
        } else {
            format!("{name}{suffix}")
        };
        parts.push(format!(
            "{name}={}",
            value(rows, &col_name, *ty, scales[k], i)?
        ));
    }
    Ok(parts.join(" "))
}

fn differing_row(
    shape: &Shape,
    scales: &[u32],
    values: &[usize],
    rows: &DataFrame,
    i: usize,
) -> PolarsResult<String> {
    let mut key = Vec::new();
    for (k, (name, ty)) in shape.cols.iter().enumerate() {
        if shape.key.contains(name) {
            key.push(format!("{name}={}", value(rows, name, *ty, scales[k], i)?));
        }
    }
    let mut cells = Vec::new();
    for &k in values {
        let (name, ty) = shape.cols[k];
        let s = value(rows, name, ty, scales[k], i)?;
        let r = value(rows, &format!("{name}{R}"), ty, scales[k], i)?;
        if s != r {
            cells.push(format!("{name} stored {s}, recomputed {r}"));
        }
    }
    Ok(format!(
        "differs at {}: {}",
        key.join(" "),
        cells.join("; ")
    ))
}
