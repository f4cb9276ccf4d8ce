//! Monthly cohort retention.
//!
//! A customer's cohort is the month of their first order; cell `(c, k)` counts the customers
//! of cohort `c` with at least one order in month `c + k` (and their revenue that month);
//! retention is that count divided by the cohort size, so `k = 0` is 1.0. Cells after the last
//! observed month are right-censored: `None` (NULL), never 0, or young cohorts would look
//! churned.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

/// One order month of one customer (several rows for the same customer and month are fine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortOrder {
    /// The customer's key.
    pub customer_key: String,
    /// The order's month (any day of it; normalised to the first).
    pub month: NaiveDate,
    /// Revenue of the order(s).
    pub revenue: Decimal,
}

/// One cell of the cohort triangle.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortCell {
    /// First day of the cohort's month.
    pub cohort_month: NaiveDate,
    /// Months since the cohort month, `k`.
    pub months_since: i32,
    /// Customers whose first order fell in the cohort month.
    pub cohort_size: i64,
    /// Cohort customers with an order in month `cohort + k`; `None` if not yet observed.
    pub customers: Option<i64>,
    /// Their revenue in month `cohort + k`; `None` if not yet observed.
    pub revenue: Option<Decimal>,
    /// `customers / cohort_size`; `None` if not yet observed.
    pub retention: Option<f64>,
}

/// The first day of `d`'s month.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Whole months from `from`'s month to `to`'s month (negative if `to` is earlier).
pub fn months_between(from: NaiveDate, to: NaiveDate) -> i32 {
    (to.year() - from.year()) * 12 + (to.month() as i32 - from.month() as i32)
}

/// Activity of one cohort: its members, and per month offset the active members and revenue.
#[derive(Default)]
struct Cohort<'a> {
    size: i64,
    active: BTreeMap<i32, (HashSet<&'a str>, Decimal)>,
}

/// Groups the observed rows (months up to `last`) by cohort.
fn group(rows: &[CohortOrder], last: NaiveDate) -> BTreeMap<NaiveDate, Cohort<'_>> {
    let observed = || rows.iter().filter(|r| month_start(r.month) <= last);
    let mut first: HashMap<&str, NaiveDate> = HashMap::new();
    for row in observed() {
        let month = month_start(row.month);
        first
            .entry(row.customer_key.as_str())
            .and_modify(|m| *m = (*m).min(month))
            .or_insert(month);
    }
    let mut cohorts: BTreeMap<NaiveDate, Cohort<'_>> = BTreeMap::new();
    for &cohort_month in first.values() {
        cohorts.entry(cohort_month).or_default().size += 1;
    }
    for row in observed() {
        let key = row.customer_key.as_str();
        let Some(&cohort_month) = first.get(key) else {
            continue;
        };
        let k = months_between(cohort_month, month_start(row.month));
        let cohort = cohorts.entry(cohort_month).or_default();
        let cell = cohort.active.entry(k).or_default();
        cell.0.insert(key);
        cell.1 += row.revenue;
    }
    cohorts
}

/// The cohort retention triangle from order rows, observed up to and including the month of
/// `last_observed`; rows after that month are ignored.
///
/// Every cohort gets the cells `k = 0 ..= max(horizon, months observed since the cohort)`:
/// the observed ones with counts (0 when nobody ordered), the later ones `None`. Only months
/// in which some customer placed a first order form a cohort. Ordered by cohort month, then k.
pub fn retention(rows: &[CohortOrder], last_observed: NaiveDate, horizon: i32) -> Vec<CohortCell> {
    let last = month_start(last_observed);
    let mut cells = Vec::new();
    for (cohort_month, cohort) in group(rows, last) {
        let observed_span = months_between(cohort_month, last);
        for k in 0..=horizon.max(observed_span) {
            let observed = k <= observed_span;
            let (customers, revenue) = match cohort.active.get(&k) {
                Some((who, revenue)) => (who.len() as i64, *revenue),
                None => (0, Decimal::ZERO),
            };
            cells.push(CohortCell {
                cohort_month,
                months_since: k,
                cohort_size: cohort.size,
                customers: observed.then_some(customers),
                revenue: observed.then_some(revenue),
                retention: observed.then(|| customers as f64 / cohort.size as f64),
            });
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, m, d).unwrap()
    }

    /// The fixture of `notes/analytics-and-api.md`: all 2024, cutoff May; revenue = customer
    /// key − 100 per order so revenue cells can be checked by hand.
    fn fixture() -> Vec<CohortOrder> {
        let orders: [(u32, &[(u32, u32)]); 7] = [
            (101, &[(1, 5), (2, 12), (4, 3)]),
            (102, &[(1, 18)]),
            (103, &[(2, 7), (3, 15)]),
            (104, &[(2, 20), (3, 22), (4, 18)]),
            (105, &[(3, 10)]),
            (106, &[(3, 25), (5, 10)]),
            (107, &[(4, 8), (5, 20)]),
        ];
        orders
            .iter()
            .flat_map(|&(customer, dates)| {
                dates.iter().map(move |&(m, d)| CohortOrder {
                    customer_key: customer.to_string(),
                    month: day(m, d),
                    revenue: Decimal::from(customer - 100),
                })
            })
            .collect()
    }

    #[test]
    fn fixture_triangle_matches_the_note() {
        let cells = retention(&fixture(), day(5, 31), 4);
        let mut by_cohort: BTreeMap<u32, (i64, Vec<Option<i64>>)> = BTreeMap::new();
        for c in &cells {
            let entry = by_cohort.entry(c.cohort_month.month()).or_default();
            entry.0 = c.cohort_size;
            entry.1.push(c.customers);
        }
        let expected: BTreeMap<u32, (i64, Vec<Option<i64>>)> = [
            (1, (2, vec![Some(2), Some(1), Some(0), Some(1), Some(0)])),
            (2, (2, vec![Some(2), Some(2), Some(1), Some(0), None])),
            (3, (2, vec![Some(2), Some(0), Some(1), None, None])),
            (4, (1, vec![Some(1), Some(1), None, None, None])),
        ]
        .into_iter()
        .collect();
        assert_eq!(by_cohort, expected);
        assert!(cells.iter().all(|c| c.cohort_month.day() == 1));
    }

    #[test]
    fn k0_is_full_retention_and_censored_cells_are_null() {
        let cells = retention(&fixture(), day(5, 1), 4);
        for c in &cells {
            if c.months_since == 0 {
                assert_eq!(c.retention, Some(1.0));
            }
            let observed = months_between(c.cohort_month, day(5, 1)) >= c.months_since;
            assert_eq!(c.customers.is_some(), observed);
            assert_eq!(c.revenue.is_some(), observed);
            assert_eq!(c.retention.is_some(), observed);
        }
        let jan1 = cells
            .iter()
            .find(|c| c.cohort_month == day(1, 1) && c.months_since == 1)
            .unwrap();
        assert_eq!(jan1.retention, Some(0.5));
        assert_eq!(jan1.revenue, Some(Decimal::from(1)));
    }

    #[test]
    fn revenue_per_cell() {
        let cells = retention(&fixture(), day(5, 1), 4);
        let rev = |m: u32, k: i32| {
            cells
                .iter()
                .find(|c| c.cohort_month == day(m, 1) && c.months_since == k)
                .and_then(|c| c.revenue)
        };
        assert_eq!(rev(2, 1), Some(Decimal::from(3 + 4)));
        assert_eq!(rev(3, 2), Some(Decimal::from(6)));
        assert_eq!(rev(3, 1), Some(Decimal::ZERO));
        assert_eq!(rev(4, 2), None);
    }

    #[test]
    fn later_rows_ignored_and_observed_cells_kept_beyond_horizon() {
        let mut rows = fixture();
        rows.push(CohortOrder {
            customer_key: "108".into(),
            month: day(6, 1),
            revenue: Decimal::ONE,
        });
        let cells = retention(&rows, day(5, 1), 2);
        assert!(cells.iter().all(|c| c.cohort_month <= day(4, 1)));
        // January has 5 observed months, more than the horizon of 2: all are kept.
        let jan = cells.iter().filter(|c| c.cohort_month == day(1, 1)).count();
        assert_eq!(jan, 5);
        // April: k = 0, 1 observed, k = 2 censored.
        let apr: Vec<_> = cells
            .iter()
            .filter(|c| c.cohort_month == day(4, 1))
            .collect();
        assert_eq!(apr.len(), 3);
        assert_eq!(apr[2].customers, None);
        assert!(retention(&[], day(5, 1), 12).is_empty());
    }

    #[test]
    fn month_helpers() {
        assert_eq!(month_start(day(2, 29)), day(2, 1));
        let dec = NaiveDate::from_ymd_opt(2023, 12, 31).unwrap();
        assert_eq!(months_between(dec, day(1, 1)), 1);
        assert_eq!(months_between(day(5, 1), day(1, 31)), -4);
    }
}
