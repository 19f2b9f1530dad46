//! Rolled segments whose syncs are still owed.
//!
//! `roll` seals the active segment and starts the next one without syncing
//! anything (Kafka flushes a rolled segment asynchronously too). What a roll
//! used to do under the log's lock is owed instead: the sealed segment's
//! files, the new segment's directory entry, the producer snapshot taken at
//! the roll and the recovery point. The next group-commit sync pays it
//! outside the lock ([`SyncPlan`], from `SharedLog::wait_durable`), or
//! `flush`, a truncation or a roll finding [`SEALED_PENDING_MAX`] owed does
//! under it. Until then `flushed_offset` stays below the sealed segment's
//! end and the recovery point at or below its base: nothing claims unsynced
//! bytes.
//!
//! The snapshot and recovery point a sync writes outside the lock race
//! truncations, which remove snapshots above the new end and lower the
//! recovery point. Both sides hold `Log::checkpoints` for that, and the
//! outside writer checks the truncation count under it: a stale snapshot or
//! recovery point never lands after a truncation.

use crate::checkpoint;
use crate::error::Failure;
use crate::fs::{write_atomically, FileHandle, FileSystem};
use crate::log::RECOVERY_POINT_CHECKPOINT;
use crate::producer_state::encode_snapshot;
use crate::producers::snapshot_file_name;
use crate::{Log, Offset};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Sealed segments owed a sync before a roll pays for them itself, so a log
/// nobody syncs (`FlushPolicy::Never`) holds a bounded number of them.
pub(crate) const SEALED_PENDING_MAX: usize = 8;

/// A rolled segment not yet synced.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    log: Arc<dyn FileHandle>,
    index: Arc<dyn FileHandle>,
    /// Its end: the next segment's base offset.
    end: Offset,
    /// The producer state as of `end`, encoded at the roll.
    snapshot: Arc<[u8]>,
}

/// What a group-commit sync owes, captured under the lock and carried out
/// without it.
#[derive(Debug)]
pub(crate) struct SyncPlan {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    sealed: Vec<Sealed>,
    active: Arc<dyn FileHandle>,
    /// The log end when captured: what the sync makes durable.
    end: Offset,
    /// The truncation count when captured.
    truncations: u64,
    count: Arc<AtomicU64>,
    checkpoints: Arc<Mutex<()>>,
}

impl SyncPlan {
    /// Syncs the sealed segments and the active file, then writes the sealed
    /// segments' snapshots and the recovery point (which also makes the new
    /// segments' directory entries durable) unless a truncation came in
    /// between, in which case `mark_flushed` claims nothing either.
    pub(crate) fn execute(&self) -> io::Result<()> {
        sync_files(&self.sealed)?;
        self.active.sync_data()?;
        if !self.sealed.is_empty() {
            let _writing = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
            if self.count.load(Ordering::SeqCst) == self.truncations {
                write_checkpoints(self.fs.as_ref(), &self.dir, &self.sealed)?;
            }
        }
        Ok(())
    }
}

/// fdatasync of each sealed segment's files.
fn sync_files(sealed: &[Sealed]) -> io::Result<()> {
    for s in sealed {
        s.log.sync_data()?;
        s.index.sync_data()?;
    }
    Ok(())
}

/// The snapshots taken at the rolls and the recovery point after the last
/// sealed segment: call only once their files are synced. Their directory
/// fsyncs also make the entries of the segments the rolls created durable,
/// before any offset in them is marked flushed.
fn write_checkpoints(fs: &dyn FileSystem, dir: &Path, sealed: &[Sealed]) -> io::Result<()> {
    for s in sealed {
        write_atomically(fs, &dir.join(snapshot_file_name(s.end)), &s.snapshot)?;
    }
    if let Some(last) = sealed.last() {
        let recovery_point = checkpoint::render(&[vec![last.end]]);
        write_atomically(fs, &dir.join(RECOVERY_POINT_CHECKPOINT), &recovery_point)?;
    }
    Ok(())
}

impl Log {
    /// Closes the active segment and starts a new one at the log end,
    /// syncing nothing: the sync is owed (see the module doc). A no-op when
    /// the active segment is empty.
    pub fn roll(&mut self) -> Result<(), Failure> {
        self.check_online()?;
        if self.active().is_empty() {
            return Ok(());
        }
        if self.sealed.len() >= SEALED_PENDING_MAX {
            self.settle_sealed()?;
        }
        let base = self.log_end_offset();
        let active = self.active();
        let sealed = Sealed {
            log: active.log_handle(),
            index: active.index_handle(),
            end: base,
            // The producer state as of the new segment's base, so recovery
            // replays at most the active segment.
            snapshot: encode_snapshot(&self.producers).into(),
        };
        let created = crate::segment::Segment::create(
            self.fs.as_ref(),
            &self.dir,
            base,
            self.config.index_interval_bytes,
        );
        let segment = self.io(created)?;
        self.segments.insert(base, segment);
        self.sealed.push(sealed);
        Ok(())
    }

    /// Pays every owed sync under the lock: sealed files, snapshots,
    /// recovery point (and with them the directory).
    pub(crate) fn settle_sealed(&mut self) -> Result<(), Failure> {
        if self.sealed.is_empty() {
            return Ok(());
        }
        let sealed = std::mem::take(&mut self.sealed);
        let checkpoints = self.checkpoints.clone();
        let _writing = checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        let settled = sync_files(&sealed)
            .and_then(|()| write_checkpoints(self.fs.as_ref(), &self.dir, &sealed));
        self.io(settled)
    }

    /// What a group commit syncs outside the log's lock: the owed sealed
    /// segments, the active file and the log end it will cover.
    pub(crate) fn sync_plan(&self) -> SyncPlan {
        SyncPlan {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            sealed: self.sealed.clone(),
            active: self.active().log_handle(),
            end: self.log_end_offset(),
            truncations: self.truncation_count(),
            count: self.truncations.clone(),
            checkpoints: self.checkpoints.clone(),
        }
    }

    /// Records a group-commit sync of `plan`, unless a truncation happened
    /// since it was captured.
    pub(crate) fn mark_flushed(
        &mut self,
        plan: &SyncPlan,
        result: io::Result<()>,
    ) -> Result<(), Failure> {
        self.io(result)?;
        if plan.truncations != self.truncation_count() {
            return Ok(());
        }
        if let Some(last) = plan.sealed.last() {
            self.sealed.retain(|s| s.end > last.end);
        }
        if plan.end > self.flushed_offset {
            self.flushed_offset = plan.end.min(self.log_end_offset());
        }
        Ok(())
    }
}
