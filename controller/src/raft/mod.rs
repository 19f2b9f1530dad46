//! The Raft side of the controller, on `openraft` 0.9 (the stable line;
//! 0.10 is alpha): the type configuration, a durable log store and a state
//! machine of [`crate::metadata::ClusterMetadata`] with persisted snapshots.

pub mod log_store;
pub mod network;
pub mod node;
pub mod peers;
pub mod state_machine;

use crate::commands::{Command, CommandResult};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Baton's Raft types: [`Command`]s in, [`CommandResult`]s out, nodes by
    /// u64 id with their address.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
);

/// A controller's node id.
pub type NodeId = u64;

/// A storage failure as openraft wants it reported.
pub(crate) fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    error: impl std::fmt::Display,
) -> openraft::StorageError<NodeId> {
    let io = std::io::Error::other(error.to_string());
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&io)).into()
}
