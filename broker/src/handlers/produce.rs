//! Produce, in two phases so a connection can pipeline requests: `prepare`
//! validates each partition's batches, checks the producer's epoch token and
//! appends, in request order; the future it returns waits for the flush
//! policy (pipelined requests share fdatasyncs) and builds the response.

use super::{check_epoch, topic_name};
use crate::partition::Partition;
use crate::state::Broker;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use storage::batch::{self, BatchError};
use storage::producer_state::SequenceError;
use storage::{AppendError, AppendInfo};

/// An append waiting for its commit: the replica, what was appended, the
/// epoch it was led in, and how many ISR members acks=all needs.
type Appended = Result<(Arc<Partition>, AppendInfo, i32, usize), ResponseError>;

/// Appends every partition's batches now, in order; the returned future
/// resolves to the response once they are committed (`None` for acks=0).
pub async fn prepare(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut appended: Vec<(String, i32, Appended)> = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        for partition in topic.partition_data {
            let result = if request.transactional_id.is_some() {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            } else if !matches!(acks, -1..=1) {
                Err(ResponseError::InvalidRequiredAcks)
            } else {
                append(broker, &name, partition.index, partition.records, acks).await
            };
            appended.push((name.clone(), partition.index, result));
        }
    }
    let broker = broker.clone();
    async move {
        let now = broker.wall_ms();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut topics: Vec<TopicProduceResponse> = Vec::new();
        let mut endpoints: Vec<NodeEndpoint> = Vec::new();
        for (name, index, result) in appended {
            let committed = match result {
                Ok((partition, info, epoch, min_isr)) => {
                    let local = partition.commit(info, now).await.map_err(|e| {
                        tracing::error!(topic = %name, partition = index, error = %e, "commit failed");
                        ResponseError::KafkaStorageError
                    });
                    let replicated = match (local, acks) {
                        (Ok(()), -1) => {
                            let wait = crate::replica_wait::Replicated {
                                topic: &name,
                                index,
                                epoch,
                                min_isr,
                            };
                            wait.until(&broker, &partition, info.last_offset, deadline)
                                .await
                        }
                        (local, _) => local,
                    };
                    replicated.map(|()| (partition.offsets().0, info.base_offset))
                }
                Err(e) => Err(e),
            };
            let (start, base) = committed.unwrap_or((-1, -1));
            let mut response = PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(super::code(&committed))
                .with_base_offset(base)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(if version >= 5 { start } else { -1 });
            if version >= 10
                && committed
                    .as_ref()
                    .is_err_and(|e| super::is_leadership_error(*e))
            {
                // KIP-951: where the partition's leadership is now, so the
                // client re-routes without a metadata round trip.
                if let Some(hint) = super::leader_hint(&broker, &name, index) {
                    response.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(hint.leader))
                        .with_leader_epoch(hint.leader_epoch);
                    if let Some((host, port)) = hint.endpoint {
                        if !endpoints
                            .iter()
                            .any(|e: &NodeEndpoint| e.node_id.0 == hint.leader)
                        {
                            endpoints.push(
                                NodeEndpoint::default()
                                    .with_node_id(BrokerId(hint.leader))
                                    .with_host(super::str_bytes(&host))
                                    .with_port(port),
                            );
                        }
                    }
                }
            }
            match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t.partition_responses.push(response),
                None => topics.push(
                    TopicProduceResponse::default()
                        .with_name(topic_name(&name))
                        .with_partition_responses(vec![response]),
                ),
            }
        }
        (acks != 0).then(|| {
            ProduceResponse::default()
                .with_responses(topics)
                .with_node_endpoints(endpoints)
        })
    }
}

/// Validates and appends one partition's batches (not yet committed).
/// acks=all with fewer ISR members than `min.insync.replicas` is refused
/// before anything is written.
async fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
) -> Appended {
    let min_isr = {
        let image = broker.image();
        let configs = image
            .topics
            .get(topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let replicas = image
            .partition(topic, index)
            .map_or(1, |p| p.replicas.len());
        crate::partition::min_insync_replicas(&configs, broker.config.min_insync_replicas, replicas)
    };
    broker.serve(topic, index, -1, |led| {
        if acks == -1 && led.partition.isr_len(led.leader_epoch) < min_isr {
            return Err(ResponseError::NotEnoughReplicas);
        }
        let records = records.ok_or(ResponseError::CorruptMessage)?;
        check_tokens(&records, led.leader_epoch)?;
        let info = led
            .partition
            .append(&records, led.leader_epoch, broker.wall_ms())
            .map_err(|e| {
                tracing::debug!(topic, partition = index, error = %e, "produce refused");
                append_error_code(&e)
            })?;
        Ok((led.partition.clone(), info, led.leader_epoch, min_isr))
    })
}

/// The producer's `partitionLeaderEpoch` in each batch is a fencing token
/// (claim 3). Unparseable batches are left for the log to refuse.
fn check_tokens(records: &[u8], leader_epoch: i32) -> Result<(), ResponseError> {
    let mut position = 0;
    while let Ok(header) = batch::parse_header(&records[position..], usize::MAX >> 1) {
        check_epoch(header.partition_leader_epoch, leader_epoch)?;
        position += header.size;
        if position >= records.len() {
            break;
        }
    }
    Ok(())
}

/// The producer rules' refusals, one Kafka code each.
fn sequence_error_code(e: &SequenceError) -> ResponseError {
    match e {
        SequenceError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        SequenceError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        SequenceError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
    }
}

fn append_error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch {
            source: BatchError::UnsupportedMagic(_),
            ..
        } => ResponseError::UnsupportedForMessageFormat,
        AppendError::InvalidBatch {
            source: BatchError::InvalidLength { length, max, .. },
            ..
        } if *length > *max as i64 => ResponseError::MessageTooLarge,
        AppendError::InvalidBatch { .. } | AppendError::Empty => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } => ResponseError::RecordListTooLarge,
        AppendError::InvalidProducerBatch(_) => ResponseError::InvalidRecord,
        AppendError::Sequence(e) => sequence_error_code(e),
        AppendError::EpochRegression(_)
        | AppendError::OffsetMismatch { .. }
        | AppendError::Storage(_) => ResponseError::KafkaStorageError,
    }
}
