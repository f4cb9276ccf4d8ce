//! A resume point purged from the server (`PURGE BINARY LOGS` while the agent was down):
//! without `snapshot_mode = "when_needed"` the agent stops with a message saying what to do;
//! with it, the agent takes the captured tables again and the warehouse ends equal to them,
//! including the rows deleted while the binlog could not be read.
//!
//! This test purges binary logs of the shared test server, so it lives alone in its test
//! binary (cargo runs test binaries one after another).

use anyhow::{Context, Result};
use e2e_tests::{mysql_admin_url, wait_for, MysqlScratch, Scratch};
use mysql_async::prelude::Queryable;
use std::path::PathBuf;
use std::time::Duration;

fn config(s: &Scratch, db: &str, mode: &str, server_id: u32) -> Result<PathBuf> {
    e2e_tests::mysql_config(
        s,
        &format!("mysql-{mode}.toml"),
        2,
        server_id,
        &format!("include = [\"{db}.*\"]\nsnapshot_mode = \"{mode}\""),
    )
}

async fn table_rows(c: &mut mysql_async::Conn) -> Result<Vec<(i32, String)>> {
    Ok(c.query("SELECT id, v FROM t ORDER BY id").await?)
}

async fn silver(db: &tokio_postgres::Client, entity: &str) -> Vec<(i32, String)> {
    db.query(
        &format!("SELECT id, v FROM silver.\"{entity}\" ORDER BY id"),
        &[],
    )
    .await
    .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_resume_point_stops_the_agent_or_with_when_needed_resnapshots() -> Result<()> {
    let mut s = Scratch::new("mypurge", None).await?;
    let my = MysqlScratch::new("purge").await?;
    let mut c = my.conn().await?;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20) NOT NULL)")
        .await?;
    let values: Vec<String> = (1..=100).map(|i| format!("({i}, 'v{i}')")).collect();
    c.query_drop(format!("INSERT INTO t VALUES {}", values.join(",")))
        .await?;
    let server_id = e2e_tests::random_server_id();
    s.config = config(&s, &my.db, "initial", server_id)?;
    let mut transform = s.start("transform")?;
    let mut ingest = s.start("ingest")?;
    let db = s.db().await?;
    let entity = format!("{}_t", my.db);
    c.query_drop("UPDATE t SET v = 'streamed' WHERE id = 1")
        .await?;
    wait_for(Duration::from_secs(60), "the table in silver", || async {
        let rows = silver(&db, &entity).await;
        Ok((rows.len() == 100 && rows[0].1 == "streamed").then_some(()))
    })
    .await
    .with_context(|| s.log("ingest"))?;

    // The agent is down while rows change and the binlog holding the changes is purged.
    ingest.kill9();
    c.query_drop("DELETE FROM t WHERE id <= 10").await?;
    c.query_drop("UPDATE t SET v = 'changed' WHERE id BETWEEN 11 AND 20")
        .await?;
    c.query_drop("INSERT INTO t VALUES (101, 'new'), (102, 'new')")
        .await?;
    let mut admin =
        mysql_async::Conn::new(mysql_async::Opts::from_url(&mysql_admin_url())?).await?;
    admin.query_drop("FLUSH BINARY LOGS").await?;
    let current: (String, u64) = admin
        .query_first::<mysql_async::Row, _>("SHOW MASTER STATUS")
        .await?
        .map(|r| (r.get(0).unwrap_or_default(), r.get(1).unwrap_or_default()))
        .context("binlog off")?;
    // The server keeps a file that a (dead, not yet noticed) dump thread still reads: retry
    // until the files before the current one are gone.
    let mut purged = false;
    for _ in 0..40 {
        admin
            .query_drop(format!("PURGE BINARY LOGS TO '{}'", current.0))
            .await?;
        let files: Vec<mysql_async::Row> = admin.query("SHOW BINARY LOGS").await?;
        if files.len() == 1 {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(purged, "the older binary logs could be purged");
    println!("purged binary logs up to {}", current.0);

    // Without when_needed: a clear stop.
    ingest = s.start("ingest")?;
    wait_for(Duration::from_secs(60), "the agent to stop", || async {
        Ok(s.log("ingest").contains("source stopped").then_some(()))
    })
    .await
    .with_context(|| s.log("ingest"))?;
    let log = s.log("ingest");
    assert!(
        log.contains("when_needed"),
        "the message says what to do:\n{log}"
    );
    ingest.kill9();

    // With when_needed: a new snapshot, and the warehouse equals the table again.
    c.query_drop("UPDATE t SET v = 'after purge' WHERE id = 50")
        .await?;
    s.config = config(&s, &my.db, "when_needed", server_id)?;
    ingest = s.start("ingest")?;
    let want = table_rows(&mut c).await?;
    wait_for(
        Duration::from_secs(90),
        "silver equal to the table",
        || async { Ok((silver(&db, &entity).await == want).then_some(())) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    let log = s.log("ingest");
    assert!(
        log.contains("taking a new snapshot"),
        "the agent re-snapshotted:\n{log}"
    );
    // Streaming carries on after the new snapshot.
    c.query_drop("DELETE FROM t WHERE id = 101").await?;
    let want = table_rows(&mut c).await?;
    wait_for(
        Duration::from_secs(60),
        "the next change in silver",
        || async { Ok((silver(&db, &entity).await == want).then_some(())) },
    )
    .await?;

    ingest.stop()?;
    transform.stop()?;
    drop(c);
    drop(db);
    my.cleanup().await;
    s.cleanup().await;
    Ok(())
}
