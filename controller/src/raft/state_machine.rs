//! The state machine: cluster metadata built by applying committed
//! [`Command`](crate::commands::Command)s in log order. Its durability is the
//! Raft log plus snapshots: a snapshot (state and its last log id) is written
//! atomically to `snapshot`; on restart openraft re-applies the committed log
//! after it.

use super::{storage_error, NodeId, TypeConfig};
use crate::commands::{self, CommandResult};
use crate::events;
use crate::metadata::ClusterMetadata;
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use storage::fs::{write_atomically, OsFs};

/// What the state machine holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The last entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    /// The cluster metadata.
    pub metadata: ClusterMetadata,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    state: State,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
    unclean_leader_election: bool,
}

/// The state machine; clones share it (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    /// Set while this controller is the active one: only then are applied
    /// changes logged, so each is said once, when it commits, and not again
    /// by the followers or by a replay at start.
    log_changes: Arc<AtomicBool>,
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the stored snapshot.
    pub fn open(dir: &Path, unclean_leader_election: bool) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let snapshot: Option<StoredSnapshot> = match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let state = match &snapshot {
            Some(s) => serde_json::from_slice(&s.data).map_err(std::io::Error::other)?,
            None => State::default(),
        };
        let inner = Inner {
            dir: dir.to_path_buf(),
            state,
            snapshot,
            snapshots_built: 0,
            unclean_leader_election,
        };
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
            log_changes: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether applied changes are logged (see the field).
    pub fn set_log_changes(&self, on: bool) {
        self.log_changes.store(on, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.lock().state.clone()
    }
}

#[allow(clippy::result_large_err)] // openraft dictates the error type
fn save(dir: &Path, snapshot: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
    let subject = || ErrorSubject::Snapshot(Some(snapshot.meta.signature()));
    let bytes =
        serde_json::to_vec(snapshot).map_err(|e| storage_error(subject(), ErrorVerb::Write, e))?;
    write_atomically(&OsFs, &dir.join("snapshot"), &bytes)
        .map_err(|e| storage_error(subject(), ErrorVerb::Write, e))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        let data = serde_json::to_vec(&inner.state)
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        inner.snapshots_built += 1;
        let snapshot_id = match inner.state.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, inner.snapshots_built),
            None => format!("--{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.state.last_applied,
            last_membership: inner.state.last_membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        save(&inner.dir, &stored)?;
        inner.snapshot = Some(stored);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let inner = self.lock();
        Ok((
            inner.state.last_applied,
            inner.state.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let unclean = inner.unclean_leader_election;
        let mut results = Vec::new();
        for entry in entries {
            inner.state.last_applied = Some(entry.log_id);
            results.push(match entry.payload {
                EntryPayload::Blank => CommandResult::Ok {
                    broker_epoch: None,
                    leaders_changed: 0,
                },
                EntryPayload::Normal(command) if self.log_changes.load(Ordering::Relaxed) => {
                    let before = inner.state.metadata.clone();
                    let result = commands::apply(&mut inner.state.metadata, &command, unclean);
                    for change in events::changes(&before, &inner.state.metadata) {
                        tracing::info!("{change}");
                    }
                    result
                }
                EntryPayload::Normal(command) => {
                    commands::apply(&mut inner.state.metadata, &command, unclean)
                }
                EntryPayload::Membership(m) => {
                    inner.state.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::Ok {
                        broker_epoch: None,
                        leaders_changed: 0,
                    }
                }
            });
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state: State = serde_json::from_slice(&data).map_err(|e| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let mut inner = self.lock();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        save(&inner.dir, &stored)?;
        inner.state = state;
        inner.snapshot = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
