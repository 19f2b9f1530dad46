//! `cooperative-sticky` (KIP-429 with KIP-54's stickiness): each member
//! keeps the partitions it owns where balance allows, partitions nobody
//! owns go to the least-loaded subscriber, and the assignment is then
//! evened out by moving as few partitions as possible. A partition that
//! moves from one live owner to another is left out of this generation's
//! assignment: the old owner sees it revoked and rejoins at once, and the
//! follow-up rebalance hands it to its new owner, so no partition is ever
//! consumed by two members in one generation.
//!
//! Ownership comes from each member's subscription (`owned_partitions`,
//! with the generation it owned them in). When two members claim one
//! partition the claim of the newer generation wins; a tie means neither
//! really owns it (one of them is a zombie), so it counts as unowned.

use super::assignor::{
    empty_assignment, sorted_members, subscribed_partitions, subscribes, Assignor, GroupAssignment,
    MemberSubscription, PartitionCounts,
};
use super::TopicPartition;
use std::collections::{BTreeMap, BTreeSet};

/// The cooperative sticky assignor.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeSticky;

impl Assignor for CooperativeSticky {
    fn name(&self) -> &str {
        "cooperative-sticky"
    }

    fn supports_cooperative(&self) -> bool {
        true
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let sorted = sorted_members(members);
        let owners = previous_owners(partitions, &sorted);
        let mut target: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); sorted.len()];
        for (tp, &owner) in &owners {
            target[owner].insert(tp.clone());
        }
        for tp in subscribed_partitions(partitions, members) {
            if !owners.contains_key(&tp) {
                give_to_least_loaded(&mut target, &sorted, tp);
            }
        }
        balance(&mut target, &sorted, &owners);
        let mut out = empty_assignment(members);
        for (i, member) in sorted.iter().enumerate() {
            let mine = out.get_mut(&member.member_id).expect("every member");
            // A partition another member still owns is withheld: it is
            // revoked from that member first (KIP-429).
            mine.extend(
                target[i]
                    .iter()
                    .filter(|tp| owners.get(*tp).is_none_or(|&o| o == i))
                    .cloned(),
            );
        }
        out
    }
}

/// Partition -> index (in `sorted`) of the member that validly owns it: the
/// partition exists, the member still subscribes to its topic, and no
/// other member claims it from the same or a newer generation.
fn previous_owners(
    partitions: &PartitionCounts,
    sorted: &[&MemberSubscription],
) -> BTreeMap<TopicPartition, usize> {
    // Per partition: the newest generation claiming it, and who claimed it
    // in that generation.
    let mut claims: BTreeMap<TopicPartition, (i32, Vec<usize>)> = BTreeMap::new();
    for (i, member) in sorted.iter().enumerate() {
        let generation = member.subscription.generation.unwrap_or(-1);
        for tp in &member.subscription.owned_partitions {
            let exists = partitions
                .get(&tp.0)
                .is_some_and(|&n| (0..n).contains(&tp.1));
            if !exists || !subscribes(member, &tp.0) {
                continue;
            }
            let claim = claims.entry(tp.clone()).or_insert((generation, Vec::new()));
            if generation > claim.0 {
                *claim = (generation, Vec::new());
            }
            if generation == claim.0 && !claim.1.contains(&i) {
                claim.1.push(i);
            }
        }
    }
    claims
        .into_iter()
        .filter_map(|(tp, (_, who))| (who.len() == 1).then(|| (tp, who[0])))
        .collect()
}

/// Gives `tp` to the subscriber holding the fewest partitions (the first
/// in member order on a tie).
fn give_to_least_loaded(
    target: &mut [BTreeSet<TopicPartition>],
    sorted: &[&MemberSubscription],
    tp: TopicPartition,
) {
    let taker = (0..sorted.len())
        .filter(|&i| subscribes(sorted[i], &tp.0))
        .min_by_key(|&i| (target[i].len(), i));
    if let Some(i) = taker {
        target[i].insert(tp);
    }
}

/// Moves partitions from the most loaded members to members holding at
/// least two fewer that subscribe to them, one at a time, until no such
/// move exists. With identical subscriptions that leaves every member
/// within one partition of every other. Each move lowers the sum of the
/// squared loads, so the loop ends; the bound is a safety net.
fn balance(
    target: &mut [BTreeSet<TopicPartition>],
    sorted: &[&MemberSubscription],
    owners: &BTreeMap<TopicPartition, usize>,
) {
    let partitions: usize = target.iter().map(BTreeSet::len).sum();
    let moves_max = partitions * sorted.len() + 1;
    for _ in 0..moves_max {
        let Some((from, to, tp)) = best_move(target, sorted, owners) else {
            return;
        };
        target[from].remove(&tp);
        target[to].insert(tp);
    }
    debug_assert!(false, "balancing did not settle");
}

/// The move to make next: from the most loaded member that can give one,
/// to the least loaded that can take it; partitions the giver did not own
/// before this rebalance go first, since moving those revokes nothing.
fn best_move(
    target: &[BTreeSet<TopicPartition>],
    sorted: &[&MemberSubscription],
    owners: &BTreeMap<TopicPartition, usize>,
) -> Option<(usize, usize, TopicPartition)> {
    let mut givers: Vec<usize> = (0..target.len()).collect();
    givers.sort_by_key(|&i| (std::cmp::Reverse(target[i].len()), i));
    let mut takers: Vec<usize> = (0..target.len()).collect();
    takers.sort_by_key(|&i| (target[i].len(), i));
    for &from in &givers {
        for &to in &takers {
            if target[to].len() + 1 >= target[from].len() {
                break;
            }
            let movable = |tp: &&TopicPartition| subscribes(sorted[to], &tp.0);
            let fresh = target[from]
                .iter()
                .rev()
                .filter(movable)
                .find(|tp| owners.get(*tp) != Some(&from));
            let any = || target[from].iter().rev().find(movable);
            if let Some(tp) = fresh.or_else(any) {
                return Some((from, to, tp.clone()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::protocol::Subscription;

    fn member(
        id: &str,
        topics: &[&str],
        owned: &[(&str, i32)],
        generation: i32,
    ) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                owned_partitions: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
                generation: Some(generation),
                ..Subscription::default()
            },
        }
    }

    fn ps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    fn t(n: i32) -> PartitionCounts {
        [("t".to_string(), n)].into_iter().collect()
    }

    /// Each step of a group growing from one member to two, as KIP-429
    /// describes it.
    #[test]
    fn second_member_gets_partitions_only_after_they_are_revoked() {
        // Generation 1: a alone owns all four.
        let a_owns = [("t", 0), ("t", 1), ("t", 2), ("t", 3)];
        // Generation 2: b joins. a keeps two, gives up two; b gets none yet
        // because a still owns them.
        let got = CooperativeSticky.assign(
            &t(4),
            &[
                member("a", &["t"], &a_owns, 1),
                member("b", &["t"], &[], -1),
            ],
        );
        assert_eq!(got["a"], ps(&[("t", 0), ("t", 1)]));
        assert_eq!(got["b"], ps(&[]));
        // Generation 3: a revoked them and rejoined; now nobody owns them
        // and b gets them.
        let got = CooperativeSticky.assign(
            &t(4),
            &[
                member("a", &["t"], &[("t", 0), ("t", 1)], 2),
                member("b", &["t"], &[], 2),
            ],
        );
        assert_eq!(got["a"], ps(&[("t", 0), ("t", 1)]));
        assert_eq!(got["b"], ps(&[("t", 2), ("t", 3)]));
    }

    /// A member that leaves: its partitions had no other owner, so the
    /// survivors take them at once, keeping their own.
    #[test]
    fn departed_members_partitions_move_at_once() {
        let got = CooperativeSticky.assign(
            &t(4),
            &[
                member("a", &["t"], &[("t", 0), ("t", 1)], 5),
                member("c", &["t"], &[("t", 3)], 5),
            ],
        );
        assert_eq!(got["a"], ps(&[("t", 0), ("t", 1)]));
        assert_eq!(got["c"], ps(&[("t", 2), ("t", 3)]));
    }

    /// Two claims on one partition: the newer generation wins; at equal
    /// generations neither owns it and it is assigned like a free one.
    #[test]
    fn conflicting_claims() {
        let got = CooperativeSticky.assign(
            &t(2),
            &[
                member("a", &["t"], &[("t", 0)], 3),
                member("b", &["t"], &[("t", 0)], 4),
            ],
        );
        assert_eq!(got["b"], ps(&[("t", 0)]));
        assert_eq!(got["a"], ps(&[("t", 1)]));
        let got = CooperativeSticky.assign(
            &t(2),
            &[
                member("a", &["t"], &[("t", 0)], 4),
                member("b", &["t"], &[("t", 0), ("t", 1)], 4),
            ],
        );
        assert_eq!(
            got["a"],
            ps(&[("t", 0)]),
            "t0 was free: first member takes it"
        );
        assert_eq!(got["b"], ps(&[("t", 1)]));
    }

    /// Claims on partitions that no longer exist, or of topics the member
    /// dropped, are ignored.
    #[test]
    fn stale_claims_are_ignored() {
        let got =
            CooperativeSticky.assign(&t(1), &[member("a", &["t"], &[("t", 5), ("gone", 0)], 2)]);
        assert_eq!(got["a"], ps(&[("t", 0)]));
        let got = CooperativeSticky.assign(
            &t(2),
            &[
                member("a", &["u"], &[("t", 0)], 2),
                member("b", &["t"], &[], 2),
            ],
        );
        assert_eq!(got["b"], ps(&[("t", 0), ("t", 1)]));
    }

    /// A balanced, complete assignment is returned unchanged.
    #[test]
    fn stable_group_keeps_everything() {
        let members = [
            member("a", &["t"], &[("t", 0), ("t", 3), ("t", 4)], 9),
            member("b", &["t"], &[("t", 1), ("t", 2)], 9),
        ];
        let got = CooperativeSticky.assign(&t(5), &members);
        assert_eq!(got["a"], ps(&[("t", 0), ("t", 3), ("t", 4)]));
        assert_eq!(got["b"], ps(&[("t", 1), ("t", 2)]));
    }
}
