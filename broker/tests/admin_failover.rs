//! The admin client through a broker's failover: after kill -9 of broker 1,
//! which Metadata still lists until its session times out, every describe
//! of a topic succeeds, from the `baton admin` binary bootstrapped from
//! broker 2 and from the Rust `Admin`, including one whose open connection
//! was to the broker that died; and listing groups, which asks every
//! listed broker, succeeds too.

mod common;

use common::cluster::LocalCluster;
use rustix::process::Signal;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long after the kill the calls go on: past the moment the
/// controllers fence broker 1 and Metadata stops naming it.
const DURING: Duration = Duration::from_secs(3);

/// `baton admin --bootstrap <via> topic describe <topic>` until `DURING`
/// has passed; every failure's output, and how many calls were made.
fn describe_with_the_binary(via: String, topic: &str) -> (Vec<String>, usize) {
    let start = Instant::now();
    let (mut failures, mut calls) = (Vec::new(), 0);
    while start.elapsed() < DURING {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["admin", "--bootstrap", &via, "topic", "describe", topic])
            .env("BATON_LOG", "warn")
            .output()
            .expect("run baton admin");
        calls += 1;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains(topic) {
            failures.push(format!(
                "after {:?}: {} {stdout} {}",
                start.elapsed(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    (failures, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_describe_succeeds_throughout_a_broker_kill() {
    let cluster = LocalCluster::start_with_topic("orders").await;
    let (b1, b2) = (cluster.broker_addr(1), cluster.broker_addr(2).to_string());
    // Two long-lived clients: one talking to broker 2, one whose open
    // connection is to broker 1 (its first bootstrap address).
    let mut via_2 = client::Admin::connect(&b2).await.expect("admin via 2");
    let mut via_1 = client::Admin::connect(&format!("{b1},{b2}"))
        .await
        .expect("admin via 1");
    for admin in [&mut via_2, &mut via_1] {
        admin
            .describe_topic("orders")
            .await
            .expect("describe before");
    }

    cluster.signal_broker(1, Signal::KILL);
    let binary = tokio::task::spawn_blocking(move || describe_with_the_binary(b2, "orders"));
    let start = Instant::now();
    let (mut failures, mut calls) = (Vec::new(), 0);
    while start.elapsed() < DURING {
        for (name, admin) in [("via 2", &mut via_2), ("via 1", &mut via_1)] {
            calls += 1;
            if let Err(e) = admin.describe_topic("orders").await {
                failures.push(format!("{name} after {:?}: {e}", start.elapsed()));
            }
        }
        // ListGroups goes to every listed broker: it waits until the
        // dead one is no longer listed rather than failing.
        calls += 1;
        if let Err(e) = via_2.list_groups().await {
            failures.push(format!("list groups after {:?}: {e}", start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (binary_failures, binary_calls) = binary.await.expect("binary loop");
    assert!(
        failures.is_empty() && binary_failures.is_empty(),
        "Rust Admin: {} of {calls} calls failed: {failures:#?}\n\
         baton admin: {} of {binary_calls} calls failed: {binary_failures:#?}",
        failures.len(),
        binary_failures.len(),
    );
    assert!(
        calls >= 20 && binary_calls >= 5,
        "too few calls to mean anything: {calls} Rust, {binary_calls} binary"
    );
}
