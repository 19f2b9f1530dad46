//! Committed consumer-group offsets, kept durably on the single broker until
//! consumer groups get their own coordinator (issue 7).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use storage::fs::{write_atomically, OsFs};

/// File name of the committed offsets in the data directory.
pub const OFFSETS_FILE: &str = "consumer-offsets.json";

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The next offset the group will read.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
}

type Key = (String, String, i32);

/// Offsets by (group, topic, partition), rewritten atomically on each commit.
#[derive(Debug)]
pub struct GroupOffsets {
    path: PathBuf,
    offsets: Mutex<BTreeMap<String, Committed>>,
}

fn key_string((group, topic, partition): &Key) -> String {
    // Group ids may hold any character; JSON keys need one string.
    serde_json::to_string(&(group, topic, partition)).unwrap_or_default()
}

impl GroupOffsets {
    /// Loads the committed offsets (none if the file does not exist).
    pub fn load(data_dir: &Path) -> anyhow::Result<GroupOffsets> {
        let path = data_dir.join(OFFSETS_FILE);
        let offsets = if path.exists() {
            serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| anyhow::anyhow!("corrupt {}: {e}", path.display()))?
        } else {
            BTreeMap::new()
        };
        Ok(GroupOffsets {
            path,
            offsets: Mutex::new(offsets),
        })
    }

    /// Commits offsets; durable before it returns.
    pub fn commit(&self, entries: Vec<(Key, Committed)>) -> std::io::Result<()> {
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = offsets.clone();
        for (key, committed) in entries {
            next.insert(key_string(&key), committed);
        }
        let json = serde_json::to_vec(&next).map_err(std::io::Error::other)?;
        write_atomically(&OsFs, &self.path, &json)?;
        *offsets = next;
        Ok(())
    }

    /// The committed offset, if any.
    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (group.to_string(), topic.to_string(), partition);
        offsets.get(&key_string(&key)).cloned()
    }
}
