//! RFM (recency, frequency, monetary) scores 1–5 and named segments.
//!
//! Each score is `min(5, 1 + ⌊5 · percent_rank⌋)`, with `percent_rank = (rank − 1)/(n − 1)`
//! (0 when `n = 1`) and `rank` = 1 + the number of customers strictly before in the order —
//! exactly PostgreSQL's `LEAST(5, 1 + floor(5 * percent_rank() OVER (ORDER BY x)))`, computed
//! in `f64` as PostgreSQL does. Equal values therefore always share a score (unlike `NTILE`).
//! Orders: recency by days since the last order **descending** (the most recent gets 5),
//! frequency and monetary ascending (the largest get 5).
//!
//! Segments come from ordered [`SegmentRule`]s, first match wins; [`default_rules`] ends with
//! a catch-all, and a customer no rule matches gets [`FALLBACK_SEGMENT`].

use std::cmp::Reverse;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Segment name given when no rule matches.
pub const FALLBACK_SEGMENT: &str = "Other";

/// Per-customer aggregates RFM is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerAgg {
    /// The customer's key.
    pub customer_key: String,
    /// Date of the customer's last order.
    pub last_order: NaiveDate,
    /// Number of distinct orders (frequency).
    pub orders: i64,
    /// Total revenue (monetary).
    pub revenue: Decimal,
}

/// A customer's RFM values, scores and segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RfmScore {
    /// The customer's key.
    pub customer_key: String,
    /// Days from the last order to the reference date (negative if the order is later).
    pub recency_days: i64,
    /// Number of distinct orders.
    pub frequency: i64,
    /// Total revenue.
    pub monetary: Decimal,
    /// Recency score, 5 = most recent.
    pub r: u8,
    /// Frequency score, 5 = most orders.
    pub f: u8,
    /// Monetary score, 5 = most revenue.
    pub m: u8,
    /// Name of the first matching segment rule.
    pub segment: String,
}

/// A named segment: inclusive score ranges `(low, high)` for R, F and M, all within 1–5.
/// Deserializable so that rules can come from configuration, e.g. in TOML
/// `{ name = "Champions", r = [4, 5], f = [4, 5], m = [4, 5] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRule {
    /// Segment name.
    pub name: String,
    /// Inclusive recency score range.
    pub r: (u8, u8),
    /// Inclusive frequency score range.
    pub f: (u8, u8),
    /// Inclusive monetary score range.
    pub m: (u8, u8),
}

/// A segment rule that cannot match as written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// A range outside 1–5 or with `low > high`.
    #[error("segment rule {name:?}: {axis} range ({lo}, {hi}) must satisfy 1 <= low <= high <= 5")]
    InvalidRange {
        /// The rule's name.
        name: String,
        /// `'R'`, `'F'` or `'M'`.
        axis: char,
        /// Range low end.
        lo: u8,
        /// Range high end.
        hi: u8,
    },
    /// A rule without a name.
    #[error("segment rule {0} has an empty name")]
    EmptyName(usize),
}

impl SegmentRule {
    /// A rule from its name and inclusive ranges.
    pub fn new(name: &str, r: (u8, u8), f: (u8, u8), m: (u8, u8)) -> Self {
        Self {
            name: name.to_owned(),
            r,
            f,
            m,
        }
    }

    /// Whether the scores fall in all three ranges.
    pub fn matches(&self, r: u8, f: u8, m: u8) -> bool {
        let within = |(lo, hi): (u8, u8), v: u8| lo <= v && v <= hi;
        within(self.r, r) && within(self.f, f) && within(self.m, m)
    }
}

/// The default segments, in evaluation order (first match wins):
/// Champions R≥4 F≥4 M≥4; Loyal R≥3 F≥4 M≥3; Potential loyalist R≥4 F 2–3; New R≥4 F=1;
/// Promising R=3 F≤2; Need attention R=3 F≥3; At risk R≤2 F≥3; Hibernating R=2 F≤2;
/// Lost R=1 F≤2; Other (everything else).
pub fn default_rules() -> Vec<SegmentRule> {
    const ANY: (u8, u8) = (1, 5);
    vec![
        SegmentRule::new("Champions", (4, 5), (4, 5), (4, 5)),
        SegmentRule::new("Loyal", (3, 5), (4, 5), (3, 5)),
        SegmentRule::new("Potential loyalist", (4, 5), (2, 3), ANY),
        SegmentRule::new("New", (4, 5), (1, 1), ANY),
        SegmentRule::new("Promising", (3, 3), (1, 2), ANY),
        SegmentRule::new("Need attention", (3, 3), (3, 5), ANY),
        SegmentRule::new("At risk", (1, 2), (3, 5), ANY),
        SegmentRule::new("Hibernating", (2, 2), (1, 2), ANY),
        SegmentRule::new("Lost", (1, 1), (1, 2), ANY),
        SegmentRule::new(FALLBACK_SEGMENT, ANY, ANY, ANY),
    ]
}

/// Checks that every rule has a name and ranges with `1 <= low <= high <= 5`.
pub fn validate_rules(rules: &[SegmentRule]) -> Result<(), RuleError> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.name.trim().is_empty() {
            return Err(RuleError::EmptyName(i));
        }
        for (axis, (lo, hi)) in [('R', rule.r), ('F', rule.f), ('M', rule.m)] {
            if !(1 <= lo && lo <= hi && hi <= 5) {
                return Err(RuleError::InvalidRange {
                    name: rule.name.clone(),
                    axis,
                    lo,
                    hi,
                });
            }
        }
    }
    Ok(())
}

/// The name of the first rule matching the scores, or [`FALLBACK_SEGMENT`].
pub fn segment_for(rules: &[SegmentRule], r: u8, f: u8, m: u8) -> &str {
    rules
        .iter()
        .find(|rule| rule.matches(r, f, m))
        .map_or(FALLBACK_SEGMENT, |rule| rule.name.as_str())
}

/// Scores 1–5 of `values` in ascending order, ties sharing a score:
/// `min(5, 1 + ⌊5 · percent_rank⌋)` as PostgreSQL computes it.
pub fn quintile_scores<T: Ord>(values: &[T]) -> Vec<u8> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].cmp(&values[b]));
    let mut scores = vec![1u8; n];
    let mut rank0 = 0; // rank − 1 of the current group of equal values
    for (pos, &i) in order.iter().enumerate() {
        if pos > 0 && values[i] != values[order[pos - 1]] {
            rank0 = pos;
        }
        let percent_rank = if n > 1 {
            rank0 as f64 / (n - 1) as f64
        } else {
            0.0
        };
        // 1 + floor(5·pr) lies in 1..=6 because 0 <= pr <= 1, so the cast cannot truncate.
        scores[i] = (1.0 + (5.0 * percent_rank).floor()).min(5.0) as u8;
    }
    scores
}

/// RFM values, scores and segments of `customers` as of `reference`, in input order.
pub fn score(
    customers: &[CustomerAgg],
    reference: NaiveDate,
    rules: &[SegmentRule],
) -> Vec<RfmScore> {
    let recency: Vec<i64> = customers
        .iter()
        .map(|c| (reference - c.last_order).num_days())
        .collect();
    let r_desc: Vec<Reverse<i64>> = recency.iter().copied().map(Reverse).collect();
    let frequency: Vec<i64> = customers.iter().map(|c| c.orders).collect();
    let monetary: Vec<Decimal> = customers.iter().map(|c| c.revenue).collect();
    let (r, f, m) = (
        quintile_scores(&r_desc),
        quintile_scores(&frequency),
        quintile_scores(&monetary),
    );
    customers
        .iter()
        .enumerate()
        .map(|(i, c)| RfmScore {
            customer_key: c.customer_key.clone(),
            recency_days: recency[i],
            frequency: c.orders,
            monetary: c.revenue,
            r: r[i],
            f: f[i],
            m: m[i],
            segment: segment_for(rules, r[i], f[i], m[i]).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn cust(key: &str, last: NaiveDate, orders: i64, revenue: i64) -> CustomerAgg {
        CustomerAgg {
            customer_key: key.to_owned(),
            last_order: last,
            orders,
            revenue: Decimal::from(revenue),
        }
    }

    /// Reference 2024-06-01; n = 5, so percent_rank steps are multiples of 1/4.
    fn fixture() -> Vec<CustomerAgg> {
        vec![
            cust("A", day(2024, 5, 31), 10, 500), // 1 day
            cust("B", day(2024, 5, 1), 3, 120),   // 31 days
            cust("C", day(2024, 5, 1), 3, 80),    // 31 days
            cust("D", day(2024, 3, 1), 1, 40),    // 92 days
            cust("E", day(2024, 1, 1), 1, 40),    // 152 days
        ]
    }

    #[test]
    fn hand_computed_scores_and_segments() {
        let out = score(&fixture(), day(2024, 6, 1), &default_rules());
        let got: Vec<(&str, i64, u8, u8, u8, &str)> = out
            .iter()
            .map(|s| {
                (
                    s.customer_key.as_str(),
                    s.recency_days,
                    s.r,
                    s.f,
                    s.m,
                    s.segment.as_str(),
                )
            })
            .collect();
        // Recency DESC: E rank 1 → 1; D rank 2 (pr .25) → 2; B, C rank 3 (pr .5) → 3; A → 5.
        // Frequency: D, E rank 1 → 1; B, C rank 3 → 3; A → 5.
        // Monetary: D, E → 1; C rank 3 → 3; B rank 4 (pr .75) → 4; A → 5.
        assert_eq!(
            got,
            vec![
                ("A", 1, 5, 5, 5, "Champions"),
                ("B", 31, 3, 3, 4, "Need attention"),
                ("C", 31, 3, 3, 3, "Need attention"),
                ("D", 92, 2, 1, 1, "Hibernating"),
                ("E", 152, 1, 1, 1, "Lost"),
            ]
        );
    }

    #[test]
    fn most_recent_and_biggest_get_five() {
        let out = score(&fixture(), day(2024, 6, 1), &default_rules());
        let a = &out[0];
        assert_eq!((a.r, a.f, a.m), (5, 5, 5));
        let oldest = out.iter().max_by_key(|s| s.recency_days).unwrap();
        assert_eq!(oldest.r, 1);
    }

    #[test]
    fn ties_share_a_score() {
        let values = [7, 7, 7, 7, 7, 7, 7, 7, 7, 7];
        assert!(quintile_scores(&values).iter().all(|&s| s == 1));
        let values = [1, 2, 2, 2, 3, 4];
        // ranks 1,2,2,2,5,6 of n = 6 → pr 0, .2, .2, .2, .8, 1
        assert_eq!(quintile_scores(&values), vec![1, 2, 2, 2, 5, 5]);
        let distinct = [50, 40, 30, 20, 10, 0];
        assert_eq!(quintile_scores(&distinct), vec![5, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn single_customer_and_empty_input() {
        let one = [cust("X", day(2024, 5, 1), 4, 99)];
        let out = score(&one, day(2024, 5, 11), &default_rules());
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].recency_days, out[0].r, out[0].f, out[0].m),
            (10, 1, 1, 1)
        );
        assert_eq!(out[0].segment, "Lost");
        assert!(score(&[], day(2024, 5, 11), &default_rules()).is_empty());
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = default_rules();
        // (4,4,4) matches Champions and Loyal: Champions comes first.
        assert_eq!(segment_for(&rules, 4, 4, 4), "Champions");
        assert_eq!(segment_for(&rules, 3, 4, 3), "Loyal");
        assert_eq!(segment_for(&rules, 5, 2, 1), "Potential loyalist");
        assert_eq!(segment_for(&rules, 4, 1, 5), "New");
        assert_eq!(segment_for(&rules, 3, 2, 5), "Promising");
        assert_eq!(segment_for(&rules, 3, 4, 2), "Need attention");
        assert_eq!(segment_for(&rules, 2, 5, 5), "At risk");
        assert_eq!(segment_for(&rules, 5, 4, 2), "Other");
        let custom = vec![
            SegmentRule::new("VIP", (1, 5), (1, 5), (5, 5)),
            SegmentRule::new("Recent", (5, 5), (1, 5), (1, 5)),
        ];
        assert_eq!(segment_for(&custom, 5, 1, 5), "VIP");
        assert_eq!(segment_for(&custom, 5, 1, 4), "Recent");
        assert_eq!(segment_for(&custom, 1, 1, 1), FALLBACK_SEGMENT);
    }

    #[test]
    fn rules_deserialize_and_validate() {
        let json = r#"[{"name": "Big", "r": [1, 5], "f": [1, 5], "m": [4, 5]}]"#;
        let rules: Vec<SegmentRule> = serde_json::from_str(json).unwrap();
        assert_eq!(rules, vec![SegmentRule::new("Big", (1, 5), (1, 5), (4, 5))]);
        assert_eq!(validate_rules(&rules), Ok(()));
        assert_eq!(validate_rules(&default_rules()), Ok(()));
        let bad = [SegmentRule::new("Bad", (1, 5), (4, 2), (1, 5))];
        assert!(matches!(
            validate_rules(&bad),
            Err(RuleError::InvalidRange { axis: 'F', .. })
        ));
    }
}
