//! JoinGroup: new members (dynamic, pending, static) and known ones.

use crate::group::Phase;
use crate::member::Member;
use crate::{ms, Effects, Group, GroupConfig, GroupError, JoinRequest, Ms, Waiter};

impl Group {
    /// A JoinGroup from `waiter`. Its reply is in the returned [`Effects`]
    /// when it can be answered now (an error, MEMBER_ID_REQUIRED, the
    /// current generation, or a join phase this join completed), else it is
    /// parked and comes out of a later call.
    ///
    /// Order of checks: Dead → COORDINATOR_NOT_AVAILABLE; session timeout
    /// outside the configured range → INVALID_SESSION_TIMEOUT; empty
    /// protocol type or list → INCONSISTENT_GROUP_PROTOCOL; then per kind of
    /// member (see [`Group::validate_member`] for the member checks).
    pub fn join(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: JoinRequest,
        waiter: Waiter,
    ) -> Effects {
        let mut fx = Effects::default();
        if let Err(e) = self.try_join(now, config, &req, waiter, &mut fx) {
            fx.join_error(waiter, &req.member_id, e);
        }
        self.debug_check();
        fx
    }

    /// The join's checks and outcome; an `Err` is the reply.
    fn try_join(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: &JoinRequest,
        waiter: Waiter,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        if self.phase == Phase::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let range = config.min_session_timeout_ms..=config.max_session_timeout_ms;
        if !range.contains(&req.session_timeout_ms) {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match req.member_id.is_empty() {
            true => self.join_new(now, config, req, waiter, fx),
            false => self.join_known(now, config, req, waiter, fx),
        }
    }

    /// A member without an id: a static member taking its instance's place,
    /// or a new member (first given an id if the client asks for it).
    fn join_new(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: &JoinRequest,
        waiter: Waiter,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        let id = &req.new_member_id;
        assert!(
            !id.is_empty() && !self.members.contains_key(id) && !self.pending.contains_key(id),
            "the caller must give a new member a fresh id, not {id:?}"
        );
        let instance = req.group_instance_id.as_ref();
        if let Some(old_id) = instance.and_then(|i| self.static_members.get(i)).cloned() {
            return self.replace_static(now, config, req, &old_id, waiter, fx);
        }
        self.check_can_add(config, req, None)?;
        if instance.is_none() && req.require_known_member_id {
            // KIP-394: the id is remembered, not the member, so a client
            // that never comes back costs only this entry until its
            // session timeout.
            let lapse = now.saturating_add(ms(req.session_timeout_ms));
            self.pending.insert(id.clone(), lapse);
            fx.join_error(waiter, id, GroupError::MemberIdRequired);
            return Ok(());
        }
        self.add_member(now, config, req, id.clone(), waiter, fx);
        Ok(())
    }

    /// Whether a join may add a member: room in the group (GROUP_MAX_SIZE_
    /// REACHED) and a protocol in common with the others (INCONSISTENT_
    /// GROUP_PROTOCOL). `excluding` is a member the joiner replaces.
    fn check_can_add(
        &self,
        config: &GroupConfig,
        req: &JoinRequest,
        excluding: Option<&str>,
    ) -> Result<(), GroupError> {
        if excluding.is_none() && self.members.len() >= config.max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        match self.protocols_compatible(req, excluding) {
            true => Ok(()),
            false => Err(GroupError::InconsistentGroupProtocol),
        }
    }

    /// Kafka's rule: with no other members anything goes; else the protocol
    /// type must be the group's and one of the joiner's protocols must be
    /// supported by every other member. That keeps a protocol common to all
    /// members at every step, so the join phase can always choose one.
    fn protocols_compatible(&self, req: &JoinRequest, excluding: Option<&str>) -> bool {
        let mut others = self
            .members
            .values()
            .filter(|m| Some(m.member_id.as_str()) != excluding)
            .peekable();
        if others.peek().is_none() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        let others: Vec<&Member> = others.collect();
        req.protocols
            .iter()
            .any(|(p, _)| others.iter().all(|m| m.supports(p)))
    }

    /// A member that has an id: a pending one completing KIP-394's round
    /// trip, or a current member rejoining.
    fn join_known(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: &JoinRequest,
        waiter: Waiter,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        let id = &req.member_id;
        if req.group_instance_id.is_none() && self.pending.contains_key(id) {
            self.check_can_add(config, req, None)?;
            self.pending.remove(id);
            self.add_member(now, config, req, id.clone(), waiter, fx);
            return Ok(());
        }
        self.validate_member(id, req.group_instance_id.as_deref())?;
        if !self.protocols_compatible(req, Some(id)) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let unchanged = self.members[id].protocols == req.protocols;
        let is_leader = self.leader.as_ref() == Some(id);
        match self.phase {
            Phase::Preparing(_) => self.park_join(now, config, req, id, waiter, fx),
            // It missed its answer (or is checking in): the same answer,
            // leader included, since its view is still this generation's.
            Phase::Completing if unchanged => self.answer_now(now, id, waiter, fx),
            // A leader rejoining a Stable group rebalances so it can notice
            // metadata changes; a follower with unchanged protocols does not.
            Phase::Stable if unchanged && !is_leader => self.answer_now(now, id, waiter, fx),
            Phase::Completing | Phase::Stable => self.park_join(now, config, req, id, waiter, fx),
            // validate_member found the member, so the group has members.
            Phase::Empty | Phase::Dead => return Err(GroupError::UnknownMemberId),
        }
        Ok(())
    }

    /// Answers `waiter` with the current generation, restarting the
    /// member's session.
    fn answer_now(&mut self, now: Ms, member_id: &str, waiter: Waiter, fx: &mut Effects) {
        let reply = self.current_join_response(member_id);
        if let Some(m) = self.members.get_mut(member_id) {
            m.refresh(now);
        }
        fx.join(waiter, reply);
    }

    /// Takes the member's new protocols and timeouts, parks its join
    /// (a previous parked join of the same member is told to rejoin: only
    /// one can be answered with the member's place) and makes sure a join
    /// phase is running.
    fn park_join(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: &JoinRequest,
        member_id: &str,
        waiter: Waiter,
        fx: &mut Effects,
    ) {
        let m = self.members.get_mut(member_id).expect("a member");
        m.update(req, now);
        if let Some(old) = m.join_waiter.replace(waiter) {
            fx.join_error(old, member_id, GroupError::RebalanceInProgress);
        }
        if self.members.len() == 1 {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.start_or_advance_rebalance(now, config, fx);
    }

    /// Adds a member with its join parked.
    fn add_member(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: &JoinRequest,
        member_id: String,
        waiter: Waiter,
        fx: &mut Effects,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let mut m = Member::new(req, member_id.clone(), now);
        m.join_waiter = Some(waiter);
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), m);
        self.leader.get_or_insert(member_id);
        if let Phase::Preparing(phase) = &mut self.phase {
            if let Some(init) = &mut phase.initial {
                init.new_member_added = true;
            }
        }
        self.start_or_advance_rebalance(now, config, fx);
    }

    /// Enters the join phase unless in it, then ends it if it is done.
    fn start_or_advance_rebalance(&mut self, now: Ms, config: &GroupConfig, fx: &mut Effects) {
        let delay = ms(config.initial_rebalance_delay_ms);
        if matches!(self.phase, Phase::Empty | Phase::Stable | Phase::Completing) {
            self.prepare_rebalance(now, delay, fx);
        }
        self.advance_join(now, delay, fx);
    }

    /// KIP-345: a static member rejoining without a member id (restarted)
    /// takes over its instance under the new id; the old id is fenced and
    /// its parked requests get FENCED_INSTANCE_ID. A Stable group whose
    /// member comes back with the very same protocols does not rebalance:
    /// the member gets the current generation (and its old assignment) at
    /// once, after the caller persists the new member id.
    fn replace_static(
        &mut self,
        now: Ms,
        config: &GroupConfig,
        req: &JoinRequest,
        old_id: &str,
        waiter: Waiter,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        self.check_can_add(config, req, Some(old_id))?;
        let mut m = self
            .members
            .remove(old_id)
            .expect("registered static member");
        if let Some(w) = m.join_waiter.take() {
            fx.join_error(w, old_id, GroupError::FencedInstanceId);
        }
        if let Some(w) = m.sync_waiter.take() {
            fx.sync_error(w, GroupError::FencedInstanceId);
        }
        let unchanged = m.protocols == req.protocols;
        let new_id = req.new_member_id.clone();
        m.member_id = new_id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.update(req, now);
        let instance = req.group_instance_id.clone().expect("static");
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        match self.phase {
            Phase::Stable if unchanged => {
                let mut reply = self.current_join_response(&new_id);
                reply.skip_assignment = self.leader.as_ref() == Some(&new_id);
                fx.join(waiter, reply);
                fx.persist = true;
            }
            _ => self.park_join(now, config, req, &new_id, waiter, fx),
        }
        Ok(())
    }
}
