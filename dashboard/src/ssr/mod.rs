//! Server-only code: configuration, the warehouse pool, the queries and the HTTP server.

pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod csv_export;
pub mod db;
pub mod error;
pub mod health_probe;
pub mod overview;
pub mod page_cache;
pub mod pages;
pub mod panels;
pub mod ratelimit;
pub mod server;
pub mod shop;

pub use config::{Mode, Settings};
pub use error::DashboardError;
pub use server::{router, serve, AppState};
