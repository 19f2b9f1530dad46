//! Who this member is in the group: member id, generation, whether it must
//! rejoin. Shared between `poll` (which joins) and the background session
//! task (heartbeats and commits, whose answers can end the generation).
//! What each group error means is one pure function, [`reaction`], after
//! Kafka's `AbstractCoordinator`.

use crate::connection::ClientError;
use kafka_protocol::ResponseError;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a group error means for the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing to change.
    None,
    /// A rebalance is under way: rejoin with the same member id. The
    /// generation stays valid until then, so the member can still commit
    /// (say, in `on_partitions_revoked`).
    Rejoin,
    /// The generation is gone (ILLEGAL_GENERATION): rejoin as the same
    /// member; the partitions are lost, not revoked.
    ResetGeneration,
    /// The member is gone (UNKNOWN_MEMBER_ID): rejoin with no member id;
    /// the partitions are lost.
    ResetMember,
    /// Another instance took our `group.instance.id` (FENCED_INSTANCE_ID):
    /// this consumer must stop.
    Fatal,
}

/// Kafka's reaction to a group error code.
pub fn reaction(error: ResponseError) -> Reaction {
    match error {
        ResponseError::RebalanceInProgress => Reaction::Rejoin,
        ResponseError::IllegalGeneration => Reaction::ResetGeneration,
        ResponseError::UnknownMemberId => Reaction::ResetMember,
        ResponseError::FencedInstanceId => Reaction::Fatal,
        _ => Reaction::None,
    }
}

/// Whether `error` means this member no longer owns its partitions: a
/// commit it made was refused because another member (or a newer instance
/// of itself) has taken over. A zombie seeing this must stop processing.
pub fn is_fenced(error: &ClientError) -> bool {
    matches!(
        error.kafka_error(),
        Some(
            ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::FencedInstanceId
        )
    )
}

/// Where the member is in a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// In no generation.
    Unjoined,
    /// JoinGroup or SyncGroup in flight: no heartbeats (Kafka pauses them;
    /// the join itself keeps the member alive).
    Joining,
    /// In a generation: heartbeats flow.
    Stable,
}

/// The identity heartbeats and commits carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberGeneration {
    /// The generation id.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
}

/// The member's state.
#[derive(Debug)]
pub struct Membership {
    /// Empty until the coordinator assigns one.
    pub member_id: String,
    /// The current generation; `None` before the first join and after it
    /// was lost.
    pub generation_id: Option<i32>,
    /// The assignment protocol the coordinator chose.
    pub protocol: Option<String>,
    /// Where the member is.
    pub phase: Phase,
    /// Set when something asked for a rebalance.
    pub rejoin_needed: bool,
    /// The error that ended the last generation, for commits made after.
    pub lost_by: Option<ResponseError>,
    /// A fatal error: every later call returns it.
    pub fatal: Option<ClientError>,
    group_instance_id: Option<String>,
    /// When the latest request of the round in progress (its JoinGroup,
    /// then its SyncGroup) was sent.
    round_sent_at: Option<Instant>,
    /// When the last request the coordinator answered for this member (a
    /// JoinGroup, a SyncGroup, or a heartbeat) was *sent*: the coordinator
    /// heard from the member no earlier, and each of those restarts its
    /// session there, so its session deadline is no earlier than this plus
    /// the session timeout (see [`Membership::expire_session`]).
    alive_since: Option<Instant>,
}

impl Membership {
    /// A member that has not joined yet.
    pub fn new(group_instance_id: Option<String>) -> Membership {
        Membership {
            member_id: String::new(),
            generation_id: None,
            protocol: None,
            phase: Phase::Unjoined,
            rejoin_needed: true,
            lost_by: None,
            fatal: None,
            group_instance_id,
            round_sent_at: None,
            alive_since: None,
        }
    }

    /// The static instance id, if any.
    pub fn group_instance_id(&self) -> Option<&str> {
        self.group_instance_id.as_deref()
    }

    /// What a heartbeat or commit should carry now; `None` outside a
    /// generation.
    pub fn current(&self) -> Option<MemberGeneration> {
        let generation_id = self.generation_id?;
        Some(MemberGeneration {
            generation_id,
            member_id: self.member_id.clone(),
            group_instance_id: self.group_instance_id.clone(),
        })
    }

    /// What heartbeats carry: only while stable.
    pub fn heartbeat_target(&self) -> Option<MemberGeneration> {
        (self.phase == Phase::Stable)
            .then(|| self.current())
            .flatten()
    }

    /// A JoinGroup/SyncGroup round starts: its JoinGroup is sent now.
    pub fn start_join(&mut self) {
        self.phase = Phase::Joining;
        self.round_sent_at = Some(Instant::now());
    }

    /// The round's JoinGroup was answered with a generation: the
    /// coordinator restarted the member's session no earlier than the
    /// JoinGroup was sent. Its SyncGroup is sent now.
    pub fn join_answered(&mut self) {
        self.alive_since = self.alive_since.max(self.round_sent_at);
        self.round_sent_at = Some(Instant::now());
    }

    /// The coordinator answered a heartbeat `sent` at `sent_at` (with no
    /// error, or only asking for a rebalance: either way it heard the
    /// member then).
    pub fn heartbeat_answered(&mut self, sent: &MemberGeneration, sent_at: Instant) {
        if self.current().as_ref() == Some(sent) {
            self.alive_since = self.alive_since.max(Some(sent_at));
        }
    }

    /// Ends the generation if the coordinator may have expired the member
    /// by `now`: no answered request sent within `session_timeout` before
    /// it. The member's partitions are then lost, before the coordinator
    /// can give them to anyone else (as librdkafka does), so two members
    /// never both believe they own one (a member cut off from a failing
    /// coordinator would otherwise go on consuming). Returns whether it
    /// ended the generation.
    pub fn expire_session(&mut self, now: Instant, session_timeout: Duration) -> bool {
        let overdue = self
            .alive_since
            .is_some_and(|since| now >= since + session_timeout);
        if self.phase != Phase::Stable || self.generation_id.is_none() || !overdue {
            return false;
        }
        self.react(ResponseError::IllegalGeneration);
        true
    }

    /// When a member in the middle of a JoinGroup/SyncGroup round must give
    /// it up: `margin` before the coordinator may expire it. While its
    /// JoinGroup is unanswered the member cannot tell whether it reached
    /// the coordinator (which keeps a member with a parked join alive) or
    /// went to one that failed (whose successor expires the member after
    /// the session timeout and gives its partitions away). `None` outside
    /// a generation: then there is nothing to lose.
    pub fn join_deadline(&self, session_timeout: Duration, margin: Duration) -> Option<Instant> {
        self.generation_id?;
        let since = self.alive_since?;
        Some(since + session_timeout.saturating_sub(margin))
    }

    /// Ends the generation of a member in a round that passed its
    /// [`join_deadline`](Self::join_deadline) at `now`: its partitions are
    /// lost. Returns whether it did.
    pub fn expire_join(
        &mut self,
        now: Instant,
        session_timeout: Duration,
        margin: Duration,
    ) -> bool {
        let overdue = self
            .join_deadline(session_timeout, margin)
            .is_some_and(|deadline| now >= deadline);
        if overdue {
            self.react(ResponseError::IllegalGeneration);
        }
        overdue
    }

    /// A JoinGroup/SyncGroup round ended without a new generation: back to
    /// heartbeating the old one if it still stands.
    pub fn abort_join(&mut self) {
        self.phase = if self.generation_id.is_some() {
            Phase::Stable
        } else {
            Phase::Unjoined
        };
    }

    /// SyncGroup succeeded: the member is in `generation_id`.
    pub fn joined(&mut self, generation_id: i32, member_id: String, protocol: Option<String>) {
        self.generation_id = Some(generation_id);
        self.member_id = member_id;
        self.protocol = protocol;
        self.phase = Phase::Stable;
        self.rejoin_needed = false;
        self.lost_by = None;
        // The coordinator restarted the session when the SyncGroup reached
        // it, no earlier than it was sent.
        self.alive_since = self.round_sent_at.take().or(Some(Instant::now()));
    }

    /// Applies the answer to a request sent as `sent`. Answers about an
    /// older generation or member are ignored: the member has moved on.
    /// Returns the reaction applied.
    pub fn on_error(&mut self, error: ResponseError, sent: &MemberGeneration) -> Reaction {
        if self.generation_id != Some(sent.generation_id) || self.member_id != sent.member_id {
            return Reaction::None;
        }
        self.react(error)
    }

    /// Applies `error`'s reaction unconditionally (join and sync answers,
    /// which are about the round in progress).
    pub fn react(&mut self, error: ResponseError) -> Reaction {
        let reaction = reaction(error);
        match reaction {
            Reaction::None => {}
            Reaction::Rejoin => self.rejoin_needed = true,
            Reaction::ResetGeneration | Reaction::ResetMember => {
                self.generation_id = None;
                self.protocol = None;
                self.phase = Phase::Unjoined;
                self.rejoin_needed = true;
                self.lost_by = Some(error);
                if reaction == Reaction::ResetMember {
                    self.member_id.clear();
                }
            }
            Reaction::Fatal => {
                self.fatal = Some(ClientError::Kafka {
                    context: format!(
                        "group.instance.id {:?} was taken by another consumer",
                        self.group_instance_id.as_deref().unwrap_or("")
                    ),
                    error,
                });
                self.generation_id = None;
                self.phase = Phase::Unjoined;
                self.lost_by = Some(error);
            }
        }
        reaction
    }

    /// The error a commit gets outside a generation.
    pub fn not_in_generation(&self, group_id: &str) -> ClientError {
        if let Some(fatal) = &self.fatal {
            return fatal.clone();
        }
        ClientError::Kafka {
            context: format!("commit to group {group_id}: not in a generation (rejoining)"),
            error: self.lost_by.unwrap_or(ResponseError::UnknownMemberId),
        }
    }
}

/// The membership behind a lock, and a bell `poll` waits on so a rebalance
/// noticed by a heartbeat wakes an idle poll at once.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<Membership>,
    /// Rung when a heartbeat or commit answer asks for a rejoin.
    pub wake: Notify,
}

impl Shared {
    /// Shared state for a new member.
    pub fn new(group_instance_id: Option<String>) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(Membership::new(group_instance_id)),
            wake: Notify::new(),
        })
    }

    /// Locks the state. Never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, Membership> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Membership::expire_session`], waking `poll` if it ended the
    /// generation.
    pub fn expire_session(&self, now: Instant, session_timeout: Duration) -> bool {
        let expired = self.lock().expire_session(now, session_timeout);
        if expired {
            tracing::warn!(?session_timeout, "no answer from the coordinator within the session timeout: partitions lost, rejoining");
            self.wake.notify_one();
        }
        expired
    }

    /// [`Membership::expire_join`], logged.
    pub fn expire_join(&self, now: Instant, session_timeout: Duration, margin: Duration) -> bool {
        let expired = self.lock().expire_join(now, session_timeout, margin);
        if expired {
            tracing::warn!(
                ?session_timeout,
                "group round unanswered as the session runs out: partitions lost, joining again"
            );
        }
        expired
    }

    /// Applies an answer's error to the membership and wakes `poll` if it
    /// must act.
    pub fn on_error(&self, error: ResponseError, sent: &MemberGeneration) -> Reaction {
        let reaction = self.lock().on_error(error, sent);
        if reaction != Reaction::None {
            self.wake.notify_one();
        }
        reaction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stable(generation: i32) -> Membership {
        let mut m = Membership::new(Some("i1".into()));
        m.start_join();
        m.joined(generation, "m1".into(), Some("range".into()));
        m
    }

    /// Each error from a heartbeat or commit, applied to a stable member.
    #[test]
    fn reactions_table() {
        use ResponseError as E;
        // (error, reaction, generation after, member id after, heartbeats
        // continue, rejoin needed)
        let cases = [
            (
                E::RebalanceInProgress,
                Reaction::Rejoin,
                Some(3),
                "m1",
                true,
                true,
            ),
            (
                E::IllegalGeneration,
                Reaction::ResetGeneration,
                None,
                "m1",
                false,
                true,
            ),
            (
                E::UnknownMemberId,
                Reaction::ResetMember,
                None,
                "",
                false,
                true,
            ),
            (
                E::FencedInstanceId,
                Reaction::Fatal,
                None,
                "m1",
                false,
                false,
            ),
            (
                E::NotCoordinator,
                Reaction::None,
                Some(3),
                "m1",
                true,
                false,
            ),
            (
                E::OffsetMetadataTooLarge,
                Reaction::None,
                Some(3),
                "m1",
                true,
                false,
            ),
        ];
        for (error, want, generation, member, heartbeats, rejoin) in cases {
            let mut m = stable(3);
            let sent = m.current().unwrap();
            assert_eq!(m.on_error(error, &sent), want, "{error:?}");
            assert_eq!(m.generation_id, generation, "{error:?}");
            assert_eq!(m.member_id, member, "{error:?}");
            assert_eq!(m.heartbeat_target().is_some(), heartbeats, "{error:?}");
            assert_eq!(m.rejoin_needed, rejoin, "{error:?}");
            assert_eq!(m.fatal.is_some(), want == Reaction::Fatal, "{error:?}");
        }
    }

    /// An answer about generation 3 arriving after the member moved to 4
    /// changes nothing.
    #[test]
    fn stale_answers_are_ignored() {
        let mut m = stable(3);
        let old = m.current().unwrap();
        m.start_join();
        m.joined(4, "m1".into(), None);
        assert_eq!(
            m.on_error(ResponseError::IllegalGeneration, &old),
            Reaction::None
        );
        assert_eq!(m.generation_id, Some(4));
    }

    /// No heartbeats before the first join or while joining.
    #[test]
    fn heartbeats_only_when_stable() {
        let mut m = Membership::new(None);
        assert!(m.heartbeat_target().is_none());
        m.start_join();
        assert!(m.heartbeat_target().is_none());
        m.joined(1, "m".into(), None);
        assert_eq!(m.heartbeat_target().unwrap().generation_id, 1);
    }

    #[test]
    fn a_member_unheard_for_its_session_timeout_loses_its_generation() {
        let session = Duration::from_millis(3000);
        let mut m = stable(3);
        let joined_at = m.alive_since.unwrap();
        let sent = m.current().unwrap();
        let at = |ms| joined_at + Duration::from_millis(ms);
        m.heartbeat_answered(&sent, at(1000));
        assert!(
            !m.expire_session(at(3999), session),
            "heard at 1000: alive until 4000"
        );
        // An answer about another generation proves nothing.
        let other = MemberGeneration {
            generation_id: 2,
            ..sent.clone()
        };
        m.heartbeat_answered(&other, at(3500));
        // An older answer arriving late does not move the deadline back.
        m.heartbeat_answered(&sent, at(500));
        assert!(m.expire_session(at(4000), session));
        assert_eq!(m.generation_id, None);
        assert!(m.rejoin_needed);
        assert!(is_fenced(&m.not_in_generation("g")));
        assert!(!m.expire_session(at(9000), session), "once only");
    }

    /// The heartbeat task leaves a joining member alone: the round's own
    /// deadline is for `poll` to act on, which must report the partitions
    /// lost before joining again.
    #[test]
    fn the_heartbeat_check_leaves_a_joining_member_to_its_round() {
        let mut m = stable(3);
        let since = m.alive_since.unwrap();
        m.start_join();
        assert!(!m.expire_session(since + Duration::from_secs(60), Duration::from_secs(1)));
        assert_eq!(m.generation_id, Some(3));
    }

    /// A member in a round gives it up `margin` before the coordinator may
    /// expire it; an answered JoinGroup moves that deadline on.
    #[test]
    fn join_deadline_table() {
        let (session, margin) = (Duration::from_millis(3000), Duration::from_millis(600));
        // (JoinGroup answered, ms after the last answered heartbeat was
        // sent, expires); the JoinGroup was sent 1000 ms after it.
        let cases = [
            (false, 0, false),
            (false, 2399, false),
            (false, 2400, true),
            (false, 9000, true),
            (true, 2400, false),
            (true, 3399, false),
            (true, 3400, true),
        ];
        for (answered, after, expires) in cases {
            let mut m = stable(3);
            let heard = Instant::now();
            m.alive_since = Some(heard);
            m.start_join();
            m.round_sent_at = Some(heard + Duration::from_millis(1000));
            if answered {
                m.join_answered();
            }
            let now = heard + Duration::from_millis(after);
            let case = format!("answered {answered}, {after} ms");
            assert_eq!(m.expire_join(now, session, margin), expires, "{case}");
            assert_eq!(m.generation_id.is_none(), expires, "{case}");
            assert_eq!(m.member_id, "m1", "{case}: still the same member");
            if expires {
                assert_eq!(m.phase, Phase::Unjoined, "{case}");
                assert!(m.rejoin_needed, "{case}");
                assert!(is_fenced(&m.not_in_generation("g")), "{case}");
            }
        }
    }

    #[test]
    fn a_member_without_a_generation_has_no_join_deadline() {
        let mut m = Membership::new(None);
        m.start_join();
        assert_eq!(
            m.join_deadline(Duration::from_secs(3), Duration::ZERO),
            None
        );
        assert!(!m.expire_join(
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(3),
            Duration::ZERO
        ));
    }

    /// After a round the session counts from when its SyncGroup was sent,
    /// not its JoinGroup: a join phase longer than the session timeout
    /// must not end the generation it just formed.
    #[test]
    fn a_new_generation_counts_its_session_from_the_sync() {
        let mut m = stable(3);
        m.start_join();
        let join_sent = m.round_sent_at.unwrap();
        m.round_sent_at = Some(join_sent - Duration::from_secs(10));
        m.join_answered();
        let sync_sent = m.round_sent_at.unwrap();
        assert!(sync_sent >= join_sent);
        m.joined(4, "m1".into(), None);
        assert_eq!(m.alive_since, Some(sync_sent));
        assert!(!m.expire_session(
            sync_sent + Duration::from_millis(2999),
            Duration::from_secs(3)
        ));
    }

    #[test]
    fn commits_after_losing_the_generation_carry_the_reason() {
        let mut m = stable(3);
        let sent = m.current().unwrap();
        m.on_error(ResponseError::UnknownMemberId, &sent);
        let e = m.not_in_generation("g");
        assert!(is_fenced(&e), "{e}");
        assert_eq!(e.kafka_error(), Some(ResponseError::UnknownMemberId));
    }
}
