//! Three controllers on loopback (in-process, real TCP): the quorum
//! survives the loss of its leader without losing committed metadata,
//! commits nothing without a majority, and resumes from disk (claim 9).

mod common;

use controller::commands::{Command, CommandResult};
use controller::raft::node::ControllerConfig;
use controller::rules::lease::LeaseConfig;
use controller::service::Running;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const LEASE: LeaseConfig = LeaseConfig {
    session_timeout_ms: 1_000,
    max_clock_drift_ppm: 10_000,
};

async fn start(id: u64, quorum: &BTreeMap<u64, String>, dir: &Path) -> Running {
    common::start_one(id, quorum, dir, LEASE).await
}

/// Registers broker `id` through whichever controller is active, retrying
/// through elections (under load one can happen at any moment).
async fn register(nodes: &BTreeMap<u64, Running>, id: i32) -> Option<u64> {
    let start = Instant::now();
    loop {
        for node in nodes.values() {
            let command = Command::RegisterBroker {
                id,
                endpoint: format!("b{id}:9092"),
                incarnation: 0,
            };
            match node.service.controller.propose(command).await {
                Ok(CommandResult::Ok { broker_epoch, .. }) => return broker_epoch,
                Err(controller::raft::node::ControllerError::NotLeader { .. }) => {}
                other => panic!("registration failed: {other:?}"),
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no controller accepted the registration"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn converge(nodes: &BTreeMap<u64, Running>, brokers: usize) {
    let start = Instant::now();
    while nodes
        .values()
        .any(|c| c.service.controller.state().metadata.brokers.len() != brokers)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "controllers did not converge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_survives_leader_loss_stops_without_majority_and_resumes_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = common::free_quorum(3);
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(id, &quorum, dir.path()).await);
    }
    let first = common::leader(&nodes, Duration::from_secs(10)).await;
    assert_eq!(register(&nodes, 1).await, Some(1));
    converge(&nodes, 1).await;

    // The active controller dies: another takes over, nothing committed is lost.
    nodes.remove(&first).unwrap().shutdown().await;
    let lost_at = Instant::now();
    let second = common::leader(&nodes, Duration::from_secs(10)).await;
    let takeover = lost_at.elapsed();
    assert_ne!(second, first);
    // Two election timeouts (2 x 600 ms), plus scheduling slack on 2 cores.
    assert!(
        takeover < Duration::from_millis(2_000),
        "takeover took {takeover:?}"
    );
    assert_eq!(
        register(&nodes, 2).await,
        Some(2),
        "epoch 1 was not lost or reused"
    );
    converge(&nodes, 2).await;

    // A majority down: nothing commits.
    nodes.remove(&second).unwrap().shutdown().await;
    let (&last_id, last) = nodes.iter().next().unwrap();
    let attempt = tokio::time::timeout(
        Duration::from_secs(2),
        last.service.controller.propose(Command::RegisterBroker {
            id: 3,
            endpoint: "b3:9092".into(),
            incarnation: 0,
        }),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "committed without a majority: {attempt:?}"
    );
    assert_eq!(last.service.controller.state().metadata.brokers.len(), 2);

    // The others return from disk: the metadata is there, and progress resumes.
    for id in [first, second] {
        nodes.insert(id, start(id, &quorum, dir.path()).await);
    }
    common::leader(&nodes, Duration::from_secs(10)).await;
    let epoch = register(&nodes, 3).await;
    assert!(epoch >= Some(3), "broker epochs only rise: {epoch:?}");
    converge(&nodes, 3).await;
    for (id, node) in &nodes {
        let meta = node.service.controller.state().metadata;
        assert_eq!(
            meta.brokers.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3],
            "controller {id}"
        );
    }
    let _ = last_id;
    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await;
    }
}

/// Malformed Raft RPCs (oversized frame, bytes that are not a request)
/// close their connection and change nothing; the controller keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_raft_rpcs_change_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let quorum = BTreeMap::from([(1u64, addr.clone())]);
    let node = start(1, &quorum, dir.path()).await;
    let mut nodes = BTreeMap::from([(1u64, node)]);
    common::leader(&nodes, Duration::from_secs(10)).await;
    assert_eq!(register(&nodes, 7).await, Some(1));
    let before = nodes[&1].service.controller.state().metadata;
    let oversized = u32::MAX.to_be_bytes().to_vec();
    let framed = |body: &[u8]| [&(body.len() as u32).to_be_bytes()[..], body].concat();
    let not_json = framed(b"garbage!");
    let wrong_shape = framed(b"{\"Vote\":42}");
    for bytes in [oversized, not_json, wrong_shape] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("closed, not hung");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "expected the connection to close, got {read:?}"
        );
    }
    assert_eq!(nodes[&1].service.controller.state().metadata, before);
    assert_eq!(register(&nodes, 8).await, Some(2), "still committing");
    nodes.remove(&1).unwrap().shutdown().await;
}

/// A controller configured with a different quorum is refused by the others
/// (and refuses them): it never learns a leader or any metadata, and cannot
/// commit; the two agreeing controllers are a majority and carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_disagreeing_on_the_quorum_refuse_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = common::free_quorum(4);
    let agreed: BTreeMap<u64, String> = quorum
        .iter()
        .filter(|(id, _)| **id <= 3)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut nodes = BTreeMap::new();
    for id in [1, 2] {
        nodes.insert(id, start(id, &agreed, dir.path()).await);
    }
    let odd = start(3, &quorum, dir.path()).await; // believes in a 4th controller
    let leader_id = common::leader(&nodes, Duration::from_secs(10)).await;
    assert_eq!(register(&nodes, 1).await, Some(1));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        odd.service.controller.leader().filter(|l| *l != 3),
        None,
        "the misconfigured controller found no leader"
    );
    assert!(
        odd.service.controller.state().metadata.brokers.is_empty(),
        "and learned no metadata"
    );
    let attempt = tokio::time::timeout(
        Duration::from_secs(2),
        odd.service.controller.propose(Command::RegisterBroker {
            id: 9,
            endpoint: String::new(),
            incarnation: 0,
        }),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "it cannot commit: {attempt:?}"
    );
    assert_eq!(
        nodes[&leader_id]
            .service
            .controller
            .state()
            .metadata
            .brokers
            .len(),
        1,
        "the majority is unaffected"
    );
    odd.shutdown().await;
    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await;
    }
}

/// Restarting a controller with a quorum other than the one its log
/// records is refused at startup with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_another_quorum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let quorum = BTreeMap::from([(1u64, probe.local_addr().unwrap().to_string())]);
    drop(probe);
    let node = start(1, &quorum, dir.path()).await;
    let nodes = BTreeMap::from([(1u64, node)]);
    common::leader(&nodes, Duration::from_secs(10)).await;
    for (_, node) in nodes {
        node.shutdown().await;
    }
    let mut other = quorum.clone();
    other.insert(2, "127.0.0.1:1".into());
    let config = ControllerConfig::new(1, other, dir.path().join("c1"));
    let err = controller::raft::node::Controller::start(config)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("differs from the quorum recorded"),
        "{err}"
    );
}
