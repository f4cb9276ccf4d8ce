//! Streamed CSV bodies (API and page exports): a header line, then one line per row as it
//! arrives from PostgreSQL; the pooled connection is held until the last row is sent.

use axum::body::{Body, Bytes};
use deadpool_postgres::Object;
use futures::StreamExt;
use tokio_postgres::RowStream;

use super::db::chain;

fn line<'a>(fields: impl IntoIterator<Item = &'a str>) -> Result<Bytes, std::io::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(128));
    w.write_record(fields).map_err(std::io::Error::other)?;
    w.into_inner()
        .map(Bytes::from)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// `header`, then the first `columns` text fields of at most `limit` rows of `rows`.
pub fn body(
    header: Vec<String>,
    client: Object,
    rows: RowStream,
    limit: usize,
    what: &'static str,
) -> Body {
    let columns = header.len();
    let head = line(header.iter().map(String::as_str));
    let lines = rows.take(limit).map(move |row| {
        let _held = &client;
        let row = row.map_err(|err| {
            tracing::warn!(what, error = %chain(&err), "CSV export stopped");
            std::io::Error::other(chain(&err))
        })?;
        line((0..columns).map(|i| row.get::<_, Option<&str>>(i).unwrap_or("")))
    });
    Body::from_stream(futures::stream::once(async move { head }).chain(lines))
}
