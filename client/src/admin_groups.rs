//! Consumer-group administration: list, describe, delete, committed
//! offsets with lag, and offset resets ([`reset`]). Group requests go to the group's
//! coordinator (FindCoordinator), re-found when it moves or is loading.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! let mut admin = client::Admin::connect("127.0.0.1:9092").await?;
//! for p in admin.group_offsets("workers").await? {
//!     println!("{}-{} committed {:?} lag {:?}", p.topic, p.partition, p.committed, p.lag);
//! }
//! # Ok(()) }
//! ```

use crate::admin::Admin;
use crate::cluster::{is_retriable, topic_name};
use crate::connection::ClientError;
use crate::group::commit::{fetch_request, fetch_result, group_id, OFFSET_FETCH_VERSION};
use crate::group::coordinator::CoordinatorLink;
use crate::group::protocol::{decode_assignment, decode_subscription, PROTOCOL_TYPE};
use crate::group::TopicPartition;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, ListOffsetsRequest,
};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

pub mod reset;

const LIST_GROUPS_VERSION: i16 = 4;
const DESCRIBE_GROUPS_VERSION: i16 = 5;
const DELETE_GROUPS_VERSION: i16 = 2;
const LIST_OFFSETS_VERSION: i16 = 6;
/// ListOffsets timestamps meaning "log start" and "high watermark".
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// How long `list_groups` keeps asking while a listed broker cannot be
/// reached (a dead broker is fenced within a session timeout, 800 ms by
/// default).
const LIST_GROUPS_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// Rounds of ListOffsets while leaders move.
const LIST_OFFSETS_ATTEMPTS_MAX: u32 = 3;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// "consumer" for consumer groups.
    pub protocol_type: String,
    /// Its state (Stable, Empty, PreparingRebalance, ...).
    pub state: String,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client id it connected with.
    pub client_id: String,
    /// The host it connected from.
    pub client_host: String,
    /// Its subscribed topics (consumer groups only).
    pub topics: Vec<String>,
    /// Its assigned partitions (consumer groups only).
    pub assignment: Vec<TopicPartition>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: Empty, PreparingRebalance, CompletingRebalance, Stable or
    /// Dead (Dead also for a group that does not exist).
    pub state: String,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

/// A partition's committed offset and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset (next to consume), if any.
    pub committed: Option<i64>,
    /// The high watermark, if its leader answered.
    pub log_end: Option<i64>,
    /// `log_end - committed`, when both are known.
    pub lag: Option<i64>,
}

impl Admin {
    fn coordinator(&self, group: &str) -> CoordinatorLink {
        CoordinatorLink::new(&self.cluster.bootstrap().join(","), group)
    }

    /// Every group on every broker (each broker lists the groups it
    /// coordinates), sorted by id.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        let deadline = std::time::Instant::now() + LIST_GROUPS_WAIT_MAX;
        loop {
            match self.list_groups_once().await {
                // A broker that died is still listed until the controller
                // fences it; its groups move to other coordinators then.
                // Asking again once Metadata no longer lists it gives the
                // whole list, where skipping it would hide its groups.
                Err(ClientError::Io { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    /// ListGroups on every broker Metadata lists, once.
    async fn list_groups_once(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        // The brokers this Metadata answer lists, not every one ever seen:
        // a fenced broker leaves the answer once its groups have moved.
        let listed = self.cluster.refresh(Some(&[]), false).await?.brokers;
        let mut groups = BTreeMap::new();
        for broker in listed.iter().map(|b| b.node_id.0) {
            let sent = match self.cluster.connection(broker).await {
                Ok(conn) => {
                    conn.send(&ListGroupsRequest::default(), LIST_GROUPS_VERSION)
                        .await
                }
                Err(e) => Err(e),
            };
            let response = sent.inspect_err(|_| self.cluster.drop_connection(broker))?;
            ClientError::check(
                response.error_code,
                || format!("list groups on broker {broker}"),
                None,
            )?;
            for g in response.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: g.group_state.to_string(),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// One group: state, protocol and members with their assignments.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response = self
            .coordinator(group)
            .call(&request, DESCRIBE_GROUPS_VERSION, |r| {
                r.groups.first().map_or(0, |g| g.error_code)
            })
            .await?;
        let g = response
            .groups
            .first()
            .ok_or_else(|| ClientError::Protocol("empty DescribeGroups response".into()))?;
        ClientError::check(
            g.error_code,
            || format!("describe group {group}"),
            g.error_message.as_ref(),
        )?;
        let consumer = g.protocol_type.as_str() == PROTOCOL_TYPE;
        let members = g
            .members
            .iter()
            .map(|m| {
                let (topics, assignment) = if consumer {
                    decode_member(&m.member_metadata, &m.member_assignment)
                } else {
                    (Vec::new(), Vec::new())
                };
                GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    topics,
                    assignment,
                }
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// Deletes a group and its committed offsets; the coordinator refuses
    /// (NON_EMPTY_GROUP) while it has members.
    pub async fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let response = self
            .coordinator(group)
            .call(&request, DELETE_GROUPS_VERSION, |r| {
                r.results.first().map_or(0, |g| g.error_code)
            })
            .await?;
        let r = response
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol("empty DeleteGroups response".into()))?;
        ClientError::check(r.error_code, || format!("delete group {group}"), None)
    }

    /// Every committed offset of the group, with each partition's high
    /// watermark and the lag between them.
    pub async fn group_offsets(
        &mut self,
        group: &str,
    ) -> Result<Vec<PartitionOffsets>, ClientError> {
        let committed = self.committed_offsets(group).await?;
        let partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
        let ends = self.log_end_offsets(&partitions).await?;
        Ok(committed
            .into_iter()
            .map(|(tp, offset)| {
                let log_end = ends.get(&tp).copied();
                PartitionOffsets {
                    lag: log_end.map(|end| (end - offset).max(0)),
                    topic: tp.0,
                    partition: tp.1,
                    committed: Some(offset),
                    log_end,
                }
            })
            .collect())
    }

    /// The group's committed offsets (OffsetFetch with null topics: all).
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let request = fetch_request(group, None);
        let response = self
            .coordinator(group)
            .call(&request, OFFSET_FETCH_VERSION, |r| r.error_code)
            .await?;
        let committed = fetch_result(group, &response)?;
        Ok(committed
            .into_iter()
            .map(|(tp, c)| (tp, c.offset))
            .collect())
    }

    /// Each partition's high watermark (ListOffsets "latest").
    pub async fn log_end_offsets(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        self.list_offsets(partitions, LATEST).await
    }

    /// Each partition's log start offset (ListOffsets "earliest").
    pub async fn log_start_offsets(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        self.list_offsets(partitions, EARLIEST).await
    }

    /// ListOffsets at `timestamp` for `partitions`, one request per leader,
    /// again for partitions whose leader moved.
    async fn list_offsets(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let mut out = BTreeMap::new();
        let mut left: Vec<TopicPartition> = partitions.to_vec();
        for _ in 0..LIST_OFFSETS_ATTEMPTS_MAX {
            if left.is_empty() {
                break;
            }
            let mut moved = Vec::new();
            for (broker, tps) in self.by_leader(&left).await? {
                let (got, retry) = self.list_offsets_on(broker, &tps, timestamp).await?;
                out.extend(got);
                moved.extend(retry);
            }
            if !moved.is_empty() {
                let topics: Vec<&str> = moved.iter().map(|(t, _)| t.as_str()).collect();
                self.cluster.refresh(Some(&topics), false).await?;
            }
            left = moved;
        }
        match left.first() {
            None => Ok(out),
            Some((t, p)) => Err(ClientError::Kafka {
                context: format!("list offsets of {t}-{p}"),
                error: ResponseError::NotLeaderOrFollower,
            }),
        }
    }

    async fn by_leader(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<i32, Vec<(TopicPartition, i32)>>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i32)>> = BTreeMap::new();
        for (t, p) in partitions {
            let leader = self.cluster.leader_or_refresh(t, *p).await?;
            by_leader
                .entry(leader.broker)
                .or_default()
                .push(((t.clone(), *p), leader.epoch));
        }
        Ok(by_leader)
    }

    /// One ListOffsets to `broker`: the offsets it gave, and the
    /// partitions it no longer leads.
    async fn list_offsets_on(
        &mut self,
        broker: i32,
        partitions: &[(TopicPartition, i32)],
        timestamp: i64,
    ) -> Result<(Vec<(TopicPartition, i64)>, Vec<TopicPartition>), ClientError> {
        let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for ((t, p), epoch) in partitions {
            topics.entry(t).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_current_leader_epoch(*epoch)
                    .with_timestamp(timestamp),
            );
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let sent = async {
            let conn = self.cluster.connection(broker).await?;
            conn.send(&request, LIST_OFFSETS_VERSION).await
        }
        .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.cluster.drop_connection(broker);
                return Err(e);
            }
        };
        let (mut got, mut moved) = (Vec::new(), Vec::new());
        for t in &response.topics {
            for p in &t.partitions {
                let tp = (t.name.0.to_string(), p.partition_index);
                match ResponseError::try_from_code(p.error_code) {
                    None => got.push((tp, p.offset)),
                    Some(e) if is_retriable(e) => moved.push(tp),
                    Some(error) => {
                        return Err(ClientError::Kafka {
                            context: format!("list offsets of {}-{}", tp.0, tp.1),
                            error,
                        })
                    }
                }
            }
        }
        Ok((got, moved))
    }
}

/// A member's subscribed topics and assignment; bytes that do not decode
/// (a member mid-rebalance has no assignment yet) show as empty.
fn decode_member(
    metadata: &bytes::Bytes,
    assignment: &bytes::Bytes,
) -> (Vec<String>, Vec<TopicPartition>) {
    let topics = decode_subscription(metadata.clone())
        .map(|s| s.topics)
        .unwrap_or_default();
    let assignment = decode_assignment(assignment.clone())
        .map(|a| a.partitions)
        .unwrap_or_default();
    (topics, assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::protocol::{
        encode_assignment, encode_subscription, Assignment, Subscription,
    };

    #[test]
    fn members_decode_or_show_empty() {
        let metadata = encode_subscription(&Subscription {
            topics: vec!["jobs".into()],
            ..Subscription::default()
        });
        let assignment = encode_assignment(&Assignment {
            partitions: vec![("jobs".into(), 0)],
            user_data: None,
        });
        assert_eq!(
            decode_member(&metadata, &assignment),
            (vec!["jobs".to_string()], vec![("jobs".to_string(), 0)])
        );
        let junk = bytes::Bytes::from_static(b"\x00");
        assert_eq!(decode_member(&junk, &bytes::Bytes::new()), (vec![], vec![]));
    }
}
