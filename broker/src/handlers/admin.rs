//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! DescribeCluster.

use super::{str_bytes, topic_name};
use crate::controller_link::{
    create_partitions as create_partitions_to, create_topic, delete_topic,
};
use crate::image::is_internal_topic;
use crate::partition::{log_config_for, TOPIC_CONFIGS};
use crate::state::Broker;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// Handles CreateTopics: each topic is committed by the controller.
pub async fn create_topics(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for t in request.topics {
        results.push({
            let name = t.name.0.to_string();
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            let result = CreatableTopicResult::default().with_name(topic_name(&name));
            let created = if t.assignments.is_empty() {
                create_topic(
                    broker,
                    &name,
                    t.num_partitions,
                    t.replication_factor,
                    configs,
                    request.validate_only,
                )
                .await
            } else {
                Err((
                    ResponseError::InvalidRequest,
                    "manual replica assignment is not supported: the controller spreads replicas"
                        .to_string(),
                ))
            };
            match created {
                Ok(c) if version >= 5 => result
                    .with_topic_id(if version >= 7 {
                        c.id
                    } else {
                        uuid::Uuid::nil()
                    })
                    .with_num_partitions(c.partitions)
                    .with_replication_factor(c.replication_factor),
                Ok(_) => result,
                Err((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Handles DeleteTopics, by name (all versions) or by id (v6). Internal
/// topics are refused with INVALID_TOPIC_EXCEPTION.
pub async fn delete_topics(
    broker: &Broker,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut responses = Vec::new();
    for (name, id) in targets {
        responses.push({
            let name = name.or_else(|| broker.image().topic_by_id(id).map(|(n, _)| n.clone()));
            let shown_id = |id| if version >= 6 { id } else { uuid::Uuid::nil() };
            let result = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(shown_id(id));
            match name {
                None => result.with_error_code(ResponseError::UnknownTopicId.code()),
                Some(name) if is_internal_topic(&name) => result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(
                        (version >= 5).then(|| str_bytes(&internal_refusal(&name, "deleted"))),
                    ),
                Some(name) => match delete_topic(broker, &name).await {
                    Ok(id) => result.with_topic_id(shown_id(id)),
                    Err((e, message)) => result
                        .with_error_code(e.code())
                        .with_error_message((version >= 5).then(|| str_bytes(&message))),
                },
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Why a client may not change an internal topic (Kafka's tool says
/// "... is a kafka internal topic and is not allowed to be marked for
/// deletion").
fn internal_refusal(name: &str, what: &str) -> String {
    format!("topic {name} is an internal topic and is not allowed to be {what}")
}

/// Handles CreatePartitions; an internal topic's partition count is fixed
/// (growing it would move groups away from their committed offsets).
pub async fn create_partitions(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(topic_name(&name));
        if is_internal_topic(&name) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(str_bytes(&internal_refusal(
                        &name,
                        "given partitions",
                    )))),
            );
            continue;
        }
        results.push(
            match create_partitions_to(broker, &name, t.count, request.validate_only).await {
                Ok(()) => result,
                Err((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&message))),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Handles DescribeConfigs for topics and for this broker.
pub fn describe_configs(
    broker: &Broker,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match broker.image().topics.get(&name) {
                    Some(meta) => topic_configs(broker, &meta.configs),
                    None => {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    }
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    topic_configs(broker, &BTreeMap::new())
                }
                _ => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(
                            "only topic and this broker's configs can be described",
                        )))
                }
            };
            let keys: Option<Vec<String>> = r
                .configuration_keys
                // Null asks for every config; so does an empty list.
                .filter(|k| !k.is_empty())
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let configs = entries
                .into_iter()
                .filter(|(n, _, _)| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n)))
                .map(|(n, v, source)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(&n))
                        .with_value(Some(str_bytes(&v)))
                        .with_read_only(r.resource_type == RESOURCE_BROKER)
                        .with_config_source(source)
                })
                .collect();
            base.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// (name, value, source) of every config Baton understands.
fn topic_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<(String, String, i8)> {
    let c =
        log_config_for(&broker.config.log, overrides).unwrap_or_else(|_| broker.config.log.clone());
    let ms =
        |d: Option<std::time::Duration>| d.map_or("-1".to_string(), |d| d.as_millis().to_string());
    TOPIC_CONFIGS
        .iter()
        .map(|&name| {
            let value = match name {
                "cleanup.policy" => c.cleanup_policy.as_kafka_str().to_string(),
                "delete.retention.ms" => c.delete_retention_ms.as_millis().to_string(),
                "retention.ms" => ms(c.retention_ms),
                "retention.bytes" => c
                    .retention_bytes
                    .map_or("-1".to_string(), |b| b.to_string()),
                "segment.bytes" => c.segment_bytes.to_string(),
                "segment.ms" => ms(c.segment_ms),
                "max.message.bytes" => c.max_batch_bytes.to_string(),
                "min.insync.replicas" => overrides
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| broker.config.min_insync_replicas.to_string()),
                _ => c.index_interval_bytes.to_string(),
            };
            let source = if overrides.contains_key(name) {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            };
            (name.to_string(), value, source)
        })
        .collect()
}

/// KIP-919's DescribeCluster endpoint types.
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// Handles DescribeCluster: the live brokers, or (v1, endpoint type 2,
/// KIP-919) the controller quorum, so tools find the controllers through
/// any broker.
pub fn describe_cluster(
    broker: &Broker,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    let endpoint = |id: i32, addr: &str| {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(str_bytes(host))
            .with_port(port.parse().unwrap_or(0))
    };
    let base = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&image.cluster_id))
        .with_cluster_authorized_operations(i32::MIN);
    if request.endpoint_type == ENDPOINT_CONTROLLERS {
        let controllers = broker
            .config
            .controllers
            .iter()
            .map(|(id, addr)| endpoint(id.map_or(-1, |id| id as i32), addr))
            .collect();
        return base
            .with_endpoint_type(ENDPOINT_CONTROLLERS)
            .with_controller_id(BrokerId(-1))
            .with_brokers(controllers);
    }
    if request.endpoint_type != ENDPOINT_BROKERS {
        return base
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("endpoint type must be 1 or 2")));
    }
    let brokers = image
        .live_brokers()
        .map(|b| endpoint(b.id, &b.endpoint))
        .collect();
    let controller = image.live_brokers().next().map_or(-1, |b| b.id);
    base.with_endpoint_type(ENDPOINT_BROKERS)
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
}
