//! The replicas a broker holds (Kafka's `ReplicaManager.allPartitions`)
//! and the fetchers that follow their leaders: what a metadata image
//! changes in them, in the order that keeps every request safe.
//!
//! A new image is applied in three steps (Kafka's
//! `ReplicaManager.applyDelta`), driven by `Broker::apply_image`:
//! 1. [`ReplicaManager::transition`]: open the replicas the image gives
//!    this broker and start the epochs it leads in, before anyone can see
//!    the image, so no request sees leadership before the log is ready;
//! 2. [`ReplicaManager::install`]: swap in the new set of replicas in the
//!    same critical section that publishes the image, then wake the
//!    requests parked on partitions whose leadership moved;
//! 3. [`ReplicaManager::follow`] hands the fetchers their partitions, and
//!    [`ReplicaManager::remove`] wakes and deletes what the image dropped.

use crate::clock::Clock;
use crate::config::BrokerConfig;
use crate::fetcher::Fetchers;
use crate::image::{partition_dir, MetadataImage};
use crate::partition::{log_config_for, Partition};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use storage::fs::FileSystem;
use storage::LogConfig;

/// A partition: topic and index.
type Key = (String, i32);

/// The replicas an image gives this broker, opened, their epochs started;
/// not yet visible.
#[derive(Debug)]
pub struct Transition {
    wanted: HashMap<Key, Arc<Partition>>,
    /// Replicas whose leader or epoch changed: requests parked on them
    /// re-check once the image is published.
    moved: Vec<Arc<Partition>>,
}

/// A broker's replicas and replica fetchers.
#[derive(Debug)]
pub struct ReplicaManager {
    me: i32,
    data_dir: PathBuf,
    /// The broker's log defaults, which topic configs override.
    log: LogConfig,
    /// `replica.lag.time.max.ms`, for the epochs it leads.
    lag_ms: u64,
    clock: Arc<dyn Clock>,
    /// Where the replicas' logs live (the real one, or `FaultyFs` in tests).
    fs: Arc<dyn FileSystem>,
    partitions: RwLock<HashMap<Key, Arc<Partition>>>,
    /// One per broker this one follows partitions from.
    fetchers: Fetchers,
}

impl ReplicaManager {
    /// No replicas yet: they open as images name them.
    pub fn new(config: &BrokerConfig, clock: Arc<dyn Clock>, fs: Arc<dyn FileSystem>) -> Self {
        ReplicaManager {
            me: config.node_id,
            data_dir: config.data_dir.clone(),
            log: config.log.clone(),
            lag_ms: config.replica_lag_time_max_ms,
            clock,
            fs,
            partitions: RwLock::new(HashMap::new()),
            fetchers: Fetchers::default(),
        }
    }

    /// The replica, if this broker holds one.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        partitions.get(&(topic.to_string(), index)).cloned()
    }

    /// Every replica, for maintenance.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        partitions.values().cloned().collect()
    }

    /// Step 1: opens every replica `image` gives this broker and makes it
    /// lead or follow as `image` says (`current`: the image before it). A
    /// replica that cannot open is logged and left out.
    pub fn transition(
        &self,
        image: &MetadataImage,
        current: &MetadataImage,
    ) -> anyhow::Result<Transition> {
        let mut transition = Transition {
            wanted: HashMap::new(),
            moved: Vec::new(),
        };
        for (name, index, topic_id, state) in image.replicas_of(self.me) {
            let partition = match self.open(name, index, topic_id, image) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(topic = %name, partition = index, error = %e, "cannot open replica");
                    continue;
                }
            };
            let before = current
                .partition(name, index)
                .map(|p| (p.leader, p.leader_epoch));
            let changed = before != Some((state.leader, state.leader_epoch));
            if changed {
                log_role(self.me, name, index, state.leader, state.leader_epoch);
            }
            if state.leader == Some(self.me) {
                partition.become_leader(state.leader_epoch)?;
                let (replicas, isr) = (&state.replicas, &state.isr);
                let now = self.clock.monotonic_ms();
                partition.lead(now, self.me, state.leader_epoch, replicas, isr, self.lag_ms);
            } else {
                partition.stop_leading();
            }
            if changed {
                transition.moved.push(partition.clone());
            }
            transition.wanted.insert((name.clone(), index), partition);
        }
        Ok(transition)
    }

    /// Step 2: makes `transition`'s replicas the ones held, while
    /// `publish` makes its image current (nobody finds one without the
    /// other), then wakes the requests parked on replicas that moved.
    /// Returns the replicas no longer held.
    pub fn install(&self, transition: Transition, publish: impl FnOnce()) -> Vec<Arc<Partition>> {
        let removed = {
            let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            let old = std::mem::replace(&mut *partitions, transition.wanted);
            publish();
            old.into_iter()
                .filter(|(k, _)| !partitions.contains_key(k))
                .map(|(_, p)| p)
                .collect()
        };
        for p in transition.moved {
            p.wake_all();
        }
        removed
    }

    /// Step 3: gives each source broker's fetcher what `image` says this
    /// broker follows from it.
    pub fn follow(&self, image: &MetadataImage) {
        let replica = |name: &str, index| self.partition(name, index);
        self.fetchers.update(self.me, image, &self.clock, replica);
    }

    /// Wakes what waits on replicas no longer held and deletes the logs
    /// of those whose topic `image` deleted.
    pub fn remove(&self, removed: Vec<Arc<Partition>>, image: &MetadataImage) {
        for p in removed {
            p.wake_all();
            let deleted = image
                .topics
                .get(&p.topic)
                .is_none_or(|t| t.id != p.topic_id);
            // A topic deleted and created again under its name has already
            // claimed the directory: it is the new topic's now.
            let reused = image
                .partition(&p.topic, p.index)
                .is_some_and(|s| s.replicas.contains(&self.me));
            if deleted && !reused {
                let dir = partition_dir(&self.data_dir, &p.topic, p.index);
                tracing::info!(dir = %dir.display(), "removing a deleted topic's log");
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove it");
                }
            }
        }
    }

    /// The replica of `name`-`index` in topic `topic_id`: the one held, or
    /// opened from its directory with the topic's configs.
    fn open(
        &self,
        name: &str,
        index: i32,
        topic_id: uuid::Uuid,
        image: &MetadataImage,
    ) -> anyhow::Result<Arc<Partition>> {
        if let Some(p) = self
            .partition(name, index)
            .filter(|p| p.topic_id == topic_id)
        {
            return Ok(p);
        }
        let configs = &image.topics[name].configs;
        let log_config =
            log_config_for(&self.log, configs).map_err(|e| anyhow::anyhow!("topic {name}: {e}"))?;
        let dir = partition_dir(&self.data_dir, name, index);
        let fs = self.fs.clone();
        let partition = Partition::open(fs, dir, name, index, topic_id, log_config)?;
        Ok(Arc::new(partition))
    }
}

/// Tells the operator this broker's new role in a partition.
fn log_role(me: i32, name: &str, index: i32, leader: Option<i32>, epoch: i32) {
    match leader {
        Some(l) if l == me => {
            tracing::info!("partition {name}-{index} leader {me} epoch {epoch}: this broker leads")
        }
        Some(l) => {
            tracing::info!("partition {name}-{index} leader {l} epoch {epoch}: this broker follows")
        }
        None => tracing::info!("partition {name}-{index} offline in epoch {epoch}: no leader"),
    }
}
