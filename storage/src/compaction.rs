//! Log compaction (`cleanup.policy=compact`): the cleaner's I/O.
//!
//! [`Log::clean`] runs one pass: it builds an [`plan::OffsetMap`] over the
//! cleanable range, then rewrites each segment of that range in which
//! something changes ([`plan::SegmentCleaner`] decides what). The cleanable
//! range is made of whole segments lying below `min(high_watermark, active
//! segment base)`: the active segment and anything a consumer cannot read
//! yet are never touched.
//!
//! A segment `<base>.log` is replaced crash-safely, through the
//! [`FileSystem`](crate::fs::FileSystem) seam only:
//!
//! 1. write `<base>.log.cleaned` and `<base>.index.cleaned`, fdatasync both;
//! 2. rename `<base>.log.cleaned` over `<base>.log` (the commit point), then
//!    `<base>.index.cleaned` over `<base>.index`;
//! 3. fsync the directory.
//!
//! A crash before the rename leaves the old segment and `.cleaned` leftovers,
//! which recovery removes; after it, the new segment (complete: it was synced
//! first). The index is rebuilt on open whenever it does not match its log.
//! `docs/log-format.md` ("Compaction") has the full crash analysis.

pub mod plan;

use crate::error::{CleanError, Corruption};
use crate::fs::FileHandle;
use crate::index::SparseIndexer;
use crate::segment::{self, Cursor, Segment, SCAN_CHUNK};
use crate::{batch, Log, Offset};
use plan::{CleanRules, OffsetMap, SegmentCleaner};
use std::path::PathBuf;
use std::sync::Arc;

/// Suffix of a segment's files while the cleaner writes their replacement.
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// What one cleaning pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// End of the range the pass covered: every segment below it was
    /// considered, nothing at or above it was read or changed.
    pub cleanable_end_offset: Offset,
    /// Distinct keys in the cleanable range.
    pub keys: usize,
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed (superseded ones and expired tombstones).
    pub records_removed: u64,
    /// Of those, tombstones past `delete.retention.ms`.
    pub tombstones_removed: u64,
    /// Runs of batches that lost every record and became one empty batch.
    pub batches_emptied: u64,
    /// Bytes of the cleanable segments before the pass.
    pub bytes_before: u64,
    /// Bytes of the cleanable segments after the pass.
    pub bytes_after: u64,
}

impl CleanStats {
    fn add(&mut self, other: &CleanStats) {
        self.records_removed += other.records_removed;
        self.tombstones_removed += other.tombstones_removed;
        self.batches_emptied += other.batches_emptied;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

impl Log {
    /// Where the cleanable range ends: the base offset of the segment holding
    /// `min(high_watermark, active segment base)`. Every segment below it
    /// lies wholly below the high watermark and is not the active one.
    pub fn cleanable_end_offset(&self) -> Offset {
        let limit = self.high_watermark.min(self.log_end_segment_base());
        self.segments
            .range(..=limit)
            .next_back()
            .map_or(self.log_start_offset(), |(&base, _)| base)
    }

    fn log_end_segment_base(&self) -> Offset {
        *self
            .segments
            .keys()
            .next_back()
            .expect("a log always has a segment")
    }

    /// One compaction pass at `now_ms`, when `cleanup.policy` includes
    /// `compact` (otherwise nothing happens): for every key, only its latest
    /// record below [`cleanable_end_offset`](Self::cleanable_end_offset)
    /// survives, and a latest record that is a tombstone survives until its
    /// batch's `maxTimestamp + delete.retention.ms < now_ms`. Offsets,
    /// the log end, the epoch cache and the high watermark do not change.
    /// Runs under `&mut self`: appends wait for the whole pass.
    pub fn clean(&mut self, now_ms: i64) -> Result<CleanStats, CleanError> {
        self.check_online()?;
        let mut stats = CleanStats {
            cleanable_end_offset: self.cleanable_end_offset(),
            ..CleanStats::default()
        };
        if !self.config.cleanup_policy.compacts() {
            return Ok(stats);
        }
        let rules = CleanRules {
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms.as_millis() as i64,
        };
        let bases: Vec<Offset> = self
            .segments
            .range(..stats.cleanable_end_offset)
            .map(|(&b, _)| b)
            .collect();
        let mut map = OffsetMap::new();
        for &base in &bases {
            self.walk(base, &mut |bytes, header| map.observe(bytes, header))?;
        }
        stats.keys = map.len();
        for &base in &bases {
            if let Some(segment_stats) = self.clean_segment(base, &map, rules)? {
                stats.segments_rewritten += 1;
                stats.add(&segment_stats);
            }
        }
        self.check_invariants();
        Ok(stats)
    }

    /// Calls `visit` with every batch of the segment at `base`, CRC-checked.
    fn walk(
        &mut self,
        base: Offset,
        visit: &mut dyn FnMut(&[u8], &batch::BatchHeader),
    ) -> Result<(), CleanError> {
        let segment = &self.segments[&base];
        let (file, size, path) = (segment.log_handle(), segment.size, segment.log_path.clone());
        let size_max = self.config.batch_size_max();
        let mut cursor = Cursor::new(file.as_ref(), 0, size, SCAN_CHUNK);
        loop {
            let next = cursor.next_batch(size_max, true);
            match self.io(next)? {
                Ok(Some((_, header, bytes))) => visit(bytes, &header),
                Ok(None) => return Ok(()),
                Err(stop) => {
                    return Err(CleanError::Corrupt(Corruption {
                        path,
                        position: stop.position,
                        base_offset: stop.base_offset,
                        reason: stop.reason,
                    }))
                }
            }
        }
    }

    /// Rewrites the segment at `base` if cleaning changes it; returns what
    /// it removed, or `None` when nothing changed.
    fn clean_segment(
        &mut self,
        base: Offset,
        map: &OffsetMap,
        rules: CleanRules,
    ) -> Result<Option<CleanStats>, CleanError> {
        let mut dry = SegmentCleaner::new(map, rules);
        let mut sink = Vec::new();
        self.walk(base, &mut |bytes, header| {
            dry.push(bytes, header, &mut sink);
            sink.clear();
        })?;
        dry.finish(&mut sink);
        if !dry.changed() {
            return Ok(None);
        }
        let stats = dry.stats().clone();
        let written = self.write_cleaned(base, map, rules)?;
        let swapped = written.and_then(|cleaned| self.swap_in(base, cleaned));
        self.io(swapped)?;
        Ok(Some(stats))
    }

    /// Step 1: the cleaned `.log` and `.index` files, both synced.
    fn write_cleaned(
        &mut self,
        base: Offset,
        map: &OffsetMap,
        rules: CleanRules,
    ) -> Result<std::io::Result<Cleaned>, CleanError> {
        let cleaned = Cleaned::paths(&self.dir, base);
        let opened = self.fs.open(&cleaned.log, true).and_then(|file| {
            file.set_len(0)?;
            Ok(file)
        });
        let file = self.io(opened)?;
        let mut writer = CleanedWriter {
            file,
            base,
            position: 0,
            indexer: SparseIndexer::new(self.config.index_interval_bytes),
            index: Vec::new(),
            error: None,
        };
        let mut cleaner = SegmentCleaner::new(map, rules);
        let mut out = Vec::new();
        self.walk(base, &mut |bytes, header| {
            cleaner.push(bytes, header, &mut out);
            writer.write(&mut out);
        })?;
        cleaner.finish(&mut out);
        writer.write(&mut out);
        Ok(writer.finish(self.fs.as_ref(), cleaned))
    }

    /// Steps 2 and 3: renames over the old files, directory fsync, and the
    /// in-memory segment reloaded from the new files.
    fn swap_in(&mut self, base: Offset, cleaned: Cleaned) -> std::io::Result<()> {
        let log_path = self.dir.join(segment::log_file_name(base));
        let index_path = self.dir.join(segment::index_file_name(base));
        self.fs.rename(&cleaned.log, &log_path)?;
        self.fs.rename(&cleaned.index, &index_path)?;
        self.fs.sync_dir(&self.dir)?;
        let old = &self.segments[&base];
        let (next_offset, roll_anchor_ms) = (old.next_offset, old.roll_anchor_ms);
        let loaded = Segment::load(
            self.fs.as_ref(),
            &self.dir,
            base,
            self.config.index_interval_bytes,
            self.config.batch_size_max(),
            false,
            |_| Ok(()),
        )?;
        if loaded.stop.is_some() || loaded.segment.next_offset != next_offset {
            return Err(std::io::Error::other(format!(
                "cleaned segment {base} does not reload as written"
            )));
        }
        let mut segment = loaded.segment;
        segment.roll_anchor_ms = roll_anchor_ms;
        self.segments.insert(base, segment);
        Ok(())
    }
}

/// The paths of a segment's replacement files.
struct Cleaned {
    log: PathBuf,
    index: PathBuf,
}

impl Cleaned {
    fn paths(dir: &std::path::Path, base: Offset) -> Cleaned {
        let name = |n: String| dir.join(format!("{n}{CLEANED_SUFFIX}"));
        Cleaned {
            log: name(segment::log_file_name(base)),
            index: name(segment::index_file_name(base)),
        }
    }
}

/// Streams a cleaned segment to its `.cleaned` file, building its index
/// as [`Segment`] would.
struct CleanedWriter {
    file: Arc<dyn FileHandle>,
    base: Offset,
    position: u64,
    indexer: SparseIndexer,
    index: Vec<u8>,
    /// The first write error; later writes are skipped.
    error: Option<std::io::Error>,
}

impl CleanedWriter {
    /// Writes the whole batches in `out` and empties it.
    fn write(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() || self.error.is_some() {
            out.clear();
            return;
        }
        let mut at = 0;
        while at < out.len() {
            let header = batch::parse_header(&out[at..], usize::MAX >> 1)
                .expect("the cleaner emits whole batches");
            let position = self.position + at as u64;
            if let Some(e) =
                self.indexer
                    .note(self.base, position, header.last_offset(), header.size)
            {
                self.index.extend_from_slice(&e.encode());
            }
            at += header.size;
        }
        if let Err(e) = self.file.write_all_at(out, self.position) {
            self.error = Some(e);
        }
        self.position += out.len() as u64;
        out.clear();
    }

    /// Syncs the log file, writes and syncs the index file.
    fn finish(self, fs: &dyn crate::fs::FileSystem, cleaned: Cleaned) -> std::io::Result<Cleaned> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.file.sync_data()?;
        let index = fs.open(&cleaned.index, true)?;
        index.set_len(0)?;
        index.write_all_at(&self.index, 0)?;
        index.sync_data()?;
        Ok(cleaned)
    }
}
