//! A follower that was down while the leader's retention deleted every
//! segment past its log end (issue 18) on a real cluster (`baton
//! local-cluster`): once restarted, its fetch offset is below the leader's
//! log start, so it must start over at that log start (Kafka's
//! `truncateFullyAndStartAt`), rejoin the ISR and hold the leader's bytes.

mod common;

use common::cluster::LocalCluster;
use rustix::process::Signal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Log, Offset};

const TOPIC: &str = "retained";

/// The topic's segment.bytes: a handful of batches.
const SEGMENT_BYTES: usize = 1024;
/// The topic's retention.bytes: a few segments, so retention moves the log
/// start while the follower is down. What retention leaves of a log is
/// never less (it deletes a segment only if as much remains).
const RETENTION_BYTES: usize = 2 * SEGMENT_BYTES;

/// Records written before the follower is killed: the log it keeps.
const RECORDS_BEFORE: usize = 20;
/// Records written while it is down: many segments' worth.
const RECORDS_WHILE_DOWN: usize = 200;

/// How long the restarted follower may take to rejoin the ISR.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain `#[test]` that builds its runtime: the retention interval is set
/// in the environment (local-cluster's brokers, and the broker the test
/// restarts, inherit it) before any other thread runs.
#[test]
fn follower_behind_the_leaders_log_start_rejoins_the_isr() {
    // Every 500 ms instead of Kafka's 5 minutes.
    std::env::set_var("BATON_LOG_RETENTION_CHECK_INTERVAL_MS", "500");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(story());
}

async fn story() {
    let started = Instant::now();
    let mut cluster = LocalCluster::start(3, 3);
    let bootstrap = bootstrap(&cluster);
    let mut admin = client::Admin::connect(&bootstrap).await.expect("admin");
    let (segment_bytes, retention_bytes) = (SEGMENT_BYTES.to_string(), RETENTION_BYTES.to_string());
    let configs = [
        ("segment.bytes", segment_bytes.as_str()),
        ("retention.bytes", retention_bytes.as_str()),
        ("min.insync.replicas", "2"),
    ];
    admin
        .create_topic(TOPIC, 1, 3, &configs)
        .await
        .expect("create topic");
    let full = |p: &[client::admin::PartitionInfo]| p[0].leader > 0 && p[0].isr.len() == 3;
    cluster
        .wait_for_topic(1, TOPIC, Duration::from_secs(20), full)
        .await;
    let leader = cluster.describe(1, TOPIC).await[0].leader;
    let follower = if leader == 1 { 2 } else { 1 };
    let producer = client::Producer::new(client::ProducerConfig::new(&bootstrap))
        .await
        .expect("producer");

    // Acknowledged with acks=all while the follower is in the ISR, so its
    // log ends at or past `follower_end`.
    let follower_end = produce(&producer, RECORDS_BEFORE).await;
    cluster.signal_broker(follower, Signal::KILL);
    let leader_end = produce(&producer, RECORDS_WHILE_DOWN).await;
    let leader_start = settled_log_start(&mut admin, follower_end).await;
    eprintln!(
        "follower {follower} killed at log end {follower_end}; leader {leader} \
         now holds {leader_start}..{leader_end}"
    );

    cluster.restart_broker(follower);
    wait_for_isr(&cluster, leader, follower).await;

    let (_dir, brokers) = cluster.stop();
    let dir_of = |id: i32| {
        let (_, dir) = brokers.iter().find(|(b, _)| *b == id).expect("broker");
        dir.join(format!("{TOPIC}-0"))
    };
    check_replica(&dir_of(leader), &dir_of(follower), leader_start, leader_end);
    eprintln!("done in {:?}", started.elapsed());
}

/// Every broker's address, comma-separated.
fn bootstrap(cluster: &LocalCluster) -> String {
    let addrs: Vec<&str> = cluster.brokers.values().map(|(_, a)| a.as_str()).collect();
    addrs.join(",")
}

/// Sends `count` records of 100 bytes, one batch each (a batch must fit a
/// segment), acks=all; returns the offset after the last.
async fn produce(producer: &client::Producer, count: usize) -> Offset {
    let mut next = 0;
    for i in 0..count {
        let value = format!("{i:0100}").into_bytes();
        let record = client::Record::new(TOPIC, value).with_partition(0);
        let delivery = producer.send(record).await.expect("queued");
        next = delivery.await.expect("acknowledged").offset + 1;
    }
    next
}

/// The leader's log start (ListOffsets EARLIEST) once retention has moved
/// it past `past` and then left it alone for a few retention intervals, so
/// the leader deletes nothing more while the follower catches up.
async fn settled_log_start(admin: &mut client::Admin, past: Offset) -> Offset {
    let deadline = Instant::now() + Duration::from_secs(20);
    let partition = (TOPIC.to_string(), 0);
    let mut seen = None;
    loop {
        let starts = admin
            .log_start_offsets(std::slice::from_ref(&partition))
            .await
            .expect("ListOffsets");
        let start = starts[&partition];
        if start > past && seen == Some(start) {
            return start;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not move the log start past {past} and settle: at {start}"
        );
        seen = Some(start);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
}

/// Waits until the leader reports `follower` in the ISR (Metadata).
async fn wait_for_isr(cluster: &LocalCluster, leader: i32, follower: i32) {
    let restarted = Instant::now();
    loop {
        let topic = cluster.try_describe(leader, TOPIC).await;
        let isr = topic.as_ref().map(|p| p[0].isr.clone()).unwrap_or_default();
        if isr.contains(&follower) {
            eprintln!(
                "follower {follower} back in the ISR after {:?}",
                restarted.elapsed()
            );
            return;
        }
        assert!(
            restarted.elapsed() < REJOIN_TIMEOUT,
            "follower {follower}, restarted below the leader's log start, is not back in \
             the ISR within {REJOIN_TIMEOUT:?}: {topic:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The follower's log, read after the cluster stopped, starts at or past
/// the leader's log start when it was restarted (its own retention may
/// have moved it on, never further than retention.bytes allows), ends
/// where the leader's does, and every byte of it is the leader's.
fn check_replica(leader_dir: &Path, follower_dir: &Path, restart_start: Offset, end: Offset) {
    let open = |dir: &Path| {
        Log::open(
            Arc::new(storage::fs::OsFs),
            dir,
            storage::LogConfig::default(),
        )
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
    };
    let (leader, follower) = (open(leader_dir), open(follower_dir));
    let start = follower.log_start_offset();
    eprintln!(
        "leader's log {}..{}, follower's {start}..{}",
        leader.log_start_offset(),
        leader.log_end_offset(),
        follower.log_end_offset()
    );
    assert_eq!(leader.log_end_offset(), end, "the leader lost writes");
    assert_eq!(follower.log_end_offset(), end, "the follower's log end");
    assert!(
        start >= restart_start,
        "the follower's log starts at {start}, below the leader's {restart_start}"
    );
    assert!(
        start >= leader.log_start_offset(),
        "the follower holds offsets {start}.. the leader deleted"
    );
    let bytes = batches_from(&follower, start);
    assert!(
        bytes == batches_from(&leader, start),
        "the follower's batches from {start} differ from the leader's"
    );
    // A follower that started further on (at the leader's log end, say)
    // would match over its range but miss records the leader still has.
    let leader_bytes = batches_from(&leader, leader.log_start_offset()).len();
    assert!(
        bytes.len() >= leader_bytes.min(RETENTION_BYTES),
        "the follower holds {} bytes from {start}, less than retention leaves of the \
         leader's {leader_bytes}",
        bytes.len()
    );
}

/// The raw batches of `log` from `start` to its end.
fn batches_from(log: &Log, start: Offset) -> Vec<u8> {
    let (mut bytes, mut offset) = (Vec::new(), start);
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 20, log.log_end_offset())
            .expect("read");
        assert!(read.next_offset > offset, "no batch at {offset}");
        bytes.extend_from_slice(&read.bytes);
        offset = read.next_offset;
    }
    bytes
}
