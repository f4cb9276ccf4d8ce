//! The pipeline page's live states: each source of the agent and each part of the transform,
//! as their own `/health` tells them (addresses `[ingest] metrics_addr` and
//! `[transform] metrics_addr` of the same configuration file), asked when the page loads,
//! one second at most each. Not cached by gold version: these states move without gold.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::{ColumnView, Kind, Panel};

/// `GET /health` on `addr`: the JSON body, whatever the status code (503 carries reasons).
async fn get_health(addr: SocketAddr) -> Result<Value, String> {
    let ask = async {
        let mut c = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("no answer on {addr}: {e}"))?;
        c.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        c.take(1 << 20)
            .read_to_end(&mut resp)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or("an answer without a body")?;
        serde_json::from_str(body).map_err(|e| format!("an answer that is not JSON: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .map_err(|_| format!("no answer from {addr} within 1 s"))?
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Rows (service, part, state, detail) of one service's `/health` answer.
pub fn rows(service: &str, health: Result<Value, String>) -> Vec<Vec<Option<String>>> {
    let row = |part: &str, state: Option<String>, detail: Option<String>| {
        vec![
            Some(service.to_string()),
            Some(part.to_string()),
            state,
            detail,
        ]
    };
    let body = match health {
        Ok(b) => b,
        Err(e) => return vec![row("-", Some("unreachable".into()), Some(e))],
    };
    let mut out = Vec::new();
    if let Some(sources) = body["sources"].as_array() {
        for s in sources {
            let detail = text(&s["error"]).or_else(|| {
                Some(format!(
                    "last beat {} ms ago, {} restarts",
                    s["last_beat_ms_ago"], s["restarts"]
                ))
            });
            out.push(row(
                s["name"].as_str().unwrap_or("?"),
                text(&s["state"]),
                detail,
            ));
        }
    }
    for part in ["warehouse", "consumer", "loop", "gold"] {
        let p = &body[part];
        if p.is_null() {
            continue;
        }
        let detail = text(&p["error"]).or_else(|| match part {
            "consumer" => Some(format!(
                "{} partitions, last record {}",
                p["assigned_partitions"],
                text(&p["last_record_ms_ago"])
                    .map_or_else(|| "never".into(), |ms| format!("{ms} ms ago"))
            )),
            "gold" => Some(text(&p["behind_ms"]).map_or_else(
                || "up to date with silver".into(),
                |ms| format!("catching up with a backlog: {ms} ms behind silver"),
            )),
            _ => Some(format!("last ok {} ms ago", p["last_ok_ms_ago"])),
        });
        out.push(row(part, text(&p["state"]), detail));
    }
    if out.is_empty() {
        out.push(row("-", text(&body["status"]), None));
    }
    out
}

/// The panel, asking both services at once.
pub async fn panel(ingest: Option<SocketAddr>, transform: Option<SocketAddr>) -> Panel {
    let ask = |addr: Option<SocketAddr>| async move {
        match addr {
            Some(a) => get_health(a).await,
            None => Err("no metrics_addr in the configuration".into()),
        }
    };
    let (i, t) = tokio::join!(ask(ingest), ask(transform));
    let mut all = rows("ingest", i);
    all.extend(rows("transform", t));
    let col = |name: &str, label: &str| ColumnView {
        name: name.into(),
        label: label.into(),
        kind: Kind::Text,
    };
    Panel {
        id: "live_states".into(),
        title: "Sources and consumer, live".into(),
        hint: "Each source of the agent and each part of the transform, as their /health says now (running, retrying, stopped and why)".into(),
        columns: vec![
            col("service", "Service"),
            col("part", "Source / part"),
            col("state", "State"),
            col("detail", "Why / detail"),
        ],
        rows: all,
        chart: None,
        links: Vec::new(),
        export: None,
        lines: None,
        truncated: false,
        next: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_of_each_service_and_of_an_unreachable_one() {
        let ingest = json!({"status": "unhealthy", "sources": [
            {"name": "csv", "state": "running", "last_beat_ms_ago": 120, "restarts": 0},
            {"name": "mysql", "state": "stopped", "error": "missing REPLICATION SLAVE", "restarts": 0}
        ]});
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            rows("ingest", Ok(ingest)),
            vec![
                vec![
                    s("ingest"),
                    s("csv"),
                    s("running"),
                    s("last beat 120 ms ago, 0 restarts")
                ],
                vec![
                    s("ingest"),
                    s("mysql"),
                    s("stopped"),
                    s("missing REPLICATION SLAVE")
                ],
            ]
        );
        let transform = json!({"status": "ok", "warehouse": {"state": "ok", "last_ok_ms_ago": 5},
            "consumer": {"state": "running", "assigned_partitions": 3, "last_record_ms_ago": null, "last_ok_ms_ago": 1},
            "loop": {"state": "running", "last_ok_ms_ago": 7},
            "gold": {"state": "catching_up", "behind_ms": 4200}});
        let r = rows("transform", Ok(transform));
        assert_eq!(r[1][3], s("3 partitions, last record never"));
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[3],
            vec![
                s("transform"),
                s("gold"),
                s("catching_up"),
                s("catching up with a backlog: 4200 ms behind silver")
            ]
        );
        assert_eq!(
            r[0],
            vec![
                s("transform"),
                s("warehouse"),
                s("ok"),
                s("last ok 5 ms ago")
            ]
        );
        assert_eq!(
            rows("ingest", Err("no answer on 127.0.0.1:9: refused".into())),
            vec![vec![
                s("ingest"),
                s("-"),
                s("unreachable"),
                s("no answer on 127.0.0.1:9: refused")
            ]]
        );
    }
}
