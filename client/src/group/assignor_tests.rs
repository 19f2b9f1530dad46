//! Properties every assignor must have, over random groups: each partition
//! of a subscribed topic goes to exactly one member that subscribes to it
//! (for cooperative-sticky: at most one per generation, exactly one once
//! the follow-up rebalances settle), balance within one partition when all
//! members subscribe to the same topics, and cooperative-sticky never hands
//! a partition to a new owner in the generation its old owner loses it.

use super::assignor::{
    subscribed_partitions, subscribes, Assignor, GroupAssignment, MemberSubscription,
    PartitionCounts, Range, RoundRobin,
};
use super::protocol::Subscription;
use super::sticky::CooperativeSticky;
use super::TopicPartition;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// A random group: 1-4 topics of 1-8 partitions, 1-6 members, each
/// subscribing to a random non-empty set of topics (all of them if
/// `identical`), some of them static.
fn group(identical: bool) -> impl Strategy<Value = (PartitionCounts, Vec<MemberSubscription>)> {
    (
        prop::collection::vec(1i32..=8, 1..=4),
        prop::collection::vec((any::<u8>(), any::<bool>()), 1..=6),
    )
        .prop_map(move |(sizes, members)| {
            let counts: PartitionCounts = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("t{i}"), *n))
                .collect();
            let topics: Vec<String> = counts.keys().cloned().collect();
            let members = members
                .into_iter()
                .enumerate()
                .map(|(i, (mask, is_static))| {
                    let mut mine: Vec<String> = topics
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| identical || mask & (1 << k) != 0)
                        .map(|(_, t)| t.clone())
                        .collect();
                    if mine.is_empty() {
                        mine.push(topics[i % topics.len()].clone());
                    }
                    MemberSubscription {
                        member_id: format!("m{i}"),
                        group_instance_id: is_static.then(|| format!("i{}", 9 - i)),
                        subscription: Subscription {
                            topics: mine,
                            ..Subscription::default()
                        },
                    }
                })
                .collect();
            (counts, members)
        })
}

/// Panics unless every member has an entry, only gets partitions of its
/// topics, and no partition goes to two members. Returns the assigned set.
fn check_sound(
    counts: &PartitionCounts,
    members: &[MemberSubscription],
    got: &GroupAssignment,
) -> BTreeSet<TopicPartition> {
    assert_eq!(got.len(), members.len(), "an entry per member");
    let mut seen = BTreeSet::new();
    for m in members {
        for tp in &got[&m.member_id] {
            assert!(
                subscribes(m, &tp.0),
                "{} not subscribed to {tp:?}",
                m.member_id
            );
            assert!(tp.1 < counts[&tp.0], "{tp:?} does not exist");
            assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
        }
    }
    seen
}

fn check_complete(counts: &PartitionCounts, members: &[MemberSubscription], got: &GroupAssignment) {
    let seen = check_sound(counts, members, got);
    let all: BTreeSet<TopicPartition> =
        subscribed_partitions(counts, members).into_iter().collect();
    assert_eq!(seen, all, "every subscribed partition assigned");
}

fn spread(loads: impl Iterator<Item = usize>) -> usize {
    let loads: Vec<usize> = loads.collect();
    loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0)
}

/// Feeds an assignment back as the members' ownership, in `generation`.
fn owning(
    members: &[MemberSubscription],
    got: &GroupAssignment,
    generation: i32,
) -> Vec<MemberSubscription> {
    members
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.subscription.owned_partitions = got[&m.member_id].clone();
            m.subscription.generation = Some(generation);
            m
        })
        .collect()
}

/// Runs cooperative-sticky rebalances, each member owning what the last
/// one gave it, checking the cooperative rule at every step, until an
/// assignment revokes nothing. Returns it.
fn settle(
    counts: &PartitionCounts,
    mut members: Vec<MemberSubscription>,
    generation: i32,
) -> GroupAssignment {
    for round in 0..10 {
        let got = CooperativeSticky.assign(counts, &members);
        check_sound(counts, &members, &got);
        check_cooperative(&members, &got);
        let revoked = members.iter().any(|m| {
            m.subscription
                .owned_partitions
                .iter()
                .any(|tp| !got[&m.member_id].contains(tp))
        });
        let withheld = check_sound(counts, &members, &got).len()
            < subscribed_partitions(counts, &members).len();
        if !revoked && !withheld {
            return got;
        }
        members = owning(&members, &got, generation + round + 1);
    }
    panic!("cooperative-sticky did not settle in 10 rebalances");
}

/// No member is given a partition another member owned going in (the
/// generators never make conflicting claims).
fn check_cooperative(members: &[MemberSubscription], got: &GroupAssignment) {
    let owner: BTreeMap<&TopicPartition, &str> = members
        .iter()
        .flat_map(|m| {
            m.subscription
                .owned_partitions
                .iter()
                .map(move |tp| (tp, m.member_id.as_str()))
        })
        .collect();
    for (member, partitions) in got {
        for tp in partitions {
            if let Some(&old) = owner.get(tp) {
                assert_eq!(
                    old, member,
                    "{tp:?} given to {member} while {old} still owns it"
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn eager_assignors_assign_everything_once((counts, members) in group(false)) {
        check_complete(&counts, &members, &Range.assign(&counts, &members));
        check_complete(&counts, &members, &RoundRobin.assign(&counts, &members));
    }

    #[test]
    fn roundrobin_balances_identical_subscriptions((counts, members) in group(true)) {
        let got = RoundRobin.assign(&counts, &members);
        prop_assert!(spread(got.values().map(Vec::len)) <= 1);
    }

    /// Range balances each topic on its own (not across topics: that is
    /// Kafka's range, on purpose).
    #[test]
    fn range_balances_each_topic((counts, members) in group(true)) {
        let got = Range.assign(&counts, &members);
        for topic in counts.keys() {
            let per_member = got.values().map(|ps| ps.iter().filter(|tp| &tp.0 == topic).count());
            prop_assert!(spread(per_member) <= 1);
        }
    }

    /// From nothing, then after members leave and join, cooperative-sticky
    /// settles on a complete assignment, balanced for identical
    /// subscriptions, never breaking the cooperative rule on the way.
    #[test]
    fn cooperative_sticky_settles(
        (counts, members) in group(false),
        identical in any::<bool>(),
        leave in any::<prop::sample::Index>(),
        joiners in 0usize..3,
    ) {
        let members = if identical {
            members.into_iter().map(|mut m| { m.subscription.topics = counts.keys().cloned().collect(); m }).collect()
        } else {
            members
        };
        let first = settle(&counts, members.clone(), 0);
        check_complete(&counts, &members, &first);
        if identical {
            prop_assert!(spread(first.values().map(Vec::len)) <= 1);
        }
        // Membership changes: one member leaves, some join, the rest keep
        // owning what they had.
        let mut next = owning(&members, &first, 20);
        next.remove(leave.index(next.len()));
        for j in 0..joiners {
            let mut m = members[j % members.len()].clone();
            m.member_id = format!("new{j}");
            m.group_instance_id = None;
            m.subscription.owned_partitions.clear();
            m.subscription.generation = None;
            next.push(m);
        }
        if next.is_empty() {
            return Ok(());
        }
        let settled = settle(&counts, next.clone(), 20);
        check_complete(&counts, &next, &settled);
        if identical {
            prop_assert!(spread(settled.values().map(Vec::len)) <= 1);
        }
    }

    /// Sticky: a member that keeps its subscription keeps at least as many
    /// of its partitions as balance lets it (min(owned, floor(P/M))) when
    /// everyone subscribes to everything.
    #[test]
    fn cooperative_sticky_keeps_what_balance_allows((counts, members) in group(true), extra in 0usize..3) {
        let first = settle(&counts, members.clone(), 0);
        let mut next = owning(&members, &first, 5);
        for j in 0..extra {
            let mut m = members[0].clone();
            m.member_id = format!("new{j}");
            m.group_instance_id = None;
            m.subscription.owned_partitions.clear();
            next.push(m);
        }
        let got = CooperativeSticky.assign(&counts, &next);
        let total: usize = counts.values().map(|n| *n as usize).sum();
        let floor = total / next.len();
        for m in &next {
            let owned = &m.subscription.owned_partitions;
            let kept = owned.iter().filter(|tp| got[&m.member_id].contains(tp)).count();
            prop_assert!(kept >= owned.len().min(floor), "{} kept {kept} of {}", m.member_id, owned.len());
        }
    }
}
