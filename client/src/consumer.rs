//! The consumer: manual assignment, seek and poll. Fetches carry the known
//! leader epoch (`CurrentLeaderEpoch`); after a leader change the position is
//! validated with OffsetForLeaderEpoch as KIP-320 describes, so a consumer
//! whose position lies past the new leader's log for its epoch moves back to
//! where that epoch ended instead of skipping or re-reading silently.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! use client::{Consumer, ConsumerConfig};
//! let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:9092")).await?;
//! consumer.assign(&[("orders", 0)]);
//! consumer.seek("orders", 0, 0);
//! for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
//!     println!("{} {:?}", record.offset, record.value);
//! }
//! # Ok(()) }
//! ```

use crate::cluster::{is_retriable, topic_name, Cluster};
use crate::connection::ClientError;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest,
};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where to start when there is no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The high watermark.
    Latest,
    /// Fail the poll.
    None,
}

/// Consumer settings, named after Kafka's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// `fetch.max.wait.ms`.
    pub max_wait: Duration,
    /// `fetch.max.bytes`.
    pub max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: i32,
    /// `auto.offset.reset`.
    pub reset: OffsetReset,
}

impl ConsumerConfig {
    /// Defaults: 500 ms waits, 50 MiB per fetch, 1 MiB per partition,
    /// reset to earliest.
    pub fn new(bootstrap: &str) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap: bootstrap.to_string(),
            max_wait: Duration::from_millis(500),
            max_bytes: 50 << 20,
            partition_max_bytes: 1 << 20,
            reset: OffsetReset::Earliest,
        }
    }
}

/// A consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Leader epoch it was written in.
    pub leader_epoch: i32,
    /// Create time, ms.
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Position {
    /// Next offset to read; `None` until reset.
    offset: Option<i64>,
    /// Epoch of the last record read, for KIP-320 validation.
    epoch: Option<i32>,
    /// Set after a leader change: validate before fetching.
    validate: bool,
}

/// The consumer.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    cluster: Cluster,
    positions: BTreeMap<(String, i32), Position>,
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let mut cluster = Cluster::new(&config.bootstrap);
        cluster.refresh(Some(&[]), false).await?;
        Ok(Consumer {
            config,
            cluster,
            positions: BTreeMap::new(),
        })
    }

    /// Replaces the assignment; new partitions start per `reset`.
    pub fn assign(&mut self, partitions: &[(&str, i32)]) {
        let old = std::mem::take(&mut self.positions);
        for &(topic, partition) in partitions {
            let key = (topic.to_string(), partition);
            let position = old.get(&key).copied().unwrap_or_default();
            self.positions.insert(key, position);
        }
    }

    /// Sets the next offset to read.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        let position = Position {
            offset: Some(offset),
            epoch: None,
            validate: false,
        };
        self.positions
            .insert((topic.to_string(), partition), position);
    }

    /// Sets the next offset to read, restored from a commit made when the
    /// record before it had `leader_epoch`: with an epoch the position is
    /// validated (KIP-320) before the first fetch, as after a leader change.
    pub fn seek_with_epoch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        leader_epoch: Option<i32>,
    ) {
        let position = Position {
            offset: Some(offset),
            epoch: leader_epoch,
            validate: leader_epoch.is_some(),
        };
        self.positions
            .insert((topic.to_string(), partition), position);
    }

    /// The leader epoch of the last record read on the partition (or of the
    /// position it was restored to), committed next to the offset.
    pub fn position_leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.positions
            .get(&(topic.to_string(), partition))
            .and_then(|p| p.epoch)
    }

    /// The next offset to be read, if known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .get(&(topic.to_string(), partition))
            .and_then(|p| p.offset)
    }

    /// Fetches what is available on every assigned partition, waiting up to
    /// `timeout` for something to arrive. A partition whose fetch fails is
    /// skipped this time (and retried on the next poll); the error is
    /// returned only when no partition returned records.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let keys: Vec<(String, i32)> = self.positions.keys().cloned().collect();
        let mut out = Vec::new();
        let mut failed = None;
        for (topic, partition) in keys {
            match self
                .poll_partition(&topic, partition, timeout.min(self.config.max_wait))
                .await
            {
                Ok(records) => out.extend(records),
                // The records of the other partitions moved their positions
                // already: returning an error now would lose them.
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    async fn poll_partition(
        &mut self,
        topic: &str,
        partition: i32,
        wait: Duration,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let key = (topic.to_string(), partition);
        let mut position = self.positions[&key];
        if position.offset.is_none() {
            position.offset = Some(self.reset(topic, partition).await?);
        }
        if position.validate {
            position = self.validate(topic, partition, position).await?;
        }
        let offset = position.offset.expect("set above");
        let leader = self.cluster.leader_or_refresh(topic, partition).await?;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(self.config.max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(leader.epoch)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(self.config.partition_max_bytes)])]);
        let sent = self
            .cluster
            .connection(leader.broker)
            .await?
            .send(&request, 12)
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.cluster.drop_connection(leader.broker);
                self.positions.insert(
                    key,
                    Position {
                        validate: true,
                        ..position
                    },
                );
                return Err(e);
            }
        };
        let data = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty Fetch response".into()))?;
        match ResponseError::try_from_code(data.error_code) {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                self.positions.insert(
                    key,
                    Position {
                        offset: None,
                        ..position
                    },
                );
                return Ok(Vec::new());
            }
            Some(e) if is_retriable(e) => {
                // Leadership moved: learn the new leader, then validate.
                self.cluster.refresh(Some(&[topic]), false).await?;
                self.positions.insert(
                    key,
                    Position {
                        validate: true,
                        ..position
                    },
                );
                return Ok(Vec::new());
            }
            Some(error) => {
                return Err(ClientError::Kafka {
                    context: format!("fetch {topic}-{partition}"),
                    error,
                })
            }
        }
        let mut bytes = data.records.clone().unwrap_or_default();
        let mut records = Vec::new();
        let end = batches_end(&bytes);
        if !bytes.is_empty() {
            let sets = RecordBatchDecoder::decode_all(&mut bytes)
                .map_err(|e| ClientError::Protocol(format!("bad records: {e}")))?;
            for r in sets.into_iter().flat_map(|s| s.records) {
                if r.offset < offset || r.control {
                    continue;
                }
                position.offset = Some(r.offset + 1);
                position.epoch = Some(r.partition_leader_epoch);
                records.push(ConsumerRecord {
                    topic: topic.to_string(),
                    partition,
                    offset: r.offset,
                    leader_epoch: r.partition_leader_epoch,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                });
            }
        }
        // A compacted log may hold batches whose records were all cleaned
        // away: the position still moves past them.
        if let Some((end, epoch)) = end.filter(|(end, _)| Some(*end) > position.offset) {
            position.offset = Some(end);
            position.epoch = Some(epoch);
        }
        self.positions.insert(key, position);
        Ok(records)
    }

    /// The offset `reset` points at, by ListOffsets.
    async fn reset(&mut self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        let timestamp = match self.config.reset {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
            OffsetReset::None => {
                return Err(ClientError::Kafka {
                    context: format!("no position for {topic}-{partition}"),
                    error: ResponseError::OffsetOutOfRange,
                })
            }
        };
        let leader = self.cluster.leader_or_refresh(topic, partition).await?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(leader.epoch)
                    .with_timestamp(timestamp)])]);
        let response = self
            .cluster
            .connection(leader.broker)
            .await?
            .send(&request, 6)
            .await?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty ListOffsets response".into()))?;
        ClientError::check(
            p.error_code,
            || format!("list offsets of {topic}-{partition}"),
            None,
        )?;
        Ok(p.offset)
    }

    /// KIP-320: ask the leader where our last epoch ended; if that is below
    /// our position, the log was truncated under us: continue from there.
    async fn validate(
        &mut self,
        topic: &str,
        partition: i32,
        position: Position,
    ) -> Result<Position, ClientError> {
        let (Some(offset), Some(epoch)) = (position.offset, position.epoch) else {
            return Ok(Position {
                validate: false,
                ..position
            });
        };
        let leader = self.cluster.leader_or_refresh(topic, partition).await?;
        let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(leader.epoch)
                    .with_leader_epoch(epoch)]),
        ]);
        let response = self
            .cluster
            .connection(leader.broker)
            .await?
            .send(&request, 4)
            .await?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty OffsetForLeaderEpoch response".into()))?;
        ClientError::check(
            p.error_code,
            || format!("validate position of {topic}-{partition}"),
            None,
        )?;
        if p.end_offset < 0 {
            // The leader knows nothing of our epoch: start over per policy.
            return Ok(Position {
                offset: Some(self.reset(topic, partition).await?),
                epoch: None,
                validate: false,
            });
        }
        if p.end_offset < offset {
            tracing::warn!(
                topic,
                partition,
                position = offset,
                end = p.end_offset,
                "log truncated below our position"
            );
            return Ok(Position {
                offset: Some(p.end_offset),
                epoch: Some(p.leader_epoch),
                validate: false,
            });
        }
        Ok(Position {
            validate: false,
            ..position
        })
    }
}

/// The offset after the last complete RecordBatch v2 in `bytes`
/// (`baseOffset + lastOffsetDelta + 1`) and that batch's leader epoch: where
/// reading continues even when the batches held no records.
fn batches_end(bytes: &[u8]) -> Option<(i64, i32)> {
    let mut pos = 0usize;
    let mut end = None;
    while bytes.len() >= pos + 27 {
        let at = |i: usize, n: usize| &bytes[pos + i..pos + i + n];
        let base = i64::from_be_bytes(at(0, 8).try_into().ok()?);
        let length = i32::from_be_bytes(at(8, 4).try_into().ok()?);
        let epoch = i32::from_be_bytes(at(12, 4).try_into().ok()?);
        let last_delta = i32::from_be_bytes(at(23, 4).try_into().ok()?);
        let size = 12 + usize::try_from(length).ok()?;
        if bytes.len() < pos + size {
            break; // a partial batch at the end of a fetch
        }
        end = Some((base + i64::from(last_delta) + 1, epoch));
        pos += size;
    }
    end
}
