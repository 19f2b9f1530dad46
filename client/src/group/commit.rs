//! OffsetCommit and OffsetFetch, as pure request builders and answer
//! readers, shared by the group consumer and the admin client.

use super::membership::MemberGeneration;
use super::protocol::by_topic;
use super::TopicPartition;
use crate::cluster::topic_name;
use crate::connection::ClientError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

/// OffsetCommit version: v7 carries the instance id, v8 is flexible.
pub const OFFSET_COMMIT_VERSION: i16 = 8;
/// OffsetFetch version: the last with a single group per request.
pub const OFFSET_FETCH_VERSION: i16 = 7;

/// One offset to commit: the next offset to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume (one past the last processed record).
    pub offset: i64,
    /// Leader epoch of the last consumed record, so a consumer starting
    /// from this offset can validate it (KIP-320).
    pub leader_epoch: Option<i32>,
}

/// An offset the group committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch it was committed with, if any.
    pub leader_epoch: Option<i32>,
    /// The commit's metadata string.
    pub metadata: Option<String>,
}

pub(crate) fn group_id(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_string()))
}

/// An OffsetCommit for `offsets`, as `member`, or as an admin outside any
/// generation (generation -1, no member id) when `member` is `None`: the
/// coordinator accepts that only while the group has no members.
pub fn commit_request(
    group: &str,
    member: Option<&MemberGeneration>,
    offsets: &[CommitOffset],
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for o in offsets {
        topics.entry(&o.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(o.partition)
                .with_committed_offset(o.offset)
                .with_committed_leader_epoch(o.leader_epoch.unwrap_or(-1)),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(member.map_or(-1, |m| m.generation_id))
        .with_member_id(StrBytes::from_string(
            member.map_or(String::new(), |m| m.member_id.clone()),
        ))
        .with_group_instance_id(
            member
                .and_then(|m| m.group_instance_id.clone())
                .map(StrBytes::from_string),
        )
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// The first partition error of an OffsetCommit answer (the coordinator
/// errors are the same for every partition), 0 if none.
pub fn commit_error_code(response: &OffsetCommitResponse) -> i16 {
    response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.error_code)
        .find(|&c| c != 0)
        .unwrap_or(0)
}

/// `Ok` if every partition was committed, else the first refusal.
pub fn commit_result(group: &str, response: &OffsetCommitResponse) -> Result<(), ClientError> {
    for t in &response.topics {
        for p in &t.partitions {
            ClientError::check(
                p.error_code,
                || format!("commit {}-{} to group {group}", t.name.0, p.partition_index),
                None,
            )?;
        }
    }
    Ok(())
}

/// An OffsetFetch for `partitions`, or for every partition the group has
/// offsets for when `None`.
pub fn fetch_request(group: &str, partitions: Option<&[TopicPartition]>) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(partitions.map(|ps| {
            by_topic(ps)
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(&t))
                        .with_partition_indexes(ps)
                })
                .collect()
        }))
}

/// The committed offsets in an OffsetFetch answer. Partitions without a
/// commit (offset -1) or of unknown topics are left out; any other
/// partition error fails the whole answer (UNSTABLE_OFFSET_COMMIT is
/// retriable: a transaction's offsets are pending).
pub fn fetch_result(
    group: &str,
    response: &OffsetFetchResponse,
) -> Result<BTreeMap<TopicPartition, CommittedOffset>, ClientError> {
    ClientError::check(
        response.error_code,
        || format!("fetch offsets of group {group}"),
        None,
    )?;
    let mut out = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            if ResponseError::try_from_code(p.error_code)
                == Some(ResponseError::UnknownTopicOrPartition)
            {
                continue;
            }
            ClientError::check(
                p.error_code,
                || {
                    format!(
                        "committed offset of {}-{} in group {group}",
                        t.name.0, p.partition_index
                    )
                },
                None,
            )?;
            if p.committed_offset < 0 {
                continue;
            }
            out.insert(
                (t.name.0.to_string(), p.partition_index),
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: Some(p.committed_leader_epoch).filter(|e| *e >= 0),
                    metadata: p.metadata.as_ref().map(|m| m.to_string()),
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};

    fn offset(topic: &str, partition: i32, offset: i64) -> CommitOffset {
        CommitOffset {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: Some(2),
        }
    }

    /// A member's commit carries its generation, member id and instance
    /// id, grouped by topic; it survives encoding at the version we send.
    #[test]
    fn member_commit_request() {
        let member = MemberGeneration {
            generation_id: 7,
            member_id: "m-1".into(),
            group_instance_id: Some("i-1".into()),
        };
        let r = commit_request(
            "g",
            Some(&member),
            &[offset("b", 0, 5), offset("a", 1, 9), offset("b", 1, 3)],
        );
        assert_eq!(r.generation_id_or_member_epoch, 7);
        assert_eq!(r.member_id.as_str(), "m-1");
        assert_eq!(r.group_instance_id.as_deref(), Some("i-1"));
        let names: Vec<&str> = r.topics.iter().map(|t| t.name.0.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(r.topics[1].partitions.len(), 2);
        assert_eq!(r.topics[0].partitions[0].committed_leader_epoch, 2);
        let mut buf = bytes::BytesMut::new();
        r.encode(&mut buf, OFFSET_COMMIT_VERSION).unwrap();
        let back = OffsetCommitRequest::decode(&mut buf.freeze(), OFFSET_COMMIT_VERSION).unwrap();
        assert_eq!(back, r);
    }

    /// An admin commit is outside any generation.
    #[test]
    fn admin_commit_request() {
        let r = commit_request("g", None, &[offset("a", 0, 0)]);
        assert_eq!(r.generation_id_or_member_epoch, -1);
        assert!(r.member_id.is_empty());
        assert_eq!(r.group_instance_id, None);
    }

    #[test]
    fn commit_answers() {
        let answer = |codes: &[i16]| {
            OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(
                    codes
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(i as i32)
                                .with_error_code(*c)
                        })
                        .collect(),
                )])
        };
        assert!(commit_result("g", &answer(&[0, 0])).is_ok());
        let refused = answer(&[0, ResponseError::IllegalGeneration.code()]);
        assert_eq!(
            commit_error_code(&refused),
            ResponseError::IllegalGeneration.code()
        );
        let e = commit_result("g", &refused).unwrap_err();
        assert_eq!(e.kafka_error(), Some(ResponseError::IllegalGeneration));
        assert!(e.to_string().contains("t-1"), "{e}");
    }

    #[test]
    fn fetch_request_null_topics_means_all() {
        assert_eq!(fetch_request("g", None).topics, None);
        let some = fetch_request("g", Some(&[("t".into(), 1), ("t".into(), 0)]));
        let topics = some.topics.unwrap();
        assert_eq!(topics[0].partition_indexes, vec![0, 1]);
    }

    #[test]
    fn fetch_answers_skip_missing_commits() {
        let partition = |p: i32, offset: i64, code: i16| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_error_code(code)
        };
        let response =
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    partition(0, 42, 0),
                    partition(1, -1, 0),
                    partition(2, 0, ResponseError::UnknownTopicOrPartition.code()),
                ])]);
        let got = fetch_result("g", &response).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&("t".to_string(), 0)].offset, 42);
        assert_eq!(got[&("t".to_string(), 0)].leader_epoch, None);
        let unstable =
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![partition(
                    0,
                    1,
                    ResponseError::UnstableOffsetCommit.code(),
                )])]);
        assert!(fetch_result("g", &unstable).is_err());
        let top = OffsetFetchResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
        assert!(fetch_result("g", &top).is_err());
    }
}
