//! The consumer protocol: the bytes a member puts in JoinGroup's protocol
//! metadata (its subscription) and the leader puts in SyncGroup (each
//! member's assignment). Both are an `i16` version followed by the
//! `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` schema at
//! that version, exactly as Kafka's `ConsumerProtocol` writes them, so any
//! Kafka client in the same group can read ours and the reverse. Pure.

use super::TopicPartition;
use crate::cluster::topic_name;
use crate::connection::ClientError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{consumer_protocol_assignment, consumer_protocol_subscription};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;

/// The protocol type of consumer groups in JoinGroup and SyncGroup.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The subscription version we write: v1 added owned partitions (KIP-429),
/// v2 their generation, v3 the rack.
const SUBSCRIPTION_VERSION: i16 = 3;
/// The assignment version we write (v0-3 share one layout).
const ASSIGNMENT_VERSION: i16 = 3;

/// What a member tells the group leader in JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Topics the member wants, sorted.
    pub topics: Vec<String>,
    /// Opaque data for the assignor.
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now (cooperative rebalancing keeps them).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation in which it owned them; `None` before its first.
    pub generation: Option<i32>,
    /// The member's rack, if configured.
    pub rack: Option<String>,
}

/// What the leader hands one member in SyncGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The member's partitions, sorted.
    pub partitions: Vec<TopicPartition>,
    /// Opaque data from the assignor.
    pub user_data: Option<Bytes>,
}

/// `[(t, 1), (s, 0), (t, 0)]` -> `[(s, [0]), (t, [0, 1])]`: the wire groups
/// partitions by topic.
pub fn by_topic(partitions: &[TopicPartition]) -> Vec<(String, Vec<i32>)> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    topics
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            ps.dedup();
            (t.to_string(), ps)
        })
        .collect()
}

fn flatten(grouped: impl IntoIterator<Item = (String, Vec<i32>)>) -> Vec<TopicPartition> {
    let mut out: Vec<TopicPartition> = grouped
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn versioned(version: i16, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    body.encode(&mut buf, version)
        .expect("every field is valid at the version we write");
    buf.freeze()
}

/// Reads the version prefix; a newer version than we know is read with our
/// newest schema, as Kafka does (newer versions only append fields).
fn version_of(bytes: &mut Bytes, highest: i16, what: &str) -> Result<i16, ClientError> {
    if bytes.remaining() < 2 {
        return Err(ClientError::Protocol(format!("{what}: no version")));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(ClientError::Protocol(format!("{what}: version {version}")));
    }
    Ok(version.min(highest))
}

/// The JoinGroup protocol metadata for `subscription`.
pub fn encode_subscription(subscription: &Subscription) -> Bytes {
    let owned = by_topic(&subscription.owned_partitions)
        .into_iter()
        .map(|(t, ps)| {
            consumer_protocol_subscription::TopicPartition::default()
                .with_topic(topic_name(&t))
                .with_partitions(ps)
        })
        .collect();
    let body = ConsumerProtocolSubscription::default()
        .with_topics(
            subscription
                .topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(subscription.user_data.clone())
        .with_owned_partitions(owned)
        .with_generation_id(subscription.generation.unwrap_or(-1))
        .with_rack_id(subscription.rack.clone().map(StrBytes::from_string));
    versioned(SUBSCRIPTION_VERSION, &body)
}

/// Reads a member's JoinGroup protocol metadata.
pub fn decode_subscription(mut bytes: Bytes) -> Result<Subscription, ClientError> {
    let version = version_of(&mut bytes, SUBSCRIPTION_VERSION, "subscription")?;
    let body = ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map_err(|e| ClientError::Protocol(format!("bad subscription: {e}")))?;
    let mut topics: Vec<String> = body.topics.iter().map(|t| t.to_string()).collect();
    topics.sort();
    topics.dedup();
    Ok(Subscription {
        topics,
        user_data: body.user_data,
        owned_partitions: flatten(
            body.owned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions)),
        ),
        generation: Some(body.generation_id).filter(|g| *g >= 0),
        rack: body.rack_id.map(|r| r.to_string()),
    })
}

/// The SyncGroup bytes for one member's assignment.
pub fn encode_assignment(assignment: &Assignment) -> Bytes {
    let partitions = by_topic(&assignment.partitions)
        .into_iter()
        .map(|(t, ps)| {
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(topic_name(&t))
                .with_partitions(ps)
        })
        .collect();
    let body = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(partitions)
        .with_user_data(assignment.user_data.clone());
    versioned(ASSIGNMENT_VERSION, &body)
}

/// Reads an assignment. Empty bytes are an empty assignment: the
/// coordinator sends them to members the leader gave nothing.
pub fn decode_assignment(mut bytes: Bytes) -> Result<Assignment, ClientError> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let version = version_of(&mut bytes, ASSIGNMENT_VERSION, "assignment")?;
    let body = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| ClientError::Protocol(format!("bad assignment: {e}")))?;
    Ok(Assignment {
        partitions: flatten(
            body.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions)),
        ),
        user_data: body.user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn subscription_round_trips() {
        let s = Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"x")),
            owned_partitions: vec![tp("a", 0), tp("a", 2), tp("b", 1)],
            generation: Some(7),
            rack: Some("r1".into()),
        };
        assert_eq!(decode_subscription(encode_subscription(&s)).unwrap(), s);
        let none = Subscription::default();
        assert_eq!(
            decode_subscription(encode_subscription(&none)).unwrap(),
            none
        );
    }

    /// Byte layout of Kafka's v0 subscription (what kafka-python and old
    /// Java clients send): version, topics, user data; nothing owned.
    #[test]
    fn reads_a_version_0_subscription() {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(1); // one topic
        b.put_i16(4);
        b.put_slice(b"jobs");
        b.put_i32(-1); // null user data
        let s = decode_subscription(b.freeze()).unwrap();
        assert_eq!(s.topics, vec!["jobs".to_string()]);
        assert!(s.owned_partitions.is_empty());
        assert_eq!(s.generation, None);
    }

    /// A newer version than we know is read with our newest schema.
    #[test]
    fn reads_a_future_version_with_trailing_fields() {
        let mut bytes = BytesMut::from(
            &encode_subscription(&Subscription {
                topics: vec!["t".into()],
                ..Subscription::default()
            })[..],
        );
        bytes[0..2].copy_from_slice(&9i16.to_be_bytes());
        bytes.put_slice(b"future field");
        assert_eq!(
            decode_subscription(bytes.freeze()).unwrap().topics,
            vec!["t"]
        );
    }

    #[test]
    fn assignment_round_trips_and_empty_is_nothing() {
        let a = Assignment {
            partitions: vec![tp("a", 1), tp("b", 0)],
            user_data: None,
        };
        assert_eq!(decode_assignment(encode_assignment(&a)).unwrap(), a);
        assert_eq!(
            decode_assignment(Bytes::new()).unwrap(),
            Assignment::default()
        );
        assert!(decode_assignment(Bytes::from_static(b"\x00")).is_err());
    }

    #[test]
    fn by_topic_groups_sorts_and_dedups() {
        let grouped = by_topic(&[tp("t", 1), tp("s", 0), tp("t", 0), tp("t", 1)]);
        assert_eq!(
            grouped,
            vec![("s".to_string(), vec![0]), ("t".to_string(), vec![0, 1])]
        );
    }
}
