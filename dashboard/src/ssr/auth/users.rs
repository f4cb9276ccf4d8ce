//! The users table (`app.users`, migrations/0010_app_users.sql) and its commands.

use deadpool_postgres::Pool;
use tokio_postgres::{error::SqlState, Client};

use super::password::{self, PasswordError};
use crate::model::Role;
use crate::ssr::db::chain;

/// The schema, applied by the dashboard at start (idempotent) and by the transform in order.
pub const SCHEMA_SQL: &str = include_str!("../../../../migrations/0010_app_users.sql");
/// The transform's migration lock: one schema change at a time, whoever runs it.
const MIGRATION_LOCK: i64 = 0x6574_6c5f_6d69_6772;

/// One user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub password_hash: String,
    pub token_version: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("no warehouse connection: {0}")]
    Connect(String),
    #[error("{what}: {detail}")]
    Query { what: &'static str, detail: String },
    #[error("the user {0:?} already exists (use `dashboard user passwd` to change the password)")]
    Exists(String),
    #[error("no user {0:?} (see `dashboard user list`)")]
    NotFound(String),
    #[error(
        "invalid username {0:?}: use letters, digits and . _ @ -, at most 64, starting with a letter or digit"
    )]
    BadName(String),
    #[error("unknown role {0:?}: use viewer, analyst or admin")]
    BadRole(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> UserError {
    move |e| UserError::Query {
        what,
        detail: chain(&e),
    }
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

/// Creates `app.users` if missing, under the migration lock.
pub async fn ensure_schema(client: &Client) -> Result<(), UserError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('app.users') IS NOT NULL", &[])
        .await
        .map_err(query("looking for app.users"))?
        .get(0);
    if exists {
        return Ok(());
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(query("taking the migration lock"))?;
    let result = client
        .batch_execute(SCHEMA_SQL)
        .await
        .map_err(query("creating app.users"));
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(query("releasing the migration lock"))?;
    result
}

pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, UserError> {
    pool.get().await.map_err(|e| UserError::Connect(chain(&e)))
}

pub async fn find(client: &Client, username: &str) -> Result<Option<User>, UserError> {
    let row = client
        .query_opt(
            "SELECT username, role, password_hash, token_version FROM app.users WHERE username = $1",
            &[&username],
        )
        .await
        .map_err(query("reading app.users"))?;
    Ok(row.map(|r| User {
        username: r.get(0),
        role: Role::parse(r.get(1)).unwrap_or(Role::Viewer),
        password_hash: r.get(2),
        token_version: r.get(3),
    }))
}

pub async fn add(
    client: &Client,
    username: &str,
    role: Role,
    password: &str,
) -> Result<(), UserError> {
    if !valid_name(username) {
        return Err(UserError::BadName(username.into()));
    }
    let hash = password::hash(password)?;
    client
        .execute(
            "INSERT INTO app.users (username, role, password_hash) VALUES ($1, $2, $3)",
            &[&username, &role.as_str(), &hash],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                UserError::Exists(username.into())
            } else {
                query("adding the user")(e)
            }
        })?;
    Ok(())
}

/// Sets a new password (and optionally a role); older sessions and tokens stop working.
pub async fn passwd(
    client: &Client,
    username: &str,
    password: Option<&str>,
    role: Option<Role>,
) -> Result<(), UserError> {
    let hash = password.map(password::hash).transpose()?;
    let n = client
        .execute(
            "UPDATE app.users SET password_hash = coalesce($2, password_hash),
                 role = coalesce($3, role),
                 token_version = token_version + CASE WHEN $2::text IS NULL THEN 0 ELSE 1 END,
                 updated_at = now()
             WHERE username = $1",
            &[&username, &hash, &role.map(Role::as_str)],
        )
        .await
        .map_err(query("changing the user"))?;
    if n == 0 {
        return Err(UserError::NotFound(username.into()));
    }
    Ok(())
}

pub async fn remove(client: &Client, username: &str) -> Result<(), UserError> {
    let n = client
        .execute("DELETE FROM app.users WHERE username = $1", &[&username])
        .await
        .map_err(query("removing the user"))?;
    if n == 0 {
        return Err(UserError::NotFound(username.into()));
    }
    Ok(())
}

/// (username, role, created, last login) of every user, by name.
pub async fn list(client: &Client) -> Result<Vec<[String; 4]>, UserError> {
    let rows = client
        .query(
            "SELECT username, role, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                    coalesce(to_char(last_login_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), 'never')
             FROM app.users ORDER BY username",
            &[],
        )
        .await
        .map_err(query("listing app.users"))?;
    Ok(rows
        .iter()
        .map(|r| [r.get(0), r.get(1), r.get(2), r.get(3)])
        .collect())
}

pub async fn touch_login(client: &Client, username: &str) -> Result<(), UserError> {
    client
        .execute(
            "UPDATE app.users SET last_login_at = now() WHERE username = $1",
            &[&username],
        )
        .await
        .map_err(query("recording the login"))?;
    Ok(())
}

/// In development, a warehouse without users gets an `admin` with a random password,
/// returned once so that the caller prints it. `None` when there are users already.
pub async fn first_admin(client: &Client) -> Result<Option<String>, UserError> {
    let any: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM app.users)", &[])
        .await
        .map_err(query("counting app.users"))?
        .get(0);
    if any {
        return Ok(None);
    }
    let password = password::generate();
    match add(client, "admin", Role::Admin, &password).await {
        Ok(()) => Ok(Some(password)),
        // Another dashboard created it at the same moment.
        Err(UserError::Exists(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["ada", "ada.lovelace@example.com", "a-b_c", "A1"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", ".ada", "ada lovelace", "ada'--", &"x".repeat(65), "é"] {
            assert!(!super::valid_name(bad), "{bad}");
        }
    }
}
