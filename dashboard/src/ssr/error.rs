//! Errors of the dashboard library.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("configuration file {0} does not exist")]
    ConfigMissing(PathBuf),
    #[error("invalid configuration: {0}")]
    Config(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(
        "refusing to start in production mode: the warehouse URL {0}; set a real password \
         (ETL_WAREHOUSE__URL or [warehouse] url)"
    )]
    InsecureProduction(&'static str),
    #[error(
        "refusing to start in production mode: the signing secret {0}; set [dashboard] secret \
         or ETL_DASHBOARD__SECRET to 32 or more random bytes (e.g. `openssl rand -hex 32`)"
    )]
    InsecureSecret(&'static str),
    #[error("invalid warehouse URL: {0}")]
    WarehouseUrl(#[source] tokio_postgres::Error),
    #[error("cannot create the warehouse connection pool: {0}")]
    Pool(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}
