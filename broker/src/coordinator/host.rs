//! What the group coordinator needs of the broker it runs in, and nothing
//! more: the clock, the group settings, whether it may serve an offsets
//! partition now (image and lease), that partition's replica to load from,
//! and the replica manager's appends. [`Broker`] is the one implementation;
//! the coordinator's tests run on a fake.

use super::records::OFFSETS_TOPIC;
use crate::partition::Partition;
use crate::replica_manager::{append_records, AppendEntry, AppendResults};
use crate::state::Broker;
use kafka_protocol::ResponseError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A write's commit, resolved by the replica manager's second phase.
pub type Committing = Pin<Box<dyn Future<Output = AppendResults> + Send>>;

/// The coordinator's view of its broker.
pub trait CoordinatorHost: Send + Sync + 'static {
    /// This broker's node id.
    fn broker_id(&self) -> i32;

    /// Milliseconds on the monotonic clock (group deadlines).
    fn now_ms(&self) -> u64;

    /// Wall-clock milliseconds (record timestamps).
    fn wall_ms(&self) -> i64;

    /// The group settings.
    fn group_config(&self) -> &groups::GroupConfig;

    /// How many `__consumer_offsets` partitions there are, if it exists.
    fn offsets_partitions(&self) -> Option<i32>;

    /// Runs `act` with the epoch this broker leads `__consumer_offsets-index`
    /// in, if it may serve it now (its image names it leader and its lease
    /// holds, checked on both sides of `act`).
    fn serve_offsets<T>(
        &self,
        index: i32,
        act: impl FnOnce(i32) -> Result<T, ResponseError>,
    ) -> Result<T, ResponseError>;

    /// This broker's replica of `__consumer_offsets-index`, to load from.
    fn offsets_replica(&self, index: i32) -> Option<Arc<Partition>>;

    /// The replica manager's `append_records`: appended now, committed when
    /// the returned future resolves.
    fn append_records(
        self: &Arc<Self>,
        acks: i16,
        timeout: Duration,
        entries: Vec<AppendEntry>,
    ) -> Committing;
}

impl CoordinatorHost for Broker {
    fn broker_id(&self) -> i32 {
        self.id()
    }

    fn now_ms(&self) -> u64 {
        Broker::now_ms(self)
    }

    fn wall_ms(&self) -> i64 {
        Broker::wall_ms(self)
    }

    fn group_config(&self) -> &groups::GroupConfig {
        &self.config.groups
    }

    fn offsets_partitions(&self) -> Option<i32> {
        let image = self.image();
        let topic = image.topics.get(OFFSETS_TOPIC)?;
        Some(topic.partitions.len() as i32)
    }

    fn serve_offsets<T>(
        &self,
        index: i32,
        act: impl FnOnce(i32) -> Result<T, ResponseError>,
    ) -> Result<T, ResponseError> {
        self.serve(OFFSETS_TOPIC, index, -1, |led| act(led.leader_epoch))
    }

    fn offsets_replica(&self, index: i32) -> Option<Arc<Partition>> {
        self.partition(OFFSETS_TOPIC, index)
    }

    fn append_records(
        self: &Arc<Self>,
        acks: i16,
        timeout: Duration,
        entries: Vec<AppendEntry>,
    ) -> Committing {
        Box::pin(append_records(self, acks, timeout, entries))
    }
}
