//! Produce: validate each partition's batches, check the producer's epoch
//! token, append with the flush policy, answer with the base offset.

use super::{check_epoch, now_ms, topic_name};
use crate::state::Broker;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::ResponseError;
use std::sync::Arc;
use storage::batch::{self, BatchError};
use storage::AppendError;

/// Handles a Produce request; `None` for acks=0, which gets no response.
pub async fn handle(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut pending = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        for partition in topic.partition_data {
            let broker = broker.clone();
            let index = partition.index;
            let records = partition.records;
            let transactional = request.transactional_id.is_some();
            let topic = name.clone();
            let task = tokio::spawn(async move {
                if transactional {
                    return Err(ResponseError::TransactionalIdAuthorizationFailed);
                }
                if !matches!(acks, -1..=1) {
                    return Err(ResponseError::InvalidRequiredAcks);
                }
                append(&broker, &topic, index, records).await
            });
            pending.push((name.clone(), index, task));
        }
    }
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for (name, index, task) in pending {
        let result = task.await.unwrap_or(Err(ResponseError::UnknownServerError));
        let (start, base) = match &result {
            Ok((start, base)) => (*start, *base),
            Err(_) => (-1, -1),
        };
        let response = PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(super::code(&result))
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
    (acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

/// Appends one partition's batches: (log start offset, base offset).
async fn append(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
) -> Result<(i64, i64), ResponseError> {
    let partition = broker
        .partition(topic, index)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let records = records.ok_or(ResponseError::CorruptMessage)?;
    check_tokens(&records, partition.leader_epoch)?;
    let info = partition.append(records, now_ms()).await.map_err(|e| {
        let code = append_error_code(&e);
        tracing::debug!(topic, partition = index, error = %e, "produce refused");
        code
    })?;
    broker.notify_data();
    Ok((partition.offsets().0, info.base_offset))
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
