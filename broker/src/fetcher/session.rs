//! One source broker's fetcher task: a connection, and per followed
//! partition a phase (truncate, fetch, wait for the image, back off).

use super::outcome::{self, Next};
use super::{Assigned, Assignment, Key};
use client::Connection;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::BrokerId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
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
const BACKOFF: Duration = Duration::from_millis(50);

/// Where a followed partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
struct Followed {
    assignment: Assignment,
    phase: Phase,
    /// The trouble last logged for it, so each is logged once.
    trouble: Option<String>,
}

impl Followed {
    fn new(assignment: Assignment) -> Followed {
        Followed {
            assignment,
            phase: Phase::Truncate,
            trouble: None,
        }
    }

    /// Logs `trouble` the first time it is seen, and its end once.
    fn report(&mut self, key: &Key, leader: i32, trouble: Option<String>) {
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
pub async fn run(me: i32, leader: i32, addr: String, assigned: Arc<Assigned>) {
    let mut followed: BTreeMap<Key, Followed> = BTreeMap::new();
    let mut down: Option<String> = None;
    loop {
        let ended = match Connection::connect(&addr).await {
            Ok(mut conn) => {
                if down.take().is_some() {
                    tracing::info!("replica fetcher connected to broker {leader} at {addr}");
                }
                serve(me, leader, &mut conn, &assigned, &mut followed).await
            }
            Err(e) => Ended::Failed(e.into()),
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

/// Truncates and fetches over one connection until it fails.
async fn serve(
    me: i32,
    leader: i32,
    conn: &mut Connection,
    assigned: &Assigned,
    followed: &mut BTreeMap<Key, Followed>,
) -> Ended {
    let mut changes = assigned.subscribe();
    loop {
        sync(&assigned.current(&mut changes), followed);
        if let Err(e) = truncate(me, leader, conn, followed).await {
            return Ended::Failed(e);
        }
        let now = Instant::now();
        let mut offsets = BTreeMap::new();
        for (key, f) in followed.iter_mut() {
            if matches!(f.phase, Phase::Backoff(until) if until <= now) {
                f.phase = Phase::Fetch;
            }
            if f.phase == Phase::Fetch {
                // One look at the log: (log start, HW, log end).
                let (start, _, end) = f.assignment.partition.offsets();
                offsets.insert(key.clone(), (end, start));
            }
        }
        if offsets.is_empty() {
            if followed.values().any(|f| f.phase == Phase::Truncate) {
                continue; // the next truncation round, at once
            }
            let wake = next_backoff(followed).unwrap_or(now + Duration::from_millis(500));
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            continue;
        }
        let request = fetch_request(me, followed, &offsets);
        let response = tokio::select! {
            sent = conn.send(&request, FETCH_VERSION) => sent,
            _ = changes.changed() => return Ended::Reassigned,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return Ended::Failed(e.into()),
        };
        if let Err(e) = apply(leader, response, &offsets, followed, assigned).await {
            return Ended::Failed(e);
        }
    }
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
fn by_topic<'a, T>(items: impl Iterator<Item = (&'a Key, T)>) -> BTreeMap<&'a str, Vec<(i32, T)>> {
    let mut topics: BTreeMap<&str, Vec<(i32, T)>> = BTreeMap::new();
    for ((topic, index), item) in items {
        topics.entry(topic).or_default().push((*index, item));
    }
    topics
}

fn fetch_request(
    me: i32,
    followed: &BTreeMap<Key, Followed>,
    offsets: &BTreeMap<Key, (i64, i64)>,
) -> FetchRequest {
    let topics = by_topic(offsets.iter())
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, &(fetch_offset, log_start))| {
                    let epoch = followed[&(topic.to_string(), index)]
                        .assignment
                        .leader_epoch;
                    FetchPartition::default()
                        .with_partition(index)
                        .with_fetch_offset(fetch_offset)
                        .with_current_leader_epoch(epoch)
                        .with_log_start_offset(log_start)
                        .with_partition_max_bytes(PARTITION_MAX_BYTES)
                })
                .collect();
            FetchTopic::default()
                .with_topic(crate::handlers::topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// What one partition's fetch answer asks of its log.
struct Chunk {
    key: Key,
    assignment: Assignment,
    records: bytes::Bytes,
    leader_hw: i64,
    truncate_fully_at: Option<i64>,
}

/// Sorts each partition's answer into its next phase, then appends (or
/// fully truncates) on a blocking thread, all partitions in one hop.
async fn apply(
    leader: i32,
    response: FetchResponse,
    offsets: &BTreeMap<Key, (i64, i64)>,
    followed: &mut BTreeMap<Key, Followed>,
    assigned: &Assigned,
) -> anyhow::Result<()> {
    if response.error_code != 0 {
        anyhow::bail!("fetch refused with error {}", response.error_code);
    }
    let now = Instant::now();
    let mut chunks = Vec::new();
    for topic in response.responses {
        let name = topic.topic.0.to_string();
        for data in topic.partitions {
            let key = (name.clone(), data.partition_index);
            let (Some(f), Some(&(fetch_offset, _))) = (followed.get_mut(&key), offsets.get(&key))
            else {
                continue;
            };
            let next = outcome::next(data.error_code, fetch_offset, data.log_start_offset);
            let trouble = trouble_of(next, data.error_code, fetch_offset, data.log_start_offset);
            f.report(&key, leader, trouble);
            let truncate_fully_at = match next {
                Next::Append => None,
                Next::TruncateFully(at) => Some(at),
                Next::Truncate => {
                    f.phase = Phase::Truncate;
                    continue;
                }
                Next::WaitForImage => {
                    f.phase = Phase::WaitForImage;
                    continue;
                }
                Next::Backoff => {
                    f.phase = Phase::Backoff(now + BACKOFF);
                    continue;
                }
            };
            chunks.push(Chunk {
                key,
                assignment: f.assignment.clone(),
                records: data.records.unwrap_or_default(),
                leader_hw: data.high_watermark,
                truncate_fully_at,
            });
        }
    }
    if chunks.is_empty() {
        return Ok(());
    }
    let failed = write_chunks(chunks, assigned).await?;
    for (key, error) in failed {
        if let Some(f) = followed.get_mut(&key) {
            f.report(&key, leader, Some(format!("cannot append: {error}")));
            f.phase = Phase::Truncate;
        }
    }
    Ok(())
}

fn trouble_of(next: Next, code: i16, fetch_offset: i64, log_start: i64) -> Option<String> {
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

/// Writes the chunks on a blocking thread; returns the partitions whose
/// write failed, with why. A chunk whose assignment changed meanwhile is
/// dropped: the image moved on and the partition starts over.
async fn write_chunks(
    chunks: Vec<Chunk>,
    assigned: &Assigned,
) -> anyhow::Result<Vec<(Key, String)>> {
    let still: Vec<bool> = chunks
        .iter()
        .map(|c| assigned.still(&c.key, c.assignment.leader_epoch))
        .collect();
    let now = crate::handlers::now_ms();
    let written = tokio::task::spawn_blocking(move || {
        let mut failed = Vec::new();
        for (chunk, still) in chunks.into_iter().zip(still) {
            if !still {
                continue;
            }
            if let Err(e) = write_chunk(&chunk, now) {
                failed.push((chunk.key, e.to_string()));
            }
        }
        failed
    });
    Ok(written.await?)
}

fn write_chunk(chunk: &Chunk, now_ms: i64) -> anyhow::Result<()> {
    let p = &chunk.assignment.partition;
    if let Some(at) = chunk.truncate_fully_at {
        tracing::info!(
            "partition {}-{} follower truncating fully from offset {} to start at {at} \
             (the leader's log start)",
            p.topic,
            p.index,
            p.log_end_offset()
        );
        p.truncate_fully_and_start_at(at)?;
        return Ok(());
    }
    if !chunk.records.is_empty() {
        p.append_as_follower(&chunk.records, now_ms)?;
    }
    p.follow_high_watermark(chunk.leader_hw);
    Ok(())
}

/// For every partition in the truncate phase, asks the leader (one
/// OffsetForLeaderEpoch request for all) where its latest epoch ends and
/// cuts there; a partition moves on to fetching once the leader confirms
/// its latest epoch (or its log has none).
async fn truncate(
    me: i32,
    leader: i32,
    conn: &mut Connection,
    followed: &mut BTreeMap<Key, Followed>,
) -> anyhow::Result<()> {
    let mut asks = BTreeMap::new();
    for (key, f) in followed.iter_mut() {
        if f.phase != Phase::Truncate {
            continue;
        }
        match f.assignment.partition.latest_epoch() {
            Some(latest) => {
                asks.insert(key.clone(), latest);
            }
            None => f.phase = Phase::Fetch,
        }
    }
    if asks.is_empty() {
        return Ok(());
    }
    let topics = by_topic(asks.iter())
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, &latest)| {
                    let epoch = followed[&(topic.to_string(), index)]
                        .assignment
                        .leader_epoch;
                    OffsetForLeaderPartition::default()
                        .with_partition(index)
                        .with_current_leader_epoch(epoch)
                        .with_leader_epoch(latest)
                })
                .collect();
            OffsetForLeaderTopic::default()
                .with_topic(crate::handlers::topic_name(topic))
                .with_partitions(partitions)
        })
        .collect();
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(me))
        .with_topics(topics);
    let response = conn.send(&request, 4).await?;
    let now = Instant::now();
    let mut cuts = Vec::new();
    for topic in response.topics {
        let name = topic.topic.0.to_string();
        for answer in topic.partitions {
            let key = (name.clone(), answer.partition);
            let (Some(f), Some(&latest)) = (followed.get_mut(&key), asks.get(&key)) else {
                continue;
            };
            if answer.error_code != 0 {
                let next = match outcome::next(answer.error_code, -1, -1) {
                    Next::WaitForImage => Next::WaitForImage,
                    _ => Next::Backoff,
                };
                f.report(&key, leader, trouble_of(next, answer.error_code, -1, -1));
                f.phase = match next {
                    Next::WaitForImage => Phase::WaitForImage,
                    _ => Phase::Backoff(now + BACKOFF),
                };
                continue;
            }
            let leader_answer =
                (answer.leader_epoch >= 0).then_some((answer.leader_epoch, answer.end_offset));
            cuts.push((key, f.assignment.partition.clone(), latest, leader_answer));
        }
    }
    let confirmed = tokio::task::spawn_blocking(move || {
        cuts.into_iter()
            .map(|(key, p, latest, answer)| {
                let result = cut(&p, latest, answer);
                (key, result)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for (key, result) in confirmed {
        let Some(f) = followed.get_mut(&key) else {
            continue;
        };
        match result {
            Ok(true) => f.phase = Phase::Fetch,
            Ok(false) => {}
            Err(e) => {
                f.report(&key, leader, Some(format!("cannot truncate: {e}")));
                f.phase = Phase::Backoff(now + BACKOFF);
            }
        }
    }
    Ok(())
}

/// Cuts `p` where the leader's answer for its `latest` epoch says
/// (KIP-101, KIP-279); returns whether the leader confirmed that epoch.
fn cut(
    p: &crate::partition::Partition,
    latest: i32,
    leader_answer: Option<(i32, i64)>,
) -> anyhow::Result<bool> {
    let (_, hw, end) = p.offsets();
    let cut = replication::truncation(end, hw, leader_answer, |e| p.end_offset_for_epoch(e));
    let confirmed = leader_answer.is_none_or(|(e, _)| e == latest);
    if cut < end || !confirmed {
        let leader = match leader_answer {
            Some((epoch, offset)) => format!("leader's epoch {epoch} ends at {offset}"),
            None => "leader has no such epoch".to_string(),
        };
        tracing::info!(
            "partition {}-{} follower truncating from offset {end} to {cut} ({leader})",
            p.topic,
            p.index
        );
        if cut < p.log_start_offset() {
            // Retention here already removed what the leader keeps: start
            // over where the leader's history and ours part.
            p.truncate_fully_and_start_at(cut)?;
        } else {
            // At the log end this still drops epochs the leader never had.
            p.truncate_to(cut)?;
        }
    }
    Ok(confirmed)
}
