//! Data shared by the server and the browser, and the server functions that produce it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Headline KPIs from `gold.kpi_overview`. Amounts are exact decimal strings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    pub revenue: String,
    pub orders: i64,
    pub customers: i64,
    pub avg_basket: String,
    pub first_sale_date: Option<String>,
    pub last_sale_date: Option<String>,
}

/// One day of `gold.daily_revenue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DailyPoint {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Days since 1970-01-01, so that the chart spaces gaps correctly.
    pub day: i32,
    pub revenue: f64,
}

/// One row of `gold.revenue_by_country`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountryRow {
    pub country: String,
    pub revenue: String,
    pub orders: i64,
    pub customers: i64,
}

/// Everything the overview page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverviewData {
    pub kpis: Kpis,
    /// The last 365 days of data present, oldest first.
    pub daily: Vec<DailyPoint>,
    /// Top 10 countries by revenue.
    pub countries: Vec<CountryRow>,
}

/// What the warehouse currently holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Warehouse {
    /// The gold views are missing or there are no sales yet: the reason, for people.
    Waiting(String),
    Ready(Box<OverviewData>),
}

/// Answer of [`get_overview`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub warehouse: Warehouse,
    /// When the server read the data (UTC, `HH:MM:SS`).
    pub updated_at: String,
    /// How often the browser should ask again (`[dashboard] refresh_ms`).
    pub refresh_ms: u64,
}

/// Reads the gold layer. Never fails because the warehouse is empty or not migrated yet
/// (that is [`Warehouse::Waiting`]); fails when the warehouse cannot be reached.
#[server]
pub async fn get_overview() -> Result<Overview, ServerFnError> {
    crate::ssr::overview::get_overview().await
}

/// One status of the demo shop's order pipeline (`gold.shop_order_status()`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShopStatus {
    pub status: String,
    pub orders: i64,
    /// Exact decimal string.
    pub value: String,
}

/// The live orders of the MySQL demo shop, as mirrored from its binlog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shop {
    pub statuses: Vec<ShopStatus>,
    /// Commit time on the source of the last change applied (UTC, `HH:MM:SS`).
    pub last_change: Option<String>,
    /// Seconds between that commit and now: how far behind the source the warehouse is
    /// (it grows while the shop is idle too).
    pub behind_s: Option<f64>,
}

/// Reads `gold.shop_order_status()`; `None` while the shop's mirror does not exist.
#[server]
pub async fn get_shop() -> Result<Option<Shop>, ServerFnError> {
    crate::ssr::shop::get_shop().await
}
