//! A broker's metadata feed follows every commit, and keeps following when
//! the active controller changes.

mod common;

use controller::metadata::ClusterMetadata;
use controller::rules::lease::LeaseConfig;
use controller::service::{call, ControllerRequest as Req, ControllerResponse as Resp};
use std::time::{Duration, Instant};

const LEASE: LeaseConfig = LeaseConfig {
    session_timeout_ms: 1_000,
    max_clock_drift_ppm: 10_000,
};

async fn create_on_leader(addrs: &[String], name: &str) {
    let start = Instant::now();
    loop {
        for a in addrs {
            if let Ok(Resp::Committed(_)) = call(
                a,
                Req::CreateTopic {
                    name: name.into(),
                    partitions: 1,
                    replication_factor: 1,
                    configs: Default::default(),
                },
            )
            .await
            {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no controller committed {name}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_topic(rx: &mut tokio::sync::watch::Receiver<(u64, ClusterMetadata)>, name: &str) {
    tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|(_, m)| m.topics.contains_key(name)),
    )
    .await
    .unwrap_or_else(|_| panic!("the feed never showed {name}"))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_follows_commits_across_a_controller_change() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = common::free_quorum(3);
    let mut nodes = common::start_all(&quorum, dir.path(), LEASE).await;
    let addrs: Vec<String> = quorum.values().cloned().collect();
    // A topic needs a live broker to hold its replica.
    let start = Instant::now();
    loop {
        let mut done = false;
        for a in &addrs {
            if let Ok(Resp::Registered { .. }) = call(
                a,
                Req::RegisterBroker {
                    id: 1,
                    endpoint: "b1:9092".into(),
                    incarnation: 1,
                },
            )
            .await
            {
                done = true;
            }
        }
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no leader to register with"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (tx, mut rx) = tokio::sync::watch::channel((0, ClusterMetadata::default()));
    let feed = tokio::spawn(controller::metadata_feed::follow(addrs.clone(), tx));
    create_on_leader(&addrs, "one").await;
    wait_topic(&mut rx, "one").await;

    let leader = nodes
        .values()
        .find_map(|n| n.service.controller.leader())
        .unwrap();
    nodes.remove(&leader).unwrap().shutdown().await;
    let survivors: Vec<String> = quorum
        .iter()
        .filter(|(id, _)| **id != leader)
        .map(|(_, a)| a.clone())
        .collect();
    create_on_leader(&survivors, "two").await;
    wait_topic(&mut rx, "two").await;
    assert!(
        rx.borrow().1.topics.contains_key("one"),
        "nothing is lost on the way"
    );
    feed.abort();
    for (_, n) in std::mem::take(&mut nodes) {
        n.shutdown().await;
    }
}
