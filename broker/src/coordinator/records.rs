//! What the group coordinator writes to `__consumer_offsets`: one record per
//! committed offset and one per group's membership, keyed so that log
//! compaction keeps the latest of each; a null value (tombstone) deletes.
//!
//! Keys and values are JSON (the key's JSON is deterministic, so equal keys
//! are equal bytes, which is what compaction compares). Kafka's own binary
//! schemas are not used: nothing outside Baton reads this topic.

use bytes::{Bytes, BytesMut};
use groups::Snapshot;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The partition of `__consumer_offsets` a group lives in: Java's
/// `String.hashCode` of the id, made non-negative, modulo the partition
/// count, as Kafka computes it, so the mapping is stable across restarts
/// and matches what Kafka users know.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (hash & 0x7fff_ffff) % partitions.max(1)
}

/// A record's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    /// A group's committed offset for one partition.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's membership and generation.
    Group {
        /// Group id.
        group: String,
    },
}

impl Key {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group { group } => group,
        }
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// One committed offset, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The next offset the group will read.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: Option<String>,
    /// Wall-clock ms of the commit.
    pub commit_timestamp: i64,
}

/// A record to write: its key and value (`None`: a tombstone).
#[derive(Debug, Clone)]
pub enum Entry {
    /// Set or delete (`None`) a committed offset.
    Offset(Key, Option<Committed>),
    /// Set or delete (`None`) a group's membership.
    Group(Key, Option<Snapshot>),
}

/// A record read back from the log.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its offset (later records win).
    pub offset: i64,
    /// What it says.
    pub entry: Entry,
}

/// Builds one uncompressed batch holding `entries`, in order.
pub fn batch(entries: &[Entry], now_ms: i64) -> Bytes {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let (key, value) = match entry {
                Entry::Offset(k, v) => (k, v.as_ref().and_then(|v| serde_json::to_vec(v).ok())),
                Entry::Group(k, v) => (k, v.as_ref().and_then(|v| serde_json::to_vec(v).ok())),
            };
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: Some(key.encode()),
                value: value.map(Bytes::from),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    // Encoding plain records into memory cannot fail.
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode offsets batch");
    buf.freeze()
}

/// Decodes the records of `bytes` (batches read from the log). A record
/// this version does not understand is skipped with a warning rather than
/// failing the load: the rest of the groups must still come up.
pub fn decode(bytes: Vec<u8>) -> Vec<Loaded> {
    let mut buf = Bytes::from(bytes);
    let mut out = Vec::new();
    let sets = match RecordBatchDecoder::decode_all(&mut buf) {
        Ok(sets) => sets,
        Err(e) => {
            tracing::warn!(error = %e, "undecodable batch in {OFFSETS_TOPIC}");
            return out;
        }
    };
    for record in sets.into_iter().flat_map(|s| s.records) {
        match decode_record(&record) {
            Some(entry) => out.push(Loaded {
                offset: record.offset,
                entry,
            }),
            None => tracing::warn!(offset = record.offset, "unknown record in {OFFSETS_TOPIC}"),
        }
    }
    out
}

fn decode_record(record: &Record) -> Option<Entry> {
    let key: Key = serde_json::from_slice(record.key.as_deref()?).ok()?;
    let value = record.value.as_deref();
    Some(match key {
        Key::Offset { .. } => {
            let v = value.map(serde_json::from_slice).transpose().ok()?;
            Entry::Offset(key, v)
        }
        Key::Group { .. } => {
            let v = value.map(serde_json::from_slice).transpose().ok()?;
            Entry::Group(key, v)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "group".hashCode() == 98629247 in Java; Kafka's default 50 partitions.
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // Negative hashes are masked, not negated: "polygenelubricants"
        // hashes to Integer.MIN_VALUE in Java.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 10), 0);
        for id in ["a", "orders-app", "ünïcode", "x".repeat(300).as_str()] {
            let p = partition_for(id, 7);
            assert!((0..7).contains(&p), "{id}: {p}");
        }
    }

    #[test]
    fn records_round_trip_including_tombstones() {
        let key = |p| Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: p,
        };
        let committed = Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_timestamp: 7,
        };
        let entries = vec![
            Entry::Offset(key(0), Some(committed.clone())),
            Entry::Offset(key(1), None),
        ];
        let mut bytes = batch(&entries, 1).to_vec();
        // As the log would stamp them.
        bytes[..8].copy_from_slice(&100i64.to_be_bytes());
        let loaded = decode(bytes);
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].offset, 100);
        assert!(
            matches!(&loaded[0].entry, Entry::Offset(k, Some(c)) if *k == key(0) && *c == committed)
        );
        assert!(matches!(&loaded[1].entry, Entry::Offset(k, None) if *k == key(1)));
    }

    #[test]
    fn equal_keys_encode_to_equal_bytes() {
        let k = Key::Group { group: "g".into() };
        assert_eq!(k.encode(), k.clone().encode());
    }
}
