//! The classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup; what Kafka's `GroupCoordinator` does for one `ClassicGroup`)
//! as a pure state machine: no I/O, no clock, no async. Time is a parameter
//! ([`Ms`], the caller's monotonic clock); a request that must wait is
//! *parked* under a caller-chosen [`Waiter`] token and its reply comes out
//! of a later call as [`Effects`].
//!
//! The broker holds one [`Group`] per group id under a mutex, calls
//! [`Group::join`], [`Group::sync`], [`Group::heartbeat`], [`Group::leave`]
//! as requests arrive and [`Group::tick`] at [`Group::next_deadline`], sends
//! the replies, and writes [`Group::snapshot`] durably first whenever
//! [`Effects::persist`] is set.
//!
//! # States
//!
//! ```text
//!            join                 join phase done            leader's sync
//!  Empty ───────────▶ PreparingRebalance ───────────▶ CompletingRebalance ───────▶ Stable
//!    ▲                  ▲   │ (no members left)             │                        │
//!    └──────────────────┼───┘                               │                        │
//!                       └───────────────────────────────────┴────────────────────────┘
//!                         new member, leave, session expiry, changed protocols, leader rejoin
//! ```
//!
//! - **Join phase** (PreparingRebalance): joins park. It ends when every
//!   member has a parked join and no member id handed out with
//!   MEMBER_ID_REQUIRED is still pending, or at its deadline: the largest
//!   rebalance timeout among the members, counted from when it began. A
//!   group leaving Empty first waits `initial_rebalance_delay_ms` (KIP-134),
//!   extended while new members keep arriving, up to the rebalance timeout;
//!   it does not end early. At the end, dynamic members that did not rejoin
//!   are removed (static members stay until their session expires, KIP-345),
//!   the generation goes up, the protocol is chosen ([`choose_protocol`]) and
//!   every parked join is answered; the leader's answer lists the members.
//! - **Sync phase** (CompletingRebalance): syncs park until the leader's,
//!   which carries the assignments; then the group is Stable.
//!
//! # Invariants
//!
//! Checked after every step in debug builds and by the tests:
//! - the generation never decreases;
//! - there is at most one leader and it is a member; a group with members
//!   (and not Dead) has one;
//! - Empty has no members; parked joins exist only in PreparingRebalance,
//!   parked syncs only in CompletingRebalance;
//! - every waiter gets exactly one reply (none is dropped or answered twice);
//! - in Stable every member's assignment was set by the leader's sync of the
//!   current generation (assignments are cleared when the generation moves);
//! - in CompletingRebalance and Stable every member supports the chosen
//!   protocol;
//! - a request from a removed or fenced member never changes the group.
//!
//! What this crate knows nothing about: sockets, the wire format, offsets
//! storage, the consumer protocol's byte layout (metadata and assignments
//! are opaque bytes), which broker coordinates which group.

mod error;
mod group;
mod join;
mod member;
mod messages;
mod protocol;
mod session;
mod snapshot;
mod sync;

pub use error::GroupError;
pub use group::{Group, GroupState};
pub use messages::{
    Description, Effects, JoinRequest, JoinResponse, JoinedMember, MemberDescription, Reply,
    SyncRequest, SyncResponse,
};
pub use protocol::choose_protocol;
pub use snapshot::{MemberSnapshot, Snapshot};

/// The caller's monotonic clock, in milliseconds.
pub type Ms = u64;

/// A caller-chosen token for a request that may be answered later (the
/// broker maps it back to the connection and correlation id).
pub type Waiter = u64;

/// The coordinator's group settings, with Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`. Kafka's default is 6000; ours is
    /// 1000 so tests and the failover demo notice a dead consumer quickly.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (Kafka: 1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (KIP-134): how long a group
    /// leaving Empty waits for more members before its first generation.
    /// Kafka's default, 3000. With 0, the first member to join leads a
    /// generation of its own before the others arrive, often before its
    /// client's metadata names the topic; kafka-python 3.0.12 can then lose
    /// the rejoin that follows (it drops a finished join when its metadata
    /// catches up during the join) and hang without partitions.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`: joins that would add a member beyond it get
    /// GROUP_MAX_SIZE_REACHED.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            min_session_timeout_ms: 1000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            max_size: usize::MAX,
        }
    }
}

/// A millisecond count from the wire as a duration; negatives count as 0.
pub(crate) fn ms(value: i32) -> Ms {
    Ms::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests;
