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
    /// A leader changes its partition's ISR (Kafka's AlterPartition). Stale
    /// requests (another leader, epoch or partition epoch) are refused.
    AlterPartition {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The requesting leader.
        leader: BrokerId,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch its request is based on.
        partition_epoch: i32,
        /// The new ISR (the leader included).
        isr: Vec<BrokerId>,
    },
    /// Adds partitions to a topic (Kafka's CreatePartitions).
    CreatePartitions {
        /// Topic name.
        name: String,
        /// Replicas of each new partition, in preference order.
        assignment: Vec<Vec<BrokerId>>,
    },
    /// A broker asks for the next block of producer ids (Kafka's
    /// AllocateProducerIds, KIP-730). Only a live session gets one, so a
    /// fenced or restarted broker's stale request hands out nothing.
    AllocateProducerIds {
        /// The requesting broker.
        broker: BrokerId,
        /// Its broker epoch: must be the current, unfenced one.
        broker_epoch: u64,
    },
}

/// Producer ids per block, as Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`:
/// large enough that a broker rarely asks, small enough that ids left
/// unused in a crashed broker's block cost little.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

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
    /// `AllocateProducerIds` applied: the broker owns the ids
    /// `[first, first + count)`, which no one else is ever given.
    ProducerIds {
        /// First id of the block.
        first: i64,
        /// Ids in the block.
        count: i64,
    },
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
        Command::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        } => {
            let live = live_set(meta);
            let Some(p) = meta
                .topics
                .get_mut(topic)
                .and_then(|t| t.partitions.get_mut(usize::try_from(*partition).ok()?))
            else {
                return CommandResult::Refused(format!("unknown partition {topic}-{partition}"));
            };
            match alter_isr(p, *leader, *leader_epoch, *partition_epoch, isr, &live) {
                Ok(()) => ok(None, 0),
                Err(why) => CommandResult::Refused(why),
            }
        }
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
        Command::AllocateProducerIds {
            broker,
            broker_epoch,
        } => allocate_producer_ids(meta, *broker, *broker_epoch),
    }
}

/// KIP-730: the next block from `next_producer_id`, only for a registered,
/// unfenced broker in its current epoch. Committing the advance before the
/// broker uses the block is what keeps ids unique across controller
/// failover: a new active controller continues from the committed counter.
fn allocate_producer_ids(
    meta: &mut ClusterMetadata,
    broker: BrokerId,
    broker_epoch: u64,
) -> CommandResult {
    match meta.brokers.get(&broker) {
        None => return CommandResult::Refused(format!("unknown broker {broker}")),
        Some(b) if b.fenced => {
            return CommandResult::Refused(format!("broker {broker} is fenced"));
        }
        Some(b) if b.epoch != broker_epoch => {
            return CommandResult::Refused(format!(
                "broker {broker} epoch {broker_epoch} is stale (current {})",
                b.epoch
            ));
        }
        Some(_) => {}
    }
    let first = meta.next_producer_id;
    let Some(next) = first.checked_add(PRODUCER_ID_BLOCK_SIZE) else {
        return CommandResult::Refused("producer ids are exhausted".into());
    };
    meta.next_producer_id = next;
    CommandResult::ProducerIds {
        first,
        count: PRODUCER_ID_BLOCK_SIZE,
    }
}

/// Kafka's AlterPartition checks: the current leader in its current epoch,
/// based on the current partition epoch, an ISR of replicas that keeps the
/// leader, and only live brokers added.
fn alter_isr(
    p: &mut PartitionState,
    leader: BrokerId,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[BrokerId],
    live: &[BrokerId],
) -> Result<(), String> {
    if p.leader != Some(leader) || p.leader_epoch != leader_epoch {
        return Err(format!(
            "broker {leader} in epoch {leader_epoch} is not the leader (leader {:?}, epoch {})",
            p.leader, p.leader_epoch
        ));
    }
    if p.partition_epoch != partition_epoch {
        return Err(format!(
            "stale partition epoch {partition_epoch} (current {})",
            p.partition_epoch
        ));
    }
    if !isr.contains(&leader) || isr.iter().any(|b| !p.replicas.contains(b)) {
        return Err(format!(
            "ISR {isr:?} must hold the leader and only replicas"
        ));
    }
    if let Some(b) = isr.iter().find(|b| !p.isr.contains(b) && !live.contains(b)) {
        return Err(format!("broker {b} is fenced and cannot join the ISR"));
    }
    p.isr = isr.to_vec();
    p.partition_epoch += 1;
    Ok(())
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

    #[test]
    fn alter_partition_table() {
        let mut meta = ClusterMetadata::default();
        for id in 1..=3 {
            register(&mut meta, id);
        }
        let create = Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::nil(),
            assignment: vec![vec![1, 2, 3]],
            configs: BTreeMap::new(),
        };
        apply(&mut meta, &create, false);
        let alter =
            |leader, leader_epoch, partition_epoch, isr: &[BrokerId]| Command::AlterPartition {
                topic: "t".into(),
                partition: 0,
                leader,
                leader_epoch,
                partition_epoch,
                isr: isr.to_vec(),
            };
        // (command, accepted, isr after, partition epoch after)
        let cases = [
            (alter(1, 1, 1, &[1, 2]), true, vec![1, 2], 2),
            (alter(1, 1, 1, &[1]), false, vec![1, 2], 2), // stale partition epoch
            (alter(2, 1, 2, &[2]), false, vec![1, 2], 2), // not the leader
            (alter(1, 0, 2, &[1]), false, vec![1, 2], 2), // old leader epoch
            (alter(1, 1, 2, &[2, 3]), false, vec![1, 2], 2), // drops the leader
            (alter(1, 1, 2, &[1, 4]), false, vec![1, 2], 2), // not a replica
            (alter(1, 1, 2, &[1, 2, 3]), true, vec![1, 2, 3], 3),
        ];
        for (command, accepted, isr, partition_epoch) in cases {
            let result = apply(&mut meta, &command, false);
            assert_eq!(
                matches!(result, CommandResult::Ok { .. }),
                accepted,
                "{command:?}: {result:?}"
            );
            let p = &meta.topics["t"].partitions[0];
            assert_eq!(
                (&p.isr, p.partition_epoch, p.leader_epoch),
                (&isr, partition_epoch, 1)
            );
        }
        // A fenced broker cannot be added back.
        apply(&mut meta, &alter(1, 1, 3, &[1, 2]), false);
        let epoch3 = meta.brokers[&3].epoch;
        apply(
            &mut meta,
            &Command::FenceBroker {
                id: 3,
                epoch: epoch3,
            },
            false,
        );
        let result = apply(&mut meta, &alter(1, 1, 4, &[1, 2, 3]), false);
        assert!(matches!(result, CommandResult::Refused(_)), "{result:?}");
    }

    /// Brokers 1 and 2 live (epochs 1, 2), broker 3 fenced (epoch 3).
    fn producer_id_cluster() -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        for id in 1..=3 {
            register(&mut meta, id);
        }
        apply(&mut meta, &Command::FenceBroker { id: 3, epoch: 3 }, false);
        meta
    }

    #[test]
    fn allocate_producer_ids_table() {
        let allocate = |broker, broker_epoch| Command::AllocateProducerIds {
            broker,
            broker_epoch,
        };
        let block = |first| CommandResult::ProducerIds {
            first,
            count: PRODUCER_ID_BLOCK_SIZE,
        };
        let refused = |why: &str| CommandResult::Refused(why.into());
        // (name, command, result, next_producer_id after), applied in order.
        let cases = [
            ("first block", allocate(1, 1), block(0), 1000),
            ("consecutive, disjoint", allocate(1, 1), block(1000), 2000),
            ("another broker", allocate(2, 2), block(2000), 3000),
            (
                "stale epoch",
                allocate(1, 7),
                refused("broker 1 epoch 7 is stale (current 1)"),
                3000,
            ),
            (
                "fenced broker",
                allocate(3, 3),
                refused("broker 3 is fenced"),
                3000,
            ),
            (
                "unknown broker",
                allocate(9, 1),
                refused("unknown broker 9"),
                3000,
            ),
        ];
        let mut meta = producer_id_cluster();
        for (name, command, result, next) in cases {
            let before = meta.clone();
            assert_eq!(apply(&mut meta, &command, false), result, "{name}");
            assert_eq!(meta.next_producer_id, next, "{name}");
            if matches!(result, CommandResult::Refused(_)) {
                assert_eq!(meta, before, "{name}: a refusal changes nothing");
            }
        }
    }

    #[test]
    fn producer_ids_run_out_at_i64_max() {
        let mut meta = producer_id_cluster();
        let command = Command::AllocateProducerIds {
            broker: 1,
            broker_epoch: 1,
        };
        meta.next_producer_id = i64::MAX - PRODUCER_ID_BLOCK_SIZE;
        assert_eq!(
            apply(&mut meta, &command, false),
            CommandResult::ProducerIds {
                first: i64::MAX - PRODUCER_ID_BLOCK_SIZE,
                count: PRODUCER_ID_BLOCK_SIZE
            },
            "the last whole block"
        );
        assert_eq!(meta.next_producer_id, i64::MAX);
        let before = meta.clone();
        assert_eq!(
            apply(&mut meta, &command, false),
            CommandResult::Refused("producer ids are exhausted".into())
        );
        assert_eq!(meta, before);
    }

    /// Every controller applies the same entry to the same metadata: the
    /// block and the counter must come out identical.
    #[test]
    fn allocate_producer_ids_is_deterministic() {
        let mut meta = producer_id_cluster();
        let mut replica = meta.clone();
        let commands = [(1, 1), (2, 2), (3, 3), (1, 5), (2, 2)].map(|(broker, broker_epoch)| {
            Command::AllocateProducerIds {
                broker,
                broker_epoch,
            }
        });
        for command in &commands {
            let ours = apply(&mut meta, command, false);
            let theirs = apply(&mut replica, command, false);
            assert_eq!(ours, theirs, "{command:?}");
            assert_eq!(meta, replica, "{command:?}");
        }
        assert_eq!(meta.next_producer_id, 3 * PRODUCER_ID_BLOCK_SIZE);
    }

    /// Snapshots and logs written before producer ids existed still load,
    /// starting the counter at 0.
    #[test]
    fn metadata_without_a_producer_id_counter_loads() {
        let old = r#"{"cluster_id":"c","brokers":{},"next_broker_epoch":4,"topics":{}}"#;
        let meta: ClusterMetadata = serde_json::from_str(old).unwrap();
        assert_eq!((meta.next_broker_epoch, meta.next_producer_id), (4, 0));
    }
}
