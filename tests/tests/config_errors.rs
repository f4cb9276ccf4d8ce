//! A configuration mistake stops `ingest` and `transform` before they connect to anything:
//! exit status 2 and one `error: <file or variable>: <what>` line per problem on stderr,
//! whatever RUST_BACKTRACE and the mode. Runs the release binaries; needs no service.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const CSV_KEYS: &str =
    "watch_dir, delimiter, poll_interval_ms, max_record_bytes, runaway_idle_ms, chunk_bytes, entities";
const TRANSFORM_KEYS: &str =
    "metrics_addr, group_id, batch_max_records, batch_max_ms, gold_catch_up_secs, silver, analytics";

/// What a run of a binary gave.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `<bin> --config <config> <command>` with `env` and none of the caller's overrides
/// (ETL_<SECTION>__...), so that only the test decides what the services read.
fn run(bin: &str, config: &Path, command: &str, env: &[(&str, &str)]) -> Result<Outcome> {
    let path = e2e_tests::bin_dir().join(bin);
    let mut cmd = Command::new(&path);
    cmd.arg("--config").arg(config).arg(command);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if etl_contract::override_path(&name).is_some() {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .env_remove("ETL_CONFIG")
        .envs(env.iter().copied())
        .output()
        .with_context(|| {
            format!(
                "running {} (build with ./dev cargo build --release --workspace)",
                path.display()
            )
        })?;
    Ok(Outcome {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A copy of config/etl.toml with `from` replaced by `to` (once; it must be there).
fn config_with(dir: &Path, name: &str, edits: &[(&str, &str)]) -> Result<PathBuf> {
    let mut text = std::fs::read_to_string(e2e_tests::repo_root().join("config/etl.toml"))?;
    for (from, to) in edits {
        anyhow::ensure!(text.contains(from), "{from:?} is not in config/etl.toml");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A folder of the test's own (the tests run in parallel and each removes its folder).
fn scratch_dir(test: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("etl-config-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn failed(stderr: String) -> Outcome {
    Outcome {
        status: Some(2),
        stdout: String::new(),
        stderr,
    }
}

#[test]
fn a_misspelt_key_stops_both_services_with_one_line() -> Result<()> {
    let dir = scratch_dir("typo")?;
    let ingest_typo = config_with(&dir, "ingest.toml", &[("watch_dir =", "watch_dri =")])?;
    let transform_typo = config_with(&dir, "transform.toml", &[("batch_max_ms", "batch_max_mss")])?;
    let ingest_line = format!(
        "error: {}: unknown key `ingest.csv.watch_dri` (expected one of: {CSV_KEYS})\n",
        ingest_typo.display()
    );
    let transform_line = format!(
        "error: {}: unknown key `transform.batch_max_mss` (expected one of: {TRANSFORM_KEYS})\n",
        transform_typo.display()
    );
    // Neither a backtrace nor production mode changes the message.
    let loud: &[(&str, &str)] = &[("RUST_BACKTRACE", "full"), ("ETL_MODE", "production")];
    for env in [&[][..], loud] {
        for command in ["check", "run"] {
            assert_eq!(
                run("ingest", &ingest_typo, command, env)?,
                failed(ingest_line.clone()),
                "ingest {command} {env:?}"
            );
            assert_eq!(
                run("transform", &transform_typo, command, env)?,
                failed(transform_line.clone()),
                "transform {command} {env:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn check_reports_every_unknown_key_at_once() -> Result<()> {
    let dir = scratch_dir("several")?;
    let cfg = config_with(
        &dir,
        "several.toml",
        &[
            ("[warehouse]", "[warehous]"),
            ("delimiter = \",\"", "delimitter = \",\""),
            ("pattern = \"products*.csv\"", "patern = \"products*.csv\""),
            ("batch_max_ms", "batch_max_mss"),
            ("records = \"items\"", "record = \"items\""),
        ],
    )?;
    let f = cfg.display();
    let endpoint_keys = "name, url, query, headers, auth, pagination, records, map_key_field, map_value_field, parent_fields, key, incremental, poll_interval_ms, rate_limit_per_s, timeout_ms, deletes, conditional, max_pages";
    assert_eq!(
        run("ingest", &cfg, "check", &[])?,
        failed(format!(
            "error: {f}: unknown key `warehous` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)\n\
             error: {f}: unknown key `ingest.csv.delimitter` (expected one of: {CSV_KEYS})\n\
             error: {f}: unknown key `ingest.csv.entities[1].patern` (expected one of: name, pattern, key, delimiter, encoding)\n\
             error: {f}: unknown key `ingest.http.endpoints[1].record` (expected one of: {endpoint_keys})\n"
        ))
    );
    // transform reads none of ingest's keys; the unknown section is refused by both, and
    // transform, which needs [warehouse], reads on with the misspelt one.
    assert_eq!(
        run("transform", &cfg, "check", &[])?,
        failed(format!(
            "error: {f}: unknown key `warehous` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)\n\
             error: {f}: unknown key `transform.batch_max_mss` (expected one of: {TRANSFORM_KEYS})\n"
        ))
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn environment_overrides_are_checked_and_unrelated_variables_ignored() -> Result<()> {
    let dir = scratch_dir("env")?;
    let cfg = config_with(&dir, "env.toml", &[])?;
    assert_eq!(
        run("ingest", &cfg, "check", &[("ETL_INGEST__CSV__WATCH_DRI", "/tmp/in")])?,
        failed(format!(
            "error: environment variable ETL_INGEST__CSV__WATCH_DRI: unknown key `ingest.csv.watch_dri` (expected one of: {CSV_KEYS})\n"
        ))
    );
    assert_eq!(
        run("transform", &cfg, "check", &[("ETL_TRANSFORM__BATCH_MAX_MS", "soon")])?,
        failed("error: environment variable ETL_TRANSFORM__BATCH_MAX_MS: key `transform.batch_max_ms`: invalid type: found string \"soon\", expected u64\n".into())
    );
    // Variables of no section (the test environment's) are not overrides.
    let unrelated: &[(&str, &str)] = &[
        ("ETL_TEST_X", "1"),
        ("ETL_BIN_DIR", "/nowhere"),
        ("ETL_TEST_PG_URL", "postgres://x@127.0.0.1:1/x"),
        ("ETL_KAFKA__TOPIC_PREFIX", "cfg"),
        ("ETL_INGEST__BLOB__ENABLED", "false"),
    ];
    let ingest = run("ingest", &cfg, "check", unrelated)?;
    assert_eq!(
        ingest,
        Outcome {
            status: Some(0),
            stdout: "csv\tcfg.csv.customers\ncsv\tcfg.csv.products\ncsv\tcfg.csv.countries\ncsv\tcfg.csv.employees\ncsv\tcfg.csv.sales\ncsv\tcfg.dlq\nhttp\tcfg.api.rates\nhttp\tcfg.api.products\nhttp\tcfg.dlq\n".into(),
            stderr: String::new(),
        }
    );
    let transform = run("transform", &cfg, "check", unrelated)?;
    assert_eq!(
        transform,
        Outcome {
            status: Some(0),
            stdout: "catalogue\tcfg.api.products\ncountries\tcfg.csv.countries\ncustomers\tcfg.csv.customers\nemployees\tcfg.csv.employees\nexchange_rates\tcfg.api.rates\nproducts\tcfg.csv.products\nsales\tcfg.csv.sales\nweb_events\tcfg.blob.web_events\n".into(),
            stderr: String::new(),
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn refused_values_and_unreadable_files_exit_2_too() -> Result<()> {
    let dir = scratch_dir("values")?;
    let cfg = config_with(&dir, "values.toml", &[])?;
    let f = cfg.display();
    assert_eq!(
        run("transform", &cfg, "run", &[("ETL_MODE", "production")])?,
        failed(format!("error: {f}: production mode: warehouse.url has no password or a default one; set ETL_WAREHOUSE__URL with a real secret\n"))
    );
    assert_eq!(
        run("ingest", &cfg, "check", &[("ETL_INGEST__CSV__POLL_INTERVAL_MS", "-5")])?,
        failed("error: environment variable ETL_INGEST__CSV__POLL_INTERVAL_MS: key `ingest.csv.poll_interval_ms`: invalid value signed int `-5`, expected u64\n".into())
    );
    let missing = dir.join("missing.toml");
    assert_eq!(
        run("ingest", &missing, "check", &[])?,
        failed(format!(
            "error: {}: cannot read the configuration file: No such file or directory (os error 2)\n",
            missing.display()
        ))
    );
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[kafka\nbrokers = 1\n")?;
    let out = run("transform", &broken, "check", &[])?;
    assert_eq!(out.status, Some(2), "{out:?}");
    assert!(
        out.stderr.starts_with(&format!(
            "error: {}: invalid TOML at line 1, column 7: ",
            broken.display()
        )) && out.stderr.lines().count() == 1,
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
