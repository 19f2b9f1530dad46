//! The coordinator on a fake broker: what a stored generation's replies
//! wait for, and what a failed store does to the group.

use super::host::{Committing, CoordinatorHost};
use super::records::OFFSETS_TOPIC;
use super::Shard;
use crate::partition::Partition;
use crate::replica_manager::{AppendEntry, AppendOutcome, AppendResults};
use groups::{GroupConfig, GroupState, JoinRequest, Reply, SyncRequest};
use kafka_protocol::ResponseError;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// A broker whose appends commit when the test releases them, with the
/// outcome the test chose.
struct FakeHost {
    config: GroupConfig,
    outcome: Result<AppendOutcome, ResponseError>,
    /// One permit per commit the test lets complete.
    commits: Arc<Semaphore>,
    appended: Mutex<Vec<AppendEntry>>,
}

impl FakeHost {
    fn new(outcome: Result<AppendOutcome, ResponseError>) -> Arc<FakeHost> {
        Arc::new(FakeHost {
            config: GroupConfig {
                initial_rebalance_delay_ms: 0,
                ..GroupConfig::default()
            },
            outcome,
            commits: Arc::new(Semaphore::new(0)),
            appended: Mutex::new(Vec::new()),
        })
    }
}

impl CoordinatorHost for FakeHost {
    fn broker_id(&self) -> i32 {
        1
    }
    fn now_ms(&self) -> u64 {
        1_000
    }
    fn wall_ms(&self) -> i64 {
        1_000
    }
    fn group_config(&self) -> &GroupConfig {
        &self.config
    }
    fn offsets_partitions(&self) -> Option<i32> {
        Some(1)
    }
    fn serve_offsets<T>(
        &self,
        _index: i32,
        act: impl FnOnce(i32) -> Result<T, ResponseError>,
    ) -> Result<T, ResponseError> {
        act(EPOCH)
    }
    fn offsets_replica(&self, _index: i32) -> Option<Arc<Partition>> {
        None
    }
    fn append_records(
        self: &Arc<Self>,
        _acks: i16,
        _timeout: Duration,
        entries: Vec<AppendEntry>,
    ) -> Committing {
        let keys: Vec<(String, i32)> = entries.iter().map(|e| (e.topic.clone(), e.index)).collect();
        self.appended.lock().unwrap().extend(entries);
        let (commits, outcome) = (self.commits.clone(), self.outcome);
        Box::pin(async move {
            commits.acquire().await.expect("open").forget();
            let results: AppendResults = keys.into_iter().map(|(t, i)| (t, i, outcome)).collect();
            results
        })
    }
}

const EPOCH: i32 = 7;
const GROUP: &str = "g";

fn join_request() -> JoinRequest {
    JoinRequest {
        member_id: String::new(),
        new_member_id: "m-1".to_string(),
        group_instance_id: None,
        client_id: "c".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".to_string(),
        protocols: vec![("range".to_string(), vec![])],
        require_known_member_id: false,
    }
}

/// A lone member joins (answered at once: nothing to store) and, as
/// leader, syncs; returns the sync's receiver.
fn join_and_sync(host: &Arc<FakeHost>, shard: &Arc<Shard>) -> oneshot::Receiver<Reply> {
    let mut groups = shard.lock();
    let (waiter, mut joined) = shard.park(&mut groups, GROUP);
    let effects = Shard::entry(&mut groups, GROUP).group.join(
        host.now_ms(),
        &host.config,
        join_request(),
        waiter,
    );
    shard.deliver(host, &mut groups, GROUP, effects);
    let Ok(Reply::Join(join)) = joined.try_recv() else {
        panic!("the join is answered at once");
    };
    assert_eq!(join.error, None);
    let (waiter, synced) = shard.park(&mut groups, GROUP);
    let sync = SyncRequest {
        member_id: join.member_id.clone(),
        group_instance_id: None,
        generation_id: join.generation_id,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![(join.member_id, b"all".to_vec())],
    };
    let effects = Shard::entry(&mut groups, GROUP)
        .group
        .sync(host.now_ms(), sync, waiter);
    shard.deliver(host, &mut groups, GROUP, effects);
    synced
}

fn loaded_shard() -> Arc<Shard> {
    let shard = Arc::new(Shard::new(0, EPOCH));
    shard.mark_loaded();
    shard
}

#[tokio::test]
async fn a_generation_is_answered_only_once_it_is_stored_in_the_shards_epoch() {
    let host = FakeHost::new(Ok(AppendOutcome {
        base_offset: 0,
        log_start_offset: 0,
    }));
    let shard = loaded_shard();
    let mut synced = join_and_sync(&host, &shard);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        matches!(synced.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "the leader's sync is answered before its generation is stored"
    );
    {
        let appended = host.appended.lock().unwrap();
        let entry = appended.first().expect("the generation is appended");
        assert_eq!(
            (entry.topic.as_str(), entry.index, entry.required_epoch),
            (OFFSETS_TOPIC, 0, Some(EPOCH)),
            "written to the shard's partition, only in the epoch it loaded in"
        );
    }
    host.commits.add_permits(1);
    let reply = tokio::time::timeout(Duration::from_secs(5), synced)
        .await
        .expect("answered once stored")
        .expect("not dropped");
    let Reply::Sync(sync) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!((sync.error, sync.assignment), (None, b"all".to_vec()));
    assert_eq!(
        shard.lock()[GROUP].group.state(),
        GroupState::Stable,
        "stored, the generation stands"
    );
}

#[tokio::test]
async fn a_generation_not_stored_is_never_answered_and_the_group_rebalances() {
    let host = FakeHost::new(Err(ResponseError::NotEnoughReplicas));
    let shard = loaded_shard();
    let synced = join_and_sync(&host, &shard);
    host.commits.add_permits(1);
    let reply = tokio::time::timeout(Duration::from_secs(5), synced)
        .await
        .expect("settled");
    assert!(
        reply.is_err(),
        "the reply is dropped (the handler answers NOT_COORDINATOR): {reply:?}"
    );
    assert_eq!(
        shard.lock()[GROUP].group.state(),
        GroupState::PreparingRebalance,
        "the generation is not trusted: the members rejoin"
    );
}

#[test]
fn an_unloaded_shard_writes_nothing() {
    let host = FakeHost::new(Err(ResponseError::NotEnoughReplicas));
    let shard = loaded_shard();
    shard.unload();
    let refused = shard.append(&host, &[]).err();
    assert_eq!(refused, Some(ResponseError::NotCoordinator));
    assert!(host.appended.lock().unwrap().is_empty());
}
