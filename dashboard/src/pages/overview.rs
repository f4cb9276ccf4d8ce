//! "/" — the sales overview: KPIs, daily revenue, revenue by country. Refreshes itself.

use std::time::Duration;

use leptos::{either::EitherOf3, prelude::*};

use crate::{
    components::{chart::RevenueChart, kpi::KpiCard, shop::ShopPanel, web_usage::WebUsagePanel},
    format::{format_count, format_decimal},
    model::{get_overview, Change, Overview, OverviewData, Warehouse},
};

#[component]
pub fn OverviewPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    metrics::counter!("dashboard_page_renders_total", "page" => "overview").increment(1);

    // Bumping `tick` re-runs the server function; the browser bumps it every refresh_ms.
    let tick = RwSignal::new(0u64);
    let overview = Resource::new(move || tick.get(), |_| get_overview());

    // The refresh interval comes with the data (so from the server's config); remember the
    // last known one so that a failed refresh does not stop the polling.
    let refresh_ms = Memo::new(move |previous: Option<&Option<u64>>| {
        overview
            .get()
            .and_then(|r| r.ok())
            .map(|o| o.refresh_ms)
            .or_else(|| previous.copied().flatten())
    });

    // Effects run only in the browser: this is the hydration marker and the poller.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    Effect::new(move |_| {
        if let Some(ms) = refresh_ms.get() {
            let every = Duration::from_millis(ms.max(100));
            match set_interval_with_handle(move || tick.update(|t| *t += 1), every) {
                Ok(handle) => on_cleanup(move || handle.clear()),
                Err(e) => leptos::logging::error!("cannot start the refresh timer: {e:?}"),
            }
        }
    });

    view! {
        <main class="page" data-hydrated=move || if hydrated.get() { "true" } else { "false" }>
            <header class="page-header">
                <div>
                    <h1>"Sales overview"</h1>
                    <p class="subtitle">"Gold layer of the warehouse, refreshed live"</p>
                </div>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        overview.await.ok().map(|o| view! {
                            <div class="updated" title="Time the server last read the warehouse (UTC)">
                                "Last updated "
                                <time data-testid="last-updated">{o.updated_at}</time>
                                " UTC"
                            </div>
                        })
                    })}
                </Transition>
            </header>
            <Transition fallback=|| view! { <p class="notice">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match overview.await {
                        Ok(Overview { warehouse: Warehouse::Ready(data), .. }) => {
                            EitherOf3::A(view! { <Dashboard data=*data/> })
                        }
                        Ok(Overview { warehouse: Warehouse::Waiting(reason), .. }) => {
                            EitherOf3::B(view! { <Waiting reason/> })
                        }
                        Err(e) => EitherOf3::C(view! {
                            <div class="notice error" role="alert">
                                <strong>"The warehouse cannot be reached right now. "</strong>
                                "Retrying automatically. "
                                <span class="detail">
                                    {match e {
                                        ServerFnError::ServerError(message) => message,
                                        other => other.to_string(),
                                    }}
                                </span>
                            </div>
                        }),
                    }
                })}
            </Transition>
            <WebUsagePanel/>
            <ShopPanel tick=tick/>
        </main>
    }
}

fn chart_hint(days: usize, forecast: usize, anomalies: usize) -> String {
    let mut hint = format!("Last 365 days of data, {days} with sales");
    if forecast > 0 {
        hint.push_str(&format!(
            "; dashed: forecast of the next {forecast} days, with its 80 % and 95 % bands"
        ));
    }
    match anomalies {
        0 => {}
        1 => hint.push_str("; red: 1 anomalous day (hover for the expected value)"),
        n => hint.push_str(&format!(
            "; red: {n} anomalous days (hover for the expected value)"
        )),
    }
    hint
}

/// A KPI of the last 30 days with its change against the 30 days before.
#[component]
fn ChangeCard(
    id: &'static str,
    label: &'static str,
    change: Option<Change>,
    decimals: usize,
    period: String,
) -> impl IntoView {
    let change = change?;
    let (class, delta) = match change.pct {
        Some(p) if p > 0.0 => ("delta up", format!("▲ {p:.1} %")),
        Some(p) if p < 0.0 => ("delta down", format!("▼ {:.1} %", -p)),
        Some(_) => ("delta", "0.0 %".to_string()),
        None => ("delta", "new".to_string()),
    };
    let before = format_decimal(&change.before, decimals);
    Some(view! {
        <div class="card kpi" data-kpi=id title=period>
            <div class="kpi-label">{label}</div>
            <div class="kpi-value">{format_decimal(&change.now, decimals)}</div>
            <div class="kpi-hint">
                <span class=class data-testid="delta">{delta}</span>
                {format!(" vs {before} the 30 days before")}
            </div>
        </div>
    })
}

#[component]
fn Waiting(reason: String) -> impl IntoView {
    view! {
        <div class="notice waiting" data-testid="waiting">
            <div class="spinner" aria-hidden="true"></div>
            <div>
                <strong>"Waiting for data"</strong>
                <p>{reason}</p>
                <p class="detail">"This page updates by itself as soon as sales reach the gold layer."</p>
            </div>
        </div>
    }
}

#[component]
fn Dashboard(data: OverviewData) -> impl IntoView {
    let OverviewData {
        kpis,
        change,
        daily,
        forecast,
        anomalies,
        countries,
    } = data;
    let range = match (&kpis.first_sale_date, &kpis.last_sale_date) {
        (Some(a), Some(b)) => format!("{a} – {b}"),
        _ => String::new(),
    };
    let chart_days = daily.len();
    let (forecast_days, anomaly_days) = (forecast.len(), anomalies.len());
    let period = change.as_ref().map(|c| c.period.clone());
    let (d_rev, d_ord, d_cust, d_basket) = match change {
        Some(c) => (
            Some(c.revenue),
            Some(c.orders),
            Some(c.customers),
            Some(c.avg_basket),
        ),
        None => (None, None, None, None),
    };
    view! {
        <section class="kpis">
            <KpiCard id="revenue" label="Revenue" value=format_decimal(&kpis.revenue, 2) hint=range/>
            <KpiCard id="orders" label="Orders" value=format_count(kpis.orders)/>
            <KpiCard id="customers" label="Customers" value=format_count(kpis.customers)/>
            <KpiCard id="avg_basket" label="Average basket" value=format_decimal(&kpis.avg_basket, 2)/>
        </section>
        {period.map(|p| view! {
            <section class="kpis recent" aria-label="Last 30 days against the 30 days before">
                <ChangeCard id="revenue_30d" label="Revenue, last 30 days" change=d_rev decimals=2 period=p.clone()/>
                <ChangeCard id="orders_30d" label="Orders, last 30 days" change=d_ord decimals=0 period=p.clone()/>
                <ChangeCard id="customers_30d" label="Customers, last 30 days" change=d_cust decimals=0 period=p.clone()/>
                <ChangeCard id="avg_basket_30d" label="Average basket, last 30 days" change=d_basket decimals=2 period=p/>
            </section>
        })}
        <section class="panels">
            <div class="card panel chart-panel">
                <h2>"Daily revenue"</h2>
                <p class="panel-hint">{chart_hint(chart_days, forecast_days, anomaly_days)}</p>
                <RevenueChart points=daily forecast=forecast anomalies=anomalies/>
            </div>
            <div class="card panel">
                <h2>"Revenue by country"</h2>
                <table class="countries">
                    <thead>
                        <tr>
                            <th>"Country"</th>
                            <th class="num">"Revenue"</th>
                            <th class="num">"Orders"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {countries
                            .into_iter()
                            .map(|c| view! {
                                <tr>
                                    <td>{c.country}</td>
                                    <td class="num">{format_decimal(&c.revenue, 2)}</td>
                                    <td class="num">{format_count(c.orders)}</td>
                                </tr>
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
}
