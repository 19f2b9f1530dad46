//! What goes in and out of a [`crate::Group`]: requests as the broker
//! decoded them, replies for it to encode, and the [`Effects`] of a step.

use crate::{GroupError, GroupState, Waiter};

/// A JoinGroup request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The member id; empty for a member joining for the first time.
    pub member_id: String,
    /// The id to give this member if it is new. The caller makes it unique
    /// (e.g. `client_id + "-" + uuid`); it is used only when `member_id` is
    /// empty.
    pub new_member_id: String,
    /// `group.instance.id` of a static member (KIP-345), v5+.
    pub group_instance_id: Option<String>,
    /// The client id from the request header, for DescribeGroups.
    pub client_id: String,
    /// The client's address, for DescribeGroups.
    pub client_host: String,
    /// How long the member may go without a heartbeat before it is removed.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin in a rebalance (v1+; the
    /// broker passes the session timeout for v0, as Kafka does).
    pub rebalance_timeout_ms: i32,
    /// E.g. "consumer".
    pub protocol_type: String,
    /// (protocol name, metadata), most preferred first.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Set for JoinGroup v4+: a new dynamic member is first given an id
    /// (MEMBER_ID_REQUIRED) and must rejoin with it (KIP-394).
    pub require_known_member_id: bool,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// None on success.
    pub error: Option<GroupError>,
    /// The generation joined; -1 with an error (Kafka's UNKNOWN_GENERATION).
    pub generation_id: i32,
    /// The group's protocol type (v7+).
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id; empty with an error.
    pub leader: String,
    /// The member's id: the one to use from now on (also with
    /// MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only in the
    /// leader's reply.
    pub members: Vec<JoinedMember>,
    /// KIP-814 (JoinGroup v9+ `SkipAssignment`): a static leader rejoined a
    /// Stable group without a rebalance; it gets the members but must not
    /// compute a new assignment. Brokers answering v < 9 send no members
    /// instead, as Kafka does.
    pub skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol (for "consumer": the
    /// subscription).
    pub metadata: Vec<u8>,
}

/// A SyncGroup request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The member id.
    pub member_id: String,
    /// `group.instance.id` of a static member (v3+).
    pub group_instance_id: Option<String>,
    /// The generation the member joined.
    pub generation_id: i32,
    /// v5+; when given it must match the group's.
    pub protocol_type: Option<String>,
    /// v5+; when given it must match the group's.
    pub protocol_name: Option<String>,
    /// (member id, assignment); only the leader's are used.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// None on success.
    pub error: Option<GroupError>,
    /// The group's protocol type (v5+).
    pub protocol_type: Option<String>,
    /// The group's protocol (v5+).
    pub protocol_name: Option<String>,
    /// This member's assignment; empty with an error.
    pub assignment: Vec<u8>,
}

/// The reply to a parked or immediate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// To a JoinGroup.
    Join(JoinResponse),
    /// To a SyncGroup.
    Sync(SyncResponse),
}

/// What one step produced, for the caller to carry out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Replies to send, each to the request parked (or just made) under
    /// that waiter. Every waiter gets exactly one reply over its lifetime.
    pub replies: Vec<(Waiter, Reply)>,
    /// The group's durable metadata changed: the group became Stable after
    /// the leader's sync, became Empty with a new generation, or a static
    /// member was replaced in a Stable group. Write [`crate::Group::snapshot`]
    /// durably before sending `replies`. If the write fails, send the
    /// waiters an error instead and call [`crate::Group::rebalance`]
    /// (Kafka does the same: the generation is not trusted until stored).
    pub persist: bool,
}

impl Effects {
    /// Adds a successful or failed join reply.
    pub(crate) fn join(&mut self, waiter: Waiter, reply: JoinResponse) {
        self.replies.push((waiter, Reply::Join(reply)));
    }

    /// Adds a join error reply.
    pub(crate) fn join_error(&mut self, waiter: Waiter, member_id: &str, error: GroupError) {
        self.join(waiter, JoinResponse::error(member_id, error));
    }

    /// Adds a sync reply.
    pub(crate) fn sync(&mut self, waiter: Waiter, reply: SyncResponse) {
        self.replies.push((waiter, Reply::Sync(reply)));
    }

    /// Adds a sync error reply.
    pub(crate) fn sync_error(&mut self, waiter: Waiter, error: GroupError) {
        self.sync(waiter, SyncResponse::error(error));
    }
}

impl JoinResponse {
    /// A failed join, as Kafka encodes it.
    pub fn error(member_id: &str, error: GroupError) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

impl SyncResponse {
    /// A failed sync.
    pub fn error(error: GroupError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }
    }
}

/// The group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The group's state.
    pub state: GroupState,
    /// The protocol type; empty when unknown.
    pub protocol_type: String,
    /// The chosen protocol; as in Kafka, only in Stable (empty otherwise).
    pub protocol: String,
    /// The members, by member id.
    pub members: Vec<MemberDescription>,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// The client id it joined with.
    pub client_id: String,
    /// The address it joined from.
    pub client_host: String,
    /// Its metadata for the chosen protocol; as in Kafka, only in Stable.
    pub metadata: Vec<u8>,
    /// Its assignment; as in Kafka, only in Stable.
    pub assignment: Vec<u8>,
}
