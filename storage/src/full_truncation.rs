//! `Log::truncate_fully_and_start_at`: a follower whose log end fell below
//! its leader's log start (its fetch got OFFSET_OUT_OF_RANGE) drops its whole
//! log and restarts it, empty, at the leader's log start, as Kafka's
//! `UnifiedLog.truncateFullyAndStartAt`.
//!
//! Crash safety comes from an intent record made durable before any file is
//! touched: `truncate-fully-checkpoint` holds the new start offset (written
//! atomically). Then every segment, index and producer snapshot goes, the
//! epoch cache is emptied, the new segment is created and the checkpoints
//! are written; the intent record is removed last. Recovery that finds the
//! record redoes all of it (each step may already have happened), so a crash
//! leaves the old log (the record never became durable) or the new empty log
//! at the offset, never a hole or old records above it, whatever order the
//! file system persists the removals in.

use crate::checkpoint;
use crate::epoch_cache::LeaderEpochCache;
use crate::error::TruncateError;
use crate::fs::{write_atomically, FileSystem};
use crate::log::{EPOCH_CHECKPOINT, HW_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use crate::producers::SNAPSHOT_SUFFIX;
use crate::segment::Segment;
use crate::{Log, LogConfig, Offset};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// File name of the intent record of an unfinished full truncation: its one
/// entry is the offset the log restarts at.
pub const TRUNCATE_FULLY_CHECKPOINT: &str = "truncate-fully-checkpoint";

impl Log {
    /// Removes every segment and starts the log afresh, empty, at `offset`
    /// (above or below the current end): log start, log end, high watermark
    /// and flushed offset all become `offset`, the epoch cache and the
    /// producer state are emptied, and everything is durable when it
    /// returns. A negative offset is refused.
    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) -> Result<(), TruncateError> {
        self.check_online()?;
        if offset < 0 {
            return Err(TruncateError::BelowLogStart {
                offset,
                log_start_offset: 0,
            });
        }
        // Before any file changes: group-commit syncs and reads outside the
        // lock started before this must not trust what they saw, nor write
        // a snapshot or recovery point while it runs.
        let checkpoints = self.checkpoints.clone();
        let _writing = checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        self.note_truncation();
        self.sealed.clear(); // their files are about to go
        self.write_offset_checkpoint(TRUNCATE_FULLY_CHECKPOINT, offset)?;
        let restarted = restart_files(self.fs.as_ref(), &self.dir, offset, &self.config);
        let segment = self.io(restarted)?;
        self.segments = BTreeMap::from([(offset, segment)]);
        self.epochs = LeaderEpochCache::default();
        self.producers = Default::default();
        self.high_watermark = offset;
        self.checkpointed_high_watermark = None; // written anew next time
        self.flushed_offset = offset;
        let finished = remove_intent(self.fs.as_ref(), &self.dir);
        self.io(finished)?;
        tracing::info!(dir = %self.dir.display(), offset, "log truncated fully and restarted");
        self.check_invariants();
        Ok(())
    }
}

/// Every file step of a full truncation to `offset`, safe to run again
/// after a crash part-way (recovery does): removes every segment, index and
/// producer snapshot, writes an empty epoch cache, creates the empty
/// segment at `offset` and makes its entry durable, and writes the
/// high-watermark and recovery-point checkpoints at `offset`.
pub(crate) fn restart_files(
    fs: &dyn FileSystem,
    dir: &Path,
    offset: Offset,
    config: &LogConfig,
) -> io::Result<Segment> {
    for name in fs.list_dir(dir)? {
        let doomed = [".log", ".index", SNAPSHOT_SUFFIX]
            .iter()
            .any(|suffix| name.ends_with(suffix));
        if doomed {
            fs.remove_file(&dir.join(name))?;
        }
    }
    let no_epochs = LeaderEpochCache::default().to_checkpoint();
    write_atomically(fs, &dir.join(EPOCH_CHECKPOINT), &no_epochs)?;
    let segment = Segment::create(fs, dir, offset, config.index_interval_bytes)?;
    fs.sync_dir(dir)?;
    let at_offset = checkpoint::render(&[vec![offset]]);
    write_atomically(fs, &dir.join(HW_CHECKPOINT), &at_offset)?;
    write_atomically(fs, &dir.join(RECOVERY_POINT_CHECKPOINT), &at_offset)?;
    Ok(segment)
}

/// The last step: the intent record goes, durably.
pub(crate) fn remove_intent(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    fs.remove_file(&dir.join(TRUNCATE_FULLY_CHECKPOINT))?;
    fs.sync_dir(dir)
}
