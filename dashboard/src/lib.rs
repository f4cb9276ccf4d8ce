//! Live sales dashboard over the warehouse's gold layer.
//!
//! One crate, two builds:
//! - feature `ssr` (default): the axum server (`src/main.rs`), server functions that read
//!   PostgreSQL, server-side rendering;
//! - feature `hydrate`: the same components compiled to wasm, which take over the
//!   server-rendered page in the browser and refresh it live.

pub mod app;
pub mod components;
pub mod format;
pub mod model;
pub mod pages;

#[cfg(feature = "ssr")]
pub mod ssr;

/// Entry point of the wasm build: attaches the client to the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
