//! The truncate phase of a fetcher: one OffsetForLeaderEpoch request for
//! every partition that needs it, then each divergent tail cut where the
//! leader's answer says (KIP-101, KIP-279).

use super::link::Link;
use super::outcome::{self, Next};
use super::session::{by_topic, trouble_of, Followed, Phase, BACKOFF};
use super::Key;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::BrokerId;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// For every partition in the truncate phase, asks the leader (one
/// OffsetForLeaderEpoch request for all) where its latest epoch ends and
/// cuts there; a partition moves on to fetching once the leader confirms
/// its latest epoch (or its log has none).
pub(super) async fn truncate(
    me: i32,
    leader: i32,
    link: &mut Link,
    followed: &mut BTreeMap<Key, Followed>,
) -> anyhow::Result<()> {
    let mut asks = BTreeMap::new();
    for (key, f) in followed.iter_mut() {
        if f.phase != Phase::Truncate {
            continue;
        }
        match f.assignment.partition.latest_epoch() {
            Some(latest) => {
                asks.insert(key.clone(), latest);
            }
            None => f.phase = Phase::Fetch,
        }
    }
    if asks.is_empty() {
        return Ok(());
    }
    let topics = by_topic(asks.iter())
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, &latest)| {
                    let epoch = followed[&(topic.to_string(), index)]
                        .assignment
                        .leader_epoch;
                    OffsetForLeaderPartition::default()
                        .with_partition(index)
                        .with_current_leader_epoch(epoch)
                        .with_leader_epoch(latest)
                })
                .collect();
            OffsetForLeaderTopic::default()
                .with_topic(crate::handlers::topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(me))
        .with_topics(topics);
    let response = link.call(&request, 4).await?;
    let now = Instant::now();
    let mut cuts = Vec::new();
    for topic in response.topics {
        let name = topic.topic.0.to_string();
        for answer in topic.partitions {
            let key = (name.clone(), answer.partition);
            let (Some(f), Some(&latest)) = (followed.get_mut(&key), asks.get(&key)) else {
                continue;
            };
            if answer.error_code != 0 {
                let next = match outcome::next(answer.error_code, -1, -1) {
                    Next::WaitForImage => Next::WaitForImage,
                    _ => Next::Backoff,
                };
                f.report(&key, leader, trouble_of(next, answer.error_code, -1, -1));
                f.phase = match next {
                    Next::WaitForImage => Phase::WaitForImage,
                    _ => Phase::Backoff(now + BACKOFF),
                };
                continue;
            }
            let leader_answer =
                (answer.leader_epoch >= 0).then_some((answer.leader_epoch, answer.end_offset));
            cuts.push((key, f.assignment.partition.clone(), latest, leader_answer));
        }
    }
    let confirmed = tokio::task::spawn_blocking(move || {
        cuts.into_iter()
            .map(|(key, p, latest, answer)| {
                let result = cut(&p, latest, answer);
                (key, result)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for (key, result) in confirmed {
        let Some(f) = followed.get_mut(&key) else {
            continue;
        };
        match result {
            Ok(true) => f.phase = Phase::Fetch,
            Ok(false) => {}
            Err(e) => {
                f.report(&key, leader, Some(format!("cannot truncate: {e}")));
                f.phase = Phase::Backoff(now + BACKOFF);
            }
        }
    }
    Ok(())
}

/// Cuts `p` where the leader's answer for its `latest` epoch says
/// (KIP-101, KIP-279); returns whether the leader confirmed that epoch.
fn cut(
    p: &crate::partition::Partition,
    latest: i32,
    leader_answer: Option<(i32, i64)>,
) -> anyhow::Result<bool> {
    let (_, hw, end) = p.offsets();
    let cut = replication::truncation(end, hw, leader_answer, |e| p.end_offset_for_epoch(e));
    let confirmed = leader_answer.is_none_or(|(e, _)| e == latest);
    if cut < end || !confirmed {
        let leader = match leader_answer {
            Some((epoch, offset)) => format!("leader's epoch {epoch} ends at {offset}"),
            None => "leader has no such epoch".to_string(),
        };
        tracing::info!(
            "partition {}-{} follower truncating from offset {end} to {cut} ({leader})",
            p.topic,
            p.index
        );
        if cut < p.log_start_offset() {
            // Retention here already removed what the leader keeps: start
            // over where the leader's history and ours part.
            p.truncate_fully_and_start_at(cut)?;
        } else {
            // At the log end this still drops epochs the leader never had.
            p.truncate_to(cut)?;
        }
    }
    Ok(confirmed)
}
