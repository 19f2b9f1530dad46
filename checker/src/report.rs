//! What a run looked like beyond its verdict: how often leadership moved,
//! how long each aimed fault kept a partition from acknowledging writes,
//! and a timeline to look at. Pure like the rest of the crate: the caller
//! writes the text, JSON and SVG wherever it likes.
//!
//! - [`leader_changes`]: every new leader epoch of every partition.
//! - [`run_summary`]: the counts of a [`Report`] plus leader changes and
//!   failover times, as JSON ([`RunSummary`] is `Serialize`) or text
//!   ([`RunSummary::to_text`]).
//! - [`timeline_svg`]: throughput, latency, faults and leader changes on
//!   one time axis.

mod timeline;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::history::{
    BrokerId, History, LeaderEpoch, NemesisOp, Op, PartitionId, SendOp, SendOutcome, ServeWindow,
    TopicPartition,
};
use crate::Report;

pub use timeline::timeline_svg;

/// A partition getting a leader epoch it had not had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderChange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: PartitionId,
    /// The new epoch.
    pub leader_epoch: LeaderEpoch,
    /// The broker that served first in the new epoch.
    pub broker: BrokerId,
    /// When it first served in it: the earliest `first_ms` of the epoch's
    /// serve windows.
    pub at_ms: u64,
}

/// One injected fault and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultRow {
    /// The fault kind, as in [`NemesisOp::name`].
    pub name: String,
    /// The containers or services it hit.
    pub targets: Vec<String>,
    /// The topic it aimed at, if any.
    pub topic: Option<String>,
    /// The partition it aimed at, if any.
    pub partition: Option<PartitionId>,
    /// When it struck.
    pub start_ms: u64,
    /// When it was healed.
    pub end_ms: u64,
    /// From the strike to the first write acknowledged by the new leader;
    /// `None` if it aimed at no partition, no new epoch followed, or no
    /// write was acknowledged after one did.
    pub failover_ms: Option<u64>,
}

/// A run at a glance: the report's counts, leadership and failovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Operations in the history.
    pub operations: usize,
    /// Send operations, whatever their outcome.
    pub sends: usize,
    /// Sends that got a success response.
    pub acknowledged: usize,
    /// Acknowledged sends missing from the final logs.
    pub lost: usize,
    /// Extra copies of values in the final logs (see
    /// [`crate::Summary::duplicates`]).
    pub duplicates: usize,
    /// Anomalies per class; every class is present, zero included.
    pub anomalies_by_class: BTreeMap<String, usize>,
    /// New leader epochs over all partitions (see [`leader_changes`]).
    pub leader_changes: usize,
    /// Faults with a measured failover time.
    pub failovers: usize,
    /// The median failover time (nearest rank), if any was measured.
    pub failover_p50_ms: Option<u64>,
    /// The 99th percentile failover time (nearest rank: with fewer than 100
    /// failovers this is the maximum).
    pub failover_p99_ms: Option<u64>,
    /// The longest failover time.
    pub failover_max_ms: Option<u64>,
    /// One row per fault, in history order.
    pub faults: Vec<FaultRow>,
    /// Faults aimed at a partition after which no higher leader epoch of
    /// it began. Faults aimed at no partition are not counted: nothing
    /// says which leader they should have moved.
    pub faults_without_leader_change: usize,
}

/// Every leader change, ordered by time (then topic, partition). Per
/// partition, the epoch seen earliest is the starting point; each other
/// distinct epoch is one change, at the earliest window serving it.
///
/// Epochs `1, 1, 2, 3` of one partition make 2 changes: to 2 and to 3.
pub fn leader_changes(history: &History) -> Vec<LeaderChange> {
    let mut first_window: BTreeMap<(TopicPartition, LeaderEpoch), &ServeWindow> = BTreeMap::new();
    for w in serve_windows(history) {
        let key = (TopicPartition::new(&w.topic, w.partition), w.leader_epoch);
        let earliest = first_window.entry(key).or_insert(w);
        if w.first_ms < earliest.first_ms {
            *earliest = w;
        }
    }
    let mut by_partition: BTreeMap<TopicPartition, Vec<&ServeWindow>> = BTreeMap::new();
    for ((tp, _), w) in first_window {
        by_partition.entry(tp).or_default().push(w);
    }
    let mut changes: Vec<LeaderChange> = by_partition
        .into_values()
        .flat_map(|mut firsts| {
            firsts.sort_by_key(|w| (w.first_ms, w.leader_epoch));
            firsts.into_iter().skip(1).map(|w| LeaderChange {
                topic: w.topic.clone(),
                partition: w.partition,
                leader_epoch: w.leader_epoch,
                broker: w.broker,
                at_ms: w.first_ms,
            })
        })
        .collect();
    changes.sort_by(|a, b| (a.at_ms, &a.topic, a.partition).cmp(&(b.at_ms, &b.topic, b.partition)));
    changes
}

/// Summarizes a run from its history and the report [`crate::check`]
/// made of it.
pub fn run_summary(history: &History, report: &Report) -> RunSummary {
    let faults: Vec<FaultRow> = nemeses(history)
        .map(|n| FaultRow {
            name: n.name.clone(),
            targets: n.targets.clone(),
            topic: n.topic.clone(),
            partition: n.partition,
            start_ms: n.start_ms,
            end_ms: n.end_ms,
            failover_ms: failover_ms(history, n),
        })
        .collect();
    let faults_without_leader_change = nemeses(history)
        .filter(|n| aimed_at(n).is_some_and(|tp| new_leader_window(history, &tp, n).is_none()))
        .count();
    let mut times: Vec<u64> = faults.iter().filter_map(|f| f.failover_ms).collect();
    times.sort_unstable();
    let summary = &report.summary;
    RunSummary {
        operations: history.ops.len(),
        sends: sends(history).count(),
        acknowledged: summary.sends_acknowledged,
        lost: summary.sends_lost,
        duplicates: summary.duplicates,
        anomalies_by_class: summary.anomalies_by_class.clone(),
        leader_changes: leader_changes(history).len(),
        failovers: times.len(),
        failover_p50_ms: nearest_rank(&times, 50),
        failover_p99_ms: nearest_rank(&times, 99),
        failover_max_ms: times.last().copied(),
        faults,
        faults_without_leader_change,
    }
}

/// The `percent`-th percentile of ascending `sorted` values by nearest
/// rank: the value at rank ⌈percent/100 × n⌉ (at least rank 1). Always
/// one of the values, never an interpolation, so p99 of fewer than 100
/// values is the maximum. `None` when there are no values.
///
/// ```
/// use checker::report::nearest_rank;
/// let v = [10, 20, 30, 40];
/// assert_eq!(nearest_rank(&v, 50), Some(20)); // rank 2
/// assert_eq!(nearest_rank(&v, 51), Some(30)); // rank ⌈2.04⌉ = 3
/// assert_eq!(nearest_rank(&v, 99), Some(40));
/// assert_eq!(nearest_rank(&[], 50), None);
/// ```
pub fn nearest_rank(sorted: &[u64], percent: u32) -> Option<u64> {
    assert!(percent <= 100, "a percentile is at most 100, got {percent}");
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "unsorted");
    let n = sorted.len();
    let rank = (percent as usize * n).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

impl RunSummary {
    /// A few lines for a terminal: counts, leadership, failovers, one line
    /// per anomaly class that occurred, and the verdict (FAIL if any
    /// anomaly).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
        // Writing to a String cannot fail, hence the ignored results.
        let _ = writeln!(out, "operations: {}", self.operations);
        let _ = writeln!(
            out,
            "sends: {} (acknowledged {}, lost {}, duplicates {})",
            self.sends, self.acknowledged, self.lost, self.duplicates
        );
        let _ = writeln!(out, "leader changes: {}", self.leader_changes);
        let _ = writeln!(
            out,
            "faults: {} ({} without leader change)",
            self.faults.len(),
            self.faults_without_leader_change
        );
        let _ = writeln!(
            out,
            "failovers: {} (p50 {}, p99 {}, max {})",
            self.failovers,
            ms(self.failover_p50_ms),
            ms(self.failover_p99_ms),
            ms(self.failover_max_ms)
        );
        for (class, count) in self.anomalies_by_class.iter().filter(|(_, c)| **c > 0) {
            let _ = writeln!(out, "anomaly {class}: {count}");
        }
        let verdict = if self.anomaly_count() == 0 {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = writeln!(out, "verdict: {verdict}");
        out
    }

    /// Anomalies over all classes.
    fn anomaly_count(&self) -> usize {
        self.anomalies_by_class.values().sum()
    }
}

/// How long the partition a fault aimed at took to acknowledge a write
/// under a new leader, from the strike. The new leader is the earliest
/// window begun after the strike with an epoch above every epoch begun by
/// it (any epoch if none had begun); the write is the earliest
/// acknowledged send to the partition that ended once that window began.
/// Writes acknowledged in between by the old leader (a kill that missed,
/// a pause not yet noticed) do not end the failover.
fn failover_ms(history: &History, nemesis: &NemesisOp) -> Option<u64> {
    let tp = aimed_at(nemesis)?;
    let window = new_leader_window(history, &tp, nemesis)?;
    let acked_ms = sends(history)
        .filter(|s| s.topic == tp.topic && s.partition == tp.partition)
        .filter(|s| matches!(s.outcome, SendOutcome::Ok { .. }))
        .map(|s| s.t_end)
        .filter(|t| *t >= window.first_ms)
        .min()?;
    // The window began after the strike, so this never saturates; the
    // saturation only guards hand-made histories.
    Some(acked_ms.saturating_sub(nemesis.start_ms))
}

/// The first serve window of `tp` in a higher epoch than the one current
/// when `nemesis` struck (see [`failover_ms`]).
fn new_leader_window<'a>(
    history: &'a History,
    tp: &TopicPartition,
    nemesis: &NemesisOp,
) -> Option<&'a ServeWindow> {
    let windows: Vec<&ServeWindow> = serve_windows(history)
        .filter(|w| w.topic == tp.topic && w.partition == tp.partition)
        .collect();
    let current = windows
        .iter()
        .filter(|w| w.first_ms <= nemesis.start_ms)
        .map(|w| w.leader_epoch)
        .max();
    windows
        .into_iter()
        .filter(|w| w.first_ms > nemesis.start_ms)
        .filter(|w| current.is_none_or(|e| w.leader_epoch > e))
        .min_by_key(|w| (w.first_ms, w.leader_epoch))
}

/// The partition a fault aimed at, when it names both topic and partition.
fn aimed_at(nemesis: &NemesisOp) -> Option<TopicPartition> {
    Some(TopicPartition::new(
        nemesis.topic.as_deref()?,
        nemesis.partition?,
    ))
}

fn sends(history: &History) -> impl Iterator<Item = &SendOp> {
    history.ops.iter().filter_map(|op| match op {
        Op::Send(s) => Some(s),
        _ => None,
    })
}

fn serve_windows(history: &History) -> impl Iterator<Item = &ServeWindow> {
    history.ops.iter().filter_map(|op| match op {
        Op::Serve(w) => Some(w),
        _ => None,
    })
}

fn nemeses(history: &History) -> impl Iterator<Item = &NemesisOp> {
    history.ops.iter().filter_map(|op| match op {
        Op::Nemesis(n) => Some(n),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
