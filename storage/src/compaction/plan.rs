//! What compaction keeps: the pure part of the cleaner, over batch bytes.
//!
//! Two passes over the cleanable range (whole segments below
//! `min(high_watermark, active segment base)`), oldest batch first:
//!
//! 1. [`OffsetMap::observe`] every batch: the offset of the latest record of
//!    each key.
//! 2. Feed each segment's batches to a [`SegmentCleaner`], which emits the
//!    cleaned segment's bytes. A record survives when it has no key, or it
//!    is the latest of its key and not an expired tombstone. A batch keeps
//!    its `baseOffset`, `partitionLeaderEpoch`, `lastOffsetDelta` and every
//!    other header field; only its records, `batchLength`, `recordsCount`
//!    and CRC change. A run of batches that lost every record, in one
//!    leader epoch, becomes one empty batch spanning the run's offsets, so
//!    offsets stay contiguous, the segment keeps its end offset, and the
//!    leader-epoch cache derived from the batches does not change.
//!
//! Batches the cleaner cannot read record by record (compressed,
//! transactional, control, or with malformed records under a good CRC) are
//! *opaque*: kept byte for byte, their keys unknown. Since an opaque batch
//! may hold an older value of any key, a tombstone is removed only when no
//! opaque batch lies below it.

use super::CleanStats;
use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::record::{self, RecordSpan};
use crate::Offset;
use std::collections::HashMap;

/// When a pass runs and how long tombstones live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanRules {
    /// The time of the pass, milliseconds.
    pub now_ms: i64,
    /// `delete.retention.ms`. A tombstone is removed once
    /// `batch maxTimestamp + delete_retention_ms < now_ms`.
    pub delete_retention_ms: i64,
}

impl CleanRules {
    /// Whether a tombstone in a batch with this `maxTimestamp` has outlived
    /// `delete.retention.ms`.
    pub fn tombstone_expired(&self, max_timestamp: i64) -> bool {
        max_timestamp.saturating_add(self.delete_retention_ms) < self.now_ms
    }
}

/// Key → offset of its latest record over the cleanable range, and where
/// the first opaque batch starts.
#[derive(Debug, Clone, Default)]
pub struct OffsetMap {
    latest: HashMap<Vec<u8>, Offset>,
    first_opaque_offset: Option<Offset>,
    last_observed: Option<Offset>,
}

/// The records of a batch, or `None` when it is opaque.
fn readable_spans(bytes: &[u8], header: &BatchHeader) -> Option<Vec<RecordSpan>> {
    let attributes = batch::attributes(bytes);
    if batch::compression(attributes) != 0
        || batch::is_transactional(attributes)
        || batch::is_control(attributes)
    {
        return None;
    }
    match record::spans(bytes, header) {
        Ok(spans) => Some(spans),
        Err(reason) => {
            tracing::warn!(base_offset = header.base_offset, %reason,
                "malformed records under a valid CRC: the cleaner keeps this batch as it is");
            None
        }
    }
}

impl OffsetMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes every keyed record of one batch (`bytes`, exactly the batch).
    /// Batches must come in offset order.
    pub fn observe(&mut self, bytes: &[u8], header: &BatchHeader) {
        assert!(
            self.last_observed.is_none_or(|l| header.base_offset > l),
            "batches must be observed in offset order"
        );
        self.last_observed = Some(header.last_offset());
        let Some(spans) = readable_spans(bytes, header) else {
            self.first_opaque_offset.get_or_insert(header.base_offset);
            return;
        };
        for span in spans {
            if let Some(key) = span.key {
                let offset = header.base_offset + i64::from(span.offset_delta);
                self.latest.insert(bytes[key].to_vec(), offset);
            }
        }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no key was seen.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Whether the record of `key` at `offset` survives.
    fn keeps(
        &self,
        key: &[u8],
        offset: Offset,
        tombstone: bool,
        rules: &CleanRules,
        max_ts: i64,
    ) -> Keep {
        match self.latest.get(key) {
            Some(&latest) if latest > offset => Keep::No,
            _ if tombstone
                && rules.tombstone_expired(max_ts)
                && self.first_opaque_offset.is_none_or(|o| o > offset) =>
            {
                Keep::NoTombstone
            }
            _ => Keep::Yes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Yes,
    No,
    NoTombstone,
}

/// Batches that lost every record, in one epoch, not yet emitted.
#[derive(Debug)]
struct Run {
    base_offset: Offset,
    last_offset: Offset,
    epoch: i32,
    /// The run's bytes when it is one empty batch, to tell whether the
    /// filler emitted for it changes anything.
    lone_empty: Option<Vec<u8>>,
}

/// Cleans one segment's batches, in order, into the cleaned segment's
/// bytes.
#[derive(Debug)]
pub struct SegmentCleaner<'m> {
    map: &'m OffsetMap,
    rules: CleanRules,
    run: Option<Run>,
    changed: bool,
    stats: CleanStats,
}

impl<'m> SegmentCleaner<'m> {
    /// A cleaner applying `map` (built over the whole cleanable range) and
    /// `rules`.
    pub fn new(map: &'m OffsetMap, rules: CleanRules) -> Self {
        SegmentCleaner {
            map,
            rules,
            run: None,
            changed: false,
            stats: CleanStats::default(),
        }
    }

    /// Takes the next batch (`bytes`, exactly the batch) and appends what
    /// replaces it, if anything is ready, to `out`.
    pub fn push(&mut self, bytes: &[u8], header: &BatchHeader, out: &mut Vec<u8>) {
        self.stats.bytes_before += bytes.len() as u64;
        let Some(spans) = readable_spans(bytes, header) else {
            self.flush_run(out);
            self.emit(out, bytes);
            return;
        };
        let mut kept = Vec::new();
        let mut count = 0;
        for span in &spans {
            let keep = match &span.key {
                None => Keep::Yes,
                Some(key) => self.map.keeps(
                    &bytes[key.clone()],
                    header.base_offset + i64::from(span.offset_delta),
                    span.value.is_none(),
                    &self.rules,
                    header.max_timestamp,
                ),
            };
            match keep {
                Keep::Yes => {
                    kept.extend_from_slice(&bytes[span.whole.clone()]);
                    count += 1;
                }
                Keep::No => self.stats.records_removed += 1,
                Keep::NoTombstone => {
                    self.stats.records_removed += 1;
                    self.stats.tombstones_removed += 1;
                }
            }
        }
        if count == spans.len() && count > 0 {
            self.flush_run(out);
            self.emit(out, bytes);
        } else if count > 0 {
            self.flush_run(out);
            self.changed = true;
            self.emit(out, &batch::rebuild(bytes, &kept, count as i32));
        } else {
            self.extend_run(bytes, header, out);
        }
    }

    /// Emits what is still pending; call after the segment's last batch.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush_run(out);
    }

    /// Whether the output differs from the input so far.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// What this segment's pass removed.
    pub fn stats(&self) -> &CleanStats {
        &self.stats
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.stats.bytes_after += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }

    fn extend_run(&mut self, bytes: &[u8], header: &BatchHeader, out: &mut Vec<u8>) {
        let epoch = header.partition_leader_epoch;
        match &mut self.run {
            Some(run) if run.epoch == epoch => {
                assert_eq!(
                    run.last_offset + 1,
                    header.base_offset,
                    "batches are contiguous"
                );
                run.last_offset = header.last_offset();
                run.lone_empty = None;
            }
            _ => {
                self.flush_run(out);
                let already_empty = header.records_count == 0 && bytes.len() == HEADER_LEN;
                self.run = Some(Run {
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    epoch,
                    lone_empty: already_empty.then(|| bytes.to_vec()),
                });
            }
        }
    }

    fn flush_run(&mut self, out: &mut Vec<u8>) {
        let Some(run) = self.run.take() else {
            return;
        };
        let filler = batch::build_empty_batch(run.base_offset, run.last_offset, run.epoch);
        if run.lone_empty.as_deref() != Some(filler.as_slice()) {
            self.changed = true;
            self.stats.batches_emptied += 1;
        }
        self.emit(out, &filler);
    }
}

#[cfg(test)]
mod tests;
