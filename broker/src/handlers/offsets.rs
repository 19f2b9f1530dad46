//! ListOffsets (earliest, latest, by timestamp) and OffsetForLeaderEpoch.

use super::topic_name;
use crate::partition::Partition;
use crate::state::Broker;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use std::sync::Arc;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

/// Handles ListOffsets.
pub async fn list_offsets(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let broker = broker.clone();
    let topics = tokio::task::spawn_blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| list_partition(&broker, &name, p, version))
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    ListOffsetsResponse::default().with_topics(topics)
}

fn list_partition(
    broker: &Broker,
    topic: &str,
    p: &ListOffsetsPartition,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let base = ListOffsetsPartitionResponse::default()
        .with_partition_index(p.partition_index)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1);
    let answer = broker.serve(topic, p.partition_index, p.current_leader_epoch, |led| {
        Ok(list_led(
            &led.partition,
            led.leader_epoch,
            p,
            version,
            base.clone(),
        ))
    });
    answer.unwrap_or_else(|e| base.with_error_code(e.code()))
}

/// The offset asked for, in a partition this broker leads.
fn list_led(
    partition: &Partition,
    epoch: i32,
    p: &ListOffsetsPartition,
    version: i16,
    base: ListOffsetsPartitionResponse,
) -> ListOffsetsPartitionResponse {
    let (start, hw, _) = partition.offsets();
    let base = if version >= 4 {
        base.with_leader_epoch(epoch)
    } else {
        base
    };
    match p.timestamp {
        LATEST => base.with_offset(hw),
        EARLIEST => base.with_offset(start),
        t if t >= 0 => match by_timestamp(partition, t, hw) {
            Ok(Some((offset, timestamp))) => base.with_offset(offset).with_timestamp(timestamp),
            Ok(None) => base,
            Err(e) => base.with_error_code(e.code()),
        },
        _ => base.with_error_code(ResponseError::InvalidRequest.code()),
    }
}

/// The first committed record with a timestamp at or after `timestamp`:
/// the log finds its batch, the records of that batch give the offset.
fn by_timestamp(
    partition: &Partition,
    timestamp: i64,
    hw: i64,
) -> Result<Option<(i64, i64)>, ResponseError> {
    let found = partition.find_by_timestamp(timestamp, hw).map_err(|e| {
        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "timestamp lookup failed");
        ResponseError::KafkaStorageError
    })?;
    let Some(read) = found else { return Ok(None) };
    let mut bytes = bytes::Bytes::from(read.bytes);
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|_| ResponseError::CorruptMessage)?;
    Ok(set
        .records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map(|r| (r.offset, r.timestamp)))
}

/// Handles OffsetForLeaderEpoch: where the requested epoch ended.
pub fn offset_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let answer = broker.serve(&name, p.partition, p.current_leader_epoch, |led| {
                        Ok(led.partition.end_offset_for_epoch(p.leader_epoch))
                    });
                    match answer {
                        Ok(Some((epoch, end))) => {
                            base.with_leader_epoch(epoch).with_end_offset(end)
                        }
                        Ok(None) => base,
                        Err(e) => base.with_error_code(e.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
