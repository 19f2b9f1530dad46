//! The sparse offset index: `<base_offset>.index` beside each segment.
//!
//! Entries of 8 bytes, big-endian: a 4-byte offset relative to the segment's
//! base offset and the 4-byte file position of the batch it belongs to. As in
//! Kafka, the offset of an entry is the *last* offset of an indexed batch, and
//! an entry is added whenever `index_interval_bytes` of log have been written
//! since the previous one. Lookup is a pure function over the bytes, so tests
//! pass a `Vec<u8>` and the log may back the slice however it likes.

/// Bytes per index entry.
pub const ENTRY_LEN: usize = 8;

/// One decoded index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

impl IndexEntry {
    /// The 8 bytes stored for this entry.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0; ENTRY_LEN];
        b[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        b[4..].copy_from_slice(&self.position.to_be_bytes());
        b
    }
}

/// Kafka's rule for which batches get an index entry: a batch is indexed
/// when more than `index.interval.bytes` of log were written since the
/// previous indexed batch. Used by segments as they append and by the
/// cleaner as it writes a cleaned segment, so both build the same index.
#[derive(Debug, Clone)]
pub struct SparseIndexer {
    interval_bytes: u64,
    /// Log bytes written since the batch that got the last entry.
    bytes_since_entry: u64,
}

impl SparseIndexer {
    /// A fresh indexer for an empty segment.
    pub fn new(index_interval_bytes: u32) -> Self {
        SparseIndexer {
            interval_bytes: u64::from(index_interval_bytes),
            bytes_since_entry: 0,
        }
    }

    /// Notes a batch of `size` bytes at `position` whose last offset is
    /// `last_offset`, in a segment based at `base_offset`; returns the entry
    /// to add, if it gets one.
    pub fn note(
        &mut self,
        base_offset: i64,
        position: u64,
        last_offset: i64,
        size: usize,
    ) -> Option<IndexEntry> {
        let mut entry = None;
        if self.bytes_since_entry > self.interval_bytes {
            entry = Some(IndexEntry {
                relative_offset: (last_offset - base_offset) as u32,
                position: position as u32,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size as u64;
        entry
    }

    /// Restarts the count after a truncation: `bytes` were written since
    /// the last entry.
    pub fn reset(&mut self, bytes: u64) {
        self.bytes_since_entry = bytes;
    }
}

fn entry_at(index: &[u8], i: usize) -> IndexEntry {
    let at = i * ENTRY_LEN;
    let mut r = [0; 4];
    let mut p = [0; 4];
    r.copy_from_slice(&index[at..at + 4]);
    p.copy_from_slice(&index[at + 4..at + 8]);
    IndexEntry {
        relative_offset: u32::from_be_bytes(r),
        position: u32::from_be_bytes(p),
    }
}

/// Number of whole entries in `index`.
pub fn entry_count(index: &[u8]) -> usize {
    index.len() / ENTRY_LEN
}

/// The file position to start scanning from for `relative_offset`: the
/// position of the largest entry whose offset is `<= relative_offset`, or 0
/// when there is none (scan from the start of the segment).
///
/// With entries `[(3, 0), (9, 4096), (15, 8200)]`, offset 10 gives 4096 (the
/// batch ending at 9 starts there, and 10 comes after it), offset 2 gives 0.
pub fn lookup(index: &[u8], relative_offset: u32) -> u32 {
    let (mut lo, mut hi) = (0, entry_count(index));
    // Invariant: entries [0, lo) are <= target, entries [hi, n) are > target.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry_at(index, mid).relative_offset <= relative_offset {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        0
    } else {
        entry_at(index, lo - 1).position
    }
}

/// The last entry, if any.
pub fn last_entry(index: &[u8]) -> Option<IndexEntry> {
    entry_count(index)
        .checked_sub(1)
        .map(|i| entry_at(index, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(relative_offset, position)| {
                IndexEntry {
                    relative_offset,
                    position,
                }
                .encode()
            })
            .collect()
    }

    #[test]
    fn lookup_is_largest_lower_bound() {
        let idx = index(&[(3, 0), (9, 4096), (15, 8200)]);
        let cases = [
            (0, 0),
            (2, 0),
            (3, 0),
            (4, 0),
            (9, 4096),
            (10, 4096),
            (14, 4096),
            (15, 8200),
            (1_000, 8200),
        ];
        for (target, expected) in cases {
            assert_eq!(lookup(&idx, target), expected, "target {target}");
        }
        assert_eq!(lookup(&[], 5), 0, "empty index: scan from the start");
        assert_eq!(lookup(&index(&[(7, 100)]), 6), 0);
        assert_eq!(lookup(&index(&[(7, 100)]), 7), 100);
    }
}
