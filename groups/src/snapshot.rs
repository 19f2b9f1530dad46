//! The group's durable form: what a new coordinator loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::group::Phase;
use crate::member::Member;
use crate::{Group, Ms};

/// What the broker writes when [`crate::Effects::persist`] is set (the
/// group is then Stable or Empty), like Kafka's GroupMetadata record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// E.g. "consumer".
    pub protocol_type: Option<String>,
    /// The chosen protocol; None when Empty.
    pub protocol: Option<String>,
    /// The generation.
    pub generation: i32,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The members, by member id.
    pub members: Vec<MemberSnapshot>,
}

/// One member in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Its client id.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Its metadata for the chosen protocol (the only protocol a loaded
    /// member is known to support, as in Kafka).
    pub metadata: Vec<u8>,
    /// Its assignment.
    pub assignment: Vec<u8>,
}

impl Group {
    /// The durable form of the group. Meant to be taken when an
    /// [`crate::Effects`] asks to persist; taken mid-rebalance it records
    /// members whose assignments are not yet set (as empty).
    pub fn snapshot(&self) -> Snapshot {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = self
            .members
            .values()
            .map(|m| MemberSnapshot {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                metadata: m.metadata(&protocol),
                assignment: m.assignment.clone().unwrap_or_default(),
            })
            .collect();
        Snapshot {
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members,
        }
    }

    /// A new coordinator loading the group at `now`: Stable if it has
    /// members (each gets a full session timeout from `now` to show up),
    /// Empty otherwise. Defensive about what it reads: a snapshot with
    /// members but no protocol loads as Empty; duplicate member or instance
    /// ids keep the first; a leader that is not a member is replaced.
    pub fn restore(group_id: &str, snapshot: Snapshot, now: Ms) -> Group {
        let mut group = Group::new(group_id);
        group.generation = snapshot.generation.max(0);
        group.protocol_type = snapshot.protocol_type;
        let Some(protocol) = snapshot.protocol else {
            return group;
        };
        let mut members = BTreeMap::new();
        for s in snapshot.members {
            let taken = s
                .group_instance_id
                .as_ref()
                .map(|i| group.static_members.contains_key(i));
            if members.contains_key(&s.member_id) || taken == Some(true) {
                continue;
            }
            if let Some(instance) = &s.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), s.member_id.clone());
            }
            members.insert(s.member_id.clone(), restored_member(s, &protocol, now));
        }
        if members.is_empty() {
            group.static_members.clear();
            return group;
        }
        group.leader = match snapshot.leader {
            Some(l) if members.contains_key(&l) => Some(l),
            _ => members.keys().next().cloned(),
        };
        group.members = members;
        group.protocol = Some(protocol);
        group.phase = Phase::Stable;
        group.debug_check();
        group
    }
}

/// A loaded member: it supports just the chosen protocol, holds its
/// assignment and has a fresh session.
fn restored_member(s: MemberSnapshot, protocol: &str, now: Ms) -> Member {
    let mut m = Member {
        member_id: s.member_id,
        group_instance_id: s.group_instance_id,
        client_id: s.client_id,
        client_host: s.client_host,
        session_timeout_ms: s.session_timeout_ms,
        rebalance_timeout_ms: s.rebalance_timeout_ms,
        protocols: vec![(protocol.to_string(), s.metadata)],
        assignment: Some(s.assignment),
        session_deadline: now,
        join_waiter: None,
        sync_waiter: None,
    };
    m.refresh(now);
    m
}
