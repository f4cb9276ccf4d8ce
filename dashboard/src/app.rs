//! The HTML shell and the router.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

use crate::pages::overview::OverviewPage;

/// The whole document, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: shared by the server render and the browser (hydration).
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Stylesheet id="dashboard-css" href="/style.css"/>
        <Title text="Sales overview"/>
        <Router>
            <Routes fallback=NotFound>
                // Async: the server waits for the data, so the first HTML is the full page
                // (no loading flash, readable without JavaScript); the client takes over after.
                <Route path=path!("/") view=OverviewPage ssr=SsrMode::Async/>
            </Routes>
        </Router>
    }
}

/// Any path that is not a page.
#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
            resp.set_status(axum::http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <main class="page">
            <h1>"Not found"</h1>
            <p><a href="/">"Back to the sales overview"</a></p>
        </main>
    }
}
