//! One source broker's fetcher task: a pipelined connection, and per
//! followed partition a phase (truncate, fetch, wait for the image, back
//! off).
//!
//! A fetched chunk is written at once (the page cache) and the next fetch
//! goes out before it is synced; one sync job at a time makes every
//! followed partition durable (group commit), and when it completes a
//! position report (`crate::durable_end`) goes out behind the fetch in
//! flight, so the leader counts the synced records without waiting for the
//! fetch's long poll.

use super::link::Link;
use super::outcome::{self, Next};
use super::{Assigned, Assignment, Key};
use crate::clock::Clock;
use crate::partition::Partition;
use kafka_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ForgottenTopic,
};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use replication::fetch_session::{Plan, SessionBuilder, SessionError, FINAL_EPOCH, NO_SESSION};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The Fetch version followers send (the highest Baton serves).
const FETCH_VERSION: i16 = 12;
/// How long a follower's fetch waits at the leader for new records
/// (Kafka's replica.fetch.wait.max.ms).
const FETCH_WAIT_MS: i32 = 500;
/// Bytes per partition per fetch, and per response (Kafka's
/// replica.fetch.max.bytes and replica.fetch.response.max.bytes are 1 MiB
/// and 10 MiB; a larger partition share keeps one hot partition's follower
/// from needing ten round trips where one would do).
const PARTITION_MAX_BYTES: i32 = 4 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Pause before reconnecting to the source broker.
const RECONNECT: Duration = Duration::from_millis(50);
/// Pause after a partition's transient error (Kafka's
/// replica.fetch.backoff.ms is 1 s; a failover should not wait that long,
/// and 50 ms is what the fetcher before this one retried after).
pub(super) const BACKOFF: Duration = Duration::from_millis(50);

/// Where a followed partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Check its epochs against the leader's and cut the divergent tail.
    Truncate,
    /// Fetch from its log end.
    Fetch,
    /// Nothing until this broker's image changes its assignment.
    WaitForImage,
    /// Fetch again after this instant.
    Backoff(Instant),
}

/// A followed partition.
#[derive(Debug)]
pub(super) struct Followed {
    pub(super) assignment: Assignment,
    pub(super) phase: Phase,
    /// The trouble last logged for it, so each is logged once.
    trouble: Option<String>,
    /// The durable end last reported to the leader.
    reported: i64,
    /// The leader's high watermark last heard, applied again as syncs
    /// complete (a follower's never passes what it holds durably).
    leader_hw: i64,
}

impl Followed {
    fn new(assignment: Assignment) -> Followed {
        Followed {
            assignment,
            phase: Phase::Truncate,
            trouble: None,
            reported: -1,
            leader_hw: -1,
        }
    }

    /// Logs `trouble` the first time it is seen, and its end once.
    pub(super) fn report(&mut self, key: &Key, leader: i32, trouble: Option<String>) {
        if trouble == self.trouble {
            return;
        }
        let epoch = self.assignment.leader_epoch;
        match (&trouble, &self.trouble) {
            (Some(t), _) => tracing::warn!(
                "partition {}-{} follower of broker {leader} epoch {epoch}: {t}",
                key.0,
                key.1
            ),
            (None, Some(_)) => tracing::info!(
                "partition {}-{} follower of broker {leader} epoch {epoch}: fetching again",
                key.0,
                key.1
            ),
            (None, None) => {}
        }
        self.trouble = trouble;
    }
}

/// This fetcher's KIP-227 session with its source broker: its fetches
/// list only the partitions whose request changed, and the leader answers
/// only those with news. Position reports go outside it.
type FetchSession = SessionBuilder<Key, FetchPartition>;

/// Why a session with the source broker ended.
enum Ended {
    /// The connection failed.
    Failed(anyhow::Error),
    /// New partitions were assigned while a fetch was in flight: that
    /// fetch is abandoned (with its connection) so they start at once.
    Reassigned,
}

/// Follows the partitions `assigned` from broker `leader` at `addr` until
/// aborted.
pub async fn run(
    me: i32,
    leader: i32,
    addr: String,
    assigned: Arc<Assigned>,
    clock: Arc<dyn Clock>,
) {
    let mut followed: BTreeMap<Key, Followed> = BTreeMap::new();
    let mut fetch_session = FetchSession::default();
    let mut down: Option<String> = None;
    loop {
        let ended = match Link::connect(&addr).await {
            Ok(mut link) => {
                if down.take().is_some() {
                    tracing::info!("replica fetcher connected to broker {leader} at {addr}");
                }
                // A fetch left unanswered on the old connection may or may
                // not have reached the leader: start the session over.
                fetch_session.reset();
                let mut session = Session {
                    me,
                    leader,
                    link: &mut link,
                    assigned: &assigned,
                    clock: clock.as_ref(),
                    followed: &mut followed,
                    fetch_session: &mut fetch_session,
                    sent: VecDeque::new(),
                    syncing: None,
                };
                session.serve().await
            }
            Err(e) => Ended::Failed(e),
        };
        match ended {
            Ended::Reassigned => continue,
            Ended::Failed(e) => {
                if down.is_none() {
                    tracing::warn!(
                        "replica fetcher cannot reach broker {leader} at {addr}: {e}; retrying"
                    );
                }
                down = Some(e.to_string());
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Where a partition's fetch starts: (fetch offset, log start, durable end).
type Position = (i64, i64, i64);

/// A Fetch in flight: whether it is a position report, and where each
/// partition's read starts.
struct Sent {
    report: bool,
    fetch_offsets: BTreeMap<Key, i64>,
}

/// A sync job's outcome: per partition, its sync's error if it failed.
type Synced = Vec<(Key, Option<String>)>;

/// One connection's worth of fetching.
struct Session<'a> {
    me: i32,
    leader: i32,
    link: &'a mut Link,
    assigned: &'a Assigned,
    clock: &'a dyn Clock,
    followed: &'a mut BTreeMap<Key, Followed>,
    fetch_session: &'a mut FetchSession,
    /// Fetches in flight, oldest first (responses come in this order).
    sent: VecDeque<Sent>,
    /// The sync job running, if any.
    syncing: Option<JoinHandle<Synced>>,
}

impl Session<'_> {
    /// Truncates, fetches, syncs and reports until the connection fails.
    async fn serve(&mut self) -> Ended {
        let mut changes = self.assigned.subscribe();
        // Whether the assignments may have changed since last taken in
        // (`changed()` below marks a change seen before the loop takes it).
        let mut stale = true;
        loop {
            if stale || changes.has_changed().unwrap_or(true) {
                sync(&self.assigned.current(&mut changes), self.followed);
                stale = false;
            }
            if let Err(e) = self.step().await {
                return Ended::Failed(e);
            }
            let wake = self.idle_until();
            let fetching = self.sent.iter().any(|s| !s.report);
            tokio::select! {
                response = self.link.receive::<FetchRequest>(FETCH_VERSION),
                    if !self.sent.is_empty() =>
                {
                    let applied = match response {
                        Ok(response) => self.apply(response).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = applied {
                        return Ended::Failed(e);
                    }
                }
                synced = async { self.syncing.as_mut().expect("guarded").await },
                    if self.syncing.is_some() =>
                {
                    self.syncing = None;
                    match synced {
                        Ok(synced) => self.synced(synced),
                        Err(e) => return Ended::Failed(e.into()),
                    }
                }
                _ = changes.changed() => {
                    stale = true;
                    if fetching {
                        return Ended::Reassigned;
                    }
                }
                () = tokio::time::sleep_until(wake), if self.sent.is_empty() => {}
            }
        }
    }

    /// Sends what is due: truncation first (with nothing in flight), a
    /// fetch if none is in flight, a position report behind it if a sync
    /// completed since, and a sync job if records are waiting for one.
    async fn step(&mut self) -> anyhow::Result<()> {
        if self.followed.values().any(|f| f.phase == Phase::Truncate) {
            while !self.sent.is_empty() {
                let response = self.link.receive::<FetchRequest>(FETCH_VERSION).await?;
                self.apply(response).await?;
            }
            super::truncate::truncate(self.me, self.leader, self.link, self.followed).await?;
        }
        let now = Instant::now();
        for f in self.followed.values_mut() {
            if matches!(f.phase, Phase::Backoff(until) if until <= now) {
                f.phase = Phase::Fetch;
            }
        }
        // One look at each log per step: the fetch, the report and the
        // sync job all start from it (only this task appends, so it holds
        // until the step ends).
        let all = self.positions();
        let positions: BTreeMap<Key, Position> = all
            .iter()
            .filter(|(key, _)| self.followed[*key].phase == Phase::Fetch)
            .map(|(key, p)| (key.clone(), *p))
            .collect();
        if !self.sent.iter().any(|s| !s.report) && !positions.is_empty() {
            self.send(&positions, false).await?;
        }
        let due: BTreeMap<Key, Position> = positions
            .into_iter()
            .filter(|(key, (_, _, durable))| *durable > self.followed[key].reported)
            .collect();
        if !due.is_empty() && !self.sent.iter().any(|s| s.report) {
            self.send(&due, true).await?;
        }
        if self.syncing.is_none() {
            self.syncing = start_sync(self.followed, &all, self.clock.wall_ms());
        }
        Ok(())
    }

    /// Where each followed partition's next read would start.
    fn positions(&self) -> BTreeMap<Key, Position> {
        self.followed
            .iter()
            .map(|(key, f)| {
                let (start, end, durable) = f.assignment.partition.follower_position();
                (key.clone(), (end, start, durable))
            })
            .collect()
    }

    /// When to look again with nothing in flight: the next backoff's end.
    fn idle_until(&self) -> Instant {
        next_backoff(self.followed).unwrap_or(Instant::now() + Duration::from_millis(500))
    }

    async fn send(
        &mut self,
        positions: &BTreeMap<Key, Position>,
        report: bool,
    ) -> anyhow::Result<()> {
        let partitions = positions
            .iter()
            .map(|(key, position)| (key.clone(), partition(self.followed, key, position, report)));
        let plan = match report {
            // Outside the session: it must not move the session's epoch.
            true => Plan {
                id: NO_SESSION,
                epoch: FINAL_EPOCH,
                partitions: partitions.collect(),
                forgotten: Vec::new(),
            },
            false => self.fetch_session.build(&partitions.collect()),
        };
        let request = fetch_request(self.me, plan, report);
        self.link.send(&request, FETCH_VERSION).await?;
        for (key, (_, _, durable)) in positions {
            if let Some(f) = self.followed.get_mut(key) {
                f.reported = f.reported.max(*durable);
            }
        }
        self.sent.push_back(Sent {
            report,
            fetch_offsets: positions.iter().map(|(k, p)| (k.clone(), p.0)).collect(),
        });
        Ok(())
    }

    /// Sorts each partition's answer into its next phase, then appends
    /// each chunk (a full truncation runs on a blocking thread).
    async fn apply(&mut self, response: FetchResponse) -> anyhow::Result<()> {
        let sent = self
            .sent
            .pop_front()
            .expect("a response answers a fetch in flight");
        if !sent.report && !self.session_answered(&response) {
            return Ok(());
        }
        if response.error_code != 0 {
            anyhow::bail!("fetch refused with error {}", response.error_code);
        }
        let now = Instant::now();
        let now_ms = self.clock.wall_ms();
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for data in topic.partitions {
                let key = (name.clone(), data.partition_index);
                let (Some(f), Some(&fetch_offset)) =
                    (self.followed.get_mut(&key), sent.fetch_offsets.get(&key))
                else {
                    continue;
                };
                let next = outcome::next(data.error_code, fetch_offset, data.log_start_offset);
                let trouble =
                    trouble_of(next, data.error_code, fetch_offset, data.log_start_offset);
                f.report(&key, self.leader, trouble);
                let fail = match next {
                    Next::Append => {
                        let records = data.records.unwrap_or_default();
                        f.leader_hw = f.leader_hw.max(data.high_watermark);
                        append(f, &key, self.assigned, fetch_offset, &records, now_ms).err()
                    }
                    Next::TruncateFully(at) => {
                        let p = f.assignment.partition.clone();
                        tokio::task::spawn_blocking(move || truncate_fully(&p, at))
                            .await?
                            .err()
                    }
                    Next::Truncate => {
                        f.phase = Phase::Truncate;
                        None
                    }
                    Next::WaitForImage => {
                        f.phase = Phase::WaitForImage;
                        None
                    }
                    Next::Backoff => {
                        f.phase = Phase::Backoff(now + BACKOFF);
                        None
                    }
                };
                if let Some(error) = fail {
                    f.report(&key, self.leader, Some(format!("cannot append: {error}")));
                    f.phase = Phase::Truncate;
                }
            }
        }
        Ok(())
    }

    /// Tells the fetch session how its fetch was answered; false if the
    /// session was refused (the next fetch starts a new one, in full).
    fn session_answered(&mut self, response: &FetchResponse) -> bool {
        let refused = match ResponseError::try_from_code(response.error_code) {
            Some(ResponseError::FetchSessionIdNotFound) => SessionError::IdNotFound,
            Some(ResponseError::InvalidFetchSessionEpoch) => SessionError::InvalidEpoch,
            _ => {
                self.fetch_session.answered(Ok(response.session_id));
                return true;
            }
        };
        tracing::info!(
            "replica fetcher's session {} with broker {} refused ({refused:?}): fetching in full",
            self.fetch_session.id(),
            self.leader
        );
        self.fetch_session.answered(Err(refused));
        false
    }

    /// A sync job completed: the partitions synced follow their leader's
    /// high watermark up to what they now hold durably; a failed one
    /// starts over.
    fn synced(&mut self, synced: Synced) {
        for (key, failed) in synced {
            let Some(f) = self.followed.get_mut(&key) else {
                continue;
            };
            match failed {
                None => f.assignment.partition.follow_high_watermark(f.leader_hw),
                Some(error) => {
                    f.report(&key, self.leader, Some(format!("cannot sync: {error}")));
                    f.phase = Phase::Truncate;
                }
            }
        }
    }
}

/// Appends a fetched chunk if it still belongs: the image has not moved on
/// and it starts at this log's end (a later response may already have
/// moved it). Then the leader's high watermark, up to the durable end.
fn append(
    f: &Followed,
    key: &Key,
    assigned: &Assigned,
    fetch_offset: i64,
    records: &[u8],
    now_ms: i64,
) -> anyhow::Result<()> {
    let p = &f.assignment.partition;
    if !assigned.still(key, f.assignment.leader_epoch) {
        return Ok(());
    }
    if !records.is_empty() && p.log_end_offset() == fetch_offset {
        p.append_as_follower(records, now_ms)?;
    }
    p.follow_high_watermark(f.leader_hw);
    Ok(())
}

fn truncate_fully(p: &Partition, at: i64) -> anyhow::Result<()> {
    tracing::info!(
        "partition {}-{} follower truncating fully from offset {} to start at {at} \
         (the leader's log start)",
        p.topic,
        p.index,
        p.log_end_offset()
    );
    p.truncate_fully_and_start_at(at)?;
    Ok(())
}

/// Starts a sync of every followed partition holding records not yet
/// durable, on a blocking thread; `None` if there are none.
fn start_sync(
    followed: &BTreeMap<Key, Followed>,
    positions: &BTreeMap<Key, Position>,
    now_ms: i64,
) -> Option<JoinHandle<Synced>> {
    let work: Vec<(Key, Arc<Partition>, i64)> = positions
        .iter()
        .filter(|(_, (end, _, durable))| durable < end)
        .map(|(key, (end, _, _))| {
            (
                key.clone(),
                followed[key].assignment.partition.clone(),
                *end,
            )
        })
        .collect();
    if work.is_empty() {
        return None;
    }
    Some(tokio::task::spawn_blocking(move || {
        work.into_iter()
            .map(|(key, p, end)| {
                let failed = p.make_durable(end, now_ms).err().map(|e| e.to_string());
                (key, failed)
            })
            .collect()
    }))
}

/// Takes in the current assignments: new partitions (or a new epoch of
/// one) start by truncating; partitions no longer assigned are dropped.
fn sync(current: &BTreeMap<Key, Assignment>, followed: &mut BTreeMap<Key, Followed>) {
    followed.retain(|key, _| current.contains_key(key));
    for (key, a) in current {
        let fresh = followed.get(key).is_none_or(|f| {
            f.assignment.leader_epoch != a.leader_epoch
                || !Arc::ptr_eq(&f.assignment.partition, &a.partition)
        });
        if fresh {
            followed.insert(key.clone(), Followed::new(a.clone()));
        }
    }
}

fn next_backoff(followed: &BTreeMap<Key, Followed>) -> Option<Instant> {
    followed
        .values()
        .filter_map(|f| match f.phase {
            Phase::Backoff(until) => Some(until),
            _ => None,
        })
        .min()
}

/// Groups `keys` by topic, in order, as Kafka's requests carry them.
pub(super) fn by_topic<'a, T>(
    items: impl Iterator<Item = (&'a Key, T)>,
) -> BTreeMap<&'a str, Vec<(i32, T)>> {
    let mut topics: BTreeMap<&str, Vec<(i32, T)>> = BTreeMap::new();
    for ((topic, index), item) in items {
        topics.entry(topic).or_default().push((*index, item));
    }
    topics
}

/// The request's partition for `key` at `position`: a position report
/// asks for no records.
fn partition(
    followed: &BTreeMap<Key, Followed>,
    key: &Key,
    &(fetch_offset, log_start, durable): &Position,
    report: bool,
) -> FetchPartition {
    let max_bytes = if report { 0 } else { PARTITION_MAX_BYTES };
    let p = FetchPartition::default()
        .with_partition(key.1)
        .with_fetch_offset(fetch_offset)
        .with_current_leader_epoch(followed[key].assignment.leader_epoch)
        .with_log_start_offset(log_start)
        .with_partition_max_bytes(max_bytes);
    crate::durable_end::attach(p, durable)
}

fn fetch_request(me: i32, plan: Plan<Key, FetchPartition>, report: bool) -> FetchRequest {
    let listed = plan.partitions.iter().map(|(key, p)| (key, p));
    let topics = by_topic(listed).into_iter().map(|(topic, partitions)| {
        let partitions = partitions.into_iter().map(|(_, p)| p.clone()).collect();
        FetchTopic::default()
            .with_topic(crate::handlers::topic_name(topic))
            .with_partitions(partitions)
    });
    let forgotten = by_topic(plan.forgotten.iter().map(|key| (key, ())));
    let forgotten = forgotten.into_iter().map(|(topic, partitions)| {
        ForgottenTopic::default()
            .with_topic(crate::handlers::topic_name(topic))
            .with_partitions(partitions.into_iter().map(|(index, ())| index).collect())
    });
    // A position report is answered at once, with no records.
    let (max_wait, min_bytes) = if report { (0, 0) } else { (FETCH_WAIT_MS, 1) };
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(max_wait)
        .with_min_bytes(min_bytes)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_id(plan.id)
        .with_session_epoch(plan.epoch)
        .with_topics(topics.collect())
        .with_forgotten_topics_data(forgotten.collect())
}

pub(super) fn trouble_of(
    next: Next,
    code: i16,
    fetch_offset: i64,
    log_start: i64,
) -> Option<String> {
    let error = || {
        kafka_protocol::ResponseError::try_from_code(code)
            .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
    };
    match next {
        Next::Append => None,
        Next::TruncateFully(at) => Some(format!(
            "fetch offset {fetch_offset} is below the leader's log start {at}: \
             starting the log over at {at}"
        )),
        Next::Truncate => Some(format!(
            "{} at fetch offset {fetch_offset} (leader's log start {log_start}): \
             checking epochs again",
            error()
        )),
        Next::WaitForImage => Some(format!("{}: waiting for new metadata", error())),
        Next::Backoff => Some(format!("{}: retrying", error())),
    }
}
