//! One module per page; each owns its server function.
//!
//! The panel pages are declared with [`panel_page!`]: a server function that loads the
//! page's panels (declared in `crate::ssr::pages`) and the component that shows them.

/// `panel_page!(server_fn, Component, "Title", "/path", SPEC, fields)`; a path ending in `/`
/// takes the `:id` segment after it.
macro_rules! panel_page {
    ($load:ident, $component:ident, $title:literal, $path:literal, $spec:ident, $fields:expr) => {
        use leptos::prelude::*;

        use crate::{
            components::page::PanelPage,
            model::{Filters, PageData},
        };

        #[doc = concat!("Loads the panels of ", $title, ".")]
        #[server(prefix = "/rpc")]
        pub async fn $load(#[server(default)] filters: Filters) -> Result<PageData, ServerFnError> {
            crate::ssr::panels::load(&crate::ssr::pages::$spec, filters).await
        }

        #[component]
        pub fn $component() -> impl IntoView {
            #[cfg(feature = "ssr")]
            metrics::counter!("dashboard_page_renders_total", "page" => $title).increment(1);
            let params = leptos_router::hooks::use_params_map();
            let path = Signal::derive(move || {
                if $path.ends_with('/') {
                    format!("{}{}", $path, params.get().get("id").unwrap_or_default())
                } else {
                    $path.to_string()
                }
            });
            view! { <PanelPage title=$title path=path fields=$fields load=$load/> }
        }
    };
}

pub mod customer;
pub mod customers;
pub mod employees;
pub mod lines;
pub mod live;
pub mod overview;
pub mod pipeline;
pub mod product;
pub mod products;
pub mod sales;
