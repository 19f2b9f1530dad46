//! Fetch: whole batches up to the high watermark, within `max_bytes` and
//! each partition's limit; long polls until `min_bytes` or `max_wait_ms`
//! in the purgatory of the partitions it asks for (a follower's fetch
//! waits for their log ends to move, a consumer's for their high
//! watermarks), never by spinning.

use super::topic_name;
use crate::partition::Partition;
use crate::purgatory::Waiter;
use crate::state::Broker;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest};
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use storage::ReadError;

/// Handles a Fetch request.
pub async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    if request.session_id != 0 {
        // Baton creates no fetch sessions (KIP-227), so none can be found.
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let request = Arc::new(request);
    let waiter = Waiter::new();
    loop {
        // Registered before the read, so no change in between is missed.
        watch(broker, &request, &waiter);
        let (response, bytes, errors) = read_once(broker, &request, version).await;
        let satisfied = bytes >= request.min_bytes.max(0) as usize || errors;
        if satisfied || tokio::time::Instant::now() >= deadline {
            return response;
        }
        if !waiter.wait_until(deadline).await {
            return read_once(broker, &request, version).await.0;
        }
    }
}

/// A follower's fetch counts its position at once, in request order, when
/// it is read (Kafka updates follower state before the long poll too): a
/// position report pipelined behind a long-polling fetch moves the high
/// watermark without waiting for it. The long poll and the read are left
/// to [`handle`]. Leadership, epoch and lease are checked as for the read;
/// a refused partition is answered by the read.
pub fn record_positions(broker: &Broker, request: &FetchRequest) {
    let replica = request.replica_id.0;
    if replica < 0 || request.session_id != 0 {
        return;
    }
    let now = broker.now_ms();
    let image = broker.image();
    for topic in &request.topics {
        let name = topic.topic.0.as_str();
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
fn watch(broker: &Broker, request: &FetchRequest, waiter: &Waiter) {
    for topic in &request.topics {
        for p in &topic.partitions {
            let Some(partition) = broker.partition(topic.topic.0.as_str(), p.partition) else {
                continue;
            };
            match request.replica_id.0 >= 0 {
                true => partition.watch_appends(waiter),
                false => partition.watch_high_watermark(waiter),
            }
        }
    }
}

/// One pass over every requested partition: (response, bytes returned,
/// whether any partition had an error). A pass that reads only active
/// segments (followers and consumers at the tail) runs on this task; one
/// that may read cold segments from disk runs on a blocking thread.
async fn read_once(
    broker: &Arc<Broker>,
    request: &Arc<FetchRequest>,
    version: i16,
) -> (FetchResponse, usize, bool) {
    if reads_hot(broker, request) {
        return read_pass(broker, request, version);
    }
    let (broker, request) = (broker.clone(), request.clone());
    tokio::task::spawn_blocking(move || read_pass(&broker, &request, version))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "fetch task failed");
            (
                FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
                0,
                true,
            )
        })
}

/// Whether every requested partition this broker holds is read from its
/// active segment.
fn reads_hot(broker: &Broker, request: &FetchRequest) -> bool {
    request.topics.iter().all(|topic| {
        topic.partitions.iter().all(|p| {
            broker
                .partition(topic.topic.0.as_str(), p.partition)
                .is_none_or(|partition| partition.reads_hot(p.fetch_offset))
        })
    })
}

fn read_pass(
    broker: &Broker,
    request: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let mut budget = request.max_bytes.max(0) as usize;
    let (mut total, mut errors) = (0, false);
    let mut topics = Vec::new();
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let read = PartitionRead {
                topic: &name,
                p,
                budget,
                first: total == 0,
                version,
                replica: request.replica_id.0,
            };
            let data = read.answer(broker);
            let returned = data.records.as_ref().map_or(0, |r| r.len());
            budget = budget.saturating_sub(returned);
            total += returned;
            errors |= data.error_code != 0;
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        errors,
    )
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
    fn empty(&self) -> PartitionData {
        PartitionData::default()
            .with_partition_index(self.p.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
    }

    /// The partition's answer: read between the lease checks of
    /// [`Broker::serve`], or the leadership error with the current leader.
    fn answer(&self, broker: &Broker) -> PartitionData {
        let (topic, p) = (self.topic, self.p);
        let read = broker.serve(topic, p.partition, p.current_leader_epoch, |led| {
            Ok(self.read(broker, &led.partition))
        });
        let e = match read {
            Ok(data) => return data,
            Err(e) => e,
        };
        let mut data = self.empty().with_error_code(e.code());
        if self.version >= 12 && super::is_leadership_error(e) {
            // KIP-951 (and KIP-320 followers): the current leader.
            if let Some(hint) = super::leader_hint(broker, topic, p.partition) {
                data.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(kafka_protocol::messages::BrokerId(hint.leader))
                    .with_leader_epoch(hint.leader_epoch);
            }
        }
        data
    }

    /// Reads the partition this broker leads.
    fn read(&self, broker: &Broker, partition: &Partition) -> PartitionData {
        let (topic, p, version, replica) = (self.topic, self.p, self.version, self.replica);
        let (first, budget) = (self.first, self.budget);
        let data = self.empty();
        // A follower reads up to the log end, not the HW (its position was
        // counted when its request arrived: `record_positions`).
        let follower = replica >= 0
            && broker
                .image()
                .partition(topic, p.partition)
                .is_some_and(|s| s.replicas.contains(&replica));
        let (start, hw, end) = partition.offsets();
        let limit = if follower { end } else { hw };
        let start = if version >= 5 { start } else { -1 };
        let data = data
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(start);
        // KIP-74: past the response budget, only the first partition still gets
        // one batch, so a consumer always makes progress.
        let max =
            (p.partition_max_bytes.max(0) as usize).min(if first { usize::MAX } else { budget });
        if (max == 0 && !first) || (follower && crate::durable_end::is_report(p)) {
            return data.with_records(Some(bytes::Bytes::new()));
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
