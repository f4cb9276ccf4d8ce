//! `/health` of the agent tells the truth about each source: with a MySQL source whose user
//! lacks the replication grants (a mistake retrying cannot fix) beside a working CSV source,
//! the real `ingest` keeps running and delivering CSV rows, and `/health` answers 503 naming
//! the stopped source and MariaDB's reason, while the CSV source is reported running.

use anyhow::{bail, Context, Result};
use e2e_tests::{free_port, mysql_admin_url, wait_for, Scratch};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// `GET /health` on the agent's ops port: (status code, JSON body).
fn get_health(port: u16) -> Result<(u16, Value)> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut resp = String::new();
    c.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("an HTTP answer with a body")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .context("a status line")?
        .parse()?;
    Ok((code, serde_json::from_str(body)?))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_stopped_by_a_missing_grant_turns_health_red_with_the_reason() -> Result<()> {
    let s = Scratch::new("health", None).await?;
    let user = format!("nogrant{}", s.id);
    let opts = mysql_async::Opts::from_url(&mysql_admin_url())?;
    let mut admin = mysql_async::Conn::new(opts.clone())
        .await
        .context("connecting to the CDC MariaDB (ETL_TEST_MYSQL_URL; ./dev stack starts it)")?;
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO '{user}'@'%'"
        ))
        .await?;
    let config = e2e_tests::mysql_config(&s, "health.toml", 1, e2e_tests::random_server_id(), "")?;
    let url = format!(
        "mysql://{user}:pw@{}:{}",
        opts.ip_or_hostname(),
        opts.tcp_port()
    );
    let text = std::fs::read_to_string(&config)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("url = \"mysql://"))
        .context("the mysql url line")?
        .to_string();
    std::fs::write(&config, text.replace(&line, &format!("url = \"{url}\"")))?;
    let s = Scratch { config, ..s };

    let mut ingest = s.start("ingest")?;
    let port = s.ingest_port;
    let (code, body) = wait_for(
        Duration::from_secs(60),
        "/health to report the stopped MySQL source",
        || async {
            match get_health(port) {
                Ok((code, body))
                    if body["sources"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|x| x["name"] == "mysql" && x["state"] == "stopped")
                    }) =>
                {
                    Ok(Some((code, body)))
                }
                _ => Ok(None),
            }
        },
    )
    .await
    .with_context(|| format!("ingest log:\n{}", s.log("ingest")))?;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    let sources = body["sources"].as_array().context("sources")?;
    let mysql = sources
        .iter()
        .find(|x| x["name"] == "mysql")
        .context("mysql")?;
    let error = mysql["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("REPLICATION") || error.contains("1227"),
        "the reason names the missing grant: {error}"
    );
    let reasons = body["reasons"].as_array().context("reasons")?;
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(reasons[0]
        .as_str()
        .unwrap_or_default()
        .starts_with("source mysql stopped: "));
    let csv = sources.iter().find(|x| x["name"] == "csv").context("csv")?;
    assert_eq!(csv["state"], "running", "{body}");
    if !ingest.is_running() {
        bail!(
            "ingest exited although its CSV source still runs:\n{}",
            s.log("ingest")
        );
    }
    // The restart count stays 0: a user error is not retried.
    assert_eq!(mysql["restarts"], 0, "{body}");
    // Asked to stop, the agent exits non-zero: one of its sources stopped on an error.
    let stopped = ingest.stop();
    assert!(
        stopped
            .as_ref()
            .is_err_and(|e| e.to_string().contains("exit status: 1")),
        "{stopped:?}"
    );
    admin.query_drop(format!("DROP USER '{user}'@'%'")).await?;
    s.cleanup().await;
    Ok(())
}

/// The transform's `/health` with a broker that does not answer: 503 naming the consumer and
/// the broker's error, while the warehouse part stays ok.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_turns_the_transform_health_red() -> Result<()> {
    let mut s = Scratch::new("healthtx", None).await?;
    // Nothing listens there.
    let dead = free_port();
    s.extra_env
        .push(("ETL_KAFKA__BROKERS".into(), format!("127.0.0.1:{dead}")));
    let mut transform = s.start("transform")?;
    let port = s.transform_port;
    let body = wait_for(
        Duration::from_secs(90),
        "/health to report the consumer erroring",
        || async {
            match get_health(port) {
                Ok((503, body)) if body["consumer"]["state"] == "erroring" => Ok(Some(body)),
                _ => Ok(None),
            }
        },
    )
    .await
    .with_context(|| format!("transform log:\n{}", s.log("transform")))?;
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["warehouse"]["state"], "ok", "{body}");
    let reasons = body["reasons"].as_array().context("reasons")?;
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(
        reasons[0]
            .as_str()
            .unwrap_or_default()
            .starts_with("consumer erroring for "),
        "{body}"
    );
    assert!(transform.is_running(), "transform keeps running");
    transform.kill9();
    s.cleanup().await;
    Ok(())
}
