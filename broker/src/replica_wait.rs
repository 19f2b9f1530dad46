//! The wait of an acknowledged write (Kafka's produce purgatory): an
//! acks=all produce and a group coordinator's write both wait here until
//! the partition's high watermark passes them, in the epoch they were
//! appended in, with enough ISR members.

use crate::partition::Partition;
use crate::purgatory::Waiter;
use crate::state::Broker;
use kafka_protocol::ResponseError;
use std::time::Duration;

/// What an acks=all produce (or a group coordinator's write) waits for.
pub struct Replicated<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub index: i32,
    /// The leader epoch the write was appended in.
    pub epoch: i32,
    /// ISR members the write needs.
    pub min_isr: usize,
}

impl Replicated<'_> {
    /// Waits (the produce purgatory) until the high watermark passes
    /// `last_offset`, then checks the ISR still has `min_isr` members; fails
    /// if leadership in `epoch` ends or the request's time runs out.
    pub async fn until(
        &self,
        broker: &Broker,
        partition: &Partition,
        last_offset: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ResponseError> {
        let waiter = Waiter::new();
        loop {
            // Registered before the check, so no move in between is missed.
            partition.watch_high_watermark(&waiter);
            let passed = broker.serve(self.topic, self.index, -1, |led| {
                if led.leader_epoch != self.epoch {
                    return Err(ResponseError::NotLeaderOrFollower);
                }
                if partition.offsets().1 <= last_offset {
                    return Ok(false);
                }
                match partition.isr_len(self.epoch) >= self.min_isr {
                    true => Ok(true),
                    false => Err(ResponseError::NotEnoughReplicasAfterAppend),
                }
            });
            match passed {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e @ ResponseError::NotEnoughReplicasAfterAppend) => return Err(e),
                Err(_) => return Err(ResponseError::NotLeaderOrFollower),
            }
            // Woken by this partition's high-watermark moves and leadership
            // changes; the lease is rechecked at least every 100 ms.
            let tick = tokio::time::Instant::now() + Duration::from_millis(100);
            if !waiter.wait_until(deadline.min(tick)).await
                && tokio::time::Instant::now() >= deadline
            {
                return Err(ResponseError::RequestTimedOut);
            }
        }
    }
}
