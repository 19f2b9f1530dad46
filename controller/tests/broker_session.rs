//! The broker half of the lease against three in-process controllers
//! (claim 2): a frozen broker's lease ends before the controller fences it;
//! after thawing it registers again with a higher epoch; with no controller
//! reachable, the lease runs out.

mod common;

use controller::broker_session::BrokerSession;
use controller::rules::lease::LeaseConfig;
use controller::service::{call, ControllerRequest as Req, ControllerResponse as Resp, Running};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LEASE: LeaseConfig = LeaseConfig {
    session_timeout_ms: 800,
    max_clock_drift_ppm: 10_000,
};

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Instant {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ends_before_fencing_and_a_thawed_broker_registers_again() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = common::free_quorum(3);
    let mut nodes: BTreeMap<u64, Running> = common::start_all(&quorum, dir.path(), LEASE).await;
    let session = BrokerSession::new(
        1,
        "b1:9092".into(),
        quorum.values().cloned().collect(),
        LEASE,
    );
    let runner = tokio::spawn(session.clone().run());
    wait_for("registration", Duration::from_secs(15), || {
        session.lease_valid()
    })
    .await;
    let first_epoch = session.epoch().unwrap();
    let any = quorum.values().next().unwrap().clone();
    let leader_addr = loop {
        match call(
            &any,
            Req::CreateTopic {
                name: "t".into(),
                partitions: 1,
                replication_factor: 1,
                configs: Default::default(),
            },
        )
        .await
        .unwrap()
        {
            Resp::NotController {
                leader: Some((_, addr)),
            } => break addr,
            Resp::Committed(_) => break any.clone(),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let _ = call(
        &leader_addr,
        Req::CreateTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
        },
    )
    .await;
    // Heartbeats keep the lease for well past one session timeout.
    tokio::time::sleep(Duration::from_millis(2 * LEASE.session_timeout_ms)).await;
    assert!(session.lease_valid(), "heartbeats keep the lease");

    // Freeze: the lease must end before the controller fences the broker.
    session.set_paused(true);
    let fenced = || async {
        match call(
            &leader_addr,
            Req::GetMetadata {
                after_applied: 0,
                wait_ms: 0,
            },
        )
        .await
        {
            Ok(Resp::Metadata { metadata, .. }) => {
                metadata.brokers.get(&1).is_some_and(|b| b.fenced)
            }
            _ => false,
        }
    };
    let lease_end = wait_for("lease end", Duration::from_secs(5), || {
        !session.lease_valid()
    })
    .await;
    assert!(!fenced().await, "fenced while the broker could still serve");
    let start = Instant::now();
    while !fenced().await {
        assert!(start.elapsed() < Duration::from_secs(5), "never fenced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(lease_end <= Instant::now());

    // Thaw: the next heartbeat is refused, the broker registers again with a
    // higher epoch, and its lease is back.
    session.set_paused(false);
    wait_for("new registration", Duration::from_secs(10), || {
        session.epoch().is_some_and(|e| e > first_epoch)
    })
    .await;
    wait_for("lease back", Duration::from_secs(5), || {
        session.lease_valid()
    })
    .await;
    assert_eq!(session.registrations(), 2);

    // Every controller gone: the lease runs out within a session timeout.
    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await;
    }
    let gone = Instant::now();
    wait_for(
        "lease end without controllers",
        Duration::from_secs(5),
        || !session.lease_valid(),
    )
    .await;
    assert!(gone.elapsed() <= Duration::from_millis(LEASE.session_timeout_ms + 100));
    runner.abort();
}
