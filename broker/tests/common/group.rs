//! Raw group-protocol requests for tests: a member that joins, syncs,
//! heartbeats and commits by hand, so each step's error code is visible.

use super::{s, topic};
use bytes::Bytes;
use client::Connection;
use kafka_protocol::messages::*;

/// Errors a client answers by finding the coordinator again and retrying.
pub const COORDINATOR_RETRIABLE: [i16; 3] = [14, 15, 16];

/// `retry!(r = call.await; code_of_r)`: repeats the call while its error
/// code is coordinator-retriable (the offsets topic is being created or a
/// shard is loading), for up to 20 s; the last answer.
#[macro_export]
macro_rules! retry {
    ($r:ident = $call:expr; $code:expr) => {{
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let $r = $call;
            let code: i16 = $code;
            let retriable = $crate::common::group::COORDINATOR_RETRIABLE.contains(&code);
            if !retriable || std::time::Instant::now() > deadline {
                break $r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }};
}

/// A consumer-protocol assignment of `partitions` of `name` (version 0).
pub fn assignment(name: &str, partitions: &[i32]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes()); // version
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    b.extend_from_slice(&(name.len() as i16).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for p in partitions {
        b.extend_from_slice(&p.to_be_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
    Bytes::from(b)
}

/// FindCoordinator for `group`, as every client sends first (it creates
/// `__consumer_offsets` on first use); the error code.
pub async fn find(conn: &mut Connection, group: &str) -> i16 {
    let req = FindCoordinatorRequest::default().with_key(s(group));
    let r = crate::retry!(r = conn.send(&req, 3).await; r.as_ref().map_or(0, |r| r.error_code));
    r.expect("find coordinator").error_code
}

/// A JoinGroup request of the "consumer" protocol type.
pub fn join_request(group: &str, member_id: &str, session_ms: i32) -> JoinGroupRequest {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 255, 255, 255, 255]));
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(session_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol])
}

/// Joins as a new member (answering MEMBER_ID_REQUIRED), retrying while
/// the coordinator loads; returns the final answer.
pub async fn join(
    conn: &mut Connection,
    group: &str,
    session_ms: i32,
    version: i16,
) -> JoinGroupResponse {
    find(conn, group).await;
    let mut member = String::new();
    loop {
        let req = join_request(group, &member, session_ms);
        let r = crate::retry!(r = conn.send(&req, version).await; r.as_ref().map_or(0, |r| r.error_code))
            .expect("join");
        if r.error_code == 79 {
            member = r.member_id.to_string(); // MEMBER_ID_REQUIRED
            continue;
        }
        return r;
    }
}

/// SyncGroup for a static member (`instance`); as [`sync`] otherwise.
pub async fn sync_static(
    conn: &mut Connection,
    group: &str,
    member: &str,
    instance: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncGroupResponse {
    let req = sync_request(group, member, generation, assignments)
        .with_group_instance_id(Some(s(instance)));
    conn.send(&req, 5).await.expect("sync")
}

fn sync_request(
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncGroupRequest {
    let assignments = assignments
        .into_iter()
        .map(|(m, a)| {
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&m))
                .with_assignment(a)
        })
        .collect();
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(assignments)
}

/// SyncGroup for `member` in `generation`, giving each member of
/// `assignments` its bytes (the leader's sync) or none.
pub async fn sync(
    conn: &mut Connection,
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
    version: i16,
) -> SyncGroupResponse {
    let req = sync_request(group, member, generation, assignments)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")));
    conn.send(&req, version).await.expect("sync")
}

/// One member alone in `group`, Stable, owning `partitions` of `name`:
/// (member id, generation).
pub async fn sole_member(
    conn: &mut Connection,
    group: &str,
    name: &str,
    partitions: &[i32],
) -> (String, i32) {
    let joined = join(conn, group, 10_000, 7).await;
    assert_eq!(joined.error_code, 0, "join: {joined:?}");
    let member = joined.member_id.to_string();
    let a = vec![(member.clone(), assignment(name, partitions))];
    let synced = sync(conn, group, &member, joined.generation_id, a, 5).await;
    assert_eq!(synced.error_code, 0, "sync: {synced:?}");
    (member, joined.generation_id)
}

/// Heartbeat; returns the error code.
pub async fn heartbeat(
    conn: &mut Connection,
    group: &str,
    member: &str,
    generation: i32,
    version: i16,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation);
    conn.send(&req, version)
        .await
        .expect("heartbeat")
        .error_code
}

/// Commits `offset` for each of `partitions` of `name`; returns each
/// partition's error code.
pub async fn commit(
    conn: &mut Connection,
    group: &str,
    member: &str,
    generation: i32,
    name: &str,
    partitions: &[(i32, i64)],
) -> Vec<i16> {
    find(conn, group).await;
    let ps = partitions
        .iter()
        .map(|&(p, o)| {
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(o)
        })
        .collect();
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(topic(name))
        .with_partitions(ps);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![t]);
    let r = crate::retry!(r = conn.send(&req, 8).await;
        r.as_ref().map_or(0, |r| r.topics[0].partitions[0].error_code))
    .expect("commit");
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// The committed offset of each of `partitions` (-1: none).
pub async fn committed(
    conn: &mut Connection,
    group: &str,
    name: &str,
    partitions: &[i32],
) -> Vec<i64> {
    let t = offset_fetch_request::OffsetFetchRequestTopic::default()
        .with_name(topic(name))
        .with_partition_indexes(partitions.to_vec());
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![t]));
    let r = crate::retry!(r = conn.send(&req, 7).await; r.as_ref().map_or(0, |r| r.error_code))
        .expect("offset fetch");
    assert_eq!(r.error_code, 0, "{r:?}");
    r.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}
