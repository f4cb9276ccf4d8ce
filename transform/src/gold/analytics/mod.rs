//! Pure-Rust analytics over gold figures: no database access, deterministic, unit-tested.
//!
//! * [`forecast`]: additive Holt-Winters (ETS A,A,A) with prediction intervals, the
//!   seasonal-naive reference forecast, MASE and a hold-out backtest.
//! * [`anomaly`]: robust anomaly scores (modified z-score over a trailing or same-season
//!   reference window).
//! * [`rfm`]: recency / frequency / monetary scores 1–5 (ties share a score) and named
//!   segments from ordered, configurable rules.
//! * [`cohort`]: monthly cohort retention with right-censored (NULL) future cells.
//!
//! [`currency`] (revenue in the reporting currency) is SQL over the facts and the rates.
//!
//! [`jobs`] runs them against the warehouse: reads the stored marts, writes the analytics
//! tables, one transaction per job.

pub mod anomaly;
pub mod cohort;
pub mod currency;
pub mod forecast;
pub mod jobs;
pub mod rfm;
