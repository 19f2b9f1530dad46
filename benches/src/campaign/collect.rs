//! After the faults: what the campaign adds to the clients' operations
//! before checking. The final log of each partition (read once the cluster
//! healed and the workload stopped), the brokers' serve windows, and the
//! operations the librdkafka processes wrote to their own files.

use super::docker::Cluster;
use checker::history::{FinalLog, ServeWindow};
use checker::{Op, Record};
use client::{Consumer, ConsumerConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Reads every partition of `topic` from its first offset to its high
/// watermark. Nothing writes any more, so three empty polls in a row mean
/// the end.
pub async fn final_logs(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Vec<Op>> {
    let mut logs = Vec::new();
    for partition in 0..partitions {
        let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap)).await?;
        consumer.assign(&[(topic, partition)]);
        let mut records = Vec::new();
        let mut empty = 0;
        let mut failures = 0;
        while empty < 3 {
            match consumer.poll(Duration::from_millis(500)).await {
                Ok(batch) if batch.is_empty() => empty += 1,
                Ok(batch) => {
                    empty = 0;
                    records.extend(batch.into_iter().map(|r| {
                        Record {
                            offset: r.offset,
                            value: String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                                .into_owned(),
                        }
                    }));
                }
                Err(e) => {
                    failures += 1;
                    anyhow::ensure!(failures < 40, "reading {topic}-{partition}: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        logs.push(Op::FinalLog(FinalLog {
            topic: topic.to_string(),
            partition,
            records,
        }));
    }
    Ok(logs)
}

/// One broker's `serve-windows.json`, as the broker writes it.
#[derive(serde::Deserialize)]
struct Window {
    leader_epoch: i32,
    first_ms: u64,
    last_ms: u64,
}

/// Every broker's serve windows since `since_ms`, for every topic (the
/// workload's and `__consumer_offsets`), as serve ops. Windows that ended
/// before the run began belong to earlier runs on the same cluster.
pub fn serve_windows(cluster: &Cluster, since_ms: u64) -> anyhow::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for id in 1..=3 {
        let bytes = cluster.read_file(&cluster.broker(id), "/data/serve-windows.json")?;
        let windows: BTreeMap<String, Vec<Window>> = serde_json::from_slice(&bytes)?;
        for (key, list) in windows {
            let Some((topic, partition)) = key.rsplit_once('-') else {
                continue;
            };
            let partition: i32 = partition.parse()?;
            let list = list.into_iter().filter(|w| w.last_ms >= since_ms);
            ops.extend(list.map(|w| {
                Op::Serve(ServeWindow {
                    broker: id,
                    topic: topic.to_string(),
                    partition,
                    leader_epoch: w.leader_epoch,
                    first_ms: w.first_ms,
                    last_ms: w.last_ms,
                })
            }));
        }
    }
    Ok(ops)
}

/// The operations a librdkafka process wrote. A process killed mid-line
/// leaves a torn last line; it is dropped (its operation never finished).
pub fn client_file(path: &Path) -> anyhow::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let history =
        checker::parse(complete).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(history.ops)
}
