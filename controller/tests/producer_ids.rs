//! Producer-id blocks (KIP-730's AllocateProducerIds) through a real
//! three-controller quorum (in-process, real TCP): only the active
//! controller allocates, a stale broker epoch gets nothing, and blocks stay
//! disjoint and increasing across the loss of the active controller and a
//! restart of the whole quorum from disk.

mod common;

use controller::commands::{CommandResult, PRODUCER_ID_BLOCK_SIZE};
use controller::rules::lease::LeaseConfig;
use controller::service::{call, ControllerRequest as Req, ControllerResponse as Resp};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Long enough that the broker, which never heartbeats here, is not fenced
/// during the test.
const LEASE: LeaseConfig = LeaseConfig {
    session_timeout_ms: 120_000,
    max_clock_drift_ppm: 10_000,
};

/// Sends a leader-only request to whichever controller is active.
async fn ask(addrs: &[String], r: Req) -> Resp {
    let what = format!("{r:?}");
    controller::service::call_active(addrs, r, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no active controller for {what}"))
}

/// One block for broker 1 in `epoch`, as `(first, count)`.
async fn allocate(addrs: &[String], epoch: u64) -> (i64, i64) {
    let request = Req::AllocateProducerIds {
        broker: 1,
        broker_epoch: epoch,
    };
    match ask(addrs, request).await {
        Resp::Committed(CommandResult::ProducerIds { first, count }) => (first, count),
        other => panic!("allocate: {other:?}"),
    }
}

/// Every block has Kafka's size and starts at or after the previous one's
/// end: no id is in two blocks.
fn assert_disjoint_and_increasing(blocks: &[(i64, i64)]) {
    assert!(
        blocks
            .iter()
            .all(|(_, count)| *count == PRODUCER_ID_BLOCK_SIZE),
        "{blocks:?}"
    );
    for pair in blocks.windows(2) {
        let ((a, a_count), (b, _)) = (pair[0], pair[1]);
        assert!(a + a_count <= b, "overlapping or out of order: {blocks:?}");
    }
}

/// Asks a follower directly: it must not allocate, only point at the leader.
async fn follower_refuses(quorum: &BTreeMap<u64, String>, active: u64, epoch: u64) {
    let follower = quorum.keys().find(|id| **id != active).unwrap();
    let request = Req::AllocateProducerIds {
        broker: 1,
        broker_epoch: epoch,
    };
    match call(&quorum[follower], request).await {
        Ok(Resp::NotController { .. }) => {}
        other => panic!("a follower allocated or failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_id_blocks_stay_disjoint_across_failover_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = common::free_quorum(3);
    let addrs: Vec<String> = quorum.values().cloned().collect();
    let mut nodes = common::start_all(&quorum, dir.path(), LEASE).await;
    let first = common::leader(&nodes, Duration::from_secs(15)).await;
    let register = Req::RegisterBroker {
        id: 1,
        endpoint: "b1:9092".into(),
        incarnation: 1,
    };
    let Resp::Registered { epoch, .. } = ask(&addrs, register).await else {
        panic!("registration failed");
    };
    follower_refuses(&quorum, first, epoch).await;
    let stale = Req::AllocateProducerIds {
        broker: 1,
        broker_epoch: epoch + 1,
    };
    match ask(&addrs, stale).await {
        Resp::Committed(CommandResult::Refused(why)) => assert!(why.contains("stale"), "{why}"),
        other => panic!("a stale epoch got {other:?}"),
    }

    let mut blocks = Vec::new();
    for _ in 0..3 {
        blocks.push(allocate(&addrs, epoch).await);
    }
    assert_eq!(blocks[0].0, 0, "the first block starts at 0");

    // The active controller dies: the next one continues the counter.
    nodes.remove(&first).unwrap().shutdown().await;
    let second = common::leader(&nodes, Duration::from_secs(15)).await;
    assert_ne!(second, first);
    for _ in 0..3 {
        blocks.push(allocate(&addrs, epoch).await);
    }
    assert_disjoint_and_increasing(&blocks);

    // The whole quorum restarts from disk: the counter is still there.
    nodes.insert(
        first,
        common::start_one(first, &quorum, dir.path(), LEASE).await,
    );
    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await;
    }
    nodes = common::start_all(&quorum, dir.path(), LEASE).await;
    common::leader(&nodes, Duration::from_secs(15)).await;
    for _ in 0..2 {
        blocks.push(allocate(&addrs, epoch).await);
    }
    assert_disjoint_and_increasing(&blocks);

    // Every controller applied the same counter: one past the last block.
    let (last, count) = *blocks.last().unwrap();
    let start = Instant::now();
    while nodes
        .values()
        .any(|n| n.service.controller.state().metadata.next_producer_id != last + count)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "controllers disagree on the next producer id"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, node) in nodes {
        node.shutdown().await;
    }
}
