//! FindCoordinator, OffsetCommit and OffsetFetch with this broker as every
//! group's coordinator and offsets kept durably, so consumers that need a
//! group id (librdkafka refuses to start without one) work with `assign()`.
//! Group membership (JoinGroup, SyncGroup, Heartbeat) is issue 7 and is not
//! advertised.

use super::{str_bytes, topic_name};
use crate::groups::Committed;
use crate::state::Broker;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;

const KEY_GROUP: i8 = 0;

/// Handles FindCoordinator: groups only (no transactions).
pub fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (node, host, port) = (
        BrokerId(broker.config.node_id),
        str_bytes(&broker.config.advertised_host),
        i32::from(broker.config.advertised_port),
    );
    let error = if request.key_type == KEY_GROUP {
        0
    } else {
        ResponseError::InvalidRequest.code()
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(node)
        .with_host(host)
        .with_port(port)
}

/// Handles OffsetCommit: all of a request's offsets are written durably
/// together before the answer.
pub fn offset_commit(broker: &Broker, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let mut entries = Vec::new();
    let mut topics = Vec::new();
    for t in &request.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let known = broker.image().partition(&name, p.partition_index).is_some();
            let code = if known {
                0
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            if known {
                let committed = Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                };
                entries.push(((group.clone(), name.clone(), p.partition_index), committed));
            }
            partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions),
        );
    }
    if let Err(e) = broker.group_offsets.commit(entries) {
        tracing::error!(group, error = %e, "offset commit failed");
        for t in &mut topics {
            for p in &mut t.partitions {
                p.error_code = ResponseError::KafkaStorageError.code();
            }
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// Handles OffsetFetch (one group per request, v1 to v7). A null topic
/// list (v2+) asks for every partition of every topic.
pub fn offset_fetch(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let group = request.group_id.0.to_string();
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect(),
        None => broker
            .image()
            .topics
            .iter()
            .map(|(n, t)| (n.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|(name, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|i| {
                    let base = OffsetFetchResponsePartition::default().with_partition_index(i);
                    match broker.group_offsets.fetch(&group, &name, i) {
                        Some(c) => base
                            .with_committed_offset(c.offset)
                            .with_committed_leader_epoch(if version >= 5 {
                                c.leader_epoch
                            } else {
                                -1
                            })
                            .with_metadata(c.metadata.as_deref().map(str_bytes)),
                        None => base
                            .with_committed_offset(-1)
                            .with_metadata(Some(str_bytes(""))),
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
