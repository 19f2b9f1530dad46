//! The high watermarks the coordinator checks committed offsets against: a
//! commit past a partition's high watermark names records no consumer can
//! have read, so it is refused (OFFSET_OUT_OF_RANGE) rather than stored to
//! make the group skip data later.
//!
//! The partition's leader knows its high watermark; when that is another
//! broker it is asked by ListOffsets. Answers are cached and asked again
//! only when a commit passes the cached value, so steady commits (at or
//! below what consumers fetched) cost nothing. If the leader cannot be
//! asked, the commit is accepted, as Kafka accepts every offset.

use crate::state::Broker;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Cached high watermarks by (topic, partition).
#[derive(Debug, Default)]
pub struct LogEnds {
    known: Mutex<HashMap<(String, i32), i64>>,
}

impl LogEnds {
    /// Whether `offset` is past the partition's high watermark, as far as
    /// can be learnt now (unknown: not past).
    pub async fn beyond(&self, broker: &Broker, topic: &str, partition: i32, offset: i64) -> bool {
        let key = (topic.to_string(), partition);
        let cached = self.cached(&key);
        if cached.is_some_and(|hw| offset <= hw) {
            return false;
        }
        let Some(hw) = high_watermark(broker, topic, partition).await else {
            return false;
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(key, hw);
        offset > hw
    }

    fn cached(&self, key: &(String, i32)) -> Option<i64> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(key).copied()
    }
}

/// The partition's high watermark from its leader, this broker or another.
async fn high_watermark(broker: &Broker, topic: &str, partition: i32) -> Option<i64> {
    if let Ok(led) = broker.leader(topic, partition, -1) {
        return Some(led.partition.offsets().1);
    }
    let image = broker.image();
    let leader = image.partition(topic, partition)?.leader?;
    let addr = image.brokers.get(&leader)?.endpoint.clone();
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(crate::handlers::topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let ask = async {
        let mut conn = client::Connection::connect(&addr).await.ok()?;
        let r = conn.send(&request, 4).await.ok()?;
        let p = r.topics.first()?.partitions.first()?;
        (p.error_code == 0).then_some(p.offset)
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}
