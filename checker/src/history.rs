//! The operations of a history, as the campaign records them, and how to
//! read them from JSON lines.
//!
//! One line is one operation, tagged by `kind`:
//!
//! ```text
//! {"kind":"send","process":1,"t_start":10,"t_end":12,"topic":"t","partition":0,"value":"v1","outcome":{"status":"ok","offset":0},"idempotent":false}
//! {"kind":"poll","process":2,"t_start":20,"t_end":21,"topic":"t","partition":0,"records":[{"offset":0,"value":"v1"}],"high_watermark":1}
//! {"kind":"seek","process":2,"t_start":22,"t_end":22,"topic":"t","partition":0,"offset":0}
//! {"kind":"commit","process":2,"t_start":23,"t_end":24,"group":"g","topic":"t","partition":0,"offset":1,"generation":1,"outcome":{"status":"ok"}}
//! {"kind":"serve","broker":1,"topic":"t","partition":0,"leader_epoch":1,"first_ms":0,"last_ms":100}
//! {"kind":"assign","group":"g","member":"m1","topic":"t","partition":0,"from_ms":0,"to_ms":50}
//! {"kind":"final_log","topic":"t","partition":0,"records":[{"offset":0,"value":"v1"}]}
//! {"kind":"nemesis","name":"kill-leader","targets":["broker-2"],"topic":"t","partition":0,"start_ms":100,"end_ms":200}
//! ```
//!
//! Times are milliseconds of the campaign's clock. Unknown fields are
//! rejected, so a misspelt optional field is an error, not a silent `None`.

use serde::{Deserialize, Serialize};

/// A log offset.
pub type Offset = i64;
/// A partition's index within its topic.
pub type PartitionId = i32;
/// A client process of the campaign (one producer or consumer).
pub type ProcessId = u64;
/// A broker's node id.
pub type BrokerId = i32;
/// A partition leader epoch.
pub type LeaderEpoch = i32;

/// A whole history: the operations in the order they were recorded. Every
/// anomaly names operations by their index in `ops`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The operations; their order does not matter to the checker, which
    /// orders by the recorded times, but it fixes the indexes in a report.
    pub ops: Vec<Op>,
}

/// A topic and partition: the unit every rule groups by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: PartitionId,
}

/// One record as a client or the final log saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Where the record sits in the partition.
    pub offset: Offset,
    /// The payload; the campaign makes every sent value unique, so a value
    /// identifies the send that wrote it.
    pub value: String,
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// A produce request with `acks=all`.
    Send(SendOp),
    /// One consumer fetch.
    Poll(PollOp),
    /// A consumer moving its position (a seek, an offset reset, a rebalance):
    /// the poll-order rules start afresh after it.
    #[serde(alias = "reset")]
    Seek(SeekOp),
    /// An offset commit of a consumer group.
    Commit(CommitOp),
    /// A window in which a broker served a partition as leader, from the
    /// brokers' `serve-windows.json`.
    Serve(ServeWindow),
    /// An interval in which a group member owned a partition.
    Assign(Assignment),
    /// What a partition's log holds at the end, read after the faults healed.
    FinalLog(FinalLog),
    /// A fault the campaign injected. No rule looks at it: it is context
    /// for the run summary (failover times) and the timeline.
    Nemesis(NemesisOp),
}

/// How a produce request ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum SendOutcome {
    /// Acknowledged: the broker said the record is at `offset`.
    Ok {
        /// The offset in the produce response.
        offset: Offset,
    },
    /// A definite failure: the record must not be relied on, but it may
    /// still appear (a retry, or a write whose ack was lost).
    Fail {
        /// The error the client reported.
        error: String,
    },
    /// A timeout or a lost connection: the record may or may not be stored.
    Unknown,
}

/// A produce request with `acks=all`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendOp {
    /// The producer process.
    pub process: ProcessId,
    /// When the client issued the request.
    pub t_start: u64,
    /// When the client saw the outcome.
    pub t_end: u64,
    /// The topic written to.
    pub topic: String,
    /// The partition written to.
    pub partition: PartitionId,
    /// The record's payload, unique per send.
    pub value: String,
    /// What the client saw.
    pub outcome: SendOutcome,
    /// Whether the idempotent producer sent it: then a duplicate is an error.
    #[serde(default)]
    pub idempotent: bool,
}

/// One consumer fetch and the records it returned, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollOp {
    /// The consumer process.
    pub process: ProcessId,
    /// When the client issued the fetch.
    pub t_start: u64,
    /// When the client got the records.
    pub t_end: u64,
    /// The topic read.
    pub topic: String,
    /// The partition read.
    pub partition: PartitionId,
    /// The records returned, in the order the client received them.
    pub records: Vec<Record>,
    /// The high watermark in the fetch response, when the client saw it.
    #[serde(default)]
    pub high_watermark: Option<Offset>,
}

/// A consumer moving its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeekOp {
    /// The consumer process.
    pub process: ProcessId,
    /// When the seek began.
    pub t_start: u64,
    /// When the seek returned.
    pub t_end: u64,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// The new position, when known; `None` for a reset whose target the
    /// client did not learn (the next poll may then start anywhere).
    #[serde(default)]
    pub offset: Option<Offset>,
}

/// How an offset commit ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommitOutcome {
    /// The group coordinator acknowledged the commit.
    Ok,
    /// A definite failure (for example ILLEGAL_GENERATION).
    Fail {
        /// The error the client reported.
        error: String,
    },
    /// A timeout or a lost connection.
    Unknown,
}

/// An offset commit of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitOp {
    /// The consumer process.
    pub process: ProcessId,
    /// When the commit was sent.
    pub t_start: u64,
    /// When its outcome arrived.
    pub t_end: u64,
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// The committed offset: the next record the group will read.
    pub offset: Offset,
    /// The group generation the member committed in.
    pub generation: i32,
    /// What the client saw.
    pub outcome: CommitOutcome,
}

/// A window in which one broker served a partition as leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeWindow {
    /// The serving broker.
    pub broker: BrokerId,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// The leader epoch it served in.
    pub leader_epoch: LeaderEpoch,
    /// The first instant it served (inclusive).
    pub first_ms: u64,
    /// The last instant it served (inclusive).
    pub last_ms: u64,
}

/// An interval in which a group member owned a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// The consumer group.
    pub group: String,
    /// The member id.
    pub member: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// When the member got the partition (inclusive).
    pub from_ms: u64,
    /// When it gave it up (exclusive, so a hand-over at one instant is not
    /// an overlap); `None` if it still owned it at the end.
    #[serde(default)]
    pub to_ms: Option<u64>,
}

/// What a partition's log holds at the end of the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalLog {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// Every record from the log start offset to the log end offset.
    pub records: Vec<Record>,
}

/// A fault the campaign injected, from when it struck to when it healed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisOp {
    /// The fault kind: `kill-leader`, `kill-broker`, `kill-controller`,
    /// `kill-coordinator`, `pause`, `isolate-leader`, `split-controllers`,
    /// `restart`, `corrupt-follower`, ...
    pub name: String,
    /// The containers or services it hit.
    pub targets: Vec<String>,
    /// The topic whose partition leader it aimed at, if it aimed at one:
    /// then the run summary measures that partition's failover.
    #[serde(default)]
    pub topic: Option<String>,
    /// The partition whose leader it aimed at, with `topic`.
    #[serde(default)]
    pub partition: Option<PartitionId>,
    /// When the fault struck.
    pub start_ms: u64,
    /// When the fault was healed.
    pub end_ms: u64,
}

impl TopicPartition {
    /// The key of `topic` and `partition`.
    pub fn new(topic: &str, partition: PartitionId) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
        }
    }
}

/// Reads a history from JSON lines: one operation a line, blank lines
/// skipped. The error names the 1-based line.
///
/// ```
/// let h = checker::parse(r#"{"kind":"final_log","topic":"t","partition":0,"records":[]}"#).unwrap();
/// assert_eq!(h.ops.len(), 1);
/// assert!(checker::parse("{}").unwrap_err().starts_with("line 1:"));
/// ```
pub fn parse(jsonl: &str) -> Result<History, String> {
    let mut ops = Vec::new();
    for (index, line) in jsonl.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", index + 1))?;
        op.validate()
            .map_err(|e| format!("line {}: {e}", index + 1))?;
        ops.push(op);
    }
    Ok(History { ops })
}

impl Op {
    /// Rejects intervals that end before they start: the rules order by
    /// these times and would otherwise report nonsense.
    fn validate(&self) -> Result<(), String> {
        let (start, end) = match self {
            Op::Send(o) => (o.t_start, Some(o.t_end)),
            Op::Poll(o) => (o.t_start, Some(o.t_end)),
            Op::Seek(o) => (o.t_start, Some(o.t_end)),
            Op::Commit(o) => (o.t_start, Some(o.t_end)),
            Op::Serve(o) => (o.first_ms, Some(o.last_ms)),
            Op::Assign(o) => (o.from_ms, o.to_ms),
            Op::FinalLog(_) => (0, None),
            Op::Nemesis(o) => (o.start_ms, Some(o.end_ms)),
        };
        match end {
            Some(end) if end < start => Err(format!(
                "interval ends at {end} before it starts at {start}"
            )),
            _ => Ok(()),
        }
    }
}
