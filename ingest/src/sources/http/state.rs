//! Per-endpoint state: what the warehouse was sent for each record key (a content hash and
//! a change counter), the incremental cursor, and the validators of each page.
//!
//! Two files in `<checkpoint_dir>/http/`:
//! * `<endpoint>.json`: a snapshot (versioned JSON via [`CheckpointFile`]: temp file, fsync,
//!   rename), rewritten at the end of each poll;
//! * `<endpoint>.journal`: the key changes since that snapshot, one JSON line each. Before a
//!   page's events are published, the new states of keys the warehouse already has (and of
//!   new keys, when the endpoint emits deletes) are appended and fsynced (write-ahead); once
//!   the broker acknowledged the page, an `{"ack":true}` line follows, with the new keys'
//!   states (see [`Store::stage`] for why those need no write-ahead).
//!
//! At load, the journal is replayed over the snapshot (and both are compacted into a new
//! snapshot, so that nothing appended later joins a group the crash left open). Entries of a group without its ack
//! line (a crash between write-ahead and acknowledgement) are loaded as *uncertain*: the
//! broker may or may not have them. The next poll re-emits an uncertain key with the
//! same counter when its content is the one written ahead (so the source key is the same,
//! and bronze drops the copy if the first one made it), and with a new counter otherwise.

use crate::checkpoint::{CheckpointError, CheckpointFile};
use crate::sources::http::fetch::Validators;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// What the warehouse was last sent for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// Content hash of the record last emitted; `None` once a `d` was emitted (a tombstone
    /// that keeps the counter, so that a key that comes back gets new source keys).
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Changes emitted for this key so far (part of the source key).
    pub n: u64,
    /// Written ahead but never acknowledged (see the module documentation).
    #[serde(rename = "u", default, skip_serializing_if = "std::ops::Not::not")]
    pub uncertain: bool,
}

/// What a page said about a URL, kept to answer a `304 Not Modified` without the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMemo {
    #[serde(flatten)]
    pub validators: Validators,
    /// Keys of the page's records (for deletes).
    pub keys: Vec<String>,
    /// The next page's URL, as computed from this page.
    pub next: Option<String>,
    /// Highest incremental cursor value on the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_max: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Polls completed.
    pub polls: u64,
    /// Highest incremental cursor value acknowledged.
    pub cursor: Option<String>,
    /// Page memos by URL (only with conditional requests).
    #[serde(default)]
    pub pages: BTreeMap<String, PageMemo>,
    pub keys: BTreeMap<String, KeyState>,
    /// Keys missing from the last complete full poll, not yet deleted: a key is deleted
    /// when two complete polls in a row miss it (a record that shifted to an already-read
    /// page while the server changed its data mid-poll is missed by one poll only).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub missing: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<KeyState>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ack: bool,
}

const ACK_LINE: &[u8] = b"{\"ack\":true}\n";

/// Appends one journal line: a key and its (certain) state.
fn line(buf: &mut Vec<u8>, k: &str, s: &KeyState) {
    serde_json::to_writer(
        &mut *buf,
        &Line {
            k: Some(k.to_string()),
            s: Some(KeyState {
                uncertain: false,
                ..s.clone()
            }),
            ack: false,
        },
    )
    .expect("journal line serializes");
    buf.push(b'\n');
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Store {
    snapshot_file: CheckpointFile,
    journal_path: PathBuf,
    journal: File,
    journal_bytes: u64,
    pub snap: Snapshot,
    /// Keys of the group written ahead and not yet acknowledged.
    pending: Vec<String>,
    /// New keys staged without a write-ahead, journalled once acknowledged.
    pending_fresh: Vec<String>,
    /// Lines the snapshot would absorb: beyond this, [`Store::compact`] is due.
    pub compact_after_bytes: u64,
}

impl Store {
    pub fn open(dir: &Path, endpoint: &str) -> Result<Store, StateError> {
        let snapshot_file = CheckpointFile::new(dir.join(format!("{endpoint}.json")));
        let mut snap: Snapshot = snapshot_file.load()?;
        let journal_path = dir.join(format!("{endpoint}.journal"));
        let io = |source| StateError::Io {
            path: journal_path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut group: Vec<(String, KeyState)> = Vec::new();
        let mut replayed = 0usize;
        if let Ok(f) = File::open(&journal_path) {
            for line in BufReader::new(f).split(b'\n') {
                let line = line.map_err(io)?;
                // A torn last line (crash mid-write, before its fsync) was never followed by
                // a publish: ignoring it is safe.
                let Ok(l) = serde_json::from_slice::<Line>(&line) else {
                    continue;
                };
                replayed += 1;
                if l.ack {
                    for (k, s) in group.drain(..) {
                        snap.keys.insert(k, s);
                    }
                } else if let (Some(k), Some(s)) = (l.k, l.s) {
                    group.push((k, s));
                }
            }
        }
        // Written ahead, never acknowledged.
        for (k, mut s) in group {
            s.uncertain = true;
            snap.keys.insert(k, s);
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io)?;
        let journal_bytes = journal.metadata().map(|m| m.len()).unwrap_or(0);
        if replayed > 0 {
            tracing::info!(endpoint, lines = replayed, "replayed the state journal");
        }
        let mut store = Store {
            snapshot_file,
            journal_path,
            journal,
            journal_bytes,
            snap,
            pending: Vec::new(),
            pending_fresh: Vec::new(),
            compact_after_bytes: 64 << 20,
        };
        // Start from an empty journal: lines appended after an unacknowledged group (or a
        // torn line) would otherwise join it, and the next ack would confirm changes that
        // were never published. The uncertain flags go into the snapshot.
        if store.journal_bytes > 0 {
            store.compact()?;
        }
        Ok(store)
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.journal_path.clone(),
            source,
        }
    }

    /// Records the new states of a page's changed keys before their events are published;
    /// they apply at once in memory, marked uncertain until [`Store::acknowledged`].
    ///
    /// `durable` changes are written ahead and fsynced now: a change to a key the warehouse
    /// already has (lost, the content could later revert to the recorded state and nothing
    /// would be re-sent) and, when the endpoint emits deletes, a new key (lost, its delete
    /// would never be sent). The others (new keys without deletes) are journalled after the
    /// acknowledgement without an fsync: lost, the key is simply new again at the next poll
    /// and re-sent under the same source key, which bronze drops.
    pub fn stage(&mut self, changes: Vec<(String, KeyState, bool)>) -> Result<(), StateError> {
        let mut buf = Vec::new();
        for (k, s, durable) in changes {
            if durable {
                line(&mut buf, &k, &s);
                self.pending.push(k.clone());
            } else {
                self.pending_fresh.push(k.clone());
            }
            self.snap.keys.insert(
                k,
                KeyState {
                    uncertain: true,
                    ..s
                },
            );
        }
        if !buf.is_empty() {
            self.journal.write_all(&buf).map_err(|e| self.io(e))?;
            self.journal.sync_data().map_err(|e| self.io(e))?;
            self.journal_bytes += buf.len() as u64;
        }
        Ok(())
    }

    /// The broker acknowledged every event of the staged changes. The ack line is not
    /// fsynced: lost, the written-ahead changes are replayed as uncertain and re-sent under
    /// the same source keys.
    pub fn acknowledged(&mut self) -> Result<(), StateError> {
        if self.pending.is_empty() && self.pending_fresh.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        if !self.pending.is_empty() {
            buf.extend_from_slice(ACK_LINE);
        }
        let mut keys = std::mem::take(&mut self.pending);
        if !self.pending_fresh.is_empty() {
            for k in &self.pending_fresh {
                if let Some(s) = self.snap.keys.get(k) {
                    line(&mut buf, k, s);
                }
            }
            buf.extend_from_slice(ACK_LINE);
            keys.append(&mut self.pending_fresh);
        }
        self.journal.write_all(&buf).map_err(|e| self.io(e))?;
        self.journal_bytes += buf.len() as u64;
        for k in keys {
            if let Some(s) = self.snap.keys.get_mut(&k) {
                s.uncertain = false;
            }
        }
        Ok(())
    }

    pub fn journal_bytes(&self) -> u64 {
        self.journal_bytes
    }

    /// Writes the snapshot (with the cursor and page memos) and empties the journal. Only
    /// call with nothing pending.
    pub fn compact(&mut self) -> Result<(), StateError> {
        debug_assert!(self.pending.is_empty() && self.pending_fresh.is_empty());
        self.snapshot_file.save(&self.snap)?;
        // A crash here replays the whole journal over the new snapshot: every line holds an
        // absolute state and the last of each key is the snapshot's, so that is harmless.
        self.journal.set_len(0).map_err(|e| self.io(e))?;
        self.journal.sync_all().map_err(|e| self.io(e))?;
        self.journal_bytes = 0;
        Ok(())
    }
}

/// What to emit for a record of content hash `h` under `key`, given what was sent before:
/// `None` when unchanged; else the op and the new state.
pub fn decide(prev: Option<&KeyState>, h: &str) -> Option<(etl_contract::Op, KeyState)> {
    use etl_contract::Op;
    let new = |n: u64| KeyState {
        hash: Some(h.to_string()),
        n,
        uncertain: false,
    };
    match prev {
        None => Some((Op::Create, new(1))),
        // Re-emit the very event that may have been lost: same counter, same source key.
        Some(s) if s.uncertain && s.hash.as_deref() == Some(h) => Some((Op::Update, new(s.n))),
        Some(s) if s.hash.is_none() => Some((Op::Create, new(s.n + 1))),
        Some(s) if s.hash.as_deref() == Some(h) => None,
        Some(s) => Some((Op::Update, new(s.n + 1))),
    }
}

/// For a key gone from a complete full poll: the `d` to emit, or `None` if it was deleted
/// already (and acknowledged).
pub fn decide_delete(prev: &KeyState) -> Option<KeyState> {
    match prev.hash {
        Some(_) => Some(KeyState {
            hash: None,
            n: prev.n + 1,
            uncertain: false,
        }),
        // A delete written ahead but not acknowledged: the same one again.
        None if prev.uncertain => Some(KeyState {
            hash: None,
            n: prev.n,
            uncertain: false,
        }),
        None => None,
    }
}

/// A map from key to index, used while a poll runs (keys seen so far).
pub type Seen = HashMap<String, ()>;

#[cfg(test)]
mod tests {
    use super::*;
    use etl_contract::Op;

    #[test]
    fn change_detection() {
        // New key.
        let (op, s1) = decide(None, "aa").unwrap();
        assert_eq!((op, s1.n), (Op::Create, 1));
        // Unchanged: nothing.
        assert!(decide(Some(&s1), "aa").is_none());
        // Changed: u with the next counter.
        let (op, s2) = decide(Some(&s1), "bb").unwrap();
        assert_eq!((op, s2.n, s2.hash.as_deref()), (Op::Update, 2, Some("bb")));
        // Back to an earlier content: still a new counter, so a new source key.
        let (_, s3) = decide(Some(&s2), "aa").unwrap();
        assert_eq!(s3.n, 3);
        // Deleted, then back: c with a new counter.
        let d = decide_delete(&s3).unwrap();
        assert_eq!((d.hash.clone(), d.n), (None, 4));
        assert!(decide_delete(&d).is_none());
        let (op, s5) = decide(Some(&d), "aa").unwrap();
        assert_eq!((op, s5.n), (Op::Create, 5));
    }

    #[test]
    fn uncertain_keys_are_re_emitted_with_the_same_counter() {
        let u = KeyState {
            hash: Some("bb".into()),
            n: 2,
            uncertain: true,
        };
        // Same content as written ahead: the same event again (bronze dedups it).
        let (_, s) = decide(Some(&u), "bb").unwrap();
        assert_eq!(s.n, 2);
        // Other content: a new counter.
        assert_eq!(decide(Some(&u), "aa").unwrap().1.n, 3);
        let ud = KeyState {
            hash: None,
            n: 4,
            uncertain: true,
        };
        assert_eq!(decide_delete(&ud).unwrap().n, 4);
    }

    #[test]
    fn a_dangling_group_is_not_confirmed_by_a_later_ack() {
        let dir = tempfile::tempdir().unwrap();
        let st = |h: &str, n| KeyState {
            hash: Some(h.into()),
            n,
            uncertain: false,
        };
        {
            let mut s = Store::open(dir.path(), "ep").unwrap();
            s.stage(vec![("k".into(), st("h2", 2), true)]).unwrap();
            // crash #1: written ahead, never published
        }
        {
            let mut s = Store::open(dir.path(), "ep").unwrap();
            assert!(s.snap.keys["k"].uncertain);
            // Another page is published and acknowledged before k's page comes round again.
            s.stage(vec![("other".into(), st("x", 2), true)]).unwrap();
            s.acknowledged().unwrap();
            // crash #2
        }
        let s = Store::open(dir.path(), "ep").unwrap();
        assert!(
            s.snap.keys["k"].uncertain,
            "k's change was never acknowledged"
        );
        assert!(!s.snap.keys["other"].uncertain);
    }

    #[test]
    fn journal_replay_acknowledged_and_torn() {
        let dir = tempfile::tempdir().unwrap();
        let st = |h: &str, n| KeyState {
            hash: Some(h.into()),
            n,
            uncertain: false,
        };
        {
            let mut s = Store::open(dir.path(), "ep").unwrap();
            s.stage(vec![
                ("a".into(), st("h1", 1), true),
                ("b".into(), st("h2", 1), false),
            ])
            .unwrap();
            assert!(s.snap.keys["b"].uncertain);
            s.acknowledged().unwrap();
            assert!(!s.snap.keys["b"].uncertain);
            s.stage(vec![
                ("a".into(), st("h3", 2), true),
                ("d".into(), st("h4", 1), false),
            ])
            .unwrap();
            // crash: no ack for the second group; "d" was never journalled
        }
        // A torn half line at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("ep.journal"))
            .unwrap();
        f.write_all(b"{\"k\":\"c\",\"s\":{\"h\"").unwrap();
        drop(f);
        let mut s = Store::open(dir.path(), "ep").unwrap();
        assert_eq!(s.snap.keys["b"], st("h2", 1));
        assert_eq!(
            s.snap.keys["a"],
            KeyState {
                hash: Some("h3".into()),
                n: 2,
                uncertain: true
            }
        );
        assert!(!s.snap.keys.contains_key("c"));
        assert!(
            !s.snap.keys.contains_key("d"),
            "a new key staged without write-ahead is new again"
        );
        s.snap.cursor = Some("2024-01-02".into());
        s.compact().unwrap();
        assert_eq!(s.journal_bytes(), 0);
        drop(s);
        let s = Store::open(dir.path(), "ep").unwrap();
        assert_eq!(s.snap.cursor.as_deref(), Some("2024-01-02"));
        assert!(
            s.snap.keys["a"].uncertain,
            "uncertainty survives a snapshot"
        );
    }
}
