//! File identity in the CSV agent, against the real broker: files with identical header lines
//! are not confused, a rename keeps the position, a truncated-and-rewritten file is read
//! anew, and a clean restart re-publishes nothing.

use anyhow::Result;
use e2e_tests::{read_topic, Scratch};
use std::collections::BTreeSet;
use std::time::Duration;

fn rows(topic: &str, expected: usize) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (_, v) in read_topic(topic, expected)? {
        let e: serde_json::Value = serde_json::from_slice(&v)?;
        out.push((
            e["after"]["product_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            e["source"]["file_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            e["source"]["offset"].to_string(),
        ));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_headers_renames_truncation_and_restart() -> Result<()> {
    let s = Scratch::new("files", None).await?;
    let topic = s.topic("products");
    let mut ingest = s.start("ingest")?;
    // Same header AND same first row: a fingerprint of the first line(s) would confuse them.
    let header = "product_id,product_name,category,unit_price\n";
    s.drop_file(
        "products_a.csv",
        format!("{header}P1,Pen,Office,1.00\nP2,Ink,Office,2.00\n").as_bytes(),
    )?;
    s.drop_file(
        "products_b.csv",
        format!("{header}P1,Pen,Office,1.00\nP3,Pad,Office,3.00\n").as_bytes(),
    )?;
    let got = rows(&topic, 4)?;
    assert_eq!(got.len(), 4, "both files are read in full: {got:?}");
    let ids: BTreeSet<&str> = got.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["P1", "P2", "P3"]));
    let files: BTreeSet<&str> = got.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(files.len(), 2, "two distinct file ids");

    // A rename keeps the position: nothing is re-read.
    std::fs::rename(
        s.watch_dir.join("products_a.csv"),
        s.watch_dir.join("products_a_renamed.csv"),
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rows(&topic, 4)?.len(),
        4,
        "a renamed file is not read again"
    );

    // Truncated and rewritten in place (same inode): read anew under a new file id.
    std::fs::write(
        s.watch_dir.join("products_b.csv"),
        format!("{header}P9,New,Misc,9.00\n"),
    )?;
    let got = rows(&topic, 5)?;
    assert_eq!(got.len(), 5, "{got:?}");
    let p9 = got
        .iter()
        .find(|r| r.0 == "P9")
        .expect("the rewritten file's row");
    assert!(
        !files.contains(p9.1.as_str()),
        "the rewritten file has a new file id"
    );

    // Appended rows after a clean restart: only the new ones are published.
    ingest.stop()?;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(s.watch_dir.join("products_a_renamed.csv"))?;
        f.write_all(b"P4,Cup,Home,4.00\n")?;
    }
    let mut ingest = s.start("ingest")?;
    let got = rows(&topic, 6)?;
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got.iter().any(|r| r.0 == "P4"));
    ingest.stop()?;
    s.cleanup().await;
    Ok(())
}
