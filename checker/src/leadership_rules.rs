//! The rules about who owns a partition when: leaders (serve windows and
//! their epochs) and consumer-group members (assignments).

use std::collections::{BTreeMap, HashMap};

use crate::anomaly::Anomaly;
use crate::history::{Assignment, BrokerId, History, LeaderEpoch, Op, ServeWindow, TopicPartition};
use crate::log_rules::Key;

/// The serve windows of each partition, sorted by `(first_ms, last_ms)`.
fn windows_by_partition(history: &History) -> BTreeMap<Key<'_>, Vec<(usize, &ServeWindow)>> {
    let mut by_partition: BTreeMap<Key<'_>, Vec<(usize, &ServeWindow)>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        if let Op::Serve(w) = op {
            by_partition
                .entry((w.topic.as_str(), w.partition))
                .or_default()
                .push((i, w));
        }
    }
    for windows in by_partition.values_mut() {
        windows.sort_by_key(|(i, w)| (w.first_ms, w.last_ms, *i));
    }
    by_partition
}

/// EpochRegression: per partition, with serve windows sorted by `first_ms`
/// (then `last_ms`), each window's leader epoch must be at least the one
/// before it; and each epoch must be served by one broker only.
pub(crate) fn epoch_regressions(history: &History) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    for (key, windows) in windows_by_partition(history) {
        let mut owner: HashMap<LeaderEpoch, (BrokerId, usize)> = HashMap::new();
        let mut prev: Option<(usize, &ServeWindow)> = None;
        for (i, w) in windows {
            let regressed = prev.filter(|(_, p)| w.leader_epoch < p.leader_epoch);
            let (first_owner, first_op) = *owner.entry(w.leader_epoch).or_insert((w.broker, i));
            let shared = (first_owner != w.broker).then(|| (first_op, &history.ops[first_op]));
            if let Some((j, Op::Serve(earlier))) = shared {
                anomalies.push(epoch_anomaly(key, (j, earlier), (i, w)));
            } else if let Some(earlier) = regressed {
                anomalies.push(epoch_anomaly(key, earlier, (i, w)));
            }
            prev = Some((i, w));
        }
    }
    anomalies
}

fn epoch_anomaly(
    key: Key<'_>,
    earlier: (usize, &ServeWindow),
    later: (usize, &ServeWindow),
) -> Anomaly {
    Anomaly::EpochRegression {
        topic_partition: TopicPartition::new(key.0, key.1),
        earlier: earlier.0,
        later: later.0,
        earlier_epoch: earlier.1.leader_epoch,
        later_epoch: later.1.leader_epoch,
    }
}

/// OverlappingServe: two windows of one partition, from different brokers,
/// whose closed intervals `[first_ms, last_ms]` share an instant. The
/// windows are observed instants of serving, so touching ends overlap.
pub(crate) fn overlapping_serves(history: &History) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    for (key, windows) in windows_by_partition(history) {
        for (n, (i, a)) in windows.iter().enumerate() {
            // Sorted by start: once one starts after `a` ends, all later do.
            let overlapping = windows[n + 1..]
                .iter()
                .take_while(|(_, b)| b.first_ms <= a.last_ms);
            for (j, b) in overlapping {
                if a.broker != b.broker {
                    anomalies.push(Anomaly::OverlappingServe {
                        topic_partition: TopicPartition::new(key.0, key.1),
                        windows: [*i, *j],
                    });
                }
            }
        }
    }
    anomalies
}

/// OverlappingOwnership: two assignments of one partition in one group,
/// to different members, whose half-open intervals `[from_ms, to_ms)` share
/// an instant (`to_ms = None` runs to the end). Half-open because a
/// hand-over revokes and assigns in the same millisecond.
pub(crate) fn overlapping_ownership(history: &History) -> Vec<Anomaly> {
    let mut groups: BTreeMap<(&str, Key<'_>), Vec<(usize, &Assignment)>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        if let Op::Assign(a) = op {
            let key = (a.group.as_str(), (a.topic.as_str(), a.partition));
            groups.entry(key).or_default().push((i, a));
        }
    }
    let mut anomalies = Vec::new();
    for ((group, key), mut owned) in groups {
        owned.sort_by_key(|(i, a)| (a.from_ms, *i));
        for (n, (i, a)) in owned.iter().enumerate() {
            let ends_after = |b: &&(usize, &Assignment)| a.to_ms.is_none_or(|to| b.1.from_ms < to);
            for (j, b) in owned[n + 1..].iter().take_while(ends_after) {
                // Sorted by start, so b starts no earlier than a: an overlap
                // needs only that b starts before a ends, and b's interval
                // is non-empty.
                if a.member != b.member && b.to_ms.is_none_or(|to| to > b.from_ms) {
                    anomalies.push(Anomaly::OverlappingOwnership {
                        topic_partition: TopicPartition::new(key.0, key.1),
                        group: group.to_owned(),
                        assignments: [*i, *j],
                    });
                }
            }
        }
    }
    anomalies
}
