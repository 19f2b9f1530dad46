//! Producer ids for InitProducerId, handed out from blocks the controller
//! quorum allocates (Kafka's AllocateProducerIds, KIP-730). The quorum
//! commits each block before the broker sees it, so no id is ever given
//! twice, across brokers, controller failover and restarts; ids left in a
//! crashed broker's block are simply never used.
//!
//! [`ProducerIdManager`] is the pure part (the current block and one
//! prefetched block, asked for once 90% of the current one is used, as
//! Kafka's `RPCProducerIdManager` does); [`next_producer_id`] drives it
//! against the controller.

use crate::controller_link;
use crate::state::{Broker, Refusal};
use controller::broker_session::BrokerSession;
use controller::metadata::BrokerId;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;

/// How long a caller waits for an id (its turn at the manager plus a block
/// from the controller) before hearing COORDINATOR_NOT_AVAILABLE, which
/// clients retry. Bounded so a silent controller cannot hold a request.
const ID_TIMEOUT: Duration = Duration::from_secs(10);

/// Producer ids `[first, first + count)`, owned by this broker alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    /// First id.
    pub first: i64,
    /// Ids in the block.
    pub count: i64,
}

impl ProducerIdBlock {
    /// One past the last id (the controller never allocates past i64::MAX).
    fn end(&self) -> i64 {
        self.first.saturating_add(self.count)
    }

    /// Kafka's prefetch threshold: once 90% of the block is handed out, the
    /// next one is asked for, so it is usually there before this one ends.
    fn wants_next(&self, handed_out: i64) -> bool {
        handed_out >= self.count - self.count / 10
    }
}

/// What [`ProducerIdManager::next_id`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextId {
    /// An id; with `prefetch`, the caller should now fetch the next block
    /// and hand it to [`ProducerIdManager::prefetch_finished`].
    Id {
        /// The producer id.
        id: i64,
        /// Whether to start the prefetch (at most one runs at a time).
        prefetch: bool,
    },
    /// Every block is used up: fetch one and [`add_block`](ProducerIdManager::add_block) it.
    NeedBlock,
}

/// The broker's producer ids: the block ids come from and the one fetched
/// ahead of it. Pure: fetching is the caller's.
#[derive(Debug, Default)]
pub struct ProducerIdManager {
    /// The block ids are taken from.
    current: Option<ProducerIdBlock>,
    /// The next id in `current`.
    next: i64,
    /// The block to continue with once `current` is used up.
    prefetched: Option<ProducerIdBlock>,
    /// A prefetch is in flight.
    prefetching: bool,
}

impl ProducerIdManager {
    /// The next id, moving to the prefetched block when the current one is
    /// used up; [`NextId::NeedBlock`] when there is none.
    pub fn next_id(&mut self) -> NextId {
        if !self.has_id() {
            let Some(block) = self.prefetched.take() else {
                return NextId::NeedBlock;
            };
            self.use_block(block);
        }
        let Some(block) = self.current else {
            return NextId::NeedBlock;
        };
        let id = self.next;
        self.next += 1;
        let prefetch = !self.prefetching
            && self.prefetched.is_none()
            && block.wants_next(self.next - block.first);
        self.prefetching |= prefetch;
        NextId::Id { id, prefetch }
    }

    /// Installs a block fetched because none was left (or one a prefetch
    /// brought): as the current block if that is used up, else as the
    /// prefetched one. `false` if it is empty or both places are taken;
    /// then it is dropped, which is safe: its ids are never given to anyone.
    pub fn add_block(&mut self, block: ProducerIdBlock) -> bool {
        if block.count <= 0 {
            return false;
        }
        if !self.has_id() {
            self.use_block(block);
            true
        } else if self.prefetched.is_none() {
            self.prefetched = Some(block);
            true
        } else {
            false
        }
    }

    /// A prefetch ended, with a block or without (the controller refused or
    /// did not answer); the next id past the threshold asks again.
    pub fn prefetch_finished(&mut self, block: Option<ProducerIdBlock>) -> bool {
        self.prefetching = false;
        block.is_some_and(|b| self.add_block(b))
    }

    fn has_id(&self) -> bool {
        self.current.is_some_and(|b| self.next < b.end())
    }

    fn use_block(&mut self, block: ProducerIdBlock) {
        self.current = Some(block);
        self.next = block.first;
    }
}

/// A producer id no one else was or will be given (InitProducerId), from
/// this broker's blocks, fetching one from the controller when none is
/// left. COORDINATOR_NOT_AVAILABLE (retriable) when none arrives in time.
pub async fn next_producer_id(broker: &Broker) -> Result<i64, Refusal> {
    match tokio::time::timeout(ID_TIMEOUT, take(broker)).await {
        Ok(taken) => taken,
        Err(_) => Err((
            ResponseError::CoordinatorNotAvailable,
            "no producer id block arrived in time".into(),
        )),
    }
}

async fn take(broker: &Broker) -> Result<i64, Refusal> {
    // Held across the fetch: callers arriving meanwhile wait for this one
    // block instead of each asking for their own.
    let mut ids = broker.producer_ids.lock().await;
    let mut next = ids.next_id();
    if next == NextId::NeedBlock {
        let block = controller_link::allocate_producer_ids(&broker.session, broker.id()).await?;
        ids.add_block(block);
        next = ids.next_id();
    }
    match next {
        NextId::Id { id, prefetch } => {
            if prefetch {
                let (ids, session) = (broker.producer_ids.clone(), broker.session.clone());
                tokio::spawn(prefetch_block(ids, session, broker.id()));
            }
            Ok(id)
        }
        NextId::NeedBlock => Err((
            ResponseError::UnknownServerError,
            "the controller's producer id block was empty".into(),
        )),
    }
}

/// Fetches the next block in the background, so callers rarely wait.
async fn prefetch_block(
    ids: Arc<tokio::sync::Mutex<ProducerIdManager>>,
    session: BrokerSession,
    broker: BrokerId,
) {
    let fetched = tokio::time::timeout(
        ID_TIMEOUT,
        controller_link::allocate_producer_ids(&session, broker),
    )
    .await;
    let block = match fetched {
        Ok(Ok(block)) => Some(block),
        Ok(Err((_, why))) => {
            tracing::warn!(%why, "producer id prefetch failed");
            None
        }
        Err(_) => {
            tracing::warn!("producer id prefetch timed out");
            None
        }
    };
    if !ids.lock().await.prefetch_finished(block) && block.is_some() {
        tracing::warn!(?block, "surplus producer id block dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(first: i64, count: i64) -> ProducerIdBlock {
        ProducerIdBlock { first, count }
    }

    fn id(id: i64, prefetch: bool) -> NextId {
        NextId::Id { id, prefetch }
    }

    /// One step of a story and what it must answer.
    #[derive(Debug)]
    enum Step {
        Next(NextId),
        Add(ProducerIdBlock, bool),
        Prefetched(Option<ProducerIdBlock>, bool),
    }

    fn run(name: &str, steps: &[Step]) {
        let mut ids = ProducerIdManager::default();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Next(want) => assert_eq!(ids.next_id(), want, "{name}, step {i}"),
                Step::Add(b, kept) => assert_eq!(ids.add_block(b), kept, "{name}, step {i}"),
                Step::Prefetched(b, kept) => {
                    assert_eq!(ids.prefetch_finished(b), kept, "{name}, step {i}")
                }
            }
        }
    }

    #[test]
    fn producer_id_manager_table() {
        use Step::*;
        let cases: &[(&str, &[Step])] = &[
            ("nothing before a block", &[Next(NextId::NeedBlock)]),
            (
                "prefetch asked for once 90% is used, once",
                &[
                    Add(block(0, 10), true),
                    Next(id(0, false)),
                    Next(id(1, false)),
                    Next(id(2, false)),
                    Next(id(3, false)),
                    Next(id(4, false)),
                    Next(id(5, false)),
                    Next(id(6, false)),
                    Next(id(7, false)),
                    Next(id(8, true)),
                    Next(id(9, false)),
                    Next(NextId::NeedBlock),
                ],
            ),
            (
                "the prefetched block continues the current one",
                &[
                    Add(block(0, 2), true),
                    Next(id(0, false)),
                    Next(id(1, true)),
                    Prefetched(Some(block(50, 2)), true),
                    Next(id(50, false)),
                    Next(id(51, true)),
                    Next(NextId::NeedBlock),
                ],
            ),
            (
                "a failed prefetch is asked again by the next id",
                &[
                    Add(block(0, 3), true),
                    Next(id(0, false)),
                    Next(id(1, false)),
                    Next(id(2, true)),
                    Prefetched(None, false),
                    Next(NextId::NeedBlock),
                    Add(block(10, 1), true),
                    Next(id(10, true)),
                ],
            ),
            (
                "no second prefetch while one is in flight",
                &[
                    Add(block(0, 1), true),
                    Next(id(0, true)),
                    Next(NextId::NeedBlock),
                    Add(block(20, 1), true),
                    Next(id(20, false)),
                    Prefetched(Some(block(30, 1)), true),
                    Next(id(30, true)),
                ],
            ),
            (
                "a block arriving with both places taken is dropped",
                &[
                    Add(block(0, 5), true),
                    Add(block(5, 5), true),
                    Add(block(10, 5), false),
                    Next(id(0, false)),
                ],
            ),
            (
                "an empty block is refused",
                &[Add(block(0, 0), false), Next(NextId::NeedBlock)],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    /// With Kafka's block size, the 900th id is the one that asks.
    #[test]
    fn a_thousand_id_block_prefetches_at_its_900th_id() {
        let mut ids = ProducerIdManager::default();
        ids.add_block(block(5000, 1000));
        let asked: Vec<i64> = (0..1000)
            .filter_map(|_| match ids.next_id() {
                NextId::Id { id, prefetch: true } => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(asked, vec![5899]);
    }

    /// Over many disjoint blocks, every id handed out is new and inside a
    /// block, whatever the order the blocks arrive in.
    #[test]
    fn ids_are_unique_across_blocks() {
        let mut ids = ProducerIdManager::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut blocks = (0..20).rev().map(|i| block(i * 7, 7));
        while seen.len() < 20 * 7 {
            match ids.next_id() {
                NextId::Id { id, prefetch } => {
                    assert!((0..140).contains(&id) && seen.insert(id), "{id}");
                    if prefetch {
                        ids.prefetch_finished(blocks.next());
                    }
                }
                NextId::NeedBlock => assert!(ids.add_block(blocks.next().unwrap())),
            }
        }
        assert_eq!(ids.next_id(), NextId::NeedBlock);
    }
}
