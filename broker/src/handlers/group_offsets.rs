//! FindCoordinator, OffsetCommit and OffsetFetch. The coordinator of a
//! group is the leader of its `__consumer_offsets` partition, created on
//! first use; commits are answered once replicated.

use super::{str_bytes, topic_name};
use crate::coordinator::records::{self, Committed, Entry, Key, OFFSETS_TOPIC};
use crate::coordinator::Shard;
use crate::state::Broker;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;

const KEY_GROUP: i8 = 0;
/// Kafka's `offset.metadata.max.bytes`.
const METADATA_MAX_BYTES: usize = 4096;
/// Longest group id accepted: ids are keys in the offsets log and in logs.
const GROUP_ID_MAX_BYTES: usize = 255;

/// A group id the coordinator accepts: non-empty, at most 255 bytes, no
/// control characters (Kafka accepts almost anything; ids with control
/// characters or of unbounded length only ever come from bugs).
pub fn check_group_id(id: &str) -> Result<(), ResponseError> {
    let ok = !id.is_empty() && id.len() <= GROUP_ID_MAX_BYTES && !id.chars().any(char::is_control);
    ok.then_some(()).ok_or(ResponseError::InvalidGroupId)
}

/// Creates `__consumer_offsets` if it does not exist yet: compacted,
/// replicated like any topic (RF 3 where the cluster has 3 brokers).
pub async fn ensure_offsets_topic(broker: &Broker) -> Result<(), ResponseError> {
    if broker.image().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    // Kafka's offsets.topic.segment.bytes (100 MiB): only closed segments
    // are compacted, so the broker's 1 GiB default would never clean it.
    let configs = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (100 << 20).to_string()),
    ]);
    let partitions = broker.config.offsets_topic_num_partitions;
    match crate::controller_link::create_topic(
        broker,
        OFFSETS_TOPIC,
        partitions,
        -1,
        configs,
        false,
    )
    .await
    {
        Ok(_) | Err((ResponseError::TopicAlreadyExists, _)) => Ok(()),
        Err((e, why)) => {
            tracing::warn!(error = ?e, %why, "cannot create {OFFSETS_TOPIC}");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// The coordinator of `group_id`: the leader of its offsets partition.
fn coordinator_of(broker: &Broker, group_id: &str) -> Result<(i32, String, i32), ResponseError> {
    check_group_id(group_id)?;
    let partitions = broker
        .image()
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let index = records::partition_for(group_id, partitions);
    // The coordinator is wherever the partition's leadership is: the same
    // lookup as the KIP-951 leader hint (a live leader and its endpoint).
    super::leader_hint(broker, OFFSETS_TOPIC, index)
        .and_then(|hint| Some((hint.leader, hint.endpoint?)))
        .map(|(leader, (host, port))| (leader, host, port))
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

/// Handles FindCoordinator: groups only (no transactions).
pub async fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<_> = if version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let created = if request.key_type == KEY_GROUP {
        ensure_offsets_topic(broker).await
    } else {
        Err(ResponseError::InvalidRequest)
    };
    let answers: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let found = created.and_then(|()| coordinator_of(broker, key.as_str()));
            let base = Coordinator::default().with_key(key);
            match found {
                Ok((node, host, port)) => base
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(&host))
                    .with_port(port),
                Err(e) => base
                    .with_node_id(BrokerId(-1))
                    .with_host(str_bytes(""))
                    .with_port(-1)
                    .with_error_code(e.code())
                    .with_error_message(Some(str_bytes(&format!("{e:?}")))),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let one = answers.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}

/// One partition of a commit: where, what, and its outcome so far.
struct CommitItem {
    topic: String,
    partition: i32,
    committed: Committed,
    result: Result<(), ResponseError>,
}

/// Handles OffsetCommit: validates the member and generation, appends every
/// accepted offset in one batch, and answers once it is replicated.
pub async fn offset_commit(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let now = broker.wall_ms();
    let mut items: Vec<CommitItem> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitItem {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                committed: Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    commit_timestamp: now,
                },
                result: Ok(()),
            })
        })
        .collect();
    let member = Member {
        id: request.member_id.to_string(),
        instance: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: request.generation_id_or_member_epoch,
    };
    if let Err(e) = commit(broker, &group_id, &member, &mut items).await {
        for item in &mut items {
            item.result = item.result.and(Err(e));
        }
    }
    commit_response(items)
}

/// Who commits.
struct Member {
    id: String,
    instance: Option<String>,
    generation: i32,
}

async fn commit(
    broker: &Arc<Broker>,
    group_id: &str,
    member: &Member,
    items: &mut [CommitItem],
) -> Result<(), ResponseError> {
    check_group_id(group_id)?;
    let shard = broker.coordinator.shard(broker.as_ref(), group_id)?;
    for item in items.iter_mut() {
        let ends = &broker.coordinator.log_ends;
        if ends
            .beyond(broker, &item.topic, item.partition, item.committed.offset)
            .await
        {
            item.result = Err(ResponseError::OffsetOutOfRange);
        }
    }
    let pending = {
        let mut groups = shard.lock();
        if let Some(entry) = groups.get(group_id) {
            let g = &entry.group;
            g.validate_commit(&member.id, member.instance.as_deref(), member.generation)
                .map_err(group_error)?;
        } else if member.generation >= 0 || !member.id.is_empty() {
            // A member of a group that does not exist.
            return Err(ResponseError::UnknownMemberId);
        }
        let image = broker.image();
        let owners = groups
            .get(group_id)
            .map(|e| super::group_members::owners(&e.group))
            .unwrap_or_default();
        for item in items.iter_mut().filter(|i| i.result.is_ok()) {
            item.result = check_item(&image, &owners, &member.id, item);
        }
        let entries: Vec<Entry> = items
            .iter()
            .filter(|i| i.result.is_ok())
            .map(|i| Entry::Offset(offset_key(group_id, i), Some(i.committed.clone())))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        Shard::entry(&mut groups, group_id);
        shard.append(broker, &entries)?
    };
    let base = pending.replicated().await?;
    let mut groups = shard.lock();
    let entry = Shard::entry(&mut groups, group_id);
    let accepted = items.iter().filter(|i| i.result.is_ok());
    for (record_offset, item) in (base..).zip(accepted) {
        let key = (item.topic.clone(), item.partition);
        let newer = entry
            .offsets
            .get(&key)
            .is_none_or(|(_, at)| *at < record_offset);
        if newer {
            entry
                .offsets
                .insert(key, (item.committed.clone(), record_offset));
        }
    }
    Ok(())
}

fn offset_key(group_id: &str, item: &CommitItem) -> Key {
    Key::Offset {
        group: group_id.to_string(),
        topic: item.topic.clone(),
        partition: item.partition,
    }
}

/// One partition's checks: it exists, the offset and metadata are valid,
/// and no other member of the current generation owns it.
fn check_item(
    image: &crate::image::MetadataImage,
    owners: &BTreeMap<(String, i32), String>,
    member_id: &str,
    item: &CommitItem,
) -> Result<(), ResponseError> {
    if image.partition(&item.topic, item.partition).is_none() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if item.committed.offset < 0 {
        return Err(ResponseError::OffsetOutOfRange);
    }
    let metadata_len = item.committed.metadata.as_ref().map_or(0, |m| m.len());
    if metadata_len > METADATA_MAX_BYTES {
        return Err(ResponseError::OffsetMetadataTooLarge);
    }
    match owners.get(&(item.topic.clone(), item.partition)) {
        // Assigned to someone else in this generation: the committer's view
        // of its assignment is stale, so it must rejoin.
        Some(owner) if owner != member_id => Err(ResponseError::IllegalGeneration),
        _ => Ok(()),
    }
}

fn commit_response(items: Vec<CommitItem>) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for item in items {
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(item.partition)
            .with_error_code(super::code(&item.result));
        match topics.iter_mut().find(|t| t.name.0.as_str() == item.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&item.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// The Kafka error of a group state-machine refusal.
pub fn group_error(e: groups::GroupError) -> ResponseError {
    ResponseError::try_from_code(e.code()).unwrap_or(ResponseError::UnknownServerError)
}

/// Handles OffsetFetch (one group per request, v1 to v7). A null topic
/// list (v2+) asks for every committed offset of the group.
pub fn offset_fetch(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let group_id = request.group_id.0.to_string();
    let found =
        check_group_id(&group_id).and_then(|()| broker.coordinator.shard(broker, &group_id));
    let shard = match found {
        Ok(shard) => shard,
        Err(e) => return fetch_error(request, version, e),
    };
    let committed: BTreeMap<(String, i32), Committed> = shard
        .lock()
        .get(&group_id)
        .map(|e| {
            e.offsets
                .iter()
                .map(|(k, (c, _))| (k.clone(), c.clone()))
                .collect()
        })
        .unwrap_or_default();
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in committed.keys() {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            by_topic.into_iter().collect()
        }
    };
    let topics = wanted
        .into_iter()
        .map(|(name, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|i| fetched(committed.get(&(name.clone(), i)), i, version))
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

fn fetched(c: Option<&Committed>, index: i32, version: i16) -> OffsetFetchResponsePartition {
    let base = OffsetFetchResponsePartition::default().with_partition_index(index);
    match c {
        Some(c) => base
            .with_committed_offset(c.offset)
            .with_committed_leader_epoch(if version >= 5 { c.leader_epoch } else { -1 })
            .with_metadata(c.metadata.as_deref().map(str_bytes)),
        None => base
            .with_committed_offset(-1)
            .with_metadata(Some(str_bytes(""))),
    }
}

/// A whole-request error: top-level from v2, per partition before.
fn fetch_error(request: OffsetFetchRequest, version: i16, e: ResponseError) -> OffsetFetchResponse {
    if version >= 2 {
        return OffsetFetchResponse::default().with_error_code(e.code());
    }
    let topics = request
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|i| fetched(None, i, version).with_error_code(e.code()))
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
