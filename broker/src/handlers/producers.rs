//! The idempotent producer's APIs: InitProducerId hands out producer ids
//! (from blocks the controller quorum commits, `crate::producer_ids`), and
//! DescribeProducers (KIP-664) shows a partition leader's producer state.
//!
//! Without a transactional id, any broker answers InitProducerId, and it
//! always gives a fresh producer id at epoch 0, as Kafka does: a producer
//! that sends its current id and epoch (KIP-360, v3+) after an
//! UNKNOWN_PRODUCER_ID or OUT_OF_ORDER_SEQUENCE_NUMBER gets a new id, so
//! its sequences start again at 0. Transactional ids need the transaction
//! coordinator, which Baton does not have yet: they are refused with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as transactional produces are.

use super::{str_bytes, topic_name};
use crate::state::Broker;
use kafka_protocol::messages::describe_producers_request::DescribeProducersRequest;
use kafka_protocol::messages::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::ProducerId;
use kafka_protocol::ResponseError;

/// InitProducerId for producers without a transactional id.
pub async fn init_producer_id(
    broker: &Broker,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty())
    {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response.with_error_code(code);
    }
    match crate::producer_ids::next_producer_id(broker).await {
        Ok(id) => {
            tracing::debug!(producer_id = id, "producer id handed out");
            response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err((error, why)) => {
            tracing::warn!(%why, "no producer id to hand out");
            response.with_error_code(error.code())
        }
    }
}

/// DescribeProducers: each partition's producers, answered by its leader.
pub fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| describe_partition(broker, &name, index))
                .collect();
            TopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe_partition(broker: &Broker, topic: &str, index: i32) -> PartitionResponse {
    // `serve` answers UNKNOWN_TOPIC_OR_PARTITION and NOT_LEADER_OR_FOLLOWER.
    let described = broker.serve(topic, index, -1, |led| {
        Ok(led.partition.with_producers(producers_of))
    });
    let response = PartitionResponse::default().with_partition_index(index);
    match described {
        Ok(active) => response.with_active_producers(active),
        Err(e) => response
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(&e.to_string()))),
    }
}

fn producers_of(state: &storage::producer_state::ProducerState) -> Vec<ProducerState> {
    state
        .iter()
        .map(|(id, entry)| {
            let last = entry.last();
            ProducerState::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(i32::from(entry.producer_epoch))
                .with_last_sequence(last.last_sequence)
                .with_last_timestamp(last.timestamp)
                .with_coordinator_epoch(-1)
                .with_current_txn_start_offset(-1)
        })
        .collect()
}
