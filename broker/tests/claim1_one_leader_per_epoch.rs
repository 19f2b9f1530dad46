//! Claim 1 with real processes (`baton local-cluster`): for each partition,
//! leader epochs strictly increase, each is assigned by the controller
//! exactly once, and only the broker assigned an epoch ever appends as
//! leader in it.
//!
//! Brokers are frozen in turn past their session timeout and the active
//! controller is killed, while writers send a record to every partition's
//! believed leader every few milliseconds and watchers record every
//! (partition, epoch, leader) each broker reports through Metadata. At the
//! end, every batch in every broker's log carries an epoch that the
//! controller gave to that very broker. (With the active controller dead,
//! topics are still created and leaders elected: claim 9.)

mod common;

use common::cluster::LocalCluster;
use common::produce;
use rustix::process::Signal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPIC: &str = "epochs";
const PARTITIONS: i32 = 3;

/// (partition, epoch) -> every leader any broker reported for it.
type Seen = Arc<Mutex<BTreeMap<(i32, i32), BTreeSet<i32>>>>;

/// Polls broker `via`'s Metadata until `stop`, recording what it reports and
/// checking that its epochs never go backwards.
async fn watch(
    cluster: Arc<LocalCluster>,
    via: i32,
    seen: Seen,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: BTreeMap<i32, i32> = BTreeMap::new();
    loop {
        let polled =
            tokio::time::timeout(Duration::from_millis(300), cluster.try_describe(via, TOPIC));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            result = polled => {
                // A frozen broker does not answer: skip it.
                let Ok(Some(partitions)) = result else { continue };
                for p in partitions {
                    let before = last.insert(p.partition, p.leader_epoch).unwrap_or(0);
                    assert!(
                        p.leader_epoch >= before,
                        "broker {via} reported epoch {} after {before} for partition {}",
                        p.leader_epoch, p.partition
                    );
                    if p.leader >= 0 {
                        let mut seen = seen.lock().unwrap();
                        seen.entry((p.partition, p.leader_epoch)).or_default().insert(p.leader);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends one record at a time to partition `p` through every broker in
/// turn (leader or not: refusals are expected), until `stop`.
async fn write(
    cluster: Arc<LocalCluster>,
    p: i32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let mut accepted = 0;
    for round in 0usize.. {
        let broker = 1 + (round % 3) as i32;
        let attempt = async {
            let mut conn = client::Connection::connect(cluster.broker_addr(broker))
                .await
                .ok()?;
            let batch = storage::batch::build_batch(&[b"v"], 0).into();
            Some(produce(&mut conn, TOPIC, p, batch).await.0)
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return accepted,
            result = tokio::time::timeout(Duration::from_millis(300), attempt) => {
                accepted += usize::from(matches!(result, Ok(Some(0))));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim1_each_epoch_has_one_leader_and_only_it_appends() {
    let cluster = Arc::new(LocalCluster::start(3, 3));
    let mut admin = client::Admin::connect(cluster.broker_addr(1))
        .await
        .expect("admin");
    admin
        .create_topic(TOPIC, PARTITIONS, 3, &[])
        .await
        .expect("create topic");
    let seen: Seen = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    for via in 1..=3 {
        watchers.push(tokio::spawn(watch(
            cluster.clone(),
            via,
            seen.clone(),
            stopped.clone(),
        )));
    }
    let writers: Vec<_> = (0..PARTITIONS)
        .map(|p| tokio::spawn(write(cluster.clone(), p, stopped.clone())))
        .collect();

    // Freeze each broker in turn past its session timeout, and kill -9 the
    // active controller between two of them.
    for broker in [1, 2] {
        cluster.signal_broker(broker, Signal::STOP);
        tokio::time::sleep(Duration::from_millis(1_800)).await;
        cluster.signal_broker(broker, Signal::CONT);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Claim 9 too: with a minority of controllers down, topics are created
    // and leaders elected.
    let max_epoch = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .keys()
            .map(|(_, e)| *e)
            .max()
            .unwrap_or(0)
    };
    let epoch_before_kill = max_epoch(&seen);
    cluster.kill_active_controller().await;
    admin
        .create_topic("after-controller-kill", 1, 3, &[])
        .await
        .expect("create a topic with a controller down");
    cluster.signal_broker(3, Signal::STOP);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    cluster.signal_broker(3, Signal::CONT);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    assert!(
        max_epoch(&seen) > epoch_before_kill,
        "a leader was elected with a controller down"
    );
    stop.send_replace(true);
    let mut accepted = 0;
    for w in writers {
        accepted += w.await.expect("writer");
    }
    for w in watchers {
        w.await.expect("watcher"); // panics inside a watcher fail here
    }
    let seen = seen.lock().unwrap().clone();
    for ((p, epoch), leaders) in &seen {
        assert_eq!(
            leaders.len(),
            1,
            "partition {p} epoch {epoch} had leaders {leaders:?}"
        );
    }
    for p in 0..PARTITIONS {
        let epochs: Vec<i32> = seen
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, e)| *e)
            .collect();
        assert!(
            epochs.len() >= 2,
            "partition {p} changed leader: {epochs:?}"
        );
    }

    // Every appended batch carries an epoch the controller gave its broker.
    let (_dir, logs) = Arc::into_inner(cluster)
        .expect("no task holds the cluster")
        .stop();
    let mut batches = 0;
    for (broker, dir) in logs {
        for p in 0..PARTITIONS {
            for epoch in batch_epochs(&dir.join(format!("{TOPIC}-{p}"))) {
                batches += 1;
                let leaders = seen.get(&(p, epoch));
                assert_eq!(
                    leaders.map(|l| l.iter().copied().collect::<Vec<_>>()),
                    Some(vec![broker]),
                    "broker {broker} appended to partition {p} in epoch {epoch}"
                );
            }
        }
    }
    // A write whose answer timed out may still have been appended.
    assert!(
        batches >= accepted,
        "every accepted write is in a log: {batches} < {accepted}"
    );
    assert!(accepted > 100, "the writers made progress: {accepted}");
}

/// The `partitionLeaderEpoch` of every batch in the log at `dir`.
fn batch_epochs(dir: &std::path::Path) -> Vec<i32> {
    if !dir.exists() {
        return Vec::new();
    }
    let fs = Arc::new(storage::fs::OsFs);
    let log = storage::Log::open(fs, dir, storage::LogConfig::default()).expect("open log");
    let mut epochs = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 20, log.log_end_offset())
            .expect("read");
        let mut at = 0;
        while at < read.bytes.len() {
            let header =
                storage::batch::parse_header(&read.bytes[at..], usize::MAX >> 1).expect("batch");
            epochs.push(header.partition_leader_epoch);
            offset = header.next_offset();
            at += header.size;
        }
    }
    epochs
}
