//! Metadata: this broker, the cluster id, and every requested topic with its
//! partitions, each led by this broker in epoch 1. Unknown topics are
//! auto-created when the broker allows it and the request does (v4+) or the
//! version predates the flag, as Kafka does.

use super::{str_bytes, topic_name};
use crate::state::Broker;
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Kafka's value for "authorized operations not requested".
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Handles a Metadata request.
pub fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(broker.config.node_id);
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        // v0 had no null: an empty list meant every topic.
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
        None => None,
    };
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match wanted {
        None => {
            let names: Vec<String> = broker.image().topics.keys().cloned().collect();
            names
                .iter()
                .map(|n| describe(broker, Some(n), Uuid::nil(), false, version))
                .collect()
        }
        Some(wanted) => wanted
            .iter()
            .map(|(name, id)| describe(broker, name.as_deref(), *id, auto_create, version))
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(str_bytes(&broker.config.advertised_host))
            .with_port(i32::from(broker.config.advertised_port))])
        .with_cluster_id((version >= 2).then(|| str_bytes(&broker.image().cluster_id)))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_OMITTED)
}

fn describe(
    broker: &Broker,
    name: Option<&str>,
    id: Uuid,
    auto_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    let found = {
        let image = broker.image();
        match name {
            Some(n) => image.topics.get(n).map(|t| (n.to_string(), t.clone())),
            None => image.topic_by_id(id).map(|(n, t)| (n.clone(), t.clone())),
        }
    };
    let found = match (found, name) {
        (Some(found), _) => Ok(found),
        (None, Some(n)) if auto_create => broker
            .create_topic(n, -1, -1, BTreeMap::new(), false)
            .map(|meta| (n.to_string(), meta))
            .or_else(|(e, _)| match e {
                // Another request created it in between.
                ResponseError::TopicAlreadyExists => broker
                    .image()
                    .topics
                    .get(n)
                    .map(|t| (n.to_string(), t.clone()))
                    .ok_or(e),
                e => Err(e),
            }),
        (None, Some(n)) if crate::image::validate_topic_name(n).is_err() => {
            Err(ResponseError::InvalidTopicException)
        }
        (None, Some(_)) => Err(ResponseError::UnknownTopicOrPartition),
        (None, None) => Err(ResponseError::UnknownTopicId),
    };
    let base = MetadataResponseTopic::default()
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPERATIONS_OMITTED);
    let (name, meta) = match found {
        Ok(found) => found,
        Err(e) => return base.with_error_code(e.code()),
    };
    let node = BrokerId(broker.config.node_id);
    let partitions = (0..meta.partitions)
        .map(|p| {
            let epoch = broker
                .partition(&name, p)
                .map_or(crate::partition::SINGLE_NODE_EPOCH, |p| p.leader_epoch);
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { epoch } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    base.with_name(Some(topic_name(&name)))
        .with_topic_id(if version >= 10 { meta.id } else { Uuid::nil() })
        .with_partitions(partitions)
}
