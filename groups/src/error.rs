//! The expected outcomes of group requests that are not success, one-to-one
//! with Kafka's error codes.

use std::fmt;

/// Why a group request was refused. Each maps to one Kafka error code
/// ([`GroupError::code`]); the client's reaction (rejoin, reset the member
/// id, give up) is keyed on that code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupError {
    /// COORDINATOR_NOT_AVAILABLE (15): the group is Dead (being unloaded or
    /// deleted); the client looks the coordinator up again.
    CoordinatorNotAvailable,
    /// NOT_COORDINATOR (16): parked requests of a group this broker stops
    /// coordinating ([`crate::Group::mark_dead`]).
    NotCoordinator,
    /// ILLEGAL_GENERATION (22): the request names another generation.
    IllegalGeneration,
    /// INCONSISTENT_GROUP_PROTOCOL (23): empty protocol type or list, a
    /// protocol type other than the group's, or no protocol every member
    /// supports.
    InconsistentGroupProtocol,
    /// UNKNOWN_MEMBER_ID (25): the member id is not in the group (never
    /// joined, left, or expired); the client rejoins with an empty id.
    UnknownMemberId,
    /// INVALID_SESSION_TIMEOUT (26): outside the configured range.
    InvalidSessionTimeout,
    /// REBALANCE_IN_PROGRESS (27): the client must rejoin.
    RebalanceInProgress,
    /// NON_EMPTY_GROUP (68): the group has members, so it cannot be deleted.
    NonEmptyGroup,
    /// MEMBER_ID_REQUIRED (79, KIP-394): rejoin with the member id given in
    /// this response.
    MemberIdRequired,
    /// GROUP_MAX_SIZE_REACHED (81).
    GroupMaxSizeReached,
    /// FENCED_INSTANCE_ID (82, KIP-345): another member id now holds this
    /// `group.instance.id`; fatal for the client.
    FencedInstanceId,
}

impl GroupError {
    /// Kafka's numeric error code (checked against Kafka's `Errors` list).
    pub fn code(&self) -> i16 {
        match self {
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::NotCoordinator => 16,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::NonEmptyGroup => 68,
            GroupError::MemberIdRequired => 79,
            GroupError::GroupMaxSizeReached => 81,
            GroupError::FencedInstanceId => 82,
        }
    }

    /// Kafka's name for the code, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            GroupError::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
            GroupError::NotCoordinator => "NOT_COORDINATOR",
            GroupError::IllegalGeneration => "ILLEGAL_GENERATION",
            GroupError::InconsistentGroupProtocol => "INCONSISTENT_GROUP_PROTOCOL",
            GroupError::UnknownMemberId => "UNKNOWN_MEMBER_ID",
            GroupError::InvalidSessionTimeout => "INVALID_SESSION_TIMEOUT",
            GroupError::RebalanceInProgress => "REBALANCE_IN_PROGRESS",
            GroupError::NonEmptyGroup => "NON_EMPTY_GROUP",
            GroupError::MemberIdRequired => "MEMBER_ID_REQUIRED",
            GroupError::GroupMaxSizeReached => "GROUP_MAX_SIZE_REACHED",
            GroupError::FencedInstanceId => "FENCED_INSTANCE_ID",
        }
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for GroupError {}
