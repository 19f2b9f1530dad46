//! The producer-state snapshot, `<20-digit offset>.snapshot`: the state of
//! every producer as of that offset (the log end when it was written), so
//! recovery replays only the batches after it. Big-endian, as Kafka's:
//!
//! ```text
//! offset  size  field
//!      0     2  version (1)
//!      2     4  crc: CRC-32C of every byte from offset 6 on
//!      6     4  producer count
//!     10     -  producers, by id:
//!                 8 producerId  2 producerEpoch  1 batch count (1..=5)
//!                 then per batch, oldest first:
//!                 4 first sequence  4 last sequence
//!                 8 first offset    8 last offset   8 maxTimestamp
//! ```
//!
//! Unlike Kafka's (which keeps one batch per producer), all five batches
//! are kept, so a retry of any of them is still recognised after a restart.

use super::{BatchMetadata, ProducerEntry, ProducerState, BATCHES_RETAINED};
use std::collections::VecDeque;

const VERSION: u16 = 1;
const HEADER_LEN: usize = 10;
const PRODUCER_LEN: usize = 11;
const BATCH_LEN: usize = 32;

/// Why a snapshot file cannot be used (recovery then ignores it and
/// replays from an older one, or from the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than its contents say.
    #[error("truncated snapshot: {0} bytes")]
    Truncated(usize),
    /// An unknown version.
    #[error("unsupported snapshot version {0}")]
    Version(u16),
    /// The checksum does not match.
    #[error("snapshot crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// In the file.
        stored: u32,
        /// Of the bytes.
        computed: u32,
    },
    /// A producer with no batches or more than five, or bytes after the end.
    #[error("malformed snapshot: {0}")]
    Malformed(String),
}

/// The snapshot bytes of `state`.
pub fn encode(state: &ProducerState) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + state.len() * (PRODUCER_LEN + BATCH_LEN));
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(state.len() as u32).to_be_bytes());
    for (id, entry) in state.iter() {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&entry.producer_epoch.to_be_bytes());
        b.push(entry.batches.len() as u8);
        for m in &entry.batches {
            b.extend_from_slice(&m.first_sequence.to_be_bytes());
            b.extend_from_slice(&m.last_sequence.to_be_bytes());
            b.extend_from_slice(&m.first_offset.to_be_bytes());
            b.extend_from_slice(&m.last_offset.to_be_bytes());
            b.extend_from_slice(&m.timestamp.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b[6..]);
    b[2..6].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads snapshot bytes; every byte is checked before any is trusted.
pub fn decode(bytes: &[u8]) -> Result<ProducerState, SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let stored = u32::from_be_bytes(bytes[2..6].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[6..]);
    if stored != computed {
        return Err(SnapshotError::Crc { stored, computed });
    }
    let mut r = Reader { bytes, at: 6 };
    let count = r.u32()?;
    let mut state = ProducerState::new();
    for _ in 0..count {
        let id = r.i64()?;
        let producer_epoch = r.i16()?;
        let n = usize::from(r.u8()?);
        if !(1..=BATCHES_RETAINED).contains(&n) {
            return Err(SnapshotError::Malformed(format!(
                "producer {id}: {n} batches"
            )));
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(BatchMetadata {
                first_sequence: r.i32()?,
                last_sequence: r.i32()?,
                first_offset: r.i64()?,
                last_offset: r.i64()?,
                timestamp: r.i64()?,
            });
        }
        state.insert(
            id,
            ProducerEntry {
                producer_epoch,
                batches,
            },
        );
    }
    if r.at != bytes.len() {
        return Err(SnapshotError::Malformed(format!(
            "{} bytes after the last producer",
            bytes.len() - r.at
        )));
    }
    Ok(state)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let end = self.at + N;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(SnapshotError::Truncated(self.bytes.len()))?;
        self.at = end;
        Ok(slice.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_be_bytes(self.take::<4>()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.take::<8>()?))
    }
    fn i16(&mut self) -> Result<i16, SnapshotError> {
        Ok(i16::from_be_bytes(self.take::<2>()?))
    }
    fn i32(&mut self) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.take::<4>()?))
    }
}
