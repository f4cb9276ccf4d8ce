//! Reusable view components.

pub mod chart;
pub mod kpi;
pub mod web_usage;
