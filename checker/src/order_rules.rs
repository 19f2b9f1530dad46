//! The rules about order in time: a producer's offsets, a consumer's
//! position, a group's committed offsets. Each orders by the recorded times
//! and compares only operations that did not overlap (one ended before the
//! other started), since concurrent operations may take effect either way.

use std::collections::BTreeMap;

use crate::anomaly::Anomaly;
use crate::history::{CommitOutcome, History, Offset, Op, ProcessId, SendOutcome, TopicPartition};
use crate::log_rules::{Key, StoredLogs};

/// An acknowledged operation that carries an offset meant to rise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    pub op: usize,
    pub t_start: u64,
    pub t_end: u64,
    pub offset: Offset,
}

/// Pairs `(earlier, later)` where `later` got a lower offset than the
/// highest offset among the operations that ended before it started.
/// `gap_ms` is how far apart an end and a start must be to count as
/// "before": 0 within one sequential process, 1 across processes, whose
/// operations in one millisecond may have reached the broker either way.
///
/// Worked example, gap 0: offsets 5 on [0,1], 7 on [2,3], 6 on [2,4] (7 and
/// 6 overlap), 4 on [5,6]: only (7's op, 4's op) is reported.
pub(crate) fn regressions(items: &[Timed], gap_ms: u64) -> Vec<(Timed, Timed)> {
    let mut by_end = items.to_vec();
    by_end.sort_by_key(|t| (t.t_end, t.op));
    let mut by_start = items.to_vec();
    by_start.sort_by_key(|t| (t.t_start, t.op));
    let mut ended = 0;
    let mut highest: Option<Timed> = None;
    let mut pairs = Vec::new();
    for later in by_start {
        while ended < by_end.len() && by_end[ended].t_end + gap_ms <= later.t_start {
            let t = by_end[ended];
            if highest.is_none_or(|h| t.offset > h.offset) {
                highest = Some(t);
            }
            ended += 1;
        }
        match highest {
            Some(h) if h.offset > later.offset => pairs.push((h, later)),
            _ => {}
        }
    }
    pairs
}

/// NonMonotonicSend: per producer and partition, an acknowledged send whose
/// offset is below that of a send the same producer had acknowledged before
/// it started.
pub(crate) fn non_monotonic_sends(history: &History) -> Vec<Anomaly> {
    let mut groups: BTreeMap<(ProcessId, Key<'_>), Vec<Timed>> = BTreeMap::new();
    for (op, o) in history.ops.iter().enumerate() {
        let Op::Send(s) = o else { continue };
        let SendOutcome::Ok { offset } = s.outcome else {
            continue;
        };
        let key = (s.process, (s.topic.as_str(), s.partition));
        groups.entry(key).or_default().push(Timed {
            op,
            t_start: s.t_start,
            t_end: s.t_end,
            offset,
        });
    }
    let mut anomalies = Vec::new();
    for ((process, key), sends) in groups {
        for (a, b) in regressions(&sends, 0) {
            anomalies.push(Anomaly::NonMonotonicSend {
                topic_partition: TopicPartition::new(key.0, key.1),
                process,
                earlier: a.op,
                later: b.op,
                earlier_offset: a.offset,
                later_offset: b.offset,
            });
        }
    }
    anomalies
}

/// CommitRegression: per group and partition, an acknowledged commit whose
/// offset is below that of a commit acknowledged at least 1 ms before it
/// started. Commits come from several members, so one shared millisecond
/// is treated as concurrent.
pub(crate) fn commit_regressions(history: &History) -> Vec<Anomaly> {
    let mut groups: BTreeMap<(&str, Key<'_>), Vec<Timed>> = BTreeMap::new();
    for (op, o) in history.ops.iter().enumerate() {
        let Op::Commit(c) = o else { continue };
        if c.outcome != CommitOutcome::Ok {
            continue;
        }
        let key = (c.group.as_str(), (c.topic.as_str(), c.partition));
        let t = Timed {
            op,
            t_start: c.t_start,
            t_end: c.t_end,
            offset: c.offset,
        };
        groups.entry(key).or_default().push(t);
    }
    let mut anomalies = Vec::new();
    for ((group, key), commits) in groups {
        for (a, b) in regressions(&commits, 1) {
            anomalies.push(Anomaly::CommitRegression {
                topic_partition: TopicPartition::new(key.0, key.1),
                group: group.to_owned(),
                earlier: a.op,
                later: b.op,
                earlier_offset: a.offset,
                later_offset: b.offset,
            });
        }
    }
    anomalies
}

/// A consumer's position as the poll rules track it: the last offset it
/// read (or the one before a seek target) and the op that set it.
#[derive(Clone, Copy)]
struct Position {
    op: usize,
    offset: Offset,
}

/// NonMonotonicPoll and PollSkip: per consumer and partition, walk its
/// polls and seeks in order of `t_start`, and each poll's records in order.
/// With no seek in between, each offset read must be above the previous
/// one (a repeat is also reported: a consumer's position only advances);
/// and every offset the final log holds between the two must have been
/// read, else a PollSkip. A seek to `s` sets the position to `s - 1`; a
/// reset to an unknown position lets the next read start anywhere. The
/// first read of a consumer may start anywhere (its committed offset).
pub(crate) fn poll_order(history: &History, logs: &StoredLogs<'_>) -> Vec<Anomaly> {
    let mut groups: BTreeMap<(ProcessId, Key<'_>), Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        let key = match op {
            Op::Poll(p) => (p.process, (p.topic.as_str(), p.partition)),
            Op::Seek(s) => (s.process, (s.topic.as_str(), s.partition)),
            _ => continue,
        };
        groups.entry(key).or_default().push(i);
    }
    let mut anomalies = Vec::new();
    for ((process, key), mut ops) in groups {
        ops.sort_by_key(|i| (start_of(&history.ops[*i]), *i));
        let mut position: Option<Position> = None;
        for i in ops {
            match &history.ops[i] {
                Op::Seek(s) => {
                    position = s.offset.map(|o| Position {
                        op: i,
                        offset: o - 1,
                    })
                }
                Op::Poll(p) => {
                    for r in &p.records {
                        if let Some(prev) = position {
                            let step = Step {
                                process,
                                key,
                                prev,
                                op: i,
                                offset: r.offset,
                            };
                            anomalies.extend(step.check(logs));
                        }
                        position = Some(Position {
                            op: i,
                            offset: r.offset,
                        });
                    }
                }
                _ => unreachable!("only polls and seeks are grouped"),
            }
        }
    }
    anomalies
}

fn start_of(op: &Op) -> u64 {
    match op {
        Op::Poll(p) => p.t_start,
        Op::Seek(s) => s.t_start,
        _ => 0,
    }
}

/// One read of a consumer at `offset` by poll `op`, after `prev`.
struct Step<'h> {
    process: ProcessId,
    key: Key<'h>,
    prev: Position,
    op: usize,
    offset: Offset,
}

impl Step<'_> {
    fn check(&self, logs: &StoredLogs<'_>) -> Option<Anomaly> {
        let topic_partition = TopicPartition::new(self.key.0, self.key.1);
        if self.offset <= self.prev.offset {
            return Some(Anomaly::NonMonotonicPoll {
                topic_partition,
                process: self.process,
                earlier: self.prev.op,
                later: self.op,
                earlier_offset: self.prev.offset,
                later_offset: self.offset,
            });
        }
        let log = logs.get(&self.key)?;
        let gap = log.by_offset.range(self.prev.offset + 1..self.offset);
        let skipped: Vec<Offset> = gap.map(|(o, _)| *o).collect();
        (!skipped.is_empty()).then_some(Anomaly::PollSkip {
            topic_partition,
            process: self.process,
            earlier: self.prev.op,
            later: self.op,
            skipped,
        })
    }
}
