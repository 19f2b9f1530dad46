//! Active/standby workers over a one-partition topic.
//!
//! ```text
//! cargo run -p baton-client --example active-standby -- \
//!     --bootstrap 127.0.0.1:9092 --group workers --topic jobs [--instance-id X]
//! ```
//!
//! Every worker joins the group; the one assigned the partition is active
//! and processes records, committing after each batch under its
//! generation; the others are standby: assigned nothing, heartbeating,
//! waiting. Kill the active one and, after the session timeout (at once on
//! Ctrl-C, which leaves the group), a standby takes over from the last
//! committed offset. If a stopped active worker comes back after it was
//! replaced (a zombie), its commits are refused and it stops being active.

use client::group::TopicPartition;
use client::group::{is_fenced, GroupConsumer, GroupConsumerConfig, RebalanceListener};
use std::time::Duration;

/// Prints role changes; commits before giving the partition up.
struct Roles;

impl RebalanceListener for Roles {
    async fn on_partitions_assigned(
        &mut self,
        consumer: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) {
        if !partitions.is_empty() {
            println!(
                "ACTIVE: assigned {partitions:?} in generation {:?}",
                consumer.generation().map(|g| g.0)
            );
        }
    }

    async fn on_partitions_revoked(
        &mut self,
        consumer: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) {
        // Commit what was processed, so the next owner starts right after it.
        match consumer.commit_sync().await {
            Ok(()) => println!("STANDBY: handing over {partitions:?} (progress committed)"),
            Err(e) => println!("STANDBY: handing over {partitions:?}; final commit failed: {e}"),
        }
    }

    async fn on_partitions_lost(
        &mut self,
        _consumer: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) {
        println!("STANDBY: lost {partitions:?}: the group replaced us (no commit possible)");
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let bootstrap = arg(&args, "--bootstrap").unwrap_or_else(|| "127.0.0.1:9092".into());
    let group = arg(&args, "--group").unwrap_or_else(|| "workers".into());
    let topic = arg(&args, "--topic").unwrap_or_else(|| "jobs".into());
    let mut config = GroupConsumerConfig::new(&bootstrap, &group);
    config.group_instance_id = arg(&args, "--instance-id");
    // A short session so a killed active worker is replaced quickly.
    config.session_timeout = Duration::from_secs(10);
    config.heartbeat_interval = Duration::from_secs(1);
    config.rebalance_timeout = Duration::from_secs(30);

    let mut consumer = GroupConsumer::new(config).await?;
    consumer.subscribe(&[&topic]);
    println!("joining group {group} on topic {topic} (Ctrl-C leaves the group)");
    let mut roles = Roles;
    let mut waited = 0u32;
    loop {
        let polled = tokio::select! {
            polled = consumer.poll_with(&mut roles, Duration::from_secs(1)) => polled,
            _ = tokio::signal::ctrl_c() => break,
        };
        let records = polled?;
        if consumer.assignment().is_empty() {
            waited += 1;
            if waited % 5 == 1 {
                println!("STANDBY: nothing assigned, heartbeating and waiting");
            }
            continue;
        }
        waited = 0;
        for r in &records {
            let value = r
                .value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!(
                "processing {}-{} offset {}: {value}",
                r.topic, r.partition, r.offset
            );
        }
        if records.is_empty() {
            continue;
        }
        match consumer.commit_sync().await {
            Ok(()) => println!(
                "committed up to offset {} (generation {:?})",
                records.last().map_or(0, |r| r.offset + 1),
                consumer.generation().map(|g| g.0)
            ),
            Err(e) if is_fenced(&e) => {
                // Another worker owns the partition now: what we just did may
                // be done again by it; stop acting as the active one.
                println!(
                    "ZOMBIE: commit refused ({e}); another worker took over, no longer active"
                );
            }
            Err(e) => println!("commit failed, will retry with the next batch: {e}"),
        }
    }
    consumer.close_with(&mut roles).await?;
    println!("left the group");
    Ok(())
}
