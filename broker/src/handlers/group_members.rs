//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: the classic group
//! protocol's member requests, mapped onto the pure state machine
//! (`groups::Group`) of the group's coordinator shard. Join and sync may be
//! parked until the rebalance completes; the handler waits on its waiter's
//! reply, and a coordinator that loses the group drops it (NOT_COORDINATOR).

use super::group_offsets::{check_group_id, group_error};
use super::str_bytes;
use crate::dispatch::Client;
use crate::state::Broker;
use bytes::Bytes;
use groups::{Group, Reply};
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The partitions each member of the current generation owns, decoded from
/// the leader's consumer-protocol assignments (other protocol types carry
/// opaque assignments: nothing is known to be owned).
pub fn owners(group: &Group) -> BTreeMap<(String, i32), String> {
    let mut owned = BTreeMap::new();
    if group.protocol_type() != Some("consumer") {
        return owned;
    }
    for member in group.describe().members {
        let Some(assignment) = decode_assignment(&member.assignment) else {
            continue;
        };
        for tp in assignment.assigned_partitions {
            for p in tp.partitions {
                owned.insert((tp.topic.0.to_string(), p), member.member_id.clone());
            }
        }
    }
    owned
}

/// A consumer-protocol assignment: a version, then that version's body.
pub fn decode_assignment(bytes: &[u8]) -> Option<ConsumerProtocolAssignment> {
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    ConsumerProtocolAssignment::decode(&mut body, version).ok()
}

fn join_error(e: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(e.code())
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
}

/// Handles JoinGroup; waits while the join is parked.
pub async fn join_group(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    client: &Client,
) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let shard = match check_group_id(&group_id)
        .and_then(|()| broker.coordinator.shard(broker.as_ref(), &group_id))
    {
        Ok(shard) => shard,
        Err(e) => return join_error(e, &member_id),
    };
    let rebalance_timeout_ms = if version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let join = groups::JoinRequest {
        member_id: member_id.clone(),
        new_member_id: format!("{}-{}", client.id, uuid::Uuid::new_v4()),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client.id.clone(),
        client_host: format!("/{}", client.host),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let rx = {
        let mut groups = shard.lock();
        let (waiter, rx) = shard.park(&mut groups, &group_id);
        let now = broker.now_ms();
        let effects = crate::coordinator::Shard::entry(&mut groups, &group_id)
            .group
            .join(now, &broker.config.groups, join, waiter);
        shard.deliver(broker, &mut groups, &group_id, effects);
        rx
    };
    // The state machine answers by the rebalance deadline at the latest.
    let bound = Duration::from_millis(rebalance_timeout_ms.max(0) as u64) + Duration::from_secs(10);
    match tokio::time::timeout(bound, rx).await {
        Ok(Ok(Reply::Join(r))) => join_response(r, version),
        _ => join_error(ResponseError::NotCoordinator, &member_id),
    }
}

fn join_response(r: groups::JoinResponse, version: i16) -> JoinGroupResponse {
    // KIP-814: a restarted static leader must not reassign; before v9 the
    // flag cannot be sent, so the leader gets no members to assign.
    let skip = r.skip_assignment;
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                .with_metadata(Bytes::from(m.metadata))
        })
        .filter(|_| !skip)
        .collect();
    let protocol_name = r.protocol_name.as_deref().map(str_bytes);
    JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.as_deref().map(str_bytes))
        // Before v7 the name is not nullable: "" stands for none.
        .with_protocol_name(match (protocol_name, version) {
            (None, ..=6) => Some(str_bytes("")),
            (name, _) => name,
        })
        .with_leader(str_bytes(&r.leader))
        .with_member_id(str_bytes(&r.member_id))
        .with_members(members)
}

fn sync_error(e: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(e.code())
}

/// Handles SyncGroup; waits while the sync is parked.
pub async fn sync_group(
    broker: &Arc<Broker>,
    request: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let shard = match check_group_id(&group_id)
        .and_then(|()| broker.coordinator.shard(broker.as_ref(), &group_id))
    {
        Ok(shard) => shard,
        Err(e) => return sync_error(e),
    };
    let sync = groups::SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
    };
    let rx = {
        let mut groups = shard.lock();
        if !groups.contains_key(&group_id) {
            return sync_error(ResponseError::UnknownMemberId);
        }
        let (waiter, rx) = shard.park(&mut groups, &group_id);
        let now = broker.now_ms();
        let effects = crate::coordinator::Shard::entry(&mut groups, &group_id)
            .group
            .sync(now, sync, waiter);
        shard.deliver(broker, &mut groups, &group_id, effects);
        rx
    };
    match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(Reply::Sync(r))) => SyncGroupResponse::default()
            .with_error_code(r.error.map_or(0, |e| e.code()))
            .with_protocol_type(r.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(r.protocol_name.as_deref().map(str_bytes))
            .with_assignment(Bytes::from(r.assignment)),
        _ => sync_error(ResponseError::NotCoordinator),
    }
}

/// Handles Heartbeat.
pub fn heartbeat(broker: &Arc<Broker>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let result = check_group_id(&group_id)
        .and_then(|()| broker.coordinator.shard(broker.as_ref(), &group_id))
        .and_then(|shard| {
            let mut groups = shard.lock();
            let entry = groups
                .get_mut(&group_id)
                .ok_or(ResponseError::UnknownMemberId)?;
            let instance = request.group_instance_id.as_ref().map(|s| s.as_str());
            entry
                .group
                .heartbeat(
                    broker.now_ms(),
                    request.member_id.as_str(),
                    instance,
                    request.generation_id,
                )
                .map_err(group_error)
        });
    HeartbeatResponse::default().with_error_code(super::code(&result))
}

/// Handles LeaveGroup: one member (v0-2) or a batch (v3+).
pub fn leave_group(
    broker: &Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                let instance = m.group_instance_id.as_ref().map(|s| s.to_string());
                (m.member_id.to_string(), instance)
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let shard = match check_group_id(&group_id)
        .and_then(|()| broker.coordinator.shard(broker.as_ref(), &group_id))
    {
        Ok(shard) => shard,
        Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
    };
    let results = {
        let mut groups = shard.lock();
        let Some(entry) = groups.get_mut(&group_id) else {
            let code = ResponseError::UnknownMemberId.code();
            return LeaveGroupResponse::default().with_error_code(code);
        };
        let (results, effects) = entry.group.leave(broker.now_ms(), &leaving);
        shard.deliver(broker, &mut groups, &group_id, effects);
        results
    };
    if version < 3 {
        let code = results
            .first()
            .map_or(0, |r| r.err().map_or(0, |e| e.code()));
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = leaving
        .into_iter()
        .zip(results)
        .map(|((member_id, instance), result)| {
            MemberResponse::default()
                .with_member_id(str_bytes(&member_id))
                .with_group_instance_id(instance.as_deref().map(str_bytes))
                .with_error_code(result.err().map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
