//! Errors, one enum per operation, so callers branch on what can happen.

use crate::batch::BatchError;
use crate::config::ConfigError;
use crate::epoch_cache::EpochRegression;
use crate::producer_state::{InvalidProducerBatch, SequenceError};
use crate::Offset;
use std::io;
use std::path::PathBuf;

/// Corrupt bytes found on disk, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt log data in {path} at byte {position} (base offset {base_offset:?}): {reason}")]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the bad batch in it.
    pub position: u64,
    /// The bad batch's `baseOffset`, when its header was readable.
    pub base_offset: Option<Offset>,
    /// What is wrong.
    pub reason: String,
}

/// An I/O error made the log stop accepting work until it is reopened (and
/// recovered), as Kafka takes a failed log directory offline: after a failed
/// write or fsync the file's state is unknown.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// This operation hit the error.
    #[error("log I/O error: {0}")]
    Io(#[from] io::Error),
    /// An earlier operation did.
    #[error("log is offline after an earlier I/O error: {0}")]
    Offline(String),
}

/// Why `open` failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The directory or a file in it could not be read or repaired.
    #[error("cannot open log in {path}: {source}")]
    Io {
        /// The partition directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Why `append` failed. Only `Storage` leaves the log offline.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// No batches were given.
    #[error("empty append")]
    Empty,
    /// A batch failed validation; nothing was written.
    #[error("invalid batch at byte {position} of the request: {source}")]
    InvalidBatch {
        /// Where in the appended bytes the bad batch starts.
        position: usize,
        /// What is wrong with it.
        source: BatchError,
    },
    /// The batches together exceed a segment.
    #[error("append of {size} bytes exceeds the segment size {max}")]
    TooLarge {
        /// Bytes given.
        size: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The leader epoch is older than the log's latest.
    #[error(transparent)]
    EpochRegression(#[from] EpochRegression),
    /// Replicated batches do not continue the log: offsets must start at the
    /// log end and be contiguous.
    #[error("replicated batch at offset {got} does not continue the log at {expected}")]
    OffsetMismatch {
        /// The offset the next batch must start at.
        expected: Offset,
        /// The batch's base offset.
        got: Offset,
    },
    /// An idempotent batch's producer fields are malformed (INVALID_RECORD).
    #[error(transparent)]
    InvalidProducerBatch(#[from] InvalidProducerBatch),
    /// The producer rules refused the batch (its Kafka code is the
    /// variant's); nothing was written.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] Failure),
}

/// Why `read` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The offset is below the log start or above the log end.
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        offset: Offset,
        /// First offset held.
        log_start_offset: Offset,
        /// Offset after the last one held.
        log_end_offset: Offset,
    },
    /// The bytes on disk are corrupt; nothing of them is returned.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] Failure),
}

/// Why `truncate_to` failed.
#[derive(Debug, thiserror::Error)]
pub enum TruncateError {
    /// The offset is below the log start: there is nothing to keep.
    #[error("cannot truncate to {offset}: below log start offset {log_start_offset}")]
    BelowLogStart {
        /// Offset asked for.
        offset: Offset,
        /// First offset held.
        log_start_offset: Offset,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] Failure),
}

/// Why a compaction pass ([`crate::Log::clean`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// A batch in the cleanable range is corrupt; nothing was rewritten from
    /// the segment holding it on. The log stays online: reads report the
    /// same corruption.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// Storage failed: the log is offline until reopened, which finishes or
    /// rolls back a half-done segment rewrite.
    #[error(transparent)]
    Storage(#[from] Failure),
}

impl From<io::Error> for AppendError {
    fn from(e: io::Error) -> Self {
        AppendError::Storage(Failure::Io(e))
    }
}

impl From<io::Error> for TruncateError {
    fn from(e: io::Error) -> Self {
        TruncateError::Storage(Failure::Io(e))
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Storage(Failure::Io(e))
    }
}
