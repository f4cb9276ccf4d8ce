//! Versioned SQL migrations from `migrations/`, embedded in the binary and applied at start
//! under an advisory lock (several services may start at once). An applied migration whose
//! file changed afterwards is an error: migrations are append-only.

use crate::sql::DbError;
use tokio_postgres::Client;
use tracing::info;

/// (version, name, SQL), in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "pipeline",
        include_str!("../../migrations/0001_pipeline.sql"),
    ),
    (
        2,
        "bronze",
        include_str!("../../migrations/0002_bronze.sql"),
    ),
    (
        3,
        "silver",
        include_str!("../../migrations/0003_silver.sql"),
    ),
    (4, "gold", include_str!("../../migrations/0004_gold.sql")),
    (5, "cdc", include_str!("../../migrations/0005_cdc.sql")),
    (6, "api", include_str!("../../migrations/0006_api.sql")),
    (
        7,
        "web_usage",
        include_str!("../../migrations/0007_web_usage.sql"),
    ),
    (
        8,
        "gold_marts",
        include_str!("../../migrations/0008_gold_marts.sql"),
    ),
    (
        9,
        "bronze_compact",
        include_str!("../../migrations/0009_bronze_compact.sql"),
    ),
    (
        10,
        "app_users",
        include_str!("../../migrations/0010_app_users.sql"),
    ),
    (
        11,
        "gold_queue",
        include_str!("../../migrations/0011_gold_queue.sql"),
    ),
];

const LOCK_KEY: i64 = 0x6574_6c5f_6d69_6772; // "etl_migr"

fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in sql.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration {version} ({name}) was changed after it was applied (checksum {applied} in the database, {file} in this build); add a new migration instead of editing an applied one")]
    Changed {
        version: i32,
        name: String,
        applied: String,
        file: String,
    },
}

/// Applies the pending migrations; returns how many were applied.
pub async fn migrate(client: &mut Client) -> Result<usize, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(DbError::query("taking the migration lock"))?;
    let result = apply(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(DbError::query("releasing the migration lock"))?;
    result
}

async fn apply(client: &mut Client) -> Result<usize, MigrateError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS pipeline;
             CREATE TABLE IF NOT EXISTS pipeline.schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             COMMENT ON TABLE pipeline.schema_migrations IS 'Warehouse migrations applied by the transform service (files in migrations/).';
             COMMENT ON COLUMN pipeline.schema_migrations.version IS 'Migration number (the file name prefix).';
             COMMENT ON COLUMN pipeline.schema_migrations.name IS 'Migration name.';
             COMMENT ON COLUMN pipeline.schema_migrations.checksum IS 'Checksum of the SQL applied; an edited migration is refused.';
             COMMENT ON COLUMN pipeline.schema_migrations.applied_at IS 'When the migration was applied.';",
        )
        .await
        .map_err(DbError::query("creating pipeline.schema_migrations"))?;
    let rows = client
        .query(
            "SELECT version, name, checksum FROM pipeline.schema_migrations",
            &[],
        )
        .await
        .map_err(DbError::query("reading pipeline.schema_migrations"))?;
    let mut applied = 0;
    for &(version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some(r) = rows.iter().find(|r| r.get::<_, i32>(0) == version) {
            let old: String = r.get(2);
            if old != sum {
                return Err(MigrateError::Changed {
                    version,
                    name: name.to_string(),
                    applied: old,
                    file: sum,
                });
            }
            continue;
        }
        let tx = client
            .transaction()
            .await
            .map_err(DbError::query("starting a migration"))?;
        tx.batch_execute(sql).await.map_err(DbError::query(format!(
            "applying migration {version} ({name})"
        )))?;
        tx.execute(
            "INSERT INTO pipeline.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&version, &name, &sum],
        )
        .await
        .map_err(DbError::query("recording a migration"))?;
        tx.commit()
            .await
            .map_err(DbError::query(format!("committing migration {version}")))?;
        info!(version, name, "migration applied");
        applied += 1;
    }
    Ok(applied)
}
