//! Starting in-process controller quorums on free loopback ports.
#![allow(dead_code)] // each test binary uses part of this

use controller::raft::node::ControllerConfig;
use controller::rules::lease::LeaseConfig;
use controller::service::Running;
use std::collections::BTreeMap;
use std::path::Path;

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
