//! The history checker of a fault campaign, as pure code: no I/O, no clock,
//! no async. The campaign records what its clients saw (sends, polls,
//! seeks, commits), what the brokers served (serve windows, assignments)
//! and what each log holds once the faults healed; [`check`] reads that
//! [`History`] and reports every rule of `CLAIMS.md` it breaks.
//!
//! - [`history`]: the operation types and [`parse`] from JSON lines.
//! - [`Anomaly`]: one variant per rule, naming the operations that break it.
//! - The rules, grouped by what they look at: the log's contents
//!   (`log_rules`), order in time (`order_rules`), ownership of a partition
//!   (`leadership_rules`).
//! - [`report`]: what a run looked like beyond its verdict: leader changes,
//!   failover times per fault, and an SVG timeline.
//!
//! ```
//! let history = checker::parse(concat!(
//!     r#"{"kind":"send","process":1,"t_start":0,"t_end":1,"topic":"t","partition":0,"value":"a","outcome":{"status":"ok","offset":0}}"#, "\n",
//!     r#"{"kind":"final_log","topic":"t","partition":0,"records":[]}"#,
//! )).unwrap();
//! let report = checker::check(&history);
//! assert_eq!(report.anomalies[0].class(), "lost_write");
//! assert_eq!(report.summary.sends_lost, 1);
//! ```

pub mod anomaly;
pub mod history;
mod leadership_rules;
mod log_rules;
mod order_rules;
pub mod report;

use std::collections::BTreeMap;

use serde::Serialize;

pub use anomaly::Anomaly;
pub use history::{parse, History, Op, Record, TopicPartition};

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every anomaly, grouped by class in the order of [`Anomaly::CLASSES`].
    pub anomalies: Vec<Anomaly>,
    /// The counts.
    pub summary: Summary,
}

/// The counts of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Operations in the history.
    pub operations: usize,
    /// Sends that got a success response.
    pub sends_acknowledged: usize,
    /// Acknowledged sends missing from the final log (LostWrite anomalies).
    pub sends_lost: usize,
    /// Extra copies of values in the final logs, idempotent or not: a value
    /// at 3 offsets counts 2. Without the idempotent producer these are
    /// allowed (at-least-once), so they are a count, not an anomaly.
    pub duplicates: usize,
    /// Anomalies per class; every class is present, zero included.
    pub anomalies_by_class: BTreeMap<String, usize>,
}

impl Report {
    /// Whether the history broke no rule.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The anomalies of one class (a name from [`Anomaly::CLASSES`]).
    pub fn of_class<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a Anomaly> + 'a {
        self.anomalies.iter().filter(move |a| a.class() == class)
    }
}

/// Checks a history against every rule; see [`Anomaly`] for each rule.
/// Rules that compare with a final log skip partitions that have none.
pub fn check(history: &History) -> Report {
    let (logs, mut anomalies) = log_rules::index_final_logs(history);
    anomalies.extend(log_rules::lost_writes(history, &logs));
    anomalies.extend(log_rules::inconsistent_offsets(history, &logs));
    let (duplicates, idempotent_duplicates) = log_rules::duplicates(history, &logs);
    anomalies.extend(idempotent_duplicates);
    anomalies.extend(order_rules::non_monotonic_sends(history));
    anomalies.extend(order_rules::poll_order(history, &logs));
    anomalies.extend(log_rules::phantom_reads(history, &logs));
    anomalies.extend(leadership_rules::epoch_regressions(history));
    anomalies.extend(leadership_rules::overlapping_serves(history));
    anomalies.extend(leadership_rules::overlapping_ownership(history));
    anomalies.extend(order_rules::commit_regressions(history));
    // Stable sort: within a class, the order each rule found them in.
    anomalies.sort_by_key(|a| Anomaly::CLASSES.iter().position(|c| *c == a.class()));
    let summary = summarize(history, &anomalies, duplicates);
    Report { anomalies, summary }
}

fn summarize(history: &History, anomalies: &[Anomaly], duplicates: usize) -> Summary {
    let mut by_class: BTreeMap<String, usize> = Anomaly::CLASSES
        .iter()
        .map(|c| (c.to_string(), 0))
        .collect();
    for a in anomalies {
        *by_class.entry(a.class().to_owned()).or_default() += 1;
    }
    let sends_acknowledged = history
        .ops
        .iter()
        .filter(
            |op| matches!(op, Op::Send(s) if matches!(s.outcome, history::SendOutcome::Ok { .. })),
        )
        .count();
    Summary {
        operations: history.ops.len(),
        sends_acknowledged,
        sends_lost: by_class["lost_write"],
        duplicates,
        anomalies_by_class: by_class,
    }
}

#[cfg(test)]
mod tests;
