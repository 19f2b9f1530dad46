//! The anomalies the checker reports: one variant per broken rule, each
//! naming the offending operations by their index in `History::ops`.

use serde::Serialize;

use crate::history::{LeaderEpoch, Offset, ProcessId, Record, TopicPartition};

/// One broken rule. The claim numbers refer to `CLAIMS.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum Anomaly {
    /// An acknowledged send whose value is not at its offset in the final
    /// log (claim 4).
    LostWrite {
        /// The partition.
        topic_partition: TopicPartition,
        /// The send.
        send: usize,
        /// The acknowledged offset.
        offset: Offset,
        /// The acknowledged value.
        value: String,
        /// What the final log holds at that offset instead, if anything.
        stored: Option<String>,
    },
    /// Two observations that cannot both be true: two values at one offset,
    /// or one value at two offsets that the final log does not both hold
    /// (claim 5).
    InconsistentOffset {
        /// The partition.
        topic_partition: TopicPartition,
        /// The operations that saw `first` and `second`, in that order.
        ops: [usize; 2],
        /// The earlier observation.
        first: Record,
        /// The conflicting one.
        second: Record,
    },
    /// A value stored at more than one offset although an idempotent
    /// producer sent it (claim 8).
    Duplicate {
        /// The partition.
        topic_partition: TopicPartition,
        /// The value.
        value: String,
        /// Every offset of the final log holding it.
        offsets: Vec<Offset>,
        /// The idempotent sends of this value.
        sends: Vec<usize>,
    },
    /// One producer's sequential acknowledged sends to a partition got an
    /// offset lower than an earlier one (claim 5).
    NonMonotonicSend {
        /// The partition.
        topic_partition: TopicPartition,
        /// The producer.
        process: ProcessId,
        /// The earlier send (the highest offset acknowledged before `later`
        /// started).
        earlier: usize,
        /// The later send.
        later: usize,
        /// The earlier send's offset.
        earlier_offset: Offset,
        /// The later, lower offset.
        later_offset: Offset,
    },
    /// A consumer read an offset not above the one it read before, with no
    /// seek in between.
    NonMonotonicPoll {
        /// The partition.
        topic_partition: TopicPartition,
        /// The consumer.
        process: ProcessId,
        /// The poll (or seek) that set the position.
        earlier: usize,
        /// The poll that went back (may equal `earlier`).
        later: usize,
        /// The offset read (or sought) before.
        earlier_offset: Offset,
        /// The offset read next.
        later_offset: Offset,
    },
    /// A consumer's reads jumped over offsets that the final log holds,
    /// with no seek in between (claim 5 as consumers see it).
    PollSkip {
        /// The partition.
        topic_partition: TopicPartition,
        /// The consumer.
        process: ProcessId,
        /// The poll (or seek) before the gap.
        earlier: usize,
        /// The poll after the gap (may equal `earlier`).
        later: usize,
        /// The offsets of the final log that the consumer never got.
        skipped: Vec<Offset>,
    },
    /// A polled record that the final log does not hold at its offset: it
    /// was read above the HW and later truncated (claim 6).
    PhantomRead {
        /// The partition.
        topic_partition: TopicPartition,
        /// The poll.
        poll: usize,
        /// The record it returned.
        record: Record,
        /// What the final log holds at that offset instead, if anything.
        stored: Option<String>,
    },
    /// Serve windows of one partition whose leader epochs go down in time,
    /// or one leader epoch served by two brokers (claim 1).
    EpochRegression {
        /// The partition.
        topic_partition: TopicPartition,
        /// The earlier window.
        earlier: usize,
        /// The later window.
        later: usize,
        /// The earlier window's epoch.
        earlier_epoch: LeaderEpoch,
        /// The later window's epoch.
        later_epoch: LeaderEpoch,
    },
    /// Two brokers serving one partition at a common instant (claim 2).
    OverlappingServe {
        /// The partition.
        topic_partition: TopicPartition,
        /// The two serve windows.
        windows: [usize; 2],
    },
    /// Two members of one group owning one partition at a common instant.
    OverlappingOwnership {
        /// The partition.
        topic_partition: TopicPartition,
        /// The group.
        group: String,
        /// The two assignments.
        assignments: [usize; 2],
    },
    /// A group's acknowledged committed offset for a partition went down
    /// between two commits that did not overlap in time.
    CommitRegression {
        /// The partition.
        topic_partition: TopicPartition,
        /// The group.
        group: String,
        /// The earlier commit (the highest acknowledged before `later`).
        earlier: usize,
        /// The later commit.
        later: usize,
        /// The earlier committed offset.
        earlier_offset: Offset,
        /// The later, lower one.
        later_offset: Offset,
    },
}

impl Anomaly {
    /// Every class name, in the order of the variants.
    pub const CLASSES: [&'static str; 11] = [
        "lost_write",
        "inconsistent_offset",
        "duplicate",
        "non_monotonic_send",
        "non_monotonic_poll",
        "poll_skip",
        "phantom_read",
        "epoch_regression",
        "overlapping_serve",
        "overlapping_ownership",
        "commit_regression",
    ];

    /// The class name, as in the JSON report's `class` field.
    pub fn class(&self) -> &'static str {
        let index = match self {
            Anomaly::LostWrite { .. } => 0,
            Anomaly::InconsistentOffset { .. } => 1,
            Anomaly::Duplicate { .. } => 2,
            Anomaly::NonMonotonicSend { .. } => 3,
            Anomaly::NonMonotonicPoll { .. } => 4,
            Anomaly::PollSkip { .. } => 5,
            Anomaly::PhantomRead { .. } => 6,
            Anomaly::EpochRegression { .. } => 7,
            Anomaly::OverlappingServe { .. } => 8,
            Anomaly::OverlappingOwnership { .. } => 9,
            Anomaly::CommitRegression { .. } => 10,
        };
        Self::CLASSES[index]
    }
}
