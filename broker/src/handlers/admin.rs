//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! DescribeCluster.

use super::{str_bytes, topic_name};
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

/// Handles CreateTopics.
pub fn create_topics(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            let mut partitions = t.num_partitions;
            let mut replication_factor = t.replication_factor;
            if !t.assignments.is_empty() {
                // Manual assignment: only this broker can hold a replica.
                partitions = t.assignments.len() as i32;
                let only_here = t
                    .assignments
                    .iter()
                    .all(|a| a.broker_ids == [BrokerId(broker.config.node_id)]);
                replication_factor = if only_here { 1 } else { i16::MAX };
            }
            let result = CreatableTopicResult::default().with_name(topic_name(&name));
            match broker.create_topic(
                &name,
                partitions,
                replication_factor,
                configs,
                request.validate_only,
            ) {
                Ok(meta) if version >= 5 => result
                    .with_topic_id(if version >= 7 {
                        meta.id
                    } else {
                        uuid::Uuid::nil()
                    })
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(1),
                Ok(_) => result,
                Err((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

/// Handles DeleteTopics, by name (all versions) or by id (v6).
pub fn delete_topics(
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
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| broker.image().topic_by_id(id).map(|(n, _)| n.clone()));
            let shown_id = |id| if version >= 6 { id } else { uuid::Uuid::nil() };
            let result = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(shown_id(id));
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            match broker.delete_topic(&name) {
                Ok(id) => result.with_topic_id(shown_id(id)),
                Err((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message((version >= 5).then(|| str_bytes(&message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Handles CreatePartitions.
pub fn create_partitions(
    broker: &Broker,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = CreatePartitionsTopicResult::default().with_name(topic_name(&name));
            match broker.create_partitions(&name, t.count, request.validate_only) {
                Ok(()) => result,
                Err((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
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
                "cleanup.policy" => "delete".to_string(),
                "retention.ms" => ms(c.retention_ms),
                "retention.bytes" => c
                    .retention_bytes
                    .map_or("-1".to_string(), |b| b.to_string()),
                "segment.bytes" => c.segment_bytes.to_string(),
                "segment.ms" => ms(c.segment_ms),
                "max.message.bytes" => c.max_batch_bytes.to_string(),
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

/// Handles DescribeCluster.
pub fn describe_cluster(
    broker: &Broker,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let node = BrokerId(broker.config.node_id);
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.image().cluster_id))
        .with_controller_id(node)
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(str_bytes(&broker.config.advertised_host))
            .with_port(i32::from(broker.config.advertised_port))])
}
