//! Leader election: who leads a partition after a broker leaves or returns,
//! or when the operator asks for the preferred leader. Pure functions over
//! [`PartitionState`]; the caller commits each returned state as one Raft
//! entry, so an epoch is never handed out twice.
//!
//! Rules (Kafka's KRaft rules):
//! - The leader is the first replica, in replica order, that is in the ISR
//!   and live. With unclean election enabled (off by default), and no such
//!   replica, the first live replica; the ISR then shrinks to it.
//! - A broker that leaves is removed from every ISR, except where it is the
//!   last member: that replica holds every committed record, and the
//!   partition stays offline until it or another ISR member returns.
//! - Every leader change, including to "no leader", bumps `leader_epoch`;
//!   every change at all bumps `partition_epoch`.

use crate::metadata::{BrokerId, PartitionState};

/// The leader rule: first ISR member in replica order that is live; with
/// `unclean`, failing that, the first live replica.
///
/// Replicas `[3, 1, 2]`, ISR `[1, 2]`, broker 1 down: leader 2.
pub fn choose_leader(
    p: &PartitionState,
    is_live: &dyn Fn(BrokerId) -> bool,
    unclean: bool,
) -> Option<BrokerId> {
    let clean = p
        .replicas
        .iter()
        .copied()
        .find(|r| p.isr.contains(r) && is_live(*r));
    match clean {
        Some(leader) => Some(leader),
        None if unclean => p.replicas.iter().copied().find(|r| is_live(*r)),
        None => None,
    }
}

/// Moves to `leader` (and `isr`), bumping the epochs as the rules say;
/// `None` when nothing changes.
fn transition(
    p: &PartitionState,
    leader: Option<BrokerId>,
    isr: Vec<BrokerId>,
) -> Option<PartitionState> {
    if leader == p.leader && isr == p.isr {
        return None;
    }
    let leader_changed = leader != p.leader;
    Some(PartitionState {
        replicas: p.replicas.clone(),
        isr,
        leader,
        leader_epoch: p.leader_epoch + i32::from(leader_changed),
        partition_epoch: p.partition_epoch + 1,
    })
}

/// The partition after broker `gone` is fenced or shuts down. `is_live`
/// must already say false for `gone`.
pub fn on_broker_gone(
    p: &PartitionState,
    gone: BrokerId,
    is_live: &dyn Fn(BrokerId) -> bool,
    unclean: bool,
) -> Option<PartitionState> {
    debug_assert!(!is_live(gone), "the departed broker must not count as live");
    if !p.replicas.contains(&gone) {
        return None;
    }
    let mut isr: Vec<BrokerId> = p.isr.iter().copied().filter(|&r| r != gone).collect();
    if isr.is_empty() {
        // The last ISR member keeps its place: it alone has every committed record.
        isr = p.isr.clone();
    }
    let shrunk = PartitionState {
        isr: isr.clone(),
        ..p.clone()
    };
    let leader = if p.leader == Some(gone) || p.leader.is_none() {
        choose_leader(&shrunk, is_live, unclean)
    } else {
        p.leader
    };
    let isr = match leader {
        Some(l) if !isr.contains(&l) => vec![l], // unclean: only the new leader is in sync
        _ => isr,
    };
    transition(p, leader, isr)
}

/// The partition after broker `back` registered again (unfenced): an
/// offline partition gets a leader if one is now eligible.
pub fn on_broker_back(
    p: &PartitionState,
    is_live: &dyn Fn(BrokerId) -> bool,
    unclean: bool,
) -> Option<PartitionState> {
    if p.leader.is_some() {
        return None;
    }
    let leader = choose_leader(p, is_live, unclean)?;
    let isr = if p.isr.contains(&leader) {
        p.isr.clone()
    } else {
        vec![leader]
    };
    transition(p, Some(leader), isr)
}

/// A preferred-leader election: the first replica leads if it is live and
/// in the ISR.
pub fn preferred(p: &PartitionState, is_live: &dyn Fn(BrokerId) -> bool) -> Option<PartitionState> {
    let preferred = *p.replicas.first()?;
    if p.leader == Some(preferred) || !p.isr.contains(&preferred) || !is_live(preferred) {
        return None;
    }
    transition(p, Some(preferred), p.isr.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], isr: &[i32], leader: Option<i32>) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
        }
    }

    fn live(ids: &'static [i32]) -> impl Fn(i32) -> bool {
        move |b| ids.contains(&b)
    }

    /// (name, before, broker gone, live after, unclean, expected (leader, isr,
    /// leader epoch, partition epoch) or None for no change)
    #[test]
    fn broker_gone_table() {
        type Expect = Option<(Option<i32>, Vec<i32>, i32, i32)>;
        type Case = (
            &'static str,
            PartitionState,
            i32,
            &'static [i32],
            bool,
            Expect,
        );
        let cases: Vec<Case> = vec![
            (
                "leader dies: next ISR member in replica order",
                state(&[1, 2, 3], &[1, 2, 3], Some(1)),
                1,
                &[2, 3],
                false,
                Some((Some(2), vec![2, 3], 6, 10)),
            ),
            (
                "replica order, not ISR order",
                state(&[3, 1, 2], &[1, 2], Some(1)),
                1,
                &[2, 3],
                false,
                Some((Some(2), vec![2], 6, 10)),
            ),
            (
                "follower dies: ISR shrinks, epoch stays",
                state(&[1, 2, 3], &[1, 2, 3], Some(1)),
                3,
                &[1, 2],
                false,
                Some((Some(1), vec![1, 2], 5, 10)),
            ),
            (
                "out-of-ISR follower dies: nothing changes",
                state(&[1, 2, 3], &[1, 2], Some(1)),
                3,
                &[1, 2],
                false,
                None,
            ),
            (
                "not a replica: nothing changes",
                state(&[1, 2, 3], &[1, 2, 3], Some(1)),
                4,
                &[1, 2, 3],
                false,
                None,
            ),
            (
                "no live ISR member: offline, epoch bumps",
                state(&[1, 2, 3], &[1, 2], Some(1)),
                1,
                &[3],
                false,
                Some((None, vec![2], 6, 10)),
            ),
            (
                "last ISR member keeps its place",
                state(&[1, 2, 3], &[1], Some(1)),
                1,
                &[2, 3],
                false,
                Some((None, vec![1], 6, 10)),
            ),
            (
                "unclean: first live replica, ISR is it alone",
                state(&[1, 2, 3], &[1], Some(1)),
                1,
                &[2, 3],
                true,
                Some((Some(2), vec![2], 6, 10)),
            ),
            (
                "unclean but a clean choice exists",
                state(&[1, 2, 3], &[1, 3], Some(1)),
                1,
                &[2, 3],
                true,
                Some((Some(3), vec![3], 6, 10)),
            ),
        ];
        for (name, before, gone, alive, unclean, expected) in cases {
            let after = on_broker_gone(&before, gone, &live(alive), unclean);
            let got = after.map(|p| (p.leader, p.isr, p.leader_epoch, p.partition_epoch));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn broker_back_and_preferred_table() {
        let offline = state(&[1, 2, 3], &[1], None);
        assert_eq!(
            on_broker_back(&offline, &live(&[2, 3]), false),
            None,
            "no ISR member back yet"
        );
        let back = on_broker_back(&offline, &live(&[1, 2, 3]), false).unwrap();
        assert_eq!((back.leader, back.leader_epoch), (Some(1), 6));
        let unclean = on_broker_back(&offline, &live(&[3]), true).unwrap();
        assert_eq!((unclean.leader, unclean.isr.clone()), (Some(3), vec![3]));
        assert_eq!(
            on_broker_back(&state(&[1, 2], &[1, 2], Some(2)), &live(&[1, 2]), false),
            None,
            "already led"
        );

        let led_by_2 = state(&[1, 2, 3], &[1, 2, 3], Some(2));
        let p = preferred(&led_by_2, &live(&[1, 2, 3])).unwrap();
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (Some(1), 6, 10)
        );
        assert_eq!(
            preferred(&led_by_2, &live(&[2, 3])),
            None,
            "preferred replica down"
        );
        assert_eq!(
            preferred(&state(&[1, 2, 3], &[2, 3], Some(2)), &live(&[1, 2, 3])),
            None,
            "preferred replica out of ISR"
        );
        assert_eq!(
            preferred(&state(&[1, 2], &[1, 2], Some(1)), &live(&[1, 2])),
            None,
            "already preferred"
        );
    }

    #[test]
    fn new_partitions_start_at_epoch_one() {
        let p = PartitionState::new(vec![2, 3, 1]);
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (Some(2), 1, vec![2, 3, 1])
        );
    }
}
