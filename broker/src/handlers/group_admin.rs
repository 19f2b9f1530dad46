//! ListGroups, DescribeGroups and DeleteGroups, answered from the groups
//! this broker coordinates.

use super::group_offsets::{check_group_id, group_error};
use super::str_bytes;
use crate::coordinator::records::{Entry, Key};
use crate::state::Broker;
use bytes::Bytes;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::GroupId;
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// Handles ListGroups: the groups of every offsets partition this broker
/// coordinates (clients ask every broker), filtered by state (v4+).
pub fn list_groups(broker: &Broker, request: ListGroupsRequest) -> ListGroupsResponse {
    let wanted: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_string().to_ascii_lowercase())
        .collect();
    let mut listed = Vec::new();
    for shard in broker.coordinator.shards() {
        if !shard.is_loaded() {
            continue;
        }
        for (id, entry) in shard.lock().iter() {
            let state = entry.group.state().name();
            if !wanted.is_empty() && !wanted.contains(&state.to_ascii_lowercase()) {
                continue;
            }
            listed.push(
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_protocol_type(str_bytes(entry.group.protocol_type().unwrap_or("")))
                    .with_group_state(str_bytes(state))
                    .with_group_type(str_bytes("classic")),
            );
        }
    }
    listed.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(listed)
}

/// Handles DescribeGroups. A group no one has used is "Dead", as in Kafka.
pub fn describe_groups(broker: &Broker, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| describe_one(broker, id))
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

fn describe_one(broker: &Broker, id: GroupId) -> DescribedGroup {
    let name = id.0.to_string();
    let base = DescribedGroup::default().with_group_id(id);
    let shard = match check_group_id(&name).and_then(|()| broker.coordinator.shard(broker, &name)) {
        Ok(shard) => shard,
        Err(e) => return base.with_error_code(e.code()),
    };
    let groups = shard.lock();
    let Some(entry) = groups.get(&name) else {
        return base
            .with_group_state(str_bytes("Dead"))
            .with_protocol_type(str_bytes(""))
            .with_protocol_data(str_bytes(""));
    };
    let d = entry.group.describe();
    let members = d
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_member_metadata(Bytes::from(m.metadata))
                .with_member_assignment(Bytes::from(m.assignment))
        })
        .collect();
    base.with_group_state(str_bytes(d.state.name()))
        .with_protocol_type(str_bytes(&d.protocol_type))
        .with_protocol_data(str_bytes(&d.protocol))
        .with_members(members)
}

/// Handles DeleteGroups: an Empty group's membership and offsets are
/// tombstoned (replicated before the answer); a group with members is
/// refused with NON_EMPTY_GROUP and keeps everything.
pub async fn delete_groups(
    broker: &Arc<Broker>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in request.groups_names {
        let result = delete_one(broker, id.0.as_str()).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(super::code(&result)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete_one(broker: &Arc<Broker>, group_id: &str) -> Result<(), ResponseError> {
    check_group_id(group_id)?;
    let shard = broker.coordinator.shard(broker.as_ref(), group_id)?;
    let pending = {
        let mut groups = shard.lock();
        let entry = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        entry.group.can_delete().map_err(group_error)?;
        let mut tombstones: Vec<Entry> = entry
            .offsets
            .keys()
            .map(|(topic, partition)| {
                let key = Key::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                Entry::Offset(key, None)
            })
            .collect();
        let group = Key::Group {
            group: group_id.to_string(),
        };
        tombstones.push(Entry::Group(group, None));
        let pending = shard.append(broker, &tombstones)?;
        groups.remove(group_id);
        pending
    };
    pending.replicated().await.map(|_| ())
}
