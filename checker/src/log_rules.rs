//! The rules about what the log holds: lost writes, phantom reads,
//! inconsistent offsets and duplicates. They compare what clients were told
//! (acks, polls) with each other and with the final log.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::anomaly::Anomaly;
use crate::history::{
    FinalLog, History, Offset, Op, PartitionId, Record, SendOutcome, TopicPartition,
};

/// A partition key borrowed from the history, so indexing copies nothing.
pub(crate) type Key<'h> = (&'h str, PartitionId);

/// The final log of one partition, indexed both ways.
#[derive(Default)]
pub(crate) struct StoredLog<'h> {
    /// Offset to (value, the final_log op that holds it).
    pub by_offset: BTreeMap<Offset, (&'h str, usize)>,
    /// Value to every offset holding it, ascending.
    pub by_value: HashMap<&'h str, Vec<Offset>>,
}

/// The final logs of all partitions that have one; partitions without one
/// are not checked by the rules that need it.
pub(crate) type StoredLogs<'h> = BTreeMap<Key<'h>, StoredLog<'h>>;

impl<'h> StoredLog<'h> {
    /// The value at `offset`, if the final log holds one.
    pub fn value_at(&self, offset: Offset) -> Option<&'h str> {
        self.by_offset.get(&offset).map(|(v, _)| *v)
    }
}

fn tp(key: Key<'_>) -> TopicPartition {
    TopicPartition::new(key.0, key.1)
}

/// Indexes the final logs. Two final_log ops of one partition are merged;
/// where they disagree on an offset that is an InconsistentOffset.
pub(crate) fn index_final_logs(history: &History) -> (StoredLogs<'_>, Vec<Anomaly>) {
    let mut logs = StoredLogs::new();
    let mut anomalies = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        let Op::FinalLog(FinalLog {
            topic,
            partition,
            records,
        }) = op
        else {
            continue;
        };
        let key = (topic.as_str(), *partition);
        let log = logs.entry(key).or_default();
        for r in records {
            match log.by_offset.get(&r.offset) {
                Some((v, j)) if *v != r.value => anomalies.push(Anomaly::InconsistentOffset {
                    topic_partition: tp(key),
                    ops: [*j, i],
                    first: Record {
                        offset: r.offset,
                        value: v.to_string(),
                    },
                    second: r.clone(),
                }),
                Some(_) => {}
                None => {
                    log.by_offset.insert(r.offset, (r.value.as_str(), i));
                }
            }
        }
    }
    for log in logs.values_mut() {
        // by_offset iterates in order, so each offset list is ascending.
        for (offset, (value, _)) in &log.by_offset {
            log.by_value.entry(*value).or_default().push(*offset);
        }
    }
    (logs, anomalies)
}

/// LostWrite: an acknowledged send `(offset, value)` with a final log for
/// its partition that does not hold `value` at `offset`.
pub(crate) fn lost_writes(history: &History, logs: &StoredLogs<'_>) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        let Op::Send(s) = op else { continue };
        let SendOutcome::Ok { offset } = s.outcome else {
            continue;
        };
        let key = (s.topic.as_str(), s.partition);
        let Some(log) = logs.get(&key) else { continue };
        let stored = log.value_at(offset);
        if stored != Some(s.value.as_str()) {
            anomalies.push(Anomaly::LostWrite {
                topic_partition: tp(key),
                send: i,
                offset,
                value: s.value.clone(),
                stored: stored.map(str::to_owned),
            });
        }
    }
    anomalies
}

/// PhantomRead: a polled record with a final log for its partition that
/// does not hold that value at that offset.
pub(crate) fn phantom_reads(history: &History, logs: &StoredLogs<'_>) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        let Op::Poll(p) = op else { continue };
        let key = (p.topic.as_str(), p.partition);
        let Some(log) = logs.get(&key) else { continue };
        for r in &p.records {
            let stored = log.value_at(r.offset);
            if stored != Some(r.value.as_str()) {
                anomalies.push(Anomaly::PhantomRead {
                    topic_partition: tp(key),
                    poll: i,
                    record: r.clone(),
                    stored: stored.map(str::to_owned),
                });
            }
        }
    }
    anomalies
}

/// Duplicates: every value the final log holds at more than one offset.
/// Returns the number of extra copies (a value at 3 offsets counts 2), and
/// a Duplicate anomaly for each such value that an idempotent send wrote.
pub(crate) fn duplicates(history: &History, logs: &StoredLogs<'_>) -> (usize, Vec<Anomaly>) {
    let mut idempotent: HashMap<(Key<'_>, &str), Vec<usize>> = HashMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        if let Op::Send(s) = op {
            if s.idempotent {
                let key = (s.topic.as_str(), s.partition);
                idempotent
                    .entry((key, s.value.as_str()))
                    .or_default()
                    .push(i);
            }
        }
    }
    let mut count = 0;
    let mut anomalies = Vec::new();
    for (key, log) in logs {
        // Sorted by first offset so the report is deterministic.
        let mut repeated: Vec<_> = log.by_value.iter().filter(|(_, o)| o.len() > 1).collect();
        repeated.sort_by_key(|(_, offsets)| offsets[0]);
        for (value, offsets) in repeated {
            count += offsets.len() - 1;
            if let Some(sends) = idempotent.get(&(*key, *value)) {
                anomalies.push(Anomaly::Duplicate {
                    topic_partition: tp(*key),
                    value: value.to_string(),
                    offsets: offsets.clone(),
                    sends: sends.clone(),
                });
            }
        }
    }
    (count, anomalies)
}

/// One thing a client was told: op `op` saw `record` in partition `key`.
struct Seen<'h> {
    key: Key<'h>,
    op: usize,
    offset: Offset,
    value: &'h str,
}

/// Every acknowledged offset and every polled record, in op order.
fn client_observations(history: &History) -> Vec<Seen<'_>> {
    let mut seen = Vec::new();
    for (i, op) in history.ops.iter().enumerate() {
        match op {
            Op::Send(s) => {
                if let SendOutcome::Ok { offset } = s.outcome {
                    let key = (s.topic.as_str(), s.partition);
                    seen.push(Seen {
                        key,
                        op: i,
                        offset,
                        value: &s.value,
                    });
                }
            }
            Op::Poll(p) => {
                let key = (p.topic.as_str(), p.partition);
                for r in &p.records {
                    seen.push(Seen {
                        key,
                        op: i,
                        offset: r.offset,
                        value: &r.value,
                    });
                }
            }
            _ => {}
        }
    }
    seen
}

/// InconsistentOffset among what clients were told (acks and polls):
/// two different values at one offset, or one value at two offsets unless
/// the final log holds it at both (a stored duplicate, counted as such) or
/// the partition has no final log to tell. Each conflict is reported once,
/// against the first observation it contradicts. A client observation that
/// disagrees with the final log alone is a LostWrite or PhantomRead instead.
pub(crate) fn inconsistent_offsets(history: &History, logs: &StoredLogs<'_>) -> Vec<Anomaly> {
    let mut at_offset: HashMap<(Key<'_>, Offset), (&str, usize)> = HashMap::new();
    let mut of_value: HashMap<(Key<'_>, &str), (Offset, usize)> = HashMap::new();
    let mut reported: HashSet<(Key<'_>, Offset, &str)> = HashSet::new();
    let mut anomalies = Vec::new();
    for s in client_observations(history) {
        let first_value = *at_offset
            .entry((s.key, s.offset))
            .or_insert((s.value, s.op));
        let first_offset = *of_value.entry((s.key, s.value)).or_insert((s.offset, s.op));
        let conflict = if first_value.0 != s.value {
            Some((
                first_value.1,
                Record {
                    offset: s.offset,
                    value: first_value.0.to_owned(),
                },
            ))
        } else if first_offset.0 != s.offset && !stored_at_both(logs, &s, first_offset.0) {
            Some((
                first_offset.1,
                Record {
                    offset: first_offset.0,
                    value: s.value.to_owned(),
                },
            ))
        } else {
            None
        };
        if let Some((first_op, first)) = conflict {
            if reported.insert((s.key, s.offset, s.value)) {
                anomalies.push(Anomaly::InconsistentOffset {
                    topic_partition: tp(s.key),
                    ops: [first_op, s.op],
                    first,
                    second: Record {
                        offset: s.offset,
                        value: s.value.to_owned(),
                    },
                });
            }
        }
    }
    anomalies
}

/// Whether one value seen at two offsets is explained by the final log
/// (it holds the value at both) or cannot be judged (no final log).
fn stored_at_both(logs: &StoredLogs<'_>, s: &Seen<'_>, other: Offset) -> bool {
    match logs.get(&s.key) {
        None => true,
        Some(log) => {
            log.value_at(s.offset) == Some(s.value) && log.value_at(other) == Some(s.value)
        }
    }
}
