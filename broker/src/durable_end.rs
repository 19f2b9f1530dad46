//! Baton's one extension of the Fetch request between brokers: a
//! follower's **durable end**, the offset below which its log is on disk
//! (with `flush=always`, synced; otherwise its log end).
//!
//! Kafka's fetch offset means "the follower has everything below this",
//! and a Kafka follower never syncs before it fetches again. Baton's high
//! watermark counts only what every ISR member has *durably* (claim 4), so
//! without this a follower would have to sync before each fetch, and one
//! sync per round trip is what capped RF 3. With it, a follower fetches
//! again as soon as the bytes are written and reports the sync when it
//! completes (a position report, pipelined on the same connection): the
//! leader counts `min(fetch_offset, durable end)` toward the high
//! watermark and the ISR, and reads from `fetch_offset`.
//!
//! It travels as a tagged field of the request's partition (flexible
//! versions, Fetch v12 and up) under a tag Kafka does not use; a request
//! without it (any Kafka follower or client) means Kafka's rule, the fetch
//! offset. A position report asks for no records: `partition_max_bytes` 0
//! with the tag present.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;

/// The tag (Kafka's own tags on FetchPartition count up from 0).
pub const TAG: i32 = 0x4241;

/// `p` with `durable_end` attached.
pub fn attach(p: FetchPartition, durable_end: i64) -> FetchPartition {
    let mut p = p;
    p.unknown_tagged_fields
        .insert(TAG, Bytes::copy_from_slice(&durable_end.to_be_bytes()));
    p
}

/// The durable end `p` carries, if it carries a well-formed one.
pub fn of(p: &FetchPartition) -> Option<i64> {
    let raw = p.unknown_tagged_fields.get(&TAG)?;
    Some(i64::from_be_bytes(raw.as_ref().try_into().ok()?))
}

/// What the leader counts as the follower's log end: the durable end when
/// given (never above the fetch offset), else the fetch offset.
pub fn position(p: &FetchPartition) -> i64 {
    of(p).map_or(p.fetch_offset, |d| d.min(p.fetch_offset))
}

/// Whether `p` is a position report: it wants no records.
pub fn is_report(p: &FetchPartition) -> bool {
    of(p).is_some() && p.partition_max_bytes == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchRequest, FetchTopic};
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn partition(fetch_offset: i64, max_bytes: i32) -> FetchPartition {
        FetchPartition::default()
            .with_fetch_offset(fetch_offset)
            .with_partition_max_bytes(max_bytes)
    }

    #[test]
    fn the_durable_end_survives_the_wire_in_fetch_v12() {
        let request =
            FetchRequest::default()
                .with_topics(vec![FetchTopic::default()
                    .with_partitions(vec![attach(partition(900, 1 << 20), 700)])]);
        let mut buf = bytes::BytesMut::new();
        request.encode(&mut buf, 12).unwrap();
        let back = FetchRequest::decode(&mut buf.freeze(), 12).unwrap();
        let p = &back.topics[0].partitions[0];
        assert_eq!(of(p), Some(700));
        assert_eq!(position(p), 700);
        assert!(!is_report(p));
    }

    #[test]
    fn without_the_tag_kafkas_rule_holds() {
        let p = partition(900, 0);
        assert_eq!((of(&p), position(&p), is_report(&p)), (None, 900, false));
    }

    #[test]
    fn a_durable_end_above_the_fetch_offset_counts_as_the_fetch_offset() {
        let p = attach(partition(900, 1024), 5_000);
        assert_eq!(position(&p), 900);
    }

    #[test]
    fn a_malformed_value_is_ignored_and_zero_bytes_make_a_report() {
        let mut p = partition(900, 0);
        p.unknown_tagged_fields
            .insert(TAG, Bytes::from_static(b"short"));
        assert_eq!((of(&p), position(&p)), (None, 900));
        assert!(is_report(&attach(partition(900, 0), 800)));
    }
}
