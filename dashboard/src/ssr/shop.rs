//! Query of the live shop panel: `gold.shop_order_status()` (migrations/0005_cdc.sql).

use leptos::prelude::*;
use rust_decimal::Decimal;

use super::server::AppState;
use crate::model::{Shop, ShopStatus};

pub async fn get_shop() -> Result<Option<Shop>, ServerFnError> {
    let state = use_context::<AppState>().ok_or_else(|| {
        ServerFnError::new("the dashboard state is missing from the request context")
    })?;
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| ServerFnError::new(format!("no warehouse connection: {e}")))?;
    // Before the migration that defines it, the function is missing: nothing to show.
    let exists: bool = client
        .query_one(
            "SELECT to_regprocedure('gold.shop_order_status(text)') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT status, orders, order_value, to_char(last_change AT TIME ZONE 'UTC', 'HH24:MI:SS'),
                    extract(epoch FROM now() - last_change)::float8
             FROM gold.shop_order_status()",
            &[],
        )
        .await
        .map_err(|e| ServerFnError::new(format!("reading gold.shop_order_status(): {e}")))?;
    metrics::counter!("dashboard_server_fn_calls_total", "fn" => "get_shop", "outcome" => "ok")
        .increment(1);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut last: Option<(f64, String)> = None;
    let statuses = rows
        .iter()
        .map(|r| {
            let behind: Option<f64> = r.get(4);
            let at: Option<String> = r.get(3);
            if let (Some(b), Some(a)) = (behind, at) {
                if last.as_ref().is_none_or(|(lb, _)| b < *lb) {
                    last = Some((b, a));
                }
            }
            ShopStatus {
                status: r.get(0),
                orders: r.get(1),
                value: r.get::<_, Decimal>(2).round_dp(2).to_string(),
            }
        })
        .collect();
    Ok(Some(Shop {
        statuses,
        behind_s: last.as_ref().map(|l| l.0.max(0.0)),
        last_change: last.map(|l| l.1),
    }))
}
