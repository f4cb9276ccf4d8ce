//! CSV files in another encoding than UTF-8: a customers file exported by French Excel
//! (Windows-1252, `;`-free but with accented names) lands complete in silver with its names
//! decoded, through ingest, the broker and transform; the same bytes without the `encoding`
//! setting are dead-lettered with a reason that names the setting, never silently mangled.
//! A header that names a column twice dead-letters the file's rows, naming the column.

use anyhow::Result;
use e2e_tests::{count, wait_for, Scratch};
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
