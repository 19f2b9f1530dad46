//! Fetch: decode, [`fetch`], encode. A follower's fetch also counts its
//! position when it is read ([`prepare`]), before its long poll.

use super::topic_name;
use crate::replica_manager::{
    fetch, record_follower_positions, FetchParams, FetchResults, FetchTopic,
};
use crate::state::Broker;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Handles a Fetch request.
pub async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    respond(broker, decode(request, version), version).await
}

/// A follower's fetch: its position counts now, in request order; the
/// returned future is the read and its long poll.
pub fn prepare(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
) -> impl Future<Output = FetchResponse> + Send + 'static {
    let decoded = decode(request, version);
    if let Ok(params) = &decoded {
        record_follower_positions(broker, params);
    }
    let broker = broker.clone();
    async move { respond(&broker, decoded, version).await }
}

/// The answer to a decoded request: the replica manager's, encoded, or the
/// refusal.
async fn respond(
    broker: &Arc<Broker>,
    decoded: Result<FetchParams, FetchResponse>,
    version: i16,
) -> FetchResponse {
    match decoded {
        Ok(params) => encode(broker, fetch(broker, params).await, version),
        Err(refused) => refused,
    }
}

/// The replica manager's parameters, or the answer to a request it never
/// sees.
fn decode(request: FetchRequest, version: i16) -> Result<FetchParams, FetchResponse> {
    if request.session_id != 0 {
        // Baton creates no fetch sessions (KIP-227), so none can be found.
        return Err(
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code())
        );
    }
    let topics = request
        .topics
        .into_iter()
        .map(|t| FetchTopic {
            topic: t.topic.0.to_string(),
            partitions: t.partitions,
        })
        .collect();
    Ok(FetchParams {
        replica_id: request.replica_id.0,
        max_wait: Duration::from_millis(request.max_wait_ms.max(0) as u64),
        min_bytes: request.min_bytes.max(0) as usize,
        max_bytes: request.max_bytes.max(0) as usize,
        version,
        topics,
    })
}

/// The response; a partition refused for leadership also names the
/// current leader (KIP-951, and KIP-320 followers) from v12.
fn encode(broker: &Broker, results: FetchResults, version: i16) -> FetchResponse {
    let topics = results
        .into_iter()
        .map(|(name, mut partitions)| {
            if version >= 12 {
                for data in &mut partitions {
                    let leadership = ResponseError::try_from_code(data.error_code)
                        .is_some_and(super::is_leadership_error);
                    if let Some(hint) = leadership
                        .then(|| super::leader_hint(broker, &name, data.partition_index))
                        .flatten()
                    {
                        data.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(hint.leader))
                            .with_leader_epoch(hint.leader_epoch);
                    }
                }
            }
            FetchableTopicResponse::default()
                .with_topic(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(topics)
}
