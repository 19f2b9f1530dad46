//! Replica fetchers, one per source broker (Kafka's `ReplicaFetcherManager`
//! with one fetcher thread per leader): a single connection to each broker
//! this broker follows partitions from, carrying all of them in each Fetch.
//!
//! Per partition, a fetcher first asks the leader where this replica's
//! latest epoch ends (OffsetForLeaderEpoch, batched for every partition
//! that needs it) and cuts its divergent tail there
//! (`replication::truncation`), then fetches from its log end as
//! `replica_id` with the leader epoch it follows. Each fetched chunk is
//! appended unchanged at once and the next fetch goes out before it is
//! synced; every request carries the replica's durable end
//! (`crate::durable_end`), and when a sync completes a position report
//! goes out pipelined behind the fetch in flight (`link`), so the leader
//! counts only durable records toward the high watermark without a sync
//! per round trip. Errors are told apart by code (`outcome::next`) and
//! each partition's trouble is logged once when it starts and once when it
//! ends.
//!
//! `Fetchers::update` follows the metadata image: a partition whose leader
//! or epoch changed moves to the right fetcher and truncates first.

mod link;
mod outcome;
mod session;
mod truncate;

use crate::clock::Clock;
use crate::image::MetadataImage;
use crate::partition::Partition;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A partition's key: topic and index.
pub type Key = (String, i32);

/// What this broker follows from one leader, in which epoch.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The replica.
    pub partition: Arc<Partition>,
    /// The leader epoch followed.
    pub leader_epoch: i32,
}

/// One source broker's assignments, shared with its task.
#[derive(Debug)]
pub struct Assigned {
    partitions: Mutex<BTreeMap<Key, Assignment>>,
    /// Bumped on every change; the task marks what it has taken in.
    version: watch::Sender<u64>,
}

impl Assigned {
    fn new() -> Assigned {
        Assigned {
            partitions: Mutex::new(BTreeMap::new()),
            version: watch::channel(0).0,
        }
    }

    /// Follows the changes: `changed` on the receiver fires for a change
    /// not yet taken in by [`current`](Self::current).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The partitions to follow now; marks the change as taken in.
    pub fn current(&self, seen: &mut watch::Receiver<u64>) -> BTreeMap<Key, Assignment> {
        seen.borrow_and_update();
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `key` is still followed in `leader_epoch` (checked before a
    /// fetched chunk is appended: the image may have moved on meanwhile).
    pub fn still(&self, key: &Key, leader_epoch: i32) -> bool {
        let partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        partitions
            .get(key)
            .is_some_and(|a| a.leader_epoch == leader_epoch)
    }

    /// Replaces the assignments; only a real change (a partition added or
    /// dropped, a new epoch or replica) wakes the task, since every image
    /// applied calls this.
    fn set(&self, partitions: BTreeMap<Key, Assignment>) {
        let mut current = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        let same = current.len() == partitions.len()
            && current.iter().zip(&partitions).all(|((k1, a1), (k2, a2))| {
                k1 == k2
                    && a1.leader_epoch == a2.leader_epoch
                    && Arc::ptr_eq(&a1.partition, &a2.partition)
            });
        if !same {
            *current = partitions;
            self.version.send_modify(|v| *v += 1);
        }
    }
}

/// The fetcher of one source broker.
#[derive(Debug)]
struct SourceFetcher {
    addr: String,
    assigned: Arc<Assigned>,
    task: tokio::task::AbortHandle,
}

impl Drop for SourceFetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every replica fetcher of this broker, by source broker.
#[derive(Debug, Default)]
pub struct Fetchers {
    by_leader: Mutex<HashMap<i32, SourceFetcher>>,
}

impl Fetchers {
    /// Gives each source broker's fetcher the partitions `image` says this
    /// broker (`me`) follows from it; starts fetchers for new sources (or a
    /// source at a new address) and stops the others. `replica` finds the
    /// open replica of a partition; `clock` stamps what they append.
    pub fn update(
        &self,
        me: i32,
        image: &MetadataImage,
        clock: &Arc<dyn Clock>,
        replica: impl Fn(&str, i32) -> Option<Arc<Partition>>,
    ) {
        let mut wanted: HashMap<i32, (String, BTreeMap<Key, Assignment>)> = HashMap::new();
        for (name, index, _, state) in image.replicas_of(me) {
            let Some(leader) = state.leader.filter(|l| *l != me) else {
                continue;
            };
            let Some(addr) = image.brokers.get(&leader).map(|b| b.endpoint.clone()) else {
                continue;
            };
            let Some(partition) = replica(name, index) else {
                continue;
            };
            let entry = wanted
                .entry(leader)
                .or_insert_with(|| (addr, BTreeMap::new()));
            let assignment = Assignment {
                partition,
                leader_epoch: state.leader_epoch,
            };
            entry.1.insert((name.clone(), index), assignment);
        }
        let mut by_leader = self.by_leader.lock().unwrap_or_else(|e| e.into_inner());
        let mut kept = HashMap::new();
        for (leader, (addr, partitions)) in wanted {
            let fetcher = match by_leader.remove(&leader) {
                Some(f) if f.addr == addr => f,
                _ => start(me, leader, addr, clock.clone()),
            };
            fetcher.assigned.set(partitions);
            kept.insert(leader, fetcher);
        }
        *by_leader = kept; // dropping the others aborts them
    }
}

fn start(me: i32, leader: i32, addr: String, clock: Arc<dyn Clock>) -> SourceFetcher {
    let assigned = Arc::new(Assigned::new());
    let task = tokio::spawn(session::run(
        me,
        leader,
        addr.clone(),
        assigned.clone(),
        clock,
    ));
    SourceFetcher {
        addr,
        assigned,
        task: task.abort_handle(),
    }
}
