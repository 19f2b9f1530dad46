//! A partition this broker leads: its log, its leader epoch and its high
//! watermark. On a single broker the high watermark is what the flush policy
//! has made durable (`always`) or the log end (otherwise); replication
//! (issue 6) will compute it from the ISR instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use storage::{
    AppendError, AppendInfo, FlushPolicy, LeaderEpoch, Log, LogConfig, Offset, SharedLog,
};

use uuid::Uuid;

/// The epoch a single broker leads every partition in. Epochs start at 1:
/// 0 and -1 are what clients send when they know none (CLAIMS.md, claim 3).
pub const SINGLE_NODE_EPOCH: LeaderEpoch = 1;

/// One led partition.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub index: i32,
    /// Topic id.
    pub topic_id: Uuid,
    /// The log, shared with blocking tasks.
    pub log: Arc<SharedLog>,
    /// Current leader epoch.
    pub leader_epoch: LeaderEpoch,
    flush: FlushPolicy,
}

/// Topic configs Baton understands, and how each sets the log config.
pub const TOPIC_CONFIGS: [&str; 7] = [
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "index.interval.bytes",
];

/// Applies topic-level overrides to the broker's log defaults; an unknown
/// name or bad value is an error message for INVALID_CONFIG.
pub fn log_config_for(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut c = defaults.clone();
    for (name, value) in configs {
        let int = || {
            value
                .parse::<i64>()
                .map_err(|_| format!("{name}={value}: not an integer"))
        };
        let positive_u32 = || {
            int()
                .and_then(|v| u32::try_from(v).map_err(|_| format!("{name}={value}: out of range")))
        };
        match name.as_str() {
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => {
                return Err(format!("cleanup.policy={value}: only delete is supported"))
            }
            "retention.ms" => {
                c.retention_ms = u64::try_from(int()?).ok().map(Duration::from_millis)
            }
            "retention.bytes" => c.retention_bytes = u64::try_from(int()?).ok(),
            "segment.bytes" => c.segment_bytes = positive_u32()?,
            "segment.ms" => c.segment_ms = Some(Duration::from_millis(positive_u32()?.into())),
            "max.message.bytes" => c.max_batch_bytes = positive_u32()?,
            "index.interval.bytes" => c.index_interval_bytes = positive_u32()?,
            _ => return Err(format!("unknown or unsupported topic config {name}")),
        }
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

impl Partition {
    /// Opens (recovering) the partition's log.
    pub fn open(
        dir: std::path::PathBuf,
        topic: &str,
        index: i32,
        topic_id: Uuid,
        config: LogConfig,
    ) -> anyhow::Result<Partition> {
        let flush = config.flush;
        let mut log = Log::open(Arc::new(storage::fs::OsFs), dir, config)?;
        // A single broker's committed records are the durable ones.
        let hw = log.flushed_offset().max(log.high_watermark());
        log.set_high_watermark(hw);
        if log.latest_epoch().is_none_or(|e| e < SINGLE_NODE_EPOCH) {
            log.assign_leader_epoch(SINGLE_NODE_EPOCH)?;
        }
        Ok(Partition {
            topic: topic.to_string(),
            index,
            topic_id,
            log: Arc::new(SharedLog::new(log)),
            leader_epoch: SINGLE_NODE_EPOCH,
            flush,
        })
    }

    /// Appends without waiting for the flush policy: calls made in order
    /// land in order. The write goes to the page cache (the sync is what
    /// blocks), so it runs on the calling task, as Kafka's request handler
    /// threads append. Follow with [`commit`](Self::commit).
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, AppendError> {
        self.log.append_unsynced(batches, self.leader_epoch, now_ms)
    }

    /// Waits until the flush policy is met for `info`, then advances the
    /// high watermark. Pipelined appends share fdatasyncs (group commit); one
    /// that an earlier sync already covered returns without a thread hop.
    pub async fn commit(&self, info: AppendInfo, now_ms: i64) -> Result<(), storage::Failure> {
        if !self.log.is_committed(&info) {
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || log.commit(&info, now_ms))
                .await
                .map_err(|e| storage::Failure::Offline(e.to_string()))??;
        }
        self.advance_high_watermark();
        Ok(())
    }

    /// Moves the high watermark up to what is committed on this single
    /// broker: durable records under `always`, every record otherwise.
    /// Returns whether it moved.
    pub fn advance_high_watermark(&self) -> bool {
        let mut log = self.log.lock();
        let committed = match self.flush {
            FlushPolicy::Always => log.flushed_offset(),
            _ => log.log_end_offset(),
        };
        let moved = committed > log.high_watermark();
        if moved {
            log.set_high_watermark(committed);
        }
        moved
    }

    /// (log start, high watermark, log end).
    pub fn offsets(&self) -> (Offset, Offset, Offset) {
        let log = self.log.lock();
        (
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset(),
        )
    }
}
