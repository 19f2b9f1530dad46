//! One member of a group: what it joined with, its session, and the
//! requests it has parked.

use crate::{ms, JoinRequest, Ms, Waiter};

/// A member as the coordinator tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Its id, unique in the group.
    pub(crate) member_id: String,
    /// Its `group.instance.id`, if static: the instance id outlives member
    /// ids, so a restarted static consumer takes its old place.
    pub(crate) group_instance_id: Option<String>,
    /// For DescribeGroups.
    pub(crate) client_id: String,
    /// For DescribeGroups.
    pub(crate) client_host: String,
    /// From its latest join; bounds the gap between heartbeats.
    pub(crate) session_timeout_ms: i32,
    /// From its latest join; bounds the join phase.
    pub(crate) rebalance_timeout_ms: i32,
    /// (name, metadata), most preferred first, from its latest join.
    pub(crate) protocols: Vec<(String, Vec<u8>)>,
    /// Its assignment in the current generation, once the leader's sync set
    /// it; None before (cleared whenever the generation moves, so a stale
    /// assignment is never served).
    pub(crate) assignment: Option<Vec<u8>>,
    /// When it is removed unless it heartbeats (or has a request parked).
    pub(crate) session_deadline: Ms,
    /// Its JoinGroup waiting for the join phase to end.
    pub(crate) join_waiter: Option<Waiter>,
    /// Its SyncGroup waiting for the leader's.
    pub(crate) sync_waiter: Option<Waiter>,
}

impl Member {
    /// A member made from its first accepted join.
    pub(crate) fn new(req: &JoinRequest, member_id: String, now: Ms) -> Member {
        let mut member = Member {
            member_id,
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: None,
            session_deadline: now,
            join_waiter: None,
            sync_waiter: None,
        };
        member.refresh(now);
        member
    }

    /// Takes the protocols and timeouts of a later join.
    pub(crate) fn update(&mut self, req: &JoinRequest, now: Ms) {
        self.protocols = req.protocols.clone();
        self.session_timeout_ms = req.session_timeout_ms;
        self.rebalance_timeout_ms = req.rebalance_timeout_ms;
        self.refresh(now);
    }

    /// A sign of life: the session restarts.
    pub(crate) fn refresh(&mut self, now: Ms) {
        self.session_deadline = now.saturating_add(ms(self.session_timeout_ms));
    }

    /// Whether it lists `protocol`.
    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(p, _)| p == protocol)
    }

    /// Its metadata for `protocol`; empty if it does not list it.
    pub(crate) fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(p, _)| p == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether a request of its waits on the group. Kafka keeps such
    /// members alive: the join phase and the leader's sync bound the wait.
    pub(crate) fn is_parked(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    /// Whether its session has run out at `now`.
    pub(crate) fn is_expired(&self, now: Ms) -> bool {
        !self.is_parked() && now >= self.session_deadline
    }
}
