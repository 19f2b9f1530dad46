//! Offset resets, planned before they are applied, as Kafka's
//! `kafka-consumer-groups --reset-offsets` does (a dry run unless told to
//! execute). [`Admin::reset_positions`] reads where each partition stands,
//! the pure [`plan`] decides the new offsets and says which it clamped,
//! [`Admin::commit_reset`] applies a plan.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use client::admin_groups::reset::{plan, ResetTo, TopicSelection};
//! let mut admin = client::Admin::connect("127.0.0.1:9092").await?;
//! let jobs = [TopicSelection { topic: "jobs".into(), partitions: None }];
//! let positions = admin.reset_positions("workers", &jobs, None).await?;
//! let rows = plan(ResetTo::Earliest, &positions)?;
//! admin.commit_reset("workers", &rows).await?;
//! # Ok(()) }
//! ```

use crate::admin::Admin;
use crate::connection::ClientError;
use crate::group::commit::OFFSET_COMMIT_VERSION;
use crate::group::commit::{commit_error_code, commit_request, commit_result, CommitOffset};
use crate::group::TopicPartition;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};

/// Where a reset moves a group (Kafka's `--to-earliest`, `--to-latest`,
/// `--to-offset`, `--shift-by`, `--to-datetime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's log start.
    Earliest,
    /// Each partition's high watermark.
    Latest,
    /// This offset, clamped into each partition's [log start, high
    /// watermark] as Kafka's tool does.
    Offset(i64),
    /// The committed offset moved by this much (negative: back), clamped.
    ShiftBy(i64),
    /// The first offset whose timestamp is at or after this time (ms since
    /// the epoch); the high watermark where no record is that recent.
    Datetime(i64),
}

/// Partitions of one topic to reset: all of them, or those listed (Kafka's
/// `--topic jobs:0,1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSelection {
    /// Topic.
    pub topic: String,
    /// Partitions; `None` for every partition.
    pub partitions: Option<Vec<i32>>,
}

/// Where one partition stands before a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// The log start offset.
    pub log_start: i64,
    /// The high watermark.
    pub log_end: i64,
    /// For a reset to a datetime: the first offset at or after it, `None`
    /// where no record is that recent.
    pub at_datetime: Option<i64>,
}

/// One row of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset before the reset, if any.
    pub committed: Option<i64>,
    /// The log start offset.
    pub log_start: i64,
    /// The high watermark.
    pub log_end: i64,
    /// The offset the reset asked for, before clamping.
    pub requested: i64,
    /// The offset to commit.
    pub new_offset: i64,
    /// Whether `requested` was outside [log start, high watermark] and was
    /// moved to its nearest end.
    pub clamped: bool,
    /// What the operator should know about this row (a clamp, a datetime
    /// past the last record), in Kafka's tool's words.
    pub warning: Option<String>,
}

/// A reset that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--shift-by` on a partition the group never committed.
    #[error("cannot shift offset for partition {topic}-{partition} since there is no current committed offset")]
    NoCommittedOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
}

/// The new offset of every partition in `positions`. Pure: the caller
/// reads the positions and applies the plan.
pub fn plan(to: ResetTo, positions: &[PartitionPosition]) -> Result<Vec<PlannedReset>, PlanError> {
    positions.iter().map(|p| plan_one(to, p)).collect()
}

fn plan_one(to: ResetTo, p: &PartitionPosition) -> Result<PlannedReset, PlanError> {
    let name = format!("{}-{}", p.topic, p.partition);
    let mut warning = None;
    let requested = match to {
        ResetTo::Earliest => p.log_start,
        ResetTo::Latest => p.log_end,
        ResetTo::Offset(n) => n,
        ResetTo::ShiftBy(n) => p
            .committed
            .ok_or_else(|| PlanError::NoCommittedOffset {
                topic: p.topic.clone(),
                partition: p.partition,
            })?
            .saturating_add(n),
        ResetTo::Datetime(_) => p.at_datetime.unwrap_or_else(|| {
            warning = Some(format!(
                "Partition {name} has no record at or after the datetime. Falling back to latest offset {}",
                p.log_end
            ));
            p.log_end
        }),
    };
    // A log end below its start cannot happen; if it did, the start wins.
    let log_end = p.log_end.max(p.log_start);
    let new_offset = requested.clamp(p.log_start, log_end);
    let clamped = new_offset != requested;
    if requested > log_end {
        warning = Some(format!("New offset ({requested}) is higher than latest offset for topic partition {name}. Value will be set to {new_offset}"));
    } else if requested < p.log_start {
        warning = Some(format!("New offset ({requested}) is lower than earliest offset for topic partition {name}. Value will be set to {new_offset}"));
    }
    Ok(PlannedReset {
        topic: p.topic.clone(),
        partition: p.partition,
        committed: p.committed,
        log_start: p.log_start,
        log_end: p.log_end,
        requested,
        new_offset,
        clamped,
        warning,
    })
}

impl Admin {
    /// Where each selected partition stands for `group`: its committed
    /// offset, log start and high watermark, and with `datetime` (ms since
    /// the epoch) the first offset at or after it. A topic or partition
    /// that does not exist is UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn reset_positions(
        &mut self,
        group: &str,
        topics: &[TopicSelection],
        datetime: Option<i64>,
    ) -> Result<Vec<PartitionPosition>, ClientError> {
        let committed = self.committed_offsets(group).await?;
        let mut partitions = BTreeSet::new();
        for selection in topics {
            let info = self.describe_topic(&selection.topic).await?;
            let all: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
            let wanted = selection.partitions.clone().unwrap_or_else(|| all.clone());
            for p in wanted {
                if !all.contains(&p) {
                    return Err(ClientError::Kafka {
                        context: format!(
                            "partition {}-{p} does not exist ({} partitions)",
                            selection.topic,
                            all.len()
                        ),
                        error: ResponseError::UnknownTopicOrPartition,
                    });
                }
                partitions.insert((selection.topic.clone(), p));
            }
        }
        let partitions: Vec<TopicPartition> = partitions.into_iter().collect();
        let starts = self.log_start_offsets(&partitions).await?;
        let ends = self.log_end_offsets(&partitions).await?;
        let at = match datetime {
            Some(ts) => self.list_offsets(&partitions, ts).await?,
            None => BTreeMap::new(),
        };
        partitions
            .into_iter()
            .map(|tp| {
                let missing = || ClientError::Protocol(format!("no offsets for {}-{}", tp.0, tp.1));
                Ok(PartitionPosition {
                    committed: committed.get(&tp).copied(),
                    log_start: *starts.get(&tp).ok_or_else(missing)?,
                    log_end: *ends.get(&tp).ok_or_else(missing)?,
                    // ListOffsets answers -1 where no record is that recent.
                    at_datetime: at.get(&tp).copied().filter(|o| *o >= 0),
                    topic: tp.0,
                    partition: tp.1,
                })
            })
            .collect()
    }

    /// Commits a plan's new offsets outside any generation. Refused while
    /// the group has members (they would overwrite it): stop them first.
    pub async fn commit_reset(
        &mut self,
        group: &str,
        plan: &[PlannedReset],
    ) -> Result<(), ClientError> {
        let description = self.describe_group(group).await?;
        if !description.members.is_empty() {
            return Err(not_empty(
                group,
                &description.state,
                description.members.len(),
            ));
        }
        let offsets: Vec<CommitOffset> = plan
            .iter()
            .map(|row| CommitOffset {
                topic: row.topic.clone(),
                partition: row.partition,
                offset: row.new_offset,
                leader_epoch: None,
            })
            .collect();
        let request = commit_request(group, None, &offsets);
        let response = self
            .coordinator(group)
            .call(&request, OFFSET_COMMIT_VERSION, commit_error_code)
            .await?;
        commit_result(group, &response).map_err(|e| match e.kafka_error() {
            // A member joined between the check and the commit.
            Some(
                ResponseError::UnknownMemberId
                | ResponseError::IllegalGeneration
                | ResponseError::RebalanceInProgress
                | ResponseError::NonEmptyGroup,
            ) => not_empty(group, "active", 0),
            _ => e,
        })
    }
}

/// The refusal of a reset on a group with members.
pub(crate) fn not_empty(group: &str, state: &str, members: usize) -> ClientError {
    let who = if members > 0 {
        format!("{members} members")
    } else {
        "members".to_string()
    };
    ClientError::Kafka {
        context: format!(
            "group {group} has {who} (state {state}): offsets can only be reset while no consumer is in the group; stop them first"
        ),
        error: ResponseError::NonEmptyGroup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(committed: Option<i64>, log_start: i64, log_end: i64) -> PartitionPosition {
        PartitionPosition {
            topic: "t".into(),
            partition: 0,
            committed,
            log_start,
            log_end,
            at_datetime: None,
        }
    }

    #[test]
    fn plans_each_target_and_clamps_visibly() {
        // (target, position, requested, new offset, clamped)
        let cases = [
            (ResetTo::Earliest, at(Some(7), 5, 20), 5, 5, false),
            (ResetTo::Latest, at(Some(7), 5, 20), 20, 20, false),
            (ResetTo::Latest, at(None, 0, 0), 0, 0, false),
            (ResetTo::Offset(12), at(Some(7), 5, 20), 12, 12, false),
            (ResetTo::Offset(20), at(None, 5, 20), 20, 20, false),
            (ResetTo::Offset(500), at(Some(7), 5, 20), 500, 20, true),
            (ResetTo::Offset(2), at(Some(7), 5, 20), 2, 5, true),
            (ResetTo::ShiftBy(-3), at(Some(10), 5, 20), 7, 7, false),
            (ResetTo::ShiftBy(-8), at(Some(10), 5, 20), 2, 5, true),
            (ResetTo::ShiftBy(15), at(Some(10), 5, 20), 25, 20, true),
            (
                ResetTo::ShiftBy(i64::MAX),
                at(Some(10), 5, 20),
                i64::MAX,
                20,
                true,
            ),
        ];
        for (to, position, requested, new_offset, clamped) in cases {
            let row = plan(to, std::slice::from_ref(&position)).unwrap().remove(0);
            let got = (row.requested, row.new_offset, row.clamped);
            assert_eq!(got, (requested, new_offset, clamped), "{to:?} {position:?}");
            assert_eq!(row.warning.is_some(), clamped, "{to:?}: {:?}", row.warning);
            assert_eq!(row.committed, position.committed);
        }
    }

    #[test]
    fn clamp_warnings_use_kafkas_words() {
        let high = plan(ResetTo::Offset(500), &[at(None, 5, 20)]).unwrap();
        assert_eq!(
            high[0].warning.as_deref(),
            Some("New offset (500) is higher than latest offset for topic partition t-0. Value will be set to 20")
        );
        let low = plan(ResetTo::Offset(1), &[at(None, 5, 20)]).unwrap();
        assert_eq!(
            low[0].warning.as_deref(),
            Some("New offset (1) is lower than earliest offset for topic partition t-0. Value will be set to 5")
        );
    }

    #[test]
    fn datetime_uses_the_offset_found_or_falls_back_to_latest() {
        let mut found = at(Some(1), 0, 30);
        found.at_datetime = Some(12);
        let rows = plan(ResetTo::Datetime(1_000), &[found, at(Some(1), 0, 30)]).unwrap();
        assert_eq!((rows[0].new_offset, rows[0].warning.is_none()), (12, true));
        assert_eq!((rows[1].new_offset, rows[1].clamped), (30, false));
        assert!(rows[1]
            .warning
            .as_deref()
            .unwrap()
            .contains("Falling back to latest offset 30"));
    }

    #[test]
    fn shift_needs_a_committed_offset() {
        let err = plan(ResetTo::ShiftBy(1), &[at(Some(3), 0, 9), at(None, 0, 9)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot shift offset for partition t-0 since there is no current committed offset"
        );
    }

    #[test]
    fn non_empty_refusal_is_clear() {
        let e = not_empty("workers", "Stable", 2);
        assert_eq!(e.kafka_error(), Some(ResponseError::NonEmptyGroup));
        let text = e.to_string();
        assert!(
            text.contains("workers has 2 members (state Stable)"),
            "{text}"
        );
        assert!(text.contains("stop them first"), "{text}");
    }
}
