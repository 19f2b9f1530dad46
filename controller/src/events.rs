//! What the operator should read about the controller's decisions: one
//! line per change, with its identifiers. Pure: [`changes`] compares the
//! metadata before and after one committed command, [`role_change`] two
//! views of who is the active controller. The state machine and the Raft
//! node log what these return (the active controller only, so each change
//! is said once, when committed, and not again when a log is replayed).

use crate::metadata::{BrokerId, ClusterMetadata, PartitionState};
use crate::raft::NodeId;
use std::fmt;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A broker registered: a new broker epoch, unfenced.
    BrokerRegistered {
        /// Node id.
        broker: BrokerId,
        /// Its new broker epoch.
        epoch: u64,
    },
    /// A broker was fenced: it leads nothing and leaves the ISRs.
    BrokerFenced {
        /// Node id.
        broker: BrokerId,
        /// The broker epoch whose session ended.
        epoch: u64,
    },
    /// A topic was created.
    TopicCreated {
        /// Name.
        topic: String,
        /// Its partition count.
        partitions: usize,
    },
    /// A topic was deleted.
    TopicDeleted {
        /// Name.
        topic: String,
    },
    /// A partition's leader or leader epoch changed (an election).
    LeaderChanged {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: usize,
        /// The new leader; `None`: offline.
        leader: Option<BrokerId>,
        /// The leader before.
        previous: Option<BrokerId>,
        /// The new leader epoch.
        leader_epoch: i32,
        /// The ISR after.
        isr: Vec<BrokerId>,
    },
    /// A partition's ISR changed under the same leader and epoch.
    IsrChanged {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: usize,
        /// The leader.
        leader: Option<BrokerId>,
        /// Its epoch.
        leader_epoch: i32,
        /// The ISR before.
        previous: Vec<BrokerId>,
        /// The ISR after.
        isr: Vec<BrokerId>,
    },
}

fn broker(id: Option<BrokerId>) -> String {
    id.map_or_else(|| "none".to_string(), |b| b.to_string())
}

fn list(ids: &[BrokerId]) -> String {
    let ids: Vec<String> = ids.iter().map(|b| b.to_string()).collect();
    format!("[{}]", ids.join(","))
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::BrokerRegistered { broker, epoch } => {
                write!(
                    f,
                    "broker {broker} registered: broker epoch {epoch}, unfenced"
                )
            }
            Change::BrokerFenced { broker, epoch } => {
                write!(f, "broker {broker} fenced: broker epoch {epoch}")
            }
            Change::TopicCreated { topic, partitions } => {
                write!(f, "topic {topic} created: {partitions} partitions")
            }
            Change::TopicDeleted { topic } => write!(f, "topic {topic} deleted"),
            Change::LeaderChanged {
                topic,
                partition,
                leader,
                previous,
                leader_epoch,
                isr,
            } => write!(
                f,
                "partition {topic}-{partition} leader {} epoch {leader_epoch} (was {}), isr {}",
                broker(*leader),
                broker(*previous),
                list(isr)
            ),
            Change::IsrChanged {
                topic,
                partition,
                leader,
                leader_epoch,
                previous,
                isr,
            } => {
                let verb = if isr.len() < previous.len() {
                    "shrunk"
                } else {
                    "expanded"
                };
                write!(
                    f,
                    "partition {topic}-{partition} isr {verb} to {} (was {}), leader {} epoch {leader_epoch}",
                    list(isr),
                    list(previous),
                    broker(*leader)
                )
            }
        }
    }
}

/// The changes from `before` to `after`: brokers first (a fencing is said
/// before the elections it causes), then topics, then partitions.
pub fn changes(before: &ClusterMetadata, after: &ClusterMetadata) -> Vec<Change> {
    let mut out = Vec::new();
    for (id, b) in &after.brokers {
        let old = before.brokers.get(id);
        if !b.fenced && old.is_none_or(|o| o.epoch != b.epoch || o.fenced) {
            out.push(Change::BrokerRegistered {
                broker: *id,
                epoch: b.epoch,
            });
        }
        if b.fenced && old.is_some_and(|o| !o.fenced) {
            out.push(Change::BrokerFenced {
                broker: *id,
                epoch: b.epoch,
            });
        }
    }
    for name in before.topics.keys() {
        if !after.topics.contains_key(name) {
            out.push(Change::TopicDeleted {
                topic: name.clone(),
            });
        }
    }
    for (name, topic) in &after.topics {
        let old = before.topics.get(name).filter(|o| o.id == topic.id);
        if old.is_none() {
            out.push(Change::TopicCreated {
                topic: name.clone(),
                partitions: topic.partitions.len(),
            });
        }
        let old = old.map_or(&[][..], |o| &o.partitions[..]);
        for (index, p) in topic.partitions.iter().enumerate() {
            if let Some(change) = partition_change(name, index, old.get(index), p) {
                out.push(change);
            }
        }
    }
    out
}

/// A partition's change; a new partition's first leader is part of its
/// topic's creation and says nothing.
fn partition_change(
    topic: &str,
    partition: usize,
    before: Option<&PartitionState>,
    after: &PartitionState,
) -> Option<Change> {
    let before = before?;
    if before.leader != after.leader || before.leader_epoch != after.leader_epoch {
        return Some(Change::LeaderChanged {
            topic: topic.to_string(),
            partition,
            leader: after.leader,
            previous: before.leader,
            leader_epoch: after.leader_epoch,
            isr: after.isr.clone(),
        });
    }
    (before.isr != after.isr).then(|| Change::IsrChanged {
        topic: topic.to_string(),
        partition,
        leader: after.leader,
        leader_epoch: after.leader_epoch,
        previous: before.isr.clone(),
        isr: after.isr.clone(),
    })
}

/// Who a controller takes for the active controller, from its Raft metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleView {
    /// The active controller (Raft leader) it knows, if any.
    pub leader: Option<NodeId>,
    /// Its Raft term.
    pub term: u64,
}

/// A change in who is the active controller, as one controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// This controller became the active one.
    BecameActive {
        /// Its term.
        term: u64,
    },
    /// This controller stopped being the active one.
    StoppedActive {
        /// The term it now knows.
        term: u64,
        /// The new active controller, if known yet.
        leader: Option<NodeId>,
    },
    /// Another controller is active now (or none is known).
    Follows {
        /// The term.
        term: u64,
        /// The active controller, if known.
        leader: Option<NodeId>,
    },
}

impl fmt::Display for RoleChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = |l: &Option<NodeId>| l.map_or("none known".to_string(), |l| l.to_string());
        match self {
            RoleChange::BecameActive { term } => {
                write!(f, "this controller is now the active controller (term {term})")
            }
            RoleChange::StoppedActive { term, leader } => write!(
                f,
                "this controller is no longer the active controller (term {term}, active controller {})",
                known(leader)
            ),
            RoleChange::Follows { term, leader } => {
                write!(f, "active controller {} (term {term})", known(leader))
            }
        }
    }
}

/// What changed for controller `me` from `before` (`None` at start) to
/// `now`; only a change of active controller counts, not of term alone.
pub fn role_change(me: NodeId, before: Option<RoleView>, now: RoleView) -> Option<RoleChange> {
    let was = before.and_then(|b| b.leader);
    if before.is_some() && was == now.leader {
        return None;
    }
    let term = now.term;
    Some(match (was == Some(me), now.leader == Some(me)) {
        (_, true) => RoleChange::BecameActive { term },
        (true, false) => RoleChange::StoppedActive {
            term,
            leader: now.leader,
        },
        (false, false) if before.is_none() && now.leader.is_none() => return None,
        (false, false) => RoleChange::Follows {
            term,
            leader: now.leader,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{apply, Command};

    fn cluster() -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        for id in [1, 2, 3] {
            let register = Command::RegisterBroker {
                id,
                endpoint: String::new(),
                incarnation: 0,
            };
            apply(&mut meta, &register, false);
        }
        let create = Command::CreateTopic {
            name: "orders".into(),
            id: uuid::Uuid::from_u128(7),
            assignment: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: Default::default(),
        };
        apply(&mut meta, &create, false);
        meta
    }

    /// The lines one command's changes make, in order.
    fn lines(meta: &mut ClusterMetadata, command: Command) -> Vec<String> {
        let before = meta.clone();
        apply(meta, &command, false);
        changes(&before, meta)
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn one_line_per_change_table() {
        let mut meta = cluster();
        let cases: Vec<(Command, Vec<&str>)> = vec![
            // Fencing the leader of orders-0: the fence, then the election.
            (
                Command::FenceBroker { id: 1, epoch: 1 },
                vec![
                    "broker 1 fenced: broker epoch 1",
                    "partition orders-0 leader 2 epoch 2 (was 1), isr [2,3]",
                    "partition orders-1 isr shrunk to [2,3] (was [2,3,1]), leader 2 epoch 1",
                ],
            ),
            // Its return: registered again; it is not yet back in any ISR.
            (
                Command::RegisterBroker {
                    id: 1,
                    endpoint: String::new(),
                    incarnation: 0,
                },
                vec!["broker 1 registered: broker epoch 4, unfenced"],
            ),
            // The leader adds it back.
            (
                Command::AlterPartition {
                    topic: "orders".into(),
                    partition: 0,
                    leader: 2,
                    leader_epoch: 2,
                    partition_epoch: 2,
                    isr: vec![2, 3, 1],
                },
                vec!["partition orders-0 isr expanded to [2,3,1] (was [2,3]), leader 2 epoch 2"],
            ),
            // A refused command changes nothing and says nothing.
            (Command::FenceBroker { id: 1, epoch: 1 }, vec![]),
            (
                Command::ElectPreferredLeaders,
                vec!["partition orders-0 leader 1 epoch 3 (was 2), isr [2,3,1]"],
            ),
            (
                Command::CreateTopic {
                    name: "audit".into(),
                    id: uuid::Uuid::from_u128(8),
                    assignment: vec![vec![3]],
                    configs: Default::default(),
                },
                vec!["topic audit created: 1 partitions"],
            ),
            // The only replica fenced: offline.
            (
                Command::FenceBroker { id: 3, epoch: 3 },
                vec![
                    "broker 3 fenced: broker epoch 3",
                    "partition audit-0 leader none epoch 2 (was 3), isr [3]",
                    "partition orders-0 isr shrunk to [2,1] (was [2,3,1]), leader 1 epoch 3",
                    "partition orders-1 isr shrunk to [2] (was [2,3]), leader 2 epoch 1",
                ],
            ),
            (
                Command::DeleteTopic {
                    name: "audit".into(),
                },
                vec!["topic audit deleted"],
            ),
        ];
        for (command, expected) in cases {
            let said = lines(&mut meta, command.clone());
            assert_eq!(said, expected, "{command:?}");
        }
    }

    #[test]
    fn role_change_table() {
        let view = |leader, term| RoleView { leader, term };
        // (me, before, now, expected)
        let cases = [
            // Start: nothing known yet says nothing; a known leader is said.
            (1, None, view(None, 0), None),
            (
                1,
                None,
                view(Some(2), 3),
                Some(RoleChange::Follows {
                    term: 3,
                    leader: Some(2),
                }),
            ),
            (
                1,
                None,
                view(Some(1), 3),
                Some(RoleChange::BecameActive { term: 3 }),
            ),
            // An election won, then lost to another controller.
            (
                1,
                Some(view(None, 4)),
                view(Some(1), 4),
                Some(RoleChange::BecameActive { term: 4 }),
            ),
            (
                1,
                Some(view(Some(1), 4)),
                view(None, 5),
                Some(RoleChange::StoppedActive {
                    term: 5,
                    leader: None,
                }),
            ),
            (
                1,
                Some(view(Some(1), 4)),
                view(Some(3), 5),
                Some(RoleChange::StoppedActive {
                    term: 5,
                    leader: Some(3),
                }),
            ),
            // A follower sees the active controller go and another come.
            (
                2,
                Some(view(Some(1), 4)),
                view(None, 5),
                Some(RoleChange::Follows {
                    term: 5,
                    leader: None,
                }),
            ),
            (
                2,
                Some(view(None, 5)),
                view(Some(3), 6),
                Some(RoleChange::Follows {
                    term: 6,
                    leader: Some(3),
                }),
            ),
            // A new term with the same leader, or none still: nothing.
            (2, Some(view(Some(3), 6)), view(Some(3), 7), None),
            (2, Some(view(None, 6)), view(None, 9), None),
        ];
        for (me, before, now, expected) in cases {
            assert_eq!(
                role_change(me, before, now),
                expected,
                "{me} {before:?} {now:?}"
            );
        }
    }
}
