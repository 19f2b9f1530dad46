//! Liveness and leaving: heartbeats, LeaveGroup, the passage of time, and
//! the member checks OffsetCommit shares.

use crate::group::Phase;
use crate::{Effects, Group, GroupConfig, GroupError, Ms};

impl Group {
    /// A Heartbeat. Dead → COORDINATOR_NOT_AVAILABLE; the member
    /// ([`Group::validate_member`]); another generation → ILLEGAL_GENERATION;
    /// in the join phase the session restarts and the answer is
    /// REBALANCE_IN_PROGRESS (rejoin); in CompletingRebalance and Stable the
    /// session restarts. Never changes anything but the session deadline.
    pub fn heartbeat(
        &mut self,
        now: Ms,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(member_id, group_instance_id)?;
        if generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let m = self.members.get_mut(member_id).expect("validated");
        m.refresh(now);
        match self.phase {
            Phase::Preparing(_) => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// A LeaveGroup (v3+ batch; a v0-2 request is a batch of one). Each
    /// entry is (member id, instance id); with an instance id the member id
    /// may be empty (Kafka's admin "remove static member"). Per entry:
    /// Dead → COORDINATOR_NOT_AVAILABLE; an instance id that is not
    /// registered → UNKNOWN_MEMBER_ID, or held by another member id →
    /// FENCED_INSTANCE_ID; without one, a member id that is neither a
    /// dynamic member nor a pending id → UNKNOWN_MEMBER_ID. Removed members'
    /// parked requests get UNKNOWN_MEMBER_ID; then the group rebalances (or
    /// the running join phase ends if it now has everyone).
    pub fn leave(
        &mut self,
        now: Ms,
        members: &[(String, Option<String>)],
    ) -> (Vec<Result<(), GroupError>>, Effects) {
        let mut fx = Effects::default();
        if self.phase == Phase::Dead {
            let dead = Err(GroupError::CoordinatorNotAvailable);
            return (vec![dead; members.len()], fx);
        }
        let (mut removed, mut unpended) = (false, false);
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            let result = self.leave_one(member_id, instance.as_deref(), &mut fx);
            removed |= result == Ok(Left::Member);
            unpended |= result == Ok(Left::Pending);
            results.push(result.map(|_| ()));
        }
        match (removed, unpended) {
            (true, _) => self.on_members_removed(now, &mut fx),
            (false, true) => self.try_complete_join(now, &mut fx),
            (false, false) => {}
        }
        self.debug_check();
        (results, fx)
    }

    /// Removes one leaving member or pending id.
    fn leave_one(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        fx: &mut Effects,
    ) -> Result<Left, GroupError> {
        let target = match instance {
            Some(instance) => {
                let holder = self.static_members.get(instance);
                let holder = holder.ok_or(GroupError::UnknownMemberId)?.clone();
                if !member_id.is_empty() && member_id != holder {
                    return Err(GroupError::FencedInstanceId);
                }
                holder
            }
            None if self.pending.remove(member_id).is_some() => return Ok(Left::Pending),
            None => {
                self.validate_member(member_id, None)?;
                member_id.to_string()
            }
        };
        self.remove_member(&target, GroupError::UnknownMemberId, fx);
        Ok(Left::Member)
    }

    /// Time passed: pending member ids and members whose session ran out
    /// are removed (members with a parked join or sync are kept alive, as in
    /// Kafka: the join phase's deadline and the leader's session bound their
    /// wait), which starts a rebalance; a join phase at its deadline ends.
    pub fn tick(&mut self, now: Ms, config: &GroupConfig) -> Effects {
        let mut fx = Effects::default();
        if self.phase == Phase::Dead {
            return fx;
        }
        let pending_before = self.pending.len();
        self.pending.retain(|_, lapse| now < *lapse);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.is_expired(now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, GroupError::UnknownMemberId, &mut fx);
        }
        if !expired.is_empty() {
            self.on_members_removed(now, &mut fx);
        } else if self.pending.len() != pending_before {
            self.try_complete_join(now, &mut fx);
        }
        let delay = crate::ms(config.initial_rebalance_delay_ms);
        self.advance_join(now, delay, &mut fx);
        self.debug_check();
        fx
    }

    /// When [`Group::tick`] next has work: the earliest of the join phase's
    /// deadline, a pending id's lapse and an unparked member's session
    /// deadline. None when nothing is timed (Empty without pending ids, or
    /// Dead).
    pub fn next_deadline(&self) -> Option<Ms> {
        if self.phase == Phase::Dead {
            return None;
        }
        let join = match self.phase {
            Phase::Preparing(phase) => Some(phase.deadline),
            _ => None,
        };
        let sessions = self
            .members
            .values()
            .filter(|m| !m.is_parked())
            .map(|m| m.session_deadline);
        let pending = self.pending.values().copied();
        join.into_iter().chain(sessions).chain(pending).min()
    }

    /// OffsetCommit's group checks. Dead → COORDINATOR_NOT_AVAILABLE; a
    /// negative generation with an empty member id (no instance id) on an
    /// Empty group is a standalone or admin commit: allowed. Otherwise the
    /// member ([`Group::validate_member`]); another generation →
    /// ILLEGAL_GENERATION; CompletingRebalance → REBALANCE_IN_PROGRESS (the
    /// member does not know its new assignment yet). In PreparingRebalance
    /// a member may still commit for its current generation, as in Kafka.
    pub fn validate_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let standalone = generation_id < 0 && member_id.is_empty() && group_instance_id.is_none();
        if standalone && self.phase == Phase::Empty {
            return Ok(());
        }
        self.validate_member(member_id, group_instance_id)?;
        if generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.phase {
            Phase::Completing => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }
}

/// What a leave entry removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// A member.
    Member,
    /// A member id handed out with MEMBER_ID_REQUIRED.
    Pending,
}
