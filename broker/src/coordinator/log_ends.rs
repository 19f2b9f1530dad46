//! The log ends the coordinator checks committed offsets against: a commit
//! past a partition's log end names records no consumer can have read, so
//! it is refused (OFFSET_OUT_OF_RANGE) rather than stored to make the group
//! skip data later.
//!
//! When this broker leads the partition its log end is used; otherwise the
//! leader's high watermark, asked by ListOffsets. Answers are cached and
//! asked again only when a commit passes the cached value, so steady commits
//! (at or below what consumers fetched) cost nothing. A commit is refused
//! only if it is still past after five asks 100 ms apart (a new leader's
//! high watermark can lag for a moment); if the leader cannot be asked at
//! all, the commit is accepted, as Kafka accepts every offset.

use crate::state::Broker;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Cached log ends by (topic, partition).
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
        // A leader elected a moment ago may not know the high watermark its
        // followers already saw: ask again a few times before refusing.
        for attempt in 0..RETRIES {
            let Some(end) = log_end(broker, topic, partition).await else {
                return false;
            };
            self.known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), end);
            if offset <= end {
                return false;
            }
            if attempt + 1 < RETRIES {
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        true
    }

    fn cached(&self, key: &(String, i32)) -> Option<i64> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(key).copied()
    }
}

/// Asks before refusing a commit past the log end.
const RETRIES: usize = 5;
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How far a consumer may have read: this broker's log end when it leads
/// the partition (a new leader's high watermark may lag, its log end holds
/// every committed record), else the leader's high watermark.
async fn log_end(broker: &Broker, topic: &str, partition: i32) -> Option<i64> {
    if let Ok(end) = broker.serve(topic, partition, -1, |led| Ok(led.partition.offsets().2)) {
        return Some(end);
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
