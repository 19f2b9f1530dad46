//! The read half: Kafka's `ReplicaManager.fetchMessages`, for consumers
//! and followers alike.
//!
//! A fetch reads whole batches up to the high watermark (a follower: up to
//! the log end), within `max_bytes` and each partition's limit, and long
//! polls until `min_bytes` or `max_wait` in the purgatory of the
//! partitions it asks for (a follower's fetch waits for their log ends to
//! move, a consumer's for their high watermarks), never by spinning.

use crate::partition::Partition;
use crate::purgatory::Waiter;
use crate::state::Broker;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use storage::ReadError;

/// What a fetch asks for (Kafka's `FetchParams` and its partitions).
#[derive(Debug, Clone)]
pub struct FetchParams {
    /// The fetching follower's broker id, or -1 for a consumer.
    pub replica_id: i32,
    /// The longest the fetch waits for `min_bytes`.
    pub max_wait: Duration,
    /// The bytes that answer the fetch before `max_wait`.
    pub min_bytes: usize,
    /// The response's byte budget (KIP-74: the first partition with data
    /// gets one batch past it).
    pub max_bytes: usize,
    /// The request's version: the log start is answered from v5.
    pub version: i16,
    /// The partitions, by topic, in request order.
    pub topics: Vec<FetchTopic>,
}

/// One topic's partitions of a fetch.
#[derive(Debug, Clone)]
pub struct FetchTopic {
    /// Topic.
    pub topic: String,
    /// Each partition's offset, limit and epoch, and a follower's durable
    /// end (`crate::durable_end`).
    pub partitions: Vec<FetchPartition>,
}

/// Each topic's partitions' answers, in request order; a partition this
/// broker may not serve carries the error code alone.
pub type FetchResults = Vec<(String, Vec<PartitionData>)>;

/// Reads now; if the read falls short of `min_bytes` and nothing failed,
/// waits for a watched partition to move (or `max_wait`) and reads again.
pub async fn fetch(broker: &Arc<Broker>, params: FetchParams) -> FetchResults {
    let deadline = tokio::time::Instant::now() + params.max_wait;
    let params = Arc::new(params);
    let waiter = Waiter::new();
    loop {
        // Registered before the read, so no change in between is missed.
        watch(broker, &params, &waiter);
        let (results, bytes, errors) = read_once(broker, &params).await;
        let satisfied = bytes >= params.min_bytes || errors;
        if satisfied || tokio::time::Instant::now() >= deadline {
            return results;
        }
        if !waiter.wait_until(deadline).await {
            return read_once(broker, &params).await.0;
        }
    }
}

/// A follower's fetch counts its position at once, in request order, when
/// it is read (Kafka updates follower state before the long poll too): a
/// position report pipelined behind a long-polling fetch moves the high
/// watermark without waiting for it. Leadership, epoch and lease are
/// checked as for the read; a refused partition is answered by the read.
pub fn record_follower_positions(broker: &Broker, params: &FetchParams) {
    let replica = params.replica_id;
    if replica < 0 {
        return;
    }
    let now = broker.now_ms();
    let image = broker.image();
    for topic in &params.topics {
        let name = topic.topic.as_str();
        for p in &topic.partitions {
            let member = image
                .partition(name, p.partition)
                .is_some_and(|s| s.replicas.contains(&replica));
            if !member {
                continue;
            }
            let _ = broker.serve(name, p.partition, p.current_leader_epoch, |led| {
                led.partition
                    .on_follower_fetch(now, replica, crate::durable_end::position(p));
                Ok(())
            });
        }
    }
}

/// Registers `waiter` with every requested partition this broker holds: a
/// follower's fetch for appends, a consumer's for high-watermark moves.
fn watch(broker: &Broker, params: &FetchParams, waiter: &Waiter) {
    for topic in &params.topics {
        for p in &topic.partitions {
            let Some(partition) = broker.partition(&topic.topic, p.partition) else {
                continue;
            };
            match params.replica_id >= 0 {
                true => partition.watch_appends(waiter),
                false => partition.watch_high_watermark(waiter),
            }
        }
    }
}

/// One pass over every requested partition: (answers, bytes returned,
/// whether any partition had an error). A pass that reads only active
/// segments (followers and consumers at the tail) runs on this task; one
/// that may read cold segments from disk runs on a blocking thread.
async fn read_once(broker: &Arc<Broker>, params: &Arc<FetchParams>) -> (FetchResults, usize, bool) {
    if reads_hot(broker, params) {
        return read_pass(broker, params);
    }
    let (shared, asked) = (broker.clone(), params.clone());
    tokio::task::spawn_blocking(move || read_pass(&shared, &asked))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "fetch task failed");
            (failed(params, ResponseError::UnknownServerError), 0, true)
        })
}

/// Every partition of `params` answered with `error`.
fn failed(params: &FetchParams, error: ResponseError) -> FetchResults {
    let answer = |t: &FetchTopic| {
        let partitions = t.partitions.iter();
        let answers = partitions.map(|p| empty(p.partition).with_error_code(error.code()));
        (t.topic.clone(), answers.collect())
    };
    params.topics.iter().map(answer).collect()
}

/// Whether every requested partition this broker holds is read from its
/// active segment.
fn reads_hot(broker: &Broker, params: &FetchParams) -> bool {
    params.topics.iter().all(|topic| {
        topic.partitions.iter().all(|p| {
            broker
                .partition(&topic.topic, p.partition)
                .is_none_or(|partition| partition.reads_hot(p.fetch_offset))
        })
    })
}

fn read_pass(broker: &Broker, params: &FetchParams) -> (FetchResults, usize, bool) {
    let mut budget = params.max_bytes;
    let (mut total, mut errors) = (0, false);
    let mut topics = Vec::with_capacity(params.topics.len());
    for topic in &params.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let read = PartitionRead {
                topic: &topic.topic,
                p,
                budget,
                first: total == 0,
                version: params.version,
                replica: params.replica_id,
            };
            let data = read.answer(broker);
            let returned = data.records.as_ref().map_or(0, |r| r.len());
            budget = budget.saturating_sub(returned);
            total += returned;
            errors |= data.error_code != 0;
            partitions.push(data);
        }
        topics.push((topic.topic.clone(), partitions));
    }
    (topics, total, errors)
}

/// A partition's answer before anything is read: no offsets known.
fn empty(partition: i32) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

/// One partition of a fetch, with the response budget left for it.
struct PartitionRead<'a> {
    topic: &'a str,
    p: &'a FetchPartition,
    budget: usize,
    /// The first partition with data: KIP-74 lets it exceed the budget.
    first: bool,
    version: i16,
    /// The fetching follower's id, or -1 for a consumer.
    replica: i32,
}

impl PartitionRead<'_> {
    /// The partition's answer: read between the lease checks of
    /// [`Broker::serve`], or the leadership error.
    fn answer(&self, broker: &Broker) -> PartitionData {
        let (topic, p) = (self.topic, self.p);
        let read = broker.serve(topic, p.partition, p.current_leader_epoch, |led| {
            Ok(self.read(broker, &led.partition))
        });
        read.unwrap_or_else(|e| empty(p.partition).with_error_code(e.code()))
    }

    /// Reads the partition this broker leads.
    fn read(&self, broker: &Broker, partition: &Partition) -> PartitionData {
        let (topic, p, version, replica) = (self.topic, self.p, self.version, self.replica);
        let (first, budget) = (self.first, self.budget);
        // A follower reads up to the log end, not the HW (its position was
        // counted when its request arrived: `record_follower_positions`).
        let follower = replica >= 0
            && broker
                .image()
                .partition(topic, p.partition)
                .is_some_and(|s| s.replicas.contains(&replica));
        let (start, hw, end) = partition.offsets();
        let limit = if follower { end } else { hw };
        let start = if version >= 5 { start } else { -1 };
        let data = empty(p.partition)
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(start);
        // KIP-74: past the response budget, only the first partition still gets
        // one batch, so a consumer always makes progress.
        let max =
            (p.partition_max_bytes.max(0) as usize).min(if first { usize::MAX } else { budget });
        if (max == 0 && !first) || (follower && crate::durable_end::is_report(p)) {
            return data.with_records(Some(Bytes::new()));
        }
        let read = if follower {
            partition
                .read(p.fetch_offset, max.max(1), limit)
                .map(|r| r.bytes)
        } else {
            partition.read_records(p.fetch_offset, max.max(1), limit)
        };
        match read {
            Ok(bytes) => data.with_records(Some(bytes.into())),
            Err(ReadError::OffsetOutOfRange { .. }) => {
                data.with_error_code(ResponseError::OffsetOutOfRange.code())
            }
            Err(ReadError::Corrupt(c)) => {
                tracing::error!(topic, partition = p.partition, error = %c, "corrupt data not served");
                data.with_error_code(ResponseError::KafkaStorageError.code())
            }
            Err(ReadError::Storage(e)) => {
                tracing::error!(topic, partition = p.partition, error = %e, "fetch failed");
                data.with_error_code(ResponseError::KafkaStorageError.code())
            }
        }
    }
}
