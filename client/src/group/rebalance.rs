//! One rebalance round: JoinGroup, the leader's assignment, SyncGroup. The
//! request builders and the assignment diff are pure; [`join_group`] does
//! the round trips and reports what the round ended in.

use super::assignor::{Assignor, MemberSubscription, PartitionCounts, RebalanceProtocol};
use super::commit::group_id;
use super::coordinator::CoordinatorLink;
use super::membership::{Reaction, Shared};
use super::protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, Assignment,
    Subscription, PROTOCOL_TYPE,
};
use super::TopicPartition;
use crate::cluster::Cluster;
use crate::connection::ClientError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// JoinGroup version (v7: the chosen protocol comes back; v8 adds only a
/// reason string).
const JOIN_GROUP_VERSION: i16 = 7;
/// SyncGroup version (v5: protocol type and name).
const SYNC_GROUP_VERSION: i16 = 5;

/// What a member brings to a join.
#[derive(Debug)]
pub struct JoinParams<'a> {
    /// The group.
    pub group_id: &'a str,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`: how long the coordinator waits for members
    /// to rejoin.
    pub rebalance_timeout: Duration,
    /// The assignors, in order of preference.
    pub assignors: &'a [Arc<dyn Assignor>],
    /// The subscription (topics, owned partitions and their generation).
    pub subscription: Subscription,
}

/// A successful round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The new generation.
    pub generation_id: i32,
    /// This member's id in it.
    pub member_id: String,
    /// The chosen assignor.
    pub protocol: String,
    /// Whether this member was the leader.
    pub leader: bool,
    /// This member's partitions.
    pub assignment: Assignment,
}

/// How a round ended when it did not fail outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// In the new generation.
    Joined(Joined),
    /// Start over (a new member id, a rebalance restarted, a lost
    /// generation): the membership says how.
    Retry,
}

/// Eager unless every assignor can do cooperative rebalancing: members that
/// listed an eager assignor may end up using it, and then partitions must
/// be released before the join (Kafka's rule, for rolling upgrades).
pub fn rebalance_protocol(assignors: &[Arc<dyn Assignor>]) -> RebalanceProtocol {
    if !assignors.is_empty() && assignors.iter().all(|a| a.supports_cooperative()) {
        RebalanceProtocol::Cooperative
    } else {
        RebalanceProtocol::Eager
    }
}

/// What `new` takes away from `owned`, and what it adds.
/// `diff([a0, a1], [a1, a2])` -> `([a0], [a2])`.
pub fn diff(
    owned: &[TopicPartition],
    new: &[TopicPartition],
) -> (Vec<TopicPartition>, Vec<TopicPartition>) {
    let owned_set: BTreeSet<&TopicPartition> = owned.iter().collect();
    let new_set: BTreeSet<&TopicPartition> = new.iter().collect();
    let revoked = owned_set
        .difference(&new_set)
        .map(|tp| (*tp).clone())
        .collect();
    let added = new_set
        .difference(&owned_set)
        .map(|tp| (*tp).clone())
        .collect();
    (revoked, added)
}

/// The JoinGroup for `params`, as `member_id` (empty on a first join).
pub fn join_request(
    params: &JoinParams<'_>,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> JoinGroupRequest {
    let metadata = encode_subscription(&params.subscription);
    JoinGroupRequest::default()
        .with_group_id(group_id(params.group_id))
        .with_session_timeout_ms(millis(params.session_timeout))
        .with_rebalance_timeout_ms(millis(params.rebalance_timeout))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_group_instance_id(group_instance_id.map(|i| StrBytes::from_string(i.to_string())))
        .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
        .with_protocols(
            params
                .assignors
                .iter()
                .map(|a| {
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_string(a.name().to_string()))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        )
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// The members and topics in a leader's JoinGroup answer.
pub fn leader_members(
    response: &JoinGroupResponse,
) -> Result<Vec<MemberSubscription>, ClientError> {
    response
        .members
        .iter()
        .map(|m| {
            Ok(MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                subscription: decode_subscription(m.metadata.clone())?,
            })
        })
        .collect()
}

/// Runs the chosen assignor over `members` and encodes the result.
pub fn leader_assignments(
    assignor: &dyn Assignor,
    partitions: &PartitionCounts,
    members: &[MemberSubscription],
) -> Vec<SyncGroupRequestAssignment> {
    assignor
        .assign(partitions, members)
        .into_iter()
        .map(|(member_id, partitions)| {
            let bytes = encode_assignment(&Assignment {
                partitions,
                user_data: None,
            });
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_assignment(bytes)
        })
        .collect()
}

/// One JoinGroup + SyncGroup round. Errors that need another round
/// (MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS, lost generations) are
/// applied to the membership and come back as [`JoinOutcome::Retry`];
/// FENCED_INSTANCE_ID and configuration errors fail.
pub async fn join_group(
    link: &mut CoordinatorLink,
    cluster: &mut Cluster,
    shared: &Shared,
    params: &JoinParams<'_>,
) -> Result<JoinOutcome, ClientError> {
    let (member_id, instance_id) = {
        let mut m = shared.lock();
        m.start_join();
        (
            m.member_id.clone(),
            m.group_instance_id().map(str::to_string),
        )
    };
    let request = join_request(params, &member_id, instance_id.as_deref());
    let join = link
        .call(&request, JOIN_GROUP_VERSION, |r| r.error_code)
        .await;
    let join = match join {
        Ok(r) => r,
        Err(e) => return Err(end_join(shared, e)),
    };
    if let Some(error) = ResponseError::try_from_code(join.error_code) {
        if error == ResponseError::MemberIdRequired {
            // KIP-394: the coordinator names us; join again under it.
            shared.lock().member_id = join.member_id.to_string();
            return Ok(JoinOutcome::Retry);
        }
        return retry_or_fail(shared, error, "join group", params.group_id);
    }
    shared.lock().join_answered();
    let protocol = join
        .protocol_name
        .as_ref()
        .map(|p| p.to_string())
        .ok_or_else(|| ClientError::Protocol("JoinGroup chose no protocol".into()))?;
    let leader = join.leader == join.member_id;
    let assignments = if leader {
        match assign_as_leader(cluster, params, &protocol, &join).await {
            Ok(a) => a,
            Err(e) => return Err(end_join(shared, e)),
        }
    } else {
        Vec::new()
    };
    let sync = SyncGroupRequest::default()
        .with_group_id(group_id(params.group_id))
        .with_generation_id(join.generation_id)
        .with_member_id(join.member_id.clone())
        .with_group_instance_id(instance_id.map(StrBytes::from_string))
        .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
        .with_protocol_name(Some(StrBytes::from_string(protocol.clone())))
        .with_assignments(assignments);
    let sync = match link.call(&sync, SYNC_GROUP_VERSION, |r| r.error_code).await {
        Ok(r) => r,
        Err(e) => return Err(end_join(shared, e)),
    };
    // SyncGroup refusals are about this member id in this round.
    shared.lock().member_id = join.member_id.to_string();
    if let Some(error) = ResponseError::try_from_code(sync.error_code) {
        return retry_or_fail(shared, error, "sync group", params.group_id);
    }
    let assignment = match decode_assignment(sync.assignment.clone()) {
        Ok(a) => a,
        Err(e) => return Err(end_join(shared, e)),
    };
    shared.lock().joined(
        join.generation_id,
        join.member_id.to_string(),
        Some(protocol.clone()),
    );
    Ok(JoinOutcome::Joined(Joined {
        generation_id: join.generation_id,
        member_id: join.member_id.to_string(),
        protocol,
        leader,
        assignment,
    }))
}

/// [`join_group`], given up when the member keeps partitions through the
/// round and the round outlasts its
/// [`join_deadline`](super::membership::Membership::join_deadline), `margin`
/// before the coordinator may expire it: then the generation ends, the
/// answer is [`JoinOutcome::Retry`] (the next round reports the partitions
/// lost), and the link's connection, which may yet carry the abandoned
/// round's answers, is dropped. Without this a member whose JoinGroup went
/// to a failing coordinator would go on owning its partitions after the
/// new coordinator had expired it and handed them to another member.
pub async fn join_group_within_session(
    link: &mut CoordinatorLink,
    cluster: &mut Cluster,
    shared: &Shared,
    params: &JoinParams<'_>,
    margin: Duration,
) -> Result<JoinOutcome, ClientError> {
    if params.subscription.owned_partitions.is_empty() {
        return join_group(link, cluster, shared, params).await;
    }
    let session = params.session_timeout;
    let finished = {
        let join = std::pin::pin!(join_group(link, cluster, shared, params));
        until_join_deadline(join, shared, session, margin).await
    };
    finished.unwrap_or_else(|| {
        link.forget();
        Ok(JoinOutcome::Retry)
    })
}

/// Runs `join` until it ends (`Some`) or the member's join deadline passes
/// (`None`). The deadline moves on when the JoinGroup is answered.
async fn until_join_deadline<F: std::future::Future<Output = Result<JoinOutcome, ClientError>>>(
    mut join: std::pin::Pin<&mut F>,
    shared: &Shared,
    session: Duration,
    margin: Duration,
) -> Option<Result<JoinOutcome, ClientError>> {
    loop {
        let deadline = shared.lock().join_deadline(session, margin);
        let Some(deadline) = deadline else {
            return Some(join.await);
        };
        tokio::select! {
            biased;
            outcome = &mut join => return Some(outcome),
            _ = tokio::time::sleep_until(deadline.into()) => {
                if shared.expire_join(std::time::Instant::now(), session, margin) {
                    return None;
                }
            }
        }
    }
}

/// The leader's part: learn the partition counts of every topic any member
/// wants, then run the chosen assignor.
async fn assign_as_leader(
    cluster: &mut Cluster,
    params: &JoinParams<'_>,
    protocol: &str,
    join: &JoinGroupResponse,
) -> Result<Vec<SyncGroupRequestAssignment>, ClientError> {
    let assignor = params
        .assignors
        .iter()
        .find(|a| a.name() == protocol)
        .ok_or_else(|| {
            ClientError::Protocol(format!("coordinator chose unknown assignor {protocol}"))
        })?;
    let members = leader_members(join)?;
    let topics: BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.subscription.topics.iter().map(String::as_str))
        .collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    cluster.refresh(Some(&topics), false).await?;
    let counts: PartitionCounts = topics
        .iter()
        .filter_map(|t| cluster.partition_count(t).map(|n| (t.to_string(), n)))
        .collect();
    tracing::info!(
        generation = join.generation_id,
        members = members.len(),
        protocol,
        "leading the group's assignment"
    );
    Ok(leader_assignments(assignor.as_ref(), &counts, &members))
}

/// A failed round leaves the member where it was: heartbeats resume if the
/// old generation still stands.
fn end_join(shared: &Shared, error: ClientError) -> ClientError {
    shared.lock().abort_join();
    error
}

fn retry_or_fail(
    shared: &Shared,
    error: ResponseError,
    what: &str,
    group: &str,
) -> Result<JoinOutcome, ClientError> {
    let reaction = shared.lock().react(error);
    match reaction {
        Reaction::Rejoin | Reaction::ResetGeneration | Reaction::ResetMember => {
            shared.lock().abort_join();
            Ok(JoinOutcome::Retry)
        }
        Reaction::Fatal => Err(shared.lock().fatal.clone().expect("set by react")),
        Reaction::None => Err(end_join(
            shared,
            ClientError::Kafka {
                context: format!("{what} {group}"),
                error,
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::assignor::{Range, RoundRobin};
    use crate::group::sticky::CooperativeSticky;
    use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn diff_table() {
        let cases = [
            (
                vec![tp("a", 0), tp("a", 1)],
                vec![tp("a", 1), tp("a", 2)],
                vec![tp("a", 0)],
                vec![tp("a", 2)],
            ),
            (vec![], vec![tp("a", 0)], vec![], vec![tp("a", 0)]),
            (vec![tp("a", 0)], vec![], vec![tp("a", 0)], vec![]),
            (vec![tp("a", 0)], vec![tp("a", 0)], vec![], vec![]),
        ];
        for (owned, new, revoked, added) in cases {
            assert_eq!(diff(&owned, &new), (revoked, added));
        }
    }

    /// Kafka's rule: cooperative only if every listed assignor is.
    #[test]
    fn rebalance_protocol_table() {
        let sticky: Arc<dyn Assignor> = Arc::new(CooperativeSticky);
        let range: Arc<dyn Assignor> = Arc::new(Range);
        assert_eq!(
            rebalance_protocol(std::slice::from_ref(&sticky)),
            RebalanceProtocol::Cooperative
        );
        assert_eq!(
            rebalance_protocol(&[sticky, range.clone()]),
            RebalanceProtocol::Eager
        );
        assert_eq!(rebalance_protocol(&[range]), RebalanceProtocol::Eager);
        assert_eq!(rebalance_protocol(&[]), RebalanceProtocol::Eager);
    }

    /// The JoinGroup lists every assignor, in order, each with the same
    /// subscription, and carries the static instance id.
    #[test]
    fn join_request_lists_assignors_in_order() {
        let assignors: Vec<Arc<dyn Assignor>> =
            vec![Arc::new(CooperativeSticky), Arc::new(RoundRobin)];
        let params = JoinParams {
            group_id: "g",
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
            assignors: &assignors,
            subscription: Subscription {
                topics: vec!["jobs".into()],
                owned_partitions: vec![tp("jobs", 0)],
                generation: Some(4),
                ..Subscription::default()
            },
        };
        let r = join_request(&params, "", Some("worker-1"));
        assert_eq!(r.session_timeout_ms, 10_000);
        assert_eq!(r.rebalance_timeout_ms, 60_000);
        assert_eq!(r.group_instance_id.as_deref(), Some("worker-1"));
        assert_eq!(r.protocol_type.as_str(), "consumer");
        let names: Vec<&str> = r.protocols.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["cooperative-sticky", "roundrobin"]);
        let sub = decode_subscription(r.protocols[0].metadata.clone()).unwrap();
        assert_eq!(sub, params.subscription);
    }

    /// The leader decodes every member's subscription from the JoinGroup
    /// answer and encodes one assignment per member for SyncGroup.
    #[test]
    fn leader_round_trip() {
        let member = |id: &str| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(id.to_string()))
                .with_metadata(encode_subscription(&Subscription {
                    topics: vec!["jobs".into()],
                    ..Subscription::default()
                }))
        };
        let join = JoinGroupResponse::default().with_members(vec![member("b"), member("a")]);
        let members = leader_members(&join).unwrap();
        let counts: PartitionCounts = [("jobs".to_string(), 1)].into_iter().collect();
        let out = leader_assignments(&Range, &counts, &members);
        let decoded: Vec<(String, Vec<TopicPartition>)> = out
            .iter()
            .map(|a| {
                (
                    a.member_id.to_string(),
                    decode_assignment(a.assignment.clone()).unwrap().partitions,
                )
            })
            .collect();
        assert_eq!(
            decoded,
            vec![
                ("a".to_string(), vec![tp("jobs", 0)]),
                ("b".to_string(), vec![])
            ]
        );
    }
}
