//! Fetch: decode (with the request's fetch session), [`fetch`], encode
//! (what the session's response carries). A follower's fetch also counts
//! its position when it is read ([`prepare`]), before its long poll.

use super::topic_name;
use crate::replica_manager::{fetch, record_follower_positions, FetchParams, FetchResults};
use crate::state::Broker;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, LeaderIdAndEpoch,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use replication::fetch_session::Context;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Handles a Fetch request.
pub async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    respond(broker, decode(broker, request, version), version).await
}

/// A follower's fetch: its session and position count now, in request
/// order; the returned future is the read and its long poll.
pub fn prepare(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
) -> impl Future<Output = FetchResponse> + Send + 'static {
    let decoded = decode(broker, request, version);
    if let Ok((params, _)) = &decoded {
        record_follower_positions(broker, params);
    }
    let broker = broker.clone();
    async move { respond(&broker, decoded, version).await }
}

/// A decoded request: what the replica manager reads, and how the
/// response is cut (KIP-227).
type Decoded = Result<(FetchParams, Context), ResponseError>;

/// The answer to a decoded request: the replica manager's, cut to the
/// session and encoded, or the refusal.
async fn respond(broker: &Arc<Broker>, decoded: Decoded, version: i16) -> FetchResponse {
    let refused = |e: ResponseError| FetchResponse::default().with_error_code(e.code());
    let (params, context) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return refused(e),
    };
    let results = fetch(broker, params).await;
    match broker.fetch_sessions.answer(context, results) {
        Ok(results) => encode(broker, results, version).with_session_id(context.id()),
        Err(e) => refused(e),
    }
}

/// The replica manager's parameters: the request's partitions, or its
/// session's (`crate::fetch_sessions`); or the session error that answers
/// it.
fn decode(broker: &Broker, mut request: FetchRequest, version: i16) -> Decoded {
    let now_ms = broker.now_ms();
    let (context, topics) = broker.fetch_sessions.open(&mut request, now_ms)?;
    let params = FetchParams {
        replica_id: request.replica_id.0,
        max_wait: Duration::from_millis(request.max_wait_ms.max(0) as u64),
        min_bytes: request.min_bytes.max(0) as usize,
        max_bytes: request.max_bytes.max(0) as usize,
        version,
        topics,
    };
    Ok((params, context))
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
