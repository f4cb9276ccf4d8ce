//! Data shared by the server and the browser, and the server functions that produce it.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: each role can do what the ones before it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The pages.
    Viewer,
    /// + detail lists and exports.
    Analyst,
    /// + raw records, replay, users.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Analyst, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in user, as the pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionUser {
    pub username: String,
    pub role: Role,
}

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

/// One day of `gold.forecast_daily`: the point forecast and its 80 % and 95 % bands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastPoint {
    pub date: String,
    pub day: i32,
    pub revenue: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

/// A day of `gold.anomalies_daily` (all countries) flagged as anomalous.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalyPoint {
    pub date: String,
    pub day: i32,
    pub revenue: f64,
    pub expected: f64,
    pub score: f64,
}

/// A KPI over the last 30 days of data and the 30 days before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Formatted value of the recent period.
    pub now: String,
    /// Formatted value of the period before.
    pub before: String,
    /// Relative change in percent; `None` when the period before is zero.
    pub pct: Option<f64>,
}

/// The four KPIs, last 30 days against the 30 days before (ending at the last sale date).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodChange {
    /// `YYYY-MM-DD – YYYY-MM-DD` of the recent period.
    pub period: String,
    pub revenue: Change,
    pub orders: Change,
    pub customers: Change,
    pub avg_basket: Change,
}

/// Everything the overview page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverviewData {
    pub kpis: Kpis,
    /// The last 30 days against the 30 days before.
    pub change: Option<PeriodChange>,
    /// The last 365 days of data present, oldest first.
    pub daily: Vec<DailyPoint>,
    /// The latest forecast (next 90 days), oldest first.
    pub forecast: Vec<ForecastPoint>,
    /// Anomalous days among `daily`.
    pub anomalies: Vec<AnomalyPoint>,
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
#[server(prefix = "/rpc")]
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
#[server(prefix = "/rpc")]
pub async fn get_shop() -> Result<Option<Shop>, ServerFnError> {
    crate::ssr::shop::get_shop().await
}

/// How a table column is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Text,
    Date,
    /// Exact decimal, two decimals, thousands separators.
    Money,
    /// Whole number, thousands separators.
    Count,
    /// A number as stored.
    Number,
    /// A percentage already in percent (`12.34` → 12.34 %).
    Pct,
    /// A ratio 0–1 shown in percent.
    Ratio,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnView {
    pub name: String,
    pub label: String,
    pub kind: Kind,
}

/// How a panel draws its rows, besides the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChartView {
    /// A line over a date column.
    Line { x: String, y: String },
    /// Horizontal bars, one per row.
    Bars { label: String, value: String },
    /// A grid: one row per `row` value, one column per `col` value, coloured by `value`.
    Heat {
        row: String,
        col: String,
        value: String,
    },
}

/// A link from a cell: to another page, or a filter on this page (cross-filtering).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LinkView {
    /// Set the filter `param` of this page to the cell's value.
    Filter { column: String, param: String },
    /// Go to `prefix` + the cell's value (URL-encoded), e.g. `/customers/`.
    Page { column: String, prefix: String },
}

/// One panel of a page: a titled table over a gold mart, maybe drawn as a chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    pub id: String,
    pub title: String,
    pub hint: String,
    pub columns: Vec<ColumnView>,
    pub rows: Vec<Vec<Option<String>>>,
    pub chart: Option<ChartView>,
    pub links: Vec<LinkView>,
    /// CSV export of the whole panel (analysts), with the page's filters.
    pub export: Option<String>,
    /// Drill-through to the lines behind the panel (analysts).
    pub lines: Option<String>,
    /// More rows than shown (the panel's row limit).
    pub truncated: bool,
    /// Link to the next rows of a detail list (keyset cursor).
    pub next: Option<String>,
}

/// The filters of a page, as in its URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Filters {
    /// 7d, 30d, 90d, mtd, qtd, ytd, prev_month, prev_year, all, custom.
    pub preset: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub country: Option<String>,
    pub category: Option<String>,
    pub product: Option<String>,
    pub employee: Option<String>,
    pub segment: Option<String>,
    pub grain: Option<String>,
    /// The subject of a detail page (a product or customer key).
    pub id: Option<String>,
    /// Cursor of a detail list.
    pub cursor: Option<String>,
}

/// The filter parameters, in URL order.
pub const FILTER_PARAMS: [&str; 11] = [
    "preset", "from", "to", "country", "category", "product", "employee", "segment", "grain", "id",
    "cursor",
];

impl Filters {
    pub fn get(&self, param: &str) -> Option<&str> {
        match param {
            "preset" => self.preset.as_deref(),
            "from" => self.from.as_deref(),
            "to" => self.to.as_deref(),
            "country" => self.country.as_deref(),
            "category" => self.category.as_deref(),
            "product" => self.product.as_deref(),
            "employee" => self.employee.as_deref(),
            "segment" => self.segment.as_deref(),
            "grain" => self.grain.as_deref(),
            "id" => self.id.as_deref(),
            "cursor" => self.cursor.as_deref(),
            _ => None,
        }
    }

    pub fn set(&mut self, param: &str, value: Option<String>) {
        let value = value.filter(|v| !v.is_empty());
        match param {
            "preset" => self.preset = value,
            "from" => self.from = value,
            "to" => self.to = value,
            "country" => self.country = value,
            "category" => self.category = value,
            "product" => self.product = value,
            "employee" => self.employee = value,
            "segment" => self.segment = value,
            "grain" => self.grain = value,
            "id" => self.id = value,
            "cursor" => self.cursor = value,
            _ => {}
        }
    }

    /// `a=1&b=2` of the set filters (without `id`, which is in the path).
    pub fn query(&self) -> String {
        FILTER_PARAMS
            .iter()
            .filter(|p| **p != "id")
            .filter_map(|p| {
                self.get(p)
                    .map(|v| format!("{p}={}", crate::format::url_encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Freshness of what a page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Freshness {
    /// Source time of the newest event included (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub newest_event_at: Option<String>,
    /// When gold last committed a change.
    pub committed_at: Option<String>,
    /// Seconds since the newest event.
    pub age_s: Option<i64>,
    /// ok, amber or red, by `[dashboard] freshness_amber_s` / `freshness_red_s`.
    pub level: String,
}

/// What every page shows around its panels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageContext {
    pub user: SessionUser,
    pub time_zone: String,
    /// The date range the filters resolve to (`None`: unbounded).
    pub from: Option<String>,
    pub to: Option<String>,
    pub freshness: Freshness,
    pub refresh_ms: u64,
    pub gold_version: Option<i64>,
}

/// Answer of a page's server function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageData {
    pub context: PageContext,
    pub panels: Vec<Panel>,
    /// Next page of a detail list.
    pub next_cursor: Option<String>,
}
