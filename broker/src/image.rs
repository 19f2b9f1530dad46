//! The metadata image: the broker's copy of what the controller quorum
//! committed (cluster id, brokers, topics, each partition's replicas, ISR,
//! leader and leader epoch), replaced whole on every update from the
//! metadata feed. Handlers read leadership only from here, so what a broker
//! answers in Metadata is never older than what it acts on.

use controller::metadata::{BrokerId, BrokerRegistration, ClusterMetadata, PartitionState, Topic};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Longest topic name Kafka accepts.
const TOPIC_NAME_MAX: usize = 249;

/// The committed cluster metadata as of one applied Raft entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// Index of the last controller log entry this image includes (0: none
    /// yet).
    pub applied: u64,
    /// Kafka cluster id.
    pub cluster_id: String,
    /// Registered brokers, fenced ones included.
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
}

/// Why a topic name is not allowed (Kafka's rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// Empty, `.` or `..`.
    #[error("topic name {0:?} is not allowed")]
    Reserved(String),
    /// Longer than 249 characters.
    #[error("topic name is {0} characters long, the limit is 249")]
    TooLong(usize),
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error("topic name {0:?} may only contain ASCII letters, digits, '.', '_' and '-'")]
    BadCharacter(String),
}

/// Kafka's internal topics: the group coordinators' `__consumer_offsets`
/// and the transaction coordinators' `__transaction_state`. A group (or
/// transaction) lives in the partition its id hashes to modulo the topic's
/// partition count, so deleting such a topic loses every group's committed
/// offsets and adding partitions moves groups away from their state: no
/// client may do either (Kafka's `kafka-topics` refuses the deletion).
pub const INTERNAL_TOPICS: [&str; 2] = ["__consumer_offsets", "__transaction_state"];

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(TopicNameError::Reserved(name.to_string()));
    }
    if name.len() > TOPIC_NAME_MAX {
        return Err(TopicNameError::TooLong(name.len()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(allowed) {
        return Err(TopicNameError::BadCharacter(name.to_string()));
    }
    Ok(())
}

impl MetadataImage {
    /// The image of `metadata` as of applied entry `applied`.
    pub fn new(applied: u64, metadata: ClusterMetadata) -> MetadataImage {
        MetadataImage {
            applied,
            cluster_id: metadata.cluster_id,
            brokers: metadata.brokers,
            topics: metadata.topics,
        }
    }

    /// The topic with this id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<(&String, &Topic)> {
        self.topics.iter().find(|(_, t)| t.id == id)
    }

    /// One partition's state.
    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionState> {
        let topic = self.topics.get(topic)?;
        topic.partitions.get(usize::try_from(index).ok()?)
    }

    /// Unfenced brokers: the ones clients are told about.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `broker` is registered and unfenced.
    pub fn is_live(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    /// Every partition `broker` holds a replica of: (topic, index, topic id,
    /// state).
    pub fn replicas_of(
        &self,
        broker: BrokerId,
    ) -> impl Iterator<Item = (&String, i32, Uuid, &PartitionState)> {
        self.topics.iter().flat_map(move |(name, topic)| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.replicas.contains(&broker))
                .map(move |(i, p)| (name, i as i32, topic.id, p))
        })
    }
}

/// The directory of one partition's log: `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        for ok in ["orders", "a", "A.b_c-9", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        let bad = [
            "",
            ".",
            "..",
            "has space",
            "slash/",
            "ünï",
            &"x".repeat(250),
        ];
        for name in bad {
            assert!(validate_topic_name(name).is_err(), "{name}");
        }
    }
}
