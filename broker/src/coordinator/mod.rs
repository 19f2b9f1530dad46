//! The group coordinator. A group lives in one partition of
//! `__consumer_offsets` ([`records::partition_for`]); the broker leading that
//! partition is the group's coordinator, so coordinator election *is*
//! partition leader election, with its epochs and its lease.
//!
//! Per led offsets partition this broker keeps a [`Shard`]: the groups of
//! that partition, loaded from its log when the leadership (in one epoch)
//! begins and dropped when it ends. Every request first passes
//! [`Coordinator::shard`], which goes through `Broker::leader` (image and
//! lease): a coordinator that lost leadership or its lease answers
//! NOT_COORDINATOR at once, one still loading COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Writes (offset commits, membership at the end of a rebalance, deletions)
//! are appended as leader and answered only once the high watermark passes
//! them (replicated to `min.insync.replicas`), like an acks=all produce.
//!
//! The coordinator sees its broker only through [`CoordinatorHost`]
//! (`host.rs`): the clock, the settings, the offsets partitions it may
//! serve, and the replica manager's appends.

mod host;
pub mod log_ends;
pub mod records;
mod shard;
#[cfg(test)]
mod tests;

pub use host::{Committing, CoordinatorHost};
pub use shard::{GroupEntry, Shard};

use crate::image::MetadataImage;
use crate::state::Broker;
use kafka_protocol::ResponseError;
use records::OFFSETS_TOPIC;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The coordinator state of one broker: a shard per offsets partition it
/// leads.
#[derive(Debug, Default)]
pub struct Coordinator {
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
    /// High watermarks commits are checked against.
    pub log_ends: log_ends::LogEnds,
}

impl Coordinator {
    /// The loaded shard that owns `group_id`, if this broker may coordinate
    /// it now.
    pub fn shard(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
    ) -> Result<Arc<Shard>, ResponseError> {
        let partitions = host
            .offsets_partitions()
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let index = records::partition_for(group_id, partitions);
        let shard = host.serve_offsets(index, |leader_epoch| {
            let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
            match shards.get(&index) {
                Some(s) if s.leader_epoch == leader_epoch && s.is_loaded() => Ok(s.clone()),
                _ => Err(ResponseError::CoordinatorLoadInProgress),
            }
        });
        shard.map_err(|e| match e {
            ResponseError::CoordinatorLoadInProgress => e,
            _ => ResponseError::NotCoordinator,
        })
    }

    /// Follows a new image: starts loading the offsets partitions this
    /// broker now leads (in a new epoch) and drops the others, which fails
    /// their parked requests (NOT_COORDINATOR).
    pub fn on_image<H: CoordinatorHost>(&self, host: &Arc<H>, image: &MetadataImage) {
        let me = host.broker_id();
        let led: HashMap<i32, i32> = image
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == Some(me))
                    .map(|(i, p)| (i as i32, p.leader_epoch))
                    .collect()
            })
            .unwrap_or_default();
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.retain(|index, shard| {
            let keep = led.get(index) == Some(&shard.leader_epoch);
            if !keep {
                tracing::info!(
                    "{OFFSETS_TOPIC}-{index} leader epoch {}: coordinator unloaded (no longer its leader in that epoch)",
                    shard.leader_epoch
                );
                shard.unload();
            }
            keep
        });
        for (index, epoch) in led {
            if shards.contains_key(&index) {
                continue;
            }
            let shard = Arc::new(Shard::new(index, epoch));
            shards.insert(index, shard.clone());
            tokio::spawn(shard::load(host.clone(), shard));
        }
    }

    /// Every shard, for the timer and for ListGroups.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.values().cloned().collect()
    }
}

/// Expires sessions and ends join phases on time: every shard's groups are
/// ticked every 50 ms (a fraction of the shortest session timeout).
pub async fn run_timer(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_millis(50));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for shard in broker.coordinator.shards() {
            shard.tick(&broker);
        }
    }
}
