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
use common::try_produce;
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
) -> Vec<(i32, i64)> {
    let mut accepted = Vec::new();
    for round in 0usize.. {
        let broker = 1 + (round % 3) as i32;
        let attempt = async {
            let mut conn = client::Connection::connect(cluster.broker_addr(broker))
                .await
                .ok()?;
            let batch = storage::batch::build_batch(&[b"v"], 0).into();
            try_produce(&mut conn, TOPIC, p, batch).await
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return accepted,
            result = tokio::time::timeout(Duration::from_millis(300), attempt) => {
                if let Ok(Some((0, offset))) = result {
                    accepted.push((broker, offset));
                }
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
    let epochs = |seen: &Seen| {
        let mut max = BTreeMap::new();
        for (p, e) in seen.lock().unwrap().keys() {
            let m = max.entry(*p).or_insert(*e);
            *m = (*m).max(*e);
        }
        max
    };
    let epochs_before_kill = epochs(&seen);
    cluster.kill_active_controller().await;
    admin
        .create_topic("after-controller-kill", 1, 3, &[])
        .await
        .expect("create a topic with a controller down");
    cluster.signal_broker(3, Signal::STOP);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    cluster.signal_broker(3, Signal::CONT);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let epochs_after = epochs(&seen);
    assert!(
        epochs_after
            .iter()
            .any(|(p, e)| epochs_before_kill.get(p).is_none_or(|b| e > b)),
        "a leader was elected with a controller down: {epochs_before_kill:?} -> {epochs_after:?}"
    );
    stop.send_replace(true);
    let mut accepted = BTreeMap::new();
    for (p, w) in writers.into_iter().enumerate() {
        accepted.insert(p as i32, w.await.expect("writer"));
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

    // Every batch in every log (leaders' appends and followers' copies)
    // carries an epoch the controller assigned, and every acknowledged
    // write sits, on the final leader, in a batch of an epoch the
    // controller gave the very broker that acknowledged it.
    let last = cluster.describe(1, TOPIC).await;
    let (_dir, logs) = Arc::into_inner(cluster)
        .expect("no task holds the cluster")
        .stop();
    let logs: BTreeMap<i32, std::path::PathBuf> = logs.into_iter().collect();
    for p in 0..PARTITIONS {
        for dir in logs.values() {
            for (_, epoch) in batch_epochs(&dir.join(format!("{TOPIC}-{p}"))) {
                assert!(
                    seen.contains_key(&(p, epoch)),
                    "partition {p} epoch {epoch} was never assigned"
                );
            }
        }
        let leader = last[p as usize].leader;
        let on_leader: BTreeMap<i64, i32> =
            batch_epochs(&logs[&leader].join(format!("{TOPIC}-{p}")))
                .into_iter()
                .collect();
        for (broker, offset) in &accepted[&p] {
            let epoch = on_leader.get(offset).unwrap_or_else(|| {
                panic!("acknowledged write at {offset} of partition {p} is not on leader {leader}")
            });
            assert_eq!(
                seen[&(p, *epoch)].iter().copied().collect::<Vec<_>>(),
                vec![*broker],
                "broker {broker} acknowledged offset {offset} of partition {p}, written in epoch {epoch}"
            );
        }
    }
    let total: usize = accepted.values().map(Vec::len).sum();
    assert!(total > 100, "the writers made progress: {total}");
}

/// (base offset, `partitionLeaderEpoch`) of every batch in the log at `dir`.
fn batch_epochs(dir: &std::path::Path) -> Vec<(i64, i32)> {
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
            epochs.push((header.base_offset, header.partition_leader_epoch));
            offset = header.next_offset();
            at += header.size;
        }
    }
    epochs
}
