//! The HTML shell, the navigation and the router.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, SsrMode,
};

use crate::model::SessionUser;
use crate::pages::{
    customer::CustomerPage, customers::CustomersPage, employees::EmployeesPage, lines::LinesPage,
    live::LivePage, overview::OverviewPage, pipeline::PipelinePage, product::ProductPage,
    products::ProductsPage, sales::SalesPage,
};

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

/// The signed-in user (every page shows it).
#[server(prefix = "/rpc")]
pub async fn get_me() -> Result<SessionUser, ServerFnError> {
    crate::ssr::auth::current_user().ok_or_else(|| ServerFnError::new("sign in first"))
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/sales", "Sales"),
    ("/products", "Products"),
    ("/customers", "Customers"),
    ("/employees", "Employees"),
    ("/live", "Live"),
    ("/pipeline", "Pipeline"),
];

#[component]
fn Nav() -> impl IntoView {
    let me = Resource::new(|| (), |_| get_me());
    view! {
        <nav class="topnav" aria-label="Pages">
            <span class="brand">"Sales analytics"</span>
            {NAV.iter().map(|(href, label)| view! { <A href=*href exact=true attr:data-nav=*label>{*label}</A> }).collect_view()}
            <span class="spacer"></span>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    me.await.ok().map(|u| view! {
                        <span class="user" data-testid="user">{u.username.clone()}<span class="role">{format!(" ({})", u.role)}</span></span>
                        <a class="action" href="/swagger-ui/" rel="external">"API"</a>
                        <form method="post" action="/logout" class="logout">
                            <button type="submit" data-testid="logout">"Sign out"</button>
                        </form>
                    })
                })}
            </Transition>
        </nav>
    }
}

/// The application: shared by the server render and the browser (hydration).
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    // Async: the server waits for the data, so the first HTML is the full page (no loading
    // flash, readable without JavaScript); the client takes over after.
    view! {
        <Stylesheet id="dashboard-css" href="/style.css"/>
        <Title text="Sales analytics"/>
        <Router>
            <Nav/>
            <Routes fallback=NotFound>
                <Route path=path!("/") view=OverviewPage ssr=SsrMode::Async/>
                <Route path=path!("/sales") view=SalesPage ssr=SsrMode::Async/>
                <Route path=path!("/products") view=ProductsPage ssr=SsrMode::Async/>
                <Route path=path!("/products/:id") view=ProductPage ssr=SsrMode::Async/>
                <Route path=path!("/customers") view=CustomersPage ssr=SsrMode::Async/>
                <Route path=path!("/customers/:id") view=CustomerPage ssr=SsrMode::Async/>
                <Route path=path!("/employees") view=EmployeesPage ssr=SsrMode::Async/>
                <Route path=path!("/live") view=LivePage ssr=SsrMode::Async/>
                <Route path=path!("/pipeline") view=PipelinePage ssr=SsrMode::Async/>
                <Route path=path!("/lines") view=LinesPage ssr=SsrMode::Async/>
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
