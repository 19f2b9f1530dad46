//! The group: its state, members and the transitions every request shares
//! (starting a rebalance, ending the join phase, removing a member).

use std::collections::BTreeMap;
use std::fmt;

use crate::member::Member;
use crate::{
    choose_protocol, ms, Description, Effects, GroupError, JoinResponse, JoinedMember,
    MemberDescription, Ms, Waiter,
};

/// A group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (offsets may still be committed).
    Empty,
    /// Join phase: waiting for members to (re)join.
    PreparingRebalance,
    /// Sync phase: waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Unloaded or deleted; every request gets COORDINATOR_NOT_AVAILABLE.
    Dead,
}

impl GroupState {
    /// Kafka's name, as DescribeGroups and ListGroups show it.
    pub fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state with what only the join phase has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Empty,
    Preparing(JoinPhase),
    Completing,
    Stable,
    Dead,
}

/// When and how the join phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JoinPhase {
    /// It ends at this time even if members are missing.
    pub(crate) deadline: Ms,
    /// Set while a group that was Empty waits out KIP-134's initial delay:
    /// then the phase does not end early when everyone has joined.
    pub(crate) initial: Option<InitialDelay>,
}

/// KIP-134: the first join phase waits `delay`, again while new members
/// keep coming, up to the rebalance timeout in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitialDelay {
    /// What is left of the rebalance timeout for further extensions.
    pub(crate) remaining_ms: Ms,
    /// A member joined since the deadline was last set.
    pub(crate) new_member_added: bool,
}

/// One consumer group's coordinator state. See the crate docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub(crate) group_id: String,
    pub(crate) phase: Phase,
    /// Bumped each time a join phase ends; never decreases.
    pub(crate) generation: i32,
    /// Set by the first member to join an Empty group.
    pub(crate) protocol_type: Option<String>,
    /// Chosen when a join phase ends with members.
    pub(crate) protocol: Option<String>,
    /// A member (if any): the one that computes assignments.
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id, for the static members.
    pub(crate) static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED → when they lapse.
    pub(crate) pending: BTreeMap<String, Ms>,
}

impl Group {
    /// A new group: Empty, generation 0.
    pub fn new(group_id: &str) -> Group {
        Group {
            group_id: group_id.to_string(),
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The current state.
    pub fn state(&self) -> GroupState {
        match self.phase {
            Phase::Empty => GroupState::Empty,
            Phase::Preparing(_) => GroupState::PreparingRebalance,
            Phase::Completing => GroupState::CompletingRebalance,
            Phase::Stable => GroupState::Stable,
            Phase::Dead => GroupState::Dead,
        }
    }

    /// The generation id (0 before the first join phase ends).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type (e.g. "consumer"), once a member has joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol chosen for the current generation.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The member ids, sorted.
    pub fn member_ids(&self) -> Vec<&str> {
        self.members.keys().map(String::as_str).collect()
    }

    /// The member's assignment in the current generation, once the leader
    /// has synced (opaque bytes; for "consumer" the broker can decode it and
    /// refuse commits for partitions the member does not own).
    pub fn member_assignment(&self, member_id: &str) -> Option<&[u8]> {
        self.members.get(member_id)?.assignment.as_deref()
    }

    /// Whether DeleteGroups may remove the group: NON_EMPTY_GROUP unless it
    /// is Empty or Dead.
    pub fn can_delete(&self) -> Result<(), GroupError> {
        match self.phase {
            Phase::Empty | Phase::Dead => Ok(()),
            _ => Err(GroupError::NonEmptyGroup),
        }
    }

    /// The group for DescribeGroups. As in Kafka, the protocol, metadata and
    /// assignments are shown only in Stable (mid-rebalance they are stale).
    pub fn describe(&self) -> Description {
        let stable = self.phase == Phase::Stable;
        let protocol = match stable {
            true => self.protocol.clone().unwrap_or_default(),
            false => String::new(),
        };
        let members = self
            .members
            .values()
            .map(|m| {
                let (metadata, assignment) = match stable {
                    true => (
                        m.metadata(&protocol),
                        m.assignment.clone().unwrap_or_default(),
                    ),
                    false => (Vec::new(), Vec::new()),
                };
                MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata,
                    assignment,
                }
            })
            .collect();
        Description {
            state: self.state(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        }
    }

    /// The group is no longer coordinated here (unloaded, or deleted once
    /// [`Group::can_delete`] allowed it): it becomes Dead, and every parked
    /// request is answered NOT_COORDINATOR so the client finds the new
    /// coordinator, as Kafka does on unload.
    pub fn mark_dead(&mut self) -> Effects {
        let mut fx = Effects::default();
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                fx.join_error(w, &m.member_id, GroupError::NotCoordinator);
            }
            if let Some(w) = m.sync_waiter.take() {
                fx.sync_error(w, GroupError::NotCoordinator);
            }
        }
        self.phase = Phase::Dead;
        self.debug_check();
        fx
    }

    /// Starts a rebalance now if the group is Stable or CompletingRebalance
    /// (else nothing): what to do after failing to write a snapshot the
    /// last [`Effects::persist`] asked for, since the members' view is not
    /// durable.
    pub fn rebalance(&mut self, now: Ms) -> Effects {
        let mut fx = Effects::default();
        if matches!(self.phase, Phase::Stable | Phase::Completing) {
            self.prepare_rebalance(now, 0, &mut fx);
            self.try_complete_join(now, &mut fx);
        }
        self.debug_check();
        fx
    }

    /// Kafka's static-aware member check, shared by every request: without
    /// an instance id the member must be a dynamic member; with one, the
    /// instance must be known (else UNKNOWN_MEMBER_ID) and held by this
    /// member id (else FENCED_INSTANCE_ID: a newer incarnation holds it).
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        match group_instance_id {
            None => match self.members.get(member_id) {
                Some(m) if m.group_instance_id.is_none() => Ok(()),
                _ => Err(GroupError::UnknownMemberId),
            },
            Some(instance) => match self.static_members.get(instance) {
                None => Err(GroupError::UnknownMemberId),
                Some(holder) if holder != member_id => Err(GroupError::FencedInstanceId),
                Some(_) => Ok(()),
            },
        }
    }

    /// Enters the join phase. Parked syncs (CompletingRebalance) are told
    /// to rejoin. `initial_delay_ms` applies only when the group was Empty.
    pub(crate) fn prepare_rebalance(&mut self, now: Ms, initial_delay_ms: Ms, fx: &mut Effects) {
        debug_assert!(matches!(
            self.phase,
            Phase::Empty | Phase::Stable | Phase::Completing
        ));
        if self.phase == Phase::Completing {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    fx.sync_error(w, GroupError::RebalanceInProgress);
                }
            }
        }
        let timeout = self.rebalance_timeout_ms();
        let phase = match self.phase {
            Phase::Empty => JoinPhase {
                deadline: now.saturating_add(initial_delay_ms),
                initial: Some(InitialDelay {
                    remaining_ms: timeout.saturating_sub(initial_delay_ms),
                    new_member_added: false,
                }),
            },
            _ => JoinPhase {
                deadline: now.saturating_add(timeout),
                initial: None,
            },
        };
        self.phase = Phase::Preparing(phase);
    }

    /// Ends the join phase if it is due at `now` (taking a KIP-134
    /// extension of `initial_delay_ms` first if new members came), or early
    /// if everyone has joined and no initial delay holds it open.
    pub(crate) fn advance_join(&mut self, now: Ms, initial_delay_ms: Ms, fx: &mut Effects) {
        let Phase::Preparing(phase) = self.phase else {
            return;
        };
        if now < phase.deadline {
            return self.try_complete_join(now, fx);
        }
        if let Some(init) = phase.initial {
            let step = initial_delay_ms.min(init.remaining_ms);
            if init.new_member_added && step > 0 {
                self.phase = Phase::Preparing(JoinPhase {
                    deadline: now.saturating_add(step),
                    initial: Some(InitialDelay {
                        remaining_ms: init.remaining_ms - step,
                        new_member_added: false,
                    }),
                });
                return;
            }
        }
        self.complete_join(now, fx);
    }

    /// Ends the join phase early if every member has a parked join and no
    /// handed-out member id is pending (not during an initial delay).
    pub(crate) fn try_complete_join(&mut self, now: Ms, fx: &mut Effects) {
        let Phase::Preparing(phase) = self.phase else {
            return;
        };
        let everyone =
            self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        if phase.initial.is_none() && everyone {
            self.complete_join(now, fx);
        }
    }

    /// The end of the join phase: drop dynamic members that did not rejoin,
    /// open the next generation and answer every parked join.
    fn complete_join(&mut self, now: Ms, fx: &mut Effects) {
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in &missing {
            self.remove_member(id, GroupError::UnknownMemberId, fx);
        }
        let joined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_some())
            .map(|m| m.member_id.clone())
            .collect();
        if !self.members.is_empty() && joined.is_empty() {
            // Only static members that did not rejoin are left: Kafka waits
            // another rebalance timeout for them to rejoin or expire.
            let wait = self.rebalance_timeout_ms().max(1);
            self.phase = Phase::Preparing(JoinPhase {
                deadline: now.saturating_add(wait),
                initial: None,
            });
            return;
        }
        self.generation += 1;
        for m in self.members.values_mut() {
            m.assignment = None;
        }
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.phase = Phase::Empty;
            fx.persist = true;
            return;
        }
        if !self.leader.as_ref().is_some_and(|l| joined.contains(l)) {
            self.leader = joined.first().cloned();
        }
        self.protocol = self.select_protocol();
        self.phase = Phase::Completing;
        self.answer_joins(now, fx);
    }

    /// The protocol the members would agree on now, leader first.
    fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        let lists: Vec<&[(String, Vec<u8>)]> = leader
            .into_iter()
            .chain(
                self.members
                    .values()
                    .filter(|m| Some(&m.member_id) != self.leader.as_ref()),
            )
            .map(|m| m.protocols.as_slice())
            .collect();
        choose_protocol(&lists)
    }

    /// Replies to every parked join with the new generation; every member's
    /// session restarts (static members that did not rejoin included).
    fn answer_joins(&mut self, now: Ms, fx: &mut Effects) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let reply = self.current_join_response(&id);
            let m = self.members.get_mut(&id).expect("listed above");
            m.refresh(now);
            if let Some(w) = m.join_waiter.take() {
                fx.join(w, reply);
            }
        }
    }

    /// The current generation's join answer for `member_id` (members listed
    /// only for the leader).
    pub(crate) fn current_join_response(&self, member_id: &str) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: match is_leader {
                true => self.joined_members(),
                false => Vec::new(),
            },
            skip_assignment: false,
        }
    }

    /// Every member with its metadata for the chosen protocol.
    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    /// Removes a member; its parked requests get `error`. A new leader is
    /// picked if it led: preferably one with a parked join.
    pub(crate) fn remove_member(&mut self, member_id: &str, error: GroupError, fx: &mut Effects) {
        let Some(m) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &m.group_instance_id {
            self.static_members.remove(instance);
        }
        if let Some(w) = m.join_waiter {
            fx.join_error(w, member_id, error);
        }
        if let Some(w) = m.sync_waiter {
            fx.sync_error(w, error);
        }
        if self.leader.as_deref() == Some(member_id) {
            let rejoined = self.members.values().find(|m| m.join_waiter.is_some());
            let any = rejoined.or_else(|| self.members.values().next());
            self.leader = any.map(|m| m.member_id.clone());
        }
    }

    /// After members were removed (left or expired): a settled group
    /// rebalances; a join phase may now have everyone.
    pub(crate) fn on_members_removed(&mut self, now: Ms, fx: &mut Effects) {
        if matches!(self.phase, Phase::Stable | Phase::Completing) {
            self.prepare_rebalance(now, 0, fx);
        }
        self.try_complete_join(now, fx);
    }

    /// The largest rebalance timeout among the members: the join phase's
    /// length.
    pub(crate) fn rebalance_timeout_ms(&self) -> Ms {
        let timeouts = self.members.values().map(|m| ms(m.rebalance_timeout_ms));
        timeouts.max().unwrap_or(0)
    }

    /// The waiters parked in the group, sorted.
    pub fn parked_waiters(&self) -> Vec<Waiter> {
        let mut waiters: Vec<Waiter> = self
            .members
            .values()
            .flat_map(|m| m.join_waiter.into_iter().chain(m.sync_waiter))
            .collect();
        waiters.sort_unstable();
        waiters
    }

    /// Panics in debug builds if an invariant does not hold.
    pub(crate) fn debug_check(&self) {
        debug_assert_eq!(self.check(), Ok(()), "{self:#?}");
    }

    /// The invariants of the crate docs that one state can show.
    pub(crate) fn check(&self) -> Result<(), String> {
        let fail = |what: &str| {
            Err(format!(
                "{what}: {:?} gen {}",
                self.state(),
                self.generation
            ))
        };
        if self.generation < 0 {
            return fail("negative generation");
        }
        let dead = self.phase == Phase::Dead;
        match &self.leader {
            Some(l) if !self.members.contains_key(l) => return fail("leader not a member"),
            None if !self.members.is_empty() && !dead => return fail("members but no leader"),
            _ => {}
        }
        if self.phase == Phase::Empty && !self.members.is_empty() {
            return fail("Empty with members");
        }
        let preparing = matches!(self.phase, Phase::Preparing(_));
        for m in self.members.values() {
            if m.join_waiter.is_some() && !preparing {
                return fail("parked join outside the join phase");
            }
            if m.sync_waiter.is_some() && self.phase != Phase::Completing {
                return fail("parked sync outside the sync phase");
            }
            if self.phase == Phase::Stable && m.assignment.is_none() {
                return fail("Stable member without assignment");
            }
            let settled = matches!(self.phase, Phase::Stable | Phase::Completing);
            let protocol = self.protocol.as_deref().unwrap_or_default();
            if settled && !m.supports(protocol) {
                return fail("member does not support the protocol");
            }
            if self.pending.contains_key(&m.member_id) {
                return fail("member id also pending");
            }
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance) != Some(&m.member_id) {
                    return fail("static member not registered");
                }
            }
        }
        let statics = self
            .members
            .values()
            .filter(|m| m.group_instance_id.is_some());
        if statics.count() != self.static_members.len() {
            return fail("stale static registration");
        }
        Ok(())
    }
}
