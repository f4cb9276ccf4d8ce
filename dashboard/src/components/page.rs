//! The frame of every panel page: filters from the URL, one server call for all panels,
//! freshness, live refresh while the tab is visible.

use std::{future::Future, time::Duration};

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{filters::FilterBar, panel::PanelView};
use crate::model::{Filters, PageData, FILTER_PARAMS};

/// The page's filters, from its query string and its `:id` path segment.
pub fn url_filters() -> Memo<Filters> {
    let query = use_query_map();
    let params = use_params_map();
    Memo::new(move |_| {
        let q = query.get();
        let mut f = Filters::default();
        for p in FILTER_PARAMS {
            f.set(p, q.get(p));
        }
        f.id = params.get().get("id");
        f
    })
}

/// Bumps `tick` every `refresh_ms` while the tab is visible (the browser only).
pub fn live_refresh(tick: RwSignal<u64>, refresh_ms: Memo<Option<u64>>) {
    Effect::new(move |_| {
        if let Some(ms) = refresh_ms.get() {
            let every = Duration::from_millis(ms.max(100));
            let bump = move || {
                if !document().hidden() {
                    tick.update(|t| *t += 1);
                }
            };
            match set_interval_with_handle(bump, every) {
                Ok(handle) => on_cleanup(move || handle.clear()),
                Err(e) => leptos::logging::error!("cannot start the refresh timer: {e:?}"),
            }
        }
    });
}

#[component]
fn Freshness(data: PageData) -> impl IntoView {
    let f = data.context.freshness;
    let text = match (&f.newest_event_at, f.age_s, &f.committed_at) {
        (Some(at), Some(age), _) => format!("Data as of {at} UTC ({} ago)", human_age(age)),
        (None, _, Some(c)) => format!("Gold rebuilt {c} UTC"),
        _ => "No data yet".to_string(),
    };
    let committed = f
        .committed_at
        .map(|c| format!("gold committed {c} UTC"))
        .unwrap_or_default();
    view! {
        <div class=format!("freshness {}", f.level) data-testid="freshness" data-level=f.level.clone() title=committed>
            {text}
            <span class="tz">{format!(" · time zone {}", data.context.time_zone)}</span>
        </div>
    }
}

fn human_age(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[component]
pub fn PanelPage<F, Fut>(
    title: &'static str,
    /// The page's path without the query (`/sales`, `/products/P1`).
    #[prop(into)]
    path: Signal<String>,
    fields: &'static [&'static str],
    load: F,
) -> impl IntoView
where
    F: Fn(Filters) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<PageData, ServerFnError>> + Send + 'static,
{
    let filters = url_filters();
    let tick = RwSignal::new(0u64);
    let data = Resource::new(move || (filters.get(), tick.get()), move |(f, _)| load(f));
    let refresh_ms = Memo::new(move |previous: Option<&Option<u64>>| {
        data.get()
            .and_then(|r| r.ok())
            .map(|d| d.context.refresh_ms)
            .or_else(|| previous.copied().flatten())
    });
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    live_refresh(tick, refresh_ms);
    view! {
        <main class="page" data-hydrated=move || if hydrated.get() { "true" } else { "false" } data-page=title>
            <header class="page-header">
                <h1>{title}</h1>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move { data.await.ok().map(|d| view! { <Freshness data=d/> }) })}
                </Transition>
            </header>
            {move || {
                let f = filters.get();
                let p = path.get();
                view! { <FilterBar filters=f fields=fields path=p/> }
            }}
            <Transition fallback=|| view! { <p class="notice">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(d) => {
                            let f = filters.get_untracked();
                            let p = path.get_untracked();
                            let range = match (&d.context.from, &d.context.to) {
                                (None, None) => "all dates".to_string(),
                                (a, b) => format!("{} – {}", a.clone().unwrap_or_else(|| "…".into()), b.clone().unwrap_or_else(|| "…".into())),
                            };
                            view! {
                                <p class="range" data-testid="range">{format!("Showing {range}")}</p>
                                <div class="panels-grid">
                                    {d.panels.into_iter().map(|panel| view! { <PanelView panel=panel filters=f.clone() path=p.clone()/> }).collect_view()}
                                </div>
                            }.into_any()
                        }
                        Err(e) => view! {
                            <div class="notice error" role="alert" data-testid="page-error">
                                <strong>"This page cannot be shown right now. "</strong>
                                <span class="detail">{match e { ServerFnError::ServerError(m) => m, other => other.to_string() }}</span>
                            </div>
                        }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}
