//! One led offsets partition's groups: loading them from the log, parking
//! and answering member requests, and writing what must be durable.

use super::host::{Committing, CoordinatorHost};
use super::records::{self, Committed, Entry, Key, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::replica_manager::AppendEntry;
use groups::{Effects, Group, Reply, Waiter};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a write to the offsets partition may wait for replication
/// (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The groups of one offsets partition led in one epoch.
#[derive(Debug)]
pub struct Shard {
    /// The `__consumer_offsets` partition.
    pub index: i32,
    /// The epoch this broker leads it in; the shard serves only in it.
    pub leader_epoch: i32,
    loaded: AtomicBool,
    unloaded: AtomicBool,
    next_waiter: AtomicU64,
    groups: Mutex<HashMap<String, GroupEntry>>,
}

/// A group and its committed offsets.
#[derive(Debug)]
pub struct GroupEntry {
    /// Membership and generation (the pure state machine).
    pub group: Group,
    /// Committed offsets by (topic, partition), each with the log offset of
    /// the record that set it, so replies finishing out of order never
    /// apply an older commit over a newer one.
    pub offsets: BTreeMap<(String, i32), (Committed, i64)>,
    waiters: HashMap<Waiter, oneshot::Sender<Reply>>,
}

impl GroupEntry {
    fn new(group_id: &str) -> GroupEntry {
        GroupEntry {
            group: Group::new(group_id),
            offsets: BTreeMap::new(),
            waiters: HashMap::new(),
        }
    }
}

/// A write appended under the shard's lock, to be replicated outside it:
/// the replica manager's second phase.
pub struct Pending(Committing);

impl Shard {
    /// A shard not loaded yet.
    pub fn new(index: i32, leader_epoch: i32) -> Shard {
        Shard {
            index,
            leader_epoch,
            loaded: AtomicBool::new(false),
            unloaded: AtomicBool::new(false),
            next_waiter: AtomicU64::new(1),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Marks it loaded without reading a log (the coordinator's tests).
    #[cfg(test)]
    pub(super) fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Whether its groups are loaded (and it still serves).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && !self.unloaded.load(Ordering::Acquire)
    }

    /// Leadership ended: parked requests are dropped (their handlers answer
    /// NOT_COORDINATOR) and nothing is served from here again.
    pub fn unload(&self) {
        self.unloaded.store(true, Ordering::Release);
        self.lock().clear();
    }

    /// The groups, locked.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, GroupEntry>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new waiter token and the receiver its reply arrives on; the
    /// sender is parked in the group's entry (created if new).
    pub fn park(
        &self,
        groups: &mut HashMap<String, GroupEntry>,
        group_id: &str,
    ) -> (Waiter, oneshot::Receiver<Reply>) {
        let waiter = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let entry = groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupEntry::new(group_id));
        entry.waiters.insert(waiter, tx);
        (waiter, rx)
    }

    /// The entry of `group_id`, created (Empty) if new.
    pub fn entry<'a>(
        groups: &'a mut HashMap<String, GroupEntry>,
        group_id: &str,
    ) -> &'a mut GroupEntry {
        groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupEntry::new(group_id))
    }

    /// Sends the replies of `effects`. When the group's membership must be
    /// durable first, its snapshot is appended now (under the lock, so
    /// snapshots reach the log in the order they were taken) and the
    /// replies go out once it is replicated; if that fails they are
    /// dropped, and the members hear NOT_COORDINATOR and rejoin.
    pub fn deliver<H: CoordinatorHost>(
        self: &Arc<Self>,
        host: &Arc<H>,
        groups: &mut HashMap<String, GroupEntry>,
        group_id: &str,
        effects: Effects,
    ) {
        let Some(entry) = groups.get_mut(group_id) else {
            return;
        };
        let replies: Vec<(oneshot::Sender<Reply>, Reply)> = effects
            .replies
            .into_iter()
            .filter_map(|(w, r)| entry.waiters.remove(&w).map(|tx| (tx, r)))
            .collect();
        if !effects.persist {
            for (tx, reply) in replies {
                let _ = tx.send(reply);
            }
            return;
        }
        let key = Key::Group {
            group: group_id.to_string(),
        };
        let snapshot = entry.group.snapshot();
        let (generation, state) = (entry.group.generation(), entry.group.state());
        let pending = self.append(host, &[Entry::Group(key, Some(snapshot))]);
        let (host, shard) = (host.clone(), self.clone());
        let group = group_id.to_string();
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            let written = match pending {
                Ok(p) => p.replicated().await,
                Err(e) => Err(e),
            };
            match written {
                Ok(_) => {
                    // Kafka logs each stored generation at INFO too: the
                    // trail a stuck rebalance is traced by.
                    tracing::info!(
                        group,
                        generation,
                        state = state.name(),
                        replies = replies.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "group metadata stored"
                    );
                    for (tx, reply) in replies {
                        let _ = tx.send(reply);
                    }
                }
                Err(e) => {
                    // The generation is not trusted until stored: the waiters
                    // hear NOT_COORDINATOR (their senders drop) and, if this
                    // broker still coordinates, the group rebalances.
                    tracing::warn!(group, error = ?e, "group metadata not written");
                    drop(replies);
                    let mut groups = shard.lock();
                    if let Some(entry) = groups.get_mut(&group) {
                        let effects = entry.group.rebalance(host.now_ms());
                        shard.deliver(&host, &mut groups, &group, effects);
                    }
                }
            }
        });
    }

    /// Ticks every group whose next deadline has come.
    pub fn tick<H: CoordinatorHost>(self: &Arc<Self>, host: &Arc<H>) {
        if !self.is_loaded() {
            return;
        }
        let now = host.now_ms();
        let config = host.group_config();
        let mut groups = self.lock();
        let due: Vec<String> = groups
            .iter()
            .filter(|(_, e)| e.group.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let effects = match groups.get_mut(&id) {
                Some(e) => tick_logged(&id, &mut e.group, now, config),
                None => continue,
            };
            self.deliver(host, &mut groups, &id, effects);
        }
    }

    /// Appends `entries` as leader in this shard's epoch (call under the
    /// shard's lock to keep the log in decision order). Losing leadership
    /// of the offsets partition, before or after the append, ends this
    /// coordinator: NOT_COORDINATOR.
    pub fn append<H: CoordinatorHost>(
        &self,
        host: &Arc<H>,
        entries: &[Entry],
    ) -> Result<Pending, ResponseError> {
        if !self.is_loaded() {
            return Err(ResponseError::NotCoordinator);
        }
        let entry = AppendEntry {
            topic: OFFSETS_TOPIC.to_string(),
            index: self.index,
            records: Some(records::batch(entries, host.wall_ms())),
            required_epoch: Some(self.leader_epoch),
        };
        let appended = host.append_records(-1, COMMIT_TIMEOUT, vec![entry]);
        // Phase one is done: an append refused now is refused at once.
        Ok(Pending(appended))
    }
}

impl Pending {
    /// Waits until the write is committed (synced, and the high watermark
    /// past it): the log offset of its first record, or the error with
    /// Kafka's mapping for the group APIs.
    pub async fn replicated(self) -> Result<i64, ResponseError> {
        let results = self.0.await;
        let (_, _, outcome) = results.into_iter().next().expect("one entry");
        outcome.map(|o| o.base_offset).map_err(group_api_error)
    }
}

/// A replica manager error as the group APIs name it.
fn group_api_error(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::NotEnoughReplicas | ResponseError::NotEnoughReplicasAfterAppend => {
            ResponseError::CoordinatorNotAvailable
        }
        ResponseError::RecordListTooLarge | ResponseError::MessageTooLarge => {
            ResponseError::InvalidCommitOffsetSize
        }
        ResponseError::RequestTimedOut => ResponseError::RequestTimedOut,
        _ => ResponseError::NotCoordinator,
    }
}

/// Loads the shard's groups from its partition's whole log (to the log
/// end: what this leader holds is what it will commit), then opens it.
pub async fn load<H: CoordinatorHost>(host: Arc<H>, shard: Arc<Shard>) {
    let started = std::time::Instant::now();
    let Some(partition) = host.offsets_replica(shard.index) else {
        tracing::error!(
            partition = shard.index,
            "led offsets partition has no replica"
        );
        return;
    };
    let read = tokio::task::spawn_blocking(move || read_all(&partition)).await;
    let loaded = match read {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            tracing::error!(partition = shard.index, error = %e, "cannot load groups");
            return;
        }
        Err(e) => {
            tracing::error!(partition = shard.index, error = %e, "group load task failed");
            return;
        }
    };
    let count = loaded.len();
    let now = host.now_ms();
    {
        let mut groups = shard.lock();
        for record in loaded {
            replay(&mut groups, record, now);
        }
        tracing::info!(
            "{OFFSETS_TOPIC}-{} leader epoch {}: coordinator loaded {} groups from {count} records in {} ms",
            shard.index,
            shard.leader_epoch,
            groups.len(),
            started.elapsed().as_millis()
        );
    }
    shard.loaded.store(true, Ordering::Release);
}

fn read_all(partition: &Partition) -> Result<Vec<records::Loaded>, storage::ReadError> {
    let mut out = Vec::new();
    let (mut next, _, end) = partition.offsets();
    while next < end {
        let read = partition.read(next, 1 << 20, end)?;
        if read.next_offset <= next {
            break;
        }
        next = read.next_offset;
        out.extend(records::decode(read.bytes));
    }
    Ok(out)
}

fn replay(groups: &mut HashMap<String, GroupEntry>, record: records::Loaded, now: u64) {
    match record.entry {
        Entry::Offset(key, value) => {
            let Key::Offset {
                group,
                topic,
                partition,
            } = key
            else {
                return;
            };
            let entry = Shard::entry(groups, &group);
            match value {
                Some(c) => {
                    entry.offsets.insert((topic, partition), (c, record.offset));
                }
                None => {
                    entry.offsets.remove(&(topic, partition));
                }
            }
        }
        Entry::Group(key, value) => {
            let group = key.group().to_string();
            match value {
                Some(snapshot) => {
                    Shard::entry(groups, &group).group = Group::restore(&group, snapshot, now);
                }
                None => {
                    groups.remove(&group);
                }
            }
        }
    }
}

/// [`Group::tick`], logging at INFO the members whose session ran out:
/// the one membership change no request explains, so the log is where a
/// rebalance after a fault can be traced.
fn tick_logged(id: &str, group: &mut Group, now: u64, config: &groups::GroupConfig) -> Effects {
    let before: Vec<String> = group.member_ids().into_iter().map(str::to_string).collect();
    let effects = group.tick(now, config);
    let after = group.member_ids();
    let expired: Vec<&String> = before
        .iter()
        .filter(|m| !after.contains(&m.as_str()))
        .collect();
    if !expired.is_empty() {
        tracing::info!(
            group = id,
            ?expired,
            generation = group.generation(),
            "members' sessions ran out: rebalancing"
        );
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::group_api_error;
    use kafka_protocol::ResponseError as E;

    #[test]
    fn the_group_apis_name_the_replica_managers_errors_as_kafka_does() {
        let cases = [
            (E::NotEnoughReplicas, E::CoordinatorNotAvailable),
            (E::NotEnoughReplicasAfterAppend, E::CoordinatorNotAvailable),
            (E::RecordListTooLarge, E::InvalidCommitOffsetSize),
            (E::MessageTooLarge, E::InvalidCommitOffsetSize),
            (E::RequestTimedOut, E::RequestTimedOut),
            (E::NotLeaderOrFollower, E::NotCoordinator),
            (E::FencedLeaderEpoch, E::NotCoordinator),
            (E::KafkaStorageError, E::NotCoordinator),
        ];
        for (from, to) in cases {
            assert_eq!(group_api_error(from), to, "{from:?}");
        }
    }
}
