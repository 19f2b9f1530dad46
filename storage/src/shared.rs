//! A log shared between threads, applying the flush policy with group commit.
//!
//! Appends take the log's lock only to write. With `FlushPolicy::Always` the
//! appender then waits until a sync covers its last offset: the first waiter
//! to find no sync running becomes the syncer, captures the log end, calls
//! fdatasync *outside* the lock, and wakes everyone; all appends written
//! before it captured the end share that one fdatasync. Nothing is
//! acknowledged before its bytes are synced.

use crate::error::{AppendError, CleanError, Failure};
use crate::{AppendInfo, CleanStats, FlushPolicy, LeaderEpoch, Log, Offset};
use std::sync::{Condvar, Mutex, MutexGuard};

/// A [`Log`] behind a mutex, with group commit.
#[derive(Debug)]
pub struct SharedLog {
    log: Mutex<Log>,
    /// Whether a group-commit sync is in flight.
    syncing: Mutex<Syncing>,
    synced: Condvar,
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
            let (file, target, truncations) = self.lock().sync_target();
            let result = file.sync_data();
            let marked = self.lock().mark_flushed(target, truncations, result);
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
