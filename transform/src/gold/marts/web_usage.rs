//! Web and app usage per day and channel (`gold.web_usage_daily`), from the blob source's
//! events in `silver.web_events`; the days an event batch touches (before and after) are
//! recomputed (distinct sessions and customers are not additive).

use crate::gold::{col, Mart};
use crate::sql::DbError;
use chrono::NaiveDate;
use std::collections::BTreeSet;
use tokio_postgres::Transaction;

pub const WEB_USAGE_DAILY: Mart = Mart {
    name: "web_usage_daily",
    table: "gold.web_usage_daily",
    comment:
        "Web and app usage per day and channel, from the daily usage exports (Azure Blob source).",
    columns: &[
        col("day", "date", "Day of the events."),
        col("channel", "text", "web or app."),
        col("sessions", "bigint", "Distinct sessions."),
        col("page_views", "bigint", "Page and screen views."),
        col("customers", "bigint", "Distinct identified customers."),
        col("events", "bigint", "Events."),
    ],
    key: &["day", "channel"],
    indexes: &[],
    module: "transform/src/gold/marts/web_usage.rs",
};

/// The days of the given web events as silver holds them now.
pub async fn days_of(tx: &Transaction<'_>, keys: &[String]) -> Result<Vec<NaiveDate>, DbError> {
    let rows = tx
        .query(
            "SELECT DISTINCT event_date FROM silver.web_events WHERE event_id = ANY($1) AND event_date IS NOT NULL",
            &[&keys],
        )
        .await
        .map_err(DbError::query("reading the days of web events"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Recomputes the touched days.
pub async fn refresh(tx: &Transaction<'_>, days: &BTreeSet<NaiveDate>) -> Result<(), DbError> {
    if days.is_empty() {
        return Ok(());
    }
    let days: Vec<NaiveDate> = days.iter().copied().collect();
    tx.execute(
        "DELETE FROM gold.web_usage_daily WHERE day = ANY($1)",
        &[&days],
    )
    .await
    .map_err(DbError::query("refreshing gold.web_usage_daily"))?;
    tx.execute(
        "INSERT INTO gold.web_usage_daily
         SELECT event_date, coalesce(channel, 'unknown'), count(DISTINCT session_id),
                count(*) FILTER (WHERE event_type IN ('page_view', 'screen_view')),
                count(DISTINCT customer_id), count(*)
         FROM silver.web_events WHERE event_date = ANY($1) GROUP BY 1, 2",
        &[&days],
    )
    .await
    .map_err(DbError::query("refreshing gold.web_usage_daily"))?;
    Ok(())
}
