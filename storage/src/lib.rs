//! One partition's log on disk, in Kafka's layout and format.
//!
//! A directory `<topic>-<partition>/` holds segments of Kafka RecordBatch v2
//! bytes (`<base_offset>.log`), a sparse offset index per segment
//! (`<base_offset>.index`), the `leader-epoch-checkpoint`, and the
//! `high-watermark-checkpoint` and `recovery-point-checkpoint`.
//! `docs/log-format.md` gives the byte layout, the fsync order and the
//! recovery algorithm.
//!
//! Topics with `cleanup.policy=compact` are compacted by [`Log::clean`]
//! (`docs/log-format.md`, "Compaction").
//!
//! This crate knows nothing about leaders, networks or async runtimes: the
//! leader epoch to stamp and the current time are parameters. All I/O goes
//! through the [`fs::FileSystem`] seam.
//!
//! ```
//! use storage::{batch, Log, LogConfig, fs::OsFs};
//! use std::sync::Arc;
//!
//! let dir = tempfile::tempdir()?;
//! let mut log = Log::open(Arc::new(OsFs), dir.path().join("orders-0"), LogConfig::default())?;
//! let appended = log.append(&batch::build_batch(&[b"hello", b"world"], 0), 1, 0)?;
//! assert_eq!((appended.base_offset, appended.last_offset), (0, 1));
//! log.flush()?;
//! let read = log.read(0, 1 << 20, log.log_end_offset())?;
//! assert_eq!(read.next_offset, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod epoch_cache;
pub mod error;
pub mod fs;
mod full_truncation;
pub mod index;
mod log;
pub mod producer_state;
mod producers;
mod read;
pub mod record;
mod recovery;
mod sealed;
pub mod segment;
mod shared;

pub use compaction::CleanStats;
pub use config::{CleanupPolicy, ConfigError, FlushPolicy, LogConfig};
pub use error::{
    AppendError, CleanError, Corruption, Failure, OpenError, ReadError, TruncateError,
};
pub use log::{AppendInfo, Log};
pub use producers::{snapshot_file_name, SNAPSHOT_SUFFIX};
pub use read::ReadResult;
pub use shared::SharedLog;

/// A position in a partition's log: the offset of one record.
pub type Offset = i64;

/// A leader epoch, as stored in `partitionLeaderEpoch`. Baton's start at 1.
pub type LeaderEpoch = i32;
