//! Reading whole batches: planned under the log's lock, read outside it.
//!
//! A read has two halves. [`Log::plan_read`] works from memory only (the
//! offsets, the segment map, the segment's index) and captures what the file
//! read needs: the segment's file handle, where its index says to start
//! walking, and the segment's length at that moment. [`ReadPlan::execute`]
//! then walks to the batch holding the offset, reads, and checks every
//! batch's CRC-32C, touching nothing but the file handle. [`Log::read`] runs
//! both halves under `&self`; [`crate::SharedLog::read`] runs the second after
//! releasing the log's lock, so a fetch never waits for an append's write
//! and an append never waits for a fetch's pread.
//!
//! Why the second half needs no lock: the bytes below a segment's length
//! change only by a truncation. Appends write past the length; a roll seals
//! the file; retention unlinks it and compaction renames a rewritten file
//! over it, and in both cases the open handle still reads the old file,
//! which holds the same offsets as it did when the read was planned. A
//! truncation (`truncate_to`, `truncate_fully_and_start_at`) bumps the log's
//! truncation count before it changes a file, so `SharedLog::read` checks
//! the count after its read and plans again if it moved: whatever a read
//! raced with a truncation (a short file, a torn batch, bytes appended after
//! the cut) is never returned.

use crate::batch::{self, BatchHeader};
use crate::error::{Corruption, ReadError};
use crate::fs::FileHandle;
use crate::segment::{find_from, ScanStop};
use crate::{Log, Offset};
use std::path::PathBuf;
use std::sync::Arc;

/// Whole batches read from the log, every one CRC-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated RecordBatch v2 bytes, as a Fetch response carries them.
    pub bytes: Vec<u8>,
    /// Offset after the last batch returned: where the next read starts.
    pub next_offset: Offset,
    /// Segment file the bytes came from, and their byte range in it: what a
    /// zero-copy send of the file range needs.
    pub file_range: Option<(PathBuf, std::ops::Range<u64>)>,
}

/// The first half of a read.
#[derive(Debug)]
pub(crate) enum Planned {
    /// Answered from memory: there is nothing to read.
    Done(ReadResult),
    /// The file read still to do.
    Read(ReadPlan),
}

/// What the file half of a read needs, captured under the lock.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    file: Arc<dyn FileHandle>,
    /// The segment file's path, for errors and `file_range`.
    path: PathBuf,
    /// A batch boundary at or before the batch holding `from_offset` (the
    /// index's entry): where the walk starts.
    scan_from: u64,
    /// The segment's length when planned: whole batches lie below it.
    end: u64,
    from_offset: Offset,
    max_bytes: usize,
    max_offset: Offset,
    size_max: usize,
    /// The log's truncation count when planned.
    pub(crate) truncations: u64,
}

impl Log {
    /// Reads whole batches starting with the one holding `from_offset`, up to
    /// `max_bytes`, never including a batch that ends at or above
    /// `max_offset` (the high watermark, for consumers). The first batch is
    /// returned whole even if larger than `max_bytes`, so a reader always
    /// makes progress (KIP-74). Reads stay within one segment. Every batch's
    /// CRC-32C is checked first; a corrupt one is never returned.
    pub fn read(
        &self,
        from_offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
    ) -> Result<ReadResult, ReadError> {
        match self.plan_read(from_offset, max_bytes, max_offset)? {
            Planned::Done(result) => Ok(result),
            Planned::Read(plan) => plan.execute(),
        }
    }

    /// The in-memory half of [`read`](Self::read): the range check, the
    /// segment holding `from_offset` and where its index says to start.
    pub(crate) fn plan_read(
        &self,
        from_offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
    ) -> Result<Planned, ReadError> {
        self.check_online()?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if from_offset < start || from_offset > end {
            return Err(ReadError::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let empty = Planned::Done(ReadResult {
            bytes: Vec::new(),
            next_offset: from_offset,
            file_range: None,
        });
        // The segment holding `from_offset`: the last one starting at or
        // below it, or the next one when it ends at or before it.
        let Some(mut segment) = self.segments.range(..=from_offset).next_back().map(|e| e.1) else {
            return Ok(empty);
        };
        if from_offset >= segment.next_offset {
            match self.segments.range(from_offset + 1..).next() {
                Some((_, next)) => segment = next,
                None => return Ok(empty),
            }
        }
        if from_offset >= segment.next_offset {
            return Ok(empty);
        }
        Ok(Planned::Read(ReadPlan {
            file: segment.log_handle(),
            path: segment.log_path.clone(),
            scan_from: segment.scan_start(from_offset),
            end: segment.size,
            from_offset,
            max_bytes,
            max_offset,
            size_max: self.config.batch_size_max(),
            truncations: self.truncation_count(),
        }))
    }

    /// The first batch, below `max_offset`, holding a record whose timestamp
    /// may be at least `timestamp` (its `maxTimestamp` is): ListOffsets by
    /// time reads the records of this one batch for the exact offset.
    pub fn find_by_timestamp(
        &self,
        timestamp: i64,
        max_offset: Offset,
    ) -> Result<Option<ReadResult>, ReadError> {
        self.check_online()?;
        let size_max = self.config.batch_size_max();
        for segment in self.segments.values() {
            if segment.max_timestamp.is_none_or(|max| max < timestamp) {
                continue;
            }
            match segment.find_timestamp(timestamp, size_max)? {
                Ok(Some((_, header))) if header.next_offset() <= max_offset => {
                    return self.read(header.base_offset, 1, max_offset).map(Some);
                }
                Ok(_) => return Ok(None),
                Err(stop) => {
                    return Err(Corruption {
                        path: segment.log_path.clone(),
                        position: stop.position,
                        base_offset: stop.base_offset,
                        reason: stop.reason,
                    }
                    .into())
                }
            }
        }
        Ok(None)
    }
}

impl ReadPlan {
    /// The file half of a read: walk to the batch holding the offset, read,
    /// check. Touches only the file handle.
    pub(crate) fn execute(&self) -> Result<ReadResult, ReadError> {
        let corrupt = |stop: ScanStop| Corruption {
            path: self.path.clone(),
            position: stop.position,
            base_offset: stop.base_offset,
            reason: stop.reason,
        };
        let empty = ReadResult {
            bytes: Vec::new(),
            next_offset: self.from_offset,
            file_range: None,
        };
        let file = self.file.as_ref();
        let found = find_from(
            file,
            self.scan_from,
            self.end,
            self.from_offset,
            self.size_max,
        )?;
        let (position, first) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(empty),
            Err(stop) => return Err(corrupt(stop).into()),
        };
        if first.next_offset() > self.max_offset {
            return Ok(empty);
        }
        let want = (self.max_bytes.max(first.size) as u64).min(self.end - position) as usize;
        let mut bytes = vec![0; want];
        file.read_exact_at(&mut bytes, position)?;
        let (len, next_offset) = check_batches(&bytes, self.size_max, self.max_offset).map_err(
            |(at, base_offset, reason)| {
                corrupt(ScanStop {
                    position: position + at as u64,
                    base_offset,
                    reason,
                })
            },
        )?;
        bytes.truncate(len);
        Ok(ReadResult {
            bytes,
            next_offset,
            file_range: Some((self.path.clone(), position..position + len as u64)),
        })
    }
}

/// Checks the batches at the start of `buf` and returns the length of the
/// whole, valid ones that end below `max_offset`, and the offset after them.
/// The first batch is known to fit. A corrupt first batch is an error; a
/// corrupt later one just ends the result (the next read reports it).
fn check_batches(
    buf: &[u8],
    size_max: usize,
    max_offset: Offset,
) -> Result<(usize, Offset), (usize, Option<Offset>, String)> {
    let mut position = 0;
    let mut next_offset = None;
    while position < buf.len() {
        let header: BatchHeader = match batch::parse_header(&buf[position..], size_max) {
            Ok(h) => h,
            Err(e) if position == 0 => return Err((0, None, e.to_string())),
            Err(_) => break,
        };
        let end = position + header.size;
        if end > buf.len() || header.next_offset() > max_offset {
            break;
        }
        if let Err(e) = batch::check_crc(&header, &buf[position..end]) {
            if position == 0 {
                return Err((0, Some(header.base_offset), e.to_string()));
            }
            break;
        }
        next_offset = Some(header.next_offset());
        position = end;
    }
    Ok((position, next_offset.unwrap_or_default()))
}
