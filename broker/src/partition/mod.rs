//! A partition this broker holds a replica of: its log, its high
//! watermark, the replication rules while it leads, and the purgatory
//! watch lists of requests waiting on it. Whether it leads, and in which
//! epoch, is in the metadata image (`crate::image`), never here. The log is
//! private: every read, append and truncation goes through a method here,
//! which also wakes the requests the change concerns.

mod log_ops;
mod topic_config;

pub use log_ops::Due;
pub use topic_config::{log_config_for, min_insync_replicas, TOPIC_CONFIGS};

use crate::purgatory::Watchers;
use replication::LeaderState;
use std::sync::{Arc, Mutex};
use storage::fs::FileSystem;
use storage::{
    AppendError, AppendInfo, FlushPolicy, LeaderEpoch, Log, LogConfig, Offset, SharedLog,
};
use uuid::Uuid;

/// The file naming the topic id a partition directory belongs to (Kafka's
/// `partition.metadata`), so a directory left by a deleted topic is never
/// served as a new topic of the same name.
pub const PARTITION_METADATA: &str = "partition.metadata";

/// One partition replica.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// Topic id.
    pub topic_id: Uuid,
    /// The log, shared with blocking tasks; only this module touches it.
    log: Arc<SharedLog>,
    flush: FlushPolicy,
    compact: bool,
    /// While this broker leads the partition: the epoch and what it knows of
    /// its followers (the replication rules, `replication::LeaderState`).
    leading: Mutex<Option<Leading>>,
    /// Requests waiting for the log end to move (followers' fetches).
    appended: Watchers,
    /// Requests waiting for the high watermark to move (consumers'
    /// fetches, acks=all produces, group coordinator writes).
    hw_moved: Watchers,
}

/// A leadership in one epoch.
#[derive(Debug)]
struct Leading {
    epoch: LeaderEpoch,
    state: LeaderState,
}

impl Partition {
    /// Opens (recovering) the partition's log in `dir` on `fs` (the OS,
    /// or `FaultyFs` in tests). A directory that belongs to another topic
    /// id (a deleted topic's) is emptied first.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: std::path::PathBuf,
        topic: &str,
        index: i32,
        topic_id: Uuid,
        config: LogConfig,
    ) -> anyhow::Result<Partition> {
        let flush = config.flush;
        let compact = config.cleanup_policy.compacts();
        claim_dir(fs.as_ref(), &dir, topic_id)?;
        let mut log = Log::open(fs, dir, config)?;
        // What this replica has durably is committed as far as it knows; a
        // leader's HW then only moves with its ISR.
        let hw = log.flushed_offset().max(log.high_watermark());
        log.set_high_watermark(hw);
        Ok(Partition {
            topic: topic.to_string(),
            index,
            topic_id,
            log: Arc::new(SharedLog::new(log)),
            flush,
            compact,
            leading: Mutex::new(None),
            appended: Watchers::default(),
            hw_moved: Watchers::default(),
        })
    }

    /// Starts `leader_epoch` at the log end, as a new leader does before its
    /// first append (so OffsetForLeaderEpoch answers for it at once). An
    /// epoch the log already has changes nothing.
    pub fn become_leader(&self, leader_epoch: LeaderEpoch) -> Result<(), AppendError> {
        let mut log = self.log.lock();
        if log.latest_epoch().is_none_or(|e| e < leader_epoch) {
            log.assign_leader_epoch(leader_epoch)?;
        }
        Ok(())
    }

    /// Starts or updates the leadership in `epoch` at `now_ms` with the
    /// committed `isr`; a new epoch starts fresh follower tracking, from the
    /// log end (where the epoch starts) and the current high watermark.
    pub fn lead(
        &self,
        now_ms: u64,
        me: i32,
        epoch: LeaderEpoch,
        replicas: &[i32],
        isr: &[i32],
        lag_max_ms: u64,
    ) {
        // Lock order: the log before `leading`, everywhere.
        let (start, hw) = {
            let log = self.log.lock();
            (log.log_end_offset(), log.high_watermark())
        };
        let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
        match leading.as_mut() {
            Some(l) if l.epoch == epoch => {
                if l.state.isr() != isr {
                    l.state.on_committed(isr.to_vec());
                }
            }
            _ => {
                let state = LeaderState::new(
                    now_ms,
                    me,
                    replicas.to_vec(),
                    isr.to_vec(),
                    start,
                    hw,
                    lag_max_ms,
                );
                *leading = Some(Leading { epoch, state });
            }
        }
    }

    /// No longer the leader.
    pub fn stop_leading(&self) {
        *self.leading.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The committed ISR's size while leading in `epoch`.
    pub fn isr_len(&self, epoch: LeaderEpoch) -> usize {
        let leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
        leading
            .as_ref()
            .filter(|l| l.epoch == epoch)
            .map_or(0, |l| l.state.isr().len())
    }

    /// A follower fetched at `fetch_offset` at `now_ms`; returns whether the
    /// high watermark moved.
    pub fn on_follower_fetch(&self, now_ms: u64, follower: i32, fetch_offset: i64) -> bool {
        {
            let end = self.log.lock().log_end_offset();
            let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
            match leading.as_mut() {
                Some(l) => l.state.on_fetch(now_ms, follower, fetch_offset, end),
                None => return false,
            }
        }
        self.advance_high_watermark()
    }

    /// The ISR change to propose now, if any (marked pending at once).
    pub fn propose_isr(
        &self,
        now_ms: u64,
        may_join: impl Fn(i32) -> bool,
    ) -> Option<(LeaderEpoch, Vec<i32>)> {
        let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
        let l = leading.as_mut()?;
        let isr = l.state.isr_change(now_ms, may_join)?;
        l.state.on_proposed(isr.clone());
        Some((l.epoch, isr))
    }

    /// The controller refused the pending change.
    pub fn isr_refused(&self, epoch: LeaderEpoch) {
        let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = leading.as_mut().filter(|l| l.epoch == epoch) {
            l.state.on_refused();
        }
    }

    /// As a follower: the leader's high watermark, applied up to what this
    /// replica holds durably (never lowered), so after a crash its
    /// checkpointed high watermark is never above its recovered log.
    pub fn follow_high_watermark(&self, leader_hw: i64) {
        let moved = {
            let mut log = self.log.lock();
            let hw = leader_hw.min(log_ops::durable_end(&log, self.flush));
            let moved = hw > log.high_watermark();
            if moved {
                log.set_high_watermark(hw);
            }
            moved
        };
        if moved {
            self.hw_moved.wake_all();
        }
    }

    /// Appends as leader in `leader_epoch` without waiting for the flush
    /// policy: calls made in order land in order. The write goes to the page
    /// cache (the sync is what blocks), so it runs on the calling task, as
    /// Kafka's request handler threads append. Follow with
    /// [`commit`](Self::commit).
    pub fn append(
        &self,
        batches: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let info = self.log.append_unsynced(batches, leader_epoch, now_ms)?;
        // Followers long-polling for new records fetch them now.
        self.appended.wake_all();
        Ok(info)
    }

    /// Waits until the flush policy is met for `info`, then advances the
    /// high watermark. Pipelined appends share fdatasyncs (group commit); one
    /// that an earlier sync already covered returns without a thread hop.
    pub async fn commit(&self, info: AppendInfo, now_ms: i64) -> Result<(), storage::Failure> {
        if !self.log.is_committed(&info) {
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || log.commit(&info, now_ms))
                .await
                .map_err(|e| storage::Failure::Offline(e.to_string()))??;
        }
        self.advance_high_watermark();
        Ok(())
    }

    /// As leader: moves the high watermark up to what every member of the
    /// (maximal) ISR has, counting this broker's own records only once the
    /// flush policy made them durable (`always`: synced). Returns whether it
    /// moved. A follower's moves with its leader's instead.
    pub fn advance_high_watermark(&self) -> bool {
        let moved = {
            let mut log = self.log.lock();
            let own_end = log_ops::durable_end(&log, self.flush);
            let mut leading = self.leading.lock().unwrap_or_else(|e| e.into_inner());
            let Some(l) = leading.as_mut() else {
                return false;
            };
            match l.state.advance(own_end) {
                Some(hw) if hw > log.high_watermark() => {
                    log.set_high_watermark(hw);
                    true
                }
                _ => false,
            }
        };
        if moved {
            self.hw_moved.wake_all();
        }
        moved
    }

    /// Whether `cleanup.policy` includes `compact`.
    pub fn compacts(&self) -> bool {
        self.compact
    }

    /// (log start, high watermark, log end).
    pub fn offsets(&self) -> (Offset, Offset, Offset) {
        let log = self.log.lock();
        (
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset(),
        )
    }
}

/// Makes `dir` the directory of `topic_id`: a directory recording another
/// id is a deleted topic's leftovers and is emptied; a new or unmarked one
/// gets the id written (atomically) before any log file.
fn claim_dir(fs: &dyn FileSystem, dir: &std::path::Path, topic_id: Uuid) -> anyhow::Result<()> {
    let path = dir.join(PARTITION_METADATA);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match storage::fs::read_all(fs, &path) {
        Ok(found) if found == expected.as_bytes() => return Ok(()),
        Ok(found) => {
            let found = String::from_utf8_lossy(&found);
            tracing::warn!(dir = %dir.display(), %found, %topic_id,
                "partition directory of a deleted topic: emptying it");
            // Partition directories are flat: files only.
            for name in fs.list_dir(dir)? {
                fs.remove_file(&dir.join(name))?;
            }
            fs.sync_dir(dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    fs.create_dir_all(dir)?;
    storage::fs::write_atomically(fs, &path, expected.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests;
