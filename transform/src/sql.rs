//! PostgreSQL plumbing: connecting, and values for binary COPY.

use bytes::{BufMut, BytesMut};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use rust_decimal::Decimal;
use std::error::Error;
use tokio_postgres::{Client, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the warehouse at {target}: {source} (is PostgreSQL up? check warehouse.url / ETL_WAREHOUSE__URL)")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{context}: {message}")]
    Query {
        context: String,
        message: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The warehouse's own bookkeeping holds something this version cannot read.
    #[error("{context}")]
    State { context: String },
}

impl DbError {
    /// A data exception or integrity violation (SQLSTATE class 22 or 23): the same input will
    /// fail again, so retrying is pointless.
    pub fn is_data_error(&self) -> bool {
        match self {
            DbError::Query { source, .. } => source
                .code()
                .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23")),
            DbError::Connect { .. } | DbError::State { .. } => false,
        }
    }

    /// PostgreSQL refused the statement itself because of what it says (SQLSTATE class 42
    /// but a missing privilege, 0A feature not supported, 54 program limit, or a data
    /// error): built from an event, the same event will be refused again.
    pub fn is_refused_statement(&self) -> bool {
        match self {
            DbError::Query { source, .. } => source.code().is_some_and(|c| {
                let c = c.code();
                (c.starts_with("42") && c != "42501")
                    || ["0A", "54", "22", "23"].iter().any(|k| c.starts_with(k))
            }),
            DbError::Connect { .. } | DbError::State { .. } => false,
        }
    }
}

/// The server's own words for a database error (code, message, detail), not just "db error".
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; {d}"));
            }
            m
        }
        None => e.to_string(),
    }
}

impl DbError {
    pub fn query(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Query {
            context,
            message: pg_message(&source),
            source,
        }
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => format!(
            "{}@{:?}:{:?}/{}",
            c.get_user().unwrap_or("?"),
            c.get_hosts().first(),
            c.get_ports().first().copied().unwrap_or(5432),
            c.get_dbname().unwrap_or("?")
        ),
        Err(_) => "<unparseable url>".into(),
    }
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Result<Client, DbError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| DbError::Connect {
            target: redact(url),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "warehouse connection closed");
        }
    });
    Ok(client)
}

/// JSON text already known to be valid, sent as `jsonb` without re-parsing.
#[derive(Debug)]
pub struct RawJson<'a>(pub &'a str);

impl ToSql for RawJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
    to_sql_checked!();
}

/// A typed silver value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i32),
    Decimal(Decimal),
    Date(chrono::NaiveDate),
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Decimal(d) => d.to_sql(ty, out),
            Value::Date(d) => d.to_sql(ty, out),
        }
    }
    fn accepts(ty: &Type) -> bool {
        <String as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <Decimal as ToSql>::accepts(ty)
            || <chrono::NaiveDate as ToSql>::accepts(ty)
    }
    to_sql_checked!();
}
