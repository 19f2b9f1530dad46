//! One segment: `<base_offset>.log` (concatenated RecordBatch v2 bytes) and
//! its derived `<base_offset>.index`.
//!
//! The segment knows nothing about epochs or the rest of the log: it appends
//! already stamped batches, finds the batch holding an offset, hands out
//! whole batches, truncates, and walks its own file to recover.

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::fs::{FileHandle, FileSystem};
use crate::index::{self, IndexEntry, SparseIndexer};
use crate::Offset;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes read at a time when a scan needs batch bodies.
pub(crate) const SCAN_CHUNK: usize = 1 << 20;

/// Name of the segment file for `base_offset`, as Kafka names it.
pub fn log_file_name(base_offset: Offset) -> String {
    format!("{base_offset:020}.log")
}

/// Name of the offset index file for `base_offset`.
pub fn index_file_name(base_offset: Offset) -> String {
    format!("{base_offset:020}.index")
}

/// Where and why a walk over a segment file stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    /// Byte position of the first bad batch.
    pub position: u64,
    /// Its `baseOffset`, when the header could be read.
    pub base_offset: Option<Offset>,
    /// What is wrong with it.
    pub reason: String,
}

/// Walks the batches of a file in order, reading ahead in chunks.
pub struct Cursor<'a> {
    file: &'a dyn FileHandle,
    end: u64,
    position: u64,
    buf: Vec<u8>,
    buf_start: u64,
    read_ahead: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `file[position..end]`; `read_ahead` is the smallest read.
    pub fn new(file: &'a dyn FileHandle, position: u64, end: u64, read_ahead: usize) -> Self {
        Cursor {
            file,
            end,
            position,
            buf: Vec::new(),
            buf_start: position,
            read_ahead,
        }
    }

    /// Position of the next batch.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Makes `buf` cover `[position, position + n)`.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.position >= self.buf_start && self.position + n as u64 <= have_end {
            return Ok(());
        }
        let want = (n.max(self.read_ahead) as u64).min(self.end - self.position) as usize;
        self.buf.resize(want, 0);
        self.buf_start = self.position;
        self.file.read_exact_at(&mut self.buf, self.position)
    }

    /// The next batch's position, header and (when `body` is set) bytes.
    /// `Ok(Ok(None))` at a clean end; `Ok(Err(_))` at a torn or bad batch.
    #[allow(clippy::type_complexity)]
    pub fn next_batch(
        &mut self,
        size_max: usize,
        body: bool,
    ) -> io::Result<Result<Option<(u64, BatchHeader, &[u8])>, ScanStop>> {
        let remaining = self.end - self.position;
        if remaining == 0 {
            return Ok(Ok(None));
        }
        let position = self.position;
        let stop = |base_offset, reason: String| ScanStop {
            position,
            base_offset,
            reason,
        };
        if remaining < HEADER_LEN as u64 {
            return Ok(Err(stop(None, format!("torn header: {remaining} bytes"))));
        }
        self.fill(HEADER_LEN)?;
        let at = (position - self.buf_start) as usize;
        let header = match batch::parse_header(&self.buf[at..], size_max) {
            Ok(h) => h,
            Err(e) => return Ok(Err(stop(None, e.to_string()))),
        };
        if header.size as u64 > remaining {
            let reason = format!("torn batch: {} of {} bytes", remaining, header.size);
            return Ok(Err(stop(Some(header.base_offset), reason)));
        }
        let mut bytes: &[u8] = &[];
        if body {
            self.fill(header.size)?;
            let at = (position - self.buf_start) as usize;
            bytes = &self.buf[at..at + header.size];
            if let Err(e) = batch::check_crc(&header, bytes) {
                return Ok(Err(stop(Some(header.base_offset), e.to_string())));
            }
        }
        self.position += header.size as u64;
        Ok(Ok(Some((position, header, bytes))))
    }
}

/// Position and header of the batch holding `offset` (its last offset is
/// `>= offset`) in `file[start..end]`, walking headers from `start` (a batch
/// boundary at or before it); `None` when the walk reaches `end` first.
#[allow(clippy::type_complexity)]
pub(crate) fn find_from(
    file: &dyn FileHandle,
    start: u64,
    end: u64,
    offset: Offset,
    size_max: usize,
) -> io::Result<Result<Option<(u64, BatchHeader)>, ScanStop>> {
    let mut cursor = Cursor::new(file, start, end, 4 * 1024);
    loop {
        match cursor.next_batch(size_max, false)? {
            Ok(Some((p, h, _))) if h.last_offset() >= offset => return Ok(Ok(Some((p, h)))),
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(Ok(None)),
            Err(stop) => return Ok(Err(stop)),
        }
    }
}

/// What a segment walk found: batches are handed to a visitor, which may
/// reject one (wrong offset, epoch going back) by returning a reason.
pub struct Loaded {
    /// The segment, cut at the first bad batch if there was one.
    pub segment: Segment,
    /// Set when the file held a bad batch: everything from it on was cut.
    pub stop: Option<ScanStop>,
}

/// One segment's files and what is known about them.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first batch this segment holds or will hold.
    pub base_offset: Offset,
    /// Offset after the last batch.
    pub next_offset: Offset,
    /// Bytes in the `.log` file.
    pub size: u64,
    /// Largest `maxTimestamp` of its batches (retention.ms uses it).
    pub max_timestamp: Option<i64>,
    /// When the first batch was appended in this process, or its timestamp
    /// when loaded from disk (segment.ms rolls from it).
    pub roll_anchor_ms: Option<i64>,
    /// The `.log` file's path, for error messages.
    pub log_path: PathBuf,
    index_path: PathBuf,
    log: Arc<dyn FileHandle>,
    index_file: Arc<dyn FileHandle>,
    index: Vec<u8>,
    indexer: SparseIndexer,
}

/// The `.log` and `.index` paths of the segment at `base_offset`.
fn paths(dir: &Path, base_offset: Offset) -> (PathBuf, PathBuf) {
    (
        dir.join(log_file_name(base_offset)),
        dir.join(index_file_name(base_offset)),
    )
}

impl Segment {
    /// A segment with nothing known about its contents yet.
    fn empty(
        base_offset: Offset,
        (log_path, log): (PathBuf, Arc<dyn FileHandle>),
        (index_path, index_file): (PathBuf, Arc<dyn FileHandle>),
        index_interval_bytes: u32,
    ) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            max_timestamp: None,
            roll_anchor_ms: None,
            log_path,
            index_path,
            log,
            index_file,
            index: Vec::new(),
            indexer: SparseIndexer::new(index_interval_bytes),
        }
    }

    /// Creates empty segment files at `base_offset` (the caller syncs the
    /// directory).
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u32,
    ) -> io::Result<Segment> {
        let (log_path, index_path) = paths(dir, base_offset);
        let log = fs.open(&log_path, true)?;
        log.set_len(0)?;
        let index_file = fs.open(&index_path, true)?;
        index_file.set_len(0)?;
        Ok(Segment::empty(
            base_offset,
            (log_path, log),
            (index_path, index_file),
            index_interval_bytes,
        ))
    }

    /// Opens an existing segment and walks it: headers only, or with every
    /// CRC-32C checked when `verify_crc`. The offset index is rebuilt from the
    /// walk and rewritten if the file differs (it is derived state). A bad
    /// batch, or one `visit` rejects, cuts the file there (made durable).
    pub fn load(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u32,
        size_max: usize,
        verify_crc: bool,
        mut visit: impl FnMut(&BatchHeader) -> Result<(), String>,
    ) -> io::Result<Loaded> {
        let (log_path, index_path) = paths(dir, base_offset);
        let log = fs.open(&log_path, false)?;
        let index_file = fs.open(&index_path, true)?;
        let mut segment = Segment::empty(
            base_offset,
            (log_path, log.clone()),
            (index_path, index_file),
            index_interval_bytes,
        );
        let len = log.len()?;
        let read_ahead = if verify_crc { SCAN_CHUNK } else { HEADER_LEN };
        let mut cursor = Cursor::new(log.as_ref(), 0, len, read_ahead);
        let stop = loop {
            let (position, header) = match cursor.next_batch(size_max, verify_crc)? {
                Ok(None) => break None,
                Ok(Some((p, h, _))) => (p, h),
                Err(stop) => break Some(stop),
            };
            let expected = segment.next_offset;
            let rejected = if header.base_offset != expected {
                Some(format!(
                    "base offset {} where {expected} was expected",
                    header.base_offset
                ))
            } else {
                visit(&header).err()
            };
            if let Some(reason) = rejected {
                break Some(ScanStop {
                    position,
                    base_offset: Some(header.base_offset),
                    reason,
                });
            }
            segment.note_batch(position, &header);
        };
        segment.roll_anchor_ms = segment.max_timestamp;
        if let Some(stop) = &stop {
            log.set_len(stop.position)?;
            log.sync_data()?;
        }
        segment.rewrite_index_if_changed(fs)?;
        Ok(Loaded { segment, stop })
    }

    /// Updates size, next offset, timestamps and index for a batch written
    /// at `position`. Kafka's rule: a batch is indexed when more than
    /// `index.interval.bytes` were written since the last indexed batch.
    fn note_batch(&mut self, position: u64, header: &BatchHeader) -> Option<IndexEntry> {
        let entry = self.indexer.note(
            self.base_offset,
            position,
            header.last_offset(),
            header.size,
        );
        if let Some(e) = entry {
            self.index.extend_from_slice(&e.encode());
        }
        self.size = position + header.size as u64;
        self.next_offset = header.next_offset();
        self.max_timestamp = Some(
            self.max_timestamp
                .map_or(header.max_timestamp, |m| m.max(header.max_timestamp)),
        );
        entry
    }

    fn rewrite_index_if_changed(&mut self, fs: &dyn FileSystem) -> io::Result<()> {
        let on_disk = crate::fs::read_all(fs, &self.index_path)?;
        if on_disk != self.index {
            tracing::info!(path = %self.index_path.display(), "offset index rebuilt");
            self.index_file.set_len(0)?;
            self.index_file.write_all_at(&self.index, 0)?;
            self.index_file.sync_data()?;
        }
        Ok(())
    }

    /// Appends stamped batches (`bytes`, described by `headers` with their
    /// ranges in `bytes`). Nothing is synced.
    pub fn append(
        &mut self,
        bytes: &[u8],
        headers: &[(BatchHeader, std::ops::Range<usize>)],
        now_ms: i64,
    ) -> io::Result<()> {
        let start = self.size;
        let index_len = self.index.len();
        self.log.write_all_at(bytes, start)?;
        for (header, range) in headers {
            self.note_batch(start + range.start as u64, header);
        }
        if self.index.len() > index_len {
            self.index_file
                .write_all_at(&self.index[index_len..], index_len as u64)?;
        }
        self.roll_anchor_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// fdatasync of the log and index files.
    pub fn sync(&self) -> io::Result<()> {
        self.log.sync_data()?;
        self.index_file.sync_data()
    }

    /// A handle to the log file, for syncing outside the log's lock.
    pub fn log_handle(&self) -> Arc<dyn FileHandle> {
        self.log.clone()
    }

    /// A handle to the index file, for syncing outside the log's lock.
    pub fn index_handle(&self) -> Arc<dyn FileHandle> {
        self.index_file.clone()
    }

    /// Whether nothing was ever appended.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Position and header of the batch holding `offset` (its last offset is
    /// `>= offset`), or `None` when `offset` is past the segment's end.
    pub fn find(
        &self,
        offset: Offset,
        size_max: usize,
    ) -> io::Result<Result<Option<(u64, BatchHeader)>, ScanStop>> {
        if offset >= self.next_offset {
            return Ok(Ok(None));
        }
        let start = self.scan_start(offset);
        find_from(self.log.as_ref(), start, self.size, offset, size_max)
    }

    /// Where a walk to the batch holding `offset` starts: the position of
    /// the index's largest entry at or below it. In memory only.
    pub(crate) fn scan_start(&self, offset: Offset) -> u64 {
        let relative = (offset.max(self.base_offset) - self.base_offset) as u32;
        u64::from(index::lookup(&self.index, relative))
    }

    /// Position and header of the first batch whose `maxTimestamp` is at
    /// least `timestamp` (a header walk: there is no time index yet).
    pub fn find_timestamp(
        &self,
        timestamp: i64,
        size_max: usize,
    ) -> io::Result<Result<Option<(u64, BatchHeader)>, ScanStop>> {
        let mut cursor = Cursor::new(self.log.as_ref(), 0, self.size, 4 * 1024);
        loop {
            match cursor.next_batch(size_max, false)? {
                Ok(Some((p, h, _))) if h.max_timestamp >= timestamp => return Ok(Ok(Some((p, h)))),
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(Ok(None)),
                Err(stop) => return Ok(Err(stop)),
            }
        }
    }

    /// Reads `len` bytes at `position`.
    pub fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.log.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    /// Cuts the segment before the batch at `position`, whose base offset is
    /// `next_offset`, and makes the cut durable.
    pub fn truncate_at(&mut self, position: u64, next_offset: Offset) -> io::Result<()> {
        self.log.set_len(position)?;
        self.log.sync_data()?;
        let keep = self
            .index
            .chunks_exact(index::ENTRY_LEN)
            .take_while(|e| u64::from(u32::from_be_bytes([e[4], e[5], e[6], e[7]])) < position)
            .count();
        self.index.truncate(keep * index::ENTRY_LEN);
        self.index_file.set_len(self.index.len() as u64)?;
        self.index_file.sync_data()?;
        let last_indexed = index::last_entry(&self.index).map_or(0, |e| u64::from(e.position));
        self.indexer.reset(position - last_indexed);
        self.size = position;
        self.next_offset = next_offset;
        if position == 0 {
            self.max_timestamp = None;
            self.roll_anchor_ms = None;
        }
        Ok(())
    }

    /// Removes both files (the caller syncs the directory).
    pub fn delete(&self, fs: &dyn FileSystem) -> io::Result<()> {
        fs.remove_file(&self.log_path)?;
        match fs.remove_file(&self.index_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
