//! The campaign's fault schedule, as pure code: from a seed, the list of
//! faults, each with its kind, how long it holds and a random `pick` that
//! chooses among the targets once the campaign sees the cluster (which
//! broker leads a partition is only known then). The same seed and
//! arguments give the same schedule, printed at the start of a run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::str::FromStr;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// kill -9 the leader of a partition, start it again when healed.
    KillLeader,
    /// kill -9 a random broker.
    KillBroker,
    /// kill -9 the active controller.
    KillController,
    /// kill -9 the broker coordinating a consumer group.
    KillCoordinator,
    /// `docker pause` the leader of a partition (a process that stops
    /// without dying: the zombie case when it thaws).
    Pause,
    /// Cut a partition's leader off from every controller while clients
    /// and the other brokers still reach it (the split-brain case).
    IsolateLeader,
    /// Cut one controller (the active one half of the time) off from the
    /// other two.
    SplitControllers,
    /// A clean restart (SIGTERM, start) of a random node.
    Restart,
    /// kill -9 a follower of a partition, damage the tail of its newest
    /// segment on disk, start it again.
    CorruptFollower,
}

impl Kind {
    /// Every kind, in the order of their names below.
    pub const ALL: [Kind; 9] = [
        Kind::KillLeader,
        Kind::KillBroker,
        Kind::KillController,
        Kind::KillCoordinator,
        Kind::Pause,
        Kind::IsolateLeader,
        Kind::SplitControllers,
        Kind::Restart,
        Kind::CorruptFollower,
    ];

    /// The kind's name in arguments, schedules and histories.
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "kill-leader",
            Kind::KillBroker => "kill-broker",
            Kind::KillController => "kill-controller",
            Kind::KillCoordinator => "kill-coordinator",
            Kind::Pause => "pause",
            Kind::IsolateLeader => "isolate-leader",
            Kind::SplitControllers => "split-controllers",
            Kind::Restart => "restart",
            Kind::CorruptFollower => "corrupt-follower",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown nemesis {s:?}; one of {}", names.join(", "))
            })
    }
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// Its place in the schedule, from 0.
    pub index: usize,
    /// What to do.
    pub kind: Kind,
    /// How long it holds before it is healed, ms.
    pub hold_ms: u64,
    /// A random number that picks the partition, node or follower.
    pub pick: u64,
}

/// What a schedule is drawn from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// The kinds to draw from, uniformly.
    pub kinds: Vec<Kind>,
    /// Faults to plan.
    pub faults: usize,
    /// Shortest and longest hold, ms.
    pub hold_ms: (u64, u64),
}

/// The schedule of `plan`: deterministic in the plan.
pub fn schedule(plan: &Plan) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    if plan.kinds.is_empty() {
        return Vec::new();
    }
    (0..plan.faults)
        .map(|index| {
            let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
            let (min, max) = plan.hold_ms;
            Fault {
                index,
                kind,
                hold_ms: rng.random_range(min..=max.max(min)),
                pick: rng.random(),
            }
        })
        .collect()
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<3} {:<18} hold {:>5} ms  pick {:016x}",
            self.index, self.kind, self.hold_ms, self.pick
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        Plan {
            seed,
            kinds: Kind::ALL.to_vec(),
            faults: 200,
            hold_ms: (1000, 5000),
        }
    }

    #[test]
    fn a_seed_repeats_its_schedule_and_another_seed_differs() {
        assert_eq!(schedule(&plan(7)), schedule(&plan(7)));
        assert_ne!(schedule(&plan(7)), schedule(&plan(8)));
    }

    #[test]
    fn every_kind_is_drawn_and_holds_stay_in_range() {
        let faults = schedule(&plan(1));
        assert_eq!(faults.len(), 200);
        for kind in Kind::ALL {
            assert!(faults.iter().any(|f| f.kind == kind), "{kind} never drawn");
        }
        assert!(faults.iter().all(|f| (1000..=5000).contains(&f.hold_ms)));
        assert!(faults.iter().enumerate().all(|(i, f)| f.index == i));
    }

    #[test]
    fn only_the_given_kinds_are_drawn() {
        let mut p = plan(3);
        p.kinds = vec![Kind::KillLeader];
        assert!(schedule(&p).iter().all(|f| f.kind == Kind::KillLeader));
        p.kinds.clear();
        assert!(schedule(&p).is_empty());
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
        }
        assert!("kill-everything"
            .parse::<Kind>()
            .unwrap_err()
            .contains("kill-leader"));
    }
}
