//! The partition log: an ordered set of segments, the leader-epoch cache,
//! the high watermark, and the rules for rolling, retention and truncation.
//!
//! `Log` is single-threaded (`&mut self`) and never syncs on append: the
//! flush policy is applied by [`crate::SharedLog`], which shares one
//! fdatasync among concurrent appends.

use crate::batch::{self, BatchHeader};
use crate::checkpoint;
use crate::epoch_cache::LeaderEpochCache;
use crate::error::{AppendError, Failure, TruncateError};
use crate::fs::{write_atomically, FileSystem};
use crate::producer_state::Verdict;
use crate::segment::Segment;
use crate::{LeaderEpoch, LogConfig, Offset};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// File name of the leader-epoch cache.
pub const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// File name of the high-watermark checkpoint.
pub const HW_CHECKPOINT: &str = "high-watermark-checkpoint";
/// File name of the recovery point: segments that end at or below it were
/// synced and are not CRC-checked again on open.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-checkpoint";

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// Number of batches.
    pub batch_count: usize,
    /// Bytes written.
    pub bytes: usize,
    /// A retry of an idempotent producer's batch already in the log: the
    /// offsets are the original's and nothing was written.
    pub duplicate: bool,
}

/// One partition's log. See the crate documentation.
#[derive(Debug)]
pub struct Log {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// By base offset; the last one is the active segment. Never empty.
    pub(crate) segments: BTreeMap<Offset, Segment>,
    pub(crate) epochs: LeaderEpochCache,
    pub(crate) high_watermark: Offset,
    /// The high watermark its checkpoint file holds, when known: an
    /// unchanged one is not written again (each write is two syncs, and an
    /// idle broker with 1,000 replicas would otherwise make 400 a second).
    pub(crate) checkpointed_high_watermark: Option<Offset>,
    /// Every offset below this is durable.
    pub(crate) flushed_offset: Offset,
    /// Bumped by each truncation before it changes a file, so that a sync
    /// started before it does not mark re-appended bytes as durable, and a
    /// read outside the lock (`SharedLog::read`) knows to plan again. Shared
    /// with the `SharedLog`, which checks it without the lock.
    pub(crate) truncations: Arc<AtomicU64>,
    /// Set after an I/O error: the log refuses work until reopened.
    pub(crate) offline: Option<String>,
    /// The idempotent producers' state as of the log end (`producers.rs`).
    pub(crate) producers: crate::producer_state::ProducerState,
    /// Rolled segments still owed their syncs, oldest first (`sealed.rs`).
    pub(crate) sealed: Vec<crate::sealed::Sealed>,
    /// Held by every writer of snapshots and the recovery point that may
    /// race a sync outside the lock (`sealed.rs`), and by truncations.
    pub(crate) checkpoints: Arc<std::sync::Mutex<()>>,
}

impl Log {
    /// Offset of the first record held.
    pub fn log_start_offset(&self) -> Offset {
        self.first_segment().base_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> Offset {
        self.active().next_offset
    }

    /// The high watermark as last set (or recovered from its checkpoint).
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// Every offset below this is on disk (synced).
    pub fn flushed_offset(&self) -> Offset {
        self.flushed_offset
    }

    /// The newest leader epoch in the epoch cache.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    /// The leader-epoch cache.
    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes in all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// OffsetForLeaderEpoch: the largest epoch `<= epoch` and where it ended.
    /// See [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// How many truncations this log has seen.
    pub(crate) fn truncation_count(&self) -> u64 {
        self.truncations.load(Ordering::SeqCst)
    }

    /// Counts a truncation; call it before the truncation changes any file.
    pub(crate) fn note_truncation(&mut self) {
        self.truncations.fetch_add(1, Ordering::SeqCst);
    }

    fn first_segment(&self) -> &Segment {
        self.segments
            .values()
            .next()
            .expect("a log always has a segment")
    }

    /// The base offset of the active (last) segment: reads at or above it
    /// touch the bytes most recently written, which the page cache holds.
    pub fn active_base_offset(&self) -> Offset {
        self.active().base_offset
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Runs an I/O step; on error the log goes offline.
    pub(crate) fn io<T>(&mut self, result: std::io::Result<T>) -> Result<T, Failure> {
        result.map_err(|e| {
            tracing::error!(dir = %self.dir.display(), error = %e, "log I/O error: going offline");
            self.offline = Some(e.to_string());
            Failure::Io(e)
        })
    }

    pub(crate) fn check_online(&self) -> Result<(), Failure> {
        match &self.offline {
            Some(why) => Err(Failure::Offline(why.clone())),
            None => Ok(()),
        }
    }

    /// Appends one or more concatenated RecordBatch v2 `batches` as leader in
    /// `leader_epoch`: validates every batch (framing, CRC-32C, record count)
    /// before writing anything, assigns contiguous offsets from the log end
    /// and stamps `baseOffset` and `partitionLeaderEpoch`. Not synced: see
    /// [`flush`](Self::flush) and [`crate::SharedLog`].
    pub fn append(
        &mut self,
        batches: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let mut parts = self.checked_batches(batches, batch::split_batches)?;
        if let Some(latest) = self.epochs.latest_epoch() {
            if leader_epoch < latest {
                return Err(crate::epoch_cache::EpochRegression {
                    requested: leader_epoch,
                    latest,
                }
                .into());
            }
        }
        let producer = self.check_producer(&parts)?;
        if let Some((_, Verdict::Duplicate(original))) = producer {
            return Ok(AppendInfo {
                base_offset: original.first_offset,
                last_offset: original.last_offset,
                batch_count: 0,
                bytes: 0,
                duplicate: true,
            });
        }
        let base_offset = self.log_end_offset();
        let records: i64 = parts
            .iter()
            .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
            .sum();
        self.maybe_roll(batches.len(), base_offset + records - 1, now_ms)?;
        if self.epochs.assign(leader_epoch, base_offset)? {
            self.write_epoch_checkpoint()?;
        }
        let mut stamped = batches.to_vec();
        let mut next = base_offset;
        for (header, range) in &mut parts {
            batch::stamp(&mut stamped[range.clone()], next, leader_epoch);
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            next = header.next_offset();
        }
        let result = self.active_mut().append(&stamped, &parts, now_ms);
        self.io(result)?;
        if let Some((mut batch, _)) = producer {
            (batch.first_offset, batch.last_offset) = (base_offset, next - 1);
            self.producers.record(&batch);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            batch_count: parts.len(),
            bytes: stamped.len(),
            duplicate: false,
        })
    }

    /// Appends batches copied from the leader, as a follower: each batch
    /// keeps the `baseOffset` and `partitionLeaderEpoch` the leader gave it
    /// (checked: offsets continue the log end without gaps, epochs never go
    /// back), and each new epoch is recorded in the epoch cache, durably,
    /// before its first batch. CRC-32C is checked before anything is
    /// written. Not synced.
    pub fn append_replicated(
        &mut self,
        batches: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let parts = self.checked_batches(batches, batch::split_stored_batches)?;
        let base_offset = self.log_end_offset();
        let mut next = base_offset;
        let mut latest = self.epochs.latest_epoch();
        for (header, _) in &parts {
            if header.base_offset != next {
                return Err(AppendError::OffsetMismatch {
                    expected: next,
                    got: header.base_offset,
                });
            }
            let epoch = header.partition_leader_epoch;
            if let Some(l) = latest.filter(|&l| epoch < l) {
                let regression = crate::epoch_cache::EpochRegression {
                    requested: epoch,
                    latest: l,
                };
                return Err(regression.into());
            }
            latest = Some(epoch);
            next = header.next_offset();
        }
        self.maybe_roll(batches.len(), next - 1, now_ms)?;
        let mut changed = false;
        for (header, _) in &parts {
            changed |= self
                .epochs
                .assign(header.partition_leader_epoch, header.base_offset)?;
        }
        if changed {
            self.write_epoch_checkpoint()?;
        }
        let result = self.active_mut().append(batches, &parts, now_ms);
        self.io(result)?;
        self.record_replicated(&parts);
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            batch_count: parts.len(),
            bytes: batches.len(),
            duplicate: false,
        })
    }

    /// The checks every append makes before writing anything: the log is
    /// online, the bytes are whole batches with good CRC-32C (and record
    /// counts as `split` checks them: as produced, or as stored, which
    /// compaction may have thinned), and they fit a segment. Returns each
    /// batch's header and byte range.
    fn checked_batches(
        &self,
        batches: &[u8],
        split: Split,
    ) -> Result<Vec<(batch::BatchHeader, std::ops::Range<usize>)>, AppendError> {
        self.check_online()?;
        if batches.is_empty() {
            return Err(AppendError::Empty);
        }
        let size_max = self.config.batch_size_max();
        let parts = split(batches, size_max).map_err(|source| AppendError::InvalidBatch {
            position: batch_error_position(batches, size_max, split),
            source,
        })?;
        if batches.len() > self.config.segment_bytes as usize {
            return Err(AppendError::TooLarge {
                size: batches.len(),
                max: self.config.segment_bytes as usize,
            });
        }
        Ok(parts)
    }

    /// Rolls before an append of `bytes` ending at `last_offset` when the
    /// active segment is full, too old, or its relative offsets would not fit
    /// the index's 4 bytes.
    fn maybe_roll(
        &mut self,
        bytes: usize,
        last_offset: Offset,
        now_ms: i64,
    ) -> Result<(), Failure> {
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size + bytes as u64 > u64::from(self.config.segment_bytes);
        let old = match (self.config.segment_ms, active.roll_anchor_ms) {
            (Some(ms), Some(anchor)) => now_ms - anchor >= ms.as_millis() as i64,
            _ => false,
        };
        let offsets_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
        if full || old || offsets_overflow {
            self.roll()?;
        }
        Ok(())
    }

    /// Syncs the active segment, and the rolled ones still owed a sync:
    /// every offset below the returned one is durable.
    pub fn flush(&mut self) -> Result<Offset, Failure> {
        self.check_online()?;
        self.settle_sealed()?;
        let end = self.log_end_offset();
        let synced = self.active().sync();
        self.io(synced)?;
        self.flushed_offset = end;
        Ok(end)
    }

    /// Removes every record at or above `offset`: the log end becomes the base
    /// offset of the batch holding `offset` (equal to it at a batch boundary).
    /// The cut is synced before it returns; the epoch cache, high watermark
    /// and recovery point follow it down. Below the log start is an error.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<(), TruncateError> {
        self.check_online()?;
        if offset > self.log_end_offset() {
            return Ok(());
        }
        if offset == self.log_end_offset() {
            // No record goes, but an epoch started at the end with no record
            // yet (a leadership that appended nothing) does: a follower must
            // not keep an epoch its leader never had.
            if self.epochs.truncate_from_end(offset) {
                self.write_epoch_checkpoint()?;
            }
            return Ok(());
        }
        if offset < self.log_start_offset() {
            return Err(TruncateError::BelowLogStart {
                offset,
                log_start_offset: self.log_start_offset(),
            });
        }
        // The recovery point written below claims every kept segment.
        self.settle_sealed()?;
        let checkpoints = self.checkpoints.clone();
        let _writing = checkpoints.lock().unwrap_or_else(|e| e.into_inner());
        self.note_truncation();
        // Later segments go first, so a crash part-way leaves a prefix.
        let doomed: Vec<Offset> = self.segments.range(offset + 1..).map(|(&b, _)| b).collect();
        for base in doomed.into_iter().rev() {
            let segment = self.segments.remove(&base).expect("listed above");
            let removed = segment.delete(self.fs.as_ref());
            self.io(removed)?;
        }
        let synced = self.fs.sync_dir(&self.dir);
        self.io(synced)?;
        let found = self.active().find(offset, self.config.batch_size_max());
        let cut = match self.io(found)? {
            Ok(found) => found.map(|(position, header)| (position, header.base_offset)),
            Err(stop) => {
                let e = std::io::Error::new(std::io::ErrorKind::InvalidData, stop.reason);
                return Err(self.io::<()>(Err(e)).unwrap_err().into());
            }
        };
        if let Some((position, next)) = cut {
            let truncated = self.active_mut().truncate_at(position, next);
            self.io(truncated)?;
        }
        let end = self.log_end_offset();
        self.high_watermark = self.high_watermark.min(end);
        self.flushed_offset = self.flushed_offset.min(end);
        if self.epochs.truncate_from_end(end) {
            self.write_epoch_checkpoint()?;
        }
        self.write_offset_checkpoint(RECOVERY_POINT_CHECKPOINT, end)?;
        let rebuilt = self.rebuild_producer_state();
        self.io(rebuilt)?;
        self.check_invariants();
        Ok(())
    }

    /// Deletes the oldest segments that retention.ms or retention.bytes
    /// expire, never the active one and never one holding records at or above
    /// the high watermark. Returns how many were deleted. Does nothing when
    /// `cleanup.policy` is `compact` alone (as in Kafka).
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, Failure> {
        self.check_online()?;
        if !self.config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let mut size = self.size_bytes();
        let mut doomed = Vec::new();
        for segment in self.segments.values().take(self.segments.len() - 1) {
            let by_time = match (self.config.retention_ms, segment.max_timestamp) {
                (Some(ms), Some(ts)) => now_ms - ts > ms.as_millis() as i64,
                _ => false,
            };
            let by_size = self
                .config
                .retention_bytes
                .is_some_and(|max| size - segment.size >= max);
            if !(by_time || by_size) || segment.next_offset > self.high_watermark {
                break;
            }
            size -= segment.size;
            doomed.push(segment.base_offset);
        }
        if !doomed.is_empty() {
            // The doomed segments' producers live on only in the snapshots
            // their rolls still owe.
            self.settle_sealed()?;
        }
        for base in &doomed {
            let segment = self.segments.remove(base).expect("listed above");
            let removed = segment.delete(self.fs.as_ref());
            self.io(removed)?;
        }
        if !doomed.is_empty() {
            let synced = self.fs.sync_dir(&self.dir);
            self.io(synced)?;
            if self.epochs.truncate_from_start(self.log_start_offset()) {
                self.write_epoch_checkpoint()?;
            }
            self.remove_snapshots_below_start()?;
        }
        self.check_invariants();
        Ok(doomed.len())
    }

    /// Sets the high watermark; it must lie within the log.
    pub fn set_high_watermark(&mut self, high_watermark: Offset) {
        assert!(
            (self.log_start_offset()..=self.log_end_offset()).contains(&high_watermark),
            "high watermark {high_watermark} outside [{}, {}]",
            self.log_start_offset(),
            self.log_end_offset()
        );
        self.high_watermark = high_watermark;
    }

    /// Writes the high-watermark checkpoint (atomically), unless it
    /// already holds the high watermark.
    pub fn checkpoint_high_watermark(&mut self) -> Result<(), Failure> {
        self.check_online()?;
        let hw = self.high_watermark;
        if self.checkpointed_high_watermark == Some(hw) {
            return Ok(());
        }
        self.write_offset_checkpoint(HW_CHECKPOINT, hw)?;
        self.checkpointed_high_watermark = Some(hw);
        Ok(())
    }

    /// Starts `leader_epoch` at the log end without appending (a new leader
    /// does this before its first append, so OffsetForLeaderEpoch answers for
    /// it at once).
    pub fn assign_leader_epoch(&mut self, leader_epoch: LeaderEpoch) -> Result<(), AppendError> {
        self.check_online()?;
        if self.epochs.assign(leader_epoch, self.log_end_offset())? {
            self.write_epoch_checkpoint()?;
        }
        Ok(())
    }

    /// Syncs everything and writes every checkpoint, so the next open checks
    /// nothing it need not.
    pub fn close(mut self) -> Result<(), Failure> {
        let end = self.flush()?;
        self.checkpoint_high_watermark()?;
        self.write_producer_snapshot()?;
        self.write_offset_checkpoint(RECOVERY_POINT_CHECKPOINT, end)
    }

    pub(crate) fn write_epoch_checkpoint(&mut self) -> Result<(), Failure> {
        let path = self.dir.join(EPOCH_CHECKPOINT);
        let written = write_atomically(self.fs.as_ref(), &path, &self.epochs.to_checkpoint());
        self.io(written)
    }

    pub(crate) fn write_offset_checkpoint(
        &mut self,
        name: &str,
        offset: Offset,
    ) -> Result<(), Failure> {
        let path = self.dir.join(name);
        let written = write_atomically(
            self.fs.as_ref(),
            &path,
            &checkpoint::render(&[vec![offset]]),
        );
        self.io(written)
    }

    /// `log_start_offset <= high_watermark <= log_end_offset`, flushed data
    /// within the log, segments contiguous.
    pub(crate) fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            let (start, end) = (self.log_start_offset(), self.log_end_offset());
            assert!(start <= self.high_watermark && self.high_watermark <= end);
            assert!(self.flushed_offset <= end);
            let mut expected = start;
            for s in self.segments.values() {
                assert_eq!(s.base_offset, expected, "segments must be contiguous");
                expected = s.next_offset;
            }
        }
    }
}

/// How an append splits and checks its batches.
type Split =
    fn(&[u8], usize) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, batch::BatchError>;

/// Where in `bytes` the first invalid batch starts, for error messages.
fn batch_error_position(bytes: &[u8], size_max: usize, split: Split) -> usize {
    let mut position = 0;
    while let Ok(h) = batch::parse_header(&bytes[position..], size_max) {
        let end = position + h.size;
        if end > bytes.len() || split(&bytes[position..end], size_max).is_err() {
            break;
        }
        position = end;
    }
    position
}
