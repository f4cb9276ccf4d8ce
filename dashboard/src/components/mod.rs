//! Reusable view components.

pub mod chart;
pub mod kpi;
pub mod shop;
pub mod web_usage;
