//! A log shared between threads, applying the flush policy with group commit.
//!
//! Appends take the log's lock only to write. With `FlushPolicy::Always` the
//! appender then waits until a sync covers its last offset: the first waiter
//! to find no sync running becomes the syncer, captures the log end, calls
//! fdatasync *outside* the lock, and wakes everyone; all appends written
//! before it captured the end share that one fdatasync. Nothing is
//! acknowledged before its bytes are synced. The syncer also pays the
//! syncs segment rolls owe (`sealed.rs`), so no roll syncs under the lock.
//!
//! Reads take the lock only to plan (in memory) and read the file after
//! releasing it (`read.rs` says why that is safe).

use crate::error::{AppendError, CleanError, Failure, ReadError, TruncateError};
use crate::read::Planned;
use crate::{AppendInfo, CleanStats, FlushPolicy, LeaderEpoch, Log, Offset, ReadResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Reads planned again when a truncation raced them, before one is done
/// under the lock.
const READ_ATTEMPTS: usize = 3;

/// A [`Log`] behind a mutex, with group commit.
#[derive(Debug)]
pub struct SharedLog {
    log: Mutex<Log>,
    /// Whether a group-commit sync is in flight.
    syncing: Mutex<Syncing>,
    synced: Condvar,
    /// The log's truncation count, read without the lock after a read.
    truncations: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Syncing {
    in_flight: bool,
    /// Wall-clock ms of the last completed sync, for `FlushPolicy::Interval`.
    last_sync_ms: Option<i64>,
}

impl SharedLog {
    /// Wraps an open log.
    pub fn new(log: Log) -> Self {
        SharedLog {
            truncations: log.truncations.clone(),
            log: Mutex::new(log),
            syncing: Mutex::new(Syncing::default()),
            synced: Condvar::new(),
        }
    }

    /// The log, for everything but durable appends. Do not hold the guard
    /// across a sync.
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn syncing(&self) -> MutexGuard<'_, Syncing> {
        self.syncing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unwraps the log.
    pub fn into_inner(self) -> Log {
        self.log.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends as [`Log::append`], then returns only once the flush policy is
    /// met: with `Always`, after the appended bytes are synced.
    pub fn append(
        &self,
        batches: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        let info = self.append_unsynced(batches, leader_epoch, now_ms)?;
        self.commit(&info, now_ms)?;
        Ok(info)
    }

    /// The first half of [`append`](Self::append): writes, in call order,
    /// without waiting for the flush policy. A caller that pipelines
    /// requests appends each in order, then [`commit`](Self::commit)s them
    /// concurrently, so they share fdatasyncs.
    pub fn append_unsynced(
        &self,
        batches: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, AppendError> {
        self.lock().append(batches, leader_epoch, now_ms)
    }

    /// Whether the flush policy is already met for `info` (with `Always`:
    /// its bytes are synced; otherwise nothing more to wait for).
    pub fn is_committed(&self, info: &AppendInfo) -> bool {
        let log = self.lock();
        match log.config.flush {
            FlushPolicy::Always => log.flushed_offset() > info.last_offset,
            FlushPolicy::Interval(_) => false,
            FlushPolicy::Never => true,
        }
    }

    /// The second half of [`append`](Self::append): returns once the flush
    /// policy is met for `info` (with `Always`, once its bytes are synced).
    pub fn commit(&self, info: &AppendInfo, now_ms: i64) -> Result<(), Failure> {
        let policy = self.lock().config.flush;
        match policy {
            FlushPolicy::Always => self.wait_durable(info.last_offset + 1, now_ms),
            FlushPolicy::Interval(_) => self.flush_if_due(now_ms),
            FlushPolicy::Never => Ok(()),
        }
    }

    /// Reads as [`Log::read`], with the same contract, holding the log's
    /// lock only to plan: the pread and the CRC checks run after it is
    /// released, so reads and appends do not wait for each other's I/O. A
    /// read that a truncation raced (the count moved while it read) is
    /// planned again; after [`READ_ATTEMPTS`] such races it reads under the
    /// lock.
    pub fn read(
        &self,
        from_offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
    ) -> Result<ReadResult, ReadError> {
        for _ in 0..READ_ATTEMPTS {
            let plan = match self.lock().plan_read(from_offset, max_bytes, max_offset)? {
                Planned::Done(result) => return Ok(result),
                Planned::Read(plan) => plan,
            };
            let result = plan.execute();
            // A truncation bumps the count before it touches a file: an
            // unchanged count means the bytes read were the log's all along.
            if self.truncations.load(Ordering::SeqCst) == plan.truncations {
                return result;
            }
        }
        self.lock().read(from_offset, max_bytes, max_offset)
    }

    /// Restarts the log empty at `offset`, as
    /// [`Log::truncate_fully_and_start_at`].
    pub fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<(), TruncateError> {
        self.lock().truncate_fully_and_start_at(offset)
    }

    /// One compaction pass, [`Log::clean`], under the log's lock: appends
    /// wait until it is done. Group-commit syncs in flight are unaffected
    /// (the cleaner never touches the active segment).
    pub fn clean(&self, now_ms: i64) -> Result<CleanStats, CleanError> {
        self.lock().clean(now_ms)
    }

    /// With `FlushPolicy::Interval`, syncs when the interval has passed since
    /// the last sync. Call it from a timer too, so idle logs get synced.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), Failure> {
        let (interval, end) = {
            let log = self.lock();
            match log.config.flush {
                FlushPolicy::Interval(d) => (d.as_millis() as i64, log.log_end_offset()),
                _ => return Ok(()),
            }
        };
        let last = self.syncing().last_sync_ms;
        if last.is_none_or(|last| now_ms - last >= interval) {
            self.wait_durable(end, now_ms)?;
        }
        Ok(())
    }

    /// Returns once every offset below `end` is synced, sharing syncs with
    /// concurrent callers.
    pub fn wait_durable(&self, end: Offset, now_ms: i64) -> Result<(), Failure> {
        loop {
            {
                let log = self.lock();
                log.check_online()?;
                if log.flushed_offset() >= end.min(log.log_end_offset()) {
                    return Ok(());
                }
            }
            let mut syncing = self.syncing();
            if syncing.in_flight {
                // The syncer clears `in_flight` and notifies under this same
                // mutex, so the wake-up cannot be missed.
                drop(self.synced.wait(syncing));
                continue;
            }
            syncing.in_flight = true;
            drop(syncing);
            let plan = self.lock().sync_plan();
            let result = plan.execute();
            let marked = self.lock().mark_flushed(&plan, result);
            let mut syncing = self.syncing();
            syncing.in_flight = false;
            if marked.is_ok() {
                syncing.last_sync_ms = Some(now_ms);
            }
            self.synced.notify_all();
            drop(syncing);
            marked?;
        }
    }
}
