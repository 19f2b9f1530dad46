//! A follower's durable end (`broker::durable_end`, issue 18) on a real
//! cluster: the leader counts a follower's records toward the high
//! watermark only once the follower reports them durable, and a position
//! report pipelined behind the follower's long-polling fetch moves the high
//! watermark at once rather than when that fetch's long poll ends.
//!
//! The test plays the follower: the real one is stopped (SIGSTOP) and the
//! controllers' session timeout is long, so it stays in the ISR while the
//! test fetches under its id.

mod common;

use broker::durable_end;
use client::Connection;
use common::cluster::LocalCluster;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::BrokerId;
use rustix::process::Signal;
use std::time::{Duration, Instant};

const TOPIC: &str = "durable";
/// The played follower's long poll: far longer than the waits below.
const LONG_POLL_MS: i32 = 5_000;

/// A Fetch as replica `follower` at `fetch_offset`, reporting `durable`;
/// `report` asks for no records and no wait.
fn fetch(follower: i32, epoch: i32, fetch_offset: i64, durable: i64, report: bool) -> FetchRequest {
    let mut request = common::fetch_request(TOPIC, 0, fetch_offset, LONG_POLL_MS);
    request.replica_id = BrokerId(follower);
    let p = request.topics[0].partitions.remove(0);
    let mut p = p.with_current_leader_epoch(epoch);
    if report {
        request.max_wait_ms = 0;
        request.min_bytes = 0;
        p.partition_max_bytes = 0;
    }
    request.topics[0]
        .partitions
        .push(durable_end::attach(p, durable));
    request
}

fn records(response: &FetchResponse) -> usize {
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "{response:?}");
    p.records.as_ref().map_or(0, |r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_counts_a_followers_durable_end_and_a_pipelined_report_moves_the_hw() {
    let cluster = LocalCluster::start_with(2, 3, &["--session-timeout-ms", "60000"]);
    let bootstrap = format!("{},{}", cluster.broker_addr(1), cluster.broker_addr(2));
    let mut admin = client::Admin::connect(cluster.broker_addr(1))
        .await
        .expect("admin");
    admin
        .create_topic(TOPIC, 1, 2, &[("min.insync.replicas", "2")])
        .await
        .expect("create topic");
    let producer = client::Producer::new(client::ProducerConfig::new(&bootstrap))
        .await
        .expect("producer");
    let first = client::Record::new(TOPIC, "first").with_partition(0);
    let stored = producer.send(first).await.expect("send");
    assert_eq!(stored.await.expect("acknowledged").offset, 0);
    let state = cluster.describe(1, TOPIC).await.remove(0);
    assert_eq!(state.isr.len(), 2, "{state:?}");
    let (leader, epoch) = (state.leader, state.leader_epoch);
    let follower = if leader == 1 { 2 } else { 1 };
    // Offset 0 is on both; from here the test is the follower.
    cluster.signal_broker(follower, Signal::STOP);

    let second = client::Record::new(TOPIC, "second").with_partition(0);
    let mut acked = tokio::spawn(producer.send(second).await.expect("send"));
    let mut conn = Connection::connect(cluster.broker_addr(leader))
        .await
        .expect("connect to the leader");
    // The follower fetches offset 1 and writes it, not yet durable.
    let start = Instant::now();
    let response = loop {
        let response = conn
            .send(&fetch(follower, epoch, 1, 1, false), 12)
            .await
            .expect("fetch");
        if records(&response) > 0 || start.elapsed() > Duration::from_secs(10) {
            break response;
        }
    };
    assert!(
        records(&response) > 0,
        "the second record reached the leader"
    );

    // Fetching on from offset 2 with offset 1 not yet durable: the high
    // watermark stays at 1, so the acks=all produce waits.
    let long_poll = conn
        .send_request(&fetch(follower, epoch, 2, 1, false), 12)
        .await
        .expect("fetch");
    let waited = tokio::time::timeout(Duration::from_millis(700), &mut acked).await;
    assert!(
        waited.is_err(),
        "acknowledged before the follower had it durably"
    );

    // The sync completes: a position report behind the long poll.
    let reported = Instant::now();
    let report = conn
        .send_request(&fetch(follower, epoch, 2, 2, true), 12)
        .await
        .expect("report");
    let stored = tokio::time::timeout(Duration::from_millis(2_000), &mut acked)
        .await
        .expect("the report moved the high watermark before the long poll ended")
        .expect("task")
        .expect("acknowledged");
    assert_eq!(stored.offset, 1);
    eprintln!("acknowledged {:?} after the report", reported.elapsed());

    // Responses in order: the long poll (it ends when its time is up, with
    // nothing new), then the report, with no records and the new HW.
    let polled: FetchResponse = conn
        .receive::<FetchRequest>(12, long_poll)
        .await
        .expect("long poll");
    assert_eq!(records(&polled), 0);
    let report: FetchResponse = conn
        .receive::<FetchRequest>(12, report)
        .await
        .expect("report");
    assert_eq!(records(&report), 0, "a position report carries no records");
    assert_eq!(report.responses[0].partitions[0].high_watermark, 2);
    cluster.signal_broker(follower, Signal::CONT);
}

/// The real followers: each sync they complete is reported at once, not
/// with their next fetch (which long-polls 500 ms when nothing new comes).
/// Sequential acks=all produces (one in flight, so nothing new arrives
/// while one waits) would each take a long poll without the report: 20 of
/// them at least 10 s. With it, each takes a few milliseconds; the bound
/// leaves a wide margin for a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_completed_sync_acknowledges_without_waiting_for_its_long_poll() {
    const SENDS: u32 = 20;
    let cluster = LocalCluster::start_with_topic(TOPIC).await;
    let bootstrap = format!("{},{}", cluster.broker_addr(1), cluster.broker_addr(2));
    let producer = client::Producer::new(client::ProducerConfig::new(&bootstrap))
        .await
        .expect("producer");
    // The first send also finds the leader and starts the followers.
    let first = client::Record::new(TOPIC, "warm-up").with_partition(0);
    producer
        .send(first)
        .await
        .expect("send")
        .await
        .expect("ack");
    let start = Instant::now();
    for i in 0..SENDS {
        let record = client::Record::new(TOPIC, i.to_string()).with_partition(0);
        producer
            .send(record)
            .await
            .expect("send")
            .await
            .expect("ack");
    }
    let took = start.elapsed();
    eprintln!("{SENDS} sequential acks=all produces took {took:?}");
    assert!(
        took < Duration::from_millis(500) * SENDS / 2,
        "{SENDS} sequential acknowledgements took {took:?}: a long poll each"
    );
}
