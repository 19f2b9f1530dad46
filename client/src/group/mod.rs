//! The group consumer: Kafka's classic consumer-group protocol on top of
//! [`Consumer`]. Members subscribe to topics; the coordinator (the leader
//! of the group's `__consumer_offsets` partition) runs rebalances; the
//! member it elects leader runs the assignor; each member fetches its
//! partitions from the group's committed offsets and commits its progress
//! under its generation, so a member that lost its partitions cannot
//! overwrite its successor's commits.
//!
//! ```no_run
//! # async fn demo() -> Result<(), client::ClientError> {
//! use client::group::{GroupConsumer, GroupConsumerConfig};
//! let mut consumer =
//!     GroupConsumer::new(GroupConsumerConfig::new("127.0.0.1:9092", "workers")).await?;
//! consumer.subscribe(&["jobs"]);
//! loop {
//!     for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
//!         println!("{}-{} @{}", record.topic, record.partition, record.offset);
//!     }
//!     consumer.commit_sync().await?;
//! }
//! # }
//! ```
//!
//! Modules: [`protocol`] (subscription and assignment bytes),
//! [`assignor`] and [`sticky`] (pure assignors), [`membership`] (member id,
//! generation, error reactions), [`coordinator`] (finding the coordinator,
//! retries), [`rebalance`] (JoinGroup/SyncGroup), [`commit`]
//! (OffsetCommit/OffsetFetch), [`session`] (background heartbeats and
//! commits).

pub mod assignor;
pub mod commit;
pub mod coordinator;
pub mod membership;
pub mod protocol;
pub mod rebalance;
pub mod session;
pub mod sticky;

#[cfg(test)]
mod assignor_tests;

use crate::cluster::Cluster;
use crate::connection::ClientError;
use crate::consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
use assignor::{Assignor, RebalanceProtocol};
use commit::{fetch_request, fetch_result, CommitOffset, OFFSET_FETCH_VERSION};
use coordinator::CoordinatorLink;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::LeaveGroupRequest;
use kafka_protocol::protocol::StrBytes;
use membership::Shared;
use protocol::Subscription;
use rebalance::{
    diff, join_group_within_session, rebalance_protocol, JoinOutcome, JoinParams, Joined,
};
use session::{CommitReply, Session};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

pub use assignor::{Range, RoundRobin};
pub use membership::is_fenced;
pub use sticky::CooperativeSticky;

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// LeaveGroup version (v3+ names members with their instance ids).
const LEAVE_GROUP_VERSION: i16 = 5;
/// Rebalance rounds one poll makes before returning (the next poll goes on).
const JOIN_ROUNDS_MAX: u32 = 10;

/// Group consumer settings, named after Kafka's.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id`: a static member keeps its partitions across a
    /// restart within the session timeout, and fences any older process
    /// using the same id.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`: how long without heartbeats before the
    /// coordinator drops the member.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms`: how long the coordinator waits for members
    /// to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `partition.assignment.strategy`, most preferred first.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// `auto.offset.reset`: where a partition without a committed offset
    /// starts.
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`: commit positions every `auto_commit_interval`
    /// from `poll` and before partitions are revoked.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
}

impl GroupConsumerConfig {
    /// Kafka's defaults (45 s session, 5 min rebalance timeout, 3 s
    /// heartbeats), except: `cooperative-sticky` alone as the assignor
    /// (members keep consuming what they keep across rebalances; list
    /// `range` too to share a group with eager-only clients), reset to
    /// earliest (as [`ConsumerConfig`] does), and no auto commit.
    pub fn new(bootstrap: &str, group_id: &str) -> GroupConsumerConfig {
        GroupConsumerConfig {
            bootstrap: bootstrap.to_string(),
            group_id: group_id.to_string(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Arc::new(CooperativeSticky)],
            auto_offset_reset: OffsetReset::Earliest,
            enable_auto_commit: false,
            auto_commit_interval: Duration::from_secs(5),
            fetch_max_wait: Duration::from_millis(500),
        }
    }

    fn check(&self) -> Result<(), ClientError> {
        let names: BTreeSet<&str> = self.assignors.iter().map(|a| a.name()).collect();
        let problem = if self.group_id.is_empty() {
            Some("group id is empty")
        } else if self.assignors.is_empty() || names.len() != self.assignors.len() {
            Some("assignors must be a non-empty list of distinct names")
        } else if self.heartbeat_interval >= self.session_timeout {
            Some("heartbeat interval must be below the session timeout")
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(ClientError::Protocol(p.to_string())))
    }
}

/// Rebalance callbacks, invoked from `poll` (and `close`) so the
/// application can commit what it processed before partitions go.
pub trait RebalanceListener: Send {
    /// `partitions` are being taken away; the generation still stands, so
    /// commits made here are accepted.
    fn on_partitions_revoked(
        &mut self,
        consumer: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) -> impl Future<Output = ()> + Send {
        let _ = (consumer, partitions);
        async {}
    }

    /// `partitions` were added to this member's assignment. Seeking here
    /// overrides the committed offsets.
    fn on_partitions_assigned(
        &mut self,
        consumer: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) -> impl Future<Output = ()> + Send {
        let _ = (consumer, partitions);
        async {}
    }

    /// The member lost its generation (it was dropped from the group, or
    /// fenced): `partitions` may already be owned by another member, and
    /// commits would be refused. By default, the same as revoked.
    fn on_partitions_lost(
        &mut self,
        consumer: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) -> impl Future<Output = ()> + Send {
        self.on_partitions_revoked(consumer, partitions)
    }
}

/// A listener that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoListener;

impl RebalanceListener for NoListener {}

/// Resolves when an asynchronous commit is answered; dropping it is fine.
#[derive(Debug)]
pub struct CommitHandle(Result<CommitReply, Option<ClientError>>);

impl Future for CommitHandle {
    type Output = Result<(), ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Ok(reply) => Pin::new(reply).poll(cx).map(|r| {
                r.unwrap_or_else(|_| Err(ClientError::Protocol("group session stopped".into())))
            }),
            Err(e) => Poll::Ready(Err(e.take().unwrap_or_else(|| {
                ClientError::Protocol("commit handle polled after completion".into())
            }))),
        }
    }
}

/// A member of a consumer group.
#[derive(Debug)]
pub struct GroupConsumer {
    config: GroupConsumerConfig,
    /// Fetching and positions, for the assigned partitions only.
    consumer: Consumer,
    /// Metadata for the leader's assignment.
    cluster: Cluster,
    /// The coordinator, for JoinGroup, SyncGroup, OffsetFetch, LeaveGroup.
    link: CoordinatorLink,
    shared: Arc<Shared>,
    /// Heartbeats and commits, on their own connection.
    session: Session,
    protocol: RebalanceProtocol,
    /// Subscribed topics, sorted.
    topics: Vec<String>,
    /// This member's partitions, sorted.
    owned: Vec<TopicPartition>,
    /// The generation `owned` was assigned in.
    owned_generation: Option<i32>,
    /// Assigned partitions whose committed offset is still to be read.
    unrestored: BTreeSet<TopicPartition>,
    last_auto_commit: Instant,
}

impl GroupConsumer {
    /// Connects to the cluster; nothing is joined before the first poll.
    pub async fn new(config: GroupConsumerConfig) -> Result<GroupConsumer, ClientError> {
        config.check()?;
        let mut fetch = ConsumerConfig::new(&config.bootstrap);
        fetch.reset = config.auto_offset_reset;
        fetch.max_wait = config.fetch_max_wait;
        let consumer = Consumer::new(fetch).await?;
        let shared = Shared::new(config.group_instance_id.clone());
        let session = Session::start(
            CoordinatorLink::new(&config.bootstrap, &config.group_id),
            shared.clone(),
            config.heartbeat_interval,
            config.session_timeout,
        );
        Ok(GroupConsumer {
            cluster: Cluster::new(&config.bootstrap),
            link: CoordinatorLink::new(&config.bootstrap, &config.group_id),
            protocol: rebalance_protocol(&config.assignors),
            consumer,
            shared,
            session,
            topics: Vec::new(),
            owned: Vec::new(),
            owned_generation: None,
            unrestored: BTreeSet::new(),
            last_auto_commit: Instant::now(),
            config,
        })
    }

    /// Replaces the subscription; a change makes the next poll rejoin.
    pub fn subscribe(&mut self, topics: &[&str]) {
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        if topics != self.topics {
            self.topics = topics;
            self.shared.lock().rejoin_needed = true;
        }
    }

    /// The subscribed topics.
    pub fn subscription(&self) -> &[String] {
        &self.topics
    }

    /// The partitions assigned to this member.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.owned
    }

    /// The current generation id and member id; `None` outside a
    /// generation (before the first join, or after losing it).
    pub fn generation(&self) -> Option<(i32, String)> {
        let m = self.shared.lock();
        m.generation_id.map(|g| (g, m.member_id.clone()))
    }

    /// The rebalance protocol the configured assignors allow.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.protocol
    }

    /// The next offset to consume on an assigned partition, if known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.consumer.position(topic, partition)
    }

    /// Sets the next offset to consume on an assigned partition (overrides
    /// the committed offset when called from `on_partitions_assigned`).
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        self.unrestored.remove(&(topic.to_string(), partition));
        self.consumer.seek(topic, partition, offset);
    }

    /// [`poll_with`](Self::poll_with) without callbacks.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.poll_with(&mut NoListener, timeout).await
    }

    /// Rejoins the group if needed (calling `listener`), then returns what
    /// the assigned partitions have, waiting up to `timeout`. A poll that
    /// rebalances can take up to the rebalance timeout: JoinGroup waits
    /// for every member.
    pub async fn poll_with<L: RebalanceListener>(
        &mut self,
        listener: &mut L,
        timeout: Duration,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        self.check_fatal()?;
        if self.topics.is_empty() {
            return Err(ClientError::Protocol("poll before subscribe".into()));
        }
        self.maybe_auto_commit();
        self.expire_session();
        self.ensure_active(listener).await?;
        self.restore_positions().await?;
        if self.owned.is_empty() {
            self.idle_until(deadline).await;
            return Ok(Vec::new());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let records = self.consumer.poll(left).await?;
        self.expire_session();
        if self.shared.lock().generation_id.is_none() {
            // The generation ended during the fetch (the session ran out,
            // here or in the heartbeat task, or the coordinator said so):
            // these partitions may be someone else's already, so their
            // records are not handed out (the next owner reads them from
            // the committed offset), and the loss is reported now rather
            // than at the next poll.
            self.prepare_join(listener, false).await;
            return Ok(Vec::new());
        }
        Ok(records)
    }

    /// Ends the generation if the coordinator may have expired this member
    /// ([`membership::Membership::expire_session`]).
    fn expire_session(&self) -> bool {
        self.shared
            .expire_session(std::time::Instant::now(), self.config.session_timeout)
    }

    /// Commits the position of every assigned partition, under the current
    /// generation, and waits for the answer. ILLEGAL_GENERATION,
    /// UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID mean another member owns
    /// the partitions now ([`is_fenced`]); they and REBALANCE_IN_PROGRESS
    /// make the next poll rejoin. Coordinator moves are retried.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        let offsets = self.current_offsets();
        let handle = self.commit(offsets)?;
        self.await_commit(handle).await
    }

    /// Waits for a commit's answer, but not past the end of the generation:
    /// if the session expires meanwhile, the commit's fate no longer
    /// matters to this member, whose next poll must report the partitions
    /// lost before the coordinator hands them to another member.
    async fn await_commit(&self, handle: CommitHandle) -> Result<(), ClientError> {
        let mut handle = std::pin::pin!(handle);
        loop {
            tokio::select! {
                answer = &mut handle => return answer,
                _ = self.shared.wake.notified() => {
                    let m = self.shared.lock();
                    if m.generation_id.is_none() {
                        return Err(m.not_in_generation(&self.config.group_id));
                    }
                }
            }
        }
    }

    /// Like [`commit_sync`](Self::commit_sync) without waiting: commits are
    /// sent in the order they were made; await the handle for the answer.
    pub fn commit_async(&mut self) -> CommitHandle {
        let offsets = self.current_offsets();
        match self.commit(offsets) {
            Ok(handle) => handle,
            Err(e) => CommitHandle(Err(Some(e))),
        }
    }

    /// Commits `(topic, partition, next offset to consume)` triples.
    pub async fn commit_offsets(
        &mut self,
        offsets: &[(&str, i32, i64)],
    ) -> Result<(), ClientError> {
        let offsets = offsets
            .iter()
            .map(|&(topic, partition, offset)| CommitOffset {
                topic: topic.to_string(),
                partition,
                offset,
                leader_epoch: None,
            })
            .collect();
        let handle = self.commit(offsets)?;
        self.await_commit(handle).await
    }

    /// Leaves the group (LeaveGroup), so its partitions move at once rather
    /// than after the session timeout. Static members leave too; to keep a
    /// static member's partitions across a restart, drop the consumer
    /// instead.
    pub async fn close(self) -> Result<(), ClientError> {
        self.close_with(&mut NoListener).await
    }

    /// [`close`](Self::close), calling `on_partitions_revoked` first.
    pub async fn close_with<L: RebalanceListener>(
        mut self,
        listener: &mut L,
    ) -> Result<(), ClientError> {
        if self.shared.lock().generation_id.is_some() && !self.owned.is_empty() {
            self.auto_commit_before_revoke().await;
            let owned = self.owned.clone();
            listener.on_partitions_revoked(&mut self, &owned).await;
        }
        self.leave_group().await
    }

    fn check_fatal(&self) -> Result<(), ClientError> {
        match &self.shared.lock().fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn current_offsets(&self) -> Vec<CommitOffset> {
        self.owned
            .iter()
            .filter_map(|(topic, partition)| {
                let offset = self.consumer.position(topic, *partition)?;
                Some(CommitOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                    leader_epoch: self.consumer.position_leader_epoch(topic, *partition),
                })
            })
            .collect()
    }

    /// Queues a commit with the current generation.
    fn commit(&mut self, offsets: Vec<CommitOffset>) -> Result<CommitHandle, ClientError> {
        self.check_fatal()?;
        if offsets.is_empty() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Ok(()));
            return Ok(CommitHandle(Ok(rx)));
        }
        let member = {
            let m = self.shared.lock();
            m.current()
                .ok_or_else(|| m.not_in_generation(&self.config.group_id))?
        };
        Ok(CommitHandle(Ok(self.session.commit(offsets, member)?)))
    }

    fn maybe_auto_commit(&mut self) {
        if self.config.enable_auto_commit
            && self.last_auto_commit.elapsed() >= self.config.auto_commit_interval
        {
            self.last_auto_commit = Instant::now();
            // Fire and forget: a failure is logged by the next one's outcome.
            drop(self.commit_async());
        }
    }

    async fn auto_commit_before_revoke(&mut self) {
        if self.config.enable_auto_commit {
            if let Err(e) = self.commit_sync().await {
                tracing::warn!(error = %e, "auto commit before revocation failed");
            }
        }
    }

    /// Sleeps until `deadline` unless a heartbeat asks for a rejoin first.
    async fn idle_until(&self, deadline: Instant) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = self.shared.wake.notified() => {}
        }
    }

    /// Joins (again) while the membership asks for it.
    async fn ensure_active<L: RebalanceListener>(
        &mut self,
        listener: &mut L,
    ) -> Result<(), ClientError> {
        for _ in 0..JOIN_ROUNDS_MAX {
            let (needed, in_generation) = {
                let m = self.shared.lock();
                (
                    m.rejoin_needed || m.generation_id.is_none(),
                    m.generation_id.is_some(),
                )
            };
            if !needed {
                return Ok(());
            }
            self.prepare_join(listener, in_generation).await;
            let params = JoinParams {
                group_id: &self.config.group_id,
                session_timeout: self.config.session_timeout,
                rebalance_timeout: self.config.rebalance_timeout,
                assignors: &self.config.assignors,
                subscription: Subscription {
                    topics: self.topics.clone(),
                    owned_partitions: self.owned.clone(),
                    generation: self.owned_generation,
                    ..Subscription::default()
                },
            };
            let outcome = join_group_within_session(
                &mut self.link,
                &mut self.cluster,
                &self.shared,
                &params,
                self.config.heartbeat_interval,
            )
            .await?;
            if let JoinOutcome::Joined(joined) = outcome {
                self.complete_join(listener, joined).await;
            }
            self.check_fatal()?;
        }
        Ok(())
    }

    /// Before JoinGroup: partitions of a lost generation are lost; an eager
    /// member revokes everything; a cooperative one only what it no longer
    /// subscribes to.
    async fn prepare_join<L: RebalanceListener>(&mut self, listener: &mut L, in_generation: bool) {
        if self.owned.is_empty() {
            return;
        }
        if !in_generation {
            let lost = std::mem::take(&mut self.owned);
            tracing::info!(?lost, "generation lost: partitions lost");
            listener.on_partitions_lost(self, &lost).await;
            self.set_owned(Vec::new(), None);
            return;
        }
        self.auto_commit_before_revoke().await;
        let keep: Vec<TopicPartition> = match self.protocol {
            RebalanceProtocol::Eager => Vec::new(),
            RebalanceProtocol::Cooperative => self
                .owned
                .iter()
                .filter(|(t, _)| self.topics.contains(t))
                .cloned()
                .collect(),
        };
        let (revoked, _) = diff(&self.owned, &keep);
        if !revoked.is_empty() {
            listener.on_partitions_revoked(self, &revoked).await;
            let generation = self.owned_generation;
            self.set_owned(keep, generation);
        }
    }

    /// After SyncGroup: revoke what the new assignment took away (and
    /// rejoin, so it can reach its new owner), then adopt the assignment.
    async fn complete_join<L: RebalanceListener>(&mut self, listener: &mut L, joined: Joined) {
        let new = joined.assignment.partitions;
        let (revoked, added) = diff(&self.owned, &new);
        tracing::info!(
            generation = joined.generation_id,
            member = joined.member_id,
            protocol = joined.protocol,
            leader = joined.leader,
            ?revoked,
            ?added,
            "joined group"
        );
        if !revoked.is_empty() {
            listener.on_partitions_revoked(self, &revoked).await;
            if self.protocol == RebalanceProtocol::Cooperative {
                self.shared.lock().rejoin_needed = true;
            }
        }
        self.set_owned(new, Some(joined.generation_id));
        self.unrestored.extend(added.iter().cloned());
        listener.on_partitions_assigned(self, &added).await;
    }

    fn set_owned(&mut self, owned: Vec<TopicPartition>, generation: Option<i32>) {
        let refs: Vec<(&str, i32)> = owned.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        self.consumer.assign(&refs);
        self.unrestored.retain(|tp| owned.contains(tp));
        self.owned = owned;
        self.owned_generation = generation;
    }

    /// Reads the committed offsets of newly assigned partitions that have
    /// no position yet; partitions without one start per
    /// `auto_offset_reset`. Until this succeeds nothing is fetched, so a
    /// failed lookup never falls back to the reset policy.
    async fn restore_positions(&mut self) -> Result<(), ClientError> {
        let wanted: Vec<TopicPartition> = self
            .unrestored
            .iter()
            .filter(|(t, p)| self.consumer.position(t, *p).is_none())
            .cloned()
            .collect();
        if !wanted.is_empty() {
            let request = fetch_request(&self.config.group_id, Some(&wanted));
            let response = self
                .link
                .call(&request, OFFSET_FETCH_VERSION, |r| r.error_code)
                .await?;
            let committed = fetch_result(&self.config.group_id, &response)?;
            for ((topic, partition), c) in committed {
                if self.unrestored.contains(&(topic.clone(), partition)) {
                    self.consumer
                        .seek_with_epoch(&topic, partition, c.offset, c.leader_epoch);
                }
            }
        }
        self.unrestored.clear();
        Ok(())
    }

    /// LeaveGroup for this member, if it has a member id.
    async fn leave_group(&mut self) -> Result<(), ClientError> {
        let (member_id, instance_id) = {
            let m = self.shared.lock();
            (
                m.member_id.clone(),
                m.group_instance_id().map(str::to_string),
            )
        };
        if member_id.is_empty() {
            return Ok(());
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(commit::group_id(&self.config.group_id))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance_id.map(StrBytes::from_string))
                .with_reason(Some(StrBytes::from_static_str(
                    "the consumer is closing",
                )))]);
        let response = self
            .link
            .call(&request, LEAVE_GROUP_VERSION, |r| r.error_code)
            .await?;
        let group = &self.config.group_id;
        ClientError::check(response.error_code, || format!("leave group {group}"), None)?;
        for m in &response.members {
            // A member the coordinator already dropped has nothing to leave.
            if m.error_code != kafka_protocol::ResponseError::UnknownMemberId.code() {
                ClientError::check(m.error_code, || format!("leave group {group}"), None)?;
            }
        }
        Ok(())
    }
}
