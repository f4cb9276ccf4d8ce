//! "/live": the binlog shop's orders, web and app usage, live anomalies.

use leptos::prelude::*;

use crate::{
    components::{page::PanelPage, shop::ShopPanel},
    model::{Filters, PageData},
};

/// Loads the panels of the live page.
#[server(prefix = "/rpc")]
pub async fn load_live(#[server(default)] filters: Filters) -> Result<PageData, ServerFnError> {
    crate::ssr::panels::load(&crate::ssr::pages::LIVE, filters).await
}

#[component]
pub fn LivePage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    metrics::counter!("dashboard_page_renders_total", "page" => "Live").increment(1);
    let tick = RwSignal::new(0u64);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if !document().hidden() {
                    tick.update(|t| *t += 1)
                }
            },
            std::time::Duration::from_secs(2),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    view! {
        <div class="live">
            <div class="page shop-wrap"><ShopPanel tick=tick/></div>
            <PanelPage title="Live" path="/live".to_string() fields=&[] load=load_live/>
        </div>
    }
}
