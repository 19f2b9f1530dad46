//! The cluster metadata the controller quorum replicates: brokers with
//! their epochs and sessions, topics, and each partition's replicas, ISR,
//! leader and epochs. Plain data; the rules that change it live in
//! [`crate::rules`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A broker's node id.
pub type BrokerId = i32;

/// A partition's leadership and replication state, as Kafka's KRaft
/// `PartitionRecord` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Replicas in preference order (the first is the preferred leader).
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas: those that may become leader without losing
    /// committed records.
    pub isr: Vec<BrokerId>,
    /// Current leader; `None` while the partition is offline.
    pub leader: Option<BrokerId>,
    /// Bumped on every leader change, never reused. Starts at 1.
    pub leader_epoch: i32,
    /// Bumped on every change of the state (leader or ISR), so stale
    /// ISR-change requests can be refused.
    pub partition_epoch: i32,
}

impl PartitionState {
    /// A new partition led by its first replica, in epoch 1.
    pub fn new(replicas: Vec<BrokerId>) -> PartitionState {
        assert!(!replicas.is_empty(), "a partition has at least one replica");
        PartitionState {
            leader: Some(replicas[0]),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 1,
            partition_epoch: 1,
        }
    }
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Node id.
    pub id: BrokerId,
    /// Given at each registration; a heartbeat must carry the current one.
    pub epoch: u64,
    /// Advertised `host:port`.
    pub endpoint: String,
    /// Fenced brokers lead nothing and are out of every ISR they can leave.
    pub fenced: bool,
    /// Random per broker process: tells a second process claiming a live id
    /// apart from the same process registering again (KRaft's incarnation id).
    pub incarnation: u64,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Topic id.
    pub id: uuid::Uuid,
    /// Partitions by index.
    pub partitions: Vec<PartitionState>,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
}

/// Everything the quorum agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Kafka cluster id (22 characters of URL-safe base64), set once by the
    /// first active controller; empty until then.
    #[serde(default)]
    pub cluster_id: String,
    /// Registered brokers.
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// The next broker epoch to hand out (epochs are never reused).
    pub next_broker_epoch: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
    /// The first producer id not yet handed out: brokers get ids in blocks
    /// from here (KIP-730), so no id is ever given twice. Defaulted so
    /// snapshots and logs from before it still load.
    #[serde(default)]
    pub next_producer_id: i64,
}
