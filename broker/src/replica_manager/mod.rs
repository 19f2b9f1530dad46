//! The replica manager: what Kafka's `ReplicaManager` does. It holds the
//! broker's replicas and their fetchers ([`ReplicaManager`],
//! `replicas.rs`: what a metadata image changes in them), and serves the
//! partitions this broker leads behind two calls every caller shares:
//!
//! - [`append_records`] (`append.rs`): validate and append now, commit
//!   (flush policy, then acks=all replication) in the returned future;
//! - [`fetch`] (`fetch.rs`): read whole batches up to the high watermark
//!   (a follower: up to the log end), long-polling in the purgatory of the
//!   partitions asked for; a follower's fetch also counts its position
//!   ([`record_follower_positions`]) as soon as it is read.
//!
//! Handlers are decode, call, encode around these; the group coordinator
//! appends through [`append_records`] in its shard's leader epoch.

mod append;
mod fetch;
mod replicas;

pub use append::{append_records, AppendEntry, AppendOutcome, AppendResults};
pub use fetch::{fetch, record_follower_positions, FetchParams, FetchResults, FetchTopic};
pub use replicas::{ReplicaManager, Transition};

#[cfg(test)]
pub(crate) mod tests;
