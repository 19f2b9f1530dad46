//! SyncGroup: members wait for the leader's assignment.

use std::collections::BTreeMap;

use crate::group::Phase;
use crate::{Effects, Group, GroupError, Ms, SyncRequest, SyncResponse, Waiter};

impl Group {
    /// A SyncGroup from `waiter`. Checks, in Kafka's order: Dead →
    /// COORDINATOR_NOT_AVAILABLE; the member ([`Group::validate_member`]);
    /// another generation → ILLEGAL_GENERATION; a protocol type or name
    /// given and not the group's → INCONSISTENT_GROUP_PROTOCOL; in the join
    /// phase → REBALANCE_IN_PROGRESS. In Stable the member gets its
    /// assignment at once. In CompletingRebalance the sync parks until the
    /// leader's, which stores the assignments (members it left out get an
    /// empty one), makes the group Stable and answers every parked sync;
    /// a follower's assignments are ignored.
    pub fn sync(&mut self, now: Ms, req: SyncRequest, waiter: Waiter) -> Effects {
        let mut fx = Effects::default();
        if let Err(e) = self.try_sync(now, req, waiter, &mut fx) {
            fx.sync_error(waiter, e);
        }
        self.debug_check();
        fx
    }

    /// The sync's checks and outcome; an `Err` is the reply.
    fn try_sync(
        &mut self,
        now: Ms,
        req: SyncRequest,
        waiter: Waiter,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let differs = |given: &Option<String>, ours: &Option<String>| {
            given.as_ref().is_some_and(|g| Some(g) != ours.as_ref())
        };
        if differs(&req.protocol_type, &self.protocol_type)
            || differs(&req.protocol_name, &self.protocol)
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match self.phase {
            Phase::Empty | Phase::Dead => Err(GroupError::UnknownMemberId),
            Phase::Preparing(_) => Err(GroupError::RebalanceInProgress),
            Phase::Stable => {
                let m = self.members.get_mut(&req.member_id).expect("validated");
                m.refresh(now);
                let assignment = m.assignment.clone().unwrap_or_default();
                fx.sync(waiter, self.sync_response(assignment));
                Ok(())
            }
            Phase::Completing => {
                let m = self.members.get_mut(&req.member_id).expect("validated");
                m.refresh(now);
                if let Some(old) = m.sync_waiter.replace(waiter) {
                    // Only one reply per waiter: the older one is told to
                    // rejoin (its client has retried on another request).
                    fx.sync_error(old, GroupError::RebalanceInProgress);
                }
                if self.leader.as_ref() == Some(&req.member_id) {
                    self.complete_sync(now, req.assignments, fx);
                }
                Ok(())
            }
        }
    }

    /// The leader's assignments arrived: store them, become Stable and
    /// answer every parked sync. The caller persists before replying.
    fn complete_sync(&mut self, now: Ms, assignments: Vec<(String, Vec<u8>)>, fx: &mut Effects) {
        let mut given: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = Some(given.remove(&m.member_id).unwrap_or_default());
        }
        self.phase = Phase::Stable;
        fx.persist = true;
        let parked: Vec<(u64, Vec<u8>)> = self
            .members
            .values_mut()
            .filter_map(|m| {
                let w = m.sync_waiter.take()?;
                m.refresh(now);
                Some((w, m.assignment.clone().unwrap_or_default()))
            })
            .collect();
        for (w, assignment) in parked {
            fx.sync(w, self.sync_response(assignment));
        }
    }

    /// A successful sync reply.
    fn sync_response(&self, assignment: Vec<u8>) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }
}
