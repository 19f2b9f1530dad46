//! Kafka RecordBatch v2 framing: header parsing, validation and stamping.
//!
//! Pure code over byte slices. The log stores batches exactly as Kafka's wire
//! and disk format has them, so this module only reads the 61-byte header,
//! checks the CRC-32C and overwrites the two fields that lie outside the CRC
//! (`baseOffset` and `partitionLeaderEpoch`).
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            (assigned by the log, outside the CRC)
//!      8     4  batchLength           (bytes after this field)
//!     12     4  partitionLeaderEpoch  (assigned by the log, outside the CRC)
//!     16     1  magic                 (must be 2)
//!     17     4  crc                   (CRC-32C of bytes 21..end)
//!     21     2  attributes
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61     -  records (possibly compressed)
//! ```

use crate::Offset;

pub use crate::record::{records, RecordError, RecordView};

/// Size of the fixed RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before and including `batchLength`: the part not counted by it.
pub const LOG_OVERHEAD: usize = 12;
/// Where the CRC-covered part of a batch starts.
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;

/// Why a byte range is not a valid RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than `batchLength` announces.
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batchLength` is negative, smaller than a header, or above the limit.
    #[error("invalid batch length {length} (allowed {min}..={max})")]
    InvalidLength {
        /// The announced total length, header included.
        length: i64,
        /// Smallest valid total length.
        min: usize,
        /// Largest accepted total length.
        max: usize,
    },
    /// Not a v2 batch (v0 and v1 message sets are not stored).
    #[error("unsupported magic {0} (only 2 is stored)")]
    UnsupportedMagic(i8),
    /// The CRC-32C over the batch does not match its header.
    #[error("crc mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// `recordsCount` and `lastOffsetDelta` disagree, or are out of range.
    #[error("records count {records_count} inconsistent with lastOffsetDelta {last_offset_delta}")]
    InconsistentCount {
        /// `recordsCount` from the header.
        records_count: i32,
        /// `lastOffsetDelta` from the header.
        last_offset_delta: i32,
    },
}

/// The header fields the log needs, read from a batch's first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// `baseOffset`.
    pub base_offset: Offset,
    /// Total size of the batch in bytes, `LOG_OVERHEAD + batchLength`.
    pub size: usize,
    /// `partitionLeaderEpoch` as stored (-1 or 0 when a client sent none).
    pub partition_leader_epoch: i32,
    /// `magic`.
    pub magic: i8,
    /// `crc`.
    pub crc: u32,
    /// `lastOffsetDelta`.
    pub last_offset_delta: i32,
    /// `maxTimestamp`, milliseconds.
    pub max_timestamp: i64,
    /// `recordsCount`.
    pub records_count: i32,
    /// `attributes` (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// `producerId`; -1 for a batch from a producer that is not idempotent.
    pub producer_id: i64,
    /// `producerEpoch`; -1 with no producer id.
    pub producer_epoch: i16,
    /// `baseSequence` of the first record; -1 with no producer id.
    pub base_sequence: i32,
}

impl BatchHeader {
    /// Offset of the last record in the batch. Saturates rather than
    /// overflow on a corrupt `baseOffset` read from disk.
    pub fn last_offset(&self) -> Offset {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().saturating_add(1)
    }
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

/// Reads the header at the start of `bytes` and checks its framing: enough
/// bytes for a header, a total length within `HEADER_LEN..=size_max`, magic 2,
/// a non-negative `lastOffsetDelta`.
/// The CRC and the records are not looked at; `bytes` may hold less than the
/// whole batch (a header is enough).
pub fn parse_header(bytes: &[u8], size_max: usize) -> Result<BatchHeader, BatchError> {
    if bytes.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            available: bytes.len(),
        });
    }
    let length = i64::from(i32_at(bytes, 8)) + LOG_OVERHEAD as i64;
    if length < HEADER_LEN as i64 || length > size_max as i64 {
        return Err(BatchError::InvalidLength {
            length,
            min: HEADER_LEN,
            max: size_max,
        });
    }
    let magic = bytes[16] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let last_offset_delta = i32_at(bytes, 23);
    if last_offset_delta < 0 {
        return Err(BatchError::InconsistentCount {
            records_count: i32_at(bytes, 57),
            last_offset_delta,
        });
    }
    Ok(BatchHeader {
        base_offset: i64_at(bytes, 0),
        size: length as usize,
        partition_leader_epoch: i32_at(bytes, 12),
        magic,
        crc: i32_at(bytes, 17) as u32,
        last_offset_delta,
        max_timestamp: i64_at(bytes, 35),
        records_count: i32_at(bytes, 57),
        attributes: i16_at(bytes, 21),
        producer_id: i64_at(bytes, 43),
        producer_epoch: i16_at(bytes, 51),
        base_sequence: i32_at(bytes, 53),
    })
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks one whole batch, `bytes` being exactly its `size` bytes: the CRC-32C
/// over everything from `attributes` on.
pub fn check_crc(header: &BatchHeader, bytes: &[u8]) -> Result<(), BatchError> {
    assert_eq!(
        bytes.len(),
        header.size,
        "check_crc takes exactly one batch"
    );
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Full validation of a batch a producer sent: framing, CRC, and a record
/// count that matches the offset range (producers number records 0..n).
pub fn validate_produced(header: &BatchHeader, bytes: &[u8]) -> Result<(), BatchError> {
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::InconsistentCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    check_crc(header, bytes)
}

/// Validation of a batch already in a log (a follower copying its leader's):
/// framing, CRC, and `0 <= recordsCount <= lastOffsetDelta + 1`. Compaction
/// removes records but keeps each batch's offset range, and leaves empty
/// batches where it removed whole ones, so stored batches may hold fewer
/// records than offsets.
pub fn validate_stored(header: &BatchHeader, bytes: &[u8]) -> Result<(), BatchError> {
    if header.records_count < 0
        || i64::from(header.records_count) > i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::InconsistentCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    check_crc(header, bytes)
}

/// Overwrites `baseOffset` and `partitionLeaderEpoch` of the batch at the start
/// of `bytes`. Both lie outside the CRC, so the checksum stays valid.
pub fn stamp(bytes: &mut [u8], base_offset: Offset, partition_leader_epoch: i32) {
    bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Splits a buffer of concatenated batches into `(header, range)` pairs after
/// checking each one's framing and CRC-32C, and that each is a batch as
/// producers send them ([`validate_produced`]).
pub fn split_batches(
    bytes: &[u8],
    size_max: usize,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    split_with(bytes, size_max, validate_produced)
}

/// [`split_batches`] for batches read from a log, which compaction may have
/// thinned ([`validate_stored`]).
pub fn split_stored_batches(
    bytes: &[u8],
    size_max: usize,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    split_with(bytes, size_max, validate_stored)
}

type Validate = fn(&BatchHeader, &[u8]) -> Result<(), BatchError>;

fn split_with(
    bytes: &[u8],
    size_max: usize,
    validate: Validate,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = parse_header(&bytes[pos..], size_max)?;
        let end = pos + header.size;
        if end > bytes.len() {
            return Err(BatchError::Truncated {
                needed: header.size,
                available: bytes.len() - pos,
            });
        }
        validate(&header, &bytes[pos..end])?;
        out.push((header, pos..end));
        pos = end;
    }
    Ok(out)
}

/// Builds a valid uncompressed RecordBatch v2 holding `values` as records
/// without keys or headers. For tests and benchmarks: producers build their
/// own batches.
pub fn build_batch(values: &[&[u8]], timestamp_ms: i64) -> Vec<u8> {
    let records: Vec<KeyValue> = values.iter().map(|v| (None, Some(*v))).collect();
    build_keyed_batch(&records, timestamp_ms)
}

/// A record's `(key, value)`; `None` is null (a null value: a tombstone).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid uncompressed RecordBatch v2 of `(key, value)` records
/// without headers; a `None` key is a null key, a `None` value a tombstone
/// (what compaction deletes by). For tests and for the broker's own
/// internal topics.
///
/// ```
/// use storage::batch;
/// let b = batch::build_keyed_batch(&[(Some(b"k"), Some(b"v")), (Some(b"k"), None)], 7);
/// let records = batch::records(&b).unwrap();
/// assert_eq!((records[1].offset, records[1].key, records[1].value), (1, Some(&b"k"[..]), None));
/// ```
pub fn build_keyed_batch(records: &[KeyValue], timestamp_ms: i64) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let mut body = Vec::new();
    for (delta, (key, value)) in records.iter().enumerate() {
        let mut record = Vec::new();
        record.push(0u8); // record attributes
        put_varint(&mut record, 0); // timestamp delta
        put_varint(&mut record, delta as i64); // offset delta
        put_bytes(&mut record, *key);
        put_bytes(&mut record, *value);
        put_varint(&mut record, 0); // header count
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = records.len() as i32;
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0; 4]); // crc, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&body);
    set_crc(&mut b);
    b
}

/// `batch` (one whole batch, as [`build_keyed_batch`] makes) as an
/// idempotent producer would send it: `producerId`, `producerEpoch` and
/// `baseSequence` set, CRC-32C recomputed. For tests and benchmarks.
pub fn with_producer(
    batch: &[u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    assert!(batch.len() >= HEADER_LEN);
    let mut b = batch.to_vec();
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    set_crc(&mut b);
    b
}

/// A record batch holding no records that covers `base_offset ..=
/// last_offset` in `partition_leader_epoch`: what compaction leaves where
/// it removed every record of one or more batches, so that offsets stay
/// contiguous (as Kafka's retained empty batches do). No producer, and
/// timestamps -1 (Kafka's NO_TIMESTAMP).
pub fn build_empty_batch(
    base_offset: Offset,
    last_offset: Offset,
    partition_leader_epoch: i32,
) -> Vec<u8> {
    let delta = i32::try_from(last_offset - base_offset).expect("a batch spans < 2^31 offsets");
    assert!(delta >= 0, "an empty batch covers at least one offset");
    let mut b = Vec::with_capacity(HEADER_LEN);
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&partition_leader_epoch.to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&delta.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // base timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    set_crc(&mut b);
    b
}

/// The batch `original` with only `records` (encoded records, taken whole
/// from it, `count` of them) as its body: every header field is kept,
/// `lastOffsetDelta` included (as Kafka's cleaner keeps it, so offsets and
/// producer sequences stay), and `batchLength`, `recordsCount` and the
/// CRC-32C are recomputed.
pub fn rebuild(original: &[u8], records: &[u8], count: i32) -> Vec<u8> {
    assert!(original.len() >= HEADER_LEN && count >= 0);
    let mut b = Vec::with_capacity(HEADER_LEN + records.len());
    b.extend_from_slice(&original[..HEADER_LEN]);
    b.extend_from_slice(records);
    let length = i32::try_from(b.len() - LOG_OVERHEAD).expect("smaller than the original");
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    set_crc(&mut b);
    b
}

fn set_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// The `attributes` field of the batch at the start of `bytes` (at least a
/// header).
pub fn attributes(bytes: &[u8]) -> i16 {
    i16_at(bytes, 21)
}

/// `baseTimestamp` of the batch at the start of `bytes` (at least a header).
pub fn base_timestamp(bytes: &[u8]) -> i64 {
    i64_at(bytes, 27)
}

/// Compression codec bits of `attributes` (0: none, 1 gzip, 2 snappy,
/// 3 lz4, 4 zstd).
pub fn compression(attributes: i16) -> i16 {
    attributes & 0x07
}

/// Whether `attributes` marks a transactional batch.
pub fn is_transactional(attributes: i16) -> bool {
    attributes & 0x10 != 0
}

/// Whether `attributes` marks a control batch (transaction markers).
pub fn is_control(attributes: i16) -> bool {
    attributes & 0x20 != 0
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64; // zigzag
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn built_batch_parses_and_validates() {
        let b = build_batch(&[b"a", b"bc", b"def"], 1_000);
        let h = parse_header(&b, MAX).unwrap();
        assert_eq!(h.size, b.len());
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1_000);
        validate_produced(&h, &b).unwrap();
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut b = build_batch(&[b"x"], 0);
        stamp(&mut b, 42, 7);
        let h = parse_header(&b, MAX).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        check_crc(&h, &b).unwrap();
    }

    /// Each kind of bad input and the error it must give, never a panic.
    #[test]
    fn bad_batches_are_errors() {
        let good = build_batch(&[b"v1", b"v2"], 5);
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut magic1 = good.clone();
        magic1[16] = 1;
        let mut negative = good.clone();
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        let mut count = good.clone();
        count[57..61].copy_from_slice(&5i32.to_be_bytes());
        let mut delta = good.clone();
        delta[23..27].copy_from_slice(&(-3i32).to_be_bytes());
        type Expect = fn(&BatchError) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("header cut", good[..30].to_vec(), |e| {
                matches!(e, BatchError::Truncated { .. })
            }),
            ("body cut", good[..good.len() - 1].to_vec(), |e| {
                matches!(e, BatchError::Truncated { .. })
            }),
            ("bit flip", flipped, |e| {
                matches!(e, BatchError::CrcMismatch { .. })
            }),
            ("magic 1", magic1, |e| {
                matches!(e, BatchError::UnsupportedMagic(1))
            }),
            ("negative length", negative, |e| {
                matches!(e, BatchError::InvalidLength { .. })
            }),
            ("absurd length", huge, |e| {
                matches!(e, BatchError::InvalidLength { .. })
            }),
            ("count mismatch", count, |e| {
                matches!(e, BatchError::InconsistentCount { .. })
            }),
        ];
        for (name, bytes, expected) in cases {
            match split_batches(&bytes, MAX) {
                Err(e) => assert!(expected(&e), "{name}: unexpected error {e:?}"),
                Ok(v) => panic!("{name}: accepted {} batches", v.len()),
            }
        }
    }

    #[test]
    fn split_finds_each_batch() {
        let mut buf = build_batch(&[b"a"], 0);
        buf.extend(build_batch(&[b"b", b"c"], 0));
        let parts = split_batches(&buf, MAX).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].0.records_count, 2);
        assert_eq!(parts[1].1.end, buf.len());
    }
}
