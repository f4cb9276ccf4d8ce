//! Crash-safe checkpoint files: versioned JSON, written to a temporary file, fsynced, renamed
//! over the old one, and the directory fsynced, so that a crash at any moment leaves either
//! the old or the new checkpoint, never a torn one.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version of checkpoint files written by this build.
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} is corrupt ({source}); move it away to re-read the sources from the start (the warehouse absorbs the duplicates)")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("checkpoint {path} has format version {found}, this build reads version {CHECKPOINT_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u32,
    state: T,
}

/// One checkpoint file.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The saved state, or `T::default()` when there is no checkpoint yet.
    pub fn load<T: DeserializeOwned + Default>(&self) -> Result<T, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
            Err(e) => return Err(self.io(e)),
        };
        let header: Versioned<serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
        if header.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version {
                path: self.path.clone(),
                found: header.version,
            });
        }
        serde_json::from_value(header.state).map_err(|source| CheckpointError::Corrupt {
            path: self.path.clone(),
            source,
        })
    }

    /// Atomically replaces the checkpoint with `state`.
    pub fn save<T: Serialize>(&self, state: &T) -> Result<(), CheckpointError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&Versioned {
            version: CHECKPOINT_VERSION,
            state,
        })
        .expect("checkpoint state serializes to JSON");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        f.write_all(&bytes).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let cp = CheckpointFile::new(dir.path().join("sub/cp.json"));
        let empty: BTreeMap<String, u64> = cp.load().unwrap();
        assert!(empty.is_empty());
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), 42u64);
        cp.save(&m).unwrap();
        m.insert("b".to_string(), 7);
        cp.save(&m).unwrap();
        let back: BTreeMap<String, u64> = cp.load().unwrap();
        assert_eq!(back, m);
        assert!(!dir.path().join("sub/cp.json.tmp").exists());
    }

    #[test]
    fn corrupt_and_wrong_version_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cp.json");
        fs::write(&p, b"{\"version\":1,\"state\":").unwrap();
        let cp = CheckpointFile::new(&p);
        assert!(matches!(
            cp.load::<BTreeMap<String, u64>>(),
            Err(CheckpointError::Corrupt { .. })
        ));
        fs::write(&p, b"{\"version\":99,\"state\":{}}").unwrap();
        assert!(matches!(
            cp.load::<BTreeMap<String, u64>>(),
            Err(CheckpointError::Version { found: 99, .. })
        ));
    }
}
