//! The commands the controller quorum commits, and how each changes the
//! cluster metadata. `apply` is deterministic: every input, time included,
//! is in the command, so every controller computes the same state.

use crate::metadata::{BrokerId, BrokerRegistration, ClusterMetadata, PartitionState, Topic};
use crate::rules::election;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A change proposed to the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker (re)starts its session: it gets a new broker epoch and is
    /// unfenced; offline partitions it can lead get it as leader.
    RegisterBroker {
        /// Node id.
        id: BrokerId,
        /// Advertised `host:port`.
        endpoint: String,
        /// The registering process's incarnation id.
        incarnation: u64,
    },
    /// The broker's session expired (or it shut down cleanly): it is fenced
    /// and its partitions get new leaders from their live ISR members.
    FenceBroker {
        /// Node id.
        id: BrokerId,
        /// The epoch whose session ended; a stale one changes nothing.
        epoch: u64,
    },
    /// Creates a topic with the given replica assignment.
    CreateTopic {
        /// Name.
        name: String,
        /// Topic id (chosen by the proposer, so apply stays deterministic).
        id: uuid::Uuid,
        /// Replicas of each partition, in preference order.
        assignment: Vec<Vec<BrokerId>>,
        /// Config overrides.
        configs: BTreeMap<String, String>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Moves every partition whose preferred replica can lead back to it.
    ElectPreferredLeaders,
    /// Sets the cluster id, once (the first active controller proposes it).
    InitCluster {
        /// The id.
        cluster_id: String,
    },
    /// Adds partitions to a topic (Kafka's CreatePartitions).
    CreatePartitions {
        /// Topic name.
        name: String,
        /// Replicas of each new partition, in preference order.
        assignment: Vec<Vec<BrokerId>>,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied; for a registration, the new broker epoch.
    Ok {
        /// Broker epoch given by `RegisterBroker`.
        broker_epoch: Option<u64>,
        /// Partitions whose leader changed.
        leaders_changed: usize,
    },
    /// Refused, with the reason; nothing changed.
    Refused(String),
}

fn ok(broker_epoch: Option<u64>, leaders_changed: usize) -> CommandResult {
    CommandResult::Ok {
        broker_epoch,
        leaders_changed,
    }
}

/// Applies `command` to `meta`.
pub fn apply(meta: &mut ClusterMetadata, command: &Command, unclean: bool) -> CommandResult {
    match command {
        Command::RegisterBroker {
            id,
            endpoint,
            incarnation,
        } => {
            meta.next_broker_epoch += 1;
            let epoch = meta.next_broker_epoch;
            meta.brokers.insert(
                *id,
                BrokerRegistration {
                    id: *id,
                    epoch,
                    endpoint: endpoint.clone(),
                    fenced: false,
                    incarnation: *incarnation,
                },
            );
            let live = live_set(meta);
            let changed = update_partitions(meta, |p| {
                election::on_broker_back(p, &|b| live.contains(&b), unclean)
            });
            ok(Some(epoch), changed)
        }
        Command::FenceBroker { id, epoch } => {
            match meta.brokers.get_mut(id) {
                Some(b) if b.epoch == *epoch && !b.fenced => b.fenced = true,
                Some(b) if b.epoch == *epoch => return ok(None, 0),
                Some(b) => {
                    return CommandResult::Refused(format!(
                        "broker {id} epoch {epoch} is stale (current {})",
                        b.epoch
                    ))
                }
                None => return CommandResult::Refused(format!("unknown broker {id}")),
            }
            let live = live_set(meta);
            let changed = update_partitions(meta, |p| {
                election::on_broker_gone(p, *id, &|b| live.contains(&b), unclean)
            });
            ok(None, changed)
        }
        Command::CreateTopic {
            name,
            id,
            assignment,
            configs,
        } => {
            if meta.topics.contains_key(name) {
                return CommandResult::Refused(format!("topic {name} already exists"));
            }
            if assignment.is_empty() || assignment.iter().any(|r| r.is_empty()) {
                return CommandResult::Refused("every partition needs at least one replica".into());
            }
            let partitions = assignment
                .iter()
                .map(|replicas| PartitionState::new(replicas.clone()))
                .collect();
            meta.topics.insert(
                name.clone(),
                Topic {
                    id: *id,
                    partitions,
                    configs: configs.clone(),
                },
            );
            ok(None, assignment.len())
        }
        Command::DeleteTopic { name } => match meta.topics.remove(name) {
            Some(_) => ok(None, 0),
            None => CommandResult::Refused(format!("topic {name} does not exist")),
        },
        Command::InitCluster { cluster_id } => {
            if !meta.cluster_id.is_empty() {
                return CommandResult::Refused(format!(
                    "the cluster id is already {}",
                    meta.cluster_id
                ));
            }
            meta.cluster_id = cluster_id.clone();
            ok(None, 0)
        }
        Command::CreatePartitions { name, assignment } => {
            let Some(topic) = meta.topics.get_mut(name) else {
                return CommandResult::Refused(format!("topic {name} does not exist"));
            };
            if assignment.is_empty() || assignment.iter().any(|r| r.is_empty()) {
                return CommandResult::Refused("every partition needs at least one replica".into());
            }
            topic.partitions.extend(
                assignment
                    .iter()
                    .map(|replicas| PartitionState::new(replicas.clone())),
            );
            ok(None, assignment.len())
        }
        Command::ElectPreferredLeaders => {
            let live = live_set(meta);
            let changed =
                update_partitions(meta, |p| election::preferred(p, &|b| live.contains(&b)));
            ok(None, changed)
        }
    }
}

fn live_set(meta: &ClusterMetadata) -> Vec<BrokerId> {
    meta.brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect()
}

/// Replaces each partition with `rule`'s result where it has one; returns
/// how many partitions' leaders changed.
fn update_partitions(
    meta: &mut ClusterMetadata,
    rule: impl Fn(&PartitionState) -> Option<PartitionState>,
) -> usize {
    let mut changed = 0;
    for topic in meta.topics.values_mut() {
        for p in &mut topic.partitions {
            if let Some(next) = rule(p) {
                changed += usize::from(next.leader != p.leader);
                *p = next;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(meta: &mut ClusterMetadata, id: BrokerId) -> u64 {
        match apply(
            meta,
            &Command::RegisterBroker {
                id,
                endpoint: format!("b{id}:9092"),
                incarnation: 0,
            },
            false,
        ) {
            CommandResult::Ok {
                broker_epoch: Some(e),
                ..
            } => e,
            other => panic!("{other:?}"),
        }
    }

    fn leader(meta: &ClusterMetadata, p: usize) -> (Option<BrokerId>, i32) {
        let p = &meta.topics["t"].partitions[p];
        (p.leader, p.leader_epoch)
    }

    /// A story, step by step: three brokers, a topic, the leader is fenced,
    /// a stale fence is refused, the broker returns with a new epoch, and
    /// the preferred leader is restored.
    #[test]
    fn fence_elect_return_and_restore() {
        let mut meta = ClusterMetadata::default();
        let epochs: Vec<u64> = (1..=3).map(|id| register(&mut meta, id)).collect();
        assert_eq!(epochs, vec![1, 2, 3], "broker epochs are never reused");
        let create = Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            assignment: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
        };
        assert_eq!(apply(&mut meta, &create, false), ok(None, 2));
        assert_eq!(
            apply(&mut meta, &create, false),
            CommandResult::Refused("topic t already exists".into())
        );
        assert_eq!(
            (leader(&meta, 0), leader(&meta, 1)),
            ((Some(1), 1), (Some(2), 1))
        );

        // Broker 1's session ends: partition 0 moves to 2 in epoch 2.
        assert_eq!(
            apply(&mut meta, &Command::FenceBroker { id: 1, epoch: 1 }, false),
            ok(None, 1)
        );
        assert_eq!(leader(&meta, 0), (Some(2), 2));
        assert_eq!(
            meta.topics["t"].partitions[1].isr,
            vec![2, 3],
            "fenced broker leaves the ISR"
        );
        // Fencing again, or with an old epoch, changes nothing.
        assert_eq!(
            apply(&mut meta, &Command::FenceBroker { id: 1, epoch: 1 }, false),
            ok(None, 0)
        );
        // Broker 1 re-registers: a new epoch; the stale fence is now refused.
        assert_eq!(register(&mut meta, 1), 4);
        assert!(matches!(
            apply(&mut meta, &Command::FenceBroker { id: 1, epoch: 1 }, false),
            CommandResult::Refused(_)
        ));
        assert_eq!(
            leader(&meta, 0),
            (Some(2), 2),
            "a returning broker leads nothing by itself"
        );
        // (Replication would add it back to the ISR; then preferred election.)
        meta.topics.get_mut("t").unwrap().partitions[0].isr = vec![2, 3, 1];
        assert_eq!(
            apply(&mut meta, &Command::ElectPreferredLeaders, false),
            ok(None, 1)
        );
        assert_eq!(leader(&meta, 0), (Some(1), 3));
    }

    #[test]
    fn all_isr_gone_goes_offline_then_recovers() {
        let mut meta = ClusterMetadata::default();
        let e1 = register(&mut meta, 1);
        let create = Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            assignment: vec![vec![1]],
            configs: BTreeMap::new(),
        };
        apply(&mut meta, &create, false);
        apply(&mut meta, &Command::FenceBroker { id: 1, epoch: e1 }, false);
        assert_eq!(leader(&meta, 0), (None, 2), "offline, with a new epoch");
        register(&mut meta, 1);
        assert_eq!(
            leader(&meta, 0),
            (Some(1), 3),
            "back with its committed records"
        );
    }

    #[test]
    fn bad_commands_are_refused_and_change_nothing() {
        let mut meta = ClusterMetadata::default();
        register(&mut meta, 1);
        let before = meta.clone();
        let cases = [
            Command::FenceBroker { id: 9, epoch: 1 },
            Command::DeleteTopic {
                name: "nope".into(),
            },
            Command::CreateTopic {
                name: "t".into(),
                id: uuid::Uuid::nil(),
                assignment: vec![],
                configs: BTreeMap::new(),
            },
            Command::CreateTopic {
                name: "t".into(),
                id: uuid::Uuid::nil(),
                assignment: vec![vec![]],
                configs: BTreeMap::new(),
            },
            Command::CreatePartitions {
                name: "nope".into(),
                assignment: vec![vec![1]],
            },
        ];
        for c in cases {
            assert!(
                matches!(apply(&mut meta, &c, false), CommandResult::Refused(_)),
                "{c:?}"
            );
            assert_eq!(meta, before, "{c:?}");
        }
    }

    #[test]
    fn cluster_id_is_set_once_and_partitions_grow() {
        let mut meta = ClusterMetadata::default();
        let init = |id: &str| Command::InitCluster {
            cluster_id: id.into(),
        };
        assert_eq!(apply(&mut meta, &init("a"), false), ok(None, 0));
        assert!(matches!(
            apply(&mut meta, &init("b"), false),
            CommandResult::Refused(_)
        ));
        assert_eq!(meta.cluster_id, "a");
        register(&mut meta, 1);
        let create = Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            assignment: vec![vec![1]],
            configs: BTreeMap::new(),
        };
        apply(&mut meta, &create, false);
        let grow = Command::CreatePartitions {
            name: "t".into(),
            assignment: vec![vec![1], vec![1]],
        };
        assert_eq!(apply(&mut meta, &grow, false), ok(None, 2));
        assert_eq!(meta.topics["t"].partitions.len(), 3);
        assert_eq!(
            leader(&meta, 2),
            (Some(1), 1),
            "new partitions start in epoch 1"
        );
    }
}
