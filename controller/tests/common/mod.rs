//! Starting in-process controller quorums on free loopback ports.
#![allow(dead_code)] // each test binary uses part of this

use controller::raft::node::ControllerConfig;
use controller::rules::lease::LeaseConfig;
use controller::service::Running;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// `n` controller ids with free loopback addresses.
pub fn free_quorum(n: u64) -> BTreeMap<u64, String> {
    (1..=n)
        .map(|id| {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            (id, probe.local_addr().unwrap().to_string())
        })
        .collect()
}

/// Starts controller `id` of `quorum`, its data under `dir/c<id>`.
pub async fn start_one(
    id: u64,
    quorum: &BTreeMap<u64, String>,
    dir: &Path,
    lease: LeaseConfig,
) -> Running {
    let listener = tokio::net::TcpListener::bind(&quorum[&id])
        .await
        .expect("bind");
    let config = ControllerConfig::new(id, quorum.clone(), dir.join(format!("c{id}")));
    controller::service::start(config, lease, listener)
        .await
        .expect("start")
}

/// Starts every controller of `quorum`.
pub async fn start_all(
    quorum: &BTreeMap<u64, String>,
    dir: &Path,
    lease: LeaseConfig,
) -> BTreeMap<u64, Running> {
    let mut nodes = BTreeMap::new();
    for &id in quorum.keys() {
        nodes.insert(id, start_one(id, quorum, dir, lease).await);
    }
    nodes
}

/// Waits for the running controllers to agree on a leader among them.
pub async fn leader(nodes: &BTreeMap<u64, Running>, within: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let views: Vec<Option<u64>> = nodes
            .values()
            .map(|c| c.service.controller.leader())
            .collect();
        if let Some(Some(l)) = views.first() {
            if nodes.contains_key(l) && views.iter().all(|v| v == &Some(*l)) {
                return *l;
            }
        }
        assert!(
            start.elapsed() < within,
            "no agreed leader within {within:?}: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
