//! Opening a log: the recovery scan.
//!
//! 0. An unfinished full truncation (its intent record is there) is redone.
//! 1. Leftover `*.tmp` files (interrupted checkpoint writes), `*.cleaned`
//!    files (an interrupted compaction rewrite, rolled back) and index files
//!    without a segment are removed.
//! 2. Segments that end at or below the recovery point were synced before it
//!    was written: their headers are walked (offsets, epochs, timestamps,
//!    index) but their CRCs are not recomputed. Later segments are walked with
//!    every batch's CRC-32C checked, and their epochs are re-derived from the
//!    batches themselves.
//! 3. The first torn or corrupt batch, a batch whose offset or epoch does not
//!    follow, or a segment that does not start where the previous one ended,
//!    cuts the log there: that file is truncated and every later segment is
//!    deleted, each loudly logged with file, position, base offset and reason.
//! 4. The epoch cache is cut to the surviving log, the high watermark clamped
//!    into it, the checked segments synced, and the recovery point moved to
//!    the log end.

use crate::checkpoint;
use crate::compaction::CLEANED_SUFFIX;
use crate::epoch_cache::LeaderEpochCache;
use crate::error::OpenError;
use crate::fs::{read_all, FileSystem};
use crate::full_truncation::{remove_intent, restart_files, TRUNCATE_FULLY_CHECKPOINT};
use crate::log::{EPOCH_CHECKPOINT, HW_CHECKPOINT, RECOVERY_POINT_CHECKPOINT};
use crate::segment::{self, Segment};
use crate::{LeaderEpoch, Log, LogConfig, Offset};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it as described in
    /// `docs/log-format.md`.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<Log, OpenError> {
        config.validate()?;
        let dir = dir.into();
        recover(fs, dir.clone(), config).map_err(|source| OpenError::Io { path: dir, source })
    }
}

/// `<20 digits>.log` -> base offset.
fn segment_base(name: &str, suffix: &str) -> Option<Offset> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads a checkpoint file; a missing one is `None`, a malformed one is
/// logged and treated as missing.
fn read_checkpoint<T>(
    fs: &dyn FileSystem,
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, checkpoint::MalformedCheckpoint>,
) -> io::Result<Option<T>> {
    if !fs.exists(path) {
        return Ok(None);
    }
    match parse(&read_all(fs, path)?) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring malformed checkpoint");
            Ok(None)
        }
    }
}

/// Removes interrupted checkpoint writes, the leftovers of an interrupted
/// segment rewrite by the cleaner (`*.cleaned`: the rename that commits a
/// rewrite consumes its file, so a leftover one was never swapped in) and
/// index files with no segment; returns the segments' base offsets in order.
fn tidy_dir(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<Offset>> {
    let names = fs.list_dir(dir)?;
    let mut bases: Vec<Offset> = names
        .iter()
        .filter_map(|n| segment_base(n, ".log"))
        .collect();
    bases.sort_unstable();
    for name in &names {
        let orphan_index = segment_base(name, ".index").is_some_and(|b| !bases.contains(&b));
        let leftover = name.ends_with(".tmp") || name.ends_with(CLEANED_SUFFIX);
        if leftover || orphan_index {
            tracing::info!(file = %name, dir = %dir.display(), "removing leftover file");
            fs.remove_file(&dir.join(name))?;
        }
    }
    Ok(bases)
}

fn recover(fs: Arc<dyn FileSystem>, dir: PathBuf, config: LogConfig) -> io::Result<Log> {
    fs.create_dir_all(&dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs.sync_dir(parent)?; // the partition directory's own entry
    }
    finish_full_truncation(fs.as_ref(), &dir, &config)?;
    let bases = tidy_dir(fs.as_ref(), &dir)?;
    let saved_epochs = read_checkpoint(fs.as_ref(), &dir.join(EPOCH_CHECKPOINT), |b| {
        LeaderEpochCache::from_checkpoint(b)
    })?;
    // Without a trusted epoch cache every batch is read to rebuild it.
    let recovery_point = match &saved_epochs {
        Some(_) => read_checkpoint(fs.as_ref(), &dir.join(RECOVERY_POINT_CHECKPOINT), |b| {
            checkpoint::parse_offset(b)
        })?
        .unwrap_or(0),
        None => 0,
    };
    let mut epochs = saved_epochs.clone().unwrap_or_default();
    let mut segments = BTreeMap::new();
    let mut checked = Vec::new();
    let mut last_epoch: Option<LeaderEpoch> = None;
    let mut cut_from = bases.len();
    for (i, &base) in bases.iter().enumerate() {
        if let Some(previous) = segments
            .values()
            .next_back()
            .map(|s: &Segment| s.next_offset)
        {
            if previous != base {
                tracing::error!(dir = %dir.display(), base, previous,
                    "segment does not start where the previous one ended: it and all later segments are dropped");
                cut_from = i;
                break;
            }
        }
        let trusted = bases.get(i + 1).is_some_and(|&next| next <= recovery_point);
        if !trusted {
            epochs.truncate_from_end(base);
        }
        let loaded = Segment::load(
            fs.as_ref(),
            &dir,
            base,
            config.index_interval_bytes,
            config.batch_size_max(),
            !trusted,
            |h| {
                let epoch = h.partition_leader_epoch;
                if last_epoch.is_some_and(|last| epoch < last) || epoch < 0 {
                    return Err(format!("leader epoch {epoch} after epoch {last_epoch:?}"));
                }
                last_epoch = Some(epoch);
                if !trusted {
                    epochs
                        .assign(epoch, h.base_offset)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            },
        )?;
        if !trusted {
            checked.push(base);
        }
        let stopped = loaded.stop.is_some();
        if let Some(stop) = loaded.stop {
            let later = bases.len() - i - 1;
            tracing::error!(
                path = %loaded.segment.log_path.display(), position = stop.position,
                base_offset = ?stop.base_offset, reason = %stop.reason, later_segments_dropped = later,
                "torn or corrupt batch: log truncated here"
            );
            if later > 0 {
                tracing::error!(dir = %dir.display(), "corruption before the log's tail: records after it are gone from this replica and must be re-fetched");
            }
            cut_from = i + 1;
        }
        segments.insert(base, loaded.segment);
        if stopped {
            break;
        }
    }
    drop_segments(fs.as_ref(), &dir, &bases[cut_from..])?;
    if segments.is_empty() {
        segments.insert(
            0,
            Segment::create(fs.as_ref(), &dir, 0, config.index_interval_bytes)?,
        );
        fs.sync_dir(&dir)?;
    }
    finish(fs, dir, config, segments, epochs, saved_epochs, &checked)
}

/// Redoes a full truncation a crash interrupted (its intent record is
/// still there), so the log opens as its new empty self
/// (`full_truncation.rs`).
fn finish_full_truncation(fs: &dyn FileSystem, dir: &Path, config: &LogConfig) -> io::Result<()> {
    let path = dir.join(TRUNCATE_FULLY_CHECKPOINT);
    if !fs.exists(&path) {
        return Ok(());
    }
    if let Some(offset) = read_checkpoint(fs, &path, checkpoint::parse_offset)? {
        tracing::warn!(dir = %dir.display(), offset,
            "finishing a full truncation that a crash interrupted");
        restart_files(fs, dir, offset, config)?;
    }
    remove_intent(fs, dir)
}

fn drop_segments(fs: &dyn FileSystem, dir: &Path, bases: &[Offset]) -> io::Result<()> {
    for &base in bases {
        fs.remove_file(&dir.join(segment::log_file_name(base)))?;
        let index = dir.join(segment::index_file_name(base));
        if fs.exists(&index) {
            fs.remove_file(&index)?;
        }
    }
    if !bases.is_empty() {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// Step 4: epoch cache, high watermark, syncing what was checked, recovery
/// point.
fn finish(
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<Offset, Segment>,
    mut epochs: LeaderEpochCache,
    saved_epochs: Option<LeaderEpochCache>,
    checked: &[Offset],
) -> io::Result<Log> {
    for base in checked {
        if let Some(segment) = segments.get(base) {
            segment.sync()?; // it may only have reached the page cache
        }
    }
    let start = segments.values().next().map_or(0, |s| s.base_offset);
    let end = segments.values().next_back().map_or(0, |s| s.next_offset);
    epochs.truncate_from_end(end);
    epochs.truncate_from_start(start);
    let saved_hw = read_checkpoint(
        fs.as_ref(),
        &dir.join(HW_CHECKPOINT),
        checkpoint::parse_offset,
    )?;
    if let Some(hw) = saved_hw.filter(|&hw| hw > end) {
        tracing::warn!(dir = %dir.display(), hw, log_end_offset = end,
            "high watermark checkpoint is above the recovered log end: records below it were lost");
    }
    let high_watermark = saved_hw.unwrap_or(start).clamp(start, end);
    let mut log = Log {
        fs,
        dir,
        config,
        segments,
        epochs,
        high_watermark,
        // What recovery would read (no file: the log start), so a new
        // log's untouched high watermark is never written.
        checkpointed_high_watermark: Some(saved_hw.unwrap_or(start))
            .filter(|&hw| hw == high_watermark),
        flushed_offset: end,
        truncations: Default::default(),
        offline: None,
        producers: Default::default(),
        sealed: Vec::new(),
        checkpoints: Default::default(),
    };
    log.rebuild_producer_state()?;
    if saved_epochs.as_ref() != Some(&log.epochs) {
        log.write_epoch_checkpoint().map_err(failure_to_io)?;
    }
    log.write_offset_checkpoint(RECOVERY_POINT_CHECKPOINT, end)
        .map_err(failure_to_io)?;
    log.check_invariants();
    Ok(log)
}

fn failure_to_io(f: crate::Failure) -> io::Error {
    match f {
        crate::Failure::Io(e) => e,
        crate::Failure::Offline(why) => io::Error::other(why),
    }
}
