//! Partition assignors: the pure function the group leader runs to split
//! the subscribed topics' partitions among the members. The built-in
//! `range` and `roundrobin` match Kafka's (eager: every member gives up
//! everything before each rebalance); `cooperative-sticky` is in
//! [`super::sticky`]. Names are the ones on the wire, so members of other
//! Kafka clients configured with the same assignor interoperate.

use super::protocol::Subscription;
use super::TopicPartition;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// Topic -> partition count, for the subscribed topics that exist.
pub type PartitionCounts = BTreeMap<String, i32>;

/// Member id -> its partitions (sorted). Every member has an entry.
pub type GroupAssignment = BTreeMap<String, Vec<TopicPartition>>;

/// How members give up partitions during a rebalance (KIP-429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member revokes all its partitions before joining.
    Eager,
    /// Members keep their partitions while joining and revoke only the
    /// ones the new assignment takes away; those reach their new owner in
    /// a follow-up rebalance.
    Cooperative,
}

/// One member, as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// What it asked for.
    pub subscription: Subscription,
}

/// A partition assignment strategy.
pub trait Assignor: Debug + Send + Sync {
    /// The protocol name on the wire (Kafka's `partition.assignment.strategy`
    /// names).
    fn name(&self) -> &str;
    /// Whether the assignor never hands a partition to a new owner in the
    /// generation the old owner gives it up, as cooperative rebalancing
    /// requires.
    fn supports_cooperative(&self) -> bool {
        false
    }
    /// Splits the partitions of `partitions` among `members`: each member
    /// gets only partitions of topics it subscribed to, and the result has
    /// an entry (maybe empty) for every member.
    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[MemberSubscription],
    ) -> GroupAssignment;
}

/// Kafka's member order: static members first by instance id (so a
/// restarted static member lands where it was), then the rest by member id.
pub fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

/// Members in [`member_order`].
pub fn sorted_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    sorted
}

/// An entry, empty, for every member.
pub fn empty_assignment(members: &[MemberSubscription]) -> GroupAssignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

/// Whether `member` subscribed to `topic`.
pub fn subscribes(member: &MemberSubscription, topic: &str) -> bool {
    member
        .subscription
        .topics
        .iter()
        .any(|t| t.as_str() == topic)
}

/// Every partition of every topic in `partitions` someone subscribed to,
/// sorted by topic then partition.
pub fn subscribed_partitions(
    partitions: &PartitionCounts,
    members: &[MemberSubscription],
) -> Vec<TopicPartition> {
    let wanted: BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.subscription.topics.iter().map(String::as_str))
        .collect();
    partitions
        .iter()
        .filter(|(t, _)| wanted.contains(t.as_str()))
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect()
}

fn sort_all(mut assignment: GroupAssignment) -> GroupAssignment {
    for partitions in assignment.values_mut() {
        partitions.sort();
    }
    assignment
}

/// Kafka's `range`: per topic, the members subscribed to it (in
/// [`member_order`]) take consecutive ranges, the first `n % m` one extra.
/// Worked example: 7 partitions, 3 members -> `[0,1,2] [3,4] [5,6]`.
/// Balanced per topic, not across topics: with many one-partition topics
/// the first member gets them all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Range;

impl Assignor for Range {
    fn name(&self) -> &str {
        "range"
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut out = empty_assignment(members);
        let sorted = sorted_members(members);
        for (topic, &count) in partitions {
            let takers: Vec<&&MemberSubscription> =
                sorted.iter().filter(|m| subscribes(m, topic)).collect();
            if takers.is_empty() {
                continue;
            }
            let per = count / takers.len() as i32;
            let extra = count % takers.len() as i32;
            for (i, member) in takers.iter().enumerate() {
                let i = i as i32;
                let start = per * i + i.min(extra);
                let len = per + i32::from(i < extra);
                let mine = out.get_mut(&member.member_id).expect("every member");
                mine.extend((start..start + len).map(|p| (topic.clone(), p)));
            }
        }
        sort_all(out)
    }
}

/// Kafka's `roundrobin`: all partitions in (topic, partition) order dealt
/// to the members in [`member_order`] like cards, skipping a member not
/// subscribed to the partition's topic. Balanced within one partition when
/// every member subscribes to the same topics.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl Assignor for RoundRobin {
    fn name(&self) -> &str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions: &PartitionCounts,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut out = empty_assignment(members);
        let sorted = sorted_members(members);
        let mut next = 0usize;
        for (topic, partition) in subscribed_partitions(partitions, members) {
            // Someone subscribes to every listed topic, so this finds one
            // within one turn of the table.
            let found = (0..sorted.len())
                .map(|k| (next + k) % sorted.len())
                .find(|&i| subscribes(sorted[i], &topic))
                .expect("a subscriber exists");
            out.get_mut(&sorted[found].member_id)
                .expect("every member")
                .push((topic, partition));
            next = found + 1;
        }
        sort_all(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                ..Subscription::default()
            },
        }
    }

    fn counts(topics: &[(&str, i32)]) -> PartitionCounts {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn shown(a: &GroupAssignment) -> Vec<String> {
        a.iter()
            .map(|(m, ps)| {
                let ps: Vec<String> = ps.iter().map(|(t, p)| format!("{t}{p}")).collect();
                format!("{m}:{}", ps.join(","))
            })
            .collect()
    }

    /// The cases of Kafka's RangeAssignorTest and RoundRobinAssignorTest,
    /// as tables.
    #[test]
    fn range_table() {
        let cases: Vec<(PartitionCounts, Vec<MemberSubscription>, Vec<&str>)> = vec![
            (
                counts(&[("t", 7)]),
                vec![
                    member("a", &["t"]),
                    member("b", &["t"]),
                    member("c", &["t"]),
                ],
                vec!["a:t0,t1,t2", "b:t3,t4", "c:t5,t6"],
            ),
            (
                counts(&[("t", 1), ("u", 1)]),
                vec![member("a", &["t", "u"]), member("b", &["t", "u"])],
                vec!["a:t0,u0", "b:"],
            ),
            (
                counts(&[("t", 3), ("u", 2)]),
                vec![member("a", &["t"]), member("b", &["t", "u"])],
                vec!["a:t0,t1", "b:t2,u0,u1"],
            ),
            (
                counts(&[("t", 2)]),
                vec![
                    member("a", &["t"]),
                    member("b", &["t"]),
                    member("c", &["t"]),
                ],
                vec!["a:t0", "b:t1", "c:"],
            ),
            (counts(&[("t", 2)]), vec![member("a", &["x"])], vec!["a:"]),
        ];
        for (partitions, members, want) in cases {
            assert_eq!(shown(&Range.assign(&partitions, &members)), want);
        }
    }

    #[test]
    fn roundrobin_table() {
        let cases: Vec<(PartitionCounts, Vec<MemberSubscription>, Vec<&str>)> = vec![
            (
                counts(&[("t", 3), ("u", 2)]),
                vec![member("a", &["t", "u"]), member("b", &["t", "u"])],
                vec!["a:t0,t2,u1", "b:t1,u0"],
            ),
            (
                // b is skipped for u: it does not subscribe to it.
                counts(&[("t", 2), ("u", 2)]),
                vec![member("a", &["t", "u"]), member("b", &["t"])],
                vec!["a:t0,u0,u1", "b:t1"],
            ),
            (
                counts(&[("t", 1)]),
                vec![member("a", &["t"]), member("b", &["t"])],
                vec!["a:t0", "b:"],
            ),
        ];
        for (partitions, members, want) in cases {
            assert_eq!(shown(&RoundRobin.assign(&partitions, &members)), want);
        }
    }

    /// Static members sort first, by instance id: a restarted static
    /// member with a new member id keeps its place.
    #[test]
    fn static_members_sort_by_instance_id() {
        let mut a = member("zzz", &["t"]);
        a.group_instance_id = Some("i1".into());
        let mut b = member("aaa", &["t"]);
        b.group_instance_id = Some("i2".into());
        let c = member("000", &["t"]);
        let members = [c, b, a];
        let order: Vec<&str> = sorted_members(&members)
            .iter()
            .map(|m| m.member_id.as_str())
            .collect();
        assert_eq!(order, vec!["zzz", "aaa", "000"]);
        let got = Range.assign(&counts(&[("t", 3)]), &members);
        assert_eq!(got["zzz"], vec![("t".to_string(), 0)]);
    }
}
