//! The Raft log and vote, durable.
//!
//! `raft-log` is an append-only file of records `[len u32][crc32c u32]
//! [JSON entry]`, fdatasynced before an append is reported flushed. On open,
//! a torn or corrupt tail is cut (it was never reported flushed). `vote`,
//! `committed` and `purged` are small JSON files written atomically. A purge
//! first records its point in `purged`, then rewrites the log without the
//! purged entries (atomically), so a crash in between only leaves entries
//! that the next open drops.

use super::{storage_error, NodeId, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use storage::fs::{write_atomically, OsFs};

const LOG_FILE: &str = "raft-log";
const RECORD_HEADER: usize = 8;

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: std::fs::File,
    /// Entries by index, with the byte position of their record.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    len: u64,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
}

/// The durable log store; clones share it (the log reader is a clone).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomically(&OsFs, path, &bytes)
}

fn record(entry: &Entry<TypeConfig>) -> std::io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses records until the first torn or corrupt one: (entries with
/// positions, length of the valid prefix).
fn parse_records(bytes: &[u8]) -> (Vec<(Entry<TypeConfig>, u64)>, u64) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= RECORD_HEADER {
        let len =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let Some(payload) = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice(payload) else {
            break;
        };
        out.push((entry, at as u64));
        at += RECORD_HEADER + len;
    }
    (out, at as u64)
}

impl LogStore {
    /// Opens (or creates) the log store in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid) = parse_records(&bytes);
        if valid < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), valid, len = bytes.len(), "cutting a torn or corrupt raft log tail");
            file.set_len(valid)?;
            file.sync_data()?;
        }
        OsFs.sync_dir(dir)?;
        let purged: Option<LogId<NodeId>> = read_json(&dir.join("purged"))?;
        let keep = |e: &Entry<TypeConfig>| purged.is_none_or(|p| e.log_id.index > p.index);
        let entries = records
            .into_iter()
            .filter(|(e, _)| keep(e))
            .map(|(e, pos)| (e.log_id.index, (e, pos)))
            .collect();
        let inner = Inner {
            dir: dir.to_path_buf(),
            file,
            entries,
            len: valid,
            vote: read_json(&dir.join("vote"))?,
            committed: read_json(&dir.join("committed"))?,
            purged,
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// The last membership recorded in the log, if any.
    pub fn last_membership(&self) -> Option<openraft::Membership<NodeId, openraft::BasicNode>> {
        self.lock()
            .entries
            .values()
            .rev()
            .find_map(|(e, _)| match &e.payload {
                openraft::EntryPayload::Membership(m) => Some(m.clone()),
                _ => None,
            })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

use storage::fs::FileSystem as _;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id)
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        write_json(&inner.dir.join("vote"), vote)
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        write_json(&inner.dir.join("committed"), &committed)
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut written = Vec::new();
        let mut appended = Vec::new();
        let mut position = inner.len;
        for entry in entries {
            let bytes = record(&entry)
                .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            appended.push((entry, position));
            position += bytes.len() as u64;
            written.extend(bytes);
        }
        let result = inner
            .file
            .write_all(&written)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = &result {
            let error = storage_error(ErrorSubject::Logs, ErrorVerb::Write, e);
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(error);
        }
        inner.len = position;
        for (entry, pos) in appended {
            inner.entries.insert(entry.log_id.index, (entry, pos));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let Some(&(_, position)) = inner.entries.get(&log_id.index) else {
            return Ok(());
        };
        let cut = inner
            .file
            .set_len(position)
            .and_then(|()| inner.file.sync_data());
        cut.map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.len = position;
        inner.entries.retain(|&i, _| i < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let fail = |e: std::io::Error| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
        write_json(&inner.dir.join("purged"), &Some(log_id)).map_err(fail)?;
        inner.purged = Some(log_id);
        inner.entries.retain(|&i, _| i > log_id.index);
        // Rewrite the log without the purged entries.
        let mut bytes = Vec::new();
        let mut rewritten = BTreeMap::new();
        for (&index, (entry, _)) in &inner.entries {
            rewritten.insert(index, (entry.clone(), bytes.len() as u64));
            bytes.extend(record(entry).map_err(fail)?);
        }
        let path = inner.dir.join(LOG_FILE);
        write_atomically(&OsFs, &path, &bytes).map_err(fail)?;
        inner.file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        inner.len = bytes.len() as u64;
        inner.entries = rewritten;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_corrupt_records_end_the_log() {
        let entry = |i| Entry::<TypeConfig> {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 0), i),
            payload: openraft::EntryPayload::Blank,
        };
        let mut bytes = Vec::new();
        for i in 1..=3 {
            bytes.extend(record(&entry(i)).unwrap());
        }
        let whole = parse_records(&bytes);
        assert_eq!(whole.0.len(), 3);
        assert_eq!(whole.1, bytes.len() as u64);
        let torn = parse_records(&bytes[..bytes.len() - 2]);
        assert_eq!(torn.0.len(), 2);
        let mut flipped = bytes.clone();
        let second = whole.0[1].1 as usize;
        flipped[second + RECORD_HEADER + 1] ^= 1;
        let corrupt = parse_records(&flipped);
        assert_eq!((corrupt.0.len(), corrupt.1), (1, second as u64));
    }
}
