//! Produce, in two phases so a connection can pipeline requests: `prepare`
//! validates each partition's batches, checks the producer's epoch token and
//! appends, in request order; the future it returns waits for the flush
//! policy (pipelined requests share fdatasyncs) and builds the response.

use super::{check_epoch, now_ms, topic_name};
use crate::partition::Partition;
use crate::state::Broker;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::ResponseError;
use std::future::Future;
use std::sync::Arc;
use storage::batch::{self, BatchError};
use storage::{AppendError, AppendInfo};

type Appended = Result<(Arc<Partition>, AppendInfo), ResponseError>;

/// Appends every partition's batches now, in order; the returned future
/// resolves to the response once they are committed (`None` for acks=0).
pub async fn prepare(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = request.acks;
    let mut appended: Vec<(String, i32, Appended)> = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        for partition in topic.partition_data {
            let result = if request.transactional_id.is_some() {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            } else if !matches!(acks, -1..=1) {
                Err(ResponseError::InvalidRequiredAcks)
            } else {
                append(broker, &name, partition.index, partition.records).await
            };
            appended.push((name.clone(), partition.index, result));
        }
    }
    let broker = broker.clone();
    async move {
        let now = now_ms();
        let mut topics: Vec<TopicProduceResponse> = Vec::new();
        for (name, index, result) in appended {
            let committed = match result {
                Ok((partition, info)) => match partition.commit(info, now).await {
                    Ok(()) => Ok((partition.offsets().0, info.base_offset)),
                    Err(e) => {
                        tracing::error!(topic = %name, partition = index, error = %e, "commit failed");
                        Err(ResponseError::KafkaStorageError)
                    }
                },
                Err(e) => Err(e),
            };
            let (start, base) = committed.unwrap_or((-1, -1));
            let response = PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(super::code(&committed))
                .with_base_offset(base)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(if version >= 5 { start } else { -1 });
            match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t.partition_responses.push(response),
                None => topics.push(
                    TopicProduceResponse::default()
                        .with_name(topic_name(&name))
                        .with_partition_responses(vec![response]),
                ),
            }
        }
        broker.notify_data();
        (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
    }
}

/// Validates and appends one partition's batches (not yet committed).
async fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
) -> Appended {
    let led = broker.leader(topic, index, -1)?;
    let records = records.ok_or(ResponseError::CorruptMessage)?;
    check_tokens(&records, led.leader_epoch)?;
    let partition = led.partition;
    let info = partition
        .append(&records, led.leader_epoch, now_ms())
        .map_err(|e| {
            tracing::debug!(topic, partition = index, error = %e, "produce refused");
            append_error_code(&e)
        })?;
    Ok((partition, info))
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
        AppendError::EpochRegression(_) | AppendError::Storage(_) => {
            ResponseError::KafkaStorageError
        }
    }
}
