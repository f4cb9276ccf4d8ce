//! The periods of the marts, as `gold.period_start`, `gold.period_shift` and
//! `gold.year_ago` define them (see [`crate::gold::marts::FUNCTIONS`]): day, week (ISO
//! week from Monday), month, quarter, year and all (0001-01-01). Dates are days since
//! 1970-01-01 (`Int32`), the physical form of a date.

use chrono::{Datelike, Months, NaiveDate};
use polars::prelude::*;

/// The grains of `gold.sales_by_period`, in order.
pub const GRAINS: [&str; 6] = ["day", "week", "month", "quarter", "year", "all"];

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();

pub fn to_days(d: NaiveDate) -> i32 {
    (d - EPOCH).num_days() as i32
}

pub fn from_days(days: i32) -> NaiveDate {
    EPOCH + chrono::Duration::days(i64::from(days))
}

/// The period start of grain `all`: 0001-01-01.
pub fn all_start() -> i32 {
    to_days(NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
}

/// `gold.period_start(grain, d)`.
pub fn period_start(grain: &str, d: NaiveDate) -> NaiveDate {
    let first = |m: u32| NaiveDate::from_ymd_opt(d.year(), m, 1).unwrap();
    match grain {
        "day" => d,
        "week" => d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday())),
        "month" => first(d.month()),
        "quarter" => first((d.month() - 1) / 3 * 3 + 1),
        "year" => first(1),
        _ => NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
    }
}

fn add_months(p: NaiveDate, n: i32) -> Option<NaiveDate> {
    if n >= 0 {
        p.checked_add_months(Months::new(n as u32))
    } else {
        p.checked_sub_months(Months::new(n.unsigned_abs()))
    }
}

/// `gold.period_shift(grain, p, n)`: the start of the period n periods after p.
pub fn period_shift(grain: &str, p: NaiveDate, n: i32) -> Option<NaiveDate> {
    match grain {
        "day" => Some(p + chrono::Duration::days(i64::from(n))),
        "week" => Some(p + chrono::Duration::days(7 * i64::from(n))),
        "month" => add_months(p, n),
        "quarter" => add_months(p, 3 * n),
        "year" => add_months(p, 12 * n),
        _ => None,
    }
}

/// `gold.year_ago(grain, p)`: the same calendar day (Feb 29 → Feb 28), the ISO week 52
/// weeks before, the same month, quarter or year.
pub fn year_ago(grain: &str, p: NaiveDate) -> Option<NaiveDate> {
    match grain {
        "week" => Some(p - chrono::Duration::days(364)),
        "all" => None,
        _ => add_months(p, -12),
    }
}

/// One row per distinct date of `dates`: `date`, `date_key` (YYYYMMDD), the start of
/// its period of every grain (`p_day` … `p_all`) and the month before its month
/// (`prev_month`).
pub fn calendar(dates: &Column) -> PolarsResult<DataFrame> {
    let unique = dates.unique()?;
    let days: Vec<i32> = unique.i32()?.iter().flatten().collect();
    let n = days.len();
    let mut cols = vec![
        Column::new("date".into(), &days),
        Column::new(
            "date_key".into(),
            days.iter()
                .map(|&d| {
                    let d = from_days(d);
                    i64::from(d.year()) * 10_000 + i64::from(d.month() * 100 + d.day())
                })
                .collect::<Vec<i64>>(),
        ),
    ];
    for g in GRAINS {
        let p: Vec<i32> = days
            .iter()
            .map(|&d| to_days(period_start(g, from_days(d))))
            .collect();
        cols.push(Column::new(format!("p_{g}").into(), p));
    }
    let prev: Vec<Option<i32>> = days
        .iter()
        .map(|&d| period_shift("month", period_start("month", from_days(d)), -1).map(to_days))
        .collect();
    cols.push(Column::new("prev_month".into(), prev));
    DataFrame::new(n, cols)
}

/// For each (grain, period_start): the previous period's start and the start of the
/// same period a year before (null for grain all).
pub fn shifts(grain: &Column, start: &Column) -> PolarsResult<DataFrame> {
    let (grain, start) = (grain.str()?, start.i32()?);
    let (mut prev, mut yoy) = (Vec::new(), Vec::new());
    for (g, p) in grain.iter().zip(start.iter()) {
        let (g, p) = (g.unwrap_or(""), p.map(from_days));
        prev.push(p.and_then(|p| period_shift(g, p, -1)).map(to_days));
        yoy.push(p.and_then(|p| year_ago(g, p)).map(to_days));
    }
    let n = prev.len();
    DataFrame::new(
        n,
        vec![
            grain.clone().with_name("grain".into()).into_column(),
            start.clone().with_name("period_start".into()).into_column(),
            Column::new("prev_start".into(), prev),
            Column::new("yoy_start".into(), yoy),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn iso_week_starts_on_monday() {
        assert_eq!(period_start("week", d(2024, 1, 3)), d(2024, 1, 1));
        assert_eq!(period_start("week", d(2024, 1, 1)), d(2024, 1, 1));
        // A Sunday belongs to the week of the Monday before, across a year boundary.
        assert_eq!(period_start("week", d(2023, 1, 1)), d(2022, 12, 26));
        assert_eq!(period_start("week", d(2021, 1, 3)), d(2020, 12, 28));
        assert_eq!(period_start("quarter", d(2024, 8, 15)), d(2024, 7, 1));
        assert_eq!(period_start("all", d(2024, 8, 15)), d(1, 1, 1));
        assert_eq!(from_days(all_start()), d(1, 1, 1));
    }

    #[test]
    fn shifts_and_years_ago() {
        assert_eq!(
            period_shift("week", d(2024, 1, 1), -1),
            Some(d(2023, 12, 25))
        );
        assert_eq!(
            period_shift("quarter", d(2024, 1, 1), -1),
            Some(d(2023, 10, 1))
        );
        assert_eq!(period_shift("all", d(1, 1, 1), -1), None);
        assert_eq!(year_ago("day", d(2024, 2, 29)), Some(d(2023, 2, 28)));
        assert_eq!(year_ago("week", d(2024, 1, 1)), Some(d(2023, 1, 2)));
        assert_eq!(year_ago("month", d(2024, 3, 1)), Some(d(2023, 3, 1)));
        assert_eq!(year_ago("all", d(1, 1, 1)), None);
    }
}
