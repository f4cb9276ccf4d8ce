//! `gold.distribution` recomputed: per month and per country, of line amounts and of
//! basket values, the count, total, mean, sample standard deviation, min, max and the
//! continuous percentiles (`percentile_cont`: linear interpolation at q·(n − 1)).
//!
//! Exactness: amounts are cents (Int64). polars' linear quantile of integers interpolates
//! with a fraction of 0, ¼, ½ or ¾, exact in f64, so the percentiles are exact multiples of
//! a quarter cent. The sum of squares (which can exceed 64 bits) is split: with
//! a = h·2^16 + l, a² = h²·2^32 + 2hl·2^16 + l², each part summed in Int64 by polars and
//! recombined in i128; the square root is an exact integer one ([`fixed::stddev_micros`]).

use super::calendar;
use super::fixed::{self, div_round_expr};
use super::marts::{cols, table, Facts};
use super::Table;
use polars::prelude::*;

const KEYS: [&str; 4] = ["scope", "period_start", "country", "measure"];
const SPLIT: i64 = 1 << 16;

/// The amounts of a scope and measure: (scope, period_start, country, measure, amount).
fn amounts(lf: &LazyFrame, scope: &str, measure: &str) -> LazyFrame {
    let (period, country) = if scope == "month" {
        (col("p_month"), lit(""))
    } else {
        (
            lit(calendar::all_start()).cast(DataType::Int32),
            col("country"),
        )
    };
    lf.clone().select([
        lit(scope).alias("scope"),
        period.alias("period_start"),
        country.alias("country"),
        lit(measure).alias("measure"),
        col("amount"),
    ])
}

pub fn distribution(f: &Facts) -> anyhow::Result<Table> {
    let x = concat(
        [
            amounts(&f.lines, "month", "line"),
            amounts(&f.lines, "country", "line"),
            amounts(&f.orders, "month", "basket"),
            amounts(&f.orders, "country", "basket"),
        ],
        UnionArgs::default(),
    )?;
    distribution_of(x)
}

/// The statistics of `x` (KEYS and `amount` in cents) per KEYS group.
pub fn distribution_of(x: LazyFrame) -> anyhow::Result<Table> {
    let h = col("amount").floor_div(lit(SPLIT));
    let l = col("amount") - h.clone() * lit(SPLIT);
    let q = |p: f64, name: &str| {
        col("amount")
            .quantile(lit(p), QuantileMethod::Linear)
            .alias(name)
    };
    let mut g = x
        .with_columns([h.alias("_h"), l.alias("_l")])
        .group_by(cols(&KEYS))
        .agg([
            len().cast(DataType::Int64).alias("n"),
            col("amount").sum().alias("total"),
            (col("_h") * col("_h")).sum().alias("_hh"),
            (col("_h") * col("_l")).sum().alias("_hl"),
            (col("_l") * col("_l")).sum().alias("_ll"),
            col("amount").min().alias("min"),
            col("amount").max().alias("max"),
            q(0.25, "_p25"),
            q(0.5, "_p50"),
            q(0.75, "_p75"),
        ])
        .with_column(div_round_expr(col("total") * lit(10_000i64), col("n")).alias("mean"))
        .collect()?;
    let stddev = stddevs(&g)?;
    g.with_column(stddev)?;
    for (from, to) in [("_p25", "p25"), ("_p50", "median"), ("_p75", "p75")] {
        let micros = percentile_micros(g.column(from)?, to)?;
        g.with_column(micros)?;
    }
    let out = [
        &KEYS[..],
        &[
            "n", "total", "mean", "stddev", "min", "p25", "median", "p75", "max",
        ],
    ]
    .concat();
    let df = g.lazy().select(cols(&out)).collect()?;
    Ok(table(
        df,
        &[
            ("total", 2),
            ("mean", 6),
            ("stddev", 6),
            ("min", 2),
            ("p25", 6),
            ("median", 6),
            ("p75", 6),
            ("max", 2),
        ],
    ))
}

/// `round(stddev_samp(amount), 6)` per group, in millionths.
fn stddevs(g: &DataFrame) -> anyhow::Result<Column> {
    let get = |c: &str| -> PolarsResult<Int64Chunked> { Ok(g.column(c)?.i64()?.clone()) };
    let (n, total, hh, hl, ll) = (
        get("n")?,
        get("total")?,
        get("_hh")?,
        get("_hl")?,
        get("_ll")?,
    );
    let mut out = Vec::with_capacity(g.height());
    for i in 0..g.height() {
        let v = |c: &Int64Chunked| i128::from(c.get(i).unwrap_or(0));
        let squares = (v(&hh) << 32) + (v(&hl) << 17) + v(&ll);
        let n = n.get(i).unwrap_or(0);
        let d = fixed::stddev_micros(n, v(&total), squares);
        anyhow::ensure!(d.is_some() || n < 2, "standard deviation out of range");
        out.push(d);
    }
    Ok(Column::new("stddev".into(), out))
}

/// A percentile in cents (an exact multiple of ¼) in millionths of a unit.
fn percentile_micros(p: &Column, name: &str) -> anyhow::Result<Column> {
    let mut out = Vec::with_capacity(p.len());
    for v in p.f64()?.iter() {
        out.push(match v {
            None => None,
            Some(c) => {
                let quarters = c * 4.0;
                anyhow::ensure!(
                    quarters.fract() == 0.0 && quarters.abs() < 2f64.powi(53),
                    "percentile {c} is not a multiple of a quarter cent"
                );
                Some(quarters as i64 * 2_500)
            }
        });
    }
    Ok(Column::new(name.into(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_percentiles_and_moments() {
        // Month group: 1.00, 2.00, 3.00, 10.00 → p25 1.75, median 2.5, p75 4.75, mean 4,
        // stddev sqrt(50/3) = 4.082483; a lone -0.05 (no deviation); large amounts whose
        // squares need more than 64 bits over the group.
        let big = 90_000_000_000i64; // 900 million units
        let x = df!(
            "scope" => ["month", "month", "month", "month", "country", "country", "country"],
            "period_start" => [0i32, 0, 0, 0, 1, 2, 2],
            "country" => ["", "", "", "", "FR", "DE", "DE"],
            "measure" => ["line"; 7],
            "amount" => [100i64, 1000, 300, 200, -5, big, big + 1],
        )
        .unwrap();
        let t = distribution_of(x.lazy()).unwrap();
        let df =
            t.df.sort(["period_start"], SortMultipleOptions::default())
                .unwrap();
        let get =
            |c: &str| -> Vec<Option<i64>> { df.column(c).unwrap().i64().unwrap().iter().collect() };
        assert_eq!(get("n"), [Some(4), Some(1), Some(2)]);
        assert_eq!(
            get("p25"),
            [Some(1_750_000), Some(-50_000), Some(900_000_000_002_500)]
        );
        assert_eq!(
            get("median"),
            [Some(2_500_000), Some(-50_000), Some(900_000_000_005_000)]
        );
        assert_eq!(
            get("p75"),
            [Some(4_750_000), Some(-50_000), Some(900_000_000_007_500)]
        );
        assert_eq!(
            get("mean"),
            [Some(4_000_000), Some(-50_000), Some(900_000_000_005_000)]
        );
        // 2 values one cent apart: sqrt(0.00005) = 0.007071.
        assert_eq!(get("stddev"), [Some(4_082_483), None, Some(7_071)]);
        assert_eq!(get("min"), [Some(100), Some(-5), Some(big)]);
    }
}
