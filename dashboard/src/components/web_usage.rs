//! Web and app usage panel: sessions and page (screen) views per day and channel, from
//! `gold.web_usage_daily` (migration 0007, fed by the Azure Blob source's usage exports).
//! Self-contained: its own server function and refresh, so the sales overview does not
//! depend on it (the panel stays hidden until the view has data).

use std::time::Duration;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::format::format_count;

/// One day of usage, both channels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub web_sessions: i64,
    pub web_views: i64,
    pub app_sessions: i64,
    pub app_views: i64,
}

/// Answer of [`get_web_usage`]: the last 14 days with data, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebUsage {
    pub days: Vec<UsageDay>,
    pub refresh_ms: u64,
}

/// Reads `gold.web_usage_daily`; an empty answer while the view is missing or empty.
#[server]
pub async fn get_web_usage() -> Result<WebUsage, ServerFnError> {
    server::load().await.map_err(ServerFnError::new)
}

#[cfg(feature = "ssr")]
mod server {
    use super::{UsageDay, WebUsage};
    use crate::ssr::AppState;
    use leptos::prelude::use_context;
    use tokio_postgres::error::SqlState;

    const QUERY: &str = "SELECT day, \
        coalesce(sum(sessions) FILTER (WHERE channel = 'web'), 0)::int8, \
        coalesce(sum(page_views) FILTER (WHERE channel = 'web'), 0)::int8, \
        coalesce(sum(sessions) FILTER (WHERE channel = 'app'), 0)::int8, \
        coalesce(sum(page_views) FILTER (WHERE channel = 'app'), 0)::int8 \
        FROM gold.web_usage_daily GROUP BY day ORDER BY day DESC LIMIT 14";

    pub async fn load() -> Result<WebUsage, String> {
        let state = use_context::<AppState>().ok_or("the dashboard state is missing")?;
        let refresh_ms = state.refresh_ms;
        let empty = WebUsage {
            days: Vec::new(),
            refresh_ms,
        };
        let client = match state.pool.get().await {
            Ok(c) => c,
            Err(e) => return Err(format!("no warehouse connection: {e}")),
        };
        let rows = match client.query(QUERY, &[]).await {
            Ok(rows) => rows,
            Err(e)
                if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE
                    || *c == SqlState::INVALID_SCHEMA_NAME) =>
            {
                return Ok(empty)
            }
            Err(e) => return Err(format!("reading gold.web_usage_daily: {e}")),
        };
        let days = rows
            .iter()
            .map(|r| {
                let d: chrono::NaiveDate = r.try_get(0)?;
                Ok(UsageDay {
                    day: d.format("%Y-%m-%d").to_string(),
                    web_sessions: r.try_get(1)?,
                    web_views: r.try_get(2)?,
                    app_sessions: r.try_get(3)?,
                    app_views: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(|e| format!("reading gold.web_usage_daily: {e}"))?;
        metrics::counter!("dashboard_server_fn_calls_total", "fn" => "get_web_usage", "outcome" => "ok").increment(1);
        Ok(WebUsage { days, refresh_ms })
    }
}

#[component]
pub fn WebUsagePanel() -> impl IntoView {
    let tick = RwSignal::new(0u64);
    let usage = Resource::new(move || tick.get(), |_| get_web_usage());
    let refresh_ms = Memo::new(move |previous: Option<&Option<u64>>| {
        usage
            .get()
            .and_then(|r| r.ok())
            .map(|u| u.refresh_ms)
            .or_else(|| previous.copied().flatten())
    });
    Effect::new(move |_| {
        if let Some(ms) = refresh_ms.get() {
            let every = Duration::from_millis(ms.max(1000));
            match set_interval_with_handle(move || tick.update(|t| *t += 1), every) {
                Ok(handle) => on_cleanup(move || handle.clear()),
                Err(e) => leptos::logging::error!("cannot start the web usage timer: {e:?}"),
            }
        }
    });
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                usage.await.ok().filter(|u| !u.days.is_empty()).map(|u| view! { <UsageTable days=u.days/> })
            })}
        </Transition>
    }
}

#[component]
fn UsageTable(days: Vec<UsageDay>) -> impl IntoView {
    let total = |f: fn(&UsageDay) -> i64| format_count(days.iter().map(f).sum::<i64>());
    let totals = (
        total(|d| d.web_sessions),
        total(|d| d.web_views),
        total(|d| d.app_sessions),
        total(|d| d.app_views),
    );
    let n = days.len();
    view! {
        <section class="usage-panels">
            <div class="card panel" data-testid="web-usage">
                <h2>"Web and app usage"</h2>
                <p class="panel-hint">{format!("Sessions and page views per day, last {n} days with data (usage exports in Azure Blob Storage)")}</p>
                <table class="web-usage">
                    <thead>
                        <tr>
                            <th>"Day"</th>
                            <th class="num">"Web sessions"</th>
                            <th class="num">"Web page views"</th>
                            <th class="num">"App sessions"</th>
                            <th class="num">"App screen views"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {days
                            .into_iter()
                            .map(|d| view! {
                                <tr>
                                    <td>{d.day}</td>
                                    <td class="num">{format_count(d.web_sessions)}</td>
                                    <td class="num">{format_count(d.web_views)}</td>
                                    <td class="num">{format_count(d.app_sessions)}</td>
                                    <td class="num">{format_count(d.app_views)}</td>
                                </tr>
                            })
                            .collect_view()}
                        <tr class="total">
                            <td>"Total"</td>
                            <td class="num">{totals.0}</td>
                            <td class="num">{totals.1}</td>
                            <td class="num">{totals.2}</td>
                            <td class="num">{totals.3}</td>
                        </tr>
                    </tbody>
                </table>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_days_and_totals() {
        let days = vec![
            UsageDay {
                day: "2026-03-02".into(),
                web_sessions: 1200,
                web_views: 5000,
                app_sessions: 10,
                app_views: 40,
            },
            UsageDay {
                day: "2026-03-01".into(),
                web_sessions: 3,
                web_views: 7,
                app_sessions: 0,
                app_views: 0,
            },
        ];
        let html = Owner::new().with(|| view! { <UsageTable days/> }.to_html());
        assert!(html.contains(r#"data-testid="web-usage""#), "{html}");
        assert!(html.contains("2026-03-02"), "{html}");
        assert!(html.contains("1,203"), "web sessions total: {html}");
        assert!(html.contains("5,007"), "{html}");
    }
}
