//! Metadata: the live brokers, the cluster id, and every requested topic
//! with each partition's leader, leader epoch, replicas and ISR, all from
//! this broker's metadata image. Unknown topics are auto-created (through
//! the controller) when the broker allows it and the request does (v4+) or
//! the version predates the flag, as Kafka does.

use super::{str_bytes, topic_name};
use crate::image::MetadataImage;
use crate::state::Broker;
use controller::metadata::{PartitionState, Topic};
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
pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
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
    let mut found = Vec::new();
    match wanted {
        None => {
            let image = broker.image();
            found.extend(
                image
                    .topics
                    .iter()
                    .map(|(n, t)| (Some(n.clone()), Uuid::nil(), Ok((n.clone(), t.clone())))),
            );
        }
        Some(wanted) => {
            for (name, id) in wanted {
                let topic = lookup(broker, name.as_deref(), id, auto_create).await;
                found.push((name, id, topic));
            }
        }
    }
    // One image for the whole answer, taken after any auto-creation.
    let image = broker.image();
    let topics = found
        .into_iter()
        .map(|(name, id, topic)| describe(&image, name.as_deref(), id, topic, version))
        .collect();
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint.rsplit_once(':')?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(host))
                    .with_port(port.parse().ok()?),
            )
        })
        .collect();
    // Kafka's KRaft brokers name a live broker as "controller" (clients
    // send it admin requests); every Baton broker forwards them.
    let controller = image.live_brokers().next().map_or(-1, |b| b.id);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id((version >= 2).then(|| str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_OMITTED)
}

type Found = Result<(String, Topic), ResponseError>;

async fn lookup(broker: &Broker, name: Option<&str>, id: Uuid, auto_create: bool) -> Found {
    let known = {
        let image = broker.image();
        match name {
            Some(n) => image.topics.get(n).map(|t| (n.to_string(), t.clone())),
            None => image.topic_by_id(id).map(|(n, t)| (n.clone(), t.clone())),
        }
    };
    match (known, name) {
        (Some(found), _) => Ok(found),
        (None, Some(n)) if crate::image::validate_topic_name(n).is_err() => {
            Err(ResponseError::InvalidTopicException)
        }
        (None, Some(n)) if auto_create => {
            let created =
                crate::controller_link::create_topic(broker, n, -1, -1, BTreeMap::new(), false)
                    .await;
            match created {
                // Another request created it in between: fine.
                Ok(_) | Err((ResponseError::TopicAlreadyExists, _)) => broker
                    .image()
                    .topics
                    .get(n)
                    .map(|t| (n.to_string(), t.clone()))
                    .ok_or(ResponseError::LeaderNotAvailable),
                Err((e, why)) => {
                    tracing::warn!(topic = n, %why, "auto-creation failed");
                    Err(e)
                }
            }
        }
        (None, Some(_)) => Err(ResponseError::UnknownTopicOrPartition),
        (None, None) => Err(ResponseError::UnknownTopicId),
    }
}

fn describe(
    image: &MetadataImage,
    name: Option<&str>,
    id: Uuid,
    found: Found,
    version: i16,
) -> MetadataResponseTopic {
    let base = MetadataResponseTopic::default()
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPERATIONS_OMITTED);
    let (name, topic) = match found {
        Ok(found) => found,
        Err(e) => return base.with_error_code(e.code()),
    };
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| describe_partition(image, i as i32, p, version))
        .collect();
    let internal = crate::image::is_internal_topic(&name);
    base.with_name(Some(topic_name(&name)))
        .with_is_internal(internal)
        .with_topic_id(if version >= 10 { topic.id } else { Uuid::nil() })
        .with_partitions(partitions)
}

fn describe_partition(
    image: &MetadataImage,
    index: i32,
    p: &PartitionState,
    version: i16,
) -> MetadataResponsePartition {
    let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let offline: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|&b| !image.is_live(b))
        .collect();
    let error = match p.leader {
        Some(_) => 0,
        None => ResponseError::LeaderNotAvailable.code(),
    };
    MetadataResponsePartition::default()
        .with_error_code(error)
        .with_partition_index(index)
        .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
        .with_leader_epoch(if version >= 7 { p.leader_epoch } else { -1 })
        .with_replica_nodes(ids(&p.replicas))
        .with_isr_nodes(ids(&p.isr))
        .with_offline_replicas(if version >= 5 { ids(&offline) } else { vec![] })
}
