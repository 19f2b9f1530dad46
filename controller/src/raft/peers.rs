//! Whether each peer controller answers, as the operator should hear it:
//! once when a peer stops answering, once when it answers again. Raft RPCs
//! to a stopped peer fail several times a second for as long as it is down
//! (openraft logs each one; the default log filter drops those, see the
//! `baton` binary's `logging` module), so the decision here is about
//! changes, with time a parameter:
//!
//! - a peer is reported unreachable once it has failed for `grace` without
//!   a success in between, so the start of a cluster (peers not up yet) and
//!   a peer's quick restart say nothing;
//! - it is reported reachable again only if its unreachability was
//!   reported;
//! - a flapping peer is reported unreachable at most once per
//!   `report_interval`; the next report counts the outages left unsaid;
//! - when the peers reported unreachable leave this controller without a
//!   majority, that is said once (an error: nothing can commit, no broker
//!   keeps its lease), and so is the majority's return.

use super::NodeId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Failures for this long make a peer unreachable: a few election
/// timeouts, longer than a controller takes to start or restart.
pub const GRACE: Duration = Duration::from_secs(2);

/// At most one unreachable report per peer this often.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// What to tell the operator about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The peer has failed every RPC for `failing_for`.
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// The last failure.
        reason: String,
        /// Since its first failure in a row.
        failing_for: Duration,
        /// Outages since the last report that were not reported.
        unreported: u32,
    },
    /// The peer answers again after a reported outage.
    Reachable {
        /// The peer.
        peer: NodeId,
        /// How long it did not answer.
        after: Duration,
    },
}

#[derive(Debug, Clone, Default)]
struct Peer {
    /// The first failure of the current run of failures.
    failing_since: Option<Instant>,
    /// Whether the current outage was reported.
    reported: bool,
    /// Whether the current outage was counted as unreported.
    counted: bool,
    /// When an outage was last reported.
    last_report: Option<Instant>,
    /// Outages since `last_report` that were not reported.
    unreported: u32,
}

/// Every peer's reachability (see the module doc).
#[derive(Debug, Clone)]
pub struct PeerReachability {
    grace: Duration,
    report_interval: Duration,
    peers: BTreeMap<NodeId, Peer>,
    /// Whether the loss of the majority was reported.
    majority_lost: bool,
}

/// A change in whether this controller can reach a majority of the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MajorityReport {
    /// The peers reported unreachable leave no majority.
    Lost {
        /// The unreachable peers.
        unreachable: Vec<NodeId>,
    },
    /// A majority is reachable again.
    Regained,
}

impl Default for PeerReachability {
    fn default() -> Self {
        PeerReachability::new(GRACE, REPORT_INTERVAL)
    }
}

impl PeerReachability {
    /// With the given grace and report interval.
    pub fn new(grace: Duration, report_interval: Duration) -> PeerReachability {
        PeerReachability {
            grace,
            report_interval,
            peers: BTreeMap::new(),
            majority_lost: false,
        }
    }

    /// After an [`observe`](Self::observe) that reported: whether a quorum
    /// of `voters` controllers (this one included) lost or regained its
    /// majority as this controller sees it.
    pub fn majority(&mut self, voters: usize) -> Option<MajorityReport> {
        let unreachable: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.reported)
            .map(|(id, _)| *id)
            .collect();
        let lost = voters - unreachable.len().min(voters) < voters / 2 + 1;
        match (std::mem::replace(&mut self.majority_lost, lost), lost) {
            (false, true) => Some(MajorityReport::Lost { unreachable }),
            (true, false) => Some(MajorityReport::Regained),
            _ => None,
        }
    }

    /// Records one RPC to `peer` at `now`: `Ok` if it answered, `Err` with
    /// the reason if not. Returns what to report, if anything.
    pub fn observe(
        &mut self,
        peer: NodeId,
        outcome: Result<(), &str>,
        now: Instant,
    ) -> Option<Report> {
        let interval = self.report_interval;
        let grace = self.grace;
        let state = self.peers.entry(peer).or_default();
        let reason = match outcome {
            Ok(()) => {
                let since = state.failing_since.take();
                state.counted = false;
                return match (std::mem::take(&mut state.reported), since) {
                    (true, Some(since)) => Some(Report::Reachable {
                        peer,
                        after: now.saturating_duration_since(since),
                    }),
                    _ => None,
                };
            }
            Err(reason) => reason,
        };
        let since = *state.failing_since.get_or_insert(now);
        let failing_for = now.saturating_duration_since(since);
        if state.reported || failing_for < grace {
            return None;
        }
        let quiet = state
            .last_report
            .is_some_and(|last| now.saturating_duration_since(last) < interval);
        if quiet {
            if !std::mem::replace(&mut state.counted, true) {
                state.unreported += 1;
            }
            return None;
        }
        state.reported = true;
        state.last_report = Some(now);
        Some(Report::Unreachable {
            peer,
            reason: reason.to_string(),
            failing_for,
            unreported: std::mem::take(&mut state.unreported),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reports_changes_only_table() {
        let t0 = Instant::now();
        let down = |failing_for: u64, unreported: u32| {
            Some(Report::Unreachable {
                peer: 2,
                reason: "refused".into(),
                failing_for: ms(failing_for),
                unreported,
            })
        };
        let up = |after: u64| {
            Some(Report::Reachable {
                peer: 2,
                after: ms(after),
            })
        };
        // (at ms, answered, expected report); grace 2 s, interval 60 s.
        let steps: &[(u64, bool, Option<Report>)] = &[
            // Start: peer not up for a second, then fine: nothing said.
            (0, false, None),
            (1_000, false, None),
            (1_100, true, None),
            // Down for good: one warning after the grace, then silence.
            (5_000, false, None),
            (6_999, false, None),
            (7_000, false, down(2_000, 0)),
            (7_100, false, None),
            (30_000, false, None),
            // Back: said once.
            (30_100, true, up(25_100)),
            (30_200, true, None),
            // Down again within the interval: counted, not said, and its
            // recovery not said either.
            (40_000, false, None),
            (45_000, false, None),
            (45_100, false, None),
            (46_000, true, None),
            // A blip shorter than the grace is no outage at all.
            (50_000, false, None),
            (51_000, true, None),
            // Down after the interval: said, with the outage left unsaid.
            (80_000, false, None),
            (82_000, false, down(2_000, 1)),
            (90_000, true, up(10_000)),
        ];
        let mut peers = PeerReachability::new(ms(2_000), ms(60_000));
        for (at, answered, expected) in steps {
            let outcome = if *answered { Ok(()) } else { Err("refused") };
            assert_eq!(
                &peers.observe(2, outcome, t0 + ms(*at)),
                expected,
                "at {at} ms"
            );
        }
    }

    #[test]
    fn majority_table() {
        let t0 = Instant::now();
        let mut peers = PeerReachability::new(ms(0), ms(0));
        // (peer, answered, majority report) in a quorum of three.
        let steps = [
            (2, false, None),
            (
                3,
                false,
                Some(MajorityReport::Lost {
                    unreachable: vec![2, 3],
                }),
            ),
            (3, false, None),
            (2, true, Some(MajorityReport::Regained)),
            (3, true, None),
        ];
        for (i, (peer, answered, expected)) in steps.into_iter().enumerate() {
            let outcome = if answered { Ok(()) } else { Err("refused") };
            peers.observe(peer, outcome, t0 + ms(i as u64));
            assert_eq!(peers.majority(3), expected, "step {i}");
        }
        // One controller alone is its own majority.
        assert_eq!(PeerReachability::default().majority(1), None);
    }

    #[test]
    fn peers_are_independent() {
        let t0 = Instant::now();
        let mut peers = PeerReachability::new(ms(100), ms(1_000));
        assert_eq!(peers.observe(2, Err("x"), t0), None);
        assert_eq!(peers.observe(3, Err("y"), t0 + ms(50)), None);
        assert!(matches!(
            peers.observe(2, Err("x"), t0 + ms(100)),
            Some(Report::Unreachable { peer: 2, .. })
        ));
        assert_eq!(peers.observe(3, Err("y"), t0 + ms(100)), None);
        assert!(matches!(
            peers.observe(3, Err("y"), t0 + ms(150)),
            Some(Report::Unreachable { peer: 3, .. })
        ));
    }
}
