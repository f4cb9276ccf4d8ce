//! CSV files in another encoding than UTF-8: a customers file exported by French Excel
//! (Windows-1252, `;`-free but with accented names) lands complete in silver with its names
//! decoded, through ingest, the broker and transform; the same bytes without the `encoding`
//! setting are dead-lettered with a reason that names the setting, never silently mangled.
//! A header that names a column twice dead-letters the file's rows, naming the column.
//! A UTF-16LE file with its byte-order mark (Excel's "Unicode text") lands complete, and a
//! `kill -9` of ingest in the middle of it loses and duplicates nothing: the offsets of the
//! original file are the checkpoint and the source keys. A record left open by an
//! unbalanced quote at the end of an idle file is dead-lettered with its position after
//! `runaway_idle_ms`, the rows before it delivered, and reading resumes after it.

use anyhow::Result;
use e2e_tests::{count, wait_for, Scratch};
use std::collections::BTreeMap;
use std::time::Duration;

/// The repository's configuration with `encoding` set on the customers entity.
fn config_with_encoding(
    dir: &std::path::Path,
    encoding: Option<&str>,
) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(e2e_tests::repo_root().join("config/etl.toml"))?;
    let marker = "name = \"customers\"\n";
    anyhow::ensure!(
        text.contains(marker),
        "config/etl.toml has no customers entity"
    );
    let text = match encoding {
        Some(e) => text.replacen(marker, &format!("{marker}encoding = \"{e}\"\n"), 1),
        None => text,
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("enc-{}.toml", encoding.unwrap_or("utf-8")));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// "Zoë Dupré", "François Müller", "Chloé Lefèvre" in Windows-1252, with a city each.
fn windows_1252_customers() -> Vec<u8> {
    let (names, _, _) = encoding_rs::WINDOWS_1252.encode(
        "customer_id,full_name,email,country,city\n\
         C1,Zoë Dupré,zoe@example.com,France,Orléans\n\
         C2,François Müller,f@example.com,Germany,München\n\
         C3,Chloé Lefèvre,c@example.com,France,Besançon\n",
    );
    names.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_1252_file_lands_complete_with_its_accents() -> Result<()> {
    let tmp = std::env::temp_dir().join(format!("etl-enc-{}", std::process::id()));
    let cfg = config_with_encoding(&tmp, Some("windows-1252"))?;
    let s = Scratch::new("enc", Some(cfg)).await?;
    let bytes = windows_1252_customers();
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture is not UTF-8"
    );
    s.drop_file("customers_fr.csv", &bytes)?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    wait_for(Duration::from_secs(60), "3 customers in silver", || async {
        Ok((count(&db, "SELECT count(*) FROM silver.customers").await? == 3).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    let rows = db
        .query(
            "SELECT customer_id || ' ' || full_name || ' ' || city FROM silver.customers ORDER BY 1",
            &[],
        )
        .await?;
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        got,
        [
            "C1 Zoë Dupré Orléans",
            "C2 François Müller München",
            "C3 Chloé Lefèvre Besançon"
        ]
    );
    let dead = count(&db, "SELECT count(*) FROM bronze.dead_letters").await?;
    assert_eq!(dead, 0, "nothing dead-lettered");
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    let _ = std::fs::remove_dir_all(tmp);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_the_rows_are_dead_lettered_with_a_hint() -> Result<()> {
    let s = Scratch::new("encdl", None).await?;
    s.drop_file("customers_fr.csv", &windows_1252_customers())?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    wait_for(Duration::from_secs(60), "3 dead letters", || async {
        Ok((count(&db, "SELECT count(*) FROM bronze.dead_letters").await? == 3).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    let hinted = count(
        &db,
        "SELECT count(*) FROM bronze.dead_letters WHERE reason LIKE '%not valid UTF-8%' AND reason LIKE '%set `encoding` on the entity%'",
    )
    .await?;
    assert_eq!(hinted, 3, "each reason names the setting");
    assert_eq!(
        count(&db, "SELECT count(*) FROM silver.customers").await?,
        0
    );
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_naming_a_column_twice_dead_letters_the_files_rows() -> Result<()> {
    let s = Scratch::new("duphdr", None).await?;
    s.drop_file(
        "customers_dup.csv",
        b"customer_id,full_name,full_name\nC1,Ann,Bob\nC2,Cid,Dee\n",
    )?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    wait_for(Duration::from_secs(60), "2 dead letters", || async {
        Ok((count(&db, "SELECT count(*) FROM bronze.dead_letters").await? == 2).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    let named = count(
        &db,
        "SELECT count(*) FROM bronze.dead_letters WHERE reason LIKE '%names column \"full_name\" twice (columns 2 and 3)%'",
    )
    .await?;
    assert_eq!(named, 2, "each row's dead letter names the column");
    assert_eq!(
        count(&db, "SELECT count(*) FROM silver.customers").await?,
        0
    );
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}

/// Customers written: by id, the name, the city and the row's byte offset in the file.
type Written = BTreeMap<String, (String, String, u64)>;

/// `n` customers as UTF-16LE with a BOM and CRLF line ends; accented names, and a name with
/// a character outside the BMP (a surrogate pair) every 7th row. Returns the bytes and, by
/// customer id, the name, the city and the byte offset of the row in the file.
fn utf16_customers(n: usize) -> (Vec<u8>, Written) {
    let mut bytes = vec![0xFF, 0xFE];
    let mut expected = BTreeMap::new();
    let put = |line: &str, bytes: &mut Vec<u8>| {
        bytes.extend(line.encode_utf16().flat_map(|u| u.to_le_bytes()));
    };
    put("customer_id,full_name,email,country,city\r\n", &mut bytes);
    let cities = ["Orléans", "München", "Besançon", "Zürich", "Kraków"];
    for i in 0..n {
        let id = format!("C{i:06}");
        let name = if i % 7 == 0 {
            format!("Zoë 😀 Dupré {i}")
        } else {
            format!("François Müller-Lefèvre {i}")
        };
        let city = cities[i % cities.len()].to_string();
        let offset = bytes.len() as u64;
        put(
            &format!("{id},{name},c{i}@example.com,France,{city}\r\n"),
            &mut bytes,
        );
        expected.insert(id, (name, city, offset));
    }
    (bytes, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf16_file_lands_complete_across_a_kill_9_of_ingest() -> Result<()> {
    const N: usize = 30_000;
    let mut s = Scratch::new("utf16", None).await?;
    // Small chunks: many checkpoints, so that the kill lands in the middle of the file.
    s.extra_env.extend([
        ("ETL_INGEST__CSV__MAX_RECORD_BYTES".into(), "2048".into()),
        ("ETL_INGEST__CSV__CHUNK_BYTES".into(), "4096".into()),
    ]);
    let (bytes, expected) = utf16_customers(N);
    s.drop_file("customers_unicode.csv", &bytes)?;
    let mut ingest = s.start("ingest")?;
    let cp = s.dir.join("checkpoints/csv.json");
    let len = bytes.len() as u64;
    let at = wait_for(
        Duration::from_secs(60),
        "a checkpoint inside the file",
        || {
            let cp = cp.clone();
            async move {
                let offset = std::fs::read_to_string(&cp)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .and_then(|v| {
                        // The checkpoint file wraps the state: {"version", "state"}.
                        v["state"]["files"]
                            .as_object()?
                            .values()
                            .next()?
                            .get("offset")?
                            .as_u64()
                    });
                Ok(offset.filter(|&o| o > 0))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    ingest.kill9();
    assert!(at < len, "killed mid-file (checkpoint {at} of {len} bytes)");
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    let topic = s.topic("customers");
    wait_for(
        Duration::from_secs(180),
        "every customer in silver",
        || async {
            Ok(
                (count(&db, "SELECT count(*) FROM silver.customers").await? == N as i64)
                    .then_some(()),
            )
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    // Nothing duplicated: one bronze event per row, one source key each, one file id.
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT source_key), count(DISTINCT source->>'file_id') FROM bronze.events WHERE topic = $1",
            &[&topic],
        )
        .await?;
    let (events, keys, files): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((events, keys, files), (N as i64, N as i64, 1));
    // Each event's offset is the row's byte offset in the UTF-16 file.
    let rows = db
        .query(
            "SELECT payload->'after'->>'customer_id', (source->>'offset')::bigint FROM bronze.events WHERE topic = $1",
            &[&topic],
        )
        .await?;
    let offsets: BTreeMap<String, u64> = rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect();
    let want: BTreeMap<String, u64> = expected
        .iter()
        .map(|(id, (_, _, o))| (id.clone(), *o))
        .collect();
    assert!(offsets == want, "the offsets are the UTF-16 file's");
    // The values are the ones written, accents and surrogate pairs included.
    let rows = db
        .query(
            "SELECT customer_id, full_name, city FROM silver.customers",
            &[],
        )
        .await?;
    let got: BTreeMap<String, (String, String)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let want: BTreeMap<String, (String, String)> = expected
        .into_iter()
        .map(|(id, (n, c, _))| (id, (n, c)))
        .collect();
    assert_eq!(got.len(), N);
    assert!(got == want, "silver holds the names and cities written");
    assert_eq!(
        got["C000007"].0, "Zoë 😀 Dupré 7",
        "a name with a surrogate pair"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM bronze.dead_letters").await?,
        0
    );
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_quote_in_an_idle_file_is_dead_lettered_with_its_position() -> Result<()> {
    let mut s = Scratch::new("runaway", None).await?;
    s.extra_env
        .push(("ETL_INGEST__CSV__RUNAWAY_IDLE_MS".into(), "4000".into()));
    let head = "customer_id,full_name,email,country,city\n\
                C1,Ann,a@example.com,France,Paris\n\
                C2,Bob,b@example.com,France,Lyon\n";
    let open =
        "C3,\"Cid never closed,c@example.com,France,Nice\nC4,Dee,d@example.com,France,Metz\n";
    let path = s.drop_file("customers_runaway.csv", format!("{head}{open}").as_bytes())?;
    let mut ingest = s.start("ingest")?;
    let mut transform = s.start("transform")?;
    let db = s.db().await?;
    wait_for(
        Duration::from_secs(60),
        "the 2 rows before it in silver",
        || async {
            Ok((count(&db, "SELECT count(*) FROM silver.customers").await? == 2).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    assert_eq!(
        count(&db, "SELECT count(*) FROM bronze.dead_letters").await?,
        0,
        "not before runaway_idle_ms"
    );
    wait_for(
        Duration::from_secs(60),
        "the runaway record dead-lettered",
        || async {
            Ok((count(&db, "SELECT count(*) FROM bronze.dead_letters").await? == 1).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    let dl = db
        .query_one(
            "SELECT origin, reason, raw, source_key FROM bronze.dead_letters",
            &[],
        )
        .await?;
    let origin: serde_json::Value = dl.get(0);
    let reason: String = dl.get(1);
    let raw: Vec<u8> = dl.get(2);
    let source_key: String = dl.get(3);
    assert_eq!(origin["file"], path.display().to_string());
    assert_eq!(origin["line"], 4);
    assert_eq!(origin["offset"], head.len() as u64);
    assert_eq!(
        source_key,
        format!("csv:{}:{}", origin["file_id"].as_str().unwrap(), head.len())
    );
    assert_eq!(raw, open.as_bytes(), "the record to the end of the file");
    assert!(
        reason.starts_with("record still open at the end of the file (an unbalanced quote?) after the file stayed unchanged for 4000 ms"),
        "{reason}"
    );
    assert!(
        !reason.contains("Cid"),
        "no content in the reason: {reason}"
    );
    // Reading resumes at the next byte written; a restart does not decide it again.
    ingest.stop()?;
    let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
    std::io::Write::write_all(&mut f, b"C5,Eve,e@example.com,France,Brest\n")?;
    drop(f);
    let mut ingest = s.start("ingest")?;
    wait_for(
        Duration::from_secs(60),
        "the row appended after it in silver",
        || async {
            Ok((count(&db, "SELECT count(*) FROM silver.customers").await? == 3).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\ningest log:\n{}", s.log("ingest")))?;
    let ids = db
        .query("SELECT customer_id FROM silver.customers ORDER BY 1", &[])
        .await?;
    let ids: Vec<String> = ids.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, ["C1", "C2", "C5"]);
    let topic = s.topic("customers");
    let line5 = db
        .query_one(
            "SELECT (source->>'line')::bigint, (source->>'offset')::bigint FROM bronze.events WHERE topic = $1 AND payload->'after'->>'customer_id' = 'C5'",
            &[&topic],
        )
        .await?;
    assert_eq!(
        (line5.get::<_, i64>(0), line5.get::<_, i64>(1)),
        (6, (head.len() + open.len()) as i64)
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM bronze.dead_letters").await?,
        1
    );
    ingest.stop()?;
    transform.stop()?;
    s.cleanup().await;
    Ok(())
}
