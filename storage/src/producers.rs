//! The log's producer state (`producer_state`, pure) kept right through
//! every log operation: checked and recorded on a leader's append,
//! recorded on a follower's, snapshotted at segment roll and clean close
//! (`<20-digit offset>.snapshot`, written atomically), rebuilt on open and
//! after a truncation from the newest usable snapshot at or below the log
//! end plus the batches after it, and kept through retention (a producer
//! whose batches retention deleted is still known until it expires, as in
//! Kafka since KIP-360).

use crate::batch::BatchHeader;
use crate::error::{AppendError, Failure};
use crate::fs::{read_all, write_atomically};
use crate::producer_state::{
    decode_snapshot, encode_snapshot, InvalidProducerBatch, ProducerBatch, ProducerState, Verdict,
};
use crate::segment::Cursor;
use crate::{Log, Offset};
use std::io;

/// Suffix of producer-state snapshot files.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// `<20-digit offset>.snapshot`.
pub fn snapshot_file_name(offset: Offset) -> String {
    format!("{offset:020}{SNAPSHOT_SUFFIX}")
}

fn snapshot_offset(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl Log {
    /// Every producer's state as of the log end.
    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// The producer rules for a leader's append of `parts`: `None` when no
    /// batch is idempotent. An idempotent batch must come alone.
    pub(crate) fn check_producer(
        &self,
        parts: &[(BatchHeader, std::ops::Range<usize>)],
    ) -> Result<Option<(ProducerBatch, Verdict)>, AppendError> {
        let mut found = None;
        for (header, _) in parts {
            if let Some(batch) = ProducerBatch::from_produced(header)? {
                found = Some(batch);
            }
        }
        let Some(batch) = found else {
            return Ok(None);
        };
        if parts.len() > 1 {
            return Err(InvalidProducerBatch::NotAlone.into());
        }
        Ok(Some((batch, self.producers.check(&batch)?)))
    }

    /// Records every producer batch among replicated `parts` (already
    /// checked by the leader that appended them).
    pub(crate) fn record_replicated(&mut self, parts: &[(BatchHeader, std::ops::Range<usize>)]) {
        for (header, _) in parts {
            if let Ok(Some(batch)) = ProducerBatch::from_header(header) {
                self.producers.record(&batch);
            }
        }
    }

    /// Forgets producers idle for `expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`) at `now_ms`; returns how many.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: u64) -> usize {
        self.producers.remove_expired(now_ms, expiration_ms)
    }

    /// Writes the producer state as of the log end to its snapshot file
    /// (segment roll and clean close do), so the next open replays nothing
    /// before it.
    pub fn write_producer_snapshot(&mut self) -> Result<(), Failure> {
        let path = self.dir.join(snapshot_file_name(self.log_end_offset()));
        let written = write_atomically(self.fs.as_ref(), &path, &encode_snapshot(&self.producers));
        self.io(written)
    }

    /// Snapshot offsets on disk, ascending.
    fn snapshot_offsets(&self) -> io::Result<Vec<Offset>> {
        let mut offsets: Vec<Offset> = self
            .fs
            .list_dir(&self.dir)?
            .iter()
            .filter_map(|n| snapshot_offset(n))
            .collect();
        offsets.sort_unstable();
        Ok(offsets)
    }

    fn remove_snapshot(&self, offset: Offset) -> io::Result<()> {
        self.fs
            .remove_file(&self.dir.join(snapshot_file_name(offset)))
    }

    /// After retention moved the log start: snapshots older than the newest
    /// one at or below it describe nothing the log still needs.
    pub(crate) fn remove_snapshots_below_start(&mut self) -> Result<(), Failure> {
        let start = self.log_start_offset();
        let removed = self.snapshot_offsets().and_then(|offsets| {
            let keep = offsets.iter().rev().find(|&&o| o <= start).copied();
            for &o in offsets.iter().filter(|&&o| keep.is_some_and(|k| o < k)) {
                self.remove_snapshot(o)?;
            }
            Ok(())
        });
        self.io(removed)
    }

    /// Rebuilds the producer state for the current log: snapshots above the
    /// log end go (a truncation or a torn tail made them describe records
    /// that are gone), the newest readable one at or below it is loaded (an
    /// unreadable one is removed and the next older tried), and the batches
    /// from it to the log end are replayed. With no snapshot, the whole log
    /// is replayed.
    pub(crate) fn rebuild_producer_state(&mut self) -> io::Result<()> {
        let end = self.log_end_offset();
        let offsets = self.snapshot_offsets()?;
        let mut loaded = None;
        for &offset in offsets.iter().rev() {
            if offset > end {
                self.remove_snapshot(offset)?;
                continue;
            }
            let path = self.dir.join(snapshot_file_name(offset));
            match decode_snapshot(&read_all(self.fs.as_ref(), &path)?) {
                Ok(state) => {
                    loaded = Some((offset, state));
                    break;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "unreadable producer-state snapshot: removed, replaying from an older point");
                    self.remove_snapshot(offset)?;
                }
            }
        }
        let (from, state) = loaded.unwrap_or_default();
        self.producers = state;
        self.replay_producers(from.max(self.log_start_offset()))
    }

    /// Records every producer batch from `from` to the log end.
    fn replay_producers(&mut self, from: Offset) -> io::Result<()> {
        let size_max = self.config.batch_size_max();
        let mut batches = Vec::new();
        for segment in self.segments.values().filter(|s| s.next_offset > from) {
            let start = match segment.find(from, size_max)? {
                Ok(Some((position, _))) if segment.base_offset < from => position,
                _ => 0,
            };
            let file = segment.log_handle();
            let mut cursor = Cursor::new(file.as_ref(), start, segment.size, 64 * 1024);
            // Recovery already cut anything torn or corrupt: a bad batch
            // here ends the walk, as it ends the log.
            while let Ok(Some((_, header, _))) = cursor.next_batch(size_max, false)? {
                if header.base_offset < from {
                    continue;
                }
                if let Ok(Some(batch)) = ProducerBatch::from_header(&header) {
                    batches.push(batch);
                }
            }
        }
        batches.iter().for_each(|b| self.producers.record(b));
        Ok(())
    }
}
