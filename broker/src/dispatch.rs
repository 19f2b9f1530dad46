//! One request in, at most one response out: header and body decoding,
//! version checks, routing to a handler, response encoding.
//!
//! Decoding failures close the connection, as Kafka does, after logging why;
//! a panic inside the codec is caught and treated the same way, so client
//! bytes never take the broker down.

use crate::handlers;
use crate::state::Broker;
use crate::versions;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::ResponseError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this frame body.
    Respond(BytesMut),
    /// Send nothing (a Produce with acks=0).
    Silent,
    /// Close the connection, for this logged reason.
    Close(String),
}

/// A response now, or one that completes later (a pipelined Produce, a
/// follower's Fetch).
pub enum Prepared {
    /// The outcome is known.
    Now(Outcome),
    /// The request took effect in order; its response completes later.
    Later(Pin<Box<dyn Future<Output = Outcome> + Send>>),
}

/// Who sent a request: the header's client id and the peer's address, as
/// group members are described.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The request header's `client_id`.
    pub id: String,
    /// The peer's IP address.
    pub host: String,
}

/// Handles one request frame (without its size prefix) to the end.
pub async fn handle(broker: &Arc<Broker>, frame: Bytes, peer: &str) -> Outcome {
    match prepare(broker, frame, peer).await {
        Prepared::Now(outcome) => outcome,
        Prepared::Later(future) => future.await,
    }
}

/// Handles one request frame up to the point where later requests on the
/// same connection may start: everything but a Produce's commit wait and
/// a follower's long poll.
pub async fn prepare(broker: &Arc<Broker>, frame: Bytes, peer: &str) -> Prepared {
    let (api_key, version, correlation_id, request, client_id) = match decode(frame) {
        Ok(decoded) => decoded,
        Err(outcome) => return Prepared::Now(outcome),
    };
    let request = match request {
        RequestKind::Produce(r) => {
            let pending = handlers::produce::prepare(broker, r, version).await;
            return Prepared::Later(Box::pin(async move {
                match pending.await {
                    Some(response) => encode(
                        api_key,
                        version,
                        correlation_id,
                        &ResponseKind::Produce(response),
                    ),
                    None => Outcome::Silent,
                }
            }));
        }
        RequestKind::Fetch(r) if r.replica_id.0 >= 0 => {
            // A follower's fetch: its position counts now, its long poll
            // overlaps with the requests behind it (a position report).
            let pending = handlers::fetch::prepare(broker, r, version);
            return Prepared::Later(Box::pin(async move {
                let response = pending.await;
                encode(
                    api_key,
                    version,
                    correlation_id,
                    &ResponseKind::Fetch(response),
                )
            }));
        }
        other => other,
    };
    let client = Client {
        id: client_id.unwrap_or_default(),
        host: peer.to_string(),
    };
    Prepared::Now(match route(broker, request, version, &client).await {
        Some(response) => encode(api_key, version, correlation_id, &response),
        None => Outcome::Silent,
    })
}

/// (API, version, correlation id, request, client id), or the outcome for
/// bad input.
type Decoded = (ApiKey, i16, i32, RequestKind, Option<String>);

fn decode(mut frame: Bytes) -> Result<Decoded, Outcome> {
    if frame.len() < 8 {
        return Err(Outcome::Close(format!(
            "{}-byte request is too short for a header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Err(Outcome::Close(format!("unknown API key {raw_key}")));
    };
    if !versions::supports(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with the versions we do support.
            let body = api_versions_body(ResponseError::UnsupportedVersion.code());
            return Err(encode(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                &ResponseKind::ApiVersions(body),
            ));
        }
        return Err(Outcome::Close(format!(
            "unsupported version {version} of {api_key:?}"
        )));
    }
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))?;
        let request = RequestKind::decode(api_key, &mut frame, version)?;
        anyhow::Ok((header, request))
    }));
    let (header, request) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(e)) => {
            return Err(Outcome::Close(format!(
                "malformed {api_key:?} v{version}: {e}"
            )))
        }
        Err(_) => {
            return Err(Outcome::Close(format!(
                "undecodable {api_key:?} v{version}"
            )))
        }
    };
    if frame.has_remaining() {
        tracing::debug!(
            ?api_key,
            version,
            extra = frame.remaining(),
            "trailing bytes after request"
        );
    }
    let client_id = header.client_id.map(|c| c.to_string());
    Ok((api_key, version, header.correlation_id, request, client_id))
}

async fn route(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    client: &Client,
) -> Option<ResponseKind> {
    use handlers::*;
    Some(match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(0)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, r, version).await)
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, version).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(offsets::list_offsets(broker, r, version).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offsets::offset_for_leader_epoch(broker, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(broker, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(admin::describe_configs(broker, r))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(broker, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(group_offsets::find_coordinator(broker, r, version).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(group_offsets::offset_commit(broker, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(group_offsets::offset_fetch(broker, r, version))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(group_members::join_group(broker, r, version, client).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(group_members::sync_group(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(group_members::heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(group_members::leave_group(broker, r, version))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(group_admin::list_groups(broker, r)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(group_admin::describe_groups(broker, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(group_admin::delete_groups(broker, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producers::init_producer_id(broker, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(producers::describe_producers(broker, r))
        }
        other => unreachable!("{other:?} passed the version check but has no handler"),
    })
}

fn encode(api_key: ApiKey, version: i16, correlation_id: i32, response: &ResponseKind) -> Outcome {
    let mut out = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut out, api_key.response_header_version(version))
        .and_then(|()| response.encode(&mut out, version));
    match encoded {
        Ok(()) => Outcome::Respond(out),
        Err(e) => Outcome::Close(format!(
            "cannot encode {api_key:?} v{version} response: {e}"
        )),
    }
}

/// The ApiVersions body: every supported API and its range.
pub fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    let api_keys = versions::SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            kafka_protocol::messages::api_versions_response::ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}
