//! A replica's log operations other than the leader's append: a follower's
//! appends and truncations, reads, the lookups other brokers and clients
//! ask for, the purgatory registrations, and the timed maintenance.

use super::Partition;
use crate::purgatory::Waiter;
use storage::producer_state::ProducerState;
use storage::{
    AppendInfo, CleanStats, FlushPolicy, LeaderEpoch, Log, Offset, ReadError, ReadResult,
};

/// Which timed tasks are due in one maintenance pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Due {
    /// Write the high-watermark checkpoint.
    pub checkpoint: bool,
    /// Apply retention (log.retention.check.interval.ms).
    pub retention: bool,
    /// Expire idle producers older than this many ms.
    pub expire_producers: Option<u64>,
    /// One log-cleaner pass, if the partition compacts.
    pub clean: bool,
}

impl Partition {
    /// As a follower: appends the leader's batches unchanged (its offsets
    /// and epochs) without waiting for the flush policy. The write goes to
    /// the page cache, so it runs on the calling task, as the leader's
    /// appends do; [`make_durable`](Self::make_durable) waits for the sync,
    /// and the fetcher reports it to the leader when it completes.
    pub fn append_as_follower(&self, records: &[u8], now_ms: i64) -> anyhow::Result<AppendInfo> {
        let info = self.log.lock().append_replicated(records, now_ms)?;
        self.appended.wake_all();
        Ok(info)
    }

    /// Returns once the flush policy is met below `end` (`always`: synced,
    /// sharing syncs with concurrent callers). Blocking.
    pub fn make_durable(&self, end: Offset, now_ms: i64) -> Result<(), storage::Failure> {
        match self.flush {
            FlushPolicy::Always => self.log.wait_durable(end, now_ms),
            FlushPolicy::Interval(_) => self.log.flush_if_due(now_ms),
            FlushPolicy::Never => Ok(()),
        }
    }

    /// A follower's fetch position in one look at the log: (log start, log
    /// end, durable end).
    pub fn follower_position(&self) -> (Offset, Offset, Offset) {
        let log = self.log.lock();
        (
            log.log_start_offset(),
            log.log_end_offset(),
            durable_end(&log, self.flush),
        )
    }

    /// What this replica holds durably, as it reports to its leader: with
    /// `always`, its synced end; otherwise its log end (Kafka's rule).
    pub fn durable_end(&self) -> Offset {
        durable_end(&self.log.lock(), self.flush)
    }

    /// Removes every record at or above `offset` (a follower's divergent
    /// tail, KIP-101). Blocking (it syncs).
    pub fn truncate_to(&self, offset: Offset) -> Result<(), storage::TruncateError> {
        self.log.lock().truncate_to(offset)?;
        self.wake_all();
        Ok(())
    }

    /// Drops the whole log and restarts it, empty, at `offset` (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose log end fell below its
    /// leader's log start. Blocking (it syncs).
    pub fn truncate_fully_and_start_at(
        &self,
        offset: Offset,
    ) -> Result<(), storage::TruncateError> {
        self.log.truncate_fully_and_start_at(offset)?;
        self.wake_all();
        Ok(())
    }

    /// Whole batches from `from_offset`, as `storage::Log::read`. Blocking.
    pub fn read(
        &self,
        from_offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
    ) -> Result<ReadResult, ReadError> {
        self.log.read(from_offset, max_bytes, max_offset)
    }

    /// Whether a read from `offset` touches only the active segment, the
    /// bytes just written (in the page cache): such a read costs less than
    /// the thread hop that would keep it off the runtime's workers.
    pub fn reads_hot(&self, offset: Offset) -> bool {
        offset >= self.log.lock().active_base_offset()
    }

    /// A consumer's read: like [`read`](Self::read), but without the
    /// batches the log cleaner emptied (a compacted log keeps them so its
    /// offsets stay contiguous for followers). Many clients stall on a
    /// response holding only record-less batches; a gap before the next
    /// batch is what they expect of a compacted topic. Reads on past
    /// emptied batches, up to `max_bytes`. Blocking.
    pub fn read_records(
        &self,
        from: Offset,
        max_bytes: usize,
        limit: Offset,
    ) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            // The first read also reports an offset out of range.
            let read = self.read(next, max_bytes - out.len(), limit)?;
            if read.next_offset <= next {
                break;
            }
            next = read.next_offset;
            if out.is_empty() && batches(&read.bytes).all(|(_, records)| records > 0) {
                return Ok(read.bytes); // the common case: no copy
            }
            keep_nonempty_batches(&read.bytes, &mut out);
            if !out.is_empty() || next >= limit || out.len() >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Where `epoch` ends in this log (OffsetForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.log.lock().end_offset_for_epoch(epoch)
    }

    /// The latest leader epoch in the log, if any.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.log.lock().latest_epoch()
    }

    /// The log end offset.
    pub fn log_end_offset(&self) -> Offset {
        self.log.lock().log_end_offset()
    }

    /// The log start offset.
    pub fn log_start_offset(&self) -> Offset {
        self.log.lock().log_start_offset()
    }

    /// The first batch below `max_offset` that may hold a record with a
    /// timestamp at or after `timestamp` (ListOffsets by time).
    pub fn find_by_timestamp(
        &self,
        timestamp: i64,
        max_offset: Offset,
    ) -> Result<Option<ReadResult>, ReadError> {
        self.log.lock().find_by_timestamp(timestamp, max_offset)
    }

    /// Reads the producers' state as of the log end.
    pub fn with_producers<T>(&self, f: impl FnOnce(&ProducerState) -> T) -> T {
        f(self.log.lock().producer_state())
    }

    /// Registers `waiter` for the next move of the log end.
    pub fn watch_appends(&self, waiter: &Waiter) {
        self.appended.watch(waiter);
    }

    /// Registers `waiter` for the next move of the high watermark.
    pub fn watch_high_watermark(&self, waiter: &Waiter) {
        self.hw_moved.watch(waiter);
    }

    /// Wakes every request waiting on this partition, so each re-checks
    /// it: leadership changed, the log was cut, or the replica is going.
    pub fn wake_all(&self) {
        self.appended.wake_all();
        self.hw_moved.wake_all();
    }

    /// The timed work that is `due`, at wall-clock `now_ms`: interval
    /// flushes, the leader's HW (its own flushed end may have moved),
    /// checkpoints, retention, producer expiry, compaction. Errors are
    /// logged here, where the partition is known. Blocking.
    pub fn maintain(&self, now_ms: i64, due: Due) {
        let (topic, index) = (&self.topic, self.index);
        if let Err(e) = self.log.flush_if_due(now_ms) {
            tracing::error!(topic, partition = index, error = %e, "flush failed");
        }
        self.advance_high_watermark();
        {
            let mut log = self.log.lock();
            if due.checkpoint {
                let _ = log.checkpoint_high_watermark();
            }
            if due.retention {
                match log.apply_retention(now_ms) {
                    Ok(0) => {}
                    Ok(deleted) => tracing::debug!(
                        topic,
                        partition = index,
                        deleted,
                        log_start_offset = log.log_start_offset(),
                        "retention deleted segments"
                    ),
                    Err(e) => {
                        tracing::error!(topic, partition = index, error = %e, "retention failed")
                    }
                }
            }
            if let Some(expiry) = due.expire_producers {
                let expired = log.remove_expired_producers(now_ms, expiry);
                if expired > 0 {
                    tracing::info!(
                        topic,
                        partition = index,
                        expired,
                        "idle producers expired (producer.id.expiration.ms)"
                    );
                }
            }
        }
        if due.clean && self.compact {
            match self.log.clean(now_ms) {
                Ok(stats) if stats.segments_rewritten > 0 => log_cleaned(self, &stats),
                Ok(_) => {}
                Err(e) => tracing::error!(topic, partition = index, error = %e,
                    "log cleaning failed"),
            }
        }
    }

    /// A clean close: synced, high watermark and producer state
    /// checkpointed, so the next open recovers nothing. Blocking.
    pub fn close(&self) {
        let mut log = self.log.lock();
        let closed = log.flush().and_then(|_| log.checkpoint_high_watermark());
        if let Err(e) = closed.and_then(|()| log.write_producer_snapshot()) {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e,
                "clean close failed");
        }
    }
}

fn log_cleaned(p: &Partition, stats: &CleanStats) {
    tracing::info!(topic = %p.topic, partition = p.index, ?stats, "log cleaned");
}

/// Each batch of `bytes` as (byte range, records count).
fn batches(bytes: &[u8]) -> impl Iterator<Item = (std::ops::Range<usize>, i32)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let h = storage::batch::parse_header(bytes.get(pos..)?, usize::MAX >> 1).ok()?;
        let range = pos..(pos + h.size).min(bytes.len());
        pos += h.size;
        Some((range, h.records_count))
    })
}

/// Appends to `out` the batches of `bytes` that hold records.
fn keep_nonempty_batches(bytes: &[u8], out: &mut Vec<u8>) {
    for (range, records) in batches(bytes) {
        if records > 0 {
            out.extend_from_slice(&bytes[range]);
        }
    }
}

/// What `log` holds durably under `flush`: the synced end with `always`,
/// the log end otherwise.
pub(super) fn durable_end(log: &Log, flush: FlushPolicy) -> Offset {
    match flush {
        FlushPolicy::Always => log.flushed_offset(),
        _ => log.log_end_offset(),
    }
}
