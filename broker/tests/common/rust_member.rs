//! A group member through our Rust `GroupConsumer`, as a task, writing the
//! same JSON-lines log as `scripts/clients/group_member.py` so the same
//! checks apply. Aborting the task is its crash: the consumer is dropped
//! without leaving, its heartbeats stop.

use client::group::TopicPartition;
use client::{GroupConsumer, GroupConsumerConfig, RebalanceListener};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Log(std::fs::File);

impl Log {
    fn write(&mut self, mut event: serde_json::Value) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        event["t"] = t.into();
        let _ = writeln!(self.0, "{event}");
    }
}

fn tps(partitions: &[TopicPartition]) -> serde_json::Value {
    partitions
        .iter()
        .map(|(t, p)| serde_json::json!([t, p]))
        .collect()
}

impl RebalanceListener for Log {
    async fn on_partitions_revoked(
        &mut self,
        _: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) {
        self.write(serde_json::json!({"ev": "revoked", "partitions": tps(partitions)}));
    }
    async fn on_partitions_assigned(
        &mut self,
        _: &mut GroupConsumer,
        partitions: &[TopicPartition],
    ) {
        self.write(serde_json::json!({"ev": "assigned", "partitions": tps(partitions)}));
    }
}

/// Runs a member of `group` on `topic` until `stop`, then closes it (a
/// last commit, LeaveGroup).
pub fn spawn(
    bootstrap: &str,
    group: &str,
    topic: &str,
    log: &Path,
    session: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut config = GroupConsumerConfig::new(bootstrap, group);
    config.session_timeout = session;
    config.heartbeat_interval = session / 5;
    config.rebalance_timeout = Duration::from_secs(10);
    let topic = topic.to_string();
    let mut log = Log(std::fs::File::create(log).expect("member log"));
    tokio::spawn(async move {
        let mut consumer = GroupConsumer::new(config).await.expect("group consumer");
        consumer.subscribe(&[&topic]);
        while !stop.load(Ordering::Relaxed) {
            let records = match consumer
                .poll_with(&mut log, Duration::from_millis(200))
                .await
            {
                Ok(records) => records,
                Err(e) => {
                    log.write(serde_json::json!({"ev": "poll_failed", "error": e.to_string()}));
                    continue;
                }
            };
            for r in &records {
                let value =
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
                log.write(serde_json::json!({"ev": "consumed", "p": r.partition, "o": r.offset, "v": value}));
            }
            if records.is_empty() {
                continue;
            }
            let mut last = std::collections::BTreeMap::new();
            for r in &records {
                last.insert(r.partition, r.offset + 1);
            }
            match consumer.commit_sync().await {
                Ok(()) => log.write(serde_json::json!({"ev": "committed", "offsets": last.into_iter().collect::<Vec<_>>()})),
                Err(e) => log.write(serde_json::json!({"ev": "commit_failed", "error": e.to_string()})),
            }
        }
        let _ = consumer.close_with(&mut log).await;
        log.write(serde_json::json!({"ev": "closed"}));
    })
}
