//! The log an operator reads, at the default level, through a failover: a
//! fresh `baton local-cluster` (3 controllers, 3 brokers), a topic with
//! replication factor 3, the active controller killed and kept down for a
//! minute, and a broker killed -9 during that minute. The log must hold no
//! ERROR line (an ERROR always means something is wrong, and nothing here
//! is: a minority is down), and one INFO line for the active controller's
//! change, for the fencing, and for every leadership change that happened.

mod common;

use client::admin::PartitionInfo;
use common::cluster::LocalCluster;
use rustix::process::Signal;
use std::time::{Duration, Instant};

/// How long the killed controller stays down: the minute.
const DOWN: Duration = Duration::from_secs(60);

const TOPIC: &str = "orders";

#[tokio::test(flavor = "multi_thread")]
async fn a_minute_with_a_controller_down_logs_no_error_and_every_change() {
    let (cluster, logs) = LocalCluster::start_logged(3, 3);
    let mut admin = client::Admin::connect(cluster.broker_addr(1))
        .await
        .expect("admin");
    admin
        .create_topic(TOPIC, 3, 3, &[])
        .await
        .expect("create topic");
    cluster
        .wait_for_topic(1, TOPIC, Duration::from_secs(20), |ps| {
            ps.len() == 3 && ps.iter().all(|p| p.leader > 0 && p.isr.len() == 3)
        })
        .await;
    let before = cluster.describe(1, TOPIC).await;
    eprintln!("before: {before:?}");

    // The active controller goes, for the minute.
    let down_at = Instant::now();
    let killed_controller = cluster.kill_active_controller().await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // A broker goes during that minute: the leader of partition 0, so its
    // partitions get new leaders and the others' ISRs shrink.
    let victim = before[0].leader;
    cluster.signal_broker(victim, Signal::KILL);
    let alive = *[1, 2, 3].iter().find(|b| **b != victim).expect("alive");
    cluster
        .wait_for_topic(alive, TOPIC, Duration::from_secs(20), |ps| {
            ps.iter()
                .all(|p| p.leader > 0 && p.leader != victim && !p.isr.contains(&victim))
        })
        .await;
    tokio::time::sleep(DOWN.saturating_sub(down_at.elapsed())).await;
    let after = cluster.describe(alive, TOPIC).await;
    eprintln!("after: {after:?}");
    // The last lines reach the collector through two pipes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = logs.lines();

    let errors: Vec<&String> = lines.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "ERROR lines in the log: {errors:#?}");

    let became_active = lines.iter().any(|l| {
        !l.starts_with(&format!("[controller {killed_controller}]"))
            && info(l, "this controller is now the active controller")
    });
    assert!(
        became_active,
        "no controller logged that it became active after controller {killed_controller} died"
    );
    assert!(
        lines
            .iter()
            .any(|l| info(l, &format!("broker {victim} fenced: broker epoch"))),
        "no line for the fencing of broker {victim}"
    );
    for (old, new) in before.iter().zip(&after) {
        assert_changes_logged(&lines, old, new, victim);
    }
}

/// Whether `line` is an INFO line containing `text`.
fn info(line: &str, text: &str) -> bool {
    line.contains(" INFO ") && line.contains(text)
}

/// Every leader epoch from `old` to `new` has its election line, the last
/// one naming the new leader; a partition that kept its leader has its
/// ISR shrink line.
fn assert_changes_logged(lines: &[String], old: &PartitionInfo, new: &PartitionInfo, victim: i32) {
    let name = format!("partition {TOPIC}-{}", new.partition);
    assert!(
        new.leader_epoch > old.leader_epoch || old.leader != victim,
        "{name}: led by the killed broker {victim} but its epoch did not move"
    );
    for epoch in old.leader_epoch + 1..=new.leader_epoch {
        let leader = if epoch == new.leader_epoch {
            new.leader.to_string()
        } else {
            String::new()
        };
        let said = lines.iter().any(|l| {
            info(l, &format!("{name} leader {leader}"))
                && l.contains(&format!(" epoch {epoch} (was "))
        });
        assert!(said, "no line for {name}'s election into epoch {epoch}");
    }
    if old.leader_epoch == new.leader_epoch {
        let said = lines
            .iter()
            .any(|l| info(l, &format!("{name} isr shrunk to")));
        assert!(said, "no line for {name}'s ISR losing broker {victim}");
    }
}
