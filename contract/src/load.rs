//! Loading the configuration every service shares: the TOML file, then the
//! `ETL_<SECTION>__<KEY>` environment overrides, strictly.
//!
//! * A top-level key that is not one of [`SECTIONS`] is refused (each service accepts the
//!   sections of the others without reading them).
//! * Only the environment variables whose first segment is a section are overrides
//!   ([`override_path`]); `ETL_TEST_PG_URL`, `ETL_BIN_DIR`... are ignored.
//! * The settings structs deny unknown keys; every unknown key is reported (the loader
//!   removes each one it is told about and deserializes again), then the first other
//!   mistake (a missing key, a wrong type), each as one line naming the full key path
//!   (`ingest.csv.entities[1].patern`) and where it came from: the file, as given on the
//!   command line, or the environment variable.

use crate::settings::{override_path, SECTIONS};
use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::{Path, PathBuf};

/// Exit status of a service whose configuration is wrong (the file cannot be read, is not
/// TOML, has an unknown, missing or mistyped key, or a value the service refuses), like a
/// usage error on the command line.
pub const CONFIG_ERROR_EXIT_CODE: i32 = 2;

/// Metadata names of the two providers (how a figment error tells where a value came from).
const FILE_PROVIDER: &str = "configuration file";
const ENV_PROVIDER: &str = "environment overrides";
/// Stop collecting after this many problems.
const MAX_PROBLEMS: usize = 100;

/// One mistake in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file, as given, or `environment variable ETL_...`.
    pub source: String,
    /// What is wrong, on one line.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read or parsed, or does not match the settings: every problem
    /// found.
    #[error("{}", join(.0))]
    Problems(Vec<ConfigProblem>),
    /// The settings were read but a value is refused (the service's own checks).
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn join(problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

impl ConfigError {
    /// The lines to print, each `error: <source>: <what is wrong>`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Problems(p) => p.iter().map(|p| format!("error: {p}")).collect(),
            other => vec![format!("error: {other}")],
        }
    }

    /// Prints [`ConfigError::lines`] to stderr and exits with [`CONFIG_ERROR_EXIT_CODE`].
    pub fn exit(&self) -> ! {
        for line in self.lines() {
            eprintln!("{line}");
        }
        std::process::exit(CONFIG_ERROR_EXIT_CODE)
    }
}

/// Reads `path` and the process's environment overrides into `T`.
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let vars = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    load_config_with(path, vars)
}

/// [`load_config`] with the given environment instead of the process's.
pub fn load_config_with<T, I>(path: &Path, vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Problems(vec![ConfigProblem {
            source: file.clone(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    load_config_str(&file, &text, vars)
}

/// [`load_config_with`] on the text of a file named `file` in messages.
pub fn load_config_str<T, I>(file: &str, text: &str, vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let file_dict = Toml::string(text)
        .data()
        .map_err(|e| {
            ConfigError::Problems(vec![ConfigProblem {
                source: file.to_string(),
                message: toml_message(&e.to_string()),
            }])
        })?
        .remove(&Profile::Default)
        .unwrap_or_default();
    let mut loader = Loader {
        file: file.to_string(),
        file_dict,
        env: Overrides::new(vars),
        problems: Vec::new(),
        removed: Vec::new(),
        substituted: Vec::new(),
    };
    loader.run()
}

/// The environment overrides, and which variable set each key path.
struct Overrides {
    dict: Dict,
    vars: Vec<(Vec<String>, String)>,
}

impl Overrides {
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut o = Overrides {
            dict: Dict::new(),
            vars: Vec::new(),
        };
        for (name, value) in vars {
            let Some(path) = override_path(&name) else {
                continue;
            };
            let value: Value = match value.parse() {
                Ok(v) => v,
                Err(never) => match never {},
            };
            insert(&mut o.dict, &path, value);
            o.vars.push((path, name.trim().to_string()));
        }
        o
    }

    /// The variable behind `path`: the one that set it or a parent of it, else one that set
    /// something under it.
    fn var_for(&self, path: &[String]) -> Option<&str> {
        let set_it = self
            .vars
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.len());
        set_it
            .or_else(|| self.vars.iter().find(|(p, _)| p.starts_with(path)))
            .map(|(_, name)| name.as_str())
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = dict;
    for key in parents {
        let entry = cur
            .entry(key.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        if entry.as_dict().is_none() {
            *entry = Value::from(Dict::new());
        }
        let Value::Dict(_, next) = entry else {
            unreachable!("just made a dictionary")
        };
        cur = next;
    }
    cur.insert(last.clone(), value);
}

/// The table at `path` (dictionary keys and array indices), if it is one.
fn dict_at<'a>(dict: &'a mut Dict, path: &[String]) -> Option<&'a mut Dict> {
    let Some((first, rest)) = path.split_first() else {
        return Some(dict);
    };
    let mut cur = dict.get_mut(first)?;
    for key in rest {
        cur = match cur {
            Value::Dict(_, d) => d.get_mut(key)?,
            Value::Array(_, a) => a.get_mut(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match cur {
        Value::Dict(_, d) => Some(d),
        _ => None,
    }
}

/// Removes the key at `path` if it is there.
fn remove(dict: &mut Dict, path: &[String]) {
    if let Some((last, parent)) = path.split_last() {
        if let Some(d) = dict_at(dict, parent) {
            d.remove(last);
        }
    }
}

/// Edit distance of two keys (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The value at `path` (dictionary keys and array indices).
fn lookup<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, key| match v {
        Value::Dict(_, d) => d.get(key),
        Value::Array(_, a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// `ingest.csv.entities[1].pattern`: array indices in brackets.
fn render_key(root: &Value, path: &[String]) -> String {
    let mut out = String::new();
    for (i, key) in path.iter().enumerate() {
        let in_array = matches!(lookup(root, &path[..i]), Some(Value::Array(..)));
        if in_array {
            out.push_str(&format!("[{key}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(key);
        }
    }
    out
}

fn expected(names: &[&str]) -> String {
    match names {
        [] => "no key is allowed here".into(),
        [one] => format!("expected: {one}"),
        many => format!("expected one of: {}", many.join(", ")),
    }
}

/// A TOML syntax error on one line: `invalid TOML at line 3, column 5: <what>` (the
/// parser's message spans several lines with a snippet of the file).
fn toml_message(msg: &str) -> String {
    let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let what: Vec<&str> = lines
        .filter(|l| {
            let snippet = l.starts_with('|')
                || l.split_once('|')
                    .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()));
            !snippet
        })
        .collect();
    match first.strip_prefix("TOML parse error at ") {
        Some(at) if !what.is_empty() => format!("invalid TOML at {at}: {}", what.join("; ")),
        _ => format!("invalid TOML: {}", one_line(msg)),
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A provider of data parsed once: the file's table or the overrides, less the keys
/// already reported as unknown.
struct Fixed {
    name: &'static str,
    dict: Dict,
}

impl Provider for Fixed {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

struct Loader {
    file: String,
    file_dict: Dict,
    env: Overrides,
    problems: Vec<ConfigProblem>,
    /// Key paths reported as unknown, left out of the next attempts.
    removed: Vec<Vec<String>>,
    /// Missing keys given the value of their likely misspelling (an unknown key of the same
    /// table) to read on: mistakes found under them are consequences of the guess.
    substituted: Vec<Vec<String>>,
}

impl Loader {
    fn run<T: DeserializeOwned>(&mut self) -> Result<T, ConfigError> {
        // The overrides have no unknown section: their variables are filtered by section.
        let unknown: Vec<String> = self
            .file_dict
            .keys()
            .filter(|k| !SECTIONS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.push(ConfigProblem {
                source: self.file.clone(),
                message: format!("unknown key `{key}` ({})", expected(SECTIONS)),
            });
            self.removed.push(vec![key]);
        }
        loop {
            let figment = self.figment();
            let errors = match figment.extract::<T>() {
                Ok(settings) if self.problems.is_empty() => return Ok(settings),
                Ok(_) => break,
                Err(e) => e,
            };
            let root = figment
                .find_value("")
                .unwrap_or_else(|_| Value::from(Dict::new()));
            let mut progress = false;
            for e in errors {
                let path = full_path(&e, &root);
                if self.substituted.iter().any(|s| path.starts_with(s)) {
                    continue;
                }
                let misspelt = match e.kind {
                    Kind::MissingField(..) => self.misspelling_of(&path),
                    _ => None,
                };
                if let Some(misspelt) = misspelt {
                    // Already reported as unknown, with the expected keys.
                    progress |= misspelt.is_some_and(|from| self.substitute(&from, &path));
                    continue;
                }
                let problem = self.problem(&e, &path, &root);
                self.push(problem);
                if matches!(e.kind, Kind::UnknownField(..)) && !self.removed.contains(&path) {
                    self.removed.push(path);
                    progress = true;
                }
            }
            if !progress || self.problems.len() >= MAX_PROBLEMS {
                break;
            }
        }
        Err(ConfigError::Problems(std::mem::take(&mut self.problems)))
    }

    /// For a missing key with unknown keys reported in its table (most likely its
    /// misspelling): `Some(the closest of them)`, `Some(None)` when none is close enough;
    /// `None` when there is none.
    fn misspelling_of(&self, path: &[String]) -> Option<Option<Vec<String>>> {
        let (name, parent) = path.split_last()?;
        let mut siblings: Vec<(usize, &Vec<String>)> = self
            .removed
            .iter()
            .filter(|r| r.len() == path.len() && r.starts_with(parent))
            .map(|r| (distance(name, &r[r.len() - 1]), r))
            .collect();
        if siblings.is_empty() {
            return None;
        }
        siblings.sort();
        let close = siblings[0].0 <= name.chars().count().div_ceil(2)
            && siblings.get(1).is_none_or(|s| s.0 > siblings[0].0);
        Some(close.then(|| siblings[0].1.clone()))
    }

    /// Gives the missing key at `to` the value of the unknown key at `from`.
    fn substitute(&mut self, from: &[String], to: &[String]) -> bool {
        let (Some((from_key, parent)), Some(to_key)) = (from.split_last(), to.last()) else {
            return false;
        };
        if self.substituted.iter().any(|s| s == to) {
            return false;
        }
        for dict in [&mut self.file_dict, &mut self.env.dict] {
            let Some(table) = dict_at(dict, parent) else {
                continue;
            };
            if let Some(value) = table.get(from_key).cloned() {
                table.insert(to_key.clone(), value);
                self.substituted.push(to.to_vec());
                return true;
            }
        }
        false
    }

    fn push(&mut self, p: ConfigProblem) {
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn figment(&self) -> Figment {
        let mut file = self.file_dict.clone();
        let mut env = self.env.dict.clone();
        for path in &self.removed {
            remove(&mut file, path);
            remove(&mut env, path);
        }
        Figment::new()
            .merge(Fixed {
                name: FILE_PROVIDER,
                dict: file,
            })
            .merge(Fixed {
                name: ENV_PROVIDER,
                dict: env,
            })
    }

    fn problem(&self, e: &figment::Error, path: &[String], root: &Value) -> ConfigProblem {
        let from_env = e.metadata.as_ref().is_some_and(|m| m.name == ENV_PROVIDER);
        let source = match from_env.then(|| self.env.var_for(path)).flatten() {
            Some(var) => format!("environment variable {var}"),
            None if from_env => "the ETL_* environment variables".into(),
            None => self.file.clone(),
        };
        let key = render_key(root, path);
        let message = match &e.kind {
            Kind::UnknownField(_, names) => format!("unknown key `{key}` ({})", expected(names)),
            Kind::MissingField(_) => format!("missing key `{key}`"),
            Kind::UnknownVariant(value, names) => {
                format!("key `{key}`: unknown value `{value}` ({})", expected(names))
            }
            kind if path.is_empty() => one_line(&kind.to_string()),
            kind => format!("key `{key}`: {}", one_line(&kind.to_string())),
        };
        ConfigProblem { source, message }
    }
}

/// The full key path of an error: figment's path, plus the field for a missing field and
/// for an unknown field found inside a buffered value (an internally tagged enum), where
/// the path stops at the value's own key.
fn full_path(e: &figment::Error, root: &Value) -> Vec<String> {
    let mut path = e.path.clone();
    let field = match &e.kind {
        Kind::MissingField(f) => Some(f.to_string()),
        Kind::UnknownField(f, _) => {
            let points_at_parent = lookup(root, &path)
                .and_then(Value::as_dict)
                .is_some_and(|d| d.contains_key(f));
            points_at_parent.then(|| f.clone())
        }
        _ => None,
    };
    path.extend(field);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KafkaSettings;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Top {
        kafka: KafkaSettings,
        #[serde(default)]
        ingest: Option<Section>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        #[serde(default)]
        size: u32,
        #[serde(default)]
        kind: Option<Paging>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum Paging {
        Page { param: String },
    }

    /// Sections of other services (warehouse) are accepted unread.
    const GOOD: &str =
        "mode = \"development\"\n[kafka]\nbrokers = \"b:9092\"\ntopic_prefix = \"etl\"\n\
                        [warehouse]\nurl = \"x\"\n[[ingest.items]]\nname = \"a\"\n";

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Top, Vec<String>> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_config_str::<Top, _>("etl.toml", text, vars).map_err(|e| e.lines())
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_path() {
        let text = format!(
            "{GOOD}bogus = 1\n[[ingest.items]]\nname = \"b\"\nsise = 2\n\
             kind = {{ type = \"page\", param = \"p\", parm = \"p\" }}\n[dashbord]\naddr = 1\n"
        )
        .replace("topic_prefix", "broker = \"typo\"\ntopic_prefix");
        assert_eq!(
            load(&text, &[]).unwrap_err(),
            vec![
                "error: etl.toml: unknown key `dashbord` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
                "error: etl.toml: unknown key `ingest.items[0].bogus` (expected one of: name, size, kind)",
                "error: etl.toml: unknown key `ingest.items[1].kind.parm` (expected: param)",
                "error: etl.toml: unknown key `ingest.items[1].sise` (expected one of: name, size, kind)",
                "error: etl.toml: unknown key `kafka.broker` (expected one of: brokers, topic_prefix, partitions, client)",
            ]
        );
    }

    #[test]
    fn environment_overrides() {
        // Unrelated ETL_ variables are ignored; overrides of a known section are read.
        let ok = load(
            GOOD,
            &[
                ("ETL_TEST_X", "1"),
                ("ETL_BIN_DIR", "/x"),
                ("ETL_CONFIG", "other.toml"),
                ("ETL_KAFKA__BROKERS", "k:1"),
                ("ETL_KAFKA__PARTITIONS", "7"),
                ("ETL_DASHBOARD__ADDR", "127.0.0.1:1"),
            ],
        )
        .unwrap();
        assert_eq!(ok.kafka.brokers, "k:1");
        assert_eq!(ok.kafka.partitions, 7);
        let items = ok.ingest.unwrap().items;
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].name.as_str(), items[0].size), ("a", 0));
        assert!(items[0].kind.is_none());
        // A misspelt override names the variable.
        assert_eq!(
            load(GOOD, &[("ETL_KAFKA__TOPIC_PREFX", "p")]).unwrap_err(),
            vec!["error: environment variable ETL_KAFKA__TOPIC_PREFX: unknown key `kafka.topic_prefx` (expected one of: brokers, topic_prefix, partitions, client)"]
        );
        assert_eq!(
            load(GOOD, &[("ETL_KAFKA__PARTITIONS", "many")]).unwrap_err(),
            vec!["error: environment variable ETL_KAFKA__PARTITIONS: key `kafka.partitions`: invalid type: found string \"many\", expected i32"]
        );
    }

    #[test]
    fn missing_keys_and_syntax_errors() {
        assert_eq!(
            load("[kafka]\nbrokers = \"b\"\n", &[]).unwrap_err(),
            vec!["error: etl.toml: missing key `kafka.topic_prefix`"]
        );
        assert_eq!(
            load("", &[]).unwrap_err(),
            vec!["error: etl.toml: missing key `kafka`"]
        );
        // A misspelt required key is reported once, as unknown, not as missing too.
        assert_eq!(
            load(&GOOD.replace("topic_prefix", "topic_prefx"), &[]).unwrap_err(),
            vec!["error: etl.toml: unknown key `kafka.topic_prefx` (expected one of: brokers, topic_prefix, partitions, client)"]
        );
        assert_eq!(
            load(&GOOD.replace("[kafka]", "[kafk]"), &[]).unwrap_err(),
            vec!["error: etl.toml: unknown key `kafk` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)"]
        );
        // Read on under the closest name: the mistakes after it are found too.
        let text = GOOD
            .replace("[kafka]", "[kafk]")
            .replace("[warehouse]", "[warehose]")
            .replace(
                "name = \"a\"",
                "name = \"a\"\nkind = { type = \"page\", prm = \"p\" }",
            );
        assert_eq!(
            load(&text, &[]).unwrap_err(),
            vec![
                "error: etl.toml: unknown key `kafk` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
                "error: etl.toml: unknown key `warehose` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)",
                "error: etl.toml: unknown key `ingest.items[0].kind.prm` (expected: param)",
            ]
        );
        let fixed = load(
            &text.replace("prm", "param").replace("[kafk]", "[kafka]"),
            &[],
        );
        assert_eq!(fixed.unwrap_err(), vec!["error: etl.toml: unknown key `warehose` (expected one of: mode, kafka, warehouse, ingest, transform, dashboard)"]);
        let good = load(
            &GOOD.replace(
                "name = \"a\"",
                "name = \"a\"\nkind = { type = \"page\", param = \"p\" }",
            ),
            &[],
        )
        .unwrap();
        let items = good.ingest.unwrap().items;
        let Some(Paging::Page { param }) = &items[0].kind else {
            panic!("no paging");
        };
        assert_eq!(param, "p");
        let err = load("[kafka\nbrokers = 1\n", &[]).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].starts_with("error: etl.toml: invalid TOML at line 1, column 7: "),
            "{err:?}"
        );
        let missing = load_config::<Top>(Path::new("/nonexistent/etl.toml"))
            .unwrap_err()
            .lines();
        assert_eq!(
            missing,
            vec!["error: /nonexistent/etl.toml: cannot read the configuration file: No such file or directory (os error 2)"]
        );
    }
}
