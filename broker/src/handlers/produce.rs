//! Produce: decode, [`append_records`] (phase one, the appends, runs in
//! request order when the request is read; phase two, the commit, in the
//! returned future), encode.

use super::topic_name;
use crate::replica_manager::{append_records, AppendEntry};
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

/// Appends every partition's batches now, in order; the returned future
/// resolves to the response once they are committed (`None` for acks=0).
pub async fn prepare(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    // The request's refusals, and what goes to the replica manager.
    let refusal = if request.transactional_id.is_some() {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !matches!(acks, -1..=1) {
        Some(ResponseError::InvalidRequiredAcks)
    } else {
        None
    };
    let mut entries = Vec::new();
    let mut refused = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        for partition in topic.partition_data {
            match refusal {
                Some(e) => refused.push((name.clone(), partition.index, Err(e))),
                None => entries.push(AppendEntry {
                    topic: name.clone(),
                    index: partition.index,
                    records: partition.records,
                    required_epoch: None,
                }),
            }
        }
    }
    let appended = append_records(broker, acks, timeout, entries);
    let broker = broker.clone();
    async move {
        let results = appended.await;
        let mut topics: Vec<TopicProduceResponse> = Vec::new();
        let mut endpoints: Vec<NodeEndpoint> = Vec::new();
        for (name, index, outcome) in results.into_iter().chain(refused) {
            let committed = outcome.map(|o| (o.log_start_offset, o.base_offset));
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
