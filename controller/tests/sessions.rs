//! Broker sessions through the controller service (three controllers,
//! in-process, real TCP): registration, heartbeats, fencing on expiry with
//! re-election from the ISR, and the refusals: stale epoch, unknown broker,
//! duplicate live broker id, and a follower pointing at the leader.

mod common;

use controller::commands::CommandResult;
use controller::rules::lease::LeaseConfig;
use controller::service::{call, ControllerRequest as Req, ControllerResponse as Resp, Running};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LEASE: LeaseConfig = LeaseConfig {
    session_timeout_ms: 800,
    max_clock_drift_ppm: 10_000,
};

/// Sends a leader-only request to whichever controller is active, through
/// elections (under load one can happen at any moment).
async fn ask(addrs: &[String], r: Req) -> Resp {
    let what = format!("{r:?}");
    controller::service::call_active(addrs, r, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no active controller for {what}"))
}

/// The metadata of the controller that has applied the most.
fn latest(nodes: &BTreeMap<u64, Running>) -> controller::metadata::ClusterMetadata {
    let states = nodes.values().map(|n| n.service.controller.state());
    states
        .max_by_key(|s| s.last_applied.map_or(0, |l| l.index))
        .unwrap()
        .metadata
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fence_elect_and_refuse_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = common::free_quorum(3);
    let mut nodes: BTreeMap<u64, Running> = common::start_all(&quorum, dir.path(), LEASE).await;
    // A follower points at the active controller.
    let addrs: Vec<String> = quorum.values().cloned().collect();
    let start = Instant::now();
    loop {
        let mut redirected = false;
        for a in &addrs {
            if let Ok(Resp::NotController {
                leader: Some((l, addr)),
            }) = call(a, Req::Heartbeat { id: 1, epoch: 1 }).await
            {
                assert_eq!(quorum[&l], addr, "the hint names the leader's address");
                redirected = true;
            }
        }
        if redirected {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no follower redirect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = &addrs;
    // The new active controller's tracker must exist before sessions start.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut epochs = BTreeMap::new();
    let mut registered_at = BTreeMap::new();
    for id in 1..=3 {
        match ask(
            a,
            Req::RegisterBroker {
                id,
                endpoint: format!("b{id}:9092"),
                incarnation: 100 + id as u64,
            },
        )
        .await
        {
            Resp::Registered { epoch, .. } => epochs.insert(id, epoch),
            other => panic!("register {id}: {other:?}"),
        };
        registered_at.insert(id, Instant::now());
    }
    match ask(
        a,
        Req::RegisterBroker {
            id: 2,
            endpoint: "x:1".into(),
            incarnation: 999,
        },
    )
    .await
    {
        Resp::Refused(why) => assert!(why.contains("already registered"), "{why}"),
        other => panic!("duplicate live id must be refused, got {other:?}"),
    }
    match ask(
        a,
        Req::CreateTopic {
            name: "t".into(),
            partitions: 3,
            replication_factor: 3,
            configs: Default::default(),
        },
    )
    .await
    {
        Resp::Committed(CommandResult::Ok { .. }) => {}
        other => panic!("create topic: {other:?}"),
    }
    assert!(
        matches!(ask(a, Req::Heartbeat { id: 9, epoch: 1 }).await, Resp::Refused(w) if w.contains("unknown broker"))
    );
    assert!(
        matches!(ask(a, Req::Heartbeat { id: 2, epoch: 77 }).await, Resp::Refused(w) if w.contains("stale"))
    );

    // Brokers 2 and 3 heartbeat; broker 1 goes silent and is fenced.
    let silent_since = Instant::now();
    let fenced = loop {
        for id in [2, 3] {
            assert!(matches!(
                ask(
                    a,
                    Req::Heartbeat {
                        id,
                        epoch: epochs[&id]
                    }
                )
                .await,
                Resp::HeartbeatOk
            ));
        }
        let meta = latest(&nodes);
        if meta.brokers[&1].fenced {
            break meta;
        }
        assert!(
            silent_since.elapsed() < Duration::from_secs(10),
            "broker 1 was never fenced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Its last heartbeat was its registration: no fencing before a full
    // session timeout after it. The controller received it a response
    // latency before we took `registered_at`; 50 ms covers that.
    let silence = registered_at[&1].elapsed();
    assert!(
        silence >= Duration::from_millis(LEASE.session_timeout_ms - 50),
        "fenced after {silence:?}"
    );
    let p0 = &fenced.topics["t"].partitions[0];
    assert_eq!(
        (p0.leader, p0.leader_epoch),
        (Some(2), 2),
        "partition 0 moved from 1 to 2 with a new epoch"
    );
    assert!(fenced.topics["t"]
        .partitions
        .iter()
        .all(|p| !p.isr.contains(&1)));
    assert!(
        !fenced.brokers[&2].fenced && !fenced.brokers[&3].fenced,
        "live brokers stay unfenced"
    );

    let moved_at = match ask(
        a,
        Req::GetMetadata {
            after_applied: 0,
            wait_ms: 0,
        },
    )
    .await
    {
        Resp::Metadata { applied, .. } => applied,
        other => panic!("metadata: {other:?}"),
    };
    // The fenced broker's heartbeats are refused until it registers again.
    assert!(
        matches!(ask(a, Req::Heartbeat { id: 1, epoch: epochs[&1] }).await, Resp::Refused(w) if w.contains("fenced"))
    );
    match ask(
        a,
        Req::RegisterBroker {
            id: 1,
            endpoint: "b1:9092".into(),
            incarnation: 555,
        },
    )
    .await
    {
        Resp::Registered {
            epoch,
            metadata_index,
            ..
        } => {
            assert!(epoch > epochs[&3], "a new, higher broker epoch");
            // The broker must not lead from an image older than this: the
            // moves made while it was fenced are all at or below it.
            assert!(
                metadata_index >= moved_at,
                "registration at index {metadata_index}, partitions moved at {moved_at}"
            );
        }
        other => panic!("re-register: {other:?}"),
    }
    let meta = latest(&nodes);
    assert_eq!(
        meta.topics["t"].partitions[0].leader,
        Some(2),
        "a returning broker leads nothing by itself"
    );

    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await;
    }
}
