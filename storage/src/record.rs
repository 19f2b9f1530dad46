//! The records inside an uncompressed RecordBatch v2. Pure.
//!
//! The log itself never looks inside a batch; compaction does (it keeps the
//! latest record per key), and so does a broker loading an internal topic
//! (`__consumer_offsets`). Each record is, with varints zigzag-encoded as in
//! Kafka:
//!
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint (-1: null) | key | valueLength varint (-1: null) | value
//! headerCount varint | headers: (keyLength varint, key, valueLength varint, value)*
//! ```

use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use crate::Offset;
use std::ops::Range;

/// One record of a batch, borrowed from the batch's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's offset: the batch's `baseOffset` plus its offset delta.
    pub offset: Offset,
    /// `baseTimestamp` plus the record's timestamp delta, milliseconds.
    pub timestamp_ms: i64,
    /// The key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Record headers, `(key, value)`.
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Why the records of some bytes could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A batch's framing or CRC-32C is bad.
    #[error("bad batch at byte {position}: {source}")]
    Batch {
        /// Where the batch starts in the bytes given.
        position: usize,
        /// What is wrong.
        source: BatchError,
    },
    /// A batch is compressed: storage does not decompress.
    #[error("batch at offset {base_offset} is compressed (codec {codec}): not supported")]
    Compressed {
        /// The batch's `baseOffset`.
        base_offset: Offset,
        /// The compression codec bits.
        codec: i16,
    },
    /// A record inside a batch is malformed.
    #[error("batch at offset {base_offset}: malformed records: {reason}")]
    Malformed {
        /// The batch's `baseOffset`.
        base_offset: Offset,
        /// What is wrong.
        reason: String,
    },
}

/// Every record of the concatenated batches in `bytes` (a read result, or
/// one batch), in offset order, with its offset, key, value and headers.
/// Each batch's framing and CRC-32C are checked; records of control batches
/// (transaction markers) are skipped, as consumers skip them. Compressed
/// batches are an error: storage does not decompress.
pub fn records(bytes: &[u8]) -> Result<Vec<RecordView<'_>>, RecordError> {
    let parts = batch::split_stored_batches(bytes, usize::MAX >> 1).map_err(|source| {
        RecordError::Batch {
            position: first_bad_position(bytes),
            source,
        }
    })?;
    let mut out = Vec::new();
    for (header, range) in parts {
        let one = &bytes[range];
        let attributes = batch::attributes(one);
        if batch::is_control(attributes) {
            continue;
        }
        let codec = batch::compression(attributes);
        if codec != 0 {
            return Err(RecordError::Compressed {
                base_offset: header.base_offset,
                codec,
            });
        }
        let malformed = |reason| RecordError::Malformed {
            base_offset: header.base_offset,
            reason,
        };
        let base_timestamp = batch::base_timestamp(one);
        for span in spans(one, &header).map_err(malformed)? {
            let headers = parse_headers(one, span.headers.clone()).map_err(malformed)?;
            out.push(RecordView {
                offset: header.base_offset + i64::from(span.offset_delta),
                timestamp_ms: base_timestamp.saturating_add(span.timestamp_delta),
                key: span.key.map(|r| &one[r]),
                value: span.value.map(|r| &one[r]),
                headers,
            });
        }
    }
    Ok(out)
}

fn first_bad_position(bytes: &[u8]) -> usize {
    let mut position = 0;
    while let Ok(h) = batch::parse_header(&bytes[position..], usize::MAX >> 1) {
        let end = position + h.size;
        if end > bytes.len() || batch::validate_stored(&h, &bytes[position..end]).is_err() {
            break;
        }
        position = end;
    }
    position
}

/// Where one record lies in its batch's bytes (ranges relative to the
/// batch's first byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordSpan {
    /// The whole record, length prefix included: what a rewrite copies.
    pub whole: Range<usize>,
    /// `offsetDelta`.
    pub offset_delta: i32,
    /// `timestampDelta`.
    pub timestamp_delta: i64,
    /// The key bytes, `None` for a null key.
    pub key: Option<Range<usize>>,
    /// The value bytes, `None` for a tombstone.
    pub value: Option<Range<usize>>,
    /// The header count and headers.
    pub headers: Range<usize>,
}

/// The records of one uncompressed batch (`bytes` is exactly the batch).
/// Strict: exactly `recordsCount` records filling the body, offset deltas
/// increasing and within `lastOffsetDelta`.
pub(crate) fn spans(bytes: &[u8], header: &BatchHeader) -> Result<Vec<RecordSpan>, String> {
    assert_eq!(bytes.len(), header.size, "spans takes exactly one batch");
    let count = usize::try_from(header.records_count).map_err(|_| "negative count".to_string())?;
    let mut out = Vec::with_capacity(count.min(bytes.len() / 7));
    let mut at = HEADER_LEN;
    let mut previous: Option<i32> = None;
    while at < bytes.len() {
        let span = span_at(bytes, at)?;
        if previous.is_some_and(|p| span.offset_delta <= p)
            || span.offset_delta < 0
            || span.offset_delta > header.last_offset_delta
        {
            return Err(format!("offset delta {} out of order", span.offset_delta));
        }
        previous = Some(span.offset_delta);
        at = span.whole.end;
        out.push(span);
    }
    if out.len() != count {
        return Err(format!(
            "{} records where the header says {count}",
            out.len()
        ));
    }
    Ok(out)
}

/// Parses the record starting at `at`.
fn span_at(bytes: &[u8], at: usize) -> Result<RecordSpan, String> {
    let mut r = Reader { bytes, at };
    let length = r.varint()?;
    let length = usize::try_from(length).map_err(|_| format!("record length {length}"))?;
    let end = r.at.checked_add(length).filter(|&e| e <= bytes.len());
    let end = end.ok_or_else(|| format!("record of {length} bytes overruns the batch"))?;
    let mut r = Reader {
        bytes: &bytes[..end],
        at: r.at,
    };
    r.take(1)?; // attributes
    let timestamp_delta = r.varint()?;
    let offset_delta = i32::try_from(r.varint()?).map_err(|_| "offset delta overflows")?;
    let key = r.nullable()?;
    let value = r.nullable()?;
    let headers_start = r.at;
    let header_count = r.varint()?;
    for _ in 0..header_count.max(0) {
        r.nullable()?.ok_or("null header key")?;
        r.nullable()?;
    }
    if header_count < 0 || r.at != end {
        return Err("record length does not match its fields".into());
    }
    Ok(RecordSpan {
        whole: at..end,
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers: headers_start..end,
    })
}

#[allow(clippy::type_complexity)]
fn parse_headers(bytes: &[u8], range: Range<usize>) -> Result<Vec<(&[u8], Option<&[u8]>)>, String> {
    let mut r = Reader {
        bytes: &bytes[..range.end],
        at: range.start,
    };
    let count = r.varint()?;
    let mut out = Vec::new();
    for _ in 0..count.max(0) {
        let key = r.nullable()?.ok_or("null header key")?;
        let value = r.nullable()?;
        out.push((&bytes[key], value.map(|v| &bytes[v])));
    }
    Ok(out)
}

/// A bounds-checked reader of Kafka varints.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<Range<usize>, String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{n} bytes past the end of the record"))?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    /// A zigzag varlong (at most 10 bytes).
    fn varint(&mut self) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let byte = *self.bytes.get(self.at).ok_or("varint past the end")?;
            self.at += 1;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A length-prefixed byte string; length -1 is null.
    fn nullable(&mut self) -> Result<Option<Range<usize>>, String> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(format!("negative length {n}")),
            n => self
                .take(usize::try_from(n).map_err(|_| "length overflows")?)
                .map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_keyed_batch, parse_header, stamp};

    #[test]
    fn records_list_keys_values_and_offsets() {
        let mut a = build_keyed_batch(&[(Some(b"k1"), Some(b"v1")), (None, Some(b"x"))], 100);
        stamp(&mut a, 10, 1);
        let mut b = build_keyed_batch(&[(Some(b"k1"), None)], 200);
        stamp(&mut b, 12, 1);
        a.extend(b);
        let got: Vec<_> = records(&a)
            .unwrap()
            .into_iter()
            .map(|r| (r.offset, r.timestamp_ms, r.key, r.value))
            .collect();
        type Row<'a> = (Offset, i64, Option<&'a [u8]>, Option<&'a [u8]>);
        let expected: Vec<Row> = vec![
            (10, 100, Some(b"k1"), Some(b"v1")),
            (11, 100, None, Some(b"x")),
            (12, 200, Some(b"k1"), None),
        ];
        assert_eq!(got, expected);
    }

    /// Bad record bytes under a good CRC are errors, never panics.
    #[test]
    fn malformed_records_are_errors() {
        let good = build_keyed_batch(&[(Some(b"key"), Some(b"value"))], 0);
        let header = parse_header(&good, 1 << 20).unwrap();
        assert_eq!(spans(&good, &header).unwrap().len(), 1);
        let body_len = good.len() - HEADER_LEN;
        for cut in 0..body_len {
            // Re-frame the batch around a shortened body, with a valid CRC.
            let short = batch::rebuild(&good, &good[HEADER_LEN..HEADER_LEN + cut], 1);
            let h = parse_header(&short, 1 << 20).unwrap();
            assert!(spans(&short, &h).is_err(), "body cut at {cut}");
        }
        let two = batch::rebuild(&good, &good[HEADER_LEN..], 2);
        let h = parse_header(&two, 1 << 20).unwrap();
        assert!(spans(&two, &h).is_err(), "count says 2, body holds 1");
        let mut compressed = good.clone();
        compressed[22] |= 1;
        let compressed = batch::rebuild(&compressed, &good[HEADER_LEN..], 1);
        assert!(matches!(
            records(&compressed),
            Err(RecordError::Compressed { codec: 1, .. })
        ));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(records(&flipped), Err(RecordError::Batch { .. })));
    }
}
